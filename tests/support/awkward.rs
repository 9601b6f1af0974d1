//! The awkward tree: a folder holding every kind of object that a restore
//! must reproduce exactly (hard links, sparse files, odd names, extended
//! attributes, special modes, old mtimes, FIFOs, device nodes as root),
//! and a field-by-field comparison of two trees.
//!
//! Shared by the black-box tests of restore and of the data filters
//! (compression, encryption), which all show that a tree comes back
//! exactly as it was.
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

/// The size of the awkward tree's sparse file.
pub const SPARSE_SIZE: u64 = 64 << 20;

/// Whether the tests run as root (files made now belong to uid 0).
pub fn is_root() -> bool {
    let probe = tempfile::tempfile().expect("temporary file");
    probe.metadata().expect("stat").uid() == 0
}

/// `dir` joined with a name that need not be UTF-8.
pub fn bytes_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Where `original` (an absolute path) ends up when restored into `target`.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").expect("absolute path"))
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// Set a file's mtime, to the nanosecond; `secs` may be before 1970.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
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

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
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
pub struct Awkward {
    pub root: PathBuf,
    pub sparse: PathBuf,
    pub devices: bool,
}

/// Make a tree with every kind of object restore must reproduce.
pub fn make_awkward_tree(root: &Path) -> Awkward {
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
pub fn set_final_times(root: &Path) {
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
pub fn collect(root: &Path, out: &mut Vec<PathBuf>) {
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
pub fn compare_trees(a: &Path, b: &Path, nlink: bool) -> Vec<String> {
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

/// Assert that two trees are the same, link counts included (see
/// [`compare_trees`]).
#[track_caller]
pub fn assert_same(a: &Path, b: &Path) {
    assert_similar(a, b, true);
}

/// Assert that two trees are the same, with link counts compared only
/// with `nlink`.
#[track_caller]
pub fn assert_similar(a: &Path, b: &Path, nlink: bool) {
    let diffs = compare_trees(a, b, nlink);
    assert!(
        diffs.is_empty(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

/// Assert that a restored copy of the awkward tree's sparse file is
/// [`SPARSE_SIZE`] bytes long and still has its holes.
pub fn assert_sparse(path: &Path) {
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
