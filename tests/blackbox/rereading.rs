//! When a backup reads a file again: a file whose size, modification time,
//! mode, owner and link count are what the previous generation recorded,
//! but that is another file (replaced by a rename) or holds other bytes
//! (rewritten in place, its mtime set back), is read again, since its
//! inode number or change time tells it; a tree that nobody changed is
//! read not at all, however often it is backed up, restored or read;
//! `--ignore-inode` and `--ignore-ctime` drop those two signs, and
//! `--ignore-ctime` then misses a rewrite whose mtime was set back.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use obnam_test_support::{noise, BackupWorld};
use serde_json::Value;

/// Back up the data folder; the JSON summary.
fn backup(w: &BackupWorld, extra: &[&str]) -> Value {
    let mut args = vec!["--output-format", "json"];
    args.extend_from_slice(extra);
    let run = w.backup(&args).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// Files read by a backup, from its JSON summary.
fn files_read(summary: &Value) -> u64 {
    summary["files_read"]
        .as_u64()
        .unwrap_or_else(|| panic!("no files_read: {summary:#}"))
}

/// Restore `generation` into a new folder; the data folder in it.
fn restore(w: &BackupWorld, generation: &str) -> PathBuf {
    let to = w
        .env
        .path()
        .join(format!("restored-{generation}-{}", next()));
    w.obnam(&[
        "restore",
        "--to",
        to.to_str().unwrap(),
        "--generation",
        generation,
    ])
    .ok();
    to.join(w.data.strip_prefix("/").unwrap())
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Assert that a file holds exactly `want` (without printing megabytes).
#[track_caller]
fn assert_holds(path: &Path, want: &[u8], what: &str) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == want,
        "{what}: {} holds {} bytes that are not the {} expected (first differing byte at {:?})",
        path.display(),
        got.len(),
        want.len(),
        got.iter().zip(want).position(|(a, b)| a != b)
    );
}

/// What the old rule compared: type and mode, link count, size, owner,
/// modification time to the nanosecond.
fn old_rule_fields(m: &fs::Metadata) -> (u32, u64, u64, u32, u32, i64, i64) {
    (
        m.mode(),
        m.nlink(),
        m.size(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
    )
}

/// Replace `path` by another file holding `new` (as long as the old
/// content), given the old file's mode and modification time, renamed over
/// it: as an editor that writes a new file and keeps the times does, or
/// `cp -p`, `rsync -t` of another version of the same size.
fn replace_keeping_size_and_mtime(path: &Path, new: &[u8]) {
    let old = fs::symlink_metadata(path).unwrap();
    assert_eq!(old.len(), new.len() as u64, "the test's own mistake");
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, new).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(old.mode() & 0o7777)).unwrap();
    File::open(&tmp)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    fs::rename(&tmp, path).unwrap();
    let now = fs::symlink_metadata(path).unwrap();
    assert_eq!(old_rule_fields(&now), old_rule_fields(&old));
    assert_ne!(now.ino(), old.ino(), "renamed into place: another inode");
}

/// Overwrite `path` in place with `new` (as long as the old content), then
/// set its modification time back to what it was (`touch -r`).
fn rewrite_in_place_keeping_mtime(path: &Path, new: &[u8]) {
    let old = fs::symlink_metadata(path).unwrap();
    assert_eq!(old.len(), new.len() as u64, "the test's own mistake");
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(new).unwrap();
    f.set_modified(old.modified().unwrap()).unwrap();
    drop(f);
    let now = fs::symlink_metadata(path).unwrap();
    assert_eq!(old_rule_fields(&now), old_rule_fields(&old));
    assert_eq!(now.ino(), old.ino(), "rewritten in place: the same inode");
    // A backup ran since the file was last changed: far more than the
    // change time's granularity (a clock tick) has passed.
    assert_ne!(
        (now.ctime(), now.ctime_nsec()),
        (old.ctime(), old.ctime_nsec()),
        "the write set the change time"
    );
}

/// Back up the world with one worker, a checkpoint every 200 KiB and a
/// panic at `z` (read last, so the run stops after the checkpoints the
/// files before it made due); the run left a checkpoint as the newest
/// generation.
fn stop_after_a_checkpoint(w: &BackupWorld) {
    let run = w.backup(&[
        "--backup-threads",
        "1",
        "--checkpoint",
        "200KiB",
        "--testing-panic-matching",
        "/z$",
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    let listed = w.obnam(&["generations"]).ok().stdout;
    assert!(
        listed
            .lines()
            .last()
            .is_some_and(|l| l.ends_with("(checkpoint)")),
        "the run left a checkpoint as the newest generation: {listed}"
    );
}

/// A world with `f` (100 kB, several chunks) and `other`, backed up once.
fn backed_up_world() -> (BackupWorld, PathBuf, Vec<u8>) {
    let w = BackupWorld::new("testclient");
    let old = noise(100_000, 1);
    let f = w.file("f", &old);
    w.file("other", b"never changed");
    assert_eq!(files_read(&backup(&w, &[])), 2);
    (w, f, old)
}

#[test]
fn a_file_replaced_by_one_of_the_same_size_and_mtime_is_read_again() {
    let (w, f, _) = backed_up_world();
    let new = noise(100_000, 2);
    replace_keeping_size_and_mtime(&f, &new);
    // `--pretend` tells the same.
    let pretend = backup(&w, &["--pretend"]);
    assert_eq!(files_read(&pretend), 1, "{pretend:#}");
    let second = backup(&w, &[]);
    assert_eq!(files_read(&second), 1, "{second:#}");
    let restored = restore(&w, "latest");
    assert_holds(&restored.join("f"), &new, "the replacing file");
    assert_holds(&restored.join("other"), b"never changed", "the other file");
    // `--ignore-inode` alone still sees the change: the new file's change
    // time is not the old one's.
    replace_keeping_size_and_mtime(&f, &noise(100_000, 3));
    let third = backup(&w, &["--ignore-inode"]);
    assert_eq!(files_read(&third), 1, "{third:#}");
    assert_holds(
        &restore(&w, "latest").join("f"),
        &noise(100_000, 3),
        "replaced again",
    );
}

#[test]
fn a_file_rewritten_in_place_with_its_mtime_set_back_is_read_again() {
    let (w, f, _) = backed_up_world();
    let new = noise(100_000, 2);
    rewrite_in_place_keeping_mtime(&f, &new);
    let pretend = backup(&w, &["--pretend"]);
    assert_eq!(files_read(&pretend), 1, "{pretend:#}");
    let second = backup(&w, &[]);
    assert_eq!(files_read(&second), 1, "{second:#}");
    let restored = restore(&w, "latest");
    assert_holds(&restored.join("f"), &new, "the rewritten file");
    // `--ignore-inode` does not drop the change time.
    rewrite_in_place_keeping_mtime(&f, &noise(100_000, 3));
    let third = backup(&w, &["--ignore-inode"]);
    assert_eq!(files_read(&third), 1, "{third:#}");
}

/// The trade-off of `--ignore-ctime`: a rewrite that set the mtime back
/// is not seen, and the generation keeps the old content. (Documented in
/// the user guide; this test holds the documentation to it.) It is not
/// lost for good: the change time recorded stays the one the kept content
/// had, so the next backup without the setting reads the file.
#[test]
fn with_ignore_ctime_a_rewrite_with_its_mtime_set_back_is_not_read_again() {
    let (w, f, old) = backed_up_world();
    let new = noise(100_000, 2);
    rewrite_in_place_keeping_mtime(&f, &new);
    for _ in 0..2 {
        let run = backup(&w, &["--ignore-ctime"]);
        assert_eq!(files_read(&run), 0, "{run:#}");
        assert_holds(&restore(&w, "latest").join("f"), &old, "the old content");
    }
    let third = backup(&w, &[]);
    assert_eq!(files_read(&third), 1, "without the setting: {third:#}");
    assert_holds(&restore(&w, "latest").join("f"), &new, "read at last");
    // With both settings, a file replaced by a rename is not seen either:
    // the rule of old Obnam (size, mtime, mode, owner, links, attributes).
    let newer = noise(100_000, 3);
    replace_keeping_size_and_mtime(&f, &newer);
    let fourth = backup(&w, &["--ignore-ctime", "--ignore-inode"]);
    assert_eq!(files_read(&fourth), 0, "{fourth:#}");
    assert_holds(&restore(&w, "latest").join("f"), &new, "kept");
    // The next backup without them reads it: its change time is not the
    // one recorded with the content kept.
    let fifth = backup(&w, &[]);
    assert_eq!(files_read(&fifth), 1, "{fifth:#}");
    assert_holds(
        &restore(&w, "latest").join("f"),
        &newer,
        "read again without the settings",
    );
}

/// Set a user extended attribute; false where the file system has none.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::getxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Nothing a backup, a restore or a reader does to a file changes its
/// change time: a tree nobody changed is read not at all by the next
/// backups (with each kind of object, a sparse file, hard links, a
/// read-only file and an extended attribute, whose attributes the next
/// backups take from the previous generation rather than read).
#[test]
fn a_backup_of_a_tree_nobody_changed_reads_no_file() {
    let w = BackupWorld::new("testclient");
    w.file("small", b"small");
    w.file("empty", b"");
    w.file("sub/large", &noise(3_000_000, 4));
    let ro = w.file("sub/read-only", b"read only");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
    fs::hard_link(w.data.join("small"), w.data.join("sub/hard-link")).unwrap();
    std::os::unix::fs::symlink("small", w.data.join("link")).unwrap();
    // A sparse file: read by its data segments only.
    let sparse = File::create(w.data.join("sparse")).unwrap();
    sparse.set_len(20 << 20).unwrap();
    drop(sparse);
    let attributed = w.file("attributed", b"with an attribute");
    let xattrs = set_xattr(&attributed, "user.obnam-test", b"kept");
    if !xattrs {
        eprintln!("no user extended attributes here: that part is not tested");
    }
    let first = backup(&w, &[]);
    // The hard link's second name takes the first's read when that is
    // done by then (workers read at once).
    assert!([6, 7].contains(&files_read(&first)), "{first:#}");
    // Read every file (access times change) and restore elsewhere:
    // neither is a change.
    for f in obnam_test_support::files_under(&w.data) {
        let _ = fs::read(&f).unwrap();
    }
    restore(&w, "latest");
    for extra in [
        &["--pretend"][..],
        &[],
        &[],
        &["--ignore-ctime"],
        &["--ignore-inode"],
    ] {
        let again = backup(&w, extra);
        assert_eq!(files_read(&again), 0, "{extra:?}: {again:#}");
        assert_eq!(again["bytes_read"], 0, "{extra:?}: {again:#}");
    }
    let restored = restore(&w, "latest");
    assert_holds(
        &restored.join("sub/large"),
        &noise(3_000_000, 4),
        "the large file",
    );
    if xattrs {
        assert_eq!(
            get_xattr(&restored.join("attributed"), "user.obnam-test").as_deref(),
            Some(&b"kept"[..]),
            "the attribute, taken from the previous generations"
        );
    }
}

/// An attribute set on an unchanged file changes only its change time:
/// with `--ignore-ctime`, the attributes are read (not taken from the
/// previous generation on the strength of a change time it ignores), so
/// the new one is recorded.
#[test]
fn with_ignore_ctime_an_attribute_set_since_is_still_recorded() {
    let w = BackupWorld::new("testclient");
    let f = w.file("f", b"content");
    if !set_xattr(&f, "user.first", b"1") {
        eprintln!("skipped: no user extended attributes here");
        return;
    }
    backup(&w, &[]);
    for (setting, value) in [("--ignore-ctime", b"2"), ("--ignore-inode", b"3")] {
        assert!(set_xattr(&f, "user.second", value));
        let run = backup(&w, &[setting]);
        assert_eq!(
            files_read(&run),
            1,
            "{setting}: its attributes differ: {run:#}"
        );
        let restored = restore(&w, "latest");
        assert_eq!(
            get_xattr(&restored.join("f"), "user.second").as_deref(),
            Some(&value[..]),
            "{setting}"
        );
        assert_holds(&restored.join("f"), b"content", setting);
    }
}

/// A backup that starts from a checkpoint (the previous run stopped after
/// committing one) judges its files by the same rule: a file the
/// checkpoint holds, replaced since by one of the same size and mtime, is
/// read again.
#[test]
fn a_backup_resumed_from_a_checkpoint_reads_a_replaced_file_again() {
    let w = BackupWorld::new("testclient");
    let old = noise(50_000, 1);
    let a = w.file("a", &old);
    w.file("b", &noise(400_000, 5));
    w.file("c", &noise(400_000, 6));
    w.file("z", b"the reading of this one panics");
    // `a` is stored and put before the checkpoint that `b` makes due.
    stop_after_a_checkpoint(&w);
    let checkpoint = w.obnam(&["genids"]).ok().stdout;
    let checkpoint = checkpoint.lines().last().unwrap().to_string();
    assert_holds(&restore(&w, &checkpoint).join("a"), &old, "the checkpoint");
    let new = noise(50_000, 2);
    replace_keeping_size_and_mtime(&a, &new);
    let resumed = backup(&w, &[]);
    assert!(files_read(&resumed) >= 2, "a and z: {resumed:#}");
    let restored = restore(&w, "latest");
    assert_holds(&restored.join("a"), &new, "the replacing file");
    assert_holds(&restored.join("c"), &noise(400_000, 6), "c");
}

/// A file the first backup recorded while it may have been changing (its
/// times not older than that run's start: here, a run that says it
/// started in 2020), which the next run carried forward unchecked, is
/// still read again by the run after, and a change that left its times
/// as they were is found: the carrying run's later start must not make
/// it look settled. It was trusted for good (found by an outside review,
/// on a file system of whole seconds: a write in the second of the read,
/// then a run killed after a checkpoint, kept the first content in every
/// later generation, exit 0). `--ignore-ctime` stands for the tick of a
/// coarse clock: the change time, which the rewrite sets, is not looked at.
#[test]
fn a_file_carried_forward_unchecked_is_judged_by_the_run_that_read_it() {
    // Carried by a run that fails the file (kept as it was), and by a
    // checkpoint of a run stopped before it reached the file.
    for carrier in ["kept after an error", "checkpoint"] {
        let w = BackupWorld::new("testclient");
        let old = noise(50_000, 1);
        let y = w.file("y", &old);
        backup(&w, &["--testing-generation-time", "2020-01-01T00:00:00Z"]);
        match carrier {
            "kept after an error" => {
                let run = w.backup(&["--testing-fail-matching", "/y$"]);
                assert_eq!(run.code, 1, "{run:#?}");
            }
            _ => {
                // The checkpoint that `b` makes due comes before the walk
                // reaches `y`.
                w.file("b", &noise(400_000, 5));
                w.file("z", b"the reading of this one panics");
                stop_after_a_checkpoint(&w);
            }
        }
        let new = noise(50_000, 2);
        rewrite_in_place_keeping_mtime(&y, &new);
        backup(&w, &["--ignore-ctime"]);
        assert_holds(
            &restore(&w, "latest").join("y"),
            &new,
            &format!("the file carried forward ({carrier})"),
        );
    }
}

/// An ext4 file system mounted on a folder, whose inodes are too small to
/// hold times finer than a second (`-I 128`, as on old file systems, and
/// as NFS and SMB servers may give): unmounted when dropped.
struct WholeSecondDisk(PathBuf);

impl WholeSecondDisk {
    /// Mounted on `dir`, from an image beside it; `None` where this
    /// machine cannot (not root, no `mkfs.ext4`, no loop device).
    fn mount_on(dir: &Path) -> Option<Self> {
        let image = dir.with_extension("ext4");
        let ok = |cmd: &mut std::process::Command| {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let made = File::create(&image)
            .and_then(|f| f.set_len(16 << 20))
            .is_ok()
            && ok(std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-I", "128"])
                .arg(&image))
            && ok(std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir));
        made.then(|| WholeSecondDisk(dir.to_path_buf()))
    }
}

impl Drop for WholeSecondDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Two files `X/f` and `Y/f` below `dir` of one size and modification
/// time whose change times fall in one second (`dir` on a file system that
/// keeps whole seconds), with those contents.
fn twin_files(dir: &Path) {
    twin_files_at(dir, ["X", "Y"]);
}

/// [`twin_files`] at `dir/{sub}/f` for the two `subs`.
fn twin_files_at(dir: &Path, subs: [&str; 2]) {
    loop {
        for (sub, content) in subs.into_iter().zip([b"content-of-X", b"content-of-Y"]) {
            let folder = dir.join(sub);
            fs::create_dir_all(&folder).unwrap();
            let f = folder.join("f");
            fs::write(&f, content).unwrap();
            File::open(&f)
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_836_800))
                .unwrap();
        }
        let ctime = |sub: &str| fs::metadata(dir.join(sub).join("f")).unwrap().ctime();
        if ctime(subs[0]) == ctime(subs[1]) {
            return;
        }
    }
}

/// Wait out the seconds in which whole-second times are racy (a coarse
/// clock's tick): past them, what did not change is not read again.
fn past_racy_seconds() {
    std::thread::sleep(std::time::Duration::from_millis(3100));
}

/// With `--ignore-inode`, two files of one size and modification time
/// whose change times fall in one second (a file system that keeps whole
/// seconds), swapped by renaming their folders, are read again: they kept
/// each other's content, silently, since renaming a folder changes no
/// time of the files below it (it changes the folder's change time and
/// not its modification time, which is now taken for a sign that what is
/// below it may have moved). So is a root's folder replaced by another
/// renamed into its path. New files in a folder and in its parent have
/// no other file read again.
#[test]
fn with_ignore_inode_files_swapped_by_renaming_their_folders_are_read_again() {
    let w = BackupWorld::new("c");
    let Some(_disk) = WholeSecondDisk::mount_on(&w.data) else {
        eprintln!("skipped: cannot mount a loop ext4 file system here (root, mkfs.ext4)");
        return;
    };
    let t = w.data.join("t");
    twin_files(&t);
    let z = t.join("Z").join("inner");
    fs::create_dir_all(&z).unwrap();
    for i in 0..3 {
        fs::write(z.join(format!("old{i}")), noise(1000, i)).unwrap();
    }
    past_racy_seconds();
    backup(&w, &["--ignore-inode"]);
    past_racy_seconds();
    let tmp = t.join("tmp");
    fs::rename(t.join("X"), &tmp).unwrap();
    fs::rename(t.join("Y"), t.join("X")).unwrap();
    fs::rename(&tmp, t.join("Y")).unwrap();
    fs::write(z.join("new"), b"new file").unwrap();
    fs::write(t.join("Z").join("new"), b"new file").unwrap();
    let second = backup(&w, &["--ignore-inode"]);
    // X/f and Y/f, and the two new files: not the old ones beside them.
    assert_eq!(files_read(&second), 4, "{second:#}");
    let restored = restore(&w, "latest");
    assert_holds(&restored.join("t/X/f"), b"content-of-Y", "X/f");
    assert_holds(&restored.join("t/Y/f"), b"content-of-X", "Y/f");

    // A root replaced by another folder renamed into its path.
    let roots = w.data.join("roots");
    twin_files(&roots);
    let root = roots.join("X");
    let root_arg = root.to_str().unwrap();
    // The folder renamed into place changed later than the root did.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(roots.join("Y/later"), b"later").unwrap();
    fs::remove_file(roots.join("Y/later")).unwrap();
    past_racy_seconds();
    let json = ["--ignore-inode", "--output-format", "json"];
    let run = |args: &[&str]| -> Value {
        let run = w.obnam(args).ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
    };
    run(&[&["backup", root_arg][..], &json].concat());
    past_racy_seconds();
    fs::rename(&root, roots.join("old")).unwrap();
    fs::rename(roots.join("Y"), &root).unwrap();
    let again = run(&[&["backup", root_arg][..], &json].concat());
    assert_eq!(files_read(&again), 1, "{again:#}");
    let to = w.env.path().join("restored-root");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    assert_holds(
        &to.join(root.strip_prefix("/").unwrap()).join("f"),
        b"content-of-Y",
        "the root's f",
    );

    // A folder on the way to the root replaced by another renamed into
    // its path.
    let above = w.data.join("above");
    twin_files_at(&above, ["cur/X", "new/X"]);
    let root = above.join("cur/X");
    let root_arg = root.to_str().unwrap();
    past_racy_seconds();
    run(&[&["backup", root_arg][..], &json].concat());
    past_racy_seconds();
    fs::rename(above.join("cur"), above.join("old")).unwrap();
    fs::rename(above.join("new"), above.join("cur")).unwrap();
    let again = run(&[&["backup", root_arg][..], &json].concat());
    assert_eq!(files_read(&again), 1, "{again:#}");
    let to = w.env.path().join("restored-above");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    assert_holds(
        &to.join(root.strip_prefix("/").unwrap()).join("f"),
        b"content-of-Y",
        "the root's f below a replaced folder",
    );
}
