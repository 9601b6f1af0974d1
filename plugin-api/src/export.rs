//! Exporting a plugin from a `cdylib`: the [`export_plugin!`](crate::export_plugin) macro
//! and the functions it fills the root module with.

use abi_stable::prefix_type::PrefixTypeTrait;

use crate::abi::{AbiResult, HostLoggerBox, LogLevel, PluginMod, PluginModRef, RegistrarMut};
use crate::{guard, logging, App, Plugin};

/// The symbol the host looks up in a plugin library. It must equal
/// `abi_stable::library::ROOT_MODULE_LOADER_NAME` (a unit test checks it);
/// it is spelled out because `#[export_name]` needs a literal.
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_symbol {
    () => {
        "_1as_0lib_1header_0root_bmodule_bloader"
    };
}

/// Export a plugin from a `cdylib` crate.
///
/// `$name` is the plugin's name (unique among loaded plugins, shown by
/// `obnam plugins`); `$plugin`, if given, is a type implementing [`Plugin`]
/// and `Default`, whose `enable` registers by hand. Whatever the plugin
/// declared with [`submit!`](crate::submit) is registered too (after
/// `enable`). The plugin's version is its crate's `CARGO_PKG_VERSION`.
///
/// ```ignore
/// plugin_api::export_plugin!("hello", HelloPlugin); // enable, and declarations
/// plugin_api::export_plugin!("hello");              // declarations only
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($name:expr $(,)?) => {
        $crate::export_plugin!($name, $crate::__private::DeclarationsOnly);
    };
    ($name:expr, $plugin:ty $(,)?) => {
        #[doc(hidden)]
        #[unsafe(export_name = $crate::__root_module_symbol!())]
        pub static OBNAM_PLUGIN_LIB_HEADER: $crate::__private::LibHeader = {
            extern "C" fn name() -> $crate::__private::RStr<'static> {
                $crate::__private::RStr::from_str($name)
            }
            extern "C" fn version() -> $crate::__private::RStr<'static> {
                $crate::__private::RStr::from_str(::core::env!("CARGO_PKG_VERSION"))
            }
            extern "C" fn enable(
                registrar: $crate::abi::RegistrarMut<'_>,
            ) -> $crate::abi::AbiResult<()> {
                $crate::__private::enable::<$plugin>(registrar)
            }
            fn module() -> $crate::abi::PluginModRef {
                $crate::__private::module(name, version, enable)
            }
            extern "C" fn constructor() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(module)
            }
            // SAFETY: `constructor` returns the erased `PluginModRef` built by
            // `module`, which is what `from_constructor::<PluginModRef>` requires.
            unsafe { $crate::__private::lib_header::<$crate::abi::PluginModRef>(constructor) }
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{LibHeader, RootModuleResult};
    pub use abi_stable::std_types::RStr;
    pub use inventory;

    use super::*;

    /// Build the library header of a plugin.
    ///
    /// # Safety
    /// `constructor` must return an erased `M` (see `LibHeader::from_constructor`).
    pub const unsafe fn lib_header<M: abi_stable::library::RootModule>(
        constructor: extern "C" fn() -> RootModuleResult,
    ) -> LibHeader {
        // SAFETY: forwarded from this function's own contract.
        unsafe {
            LibHeader::from_constructor::<M>(constructor, abi_stable::library::CheckTypeLayout::Yes)
        }
    }

    /// Run the root-module constructor, turning a panic into an error.
    pub fn call_root_module_loader(module: fn() -> PluginModRef) -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(module)
    }

    /// The root module of a plugin.
    pub fn module(
        name: extern "C" fn() -> RStr<'static>,
        version: extern "C" fn() -> RStr<'static>,
        enable: extern "C" fn(RegistrarMut<'_>) -> AbiResult<()>,
    ) -> PluginModRef {
        guard::set_plugin_name(name().as_str());
        PluginMod {
            name,
            version,
            init,
            set_log_level,
            enable,
        }
        .leak_into_prefix()
    }

    /// Enable a plugin of type `P`: its own registrations, then its
    /// declarations.
    pub fn enable<P: Plugin + Default>(registrar: RegistrarMut<'_>) -> AbiResult<()> {
        guard::guarded(|| {
            let plugin = P::default();
            let mut app = App::new(registrar);
            plugin.enable(&mut app)?;
            crate::declare::register_all(&mut app);
            Ok(())
        })
    }

    /// The plugin of `export_plugin!(NAME)`: it registers only what was
    /// declared with `submit!`.
    #[derive(Default)]
    pub struct DeclarationsOnly;

    impl Plugin for DeclarationsOnly {
        fn enable(&self, _: &mut App<'_>) -> crate::Result<()> {
            Ok(())
        }
    }

    extern "C" fn init(logger: HostLoggerBox, max_level: LogLevel) {
        guard::install_panic_hook();
        logging::install(logger, max_level);
    }

    extern "C" fn set_log_level(max_level: LogLevel) {
        logging::set_max_level(max_level);
    }
}
