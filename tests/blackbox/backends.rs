//! One suite of round-trip and seed-behaviour tests, run against every
//! storage backend alike: a local folder, SFTP (OpenSSH on 127.0.0.1) and
//! S3 (Garage on 127.0.0.1), in the manner of restic's backend tests.
//!
//! Each scenario is a function of the [`Backend`]; the `conformance!`
//! macro makes one `#[test]` per scenario and backend. Remote scenarios
//! skip when their server is not running, except under `.ci/run`, which
//! starts the servers and requires them.

use std::fs;
use std::path::PathBuf;
use std::process::Child;

use obnam_test_support::awkward::{assert_same, make_awkward_tree, restored};
use obnam_test_support::backend::Backend;
use obnam_test_support::{bytes_new, noise, run, spawn_holding_lock, Run, TestEnv};

/// A test world on one backend: a repository URL, data, a client.
struct World {
    env: TestEnv,
    backend: Backend,
    url: String,
    data: PathBuf,
    client: String,
}

impl World {
    fn new(backend: Backend) -> Self {
        let env = TestEnv::new();
        let url = backend.repo_url(&env, "repo");
        let data = env.path().join("data");
        fs::create_dir(&data).unwrap();
        World {
            env,
            backend,
            url,
            data,
            client: "client1".into(),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.backend.obnam(&self.env, &self.url);
        cmd.args(["--client-name", &self.client]).args(args);
        cmd
    }

    fn obnam(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args))
    }

    fn backup(&self, extra: &[&str]) -> Run {
        let data = self.data.display().to_string();
        let mut args = vec!["backup", data.as_str()];
        args.extend_from_slice(extra);
        self.obnam(&args)
    }

    fn file(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = self.data.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    /// Restore generation `generation` (or the latest) to a new folder and
    /// return where the data folder landed in it.
    fn restore(&self, name: &str, generation: Option<&str>) -> PathBuf {
        let to = self.env.path().join(name);
        let to_s = to.display().to_string();
        let mut args = vec!["restore", "--to", to_s.as_str()];
        if let Some(g) = generation {
            args.extend(["--generation", g]);
        }
        self.obnam(&args).ok();
        restored(&to, &self.data)
    }

    fn generations(&self) -> Vec<String> {
        self.obnam(&["genids"])
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A number before `label` in the backup summary line, e.g. `files read`
/// in "Backed up 3 files and 2 directories (1 file read, ..." (a plural
/// label is found in its singular form too).
fn summary_count(run: &Run, label: &str) -> u64 {
    let singular = label.replacen("files", "file", 1);
    let at = run
        .stdout
        .find(label)
        .or_else(|| run.stdout.find(&singular))
        .unwrap_or_else(|| panic!("{label}: {run:?}"));
    run.stdout[..at]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

fn awkward_tree_round_trips_through_two_generations(backend: Backend) {
    let w = World::new(backend);
    let tree = make_awkward_tree(&w.data);
    w.backup(&[]).ok();
    assert_same(&tree.root, &w.restore("r1", None));

    fs::write(
        tree.root.join("plain.txt"),
        b"changed, and longer than before\n",
    )
    .unwrap();
    fs::remove_file(tree.root.join("dir2/b.txt")).ok();
    w.file("new/file.bin", &noise(300_000, 5));
    let first = w.restore("before-second", None);
    w.backup(&[]).ok();
    let gens = w.generations();
    assert_eq!(gens.len(), 2);
    assert_same(&tree.root, &w.restore("r2", None));
    // The first generation is still exactly what it was.
    assert_same(&first, &w.restore("r1-again", Some(&gens[0])));
    w.obnam(&["fsck", "--verify-data"]).ok();
}

fn incremental_backups_read_only_what_changed(backend: Backend) {
    let w = World::new(backend);
    for i in 0..6 {
        w.file(&format!("f{i}"), &noise(50_000, i));
    }
    let run = w.backup(&[]).ok();
    assert_eq!(summary_count(&run, " files read"), 6);
    let run = w.backup(&[]).ok();
    assert_eq!(summary_count(&run, " files read"), 0, "{run:?}");
    w.file("f3", &noise(50_000, 99));
    let run = w.backup(&[]).ok();
    assert_eq!(summary_count(&run, " files read"), 1, "{run:?}");
    assert_same(&w.data, &w.restore("out", None));
}

fn identical_data_is_stored_once(backend: Backend) {
    let w = World::new(backend);
    let data = noise(3 << 20, 11);
    w.file("a/original.bin", &data);
    let first = w.backup(&[]).ok();
    assert!(bytes_new(&first) > 3e6, "{first:?}");
    w.file("b/copy.bin", &data);
    let second = w.backup(&[]).ok();
    assert!(
        bytes_new(&second) < 50e3,
        "a copy was stored again: {second:?}"
    );
    // And across clients.
    let mut other = World::new(w.backend.clone());
    other.url = w.url.clone();
    other.client = "client2".into();
    fs::write(other.data.join("third.bin"), &data).unwrap();
    let third = other.backup(&[]).ok();
    assert!(
        bytes_new(&third) < 50e3,
        "another client stored it again: {third:?}"
    );
    assert_same(&other.data, &other.restore("out", None));
}

fn an_interrupted_backup_leaves_a_usable_repository(backend: Backend) {
    let w = World::new(backend);
    for i in 0..8 {
        w.file(&format!("d{}/f{i}", i % 3), &noise(200_000, 40 + i));
    }
    w.backup(&["--pack-size", "64KiB"]).ok();
    let first = w.restore("first", None);
    for i in 8..20 {
        w.file(&format!("d{}/f{i}", i % 3), &noise(150_000, 40 + i));
    }
    // Stop abruptly (as kill -9 would) before the write after the N-th,
    // at several points; every time the repository must still open, the
    // committed generation restore, and fsck pass.
    for limit in [1, 3, 7, 12, 20] {
        let run = w.backup(&[
            "--pack-size",
            "64KiB",
            "--checkpoint",
            "400KiB",
            "--crash-limit",
            &limit.to_string(),
        ]);
        assert_eq!(run.code, 75, "crash limit {limit}: {run:?}");
        w.obnam(&["fsck"]).ok();
    }
    let gens = w.generations();
    assert_same(&first, &w.restore("first-again", Some(&gens[0])));
    w.backup(&["--pack-size", "64KiB"]).ok();
    assert_same(&w.data, &w.restore("last", None));
    w.obnam(&["fsck", "--verify-data"]).ok();
}

fn a_file_that_cannot_be_read_keeps_its_previous_version(backend: Backend) {
    let w = World::new(backend);
    w.file("good.txt", b"good, version 1");
    w.file("flaky.txt", b"flaky, version 1");
    w.backup(&[]).ok();
    let v1 = w.restore("v1", None);
    w.file("good.txt", b"good, version 2");
    w.file("flaky.txt", b"flaky, version 2");
    let run = w.backup(&["--testing-fail-matching", "flaky"]).fails();
    assert!(run.stderr.contains("flaky.txt"), "{}", run.stderr);
    let out = w.restore("v2", None);
    assert_eq!(fs::read(out.join("good.txt")).unwrap(), b"good, version 2");
    assert_eq!(
        fs::read(out.join("flaky.txt")).unwrap(),
        fs::read(v1.join("flaky.txt")).unwrap()
    );
}

fn pretend_changes_nothing(backend: Backend) {
    let w = World::new(backend);
    w.file("a", b"first");
    w.backup(&[]).ok();
    let before = w.obnam(&["ls"]).ok().stdout;
    w.file("b", &noise(100_000, 3));
    let run = w.backup(&["--pretend"]).ok();
    assert!(run.stdout.starts_with("Would back up"), "{run:?}");
    assert_eq!(w.generations().len(), 1);
    assert_eq!(w.obnam(&["ls"]).ok().stdout, before);
}

/// Start `repotest-lock CLIENT 600` (a test plugin) and wait until it
/// holds the lock.
fn hold_lock(w: &World, client: &str) -> Child {
    let plugins = w.env.plugin_dir("test-plugins", &["repotest"]);
    spawn_holding_lock(
        w.backend
            .obnam(&w.env, &w.url)
            .arg("--plugin-dir")
            .arg(&plugins)
            .args(["repotest-lock", client, "600"]),
    )
}

fn clients_lock_each_other_out_but_not_other_clients(backend: Backend) {
    let w = World::new(backend);
    w.file("a", b"data");
    w.backup(&[]).ok();
    let mut holder = hold_lock(&w, "client1");
    let run = w.backup(&["--lock-timeout", "1"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&format!(
            "client 'client1' is locked by host {} (pid {})",
            hostname(),
            holder.id()
        )),
        "{}",
        run.stderr
    );
    let mut other = World::new(w.backend.clone());
    other.url = w.url.clone();
    other.client = "client2".into();
    fs::write(other.data.join("b"), b"other data").unwrap();
    other.backup(&[]).ok();
    holder.kill().unwrap();
    holder.wait().unwrap();
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn encrypted_repositories_round_trip(backend: Backend) {
    let w = World::new(backend);
    let tree = make_awkward_tree(&w.data);
    let with = |pass: &str, args: &[&str]| {
        run(w
            .cmd(&["--kdf-memory", "256KiB", "--kdf-iterations", "1"])
            .env("OBNAM_PASSPHRASE", pass)
            .args(args))
    };
    let data = w.data.display().to_string();
    with("pw", &["--encrypt", "backup", &data]).ok();
    let to = w.env.path().join("out");
    with("pw", &["restore", "--to", &to.display().to_string()]).ok();
    assert_same(&tree.root, &restored(&to, &w.data));
    let run = with("wrong", &["ls"]).fails();
    assert!(
        run.stderr
            .contains("does not open any of its 1 passphrase slot(s)"),
        "{}",
        run.stderr
    );
    with("pw", &["fsck", "--verify-data"]).ok();
}

/// forget and prune on every store: space comes back, the deletion waits
/// for a backup that held its lock when the prune planned, and what is
/// kept restores exactly.
fn forget_and_prune_give_space_back_beside_a_running_backup(backend: Backend) {
    let w = World::new(backend);
    for i in 0..8 {
        w.file(&format!("f{i}"), &noise(120_000, i));
    }
    w.backup(&["--pack-size", "64KiB"]).ok();
    for round in 0..2u64 {
        for i in 0..4 {
            w.file(&format!("f{i}"), &noise(120_000, 100 + round * 10 + i));
        }
        w.backup(&["--pack-size", "64KiB"]).ok();
    }
    let expected = w.restore("before", None);
    w.obnam(&["forget", "--keep", "1"]).ok();

    // A run of another client holds its lock: the deletion waits for it.
    let mut holder = hold_lock(&w, "client2");
    let first = w.obnam(&["prune", "--output-format", "json"]).ok();
    let first: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(first["deferred"], true, "{first:#}");
    assert_eq!(first["packs_deleted"], 0, "{first:#}");
    holder.kill().unwrap();
    holder.wait().unwrap();

    let second = w.obnam(&["prune", "--output-format", "json"]).ok();
    let second: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(second["finished_earlier_plans"], 1, "{second:#}");
    // Two rounds of 4 changed files of 120 kB are gone.
    assert!(
        second["bytes_freed"].as_u64().unwrap() >= 900_000,
        "{second:#}"
    );
    assert_same(&expected, &w.restore("after", None));
    let fsck = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(fsck.stdout.contains("0 problems"), "{}", fsck.stdout);

    // Nothing to do twice.
    let third = w.obnam(&["prune", "--output-format", "json"]).ok();
    let third: serde_json::Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(third["packs_deleted"], 0, "{third:#}");
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            use super::*;
            $( #[test] fn $scenario() { super::$scenario(Backend::Local) } )*
        }
        mod sftp {
            use super::*;
            $( #[test] fn $scenario() { if let Some(b) = Backend::sftp() { super::$scenario(b) } } )*
        }
        mod s3 {
            use super::*;
            $( #[test] fn $scenario() { if let Some(b) = Backend::garage() { super::$scenario(b) } } )*
        }
    };
}

conformance!(
    awkward_tree_round_trips_through_two_generations,
    incremental_backups_read_only_what_changed,
    identical_data_is_stored_once,
    an_interrupted_backup_leaves_a_usable_repository,
    a_file_that_cannot_be_read_keeps_its_previous_version,
    pretend_changes_nothing,
    clients_lock_each_other_out_but_not_other_clients,
    encrypted_repositories_round_trip,
    forget_and_prune_give_space_back_beside_a_running_backup,
);
