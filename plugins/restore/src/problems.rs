//! How restore reports a problem with one entry: as an error event naming
//! the path (the host shows it as `ERROR: PATH: what went wrong`), kept for
//! the count at the end, when the command fails if there were any.
//!
//! Kept separate so that the walker and the workers report the same way
//! from any thread.

use std::fmt::Display;
use std::sync::{Mutex, OnceLock};

use progress::Events;

use crate::names::escape;

/// The problems met so far. Safe to share between threads.
#[derive(Default)]
pub struct Problems {
    lines: Mutex<Vec<String>>,
    /// The `error` objects of a json-lines stream.
    events: Events,
    /// Why the whole restore stops early, if it does (the first reason).
    stop: OnceLock<String>,
}

impl Problems {
    /// Problems that also go to a json-lines stream through `events`.
    pub fn new(events: Events) -> Self {
        Problems {
            lines: Mutex::default(),
            events,
            stop: OnceLock::new(),
        }
    }

    /// The `error` objects for a json-lines stream.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Report a problem with `path` (shown escaped) and keep it.
    pub fn report(&self, path: &[u8], message: impl Display) {
        let message = message.to_string();
        self.events.error(path, &message);
        let line = format!("{}: {message}", escape(path));
        plugin_api::tracing::error!("{line}");
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// Stop the whole restore, for `why` (not a problem with one entry: no
    /// other would fare better). The first reason given is kept.
    pub fn stop(&self, why: impl Display) {
        let why = why.to_string();
        plugin_api::tracing::debug!("restore stopping: {why}");
        let _ = self.stop.set(why);
    }

    /// Why the restore stops, if it does.
    pub fn stopped(&self) -> Option<&str> {
        self.stop.get().map(String::as_str)
    }

    /// How many problems there were.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every problem reported, in order.
    #[cfg(test)]
    pub fn into_lines(self) -> Vec<String> {
        self.into_parts().0
    }

    /// Every problem reported, in order, and the `error` objects not yet
    /// written to the stream.
    pub fn into_parts(self) -> (Vec<String>, Events) {
        (
            self.lines.into_inner().unwrap_or_else(|e| e.into_inner()),
            self.events,
        )
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
