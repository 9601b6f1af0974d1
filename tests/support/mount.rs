//! Running `obnam mount` in tests: whether FUSE can be used here, a guard
//! that always unmounts (even when an assertion fails), and what the
//! mount table says.
//!
//! Where FUSE cannot be used (no `/dev/fuse`, no `fusermount3`), the mount
//! tests say they were skipped and why, and pass; with
//! `OBNAM_TEST_REQUIRE_FUSE=1` (set by `.ci/run`) they fail instead, so
//! that CI cannot skip them by accident.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{processes_mentioning, Run};

/// Why FUSE cannot be used here, if it cannot.
pub fn fuse_unavailable() -> Option<String> {
    match std::fs::metadata("/dev/fuse") {
        Ok(meta) if meta.file_type().is_char_device() => {}
        Ok(_) => return Some("/dev/fuse is not a device".into()),
        Err(e) => return Some(format!("/dev/fuse: {e}")),
    }
    let found = Command::new("fusermount3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        return Some("fusermount3 is not installed (Debian package fuse3)".into());
    }
    None
}

/// Whether a mount test can run: if not, it says why (or fails, under
/// `OBNAM_TEST_REQUIRE_FUSE=1`) and the caller returns.
#[track_caller]
pub fn fuse_or_skip(test: &str) -> bool {
    let Some(why) = fuse_unavailable() else {
        return true;
    };
    if std::env::var("OBNAM_TEST_REQUIRE_FUSE").as_deref() == Ok("1") {
        panic!("{test}: FUSE is required (OBNAM_TEST_REQUIRE_FUSE=1) but {why}");
    }
    eprintln!("{test}: skipped: FUSE is not available: {why}");
    false
}

/// Undo the octal escapes of `/proc/self/mountinfo`.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The type of what is mounted at `point`, if anything.
pub fn mounted_type(point: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let point = point.as_os_str().as_bytes();
    let mut found = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4).map(|f| unescape(f)).as_deref() == Some(point) {
            let dash = fields.iter().position(|f| *f == "-")?;
            found = fields.get(dash + 1).map(|s| s.to_string());
        }
    }
    found
}

/// Wait up to `limit` for `point` to have nothing mounted on it.
pub fn wait_unmounted(point: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if mounted_type(point).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    mounted_type(point).is_none()
}

/// Wait up to `limit` for no process to mention `text` on its command
/// line; the ones still there after that.
pub fn wait_no_process(text: &str, limit: Duration) -> Vec<(u32, String)> {
    let start = Instant::now();
    loop {
        let left = processes_mentioning(text);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `obnam mount`. Dropping it unmounts and ends the process,
/// whatever state the test left it in.
pub struct Mounted {
    child: Option<Child>,
    point: PathBuf,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }))
}

impl Mounted {
    /// Start `cmd` (an `obnam ... mount POINT`) and wait until the mount
    /// is there. Panics, with what obnam said, if it ends first.
    #[track_caller]
    pub fn start(cmd: &mut Command, point: &Path) -> Mounted {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start obnam mount");
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let mut mounted = Mounted {
            child: Some(child),
            point: point.to_path_buf(),
            stdout,
            stderr,
        };
        let start = Instant::now();
        loop {
            if mounted_type(point).as_deref() == Some("fuse.obnam") {
                return mounted;
            }
            let child = mounted.child.as_mut().expect("child");
            if let Ok(Some(_)) = child.try_wait() {
                let run = mounted.finish();
                panic!("obnam mount ended before mounting:\n{run:#?}");
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("obnam mount did not mount {} in 60 s", point.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The obnam process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Wait (up to a minute) for obnam to end, and what it said.
    fn finish(&mut self) -> Run {
        let Some(mut child) = self.child.take() else {
            return Run {
                code: -1,
                stdout: String::new(),
                stderr: String::new(),
            };
        };
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let stdout = text(self.stdout.take());
        let mut stderr = text(self.stderr.take());
        if status.is_none() {
            stderr.push_str("\n(obnam was still running a minute later: killed)");
        }
        Run {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout,
            stderr,
        }
    }

    /// Unmount with `fusermount3 -u`, and what obnam said as it ended.
    pub fn unmount(&mut self) -> Run {
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.point)
            .output()
            .expect("run fusermount3");
        assert!(
            out.status.success(),
            "fusermount3 -u failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.finish()
    }

    /// Send obnam a signal (`INT`, `TERM`), and what it said as it ended.
    pub fn signal(&mut self, name: &str) -> Run {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} failed");
        self.finish()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.is_some() || mounted_type(&self.point).is_some() {
            // Lazily: a reader the failed test left behind must not keep
            // the mount, and the test's folder, from going away.
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.point)
                .stderr(Stdio::null())
                .status();
            let _ = self.finish();
        }
    }
}
