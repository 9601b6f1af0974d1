//! The install script puts `obnam` in PREFIX/bin and the bundled plugins in
//! PREFIX/lib/obnam/plugins, where the installed binary finds them, and
//! the manual page and shell completions under PREFIX/share, made with
//! those plugins. `obnam completions` and `obnam manpage` themselves.

use std::process::Command;

use obnam_test_support::{target_dir, workspace_dir, TestEnv};

#[test]
fn installed_obnam_finds_its_bundled_plugins() {
    let env = TestEnv::new();
    let prefix = env.path().join("prefix");
    let profile = target_dir();
    let out = Command::new(workspace_dir().join("install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--from")
        .arg(&profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugins_dir = prefix.join("lib/obnam/plugins");
    let installed: Vec<String> = std::fs::read_dir(&plugins_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!installed.is_empty());
    assert!(
        installed.iter().all(|n| n.starts_with("libobnam_plugin_")),
        "{installed:?}"
    );
    let run = obnam_test_support::run(
        Command::new(prefix.join("bin/obnam"))
            .env("HOME", env.home())
            .arg("plugins"),
    )
    .ok();
    assert_eq!(
        run.stdout.lines().count(),
        installed.len(),
        "{}",
        run.stdout
    );
    for name in &installed {
        let path = plugins_dir.join(name).canonicalize().unwrap();
        assert!(
            run.stdout.contains(path.to_str().unwrap()),
            "{name} not listed:\n{}",
            run.stdout
        );
    }
}

#[test]
fn install_adds_the_manual_page_and_completions_with_the_plugins_settings() {
    let env = TestEnv::new();
    let prefix = env.path().join("prefix");
    let out = Command::new(workspace_dir().join("install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--from")
        .arg(target_dir())
        .env("HOME", env.home())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |rel: &str| std::fs::read_to_string(prefix.join(rel)).unwrap();
    let man = read("share/man/man1/obnam.1");
    assert!(man.contains(".TH obnam 1"), "{man}");
    // A bundled plugin's setting and subcommand are in each.
    assert!(man.contains("restore\\-workers"), "{man}");
    for (file, needle) in [
        (
            "share/bash-completion/completions/obnam",
            "--restore-workers",
        ),
        ("share/zsh/site-functions/_obnam", "--restore-workers"),
        (
            "share/fish/vendor_completions.d/obnam.fish",
            "restore-workers",
        ),
    ] {
        let text = read(file);
        assert!(text.contains(needle), "{file}");
        assert!(text.contains("nagios-last-backup-age"), "{file}");
    }
    let bash = Command::new("bash")
        .arg("-n")
        .arg(prefix.join("share/bash-completion/completions/obnam"))
        .status()
        .unwrap();
    assert!(bash.success(), "the bash completions do not parse");
}

#[test]
fn completions_include_third_party_plugins_and_bad_shells_are_named() {
    let env = TestEnv::new();
    let plugins = env.plugin_dir("third", &["alpha"]);
    let run = env
        .run([
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "completions",
            "bash",
        ])
        .ok();
    assert!(
        run.stdout.contains("alpha-show"),
        "the test plugin's subcommand"
    );
    let run = env.run(["completions", "nosh"]).fails().no_rust_panic();
    assert!(run.stderr.contains("unknown shell 'nosh'"), "{run:#?}");
    let run = env.run(["completions"]).fails().no_rust_panic();
    assert!(run.stderr.contains("needs one SHELL"), "{run:#?}");
    let run = env.run(["manpage", "extra"]).fails().no_rust_panic();
    assert!(run.stderr.contains("takes no arguments"), "{run:#?}");
}

/// Ask the completion function bash loaded from `obnam completions bash`
/// what it offers after `words` (the last one being completed).
fn bash_completes(env: &TestEnv, words: &[&str]) -> Vec<String> {
    let script = env.run(["completions", "bash"]).ok().stdout;
    let file = env.write("obnam.bash", script);
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}'\n\
         complete -p obnam >&2 || exit 9\n\
         COMP_WORDS=({words_array}); COMP_CWORD={}\n\
         COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}\n\
         func=$(complete -p obnam | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n\
         \"$func\" obnam '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash did not load the completions: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("obnam"),
        "complete -p obnam: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn bash_loads_the_completions_and_completes_subcommands_and_settings() {
    let env = TestEnv::new();
    let offered = bash_completes(&env, &["obnam", "rest"]);
    assert_eq!(offered, ["restore"], "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "restore", "--t"]);
    assert!(offered.iter().any(|w| w == "--to"), "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "backup", "--exclude-"]);
    assert!(
        offered.iter().any(|w| w == "--exclude-caches"),
        "{offered:?}"
    );
}

/// Completions offer what `SUBCOMMAND --help` lists (a setting that names
/// its subcommands only under those), no development settings, and the
/// values of a setting with a fixed set of them, and of `completions`.
#[test]
fn completions_offer_values_and_each_subcommands_own_settings() {
    let env = TestEnv::new();
    let offered = bash_completes(&env, &["obnam", "--output-format", ""]);
    assert_eq!(offered, ["text", "json", "json-lines"], "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "backup", "--compress-with", ""]);
    assert!(offered.iter().any(|w| w == "zstd"), "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "completions", ""]);
    assert!(offered.iter().any(|w| w == "fish"), "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "forget", "--ke"]);
    assert!(offered.iter().any(|w| w == "--keep"), "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "ls", "--ke"]);
    assert!(!offered.iter().any(|w| w == "--keep"), "{offered:?}");
    let offered = bash_completes(&env, &["obnam", "restore", "--t"]);
    assert!(
        !offered.iter().any(|w| w.starts_with("--testing")),
        "{offered:?}"
    );
}

/// The manual page describes the subcommands in place (it pointed to 25
/// pages `obnam-SUB(1)` that do not exist), has the sections a Unix
/// manual page has, and gives no default that is only the making
/// machine's (its host name as the client name).
#[test]
fn the_manual_page_is_whole_and_not_the_making_machines() {
    let env = TestEnv::new();
    let man = env.run(["manpage"]).ok().stdout;
    assert!(!man.contains("(1)"), "{man}");
    for section in [
        ".SH SUBCOMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(man.contains(section), "{section}");
    }
    assert!(man.contains("\\fBobnam restore\\fR"), "{man}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let default = format!("[default: {}]", host.trim().replace('-', "\\-"));
    assert!(!man.contains(&default), "{man}");
    assert!(man.contains("host name]"), "{man}");
    let zsh = env.run(["completions", "zsh"]).ok().stdout;
    assert!(zsh.contains("this machine'\\''s host name"), "zsh");
}

/// Under a umask of 002 (common for users with a group of their own) the
/// folders the script makes are still writable by their owner only, and
/// the installed obnam loads its plugins; where a folder made before
/// lets its group write (so that obnam refuses to load plugins below
/// it), the script fails, saying so (it said it had installed them).
#[test]
fn install_under_a_loose_umask_gives_an_obnam_that_loads_its_plugins() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let install_with = |prefix: &std::path::Path, plugin_dir: Option<&std::path::Path>| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("umask 002; exec \"$0\" --prefix \"$1\" --from \"$2\"")
            .arg(workspace_dir().join("install.sh"))
            .arg(prefix)
            .arg(target_dir())
            .env("HOME", env.home());
        match plugin_dir {
            Some(dir) => cmd.env("OBNAM_PLUGIN_DIR", dir),
            None => cmd.env_remove("OBNAM_PLUGIN_DIR"),
        };
        cmd.output().unwrap()
    };
    let install = |prefix: &std::path::Path| install_with(prefix, None);
    let prefix = env.path().join("prefix");
    // The user's own plugin folders are not the installation's: one
    // that obnam refuses (writable by its group) does not fail it.
    let own = env.path().join("own-plugins");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = install_with(&prefix, Some(&own));
    assert!(out.status.success(), "{out:?}");
    let run = obnam_test_support::run(
        Command::new(prefix.join("bin/obnam"))
            .env("HOME", env.home())
            .arg("plugins"),
    )
    .ok();
    assert!(run.stdout.contains("libobnam_plugin_backup.so"), "{run:#?}");
    let mode = std::fs::metadata(prefix.join("lib/obnam"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    let loose = env.path().join("shared");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = install(&loose.join("prefix"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("install.sh: the installed obnam does not load its plugins:")
            && stderr.contains("is writable by its group (mode 0775)"),
        "{stderr}"
    );
}
