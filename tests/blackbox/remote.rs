//! What only shows on a network store: many clients at once on one S3
//! repository (Garage, and moto for AWS-faithful behaviour), backups
//! killed with SIGKILL over and over, and stores that cannot be reached or
//! refuse the credentials.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use obnam_test_support::awkward::{assert_same, restored};
use obnam_test_support::backend::Backend;
use obnam_test_support::flaky_proxy::FlakyProxy;
use obnam_test_support::{bytes_new, files_under, noise, processes_mentioning, run, Run, TestEnv};

/// One `#[test]` per backend for a scenario `fn(Backend)`:
/// `on_backends!(scenario: garage, sftp)` makes `scenario::garage` and
/// `scenario::sftp`. A remote backend whose server is not running is
/// skipped, or fails under `.ci/run` (see [`Backend`]).
macro_rules! on_backends {
    ($scenario:ident: $($backend:ident),+) => {
        mod $scenario {
            use super::*;
            $(
                #[test]
                fn $backend() {
                    if let Some(b) = Backend::$backend() {
                        super::$scenario(b);
                    }
                }
            )+
        }
    };
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn backup_cmd(backend: &Backend, env: &TestEnv, url: &str, client: &str, data: &Path) -> Command {
    let mut cmd = backend.obnam(env, url);
    cmd.args(["--client-name", client, "backup"]).arg(data);
    cmd
}

/// Four clients back up at the same time into one repository. Each has
/// data of its own and a copy of one large shared file, which an earlier
/// backup (of a fifth client) already stored: all four succeed, none
/// stores the shared file again, and each restores exactly its own data.
fn four_clients_at_once(backend: Backend) {
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "shared");
    let shared = noise(6 << 20, 1);

    let seed = env.path().join("seed");
    write(&seed.join("shared.bin"), &shared);
    run(&mut backup_cmd(&backend, &env, &url, "seed", &seed)).ok();

    let own = 2 << 20;
    let datas: Vec<PathBuf> = (0..4)
        .map(|i| {
            let d = env.path().join(format!("client{i}"));
            write(&d.join("shared.bin"), &shared);
            write(&d.join(format!("own/{i}.bin")), &noise(own, 100 + i as u64));
            write(&d.join("own/small.txt"), format!("client {i}\n").as_bytes());
            d
        })
        .collect();
    let children: Vec<_> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            backup_cmd(&backend, &env, &url, &format!("client{i}"), d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let run = Run::from_output(child.wait_with_output().unwrap()).ok();
        let new = bytes_new(&run);
        assert!(
            new < own as f64 * 1.2,
            "client{i} stored {new} bytes for {own} bytes of its own: the shared file was stored again: {run:?}"
        );
    }
    let clients = run(backend.obnam(&env, &url).arg("clients")).ok();
    assert_eq!(clients.stdout, "client0\nclient1\nclient2\nclient3\nseed\n");
    for (i, d) in datas.iter().enumerate() {
        let to = env.path().join(format!("restore{i}"));
        run(backend
            .obnam(&env, &url)
            .args(["--client-name", &format!("client{i}"), "restore", "--to"])
            .arg(&to))
        .ok();
        assert_same(d, &restored(&to, d));
        // Only its own data: no other client's folder came back.
        let top: Vec<_> = fs::read_dir(to.join(env.path().strip_prefix("/").unwrap()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(top, [format!("client{i}")], "client{i} restored {top:?}");
    }
    run(backend
        .obnam(&env, &url)
        .args(["--client-name", "client0", "fsck", "--verify-data"]))
    .ok();
}

on_backends!(four_clients_at_once: garage, moto, local, sftp);

/// Four processes back up into a repository that does not exist yet, all
/// at the same moment, so that all four try to create it: a test plugin
/// holds each creator, after it found no config and before it writes one,
/// until all four have got that far (or two seconds have passed). Exactly
/// one creates the repository; the others wait for its creation claim and
/// use it. With encryption this shows as exactly one key slot and no
/// failed run (a creator that lost a race it did not see coming must stop,
/// its key being useless); in both cases every client's backup is in the
/// one repository and restores exactly, and no claim is left.
fn four_creators_at_once_with(backend: Backend, encrypted: bool) {
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "created");
    let plugins = env.plugin_dir("test-plugins", &["repotest"]);
    let barrier = env.path().join("barrier");
    let cmd = |client: &str| {
        let mut cmd = backend.obnam(&env, &url);
        cmd.arg("--plugin-dir")
            .arg(&plugins)
            .args(["--client-name", client])
            .env("OBNAM_TEST_CREATION_BARRIER", &barrier)
            .env("OBNAM_TEST_CREATION_BARRIER_COUNT", "4");
        if encrypted {
            cmd.args(["--kdf-memory", "256KiB", "--kdf-iterations", "1"])
                .env("OBNAM_PASSPHRASE", "same for all");
        }
        cmd
    };
    let datas: Vec<PathBuf> = (0..4)
        .map(|i| {
            let d = env.path().join(format!("client{i}"));
            write(&d.join("own.bin"), &noise(300_000, 700 + i as u64));
            d
        })
        .collect();
    let children: Vec<_> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut c = cmd(&format!("client{i}"));
            if encrypted {
                c.arg("--encrypt");
            }
            c.arg("backup")
                .arg(d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut notices = 0;
    for child in children {
        let run = Run::from_output(child.wait_with_output().unwrap()).ok();
        notices += run
            .stderr
            .lines()
            .filter(|l| l.contains("created a new"))
            .count();
    }
    // Only the one whose config is there says it created the repository,
    // even on a store that ignores conditional writes.
    assert_eq!(notices, 1, "creation notices");
    let clients = run(cmd("client0").arg("clients")).ok();
    assert_eq!(clients.stdout, "client0\nclient1\nclient2\nclient3\n");
    if encrypted {
        let slots = run(cmd("client0").args(["key", "list"])).ok();
        assert_eq!(slots.stdout.lines().count(), 1, "{}", slots.stdout);
    }
    for (i, d) in datas.iter().enumerate() {
        let to = env.path().join(format!("restore{i}"));
        run(cmd(&format!("client{i}"))
            .args(["restore", "--to"])
            .arg(&to))
        .ok();
        assert_same(d, &restored(&to, d));
    }
    if backend.is_local() {
        // The folder itself stays: removing it when empty would race
        // with another creator writing its claim into it.
        assert!(
            fs::read_dir(Path::new(&url).join("creating")).map_or(true, |mut d| d.next().is_none()),
            "creation claims were left behind"
        );
    }
}

/// Both kinds of repository: plain, then encrypted.
fn four_creators_at_once(backend: Backend) {
    four_creators_at_once_with(backend.clone(), false);
    four_creators_at_once_with(backend, true);
}

on_backends!(four_creators_at_once: garage, moto, local, sftp);

/// Client `c`'s latest generation in `url` restores to exactly `data`, and
/// `fsck --verify-data` passes.
fn restores_exactly_and_checks(backend: &Backend, env: &TestEnv, url: &str, data: &Path) {
    let to = env.path().join("out");
    run(backend
        .obnam(env, url)
        .args(["--client-name", "c", "restore", "--to"])
        .arg(&to))
    .ok();
    assert_same(data, &restored(&to, data));
    run(backend
        .obnam(env, url)
        .args(["--client-name", "c", "fsck", "--verify-data"]))
    .ok();
}

/// Backups to S3 killed with SIGKILL at growing moments, again and again,
/// each with new data to upload: every time the repository still opens
/// and passes fsck, and at the end a backup completes and restores
/// exactly.
#[test]
fn a_backup_to_s3_killed_again_and_again_completes_and_restores_exactly() {
    let Some(backend) = Backend::garage() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "killed");
    let data = env.path().join("data");
    for i in 0..40 {
        write(
            &data.join(format!("d{}/f{i}.bin", i % 4)),
            &noise(400_000, 500 + i),
        );
    }
    let backup = || {
        let mut cmd = backup_cmd(&backend, &env, &url, "c", &data);
        cmd.args(["--pack-size", "256KiB", "--checkpoint", "2MiB"]);
        cmd
    };
    // The repository exists before the kills start (killing its very
    // creation is the conformance suite's crash-limit scenario), so that
    // fsck can check it after every kill.
    run(&mut backup()).ok();
    let mut killed_while_running = 0;
    for round in 0..8u64 {
        // New data every round, so that every run has uploading to do.
        for i in 0..4 {
            write(
                &data.join(format!("new{round}/f{i}.bin")),
                &noise(300_000, 9_000 + round * 10 + i),
            );
        }
        let mut child = backup()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(80 + round * 40));
        if child.try_wait().unwrap().is_none() {
            killed_while_running += 1;
        }
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        // The killed run's lock is stale (its process is gone): fsck works.
        run(backend
            .obnam(&env, &url)
            .args(["--client-name", "c", "fsck"]))
        .ok();
    }
    assert!(
        killed_while_running >= 4,
        "only {killed_while_running} of 8 runs were still running when killed"
    );
    let finish = run(&mut backup()).ok();
    // At most the data added during the kills (8 rounds of 1.2 MB) is
    // new: what the first backup stored is never stored again.
    assert!(
        bytes_new(&finish) < 8.0 * 1.2e6 + 0.5e6,
        "data stored before was stored again: {finish:?}"
    );
    restores_exactly_and_checks(&backend, &env, &url, &data);
}

/// Wait until `bytes` have passed through `proxy` in all; `child` (a
/// backup) must still be running then, or the test cannot do its `next`
/// step in the middle of it.
fn wait_for_bytes(proxy: &FlakyProxy, child: &mut std::process::Child, bytes: u64, next: &str) {
    let start = Instant::now();
    while proxy.passed() < bytes
        && child.try_wait().unwrap().is_none()
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(status) = child.try_wait().unwrap() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        panic!("the backup ended ({status}) before the {next}: {stderr}");
    }
}

/// A remote store behind a [`FlakyProxy`] at 1 MB/s per connection, so
/// that a backup takes seconds and what a test does to the proxy or to
/// obnam lands while it runs; and 12 MB of data to back up through it.
struct SlowStore {
    proxy: FlakyProxy,
    proxied: Backend,
    env: TestEnv,
    data: PathBuf,
}

impl SlowStore {
    fn new(direct: &Backend, seed: u64) -> Self {
        let target = direct
            .server_address()
            .expect("a remote store has an address");
        let proxy = FlakyProxy::start(target, 1_000_000);
        let proxied = direct.via_port(proxy.port);
        let env = TestEnv::new();
        let data = env.path().join("data");
        for i in 0..30 {
            write(&data.join(format!("f{i}.bin")), &noise(400_000, seed + i));
        }
        SlowStore {
            proxy,
            proxied,
            env,
            data,
        }
    }

    /// A backup of the data through the proxy into `name`, in small packs.
    fn backup(&self, name: &str) -> Command {
        let url = self.proxied.repo_url(&self.env, name);
        let mut cmd = backup_cmd(&self.proxied, &self.env, &url, "c", &self.data);
        cmd.args(["--pack-size", "256KiB"]);
        if !self.proxied.is_local() {
            // Host keys are known by host and port; the proxy's port is new.
            cmd.args(["--ssh-host-keys-check", "no"]);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

/// Network faults in the middle of a backup: every connection cut and
/// new ones refused for 1.5 s, then every byte held for 3 s (longer than
/// `--storage-timeout`). Both are ridden out by retrying with backoff
/// (over SFTP, each failed operation again from the start, on a working
/// connection): the backup succeeds and restores exactly, and fsck passes.
fn rides_out_cut_and_stalled_connections(direct: Backend) {
    let store = SlowStore::new(&direct, 900);
    let (proxy, env, data) = (&store.proxy, &store.env, &store.data);
    let mut child = store
        .backup("flaky")
        .args(["--storage-timeout", "2"])
        .spawn()
        .unwrap();
    wait_for_bytes(proxy, &mut child, 2_000_000, "cut");
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1500));
    proxy.heal();
    wait_for_bytes(proxy, &mut child, proxy.passed() + 2_000_000, "stall");
    proxy.stall();
    std::thread::sleep(Duration::from_secs(3));
    proxy.heal();
    let done = Run::from_output(child.wait_with_output().unwrap()).ok();
    // What broke and was retried is the libraries' business (in the log),
    // not an error on the terminal of a run that succeeded.
    assert!(!done.stderr.contains("ERROR"), "{done:?}");
    // Connection attempts abandoned at a timeout leave no ssh behind.
    assert_eq!(ssh_processes_left(env), Vec::<String>::new());
    // Nor writes abandoned at a timeout their temporary files (each
    // delete failed with the connection, and a pack each was left in
    // `.tmp/` for a day).
    if matches!(direct, Backend::Sftp { .. }) {
        let tmp = folder_of(&direct.repo_url(env, "flaky")).join(".tmp");
        let left: Vec<_> = fs::read_dir(&tmp)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(left, Vec::<std::ffi::OsString>::new());
    }

    // Read back directly from the server, not through the proxy.
    restores_exactly_and_checks(&direct, env, &direct.repo_url(env, "flaky"), data);
}

on_backends!(rides_out_cut_and_stalled_connections: garage, sftp);

/// An uplink too slow for the packs a backup keeps in flight to go up
/// within `--storage-timeout` together, though each alone would: after
/// the first timeout the writes go one at a time, and the backup succeeds
/// and restores exactly (every try of every pack timed out, and the backup
/// failed after retrying, as it would have for ever).
fn a_slow_uplink_gets_one_write_at_a_time(direct: Backend) {
    let env = TestEnv::new();
    let data = env.path().join("data");
    for i in 0..12 {
        write(&data.join(format!("f{i}.bin")), &noise(256 << 10, 40 + i));
    }
    let target = direct
        .server_address()
        .expect("a remote store has an address");
    // 400 kB/s for every connection together: six packs of 256 KiB take
    // 4 s, one takes 0.7 s, and the timeout is 2 s.
    let uplink = FlakyProxy::start_shared(target, 400_000);
    let proxied = direct.via_port(uplink.port);
    let url = proxied.repo_url(&env, "uplink");
    let mut cmd = backup_cmd(&proxied, &env, &url, "c", &data);
    cmd.args(["--pack-size", "256KiB", "--storage-timeout", "2"]);
    if !proxied.is_local() {
        // Host keys are known by host and port; the proxy's port is new.
        cmd.args(["--ssh-host-keys-check", "no"]);
    }
    let done = run(&mut cmd).ok();
    assert!(
        done.stderr
            .contains("writing one object at a time from now on"),
        "{done:#?}"
    );
    // Read back directly from the server, not through the proxy.
    restores_exactly_and_checks(&direct, &env, &direct.repo_url(&env, "uplink"), &data);
}

on_backends!(a_slow_uplink_gets_one_write_at_a_time: garage, sftp);

/// Ctrl-C (SIGINT), or SIGTERM, in the middle of a backup to a remote
/// store: the run ends with exit code 128 + the signal and says so, its
/// lock is released (the next run has no stale lock to break), no ssh
/// process is left behind, and the next backup completes and restores
/// exactly.
fn an_interrupted_backup_winds_down(direct: Backend) {
    let store = SlowStore::new(&direct, 700);
    let (proxy, env, data) = (&store.proxy, &store.env, &store.data);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        // In a process group of its own, signalled as a whole, as a
        // terminal's Ctrl-C does: the ssh processes that obnam starts in
        // its group get the signal too.
        let mut cmd = store.backup("interrupted");
        let mut child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
            .spawn()
            .unwrap();
        wait_for_bytes(proxy, &mut child, proxy.passed() + 1_500_000, "signal");
        Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.ends_with(&format!("ERROR: interrupted by SIG{signal}\n")),
            "{stderr}"
        );
        assert_eq!(ssh_processes_left(env), Vec::<String>::new());
    }
    let url = direct.repo_url(env, "interrupted");
    let done = run(&mut backup_cmd(&direct, env, &url, "c", data)).ok();
    assert!(!done.stderr.contains("stale lock"), "{done:?}");
    restores_exactly_and_checks(&direct, env, &url, data);
}

on_backends!(an_interrupted_backup_winds_down: garage, sftp);

/// Ctrl-C of a backup whose store stopped answering (every byte held: a
/// frozen NAS, an endpoint that accepts connections and never answers)
/// ends the run within seconds, saying that its lock stays: the release
/// of its lock was tried with the store's retries, each as long as
/// `--storage-timeout`, and the run stayed silent for minutes.
fn an_interrupted_backup_of_a_store_that_stopped_answering_ends(direct: Backend) {
    let store = SlowStore::new(&direct, 900);
    let proxy = &store.proxy;
    let mut cmd = store.backup("frozen");
    let mut child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
        .spawn()
        .unwrap();
    wait_for_bytes(proxy, &mut child, proxy.passed() + 1_500_000, "stall");
    proxy.stall();
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    let signalled = Instant::now();
    // The wind-down waits 15 s at most; the retries took minutes.
    while child.try_wait().unwrap().is_none() && signalled.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    if still_running {
        child.kill().unwrap();
    }
    let done = Run::from_output(child.wait_with_output().unwrap());
    proxy.heal();
    assert!(!still_running, "still running 90 s after Ctrl-C: {done:#?}");
    assert_eq!(done.code, 130, "{done:#?}");
    assert!(
        done.stderr.ends_with("ERROR: interrupted by SIGINT\n"),
        "{done:#?}"
    );
    // Over SFTP the held connection fails sooner, and the run may end
    // within the wait, its lock's delete failed (or done).
    if !matches!(direct, Backend::Sftp { .. }) {
        assert!(
            done.stderr.contains(
                "WARNING: the repository did not answer within 15 s: the run ends without \
                 releasing its lock"
            ),
            "{done:#?}"
        );
    }
    assert_eq!(ssh_processes_left(&store.env), Vec::<String>::new());
}

on_backends!(an_interrupted_backup_of_a_store_that_stopped_answering_ends: garage, sftp);

/// The store goes away in the middle of a restore, for good: once a read
/// has failed after its retries, the restore stops with one error naming
/// the URL and what failed (not one per file, each after its own retries,
/// for as long as files are left), exit code 1, and leaves no file
/// half-written: every regular file in the target is the original.
fn a_restore_stops_when_the_store_goes_away(direct: Backend) {
    let store = SlowStore::new(&direct, 1100);
    let (proxy, env, data) = (&store.proxy, &store.env, &store.data);
    // Stored directly, so that only the restore goes through the proxy.
    let url = direct.repo_url(env, "gone");
    run(&mut backup_cmd(&direct, env, &url, "c", data)).ok();

    let url = store.proxied.repo_url(env, "gone");
    let to = env.path().join("out");
    let mut cmd = store.proxied.obnam(env, &url);
    cmd.args(["--client-name", "c", "restore", "--to"]).arg(&to);
    if !store.proxied.is_local() {
        // Host keys are known by host and port; the proxy's port is new.
        cmd.args(["--ssh-host-keys-check", "no"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = proxy.passed();
    wait_for_bytes(proxy, &mut child, started + 2_000_000, "cut");
    proxy.cut();
    let cut = Instant::now();
    // The retries take about 20 s; a restore going on file by file takes
    // minutes.
    while child.try_wait().unwrap().is_none() && cut.elapsed() < Duration::from_secs(100) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    if still_running {
        child.kill().unwrap();
    }
    let done = Run::from_output(child.wait_with_output().unwrap());
    assert!(
        !still_running,
        "still restoring 100 s after the cut: {done:?}"
    );
    assert_eq!(done.code, 1, "{done:?}");
    // One error (ssh's own words in it may span lines).
    assert_eq!(done.stderr.matches("ERROR").count(), 1, "{done:?}");
    assert!(
        done.stderr.starts_with(&format!("ERROR: {url}: ")),
        "{done:?}"
    );
    assert!(done.stderr.contains("(gave up after retrying)"), "{done:?}");
    assert!(done.stderr.contains("the restore stopped"), "{done:?}");
    assert!(!done.stdout.contains("Restored"), "{done:?}");
    for file in files_under(&to) {
        let original = data.join(file.file_name().unwrap());
        assert!(
            fs::read(&file).unwrap() == fs::read(&original).unwrap(),
            "{} is not the original",
            file.display()
        );
    }
    assert_eq!(ssh_processes_left(env), Vec::<String>::new());
}

on_backends!(a_restore_stops_when_the_store_goes_away: garage, sftp);

/// An SFTP server that accepts connections and then says nothing: every
/// attempt times out and the run fails naming the URL. The ssh processes
/// of the abandoned attempts end with the run, rather than wait on the
/// silent server (for as long as it keeps the connection open).
#[test]
fn a_silent_sftp_server_fails_clearly_and_leaves_no_ssh_behind() {
    let Some(direct) = Backend::sftp() else {
        return;
    };
    let proxy = FlakyProxy::start(direct.server_address().expect("SFTP address"), 0);
    proxy.stall();
    let silent = direct.via_port(proxy.port);
    let env = TestEnv::new();
    let url = silent.repo_url(&env, "silent");
    let run = run(silent.obnam(&env, &url).args([
        "--storage-timeout",
        "1",
        "--ssh-host-keys-check",
        "no",
        "--client-name",
        "c",
        "ls",
    ]))
    .fails();
    assert!(
        run.stderr.starts_with(&format!("ERROR: {url}: ")),
        "{}",
        run.stderr
    );
    assert_eq!(ssh_processes_left(&env), Vec::<String>::new());
}

/// A store that does not answer: retried, then a clear error naming the
/// URL, exit code 1, in bounded time.
#[test]
fn an_unreachable_s3_store_fails_clearly() {
    let env = TestEnv::new();
    let started = Instant::now();
    let run = run(env
        .obnam()
        .env("AWS_ACCESS_KEY_ID", "GK0b5a3e57c0ffee0000000001")
        .env("AWS_SECRET_ACCESS_KEY", "secret-that-must-not-show")
        .args([
            "--repository",
            "s3://nobucket/prefix",
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--client-name",
            "c",
            "ls",
        ]))
    .fails()
    .no_rust_panic();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("ERROR: s3://nobucket/prefix: cannot read config: "),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret-that-must-not-show"));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn an_unreachable_sftp_server_fails_clearly() {
    let env = TestEnv::new();
    let run = run(env.obnam().args([
        "--repository",
        "sftp://nobody@127.0.0.1:9/srv/repo",
        "--client-name",
        "c",
        "ls",
    ]))
    .fails()
    .no_rust_panic();
    assert!(
        run.stderr
            .starts_with("ERROR: sftp://nobody@127.0.0.1:9/srv/repo: cannot read config: "),
        "{}",
        run.stderr
    );
}

/// The command lines of processes still running that mention the test
/// world's home folder (where SFTP connections keep their ssh control
/// sockets), after giving connections that were closed a moment to exit.
fn ssh_processes_left(env: &TestEnv) -> Vec<String> {
    let home = env.home().display().to_string();
    let start = Instant::now();
    loop {
        let left: Vec<String> = processes_mentioning(&home)
            .into_iter()
            .map(|(_, cmdline)| cmdline)
            .collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Over SFTP each connection is an ssh process (a master that obnam's
/// SSH library starts, which would otherwise persist): when a run ends,
/// successful or not, none of them is left behind.
#[test]
fn sftp_runs_leave_no_ssh_process_behind() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "repo");
    let data = env.path().join("data");
    for i in 0..6 {
        write(&data.join(format!("f{i}")), &noise(200_000, 40 + i));
    }
    let left = || ssh_processes_left(&env);
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    assert_eq!(left(), Vec::<String>::new(), "after a backup");
    let to = env.path().join("out");
    run(backend
        .obnam(&env, &url)
        .args(["--client-name", "c", "restore", "--to"])
        .arg(&to))
    .ok();
    assert_eq!(left(), Vec::<String>::new(), "after a restore");
    // A run that fails after connecting (no such generation).
    run(backend.obnam(&env, &url).args([
        "--client-name",
        "c",
        "ls",
        "--generation",
        "0123456789abcdef",
    ]))
    .fails();
    assert_eq!(left(), Vec::<String>::new(), "after a failed run");
}

/// A second Ctrl-C ends the run at once, without closing its connections
/// in good order, but their ssh processes end all the same (they ran on,
/// re-parented to init, each holding a session on the server).
#[test]
fn a_second_ctrl_c_leaves_no_ssh_process_behind() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "twice");
    let data = env.path().join("data");
    for i in 0..20 {
        write(&data.join(format!("f{i}")), &noise(300_000, 60 + i));
    }
    // A plugin stuck winding down (its `run-interrupted` callback never
    // returns) keeps the run winding down when the second signal comes.
    let plugins = env.plugin_dir("plugins", &["repotest"]);
    let mut cmd = backend.obnam(&env, &url);
    cmd.arg("--plugin-dir")
        .arg(&plugins)
        .args(["--client-name", "c", "backup", "--pack-size", "64KiB"])
        .args(["--testing-storage-faults", "slow=0.5,seed=3"])
        .arg(&data)
        .env("OBNAM_TEST_INTERRUPT", "hang");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let home = env.home().display().to_string();
    let packs = folder_of(&url).join("packs");
    let start = Instant::now();
    while files_under(&packs).len() < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !processes_mentioning(&home).is_empty(),
        "no ssh process started"
    );
    for _ in 0..2 {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let done = Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(done.code, 130, "{done:#?}");
    assert!(
        done.stderr
            .contains("ERROR: interrupted by SIGINT again: stopped at once"),
        "{done:#?}"
    );
    assert_eq!(ssh_processes_left(&env), Vec::<String>::new(), "{done:#?}");
}

/// A run interrupted while it is still connecting (its first few tenths
/// of a second) ends the ssh processes of its connections too: there is
/// no repository yet to close, and a prune or fsck interrupted so left
/// its ssh master connected until the next run.
#[test]
fn a_run_interrupted_while_connecting_leaves_no_ssh_process() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "connecting");
    let data = env.path().join("data");
    write(&data.join("f"), b"data");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    for delay in [50, 100, 150, 200, 300, 400] {
        let mut cmd = backend.obnam(&env, &url);
        cmd.args(["--client-name", "c", "fsck"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let done = Run::from_output(child.wait_with_output().unwrap());
        // Before its handler is in place (its first few tens of
        // milliseconds, before any connection), the signal's default
        // action ends it.
        assert!(matches!(done.code, 0 | 143 | -1), "{delay} ms: {done:#?}");
        assert_eq!(
            ssh_processes_left(&env),
            Vec::<String>::new(),
            "{delay} ms: {done:#?}"
        );
    }
}

/// A run killed with SIGKILL cannot end its ssh processes: they run on,
/// re-parented to init, each holding a session on the server (a nightly
/// job killed by `timeout -s KILL` left more each night). The next run
/// over SFTP ends them, saying so; a running obnam's are not touched.
#[test]
fn the_ssh_processes_of_a_killed_run_are_ended_by_the_next() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "killed");
    let data = env.path().join("data");
    for i in 0..20 {
        write(&data.join(format!("f{i}")), &noise(300_000, 80 + i));
    }
    let home = env.home().display().to_string();
    let packs = folder_of(&url).join("packs");
    let start_slow = |data: &Path| {
        let mut cmd = backend.obnam(&env, &url);
        cmd.args(["--client-name", "c", "backup", "--pack-size", "64KiB"])
            .args(["--testing-storage-faults", "slow=0.5,seed=3"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut killed = start_slow(&data);
    let start = Instant::now();
    while files_under(&packs).len() < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let orphans = processes_mentioning(&home);
    assert!(!orphans.is_empty(), "the killed run left no ssh process");
    // The next run, of another client, ends them, and says so; while it
    // runs, yet another run leaves its ssh processes alone.
    let other_data = env.path().join("other");
    write(&other_data.join("f"), &noise(2_000_000, 7));
    let next = {
        let mut cmd = backend.obnam(&env, &url);
        cmd.args(["--client-name", "d", "backup", "--pack-size", "64KiB"])
            .args(["--testing-storage-faults", "slow=1,seed=5"])
            .arg(&other_data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let start = Instant::now();
    let running = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists();
    while orphans.iter().any(|(pid, _)| running(pid)) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (pid, cmdline) in &orphans {
        assert!(!running(pid), "still running: {cmdline}");
    }
    let beside = run(backend
        .obnam(&env, &url)
        .args(["--client-name", "c", "genids"]))
    .ok();
    assert!(!beside.stderr.contains("ended"), "{beside:#?}");
    let next = Run::from_output(next.wait_with_output().unwrap());
    assert_eq!(next.code, 0, "{next:#?}");
    assert!(
        next.stderr.contains("WARNING: ended ")
            && next
                .stderr
                .contains("left connected by an obnam run that was killed"),
        "{next:#?}"
    );
    assert_eq!(ssh_processes_left(&env), Vec::<String>::new());
    // Their control folders are gone with them (each run removes its
    // own; the killed run's were left, one per connection, for ever).
    fn control_folders(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".ssh-connection")
            {
                found.push(path);
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                control_folders(&path, found);
            }
        }
    }
    let mut found = Vec::new();
    control_folders(&env.home(), &mut found);
    assert_eq!(found, Vec::<PathBuf>::new());
}

/// A remote repository's generation records are kept on this machine,
/// beside the index cache, and a run reads again only the records whose
/// listing changed. So a record altered on the server in a way its
/// listing does not show (the same size, the same time) goes unseen by
/// `genids`, and is named by `fsck`, which reads every record from the
/// server; once its time changes, every run reads it again and names it.
#[test]
fn remote_generation_records_are_cached_and_checked_by_fsck() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "repo");
    // The server is this machine: the URL's path is the folder.
    let after_scheme = &url[url.find("://").unwrap() + 3..];
    let on_server = PathBuf::from(&after_scheme[after_scheme.find('/').unwrap()..]);
    let data = env.path().join("data");
    write(&data.join("f"), b"first\n");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    write(&data.join("f"), b"second\n");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    let genids = || {
        run(backend
            .obnam(&env, &url)
            .args(["--client-name", "c", "genids"]))
    };
    let ids = genids().ok().stdout;
    assert_eq!(ids.lines().count(), 2, "{ids}");

    let cached = cached_generation_records(&env);
    assert_eq!(cached.len(), 2, "{cached:?}");
    let stored = files_under(&on_server.join("generations"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    for path in &stored {
        let meta = fs::metadata(path).unwrap();
        fs::write(path, vec![b'x'; meta.len() as usize]).unwrap();
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(meta.modified().unwrap()).unwrap();
    }

    assert_eq!(genids().ok().stdout, ids);
    let fsck = run(backend
        .obnam(&env, &url)
        .args(["--client-name", "c", "fsck"]))
    .fails()
    .no_rust_panic();
    assert!(fsck.stderr.contains("generations/"), "{fsck:#?}");

    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let file = fs::File::options().write(true).open(&stored[0]).unwrap();
    file.set_modified(later).unwrap();
    let name = stored[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Read again, found damaged: left out, and named.
    let listed = genids().ok().no_rust_panic();
    assert!(!listed.stdout.contains(&name), "{listed:#?}");
    assert_eq!(listed.stdout.lines().count(), ids.lines().count() - 1);
    assert!(listed.stderr.contains(&name), "{listed:#?}");
}

/// Two machines back up one client into one repository, each with its
/// own cache of the repository's records (its own HOME). What one
/// forgets is gone for the other at its next run, whatever the other's
/// cache held: `genids` lists only what is left, a forgotten generation
/// cannot be restored, and the next backup goes on from what is left.
fn a_generation_forgotten_elsewhere_is_gone_here(backend: Backend) {
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "repo");
    let data = env.path().join("data");
    let other_home = env.path().join("other-home");
    fs::create_dir_all(&other_home).unwrap();
    let on = |home: Option<&Path>, args: &[&str]| {
        let mut cmd = backend.obnam(&env, &url);
        if let Some(home) = home {
            cmd.env("HOME", home);
        }
        cmd.args(["--client-name", "c"]).args(args);
        run(&mut cmd)
    };
    for i in 0..3u8 {
        write(&data.join("f"), &[b'0' + i; 100]);
        run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    }
    let genids = || -> Vec<String> {
        let listed = on(None, &["genids"]).ok().stdout;
        listed.lines().map(str::to_string).collect()
    };
    let ids = genids();
    assert_eq!(ids.len(), 3, "{ids:?}");

    on(Some(&other_home), &["forget", "--keep", "1"]).ok();

    assert_eq!(genids(), [ids[2].clone()]);
    // A remote store's records are cached on this machine: what is left,
    // and nothing of what was forgotten.
    let cached = cached_generation_records(&env).len();
    assert_eq!(cached, if backend.is_local() { 0 } else { 1 });
    let to = env.path().join("restored");
    let gone = on(
        None,
        &[
            "restore",
            "--generation",
            &ids[0],
            "--to",
            to.to_str().unwrap(),
        ],
    )
    .fails()
    .no_rust_panic();
    assert!(gone.stderr.contains(&ids[0]), "{gone:#?}");
    write(&data.join("f"), b"after the forget");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    let now = genids();
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], ids[2]);
    on(None, &["restore", "--to", to.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read(restored(&to, &data).join("f")).unwrap(),
        b"after the forget"
    );
}

/// The generation records the test's machine (its HOME) has cached.
fn cached_generation_records(env: &TestEnv) -> Vec<PathBuf> {
    files_under(&env.home().join(".cache/obnam/index"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/records/generations/"))
        .collect()
}

on_backends!(a_generation_forgotten_elsewhere_is_gone_here: garage, moto, sftp, local);

/// Wrong credentials: refused by the server, reported with the URL, and
/// the secret appears neither on the terminal nor in the log.
#[test]
fn wrong_s3_credentials_are_reported_without_the_secret() {
    let Some(Backend::S3 {
        endpoint, bucket, ..
    }) = Backend::garage()
    else {
        return;
    };
    let env = TestEnv::new();
    let log = env.path().join("obnam.log");
    let url = format!("s3://{bucket}/wrong-credentials");
    let run = run(env
        .obnam()
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000bad",
        )
        .args(["--repository", &url, "--s3-endpoint", &endpoint])
        .arg("--log")
        .arg(&log)
        .args(["--log-level", "trace", "--client-name", "c", "ls"]))
    .fails()
    .no_rust_panic();
    assert!(
        run.stderr
            .starts_with(&format!("ERROR: {url}: cannot read config: ")),
        "{}",
        run.stderr
    );
    let logged = fs::read_to_string(&log).unwrap_or_default();
    for text in [&run.stderr, &run.stdout, &logged] {
        assert!(!text.contains("0000000000000bad"), "{text}");
    }
}

/// An SFTP path where no folder can be made (under /proc on the server):
/// the failed write says so, rather than that some object is missing. A
/// backup that pretends fails too, as for a path that is a file or below
/// one (it said that it would back up everything, exit 0: listing a file
/// over SFTP reads as an empty folder).
#[test]
fn an_sftp_path_where_no_folder_can_be_made_is_named() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let Backend::Sftp { base_url, .. } = &backend else {
        unreachable!()
    };
    let env = TestEnv::new();
    let server = &base_url[..base_url["sftp://".len()..].find('/').unwrap() + "sftp://".len()];
    let url = format!("{server}/proc/obnam-test-repo");
    let refused = run(backend
        .obnam(&env, &url)
        .args(["--client-name", "c", "backup"])
        .arg(env.path()))
    .fails();
    assert!(
        refused
            .stderr
            .starts_with(&format!("ERROR: {url}: cannot write ")),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.ends_with(
            ": its folder does not exist and cannot be made (is the repository path a \
             folder that may be written to, and its .tmp, where objects are written first, a \
             folder?)\n"
        ),
        "{}",
        refused.stderr
    );

    let file_url = backend.repo_url(&env, "a-file");
    let file = folder_of(&file_url);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, b"not a repository").unwrap();
    for url in [url, file_url.clone(), format!("{file_url}/below")] {
        let pretended = obnam_test_support::run(
            backend
                .obnam(&env, &url)
                .args(["--client-name", "c", "backup", "--pretend"])
                .arg(env.path()),
        )
        .fails();
        assert_eq!(
            pretended.stderr,
            format!(
                "ERROR: cannot use repository {url}: it is not a folder, and none can be made \
                 there (a part of its path is a file, or a folder that may not be written to)\n"
            ),
        );
        assert!(
            !pretended.stdout.contains("Would back up"),
            "{pretended:#?}"
        );
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a repository");

    // A file where `.tmp/` should be: the message names it (it named only
    // the object, in a folder that was there).
    let repo_url = backend.repo_url(&env, "with-tmp-file");
    let data = env.path().join("data");
    write(&data.join("f"), b"data");
    run(&mut backup_cmd(&backend, &env, &repo_url, "c", &data)).ok();
    let tmp = folder_of(&repo_url).join(".tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::write(&tmp, b"in the way").unwrap();
    write(&data.join("g"), b"more");
    let failed = run(&mut backup_cmd(&backend, &env, &repo_url, "c", &data)).fails();
    assert!(
        failed
            .stderr
            .contains("and its .tmp, where objects are written first, a folder?)"),
        "{failed:#?}"
    );
}

/// This machine's record of an S3 repository names the endpoint it was
/// reached at, however that was given: from `AWS_ENDPOINT_URL` it was
/// taken for AWS's own, so that two stores were one record (a false
/// alarm of a replaced repository) and one store named two ways two
/// records (the guard against a wiped repository did not fire).
#[test]
fn an_s3_repository_is_known_by_the_endpoint_it_was_reached_at() {
    let Some(backend) = Backend::moto() else {
        return;
    };
    let Backend::S3 { endpoint, .. } = &backend else {
        unreachable!()
    };
    let endpoint = endpoint.trim_end_matches('/');
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "known");
    let data = env.path().join("data");
    write(&data.join("f"), b"data");
    let mut cmd = env.obnam();
    cmd.arg("--repository")
        .arg(&url)
        .env("AWS_ENDPOINT_URL", endpoint)
        .args(["--client-name", "c", "backup"])
        .arg(&data);
    run(&mut cmd).ok();
    let records = env.home().join(".local/state/obnam/repositories");
    let read = || -> Vec<String> {
        fs::read_dir(&records)
            .unwrap()
            .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    };
    let texts = read();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains(&format!("{url} at {endpoint}\"")),
        "{texts:?}"
    );
    // The same store named with the option, with a final `/`: the same
    // record, and no other.
    let mut cmd = env.obnam();
    cmd.arg("--repository")
        .arg(&url)
        .env_remove("AWS_ENDPOINT_URL")
        .arg("--s3-endpoint")
        .arg(format!("{endpoint}/"))
        .args(["--client-name", "c", "generations"]);
    run(&mut cmd).ok();
    assert_eq!(read(), texts);
}

/// What crashed writers left in `.tmp/` (a local folder and SFTP write
/// there first) is deleted by the next backup once it is a day old; a
/// newer file, which a running writer may still be writing, stays.
fn stale_temporaries_are_removed(backend: Backend) {
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "tidy");
    let data = env.path().join("data");
    write(&data.join("f"), &noise(100_000, 5));
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    let folder = folder_of(&url).join(".tmp");
    fs::create_dir_all(&folder).unwrap();
    let (old, new) = (folder.join("old-leftover"), folder.join("new-leftover"));
    for file in [&old, &new] {
        fs::write(file, b"half an object").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    assert!(!old.exists(), "a two-day-old leftover stays");
    assert!(new.exists(), "a new temporary file was removed");
}

on_backends!(stale_temporaries_are_removed: local, sftp);

/// The folder on this machine of a repository `url` on the local folder
/// or the SFTP server (which runs on this machine: its folder is the
/// URL's path).
fn folder_of(url: &str) -> PathBuf {
    match url.strip_prefix("sftp://") {
        Some(rest) => PathBuf::from(&rest[rest.find('/').unwrap()..]),
        None => PathBuf::from(url),
    }
}

/// A backup into a repository whose disk fills up leaves nothing of its
/// failed writes in `.tmp/`, nor of those abandoned in flight as the run
/// ends (over SFTP each left its partial temporary file: on a full disk,
/// the room the prune meant to recover needed).
fn a_full_disk_leaves_no_temporaries(backend: Backend) {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: mounting a small file system needs root");
        return;
    }
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "full");
    let folder = folder_of(&url);
    fs::create_dir_all(&folder).unwrap();
    if !obnam_test_support::mount_small_tmpfs(&folder) {
        eprintln!("skipped: cannot mount a small file system here");
        return;
    }
    let data = env.path().join("data");
    write(&data.join("big"), &noise(3 << 20, 9));
    let mut cmd = backup_cmd(&backend, &env, &url, "c", &data);
    cmd.args(["--pack-size", "256KiB", "--storage-timeout", "5"]);
    let failed = run(&mut cmd);
    let left = files_under(&folder.join(".tmp"));
    obnam_test_support::unmount(&folder);
    assert_ne!(failed.code, 0, "{failed:#?}");
    // Each failed try left one (36 here), and each write still in flight
    // when the run stopped (abandoned, not failed) one more (up to 6).
    assert_eq!(left, Vec::<PathBuf>::new(), "left in .tmp/\n{failed:#?}");
}

on_backends!(a_full_disk_leaves_no_temporaries: local, sftp);

/// A folder of the repository that the SFTP server will not let obnam
/// write in (immutable: the server runs as root, which file modes do not
/// stop) is named as a permission of the server's, not as credentials
/// (the login worked).
#[test]
fn a_write_the_sftp_server_refuses_is_named_as_its_permissions() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "refusing");
    let data = env.path().join("data");
    write(&data.join("f"), b"content");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    let locks = folder_of(&url).join("locks");
    let immutable = |on: bool| {
        Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(&locks)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !immutable(true) {
        eprintln!("skipped: chattr +i does not work here");
        return;
    }
    let refused = run(&mut backup_cmd(&backend, &env, &url, "c", &data));
    immutable(false);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(
        refused.stderr.contains(
            "permission denied on the SFTP server (check the owner and permissions of the \
             repository's files and folders there)"
        ) && !refused.stderr.contains("credentials")
            && !refused.stderr.contains("Language Tag"),
        "{refused:#?}"
    );
}

/// A reader of a repository on a read-only file system, over SFTP (a
/// snapshot people only restore from), goes on without its reader's lock
/// at once: the server's refusal there is a generic failure, which the
/// store's retries tried again for some 12 s before every `ls` or
/// restore; and the hint names a read-only file system beside a full
/// disk.
#[test]
fn a_reader_of_a_read_only_sftp_store_does_not_wait_for_its_lock() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "snapshot");
    let data = env.path().join("data");
    write(&data.join("f"), b"content");
    run(&mut backup_cmd(&backend, &env, &url, "c", &data)).ok();
    let folder = folder_of(&url);
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .arg(&folder)
            .arg(&folder)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount(&["--bind"]) {
        eprintln!("skipped: cannot bind-mount here");
        return;
    }
    if !mount(&["-o", "remount,ro,bind"]) {
        obnam_test_support::unmount(&folder);
        eprintln!("skipped: cannot make a bind mount read-only here");
        return;
    }
    let log = env.path().join("ls.log");
    let mut cmd = backend.obnam(&env, &url);
    cmd.args(["--client-name", "c", "--log"])
        .arg(&log)
        .args(["--log-level", "debug", "ls"]);
    let listed = run(&mut cmd);
    obnam_test_support::unmount(&folder);
    assert_eq!(listed.code, 0, "{listed:#?}");
    assert!(listed.stdout.contains("/f\n"), "{listed:#?}");
    assert!(
        listed.stderr.contains("ls: could not take a reader's lock")
            && listed
                .stderr
                .contains("or the folder on a read-only file system?"),
        "{listed:#?}"
    );
    assert_eq!(listed.stderr.matches("WARNING").count(), 1, "{listed:#?}");
    let log = fs::read_to_string(&log).unwrap();
    assert_eq!(
        log.matches("writing the reader's lock").count(),
        1,
        "tried twice, not retried: {log}"
    );
    assert!(!log.contains("trying again in"), "no write retried: {log}");
}

/// A bucket that does not exist is named as such, on Garage and on moto.
fn a_missing_bucket_is_named(backend: Backend) {
    let env = TestEnv::new();
    let url = "s3://no-such-bucket-for-obnam/repo";
    let run = run(backend
        .obnam(&env, url)
        .args(["--client-name", "c", "backup"])
        .arg(env.path()))
    .fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: {url}: cannot read config: the bucket does not exist (obnam does not \
             create buckets: create it with the S3 provider's tools)\n"
        )
    );
}

on_backends!(a_missing_bucket_is_named: garage, moto);

/// No credentials at all: said plainly, naming the variables to set, and
/// not as a network failure that was retried.
#[test]
fn missing_s3_credentials_are_named_at_once() {
    let Some(backend) = Backend::garage() else {
        return;
    };
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "no-credentials");
    let mut cmd = backend.obnam(&env, &url);
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        cmd.env_remove(name);
    }
    // Nothing but 127.0.0.1: no asking a cloud's metadata service.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    let run = run(cmd.args(["--client-name", "c", "ls"])).fails();
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [format!(
            "ERROR: {url}: cannot read config: signing http request: failed to load \
             signing credential (no S3 credentials: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY)"
        )]
    );
}

#[test]
fn bad_repository_urls_are_named_without_their_secrets() {
    let env = TestEnv::new();
    let run = env
        .run(["--repository", "sftp://me:hunter2@127.0.0.1/r", "ls"])
        .fails();
    // Refused where the setting is read: a usage error naming it.
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(
        run.stderr,
        "ERROR: --repository: bad repository URL 'sftp://me:***@127.0.0.1/r': it holds a password; obnam logs in with SSH keys (see --ssh-key)\n"
    );
    let run = env.run(["--repository", "ftp://host/r", "ls"]).fails();
    assert!(
        run.stderr.contains("unknown scheme 'ftp'"),
        "{}",
        run.stderr
    );
}

/// An SFTP URL that names the server by an IPv6 address in brackets
/// (`sftp://user@[::1]:PORT/path`) reaches it: a backup, a restore equal
/// to the data, and a clean `fsck --verify-data`. (ssh was given the
/// brackets as part of the host name.)
#[test]
fn an_sftp_url_with_an_ipv6_address_reaches_the_server() {
    let Some(backend) = Backend::sftp() else {
        return;
    };
    let Some(server) = backend.server_address() else {
        unreachable!("an SFTP backend has a server")
    };
    if std::net::TcpStream::connect(("::1", server.port())).is_err() {
        eprintln!("skipped: the SFTP server does not listen on ::1 (no IPv6 loopback here)");
        return;
    }
    let env = TestEnv::new();
    let url = backend.repo_url(&env, "v6").replacen(
        &server.to_string(),
        &format!("[::1]:{}", server.port()),
        1,
    );
    assert!(url.contains("@[::1]:"), "{url}");
    let data = env.path().join("data");
    write(&data.join("f"), &noise(300_000, 6));
    write(&data.join("sub/g"), b"over IPv6");
    // The host key is the same server's; what is tried here is the URL.
    let no_check = ["--ssh-host-keys-check", "no"];
    run(backup_cmd(&backend, &env, &url, "c", &data).args(no_check)).ok();
    let to = env.path().join("out");
    run(backend
        .obnam(&env, &url)
        .args(no_check)
        .args(["--client-name", "c", "restore", "--to"])
        .arg(&to))
    .ok();
    assert_same(&data, &restored(&to, &data));
    run(backend.obnam(&env, &url).args(no_check).args([
        "--client-name",
        "c",
        "fsck",
        "--verify-data",
    ]))
    .ok();
}

/// A `--ssh-key` that cannot be read is named as such before ssh runs
/// (ssh itself would only say `Permission denied (publickey)`). No
/// server is needed: nothing is connected to.
#[test]
fn an_ssh_key_file_that_cannot_be_read_is_named() {
    let env = TestEnv::new();
    let folder = env.path().join("a-folder");
    fs::create_dir(&folder).unwrap();
    for (key, why) in [
        (env.path().join("no-such-key"), "No such file or directory"),
        (folder, "it is not a file"),
    ] {
        let run = run(env
            .obnam()
            .args(["--repository", "sftp://127.0.0.1:9/r", "--client-name", "c"])
            .arg("--ssh-key")
            .arg(&key)
            .arg("genids"))
        .fails();
        assert!(
            run.stderr.contains(&format!(
                "cannot read the --ssh-key file {}: {why}",
                key.display()
            )),
            "{run:#?}"
        );
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    }
}
