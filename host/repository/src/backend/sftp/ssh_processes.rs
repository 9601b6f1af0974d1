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
//! On systems other than Linux both functions do nothing.

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

    pub(super) fn end_leftovers() {
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
