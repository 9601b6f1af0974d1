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

/// The names by which a repository is known, one record each: its URL,
/// with an S3 store's endpoint (two stores may have buckets of the same
/// name) and, for a local folder, two: the path as given, made absolute
/// (the same repository named from another folder is the same one, and
/// two folders named `repo` are not), and the folder the file system
/// resolves it to (links, `..`). Both are checked: by the resolved one
/// alone, a repository whose folder someone replaced by a link to a plain
/// repository of theirs had no record, was trusted as new, and the next
/// backup stored everything in the clear; by the given one alone, a
/// repository named by a link and by its folder had two records that a
/// re-creation under one name then made disagree without notice.
pub fn identity(location: &Location, options: &StorageOptions) -> Vec<String> {
    match location {
        Location::Local(path) => {
            let given = absolute(path);
            let mut names = vec![crate::location::shown(given.as_os_str())];
            let real = crate::location::shown(real_path(&given).as_os_str());
            if real != names[0] {
                names.push(real);
            }
            names
        }
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => vec![format!(
            "sftp://{}{host}{}{path}",
            user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
            port.map(|p| format!(":{p}")).unwrap_or_default()
        )],
        // The endpoint used, however it was given (`AWS_ENDPOINT_URL`
        // was taken for AWS's own: two stores were one record, and one
        // store named two ways two records), without a final `/`.
        Location::S3 { bucket, prefix } => vec![format!(
            "s3://{bucket}/{prefix} at {}",
            crate::backend::s3::endpoint(options)
                .as_deref()
                .map(|e| e.trim_end_matches('/'))
                .unwrap_or("the default endpoint")
        )],
    }
}

/// `path` made absolute (from the working folder), its folder resolved
/// as the file system does (links, `..`), its last name as given: a link
/// there is not followed. (Taking `..` away by name named another folder
/// after a link, `link/../repo`, whose record then refused the
/// repository.) A folder that cannot be resolved is taken by name.
fn absolute(path: &Path) -> PathBuf {
    let joined = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    // A trailing `/` or `.` names the folder itself: as the last name,
    // that folder's.
    let trimmed: PathBuf = {
        let mut parts: Vec<std::path::Component> = joined.components().collect();
        while parts.last() == Some(&std::path::Component::CurDir) {
            parts.pop();
        }
        parts.iter().collect()
    };
    match (trimmed.parent(), trimmed.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(parent) => parent.join(name),
            Err(_) => lexical(&trimmed),
        },
        // The root, or a path that ends in `..`: the file system's answer.
        _ => std::fs::canonicalize(&trimmed).unwrap_or_else(|_| lexical(&trimmed)),
    }
}

/// A local folder's path as the file system resolves it (links, `..`):
/// the folder's, or, for one not made yet, its parent's and its name;
/// else the path as it is.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
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
    /// Recorded by a creation that had not yet written its config: if
    /// that creation stopped (or lost a race), the config found next is
    /// trusted in its place.
    #[serde(default)]
    pending: bool,
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
                             replaced behind its back will not be noticed (set HOME, or XDG_STATE_HOME)"
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
    /// sealed or not) against what this machine recorded under each of
    /// `names` ([`identity`]). The first time, nothing is checked: see
    /// [`remember`](Self::remember).
    pub fn check(&self, names: &[String], id: &str, sealed: bool, config: &[u8]) -> RepoResult<()> {
        for url in names {
            let Some(file) = self.file(url) else {
                return Ok(());
            };
            if !file.exists() {
                continue;
            }
            let Some(known) = self.recorded(url) else {
                tracing::warn!(
                    "{}: this machine's record of the repository cannot be read; it is made again",
                    file.display()
                );
                continue;
            };
            if known.pending || known.config_sha256 == hex::encode(Sha256::digest(config)) {
                continue;
            }
            let what = match (known.sealed, sealed, known.id == id) {
                (true, false, _) => "it was encrypted; now it is not",
                (_, _, false) => "it is another repository (another id)",
                _ => "its settings differ",
            };
            return Err(RepoError::ConfigChanged {
                url: names[0].clone(),
                what: what.to_string(),
                record: file.display().to_string(),
            });
        }
        Ok(())
    }

    /// Record `config` under each of `names` that has no record yet (or
    /// one that cannot be read, or one left by a creation that did not
    /// finish).
    pub fn remember(&self, names: &[String], id: &str, sealed: bool, config: &[u8]) {
        for url in names {
            if self.recorded(url).is_none_or(|known| known.pending) {
                self.record(url, id, sealed, config, false);
            }
        }
    }

    /// Admit a repository this process is about to create (its config
    /// about to be written) under `names`, and record it as pending. Not
    /// where this machine used a repository before: one that is gone is
    /// far more often a disk not mounted, a share not there, than a
    /// repository deleted on purpose; and a repository someone who can
    /// write the store wiped must not be made anew (in the clear, say)
    /// without its owner's word. A creation that did not finish left only
    /// a pending record, which does not stand in the way.
    pub fn admit_new(
        &self,
        names: &[String],
        id: &str,
        sealed: bool,
        config: &[u8],
    ) -> RepoResult<()> {
        self.may_create(names)?;
        for url in names {
            self.record(url, id, sealed, config, true);
        }
        Ok(())
    }

    /// Whether a repository may be made under `names`, before anything
    /// is written (see [`admit_new`](Self::admit_new)).
    pub fn may_create(&self, names: &[String]) -> RepoResult<()> {
        let found: Vec<(Known, PathBuf)> = names
            .iter()
            .filter_map(|url| {
                let known = self.recorded(url).filter(|known| !known.pending)?;
                Some((known, self.file(url)?))
            })
            .collect();
        let Some((known, _)) = found.first() else {
            return Ok(());
        };
        let was = if known.sealed {
            "an encrypted"
        } else {
            "an unencrypted"
        };
        // Every record in the way, at once: named one at a time, the
        // second refusal came after the first record was removed.
        let files: Vec<String> = found
            .iter()
            .map(|(_, file)| file.display().to_string())
            .collect();
        Err(RepoError::Usage(format!(
            "this machine used {was} repository at {} (id {}), and there is none there now: if \
             it is on a disk or share that is not mounted, mount it and run again; if it was \
             removed on purpose and a new one is to be made there, remove {} and run again; \
             nothing was written",
            names[0],
            known.id,
            files.join(" and ")
        )))
    }

    /// Record `config` under each of `names` as the repository this
    /// process has just created (its config written).
    pub fn created(&self, names: &[String], id: &str, sealed: bool, config: &[u8]) {
        for url in names {
            self.record(url, id, sealed, config, false);
        }
    }

    /// Write the record of `url`; a failure costs only the protection.
    fn record(&self, url: &str, id: &str, sealed: bool, config: &[u8], pending: bool) {
        let Some(file) = self.file(url) else {
            return;
        };
        let known = Known {
            url: url.to_string(),
            id: id.to_string(),
            config_sha256: hex::encode(Sha256::digest(config)),
            sealed,
            pending,
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
    // A name no one can guess, made anew (never an existing file, nor a
    // symlink planted in its place: root writing through one, with a
    // user's HOME, clobbered any file it was pointed at).
    let tmp = dir.join(format!(
        ".{}.{}.{}",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id(),
        crate::ids::ObjectId::random().to_hex()
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc_nofollow())
        .mode(0o600)
        .open(&tmp);
    let written = (|| {
        let mut f = created?;
        let bytes = serde_json::to_vec_pretty(known).map_err(std::io::Error::other)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    // A full disk left an empty temporary file a run, for good. (One that
    // could not be created is not ours to remove.)
    if written
        .as_ref()
        .is_err_and(|e| e.kind() != std::io::ErrorKind::AlreadyExists)
    {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `O_NOFOLLOW`: opening a symlink fails.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(url: &str) -> Vec<String> {
        vec![url.to_string()]
    }

    #[test]
    fn a_config_is_trusted_on_first_use_and_another_refused_after() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownRepositories::At(dir.path().to_path_buf());
        let url = &names("s3://bucket/repo");
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
        known
            .check(&names("s3://bucket/other"), "r2", false, b"x")
            .unwrap();
        // Remembering does not replace.
        known.remember(url, "r1", false, b"plain config");
        known.check(url, "r1", false, b"plain config").unwrap_err();
        // Nor does a creation where a repository was.
        let err = known
            .admit_new(url, "r3", false, b"new config")
            .unwrap_err();
        assert!(err.to_string().contains("there is none there now"), "{err}");
        // Every record in the way is named at once.
        let both = vec![url[0].clone(), "s3://bucket/alias".to_string()];
        known.remember(&both, "r1", true, b"sealed config");
        let err = known.may_create(&both).unwrap_err().to_string();
        let files: Vec<String> = both
            .iter()
            .map(|u| known.file(u).unwrap().display().to_string())
            .collect();
        assert!(
            err.contains(&format!("remove {} and {} and run", files[0], files[1])),
            "{err}"
        );
        known.check(url, "r1", true, b"sealed config").unwrap();
        // Off checks nothing.
        KnownRepositories::Off
            .check(url, "r9", false, b"anything")
            .unwrap();
    }

    #[test]
    fn a_creation_that_did_not_finish_stands_in_no_ones_way() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownRepositories::At(dir.path().to_path_buf());
        let url = &names("sftp://host/repo");
        known.admit_new(url, "r1", true, b"mine").unwrap();
        // Stopped before its config was written: another's is found.
        known.check(url, "r2", false, b"theirs").unwrap();
        known.admit_new(url, "r3", false, b"again").unwrap();
        known.created(url, "r3", false, b"again");
        known.check(url, "r3", false, b"again").unwrap();
        known.check(url, "r2", false, b"theirs").unwrap_err();
    }

    #[test]
    fn every_name_of_a_local_folder_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownRepositories::At(dir.path().join("records"));
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&repo, &link).unwrap();
        let options = StorageOptions::default();
        let by_link = identity(&Location::Local(link.clone()), &options);
        assert_eq!(by_link.len(), 2, "{by_link:?}");
        let by_folder = identity(&Location::Local(repo.join("x/..")), &options);
        assert_eq!(by_folder, vec![by_link[1].clone()]);
        known.remember(&by_link, "r1", true, b"sealed");
        // The link pointed elsewhere: the name given still has its record.
        let evil = dir.path().join("evil");
        std::fs::create_dir(&evil).unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&evil, &link).unwrap();
        let swapped = identity(&Location::Local(link), &options);
        assert_ne!(swapped[1], by_link[1]);
        let err = known.check(&swapped, "r2", false, b"plain").unwrap_err();
        assert!(err.to_string().contains("it was encrypted"), "{err}");
        // `..` after a link is the file system's: `hop/../repo` is the
        // `repo` beside the folder `hop` points to, not this one.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("inner")).unwrap();
        std::fs::create_dir(elsewhere.join("repo")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("inner"), dir.path().join("hop")).unwrap();
        let hopped = identity(&Location::Local(dir.path().join("hop/../repo")), &options);
        let real_elsewhere = std::fs::canonicalize(elsewhere.join("repo")).unwrap();
        assert_eq!(hopped, vec![real_elsewhere.display().to_string()]);
    }
}
