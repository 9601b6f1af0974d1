//! The repository through the real host and a test plugin: concurrent
//! clients, locks, crash safety, data filters, format versions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use obnam_test_support::{noise, Run, TestEnv};

/// Small packs, so that a run makes many writes; uncompressed, so that
/// how many (and so where a given crash point falls) does not depend on
/// how well the data compresses.
const SMALL_PACKS: [&str; 4] = ["--pack-size", "64KiB", "--compress-with", "none"];

struct World {
    env: TestEnv,
    plugins: PathBuf,
    repo: PathBuf,
}

impl World {
    fn new(plugins: &[&str]) -> Self {
        let env = TestEnv::new();
        let plugins = env.plugin_dir("plugins", plugins);
        let repo = env.path().join("repo");
        World { env, plugins, repo }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.obnam();
        cmd.arg("--plugin-dir")
            .arg(&self.plugins)
            .arg("--repository")
            .arg(&self.repo)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        obnam_test_support::run(&mut self.cmd(args))
    }

    /// Run against another repository path than the world's own.
    fn run_on(&self, repo: &Path, args: &[&str]) -> Run {
        obnam_test_support::run(
            self.env
                .obnam()
                .arg("--plugin-dir")
                .arg(&self.plugins)
                .arg("--repository")
                .arg(repo)
                .args(args),
        )
    }

    /// Run with [`SMALL_PACKS`].
    fn run_small_packs(&self, args: &[&str]) -> Run {
        self.run(&[&SMALL_PACKS[..], args].concat())
    }

    /// Start `repotest-lock CLIENT 600` and wait until it holds the lock.
    fn hold_lock(&self, client: &str) -> Child {
        obnam_test_support::spawn_holding_lock(&mut self.cmd(&["repotest-lock", client, "600"]))
    }

    fn lock_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.repo.join("locks"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

fn kill9(child: &mut Child) {
    // SIGKILL: the holder gets no chance to release its lock.
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn field(run: &Run, name: &str) -> u64 {
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == name)
        .unwrap_or_else(|| panic!("{name} in {run:?}"));
    words[at + 1].parse().unwrap()
}

#[test]
fn two_clients_commit_at_the_same_time() {
    let w = World::new(&["repotest"]);
    w.run(&["repotest-run", "seed", "1"]).ok();
    let mut a = w
        .cmd(&["repotest-run", "alpha", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = w
        .cmd(&["repotest-run", "beta", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    for client in ["alpha", "beta"] {
        let run = w.run(&["repotest-verify", client]).ok();
        assert_eq!(run.stdout, "generations 1 files 60 ok\n");
    }
    assert!(
        w.lock_files().is_empty(),
        "locks left: {:?}",
        w.lock_files()
    );
}

#[test]
fn a_second_process_on_the_same_client_waits_then_names_the_holder() {
    let w = World::new(&["repotest"]);
    let mut holder = w.hold_lock("c1");
    // Another client is not blocked.
    w.run(&["repotest-run", "c2", "3"]).ok();
    let run = w
        .run(&["--lock-timeout", "1", "repotest-run", "c1", "3"])
        .fails()
        .no_rust_panic();
    let host = gethostname();
    let expected = format!(
        "ERROR: client 'c1' is locked by host {host} (pid {}) since ",
        holder.id()
    );
    // After the notice that it waits.
    assert!(
        run.stderr.lines().any(|l| l.starts_with(&expected)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(lock locks/"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("gave up after waiting 1s (--lock-timeout)"),
        "{}",
        run.stderr
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

fn gethostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_lock_of_a_killed_process_is_broken_with_a_warning() {
    let w = World::new(&["repotest"]);
    let mut holder = w.hold_lock("c1");
    let pid = holder.id();
    kill9(&mut holder);
    assert_eq!(w.lock_files().len(), 1);
    let run = w
        .run(&["--lock-timeout", "5", "repotest-run", "c1", "3"])
        .ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: breaking stale lock: client 'c1' is locked by host {} (pid {pid})",
            gethostname()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("(its process {pid} on this host is gone)")),
        "{}",
        run.stderr
    );
    assert!(w.lock_files().is_empty());
}

/// Ctrl-C (SIGINT), SIGTERM or SIGHUP: the run releases its lock before
/// it ends, with exit code 128 + the signal and a message saying why.
#[test]
fn an_interrupted_run_releases_its_lock() {
    let w = World::new(&["repotest"]);
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let mut holder = w.hold_lock("c1");
        assert_eq!(w.lock_files().len(), 1);
        let mut stderr = holder.stderr.take();
        Command::new("kill")
            .args([&format!("-{signal}"), &holder.id().to_string()])
            .status()
            .unwrap();
        let status = holder.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}");
        let mut said = String::new();
        if let Some(e) = stderr.as_mut() {
            std::io::Read::read_to_string(e, &mut said).unwrap();
        }
        // The first run also created the repository, and said so.
        let said: String = said
            .lines()
            .filter(|l| !l.starts_with("obnam: created a new repository"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(said, format!("ERROR: interrupted by SIG{signal}\n"));
        assert!(w.lock_files().is_empty(), "SIG{signal}");
    }
}

/// A run interrupted after it committed its generation, while it tidies
/// up, names the generation, which is complete (a backup so interrupted
/// said only "interrupted", and looked failed).
#[test]
fn an_interrupted_run_names_the_generation_it_committed() {
    use std::io::BufRead;
    let w = World::new(&["repotest"]);
    let mut cmd = w.cmd(&["repotest-run", "c1", "25"]);
    cmd.env("OBNAM_TEST_GATE_AFTER_COMMIT", w.env.path().join("never"));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = line.strip_prefix("committed ").unwrap().trim().to_string();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "ERROR: interrupted by SIGTERM after the backup was committed as generation {id}, \
             which is complete"
        )),
        "{said}"
    );
    assert!(w.lock_files().is_empty());
    // The generation and its two checkpoints (of 10 and 20 files), which
    // the interruption left, read back whole.
    let verified = w.run(&["repotest-verify", "c1"]).ok();
    assert_eq!(verified.stdout, "generations 3 files 55 ok\n");
}

/// A plugin whose `run-interrupted` callback never returns does not keep
/// an interrupted run (it stayed, silent, holding its lock, until a
/// second Ctrl-C ended it abruptly): after a while the run says so and
/// winds down without it, its lock released.
#[test]
fn an_interrupted_run_does_not_wait_for_ever_for_its_plugins() {
    let w = World::new(&["repotest"]);
    let mut direct = w.cmd(&["repotest-lock", "c1", "600"]);
    direct.env("OBNAM_TEST_INTERRUPT", "hang");
    let mut holder = obnam_test_support::spawn_holding_lock(&mut direct);
    let mut stderr = holder.stderr.take();
    Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    while holder.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the run waits for the callback"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(holder.wait().unwrap().code(), Some(130));
    let mut said = String::new();
    if let Some(e) = stderr.as_mut() {
        std::io::Read::read_to_string(e, &mut said).unwrap();
    }
    assert!(
        said.contains("WARNING: the plugins' callbacks of hook run-interrupted did not return")
            && said.contains("ERROR: interrupted by SIGINT"),
        "{said}"
    );
    assert!(w.lock_files().is_empty());
}

/// A signal ignored when obnam starts stays ignored: under `nohup` the
/// run goes on after a hangup.
#[test]
fn a_hangup_under_nohup_does_not_stop_a_run() {
    let w = World::new(&["repotest"]);
    let direct = w.cmd(&["repotest-lock", "c1", "600"]);
    let mut cmd = obnam_test_support::wrapped(&direct, "nohup", &[]);
    let mut holder = obnam_test_support::spawn_holding_lock(&mut cmd);
    Command::new("kill")
        .args(["-HUP", &holder.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(holder.try_wait().unwrap().is_none(), "a hangup stopped it");
    assert_eq!(w.lock_files().len(), 1);
    Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(holder.wait().unwrap().code(), Some(130));
    assert!(w.lock_files().is_empty());
}

#[test]
fn force_lock_removes_the_clients_locks() {
    let w = World::new(&["repotest"]);
    let mut holder = w.hold_lock("c1");
    kill9(&mut holder);
    // fsck says a dead run's lock is there (it is no problem: the next
    // run breaks it).
    let fsck = w.run(&["fsck"]);
    assert!(
        fsck.stderr.contains("client 'c1' is locked by host")
            && fsck.stderr.contains("(a run that is gone on this host)"),
        "{fsck:#?}"
    );
    let mut other = w.hold_lock("c2");
    // force-lock is a bundled plugin.
    let run = w.run(&["--client-name", "c1", "force-lock"]).ok();
    assert!(
        run.stdout
            .starts_with("removed: client 'c1' is locked by host"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(w.lock_files().len(), 1, "c2's lock stays");
    // c2's process is running on this host: its lock is its own.
    let run = w.run(&["--all-clients", "force-lock"]).ok();
    assert!(
        run.stderr
            .contains("not removed: client 'c2' is locked by host")
            && run.stderr.contains("is running on this host"),
        "{run:#?}"
    );
    assert_eq!(w.lock_files().len(), 1, "c2's live lock stays");
    kill9(&mut other);
    let run = w.run(&["--all-clients", "force-lock"]).ok();
    assert!(
        run.stdout.starts_with("removed: client 'c2'"),
        "{}",
        run.stdout
    );
    assert!(w.lock_files().is_empty());
    let run = w.run(&["force-lock"]).ok();
    assert_eq!(run.stdout, "no locks removed\n");
}

#[test]
fn a_repository_is_needed_and_must_exist_for_reading() {
    let w = World::new(&["repotest"]);
    let run = obnam_test_support::run(
        w.env
            .obnam()
            .arg("--plugin-dir")
            .arg(&w.plugins)
            .args(["repotest-verify", "c1"]),
    )
    .fails();
    assert_eq!(
        run.stderr,
        "ERROR: No --repository setting. You need to give it on the command line, in a configuration file or as OBNAM_REPOSITORY\n"
    );
    let run = w.run(&["repotest-verify", "c1"]).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: {} is not an obnam repository (it has no config object)\n",
            w.repo.display()
        )
    );
}

/// A repository path that is a file, or under one: named plainly, and
/// the file is left as it was.
#[test]
fn a_repository_path_that_is_not_a_folder_is_named() {
    let w = World::new(&["repotest"]);
    let file = w.env.path().join("a-file");
    fs::write(&file, b"not a repository").unwrap();
    let run = w.run_on(&file, &["repotest-run", "c1", "1"]).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: cannot use repository {}: it is not a folder\n",
            file.display()
        )
    );
    let under = file.join("repo");
    let run = w.run_on(&under, &["repotest-run", "c1", "1"]).fails();
    assert!(
        run.stderr.starts_with(&format!(
            "ERROR: cannot use repository {}: ",
            under.display()
        )) && run.stderr.contains("Not a directory"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read(&file).unwrap(), b"not a repository");
}

#[test]
fn every_crash_point_leaves_a_repository_that_opens_and_reads_back() {
    let w = World::new(&["repotest"]);
    let fresh = World::new(&["repotest"]);
    let full = fresh.run_small_packs(&["repotest-run", "c1", "45"]).ok();
    let full_bytes = field(&full, "bytes-written");
    let mut crashes = 0;
    let mut reuse_seen = false;
    // Crash before each write in turn, until the run gets through.
    for limit in 1..=500 {
        let limit = limit.to_string();
        let run = w.run_small_packs(&["--crash-limit", &limit, "repotest-run", "c1", "45"]);
        let completed = run.code == 0;
        if !completed {
            assert_eq!(run.code, 75, "{run:?}");
            assert!(run.stderr.contains("crash limit"), "{run:?}");
            crashes += 1;
        }
        // The repository opens and every committed generation reads back;
        // or, if the crash came before the creation wrote `config`, there
        // is no repository yet, and saying so is all a reader can do.
        if w.repo.join("config").exists() {
            let verify = w.run(&["repotest-verify", "c1"]).ok();
            assert!(verify.stdout.ends_with(" ok\n"), "{verify:?}");
        } else {
            let verify = w.run(&["repotest-verify", "c1"]).fails();
            assert!(
                verify.stderr.contains("is not an obnam repository"),
                "{verify:?}"
            );
        }
        // A rerun completes, reusing what earlier runs uploaded.
        let rerun = w.run_small_packs(&["repotest-run", "c1", "45"]).ok();
        if field(&rerun, "bytes-written") < full_bytes / 2 {
            reuse_seen = true;
        }
        w.run(&["repotest-verify", "c1"]).ok();
        // Start the next crash point from an empty repository (and no
        // record of the one removed, which would refuse a new one there).
        std::fs::remove_dir_all(&w.repo).unwrap();
        std::fs::remove_dir_all(w.env.home().join(".local/state/obnam")).unwrap();
        if completed {
            break;
        }
    }
    assert!(crashes >= 50, "only {crashes} crash points were reached");
    assert!(reuse_seen, "no rerun reused uploaded chunks");
}

#[test]
fn a_rerun_after_a_crash_reuses_chunks_from_checkpoints() {
    let w = World::new(&["repotest"]);
    let fresh = World::new(&["repotest"]);
    let full = field(
        &fresh.run_small_packs(&["repotest-run", "c1", "30"]).ok(),
        "bytes-written",
    );
    // Stop late in the run, after some checkpoints.
    let run = w.run_small_packs(&["--crash-limit", "30", "repotest-run", "c1", "30"]);
    assert_eq!(run.code, 75, "{run:?}");
    let verify = w.run(&["repotest-verify", "c1"]).ok();
    assert!(
        !verify.stdout.starts_with("generations 0 "),
        "a checkpoint survives: {verify:?}"
    );
    let rerun = field(
        &w.run_small_packs(&["repotest-run", "c1", "30"]).ok(),
        "bytes-written",
    );
    assert!(
        rerun < full / 2,
        "rerun wrote {rerun} bytes, a full run {full}"
    );
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_data_filter_plugin_sees_every_object_and_is_needed_to_read_them() {
    let w = World::new(&["repotest", "xorfilter"]);
    let client = "client-with-a-long-recognisable-name";
    // Uncompressed: compression alone would hide the plain data below.
    w.run(&["--compress-with", "none", "repotest-run", client, "12"])
        .ok();
    w.run(&["repotest-verify", client]).ok();
    // No stored object but the config holds plain data: the repeated
    // block of every file would show.
    for file in all_files(&w.repo) {
        let bytes = std::fs::read(&file).unwrap();
        if file.ends_with("config") {
            continue;
        }
        assert!(
            !bytes.windows(64).any(|win| win.iter().all(|b| *b == b'x')),
            "{}",
            file.display()
        );
        assert!(
            !bytes
                .windows(client.len())
                .any(|win| win == client.as_bytes()),
            "client name in {}",
            file.display()
        );
    }
    // Without the filter plugin: the error names the tag.
    let without = World {
        env: TestEnv::new(),
        plugins: PathBuf::new(),
        repo: w.repo.clone(),
    };
    let plugins = without.env.plugin_dir("plugins", &["repotest"]);
    let without = World { plugins, ..without };
    let run = without
        .run(&["repotest-verify", client])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr.starts_with("ERROR: object index/") || run.stderr.starts_with("ERROR: object "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .ends_with("needs the 'xor-test' filter; no loaded plugin provides it\n"),
        "{}",
        run.stderr
    );
}

/// Chunks that need a filter no loaded plugin provides are not damage:
/// `fsck --verify-data` says to load the plugin, not to take their packs
/// out with `repair-packs` (which it advised, for sound data).
#[test]
fn chunks_of_a_missing_filter_are_not_called_for_repair() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), noise(50_000, 4)).unwrap();
    let mut cmd = w.cmd(&["backup", data.to_str().unwrap()]);
    cmd.env("OBNAM_TEST_XOR_ONLY", "chunk/");
    obnam_test_support::run(&mut cmd).ok();
    let without = World {
        env: TestEnv::new(),
        plugins: PathBuf::new(),
        repo: w.repo.clone(),
    };
    let plugins = without.env.plugin_dir("plugins", &[]);
    let without = World { plugins, ..without };
    let run = without.run(&["fsck", "--verify-data"]).fails();
    assert!(
        run.stderr.contains(
            "needs the 'xor-test' filter; no loaded plugin provides it; check again with the \
             plugin that provides it loaded (the data may well be sound: do not take the pack out)"
        ),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("repair-packs"), "{run:#?}");
    // With it, all is well.
    w.run(&["fsck", "--verify-data"]).ok();
}

#[test]
fn a_repository_of_a_newer_format_is_refused() {
    let w = World::new(&["repotest"]);
    w.run(&["repotest-run", "c1", "2"]).ok();
    let config = w.repo.join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"version\": 4", "\"version\": 5")).unwrap();
    let run = w.run(&["repotest-verify", "c1"]).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: repository {} has format version 5, which is newer than this obnam supports (4); upgrade obnam\n",
            w.repo.display()
        )
    );
    // Nothing was written to it.
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text.replace("\"version\": 4", "\"version\": 5")
    );
}

/// A signal stops a run that is still opening the repository (here
/// waiting, up to `--lock-timeout`, for another process's creation of
/// it): the wind-down does not wait for the open to end.
#[test]
fn a_signal_stops_a_run_that_is_opening_the_repository() {
    let w = obnam_test_support::BackupWorld::new("c");
    w.file("a", b"some data\n");
    // A live creation claim of a process on another host.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let claim = serde_json::json!({
        "kind": "client", "client": "", "host": "elsewhere", "pid": 1,
        "created": now, "refreshed": now,
    });
    std::fs::create_dir_all(w.repo.join("creating")).unwrap();
    std::fs::write(
        w.repo.join("creating/0123456789abcdef0123456789abcdef"),
        claim.to_string(),
    )
    .unwrap();
    let mut run = w
        .env
        .obnam()
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "c", "--lock-timeout", "120", "backup"])
        .arg(&w.data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(run.try_wait().unwrap().is_none(), "it did not wait");
    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    while run.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            kill9(&mut run);
            panic!("SIGTERM did not stop a run opening the repository");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ERROR: interrupted by SIGTERM"),
        "{out:?}"
    );
}

/// The files of `dir` at any depth, each with its content, but the locks
/// (a run that fails still takes and drops its lock).
fn contents_but_locks(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = all_files(dir)
        .into_iter()
        .filter(|p| !p.starts_with(dir.join("locks")))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// A generation whose files record no whole-file checksum (a plugin may
/// write one so) is no damage: `fsck --verify-data` checks its chunks and
/// says once that the files' content could not be checked whole, exit 0,
/// and a restore gives the files back. (fsck called each file's content
/// "does not match its checksum", exit 1, while a restore took it.)
#[test]
fn files_without_a_checksum_are_not_damage() {
    let w = World::new(&["repotest"]);
    let mut cmd = w.cmd(&["repotest-run", "c", "3"]);
    cmd.env("OBNAM_TEST_NO_CHECKSUM", "1");
    obnam_test_support::run(&mut cmd).ok();
    let run = w.run(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains("; 0 problems"), "{run:#?}");
    assert_eq!(
        run.stderr,
        "WARNING: 3 files record no whole-file checksum (a generation written by a plugin \
         that records none): their chunks were checked, their content as a whole could not be\n"
    );
    let to = w.env.path().join("restored");
    let run = w.run(&[
        "--client-name",
        "c",
        "restore",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read_dir(to.join("data")).unwrap().count(), 3);
}

/// A data filter that fails to read (an error it does not say is about
/// the data, or a panic) stops the run, naming the plugin and the object:
/// nothing is taken for damaged. (Every record was: a backup started the
/// client's history afresh, rewrote its client record and exited 0, and
/// the listings told the user to `forget` generations that were sound.)
/// A filter that says its errors are about the data gets them treated as
/// damage, as the bundled ones do.
#[test]
fn a_data_filter_that_cannot_read_stops_the_run_and_damages_nothing() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"first").unwrap();
    let root = data.to_str().unwrap();
    w.run(&["backup", root]).ok();
    std::fs::write(data.join("f"), b"second").unwrap();
    w.run(&["backup", root]).ok();
    let before = w.run(&["genids"]).ok().stdout;
    assert_eq!(before.lines().count(), 2, "{before}");
    let stored = contents_but_locks(&w.repo);

    for how in ["fail", "panic"] {
        for args in [
            vec!["backup", root],
            vec!["generations"],
            vec!["forget", before.lines().next().unwrap()],
            vec!["fsck"],
        ] {
            let mut cmd = w.cmd(&args);
            cmd.env("OBNAM_TEST_XOR_DECODE", how);
            let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
            let said = match how {
                "fail" => "plugin 'xorfilter' failed in filter 'xor-test' reading ",
                _ => "plugin 'xorfilter' panicked in filter 'xor-test' reading ",
            };
            assert!(run.stderr.contains(said), "{how} {args:?}: {run:#?}");
            assert!(
                !run.stderr.contains("damaged") && !run.stderr.contains("forget"),
                "{how} {args:?}: {run:#?}"
            );
            assert!(
                contents_but_locks(&w.repo) == stored,
                "{how} {args:?} changed the repository"
            );
        }
    }
    // A decode that gives back wrong bytes, with no error: what the
    // compressor below it then finds wrong is not taken for damage (and
    // a backup finds it out at its first write).
    for args in [vec!["generations"], vec!["fsck"], vec!["backup", root]] {
        let mut cmd = w.cmd(&args);
        cmd.env("OBNAM_TEST_XOR_DECODE", "garble");
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        let said = if args[0] == "backup" {
            "plugin 'xorfilter' adds the filter 'xor-test' to hook 'repository-data', and it \
             does not undo its own work"
        } else {
            "after the filter 'xor-test' of plugin 'xorfilter' undid its part: if that \
             plugin's decode does not undo its encode, the object is sound; the run stops"
        };
        assert!(
            run.stderr.contains(said) && !run.stderr.contains("forget"),
            "{args:?}: {run:#?}"
        );
        assert!(contents_but_locks(&w.repo) == stored, "garble {args:?}");
    }
    // Once the filter works, every generation is there.
    assert_eq!(w.run(&["genids"]).ok().stdout, before);

    // Its error on the write side names it too (it was said as it was:
    // `ERROR: Permission denied (os error 13)`, of no plugin).
    std::fs::write(data.join("f"), b"third").unwrap();
    let mut cmd = w.cmd(&["backup", root]);
    cmd.env("OBNAM_TEST_XOR_ENCODE", "fail");
    let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("plugin 'xorfilter' failed in filter 'xor-test' writing ")
            && run.stderr.contains(": Permission denied (os error 13)"),
        "{run:#?}"
    );
    assert_eq!(w.run(&["genids"]).ok().stdout, before);

    // A filter whose errors are about the data: the records it cannot
    // read are damaged, left out with a warning.
    let mut cmd = w.cmd(&["generations"]);
    cmd.env("OBNAM_TEST_XOR_DECODE", "fail")
        .env("OBNAM_TEST_XOR_ERRORS_ARE_DAMAGE", "1");
    let run = obnam_test_support::run(&mut cmd).no_rust_panic();
    assert!(run.stderr.contains("damaged record left out"), "{run:#?}");
}

/// Below a filter that does not vouch for its decode, obnam's own checks
/// (a record's checksum, a chunk's or tree's id) that fail are not taken
/// for damage either: with nothing compressed, a garbling decode reached
/// them directly, and sound generations were left out as "damaged", with
/// advice to forget them that `forget` then followed.
#[test]
fn a_check_failing_below_a_filter_that_does_not_vouch_damages_nothing() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"first").unwrap();
    let root = data.to_str().unwrap();
    w.run(&["backup", root, "--compress-with", "none"]).ok();
    std::fs::write(data.join("f"), b"second").unwrap();
    w.run(&["backup", root, "--compress-with", "none"]).ok();
    let before = w.run(&["genids"]).ok().stdout;
    let first = before.lines().next().unwrap().to_string();
    assert_eq!(before.lines().count(), 2, "{before}");
    let stored = contents_but_locks(&w.repo);
    let to = w.env.path().join("restored");
    let to = to.to_str().unwrap();
    for args in [
        vec!["generations"],
        vec!["fsck"],
        vec!["forget", first.as_str()],
        vec!["restore", "--generation", first.as_str(), "--to", to],
        vec!["backup", root, "--compress-with", "none"],
    ] {
        let mut cmd = w.cmd(&args);
        cmd.env("OBNAM_TEST_XOR_DECODE", "garble");
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        assert!(
            (run.stderr
                .contains("after the filter 'xor-test' of plugin 'xorfilter' undid its part")
                || run.stderr.contains("does not undo its own work"))
                && !run.stderr.contains("damaged record")
                && !run.stderr.contains("forget"),
            "{args:?}: {run:#?}"
        );
        assert!(contents_but_locks(&w.repo) == stored, "garble {args:?}");
    }
    assert_eq!(w.run(&["genids"]).ok().stdout, before);
    // Chunks and trees too: a restore with the client's records read
    // right and its data garbled names the filter, and damages nothing.
    let mut cmd = w.cmd(&["fsck", "--verify-data"]);
    cmd.env("OBNAM_TEST_XOR_DECODE", "garble");
    let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
    assert!(run.stderr.contains("undid its part"), "{run:#?}");
}

/// A `repository-open` callback that drops the seal another plugin chose
/// for a new repository, seals it a second time, or changes what obnam
/// gave the callbacks, is refused, naming the plugins, before anything is
/// written. (A dropped seal made a repository that said it was not
/// encrypted though `--encrypt` was given, every object encrypted under a
/// key never stored: exit 0, and nothing readable from the next run on.)
#[test]
fn a_plugin_that_meddles_with_another_plugins_seal_is_refused() {
    let w = World::new(&["repotest"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"secret").unwrap();
    let root = data.to_str().unwrap();
    for (how, said) in [
        (
            "drop-seal",
            "plugin 'repotest' changed the 'seal' that plugin 'encrypt' answered",
        ),
        (
            "seal",
            "plugin 'repotest' changed the 'seal' that plugin 'encrypt' answered",
        ),
        (
            "creating",
            "plugin 'repotest' changed the 'creating' that obnam gave",
        ),
    ] {
        let mut cmd = w.cmd(&["backup", root, "--encrypt"]);
        cmd.env("OBNAM_PASSPHRASE", "correct horse")
            .env("OBNAM_TEST_OPEN", how);
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        assert!(run.stderr.contains(said), "{how}: {run:#?}");
        assert!(
            !w.repo.join("config").exists(),
            "{how}: a repository was made: {:?}",
            contents_but_locks(&w.repo)
        );
    }
    // Alone, the seal is encrypt's, and the repository reads back.
    let mut cmd = w.cmd(&["backup", root, "--encrypt"]);
    cmd.env("OBNAM_PASSPHRASE", "correct horse");
    obnam_test_support::run(&mut cmd).ok();
    let mut cmd = w.cmd(&["genids"]);
    cmd.env("OBNAM_PASSPHRASE", "correct horse");
    assert_eq!(
        obnam_test_support::run(&mut cmd)
            .ok()
            .stdout
            .lines()
            .count(),
        1
    );
}

/// A filter whose tag no stored object can hold (empty, not ASCII) is refused when
/// its plugin registers it, with a warning, and the rest works (it was
/// accepted, and every backup then failed at its first write).
#[test]
fn a_filter_with_an_empty_tag_is_refused_at_registration() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"content").unwrap();
    let mut cmd = w.cmd(&["backup", data.to_str().unwrap()]);
    cmd.env("OBNAM_TEST_XOR_EMPTY_TAG", "1");
    let run = obnam_test_support::run(&mut cmd).ok();
    assert!(
        run.stderr.contains(
            "WARNING: plugin 'xorfilter' adds a filter to hook 'repository-data' with the tag \"\", \
             which is 0 bytes long, not 1 to 255; ignored"
        ) && run.stderr.contains(
            "WARNING: plugin 'xorfilter' adds a filter to hook 'repository-data' with the tag \
             \"tag \u{e9}\", which is not printable ASCII text; ignored"
        ),
        "{run:#?}"
    );
    w.run(&["fsck"]).ok();
}

/// A data filter whose `decode` does not undo its `encode` stops the
/// backup at its first object, naming the plugin and the filter, and
/// nothing is committed (every backup ended well, exit 0, with nothing
/// that could be read back, and later runs called the records damaged).
/// One that goes wrong later in a run is caught by the sample of objects
/// read back after the first ones.
#[test]
fn a_data_filter_that_does_not_undo_its_work_stops_the_backup() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for i in 0..300 {
        std::fs::write(
            data.join(format!("f{i}")),
            obnam_test_support::noise(2000, i),
        )
        .unwrap();
    }
    let root = data.to_str().unwrap();
    for how in ["lengthen", "from-20"] {
        // Small checkpoints: none may be committed with a bad object in
        // it (a sample of the objects let one be, and every later run
        // failed on it).
        let mut cmd = w.cmd(&[
            "backup",
            root,
            "--checkpoint",
            "64KiB",
            "--pack-size",
            "64KiB",
        ]);
        cmd.env("OBNAM_TEST_XOR_ENCODE", how);
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        assert!(
            run.stderr.contains(
                "plugin 'xorfilter' adds the filter 'xor-test' to hook 'repository-data', and it \
                 does not undo its own work: writing "
            ) && run.stderr.contains("its decode gave back "),
            "{how}: {run:#?}"
        );
        let listed = w.run(&["genids"]);
        assert!(listed.stdout.trim().is_empty(), "{how}: {listed:#?}");
    }
    // The same filter, working, reads what was left and backs up.
    w.run(&["fsck"]).ok();
    w.run(&["backup", root]).ok();
    w.run(&["fsck"]).ok();

    // A filter that vouches for its decode is read back only in part,
    // but a generation's record always: one that goes wrong only there
    // stops the backup (it named a generation no later run could read,
    // exit 0).
    std::fs::write(data.join("f0"), b"changed").unwrap();
    let mut cmd = w.cmd(&["backup", root]);
    cmd.env("OBNAM_TEST_XOR_ENCODE", "records")
        .env("OBNAM_TEST_XOR_ERRORS_ARE_DAMAGE", "1");
    let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("does not undo its own work: writing generations/"),
        "{run:#?}"
    );
    assert_eq!(w.run(&["genids"]).stdout.lines().count(), 1);
}

/// Two plugins that give a data filter the same tag: no repository is
/// opened (the one loaded first decoded what the other wrote, and sound
/// generations were called damaged); other commands still run.
#[test]
fn two_data_filters_with_one_tag_open_no_repository() {
    let w = World::new(&["xorfilter"]);
    let data = w.env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"content").unwrap();
    let root = data.to_str().unwrap();
    w.run(&["backup", root]).ok();
    let stored = contents_but_locks(&w.repo);
    for args in [vec!["backup", root], vec!["generations"], vec!["fsck"]] {
        let mut cmd = w.cmd(&args);
        cmd.env("OBNAM_TEST_XOR_TAG_TWICE", "1");
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        assert!(
            run.stderr.contains(
                "ERROR: plugin 'xorfilter' adds two filters tagged 'xor-test' to hook \
                 'repository-data'"
            ),
            "{args:?}: {run:#?}"
        );
        assert!(contents_but_locks(&w.repo) == stored, "{args:?}");
    }
    let mut cmd = w.cmd(&["plugins"]);
    cmd.env("OBNAM_TEST_XOR_TAG_TWICE", "1");
    obnam_test_support::run(&mut cmd).ok();
}

/// The clean-up of what crashed writers left in `.tmp/` deletes only in
/// `.tmp/` itself: a `.tmp` that someone replaced with a symbolic link to
/// another folder made every backup delete the files there untouched for
/// a day (`/etc`, a home folder, for a backup run as root).
#[test]
fn a_tmp_folder_replaced_by_a_link_has_nothing_deleted_through_it() {
    let w = obnam_test_support::BackupWorld::new("x");
    w.file("f", b"ok");
    w.backup(&[]).ok();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
    let stale = |path: &Path| {
        fs::write(path, b"left by a crash").unwrap();
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    // A real crash's leftover goes.
    stale(&w.repo.join(".tmp/leftover"));
    w.backup(&[]).ok();
    assert!(!w.repo.join(".tmp/leftover").exists());
    // Through a link, nothing goes.
    let victim = w.env.path().join("victim");
    fs::create_dir(&victim).unwrap();
    stale(&victim.join("thesis.tex"));
    fs::remove_dir_all(w.repo.join(".tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, w.repo.join(".tmp")).unwrap();
    w.file("g", b"more");
    let run = w.backup(&[]).no_rust_panic();
    assert!(victim.join("thesis.tex").exists(), "{run:#?}");
    assert!(
        run.stderr
            .contains("left .tmp/ alone (nothing in it is deleted)"),
        "{run:#?}"
    );
}

/// The age of what is in `.tmp/` is judged on the store's clock, not the
/// machine's: a machine whose clock was a day ahead took every other
/// writer's file being written for a crashed writer's and deleted it,
/// and their backups failed. Runs under `faketime` (installed by
/// `.ci/run`); skipped, saying so, where it is missing.
#[test]
fn a_clock_a_day_ahead_deletes_no_file_being_written() {
    if Command::new("faketime").arg("--version").output().is_err() {
        eprintln!("skipped: faketime is not installed");
        return;
    }
    let w = obnam_test_support::BackupWorld::new("x");
    w.file("f", b"ok");
    w.backup(&[]).ok();
    fs::write(w.repo.join(".tmp/being-written"), b"another writer's").unwrap();
    let mut cmd = obnam_test_support::wrapped(&w.env.obnam(), "faketime", &["-f", "+25h"]);
    // The store's times (the files' own) stay as they are.
    cmd.env("NO_FAKE_STAT", "1")
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "skewed", "backup"])
        .arg(&w.data);
    let run = obnam_test_support::run(&mut cmd).ok();
    assert!(w.repo.join(".tmp/being-written").exists(), "{run:#?}");
    // Older than a day by the store's clock, it goes.
    fs::File::options()
        .write(true)
        .open(w.repo.join(".tmp/being-written"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600))
        .unwrap();
    w.backup(&[]).ok();
    assert!(!w.repo.join(".tmp/being-written").exists());
}

/// As root, a local repository another user could change (theirs, or in
/// a folder of theirs) is refused for writing, before anything is
/// written, naming why: its owner could lead root's writes elsewhere
/// through a symbolic link, and root's objects, private to root, made the
/// owner's own runs fail on them for good (`Permission denied`). Reading
/// from it goes on, and the owner's runs go on working.
#[test]
fn root_writes_nothing_into_a_repository_another_user_could_change() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing another user needs root");
        return;
    }
    let user = 4545u32;
    let env = TestEnv::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = env.path().join("user-home");
    let data = home.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"the user's file").unwrap();
    for path in [&home, &data, &data.join("f")] {
        std::os::unix::fs::chown(path, Some(user), Some(user)).unwrap();
    }
    // The user's repository (beside their home, in root's folder), and
    // a repository of root's in the user's folder, which the user could
    // rename and replace.
    let repo = env.path().join("users-repo");
    fs::create_dir(&repo).unwrap();
    std::os::unix::fs::chown(&repo, Some(user), Some(user)).unwrap();
    let obnam = |args: &[&std::ffi::OsStr]| {
        let mut cmd = env.obnam();
        cmd.arg("--repository")
            .arg(&repo)
            .args(["--client-name", "c"])
            .args(args);
        cmd
    };
    let backup = [std::ffi::OsStr::new("backup"), data.as_os_str()];
    let as_user = |args: &[&std::ffi::OsStr]| {
        let mut direct = obnam(args);
        direct.env("HOME", &home).current_dir(&home);
        obnam_test_support::run(&mut obnam_test_support::as_user(&direct, user, &[]))
    };
    as_user(&backup).ok();
    let objects = obnam_test_support::files_under(&repo);
    let roots_repo = home.join("roots-repo");
    let run = obnam_test_support::run(&mut obnam(&backup));
    let run = run.fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("obnam runs as root, and the repository folder")
            && run.stderr.contains("belongs to uid 4545")
            && run.stderr.contains("run obnam as that user"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("WARNING"), "{run:#?}");
    assert_eq!(obnam_test_support::files_under(&repo), objects);
    for path in obnam_test_support::files_under(&repo) {
        assert_eq!(fs::metadata(&path).unwrap().uid(), user, "{path:?}");
    }
    let mut other = env.obnam();
    other
        .arg("--repository")
        .arg(&roots_repo)
        .args(["--client-name", "c"]);
    let run = obnam_test_support::run(other.args(backup)).fails();
    assert!(
        run.stderr.contains("on the way belongs to uid 4545"),
        "{run:#?}"
    );
    assert!(!roots_repo.exists());
    // Reading goes on: a listing, a restore into root's own folder.
    let run = obnam_test_support::run(&mut obnam(&[std::ffi::OsStr::new("ls")])).ok();
    assert!(run.stdout.contains("/f"), "{run:#?}");
    let to = env.path().join("restored");
    obnam_test_support::run(&mut obnam(&[
        std::ffi::OsStr::new("restore"),
        std::ffi::OsStr::new("--to"),
        to.as_os_str(),
    ]))
    .ok();
    let restored = to.join(data.strip_prefix("/").unwrap()).join("f");
    assert_eq!(fs::read(restored).unwrap(), b"the user's file");
    // And the user's next backup works.
    fs::write(data.join("g"), b"more").unwrap();
    std::os::unix::fs::chown(data.join("g"), Some(user), Some(user)).unwrap();
    as_user(&backup).ok();

    // Root's own repository, but a folder in it the user's (left from
    // when it was shared, say): the user could put a link in its place.
    let own = env.path().join("roots-own-repo");
    let mut cmd = env.obnam();
    cmd.arg("--repository")
        .arg(&own)
        .args(["--client-name", "c"]);
    obnam_test_support::run(cmd.args(backup)).ok();
    let inner = fs::read_dir(own.join("packs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::os::unix::fs::chown(&inner, Some(user), Some(user)).unwrap();
    let mut cmd = env.obnam();
    cmd.arg("--repository")
        .arg(&own)
        .args(["--client-name", "c"]);
    let run = obnam_test_support::run(cmd.args(backup)).fails();
    assert!(
        run.stderr.contains(&format!(
            "the folder {} in the repository belongs to uid 4545",
            inner.display()
        )),
        "{run:#?}"
    );
    std::os::unix::fs::chown(&inner, Some(0), Some(0)).unwrap();
    let mut cmd = env.obnam();
    cmd.arg("--repository")
        .arg(&own)
        .args(["--client-name", "c"]);
    obnam_test_support::run(cmd.args(backup)).ok();
}

/// A new repository is made only where there is nothing yet: a new or
/// empty folder, or one holding only what file systems, desktops and file
/// servers put in a disk's root (`lost+found`, a trash folder, ...). A
/// mistyped `--repository` naming a folder of the user's made a
/// repository among their files, exit 0 (outside review); now nothing is
/// written there, and the error names what is there.
#[test]
fn a_new_repository_is_not_made_among_other_files() {
    let env = TestEnv::new();
    let data = env.write("data/f", b"to back up");
    let documents = env.path().join("Documents");
    fs::create_dir_all(documents.join("photos")).unwrap();
    fs::write(documents.join("notes.txt"), b"mine").unwrap();
    let backup_into = |repo: &Path| {
        env.run([
            "--repository",
            repo.to_str().unwrap(),
            "--client-name",
            "c",
            "backup",
            data.parent().unwrap().to_str().unwrap(),
        ])
    };
    let run = backup_into(&documents);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("is not an obnam repository, and holds other things (notes.txt, photos/)"),
        "{run:#?}"
    );
    let mut left: Vec<String> = fs::read_dir(&documents)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["notes.txt", "photos"], "nothing was written there");
    // A home of dot-files only (a new account's) is someone's too.
    let home = env.path().join("home-of-someone");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join(".bashrc"), b"# mine").unwrap();
    let run = backup_into(&home);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("holds other things (.bashrc)"),
        "{run:#?}"
    );
    // A disk's root as file systems, desktops and file servers leave it.
    let disk = env.path().join("disk");
    for name in [
        "lost+found",
        "System Volume Information",
        "$RECYCLE.BIN",
        "@eaDir",
        ".Trash-1000",
    ] {
        fs::create_dir_all(disk.join(name)).unwrap();
    }
    fs::write(disk.join(".DS_Store"), b"x").unwrap();
    backup_into(&disk).ok();
    backup_into(&disk).ok();
}
