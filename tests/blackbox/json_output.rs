//! `--output-format json` of the commands that report something at the
//! end: backup, restore and fsck print one JSON object a program can read
//! (even with `--quiet`), with the figures the text gives.

use std::ffi::OsStr;
use std::fs;

use serde_json::Value;

use crate::inspect::World;

fn json(run: &obnam_test_support::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

#[test]
fn backup_restore_and_fsck_report_in_json() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("a"), "aaaa").unwrap();
    fs::write(data.join("sub/b"), "bb").unwrap();
    let run = w
        .obnam(&[
            OsStr::new("backup"),
            OsStr::new("--output-format"),
            OsStr::new("json"),
            OsStr::new("--quiet"),
            data.as_os_str(),
        ])
        .ok();
    let b = json(&run);
    // --verbose adds no text to the JSON (it put its lines before it).
    for format in ["json", "json-lines"] {
        let run = w
            .obnam(&[
                OsStr::new("backup"),
                OsStr::new("--verbose"),
                OsStr::new("--pretend"),
                OsStr::new("--output-format"),
                OsStr::new(format),
                data.as_os_str(),
            ])
            .ok();
        for line in run.stdout.lines().filter(|l| !l.starts_with(' ')) {
            assert!(
                ["{", "}"].contains(&line) || line.starts_with('{'),
                "{format}: {line:?} in {run:#?}"
            );
        }
    }
    assert_eq!(b["files"], 2, "{b:#}");
    assert_eq!(b["files_read"], 2, "{b:#}");
    assert_eq!(b["bytes_read"], 6, "{b:#}");
    assert_eq!(b["errors"], 0, "{b:#}");
    assert_eq!(b["pretend"], false, "{b:#}");
    assert_eq!(b["generation"].as_str().unwrap(), w.genids()[0]);
    assert!(b["roots"][0].as_str().unwrap().ends_with("/data"), "{b:#}");

    let to = w.path().join("restored");
    let run = w
        .obnam(&[
            OsStr::new("restore"),
            OsStr::new("--to"),
            to.as_os_str(),
            OsStr::new("--output-format"),
            OsStr::new("json"),
        ])
        .ok();
    let r = json(&run);
    assert_eq!(r["files"], 2, "{r:#}");
    assert_eq!(r["bytes"], 6, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["problems"], serde_json::json!([]), "{r:#}");
    assert_eq!(
        fs::read(to.join(data.strip_prefix("/").unwrap()).join("sub/b")).unwrap(),
        b"bb"
    );

    let run = w.obnam(&["fsck", "--output-format", "json"]).ok();
    let f = json(&run);
    assert_eq!(f["generations"], 1, "{f:#}");
    assert_eq!(f["files"], 2, "{f:#}");
    assert_eq!(f["problems"], serde_json::json!([]), "{f:#}");

    // A lost pack: fsck lists the problems, and fails.
    let mut packs = Vec::new();
    obnam_test_support::awkward::collect(&w.repo.join("packs"), &mut packs);
    let pack = packs.into_iter().find(|p| p.is_file()).expect("a pack");
    fs::remove_file(&pack).unwrap();
    let run = w.obnam(&["fsck", "--output-format", "json"]).fails();
    let f = json(&run);
    let problems = f["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{f:#}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        problems.iter().any(|p| p.as_str().unwrap().contains(name)),
        "the missing pack is named: {f:#}"
    );
}

/// An RFC 3339 time in UTC, as every command's JSON gives times.
fn assert_rfc3339_utc(v: &Value, what: &str) {
    let t = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"));
    let b = t.as_bytes();
    assert!(
        t.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && t.ends_with('Z'),
        "{what}: {t}"
    );
}

#[test]
fn verify_force_lock_and_forget_report_in_json_with_times_as_elsewhere() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), "aaaa").unwrap();
    fs::write(data.join("b"), "bb").unwrap();
    w.obnam(&[OsStr::new("backup"), data.as_os_str()]).ok();

    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--output-format"),
            OsStr::new("json"),
            data.as_os_str(),
        ])
        .ok();
    let v = json(&run);
    assert_eq!(v["checked"], 3, "{v:#}");
    assert_eq!(v["differences"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["generation"].as_str().unwrap(), w.genids()[0]);

    fs::write(data.join("b"), "bbbbbb").unwrap();
    let run = w
        .obnam(&[
            OsStr::new("verify"),
            OsStr::new("--output-format"),
            OsStr::new("json-lines"),
            data.as_os_str(),
        ])
        .fails();
    let v = json(&run);
    let differences = v["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 1, "{v:#}");
    assert!(
        differences[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/data/b"),
        "{v:#}"
    );
    assert!(
        differences[0]["difference"]
            .as_str()
            .unwrap()
            .contains("size 2 -> 6"),
        "{v:#}"
    );

    let run = w.obnam(&["force-lock", "--output-format", "json"]).ok();
    assert_eq!(json(&run), serde_json::json!({ "removed": [] }));

    let run = w
        .obnam(&[
            "forget",
            "--keep",
            "1",
            "--pretend",
            "--output-format",
            "json",
        ])
        .ok();
    let f = json(&run);
    let g = &f[0]["generations"][0];
    assert_rfc3339_utc(&g["started"], "forget's started");
    let generations = json(&w.obnam(&["generations", "--output-format", "json"]).ok());
    assert_eq!(g["started_ns"], generations[0]["started_ns"], "{f:#}");
    assert_eq!(g["started"], generations[0]["started"], "{f:#}");

    // remove-client: text with a singular count, and JSON.
    let client = w.obnam(&["clients"]).ok().stdout.trim().to_string();
    let run = w
        .obnam(&["remove-client", client.as_str(), "--pretend"])
        .ok();
    assert_eq!(
        run.stdout,
        format!("would remove client {client} and its 1 generation\n")
    );
    let run = w
        .obnam(&["remove-client", client.as_str(), "--output-format", "json"])
        .ok();
    assert_eq!(
        json(&run),
        serde_json::json!({ "client": client, "generations": 1, "pretend": false })
    );
    // Indented, as forget's and prune's documents are.
    assert!(run.stdout.starts_with("{\n  \""), "{run:#?}");
    assert_eq!(w.obnam(&["clients"]).ok().stdout, "");
}

/// A time a 64-bit count of nanoseconds cannot hold (after 2262) is
/// `null` in `NAME_ns`, never wrapped round to another time (a file of
/// 2446 was given as of 1861); the RFC 3339 field holds it.
#[test]
fn a_time_beyond_64_bit_nanoseconds_is_null_not_wrapped() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let file = data.join("future");
    fs::write(&file, "x").unwrap();
    let ok = std::process::Command::new("touch")
        .arg("-d")
        .arg("@16000000000")
        .arg(&file)
        .status()
        .unwrap();
    assert!(ok.success());
    let secs = std::os::unix::fs::MetadataExt::mtime(&fs::metadata(&file).unwrap());
    assert!(
        secs > i64::MAX / 1_000_000_000,
        "the file system kept {secs}"
    );
    w.obnam(&[OsStr::new("backup"), data.as_os_str()]).ok();
    for command in ["ls", "find"] {
        let pattern = if command == "ls" {
            file.as_os_str()
        } else {
            OsStr::new("future$")
        };
        let run = w
            .obnam(&[
                OsStr::new(command),
                OsStr::new("--output-format"),
                OsStr::new("json"),
                pattern,
            ])
            .ok();
        let v = json(&run);
        let entry = &v[0];
        assert!(entry["mtime_ns"].is_null(), "{command}: {entry:#}");
        let year: i64 = entry["mtime"].as_str().unwrap()[..4].parse().unwrap();
        assert!(year > 2262, "{command}: {entry:#}");
    }
}

/// A command asked for JSON that fails before it printed anything gives
/// the error as a JSON object too (it printed nothing on standard output:
/// a program had to read English on standard error).
#[test]
fn a_command_that_fails_at_once_says_why_in_json() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), "a").unwrap();
    w.obnam(&[OsStr::new("backup"), data.as_os_str()]).ok();
    for args in [
        &["ls", "/nope"][..],
        &["forget", "deadbeefdeadbeef"],
        &["diff", "nope"],
    ] {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--output-format"), OsStr::new("json")];
        all.extend(args.iter().map(OsStr::new));
        let run = w.obnam(&all).fails();
        let v = json(&run);
        assert_eq!(v["type"], "exit_error", "{args:?}: {v}");
        assert_eq!(v["exit_code"], 1, "{args:?}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            run.stderr.contains(&format!("ERROR: {message}")),
            "{args:?}: {run:#?}"
        );
    }
}

/// A usage error, found before the settings are read, gives its JSON
/// object too where the command line or the environment asks for JSON,
/// with the code the run exits with: 2, and 3 for the Nagios check,
/// whose failures are UNKNOWN (it printed its text line, or nothing).
#[test]
fn a_usage_error_says_why_in_json_with_its_exit_code() {
    let w = World::new();
    for (args, code) in [
        (
            &["--output-format", "json", "generations", "--bogus"][..],
            2,
        ),
        (&["--output-format=json-lines", "ls", "--bogus"], 2),
        (
            &[
                "--output-format",
                "json",
                "nagios-last-backup-age",
                "--bogus",
            ],
            3,
        ),
    ] {
        let run = w.obnam(args).fails();
        assert_eq!(run.code, code, "{args:?}: {run:#?}");
        let v = json(&run);
        assert_eq!(v["type"], "exit_error", "{args:?}: {v}");
        assert_eq!(v["exit_code"], code, "{args:?}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("'--bogus'"),
            "{args:?}: {v}"
        );
    }
    let mut from_env = w.command(&["nagios-last-backup-age", "--bogus"]);
    from_env.env("OBNAM_OUTPUT_FORMAT", "json");
    let run = obnam_test_support::run(&mut from_env);
    assert_eq!(run.code, 3, "{run:#?}");
    assert_eq!(json(&run)["exit_code"], 3, "{run:#?}");
}
