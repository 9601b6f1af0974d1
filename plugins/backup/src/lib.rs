//! The backup plugin: `obnam backup [DIRECTORY|FILE]...`.
//!
//! It walks the backup roots, asks the `backup-exclude` hook about every
//! object it finds, compares each with the client's previous generation
//! (an unchanged file costs a `stat`, not a read), reads changed files and
//! hands their data to the chunking and dedup hooks (answered by the dedup
//! plugin), records everything in a new generation, commits checkpoints as
//! it goes, and calls `backup-finished` at the end.
//!
//! Modules, in the order a byte meets them: [`settings`] (what the user
//! asked for), [`walk`] (finding objects, exclusion), [`metadata`] (what a
//! `stat` says, and whether a file changed), [`content`] (reading, chunking,
//! storing), [`links`] (a hard-linked file read once a run), [`run`] (the pipeline, checkpoints, the commit), [`stats`]
//! (counting and progress), [`scan`] (the totals the progress needs for a
//! percentage, counted by a thread of their own).

#![forbid(unsafe_code)]

mod content;
mod links;
mod metadata;
mod run;
mod scan;
mod settings;
mod stats;
mod walk;

use plugin_api::payloads::{
    ExcludeCandidate, SplitRequest, StoreChunkRequest, BACKUP_CHUNK_BOUNDARIES, BACKUP_EXCLUDE,
    BACKUP_FINISHED, BACKUP_STARTING, BACKUP_STORE_CHUNK,
};
use plugin_api::{App, Plugin, Result};

#[derive(Default)]
struct Backup;

impl Plugin for Backup {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        settings::register(app);
        app.new_hook::<ExcludeCandidate>(BACKUP_EXCLUDE);
        app.new_json_hook(BACKUP_STARTING);
        app.new_json_hook(BACKUP_FINISHED);
        app.new_hook::<SplitRequest>(BACKUP_CHUNK_BOUNDARIES);
        app.new_hook::<StoreChunkRequest>(BACKUP_STORE_CHUNK);
        app.add_subcommand(
            "backup",
            "[DIRECTORY|FILE]...",
            "back up the given folders and files (and those of the root setting) as a new generation",
            run::backup,
        );
        Ok(())
    }
}

plugin_api::export_plugin!("backup", Backup);
