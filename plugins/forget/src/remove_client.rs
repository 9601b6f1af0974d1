//! The `remove-client NAME` subcommand: every generation of a client,
//! then the client itself, under the client's lock (so never while a
//! backup of it runs). The data goes with the next prune.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use plugin_api::names::escape;
use plugin_api::{Context, Result};

/// `obnam remove-client NAME`.
pub fn remove_client(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let name = match args.as_slice() {
        [one] => match one.to_str() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => plugin_api::bail!(
                "remove-client: '{}' is not a client name",
                escape(one.as_bytes())
            ),
        },
        [] => plugin_api::bail!("remove-client: give the name of the client to remove"),
        _ => plugin_api::bail!("remove-client: give one client name, got {}", args.len()),
    };
    // Shown as every command shows names: a client's name in the
    // repository may hold a newline or an escape sequence.
    let shown = escape(name.as_bytes());
    let repo = ctx.repository(false)?;
    let pretend = ctx.boolean("pretend")?;
    // The removal judges whether there is such a client (and --pretend
    // judges as it does): it knows one by its record alone too (damaged,
    // so that no listing names it, and with no generation left), which
    // fsck reports and this must remove.
    let count = if pretend {
        repo.client_removal_count(&name)?
    } else {
        repo.lock_client_for_removal(&name)?;
        let removed = repo.remove_client(&name);
        let unlocked = repo.unlock_client(&name);
        let count = removed?;
        unlocked?;
        count
    };
    if ctx.output_format()?.is_json() {
        let json = plugin_api::serde_json::json!({
            "client": name,
            "generations": count,
            "pretend": pretend,
        });
        return ctx.outln(&serde_json::to_string_pretty(&json)?);
    }
    if ctx.boolean("quiet")? {
        return Ok(());
    }
    let generations = plugin_api::human::count(count, "generation", "generations");
    let verb = if pretend { "would remove" } else { "removed" };
    ctx.outln(&format!("{verb} client {shown} and its {generations}"))?;
    // Retiring a machine is what remove-client is reached for, and a
    // key slot it added still opens the repository (for every client):
    // said, with the way to revoke it.
    if repo.is_encrypted() {
        ctx.outln(
            "the repository's key slots stay (each opens it for every client): 'obnam \
             client-keys' lists them with the client that added each, and 'obnam key remove \
             ID' revokes one",
        )?;
    }
    Ok(())
}
