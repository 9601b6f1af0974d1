//! Typed settings: their definitions, their values, and the layers values
//! come from.
//!
//! Every setting, the host's own and every plugin's, is a [`SettingDef`] in
//! one [`SettingsRegistry`]. Values are layered, each layer overriding the
//! one before: the default, then config files ([`config_files`]) in the
//! order they are read, then `OBNAM_<NAME>` environment variables, then the
//! command line. Text from files, the environment and the command line is
//! parsed by the same [`SettingDef::parse`], so a value means the same
//! wherever it is written.

pub mod bytesize;
pub mod config_files;
pub mod quoting;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use plugin_api::abi::{PathValue, SettingKind, SettingSource, SettingSpec, SettingValue};
use plugin_api::names::escape;
use plugin_api::SettingOrigin;

use quoting::Escapes;

/// The name that owns the host's own settings, subcommands and hooks.
pub const HOST_OWNER: &str = "obnam";

/// Options of the command line that are not settings (they decide where
/// settings and plugins come from): no setting may take their names.
pub const META_OPTIONS: &[&str] = &[
    "config",
    "no-default-configs",
    "dump-config",
    "list-config-files",
    "plugin-dir",
    "no-bundled-plugins",
    "help",
    "version",
];

/// Environment variables obnam reads itself, not as a setting's: a
/// setting whose variable would be one of these is refused. They hold the
/// passphrases, secrets that a setting's errors and `--dump-config` would
/// show. (`OBNAM_PLUGIN_DIR` is reserved with the option `--plugin-dir`.)
pub const RESERVED_ENV: &[&str] = &["OBNAM_PASSPHRASE", "OBNAM_NEW_PASSPHRASE"];

impl SettingError {
    /// What was wrong, without the setting's name.
    pub fn reason(&self) -> &str {
        match self {
            SettingError::BadValue { reason, .. } | SettingError::BadDefinition { reason, .. } => {
                reason
            }
        }
    }
}

/// A setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string, choice or path setting with no value.
    Unset,
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Int(i64),
    Bytes(u64),
    /// A path: bytes, which need not be UTF-8.
    Path(OsString),
    /// A list of paths.
    Paths(Vec<OsString>),
}

impl Value {
    /// The value as it crosses the plugin boundary as text, to a plugin
    /// that reads setting `name` with [`HostServices::setting`]
    /// (every plugin built before 0.1.12, for paths too). A path that is
    /// not UTF-8 cannot be text: an error naming it, rather than another
    /// path that would be used in its place.
    ///
    /// [`HostServices::setting`]: plugin_api::abi::HostServices::setting
    pub fn to_abi(&self, name: &str) -> Result<SettingValue, String> {
        let text = |path: &OsStr| {
            path.to_str().map(Into::into).ok_or_else(|| {
                format!(
                    "setting '{name}' is the path \"{}\", which is not UTF-8 text: \
                     read it as a path (plugin-api 0.1.12: Context::path)",
                    escape(path.as_bytes())
                )
            })
        };
        Ok(match self {
            Value::Unset => SettingValue::Unset,
            Value::Str(s) => SettingValue::String(s.as_str().into()),
            Value::List(v) => {
                SettingValue::StringList(v.iter().map(|s| s.as_str().into()).collect())
            }
            Value::Bool(b) => SettingValue::Boolean(*b),
            Value::Int(i) => SettingValue::Integer(*i),
            Value::Bytes(n) => SettingValue::ByteSize(*n),
            Value::Path(p) => SettingValue::String(text(p)?),
            Value::Paths(v) => {
                SettingValue::StringList(v.iter().map(|p| text(p)).collect::<Result<_, _>>()?)
            }
        })
    }

    /// The value as bytes, for a plugin that reads setting `name` as a
    /// path: a path or a string (any text is a path), or a list of them.
    pub fn to_path_abi(&self, name: &str) -> Result<PathValue, String> {
        let bytes = |b: &[u8]| b.to_vec().into();
        Ok(match self {
            Value::Unset => PathValue::Unset,
            Value::Path(p) => PathValue::Path(bytes(p.as_bytes())),
            Value::Str(s) => PathValue::Path(bytes(s.as_bytes())),
            Value::Paths(v) => PathValue::PathList(v.iter().map(|p| bytes(p.as_bytes())).collect()),
            Value::List(v) => PathValue::PathList(v.iter().map(|s| bytes(s.as_bytes())).collect()),
            Value::Bool(_) | Value::Int(_) | Value::Bytes(_) => {
                let kind = match self {
                    Value::Bool(_) => "a boolean",
                    Value::Int(_) => "an integer",
                    _ => "a byte size",
                };
                return Err(format!(
                    "setting '{name}' is {kind}, but the plugin read it as a path"
                ));
            }
        })
    }
}

/// Why a setting value or definition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingError {
    #[error("setting '{name}': {reason}")]
    BadValue { name: String, reason: String },
    #[error("invalid setting definition '{name}': {reason}")]
    BadDefinition { name: String, reason: String },
}

/// A check of a string setting's value: why it is refused.
/// The one of `candidates` that `name` is a slip of, if one is close: two
/// edits away at most, with most of the name right (`foo` is not `log`).
/// For a setting's name mistyped in a config file or the environment.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(c, name), c))
        .filter(|(d, _)| *d <= 2 && *d * 3 <= name.len())
        .min()
        .map(|(_, c)| c)
}

pub type ValueCheck = fn(&str) -> Result<(), String>;

/// A check of a path setting's value (bytes, which need not be UTF-8):
/// why it is refused.
pub type PathCheck = fn(&OsStr) -> Result<(), String>;

/// A setting: its name, type, help and default.
#[derive(Debug, Clone)]
pub struct SettingDef {
    pub name: String,
    pub kind: SettingKind,
    pub help: String,
    pub metavar: String,
    pub group: String,
    pub choices: Vec<String>,
    pub default: Value,
    /// Who declared it: a plugin's name, or `obnam` for the host.
    pub owner: String,
    /// A one-letter command-line alias (host settings only).
    pub short: Option<char>,
    /// Other long names on the command line (host settings only).
    pub aliases: Vec<String>,
    /// The subcommands whose `--help` lists it; empty: every subcommand.
    pub subcommands: Vec<String>,
    /// The least and the most an integer or byte size may be, both
    /// included; checked wherever a value is parsed, so that a value out
    /// of range is refused naming where it came from.
    pub range: Option<(i128, i128)>,
    /// A check of a string's value (host settings only): why it is
    /// refused, run wherever a value is parsed.
    pub check: Option<ValueCheck>,
    /// The same for a path setting (host settings only): a repository's
    /// URL is refused where it is given, naming the file, line or
    /// variable, not only once a command opens it.
    pub path_check: Option<PathCheck>,
    /// Whether a string or list setting holds paths: bytes, which need not
    /// be UTF-8 ([`Value::Path`], [`Value::Paths`]).
    pub path: bool,
    /// What an integer or byte size must be a multiple of; checked where
    /// the range is.
    pub multiple: Option<i128>,
    /// How a default that depends on the machine is described where the
    /// text is made for other machines (the manual page, completions):
    /// `client-name`'s is this machine's host name, not the one of the
    /// machine that made the page (host settings only).
    pub default_text: Option<String>,
}

impl SettingDef {
    /// Build a definition from a plugin's declaration, checking it.
    pub fn from_spec(spec: &SettingSpec, owner: &str) -> Result<Self, SettingError> {
        let name = spec.name.to_string();
        let bad = |reason: &str| SettingError::BadDefinition {
            name: name.clone(),
            reason: reason.to_string(),
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.starts_with("no-");
        if !valid_name {
            return Err(bad(
                "names are lower-case letters, digits and '-', and do not start with '-' or 'no-'",
            ));
        }
        let choices: Vec<String> = spec.choices.iter().map(|c| c.to_string()).collect();
        if spec.kind == SettingKind::Choice && choices.is_empty() {
            return Err(bad("a choice setting needs at least one choice"));
        }
        if choices.iter().any(|c| c.trim().is_empty()) {
            return Err(bad("a choice is empty"));
        }
        if let Some(twice) = choices
            .iter()
            .enumerate()
            .find_map(|(i, c)| choices[..i].contains(c).then_some(c))
        {
            return Err(bad(&format!("the choice '{twice}' is given twice")));
        }
        // An empty group would be a help heading of its own, named by
        // nothing (`:`).
        let group = match spec.group.trim() {
            "" => plugin_api::GROUP_DEFAULT.to_string(),
            group => group.to_string(),
        };
        let mut def = SettingDef {
            name: name.clone(),
            kind: spec.kind,
            help: spec.help.to_string(),
            metavar: spec.metavar.to_string(),
            group,
            choices,
            default: Value::Unset,
            owner: owner.to_string(),
            short: None,
            aliases: Vec::new(),
            subcommands: Vec::new(),
            range: None,
            check: None,
            path_check: None,
            path: false,
            multiple: None,
            default_text: None,
        };
        def.default = match spec.default.as_ref().into_option() {
            Some(text) => def
                .parse(text)
                .map_err(|e| bad(&format!("bad default: {e}")))?,
            None => def.implicit_default(),
        };
        Ok(def)
    }

    /// Give an integer or byte-size setting its range, written as values
    /// of its type (`"1"`, `"64KiB"`); the default must be in it.
    pub fn set_range(&mut self, least: &str, most: &str) -> Result<(), SettingError> {
        let bad = |reason: String| SettingError::BadDefinition {
            name: self.name.clone(),
            reason,
        };
        if !matches!(self.kind, SettingKind::Integer | SettingKind::ByteSize) {
            return Err(bad(
                "only integer and byte-size settings have a range".into()
            ));
        }
        let bound = |text: &str| {
            self.parse_one(text)
                .ok()
                .and_then(|v| number(&v))
                .ok_or_else(|| bad(format!("bad range: '{text}' is not a value of the setting")))
        };
        let (least, most) = (bound(least)?, bound(most)?);
        if least > most {
            return Err(bad(format!("bad range: {least} is more than {most}")));
        }
        self.range = Some((least, most));
        if let Some(default) = number(&self.default) {
            if !(least..=most).contains(&default) {
                self.range = None;
                return Err(bad(format!(
                    "bad range: the default {} is outside it",
                    self.format(&self.default)
                )));
            }
        }
        Ok(())
    }

    /// Make a string or list setting hold paths: bytes, which need not be
    /// UTF-8. Its default, parsed as text, becomes a path.
    pub fn set_path(&mut self) -> Result<(), SettingError> {
        if !matches!(self.kind, SettingKind::String | SettingKind::StringList) {
            return Err(SettingError::BadDefinition {
                name: self.name.clone(),
                reason: "only string and string-list settings can be paths".into(),
            });
        }
        self.path = true;
        self.default = match std::mem::replace(&mut self.default, Value::Unset) {
            Value::Str(s) => Value::Path(s.into()),
            Value::List(v) => Value::Paths(v.into_iter().map(Into::into).collect()),
            other => other,
        };
        Ok(())
    }

    /// Make an integer or byte-size setting take only multiples of
    /// `factor` (a positive value of its type); the default must be one.
    pub fn set_multiple(&mut self, factor: &str) -> Result<(), SettingError> {
        let bad = |reason: String| SettingError::BadDefinition {
            name: self.name.clone(),
            reason,
        };
        if !matches!(self.kind, SettingKind::Integer | SettingKind::ByteSize) {
            return Err(bad(
                "only integer and byte-size settings can be limited to multiples".into(),
            ));
        }
        let factor = self
            .parse_unchecked(factor)
            .ok()
            .and_then(|v| number(&v))
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                bad(format!(
                    "bad factor: '{factor}' is not a positive value of the setting"
                ))
            })?;
        if let Some(default) = number(&self.default) {
            if default % factor != 0 {
                return Err(bad(format!(
                    "bad factor: the default {} is not a multiple of {}",
                    self.format(&self.default),
                    self.show_number(factor)
                )));
            }
        }
        self.multiple = Some(factor);
        Ok(())
    }

    /// A number of the setting's type as the user reads it: `1024`, `64KiB`.
    fn show_number(&self, n: i128) -> String {
        match self.kind {
            SettingKind::ByteSize => bytesize::format(n as u64),
            _ => n.to_string(),
        }
    }

    /// The range as the user reads it: `0 to 1024`, `64KiB to 1GiB`.
    fn range_text(&self, least: i128, most: i128) -> String {
        format!("{} to {}", self.show_number(least), self.show_number(most))
    }

    /// What `--help` says of the values a range or a factor allows, if
    /// any: `1 to 10`, `a multiple of 4KiB`.
    pub fn limits_text(&self) -> Option<String> {
        let range = self.range.map(|(least, most)| {
            // A range up to the type's largest value is only a floor.
            if most >= i128::from(i64::MAX) {
                format!("{} or more", self.show_number(least))
            } else {
                self.range_text(least, most)
            }
        });
        let multiple = self
            .multiple
            .map(|f| format!("a multiple of {}", self.show_number(f)));
        match (range, multiple) {
            (None, None) => None,
            (Some(r), None) => Some(r),
            (None, Some(m)) => Some(m),
            (Some(r), Some(m)) => Some(format!("{r}, {m}")),
        }
    }

    /// The default of a setting that declares none.
    fn implicit_default(&self) -> Value {
        match self.kind {
            SettingKind::String => Value::Unset,
            SettingKind::StringList => Value::List(Vec::new()),
            SettingKind::Boolean => Value::Bool(false),
            SettingKind::Integer => Value::Int(0),
            SettingKind::ByteSize => Value::Bytes(0),
            SettingKind::Choice => Value::Str(self.choices[0].clone()),
        }
    }

    /// Parse a value from text as written in a config file or environment
    /// variable: lists are comma-separated, and a value or list item may be
    /// quoted ([`quoting`]).
    pub fn parse(&self, text: &str) -> Result<Value, SettingError> {
        let bad = |e: quoting::QuoteError| SettingError::BadValue {
            name: self.name.clone(),
            reason: e.to_string(),
        };
        if self.path {
            return self.parse_path(text.as_bytes());
        }
        if self.kind == SettingKind::StringList {
            return quoting::split_list(text).map(Value::List).map_err(bad);
        }
        let text = quoting::unquote(text).map_err(bad)?;
        self.parse_one(&text)
    }

    /// Parse a path setting's value as written in a config file or an
    /// environment variable: bytes, quoted as text is, where `\xNN` in
    /// double quotes is the byte NN ([`quoting`]).
    fn parse_path(&self, bytes: &[u8]) -> Result<Value, SettingError> {
        let bad = |e: quoting::QuoteError| SettingError::BadValue {
            name: self.name.clone(),
            reason: e.to_string(),
        };
        let path = |bytes: Vec<u8>| {
            home_expanded(bytes)
                .map(OsString::from_vec)
                .and_then(|path| self.checked_path(path))
                .map_err(|reason| SettingError::BadValue {
                    name: self.name.clone(),
                    reason,
                })
        };
        if self.kind == SettingKind::StringList {
            let items = quoting::split_list_bytes(bytes, Escapes::Bytes).map_err(bad)?;
            return Ok(Value::Paths(
                items.into_iter().map(path).collect::<Result<_, _>>()?,
            ));
        }
        let value = quoting::unquote_bytes(bytes, Escapes::Bytes).map_err(bad)?;
        Ok(Value::Path(path(value.into_owned())?))
    }

    /// `path`, if the setting's [`PathCheck`] takes it; else why not.
    fn checked_path(&self, path: OsString) -> Result<OsString, String> {
        match self.path_check.map(|check| check(&path)) {
            Some(Err(reason)) => Err(reason),
            _ => Ok(path),
        }
    }

    /// Parse a value from an environment variable: bytes for a path
    /// setting, else text as in a config file.
    pub fn parse_os(&self, raw: &OsStr) -> Result<Value, SettingError> {
        if self.path {
            // As a config file's: white space at the ends is dropped (an
            // env file's `OBNAM_REPOSITORY=/srv/backup ` made a second
            // repository, its name ending in a space); quoted, it is kept.
            return self.parse_path(raw.as_bytes().trim_ascii());
        }
        let text = raw.to_str().ok_or_else(|| SettingError::BadValue {
            name: self.name.clone(),
            reason: format!("its value {raw:?} is not UTF-8 text"),
        })?;
        self.parse(text)
    }

    /// Parse one value as given on the command line (a list item is not
    /// split), checking it against the setting's range and factor.
    pub fn parse_one(&self, text: &str) -> Result<Value, SettingError> {
        let value = self.parse_unchecked(text)?;
        let bad = |reason: String| SettingError::BadValue {
            name: self.name.clone(),
            reason,
        };
        if let (Some((least, most)), Some(n)) = (self.range, number(&value)) {
            if !(least..=most).contains(&n) {
                return Err(bad(format!(
                    "'{}' is out of range: give {}",
                    text.trim(),
                    self.range_text(least, most)
                )));
            }
        }
        if let (Some(factor), Some(n)) = (self.multiple, number(&value)) {
            if n % factor != 0 {
                return Err(bad(format!(
                    "'{}' is not a multiple of {}",
                    text.trim(),
                    self.show_number(factor)
                )));
            }
        }
        Ok(value)
    }

    /// One value as given on the command line, as bytes: a path as it is
    /// (a list item is not split), anything else as text.
    pub fn parse_arg(&self, raw: &OsStr) -> Result<Value, SettingError> {
        if self.path {
            // A `~` that reaches obnam is one the shell left alone: it
            // expands `--repository ~/backup`, but not `--repository=~/backup`
            // nor a quoted `'~/backup'`, which made a folder named `~` in
            // whatever folder the run started in, exit 0. Taken as the
            // shell would have taken it, as in a config file.
            let path = home_expanded(raw.as_bytes().to_vec())
                .map(OsString::from_vec)
                .and_then(|path| self.checked_path(path))
                .map_err(|reason| SettingError::BadValue {
                    name: self.name.clone(),
                    reason,
                })?;
            return Ok(match self.kind {
                SettingKind::StringList => Value::Paths(vec![path]),
                _ => Value::Path(path),
            });
        }
        let text = raw.to_str().ok_or_else(|| SettingError::BadValue {
            name: self.name.clone(),
            reason: format!(
                "{raw:?} is not UTF-8 text; settings are text, so this value cannot be given"
            ),
        })?;
        self.parse_one(text)
    }

    fn parse_unchecked(&self, text: &str) -> Result<Value, SettingError> {
        let bad = |reason: String| SettingError::BadValue {
            name: self.name.clone(),
            reason,
        };
        match self.kind {
            SettingKind::String => match self.check.map(|check| check(text)) {
                Some(Err(reason)) => Err(bad(reason)),
                _ => Ok(Value::Str(text.to_string())),
            },
            SettingKind::StringList => Ok(Value::List(vec![text.to_string()])),
            SettingKind::Boolean => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad(format!("'{text}' is not a boolean (use yes or no)"))),
            SettingKind::Integer => text.trim().parse().map(Value::Int).map_err(|e| {
                use std::num::IntErrorKind;
                // A number too long for 64 bits is an integer all the
                // same: say what is wrong with it.
                bad(match e.kind() {
                    IntErrorKind::PosOverflow => format!("'{text}' is too large"),
                    IntErrorKind::NegOverflow => format!("'{text}' is too small"),
                    _ => format!("'{text}' is not an integer"),
                })
            }),
            SettingKind::ByteSize => bytesize::parse(text)
                .map(Value::Bytes)
                .map_err(|e| bad(e.to_string())),
            SettingKind::Choice => {
                let text = text.trim();
                if self.choices.iter().any(|c| c == text) {
                    Ok(Value::Str(text.to_string()))
                } else {
                    Err(bad(format!(
                        "'{text}' is not one of: {}",
                        self.choices.join(", ")
                    )))
                }
            }
        }
    }

    /// Write a value as text that [`parse`](Self::parse) reads back,
    /// quoting what must be ([`quoting`]).
    pub fn format(&self, value: &Value) -> String {
        match value {
            Value::Unset => String::new(),
            Value::Str(s) => quoting::quote_value(s),
            Value::List(v) => v
                .iter()
                .map(|item| quoting::quote_item(item))
                .collect::<Vec<_>>()
                .join(","),
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bytes(n) => bytesize::format(*n),
            Value::Path(p) => quoting::quote_path_value(p.as_bytes()),
            Value::Paths(v) => v
                .iter()
                .map(|item| quoting::quote_path_item(item.as_bytes()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Every long command-line option this setting uses.
    pub fn long_names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        names.extend(self.aliases.iter().cloned());
        if self.kind == SettingKind::Boolean {
            names.push(format!("no-{}", self.name));
        }
        names
    }

    /// The environment variable that sets this setting: `OBNAM_CLIENT_NAME`
    /// for `client-name`.
    pub fn env_var(&self) -> String {
        format!("OBNAM_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }
}

/// A numeric value as one type, to compare with a range.
fn number(value: &Value) -> Option<i128> {
    match value {
        Value::Int(n) => Some(i128::from(*n)),
        Value::Bytes(n) => Some(i128::from(*n)),
        _ => None,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Every setting known to this run, in the order they were declared.
#[derive(Debug, Default)]
pub struct SettingsRegistry {
    defs: Vec<SettingDef>,
}

impl SettingsRegistry {
    /// Add a definition; refuses a name already taken (by a setting, an
    /// alias, the `no-` form of a boolean, or one of obnam's own options),
    /// saying by whom, and a name whose environment variable obnam reads
    /// itself ([`RESERVED_ENV`]).
    pub fn add(&mut self, def: SettingDef) -> Result<(), String> {
        for long in def.long_names() {
            if META_OPTIONS.contains(&long.as_str()) {
                return Err(format!(
                    "setting '{}' of plugin '{}' would use the option --{long}, which is reserved by obnam; ignored",
                    def.name, def.owner
                ));
            }
            if let Some(old) = self.defs.iter().find(|d| d.long_names().contains(&long)) {
                let what = if long == def.name && long == old.name {
                    format!(
                        "setting '{}' of plugin '{}' is already defined by '{}'",
                        def.name, def.owner, old.owner
                    )
                } else {
                    format!(
                        "setting '{}' of plugin '{}' would use the option --{long}, which setting '{}' of '{}' uses",
                        def.name, def.owner, old.name, old.owner
                    )
                };
                return Err(format!("{what}; ignored"));
            }
        }
        let var = def.env_var();
        if RESERVED_ENV.contains(&var.as_str()) {
            return Err(format!(
                "setting '{}' of plugin '{}' would use the environment variable {var}, which \
                 obnam reads itself; ignored",
                def.name, def.owner
            ));
        }
        // Set by obnam for the processes it starts: such a setting would
        // read obnam's own value, which nobody gave.
        if var == obnam_repository::backend::sftp::SSH_OWNER_VARIABLE {
            return Err(format!(
                "setting '{}' of plugin '{}' would use the environment variable {var}, which \
                 obnam sets itself; ignored",
                def.name, def.owner
            ));
        }
        self.defs.push(def);
        Ok(())
    }

    /// A definition by name.
    pub fn get(&self, name: &str) -> Option<&SettingDef> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// All definitions, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &SettingDef> {
        self.defs.iter()
    }

    /// The defaults of every setting.
    pub fn defaults(&self) -> Values {
        Values {
            map: self
                .defs
                .iter()
                .map(|d| (d.name.clone(), d.default.clone()))
                .collect(),
            sources: BTreeMap::new(),
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A config file, and the line (from 1).
    File(PathBuf, usize),
    Env(String),
    CommandLine,
}

impl Source {
    /// The source as plugin-api describes it ([`SettingOrigin`]), which
    /// words the errors of plugins' checks as the host's own are worded.
    pub fn to_origin(&self) -> SettingOrigin {
        match self {
            Source::Default => SettingOrigin::Default,
            Source::File(path, line) => SettingOrigin::ConfigFile {
                path: path.clone(),
                line: *line as u64,
            },
            Source::Env(var) => SettingOrigin::Environment {
                variable: var.clone(),
            },
            Source::CommandLine => SettingOrigin::CommandLine,
        }
    }

    /// The source as it crosses the plugin boundary.
    pub fn to_abi(&self) -> SettingSource {
        match self {
            Source::Default => SettingSource::Default,
            Source::File(path, line) => {
                SettingSource::ConfigFile(path.as_os_str().as_bytes().to_vec().into(), *line as u64)
            }
            Source::Env(var) => SettingSource::Environment(var.as_str().into()),
            Source::CommandLine => SettingSource::CommandLine,
        }
    }
}

/// The effective value of every setting.
#[derive(Debug, Clone, Default)]
pub struct Values {
    map: BTreeMap<String, Value>,
    sources: BTreeMap<String, Source>,
}

impl Values {
    /// Set a value, remembering where it came from.
    pub fn set_from(&mut self, name: &str, value: Value, source: Source) {
        self.map.insert(name.to_string(), value);
        self.sources.insert(name.to_string(), source);
    }

    /// Where a setting's value came from.
    pub fn source(&self, name: &str) -> &Source {
        self.sources.get(name).unwrap_or(&Source::Default)
    }

    /// The start of an error about a setting's value, naming where it came
    /// from as every check does ([`SettingOrigin::error_prefix`]): `--NAME`,
    /// `config file F: line N: setting 'NAME'`, `setting 'NAME':
    /// environment variable VAR`.
    pub fn origin(&self, name: &str) -> String {
        self.source(name).to_origin().error_prefix(name)
    }

    /// A value by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Set a value.
    pub fn set(&mut self, name: &str, value: Value) {
        self.map.insert(name.to_string(), value);
    }

    /// A path setting's value, if it has one.
    pub fn path(&self, name: &str) -> Option<&OsStr> {
        match self.map.get(name) {
            Some(Value::Path(p)) => Some(p),
            _ => None,
        }
    }

    /// A string setting's value, if it has one.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.map.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A boolean setting's value (false if unknown).
    pub fn boolean(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::Bool(true)))
    }

    /// Apply `OBNAM_<NAME>` environment variables. A value that is not
    /// UTF-8 is refused naming the variable, unless the setting is a path:
    /// other settings are text, and skipping it would quietly use another
    /// value in its place.
    pub fn apply_env(
        &mut self,
        registry: &SettingsRegistry,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<(), SettingError> {
        for def in registry.iter() {
            let var = def.env_var();
            if let Some(raw) = lookup(&var) {
                let value = def.parse_os(&raw).map_err(|e| SettingError::BadValue {
                    name: def.name.clone(),
                    reason: format!("environment variable {var}: {}", e.reason()),
                })?;
                self.set_from(&def.name, value, Source::Env(var));
            }
        }
        Ok(())
    }

    /// The effective settings in config-file format, readable back with
    /// `--config`; an error naming a setting whose value a config file
    /// cannot hold (a line break), rather than a dump that reads back as
    /// something else.
    pub fn dump(&self, registry: &SettingsRegistry) -> Result<String, SettingError> {
        let mut out = String::from("[config]\n");
        for def in registry.iter() {
            let value = self.get(&def.name).unwrap_or(&def.default);
            if *value == Value::Unset {
                continue;
            }
            let text = def.format(value);
            if text.contains(['\n', '\r']) {
                let from = self.source(&def.name).to_origin();
                return Err(SettingError::BadValue {
                    name: def.name.clone(),
                    reason: format!(
                        "its value (from {from}) has a line break, which a config file cannot hold"
                    ),
                });
            }
            out.push_str(&format!("{} = {text}\n", def.name));
        }
        Ok(out)
    }
}

/// A path from a config file, the environment or an option's value that
/// the shell did not expand, with a leading `~` or `~/` taken for the home
/// folder (`HOME`), as a shell takes it on the command line: `repository = ~/backup` is not a folder `~` in whatever
/// folder the run starts in. `~user` is refused (write the path in full).
pub(crate) fn home_expanded(path: Vec<u8>) -> Result<Vec<u8>, String> {
    if path.first() != Some(&b'~') {
        return Ok(path);
    }
    if path.len() > 1 && path[1] != b'/' {
        return Err(format!(
            "'{}': a ~ is taken for your home folder only as ~ or ~/...; write the path in \
             full (or ./~... for a folder named ~)",
            plugin_api::names::escape(&path)
        ));
    }
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Err(format!(
            "'{}': HOME is not set, so ~ names no folder; write the path in full",
            plugin_api::names::escape(&path)
        ));
    };
    let mut out = home.into_vec();
    out.extend_from_slice(&path[1..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::types::RVec;

    fn spec(name: &str, kind: SettingKind, default: Option<&str>, choices: &[&str]) -> SettingSpec {
        SettingSpec {
            name: name.into(),
            kind,
            help: "".into(),
            metavar: "".into(),
            default: default.map(Into::into).into(),
            group: "g".into(),
            choices: choices.iter().map(|c| (*c).into()).collect::<RVec<_>>(),
        }
    }

    #[test]
    fn choice_defaults_to_first() {
        let def = SettingDef::from_spec(&spec("mode", SettingKind::Choice, None, &["a", "b"]), "p")
            .unwrap();
        assert_eq!(def.default, Value::Str("a".into()));
        let def = SettingDef::from_spec(
            &spec("mode", SettingKind::Choice, Some("b"), &["a", "b"]),
            "p",
        )
        .unwrap();
        assert_eq!(def.default, Value::Str("b".into()));
        assert!(def.parse("c").is_err());
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(
            SettingDef::from_spec(&spec("Bad_Name", SettingKind::String, None, &[]), "p").is_err()
        );
        assert!(
            SettingDef::from_spec(&spec("no-x", SettingKind::Boolean, None, &[]), "p").is_err()
        );
        assert!(SettingDef::from_spec(&spec("c", SettingKind::Choice, None, &[]), "p").is_err());
        assert!(
            SettingDef::from_spec(&spec("n", SettingKind::Integer, Some("many"), &[]), "p")
                .is_err()
        );
    }

    #[test]
    fn values_round_trip_through_text() {
        let kinds = [
            (SettingKind::StringList, "a,b,c"),
            (SettingKind::Boolean, "yes"),
            (SettingKind::Integer, "-42"),
            (SettingKind::ByteSize, "10MiB"),
            (SettingKind::String, "hello world"),
        ];
        for (kind, text) in kinds {
            let def = SettingDef::from_spec(&spec("x", kind, None, &[]), "p").unwrap();
            let v = def.parse(text).unwrap();
            assert_eq!(def.parse(&def.format(&v)).unwrap(), v);
        }
    }

    /// A setting whose variable is one obnam reads itself (a passphrase)
    /// is refused: its errors and `--dump-config` would show the secret.
    #[test]
    fn settings_of_reserved_variables_are_refused() {
        let mut registry = SettingsRegistry::default();
        for name in ["passphrase", "new-passphrase"] {
            let def =
                SettingDef::from_spec(&spec(name, SettingKind::Integer, None, &[]), "p").unwrap();
            let e = registry.add(def).unwrap_err();
            assert!(e.contains("which obnam reads itself"), "{e}");
        }
        let def = SettingDef::from_spec(&spec("passphrases", SettingKind::String, None, &[]), "p")
            .unwrap();
        registry.add(def).unwrap();
    }

    #[test]
    fn env_var_names() {
        let def = SettingDef::from_spec(&spec("client-name", SettingKind::String, None, &[]), "p")
            .unwrap();
        assert_eq!(def.env_var(), "OBNAM_CLIENT_NAME");
    }

    #[test]
    fn ranges_are_checked_where_values_are_parsed() {
        let mut def =
            SettingDef::from_spec(&spec("n", SettingKind::Integer, Some("2"), &[]), "p").unwrap();
        def.set_range("1", "10").unwrap();
        assert_eq!(def.parse("10").unwrap(), Value::Int(10));
        assert_eq!(
            def.parse("11").unwrap_err().reason(),
            "'11' is out of range: give 1 to 10"
        );
        assert_eq!(
            def.parse_one("99999999999999999999").unwrap_err().reason(),
            "'99999999999999999999' is too large"
        );
        assert!(def.set_range("3", "10").is_err(), "the default is outside");
        assert!(def.set_range("10", "1").is_err());
        assert!(def.set_range("one", "10").is_err());
        let mut size =
            SettingDef::from_spec(&spec("s", SettingKind::ByteSize, Some("1MiB"), &[]), "p")
                .unwrap();
        size.set_range("64KiB", "1GiB").unwrap();
        assert_eq!(
            size.parse("2GiB").unwrap_err().reason(),
            "'2GiB' is out of range: give 64KiB to 1GiB"
        );
        let mut text =
            SettingDef::from_spec(&spec("t", SettingKind::String, None, &[]), "p").unwrap();
        assert!(text.set_range("1", "2").is_err());
    }

    #[test]
    fn the_hosts_ranges_are_well_formed() {
        for def in crate::host_settings::definitions(8 << 20) {
            if matches!(
                def.name.as_str(),
                "lock-timeout" | "pack-size" | "storage-timeout"
            ) {
                assert!(def.range.is_some(), "{} has no range", def.name);
            }
        }
    }

    fn os(bytes: &[u8]) -> OsString {
        OsString::from_vec(bytes.to_vec())
    }

    #[test]
    fn paths_are_bytes_wherever_they_are_written() {
        let mut def =
            SettingDef::from_spec(&spec("to", SettingKind::String, None, &[]), "p").unwrap();
        def.set_path().unwrap();
        let cafe = Value::Path(os(b"/caf\xe9"));
        assert_eq!(def.parse(r#""/caf\xe9""#).unwrap(), cafe);
        assert_eq!(def.parse_os(&os(b"/caf\xe9")).unwrap(), cafe);
        assert_eq!(def.parse_arg(&os(b"/caf\xe9")).unwrap(), cafe);
        assert_eq!(def.format(&cafe), r#""/caf\xe9""#);
        assert_eq!(def.parse(&def.format(&cafe)).unwrap(), cafe);
        // A plugin that reads it as text is told why it cannot.
        let err = cafe.to_abi("to").unwrap_err();
        assert!(
            err.contains(r#""/caf\xe9", which is not UTF-8 text"#),
            "{err}"
        );
        assert_eq!(
            cafe.to_path_abi("to").unwrap(),
            PathValue::Path(b"/caf\xe9".to_vec().into())
        );
        assert_eq!(
            Value::Path("/ok".into()).to_abi("to").unwrap(),
            SettingValue::String("/ok".into())
        );

        let mut list = SettingDef::from_spec(
            &spec("roots", SettingKind::StringList, Some("/a, /b"), &[]),
            "p",
        )
        .unwrap();
        list.set_path().unwrap();
        assert_eq!(list.default, Value::Paths(vec!["/a".into(), "/b".into()]));
        let both = Value::Paths(vec![os(b"/caf\xe9"), os(b"/a, b")]);
        assert_eq!(list.parse_os(&os(b"/caf\xe9, \"/a, b\"")).unwrap(), both);
        assert_eq!(list.parse(&list.format(&both)).unwrap(), both);
        assert_eq!(
            list.parse_arg(&os(b"/x, y")).unwrap(),
            Value::Paths(vec!["/x, y".into()])
        );

        // Only strings and lists are paths; others stay text.
        let mut n =
            SettingDef::from_spec(&spec("n", SettingKind::Integer, None, &[]), "p").unwrap();
        assert!(n.set_path().is_err());
        let text = SettingDef::from_spec(&spec("t", SettingKind::String, None, &[]), "p").unwrap();
        assert!(text.parse_os(&os(b"x\xe9")).is_err());
        assert_eq!(text.parse(r#""\xe9""#).unwrap(), Value::Str(r"\xe9".into()));
    }

    #[test]
    fn multiples_are_checked_where_values_are_parsed() {
        let mut def =
            SettingDef::from_spec(&spec("s", SettingKind::ByteSize, Some("64KiB"), &[]), "p")
                .unwrap();
        def.set_range("64", "1MiB").unwrap();
        def.set_multiple("2").unwrap();
        assert_eq!(def.parse("66").unwrap(), Value::Bytes(66));
        assert_eq!(
            def.parse("65").unwrap_err().reason(),
            "'65' is not a multiple of 2"
        );
        // The range is told first.
        assert_eq!(
            def.parse("3").unwrap_err().reason(),
            "'3' is out of range: give 64 to 1MiB"
        );
        def.set_multiple("4KiB").unwrap();
        assert_eq!(
            def.parse_one("5000").unwrap_err().reason(),
            "'5000' is not a multiple of 4KiB"
        );
        assert!(def.set_multiple("0").is_err());
        assert!(def.set_multiple("-2").is_err());
        assert!(def.set_multiple("many").is_err());
        assert!(
            def.set_multiple("128KiB").is_err(),
            "the default is not one"
        );
        let mut text =
            SettingDef::from_spec(&spec("t", SettingKind::String, None, &[]), "p").unwrap();
        assert!(text.set_multiple("2").is_err());
    }

    #[test]
    fn errors_about_values_name_their_source_in_one_wording() {
        // What the host says of a value it refuses itself starts as what
        // plugin-api makes a plugin's check say (`Context::setting_error`).
        let mut registry = SettingsRegistry::default();
        let mut def =
            SettingDef::from_spec(&spec("n", SettingKind::Integer, Some("2"), &[]), "p").unwrap();
        def.set_range("1", "10").unwrap();
        registry.add(def).unwrap();
        let origin = |source: Source| {
            let mut values = registry.defaults();
            values.set_from("n", Value::Int(5), source);
            format!("{}: ", values.origin("n"))
        };

        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("c.conf");
        std::fs::write(&conf, "[config]\n\nn = 11\n").unwrap();
        let err = config_files::apply_file(&conf, &registry, &mut registry.defaults())
            .unwrap_err()
            .to_string();
        let prefix = origin(Source::File(conf.clone(), 3));
        assert!(err.starts_with(&prefix), "{err} / {prefix}");

        let err = registry
            .defaults()
            .apply_env(&registry, |var| (var == "OBNAM_N").then(|| "11".into()))
            .unwrap_err()
            .to_string();
        let prefix = origin(Source::Env("OBNAM_N".into()));
        assert!(err.starts_with(&prefix), "{err} / {prefix}");

        // The command line's errors are `--NAME: ...` (cli::parse).
        assert_eq!(origin(Source::CommandLine), "--n: ");

        // A config file's name that is not UTF-8 is shown escaped.
        let latin1 = dir.path().join(OsStr::from_bytes(b"caf\xe9.conf"));
        std::fs::write(&latin1, "[config]\nn = 0\n").unwrap();
        let err = config_files::apply_file(&latin1, &registry, &mut registry.defaults())
            .unwrap_err()
            .to_string();
        assert!(err.contains("caf\\xe9.conf: line 2: setting 'n'"), "{err}");
        assert!(origin(Source::File(latin1, 2)).contains("caf\\xe9.conf: line 2"));
    }
}
