//! Declaring typed settings.
//!
//! A plugin declares each of its settings with a [`Setting`] builder; the
//! host turns it into a command-line option (`--NAME`, and `--no-NAME` for
//! booleans), a config-file key and an `OBNAM_NAME` environment variable,
//! parses values of the declared type, and shows the help text under the
//! setting's help group.

use abi_stable::std_types::{ROption, RString, RVec};

use crate::abi::{SettingKind, SettingSpec};

/// Help group of settings about making backups.
pub const GROUP_BACKUP: &str = "Backing up";
/// Help group of settings that tune speed and memory.
pub const GROUP_PERFORMANCE: &str = "Performance";
/// Help group of settings meant for developers and tests.
pub const GROUP_DEVELOPMENT: &str = "Development";
/// Help group of settings for restoring.
pub const GROUP_RESTORE: &str = "Restoring";
/// Help group of encryption and key settings.
pub const GROUP_ENCRYPTION: &str = "Encryption";
/// Help group used when a plugin names none.
pub const GROUP_DEFAULT: &str = "Plugin settings";

/// A setting declaration, built fluently:
///
/// ```
/// use plugin_api::Setting;
/// let s = Setting::bytesize("checkpoint")
///     .help("make a checkpoint after a given SIZE")
///     .metavar("SIZE")
///     .default("1GiB")
///     .group(plugin_api::GROUP_BACKUP);
/// # let _ = s;
/// ```
#[derive(Debug, Clone)]
pub struct Setting {
    spec: SettingSpec,
    subcommands: Vec<String>,
    range: Option<(String, String)>,
    /// Whether its values are paths (bytes, not text).
    path: bool,
    multiple_of: Option<String>,
}

/// A declaration taken apart for the registrar.
pub(crate) struct Parts {
    pub spec: SettingSpec,
    pub subcommands: Vec<String>,
    pub range: Option<(String, String)>,
    pub path: bool,
    pub multiple_of: Option<String>,
}

impl Setting {
    fn new(name: &str, kind: SettingKind, metavar: &str) -> Self {
        Setting {
            spec: SettingSpec {
                name: name.into(),
                kind,
                help: RString::new(),
                metavar: metavar.into(),
                default: ROption::RNone,
                group: GROUP_DEFAULT.into(),
                choices: RVec::new(),
            },
            subcommands: Vec::new(),
            range: None,
            path: false,
            multiple_of: None,
        }
    }

    /// A single string (unset unless a default is given).
    pub fn string(name: &str) -> Self {
        Self::new(name, SettingKind::String, "STRING")
    }

    /// A list of strings: repeat the option on the command line, separate
    /// items with commas in a config file or environment variable.
    pub fn string_list(name: &str) -> Self {
        Self::new(name, SettingKind::StringList, "STRING")
    }

    /// A path: a file or folder name, which need not be UTF-8 (a Linux
    /// path is any bytes but NUL). Unset unless a default is given; read
    /// it with [`Context::path`](crate::Context::path). On the command line
    /// and in the environment the value is taken as it is; a config file,
    /// which is text, writes a byte that is not UTF-8 as `\xNN` inside
    /// double quotes. (Since 0.1.12; a string before.)
    pub fn path(name: &str) -> Self {
        let mut s = Self::new(name, SettingKind::String, "PATH");
        s.path = true;
        s
    }

    /// A list of paths, given as [`string_list`](Self::string_list)'s items
    /// are, each as [`path`](Self::path)'s value is; read it with
    /// [`Context::path_list`](crate::Context::path_list). (Since 0.1.12.)
    pub fn path_list(name: &str) -> Self {
        let mut s = Self::new(name, SettingKind::StringList, "PATH");
        s.path = true;
        s
    }

    /// A boolean: `--NAME` sets it, `--no-NAME` clears it. False by default.
    pub fn boolean(name: &str) -> Self {
        Self::new(name, SettingKind::Boolean, "")
    }

    /// A signed integer. Zero by default.
    pub fn integer(name: &str) -> Self {
        Self::new(name, SettingKind::Integer, "NUM")
    }

    /// A byte size with an optional unit: `1GiB`, `10MiB`, `1k` (1000), `1ki` (1024).
    /// Zero by default.
    pub fn bytesize(name: &str) -> Self {
        Self::new(name, SettingKind::ByteSize, "SIZE")
    }

    /// One of a fixed set of words; the first is the default unless
    /// [`default`](Self::default) names another.
    pub fn choice(name: &str, choices: &[&str]) -> Self {
        let mut s = Self::new(name, SettingKind::Choice, "CHOICE");
        s.spec.choices = choices.iter().map(|c| RString::from(*c)).collect();
        s
    }

    /// The help text shown by `--help`.
    pub fn help(mut self, text: &str) -> Self {
        self.spec.help = text.into();
        self
    }

    /// The placeholder for the value in `--help` (`SIZE`, `PATH`, ...).
    pub fn metavar(mut self, metavar: &str) -> Self {
        self.spec.metavar = metavar.into();
        self
    }

    /// The default value, written as it would be in a config file
    /// (`"1GiB"`, `"yes"`, `"a,b,c"`).
    pub fn default(mut self, value: &str) -> Self {
        self.spec.default = ROption::RSome(value.into());
        self
    }

    /// The help group the setting is listed under.
    pub fn group(mut self, group: &str) -> Self {
        self.spec.group = group.into();
        self
    }

    /// The subcommands the setting belongs to: `obnam SUBCOMMAND --help`
    /// lists it only under these (and `obnam --help` leaves it to them).
    /// It is still accepted with any subcommand and in config files. A
    /// setting without subcommands belongs to every subcommand. Names of
    /// subcommands that are not loaded are ignored. (Since 0.1.5.)
    pub fn subcommands(mut self, names: &[&str]) -> Self {
        self.subcommands = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The least and the most an integer or byte-size setting may be,
    /// written as in a config file (`"1"`, `"64KiB"`). The host refuses a
    /// value outside from the command line, a config file or the
    /// environment before any command runs, naming where it came from; a
    /// value that sizes memory or a count of threads must have one, so
    /// that a huge value is an error, not an abort. A range that does not
    /// parse, or that leaves out the default, makes the host refuse the
    /// setting with a warning. (Since 0.1.11.)
    pub fn range(mut self, least: &str, most: &str) -> Self {
        self.range = Some((least.to_string(), most.to_string()));
        self
    }

    /// That an integer or byte-size setting must be a multiple of
    /// `factor`, written as in a config file (`.multiple_of("2")` for an
    /// even number, `.multiple_of("4KiB")`). The host refuses another value
    /// wherever it is written, before any command runs, naming where it
    /// came from, as it does a value out of [`range`](Self::range). A
    /// factor that does not parse or is not positive, or a default that is
    /// not a multiple, makes the host refuse the setting with a warning.
    /// (Since 0.1.12.)
    pub fn multiple_of(mut self, factor: &str) -> Self {
        self.multiple_of = Some(factor.to_string());
        self
    }

    /// The name of the setting.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            spec: self.spec,
            subcommands: self.subcommands,
            range: self.range,
            path: self.path,
            multiple_of: self.multiple_of,
        }
    }
}
