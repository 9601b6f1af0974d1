//! The bundled exclude plugin, through real backups.

use std::fs;

use obnam_test_support::{mount_small_tmpfs, unmount, BackupWorld};

/// The backup world, with what these tests add to it.
trait Listing {
    fn backed_up(&self) -> Vec<String>;
}

fn world() -> BackupWorld {
    BackupWorld::new("c")
}

impl Listing for BackupWorld {
    /// The paths below the data folder in the latest generation, relative.
    fn backed_up(&self) -> Vec<String> {
        let run = self.obnam(&["ls", self.data.to_str().unwrap()]).ok();
        let prefix = format!("{}/", self.data.display());
        let mut paths: Vec<String> = run
            .stdout
            .lines()
            // A symlink's line ends `PATH -> TARGET`.
            .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
            .filter_map(|p| p.strip_prefix(&prefix).map(String::from))
            .collect();
        paths.sort();
        paths
    }
}

fn rel(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn exclude_prunes_a_folder_with_its_subtree_and_include_wins() {
    let w = world();
    w.file("keep.txt", b"k");
    w.file("build/out.o", b"o");
    w.file("build/deep/more.o", b"o");
    w.file("notes.tmp", b"t");
    w.file("important.tmp", b"i");
    let run = w
        .backup(&[
            "--exclude",
            "/build$",
            "--exclude",
            r"\.tmp$",
            "--include",
            "important",
            "--verbose",
        ])
        .ok();
    assert_eq!(w.backed_up(), rel(&["important.tmp", "keep.txt"]));
    assert!(
        run.stdout.contains(&format!(
            "excluded {} (matches --exclude '/build$')",
            w.data.join("build").display()
        )),
        "{}",
        run.stdout
    );
    // The pattern as it was written: one backslash, not two.
    assert!(
        run.stdout.contains(&format!(
            "excluded {} (matches --exclude '\\.tmp$')",
            w.data.join("notes.tmp").display()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 excluded"), "{}", run.stdout);
}

#[test]
fn exclude_from_reads_patterns_skipping_comments_and_blank_lines() {
    let w = world();
    w.file("a.log", b"a");
    w.file("b.txt", b"b");
    w.file("#c", b"c");
    let list = w.env.write("patterns", "# logs go\n\\.log$\n\n   \n");
    w.backup(&["--exclude-from", list.to_str().unwrap()]).ok();
    assert_eq!(w.backed_up(), rel(&["#c", "b.txt"]));
    let run = w.backup(&["--exclude-from", "/no/such/list"]).fails();
    assert!(
        run.stderr
            .contains("--exclude-from: cannot read /no/such/list"),
        "{}",
        run.stderr
    );
}

#[test]
fn cache_folders_keep_only_their_tag() {
    let w = world();
    w.file(
        "cache/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    w.file("cache/blob", b"cached");
    w.file("cache/sub/blob2", b"cached");
    w.file(
        "fake/CACHEDIR.TAG",
        b"Signature: not the right one, sorry, no no\n",
    );
    w.file("fake/kept", b"kept");
    // Only a regular file is a tag: a FIFO of that name blocked the backup
    // for ever, and a symlink was followed (to a device, or a real tag
    // elsewhere, as here).
    w.file("fifo/kept", b"kept");
    let fifo = w.data.join("fifo/CACHEDIR.TAG");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    w.file("linked/kept", b"kept");
    std::os::unix::fs::symlink(
        w.data.join("cache/CACHEDIR.TAG"),
        w.data.join("linked/CACHEDIR.TAG"),
    )
    .unwrap();
    w.backup(&["--exclude-caches"]).ok();
    assert_eq!(
        w.backed_up(),
        rel(&[
            "cache",
            "cache/CACHEDIR.TAG",
            "fake",
            "fake/CACHEDIR.TAG",
            "fake/kept",
            "fifo",
            "fifo/CACHEDIR.TAG",
            "fifo/kept",
            "linked",
            "linked/CACHEDIR.TAG",
            "linked/kept",
        ])
    );
}

/// obnam's own cache folder is tagged: a backup of the home folder with
/// `--exclude-caches` leaves out the index cache (it stored its segments,
/// rewritten run after run).
#[test]
fn obnams_own_cache_is_tagged_as_a_cache() {
    let env = obnam_test_support::TestEnv::new();
    let home = env.home();
    std::fs::create_dir_all(home.join("docs")).unwrap();
    std::fs::write(home.join("docs/a.txt"), b"text").unwrap();
    let repo = env.path().join("repo");
    let backup = || {
        obnam_test_support::run(
            env.obnam()
                .arg("--repository")
                .arg(&repo)
                .args(["--client-name", "c", "backup", "--exclude-caches"])
                .arg(&home),
        )
        .ok()
    };
    backup();
    let tag = std::fs::read_to_string(home.join(".cache/obnam/CACHEDIR.TAG")).unwrap();
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "{tag}"
    );
    assert!(std::fs::read_dir(home.join(".cache/obnam/index"))
        .unwrap()
        .next()
        .is_some());
    backup();
    let ls = obnam_test_support::run(env.obnam().arg("--repository").arg(&repo).args([
        "--client-name",
        "c",
        "ls",
    ]))
    .ok();
    assert!(ls.stdout.contains("docs/a.txt"), "{}", ls.stdout);
    assert!(
        ls.stdout.contains(".cache/obnam/CACHEDIR.TAG"),
        "{}",
        ls.stdout
    );
    assert!(!ls.stdout.contains(".cache/obnam/index"), "{}", ls.stdout);
}

#[test]
fn exclude_if_present_and_larger_than() {
    let w = world();
    w.file("proj/.nobackup", b"");
    w.file("proj/src.rs", b"fn main() {}");
    w.file("small", &[1u8; 100]);
    w.file("large", &[2u8; 5000]);
    w.backup(&[
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1k",
    ])
    .ok();
    assert_eq!(w.backed_up(), rel(&["small"]));
}

#[test]
fn a_newly_excluded_file_leaves_the_next_generation() {
    let w = world();
    w.file("a", b"a");
    w.file("secret", b"s");
    w.backup(&[]).ok();
    assert_eq!(w.backed_up(), rel(&["a", "secret"]));
    w.backup(&["--exclude", "secret"]).ok();
    assert_eq!(w.backed_up(), rel(&["a"]));
}

#[test]
fn a_bad_pattern_stops_the_backup_before_anything_is_written() {
    let w = world();
    w.file("a", b"a");
    let run = w
        .backup(&["--exclude", "ok", "--exclude", "(unclosed"])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr
            .starts_with("ERROR: --exclude: bad regular expression '(unclosed'"),
        "{}",
        run.stderr
    );
    assert!(!w.repo.exists(), "the repository was not even created");
}

#[test]
fn the_log_file_is_left_out() {
    let w = world();
    w.file("a", b"a");
    let log = w.data.join("obnam.log");
    w.backup(&["--log", log.to_str().unwrap()]).ok();
    assert!(log.exists());
    assert_eq!(w.backed_up(), rel(&["a"]));
}

#[test]
fn one_file_system_leaves_out_other_mounts() {
    let w = world();
    w.file("here", b"h");
    let mnt = w.data.join("mnt");
    fs::create_dir(&mnt).unwrap();
    if !mount_small_tmpfs(&mnt) {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    fs::write(mnt.join("there"), "t").unwrap();
    let with = w.backup(&["--one-file-system"]);
    let listed_with = if with.code == 0 {
        w.backed_up()
    } else {
        Vec::new()
    };
    let without = w.backup(&[]);
    let listed_without = if without.code == 0 {
        w.backed_up()
    } else {
        Vec::new()
    };
    unmount(&mnt);
    assert_eq!(with.code, 0, "{with:?}");
    assert_eq!(without.code, 0, "{without:?}");
    // The mount point's own inode is the mounted file system's root, so it
    // is left out with what is in it.
    assert_eq!(listed_with, rel(&["here"]));
    assert_eq!(listed_without, rel(&["here", "mnt", "mnt/there"]));
}

/// Borg-style pattern prefixes: shell globs, path prefixes and explicit
/// regular expressions, each leaving out exactly what it says; a glob
/// given as a regular expression is refused with a hint.
#[test]
fn pattern_styles_exclude_what_they_say() {
    let env = obnam_test_support::TestEnv::new();
    let data = env.path().join("data");
    for rel in [
        "a.tmp",
        "deep/er/b.tmp",
        "b.tmpl",
        "cache/x",
        "cache2/y",
        "legit",
        "src/.git/config",
        "keep.txt",
    ] {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, rel).unwrap();
    }
    let repo = env.path().join("repo");
    let root = data.to_str().unwrap();
    let cache = format!("pp:{root}/cache");
    env.run([
        "--repository",
        repo.to_str().unwrap(),
        "--client-name",
        "c",
        "backup",
        "--exclude",
        "sh:*.tmp",
        "--exclude",
        cache.as_str(),
        "--exclude",
        "re:/\\.git$",
        root,
    ])
    .ok();
    let listed = env
        .run([
            "--repository",
            repo.to_str().unwrap(),
            "--client-name",
            "c",
            "ls",
            root,
        ])
        .ok()
        .stdout;
    let paths: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.strip_prefix(root))
        .collect();
    for kept in ["/b.tmpl", "/cache2/y", "/legit", "/keep.txt", "/src"] {
        assert!(paths.contains(&kept), "{kept} kept: {paths:?}");
    }
    for gone in [
        "/a.tmp",
        "/deep/er/b.tmp",
        "/cache",
        "/cache/x",
        "/src/.git",
    ] {
        assert!(!paths.contains(&gone), "{gone} excluded: {paths:?}");
    }
    let run = env
        .run([
            "--repository",
            repo.to_str().unwrap(),
            "--client-name",
            "c",
            "backup",
            "--exclude",
            "*.tmp",
            root,
        ])
        .fails()
        .no_rust_panic();
    assert!(run.stderr.contains("write 'sh:*.tmp'"), "{run:#?}");
}

/// A root named inside another is a root of its own: the outer root's
/// rules never leave it out, and `--one-file-system` keeps to its own
/// file system below it; the folders on the way down to it that the outer
/// root's rules leave out hold only the way to it, whatever the previous
/// generation had in them. (The inner root was walked only as part of the
/// outer one, and so left out by its rules, with exit 0.)
#[test]
fn a_root_inside_another_is_never_left_out_by_the_outer_roots_rules() {
    let w = world();
    w.file("top", b"t");
    w.file("keep/alice/f", b"a");
    w.file("keep/bob/f", b"b");
    w.file("logs/a.log", b"l");
    w.backup(&[]).ok();
    assert_eq!(
        w.backed_up(),
        rel(&[
            "keep",
            "keep/alice",
            "keep/alice/f",
            "keep/bob",
            "keep/bob/f",
            "logs",
            "logs/a.log",
            "top"
        ])
    );
    let data = w.data.to_str().unwrap().to_string();
    let alice = format!("{data}/keep/alice");
    let log = format!("{data}/logs/a.log");
    let run = w
        .obnam(&[
            "backup",
            &data,
            &alice,
            &log,
            "--exclude",
            "/keep$",
            "--exclude",
            r"\.log$",
        ])
        .ok();
    assert!(run.stdout.contains("0 errors"), "{run:#?}");
    assert_eq!(
        w.backed_up(),
        rel(&[
            "keep",
            "keep/alice",
            "keep/alice/f",
            "logs",
            "logs/a.log",
            "top"
        ])
    );
    // Each generation restores as what was on disk then.
    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let back = to.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(back.join("keep/alice/f")).unwrap(), b"a");
    assert!(!back.join("keep/bob").exists());

    // Another file system inside the outer root, named as a root.
    let mnt = w.data.join("mnt");
    fs::create_dir(&mnt).unwrap();
    if !mount_small_tmpfs(&mnt) {
        eprintln!("skipped the --one-file-system part: cannot mount a tmpfs here (not root?)");
        return;
    }
    fs::write(mnt.join("there"), "t").unwrap();
    fs::create_dir(mnt.join("sub")).unwrap();
    fs::write(mnt.join("sub/deeper"), "d").unwrap();
    let mnt_s = mnt.to_str().unwrap().to_string();
    let with = w.obnam(&["backup", &data, &mnt_s, "--one-file-system"]);
    let listed = if with.code == 0 {
        w.backed_up()
    } else {
        Vec::new()
    };
    unmount(&mnt);
    assert_eq!(with.code, 0, "{with:?}");
    assert!(with.stdout.contains("0 excluded"), "{with:#?}");
    for path in [
        "mnt",
        "mnt/there",
        "mnt/sub",
        "mnt/sub/deeper",
        "top",
        "keep/bob/f",
    ] {
        assert!(
            listed.contains(&path.to_string()),
            "{path} not in {listed:?}"
        );
    }
}

/// An exclusion that matches every path (an unset variable in
/// `"(?i)$NAME"`, `"$DIR/"`, `"re:$A|$B"`, `"sh:$P*"`) is refused, naming
/// it, wherever it came from: it left out the whole tree, exit 0. With an
/// `--include` to take some back, "everything but" is a rule, and taken.
#[test]
fn an_exclusion_that_matches_every_path_is_refused() {
    let w = BackupWorld::new("c");
    w.file("a", b"a");
    w.file("sub/b", b"b");
    for pattern in ["(?i)", "/", "re:^", "re:|foo", "sh:*", "sh:**", "pp:/", "."] {
        let run = w.backup(&["--exclude", pattern]);
        assert_eq!(run.code, 1, "{pattern}: {run:#?}");
        assert!(
            run.stderr
                .contains("matches every path, so it would leave out everything"),
            "{pattern}: {run:#?}"
        );
        assert!(
            !w.repo.join("generations").exists(),
            "{pattern}: nothing committed"
        );
    }
    let list = w.env.write("patterns", "\\.o$\n(?i)\n");
    let run = w.backup(&["--exclude-from", list.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("line 2: '(?i)' matches every path"),
        "{run:#?}"
    );
    // Narrow ones (none matches the root's own path, which an unanchored
    // regex that did would leave out everything below), and everything
    // but what --include takes back.
    w.backup(&["--exclude", "sh:/*", "--exclude", "\\.o$"]).ok();
    for narrow in [
        "/qq$",
        "(?i)readme",
        "sh:*.tmp",
        "re:[[:cntrl:]]",
        "\\.tmp$",
    ] {
        w.backup(&["--pretend", "--exclude", narrow]).ok();
    }
    // Everything below the root (`"$HOME/$CACHE"` with CACHE unset),
    // however written.
    let data = w.data.display().to_string();
    for below in [
        format!("{data}/"),
        format!("pp:{data}/"),
        format!("sh:{data}/*"),
    ] {
        let run = w.backup(&["--exclude", &below]);
        assert_eq!(run.code, 1, "{below}: {run:#?}");
        assert!(
            run.stderr
                .contains(&format!("matches every path below the root {data}")),
            "{below}: {run:#?}"
        );
    }
    // An inclusion that matches every path took back every exclusion.
    let run = w.backup(&["--exclude", "/sub/", "--include", "(?i)"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("so it would take back every exclusion"),
        "{run:#?}"
    );
    let keep = w.data.join("sub");
    let run = w
        .backup(&[
            "--exclude",
            "sh:*",
            "--include",
            &format!("pp:{}", keep.display()),
        ])
        .ok();
    assert!(run.stdout.contains("Backed up 1 file"), "{run:#?}");
}
