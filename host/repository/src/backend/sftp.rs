//! A repository in a folder on an SSH server (OpenDAL's sftp service,
//! through the system's `ssh` client). OpenDAL writes straight to the
//! final name, so each object is written to `.tmp/` on the server and
//! renamed into place: a killed run never leaves a half-written object
//! under its final name. Whole operations are retried, and the ssh
//! processes are ended when the storage closes (`ssh_processes`).

use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use opendal::{services, ErrorKind, Operator};

use super::{Backend, Retries};
use crate::fault_injection::Op;
use crate::storage::{Storage, StorageError, StorageOptions};

mod ssh_processes;

/// How long closing the storage waits for its connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The same when the run was interrupted: the command's thread may still
/// be in the middle of an operation, holding connections open, and what
/// is left is ended by [`ssh_processes::end_leftovers`].
const CLOSE_WAIT_INTERRUPTED: Duration = Duration::from_secs(1);

/// An SFTP server.
#[derive(Default)]
pub struct Sftp {
    /// The temporary names of the writes under way: a write abandoned in
    /// flight (aborted as the storage closed) leaves its name here, and
    /// the close deletes what it wrote ([`Backend::remove_abandoned_temporaries`]).
    writing: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Sftp {
    fn writing(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `data` to `tmp`, then rename it to `key`. Also says whether
    /// `tmp` may be left behind: a failure whose delete of it failed too.
    async fn write_then_rename(
        &self,
        op: &Operator,
        tmp: &str,
        key: &str,
        data: bytes::Bytes,
    ) -> (Result<(), opendal::Error>, bool) {
        if let Err(e) = op.write(tmp, data).await {
            // What was written of it stays otherwise, one file per
            // try: on a full disk, the room a prune needs to recover.
            let left = op.delete(tmp).await.is_err();
            return (Err(e), left);
        }
        if let Err(e) = op.rename(tmp, key).await {
            let left = op.delete(tmp).await.is_err();
            // A rename refused because `key` exists: most likely this
            // very write, run again after its first rename went through
            // but the answer was lost with the connection. Every key but
            // `config` is unique to its writer, and `config`'s creator
            // checks the id it reads back.
            if op.exists(key).await.unwrap_or(false) {
                return (Ok(()), left);
            }
            return (Err(e), left);
        }
        (Ok(()), false)
    }
}

/// Where the repository is on an SFTP server.
pub struct Server<'a> {
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
}

/// The destination ssh is given for `host` and `port`, as OpenDAL's
/// SFTP service hands it to `openssh`: `ssh://host:port`, or the bare
/// host. `openssh` takes the port after the last `:` and gives ssh the
/// rest as the host name, brackets and all, so an IPv6 address goes
/// without its brackets (`ssh://::1:2222`), and without a port as a bare
/// address (in `ssh://::1` the `1` would be taken for the port).
fn ssh_destination(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("ssh://{host}:{p}"),
        None => host.to_string(),
    }
}

/// Open the folder on `server`, logging in with `--ssh-key` (else ssh's
/// defaults) and checking the host key as `--ssh-host-keys-check` says.
pub fn open(
    url: &str,
    server: &Server,
    options: &StorageOptions,
) -> Result<(Box<dyn Backend>, Operator), StorageError> {
    // Before any ssh process is started (see ssh_processes).
    ssh_processes::adopt_orphans();
    let ended = ssh_processes::end_those_of_runs_gone();
    if ended > 0 {
        tracing::warn!(
            "ended {ended} ssh {} left connected by an obnam run that was killed",
            if ended == 1 { "process" } else { "processes" }
        );
    }
    let endpoint = ssh_destination(server.host, server.port);
    let strategy = match options.ssh_host_keys_check.as_deref() {
        None | Some("yes") => "strict",
        Some("ifknown") => "add",
        Some("no") => "accept",
        Some(other) => {
            return Err(StorageError::Setup {
                url: url.to_string(),
                message: format!("--ssh-host-keys-check must be yes, ifknown or no, not '{other}'"),
            })
        }
    };
    let mut builder = services::Sftp::default()
        .endpoint(&endpoint)
        .root(server.path)
        .known_hosts_strategy(strategy);
    if let Some(user) = server.user {
        builder = builder.user(user);
    }
    if let Some(key) = &options.ssh_key {
        // ssh would only say `Permission denied (publickey)`.
        let unreadable = match std::fs::File::open(key).and_then(|f| f.metadata()) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some("it is not a file".to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = unreadable {
            return Err(StorageError::Setup {
                url: url.to_string(),
                message: format!("cannot read the --ssh-key file {key}: {why}"),
            });
        }
        builder = builder.key(key);
    }
    let op = Operator::new(builder).map_err(|e| super::setup_error(url, e))?;
    Ok((Box::new(Sftp::default()), op))
}

/// Whether a failed SFTP operation is worth running again: a transient
/// failure, or no SSH connection at all (which OpenDAL's sftp service
/// reports as permanent, though a network blip or a restarting server
/// causes it as often as a wrong address does).
fn retryable(e: &opendal::Error) -> bool {
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

impl Backend for Sftp {
    /// A failure may break the session: a read is not tried again on the
    /// same file handle, in vain, but run again whole, reader and all.
    fn retries(&self) -> Retries {
        Retries {
            retryable,
            reader_survives_failure: false,
        }
    }

    /// Under a temporary name first, then renamed into place.
    fn put<'a>(
        &'a self,
        op: &'a Operator,
        key: &'a str,
        data: bytes::Bytes,
    ) -> BoxFuture<'a, Result<(), opendal::Error>> {
        Box::pin(async move {
            let tmp = format!(".tmp/{}", crate::ids::ObjectId::random().to_hex());
            self.writing().insert(tmp.clone());
            let (written, left) = self.write_then_rename(op, &tmp, key, data).await;
            // A temporary file that could not be deleted (the connection
            // that failed the write failed the delete too: a timeout)
            // stays listed, for the close to try again.
            if !left {
                self.writing().remove(&tmp);
            }
            written
        })
    }

    /// OpenDAL's SFTP reader reserves 2 MiB for every read, and the
    /// server answers with far less (256 KiB from OpenSSH). Collected as
    /// they come, each piece would keep its whole 2 MiB block alive:
    /// 80 MiB for an 8 MiB pack. A copy of each piece, made as it
    /// arrives, lets the reader reuse one block.
    fn read_whole<'a>(
        &'a self,
        op: &'a Operator,
        key: &'a str,
        limit: u64,
    ) -> BoxFuture<'a, Result<Option<opendal::Buffer>, opendal::Error>> {
        Box::pin(super::read_pieces(op, key, limit, |piece| {
            bytes::Bytes::copy_from_slice(&piece)
        }))
    }

    /// A refused rename onto an existing object counts as written
    /// ([`put`](Self::put)).
    fn create_new(&self, storage: &Storage, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        storage.put_counted(key, data.into())
    }

    /// A write abandoned in flight (a failed run's other packs, aborted
    /// as the storage closes) left what it wrote under its temporary name:
    /// up to a pack each, kept until a later run's clean-up of stale
    /// temporaries, on a full disk the room the recovery needs.
    fn remove_abandoned_temporaries<'a>(&'a self, op: &'a Operator) -> BoxFuture<'a, usize> {
        Box::pin(async move {
            let abandoned: Vec<String> = self.writing().drain().collect();
            let mut removed = 0;
            for tmp in abandoned {
                match op.delete(&tmp).await {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::debug!("could not remove {tmp}, abandoned in flight: {e}"),
                }
            }
            removed
        })
    }

    /// Each connection makes the repository's folder and those above it
    /// (OpenDAL's sftp service does, ignoring a failure), so the folder
    /// is there unless a part of its path is a file or may not be
    /// written in. The root itself is not asked for: OpenDAL answers that
    /// it is a folder without asking the server.
    fn cannot_hold_repository(&self, storage: &Storage) -> Result<Option<String>, StorageError> {
        match storage.run(|op| async move { op.stat(".").await }) {
            Ok(meta) if meta.is_dir() => Ok(None),
            Ok(_) => Ok(Some("it is not a folder".into())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Some(
                "it is not a folder, and none can be made there (a part of its path is a \
                 file, or a folder that may not be written to)"
                    .into(),
            )),
            Err(e) => Err(storage.fail("look at", ".", e)),
        }
    }

    fn remove_stale_temporaries(&self, storage: &Storage, cutoff: SystemTime) -> usize {
        let Ok(names) = storage.list(".tmp/") else {
            return 0;
        };
        names
            .iter()
            .map(|name| format!(".tmp/{name}"))
            .filter(|key| {
                storage.faults_allow(Op::Exists, key)
                    && storage
                        .run(|op| async move { op.stat(key).await })
                        .ok()
                        .and_then(|m| m.last_modified())
                        .is_some_and(|t| SystemTime::from(t) < cutoff)
            })
            .filter(|key| {
                storage.faults_allow(Op::Delete, key)
                    && storage
                        .run(|op| async move { op.delete(key).await })
                        .is_ok()
            })
            .count()
    }

    /// A connection's own task outlives the operator: it ends its ssh
    /// master (`ssh -O exit`) and only then deletes the master's control
    /// folder. Shutting the runtime down drops unfinished tasks, and a
    /// task dropped between the two deletes the folder before the exit
    /// request reaches the master, which then runs on. So let them finish
    /// first; the bound is for a connection that hangs.
    fn close(&self, runtime: tokio::runtime::Runtime, interrupted: bool) {
        let start = Instant::now();
        let bound = if interrupted {
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
        runtime.shutdown_timeout(Duration::from_secs(10));
        ssh_processes::end_leftovers();
    }
}

pub use ssh_processes::{mark_owner as mark_ssh_owner, OWNER_VARIABLE as SSH_OWNER_VARIABLE};

/// End the ssh processes of this process's SFTP connections at once,
/// without closing the connections in good order or waiting: for a
/// process about to end abruptly (a second signal), which would leave
/// them running.
pub fn end_ssh_processes_at_once() {
    crate::storage::retry::end_all_operations();
    ssh_processes::signal_leftovers();
}

#[cfg(test)]
mod tests {
    use super::ssh_destination;

    #[test]
    fn ipv6_addresses_reach_ssh_without_brackets() {
        assert_eq!(ssh_destination("::1", Some(2222)), "ssh://::1:2222");
        assert_eq!(ssh_destination("::1", None), "::1");
        assert_eq!(ssh_destination("127.0.0.1", Some(22)), "ssh://127.0.0.1:22");
        assert_eq!(ssh_destination("host", None), "host");
    }
}
