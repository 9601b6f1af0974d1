//! Storage faults injected on purpose (`--testing-storage-faults`): under
//! every kind of fault, at a high rate and with several seeds, backups,
//! restores, `fsck --verify-data`, `ls` and `generations` either succeed
//! or fail saying `injected storage fault`, and never panic; a restore
//! that succeeds restores exactly what was backed up (a short read is
//! caught, never restored as data); and afterwards fault-free runs work
//! without `force-lock`: a backup, a clean `fsck --verify-data`, and every
//! generation whose backup reported success restores exactly.
//!
//! Each kind runs on a local folder, and on moto's S3 when
//! `OBNAM_TEST_MOTO_ENDPOINT` is set (remote stores write packs in the
//! background and read them whole, other paths than a local folder's).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use obnam_test_support::awkward::restored;
use obnam_test_support::backend::Backend;
use obnam_test_support::{noise, run, Run, TestEnv};

/// What every injected failure's message contains.
const INJECTED: &str = "injected storage fault";

/// A repository on a backend, a client and its data, and what each
/// generation whose backup succeeded held.
struct World {
    env: TestEnv,
    backend: Backend,
    url: String,
    data: PathBuf,
    /// Generation id, and the data's files and contents when it was made.
    backed_up: Vec<(String, BTreeMap<String, Vec<u8>>)>,
}

impl World {
    fn new(backend: Backend) -> Self {
        let env = TestEnv::new();
        let url = backend.repo_url(&env, "repo");
        let data = env.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("big"), noise(160 << 10, 1)).unwrap();
        fs::write(data.join("small"), "hello\n").unwrap();
        World {
            env,
            backend,
            url,
            data,
            backed_up: Vec::new(),
        }
    }

    /// Run obnam on the repository, with `faults` unless empty. Small
    /// packs, so that a backup writes several.
    fn obnam(&self, faults: &str, args: &[&str]) -> Run {
        let mut cmd = self.backend.obnam(&self.env, &self.url);
        cmd.args(["--client-name", "c", "--pack-size", "64KiB"]);
        // A lock left by a process that is gone is broken at once; a
        // wait longer than this is a bug.
        cmd.args(["--lock-timeout", "10"]);
        if !faults.is_empty() {
            cmd.args(["--testing-storage-faults", faults]);
        }
        run(cmd.args(args))
    }

    /// Back up, remembering what a successful backup stored.
    fn backup(&mut self, faults: &str) -> Run {
        let data = self.data.display().to_string();
        let run = self.obnam(faults, &["backup", &data]);
        if run.code == 0 {
            let id = run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("Generation "))
                .unwrap_or_else(|| panic!("no generation id: {run:#?}"))
                .trim()
                .to_string();
            self.backed_up.push((id, contents(&self.data)));
        }
        run
    }

    /// Restore a generation into a new folder; on success, check it.
    fn restore(&self, faults: &str, name: &str, (id, files): &(String, Contents)) -> Run {
        let to = self.env.path().join(name);
        let to_s = to.display().to_string();
        let run = self.obnam(faults, &["restore", "--generation", id, "--to", &to_s]);
        if run.code == 0 {
            assert_eq!(
                &contents(&restored(&to, &self.data)),
                files,
                "generation {id} restored with '{faults}' differs from what was backed up"
            );
        }
        run
    }

    /// Change the data a little for the next backup.
    fn change(&self, step: u64) {
        fs::write(
            self.data.join(format!("new{step}")),
            noise(48 << 10, step + 10),
        )
        .unwrap();
        fs::write(self.data.join("small"), format!("step {step}\n")).unwrap();
    }
}

type Contents = BTreeMap<String, Vec<u8>>;

/// Every file below `dir`, by relative path, with its contents.
fn contents(dir: &Path) -> Contents {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for (rel, data) in contents(&path) {
                out.insert(format!("{name}/{rel}"), data);
            }
        } else {
            out.insert(name, fs::read(&path).unwrap());
        }
    }
    out
}

/// A run under faults: it must not panic, and it either succeeds or fails
/// because of an injected fault. An injected failure is named in an
/// `ERROR:` line; a short read is no failure of the store, so what the
/// user sees is the engine's own error about the damaged object it got,
/// after the warning that names the injected fault. Returns whether any
/// fault was injected.
#[track_caller]
fn check(kind: &str, what: &str, run: &Run) -> bool {
    assert_ne!(run.code, 101, "{what} panicked: {run:#?}");
    let run_ref = Run {
        code: run.code,
        stdout: String::new(),
        stderr: run.stderr.clone(),
    };
    run_ref.no_rust_panic();
    let injected = run.stderr.contains(&format!("WARNING: {INJECTED}"));
    if only_delays(kind) {
        assert_eq!(run.code, 0, "{what} failed: {run:#?}");
    }
    if run.code != 0 {
        let error_lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("ERROR:"))
            .collect();
        assert!(!error_lines.is_empty(), "{what} failed silently: {run:#?}");
        if kind == "short-read" {
            assert!(injected, "{what} failed without a fault: {run:#?}");
        } else {
            assert!(
                error_lines.iter().any(|l| l.contains(INJECTED)),
                "{what} failed, but not with an injected fault: {run:#?}"
            );
        }
    }
    injected
}

/// Kinds that only delay: every run under them must succeed.
fn only_delays(kind: &str) -> bool {
    matches!(kind, "slow" | "stale-list")
}

/// Back up, restore, list and check under `kind=probability` for each
/// round of probability and seed, then check that fault-free runs find
/// everything intact.
fn torture(backend: Backend, kind: &str, rounds: &[(f64, u64)]) {
    let mut w = World::new(backend);
    w.backup("").ok();
    let mut faults_seen = false;
    for &(probability, seed) in rounds {
        // A seed of its own for each run: runs that made the same
        // operations in the same order would otherwise meet the same faults.
        let faults = |run: u64| format!("{kind}={probability},seed={}", seed * 16 + run);
        w.change(seed);
        let run = w.backup(&faults(0));
        faults_seen |= check(kind, &format!("backup with {}", faults(0)), &run);
        let latest = w.backed_up.last().unwrap().clone();
        let run = w.restore(&faults(1), &format!("restored-{seed}"), &latest);
        faults_seen |= check(kind, &format!("restore with {}", faults(1)), &run);
        for (i, args) in [
            &["fsck", "--verify-data"][..],
            &["ls"][..],
            &["generations"][..],
        ]
        .into_iter()
        .enumerate()
        {
            let faults = faults(2 + i as u64);
            let run = w.obnam(&faults, args);
            faults_seen |= check(kind, &format!("{args:?} with {faults}"), &run);
        }
    }
    // The faults were there to be survived.
    assert!(faults_seen, "no {kind} fault was injected");

    // Fault-free, everything works, and nothing committed was lost.
    w.change(1000);
    w.backup("").ok();
    let fsck = w.obnam("", &["fsck", "--verify-data"]);
    assert_eq!(fsck.code, 0, "fsck after {kind} faults: {fsck:#?}");
    let listed = w.obnam("", &["genids"]).ok().stdout;
    for (i, generation) in w.backed_up.iter().enumerate() {
        assert!(listed.contains(&generation.0), "{} is gone", generation.0);
        w.restore("", &format!("final-{i}"), generation).ok();
    }
}

/// One `#[test]` per kind and backend: `faults!(local, local, true)`
/// makes `local::write_fail` and so on. Each kind runs at 0.3 with
/// several seeds, and at 1 too where faults can fail a run; `$many`
/// false runs fewer rounds (the remote store's paths are the point
/// there, and its runs are slower). The kinds that only delay run at
/// lower rates: a restore or fsck of a local folder reads every blob
/// on its own, and at 0.3 the delays alone would take minutes.
macro_rules! faults {
    ($module:ident, $backend:ident, $many:expr) => {
        mod $module {
            use super::*;

            fn on(kind: &str, always: bool) {
                on_at(kind, 0.3, always);
            }

            fn on_at(kind: &str, probability: f64, always: bool) {
                let Some(backend) = Backend::$backend() else {
                    return;
                };
                let mut rounds = if $many {
                    vec![(probability, 1), (probability, 2)]
                } else {
                    vec![(probability, 1)]
                };
                if always {
                    rounds.push((1.0, 4));
                }
                torture(backend, kind, &rounds);
            }

            #[test]
            fn write_fail() {
                on("write-fail", true);
            }

            #[test]
            fn write_lost_ack() {
                on("write-lost-ack", true);
            }

            #[test]
            fn delete_fail() {
                on("delete-fail", true);
            }

            #[test]
            fn read_fail() {
                on("read-fail", true);
            }

            #[test]
            fn short_read() {
                on("short-read", true);
            }

            #[test]
            fn slow() {
                on_at("slow", 0.05, false);
            }

            #[test]
            fn stale_list() {
                on_at("stale-list", 0.2, false);
            }

            #[test]
            fn list_fail() {
                on("list-fail", true);
            }
        }
    };
}

faults!(local, local, true);
faults!(moto, moto, false);

#[test]
fn a_bad_spec_is_refused_naming_the_item() {
    let env = TestEnv::new();
    let repo = env.path().join("repo");
    for (spec, said) in [
        (
            "write-fail=0.5,flood=0.1",
            "bad item 'flood=0.1': unknown fault kind 'flood'",
        ),
        (
            "read-fail=2",
            "bad item 'read-fail=2': the probability must be a number from 0 to 1",
        ),
        (
            "read-fail=much",
            "bad item 'read-fail=much': the probability must be",
        ),
        (
            "slow=0.1,slow=0.2",
            "bad item 'slow=0.2': 'slow' is given twice",
        ),
        ("seed=x", "bad item 'seed=x': the seed must be"),
    ] {
        let run = env
            .run([
                "--repository",
                repo.to_str().unwrap(),
                "--testing-storage-faults",
                spec,
                "generations",
            ])
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr
                .starts_with(&format!("ERROR: --testing-storage-faults: {said}")),
            "{spec}: {run:#?}"
        );
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    }
    assert!(!repo.exists(), "a refused setting touched the repository");
}

#[test]
fn the_setting_works_from_a_config_file_and_the_environment() {
    let mut w = World::new(Backend::Local);
    w.backup("").ok();
    let config = w.env.write(
        "faults.conf",
        "[config]\ntesting-storage-faults = read-fail=1,seed=3\n",
    );
    let mut cmd = w.backend.obnam(&w.env, &w.url);
    cmd.arg("--config")
        .arg(&config)
        .args(["--client-name", "c", "generations"]);
    let refused = run(&mut cmd).fails();
    assert!(
        refused.stderr.contains("ERROR: ")
            && refused
                .stderr
                .contains("cannot read config: injected storage fault (read-fail"),
        "{refused:#?}"
    );
    let mut cmd = w.backend.obnam(&w.env, &w.url);
    cmd.env("OBNAM_TESTING_STORAGE_FAULTS", "list-fail=1")
        .args(["--client-name", "c", "generations"]);
    let run = run(&mut cmd).fails();
    assert!(
        run.stderr.contains("injected storage fault (list-fail"),
        "{run:#?}"
    );
    // Without it, nothing is injected.
    w.obnam("", &["generations"]).ok();
}
