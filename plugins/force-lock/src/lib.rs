//! The `force-lock` subcommand: remove locks left behind by a process that
//! can no longer release them (killed, or on a host that went away).
//!
//! By default it removes the locks of the client named by `--client-name`
//! and the exclusive repository lock; with `--all-clients` (a setting of
//! the host's), every lock.
//! Locks of processes that are gone are also broken automatically when
//! someone waits for them; this is for the cases that cannot be detected,
//! such as a lock held by a dead process on another host.

#![forbid(unsafe_code)]

use plugin_api::{App, Context, Plugin, Result};

#[derive(Default)]
struct ForceLock;

impl Plugin for ForceLock {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_subcommand(
            "force-lock",
            "",
            "remove locks on this client (and the exclusive and prune locks) left by a process that is gone",
            force_lock,
        );
        Ok(())
    }
}

fn force_lock(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "force-lock takes no arguments, got '{}'",
            arg.to_string_lossy()
        );
    }
    let repo = ctx.repository(false)?;
    let client = ctx.string("client-name")?;
    if ctx.boolean("pretend")? {
        plugin_api::bail!("force-lock cannot pretend: it would have to remove locks to show which; run it without --pretend");
    }
    let removed = if ctx.boolean("all-clients")? {
        repo.force_unlock(None)?
    } else {
        repo.force_unlock(client.as_deref())?
    };
    if ctx.output_format()?.is_json() {
        let json = plugin_api::serde_json::json!({ "removed": removed });
        return ctx.outln(&json.to_string());
    }
    if ctx.boolean("quiet")? {
        return Ok(());
    }
    if removed.is_empty() {
        ctx.outln("no locks removed")?;
    }
    for lock in removed {
        ctx.outln(&format!("removed: {lock}"))?;
    }
    Ok(())
}

plugin_api::export_plugin!("force-lock", ForceLock);
