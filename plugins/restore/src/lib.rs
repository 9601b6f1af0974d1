//! The bundled `restore` plugin of obnam: getting data back out of a
//! repository, and seeing what is in it.
//!
//! Subcommands:
//!
//! * `restore --to DIR [--generation GEN] [PATH]...`: recreate a generation,
//!   or the given absolute paths of it, below DIR ([`restore`]);
//! * `generations`, `genids`: a client's generations, oldest first;
//! * `ls [--generation GEN] [PATH]...`: the entries of a generation, `ls -l`
//!   style;
//! * `clients`: the clients in the repository ([`listing`]).
//!
//! Settings: `--to` and `--generation` (help group "Restoring"), and
//! `--restore-workers` ("Performance"). The host's `--client-name`,
//! `--output-format`, `--quiet` and `--pretend` apply too.
//!
//! The logic lives in plain modules, most with unit tests: [`walk`] (the
//! order of a restore), [`fetch`] (reading chunks, ahead for large
//! files), [`sparse`] (holes), [`fsops`] (creating things without
//! following symlinks), [`metadata`] (owner, attributes, mode, times),
//! [`names`] (which stored names are safe, and how to show any name),
//! [`problems`] (reporting errors), [`select`] (which generation) and
//! [`format`] (mode strings, sizes, times).

#![forbid(unsafe_code)]

mod diff;
mod dir_cursor;
mod dump;
mod fetch;
mod find;
mod format;
mod fsops;
mod kdirstat;
mod links;
mod listing;
mod metadata;
mod names;
mod partial;
mod path_args;
mod problems;
mod restore;
mod select;
mod sparse;
mod verify;
mod walk;

use plugin_api::payloads::RUN_INTERRUPTED;
use plugin_api::{
    App, Plugin, Result, Setting, GROUP_PERFORMANCE, GROUP_RESTORE, PRIORITY_DEFAULT,
};

#[derive(Default)]
struct RestorePlugin;

impl Plugin for RestorePlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::path("to")
                .subcommands(&["restore"])
                .metavar("DIR")
                .help("restore into DIR, which must be empty or not exist yet")
                .group(GROUP_RESTORE),
        );
        app.add_setting(
            Setting::string("generation")
                .subcommands(&["restore", "ls", "find", "dump", "verify", "kdirstat"])
                .metavar("GEN")
                .help(
                    "the generation to work on: an id, or 'latest' for the newest one \
                     (checkpoints included); the default is latest, except for find, \
                     which searches every generation unless given one",
                )
                .group(GROUP_RESTORE),
        );
        app.add_setting(
            Setting::integer("verify-randomly")
                .subcommands(&["verify"])
                .metavar("N")
                .help("with verify: check only N regular files chosen at random (0: everything)")
                .range("0", &i64::MAX.to_string())
                .group(GROUP_RESTORE),
        );
        app.add_setting(
            Setting::integer("restore-workers")
                .subcommands(&["restore"])
                .metavar("N")
                .help("restore N files at once, at most 256 (0: four per processor, from 4 to 32; at most 4 from sftp:// or s3://)")
                // Each worker is a thread with buffers of its own.
                .range("0", "256")
                .group(GROUP_PERFORMANCE),
        );
        // A restore ended by a signal removes the files it was writing.
        app.add_json_callback(RUN_INTERRUPTED, PRIORITY_DEFAULT, partial::on_interrupted);
        app.add_subcommand(
            "restore",
            "[PATH]...",
            "restore a generation (or the given absolute paths of it) into the folder --to DIR",
            restore::run,
        );
        app.add_subcommand(
            "generations",
            "",
            "list the client's generations, oldest first: id, times, files, size",
            listing::generations,
        );
        app.add_subcommand(
            "genids",
            "",
            "list the client's generation ids, oldest first",
            listing::genids,
        );
        app.add_subcommand(
            "ls",
            "[PATH]...",
            "list the contents of a generation (or of the given paths in it), recursively",
            listing::ls,
        );
        app.add_subcommand(
            "clients",
            "",
            "list the clients in the repository",
            listing::clients,
        );
        app.add_subcommand(
            "find",
            "PATTERN...",
            "list the paths matching a regular expression, in every generation (or the one \
             --generation names), with the generations each version is in",
            find::run,
        );
        app.add_subcommand(
            "diff",
            "[GEN1] [GEN2]",
            "show what was added, removed and changed between two generations (default: the \
             latest two; one id: it and the latest)",
            diff::run,
        );
        app.add_subcommand(
            "dump",
            "PATH",
            "write a file of a generation to standard output, or a directory (or any other \
             object) as a tar stream",
            dump::run,
        );
        app.add_subcommand(
            "verify",
            "[PATH]...",
            "compare the file system with a generation (default latest): contents, metadata, \
             and what was added or removed; ends non-zero on any difference",
            verify::run,
        );
        app.add_subcommand(
            "kdirstat",
            "",
            "print a generation as a KDirStat/QDirStat cache file, to see where the space went",
            kdirstat::run,
        );
        Ok(())
    }
}

plugin_api::export_plugin!("restore", RestorePlugin);
