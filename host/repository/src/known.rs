//! What this machine knows of the repositories it used: trust on first
//! use, as Borg's security folder and ssh's `known_hosts` do.
//!
//! The `config` object is plain JSON (it must be read before anything can
//! be decrypted) and never changes once written. Anyone who can write the
//! repository but holds no key could replace it: with a plain config (and
//! no key slots) the owner's next backup stored everything in the clear,
//! silently; with another cipher named, every earlier object was refused
//! as damaged and the next backup exited 0 with a generation that did not
//! restore. So each machine records, per repository URL, the digest of
//! the config it found the first time it opened it (or made when it
//! created it), and refuses a repository whose config is another from
//! then on, naming the record to remove if the repository was replaced on
//! purpose.
//!
//! **Where**: one small JSON file per URL, named by a digest of the URL,
//! in `$XDG_STATE_HOME/obnam/repositories/`, else
//! `~/.local/state/obnam/repositories/` ([`KnownRepositories::User`]).
//! A record that cannot be written costs only the protection: the run
//! goes on, with a warning.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RepoError, RepoResult};
use crate::location::Location;
use crate::storage::StorageOptions;

/// The name by which a repository is known: its URL, with a local
/// folder's path made absolute (the same repository named from another
/// folder is the same one, and two folders named `repo` are not) and an
/// S3 store's endpoint (two stores may have buckets of the same name).
pub fn identity(location: &Location, options: &StorageOptions) -> String {
    match location {
        Location::Local(path) => crate::location::shown(real_path(path).as_os_str()),
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => format!(
            "sftp://{}{host}{}{path}",
            user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
            port.map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Location::S3 { bucket, prefix } => format!(
            "s3://{bucket}/{prefix} at {}",
            options
                .s3_endpoint
                .as_deref()
                .unwrap_or("the default endpoint")
        ),
    }
}

/// A local folder's path as the file system resolves it (links, `..`,
/// a trailing `/`), so that every way of naming one folder names one
/// record: the folder's, or, for one not made yet, its parent's and its
/// name; else the path with `.` and `..` taken away by name.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let lexical = lexical(path);
    match (lexical.parent(), lexical.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(lexical),
        _ => lexical,
    }
}

/// `path` with `.` and `..` taken away by name.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Where the records are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KnownRepositories {
    /// In the user's state folder: what the `obnam` binary uses.
    User,
    /// In this folder.
    At(PathBuf),
    /// Nowhere: nothing is checked (the library's default, for tests).
    #[default]
    Off,
}

/// What is recorded of one repository.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Known {
    /// The URL, as the record's name is a digest of it.
    url: String,
    /// The repository id its config gave.
    id: String,
    /// SHA-256 of the config object's bytes, in hex.
    config_sha256: String,
    /// Whether the config named a seal (encryption).
    sealed: bool,
}

impl KnownRepositories {
    /// The folder of records, if there is one.
    fn folder(&self) -> Option<PathBuf> {
        match self {
            KnownRepositories::User => {
                let state = std::env::var_os("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(PathBuf::from)
                            .filter(|p| p.is_absolute())
                            .map(|home| home.join(".local/state"))
                    });
                let Some(state) = state else {
                    // Said once a run: without it the protection is gone
                    // (a service started with no HOME, say).
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        tracing::warn!(
                            "neither XDG_STATE_HOME nor HOME names an absolute folder, so this \
                             machine keeps no record of the repositories it uses: a config \
                             replaced behind its back will not be noticed (set XDG_STATE_HOME)"
                        )
                    });
                    return None;
                };
                Some(state.join("obnam/repositories"))
            }
            KnownRepositories::At(dir) => Some(dir.clone()),
            KnownRepositories::Off => None,
        }
    }

    /// The record file of `url`.
    fn file(&self, url: &str) -> Option<PathBuf> {
        let name = hex::encode(&Sha256::digest(url.as_bytes())[..16]);
        self.folder().map(|dir| dir.join(name))
    }

    /// What is recorded of `url`: `None` if nothing is, or what is cannot
    /// be read.
    fn recorded(&self, url: &str) -> Option<Known> {
        let known = serde_json::from_slice::<Known>(&std::fs::read(self.file(url)?).ok()?).ok()?;
        (known.url == url).then_some(known)
    }

    /// Check `config` (the config object's bytes, of repository `id`,
    /// sealed or not) against what this machine recorded of `url`. The
    /// first time, nothing is checked: see [`remember`](Self::remember).
    pub fn check(&self, url: &str, id: &str, sealed: bool, config: &[u8]) -> RepoResult<()> {
        let Some(file) = self.file(url) else {
            return Ok(());
        };
        if !file.exists() {
            return Ok(());
        }
        let Some(known) = self.recorded(url) else {
            tracing::warn!(
                "{}: this machine's record of the repository cannot be read; it is made again",
                file.display()
            );
            return Ok(());
        };
        if known.config_sha256 == hex::encode(Sha256::digest(config)) {
            return Ok(());
        }
        let what = match (known.sealed, sealed, known.id == id) {
            (true, false, _) => "it was encrypted; now it is not",
            (_, _, false) => "it is another repository (another id)",
            _ => "its settings differ",
        };
        Err(RepoError::ConfigChanged {
            url: url.to_string(),
            what: what.to_string(),
            record: file.display().to_string(),
        })
    }

    /// Record `config` as `url`'s, if nothing is recorded of it yet (or
    /// what is cannot be read).
    pub fn remember(&self, url: &str, id: &str, sealed: bool, config: &[u8]) {
        if self.recorded(url).is_none() {
            self.record(url, id, sealed, config);
        }
    }

    /// Admit a repository this process is about to create at `url` (its
    /// config about to be written), and record it, replacing what was
    /// recorded there: a new repository, whatever was there before. But
    /// not an unencrypted one in place of an encrypted one this machine
    /// used: someone who can write the repository, wiping it (or all but
    /// its key slots), must not get the next backup to store everything
    /// in the clear.
    pub fn admit_new(&self, url: &str, id: &str, sealed: bool, config: &[u8]) -> RepoResult<()> {
        if !sealed && self.recorded(url).is_some_and(|known| known.sealed) {
            return Err(RepoError::Usage(format!(
                "the repository this machine used at {url} was encrypted, and it is gone; this \
                 run would make an unencrypted one in its place: give --encrypt to make an \
                 encrypted one, or, to make an unencrypted one there on purpose, remove {} and \
                 run again; nothing was written",
                self.file(url)
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            )));
        }
        self.record(url, id, sealed, config);
        Ok(())
    }

    /// Record `config` as `url`'s, replacing what was recorded: for a
    /// repository that another process created at the same moment.
    pub fn replace(&self, url: &str, id: &str, sealed: bool, config: &[u8]) {
        self.record(url, id, sealed, config);
    }

    /// Write the record of `url`; a failure costs only the protection.
    fn record(&self, url: &str, id: &str, sealed: bool, config: &[u8]) {
        let Some(file) = self.file(url) else {
            return;
        };
        let known = Known {
            url: url.to_string(),
            id: id.to_string(),
            config_sha256: hex::encode(Sha256::digest(config)),
            sealed,
        };
        if let Err(e) = write(&file, &known) {
            tracing::warn!(
                "cannot record repository {url} in {} ({e}): a config replaced behind this \
                 machine's back will not be noticed",
                file.display()
            );
        }
    }
}

/// Write `known` to `file` whole (a temporary file renamed into place),
/// private to the user.
fn write(file: &Path, known: &Known) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let bytes = serde_json::to_vec_pretty(known).map_err(std::io::Error::other)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_is_trusted_on_first_use_and_another_refused_after() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownRepositories::At(dir.path().to_path_buf());
        let url = "s3://bucket/repo";
        known.check(url, "r1", true, b"sealed config").unwrap();
        known.remember(url, "r1", true, b"sealed config");
        known.check(url, "r1", true, b"sealed config").unwrap();
        let err = known.check(url, "r1", false, b"plain config").unwrap_err();
        assert!(
            err.to_string().contains("it was encrypted; now it is not"),
            "{err}"
        );
        let err = known.check(url, "r2", true, b"other").unwrap_err();
        assert!(err.to_string().contains("another id"), "{err}");
        // Other URLs are their own.
        known.check("s3://bucket/other", "r2", false, b"x").unwrap();
        // Remembering does not replace; a creation does.
        known.remember(url, "r1", false, b"plain config");
        known.check(url, "r1", false, b"plain config").unwrap_err();
        known.replace(url, "r3", false, b"new config");
        known.check(url, "r3", false, b"new config").unwrap();
        // Off checks nothing.
        KnownRepositories::Off
            .check(url, "r9", false, b"anything")
            .unwrap();
    }
}
