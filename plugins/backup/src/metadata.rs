//! What `lstat` (and the extended attributes) say about a file, as a
//! generation entry; and whether a file changed since the previous backup.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use plugin_api::{Entry, EntryKind};

/// User and group names by id, looked up once each.
#[derive(Default)]
pub struct Names {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
}

impl Names {
    fn user(&self, uid: u32) -> String {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| u.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone()
    }

    fn group(&self, gid: u32) -> String {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .entry(gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(gid)
                    .map(|g| g.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// The extended attributes of a file (not following symlinks), sorted by
/// name. A file system without xattr support has none.
pub fn xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()), // EOPNOTSUPP
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        // An attribute removed since the listing is simply gone.
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The entry for a file, without content (checksum and chunks).
pub fn entry(path: &Path, m: &Metadata, names: &Names) -> std::io::Result<Entry> {
    let kind = EntryKind::from_mode(m.mode());
    let target = if kind == EntryKind::Symlink {
        std::fs::read_link(path)?.as_os_str().as_bytes().to_vec()
    } else {
        Vec::new()
    };
    Ok(Entry {
        name: path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default(),
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        user: names.user(m.uid()),
        group: names.group(m.gid()),
        size: if kind == EntryKind::Dir { 0 } else { m.size() },
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec() as u32,
        ctime: m.ctime(),
        ctime_ns: m.ctime_nsec() as u32,
        nlink: m.nlink(),
        dev: m.dev(),
        ino: m.ino(),
        rdev: m.rdev(),
        target,
        xattrs: xattrs(path)?,
        ..Entry::default()
    })
}

/// Whether a non-directory is unchanged since the previous generation, so
/// that its content need not be read again: same kind, mtime (seconds and
/// nanoseconds), mode, link count, size, owner and extended attributes.
pub fn unchanged(now: &Entry, before: &Entry) -> bool {
    now.kind == before.kind
        && now.kind != EntryKind::Dir
        && now.mtime == before.mtime
        && now.mtime_ns == before.mtime_ns
        && now.mode == before.mode
        && now.nlink == before.nlink
        && now.size == before.size
        && now.uid == before.uid
        && now.gid == before.gid
        && now.xattrs == before.xattrs
        && (now.kind != EntryKind::File || now.size == 0 || !before.chunks.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_any_compared_field_is_a_change() {
        let base = Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            size: 3,
            mtime: 10,
            mtime_ns: 5,
            nlink: 1,
            chunks: vec![Default::default()],
            ..Entry::default()
        };
        assert!(unchanged(&base, &base));
        let changes: [fn(&mut Entry); 7] = [
            |e| e.mtime += 1,
            |e| e.mtime_ns += 1,
            |e| e.mode = 0o100600,
            |e| e.nlink = 2,
            |e| e.size = 4,
            |e| e.uid = 7,
            |e| e.xattrs = vec![(b"user.a".to_vec(), b"b".to_vec())],
        ];
        for change in changes {
            let mut now = base.clone();
            change(&mut now);
            assert!(!unchanged(&now, &base));
        }
        // ctime alone does not make a file changed.
        let mut now = base.clone();
        now.ctime += 100;
        assert!(unchanged(&now, &base));
    }
}
