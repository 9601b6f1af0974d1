//! The compress plugin: compresses the objects the repository stores.
//!
//! Backups of text, source code, documents and databases shrink a lot when
//! compressed, so obnam compresses by default. The repository engine knows
//! nothing of compression; it passes every object it stores (file chunks,
//! trees, pack trailers, index objects, clients, generations) through the
//! host's `repository-data` filter hook. This plugin adds one filter to that
//! hook per codec: `zstd` (the default: fast, and small output) and
//! `deflate` (the zlib method Obnam 1.x used). Each filter records its tag in
//! the objects it compressed, so reading never depends on the settings: an
//! object is decompressed with the codec its tag names, and one stored as
//! it was carries no tag at all. Changing `--compress-with` between backups
//! is therefore safe; old objects keep their tags.
//!
//! Settings ([`config`]): `--compress-with none|zstd|deflate` and
//! `--compress-level N` (unset: zstd 1, deflate 6; see `Codec::default_level`). They are checked
//! when a backup starts (the `backup-starting` hook), so that a bad level
//! stops the backup before the repository is even created, and again on
//! first use by any other command that writes.
//!
//! Not compressed: lock objects (tiny, short-lived, and read by every
//! process that meets the repository, so they should not depend on this
//! plugin), the repository's `config` (never filtered), objects under 64
//! bytes, and anything that does not shrink by at least 1% ([`codec`]).

#![cfg_attr(not(test), forbid(unsafe_code))]

mod codec;
mod config;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod test_alloc;

use std::sync::{Arc, OnceLock};

use plugin_api::payloads::BACKUP_STARTING;
use plugin_api::{
    App, Context, DataFilter, Error, Plugin, Result, Setting, GROUP_BACKUP, PRIORITY_DEFAULT,
};

use codec::Codec;
use config::Plan;

/// The filter hook the host creates for every stored object.
const REPOSITORY_DATA: &str = "repository-data";

#[derive(Default)]
struct Compress;

/// The run's plan, read from the settings on first use.
#[derive(Default)]
struct State {
    plan: OnceLock<Plan>,
}

impl State {
    fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        if let Some(plan) = self.plan.get() {
            return Ok(*plan);
        }
        let plan = Plan::from_settings(ctx)?;
        Ok(*self.plan.get_or_init(|| plan))
    }
}

/// The filter of one codec: compresses when the settings pick its codec,
/// and always decompresses what carries its tag.
struct CodecFilter {
    codec: Codec,
    state: Arc<State>,
}

impl DataFilter for CodecFilter {
    fn encode(&self, ctx: &Context<'_>, context: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        if context.starts_with("locks/") {
            return Ok(None);
        }
        let plan = self.state.plan(ctx)?;
        if plan.codec != Some(self.codec) {
            return Ok(None);
        }
        Ok(codec::compress(self.codec, plan.level, context, data))
    }

    fn decode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>> {
        codec::decompress(self.codec, context, data).map_err(Error::msg)
    }

    /// Every error of `decode` is about the bytes: they do not
    /// decompress, or would decompress to more than an object may hold.
    fn decode_errors_are_damage(&self) -> bool {
        true
    }
}

impl Plugin for Compress {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::choice(config::WITH, &config::CHOICES)
                .subcommands(&["backup"])
                .default(config::DEFAULT)
                .metavar("CODEC")
                .help(
                    "how to compress what the backup stores (deflate is what Obnam 1.x used); \
                     it can change between backups: what was written with any of them \
                     stays readable",
                )
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::string(config::LEVEL)
                .subcommands(&["backup"])
                .metavar("LEVEL")
                .help(&format!(
                    "compression level, higher is smaller and slower: for zstd {} (fastest) \
                     to {} (default {}), for deflate 0 to 9 (default {})",
                    Codec::Zstd.levels().start(),
                    Codec::Zstd.levels().end(),
                    Codec::Zstd.default_level(),
                    Codec::Deflate.default_level(),
                ))
                .group(GROUP_BACKUP),
        );

        let state = Arc::new(State::default());
        // Check the settings before the backup writes anything.
        let s = state.clone();
        app.add_json_callback(
            BACKUP_STARTING,
            PRIORITY_DEFAULT,
            move |ctx: &Context<'_>, _| s.plan(ctx).map(|_| ()),
        );
        for codec in Codec::ALL {
            let filter = CodecFilter {
                codec,
                state: state.clone(),
            };
            app.add_filter(REPOSITORY_DATA, PRIORITY_DEFAULT, codec.tag(), filter);
        }
        Ok(())
    }
}

plugin_api::export_plugin!("compress", Compress);
