//! A plugin's `tracing` events reach the host's log file, filtered by
//! `--log-level`, and its warnings reach the user.

use std::fs;

use obnam_test_support::TestEnv;

#[test]
fn plugin_events_reach_the_log_file_at_the_chosen_level() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let log = env.path().join("obnam.log");
    let run = env
        .run_with(
            &dir,
            [
                "--log".as_ref(),
                log.as_os_str(),
                "--log-level=info".as_ref(),
                "alpha-log".as_ref(),
            ],
        )
        .ok();
    assert_eq!(run.stdout, "logged\n");
    // Warnings and errors are shown to the user as well.
    assert_eq!(
        run.stderr,
        "ERROR: alpha error event code=1\nWARNING: alpha warn event\n"
    );
    let text = fs::read_to_string(&log).unwrap();
    for wanted in ["alpha error event", "alpha warn event", "alpha info event"] {
        let line = text
            .lines()
            .find(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("'{wanted}' not in log:\n{text}"));
        assert!(line.contains("obnam::plugin"), "{line}");
        assert!(line.contains("plugin=\"alpha\""), "{line}");
    }
    assert!(text.contains("code=1"), "event fields are kept:\n{text}");
    assert!(!text.contains("alpha debug event"), "{text}");
    assert!(!text.contains("alpha trace event"), "{text}");
    let mode = fs::metadata(&log).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn debug_level_lets_debug_events_through() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let log = env.path().join("debug.log");
    env.run_with(
        &dir,
        [
            "--log".as_ref(),
            log.as_os_str(),
            "--log-level=debug".as_ref(),
            "alpha-log".as_ref(),
        ],
    )
    .ok();
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("alpha debug event"), "{text}");
    assert!(!text.contains("alpha trace event"), "{text}");
}

#[test]
fn quiet_hides_warnings_but_the_log_keeps_them() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let log = env.path().join("quiet.log");
    let run = env
        .run_with(
            &dir,
            [
                "--quiet".as_ref(),
                "--log".as_ref(),
                log.as_os_str(),
                "alpha-log".as_ref(),
            ],
        )
        .ok();
    assert_eq!(run.stderr, "");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("alpha warn event"), "{text}");
}

#[test]
fn loader_warnings_from_before_the_log_was_opened_are_written_to_it() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    fs::write(dir.join("junk.so"), "junk").unwrap();
    let log = env.path().join("early.log");
    env.run_with(
        &dir,
        ["--log".as_ref(), log.as_os_str(), "plugins".as_ref()],
    )
    .ok();
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("junk.so: not a shared library"), "{text}");
}

/// The warnings of loading plugins come before the settings can be read
/// (the plugins register them), so they wait for `quiet` from a config
/// file too; a run that ends before its settings are read still shows
/// them.
#[test]
fn quiet_in_a_config_file_silences_the_warnings_of_loading_too() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    fs::write(dir.join("junk.so"), "junk").unwrap();
    let conf = env.write("quiet.conf", "[config]\nquiet = yes\n");
    let with_conf = |extra: &[&str]| {
        let mut args = vec![std::ffi::OsStr::new("--config"), conf.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        env.run_with(&dir, args)
    };
    let run = with_conf(&["plugins"]).ok();
    assert_eq!(run.stderr, "", "{run:#?}");
    // The command line wins over the file.
    let run = with_conf(&["--no-quiet", "plugins"]).ok();
    assert!(
        run.stderr.contains("junk.so: not a shared library"),
        "{run:#?}"
    );
    // Without the file, the warning shows, also when the run stops before
    // any setting is read (a mistyped subcommand).
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert!(
        run.stderr.contains("junk.so: not a shared library"),
        "{run:#?}"
    );
    let run = env.run_with(&dir, ["plugnis"]);
    assert_eq!(run.code, 2, "{run:#?}");
    let warning = run.stderr.find("junk.so: not a shared library");
    let error = run.stderr.find("ERROR:");
    assert!(
        warning.is_some() && warning < error,
        "the warning, then the error: {run:#?}"
    );
}

/// A log file is not written through another user's symbolic link, nor
/// into a FIFO: a link planted where a log goes (in `/tmp`) had a run, as
/// root too, append to whatever it named, and a FIFO blocked it. Each is
/// refused, naming the log file; nothing is written where the link
/// leads. A device (`/dev/null`) is a log file as any other.
#[test]
fn a_log_is_not_written_through_anothers_link_or_into_a_fifo() {
    let env = TestEnv::new();
    let victim = env.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let fifo = env.path().join("fifo.log");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut cases = vec![(
        fifo.clone(),
        "it is a FIFO, a socket or a folder, not a file".to_string(),
    )];
    if obnam_test_support::running_as_root() {
        use std::os::unix::fs::PermissionsExt;
        let link = env.path().join("link.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(4242), Some(4242)).unwrap();
        cases.push((
            link,
            "it is a symbolic link of uid 4242, and a log file is not written through another \
             user's link"
                .to_string(),
        ));
        // The log's own folder is another user's: they could put their
        // link in place of the log, or read it.
        let theirs = env.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        cases.push((
            theirs.join("x.log"),
            format!("{} on the way belongs to uid 4242", theirs.display()),
        ));
        // Another user's file, made ahead in a sticky folder (as /tmp
        // is) where root's cron job logs: they would read root's log.
        let sticky = env.path().join("sticky");
        fs::create_dir(&sticky).unwrap();
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
        let planted = sticky.join("obnam.log");
        fs::write(&planted, "").unwrap();
        std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
        cases.push((
            planted.clone(),
            "it belongs to uid 4242, and root's log is not written into another user's file"
                .to_string(),
        ));
        // A new log there is root's own.
        let own = sticky.join("own.log");
        obnam_test_support::run(env.obnam().arg("--log").arg(&own).arg("clients"));
        assert!(fs::read_to_string(&own)
            .unwrap()
            .contains("ended with exit code"));
    }
    for (log, why) in cases {
        let run = obnam_test_support::run_with_deadline(
            env.obnam().arg("--log").arg(&log).arg("clients"),
            std::time::Duration::from_secs(60),
        )
        .fails();
        assert!(
            run.stderr
                .contains(&format!("cannot open log file {}: {why}", log.display())),
            "{run:#?}"
        );
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    let run = obnam_test_support::run_with_deadline(
        env.obnam().args(["--log", "/dev/null", "clients"]),
        std::time::Duration::from_secs(60),
    );
    assert!(!run.stderr.contains("cannot open log file"), "{run:#?}");
}

/// The log says how each run ended: the error that ended a failed one
/// (printed on standard error, and only there: a cron job's log of a
/// failed run read as a successful one's), and the exit code.
#[test]
fn the_log_says_how_the_run_ended() {
    let w = obnam_test_support::BackupWorld::new("c");
    w.file("a", b"data");
    let log = w.env.path().join("obnam.log");
    let log_arg = format!("--log={}", log.display());
    w.obnam(&[&log_arg, "backup", w.data.to_str().unwrap()])
        .ok();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.trim_end()
            .ends_with("INFO run: ended with exit code 0"),
        "{text}"
    );
    assert!(!text.contains("ERROR"), "{text}");

    fs::remove_file(&log).unwrap();
    let missing = w.env.path().join("nope");
    let run = w
        .obnam(&[&log_arg, "backup", missing.to_str().unwrap()])
        .fails();
    // Once on standard error, as before.
    assert_eq!(run.stderr.matches("ERROR: ").count(), 1, "{run:#?}");
    let said = run.stderr.trim_end().strip_prefix("ERROR: ").unwrap();
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[lines.len() - 2].ends_with(&format!("ERROR run: {said}")),
        "{text}"
    );
    assert!(
        lines[lines.len() - 1].ends_with("INFO run: ended with exit code 1"),
        "{text}"
    );
}

/// An empty log file name is refused as a bad value of `--log`, naming
/// where it came from (it was tried as a file: `cannot open log file :
/// No such file or directory`).
#[test]
fn an_empty_log_file_name_is_refused_naming_its_source() {
    let w = obnam_test_support::BackupWorld::new("c");
    let run = w.obnam(&["--log=", "genids"]).fails();
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(
        run.stderr,
        "ERROR: --log: the log file's name must not be empty\n"
    );
    let mut cmd = w.env.obnam();
    cmd.arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "c", "genids"])
        .env("OBNAM_LOG", "");
    let run = obnam_test_support::run(&mut cmd).fails();
    assert_eq!(
        run.stderr,
        "ERROR: setting 'log': environment variable OBNAM_LOG: the log file's name must not \
         be empty\n"
    );
}
