//! Paths of the live file system as a user gives them on the command
//! line or in a config file, made absolute the one way every command
//! takes them: `obnam verify DIR` must find what `obnam backup DIR`
//! stored, from the same folder, and the exclude plugin must know the
//! log file that `--log` names by the path the walk reaches it by.
//! (Since 0.1.14.) And whether a folder is on a file system of the
//! kernel's state, not of files ([`kernel_view`], since 0.1.16). And
//! how to read a file or folder without leaving a trace in its access
//! time ([`open_unseen`], since 0.1.19).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `path` made absolute against `cwd`, with `.` and `..` resolved by
/// name, as the shell's `cd -L` does: symbolic links are not resolved (a
/// backup root that is a link is backed up as the link). `/..` is `/`.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `path` is written as naming a folder: with a trailing `/` or
/// `/.` (not `/` itself). Where it is a symbolic link, it names the
/// folder the link leads to, as it does for the shell.
pub fn names_folder(path: &OsStr) -> bool {
    let bytes = path.as_bytes();
    bytes.len() > 1 && (bytes.ends_with(b"/") || bytes.ends_with(b"/."))
}

/// Open `path` with `flags` and `O_NOATIME` where the kernel allows it
/// (the caller owns the file, or is root): reading it then leaves its
/// access time as it was. A backup reads every file it stores, and
/// without this each read would stamp the file (under `relatime`, once a
/// day or after a change) as though its user had opened it, which misleads
/// those who find unused files, mail readers that compare access with
/// modification times, and the next backup's record of the atime. Where
/// the kernel refuses `O_NOATIME` (`EPERM`: another user's file, readable
/// to the caller) the file is opened without it.
///
/// And it waits for a lease to be given up. Another program may hold the
/// file under a write lease (Samba's oplocks, an NFS server's
/// delegations): then an open with `O_NONBLOCK` (which a reader of a live
/// tree gives, so that a FIFO put in a file's place cannot block it)
/// fails with `EWOULDBLOCK` at once, having asked the holder to give the
/// lease up, which it must within the kernel's lease break time
/// (`/proc/sys/fs/lease-break-time`, after which the kernel breaks the
/// lease itself). So the open is tried again until then, and 5 s more;
/// then it fails saying so. (`EWOULDBLOCK` from an open means nothing
/// else for a regular file, and a FIFO or a device opens at once.)
/// (Since 0.1.19.)
pub fn open_unseen(
    path: &Path,
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut patience: Option<Duration> = None;
    loop {
        match open_once(path, flags) {
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let limit = *patience.get_or_insert_with(lease_break_time);
                if started.elapsed() >= limit {
                    return Err(std::io::Error::other(format!(
                        "another program holds it under a lease (Samba, an NFS server) and did \
                         not give it up in {} s",
                        limit.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            done => return Ok(done?),
        }
    }
}

/// One open of [`open_unseen`]: with `O_NOATIME`, or without it where the
/// kernel refuses it.
fn open_once(path: &Path, flags: rustix::fs::OFlags) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::open(path, flags, Mode::empty()),
        other => other,
    }
}

/// How long a lease's holder has to give it up: the kernel's lease break
/// time, and 5 s more.
fn lease_break_time() -> std::time::Duration {
    let seconds = std::fs::read_to_string("/proc/sys/fs/lease-break-time")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(45);
    std::time::Duration::from_secs(seconds.saturating_add(5))
}

/// The kind of file system of the open folder `fd`, if it is one whose
/// files are the kernel's state made visible, not stored data: proc,
/// sysfs, and the debugging, tracing, security, control-group, BPF,
/// configuration and FUSE-control views. (devpts, mqueue, pstore and
/// efivarfs are read like any other: their files are few and finite.)
/// One `fstatfs` of a folder already open: nothing is walked again.
/// `obnam backup` records such a folder without its contents, and
/// `obnam verify` does not list it. (Since 0.1.16.)
pub fn kernel_view(fd: impl std::os::fd::AsFd) -> Option<&'static str> {
    view_of(&rustix::fs::fstatfs(fd).ok()?)
}

/// [`kernel_view`] of what is at `path` (a file: bind-mounted from
/// `/proc`, or named on the command line). (Since 0.1.16.)
pub fn kernel_view_of(path: &Path) -> Option<&'static str> {
    view_of(&rustix::fs::statfs(path).ok()?)
}

/// The kind of a file system of the kernel's state, from its `statfs`.
fn view_of(st: &rustix::fs::StatFs) -> Option<&'static str> {
    // The magic numbers of linux/magic.h.
    const VIEWS: [(u64, &str); 11] = [
        (0x9fa0, "proc"),
        (0x6265_6572, "sysfs"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0x0027_e0eb, "cgroup"),
        (0x6367_7270, "cgroup2"),
        (0xcafe_4a11, "bpf"),
        (0x6265_6570, "configfs"),
        (0x6573_5543, "fusectl"),
        (0x4249_4e4d, "binfmt_misc"),
    ];
    // `f_type` is signed, and 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64 & 0xffff_ffff;
    VIEWS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|&(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_s_views_are_told_from_folders_of_files() {
        let kind = |path: &str| std::fs::File::open(path).ok().and_then(kernel_view);
        assert_eq!(kind("/proc"), Some("proc"));
        assert_eq!(kind("/sys"), Some("sysfs"));
        let dir = std::env::temp_dir();
        let listed = std::fs::File::open(&dir).unwrap();
        assert_eq!(kernel_view(&listed), None, "{}", dir.display());
    }

    #[test]
    fn paths_are_made_absolute_by_name() {
        let cwd = Path::new("/home/u/src");
        assert_eq!(
            absolute(cwd, Path::new("docs")),
            PathBuf::from("/home/u/src/docs")
        );
        assert_eq!(
            absolute(cwd, Path::new("../v/./x/")),
            PathBuf::from("/home/u/v/x")
        );
        assert_eq!(absolute(cwd, Path::new("/")), PathBuf::from("/"));
        assert_eq!(absolute(cwd, Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(absolute(cwd, Path::new("/a//b/")), PathBuf::from("/a/b"));
    }

    #[test]
    fn a_trailing_slash_or_slash_dot_names_a_folder() {
        for (path, folder) in [
            ("link/", true),
            ("link/.", true),
            ("/srv/link/", true),
            ("link", false),
            ("/", false),
            ("link/..", false),
            (".", false),
        ] {
            assert_eq!(names_folder(OsStr::new(path)), folder, "{path}");
        }
    }
}
