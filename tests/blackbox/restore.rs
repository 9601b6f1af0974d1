//! Restore and the listing commands, end to end: awkward trees made on
//! disk, backed up with `obnam backup`, restored, and compared with the
//! original field by field; hostile and damaged generations written by the
//! `hostile` test plugin, which restore must refuse without writing outside
//! its target.
//!
//! Extended attributes are set and read with Python's `os` module (the
//! test crate has no xattr library); device nodes are made only when the
//! tests run as root, as they do in CI.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obnam_test_support::{Run, TestEnv};

const CLIENT: &str = "testclient";
const SPARSE_SIZE: u64 = 64 << 20;

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

    /// Run obnam on the world's repository as the test client.
    fn obnam<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let mut cmd = self.env.obnam();
        cmd.arg("--repository")
            .arg(&self.repo)
            .arg("--client-name")
            .arg(CLIENT)
            .args(args);
        obnam_test_support::run(&mut cmd)
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

fn is_root() -> bool {
    let probe = tempfile::tempfile().expect("temporary file");
    probe.metadata().expect("stat").uid() == 0
}

fn bytes_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Where `original` (an absolute path) ends up when restored into `target`.
fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").expect("absolute path"))
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let file = fs::File::open(path).expect("open to set mtime");
    file.set_modified(time(secs, nanos)).expect("set mtime");
}

/// Set a symlink's own mtime (std cannot): GNU touch -h.
fn set_symlink_mtime(path: &Path, stamp: &str) {
    let ok = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(stamp)
        .arg(path)
        .status()
        .expect("run touch")
        .success();
    assert!(ok, "touch -h {}", path.display());
}

fn run_tool(program: &str, args: &[&OsStr]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

const SET_XATTR: &str = "import os, sys
os.setxattr(os.fsencode(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)";

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    run_tool(
        "python3",
        &[
            OsStr::new("-c"),
            OsStr::new(SET_XATTR),
            path.as_os_str(),
            OsStr::new(name),
            OsStr::new(&hex),
        ],
    );
}

/// Every extended attribute below `root` (symlinks not followed), by
/// relative path, as (name, value) pairs in name order.
const LIST_XATTRS: &str = "import os, sys
root = os.fsencode(sys.argv[1])
def show(p):
    rel = os.path.relpath(p, root)
    for n in sorted(os.listxattr(p, follow_symlinks=False)):
        v = os.getxattr(p, n, follow_symlinks=False)
        print(rel.hex(), n.encode().hex(), v.hex())
show(root)
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        show(os.path.join(d, n))";

type Xattrs = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn list_xattrs(root: &Path) -> Xattrs {
    let out = Command::new("python3")
        .arg("-c")
        .arg(LIST_XATTRS)
        .arg(root)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "listing xattrs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut all = Xattrs::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [path, name, value] = parts[..] else {
            panic!("bad line {line}");
        };
        all.entry(unhex(path))
            .or_default()
            .push((unhex(name), unhex(value)));
    }
    all
}

/// The parts of the awkward tree that a test changes or checks by name.
struct Awkward {
    root: PathBuf,
    sparse: PathBuf,
    devices: bool,
}

/// Make a tree with every kind of object restore must reproduce.
fn make_awkward_tree(root: &Path) -> Awkward {
    let devices = is_root();
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    };
    let plain = w("plain.txt", b"hello, world\n");
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o640)).unwrap();
    w("dir1/nested/deeper/file", b"deep\n");
    let linked = w("dir1/linked", b"one inode, two names\n");
    fs::create_dir_all(root.join("dir2")).unwrap();
    fs::hard_link(&linked, root.join("dir2/link2")).unwrap();
    let third = w("dir2/three-a", b"three names\n");
    fs::hard_link(&third, root.join("three-b")).unwrap();
    fs::hard_link(&third, root.join("dir1/nested/three-c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();

    // A 64 MiB sparse file with a little data in three places.
    let sparse = root.join("sparse.img");
    {
        let mut f = fs::File::create(&sparse).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        f.write_all(b"start").unwrap();
        f.seek(SeekFrom::Start(SPARSE_SIZE / 2)).unwrap();
        f.write_all(&[7u8; 10_000]).unwrap();
        f.seek(SeekFrom::Start(SPARSE_SIZE - 3)).unwrap();
        f.write_all(b"end").unwrap();
    }

    w("new\nline", b"a name with a newline\n");
    fs::write(bytes_path(root, b"caf\xe9-latin1"), b"not UTF-8\n").unwrap();
    fs::write(bytes_path(root, b"\xff\xfe\x01"), b"worse\n").unwrap();
    if devices {
        // Only root can back up a file nobody may read.
        let secret = w("mode000", b"you cannot read me\n");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    }
    let setuid = w("setuid-prog", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
    let setgid = w("setgid-prog", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(&setgid, fs::Permissions::from_mode(0o2750)).unwrap();
    let attrs = w("with-xattrs", b"attributes\n");
    set_xattr(&attrs, "user.plain", b"value");
    set_xattr(&attrs, "user.binary", &[0, 1, 2, 255, b'\n']);
    set_xattr(&root.join("dir1"), "user.on-a-dir", b"dir value");
    run_tool("mkfifo", &[root.join("fifo").as_os_str()]);
    std::os::unix::fs::symlink("plain.txt", root.join("link-to-plain")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target\nodd", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("../dir2", root.join("dir1/up-and-over")).unwrap();
    let old = w("old.txt", b"from the sixties\n");
    set_mtime(&old, -236_000_000, 987_654_321);
    let sticky = root.join("sticky");
    fs::create_dir_all(&sticky).unwrap();
    w("readonly-dir/inside", b"in a read-only folder\n");
    if devices {
        run_tool(
            "mknod",
            &[
                root.join("char-dev").as_os_str(),
                OsStr::new("c"),
                OsStr::new("1"),
                OsStr::new("3"),
            ],
        );
        run_tool(
            "mknod",
            &[
                root.join("block-dev").as_os_str(),
                OsStr::new("b"),
                OsStr::new("7"),
                OsStr::new("200"),
            ],
        );
    }
    set_final_times(root);
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("readonly-dir"), fs::Permissions::from_mode(0o555)).unwrap();
    Awkward {
        root: root.to_path_buf(),
        sparse,
        devices,
    }
}

/// Give every object below `root` (and `root`) a distinct mtime with
/// nanoseconds, directories last, so that creating their contents does not
/// change them afterwards.
fn set_final_times(root: &Path) {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    let mut dirs = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let meta = fs::symlink_metadata(p).unwrap();
        let secs = 1_600_000_000 + i as i64 * 1000;
        let nanos = 100_000_007 + i as u32 * 1_000_003;
        if meta.file_type().is_symlink() {
            set_symlink_mtime(p, &format!("@{secs}.{nanos:09}"));
        } else if meta.is_dir() {
            dirs.push((p.clone(), secs, nanos));
        } else if meta.file_type().is_file() && meta.mode() & 0o7777 != 0 && meta.mtime() >= 0 {
            set_mtime(p, secs, nanos);
        }
    }
    // `collect` lists a directory before its contents: deepest first here.
    for (p, secs, nanos) in dirs.into_iter().rev() {
        set_mtime(&p, secs, nanos);
    }
}

/// `root` and everything below it, parents before children, in name order.
fn collect(root: &Path, out: &mut Vec<PathBuf>) {
    out.push(root.to_path_buf());
    let meta = fs::symlink_metadata(root).unwrap();
    if meta.is_dir() {
        let mut names: Vec<OsString> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            collect(&root.join(name), out);
        }
    }
}

/// Compare two trees field by field: kinds, modes, owners, mtimes to the
/// nanosecond, sizes, contents, symlink targets, device numbers, extended
/// attributes, the set of names in each directory, and which files are
/// hard links of each other (and their link counts, with `nlink`: not
/// when only part of a tree was restored). Returns the differences.
fn compare_trees(a: &Path, b: &Path, nlink: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    collect(a, &mut pa);
    collect(b, &mut pb);
    let rel = |root: &Path, list: &[PathBuf]| -> BTreeSet<Vec<u8>> {
        list.iter()
            .map(|p| {
                p.strip_prefix(root)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            })
            .collect()
    };
    let (ra, rb) = (rel(a, &pa), rel(b, &pb));
    for missing in ra.difference(&rb) {
        diffs.push(format!("missing: {}", String::from_utf8_lossy(missing)));
    }
    for extra in rb.difference(&ra) {
        diffs.push(format!("extra: {}", String::from_utf8_lossy(extra)));
    }
    let mut links_a: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    let mut links_b: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    for r in ra.intersection(&rb) {
        let (x, y) = (a.join(OsStr::from_bytes(r)), b.join(OsStr::from_bytes(r)));
        let name = String::from_utf8_lossy(r).into_owned();
        let (mx, my) = (
            fs::symlink_metadata(&x).unwrap(),
            fs::symlink_metadata(&y).unwrap(),
        );
        let mut check = |what: &str, l: i128, r: i128| {
            if l != r {
                diffs.push(format!("{name}: {what} {l} != {r}"));
            }
        };
        check("mode", mx.mode().into(), my.mode().into());
        check("uid", mx.uid().into(), my.uid().into());
        check("gid", mx.gid().into(), my.gid().into());
        check("mtime", mx.mtime().into(), my.mtime().into());
        check("mtime_nsec", mx.mtime_nsec().into(), my.mtime_nsec().into());
        check("rdev", mx.rdev().into(), my.rdev().into());
        let ft = mx.file_type();
        if ft.is_file() {
            check("size", mx.size().into(), my.size().into());
            if nlink {
                check("nlink", mx.nlink().into(), my.nlink().into());
            }
            if read_as_root(&x) != read_as_root(&y) {
                diffs.push(format!("{name}: content differs"));
            }
            if mx.nlink() > 1 {
                links_a
                    .entry((mx.dev(), mx.ino()))
                    .or_default()
                    .insert(r.clone());
                links_b
                    .entry((my.dev(), my.ino()))
                    .or_default()
                    .insert(r.clone());
            }
        }
        if ft.is_symlink() && fs::read_link(&x).unwrap() != fs::read_link(&y).unwrap() {
            diffs.push(format!("{name}: symlink target differs"));
        }
    }
    let groups = |m: HashMap<(u64, u64), BTreeSet<Vec<u8>>>| -> BTreeSet<BTreeSet<Vec<u8>>> {
        m.into_values().collect()
    };
    if groups(links_a) != groups(links_b) {
        diffs.push("hard links differ".into());
    }
    if list_xattrs(a) != list_xattrs(b) {
        diffs.push(format!(
            "extended attributes differ: {:?} != {:?}",
            list_xattrs(a),
            list_xattrs(b)
        ));
    }
    diffs
}

/// A file's content, even at mode 000 (root reads it anyway; otherwise
/// it is made readable for a moment).
fn read_as_root(path: &Path) -> Vec<u8> {
    match fs::read(path) {
        Ok(data) => data,
        Err(_) => {
            let mode = fs::metadata(path).unwrap().mode();
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
            let data = fs::read(path).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).unwrap();
            data
        }
    }
}

#[track_caller]
fn assert_same(a: &Path, b: &Path) {
    assert_similar(a, b, true);
}

#[track_caller]
fn assert_similar(a: &Path, b: &Path, nlink: bool) {
    let diffs = compare_trees(a, b, nlink);
    assert!(
        diffs.is_empty(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

fn assert_sparse(path: &Path) {
    let meta = fs::metadata(path).unwrap();
    assert_eq!(meta.size(), SPARSE_SIZE);
    assert!(
        meta.blocks() * 512 < SPARSE_SIZE / 16,
        "{} uses {} bytes of disk for {} bytes: holes were filled",
        path.display(),
        meta.blocks() * 512,
        SPARSE_SIZE
    );
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
    assert!(run.stderr.contains("not empty"), "{run:#?}");
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
fn everything(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = Vec::new();
    collect(dir, &mut all);
    all.iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
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
        run.stderr.contains("There were errors during the restore"),
        "{run:#?}"
    );
    assert!(!target.join("data/bad-checksum").exists());
    assert!(!target.join("data/missing-chunk").exists());
    assert!(!target.join("data/wrong-size").exists());
    assert_eq!(fs::read(target.join("data/good")).unwrap(), b"good\n");
    assert!(run.stdout.starts_with("Restored 1 file,"), "{run:#?}");

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
