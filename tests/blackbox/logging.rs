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
