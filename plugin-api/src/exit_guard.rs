//! How the host notices that something else ended the process.
//!
//! A plugin runs inside the host's process, so a plugin that calls
//! `exit` (`std::process::exit`, a C library's `exit`) ends obnam then and
//! there, with the code it chose: a backup stopped before its generation
//! was committed, or a restore half done, ended with exit 0 and no word.
//! The plugin guide forbids it; this makes it visible when it happens.
//!
//! The host installs the guard ([`install`]) before it loads a plugin and
//! ends the process only through [`end_process`]. Any other `exit` runs
//! the guard's handler, which says the command did not finish and ends the
//! process with the host's failure code instead of the one asked for.
//! `_exit` and signals cannot be seen this way: the first skips exit
//! handlers, the second is the shell's to report.
//!
//! Only the host uses this module; a plugin has no reason to.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

/// Set once the host itself is ending the process.
static HOST_ENDING: AtomicBool = AtomicBool::new(false);

/// The exit code of a process ended by anyone but the host.
static FAILURE_CODE: AtomicI32 = AtomicI32::new(1);

/// Watch, from now on, for the process being ended by anything but
/// [`end_process`]; such an end exits with `failure_code` after one line
/// on standard error.
pub fn install(failure_code: i32) {
    static ONCE: Once = Once::new();
    FAILURE_CODE.store(failure_code, Ordering::SeqCst);
    ONCE.call_once(|| {
        // SAFETY: `atexit` only records the address of `on_exit`, a
        // function of this library that lives as long as the process (the
        // host's copy of this crate is linked into the executable, which
        // is never unloaded). `on_exit` does not unwind. A failure to
        // register (non-zero) only leaves the guard off.
        let _ = unsafe { libc::atexit(on_exit) };
    });
}

/// End the process with `code`: the host's way out, which the guard lets
/// through.
pub fn end_process(code: i32) -> ! {
    HOST_ENDING.store(true, Ordering::SeqCst);
    std::process::exit(code)
}

/// The exit handler: nothing to do when the host is ending the process;
/// otherwise say so and end it at once with the failure code.
extern "C" fn on_exit() {
    if HOST_ENDING.load(Ordering::SeqCst) {
        return;
    }
    let message: &[u8] = b"\nERROR: the process was ended from inside before obnam finished \
        (a plugin called exit, which the plugin guide forbids): the command did not \
        complete, whatever it had said so far\n";
    // SAFETY: `write` is given a pointer and length of a live byte
    // string; standard error is written without Rust's lock on it, which
    // another thread may hold while this one ends the process. Its result
    // is ignored: nothing better can be done if standard error is closed.
    let _ = unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
    // SAFETY: `_exit` ends the process without running the remaining exit
    // handlers (calling `exit` again from one is undefined); it is always
    // sound to call.
    unsafe { libc::_exit(FAILURE_CODE.load(Ordering::SeqCst)) }
}
