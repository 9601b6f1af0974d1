//! Where repository objects live: a small synchronous object-store
//! interface over an Apache OpenDAL `Operator`.
//!
//! The repository needs only whole-object writes, whole and ranged reads,
//! deletes and listing one folder. Objects are written once and never
//! changed. The URL ([`Location`]) picks the OpenDAL service:
//!
//! * a local folder: writes go through a temporary file in `.tmp/`
//!   (OpenDAL's atomic write), and the process umask is set to 077 so that
//!   objects are created 0600 and folders 0700;
//! * SFTP: OpenDAL writes straight to the final name, so obnam writes each
//!   object to `.tmp/` on the server and renames it into place itself:
//!   a killed run never leaves a half-written object under its final name;
//! * S3: a PUT is atomic by itself.
//!
//! Every service gets the same layers: retries with exponential backoff
//! and jitter for transient errors (OpenDAL's `RetryLayer`), and timeouts
//! (`TimeoutLayer`), so that a flaky network costs time, not a backup,
//! and a dead one ends the run with an error naming the URL.
//!
//! [`Storage`] adds what every backend shares: counting bytes written, and
//! two development aids: the crash limit (`--crash-limit N` ends the process
//! abruptly before the write after the N-th, leaving the repository as
//! `kill -9` would), and injected faults (`--testing-storage-faults`, see
//! [`super::fault_injection`]), which every operation consults first.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::fault_injection::{FaultSpec, Faults, Op};
use super::ssh_processes;

use futures_util::TryStreamExt;
use opendal::{
    layers::{RetryLayer, TimeoutLayer},
    services, ErrorKind, Operator,
};

pub use super::location::{BadUrl, Location};

/// How long closing the storage waits for its connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The same when the run was interrupted: the command's thread may still
/// be in the middle of an operation, holding connections open, and what
/// is left is ended by [`ssh_processes::end_leftovers`].
const CLOSE_WAIT_INTERRUPTED: Duration = Duration::from_secs(1);

/// Exit code of a process stopped by the crash limit.
pub const EXIT_CRASH_LIMIT: i32 = 75;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{url}: object {key} does not exist")]
    NotFound { url: String, key: String },
    #[error("{url}: cannot {op} {key}: {message}")]
    Failed {
        url: String,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    #[error("cannot use repository {url}: {message}")]
    Setup { url: String, message: String },
    #[error("cannot start the storage runtime: {0}")]
    Runtime(String),
    #[error("{url}: not writing {key}: the run was interrupted")]
    Interrupted { url: String, key: String },
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
    location: Location,
    writes: AtomicU64,
    bytes_written: std::sync::Arc<AtomicU64>,
    crash_limit: Option<u64>,
    /// Development: faults injected on purpose; none normally.
    faults: Faults,
    /// Readers of recently read objects, by key.
    readers: std::sync::Mutex<std::collections::HashMap<String, opendal::Reader>>,
    /// The local folder this open created, if it did.
    made_root: Option<PathBuf>,
    /// Set when the run is interrupted: no write starts after it.
    stopped: std::sync::atomic::AtomicBool,
    /// The background writes that may still be running, for closing.
    background: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

/// The callback of a background write, called exactly once: with the
/// outcome, or with [`StorageError::Interrupted`] if the write is abandoned
/// (its task aborted when the storage closes before it ends).
struct Completion<F: FnOnce(Result<(), StorageError>)> {
    done: Option<F>,
    url: String,
    key: String,
}

impl<F: FnOnce(Result<(), StorageError>)> Completion<F> {
    fn finish(mut self, outcome: Result<(), StorageError>) {
        if let Some(done) = self.done.take() {
            done(outcome);
        }
    }
}

impl<F: FnOnce(Result<(), StorageError>)> Drop for Completion<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(StorageError::Interrupted {
                url: std::mem::take(&mut self.url),
                key: std::mem::take(&mut self.key),
            }));
        }
    }
}

/// Write one whole object. Over SFTP, which writes in place, it goes
/// under a temporary name first and is then renamed into place, so that
/// a killed run never leaves a partial object under `key`.
async fn put(
    op: &Operator,
    sftp: bool,
    key: &str,
    data: bytes::Bytes,
) -> Result<(), opendal::Error> {
    if !sftp {
        return op.write(key, data).await.map(|_| ());
    }
    let tmp = format!(".tmp/{}", super::ids::ObjectId::random().to_hex());
    op.write(&tmp, data).await?;
    if let Err(e) = op.rename(&tmp, key).await {
        let _ = op.delete(&tmp).await;
        // A rename refused because `key` exists: most likely this very
        // write, run again after its first rename went through but the
        // answer was lost with the connection. Every key but `config` is
        // unique to its writer, and `config`'s creator checks the id it
        // reads back.
        if op.exists(key).await.unwrap_or(false) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// How many times a failed SFTP operation is run again, and the first wait
/// (doubling, at most 10 s, with jitter): the same budget as the retry
/// layer of the other stores, about 12 s in all.
const SFTP_RETRIES: u32 = 6;
const SFTP_FIRST_WAIT: Duration = Duration::from_millis(200);

/// Whether a failed SFTP operation is worth running again: a transient
/// failure, or no SSH connection at all (which OpenDAL's sftp service
/// reports as permanent, though a network blip or a restarting server
/// causes it as often as a wrong address does).
fn sftp_retryable(e: &opendal::Error) -> bool {
    if e.is_temporary() {
        return true;
    }
    if e.kind() != ErrorKind::Unexpected || e.message() != "ssh error" {
        return false;
    }
    // What ssh said; some failures no retry will cure.
    let mut said = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        said.push_str(&cause.to_string());
        source = cause.source();
    }
    ![
        "Permission denied",
        "Host key verification failed",
        "Could not resolve hostname",
        "No such file or directory",
    ]
    .iter()
    .any(|hopeless| said.contains(hopeless))
}

/// Run `f` with `op`. Over SFTP a failure worth retrying runs the whole
/// operation again, from a fresh start (the connection pool hands out a
/// working session, and a write begins a new file), with growing waits:
/// OpenDAL's retry layer, which the other stores use, would retry on the
/// same file handle of a session that broke, in vain. Elsewhere `f` runs
/// once, and the retry layer inside `op` retries.
async fn run_retrying<T, F, Fut>(op: &Operator, sftp: bool, f: F) -> Result<T, opendal::Error>
where
    F: Fn(Operator) -> Fut,
    Fut: Future<Output = Result<T, opendal::Error>>,
{
    if !sftp {
        return f(op.clone()).await;
    }
    let mut wait = SFTP_FIRST_WAIT;
    for _ in 0..SFTP_RETRIES {
        match f(op.clone()).await {
            Err(e) if sftp_retryable(&e) => {
                let jitter = u32::from(super::ids::ObjectId::random().0[0]);
                let this_wait = wait + wait * jitter / 512;
                tracing::debug!("SFTP operation failed ({e}); trying again in {this_wait:?}");
                tokio::time::sleep(this_wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
    f(op.clone()).await.map_err(|e| {
        if sftp_retryable(&e) {
            e.set_persistent()
        } else {
            e
        }
    })
}

/// A failed storage operation as a [`StorageError`].
fn failure(url: &str, op: &'static str, key: &str, e: opendal::Error) -> StorageError {
    if e.kind() == ErrorKind::NotFound && op == "write" {
        // Over SFTP the folders are made as needed; a write finding none
        // means that they could not be made.
        StorageError::Failed {
            url: url.to_string(),
            op,
            key: key.to_string(),
            message: "its folder does not exist and cannot be made (is the repository \
                      path a folder that may be written to?)"
                .to_string(),
        }
    } else if e.kind() == ErrorKind::NotFound {
        StorageError::NotFound {
            url: url.to_string(),
            key: key.to_string(),
        }
    } else {
        StorageError::Failed {
            url: url.to_string(),
            op,
            key: key.to_string(),
            message: describe(&e),
        }
    }
}

/// An OpenDAL error in a sentence: what went wrong and its causes,
/// without the request context (which may be long, and is no help to the
/// user beyond the URL and object that obnam names itself).
fn describe(e: &opendal::Error) -> String {
    let mut parts = vec![match e.kind() {
        ErrorKind::PermissionDenied => "access denied (check the credentials)".to_string(),
        ErrorKind::ConfigInvalid if e.message().contains("\"NoSuchBucket\"") => {
            "the bucket does not exist (obnam does not create buckets: create it with \
             the S3 provider's tools)"
                .to_string()
        }
        ErrorKind::ConfigInvalid => format!("bad storage settings: {}", e.message()),
        _ => e.message().to_string(),
    }];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    let mut text = parts.join(": ");
    // Missing credentials fail before any request is made: not retried,
    // whatever the error's status says.
    let no_credentials = text.contains("failed to load signing credential");
    if no_credentials {
        text.push_str(" (no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    }
    if e.is_persistent()
        && !no_credentials
        && !matches!(
            e.kind(),
            ErrorKind::PermissionDenied | ErrorKind::ConfigInvalid
        )
    {
        text.push_str(" (gave up after retrying)");
    }
    text
}

/// How many objects' readers are kept open at most.
const OPEN_READERS: usize = 64;

/// The local folder a repository URL names, if it names one.
pub fn local_path(url: &str) -> Option<PathBuf> {
    match Location::parse(url) {
        Ok(Location::Local(path)) => Some(path),
        _ => None,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Storage {
    /// Open storage for `url`.
    pub fn open(url: &str, options: &StorageOptions) -> Result<Self, StorageError> {
        let location = Location::parse(url)?;
        // The HTTP client of the S3 service, installed once per process.
        static HTTP: std::sync::Once = std::sync::Once::new();
        HTTP.call_once(opendal::install_default);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("obnam-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Runtime(e.to_string()))?;
        let setup = |e: opendal::Error| StorageError::Setup {
            url: url.to_string(),
            message: describe(&e),
        };
        let mut made_root = None;
        let op = match &location {
            Location::Local(root) => {
                if root.exists() && !root.is_dir() {
                    return Err(StorageError::Setup {
                        url: url.to_string(),
                        message: "it is not a folder".into(),
                    });
                }
                if !root.exists() {
                    made_root = Some(root.clone());
                }
                // Repository objects are private to their owner.
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
                let tmp = root.join(".tmp");
                let builder = services::Fs::default()
                    .root(&root.to_string_lossy())
                    .atomic_write_dir(&tmp.to_string_lossy());
                Operator::new(builder).map_err(setup)?
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                // Before any ssh process is started (see ssh_processes).
                ssh_processes::adopt_orphans();
                let endpoint = match port {
                    Some(p) if host.contains(':') => format!("[{host}]:{p}"),
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                };
                let strategy = match options.ssh_host_keys_check.as_deref() {
                    None | Some("yes") => "strict",
                    Some("ifknown") => "add",
                    Some("no") => "accept",
                    Some(other) => {
                        return Err(StorageError::Setup {
                            url: url.to_string(),
                            message: format!(
                                "--ssh-host-keys-check must be yes, ifknown or no, not '{other}'"
                            ),
                        })
                    }
                };
                let mut builder = services::Sftp::default()
                    .endpoint(&format!("ssh://{endpoint}"))
                    .root(path)
                    .known_hosts_strategy(strategy);
                if let Some(user) = user {
                    builder = builder.user(user);
                }
                if let Some(key) = &options.ssh_key {
                    builder = builder.key(key);
                }
                Operator::new(builder).map_err(setup)?
            }
            Location::S3 { bucket, prefix } => {
                let region = options
                    .s3_region
                    .clone()
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| "us-east-1".into());
                let mut builder = services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(&region);
                if let Some(endpoint) = options
                    .s3_endpoint
                    .clone()
                    .or_else(|| env("AWS_ENDPOINT_URL"))
                {
                    builder = builder.endpoint(&endpoint);
                }
                Operator::new(builder).map_err(setup)?
            }
        };
        let timeout = options.timeout.unwrap_or(Duration::from_secs(120));
        let op = op.layer(
            TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        );
        // Over SFTP whole operations are retried instead ([`run_retrying`]).
        let op = if matches!(location, Location::Sftp { .. }) {
            op
        } else {
            op.layer(
                RetryLayer::new()
                    .with_max_times(6)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_factor(2.0)
                    .with_jitter(),
            )
        };
        Ok(Storage {
            op: std::sync::RwLock::new(Some(op)),
            handle: runtime.handle().clone(),
            runtime: std::sync::Mutex::new(Some(runtime)),
            url: url.to_string(),
            location,
            writes: AtomicU64::new(0),
            bytes_written: std::sync::Arc::new(AtomicU64::new(0)),
            crash_limit: options.crash_limit,
            faults: Faults::new(options.faults.as_ref(), url),
            readers: std::sync::Mutex::new(std::collections::HashMap::new()),
            made_root,
            stopped: std::sync::atomic::AtomicBool::new(false),
            background: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Undo what opening did to a store where creating a repository then
    /// failed before writing anything: remove the folders opening made, if
    /// they are still empty.
    pub fn abandon_creation(&self) {
        if !self
            .faults
            .allows(Op::Delete, "the folders a failed creation made")
        {
            return;
        }
        if let Some(root) = &self.made_root {
            // The folders only this process's creation made (`creating/`
            // stays after a creation claim), if empty.
            for folder in [".tmp", "creating"] {
                let _ = std::fs::remove_dir(root.join(folder));
            }
            let _ = std::fs::remove_dir(root);
        }
    }

    /// Delete what crashed writers left in `.tmp/` (a local folder and
    /// SFTP write objects there first): files last modified more than `age`
    /// ago, which no running writer can still be writing. Best effort:
    /// returns how many were deleted.
    pub fn remove_stale_temporaries(&self, age: Duration) -> usize {
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(age) else {
            return 0;
        };
        match &self.location {
            Location::Local(root) => {
                let Ok(entries) = std::fs::read_dir(root.join(".tmp")) else {
                    return 0;
                };
                if !self.faults.allows(Op::List, ".tmp/") {
                    return 0;
                }
                entries
                    .flatten()
                    .filter(|e| {
                        e.metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|t| t < cutoff)
                    })
                    .filter(|e| std::fs::remove_file(e.path()).is_ok())
                    .count()
            }
            Location::Sftp { .. } => {
                let Ok(names) = self.list(".tmp/") else {
                    return 0;
                };
                names
                    .iter()
                    .map(|name| format!(".tmp/{name}"))
                    .filter(|key| {
                        self.faults.allows(Op::Exists, key)
                            && self
                                .run(|op| async move { op.stat(key).await })
                                .ok()
                                .and_then(|m| m.last_modified())
                                .is_some_and(|t| std::time::SystemTime::from(t) < cutoff)
                    })
                    .filter(|key| {
                        self.faults.allows(Op::Delete, key)
                            && self.run(|op| async move { op.delete(key).await }).is_ok()
                    })
                    .count()
            }
            Location::S3 { .. } => 0,
        }
    }

    /// Whether the store is an SFTP server, which several steps treat
    /// apart (whole-operation retries, renames into place, ssh processes).
    fn is_sftp(&self) -> bool {
        matches!(self.location, Location::Sftp { .. })
    }

    /// Whether the store is across a network (SFTP, S3).
    pub fn is_remote(&self) -> bool {
        !self.location.is_local()
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
    fn op(&self) -> Result<Operator, opendal::Error> {
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
        drop(op);
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
        for task in std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()))
        {
            task.abort();
        }
        // Over SFTP a connection's own task outlives the operator: it ends
        // its ssh master (`ssh -O exit`) and only then deletes the master's
        // control folder. Shutting the runtime down drops unfinished tasks,
        // and a task dropped between the two deletes the folder before the
        // exit request reaches the master, which then runs on. So let them
        // finish first; the bound is for a connection that hangs. (Over S3
        // the HTTP client's idle connections are tasks that would only end
        // with the runtime, and nothing needs to finish.)
        let sftp = self.is_sftp();
        if sftp {
            let start = Instant::now();
            let bound = if self.stopped.load(Ordering::SeqCst) {
                CLOSE_WAIT_INTERRUPTED
            } else {
                CLOSE_WAIT
            };
            runtime.block_on(async {
                let metrics = tokio::runtime::Handle::current().metrics();
                while metrics.num_alive_tasks() > 0 && start.elapsed() < bound {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            tracing::debug!(
                "SFTP connections closed in {:?} ({} tasks left)",
                start.elapsed(),
                runtime.metrics().num_alive_tasks()
            );
        }
        runtime.shutdown_timeout(Duration::from_secs(10));
        if sftp {
            ssh_processes::end_leftovers();
        }
    }

    /// Run a storage operation: `f` with the store, retried as
    /// [`run_retrying`] says.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, opendal::Error>
    where
        F: Fn(Operator) -> Fut,
        Fut: Future<Output = Result<T, opendal::Error>>,
    {
        let sftp = self.is_sftp();
        self.block_on(async {
            let op = self.op()?;
            run_retrying(&op, sftp, f).await
        })
    }

    fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.handle.block_on(f)
    }

    fn fail(&self, op: &'static str, key: &str, e: opendal::Error) -> StorageError {
        failure(&self.url, op, key, e)
    }

    /// Write objects one after the other, in the background: returns at
    /// once, and calls `done` with the outcome once the last is written or
    /// one failed (the rest are then not written). The crash limit counts
    /// the writes now, in order, as [`write`](Self::write) would.
    pub fn write_in_background(
        &self,
        objects: Vec<(String, bytes::Bytes)>,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        for (key, _) in &objects {
            if let Err(e) = self.begin_write(key) {
                done(Err(e));
                return;
            }
        }
        let op = match self.op() {
            Ok(op) => op,
            Err(e) => {
                let key = objects.first().map_or("", |(k, _)| k.as_str());
                done(Err(self.fail("write", key, e)));
                return;
            }
        };
        // Drawn now, in order, so that a seed decides them as it decides
        // the faults of the calling thread's other operations.
        let faults: Vec<_> = objects
            .iter()
            .map(|(key, _)| self.faults.decide(Op::Write, key).unwrap_or_default())
            .collect();
        let url = self.url.clone();
        let sftp = self.is_sftp();
        let bytes_written = self.bytes_written.clone();
        let completion = Completion {
            done: Some(done),
            url: url.clone(),
            key: objects.first().map_or_else(String::new, |(k, _)| k.clone()),
        };
        let task = self.handle.spawn(async move {
            for ((key, data), faults) in objects.into_iter().zip(faults) {
                let len = data.len() as u64;
                let write = run_retrying(&op, sftp, |op| {
                    let (key, data) = (key.clone(), data.clone());
                    async move { put(&op, sftp, &key, data).await }
                });
                let written = faults
                    .run_async(async { write.await.map_err(|e| failure(&url, "write", &key, e)) })
                    .await;
                if let Err(e) = written {
                    completion.finish(Err(e));
                    return;
                }
                bytes_written.fetch_add(len, Ordering::Relaxed);
            }
            completion.finish(Ok(()));
        });
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        background.retain(|task| !task.is_finished());
        background.push(task.abort_handle());
    }

    /// Start no write after this (the run was interrupted and is ending):
    /// writes fail with [`StorageError::Interrupted`]. Deletes go on, so
    /// that locks can be released.
    pub fn stop_writes(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Check that writing `key` may start, and count it.
    fn begin_write(&self, key: &str) -> Result<(), StorageError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(StorageError::Interrupted {
                url: self.url.clone(),
                key: key.to_string(),
            });
        }
        self.count_write();
        Ok(())
    }

    /// Count a modifying operation; end the process if the crash limit is reached.
    fn count_write(&self) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(limit) = self.crash_limit {
            if n > limit {
                eprintln!(
                    "obnam: crash limit of {limit} repository writes reached; stopping abruptly"
                );
                std::process::exit(EXIT_CRASH_LIMIT);
            }
        }
    }

    /// Read a whole object.
    pub fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        // `to_bytes` is free for a buffer in one piece, and so is turning
        // uniquely owned `Bytes` into a `Vec`: no copy of a large object.
        self.faults.run(Op::Read, key, || {
            self.run(|op| async move { op.read(key).await })
                .map(|b| Vec::from(b.to_bytes()))
                .map_err(|e| self.fail("read", key, e))
        })
    }

    /// Read a whole object that may be at most `limit` bytes long: a
    /// larger one is refused as soon as more than `limit` bytes have
    /// arrived, so that a damaged or hostile repository cannot make obnam
    /// read a huge object into memory.
    pub fn read_limited(&self, key: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        self.faults.run(Op::Read, key, || {
            let read = self.run(|op| async move {
                let mut stream = op.reader(key).await?.into_stream(..).await?;
                let mut out: Vec<u8> = Vec::new();
                while let Some(buffer) = stream.try_next().await? {
                    if (out.len() + buffer.len()) as u64 > limit {
                        return Ok(None);
                    }
                    // Copied out as it arrives: see `read_pieces` on SFTP.
                    for piece in buffer {
                        out.extend_from_slice(&piece);
                    }
                }
                Ok(Some(out))
            });
            match read {
                Ok(Some(data)) => Ok(data),
                Ok(None) => Err(StorageError::Failed {
                    url: self.url.clone(),
                    op: "read",
                    key: key.to_string(),
                    message: format!(
                        "it is larger than the format allows for it ({limit} bytes); \
                         damaged or not written by obnam"
                    ),
                }),
                Err(e) => Err(self.fail("read", key, e)),
            }
        })
    }

    /// Read a whole object as the pieces it arrived in, without copying
    /// them into one block.
    pub fn read_pieces(&self, key: &str) -> Result<opendal::Buffer, StorageError> {
        self.faults.run(Op::Read, key, || {
            if !self.is_sftp() {
                return self
                    .run(|op| async move { op.read(key).await })
                    .map_err(|e| self.fail("read", key, e));
            }
            // OpenDAL's SFTP reader reserves 2 MiB for every read, and the
            // server answers with far less (256 KiB from OpenSSH). Collected
            // as they come, each piece would keep its whole 2 MiB block alive:
            // 80 MiB for an 8 MiB pack. A copy of each piece, made as it
            // arrives, lets the reader reuse one block.
            self.run(|op| async move {
                let mut stream = op.reader(key).await?.into_stream(..).await?;
                let mut pieces = Vec::new();
                while let Some(buffer) = stream.try_next().await? {
                    pieces.extend(buffer.map(|piece| bytes::Bytes::copy_from_slice(&piece)));
                }
                Ok(opendal::Buffer::from(pieces))
            })
            .map_err(|e| self.fail("read", key, e))
        })
    }

    /// Read `len` bytes of an object from `offset`. Readers of recently
    /// read objects are kept open: a restore reads many blobs of each pack.
    pub fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.faults.run(Op::Read, key, || {
            let cached = self
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned();
            let reader = match cached {
                Some(r) => r,
                None => {
                    let r = self
                        .run(|op| async move { op.reader(key).await })
                        .map_err(|e| self.fail("read", key, e))?;
                    let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
                    if readers.len() >= OPEN_READERS {
                        readers.clear();
                    }
                    readers.insert(key.to_string(), r.clone());
                    r
                }
            };
            let data = match self.block_on(reader.read(offset..offset + len)) {
                Ok(b) => b.to_vec(),
                // Say plainly what a short object means, rather than the
                // store's account of the range request.
                Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => {
                    return Err(StorageError::Failed {
                        url: self.url.clone(),
                        op: "read",
                        key: key.to_string(),
                        message: format!(
                            "it ends before byte {} (truncated or damaged)",
                            offset + len
                        ),
                    })
                }
                Err(e) => return Err(self.fail("read", key, e)),
            };
            if data.len() as u64 != len {
                return Err(StorageError::Failed {
                    url: self.url.clone(),
                    op: "read",
                    key: key.to_string(),
                    message: format!(
                        "expected {len} bytes at offset {offset}, got {}",
                        data.len()
                    ),
                });
            }
            Ok(data)
        })
    }

    /// Write a whole object.
    pub fn write(&self, key: &str, data: impl Into<bytes::Bytes>) -> Result<(), StorageError> {
        self.begin_write(key)?;
        let data = data.into();
        self.faults
            .run(Op::Write, key, || self.put_counted(key, data))
    }

    /// Write a whole object whose write [`begin_write`](Self::begin_write)
    /// has counted.
    fn put_counted(&self, key: &str, data: bytes::Bytes) -> Result<(), StorageError> {
        let len = data.len() as u64;
        let sftp = self.is_sftp();
        self.run(|op| {
            let data = data.clone();
            async move { put(&op, sftp, key, data).await }
        })
        .map_err(|e| self.fail("write", key, e))?;
        self.bytes_written.fetch_add(len, Ordering::Relaxed);
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
        self.begin_write(key)?;
        self.faults.run(Op::Write, key, || {
            match &self.location {
                Location::Local(root) => {
                    let tmp = format!(".new-{}", super::ids::ObjectId::random().to_hex());
                    self.put_counted(&tmp, data.into())?;
                    let linked = std::fs::hard_link(root.join(&tmp), root.join(key));
                    let _ = std::fs::remove_file(root.join(&tmp));
                    match linked {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            Err(StorageError::Failed {
                                url: self.url.clone(),
                                op: "write",
                                key: key.to_string(),
                                message: e.to_string(),
                            })
                        }
                        _ => Ok(()),
                    }
                }
                // A refused rename onto an existing object counts as written
                // ([`put`]).
                Location::Sftp { .. } => self.put_counted(key, data.into()),
                Location::S3 { .. } => {
                    let len = data.len() as u64;
                    let op = self.op().map_err(|e| self.fail("write", key, e))?;
                    match self.block_on(op.write_with(key, data).if_not_exists(true).into_future())
                    {
                        Ok(_) => {
                            self.bytes_written.fetch_add(len, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(()),
                        Err(e) => Err(self.fail("write", key, e)),
                    }
                }
            }
        })
    }

    /// Delete an object; deleting one that does not exist is not an error.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.count_write();
        self.faults.run(Op::Delete, key, || {
            self.run(|op| async move { op.delete(key).await })
                .map_err(|e| self.fail("delete", key, e))
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
        self.faults.run(Op::List, folder, || {
            let entries =
                match self.run(|op| async move { op.list_with(folder).recursive(true).await }) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(self.fail("list", folder, e)),
                };
            let mut keys: Vec<String> = entries
                .into_iter()
                .filter(|e| e.metadata().is_file())
                .map(|e| e.path().to_string())
                .collect();
            keys.sort();
            Ok(keys)
        })
    }

    /// The names of the objects directly in `folder` (which ends in `/`).
    pub fn list(&self, folder: &str) -> Result<Vec<String>, StorageError> {
        self.faults.run(Op::List, folder, || {
            let entries = match self.run(|op| async move { op.list(folder).await }) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.fail("list", folder, e)),
            };
            let mut names: Vec<String> = entries
                .into_iter()
                .filter(|e| e.metadata().is_file())
                .map(|e| e.name().to_string())
                .collect();
            names.sort();
            Ok(names)
        })
    }
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
    use std::sync::{Arc, Mutex};

    type Outcomes = Arc<Mutex<Vec<Result<(), String>>>>;

    fn completion(outcomes: &Outcomes) -> Completion<impl FnOnce(Result<(), StorageError>)> {
        let outcomes = outcomes.clone();
        Completion {
            done: Some(move |r: Result<(), StorageError>| {
                outcomes.lock().unwrap().push(r.map_err(|e| e.to_string()))
            }),
            url: "s3://b/r".into(),
            key: "packs/ab".into(),
        }
    }

    #[test]
    fn a_background_write_reports_once_even_when_abandoned() {
        let outcomes = Outcomes::default();
        completion(&outcomes).finish(Ok(()));
        drop(completion(&outcomes));
        assert_eq!(
            *outcomes.lock().unwrap(),
            [
                Ok(()),
                Err("s3://b/r: not writing packs/ab: the run was interrupted".to_string())
            ]
        );
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
}
