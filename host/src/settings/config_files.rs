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
//!
//! A config file must be a regular file (or a symlink to one) of at most
//! [`MAX_CONFIG_FILE_SIZE`] bytes: `--config /dev/zero` or a FIFO is
//! refused, not read without end or waited on. A default place holding
//! anything but a regular file is skipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{SettingsRegistry, Values};

/// The largest config file obnam reads, in bytes. Config files hold a few
/// lines of settings; a bigger one is something else named by mistake, and
/// reading it whole would only take memory (or, for a huge sparse file,
/// all of it).
pub const MAX_CONFIG_FILE_SIZE: u64 = 1024 * 1024;

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

enum ReadFailure {
    Missing,
    Other(String),
}

/// The text of the config file at `path`, if it is a regular file of sane
/// size. The file is opened once and the open file checked and read, so
/// what is read is what was checked.
fn read_text(path: &Path) -> Result<String, ReadFailure> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = File::options()
        .read(true)
        // A FIFO would block the open until someone writes to it; with
        // O_NONBLOCK it opens at once and is refused below. Reading a
        // regular file is unaffected.
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadFailure::Missing,
            _ => ReadFailure::Other(e.to_string()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| ReadFailure::Other(format!("cannot check it: {e}")))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(ReadFailure::Other(format!(
            "it is {what}, not a regular file"
        )));
    }
    let limit = format!(
        "{MAX_CONFIG_FILE_SIZE} bytes ({} MiB)",
        MAX_CONFIG_FILE_SIZE >> 20
    );
    if meta.len() > MAX_CONFIG_FILE_SIZE {
        return Err(ReadFailure::Other(format!(
            "it has {} bytes; a config file may have at most {limit}",
            meta.len()
        )));
    }
    // The file may grow after the check: read at most one byte more than
    // allowed, which is enough to tell that it did.
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadFailure::Other(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_SIZE {
        return Err(ReadFailure::Other(format!(
            "it grew past {limit}, the most a config file may have, while being read"
        )));
    }
    String::from_utf8(bytes).map_err(|e| ReadFailure::Other(format!("it is not UTF-8 text: {e}")))
}

/// Apply one config file to `values`.
pub fn apply_file(
    path: &Path,
    registry: &SettingsRegistry,
    values: &mut Values,
) -> Result<(), ConfigError> {
    let text = read_text(path).map_err(|reason| match reason {
        ReadFailure::Missing => ConfigError::Missing(path.to_path_buf()),
        ReadFailure::Other(reason) => ConfigError::Unreadable {
            path: path.to_path_buf(),
            reason,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(path: &Path) -> String {
        match read_text(path) {
            Ok(_) => "read".to_string(),
            Err(ReadFailure::Missing) => "missing".to_string(),
            Err(ReadFailure::Other(why)) => why,
        }
    }

    #[test]
    fn only_regular_files_up_to_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_FILE_SIZE as usize]).unwrap();
        assert_eq!(reason(&path), "read");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_FILE_SIZE as usize + 1]).unwrap();
        assert_eq!(
            reason(&path),
            "it has 1048577 bytes; a config file may have at most 1048576 bytes (1 MiB)"
        );
        assert_eq!(reason(dir.path()), "it is a folder, not a regular file");
        assert_eq!(reason(&dir.path().join("none")), "missing");
        std::fs::write(&path, b"[config]\n\xff\n").unwrap();
        assert!(reason(&path).starts_with("it is not UTF-8 text"));
    }
}
