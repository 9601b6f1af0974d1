//! The bundled `forget` plugin of obnam: a repository that keeps what a
//! retention policy says, and no more.
//!
//! Subcommands:
//!
//! * `forget [GENID]...`: remove the named generations of the client;
//! * `forget --keep POLICY`: remove the generations the policy does not
//!   keep (Obnam's syntax, e.g. `72h,7d,5w,12m,1y`; see [`policy`]);
//! * `forget` alone: remove only checkpoints nothing should restore from.
//!
//! * `forget ... --prune`: then prune;
//! * `prune`: give back the space of data no generation refers to (the
//!   engine does the work, beside running backups; see [`prune`]);
//! * `remove-client NAME`: every generation of a client, and the client.
//!
//! With `--all-clients` forget works on every client, `--pretend` shows
//! the verdicts without removing anything, and `--output-format json`
//! gives them as one JSON document. forget removes generation records;
//! the data only they used comes back with `prune`.
//!
//! The judgement is in [`decide`] (pure, tested on made-up histories), the
//! repository work in [`command`].

#![forbid(unsafe_code)]

mod command;
mod decide;
mod policy;
mod prune;
mod remove_client;

use plugin_api::{App, Plugin, Result, Setting, GROUP_BACKUP};

#[derive(Default)]
struct ForgetPlugin;

impl Plugin for ForgetPlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::string("keep")
                .subcommands(&["forget"])
                .metavar("POLICY")
                .help(
                    "with forget: keep the generations of POLICY and remove the rest; e.g. \
                     72h,7d,5w,12m,1y keeps the newest of each of the last 72 hours, 7 days, \
                     5 weeks, 12 months and 1 year that have one; a plain N keeps the last N",
                )
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::boolean("prune")
                .subcommands(&["forget"])
                .help("with forget: prune afterwards, giving back the space of what was removed")
                .group(GROUP_BACKUP),
        );
        app.add_setting(
            Setting::integer("repack-threshold")
                .subcommands(&["forget", "prune"])
                .metavar("PERCENT")
                .help(
                    "with prune: rewrite a pack once more than PERCENT of its bytes are unused \
                     (0: any unused byte; 100: never, only delete wholly unused packs)",
                )
                .default(prune::DEFAULT_REPACK_THRESHOLD)
                .range("0", "100")
                .group(GROUP_BACKUP),
        );
        app.add_subcommand(
            "prune",
            "",
            "delete the data no generation refers to; backups may run meanwhile",
            prune::prune,
        );
        app.add_subcommand(
            "remove-client",
            "NAME",
            "remove a client and all its generations (their data goes with the next prune)",
            remove_client::remove_client,
        );
        app.add_subcommand(
            "forget",
            "[GENID]...",
            "remove the named generations, or those --keep POLICY does not keep (and old checkpoints)",
            command::forget,
        );
        Ok(())
    }
}

plugin_api::export_plugin!("forget", ForgetPlugin);
