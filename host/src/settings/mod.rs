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

use std::collections::BTreeMap;

use plugin_api::abi::{SettingKind, SettingSpec, SettingValue};

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
    /// A string or choice setting with no value.
    Unset,
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Int(i64),
    Bytes(u64),
}

impl Value {
    /// The value as it crosses the plugin boundary.
    pub fn to_abi(&self) -> SettingValue {
        match self {
            Value::Unset => SettingValue::Unset,
            Value::Str(s) => SettingValue::String(s.as_str().into()),
            Value::List(v) => {
                SettingValue::StringList(v.iter().map(|s| s.as_str().into()).collect())
            }
            Value::Bool(b) => SettingValue::Boolean(*b),
            Value::Int(i) => SettingValue::Integer(*i),
            Value::Bytes(n) => SettingValue::ByteSize(*n),
        }
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
        let mut def = SettingDef {
            name: name.clone(),
            kind: spec.kind,
            help: spec.help.to_string(),
            metavar: spec.metavar.to_string(),
            group: spec.group.to_string(),
            choices,
            default: Value::Unset,
            owner: owner.to_string(),
            short: None,
            aliases: Vec::new(),
            subcommands: Vec::new(),
        };
        def.default = match spec.default.as_ref().into_option() {
            Some(text) => def
                .parse(text)
                .map_err(|e| bad(&format!("bad default: {e}")))?,
            None => def.implicit_default(),
        };
        Ok(def)
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
    /// variable (lists are comma-separated).
    pub fn parse(&self, text: &str) -> Result<Value, SettingError> {
        if self.kind == SettingKind::StringList {
            let items = text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            return Ok(Value::List(items));
        }
        self.parse_one(text)
    }

    /// Parse one value as given on the command line (a list item is not split).
    pub fn parse_one(&self, text: &str) -> Result<Value, SettingError> {
        let bad = |reason: String| SettingError::BadValue {
            name: self.name.clone(),
            reason,
        };
        match self.kind {
            SettingKind::String => Ok(Value::Str(text.to_string())),
            SettingKind::StringList => Ok(Value::List(vec![text.to_string()])),
            SettingKind::Boolean => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad(format!("'{text}' is not a boolean (use yes or no)"))),
            SettingKind::Integer => text
                .trim()
                .parse()
                .map(Value::Int)
                .map_err(|_| bad(format!("'{text}' is not an integer"))),
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

    /// Write a value as text that [`parse`](Self::parse) reads back.
    pub fn format(&self, value: &Value) -> String {
        match value {
            Value::Unset => String::new(),
            Value::Str(s) => s.clone(),
            Value::List(v) => v.join(","),
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bytes(n) => bytesize::format(*n),
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
    /// saying by whom.
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
        }
    }
}

/// The effective value of every setting.
#[derive(Debug, Clone, Default)]
pub struct Values {
    map: BTreeMap<String, Value>,
}

impl Values {
    /// A value by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Set a value.
    pub fn set(&mut self, name: &str, value: Value) {
        self.map.insert(name.to_string(), value);
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

    /// Apply `OBNAM_<NAME>` environment variables.
    pub fn apply_env(
        &mut self,
        registry: &SettingsRegistry,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingError> {
        for def in registry.iter() {
            let var = def.env_var();
            if let Some(text) = lookup(&var) {
                let value = def.parse(&text).map_err(|e| SettingError::BadValue {
                    name: def.name.clone(),
                    reason: format!("environment variable {var}: {}", e.reason()),
                })?;
                self.set(&def.name, value);
            }
        }
        Ok(())
    }

    /// The effective settings in config-file format, readable back with `--config`.
    pub fn dump(&self, registry: &SettingsRegistry) -> String {
        let mut out = String::from("[config]\n");
        for def in registry.iter() {
            let value = self.get(&def.name).unwrap_or(&def.default);
            if *value == Value::Unset {
                continue;
            }
            out.push_str(&format!("{} = {}\n", def.name, def.format(value)));
        }
        out
    }
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

    #[test]
    fn env_var_names() {
        let def = SettingDef::from_spec(&spec("client-name", SettingKind::String, None, &[]), "p")
            .unwrap();
        assert_eq!(def.env_var(), "OBNAM_CLIENT_NAME");
    }
}
