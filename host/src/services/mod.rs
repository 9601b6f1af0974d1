//! The services the host offers to running plugins, behind the ABI's
//! [`HostServices`] trait: settings, hooks, filters, output, progress, and
//! the repository ([`repository`]).
//!
//! Every method runs inside [`guarded`], so a bug in the host surfaces in
//! the plugin as an error rather than a panic unwinding through `extern "C"`.

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{RSlice, RStr, RVec},
    type_layout::TypeLayout,
};
use plugin_api::abi::{
    AbiResult, Failure, FailureKind, Filtered, HookId, HostRef, HostServices, HostServices_TO,
    PayloadPtr, SettingValue,
};
use plugin_api::guard::guarded;
use plugin_api::Error;

pub mod repository;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use abi_stable::std_types::{RArc, RString};
use obnam_repository::storage::StorageOptions;
use obnam_repository::{OpenOptions, Repository};
use plugin_api::repo_abi::{RepositoryBox, RepositoryService_TO};

use crate::registry::hooks::{FilterEntry, HookDef};
use crate::registry::Registry;
use crate::settings::{Value, Values};
use repository::{HookFilter, RepoService};

/// The host as plugins see it during one run. There is one per process,
/// made by [`Host::install`] and living to the end of the process.
pub struct Host {
    registry: &'static Registry,
    values: Values,
    quiet: bool,
    repository: Mutex<Option<Arc<Repository>>>,
    /// This host, for the repository's data filters, which call plugins.
    myself: OnceLock<&'static Host>,
}

impl Host {
    /// The process's host over a registry and the effective settings.
    pub fn install(registry: &'static Registry, values: Values) -> &'static Host {
        let quiet = values.boolean("quiet");
        let host: &'static Host = Box::leak(Box::new(Host {
            registry,
            values,
            quiet,
            repository: Mutex::new(None),
            myself: OnceLock::new(),
        }));
        let _ = host.myself.set(host);
        host
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
        HostServices_TO::from_ptr(RRef::new(self), TD_Opaque)
    }

    /// The effective settings.
    pub fn values(&self) -> &Values {
        &self.values
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

impl HostServices for Host {
    fn setting(&self, name: RStr<'_>) -> AbiResult<SettingValue> {
        guarded(|| {
            self.values
                .get(name.as_str())
                .map(|v| v.to_abi())
                .ok_or_else(|| Error::msg(format!("there is no setting '{name}'")))
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
            for cb in &def.callbacks {
                // The payload pointer is passed on unchanged: the caller
                // holds it for the duration of this call, and every bound
                // callback was checked for the hook's payload layout.
                cb.callback
                    .call(self.as_abi(), payload)
                    .into_result()
                    .map_err(|f| {
                        Error::msg(describe_failure(
                            f,
                            &cb.plugin,
                            &format!("hook '{}'", def.name),
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
        guarded(|| crate::output::write(data.as_slice()).map_err(Error::from))
    }

    fn repository(&self, create: bool) -> AbiResult<RepositoryBox> {
        guarded(|| self.open_repository(create))
    }

    fn status(&self, line: RStr<'_>) {
        let _ = guarded(|| {
            crate::output::status(line.as_str(), self.quiet);
            Ok(())
        });
    }
}

impl Host {
    fn filter_hook(&self, name: &str) -> Result<&HookDef, Error> {
        let def =
            self.registry.hooks.by_name(name).ok_or_else(|| {
                Error::msg(format!("no loaded plugin creates filter hook '{name}'"))
            })?;
        if def.kind != plugin_api::abi::HookKind::Filter {
            return Err(Error::msg(format!("hook '{name}' is not a filter hook")));
        }
        Ok(def)
    }

    /// Whether any plugin adds a filter to a filter hook.
    pub fn has_filters(&self, hook: &str) -> bool {
        self.registry
            .hooks
            .by_name(hook)
            .is_some_and(|h| !h.filters.is_empty())
    }

    /// Run data through a filter hook's write side (ascending priority),
    /// leaving out the filter tagged `skip`.
    pub fn run_filter_write(
        &self,
        hook: &str,
        context: &str,
        data: RVec<u8>,
        skip: Option<&str>,
    ) -> Result<Filtered, Error> {
        let def = self.filter_hook(hook)?;
        let mut out = Filtered {
            data,
            tags: RVec::new(),
        };
        for f in def.filters.iter().filter(|f| Some(f.tag.as_str()) != skip) {
            if let Some(data) = self.encode_with(f, context, out.data.as_rslice())? {
                out.data = data;
                out.tags.push(f.tag.as_str().into());
            }
        }
        Ok(out)
    }

    /// Run data through one filter of a filter hook, the one tagged `tag`.
    pub fn run_one_filter(
        &self,
        hook: &str,
        tag: &str,
        context: &str,
        data: &[u8],
    ) -> Result<Option<RVec<u8>>, Error> {
        let def = self.filter_hook(hook)?;
        let f = def.filters.iter().find(|f| f.tag == tag).ok_or_else(|| {
            Error::msg(obnam_repository::object::missing_filter_message(
                &format!("object {context}"),
                tag,
            ))
        })?;
        self.encode_with(f, context, RSlice::from_slice(data))
    }

    /// The write side of one filter; `None` if it left the data alone.
    fn encode_with(
        &self,
        f: &FilterEntry,
        context: &str,
        data: RSlice<'_, u8>,
    ) -> Result<Option<RVec<u8>>, Error> {
        let encoded = f
            .filter
            .encode(self.as_abi(), RStr::from_str(context), data)
            .into_result()
            .map_err(|e| {
                Error::msg(describe_failure(
                    e,
                    &f.plugin,
                    &format!("filter '{}' writing {context}", f.tag),
                ))
            })?;
        Ok(encoded.into_option())
    }

    /// Whether a filter hook has a filter tagged `tag`.
    pub fn has_filter(&self, hook: &str, tag: &str) -> bool {
        self.registry
            .hooks
            .by_name(hook)
            .is_some_and(|h| h.filters.iter().any(|f| f.tag == tag))
    }

    /// Call a plain hook whose payload is JSON, from the host; returns the
    /// document as the callbacks left it.
    pub fn call_json_hook(
        &self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let layout = <plugin_api::JsonPayload as abi_stable::StableAbi>::LAYOUT;
        let id = self
            .registry
            .hooks
            .resolve(name, layout)
            .map_err(Error::msg)?;
        let mut payload = plugin_api::JsonPayload {
            json: value.to_string().into(),
        };
        let ptr = PayloadPtr(&mut payload as *mut plugin_api::JsonPayload as *mut ());
        self.call_hook(id, ptr)
            .into_result()
            .map_err(|f| Error::msg(f.message))?;
        serde_json::from_str(&payload.json).map_err(|e| {
            Error::msg(format!(
                "hook {name}: a callback left a payload that is not JSON: {e}"
            ))
        })
    }

    /// Undo a filter chain: the filters named by `tags`, last first.
    pub fn run_filter_read(
        &self,
        hook: &str,
        context: &str,
        data: RVec<u8>,
        tags: &[String],
    ) -> Result<RVec<u8>, Error> {
        let def = self.filter_hook(hook)?;
        let mut bytes = data;
        for tag in tags.iter().rev() {
            let f = def.filters.iter().find(|f| &f.tag == tag).ok_or_else(|| {
                Error::msg(format!(
                    "object {context} needs the '{tag}' filter; no loaded plugin provides it"
                ))
            })?;
            bytes = f
                .filter
                .decode(self.as_abi(), RStr::from_str(context), bytes.as_rslice())
                .into_result()
                .map_err(|e| {
                    Error::msg(describe_failure(
                        e,
                        &f.plugin,
                        &format!("filter '{}' reading {context}", f.tag),
                    ))
                })?;
        }
        Ok(bytes)
    }

    fn open_repository(&self, create: bool) -> Result<RepositoryBox, Error> {
        let host = *self
            .myself
            .get()
            .ok_or_else(|| Error::msg("the host was not installed"))?;
        let lock_timeout = match self.values.get("lock-timeout") {
            Some(Value::Int(n)) => Duration::from_secs((*n).max(0) as u64),
            _ => Duration::from_secs(60),
        };
        let mut slot = self.repository.lock().unwrap_or_else(|e| e.into_inner());
        let repo = match slot.as_ref() {
            Some(repo) => repo.clone(),
            None => {
                let url = self.values.string("repository").ok_or_else(|| {
                    Error::msg(
                        "No --repository setting. You need to give it on the command line or in a configuration file",
                    )
                })?;
                let options = OpenOptions {
                    create,
                    pack_size: match self.values.get("pack-size") {
                        Some(Value::Bytes(n)) => *n,
                        _ => obnam_repository::DEFAULT_PACK_SIZE,
                    },
                    storage: StorageOptions {
                        crash_limit: match self.values.get("crash-limit") {
                            Some(Value::Int(n)) if *n > 0 => Some(*n as u64),
                            _ => None,
                        },
                        // Checked when the run started (`lib.rs`).
                        faults: crate::host_settings::storage_faults(&self.values)
                            .map_err(Error::msg)?,
                        ssh_key: self.values.string("ssh-key").map(str::to_string),
                        ssh_host_keys_check: self
                            .values
                            .string("ssh-host-keys-check")
                            .map(str::to_string),
                        s3_endpoint: self.values.string("s3-endpoint").map(str::to_string),
                        s3_region: self.values.string("s3-region").map(str::to_string),
                        timeout: match self.values.get("storage-timeout") {
                            Some(Value::Int(n)) if *n > 0 => Some(Duration::from_secs(*n as u64)),
                            _ => None,
                        },
                    },
                    lock_timeout,
                    weak_tokens: matches!(
                        self.values.get("testing-weak-tokens"),
                        Some(Value::Bool(true))
                    ),
                };
                let filter = Arc::new(HookFilter { host });
                let repo = Arc::new(Repository::open(url, &options, filter).map_err(Error::msg)?);
                *slot = Some(repo.clone());
                repo
            }
        };
        Ok(RepositoryService_TO::from_ptr(
            RArc::new(RepoService { repo, lock_timeout }),
            TD_Opaque,
        ))
    }
}
