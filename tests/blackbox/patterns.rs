//! The pattern styles (regular expressions, `re:`, `sh:`/`glob:`, `pp:`)
//! are read the one same way by every command that takes patterns:
//! `--exclude`, `--exclude-from`, `find`, and the PATH arguments of `ls`
//! and `restore` (found by an outside review: `find` took `sh:*.tmp`
//! literally and found nothing, with exit 0; `.` never matched a name
//! that is not UTF-8; a pattern whose matches were all inside another's
//! was "matches nothing").

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use obnam_test_support::{run, BackupWorld, Run};

/// A world with `a.tmp`, `sub/b.tmp`, `café` (UTF-8), `caf\xe9`
/// (Latin-1) and `keep.txt`.
fn world() -> BackupWorld {
    let w = BackupWorld::new("c");
    w.file("a.tmp", b"a");
    w.file("sub/b.tmp", b"b");
    w.file("café", b"utf-8");
    w.file("keep.txt", b"k");
    std::fs::write(w.data.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1").unwrap();
    w
}

fn obnam_bytes(w: &BackupWorld, args: &[&[u8]]) -> Run {
    run(w
        .env
        .obnam()
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(args.iter().map(|a| OsStr::from_bytes(a))))
}

/// The paths `ls` lists, relative to the data folder.
fn listed(w: &BackupWorld, args: &[&str]) -> Vec<String> {
    let root = w.data.to_str().unwrap();
    let mut all = vec!["ls"];
    all.extend_from_slice(args);
    w.obnam(&all)
        .ok()
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.strip_prefix(root))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_dot_matches_a_name_that_is_not_utf8_as_one_that_is() {
    let w = world();
    w.backup(&["--exclude", "caf.$"]).ok();
    let paths = listed(&w, &[]);
    assert!(paths.contains(&"/keep.txt".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/caf")), "{paths:?}");
    // find, without the exclusion.
    w.backup(&[]).ok();
    let found = w.obnam(&["find", "caf.$"]).ok().stdout;
    assert_eq!(found.lines().count(), 2, "{found}");
    assert!(found.contains("/café "), "{found}");
    assert!(found.contains("/caf\\xe9 "), "{found}");
}

#[test]
fn find_takes_every_pattern_style() {
    let w = world();
    w.backup(&[]).ok();
    let sub = format!("pp:{}/sub", w.data.display());
    for pattern in [
        r"b\.tmp$",
        r"re:b\.tmp$",
        "sh:b.tmp",
        "glob:**/b.tmp",
        sub.as_str(),
    ] {
        let found = w.obnam(&["find", pattern]).ok().stdout;
        assert!(found.contains("/sub/b.tmp "), "{pattern}: {found}");
        assert!(!found.contains("/a.tmp"), "{pattern}: {found}");
    }
    let found = w.obnam(&["find", "sh:*.tmp"]).ok().stdout;
    assert_eq!(found.lines().count(), 2, "{found}");
    // The bytes of a pattern that are not UTF-8 match those bytes.
    let found = obnam_bytes(&w, &[b"find", b"caf\xe9$"]).ok().stdout;
    assert_eq!(found.lines().count(), 1, "{found}");
}

#[test]
fn patterns_whose_matches_lie_inside_anothers_match_too() {
    let w = world();
    w.backup(&[]).ok();
    // sub/b.tmp comes with sub, once.
    let paths = listed(&w, &["sh:sub", "sh:*.tmp"]);
    assert_eq!(paths, ["/a.tmp", "/sub", "/sub/b.tmp"], "{paths:?}");
    let sub = format!("{}/sub", w.data.display());
    let paths = listed(&w, &[&sub, &sub, "sh:b.tmp"]);
    assert_eq!(paths, ["/sub", "/sub/b.tmp"], "{paths:?}");
    let to = w.env.path().join("restored");
    w.obnam(&[
        "restore",
        "--to",
        to.to_str().unwrap(),
        "sh:*.tmp",
        "re:/sub$",
    ])
    .ok();
    let restored = to.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored.join("a.tmp")).unwrap(), b"a");
    assert_eq!(std::fs::read(restored.join("sub/b.tmp")).unwrap(), b"b");
    assert!(!restored.join("keep.txt").exists());
}

#[test]
fn a_bad_pattern_is_one_line_naming_it_for_every_command() {
    let w = world();
    w.backup(&[]).ok();
    let to = w.env.path().join("r");
    for (args, want) in [
        (
            vec!["find", "("],
            "ERROR: find: bad regular expression '(': unclosed group\n",
        ),
        (
            vec!["ls", "re:("],
            "ERROR: ls: bad regular expression 're:(': unclosed group\n",
        ),
        (
            vec!["restore", "--to", to.to_str().unwrap(), "re:("],
            "ERROR: restore: bad regular expression 're:(': unclosed group\n",
        ),
        (
            vec!["backup", "--exclude", "(", w.data.to_str().unwrap()],
            "ERROR: --exclude: bad regular expression '(': unclosed group\n",
        ),
    ] {
        let run = w.obnam(&args).fails().no_rust_panic();
        assert_eq!(run.stderr, want, "{args:?}");
    }
}

#[test]
fn exclude_from_files_and_folder_globs_read_as_people_write_them() {
    let w = world();
    // A byte-order mark, as some editors write, is not part of the rule.
    let list = w.env.write("exclude.txt", "\u{feff}sh:*.tmp\n");
    w.backup(&[
        "--exclude-from",
        list.to_str().unwrap(),
        "--exclude",
        "sh:sub/",
    ])
    .ok();
    let paths = listed(&w, &[]);
    assert!(!paths.contains(&"/a.tmp".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/sub".to_string()), "{paths:?}");
    assert!(paths.contains(&"/keep.txt".to_string()), "{paths:?}");
}
