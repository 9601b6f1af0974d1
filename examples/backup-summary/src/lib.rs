//! An example third-party obnam plugin on the `backup-finished` hook.
//!
//! After every backup it appends one line of JSON to the file named by its
//! own setting, `--summary-file FILE`: the time, the client, the roots, the
//! new generation and the backup's statistics. Without the setting it does
//! nothing. A monitoring system can read the file to see that backups run.
//!
//! Build it with `cargo build --release` in this folder, copy
//! `target/release/*.so` into a folder of its own (writable only by you),
//! and load it with `obnam --plugin-dir THAT-FOLDER backup ...`.

use std::io::Write;

use plugin_api::payloads::BACKUP_FINISHED;
use plugin_api::serde_json::{json, Value};
use plugin_api::{App, Context, Plugin, Result, Setting, GROUP_BACKUP, PRIORITY_LATE};

#[derive(Default)]
struct BackupSummary;

fn write_summary(ctx: &Context<'_>, finished: &mut Value) -> Result<()> {
    let Some(file) = ctx.path("summary-file")? else {
        return Ok(());
    };
    // A file's name need not be UTF-8: shown escaped.
    let shown = plugin_api::names::escape_path(&file);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let line = json!({ "time": now, "backup": finished.clone() });
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(|e| ctx.setting_error("summary-file", &format!("{shown}: {e}")))?;
    writeln!(out, "{line}")
        .map_err(|e| ctx.setting_error("summary-file", &format!("{shown}: {e}")))?;
    plugin_api::tracing::info!("backup summary appended to {shown}");
    Ok(())
}

impl Plugin for BackupSummary {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::path("summary-file")
                .metavar("FILE")
                .help("append a JSON summary of each backup to FILE")
                .group(GROUP_BACKUP),
        );
        app.add_json_callback(BACKUP_FINISHED, PRIORITY_LATE, write_summary);
        Ok(())
    }
}

plugin_api::export_plugin!("backup-summary", BackupSummary);
