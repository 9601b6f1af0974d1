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
