//! The time that generations record: the real time, or, for tests of
//! retention policies, a time set by the development setting
//! `--testing-generation-time` that then runs on at the real pace.
//!
//! Only generations use it. Locks and creation claims always record the
//! real time, since other processes judge them stale by their own clocks.

use std::sync::OnceLock;

use crate::now_ns;

/// The clock of the generations a process makes.
#[derive(Debug, Default)]
pub struct GenerationClock {
    /// The time set, if any.
    start: Option<i64>,
    /// Added to the real time: fixed at the first reading, so that the
    /// first generation says exactly the time set, however long the run
    /// took to open the repository before it (a time just before
    /// midnight stays on its day).
    offset_ns: OnceLock<i64>,
}

impl GenerationClock {
    /// A clock that reads `start` at its first reading, or the real time
    /// if `None`.
    pub fn new(start: Option<i64>) -> Self {
        GenerationClock {
            start,
            offset_ns: OnceLock::new(),
        }
    }

    /// The time now by this clock, in ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        let real = now_ns();
        let Some(start) = self.start else {
            return real;
        };
        real.saturating_add(*self.offset_ns.get_or_init(|| start.saturating_sub(real)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_starts_at_its_time_and_runs_on() {
        let start = 1_000_000_000_000_000_000; // 2001-09-09
        let clock = GenerationClock::new(Some(start));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let first = clock.now_ns();
        assert_eq!(first, start, "the first reading is the time set");
        assert!(clock.now_ns() >= first);
        let real = GenerationClock::new(None).now_ns();
        assert!((real - now_ns()).abs() < 60_000_000_000);
    }
}
