//! Helpers for the black-box tests: find the built `obnam` and its plugins,
//! give each test its own folder and home, run commands and check results.
//!
//! The tests run the real binary. Build everything first
//! (`cargo build --workspace`): `cargo test` alone does not build the
//! plugin libraries. `OBNAM_TEST_TARGET_DIR` overrides where the binary and
//! plugins are looked for (default: the folder above this test executable).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub mod awkward;
pub mod backend;
pub mod flaky_proxy;
pub mod handmade;
pub mod mount;

/// The cargo target profile folder holding `obnam` and the plugin libraries.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OBNAM_TEST_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The test executable is target/<profile>/deps/blackbox-HASH.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps")
        .to_path_buf();
    assert!(
        dir.join("obnam").is_file(),
        "{} has no obnam binary: run `cargo build --workspace` before `cargo test`",
        dir.display()
    );
    dir
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The built library of a test plugin (`alpha` → `libobnam_testplugin_alpha.so`).
pub fn test_plugin(name: &str) -> PathBuf {
    let path = target_dir().join(format!("libobnam_testplugin_{name}.so"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace`",
        path.display()
    );
    path
}

/// The result of running obnam.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The result of a finished process.
    pub fn from_output(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Assert exit code 0 and return self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{self:#?}");
        self
    }

    /// Assert a non-zero exit code and return self.
    #[track_caller]
    pub fn fails(self) -> Self {
        assert_ne!(self.code, 0, "expected failure:\n{self:#?}");
        self
    }

    /// Assert that standard error shows no Rust panic text.
    #[track_caller]
    pub fn no_rust_panic(self) -> Self {
        for needle in [
            "panicked at",
            "RUST_BACKTRACE",
            "stack backtrace",
            "Attempted to panic",
        ] {
            assert!(
                !self.stderr.contains(needle),
                "Rust panic text '{needle}' reached the user:\n{self:#?}"
            );
        }
        self
    }
}

/// One test's private world: a temporary folder with a home of its own.
pub struct TestEnv {
    dir: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    /// End the SSH connection processes that obnam runs of this world left
    /// behind: those of runs killed or crashed on purpose (a run that ends
    /// normally ends its own, which a test checks). Left alone they would
    /// outlive the tests, one set per such run.
    fn drop(&mut self) {
        let marker = self.home().join(".local/state/.ssh-connection");
        for (pid, _) in processes_mentioning(&marker.to_string_lossy()) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// The processes whose command line mentions `text`: their ids and
/// command lines (arguments joined by spaces).
pub fn processes_mentioning(text: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(text) {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

impl TestEnv {
    /// A new, empty world.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("obnam-test-")
            .tempdir()
            .expect("temporary folder");
        fs::create_dir(dir.path().join("home")).expect("home folder");
        TestEnv { dir }
    }

    /// The test's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The test's home folder (`HOME`).
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// A command running obnam in this world: its own `HOME`, no
    /// `XDG_CONFIG_HOME`, and no `OBNAM_*` variables from outside.
    pub fn obnam(&self) -> Command {
        let mut cmd = Command::new(target_dir().join("obnam"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OBNAM_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.home())
            .env_remove("XDG_CONFIG_HOME")
            // The index cache goes under the test's HOME too, and the
            // records of the repositories used.
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_STATE_HOME")
            .current_dir(self.path());
        cmd
    }

    /// Run obnam with `args`.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.obnam().args(args))
    }

    /// Run obnam with only the plugins in `dir` (no bundled ones) and `args`.
    pub fn run_with<I, S>(&self, dir: &Path, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self
            .obnam()
            .arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(dir)
            .args(args))
    }

    /// A fresh folder (under this world) holding copies of the named test plugins.
    pub fn plugin_dir(&self, folder: &str, plugins: &[&str]) -> PathBuf {
        let dir = self.path().join(folder);
        fs::create_dir_all(&dir).expect("plugin folder");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        for name in plugins {
            let src = test_plugin(name);
            let dest = dir.join(src.file_name().expect("file name"));
            fs::copy(&src, &dest).expect("copy plugin");
        }
        dir
    }

    /// Write a file (creating parent folders) and return its path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent folder");
        }
        fs::write(&path, contents).expect("write file");
        path
    }
}

/// `direct` run by `program` with `args` before it (`nohup`, `faketime
/// -f +1d`, ...): the same program, arguments, environment and folder.
pub fn wrapped(direct: &Command, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(direct.get_program())
        .args(direct.get_args());
    for (key, value) in direct.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = direct.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// `direct` run by a shell under `ulimit LIMIT` (say `-f 1024`).
pub fn under_ulimit(direct: &Command, limit: &str) -> Command {
    let script = format!("ulimit {limit} && exec \"$0\" \"$@\"");
    wrapped(direct, "sh", &["-c", &script])
}

/// `direct` run as user `uid` (group `uid`, and the supplementary
/// `groups`), by `setpriv`: for tests, run as root, that play another
/// user. The user needs no account.
pub fn as_user(direct: &Command, uid: u32, groups: &[u32]) -> Command {
    let (uid, gid) = (uid.to_string(), uid.to_string());
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let groups = groups.join(",");
    let mut args = vec!["--reuid", &uid, "--regid", &gid];
    if groups.is_empty() {
        args.push("--clear-groups");
    } else {
        args.extend(["--groups", &groups]);
    }
    wrapped(direct, "setpriv", &args)
}

/// Run a prepared command and collect its result.
pub fn run(cmd: &mut Command) -> Run {
    Run::from_output(cmd.output().expect("run obnam"))
}

/// The most resident memory [`run_with_deadline`] lets obnam use before it
/// kills it: far more than any command of the tests needs, far less than
/// the machine has, so a run that reads without end fails the test instead
/// of taking the machine's memory.
pub const RUN_MEMORY_LIMIT: u64 = 1 << 30;

/// Run a prepared command, killing it if it has not ended after `deadline`
/// or if its resident memory passes [`RUN_MEMORY_LIMIT`]: for runs that
/// would hang (reading a FIFO) or read without end (`/dev/zero`) if obnam
/// did not guard against it. Either way the test fails, saying which.
#[track_caller]
pub fn run_with_deadline(cmd: &mut Command, deadline: std::time::Duration) -> Run {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Instant;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run obnam");
    // Read both pipes while waiting, so a chatty run cannot block on a full pipe.
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let killed_because = loop {
        if let Some(status) = child.try_wait().expect("wait for obnam") {
            return Run {
                code: status.code().unwrap_or(-1),
                stdout: stdout.join().expect("stdout reader"),
                stderr: stderr.join().expect("stderr reader"),
            };
        }
        let rss = resident_bytes(child.id());
        if rss > RUN_MEMORY_LIMIT {
            break format!("its resident memory reached {rss} bytes");
        }
        if started.elapsed() > deadline {
            break format!("it was still running after {deadline:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "obnam was killed: {killed_because}\nstderr so far:\n{}",
        stderr.join().unwrap_or_default()
    );
}

/// The resident memory of a process, from `/proc/PID/status` (0 if unknown).
fn resident_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// A world for backup tests: a repository, a client and a folder of data.
pub struct BackupWorld {
    pub env: TestEnv,
    pub repo: PathBuf,
    pub data: PathBuf,
    pub client: String,
}

impl BackupWorld {
    /// A new world whose backups are made as `client`.
    pub fn new(client: &str) -> Self {
        let env = TestEnv::new();
        let repo = env.path().join("repo");
        let data = env.path().join("data");
        fs::create_dir(&data).expect("data folder");
        BackupWorld {
            env,
            repo,
            data,
            client: client.to_string(),
        }
    }

    /// Run obnam on this world's repository as its client.
    pub fn obnam(&self, args: &[&str]) -> Run {
        run(self
            .env
            .obnam()
            .arg("--repository")
            .arg(&self.repo)
            .args(["--client-name", &self.client])
            .args(args))
    }

    /// Back up the data folder, with extra arguments.
    pub fn backup(&self, extra: &[&str]) -> Run {
        let data = self.data.to_str().expect("UTF-8 test path").to_string();
        let mut args: Vec<&str> = vec!["backup", &data];
        args.extend_from_slice(extra);
        self.obnam(&args)
    }

    /// Run obnam on this world's repository as its client under
    /// `script`, which gives it a terminal (its standard output and error
    /// both go to it), typing `input`. `args` is shell text. `None` if
    /// `script` cannot run here (the caller skips, saying so).
    pub fn on_terminal(&self, input: &str, args: &str) -> Option<Run> {
        let command = format!(
            "{} --repository {} --client-name {} {args}",
            target_dir().join("obnam").display(),
            self.repo.display(),
            self.client
        );
        let mut script = Command::new("script");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OBNAM_") {
                script.env_remove(&key);
            }
        }
        let child = script
            .args(["-qec", &command, "/dev/null"])
            .env("HOME", self.env.home())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_STATE_HOME")
            .current_dir(self.env.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: cannot run script(1) to give obnam a terminal: {e}");
                return None;
            }
        };
        use std::io::Write;
        child.stdin.take()?.write_all(input.as_bytes()).ok()?;
        Some(Run::from_output(child.wait_with_output().ok()?))
    }

    /// Write a file below the data folder (making folders on the way).
    pub fn file(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = self.data.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        fs::write(&path, content).expect("write file");
        path
    }
}

/// Mount a 1 MiB tmpfs on `dir` (for tests that need another file system
/// or a full one). Returns false where the machine does not allow it (not
/// root); the caller then skips, saying why.
pub fn mount_small_tmpfs(dir: &Path) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Unmount what [`mount_small_tmpfs`] mounted.
pub fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// Whether the tests run as root.
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The files below `dir`, at any depth, sorted (none if it cannot be
/// read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Now, in nanoseconds since 1970 (as records in the repository give times).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as i64
}

/// `n` deterministic pseudo-random bytes from `seed` (xorshift): data that
/// neither compresses nor deduplicates against other seeds.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The new bytes a backup stored, read from its summary line
/// (`Backed up ... (N files read, X MB, Y MB new) ...`).
pub fn bytes_new(run: &Run) -> f64 {
    let at = run
        .stdout
        .find(" new)")
        .unwrap_or_else(|| panic!("no summary line: {run:?}"));
    let words: Vec<&str> = run.stdout[..at].rsplit(' ').take(2).collect();
    let n: f64 = words[1].parse().expect("a number");
    n * match words[0] {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other} in {run:?}"),
    }
}

/// Start `cmd`, a `repotest-lock CLIENT SECONDS` run (the `repotest` test
/// plugin), and return it once it prints that it holds the lock.
pub fn spawn_holding_lock(cmd: &mut Command) -> std::process::Child {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("its output"))
        .read_line(&mut line)
        .expect("read its output");
    assert_eq!(line, "locked\n");
    child
}
