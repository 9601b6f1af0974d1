//! Giving a restored object its recorded metadata: owner, extended
//! attributes, permissions and modification time, in that order.
//!
//! The order matters. The owner comes first because changing it clears
//! the setuid and setgid bits and file capabilities. Extended attributes
//! come before the mode, so that a mode without write permission cannot get
//! in their way, and the modification time comes last, because everything
//! before it may change it. For regular files and directories all of it
//! goes through an open descriptor; symlinks and special files are reached
//! by name with `AT_SYMLINK_NOFOLLOW` or through an `O_PATH` descriptor, so
//! nothing here ever follows a symlink.
//!
//! Ownership is restored only when running as root. Setuid and setgid bits
//! are kept only when running as root or when the file was owned by the
//! user running the restore: otherwise restore would hand out that user's
//! privileges through a file someone else made.
//!
//! Failures are not fatal to the object: each is returned as a message,
//! and the caller reports it as an error of the restore.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;

use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags};
use rustix::process::{Gid, Uid};

use crate::fsops;
use crate::names::escape;
use plugin_api::{Entry, EntryKind};

/// Who is restoring, which decides what may be restored.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Running as root: restore owners and any setuid/setgid bit.
    pub is_root: bool,
    /// The effective user id of the restore.
    pub euid: u32,
}

impl Policy {
    /// The policy of the current process.
    pub fn current() -> Self {
        let euid = rustix::process::geteuid();
        Policy {
            is_root: euid.is_root(),
            euid: euid.as_raw(),
        }
    }

    /// The permission bits to give a restored object. Not root, the
    /// setuid bit only of one's own objects, and the setgid bit only where
    /// the group is one's own too (a restore not as root gives an object
    /// its group only if the user is in it: see [`owner_to_set`](Self::owner_to_set)),
    /// else the bit would name another group than the one recorded.
    pub fn final_mode(&self, entry: &Entry) -> u32 {
        let mut mode = entry.mode & 0o7777;
        if !self.is_root && entry.uid != self.euid {
            mode &= !0o6000;
        }
        if !self.is_root && !is_member_of(entry.gid) {
            mode &= !0o2000;
        }
        mode
    }

    /// The owner and group to give a restored object: root gives both;
    /// anyone else gives its group, if they are in that group (as `tar`
    /// and `cp -p` do: a shared project folder keeps its group), and
    /// their own group otherwise. (Setting nothing left the group the
    /// kernel gave the new object: a set-group-ID folder's, a group the
    /// user may not be in, which could then read a restored `0640` file
    /// that no member of it could read before.)
    fn owner_to_set(&self, entry: &Entry) -> Option<(Option<Uid>, Option<Gid>)> {
        if !self.is_root && entry.uid != self.euid {
            OTHERS_OBJECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if self.is_root {
            Some(owner(entry))
        } else if is_member_of(entry.gid) {
            Some((None, Some(Gid::from_raw(entry.gid))))
        } else {
            Some((None, Some(rustix::process::getegid())))
        }
    }
}

/// Objects restored, not as root, that belonged to another user in the
/// backup: they are the restoring user's now (see [`others_objects`]).
static OTHERS_OBJECTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many objects this process restored, not as root, that belonged to
/// another user: said once at the end, as a restore by mistake without
/// `sudo` otherwise succeeds without a word of it.
pub fn others_objects() -> u64 {
    OTHERS_OBJECTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the restoring process is in group `gid` (its effective group
/// or one of its supplementary groups).
fn is_member_of(gid: u32) -> bool {
    static GROUPS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    GROUPS
        .get_or_init(|| {
            let mut groups: Vec<u32> = rustix::process::getgroups()
                .unwrap_or_default()
                .into_iter()
                .map(Gid::as_raw)
                .collect();
            groups.push(rustix::process::getegid().as_raw());
            groups
        })
        .contains(&gid)
}

fn mtime(entry: &Entry) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: entry.mtime,
            tv_nsec: entry.mtime_ns.into(),
        },
    }
}

fn owner(entry: &Entry) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(entry.uid)),
        Some(Gid::from_raw(entry.gid)),
    )
}

fn note(problems: &mut Vec<String>, what: String, result: io::Result<()>) {
    if let Err(e) = result {
        problems.push(format!("{what}: {e}"));
    }
}

fn owner_problem(entry: &Entry) -> String {
    format!("cannot set owner to {}:{}", entry.uid, entry.gid)
}

fn xattr_problem(name: &[u8]) -> String {
    format!("cannot set extended attribute '{}'", escape(name))
}

fn mode_problem(mode: u32) -> String {
    format!("cannot set permissions to {mode:04o}")
}

fn mtime_problem(entry: &Entry) -> String {
    format!(
        "cannot set modification time to {}.{:09}",
        entry.mtime, entry.mtime_ns
    )
}

/// Whether a recorded modification time is outside what every common
/// file system holds (before 1980, FAT's first year, or past January
/// 2038, where 32-bit times end: ext4 with 128-byte inodes, XFS without
/// big timestamps): setting it there succeeds, but the kernel clamps it.
/// Only such a time is read back after setting, so that the ordinary
/// restore pays nothing for the check.
fn time_may_be_clamped(entry: &Entry) -> bool {
    const FAT_EPOCH: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    !(FAT_EPOCH..=i64::from(i32::MAX)).contains(&entry.mtime)
}

/// The problem if the object's modification time, read back (`stat`),
/// is not the recorded one: the file system clamped it.
fn clamped_time(entry: &Entry, stat: rustix::io::Result<rustix::fs::Stat>) -> Option<String> {
    let st = stat.ok()?;
    // `st_mtime` is 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let held = st.st_mtime as i64;
    (held != entry.mtime).then(|| {
        format!(
            "its modification time, {} s after 1970, cannot be held by the file system \
             restored to, which made it {} s",
            entry.mtime, held
        )
    })
}

/// The POSIX ACLs, as extended attributes.
const ACLS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// The recorded extended attributes in the order they are set: the ACLs
/// last. Setting an access ACL sets the mode's bits from it: one that
/// leaves the owner no write permission made every `user.*` attribute
/// after it (in name order) fail for a restore that is not root's, as
/// setting those asks for write permission (a read-only file of a Samba
/// share came back without its `user.DOSATTRIB`).
fn xattrs_in_setting_order(entry: &Entry) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
    let is_acl = |name: &[u8]| ACLS.iter().any(|acl| acl.as_bytes() == name);
    let others = entry.xattrs.iter().filter(move |(name, _)| !is_acl(name));
    let acls = entry.xattrs.iter().filter(move |(name, _)| is_acl(name));
    others.chain(acls)
}

/// Remove the ACLs an object restored into a folder with a default ACL
/// inherited from it, but that the backup did not record: with them a
/// restored `0640` file could be read by users the original never let
/// in. `remove` removes one attribute by name; an object without it, or a
/// file system without ACLs, is fine.
fn drop_inherited_acls(
    entry: &Entry,
    problems: &mut Vec<String>,
    remove: impl Fn(&str) -> rustix::io::Result<()>,
) {
    // Only a folder has a default ACL.
    let acls = match entry.kind {
        plugin_api::EntryKind::Dir => &ACLS[..],
        _ => &ACLS[..1],
    };
    for &acl in acls {
        if entry
            .xattrs
            .iter()
            .any(|(name, _)| name.as_slice() == acl.as_bytes())
        {
            continue;
        }
        match remove(acl) {
            Ok(()) | Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => problems.push(format!(
                "cannot remove the ACL {acl} it inherited from the folder it was restored \
                 into: {}",
                io::Error::from(e)
            )),
        }
    }
}

/// Set the metadata of a regular file or directory through its open
/// descriptor. Returns what could not be set.
pub fn apply_fd(fd: BorrowedFd<'_>, entry: &Entry, policy: &Policy) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((uid, gid)) = policy.owner_to_set(entry) {
        note(
            &mut problems,
            owner_problem(entry),
            rustix::fs::fchown(fd, uid, gid).map_err(io::Error::from),
        );
    }
    drop_inherited_acls(entry, &mut problems, |acl| {
        rustix::fs::fremovexattr(fd, acl)
    });
    for (name, value) in xattrs_in_setting_order(entry) {
        note(
            &mut problems,
            xattr_problem(name),
            rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty())
                .map_err(io::Error::from),
        );
    }
    let mode = policy.final_mode(entry);
    note(
        &mut problems,
        mode_problem(mode),
        rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode)).map_err(io::Error::from),
    );
    let set = rustix::fs::futimens(fd, &mtime(entry));
    if set.is_ok() && time_may_be_clamped(entry) {
        problems.extend(clamped_time(entry, rustix::fs::fstat(fd)));
    }
    note(
        &mut problems,
        mtime_problem(entry),
        set.map_err(io::Error::from),
    );
    problems
}

/// Set the modification time of `name` in `parent` itself (a symlink's
/// own), noting a failure or a time the file system clamped.
fn set_mtime_at(parent: BorrowedFd<'_>, name: &[u8], entry: &Entry, problems: &mut Vec<String>) {
    let set = rustix::fs::utimensat(parent, name, &mtime(entry), AtFlags::SYMLINK_NOFOLLOW);
    if set.is_ok() && time_may_be_clamped(entry) {
        problems.extend(clamped_time(
            entry,
            rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW),
        ));
    }
    note(problems, mtime_problem(entry), set.map_err(io::Error::from));
}

/// `/proc/self/fd/FD`, optionally followed by `/NAME`: a path that reaches
/// the object an open descriptor refers to (or an entry of that directory)
/// without resolving any path the restore does not control.
fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> OsString {
    let mut path = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    OsString::from_vec(path)
}

/// Set the metadata of the symlink `name` in `parent` (it has no mode of
/// its own on Linux). Returns what could not be set.
pub fn apply_symlink(
    parent: BorrowedFd<'_>,
    name: &[u8],
    entry: &Entry,
    policy: &Policy,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((uid, gid)) = policy.owner_to_set(entry) {
        note(
            &mut problems,
            owner_problem(entry),
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io::Error::from),
        );
    }
    if !entry.xattrs.is_empty() {
        // lsetxattr does not follow the last component, the symlink itself.
        let path = proc_path(parent, Some(name));
        for (xname, value) in xattrs_in_setting_order(entry) {
            note(
                &mut problems,
                xattr_problem(xname),
                rustix::fs::lsetxattr(&path, xname.as_slice(), value, XattrFlags::empty())
                    .map_err(io::Error::from),
            );
        }
    }
    set_mtime_at(parent, name, entry, &mut problems);
    problems
}

/// Set the metadata of the FIFO, socket or device node `name` in `parent`,
/// which restore has just made. It is opened with `O_PATH`, which neither
/// follows a symlink nor opens the device or FIFO itself. Returns what
/// could not be set.
pub fn apply_node(
    parent: BorrowedFd<'_>,
    name: &[u8],
    entry: &Entry,
    policy: &Policy,
) -> Vec<String> {
    let mut problems = Vec::new();
    let fd = match fsops::open_node(parent, name) {
        Ok(fd) => fd,
        Err(e) => return vec![format!("cannot open to set its metadata: {e}")],
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink() => {
            return vec!["it was replaced by a symlink while being restored".into()];
        }
        Ok(_) => {}
        Err(e) => return vec![format!("cannot check what it is: {e}")],
    }
    if let Some((uid, gid)) = policy.owner_to_set(entry) {
        note(
            &mut problems,
            owner_problem(entry),
            rustix::fs::chownat(&fd, "", uid, gid, AtFlags::EMPTY_PATH).map_err(io::Error::from),
        );
    }
    let path = proc_path(fd.as_fd(), None);
    drop_inherited_acls(entry, &mut problems, |acl| {
        rustix::fs::removexattr(&path, acl)
    });
    for (xname, value) in xattrs_in_setting_order(entry) {
        note(
            &mut problems,
            xattr_problem(xname),
            rustix::fs::setxattr(&path, xname.as_slice(), value, XattrFlags::empty())
                .map_err(io::Error::from),
        );
    }
    let mode = policy.final_mode(entry);
    let mut result = rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(mode));
    if result == Err(rustix::io::Errno::NOENT) {
        // No /proc: chmod by name. The node was checked above not to be a
        // symlink, and it sits in a directory only this user can enter.
        result = rustix::fs::chmodat(
            parent,
            name,
            rustix::fs::Mode::from_raw_mode(mode),
            AtFlags::empty(),
        );
    }
    note(
        &mut problems,
        mode_problem(mode),
        result.map_err(io::Error::from),
    );
    set_mtime_at(parent, name, entry, &mut problems);
    problems
}

/// Whether an entry of this kind is made with [`apply_node`].
pub fn is_node(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Fifo | EntryKind::Socket | EntryKind::CharDevice | EntryKind::BlockDevice
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mode: u32, uid: u32) -> Entry {
        Entry {
            mode,
            uid,
            ..Entry::default()
        }
    }

    #[test]
    fn root_keeps_every_bit() {
        let root = Policy {
            is_root: true,
            euid: 0,
        };
        assert_eq!(root.final_mode(&entry(0o104755, 1000)), 0o4755);
        assert_eq!(root.final_mode(&entry(0o102755, 1000)), 0o2755);
        assert_eq!(root.final_mode(&entry(0o41777, 1000)), 0o1777);
        assert_eq!(root.final_mode(&entry(0o100000, 1000)), 0);
    }

    #[test]
    fn others_keep_setuid_only_on_their_own_files() {
        let user = Policy {
            is_root: false,
            euid: 1000,
        };
        assert_eq!(user.final_mode(&entry(0o104755, 1000)), 0o4755);
        assert_eq!(user.final_mode(&entry(0o106755, 0)), 0o755);
        assert_eq!(user.final_mode(&entry(0o41777, 0)), 0o1777);
    }

    #[test]
    fn metadata_is_set_through_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let e = Entry {
            mode: 0o100000,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mtime: -86400 * 365,
            mtime_ns: 123_456_789,
            ..Entry::default()
        };
        let problems = apply_fd(file.as_fd(), &e, &Policy::current());
        assert!(problems.is_empty(), "{problems:?}");
        let st = rustix::fs::stat(&path).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0);
        assert_eq!(st.st_mtime, -86400 * 365);
        assert_eq!(st.st_mtime_nsec, 123_456_789);
    }

    #[test]
    fn node_metadata_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = rustix::fs::open(
            tmp.path(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"x").unwrap();
        fsops::make_symlink(dir.as_fd(), b"s", b"victim").unwrap();
        let e = entry(0o10777, 0);
        let problems = apply_node(dir.as_fd(), b"s", &e, &Policy::current());
        assert!(!problems.is_empty());
        let st = rustix::fs::stat(&victim).unwrap();
        assert_ne!(st.st_mode & 0o777, 0o777);

        fsops::make_node(dir.as_fd(), b"fifo", EntryKind::Fifo, 0).unwrap();
        let e = Entry {
            mode: 0o10640,
            mtime: 1_000_000,
            mtime_ns: 5,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            ..Entry::default()
        };
        let problems = apply_node(dir.as_fd(), b"fifo", &e, &Policy::current());
        assert!(problems.is_empty(), "{problems:?}");
        let st = rustix::fs::lstat(tmp.path().join("fifo")).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o640);
        assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_000_000, 5));
    }
}
