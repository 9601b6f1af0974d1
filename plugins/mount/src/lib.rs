//! The bundled `mount` plugin of obnam: `obnam mount MOUNTPOINT` shows a
//! client's generations as a read-only FUSE file system.
//!
//! The top of the mount holds one directory per generation, named by its
//! start time and id (`naming`), and `latest`, a symlink to the newest
//! one. Inside, each generation is as it was backed up: contents, sizes,
//! modes, owners, times, symlinks, device nodes, hard links (one inode,
//! the link count as backed up) and extended attributes. File data is
//! read from the repository as programs read it, chunk by chunk
//! (`layout` maps offsets to chunks), through a bounded cache
//! (`cache`).
//!
//! The command stays in the foreground until the mount is unmounted
//! (`fusermount3 -u MOUNTPOINT`) or obnam is interrupted (Ctrl-C), which
//! unmounts too (`mount` says how).
//!
//! Settings: `--mount-cache-size` ("Performance"). The host's
//! `--client-name` and `--repository` apply.
//!
//! Modules: `mount` (the subcommand: checks, mounting, serving),
//! `fs` (the FUSE requests), `inodes` (stable inode numbers, hard
//! links), `attr` (what `stat` shows), `layout`, `cache` and
//! `naming`.

#![forbid(unsafe_code)]

mod attr;
mod cache;
mod fs;
mod inodes;
mod layout;
mod mount;
mod naming;

use plugin_api::payloads::RUN_INTERRUPTED;
use plugin_api::{App, Plugin, Result, Setting, GROUP_PERFORMANCE, PRIORITY_DEFAULT};

#[derive(Default)]
struct MountPlugin;

impl Plugin for MountPlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::bytesize("mount-cache-size")
                .subcommands(&["mount"])
                .metavar("SIZE")
                .default("32MiB")
                .help("keep up to SIZE of file data read through 'obnam mount' in memory")
                .group(GROUP_PERFORMANCE),
        );
        app.add_subcommand(
            "mount",
            "MOUNTPOINT",
            "show the client's generations, read-only, at MOUNTPOINT (FUSE) until unmounted",
            mount::run,
        );
        app.add_json_callback(RUN_INTERRUPTED, PRIORITY_DEFAULT, mount::on_interrupted);
        Ok(())
    }
}

plugin_api::export_plugin!("mount", MountPlugin);
