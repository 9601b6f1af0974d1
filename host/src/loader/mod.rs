//! Finding and loading plugin libraries.
//!
//! Plugins come from folders, in this order: the bundled folder (next to
//! the executable), each folder of `OBNAM_PLUGIN_DIR`, each `--plugin-dir`.
//! Each file is checked ([`elf_check`]) before the system loader sees it,
//! then opened with abi_stable, whose library header tells which plugin-api
//! version the plugin was built against. An incompatible version is refused
//! with one line naming both versions, before abi_stable's layout check
//! (whose report runs to thousands of lines) is even tried. A file that is
//! not a plugin gets a one-line warning and the host goes on. When two
//! folders hold a plugin of the same name, the later folder wins.
//!
//! Libraries are never unloaded.

mod elf_check;

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use plugin_api::abi::{PluginModRef, API_VERSION};
use tracing::{debug, warn};

/// File-name prefix of bundled plugins (`libobnam_plugin_<name>.so`), which
/// tells them apart from other libraries in a cargo target folder.
pub const BUNDLED_PREFIX: &str = "libobnam_plugin_";

/// A folder plugins are loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDir {
    pub path: PathBuf,
    /// The bundled folder loads only `libobnam_plugin_*.so`; other folders
    /// load every file and warn about those that are not plugins.
    pub bundled: bool,
}

/// A plugin library that loaded and passed every check.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    /// The plugin-api version it was built against.
    pub api_version: String,
    pub path: PathBuf,
    pub module: PluginModRef,
}

/// The bundled plugin folder for an executable: `<prefix>/lib/obnam/plugins`
/// when installed as `<prefix>/bin/obnam`, else the executable's own folder
/// (the cargo `target/<profile>/` folder during development).
pub fn bundled_dir(exe: &Path) -> Option<PathBuf> {
    let exe_dir = exe.parent()?;
    let installed = exe_dir.join("../lib/obnam/plugins");
    if let Ok(installed) = installed.canonicalize() {
        if installed.is_dir() {
            return Some(installed);
        }
    }
    Some(exe_dir.to_path_buf())
}

/// Load every plugin from `dirs`. Later folders override earlier ones.
pub fn load_all(dirs: &[PluginDir]) -> Vec<LoadedPlugin> {
    let mut loaded: Vec<LoadedPlugin> = Vec::new();
    for dir in dirs {
        for path in candidates(dir) {
            let Some(plugin) = load_one(&path) else {
                continue;
            };
            if let Some(old) = loaded.iter_mut().find(|p| p.name == plugin.name) {
                warn!(
                    "plugin '{}' from {} overrides the one from {}",
                    plugin.name,
                    plugin.path.display(),
                    old.path.display()
                );
                *old = plugin;
            } else {
                loaded.push(plugin);
            }
        }
    }
    loaded
}

/// Refuse a plugin folder or file that someone else could have written,
/// as ssh refuses loose key permissions: writable by group or others, or
/// owned by a user other than root and the one running obnam.
pub fn check_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot check it: {e}"))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by {} (mode {mode:04o}); make it writable by its owner only",
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            }
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "it is owned by user {}, neither root nor the user running obnam",
            meta.uid()
        ));
    }
    Ok(())
}

/// The files of a folder that may be plugins, in name order.
fn candidates(dir: &PluginDir) -> Vec<PathBuf> {
    if dir.path.exists() {
        if let Err(why) = check_permissions(&dir.path) {
            warn!("ignoring plugin folder {}: {why}", dir.path.display());
            return Vec::new();
        }
    }
    let entries = match std::fs::read_dir(&dir.path) {
        Ok(entries) => entries,
        Err(e) => {
            if !dir.bundled {
                warn!("cannot read plugin folder {}: {e}", dir.path.display());
            }
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if dir.bundled {
                name.starts_with(BUNDLED_PREFIX) && name.ends_with(".so")
            } else {
                !name.starts_with('.')
            }
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Load one library, or warn and return `None`.
fn load_one(path: &Path) -> Option<LoadedPlugin> {
    match try_load(path) {
        Ok(plugin) => {
            debug!(
                "loaded plugin {} {} from {}",
                plugin.name,
                plugin.version,
                path.display()
            );
            Some(plugin)
        }
        Err(message) => {
            warn!("ignoring {}: {message}", path.display());
            None
        }
    }
}

fn try_load(path: &Path) -> Result<LoadedPlugin, String> {
    check_permissions(path)?;
    elf_check::check(path).map_err(|e| e.to_string())?;
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => {
            "not an obnam plugin (a shared library without the obnam plugin entry point)"
                .to_string()
        }
        LibraryError::OpenError { err, .. } => {
            format!("cannot load the library: {}", first_line(&err.to_string()))
        }
        other => format!(
            "not a usable obnam plugin: {}",
            first_line(&other.to_string())
        ),
    })?;
    let api_version = header.version_strings().version.to_string();
    if !api_compatible(API_VERSION, &api_version) {
        let newer = parse_version(&api_version) > parse_version(API_VERSION);
        return Err(if newer && same_series(API_VERSION, &api_version) {
            format!(
                "plugin was built against plugin-api {api_version}, newer than this obnam's \
                 {API_VERSION}; upgrade obnam or rebuild the plugin against {API_VERSION}"
            )
        } else {
            format!(
                "plugin was built against plugin-api {api_version}; this obnam needs plugin-api {}",
                compatible_range(API_VERSION)
            )
        });
    }
    let module = header.init_root_module::<PluginModRef>().map_err(|e| {
        debug!("full ABI check report for {}: {e}", path.display());
        match e {
            LibraryError::AbiInstability(_) => format!(
                "plugin built against plugin-api {api_version} has a layout this obnam \
                 (plugin-api {API_VERSION}) cannot use; rebuild it (details in the log with --log FILE --log-level debug)"
            ),
            other => first_line(&other.to_string()),
        }
    })?;
    Ok(LoadedPlugin {
        name: module.name()().to_string(),
        version: module.version()().to_string(),
        api_version,
        path: path.to_path_buf(),
        module,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split(['.', '-', '+']).map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Whether two versions are in one compatible series: the same major
/// version, and for 0.x the same minor version.
fn same_series(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => a.0 == b.0 && (a.0 != 0 || a.1 == b.1),
        _ => false,
    }
}

/// Whether a plugin built against plugin-api `plugin` can be loaded by a
/// host with plugin-api `host`: the same series (see `same_series`), and
/// no newer than the host's (a newer plugin-api may have added methods the
/// host does not provide).
pub fn api_compatible(host: &str, plugin: &str) -> bool {
    same_series(host, plugin) && parse_version(plugin) <= parse_version(host)
}

fn compatible_range(host: &str) -> String {
    match parse_version(host) {
        Some((0, minor, _)) => format!("0.{minor}.x"),
        Some((major, minor, _)) => format!("{major}.0 to {major}.{minor}"),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(!api_compatible("0.1.0", "0.1.5"));
        assert!(api_compatible("0.1.5", "0.1.0"));
        assert!(api_compatible("0.1.5", "0.1.5"));
        assert!(!api_compatible("0.1.0", "0.2.0"));
        assert!(!api_compatible("0.2.0", "0.1.0"));
        assert!(api_compatible("1.3.0", "1.1.0"));
        assert!(!api_compatible("1.1.0", "1.3.0"));
        assert!(!api_compatible("1.0.0", "2.0.0"));
        assert!(!api_compatible("1.0.0", "garbage"));
        assert_eq!(compatible_range("0.1.0"), "0.1.x");
    }
}
