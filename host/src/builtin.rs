//! Subcommands of the host itself: only what describes the host's own state.

use anyhow::Result;

use crate::loader::LoadedPlugin;
use crate::output;
use crate::registry::Registry;
use crate::services::Host;

/// Register the built-in subcommands.
pub fn register(registry: &mut Registry) {
    registry.add_builtin_subcommand(
        "plugins",
        "",
        "list the loaded plugins: name, version and the file each came from",
    );
}

/// Run a built-in subcommand.
pub fn run(name: &str, host: &Host, registry: &Registry) -> Result<()> {
    match name {
        "plugins" => plugins(host, registry),
        other => anyhow::bail!("unknown built-in subcommand '{other}'"),
    }
}

fn plugins(host: &Host, registry: &Registry) -> Result<()> {
    if host.values().string("output-format") == Some("json") {
        let list: Vec<serde_json::Value> = registry
            .plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "api_version": p.api_version,
                    "file": p.path.display().to_string(),
                })
            })
            .collect();
        output::line(&serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    let widest =
        |len: fn(&LoadedPlugin) -> usize| registry.plugins.iter().map(len).max().unwrap_or(0);
    let name_width = widest(|p| p.name.len());
    let version_width = widest(|p| p.version.len());
    for p in &registry.plugins {
        output::line(&format!(
            "{:name_width$}  {:version_width$}  {}",
            p.name,
            p.version,
            p.path.display()
        ))?;
    }
    Ok(())
}
