//! The raw, layout-checked boundary between the host and a plugin.
//!
//! Everything in this module is `#[repr(C)]` and derives `StableAbi`, so the
//! host can check, when it loads a library, that the plugin was compiled
//! against a compatible layout of every type that crosses the boundary.
//! Plugin authors never need these types: the safe layer of this crate
//! ([`App`](crate::App), [`Context`](crate::Context), [`export_plugin!`](crate::export_plugin))
//! wraps them. The host uses them directly.
//!
//! Compatibility rules (see `docs/plugin-guide.md`): a new minor version of
//! plugin-api may append fields after the last field of [`PluginMod`] and
//! append trailing methods to the host-implemented traits; anything else is a
//! new major version.

// The sabi_trait macro generates items that trip these lints.
#![allow(non_local_definitions, non_camel_case_types)]

use abi_stable::{
    abi_stability::abi_checking::check_layout_compatibility,
    declare_root_module_statics,
    library::{LibHeader, RootModule},
    package_version_strings, sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::{RMut, RRef, VersionStrings},
    std_types::{RBox, ROption, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::repo_abi::RepositoryBox;

pub use crate::failure::{AbiResult, Failure, FailureKind};

/// The layout of a type that crosses the boundary, as abi_stable records it
/// (hook payloads are checked by it).
pub use abi_stable::type_layout::TypeLayout;

/// The layout of `T`.
pub fn layout_of<T: StableAbi>() -> &'static TypeLayout {
    T::LAYOUT
}

/// Whether a value of layout `found` may be used where layout `expected`
/// is; if not, abi_stable's report of the difference (which may run to
/// many lines).
pub fn check_layout(
    expected: &'static TypeLayout,
    found: &'static TypeLayout,
) -> Result<(), String> {
    check_layout_compatibility(expected, found).map_err(|e| e.to_string())
}

/// The name under which every plugin exports its root module.
pub const ROOT_MODULE_NAME: &str = "obnam_plugin";

/// Log levels as numbers, most severe first (the same order as `tracing`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error = 1,
    /// Warnings and errors.
    Warn = 2,
    /// Informational messages and above.
    Info = 3,
    /// Debugging messages and above.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// The type of a setting, which decides how its text is parsed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// A single string.
    String = 0,
    /// A list of strings.
    StringList = 1,
    /// A boolean.
    Boolean = 2,
    /// A signed integer.
    Integer = 3,
    /// A byte size.
    ByteSize = 4,
    /// One of a fixed set of words.
    Choice = 5,
}

/// A setting a plugin declares.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct SettingSpec {
    /// Its name.
    pub name: RString,
    /// What kind it is.
    pub kind: SettingKind,
    /// Help text shown by `--help`.
    pub help: RString,
    /// Placeholder for the value in `--help`.
    pub metavar: RString,
    /// The default, written as it would be in a config file.
    pub default: ROption<RString>,
    /// The help group it is listed under.
    pub group: RString,
    /// Allowed values of a `Choice` setting; the first is the default
    /// unless `default` says otherwise.
    pub choices: RVec<RString>,
}

/// The value of a setting, as the host parsed it.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum SettingValue {
    /// A string or choice setting with no value.
    Unset,
    /// A single string.
    String(RString),
    /// A list of strings.
    StringList(RVec<RString>),
    /// A boolean.
    Boolean(bool),
    /// A signed integer.
    Integer(i64),
    /// A byte size.
    ByteSize(u64),
}

/// The value of a path setting as bytes, as the host holds it: a Linux
/// path is any bytes but NUL, and a value that is not UTF-8 (a folder named
/// in Latin-1 by an old system) must reach the plugin as it is, which
/// [`SettingValue`]'s strings cannot carry. Since 0.1.12.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum PathValue {
    /// A single path setting with no value.
    Unset,
    /// A single path.
    Path(RVec<u8>),
    /// A list of paths.
    PathList(RVec<RVec<u8>>),
}

/// Where a setting's value came from, so that a plugin's error about it
/// names the place the user must change. Since 0.1.12.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// Nobody set it: the setting's default.
    Default,
    /// An option on the command line.
    CommandLine,
    /// A config file (its path, as bytes) and the line (from 1).
    ConfigFile(RVec<u8>, u64),
    /// An environment variable (its name).
    Environment(RString),
}

/// Whether a hook calls every callback with one payload, or threads data
/// through a chain of filters.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Calls every callback with one payload.
    Plain = 0,
    /// Threads bytes through its filters.
    Filter = 1,
}

/// A hook handle, resolved once by name and then used on hot paths.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HookId(pub u32);

/// A pointer to a hook's payload, valid (and exclusively borrowed) for the
/// duration of one `call_hook` and of each callback it makes. Only
/// plugin-api dereferences it, as the payload type whose layout the host
/// checked when the callback was bound.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PayloadPtr(pub *mut ());

impl PayloadPtr {
    /// A pointer to `payload`, valid while the borrow lasts.
    pub fn from_mut<P>(payload: &mut P) -> Self {
        PayloadPtr((payload as *mut P).cast())
    }
}

/// Data that went through the write side of a filter hook, with the tags of
/// the filters that changed it, in the order they ran.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct Filtered {
    /// The bytes.
    pub data: RVec<u8>,
    /// Tags of the filters that changed the bytes, in the order they ran.
    pub tags: RVec<RString>,
}

/// Services the host offers to a running plugin: settings, hooks, output.
///
/// New methods are only ever appended after the method marked
/// `#[sabi(last_prefix_field)]`, which stays where it is: methods after it
/// are optional, so a plugin built against an older version still loads.
#[sabi_trait]
pub trait HostServices: Send + Sync {
    /// The value of a setting by name.
    fn setting(&self, name: RStr<'_>) -> AbiResult<SettingValue>;

    /// Resolve a hook by name, checking that `payload` (the caller's idea of
    /// the payload's layout) is compatible with the hook's.
    fn resolve_hook(&self, name: RStr<'_>, payload: &'static TypeLayout) -> AbiResult<HookId>;

    /// Call every callback of a plain hook, in priority order, with `payload`.
    ///
    /// `payload` points at a live value of the layout given to `resolve_hook`.
    fn call_hook(&self, hook: HookId, payload: PayloadPtr) -> AbiResult<()>;

    /// Run data through the write side of a filter hook (ascending priority).
    fn filter_write(
        &self,
        hook: RStr<'_>,
        context: RStr<'_>,
        data: RVec<u8>,
    ) -> AbiResult<Filtered>;

    /// Undo a filter chain: the filters named by `tags`, in reverse order.
    fn filter_read(&self, hook: RStr<'_>, context: RStr<'_>, data: Filtered)
        -> AbiResult<RVec<u8>>;

    /// Write bytes to standard output.
    fn output(&self, data: RSlice<'_, u8>) -> AbiResult<()>;

    /// Open the repository named by the `repository` setting; `create`
    /// makes one if there is none. Every call returns the same repository.
    fn repository(&self, create: bool) -> AbiResult<RepositoryBox>;

    /// Show a short, transient status line (progress) unless `--quiet`.
    #[sabi(last_prefix_field)]
    fn status(&self, line: RStr<'_>);

    // Added in 0.1.4 (after the last prefix field: optional to older plugins).
    /// Set the exit code the run ends with if the subcommand returns
    /// successfully (0 to 125; see [`Context::set_exit_code`](crate::Context::set_exit_code)).
    fn set_exit_code(&self, code: i32) -> AbiResult<()>;

    // Added in 0.1.12.
    /// The value of a path setting (or of a string or string-list
    /// setting) as bytes, which need not be UTF-8.
    fn setting_path(&self, name: RStr<'_>) -> AbiResult<PathValue>;

    // Added in 0.1.12.
    /// Where a setting's value came from.
    fn setting_source(&self, name: RStr<'_>) -> AbiResult<SettingSource>;

    // Added in 0.1.23.
    /// The repository, opened as [`repository`](Self::repository) does
    /// without creating it, or `None` if there is no repository at its
    /// location; any other failure (a wrong passphrase, a server that
    /// does not answer) is an error.
    fn repository_if_any(&self) -> AbiResult<ROption<RepositoryBox>>;
}

/// The host services as a plugin receives them.
pub type HostRef<'a> = HostServices_TO<'a, RRef<'a, ()>>;

/// The host's services as the trait object handed to plugins (for the host).
pub fn host_ref<S: HostServices>(services: &S) -> HostRef<'_> {
    HostServices_TO::from_ptr(RRef::new(services), TD_Opaque)
}

/// Where a plugin's log events go: implemented by the host.
#[sabi_trait]
pub trait HostLogger: Send + Sync {
    /// Record one event.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
}

/// Owned host logger, handed to a plugin once at load.
pub type HostLoggerBox = HostLogger_TO<'static, RBox<()>>;

/// A host logger as the owned trait object handed to a plugin (for the host).
pub fn host_logger<L: HostLogger + 'static>(logger: L) -> HostLoggerBox {
    HostLogger_TO::from_value(logger, TD_Opaque)
}

/// A subcommand's implementation.
#[sabi_trait]
pub trait SubcommandHandler: Send + Sync {
    /// Run with the arguments that follow the subcommand name (raw bytes:
    /// file names need not be UTF-8).
    #[sabi(last_prefix_field)]
    fn run(&self, host: HostRef<'_>, args: RVec<RVec<u8>>) -> AbiResult<()>;
}

/// Owned subcommand handler.
pub type SubcommandHandlerBox = SubcommandHandler_TO<'static, RBox<()>>;

/// A callback of a plain hook.
#[sabi_trait]
pub trait HookCallback: Send + Sync {
    /// Called with a pointer to the hook's payload.
    #[sabi(last_prefix_field)]
    fn call(&self, host: HostRef<'_>, payload: PayloadPtr) -> AbiResult<()>;
}

/// Owned hook callback.
pub type HookCallbackBox = HookCallback_TO<'static, RBox<()>>;

/// One filter of a filter hook: a reversible transformation of bytes.
#[sabi_trait]
pub trait Filter: Send + Sync {
    /// Transform `data` on write. `RNone` means "left unchanged" (the host
    /// then records no tag for this filter).
    fn encode(
        &self,
        host: HostRef<'_>,
        context: RStr<'_>,
        data: RSlice<'_, u8>,
    ) -> AbiResult<ROption<RVec<u8>>>;

    /// Undo `encode`.
    #[sabi(last_prefix_field)]
    fn decode(
        &self,
        host: HostRef<'_>,
        context: RStr<'_>,
        data: RSlice<'_, u8>,
    ) -> AbiResult<RVec<u8>>;

    // Added in 0.1.13 (after the last prefix field: a filter of an older
    // plugin answers with this default).
    /// Whether an error that `decode` returns means the bytes it was given
    /// are damaged (they do not decompress, or fail authentication), as
    /// opposed to the filter being unable to work now (a key it cannot
    /// reach, a bug). See [`DataFilter::decode_errors_are_damage`](crate::DataFilter::decode_errors_are_damage).
    fn decode_errors_are_damage(&self) -> bool {
        false
    }
}

/// Owned filter.
pub type FilterBox = Filter_TO<'static, RBox<()>>;

/// What a plugin calls, while being enabled, to register itself.
#[sabi_trait]
pub trait Registrar {
    /// Add a subcommand: its name, argument synopsis, help and handler.
    fn add_subcommand(
        &mut self,
        name: RString,
        synopsis: RString,
        help: RString,
        handler: SubcommandHandlerBox,
    );

    /// Declare a setting.
    fn add_setting(&mut self, spec: SettingSpec);

    /// Create a hook owned by this plugin. For a plain hook `payload` is the
    /// layout of its payload type; filter hooks carry bytes and ignore it.
    fn new_hook(&mut self, name: RString, kind: HookKind, payload: &'static TypeLayout);

    /// Subscribe to a plain hook, created by any plugin in any load order.
    fn add_callback(
        &mut self,
        hook: RString,
        priority: i32,
        payload: &'static TypeLayout,
        callback: HookCallbackBox,
    );

    /// Add a filter to a filter hook; `tag` names it in stored data.
    #[sabi(last_prefix_field)]
    fn add_filter(&mut self, hook: RString, priority: i32, tag: RString, filter: FilterBox);

    // Added in 0.1.5 (after the last prefix field: optional to older plugins).
    /// Say which subcommands a setting this plugin declared belongs to:
    /// their `--help` lists it, the other subcommands' help does not (it is
    /// still accepted everywhere). A setting never scoped is listed under
    /// every subcommand.
    fn set_setting_subcommands(&mut self, setting: RString, subcommands: RVec<RString>);

    // Added in 0.1.11.
    /// Give an integer or byte-size setting this plugin declared the least
    /// and the most it may be, as text the setting's type parses. The host
    /// refuses a value outside before any command runs.
    fn set_setting_range(&mut self, setting: RString, least: RString, most: RString);

    // Added in 0.1.12.
    /// Make a string or string-list setting this plugin declared a path
    /// (or a list of paths): its values are bytes, which need not be UTF-8,
    /// read with [`HostServices::setting_path`].
    fn set_setting_path(&mut self, setting: RString);

    // Added in 0.1.12.
    /// Say that an integer or byte-size setting this plugin declared must
    /// be a multiple of `factor` (text the setting's type parses). The host
    /// refuses another value before any command runs.
    fn set_setting_multiple(&mut self, setting: RString, factor: RString);

    // Added in 0.1.16.
    /// Say how a run of a subcommand this plugin added ends when it fails
    /// before its handler runs, or with an error from it (a bad setting,
    /// config file or plugin folder, a usage error): with `exit_code`
    /// (1 to 125) instead of the host's 1 or 2, and with `stdout_prefix`
    /// and the error as one line on standard output. For a check whose
    /// exit code a monitoring system reads.
    fn set_subcommand_failure(
        &mut self,
        subcommand: RString,
        exit_code: i32,
        stdout_prefix: RString,
    );
}

/// The registrar as a plugin receives it.
pub type RegistrarMut<'a> = Registrar_TO<'a, RMut<'a, ()>>;

/// A registrar as the trait object handed to a plugin's `enable` (for the host).
pub fn registrar<R: Registrar>(registrar: &mut R) -> RegistrarMut<'_> {
    Registrar_TO::from_ptr(RMut::new(registrar), TD_Opaque)
}

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's name, unique among loaded plugins.
    pub name: extern "C" fn() -> RStr<'static>,
    /// The plugin's own version.
    pub version: extern "C" fn() -> RStr<'static>,
    /// Hand the plugin its logger and maximum log level, and install the
    /// plugin-side panic hook. Called once, before `enable`.
    pub init: extern "C" fn(logger: HostLoggerBox, max_level: LogLevel),
    /// Change the maximum log level once the settings are known.
    pub set_log_level: extern "C" fn(max_level: LogLevel),
    /// Register subcommands, settings, hooks and callbacks.
    #[sabi(last_prefix_field)]
    pub enable: extern "C" fn(registrar: RegistrarMut<'_>) -> AbiResult<()>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = ROOT_MODULE_NAME;
    const NAME: &'static str = ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The plugin-api version this crate is (what a plugin records as "built against").
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a plugin library's root module could not be used.
#[derive(Debug)]
pub enum RootModuleError {
    /// The layouts of the types it shares with the host do not fit:
    /// abi_stable's report (which may run to thousands of lines).
    Layout(String),
    /// Anything else (the module's constructor failed, no recorded layout).
    Other(String),
}

/// The root module of the plugin library whose header abi_stable read,
/// after checking that the layouts of the types the plugin and the host
/// share fit (the version numbers are the caller's to check first).
///
/// Compatible releases of plugin-api append methods to the traits the host
/// implements (`Registrar`, `HostServices`, the repository's services), so
/// a plugin built against an older release sees a shorter list of methods
/// than the host has. abi_stable's own check
/// (`LibHeader::init_root_module`) takes the host's layouts as the
/// interface and the library's as the implementation, as for a library
/// that implements everything it shares; it refuses an interface with more
/// trailing methods than the implementation, and so refused every plugin
/// built against an older release once such a method was added. Here the
/// plugin's view is the interface and the host's the implementation: the
/// host must offer at least what the plugin may call. The prefix of every
/// shared trait (the methods up to `#[sabi(last_prefix_field)]`) must still
/// match exactly either way, and the traits a plugin implements
/// (`SubcommandHandler`, `HookCallback`, `Filter`, [`PluginMod`]) never
/// gain methods in a compatible release, which the version check enforces.
pub fn root_module(header: &'static LibHeader) -> Result<PluginModRef, RootModuleError> {
    let Some(plugin) = header.layout() else {
        return Err(RootModuleError::Other(
            "the library records no layout of its root module".into(),
        ));
    };
    check_layout_compatibility(plugin, <PluginModRef as StableAbi>::LAYOUT)
        .map_err(|e| RootModuleError::Layout(e.to_string()))?;
    // SAFETY: `init_root_module_with_unchecked_layout` needs the library's
    // root module to have the layout of `PluginModRef`. It was just
    // checked, every shared type reachable from it included, with the
    // plugin's layout as the interface: the plugin's types are the host's,
    // but for trailing methods of prefix types (trait vtables, the root
    // module) that only one side has. abi_stable reaches those through
    // accessors that check, at run time, whether the other side has them,
    // so a shorter list on either side is never read past its end.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
        .map_err(|e| RootModuleError::Other(e.to_string()))
}
