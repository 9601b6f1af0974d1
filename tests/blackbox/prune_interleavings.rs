//! Prune beside backups, at the exact moments that matter: a backup that
//! took its lock before a prune wrote its plan, and one that took it
//! after. The `repotest` test plugin holds a run at a gate right after it
//! takes its client's lock, so each interleaving happens every time.
//!
//! (`prune.rs` has the tests of prune's results: space, crashes, the
//! threshold, pretend; the torture harness has random interleavings.)

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use obnam_test_support::{run, spawn_holding_lock, Run, TestEnv};

struct World {
    env: TestEnv,
    repo: PathBuf,
    plugins: PathBuf,
}

impl World {
    fn new() -> Self {
        let env = TestEnv::new();
        let repo = env.path().join("repo");
        let plugins = env.plugin_dir("test-plugins", &["repotest"]);
        World { env, repo, plugins }
    }

    /// obnam on the repository, the repotest plugin loaded, small packs
    /// (so that one client's data spans several).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.obnam();
        cmd.arg("--plugin-dir")
            .arg(&self.plugins)
            .arg("--repository")
            .arg(&self.repo)
            .args(["--pack-size", "64KiB"])
            .args(args);
        cmd
    }

    fn obnam(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args))
    }

    /// A repotest run of `client` with the files `content_of` would have,
    /// held at a gate right after it takes its lock: returns once it
    /// holds the lock.
    fn gated_run(&self, client: &str, content_of: &str, gate: &Path) -> Child {
        let mut child = self
            .cmd(&["repotest-run", client, "40"])
            .env("OBNAM_TEST_GATE", gate)
            .env("OBNAM_TEST_CONTENT_OF", content_of)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gated run");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("its output"))
            .read_line(&mut line)
            .expect("read its output");
        assert_eq!(line, "locked\n");
        child
    }

    fn verify(&self, client: &str, content_of: &str) {
        let out = run(self
            .cmd(&["repotest-verify", client])
            .env("OBNAM_TEST_CONTENT_OF", content_of))
        .ok();
        assert!(out.stdout.contains(" files 40 ok"), "{}", out.stdout);
    }

    fn fsck_is_clean(&self) {
        let out = self.obnam(&["fsck", "--verify-data"]).ok();
        assert!(out.stdout.contains("0 problems"), "{}", out.stdout);
    }

    fn prune_json(&self) -> serde_json::Value {
        let out = self
            .obnam(&["prune", "--output-format", "json"])
            .ok()
            .no_rust_panic();
        serde_json::from_str(&out.stdout).expect("prune's JSON")
    }

    fn packs(&self) -> Vec<String> {
        let mut names = Vec::new();
        for dir in fs::read_dir(self.repo.join("packs")).unwrap() {
            for f in fs::read_dir(dir.unwrap().path()).unwrap() {
                names.push(f.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        names
    }
}

fn finish(child: Child) -> Run {
    Run::from_output(child.wait_with_output().expect("wait for the run")).ok()
}

/// The data of client `old` is forgotten; a backup of `new` that took its
/// lock before the prune's plan then refers to that very data. The plan
/// waits for it, and when carried out keeps what it committed.
#[test]
fn a_backup_that_began_before_the_plan_keeps_what_it_refers_to() {
    let w = World::new();
    w.obnam(&["repotest-run", "old", "40"]).ok();
    let gate = w.env.path().join("gate");
    let early = w.gated_run("new", "old", &gate);
    w.obnam(&["remove-client", "old"]).ok();

    let first = w.prune_json();
    assert_eq!(first["deferred"], true, "{first:#}");
    assert_eq!(first["waiting_runs"], 1, "{first:#}");
    assert_eq!(first["packs_deleted"], 0, "{first:#}");
    let planned = first["delete"].as_array().unwrap().len();
    assert!(planned > 0, "the old client's packs are planned: {first:#}");

    // The run goes on, and dedups against the planned packs: it took its
    // lock before the plan existed, so it does not know of it.
    fs::write(&gate, b"").unwrap();
    finish(early);
    w.verify("new", "old");

    // The next prune carries the plan out, keeping the packs the new
    // generation needs.
    let second = w.prune_json();
    assert_eq!(second["finished_earlier_plans"], 1, "{second:#}");
    assert!(
        second["packs_kept_for_new_generations"].as_u64().unwrap() > 0,
        "{second:#}"
    );
    w.verify("new", "old");
    w.fsck_is_clean();

    // And once nothing refers to anything, nothing is left (the packs
    // kept above, and the index object written for them, included).
    w.obnam(&["remove-client", "new"]).ok();
    let last = w.prune_json();
    assert_eq!(last["deferred"], false, "{last:#}");
    assert!(w.packs().is_empty(), "{:?}", w.packs());
    assert_eq!(fs::read_dir(w.repo.join("index")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(w.repo.join("prune")).unwrap().count(), 0);
    w.fsck_is_clean();
}

/// A backup that takes its lock after a prune wrote its plan builds on
/// nothing the plan deletes: it stores the data again, and the plan's
/// packs all go.
#[test]
fn a_backup_that_began_after_the_plan_builds_on_nothing_planned() {
    let w = World::new();
    w.obnam(&["repotest-run", "old", "40"]).ok();
    let old_packs = w.packs();
    // A run that holds a lock while the prune plans, so that the deletion
    // waits (and refers to nothing).
    let mut holder = spawn_holding_lock(&mut w.cmd(&["repotest-lock", "bystander", "600"]));
    w.obnam(&["remove-client", "old"]).ok();
    let first = w.prune_json();
    assert_eq!(first["deferred"], true, "{first:#}");

    // Now a backup with the old client's data: it sees the plan.
    run(w
        .cmd(&["repotest-run", "new", "40"])
        .env("OBNAM_TEST_CONTENT_OF", "old"))
    .ok();
    // It ends (killed: its lock is a dead process's now).
    holder.kill().unwrap();
    holder.wait().unwrap();

    let second = w.prune_json();
    assert_eq!(second["finished_earlier_plans"], 1, "{second:#}");
    assert_eq!(second["packs_kept_for_new_generations"], 0, "{second:#}");
    let left = w.packs();
    for p in &old_packs {
        assert!(!left.contains(p), "old pack {p} is still there");
    }
    w.verify("new", "old");
    w.fsck_is_clean();
}

/// Damage the one plan of `repo` as `how` says; returns its key.
fn damage_the_plan(repo: &Path, how: &str) -> String {
    let plans: Vec<PathBuf> = fs::read_dir(repo.join("prune"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "plan"))
        .collect();
    assert_eq!(plans.len(), 1, "{plans:?}");
    let plan = &plans[0];
    match how {
        "changed" => {
            let mut bytes = fs::read(plan).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            fs::write(plan, bytes).unwrap();
        }
        "folder" => {
            fs::remove_file(plan).unwrap();
            fs::create_dir(plan).unwrap();
        }
        "FIFO" => {
            fs::remove_file(plan).unwrap();
            let made = Command::new("mkfifo").arg(plan).status().unwrap();
            assert!(made.success());
        }
        other => panic!("no damage {other}"),
    }
    format!("prune/{}", plan.file_name().unwrap().to_str().unwrap())
}

/// A plan that cannot be read (changed, or a folder or a FIFO in its
/// place) is never carried out. A backup that would take its lock while
/// it is there cannot tell what it names: it stops, naming it and saying
/// that a prune removes it. fsck reports it. The next prune removes it,
/// naming it, and plans afresh by the usual protocol (its deletion waits
/// for the backup that holds a lock); the backup then goes on, keeping
/// clear of the fresh plan, and what it committed survives the plan's
/// carrying out.
#[test]
fn a_damaged_plan_stops_backups_until_a_prune_replaces_it() {
    for how in ["changed", "folder", "FIFO"] {
        let w = World::new();
        w.obnam(&["repotest-run", "old", "40"]).ok();
        let mut holder = spawn_holding_lock(&mut w.cmd(&["repotest-lock", "bystander", "600"]));
        w.obnam(&["remove-client", "old"]).ok();
        let first = w.prune_json();
        assert_eq!(first["deferred"], true, "{how}: {first:#}");
        let key = damage_the_plan(&w.repo, how);

        let refused = run(w
            .cmd(&["repotest-run", "new", "40"])
            .env("OBNAM_TEST_CONTENT_OF", "old"))
        .fails()
        .no_rust_panic();
        assert!(
            refused.stderr.contains(&key) && refused.stderr.contains("'obnam prune' removes it"),
            "{how}: {refused:#?}"
        );
        let fsck = w.obnam(&["fsck"]).fails().no_rust_panic();
        assert!(
            fsck.stderr.contains(&key) && fsck.stderr.contains("never carried out"),
            "{how}: {fsck:#?}"
        );
        // Its report ends as any does (it ended with the error of the
        // look into unlisted packs, which the damaged plan stops, and its
        // JSON form was that error alone).
        assert!(
            fsck.stdout.contains("Checked ") && fsck.stdout.contains("1 problem"),
            "{how}: {fsck:#?}"
        );
        let json = w
            .obnam(&["fsck", "--output-format", "json"])
            .fails()
            .no_rust_panic();
        let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("fsck's JSON");
        assert!(
            report["problems"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p[0].as_str().unwrap().contains(&key)),
            "{how}: {json:#?}"
        );

        // The damaged plan goes; a fresh one waits for the bystander.
        let second = w
            .obnam(&["prune", "--output-format", "json"])
            .ok()
            .no_rust_panic();
        assert!(
            second
                .stderr
                .contains(&format!("removed the damaged prune plan {key}")),
            "{how}: {second:#?}"
        );
        let report: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
        assert_eq!(report["abandoned_plans"], 1, "{how}: {report:#}");
        assert_eq!(report["finished_earlier_plans"], 0, "{how}: {report:#}");
        assert_eq!(report["deferred"], true, "{how}: {report:#}");
        assert_eq!(report["waiting_runs"], 1, "{how}: {report:#}");
        assert!(
            fs::symlink_metadata(w.repo.join(&key)).is_err(),
            "{how}: {key} is still there"
        );

        // Now the backup goes on, and the fresh plan, carried out once
        // the bystander is gone, leaves what it committed.
        run(w
            .cmd(&["repotest-run", "new", "40"])
            .env("OBNAM_TEST_CONTENT_OF", "old"))
        .ok()
        .no_rust_panic();
        holder.kill().unwrap();
        holder.wait().unwrap();
        let third = w.prune_json();
        assert_eq!(third["finished_earlier_plans"], 1, "{how}: {third:#}");
        w.verify("new", "old");
        w.fsck_is_clean();
        assert_eq!(fs::read_dir(w.repo.join("prune")).unwrap().count(), 0);
    }
}

/// A damaged plan stops backups (they cannot tell what it will delete),
/// but not `forget` and `remove-client`, which store nothing: they only
/// remove generations (they were stopped too, with `obnam prune` the only
/// way on).
#[test]
fn a_damaged_plan_does_not_stop_forget_or_remove_client() {
    let w = World::new();
    w.obnam(&["repotest-run", "old", "40"]).ok();
    w.obnam(&["repotest-run", "other", "40"]).ok();
    w.obnam(&["repotest-run", "other", "40"]).ok();
    let mut holder = spawn_holding_lock(&mut w.cmd(&["repotest-lock", "bystander", "600"]));
    w.obnam(&["remove-client", "old"]).ok();
    assert_eq!(w.prune_json()["deferred"], true);
    let key = damage_the_plan(&w.repo, "changed");

    let refused = w
        .obnam(&["repotest-run", "new", "40"])
        .fails()
        .no_rust_panic();
    assert!(refused.stderr.contains(&key), "{refused:#?}");
    let generations = w.obnam(&["--client-name", "other", "genids"]).ok().stdout;
    let first = generations.lines().next().unwrap().to_string();
    w.obnam(&["--client-name", "other", "forget", &first]).ok();
    let left = w.obnam(&["--client-name", "other", "genids"]).ok().stdout;
    assert_eq!(left.lines().count(), 1, "{left}");
    w.obnam(&["remove-client", "other"]).ok();
    let clients = w.obnam(&["clients"]).ok().stdout;
    assert!(!clients.contains("other"), "{clients}");

    // prune then removes the damaged plan, and backups go on.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let run = w.obnam(&["prune"]).ok();
    assert!(
        run.stderr
            .contains(&format!("removed the damaged prune plan {key}")),
        "{run:#?}"
    );
    w.obnam(&["repotest-run", "new", "40"]).ok();
    w.fsck_is_clean();
}
