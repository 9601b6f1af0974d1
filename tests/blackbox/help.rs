//! What `--help` shows: `obnam --help` is the overview (subcommands and the
//! settings every subcommand shares); `obnam SUBCOMMAND --help` adds the
//! settings that belong to that subcommand and leaves out the others'.
//! Every setting is still accepted with any subcommand.

use obnam_test_support::TestEnv;

/// The long options a help text lists, in order (`--name`, from lines such
/// as `  -r, --repository <URL>  ...` or `      --to <DIR>  ...`).
fn options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| {
            // Option lines are indented by 2 (`  -r, --repository`) or 6
            // (`      --to`); wrapped help text further.
            let name = match line.strip_prefix("  ")?.strip_prefix("    ") {
                Some(long) => long.strip_prefix("--")?,
                None => {
                    let short = line.strip_prefix("  -")?;
                    short.get(1..)?.strip_prefix(", --")?
                }
            };
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_string())
        })
        .collect()
}

fn help_of(env: &TestEnv, args: &[&str]) -> Vec<String> {
    let run = env.run(args).ok();
    assert_eq!(run.stderr, "", "{run:#?}");
    options(&run.stdout)
}

fn assert_lists(listed: &[String], names: &[&str], what: &str) {
    for name in names {
        assert!(
            listed.iter().any(|o| o == name),
            "{what} should list --{name}: {listed:?}"
        );
    }
}

fn assert_omits(listed: &[String], names: &[&str], what: &str) {
    for name in names {
        assert!(
            !listed.iter().any(|o| o == name),
            "{what} should not list --{name}: {listed:?}"
        );
    }
}

#[test]
fn a_subcommands_help_lists_its_own_settings_and_the_shared_ones() {
    let env = TestEnv::new();
    let restore = help_of(&env, &["restore", "--help"]);
    assert_lists(
        &restore,
        &[
            "to",
            "generation",
            "restore-workers",
            "pretend",
            "repository",
            "client-name",
            "output-format",
            "passphrase-file",
            "config",
            "plugin-dir",
            "log",
        ],
        "restore --help",
    );
    assert_omits(
        &restore,
        &[
            "exclude",
            "exclude-from",
            "compress-with",
            "checkpoint",
            "keep",
            "verify-data",
            "all-clients",
            "encrypt",
            "new-key-file",
            "warn-age",
            "testing-weak-tokens",
        ],
        "restore --help",
    );
    // Its own settings come before the shared ones, not at the end.
    let at = |name: &str| restore.iter().position(|o| o == name).unwrap();
    assert!(at("to") < at("repository"), "{restore:?}");
    // `obnam help restore` says the same.
    assert_eq!(help_of(&env, &["help", "restore"]), restore);

    let backup = help_of(&env, &["backup", "--help"]);
    assert_lists(
        &backup,
        &[
            "root",
            "exclude",
            "include",
            "one-file-system",
            "compress-with",
            "deduplicate",
            "chunking",
            "checkpoint",
            "encrypt",
            "pack-size",
            "pretend",
            "repository",
        ],
        "backup --help",
    );
    assert_omits(
        &backup,
        &[
            "to",
            "generation",
            "keep",
            "verify-data",
            "warn-age",
            "mount-cache-size",
        ],
        "backup --help",
    );

    let forget = help_of(&env, &["forget", "--help"]);
    assert_lists(
        &forget,
        &[
            "keep",
            "prune",
            "repack-threshold",
            "all-clients",
            "pretend",
        ],
        "forget --help",
    );
    assert_omits(
        &forget,
        &["to", "exclude", "compress-with"],
        "forget --help",
    );

    let key = help_of(&env, &["key", "--help"]);
    assert_lists(
        &key,
        &[
            "new-passphrase-file",
            "new-key-file",
            "key-label",
            "kdf-memory",
        ],
        "key --help",
    );
    assert_omits(&key, &["encrypt", "to", "exclude"], "key --help");

    // The settings of verify are backup's view of the file system.
    let verify = help_of(&env, &["verify", "--help"]);
    assert_lists(
        &verify,
        &["root", "exclude", "generation", "verify-randomly"],
        "verify --help",
    );
    assert_omits(&verify, &["to", "compress-with"], "verify --help");
}

#[test]
fn the_overview_lists_subcommands_and_shared_settings_only() {
    let env = TestEnv::new();
    let run = env.run(["--help"]).ok();
    let top = options(&run.stdout);
    assert_lists(
        &top,
        &["repository", "client-name", "quiet", "output-format", "log"],
        "obnam --help",
    );
    assert_omits(
        &top,
        &["to", "exclude", "keep", "compress-with", "verify-data"],
        "obnam --help",
    );
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    assert!(
        words.join(" ").contains("'obnam SUBCOMMAND --help' shows"),
        "{}",
        run.stdout
    );
    let commands = run.stdout.find("Commands:").expect("Commands heading");
    let settings = run.stdout.find("--repository").expect("--repository");
    assert!(
        commands < settings,
        "subcommands come first:\n{}",
        run.stdout
    );
    // Far shorter than every setting of every plugin.
    let manual = env.run(["manpage"]).ok().stdout;
    for name in ["--to", "--exclude", "--keep", "--verify-data"] {
        let roff = name.replace('-', "\\-");
        assert!(
            manual.contains(&roff),
            "the manual page lists every setting: {name} missing"
        );
    }
}

#[test]
fn settings_of_another_subcommand_are_still_accepted_anywhere() {
    let env = TestEnv::new();
    for args in [
        vec![
            "restore",
            "--exclude",
            "x",
            "--to",
            "/restored",
            "--dump-config",
        ],
        vec![
            "--exclude",
            "x",
            "--to",
            "/restored",
            "restore",
            "--dump-config",
        ],
        vec![
            "--to",
            "/restored",
            "restore",
            "--exclude",
            "x",
            "--dump-config",
        ],
    ] {
        let run = env.run(&args).ok();
        let config = run.stdout;
        assert!(
            config.lines().any(|l| l == "to = /restored"),
            "{args:?}:\n{config}"
        );
        assert!(
            config.lines().any(|l| l == "exclude = x"),
            "{args:?}:\n{config}"
        );
    }
}

#[test]
fn a_plugin_that_names_no_subcommands_has_its_settings_under_every_one() {
    let env = TestEnv::new();
    // alpha declares its settings without subcommands (as plugins built
    // against plugin-api before 0.1.5 do); beta names some for its one.
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let with_plugins = |args: &[&str]| {
        let mut all = vec!["--plugin-dir", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        env.run(all).ok()
    };
    let help = |args: &[&str]| options(&with_plugins(args).stdout);
    for args in [
        &["--help"][..],
        &["restore", "--help"],
        &["alpha-show", "--help"],
    ] {
        assert_lists(
            &help(args),
            &["alpha-string", "alpha-bool"],
            &format!("{args:?}"),
        );
    }
    assert_lists(
        &help(&["alpha-show", "--help"]),
        &["beta-note"],
        "alpha-show",
    );
    assert_lists(&help(&["backup", "--help"]), &["beta-note"], "backup");
    assert_omits(&help(&["restore", "--help"]), &["beta-note"], "restore");
    assert_omits(&help(&["--help"]), &["beta-note"], "obnam --help");
    // And the value reaches the plugin whichever side of the subcommand it is on.
    for args in [
        ["--beta-note", "hi", "restore", "--dump-config"],
        ["restore", "--beta-note", "hi", "--dump-config"],
    ] {
        let run = with_plugins(&args);
        assert!(
            run.stdout.lines().any(|l| l == "beta-note = hi"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn typos_suggest_the_nearest_name() {
    let env = TestEnv::new();
    let run = env.run(["restore", "--too", "/x"]).fails().no_rust_panic();
    assert!(run.stderr.contains("'--to'"), "{run:#?}");
    let run = env.run(["bakup"]).fails().no_rust_panic();
    assert!(run.stderr.contains("'backup'"), "{run:#?}");
    let run = env.run(["backup", "--exclud", "x"]).fails().no_rust_panic();
    assert!(run.stderr.contains("'--exclude'"), "{run:#?}");
    // A name nothing resembles may be a plugin that is not loaded.
    let run = env
        .run(["backup", "--skip-media", "/x"])
        .fails()
        .no_rust_panic();
    assert!(run.stderr.contains("--skip-media"), "{run:#?}");
    assert!(run.stderr.contains("--plugin-dir"), "{run:#?}");
}

/// `--version` and `-V` print the version, before or after a subcommand
/// (`obnam backup --version` was an unknown setting, with a tip for
/// `--s3-region`).
#[test]
fn the_version_is_printed_by_either_spelling_anywhere() {
    let env = obnam_test_support::TestEnv::new();
    let want = env.run(["--version"]).ok().stdout;
    assert!(
        want.starts_with("obnam ") && want.contains(" (plugin-api "),
        "{want}"
    );
    for args in [
        &["--version"][..],
        &["-V"],
        &["backup", "--version"],
        &["restore", "-V"],
    ] {
        let run = env.run(args.iter().copied()).ok();
        assert_eq!(run.stdout, want, "{args:?}");
    }
}

/// Help and the version that cannot be written (standard output on a
/// full disk) fail as every command's output that cannot be written does:
/// they exited 0, and a packager's `obnam --help > doc.txt` made an empty
/// file as if all were well.
#[test]
fn help_and_version_that_cannot_be_written_fail() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let env = TestEnv::new();
    for args in [
        &["--help"][..],
        &["help", "backup"],
        &["backup", "--help"],
        &["--version"],
        &["help", "--help"],
    ] {
        let run = obnam_test_support::run(
            env.obnam()
                .args(args)
                .stdout(std::fs::File::create("/dev/full").unwrap()),
        );
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert_eq!(
            run.stderr,
            "ERROR: cannot write to standard output: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
}

/// `help` given more than a subcommand says that it takes one, rather
/// than that no loaded plugin provides the next word (`help backup
/// restore` said that of `restore`, which is loaded).
#[test]
fn help_with_more_than_a_subcommand_says_it_takes_one() {
    let env = TestEnv::new();
    for args in [&["help", "backup", "restore"][..], &["help", "key", "list"]] {
        let run = env.run(args).fails();
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(
            run.stderr.contains(
                "'obnam help' takes one subcommand: 'obnam help SUBCOMMAND', or 'obnam \
                 SUBCOMMAND --help'."
            ) && !run.stderr.contains("No loaded plugin"),
            "{args:?}: {run:#?}"
        );
    }
    // A subcommand no plugin provides is still said to be so.
    let run = env.run(["help", "frobnicate"]).fails();
    assert!(
        run.stderr
            .contains("No loaded plugin provides this subcommand"),
        "{run:#?}"
    );
}

/// `completions` and `manpage` depend on the loaded plugins alone: a bad
/// config file or variable they do not read does not stop them (a
/// packaging step's `obnam completions bash` failed on a broken
/// `/etc/obnam.conf`), while a command that reads settings still fails.
#[test]
fn completions_and_manpage_do_not_read_the_settings() {
    let env = TestEnv::new();
    let conf = env.write("broken.conf", "[config]\nlock-timeout = soon\n");
    for args in [&["completions", "bash"][..], &["manpage"]] {
        let mut cmd = env.obnam();
        cmd.arg("--config")
            .arg(&conf)
            .args(args)
            .env("OBNAM_LOG_LEVEL", "loud");
        let run = obnam_test_support::run(&mut cmd).ok();
        assert!(
            !run.stdout.is_empty() && run.stderr.is_empty(),
            "{args:?}: {run:#?}"
        );
    }
    let mut cmd = env.obnam();
    cmd.arg("--config").arg(&conf).arg("plugins");
    let run = obnam_test_support::run(&mut cmd).fails();
    assert!(run.stderr.contains("'soon' is not an integer"), "{run:#?}");
}

/// An unknown option before any subcommand shows the program's usage,
/// not one made of the options that happened to be given (`Usage: obnam
/// --repository <URL> --client-name <NAME>` read as if that were all);
/// after a subcommand, that subcommand's.
#[test]
fn the_usage_of_an_error_is_the_programs_or_the_subcommands() {
    let env = TestEnv::new();
    let run = env
        .run([
            "--repository",
            "/tmp/r",
            "--client-name",
            "c",
            "--frobnicate",
            "genids",
        ])
        .fails();
    assert!(
        run.stderr
            .contains("\nUsage: obnam [OPTIONS] [SUBCOMMAND]\n"),
        "{run:#?}"
    );
    let run = env.run(["genids", "--frobnicate"]).fails();
    assert!(
        run.stderr.contains("\nUsage: obnam genids [OPTIONS]"),
        "{run:#?}"
    );
}
