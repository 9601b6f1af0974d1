//! Plugins that declare their registrations where they are defined
//! (`plugin_api::submit!`) instead of in a hand-written `enable`: the test
//! plugin "delta" declares a setting, hooks, a subcommand, callbacks and a
//! filter, and registers one subcommand by hand.

use std::fs;

use obnam_test_support::TestEnv;

#[test]
fn declared_subcommands_settings_hooks_and_callbacks_work() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["delta"]);
    let plugin_dir = dir.to_str().unwrap();
    // The early callback adds a word, the late one upper-cases them all,
    // whatever the order of the declarations in the source.
    let run = env
        .run(["--plugin-dir", plugin_dir, "delta-say", "a", "b"])
        .ok();
    assert_eq!(run.stdout, "[\"HELLO\",\"A\",\"B\",\"PLEASE\"]\n");
    assert_eq!(run.stderr, "");
    let run = env
        .run([
            "--plugin-dir",
            plugin_dir,
            "--delta-word",
            "yo",
            "delta-say",
        ])
        .ok();
    assert_eq!(run.stdout, "[\"YO\",\"PLEASE\"]\n");
    // The declared filter hook and filter, used by the subcommand that
    // was registered by hand.
    let run = env
        .run(["--plugin-dir", plugin_dir, "delta-filter", "Hello"])
        .ok();
    assert_eq!(run.stdout, "Uryyb delta-rot13 Hello\n");
    // The declared setting belongs to its subcommand's help only.
    let help = env
        .run(["--plugin-dir", plugin_dir, "delta-say", "--help"])
        .ok()
        .stdout;
    assert!(help.contains("--delta-word <WORD>"), "{help}");
    let help = env
        .run(["--plugin-dir", plugin_dir, "restore", "--help"])
        .ok()
        .stdout;
    assert!(!help.contains("--delta-word"), "{help}");
    let listed = env.run(["--plugin-dir", plugin_dir, "plugins"]).ok().stdout;
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["delta", "0.4.0"])),
        "{listed}"
    );
}

#[test]
fn a_declared_exclude_callback_takes_part_in_backups() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["delta"]);
    let data = env.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("keep"), "kept").unwrap();
    fs::write(data.join("sub/delta-skip"), "left out").unwrap();
    let repo = env.path().join("repo");
    let to = env.path().join("restored");
    let common = [
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--repository",
        repo.to_str().unwrap(),
        "--client-name",
        "c",
    ];
    let run = env
        .run(
            common
                .iter()
                .copied()
                .chain(["--verbose", "backup", data.to_str().unwrap()]),
        )
        .ok();
    assert!(
        run.stdout
            .contains("delta leaves out files called delta-skip")
            || run
                .stderr
                .contains("delta leaves out files called delta-skip"),
        "{run:#?}"
    );
    env.run(
        common
            .iter()
            .copied()
            .chain(["restore", "--to", to.to_str().unwrap()]),
    )
    .ok();
    let restored = to.join(data.strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(restored.join("keep")).unwrap(), "kept");
    assert!(restored.join("sub").is_dir());
    assert!(!restored.join("sub/delta-skip").exists());
}

#[test]
fn plugins_hear_of_an_interruption_before_the_process_ends() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["delta"]);
    for signal in ["INT", "TERM", "HUP"] {
        let note = env.path().join(format!("interrupted-{signal}"));
        let mut child = env
            .obnam()
            .arg("--plugin-dir")
            .arg(&dir)
            .arg("delta-wait")
            .env("DELTA_INTERRUPTED", &note)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its standard input stays open until it has ended: it must end
        // by the signal, not by the end of its input.
        let stdin = child.stdin.take();
        // Interrupt it once it is running its command.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "waiting\n");
        let killed = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal}")),
            "{:?} {stderr}",
            out.status
        );
        assert_ne!(out.status.code(), Some(0));
        let said: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&note).expect("the callback ran")).unwrap();
        assert_eq!(
            said,
            serde_json::json!({ "signal": format!("SIG{signal}") })
        );
    }
    // A run that is not interrupted does not call it.
    let note = env.path().join("not-interrupted");
    let mut cmd = env.obnam();
    cmd.arg("--plugin-dir")
        .arg(&dir)
        .arg("delta-wait")
        .env("DELTA_INTERRUPTED", &note)
        .stdin(Stdio::null());
    obnam_test_support::run(&mut cmd).ok();
    assert!(!note.exists());
}
