//! Reading a changed file and storing its content: read in large blocks,
//! cut into chunks (the `backup-chunk-boundaries` hook), compute each
//! chunk's token, store it or reuse a stored copy (the `backup-store-chunk`
//! hook), and compute the whole-file checksum on the way (of the kind the
//! repository asks for: see `plugin_api::checksum`).
//!
//! A sparse file is read by its data only: `SEEK_DATA`/`SEEK_HOLE` find
//! its holes, and a hole is recorded as one stored chunk of zeros repeated
//! (what a dense run of zeros deduplicates to anyway), without reading,
//! cutting or hashing its zeros. Restores already write such chunks as
//! holes, and the checksum is the same as if the zeros had been read.
//! Each data segment of such a file is chunked from its first to its last
//! non-zero byte, its zeros at either edge recorded like a hole's, so that
//! the same data with other zeros around it (a rewritten disk image)
//! deduplicates whole.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use plugin_api::checksum::{ChecksumKind, FileHasher};
use plugin_api::live_paths::open_unseen;
use plugin_api::payloads::{
    SplitRequest, StoreChunkRequest, BACKUP_CHUNK_BOUNDARIES, BACKUP_STORE_CHUNK,
};
use plugin_api::types::RVec;
use plugin_api::{ChunkId, Context, Hook, Repository};

/// How much of a file is read at once (at least twice the largest chunk
/// by default). 2 MiB rather than 4: each worker holds one such buffer,
/// and reads of 2 MiB cost no more per byte.
const BLOCK: usize = 2 << 20;

/// The smallest read past the size a file claimed (see `fill`).
const MIN_EXCESS_READ: usize = 64 << 10;

/// The smallest hole skipped unread: smaller ones are read as zeros, so
/// that a file with many small holes is not cut into many small chunks
/// (each data segment ends a chunk).
const HOLE_MIN: u64 = 1 << 20;

/// The length of the chunk of zeros a hole is recorded as (repeated; the
/// rest in chunks of zeros of the powers of two it is made of, see
/// [`zero_piece`]): the largest content-defined chunk.
const HOLE_CHUNK: u64 = 16 << 20;

/// The length of the next chunk of zeros for a hole of which `left` bytes
/// are still to be recorded: [`HOLE_CHUNK`] while that much is left, then
/// the largest power of two not above what is left. So every hole, of
/// whatever length, is made of at most 25 distinct chunks of zeros (1 B to
/// 16 MiB), each stored once in a repository: a hole's odd remainder is
/// not a new chunk of its own (which, with compression off, would cost its
/// whole length, again for every hole of another length).
fn zero_piece(left: u64) -> u64 {
    if left >= HOLE_CHUNK {
        HOLE_CHUNK
    } else {
        // `left` is non-zero here: the caller stops at zero.
        1 << (63 - left.max(1).leading_zeros())
    }
}

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
        // So does running out of file descriptors (EMFILE, ENFILE): every
        // file after it failed the same way, and a generation was
        // committed with most of them missing or stale.
        _ if out_of_descriptors(&e) => {
            ContentError::Fatal(plugin_api::Error::msg(no_descriptors_left(&e)))
        }
        _ => ContentError::File(io_reason(&e)),
    }
}

/// The error that stops a backup out of file descriptors ([`out_of_descriptors`]).
pub fn no_descriptors_left(e: &std::io::Error) -> String {
    format!(
        "{e}: obnam has run out of file descriptors; raise the limit (ulimit -n) or give fewer \
         --backup-threads"
    )
}

/// Whether `e` says the process or the system has no file descriptor
/// left (EMFILE, ENFILE): no file can be read until some are closed.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Why an object could not be backed up, from the error of a system call
/// on it: one that is gone says so in the same words wherever the backup
/// found it gone (its `lstat`, its listing, its attributes, its content),
/// not as the raw "No such file or directory".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => VANISHED.to_string(),
        _ => e.to_string(),
    }
}

const CHANGED: &str = "it changed while it was being backed up";
const VANISHED: &str = "it vanished during the backup";

/// What the walk's `lstat` said about a file: the file opened must be the
/// same one, and must not change while it is read.
pub struct Walked {
    pub size: u64,
    pub mtime: (i64, u32),
    /// The change time, unless `--ignore-ctime`.
    pub ctime: Option<(i64, u32)>,
    pub dev: u64,
    pub ino: u64,
}

impl Walked {
    /// Whether `meta` (an `fstat` of the open file) shows it changed since
    /// the walk. The size counts only as `stat` tells it, not as compared
    /// with what was read: a file in `/proc` says 0 bytes and holds more.
    /// The change time counts too: a file rewritten while it was read,
    /// its modification time then set back, kept both and was stored as
    /// the old start and the new end.
    fn changed(&self, meta: &Metadata) -> bool {
        meta.size() != self.size
            || (meta.mtime(), meta.mtime_nsec() as u32) != self.mtime
            || self
                .ctime
                .is_some_and(|c| (meta.ctime(), meta.ctime_nsec() as u32) != c)
    }

    /// Fail the file if its `fstat` shows it changed since the walk.
    fn check(&self, file: &File) -> Result<(), ContentError> {
        let meta = file.metadata().map_err(io)?;
        // Removed while it was read (the open descriptor reads on): gone,
        // as a file removed before its open is, not changed.
        if meta.nlink() == 0 {
            return Err(ContentError::File(VANISHED.into()));
        }
        if self.changed(&meta) {
            return Err(ContentError::File(CHANGED.into()));
        }
        Ok(())
    }
}

/// How an object that is not what the walk saw is described (a regular
/// file in place of a folder the walk saw, or the other way round).
pub(crate) fn what(meta: &Metadata) -> &'static str {
    what_kind(plugin_api::EntryKind::from_mode(meta.mode()))
}

/// How an object of `kind` is described ([`what`]).
pub(crate) fn what_kind(kind: plugin_api::EntryKind) -> &'static str {
    use plugin_api::EntryKind;
    match kind {
        EntryKind::File => "a file",
        EntryKind::Dir => "a folder",
        EntryKind::Symlink => "a symbolic link",
        EntryKind::Fifo => "a FIFO",
        EntryKind::Socket => "a socket",
        EntryKind::CharDevice => "a character device",
        EntryKind::BlockDevice => "a block device",
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
/// maker could not read. It is read without touching its access time
/// where the kernel allows ([`open_unseen`]). The `fstat` of what was opened then checks it is a
/// regular file, the same one (device and inode) the walk saw, unchanged;
/// it is returned with the file.
///
/// The file stays in non-blocking mode: Linux ignores `O_NONBLOCK` for
/// regular files, and a network or FUSE file system that heeds it and
/// fails a read with `EAGAIN` gets the mode cleared then ([`blocking`]).
/// Clearing it at once cost two `fcntl` calls per file, a tenth of the
/// system calls of a backup of many small files.
fn open(path: &Path, walked: &Walked) -> Result<(File, Metadata), ContentError> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match open_unseen(path, flags) {
        Ok(fd) => File::from(fd),
        Err(e) => {
            // A symlink fails with ELOOP, a socket with ENXIO: say what
            // is there now rather than how the open failed.
            return Err(std::fs::symlink_metadata(path)
                .ok()
                .and_then(|now| replaced(&now, walked))
                .unwrap_or_else(|| io(e)));
        }
    };
    let meta = file.metadata().map_err(io)?;
    if let Some(e) = replaced(&meta, walked) {
        return Err(e);
    }
    if walked.changed(&meta) {
        return Err(ContentError::File(CHANGED.into()));
    }
    Ok((file, meta))
}

/// Make reads of `file` (known to be a regular file) wait for data, for a
/// file system that heeds `O_NONBLOCK` on regular files (see [`open`]).
fn blocking(file: &File) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    rustix::fs::fcntl_setfl(file, flags - OFlags::NONBLOCK)?;
    Ok(())
}

/// What storing a file's content produced.
pub struct Stored {
    pub chunks: Vec<ChunkId>,
    pub checksum: Vec<u8>,
    /// The bytes read, which are the file's size as recorded: it may
    /// differ from the size `stat` gives for files such as those in `/proc`.
    pub bytes_read: u64,
    pub bytes_new: u64,
    /// Of `bytes_read`, the bytes of holes, which were not read.
    pub bytes_in_holes: u64,
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
    /// The chunks of zeros stored for holes, by length: shared by a
    /// worker's storers (see `store_piped`), so that a hole's chunk is made
    /// and stored once, not once per storing thread.
    zero_chunks: ZeroChunks,
}

/// Chunks of zeros stored, by length.
type ZeroChunks = Arc<Mutex<HashMap<u64, ChunkId>>>;

impl Storer {
    fn new(repo: Repository, hook: Hook<StoreChunkRequest>, zero_chunks: ZeroChunks) -> Self {
        Storer {
            repo,
            hook,
            req: StoreChunkRequest::default(),
            zero_chunks,
        }
    }

    /// The chunk of `len` zeros a hole is recorded as: stored through the
    /// hook the first time (like any chunk, so dedup and the filters see
    /// it), reused after. Returns its id and the bytes it added.
    fn zero_chunk(&mut self, ctx: &Context<'_>, len: u64) -> Result<(ChunkId, u64), ContentError> {
        // Held while a chunk of zeros is made: a storer that needs one of
        // the same length waits for it instead of making a second (up to
        // 16 MiB each, several at once when a large file starts with
        // holes).
        let zero_chunks = self.zero_chunks.clone();
        let mut known = zero_chunks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = known.get(&len) {
            return Ok((id, 0));
        }
        // Zeroed by the allocator (`calloc`): a large block is fresh pages,
        // which hashing and copying the chunk read without making them
        // resident. The request's own buffer is put back after, so that a
        // storer does not keep a 16 MiB one.
        let mut zeros = RVec::from(vec![0u8; len as usize]);
        std::mem::swap(&mut self.req.data, &mut zeros);
        let stored = self.store_request(ctx);
        std::mem::swap(&mut self.req.data, &mut zeros);
        let (id, added) = stored?;
        known.insert(len, id);
        Ok((id, added))
    }

    /// Store one chunk; returns its id and the bytes it added to the repository.
    fn store(&mut self, ctx: &Context<'_>, chunk: &[u8]) -> Result<(ChunkId, u64), ContentError> {
        self.req.data.clear();
        self.req.data.extend_from_copy_slice(chunk);
        self.store_request(ctx)
    }

    /// Store a chunk the caller owns, without copying it: it becomes the
    /// request's data.
    fn store_owned(
        &mut self,
        ctx: &Context<'_>,
        mut chunk: RVec<u8>,
    ) -> Result<(ChunkId, u64), ContentError> {
        std::mem::swap(&mut self.req.data, &mut chunk);
        self.store_request(ctx)
    }

    /// Store the chunk in the request's data.
    fn store_request(&mut self, ctx: &Context<'_>) -> Result<(ChunkId, u64), ContentError> {
        let req = &mut self.req;
        let len = req.data.len() as u64;
        let token = self.repo.token(req.data.as_slice());
        req.token = token;
        req.handled = false;
        req.stored = false;
        ctx.call(self.hook, req)?;
        if !req.handled {
            return Err(ContentError::Fatal(plugin_api::Error::msg(
                "no loaded plugin stores chunks (is the dedup plugin loaded?)",
            )));
        }
        // A chunk's id names its content: one of another token can only
        // be a plugin's mistake, and recorded, a file would restore with
        // other data (and unchanged, stay so in every later generation).
        if req.chunk_id.token != token {
            return Err(ContentError::Fatal(plugin_api::Error::msg(format!(
                "a callback of hook '{BACKUP_STORE_CHUNK}' answered a chunk id whose token is \
                 not the chunk's (the id of other content); nothing is recorded with it"
            ))));
        }
        Ok((req.chunk_id, if req.stored { len } else { 0 }))
    }

    /// Store the next piece of a file and add it to `out`.
    fn add(
        &mut self,
        ctx: &Context<'_>,
        piece: Piece<'_>,
        out: &mut Collected,
        after_chunk: AfterChunk<'_>,
    ) -> Result<(), ContentError> {
        let ((id, added), len) = match piece {
            Piece::Data(chunk) => (self.store(ctx, chunk)?, chunk.len() as u64),
            Piece::Owned(chunk) => {
                let len = chunk.len() as u64;
                (self.store_owned(ctx, chunk)?, len)
            }
            Piece::Zeros(len) => return self.add_zeros(ctx, len, out, after_chunk),
        };
        out.chunks.push(id);
        out.bytes_new += added;
        after_chunk(len, added).map_err(ContentError::Fatal)
    }

    /// Add a hole of `len` bytes: chunks of [`HOLE_CHUNK`] zeros, and the
    /// rest in chunks of powers of two ([`zero_piece`]).
    ///
    /// A hole is no new data, even where its chunk of zeros is stored for
    /// the first time: it is not counted in the bytes new (a 50 MB sparse
    /// file said "27.6 MB new" where the repository grew by a few
    /// hundred KiB), nor towards a checkpoint.
    fn add_zeros(
        &mut self,
        ctx: &Context<'_>,
        len: u64,
        out: &mut Collected,
        after_chunk: AfterChunk<'_>,
    ) -> Result<(), ContentError> {
        let mut left = len;
        while left > 0 {
            let now = zero_piece(left);
            let (id, _stored) = self.zero_chunk(ctx, now)?;
            out.chunks.push(id);
            after_chunk(now, 0).map_err(ContentError::Fatal)?;
            left -= now;
        }
        Ok(())
    }
}

/// A piece of a file's content, as it is stored: a chunk of data
/// (borrowed, or owned when it was handed from another thread), or a
/// hole's zeros (stored as chunks of at most [`HOLE_CHUNK`]: one piece
/// for the whole hole, so that a long hole is one message between the
/// reading and the storing thread, not thousands).
enum Piece<'a> {
    Data(&'a [u8]),
    Owned(RVec<u8>),
    Zeros(u64),
}

/// Called after each chunk with its length (for the progress) and the
/// bytes it added to the repository (for checkpoints).
pub type AfterChunk<'f> = &'f (dyn Fn(u64, u64) -> plugin_api::Result<()> + Sync);

/// The hooks and buffers of one worker, reused file after file.
pub struct ContentWriter<'a, 'c> {
    ctx: &'a Context<'c>,
    splitter: Splitter,
    storer: Storer,
    /// The kind of whole-file checksum the repository records.
    checksum_kind: ChecksumKind,
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
            checksum_kind: repo.file_checksum_kind(),
            storer: Storer::new(repo, store_hook, ZeroChunks::default()),
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
        let (file, meta) = open(path, walked)?;
        let plan = sparse_plan(&file, &meta).map_err(io)?;
        refuse_endless_holes(plan.as_deref())?;
        let mut source = Source {
            file,
            walked,
            hasher: FileHasher::new(self.checksum_kind),
            bytes_read: 0,
            end: None,
            holes: 0,
        };
        let plan = plan.as_deref();
        let collected = if walked.size < PIPELINE_FROM {
            self.store_inline(&mut source, plan, after_chunk)?
        } else {
            self.store_piped(&mut source, plan, after_chunk)?
        };
        Ok(Stored {
            chunks: collected.chunks,
            checksum: source.hasher.finish(),
            bytes_read: source.bytes_read,
            bytes_new: collected.bytes_new,
            bytes_in_holes: source.holes,
        })
    }

    /// Store each chunk as soon as it is cut, on this thread.
    fn store_inline(
        &mut self,
        source: &mut Source<'_>,
        plan: Option<&[Segment]>,
        after_chunk: AfterChunk<'_>,
    ) -> Result<Collected, ContentError> {
        let ctx = self.ctx;
        let storer = &mut self.storer;
        let mut out = Collected::default();
        self.splitter.read_file(ctx, source, plan, &mut |piece| {
            storer.add(ctx, piece, &mut out, after_chunk)
        })?;
        Ok(out)
    }

    /// Cut chunks on this thread and store them on others, through a short
    /// queue: for large files. Storing (hashing, compressing, encrypting,
    /// packing) costs several times what cutting does, so one large file
    /// (a disk image at the end of a run, with nothing else left to do)
    /// keeps every processor busy only if several threads store its chunks;
    /// each piece carries its place in the file, and the chunk list is put
    /// back in order at the end.
    fn store_piped(
        &mut self,
        source: &mut Source<'_>,
        plan: Option<&[Segment]>,
        after_chunk: AfterChunk<'_>,
    ) -> Result<Collected, ContentError> {
        let ctx = self.ctx;
        let repo = &self.storer.repo;
        let hook = self.storer.hook;
        let zero_chunks = &self.storer.zero_chunks;
        let splitter = &mut self.splitter;
        let storers = storing_threads();
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::bounded::<(usize, Piece<'static>)>(4 + 2 * storers);
            let consumers: Vec<_> = (0..storers)
                .map(|_| {
                    let (rx, failed, repo) = (rx.clone(), &failed, repo.clone());
                    let zero_chunks = zero_chunks.clone();
                    scope.spawn(move || -> Result<StoredPieces, ContentError> {
                        let mut storer = Storer::new(repo, hook, zero_chunks);
                        let mut stored = StoredPieces::default();
                        for (place, piece) in rx {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            let mut one = Collected::default();
                            if let Err(e) = storer.add(ctx, piece, &mut one, after_chunk) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                            stored.bytes_new += one.bytes_new;
                            stored.pieces.push((place, one.chunks));
                        }
                        Ok(stored)
                    })
                })
                .collect();
            drop(rx);
            let mut place = 0;
            let read = splitter.read_file(ctx, source, plan, &mut |piece| {
                // The one copy of a chunk on its way to a storing thread:
                // it becomes the request's data there.
                let owned = match piece {
                    Piece::Data(chunk) => Piece::Owned(RVec::from(chunk)),
                    Piece::Owned(chunk) => Piece::Owned(chunk),
                    Piece::Zeros(len) => Piece::Zeros(len),
                };
                place += 1;
                // A send fails only if every storing thread stopped on an
                // error, which joining them reports.
                if failed.load(Ordering::Relaxed) {
                    return Err(ContentError::File(String::new()));
                }
                tx.send((place, owned))
                    .map_err(|_| ContentError::File(String::new()))
            });
            drop(tx);
            let mut out = Collected::default();
            let mut pieces = Vec::new();
            let mut first_error = None;
            for consumer in consumers {
                let stored = consumer.join().map_err(|_| {
                    ContentError::Fatal(plugin_api::Error::msg("a chunk storing thread panicked"))
                })?;
                match stored {
                    Ok(stored) => {
                        out.bytes_new += stored.bytes_new;
                        pieces.extend(stored.pieces);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            read?;
            pieces.sort_unstable_by_key(|(place, _)| *place);
            out.chunks = pieces.into_iter().flat_map(|(_, chunks)| chunks).collect();
            Ok(out)
        })
    }
}

/// What one storing thread of [`ContentWriter::store_piped`] stored: the
/// chunks of each piece it took, by the piece's place in the file.
#[derive(Default)]
struct StoredPieces {
    pieces: Vec<(usize, Vec<ChunkId>)>,
    bytes_new: u64,
}

/// How many threads store the chunks of one large file: one per
/// processor, at most four (the reading thread cuts far faster than one
/// thread stores, and no faster than about four).
fn storing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

/// An open file being read: what the walk saw of it, and what was read of
/// it so far.
struct Source<'w> {
    file: File,
    walked: &'w Walked,
    hasher: FileHasher,
    /// Where in the file the next read starts (holes skipped count too).
    bytes_read: u64,
    /// Where the data being read ends (a sparse file's data segment), or
    /// `None` to read to the end of the file.
    end: Option<u64>,
    /// Bytes of holes skipped.
    holes: u64,
}

/// A part of a sparse file: data to read, a hole of so many bytes, or so
/// many zeros at the edge of a data segment (found by
/// [`trim_zero_edges`], and not read again).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Data(Range<u64>),
    Hole(u64),
    Zeros(u64),
}

/// How much of a data segment's edge is read at a time to find where its
/// zeros end.
const EDGE_READ: usize = 64 << 10;

/// Cut each data segment of a sparse file's plan at its first and last
/// non-zero byte: the zeros before and after become [`Segment::Zeros`].
///
/// Why: a file system allocates whole blocks, and a program that copies
/// or rewrites a sparse file (a disk image with bytes inserted) leaves
/// holes only where whole blocks of its own were zero. So the same data
/// comes back with a different number of zeros before it, and chunking
/// that starts at the segment's first byte would cut other chunks at its
/// start and end, losing their deduplication. Chunking from the first
/// non-zero byte makes the cuts depend on the data alone. Costs one read
/// of [`EDGE_READ`] at each edge, in the common case, which the page
/// cache serves again when the data is read.
fn trim_zero_edges(file: &File, plan: Vec<Segment>) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::with_capacity(plan.len() + 2);
    let mut buf = vec![0u8; EDGE_READ];
    for segment in plan {
        let Segment::Data(range) = segment else {
            out.push(segment);
            continue;
        };
        let Some(first) = first_non_zero(file, range.clone(), &mut buf)? else {
            // Shorter than planned (the read fails as changed later) or
            // all zeros.
            match zeros_or_short(file, &range)? {
                true => out.push(Segment::Zeros(range.end - range.start)),
                false => out.push(Segment::Data(range)),
            }
            continue;
        };
        let Some(last) = last_non_zero(file, first..range.end, &mut buf)? else {
            out.push(Segment::Data(range));
            continue;
        };
        if first > range.start {
            out.push(Segment::Zeros(first - range.start));
        }
        out.push(Segment::Data(first..last + 1));
        if range.end > last + 1 {
            out.push(Segment::Zeros(range.end - last - 1));
        }
    }
    Ok(out)
}

/// Read `range` of `file` into `buf` (at most its length), all of it:
/// `None` if the file ends first.
fn read_edge<'b>(
    file: &File,
    range: &Range<u64>,
    buf: &'b mut [u8],
) -> std::io::Result<Option<&'b [u8]>> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(range.end - range.start).map_or(buf.len(), |n| n.min(buf.len()));
    match file.read_exact_at(&mut buf[..len], range.start) {
        Ok(()) => Ok(Some(&buf[..len])),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the first non-zero byte of `range` is; `None` if there is none,
/// or the file ended first.
fn first_non_zero(file: &File, range: Range<u64>, buf: &mut [u8]) -> std::io::Result<Option<u64>> {
    let mut pos = range.start;
    while pos < range.end {
        let Some(read) = read_edge(file, &(pos..range.end), buf)? else {
            return Ok(None);
        };
        if let Some(i) = read.iter().position(|&b| b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += read.len() as u64;
    }
    Ok(None)
}

/// Where the last non-zero byte of `range` is, reading from its end;
/// `None` if there is none, or the file ended first.
fn last_non_zero(file: &File, range: Range<u64>, buf: &mut [u8]) -> std::io::Result<Option<u64>> {
    let mut end = range.end;
    while end > range.start {
        let from = end.saturating_sub(buf.len() as u64).max(range.start);
        let Some(read) = read_edge(file, &(from..end), buf)? else {
            return Ok(None);
        };
        if let Some(i) = read.iter().rposition(|&b| b != 0) {
            return Ok(Some(from + i as u64));
        }
        end = from;
    }
    Ok(None)
}

/// The most bytes of holes one file may have: each [`HOLE_CHUNK`] of
/// them is a reference in the file's entry (and each 64 KiB an update of
/// its checksum). 16 TiB, the largest file ext4 holds, is a million
/// references (about 40 MB in the folder's tree object, a few seconds).
pub const MAX_HOLES: u64 = 16 << 40;

/// Refuse a file whose holes add up to more than [`MAX_HOLES`], before
/// anything of it is read: a file of a few KB of data and exabytes of
/// holes (`truncate -s 8E`, which any user may leave in a folder that is
/// backed up) took memory and time without end (8 EiB never ended; 256
/// TiB took 2 GB, and was then left out as "too many entries" for its
/// folder).
fn refuse_endless_holes(plan: Option<&[Segment]>) -> Result<(), ContentError> {
    let holes: u64 = plan
        .unwrap_or_default()
        .iter()
        .map(|segment| match segment {
            Segment::Hole(len) | Segment::Zeros(len) => *len,
            Segment::Data(_) => 0,
        })
        .fold(0, u64::saturating_add);
    if holes > MAX_HOLES {
        return Err(ContentError::File(format!(
            "its holes add up to {}, more than a generation records of one file ({} of \
             holes): not backed up",
            plugin_api::human::bytes(holes),
            plugin_api::human::bytes(MAX_HOLES)
        )));
    }
    Ok(())
}

/// Whether a data segment with no non-zero byte is there whole (so all
/// zeros), not cut short by a truncation.
fn zeros_or_short(file: &File, range: &Range<u64>) -> std::io::Result<bool> {
    Ok(file.metadata()?.len() >= range.end)
}

/// A file's data segments and holes (holes of at least [`HOLE_MIN`]), in
/// order, from `SEEK_DATA` and `SEEK_HOLE`; `None` if it has no such hole
/// or the file system cannot tell. Leaves the file's offset at 0.
///
/// Only a file whose allocated blocks fall short of its size by
/// [`HOLE_MIN`] is looked at, so that a dense file costs no `lseek`s. What
/// the plan says is checked like everything else: a file written to while
/// it is read changes its modification time, and fails as changed.
fn sparse_plan(file: &File, meta: &Metadata) -> std::io::Result<Option<Vec<Segment>>> {
    use rustix::fs::SeekFrom;
    let size = meta.size();
    if meta.blocks().saturating_mul(512).saturating_add(HOLE_MIN) > size {
        return Ok(None);
    }
    // The edges of data segments are read with `pread`, which must wait.
    blocking(file)?;
    let plan = (|| {
        let mut plan = Vec::new();
        // [data_from, pos) is data not yet in the plan: holes too small
        // to skip stay in it.
        let (mut data_from, mut pos) = (0u64, 0u64);
        while pos < size {
            let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
                Ok(at) => at.min(size),
                // No data after `pos`: the rest is a hole.
                Err(rustix::io::Errno::NXIO) => size,
                Err(_) => return None,
            };
            if data < pos {
                return None;
            }
            if data - pos >= HOLE_MIN {
                if pos > data_from {
                    plan.push(Segment::Data(data_from..pos));
                }
                plan.push(Segment::Hole(data - pos));
                data_from = data;
            }
            if data >= size {
                break;
            }
            let hole = match rustix::fs::seek(file, SeekFrom::Hole(data)) {
                Ok(at) => at.min(size),
                Err(_) => return None,
            };
            if hole <= data {
                return None;
            }
            pos = hole;
        }
        if size > data_from {
            plan.push(Segment::Data(data_from..size));
        }
        plan.iter()
            .any(|s| matches!(s, Segment::Hole(_)))
            .then_some(plan)
    })();
    rustix::fs::seek(file, SeekFrom::Start(0))?;
    plan.map(|plan| trim_zero_edges(file, plan)).transpose()
}

impl Splitter {
    /// Read a whole file and hand out its pieces in order: with no plan,
    /// everything through [`read_chunks`](Self::read_chunks); with a
    /// sparse file's plan, each data segment through it and each hole as
    /// chunks of zeros, which are neither read nor cut nor hashed.
    fn read_file(
        &mut self,
        ctx: &Context<'_>,
        source: &mut Source<'_>,
        plan: Option<&[Segment]>,
        on_piece: &mut dyn FnMut(Piece<'_>) -> Result<(), ContentError>,
    ) -> Result<(), ContentError> {
        let Some(plan) = plan else {
            return self.read_chunks(ctx, source, &mut |chunk| on_piece(Piece::Data(chunk)));
        };
        for segment in plan {
            match segment {
                Segment::Hole(len) | Segment::Zeros(len) => {
                    source.hasher.update_zeros(*len);
                    source.bytes_read += len;
                    // Edge zeros were read (to find where they end).
                    if matches!(segment, Segment::Hole(_)) {
                        source.holes += len;
                    }
                    on_piece(Piece::Zeros(*len))?;
                }
                Segment::Data(range) => {
                    rustix::fs::seek(&source.file, rustix::fs::SeekFrom::Start(range.start))
                        .map_err(|e| io(e.into()))?;
                    source.end = Some(range.end);
                    self.read_chunks(ctx, source, &mut |chunk| on_piece(Piece::Data(chunk)))?;
                    // Shorter than planned: it was truncated meanwhile.
                    if source.bytes_read != range.end {
                        return Err(ContentError::File(CHANGED.into()));
                    }
                }
            }
        }
        source.end = None;
        // A file of holes only was never checked while read.
        source.walked.check(&source.file)
    }

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
                end,
                holes: _,
            } = source;
            eof = fill(file, &mut data, walked.size, *end, hasher, bytes_read).map_err(io)?;
            // Checked after every block, not only at the end: a file that
            // is appended to as fast as it is read would have no end.
            walked.check(file)?;
            let given = (data.as_ptr(), data.len());
            self.req.data = std::mem::take(&mut data);
            self.req.eof = eof;
            self.req.lengths.clear();
            self.req.handled = false;
            let called = ctx.call(self.hook, &mut self.req);
            data = std::mem::take(&mut self.req.data);
            called?;
            // What is cut must be what was read (and hashed into the
            // file's checksum): data a callback shortened, lengthened or
            // replaced would be stored as the file, exit 0, and restore
            // as other content. (A change in place is not seen: the
            // guide says never to change it.)
            if (data.as_ptr(), data.len()) != given {
                return Err(ContentError::Fatal(plugin_api::Error::msg(format!(
                    "a callback of hook '{BACKUP_CHUNK_BOUNDARIES}' changed the data it was \
                     to cut ({} bytes given, {} back); nothing is recorded with it",
                    given.1,
                    data.len()
                ))));
            }
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

/// Read until `data` holds a block, or the file (or the data segment
/// ending at `end`) ends; hash what was read and add its length to
/// `total`. Returns whether the end was reached.
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
    end: Option<u64>,
    hasher: &mut FileHasher,
    total: &mut u64,
) -> std::io::Result<bool> {
    let start = data.len();
    let room = BLOCK.saturating_sub(start).max(BLOCK / 2);
    let to_read = match (end, size.checked_sub(*total)) {
        (Some(end), _) => usize::try_from(end.saturating_sub(*total)).unwrap_or(usize::MAX),
        (None, Some(left)) if left > 0 => usize::try_from(left)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
        (None, _) => usize::try_from(*total - size)
            .unwrap_or(usize::MAX)
            .max(MIN_EXCESS_READ),
    };
    let want = start + room.min(to_read);
    data.resize(want, 0);
    let mut filled = start;
    let mut eof = false;
    let mut made_blocking = false;
    while filled < want {
        match file.read(&mut data[filled..want]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Once: a file system that still says so is failing.
            Err(e) if e.kind() == ErrorKind::WouldBlock && !made_blocking => {
                made_blocking = true;
                if let Err(e) = blocking(file) {
                    data.truncate(start);
                    return Err(e);
                }
            }
            Err(e) => {
                data.truncate(start);
                return Err(e);
            }
        }
    }
    data.truncate(filled);
    hasher.update(&data[start..filled]);
    *total += (filled - start) as u64;
    // A data segment ends where the holes said, not at a short read.
    Ok(eof || end == Some(*total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// A file's plan, each data segment cut to its non-zero bytes: the
    /// same data with other zeros around it gives the same data segments,
    /// shifted; zeros only become zeros; a file shorter than planned keeps
    /// its segment (to fail as changed when read).
    #[test]
    fn data_segments_are_cut_at_their_first_and_last_non_zero_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251 + 1) as u8).collect();
        let write = |at: u64, len: u64| {
            let mut f = File::create(&path).unwrap();
            f.set_len(len).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&data).unwrap();
            File::open(&path).unwrap()
        };
        let len = data.len() as u64;
        for (lead, trail) in [
            (0, 0),
            (1, 1),
            (3000, 70_000),
            (150_000, 5),
            (65_536, 65_536),
        ] {
            let f = write(lead, lead + len + trail);
            let plan = vec![Segment::Hole(8 << 20), Segment::Data(0..lead + len + trail)];
            let mut want = vec![Segment::Hole(8 << 20)];
            if lead > 0 {
                want.push(Segment::Zeros(lead));
            }
            want.push(Segment::Data(lead..lead + len));
            if trail > 0 {
                want.push(Segment::Zeros(trail));
            }
            assert_eq!(trim_zero_edges(&f, plan).unwrap(), want, "{lead} {trail}");
        }
        File::create(&path).unwrap().set_len(300_000).unwrap();
        let zeros = File::open(&path).unwrap();
        let plan = vec![Segment::Data(0..300_000), Segment::Hole(1 << 20)];
        assert_eq!(
            trim_zero_edges(&zeros, plan).unwrap(),
            vec![Segment::Zeros(300_000), Segment::Hole(1 << 20)]
        );
        let plan = vec![Segment::Data(0..400_000)];
        assert_eq!(
            trim_zero_edges(&zeros, plan.clone()).unwrap(),
            plan,
            "shorter than planned"
        );
    }

    /// A hole of any length is recorded as chunks of zeros that add up to
    /// it, drawn from 25 lengths at most, whatever the holes.
    #[test]
    fn holes_are_made_of_few_distinct_chunks_of_zeros() {
        let mut lengths = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let holes = (0..2000u64).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + x % (100 << 20)
        });
        for hole in holes.chain([1, HOLE_MIN, HOLE_CHUNK, HOLE_CHUNK + 1, 3 * HOLE_CHUNK - 1]) {
            let mut left = hole;
            let mut pieces = 0;
            while left > 0 {
                let piece = zero_piece(left);
                assert!(piece > 0 && piece <= left, "{hole}: {piece} of {left}");
                assert!(piece == HOLE_CHUNK || piece.is_power_of_two(), "{piece}");
                lengths.insert(piece);
                left -= piece;
                pieces += 1;
            }
            assert!(pieces <= hole / HOLE_CHUNK + 24, "{hole}: {pieces} pieces");
        }
        assert!(lengths.len() <= 25, "{lengths:?}");
    }
}
