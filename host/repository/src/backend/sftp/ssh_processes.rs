//! Making sure no ssh process outlives the run that started it.
//!
//! Over SFTP every connection is an `ssh -M -f` master that the SSH
//! library starts with `ControlPersist=yes`: it forks into the background
//! and lives until someone tells it to exit through its control socket.
//! The library does so when a connection is closed in good order. It
//! cannot when the connection attempt itself is abandoned, which is what a
//! timeout does: the attempt's control folder is deleted while ssh is
//! still logging in, and the master it then forks has no socket anyone can
//! reach. It would run, and hold a session on the server, until the server
//! or the network drops it.
//!
//! So over SFTP the obnam process makes itself the *child subreaper* of
//! everything it starts (Linux `PR_SET_CHILD_SUBREAPER`): a master that
//! forks away is re-parented to obnam rather than to init. When the
//! storage is closed, [`end_leftovers`] ends every ssh process that is
//! still obnam's child, and collects the exit status of those that are
//! done. A run killed with SIGKILL cannot do this; that case is documented
//! in the user guide.
//!
//! A run killed with SIGKILL cannot, and its masters, re-parented to
//! init, would hold their sessions on the server for ever (a nightly job
//! that `timeout -s KILL` or the OOM killer ends left more each night).
//! So every ssh process an obnam run starts carries, in its environment,
//! which run started it ([`OWNER_VARIABLE`], set by [`mark_owner`] before
//! any thread starts, and inherited); the next run over SFTP ends those of
//! the user's ssh processes (of the same home and state folders) whose
//! run is gone ([`end_those_of_runs_gone`]), and removes their control
//! folders. Another program's ssh
//! processes carry no such mark, and a running obnam's are its own:
//! neither is touched.
//!
//! On systems other than Linux these functions do nothing.

/// The environment variable that names the obnam run (its pid, when it
/// started, and the PID namespace the pid counts in: `PID.TICKS.NS`) that
/// started an ssh process.
pub const OWNER_VARIABLE: &str = "OBNAM_SSH_OWNER";

/// Mark this process's environment, so that the ssh processes it starts
/// say whose they are. Call it before any thread starts: the environment
/// is the process's, and changing it beside a thread that reads it is not
/// safe.
pub fn mark_owner() {
    #[cfg(target_os = "linux")]
    let ns = crate::lock::Identity::current().pid_ns;
    if let (Some(start), Some(ns)) = (crate::lock::process_start(std::process::id()), ns) {
        std::env::set_var(
            OWNER_VARIABLE,
            format!("{}.{start}.{ns}", std::process::id()),
        );
    }
}

/// End the ssh processes of this user that an obnam run gone since
/// started (see the module's docs); how many were ended.
pub(super) fn end_those_of_runs_gone() -> usize {
    #[cfg(target_os = "linux")]
    return linux::end_those_of_runs_gone();
    #[cfg(not(target_os = "linux"))]
    0
}

/// Adopt the processes that our children leave behind when they fork
/// into the background. Best effort: a failure only means that an
/// abandoned ssh master is not cleaned up.
pub(super) fn adopt_orphans() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        tracing::debug!("cannot become the subreaper of ssh processes: {e}");
    }
}

/// End every ssh process that is still a child of this process (closed
/// connections' masters have exited already; what is left was abandoned),
/// and reap those that have exited.
pub(super) fn end_leftovers() {
    #[cfg(target_os = "linux")]
    linux::end_leftovers();
}

/// Ask every ssh process that is a child of this process to end, without
/// waiting for any: for a process that ends at once (a second Ctrl-C),
/// whose connections' masters would otherwise run on, re-parented to
/// init, each holding a session on the server.
pub(super) fn signal_leftovers() {
    #[cfg(target_os = "linux")]
    linux::signal_leftovers();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::time::{Duration, Instant};

    use rustix::process::{getpid, kill_process, waitpid, Pid, Signal, WaitOptions};

    /// How long an ssh process gets to exit after SIGTERM before SIGKILL.
    const GRACE: Duration = Duration::from_secs(2);

    /// The thread removing the control folders of ssh processes ended
    /// by [`end_those_of_runs_gone`], if it may still run: waited for
    /// when the storage is closed, so that a short run leaves none.
    static CLEANING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> =
        std::sync::Mutex::new(None);

    pub(super) fn end_leftovers() {
        let cleaning = CLEANING.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(cleaning) = cleaning {
            let _ = cleaning.join();
        }
        // Scanned again until none is left: an ssh that forks its master
        // while being ended leaves the master to be re-parented to obnam
        // only after the scan that found its parent.
        let start = Instant::now();
        let mut signalled: Vec<Pid> = Vec::new();
        loop {
            let children = ssh_children();
            if children.is_empty() {
                return;
            }
            for (pid, zombie) in children {
                if zombie {
                    reap(pid);
                } else if !signalled.contains(&pid) {
                    tracing::debug!(
                        "ending ssh process {} left by a connection",
                        pid.as_raw_nonzero()
                    );
                    let _ = kill_process(pid, Signal::TERM);
                    signalled.push(pid);
                } else if start.elapsed() > GRACE {
                    let _ = kill_process(pid, Signal::KILL);
                    reap(pid);
                } else {
                    reap(pid);
                }
            }
            if start.elapsed() > GRACE * 2 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(super) fn signal_leftovers() {
        // Scanned again for a little while: an ssh logging in forks its
        // master, which is re-parented to this process only once the
        // ssh that forked it has ended.
        // Done once two scans in a row find none alive (a connection
        // being made meanwhile starts another), or after two seconds.
        // One still there at the next scan, told once already, is killed
        // (it had its chance; the process is ending now).
        let start = Instant::now();
        let mut quiet = 0;
        let mut signalled: Vec<Pid> = Vec::new();
        while quiet < 3 && start.elapsed() < Duration::from_secs(3) {
            quiet += 1;
            for (pid, zombie) in ssh_children() {
                if zombie {
                    reap(pid);
                } else if signalled.contains(&pid) {
                    quiet = 0;
                    let _ = kill_process(pid, Signal::KILL);
                    reap(pid);
                } else {
                    quiet = 0;
                    let _ = kill_process(pid, Signal::TERM);
                    signalled.push(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub(super) fn end_those_of_runs_gone() -> usize {
        let me = std::process::id();
        let uid = rustix::process::geteuid().as_raw();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut ended = 0;
        let mut ending = Vec::new();
        for entry in entries.flatten() {
            let Some(raw) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if parse_stat(&stat).is_none_or(|(name, _, _)| name != "ssh") {
                continue;
            }
            let Some((pid, start)) = owner_of(&entry.path()) else {
                continue;
            };
            // A run killed a moment ago may still be a zombie, its
            // parent not having collected it yet: it runs no more.
            let runs = live_start(pid) == Some(start);
            if pid == me || runs {
                continue;
            }
            if let (Some(pid), Some(started)) = (Pid::from_raw(raw), live_start(raw as u32)) {
                let folder = control_folder(&entry.path());
                if kill_process(pid, Signal::TERM).is_ok() {
                    ended += 1;
                    ending.push(Ending {
                        pid,
                        started,
                        folder,
                    });
                }
            }
        }
        if !ending.is_empty() {
            // A master takes a second or two to end (it closes its
            // session first): the run does not wait for that.
            let cleaning = std::thread::spawn(move || remove_control_folders(ending));
            *CLEANING.lock().unwrap_or_else(|e| e.into_inner()) = Some(cleaning);
        }
        ended
    }

    /// An ssh process told to end, and the control folder it used.
    struct Ending {
        pid: Pid,
        started: u64,
        folder: Option<std::path::PathBuf>,
    }

    impl Ending {
        fn running(&self) -> bool {
            live_start(self.pid.as_raw_nonzero().get() as u32) == Some(self.started)
        }
    }

    /// When process `pid` started, unless it has ended (a zombie has).
    fn live_start(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, state, _) = parse_stat(&stat)?;
        if matches!(state, 'Z' | 'X') {
            return None;
        }
        crate::lock::process_start(pid)
    }

    /// The folder of the control socket an ssh master was started with
    /// (`-S FOLDER/master`), if it is one the SSH library made for a
    /// connection (`.ssh-connection*`): it holds the socket and the
    /// master's log, and nobody else removes it once the run that made
    /// it was killed.
    fn control_folder(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let mut args = cmdline.split(|&b| b == 0);
        args.by_ref().find(|arg| *arg == b"-S")?;
        let socket = std::path::Path::new(std::ffi::OsStr::from_bytes(args.next()?));
        let folder = socket.parent()?;
        let made_for_a_connection = folder
            .file_name()?
            .as_bytes()
            .starts_with(b".ssh-connection");
        (socket.is_absolute() && made_for_a_connection).then(|| folder.to_path_buf())
    }

    /// Once the ssh processes told to end have exited (killed if they
    /// have not after [`GRACE`]), remove their control folders: the
    /// socket and the master's log. A folder holding anything else is
    /// left as it is.
    fn remove_control_folders(ending: Vec<Ending>) {
        let start = Instant::now();
        while ending.iter().any(Ending::running) {
            if start.elapsed() > GRACE {
                for process in ending.iter().filter(|p| p.running()) {
                    let _ = kill_process(process.pid, Signal::KILL);
                }
            }
            if start.elapsed() > GRACE * 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for process in ending {
            let Some(folder) = process.folder.as_ref().filter(|_| !process.running()) else {
                continue;
            };
            for name in ["master", "log"] {
                let _ = std::fs::remove_file(folder.join(name));
            }
            if let Err(e) = std::fs::remove_dir(folder) {
                tracing::debug!("cannot remove {}: {e}", folder.display());
            }
        }
    }

    /// The run (pid, start) that the process whose `/proc` folder is
    /// `dir` says started it ([`super::OWNER_VARIABLE`]), if that run had
    /// this run's home and state folders (where ssh keeps its control
    /// sockets: the same user's, as a user sees them) and counted its pid
    /// in this run's PID namespace: a run in a container (another
    /// namespace) has a pid this one cannot look up, and its live ssh
    /// processes were ended as a killed run's.
    fn owner_of(dir: &std::path::Path) -> Option<(u32, u64)> {
        let environ = std::fs::read(dir.join("environ")).ok()?;
        let var = |name: &str| {
            let prefix = format!("{name}=");
            environ
                .split(|&b| b == 0)
                .find_map(|var| var.strip_prefix(prefix.as_bytes()))
                .map(<[u8]>::to_vec)
        };
        // As paths: `/x/home/` is `/x/home`.
        use std::os::unix::ffi::OsStrExt;
        let same = |name: &str| {
            let theirs = var(name);
            let theirs = theirs
                .as_deref()
                .map(|v| std::path::Path::new(std::ffi::OsStr::from_bytes(v)));
            let ours = std::env::var_os(name);
            theirs == ours.as_deref().map(std::path::Path::new)
        };
        if !same("HOME") || !same("XDG_STATE_HOME") {
            return None;
        }
        let value = var(super::OWNER_VARIABLE)?;
        let mut fields = std::str::from_utf8(&value).ok()?.split('.');
        let pid = fields.next()?.parse().ok()?;
        let start = fields.next()?.parse().ok()?;
        let ns: u64 = fields.next()?.parse().ok()?;
        (Some(ns) == crate::lock::Identity::current().pid_ns).then_some((pid, start))
    }

    /// Collect `pid`'s exit status if it has exited: whether it has.
    fn reap(pid: Pid) -> bool {
        !matches!(waitpid(Some(pid), WaitOptions::NOHANG), Ok(None))
    }

    /// This process's children whose program is ssh, and whether each
    /// has exited already (a zombie waiting to be reaped).
    fn ssh_children() -> Vec<(Pid, bool)> {
        let me = getpid().as_raw_nonzero().get();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let raw: i32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let (name, state, parent) = parse_stat(&stat)?;
                if parent != me || name != "ssh" {
                    return None;
                }
                Some((Pid::from_raw(raw)?, state == 'Z'))
            })
            .collect()
    }

    /// The program name, state and parent pid from `/proc/PID/stat`:
    /// `PID (NAME) STATE PPID ...`, where NAME may itself hold spaces and
    /// parentheses, so it runs to the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<(&str, char, i32)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat.get(open + 1..close)?;
        let mut rest = stat.get(close + 1..)?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let parent = rest.next()?.parse().ok()?;
        Some((name, state, parent))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::parse_stat;

    #[test]
    fn stat_lines_are_read_even_with_awkward_program_names() {
        assert_eq!(
            parse_stat("4242 (ssh) S 17 4242 4242 0 -1 4194368 93 0"),
            Some(("ssh", 'S', 17))
        );
        assert_eq!(
            parse_stat("7 (a (b) c) Z 1 7 7 0"),
            Some(("a (b) c", 'Z', 1))
        );
        assert_eq!(parse_stat("7 (ssh"), None);
        assert_eq!(parse_stat("7 (ssh) S"), None);
    }
}
