//! The attributes `stat` shows for what a mount holds: a generation's
//! entries as they were backed up, and the directories and symlink the
//! mount makes itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use plugin_api::{Entry, EntryKind};

/// The block size `stat` reports.
const BLOCK_SIZE: u32 = 4096;

/// A point in time from seconds and nanoseconds since the epoch; either
/// side of 1970.
pub fn time(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

/// A point in time from nanoseconds since the epoch.
pub fn time_ns(ns: i64) -> SystemTime {
    time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// The FUSE file type of an entry kind.
pub fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// A device number as FUSE carries it (32 bits: the kernel's "new"
/// encoding, 12 bits of major and 20 of minor) from the 64-bit one that
/// `stat` gave at backup time (glibc's encoding).
pub fn fuse_rdev(rdev: u64) -> u32 {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

/// The attributes of an entry of a generation, as backed up.
pub fn entry_attr(ino: u64, entry: &Entry) -> FileAttr {
    let mtime = time(entry.mtime, entry.mtime_ns);
    let size = match entry.kind {
        // `lstat` of a symlink gives the length of its target.
        EntryKind::Symlink => entry.target.len() as u64,
        _ => entry.size,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        // Access times are not backed up: the last change is the best guess.
        atime: mtime,
        mtime,
        ctime: time(entry.ctime, entry.ctime_ns),
        crtime: mtime,
        kind: file_type(entry.kind),
        perm: (entry.mode & 0o7777) as u16,
        nlink: u32::try_from(entry.nlink.max(1)).unwrap_or(u32::MAX),
        uid: entry.uid,
        gid: entry.gid,
        rdev: fuse_rdev(entry.rdev),
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// The attributes of a directory the mount makes (its top, and each
/// generation's top): read-only, owned by whoever mounted.
pub fn made_dir_attr(ino: u64, mtime: SystemTime, owner: (u32, u32), nlink: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: FileType::Directory,
        perm: 0o555,
        nlink,
        uid: owner.0,
        gid: owner.1,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// The attributes of the `latest` symlink.
pub fn latest_attr(ino: u64, target_len: usize, mtime: SystemTime, owner: (u32, u32)) -> FileAttr {
    FileAttr {
        size: target_len as u64,
        kind: FileType::Symlink,
        perm: 0o777,
        nlink: 1,
        ..made_dir_attr(ino, mtime, owner, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's `makedev`.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xffff_f000) << 32)
            | ((major & 0x0000_0fff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0x0000_00ff)
    }

    /// The kernel's `new_decode_dev`.
    fn decode(dev: u32) -> (u32, u32) {
        ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
    }

    #[test]
    fn device_numbers_keep_major_and_minor() {
        for (major, minor) in [(1, 3), (7, 200), (8, 17), (259, 65_536), (4095, 1_048_575)] {
            assert_eq!(
                decode(fuse_rdev(makedev(major, minor))),
                (major as u32, minor as u32),
                "{major}:{minor}"
            );
        }
        assert_eq!(fuse_rdev(0), 0);
    }

    #[test]
    fn times_before_1970() {
        let t = time(-2, 500_000_000);
        assert_eq!(
            UNIX_EPOCH.duration_since(t).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(time_ns(-1), UNIX_EPOCH - Duration::from_nanos(1));
    }

    #[test]
    fn entries_show_as_backed_up() {
        let entry = Entry {
            kind: EntryKind::File,
            mode: 0o104755,
            uid: 7,
            gid: 8,
            size: 1000,
            mtime: 5,
            mtime_ns: 6,
            ctime: 9,
            nlink: 3,
            ..Entry::default()
        };
        let attr = entry_attr(42, &entry);
        assert_eq!(attr.ino, INodeNo(42));
        assert_eq!(attr.perm, 0o4755);
        assert_eq!((attr.uid, attr.gid, attr.nlink, attr.size), (7, 8, 3, 1000));
        assert_eq!(attr.mtime, time(5, 6));
        assert_eq!(attr.ctime, time(9, 0));
        assert_eq!(attr.kind, FileType::RegularFile);
        let link = Entry {
            kind: EntryKind::Symlink,
            target: b"abc".to_vec(),
            ..Entry::default()
        };
        assert_eq!(entry_attr(1, &link).size, 3);
    }
}
