//! Finding and loading plugin libraries.
//!
//! Plugins come from folders, in this order: the bundled folder (next to
//! the executable), each folder of `OBNAM_PLUGIN_DIR`, each `--plugin-dir`.
//! A folder, and then each file, is refused if anyone but root and the user
//! running obnam could have written it or a folder on its real path
//! ([`safe_path`]). The file is opened once; the open file is checked
//! ([`elf_check`]) before the system loader sees it, then loaded through
//! `/proc/self/fd/N` with abi_stable, whose library header tells which
//! plugin-api version the plugin was built against. An incompatible version is refused
//! with one line naming both versions, before abi_stable's layout check
//! (whose report runs to thousands of lines) is even tried. A file that is
//! not a plugin gets a one-line warning and the host goes on. When two
//! folders hold a plugin of the same name, the later folder wins.
//!
//! Libraries are never unloaded. A loaded plugin is then initialised and
//! enabled through [`LoadedPlugin`]'s methods (in `enable.rs`), which
//! implement the host's side of the ABI traits a plugin is handed before
//! it runs (`Registrar`, `HostLogger`).

mod elf_check;
mod enable;
mod safe_path;

pub use enable::Registration;

use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use elf_check::ElfError;
use plugin_api::abi::{PluginModRef, RootModuleError, API_VERSION};
use plugin_api::names::escape_path;
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
    /// From the bundled folder (obnam's own), not a folder the user named.
    pub bundled: bool,
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
/// Also returns the first plugin file of a folder the user named that is
/// refused because others could have written it, or that is a plugin (or
/// looks like one) that cannot be used: that is an error, as a refused
/// folder is (run without it, a backup would go on without the user's
/// exclude plugin, exit 0, and in silence with `--quiet`; a plugin built
/// for a newer obnam did so after a downgrade). A file that is evidently
/// no plugin (no ELF header, a library without the entry point: a
/// plugin's own dependency, say) is only warned of.
pub fn load_all(dirs: &[PluginDir]) -> (Vec<LoadedPlugin>, Option<String>) {
    let mut loaded: Vec<LoadedPlugin> = Vec::new();
    let mut refused = None;
    for dir in dirs {
        for path in candidates(dir) {
            if !dir.bundled {
                if let Err(why) = safe_path::open_plugin(&path) {
                    refused.get_or_insert_with(|| {
                        format!("plugin file {} is refused: {why}", escape_path(&path))
                    });
                    continue;
                }
            }
            let mut plugin = match try_load(&path) {
                Ok(plugin) => {
                    debug!(
                        "loaded plugin {} {} from {}",
                        plugin.name,
                        plugin.version,
                        path.display()
                    );
                    plugin
                }
                Err(Unusable::NotAPlugin(why)) => {
                    warn!("ignoring {}: {why}", escape_path(&path));
                    continue;
                }
                Err(Unusable::Broken(why)) if dir.bundled => {
                    warn!("ignoring {}: {why}", escape_path(&path));
                    continue;
                }
                Err(Unusable::Broken(why)) => {
                    refused.get_or_insert_with(|| {
                        format!(
                            "plugin file {} cannot be used: {why} (obnam does not run without \
                             a plugin of a folder it was given: move the file out of the folder \
                             to run without it)",
                            escape_path(&path)
                        )
                    });
                    continue;
                }
            };
            plugin.bundled = dir.bundled;
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
    (loaded, refused)
}

/// The files of a folder that may be plugins, in name order.
fn candidates(dir: &PluginDir) -> Vec<PathBuf> {
    if dir.path.exists() {
        if let Err(why) = safe_path::check_folder(&dir.path) {
            warn!("ignoring plugin folder {}: {why}", escape_path(&dir.path));
            return Vec::new();
        }
    }
    let entries = match std::fs::read_dir(&dir.path) {
        Ok(entries) => entries,
        Err(e) => {
            if !dir.bundled {
                warn!("cannot read plugin folder {}: {e}", escape_path(&dir.path));
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
        .filter(|p| match std::fs::metadata(p) {
            Ok(meta) if meta.is_file() => true,
            // A FIFO, a device or a socket is said (a folder is a folder).
            Ok(meta) => {
                if !dir.bundled && !meta.is_dir() {
                    warn!("ignoring {}: it is not a regular file", escape_path(p));
                }
                false
            }
            // A symbolic link that leads nowhere (its plugin moved or
            // removed, or a loop) is said, not skipped in silence: the
            // only sign would be a command or setting that is unknown.
            Err(e) => {
                if !dir.bundled {
                    let why = match std::fs::read_link(p) {
                        Ok(target) if e.kind() == std::io::ErrorKind::NotFound => format!(
                            "it is a symbolic link to {}, which does not exist",
                            escape_path(&target)
                        ),
                        _ => e.to_string(),
                    };
                    warn!("ignoring {}: {why}", escape_path(p));
                }
                false
            }
        })
        .collect();
    files.sort();
    files
}

/// Why a plugin folder may not be used: someone but root and the user
/// running obnam could write in it or a folder on its real path (see
/// [`safe_path`]).
pub fn refuse_folder(path: &Path) -> Result<(), String> {
    safe_path::check_folder(path)
}

/// What a library that does not export the plugin entry point is.
const NOT_A_PLUGIN: &str =
    "not an obnam plugin (a shared library without the obnam plugin entry point)";

/// Why a file of a plugin folder is not loaded.
enum Unusable {
    /// It is evidently no plugin: not a regular file, not a 64-bit ELF
    /// library, or a library without the plugin entry point.
    NotAPlugin(String),
    /// A plugin, or what looks like one, that cannot be used: damaged,
    /// refused by the system loader, built against another plugin-api.
    Broken(String),
}

fn try_load(path: &Path) -> Result<LoadedPlugin, Unusable> {
    let file = safe_path::open_plugin(path).map_err(Unusable::NotAPlugin)?;
    let is_plugin = elf_check::check(&file, abi_stable::library::ROOT_MODULE_LOADER_NAME).map_err(
        |e| match e {
            ElfError::NotElf | ElfError::WrongClass => Unusable::NotAPlugin(e.to_string()),
            ElfError::Io(_) | ElfError::Corrupt(_) => Unusable::Broken(e.to_string()),
        },
    )?;
    if is_plugin == Some(false) {
        return Err(Unusable::NotAPlugin(NOT_A_PLUGIN.into()));
    }
    let header = load_open_file(file)?;
    try_module(path, header).map_err(Unusable::Broken)
}

fn try_module(
    path: &Path,
    header: &'static abi_stable::library::LibHeader,
) -> Result<LoadedPlugin, String> {
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
    // Checked with the plugin's view of the shared types as the interface,
    // so that a plugin built against an older compatible plugin-api, which
    // knows fewer of the host's methods, loads (see `abi::root_module`).
    let module = plugin_api::abi::root_module(header).map_err(|e| match e {
        RootModuleError::Layout(report) => {
            debug!("full ABI check report for {}: {report}", path.display());
            format!(
                "plugin built against plugin-api {api_version} has a layout this obnam \
                 (plugin-api {API_VERSION}) cannot use; rebuild it (details in the log with --log FILE --log-level debug)"
            )
        }
        RootModuleError::Other(message) => first_line(&message),
    })?;
    Ok(LoadedPlugin {
        name: module.name()().to_string(),
        version: module.version()().to_string(),
        api_version,
        path: path.to_path_buf(),
        module,
        bundled: false,
    })
}

/// Where the system loader finds the files opened by this process.
const PROC_FD: &str = "/proc/self/fd";

/// Load the open, checked `file` through `/proc/self/fd/N`: the system
/// loader opens that name afresh and gets the very file that was checked,
/// whatever has happened to its path since.
fn load_open_file(file: File) -> Result<&'static abi_stable::library::LibHeader, Unusable> {
    if !Path::new(PROC_FD).is_dir() {
        return Err(Unusable::Broken(format!(
            "cannot load it: {PROC_FD} is missing (is /proc mounted?); \
             obnam loads plugins only through it"
        )));
    }
    let fd_path = format!("{PROC_FD}/{}", file.as_raw_fd());
    let result = lib_header_from_path(Path::new(&fd_path));
    if !matches!(result, Err(LibraryError::OpenError { .. })) {
        // The library is (or may still be) loaded under the name
        // /proc/self/fd/N. The system loader reuses a loaded library whose
        // name matches, so that number must never name another file in this
        // process: the file stays open for as long as the process runs, as
        // the library stays loaded. This also lets a backtrace's symbol
        // lookup read the library under that name.
        let _ = file.into_raw_fd();
    }
    // The system loader's messages name the library /proc/self/fd/N, which
    // tells the user nothing; the caller names the file.
    let named = |message: String| message.replace(&format!("{fd_path}: "), "");
    result.map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => Unusable::NotAPlugin(NOT_A_PLUGIN.into()),
        LibraryError::OpenError { err, .. } => Unusable::Broken(named(format!(
            "cannot load the library: {}",
            first_line(&err.to_string())
        ))),
        other => Unusable::Broken(named(format!(
            "not a usable obnam plugin: {}",
            first_line(&other.to_string())
        ))),
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
