//! Restore and the listing commands, end to end: awkward trees made on
//! disk, backed up with `obnam backup`, restored, and compared with the
//! original field by field; hostile and damaged generations written by the
//! `hostile` test plugin, which restore must refuse without writing outside
//! its target.
//!
//! The awkward tree and the comparison are in `obnam_test_support::awkward`.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use obnam_test_support::awkward::{
    assert_same, assert_similar, assert_sparse, bytes_path, collect, make_awkward_tree, restored,
    set_final_times, set_mtime,
};
use obnam_test_support::{noise, Run, TestEnv};

const CLIENT: &str = "testclient";

struct World {
    env: TestEnv,
    repo: PathBuf,
}

impl World {
    fn new() -> Self {
        let env = TestEnv::new();
        let repo = env.path().join("repo");
        World { env, repo }
    }

    fn path(&self) -> &Path {
        self.env.path()
    }

    /// A command running obnam on the world's repository as the test
    /// client.
    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> std::process::Command {
        let mut cmd = self.env.obnam();
        cmd.arg("--repository")
            .arg(&self.repo)
            .arg("--client-name")
            .arg(CLIENT)
            .args(args);
        cmd
    }

    /// Run obnam on the world's repository as the test client.
    fn obnam<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        obnam_test_support::run(&mut self.command(args))
    }

    fn backup(&self, root: &Path) -> Run {
        self.obnam(&[OsStr::new("backup"), root.as_os_str()])
            .no_rust_panic()
            .ok()
    }

    fn restore(&self, to: &Path, extra: &[&OsStr]) -> Run {
        let mut args: Vec<&OsStr> = vec![OsStr::new("restore"), OsStr::new("--to"), to.as_os_str()];
        args.extend_from_slice(extra);
        self.obnam(&args).no_rust_panic()
    }

    /// The names of the files under `folder` of the repository, at any
    /// depth.
    fn repo_files(&self, folder: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut folders = vec![self.repo.join(folder)];
        while let Some(dir) = folders.pop() {
            for e in fs::read_dir(dir).into_iter().flatten() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files
    }

    fn genids(&self) -> Vec<String> {
        let run = self.obnam(&["genids"]).ok();
        run.stdout.lines().map(str::to_string).collect()
    }

    /// Run obnam with the hostile test plugin loaded too.
    fn hostile<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let plugins = self.env.plugin_dir("hostile-plugin", &["hostile"]);
        let mut cmd = self.env.obnam();
        cmd.arg("--plugin-dir")
            .arg(plugins)
            .arg("--repository")
            .arg(&self.repo)
            .args(args);
        obnam_test_support::run(&mut cmd).no_rust_panic().ok()
    }
}

#[test]
fn awkward_tree_round_trips_through_two_generations() {
    let world = World::new();
    let tree = make_awkward_tree(&world.path().join("data"));
    let original = tree.root.clone();
    world.backup(&original);

    // Generation 1, restored whole.
    let t1 = world.path().join("restore1");
    let run = world.restore(&t1, &[]).ok();
    assert!(run.stdout.starts_with("Restored "), "{run:#?}");
    assert_same(&original, &restored(&t1, &original));
    assert_sparse(&restored(&t1, &tree.sparse));
    if tree.devices {
        let dev = fs::symlink_metadata(restored(&t1, &original.join("char-dev"))).unwrap();
        assert_eq!(
            dev.rdev(),
            fs::symlink_metadata(original.join("char-dev"))
                .unwrap()
                .rdev()
        );
    }

    // Edit, rename, delete, add; then generation 2.
    fs::write(
        original.join("plain.txt"),
        b"changed content, longer than before\n",
    )
    .unwrap();
    fs::rename(original.join("dir1/nested"), original.join("dir2/moved")).unwrap();
    fs::rename(
        original.join("old.txt"),
        original.join("dir2/old-renamed.txt"),
    )
    .unwrap();
    fs::remove_file(original.join("three-b")).unwrap();
    fs::remove_file(original.join("fifo")).unwrap();
    fs::write(original.join("dir1/brand-new"), b"new in generation 2\n").unwrap();
    fs::set_permissions(
        original.join("readonly-dir"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    set_final_times(&original);
    fs::set_permissions(
        original.join("readonly-dir"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    set_mtime(&original.join("dir2/old-renamed.txt"), -1, 1);
    world.backup(&original);

    let ids = world.genids();
    assert_eq!(ids.len(), 2, "{ids:?}");

    // Both generations restore exactly: the first as before, the second
    // as the tree is now.
    let again = world.path().join("restore1-again");
    world
        .restore(&again, &[OsStr::new("--generation"), OsStr::new(&ids[0])])
        .ok();
    assert_same(&restored(&t1, &original), &restored(&again, &original));
    let t2 = world.path().join("restore2");
    world.restore(&t2, &[]).ok();
    assert_same(&original, &restored(&t2, &original));
    assert_sparse(&restored(&t2, &tree.sparse));
    let t2_by_id = world.path().join("restore2-by-id");
    world
        .restore(
            &t2_by_id,
            &[OsStr::new("--generation"), OsStr::new(&ids[1])],
        )
        .ok();
    assert_same(&original, &restored(&t2_by_id, &original));
}

#[test]
fn single_paths_restore_below_their_absolute_path() {
    let world = World::new();
    let tree = make_awkward_tree(&world.path().join("data"));
    world.backup(&tree.root);
    let target = world.path().join("partial");
    let dir1 = tree.root.join("dir1");
    let one_file = tree.root.join("dir2/link2");
    world
        .restore(&target, &[dir1.as_os_str(), one_file.as_os_str()])
        .ok();
    // Link counts differ: the other names of dir1's hard links are elsewhere.
    assert_similar(&dir1, &restored(&target, &dir1), false);
    let file = restored(&target, &one_file);
    assert_eq!(fs::read(&file).unwrap(), b"one inode, two names\n");
    // Hard links within what was restored are kept.
    let a = fs::metadata(restored(&target, &dir1.join("linked"))).unwrap();
    let b = fs::metadata(&file).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    // Nothing else of the tree; the folders on the way keep their metadata.
    assert!(!restored(&target, &tree.root.join("plain.txt")).exists());
    let names: BTreeSet<OsString> = fs::read_dir(restored(&target, &tree.root))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dir1", "dir2"].iter().map(OsString::from).collect());
    let root_meta = fs::metadata(restored(&target, &tree.root)).unwrap();
    let orig_meta = fs::metadata(&tree.root).unwrap();
    assert_eq!(root_meta.mode(), orig_meta.mode());
    assert_eq!(
        (root_meta.mtime(), root_meta.mtime_nsec()),
        (orig_meta.mtime(), orig_meta.mtime_nsec())
    );

    // A path that is not in the generation: an error, and nothing written.
    let nowhere = world.path().join("nowhere");
    let run = world
        .restore(&nowhere, &[OsStr::new("/no/such/path")])
        .fails();
    assert!(
        run.stderr.contains("/no/such/path is not in generation"),
        "{run:#?}"
    );
    assert!(!nowhere.exists());
    let run = world
        .restore(&nowhere, &[OsStr::new("relative/path")])
        .fails();
    assert!(run.stderr.contains("not an absolute path"), "{run:#?}");
}

/// A generation of 80 files of 70 kB, each in packs of its own, and a
/// restore of it started with `faults` (slow reads, one file at a time),
/// returned once it has restored 3 files: (the restore, its target's
/// copy of the data folder, the data folder, the generation's id).
fn a_slow_restore_under_way(
    world: &World,
    faults: &str,
) -> (std::process::Child, PathBuf, PathBuf, String) {
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..80 {
        fs::write(data.join(format!("f{i:02}")), noise(70_000, i)).unwrap();
    }
    world
        .obnam(&[
            OsStr::new("backup"),
            OsStr::new("--pack-size=64KiB"),
            OsStr::new("--compress-with=none"),
            data.as_os_str(),
        ])
        .ok();
    let id = world.obnam(&["genids"]).ok().stdout.trim().to_string();
    let target = world.path().join("target");
    let restoring = world
        .command(&[
            OsStr::new("restore"),
            OsStr::new("--to"),
            target.as_os_str(),
            OsStr::new("--restore-workers=1"),
            OsStr::new(&format!("--testing-storage-faults={faults}")),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let restored_dir = target.join(data.strip_prefix("/").unwrap());
    let started = std::time::Instant::now();
    while fs::read_dir(&restored_dir).map_or(0, |d| d.count()) < 3 {
        assert!(
            started.elapsed().as_secs() < 120,
            "the restore made no file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (restoring, restored_dir, data, id)
}

/// A `forget` and `prune` of the generation a restore is reading (a
/// nightly retention job) delete nothing under it: the restore holds a
/// reader's lock, the prune's deletion waits for it, and the restore
/// ends whole; the next prune deletes what was waiting.
#[test]
fn a_prune_waits_for_a_restore_of_what_it_would_delete() {
    let world = World::new();
    let (restoring, restored_dir, data, id) = a_slow_restore_under_way(&world, "slow=1,seed=7");
    world.obnam(&["forget", &id]).ok();
    let prune = world.obnam(&["prune"]).ok();
    assert!(
        prune.stdout.contains("deletion deferred: 1 run")
            && prune.stderr.contains(&format!(
                "the deletion waits for: client '{CLIENT}' is being read (obnam restore) by host"
            )),
        "{prune:#?}"
    );
    let out = restoring.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("reader's lock"), "{stderr}");
    let mut whole = 0;
    for e in fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            fs::read(restored_dir.join(e.file_name())).unwrap(),
            fs::read(e.path()).unwrap(),
            "{:?}",
            e.file_name()
        );
        whole += 1;
    }
    assert_eq!(whole, 80);
    // The restore is over: its lock is gone, and the deletion is done.
    let packs = world.repo_files("packs").len();
    let prune = world.obnam(&["prune"]).ok();
    assert!(!prune.stdout.contains("deferred"), "{prune:#?}");
    assert!(world.repo_files("packs").len() < packs / 10, "{prune:#?}");
    assert!(world.repo_files("locks").is_empty());
}

/// A restore that cannot take its reader's lock (a store it may only
/// read; here every write fails) goes on, saying what it risks; when a
/// `forget` and `prune` remove its generation meanwhile, it stops,
/// saying so, and what it restored before is exact: every file after it
/// failed alone with "chunk ... is not in the repository", which read as
/// damage.
#[test]
fn a_restore_without_its_lock_whose_generation_is_pruned_meanwhile_stops_saying_so() {
    let world = World::new();
    let (restoring, restored_dir, data, id) =
        a_slow_restore_under_way(&world, "slow=1,write-fail=1,seed=7");
    world.obnam(&["forget", &id]).ok();
    world.obnam(&["prune"]).ok();
    let out = restoring.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("restore: could not take a reader's lock (")
            && stderr.contains("a prune that runs meanwhile may delete what this restore reads"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "generation {id} of client '{CLIENT}' was removed while it was being restored"
        )) && stderr.contains("the restore stopped"),
        "{stderr}"
    );
    assert!(!stderr.contains("is not in the repository"), "{stderr}");
    // What is there is whole.
    let mut whole = 0;
    for e in fs::read_dir(&restored_dir).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            fs::read(e.path()).unwrap(),
            fs::read(data.join(e.file_name())).unwrap(),
            "{:?}",
            e.file_name()
        );
        whole += 1;
    }
    assert!((3..80).contains(&whole), "{whole} files restored");
}

/// A `verify` that cannot take its reader's lock, whose generation a
/// `forget` and `prune` remove meanwhile, says so rather than report the
/// data it could not read as if the repository were damaged.
#[test]
fn a_verify_without_its_lock_whose_generation_is_pruned_meanwhile_says_so() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..80 {
        fs::write(data.join(format!("f{i:02}")), noise(70_000, i)).unwrap();
    }
    world
        .obnam(&[
            OsStr::new("backup"),
            OsStr::new("--pack-size=64KiB"),
            OsStr::new("--compress-with=none"),
            data.as_os_str(),
        ])
        .ok();
    let id = world.obnam(&["genids"]).ok().stdout.trim().to_string();
    let verifying = world
        .command(&[
            OsStr::new("verify"),
            OsStr::new("--testing-storage-faults=slow=1,write-fail=1,seed=7"),
            data.as_os_str(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    world.obnam(&["forget", &id]).ok();
    world.obnam(&["prune"]).ok();
    let out = verifying.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "generation {id} of client '{CLIENT}' was removed while this verify read it"
        )),
        "{stderr}"
    );
}

/// A PATH written with a `/` at its end names a folder, as to the shell:
/// a symbolic link to one (as completion writes it) or a file is refused,
/// naming what it is, and nothing is restored (the link alone was, exit
/// 0); a folder so written is restored; `ls` judges alike.
#[test]
fn a_path_with_a_slash_at_its_end_names_a_folder() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("real")).unwrap();
    fs::write(data.join("real/r"), b"in the folder").unwrap();
    fs::write(data.join("a.txt"), b"a file").unwrap();
    std::os::unix::fs::symlink("real", data.join("dirlink")).unwrap();
    world.backup(&data);
    let slashed = |name: &str| OsString::from(format!("{}/{name}/", data.display()));
    for (name, what) in [
        (
            "dirlink",
            "it is a symbolic link (to real): give it without the /",
        ),
        ("a.txt", "it is a file: give it without the /"),
    ] {
        let target = world.path().join(format!("t-{name}"));
        let run = world.restore(&target, &[slashed(name).as_os_str()]).fails();
        assert!(
            run.stderr
                .contains(&format!("{}/{name}/ names a folder", data.display()))
                && run.stderr.contains(what),
            "{name}: {run:#?}"
        );
        assert!(!target.exists() || fs::read_dir(&target).unwrap().count() == 0);
        let run = world
            .obnam(&[OsStr::new("ls"), slashed(name).as_os_str()])
            .fails();
        assert!(run.stderr.contains(what), "ls {name}: {run:#?}");
        // `PATH/.` names a folder as `PATH/` does.
        let mut dotted = slashed(name);
        dotted.push(".");
        let run = world.obnam(&[OsStr::new("ls"), dotted.as_os_str()]).fails();
        assert!(run.stderr.contains(what), "ls {name}/.: {run:#?}");
        // `dump` alike (it dumped the file, or the link alone, exit 0).
        let run = world
            .obnam(&[OsStr::new("dump"), slashed(name).as_os_str()])
            .fails();
        assert!(run.stderr.contains(what), "dump {name}: {run:#?}");
        assert!(run.stdout.is_empty(), "dump {name}: {run:#?}");
    }
    // The live side of `verify`, and a backup root, judge a file so
    // written as the shell does ("Not a directory"); they compared and
    // backed up the file, exit 0.
    let file_slashed = slashed("a.txt");
    let run = world
        .obnam(&[OsStr::new("verify"), file_slashed.as_os_str()])
        .fails();
    assert!(
        run.stderr.contains(&format!(
            "{}/a.txt/ names a folder, but it is not one: give it without the /",
            data.display()
        )),
        "verify: {run:#?}"
    );
    let run = world
        .obnam(&[
            OsStr::new("backup"),
            OsStr::new("--pretend"),
            file_slashed.as_os_str(),
        ])
        .fails();
    assert!(
        run.stderr.contains(&format!(
            "backup root {}/a.txt/ names a folder, but it is not one: give it without the /",
            data.display()
        )),
        "backup: {run:#?}"
    );
    let target = world.path().join("t-real");
    world.restore(&target, &[slashed("real").as_os_str()]).ok();
    let restored = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("real/r")).unwrap(), b"in the folder");
}

/// Hard links across many folders come back each with its own file: the
/// folders of the links are kept open a few at a time (each link opened
/// both from the target, name by name: 36 s for 5,000 names 1,500 folders
/// deep), and one evicted is opened again.
#[test]
fn hard_links_across_many_folders_are_each_made_to_their_file() {
    let world = World::new();
    let data = world.path().join("data");
    let folders = 20;
    for i in 0..folders {
        fs::create_dir_all(data.join(format!("d{i:02}/deeper"))).unwrap();
        fs::write(data.join(format!("d{i:02}/deeper/f")), format!("file {i}")).unwrap();
    }
    for i in 0..folders {
        let other = (i + 7) % folders;
        fs::hard_link(
            data.join(format!("d{i:02}/deeper/f")),
            data.join(format!("d{other:02}/deeper/link-to-{i:02}")),
        )
        .unwrap();
    }
    world.backup(&data);
    let target = world.path().join("target");
    world.restore(&target, &[]).ok();
    let restored = target.join(data.strip_prefix("/").unwrap());
    for i in 0..folders {
        let other = (i + 7) % folders;
        let file = fs::metadata(restored.join(format!("d{i:02}/deeper/f"))).unwrap();
        let link =
            fs::metadata(restored.join(format!("d{other:02}/deeper/link-to-{i:02}"))).unwrap();
        assert_eq!((file.ino(), file.nlink()), (link.ino(), 2), "{i}");
        assert_eq!(
            fs::read(restored.join(format!("d{other:02}/deeper/link-to-{i:02}"))).unwrap(),
            format!("file {i}").into_bytes()
        );
    }
}

/// A pattern's matches spread over many folders, sharing parts of their
/// ways and leaving them, are each restored under folders made once, with
/// their recorded modes: the way to the last match is kept, and the next
/// one makes or opens only what it does not share (each match made or
/// opened its whole way, and looked up every folder on it: 8 minutes for
/// 5,000 matches 1,500 folders deep).
#[test]
fn a_pattern_restore_makes_each_folder_on_the_ways_once() {
    let world = World::new();
    let data = world.path().join("data");
    let files = [
        "a/x/deep/m1.txt",
        "a/x/deep/m2.txt",
        "a/x/other.bin",
        "a/y/m3.txt",
        "a/y/z/m4.txt",
        "b/m5.txt",
        "b/w/v/u/m6.txt",
        "c/no.bin",
    ];
    for (i, f) in files.iter().enumerate() {
        let path = data.join(f);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("file {i}")).unwrap();
    }
    for (dir, mode) in [
        ("a", 0o751),
        ("a/x", 0o705),
        ("a/y/z", 0o711),
        ("b/w/v", 0o750),
    ] {
        fs::set_permissions(data.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    world.backup(&data);
    let target = world.path().join("target");
    world.restore(&target, &[OsStr::new("sh:*.txt")]).ok();
    let restored = target.join(data.strip_prefix("/").unwrap());
    for (i, f) in files.iter().enumerate() {
        let there = fs::read(restored.join(f)).ok();
        if f.ends_with(".txt") {
            assert_eq!(there, Some(format!("file {i}").into_bytes()), "{f}");
        } else {
            assert_eq!(there, None, "{f}");
        }
    }
    for (dir, mode) in [
        ("a", 0o751),
        ("a/x", 0o705),
        ("a/y/z", 0o711),
        ("b/w/v", 0o750),
    ] {
        let meta = fs::metadata(restored.join(dir)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{dir}");
    }
    assert!(!restored.join("c").exists());
}

#[test]
fn restore_refuses_a_folder_that_is_not_empty() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    world.backup(&data);
    let target = world.path().join("busy");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("precious"), b"keep me").unwrap();
    let run = world.restore(&target, &[]).fails();
    assert_eq!(run.code, 1);
    // It names what is there, and the way on.
    assert!(
        run.stderr.contains(&format!(
            "the folder is not empty: it holds precious (restore only into an empty or new \
             folder: a new folder in it, such as {}, will do)",
            target.join("restored").display()
        )),
        "{run:#?}"
    );
    let names: Vec<OsString> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("precious")]);
    assert_eq!(fs::read(target.join("precious")).unwrap(), b"keep me");

    // A file is no folder either; an empty folder is fine.
    let run = world.restore(&target.join("precious"), &[]).fails();
    assert!(run.stderr.contains("not a folder"), "{run:#?}");
    let empty = world.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    world.restore(&empty, &[]).ok();
    assert_eq!(fs::read(restored(&empty, &data.join("f"))).unwrap(), b"x");

    // A link that leads nowhere is named as such (it said only "File
    // exists"), and nothing is made where it points.
    let dangling = world.path().join("dangling");
    let nowhere = world.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let run = world.restore(&dangling, &[]).fails();
    assert!(
        run.stderr.contains(&format!(
            "is a symbolic link to {}, which does not exist",
            nowhere.display()
        )),
        "{run:#?}"
    );
    assert!(!nowhere.exists());
}

/// A restore as root goes only into a folder that no one else can
/// change, on a way no one else can change: another user who could write
/// in the target (or a folder on the way, or who owns a symbolic link on
/// it) could put their own folder in the place of one the restore makes,
/// read the root-only files restored into it and plant files of their
/// own there. Each is refused, naming the cause, before anything is
/// written; a sticky folder writable by all (`/tmp`) on the way is fine.
#[test]
fn a_restore_as_root_refuses_a_target_others_may_change() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: the check is of restores run as root");
        return;
    }
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    world.backup(&data);
    let someone = 4242;
    let chown =
        |path: &Path| std::os::unix::fs::lchown(path, Some(someone), Some(someone)).unwrap();

    let theirs = world.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    chown(&theirs);
    let open_to_all = world.path().join("open");
    fs::create_dir(&open_to_all).unwrap();
    fs::set_permissions(&open_to_all, fs::Permissions::from_mode(0o777)).unwrap();
    let elsewhere = world.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let link = world.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    chown(&link);
    for (target, why) in [
        (theirs.clone(), "it belongs to uid 4242".to_string()),
        (
            open_to_all.join("new"),
            format!(
                "others may write in {} on the way (mode 777)",
                open_to_all.display()
            ),
        ),
        (
            open_to_all.clone(),
            "others may write in it (mode 777)".to_string(),
        ),
        (
            link.join("new"),
            format!(
                "{} on the way is a symbolic link of uid 4242",
                link.display()
            ),
        ),
    ] {
        let run = world.restore(&target, &[]).fails();
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(
            run.stderr.contains(&format!(
                "cannot restore into {} as root: {why}",
                target.display()
            )),
            "{why}\n{run:#?}"
        );
    }
    for empty in [&theirs, &open_to_all, &elsewhere] {
        assert_eq!(
            fs::read_dir(empty).unwrap().count(),
            0,
            "{}",
            empty.display()
        );
    }
    // Write let in by an ACL (the group bits are then its mask), and a
    // link of theirs in the middle of a chain of root's.
    let by_acl = world.path().join("acl");
    fs::create_dir(&by_acl).unwrap();
    fs::set_permissions(&by_acl, fs::Permissions::from_mode(0o755)).unwrap();
    let acl_set = std::process::Command::new("setfacl")
        .args(["-m", "u:4242:rwx"])
        .arg(&by_acl)
        .status()
        .is_ok_and(|s| s.success());
    let theirs_link = world.path().join("their-link");
    std::os::unix::fs::symlink(&elsewhere, &theirs_link).unwrap();
    chown(&theirs_link);
    let chain = world.path().join("chain");
    std::os::unix::fs::symlink(&theirs_link, &chain).unwrap();
    let mut cases = vec![(
        chain.join("new"),
        format!(
            "{} on the way is a symbolic link of uid 4242",
            theirs_link.display()
        ),
    )];
    if acl_set {
        cases.push((
            by_acl.clone(),
            "an ACL lets others write in it (its mode shows 775: the group's bits are the \
             ACL's mask; see getfacl)"
                .to_string(),
        ));
        cases.push((
            by_acl.join("new"),
            format!(
                "others may write in {} on the way (mode 775)",
                by_acl.display()
            ),
        ));
    }
    for (target, why) in cases {
        let run = world.restore(&target, &[]).fails();
        assert!(
            run.stderr.contains(&format!(
                "cannot restore into {} as root: {why}",
                target.display()
            )),
            "{why}\n{run:#?}"
        );
    }
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

    // Sticky and writable by all on the way, as /tmp is: others cannot
    // move what root makes in it.
    fs::set_permissions(&open_to_all, fs::Permissions::from_mode(0o1777)).unwrap();
    let target = open_to_all.join("new");
    world.restore(&target, &[]).ok();
    assert_eq!(fs::read(restored(&target, &data.join("f"))).unwrap(), b"x");
}

#[test]
fn restore_needs_a_target_a_repository_and_generations() {
    let world = World::new();
    let run = world.obnam(&["restore"]).no_rust_panic().fails();
    assert!(run.stderr.contains("--to"), "{run:#?}");
    let mut cmd = world.env.obnam();
    cmd.args(["restore", "--to", "x"]);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(run.stderr.contains("--repository"), "{run:#?}");

    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    world.backup(&data);
    let mut cmd = world.env.obnam();
    cmd.arg("--repository").arg(&world.repo).args([
        "--client-name",
        "someone-else",
        "restore",
        "--to",
        "x",
    ]);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(run.stderr.contains("has no generations"), "{run:#?}");
    let run = world
        .obnam(&["--generation", "0123456789abcdef", "restore", "--to", "x"])
        .no_rust_panic()
        .fails();
    assert!(
        run.stderr.contains("no generation '0123456789abcdef'"),
        "{run:#?}"
    );
    assert!(!world.path().join("x").exists());
}

#[test]
fn listing_commands_show_generations_and_contents() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("sub/file"), b"12345").unwrap();
    fs::write(bytes_path(&data, b"bad\xffname"), b"x").unwrap();
    fs::write(data.join("new\nline"), b"x").unwrap();
    std::os::unix::fs::symlink("sub/file", data.join("link")).unwrap();
    world.backup(&data);
    world.backup(&data);

    let run = world.obnam(&["clients"]).ok();
    assert_eq!(run.stdout, format!("{CLIENT}\n"));
    let run = world.obnam(&["--output-format", "json", "clients"]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v, serde_json::json!([CLIENT]));

    let ids = world.genids();
    assert_eq!(ids.len(), 2);
    let run = world.obnam(&["generations"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:#?}");
    for (line, id) in lines.iter().zip(&ids) {
        assert!(line.starts_with(id.as_str()), "{line}");
        assert!(line.contains(" .. ") && line.contains(" files "), "{line}");
    }
    let run = world
        .obnam(&["--output-format", "json", "generations"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v[1]["id"], ids[1].as_str());
    assert_eq!(v[1]["file_count"], 4);
    let run = world.obnam(&["--output-format", "json", "genids"]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v, serde_json::json!(ids));

    let run = world.obnam(&["ls"]).ok();
    let shown = data.display().to_string();
    assert!(
        run.stdout.contains(&format!(" {shown}/sub/file\n")),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(&format!(" {shown}/bad\\xffname\n")),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(&format!(" {shown}/new\\nline\n")),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(&format!(" {shown}/link -> sub/file\n")),
        "{run:#?}"
    );
    let file_line = run
        .stdout
        .lines()
        .find(|l| l.ends_with("/sub/file"))
        .unwrap();
    assert!(file_line.starts_with("-rw"), "{file_line}");
    assert!(file_line.contains(" 5 "), "{file_line}");

    let sub = data.join("sub");
    let run = world
        .obnam(&[
            OsStr::new("ls"),
            OsStr::new("--generation"),
            OsStr::new(&ids[0]),
            sub.as_os_str(),
        ])
        .ok();
    assert_eq!(run.stdout.lines().count(), 2, "{run:#?}");
    let run = world
        .obnam(&[
            OsStr::new("--output-format"),
            OsStr::new("json"),
            OsStr::new("ls"),
            data.as_os_str(),
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 6, "{v:#}");
    let bad = entries
        .iter()
        .find(|e| e.get("path_bytes").is_some())
        .expect("a path that is not UTF-8");
    let mut want = data.as_os_str().as_bytes().to_vec();
    want.extend_from_slice(b"/bad\xffname");
    let got: Vec<u8> = bad["path_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(got, want);
    let run = world.obnam(&["ls", "/not/there"]).fails();
    assert!(
        run.stderr.contains("/not/there is not in generation"),
        "{run:#?}"
    );
}

/// Every file and folder below `dir`, as paths relative to it.
/// Every path below `dir`, but the index cache in the test's home
/// folder, which any run may add to (it is not the run's output).
fn everything(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = Vec::new();
    collect(dir, &mut all);
    all.iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .filter(|p| !p.starts_with("home/.cache"))
        .collect()
}

#[test]
fn hostile_generations_are_refused_without_writing_outside_the_target() {
    let world = World::new();
    let outside = world.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.hostile(&[
        OsStr::new("hostile-raw"),
        OsStr::new("evil"),
        outside.as_os_str(),
    ]);
    world.hostile(&["hostile-nul", "nul"]);
    let before = everything(world.path());

    let target = world.path().join("target");
    let mut cmd = world.env.obnam();
    cmd.arg("--repository")
        .arg(&world.repo)
        .args(["--client-name", "evil", "restore", "--to"])
        .arg(&target);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert_eq!(run.code, 1, "{run:#?}");
    for refused in [
        "entry named '..'",
        "entry named '.'",
        "entry named '../../escaped2'",
        "escaped3'",
        "entry named 'nul\\u{0000}name'",
    ] {
        assert!(run.stderr.contains(refused), "{refused} in {run:#?}");
    }
    assert!(
        run.stderr.contains("There were errors during the restore"),
        "{run:#?}"
    );
    // Nothing reached the folder outside, or anywhere but the target.
    assert!(
        everything(&outside).len() == 1,
        "{:?}",
        everything(&outside)
    );
    let after: BTreeSet<PathBuf> = everything(world.path())
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(before, after);
    for p in everything(world.path()) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            !name.starts_with("escaped") || p.starts_with("target/evil/link"),
            "{} was written",
            p.display()
        );
    }
    // The good file next to the bad ones was restored.
    assert_eq!(fs::read(target.join("evil/good")).unwrap(), b"good\n");
    // The symlink and the folder of the same name: one of them lost, and
    // whatever is at evil/link was not followed outside.
    let link = fs::symlink_metadata(target.join("evil/link")).unwrap();
    if link.is_dir() {
        assert_eq!(
            fs::read(target.join("evil/link/escaped4")).unwrap(),
            b"pwned 4\n"
        );
    }

    // Restoring just the path below the symlink does not follow it either.
    let target2 = world.path().join("target2");
    let mut cmd = world.env.obnam();
    cmd.arg("--repository")
        .arg(&world.repo)
        .args(["--client-name", "evil", "restore", "--to"])
        .arg(&target2)
        .arg("/evil/link/escaped4");
    obnam_test_support::run(&mut cmd).no_rust_panic();
    assert!(
        everything(&outside).len() == 1,
        "{:?}",
        everything(&outside)
    );

    // A NUL byte in a name, written through the repository API.
    let target3 = world.path().join("target3");
    let mut cmd = world.env.obnam();
    cmd.arg("--repository")
        .arg(&world.repo)
        .args(["--client-name", "nul", "restore", "--to"])
        .arg(&target3);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(
        run.stderr.contains("entry named 'bad\\u{0000}name'"),
        "{run:#?}"
    );
    assert_eq!(everything(&target3.join("evil")).len(), 2);

    // ls shows the hostile names escaped, on one line each.
    let mut cmd = world.env.obnam();
    cmd.arg("--repository")
        .arg(&world.repo)
        .args(["--client-name", "evil", "ls"]);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().ok();
    assert!(
        run.stdout.contains(" /evil/..\\x2f..\\x2fescaped2\n"),
        "{run:#?}"
    );
}

#[test]
fn damaged_files_are_reported_removed_and_the_rest_restored() {
    let world = World::new();
    world.hostile(&["hostile-damaged", CLIENT]);
    let target = world.path().join("target");
    let run = world.restore(&target, &[]).fails();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .contains("ERROR: /data/bad-checksum: not restored: checksum mismatch"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("ERROR: /data/missing-chunk: not restored: cannot read chunk"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("ERROR: /data/wrong-size: not restored"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("There were errors during the restore: 3 problems\n"),
        "nothing restored without all its metadata: {run:#?}"
    );
    assert!(!target.join("data/bad-checksum").exists());
    assert!(!target.join("data/missing-chunk").exists());
    assert!(!target.join("data/wrong-size").exists());
    assert_eq!(fs::read(target.join("data/good")).unwrap(), b"good\n");
    // "Restored N files" is said on success only: beside the error it would
    // read as one.
    assert_eq!(run.stdout, "", "{run:#?}");

    // --quiet hides the per-file errors, so the final message lists them.
    let quiet = world.path().join("quiet");
    let run = world.restore(&quiet, &[OsStr::new("--quiet")]).fails();
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.stderr.contains("/data/bad-checksum: not restored"),
        "{run:#?}"
    );
}

#[test]
fn pretend_writes_nothing() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"12345").unwrap();
    world.backup(&data);
    let target = world.path().join("target");
    let run = world.restore(&target, &[OsStr::new("--pretend")]).ok();
    assert!(run.stdout.contains("Would restore 1 file and"), "{run:#?}");
    assert!(!target.exists());
}

/// `find`, `diff`, `dump`, `kdirstat` and `verify` on hostile and damaged
/// generations: clear errors or escaped names, never a panic, and nothing
/// written anywhere.
#[test]
fn inspection_commands_survive_hostile_and_damaged_generations() {
    let world = World::new();
    let outside = world.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.hostile(&[
        OsStr::new("hostile-raw"),
        OsStr::new("evil"),
        outside.as_os_str(),
    ]);
    world.hostile(&["hostile-damaged", CLIENT]);
    let before = everything(world.path());
    let as_client = |client: &str, args: &[&str]| {
        let mut cmd = world.env.obnam();
        cmd.arg("--repository")
            .arg(&world.repo)
            .args(["--client-name", client])
            .args(args);
        obnam_test_support::run(&mut cmd).no_rust_panic()
    };
    // Names that are not safe are skipped (with a warning), not followed.
    let run = as_client("evil", &["find", "escaped"]).ok();
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "only escaped4, below the folder named link: {run:#?}"
    );
    assert!(!run.stdout.contains("/evil/../"), "{run:#?}");
    let run = as_client("evil", &["find", "good"]).ok();
    assert!(run.stdout.contains("/evil/good  in "), "{run:#?}");
    as_client("evil", &["kdirstat"]).ok();
    let run = as_client("evil", &["diff"]).fails();
    assert!(run.stderr.contains("has only one"), "{run:#?}");
    as_client("evil", &["dump", "/evil"]);
    as_client("evil", &["verify", "/evil"]).fails();

    // Damaged data: a dump refuses it before writing it.
    let run = as_client(CLIENT, &["dump", "/data/bad-checksum"]).fails();
    assert!(run.stderr.contains("checksum mismatch"), "{run:#?}");
    let run = as_client(CLIENT, &["dump", "/data"]).fails();
    assert!(run.stderr.contains("/data/"), "{run:#?}");
    let run = as_client(CLIENT, &["dump", "/data/good"]).ok();
    assert_eq!(run.stdout, "good\n");
    as_client(CLIENT, &["find", "."]).ok();

    assert_eq!(everything(world.path()), before, "something was written");
}

#[test]
fn hard_links_of_fifos_devices_and_symlinks_are_restored_as_links() {
    use obnam_test_support::BackupWorld;
    let w = BackupWorld::new("links");
    let d = &w.data;
    let sh = |script: &str| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    sh("mkfifo f1 && ln f1 f2 && ln -s target s1 && ln -P s1 s2");
    let devices = obnam_test_support::awkward::is_root();
    if devices {
        sh("mknod d1 c 1 5 && ln d1 d2");
    } else {
        eprintln!("not root: device nodes left out");
    }
    w.backup(&[]).ok();
    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let back = restored(&to, d);
    let mut pairs = vec![("f1", "f2"), ("s1", "s2")];
    if devices {
        pairs.push(("d1", "d2"));
    }
    for (one, two) in pairs {
        let a = fs::symlink_metadata(back.join(one)).unwrap();
        let b = fs::symlink_metadata(back.join(two)).unwrap();
        assert_eq!(a.nlink(), 2, "{one}");
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{one} and {two}");
        assert_eq!(a.mode(), fs::symlink_metadata(d.join(one)).unwrap().mode());
    }
    assert_eq!(fs::read_link(back.join("s2")).unwrap(), Path::new("target"));
    // A dump's tar stream links them too.
    let out = w
        .env
        .obnam()
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client, "dump"])
        .arg(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let tar = w.env.path().join("dump.tar");
    fs::write(&tar, &out.stdout).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tar)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for link in ["data/f2 link to data/f1", "data/s2 link to data/s1"] {
        assert!(listed.contains(link), "{link}:\n{listed}");
    }
}

/// A restore interrupted (SIGTERM, SIGINT) while it writes large files
/// ends as the user guide says, and leaves no file half-written under its
/// real name: every regular file in the target is the original, byte for
/// byte. The signal is sent once a large file is seen part-written, so
/// that it lands in the middle of one.
#[test]
fn an_interrupted_restore_leaves_no_partial_file() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    const BIG: usize = 24 << 20;
    for i in 0..3u64 {
        fs::write(
            data.join(format!("big{i}")),
            obnam_test_support::noise(BIG, 40 + i),
        )
        .unwrap();
    }
    fs::write(data.join("small"), b"small\n").unwrap();
    world.backup(&data);

    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let target = world.path().join(format!("target-{signal}"));
        let mut cmd = world.env.obnam();
        cmd.arg("--repository")
            .arg(&world.repo)
            .args(["--client-name", CLIENT, "restore", "--to"])
            .arg(&target)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let bigs: Vec<PathBuf> = (0..3)
            .map(|i| restored(&target, &data.join(format!("big{i}"))))
            .collect();
        let part_written = || {
            bigs.iter()
                .any(|b| fs::symlink_metadata(b).is_ok_and(|m| m.len() > 0 && m.len() < BIG as u64))
        };
        let started = Instant::now();
        while !part_written() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the restore ended before a large file was seen part-written"
            );
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.ends_with(&format!("ERROR: interrupted by SIG{signal}\n")),
            "{stderr}"
        );
        for file in obnam_test_support::files_under(&target) {
            let meta = fs::symlink_metadata(&file).unwrap();
            if !meta.is_file() {
                continue;
            }
            let original = data.join(file.file_name().unwrap());
            assert!(
                fs::read(&file).unwrap() == fs::read(&original).unwrap(),
                "{} is left as {} bytes of {}",
                file.display(),
                meta.len(),
                fs::metadata(&original).unwrap().len()
            );
        }
    }
}

/// Objects restored into a folder with a default ACL do not keep the ACL
/// they inherit there, unless the backup recorded one: a restored `0640`
/// file could be read by a user the original never let in.
#[test]
fn a_default_acl_of_the_target_is_not_inherited_by_what_is_restored() {
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("private")).unwrap();
    fs::write(data.join("secret"), b"secret\n").unwrap();
    fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(data.join("private/inner"), b"inner\n").unwrap();
    fs::set_permissions(data.join("private"), fs::Permissions::from_mode(0o750)).unwrap();
    world.backup(&data);
    // u::rwx, u:1234:rwx, g::r-x, m::rwx, o::--- as the default ACL.
    let target = world.path().join("target");
    fs::create_dir(&target).unwrap();
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 7, 1234),
        (4, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    if let Err(e) = xattr::set(&target, "system.posix_acl_default", &acl) {
        eprintln!("skipped: this file system takes no ACLs ({e})");
        return;
    }
    let to = target.join("r");
    world.restore(&to, &[]).ok();
    let restored = to.join(data.strip_prefix("/").unwrap());
    for (path, mode) in [
        (restored.join("secret"), 0o100640),
        (restored.join("private"), 0o40750),
        (restored.join("private/inner"), 0o100644),
    ] {
        let names: Vec<_> = xattr::list(&path).unwrap().collect();
        assert!(names.is_empty(), "{}: {names:?}", path.display());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o177777, mode, "{}", path.display());
    }
}

/// Run `obnam` of `w` with `args` under a file-size limit of 1 MiB.
fn under_file_size_limit<S: AsRef<OsStr>>(w: &World, args: &[S]) -> Run {
    let direct = w.command(args);
    obnam_test_support::run(&mut obnam_test_support::under_ulimit(&direct, "-f 1024"))
        .no_rust_panic()
}

/// Out of file descriptors, a backup stops: every file after the first
/// failed the same way, reported one by one, and a generation was
/// committed with most of them missing. Short of a few more, the storage
/// runtime's start panicked in tokio.
#[test]
fn a_backup_out_of_file_descriptors_stops_and_commits_nothing() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..300 {
        fs::write(data.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    w.backup(&data);
    // Files a worker holds open for a while (files of a few bytes were
    // each open so briefly that, on a loaded machine, 64 workers held
    // few at once, and 26 descriptors now and then sufficed).
    for i in 0..300 {
        fs::write(data.join(format!("f{i}")), noise(256 << 10, i)).unwrap();
    }
    // 30 left room for the workers now and then (one run in five), when they
    // happened not to hold many files at once: 26 runs out every time.
    for limit in ["-n 20", "-n 21", "-n 26"] {
        let direct = w.command(&[
            OsStr::new("backup"),
            OsStr::new("--backup-threads"),
            OsStr::new("64"),
            data.as_os_str(),
        ]);
        let run = obnam_test_support::run(&mut obnam_test_support::under_ulimit(&direct, limit))
            .no_rust_panic();
        assert_eq!(run.code, 1, "{limit}: {run:#?}");
        assert!(
            run.stderr.contains("cannot start the storage runtime")
                || run
                    .stderr
                    .contains("obnam has run out of file descriptors; raise the limit"),
            "{limit}: {run:#?}"
        );
        assert!(!run.stderr.contains("panicked"), "{limit}: {run:#?}");
        assert_eq!(w.genids().len(), 1, "{limit}: a generation was committed");
    }
}

/// A file-size limit (`ulimit -f`) is an error like a full disk: the
/// process was killed by SIGXFSZ (exit 153), without a word, leaving a
/// restored file cut short under its own name and a backup's lock.
#[test]
fn a_file_size_limit_fails_like_a_full_disk() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("small"), b"small").unwrap();
    fs::write(data.join("big"), noise(3 << 20, 7)).unwrap();
    w.backup(&data);
    let to = w.path().join("restored");
    let run = under_file_size_limit(
        &w,
        &[OsStr::new("restore"), OsStr::new("--to"), to.as_os_str()],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    let big = to.join(data.strip_prefix("/").unwrap()).join("big");
    assert!(
        run.stderr
            .contains(&format!("{}: not restored", data.join("big").display()))
            && run.stderr.contains("File too large"),
        "{run:#?}"
    );
    assert!(!big.exists(), "a file cut short was left");
    let small = to.join(data.strip_prefix("/").unwrap()).join("small");
    assert_eq!(fs::read(small).unwrap(), b"small");
    // A backup whose pack outgrows the limit.
    fs::write(data.join("big2"), noise(3 << 20, 8)).unwrap();
    let run = under_file_size_limit(&w, &[OsStr::new("backup"), data.as_os_str()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("File too large"), "{run:#?}");
    assert!(fs::read_dir(w.repo.join("locks")).unwrap().next().is_none());
    w.backup(&data);
}

/// Restored onto a file system whose times end in January 2038 (ext4
/// with 128-byte inodes, on a loop device), a file, a folder and a
/// symlink recorded with a time in 2100 are restored, but each is named
/// as an error: the kernel clamps the time without failing, so restore
/// reads it back (only for such times). A time the file system holds
/// (1975) is no error.
#[test]
fn a_time_the_file_system_cannot_hold_is_an_error_naming_it() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: making a file system to restore to needs root");
        return;
    }
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("future-dir")).unwrap();
    fs::write(data.join("future"), b"from 2100\n").unwrap();
    fs::write(data.join("past"), b"from 1975\n").unwrap();
    std::os::unix::fs::symlink("future", data.join("future-link")).unwrap();
    let set = |name: &str, secs: i64| {
        let when = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: when,
            last_modification: when,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            data.join(name),
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    const YEAR_2100: i64 = 4_102_444_800;
    set("future", YEAR_2100);
    set("future-link", YEAR_2100);
    set("future-dir", YEAR_2100);
    set("past", 157_766_400);
    world.backup(&data);

    let image = world.path().join("ext4.img");
    fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
    let target = world.path().join("target");
    fs::create_dir(&target).unwrap();
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-I", "128"])
        .arg(&image)
        .output();
    let mounted = made.is_ok_and(|o| o.status.success())
        && std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: no mkfs.ext4 or no loop device to mount an ext4 image on");
        return;
    }
    let restored = world.restore(&target.join("r"), &[]);
    obnam_test_support::unmount(&target);
    assert_eq!(restored.code, 1, "{restored:#?}");
    for name in ["future", "future-dir", "future-link"] {
        let named = restored.stderr.lines().any(|l| {
            l.contains(&format!("{name}: ")) && l.contains("its modification time, 4102444800 s after 1970, cannot be held by the file system restored to, which made it 2147483647 s")
        });
        assert!(named, "{name} is not named: {restored:#?}");
    }
    assert!(!restored.stderr.contains("past"), "{restored:#?}");
}

/// A restore not as root gives an object its group where the user is in
/// that group (as `tar` and `cp -p` do: a shared project folder keeps its
/// group), and keeps a setgid bit only then: found by an outside review,
/// the group was never restored, and a setgid file came back setgid to
/// the user's own group.
#[test]
fn a_restore_not_as_root_gives_the_groups_the_user_is_in() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing a user in some groups needs root");
        return;
    }
    let (user, project, other) = (4242u32, 4343u32, 4444u32);
    let env = TestEnv::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = env.path().join("home-of-user");
    let data = home.join("data");
    fs::create_dir_all(data.join("shared")).unwrap();
    fs::write(data.join("tool"), b"#!/bin/sh\n").unwrap();
    fs::write(data.join("other"), b"x").unwrap();
    for (path, gid, mode) in [
        (data.join("shared"), project, 0o2775),
        (data.join("tool"), project, 0o2755),
        (data.join("other"), other, 0o2755),
    ] {
        std::os::unix::fs::chown(&path, Some(user), Some(gid)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    for path in [&home, &data] {
        std::os::unix::fs::chown(path, Some(user), Some(user)).unwrap();
    }
    let repo = home.join("repo");
    let as_user = |args: &[&OsStr]| run_as_user(&env, &home, &repo, (user, &[project]), args);
    as_user(&[OsStr::new("backup"), data.as_os_str()]).ok();
    // Into a folder of theirs, and into one whose set-group-ID bit gives
    // what is made in it a group the user is not in (its group stayed:
    // that group could read a restored 0640 file).
    let sgid = home.join("sgid");
    fs::create_dir(&sgid).unwrap();
    std::os::unix::fs::chown(&sgid, Some(user), Some(other)).unwrap();
    fs::set_permissions(&sgid, fs::Permissions::from_mode(0o2770)).unwrap();
    for to in [home.join("restored"), sgid.join("restored")] {
        let run = as_user(&[OsStr::new("restore"), OsStr::new("--to"), to.as_os_str()]).ok();
        // The folders on the way (root's) are the user's now: said.
        assert!(
            run.stderr
                .contains("objects restored belonged to other users in the backup"),
            "{run:#?}"
        );
        let restored = to.join(data.strip_prefix("/").unwrap());
        for (name, gid, mode) in [
            ("shared", project, 0o2775),
            ("tool", project, 0o2755),
            // Not the user's group: their own, and no setgid bit naming it.
            ("other", user, 0o755),
        ] {
            let meta = fs::symlink_metadata(restored.join(name)).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (user, gid, mode),
                "{}: {name}",
                to.display()
            );
        }
        let meta = fs::symlink_metadata(&restored).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (user, user), "{}", to.display());
    }
}

/// Run obnam as user `uid` (of group `uid`, and the supplementary
/// `groups`) on `repo`, with `home` as its home and current folder.
fn run_as_user(
    env: &TestEnv,
    home: &Path,
    repo: &Path,
    (uid, groups): (u32, &[u32]),
    args: &[&OsStr],
) -> Run {
    let mut direct = env.obnam();
    direct
        .env("HOME", home)
        .arg("--repository")
        .arg(repo)
        .args(args)
        .current_dir(home);
    obnam_test_support::run(&mut obnam_test_support::as_user(&direct, uid, groups))
}

/// The outcome of a restore with problems tells objects restored without
/// all their metadata from objects not restored (a user asks first
/// whether the data is there; "4 problems" said neither).
#[test]
fn the_outcome_tells_objects_without_all_metadata_from_those_not_restored() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing a user needs root");
        return;
    }
    let user = 4848u32;
    let env = TestEnv::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = env.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("marked"), b"kept").unwrap();
    fs::write(data.join("plain"), b"plain").unwrap();
    // An attribute only root may set: a user's restore cannot.
    if let Err(e) = xattr::set(data.join("marked"), "trusted.obnam-test", b"1") {
        eprintln!("skipped: no trusted attributes here: {e}");
        return;
    }
    let made = std::process::Command::new("mknod")
        .arg(data.join("dev"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let repo = env.path().join("repo");
    obnam_test_support::run(
        env.obnam()
            .arg("--repository")
            .arg(&repo)
            .args(["--client-name", "c", "backup"])
            .arg(&data),
    )
    .ok();
    let chmod = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(chmod.success());
    let home = env.path().join("home-of-user");
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(user), Some(user)).unwrap();
    let to = home.join("restored");
    let run = run_as_user(
        &env,
        &home,
        &repo,
        (user, &[]),
        &[
            OsStr::new("--client-name"),
            OsStr::new("c"),
            OsStr::new("restore"),
            OsStr::new("--to"),
            to.as_os_str(),
        ],
    )
    .fails()
    .no_rust_panic();
    // Told by problem: the device node (where one was made) is the one
    // problem of what was not restored.
    let told = if made {
        "(1 object was restored without all its metadata; 1 problem is of what was not \
         restored)"
    } else {
        "(1 object was restored without all its metadata: every problem is of that)"
    };
    assert!(
        run.stderr.contains("extended attribute") && run.stderr.contains(told),
        "{run:#?}"
    );
    if made {
        assert!(run.stderr.contains("device node not restored"), "{run:#?}");
    }
    let restored = to.join(data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("marked")).unwrap(), b"kept");
    assert_eq!(fs::read(restored.join("plain")).unwrap(), b"plain");
}

/// A user restoring their own read-only file or folder that has an ACL
/// and `user.*` extended attributes gets them all back: the ACL was set
/// first (in name order), took away the owner's write permission, and
/// setting the `user.*` attributes after it failed (`Permission denied`).
#[test]
fn a_users_read_only_file_with_an_acl_keeps_its_attributes() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing a user needs root");
        return;
    }
    let user = 4646u32;
    let env = TestEnv::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = env.path().join("home-of-user");
    let data = home.join("data");
    let (file, folder) = (data.join("ro"), data.join("ro-folder"));
    fs::create_dir_all(&folder).unwrap();
    fs::write(&file, b"read only").unwrap();
    // user::r-x, user:1000:r-x, group::r-x, mask::r-x, other::r-x
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, id) in [
        (0x01u16, u32::MAX),
        (0x02, 1000),
        (0x04, u32::MAX),
        (0x10, u32::MAX),
        (0x20, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(5u16.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    for path in [&file, &folder] {
        xattr::set(path, "user.note", b"kept").unwrap();
        if let Err(e) = xattr::set(path, "system.posix_acl_access", &acl) {
            eprintln!("skipped: this file system takes no ACLs: {e}");
            return;
        }
    }
    for path in [&home, &data, &folder, &file] {
        std::os::unix::fs::chown(path, Some(user), Some(user)).unwrap();
    }
    let repo = home.join("repo");
    let as_user = |args: &[&OsStr]| run_as_user(&env, &home, &repo, (user, &[]), args);
    as_user(&[OsStr::new("backup"), data.as_os_str()]).ok();
    let to = home.join("restored");
    as_user(&[OsStr::new("restore"), OsStr::new("--to"), to.as_os_str()]).ok();
    let restored = to.join(data.strip_prefix("/").unwrap());
    for name in ["ro", "ro-folder"] {
        let path = restored.join(name);
        assert_eq!(
            xattr::get(&path, "user.note").unwrap().as_deref(),
            Some(&b"kept"[..]),
            "{name}"
        );
        assert_eq!(
            xattr::get(&path, "system.posix_acl_access").unwrap(),
            Some(acl.clone()),
            "{name}"
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o555, "{name}");
    }
}
