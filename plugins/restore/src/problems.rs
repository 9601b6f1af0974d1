//! How restore reports a problem with one entry: as an error event naming
//! the path (the host shows it as `ERROR: PATH: what went wrong`), kept for
//! the count at the end, when the command fails if there were any.
//!
//! Kept separate so that the walker and the workers report the same way
//! from any thread.

use std::fmt::Display;
use std::sync::Mutex;

use crate::names::escape;

/// The problems met so far. Safe to share between threads.
#[derive(Default)]
pub struct Problems {
    lines: Mutex<Vec<String>>,
}

impl Problems {
    /// Report a problem with `path` (shown escaped) and keep it.
    pub fn report(&self, path: &[u8], message: impl Display) {
        let line = format!("{}: {message}", escape(path));
        plugin_api::tracing::error!("{line}");
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// How many problems there were.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every problem reported, in order.
    pub fn into_lines(self) -> Vec<String> {
        self.lines.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_path() {
        let p = Problems::default();
        p.report(b"/a\nb", "broken");
        p.report(b"/c", format!("{} times", 2));
        assert_eq!(p.count(), 2);
        assert_eq!(p.into_lines(), vec!["/a\\nb: broken", "/c: 2 times"]);
    }
}
