//! An example third-party exclude plugin for obnam.
//!
//! It leaves out of backups every regular file whose first 4 KiB contain a
//! marker text (by default `OBNAM-SKIP`), so that users can mark files to
//! skip from inside them, e.g. with a comment line. The marker is its own
//! setting, `--skip-marker TEXT`; an empty marker turns the plugin off.
//!
//! Build it with `cargo build --release` in this folder, copy
//! `target/release/*.so` into a folder of its own (writable only by you),
//! and load it with `obnam --plugin-dir THAT-FOLDER backup ...`.

use std::io::Read;

use plugin_api::payloads::{ExcludeCandidate, BACKUP_EXCLUDE};
use plugin_api::{App, Plugin, Result, Setting, GROUP_BACKUP, PRIORITY_DEFAULT};

/// How much of a file is searched for the marker.
const HEAD: u64 = 4096;

#[derive(Default)]
struct SkipMarker;

impl Plugin for SkipMarker {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::string("skip-marker")
                .metavar("TEXT")
                .default("OBNAM-SKIP")
                .help("leave out files whose first 4 KiB contain TEXT (empty: off)")
                .group(GROUP_BACKUP),
        );
        app.add_callback::<ExcludeCandidate, _>(
            BACKUP_EXCLUDE,
            PRIORITY_DEFAULT,
            |ctx, candidate| {
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
            },
        );
        Ok(())
    }
}

plugin_api::export_plugin!("skip-marker", SkipMarker);
