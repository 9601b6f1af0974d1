//! A plugin built against another plugin-api version: built here, out of
//! tree, with plain `cargo build` against a copy of plugin-api whose
//! version is changed, then loaded by the real host. And one built against
//! the previous release's own source, taken from the repository's history:
//! what a compatible release promises is that such a plugin still loads
//! and works.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
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
    let manifest = fs::read_to_string(ws.join("plugin-api/Cargo.toml")).unwrap();
    build_plugin(
        root,
        &api,
        &manifest,
        api_version,
        ("versioned", PLUGIN_SOURCE),
    )
}

/// Build the plugin `source` (the crate `NAME-plugin`) against the
/// plugin-api sources in `api` (its `src`), with the dependencies of
/// `manifest` (plugin-api's), as version `api_version`; returns the
/// library. Each plugin has a name of its own, so that tests building
/// at once in the shared target folder do not take one another's library.
fn build_plugin(
    root: &Path,
    api: &Path,
    manifest: &str,
    api_version: &str,
    (name, source): (&str, &str),
) -> PathBuf {
    let ws = workspace_dir();
    // plugin-api's own dependencies, whatever they are: only the version
    // changes.
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
    // Built afresh for each api: the same package name and version in the
    // shared target folder must not reuse another api's build.
    let _ = fs::remove_dir_all(&plugin);
    fs::create_dir_all(plugin.join("src")).unwrap();
    fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}-plugin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
             plugin-api = {{ package = \"obnam-plugin-api\", path = \"{}\" }}\n\n[workspace]\n",
            api.display()
        ),
    )
    .unwrap();
    fs::write(plugin.join("src/lib.rs"), source).unwrap();
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
    let lib = target.join(format!("debug/lib{name}_plugin.so"));
    let dest = root.join(format!("lib{name}-{api_version}.so"));
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
    // The run does not go on without it: a backup would store what an
    // exclude plugin leaves out, exit 0.
    let run = env.run_with(&dir, ["plugins"]).fails().no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} cannot be used: plugin was built against plugin-api {newer}, newer than this obnam's {host_api}; upgrade obnam or rebuild the plugin against {host_api} {MOVE_IT}\n",
            file.display()
        )
    );

    // Another minor version of a 0.x api is refused with one line naming both.
    let other = format!("0.{}.0", minor + 1);
    let lib = build_plugin_against(&build, &other);
    let dir = env.plugin_dir("incompatible", &[]);
    let file = dir.join("libversioned.so");
    fs::copy(&lib, &file).unwrap();
    let run = env.run_with(&dir, ["plugins"]).fails().no_rust_panic();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: plugin file {} cannot be used: plugin was built against plugin-api {other}; this obnam needs plugin-api 0.{minor}.x {MOVE_IT}\n",
            file.display()
        )
    );
    let run = env.run_with(&dir, ["versioned"]).fails();
    assert!(run.stderr.contains("cannot be used"), "{}", run.stderr);
}

/// What an error about a plugin that cannot be used ends with.
const MOVE_IT: &str = "(obnam does not run without a plugin of a folder it was given: move the \
                       file out of the folder to run without it)";

/// A plugin as earlier plugin-api releases allowed: a setting of its own
/// scoped to its subcommand (0.1.5), and the host's settings read as
/// text, paths included.
const OLD_PLUGIN_SOURCE: &str = r#"
use plugin_api::{App, Plugin, Result, Setting};

#[derive(Default)]
struct Old;

impl Plugin for Old {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::integer("old-count")
                .default("1")
                .subcommands(&["old-read"])
                .help("how many"),
        );
        app.add_subcommand("old-read", "", "reads settings as before", |ctx, _| {
            ctx.outln(&format!("api={}", plugin_api::API_VERSION))?;
            ctx.outln(&format!("count={}", ctx.integer("old-count")?))?;
            ctx.outln(&format!("log={:?}", ctx.string("log")?))?;
            ctx.outln(&format!("repository={:?}", ctx.string("repository")?))
        });
        Ok(())
    }
}

plugin_api::export_plugin!("old", Old);
"#;

/// The plugin-api sources and manifest of release `version`, from the
/// repository's history: the newest commit that has it. `None` (the test
/// then says why it skips) where there is no history to take it from.
fn api_from_history(version: &str, into: &Path) -> Option<String> {
    let ws = workspace_dir();
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&ws)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let line = format!("version = \"{version}\"");
    let has = |commit: &str| {
        git(&["show", &format!("{commit}:plugin-api/Cargo.toml")])
            .is_some_and(|m| m.lines().any(|l| l == line))
    };
    // The last commit of the release (a release gains what is added to it
    // until the next): the parent of the newest commit that changed the
    // line, if that one moved on from it; else the newest commit of all.
    let found = git(&[
        "log",
        "-1",
        "--format=%H",
        "-S",
        &line,
        "--",
        "plugin-api/Cargo.toml",
    ])?;
    if found.is_empty() {
        return None;
    }
    let commit = if !has(&found) {
        format!("{found}^")
    } else if has("HEAD") {
        "HEAD".to_string()
    } else {
        found
    };
    let manifest = git(&["show", &format!("{commit}:plugin-api/Cargo.toml")])?;
    fs::create_dir_all(into).unwrap();
    let archive = Command::new("git")
        .arg("-C")
        .arg(&ws)
        .args(["archive", "--format=tar", &commit, "plugin-api/src"])
        .output()
        .ok()?;
    if !archive.status.success() {
        return None;
    }
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("--strip-components=1")
        .arg("-C")
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    tar.stdin.take()?.write_all(&archive.stdout).ok()?;
    tar.wait().ok()?.success().then_some(manifest)
}

#[test]
fn a_plugin_built_against_the_previous_release_loads_and_reads_its_settings() {
    let env = TestEnv::new();
    let api_toml = fs::read_to_string(workspace_dir().join("plugin-api/Cargo.toml")).unwrap();
    let host_api = api_toml
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("plugin-api version")
        .to_string();
    let patch: u64 = host_api.rsplit('.').next().unwrap().parse().unwrap();
    if patch == 0 {
        eprintln!("skipped: plugin-api {host_api} has no earlier compatible release");
        return;
    }
    let previous = format!("{}.{}", host_api.rsplit_once('.').unwrap().0, patch - 1);
    let api = env.path().join(format!("api-{previous}"));
    let Some(manifest) = api_from_history(&previous, &api) else {
        eprintln!("skipped: no git history to take plugin-api {previous} from");
        return;
    };
    let lib = build_plugin(
        &env.path().join("build"),
        &api,
        &manifest,
        &previous,
        ("old", OLD_PLUGIN_SOURCE),
    );
    let dir = env.plugin_dir("old", &[]);
    fs::copy(&lib, dir.join("libold.so")).unwrap();

    let listed = env.run_with(&dir, ["plugins"]).ok();
    assert_eq!(listed.stderr, "", "{listed:#?}");
    assert!(listed.stdout.starts_with("old "), "{listed:#?}");
    // Beside plugins built against this release, whose views of the same
    // types are longer.
    let listed = env
        .run([
            OsStr::new("--plugin-dir"),
            dir.as_os_str(),
            OsStr::new("plugins"),
        ])
        .ok();
    assert_eq!(listed.stderr, "", "{listed:#?}");
    assert!(listed.stdout.contains("\nold "), "{listed:#?}");
    assert!(listed.stdout.contains("restore "), "{listed:#?}");

    // Its setting, and the host's path settings read as text.
    let log = env.path().join("old.log");
    let mut cmd = env.obnam();
    cmd.args(["--no-bundled-plugins", "--plugin-dir"])
        .arg(&dir)
        .args(["-r", "/srv/repo", "--old-count", "7", "--log"])
        .arg(&log)
        .arg("old-read");
    let run = obnam_test_support::run(&mut cmd).ok();
    assert_eq!(
        run.stdout,
        format!(
            "api={previous}\ncount=7\nlog=Some({:?})\nrepository=Some(\"/srv/repo\")\n",
            log.to_str().unwrap()
        )
    );
    let conf = env.write("old.conf", "[config]\n\nold-count = 5\n");
    let run = env
        .run_with(
            &dir,
            [
                OsStr::new("--config"),
                conf.as_os_str(),
                OsStr::new("old-read"),
            ],
        )
        .ok();
    assert!(run.stdout.contains("\ncount=5\n"), "{run:#?}");
    let run = env
        .run_with(&dir, ["--old-count", "x", "old-read"])
        .no_rust_panic();
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(run.stderr, "ERROR: --old-count: 'x' is not an integer\n");

    // A path that is not UTF-8 cannot be text: an error that says so, not
    // another path in its place.
    let mut cmd = env.obnam();
    cmd.args(["--no-bundled-plugins", "--plugin-dir"])
        .arg(&dir)
        .arg("-r")
        .arg(OsStr::from_bytes(b"/srv/d\xe9p\xf4t"))
        .arg("old-read");
    let run = obnam_test_support::run(&mut cmd).fails().no_rust_panic();
    assert!(
        run.stderr.contains(
            "setting 'repository' is the path \"/srv/d\\xe9p\\xf4t\", which is not UTF-8 text"
        ),
        "{run:#?}"
    );
}
