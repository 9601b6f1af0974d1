//! The stable ABI of obnam plugins, and the safe layer plugin authors use.
//!
//! obnam is a backup program whose every user-facing command is a plugin: a
//! `cdylib` loaded at run time. This crate is the one dependency of a
//! plugin. It defines the layout-checked boundary types ([`abi`]) on top of
//! [`abi_stable`], and an ordinary Rust API over them:
//!
//! * [`Plugin`]: the trait a plugin implements; its [`enable`](Plugin::enable)
//!   method registers what the plugin offers through an [`App`];
//! * [`export_plugin!`]: the one macro that exports the plugin from its library;
//! * [`submit!`] and the [`declare`] module: subcommands, settings, hooks,
//!   callbacks and filters declared where they are defined, registered
//!   without a hand-written `enable`;
//! * [`Setting`]: typed settings (string, list, path, path list, boolean,
//!   integer, byte size, choice) that become command-line options, config
//!   keys and environment variables;
//! * hooks: plain hooks with typed payloads, JSON hooks, and filter hooks;
//! * [`Context`]: what a running subcommand or callback gets from the host.
//!
//! A complete plugin:
//!
//! ```ignore
//! use plugin_api::{App, Context, Plugin, Result, Setting};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn enable(&self, app: &mut App<'_>) -> Result<()> {
//!         app.add_setting(Setting::string("greeting").default("hello").help("what to say"));
//!         app.add_subcommand("hello", "[NAME]...", "greet people", |ctx, args| {
//!             let greeting = ctx.string("greeting")?.unwrap_or_default();
//!             for name in args {
//!                 ctx.outln(&format!("{greeting}, {}", name.to_string_lossy()))?;
//!             }
//!             Ok(())
//!         });
//!         Ok(())
//!     }
//! }
//!
//! plugin_api::export_plugin!("hello", Hello);
//! ```
//!
//! Panics in a plugin never cross the boundary: every call into the plugin
//! is guarded, and a panic becomes an error naming the plugin. `tracing`
//! events from the plugin are forwarded to the host's log.
//!
//! Versioning: the host loads a plugin built against the same major version
//! of this crate (for 0.x: the same minor version) and a version no newer
//! than its own (not even a newer patch release, which may have added
//! methods the host lacks).

#![deny(missing_docs)]
// `unsafe` lives only in this crate (and the host's loader): each block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub mod allocator;
mod app;
pub mod checksum;
mod context;
pub mod declare;
mod entry;
mod error;
pub mod exit_guard;
mod export;
mod failure;
pub mod guard;
mod hooks;
pub mod human;
pub mod limits;
pub mod live_paths;
pub mod logging;
pub mod names;
mod output_format;
pub mod payloads;
pub mod private_paths;
pub mod repo_abi;
mod repository;
mod settings;

pub use abi::{SettingValue, API_VERSION};
pub use app::{App, DataFilter};
pub use context::{Context, SettingOrigin};
pub use error::{Error, Result};
#[doc(hidden)]
pub use export::__private;
pub use hooks::{Hook, JsonPayload, PRIORITY_DEFAULT, PRIORITY_EARLY, PRIORITY_LATE};
pub use output_format::OutputFormat;
pub use repository::{
    ChunkId, ClientUsage, DamagedRecord, Entry, EntryKind, GenerationBuilder, GenerationInfo,
    GenerationReader, LeftOut, PruneOptions, PruneReport, PruneStep, Reindexed, RepairedPack,
    RepairedPacks, RepairedRecord, RepairedRecords, Repository, Token, TreeId, Usage,
};
pub use settings::{
    Setting, GROUP_BACKUP, GROUP_DEFAULT, GROUP_DEVELOPMENT, GROUP_ENCRYPTION, GROUP_PERFORMANCE,
    GROUP_RESTORE,
};

/// Re-exported so that plugins use the same `tracing` as the forwarder.
pub use tracing;

/// Re-exported for JSON hooks, so that a plugin needs no other dependency.
pub use serde_json;

/// The trait of typed hook payloads. To derive it on a payload type of your
/// own, depend on `abi_stable` 0.11 too (its derive macro names that crate);
/// hooks you invent can use JSON payloads instead.
pub use abi_stable::StableAbi;

/// Re-exported ABI-stable standard types for payload fields.
pub mod types {
    pub use abi_stable::std_types::{ROption, RSlice, RStr, RString, RVec};
}

/// What every plugin implements.
pub trait Plugin: Send + Sync + 'static {
    /// Register the plugin's subcommands, settings, hooks and callbacks.
    /// Called once, after the plugin is loaded and before the command line
    /// is parsed, so setting values are not available yet.
    fn enable(&self, app: &mut App<'_>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            crate::__root_module_symbol!(),
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
