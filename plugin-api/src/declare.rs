//! Declarative registration: a plugin marks each subcommand, setting, hook,
//! callback and filter where it is defined, with [`submit!`](crate::submit),
//! and [`export_plugin!`](crate::export_plugin) registers them all when the
//! host enables the plugin.
//!
//! ```ignore
//! use plugin_api::declare::{AddCallback, AddSetting, AddSubcommand};
//! use plugin_api::payloads::{ExcludeCandidate, BACKUP_EXCLUDE};
//! use plugin_api::{Context, Result, Setting, PRIORITY_DEFAULT};
//!
//! plugin_api::submit!(AddSetting::new(|| {
//!     Setting::string("greeting").default("hello").help("what to say")
//! }));
//!
//! plugin_api::submit!(AddSubcommand::new("hello", "[NAME]...", "greet people", hello));
//! fn hello(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
//!     let greeting = ctx.string("greeting")?.unwrap_or_default();
//!     for name in args {
//!         ctx.outln(&format!("{greeting}, {}", name.to_string_lossy()))?;
//!     }
//!     Ok(())
//! }
//!
//! plugin_api::submit!(AddCallback::new(BACKUP_EXCLUDE, PRIORITY_DEFAULT, skip_core_files));
//! fn skip_core_files(_: &Context<'_>, candidate: &mut ExcludeCandidate) -> Result<()> {
//!     if candidate.path().file_name() == Some("core".as_ref()) {
//!         candidate.exclude_because("a core dump");
//!     }
//!     Ok(())
//! }
//!
//! plugin_api::export_plugin!("hello");
//! ```
//!
//! How it works: [`submit!`](crate::submit) places a [`Declaration`] in a
//! registry of the `inventory` crate, which the library's constructors fill
//! when the host loads it (each plugin library has a registry of its own).
//! The plugin's entry point registers them after its [`Plugin::enable`]
//! (if it has one), so the two styles mix: a plugin may declare most things
//! and register a few by hand, where a registration depends on another.
//!
//! The order of declarations in the source does not survive linking, so
//! they are registered in an order of their own: hooks, then settings
//! (by name), subcommands (by name), callbacks and filters (by hook, then
//! priority). Callbacks of one plugin on one hook with the same priority
//! run in an unspecified order: give them different priorities if the
//! order matters.
//!
//! [`Plugin::enable`]: crate::Plugin::enable

use std::ffi::OsString;
use std::marker::PhantomData;

use abi_stable::StableAbi;

use crate::{App, Context, DataFilter, Result, Setting};

/// Something a plugin declares, to be registered when it is enabled.
pub trait Declared: Sync {
    /// Register it.
    fn register(&self, app: &mut App<'_>);

    /// Where it goes in the order of registration (see the module docs).
    fn order(&self) -> (u8, String, i32);
}

/// One declaration, as [`submit!`](crate::submit) records it.
pub struct Declaration {
    /// The declared item (set by the `submit!` macro, which needs the
    /// field public to build the value in a static).
    #[doc(hidden)]
    pub declared: &'static dyn Declared,
}

inventory::collect!(Declaration);

/// Declare a subcommand, setting, hook, callback or filter where it is
/// defined; [`export_plugin!`](crate::export_plugin) registers it. The
/// argument is one of this module's declarations
/// ([`AddSubcommand`](crate::declare::AddSubcommand),
/// [`AddSetting`](crate::declare::AddSetting),
/// [`AddCallback`](crate::declare::AddCallback), ...). Place it outside any
/// function, once per declaration.
#[macro_export]
macro_rules! submit {
    ($declared:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::declare::Declaration { declared: &$declared }
        }
    };
}

/// Register every declaration of this library, in the order the module
/// docs give.
pub(crate) fn register_all(app: &mut App<'_>) {
    let mut all: Vec<&'static dyn Declared> = inventory::iter::<Declaration>
        .into_iter()
        .map(|d| d.declared)
        .collect();
    all.sort_by_cached_key(|d| d.order());
    for declared in all {
        declared.register(app);
    }
}

const HOOKS: u8 = 0;
const SETTINGS: u8 = 1;
const SUBCOMMANDS: u8 = 2;
const CALLBACKS: u8 = 3;

/// A subcommand: [`App::add_subcommand`] with a function.
pub struct AddSubcommand {
    name: &'static str,
    synopsis: &'static str,
    help: &'static str,
    run: fn(&Context<'_>, Vec<OsString>) -> Result<()>,
}

impl AddSubcommand {
    /// A subcommand `name` whose arguments are described by `synopsis`.
    pub const fn new(
        name: &'static str,
        synopsis: &'static str,
        help: &'static str,
        run: fn(&Context<'_>, Vec<OsString>) -> Result<()>,
    ) -> Self {
        AddSubcommand {
            name,
            synopsis,
            help,
            run,
        }
    }
}

impl Declared for AddSubcommand {
    fn register(&self, app: &mut App<'_>) {
        app.add_subcommand(self.name, self.synopsis, self.help, self.run);
    }

    fn order(&self) -> (u8, String, i32) {
        (SUBCOMMANDS, self.name.into(), 0)
    }
}

/// A setting: [`App::add_setting`] with what `make` builds (the builder
/// is not `const`, so it runs when the plugin is enabled).
pub struct AddSetting {
    make: fn() -> Setting,
}

impl AddSetting {
    /// The setting `make` builds.
    pub const fn new(make: fn() -> Setting) -> Self {
        AddSetting { make }
    }
}

impl Declared for AddSetting {
    fn register(&self, app: &mut App<'_>) {
        app.add_setting((self.make)());
    }

    fn order(&self) -> (u8, String, i32) {
        (SETTINGS, (self.make)().name().to_string(), 0)
    }
}

/// A callback on a plain hook with payload `P`: [`App::add_callback`].
pub struct AddCallback<P: 'static> {
    hook: &'static str,
    priority: i32,
    run: fn(&Context<'_>, &mut P) -> Result<()>,
}

impl<P: 'static> AddCallback<P> {
    /// Call `run` from `hook` at `priority`.
    pub const fn new(
        hook: &'static str,
        priority: i32,
        run: fn(&Context<'_>, &mut P) -> Result<()>,
    ) -> Self {
        AddCallback {
            hook,
            priority,
            run,
        }
    }
}

impl<P: StableAbi + 'static> Declared for AddCallback<P> {
    fn register(&self, app: &mut App<'_>) {
        app.add_callback::<P, _>(self.hook, self.priority, self.run);
    }

    fn order(&self) -> (u8, String, i32) {
        (CALLBACKS, self.hook.into(), self.priority)
    }
}

/// A callback on a JSON hook: [`App::add_json_callback`].
pub struct AddJsonCallback {
    hook: &'static str,
    priority: i32,
    run: fn(&Context<'_>, &mut serde_json::Value) -> Result<()>,
}

impl AddJsonCallback {
    /// Call `run` from `hook` at `priority`.
    pub const fn new(
        hook: &'static str,
        priority: i32,
        run: fn(&Context<'_>, &mut serde_json::Value) -> Result<()>,
    ) -> Self {
        AddJsonCallback {
            hook,
            priority,
            run,
        }
    }
}

impl Declared for AddJsonCallback {
    fn register(&self, app: &mut App<'_>) {
        app.add_json_callback(self.hook, self.priority, self.run);
    }

    fn order(&self) -> (u8, String, i32) {
        (CALLBACKS, self.hook.into(), self.priority)
    }
}

/// A filter on a filter hook: [`App::add_filter`] with what `make` builds.
pub struct AddFilter<F: 'static> {
    hook: &'static str,
    priority: i32,
    tag: &'static str,
    make: fn() -> F,
}

impl<F: 'static> AddFilter<F> {
    /// The filter `make` builds, on `hook` at `priority`, named `tag` in
    /// stored data (which must never change once data was written with it).
    pub const fn new(
        hook: &'static str,
        priority: i32,
        tag: &'static str,
        make: fn() -> F,
    ) -> Self {
        AddFilter {
            hook,
            priority,
            tag,
            make,
        }
    }
}

impl<F: DataFilter> Declared for AddFilter<F> {
    fn register(&self, app: &mut App<'_>) {
        app.add_filter(self.hook, self.priority, self.tag, (self.make)());
    }

    fn order(&self) -> (u8, String, i32) {
        (CALLBACKS, self.hook.into(), self.priority)
    }
}

/// A plain hook whose payload is `P`: [`App::new_hook`].
pub struct NewHook<P: 'static> {
    name: &'static str,
    payload: PhantomData<fn(&mut P)>,
}

impl<P: 'static> NewHook<P> {
    /// The hook `name`.
    pub const fn new(name: &'static str) -> Self {
        NewHook {
            name,
            payload: PhantomData,
        }
    }
}

impl<P: StableAbi + 'static> Declared for NewHook<P> {
    fn register(&self, app: &mut App<'_>) {
        app.new_hook::<P>(self.name);
    }

    fn order(&self) -> (u8, String, i32) {
        (HOOKS, self.name.into(), 0)
    }
}

/// A plain hook whose payload is JSON: [`App::new_json_hook`].
pub struct NewJsonHook {
    name: &'static str,
}

impl NewJsonHook {
    /// The hook `name`.
    pub const fn new(name: &'static str) -> Self {
        NewJsonHook { name }
    }
}

impl Declared for NewJsonHook {
    fn register(&self, app: &mut App<'_>) {
        app.new_json_hook(self.name);
    }

    fn order(&self) -> (u8, String, i32) {
        (HOOKS, self.name.into(), 0)
    }
}

/// A filter hook: [`App::new_filter_hook`].
pub struct NewFilterHook {
    name: &'static str,
}

impl NewFilterHook {
    /// The hook `name`.
    pub const fn new(name: &'static str) -> Self {
        NewFilterHook { name }
    }
}

impl Declared for NewFilterHook {
    fn register(&self, app: &mut App<'_>) {
        app.new_filter_hook(self.name);
    }

    fn order(&self) -> (u8, String, i32) {
        (HOOKS, self.name.into(), 0)
    }
}
