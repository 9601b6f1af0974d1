//! The time that generations record: the real time, or, for tests of
//! retention policies, a time set by the development setting
//! `--testing-generation-time` that then runs on at the real pace.
//!
//! Only generations use it. Locks and creation claims always record the
//! real time, since other processes judge them stale by their own clocks.

use crate::now_ns;

/// The clock of the generations a process makes.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationClock {
    /// Added to the real time.
    offset_ns: i64,
}

impl GenerationClock {
    /// A clock that reads `start` now, or the real time if `None`.
    pub fn new(start: Option<i64>) -> Self {
        GenerationClock {
            offset_ns: start.map_or(0, |t| t.saturating_sub(now_ns())),
        }
    }

    /// The time now by this clock, in ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        now_ns().saturating_add(self.offset_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_starts_at_its_time_and_runs_on() {
        let start = 1_000_000_000_000_000_000; // 2001-09-09
        let clock = GenerationClock::new(Some(start));
        let first = clock.now_ns();
        assert!((start..start + 60_000_000_000).contains(&first));
        assert!(clock.now_ns() >= first);
        let real = GenerationClock::new(None).now_ns();
        assert!((real - now_ns()).abs() < 60_000_000_000);
    }
}
