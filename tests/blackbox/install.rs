//! The install script puts `obnam` in PREFIX/bin and the bundled plugins in
//! PREFIX/lib/obnam/plugins, where the installed binary finds them.

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
