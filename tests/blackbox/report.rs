//! The `report` plugin: `stats` against what the repository holds, and
//! `nagios-last-backup-age` at every age boundary, with a faked clock.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::inspect::World;

/// Bytes that do not compress or deduplicate with other seeds.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `ns` since 1970 as RFC 3339 text, by `date`.
fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    format!(
        "{}.{nanos:09}Z",
        String::from_utf8(out.stdout).unwrap().trim()
    )
}

const DAY: i128 = 86_400_000_000_000;

fn nagios(w: &World, now: &str, extra: &[&str]) -> (i32, String) {
    // The defaults of this test, unless `extra` sets them.
    let mut args = vec!["nagios-last-backup-age"];
    for (setting, value) in [
        ("--warn-age", "1d"),
        ("--critical-age", "3d"),
        ("--testing-now", now),
    ] {
        if !extra.iter().any(|e| e.starts_with(setting)) {
            args.extend([setting, value]);
        }
    }
    args.extend_from_slice(extra);
    let run = w.obnam(&args);
    assert_eq!(run.stdout.lines().count(), 1, "one status line: {run:#?}");
    (run.code, run.stdout)
}

#[test]
fn nagios_exit_codes_at_each_age_boundary() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), "x").unwrap();

    // No backup at all: critical.
    let (code, line) = nagios(&w, "2026-01-10T00:00:00Z", &[]);
    // The repository does not exist yet: the check cannot be made.
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("OBNAM UNKNOWN: "), "{line}");
    w.obnam_as("someone-else", &[OsStr::new("backup"), data.as_os_str()])
        .ok();
    let (code, line) = nagios(&w, "2026-01-10T00:00:00Z", &[]);
    assert_eq!(code, 2, "{line}");
    // In JSON, the state, the code and the same line.
    let (json_code, json) = nagios(&w, "2026-01-10T00:00:00Z", &["--output-format=json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json_code, 2);
    assert_eq!(v["state"], "CRITICAL", "{v}");
    assert_eq!(v["exit_code"], 2, "{v}");
    assert_eq!(format!("{}\n", v["line"].as_str().unwrap()), line);
    assert!(
        line.starts_with("OBNAM CRITICAL: client inspector has no complete backup"),
        "{line}"
    );

    w.obnam(&[
        OsStr::new("backup"),
        OsStr::new("--testing-generation-time"),
        OsStr::new("2026-01-05T10:00:00Z"),
        data.as_os_str(),
    ])
    .ok();
    let gens = w.json(&["generations"]);
    let ended = i128::from(gens[0]["ended_ns"].as_i64().unwrap());
    // Ended a little in the future (clocks that differ by a little): just
    // made. More than 5 minutes ahead: a warning that the clocks disagree.
    for (age, code, start) in [
        (
            -299_000_000_000,
            0,
            "OBNAM OK: latest backup of inspector is 0s old",
        ),
        (
            -301_000_000_000,
            1,
            "OBNAM WARNING: latest backup of inspector ended 5m 1s in the future",
        ),
        (
            -DAY,
            1,
            "OBNAM WARNING: latest backup of inspector ended 1d in the future",
        ),
    ] {
        let (got, line) = nagios(&w, &rfc3339(ended + age), &[]);
        assert_eq!(got, code, "age {age} ns: {line}");
        assert!(line.starts_with(start), "{line}");
        assert!(line.contains("clocks") == (code == 1), "{line}");
    }
    for (age, code, word) in [
        (0, 0, "OK"),
        (DAY, 0, "OK"),
        (DAY + 1, 1, "WARNING"),
        (3 * DAY, 1, "WARNING"),
        (3 * DAY + 1, 2, "CRITICAL"),
        (400 * DAY, 2, "CRITICAL"),
    ] {
        let (got, line) = nagios(&w, &rfc3339(ended + age), &[]);
        assert_eq!(got, code, "age {age} ns: {line}");
        assert!(
            line.starts_with(&format!("OBNAM {word}: latest backup of inspector is ")),
            "{line}"
        );
        assert!(line.contains(gens[0]["id"].as_str().unwrap()), "{line}");
        // The performance data agree with the state: an age over the
        // limit shows as over it (a nanosecond over a day is 86401 s).
        let shown: i128 = line
            .split("|age=")
            .nth(1)
            .and_then(|p| p.split('s').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(shown, (age + 999_999_999) / 1_000_000_000, "{line}");
    }

    // Bad settings: UNKNOWN, naming what was wrong.
    let now = rfc3339(ended);
    for (extra, says) in [
        (vec!["--warn-age", "3x"], "unknown unit 'x'"),
        (vec!["--critical-age=-1d"], "--critical-age: '-1d'"),
        (vec!["--warn-age", "4d"], "less than --warn-age"),
        (vec!["--testing-now", "yesterday"], "is not a time"),
    ] {
        let (code, line) = nagios(&w, &now, &extra);
        assert_eq!(code, 3, "{extra:?}: {line}");
        assert!(
            line.starts_with("OBNAM UNKNOWN: ") && line.contains(says),
            "{extra:?}: {line}"
        );
    }
}

#[test]
fn nagios_ignores_checkpoints_of_unfinished_runs() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("first"), "x").unwrap();
    w.obnam(&[
        OsStr::new("backup"),
        OsStr::new("--testing-generation-time"),
        OsStr::new("2026-01-01T00:00:00Z"),
        data.as_os_str(),
    ])
    .ok();
    for i in 0..12 {
        fs::write(data.join(format!("f{i:02}")), noise(500_000, i)).unwrap();
    }
    // Crash later and later until a checkpoint stands after it.
    let mut limit = 4;
    loop {
        let run = w.obnam(&[
            OsStr::new("backup"),
            OsStr::new("--testing-generation-time"),
            OsStr::new("2026-01-09T00:00:00Z"),
            OsStr::new("--checkpoint"),
            OsStr::new("1MiB"),
            OsStr::new("--crash-limit"),
            OsStr::new(&limit.to_string()),
            data.as_os_str(),
        ]);
        assert_ne!(run.code, 0, "the run was to crash: {run:#?}");
        let gens = w.json(&["generations"]);
        if gens
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["is_checkpoint"] == true)
        {
            break;
        }
        limit += 4;
        assert!(limit < 400, "no checkpoint was ever committed");
    }
    // A day after the checkpoint, but eight after the complete backup.
    let (code, line) = nagios(&w, "2026-01-10T00:00:01Z", &[]);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("OBNAM CRITICAL: "), "{line}");
}

fn stats(w: &World) -> Value {
    w.json(&["stats"])
}

fn client<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no client {name} in {s:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn folder_bytes(dir: &Path) -> u64 {
    let mut all = Vec::new();
    obnam_test_support::awkward::collect(dir, &mut all);
    all.iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn stats_agree_with_what_was_backed_up_and_what_prune_frees() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("shared"), noise(3_000_000, 1)).unwrap();
    fs::write(data.join("zeros"), vec![0u8; 2_000_000]).unwrap();
    let backup = |client: &str| {
        w.obnam_as(client, &[OsStr::new("backup"), data.as_os_str()])
            .ok();
    };
    backup("alice");
    // Bob backs up the same data: it costs him what it costs Alice, and
    // the repository nothing more.
    backup("bob");
    fs::write(data.join("alice-only"), noise(1_000_000, 2)).unwrap();
    backup("alice");

    let s = stats(&w);
    assert_eq!(u(&s["generations"]), 3);
    let (a, b) = (client(&s, "alice"), client(&s, "bob"));
    assert_eq!(u(&a["generations"]), 2);
    assert_eq!(u(&b["generations"]), 1);
    assert_eq!(u(&a["latest_files"]), 3);
    assert_eq!(u(&a["latest_bytes"]), 6_000_000);
    assert_eq!(u(&a["logical_bytes"]), 5_000_000 + 6_000_000);
    assert_eq!(u(&b["logical_bytes"]), 5_000_000);
    assert_eq!(u(&s["logical_bytes"]), 16_000_000);
    // Noise does not compress: stored within a few percent of it; the
    // zeros cost almost nothing.
    let (a_stored, b_stored) = (u(&a["stored_bytes"]), u(&b["stored_bytes"]));
    assert!((4_000_000..4_300_000).contains(&a_stored), "{s:#}");
    assert!((3_000_000..3_200_000).contains(&b_stored), "{s:#}");
    // Bob's data is all shared with Alice; only directories above the
    // backed-up one (such as /tmp, whose time others change) may differ.
    let used = u(&s["used_bytes"]);
    assert!((a_stored..a_stored + 20_000).contains(&used), "{s:#}");
    assert_eq!(u(&s["unused_bytes"]), 0, "{s:#}");
    assert_eq!(u(&s["pack_bytes"]), u(&s["used_bytes"]));
    assert!(u(&s["pack_bytes"]) <= folder_bytes(&w.repo.join("packs")));
    assert!(s["dedup_ratio"].as_f64().unwrap() > 3.5, "{s:#}");

    // Alice forgets her latest: its own data is now unused...
    let latest = w
        .obnam_as("alice", &["genids"])
        .ok()
        .stdout
        .lines()
        .last()
        .unwrap()
        .to_string();
    w.obnam_as("alice", &["forget", latest.as_str()]).ok();
    let s = stats(&w);
    let unused = u(&s["unused_bytes"]);
    assert!((1_000_000..1_100_000).contains(&unused), "{s:#}");
    assert_eq!(u(&s["used_bytes"]) + unused, u(&s["pack_bytes"]));
    // ... and a prune that rewrites every partly used pack gives it back.
    w.obnam(&["prune", "--repack-threshold", "0"]).ok();
    let s = stats(&w);
    assert_eq!(u(&s["unused_bytes"]), 0, "{s:#}");
    assert_eq!(u(&s["unused_packs"]), 0, "{s:#}");
    assert_eq!(u(&s["partly_used_packs"]), 0, "{s:#}");

    // Text: every client, and the figures people look for.
    let text = w.obnam(&["stats"]).ok().stdout;
    for needle in [
        "2 clients, 2 generations",
        "client alice: 1 generation",
        "client bob: 1 generation",
        "dedup and compression:",
        "unused:",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let run = w.obnam(&["stats", "extra"]).fails();
    assert!(run.stderr.contains("takes no arguments"), "{run:#?}");
}

/// Whatever stops the check before it runs is UNKNOWN to Nagios too, with
/// its status line: a bad config file, setting or environment variable,
/// a missing plugin folder, a usage error (each exited 1, WARNING, or 2,
/// CRITICAL, with nothing on standard output). Other commands keep the
/// host's exit codes.
#[test]
fn nagios_says_unknown_whatever_stops_the_check() {
    let w = World::new();
    let data = w.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), "x").unwrap();
    w.backup(&data);
    let bad_config = w.path().join("bad.conf");
    fs::write(&bad_config, "[config]\nbogus = 1\n").unwrap();
    let missing = w.path().join("no-such-folder");
    /// Arguments after the subcommand, an environment variable, and what
    /// the error says.
    type Case<'a> = (Vec<&'a OsStr>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--config".as_ref(), bad_config.as_os_str()],
            None,
            "unknown setting 'bogus'",
        ),
        (
            vec!["--lock-timeout".as_ref(), "soon".as_ref()],
            None,
            "'soon' is not an integer",
        ),
        (
            vec!["--plugin-dir".as_ref(), missing.as_os_str()],
            None,
            "does not exist",
        ),
        (vec!["--no-such-option".as_ref()], None, "--no-such-option"),
        (
            vec![],
            Some(("OBNAM_LOCK_TIMEOUT", "abc")),
            "OBNAM_LOCK_TIMEOUT: 'abc' is not an integer",
        ),
    ];
    for (extra, env, says) in cases {
        // `subcommand` with the case's arguments and environment.
        let run_case = |subcommand: &str| {
            let mut args: Vec<&OsStr> = vec![subcommand.as_ref()];
            args.extend(&extra);
            let mut cmd = w.command(&args);
            if let Some((name, value)) = env {
                cmd.env(name, value);
            }
            obnam_test_support::run(&mut cmd).no_rust_panic()
        };
        let run = run_case("nagios-last-backup-age");
        assert_eq!(run.code, 3, "{extra:?}: {run:#?}");
        assert!(
            run.stdout.starts_with("OBNAM UNKNOWN: ")
                && run.stdout.contains(says)
                && run.stdout.lines().count() == 1,
            "{extra:?}: {run:#?}"
        );
        assert!(run.stderr.contains(says), "{extra:?}: {run:#?}");
        // Another command fails as the host says.
        let other = run_case("generations");
        assert!(matches!(other.code, 1 | 2), "{extra:?}: {other:#?}");
        assert!(other.stdout.is_empty(), "{extra:?}: {other:#?}");
    }
}
