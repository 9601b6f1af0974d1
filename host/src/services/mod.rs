//! The services the host offers to running plugins, behind the ABI's
//! [`HostServices`] trait: settings, hooks, filters ([`filters`]), output,
//! progress, and the repository ([`repository`], its values converted by
//! [`convert`]). This module and its children, with the loader, are the
//! host's adapter to the boundary types of plugin-api.
//!
//! Every method runs inside [`guarded`], so a bug in the host surfaces in
//! the plugin as an error rather than a panic unwinding through `extern "C"`.

pub mod convert;
pub mod filters;
pub mod repository;
mod root_writes;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use obnam_repository::fault_injection::FaultSpec;
use obnam_repository::index_cache::IndexCacheDir;
use obnam_repository::storage::StorageOptions;
use obnam_repository::{OpenOptions, Repository};
use plugin_api::abi::{
    host_ref, AbiResult, Failure, FailureKind, Filtered, HookId, HostRef, HostServices, PathValue,
    PayloadPtr, SettingSource, SettingValue, TypeLayout,
};
use plugin_api::guard::guarded;
use plugin_api::repo_abi::{repository_box, RepositoryBox};
use plugin_api::types::{ROption, RSlice, RStr, RString, RVec};
use plugin_api::Error;

use crate::registry::{Registry, SubcommandDef};
use crate::settings::{Value, Values};
use filters::HookFilter;
use repository::{RepoService, ServiceBug};

/// The engine's default size of pack files (the `pack-size` setting's default).
pub const DEFAULT_PACK_SIZE: u64 = obnam_repository::DEFAULT_PACK_SIZE;

/// The host as plugins see it during one run: made by [`Host::new`], shared
/// by the command's thread and the interruption's.
pub struct Host {
    registry: &'static Registry,
    values: Values,
    /// No status line: `--quiet`, or `--output-format json-lines` (whose
    /// stream on standard output is the progress).
    no_status: bool,
    /// `--output-format json` or `json-lines`: standard output is the
    /// command's JSON, and nothing else.
    json_output: bool,
    /// The repository, once opened. Held only to read or set it, never
    /// while the repository is opened: an interruption's wind-down reads
    /// it, and must not wait for an open that may take long (waiting for
    /// another process's creation, a slow network), or the signal would
    /// not stop the run.
    repository: Mutex<Option<Arc<Repository>>>,
    /// Held while the repository is opened, so that two threads asking at
    /// once open it once.
    opening: Mutex<()>,
    /// Whether a repository service met a bug it could not report.
    bug: Arc<ServiceBug>,
    /// This host, weakly, for the repository's data filters, which call
    /// plugins (the repository it opens holds them).
    myself: Weak<Host>,
    /// The exit code a subcommand chose for a successful run.
    exit_code: AtomicI32,
}

impl Host {
    /// Whether the plugin called `name` is one of obnam's own (loaded
    /// from the bundled folder).
    fn is_bundled(&self, name: &str) -> bool {
        self.registry
            .plugins
            .iter()
            .any(|p| p.name == name && p.bundled)
    }

    /// The host of this run over a registry and the effective settings.
    pub fn new(registry: &'static Registry, values: Values) -> Arc<Host> {
        let no_status =
            values.boolean("quiet") || values.string("output-format") == Some("json-lines");
        let json_output = matches!(values.string("output-format"), Some("json" | "json-lines"));
        Arc::new_cyclic(|myself| Host {
            registry,
            values,
            no_status,
            json_output,
            repository: Mutex::new(None),
            opening: Mutex::new(()),
            bug: Arc::default(),
            myself: myself.clone(),
            exit_code: AtomicI32::new(0),
        })
    }

    /// The repository, if a plugin opened it.
    pub fn opened_repository(&self) -> Option<Arc<Repository>> {
        self.repository
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Close the repository this run opened, at the end of the run: its
    /// storage's connections end, so that over SFTP the ssh processes that
    /// carry them exit rather than outlive obnam. Plugins may still hold
    /// handles (in their state), but nothing runs after this.
    pub fn close_repository(&self) {
        // Closed with the slot locked: a second caller (the command's
        // thread and an interruption's, at the same moment) returns only
        // once the first has finished closing, so that the process cannot
        // end half-way through (with ssh processes not yet ended).
        let mut slot = self.repository.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(repo) = slot.take() {
            repo.close();
        }
    }

    /// The host as an ABI trait object.
    pub fn as_abi(&self) -> HostRef<'_> {
        host_ref(self)
    }

    /// The exit code of a run whose subcommand succeeded: 0 unless the
    /// subcommand chose another ([`HostServices::set_exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.exit_code.load(Ordering::Relaxed)
    }

    /// The effective settings.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// If a repository service met a bug it could not report through its
    /// result, what to tell the user; the run then ends as a bug.
    pub fn internal_error(&self) -> Option<&'static str> {
        self.bug.happened().then_some(repository::BUG_MESSAGE)
    }

    /// Run a plugin's subcommand with the arguments that follow its name.
    pub fn run_subcommand(&self, def: &SubcommandDef, args: Vec<OsString>) -> Result<(), String> {
        let Some(handler) = &def.handler else {
            return Err(format!("subcommand '{}' has no handler", def.name));
        };
        let raw: RVec<RVec<u8>> = args.into_iter().map(|a| a.into_vec().into()).collect();
        handler
            .run(self.as_abi(), raw)
            .into_result()
            .map_err(|f| describe_failure(f, &def.owner, &format!("subcommand '{}'", def.name)))
    }
}

/// Check the settings whose values only this module reads, so that a bad
/// one is refused before any command runs.
pub fn check_settings(values: &Values) -> Result<(), String> {
    storage_faults(values)?;
    generation_clock(values)?;
    // Numbers out of range, and client names given anywhere, were refused
    // where they were read, naming where they came from
    // (SettingDef::parse). What is left is the default client name, the
    // host name, which nobody wrote.
    if let Some(name) = values.string("client-name") {
        crate::host_settings::check_client_name(name).map_err(|why| {
            format!(
                "this machine's host name cannot be the client name: {why}; \
                 give one with --client-name"
            )
        })?;
    }
    Ok(())
}

/// The start time the `testing-generation-time` setting gives the
/// generations of this run, in ns since the epoch, or why its value is bad.
fn generation_clock(values: &Values) -> Result<Option<i64>, String> {
    let Some(text) = values.string("testing-generation-time") else {
        return Ok(None);
    };
    let origin = values.origin("testing-generation-time");
    let bad = |why: String| format!("{origin}: '{text}' is not a time: {why}");
    // RFC 3339 with its offset (`Z`, `+02:00`); without one, UTC.
    let ns = match text.parse::<jiff::Timestamp>() {
        Ok(t) => t.as_nanosecond(),
        Err(_) => humantime::parse_rfc3339_weak(text)
            .map_err(|e| bad(e.to_string()))?
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| bad("it is before 1970".into()))?
            .as_nanos() as i128,
    };
    if ns < 0 {
        return Err(bad("it is before 1970".into()));
    }
    i64::try_from(ns)
        .map(Some)
        .map_err(|_| bad("it is after 2262".into()))
}

/// The storage faults the `testing-storage-faults` setting asks for, or
/// why its value is bad.
fn storage_faults(values: &Values) -> Result<Option<FaultSpec>, String> {
    match values.string("testing-storage-faults") {
        Some(text) => FaultSpec::parse(text)
            .map_err(|e| format!("{}: {e}", values.origin("testing-storage-faults"))),
        None => Ok(None),
    }
}

/// Describe a failure of plugin code, naming the plugin and where it failed.
/// Ordinary errors are messages for the user and pass unchanged; panics are
/// bugs and say whose.
pub fn describe_failure(failure: Failure, plugin: &str, place: &str) -> String {
    match failure.kind {
        FailureKind::Panic => format!("plugin '{plugin}' panicked in {place}: {}", failure.message),
        FailureKind::Error => failure.message.into_string(),
    }
}

/// A failure of `plugin`'s callback of hook `hook`: as
/// [`describe_failure`] gives it, and, for a plugin that is not obnam's
/// own (from a folder the user named), with the plugin and hook named:
/// `ERROR: Permission denied (os error 13)` could pass for obnam's own
/// error, and did not say which of several plugins stopped a backup.
/// A message that names this plugin first already (its panic, or a
/// failure of its callback deeper down) is left as it is; any other is
/// prefixed, so that a plugin cannot pass its error off as another's
/// (`plugin 'encrypt' ...`).
pub fn describe_callback_failure(
    failure: Failure,
    plugin: &str,
    bundled: bool,
    hook: &str,
) -> String {
    describe_third_party_failure(failure, plugin, bundled, &format!("hook '{hook}'"))
}

/// A failure of `plugin`'s code at `place` (`hook 'NAME'`, `filter 'TAG'
/// writing CONTEXT`), named as [`describe_callback_failure`] names a
/// callback's.
pub fn describe_third_party_failure(
    failure: Failure,
    plugin: &str,
    bundled: bool,
    place: &str,
) -> String {
    let message = describe_failure(failure, plugin, place);
    if bundled || message.starts_with(&format!("plugin '{plugin}' ")) {
        message
    } else {
        format!("plugin '{plugin}' failed in {place}: {message}")
    }
}

/// How deep hook calls may nest on one thread: far more than any chain
/// of plugins needs, and far less than the stack a callback that calls
/// its own hook would overflow (the process died: "stack overflow").
const MAX_HOOK_DEPTH: usize = 64;

thread_local! {
    /// Hook calls running on this thread, one inside another.
    static HOOK_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One hook call counted in [`HOOK_DEPTH`] while it runs.
struct HookDepth;

impl HookDepth {
    /// How many hook calls this thread is in.
    fn current() -> usize {
        HOOK_DEPTH.with(std::cell::Cell::get)
    }

    /// Count a call, unless [`MAX_HOOK_DEPTH`] are running already.
    fn enter() -> Option<HookDepth> {
        HOOK_DEPTH.with(|d| {
            (d.get() < MAX_HOOK_DEPTH).then(|| {
                d.set(d.get() + 1);
                HookDepth
            })
        })
    }
}

impl Drop for HookDepth {
    fn drop(&mut self) {
        HOOK_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

impl HostServices for Host {
    fn setting(&self, name: RStr<'_>) -> AbiResult<SettingValue> {
        guarded(|| {
            self.values
                .get(name.as_str())
                .ok_or_else(|| Error::msg(format!("there is no setting '{name}'")))?
                .to_abi(name.as_str())
                .map_err(Error::msg)
        })
    }

    fn resolve_hook(&self, name: RStr<'_>, payload: &'static TypeLayout) -> AbiResult<HookId> {
        guarded(|| {
            self.registry
                .hooks
                .resolve(name.as_str(), payload)
                .map_err(Error::msg)
        })
    }

    fn call_hook(&self, hook: HookId, payload: PayloadPtr) -> AbiResult<()> {
        guarded(|| {
            let def = self
                .registry
                .hooks
                .get(hook)
                .ok_or_else(|| Error::msg(format!("no hook with handle {}", hook.0)))?;
            let _depth = HookDepth::enter().ok_or_else(|| {
                Error::msg(format!(
                    "hook '{}' was called {MAX_HOOK_DEPTH} calls deep: a callback calls, \
                     directly or through others, a hook it handles (callbacks of plugins {})",
                    def.name,
                    def.callbacks
                        .iter()
                        .map(|cb| format!("'{}'", cb.plugin))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            for cb in &def.callbacks {
                // The payload pointer is passed on unchanged: the caller
                // holds it for the duration of this call, and every bound
                // callback was checked for the hook's payload layout.
                cb.callback
                    .call(self.as_abi(), payload)
                    .into_result()
                    .map_err(|f| {
                        Error::msg(describe_callback_failure(
                            f,
                            &cb.plugin,
                            self.is_bundled(&cb.plugin),
                            &def.name,
                        ))
                    })?;
            }
            Ok(())
        })
    }

    fn filter_write(
        &self,
        hook: RStr<'_>,
        context: RStr<'_>,
        data: RVec<u8>,
    ) -> AbiResult<Filtered> {
        guarded(|| self.run_filter_write(hook.as_str(), context.as_str(), data, None))
    }

    fn filter_read(
        &self,
        hook: RStr<'_>,
        context: RStr<'_>,
        data: Filtered,
    ) -> AbiResult<RVec<u8>> {
        guarded(|| {
            let tags: Vec<String> = data.tags.into_iter().map(RString::into_string).collect();
            self.run_filter_read(hook.as_str(), context.as_str(), data.data, &tags)
        })
    }

    fn output(&self, data: RSlice<'_, u8>) -> AbiResult<()> {
        guarded(|| {
            // A hook's callback (a `backup-finished` report, say) that
            // prints would break the one JSON document, or the stream,
            // of the command that called the hook: it goes aside.
            if self.json_output && HookDepth::current() > 0 {
                crate::output::write_aside(data.as_slice())
            } else {
                crate::output::write(data.as_slice())
            }
            .map_err(Error::from)
        })
    }

    fn repository(&self, create: bool) -> AbiResult<RepositoryBox> {
        guarded(|| self.open_repository(create))
    }

    fn status(&self, line: RStr<'_>) {
        let _ = guarded(|| {
            crate::output::status(line.as_str(), self.no_status);
            Ok(())
        });
    }

    fn set_exit_code(&self, code: i32) -> AbiResult<()> {
        guarded(|| {
            if !(0..=125).contains(&code) {
                return Err(Error::msg(format!(
                    "exit code {code} is out of range: a subcommand may choose 0 to 125"
                )));
            }
            self.exit_code.store(code, Ordering::Relaxed);
            Ok(())
        })
    }

    fn setting_path(&self, name: RStr<'_>) -> AbiResult<PathValue> {
        guarded(|| {
            self.values
                .get(name.as_str())
                .ok_or_else(|| Error::msg(format!("there is no setting '{name}'")))?
                .to_path_abi(name.as_str())
                .map_err(Error::msg)
        })
    }

    fn repository_if_any(&self) -> AbiResult<ROption<RepositoryBox>> {
        guarded(|| Ok(self.open_repository_as(Opening::IfAny)?.into()))
    }

    fn setting_source(&self, name: RStr<'_>) -> AbiResult<SettingSource> {
        guarded(|| {
            if self.values.get(name.as_str()).is_none() {
                return Err(Error::msg(format!("there is no setting '{name}'")));
            }
            Ok(self.values.source(name.as_str()).to_abi())
        })
    }
}

impl Host {
    /// Refuse to open a repository while two plugins give a data filter
    /// the same tag: the object header names the tag only, so which
    /// plugin wrote an object, and which one would read it, depends on
    /// the order they were loaded in; a wrong guess took sound objects
    /// for damaged (and `forget` was advised).
    fn refuse_contested_filters(&self) -> Result<(), Error> {
        let Some(hook) = self.registry.hooks.by_name(filters::DATA_FILTER_HOOK) else {
            return Ok(());
        };
        match hook.contested.first() {
            None => Ok(()),
            Some((tag, first, second)) if first == second => Err(Error::msg(format!(
                "plugin '{first}' adds two filters tagged '{tag}' to hook '{}': which of them \
                 reads an object cannot be told, so no repository is opened while it is \
                 loaded (a bug of that plugin)",
                filters::DATA_FILTER_HOOK
            ))),
            Some((tag, first, second)) => Err(Error::msg(format!(
                "plugins '{first}' and '{second}' both add a filter tagged '{tag}' to hook \
                 '{}': what one of them wrote cannot be read by the other, so no repository \
                 is opened while both are loaded; load only the one that wrote the \
                 repository (see 'obnam plugins')",
                filters::DATA_FILTER_HOOK
            ))),
        }
    }

    fn open_repository(&self, create: bool) -> Result<RepositoryBox, Error> {
        let opening = match create {
            true => Opening::Create,
            false => Opening::Existing,
        };
        self.open_repository_as(opening)?
            .ok_or_else(|| Error::msg("no repository was opened (a bug in obnam)"))
    }

    /// The repository, opened (once per run) as `opening` says; `None`
    /// only for [`Opening::IfAny`] where there is none yet.
    fn open_repository_as(&self, opening: Opening) -> Result<Option<RepositoryBox>, Error> {
        let create = opening == Opening::Create;
        let lock_timeout = match self.values.get("lock-timeout") {
            Some(Value::Int(n)) => Duration::from_secs((*n).max(0) as u64),
            _ => Duration::from_secs(60),
        };
        self.refuse_contested_filters()?;
        let _opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        let opened = self.opened_repository();
        let repo = match opened {
            Some(repo) => repo,
            None => {
                let url = self.values.path("repository").ok_or_else(|| {
                    Error::msg(
                        "No --repository setting. You need to give it on the command line, in a configuration file or as OBNAM_REPOSITORY",
                    )
                })?;
                refuse_moved_working_folder(url)?;
                let mut options = open_options(&self.values, create, lock_timeout)?;
                options.storage.writes_refused = root_writes::writes_refused(url);
                let filter = Arc::new(HookFilter::new(self.myself.clone()));
                let repo = match opening {
                    Opening::IfAny => match Repository::open_if_any(url, &options, filter) {
                        Ok(Some(repo)) => repo,
                        Ok(None) => return Ok(None),
                        Err(e) => return Err(Error::msg(e)),
                    },
                    _ => Repository::open(url, &options, filter).map_err(Error::msg)?,
                };
                let repo = Arc::new(repo);
                if repo.created_by_this_process() {
                    announce_new_repository(&repo, self.values.boolean("quiet"));
                }
                *self.repository.lock().unwrap_or_else(|e| e.into_inner()) = Some(repo.clone());
                // An interruption meanwhile found no repository to wind
                // down, and is ending the process: use none.
                crate::interrupt::hold_if_interrupted();
                repo
            }
        };
        Ok(Some(repository_box(RepoService::new(
            repo,
            lock_timeout,
            self.bug.clone(),
        ))))
    }
}

/// How a plugin asks for the repository.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Make it if there is none.
    Create,
    /// It must be there.
    Existing,
    /// Open it if it is there (a run that pretends).
    IfAny,
}

/// Refuse a relative repository folder once the working folder is no
/// longer the one the run started in: the working folder is the process's,
/// and a plugin that moved it (in `backup-starting`, say) would send the
/// run into a new repository elsewhere, exit 0.
fn refuse_moved_working_folder(url: &std::ffi::OsStr) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    let relative =
        !url.as_bytes().starts_with(b"/") && !url.as_bytes().windows(3).any(|w| w == b"://");
    let Some(Some(started)) = crate::STARTING_FOLDER.get() else {
        return Ok(());
    };
    match std::env::current_dir() {
        Ok(now) if relative && &now != started => Err(Error::msg(format!(
            "the working folder moved from {} to {} since the run started (a plugin moved it): \
             the relative repository {} would lead elsewhere; refusing to open it",
            plugin_api::names::escape_path(started),
            plugin_api::names::escape_path(&now),
            plugin_api::names::escape_path(std::path::Path::new(url))
        ))),
        _ => Ok(()),
    }
}

/// Say that a run created a repository, so that a mistyped `--repository`
/// does not pass unnoticed (the run itself goes on into the new one), and
/// that encryption is chosen now or never.
fn announce_new_repository(repo: &Repository, quiet: bool) {
    let mut url = repo.url().to_string();
    // A relative folder is named in full too: which folder it is depends
    // on where the run was started.
    if !url.starts_with('/') && !url.contains("://") {
        if let Ok(cwd) = std::env::current_dir() {
            let full = plugin_api::live_paths::absolute(&cwd, std::path::Path::new(&url));
            url = format!("{url} ({})", plugin_api::names::escape_path(&full));
        }
    }
    let text = if repo.is_sealed() {
        format!("created a new encrypted repository at {url}")
    } else {
        format!(
            "created a new repository at {url}; it is not encrypted \
             (to encrypt a new repository, give --encrypt to its first backup)"
        )
    };
    crate::output::notice(&text, quiet);
}

/// The `ssh-key` file, as the name ssh is given: text. OpenDAL's sftp
/// store takes the name of the key file as a string, so a name that is not
/// UTF-8 cannot reach ssh; refused naming where it came from.
fn ssh_key(values: &Values) -> Result<Option<String>, Error> {
    let Some(path) = values.path("ssh-key") else {
        return Ok(None);
    };
    match path.to_str() {
        Some(text) => Ok(Some(text.to_string())),
        None => Err(Error::msg(format!(
            "{}: \"{}\" is not UTF-8 text, which ssh needs the name of a key file to be \
             (give a link to it whose name is)",
            values.origin("ssh-key"),
            plugin_api::names::escape_path(std::path::Path::new(path))
        ))),
    }
}

/// How to open the repository, from the settings.
fn open_options(
    values: &Values,
    create: bool,
    lock_timeout: Duration,
) -> Result<OpenOptions, Error> {
    let positive = |name: &str| match values.get(name) {
        Some(Value::Int(n)) if *n > 0 => Some(*n as u64),
        _ => None,
    };
    Ok(OpenOptions {
        create,
        pack_size: match values.get("pack-size") {
            Some(Value::Bytes(n)) => *n,
            _ => DEFAULT_PACK_SIZE,
        },
        storage: StorageOptions {
            crash_limit: positive("crash-limit"),
            // Checked when the run started (`check_settings`).
            faults: storage_faults(values).map_err(Error::msg)?,
            ssh_key: ssh_key(values)?,
            ssh_host_keys_check: values.string("ssh-host-keys-check").map(str::to_string),
            s3_endpoint: values.string("s3-endpoint").map(str::to_string),
            s3_region: values.string("s3-region").map(str::to_string),
            timeout: positive("storage-timeout").map(Duration::from_secs),
            // Judged where the repository is opened (`root_writes`).
            writes_refused: None,
        },
        lock_timeout,
        weak_tokens: matches!(values.get("testing-weak-tokens"), Some(Value::Bool(true))),
        // Checked when the run started (`check_settings`).
        generation_clock: generation_clock(values).map_err(Error::msg)?,
        // Kept from run to run, so that a run reads from the repository
        // only the index objects written since the last one.
        index_cache: IndexCacheDir::User,
        // And refuse a repository whose config was replaced since.
        known: obnam_repository::known::KnownRepositories::User,
        // Beside it, a remote store's generation and client records.
        cache_records: None,
        new_chunks_in_memory: positive("testing-new-chunks-in-memory")
            .map_or(obnam_repository::upload::NEW_CHUNKS_IN_MEMORY, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        machine_id: values.string("testing-machine-id").map(str::to_string),
        max_tree_len: match values.get("testing-max-tree-size") {
            Some(Value::Bytes(n)) if *n > 0 => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(message: &str) -> Failure {
        Failure {
            kind: FailureKind::Error,
            message: message.into(),
        }
    }

    #[test]
    fn a_third_party_callback_error_names_the_plugin_and_cannot_pose_as_another() {
        let said = |message, bundled| {
            describe_callback_failure(error(message), "mine", bundled, "backup-exclude")
        };
        assert_eq!(
            said("Permission denied", false),
            "plugin 'mine' failed in hook 'backup-exclude': Permission denied"
        );
        // obnam's own plugins' errors are said as they are.
        assert_eq!(said("Permission denied", true), "Permission denied");
        // Another plugin's name at the start does not take the prefix off.
        assert_eq!(
            said("plugin 'encrypt' failed: wrong passphrase", false),
            "plugin 'mine' failed in hook 'backup-exclude': plugin 'encrypt' failed: wrong \
             passphrase"
        );
        // Its own, from a hook deeper down, is not said twice.
        assert_eq!(
            said("plugin 'mine' failed in hook 'inner': no", false),
            "plugin 'mine' failed in hook 'inner': no"
        );
    }
}
