//! Runs of one client at the same time: the later ones wait for the lock
//! and then back up on top of what the earlier ones committed.

use std::fs;
use std::process::Stdio;

use obnam_test_support::{noise, BackupWorld, Run};

#[test]
fn simultaneous_backups_of_one_client_all_succeed() {
    let w = BackupWorld::new("c");
    for i in 0..6 {
        w.file(&format!("d/f{i}"), &noise(400_000, i));
    }
    let data = w.data.to_str().unwrap().to_string();
    let runs: Vec<_> = (0..5)
        .map(|_| {
            w.env
                .obnam()
                .arg("--repository")
                .arg(&w.repo)
                .args([
                    "--client-name",
                    "c",
                    "--lock-timeout",
                    "300",
                    "backup",
                    &data,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start obnam")
        })
        .collect();
    for child in runs {
        let run = Run::from_output(child.wait_with_output().unwrap());
        let run = run.ok().no_rust_panic();
        // A waiting run knows what the run before it stored: nothing is
        // missing, nothing is read again for want of it.
        assert!(!run.stderr.contains("missing"), "{run:#?}");
        assert!(!run.stderr.contains("WARNING"), "{run:#?}");
    }
    let gens = w.obnam(&["generations"]).ok();
    assert_eq!(gens.stdout.lines().count(), 5, "{gens:#?}");
    w.obnam(&["fsck", "--verify-data"]).ok();
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    for i in 0..6 {
        assert_eq!(
            fs::read(restored.join(format!("d/f{i}"))).unwrap(),
            noise(400_000, i)
        );
    }
}

#[test]
fn generations_are_listed_in_commit_order_and_latest_is_the_finished_one() {
    // Checkpoints of one run share its start time: only the order of
    // commits can tell them and the finished generation apart.
    for round in 0..3 {
        let w = BackupWorld::new("c");
        for i in 0..12 {
            w.file(&format!("f{i:02}"), &noise(500_000, i + round * 100));
        }
        let run = w
            .backup(&["--checkpoint", "1MiB", "--leave-checkpoints"])
            .ok();
        let finished = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Generation "))
            .expect("the new generation's id")
            .to_string();
        let gens = w.obnam(&["generations"]).ok();
        let lines: Vec<&str> = gens.stdout.lines().collect();
        assert!(lines.len() >= 3, "{gens:#?}");
        assert!(
            lines.last().unwrap().starts_with(&finished),
            "the finished generation is not the last: {gens:#?}"
        );
        // Each checkpoint holds more than the one before.
        let counts: Vec<u64> = lines
            .iter()
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let at = words
                    .iter()
                    .position(|w| *w == "files" || *w == "file")
                    .unwrap();
                words[at - 1].parse().unwrap()
            })
            .collect();
        assert!(counts.windows(2).all(|p| p[0] <= p[1]), "{gens:#?}");
        // The latest is what a plain restore brings back: every file.
        let target = w.env.path().join("restored");
        let restore = w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
        assert!(
            restore.stdout.starts_with("Restored 12 files"),
            "{restore:#?}"
        );
    }
}

#[test]
fn readers_beside_a_backup_see_every_generation_complete() {
    // A reader that opened the repository (and loaded its index) before a
    // backup committed must still read that backup's generation whole when
    // it lists it: fsck and restore of `latest` run beside backups, in a
    // loop, while the backups commit new data.
    let w = BackupWorld::new("c");
    w.file("seed", b"first");
    w.backup(&[]).ok();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers = s.spawn(|| {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || runs < 3 {
                w.obnam(&["fsck", "--verify-data"]).ok().no_rust_panic();
                let target = w.env.path().join(format!("restored{runs}"));
                w.obnam(&["restore", "--to", target.to_str().unwrap()])
                    .ok()
                    .no_rust_panic();
                runs += 1;
            }
            runs
        });
        for i in 0..12 {
            w.file(&format!("f{i}"), &noise(300_000, 1000 + i));
            w.backup(&[]).ok();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(readers.join().unwrap() >= 3);
    });
}

/// A lock of another machine whose clock is 40 minutes behind (its record
/// says it was refreshed 40 minutes ago; its object on the store is new)
/// is a live lock: a backup waits for it and a prune defers its deletion
/// (it was broken, and a prune deleted that machine's running backup's
/// data). A dead prune's lock is named as a prune's, and `force-lock`
/// removes it (it told users to run force-lock, which removed nothing).
#[test]
fn locks_are_judged_by_the_stores_clock_and_a_dead_prunes_lock_can_be_removed() {
    use obnam_test_support::handmade;
    use serde_json::json;
    let w = BackupWorld::new("c");
    w.file("a", &noise(100_000, 1));
    w.backup(&[]).ok();
    let behind = obnam_test_support::now_ns() - 40 * 60 * 1_000_000_000;
    handmade::write_record(
        &w.repo,
        "locks/c.ea7aa1fc9efdbe10.0123456789abcdef0123456789abcdef",
        &json!({"kind": "client", "client": "c", "host": "slowclock", "pid": 7,
                "created": behind, "refreshed": behind}),
    );
    let run = w.backup(&["--lock-timeout", "1"]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("client 'c' is locked by host slowclock (pid 7)"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("breaking stale lock"), "{run:#?}");
    // Another client's data, forgotten: the prune waits for the run.
    let as_d = |args: &[&str]| {
        obnam_test_support::run(
            w.env
                .obnam()
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", "d"])
                .args(args),
        )
    };
    w.file("a", &noise(100_000, 2));
    as_d(&["backup", w.data.to_str().unwrap()]).ok();
    let first = as_d(&["genids"]).ok().stdout;
    as_d(&["forget", first.trim()]).ok();
    let pruned = w.obnam(&["prune"]).ok();
    assert!(
        pruned
            .stdout
            .contains("deletion deferred: 1 run (a backup, a restore or a mount, say)"),
        "{pruned:#?}"
    );
    // Which run, said on standard error.
    assert!(
        pruned
            .stderr
            .contains("the deletion waits for: client 'c' is locked by host slowclock (pid 7)"),
        "{pruned:#?}"
    );
    w.obnam(&["force-lock", "--all-clients"]).ok();

    // A prune that is gone, on another host.
    handmade::write_record(
        &w.repo,
        "locks/p.0123456789abcdef0123456789abcdef",
        &json!({"kind": "prune", "client": "", "host": "elsewhere", "pid": 7,
                "created": obnam_test_support::now_ns(), "refreshed": obnam_test_support::now_ns()}),
    );
    let run = w
        .obnam(&["prune", "--lock-timeout", "1"])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr
            .contains("pruning is locked by host elsewhere (pid 7)"),
        "{run:#?}"
    );
    let forced = w.obnam(&["force-lock"]).ok();
    assert!(
        forced
            .stdout
            .contains("removed: pruning is locked by host elsewhere"),
        "{forced:#?}"
    );
    w.obnam(&["prune"]).ok();

    // A repair elsewhere holds the exclusive lock and the prune lock
    // ('p.' lists before 'x.'): the run that meets them names the
    // exclusive one, not a prune nobody ran.
    let now = obnam_test_support::now_ns();
    for name in [
        "locks/p.00000000000000000000000000000001",
        "locks/x.00000000000000000000000000000002",
    ] {
        let kind = if name.contains("/p.") {
            "prune"
        } else {
            "exclusive"
        };
        handmade::write_record(
            &w.repo,
            name,
            &json!({"kind": kind, "client": "", "host": "elsewhere", "pid": 8,
                    "created": now, "refreshed": now, "command": "repair-records"}),
        );
    }
    for args in [
        &["repair-records"][..],
        &["backup", w.data.to_str().unwrap()],
    ] {
        let run = w
            .obnam(&[args, &["--lock-timeout", "1"][..]].concat())
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr
                .contains("the repository is locked by host elsewhere (pid 8)"),
            "{args:?}: {run:#?}"
        );
        assert!(!run.stderr.contains("pruning is locked"), "{run:#?}");
    }
    w.obnam(&["force-lock"]).ok();
}

/// A run that waits for another's lock says so, once, naming the holder
/// and how long it will wait (it showed only a progress line at 0%), and
/// goes on when the lock is gone; `--quiet` silences the notice.
#[test]
fn a_run_waiting_for_a_lock_says_so_once() {
    use obnam_test_support::handmade;
    use serde_json::json;
    let w = BackupWorld::new("c");
    w.file("a", &noise(10_000, 1));
    w.backup(&[]).ok();
    let lock = "locks/c.ea7aa1fc9efdbe10.0123456789abcdef0123456789abcdef";
    let write_lock = || {
        let now = obnam_test_support::now_ns();
        handmade::write_record(
            &w.repo,
            lock,
            &json!({"kind": "client", "client": "c", "host": "busy", "pid": 7,
                    "created": now, "refreshed": now}),
        );
    };
    write_lock();
    let path = w.repo.join(lock);
    let remover = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        std::fs::remove_file(path).unwrap();
    });
    let run = w.backup(&["--lock-timeout", "60"]).ok();
    remover.join().unwrap();
    let notice = "client 'c' is locked by host busy (pid 7) since ";
    assert_eq!(run.stderr.matches(notice).count(), 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("; waiting up to 60s for it (--lock-timeout)"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("WARNING"), "{run:#?}");

    write_lock();
    let run = w
        .backup(&["--lock-timeout", "1", "--quiet"])
        .fails()
        .no_rust_panic();
    assert!(!run.stderr.contains("waiting up to"), "{run:#?}");
    assert!(run.stderr.contains("gave up after waiting 1s"), "{run:#?}");
}

/// A backup that waited for `remove-client` of its client makes the
/// client's record again under its lock (it committed a generation of a
/// client `clients`, `fsck` and `stats` no longer knew).
#[test]
fn a_backup_after_remove_client_of_its_client_is_a_client_again() {
    let w = BackupWorld::new("x");
    w.file("a", b"hello");
    for _ in 0..5 {
        w.backup(&[]).ok();
    }
    let mut remove = w
        .env
        .obnam()
        .arg("--repository")
        .arg(&w.repo)
        .args([
            "--testing-storage-faults",
            "slow=1",
            "--quiet",
            "remove-client",
            "x",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The backup starts while remove-client holds the lock.
    let locks = w.repo.join("locks");
    let started = std::time::Instant::now();
    while fs::read_dir(&locks).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            started.elapsed().as_secs() < 30,
            "remove-client never locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    w.backup(&[]).ok();
    assert!(remove.wait().unwrap().success());
    let clients = w.obnam(&["clients"]).ok().stdout;
    assert_eq!(clients.trim(), "x", "{clients}");
    let fsck = w.obnam(&["fsck"]).ok().stdout;
    assert!(fsck.contains("Checked 1 generation"), "{fsck}");
}
