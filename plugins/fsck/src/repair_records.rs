//! `obnam repair-records`: write again the records (generation and client
//! records, index objects) whose filter header one damaged byte made
//! unreadable, with that byte undone (see the repository's
//! `record_repair`), under the exclusive lock; with `--pretend`, only
//! read them.
//!
//! `fsck` and the warning of a record left out name this command for such
//! a record: the generation it holds is then back, whole, where `forget`
//! would have lost it.

use std::os::unix::ffi::OsStrExt;

use plugin_api::names::escape;
use plugin_api::{Context, RepairedRecords, Result};

/// The subcommand.
pub fn repair_records(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "repair-records takes no arguments (got '{}'): it reads every record",
            escape(arg.as_bytes())
        );
    }
    let pretend = ctx.boolean("pretend")?;
    let repo = ctx.repository(false)?;
    if pretend {
        // Reads only: no lock, as fsck takes none.
        let done = repo.repair_records(true)?;
        return say(ctx, &done, true);
    }
    repo.lock_exclusive()?;
    // Said before the lock is released: a release that fails must not
    // take away the report of what was written.
    let said = repo
        .repair_records(false)
        .and_then(|done| say(ctx, &done, false));
    let unlocked = repo.unlock_exclusive();
    said?;
    unlocked
}

/// What `repair-records` found and did, as text or JSON. A damaged record
/// it cannot repair makes the run end non-zero: the repository still has
/// a problem, which `fsck` says what to do about.
fn say(ctx: &Context<'_>, done: &RepairedRecords, pretend: bool) -> Result<()> {
    for left in &done.left {
        plugin_api::tracing::error!(
            "damaged record left as it is: {left}; 'obnam fsck' says what to do about it"
        );
    }
    if ctx.output_format()?.is_json() {
        let repaired: Vec<serde_json::Value> = done
            .repaired
            .iter()
            .map(|r| serde_json::json!({ "record": r.key, "problem": r.problem }))
            .collect();
        let json = serde_json::json!({
            "pretend": pretend,
            "records_read": done.records,
            "repaired": repaired,
            "left": done.left,
        });
        ctx.outln(&json.to_string())?;
    } else {
        let written = if pretend {
            "would be written again with that byte undone"
        } else {
            "written again with that byte undone"
        };
        for r in &done.repaired {
            ctx.outln(&format!("{}: {}; {written}", r.key, r.problem))?;
        }
        let read = plugin_api::human::count(done.records, "record", "records");
        let mut line = match (done.repaired.len(), pretend) {
            (0, _) if done.left.is_empty() => {
                format!("{read} read: none has a damaged filter header to undo")
            }
            (0, _) => format!("{read} read: none can be written again so"),
            (n, false) => format!(
                "{read} read; {} written again, each checked by its checksum and read back",
                plugin_api::human::count(n as u64, "record", "records")
            ),
            (n, true) => format!(
                "{read} read; {} would be written again (--pretend: nothing written)",
                plugin_api::human::count(n as u64, "record", "records")
            ),
        };
        if !done.left.is_empty() {
            line.push_str(&format!(
                "; {} left as {} (above)",
                plugin_api::human::count(
                    done.left.len() as u64,
                    "damaged record",
                    "damaged records"
                ),
                if done.left.len() == 1 {
                    "it is"
                } else {
                    "they are"
                }
            ));
        }
        ctx.outln(&line)?;
    }
    if !done.left.is_empty() {
        ctx.set_exit_code(1)?;
    }
    Ok(())
}
