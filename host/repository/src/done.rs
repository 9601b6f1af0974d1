//! What this process has done that an interruption must not hide.
//!
//! An interrupted run winds down from another thread, which never sees
//! the command's result: a backup interrupted while it tidied up after
//! its commit said only "interrupted by SIGTERM", and its complete
//! generation looked failed; so did a prune that had deleted everything
//! its plan named, and a `key passwd` whose new key slot was in place.
//! The engine notes here, at the moment it happens, the last thing done
//! that changes what the user should think of the run; the interruption's
//! message names it.

use std::sync::Mutex;

static DONE: Mutex<Option<String>> = Mutex::new(None);

/// Note `what` (words that follow "after": `the backup was committed as
/// generation ID, ...`) as the last thing this process has done.
pub fn note(what: String) {
    *DONE.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
}

/// The last thing noted, if any.
pub fn noted() -> Option<String> {
    DONE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Forget what was noted: what it said no longer holds (a prune noted
/// that only its plan was left to remove, then removed it, and went on
/// to work of its own).
pub fn clear() {
    *DONE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}
