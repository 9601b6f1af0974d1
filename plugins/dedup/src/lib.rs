//! The dedup plugin: how file data is cut into chunks, and whether a chunk
//! is stored again or an existing copy reused.
//!
//! It answers two hooks the backup plugin creates, so that another policy
//! can be loaded in its place:
//!
//! * `backup-chunk-boundaries` ([`chunking`]): content-defined chunking
//!   (FastCDC) by default, so that inserting a byte near the start of a
//!   large file changes one chunk, not every chunk after it; or Obnam's
//!   fixed-size chunks with `--chunking fixed`.
//! * `backup-store-chunk` ([`policy`]): the `deduplicate` setting, as in
//!   Obnam: `fatalist` reuses a stored chunk with the same token, `verify`
//!   reuses it only after comparing the bytes, `never` stores every chunk.

#![forbid(unsafe_code)]

mod chunking;
mod policy;

use std::sync::{Arc, OnceLock};

use plugin_api::payloads::{
    SplitRequest, StoreChunkRequest, BACKUP_CHUNK_BOUNDARIES, BACKUP_STARTING, BACKUP_STORE_CHUNK,
};
use plugin_api::{App, Context, Plugin, Result, Setting, GROUP_BACKUP, PRIORITY_DEFAULT};

use chunking::Chunker;
use policy::Policy;

#[derive(Default)]
struct Dedup;

/// What the callbacks need, set up on first use from the run's settings.
#[derive(Default)]
struct State {
    chunker: OnceLock<Chunker>,
    policy: OnceLock<Policy>,
}

impl State {
    fn chunker(&self, ctx: &Context<'_>) -> Result<&Chunker> {
        if let Some(c) = self.chunker.get() {
            return Ok(c);
        }
        let chunker = Chunker::from_settings(ctx)?;
        Ok(self.chunker.get_or_init(|| chunker))
    }

    fn policy(&self, ctx: &Context<'_>) -> Result<&Policy> {
        if let Some(p) = self.policy.get() {
            return Ok(p);
        }
        let policy = Policy::from_settings(ctx)?;
        Ok(self.policy.get_or_init(|| policy))
    }
}

impl Plugin for Dedup {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::choice("deduplicate", &["fatalist", "never", "verify"])
                .subcommands(&["backup"])
                .metavar("MODE")
                .help(
                    "how to find duplicate data and store it only once: fatalist (reuse a \
                     stored chunk with the same checksum), verify (reuse it only if its bytes \
                     are the same), or never (store every chunk again)",
                )
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::choice("chunking", &["content-defined", "fixed"])
                .subcommands(&["backup"])
                .metavar("METHOD")
                .help(
                    "how to cut files into chunks: content-defined (FastCDC; an insertion \
                     changes only nearby chunks) or fixed (every --chunk-size bytes)",
                )
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::bytesize("chunk-size")
                .subcommands(&["backup"])
                .default("1MiB")
                .help("size of chunks with --chunking fixed")
                .range("1", "64MiB")
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::bytesize("chunk-min-size")
                .subcommands(&["backup"])
                .default("64KiB")
                .help("smallest content-defined chunk")
                .range("64", "1MiB")
                // FastCDC's sizes are even: refused by the host wherever
                // they are written, before anything is done.
                .multiple_of("2")
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::bytesize("chunk-avg-size")
                .subcommands(&["backup"])
                .default("256KiB")
                .help("average content-defined chunk")
                .range("256", "4MiB")
                .multiple_of("2")
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::bytesize("chunk-max-size")
                .subcommands(&["backup"])
                .default("1MiB")
                .help("largest content-defined chunk")
                .range("1KiB", "16MiB")
                .multiple_of("2")
                .group(GROUP_BACKUP),
        );

        let state = Arc::new(State::default());
        // Check the chunk settings before the backup writes anything.
        let s = state.clone();
        app.add_json_callback(
            BACKUP_STARTING,
            PRIORITY_DEFAULT,
            move |ctx: &Context<'_>, _| s.chunker(ctx).map(|_| ()),
        );
        let s = state.clone();
        app.add_callback::<SplitRequest, _>(
            BACKUP_CHUNK_BOUNDARIES,
            PRIORITY_DEFAULT,
            move |ctx, req| {
                if !req.handled {
                    s.chunker(ctx)?.split(req);
                    req.handled = true;
                }
                Ok(())
            },
        );
        app.add_callback::<StoreChunkRequest, _>(
            BACKUP_STORE_CHUNK,
            PRIORITY_DEFAULT,
            move |ctx, req| {
                if !req.handled {
                    state.policy(ctx)?.store(req)?;
                    req.handled = true;
                }
                Ok(())
            },
        );
        Ok(())
    }
}

plugin_api::export_plugin!("dedup", Dedup);
