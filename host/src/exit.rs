//! The exit codes of the `obnam` executable, in one place.
//!
//! A leaf module: it imports nothing from the rest of the crate, so any
//! module may name an exit code without pulling in the ones that decide
//! it. Only `run` (the crate root) and the interruption thread end the
//! process, both through `plugin_api::exit_guard::end_process`: anything
//! else that calls `exit` (a plugin) ends the run with [`EXIT_FAILURE`]
//! and a line saying the command did not finish.

/// Exit code of a run that succeeded.
pub const EXIT_SUCCESS: i32 = 0;
/// Exit code of a run that failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a usage error on the command line.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a bug in obnam itself (a caught panic).
pub const EXIT_BUG: i32 = 70;
/// Exit code when standard output was closed before the command finished
/// (what a process killed by SIGPIPE reports: 128 + 13).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Exit code of a run ended by `signal`: 128 + its number, as a shell reports it.
pub fn interrupted_by(signal: i32) -> i32 {
    128 + signal
}
