//! Settings: every type, and the layers defaults < config files <
//! environment < command line; `--dump-config` reads back.

use std::path::PathBuf;

use obnam_test_support::{Run, TestEnv};

struct World {
    env: TestEnv,
    plugins: PathBuf,
}

impl World {
    fn new() -> Self {
        let env = TestEnv::new();
        let plugins = env.plugin_dir("plugins", &["alpha"]);
        World { env, plugins }
    }

    fn show(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut cmd = self.env.obnam();
        cmd.arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(&self.plugins);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.args(args);
        obnam_test_support::run(&mut cmd)
    }

    fn value(&self, args: &[&str], vars: &[(&str, &str)], name: &str) -> String {
        let run = self.show(args, vars).ok();
        let prefix = format!("{name}=");
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} not shown:\n{}", run.stdout))
            .to_string()
    }
}

#[test]
fn defaults_of_every_type() {
    let w = World::new();
    let run = w
        .show(
            &["--no-default-configs", "alpha-show", "--client-name", "c1"],
            &[],
        )
        .ok();
    assert_eq!(
        run.stdout,
        "alpha-string=None\nalpha-list=[]\nalpha-bool=false\nalpha-int=7\n\
         alpha-size=1073741824\nalpha-choice=Some(\"red\")\nalpha-choice2=Some(\"two\")\n\
         client-name=Some(\"c1\")\n"
    );
}

#[test]
fn command_line_values_of_every_type() {
    let w = World::new();
    let args = [
        "alpha-show",
        "--alpha-string=hello world",
        "--alpha-list",
        "a,b",
        "--alpha-list",
        "c",
        "--alpha-bool",
        "--alpha-int",
        "-12",
        "--alpha-size",
        "10MiB",
        "--alpha-choice",
        "blue",
    ];
    let run = w.show(&args, &[]).ok();
    assert!(
        run.stdout.contains("alpha-string=Some(\"hello world\")\n"),
        "{}",
        run.stdout
    );
    // On the command line each use is one item; commas are not split.
    assert!(
        run.stdout.contains("alpha-list=[\"a,b\", \"c\"]\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("alpha-bool=true\n"));
    assert!(run.stdout.contains("alpha-int=-12\n"));
    assert!(run.stdout.contains("alpha-size=10485760\n"));
    assert!(run.stdout.contains("alpha-choice=Some(\"blue\")\n"));
}

#[test]
fn byte_sizes_use_obnam_units() {
    let w = World::new();
    for (text, bytes) in [
        ("1k", "1000"),
        ("1ki", "1024"),
        ("1GiB", "1073741824"),
        ("10MiB", "10485760"),
        ("3", "3"),
    ] {
        assert_eq!(
            w.value(&["alpha-show", "--alpha-size", text], &[], "alpha-size"),
            bytes,
            "{text}"
        );
    }
}

#[test]
fn negated_boolean_and_last_one_wins() {
    let w = World::new();
    let cfg = w.env.write("on.conf", "[config]\nalpha-bool = yes\n");
    let c = cfg.to_str().unwrap();
    assert_eq!(
        w.value(&["--config", c, "alpha-show"], &[], "alpha-bool"),
        "true"
    );
    assert_eq!(
        w.value(
            &["--config", c, "alpha-show", "--no-alpha-bool"],
            &[],
            "alpha-bool"
        ),
        "false"
    );
    assert_eq!(
        w.value(
            &["alpha-show", "--no-alpha-bool", "--alpha-bool"],
            &[],
            "alpha-bool"
        ),
        "true"
    );
    assert_eq!(
        w.value(
            &["alpha-show", "--alpha-bool", "--no-alpha-bool"],
            &[],
            "alpha-bool"
        ),
        "false"
    );
}

/// An `OBNAM_*` variable that names no setting is warned of, with the
/// nearest setting's variable where one is close (a misspelt
/// `OBNAM_REPOSITRY` was ignored in silence, and the run went on without
/// it); a setting's variable, one obnam reads otherwise, and a test
/// plugin's are not; `--quiet` quiets it.
#[test]
fn an_obnam_variable_that_names_no_setting_is_warned_of() {
    let env = obnam_test_support::TestEnv::new();
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = env.obnam();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        obnam_test_support::run(cmd.args(args))
    };
    let out = run(&[("OBNAM_REPOSITRY", "/tmp/x")], &["--dump-config"]).ok();
    assert!(
        out.stderr.contains(
            "WARNING: environment variable OBNAM_REPOSITRY names no setting of obnam or its \
             loaded plugins, and is ignored (did you mean OBNAM_REPOSITORY?)"
        ),
        "{out:#?}"
    );
    // Not close: two of three letters differ from `LOG`'s.
    for far in ["OBNAM_SOMETHING_ELSE", "OBNAM_FOO"] {
        let out = run(&[(far, "1")], &["--dump-config"]).ok();
        assert!(
            out.stderr.contains(&format!("{far} names no setting"))
                && !out.stderr.contains("did you mean"),
            "{out:#?}"
        );
    }
    // Obnam's own variables that are no setting's are suggested too, and
    // a name in the wrong case.
    for (given, meant) in [
        ("OBNAM_PASSPHRSE", "OBNAM_PASSPHRASE"),
        ("OBNAM_client_name", "OBNAM_CLIENT_NAME"),
    ] {
        let out = run(&[(given, "p")], &["--dump-config"]).ok();
        assert!(
            out.stderr.contains(&format!("(did you mean {meant}?)")),
            "{out:#?}"
        );
    }
    let out = run(
        &[
            ("OBNAM_REPOSITORY", "/tmp/x"),
            ("OBNAM_PASSPHRASE", "p"),
            ("OBNAM_PLUGIN_DIR", ""),
            ("OBNAM_TEST_ANYTHING", "1"),
        ],
        &["--dump-config"],
    )
    .ok();
    assert!(!out.stderr.contains("names no setting"), "{out:#?}");
    let out = run(
        &[("OBNAM_REPOSITRY", "/tmp/x")],
        &["--quiet", "--dump-config"],
    )
    .ok();
    assert!(!out.stderr.contains("names no setting"), "{out:#?}");
}

#[test]
fn layers_config_then_environment_then_command_line() {
    let w = World::new();
    w.env.write(
        "home/.obnam.conf",
        "[config]\nalpha-string = from-home\nalpha-int = 1\nalpha-size = 2k\nalpha-list = x, y\n",
    );
    w.env.write(
        "home/.config/obnam/10-more.conf",
        "[config]\nalpha-int = 2\n",
    );
    let extra = w.env.write("extra.conf", "[config]\nalpha-size = 3k\n");
    let extra = extra.to_str().unwrap();

    assert_eq!(
        w.value(&["alpha-show"], &[], "alpha-string"),
        "Some(\"from-home\")"
    );
    assert_eq!(
        w.value(&["alpha-show"], &[], "alpha-list"),
        "[\"x\", \"y\"]"
    );
    // ~/.config/obnam/*.conf comes after ~/.obnam.conf.
    assert_eq!(w.value(&["alpha-show"], &[], "alpha-int"), "2");
    // --config comes after the default files.
    assert_eq!(
        w.value(&["--config", extra, "alpha-show"], &[], "alpha-size"),
        "3000"
    );
    // The environment overrides config files...
    let vars = [("OBNAM_ALPHA_INT", "3"), ("OBNAM_ALPHA_LIST", "p,q,r")];
    assert_eq!(w.value(&["alpha-show"], &vars, "alpha-int"), "3");
    assert_eq!(
        w.value(&["alpha-show"], &vars, "alpha-list"),
        "[\"p\", \"q\", \"r\"]"
    );
    // ...and the command line overrides the environment.
    assert_eq!(
        w.value(&["alpha-show", "--alpha-int", "4"], &vars, "alpha-int"),
        "4"
    );
    // --no-default-configs drops the home files but keeps --config.
    assert_eq!(
        w.value(&["--no-default-configs", "alpha-show"], &[], "alpha-int"),
        "7"
    );
    assert_eq!(
        w.value(
            &["--no-default-configs", "--config", extra, "alpha-show"],
            &[],
            "alpha-size"
        ),
        "3000"
    );
    // The host's own settings layer the same way.
    assert_eq!(
        w.value(
            &["alpha-show"],
            &[("OBNAM_CLIENT_NAME", "envclient")],
            "client-name"
        ),
        "Some(\"envclient\")"
    );
}

#[test]
fn list_config_files_shows_what_is_read_in_order() {
    let w = World::new();
    let home = w.env.write("home/.obnam.conf", "[config]\n");
    let b = w.env.write("home/.config/obnam/b.conf", "[config]\n");
    let a = w.env.write("home/.config/obnam/a.conf", "[config]\n");
    w.env
        .write("home/.config/obnam/ignored.txt", "not a conf file");
    let extra = w.env.write("extra.conf", "[config]\n");
    let run = w
        .show(
            &["--list-config-files", "--config", extra.to_str().unwrap()],
            &[],
        )
        .ok();
    let expected: Vec<String> = [home, a, b, extra]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("/etc/"))
        .collect();
    assert_eq!(listed, expected);
}

/// As root with another user's home (`sudo -E`), obnam reads none of
/// their configuration files (which set root's log file, exclusions,
/// repository) and keeps its state in root's own home, and says so.
#[test]
fn a_run_as_root_with_another_users_home_uses_roots_own() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: the check is of runs as root");
        return;
    }
    let w = World::new();
    let theirs = w.env.write("theirs/.obnam.conf", "[config]\n");
    let home = theirs.parent().unwrap();
    std::os::unix::fs::lchown(home, Some(4242), Some(4242)).unwrap();
    let home_var = home.to_str().unwrap();
    let run = w.show(&["--list-config-files"], &[("HOME", home_var)]).ok();
    assert!(!run.stdout.contains(home_var), "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "WARNING: obnam runs as root with HOME={home_var} ({home_var} on the way belongs to uid 4242): it \
             uses root's home folder"
        )),
        "{run:#?}"
    );
    // Root's, but its group (not root's) may write in it.
    std::os::unix::fs::lchown(home, Some(0), Some(4343)).unwrap();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o775)).unwrap();
    let run = w.show(&["--list-config-files"], &[("HOME", home_var)]).ok();
    assert!(!run.stdout.contains(home_var), "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "(others may write in {home_var} on the way (mode 775))"
        )),
        "{run:#?}"
    );
    // Root's own is read without a word.
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::lchown(home, Some(0), Some(0)).unwrap();
    let run = w.show(&["--list-config-files"], &[("HOME", home_var)]).ok();
    assert!(
        run.stdout.contains(&theirs.display().to_string()),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("WARNING"), "{run:#?}");
}

/// As root, a config file another user could change (theirs, writable
/// by others, or in a folder of theirs below root's own config folder) is
/// refused, naming why: it set root's repository, log file or exclusions
/// without a word.
#[test]
fn as_root_a_config_file_another_user_could_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: the check is of runs as root");
        return;
    }
    let w = World::new();
    let xdg = w.env.path().join("xdg");
    let conf = w
        .env
        .write("xdg/obnam/x.conf", "[config]\nclient-name = steered\n");
    let folder = conf.parent().unwrap();
    let dump = || {
        w.show(
            &["--dump-config"],
            &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
        )
    };
    let refused = |why: &str| {
        format!(
            "ERROR: config file {} is not read: {why}; as root, obnam reads no config file \
             that another user could change (make it root's, and writable by root alone)\n",
            conf.display()
        )
    };
    std::os::unix::fs::lchown(folder, Some(4242), Some(4242)).unwrap();
    let run = dump().fails();
    assert_eq!(
        run.stderr,
        refused(&format!(
            "{} on the way belongs to uid 4242",
            folder.display()
        ))
    );
    std::os::unix::fs::lchown(folder, Some(0), Some(0)).unwrap();
    std::os::unix::fs::lchown(&conf, Some(4242), Some(4242)).unwrap();
    let run = dump().fails();
    assert_eq!(run.stderr, refused("it belongs to uid 4242"));
    std::os::unix::fs::lchown(&conf, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = dump().fails();
    assert_eq!(run.stderr, refused("others may write in it (mode 666)"));
    // Root's own, writable by root alone, is read.
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = dump().ok();
    assert!(run.stdout.contains("client-name = steered"), "{run:#?}");
    // What is not a file is refused for that, not for who may write it.
    let run = w
        .show(&["--config", "/dev/null", "--dump-config"], &[])
        .fails();
    assert_eq!(
        run.stderr,
        "ERROR: cannot read config file /dev/null: it is a character device, not a regular \
         file\n"
    );
}

/// A relative `HOME` or `XDG_CONFIG_HOME` names no config files: they
/// named files in whatever folder obnam was started from.
#[test]
fn relative_config_folders_are_ignored() {
    let w = World::new();
    // The working folder of the runs.
    w.env.write("rel/obnam/x.conf", "[config]\n");
    w.env.write(".obnam.conf", "[config]\n");
    let home = w.env.write("home/.obnam.conf", "[config]\n");
    let run = w
        .show(&["--list-config-files"], &[("XDG_CONFIG_HOME", "rel")])
        .ok();
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("/etc/"))
        .collect();
    assert_eq!(listed, vec![home.display().to_string()]);
    let run = w.show(&["--list-config-files"], &[("HOME", ".")]).ok();
    assert!(
        run.stdout.lines().all(|l| l.starts_with("/etc/")),
        "{}",
        run.stdout
    );
}

#[test]
fn dump_config_reads_back_to_the_same_settings() {
    let w = World::new();
    let args = [
        "--no-default-configs",
        "--dump-config",
        "--alpha-string=some text",
        "--alpha-list=a",
        "--alpha-list=b",
        "--alpha-bool",
        "--alpha-int=-5",
        "--alpha-size=5MiB",
        "--alpha-choice=green",
        "--repository=/srv/repo",
        "--client-name=c9",
    ];
    let first = w.show(&args, &[]).ok().stdout;
    assert!(first.starts_with("[config]\n"), "{first}");
    assert!(first.contains("alpha-size = 5MiB\n"), "{first}");
    assert!(first.contains("alpha-list = a,b\n"), "{first}");
    assert!(first.contains("repository = /srv/repo\n"), "{first}");
    let dumped = w.env.write("dumped.conf", &first);
    let second = w
        .show(
            &[
                "--no-default-configs",
                "--config",
                dumped.to_str().unwrap(),
                "--dump-config",
            ],
            &[],
        )
        .ok()
        .stdout;
    assert_eq!(first, second);
    let shown = w
        .show(
            &[
                "--no-default-configs",
                "--config",
                dumped.to_str().unwrap(),
                "alpha-show",
            ],
            &[],
        )
        .ok()
        .stdout;
    assert!(shown.contains("alpha-list=[\"a\", \"b\"]"), "{shown}");
    assert!(shown.contains("alpha-int=-5"), "{shown}");
}

#[test]
fn unknown_key_in_a_config_file_names_the_file_and_key() {
    let w = World::new();
    let cfg = w
        .env
        .write("bad.conf", "[config]\nalpha-int = 3\nno-such-setting = 1\n");
    let run = w
        .show(&["--config", cfg.to_str().unwrap(), "alpha-show"], &[])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 3: unknown setting 'no-such-setting'\n",
            cfg.display()
        )
    );
    assert_eq!(run.stdout, "");
    // A name close to a setting's is suggested, as on the command line
    // and in the environment: spelt as the environment spells it, or
    // mistyped.
    for (key, meant) in [
        ("alpha_int", "alpha-int"),
        ("ALPHA-INT", "alpha-int"),
        ("alpah-int", "alpha-int"),
    ] {
        let cfg = w.env.write("near.conf", format!("[config]\n{key} = 3\n"));
        let run = w
            .show(&["--config", cfg.to_str().unwrap(), "alpha-show"], &[])
            .fails();
        assert_eq!(
            run.stderr,
            format!(
                "ERROR: config file {}: line 2: unknown setting '{key}' (did you mean \
                 '{meant}'?)\n",
                cfg.display()
            )
        );
    }
}

/// An Obnam 1.x configuration with its logging settings still works:
/// those are ignored with a warning naming the file and line (they
/// stopped every run). Any other unknown key stays an error.
#[test]
fn obnam1_logging_settings_in_a_config_file_are_ignored_with_a_warning() {
    let w = World::new();
    let cfg = w.env.write(
        "old.conf",
        "[config]\nalpha-int = 3\nlog-max = 10mb\nlog-keep = 5\ntrace = obnamlib\n",
    );
    let run = w
        .show(&["--config", cfg.to_str().unwrap(), "alpha-show"], &[])
        .ok();
    assert!(run.stdout.contains("alpha-int=3"), "{run:#?}");
    for (line, key) in [(3, "log-max"), (4, "log-keep"), (5, "trace")] {
        assert!(
            run.stderr.contains(&format!(
                "WARNING: config file {}: line {line}: '{key}' is a setting of Obnam 1.x that \
                 this obnam does not have; ignored",
                cfg.display()
            )),
            "{run:#?}"
        );
    }
}

#[test]
fn unknown_section_and_bad_values_in_config_files_are_errors() {
    let w = World::new();
    let cfg = w.env.write("sect.conf", "[other]\nalpha-int = 3\n");
    let run = w
        .show(&["--config", cfg.to_str().unwrap(), "alpha-show"], &[])
        .fails();
    assert!(
        run.stderr.contains("unknown section [other]"),
        "{}",
        run.stderr
    );
    let cfg = w.env.write("val.conf", "[config]\nalpha-size = lots\n");
    let run = w
        .show(&["--config", cfg.to_str().unwrap(), "alpha-show"], &[])
        .fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 2: setting 'alpha-size': 'lots' is not a byte size (expected a number with an optional unit like 10MiB)\n",
            cfg.display()
        )
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let w = World::new();
    let run = w
        .show(&["--config", "/no/such.conf", "alpha-show"], &[])
        .fails();
    assert_eq!(
        run.stderr,
        "ERROR: config file /no/such.conf does not exist\n"
    );
}

#[test]
fn bad_values_on_the_command_line_and_environment_name_the_setting() {
    let w = World::new();
    let run = w
        .show(&["alpha-show", "--alpha-int", "many"], &[])
        .fails()
        .no_rust_panic();
    assert_eq!(run.stderr, "ERROR: --alpha-int: 'many' is not an integer\n");
    let run = w
        .show(&["alpha-show", "--alpha-choice", "purple"], &[])
        .fails();
    assert_eq!(
        run.stderr,
        "ERROR: --alpha-choice: 'purple' is not one of: red, green, blue\n"
    );
    let run = w
        .show(&["alpha-show"], &[("OBNAM_ALPHA_BOOL", "perhaps")])
        .fails();
    assert_eq!(
        run.stderr,
        "ERROR: setting 'alpha-bool': environment variable OBNAM_ALPHA_BOOL: 'perhaps' is not a boolean (use yes or no)\n"
    );
}

/// How long a run that reads a config file may take before the test calls
/// it hung: far more than reading any sane config file needs.
const CONFIG_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

impl World {
    /// [`World::show`] with a deadline: a run that would read without end
    /// or wait forever fails the test instead of hanging it.
    fn show_with_deadline(&self, args: &[&str]) -> Run {
        let mut cmd = self.env.obnam();
        cmd.arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(&self.plugins)
            .args(args);
        obnam_test_support::run_with_deadline(&mut cmd, CONFIG_DEADLINE)
    }
}

#[test]
fn config_file_that_is_a_device_is_refused_without_reading_it() {
    let w = World::new();
    let run = w
        .show_with_deadline(&["--config", "/dev/zero", "alpha-show"])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        "ERROR: cannot read config file /dev/zero: it is a character device, not a regular file\n"
    );
    assert_eq!(run.stdout, "", "the subcommand must not run");
}

#[test]
fn config_file_that_is_a_fifo_is_refused_without_waiting_for_a_writer() {
    let w = World::new();
    let fifo = w.env.path().join("fifo.conf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let run = w
        .show_with_deadline(&["--config", fifo.to_str().unwrap(), "alpha-show"])
        .fails()
        .no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: cannot read config file {}: it is a FIFO, not a regular file\n",
            fifo.display()
        )
    );
    assert_eq!(run.stdout, "", "the subcommand must not run");
}

#[test]
fn huge_config_file_is_refused_without_reading_it() {
    let w = World::new();
    // Sparse: 2 GiB long, no disk space. Read, it would be 2 GiB of zero
    // bytes in memory, which the deadline helper's memory limit catches.
    let huge = w.env.path().join("huge.conf");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(2 << 30))
        .expect("make a sparse file");
    let expected = |path: &std::path::Path| {
        format!(
            "ERROR: cannot read config file {}: it has 2147483648 bytes; a config file may have at most 1048576 bytes (1 MiB)\n",
            path.display()
        )
    };
    let run = w
        .show_with_deadline(&["--config", huge.to_str().unwrap(), "alpha-show"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.stderr, expected(&huge));
    assert_eq!(run.stdout, "", "the subcommand must not run");

    // The same holds for a config file in a default place.
    let default = w.env.home().join(".obnam.conf");
    std::fs::rename(&huge, &default).unwrap();
    let run = w
        .show_with_deadline(&["alpha-show"])
        .fails()
        .no_rust_panic();
    assert_eq!(run.stderr, expected(&default));
    assert_eq!(run.stdout, "", "the subcommand must not run");
}

/// Values a plain config file cannot say (a comma in a list item, white
/// space at an end, quotes, backslashes) are quoted by `--dump-config` and
/// read back exactly.
#[test]
fn dump_config_round_trips_awkward_values() {
    let w = World::new();
    let values = [
        "--alpha-list=f{1,2}$",
        "--alpha-list= lead",
        "--alpha-list=trail ",
        "--alpha-list=a\"b",
        "--alpha-list=\"quoted\"",
        "--alpha-list='single'",
        r"--alpha-list=back\slash\",
        r"--alpha-list=\.tmp$",
        "--alpha-list=ünï, ✓",
        // Would start a comment in a config file.
        "--alpha-list=a ; b",
        "--alpha-list=c\t# d",
        "--alpha-list=#e",
        "--alpha-string= both ends ; # ",
        "--client-name=c9",
    ];
    let mut direct = vec!["--no-default-configs", "alpha-show"];
    direct.extend(values);
    let expected = w.show(&direct, &[]).ok().stdout;
    assert!(
        expected.contains(r#"alpha-list=["f{1,2}$", " lead", "trail ", "#),
        "{expected}"
    );
    let mut dump = vec!["--no-default-configs", "--dump-config"];
    dump.extend(values);
    let dumped = w.show(&dump, &[]).ok().stdout;
    assert!(
        dumped.contains(r#"alpha-list = "f{1,2}$"," lead","trail ",a"b,"\"quoted\"","'single'",back\slash\,\.tmp$,"ünï, ✓""#),
        "{dumped}"
    );
    let conf = w.env.write("dumped.conf", &dumped);
    let shown = w
        .show(
            &[
                "--no-default-configs",
                "--config",
                conf.to_str().unwrap(),
                "alpha-show",
            ],
            &[],
        )
        .ok()
        .stdout;
    assert_eq!(shown, expected);
}

/// A comment after a value in a config file: `; ...` is dropped, as
/// Obnam 1.x dropped it; `# ...` is refused, naming the file and line
/// (`client-name = laptop # mine` backed up as a new client of that
/// name, and a repository path so into a new repository, exit 0).
#[test]
fn comments_after_values_in_a_config_file() {
    let env = TestEnv::new();
    let data = env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("keep"), b"x").unwrap();
    std::fs::write(data.join("drop.tmp"), b"x").unwrap();
    let repo = env.path().join("repo");
    let conf = env.write(
        "semi.conf",
        format!(
            "[config]\nrepository = {} ; the NAS\nclient-name = laptop ; mine\n\
             exclude = \\.tmp$ ; temporary files\n",
            repo.display()
        ),
    );
    env.run([
        "--config",
        conf.to_str().unwrap(),
        "backup",
        data.to_str().unwrap(),
    ])
    .ok();
    let listed = env
        .run(["--config", conf.to_str().unwrap(), "ls"])
        .ok()
        .stdout;
    assert!(
        listed.contains("keep") && !listed.contains("drop.tmp"),
        "{listed}"
    );
    let clients = env
        .run(["--config", conf.to_str().unwrap(), "clients"])
        .ok()
        .stdout;
    assert_eq!(clients, "laptop\n");

    let conf = env.write(
        "hash.conf",
        format!(
            "[config]\nrepository = {}\n# a comment line is fine\nclient-name = laptop # mine\n",
            repo.display()
        ),
    );
    let run = env
        .run([
            "--config",
            conf.to_str().unwrap(),
            "backup",
            data.to_str().unwrap(),
        ])
        .fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 4: the value of 'client-name' holds '# mine', which \
             would be taken as part of it; put a comment on a line of its own, or quote the \
             value if '#' belongs to it\n",
            conf.display()
        )
    );
    let clients = env
        .run([
            "--config",
            conf.to_str().unwrap(),
            "--client-name",
            "x",
            "clients",
        ])
        .fails();
    assert!(clients.stderr.contains("line 4"), "{clients:#?}");
}

/// A path in a config file (or the environment) that starts with `~/` is
/// in the home folder, as the shell has it on the command line
/// (`repository = ~/backup` made a folder `~` wherever the run started);
/// `~user` is refused; a relative repository is named in full when made.
#[test]
fn a_tilde_in_a_config_file_is_the_home_folder() {
    let env = TestEnv::new();
    let data = env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    let conf = env.write(
        "t.conf",
        "[config]\nrepository = ~/tilderepo\nclient-name = c\n",
    );
    let run = env
        .run([
            "--config",
            conf.to_str().unwrap(),
            "backup",
            data.to_str().unwrap(),
        ])
        .ok();
    let home_repo = env.home().join("tilderepo");
    assert!(home_repo.join("config").is_file(), "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "created a new repository at {}",
            home_repo.display()
        )),
        "{run:#?}"
    );
    let run = env
        .run([
            "--no-default-configs",
            "--config",
            conf.to_str().unwrap(),
            "genids",
        ])
        .ok();
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    // In the environment too.
    let run = obnam_test_support::run(env.obnam().env("OBNAM_REPOSITORY", "~/tilderepo").args([
        "--client-name",
        "c",
        "genids",
    ]))
    .ok();
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    let bad = env.write("bad.conf", "[config]\nrepository = ~bob/x\n");
    let run = env
        .run(["--config", bad.to_str().unwrap(), "genids"])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr
            .contains("'~bob/x': a ~ is taken for your home folder only as ~ or ~/"),
        "{run:#?}"
    );
    // A relative repository is named in full when it is made.
    let run = obnam_test_support::run(
        env.obnam()
            .current_dir(env.path())
            .args(["-r", "rel", "--client-name", "c", "backup"])
            .arg(&data),
    )
    .ok();
    assert!(
        run.stderr.contains(&format!(
            "created a new repository at rel ({})",
            env.path().join("rel").display()
        )),
        "{run:#?}"
    );
}
