//! Reading a changed file and storing its content: read in large blocks,
//! cut into chunks (the `backup-chunk-boundaries` hook), compute each
//! chunk's token, store it or reuse a stored copy (the `backup-store-chunk`
//! hook), and compute the whole-file SHA-256 on the way.

use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use plugin_api::payloads::{SplitRequest, StoreChunkRequest};
use plugin_api::types::RVec;
use plugin_api::{ChunkId, Context, Hook, Repository};
use sha2::{Digest, Sha256};

/// How much of a file is read at once (at least twice the largest chunk).
const BLOCK: usize = 4 << 20;

/// The smallest read past the size a file claimed (see `fill`).
const MIN_EXCESS_READ: usize = 64 << 10;

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
    match e.kind() {
        // Out of space or a broken pipe stops everything at once.
        ErrorKind::StorageFull | ErrorKind::BrokenPipe => {
            ContentError::Fatal(plugin_api::Error::msg(e))
        }
        ErrorKind::NotFound => ContentError::File("it vanished during the backup".to_string()),
        _ => ContentError::File(e.to_string()),
    }
}

const CHANGED: &str = "it changed while it was being backed up";

/// What the walk's `lstat` said about a file: the file opened must be the
/// same one, and must not change while it is read.
pub struct Walked {
    pub size: u64,
    pub mtime: (i64, u32),
    pub dev: u64,
    pub ino: u64,
}

impl Walked {
    /// Whether `meta` (an `fstat` of the open file) shows it changed since
    /// the walk. The size counts only as `stat` tells it, not as compared
    /// with what was read: a file in `/proc` says 0 bytes and holds more.
    fn changed(&self, meta: &Metadata) -> bool {
        meta.size() != self.size || (meta.mtime(), meta.mtime_nsec() as u32) != self.mtime
    }

    /// Fail the file if its `fstat` shows it changed since the walk.
    fn check(&self, file: &File) -> Result<(), ContentError> {
        if self.changed(&file.metadata().map_err(io)?) {
            return Err(ContentError::File(CHANGED.into()));
        }
        Ok(())
    }
}

/// How a file that is not the regular file the walk saw is described.
fn what(meta: &Metadata) -> &'static str {
    use plugin_api::EntryKind;
    match plugin_api::EntryKind::from_mode(meta.mode()) {
        EntryKind::Dir => "a folder",
        EntryKind::Symlink => "a symbolic link",
        EntryKind::Fifo => "a FIFO",
        EntryKind::Socket => "a socket",
        EntryKind::CharDevice => "a character device",
        EntryKind::BlockDevice => "a block device",
        _ => "something else",
    }
}

/// Why `meta` is not the file the walk saw, if it is not: an object of
/// another type, or another regular file put in its place (which is just a
/// changed file).
fn replaced(meta: &Metadata, walked: &Walked) -> Option<ContentError> {
    if !meta.is_file() {
        Some(ContentError::File(format!(
            "it changed into {} since it was scanned; not backed up",
            what(meta)
        )))
    } else if (meta.dev(), meta.ino()) != (walked.dev, walked.ino) {
        Some(ContentError::File(CHANGED.into()))
    } else {
        None
    }
}

/// Open the regular file the walk saw at `path`, and only that.
///
/// Whoever can write in a backed-up folder can put something else in the
/// file's place between the walk and this open. `O_NONBLOCK` keeps a FIFO
/// (or a device) from blocking the open, which would stall the backup
/// for good; `O_NOFOLLOW` keeps a symlink from being followed to a file its
/// maker could not read. The `fstat` of what was opened then checks it is a
/// regular file, the same one (device and inode) the walk saw, unchanged.
fn open(path: &Path, walked: &Walked) -> Result<File, ContentError> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(e) => {
            // A symlink fails with ELOOP, a socket with ENXIO: say what
            // is there now rather than how the open failed.
            return Err(std::fs::symlink_metadata(path)
                .ok()
                .and_then(|now| replaced(&now, walked))
                .unwrap_or_else(|| io(e.into())));
        }
    };
    let meta = file.metadata().map_err(io)?;
    if let Some(e) = replaced(&meta, walked) {
        return Err(e);
    }
    if walked.changed(&meta) {
        return Err(ContentError::File(CHANGED.into()));
    }
    // Now that it is known to be a regular file, reads wait for data as
    // usual: Linux ignores O_NONBLOCK for regular files, but a network or
    // FUSE file system may heed it and fail a read with EAGAIN.
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| io(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| io(e.into()))?;
    Ok(file)
}

/// What storing a file's content produced.
pub struct Stored {
    pub chunks: Vec<ChunkId>,
    pub checksum: Vec<u8>,
    /// The bytes read, which are the file's size as recorded: it may
    /// differ from the size `stat` gives for files such as those in `/proc`.
    pub bytes_read: u64,
    pub bytes_new: u64,
}

/// The chunks of a file stored so far, and the bytes they added.
#[derive(Default)]
struct Collected {
    chunks: Vec<ChunkId>,
    bytes_new: u64,
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

    /// Store the next chunk of a file and add it to `out`.
    fn add(
        &mut self,
        ctx: &Context<'_>,
        chunk: &[u8],
        out: &mut Collected,
        after_chunk: AfterChunk<'_>,
    ) -> Result<(), ContentError> {
        let (id, added) = self.store(ctx, chunk)?;
        out.chunks.push(id);
        out.bytes_new += added;
        after_chunk(chunk.len() as u64, added).map_err(ContentError::Fatal)
    }
}

/// Called after each chunk with its length (for the progress) and the
/// bytes it added to the repository (for checkpoints).
pub type AfterChunk<'f> = &'f (dyn Fn(u64, u64) -> plugin_api::Result<()> + Sync);

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

    /// Store the content of the regular file at `path` that the walk saw
    /// as `walked`.
    ///
    /// The file is read to its end, however long it is: the size `stat`
    /// gave is a hint for the buffers, not a limit. A file whose `fstat`
    /// shows another size or modification time than the walk saw, when it
    /// is opened or after any block, changed while it was backed up: it
    /// fails at once, however much of it is still to come.
    pub fn store_file(
        &mut self,
        path: &Path,
        walked: &Walked,
        after_chunk: AfterChunk<'_>,
    ) -> Result<Stored, ContentError> {
        let mut source = Source {
            file: open(path, walked)?,
            walked,
            hasher: Sha256::new(),
            bytes_read: 0,
        };
        let collected = if walked.size < PIPELINE_FROM {
            self.store_inline(&mut source, after_chunk)?
        } else {
            self.store_piped(&mut source, after_chunk)?
        };
        Ok(Stored {
            chunks: collected.chunks,
            checksum: source.hasher.finalize().to_vec(),
            bytes_read: source.bytes_read,
            bytes_new: collected.bytes_new,
        })
    }

    /// Store each chunk as soon as it is cut, on this thread.
    fn store_inline(
        &mut self,
        source: &mut Source<'_>,
        after_chunk: AfterChunk<'_>,
    ) -> Result<Collected, ContentError> {
        let ctx = self.ctx;
        let storer = &mut self.storer;
        let mut out = Collected::default();
        self.splitter.read_chunks(ctx, source, &mut |chunk| {
            storer.add(ctx, chunk, &mut out, after_chunk)
        })?;
        Ok(out)
    }

    /// Cut chunks on this thread and store them on another, through a
    /// short queue: for large files.
    fn store_piped(
        &mut self,
        source: &mut Source<'_>,
        after_chunk: AfterChunk<'_>,
    ) -> Result<Collected, ContentError> {
        let ctx = self.ctx;
        let repo = self.storer.repo.clone();
        let hook = self.storer.hook;
        let splitter = &mut self.splitter;
        std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(8);
            let consumer = scope.spawn(move || -> Result<Collected, ContentError> {
                let mut storer = Storer::new(repo, hook);
                let mut out = Collected::default();
                for chunk in rx {
                    storer.add(ctx, &chunk, &mut out, after_chunk)?;
                }
                Ok(out)
            });
            let read = splitter.read_chunks(ctx, source, &mut |chunk| {
                // A send fails only if the storing thread stopped on an
                // error, which joining it reports.
                tx.send(chunk.to_vec())
                    .map_err(|_| ContentError::File(String::new()))
            });
            drop(tx);
            let stored = consumer.join().map_err(|_| {
                ContentError::Fatal(plugin_api::Error::msg("a chunk storing thread panicked"))
            })?;
            let out = stored?;
            read?;
            Ok(out)
        })
    }
}

/// An open file being read: what the walk saw of it, and what was read of
/// it so far.
struct Source<'w> {
    file: File,
    walked: &'w Walked,
    hasher: Sha256,
    bytes_read: u64,
}

impl Splitter {
    /// The one chunk loop, whoever stores the chunks: read a file to its
    /// end in growing reads (see `fill`), cut it into chunks and hand each
    /// to `on_chunk`; fail if the file changes on the way.
    fn read_chunks(
        &mut self,
        ctx: &Context<'_>,
        source: &mut Source<'_>,
        on_chunk: &mut dyn FnMut(&[u8]) -> Result<(), ContentError>,
    ) -> Result<(), ContentError> {
        let mut data = std::mem::take(&mut self.req.data);
        data.clear();
        let mut eof = false;
        while !eof || !data.is_empty() {
            let Source {
                file,
                walked,
                hasher,
                bytes_read,
            } = source;
            eof = fill(file, &mut data, walked.size, hasher, bytes_read).map_err(io)?;
            // Checked after every block, not only at the end: a file that
            // is appended to as fast as it is read would have no end.
            walked.check(file)?;
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
            let pos = self.hand_out(&data, eof, on_chunk)?;
            data.drain(..pos);
        }
        self.req.data = data;
        Ok(())
    }

    /// Hand the chunks the hook cut from `data` to `on_chunk`; returns
    /// where the data not yet chunked starts.
    fn hand_out(
        &self,
        data: &[u8],
        eof: bool,
        on_chunk: &mut dyn FnMut(&[u8]) -> Result<(), ContentError>,
    ) -> Result<usize, ContentError> {
        let mut pos = 0usize;
        for &len in self.req.lengths.iter() {
            let end = pos + len as usize;
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
        Ok(pos)
    }
}

/// Read until `data` holds a block, or the file ends; hash what was read
/// and add its length to `total`. Returns whether the end was reached.
///
/// Up to the `size` the file claimed, the buffer grows only as far as
/// needed (one byte more, to see the end), so that a small file costs a
/// small buffer. Past it, the file is longer than it said (a `/proc` file
/// says 0 bytes): each call reads as much as was read past the size so far,
/// at least `MIN_EXCESS_READ` and at most a block, so that the number of
/// reads and chunking calls grows with the data read, never one per byte.
fn fill(
    file: &mut File,
    data: &mut RVec<u8>,
    size: u64,
    hasher: &mut Sha256,
    total: &mut u64,
) -> std::io::Result<bool> {
    let start = data.len();
    let room = BLOCK.saturating_sub(start).max(BLOCK / 2);
    let to_read = match size.checked_sub(*total) {
        Some(left) if left > 0 => usize::try_from(left)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
        _ => usize::try_from(*total - size)
            .unwrap_or(usize::MAX)
            .max(MIN_EXCESS_READ),
    };
    let want = start + room.min(to_read);
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
