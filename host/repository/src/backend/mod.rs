//! The stores a repository can live in, one module each: [`local`] (a
//! folder), [`sftp`] (a folder on an SSH server) and [`s3`] (a prefix of
//! an S3 bucket). Each is an OpenDAL service plus what that store does its
//! own way, behind the [`Backend`] trait.
//!
//! [`Storage`] holds what every store shares (the runtime, timeouts and
//! retries, byte counts, background writes, the crash limit, injected
//! faults) and asks its backend only the questions of this trait. No code
//! outside a store's own module, but [`open`] (which picks the module
//! from the parsed [`Location`]), asks which store it is.

use std::time::{Duration, SystemTime};

use futures_util::{future::BoxFuture, TryStreamExt};
use opendal::Operator;

use super::location::Location;
use super::storage::{Storage, StorageError, StorageOptions};

pub mod local;
pub mod s3;
pub mod sftp;

/// How failed operations of a store are retried: always by running the
/// whole operation again from a fresh start (`storage/retry.rs`), never
/// by OpenDAL's retry layer. That layer marks every error that passes
/// through it as retried ("persistent"), even one it never tried again (a
/// full disk, a refusal): only a loop of obnam's own knows which failures
/// it gave up on after retrying, and says so only of those.
#[derive(Clone, Copy)]
pub struct Retries {
    /// Whether a failure is worth running the operation again.
    pub retryable: fn(&opendal::Error) -> bool,
    /// Whether an open reader may be read again after one of its reads
    /// failed. Not where a failure breaks the session the reader belongs
    /// to (SFTP): the whole read, reader and all, is run again instead.
    pub reader_survives_failure: bool,
}

impl Default for Retries {
    /// Transient failures are retried, and readers survive them.
    fn default() -> Self {
        Retries {
            retryable: opendal::Error::is_temporary,
            reader_survives_failure: true,
        }
    }
}

/// What the engine asks of a store before it decides how to use it: one
/// field per question, so that no caller needs to know which store it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether packs are written in the background, overlapping with the
    /// work of cutting and compressing chunks (worth it where each write
    /// waits for the network; a local write costs little more than the
    /// copy, and failing at once is simpler).
    pub background_writes: bool,
    /// How many sealed packs may wait to be written at once: more keep
    /// slow uploads overlapping, fewer bound the memory they hold.
    pub packs_in_flight: usize,
    /// Whether a blob is read with its whole pack, kept for the next reads
    /// (a request costs a round trip), rather than with a ranged read.
    pub whole_pack_reads: bool,
    /// How many small objects (generation records, index objects) are
    /// read at once: on a remote store each is a round trip, and a client
    /// with years of generations has thousands.
    pub parallel_reads: usize,
    /// Whether generation and client records are kept in the local
    /// cache, each read again only when the listing shows another
    /// version of it ([`crate::record_cache`]): where a read is a round
    /// trip, a client with years of generations would read thousands at
    /// every run.
    pub cache_records: bool,
}

/// What one listing of a folder shows
/// ([`Backend::list_direct_with_others`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FolderListing {
    /// The names of the objects in it.
    pub objects: Vec<String>,
    /// The names of entries that cannot be objects: in a folder of
    /// objects, something that took an object's place (damage).
    pub not_objects: Vec<String>,
}

/// One kind of store: what it does its own way. The defaults are what an
/// object store does (S3).
pub trait Backend: Send + Sync + 'static {
    /// How failed operations are retried.
    fn retries(&self) -> Retries {
        Retries::default()
    }

    /// What the engine should do to use the store well. The default is
    /// that of a store where every operation waits for the network.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            background_writes: true,
            packs_in_flight: 6,
            whole_pack_reads: true,
            parallel_reads: 16,
            cache_records: true,
        }
    }

    /// Write one whole object atomically: a killed run never leaves a
    /// partial object under `key`.
    fn put<'a>(
        &'a self,
        op: &'a Operator,
        key: &'a str,
        data: bytes::Bytes,
    ) -> BoxFuture<'a, Result<(), opendal::Error>> {
        Box::pin(async move { op.write(key, data).await.map(|_| ()) })
    }

    /// Read a whole object as the pieces it arrived in; `None` if it is
    /// longer than `limit` bytes (then reading stops there).
    fn read_whole<'a>(
        &'a self,
        op: &'a Operator,
        key: &'a str,
        limit: u64,
    ) -> BoxFuture<'a, Result<Option<opendal::Buffer>, opendal::Error>> {
        Box::pin(read_pieces(op, key, limit, |piece| piece))
    }

    /// Create an object unless there is one under `key` already, as
    /// atomically as the store can ([`Storage::create_new`]). The write
    /// is counted already; fault injection is the caller's.
    fn create_new(&self, storage: &Storage, key: &str, data: Vec<u8>) -> Result<(), StorageError>;

    /// Read `len` bytes of object `key` from `offset`, on the calling
    /// thread, where the store can do that without the async runtime (a
    /// local file: one `pread`); `None` where it cannot, and the read goes
    /// through OpenDAL. A read through the runtime costs two thread
    /// hand-offs, which for the small reads of trees and chunks in a local
    /// folder cost more than the read itself.
    fn read_range_direct(
        &self,
        _key: &str,
        _offset: u64,
        _len: u64,
    ) -> Option<std::io::Result<Vec<u8>>> {
        None
    }

    /// Write object `key` whole on the calling thread, where the store can
    /// do that without the async runtime (a local file: a temporary file
    /// written, synced and renamed into place, as OpenDAL's atomic write
    /// does); `None` where it cannot, and the write goes through OpenDAL.
    /// Through the runtime a local write of one pack took about ten thread
    /// hand-offs (a blocking task for each step), a quarter of all the
    /// context switches of an initial backup.
    fn put_direct(&self, _key: &str, _data: &[u8]) -> Option<std::io::Result<()>> {
        None
    }

    /// The objects in `folder` (a key prefix ending in `/`), listed on the
    /// calling thread where the store can (a local folder: `readdir`s);
    /// `None` where it cannot, and the listing goes through OpenDAL. With
    /// `recursive`, the whole keys of the objects at any depth below it,
    /// else the names of those directly in it; unsorted; a folder that
    /// does not exist holds none. Through OpenDAL's fs service a listing
    /// is a blocking task and a `stat` per entry, each handed to the
    /// runtime and back: listing the packs of the benchmark corpus's
    /// repository (87 folders), which every backup does, took longer than
    /// `readdir` alone by a factor of ten.
    fn list_direct(&self, _folder: &str, _recursive: bool) -> Option<std::io::Result<Vec<String>>> {
        None
    }

    /// The names directly in `folder` (a key prefix ending in `/`), in one
    /// listing on the calling thread where the store can: of its objects,
    /// as [`list_direct`](Self::list_direct) lists them, and of what is
    /// there under a name but cannot be an object (on a local folder: a
    /// folder, a FIFO, a socket, a device, a dangling symbolic link);
    /// unsorted. `None` where the store cannot, and the objects are listed
    /// through OpenDAL: on an object store every name is an object.
    fn list_direct_with_others(&self, _folder: &str) -> Option<std::io::Result<FolderListing>> {
        None
    }

    /// Read object `key` whole, if it is at most `limit` bytes long (else
    /// an error of kind `FileTooLarge`), on the calling thread where the
    /// store can (see [`read_range_direct`](Self::read_range_direct)).
    /// What cannot be an object (a local FIFO) is an error carrying
    /// [`NotAnObject`](crate::storage::NotAnObject), here and in
    /// `read_range_direct`; a store that can read this way reads every
    /// whole object this way, so that none is opened through OpenDAL.
    fn read_limited_direct(&self, _key: &str, _limit: u64) -> Option<std::io::Result<Vec<u8>>> {
        None
    }

    /// Delete the temporary objects that crashed writers left, last
    /// modified before `cutoff`; returns how many were deleted.
    fn remove_stale_temporaries(&self, _storage: &Storage, _cutoff: SystemTime) -> usize {
        0
    }

    /// Remove what opening created, if creating the repository failed
    /// before anything was written.
    fn abandon_creation(&self) {}

    /// Why a repository could not be made where this store points, found
    /// without writing (for a run that pretends to create one); `None`:
    /// nothing stands in the way that a look can see. A local folder is
    /// looked at as it is opened.
    fn cannot_hold_repository(&self, _storage: &Storage) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Delete the temporary objects of writes that were abandoned in
    /// flight (the storage closing aborted them), each tried once; returns
    /// how many were deleted. Stores that write no temporaries have none.
    fn remove_abandoned_temporaries<'a>(&'a self, _op: &'a Operator) -> BoxFuture<'a, usize> {
        Box::pin(async { 0 })
    }

    /// End the runtime that ran the store's futures, and whatever the
    /// store's connections left behind. `interrupted`: the run was.
    fn close(&self, runtime: tokio::runtime::Runtime, _interrupted: bool) {
        runtime.shutdown_timeout(Duration::from_secs(10));
    }
}

/// Object `key` read whole as the pieces it arrives in, each passed
/// through `keep` (a copy, where the reader reuses its blocks); `None` if
/// it is longer than `limit` bytes, and reading stops there.
pub(crate) async fn read_pieces(
    op: &Operator,
    key: &str,
    limit: u64,
    keep: impl Fn(bytes::Bytes) -> bytes::Bytes,
) -> Result<Option<opendal::Buffer>, opendal::Error> {
    let mut stream = op.reader(key).await?.into_stream(..).await?;
    let (mut pieces, mut len) = (Vec::new(), 0u64);
    while let Some(buffer) = stream.try_next().await? {
        len += buffer.len() as u64;
        if len > limit {
            return Ok(None);
        }
        pieces.extend(buffer.map(&keep));
    }
    Ok(Some(opendal::Buffer::from(pieces)))
}

/// Open the store `location` names: its backend, and its OpenDAL
/// operator without the shared layers.
pub fn open(
    location: &Location,
    url: &str,
    options: &StorageOptions,
) -> Result<(Box<dyn Backend>, Operator), StorageError> {
    match location {
        Location::Local(root) => local::open(root, url),
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => sftp::open(
            url,
            &sftp::Server {
                user: user.as_deref(),
                host,
                port: *port,
                path,
            },
            options,
        ),
        Location::S3 { bucket, prefix } => s3::open(url, bucket, prefix, options),
    }
}

/// An error of an OpenDAL service's setup as a [`StorageError`].
pub(crate) fn setup_error(url: &str, e: opendal::Error) -> StorageError {
    StorageError::Setup {
        url: url.to_string(),
        message: super::storage::describe(&e),
    }
}
