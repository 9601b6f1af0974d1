//! The host's registries: subcommands, settings and hooks, filled by
//! enabling each loaded plugin (Obnam's `app`).
//!
//! Each plugin registers through its own [`Staging`] area; what it
//! registered is merged into the [`Registry`] only if its `enable` succeeds,
//! so a plugin that fails half-way leaves nothing behind. Conflicts (a
//! subcommand, setting or hook name already taken) keep the first and warn.

pub mod hooks;

use abi_stable::{
    sabi_trait::TD_Opaque, sabi_types::RMut, std_types::RString, type_layout::TypeLayout, StableAbi,
};
use plugin_api::abi::{
    FilterBox, HookCallbackBox, HookKind, Registrar, Registrar_TO, SettingSpec,
    SubcommandHandlerBox,
};
use tracing::warn;

use crate::loader::LoadedPlugin;
use crate::settings::{SettingDef, SettingsRegistry};
pub use hooks::HookRegistry;

/// The name that owns the host's own settings and subcommands.
pub const HOST_OWNER: &str = "obnam";

/// A subcommand and who implements it.
pub struct SubcommandDef {
    pub name: String,
    pub synopsis: String,
    pub help: String,
    pub owner: String,
    /// `None` for the host's built-in subcommands.
    pub handler: Option<SubcommandHandlerBox>,
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
        });
    }

    /// Create the hooks the host itself owns: `repository-data`, the filter
    /// hook every repository object passes through.
    pub fn create_host_hooks(&mut self) {
        let hooks = [
            (
                plugin_api::payloads::REPOSITORY_DATA,
                HookKind::Filter,
                <()>::LAYOUT,
            ),
            (
                plugin_api::payloads::REPOSITORY_OPEN,
                HookKind::Plain,
                <plugin_api::JsonPayload as abi_stable::StableAbi>::LAYOUT,
            ),
        ];
        for (name, kind, layout) in hooks {
            if let Err(e) = self.hooks.create(name, kind, layout, HOST_OWNER) {
                warn!("{e}");
            }
        }
    }

    /// Enable each plugin, merge what it registered, and bind hooks.
    pub fn enable_plugins(&mut self, plugins: Vec<LoadedPlugin>) {
        for plugin in plugins {
            let mut staging = Staging::default();
            let registrar = Registrar_TO::from_ptr(RMut::new(&mut staging), TD_Opaque);
            match (plugin.module.enable())(registrar).into_result() {
                Ok(()) => {
                    self.merge(&plugin.name, staging);
                    self.plugins.push(plugin);
                }
                Err(failure) => warn!(
                    "plugin '{}' ({}) failed to start and is not used: {}{}",
                    plugin.name,
                    plugin.path.display(),
                    if failure.kind == plugin_api::abi::FailureKind::Panic {
                        "panic: "
                    } else {
                        ""
                    },
                    failure.message
                ),
            }
        }
        for warning in self.hooks.bind() {
            warn!("{warning}");
        }
    }

    fn merge(&mut self, plugin: &str, staging: Staging) {
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
            });
        }
        for spec in staging.settings {
            let result = SettingDef::from_spec(&spec, plugin)
                .map_err(|e| format!("plugin '{plugin}': {e}; ignored"))
                .and_then(|def| self.settings.add(def));
            if let Err(w) = result {
                warn!("{w}");
            }
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

/// What one plugin registered while being enabled.
#[derive(Default)]
struct Staging {
    subcommands: Vec<(String, String, String, SubcommandHandlerBox)>,
    settings: Vec<SettingSpec>,
    hooks: Vec<(String, HookKind, &'static TypeLayout)>,
    callbacks: Vec<(String, i32, &'static TypeLayout, HookCallbackBox)>,
    filters: Vec<(String, i32, String, FilterBox)>,
}

impl Registrar for Staging {
    fn add_subcommand(
        &mut self,
        name: RString,
        synopsis: RString,
        help: RString,
        handler: SubcommandHandlerBox,
    ) {
        self.subcommands
            .push((name.into(), synopsis.into(), help.into(), handler));
    }

    fn add_setting(&mut self, spec: SettingSpec) {
        self.settings.push(spec);
    }

    fn new_hook(&mut self, name: RString, kind: HookKind, payload: &'static TypeLayout) {
        self.hooks.push((name.into(), kind, payload));
    }

    fn add_callback(
        &mut self,
        hook: RString,
        priority: i32,
        payload: &'static TypeLayout,
        callback: HookCallbackBox,
    ) {
        self.callbacks
            .push((hook.into(), priority, payload, callback));
    }

    fn add_filter(&mut self, hook: RString, priority: i32, tag: RString, filter: FilterBox) {
        self.filters
            .push((hook.into(), priority, tag.into(), filter));
    }
}
