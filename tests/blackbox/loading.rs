//! Finding plugins: bundled, `--plugin-dir`, `OBNAM_PLUGIN_DIR`, overrides,
//! and what `--help` and `obnam plugins` show.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use obnam_test_support::{running_as_root, target_dir, test_plugin, TestEnv};

#[test]
fn help_without_plugins_lists_no_plugin_subcommands() {
    let env = TestEnv::new();
    let run = env.run(["--no-bundled-plugins", "--help"]).ok();
    assert_eq!(
        subcommands(&run.stdout),
        ["plugins", "completions", "manpage", "help"]
    );
    let with_bundled = env.run(["--help"]).ok();
    let listed = subcommands(&with_bundled.stdout);
    assert!(
        listed.len() > 4,
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

/// A `~` no shell expanded in `OBNAM_PLUGIN_DIR` (a service file's
/// `Environment=`, a quoted value) is the home folder, as in `--plugin-dir`:
/// the plugin folder was "not found", and the run failed.
#[test]
fn a_tilde_in_obnam_plugin_dir_is_the_home_folder() {
    let env = TestEnv::new();
    env.plugin_dir("home/a", &["alpha"]);
    env.plugin_dir("home/b", &["gamma"]);
    let run = obnam_test_support::run(
        env.obnam()
            .env("OBNAM_PLUGIN_DIR", "~/a:~/b")
            .args(["--no-bundled-plugins", "plugins"]),
    )
    .ok();
    assert!(run.stdout.contains("alpha"), "{run:#?}");
    assert!(run.stdout.contains("gamma"), "{run:#?}");
}

/// `--plugin-dir` followed by `--` or another option is refused as any
/// option without its value is: the plugin folders, read before the rest
/// of the command line, took `--` (or `--no-bundled-plugins`) for a
/// folder's name.
#[test]
fn plugin_dir_without_its_value_is_refused() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("--", &["alpha"]);
    for args in [
        &["--plugin-dir", "--", "plugins"][..],
        &["--plugin-dir", "--no-bundled-plugins", "plugins"],
        &["--plugin-dir", "--output-format", "json", "plugins"],
    ] {
        let run = env.run(args).fails();
        assert!(
            run.stderr.contains("--plugin-dir needs a value"),
            "{args:?}: {run:#?}"
        );
        assert!(!run.stderr.contains("alpha"), "{args:?}: {run:#?}");
    }
    // Nor is a short option's spelling taken for a folder (obnam has no
    // -q: clap says so).
    env.plugin_dir("-q", &["alpha"]);
    let run = env.run(["--plugin-dir", "-q", "plugins"]).fails();
    assert!(
        run.stderr.contains("unexpected argument '-q'") && !run.stdout.contains("alpha"),
        "{run:#?}"
    );
    // Written with `=`, a folder named `--` is one.
    let run = env
        .run([
            format!("--plugin-dir={}", dir.display()).as_str(),
            "plugins",
        ])
        .ok();
    assert!(run.stdout.contains("alpha"), "{run:#?}");
    let run = env.run(["--plugin-dir=--", "plugins"]).ok();
    assert!(run.stdout.contains("alpha"), "{run:#?}");
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

/// A folder under the test's world with the given mode (which `mkdir`'s
/// umask would otherwise trim).
fn folder(env: &TestEnv, relative: &str, mode: u32) -> PathBuf {
    let dir = env.path().join(relative);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// Copy a test plugin into `dir` with the given mode; return its path.
fn plugin_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let src = test_plugin(name);
    let dest = dir.join(src.file_name().unwrap());
    fs::copy(&src, &dest).unwrap();
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).unwrap();
    dest
}

/// The names `obnam plugins` lists, in order.
fn listed(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn plugin_reached_through_a_symlink_into_a_world_writable_folder_is_refused() {
    let env = TestEnv::new();
    // Anyone may put a file in /tmp-like folders; a plugin there is anyone's.
    let evil = folder(&env, "evil", 0o1777);
    let target = plugin_file(&evil, "gamma", 0o755);
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let link = dir.join("libobnam_testplugin_gamma.so");
    symlink(&target, &link).unwrap();
    // In a folder the user named: an error, not a plugin quietly left out.
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} is refused: folder {} is writable by everyone (mode 1777); make it writable by its owner only\n",
            link.display(),
            evil.canonicalize().unwrap().display()
        )
    );
}

#[test]
fn plugin_folder_under_a_world_writable_parent_is_refused() {
    let env = TestEnv::new();
    // Whoever can write the parent can rename the plugin folder away and
    // put a folder of their own plugins in its place.
    // A folder the user named is refused as a missing one is: an error,
    // not a warning that --quiet hides while the run goes on without it.
    let shared = folder(&env, "shared", 0o777);
    let dir = env.plugin_dir("shared/plugins", &["alpha"]);
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin folder {} (from --plugin-dir) is refused: folder {} is writable by everyone (mode 0777); make it writable by its owner only\n",
            dir.display(),
            shared.canonicalize().unwrap().display()
        )
    );
    let run = env.run_with(&dir, ["--quiet", "plugins"]).fails();
    assert!(run.stderr.contains("is refused"), "{}", run.stderr);
    // The same parent, writable by its group only, is refused as well.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o770)).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(&format!(
            "folder {} is writable by its group (mode 0770)",
            shared.canonicalize().unwrap().display()
        )),
        "{}",
        run.stderr
    );
}

/// A plugin folder writable through an ACL is refused naming the ACL (not
/// "its group", whose bits are then the ACL's mask); a FIFO or a device in
/// a plugin folder is said, not skipped in silence.
#[test]
fn a_plugin_folder_writable_by_an_acl_is_refused_naming_it_and_odd_files_are_said() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("fifo.so"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert_eq!(listed(&run.stdout), ["alpha"], "{}", run.stdout);
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: ignoring {}: it is not a regular file\n",
            dir.join("fifo.so").display()
        )
    );
    let acl_set = std::process::Command::new("setfacl")
        .args(["-m", "u:4242:rwx"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !acl_set {
        eprintln!("skipped the ACL: setfacl is not there, or the file system has no ACLs");
        return;
    }
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert!(
        run.stderr
            .contains("it is writable by users its ACL names (mode 0775, by an ACL)"),
        "{}",
        run.stderr
    );
}

#[test]
fn group_writable_plugin_file_is_refused_naming_the_real_file() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let direct = plugin_file(&dir, "beta", 0o775);
    let store = folder(&env, "store", 0o755);
    let real = plugin_file(&store, "gamma", 0o775);
    let link = dir.join("libobnam_testplugin_gamma.so");
    symlink(&real, &link).unwrap();
    // In a folder the user named: an error (the first file refused), not
    // plugins quietly left out (a backup went on without an exclude
    // plugin, exit 0, and in silence with --quiet).
    let run = env.run_with(&dir, ["--quiet", "plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} is refused: it is writable by its group (mode 0775); make it writable by its owner only\n",
            direct.display(),
        )
    );
    fs::remove_file(&direct).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} is refused: its real file {} is writable by its group (mode 0775); make it writable by its owner only\n",
            link.display(),
            real.canonicalize().unwrap().display()
        )
    );
}

#[test]
fn plugin_folder_under_a_folder_of_another_user_is_refused() {
    if !running_as_root() {
        eprintln!("skipped: giving a folder to another user needs root");
        return;
    }
    let env = TestEnv::new();
    let theirs = folder(&env, "theirs", 0o755);
    let dir = env.plugin_dir("theirs/plugins", &["alpha"]);
    // 65534 is "nobody": neither root nor the user running the tests.
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin folder {} (from --plugin-dir) is refused: folder {} is owned by {}, neither root nor the user running obnam\n",
            dir.display(),
            theirs.canonicalize().unwrap().display(),
            // Named as the system names it.
            fs::read_to_string("/etc/passwd")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[2] == "65534")
                .map_or("uid 65534".to_string(), |f| f[0].to_string())
        )
    );
}

#[test]
fn plugins_in_private_folders_load_also_through_symlinks() {
    let env = TestEnv::new();
    // The world is under /tmp (world-writable, sticky): a sticky folder
    // above the plugin folder is allowed, so these plugins load.
    folder(&env, "sticky", 0o1777);
    folder(&env, "sticky/private", 0o700);
    let store = folder(&env, "sticky/private/store", 0o755);
    let real = plugin_file(&store, "alpha", 0o755);
    let dir = env.plugin_dir("sticky/private/plugins", &["beta"]);
    let link = dir.join("libobnam_testplugin_alpha.so");
    symlink(&real, &link).unwrap();
    // The plugin folder itself named through a symlink.
    let dir_link = env.path().join("plugins-link");
    symlink(&dir, &dir_link).unwrap();
    let run = env.run_with(&dir_link, ["plugins"]).ok();
    assert_eq!(listed(&run.stdout), ["alpha", "beta"], "{}", run.stdout);
    assert!(
        run.stdout.contains(
            dir_link
                .join("libobnam_testplugin_alpha.so")
                .to_str()
                .unwrap()
        ),
        "listed under the name it was found by: {}",
        run.stdout
    );
    assert_eq!(run.stderr, "");
    // What loaded is the plugin that was checked: its subcommand runs.
    let run = env
        .run_with(&dir_link, ["--no-default-configs", "alpha-show"])
        .ok();
    assert!(run.stdout.contains("alpha-int=7\n"), "{}", run.stdout);
    assert_eq!(run.stderr, "");

    // A link whose plugin was moved away, and a loop, are said; a folder
    // is skipped.
    let gone = store.join("moved-away.so");
    symlink(&gone, dir.join("libgone.so")).unwrap();
    symlink("loop.so", dir.join("loop.so")).unwrap();
    fs::create_dir(dir.join("subfolder")).unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert_eq!(listed(&run.stdout), ["alpha", "beta"], "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            "WARNING: ignoring {}: it is a symbolic link to {}, which does not exist",
            dir.join("libgone.so").display(),
            gone.display()
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "WARNING: ignoring {}: Too many levels of symbolic links",
            dir.join("loop.so").display()
        )),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("subfolder"), "{run:#?}");
}

/// A setting or subcommand nothing loaded resembles may be a plugin's
/// that is not loaded: the error says where plugins come from. A typo
/// gets clap's suggestion instead.
#[test]
fn unknown_names_point_at_plugins_or_at_the_nearest_name() {
    let env = TestEnv::new();
    let run = env.run(["backup", "--skip-media", "/x"]).fails();
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("unexpected argument '--skip-media'"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("No loaded plugin provides this setting"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("--plugin-dir"), "{run:#?}");
    let run = env.run(["--no-bundled-plugins", "backup", "/x"]).fails();
    assert!(
        run.stderr
            .contains("No loaded plugin provides this subcommand"),
        "{run:#?}"
    );
    let run = env.run(["bakup"]).fails();
    assert!(
        run.stderr.contains("a similar subcommand exists: 'backup'"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("No loaded plugin"), "{run:#?}");
    let run = env.run(["backup", "--exlude", "x", "/x"]).fails();
    assert!(
        run.stderr
            .contains("a similar argument exists: '--exclude'"),
        "{run:#?}"
    );
}

/// obnam starts itself again with glibc's per-thread cache of small
/// blocks enlarged (`plugin_api::allocator`): the setting is added to
/// the user's own `GLIBC_TUNABLES`, a value the user gave for it stands,
/// and the arguments arrive as they were given, bytes that are not UTF-8
/// included.
#[test]
fn obnam_restarts_itself_with_larger_thread_caches_and_the_same_arguments() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let show = |tunables: Option<&str>| {
        let mut cmd = env.obnam();
        match tunables {
            Some(t) => cmd.env("GLIBC_TUNABLES", t),
            None => cmd.env_remove("GLIBC_TUNABLES"),
        };
        cmd.arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(&dir);
        cmd.args([
            "--no-default-configs",
            "alpha-env",
            "GLIBC_TUNABLES",
            "two words",
        ]);
        cmd.arg(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        obnam_test_support::run(&mut cmd).ok().stdout
    };
    let args = "[116, 119, 111, 32, 119, 111, 114, 100, 115]\n[99, 97, 102, 233]\n";
    assert_eq!(
        show(None),
        format!("GLIBC_TUNABLES=glibc.malloc.tcache_count=128\n{args}")
    );
    assert_eq!(
        show(Some("glibc.malloc.trim_threshold=1000000")),
        format!("GLIBC_TUNABLES=glibc.malloc.trim_threshold=1000000:glibc.malloc.tcache_count=128\n{args}")
    );
    assert_eq!(
        show(Some("glibc.malloc.tcache_count=3")),
        format!("GLIBC_TUNABLES=glibc.malloc.tcache_count=3\n{args}")
    );
}
