//! Small things at the edges of the command line: the help of `help`,
//! usage of `key`, a log file that cannot be written, a repository folder
//! that cannot be used.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use obnam_test_support::{run as run_obnam, BackupWorld};

#[test]
fn key_without_a_subcommand_says_what_to_give() {
    let w = BackupWorld::new("c");
    let run = w.obnam(&["key"]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("usage: obnam key list | add | remove ID | passwd (give one of them)"),
        "{run:#?}"
    );
}

#[test]
fn help_of_the_help_subcommand_is_printed() {
    let w = BackupWorld::new("c");
    let run = w.obnam(&["help", "--help"]).ok();
    assert!(run.stdout.contains("Usage: obnam help"), "{run:#?}");
}

#[test]
fn a_log_file_that_cannot_be_written_is_warned_about_once() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let w = BackupWorld::new("c");
    w.env.write("data/f", "x");
    let run = w
        .backup(&["--log", "/dev/full", "--log-level", "debug"])
        .ok();
    assert_eq!(
        run.stderr
            .matches("WARNING: cannot write to the log file /dev/full: ")
            .count(),
        1,
        "{run:#?}"
    );
}

#[test]
fn a_repository_folder_that_cannot_be_used_is_named_in_our_words() {
    let w = BackupWorld::new("c");
    let long_part = w.env.path().join("x".repeat(300)).join("repo");
    let missing_parent = w.env.path().join("new").join("x".repeat(300));
    let long_path = w
        .env
        .path()
        .join(std::iter::repeat_n("d", 2100).collect::<Vec<_>>().join("/"));
    for repo in [long_part, missing_parent, long_path] {
        let mut cmd = w.env.obnam();
        cmd.arg("--repository")
            .arg(&repo)
            .args(["--client-name", "c", "backup"])
            .arg(&w.data);
        let run = run_obnam(&mut cmd).fails().no_rust_panic();
        assert!(
            !run.stderr.contains("canonicalize") && !run.stderr.contains("root directory"),
            "{run:#?}"
        );
        assert!(run.stderr.contains("File name too long"), "{run:#?}");
    }
}

/// A standard error that cannot be written (a full disk, a reader gone
/// away) does not turn a run's failure into a panic: the run ends with
/// its own exit code (it was 101, a code obnam does not have).
#[test]
fn a_standard_error_that_cannot_be_written_keeps_the_exit_code() {
    let w = BackupWorld::new("c");
    w.file("a", b"a");
    w.backup(&[]).ok();
    let full = |args: &[&str]| {
        let status = w
            .env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create("/dev/full").unwrap())
            .status()
            .unwrap();
        status.code()
    };
    assert_eq!(full(&["ls", "/nonexistent"]), Some(1));
    assert_eq!(full(&["ls", "re:("]), Some(1));
    let data = w.data.to_str().unwrap();
    assert_eq!(
        full(&["backup", data, "--testing-fail-matching", "/a$"]),
        Some(1)
    );
    assert_eq!(full(&["nosuchcommand"]), Some(2));
    assert_eq!(full(&["generations"]), Some(0));
}

/// A backup whose summary cannot be written (standard output on a full
/// disk) has committed its generation all the same, and says so: it
/// failed with "cannot write to standard output", as if nothing had been
/// committed (and with a closed pipe, 141 without a word, the code of a
/// backup stopped half-way).
#[test]
fn a_backup_whose_summary_cannot_be_written_says_it_committed() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let w = BackupWorld::new("c");
    w.file("a", b"a");
    w.backup(&[]).ok();
    w.file("b", b"b");
    let run = run_obnam(
        w.env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "backup"])
            .arg(&w.data)
            .stdout(std::fs::File::create("/dev/full").unwrap()),
    )
    .fails()
    .no_rust_panic();
    let gens = w.obnam(&["genids"]).ok();
    let newest = gens.stdout.lines().last().unwrap().to_string();
    assert_eq!(gens.stdout.lines().count(), 2);
    assert!(
        run.stderr.contains(&format!(
            "ERROR: the backup was committed as generation {newest}, but its summary could not \
             be written: cannot write to standard output: No space left on device"
        )),
        "{run:#?}"
    );
    // Its reader gone before the summary (`obnam backup | true`): the
    // same, not 141 without a word, which says nothing was committed.
    w.file("c", b"c");
    // The command's reader gone before it writes anything.
    let with_stdout_closed = |args: &[&OsStr]| {
        let mut child = w
            .env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        obnam_test_support::Run::from_output(child.wait_with_output().unwrap())
    };
    let run = with_stdout_closed(&["backup".as_ref(), w.data.as_os_str()]);
    assert_eq!(run.code, 1, "{run:#?}");
    let gens = w.obnam(&["genids"]).ok();
    assert_eq!(gens.stdout.lines().count(), 3);
    let newest = gens.stdout.lines().last().unwrap();
    assert!(
        run.stderr.contains(&format!(
            "ERROR: the backup was committed as generation {newest}, but its summary could not \
             be written: standard output is closed"
        )),
        "{run:#?}"
    );
    // A restore likewise: what it restored stays, and it says so.
    let target = w.env.path().join("restored");
    let run = with_stdout_closed(&["restore".as_ref(), "--to".as_ref(), target.as_os_str()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains(
            "ERROR: the restore is done (3 files restored), but its summary could not be \
             written: standard output is closed"
        ),
        "{run:#?}"
    );
    let restored = obnam_test_support::awkward::restored(&target, &w.data);
    assert_eq!(fs::read(restored.join("c")).unwrap(), b"c");
}

/// Options before the subcommand name and after it make one command line
/// (a wrapper passes its own before the user's): a list's items on both
/// sides all count, the later of a boolean's `--NAME` and `--no-NAME`
/// wins wherever each is, and a single value given on both sides is
/// refused. Found by an outside review: `--root A backup --root B` backed
/// up B alone, and `--no-pretend forget --pretend --keep 1` removed
/// generations, exit 0.
#[test]
fn options_on_both_sides_of_the_subcommand_make_one_command_line() {
    let w = BackupWorld::new("c");
    let a = w.data.join("a");
    let b = w.data.join("b");
    let excluded = w.file("a/excluded", b"x");
    let left_out = w.file("b/left-out", b"y");
    w.file("a/kept", b"1");
    w.file("b/kept", b"2");
    let name = |p: &Path| p.to_str().unwrap().to_string();
    let run = run_obnam(
        w.env
            .obnam()
            .args(["--repository", &name(&w.repo), "--client-name", "c"])
            .args(["--root", &name(&a), "--exclude", "/excluded$"])
            .arg("backup")
            .args(["--root", &name(&b), "--exclude", "/left-out$"]),
    )
    .ok();
    let listed = w.obnam(&["ls"]).ok().stdout;
    assert!(
        listed.contains(&name(&a.join("kept")))
            && listed.contains(&name(&b.join("kept")))
            && !listed.contains(&name(&excluded))
            && !listed.contains(&name(&left_out)),
        "{run:#?}\n{listed}"
    );
    // Three more generations, then a forget that only pretends.
    for _ in 0..3 {
        w.backup(&[]).ok();
    }
    let before = w.obnam(&["genids"]).ok().stdout;
    assert_eq!(before.lines().count(), 4);
    for order in [
        ["--no-pretend", "forget", "--pretend"],
        ["--pretend", "forget", "--dry-run"],
    ] {
        let run = run_obnam(
            w.env
                .obnam()
                .args(["--repository", &name(&w.repo), "--client-name", "c"])
                .args(order)
                .args(["--keep", "1"]),
        )
        .ok();
        assert!(run.stdout.contains("would remove"), "{order:?}: {run:#?}");
        assert_eq!(w.obnam(&["genids"]).ok().stdout, before, "{order:?}");
    }
    let run = run_obnam(
        w.env
            .obnam()
            .args(["--repository", &name(&w.repo), "--client-name", "c"])
            .args(["--pretend", "forget", "--no-pretend", "--keep", "1"]),
    )
    .ok();
    assert!(!run.stdout.contains("would remove"), "{run:#?}");
    assert_eq!(w.obnam(&["genids"]).ok().stdout.lines().count(), 1);
    // A boolean's two spellings, any number of times on either side: the
    // last wins (a repeat on one side was refused, across it taken).
    for (args, quiet) in [
        (
            &["--quiet", "--no-quiet", "--quiet", "--dump-config"][..],
            "yes",
        ),
        (&["--quiet", "--quiet", "--dump-config"], "yes"),
        (
            &["--quiet", "--no-quiet", "--no-quiet", "--dump-config"],
            "no",
        ),
        (
            &[
                "--no-quiet",
                "genids",
                "--quiet",
                "--no-quiet",
                "--quiet",
                "--dump-config",
            ],
            "yes",
        ),
        (
            &[
                "--quiet",
                "--quiet",
                "genids",
                "--no-quiet",
                "--dump-config",
            ],
            "no",
        ),
        // obnam's own flags too.
        (
            &[
                "--quiet",
                "--dump-config",
                "--dump-config",
                "--no-default-configs",
            ],
            "yes",
        ),
    ] {
        let run = w.env.run(["--no-default-configs"].iter().chain(args)).ok();
        assert!(
            run.stdout.contains(&format!("\nquiet = {quiet}\n")),
            "{args:?}: {run:#?}"
        );
    }
    // One value on each side: refused, nothing done.
    let run = run_obnam(
        w.env
            .obnam()
            .args(["--repository", &name(&w.repo), "--client-name", "c"])
            .args(["genids", "--client-name", "d"]),
    );
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr
            .contains("the argument '--client-name' cannot be used multiple times"),
        "{run:#?}"
    );
}

/// A value left out (an unset variable) must not make the next option the
/// value: `--key-file $EMPTY --encrypt` named the key file `--encrypt` and
/// made an unencrypted repository, exit 0. Written `--NAME=VALUE`, such a
/// value is taken; a value that starts with `-` but is no option is taken
/// either way.
#[test]
fn an_option_where_a_value_belongs_is_refused() {
    let w = BackupWorld::new("c");
    w.file("f", b"data");
    let run = w.backup(&["--key-file", "--encrypt"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains(
            "--key-file needs a value, but is followed by the option --encrypt: give the value \
             (one that is itself an option's name is written --key-file=--encrypt)"
        ),
        "{run:#?}"
    );
    assert!(!w.repo.exists(), "nothing was made");
    for args in [
        &["--exclude", "--one-file-system"][..],
        &["--log", "--verbose"],
        &["-r", "--client-name"],
        &["--exclude", "--no-quiet=yes"],
        &["--exclude", "--"],
    ] {
        let run = w.env.run(
            ["--no-default-configs"]
                .iter()
                .chain(args)
                .chain(&["--dump-config"]),
        );
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
    }
    let dumped = w
        .env
        .run([
            "--no-default-configs",
            "--exclude=--one-file-system",
            "--exclude",
            "-not-an-option",
            "--compress-level",
            "-5",
            "--dump-config",
        ])
        .ok()
        .stdout;
    assert!(
        dumped.contains("exclude = --one-file-system,-not-an-option")
            && dumped.contains("compress-level = -5"),
        "{dumped}"
    );
}

/// Other tools' short options (`-q`, `-v`) are answered with obnam's
/// long ones, not with a plugin that may be missing; a client name that
/// starts or ends with white space is refused (` lap` and `lap` were two
/// clients that every listing showed alike).
#[test]
fn short_options_and_padded_client_names_are_answered_plainly() {
    let w = BackupWorld::new("c");
    for short in ["-q", "-v"] {
        let run = w.env.run([short, "genids"]);
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(
            run.stderr
                .contains("obnam's settings are long options (--quiet, --verbose)")
                && !run.stderr.contains("No loaded plugin"),
            "{run:#?}"
        );
    }
    for name in [" lap", "lap ", "\tlap"] {
        let run = w.env.run(["--client-name", name, "--dump-config"]);
        assert_eq!(run.code, 2, "{name:?}: {run:#?}");
        assert!(
            run.stderr.contains("--client-name: a client name must not"),
            "{run:#?}"
        );
    }
}

/// A `~` the shell left in an option's value (`--name=~/x`, or quoted) is
/// the home folder, for settings and for `--config` and `--plugin-dir`:
/// `--repository=~/backup` made a folder named `~` in the current folder.
#[test]
fn a_tilde_the_shell_left_is_the_home_folder() {
    let w = BackupWorld::new("c");
    let home = w.env.home();
    std::fs::write(
        home.join("site.conf"),
        "[config]\nclient-name = from-home\n",
    )
    .unwrap();
    let run = w
        .env
        .run([
            "--no-default-configs",
            "--config=~/site.conf",
            "--repository=~/backup",
            "--dump-config",
        ])
        .ok();
    assert!(
        run.stdout.contains("client-name = from-home")
            && run
                .stdout
                .contains(&format!("repository = {}", home.join("backup").display())),
        "{run:#?}"
    );
    let data = w.file("f", b"x");
    w.env
        .run([
            "--repository=~/backup",
            "--client-name",
            "c",
            "backup",
            data.to_str().unwrap(),
        ])
        .ok();
    assert!(home.join("backup/config").exists());
    assert!(!w.env.path().join("~").exists(), "no folder named ~");
}

/// An S3 credential variable that is set but empty (a cron script's
/// `AWS_SECRET_ACCESS_KEY=$SECRET` with SECRET unset) is named: the
/// signer took it for an expired session ("refreshed signing credential
/// expires before the requested operation deadline"). No server is asked.
#[test]
fn an_empty_s3_credential_variable_is_named() {
    let env = obnam_test_support::TestEnv::new();
    for (id, secret, empty) in [
        ("x", "", "AWS_SECRET_ACCESS_KEY"),
        ("", "y", "AWS_ACCESS_KEY_ID"),
    ] {
        let run = run_obnam(
            env.obnam()
                .args(["--repository", "s3://bucket/x", "--client-name", "c"])
                .args(["--s3-endpoint", "http://127.0.0.1:9", "genids"])
                .env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret),
        )
        .fails();
        assert_eq!(
            run.stderr,
            format!(
                "ERROR: cannot use repository s3://bucket/x: {empty} is set but empty: give \
                 the S3 credentials in it\n"
            )
        );
    }
}

/// Small slips of the command line are named for what they are: `diff`
/// given a PATH as ls takes one (it said that the PATH is no generation),
/// `forget latest` (it said the client has no generation 'latest'); and
/// a relative `restore --to` is reported absolute in JSON, as every other
/// path there is.
#[test]
fn small_command_line_slips_are_named() {
    let w = BackupWorld::new("c");
    w.file("a", b"1");
    w.backup(&[]).ok();
    w.file("a", b"2");
    w.backup(&[]).ok();
    let ids: Vec<String> = w
        .obnam(&["genids"])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    let data = w.data.to_str().unwrap();
    let run = w.obnam(&["diff", &ids[0], &ids[1], data]).fails();
    assert!(
        run.stderr.contains(
            "diff takes at most two generations, got 3 arguments (it compares whole \
             generations; it takes no PATH)"
        ),
        "{run:#?}"
    );
    let run = w.obnam(&["diff", data]).fails();
    assert!(
        run.stderr.contains(&format!(
            "diff compares whole generations and takes no PATH ('{data}')"
        )),
        "{run:#?}"
    );
    let run = w.obnam(&["forget", "latest"]).fails();
    assert!(
        run.stderr
            .contains("forget takes generation ids, not 'latest'"),
        "{run:#?}"
    );
    assert_eq!(w.obnam(&["genids"]).ok().stdout.lines().count(), 2);
    let run = run_obnam(
        w.env
            .obnam()
            .current_dir(w.env.path())
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "--output-format", "json"])
            .args(["restore", "--to", "relative-target"]),
    )
    .ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["to"],
        w.env.path().join("relative-target").to_str().unwrap()
    );
}
