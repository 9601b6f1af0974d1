//! Keeping panics on their own side of the boundary.
//!
//! A panic that unwinds into an `extern "C"` function aborts the process
//! (abi_stable turns it into "Attempted to panic across the ffi boundary").
//! So every call the host makes into a plugin runs inside [`guarded`], which
//! catches the panic on the plugin's side and returns it as a
//! [`FailureKind::Panic`](crate::abi::FailureKind) failure. The plugin's
//! standard library is its own copy, with its own panic hook: [`install_panic_hook`]
//! replaces it with one that records the message and location instead of
//! printing them, so no Rust panic text ever reaches the user.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use abi_stable::std_types::RResult;

use crate::abi::{AbiResult, Failure};
use crate::Error;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
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
            LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(text));
        }));
    });
}

/// Run `f`, turning both its error and any panic into a boundary [`Failure`].
pub fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> AbiResult<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
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
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with no message".to_string())
    })
}

/// Convert a boundary result back into the safe layer's `Result`.
pub fn unwrap_abi<T>(r: AbiResult<T>) -> Result<T, Error> {
    r.into_result().map_err(|f: Failure| Error::from(f))
}
