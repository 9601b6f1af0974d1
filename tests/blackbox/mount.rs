//! `obnam mount`, end to end: generations mounted with FUSE and compared
//! field by field with the originals (the comparison of the restore
//! tests), a large file read at odd offsets and whole while another
//! process lists directories, unmounting by `fusermount3 -u` and by
//! Ctrl-C, a second mount of the same point, and the errors where FUSE
//! is missing.
//!
//! Where FUSE is not available the tests that mount say so and pass
//! (`obnam_test_support::mount::fuse_or_skip`), unless
//! `OBNAM_TEST_REQUIRE_FUSE=1`. Every mount is held by a guard that
//! unmounts it even when an assertion fails, and each test checks that
//! nothing (obnam, or fusermount3's helper) is left running for the
//! mount point after it is unmounted.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use obnam_test_support::awkward::{
    assert_same, make_awkward_tree, restored, set_final_times, set_mtime,
};
use obnam_test_support::mount::{fuse_or_skip, mounted_type, wait_no_process, Mounted};
use obnam_test_support::{noise, Run, TestEnv};

const CLIENT: &str = "mountclient";

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

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> std::process::Command {
        let mut cmd = self.env.obnam();
        cmd.arg("--repository")
            .arg(&self.repo)
            .arg("--client-name")
            .arg(CLIENT)
            .args(args);
        cmd
    }

    fn obnam<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        obnam_test_support::run(&mut self.command(args)).no_rust_panic()
    }

    fn backup(&self, root: &Path) {
        self.obnam(&[OsStr::new("backup"), root.as_os_str()]).ok();
    }

    fn genids(&self) -> Vec<String> {
        let run = self.obnam(&["genids"]).ok();
        run.stdout.lines().map(str::to_string).collect()
    }

    /// An empty folder to mount on.
    fn mount_point(&self, name: &str) -> PathBuf {
        let point = self.path().join(name);
        fs::create_dir(&point).expect("mount point");
        point
    }

    /// Mount the client's generations at `point`.
    fn mount(&self, point: &Path) -> Mounted {
        let mut cmd = self.command(&[OsStr::new("mount"), point.as_os_str()]);
        Mounted::start(&mut cmd, point)
    }
}

/// Tests that mount hold this shared; the Ctrl-C test holds it alone, so
/// that its checks that no helper process is left are about its own
/// mount. (An interrupted mount used to stay mounted now and then on a
/// busy machine: fusermount3's auto-unmount helper could run between the
/// kernel's closing of obnam's socket and of its FUSE device, find the
/// file system still connected, and leave it. The mount plugin now
/// unmounts on the `run-interrupted` hook; see plugins/mount/src/mount.rs.)
static MOUNTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Assert that nothing is mounted at `point` and no process (obnam, or
/// fusermount3's auto-unmount helper) mentions it any more.
#[track_caller]
fn assert_all_gone(point: &Path) {
    assert!(
        obnam_test_support::mount::wait_unmounted(point, Duration::from_secs(10)),
        "{} is still mounted",
        point.display()
    );
    let left = wait_no_process(&point.to_string_lossy(), Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

/// The names at the top of a mount, sorted.
fn top_names(point: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(point)
        .expect("list the mount")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn mount_shows_every_generation_as_backed_up() {
    if !fuse_or_skip("mount_shows_every_generation_as_backed_up") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let tree = make_awkward_tree(&world.path().join("data"));
    let original = tree.root.clone();
    world.backup(&original);
    // Generation 1 as restore gives it back (the restore tests show that
    // this is the original as it was), to compare the mount's older
    // generation with.
    let first = world.path().join("first");
    world
        .obnam(&[OsStr::new("restore"), OsStr::new("--to"), first.as_os_str()])
        .ok();

    // Change the tree (an edit, renames, removals, a new file), then
    // generation 2.
    fs::write(
        original.join("plain.txt"),
        b"changed, and longer than before\n",
    )
    .unwrap();
    fs::rename(original.join("dir1/nested"), original.join("dir2/moved")).unwrap();
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
    set_mtime(&original.join("old.txt"), -1, 1);
    world.backup(&original);
    let ids = world.genids();
    assert_eq!(ids.len(), 2, "{ids:?}");

    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    assert_eq!(mounted_type(&point).as_deref(), Some("fuse.obnam"));

    // The top: a directory per generation, oldest first by name, and
    // `latest` pointing at the newest.
    let names = top_names(&point);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(&format!("_{}", ids[0])), "{names:?}");
    assert!(names[1].ends_with(&format!("_{}", ids[1])), "{names:?}");
    assert_eq!(names[2], "latest");
    assert_eq!(
        fs::read_link(point.join("latest")).unwrap(),
        Path::new(&names[1])
    );

    // The newest generation is the tree as it is now, field by field:
    // contents, sizes, modes, owners, times, symlinks, devices, hard
    // links with their counts, extended attributes.
    assert_same(&original, &restored(&point.join("latest"), &original));
    // The older one is the tree as it was.
    assert_same(
        &restored(&first, &original),
        &restored(&point.join(&names[0]), &original),
    );

    // Read-only.
    let inside = restored(&point.join("latest"), &original);
    let err = fs::write(inside.join("plain.txt"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");
    assert!(fs::create_dir(inside.join("new-dir")).is_err());

    // Inode numbers are stable: the same path gives the same inode.
    let a = fs::symlink_metadata(inside.join("dir1/linked")).unwrap();
    let b = fs::symlink_metadata(inside.join("dir1/linked")).unwrap();
    let c = fs::symlink_metadata(inside.join("dir2/link2")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino(), "hard links are one inode");

    let run = mounted.unmount();
    assert_eq!(
        run.code, 0,
        "fusermount3 -u ends obnam mount successfully: {run:#?}"
    );
    assert!(run.stdout.contains("Mounted 2 generations"), "{run:#?}");
    assert_all_gone(&point);
}

/// Readers that list one large folder at once each get all of it (the
/// first lists it from the repository; the others wait for that listing
/// rather than make their own), and the mount answers after.
#[test]
fn simultaneous_first_listings_of_a_folder_each_get_all_of_it() {
    if !fuse_or_skip("simultaneous_first_listings_of_a_folder_each_get_all_of_it") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("wide")).unwrap();
    for f in 0..5000 {
        fs::write(data.join(format!("wide/f{f:05}")), b"").unwrap();
    }
    world.backup(&data);
    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    let wide = restored(&point.join("latest"), &data).join("wide");
    let counts: Vec<usize> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..6)
            .map(|_| s.spawn(|| fs::read_dir(&wide).unwrap().count()))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(counts, vec![5000; 6]);
    assert_eq!(fs::read_dir(&wide).unwrap().count(), 5000);
    let run = mounted.unmount();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_all_gone(&point);
}

#[test]
fn a_large_file_reads_through_the_mount_while_another_process_lists() {
    if !fuse_or_skip("a_large_file_reads_through_the_mount_while_another_process_lists") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    for d in 0..10 {
        for f in 0..20 {
            world
                .env
                .write(&format!("data/d{d}/f{f}"), format!("file {d}/{f}\n"));
        }
    }
    // 64 MiB that neither compresses nor deduplicates: about 256
    // content-defined chunks of different lengths.
    let big = noise(64 << 20, 42);
    fs::write(data.join("big.bin"), &big).unwrap();
    world.backup(&data);

    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    let inside = restored(&point.join("latest"), &data);
    let path = inside.join("big.bin");
    assert_eq!(fs::metadata(&path).unwrap().len(), big.len() as u64);

    let lister = {
        let inside = inside.clone();
        std::process::Command::new("sh")
            .arg("-c")
            .arg("for i in 1 2 3 4 5 6 7 8 9 10; do ls -lR \"$1\" > /dev/null || exit 1; done")
            .arg("sh")
            .arg(&inside)
            .spawn()
            .expect("start ls")
    };

    // Odd offsets first, the far end before anything else: the mount
    // must find them without being read in order.
    let file = fs::File::open(&path).unwrap();
    for (offset, len) in [
        ((64 << 20) - 10, 10usize),
        (33_554_431, 70_000),
        (12_345_678, 1),
        (0, 4096),
        (1_048_575, 300_000),
    ] {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset as u64).unwrap();
        assert!(
            buf == big[offset..offset + len],
            "bytes at {offset}..{} differ",
            offset + len
        );
    }
    drop(file);
    // Then the whole file, while `ls -lR` runs.
    let whole = fs::read(&path).unwrap();
    assert!(whole == big, "the file read through the mount differs");

    let mut lister = lister;
    let status = lister.wait().unwrap();
    assert!(status.success(), "ls -lR through the mount failed");

    let run = mounted.unmount();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_all_gone(&point);
}

#[test]
fn ctrl_c_unmounts_and_leaves_no_process() {
    if !fuse_or_skip("ctrl_c_unmounts_and_leaves_no_process") {
        return;
    }
    let _alone = MOUNTS.write().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    world.env.write("data/file", "content\n");
    world.backup(&data);
    for signal in ["INT", "TERM"] {
        let point = world.mount_point(&format!("mnt-{signal}"));
        let mut mounted = world.mount(&point);
        let inside = restored(&point.join("latest"), &data);
        assert_eq!(fs::read(inside.join("file")).unwrap(), b"content\n");
        let run = mounted.signal(signal);
        assert_ne!(run.code, 0, "{run:#?}");
        assert!(
            run.stderr.contains(&format!("interrupted by SIG{signal}")),
            "{run:#?}"
        );
        assert_all_gone(&point);
        assert!(
            top_names(&point).is_empty(),
            "the mount point is an empty folder again"
        );
    }
    // Asked for JSON, it says what it mounted in JSON (it printed its
    // sentence on standard output).
    let point = world.mount_point("mnt-json");
    let mut cmd = world.command(&[
        OsStr::new("--output-format"),
        OsStr::new("json"),
        OsStr::new("mount"),
        point.as_os_str(),
    ]);
    let mut mounted = Mounted::start(&mut cmd, &point);
    let run = mounted.signal("INT");
    assert_all_gone(&point);
    let said: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(
        said,
        serde_json::json!({
            "mountpoint": fs::canonicalize(&point).unwrap().to_str().unwrap(),
            "client": CLIENT,
            "generations": 1,
        }),
        "{run:#?}"
    );
}

/// A mount holds a reader's lock while it is up: a `forget` and `prune`
/// of a generation it shows delete nothing under it (its files still
/// read whole); once it is unmounted the lock is gone and the next prune
/// deletes what waited.
#[test]
fn a_prune_waits_for_a_mount_to_end() {
    if !fuse_or_skip("a_prune_waits_for_a_mount_to_end") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    let gone = noise(600_000, 41);
    world.env.write("data/gone.bin", &gone);
    world.backup(&data);
    fs::remove_file(data.join("gone.bin")).unwrap();
    world.env.write("data/kept.txt", "kept\n");
    world.backup(&data);
    let first = world.genids()[0].clone();
    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    let locks = |repo: &Path| {
        fs::read_dir(repo.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(locks(&world.repo), 1, "the mount's reader's lock");
    world.obnam(&["forget", &first]).ok();
    let prune = world.obnam(&["prune"]).ok();
    assert!(
        prune.stdout.contains("deletion deferred: 1 run"),
        "{prune:#?}"
    );
    // Shown as when it was mounted: DATE_ID, oldest first.
    let shown = top_names(&point)[0].clone();
    assert!(shown.ends_with(&format!("_{first}")), "{shown}");
    let inside = restored(&point.join(shown), &data);
    assert_eq!(fs::read(inside.join("gone.bin")).unwrap(), gone);
    let run = mounted.signal("INT");
    assert!(run.stderr.contains("interrupted by SIGINT"), "{run:#?}");
    assert_all_gone(&point);
    assert_eq!(locks(&world.repo), 0);
    let prune = world.obnam(&["prune"]).ok();
    assert!(!prune.stdout.contains("deferred"), "{prune:#?}");
    assert!(prune.stdout.contains("packs deleted: "), "{prune:#?}");
    assert!(!prune.stdout.contains("packs deleted: 0\n"), "{prune:#?}");
}

#[test]
fn a_second_mount_of_the_same_point_is_refused() {
    if !fuse_or_skip("a_second_mount_of_the_same_point_is_refused") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    world.env.write("data/file", "content\n");
    world.backup(&data);
    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);

    let run = world
        .obnam(&[OsStr::new("mount"), point.as_os_str()])
        .fails();
    let shown = point.display().to_string();
    assert!(
        run.stderr.contains(&shown) && run.stderr.contains("already a mount point"),
        "{run:#?}"
    );
    // The first mount is unharmed.
    let inside = restored(&point.join("latest"), &data);
    assert_eq!(fs::read(inside.join("file")).unwrap(), b"content\n");

    let run = mounted.unmount();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_all_gone(&point);
}

#[test]
fn mount_without_fuse_or_a_mount_point_says_why() {
    // Runs everywhere: these fail before anything is mounted.
    let world = World::new();
    let data = world.path().join("data");
    world.env.write("data/file", "content\n");
    world.backup(&data);
    let point = world.mount_point("mnt");

    // No fusermount3 on PATH.
    let empty = world.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let mut cmd = world.command(&[OsStr::new("mount"), point.as_os_str()]);
    cmd.env("PATH", &empty);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(
        run.stderr.contains("FUSE is not available") && run.stderr.contains("fusermount3"),
        "{run:#?}"
    );

    if obnam_test_support::mount::fuse_unavailable().is_none() {
        // No such mount point, and a file as one.
        let run = world
            .obnam(&[
                OsStr::new("mount"),
                world.path().join("nowhere").as_os_str(),
            ])
            .fails();
        assert!(run.stderr.contains("does not exist"), "{run:#?}");
        let file = world.env.write("a-file", "x");
        let run = world
            .obnam(&[OsStr::new("mount"), file.as_os_str()])
            .fails();
        assert!(run.stderr.contains("not a directory"), "{run:#?}");
        // A client with nothing backed up.
        let mut cmd = world.env.obnam();
        cmd.arg("--repository")
            .arg(&world.repo)
            .args(["--client-name", "nobody", "mount"])
            .arg(&point);
        let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
        assert!(run.stderr.contains("no generations"), "{run:#?}");
    }
    assert!(mounted_type(&point).is_none());
}

/// mount shows the client's name as every command shows names: escaped.
/// The command line refuses control characters in `--client-name`, but
/// takes a backslash and a bidirectional override, which shown raw would
/// make the name read as another (here one ending in `exe.txt`).
#[test]
fn mount_shows_the_client_name_escaped() {
    const NAME: &str = "back\\slash\u{202e}txt.exe";
    const SHOWN: &str = "back\\\\slash\\u{202e}txt.exe";
    if !fuse_or_skip("mount_shows_the_client_name_escaped") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let as_client = |client: &str, args: &[&OsStr]| {
        let mut cmd = world.env.obnam();
        cmd.arg("--repository")
            .arg(&world.repo)
            .args(["--client-name", client])
            .args(args);
        cmd
    };
    let data = world.path().join("data");
    world.env.write("data/file", "content\n");
    obnam_test_support::run(&mut as_client(
        NAME,
        &[OsStr::new("backup"), data.as_os_str()],
    ))
    .ok();
    let point = world.mount_point("mnt");

    let none = format!("{NAME}-none");
    let run = obnam_test_support::run(&mut as_client(
        &none,
        &[OsStr::new("mount"), point.as_os_str()],
    ))
    .no_rust_panic()
    .fails();
    assert!(
        run.stderr
            .contains(&format!("client '{SHOWN}-none' has no generations")),
        "{run:#?}"
    );

    let mut mounted = Mounted::start(
        &mut as_client(NAME, &[OsStr::new("mount"), point.as_os_str()]),
        &point,
    );
    let run = mounted.unmount();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout
            .contains(&format!("Mounted 1 generation of client {SHOWN} at")),
        "{run:#?}"
    );
    assert_all_gone(&point);
}

/// A file whose data cannot be read through the mount is named, once,
/// in the mount's warning (it named only the pack, once per kernel read).
#[test]
fn a_read_that_fails_names_the_file_once() {
    if !fuse_or_skip("a_read_that_fails_names_the_file_once") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("big"), noise(2_000_000, 9)).unwrap();
    world.backup(&data);
    let largest = obnam_test_support::files_under(&world.repo.join("packs"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(largest).unwrap();
    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    let inside = restored(&point.join("latest"), &data);
    for _ in 0..2 {
        assert!(fs::read(inside.join("big")).is_err());
    }
    let run = mounted.unmount();
    assert_all_gone(&point);
    let named = format!("{}/big in generation ", data.display());
    assert_eq!(run.stderr.matches(&named).count(), 1, "{run:#?}");
}

/// Two names of one hard-linked file that the generation records with two
/// contents (the file was rewritten while the backup went from one name
/// to the other) are two files everywhere, each with its own content:
/// `restore` made them so, but `dump`'s tar stream wrote the second as a
/// link to the first (its content lost) and the mount showed both names
/// with whichever content was looked up first.
#[test]
fn names_of_one_file_recorded_with_two_contents_keep_their_own() {
    let world = World::new();
    let plugins = world.env.plugin_dir("hostile-plugin", &["hostile"]);
    let mut cmd = world.command(&[
        OsStr::new("--plugin-dir"),
        plugins.as_os_str(),
        OsStr::new("hostile-split-link"),
        OsStr::new(CLIENT),
    ]);
    obnam_test_support::run(&mut cmd).no_rust_panic().ok();
    let (one, two) = ("data/a/one".to_string(), "data/c/two".to_string());
    let (first, second) = (&b"first content\n"[..], &b"second, longer content\n"[..]);

    let restored = world.path().join("restored");
    world
        .obnam(&[
            OsStr::new("restore"),
            OsStr::new("--to"),
            restored.as_os_str(),
        ])
        .ok();
    assert_eq!(fs::read(restored.join(&one)).unwrap(), first);
    assert_eq!(fs::read(restored.join(&two)).unwrap(), second);

    let tar = world.obnam(&["dump", "/data"]).ok();
    let extracted = world.path().join("extracted");
    fs::create_dir(&extracted).unwrap();
    let mut untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg("-")
        .arg("-C")
        .arg(&extracted)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        untar
            .stdin
            .take()
            .unwrap()
            .write_all(tar.stdout.as_bytes())
            .unwrap();
    }
    assert!(untar.wait().unwrap().success());
    assert_eq!(fs::read(extracted.join(&one)).unwrap(), first);
    assert_eq!(fs::read(extracted.join(&two)).unwrap(), second);

    if !fuse_or_skip("names_of_one_file_recorded_with_two_contents_keep_their_own") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    // Looked up in both orders, in two mounts' worth of names.
    let latest = point.join("latest");
    assert_eq!(fs::read(latest.join(&two)).unwrap(), second);
    assert_eq!(fs::read(latest.join(&one)).unwrap(), first);
    mounted.unmount();
}

/// How many inodes the mount at `point` says it holds (`statfs`).
fn inodes_held(point: &Path) -> u64 {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%c"])
        .arg(point)
        .output()
        .expect("run stat -f");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

/// Every path under `dir` with its inode number.
fn inode_numbers(dir: &Path, into: &mut Vec<(PathBuf, u64)>) {
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("stat");
        into.push((path.clone(), meta.ino()));
        if meta.is_dir() {
            inode_numbers(&path, into);
        }
    }
}

/// The mount holds what the kernel holds: what the kernel forgets (here,
/// when its caches are dropped) leaves obnam's table, and comes back with
/// the same inode numbers when met again. (Every object ever visited was
/// kept until the mount ended: crawling 30 generations of 300,000 files
/// would have held about 7 GB.)
#[test]
fn what_the_kernel_forgets_leaves_the_mount_and_keeps_its_number() {
    if !fuse_or_skip("what_the_kernel_forgets_leaves_the_mount_and_keeps_its_number") {
        return;
    }
    // Only root may drop the kernel's caches (CI runs as root).
    if fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_err()
    {
        eprintln!("skipped: cannot drop the kernel's caches (not root)");
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    for d in 0..20 {
        for f in 0..25 {
            let dir = data.join(format!("d{d:02}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{f:02}")), format!("{d} {f}")).unwrap();
        }
    }
    fs::hard_link(data.join("d00/f00"), data.join("d19/linked")).unwrap();
    world.backup(&data);
    fs::write(data.join("d05/f05"), b"changed").unwrap();
    world.backup(&data);

    let point = world.mount_point("mnt");
    let mut mounted = world.mount(&point);
    let mut first = Vec::new();
    inode_numbers(&point, &mut first);
    assert!(first.len() > 1000, "{}", first.len());
    let held = inodes_held(&point);
    assert!(held as usize > 1000, "the walk's objects are held: {held}");

    // Forgetting is the kernel's, and comes in its own time.
    let mut now = held;
    for _ in 0..50 {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        now = inodes_held(&point);
        if now < held / 10 {
            break;
        }
    }
    assert!(
        now < held / 10,
        "the kernel forgot them, obnam did not: {held} then {now}"
    );

    let mut again = Vec::new();
    inode_numbers(&point, &mut again);
    assert_eq!(first, again, "the same paths, with the same numbers");
    let ino = |p: &str| {
        fs::symlink_metadata(
            point
                .join("latest")
                .join(data.strip_prefix("/").unwrap())
                .join(p),
        )
        .unwrap()
        .ino()
    };
    assert_eq!(
        ino("d00/f00"),
        ino("d19/linked"),
        "hard links are one inode"
    );
    assert_ne!(ino("d00/f00"), ino("d00/f01"));
    assert_eq!(
        fs::read(
            point
                .join("latest")
                .join(data.strip_prefix("/").unwrap())
                .join("d05/f05")
        )
        .unwrap(),
        b"changed"
    );
    mounted.unmount();
    assert_all_gone(&point);
}

/// A repository mounted inside a backed-up tree (to browse the backups)
/// is left out of the next backup, as the repository itself is: walking
/// it recorded every mounted generation again at every backup (found by
/// an outside review).
#[test]
fn a_backup_leaves_out_an_obnam_mount_in_its_tree() {
    if !fuse_or_skip("a_backup_leaves_out_an_obnam_mount_in_its_tree") {
        return;
    }
    let _shared = MOUNTS.read().unwrap_or_else(|e| e.into_inner());
    let world = World::new();
    let data = world.path().join("data");
    fs::create_dir_all(data.join("backups")).unwrap();
    fs::write(data.join("doc"), b"mine").unwrap();
    world.backup(&data);
    let mut mounted = world.mount(&data.join("backups"));
    let run = world
        .obnam(&[
            OsStr::new("backup"),
            data.as_os_str(),
            OsStr::new("--verbose"),
        ])
        .ok();
    mounted.unmount().ok();
    assert!(
        run.stderr
            .contains("it is an 'obnam mount' of a repository")
            || run
                .stdout
                .contains("it is an 'obnam mount' of a repository"),
        "{run:#?}"
    );
    let listed = world.obnam(&["ls"]).ok().stdout;
    assert!(
        listed.contains(&format!("{}", data.join("doc").display()))
            && !listed.contains(&format!("{}/", data.join("backups").display())),
        "{listed}"
    );
}
