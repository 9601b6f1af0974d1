//! The bundled `report` plugin of obnam: what a repository holds, for
//! people and for monitoring.
//!
//! Subcommands:
//!
//! * `stats`: per client and for the repository, generations, files,
//!   logical size, stored size after dedup and compression, the dedup
//!   ratio, and the packs with their unused share ([`stats`]);
//! * `nagios-last-backup-age`: one Nagios status line, and the exit code
//!   Nagios reads (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), by the age of
//!   the client's latest complete generation ([`nagios`]).
//!
//! Ages (`--warn-age 1d`) are parsed by [`age`].

#![forbid(unsafe_code)]

mod age;
mod nagios;
mod stats;

use plugin_api::{App, Plugin, Result, Setting, GROUP_DEFAULT, GROUP_DEVELOPMENT};

#[derive(Default)]
struct ReportPlugin;

impl Plugin for ReportPlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::string("warn-age")
                .subcommands(&["nagios-last-backup-age"])
                .metavar("AGE")
                .default("1d")
                .help(
                    "with nagios-last-backup-age: WARNING once the latest complete backup is \
                     older than AGE (N with s, m, h, d or w: 36h, 2d)",
                )
                .group(GROUP_DEFAULT),
        );
        app.add_setting(
            Setting::string("critical-age")
                .subcommands(&["nagios-last-backup-age"])
                .metavar("AGE")
                .default("3d")
                .help(
                    "with nagios-last-backup-age: CRITICAL once the latest complete backup is \
                     older than AGE",
                )
                .group(GROUP_DEFAULT),
        );
        app.add_setting(
            Setting::string("testing-now")
                .subcommands(&["nagios-last-backup-age"])
                .metavar("TIME")
                .help(
                    "nagios-last-backup-age judges ages as if it were TIME (RFC 3339); for \
                     testing",
                )
                .group(GROUP_DEVELOPMENT),
        );
        app.add_subcommand(
            "stats",
            "",
            "show where the repository's space goes: per client and in all, generations, \
             sizes before and after dedup and compression, unused space",
            stats::run,
        );
        app.add_subcommand(
            "nagios-last-backup-age",
            "",
            "check the age of the client's latest complete backup, as a Nagios plugin \
             (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
            nagios::run,
        );
        // Whatever stops the check before it runs (a bad config file or
        // setting, a usage error) is UNKNOWN to Nagios too, with its line.
        app.set_subcommand_failure("nagios-last-backup-age", 3, "OBNAM UNKNOWN: ");
        Ok(())
    }
}

plugin_api::export_plugin!("report", ReportPlugin);
