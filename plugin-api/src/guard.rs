//! Keeping panics on their own side of the boundary.
//!
//! A panic that unwinds into an `extern "C"` function aborts the process
//! (abi_stable turns it into "Attempted to panic across the ffi boundary").
//! So every call the host makes into a plugin runs inside [`guarded`], which
//! catches the panic on the plugin's side and returns it as a
//! [`FailureKind::Panic`](crate::abi::FailureKind) failure. The plugin's
//! standard library is its own copy, with its own panic hook: [`install_panic_hook`]
//! replaces it with one that records the message and location instead of
//! printing them, so no Rust panic text ever reaches the user. A panic that
//! nothing on its thread will catch (in a thread the plugin started
//! itself, outside [`catch_panic`]) is not recorded but reported, as an
//! error in the host's log and on standard error: else it left no trace.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use abi_stable::std_types::RResult;

use crate::abi::{AbiResult, Failure};
use crate::Error;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// How many [`guarded`] or [`catch_panic`] calls are running on this
    /// thread, one inside another: whether a panic here will be caught.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// This library's plugin name, for reports of its panics.
static PLUGIN_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record this library's plugin name (when the host loads it).
pub(crate) fn set_plugin_name(name: &str) {
    let _ = PLUGIN_NAME.set(name.to_string());
}

/// Run `f` counted in [`CATCHING`].
fn catching<T>(f: impl FnOnce() -> T) -> T {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = f();
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    result
}

/// Install (once per library) a panic hook that records the panic instead of printing it.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            let text = match info.location() {
                Some(loc) => format!("{message} (at {}:{})", loc.file(), loc.line()),
                None => message,
            };
            // Built with `panic = "abort"` (against the plugin guide), the
            // process ends right after this hook: nothing would ever
            // report the panic, so it is said now.
            if cfg!(panic = "abort") {
                let plugin = PLUGIN_NAME.get().map_or("?", String::as_str);
                eprintln!(
                    "ERROR: plugin '{plugin}' panicked: {text}; it was built with \
                     panic = \"abort\", so obnam stops at once (rebuild it to unwind)"
                );
                return;
            }
            if CATCHING.with(Cell::get) > 0 {
                LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(text));
                return;
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("unnamed");
            let plugin = PLUGIN_NAME.get().map_or("?", String::as_str);
            let said =
                format!("plugin '{plugin}' panicked in a thread of its own ('{name}'): {text}");
            if crate::logging::is_installed() {
                tracing::error!("{said}");
            } else {
                eprintln!("ERROR: {said}");
            }
        }));
    });
}

/// Run `f`, turning both its error and any panic into a boundary [`Failure`].
pub fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> AbiResult<T> {
    match catching(|| panic::catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(err)) => RResult::RErr(err.into_failure()),
        Err(_) => {
            let message = LAST_PANIC
                .with(|slot| slot.borrow_mut().take())
                .unwrap_or_else(|| "panic with no message".to_string());
            RResult::RErr(Error::panic(message).into_failure())
        }
    }
}

/// Run `f`, catching a panic, for work a plugin runs on threads of its own
/// (where a panic would otherwise end the thread and leave whoever waits
/// for its work waiting for ever). The error is the panic's message and
/// where it was raised, as the hook recorded them.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catching(|| panic::catch_unwind(AssertUnwindSafe(f))).map_err(|payload| {
        LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with no message".to_string())
    })
}

/// What a panic [`catch_panic`] caught was, in words for the user: a
/// thread the system would not start (`std::thread::scope`'s spawn
/// panics when it is refused: out of memory, or over the limit of
/// processes) is no bug; anything else is one. (Since 0.1.16.)
pub fn panic_cause(what: &str) -> &'static str {
    if what.contains("spawn") && what.contains("thread") {
        "cannot start a thread (out of memory, or over the limit of processes?)"
    } else {
        "internal error (a bug in obnam)"
    }
}

/// Convert a boundary result back into the safe layer's `Result`.
pub fn unwrap_abi<T>(r: AbiResult<T>) -> Result<T, Error> {
    r.into_result().map_err(|f: Failure| Error::from(f))
}
