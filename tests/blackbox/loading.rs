//! Finding plugins: bundled, `--plugin-dir`, `OBNAM_PLUGIN_DIR`, overrides,
//! and what `--help` and `obnam plugins` show.

use obnam_test_support::{target_dir, TestEnv};

#[test]
fn help_without_plugins_lists_no_plugin_subcommands() {
    let env = TestEnv::new();
    let run = env.run(["--no-bundled-plugins", "--help"]).ok();
    assert_eq!(subcommands(&run.stdout), ["plugins", "help"]);
    let with_bundled = env.run(["--help"]).ok();
    let listed = subcommands(&with_bundled.stdout);
    assert!(
        listed.len() > 2,
        "bundled plugins add subcommands: {listed:?}"
    );
    let run = env.run(["--no-bundled-plugins", "plugins"]).ok();
    assert_eq!(run.stdout, "");
}

/// The subcommand names listed under "Commands:" in `--help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

#[test]
fn plugin_dir_adds_subcommands_and_grouped_settings_to_help() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let help = env.run_with(&dir, ["--help"]).ok().stdout;
    assert!(help.contains("alpha-show"), "{help}");
    // Settings are listed under their help group, after its heading.
    let heading = help.find("Alpha testing:").expect("group heading");
    for opt in [
        "--alpha-string",
        "--alpha-list",
        "--alpha-bool",
        "--no-alpha-bool",
        "--alpha-size",
    ] {
        let at = help
            .find(opt)
            .unwrap_or_else(|| panic!("{opt} missing:\n{help}"));
        assert!(at > heading, "{opt} not under its group:\n{help}");
    }
    assert!(help.contains("[default: 1GiB]"), "{help}");
    assert!(help.contains("one of: red, green, blue"), "{help}");
}

#[test]
fn plugins_lists_name_version_and_file() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env.run_with(&dir, ["plugins"]).ok();
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let alpha = dir.join("libobnam_testplugin_alpha.so");
    let beta = dir.join("libobnam_testplugin_beta.so");
    assert_eq!(
        lines,
        vec![
            vec!["alpha", "0.3.1", alpha.to_str().unwrap()],
            vec!["beta", "1.0.0", beta.to_str().unwrap()],
        ]
    );
    let run = env.run_with(&dir, ["--output-format=json", "plugins"]).ok();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json[0]["name"], "alpha");
    assert_eq!(json[0]["version"], "0.3.1");
    assert_eq!(json[1]["file"], beta.to_str().unwrap());
}

#[test]
fn plugin_copied_to_a_fresh_folder_runs_its_subcommand() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("fresh", &["gamma"]);
    let run = env.run_with(&dir, ["gamma-ok"]).ok();
    assert_eq!(run.stdout, "gamma ok\n");
}

#[test]
fn obnam_plugin_dir_environment_variable_is_colon_separated() {
    let env = TestEnv::new();
    let a = env.plugin_dir("a", &["alpha"]);
    let b = env.plugin_dir("b", &["gamma"]);
    let joined = format!("{}:{}", a.display(), b.display());
    let run = obnam_test_support::run(
        env.obnam()
            .env("OBNAM_PLUGIN_DIR", joined)
            .args(["--no-bundled-plugins", "plugins"]),
    )
    .ok();
    assert!(run.stdout.contains("alpha"), "{}", run.stdout);
    assert!(run.stdout.contains("gamma"), "{}", run.stdout);
}

#[test]
fn missing_plugin_dir_is_an_error() {
    let env = TestEnv::new();
    let run = env
        .run(["--plugin-dir", "/no/such/folder", "plugins"])
        .fails();
    assert!(
        run.stderr
            .contains("ERROR: plugin folder /no/such/folder (from --plugin-dir) does not exist"),
        "{}",
        run.stderr
    );
}

#[test]
fn later_folder_overrides_a_plugin_of_the_same_name() {
    let env = TestEnv::new();
    let first = env.plugin_dir("first", &["alpha"]);
    let second = env.plugin_dir("second", &["alpha"]);
    let run = env
        .run([
            "--no-bundled-plugins".as_ref(),
            "--plugin-dir".as_ref(),
            first.as_os_str(),
            "--plugin-dir".as_ref(),
            second.as_os_str(),
            "plugins".as_ref(),
        ])
        .ok();
    let winner = second.join("libobnam_testplugin_alpha.so");
    let loser = first.join("libobnam_testplugin_alpha.so");
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(winner.to_str().unwrap()),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "WARNING: plugin 'alpha' from {} overrides the one from {}",
            winner.display(),
            loser.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn bundled_plugins_are_found_next_to_the_binary() {
    let env = TestEnv::new();
    let bundled: Vec<String> = std::fs::read_dir(target_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libobnam_plugin_") && n.ends_with(".so"))
        .collect();
    assert!(!bundled.is_empty(), "no bundled plugins were built");
    let run = env.run(["plugins"]).ok();
    for file in &bundled {
        assert!(
            run.stdout.contains(file.as_str()),
            "{file} not listed:\n{}",
            run.stdout
        );
    }
    // Test plugins in the same folder are not bundled ones.
    assert!(!run.stdout.contains("testplugin"), "{}", run.stdout);
    assert_eq!(run.stderr, "");
}

#[test]
fn help_subcommand_shows_a_plugin_subcommand() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let run = env.run_with(&dir, ["help", "alpha-hook"]).ok();
    assert!(
        run.stdout.contains("call the alpha-event hook"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("obnam alpha-hook [OPTIONS] [WORD]"),
        "{}",
        run.stdout
    );
}
