//! Running real `obnam` processes at the same time, with the faults of the
//! schedule: `kill -9` or `SIGINT` after a delay, the crash limit, and
//! injected storage faults.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one process may run: a run that takes longer has hung
/// (a lock never released, a wait without end) and fails the schedule.
pub const HANG_AFTER: Duration = Duration::from_secs(240);

/// A fault to put into one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    /// `kill -9` this long after the start.
    Kill {
        after_ms: u64,
    },
    /// `SIGINT` this long after the start.
    Interrupt {
        after_ms: u64,
    },
    /// `--crash-limit N`: end abruptly before the write after the N-th.
    CrashLimit(u64),
    /// `--testing-storage-faults SPEC`.
    Storage(String),
}

impl Fault {
    /// The arguments that bring the fault in (none for signals).
    pub fn args(&self) -> Vec<String> {
        match self {
            Fault::CrashLimit(n) => vec!["--crash-limit".into(), n.to_string()],
            Fault::Storage(spec) => vec!["--testing-storage-faults".into(), spec.clone()],
            _ => Vec::new(),
        }
    }

    fn signal(&self) -> Option<(u64, &'static str)> {
        match self {
            Fault::Kill { after_ms } => Some((*after_ms, "KILL")),
            Fault::Interrupt { after_ms } => Some((*after_ms, "INT")),
            _ => None,
        }
    }
}

/// How one process ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether the harness sent its signal before the process ended.
    pub signalled: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// A one-line summary for the schedule's log.
    pub fn summary(&self) -> String {
        let end = match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "?".into(),
        };
        let last_err = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("ERROR"))
            .unwrap_or("");
        format!("{end} in {:.2}s {last_err}", self.elapsed.as_secs_f64())
    }
}

/// Start every command at once, send each its signal when due, and wait
/// for all; panics (with the commands' output) if one hangs.
pub fn run_together(jobs: Vec<(Command, Fault)>) -> Vec<Outcome> {
    let started = Instant::now();
    struct Running {
        child: Child,
        out: thread::JoinHandle<String>,
        err: thread::JoinHandle<String>,
        signal: Option<(u64, &'static str)>,
        signalled: bool,
        ended: Option<(std::process::ExitStatus, Duration)>,
    }
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let mut running: Vec<Running> = jobs
        .into_iter()
        .map(|(mut cmd, fault)| {
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start obnam");
            let out = collect(Box::new(child.stdout.take().expect("stdout")));
            let err = collect(Box::new(child.stderr.take().expect("stderr")));
            Running {
                child,
                out,
                err,
                signal: fault.signal(),
                signalled: false,
                ended: None,
            }
        })
        .collect();
    loop {
        let now = started.elapsed();
        let mut all_ended = true;
        for r in running.iter_mut().filter(|r| r.ended.is_none()) {
            if let Some(status) = r.child.try_wait().expect("wait") {
                r.ended = Some((status, now));
                continue;
            }
            all_ended = false;
            if let Some((after, sig)) = r.signal {
                if !r.signalled && now >= Duration::from_millis(after) {
                    let _ = Command::new("kill")
                        .arg(format!("-{sig}"))
                        .arg(r.child.id().to_string())
                        .status();
                    r.signalled = true;
                }
            }
            if now > HANG_AFTER {
                let _ = r.child.kill();
                let _ = r.child.wait();
                panic!("an obnam process was still running after {HANG_AFTER:?} (hung)");
            }
        }
        if all_ended {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    running
        .into_iter()
        .map(|r| {
            use std::os::unix::process::ExitStatusExt;
            let (status, elapsed) = r.ended.expect("ended");
            Outcome {
                code: status.code(),
                signal: status.signal(),
                signalled: r.signalled,
                stdout: r.out.join().expect("stdout reader"),
                stderr: r.err.join().expect("stderr reader"),
                elapsed,
            }
        })
        .collect()
}
