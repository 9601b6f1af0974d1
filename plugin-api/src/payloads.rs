//! Payloads of the hooks that the host and the bundled backup plugin
//! create. They live
//! here, in the one crate every plugin shares, because a typed payload
//! must be the same type (same defining crate) on both sides of a hook.
//!
//! | hook | payload | called |
//! |---|---|---|
//! | [`BACKUP_STARTING`] | JSON | once, before the backup touches the repository |
//! | [`BACKUP_EXCLUDE`] | [`ExcludeCandidate`] | for every file-system object the backup finds |
//! | [`BACKUP_CHUNK_BOUNDARIES`] | [`SplitRequest`] | to cut a file's data into chunks |
//! | [`BACKUP_STORE_CHUNK`] | [`StoreChunkRequest`] | for every chunk, to decide whether to store it |
//! | [`BACKUP_FINISHED`] | JSON | once, at the end of a backup |
//! | [`REPOSITORY_OPEN`] | JSON | once, when the repository is opened or created |
//! | [`REPOSITORY_DATA`] | filter | for every repository object written or read |
//!
//! Payload data is owned (`RVec`), so no payload borrows anything and
//! moving data in and out of a payload costs no copy.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

use crate::repo_abi::{ChunkId, Token};

/// Called once before the backup opens the repository, with a JSON object:
/// `roots` (list of paths), `client`, `pretend`. A callback that returns an
/// error (a bad setting, say) stops the backup before anything is written.
pub const BACKUP_STARTING: &str = "backup-starting";
/// Called for every candidate path: set `exclude` to leave it out (a
/// directory left out takes its subtree with it).
pub const BACKUP_EXCLUDE: &str = "backup-exclude";
/// Called once at the end of a backup with a JSON object: `roots` (list of
/// paths), `client`, `generation` (id, or null with --pretend), `pretend`,
/// and statistics (`files`, `directories`, `files_read`, `bytes_found`,
/// `bytes_read`, `bytes_new`, `excluded`, `errors`, `seconds`).
pub const BACKUP_FINISHED: &str = "backup-finished";
/// Called to find chunk boundaries in a file's data.
pub const BACKUP_CHUNK_BOUNDARIES: &str = "backup-chunk-boundaries";
/// Called for every chunk to store it (or find it already stored).
pub const BACKUP_STORE_CHUNK: &str = "backup-store-chunk";

/// Host hook, called once when a repository is opened or created, before
/// any filtered object is read or written, with a JSON object:
///
/// * `url`, `repository_id`: which repository;
/// * `creating`: whether this open creates it;
/// * `pretending` (true, or absent): the run only pretends to create it
///   (`backup --pretend` of a new repository). Check that a creation
///   could go ahead (say, that the secret it needs is there) and fail as
///   it would, but make nothing, ask nothing, and answer nothing: the
///   host writes nothing of it (plugin-api 0.1.24; older hosts never
///   call the hook for a run that pretends);
/// * `seal`: the seal recorded in its config (an object whose `filter`
///   names the sealing filter's tag), or null;
/// * `key_slots`: an object mapping each key slot id to its text.
///
/// A sealing (encryption) plugin answers by setting, in the same object:
///
/// * `token_key`: 64 hex digits, the key of the repository's chunk tokens
///   (required to open a sealed repository);
/// * when `creating`: `seal` (the object to record in the config) and
///   `new_key_slots` (id to text) to store before the config.
///
/// An error from a callback stops the open; nothing is written.
pub const REPOSITORY_OPEN: &str = "repository-open";
/// Host hook (JSON payload `{"signal": "SIGINT"}`, or `SIGTERM`, `SIGHUP`)
/// called once when the run is interrupted, before the host releases its
/// locks and ends the process: a plugin releases here what it holds
/// outside the repository (a mount, a child process, a temporary file),
/// which the end of the process would not undo, or not at once. It is
/// called on the host's interruption thread while the command's threads
/// go on; callbacks must be quick and may not block on them. Errors are
/// logged and do not stop the others. Since 0.1.6.
pub const RUN_INTERRUPTED: &str = "run-interrupted";
/// Host filter hook that every repository object but the config and the
/// key slots passes through (compression, encryption). The filter whose tag
/// a repository's config names as its seal runs last, on the whole inner
/// encoding; see `docs/repository-format.md`.
pub const REPOSITORY_DATA: &str = "repository-data";

/// A file's status, as `lstat` gave it.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStat {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: u32,
    /// Status-change time, seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds part of the status-change time.
    pub ctime_ns: u32,
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number of a device node.
    pub rdev: u64,
}

impl FileStat {
    /// The status `lstat` (or `stat`) gave. Since 0.1.4.
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec() as u32,
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec() as u32,
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    /// Whether this is a regular file. (Since 0.1.16.)
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }
}

/// The payload of [`BACKUP_EXCLUDE`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default)]
pub struct ExcludeCandidate {
    /// The absolute path of the candidate (raw bytes).
    pub path: RVec<u8>,
    /// The candidate's status.
    pub stat: FileStat,
    /// The backup root the candidate was found under.
    pub root: RVec<u8>,
    /// The root's status.
    pub root_stat: FileStat,
    /// Files found so far in this backup (progress).
    pub files_seen: u64,
    /// Set to leave the candidate out of the backup.
    pub exclude: bool,
    /// Why it was left out, for `--verbose` (the first excluder's reason wins).
    pub reason: RString,
}

impl ExcludeCandidate {
    /// The candidate's path.
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// The root's path.
    pub fn root(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.root))
    }

    /// Leave the candidate out, giving a reason (kept only if none was given yet).
    pub fn exclude_because(&mut self, reason: &str) {
        if !self.exclude {
            self.reason = reason.into();
        }
        self.exclude = true;
    }
}

/// The payload of [`BACKUP_CHUNK_BOUNDARIES`]: `data` starts at a chunk
/// boundary; the handler appends to `lengths` the lengths of the complete
/// chunks at the start of `data`. Unless `eof`, the bytes after the last
/// complete chunk are handed in again with more data after them; at `eof`
/// the lengths must cover all of `data`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default)]
pub struct SplitRequest {
    /// The bytes.
    pub data: RVec<u8>,
    /// Whether `data` reaches the end of the file.
    pub eof: bool,
    /// Set by the handler: lengths of the complete chunks at the start of `data`.
    pub lengths: RVec<u32>,
    /// Set by the handler that answered; later callbacks leave it alone.
    pub handled: bool,
}

/// The payload of [`BACKUP_STORE_CHUNK`]: store `data` (whose token is
/// `token`) or find it stored, and say which chunk id the file should
/// refer to, and whether new data was written.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default)]
pub struct StoreChunkRequest {
    /// The bytes.
    pub data: RVec<u8>,
    /// The chunk's token (`Repository::token` of its data: see `Token`).
    pub token: Token,
    /// Set by the handler: the id the file refers to for this chunk.
    pub chunk_id: ChunkId,
    /// Whether the chunk was stored anew (false: an existing copy is used).
    pub stored: bool,
    /// Set by the handler that answered; later callbacks leave it alone.
    pub handled: bool,
}
