//! A run as root with another user's home: `sudo -E` (the way to hand
//! `OBNAM_PASSPHRASE` to a root run), `sudo` where sudoers does not set
//! HOME, a cron job or service with a HOME left over.
//!
//! obnam reads its configuration files from the home folder (and the XDG
//! folders), and writes its index cache and its record of repositories
//! there. When they belong to another user, that user steers root: their
//! `~/.obnam.conf` sets root's log file, exclusions or repository; a
//! symlink of theirs in the cache or state folders has root write or
//! change the mode of whatever it leads to, or plant a `CACHEDIR.TAG`
//! that root's later backups skip. So such a run uses root's own home
//! folder (from the password database) instead, and says so once.

use std::ffi::OsString;

use std::path::Path;
use uzers::os::unix::UserExt;

/// The environment variables that name where obnam keeps its files.
const FOLDERS: [&str; 4] = [
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
];

/// As root, replace a HOME (or XDG folder) that another user could change
/// by root's own (an XDG folder is unset: it follows HOME then); returns
/// the warning to give, if any was replaced. Call it before any thread
/// starts: it changes the process's environment.
pub fn keep_to_roots_own() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mut replaced = Vec::new();
    for var in FOLDERS {
        let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        if let Some(whose) = changeable_by_others(Path::new(&value)) {
            replaced.push((var, value, whose));
        }
    }
    if replaced.is_empty() {
        return None;
    }
    let roots_home: OsString = uzers::get_user_by_uid(0)
        .map(|u| u.home_dir().as_os_str().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    for (var, _, _) in &replaced {
        if *var == "HOME" {
            std::env::set_var("HOME", &roots_home);
        } else {
            std::env::remove_var(var);
        }
    }
    let named: Vec<String> = replaced
        .iter()
        .map(|(var, value, whose)| {
            format!(
                "{var}={} ({whose})",
                plugin_api::names::escape_path(Path::new(value))
            )
        })
        .collect();
    Some(format!(
        "obnam runs as root with {}: it uses root's home folder {} for its configuration \
         files, cache and state instead, so that no other user can steer a run as root (run \
         it with root's own HOME, as sudo -H does, to go without this warning)",
        named.join(", "),
        plugin_api::names::escape_path(Path::new(&roots_home)),
    ))
}

/// Why users other than root could change `folder` (or, if it does not
/// exist yet, where it would be made), if they could: a link of theirs on
/// the way, a folder on the way that is theirs or that they may write in
/// (see [`plugin_api::private_paths`]), or the folder itself writable by
/// others, sticky or not.
fn changeable_by_others(folder: &Path) -> Option<String> {
    use plugin_api::private_paths;
    match private_paths::resolve_private(folder) {
        Err(why) => Some(why),
        Ok(resolved) if resolved.missing.is_empty() => {
            private_paths::check_folder(&resolved.existing, false).err()
        }
        Ok(_) => None,
    }
}
