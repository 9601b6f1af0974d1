//! Whether a run as root may write to a local repository: not where
//! another user could change what its path leads to.
//!
//! Whoever may write in a folder of the repository (its owner, say, when
//! root backs up into a user's repository) can put a symbolic link in
//! place of one of its folders and so lead root's writes anywhere (a pack
//! written into `/etc/cron.d`); and the objects root writes are private to
//! root (mode 0600, in folders of mode 0700), so that the owner's own
//! runs then fail on them (`Permission denied`), for good. Such a
//! repository is refused for writing, before anything is written: reads
//! (`ls`, `restore` from it, `fsck`) go on. As restore's target is judged
//! (see `plugin_api::private_paths`), so is the repository: every link on
//! the way root's, every folder on the way, and the repository's own,
//! root's and writable by no one else; and so are the folders in it
//! (`packs/`, `packs/XX/`, one per client under `generations/`, ...): one
//! of another user's (left from when the repository was theirs, or shared)
//! could be put a link in place of as well, and root's objects in it
//! would be out of its owner's reach.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use obnam_repository::location::Location;
use plugin_api::private_paths::{others_may_write, resolve_private, user_name, write_access};

/// Why this run must not write to the repository at `url`, if it must
/// not: only for root, and a local folder.
pub fn writes_refused(url: &OsStr) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let Ok(Location::Local(path)) = Location::parse_os(url) else {
        return None;
    };
    let why = match resolve_private(&path) {
        Err(why) => why,
        // A folder to be made is made by root, in a folder found private.
        Ok(resolved) if !resolved.missing.is_empty() => return None,
        Ok(resolved) => {
            let folder = &resolved.existing;
            let meta = std::fs::symlink_metadata(folder).ok()?;
            let shown = plugin_api::names::escape_path(folder);
            if meta.uid() != 0 {
                format!(
                    "the repository folder {shown} belongs to {}",
                    user_name(meta.uid())
                )
            } else if others_may_write(folder, &meta) {
                format!(
                    "others may write in the repository folder {shown} ({})",
                    write_access(&meta)
                )
            } else {
                folder_inside_not_roots(folder)?
            }
        }
    };
    Some(format!(
        "obnam runs as root, and {why}: whoever may write there could lead root's writes \
         elsewhere through a symbolic link, and the objects root writes would be private to \
         root, which that user's own runs could not read; run obnam as that user, or use a \
         repository of root's (reading from this one is allowed)"
    ))
}

/// How many entries of the repository's folders are looked at, at most:
/// its folders are a few hundred (objects are files, not looked at).
const INSIDE_LOOKED_AT: usize = 1 << 20;

/// Why a folder (or a symbolic link) in the repository `root`, two
/// levels down (`packs/XX`), could lead root's writes elsewhere: one of
/// another user's, or a folder others may write in.
fn folder_inside_not_roots(root: &Path) -> Option<String> {
    let mut todo = vec![(root.to_path_buf(), 1)];
    let mut looked_at = 0;
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            looked_at += 1;
            if looked_at > INSIDE_LOOKED_AT {
                return None;
            }
            // The kind from the folder's listing: objects (files) cost
            // no look of their own.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() && !kind.is_symlink() {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let shown = plugin_api::names::escape_path(&path);
            if meta.uid() != 0 {
                let what = if kind.is_symlink() {
                    "the symbolic link"
                } else {
                    "the folder"
                };
                return Some(format!(
                    "{what} {shown} in the repository belongs to {}",
                    user_name(meta.uid())
                ));
            }
            if kind.is_dir() {
                if others_may_write(&path, &meta) {
                    return Some(format!(
                        "others may write in the folder {shown} in the repository ({})",
                        write_access(&meta)
                    ));
                }
                if depth < 2 {
                    todo.push((path, depth + 1));
                }
            }
        }
    }
    None
}
