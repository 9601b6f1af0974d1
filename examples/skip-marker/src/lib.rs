//! An example third-party exclude plugin for obnam.
//!
//! It leaves out of backups every regular file whose first 4 KiB contain a
//! marker text (by default `OBNAM-SKIP`), so that users can mark files to
//! skip from inside them, e.g. with a comment line. The marker is its own
//! setting, `--skip-marker TEXT`; an empty marker turns the plugin off.
//!
//! Each registration is declared where it is defined, with
//! `plugin_api::submit!`; `export_plugin!` registers them all.
//!
//! Build it with `cargo build --release` in this folder, copy
//! `target/release/*.so` into a folder of its own (writable only by you),
//! and load it with `obnam --plugin-dir THAT-FOLDER backup ...`.

#![forbid(unsafe_code)]

use std::io::Read;

use plugin_api::declare::{AddCallback, AddSetting};
use plugin_api::payloads::{ExcludeCandidate, BACKUP_EXCLUDE};
use plugin_api::{Context, Result, Setting, GROUP_BACKUP, PRIORITY_DEFAULT};

/// How much of a file is searched for the marker.
const HEAD: u64 = 4096;

plugin_api::submit!(AddSetting::new(|| {
    Setting::string("skip-marker")
        .metavar("TEXT")
        .default("OBNAM-SKIP")
        .help("leave out files whose first 4 KiB contain TEXT (empty: off)")
        .group(GROUP_BACKUP)
        // Listed by `obnam backup --help` and `obnam verify --help` only.
        .subcommands(&["backup", "verify"])
}));

plugin_api::submit!(AddCallback::new(BACKUP_EXCLUDE, PRIORITY_DEFAULT, skip_marked));

/// Leave out a regular file whose head carries the marker.
fn skip_marked(ctx: &Context<'_>, candidate: &mut ExcludeCandidate) -> Result<()> {
    if candidate.exclude || candidate.stat.mode & 0o170000 != 0o100000 {
        return Ok(());
    }
    let marker = ctx.string("skip-marker")?.unwrap_or_default();
    if marker.is_empty() {
        return Ok(());
    }
    let mut head = Vec::new();
    // A file that cannot be read is for the backup to report, not us.
    if let Ok(f) = std::fs::File::open(candidate.path()) {
        let _ = f.take(HEAD).read_to_end(&mut head);
    }
    if head.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        candidate.exclude_because(&format!("it carries the marker '{marker}'"));
    }
    Ok(())
}

plugin_api::export_plugin!("skip-marker");
