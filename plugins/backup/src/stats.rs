//! Counting what a backup did, showing progress, and the final summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The statistics of one run; shared by the walker and the workers.
pub struct Stats {
    pub started: Instant,
    /// Non-directories found (backed up or unchanged).
    pub files: AtomicU64,
    pub directories: AtomicU64,
    /// Files whose content was read.
    pub files_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Bytes of chunks stored anew.
    pub bytes_new: AtomicU64,
    /// Bytes of files found (their sizes).
    pub bytes_found: AtomicU64,
    pub excluded: AtomicU64,
    pub errors: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            files: AtomicU64::new(0),
            directories: AtomicU64::new(0),
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_new: AtomicU64::new(0),
            bytes_found: AtomicU64::new(0),
            excluded: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

fn get(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// Add to a counter.
pub fn add(n: &AtomicU64, by: u64) {
    n.fetch_add(by, Ordering::Relaxed);
}

/// Bytes for people: `1.2 GB`, `340.0 kB`.
pub use plugin_api::human::bytes as human;
use plugin_api::human::count;

impl Stats {
    /// A one-line progress report.
    pub fn progress(&self) -> String {
        format!(
            "{}, {} read, {} new, {}",
            count(get(&self.files), "file", "files"),
            human(get(&self.bytes_read)),
            human(get(&self.bytes_new)),
            count(get(&self.errors), "error", "errors")
        )
    }

    /// Whether any file failed.
    pub fn had_errors(&self) -> bool {
        get(&self.errors) > 0
    }

    /// The final summary.
    pub fn summary(&self, pretend: bool) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let speed = get(&self.bytes_read) as f64 / secs.max(0.001);
        if pretend {
            return format!(
                "Would back up {} and {} ({} to read); {} excluded",
                count(get(&self.files), "file", "files"),
                count(get(&self.directories), "directory", "directories"),
                human(get(&self.bytes_read)),
                get(&self.excluded)
            );
        }
        format!(
            "Backed up {} and {} ({} read, {}, {} new) in {:.1} s ({}/s); {} excluded, {}",
            count(get(&self.files), "file", "files"),
            count(get(&self.directories), "directory", "directories"),
            count(get(&self.files_read), "file", "files"),
            human(get(&self.bytes_read)),
            human(get(&self.bytes_new)),
            secs,
            human(speed as u64),
            get(&self.excluded),
            count(get(&self.errors), "error", "errors")
        )
    }

    /// The statistics as JSON, for the `backup-finished` hook.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "files": get(&self.files),
            "directories": get(&self.directories),
            "files_read": get(&self.files_read),
            "bytes_found": get(&self.bytes_found),
            "bytes_read": get(&self.bytes_read),
            "bytes_new": get(&self.bytes_new),
            "excluded": get(&self.excluded),
            "errors": get(&self.errors),
            "seconds": self.started.elapsed().as_secs_f64(),
        })
    }
}
