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

/// The hooks and buffers of one worker, reused file after file.
pub struct ContentWriter<'a, 'c> {
    ctx: &'a Context<'c>,
    repo: Repository,
    split_hook: Hook<SplitRequest>,
    store_hook: Hook<StoreChunkRequest>,
    split: SplitRequest,
    store: StoreChunkRequest,
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
            repo,
            split_hook,
            store_hook,
            split: SplitRequest {
                data: RVec::with_capacity(BLOCK),
                ..SplitRequest::default()
            },
            store: StoreChunkRequest::default(),
        }
    }

    /// Store the content of the file at `path`, whose `lstat` gave
    /// `size` and `mtime` when the walk found it. `after_chunk` is called
    /// after each chunk with the bytes it added to the repository (for
    /// checkpoints).
    pub fn store_file(
        &mut self,
        path: &Path,
        size: u64,
        mtime: (i64, u32),
        after_chunk: &mut dyn FnMut(u64) -> Result<(), plugin_api::Error>,
    ) -> Result<Stored, ContentError> {
        let mut file = File::open(path).map_err(io)?;
        let opened = file.metadata().map_err(io)?;
        if !opened.is_file() {
            return Err(ContentError::File("it is no longer a regular file".into()));
        }
        let mut hasher = Sha256::new();
        let mut stored = Stored {
            chunks: Vec::new(),
            checksum: Vec::new(),
            bytes_read: 0,
            bytes_new: 0,
        };
        let mut data = std::mem::take(&mut self.split.data);
        data.clear();
        let mut eof = false;
        while !eof || !data.is_empty() {
            let expected = size.saturating_sub(stored.bytes_read);
            eof = fill(
                &mut file,
                &mut data,
                expected,
                &mut hasher,
                &mut stored.bytes_read,
            )
            .map_err(io)?;
            self.split.data = std::mem::take(&mut data);
            self.split.eof = eof;
            self.split.lengths.clear();
            self.split.handled = false;
            self.ctx.call(self.split_hook, &mut self.split)?;
            if !self.split.handled {
                return Err(ContentError::Fatal(plugin_api::Error::msg(
                    "no loaded plugin cuts file data into chunks (is the dedup plugin loaded?)",
                )));
            }
            data = std::mem::take(&mut self.split.data);
            let mut pos = 0usize;
            let lengths: Vec<u32> = self.split.lengths.iter().copied().collect();
            for len in lengths {
                let end = pos + len as usize;
                let chunk = data.get(pos..end).ok_or_else(|| {
                    ContentError::Fatal(plugin_api::Error::msg(
                        "a chunking plugin gave chunks past the data",
                    ))
                })?;
                let (id, new) = self.store_chunk(chunk)?;
                stored.chunks.push(id);
                let added = if new { len as u64 } else { 0 };
                stored.bytes_new += added;
                after_chunk(added)?;
                pos = end;
            }
            if eof && pos < data.len() {
                return Err(ContentError::Fatal(plugin_api::Error::msg(
                    "a chunking plugin left data at the end of a file unchunked",
                )));
            }
            data.drain(..pos);
        }
        self.split.data = data;
        let now = std::fs::symlink_metadata(path).map_err(io)?;
        if stored.bytes_read != size
            || now.size() != stored.bytes_read
            || (now.mtime(), now.mtime_nsec() as u32) != mtime
        {
            return Err(ContentError::File(
                "it changed while it was being backed up".into(),
            ));
        }
        stored.checksum = hasher.finalize().to_vec();
        Ok(stored)
    }

    fn store_chunk(&mut self, chunk: &[u8]) -> Result<(ChunkId, bool), ContentError> {
        let req = &mut self.store;
        req.data.clear();
        req.data.extend_from_copy_slice(chunk);
        req.token = self.repo.token(chunk);
        req.handled = false;
        req.stored = false;
        self.ctx.call(self.store_hook, req)?;
        if !req.handled {
            return Err(ContentError::Fatal(plugin_api::Error::msg(
                "no loaded plugin stores chunks (is the dedup plugin loaded?)",
            )));
        }
        Ok((req.chunk_id, req.stored))
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
