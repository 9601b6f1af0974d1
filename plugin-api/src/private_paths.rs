//! Whether users other than root and the running user could change what
//! a path leads to: for a run as root that writes where a path leads (a
//! restore target, a log file) or reads its settings from a home folder.
//!
//! Whoever can write in a folder can rename what is in it and put their
//! own in its place (unless the folder is sticky, as `/tmp` is, and what
//! is in it is not theirs), and whoever owns a symbolic link can point it
//! anywhere. So a path is private when every symbolic link met while
//! resolving it belongs to root or the running user, and every folder on
//! the way belongs to them and is writable by no one else (by its mode or
//! by an ACL) unless it is sticky. The path is resolved here, link by
//! link, so that a link that comes and goes between two looks is judged
//! by what was followed, not by what a second look finds.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A path resolved through trusted links only: the folder it reaches that
/// exists (without links), and the names below it that do not exist yet.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The folder reached, as it resolves (no link in it).
    pub existing: PathBuf,
    /// The names below it that do not exist yet, in order.
    pub missing: Vec<OsString>,
}

/// The most links followed in resolving one path (as the kernel's 40).
const MAX_LINKS: usize = 40;

/// Whether `uid` is root or the running user.
fn trusted(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// The name of user `uid`, for messages (`uid N` for one with no name).
pub fn user_name(uid: u32) -> String {
    uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// How others may write in a folder, for messages: its mode, and whether
/// an ACL lets them in where the mode alone does not say so.
pub fn write_access(meta: &std::fs::Metadata) -> String {
    let acl = if meta.mode() & 0o022 == 0 {
        ", by an ACL"
    } else {
        ""
    };
    format!("mode {:o}{acl}", meta.mode() & 0o7777)
}

/// Whether users other than root and the running user may write in the
/// folder `path` whose metadata is `meta`: by its mode (the group's write
/// bit counts unless the group is root's), or by an ACL (one with named
/// entries: then the group bits are its mask, and a named user may be
/// let in whatever the group).
pub fn others_may_write(path: &Path, meta: &std::fs::Metadata) -> bool {
    let mode = meta.mode();
    mode & 0o002 != 0 || (mode & 0o020 != 0 && (meta.gid() != 0 || has_acl(path)))
}

/// Whether the object at `path` (not followed if a link) has an access
/// ACL with named entries: then its mode's group bits are the ACL's mask,
/// and users or groups the ACL names may write where they say "group".
/// (Since 0.1.17.)
pub fn has_acl(path: &Path) -> bool {
    // An ACL with named entries is stored as this attribute (one of the
    // mode bits alone is not); one too long for the buffer is one too.
    let mut buf = [0u8; 512];
    match rustix::fs::lgetxattr(path, "system.posix_acl_access", &mut buf[..]) {
        Ok(len) => len > 0,
        Err(e) => e == rustix::io::Errno::RANGE,
    }
}

/// Why users other than root and the running user could change what the
/// absolute or relative `path` leads to (see the module's docs), or where
/// it leads: the folder it reaches and the names below that do not exist.
/// `Err` is the reason, for a message; a failure to look is one too.
pub fn resolve_private(path: &Path) -> Result<Resolved, String> {
    let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
    let mut todo: Vec<OsString> = names_of(&absolute);
    todo.reverse();
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let meta = match next.symlink_metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut missing = vec![name];
                missing.extend(todo.into_iter().rev());
                if missing.iter().any(|n| n == "..") {
                    return Err(format!(
                        "{} does not exist, and '..' follows it",
                        crate::names::escape_path(&next)
                    ));
                }
                check_folder(&at, true)?;
                return Ok(Resolved {
                    existing: at,
                    missing,
                });
            }
            Err(e) => return Err(format!("{}: {e}", crate::names::escape_path(&next))),
        };
        if meta.file_type().is_symlink() {
            if !trusted(meta.uid()) {
                return Err(format!(
                    "{} on the way is a symbolic link of {}",
                    crate::names::escape_path(&next),
                    user_name(meta.uid())
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(format!(
                    "{}: too many symbolic links",
                    crate::names::escape_path(path)
                ));
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| format!("{}: {e}", crate::names::escape_path(&next)))?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            let mut more = names_of(&target);
            more.reverse();
            todo.extend(more);
            continue;
        }
        // What is followed next is in this folder: it must be one no one
        // else can change. (The last folder is judged by its caller,
        // which may ask more of it.)
        check_folder(&at, true)?;
        at = next;
    }
    Ok(Resolved {
        existing: at,
        missing: Vec::new(),
    })
}

/// Why others could change what is in the folder `dir` (a sticky folder
/// protects what is not theirs, if `sticky_counts`).
pub fn check_folder(dir: &Path, sticky_counts: bool) -> Result<(), String> {
    let meta = dir
        .symlink_metadata()
        .map_err(|e| format!("{}: {e}", crate::names::escape_path(dir)))?;
    if !meta.is_dir() {
        return Err(format!(
            "{} on the way is not a folder",
            crate::names::escape_path(dir)
        ));
    }
    if !trusted(meta.uid()) {
        return Err(format!(
            "{} on the way belongs to {}",
            crate::names::escape_path(dir),
            user_name(meta.uid())
        ));
    }
    let sticky = sticky_counts && meta.mode() & 0o1000 != 0;
    if others_may_write(dir, &meta) && !sticky {
        return Err(format!(
            "others may write in {} on the way ({})",
            crate::names::escape_path(dir),
            write_access(&meta)
        ));
    }
    Ok(())
}

/// The names of `path`'s parts, `..` kept, `.` and the root left out.
fn names_of(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_links_are_followed_and_names_that_do_not_exist_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let resolved = resolve_private(&dir.path().join("link/new/deeper")).unwrap();
        let canonical = std::fs::canonicalize(&real).unwrap();
        assert_eq!(resolved.existing, canonical);
        assert_eq!(
            resolved.missing,
            vec![OsString::from("new"), "deeper".into()]
        );
        let up = resolve_private(&dir.path().join("link/../real")).unwrap();
        assert_eq!(
            up.existing,
            std::fs::canonicalize(dir.path()).unwrap().join("real")
        );
    }
}
