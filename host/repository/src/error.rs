//! The repository's error type.

use std::time::Duration;

use super::ids::ChunkId;
use super::limits::{MAX_PATH_LEN, MAX_TREE_DEPTH};
use super::storage::StorageError;
use super::upload::UploadError;

/// Why a repository operation failed. Every message names the object or
/// the lock concerned, so that the user can tell what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{} is not an obnam repository (it has no config object)", edged(url))]
    NotARepository { url: String },
    /// No config, but objects only a repository that had one holds: its
    /// config was deleted or lost. A new repository made there would
    /// leave every earlier backup unreadable (over an encrypted one, with
    /// no key to read them).
    #[error(
        "{url} has no config object, but holds a repository's objects ({found}): its config \
         was deleted or lost. obnam will not make a new repository over it, which would leave \
         every backup in it unreadable; put the config object back from a copy of the \
         repository, or name another repository"
    )]
    ConfigMissing { url: String, found: String },
    /// No repository, and things of someone else's: a new repository is
    /// made only in an empty or new folder (or prefix).
    #[error(
        "{url} is not an obnam repository, and holds other things ({found}): obnam makes a new \
         repository only where there is nothing yet, so that a mistyped --repository does not \
         scatter its objects among your files; name an empty or new folder (such as \
         {url}/obnam), or the repository you meant"
    )]
    NotEmpty { url: String, found: String },
    /// The config is not the one this machine found, or made, the first
    /// time it used the repository ([`crate::known`]).
    #[error(
        "the config of repository {url} is not the one this machine used before ({what}): it \
         was replaced or changed, perhaps by someone attacking your backups; nothing was read \
         or written. If the repository was replaced on purpose, remove {record} and run again"
    )]
    ConfigChanged {
        url: String,
        what: String,
        record: String,
    },
    #[error("repository {url} has format version {found}, which is newer than this obnam supports ({supported}); upgrade obnam")]
    TooNew {
        url: String,
        found: u32,
        supported: u32,
    },
    /// The reason is shown escaped ([`crate::names::escape`]): it may
    /// quote what the object holds (a parser's message, the client a
    /// record names), which is any text in a damaged or hostile
    /// repository.
    #[error("object {object} is corrupt: {}", shown(reason))]
    Corrupt { object: String, reason: String },
    /// One byte of an object's filter header is damaged, and the object
    /// checks with it undone (see `Codec`): the damage is known, and
    /// `repair-records` undoes it in a record. Said as
    /// [`Corrupt`](Self::Corrupt) is.
    #[error("object {object} is corrupt: {}", shown(reason))]
    DamagedHeader { object: String, reason: String },
    /// A loaded filter could not undo its work on an object's stored
    /// bytes (they do not decompress, or fail authentication): the
    /// object is damaged or altered. The filter's message names the
    /// object, as the bundled filters' do; else it is named first.
    #[error("{}", undecodable_message(object, message))]
    Undecodable { object: String, message: String },
    /// The data filters failed otherwise: one is not loaded, or refused
    /// to write; not about one object's stored bytes.
    #[error("{0}")]
    Filter(String),
    /// Making or writing a pack failed earlier in the run.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A blob the index does not list: a chunk, or a folder listing
    /// (`true`), as the message calls it.
    #[error("{what} {id} is not in the repository", what = if *.1 { "folder listing" } else { "chunk" }, id = .0)]
    NoSuchChunk(ChunkId, bool),
    #[error("client '{}' has no generation {}", shown(.0), shown(.1))]
    NoSuchGeneration(String, String),
    #[error("client '{}' has no generations", shown(.0))]
    NoGenerations(String),
    /// A lock held by another process that did not go away in time.
    #[error(
        "{} is locked by {holder} (lock {}); gave up after waiting {}s (--lock-timeout); \
         if that process is gone, remove the lock with 'obnam force-lock'",
        lock_target(client.as_deref(), *pruning),
        holder.object,
        waited.as_secs()
    )]
    Locked {
        /// The client whose lock it is; `None`: the exclusive lock, or
        /// with `pruning` a prune's.
        client: Option<String>,
        /// Whether it is a prune's lock (which keeps only prunes away).
        pruning: bool,
        holder: Box<Holder>,
        waited: Duration,
    },
    /// A lock this process holds is gone: another run took it for a dead
    /// run's (not refreshed for `STALE_AFTER`, say after a pause of this
    /// process) or `force-lock` removed it. What this run would write
    /// next may rest on what another run has changed meanwhile.
    #[error(
        "this run's lock {object} was removed by another run (taken for a dead run's, after \
         this one did not refresh it for a long time, or by 'obnam force-lock'): nothing \
         more is written; run it again"
    )]
    LockLost { object: String },
    /// A lock this process holds was not refreshed for so long that
    /// other runs may have taken it for a dead run's: a prune then does
    /// not wait for this run, and may have deleted what it refers to.
    #[error(
        "this run's lock {object} was not refreshed for {minutes} minutes (the machine was \
         suspended, or the run stalled): another run may have taken it for a dead run's, and a \
         prune may have deleted what this run refers to; nothing more is written; run it again"
    )]
    LockStale { object: String, minutes: u64 },
    /// A lock object that cannot be read (damaged) that did not go away
    /// in time: its holder, if any, is unknown.
    #[error(
        "{} is locked by a damaged lock object {object} ({problem}); gave up after waiting {}s \
         (--lock-timeout); if no other obnam is using the repository, remove it with \
         'obnam force-lock'",
        lock_target(client.as_deref(), false),
        waited.as_secs()
    )]
    LockedByDamaged {
        /// The client whose lock was asked for; `None`: the exclusive lock.
        client: Option<String>,
        object: String,
        problem: String,
        waited: Duration,
    },
    /// Another process creating the repository did not finish in time.
    #[error(
        "repository {url} is being created by {holder} (claim {}); gave up after waiting {}s \
         (--lock-timeout); if that process is gone, delete {} and run again",
        holder.object,
        waited.as_secs(),
        holder.object
    )]
    BeingCreated {
        url: String,
        holder: Box<Holder>,
        waited: Duration,
    },
    #[error(transparent)]
    BadPath(#[from] BadPath),
    #[error("{0}")]
    Usage(String),
}

impl From<crate::segment::SegmentError> for RepoError {
    /// A damaged file of the local index cache: deleted when found, and
    /// rebuilt from the repository by the next run.
    fn from(e: crate::segment::SegmentError) -> Self {
        RepoError::Corrupt {
            object: format!("index cache file {}", e.path),
            reason: format!(
                "{}; it was deleted, and the next run rebuilds it from the repository",
                e.reason
            ),
        }
    }
}

impl RepoError {
    /// Whether the error is damage to the one object read (its bytes
    /// cannot be that object: a bad checksum or id, a filter that cannot
    /// undo them, a bad encoding, too large, not a regular file), rather
    /// than a failure of the store, the filters or the run. A caller that
    /// reads many objects may take such an object as damaged, report it
    /// and go on without it; anything else stays an error.
    pub fn is_damaged_object(&self) -> bool {
        matches!(
            self,
            RepoError::Corrupt { .. }
                | RepoError::DamagedHeader { .. }
                | RepoError::Undecodable { .. }
                | RepoError::Storage(StorageError::Damaged { .. })
        )
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        RepoError::Corrupt {
            object: object.into(),
            reason: reason.to_string(),
        }
    }
}

/// The message of [`RepoError::Undecodable`]: the filter's, naming the
/// object if it does not.
fn undecodable_message(object: &str, message: &str) -> String {
    if message.contains(object) {
        message.to_string()
    } else {
        format!("object {object} cannot be decoded: {message}")
    }
}

/// What a lock is on, in messages.
fn lock_target(client: Option<&str>, pruning: bool) -> String {
    match client {
        Some(client) => format!("client '{}'", shown(client)),
        None if pruning => "pruning".to_string(),
        None => "the repository".to_string(),
    }
}

/// `text` (a name read from the repository: a client's, a host's) as
/// every message shows it: escaped as file names are, so that one holding
/// a newline cannot fake an output line, nor an escape sequence reach the
/// terminal.
pub(crate) fn shown(text: &str) -> String {
    crate::names::escape(text.as_bytes())
}

/// A repository's URL or folder in a message: quoted where white space at
/// either end (a folder named ` `) would not show.
fn edged(url: &str) -> std::borrow::Cow<'_, str> {
    match url.trim() == url && !url.is_empty() {
        true => url.into(),
        false => format!("'{url}'").into(),
    }
}

/// The process that holds a lock or a creation claim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host {} (pid {pid}) since {since}", shown(host))]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// When it took the lock (RFC 3339, in seconds).
    pub since: String,
    /// The lock or claim object (`locks/ID`, `creating/ID`).
    pub object: String,
}

/// Why a path in a generation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("'{0}' is not an absolute path")]
    NotAbsolute(String),
    #[error("a path of {0} bytes is longer than the format allows ({MAX_PATH_LEN})")]
    TooLong(usize),
    #[error("'{0}' contains '.' or '..'")]
    DotComponent(String),
    #[error("a path {0} folders deep is deeper than the format allows ({MAX_TREE_DEPTH})")]
    TooDeep(usize),
    #[error("the root directory has no entry to put")]
    PutRoot,
    #[error("cannot remove the root directory")]
    RemoveRoot,
    #[error("'{0}' is not a directory of the new generation")]
    NotADirectory(String),
    #[error("cannot make parent directory")]
    NoParent,
    /// A folder of the overlay gone while it was walked (a bug).
    #[error("vanished")]
    Vanished,
    /// The parent of a finished folder gone from the overlay (a bug).
    #[error("parent vanished")]
    ParentVanished,
}

/// Result type of the repository.
pub type RepoResult<T> = Result<T, RepoError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(object: &str) -> Holder {
        Holder {
            host: "h".into(),
            pid: 7,
            since: "2026-01-02T03:04:05Z".into(),
            object: object.into(),
        }
    }

    #[test]
    fn lock_messages_are_as_they_were() {
        let e = RepoError::Locked {
            pruning: false,
            client: Some("c".into()),
            holder: Box::new(holder("locks/L")),
            waited: Duration::from_secs(3),
        };
        assert_eq!(
            e.to_string(),
            "client 'c' is locked by host h (pid 7) since 2026-01-02T03:04:05Z (lock locks/L); \
             gave up after waiting 3s (--lock-timeout); if that process is gone, remove the \
             lock with 'obnam force-lock'"
        );
        let e = RepoError::Locked {
            pruning: false,
            client: None,
            holder: Box::new(holder("locks/L")),
            waited: Duration::from_secs(3),
        };
        assert!(e
            .to_string()
            .starts_with("the repository is locked by host h"));
        let e = RepoError::Locked {
            pruning: true,
            client: None,
            holder: Box::new(holder("locks/L")),
            waited: Duration::from_secs(3),
        };
        assert!(e.to_string().starts_with("pruning is locked by host h"));
        let e = RepoError::BeingCreated {
            url: "/r".into(),
            holder: Box::new(holder("creating/C")),
            waited: Duration::from_secs(60),
        };
        assert_eq!(
            e.to_string(),
            "repository /r is being created by host h (pid 7) since 2026-01-02T03:04:05Z \
             (claim creating/C); gave up after waiting 60s (--lock-timeout); if that process \
             is gone, delete creating/C and run again"
        );
    }

    /// Names read from the repository (a lock's client and host, the
    /// reason a record is not the one its name says) are shown escaped:
    /// one holding a newline cannot fake a line, nor an escape sequence
    /// reach the terminal.
    #[test]
    fn names_from_the_repository_are_shown_escaped() {
        let e = RepoError::Locked {
            pruning: false,
            client: Some("c\nERROR: x".into()),
            holder: Box::new(Holder {
                host: "h\x1b[2J".into(),
                ..holder("locks/L")
            }),
            waited: Duration::from_secs(3),
        };
        let message = e.to_string();
        assert!(
            message.starts_with("client 'c\\nERROR: x' is locked by host h\\u{001b}[2J (pid 7)"),
            "{message}"
        );
        let e = RepoError::corrupt("clients/X", "it is the record of client 'a\nb'");
        assert_eq!(
            e.to_string(),
            "object clients/X is corrupt: it is the record of client 'a\\nb'"
        );
        let e = RepoError::NoGenerations("a\u{202e}b".into());
        assert_eq!(e.to_string(), "client 'a\\u{202e}b' has no generations");
        for message in [
            RepoError::NoSuchGeneration("a\n".into(), "g\n".into()).to_string(),
            RepoError::LockedByDamaged {
                client: Some("a\n".into()),
                object: "locks/L".into(),
                problem: "p".into(),
                waited: Duration::from_secs(1),
            }
            .to_string(),
        ] {
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn path_messages_are_as_they_were() {
        let e = RepoError::from(BadPath::TooDeep(9));
        assert_eq!(
            e.to_string(),
            format!("a path 9 folders deep is deeper than the format allows ({MAX_TREE_DEPTH})")
        );
        let e = RepoError::from(BadPath::NotADirectory("/a".into()));
        assert_eq!(
            e.to_string(),
            "'/a' is not a directory of the new generation"
        );
    }
}
