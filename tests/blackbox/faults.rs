//! Plugin faults the host survives: files that are not plugins, corrupt
//! libraries, bad registrations, panics.

use std::fs;

use obnam_test_support::{test_plugin, TestEnv};

#[test]
fn a_file_that_is_not_a_library_is_skipped_with_a_warning() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    fs::write(dir.join("README.txt"), "not a plugin\n").unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert!(run.stdout.starts_with("alpha "), "{}", run.stdout);
    let warning = format!(
        "WARNING: ignoring {}: not a shared library (no ELF header)\n",
        dir.join("README.txt").display()
    );
    assert_eq!(run.stderr, warning);
}

#[test]
fn a_library_that_is_not_an_obnam_plugin_is_skipped_with_a_warning() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "notaplugin"]);
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let file = dir.join("libobnam_testplugin_notaplugin.so");
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: ignoring {}: not an obnam plugin (a shared library without the obnam plugin entry point)\n",
            file.display()
        )
    );
}

#[test]
fn truncated_libraries_are_refused_without_crashing() {
    let env = TestEnv::new();
    let data = fs::read(test_plugin("alpha")).unwrap();
    for (i, len) in [
        0,
        3,
        64,
        1000,
        data.len() / 3,
        data.len() / 2,
        data.len() - 1,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = env.plugin_dir(&format!("cut{i}"), &[]);
        fs::write(dir.join("libcut.so"), &data[..len]).unwrap();
        let run = env.run_with(&dir, ["plugins"]);
        assert_eq!(run.stdout, "");
        // Too short to be a library at all: not a plugin, warned of. A
        // library cut short is a plugin that cannot be used: the run
        // does not go on without it.
        let file = dir.join("libcut.so");
        let (code, start) = if len < 5 {
            (0, format!("WARNING: ignoring {}: ", file.display()))
        } else {
            (
                1,
                format!("ERROR: plugin file {} cannot be used: ", file.display()),
            )
        };
        assert_eq!(run.code, code, "length {len}: {run:#?}");
        assert!(
            run.stderr.starts_with(&start),
            "length {len}: {}",
            run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "length {len}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_library_with_corrupt_headers_is_refused() {
    let env = TestEnv::new();
    let mut data = fs::read(test_plugin("alpha")).unwrap();
    // e_phoff (program header table offset) of a 64-bit ELF is at byte 32.
    data[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    let dir = env.plugin_dir("plugins", &[]);
    fs::write(dir.join("libbad.so"), &data).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert!(
        run.stderr.contains("corrupt or truncated shared library"),
        "{}",
        run.stderr
    );
}

/// A plugin whose `enable` fails or panics stops every run, before
/// anything is done: without it a backup stored what its exclude
/// callback leaves out, exit 0 (it was left out with a warning).
#[test]
fn a_plugin_that_fails_to_start_stops_the_run() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["hostile"]);
    let data = env.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"data").unwrap();
    let repo = env.path().join("repo");
    let file = dir.join("libobnam_testplugin_hostile.so");
    for (how, why) in [
        ("error", "hostile refuses to start".to_string()),
        (
            "panic",
            "panic: hostile panics as it starts (at tests/plugins/hostile/src/lib.rs:".into(),
        ),
    ] {
        let mut cmd = env.obnam();
        cmd.arg("--plugin-dir")
            .arg(&dir)
            .arg("--repository")
            .arg(&repo)
            .args(["backup", "--quiet"])
            .arg(&data)
            .env("HOSTILE_ENABLE", how);
        let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
        assert!(
            run.stderr.starts_with(&format!(
                "ERROR: plugin 'hostile' ({}) failed to start: {why}",
                file.display()
            )),
            "{how}: {run:#?}"
        );
        assert!(
            run.stderr.ends_with(
                "(obnam does not run without a plugin of a folder it was given: move the file \
                 out of the folder to run without it)\n"
            ),
            "{how}: {run:#?}"
        );
        assert!(!repo.exists(), "{how}: nothing was made");
    }
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert!(run.stdout.contains("hostile "), "{run:#?}");
}

#[test]
fn bad_registrations_are_warned_about_and_the_rest_works() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "gamma"]);
    let run = env.run_with(&dir, ["alpha-hook", "go"]).ok();
    assert_eq!(run.stdout, "counter=1 trail=go alpha500\n");
    let expected = [
        "WARNING: plugin 'gamma': invalid setting definition 'Bad Name'",
        "WARNING: setting 'alpha-int' of plugin 'gamma' is already defined by 'alpha'; ignored",
        "WARNING: setting 'plugin-dir' of plugin 'gamma' would use the option --plugin-dir, which is reserved by obnam; ignored",
        "WARNING: setting 'dry-run' of plugin 'gamma' would use the option --dry-run, which setting 'pretend' of 'obnam' uses; ignored",
        "WARNING: setting 'ssh-owner' of plugin 'gamma' would use the environment variable OBNAM_SSH_OWNER, which obnam sets itself; ignored",
        "WARNING: plugin 'gamma': invalid setting definition 'gamma-twice': the choice 'a' is given twice; ignored",
        "WARNING: plugin 'gamma': invalid setting definition 'gamma-blank': a choice is empty; ignored",
        "WARNING: setting 'bundled-plugins' of plugin 'gamma' would use the option --no-bundled-plugins, which is reserved by obnam; ignored",
        "WARNING: plugin 'gamma' adds subcommand 'alpha-show', which 'alpha' already provides; ignored",
        "WARNING: plugin 'gamma' expects another payload type for hook 'alpha-event' (created by 'alpha'); callback ignored",
        "WARNING: plugin 'gamma' subscribes to hook 'no-such-hook', which no loaded plugin creates; ignored",
    ];
    for line in expected {
        assert!(
            run.stderr.contains(line),
            "missing '{line}' in:\n{}",
            run.stderr
        );
    }
    assert_eq!(run.stderr.lines().count(), expected.len(), "{}", run.stderr);
    let run = env.run_with(&dir, ["gamma-ok"]).ok();
    assert_eq!(run.stdout, "gamma ok\n");
    // A setting whose group is empty is under the default heading (an
    // empty one was a heading of its own, `:`).
    let help = env.run_with(&dir, ["--help"]).ok().stdout;
    let heading = help
        .find("\nPlugin settings:\n")
        .expect("the default heading");
    let setting = help.find("--gamma-grouped").expect("the setting");
    assert!(setting > heading, "{help}");
    assert!(!help.contains("\n:\n"), "{help}");
}

#[test]
fn a_panic_in_a_subcommand_is_an_error_naming_the_plugin() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let run = env.run_with(&dir, ["alpha-panic"]).fails().no_rust_panic();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(
            "ERROR: plugin 'alpha' panicked in subcommand 'alpha-panic': alpha panics on purpose (at "
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn a_panic_in_a_hook_callback_is_an_error_naming_the_plugin_and_hook() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "beta"]);
    let run = env
        .run_with(&dir, ["alpha-hook", "panic"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(
            "ERROR: plugin 'beta' panicked in hook 'alpha-event': beta was asked to panic (at "
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn an_error_in_a_subcommand_is_printed_as_is() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let run = env.run_with(&dir, ["alpha-fail"]).fails();
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "ERROR: alpha failed on purpose\n");
}

#[test]
fn usage_errors_are_reported_as_errors() {
    let env = TestEnv::new();
    let run = env.run(["--no-such-option"]).fails().no_rust_panic();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("ERROR: unexpected argument '--no-such-option'"),
        "{}",
        run.stderr
    );
    let run = env.run(["no-such-subcommand"]).fails();
    assert!(
        run.stderr
            .starts_with("ERROR: unrecognized subcommand 'no-such-subcommand'"),
        "{}",
        run.stderr
    );
    let run = env.run::<[&str; 0], &str>([]).fails();
    assert_eq!(
        run.stderr,
        "ERROR: no subcommand given; 'obnam --help' lists them\n"
    );
}

#[test]
fn plugin_files_and_folders_writable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha", "gamma"]);
    let gamma = dir.join("libobnam_testplugin_gamma.so");
    fs::set_permissions(&gamma, fs::Permissions::from_mode(0o757)).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} is refused: it is writable by everyone (mode 0757); make it writable by its owner only\n",
            gamma.display()
        )
    );
    // The folder itself, named with --plugin-dir: an error, as a missing
    // one is (a run without its plugins would go on, exit 0).
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin folder {} (from --plugin-dir) is refused: it is writable by its group (mode 0775); make it writable by its owner only\n",
            dir.display()
        )
    );
}

/// A library beside a plugin that is no plugin itself (its dependency,
/// say) is not loaded at all, so that one the system loader would refuse
/// (it needs a library that is not on the loader's path: plugins are
/// loaded through /proc/self/fd, where `$ORIGIN` leads nowhere) is only
/// warned of, and the run goes on: it stopped every command once a
/// plugin that cannot be used came to stop the run.
#[test]
fn a_library_that_is_no_plugin_is_not_loaded() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &["alpha"]);
    let build = env.path().join("build");
    fs::create_dir(&build).unwrap();
    fs::write(build.join("dep.c"), "int dep(void) { return 1; }\n").unwrap();
    fs::write(
        build.join("user.c"),
        "int dep(void);\nint user(void) { return dep(); }\n",
    )
    .unwrap();
    let cc = |args: &[&str]| {
        let status = std::process::Command::new("cc")
            .current_dir(&build)
            .args(args)
            .status()
            .expect("run cc");
        assert!(status.success(), "cc {args:?}");
    };
    cc(&["-shared", "-fPIC", "-o", "libdep.so", "dep.c"]);
    cc(&[
        "-shared",
        "-fPIC",
        "-o",
        "libuser.so",
        "user.c",
        "-L.",
        "-ldep",
    ]);
    // Beside the plugin, without the library it needs.
    fs::copy(build.join("libuser.so"), dir.join("libuser.so")).unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert!(run.stdout.contains("alpha "), "{run:#?}");
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: ignoring {}: not an obnam plugin (a shared library without the obnam plugin entry point)\n",
            dir.join("libuser.so").display()
        )
    );
}

/// A plugin whose section headers were stripped (the system loader does
/// not need them; `llvm-objcopy --strip-sections` leaves none) has no
/// table of dynamic symbols to look in: it is loaded, not taken for a
/// library that is no plugin (it was warned of and left out, and a
/// backup then stored what it excludes).
#[test]
fn a_plugin_without_section_headers_is_loaded() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("plugins", &[]);
    let mut data = fs::read(test_plugin("alpha")).unwrap();
    // ELF64: e_shoff at 0x28 (8 bytes), e_shnum at 0x3c, e_shstrndx at 0x3e.
    data[0x28..0x30].copy_from_slice(&0u64.to_le_bytes());
    data[0x3c..0x40].copy_from_slice(&[0, 0, 0, 0]);
    fs::write(dir.join("libalpha.so"), &data).unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok();
    assert!(run.stdout.starts_with("alpha "), "{run:#?}");
    assert_eq!(run.stderr, "", "{run:#?}");
}
