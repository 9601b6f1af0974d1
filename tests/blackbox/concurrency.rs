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
