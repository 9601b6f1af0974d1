//! The registrar a plugin sees while it is being enabled.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RSlice, RStr, RVec},
    StableAbi,
};

use crate::abi::{
    self, AbiResult, FilterBox, Filter_TO, HookCallbackBox, HookCallback_TO, HookKind, HostRef,
    PayloadPtr, RegistrarMut, SubcommandHandlerBox, SubcommandHandler_TO,
};
use crate::guard::guarded;
use crate::hooks::JsonPayload;
use crate::{Context, Error, Result, Setting};

/// A reversible transformation of bytes, added to a filter hook with
/// [`App::add_filter`]. May be called from many threads at once.
pub trait DataFilter: Send + Sync + 'static {
    /// Transform `data` on write; `Ok(None)` leaves it unchanged and records
    /// no tag. `context` names the object being written (kind and id).
    fn encode(&self, ctx: &Context<'_>, context: &str, data: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Undo `encode`.
    fn decode(&self, ctx: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>>;

    /// Whether an error from [`decode`](Self::decode) means that the bytes
    /// it was given are damaged: they do not decompress, or fail
    /// authentication, and would fail the same way on every try. Then the
    /// host treats the object as damaged (a record is left out with a
    /// warning, a file's chunk is a problem of that file). Otherwise (the
    /// default) an error from `decode` stops the run, as a panic does: the
    /// filter cannot work now (a key it cannot reach, a setting missing,
    /// a bug), and taking every object it could not read for damaged
    /// would drop a client's history, or lead the user to remove records
    /// that are sound. Answer `true` only if every error `decode` returns
    /// is about the data. (Since 0.1.13; a filter of an older plugin
    /// counts as answering `false`.)
    fn decode_errors_are_damage(&self) -> bool {
        false
    }
}

/// What a plugin registers itself with: subcommands, settings, hooks and
/// callbacks. Passed to [`Plugin::enable`](crate::Plugin::enable).
pub struct App<'a> {
    registrar: RegistrarMut<'a>,
}

impl<'a> App<'a> {
    #[doc(hidden)]
    pub fn new(registrar: RegistrarMut<'a>) -> Self {
        App { registrar }
    }

    /// Add a subcommand. `synopsis` describes its arguments (`[DIRECTORY]...`);
    /// the handler receives them as given (file names need not be UTF-8).
    pub fn add_subcommand<F>(&mut self, name: &str, synopsis: &str, help: &str, handler: F)
    where
        F: Fn(&Context<'_>, Vec<OsString>) -> Result<()> + Send + Sync + 'static,
    {
        let handler: SubcommandHandlerBox =
            SubcommandHandler_TO::from_value(SubcommandImpl(handler), TD_Opaque);
        self.registrar
            .add_subcommand(name.into(), synopsis.into(), help.into(), handler);
    }

    /// Say how a run of `subcommand` (one this plugin adds) ends when it
    /// fails outside what the handler decides: a bad setting, config file
    /// or plugin folder, a usage error, or an error the handler returns.
    /// It exits with `exit_code` (1 to 125) instead of the host's 1 or 2,
    /// and prints `stdout_prefix` and the error's first line on standard
    /// output (the whole error is on standard error). A Nagios check says
    /// `(3, "OBNAM UNKNOWN: ")`: whatever went wrong, Nagios reads
    /// UNKNOWN. (Since 0.1.16; an older host ignores it.)
    pub fn set_subcommand_failure(
        &mut self,
        subcommand: &str,
        exit_code: i32,
        stdout_prefix: &str,
    ) {
        self.registrar
            .set_subcommand_failure(subcommand.into(), exit_code, stdout_prefix.into());
    }

    /// Declare a setting.
    pub fn add_setting(&mut self, setting: Setting) {
        let parts = setting.into_parts();
        let name = parts.spec.name.clone();
        self.registrar.add_setting(parts.spec);
        // Before the range and the factor: those are checked against the
        // default, which a path setting parses as a path.
        if parts.path {
            self.registrar.set_setting_path(name.clone());
        }
        if !parts.subcommands.is_empty() {
            self.registrar.set_setting_subcommands(
                name.clone(),
                parts.subcommands.into_iter().map(Into::into).collect(),
            );
        }
        if let Some((least, most)) = parts.range {
            self.registrar
                .set_setting_range(name.clone(), least.into(), most.into());
        }
        if let Some(factor) = parts.multiple_of {
            self.registrar.set_setting_multiple(name, factor.into());
        }
    }

    /// Create a plain hook whose payload type is `P`.
    pub fn new_hook<P: StableAbi>(&mut self, name: &str) {
        self.registrar
            .new_hook(name.into(), HookKind::Plain, P::LAYOUT);
    }

    /// Create a plain hook whose payload is JSON.
    pub fn new_json_hook(&mut self, name: &str) {
        self.new_hook::<JsonPayload>(name);
    }

    /// Create a filter hook.
    pub fn new_filter_hook(&mut self, name: &str) {
        self.registrar
            .new_hook(name.into(), HookKind::Filter, <()>::LAYOUT);
    }

    /// Subscribe to a plain hook with payload type `P`. The hook may be
    /// created by any plugin, loaded before or after this one. Callbacks of
    /// equal priority run in the order they were added. The callback may be
    /// called from several threads at once.
    pub fn add_callback<P, F>(&mut self, hook: &str, priority: i32, callback: F)
    where
        P: StableAbi + 'static,
        F: Fn(&Context<'_>, &mut P) -> Result<()> + Send + Sync + 'static,
    {
        let callback: HookCallbackBox = HookCallback_TO::from_value(
            CallbackImpl::<P, F> {
                f: callback,
                _payload: std::marker::PhantomData,
            },
            TD_Opaque,
        );
        self.registrar
            .add_callback(hook.into(), priority, P::LAYOUT, callback);
    }

    /// Subscribe to a hook whose payload is JSON.
    pub fn add_json_callback<F>(&mut self, hook: &str, priority: i32, callback: F)
    where
        F: Fn(&Context<'_>, &mut serde_json::Value) -> Result<()> + Send + Sync + 'static,
    {
        let name = hook.to_string();
        self.add_callback::<JsonPayload, _>(hook, priority, move |ctx, payload| {
            let mut value: serde_json::Value = serde_json::from_str(&payload.json)
                .map_err(|e| Error::msg(format!("hook {name}: payload is not JSON: {e}")))?;
            callback(ctx, &mut value)?;
            payload.json = value.to_string().into();
            Ok(())
        });
    }

    /// Add a filter to a filter hook. `tag` names the filter in stored data,
    /// so it must never change once data has been written with it: 1 to
    /// 255 bytes of printable ASCII (the host drops a filter with another
    /// tag, with a warning).
    pub fn add_filter<F: DataFilter>(&mut self, hook: &str, priority: i32, tag: &str, filter: F) {
        let filter: FilterBox = Filter_TO::from_value(FilterImpl(filter), TD_Opaque);
        self.registrar
            .add_filter(hook.into(), priority, tag.into(), filter);
    }
}

struct SubcommandImpl<F>(F);

impl<F> abi::SubcommandHandler for SubcommandImpl<F>
where
    F: Fn(&Context<'_>, Vec<OsString>) -> Result<()> + Send + Sync + 'static,
{
    fn run(&self, host: HostRef<'_>, args: RVec<RVec<u8>>) -> AbiResult<()> {
        guarded(|| {
            let ctx = Context::new(host);
            let args = args
                .into_iter()
                .map(|a| OsString::from_vec(a.into_vec()))
                .collect();
            (self.0)(&ctx, args)
        })
    }
}

struct CallbackImpl<P, F> {
    f: F,
    _payload: std::marker::PhantomData<fn(&mut P)>,
}

impl<P, F> abi::HookCallback for CallbackImpl<P, F>
where
    P: StableAbi + 'static,
    F: Fn(&Context<'_>, &mut P) -> Result<()> + Send + Sync + 'static,
{
    fn call(&self, host: HostRef<'_>, payload: PayloadPtr) -> AbiResult<()> {
        guarded(|| {
            // SAFETY: the host calls a callback only with a pointer to a live,
            // exclusively borrowed payload of the hook it was bound to, and it
            // bound this callback only after checking that the hook's payload
            // layout is compatible with `P::LAYOUT` (given in `add_callback`).
            let payload = unsafe { &mut *(payload.0 as *mut P) };
            (self.f)(&Context::new(host), payload)
        })
    }
}

struct FilterImpl<F>(F);

impl<F: DataFilter> abi::Filter for FilterImpl<F> {
    fn encode(
        &self,
        host: HostRef<'_>,
        context: RStr<'_>,
        data: RSlice<'_, u8>,
    ) -> AbiResult<ROption<RVec<u8>>> {
        guarded(|| {
            let out = self
                .0
                .encode(&Context::new(host), context.as_str(), data.as_slice())?;
            Ok(out.map(RVec::from).into())
        })
    }

    fn decode(
        &self,
        host: HostRef<'_>,
        context: RStr<'_>,
        data: RSlice<'_, u8>,
    ) -> AbiResult<RVec<u8>> {
        guarded(|| {
            let out = self
                .0
                .decode(&Context::new(host), context.as_str(), data.as_slice())?;
            Ok(RVec::from(out))
        })
    }

    fn decode_errors_are_damage(&self) -> bool {
        self.0.decode_errors_are_damage()
    }
}
