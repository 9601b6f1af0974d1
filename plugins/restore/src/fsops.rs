//! File-system operations that cannot be tricked into writing outside the
//! restore target.
//!
//! Everything restore creates is created relative to an open directory
//! (`mkdirat`, `openat`, `symlinkat`, `mknodat`, `linkat`), by one checked
//! name at a time (see [`crate::names::check_name`]), and nothing is ever
//! reached through a symbolic link: directories are opened with
//! `O_NOFOLLOW | O_DIRECTORY`, files are created with `O_CREAT | O_EXCL |
//! O_NOFOLLOW`, and a path below the target is opened component by
//! component in the same way ([`open_dir_path`]). So even a repository
//! that lists a symlink and then an entry "below" it, or two entries of one
//! name, can at worst make a creation fail with an error.
//!
//! Directories are made with mode 0700 and given their recorded mode only
//! at the end of the restore, so no other (non-root) user can slip into the
//! tree while it is being built.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use plugin_api::EntryKind;

/// Open the directory `name` in `parent`, never following a symlink.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Make the directory `name` in `parent` (mode 0700, failing if anything of
/// that name exists) and open it.
pub fn make_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
    open_dir_at(parent, name)
}

/// Open the directory at `parts` below `root`, one component at a time,
/// never following a symlink.
pub fn open_dir_path(root: BorrowedFd<'_>, parts: &[Vec<u8>]) -> io::Result<OwnedFd> {
    let mut fd = open_dir_at(root, b".")?;
    for part in parts {
        fd = open_dir_at(fd.as_fd(), part)?;
    }
    Ok(fd)
}

/// Create the regular file `name` in `parent` for writing (mode 0600; fails
/// if anything of that name exists, a symlink included).
pub fn create_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Remove the file `name` from `parent` (a failed restore of it).
pub fn remove_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?)
}

/// Make the symlink `name` in `parent` pointing at `target`.
pub fn make_symlink(parent: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, parent, name)?)
}

/// Make a FIFO, socket or device node `name` in `parent` (mode 0600 until
/// its metadata is set).
pub fn make_node(
    parent: BorrowedFd<'_>,
    name: &[u8],
    kind: EntryKind,
    rdev: u64,
) -> io::Result<()> {
    let (file_type, dev) = match kind {
        EntryKind::Fifo => (FileType::Fifo, 0),
        EntryKind::Socket => (FileType::Socket, 0),
        EntryKind::CharDevice => (FileType::CharacterDevice, rdev),
        EntryKind::BlockDevice => (FileType::BlockDevice, rdev),
        _ => return Err(io::Error::other("not a special file")),
    };
    Ok(rustix::fs::mknodat(
        parent,
        name,
        file_type,
        Mode::from_raw_mode(0o600),
        dev,
    )?)
}

/// Open the node `name` in `parent` as a path only (`O_PATH`, never
/// following a symlink), to change its metadata through the descriptor.
pub fn open_node(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Make `new_name` in `new_parent` a hard link of `old_name` in
/// `old_parent` (a symlink there is linked itself, never followed).
pub fn hard_link(
    old_parent: BorrowedFd<'_>,
    old_name: &[u8],
    new_parent: BorrowedFd<'_>,
    new_name: &[u8],
) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        old_parent,
        old_name,
        new_parent,
        new_name,
        AtFlags::empty(),
    )?)
}

/// Whether `dir` has no entries other than `.` and `..`.
pub fn dir_is_empty(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    for entry in &mut entries {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root(dir: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn directories_are_private_until_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let r = root(tmp.path());
        let d = make_dir(r.as_fd(), b"d").unwrap();
        make_dir(d.as_fd(), b"e").unwrap();
        let mode = std::fs::metadata(tmp.path().join("d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(open_dir_path(r.as_fd(), &[b"d".to_vec(), b"e".to_vec()]).is_ok());
        assert!(!dir_is_empty(r.as_fd()).unwrap());
        assert!(dir_is_empty(d.as_fd()).is_ok_and(|e| !e));
    }

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root(tmp.path());
        make_symlink(
            r.as_fd(),
            b"link",
            outside.path().as_os_str().as_encoded_bytes(),
        )
        .unwrap();
        // Neither as a directory on the way, nor as a file to create.
        assert!(open_dir_at(r.as_fd(), b"link").is_err());
        assert!(open_dir_path(r.as_fd(), &[b"link".to_vec()]).is_err());
        assert!(make_dir(r.as_fd(), b"link").is_err());
        assert!(create_file(r.as_fd(), b"link").is_err());
        assert!(make_node(r.as_fd(), b"link", EntryKind::Fifo, 0).is_err());
        assert!(dir_is_empty(root(outside.path()).as_fd()).unwrap());
    }

    #[test]
    fn existing_files_are_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let r = root(tmp.path());
        drop(create_file(r.as_fd(), b"f").unwrap());
        assert!(create_file(r.as_fd(), b"f").is_err());
        hard_link(r.as_fd(), b"f", r.as_fd(), b"g").unwrap();
        assert!(hard_link(r.as_fd(), b"f", r.as_fd(), b"g").is_err());
        remove_file(r.as_fd(), b"f").unwrap();
        assert!(tmp.path().join("g").exists());
    }
}
