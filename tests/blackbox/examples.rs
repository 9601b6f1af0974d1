//! The example third-party plugins in `examples/`: each built with plain
//! `cargo build` in its own folder, loaded with `--plugin-dir`, and shown
//! working in a real backup and restore.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use obnam_test_support::{workspace_dir, TestEnv};

/// Copy a folder (without its `target`).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Build an example plugin as a plugin author would: copied out of the
/// obnam checkout with `plugin-api` beside it (so no obnam workspace is
/// above either), with plain `cargo build`. Returns its library.
fn build_example(name: &str, lib: &str) -> PathBuf {
    let outside = tempfile::tempdir().unwrap();
    copy_tree(
        &workspace_dir().join("plugin-api"),
        &outside.path().join("plugin-api"),
    );
    let dir = outside.path().join("examples").join(name);
    copy_tree(&workspace_dir().join("examples").join(name), &dir);
    let target = workspace_dir().join("target/nested-examples");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(lib)
}

fn install(lib: &Path, dir: &Path) {
    fs::copy(lib, dir.join(lib.file_name().unwrap())).unwrap();
}

#[test]
fn third_party_plugins_build_alone_and_work_in_a_backup() {
    let skip = build_example("skip-marker", "libobnam_skip_marker.so");
    let summary = build_example("backup-summary", "libobnam_backup_summary.so");
    let env = TestEnv::new();
    let plugins = env.plugin_dir("third-party", &[]);
    install(&skip, &plugins);
    install(&summary, &plugins);

    let data = env.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("normal.txt"), "keep me").unwrap();
    fs::write(data.join("scratch.txt"), "temporary\n# OBNAM-SKIP\n").unwrap();
    fs::write(data.join("other.txt"), "also kept, marked NOT-SKIP").unwrap();
    let repo = env.path().join("repo");
    let summary_file = env.path().join("summaries.jsonl");
    let obnam = |args: &[&str]| {
        obnam_test_support::run(
            env.obnam()
                .arg("--plugin-dir")
                .arg(&plugins)
                .arg("--repository")
                .arg(&repo)
                .args(["--client-name", "c"])
                .args(args),
        )
    };
    let listed = obnam(&["plugins"]).ok();
    assert!(listed.stdout.contains("skip-marker"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("backup-summary"),
        "{}",
        listed.stdout
    );
    // skip-marker says its setting belongs to backup (and verify);
    // backup-summary says nothing, so its setting is under every subcommand.
    let help = obnam(&["backup", "--help"]).ok();
    assert!(
        help.stdout.contains("--skip-marker <TEXT>"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("--summary-file <FILE>"),
        "{}",
        help.stdout
    );
    let help = obnam(&["--help"]).ok();
    assert!(!help.stdout.contains("--skip-marker"), "{}", help.stdout);
    assert!(
        help.stdout.contains("--summary-file <FILE>"),
        "{}",
        help.stdout
    );

    let run = obnam(&[
        "backup",
        data.to_str().unwrap(),
        "--summary-file",
        summary_file.to_str().unwrap(),
        "--verbose",
    ])
    .ok();
    assert!(
        run.stdout.contains("carries the marker 'OBNAM-SKIP'"),
        "{}",
        run.stdout
    );
    let gen = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Generation "))
        .unwrap()
        .to_string();

    let text = fs::read_to_string(&summary_file).unwrap();
    assert_eq!(text.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["backup"]["generation"], gen.as_str());
    assert_eq!(line["backup"]["files"], 2);
    assert_eq!(line["backup"]["excluded"], 1);
    assert_eq!(line["backup"]["client"], "c");

    let to = env.path().join("restored");
    obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let restored = to.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(restored.join("normal.txt")).unwrap(),
        "keep me"
    );
    assert!(restored.join("other.txt").exists());
    assert!(!restored.join("scratch.txt").exists());

    // The plugin's own setting works from a config file too.
    let cfg = env.write("obnam.conf", "[config]\nskip-marker = keep me\n");
    obnam(&[
        "--config",
        cfg.to_str().unwrap(),
        "backup",
        data.to_str().unwrap(),
    ])
    .ok();
    let ls = obnam(&["ls", data.to_str().unwrap()]).ok();
    assert!(!ls.stdout.contains("normal.txt"), "{}", ls.stdout);
    assert!(ls.stdout.contains("scratch.txt"), "{}", ls.stdout);
}
