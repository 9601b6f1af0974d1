//! Progress of backup and restore: the `--output-format json-lines`
//! stream (status objects, then one summary), which the other commands
//! treat as `json`, and the status line on a terminal.
//!
//! A slow store (`--testing-storage-faults slow=1`: every repository
//! operation waits 1 to 300 ms) with small packs makes a backup or restore
//! of a small tree last several seconds, so that the stream has several
//! status objects (one at the start, then one a second). No assertion is
//! about time itself.

use std::fs;

use obnam_test_support::awkward::{assert_same, restored};
use obnam_test_support::{noise, BackupWorld, Run};
use serde_json::Value;

/// The slow store of these tests, and packs small enough that the data
/// makes many of them (many slow writes and reads).
const SLOW: [&str; 4] = [
    "--testing-storage-faults",
    "slow=1,seed=17",
    "--pack-size",
    "64KiB",
];

/// The first file of [`make_tree`], which has a second name.
const LINKED: u64 = 20_000;

/// A tree of folders, files of several sizes, an empty file, a file of
/// one byte, a second name (hard link) of a file, and a symlink. Returns
/// its non-folders and their bytes (as `lstat` gives them: the linked
/// file's size once per name; for the symlink, the length of its target),
/// and the bytes of its regular files alone.
fn make_tree(w: &BackupWorld) -> (u64, u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for i in 0..12 {
        let size = 20_000 + i * 7_000;
        w.file(&format!("a/f{i:02}"), &noise(size, i as u64 + 1));
        files += 1;
        bytes += size as u64;
    }
    for i in 0..6 {
        w.file(&format!("b/c/g{i}"), &noise(30_000, 100 + i));
        files += 1;
        bytes += 30_000;
    }
    w.file("one", b"1");
    w.file("b/empty", b"");
    files += 2;
    bytes += 1;
    fs::hard_link(w.data.join("a/f00"), w.data.join("b/linked")).unwrap();
    files += 1;
    bytes += LINKED;
    let file_bytes = bytes;
    std::os::unix::fs::symlink("one", w.data.join("link")).unwrap();
    files += 1;
    bytes += 3;
    (files, bytes, file_bytes)
}

/// Every line of standard output, each parsed as JSON.
fn stream(run: &Run) -> Vec<Value> {
    assert!(run.stdout.ends_with('\n'), "{run:#?}");
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {line:?}\n{run:#?}"))
        })
        .collect()
}

/// The status objects and the summary of a stream: only `status` (and
/// `error`) objects before the summary, which is the last line and the
/// only one.
fn split(lines: &[Value]) -> (Vec<&Value>, &Value) {
    let (summary, before) = lines.split_last().expect("some output");
    assert_eq!(summary["type"], "summary", "the last line: {summary}");
    for v in before {
        assert!(
            v["type"] == "status" || v["type"] == "error",
            "before the summary only status and error objects: {v}"
        );
    }
    let status: Vec<&Value> = before.iter().filter(|v| v["type"] == "status").collect();
    (status, summary)
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {v}"))
}

/// The checks every status object passes, and that `counters` never go
/// down from one to the next.
fn check_status(status: &[&Value], counters: &[&str], total: (u64, u64)) {
    assert!(
        status.len() >= 2,
        "several status objects: {}",
        status.len()
    );
    for pair in status.windows(2) {
        for field in counters.iter().chain(&["time_ns"]) {
            assert!(
                u(pair[0], field) <= u(pair[1], field),
                "{field} went down:\n{}\n{}",
                pair[0],
                pair[1]
            );
        }
        assert!(pair[0]["seconds"].as_f64() <= pair[1]["seconds"].as_f64());
    }
    let mut known = 0;
    for s in status {
        assert!(s["time"].as_str().unwrap().ends_with('Z'), "{s}");
        assert!(s["seconds"].as_f64().unwrap() >= 0.0, "{s}");
        assert!(u(s, "files_done") <= total.0, "{s}");
        assert!(u(s, "bytes_done") <= total.1, "{s}");
        if s["files_total"].is_null() {
            for field in ["bytes_total", "percent", "eta_seconds"] {
                assert!(s[field].is_null(), "{field} before the total is known: {s}");
            }
            continue;
        }
        known += 1;
        assert_eq!((u(s, "files_total"), u(s, "bytes_total")), total, "{s}");
        let percent = s["percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&percent), "{s}");
        if let Some(eta) = s["eta_seconds"].as_f64() {
            assert!(eta >= 0.0, "{s}");
        }
        assert!(
            s["current_file"].is_null() || s["current_file"].is_string(),
            "{s}"
        );
    }
    assert!(known > 0, "no status object had the totals: {status:#?}");
}

/// No status line (it starts with a carriage return and erases the line).
fn no_status_line(text: &str) {
    assert!(
        !text.contains('\r') && !text.contains("\x1b["),
        "a status line was drawn: {text:?}"
    );
}

#[test]
fn a_json_lines_backup_through_a_slow_store_streams_status_then_one_summary() {
    let w = BackupWorld::new("c");
    let (files, bytes, _) = make_tree(&w);
    let mut args = vec!["--output-format", "json-lines", "--verbose"];
    args.extend(SLOW);
    let run = w.backup(&args).ok();
    no_status_line(&run.stderr);
    let lines = stream(&run);
    let (status, summary) = split(&lines);
    check_status(
        &status,
        &[
            "files_done",
            "bytes_done",
            "files",
            "directories",
            "files_read",
            "bytes_found",
            "bytes_read",
            "bytes_new",
            "errors",
        ],
        (files, bytes),
    );
    for s in &status {
        assert!(s["scan_finished"].is_boolean(), "{s}");
        if s["scan_finished"] == true {
            assert_eq!(
                (u(s, "files_scanned"), u(s, "bytes_scanned")),
                (files, bytes)
            );
        }
    }
    assert_eq!(u(summary, "files"), files, "{summary}");
    assert_eq!(u(summary, "bytes_found"), bytes, "{summary}");
    // All but the symlink; the hard link's second name takes the first's
    // read when that is done by then (workers read at once).
    let read = u(summary, "files_read");
    assert!(read == files - 1 || read == files - 2, "{summary}");
    assert_eq!(u(summary, "errors"), 0, "{summary}");
    assert_eq!(summary["pretend"], false);
    let genids = w.obnam(&["genids"]).ok().stdout;
    assert_eq!(
        summary["generation"].as_str().unwrap(),
        genids.trim(),
        "{summary}"
    );

    // --output-format json is as it was: one document, the summary's
    // fields without "type".
    w.file("a/new", b"new");
    let run = w.backup(&["--output-format", "json"]).ok();
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(u(&json, "files"), files + 1, "{json}");
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let mut summary_keys = keys(summary);
    summary_keys.retain(|k| k != "type");
    assert_eq!(keys(&json), summary_keys);
}

#[test]
fn a_json_lines_stream_reports_failed_files_and_ends_with_the_summary() {
    let w = BackupWorld::new("c");
    make_tree(&w);
    let run = w
        .backup(&[
            "--output-format",
            "json-lines",
            "--testing-fail-matching",
            "/a/f03$",
        ])
        .fails();
    assert!(
        run.stderr
            .contains("ERROR: There were errors during the backup"),
        "{run:#?}"
    );
    let lines = stream(&run);
    let (_, summary) = split(&lines);
    assert_eq!(u(summary, "errors"), 1, "{summary}");
    let errors: Vec<&Value> = lines.iter().filter(|v| v["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "one error object: {lines:#?}");
    assert!(
        errors[0]["path"].as_str().unwrap().ends_with("/data/a/f03"),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[0]["message"],
        "simulated failure (--testing-fail-matching)"
    );

    // --pretend streams too, and its summary says so.
    let run = w
        .backup(&["--output-format", "json-lines", "--pretend"])
        .ok();
    let lines = stream(&run);
    let (_, summary) = split(&lines);
    assert_eq!(summary["pretend"], true, "{summary}");
    assert!(summary["generation"].is_null(), "{summary}");
}

#[test]
fn a_json_lines_restore_through_a_slow_store_streams_status_then_one_summary() {
    let w = BackupWorld::new("c");
    let (files, _, file_bytes) = make_tree(&w);
    w.backup(&["--pack-size", "64KiB"]).ok();
    let to = w.env.path().join("restored");
    let run = w
        .obnam(&[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--output-format",
            "json-lines",
            "--restore-workers",
            "1",
            "--testing-storage-faults",
            "slow=1,seed=5",
        ])
        .ok();
    no_status_line(&run.stderr);
    let lines = stream(&run);
    let (status, summary) = split(&lines);
    check_status(
        &status,
        &["files_done", "bytes_done", "files", "bytes", "errors"],
        // The generation's size is that of its regular files.
        (files, file_bytes),
    );
    for s in &status {
        assert!(!s["files_total"].is_null(), "known from the start: {s}");
    }
    assert_eq!(u(summary, "files"), files, "{summary}");
    // A second name of a file is linked, not written again.
    assert_eq!(u(summary, "bytes"), file_bytes - LINKED, "{summary}");
    assert_eq!(u(summary, "errors"), 0, "{summary}");
    assert_eq!(summary["problems"], serde_json::json!([]));
    assert_same(&w.data, &restored(&to, &w.data));
}

#[test]
fn json_lines_is_json_for_commands_that_do_not_stream() {
    let w = BackupWorld::new("c");
    w.file("a", b"a");
    w.backup(&[]).ok();
    w.file("b", b"b");
    w.backup(&[]).ok();
    for command in [
        &["generations"][..],
        &["genids"],
        &["clients"],
        &["ls"],
        &["plugins"],
    ] {
        let as_json = w
            .obnam(&[command, &["--output-format", "json"]].concat())
            .ok();
        let as_lines = w
            .obnam(&[command, &["--output-format", "json-lines"]].concat())
            .ok();
        assert_eq!(as_lines.stdout, as_json.stdout, "{command:?}");
        serde_json::from_str::<Value>(&as_json.stdout).unwrap();
    }
}

#[test]
fn on_a_terminal_backup_shows_percent_and_the_total_and_json_lines_no_status_line() {
    let w = BackupWorld::new("c");
    w.file("only", &noise(200_000, 3));
    let data = w.data.display().to_string();
    let slow = SLOW.join(" ");
    let Some(run) = w.on_terminal("", &format!("{slow} backup {data}")) else {
        return;
    };
    let run = run.ok();
    // One file: "1 file", not "1 files".
    assert!(
        run.stdout.contains(" of 1 file") && !run.stdout.contains("1 files"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("% "), "{run:#?}");
    assert!(
        run.stdout.contains("Backed up 1 file and 1 directory"),
        "{run:#?}"
    );

    // Without the slow store, whose warnings would share the terminal
    // with the stream (a warning is written in pieces, which a line of
    // the stream could come between).
    w.file("second", &noise(200_000, 4));
    let Some(run) = w.on_terminal("", &format!("--output-format json-lines backup {data}")) else {
        return;
    };
    let run = run.ok();
    no_status_line(&run.stdout.replace("\r\n", "\n"));
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim_end().is_empty())
        .collect();
    assert!(lines.len() >= 2, "a status and the summary: {run:#?}");
    for line in lines {
        let v: Value = serde_json::from_str(line.trim_end())
            .unwrap_or_else(|e| panic!("{e}: {line:?}\n{run:#?}"));
        assert!(v["type"] == "status" || v["type"] == "summary", "{v}");
    }
}

/// Paths in backup's JSON (`error` objects, `roots`) are given as `ls`
/// gives them in JSON: the name itself when it is UTF-8 (a newline is a
/// JSON `\n`, a backslash one backslash), else escaped with the exact
/// bytes in `..._bytes` (they were escaped text, which a program could
/// not map back to a name).
#[test]
fn paths_in_the_backup_stream_are_the_names_themselves() {
    use std::os::unix::ffi::OsStrExt;
    let w = BackupWorld::new("c");
    w.file("new\nline", b"1");
    w.file("back\\nslash", b"2");
    fs::write(w.data.join(std::ffi::OsStr::from_bytes(b"n\xe9w")), b"3").unwrap();
    let run = w
        .backup(&[
            "--output-format",
            "json-lines",
            "--testing-fail-matching",
            "line|n.w|slash",
        ])
        .fails();
    let lines = stream(&run);
    let data = w.data.to_str().unwrap();
    let mut errors: Vec<(String, Option<Value>)> = lines
        .iter()
        .filter(|v| v["type"] == "error")
        .map(|v| {
            let path = v["path"].as_str().unwrap();
            (
                path.strip_prefix(data).unwrap().to_string(),
                v.get("path_bytes").cloned(),
            )
        })
        .collect();
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    let latin1: Vec<u8> = [data.as_bytes(), b"/n\xe9w"].concat();
    assert_eq!(
        errors,
        [
            ("/back\\nslash".to_string(), None),
            ("/n\\xe9w".to_string(), Some(serde_json::json!(latin1))),
            ("/new\nline".to_string(), None),
        ]
    );
    let (_, summary) = split(&lines);
    assert_eq!(summary["roots"], serde_json::json!([data]), "{summary}");
    assert!(summary.get("roots_bytes").is_none(), "{summary}");
    // A root that is not UTF-8 has its bytes too.
    let odd = w.data.join(std::ffi::OsStr::from_bytes(b"r\xff"));
    fs::create_dir(&odd).unwrap();
    let run = obnam_test_support::run(
        w.env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "backup", "--output-format", "json"])
            .arg(&odd),
    )
    .ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v["roots"],
        serde_json::json!([format!("{data}/r\\xff")]),
        "{v}"
    );
    assert_eq!(
        v["roots_bytes"],
        serde_json::json!([odd.as_os_str().as_bytes()]),
        "{v}"
    );
}
