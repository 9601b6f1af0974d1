//! Settings that are paths take any bytes, as a Linux path does: a backup
//! root, a repository folder, a restore target, a log file and an
//! `--exclude-from` file named in Latin-1 (byte 0xE9 for `é`, as an old
//! system wrote them) are used as they are, whether given on the command
//! line, in the environment or in a config file (where such a byte is
//! written `\xe9` inside double quotes). Messages show them escaped, and
//! `--dump-config` writes them so that they read back.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use obnam_test_support::awkward::{assert_same, bytes_path, restored};
use obnam_test_support::{run, Run, TestEnv};

/// obnam in `env`, reading no config file but those given.
fn obnam(env: &TestEnv) -> Command {
    let mut cmd = env.obnam();
    cmd.arg("--no-default-configs").args(["--client-name", "c"]);
    cmd
}

/// A tree below `root` whose names (and one content) are Latin-1 bytes.
fn latin1_tree(root: &Path) {
    fs::create_dir_all(bytes_path(root, b"sous-dossier \xe9t\xe9")).unwrap();
    fs::write(bytes_path(root, b"r\xe9sum\xe9.txt"), b"caf\xe9 au lait\n").unwrap();
    fs::write(
        bytes_path(root, b"sous-dossier \xe9t\xe9/na\xefve"),
        vec![0xe9; 5000],
    )
    .unwrap();
    fs::write(root.join("plain.txt"), b"plain\n").unwrap();
}

/// Standard error shows bytes that are not UTF-8 escaped, never as U+FFFD.
#[track_caller]
fn no_replacement_character(run: &Run) {
    assert!(
        !run.stderr.contains('\u{fffd}') && !run.stdout.contains('\u{fffd}'),
        "a name was shown lossily: {run:#?}"
    );
}

#[test]
fn a_latin1_root_backs_up_into_a_latin1_repository_and_restores_into_a_latin1_folder() {
    let env = TestEnv::new();
    // The root's parent is not UTF-8 either.
    let root = bytes_path(&bytes_path(env.path(), b"ancien-caf\xe9"), b"caf\xe9");
    latin1_tree(&root);
    let repo = bytes_path(env.path(), b"d\xe9p\xf4t");
    let to = bytes_path(env.path(), b"restaur\xe9");

    // Root and repository from the command line.
    let backup = run(obnam(&env)
        .arg("-r")
        .arg(&repo)
        .arg("--root")
        .arg(&root)
        .arg("backup"))
    .no_rust_panic();
    no_replacement_character(&backup);
    let backup = backup.ok();
    assert!(
        backup.stderr.contains("d\\xe9p\\xf4t"),
        "the new repository is named escaped: {backup:#?}"
    );
    assert!(repo.join("config").is_file(), "no repository at its path");

    // The repository from the environment, the target from the command line.
    run(obnam(&env)
        .env("OBNAM_REPOSITORY", &repo)
        .arg("restore")
        .arg("--to")
        .arg(&to))
    .ok();
    assert_same(&root, &restored(&to, &root));

    // Restoring again into the same folder fails, naming it escaped.
    let again = run(obnam(&env)
        .arg("-r")
        .arg(&repo)
        .arg("restore")
        .arg("--to")
        .arg(&to))
    .fails()
    .no_rust_panic();
    no_replacement_character(&again);
    assert!(
        again
            .stderr
            .contains("restaur\\xe9: the folder is not empty"),
        "{again:#?}"
    );
}

#[test]
fn a_config_file_gives_bytes_that_are_not_utf8_with_backslash_x() {
    let env = TestEnv::new();
    let root = bytes_path(env.path(), b"caf\xe9");
    latin1_tree(&root);
    let repo = bytes_path(env.path(), b"d\xe9p\xf4t");
    let to = bytes_path(env.path(), b"restaur\xe9");
    let base = env.path().to_str().expect("UTF-8 test folder");
    let conf = env.write(
        "paths.conf",
        format!(
            "[config]\n\
             repository = \"{base}/d\\xe9p\\xf4t\"\n\
             root = \"{base}/caf\\xe9\", \"{base}/plain, with a comma\"\n\
             to = \"{base}/restaur\\xE9\"\n"
        ),
    );
    fs::create_dir(env.path().join("plain, with a comma")).unwrap();
    run(obnam(&env).arg("--config").arg(&conf).arg("backup")).ok();
    assert!(repo.join("config").is_file());
    run(obnam(&env).arg("--config").arg(&conf).arg("restore")).ok();
    assert_same(&root, &restored(&to, &root));
    assert!(restored(&to, &env.path().join("plain, with a comma")).is_dir());

    // The environment's value is bytes as they are; a list is split at
    // commas as in a config file.
    let to2 = bytes_path(env.path(), b"encore \xe9");
    run(obnam(&env)
        .arg("--config")
        .arg(&conf)
        .env("OBNAM_TO", &to2)
        .arg("restore"))
    .ok();
    assert_same(&root, &restored(&to2, &root));
}

#[test]
fn dump_config_writes_paths_that_are_not_utf8_so_that_they_read_back() {
    let env = TestEnv::new();
    let awkward: [&[u8]; 5] = [
        b"/srv/d\xe9p\xf4t",
        b"/tmp/a\nb",
        b"/tmp/back\\slash \\xe9",
        b"/tmp/\"quoted\"",
        b" /lead",
    ];
    // The log file is opened before the dump: it goes in the test's folder.
    let log = bytes_path(env.path(), b"back\\slash \\xe9 \xe9.log");
    let mut cmd = obnam(&env);
    cmd.arg("-r")
        .arg(OsStr::from_bytes(awkward[0]))
        .arg("--to")
        .arg(OsStr::from_bytes(awkward[1]))
        .arg("--log")
        .arg(&log);
    for root in awkward {
        cmd.arg("--root").arg(OsStr::from_bytes(root));
    }
    cmd.arg("--exclude-from")
        .arg(OsStr::from_bytes(b"/etc/ex, cl\xe9"));
    let dump = run(cmd.arg("--dump-config")).ok().stdout;
    assert!(
        dump.contains("repository = \"/srv/d\\xe9p\\xf4t\"\n"),
        "{dump}"
    );
    assert!(dump.contains("to = \"/tmp/a\\x0ab\"\n"), "{dump}");
    let conf = env.write("dump.conf", &dump);
    let again = run(obnam(&env).arg("--config").arg(&conf).arg("--dump-config"))
        .ok()
        .stdout;
    assert_eq!(again, dump, "the dump did not read back as itself");
}

#[test]
fn exclude_from_and_log_take_files_whose_names_are_not_utf8() {
    let env = TestEnv::new();
    let root = env.path().join("data");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("secret"), b"s").unwrap();
    fs::write(root.join("kept"), b"k").unwrap();
    let patterns = bytes_path(env.path(), b"exclusions-\xe9");
    fs::write(&patterns, b"# one pattern\n/secret$\n").unwrap();
    // The log is written inside the root, and never backed up.
    let log = bytes_path(&root, b"journal-\xe9.log");
    let repo = env.path().join("repo");
    run(obnam(&env)
        .arg("-r")
        .arg(&repo)
        .arg("--exclude-from")
        .arg(&patterns)
        .arg("--log")
        .arg(&log)
        .arg("backup")
        .arg(&root))
    .ok();
    assert!(
        fs::metadata(&log).is_ok_and(|m| m.len() > 0),
        "no log written"
    );
    let to = env.path().join("to");
    run(obnam(&env)
        .arg("-r")
        .arg(&repo)
        .arg("restore")
        .arg("--to")
        .arg(&to))
    .ok();
    assert!(restored(&to, &root.join("kept")).is_file());
    assert!(!restored(&to, &root.join("secret")).exists());
    assert!(!restored(&to, &log).exists(), "the log was backed up");

    // A file that cannot be read is named escaped.
    let missing = bytes_path(env.path(), b"absent-\xe9");
    let run = run(obnam(&env)
        .arg("-r")
        .arg(&repo)
        .arg("--exclude-from")
        .arg(&missing)
        .arg("backup")
        .arg(&root))
    .fails()
    .no_rust_panic();
    no_replacement_character(&run);
    assert!(run.stderr.contains("absent-\\xe9"), "{run:#?}");
}

#[test]
fn a_setting_that_is_not_a_path_still_refuses_bytes_that_are_not_utf8() {
    let env = TestEnv::new();
    let run = run(obnam(&env)
        .arg("--exclude")
        .arg(OsStr::from_bytes(b"x\xe9"))
        .arg("--dump-config"))
    .no_rust_panic();
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr
            .starts_with("ERROR: --exclude: \"x\\xE9\" is not UTF-8 text"),
        "{run:#?}"
    );
}
