//! Bad setting values, wherever they are written, are refused before
//! anything is created, naming the setting and where the value came from;
//! a bad value on the command line is a usage error (exit code 2), one in a
//! config file or the environment an error (exit code 1).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use obnam_test_support::{run as run_obnam, BackupWorld, Run};

/// Run a backup of the world's data with `args` before the subcommand
/// and `vars` in the environment.
fn backup(w: &BackupWorld, args: &[&OsStr], vars: &[(&str, &OsStr)]) -> Run {
    let mut cmd = w.env.obnam();
    cmd.arg("--repository").arg(&w.repo);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args).arg("backup").arg(&w.data);
    run_obnam(&mut cmd).no_rust_panic()
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

fn nothing_created(w: &BackupWorld, what: &str) {
    assert!(!w.repo.exists(), "{what}: the repository was created");
}

#[test]
fn counts_that_size_threads_or_memory_are_refused_before_anything_is_created() {
    let w = BackupWorld::new("c");
    for (setting, value, says) in [
        ("backup-threads", "9223372036854775807", "give 0 to 1024"),
        ("backup-threads", "4294967296", "give 0 to 1024"),
        ("backup-threads", "100000", "give 0 to 1024"),
        ("restore-workers", "1000", "give 0 to 256"),
        ("kdf-iterations", "65", "give 1 to 64"),
        ("kdf-memory", "1TiB", "give 64KiB to 4GiB"),
        ("chunk-size", "1GiB", "give 1 to 64MiB"),
        ("chunk-max-size", "1GiB", "give 1KiB to 16MiB"),
        ("repack-threshold", "101", "give 0 to 100"),
        (
            "testing-new-chunks-in-memory",
            "99999999999",
            "give 0 to 16777216",
        ),
        ("verify-randomly", "-1", "give 0 to 9223372036854775807"),
        ("lock-timeout", "-1", "give 0 to 604800"),
        ("storage-timeout", "0", "give 1 to 86400"),
        ("pack-size", "0", "give 64KiB to 1GiB"),
        ("crash-limit", "-1", "give 0 to 9223372036854775807"),
    ] {
        let arg = format!("--{setting}={value}");
        let run = backup(&w, &[os("--client-name=c"), os(&arg)], &[]);
        assert_eq!(run.code, 2, "{arg}: {run:#?}");
        assert_eq!(
            run.stderr,
            format!("ERROR: --{setting}: '{value}' is out of range: {says}\n"),
            "{arg}"
        );
        nothing_created(&w, &arg);
    }
    // The edges are values like any other.
    backup(
        &w,
        &[
            os("--client-name=c"),
            os("--backup-threads=1024"),
            os("--lock-timeout=0"),
            os("--storage-timeout=1"),
            os("--pack-size=64KiB"),
        ],
        &[],
    )
    .ok();
}

#[test]
fn a_value_out_of_range_names_where_it_came_from() {
    let w = BackupWorld::new("c");
    let conf = w
        .env
        .write("bad.conf", "[config]\n# why\nlock-timeout = -5\n");
    let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 3: setting 'lock-timeout': '-5' is out of range: give 0 to 604800\n",
            conf.display()
        )
    );
    let run = backup(&w, &[], &[("OBNAM_BACKUP_THREADS", os("100000"))]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        "ERROR: setting 'backup-threads': environment variable OBNAM_BACKUP_THREADS: \
         '100000' is out of range: give 0 to 1024\n"
    );
    nothing_created(&w, "config file and environment");
}

#[test]
fn an_integer_too_large_for_its_type_is_called_too_large() {
    let w = BackupWorld::new("c");
    for (value, says) in [
        ("99999999999999999999", "is too large"),
        ("-99999999999999999999", "is too small"),
        ("12x", "is not an integer"),
    ] {
        let arg = format!("--lock-timeout={value}");
        let run = backup(&w, &[os(&arg)], &[]);
        assert_eq!(run.code, 2, "{run:#?}");
        assert_eq!(
            run.stderr,
            format!("ERROR: --lock-timeout: '{value}' {says}\n")
        );
    }
}

/// Settings that are paths take any bytes (see `paths.rs`); the others
/// are text.
#[test]
fn an_environment_variable_that_is_not_utf8_is_an_error_naming_it() {
    let w = BackupWorld::new("c");
    let conf = w.env.write(
        "c.conf",
        format!("[config]\nrepository = {}\n", w.repo.display()),
    );
    for var in ["OBNAM_CLIENT_NAME", "OBNAM_INCLUDE", "OBNAM_EXCLUDE"] {
        let mut cmd = w.env.obnam();
        cmd.arg("--config")
            .arg(&conf)
            .env(var, OsStr::from_bytes(b"x_\xff"))
            .arg("backup")
            .arg(&w.data);
        let run = run_obnam(&mut cmd).no_rust_panic();
        assert_eq!(run.code, 1, "{var}: {run:#?}");
        assert!(
            run.stderr.contains(&format!(
                "environment variable {var}: its value \"x_\\xFF\" is not UTF-8 text"
            )),
            "{var}: {run:#?}"
        );
        nothing_created(&w, var);
    }
}

#[test]
fn an_option_value_that_is_not_utf8_is_refused_naming_the_option() {
    let w = BackupWorld::new("c");
    for option in [
        "--client-name",
        "--exclude",
        "--include",
        "--keep",
        "--generation",
    ] {
        let value = OsStr::from_bytes(b"/tmp/x_\xff");
        let mut cmd = w.env.obnam();
        cmd.arg(option).arg(value).arg("backup").arg(&w.data);
        let run = run_obnam(&mut cmd).no_rust_panic();
        assert_eq!(run.code, 2, "{option}: {run:#?}");
        assert!(
            run.stderr.starts_with(&format!(
                "ERROR: {option}: \"/tmp/x_\\xFF\" is not UTF-8 text"
            )),
            "{option}: {run:#?}"
        );
    }
}

#[test]
fn empty_list_items_are_refused() {
    let w = BackupWorld::new("c");
    for setting in ["exclude", "include", "exclude-from", "root"] {
        let run = backup(
            &w,
            &[os("--client-name=c"), os(&format!("--{setting}="))],
            &[],
        );
        assert_eq!(run.code, 2, "{setting}: {run:#?}");
        assert_eq!(
            run.stderr,
            format!("ERROR: --{setting}: a value must not be empty\n")
        );
        nothing_created(&w, setting);
    }
    let conf = w.env.write("e.conf", "[config]\nexclude = a, \"\"\n");
    let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 2: setting 'exclude': a list item must not be empty (\"\")\n",
            conf.display()
        )
    );
    // An empty name among the folders to back up would be the current one.
    let mut cmd = w.env.obnam();
    cmd.arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "c", "backup", ""]);
    let run = run_obnam(&mut cmd).fails().no_rust_panic();
    assert!(run.stderr.contains("must not be an empty name"), "{run:#?}");
}

#[test]
fn bad_client_names_are_refused_in_one_wording_before_anything_is_created() {
    let w = BackupWorld::new("c");
    for (name, says) in [
        ("", "a client name must not be empty"),
        (" ", "a client name must not be only white space (got \" \")"),
        (
            "a\nb",
            "a client name must not contain control characters (got \"a\\nb\", with U+000A)",
        ),
        (
            "a\u{1b}[31mb",
            "a client name must not contain control characters (got \"a\\u{1b}[31mb\", with U+001B)",
        ),
    ] {
        let arg = format!("--client-name={name}");
        let run = backup(&w, &[os(&arg)], &[]);
        assert_eq!(run.code, 2, "{name:?}: {run:#?}");
        assert_eq!(run.stderr, format!("ERROR: --client-name: {says}\n"));
        nothing_created(&w, name);
        // Reading commands say the same.
        let mut cmd = w.env.obnam();
        cmd.arg("--repository").arg(&w.repo).arg(&arg).arg("generations");
        let run = run_obnam(&mut cmd).no_rust_panic();
        assert_eq!(run.stderr, format!("ERROR: --client-name: {says}\n"));
    }
    let run = backup(&w, &[], &[("OBNAM_CLIENT_NAME", os(""))]);
    assert_eq!(
        run.stderr,
        "ERROR: setting 'client-name': environment variable OBNAM_CLIENT_NAME: \
         a client name must not be empty\n"
    );
    nothing_created(&w, "environment");
}

/// A repository URL that cannot be one (empty, a scheme without `//`,
/// a password) is refused where it is read, naming the config file's line
/// or the variable that holds it; on the command line it is a usage error.
/// It was found only once the repository was opened, the message naming
/// no source: a config in `/etc/obnam` that made every run fail left the
/// user to hunt for it.
#[test]
fn bad_repository_urls_name_where_they_came_from() {
    let w = BackupWorld::new("c");
    let run_with = |args: &[&OsStr], vars: &[(&str, &OsStr)]| {
        let mut cmd = w.env.obnam();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.args(args)
            .args(["--client-name", "c", "backup"])
            .arg(&w.data);
        run_obnam(&mut cmd).no_rust_panic()
    };
    for (url, says) in [
        ("", "bad repository URL '': it is empty"),
        (
            "s3:bucket",
            "bad repository URL 's3:bucket': s3: URLs are written s3://...; a folder whose \
             name starts with 's3:' is written ./s3:bucket",
        ),
        (
            "sftp://me:secret@127.0.0.1/r",
            "bad repository URL 'sftp://me:***@127.0.0.1/r': it holds a password; obnam logs \
             in with SSH keys (see --ssh-key)",
        ),
    ] {
        let arg = format!("--repository={url}");
        let run = run_with(&[os(&arg)], &[]);
        assert_eq!(run.code, 2, "{url:?}: {run:#?}");
        assert_eq!(run.stderr, format!("ERROR: --repository: {says}\n"));
        let conf = w.env.write(
            "repo.conf",
            format!("[config]\n# where\nrepository = {url}\n"),
        );
        let run = run_with(&[os("--config"), conf.as_os_str()], &[]);
        assert_eq!(run.code, 1, "{url:?}: {run:#?}");
        assert_eq!(
            run.stderr,
            format!("{}{says}\n", from_file(&conf, 3, "repository"))
        );
        let run = run_with(&[], &[("OBNAM_REPOSITORY", os(url))]);
        assert_eq!(run.code, 1, "{url:?}: {run:#?}");
        assert_eq!(run.stderr, format!("{}{says}\n", from_env("repository")));
        assert!(!run.stderr.contains("secret"), "{run:#?}");
    }
    // A folder named by white space alone shows it.
    let mut cmd = w.env.obnam();
    cmd.current_dir(w.env.path())
        .args(["--repository= ", "--client-name", "c", "generations"]);
    let run = run_obnam(&mut cmd).fails().no_rust_panic();
    assert_eq!(
        run.stderr,
        "ERROR: ' ' is not an obnam repository (it has no config object)\n"
    );
}

/// A path from the environment loses white space at its ends, as a
/// config file's value does (an env file's `OBNAM_REPOSITORY=/srv/backup `
/// made and filled a second repository, its name ending in a space);
/// quoted, the white space is kept.
#[test]
fn paths_from_the_environment_lose_white_space_at_their_ends() {
    let w = BackupWorld::new("c");
    w.file("a", b"x");
    w.backup(&[]).ok();
    let padded = format!(" {} \t", w.repo.display());
    let mut cmd = w.env.obnam();
    cmd.env("OBNAM_REPOSITORY", &padded)
        .args(["--client-name", "c", "backup"])
        .arg(&w.data);
    run_obnam(&mut cmd).ok();
    assert_eq!(w.obnam(&["genids"]).ok().stdout.lines().count(), 2);
    let mut spaced = w.repo.clone().into_os_string();
    spaced.push(" ");
    assert!(!std::path::Path::new(&spaced).exists());
    let mut cmd = w.env.obnam();
    cmd.env("OBNAM_REPOSITORY", format!("\"{} \"", w.repo.display()))
        .args(["--client-name", "c", "genids"]);
    let run = run_obnam(&mut cmd).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: '{} ' is not an obnam repository (it has no config object)\n",
            w.repo.display()
        )
    );
}

#[test]
fn forget_with_an_empty_keep_is_refused() {
    let w = BackupWorld::new("c");
    w.backup(&[]).ok();
    for keep in ["", " "] {
        let run = w.obnam(&["forget", "--keep", keep]).fails().no_rust_panic();
        assert!(
            run.stderr.contains("--keep: the policy is empty"),
            "{keep:?}: {run:#?}"
        );
    }
}

#[test]
fn config_file_syntax_errors_are_plain_and_name_the_line() {
    let w = BackupWorld::new("c");
    for (text, says) in [
        (
            "# a comment\n\n[config\n",
            "line 3: a section header must end with ']'",
        ),
        (
            "[config]\nlock-timeout = 5\n; again\nlock-timeout: 6\n",
            "line 4: 'lock-timeout' is set again (first on line 2); set it once",
        ),
        (
            "[config]\nexclude = \"a, b\n",
            "line 2: setting 'exclude': the quote that starts \"a, b has no closing quote",
        ),
    ] {
        let conf = w.env.write("syntax.conf", text);
        let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
        assert_eq!(run.code, 1, "{text}: {run:#?}");
        assert_eq!(
            run.stderr,
            format!("ERROR: config file {}: {says}\n", conf.display())
        );
    }
}

#[test]
fn list_config_files_lists_a_malformed_default_file_and_names_it() {
    let w = BackupWorld::new("c");
    let good = w.env.write("home/.config/obnam/a.conf", "[config]\n");
    let bad = w.env.home().join(".obnam.conf");
    std::fs::write(&bad, "[config\n").unwrap();
    let run = run_obnam(w.env.obnam().arg("--list-config-files")).no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stdout,
        format!("{}\n{}\n", bad.display(), good.display())
    );
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: config file {}: line 1: a section header must end with ']'\n",
            bad.display()
        )
    );
}

#[test]
fn plugin_folders_are_checked_and_loaded_once() {
    let w = BackupWorld::new("c");
    let file = w.env.write("not-a-folder", "x");
    let run = run_obnam(w.env.obnam().arg("--plugin-dir").arg(&file).arg("plugins")).fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin folder {} (from --plugin-dir) is not a folder\n",
            file.display()
        )
    );
    let run = run_obnam(w.env.obnam().args(["--plugin-dir", "", "plugins"])).fails();
    assert_eq!(
        run.stderr,
        "ERROR: plugin folder '' (from --plugin-dir) is an empty name\n"
    );
    let dir = w.env.plugin_dir("plugins", &["alpha"]);
    let twice = run_obnam(
        w.env
            .obnam()
            .arg("--no-bundled-plugins")
            .arg("--plugin-dir")
            .arg(&dir)
            .arg("--plugin-dir")
            .arg(dir.join("."))
            .arg("plugins"),
    )
    .ok();
    assert_eq!(twice.stderr, "", "loaded twice: {twice:#?}");
    assert_eq!(
        twice.stdout.matches("alpha").count(),
        run_obnam(
            w.env
                .obnam()
                .arg("--no-bundled-plugins")
                .arg("--plugin-dir")
                .arg(&dir)
                .arg("plugins")
        )
        .ok()
        .stdout
        .matches("alpha")
        .count()
    );
    // From the environment, with white space at its ends (an env file's
    // line): the folder, as for every path from the environment.
    let padded = run_obnam(
        w.env
            .obnam()
            .arg("--no-bundled-plugins")
            .env("OBNAM_PLUGIN_DIR", format!(" {} ", dir.display()))
            .arg("plugins"),
    )
    .ok();
    assert!(padded.stdout.contains("alpha"), "{padded:#?}");
}

/// The prefix of an error about `setting`'s value, as the host writes it
/// for each place a value can come from.
fn from_file(conf: &std::path::Path, line: usize, setting: &str) -> String {
    format!(
        "ERROR: config file {}: line {line}: setting '{setting}': ",
        conf.display()
    )
}

fn from_env(setting: &str) -> String {
    format!(
        "ERROR: setting '{setting}': environment variable OBNAM_{}: ",
        setting.to_ascii_uppercase().replace('-', "_")
    )
}

#[test]
fn checks_that_plugins_make_name_where_the_value_came_from() {
    let w = BackupWorld::new("c");
    let zstd = "'99' is out of range for zstd: give -131072 to 22 (unset: 1)";
    // Checked by the plugin when the backup starts (the codec decides the
    // range): an error, never a usage error.
    let run = backup(&w, &[os("--compress-level=99")], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, format!("ERROR: --compress-level: {zstd}\n"));
    let conf = w.env.write(
        "level.conf",
        "[config]\n# zstd's levels\ncompress-level = 99\n",
    );
    let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!("{}{zstd}\n", from_file(&conf, 3, "compress-level"))
    );
    let run = backup(&w, &[], &[("OBNAM_COMPRESS_LEVEL", os("99"))]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!("{}{zstd}\n", from_env("compress-level"))
    );
    nothing_created(&w, "compress-level");

    // Declared by the plugin, checked by the host wherever it is written.
    let odd = "'65' is not a multiple of 2";
    let run = backup(&w, &[os("--chunk-min-size=65")], &[]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(run.stderr, format!("ERROR: --chunk-min-size: {odd}\n"));
    let conf = w.env.write(
        "chunks.conf",
        "[config]\nchunking = content-defined\nchunk-min-size = 65\n",
    );
    let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!("{}{odd}\n", from_file(&conf, 3, "chunk-min-size"))
    );
    let run = backup(&w, &[], &[("OBNAM_CHUNK_MAX_SIZE", os("1025"))]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!(
            "{}'1025' is not a multiple of 2\n",
            from_env("chunk-max-size")
        )
    );
    nothing_created(&w, "chunk sizes");

    // A check of one value against another names where each came from.
    let conf = w
        .env
        .write("grow.conf", "[config]\n\nchunk-min-size = 512KiB\n");
    let run = backup(
        &w,
        &[
            os("--config"),
            conf.as_os_str(),
            os("--chunk-avg-size=256KiB"),
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .starts_with(&from_file(&conf, 3, "chunk-min-size")),
        "{run:#?}"
    );
    assert!(run.stderr.contains("--chunk-avg-size"), "{run:#?}");
    nothing_created(&w, "chunk sizes that do not grow");

    let conf = w
        .env
        .write("cipher.conf", "[config]\nencrypt = yes\ncipher = rot13\n");
    let run = backup(
        &w,
        &[os("--config"), conf.as_os_str()],
        &[("OBNAM_PASSPHRASE", os("pw"))],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "{}'rot13' is not one of: auto, ",
            from_file(&conf, 3, "cipher")
        )),
        "{run:#?}"
    );
    nothing_created(&w, "cipher");
    let run = backup(&w, &[os("--testing-fail-matching=(")], &[]);
    assert!(
        run.stderr
            .starts_with("ERROR: --testing-fail-matching: bad regular expression '('"),
        "{run:#?}"
    );
    let conf = w.env.write("exclude.conf", "[config]\n\nexclude = a, (\n");
    let run = backup(&w, &[os("--config"), conf.as_os_str()], &[]);
    assert!(
        run.stderr.starts_with(&format!(
            "{}bad regular expression '('",
            from_file(&conf, 3, "exclude")
        )),
        "{run:#?}"
    );
    // A pattern read from a file: the file, its line, and where the file
    // was named.
    let list = w.env.write("patterns", "# comment\n\\.ok$\n(\n");
    let run = backup(&w, &[os("--exclude-from"), list.as_os_str()], &[]);
    assert!(
        run.stderr.starts_with(&format!(
            "ERROR: --exclude-from: {}: line 3: bad regular expression '('",
            list.display()
        )),
        "{run:#?}"
    );
    let run = backup(&w, &[], &[("OBNAM_EXCLUDE_FROM", os("/nonexistent/x"))]);
    assert!(
        run.stderr.starts_with(&format!(
            "{}cannot read /nonexistent/x",
            from_env("exclude-from")
        )),
        "{run:#?}"
    );
    nothing_created(&w, "patterns");

    // Commands other than backup say the same.
    backup(&w, &[os("--client-name=c")], &[]).ok();
    let conf = w.env.write("keep.conf", "[config]\n\nkeep = 7x\n");
    let mut cmd = w.env.obnam();
    cmd.arg("--repository")
        .arg(&w.repo)
        .arg("--config")
        .arg(&conf)
        .args(["--client-name", "c", "forget"]);
    let run = run_obnam(&mut cmd).no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with(&from_file(&conf, 3, "keep")),
        "{run:#?}"
    );
    let mut cmd = w.env.obnam();
    cmd.arg("--repository")
        .arg(&w.repo)
        .env("OBNAM_WARN_AGE", "soon")
        .args(["--client-name", "c", "nagios-last-backup-age"]);
    let run = run_obnam(&mut cmd).no_rust_panic();
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stdout
            .starts_with(&from_env("warn-age").replacen("ERROR: ", "OBNAM UNKNOWN: ", 1)),
        "{run:#?}"
    );
}

/// A development setting or `pretend` left in a config file or the
/// environment is warned of at every run, `--quiet` or not: `pretend`
/// made every backup of a `--quiet` cron job store nothing, exit 0, with
/// no word. Given on the command line, each is meant for that run.
#[test]
fn settings_left_to_apply_to_every_run_are_warned_of() {
    let w = BackupWorld::new("c");
    w.file("a", b"x");
    let pretend_env = "WARNING: 'pretend' is set (from environment variable OBNAM_PRETEND): \
                       this run only says what it would do, and changes nothing (a backup \
                       stores nothing); --no-pretend overrides it\n";
    let run = backup(&w, &[os("--quiet")], &[("OBNAM_PRETEND", os("yes"))]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stderr, pretend_env);
    nothing_created(&w, "pretend");
    let conf = w.env.write("p.conf", "[config]\n\npretend = yes\n");
    let run = backup(&w, &[os("--quiet"), os("--config"), conf.as_os_str()], &[]);
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: 'pretend' is set (from config file {}, line 3): this run only says what \
             it would do, and changes nothing (a backup stores nothing); --no-pretend \
             overrides it\n",
            conf.display()
        )
    );
    nothing_created(&w, "pretend in a config file");
    // Overridden on the command line: no word, and the backup is made.
    let run = backup(
        &w,
        &[os("--quiet"), os("--no-pretend")],
        &[("OBNAM_PRETEND", os("yes"))],
    );
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:#?}");
    assert!(w.repo.join("config").exists());
    let run = backup(
        &w,
        &[os("--quiet")],
        &[("OBNAM_TESTING_GENERATION_TIME", os("2026-01-05T10:00:00Z"))],
    );
    assert_eq!(
        run.stderr,
        "WARNING: the development setting 'testing-generation-time' is set (from environment \
         variable OBNAM_TESTING_GENERATION_TIME): it exists to test obnam, not for real backups \
         (see \"Development settings\" in the user guide)\n"
    );
}

/// An S3 endpoint that cannot be one is refused before anything is
/// opened, without repeating it: one holding a password went into this
/// machine's records and every message, one with a query sent requests
/// elsewhere and the answer read as a corrupt repository.
#[test]
fn an_s3_endpoint_that_cannot_be_one_is_refused_without_repeating_it() {
    let w = BackupWorld::new("c");
    for (endpoint, why) in [
        (
            "http://me:s3cret@127.0.0.1:9",
            "an S3 endpoint must not hold a user name or password",
        ),
        (
            "http://127.0.0.1:9/?s3cret=1",
            "an S3 endpoint must not hold a query or fragment",
        ),
        (
            "127.0.0.1:9",
            "an S3 endpoint must start with http:// or https://",
        ),
        (
            "https://",
            "an S3 endpoint must name a server after its scheme",
        ),
    ] {
        let mut cmd = w.env.obnam();
        cmd.args(["--repository", "s3://bucket/r", "--s3-endpoint", endpoint])
            .args(["--client-name", "c", "generations"]);
        let run = run_obnam(&mut cmd).no_rust_panic();
        assert_eq!(run.code, 2, "{endpoint}: {run:#?}");
        assert!(
            run.stderr
                .starts_with(&format!("ERROR: --s3-endpoint: {why}")),
            "{endpoint}: {run:#?}"
        );
        assert!(!run.stderr.contains("s3cret"), "{run:#?}");
        // From the environment, when the store is opened.
        let mut cmd = w.env.obnam();
        cmd.args([
            "--repository",
            "s3://bucket/r",
            "--client-name",
            "c",
            "generations",
        ])
        .env("AWS_ENDPOINT_URL", endpoint);
        let run = run_obnam(&mut cmd).no_rust_panic();
        assert_eq!(run.code, 1, "{endpoint}: {run:#?}");
        assert!(
            run.stderr.contains(&format!("AWS_ENDPOINT_URL: {why}")),
            "{endpoint}: {run:#?}"
        );
        assert!(!run.stderr.contains("s3cret"), "{run:#?}");
    }
    let records = w.env.home().join(".local/state/obnam/repositories");
    assert!(!records.exists() || std::fs::read_dir(&records).unwrap().count() == 0);
}
