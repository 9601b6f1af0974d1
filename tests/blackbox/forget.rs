//! `obnam forget`: retention policies on histories made with set times
//! (`--testing-generation-time`), checkpoints, named generations, bad
//! policies, and what the kept generations still restore.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_json::Value;

use obnam_test_support::{noise, BackupWorld, Run};

/// The times of a history of twelve backups (UTC): two years, several
/// months, two ISO weeks (2025-11-03 and 2025-11-10 are Mondays), several
/// days and hours, and two backups in one hour.
const TIMES: [&str; 12] = [
    "2024-06-15T10:00:00Z",
    "2025-03-01T10:00:00Z",
    "2025-03-20T10:00:00Z",
    "2025-11-03T09:00:00Z",
    "2025-11-05T09:00:00Z",
    "2025-11-10T09:00:00Z",
    "2025-11-11T08:00:00Z",
    "2025-11-11T20:00:00Z",
    "2025-11-12T07:00:00Z",
    "2025-11-12T07:30:00Z",
    "2025-11-12T08:15:00Z",
    "2025-11-12T09:45:00Z",
];

/// A world with one backup per entry of [`TIMES`], each with a file of
/// its own content; returns the generation ids in order.
fn history(w: &BackupWorld) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, time) in TIMES.iter().enumerate() {
        w.file("f", &noise(3000, i as u64));
        let run = w.backup(&["--testing-generation-time", time]).ok();
        ids.push(generation_of(&run));
    }
    ids
}

fn generation_of(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Generation "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the new generation's id")
        .to_string()
}

/// Run obnam in UTC, so that periods do not depend on the machine's zone.
fn obnam_utc(w: &BackupWorld, args: &[&str]) -> Run {
    obnam_test_support::run(
        w.env
            .obnam()
            .env("TZ", "UTC")
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", &w.client])
            .args(args),
    )
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// What `forget --pretend --output-format json --keep POLICY` keeps:
/// indices into TIMES, and the reasons of each.
fn pretend_keep(w: &BackupWorld, ids: &[String], policy: &str) -> BTreeMap<usize, Vec<String>> {
    let run = obnam_utc(
        w,
        &[
            "forget",
            "--keep",
            policy,
            "--pretend",
            "--output-format",
            "json",
        ],
    )
    .ok();
    let report = json(&run);
    let gens = report[0]["generations"].as_array().expect("generations");
    assert_eq!(gens.len(), ids.len(), "{run:#?}");
    let mut kept = BTreeMap::new();
    for g in gens {
        let at = ids
            .iter()
            .position(|id| g["id"] == **id)
            .expect("a known id");
        if g["action"] == "keep" {
            let reasons = g["reasons"].as_array().unwrap().iter();
            kept.insert(
                at,
                reasons.map(|r| r.as_str().unwrap().to_string()).collect(),
            );
        } else {
            assert_eq!(g["action"], "remove", "{g}");
        }
    }
    kept
}

fn listed(w: &BackupWorld) -> Vec<String> {
    let run = w.obnam(&["generations", "--output-format", "json"]).ok();
    json(&run)
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_unit_keeps_the_newest_generation_of_each_period() {
    let w = BackupWorld::new("c");
    let ids = history(&w);
    for (policy, expected) in [
        ("1", vec![11]),
        ("3", vec![9, 10, 11]),
        ("4h", vec![7, 9, 10, 11]),
        ("2d", vec![7, 11]),
        ("3d", vec![5, 7, 11]),
        ("2w", vec![4, 11]),
        ("3m", vec![0, 2, 11]),
        ("2y", vec![0, 11]),
        ("2d,2w", vec![4, 7, 11]),
        ("100d", vec![0, 1, 2, 3, 4, 5, 7, 11]),
        // Every hour but one holds one generation; 8 and 9 share an hour.
        ("72h,7d,5w,12m,1y", vec![0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11]),
    ] {
        let kept = pretend_keep(&w, &ids, policy);
        let got: Vec<usize> = kept.keys().copied().collect();
        assert_eq!(got, expected, "--keep {policy}");
        // The latest complete generation is always kept, and says so.
        assert_eq!(kept[&11][0], "latest", "--keep {policy}: {kept:?}");
    }
    // --pretend removed nothing.
    assert_eq!(listed(&w), ids);
}

#[test]
fn forget_removes_what_the_policy_does_not_keep_and_the_rest_restores() {
    let w = BackupWorld::new("c");
    let ids = history(&w);
    let run = obnam_utc(&w, &["forget", "--keep", "3d"])
        .ok()
        .no_rust_panic();
    assert!(
        run.stdout
            .contains("client c: kept 3, removed 9 of 12 generations"),
        "{run:#?}"
    );
    let kept = [5, 7, 11];
    assert_eq!(listed(&w), kept.map(|i| ids[i].clone()).to_vec());
    for i in kept {
        let target = w.env.path().join(format!("restored-{i}"));
        w.obnam(&[
            "restore",
            "--generation",
            &ids[i],
            "--to",
            target.to_str().unwrap(),
        ])
        .ok();
        let file = target.join(w.data.strip_prefix("/").unwrap()).join("f");
        assert_eq!(
            fs::read(file).unwrap(),
            noise(3000, i as u64),
            "generation {i}"
        );
    }
    w.obnam(&["fsck", "--verify-data"]).ok();
    // A forgotten generation is gone for every command.
    let gone = w.obnam(&["restore", "--generation", &ids[0], "--to", "/nonexistent-x"]);
    assert!(gone.fails().stderr.contains(&ids[0]));
    // Forgetting again with the same policy removes nothing more.
    let again = obnam_utc(&w, &["forget", "--keep", "3d"]).ok();
    assert!(
        again.stdout.contains("kept 3, removed 0 of 3"),
        "{again:#?}"
    );
}

#[test]
fn periods_follow_the_local_time_zone() {
    let w = BackupWorld::new("c");
    // 23:30 and 00:30 UTC: two days in UTC, one day at UTC-5.
    let mut ids = Vec::new();
    for (i, time) in ["2025-11-11T23:30:00Z", "2025-11-12T00:30:00Z"]
        .iter()
        .enumerate()
    {
        w.file("f", &noise(100, i as u64));
        ids.push(generation_of(
            &w.backup(&["--testing-generation-time", time]).ok(),
        ));
    }
    let kept = |tz: &str| {
        let run = obnam_test_support::run(
            w.env
                .obnam()
                .env("TZ", tz)
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", "c", "forget", "--keep", "5d", "--pretend"]),
        )
        .ok();
        let count = run
            .stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("keep"))
            .count();
        (count, run.stderr)
    };
    assert_eq!(kept("UTC"), (2, String::new()));
    assert_eq!(kept("EST5").0, 1);
    // A zone that cannot be told is said, and UTC's days are counted (it
    // was taken for UTC without a word).
    let (count, said) = kept("Nowhere/Atall");
    assert_eq!(count, 2);
    assert!(
        said.contains("WARNING: the local time zone cannot be told")
            && said.contains("counted in UTC"),
        "{said}"
    );
}

#[test]
fn named_generations_are_removed_and_an_unknown_name_removes_nothing() {
    let w = BackupWorld::new("c");
    let ids = history(&w);
    let run = w.obnam(&["forget", &ids[3], "nosuchgeneration"]).fails();
    assert!(
        run.stderr.contains("no generation 'nosuchgeneration'"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("nothing was removed"), "{run:#?}");
    assert_eq!(listed(&w), ids);
    w.obnam(&["forget", &ids[3], &ids[11]]).ok();
    let mut left = ids.clone();
    left.retain(|id| *id != ids[3] && *id != ids[11]);
    assert_eq!(listed(&w), left);
    let both = w.obnam(&["forget", "--keep", "1", &ids[0]]).fails();
    assert!(both.stderr.contains("not both"), "{both:#?}");
    // A --keep not on the command line is named where it is.
    let mut cmd = w.env.obnam();
    cmd.env("OBNAM_KEEP", "1")
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client, "forget", &ids[0]]);
    let both = obnam_test_support::run(&mut cmd).fails();
    assert!(
        both.stderr
            .contains("not both (--keep is set by environment variable OBNAM_KEEP)"),
        "{both:#?}"
    );
}

/// A client the repository does not know (a name mistyped in a
/// retention job, or the host name by default on the repository's
/// server) is said: `forget --keep` did nothing at every run, without a
/// word.
#[test]
fn forget_for_a_client_the_repository_does_not_know_says_so() {
    let w = BackupWorld::new("c");
    let ids = history(&w);
    for args in [
        &["forget", "--keep", "1"][..],
        &["forget", "--keep", "1", "--prune"],
    ] {
        let mut cmd = w.env.obnam();
        cmd.arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "cc"])
            .args(args);
        let run = obnam_test_support::run(&mut cmd).ok();
        assert!(
            run.stderr.contains(
                "WARNING: there is no client 'cc' in the repository, so nothing to forget"
            ),
            "{run:#?}"
        );
        assert_eq!(listed(&w), ids);
    }
    let mut cmd = w.env.obnam();
    cmd.arg("--repository").arg(&w.repo).args([
        "--client-name",
        "cc",
        "--all-clients",
        "forget",
        "--keep",
        "1",
    ]);
    obnam_test_support::run(&mut cmd).ok();
    assert_eq!(listed(&w).len(), 1);
}

#[test]
fn bad_policies_are_refused_naming_the_bad_rule() {
    let w = BackupWorld::new("c");
    w.file("f", b"x");
    w.backup(&[]).ok();
    for (policy, named) in [
        ("7x", "'7x'"),
        ("-3d", "'-3d'"),
        ("0d", "'0d'"),
        ("7d,,1y", "''"),
        ("3d,2d", "'2d'"),
        ("1.5w", "'1.5w'"),
    ] {
        let run = w
            .obnam(&["forget", "--keep", policy])
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains("--keep") && run.stderr.contains(named),
            "{policy}: {run:#?}"
        );
    }
    // An empty policy is refused too, not taken as "keep nothing".
    let run = w.obnam(&["forget", "--keep", " "]).fails();
    assert!(run.stderr.contains("empty"), "{run:#?}");
    assert_eq!(listed(&w).len(), 1);
}

#[test]
fn checkpoints_older_than_the_latest_complete_generation_go_at_any_forget() {
    let w = BackupWorld::new("c");
    for i in 0..12 {
        w.file(&format!("f{i:02}"), &noise(500_000, i));
    }
    let run = w
        .backup(&["--checkpoint", "1MiB", "--leave-checkpoints"])
        .ok();
    let finished = generation_of(&run);
    let before = listed(&w);
    assert!(before.len() >= 3, "{before:?}");
    let forget = w.obnam(&["forget"]).ok();
    assert!(
        forget
            .stdout
            .contains("checkpoint older than the latest complete generation"),
        "{forget:#?}"
    );
    assert_eq!(listed(&w), vec![finished]);
}

/// Checkpoints of an interrupted run after the last complete generation:
/// the newest stays (the next backup continues from it), older ones go.
#[test]
fn the_newest_checkpoint_of_an_unfinished_run_is_kept() {
    let w = BackupWorld::new("c");
    w.file("first", b"complete");
    let complete = generation_of(&w.backup(&[]).ok());
    for i in 0..12 {
        w.file(&format!("f{i:02}"), &noise(500_000, i + 50));
    }
    // Crash runs at growing write counts until at least two checkpoints
    // stand after the complete generation.
    let checkpoints_after = |w: &BackupWorld| -> Vec<(String, bool)> {
        let run = w.obnam(&["generations", "--output-format", "json"]).ok();
        json(&run)
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap().to_string(),
                    g["is_checkpoint"] == true,
                )
            })
            .collect()
    };
    let mut limit = 4;
    let mut fresh = 0;
    let mut completes = 1;
    loop {
        let run = w.backup(&["--checkpoint", "1MiB", "--crash-limit", &limit.to_string()]);
        assert_ne!(
            run.code, 0,
            "the crash limit {limit} did not stop the run: {run:#?}"
        );
        let gens = checkpoints_after(&w);
        // Checkpoints newer than the newest complete generation.
        let unfinished = gens.iter().rev().take_while(|(_, cp)| *cp).count();
        if unfinished >= 2 {
            break;
        }
        let complete_now = gens.iter().filter(|(_, cp)| !cp).count();
        if complete_now > completes {
            // The crash came after the run had committed (which run gets
            // that far depends on how its checkpoints fell): new data, and
            // the crash runs start over, as after the first backup.
            completes = complete_now;
            fresh += 1;
            for i in 0..12 {
                w.file(&format!("f{i:02}"), &noise(500_000, 100 * fresh + i));
            }
            limit = 4;
            continue;
        }
        limit += 4;
    }
    let gens = checkpoints_after(&w);
    let newest = gens.last().unwrap().clone();
    assert!(newest.1, "{gens:?}");
    // Every complete generation stays, and of the checkpoints only the
    // newest, which is newer than all of them.
    let mut kept: Vec<String> = gens
        .iter()
        .filter(|(_, cp)| !cp)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(kept.first(), Some(&complete));
    kept.push(newest.0.clone());
    let forget = w.obnam(&["forget"]).ok();
    assert!(
        forget
            .stdout
            .contains("newest checkpoint of an unfinished run"),
        "{forget:#?}"
    );
    assert_eq!(listed(&w), kept);
    // The next backup continues from it and finishes; fsck is clean.
    w.backup(&[]).ok();
    w.obnam(&["fsck", "--verify-data"]).ok();
}

#[test]
fn all_clients_applies_the_policy_to_every_client() {
    let w = BackupWorld::new("a");
    let mut per_client: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for client in ["a", "b"] {
        for (i, time) in TIMES[9..].iter().enumerate() {
            w.file("f", &noise(100, i as u64));
            let data = w.data.to_str().unwrap().to_string();
            let run = obnam_test_support::run(
                w.env
                    .obnam()
                    .arg("--repository")
                    .arg(&w.repo)
                    .args(["--client-name", client, "--testing-generation-time", time])
                    .args(["backup", &data]),
            )
            .ok();
            per_client
                .entry(client.into())
                .or_default()
                .insert(generation_of(&run));
        }
    }
    let run = obnam_utc(&w, &["--all-clients", "forget", "--keep", "1"]).ok();
    assert!(
        run.stdout.contains("client a: kept 1, removed 2"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("client b: kept 1, removed 2"),
        "{run:#?}"
    );
}

/// `forget --all-clients` goes on with the other clients when one cannot
/// be done (its backup holds its lock past --lock-timeout), and fails at
/// the end naming it (it stopped at that client: every client after it
/// got no retention).
#[test]
fn forget_all_clients_goes_on_past_a_client_it_cannot_lock() {
    let w = obnam_test_support::BackupWorld::new("c0");
    w.file("a", b"x");
    let as_client = |client: &str, args: &[&str]| {
        obnam_test_support::run(
            w.env
                .obnam()
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", client])
                .args(args),
        )
    };
    let data = w.data.to_str().unwrap().to_string();
    for client in ["c0", "c1", "c2"] {
        for _ in 0..2 {
            as_client(client, &["backup", &data]).ok();
        }
    }
    let now = obnam_test_support::now_ns();
    obnam_test_support::handmade::write_record(
        &w.repo,
        "locks/0123456789abcdef0123456789abcdef",
        &serde_json::json!({"kind": "client", "client": "c1", "host": "elsewhere",
                            "pid": 7, "created": now, "refreshed": now}),
    );
    let forget_all = [
        "forget",
        "--all-clients",
        "--keep",
        "1",
        "--lock-timeout",
        "1",
    ];
    let run = as_client("c0", &forget_all).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("1 of 3 clients were left as they were (c1)"),
        "{run:#?}"
    );
    for (client, left) in [("c0", 1), ("c1", 2), ("c2", 1)] {
        let ids = as_client(client, &["genids"]).ok().stdout;
        assert_eq!(ids.lines().count(), left, "{client}: {ids}");
    }
    // In JSON, the client left as it was has its object too, saying so.
    let run = as_client(
        "c0",
        &[&forget_all[..], &["--output-format", "json"]].concat(),
    )
    .fails();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let clients: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients, ["c0", "c1", "c2"], "{run:#?}");
    assert_eq!(doc[1]["skipped"], true, "{doc:#}");
    assert!(
        doc[1]["error"]
            .as_str()
            .unwrap()
            .contains("is locked by host elsewhere"),
        "{doc:#}"
    );
}

/// A history whose times run backwards (a clock reset between two
/// backups) is judged by its times, as the user asked, but forget warns,
/// naming the two generations, when a calendar rule judges it; a count
/// alone goes by the order and says nothing.
#[test]
fn a_history_whose_times_run_backwards_is_warned_of() {
    let w = BackupWorld::new("c");
    let mut ids = Vec::new();
    for (i, time) in [
        "2025-11-10T08:00:00Z",
        "2025-11-11T08:00:00Z",
        "1970-01-01T00:01:00Z",
    ]
    .iter()
    .enumerate()
    {
        w.file("f", &noise(3000, i as u64));
        ids.push(generation_of(
            &w.backup(&["--testing-generation-time", time]).ok(),
        ));
    }
    let calendar = obnam_utc(&w, &["forget", "--pretend", "--keep", "7d"]).ok();
    let warning = format!(
        "generation {} started at 1970-01-01 00:01:00 +0000, before generation {} that was \
         committed ahead of it started (2025-11-11 08:00:00 +0000)",
        ids[2], ids[1]
    );
    assert!(
        calendar.stderr.contains("WARNING") && calendar.stderr.contains(&warning),
        "{calendar:#?}"
    );
    let count = obnam_utc(&w, &["forget", "--pretend", "--keep", "2"]).ok();
    assert!(!count.stderr.contains("WARNING"), "{count:#?}");
    assert_eq!(listed(&w), ids, "--pretend removed something");
}

/// `forget --prune --output-format json` whose prune fails after the
/// forget removed generations prints what the forget did, with `prune`
/// null, then the error: it printed only the error, as if nothing had
/// been done.
#[test]
fn a_failed_prune_after_a_forget_still_says_what_was_removed() {
    let w = BackupWorld::new("c");
    w.file("d1/f", &noise(100_000, 1));
    w.backup(&[]).ok();
    let index = |w: &BackupWorld| -> BTreeSet<std::path::PathBuf> {
        fs::read_dir(w.repo.join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let first_index = index(&w);
    w.file("d2/g", b"second");
    w.backup(&[]).ok();
    let ids = listed(&w);
    // The second generation's index object lost: its root folder is in
    // a pack no index object lists, and the prune refuses to go on.
    for object in index(&w).difference(&first_index) {
        fs::remove_file(object).unwrap();
    }
    let run = w
        .obnam(&[
            "forget",
            "--keep",
            "1",
            "--prune",
            "--output-format",
            "json",
        ])
        .fails();
    let document = json(&run);
    assert_eq!(document["prune"], Value::Null, "{run:#?}");
    let removed: Vec<&str> = document["forget"][0]["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["action"] == "remove")
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [ids[0].as_str()], "{run:#?}");
    assert!(run.stderr.contains("run 'obnam repair-index'"), "{run:#?}");
    assert_eq!(listed(&w), [ids[1].clone()]);
}
