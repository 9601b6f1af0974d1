//! A plugin built against another plugin-api version: built here, out of
//! tree, with plain `cargo build` against a copy of plugin-api whose
//! version is changed, then loaded by the real host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use obnam_test_support::{workspace_dir, TestEnv};

const PLUGIN_SOURCE: &str = r#"
use plugin_api::{App, Plugin, Result};

#[derive(Default)]
struct Versioned;

impl Plugin for Versioned {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_subcommand("versioned", "", "prints the api version", |ctx, _| {
            ctx.outln(plugin_api::API_VERSION)
        });
        Ok(())
    }
}

plugin_api::export_plugin!("versioned", Versioned);
"#;

/// Build a plugin against plugin-api relabelled as `api_version`; returns the library.
fn build_plugin_against(root: &Path, api_version: &str) -> PathBuf {
    let api = root.join(format!("api-{api_version}"));
    fs::create_dir_all(&api).unwrap();
    let ws = workspace_dir();
    copy_dir(&ws.join("plugin-api/src"), &api.join("src"));
    // plugin-api's own dependencies, whatever they are now: only the
    // version changes.
    let manifest = fs::read_to_string(ws.join("plugin-api/Cargo.toml")).unwrap();
    let dependencies = &manifest[manifest
        .find("[dependencies]")
        .expect("plugin-api has dependencies")..];
    fs::write(
        api.join("Cargo.toml"),
        format!(
            "[package]\nname = \"obnam-plugin-api\"\nversion = \"{api_version}\"\nedition = \"2021\"\n\n\
             [lib]\nname = \"plugin_api\"\n\n{dependencies}"
        ),
    )
    .unwrap();
    let plugin = root.join(format!("plugin-{api_version}"));
    fs::create_dir_all(plugin.join("src")).unwrap();
    fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"versioned-plugin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
             plugin-api = {{ package = \"obnam-plugin-api\", path = \"{}\" }}\n\n[workspace]\n",
            api.display()
        ),
    )
    .unwrap();
    fs::write(plugin.join("src/lib.rs"), PLUGIN_SOURCE).unwrap();
    // Same dependency versions as the workspace, so nothing new is fetched.
    fs::copy(ws.join("Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = ws.join("target/nested-abi-test");
    let out = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .current_dir(&plugin)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the plugin failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("debug/libversioned_plugin.so");
    let dest = root.join(format!("libversioned-{api_version}.so"));
    fs::copy(&lib, &dest).unwrap();
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn plugins_built_against_other_api_versions() {
    let env = TestEnv::new();
    let build = env.path().join("build");
    let api_toml = fs::read_to_string(workspace_dir().join("plugin-api/Cargo.toml")).unwrap();
    let host_api = api_toml
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("plugin-api version")
        .to_string();
    let (major, minor) = {
        let mut parts = host_api.split('.').map(|p| p.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    assert_eq!(major, 0, "this test assumes a 0.x plugin-api");

    // A plugin built against this very version loads and runs.
    let same = build_plugin_against(&build, &host_api);
    let dir = env.plugin_dir("compatible", &[]);
    fs::copy(&same, dir.join("libversioned.so")).unwrap();
    let run = env.run_with(&dir, ["versioned"]).ok();
    assert_eq!(run.stdout, format!("{host_api}\n"));
    assert_eq!(run.stderr, "");

    // A newer patch release may have added methods this host lacks: refused.
    let newer = format!("0.{minor}.99");
    let lib = build_plugin_against(&build, &newer);
    let dir = env.plugin_dir("newer", &[]);
    let file = dir.join("libversioned.so");
    fs::copy(&lib, &file).unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok().no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: ignoring {}: plugin was built against plugin-api {newer}, newer than this obnam's {host_api}; upgrade obnam or rebuild the plugin against {host_api}\n",
            file.display()
        )
    );

    // Another minor version of a 0.x api is refused with one line naming both.
    let other = format!("0.{}.0", minor + 1);
    let lib = build_plugin_against(&build, &other);
    let dir = env.plugin_dir("incompatible", &[]);
    let file = dir.join("libversioned.so");
    fs::copy(&lib, &file).unwrap();
    let run = env.run_with(&dir, ["plugins"]).ok().no_rust_panic();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "WARNING: ignoring {}: plugin was built against plugin-api {other}; this obnam needs plugin-api 0.{minor}.x\n",
            file.display()
        )
    );
    let run = env.run_with(&dir, ["versioned"]).fails();
    assert!(
        run.stderr.contains("unrecognized subcommand 'versioned'"),
        "{}",
        run.stderr
    );
}
