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
//! names no known setting, or is set twice in one file, is an error naming
//! the file, the line and the key.
//!
//! A config file must be a regular file (or a symlink to one) of at most
//! [`MAX_CONFIG_FILE_SIZE`] bytes: `--config /dev/zero` or a FIFO is
//! refused, not read without end or waited on. A default place holding
//! anything but a regular file is skipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use plugin_api::names::escape_path;

use super::{SettingsRegistry, Source, Values};

/// The largest config file obnam reads, in bytes. Config files hold a few
/// lines of settings; a bigger one is something else named by mistake, and
/// reading it whole would only take memory (or, for a huge sparse file,
/// all of it).
pub const MAX_CONFIG_FILE_SIZE: u64 = 1024 * 1024;

/// Why a config file could not be used. Its name is shown escaped
/// ([`plugin_api::names::escape_path`]): it need not be UTF-8.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", escape_path(.0))]
    Missing(PathBuf),
    #[error("cannot read config file {}: {reason}", escape_path(path))]
    Unreadable { path: PathBuf, reason: String },
    #[error("config file {}: {error}", escape_path(path))]
    Syntax { path: PathBuf, error: SyntaxError },
    /// As root: a file another user could change would let them steer
    /// root's runs (its repository, log file, exclusions, key file).
    #[error(
        "config file {} is not read: {reason}; as root, obnam reads no config file that \
         another user could change (make it root's, and writable by root alone)",
        escape_path(path)
    )]
    NotPrivate { path: PathBuf, reason: String },
    #[error(
        "config file {}: line {line}: unknown setting '{key}'{}",
        escape_path(path),
        nearest.as_ref().map(|n| format!(" (did you mean '{n}'?)")).unwrap_or_default()
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        /// The setting whose name is close, if one is.
        nearest: Option<String>,
    },
    #[error("config file {}: line {line}: {reason}", escape_path(path))]
    BadValue {
        path: PathBuf,
        line: usize,
        reason: String,
    },
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

/// The setting whose name `key` is close to: written with `_` for `-` or
/// in another case (`client_name`, `CLIENT-NAME`, as the environment
/// spells it), or two edits away with most of the name right
/// (`repositry`).
fn nearest_setting(registry: &SettingsRegistry, key: &str) -> Option<String> {
    let normal = key.to_ascii_lowercase().replace('_', "-");
    if registry.get(&normal).is_some() {
        return Some(normal);
    }
    super::nearest(&normal, registry.iter().map(|def| def.name.as_str())).map(str::to_string)
}

/// Why users other than root could change the config file at `path`: a
/// link of theirs or a folder they may change on the way (see
/// [`plugin_api::private_paths`]), or the file itself theirs or writable
/// by them. A file that does not exist is left to the reading.
fn private_to_root(path: &Path) -> Result<(), String> {
    use plugin_api::private_paths;
    use std::os::unix::fs::MetadataExt;
    let resolved = private_paths::resolve_private(path)?;
    if !resolved.missing.is_empty() {
        return Ok(());
    }
    let file = &resolved.existing;
    let meta = file
        .symlink_metadata()
        .map_err(|e| format!("{}: {e}", escape_path(file)))?;
    // What is not a file (`/dev/null`, any user's to write) is refused for
    // that as it is read.
    if !meta.is_file() {
        return Ok(());
    }
    if meta.uid() != 0 {
        return Err(format!(
            "it belongs to {}",
            private_paths::user_name(meta.uid())
        ));
    }
    if private_paths::others_may_write(file, &meta) {
        return Err(format!(
            "others may write in it ({})",
            private_paths::write_access(&meta)
        ));
    }
    Ok(())
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

/// One `key = value` line of a config file.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its line number, from 1.
    pub line: usize,
    pub key: String,
    /// The value as written, without the white space around it; quotes
    /// are the setting's parser's business ([`super::SettingDef::parse`]).
    pub value: String,
}

/// Why the text of a config file is not a config file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyntaxError {
    #[error("line {line}: a section header must end with ']'")]
    UnclosedSection { line: usize },
    #[error("line {line}: unknown section [{section}] (settings go in [config])")]
    UnknownSection { line: usize, section: String },
    #[error("line {line}: '{key}' is outside the [config] section")]
    OutsideSection { line: usize, key: String },
    #[error("line {line}: no setting name before '{separator}'")]
    MissingKey { line: usize, separator: char },
    #[error("line {line}: expected 'name = value', a [section] or a # comment, found '{text}'")]
    NotASetting { line: usize, text: String },
    #[error(
        "line {line}: the value of '{key}' holds '{comment}', which would be taken as part of it; \
         put a comment on a line of its own, or quote the value if '#' belongs to it"
    )]
    InlineHash {
        line: usize,
        key: String,
        comment: String,
    },
    #[error("line {line}: '{key}' is set again (first on line {first}); set it once")]
    Duplicate {
        line: usize,
        key: String,
        first: usize,
    },
}

/// Parse the text of a config file: its settings, in order.
///
/// Our own parser rather than the rust-ini crate: its errors were Rust
/// debug text with wrong line numbers, and it took a key set twice
/// silently. What a file means is what it meant with rust-ini: comments
/// are lines starting with `#` or `;`, a setting is `key = value` or
/// `key: value` (split at the first `=` or `:`), white space around keys
/// and values is dropped, and settings go in `[config]`.
pub fn parse_text(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries: Vec<Entry> = Vec::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or(SyntaxError::UnclosedSection { line })?
                .trim();
            if name != "config" {
                return Err(SyntaxError::UnknownSection {
                    line,
                    section: name.to_string(),
                });
            }
            section = Some(name.to_string());
            continue;
        }
        let Some(at) = trimmed.find(['=', ':']) else {
            return Err(SyntaxError::NotASetting {
                line,
                text: trimmed.to_string(),
            });
        };
        let key = trimmed[..at].trim();
        if key.is_empty() {
            return Err(SyntaxError::MissingKey {
                line,
                separator: trimmed[at..].chars().next().unwrap_or('='),
            });
        }
        if section.is_none() {
            return Err(SyntaxError::OutsideSection {
                line,
                key: key.to_string(),
            });
        }
        // A later line would silently win over an earlier one in the same
        // file: almost always a mistake made while editing.
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            return Err(SyntaxError::Duplicate {
                line,
                key: key.to_string(),
                first: first.line,
            });
        }
        let mut value = trimmed[at + 1..].trim();
        match inline_comment(value) {
            // Obnam 1.x's INI reader took `value ; comment` so.
            Some((at, ';')) => value = value[..at].trim_end(),
            // `client-name = laptop # mine` made a new client whose
            // name holds the comment, and a repository path so a new
            // repository, exit 0.
            Some((at, _)) => {
                return Err(SyntaxError::InlineHash {
                    line,
                    key: key.to_string(),
                    comment: value[at..].to_string(),
                })
            }
            None => {}
        }
        entries.push(Entry {
            line,
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(entries)
}

/// Where a comment starts in a setting's value, and with which
/// character: a `;` or `#` after white space, outside quotes (a value or
/// list item that starts with `"` or `'` runs to its closing quote; see
/// [`super::quoting`]).
fn inline_comment(value: &str) -> Option<(usize, char)> {
    let mut chars = value.char_indices();
    let mut item_start = true;
    // The value's start follows the white space after `=` (`key = # c`
    // holds no value but a comment).
    let mut after_space = true;
    while let Some((i, c)) = chars.next() {
        if item_start && (c == '"' || c == '\'') {
            // Skipped whole: its closing quote (or the end).
            let quote = c;
            while let Some((_, q)) = chars.next() {
                if quote == '"' && q == '\\' {
                    chars.next();
                } else if q == quote {
                    break;
                }
            }
            item_start = false;
            after_space = false;
            continue;
        }
        if after_space && (c == ';' || c == '#') {
            return Some((i, c));
        }
        after_space = c.is_ascii_whitespace();
        if c == ',' {
            item_start = true;
        } else if !c.is_whitespace() {
            item_start = false;
        }
    }
    None
}

/// Settings of Obnam 1.x (its logging and memory profiling) that this
/// obnam does not have and whose absence changes nothing backed up: in a
/// config file they are ignored with a warning, so that an old
/// configuration does not stop every run. Any other unknown key is an
/// error.
pub const OBNAM1_IGNORED: &[&str] = &[
    "log-max",
    "log-keep",
    "log-mode",
    "trace",
    "dump-memory-profile",
    "memory-dump-interval",
];

/// Apply one config file to `values`.
pub fn apply_file(
    path: &Path,
    registry: &SettingsRegistry,
    values: &mut Values,
) -> Result<(), ConfigError> {
    if rustix::process::geteuid().is_root() {
        if let Err(reason) = private_to_root(path) {
            return Err(ConfigError::NotPrivate {
                path: path.to_path_buf(),
                reason,
            });
        }
    }
    let text = read_text(path).map_err(|reason| match reason {
        ReadFailure::Missing => ConfigError::Missing(path.to_path_buf()),
        ReadFailure::Other(reason) => ConfigError::Unreadable {
            path: path.to_path_buf(),
            reason,
        },
    })?;
    let entries = parse_text(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        error: e,
    })?;
    for entry in entries {
        if registry.get(&entry.key).is_none() && OBNAM1_IGNORED.contains(&entry.key.as_str()) {
            tracing::warn!(
                "config file {}: line {}: '{}' is a setting of Obnam 1.x that this obnam does \
                 not have; ignored",
                escape_path(path),
                entry.line,
                entry.key
            );
            continue;
        }
        let def = registry
            .get(&entry.key)
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                line: entry.line,
                key: entry.key.clone(),
                nearest: nearest_setting(registry, &entry.key),
            })?;
        let value = def.parse(&entry.value).map_err(|e| ConfigError::BadValue {
            path: path.to_path_buf(),
            line: entry.line,
            reason: e.to_string(),
        })?;
        values.set_from(
            &entry.key,
            value,
            Source::File(path.to_path_buf(), entry.line),
        );
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

    #[test]
    fn syntax_errors_name_the_line() {
        let err = |text: &str| parse_text(text).unwrap_err().to_string();
        assert_eq!(
            err("# comment\n\n[config\n"),
            "line 3: a section header must end with ']'"
        );
        assert_eq!(
            err("[config]\nroot = /a\n; c\nroot: /b\n"),
            "line 4: 'root' is set again (first on line 2); set it once"
        );
        assert_eq!(
            err("x = 1\n"),
            "line 1: 'x' is outside the [config] section"
        );
        assert_eq!(err("[config]\n= 1\n"), "line 2: no setting name before '='");
        assert_eq!(
            err("[config]\njust words\n"),
            "line 2: expected 'name = value', a [section] or a # comment, found 'just words'"
        );
        assert_eq!(
            err("[config]\n[other]\n"),
            "line 2: unknown section [other] (settings go in [config])"
        );
    }

    #[test]
    fn comments_after_values_are_dropped_or_refused() {
        let value =
            |text: &str| parse_text(&format!("[config]\nk = {text}\n")).map(|e| e[0].value.clone());
        // As Obnam 1.x read them.
        assert_eq!(value("\\.tmp$ ; temp files").unwrap(), "\\.tmp$");
        assert_eq!(value("a, b\t; c, d").unwrap(), "a, b");
        // Not a comment: no white space before, or inside quotes.
        assert_eq!(value("a;b#c").unwrap(), "a;b#c");
        assert_eq!(
            value("\"a ; b # c\", 'x # y'").unwrap(),
            "\"a ; b # c\", 'x # y'"
        );
        assert_eq!(value("\"a \\\" ; b\" ; c").unwrap(), "\"a \\\" ; b\"");
        assert_eq!(value("'a' ; c").unwrap(), "'a'");
        // A quote inside a plain item is an ordinary character.
        assert_eq!(value("it's ; c").unwrap(), "it's");
        assert_eq!(
            value("laptop # mine").unwrap_err().to_string(),
            "line 2: the value of 'k' holds '# mine', which would be taken as part of it; \
             put a comment on a line of its own, or quote the value if '#' belongs to it"
        );
        assert!(value("/srv/backup\t# the NAS").is_err());
        // A value that is only a comment.
        assert_eq!(value("; to do").unwrap(), "");
        assert!(value("# the NAS").is_err());
    }

    #[test]
    fn settings_are_read_as_rust_ini_read_them() {
        let entries =
            parse_text("\u{feff}# c\n; c\n  [ config ]\r\n a = b = c \nb: x:y\nc =\n").unwrap();
        let got: Vec<(usize, &str, &str)> = entries
            .iter()
            .map(|e| (e.line, e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(got, [(4, "a", "b = c"), (5, "b", "x:y"), (6, "c", "")]);
    }
}
