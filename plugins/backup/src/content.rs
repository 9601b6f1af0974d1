//! Reading a changed file and storing its content: read in large blocks,
//! cut into chunks (the `backup-chunk-boundaries` hook), compute each
//! chunk's token, store it or reuse a stored copy (the `backup-store-chunk`
//! hook), and compute the whole-file SHA-256 on the way.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use plugin_api::payloads::{SplitRequest, StoreChunkRequest};
use plugin_api::types::RVec;
use plugin_api::{ChunkId, Context, Hook, Repository};
use sha2::{Digest, Sha256};

/// How much of a file is read at once (at least twice the largest chunk).
const BLOCK: usize = 4 << 20;

/// Why a file's content could not be backed up.
pub enum ContentError {
    /// This file failed (unreadable, vanished, changed while read): report
    /// it and go on with the others.
    File(String),
    /// The backup cannot go on (the repository failed, or no plugin
    /// answers a hook).
    Fatal(plugin_api::Error),
}

impl From<plugin_api::Error> for ContentError {
    fn from(e: plugin_api::Error) -> Self {
        ContentError::Fatal(e)
    }
}

fn io(e: std::io::Error) -> ContentError {
    match e.raw_os_error() {
        // Out of space or a broken pipe stops everything at once.
        Some(28) | Some(32) => ContentError::Fatal(plugin_api::Error::msg(e)),
        _ => ContentError::File(match e.kind() {
            ErrorKind::NotFound => "it vanished during the backup".to_string(),
            _ => e.to_string(),
        }),
    }
}

/// What storing a file's content produced.
pub struct Stored {
    pub chunks: Vec<ChunkId>,
    pub checksum: Vec<u8>,
    pub bytes_read: u64,
    pub bytes_new: u64,
}

/// Files at least this large are read on one thread while their chunks
/// are hashed and stored on another, so that one large file does not leave
/// the other processors idle.
const PIPELINE_FROM: u64 = 16 << 20;

/// Cuts data into chunks through the `backup-chunk-boundaries` hook.
struct Splitter {
    hook: Hook<SplitRequest>,
    req: SplitRequest,
}

/// Stores chunks through the `backup-store-chunk` hook.
struct Storer {
    repo: Repository,
    hook: Hook<StoreChunkRequest>,
    req: StoreChunkRequest,
}

impl Storer {
    fn new(repo: Repository, hook: Hook<StoreChunkRequest>) -> Self {
        Storer {
            repo,
            hook,
            req: StoreChunkRequest::default(),
        }
    }

    /// Store one chunk; returns its id and the bytes it added to the repository.
    fn store(&mut self, ctx: &Context<'_>, chunk: &[u8]) -> Result<(ChunkId, u64), ContentError> {
        let req = &mut self.req;
        req.data.clear();
        req.data.extend_from_copy_slice(chunk);
        req.token = self.repo.token(chunk);
        req.handled = false;
        req.stored = false;
        ctx.call(self.hook, req)?;
        if !req.handled {
            return Err(ContentError::Fatal(plugin_api::Error::msg(
                "no loaded plugin stores chunks (is the dedup plugin loaded?)",
            )));
        }
        Ok((
            req.chunk_id,
            if req.stored { chunk.len() as u64 } else { 0 },
        ))
    }
}

/// Called after each chunk with the bytes it added (for checkpoints).
pub type AfterChunk<'f> = &'f (dyn Fn(u64) -> plugin_api::Result<()> + Sync);

/// The hooks and buffers of one worker, reused file after file.
pub struct ContentWriter<'a, 'c> {
    ctx: &'a Context<'c>,
    splitter: Splitter,
    storer: Storer,
}

impl<'a, 'c> ContentWriter<'a, 'c> {
    /// A writer for one worker thread.
    pub fn new(
        ctx: &'a Context<'c>,
        repo: Repository,
        split_hook: Hook<SplitRequest>,
        store_hook: Hook<StoreChunkRequest>,
    ) -> Self {
        ContentWriter {
            ctx,
            splitter: Splitter {
                hook: split_hook,
                req: SplitRequest {
                    data: RVec::with_capacity(BLOCK),
                    ..SplitRequest::default()
                },
            },
            storer: Storer::new(repo, store_hook),
        }
    }

    /// Store the content of the file at `path`, whose `lstat` gave
    /// `size` and `mtime` when the walk found it.
    pub fn store_file(
        &mut self,
        path: &Path,
        size: u64,
        mtime: (i64, u32),
        after_chunk: AfterChunk<'_>,
    ) -> Result<Stored, ContentError> {
        let mut file = File::open(path).map_err(io)?;
        let opened = file.metadata().map_err(io)?;
        if !opened.is_file() {
            return Err(ContentError::File("it is no longer a regular file".into()));
        }
        let mut hasher = Sha256::new();
        let mut bytes_read = 0u64;
        let mut chunks = Vec::new();
        let mut bytes_new = 0u64;
        let ctx = self.ctx;
        if size < PIPELINE_FROM {
            let storer = &mut self.storer;
            self.splitter.read_chunks(
                ctx,
                &mut file,
                size,
                &mut hasher,
                &mut bytes_read,
                &mut |chunk| {
                    let (id, added) = storer.store(ctx, chunk)?;
                    chunks.push(id);
                    bytes_new += added;
                    after_chunk(added).map_err(ContentError::Fatal)
                },
            )?;
        } else {
            let repo = self.storer.repo.clone();
            let hook = self.storer.hook;
            let splitter = &mut self.splitter;
            std::thread::scope(|scope| -> Result<(), ContentError> {
                let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(8);
                let consumer = scope.spawn(move || -> Result<(Vec<ChunkId>, u64), ContentError> {
                    let mut storer = Storer::new(repo, hook);
                    let mut ids = Vec::new();
                    let mut new = 0;
                    for chunk in rx {
                        let (id, added) = storer.store(ctx, &chunk)?;
                        ids.push(id);
                        new += added;
                        after_chunk(added).map_err(ContentError::Fatal)?;
                    }
                    Ok((ids, new))
                });
                let read = splitter.read_chunks(
                    ctx,
                    &mut file,
                    size,
                    &mut hasher,
                    &mut bytes_read,
                    &mut |chunk| {
                        // A send fails only if the storing thread stopped on an error,
                        // which joining it reports.
                        tx.send(chunk.to_vec())
                            .map_err(|_| ContentError::File(String::new()))
                    },
                );
                drop(tx);
                let stored = consumer.join().map_err(|_| {
                    ContentError::Fatal(plugin_api::Error::msg("a chunk storing thread panicked"))
                })?;
                let (ids, new) = stored?;
                read?;
                chunks = ids;
                bytes_new = new;
                Ok(())
            })?;
        }
        let now = std::fs::symlink_metadata(path).map_err(io)?;
        if bytes_read != size
            || now.size() != bytes_read
            || (now.mtime(), now.mtime_nsec() as u32) != mtime
        {
            return Err(ContentError::File(
                "it changed while it was being backed up".into(),
            ));
        }
        Ok(Stored {
            chunks,
            checksum: hasher.finalize().to_vec(),
            bytes_read,
            bytes_new,
        })
    }
}

impl Splitter {
    /// Read a file to its end, cut it into chunks and hand each to `on_chunk`.
    fn read_chunks(
        &mut self,
        ctx: &Context<'_>,
        file: &mut File,
        size: u64,
        hasher: &mut Sha256,
        bytes_read: &mut u64,
        on_chunk: &mut dyn FnMut(&[u8]) -> Result<(), ContentError>,
    ) -> Result<(), ContentError> {
        let mut data = std::mem::take(&mut self.req.data);
        data.clear();
        let mut eof = false;
        while !eof || !data.is_empty() {
            let expected = size.saturating_sub(*bytes_read);
            eof = fill(file, &mut data, expected, hasher, bytes_read).map_err(io)?;
            self.req.data = std::mem::take(&mut data);
            self.req.eof = eof;
            self.req.lengths.clear();
            self.req.handled = false;
            let called = ctx.call(self.hook, &mut self.req);
            data = std::mem::take(&mut self.req.data);
            called?;
            if !self.req.handled {
                return Err(ContentError::Fatal(plugin_api::Error::msg(
                    "no loaded plugin cuts file data into chunks (is the dedup plugin loaded?)",
                )));
            }
            let mut pos = 0usize;
            for i in 0..self.req.lengths.len() {
                let end = pos + self.req.lengths[i] as usize;
                let chunk = data.get(pos..end).ok_or_else(|| {
                    ContentError::Fatal(plugin_api::Error::msg(
                        "a chunking plugin gave chunks past the data",
                    ))
                })?;
                on_chunk(chunk)?;
                pos = end;
            }
            if eof && pos < data.len() {
                return Err(ContentError::Fatal(plugin_api::Error::msg(
                    "a chunking plugin left data at the end of a file unchunked",
                )));
            }
            data.drain(..pos);
        }
        self.req.data = data;
        Ok(())
    }
}

/// Read until `data` holds a block, or the file ends; hash what was read.
/// `expected` is how much of the file should be left, so that the buffer
/// grows only as far as needed (one byte more, to see the end).
/// Returns whether the end of the file was reached.
fn fill(
    file: &mut File,
    data: &mut RVec<u8>,
    expected: u64,
    hasher: &mut Sha256,
    total: &mut u64,
) -> std::io::Result<bool> {
    let start = data.len();
    let room = BLOCK.saturating_sub(start).max(BLOCK / 2);
    let want = start
        + room.min(
            usize::try_from(expected)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
    data.resize(want, 0);
    let mut filled = start;
    let mut eof = false;
    while filled < want {
        match file.read(&mut data[filled..want]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                data.truncate(start);
                return Err(e);
            }
        }
    }
    data.truncate(filled);
    hasher.update(&data[start..filled]);
    *total += (filled - start) as u64;
    Ok(eof)
}
