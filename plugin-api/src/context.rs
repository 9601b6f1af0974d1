//! What a running subcommand or callback gets from the host.

use std::ffi::OsString;
use std::marker::PhantomData;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use abi_stable::{
    std_types::{RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::abi::{Filtered, HostRef, PathValue, PayloadPtr, SettingSource, SettingValue};
use crate::guard::unwrap_abi;
use crate::hooks::{Hook, JsonPayload};
use crate::{Error, Result};

/// The host, as seen by a subcommand handler or a hook callback: settings,
/// hooks, output and progress.
///
/// A `Context` is `Sync`: a handler may share it with worker threads (for
/// example with `std::thread::scope`).
pub struct Context<'a> {
    host: HostRef<'a>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(host: HostRef<'a>) -> Self {
        Context { host }
    }

    /// The raw value of a setting.
    pub fn setting(&self, name: &str) -> Result<SettingValue> {
        unwrap_abi(self.host.setting(RStr::from_str(name)))
    }

    /// What the host's `output-format` setting asks for (see
    /// [`OutputFormat`](crate::OutputFormat)). Since 0.1.5.
    pub fn output_format(&self) -> Result<crate::OutputFormat> {
        Ok(crate::OutputFormat::parse(
            self.string("output-format")?.as_deref(),
        ))
    }

    /// A string or choice setting; `None` if it has no value.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.setting(name)? {
            SettingValue::Unset => Ok(None),
            SettingValue::String(s) => Ok(Some(s.into_string())),
            other => Err(mismatch(name, "a string", &other)),
        }
    }

    /// A string-list setting.
    pub fn string_list(&self, name: &str) -> Result<Vec<String>> {
        match self.setting(name)? {
            SettingValue::StringList(v) => Ok(v.into_iter().map(RString::into_string).collect()),
            other => Err(mismatch(name, "a string list", &other)),
        }
    }

    /// A boolean setting.
    pub fn boolean(&self, name: &str) -> Result<bool> {
        match self.setting(name)? {
            SettingValue::Boolean(b) => Ok(b),
            other => Err(mismatch(name, "a boolean", &other)),
        }
    }

    /// An integer setting.
    pub fn integer(&self, name: &str) -> Result<i64> {
        match self.setting(name)? {
            SettingValue::Integer(i) => Ok(i),
            other => Err(mismatch(name, "an integer", &other)),
        }
    }

    /// A byte-size setting, in bytes.
    pub fn bytesize(&self, name: &str) -> Result<u64> {
        match self.setting(name)? {
            SettingValue::ByteSize(n) => Ok(n),
            other => Err(mismatch(name, "a byte size", &other)),
        }
    }

    /// A path setting ([`Setting::path`](crate::Setting::path)), or a
    /// string setting read as a path; `None` if it has no value. The path
    /// is the bytes given, which need not be UTF-8. Since 0.1.12.
    pub fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        match unwrap_abi(self.host.setting_path(RStr::from_str(name)))? {
            PathValue::Unset => Ok(None),
            PathValue::Path(bytes) => Ok(Some(path_of(bytes))),
            PathValue::PathList(_) => Err(Error::msg(format!(
                "setting '{name}' is a path list, but the plugin read it as a path"
            ))),
        }
    }

    /// A path-list setting ([`Setting::path_list`](crate::Setting::path_list)),
    /// or a string-list setting read as paths. Since 0.1.12.
    pub fn path_list(&self, name: &str) -> Result<Vec<PathBuf>> {
        match unwrap_abi(self.host.setting_path(RStr::from_str(name)))? {
            PathValue::PathList(list) => Ok(list.into_iter().map(path_of).collect()),
            PathValue::Unset | PathValue::Path(_) => Err(Error::msg(format!(
                "setting '{name}' is a path, but the plugin read it as a path list"
            ))),
        }
    }

    /// Where the value of setting `name` came from. Since 0.1.12.
    pub fn setting_origin(&self, name: &str) -> Result<SettingOrigin> {
        let source = unwrap_abi(self.host.setting_source(RStr::from_str(name)))?;
        Ok(match source {
            SettingSource::Default => SettingOrigin::Default,
            SettingSource::CommandLine => SettingOrigin::CommandLine,
            SettingSource::ConfigFile(path, line) => SettingOrigin::ConfigFile {
                path: path_of(path),
                line,
            },
            SettingSource::Environment(variable) => SettingOrigin::Environment {
                variable: variable.into_string(),
            },
        })
    }

    /// An error about the value of setting `name`: `reason`, after the
    /// place the value came from, in the words the host uses for its own
    /// checks (see [`SettingOrigin::error_prefix`]). Every check a plugin
    /// makes of a setting's value should fail with one, so that the user
    /// is told where to change it. Since 0.1.12.
    pub fn setting_error(&self, name: &str, reason: &str) -> Error {
        match self.setting_origin(name) {
            Ok(origin) => Error::msg(format!("{}: {reason}", origin.error_prefix(name))),
            Err(e) => e,
        }
    }

    /// Resolve a plain hook whose payload type is `P`. Fails if no plugin
    /// created the hook, or if its payload type has another layout.
    /// Resolve once, call many times.
    pub fn hook<P: StableAbi>(&self, name: &str) -> Result<Hook<P>> {
        let id = unwrap_abi(self.host.resolve_hook(RStr::from_str(name), P::LAYOUT))?;
        Ok(Hook {
            id,
            _payload: PhantomData,
        })
    }

    /// Call every callback of `hook`, in priority order, with `payload`.
    pub fn call<P: StableAbi>(&self, hook: Hook<P>, payload: &mut P) -> Result<()> {
        // The host only derefs the pointer while this call runs, as a `P`
        // whose layout it checked in `resolve_hook`.
        unwrap_abi(
            self.host
                .call_hook(hook.id, PayloadPtr(payload as *mut P as *mut ())),
        )
    }

    /// Call a hook whose payload is JSON; callbacks may change `value`.
    pub fn call_json(&self, name: &str, value: &mut serde_json::Value) -> Result<()> {
        let hook = self.hook::<JsonPayload>(name)?;
        let mut payload = JsonPayload {
            json: value.to_string().into(),
        };
        self.call(hook, &mut payload)?;
        *value = serde_json::from_str(&payload.json)
            .map_err(|e| Error::msg(format!("hook {name}: a callback returned bad JSON: {e}")))?;
        Ok(())
    }

    /// Run `data` through the write side of a filter hook. Returns the
    /// transformed data and the tags of the filters that changed it.
    pub fn filter_write(
        &self,
        hook: &str,
        context: &str,
        data: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<String>)> {
        let out = unwrap_abi(self.host.filter_write(
            RStr::from_str(hook),
            RStr::from_str(context),
            RVec::from(data),
        ))?;
        Ok((
            out.data.into_vec(),
            out.tags.into_iter().map(RString::into_string).collect(),
        ))
    }

    /// Undo [`filter_write`](Self::filter_write): apply the filters named by
    /// `tags` in reverse order.
    pub fn filter_read(
        &self,
        hook: &str,
        context: &str,
        data: Vec<u8>,
        tags: &[String],
    ) -> Result<Vec<u8>> {
        let filtered = Filtered {
            data: RVec::from(data),
            tags: tags.iter().map(|t| RString::from(t.as_str())).collect(),
        };
        let out = unwrap_abi(self.host.filter_read(
            RStr::from_str(hook),
            RStr::from_str(context),
            filtered,
        ))?;
        Ok(out.into_vec())
    }

    /// Write bytes to standard output (through the host, which handles a
    /// closed pipe).
    pub fn output(&self, data: &[u8]) -> Result<()> {
        unwrap_abi(self.host.output(RSlice::from_slice(data)))
    }

    /// Write a line of text to standard output.
    pub fn outln(&self, line: &str) -> Result<()> {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        self.output(buf.as_bytes())
    }

    /// The repository named by the `repository` setting. With `create`, a
    /// location holding no repository (no `config` object) becomes one.
    pub fn repository(&self, create: bool) -> Result<crate::Repository> {
        unwrap_abi(self.host.repository(create)).map(crate::Repository::new)
    }

    /// The repository, opened as [`repository`](Self::repository)`(false)`
    /// does, or `None` if there is none at its location yet (for a run
    /// that pretends: nothing stored counts as empty). Any other failure to
    /// open it (a wrong passphrase, an unreachable server, a file where
    /// the folder should be) is an error, as it is for a real run.
    /// Since 0.1.23.
    pub fn repository_if_any(&self) -> Result<Option<crate::Repository>> {
        let repo = unwrap_abi(self.host.repository_if_any())?;
        Ok(repo.into_option().map(crate::Repository::new))
    }

    /// Show a transient progress line (nothing under `--quiet` or when
    /// standard error is not a terminal).
    pub fn status(&self, line: &str) {
        self.host.status(RStr::from_str(line));
    }

    /// Set the exit code of the run, for a subcommand whose outcome is
    /// more than success or failure (a monitoring check, say). It applies
    /// only if the subcommand then returns `Ok`; an error still ends the
    /// run with 1. `code` is 0 to 125 (126 and up mean other things to a
    /// shell). Since 0.1.4.
    pub fn set_exit_code(&self, code: i32) -> Result<()> {
        unwrap_abi(self.host.set_exit_code(code))
    }
}

fn path_of(bytes: RVec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.into_vec()))
}

/// Where a setting's value came from: [`Context::setting_origin`].
/// Since 0.1.12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingOrigin {
    /// Nobody set it: the setting's default.
    Default,
    /// An option on the command line.
    CommandLine,
    /// A config file, and the line (from 1) that sets it.
    ConfigFile {
        /// The file, as it was named.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
    },
    /// An environment variable.
    Environment {
        /// Its name (`OBNAM_...`).
        variable: String,
    },
}

/// Where, in words: `the command line`, `config file FILE, line N`,
/// `environment variable OBNAM_NAME`, `its default`; for an error about
/// two values that do not fit together, to say where the other came from.
impl std::fmt::Display for SettingOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingOrigin::Default => f.write_str("its default"),
            SettingOrigin::CommandLine => f.write_str("the command line"),
            SettingOrigin::ConfigFile { path, line } => write!(
                f,
                "config file {}, line {line}",
                crate::names::escape_path(path)
            ),
            SettingOrigin::Environment { variable } => {
                write!(f, "environment variable {variable}")
            }
        }
    }
}

impl SettingOrigin {
    /// The start of an error about the value of setting `name` from here,
    /// as the host writes it for a value it refuses itself; the reason
    /// follows after `": "`:
    ///
    /// * `--NAME` (the command line),
    /// * `config file FILE: line N: setting 'NAME'`,
    /// * `setting 'NAME': environment variable OBNAM_NAME`,
    /// * `--NAME (its default)`.
    ///
    /// A file name that is not UTF-8 is shown escaped
    /// ([`names::escape_path`](crate::names::escape_path)).
    pub fn error_prefix(&self, name: &str) -> String {
        match self {
            SettingOrigin::Default => format!("--{name} (its default)"),
            SettingOrigin::CommandLine => format!("--{name}"),
            SettingOrigin::ConfigFile { path, line } => format!(
                "config file {}: line {line}: setting '{name}'",
                crate::names::escape_path(path)
            ),
            SettingOrigin::Environment { variable } => {
                format!("setting '{name}': environment variable {variable}")
            }
        }
    }
}

fn mismatch(name: &str, wanted: &str, got: &SettingValue) -> Error {
    let got = match got {
        SettingValue::Unset | SettingValue::String(_) => "a string",
        SettingValue::StringList(_) => "a string list",
        SettingValue::Boolean(_) => "a boolean",
        SettingValue::Integer(_) => "an integer",
        SettingValue::ByteSize(_) => "a byte size",
    };
    Error::msg(format!(
        "setting '{name}' is {got}, but the plugin read it as {wanted}"
    ))
}
