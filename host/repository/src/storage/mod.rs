//! Where repository objects live: a small synchronous object-store
//! interface over an Apache OpenDAL `Operator`.
//!
//! The repository needs only whole-object writes, whole and ranged reads,
//! deletes and listing one folder. Objects are written once and never
//! changed. The URL ([`Location`]) picks the store, and the store's own
//! module in [`crate::backend`] ([`Backend`]) does what that store does its
//! own way (atomic writes, creating an object only if absent, cleaning up
//! temporaries, closing its connections).
//!
//! Every store gets a `TimeoutLayer`, and retries with exponential backoff
//! and jitter for transient errors (whole operations run again: see
//! [`retry`]), so that a flaky network costs time, not a backup, and a
//! dead one ends the run with an error naming the URL. The first write
//! that times out leaves one write at a time for the rest of the run
//! (`write_gate.rs`).
//!
//! [`Storage`] adds what every backend shares: counting bytes written,
//! background writes (`background.rs`), refusing writes once the run is
//! interrupted, and two development aids: the crash limit (`--crash-limit
//! N` ends the process abruptly before the write after the N-th, leaving
//! the repository as `kill -9` would), and injected faults
//! (`--testing-storage-faults`, see [`super::fault_injection`]), which
//! every operation consults first, whatever the store.

use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backend::Backend;
pub use super::backend::{Capabilities, FolderListing};
use super::fault_injection::{FaultSpec, Faults, Op};

use opendal::{layers::TimeoutLayer, ErrorKind, Operator};

mod background;
mod error;
mod read;
pub mod retry;
mod write_gate;

pub use super::location::{BadUrl, Location};
pub(crate) use error::describe;
use error::{failure, write_failure};
pub use error::{NotAnObject, StorageError};

/// How long closing waits for aborted background writes to stop, and
/// then for their temporaries to be deleted.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// Exit code of a process stopped by the crash limit.
pub const EXIT_CRASH_LIMIT: i32 = 75;

/// How the process that uses this crate ends itself, if it says
/// ([`set_process_end`]); else `std::process::exit`.
static PROCESS_END: std::sync::OnceLock<fn(i32) -> !> = std::sync::OnceLock::new();

/// Say how this process ends itself when the crash limit is reached: the
/// obnam host watches for any other end (`plugin_api::exit_guard`), and
/// the crash limit's is its own.
pub fn set_process_end(end: fn(i32) -> !) {
    let _ = PROCESS_END.set(end);
}

/// How to reach remote storage: the settings of the remote services.
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// Development: end the process abruptly before the write after this many.
    pub crash_limit: Option<u64>,
    /// Development: the storage faults to inject (`--testing-storage-faults`).
    pub faults: Option<FaultSpec>,
    /// SFTP: the private key to log in with (else ssh's defaults).
    pub ssh_key: Option<String>,
    /// SFTP: how to check the server's host key: `yes` (must be in
    /// known_hosts), `ifknown` (check if known, add if not), `no`.
    pub ssh_host_keys_check: Option<String>,
    /// S3: the endpoint URL (else AWS, or `AWS_ENDPOINT_URL`).
    pub s3_endpoint: Option<String>,
    /// S3: the region (else `AWS_REGION`, else `us-east-1`).
    pub s3_region: Option<String>,
    /// How long one storage operation may take before it is retried.
    pub timeout: Option<Duration>,
    /// Why this process must not write to the store, if it must not (the
    /// host's judgement: root, with a local folder another user could
    /// change). Every write and delete then fails with it, before
    /// anything is written; reads go on.
    pub writes_refused: Option<String>,
}

/// What a listing says of one version of an object: a new version of the
/// object (written again, or altered in place by a tool that rewrites the
/// file) has another stamp, but for an alteration of the same size within
/// the store's clock's resolution where the store gives no content hash
/// (an SFTP server's times are in seconds; S3 gives an `ETag`, the MD5
/// of a whole-object write).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub etag: Option<String>,
    /// Last modified, in ns since the epoch.
    pub modified_ns: Option<u128>,
}

impl Stamp {
    /// Whether it tells versions apart at all: a store whose listing gives
    /// neither a content hash nor a time gives only the size.
    pub fn distinguishes_versions(&self) -> bool {
        self.etag.is_some() || self.modified_ns.is_some()
    }
}

/// Object storage for one repository.
pub struct Storage {
    /// The store; `None` once [`close`](Self::close)d.
    op: std::sync::RwLock<Option<Operator>>,
    /// Runs the store's futures; `None` once closed.
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    /// The runtime's handle, for running futures.
    handle: tokio::runtime::Handle,
    url: String,
    /// What the store does its own way.
    backend: std::sync::Arc<dyn Backend>,
    writes: AtomicU64,
    bytes_written: std::sync::Arc<AtomicU64>,
    crash_limit: Option<u64>,
    /// See [`StorageOptions::writes_refused`].
    writes_refused: Option<String>,
    /// Development: faults injected on purpose; none normally.
    faults: Faults,
    /// Readers of recently read objects, by key.
    readers: std::sync::Mutex<std::collections::HashMap<String, opendal::Reader>>,
    /// Set when the run is interrupted: no write starts after it.
    stopped: std::sync::atomic::AtomicBool,
    /// Writes of the calling threads under way (not the background
    /// writes of packs): what an interrupted run waits for before it
    /// releases its locks ([`Storage::writes_done_within`]).
    writes_in_flight: std::sync::atomic::AtomicUsize,
    /// Set when an operation failed after all its retries: the store is
    /// down, and a delete (what a failing run still does: release its
    /// lock) is tried once, not with a whole budget of retries again (a
    /// backup on a frozen server took twice that long to fail). A stale
    /// lock left is broken by the next run.
    /// (Shared with the background writes, which give up too.)
    gave_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The background writes that may still be running, for closing.
    background: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// How many writes go up at once (fewer once one timed out).
    write_gate: std::sync::Arc<write_gate::WriteGate>,
}

impl Storage {
    /// Open storage for `url`: a URL, or a local folder's name, which
    /// need not be UTF-8 (messages then show it escaped).
    pub fn open(url: impl AsRef<OsStr>, options: &StorageOptions) -> Result<Self, StorageError> {
        let location = Location::parse_os(url.as_ref())?;
        let url = &crate::location::shown(url.as_ref());
        // The HTTP client of the S3 service, installed once per process.
        static HTTP: std::sync::Once = std::sync::Once::new();
        HTTP.call_once(opendal::install_default);
        // Short of file descriptors tokio panics rather than fail, where
        // it makes its signal driver's pipe: an error all the same.
        let runtime = std::panic::catch_unwind(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("obnam-storage")
                .enable_all()
                .build()
        })
        .map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("it failed");
            StorageError::Runtime(text.to_string())
        })?
        .map_err(|e| StorageError::Runtime(e.to_string()))?;
        let (backend, op) = super::backend::open(&location, url, options)?;
        let op = with_timeouts(op, options);
        Ok(Storage {
            op: std::sync::RwLock::new(Some(op)),
            handle: runtime.handle().clone(),
            runtime: std::sync::Mutex::new(Some(runtime)),
            url: url.to_string(),
            backend: backend.into(),
            writes: AtomicU64::new(0),
            bytes_written: std::sync::Arc::new(AtomicU64::new(0)),
            crash_limit: options.crash_limit,
            writes_refused: options.writes_refused.clone(),
            faults: Faults::new(options.faults.as_ref(), url),
            readers: std::sync::Mutex::new(std::collections::HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            writes_in_flight: std::sync::atomic::AtomicUsize::new(0),
            gave_up: Default::default(),
            background: std::sync::Mutex::new(Vec::new()),
            write_gate: std::sync::Arc::new(write_gate::WriteGate::new()),
        })
    }

    /// Undo what opening did to a store where creating a repository then
    /// failed before writing anything: remove the folders opening made, if
    /// they are still empty.
    pub fn abandon_creation(&self) {
        if self
            .faults
            .allows(Op::Delete, "the folders a failed creation made")
        {
            self.backend.abandon_creation();
        }
    }

    /// Refuse, without writing, a store where a repository could not be
    /// made: for a run that pretends to create one, which must fail where
    /// the real run would.
    pub fn check_can_hold_repository(&self) -> Result<(), StorageError> {
        match self.backend.cannot_hold_repository(self)? {
            None => Ok(()),
            Some(message) => Err(StorageError::Setup {
                url: self.url().to_string(),
                message,
            }),
        }
    }

    /// Delete what crashed writers left in `.tmp/` (a local folder and
    /// SFTP write objects there first): files last modified more than `age`
    /// before `now`, the store's time (that of an object just written),
    /// which no running writer can still be writing. Best effort: returns
    /// how many were deleted.
    pub fn remove_stale_temporaries(&self, now: std::time::SystemTime, age: Duration) -> usize {
        let Some(cutoff) = now.checked_sub(age) else {
            return 0;
        };
        self.backend.remove_stale_temporaries(self, cutoff)
    }

    /// What the engine should do to use this store well.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// Whether development's injected faults let `op` on `key` go ahead
    /// (for the steps of a store's own operations).
    pub(crate) fn faults_allow(&self, op: Op, key: &str) -> bool {
        self.faults.allows(op, key)
    }

    /// Count `len` more bytes written.
    pub(crate) fn count_bytes(&self, len: u64) {
        self.bytes_written.fetch_add(len, Ordering::Relaxed);
    }
    /// The repository URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes written so far by this process.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// The store, unless it was closed.
    pub(crate) fn op(&self) -> Result<Operator, opendal::Error> {
        self.op
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| opendal::Error::new(ErrorKind::Unexpected, "the repository was closed"))
    }

    /// End the connections to the store (over SFTP, the ssh processes that
    /// carry them exit). For the end of a run: later operations fail, and
    /// an upload still running in the background (after a failure) is
    /// stopped, as a crash would stop it, which the write order makes safe.
    pub fn close(&self) {
        let op = self.op.write().unwrap_or_else(|e| e.into_inner()).take();
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
        drop(readers);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(runtime) = runtime else {
            return;
        };
        // Background writes still running belong to a run that failed or
        // was interrupted (a run that succeeded waited for them): what they
        // would write is not needed, as after a crash, and a write retrying
        // on a broken connection would hold up the end of the run.
        let background =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        let abandoned = background.iter().any(|task| !task.is_finished());
        for task in &background {
            task.abort();
        }
        // What they wrote under temporary names goes, once the aborted
        // tasks have stopped: each tried once, and briefly, even where the
        // store gave up (a full disk fails writes, not deletes; a store
        // that is down costs the run at most twice ABANDON_WAIT more). So
        // do the temporaries of failed writes whose own delete failed (a
        // write and its delete timed out on a stalled connection, and the
        // run went on and succeeded): the store keeps their names.
        if let Some(op) = &op {
            runtime.block_on(async {
                let stopped = !abandoned
                    || tokio::time::timeout(ABANDON_WAIT, async {
                        while !background.iter().all(|task| task.is_finished()) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    })
                    .await
                    .is_ok();
                if stopped {
                    let removed = tokio::time::timeout(
                        ABANDON_WAIT,
                        self.backend.remove_abandoned_temporaries(op),
                    );
                    if let Ok(n) = removed.await {
                        tracing::debug!("removed {n} temporaries of abandoned writes");
                    }
                }
            });
        }
        drop(op);
        // The store ends the runtime, after what its connections must
        // finish (over S3 the HTTP client's idle connections are tasks
        // that would only end with the runtime, and nothing needs to).
        self.backend
            .close(runtime, self.stopped.load(Ordering::SeqCst));
    }

    /// Run a storage operation: `f` with the store, retried as the store's
    /// [`Retries`](crate::backend::Retries) say ([`retry::run`]).
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T, opendal::Error>
    where
        F: Fn(Operator) -> Fut,
        Fut: Future<Output = Result<T, opendal::Error>>,
    {
        let retries = self.backend.retries();
        self.block_on(async {
            let op = self.op()?;
            retry::run(&op, &retries, f).await
        })
    }

    /// `f` once, without retries, for a store that gave up already.
    fn run_once<T, F, Fut>(&self, f: F) -> Result<T, opendal::Error>
    where
        F: Fn(Operator) -> Fut,
        Fut: Future<Output = Result<T, opendal::Error>>,
    {
        self.block_on(async {
            retry::refused_if_ending()?;
            let op = self.op()?;
            f(op).await
        })
    }

    /// Run a read: `f` with the store; failures worth it run the whole
    /// read again, from its start.
    ///
    /// Not as OpenDAL's retry layer would, which resumes a read that broke off
    /// where it broke off: a server (or proxy) that answers the resuming
    /// `Range` request with the whole object (`200`, not `206`) had it
    /// appended to the part already read, and a sound object read as
    /// damaged; and one whose every answer ends early made progress on
    /// each try, so that the read went on for ever. A read run again from
    /// its start can do neither, and its tries are counted.
    pub(crate) fn run_read<T, F, Fut>(&self, f: F) -> Result<T, opendal::Error>
    where
        F: Fn(Operator) -> Fut,
        Fut: Future<Output = Result<T, opendal::Error>>,
    {
        self.run(f)
    }

    pub(crate) fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.handle.block_on(f)
    }

    pub(crate) fn fail(&self, op: &'static str, key: &str, e: opendal::Error) -> StorageError {
        given_up(&self.gave_up, &self.url, op, key, e)
    }

    /// Start no write after this (the run was interrupted and is ending):
    /// writes fail with [`StorageError::Interrupted`]. Deletes go on, so
    /// that locks can be released.
    pub fn stop_writes(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Check that writing `key` may start, and count it; the write is in
    /// flight while the guard returned lives. Counted before `stopped` is
    /// looked at (both sequentially consistent), so that a write either
    /// sees the stop or is seen by [`writes_done_within`](Self::writes_done_within).
    fn begin_write(&self, key: &str) -> Result<WriteInFlight<'_>, StorageError> {
        let flight = WriteInFlight::new(&self.writes_in_flight);
        if self.stopped.load(Ordering::SeqCst) {
            return Err(StorageError::Interrupted {
                url: self.url.clone(),
                key: key.to_string(),
            });
        }
        self.may_change(key)?;
        self.count_write();
        Ok(flight)
    }

    /// Whether every write of the calling threads that began before
    /// [`stop_writes`](Self::stop_writes) has ended, waiting up to
    /// `limit`. An interrupted run releases its locks only then: a
    /// generation record whose write was under way, written after the
    /// lock was gone, could name data that a prune planning meanwhile
    /// deletes.
    pub fn writes_done_within(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.writes_in_flight.load(Ordering::SeqCst) > 0 {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Refuse to change `key` if this process must not write to the
    /// store at all ([`StorageOptions::writes_refused`]).
    fn may_change(&self, key: &str) -> Result<(), StorageError> {
        match &self.writes_refused {
            Some(reason) => Err(StorageError::Refused {
                url: self.url.clone(),
                key: key.to_string(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Count a modifying operation; end the process if the crash limit is reached.
    fn count_write(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(limit) = self.crash_limit {
            if n > limit {
                eprintln!(
                    "obnam: crash limit of {limit} repository writes reached; stopping abruptly"
                );
                match PROCESS_END.get() {
                    Some(end) => end(EXIT_CRASH_LIMIT),
                    None => std::process::exit(EXIT_CRASH_LIMIT),
                }
            }
        }
    }

    /// Write a whole object.
    pub fn write(&self, key: &str, data: impl Into<bytes::Bytes>) -> Result<(), StorageError> {
        let _flight = self.begin_write(key)?;
        let data = data.into();
        self.faults
            .run(Op::Write, key, || self.put_counted(key, data))
    }

    /// Write a whole object, tried once, not as the store's retries say:
    /// for a write whose failure costs little (a reader's lock), where
    /// some 12 s of retries kept every restore from a store the user may
    /// only read waiting (over SFTP, a read-only file system's refusal is
    /// a generic failure, which is retried).
    pub fn write_once(&self, key: &str, data: impl Into<bytes::Bytes>) -> Result<(), StorageError> {
        let _flight = self.begin_write(key)?;
        let data = data.into();
        self.faults
            .run(Op::Write, key, || self.put_counted_tried(key, data, false))
    }

    /// Write a whole object whose write [`begin_write`](Self::begin_write)
    /// has counted.
    pub(crate) fn put_counted(&self, key: &str, data: bytes::Bytes) -> Result<(), StorageError> {
        self.put_counted_tried(key, data, true)
    }

    /// [`put_counted`](Self::put_counted), with the store's retries or
    /// once.
    fn put_counted_tried(
        &self,
        key: &str,
        data: bytes::Bytes,
        retried: bool,
    ) -> Result<(), StorageError> {
        let len = data.len() as u64;
        if let Some(put) = self.backend.put_direct(key, &data) {
            put.map_err(|e| write_failure(&self.url, key, e))?;
            self.count_bytes(len);
            return Ok(());
        }
        let (backend, gate, url) = (&self.backend, &self.write_gate, &self.url);
        let put = |op: Operator| {
            let data = data.clone();
            async move {
                let _turn = gate.enter().await;
                let put = backend.put(&op, key, data).await;
                if let Err(e) = &put {
                    gate.failed(e, url);
                }
                put
            }
        };
        match retried {
            true => self.run(put),
            false => self.run_once(put),
        }
        .map_err(|e| self.fail("write", key, e))?;
        self.count_bytes(len);
        Ok(())
    }

    /// Create an object unless there is one under `key` already (then
    /// nothing is written, and it is not an error: the caller reads the
    /// object back to learn whose it is). Where the store can do that
    /// atomically it does (a hard link on a local folder, SFTP's rename
    /// that refuses to replace, S3's `If-None-Match`); a store that
    /// silently ignores `If-None-Match` (Garage) overwrites, which is why
    /// creators first claim the creation ([`super::creation`]).
    pub fn create_new(&self, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let _flight = self.begin_write(key)?;
        self.faults
            .run(Op::Write, key, || self.backend.create_new(self, key, data))
    }

    /// Delete an object; deleting one that does not exist is not an error.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.delete_tried(key, !self.gave_up.load(Ordering::Relaxed))
    }

    /// [`delete`](Self::delete), tried once (see [`write_once`](Self::write_once)).
    pub fn delete_once(&self, key: &str) -> Result<(), StorageError> {
        self.delete_tried(key, false)
    }

    fn delete_tried(&self, key: &str, retried: bool) -> Result<(), StorageError> {
        self.may_change(key)?;
        self.count_write();
        self.faults.run(Op::Delete, key, || {
            let delete = |op: Operator| async move { op.delete(key).await };
            let done = match retried {
                false => self.run_once(delete),
                true => self.run(delete),
            };
            match done {
                // An object already gone is what a delete is for. OpenDAL's
                // local folder looks the file up and then removes it: when
                // another process removed it in between (two runs breaking
                // the same stale lock at once, found by the torture
                // harness), the removal failed as not found.
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
                done => done.map_err(|e| self.fail("delete", key, e)),
            }
        })
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool, StorageError> {
        self.faults.run(Op::Exists, key, || {
            self.run(|op| async move { op.exists(key).await })
                .map_err(|e| self.fail("check", key, e))
        })
    }

    /// The keys of every object below `folder`, at any depth, sorted.
    pub fn list_recursive(&self, folder: &str) -> Result<Vec<String>, StorageError> {
        self.list_files(folder, true)
    }

    /// The names of the objects directly in `folder` (which ends in `/`).
    pub fn list(&self, folder: &str) -> Result<Vec<String>, StorageError> {
        self.list_files(folder, false)
    }

    /// The names of the folders directly in `folder` (which ends in `/`),
    /// without their trailing `/`, sorted: one listing, as
    /// [`list`](Self::list) makes (on an object store, the common prefixes
    /// of a delimited listing).
    pub fn list_folders(&self, folder: &str) -> Result<Vec<String>, StorageError> {
        self.faults.run(Op::List, folder, || {
            let entries = self.run(|op| async move { op.list_with(folder).await });
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.fail("list", folder, e)),
            };
            let mut names: Vec<String> = entries
                .into_iter()
                .filter(|e| e.metadata().is_dir())
                .map(|e| e.name().trim_end_matches('/').to_string())
                .filter(|name| !name.is_empty())
                .collect();
            names.sort();
            Ok(names)
        })
    }

    /// What one listing of `folder` (which ends in `/`) shows directly in
    /// it: the names of its objects, as [`list`](Self::list) gives them,
    /// and, apart, of what is there under a name but cannot be an object
    /// (on a local folder: a folder, a FIFO, a socket, a device, a dangling
    /// symbolic link), each sorted. For the folders whose every name is an
    /// object's (index objects, prune plans): something else under one is
    /// damage to that object, which a reader names rather than take the
    /// object for absent. On other stores every name listed is an object.
    pub fn list_with_others(&self, folder: &str) -> Result<FolderListing, StorageError> {
        self.faults.run(Op::List, folder, || {
            if let Some(listed) = self.backend.list_direct_with_others(folder) {
                let mut listing = listed.map_err(|e| StorageError::Failed {
                    url: self.url.clone(),
                    op: "list",
                    key: folder.to_string(),
                    message: e.to_string(),
                })?;
                listing.objects.sort();
                listing.not_objects.sort();
                return Ok(listing);
            }
            match self.list_through_opendal(folder, false) {
                Ok(objects) => Ok(FolderListing {
                    objects,
                    not_objects: Vec::new(),
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(FolderListing::default()),
                Err(e) => Err(self.fail("list", folder, e)),
            }
        })
    }

    /// The objects in `folder` (which ends in `/`), directly in it or, if
    /// `recursive`, at any depth: their whole keys, sorted, each with
    /// what the listing says of its version ([`Stamp`]). One listing, no
    /// request per object (for the local cache of records,
    /// [`crate::record_cache`]).
    pub fn list_stamped(
        &self,
        folder: &str,
        recursive: bool,
    ) -> Result<Vec<(String, Stamp)>, StorageError> {
        self.faults.run(Op::List, folder, || {
            let files = match self.files_through_opendal(folder, recursive) {
                Ok(files) => files,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.fail("list", folder, e)),
            };
            let mut stamped: Vec<(String, Stamp)> = files
                .into_iter()
                .map(|e| {
                    let meta = e.metadata();
                    let stamp = Stamp {
                        size: meta.content_length(),
                        etag: meta.etag().map(str::to_string),
                        modified_ns: meta.last_modified().and_then(|t| {
                            std::time::SystemTime::from(t)
                                .duration_since(std::time::UNIX_EPOCH)
                                .ok()
                                .map(|d| d.as_nanos())
                        }),
                    };
                    (e.path().to_string(), stamp)
                })
                .collect();
            stamped.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(stamped)
        })
    }

    /// The objects in `folder`, sorted: their whole keys if `recursive`,
    /// else their names. A folder that does not exist holds none.
    fn list_files(&self, folder: &str, recursive: bool) -> Result<Vec<String>, StorageError> {
        self.faults.run(Op::List, folder, || {
            if let Some(listed) = self.backend.list_direct(folder, recursive) {
                let mut names = listed.map_err(|e| StorageError::Failed {
                    url: self.url.clone(),
                    op: "list",
                    key: folder.to_string(),
                    message: e.to_string(),
                })?;
                names.sort();
                return Ok(names);
            }
            match self.list_through_opendal(folder, recursive) {
                Ok(names) => Ok(names),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.fail("list", folder, e)),
            }
        })
    }

    /// [`list_files`](Self::list_files) through OpenDAL, on the runtime.
    fn list_through_opendal(
        &self,
        folder: &str,
        recursive: bool,
    ) -> Result<Vec<String>, opendal::Error> {
        let mut names: Vec<String> = self
            .files_through_opendal(folder, recursive)?
            .into_iter()
            .map(|e| match recursive {
                true => e.path().to_string(),
                false => e.name().to_string(),
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The listing's entries of the objects (not the folders) in
    /// `folder`, through OpenDAL, with what it says of each.
    fn files_through_opendal(
        &self,
        folder: &str,
        recursive: bool,
    ) -> Result<Vec<opendal::Entry>, opendal::Error> {
        let entries =
            self.run(|op| async move { op.list_with(folder).recursive(recursive).await })?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .collect())
    }
}

/// `op` with the timeouts every operation gets.
fn with_timeouts(op: Operator, options: &StorageOptions) -> Operator {
    let timeout = options.timeout.unwrap_or(Duration::from_secs(120));
    op.layer(
        TimeoutLayer::new()
            .with_timeout(timeout)
            .with_io_timeout(timeout),
    )
}

/// A write of a calling thread under way (see `Storage::begin_write`).
struct WriteInFlight<'s>(&'s std::sync::atomic::AtomicUsize);

impl<'s> WriteInFlight<'s> {
    fn new(count: &'s std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        WriteInFlight(count)
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A failed operation as [`failure`] words it, noting in `gave_up` that
/// the store is down if it failed after all its retries (see
/// [`Storage`]'s `gave_up`): for the calling thread's operations and the
/// background writes alike.
fn given_up(
    gave_up: &std::sync::atomic::AtomicBool,
    url: &str,
    op: &'static str,
    key: &str,
    e: opendal::Error,
) -> StorageError {
    if e.is_persistent() {
        gave_up.store(true, Ordering::Relaxed);
    }
    failure(url, op, key, e)
}

/// A storage dropped without [`Storage::close`] (a repository that failed
/// to open) closes its connections all the same.
impl Drop for Storage {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that takes every request and never answers, on 127.0.0.1:
    /// its address, and the verbs of the requests it got.
    fn silent_store() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = [0u8; 16];
                let n = conn.read(&mut head).unwrap_or(0);
                let verb = String::from_utf8_lossy(&head[..n]);
                let verb = verb.split(' ').next().unwrap_or("").to_string();
                seen.lock().unwrap().push(verb);
                held.push(conn);
            }
        });
        (port, requests)
    }

    /// Storage over S3 at the silent store on `port`.
    fn on_silent_store(port: u16) -> Storage {
        // The S3 client takes its credentials from the environment; no
        // test in this crate talks to a real S3 store.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        let options = StorageOptions {
            s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
            s3_region: Some("us-east-1".into()),
            timeout: Some(Duration::from_millis(300)),
            ..StorageOptions::default()
        };
        Storage::open("s3://bucket/repo", &options).unwrap()
    }

    fn deletes(requests: &std::sync::Mutex<Vec<String>>) -> usize {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|verb| verb.as_str() == "DELETE")
            .count()
    }

    /// A read that gives up after its retries on a store that never
    /// answers: a delete after that (a failing run's lock release) is
    /// tried once, not with a budget of retries again.
    #[test]
    fn after_a_store_gave_up_a_delete_is_tried_once() {
        let (port, requests) = silent_store();
        let storage = on_silent_store(port);
        let err = storage.read_limited("config", 1024).unwrap_err();
        assert!(
            err.to_string().contains("(gave up after retrying)"),
            "{err}"
        );
        let reads = requests.lock().unwrap().len();
        assert!(reads > 1, "the read was tried {reads} times");
        storage.delete("locks/mine").unwrap_err();
        assert_eq!(deletes(&requests), 1);
    }

    /// The same after a background write (how packs go to a remote
    /// store) gave up: it did not count, and the lock release was
    /// retried as long again.
    #[test]
    fn after_a_background_write_gave_up_a_delete_is_tried_once() {
        let (port, requests) = silent_store();
        let storage = on_silent_store(port);
        let (tx, rx) = std::sync::mpsc::channel();
        storage.write_in_background(
            vec![("packs/00/x".to_string(), bytes::Bytes::from_static(b"pack"))],
            move |outcome| tx.send(outcome.map_err(|e| e.to_string())).unwrap(),
        );
        let err = rx.recv().unwrap().unwrap_err();
        assert!(err.contains("(gave up after retrying)"), "{err}");
        storage.delete("locks/mine").unwrap_err();
        assert_eq!(deletes(&requests), 1);
    }

    /// A fake S3 server on 127.0.0.1 that answers every request with
    /// `status` and counts the requests; the storage opened on it.
    fn answering(
        status: &'static str,
    ) -> (Storage, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        answering_with(status, 0)
    }

    /// The same, with a body of `body` zero bytes to every answer.
    fn answering_with(
        status: &'static str,
        body: usize,
    ) -> (Storage, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 65536];
                let mut got = Vec::new();
                // The head, and as much of a body as it announces.
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let body: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + body {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let mut answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {body}\r\nconnection: close\r\n\r\n"
                )
                .into_bytes();
                answer.resize(answer.len() + body, 0);
                let _ = conn.write_all(&answer);
            }
        });
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        let options = StorageOptions {
            s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
            s3_region: Some("us-east-1".into()),
            ..StorageOptions::default()
        };
        (
            Storage::open("s3://bucket/repo", &options).unwrap(),
            requests,
        )
    }

    /// A refusal no retry can cure is tried once, and not said to be a
    /// store that gave up after retrying (OpenDAL's retry layer said so of
    /// every error that passed through it).
    #[test]
    fn a_failure_not_worth_retrying_is_tried_once_and_not_called_retried() {
        let (storage, requests) = answering("400 Bad Request");
        let err = storage.write("packs/ab", vec![1u8; 100]).unwrap_err();
        assert!(!err.to_string().contains("gave up"), "{err}");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "{err}");
        let err = storage.read_limited("config", 1024).unwrap_err();
        assert!(!err.to_string().contains("gave up"), "{err}");
        assert_eq!(requests.load(Ordering::SeqCst), 2, "{err}");
    }

    /// A pack read whole stops at the format's limit: a store answering
    /// with more is damaged, not held in memory however long it goes on.
    #[test]
    fn a_whole_read_longer_than_its_limit_is_damaged() {
        let (storage, requests) = answering_with("200 OK", 3 << 20);
        let err = storage.read_pieces("packs/ab/cd", 1 << 20).unwrap_err();
        assert!(matches!(err, StorageError::Damaged { .. }), "{err}");
        assert!(
            err.to_string().contains("larger than the format allows"),
            "{err}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1, "{err}");
        let whole = storage.read_pieces("packs/ab/cd", 3 << 20).unwrap();
        assert_eq!(whole.len(), 3 << 20);
    }

    /// A server that keeps failing is retried, and then said to have
    /// given up.
    #[test]
    fn a_transient_failure_is_retried_and_then_called_given_up() {
        let (storage, requests) = answering("503 Service Unavailable");
        let err = storage.write("packs/ab", vec![1u8; 100]).unwrap_err();
        assert!(
            err.to_string().contains("(gave up after retrying)"),
            "{err}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 7, "{err}");
    }

    #[test]
    fn no_write_starts_once_writes_are_stopped_but_deletes_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        storage.write("a", b"1".to_vec()).unwrap();
        storage.stop_writes();
        assert!(matches!(
            storage.write("b", b"2".to_vec()),
            Err(StorageError::Interrupted { .. })
        ));
        let (tx, rx) = std::sync::mpsc::channel();
        storage.write_in_background(
            vec![("c".into(), bytes::Bytes::from_static(b"3"))],
            move |r| tx.send(r.is_err()).unwrap(),
        );
        assert!(rx.recv().unwrap(), "a background write started");
        storage.delete("a").unwrap();
        assert_eq!(storage.list("").unwrap(), Vec::<String>::new());
    }

    /// A write under way when writes are stopped is waited for: an
    /// interrupted run releases its locks only once it has ended (its
    /// generation record, written after the lock was gone, could name data
    /// a prune planning meanwhile deletes).
    #[test]
    fn a_write_under_way_when_writes_stop_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let options = StorageOptions {
            faults: crate::fault_injection::FaultSpec::parse("slow=1,seed=3").unwrap(),
            ..StorageOptions::default()
        };
        let storage = std::sync::Arc::new(Storage::open(root.to_str().unwrap(), &options).unwrap());
        assert!(storage.writes_done_within(Duration::ZERO));
        let writer = storage.clone();
        let writing = std::thread::spawn(move || writer.write("slow", b"1".to_vec()));
        while storage.writes_in_flight.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        storage.stop_writes();
        assert!(!storage.writes_done_within(Duration::ZERO));
        assert!(storage.writes_done_within(Duration::from_secs(30)));
        // It had begun: it is whole, and nothing is under way any more.
        writing.join().unwrap().unwrap();
        assert_eq!(storage.list("").unwrap(), vec!["slow".to_string()]);
    }

    /// Deleting what another process deletes at the same moment succeeds
    /// in both (a delete's end is the object gone), however the two
    /// interleave: several threads delete the same objects at once.
    #[test]
    fn deleting_an_object_another_process_deletes_at_once_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        let keys: Vec<String> = (0..300).map(|i| format!("locks/lock{i}")).collect();
        for round in 0..5 {
            for key in &keys {
                storage.write(key, vec![round]).unwrap();
            }
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    let others =
                        Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
                    let keys = &keys;
                    scope.spawn(move || {
                        for key in keys {
                            others.delete(key).unwrap();
                        }
                    });
                }
            });
            assert_eq!(storage.list("locks/").unwrap(), Vec::<String>::new());
        }
        storage.delete("locks/never-there").unwrap();
    }

    /// A local folder's reads are done on the calling thread (see
    /// `Backend::read_range_direct`): they read the same bytes and fail
    /// with the same errors as reads through OpenDAL, and an object
    /// deleted while open still reads as it was.
    #[test]
    fn local_reads_on_the_calling_thread_read_and_fail_as_through_opendal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        storage.write("packs/ab/obj", data.clone()).unwrap();
        assert_eq!(
            storage.read_range("packs/ab/obj", 100, 50).unwrap(),
            &data[100..150]
        );
        assert_eq!(storage.read_range("packs/ab/obj", 0, 10_000).unwrap(), data);
        assert_eq!(storage.read_limited("packs/ab/obj", 10_000).unwrap(), data);
        assert_eq!(storage.read("packs/ab/obj").unwrap(), data);

        let short = storage.read_range("packs/ab/obj", 9_990, 20).unwrap_err();
        assert!(
            short.to_string().contains("ends before byte 10010"),
            "{short}"
        );
        let large = storage.read_limited("packs/ab/obj", 9_999).unwrap_err();
        assert!(
            large.to_string().contains("larger than the format allows"),
            "{large}"
        );
        for missing in [
            storage.read_range("packs/ab/none", 0, 1).unwrap_err(),
            storage.read_limited("packs/ab/none", 10).unwrap_err(),
        ] {
            assert!(
                matches!(missing, StorageError::NotFound { .. }),
                "{missing}"
            );
        }

        // Open since the first read: deleted, it reads as it was.
        storage.delete("packs/ab/obj").unwrap();
        assert_eq!(
            storage.read_range("packs/ab/obj", 5, 5).unwrap(),
            &data[5..10]
        );
        assert!(matches!(
            storage.read_limited("packs/ab/obj", 1 << 20),
            Err(StorageError::NotFound { .. })
        ));
    }

    /// What is not a regular file under an object's name in a local
    /// folder (a FIFO, a folder, a device through a link) is refused at
    /// once by every kind of read, as damage naming the object: a FIFO
    /// opened for reading would wait for a writer forever. Writes open
    /// nothing that is there.
    #[test]
    fn a_local_object_that_is_not_a_regular_file_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        storage.write("packs/ab/file", b"data".to_vec()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("packs/ab/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::create_dir(root.join("packs/ab/folder")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("packs/ab/device")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("packs/ab/dangling")).unwrap();
        let storage = std::sync::Arc::new(storage);
        for (key, what) in [
            ("packs/ab/fifo", "a FIFO"),
            ("packs/ab/folder", "a folder"),
            ("packs/ab/device", "a device"),
            ("packs/ab/dangling", "a symbolic link to nothing"),
        ] {
            // On another thread, so that a read that blocks fails the
            // test rather than hang it.
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = storage.clone();
            std::thread::spawn(move || {
                let _ = tx.send([
                    reader.read_limited(key, 1 << 20).err(),
                    reader.read_range(key, 0, 4).err(),
                    reader.read(key).err(),
                    reader.read_pieces(key, 1 << 20).err(),
                ]);
            });
            let errors = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("a read of {key} was still waiting after 10 s"));
            for e in errors {
                let e = e.unwrap_or_else(|| panic!("{key} was read"));
                assert!(matches!(e, StorageError::Damaged { .. }), "{e:?}");
                let message = e.to_string();
                assert!(message.contains(key) && message.contains(what), "{message}");
            }
        }
        // The regular file beside them reads as ever.
        assert_eq!(storage.read_range("packs/ab/file", 0, 4).unwrap(), b"data");
        // None of them is listed as an object; a listing with the others
        // names them apart (a folder of objects holds them only where
        // something took an object's place).
        assert_eq!(storage.list("packs/ab/").unwrap(), ["file"]);
        let listing = storage.list_with_others("packs/ab/").unwrap();
        assert_eq!(listing.objects, ["file"]);
        assert_eq!(
            listing.not_objects,
            ["dangling", "device", "fifo", "folder"]
        );
        assert_eq!(
            storage.list_with_others("nothing/").unwrap(),
            FolderListing::default()
        );
        // A write renames a new file into place, opening nothing there: it
        // replaces a FIFO, and fails on a folder, naming the object.
        storage.write("packs/ab/fifo", b"new".to_vec()).unwrap();
        assert_eq!(storage.read_limited("packs/ab/fifo", 10).unwrap(), b"new");
        let e = storage
            .write("packs/ab/folder", b"new".to_vec())
            .unwrap_err();
        assert!(e.to_string().contains("packs/ab/folder"), "{e}");
        assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
    }

    /// A local folder's writes are done on the calling thread (see
    /// `Backend::put_direct`): an object is whole under its key, in folders
    /// made as needed, a rewrite replaces it, nothing stays in `.tmp/`, and
    /// a write that cannot be made fails naming the object and leaves no
    /// temporary file behind.
    #[test]
    fn local_writes_on_the_calling_thread_are_whole_and_fail_clearly() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        storage.write("packs/cd/obj", data.clone()).unwrap();
        assert_eq!(std::fs::read(root.join("packs/cd/obj")).unwrap(), data);
        let mode = std::fs::metadata(root.join("packs/cd/obj"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private to its owner: {mode:o}");
        storage.write("packs/cd/obj", b"again".to_vec()).unwrap();
        assert_eq!(storage.read_limited("packs/cd/obj", 100).unwrap(), b"again");
        assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
        assert_eq!(storage.bytes_written(), 100_005);

        // Where the object's folder cannot be made, the write fails and
        // says which object; its temporary file is gone.
        std::fs::write(root.join("blocked"), b"a file, not a folder").unwrap();
        let e = storage.write("blocked/obj", data.clone()).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("blocked/obj"), "{message}");
        assert!(
            matches!(e, StorageError::Failed { op: "write", .. }),
            "{e:?}"
        );
        assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
    }

    /// A local folder is listed on the calling thread (see
    /// `Backend::list_direct`): the same objects as OpenDAL's fs service
    /// lists (a symbolic link to a file included), and none in a folder
    /// that does not exist; a folder reached by a symbolic link is listed
    /// too (OpenDAL's own listing panics there, in a debug build), and a
    /// link that makes a loop ends.
    #[test]
    fn a_local_listing_on_the_calling_thread_is_opendals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let storage = Storage::open(root.to_str().unwrap(), &StorageOptions::default()).unwrap();
        for key in [
            "packs/ab/x",
            "packs/ab/y",
            "packs/cd/z",
            "packs/top",
            "index/i",
            "config",
        ] {
            storage.write(key, b"data".to_vec()).unwrap();
        }
        std::fs::create_dir_all(root.join("packs/empty/deeper")).unwrap();
        std::os::unix::fs::symlink(root.join("packs/ab/x"), root.join("packs/cd/linked")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("packs/cd/dangling")).unwrap();
        let opendal = |folder: &str, recursive: bool| {
            storage.list_through_opendal(folder, recursive).unwrap()
        };
        let all = [
            "packs/ab/x",
            "packs/ab/y",
            "packs/cd/linked",
            "packs/cd/z",
            "packs/top",
        ];
        assert_eq!(storage.list_recursive("packs/").unwrap(), all);
        assert_eq!(
            storage.list_recursive("packs/").unwrap(),
            opendal("packs/", true)
        );
        assert_eq!(storage.list("packs/").unwrap(), ["top"]);
        assert_eq!(storage.list("packs/").unwrap(), opendal("packs/", false));
        assert_eq!(
            storage.list("packs/cd/").unwrap(),
            opendal("packs/cd/", false)
        );
        assert_eq!(storage.list("").unwrap(), opendal("", false));
        assert_eq!(storage.list("").unwrap(), ["config"]);
        assert!(storage.list("generations/").unwrap().is_empty());
        assert!(storage.list_recursive("generations/").unwrap().is_empty());

        // A folder moved elsewhere and linked back; a link to its parent.
        std::fs::rename(root.join("packs/ab"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), root.join("packs/ab")).unwrap();
        std::os::unix::fs::symlink(root.join("packs"), root.join("packs/cd/loop")).unwrap();
        let listed = storage.list_recursive("packs/").unwrap();
        assert_eq!(&listed[..2], ["packs/ab/x", "packs/ab/y"]);
        assert!(listed.contains(&"packs/cd/z".to_string()), "{listed:?}");
        assert!(listed.len() < 100, "{} keys", listed.len());
    }
}
