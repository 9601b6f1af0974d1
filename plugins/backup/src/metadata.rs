//! What `lstat` (and the extended attributes) say about a file, as a
//! generation entry; and whether a file changed since the previous backup.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use plugin_api::payloads::FileStat;
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

/// The object the walk stat'ed at `path`, held open (`O_PATH`: opening it
/// has no effect on a device or a FIFO, and needs no read permission) so
/// that its attributes and link target are read from that very inode.
///
/// Read by path, they came from whatever the path led to at that moment:
/// whoever can write in a backed-up folder could swap the folder for a
/// symlink between the walk's `fstatat` and the read, and back, so that
/// the generation recorded their own program with another file's
/// attributes (its `security.capability`), which a restore as root then
/// set: a way to root. The descriptor is opened without following a
/// final symlink, and checked to be the inode (device and number) the
/// walk saw.
struct Held {
    fd: rustix::fd::OwnedFd,
}

impl Held {
    fn open(path: &Path, m: &FileStat) -> std::io::Result<Held> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        if (st.st_dev as u64, st.st_ino as u64) != (m.dev, m.ino) {
            return Err(replaced(m.mode, st.st_mode as u32));
        }
        Ok(Held { fd })
    }

    /// The path that leads to the held inode itself, whatever happens to
    /// the names on the way (`/proc/self/fd/N`, which resolves to the
    /// inode, a symlink included, not to what a symlink names).
    fn proc_path(&self) -> std::path::PathBuf {
        use rustix::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The target of the held symlink.
    fn link_target(&self) -> std::io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&self.fd, "", Vec::new())?.into_bytes())
    }

    /// The extended attributes of the held inode, sorted by name. Without
    /// `/proc` (a chroot without it), read by `path` and then checked to
    /// still be the held inode.
    fn xattrs(&self, path: &Path, m: &FileStat) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        static PROC_MOUNTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *PROC_MOUNTED.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
            return xattrs_of(&self.proc_path(), Deref::Yes);
        }
        let read = xattrs_of(path, Deref::No)?;
        let now = rustix::fs::lstat(path)?;
        if (now.st_dev as u64, now.st_ino as u64) != (m.dev, m.ino) {
            return Err(replaced(m.mode, now.st_mode as u32));
        }
        Ok(read)
    }
}

/// Why an object (of mode `was`) was not recorded: another (of mode
/// `now`) took its name, or a folder on its path was swapped, since the
/// walk saw it; in the words the walk and the content's read use.
fn replaced(was: u32, now: u32) -> std::io::Error {
    let (was, now) = (EntryKind::from_mode(was), EntryKind::from_mode(now));
    std::io::Error::other(if was == now {
        let kind = crate::content::what_kind(now);
        format!(
            "it was replaced by another {} since it was scanned; not backed up",
            kind.trim_start_matches("a ")
        )
    } else {
        format!(
            "it changed into {} since it was scanned; not backed up",
            crate::content::what_kind(now)
        )
    })
}

/// Whether the path given to [`xattrs_of`] is followed if a symlink.
#[derive(Clone, Copy, PartialEq)]
enum Deref {
    Yes,
    No,
}

/// The extended attributes at `path`, sorted by name (a file system
/// without xattr support has none); `deref` says whether a symlink there
/// is followed (the `/proc/self/fd` path of a held inode must be: it leads
/// to the inode).
fn xattrs_of(path: &Path, deref: Deref) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let listed = match deref {
        Deref::Yes => xattr::list_deref(path),
        Deref::No => xattr::list(path),
    };
    let names = match listed {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()), // EOPNOTSUPP
        // E2BIG: the kernel lists at most 64 KiB of names (XATTR_LIST_MAX);
        // some file systems hold more. "Argument list too long" said none
        // of that.
        Err(e) if e.raw_os_error() == Some(7) => {
            return Err(std::io::Error::new(
                e.kind(),
                "the names of its extended attributes take more than the 64 KiB the kernel \
                 can list (E2BIG), so they cannot be read",
            ))
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        // An attribute removed since the listing is simply gone.
        let value = match deref {
            Deref::Yes => xattr::get_deref(path, &name)?,
            Deref::No => xattr::get(path, &name)?,
        };
        if let Some(value) = value {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// How long before the previous generation's start a file's times make
/// it "racy" ([`racy`]): file systems take their times from a clock that
/// moves a tick at a time (4 ms at 250 Hz, 10 ms at 100 Hz), so a write
/// just after the start may be stamped a tick before it.
const RACY_MARGIN_NS: i64 = 20_000_000;

/// The time from which a file of the previous generation (which started
/// at `previous_start`, ns since the epoch) is racy ([`racy`]).
pub fn racy_from(previous_start: i64) -> (i64, u32) {
    let t = previous_start.saturating_sub(RACY_MARGIN_NS);
    (
        t.div_euclid(1_000_000_000),
        t.rem_euclid(1_000_000_000) as u32,
    )
}

/// Whether a file's previous entry was recorded while the file may still
/// have been changing, so that its unchanged times prove nothing (git's
/// "racily clean" files): it was modified, or its inode changed, during
/// the previous backup (or a clock tick before it). A write in the
/// same tick of the file system's clock as the backup's read leaves the
/// times as they were (coarse clocks, ramfs); so, on some kernels, do
/// writes through a shared mapping to pages already dirty. Such a file is
/// read again by the next backup, once: by then its times are older than
/// that backup's start, and trusted.
/// The change time counts unless `rule` ignores it: where change times
/// are not to be trusted, they may be late for every file.
///
/// A file system that stamps whole seconds (ext4 with 128-byte inodes,
/// HFS+, many SMB and NFS servers) or two (FAT) has a tick far longer
/// than the margin: a write half a second after the read is stamped with
/// the second the read began in, before `from`, and the file was never
/// read again. An entry whose times have no nanoseconds is taken for one
/// of those, and is racy from [`COARSE_TICK_S`] seconds before `from`'s
/// second.
pub fn racy(before: &Entry, from: Option<(i64, u32)>, rule: ChangeRule) -> bool {
    let coarse = before.mtime_ns == 0 && (rule.ignore_ctime || before.ctime_ns == 0);
    from.is_some_and(|from| {
        let since =
            |t: (i64, u32)| t >= from || (coarse && t.0 >= from.0.saturating_sub(COARSE_TICK_S));
        since((before.mtime, before.mtime_ns))
            || (!rule.ignore_ctime && since((before.ctime, before.ctime_ns)))
    })
}

/// Whether the folder `now`, which the previous generation had at the
/// same path as `before`, may have been renamed or moved there since:
/// then the files below it are not the files the previous generation
/// had at their paths, though each looks the same. Asked under
/// `--ignore-inode` only: by default a file's inode number tells it from
/// the file the path had before; without it, two files of one size and
/// modification time whose change times fall in one tick (one second, on
/// a file system that keeps no finer times) swapped by renaming their
/// folders kept each other's content, silently, since a folder's rename
/// changes no time of the files below it.
///
/// It changes the folder's change time, and not its modification time:
/// a change of its entries (a file added, removed or renamed in it) sets
/// both to the same instant, so a folder whose change time is another
/// than the previous generation's and than its own modification time was
/// touched last by something else: a rename or move (or a `chmod`, an
/// attribute), and is taken for moved. (A folder renamed, then given a
/// new entry before the next backup, looks like one whose entries
/// changed: that is not told. Neither is anything under `--ignore-ctime`
/// too.) A root is judged the same way: another folder renamed into its
/// path is one.
pub fn maybe_moved(now: &Entry, before: Option<&Entry>, rule: ChangeRule) -> bool {
    let Some(before) = before else {
        return false;
    };
    rule.ignore_inode
        && !rule.ignore_ctime
        && (now.ctime, now.ctime_ns) != (before.ctime, before.ctime_ns)
        && (now.ctime, now.ctime_ns) != (now.mtime, now.mtime_ns)
}

/// The longest tick of a file system's clock that stamps whole seconds:
/// FAT's two.
const COARSE_TICK_S: i64 = 2;

/// Which signs of a change, besides those every backup compares, this
/// backup trusts (`--ignore-inode`, `--ignore-ctime`). By default both
/// the inode number and the change time count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeRule {
    /// Inode numbers are not stable here (some FUSE and network file
    /// systems): another inode number alone is no change.
    pub ignore_inode: bool,
    /// Change times are not to be trusted here: another change time alone
    /// is no change.
    pub ignore_ctime: bool,
}

impl ChangeRule {
    /// Whether a file with inode number `ino` and change time `ctime` has
    /// those of `before`, as far as the rule compares them.
    ///
    /// The device number is not compared: some file systems get another
    /// one at each mount (NFS, btrfs subvolumes, removable disks), which
    /// would make every file look changed after a reboot; at the same path,
    /// the inode number and a change time to the nanosecond tell the file.
    ///
    /// An entry that recorded no inode number or change time (0, as a
    /// hand-made or foreign generation may hold) matches no real file:
    /// such a file is read once, and recorded with its own from then on.
    fn same_inode(self, ino: u64, ctime: (i64, u32), before: &Entry) -> bool {
        (self.ignore_inode || ino == before.ino)
            && (self.ignore_ctime || ctime == (before.ctime, before.ctime_ns))
    }

    /// Whether `before` is the same inode as `m`, untouched since: then its
    /// extended attributes and symlink target are what the file has now,
    /// unread. Setting or removing an attribute sets the change time
    /// (which no program can set back), and a symlink's target never
    /// changes in place. This saves one or two system calls per file of a
    /// backup that finds most files unchanged.
    ///
    /// Only when the rule trusts both the inode number and the change
    /// time: an attribute set on a file whose change time is ignored, or
    /// another file given the inode number the old one had, would
    /// otherwise be missed. [`unchanged`](Self::unchanged) then compares
    /// the attributes as read.
    fn untouched(self, m: &FileStat, before: &Entry) -> bool {
        !self.ignore_inode
            && !self.ignore_ctime
            && before.kind == EntryKind::from_mode(m.mode)
            && self.same_inode(m.ino, (m.ctime, m.ctime_ns), before)
    }

    /// Whether a non-directory is unchanged since the previous generation,
    /// so that its content need not be read again: same kind, mtime
    /// (seconds and nanoseconds), mode, link count, size, owner and
    /// extended attributes, and, unless the rule ignores them, the same
    /// inode number and change time (seconds and nanoseconds).
    ///
    /// The modification time is whatever a program sets it to (`touch -r`,
    /// `cp -p`, `rsync -t`, archive tools, editors that keep it), so the
    /// other fields alone miss a file replaced by another of the same size
    /// (written beside it, given its mtime, renamed over it) or rewritten
    /// in place with its mtime set back: the old content would be kept,
    /// silently. A file renamed into place is another inode, and every
    /// write, `chmod`, `chown`, rename, link or attribute change sets the
    /// change time to the clock, which no program can set back. Nothing
    /// the backup does to a file it reads changes its change time (it
    /// sets no times and no attributes; reading changes only the access
    /// time, which sets no change time).
    pub fn unchanged(self, now: &Entry, before: &Entry) -> bool {
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
            && self.same_inode(now.ino, (now.ctime, now.ctime_ns), before)
            && (now.kind != EntryKind::File || now.size == 0 || !before.chunks.is_empty())
    }

    /// Make `now`, a file that [`unchanged`](Self::unchanged) found
    /// unchanged since `before`, the entry to record with `before`'s
    /// content: under `--ignore-ctime` it keeps the change time recorded
    /// with that content, not the file's. A change the setting hid (a
    /// rewrite with the mtime set back) is then still seen by a later
    /// backup without it, which reads the file again, rather than lost for
    /// good behind a change time recorded as if the content had been read
    /// at it. (The inode number is always the file's: it tells which
    /// entries are hard links of each other.)
    pub fn keep_content_of(self, now: &mut Entry, before: &Entry) {
        if self.ignore_ctime {
            (now.ctime, now.ctime_ns) = (before.ctime, before.ctime_ns);
        }
    }
}

/// The entry for a file, without content (checksum and chunks); its
/// extended attributes and symlink target are taken from `before` (the
/// previous generation's entry) if the inode did not change since, as
/// `rule` tells it (see [`ChangeRule::untouched`]), and `before` is not
/// racy ([`racy`], from `racy_from`): an attribute set, or a link made
/// anew under the inode number just freed, in the tick of the clock in
/// which the previous backup read it leaves the change time as it was,
/// and the old attribute (an ACL, a capability) or target was recorded
/// again by every later backup.
pub fn entry(
    path: &Path,
    m: &FileStat,
    names: &Names,
    before: Option<&Entry>,
    rule: ChangeRule,
    racy_from: Option<(i64, u32)>,
) -> std::io::Result<Entry> {
    let kind = EntryKind::from_mode(m.mode);
    let before = before.filter(|b| rule.untouched(m, b) && !racy(b, racy_from, rule));
    let (target, xattrs) = match before {
        Some(b) if kind == EntryKind::Symlink => (b.target.clone(), b.xattrs.clone()),
        Some(b) => (Vec::new(), b.xattrs.clone()),
        None => {
            let held = Held::open(path, m)?;
            let target = if kind == EntryKind::Symlink {
                held.link_target()?
            } else {
                Vec::new()
            };
            (target, held.xattrs(path, m)?)
        }
    };
    Ok(Entry {
        name: path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default(),
        kind,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        user: names.user(m.uid),
        group: names.group(m.gid),
        size: if kind == EntryKind::Dir { 0 } else { m.size },
        mtime: m.mtime,
        mtime_ns: m.mtime_ns,
        ctime: m.ctime,
        ctime_ns: m.ctime_ns,
        nlink: m.nlink,
        dev: m.dev,
        ino: m.ino,
        rdev: m.rdev,
        target,
        xattrs,
        ..Entry::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: ChangeRule = ChangeRule {
        ignore_inode: false,
        ignore_ctime: false,
    };
    const NO_INODE: ChangeRule = ChangeRule {
        ignore_inode: true,
        ignore_ctime: false,
    };
    const NO_CTIME: ChangeRule = ChangeRule {
        ignore_inode: false,
        ignore_ctime: true,
    };
    const NEITHER: ChangeRule = ChangeRule {
        ignore_inode: true,
        ignore_ctime: true,
    };

    /// The attributes and link target are those of the inode the walk
    /// stat'ed, or none: a name that leads elsewhere by the time they are
    /// read (the file, or a folder on its path, swapped for another; the
    /// way a user gave their own program another file's capabilities) is
    /// an error, not the other file's attributes.
    #[test]
    fn attributes_come_from_the_inode_the_walk_saw_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (mine, theirs) = (dir.path().join("mine"), dir.path().join("theirs"));
        std::fs::write(&mine, b"mine").unwrap();
        std::fs::write(&theirs, b"theirs").unwrap();
        if xattr::set(&theirs, "user.power", b"all").is_err() {
            eprintln!("skipped: no user attributes on this file system");
            return;
        }
        let names = Names::default();
        let stat = |p: &Path| FileStat::from_metadata(&std::fs::symlink_metadata(p).unwrap());
        let walked = stat(&mine);
        let own = entry(&mine, &walked, &names, None, DEFAULT, None).unwrap();
        assert!(own.xattrs.is_empty());
        // Their file takes the name after the walk saw mine.
        std::fs::rename(&theirs, &mine).unwrap();
        let err = entry(&mine, &walked, &names, None, DEFAULT, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it was replaced by another file since it was scanned; not backed up"
        );
        // A symlink's own target, through the held link.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("mine", &link).unwrap();
        let linked = entry(&link, &stat(&link), &names, None, DEFAULT, None).unwrap();
        assert_eq!(linked.target, b"mine");
        assert!(linked.xattrs.is_empty(), "not those of the file it names");
    }

    /// The attributes and symlink target of an unchanged inode come from
    /// the previous entry; once an attribute is set (which sets the change
    /// time), they are read again. Under `--ignore-inode` or
    /// `--ignore-ctime` they are always read.
    #[test]
    fn attributes_are_read_again_only_when_the_inode_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, link) = (dir.path().join("f"), dir.path().join("l"));
        std::fs::write(&file, b"x").unwrap();
        std::os::unix::fs::symlink("f", &link).unwrap();
        let names = Names::default();
        let stat = |p: &Path| FileStat::from_metadata(&std::fs::symlink_metadata(p).unwrap());
        let first = entry(&file, &stat(&file), &names, None, DEFAULT, None).unwrap();
        let mut before = first.clone();
        before.xattrs = vec![(b"user.was".to_vec(), b"1".to_vec())];
        let now = entry(&file, &stat(&file), &names, Some(&before), DEFAULT, None).unwrap();
        assert_eq!(now.xattrs, before.xattrs, "taken from the same inode");
        let mut link_before = entry(&link, &stat(&link), &names, None, DEFAULT, None).unwrap();
        assert_eq!(link_before.target, b"f");
        link_before.target = b"g".to_vec();
        let link_now = entry(
            &link,
            &stat(&link),
            &names,
            Some(&link_before),
            DEFAULT,
            None,
        )
        .unwrap();
        assert_eq!(link_now.target, b"g");
        // With a sign of change ignored, nothing is taken on trust.
        for rule in [NO_INODE, NO_CTIME, NEITHER] {
            let now = entry(&file, &stat(&file), &names, Some(&before), rule, None).unwrap();
            assert_eq!(now.xattrs, first.xattrs, "{rule:?}");
            let link_now =
                entry(&link, &stat(&link), &names, Some(&link_before), rule, None).unwrap();
            assert_eq!(link_now.target, b"f", "{rule:?}");
        }
        // Another inode (the same name replaced), or another change time,
        // is read; another device is the same file (renumbered at a mount).
        let changes: [fn(&mut Entry); 3] = [|e| e.ino += 1, |e| e.ctime -= 1, |e| e.ctime_ns ^= 1];
        for change in changes {
            let mut other = before.clone();
            change(&mut other);
            let now = entry(&file, &stat(&file), &names, Some(&other), DEFAULT, None).unwrap();
            assert_eq!(now.xattrs, first.xattrs);
        }
        let mut other_device = before.clone();
        other_device.dev += 1;
        let now = entry(
            &file,
            &stat(&file),
            &names,
            Some(&other_device),
            DEFAULT,
            None,
        )
        .unwrap();
        assert_eq!(now.xattrs, before.xattrs);

        std::thread::sleep(std::time::Duration::from_millis(30));
        if xattr::set(&file, "user.new", b"2").is_err() {
            return; // No user attributes on this file system.
        }
        let now = entry(&file, &stat(&file), &names, Some(&before), DEFAULT, None).unwrap();
        assert_eq!(now.xattrs, vec![(b"user.new".to_vec(), b"2".to_vec())]);
        // An entry recorded while the previous backup ran (racy) is not
        // taken on trust either: an attribute set in the same tick as
        // that read left the change time as it was.
        let mut racy_before = now.clone();
        racy_before.xattrs = vec![(b"user.was".to_vec(), b"1".to_vec())];
        let during = Some((racy_before.ctime, racy_before.ctime_ns));
        let now = entry(
            &file,
            &stat(&file),
            &names,
            Some(&racy_before),
            DEFAULT,
            during,
        )
        .unwrap();
        assert_eq!(now.xattrs, vec![(b"user.new".to_vec(), b"2".to_vec())]);
        let trusted = entry(
            &file,
            &stat(&file),
            &names,
            Some(&racy_before),
            DEFAULT,
            None,
        )
        .unwrap();
        assert_eq!(trusted.xattrs, racy_before.xattrs);
    }

    fn base() -> Entry {
        Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            size: 3,
            mtime: 10,
            mtime_ns: 5,
            ctime: 20,
            ctime_ns: 7,
            nlink: 1,
            dev: 2049,
            ino: 131,
            chunks: vec![Default::default()],
            ..Entry::default()
        }
    }

    #[test]
    fn a_change_of_any_compared_field_is_a_change() {
        let base = base();
        for rule in [DEFAULT, NO_INODE, NO_CTIME, NEITHER] {
            assert!(rule.unchanged(&base, &base), "{rule:?}");
        }
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
            for rule in [DEFAULT, NO_INODE, NO_CTIME, NEITHER] {
                assert!(!rule.unchanged(&now, &base), "{rule:?}: {now:?}");
            }
        }
        // The device number alone is no change: some file systems get
        // another at each mount.
        let mut now = base.clone();
        now.dev += 1;
        assert!(DEFAULT.unchanged(&now, &base));
    }

    /// A file modified or changed during the previous backup (or a clock
    /// tick before it started) is racy; one older is not, nor is any
    /// without a previous generation.
    #[test]
    fn files_changed_during_the_previous_backup_are_racy() {
        let started = 1_700_000_000_500_000_000i64;
        let from = Some(racy_from(started));
        let at = |ns: i64| {
            (
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) as u32,
            )
        };
        let mut e = base();
        for (mtime, ctime, is_racy) in [
            (started - 60_000_000_000, started - 60_000_000_000, false),
            (started - 21_000_000, started - 21_000_000, false),
            (started - 20_000_000, started - 60_000_000_000, true),
            (started - 60_000_000_000, started - 1, true),
            (started + 5_000_000_000, started + 5_000_000_000, true),
        ] {
            ((e.mtime, e.mtime_ns), (e.ctime, e.ctime_ns)) = (at(mtime), at(ctime));
            assert_eq!(racy(&e, from, DEFAULT), is_racy, "{mtime} {ctime}");
            assert!(!racy(&e, None, DEFAULT));
            // Under --ignore-ctime only the modification time tells.
            assert_eq!(racy(&e, from, NO_CTIME), mtime >= started - 20_000_000);
        }
        // Before 1970 too.
        assert_eq!(racy_from(-1), (-1, 979_999_999));
        // Whole-second times (a file system that stamps seconds, or two):
        // racy from two seconds before the start's second.
        let second = started.div_euclid(1_000_000_000);
        for (at_s, is_racy) in [(second, true), (second - 2, true), (second - 3, false)] {
            ((e.mtime, e.mtime_ns), (e.ctime, e.ctime_ns)) = ((at_s, 0), (at_s, 0));
            assert_eq!(racy(&e, from, DEFAULT), is_racy, "{at_s}");
        }
    }

    /// A file replaced by a rename is another inode; one rewritten in place
    /// with its mtime set back has another change time. Each setting drops
    /// its own sign, and only that one.
    #[test]
    fn inode_and_change_time_count_unless_ignored() {
        let base = base();
        let mut replaced = base.clone();
        replaced.ino += 1;
        let mut rewritten = base.clone();
        rewritten.ctime_ns += 1;
        let mut later = base.clone();
        later.ctime += 1;
        let mut both = replaced.clone();
        both.ctime += 1;
        for (now, changed_for) in [
            (&replaced, [true, false, true, false]),
            (&rewritten, [true, true, false, false]),
            (&later, [true, true, false, false]),
            (&both, [true, true, true, false]),
        ] {
            let rules = [DEFAULT, NO_INODE, NO_CTIME, NEITHER];
            for (rule, changed) in rules.into_iter().zip(changed_for) {
                assert_eq!(!rule.unchanged(now, &base), changed, "{rule:?}: {now:?}");
            }
        }
    }

    /// Under `--ignore-ctime`, a file found unchanged keeps the change time
    /// recorded with its content; otherwise it has its own (the same).
    #[test]
    fn an_ignored_change_time_is_not_recorded_with_old_content() {
        let before = base();
        let mut now = before.clone();
        (now.ino, now.ctime, now.ctime_ns) = (before.ino + 1, before.ctime + 5, 1);
        for rule in [NO_CTIME, NEITHER] {
            let mut recorded = now.clone();
            rule.keep_content_of(&mut recorded, &before);
            assert_eq!(
                (recorded.ctime, recorded.ctime_ns),
                (before.ctime, before.ctime_ns)
            );
            assert_eq!(recorded.ino, now.ino, "the inode is the file's");
            assert!(
                !DEFAULT.unchanged(&now, &recorded),
                "seen by a later backup"
            );
        }
        for rule in [DEFAULT, NO_INODE] {
            let mut recorded = now.clone();
            rule.keep_content_of(&mut recorded, &before);
            assert_eq!(recorded, now);
        }
    }

    /// An entry that recorded no inode number or change time (0) matches
    /// no real file: the file is read once, then recorded with its own.
    #[test]
    fn an_entry_without_inode_or_change_time_is_read_once() {
        let now = base();
        let mut recorded = now.clone();
        (recorded.ino, recorded.ctime, recorded.ctime_ns) = (0, 0, 0);
        assert!(!DEFAULT.unchanged(&now, &recorded));
        assert!(!NO_INODE.unchanged(&now, &recorded));
        assert!(!NO_CTIME.unchanged(&now, &recorded));
        assert!(NEITHER.unchanged(&now, &recorded));
    }

    /// Under `--ignore-inode`, a folder whose change time moved on while
    /// its modification time did not (a rename, a move) may hold other
    /// files than its path did; one whose entries changed (both times set
    /// to one instant) does not; nothing tells under `--ignore-ctime`, and
    /// by default the inode numbers tell.
    #[test]
    fn a_folder_renamed_into_a_path_is_taken_for_moved() {
        let before = Entry {
            kind: EntryKind::Dir,
            ..base()
        };
        let renamed = Entry {
            ctime: 30,
            ctime_ns: 1,
            ..before.clone()
        };
        let entries_changed = Entry {
            mtime: 30,
            mtime_ns: 1,
            ..renamed.clone()
        };
        assert!(maybe_moved(&renamed, Some(&before), NO_INODE));
        assert!(!maybe_moved(&entries_changed, Some(&before), NO_INODE));
        assert!(!maybe_moved(&before, Some(&before), NO_INODE));
        assert!(!maybe_moved(&renamed, None, NO_INODE));
        for rule in [DEFAULT, NO_CTIME, NEITHER] {
            assert!(!maybe_moved(&renamed, Some(&before), rule), "{rule:?}");
        }
    }
}
