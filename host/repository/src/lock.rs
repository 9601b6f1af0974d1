//! Locks: who is working on which client, and who has the repository to
//! itself.
//!
//! A lock is an object `locks/NAME` recording its kind (a client's lock,
//! the exclusive repository lock, or a prune's), the client, the host, the
//! process id and when it was taken and last refreshed. Locks work on
//! stores without conditional writes: a process writes its own lock object
//! under a fresh name, then lists the locks; if a live conflicting lock
//! exists it deletes its own and waits, retrying until `--lock-timeout`.
//! Because a lock is written before the listing that checks it, of two
//! processes racing at least one sees the other, so both never proceed
//! (both may back off and retry, with random jitter).
//!
//! The name says what the lock is for ([`LockName`]): its kind and, for a
//! client's lock, a hash of the client's name. So a run reads only the
//! lock objects that may conflict with its own (the exclusive and prune
//! locks, and those of its own client), and taking a lock costs the same
//! few requests however many other clients hold theirs; N clients locking
//! at once make O(N) requests, not N²/2. A name without a tag (written
//! before tags, or by a writer this one does not know) is always read.
//!
//! A lock is stale, and broken with a warning, when its process is gone
//! (same host, no such pid) or when it has not been refreshed for
//! [`STALE_AFTER`]. Held locks are refreshed every [`REFRESH_EVERY`] while
//! the holder writes to the repository.
//!
//! Two machines' clocks are never compared: a lock's age is the store's
//! time of its object (a refresh writes a new one) against the store's
//! time of the looking run's own lock object, written just before (the
//! holder's own `refreshed` time is used only where the store gives no
//! times). A clock 40 minutes off made every lock of its host look stale
//! to the others, and a prune then deleted the data of that host's
//! running backup. "Same host" is the host name and, where `/proc` gives
//! them, the boot and the PID namespace the pid counts in ([`Identity`]):
//! a container sharing the host name sees none of the host's processes,
//! and took their locks for dead ones.
//!
//! A lock object that cannot be read (damaged) says nothing of its
//! holder: it counts as held by an unknown process, for what its name
//! says it may lock, until its object has not changed for
//! [`STALE_AFTER`] (where the store gives objects' times: a held lock is
//! rewritten at every refresh), and `force-lock` removes it; `fsck`
//! reports it. A name in `locks/` that is no lock's (a stray file) is
//! ignored with a warning.
//!
//! This module adds to [`Repository`] the operations on locks
//! ([`Repository::lock_client`], [`Repository::lock_exclusive`], the
//! unlocks, [`Repository::refresh_locks`], [`Repository::force_unlock`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::codec::Read;
use super::error::{Holder, RepoError, RepoResult};
use super::ids::ObjectId;
use super::{now_ns, Repository};

/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often held locks are refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// What a lock covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// One client's generations: backups of other clients may run.
    Client,
    /// The whole repository: nothing else may run.
    Exclusive,
    /// A prune: keeps a second prune away, and nothing else (backups of
    /// every client run beside it; see [`crate::prune`]).
    Prune,
    /// A reader of a client's generations (restore, mount, dump, verify,
    /// ...): keeps nothing away, but a prune's deletion waits for it, as
    /// for a backup, so that what it reads is not deleted under it (a
    /// nightly `forget` and `prune` made a long restore of an old
    /// generation fail half-way).
    Read,
}

/// The content of a lock object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockRecord {
    pub kind: LockKind,
    pub client: String,
    pub host: String,
    pub pid: u32,
    /// When taken, in ns since the epoch.
    pub created: i64,
    /// When last refreshed, in ns since the epoch.
    pub refreshed: i64,
    /// The boot of the holder's machine (`/proc/sys/kernel/random/boot_id`),
    /// absent from locks written before obnam recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The PID namespace of the holder (the inode of `/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// When the holder's process started, in clock ticks since the boot
    /// (`/proc/PID/stat`): a process with the lock's pid that started at
    /// another time is another process, the pid reused (a lock left by a
    /// `kill -9` whose pid went to a `sleep` was taken for held: the
    /// client stayed locked, and `force-lock` refused, until it was 30
    /// minutes old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The command the holder runs (`restore`, `mount`), where it said
    /// ([`set_command`]): a prune that waits for a reader names it (it
    /// said "a restore, say" of a mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The command this process runs, for its lock records.
static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Say which command this process runs (`backup`, `restore`, `mount`):
/// its locks record it, and whoever waits for one of them is told. The
/// first call counts.
pub fn set_command(name: &str) {
    let _ = COMMAND.set(name.to_string());
}

/// What tells the processes whose pids this process can look up from
/// every other: the host name, the boot, the PID namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
}

impl Identity {
    /// This process's.
    pub fn current() -> &'static Identity {
        static CURRENT: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| Identity {
            host: host_name(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty()),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .and_then(|link| {
                    let text = link.to_string_lossy().into_owned();
                    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
                }),
        })
    }

    /// A lock record of this process.
    pub fn record(&self, kind: LockKind, client: &str, now: i64) -> LockRecord {
        LockRecord {
            kind,
            client: client.to_string(),
            host: self.host.clone(),
            pid: std::process::id(),
            created: now,
            refreshed: now,
            boot_id: self.boot_id.clone(),
            pid_ns: self.pid_ns,
            pid_start: process_start(std::process::id()),
            command: COMMAND.get().cloned(),
        }
    }
}

/// How long ago a lock (or claim) was last refreshed: by the store's
/// clock where the store gives objects' times (its object's time against
/// that of an object the looking run has just written, `store_now`), else
/// by the holder's `refreshed` time against this machine's clock.
pub(crate) fn age(
    refreshed: i64,
    modified_ns: Option<u128>,
    store_now: Option<u128>,
    local_now: i64,
) -> Duration {
    match (modified_ns, store_now) {
        (Some(then), Some(now)) => {
            Duration::from_nanos(u64::try_from(now.saturating_sub(then)).unwrap_or(u64::MAX))
        }
        _ => Duration::from_nanos(local_now.saturating_sub(refreshed).max(0) as u64),
    }
}

impl LockRecord {
    fn conflicts_with(&self, other: &LockRecord) -> bool {
        use LockKind::*;
        match (self.kind, other.kind) {
            (Read, _) | (_, Read) => false,
            (Exclusive, _) | (_, Exclusive) => true,
            (Client, Client) => self.client == other.client,
            (Prune, Prune) => true,
            (Client, Prune) | (Prune, Client) => false,
        }
    }

    /// The run that holds this lock: the same through every refresh
    /// (which writes a new lock object with the same creation time).
    pub fn run(&self) -> Run {
        Run {
            host: self.host.clone(),
            pid: self.pid,
            created: self.created,
        }
    }

    /// The process that holds this lock or claim, stored as `object`.
    pub(super) fn holder(&self, object: String) -> Holder {
        Holder {
            host: self.host.clone(),
            pid: self.pid,
            since: format_time(self.created),
            object,
        }
    }

    fn describe(&self, id: &str) -> String {
        let what = match self.kind {
            LockKind::Client => format!("client '{}'", crate::error::shown(&self.client)),
            LockKind::Exclusive => "the repository".to_string(),
            LockKind::Prune => "pruning".to_string(),
            LockKind::Read if self.client.is_empty() => {
                return format!(
                    "every client is being read ({}) by {} (lock locks/{id})",
                    self.command_or("stats, say"),
                    self.holder(format!("locks/{id}"))
                )
            }
            LockKind::Read => {
                return format!(
                    "client '{}' is being read ({}) by {} (lock locks/{id})",
                    crate::error::shown(&self.client),
                    self.command_or("a restore, say"),
                    self.holder(format!("locks/{id}"))
                )
            }
        };
        format!(
            "{what} is locked by {} (lock locks/{id})",
            self.holder(format!("locks/{id}"))
        )
    }

    /// The command the holder runs, as `obnam COMMAND`, else `guess`
    /// (a lock written before commands were recorded).
    fn command_or(&self, guess: &str) -> String {
        match &self.command {
            Some(command) => format!("obnam {}", crate::error::shown(command)),
            None => guess.to_string(),
        }
    }

    /// Whether this lock's process is one this process can see running
    /// (same host, boot and PID namespace, and its pid is there), other
    /// than this process itself.
    fn is_of_a_running_process(&self, me: &Identity) -> bool {
        self.same_pids(me) && self.pid != std::process::id() && self.holder_runs()
    }

    /// Whether the holder's process runs: its pid is a process's, and
    /// (where the lock says when its holder started) one that started
    /// then, not another that was given the pid since.
    fn holder_runs(&self) -> bool {
        process_exists(self.pid)
            && match (self.pid_start, process_start(self.pid)) {
                (Some(recorded), Some(now)) => recorded == now,
                _ => true,
            }
    }

    /// Whether this lock's pid counts among the processes this one can
    /// look up: see [`Identity`].
    fn same_pids(&self, me: &Identity) -> bool {
        self.host == me.host
            && match (&self.boot_id, self.pid_ns) {
                // Written before obnam recorded them: the host name is all
                // there is to go by.
                (None, None) => true,
                (boot_id, pid_ns) => *boot_id == me.boot_id && pid_ns == me.pid_ns,
            }
    }

    /// Why the lock is stale, if it is: its process is gone (one this
    /// process can look up: see [`Identity`]), or it is `age` old (see
    /// [`age`]).
    pub(super) fn staleness(&self, me: &Identity, age: Duration) -> Option<String> {
        if self.same_pids(me) {
            if self.pid == std::process::id() {
                return Some(format!(
                    "left by an earlier process with this pid {}",
                    self.pid
                ));
            }
            if !process_exists(self.pid) {
                return Some(format!("its process {} on this host is gone", self.pid));
            }
            if !self.holder_runs() {
                return Some(format!(
                    "its process {} on this host is gone (the pid is another process's now)",
                    self.pid
                ));
            }
        }
        (age > STALE_AFTER).then(|| format!("not refreshed for {}s", age.as_secs()))
    }
}

/// Whether process `pid` (of this PID namespace) exists. Asked of the
/// kernel (signal 0), not of `/proc`: with `/proc` mounted `hidepid=2` (or
/// a service's `ProtectProc=invisible`) another user's processes are not
/// there, and their live runs were taken for dead ones, their locks
/// broken. A process one may not signal exists all the same (`EPERM`).
/// When process `pid` started, in clock ticks since the boot (field 22
/// of `/proc/PID/stat`, after the name in parentheses, which may itself
/// hold spaces and parentheses); `None` where it cannot be read.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from the third (state) on: the start time is the 22nd.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// The name of a lock object: `x.ID` (exclusive), `p.ID` (prune),
/// `r.ID` (a reader's), `c.CLIENTHASH.ID` (a client's lock; the hash is
/// the first 8 bytes of BLAKE3 of the client's name, in hex), where ID is
/// a random object id.
/// Any other name (a bare object id, as written before tags) says
/// nothing, and its object is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockName(String);

/// What a lock object's name says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tag {
    Exclusive,
    Prune,
    Read,
    /// A client's lock, by the hash of the client's name.
    Client(String),
    /// Nothing: the object must be read.
    Unknown,
}

/// The hash of a client's name that its lock names carry.
fn client_hash(client: &str) -> String {
    hex::encode(&blake3::hash(client.as_bytes()).as_bytes()[..8])
}

impl LockName {
    /// A fresh name for a lock of `record`'s kind and client.
    pub fn new(record: &LockRecord) -> LockName {
        let id = ObjectId::random().to_hex();
        LockName(match record.kind {
            LockKind::Exclusive => format!("x.{id}"),
            LockKind::Prune => format!("p.{id}"),
            LockKind::Read => format!("r.{id}"),
            LockKind::Client => format!("c.{}.{id}", client_hash(&record.client)),
        })
    }

    /// The name as stored under `locks/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn tag(name: &str) -> Tag {
        let parts: Vec<&str> = name.split('.').collect();
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            ["x", id] if hex(id, 32) => Tag::Exclusive,
            ["p", id] if hex(id, 32) => Tag::Prune,
            ["r", id] if hex(id, 32) => Tag::Read,
            ["c", client, id] if hex(client, 16) && hex(id, 32) => Tag::Client(client.to_string()),
            _ => Tag::Unknown,
        }
    }

    /// Whether the lock object called `name` may conflict with a lock of
    /// `record`: false only when its name shows it cannot.
    fn may_conflict(name: &str, record: &LockRecord) -> bool {
        match (record.kind, Self::tag(name)) {
            // A reader's lock keeps nothing away, and nothing keeps a
            // reader away: neither side needs to read the other's.
            (LockKind::Read, _) | (_, Tag::Read) => false,
            (_, Tag::Unknown) | (LockKind::Exclusive, _) | (_, Tag::Exclusive) => true,
            (LockKind::Client, Tag::Client(hash)) => hash == client_hash(&record.client),
            (LockKind::Client, Tag::Prune) | (LockKind::Prune, Tag::Client(_)) => false,
            (LockKind::Prune, Tag::Prune) => true,
        }
    }

    /// Whether the lock object called `name` may be a run's lock (on a
    /// client or the repository, or a reader's), which a prune waits for.
    fn may_be_a_run(name: &str) -> bool {
        Self::tag(name) != Tag::Prune
    }

    /// Whether `name` is a lock's: tagged, or a bare object id as written
    /// before tags.
    fn is_lock_name(name: &str) -> bool {
        Self::tag(name) != Tag::Unknown
            || (name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Whether the lock object called `name` may be a lock of `client` or
    /// the exclusive lock: what `force-lock` for that client removes of a
    /// lock whose content cannot be read.
    fn may_lock_client(name: &str, client: &str) -> bool {
        match Self::tag(name) {
            Tag::Client(hash) => hash == client_hash(client),
            // A damaged reader's lock says not whose generations it read;
            // removing it costs nothing but a prune's wait.
            Tag::Exclusive | Tag::Unknown | Tag::Read => true,
            Tag::Prune => false,
        }
    }
}

impl std::fmt::Display for LockName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lock object as listed and read: its name, what it holds, and its
/// time on the store (where the store gives one).
struct Listed {
    name: String,
    lock: ReadLock,
    modified_ns: Option<u128>,
}

/// A lock object as read: its record, or, if it cannot be read, what is
/// wrong with it.
#[derive(Clone, Debug)]
enum ReadLock {
    Record(LockRecord),
    Damaged { problem: String },
}

/// One run that holds a lock, as a prune records it: host, process and
/// the time the lock was taken.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Run {
    pub host: String,
    pub pid: u32,
    pub created: i64,
}

pub(super) fn format_time(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// How often the thread that keeps a reader's lock fresh wakes (it
/// refreshes the lock every [`REFRESH_EVERY`]).
const REFRESH_TICK: Duration = Duration::from_secs(15);

/// Keep the locks of the repository behind `repo` fresh, from a thread of
/// its own, while it holds a reader's lock: looking every `tick`,
/// refreshing every `every`. The thread ends with the lock (or the
/// repository).
fn keep_reader_locks_fresh(repo: std::sync::Weak<Repository>, tick: Duration, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("obnam-reader-lock".to_string())
        .spawn(move || {
            let mut said = false;
            loop {
                std::thread::sleep(tick);
                let Some(repo) = repo.upgrade() else {
                    return;
                };
                if !repo.holds_reader_lock() {
                    return;
                }
                match repo.refresh_locks_every(every) {
                    // Refreshed: a later failure is said again.
                    Ok(true) => said = false,
                    Ok(false) => {}
                    // Once until a refresh works again: a lock not
                    // refreshed for 30 minutes is passed over by prunes.
                    Err(e) if !said => {
                        said = true;
                        tracing::warn!(
                            "could not refresh this run's reader's lock ({e}): if it stays \
                             so for {} minutes, a prune may delete what this run reads",
                            STALE_AFTER.as_secs() / 60
                        );
                    }
                    Err(e) => tracing::debug!("refreshing this run's reader's lock: {e}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("no thread to keep the reader's lock fresh: {e}");
    }
}

/// How old a file in `.tmp/` must be to be taken for a crashed writer's.
const STALE_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

/// Locks held by this process.
#[derive(Default)]
pub struct Locks {
    held: Mutex<Vec<(LockName, LockRecord)>>,
    last_refresh: Mutex<Option<Instant>>,
    /// The wall-clock time of the last refresh: the monotonic clock of
    /// `last_refresh` stands still while the machine is suspended.
    refreshed_at: Mutex<Option<std::time::SystemTime>>,
    /// The lock went stale (see [`Repository::check_locks_held`]): what
    /// the run built on may be gone, whatever a later check finds.
    went_stale: Mutex<Option<(String, u64)>>,
}

/// How much sooner than [`STALE_AFTER`] a run takes its own lock for one
/// that others may have judged stale (times are read to the second).
const STALE_SLACK: Duration = Duration::from_secs(60);

impl Repository {
    /// Lock a client for a backup (or other work on its generations).
    pub fn lock_client(&self, client: &str, timeout: Duration) -> RepoResult<()> {
        self.acquire(LockKind::Client, client, timeout)?;
        // Before the index objects written since the open are loaded:
        // see `prune::plan` for why this order.
        if let Err(e) = self.avoid_planned_packs() {
            let _ = self.unlock_client(client);
            return Err(e);
        }
        // The run that held the lock before may have stored chunks and
        // trees since this process loaded the index: the client's latest
        // generation refers to them. An index not loaded yet is loaded
        // whole at its first use, after this: a run that needs none (a
        // forget) reads no index object.
        if self.index_loaded() {
            if let Err(e) = self.load_index() {
                let _ = self.unlock_client(client);
                return Err(e);
            }
        }
        // A writer is starting: a good moment to tidy up after crashed ones.
        // Their files' ages are the store's times against the store's time
        // of this run's lock, just written: a machine whose clock was a
        // day ahead took every other writer's file for a crashed one's,
        // and their backups failed.
        let store_now = self
            .held_lock_times(&self.held_names())
            .ok()
            .and_then(|times| times.into_iter().flatten().max())
            .and_then(|ns| {
                std::time::UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(ns).ok()?))
            })
            .unwrap_or_else(std::time::SystemTime::now);
        let removed = self
            .storage()
            .remove_stale_temporaries(store_now, STALE_TEMPORARY);
        if removed > 0 {
            tracing::info!("removed {removed} temporary files left in .tmp/ by interrupted writes");
        }
        Ok(())
    }

    /// Lock a client for a run that only removes generations (forget,
    /// remove-client) and stores nothing. Unlike [`lock_client`], it
    /// takes no note of prune plans: such a run builds on no stored data,
    /// so what a plan will delete is nothing to it, and a damaged plan
    /// (which stops a backup) does not stop it.
    ///
    /// [`lock_client`]: Self::lock_client
    pub fn lock_client_for_removal(&self, client: &str, timeout: Duration) -> RepoResult<()> {
        self.acquire(LockKind::Client, client, timeout)
    }

    /// Take the repository for destructive work.
    pub fn lock_exclusive(&self, timeout: Duration) -> RepoResult<()> {
        self.acquire(LockKind::Exclusive, "", timeout)
    }

    /// Keep other prunes away (and nothing else).
    pub fn lock_prune(&self, timeout: Duration) -> RepoResult<()> {
        self.acquire(LockKind::Prune, "", timeout)
    }

    /// Release the prune lock.
    pub fn unlock_prune(&self) -> RepoResult<()> {
        self.release(|r| r.kind == LockKind::Prune)
    }

    /// `work(pretend)` under the prune lock (waiting up to `timeout`),
    /// released after whatever `work` gave, unless `pretend`: for a repair
    /// under the exclusive lock that writes what a prune's plan could
    /// delete meanwhile (`repair-index`, `repair-packs`, `repair-records`).
    /// Pretending, it only reads, and takes no lock.
    pub(crate) fn under_prune_lock<T>(
        &self,
        pretend: bool,
        timeout: Duration,
        work: impl FnOnce(bool) -> RepoResult<T>,
    ) -> RepoResult<T> {
        if pretend {
            return work(true);
        }
        self.lock_prune(timeout)?;
        let done = work(false);
        let unlocked = self.unlock_prune();
        let done = done?;
        unlocked?;
        Ok(done)
    }

    /// Take a reader's lock on `client`'s generations: for a command
    /// that reads them (restore, mount, dump, verify, ...), before it
    /// lists or opens a generation. Nothing waits for it but a prune's
    /// deletion (see [`LockKind::Read`]). A thread keeps it fresh while
    /// it is held, whether the command reads or waits (a mount may sit
    /// idle for hours). Reader's locks of processes gone are removed on
    /// the way: nobody else would (nothing conflicts with them).
    ///
    /// Fails if the lock object cannot be written (a read-only store):
    /// the caller may go on without it.
    pub fn lock_reading(self: &std::sync::Arc<Self>, client: &str) -> RepoResult<()> {
        let me = Identity::current();
        let record = me.record(LockKind::Read, client, now_ns());
        let id = LockName::new(&record);
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id.clone(), record.clone()));
        // Tried twice, not with the store's retries: where it cannot be
        // written (a store this user may only read), the command goes on
        // without it, and should not first wait some 12 s for it.
        let data = serde_json::to_vec(&record).map_err(|e| RepoError::corrupt("lock", e))?;
        let key = format!("locks/{id}");
        let written = self.write_object_once(&key, data.clone()).or_else(|e| {
            tracing::debug!("writing the reader's lock: {e}; once more");
            std::thread::sleep(std::time::Duration::from_millis(250));
            self.write_object_once(&key, data)
        });
        if let Err(e) = written {
            // Quietly: the caller says what going on without it means
            // (a store this user may only read refused it, most likely).
            if let Err(e) = self.storage().delete_once(&key) {
                tracing::debug!("removing the reader's lock that was not written: {e}");
            }
            self.not_held(&id);
            return Err(e);
        }
        self.start_refresh_clock();
        if let Err(e) = self.remove_stale_reader_locks(&id) {
            tracing::debug!("looking for readers' locks left behind: {e}");
        }
        keep_reader_locks_fresh(std::sync::Arc::downgrade(self), REFRESH_TICK, REFRESH_EVERY);
        Ok(())
    }

    /// Release the reader's locks this process holds.
    pub fn unlock_reading(&self) -> RepoResult<()> {
        self.release(|r| r.kind == LockKind::Read)
    }

    /// Whether this process holds a reader's lock.
    fn holds_reader_lock(&self) -> bool {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(_, r)| r.kind == LockKind::Read)
    }

    /// Remove the readers' locks that are stale (their process gone, or
    /// not refreshed for [`STALE_AFTER`]): a restore killed with
    /// `SIGKILL` leaves one, which only a prune reads (and passes over).
    fn remove_stale_reader_locks(&self, mine: &LockName) -> RepoResult<()> {
        let me = Identity::current();
        let now = now_ns();
        let (locks, store_now) = self.read_locks(
            |name| LockName::tag(name) == Tag::Read && name != mine.as_str(),
            &[mine.to_string()],
        )?;
        for Listed {
            name,
            lock,
            modified_ns,
        } in locks
        {
            if let ReadLock::Record(r) = lock {
                let age = age(r.refreshed, modified_ns, store_now, now);
                if let Some(why) = r.staleness(me, age) {
                    tracing::info!("removing a stale lock: {} ({why})", r.describe(&name));
                    self.storage().delete(&format!("locks/{name}"))?;
                }
            }
        }
        Ok(())
    }

    /// What `runs` are, as their lock objects say (`client 'c' is locked
    /// by ...`, `client 'c' is being read (a restore, say) by ...`); a
    /// run whose lock is gone or cannot be read, by what is known of it.
    pub fn describe_runs(&self, runs: &[Run]) -> RepoResult<Vec<String>> {
        let (locks, _) = self.read_locks(LockName::may_be_a_run, &[])?;
        Ok(runs
            .iter()
            .map(|run| {
                locks
                    .iter()
                    .find_map(|l| match &l.lock {
                        ReadLock::Record(r) if r.run() == *run => Some(r.describe(&l.name)),
                        _ => None,
                    })
                    .unwrap_or_else(|| match run.pid {
                        // A damaged lock: its host says which.
                        0 => run.host.clone(),
                        pid => format!(
                            "a run on host {} (pid {pid}) since {}",
                            run.host,
                            format_time(run.created)
                        ),
                    })
            })
            .collect())
    }

    /// The runs that hold a lock on a client or on the whole repository,
    /// or read a client's generations, and are alive (their locks not
    /// stale): what a prune waits for.
    pub fn live_runs(&self) -> RepoResult<Vec<Run>> {
        let me = Identity::current();
        let now = now_ns();
        let mine = std::process::id();
        let mut runs: Vec<Run> = Vec::new();
        // This process holds the prune lock: its object's time is the
        // store's time now, or a little before (which only makes locks
        // look younger: a run is waited for a little longer).
        let (locks, store_now) = self.read_locks(LockName::may_be_a_run, &self.held_names())?;
        for Listed {
            name,
            lock,
            modified_ns,
        } in locks
        {
            match lock {
                ReadLock::Record(r) => {
                    let age = age(r.refreshed, modified_ns, store_now, now);
                    if r.kind != LockKind::Prune
                        && !(r.same_pids(me) && r.pid == mine)
                        && r.staleness(me, age).is_none()
                    {
                        runs.push(r.run());
                    }
                }
                // A damaged lock may be a backup's, which began before the
                // plan and may build on what it deletes: a run of unknown
                // name, alive while its object stays and changes (a held
                // lock is rewritten at every refresh; one untouched for
                // longer than a lock stays fresh is held by no one).
                ReadLock::Damaged { .. } => {
                    let unknown_age = modified_ns.is_none();
                    if unknown_age
                        || age(0, modified_ns, store_now.or(Some(now.max(0) as u128)), now)
                            <= STALE_AFTER
                    {
                        runs.push(Run {
                            host: format!("(the damaged lock locks/{name})"),
                            pid: 0,
                            created: 0,
                        });
                    }
                }
            }
        }
        runs.sort_by(|a, b| (&a.host, a.pid, a.created).cmp(&(&b.host, b.pid, b.created)));
        runs.dedup();
        Ok(runs)
    }

    fn acquire(&self, kind: LockKind, client: &str, timeout: Duration) -> RepoResult<()> {
        let start = Instant::now();
        let me = Identity::current();
        let mut tries = 0;
        let mut said_waiting = false;
        loop {
            tries += 1;
            let record = me.record(kind, client, now_ns());
            let id = LockName::new(&record);
            // Counted as held before it is written: an interruption from
            // here on releases it as it releases every held lock (one
            // written but not yet held was left behind, and kept other
            // hosts waiting for `STALE_AFTER`), also while this run waits.
            self.locks
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id.clone(), record.clone()));
            // A failed write or check leaves no lock behind: the write may
            // have landed all the same (its answer lost), and a lock that
            // nobody holds would keep other runs waiting until it is found
            // stale (at once on this host, after `STALE_AFTER` elsewhere).
            if let Err(e) = self.write_lock(&id, &record) {
                self.drop_unheld_lock(&id);
                return Err(e);
            }
            let blocker = match self.first_conflict(&id, &record, me) {
                Ok(blocker) => blocker,
                Err(e) => {
                    self.drop_unheld_lock(&id);
                    return Err(e);
                }
            };
            let Some((other_id, other)) = blocker else {
                self.start_refresh_clock();
                return Ok(());
            };
            let deleted = self.storage().delete(&format!("locks/{id}"));
            self.not_held(&id);
            deleted?;
            // Two runs that start together each see the other's lock:
            // even without waiting (`--lock-timeout 0`), one more try
            // after a random pause lets one of them through (both gave up).
            if start.elapsed() >= timeout && (tries > 1 || !timeout.is_zero()) {
                return Err(match other {
                    ReadLock::Record(other) => RepoError::Locked {
                        client: (other.kind == LockKind::Client).then(|| other.client.clone()),
                        pruning: other.kind == LockKind::Prune,
                        holder: Box::new(other.holder(format!("locks/{other_id}"))),
                        waited: timeout,
                    },
                    ReadLock::Damaged { problem, .. } => RepoError::LockedByDamaged {
                        client: (kind == LockKind::Client).then(|| client.to_string()),
                        object: format!("locks/{other_id}"),
                        problem,
                        waited: timeout,
                    },
                });
            }
            // Once per wait: else a run waiting for a long backup shows
            // nothing but a progress line that does not move.
            if !said_waiting && !timeout.is_zero() {
                said_waiting = true;
                let held = match &other {
                    ReadLock::Record(other) => other.describe(&other_id.to_string()),
                    ReadLock::Damaged { problem, .. } => {
                        format!("the lock locks/{other_id} is damaged ({problem})")
                    }
                };
                tracing::info!(
                    target: "obnam::notice",
                    "{held}; waiting up to {}s for it (--lock-timeout)",
                    timeout.as_secs()
                );
            }
            let jitter = Duration::from_millis(u64::from(ObjectId::random().0[0]) * 2);
            let wait = if timeout.is_zero() {
                jitter
            } else {
                (Duration::from_millis(500) + jitter).min(timeout.saturating_sub(start.elapsed()))
            };
            std::thread::sleep(wait.max(Duration::from_millis(10)));
        }
    }

    /// Count refreshes from now (see `refresh_locks`), unless a lock held
    /// already started the count.
    fn start_refresh_clock(&self) {
        self.locks
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        self.locks
            .refreshed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(std::time::SystemTime::now);
    }

    /// No longer count `id` as held (its object is deleted, or was never
    /// written).
    fn not_held(&self, id: &LockName) {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(held, _)| held != id);
    }

    /// [`remove_unheld_lock`](Self::remove_unheld_lock) of a lock this
    /// process was taking, and no longer count it as held.
    fn drop_unheld_lock(&self, id: &LockName) {
        self.remove_unheld_lock(id);
        self.not_held(id);
    }

    /// Delete a lock object this process wrote but does not hold (after a
    /// failure), if it is there. Best effort: one left behind is stale as
    /// soon as this process is gone.
    fn remove_unheld_lock(&self, id: &LockName) {
        match self.storage().delete(&format!("locks/{id}")) {
            // Refused as its write was: there is none to remove.
            Err(crate::storage::StorageError::Refused { .. }) => {}
            Err(e) => tracing::warn!("could not remove the lock locks/{id} after a failure: {e}"),
            Ok(()) => {}
        }
    }

    fn write_lock(&self, id: &LockName, record: &LockRecord) -> RepoResult<()> {
        let data = serde_json::to_vec(record).map_err(|e| RepoError::corrupt("lock", e))?;
        self.write_object(&format!("locks/{id}"), data)
    }

    /// The lock objects whose names `wanted` picks, with their records or
    /// what is wrong with them, and their times on the store (where it
    /// gives them); and the store's time now, as the newest time of the
    /// objects named in `own` (this process's, written before the
    /// listing), if it gives one. A lock listed but already gone is
    /// skipped; a name that is no lock's is ignored with a warning.
    fn read_locks(
        &self,
        wanted: impl Fn(&str) -> bool,
        own: &[String],
    ) -> RepoResult<(Vec<Listed>, Option<u128>)> {
        let mut keys = Vec::new();
        let mut picked = Vec::new();
        let mut store_now: Option<u128> = None;
        for (key, stamp) in self.storage().list_stamped("locks/", false)? {
            let name = key.strip_prefix("locks/").unwrap_or(&key).to_string();
            if own.contains(&name) {
                store_now = store_now.max(stamp.modified_ns);
            }
            if !LockName::is_lock_name(&name) {
                self.damaged.stray(&key);
            } else if wanted(&name) {
                keys.push(key);
                picked.push((name, stamp.modified_ns));
            }
        }
        let mut locks = Vec::with_capacity(keys.len());
        let sound = |_: &str, bytes: &[u8]| serde_json::from_slice::<LockRecord>(bytes).is_ok();
        let read = self.read_objects_each(&keys, &sound)?;
        for ((name, modified_ns), read) in picked.into_iter().zip(read) {
            let lock = match read {
                Read::Gone => continue,
                Read::Bytes(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(record) => ReadLock::Record(record),
                    Err(e) => ReadLock::Damaged {
                        problem: RepoError::corrupt(format!("locks/{name}"), e).to_string(),
                    },
                },
                Read::Damaged(e) => ReadLock::Damaged {
                    problem: e.to_string(),
                },
            };
            locks.push(Listed {
                name,
                lock,
                modified_ns,
            });
        }
        Ok((locks, store_now))
    }

    /// The names of the lock objects this process holds.
    fn held_names(&self) -> Vec<String> {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The locks whose process this one can tell is gone (on this host,
    /// in its boot and PID namespace), described: what `fsck` warns about
    /// (the next run breaks them, so they are no problem, but one on a
    /// client nobody backs up from this host again stays until then).
    /// Each with whether it is a reader's (which only the next reader
    /// removes).
    pub(crate) fn locks_of_gone_processes(&self) -> RepoResult<Vec<(String, bool)>> {
        let me = Identity::current();
        Ok(self
            .read_locks(|_| true, &[])?
            .0
            .into_iter()
            .filter_map(|Listed { name, lock, .. }| match lock {
                ReadLock::Record(r)
                    if r.same_pids(me) && r.pid != std::process::id() && !process_exists(r.pid) =>
                {
                    Some((r.describe(&name), r.kind == LockKind::Read))
                }
                _ => None,
            })
            .collect())
    }

    /// The lock objects that cannot be read, as the problems `fsck`
    /// reports.
    pub(crate) fn damaged_locks(&self) -> RepoResult<Vec<String>> {
        Ok(self
            .read_locks(|_| true, &[])?
            .0
            .into_iter()
            .filter_map(|Listed { name, lock, .. }| match lock {
                ReadLock::Damaged { problem, .. } if LockName::tag(&name) == Tag::Read => {
                    Some(format!(
                        "damaged lock object locks/{name}: {problem}; a reader's lock by its \
                         name, it keeps prunes from deleting until it is 30 minutes old: \
                         'obnam force-lock' removes it"
                    ))
                }
                ReadLock::Damaged { problem, .. } => Some(format!(
                    "damaged lock object locks/{name}: {problem}; it keeps other runs \
                     waiting: if no other obnam is using the repository, 'obnam force-lock' \
                     removes it"
                )),
                ReadLock::Record(_) => None,
            })
            .collect())
    }

    fn first_conflict(
        &self,
        mine: &LockName,
        record: &LockRecord,
        me: &Identity,
    ) -> RepoResult<Option<(String, ReadLock)>> {
        let now = now_ns();
        let held = self.held_names();
        let mut own = held.clone();
        own.push(mine.to_string());
        // Only the locks whose names say they may conflict are read.
        let (candidates, store_now) = self.read_locks(
            |name| {
                name != mine.as_str()
                    && !held.iter().any(|h| h == name)
                    && LockName::may_conflict(name, record)
            },
            &own,
        )?;
        let mut first = None;
        for Listed {
            name,
            lock: other,
            modified_ns,
        } in candidates
        {
            match &other {
                ReadLock::Record(other) => {
                    if !record.conflicts_with(other) {
                        continue;
                    }
                    let age = age(other.refreshed, modified_ns, store_now, now);
                    if let Some(why) = other.staleness(me, age) {
                        tracing::warn!("breaking stale lock: {} ({why})", other.describe(&name));
                        self.storage().delete(&format!("locks/{name}"))?;
                        continue;
                    }
                }
                // Its name said it may conflict, and its content cannot
                // say otherwise. Untouched for long, it is held by no one:
                // a held lock is rewritten at every refresh.
                ReadLock::Damaged { problem, .. } => {
                    let untouched = modified_ns
                        .map(|_| age(0, modified_ns, store_now.or(Some(now.max(0) as u128)), now));
                    if let Some(age) = untouched.filter(|age| *age > STALE_AFTER) {
                        tracing::warn!(
                            "breaking stale damaged lock locks/{name} ({problem}; not changed \
                             for {}s)",
                            age.as_secs()
                        );
                        self.storage().delete(&format!("locks/{name}"))?;
                        continue;
                    }
                }
            }
            // A run that holds the exclusive lock holds the prune lock
            // too (a repair): the conflict named is the one the user
            // knows of, not the prune lock met first in the listing.
            match &other {
                ReadLock::Record(r) if r.kind == LockKind::Prune => {
                    first.get_or_insert((name, other));
                }
                _ => return Ok(Some((name, other))),
            }
        }
        Ok(first)
    }

    /// Release the lock this process holds on a client.
    pub fn unlock_client(&self, client: &str) -> RepoResult<()> {
        self.release(|r| r.kind == LockKind::Client && r.client == client)
    }

    /// Release the exclusive lock.
    pub fn unlock_exclusive(&self) -> RepoResult<()> {
        self.release(|r| r.kind == LockKind::Exclusive)
    }

    /// Release every lock this process holds.
    pub fn unlock_all(&self) -> RepoResult<()> {
        self.release(|_| true)
    }

    /// [`unlock_all`](Self::unlock_all), each delete tried once, not with
    /// the store's retries: for an interrupted run, which must end soon
    /// (a store that stopped answering kept a Ctrl-C'd run retrying its
    /// lock's release for minutes); a lock left behind is broken as stale.
    pub fn unlock_all_tried_once(&self) -> RepoResult<()> {
        self.release_tried(|_| true, false)
    }

    fn release(&self, which: impl Fn(&LockRecord) -> bool) -> RepoResult<()> {
        self.release_tried(which, true)
    }

    fn release_tried(&self, which: impl Fn(&LockRecord) -> bool, retried: bool) -> RepoResult<()> {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut first_error = None;
        held.retain(|(id, record)| {
            if !which(record) {
                return true;
            }
            let key = format!("locks/{id}");
            let deleted = match retried {
                true => self.storage().delete(&key),
                false => self.storage().delete_once(&key),
            };
            if let Err(e) = deleted {
                if record.kind == LockKind::Read {
                    // Left behind, it only keeps prunes' deletions
                    // waiting until it is stale (at once on this host),
                    // and the next reader removes it: not worth a warning
                    // beside the error of a store that went away.
                    tracing::debug!("could not release the reader's lock locks/{id}: {e}");
                } else {
                    first_error.get_or_insert(e);
                }
            }
            false
        });
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Check that every lock this process holds is still there: called
    /// before a step that must not be taken by a run whose lock another
    /// run broke (committing a generation, which may rest on data a
    /// prune has since deleted; removing a key slot, which another
    /// removal may have made the last).
    ///
    /// A lock that is there may still have been taken for a dead run's
    /// meanwhile: a prune does not wait for a run whose lock is older than
    /// [`STALE_AFTER`], it does not remove it. A run that did not refresh
    /// its lock for that long (a machine suspended mid-backup, a read
    /// stalled on a hung share, or the store's clock stepped forward)
    /// committed, exit 0, a generation whose data such a prune had
    /// deleted. So the lock is refreshed here, and the run fails if the
    /// refresh comes too late: by the wall clock since the last refresh,
    /// or by the store's time of the new lock object against the old.
    pub fn check_locks_held(&self) -> RepoResult<()> {
        let held = self.held_names();
        if held.is_empty() {
            return Ok(());
        }
        self.stale_lock()?;
        // Every lock still there (else `LockLost`).
        self.held_lock_times(&held)?;
        let refreshed_at = *self
            .locks
            .refreshed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(age) = refreshed_at.and_then(|t| t.elapsed().ok()) {
            self.note_lock_age(&held[0], age);
        }
        self.stale_lock()?;
        // The store's clock: a refresh (of the write path's, or this one
        // when due) measured its new object's time against the old one's.
        self.refresh_locks()?;
        self.stale_lock()
    }

    /// Note that lock `name` went `age` unrefreshed: past [`STALE_AFTER`]
    /// (less the slack), the run may not commit from then on.
    fn note_lock_age(&self, name: &str, age: Duration) {
        if age + STALE_SLACK >= STALE_AFTER {
            *self
                .locks
                .went_stale
                .lock()
                .unwrap_or_else(|e| e.into_inner()) =
                Some((format!("locks/{name}"), age.as_secs() / 60));
        }
    }

    /// The error of a lock that went stale, if one did.
    fn stale_lock(&self) -> RepoResult<()> {
        match &*self
            .locks
            .went_stale
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some((object, minutes)) => Err(RepoError::LockStale {
                object: object.clone(),
                minutes: *minutes,
            }),
            None => Ok(()),
        }
    }

    /// The store's time of each lock object in `names` (`None` where the
    /// store gives none); a lock that is gone is [`RepoError::LockLost`].
    fn held_lock_times(&self, names: &[String]) -> RepoResult<Vec<Option<u128>>> {
        let listed: std::collections::HashMap<String, Option<u128>> = self
            .storage()
            .list_stamped("locks/", false)?
            .into_iter()
            .map(|(key, stamp)| (key, stamp.modified_ns))
            .collect();
        let mut times = Vec::with_capacity(names.len());
        for name in names {
            let key = format!("locks/{name}");
            match listed.get(&key) {
                Some(time) => times.push(*time),
                // Not listed yet, perhaps: asked directly.
                None if self.storage().exists(&key)? => times.push(None),
                None => return Err(RepoError::LockLost { object: key }),
            }
        }
        Ok(times)
    }

    /// Whether this process holds a lock on `client` (or the exclusive lock).
    pub fn holds_lock(&self, client: &str) -> bool {
        self.locks
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(_, r)| r.kind == LockKind::Exclusive || r.client == client)
    }

    /// Make a refresh of the held locks due, as if they were last
    /// refreshed [`REFRESH_EVERY`] ago (for tests of long runs).
    #[cfg(test)]
    pub(crate) fn make_lock_refresh_due(&self) {
        let mut last = self
            .locks
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = last.as_mut() {
            *t = Instant::now()
                .checked_sub(REFRESH_EVERY + Duration::from_secs(1))
                .unwrap_or(*t);
        }
    }

    /// Take the last refresh of the held locks for `ago` ago, by the wall
    /// clock (for tests of suspended runs).
    #[cfg(test)]
    pub(crate) fn backdate_lock_refresh(&self, ago: Duration) {
        *self
            .locks
            .refreshed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::SystemTime::now() - ago);
    }

    /// Whether a refresh of the held locks is due (none is if none are
    /// held).
    #[cfg(test)]
    pub(crate) fn lock_refresh_due(&self) -> bool {
        self.locks
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= REFRESH_EVERY)
    }

    /// Rewrite held locks with a new refresh time if it is due.
    pub fn refresh_locks(&self) -> RepoResult<()> {
        self.refresh_locks_every(REFRESH_EVERY).map(|_| ())
    }

    /// Rewrite held locks with a new refresh time if the last was `every`
    /// ago; whether it was due (and done).
    fn refresh_locks_every(&self, every: Duration) -> RepoResult<bool> {
        {
            let mut last = self
                .locks
                .last_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match *last {
                None => return Ok(false),
                Some(t) if t.elapsed() < every => return Ok(false),
                Some(_) => {}
            }
            *last = Some(Instant::now());
        }
        self.refresh_held_locks().map(|()| true)
    }

    /// Rewrite held locks with a new refresh time, now; and note if the
    /// store's time of a new lock object is [`STALE_AFTER`] (less the
    /// slack) after the old one's: others may have taken it for a dead
    /// run's meanwhile (a store clock that stepped forward), and
    /// [`check_locks_held`](Self::check_locks_held) fails from then on.
    fn refresh_held_locks(&self) -> RepoResult<()> {
        let names = self.held_names();
        let before = self.held_lock_times(&names).unwrap_or_default();
        self.rewrite_held_locks()?;
        let after = self.held_lock_times(&self.held_names()).unwrap_or_default();
        for ((name, old), new) in names.iter().zip(&before).zip(&after) {
            if let (Some(old), Some(new)) = (old, new) {
                let age = Duration::from_nanos(
                    u64::try_from(new.saturating_sub(*old)).unwrap_or(u64::MAX),
                );
                self.note_lock_age(name, age);
            }
        }
        Ok(())
    }

    fn rewrite_held_locks(&self) -> RepoResult<()> {
        *self
            .locks
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        *self
            .locks
            .refreshed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::SystemTime::now());
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        for (id, record) in held.iter_mut() {
            let mut fresh = record.clone();
            let new_id = LockName::new(&fresh);
            fresh.refreshed = now_ns();
            if let Err(e) = self.write_lock(&new_id, &fresh) {
                self.remove_unheld_lock(&new_id);
                return Err(e);
            }
            // Held from now on, so that releasing it removes it even if
            // removing the old one fails.
            let old = std::mem::replace(id, new_id);
            *record = fresh;
            self.storage().delete(&format!("locks/{old}"))?;
        }
        Ok(())
    }

    /// Remove locks: those of `client` and the exclusive lock, or all if
    /// `client` is `None`. Returns a description of each removed lock.
    pub fn force_unlock(&self, client: Option<&str>) -> RepoResult<Vec<String>> {
        let mut removed = Vec::new();
        for Listed { name, lock, .. } in self.read_locks(|_| true, &[])?.0 {
            let (matches, description) = match &lock {
                ReadLock::Record(record) => (
                    // A prune's lock too: it keeps only other prunes
                    // away, and one left by a prune that is gone kept them
                    // away with no way to remove it but `--all-clients`.
                    match client {
                        None => true,
                        Some(c) => {
                            matches!(record.kind, LockKind::Exclusive | LockKind::Prune)
                                || record.client == c
                        }
                    },
                    record.describe(&name),
                ),
                ReadLock::Damaged { problem, .. } => (
                    client.is_none_or(|c| LockName::may_lock_client(&name, c)),
                    format!("a damaged lock object locks/{name} ({problem})"),
                ),
            };
            if !matches {
                continue;
            }
            // A lock whose process this one can see running is that
            // process's: removing it would let another run beside it.
            if let ReadLock::Record(record) = &lock {
                if record.is_of_a_running_process(Identity::current()) {
                    tracing::warn!(
                        "not removed: {description}: its process {} is running on this host \
                         (stop it, or let it finish)",
                        record.pid
                    );
                    continue;
                }
            }
            self.storage().delete(&format!("locks/{name}"))?;
            removed.push(description);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process is alive if the kernel says so, whether `/proc` shows it
    /// or not; one that has exited and been reaped is gone.
    #[test]
    fn a_process_exists_until_it_is_reaped() {
        assert!(process_exists(std::process::id()));
        assert!(process_exists(1), "init is always there");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
        assert!(!process_exists(u32::MAX), "not a pid at all");
    }

    fn open(dir: &std::path::Path) -> std::sync::Arc<Repository> {
        let options = crate::OpenOptions {
            create: true,
            ..crate::OpenOptions::default()
        };
        std::sync::Arc::new(
            Repository::open(
                dir.to_str().unwrap(),
                &options,
                std::sync::Arc::new(crate::object::NoFilters),
            )
            .unwrap(),
        )
    }

    /// A reader's lock of a process elsewhere, taken now, or of a
    /// process of this host that is gone.
    fn foreign_reader(repo: &Repository, client: &str, gone_here: bool) -> String {
        let mut record = Identity::current().record(LockKind::Read, client, now_ns());
        if gone_here {
            // Not a pid this kernel gives.
            record.pid = u32::MAX - 1;
        } else {
            record.host = "another-host.invalid".into();
        }
        let name = LockName::new(&record);
        repo.write_lock(&name, &record).unwrap();
        name.to_string()
    }

    fn lock_names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A reader's lock keeps no backup, prune or exclusive run away, and
    /// taking one waits for nothing; a prune counts it among the runs its
    /// deletion waits for.
    #[test]
    fn a_readers_lock_keeps_nothing_away_but_a_prunes_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let repo = open(dir.path());
        let reader = foreign_reader(&repo, "c", false);
        assert!(reader.starts_with("r."), "{reader}");
        for _ in 0..2 {
            repo.lock_client("c", Duration::ZERO).unwrap();
            repo.unlock_client("c").unwrap();
            repo.lock_prune(Duration::ZERO).unwrap();
            repo.unlock_prune().unwrap();
            repo.lock_exclusive(Duration::ZERO).unwrap();
            repo.unlock_exclusive().unwrap();
        }
        // A backup holding its lock does not keep a reader away.
        repo.lock_client("c", Duration::ZERO).unwrap();
        let other = open(dir.path());
        other.lock_reading("c").unwrap();
        assert!(other.holds_reader_lock());
        other.unlock_reading().unwrap();
        repo.unlock_client("c").unwrap();
        assert_eq!(lock_names(dir.path()), vec![reader.clone()]);
        let runs = repo.live_runs().unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].host, "another-host.invalid");
        // force-lock of its client removes it.
        let removed = repo.force_unlock(Some("c")).unwrap();
        assert!(
            removed[0].contains("client 'c' is being read"),
            "{removed:?}"
        );
        assert!(lock_names(dir.path()).is_empty());
    }

    /// A damaged object under a reader's lock's name is said to be one:
    /// only prunes wait for it.
    #[test]
    fn a_damaged_readers_lock_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = open(dir.path());
        let name = foreign_reader(&repo, "c", false);
        std::fs::write(dir.path().join("locks").join(&name), b"damaged").unwrap();
        let problems = repo.damaged_locks().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("a reader's lock by its name, it keeps prunes from deleting"),
            "{problems:?}"
        );
        // Nothing else waits for it.
        repo.lock_client("c", Duration::ZERO).unwrap();
    }

    /// A reader's lock left by a process gone is removed by the next
    /// reader (nothing else conflicts with it to break it); a live one
    /// elsewhere stays.
    #[test]
    fn a_reader_removes_the_locks_of_readers_gone() {
        let dir = tempfile::tempdir().unwrap();
        let repo = open(dir.path());
        let gone = foreign_reader(&repo, "c", true);
        let elsewhere = foreign_reader(&repo, "c", false);
        let reader = open(dir.path());
        reader.lock_reading("d").unwrap();
        let names = lock_names(dir.path());
        assert!(!names.contains(&gone), "{names:?}");
        assert!(names.contains(&elsewhere), "{names:?}");
        assert_eq!(names.len(), 2, "{names:?}");
        reader.unlock_all().unwrap();
        assert_eq!(lock_names(dir.path()), vec![elsewhere]);
    }

    /// A reader's lock is kept fresh by a thread of its own, reading or
    /// not (a mount may sit idle for hours): its object is written anew,
    /// and the old one removed; the thread stops with the lock.
    #[test]
    fn a_readers_lock_is_refreshed_while_it_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let repo = open(dir.path());
        repo.lock_reading("c").unwrap();
        let first = lock_names(dir.path());
        assert_eq!(first.len(), 1);
        keep_reader_locks_fresh(
            std::sync::Arc::downgrade(&repo),
            Duration::from_millis(5),
            Duration::from_millis(20),
        );
        // A refresh writes the new object before it removes the old one:
        // for a moment both are there.
        let started = Instant::now();
        let refreshed = loop {
            let names = lock_names(dir.path());
            if names != first && names.len() == 1 {
                break names;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not refreshed: {names:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(refreshed[0].starts_with("r."), "{refreshed:?}");
        repo.unlock_reading().unwrap();
        assert!(!repo.holds_reader_lock());
        std::thread::sleep(Duration::from_millis(100));
        assert!(lock_names(dir.path()).is_empty());
    }
}
