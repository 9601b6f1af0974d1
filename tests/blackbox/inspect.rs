//! The commands that look into generations without restoring them:
//! `find`, `dump` and `kdirstat` (and `diff` and `verify`), on the
//! awkward tree and on generations with known differences.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use obnam_test_support::awkward::{assert_same, assert_sparse, make_awkward_tree};
use obnam_test_support::{Run, TestEnv};
use serde_json::Value;

const CLIENT: &str = "inspector";

pub struct World {
    pub env: TestEnv,
    pub repo: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let env = TestEnv::new();
        let repo = env.path().join("repo");
        World { env, repo }
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }

    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.command_as(CLIENT, args)
    }

    /// A command run as another client.
    pub fn command_as<S: AsRef<OsStr>>(&self, client: &str, args: &[S]) -> Command {
        let mut cmd = self.env.obnam();
        cmd.arg("--repository")
            .arg(&self.repo)
            .arg("--client-name")
            .arg(client)
            .args(args);
        cmd
    }

    pub fn obnam<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        obnam_test_support::run(&mut self.command(args)).no_rust_panic()
    }

    pub fn obnam_as<S: AsRef<OsStr>>(&self, client: &str, args: &[S]) -> Run {
        obnam_test_support::run(&mut self.command_as(client, args)).no_rust_panic()
    }

    /// Back up `root`; the new generation's id.
    pub fn backup(&self, root: &Path) -> String {
        self.obnam(&[OsStr::new("backup"), root.as_os_str()]).ok();
        self.genids().pop().expect("a generation")
    }

    pub fn genids(&self) -> Vec<String> {
        self.obnam(&["genids"])
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut all: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
        all.extend([OsStr::new("--output-format"), OsStr::new("json")]);
        let run = self.obnam(&all).ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
    }

    /// The raw standard output of a command that must succeed.
    pub fn raw<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<u8> {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

#[test]
fn dump_of_a_directory_is_a_tar_stream_that_tar_extracts_exactly() {
    let w = World::new();
    let tree = w.path().join("awkward");
    let awkward = make_awkward_tree(&tree);
    w.backup(&tree);
    let tar_file = w.path().join("dump.tar");
    fs::write(&tar_file, w.raw(&[OsStr::new("dump"), tree.as_os_str()])).unwrap();
    let out = w.path().join("out");
    fs::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&tar_file)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "tar could not extract the dump");
    assert_same(&tree, &out.join("awkward"));
    assert_sparse(
        &out.join("awkward")
            .join(awkward.sparse.file_name().unwrap()),
    );
    // The 64 MiB sparse file costs its data in the stream, not its size.
    let len = fs::metadata(&tar_file).unwrap().len();
    assert!(
        len < 4 << 20,
        "the dump is {len} bytes: holes were written out"
    );
}

#[test]
fn dump_of_a_file_is_its_content() {
    let w = World::new();
    let tree = w.path().join("awkward");
    let awkward = make_awkward_tree(&tree);
    w.backup(&tree);
    for file in [
        tree.join("plain.txt"),
        awkward.sparse.clone(),
        tree.join("dir2/link2"),
    ] {
        let got = w.raw(&[OsStr::new("dump"), file.as_os_str()]);
        assert!(got == fs::read(&file).unwrap(), "{}", file.display());
    }
    // Not a file of the generation: clear errors, nothing on stdout.
    let missing = tree.join("no-such-file");
    let run = w.obnam(&[OsStr::new("dump"), missing.as_os_str()]).fails();
    assert!(
        run.stderr.contains("no-such-file is not in generation"),
        "{run:#?}"
    );
    assert!(run.stdout.is_empty());
    let run = w.obnam(&["dump", "relative/path"]).fails();
    assert!(run.stderr.contains("relative/path"), "{run:#?}");
    let run = w.obnam(&["dump"]).fails();
    assert!(run.stderr.contains("exactly one PATH"), "{run:#?}");
}

/// A tree whose generations differ in known ways.
fn planted(w: &World) -> (PathBuf, Vec<String>) {
    let root = w.path().join("data");
    fs::create_dir_all(root.join("docs/old")).unwrap();
    fs::write(root.join("docs/a.txt"), "a").unwrap();
    fs::write(root.join("docs/b.txt"), "b, first").unwrap();
    fs::write(root.join("docs/old/z.txt"), "z").unwrap();
    fs::write(root.join("image.png"), "png").unwrap();
    let g1 = w.backup(&root);
    fs::write(root.join("docs/b.txt"), "b, second version").unwrap();
    fs::write(root.join("c.txt"), "c").unwrap();
    let g2 = w.backup(&root);
    fs::remove_file(root.join("docs/a.txt")).unwrap();
    let g3 = w.backup(&root);
    (root, vec![g1, g2, g3])
}

#[test]
fn find_lists_each_version_with_its_generations() {
    let w = World::new();
    let (root, gens) = planted(&w);
    let found = w.json(&["find", r"\.txt$"]);
    let mut got: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for v in found.as_array().unwrap() {
        let path = v["path"].as_str().unwrap();
        let rel = path
            .strip_prefix(root.to_str().unwrap())
            .unwrap()
            .to_string();
        let ids = v["generations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        got.entry(rel).or_default().push(ids);
    }
    let (g1, g2, g3) = (&gens[0], &gens[1], &gens[2]);
    let want: BTreeMap<String, Vec<Vec<String>>> = [
        ("/docs/a.txt", vec![vec![g1, g2]]),
        ("/docs/b.txt", vec![vec![g1], vec![g2, g3]]),
        ("/docs/old/z.txt", vec![vec![g1, g2, g3]]),
        ("/c.txt", vec![vec![g2, g3]]),
    ]
    .into_iter()
    .map(|(p, v)| {
        (
            p.to_string(),
            v.into_iter()
                .map(|ids| ids.into_iter().cloned().collect())
                .collect(),
        )
    })
    .collect();
    assert_eq!(got, want);

    // One generation, and several patterns.
    let text = w
        .obnam(&["find", "--generation", g1.as_str(), "a\\.txt$", "png$"])
        .ok()
        .stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines
        .iter()
        .any(|l| l.contains("/docs/a.txt") && l.ends_with(&format!("in {g1}"))));
    assert!(lines.iter().any(|l| l.contains("/image.png")));

    // Nothing matches: no output, success. A bad pattern: a clear error.
    assert_eq!(w.obnam(&["find", "nothing-like-this"]).ok().stdout, "");
    let run = w.obnam(&["find", "("]).fails();
    assert!(
        run.stderr.contains("find: bad regular expression '('"),
        "{run:#?}"
    );
    let run = w.obnam(&["find"]).fails();
    assert!(run.stderr.contains("at least one PATTERN"), "{run:#?}");
}

/// Undo a cache file's percent-encoding.
fn decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn kdirstat_cache_file_parses_back_to_the_generation() {
    let w = World::new();
    let tree = w.path().join("awkward");
    make_awkward_tree(&tree);
    w.backup(&tree);
    let out = w.raw(&["kdirstat"]);
    let text = String::from_utf8(out).expect("a cache file is ASCII");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("[kdirstat 4.0 cache file]"));
    let mut dir: Option<Vec<u8>> = None;
    let mut paths = BTreeSet::new();
    let mut file_bytes = 0u64;
    for line in lines.filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("D ") {
            let fields: Vec<&str> = rest.split('\t').collect();
            assert_eq!(fields.len(), 3, "{line}");
            assert!(fields[2].starts_with("0x"), "{line}");
            let path = decode(fields[0]);
            paths.insert(path.clone());
            dir = Some(path);
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(fields.len() >= 4, "{line}");
        assert!(
            ["F", "L", "FIFO", "CharDev", "BlockDev", "Socket"].contains(&fields[0]),
            "{line}"
        );
        let parent = dir.clone().expect("entries follow their directory");
        let mut path = parent.clone();
        if path != b"/" {
            path.push(b'/');
        }
        path.extend(decode(fields[1]));
        assert!(paths.insert(path), "{line}");
        if fields[0] == "F" {
            file_bytes += fields[2].parse::<u64>().unwrap();
        }
    }
    // Every object of the tree is there, under its exact name.
    let mut want = BTreeSet::new();
    let mut all = Vec::new();
    obnam_test_support::awkward::collect(&tree, &mut all);
    for p in &all {
        want.insert(p.as_os_str().as_bytes().to_vec());
    }
    let below: BTreeSet<Vec<u8>> = paths
        .iter()
        .filter(|p| p.starts_with(tree.as_os_str().as_bytes()))
        .cloned()
        .collect();
    assert_eq!(below, want);
    // The files' sizes sum to the generation's size.
    let gens = w.json(&["generations"]);
    let size = gens[0]["data_size"].as_u64().unwrap();
    assert_eq!(file_bytes, size);
}

#[test]
fn diff_lists_exactly_the_planted_changes() {
    let w = World::new();
    let d = w.path().join("data");
    let write = |rel: &str, data: &str| {
        let p = d.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    write("keep.txt", "kept");
    write("change.txt", "version 1");
    write("gone.txt", "soon gone");
    write("meta.txt", "metadata changes");
    write("thing", "a file, then a symlink");
    write("olddir/x", "x");
    write("olddir/y", "y");
    write("same/deep/file", "untouched");
    let g1 = w.backup(&d);
    // Same size: the checksum tells.
    write("change.txt", "version 2");
    fs::remove_file(d.join("gone.txt")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(d.join("meta.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(d.join("thing")).unwrap();
    std::os::unix::fs::symlink("keep.txt", d.join("thing")).unwrap();
    fs::remove_dir_all(d.join("olddir")).unwrap();
    write("newdir/p", "p");
    write("newdir/q", "q");
    let g2 = w.backup(&d);

    let report = w.json(&["diff"]);
    assert_eq!(report["from"], g1.as_str());
    assert_eq!(report["to"], g2.as_str());
    let root = d.to_str().unwrap();
    let got: BTreeSet<(String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let path = c["path"].as_str().unwrap();
            (
                path.strip_prefix(root).unwrap_or(path).to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("/change.txt", "modified"),
        ("/gone.txt", "removed"),
        ("/meta.txt", "metadata"),
        ("/thing", "kind"),
        ("/olddir", "removed"),
        ("/olddir/x", "removed"),
        ("/olddir/y", "removed"),
        ("/newdir", "added"),
        ("/newdir/p", "added"),
        ("/newdir/q", "added"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{report:#}");
    assert_eq!(report["summary"]["added"], 3);

    // Text, and the generations named: the other way round, and one
    // generation with itself.
    let text = w.obnam(&["diff", g2.as_str(), g1.as_str()]).ok().stdout;
    assert!(text.contains(&format!("+  {root}/gone.txt")), "{text}");
    assert!(text.contains(&format!("-  {root}/newdir/q")), "{text}");
    assert!(
        text.contains(&format!("U  {root}/meta.txt  (mode 100600 -> 100644)")),
        "{text}"
    );
    assert!(
        text.ends_with("4 added, 3 removed, 1 modified, 1 metadata only, 1 changed kind\n"),
        "{text}"
    );
    let same = w.obnam(&["diff", g1.as_str(), g1.as_str()]).ok().stdout;
    assert!(
        same.ends_with("0 added, 0 removed, 0 modified, 0 metadata only, 0 changed kind\n"),
        "{same}"
    );
    let run = w.obnam(&["diff", "nope"]).fails();
    assert!(run.stderr.contains("no generation 'nope'"), "{run:#?}");
}

#[test]
fn verify_finds_each_kind_of_difference_and_is_silent_on_an_untouched_tree() {
    use obnam_test_support::awkward::{set_mtime, set_xattr};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let w = World::new();
    let tree = w.path().join("awkward");
    make_awkward_tree(&tree);
    w.backup(&tree);
    let tree_arg = tree.as_os_str();
    let run = w.obnam(&[OsStr::new("verify"), tree_arg]).ok();
    assert!(run.stdout.contains("no differences"), "{run:#?}");
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--verify-randomly"),
            OsStr::new("3"),
            tree_arg,
        ])
        .ok();
    // Three files, the root, and the folders on the way to each.
    let checked: u64 = run
        .stdout
        .strip_prefix("verified ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert!(checked >= 4, "{run:#?}");
    assert!(run.stdout.contains("no differences"), "{run:#?}");

    // One change of each kind, each found, and only those.
    let plain = tree.join("plain.txt");
    let m = fs::metadata(&plain).unwrap();
    fs::write(&plain, b"hello, World\n").unwrap();
    set_mtime(&plain, m.mtime(), m.mtime_nsec() as u32);
    let setuid = tree.join("setuid-prog");
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o755)).unwrap();
    set_xattr(&tree.join("with-xattrs"), "user.plain", b"another value");
    fs::remove_file(tree.join("dir1/nested/deeper/file")).unwrap();
    fs::write(tree.join("dir2/added"), "new").unwrap();
    let run = w.obnam(&[OsStr::new("verify"), tree_arg]).fails();
    let root = tree.to_str().unwrap();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let expect = [
        format!("{root}/plain.txt: content"),
        format!("{root}/setuid-prog: mode 104755 -> 100755"),
        format!("{root}/with-xattrs: extended attributes"),
        format!("{root}/dir1/nested/deeper/file: in the backup, not on disk"),
        format!("{root}/dir2/added: on disk, not in the backup"),
    ];
    for e in &expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e.as_str())),
            "{e}:\n{}",
            run.stdout
        );
    }
    // The folders whose entries changed have new times; nothing else differs.
    let others: Vec<&&str> = lines
        .iter()
        .filter(|l| !expect.iter().any(|e| l.starts_with(e.as_str())))
        .filter(|l| {
            !(l.starts_with(&format!("{root}/dir1/nested/deeper: mtime"))
                || l.starts_with(&format!("{root}/dir2: mtime")))
        })
        .collect();
    assert!(others.is_empty(), "unexpected: {others:?}\n{}", run.stdout);
    assert!(
        run.stderr.contains("differences between generation"),
        "{run:#?}"
    );

    // Excluded at backup, excluded at verify.
    let w = World::new();
    let d = w.path().join("data");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("kept"), "k").unwrap();
    fs::write(d.join("junk.tmp"), "j").unwrap();
    w.obnam(&[
        OsStr::new("backup"),
        OsStr::new("--exclude"),
        OsStr::new(r"\.tmp$"),
        d.as_os_str(),
    ])
    .ok();
    let run = w.obnam(&[OsStr::new("verify"), d.as_os_str()]).fails();
    assert!(
        run.stdout.contains("junk.tmp: on disk, not in the backup"),
        "{run:#?}"
    );
    w.obnam(&[
        OsStr::new("verify"),
        OsStr::new("--exclude"),
        OsStr::new(r"\.tmp$"),
        d.as_os_str(),
    ])
    .ok();
    let run = w.obnam(&["verify"]).fails();
    assert!(run.stderr.contains("verify needs the paths"), "{run:#?}");
    let run = w.obnam(&["verify", "/not/backed/up"]).fails();
    assert!(run.stderr.contains("is not in generation"), "{run:#?}");
}

/// The trees a command read from storage, from its trace log.
fn trees_read(w: &World, args: &[&str]) -> usize {
    let log = w.path().join("trace.log");
    let _ = fs::remove_file(&log);
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([
        OsStr::new("--log"),
        log.as_os_str(),
        OsStr::new("--log-level"),
        OsStr::new("trace"),
    ]);
    w.obnam(&all).ok();
    fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("read tree/"))
        .count()
}

#[test]
fn diff_reads_only_the_folders_on_the_way_to_a_change() {
    let w = World::new();
    let d = w.path().join("wide");
    // 20 folders of 10 subfolders of 5 files: 221 folders in all.
    for i in 0..20 {
        for j in 0..10 {
            let dir = d.join(format!("d{i:02}/s{j}"));
            fs::create_dir_all(&dir).unwrap();
            for k in 0..5 {
                fs::write(dir.join(format!("f{k}")), format!("{i} {j} {k}")).unwrap();
            }
        }
    }
    w.backup(&d);
    // One changed file, deep down.
    fs::write(d.join("d07/s3/f2"), "changed, and longer").unwrap();
    w.backup(&d);
    let folders_above = d.ancestors().count() - 1;
    let read = trees_read(&w, &["diff"]);
    // Both generations' folders from the root to d07/s3, and no other.
    let on_the_way = 2 * (folders_above + 3);
    assert!(
        read <= on_the_way,
        "diff read {read} trees; {on_the_way} lead to the change"
    );
    // A full listing reads them all: the measure works.
    let listed = trees_read(&w, &["ls"]);
    assert!(listed > 221, "ls read {listed} trees");
    let text = w.obnam(&["diff"]).ok().stdout;
    assert!(
        text.contains("M  ") && text.contains("/d07/s3/f2"),
        "{text}"
    );
    assert!(
        text.ends_with("0 added, 0 removed, 1 modified, 0 metadata only, 0 changed kind\n"),
        "{text}"
    );
}

#[test]
fn json_times_are_rfc3339_and_nanoseconds_since_1970() {
    let w = World::new();
    let d = w.path().join("data");
    fs::create_dir(&d).unwrap();
    let old = d.join("old.txt");
    fs::write(&old, "from the sixties").unwrap();
    obnam_test_support::awkward::set_mtime(&old, -236_000_000, 987_654_321);
    w.backup(&d);
    let ls = w.json(&[OsStr::new("ls"), old.as_os_str()]);
    assert_eq!(ls[0]["mtime_ns"], -235_999_999_012_345_679i64, "{ls:#}");
    assert_eq!(ls[0]["mtime"], "1962-07-10T12:26:40.987654321Z", "{ls:#}");
    let found = w.json(&["find", "old"]);
    assert_eq!(found[0]["mtime_ns"], ls[0]["mtime_ns"]);
    assert_eq!(found[0]["mtime"], ls[0]["mtime"]);
}

#[test]
fn ls_and_restore_take_patterns_as_paths() {
    let w = World::new();
    let d = w.path().join("data");
    for rel in ["a/x.odt", "a/y.txt", "b/deep/z.odt", "c/w.txt"] {
        let p = d.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rel).unwrap();
    }
    w.backup(&d);
    let root = d.to_str().unwrap();
    let listed: Vec<String> = w
        .obnam(&["ls", "sh:*.odt"])
        .ok()
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    assert_eq!(
        listed,
        [format!("{root}/a/x.odt"), format!("{root}/b/deep/z.odt")]
    );
    // A folder selected by a pattern comes with its contents.
    let to = w.path().join("out");
    let re = format!("re:^{root}/(a|c)$");
    w.obnam(&[
        OsStr::new("restore"),
        OsStr::new("--to"),
        to.as_os_str(),
        OsStr::new(re.as_str()),
    ])
    .ok();
    let inside = to.join(d.strip_prefix("/").unwrap());
    assert!(inside.join("a/x.odt").is_file() && inside.join("c/w.txt").is_file());
    assert!(!inside.join("b").exists());
    let run = w.obnam(&["ls", "sh:*.nothing"]).fails();
    assert!(
        run.stderr
            .contains("pattern 'sh:*.nothing' matches nothing in generation"),
        "{run:#?}"
    );
    let run = w.obnam(&["ls", "sh:["]).fails();
    assert!(run.stderr.contains("ls: bad shell glob 'sh:['"), "{run:#?}");
}

#[test]
fn verify_fails_when_it_cannot_look_at_what_is_on_disk() {
    let w = World::new();
    let data = w.path().join("deep");
    fs::create_dir(&data).unwrap();
    // A chain of folders whose paths pass PATH_MAX (4096 bytes), each with
    // a file: made by a process that goes down one relative step at a time
    // (a shell's `cd` keeps the whole path, and fails past PATH_MAX).
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys\n\
             os.chdir(sys.argv[1])\n\
             for _ in range(30):\n\
             \x20   os.mkdir('d' * 200)\n\
             \x20   os.chdir('d' * 200)\n\
             \x20   open('f', 'w').write('x')\n",
        )
        .arg(&data)
        .status()
        .unwrap();
    assert!(made.success());
    // The backup cannot reach below PATH_MAX, and says so.
    let run = w.obnam(&[OsStr::new("backup"), data.as_os_str()]).fails();
    assert!(run.stderr.contains("File name too long"), "{run:#?}");
    // Verify sees no difference in what it could look at, but it could not
    // look at everything: it says so and fails.
    let run = w.obnam(&[OsStr::new("verify"), data.as_os_str()]).fails();
    assert!(!run.stdout.contains("no differences"), "{run:#?}");
    assert!(
        run.stderr.contains("cannot be read: File name too long")
            && run.stderr.contains("0 differences between generation")
            && run.stderr.contains("could not be checked"),
        "{run:#?}"
    );
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--output-format"),
            OsStr::new("json"),
            data.as_os_str(),
        ])
        .fails();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["differences"], serde_json::json!([]), "{v:#}");
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{v:#}");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("File name too long"),
        "{v:#}"
    );
    // Cleaning up goes down the same way (rm -r copes with long paths).
    let _ = Command::new("rm").arg("-rf").arg(&data).status();
}

/// verify takes a path as backup does: relative to the current folder
/// (given, or as `root`), with `.` and `..` resolved; it compares what
/// backup stored for the same argument. (It refused every relative path,
/// so a `root` that backup took was refused by verify.)
#[test]
fn verify_takes_relative_paths_as_backup_does() {
    let w = obnam_test_support::BackupWorld::new("c");
    w.file("a.txt", b"first\n");
    w.file("sub/b.txt", b"second\n");
    w.obnam(&["backup", "data"]).ok();
    for args in [
        vec!["verify", "data"],
        vec!["verify", "./data/sub/../"],
        vec!["verify", "--root", "data"],
        vec!["verify", "data/sub"],
    ] {
        let run = w.obnam(&args).ok();
        assert!(run.stdout.contains("no differences"), "{args:?}: {run:#?}");
    }
    fs::write(w.data.join("sub/b.txt"), b"changed\n").unwrap();
    let run = w.obnam(&["verify", "data"]).fails();
    let changed = format!("{}/sub/b.txt: ", w.data.display());
    assert!(run.stdout.contains(&changed), "{run:#?}");
    // What backup did not store is named as the absolute path it is.
    let run = w.obnam(&["verify", "elsewhere"]).fails();
    let missing = w.env.path().join("elsewhere");
    assert!(
        run.stderr
            .contains(&format!("{} is not in generation", missing.display())),
        "{run:#?}"
    );
}

/// `verify --verify-randomly` checks the folders on the way to each file
/// it picks, as the full walk does: a folder that is now a symlink is not
/// followed, one that is now a file is a difference (it was an error per
/// file); a PATH inside another, or a root inside another, is compared
/// once (each difference was reported twice).
#[test]
fn verify_checks_the_way_to_a_file_and_compares_each_path_once() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(data.join("e")).unwrap();
    fs::write(data.join("e/a"), "1").unwrap();
    fs::create_dir_all(data.join("d")).unwrap();
    fs::write(data.join("d/a"), "1").unwrap();
    fs::create_dir_all(data.join("f/sub")).unwrap();
    fs::write(data.join("f/sub/a"), "2").unwrap();
    w.backup(&data);
    fs::remove_dir_all(data.join("d")).unwrap();
    std::os::unix::fs::symlink("e", data.join("d")).unwrap();
    fs::remove_dir_all(data.join("f")).unwrap();
    fs::write(data.join("f"), "now a file").unwrap();
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--verify-randomly"),
            OsStr::new("100"),
            data.as_os_str(),
        ])
        .fails();
    let d = format!(
        "{}/d: a directory in the backup, a symlink on disk",
        data.display()
    );
    let f = format!(
        "{}/f: a directory in the backup, a file on disk",
        data.display()
    );
    assert!(run.stdout.contains(&d), "{run:#?}");
    assert!(run.stdout.contains(&f), "{run:#?}");
    assert!(!run.stderr.contains("cannot be read"), "{run:#?}");
    // The root is compared too: replacing d and f changed its time.
    let root = format!("{}: mtime ", data.display());
    assert!(run.stdout.contains(&root), "{run:#?}");
    assert!(run.stderr.contains(" 3 differences "), "{run:#?}");

    // The same PATH twice, and one inside it: each difference once.
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            data.as_os_str(),
            data.join("d").as_os_str(),
            data.as_os_str(),
        ])
        .fails();
    assert_eq!(run.stdout.matches(&d).count(), 1, "{run:#?}");

    // A folder on the way whose mode changed is a difference, found by
    // the spot check as by the full walk (it said "no differences").
    let g = data.join("g");
    fs::create_dir_all(g.join("sub")).unwrap();
    fs::write(g.join("sub/a"), "3").unwrap();
    w.backup(&data);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(g.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--verify-randomly"),
            OsStr::new("1"),
            g.as_os_str(),
        ])
        .fails();
    let sub = format!("{}/sub: mode 40755 -> 40700", g.display());
    assert!(run.stdout.contains(&sub), "{run:#?}");
    assert!(run.stderr.contains(" 1 difference "), "{run:#?}");
    // A PATH that is a file is that file (it panicked).
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--verify-randomly"),
            OsStr::new("3"),
            g.join("sub/a").as_os_str(),
        ])
        .ok();
    assert!(run.stdout.starts_with("verified 1 object "), "{run:#?}");
}

/// A `dump` of a socket alone is an error (it was an empty tar stream and
/// exit 0); a generation id of another client says whose it is; a `|` in
/// a client name does not end the Nagios text.
#[test]
fn inspecting_commands_say_what_went_wrong() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let sock = data.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    fs::write(data.join("f"), "x").unwrap();
    w.backup(&data);
    let run = w.obnam(&[OsStr::new("dump"), sock.as_os_str()]).fails();
    assert!(run.stderr.contains("is a socket"), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");

    let theirs = {
        w.obnam_as("other", &[OsStr::new("backup"), data.as_os_str()])
            .ok();
        let run = w.obnam_as("other", &["genids"]).ok();
        run.stdout.trim().to_string()
    };
    let run = w.obnam(&["ls", "--generation", &theirs]).fails();
    assert!(
        run.stderr
            .contains("it is a generation of client 'other': give --client-name other"),
        "{run:#?}"
    );

    let piped = "web|age=0s;1;2;0";
    w.obnam_as(piped, &[OsStr::new("backup"), data.as_os_str()])
        .ok();
    let run = w.obnam_as(piped, &["nagios-last-backup-age"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.matches('|').count(), 1, "{run:#?}");
    assert!(run.stdout.contains("web\\x7cage=0s"), "{run:#?}");
}

/// `dump` does not write a tar stream or a file's bytes to a terminal.
#[test]
fn dump_refuses_a_terminal() {
    let w = obnam_test_support::BackupWorld::new("c");
    w.file("f", b"\x00\x01binary");
    w.backup(&[]).ok();
    let path = w.data.join("f");
    let Some(run) = w.on_terminal("", &format!("dump {}", path.display())) else {
        return;
    };
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("which is a terminal"), "{run:#?}");
    assert!(!run.stdout.contains("binary"), "{run:#?}");
    // Redirected, it writes.
    let bytes = w.obnam(&["dump", path.to_str().unwrap()]).ok().stdout;
    assert_eq!(bytes.as_bytes(), b"\x00\x01binary");
}

/// `verify` reads each file's backed-up content back from the repository
/// (as Obnam 1.x's did): a generation whose data is lost since the backup
/// is a difference, not "no differences" with exit 0.
#[test]
fn verify_reads_the_backed_up_content_back() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("big"), obnam_test_support::noise(300_000, 5)).unwrap();
    w.backup(&data);
    w.obnam(&[OsStr::new("verify"), data.as_os_str()]).ok();
    // The largest pack holds the file's data (the others, its trees).
    let largest = obnam_test_support::files_under(&w.repo.join("packs"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(largest).unwrap();
    for args in [
        vec![OsStr::new("verify"), data.as_os_str()],
        vec![
            OsStr::new("verify"),
            OsStr::new("--verify-randomly"),
            OsStr::new("1"),
            data.as_os_str(),
        ],
    ] {
        let run = w.obnam(&args).fails();
        assert!(
            run.stdout
                .contains("/big: the backed-up content cannot be read back: "),
            "{run:#?}"
        );
    }
}

/// Two names that were one file and are two (a copy put in place of one
/// of them), and two that become one: `diff` and `verify` say so, naming
/// the partners (each said "no differences", exit 0, though a restore
/// links the names otherwise); names linked to a file outside the tree
/// are no difference.
#[test]
fn diff_and_verify_see_hard_links_split_and_joined() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), "same\n").unwrap();
    fs::hard_link(data.join("a"), data.join("b")).unwrap();
    fs::write(data.join("c"), "one\n").unwrap();
    fs::write(data.join("d"), "one\n").unwrap();
    fs::write(data.join("e"), "outside\n").unwrap();
    fs::hard_link(data.join("e"), w.path().join("outside-link")).unwrap();
    // One time for every file, so that the names joined below (c and d,
    // written a tick apart) have no time of their own to differ by.
    let file_time =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let set_file_times = || {
        for name in ["a", "b", "c", "d"] {
            let file = fs::File::options()
                .write(true)
                .open(data.join(name))
                .unwrap();
            file.set_modified(file_time).unwrap();
        }
    };
    set_file_times();
    w.backup(&data);
    let untouched = w.obnam(&[OsStr::new("verify"), data.as_os_str()]).ok();
    assert!(
        untouched.stdout.contains("no differences"),
        "{untouched:#?}"
    );

    // b becomes a copy of a; d becomes a link of c; the files' and the
    // folder's times are put back, so that nothing else differs.
    let folder_time = fs::metadata(&data).unwrap().modified().unwrap();
    fs::copy(data.join("a"), data.join("b.new")).unwrap();
    fs::rename(data.join("b.new"), data.join("b")).unwrap();
    fs::remove_file(data.join("d")).unwrap();
    fs::hard_link(data.join("c"), data.join("d")).unwrap();
    set_file_times();
    fs::File::open(&data)
        .unwrap()
        .set_modified(folder_time)
        .unwrap();
    let expected: Vec<String> = [
        ("a", "with DATA/b -> no other name"),
        ("b", "with DATA/a -> no other name"),
        ("c", "no other name -> with DATA/d"),
        ("d", "no other name -> with DATA/c"),
    ]
    .iter()
    .map(|(name, what)| {
        format!(
            "{}/{name}: hard links: {}",
            data.display(),
            what.replace("DATA", &data.display().to_string())
        )
    })
    .collect();
    let verified = w.obnam(&[OsStr::new("verify"), data.as_os_str()]).fails();
    let lines: Vec<&str> = verified.stdout.lines().collect();
    let wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(lines, wanted, "{verified:#?}");

    w.backup(&data);
    let diff = w.obnam(&["diff"]).ok();
    for line in &expected {
        let (path, what) = line.split_once(": ").unwrap();
        let want = format!("U  {path}  ({what})");
        assert!(diff.stdout.contains(&want), "{want}\n{diff:#?}");
    }
    assert!(
        diff.stdout
            .ends_with("0 added, 0 removed, 0 modified, 4 metadata only, 0 changed kind\n"),
        "{diff:#?}"
    );
}
