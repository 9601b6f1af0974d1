//! Enabling a loaded plugin: the host's side of the [`Registrar`] a
//! plugin's `enable` registers through, and the logger handed to it first.
//!
//! What a plugin registers is collected in a [`Registration`] of ordinary
//! Rust values (and the plugin's boxed callbacks), which the registry
//! merges only if `enable` succeeds.

use plugin_api::abi::{
    host_logger, registrar, FailureKind, FilterBox, HookCallbackBox, HookKind, HostLogger,
    LogLevel, Registrar, SettingSpec, SubcommandHandlerBox, TypeLayout,
};
use plugin_api::types::{RStr, RString, RVec};

use super::LoadedPlugin;
use crate::logging;

/// A subcommand a plugin registered: name, synopsis, help and handler.
pub type SubcommandReg = (String, String, String, SubcommandHandlerBox);
/// A hook a plugin created: name, kind and payload layout.
pub type HookReg = (String, HookKind, &'static TypeLayout);
/// A callback a plugin added: hook, priority, payload layout and callback.
pub type CallbackReg = (String, i32, &'static TypeLayout, HookCallbackBox);
/// A filter a plugin added: hook, priority, tag and filter.
pub type FilterReg = (String, i32, String, FilterBox);

/// What one plugin registered while being enabled.
#[derive(Default)]
pub struct Registration {
    pub subcommands: Vec<SubcommandReg>,
    pub settings: Vec<SettingSpec>,
    pub hooks: Vec<HookReg>,
    pub callbacks: Vec<CallbackReg>,
    pub filters: Vec<FilterReg>,
    /// Settings and the subcommands they belong to (plugin-api 0.1.5).
    pub setting_scopes: Vec<(String, Vec<String>)>,
    /// The ranges of settings: name, least, most (as text).
    pub setting_ranges: Vec<(String, String, String)>,
    /// The settings that are paths (plugin-api 0.1.12).
    pub setting_paths: Vec<String>,
    /// What settings must be multiples of: name, factor (as text)
    /// (plugin-api 0.1.12).
    pub setting_multiples: Vec<(String, String)>,
    /// How runs of subcommands fail: name, exit code, prefix of the
    /// line on standard output (plugin-api 0.1.16).
    pub subcommand_failures: Vec<(String, i32, String)>,
}

impl Registrar for Registration {
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

    fn set_setting_subcommands(&mut self, setting: RString, subcommands: RVec<RString>) {
        self.setting_scopes.push((
            setting.into(),
            subcommands.into_iter().map(Into::into).collect(),
        ));
    }

    fn set_setting_range(&mut self, setting: RString, least: RString, most: RString) {
        self.setting_ranges
            .push((setting.into(), least.into(), most.into()));
    }

    fn set_setting_path(&mut self, setting: RString) {
        self.setting_paths.push(setting.into());
    }

    fn set_setting_multiple(&mut self, setting: RString, factor: RString) {
        self.setting_multiples.push((setting.into(), factor.into()));
    }

    fn set_subcommand_failure(
        &mut self,
        subcommand: RString,
        exit_code: i32,
        stdout_prefix: RString,
    ) {
        self.subcommand_failures
            .push((subcommand.into(), exit_code, stdout_prefix.into()));
    }
}

impl LoadedPlugin {
    /// Hand the plugin its logger and the current maximum log level.
    pub fn init_logging(&self) {
        let logger = host_logger(PluginLogger {
            plugin: self.name.clone(),
        });
        (self.module.init())(logger, logging::max_level());
    }

    /// Tell the plugin the maximum log level, once the settings are known.
    pub fn set_log_level(&self, level: LogLevel) {
        (self.module.set_log_level())(level);
    }

    /// Enable the plugin: what it registered, or why it failed (a panic
    /// says so first).
    pub fn enable(&self) -> Result<Registration, String> {
        let mut registration = Registration::default();
        match (self.module.enable())(registrar(&mut registration)).into_result() {
            Ok(()) => Ok(registration),
            Err(failure) => Err(format!(
                "{}{}",
                if failure.kind == FailureKind::Panic {
                    "panic: "
                } else {
                    ""
                },
                failure.message
            )),
        }
    }
}

/// The logger handed to one plugin: re-emits its events in the host's log.
struct PluginLogger {
    plugin: String,
}

impl HostLogger for PluginLogger {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        logging::plugin_event(&self.plugin, level, target.as_str(), message.as_str());
    }
}
