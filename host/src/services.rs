//! The services the host offers to running plugins, behind the ABI's
//! [`HostServices`] trait: settings, hooks, filters, output and progress.
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

use crate::registry::Registry;
use crate::settings::Values;

/// The host as plugins see it during one run.
pub struct Host<'r> {
    registry: &'r Registry,
    values: Values,
    quiet: bool,
}

impl<'r> Host<'r> {
    /// A host over a registry and the effective settings.
    pub fn new(registry: &'r Registry, values: Values) -> Self {
        let quiet = values.boolean("quiet");
        Host {
            registry,
            values,
            quiet,
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

impl HostServices for Host<'_> {
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
        guarded(|| {
            let def = self.filter_hook(hook.as_str())?;
            let mut out = Filtered {
                data,
                tags: RVec::new(),
            };
            for f in &def.filters {
                let encoded = f
                    .filter
                    .encode(self.as_abi(), context, out.data.as_rslice())
                    .into_result()
                    .map_err(|e| {
                        Error::msg(describe_failure(
                            e,
                            &f.plugin,
                            &format!("filter '{}' writing {context}", f.tag),
                        ))
                    })?;
                if let Some(data) = encoded.into_option() {
                    out.data = data;
                    out.tags.push(f.tag.as_str().into());
                }
            }
            Ok(out)
        })
    }

    fn filter_read(
        &self,
        hook: RStr<'_>,
        context: RStr<'_>,
        data: Filtered,
    ) -> AbiResult<RVec<u8>> {
        guarded(|| {
            let def = self.filter_hook(hook.as_str())?;
            let mut bytes = data.data;
            for tag in data.tags.iter().rev() {
                let f = def
                    .filters
                    .iter()
                    .find(|f| f.tag == tag.as_str())
                    .ok_or_else(|| {
                        Error::msg(format!(
                        "object {context} needs the '{tag}' filter; no loaded plugin provides it"
                    ))
                    })?;
                bytes = f
                    .filter
                    .decode(self.as_abi(), context, bytes.as_rslice())
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
        })
    }

    fn output(&self, data: RSlice<'_, u8>) -> AbiResult<()> {
        guarded(|| crate::output::write(data.as_slice()).map_err(Error::from))
    }

    fn status(&self, line: RStr<'_>) {
        let _ = guarded(|| {
            crate::output::status(line.as_str(), self.quiet);
            Ok(())
        });
    }
}

impl Host<'_> {
    fn filter_hook(&self, name: &str) -> Result<&crate::registry::hooks::HookDef, Error> {
        let def =
            self.registry.hooks.by_name(name).ok_or_else(|| {
                Error::msg(format!("no loaded plugin creates filter hook '{name}'"))
            })?;
        if def.kind != plugin_api::abi::HookKind::Filter {
            return Err(Error::msg(format!("hook '{name}' is not a filter hook")));
        }
        Ok(def)
    }
}
