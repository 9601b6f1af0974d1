//! Config files in Obnam's INI format.
//!
//! ```ini
//! [config]
//! repository = /srv/backup
//! exclude = \.cache$, \.tmp$
//! ```
//!
//! Read in this order, later files overriding earlier ones:
//! `/etc/obnam.conf`, `/etc/obnam/*.conf`, `~/.obnam.conf`,
//! `$XDG_CONFIG_HOME/obnam/*.conf` (default `~/.config/obnam/*.conf`), then
//! each `--config FILE`. Files in a folder are read in name order.
//! `--no-default-configs` skips all but the `--config` files. A key that
//! names no known setting is an error naming the file and the key.

use std::path::{Path, PathBuf};

use super::{SettingsRegistry, Values};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("config file {path}: unknown section [{section}] (settings go in [config])")]
    UnknownSection { path: PathBuf, section: String },
    #[error("config file {path}: unknown setting '{key}'")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: {reason}")]
    BadValue { path: PathBuf, reason: String },
}

/// The default config files that exist on this machine, in reading order.
pub fn default_files(home: Option<&Path>, xdg_config_home: Option<&Path>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    files.push(PathBuf::from("/etc/obnam.conf"));
    files.extend(conf_files_in(Path::new("/etc/obnam")));
    if let Some(home) = home {
        files.push(home.join(".obnam.conf"));
    }
    let xdg = xdg_config_home
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(xdg) = xdg {
        files.extend(conf_files_in(&xdg.join("obnam")));
    }
    files.retain(|f| f.is_file());
    files
}

fn conf_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

/// Apply one config file to `values`.
pub fn apply_file(
    path: &Path,
    registry: &SettingsRegistry,
    values: &mut Values,
) -> Result<(), ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Missing(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let ini = ini::Ini::load_from_str_noescape(&text).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    for (section, props) in ini.iter() {
        match section {
            Some("config") => {}
            // Keys before any section header.
            None if props.is_empty() => continue,
            None => {
                let key = props.iter().next().map(|(k, _)| k).unwrap_or_default();
                return Err(ConfigError::BadValue {
                    path: path.to_path_buf(),
                    reason: format!("'{key}' is outside the [config] section"),
                });
            }
            Some(other) => {
                return Err(ConfigError::UnknownSection {
                    path: path.to_path_buf(),
                    section: other.to_string(),
                })
            }
        }
        for (key, text) in props.iter() {
            let def = registry.get(key).ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.to_string(),
            })?;
            let value = def.parse(text).map_err(|e| ConfigError::BadValue {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            values.set(key, value);
        }
    }
    Ok(())
}
