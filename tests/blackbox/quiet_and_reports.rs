//! What the commands that report at the end print: nothing but errors
//! with `--quiet`, one JSON document with `--output-format json` (also
//! `restore --pretend`), paths in `verify`'s JSON as in every listing;
//! the exact time `--testing-generation-time` sets; and ACLs in `dump`'s
//! tar stream as GNU tar restores them.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::inspect::World;

fn json(run: &obnam_test_support::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// A world with two backups of a small folder; returns it, the folder
/// and the generation ids.
fn two_backups() -> (World, std::path::PathBuf, Vec<String>) {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), "first").unwrap();
    w.backup(&data);
    fs::write(data.join("a"), "second, longer").unwrap();
    w.backup(&data);
    let ids = w.genids();
    (w, data, ids)
}

#[test]
fn quiet_commands_that_report_at_the_end_print_nothing() {
    let (w, data, ids) = two_backups();
    let quietly = |args: &[&OsStr]| {
        let mut all = vec![OsStr::new("--quiet")];
        all.extend(args);
        let run = w.obnam(&all).ok();
        assert_eq!(run.stdout, "", "{args:?} printed with --quiet: {run:#?}");
        assert_eq!(run.stderr, "", "{args:?} printed with --quiet: {run:#?}");
    };
    let s = OsStr::new;
    quietly(&[s("verify"), data.as_os_str()]);
    quietly(&[s("forget"), s("--keep"), s("1"), s("--pretend")]);
    quietly(&[s("remove-client"), s("inspector"), s("--pretend")]);
    quietly(&[s("force-lock")]);
    quietly(&[s("forget"), s("--keep"), s("1"), s("--prune")]);
    quietly(&[s("prune")]);
    assert_eq!(
        w.genids(),
        vec![ids[1].clone()],
        "the quiet forget did its work"
    );

    // What the user must see still shows: a difference, and the error.
    fs::write(data.join("a"), "third").unwrap();
    let run = w
        .obnam(&[s("--quiet"), s("verify"), data.as_os_str()])
        .fails();
    assert!(run.stdout.contains("/data/a: "), "{run:#?}");
    assert!(
        run.stderr.contains("ERROR: verify: 1 difference"),
        "{run:#?}"
    );
}

#[test]
fn restore_pretend_prints_json_when_asked() {
    let (w, _data, ids) = two_backups();
    let to = w.path().join("not-made");
    for format in ["json", "json-lines"] {
        let run = w
            .obnam(&[
                OsStr::new("restore"),
                OsStr::new("--pretend"),
                OsStr::new("--output-format"),
                OsStr::new(format),
                OsStr::new("--to"),
                to.as_os_str(),
            ])
            .ok();
        if format == "json-lines" {
            assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
        }
        let v = json(&run);
        assert_eq!(v["pretend"], true, "{v:#}");
        assert_eq!(v["generation"], ids[1].as_str(), "{v:#}");
        assert_eq!(v["files"], 1, "{v:#}");
        assert_eq!(v["bytes"], "second, longer".len(), "{v:#}");
        assert_eq!(v["to"], to.to_str().unwrap(), "{v:#}");
        assert!(!to.exists(), "--pretend wrote nothing");
    }
}

/// verify's JSON gives a path as `ls`'s does: the real name (JSON escapes
/// a newline itself), and the exact bytes of one that is not UTF-8.
#[test]
fn verify_json_paths_are_those_of_the_listings() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let newline = data.join("new\nline");
    let latin1 = data.join(OsStr::from_bytes(b"caf\xe9"));
    fs::write(&newline, "1").unwrap();
    fs::write(&latin1, "2").unwrap();
    w.backup(&data);
    fs::write(&newline, "11").unwrap();
    fs::write(&latin1, "22").unwrap();
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--output-format"),
            OsStr::new("json"),
            data.as_os_str(),
        ])
        .fails();
    let v = json(&run);
    let found = v["differences"].as_array().expect("differences");
    let listed = w.json(&[OsStr::new("ls"), data.as_os_str()]);
    let listed = listed.as_array().expect("ls lists");
    for path in [&newline, &latin1] {
        let bytes = path.as_os_str().as_bytes();
        let mine: Vec<&Value> = found
            .iter()
            .filter(|d| match d.get("path_bytes") {
                Some(b) => *b == serde_json::json!(bytes),
                None => d["path"].as_str().map(str::as_bytes) == Some(bytes),
            })
            .collect();
        assert!(!mine.is_empty(), "{path:?} not found by its bytes: {v:#}");
        assert!(
            listed.iter().any(|e| e["path"] == mine[0]["path"]
                && e.get("path_bytes") == mine[0].get("path_bytes")),
            "{path:?}: verify's path is not ls's: {v:#} {listed:#?}"
        );
    }
}

#[test]
fn a_set_generation_time_is_recorded_exactly_with_any_offset() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), "a").unwrap();
    for (given, recorded) in [
        // Just before midnight stays on its day, however long the run
        // took to get to its generation.
        ("2026-01-04T23:59:59.999Z", "2026-01-04T23:59:59.999Z"),
        ("2026-01-05T12:00:00+02:00", "2026-01-05T10:00:00Z"),
        ("2026-01-05 11:00:00", "2026-01-05T11:00:00Z"),
    ] {
        w.obnam(&[
            OsStr::new("backup"),
            OsStr::new("--testing-generation-time"),
            OsStr::new(given),
            data.as_os_str(),
        ])
        .ok();
        let gens = w.json(&["generations"]);
        let last = gens.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["started"], recorded, "{given}: {last:#}");
    }
    let run = w
        .obnam(&[
            OsStr::new("backup"),
            OsStr::new("--testing-generation-time"),
            OsStr::new("1969-12-31T23:00:00Z"),
            data.as_os_str(),
        ])
        .fails();
    assert!(run.stderr.contains("before 1970"), "{run:#?}");
}

/// An ACL set through its extended attribute (as `setfacl` does) comes
/// out of `dump | tar --acls -x` as it went in.
#[test]
fn dump_carries_acls_that_gnu_tar_restores() {
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("skipped: no tar here");
        return;
    }
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let file = data.join("f");
    fs::write(&file, "x").unwrap();
    // user::rw-, user:1000:rwx, group::r--, mask::rwx, other::r--
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 7, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    if let Err(e) = xattr::set(&file, "system.posix_acl_access", &acl) {
        eprintln!("skipped: this file system takes no ACLs: {e}");
        return;
    }
    w.backup(&data);
    let out = w.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut dump = w
        .command(&[OsStr::new("dump"), data.as_os_str()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .args(["--acls", "-xpf", "-", "-C"])
        .arg(&out)
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(dump.wait().unwrap().success(), "dump failed");
    assert!(tar.status.success(), "{tar:?}");
    let restored = xattr::get(out.join("data/f"), "system.posix_acl_access")
        .unwrap()
        .expect("an ACL on the file tar made");
    assert_eq!(restored, acl);
}

/// An extended attribute whose name holds `=` cannot be in a tar stream
/// (a record's key ends at its first `=`): `dump` leaves it out with a
/// warning naming it, where tar made another attribute of it (`user.a`
/// of value `b=v` for `user.a=b` of value `v`), exit 0.
#[test]
fn dump_leaves_out_an_attribute_tar_would_read_as_another() {
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("skipped: no tar here");
        return;
    }
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let file = data.join("f");
    fs::write(&file, "x").unwrap();
    if let Err(e) = xattr::set(&file, "user.a=b", b"v") {
        eprintln!("skipped: this file system takes no user attributes: {e}");
        return;
    }
    xattr::set(&file, "user.plain", b"kept").unwrap();
    w.backup(&data);
    let dump = w
        .command(&[OsStr::new("dump"), data.as_os_str()])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{dump:?}");
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: its extended attribute user.a=b is left out of the tar stream",
            file.display()
        )),
        "{stderr}"
    );
    let stream = String::from_utf8_lossy(&dump.stdout);
    assert!(stream.contains("SCHILY.xattr.user.plain=kept"));
    assert!(!stream.contains("SCHILY.xattr.user.a"));
}
