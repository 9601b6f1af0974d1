//! Subcommands of the host itself: only what describes the host's own
//! state: the plugins it loaded, and its command line (shell completions
//! and the manual page), which the loaded plugins' subcommands and
//! settings are part of.

use std::ffi::OsString;
use std::str::FromStr;

use anyhow::{bail, Result};
use clap_complete::Shell;

use crate::cli::{self, HelpLayout};
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
    registry.add_builtin_subcommand(
        "completions",
        "SHELL",
        "print shell completions (bash, zsh, fish, elvish, powershell)",
    );
    registry.add_builtin_subcommand(
        "manpage",
        "",
        "print the manual page (roff: obnam manpage | man -l -)",
    );
}

/// Run a built-in subcommand.
pub fn run(name: &str, args: &[OsString], host: &Host, registry: &Registry) -> Result<()> {
    match name {
        "plugins" => {
            no_arguments(name, args)?;
            plugins(host, registry)
        }
        "completions" => completions(args, registry),
        "manpage" => {
            no_arguments(name, args)?;
            let mut page = Vec::new();
            clap_mangen::Man::new(cli::build(registry, HelpLayout::Flat)).render(&mut page)?;
            Ok(output::write(&page)?)
        }
        other => bail!("unknown built-in subcommand '{other}'"),
    }
}

fn no_arguments(name: &str, args: &[OsString]) -> Result<()> {
    match args.first() {
        Some(arg) => bail!("{name} takes no arguments, got '{}'", arg.to_string_lossy()),
        None => Ok(()),
    }
}

/// `obnam completions SHELL`.
fn completions(args: &[OsString], registry: &Registry) -> Result<()> {
    const SHELLS: &str = "bash, zsh, fish, elvish or powershell";
    let [shell] = args else {
        bail!("completions needs one SHELL: {SHELLS}");
    };
    let name = shell.to_string_lossy();
    let Ok(shell) = Shell::from_str(&name) else {
        bail!("completions: unknown shell '{name}' (use {SHELLS})");
    };
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut cli::build(registry, HelpLayout::Scoped),
        "obnam",
        &mut script,
    );
    Ok(output::write(&script)?)
}

fn plugins(host: &Host, registry: &Registry) -> Result<()> {
    // json-lines streams only from commands that report progress; here
    // it is json.
    if matches!(
        host.values().string("output-format"),
        Some("json" | "json-lines")
    ) {
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
