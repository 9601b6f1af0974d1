//! `obnam backup` with the bundled plugins: errors, incremental backups,
//! per-file failures, checkpoints, `--pretend`, dedup modes, chunking.

use std::fs;
use std::path::{Path, PathBuf};

use obnam_test_support::{
    files_under, mount_small_tmpfs, noise, running_as_root, unmount, BackupWorld, Run,
};

/// The backup world, with what these tests add to it.
trait Inspect {
    fn restore(&self, extra: &[&str]) -> PathBuf;
    fn repo_bytes(&self) -> u64;
    fn generations(&self) -> Vec<String>;
}

fn world() -> BackupWorld {
    BackupWorld::new("testclient")
}

/// A backup of the world's data with the test plugin "hostile" loaded
/// (from a folder of its own) and told what to do by the environment
/// variable `var` (see tests/plugins/hostile).
fn hostile_backup(w: &BackupWorld, var: &str, value: impl AsRef<std::ffi::OsStr>) -> Run {
    let plugins = w.env.plugin_dir("hostile-plugin", &["hostile"]);
    let mut cmd = w.env.obnam();
    cmd.arg("--plugin-dir")
        .arg(&plugins)
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client, "backup"])
        .arg(&w.data)
        .env(var, value);
    obnam_test_support::run(&mut cmd).no_rust_panic()
}

impl Inspect for BackupWorld {
    fn restore(&self, extra: &[&str]) -> PathBuf {
        let to = self.env.path().join(format!("restored-{}", next()));
        let mut args = vec!["restore", "--to", to.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.obnam(&args).ok();
        to.join(self.data.strip_prefix("/").unwrap())
    }

    fn repo_bytes(&self) -> u64 {
        files_under(&self.repo)
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum()
    }

    fn generations(&self) -> Vec<String> {
        self.obnam(&["generations"])
            .ok()
            .stdout
            .lines()
            .map(String::from)
            .collect()
    }
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A number from the summary line, e.g. `files read` in
/// "Backed up 3 files and 2 directories (1 file read, ...".
fn files_read(run: &Run) -> u64 {
    let at = run
        .stdout
        .find(" files read")
        .or_else(|| run.stdout.find(" file read"))
        .expect("summary line");
    let before = &run.stdout[..at];
    before.rsplit(['(', ' ']).next().unwrap().parse().unwrap()
}

#[test]
fn backup_without_repository_roots_or_existing_root_fails_clearly() {
    let w = world();
    let run =
        obnam_test_support::run(w.env.obnam().args(["backup", w.data.to_str().unwrap()])).fails();
    assert!(
        run.stderr.starts_with("ERROR: No --repository setting."),
        "{}",
        run.stderr
    );
    let run = w.obnam(&["backup"]).fails();
    assert_eq!(run.stderr, "ERROR: No backup roots specified\n");
    let run = w
        .obnam(&["backup", "/no/such/root"])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        "ERROR: Backup root does not exist or is not a directory: /no/such/root\n"
    );
    // A root that cannot be looked at for another reason says why.
    let file = w.file("plain", b"x");
    let below = file.join("below");
    let run = w
        .obnam(&["backup", below.to_str().unwrap()])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: backup root {}: Not a directory (os error 20)\n",
            below.display()
        )
    );
    // A URL is named as given, not taken for a folder below this one.
    let run = w
        .obnam(&["backup", "sftp://localhost/tmp"])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr.starts_with(
            "ERROR: backup root sftp://localhost/tmp: obnam backs up local files only"
        ),
        "{run:#?}"
    );
    assert!(!w.repo.exists(), "nothing written for a refused backup");
    // A file:// URL is its path.
    let url = format!("file://{}", w.data.display());
    w.obnam(&["backup", &url]).ok();
    let listed = w.obnam(&["ls"]).ok().stdout;
    assert!(
        listed.contains(&format!("{}/plain", w.data.display())),
        "{listed}"
    );
}

#[test]
fn roots_come_from_the_root_setting_too_and_may_be_files() {
    let w = world();
    w.file("a", b"alpha");
    let single = w.env.write("single.txt", "just a file");
    let root = format!("--root={}", single.display());
    w.obnam(&["backup", &root, w.data.to_str().unwrap()]).ok();
    let to = w.env.path().join("r");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let rel = |p: &Path| to.join(p.strip_prefix("/").unwrap());
    assert_eq!(fs::read(rel(&single)).unwrap(), b"just a file");
    assert_eq!(fs::read(rel(&w.data.join("a"))).unwrap(), b"alpha");
}

#[test]
fn an_unchanged_file_is_not_read_again() {
    let w = world();
    w.file("a", b"one");
    w.file("sub/b", b"two");
    let first = w.backup(&[]).ok();
    assert_eq!(files_read(&first), 2);
    let second = w.backup(&[]).ok();
    assert_eq!(files_read(&second), 0);
    w.file("sub/b", b"changed");
    let third = w.backup(&[]).ok();
    assert_eq!(files_read(&third), 1);
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("sub/b")).unwrap(), b"changed");
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"one");
}

/// Unchanged files are kept in batches: a folder of more of them than
/// a batch, with changed, new, removed and re-moded files among them and
/// a subfolder walked in the middle, comes back exactly as it is now.
#[test]
fn many_unchanged_files_around_changed_ones_are_all_kept() {
    use std::os::unix::fs::PermissionsExt;
    let w = world();
    for i in 0..700 {
        w.file(&format!("big/f{i:03}"), format!("file {i}").as_bytes());
    }
    for i in 0..300 {
        w.file(
            &format!("big/f350-sub/g{i:03}"),
            format!("sub {i}").as_bytes(),
        );
    }
    w.backup(&[]).ok();
    w.file("big/f100", b"changed content");
    w.file("big/f350-sub/g250", b"changed in the subfolder");
    w.file("big/f650new", b"new");
    fs::remove_file(w.data.join("big/f300")).unwrap();
    fs::set_permissions(w.data.join("big/f500"), fs::Permissions::from_mode(0o600)).unwrap();
    let second = w.backup(&[]).ok();
    // The changed, the new and the re-moded file are read; no other.
    assert_eq!(files_read(&second), 4, "{}", second.stdout);
    let restored = w.restore(&[]);
    let mut count = 0;
    for dir in ["big", "big/f350-sub"] {
        for e in fs::read_dir(w.data.join(dir)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                continue;
            }
            let rel = Path::new(dir).join(e.file_name());
            let back = restored.join(&rel);
            assert_eq!(
                fs::read(&back).unwrap(),
                fs::read(e.path()).unwrap(),
                "{rel:?}"
            );
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode(&back), mode(&e.path()), "{rel:?}");
            count += 1;
        }
    }
    assert_eq!(count, 700 + 300);
    assert!(!restored.join("big/f300").exists());
    assert_eq!(files_under(&restored).len(), count);
}

#[test]
fn deleted_files_and_dropped_roots_leave_the_next_generation() {
    let w = world();
    w.file("keep", b"k");
    w.file("gone", b"g");
    let other = w.env.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("x"), "x").unwrap();
    w.obnam(&["backup", w.data.to_str().unwrap(), other.to_str().unwrap()])
        .ok();
    fs::remove_file(w.data.join("gone")).unwrap();
    w.backup(&[]).ok();
    let to = w.env.path().join("r");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let data = to.join(w.data.strip_prefix("/").unwrap());
    assert!(data.join("keep").exists());
    assert!(!data.join("gone").exists());
    assert!(
        !to.join(other.strip_prefix("/").unwrap()).exists(),
        "dropped root is gone"
    );
    // The parent of the root is recorded, with its metadata.
    let parent = to.join(w.env.path().strip_prefix("/").unwrap());
    assert!(parent.is_dir());
}

#[test]
fn a_file_that_fails_is_reported_and_the_rest_is_backed_up() {
    let w = world();
    w.file("good1", b"good one");
    w.file("bad", b"bad file");
    w.file("good2", b"good two");
    let run = w
        .backup(&["--testing-fail-matching", "/bad$"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.code, 1);
    let bad = w.data.join("bad");
    assert!(
        run.stderr
            .contains(&format!("ERROR: {}: simulated failure", bad.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .ends_with("ERROR: There were errors during the backup\n"),
        "{}",
        run.stderr
    );
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("good1")).unwrap(), b"good one");
    assert_eq!(fs::read(restored.join("good2")).unwrap(), b"good two");
    assert!(
        !restored.join("bad").exists(),
        "a new file that failed is not in the generation"
    );
    assert!(
        files_under(&w.repo.join("locks")).is_empty(),
        "the client is unlocked"
    );
}

/// A folder with more entries than one tree object holds (a million or
/// so; here made small with `--testing-max-tree-size`) no longer stops the
/// whole backup: the generation holds its first entries in name order,
/// the rest is reported as not backed up (exit 1), and everything else is
/// backed up whole, the next run too.
#[test]
fn a_folder_too_large_for_a_generation_is_held_in_part_and_reported() {
    let w = world();
    for i in 0..3000 {
        w.file(&format!("big/f{i:04}"), format!("big {i}").as_bytes());
    }
    w.file("small/one", b"one");
    w.file("top", b"top");
    let args = ["--testing-max-tree-size", "64KiB"];
    let run = w.backup(&args).fails().no_rust_panic();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let big = w.data.join("big");
    let line = run
        .stderr
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "ERROR: {}: 3000 entries take more than one folder",
                big.display()
            ))
        })
        .unwrap_or_else(|| panic!("no error names the folder:\n{}", run.stderr));
    // "... holds the first K in name order, and the other 3000-K, from 'fK' on, ..."
    let kept: usize = line
        .split("holds the first ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(kept > 100 && kept < 3000, "{line}");
    assert!(
        line.contains(&format!(
            "the other {}, from 'f{kept:04}' on, are not backed up",
            3000 - kept
        )),
        "{line}"
    );
    assert_eq!(
        run.stderr
            .matches("entries take more than one folder")
            .count(),
        1,
        "{}",
        run.stderr
    );
    // The summary counts what the walk found, and says what of it the
    // generation does not hold.
    assert!(
        run.stdout.contains(&format!(
            "; {} entries of too large folders not in the generation",
            3000 - kept
        )),
        "{run:#?}"
    );
    assert!(w.generations().len() == 1, "the generation is committed");

    let restored = w.restore(&[]);
    let mut held: Vec<String> = fs::read_dir(restored.join("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    held.sort();
    let expected: Vec<String> = (0..kept).map(|i| format!("f{i:04}")).collect();
    assert_eq!(held, expected);
    for i in [0, kept - 1] {
        assert_eq!(
            fs::read(restored.join(format!("big/f{i:04}"))).unwrap(),
            format!("big {i}").as_bytes()
        );
    }
    assert_eq!(fs::read(restored.join("small/one")).unwrap(), b"one");
    assert_eq!(fs::read(restored.join("top")).unwrap(), b"top");

    // The next run builds on it, and says so again.
    w.file("small/two", b"two");
    let run = w.backup(&args).fails().no_rust_panic();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("the first {kept} in name order")),
        "{}",
        run.stderr
    );
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("small/two")).unwrap(), b"two");
    assert_eq!(fs::read_dir(restored.join("big")).unwrap().count(), kept);
}

/// With many workers too, each file of several names is read once, and
/// a chunk that two workers meet at once is stored once: the names of a
/// file taken by two workers at once were both read, and chunks of the
/// same content stored at the same moment were stored twice, for good
/// (2 to 9 % of a file: found by today's fidelity review).
#[test]
fn many_workers_read_each_file_once_and_store_each_chunk_once() {
    let w = world();
    const SIZE: usize = 2_000_000;
    for i in 0..8u64 {
        w.file(&format!("linked/f{i}"), &noise(SIZE, 100 + i));
        for j in 0..5 {
            fs::hard_link(
                w.data.join(format!("linked/f{i}")),
                w.data.join(format!("linked/f{i}-name{j}")),
            )
            .unwrap();
        }
    }
    let same = noise(SIZE, 200);
    for i in 0..4 {
        w.file(&format!("copies/c{i}"), &same);
    }
    let run = w
        .backup(&[
            "--backup-threads",
            "8",
            "--compress-with",
            "none",
            "--output-format",
            "json",
        ])
        .ok();
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    // Eight objects of six names, and four files.
    assert_eq!(summary["files_read"], 12, "{summary}");
    // Nine contents.
    assert_eq!(summary["bytes_new"], 9 * SIZE as u64, "{summary}");
    let restored = w.restore(&[]);
    for i in 0..4 {
        assert_eq!(
            fs::read(restored.join(format!("copies/c{i}"))).unwrap(),
            same
        );
    }
    for i in 0..8u64 {
        assert_eq!(
            fs::read(restored.join(format!("linked/f{i}-name4"))).unwrap(),
            noise(SIZE, 100 + i)
        );
    }
}

/// A file with many names is read once a run, not once a name (10,000
/// names of a 5 MB file were 50 GB of reads): the other names take that
/// read while the walk sees them the same. A name changed since (here: a
/// file of one name put in its place) is read for itself. Restored, the
/// names are one file again, with its content.
#[test]
fn a_file_with_many_names_is_read_once_a_run() {
    use std::os::unix::fs::MetadataExt;
    let w = world();
    let content = noise(300_000, 7);
    w.file("a/orig", &content);
    for i in 0..40 {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        fs::create_dir_all(w.data.join(dir)).unwrap();
        fs::hard_link(w.data.join("a/orig"), w.data.join(format!("{dir}/l{i:02}"))).unwrap();
    }
    let one_worker = ["--backup-threads", "1"];
    let run = w.backup(&one_worker).ok();
    assert_eq!(files_read(&run), 1, "{}", run.stdout);

    // Changed (its change time moves for every name): read once again.
    let touched = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    fs::File::options()
        .write(true)
        .open(w.data.join("a/orig"))
        .unwrap()
        .set_modified(touched)
        .unwrap();
    // One name replaced by a file of its own, of the same size and time.
    let other = noise(300_000, 8);
    fs::remove_file(w.data.join("b/l01")).unwrap();
    w.file("b/l01", &other);
    fs::File::options()
        .write(true)
        .open(w.data.join("b/l01"))
        .unwrap()
        .set_modified(touched)
        .unwrap();
    let run = w.backup(&one_worker).ok();
    assert_eq!(files_read(&run), 2, "{}", run.stdout);

    let restored = w.restore(&[]);
    let orig = fs::metadata(restored.join("a/orig")).unwrap();
    assert_eq!(orig.nlink(), 40, "the names are one file again");
    for i in (0..40).filter(|i| *i != 1) {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        let name = restored.join(format!("{dir}/l{i:02}"));
        assert_eq!(
            fs::metadata(&name).unwrap().ino(),
            orig.ino(),
            "{}",
            name.display()
        );
    }
    assert_eq!(fs::read(restored.join("b/l03")).unwrap(), content);
    assert_eq!(fs::read(restored.join("b/l01")).unwrap(), other);
    assert_eq!(fs::metadata(restored.join("b/l01")).unwrap().nlink(), 1);
    w.obnam(&["verify", w.data.to_str().unwrap()]).ok();

    // Verify compares the content once too, and says so of every name.
    let mut changed = content.clone();
    changed[1000] ^= 1;
    fs::write(w.data.join("a/orig"), &changed).unwrap();
    fs::File::options()
        .write(true)
        .open(w.data.join("a/orig"))
        .unwrap()
        .set_modified(touched)
        .unwrap();
    let run = w.obnam(&["verify", w.data.to_str().unwrap()]).fails();
    let differ = run
        .stdout
        .lines()
        .filter(|l| l.ends_with(": content"))
        .count();
    assert_eq!(differ, 40, "{}", run.stdout);
}

/// A plugin on the chunk hooks that changes the data it was to cut, or
/// answers the id of other content for a chunk, stops the backup before
/// anything is recorded with it (both gave exit 0 and a generation whose
/// files restored as other content, or not at all).
#[test]
fn a_chunk_hook_answer_of_other_data_stops_the_backup() {
    let w = world();
    w.file("a", &noise(5000, 3));
    w.file("b", b"hi\n");
    for (var, how, said) in [
        (
            "OBNAM_TEST_CHUNKER",
            "shrink",
            "a callback of hook 'backup-chunk-boundaries' changed the data it was to cut",
        ),
        (
            "OBNAM_TEST_STORE",
            "other-id",
            "a callback of hook 'backup-store-chunk' answered a chunk id whose token is not \
             the chunk's",
        ),
    ] {
        let run = hostile_backup(&w, var, how).fails();
        assert!(run.stderr.contains(said), "{how}: {run:#?}");
        assert!(
            w.generations().is_empty(),
            "{how}: a generation was committed"
        );
    }
    w.backup(&[]).ok();
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("a")).unwrap(), noise(5000, 3));
}

/// A relative repository is where the run started: a plugin that moves
/// the working folder before the repository is opened makes the run fail,
/// not back up into a new repository elsewhere (exit 0, silent with
/// `--quiet`).
#[test]
fn a_plugin_that_moves_the_working_folder_does_not_move_the_repository() {
    let w = world();
    w.file("a", b"a");
    let plugins = w.env.plugin_dir("hostile-plugin", &["hostile"]);
    let elsewhere = w.env.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let mut cmd = w.env.obnam();
    cmd.current_dir(w.env.path())
        .arg("--plugin-dir")
        .arg(&plugins)
        .args([
            "--repository",
            "relrepo",
            "--client-name",
            &w.client,
            "--quiet",
            "backup",
        ])
        .arg(&w.data)
        .env("OBNAM_TEST_CHDIR", &elsewhere);
    let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
    assert!(
        run.stderr.contains("the working folder moved from")
            && run
                .stderr
                .contains("the relative repository relrepo would lead elsewhere"),
        "{run:#?}"
    );
    assert!(
        !elsewhere.join("relrepo").exists(),
        "a repository was made elsewhere"
    );
    assert!(!w.env.path().join("relrepo").join("config").exists());
}

/// An error from a third-party plugin's callback names the plugin and
/// the hook (`ERROR: No such file or directory (os error 2)` could pass
/// for obnam's own error, and did not say which plugin stopped the
/// backup); obnam's own plugins' errors are said as they are.
#[test]
fn a_third_party_callback_error_names_its_plugin_and_hook() {
    let w = world();
    w.file("a", b"a");
    let run = hostile_backup(&w, "OBNAM_TEST_CHDIR", w.env.path().join("no-such-folder")).fails();
    assert!(
        run.stderr.contains(
            "ERROR: plugin 'hostile' failed in hook 'backup-starting': No such file or directory"
        ),
        "{run:#?}"
    );
}

/// A plugin that calls `exit(0)` in the middle of a backup ends the
/// process, but not with the code it chose: the backup did not finish
/// (nothing was committed), so the run fails and says why.
#[test]
fn a_plugin_that_ends_the_process_does_not_end_it_with_success() {
    let w = world();
    w.file("a", b"a");
    for code in ["0", "3"] {
        let run = hostile_backup(&w, "OBNAM_TEST_EXIT", code);
        assert_eq!(run.code, 1, "exit({code}): {run:#?}");
        assert!(
            run.stderr
                .contains("the process was ended from inside before obnam finished")
                && run.stderr.contains("a plugin called exit"),
            "{run:#?}"
        );
    }
    if w.repo.join("config").exists() {
        assert!(w.generations().is_empty(), "a generation was committed");
    }
    // Without the plugin's exit the same backup succeeds.
    w.backup(&[]).ok();
    assert_eq!(w.generations().len(), 1);
}

#[test]
fn a_bug_while_reading_a_file_stops_the_backup_with_an_error_not_a_hang() {
    let w = world();
    // Enough files that the one that panics shares its worker with others
    // and its folder waits for more than it.
    for i in 0..300 {
        w.file(&format!("d/f{i:03}"), format!("first {i}").as_bytes());
    }
    w.backup(&[]).ok();
    let first = w.generations();
    for i in (0..300).step_by(7) {
        w.file(&format!("d/f{i:03}"), format!("second {i}").as_bytes());
    }
    // f147 is changed (147 = 21 x 7), so a worker reads it, and panics.
    let run = obnam_test_support::run_with_deadline(
        w.env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "testclient", "backup"])
            .arg(&w.data)
            .args(["--testing-panic-matching", "/f147$"]),
        std::time::Duration::from_secs(120),
    )
    .fails()
    .no_rust_panic();
    assert_eq!(run.code, 1, "{run:?}");
    let bad = w.data.join("d/f147");
    assert!(
        run.stderr.contains(&format!(
            "ERROR: internal error (a bug in obnam) backing up {}: simulated bug",
            bad.display()
        )),
        "{}",
        run.stderr
    );
    assert!(files_under(&w.repo.join("locks")).is_empty(), "unlocked");
    assert_eq!(w.generations(), first, "nothing committed");
    w.obnam(&["fsck"]).ok();
    // The first generation is whole, and the next backup completes.
    let restored = w.restore(&[]);
    for i in 0..300 {
        let got = fs::read(restored.join(format!("d/f{i:03}"))).unwrap();
        assert_eq!(got, format!("first {i}").as_bytes());
    }
    w.backup(&[]).ok();
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("d/f147")).unwrap(), b"second 147");
}

#[test]
fn an_unreadable_file_is_an_error_and_others_are_kept() {
    if running_as_root() {
        eprintln!(
            "skipped: root reads mode-000 files (the simulated failure test covers this path)"
        );
        return;
    }
    let w = world();
    w.file("ok", b"ok");
    let secret = w.file("secret", b"s");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let run = w.backup(&[]).fails();
    assert!(run.stderr.contains("Permission denied"), "{}", run.stderr);
}

#[test]
fn checkpoints_stay_with_leave_checkpoints_and_go_without() {
    let w = world();
    for i in 0..8 {
        w.file(&format!("f{i}"), &noise(300_000, i));
    }
    w.backup(&["--checkpoint", "200KiB", "--leave-checkpoints"])
        .ok();
    let gens = w.generations();
    let checkpoints = gens.iter().filter(|g| g.ends_with("(checkpoint)")).count();
    assert!(checkpoints >= 3, "{gens:?}");
    assert_eq!(gens.len(), checkpoints + 1);

    // A restore of a checkpoint (the newest generation, of a backup that
    // ended abruptly) says what it is restoring.
    let w = world();
    for i in 0..8 {
        w.file(&format!("f{i}"), &noise(300_000, i + 50));
    }
    w.backup(&["--checkpoint", "200KiB", "--crash-limit", "20"])
        .fails();
    let ids = w.obnam(&["genids"]).ok().stdout;
    let newest = ids.lines().last().unwrap().to_string();
    assert!(w.generations().last().unwrap().ends_with("(checkpoint)"));
    let to = w.env.path().join("restored");
    let run = w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: generation {newest} is a checkpoint of a backup that did not finish"
        )),
        "{run:#?}"
    );

    let w = world();
    for i in 0..8 {
        w.file(&format!("f{i}"), &noise(300_000, i + 100));
    }
    w.backup(&["--checkpoint", "200KiB"]).ok();
    let gens = w.generations();
    assert_eq!(gens.len(), 1, "{gens:?}");
    assert!(!gens[0].contains("checkpoint"));
}

#[test]
fn a_checkpoint_is_made_in_the_middle_of_a_large_file() {
    let w = world();
    w.file("big", &noise(3_000_000, 7));
    w.backup(&["--checkpoint", "500KiB", "--leave-checkpoints"])
        .ok();
    let checkpoints = w
        .generations()
        .iter()
        .filter(|g| g.ends_with("(checkpoint)"))
        .count();
    assert!(checkpoints >= 2, "{:?}", w.generations());
}

#[test]
fn pretend_leaves_the_repository_byte_for_byte_unchanged() {
    let w = world();
    w.file("a", b"first");
    w.backup(&[]).ok();
    let snapshot = |w: &BackupWorld| -> Vec<(PathBuf, Vec<u8>)> {
        files_under(&w.repo)
            .into_iter()
            .map(|f| {
                let d = fs::read(&f).unwrap();
                (f, d)
            })
            .collect()
    };
    let before = snapshot(&w);
    w.file("b", b"new");
    w.file("a", b"changed");
    let run = w.backup(&["--pretend"]).ok();
    assert!(
        run.stdout.starts_with("Would back up 2 files"),
        "{}",
        run.stdout
    );
    assert_eq!(snapshot(&w), before);
    let run = w.backup(&["--dry-run"]).ok();
    assert!(run.stdout.starts_with("Would back up"), "{}", run.stdout);
    assert_eq!(snapshot(&w), before);
}

/// A pretending backup counts a repository that does not exist yet as
/// empty, and makes none; any other failure to open it fails as the real
/// run would. Every failure was taken for "no repository yet": a wrong
/// passphrase, a file named as the repository, a folder of other things,
/// `--encrypt` on a plain repository said "Would back up" everything,
/// exit 0 (the dry run one makes to check a new job's settings).
#[test]
fn pretend_fails_where_the_real_run_cannot_open_the_repository() {
    let w = world();
    w.file("a", b"first");
    let data = w.data.to_str().unwrap();
    let pretend = |repo: &Path, pass: Option<&str>, extra: &[&str]| {
        let mut cmd = w.env.obnam();
        cmd.arg("--repository")
            .arg(repo)
            .args(["--client-name", "c"])
            .args(extra)
            .args(["backup", "--pretend", data]);
        if let Some(pass) = pass {
            cmd.env("OBNAM_PASSPHRASE", pass);
        }
        obnam_test_support::run(&mut cmd).no_rust_panic()
    };
    // None yet: all of it would be new, and nothing is made.
    let new = w.env.path().join("new");
    let run = pretend(&new, None, &[]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("Would back up 1 file"), "{run:#?}");
    assert!(!new.exists());

    let sealed = w.env.path().join("sealed");
    let mut cmd = w.env.obnam();
    cmd.arg("--repository")
        .arg(&sealed)
        .args(["--client-name", "c", "--encrypt"])
        .args(["--kdf-memory", "256KiB", "--kdf-iterations", "1"])
        .args(["backup", data])
        .env("OBNAM_PASSPHRASE", "right");
    obnam_test_support::run(&mut cmd).ok();
    let run = pretend(&sealed, Some("right"), &[]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("Would back up 1 file"), "{run:#?}");
    assert!(run.stdout.contains("(0 B to read)"), "{run:#?}");
    let run = pretend(&sealed, Some("wrong"), &[]).fails();
    assert!(run.stderr.contains("does not open any of its"), "{run:#?}");
    assert!(!run.stdout.contains("Would back up"), "{run:#?}");

    let file = w.env.path().join("file");
    fs::write(&file, b"not a repository").unwrap();
    let run = pretend(&file, None, &[]).fails();
    assert!(run.stderr.contains("it is not a folder"), "{run:#?}");
    let run = pretend(&file.join("below"), None, &[]).fails();
    assert!(run.stderr.contains("cannot use repository"), "{run:#?}");

    // What the creation of a new encrypted one needs: a secret. A key
    // file that the real run would make is not made.
    let run = pretend(&new, None, &["--encrypt"]).fails();
    assert!(
        run.stderr
            .contains("--encrypt needs a passphrase for the new repository"),
        "{run:#?}"
    );
    assert!(!run.stdout.contains("Would back up"), "{run:#?}");
    let run = pretend(&new, None, &["--encrypt", "--cipher", "rot13"]).fails();
    assert!(run.stderr.contains("'rot13' is not one of"), "{run:#?}");
    let key = w.env.path().join("new.key");
    let with_key = ["--encrypt", "--key-file", key.to_str().unwrap()];
    let run = pretend(&new, None, &with_key);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(!key.exists());
    // One the real run could not make: in no folder, below a file.
    for bad in [w.env.path().join("no-folder/k"), file.join("k")] {
        let with_bad = ["--encrypt", "--key-file", bad.to_str().unwrap()];
        let run = pretend(&new, None, &with_bad).fails();
        assert!(
            run.stderr.contains("cannot create key file"),
            "{bad:?}: {run:#?}"
        );
    }
    let run = pretend(&new, Some("secret"), &["--encrypt"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("Would back up 1 file"), "{run:#?}");
    assert!(!new.exists());

    let other = w.env.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), b"mine").unwrap();
    let run = pretend(&other, None, &[]).fails();
    assert!(
        run.stderr.contains("holds other things (notes.txt)"),
        "{run:#?}"
    );

    w.backup(&[]).ok();
    let run = pretend(&w.repo, None, &["--encrypt"]).fails();
    assert!(run.stderr.contains("is not encrypted"), "{run:#?}");
}

#[test]
fn deduplicate_never_stores_everything_again_and_fatalist_almost_nothing() {
    let w = world();
    for i in 0..4 {
        w.file(&format!("f{i}"), &noise(500_000, i));
    }
    w.backup(&[]).ok();
    let base = w.repo_bytes();
    // Make every file look changed, so that its content is read again.
    let touch = |w: &BackupWorld, t: i64| {
        for i in 0..4 {
            let p = w.data.join(format!("f{i}"));
            let f = fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64))
                .unwrap();
        }
    };
    touch(&w, 1_000_000);
    w.backup(&["--deduplicate", "fatalist"]).ok();
    let fatalist = w.repo_bytes() - base;
    assert!(
        fatalist < 50_000,
        "fatalist grew the repository by {fatalist} bytes"
    );
    touch(&w, 2_000_000);
    let before = w.repo_bytes();
    w.backup(&["--deduplicate", "never"]).ok();
    let never = w.repo_bytes() - before;
    assert!(
        never >= 2_000_000,
        "never grew the repository by only {never} bytes"
    );
    touch(&w, 3_000_000);
    let before = w.repo_bytes();
    w.backup(&["--deduplicate", "verify"]).ok();
    let verify = w.repo_bytes() - before;
    assert!(
        verify < 50_000,
        "verify grew the repository by {verify} bytes"
    );
    let restored = w.restore(&[]);
    for i in 0..4 {
        assert_eq!(
            fs::read(restored.join(format!("f{i}"))).unwrap(),
            noise(500_000, i)
        );
    }
}

#[test]
fn verify_keeps_colliding_chunks_apart() {
    let w = world();
    // Small chunks and tokens of one byte: many different chunks collide.
    let small = [
        "--chunk-min-size",
        "1KiB",
        "--chunk-avg-size",
        "4KiB",
        "--chunk-max-size",
        "16KiB",
    ];
    for i in 0..6 {
        w.file(&format!("f{i}"), &noise(200_000, i + 50));
    }
    let mut args = vec!["--testing-weak-tokens", "--deduplicate", "verify"];
    args.extend_from_slice(&small);
    w.backup(&args).ok();
    // Every chunk read back is checked against its (weak) token.
    let restored = w.restore(&["--testing-weak-tokens"]);
    for i in 0..6 {
        assert_eq!(
            fs::read(restored.join(format!("f{i}"))).unwrap(),
            noise(200_000, i + 50),
            "f{i} restores exactly"
        );
    }
}

#[test]
fn inserting_one_byte_near_the_start_costs_a_few_chunks() {
    let w = world();
    let original = noise(8 << 20, 3);
    w.file("big", &original);
    w.backup(&[]).ok();
    let before = w.repo_bytes();
    let mut changed = original.clone();
    changed.insert(100_000, 0x42);
    w.file("big", &changed);
    w.backup(&[]).ok();
    let grown = w.repo_bytes() - before;
    // The default chunks average 256 KiB and are at most 1 MiB.
    assert!(grown < 3 << 20, "an inserted byte cost {grown} bytes");
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("big")).unwrap(), changed);

    // Fixed-size chunks re-store everything after the insertion.
    let w2 = world();
    w2.file("big", &original);
    w2.backup(&["--chunking", "fixed"]).ok();
    let before = w2.repo_bytes();
    w2.file("big", &changed);
    w2.backup(&["--chunking", "fixed"]).ok();
    let grown_fixed = w2.repo_bytes() - before;
    assert!(
        grown_fixed > 7 << 20,
        "fixed chunking grew by {grown_fixed}"
    );
}

#[test]
fn bad_chunk_settings_are_clear_errors() {
    let w = world();
    w.file("a", b"x");
    let run = w.backup(&["--chunk-min-size", "3"]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("--chunk-min-size: '3' is out of range: give 64 to 1MiB"),
        "{}",
        run.stderr
    );
    let run = w
        .backup(&["--chunk-min-size", "65"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr
            .contains("--chunk-min-size: '65' is not a multiple of 2"),
        "{}",
        run.stderr
    );
    let run = w.backup(&["--testing-fail-matching", "(unclosed"]).fails();
    assert!(
        run.stderr.contains("bad regular expression '(unclosed'"),
        "{}",
        run.stderr
    );
}

#[test]
fn fsck_passes_a_good_repository_and_names_a_corrupt_file() {
    let w = world();
    w.file("big", &noise(1_000_000, 9));
    w.file("small", b"small");
    w.backup(&[]).ok();
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.ends_with("; 0 problems\n"), "{}", run.stdout);
    // Flip one byte in the middle of the data pack.
    let pack = files_under(&w.repo.join("packs"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&pack, bytes).unwrap();
    let run = w.obnam(&["fsck", "--verify-data"]).fails().no_rust_panic();
    let big = w.data.join("big");
    assert!(
        run.stderr
            .contains(&format!("{}: object chunk/", big.display()))
            && run.stderr.contains("its content does not match its id"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with("ERROR: The repository has problems\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_closed_output_pipe_stops_the_backup_with_the_repository_consistent() {
    use std::io::Read;
    use std::process::Stdio;
    let w = world();
    // More "backing up" lines than a pipe holds (64 KiB): the walk cannot
    // write them all before the pipe is closed, however fast it runs (it
    // no longer waits for the workers file by file), so the close always
    // comes before the commit.
    for i in 0..2_000 {
        w.file(
            &format!("d/a-file-with-a-name-long-enough-to-fill-the-pipe-{i:04}"),
            format!("file {i}").as_bytes(),
        );
    }
    let mut child = w
        .env
        .obnam()
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "testclient", "--verbose", "backup"])
        .arg(&w.data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "stopped, not finished");
    assert!(files_under(&w.repo.join("locks")).is_empty(), "unlocked");
    let gens = w.obnam(&["generations"]).ok();
    assert_eq!(gens.stdout, "", "nothing committed");
    w.obnam(&["fsck"]).ok();
    // The next backup completes.
    w.backup(&[]).ok();
}

#[test]
fn running_out_of_space_stops_the_backup_cleanly() {
    let w = world();
    let small = w.env.path().join("small");
    fs::create_dir(&small).unwrap();
    if !mount_small_tmpfs(&small) {
        eprintln!("skipped: cannot mount a small tmpfs here (not root?)");
        return;
    }
    let repo = small.join("repo");
    w.file("big", &noise(3_000_000, 11));
    let run = obnam_test_support::run(
        w.env
            .obnam()
            .arg("--repository")
            .arg(&repo)
            .args(["--client-name", "c", "backup"])
            .arg(&w.data),
    );
    if run.code == 0 {
        unmount(&small);
        panic!("a backup larger than the file system succeeded: {run:?}");
    }
    let stderr = run.stderr.clone();
    let locks = files_under(&repo.join("locks"));
    let fsck = obnam_test_support::run(w.env.obnam().arg("--repository").arg(&repo).args([
        "--client-name",
        "c",
        "fsck",
    ]));
    unmount(&small);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(locks.is_empty(), "unlocked: {locks:?}");
    assert_eq!(
        fsck.code, 0,
        "the repository still opens and checks: {fsck:?}"
    );
}

#[test]
fn what_fails_now_keeps_its_previous_version() {
    let w = world();
    w.file("file", b"version one");
    w.file("dir/inner", b"inner one");
    w.file("other", b"other one");
    w.backup(&[]).ok();
    w.file("file", b"version two");
    w.file("dir/inner", b"inner two");
    w.file("other", b"other two");
    // A file and a whole directory fail as if unreadable.
    let run = w
        .backup(&[
            "--testing-fail-matching",
            "/file$",
            "--testing-fail-matching",
            "/dir$",
        ])
        .fails();
    assert!(
        run.stderr
            .ends_with("ERROR: There were errors during the backup\n"),
        "{}",
        run.stderr
    );
    let restored = w.restore(&[]);
    assert_eq!(fs::read(restored.join("file")).unwrap(), b"version one");
    assert_eq!(fs::read(restored.join("dir/inner")).unwrap(), b"inner one");
    assert_eq!(fs::read(restored.join("other")).unwrap(), b"other two");
}

/// The lines of a run's standard error that announce a new repository.
fn creation_notices(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.contains("created a new"))
        .map(String::from)
        .collect()
}

#[test]
fn the_first_backup_says_once_that_it_created_a_repository() {
    let w = world();
    w.file("a", b"hello");
    let first = w.backup(&[]).ok();
    let notices = creation_notices(&first);
    assert_eq!(notices.len(), 1, "{first:#?}");
    let repo = w.repo.to_str().unwrap();
    assert!(notices[0].contains(repo), "names the path: {notices:?}");
    assert!(
        notices[0].contains("not encrypted") && notices[0].contains("--encrypt"),
        "suggests --encrypt: {notices:?}"
    );
    // Only the run that made it says so.
    let second = w.backup(&[]).ok();
    assert_eq!(
        creation_notices(&second),
        Vec::<String>::new(),
        "{second:#?}"
    );

    // An encrypted one says what it is, and suggests nothing.
    let w = world();
    w.file("a", b"hello");
    let passphrase = w.env.write("passphrase", "correct horse");
    let run = w
        .backup(&[
            "--encrypt",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ])
        .ok();
    let notices = creation_notices(&run);
    assert_eq!(notices.len(), 1, "{run:#?}");
    assert!(
        notices[0].contains("new encrypted repository"),
        "{notices:?}"
    );
    assert!(!notices[0].contains("--encrypt"), "{notices:?}");

    // --quiet silences it.
    let w = world();
    w.file("a", b"hello");
    let run = w.backup(&["--quiet"]).ok();
    assert_eq!(run.stderr, "", "{run:#?}");
}

#[test]
fn of_simultaneous_first_backups_only_the_creator_says_so() {
    let w = world();
    w.file("a", b"hello");
    let data = w.data.to_str().unwrap().to_string();
    let children: Vec<std::process::Child> = (0..4)
        .map(|i| {
            w.env
                .obnam()
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", &format!("client{i}"), "backup", &data])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start obnam")
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from_output(c.wait_with_output().expect("wait")))
        .map(Run::ok)
        .collect();
    let notices: usize = runs.iter().map(|r| creation_notices(r).len()).sum();
    assert_eq!(notices, 1, "{runs:#?}");
}

#[test]
fn commands_that_only_read_create_nothing_and_announce_nothing() {
    let w = world();
    for args in [&["generations"][..], &["ls"], &["fsck"]] {
        let run = w.obnam(args).fails().no_rust_panic();
        assert!(
            run.stderr.contains("is not an obnam repository"),
            "{args:?}: {run:#?}"
        );
        assert_eq!(creation_notices(&run), Vec::<String>::new(), "{run:#?}");
        assert!(!w.repo.exists(), "{args:?} made {}", w.repo.display());
    }
    // Nor the folders above a mistyped path (they were left, empty).
    let deep = w.env.path().join("typo/a/b");
    for args in [
        &["generations"][..],
        &["restore", "--to", "/tmp/never-made"],
    ] {
        let run = obnam_test_support::run(w.env.obnam().arg("--repository").arg(&deep).args(args))
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains("is not an obnam repository"),
            "{run:#?}"
        );
        assert!(!w.env.path().join("typo").exists(), "{args:?}");
    }
}

/// A tree hundreds of folders deep backs up and restores whole, bit for
/// bit and metadata too, even with few file descriptors: the walk lists a
/// folder and stats its children through it, then closes it before it
/// goes below, so the folders it holds open do not grow with the depth.
#[test]
fn a_tree_hundreds_of_folders_deep_backs_up_with_few_file_descriptors() {
    let w = world();
    let mut dir = w.data.clone();
    for level in 0..300 {
        dir.push("d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), format!("level {level}\n")).unwrap();
    }
    // 300 folders held open at once would not fit in 256 descriptors.
    let limited = |args: &[&str]| {
        let plain = w.env.obnam();
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
            .arg(plain.get_program())
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", &w.client])
            .args(args);
        for (key, value) in plain.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = plain.get_current_dir() {
            cmd.current_dir(dir);
        }
        obnam_test_support::run(&mut cmd)
    };
    let data = w.data.to_str().unwrap().to_string();
    let run = limited(&["backup", &data]).ok();
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains(" 0 errors"), "{said}");
    // Again, with nothing changed: every folder compared with its
    // previous tree.
    limited(&["backup", &data]).ok();
    let restored = w.restore(&[]);
    let differences = obnam_test_support::awkward::compare_trees(&w.data, &restored, true);
    assert!(differences.is_empty(), "{differences:?}");
}

/// Names that could fake output: a newline and an `ERROR:` line, terminal
/// escapes, and two different bytes that are not UTF-8.
const HOSTILE_NAMES: [&[u8]; 4] = [
    b"evil\nERROR: fake line",
    b"esc\x1b[2J\x1b]0;title\x07",
    b"bad\xff",
    b"bad\xfe",
];

/// No line of `text` is a faked one, no escape reaches the terminal, and
/// each hostile name is shown escaped, as `ls` shows it.
#[track_caller]
fn shows_names_escaped(text: &str, dir: &Path) {
    assert!(
        !text.lines().any(|l| l.starts_with("ERROR: fake line")),
        "a name made a line of its own:\n{text}"
    );
    assert!(!text.contains('\x1b'), "a raw escape: {text:?}");
    assert!(!text.contains('\u{fffd}'), "a lossy name: {text:?}");
    let d = dir.display();
    for shown in [
        format!("{d}/evil\\nERROR: fake line"),
        format!("{d}/esc\\u{{001b}}[2J\\u{{001b}}]0;title\\u{{0007}}"),
        format!("{d}/bad\\xff"),
        format!("{d}/bad\\xfe"),
    ] {
        assert!(text.contains(&shown), "{shown} not in:\n{text}");
    }
}

#[test]
fn backup_messages_show_names_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let w = world();
    for name in HOSTILE_NAMES {
        fs::write(w.data.join(std::ffi::OsStr::from_bytes(name)), b"x").unwrap();
    }
    // The --verbose lines.
    let run = w.backup(&["--verbose"]).ok();
    shows_names_escaped(&run.stdout, &w.data);
    // The error lines, on standard error and in a json-lines stream.
    for name in HOSTILE_NAMES {
        fs::write(w.data.join(std::ffi::OsStr::from_bytes(name)), b"changed").unwrap();
    }
    let run = w
        .backup(&["--testing-fail-matching", "/(evil|esc|bad)"])
        .fails();
    shows_names_escaped(&run.stderr, &w.data);
    let run = w
        .backup(&[
            "--testing-fail-matching",
            "/(evil|esc|bad)",
            "--output-format",
            "json-lines",
        ])
        .fails();
    // In JSON, a path is the name itself where it is UTF-8 (JSON escapes
    // its newline and escapes), else escaped with its exact bytes.
    let mut found: Vec<Vec<u8>> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "error")
        .map(|v| match v.get("path_bytes") {
            Some(bytes) => {
                let bytes: Vec<u8> = serde_json::from_value(bytes.clone()).unwrap();
                let shown = v["path"].as_str().unwrap();
                assert!(shown.contains("bad\\x"), "{v}");
                bytes
            }
            None => v["path"].as_str().unwrap().as_bytes().to_vec(),
        })
        .collect();
    found.sort();
    let mut want: Vec<Vec<u8>> = HOSTILE_NAMES
        .iter()
        .map(|name| [w.data.as_os_str().as_bytes(), b"/", name].concat())
        .collect();
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn a_root_below_a_symlink_is_refused_beside_the_link_and_recorded_under_the_real_folder_alone() {
    use obnam_test_support::awkward::set_mtime;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let w = world();
    w.file("esc/realdir/file", b"in the real folder");
    let real = w.data.join("esc/realdir");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&real, 1_500_000_000, 123);
    let link = w.data.join("esc/viasym");
    std::os::unix::fs::symlink("realdir", &link).unwrap();
    let below = link.join("file");
    let (link_arg, below_arg) = (link.to_str().unwrap(), below.to_str().unwrap());

    // Beside the link itself, or beside a root whose walk records the link
    // as a link, the root below it cannot be backed up: refused, not
    // silently dropped.
    for outer in [link_arg, w.data.to_str().unwrap()] {
        let run = w
            .obnam(&["backup", outer, below_arg])
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains(&format!(
                "backup root {below_arg} is below {link_arg}, a symbolic link"
            )),
            "{run:#?}"
        );
    }
    assert!(!w.repo.exists(), "nothing was written");

    // Alone, it is backed up at the path given; the link on the way is
    // recorded as the folder it leads to, with that folder's metadata.
    let run = w.obnam(&["backup", below_arg]).ok();
    assert!(run.stdout.contains("0 errors"), "{run:#?}");
    let listed: serde_json::Value = serde_json::from_str(
        &w.obnam(&["ls", "--output-format", "json", link_arg])
            .ok()
            .stdout,
    )
    .unwrap();
    let entry = |path: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {listed:#}"))
            .clone()
    };
    let parent = entry(link_arg);
    let m = fs::metadata(&real).unwrap();
    assert_eq!(parent["kind"], "dir", "{parent:#}");
    assert_eq!(parent["mode"], m.mode(), "{parent:#}");
    assert_eq!(parent["uid"], m.uid(), "{parent:#}");
    assert_eq!(parent["gid"], m.gid(), "{parent:#}");
    assert_eq!(
        parent["mtime_ns"], 1_500_000_000_000_000_123_i64,
        "{parent:#}"
    );
    assert_eq!(entry(below_arg)["kind"], "file");
    let restored = w.restore(&[]);
    assert_eq!(
        fs::read(restored.join("esc/viasym/file")).unwrap(),
        b"in the real folder"
    );
    let m = fs::symlink_metadata(restored.join("esc/viasym")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o750);
}

/// A root that is a symbolic link to a folder: written as `link/` or
/// `link/.`, the folder it leads to is backed up, at its real path, and a
/// warning says so; written as `link`, the link alone, and a warning says
/// how to back up the folder. (`link/` backed up only the link, with
/// exit 0 and "1 file", where a user of Obnam 1.x or the shell expects
/// the folder.)
#[test]
fn a_root_written_as_a_folder_through_a_symlink_backs_up_the_folder() {
    let w = world();
    w.file("real/sub/f", b"content");
    let link = w.data.join("link");
    std::os::unix::fs::symlink("real", &link).unwrap();
    let real = w.data.join("real");
    let link_s = link.to_str().unwrap().to_string();
    for written in [format!("{link_s}/"), format!("{link_s}/.")] {
        let run = w.obnam(&["backup", &written]).ok();
        assert!(
            run.stderr.contains(&format!(
                "WARNING: backup root {written} is a symbolic link to the folder {}: that folder \
                 is backed up, at its own path",
                real.display()
            )),
            "{run:#?}"
        );
        let listed = w.obnam(&["ls"]).ok().stdout;
        assert!(
            listed.contains(&format!("{}/sub/f", real.display())),
            "{written}: {listed}"
        );
        // verify takes the root as backup did.
        let run = w.obnam(&["verify", &written]).ok();
        assert!(run.stdout.contains("no differences"), "{written}: {run:#?}");
    }
    let run = w.obnam(&["backup", &link_s]).ok();
    assert!(
        run.stderr.contains(&format!(
            "backup root {link_s} is a symbolic link to a folder: only the link is backed up; \
             write {link_s}/ to back up the folder it leads to"
        )),
        "{run:#?}"
    );
    let listed = w.obnam(&["ls"]).ok().stdout;
    assert!(!listed.contains("sub/f"), "{listed}");
    // A link that leads nowhere, written as a folder, is named.
    std::os::unix::fs::symlink("gone", w.data.join("dangling")).unwrap();
    let dangling = format!("{}/", w.data.join("dangling").display());
    let run = w.obnam(&["backup", &dangling]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains(&format!("ERROR: backup root {dangling}: ")),
        "{run:#?}"
    );
}

/// A root that is the repository's folder, or inside it, is left out with
/// a warning (a repository named as a root was backed up into itself);
/// if no other root is left, the backup is refused.
#[test]
fn the_repository_named_as_a_root_is_left_out() {
    let env = obnam_test_support::TestEnv::new();
    let data = env.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let repo = data.join("repo");
    let obnam = |args: &[&std::ffi::OsStr]| {
        obnam_test_support::run(env.obnam().arg("--repository").arg(&repo).args(args))
    };
    obnam(&[std::ffi::OsStr::new("backup"), data.as_os_str()]).ok();
    let run = obnam(&[
        std::ffi::OsStr::new("backup"),
        data.as_os_str(),
        repo.as_os_str(),
    ])
    .ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: backup root {} is the repository's folder, or inside it: left out",
            repo.display()
        )),
        "{run:#?}"
    );
    let listed = obnam(&[std::ffi::OsStr::new("ls")]).ok().stdout;
    assert!(!listed.contains("repo/config"), "{listed}");
    let run = obnam(&[
        std::ffi::OsStr::new("backup"),
        repo.join("packs").as_os_str(),
    ])
    .fails()
    .no_rust_panic();
    assert!(run.stderr.contains("nothing to back up"), "{run:#?}");
}

/// The repository and obnam's own log file are left out wherever the walk
/// meets them, also when `--repository` or `--log` names them by a way
/// through a symbolic link or with `..` (a repository named so was backed
/// up into itself, lock and all, and the log file was backed up).
#[test]
fn the_repository_and_the_log_are_left_out_by_any_name() {
    use std::ffi::OsStr;
    let env = obnam_test_support::TestEnv::new();
    let data = env.path().join("data");
    fs::create_dir_all(data.join("logs")).unwrap();
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink(&data, env.path().join("link")).unwrap();
    let repo = env.path().join("link/repo");
    let obnam = |log: &OsStr, args: &[&OsStr]| {
        obnam_test_support::run(
            env.obnam()
                .current_dir(data.join("sub"))
                .arg("--repository")
                .arg(&repo)
                .arg("--log")
                .arg(log)
                .args(args),
        )
    };
    let link_log = env.path().join("link/logs/b.log");
    for log in [OsStr::new("../logs/a.log"), link_log.as_os_str()] {
        let run = obnam(log, &[OsStr::new("backup"), data.as_os_str()]).ok();
        // The repository and the log.
        assert!(run.stdout.contains(" 2 excluded"), "{run:#?}");
        // Each run's own log only: the first run's is a file like any other
        // to the second.
        let listed = obnam(log, &[OsStr::new("ls")]).ok().stdout;
        assert!(!listed.contains("/repo"), "{listed}");
        let own = Path::new(log).file_name().unwrap().to_str().unwrap();
        assert!(!listed.contains(own), "{own} in {listed}");
    }
    // A root inside the repository by a way through the link is one too.
    let run = obnam(
        OsStr::new("../logs/c.log"),
        &[OsStr::new("backup"), data.join("repo/packs").as_os_str()],
    )
    .fails()
    .no_rust_panic();
    assert!(run.stderr.contains("nothing to back up"), "{run:#?}");
}

/// Unmounts what a test mounted, also when it fails.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for dir in &self.0 {
            obnam_test_support::unmount(dir);
        }
    }
}

/// A proc and a sysfs mounted in a backed-up tree (as `/proc` and `/sys`
/// are in `/`) are recorded as folders without their contents, which
/// would block (`/proc/kmsg`) or run to hundreds of GiB
/// (`/proc/PID/pagemap`); `--verbose` says so, `verify` finds no
/// difference, and a root that is on one is warned of.
#[test]
fn the_kernel_s_file_systems_are_recorded_without_their_contents() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: mounting proc and sysfs needs root");
        return;
    }
    let w = world();
    w.file("f", b"a file\n");
    let (proc_dir, sys_dir) = (w.data.join("proc"), w.data.join("sys"));
    fs::create_dir(&proc_dir).unwrap();
    fs::create_dir(&sys_dir).unwrap();
    let mut mounted = Mounted(Vec::new());
    for (kind, dir) in [("proc", &proc_dir), ("sysfs", &sys_dir)] {
        let status = std::process::Command::new("mount")
            .args(["-t", kind, kind])
            .arg(dir)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a {kind} here");
            return;
        }
        mounted.0.push(dir.clone());
    }
    // A file of /proc mounted on its own in the tree: reading it would
    // block for ever.
    let kmsg = w.data.join("kmsg");
    fs::write(&kmsg, b"").unwrap();
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg("/proc/kmsg")
        .arg(&kmsg)
        .status()
        .is_ok_and(|s| s.success());
    if bound {
        mounted.0.push(kmsg.clone());
    }
    let run = w.backup(&["--verbose"]).ok();
    if bound {
        let said = format!(
            "excluded {} (it is on a proc file system: the kernel's state, not a file)",
            kmsg.display()
        );
        assert!(run.stdout.contains(&said), "{said}: {run:#?}");
    }
    for (kind, dir) in [("proc", &proc_dir), ("sysfs", &sys_dir)] {
        let said = format!(
            "left out the contents of {} (a {kind} file system: the kernel's state, not files)",
            dir.display()
        );
        assert!(run.stdout.contains(&said), "{said}: {run:#?}");
    }
    assert!(files_read(&run) == 1, "{run:#?}");
    let listed = w.obnam(&["ls"]).ok();
    let below: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.contains("/proc/") || l.contains("/sys/"))
        .collect();
    assert!(below.is_empty(), "{below:?}");
    assert!(listed.stdout.contains(&format!("{}\n", proc_dir.display())));
    let data = w.data.to_str().unwrap();
    let verified = w.obnam(&["verify", data]);
    assert_eq!(verified.code, 0, "{verified:#?}");
    // Named as a root: backed up as a folder, and the user is told.
    let named = w.obnam(&["backup", proc_dir.to_str().unwrap()]).ok();
    assert!(
        named.stderr.contains(&format!(
            "WARNING: {} is on a proc file system, which shows the kernel's state rather than \
             holding files: its contents are not backed up",
            proc_dir.display()
        )),
        "{named:#?}"
    );
    drop(mounted);
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(proc_dir.strip_prefix("/").unwrap());
    assert_eq!(fs::read_dir(&restored).unwrap().count(), 0);
}

/// A folder that was a file system of its own in the previous generation
/// (a disk or share mounted there) and is an empty folder of its parent's
/// now (not mounted tonight) is an error, and the generation keeps what
/// the previous one had there: backed up as empty, the disk's files were
/// dropped from the new generation without a word, exit 0, and a
/// retention policy then forgot the generations that held them (found
/// by an outside review). As a root and as a folder inside one, empty or
/// holding a marker left in the bare mount point. A folder emptied on
/// purpose, on its parent's file system, is backed up empty, and one whose
/// contents were moved onto the parent's file system as they are.
#[test]
fn a_file_system_not_mounted_now_keeps_its_previous_version() {
    if !running_as_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let w = world();
    let disk = w.data.join("disk");
    let plain = w.data.join("plain");
    fs::create_dir(&disk).unwrap();
    w.file("plain/note", b"emptied on purpose");
    w.file("kept", b"on the parent's file system");
    let backup_of = |roots: &[&Path]| {
        let mut cmd = w.env.obnam();
        cmd.arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", &w.client, "backup"])
            .args(roots);
        obnam_test_support::run(&mut cmd)
    };
    // As a folder inside a root, then as a root of its own.
    for roots in [
        vec![w.data.as_path()],
        vec![w.data.as_path(), disk.as_path()],
    ] {
        if !mount_small_tmpfs(&disk) {
            eprintln!("skipped: cannot mount a small tmpfs here");
            return;
        }
        fs::write(disk.join("photo"), noise(20_000, 3)).unwrap();
        backup_of(&roots).ok();
        unmount(&disk);
        // The second time, with a marker left in the bare mount point.
        if roots.len() == 2 {
            fs::write(disk.join("NOT-MOUNTED"), b"").unwrap();
        }
        fs::remove_file(plain.join("note")).unwrap();
        let run = backup_of(&roots);
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            run.stderr.contains(&format!(
                "{}: it was a file system of its own in the previous generation, and is a \
                 folder of its parent's now, holding none of what it held: is its disk or share \
                 mounted? Kept as the previous generation had it",
                disk.display()
            )),
            "{roots:?}: {run:#?}"
        );
        let to = w.env.path().join(format!("restored-{}", roots.len()));
        w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
        let back = to.join(w.data.strip_prefix("/").unwrap());
        assert_eq!(fs::read(back.join("disk/photo")).unwrap(), noise(20_000, 3));
        assert!(!back.join("plain/note").exists(), "{roots:?}");
        assert!(back.join("kept").exists());
        // Mounted again, it is backed up as it is.
        mount_small_tmpfs(&disk);
        backup_of(&roots).ok();
        unmount(&disk);
        let _ = fs::remove_file(disk.join("NOT-MOUNTED"));
        fs::write(plain.join("note"), b"again").unwrap();
    }
    // Its contents moved onto the parent's file system (some of the same
    // names): backed up as they are.
    mount_small_tmpfs(&disk);
    fs::write(disk.join("photo"), noise(20_000, 3)).unwrap();
    backup_of(&[w.data.as_path()]).ok();
    unmount(&disk);
    fs::write(disk.join("photo"), b"moved").unwrap();
    backup_of(&[w.data.as_path()]).ok();
}

/// A file where the repository's `.tmp` folder belongs is named among
/// what must be a folder (the write failed with "Not a directory",
/// naming only the object, in a folder that was there).
#[test]
fn a_file_in_place_of_the_temporary_folder_is_named() {
    let w = world();
    w.file("a", b"first");
    w.backup(&[]).ok();
    let tmp = w.repo.join(".tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::write(&tmp, b"in the way").unwrap();
    w.file("b", b"second");
    let run = w.backup(&[]).fails();
    assert!(
        run.stderr
            .contains("and its .tmp, where objects are written first, a folder?)"),
        "{run:#?}"
    );
}
