//! The host's registries: subcommands, settings and hooks, filled by
//! enabling each loaded plugin (Obnam's `app`).
//!
//! Each plugin registers into its own [`Registration`]; what it
//! registered is merged into the [`Registry`] only if its `enable` succeeds,
//! so a plugin that fails half-way leaves nothing behind. Conflicts (a
//! subcommand, setting or hook name already taken) keep the first and warn.

pub mod hooks;

use plugin_api::abi::{layout_of, HookKind, SubcommandHandlerBox};
use plugin_api::names::escape_path;
use tracing::warn;

use crate::loader::{LoadedPlugin, Registration};
use crate::settings::{SettingDef, SettingsRegistry, HOST_OWNER};
pub use hooks::HookRegistry;

/// A subcommand and who implements it.
pub struct SubcommandDef {
    pub name: String,
    pub synopsis: String,
    pub help: String,
    pub owner: String,
    /// `None` for the host's built-in subcommands.
    pub handler: Option<SubcommandHandlerBox>,
    /// How a failed run ends, if its plugin said (see
    /// [`plugin_api::App::set_subcommand_failure`]).
    pub failure: Option<SubcommandFailure>,
}

/// How a failed run of a subcommand ends: its exit code, and the prefix
/// of the line that says the error on standard output.
#[derive(Clone, Debug)]
pub struct SubcommandFailure {
    pub exit_code: i32,
    pub stdout_prefix: String,
}

/// Everything registered in this run.
#[derive(Default)]
pub struct Registry {
    pub plugins: Vec<LoadedPlugin>,
    pub subcommands: Vec<SubcommandDef>,
    pub settings: SettingsRegistry,
    pub hooks: HookRegistry,
}

impl Registry {
    /// Add a built-in subcommand of the host.
    pub fn add_builtin_subcommand(&mut self, name: &str, synopsis: &str, help: &str) {
        self.subcommands.push(SubcommandDef {
            name: name.into(),
            synopsis: synopsis.into(),
            help: help.into(),
            owner: HOST_OWNER.into(),
            handler: None,
            failure: None,
        });
    }

    /// Create the hooks the host itself owns: `repository-data`, the filter
    /// hook every repository object passes through; `repository-open`;
    /// and `run-interrupted`.
    pub fn create_host_hooks(&mut self) {
        let hooks = [
            (
                plugin_api::payloads::REPOSITORY_DATA,
                HookKind::Filter,
                layout_of::<()>(),
            ),
            (
                plugin_api::payloads::REPOSITORY_OPEN,
                HookKind::Plain,
                layout_of::<plugin_api::JsonPayload>(),
            ),
            (
                plugin_api::payloads::RUN_INTERRUPTED,
                HookKind::Plain,
                layout_of::<plugin_api::JsonPayload>(),
            ),
        ];
        for (name, kind, layout) in hooks {
            if let Err(e) = self.hooks.create(name, kind, layout, HOST_OWNER) {
                warn!("{e}");
            }
        }
    }

    /// Enable each plugin, merge what it registered, and bind hooks. Also
    /// returns why the first plugin that failed to start did: the run
    /// must not go on without it (an exclude plugin's `enable` that
    /// failed made a backup store what it leaves out, exit 0, and with
    /// `--quiet` in silence).
    pub fn enable_plugins(&mut self, plugins: Vec<LoadedPlugin>) -> Option<String> {
        let mut failed = None;
        for plugin in plugins {
            match plugin.enable() {
                Ok(registration) => {
                    self.merge(&plugin.name, registration);
                    self.plugins.push(plugin);
                }
                Err(why) => {
                    let path = escape_path(&plugin.path);
                    let message = if plugin.bundled {
                        format!(
                            "obnam's own plugin '{}' ({path}) failed to start: {why}",
                            plugin.name
                        )
                    } else {
                        format!(
                            "plugin '{}' ({path}) failed to start: {why} (obnam does not run \
                             without a plugin of a folder it was given: move the file out of \
                             the folder to run without it)",
                            plugin.name
                        )
                    };
                    failed.get_or_insert(message);
                }
            }
        }
        for warning in self.hooks.bind() {
            warn!("{warning}");
        }
        failed
    }

    fn merge(&mut self, plugin: &str, staging: Registration) {
        for (name, synopsis, help, handler) in staging.subcommands {
            let valid = !name.is_empty()
                && name != "help"
                && !name.starts_with('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                warn!("plugin '{plugin}' adds subcommand '{name}', which is not a valid name; ignored");
                continue;
            }
            if let Some(old) = self.subcommands.iter().find(|s| s.name == name) {
                warn!(
                    "plugin '{plugin}' adds subcommand '{name}', which '{}' already provides; ignored",
                    old.owner
                );
                continue;
            }
            self.subcommands.push(SubcommandDef {
                name,
                synopsis,
                help,
                owner: plugin.to_string(),
                handler: Some(handler),
                failure: None,
            });
        }
        for (name, exit_code, stdout_prefix) in staging.subcommand_failures {
            let def = self
                .subcommands
                .iter_mut()
                .find(|s| s.name == name && s.owner == plugin);
            match def {
                Some(_) if !(1..=125).contains(&exit_code) => warn!(
                    "plugin '{plugin}' gives subcommand '{name}' the failure exit code \
                     {exit_code}, which is not 1 to 125; ignored"
                ),
                Some(def) => {
                    def.failure = Some(SubcommandFailure {
                        exit_code,
                        stdout_prefix,
                    });
                }
                None => warn!(
                    "plugin '{plugin}' says how subcommand '{name}' fails, which it does not \
                     add; ignored"
                ),
            }
        }
        let mut scopes = staging.setting_scopes;
        let mut ranges = staging.setting_ranges;
        let mut paths = staging.setting_paths;
        let mut multiples = staging.setting_multiples;
        for spec in staging.settings {
            // A setting's scope is the last one its plugin gave it.
            let scope = scopes
                .iter()
                .rposition(|(name, _)| spec.name.as_str() == name)
                .map(|i| scopes[i].1.clone());
            scopes.retain(|(name, _)| spec.name.as_str() != name);
            let range = ranges
                .iter()
                .rposition(|(name, _, _)| spec.name.as_str() == name)
                .map(|i| ranges[i].clone());
            ranges.retain(|(name, _, _)| spec.name.as_str() != name);
            let path = paths.iter().any(|name| spec.name.as_str() == name);
            paths.retain(|name| spec.name.as_str() != name);
            let multiple = multiples
                .iter()
                .rposition(|(name, _)| spec.name.as_str() == name)
                .map(|i| multiples[i].1.clone());
            multiples.retain(|(name, _)| spec.name.as_str() != name);
            let result = SettingDef::from_spec(&spec, plugin)
                .and_then(|mut def| {
                    def.subcommands = scope.unwrap_or_default();
                    if path {
                        def.set_path()?;
                    }
                    if let Some((_, least, most)) = range {
                        def.set_range(&least, &most)?;
                    }
                    if let Some(factor) = multiple {
                        def.set_multiple(&factor)?;
                    }
                    Ok(def)
                })
                .map_err(|e| format!("plugin '{plugin}': {e}; ignored"))
                .and_then(|def| self.settings.add(def));
            if let Err(w) = result {
                warn!("{w}");
            }
        }
        for (name, _) in scopes {
            warn!("plugin '{plugin}' names the subcommands of setting '{name}', which it does not declare; ignored");
        }
        for (name, _, _) in ranges {
            warn!("plugin '{plugin}' gives a range to setting '{name}', which it does not declare; ignored");
        }
        for name in paths {
            warn!("plugin '{plugin}' makes setting '{name}' a path, which it does not declare; ignored");
        }
        for (name, _) in multiples {
            warn!("plugin '{plugin}' gives a factor to setting '{name}', which it does not declare; ignored");
        }
        for (name, kind, payload) in staging.hooks {
            if let Err(w) = self.hooks.create(&name, kind, payload, plugin) {
                warn!("{w}");
            }
        }
        for (hook, priority, payload, callback) in staging.callbacks {
            self.hooks
                .subscribe(&hook, priority, payload, callback, plugin);
        }
        for (hook, priority, tag, filter) in staging.filters {
            self.hooks.add_filter(&hook, priority, &tag, filter, plugin);
        }
    }

    /// A subcommand by name.
    pub fn subcommand(&self, name: &str) -> Option<&SubcommandDef> {
        self.subcommands.iter().find(|s| s.name == name)
    }
}
