//! Whether anyone but root and the user running obnam could have put a
//! plugin where it is, checked as OpenSSH's StrictModes checks a user's
//! key files.
//!
//! A plugin runs as the user running obnam, so whoever can replace the
//! file can run code as that user. Checking the file alone is not enough:
//! whoever can write a folder on its way from `/` can rename the file or a
//! folder below it away and put their own in its place. So the real path
//! (symlinks resolved) is walked from `/`, opening each folder relative to
//! the one above it without following symlinks, and each folder and the
//! file itself must be owned by root or by the user running obnam and not
//! be writable by group or others.
//!
//! One exception, where OpenSSH makes none: a folder *above* the one the
//! plugin is in may be writable by others if it has the sticky bit (like
//! `/tmp`). The sticky bit stops others renaming or removing entries they
//! do not own, and every entry below it on the path is checked in turn, so
//! the path cannot be changed under obnam. The folder the plugin file is
//! in gets no such exception: there others could add files, and every file
//! of a plugin folder is loaded.
//!
//! The file is opened once and the open file is what is checked, handed to
//! the ELF check and loaded, so it cannot be swapped between check and
//! load.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

/// Check the folder at `path` and every folder above its real path.
pub fn check_folder(path: &Path) -> Result<(), String> {
    let real = real_path(path)?;
    let names = PathNames::of(path, &real);
    walk(&real, &names)?;
    Ok(())
}

/// Open the plugin file at `path` after checking it and every folder on its
/// real path. The returned file is the one that was checked.
pub fn open_plugin(path: &Path) -> Result<File, String> {
    let real = real_path(path)?;
    let names = PathNames::of(path, &real);
    let (Some(parent), Some(file_name)) = (real.parent(), real.file_name()) else {
        return Err(format!("cannot load {}: not a file", real.display()));
    };
    let folder = walk(parent, &names)?;
    // O_NOFOLLOW: a symlink put here since the path was resolved is refused
    // rather than followed past the checks. O_NONBLOCK: a FIFO put here does
    // not block the open (it is then refused as not a regular file).
    let fd = rustix::fs::openat(
        &folder,
        file_name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", names.file(&real)))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("cannot check it: {e}"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(format!("{} is not a regular file", names.file(&real)));
    }
    check_owner_and_mode(&stat, false, &real)
        .map_err(|why| format!("{} {why}", names.file(&real)))?;
    Ok(File::from(fd))
}

fn real_path(path: &Path) -> Result<PathBuf, String> {
    path.canonicalize()
        .map_err(|e| format!("cannot find its real path: {e}"))
}

/// Open each folder of `real` (an absolute path without symlinks) from `/`
/// down, checking each; return the last one, open. `real` itself is the
/// folder plugins are taken from, so it gets no sticky-bit exception.
fn walk(real: &Path, names: &PathNames) -> Result<OwnedFd, String> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut here = PathBuf::from("/");
    let mut fd = rustix::fs::open("/", flags, Mode::empty())
        .map_err(|e| format!("cannot open folder /: {e}"))?;
    let components: Vec<Component> = real.components().collect();
    for (i, component) in components.iter().enumerate() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                here.push(name);
                fd = rustix::fs::openat(&fd, *name, flags | OFlags::NOFOLLOW, Mode::empty())
                    .map_err(|e| format!("cannot open {}: {e}", names.folder(&here)))?;
            }
            // A canonical path has neither; refuse rather than guess.
            other => {
                return Err(format!(
                    "unexpected part {:?} in its real path {}",
                    other.as_os_str(),
                    real.display()
                ))
            }
        }
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| format!("cannot check {}: {e}", names.folder(&here)))?;
        let last = i + 1 == components.len();
        check_owner_and_mode(&stat, !last, &here)
            .map_err(|why| format!("{} {why}", names.folder(&here)))?;
    }
    Ok(fd)
}

/// Refuse what is writable by group or others or owned by someone other
/// than root and the user running obnam. `sticky_ok`: a sticky folder
/// writable by others is allowed (see the module comment for why). `path`
/// (of what `stat` describes) is for the words only.
fn check_owner_and_mode(stat: &Stat, sticky_ok: bool, path: &Path) -> Result<(), String> {
    let mode = stat.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_ok && sticky) {
        return Err(if mode & 0o002 != 0 {
            format!("is writable by everyone (mode {mode:04o}); make it writable by its owner only")
        } else if plugin_api::private_paths::has_acl(path) {
            // The group bits are the ACL's mask: a user or group it names
            // may write.
            format!(
                "is writable by users its ACL names (mode {mode:04o}, by an ACL); remove the \
                 ACL's write entries (setfacl -b) or make it writable by its owner only"
            )
        } else {
            format!(
                "is writable by its group (mode {mode:04o}); make it writable by its owner only"
            )
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != 0 && stat.st_uid != me {
        return Err(format!(
            "is owned by {}, neither root nor the user running obnam",
            plugin_api::private_paths::user_name(stat.st_uid)
        ));
    }
    Ok(())
}

/// How messages name what they refuse: "it" for the path as given, else
/// the real path of a folder on the way or of the file a symlink leads to.
struct PathNames {
    /// The real path is the given path (no symlinks were resolved).
    same: bool,
    real: PathBuf,
}

impl PathNames {
    fn of(given: &Path, real: &Path) -> Self {
        let same = std::path::absolute(given).is_ok_and(|abs| abs == real);
        PathNames {
            same,
            real: real.to_path_buf(),
        }
    }

    fn folder(&self, folder: &Path) -> String {
        if folder == self.real {
            self.final_name("folder", folder)
        } else {
            format!("folder {}", folder.display())
        }
    }

    fn file(&self, file: &Path) -> String {
        self.final_name("file", file)
    }

    fn final_name(&self, kind: &str, path: &Path) -> String {
        if self.same {
            "it".to_string()
        } else {
            format!("its real {kind} {}", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private folder: tempfile makes it 0700, under the sticky /tmp,
    /// which is allowed above a plugin folder.
    fn private_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn private_file_in_private_folders_opens() {
        let dir = private_dir();
        let file = dir.path().join("p.so");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        assert!(open_plugin(&file).is_ok());
        assert!(check_folder(dir.path()).is_ok());
    }

    #[test]
    fn sticky_folder_is_allowed_above_but_not_as_the_plugin_folder() {
        let dir = private_dir();
        let sticky = dir.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        let below = sticky.join("below");
        std::fs::create_dir(&below).unwrap();
        chmod(&below, 0o755);
        assert!(check_folder(&below).is_ok());
        let why = check_folder(&sticky).unwrap_err();
        assert_eq!(
            why,
            "it is writable by everyone (mode 1777); make it writable by its owner only"
        );
        let file = sticky.join("p.so");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        let why = open_plugin(&file).unwrap_err();
        assert!(
            why.starts_with(&format!("folder {} ", sticky.display())),
            "{why}"
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = private_dir();
        let fifo = dir.path().join("p.so");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        assert_eq!(open_plugin(&fifo).unwrap_err(), "it is not a regular file");
    }
}
