//! The exclude plugin: leaves files out of a backup. It subscribes to the
//! backup plugin's `backup-exclude` hook like any third-party plugin.
//!
//! Rules, each a small predicate ([`rules`]), checked in this order:
//!
//! 1. `--include PATTERN`: a path that matches is never excluded by the
//!    pattern rules below (the other rules still apply);
//! 2. `--exclude PATTERN` and `--exclude-from FILE`: a path whose absolute
//!    form matches is excluded (a regular expression searched anywhere,
//!    as Obnam did, or another style by prefix: see the `obnam-patterns` crate);
//! 3. `--exclude-caches`: the contents of a directory holding a valid
//!    `CACHEDIR.TAG` are excluded, the tag file itself is kept;
//! 4. `--exclude-if-present NAME`: a directory holding a file NAME is excluded;
//! 5. `--exclude-larger-than SIZE`: a file larger than SIZE is excluded;
//! 6. `--one-file-system`: an object on another device than its root is excluded;
//! 7. the `--log` file is always excluded.
//!
//! Patterns are compiled once, when the backup starts (the
//! `backup-starting` hook), so a bad one stops the backup before anything
//! is written.

#![forbid(unsafe_code)]

mod rules;

use std::sync::{Arc, OnceLock};

use plugin_api::payloads::{ExcludeCandidate, BACKUP_EXCLUDE, BACKUP_STARTING};
use plugin_api::{App, Context, Plugin, Result, Setting, GROUP_BACKUP, PRIORITY_DEFAULT};

use rules::Rules;

#[derive(Default)]
struct Exclude;

impl Plugin for Exclude {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        let scoped = |setting: Setting, metavar: &str, help: &str| {
            setting
                .subcommands(&["backup", "verify"])
                .metavar(metavar)
                .help(help)
                .group(GROUP_BACKUP)
        };
        let list = |name: &str, metavar: &str, help: &str| {
            scoped(Setting::string_list(name), metavar, help)
        };
        // Files and names of files: bytes, which need not be UTF-8.
        let paths =
            |name: &str, metavar: &str, help: &str| scoped(Setting::path_list(name), metavar, help);
        app.add_setting(list(
            "exclude",
            "PATTERN",
            "leave out files and folders whose absolute path matches PATTERN, a regular expression, or a shell glob as sh:GLOB, or a path and all below it as pp:PATH (a folder takes its contents with it)",
        ));
        app.add_setting(list(
            "include",
            "PATTERN",
            "never leave out, by --exclude or --exclude-from, a path that matches PATTERN (styles as for --exclude)",
        ));
        app.add_setting(paths(
            "exclude-from",
            "FILE",
            "read --exclude patterns from FILE, one per line (blank lines and lines starting with # are skipped)",
        ));
        app.add_setting(
            Setting::boolean("exclude-caches")
                .subcommands(&["backup", "verify"])
                .help("leave out the contents of folders marked with a CACHEDIR.TAG file (the tag file is kept)")
                .group(GROUP_BACKUP),
        );
        app.add_setting(paths(
            "exclude-if-present",
            "NAME",
            "leave out folders that hold a file called NAME",
        ));
        app.add_setting(
            Setting::bytesize("exclude-larger-than")
                .subcommands(&["backup", "verify"])
                .help("leave out files larger than SIZE (0: no limit)")
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::boolean("one-file-system")
                .subcommands(&["backup", "verify"])
                .help("leave out everything on another file system than its backup root")
                .group(GROUP_BACKUP),
        );

        let rules: Arc<OnceLock<Rules>> = Arc::new(OnceLock::new());
        let r = rules.clone();
        app.add_json_callback(
            BACKUP_STARTING,
            PRIORITY_DEFAULT,
            move |ctx: &Context<'_>, starting| {
                let compiled = Rules::from_settings(ctx, &roots_of(starting))?;
                let _ = r.set(compiled);
                Ok(())
            },
        );
        app.add_callback::<ExcludeCandidate, _>(
            BACKUP_EXCLUDE,
            PRIORITY_DEFAULT,
            move |ctx, candidate| {
                if candidate.exclude {
                    return Ok(());
                }
                let rules = match rules.get() {
                    Some(r) => r,
                    None => {
                        // Asked with no `backup-starting` before (a
                        // verify): the roots are not known.
                        let compiled = Rules::from_settings(ctx, &[])?;
                        rules.get_or_init(|| compiled)
                    }
                };
                if let Some(reason) = rules.reason(candidate) {
                    candidate.exclude_because(&reason);
                }
                Ok(())
            },
        );
        Ok(())
    }
}

/// The backup's roots, from the `backup-starting` payload: `roots`, or
/// `roots_bytes` (each root's bytes) where one is not UTF-8.
fn roots_of(starting: &plugin_api::serde_json::Value) -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if let Some(all) = starting["roots_bytes"].as_array() {
        return all
            .iter()
            .filter_map(|root| {
                let bytes: Option<Vec<u8>> = root
                    .as_array()?
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                Some(std::ffi::OsString::from_vec(bytes?).into())
            })
            .collect();
    }
    starting["roots"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|r| r.as_str().map(std::path::PathBuf::from))
                .collect()
        })
        .unwrap_or_default()
}

plugin_api::export_plugin!("exclude", Exclude);
