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
