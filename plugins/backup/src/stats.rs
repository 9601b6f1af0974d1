//! Counting what a backup did, showing progress, and the final summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use progress::{Amount, Current, Events, Snapshot};

use crate::scan::Scan;

/// The statistics of one run; shared by the walker and the workers.
pub struct Stats {
    pub started: Instant,
    /// Non-directories backed up in this run: read, or found unchanged.
    /// One that failed is not counted (it is an error), even when the new
    /// generation holds its previous version (see `kept`).
    pub files: AtomicU64,
    pub directories: AtomicU64,
    /// Files whose content was read.
    pub files_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Of `bytes_read`, the holes of sparse files, which were not read.
    pub bytes_in_holes: AtomicU64,
    /// Bytes of chunks stored anew.
    pub bytes_new: AtomicU64,
    /// Bytes of files found (their sizes).
    pub bytes_found: AtomicU64,
    pub excluded: AtomicU64,
    pub errors: AtomicU64,
    /// Objects that failed (of `errors`) whose version of the previous
    /// generation the new one holds instead: so that the summary does not
    /// seem to say they are not in the generation.
    pub kept: AtomicU64,
    /// Entries of folders too large for the generation that it does not
    /// hold (counted above all the same, as the walk found them).
    pub left_out: AtomicU64,
    /// Non-directories dealt with, for the progress: recorded, read, or
    /// failed (`files` counts only those backed up).
    pub files_done: AtomicU64,
    /// Of the sizes the walk saw, the part dealt with so far: a changed
    /// file adds its chunks as they are stored, an unchanged one its size.
    pub bytes_done: AtomicU64,
    /// The file being worked on, for the progress.
    pub current: Current,
    /// The `error` objects of a json-lines stream.
    pub events: Events,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            files: AtomicU64::new(0),
            directories: AtomicU64::new(0),
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_in_holes: AtomicU64::new(0),
            bytes_new: AtomicU64::new(0),
            bytes_found: AtomicU64::new(0),
            excluded: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            current: Current::default(),
            events: Events::default(),
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
    /// Statistics whose json-lines stream (if any) gets `events`.
    pub fn new(events: Events) -> Self {
        Stats {
            events,
            ..Stats::default()
        }
    }

    /// A non-directory of `size` bytes (as the walk saw it) is dealt with.
    pub fn done(&self, size: u64) {
        add(&self.files_done, 1);
        add(&self.bytes_done, size);
    }

    /// Where the backup is, with the scan's totals once it has finished.
    pub fn snapshot(&self, scan: Option<&Scan>) -> Snapshot {
        Snapshot {
            elapsed: self.started.elapsed().as_secs_f64(),
            done: Amount::new(get(&self.files_done), get(&self.bytes_done)),
            total: scan.and_then(Scan::total),
            current: self.current.get(),
        }
    }

    /// The status line: once the scan has finished, the percentage, the
    /// time left and the current file; before, what was done, and what
    /// the scan found so far.
    pub fn progress(&self, snapshot: &Snapshot, scan: Option<&Scan>) -> String {
        if let Some(line) = snapshot.line("", get(&self.errors)) {
            return line;
        }
        let mut line = format!(
            "{}, {} read, {} new, {}",
            count(get(&self.files), "file", "files"),
            human(get(&self.bytes_read)),
            human(get(&self.bytes_new)),
            count(get(&self.errors), "error", "errors")
        );
        if let Some(scan) = scan {
            let found = scan.so_far();
            line.push_str(&format!(
                "; found {}, {}",
                count(found.files, "file", "files"),
                human(found.bytes)
            ));
        }
        line
    }

    /// The figures of a `status` object of the json-lines stream: those
    /// of the summary so far, and the scan's.
    pub fn status_json(&self, scan: Option<&Scan>) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = match self.to_json() {
            serde_json::Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        // The status object's own `seconds` is the same.
        fields.remove("seconds");
        if let Some(scan) = scan {
            let found = scan.so_far();
            fields.insert("scan_finished".into(), scan.is_finished().into());
            fields.insert("files_scanned".into(), found.files.into());
            fields.insert("bytes_scanned".into(), found.bytes.into());
        }
        fields
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
        let holes = match get(&self.bytes_in_holes) {
            0 => String::new(),
            n => format!(" ({} of it holes)", human(n)),
        };
        let kept = match get(&self.kept) {
            0 => String::new(),
            n => format!(" ({n} kept as the previous generation had it)"),
        };
        // Counted above, not in the generation: said, so that the count
        // is not taken for what the generation holds.
        let kept = match get(&self.left_out) {
            0 => kept,
            n => format!(
                "{kept}; {} of too large folders not in the generation",
                count(n, "entry", "entries")
            ),
        };
        format!(
            "Backed up {} and {} ({} read, {}{holes}, {} new) in {:.1} s ({}/s); {} excluded, {}{kept}",
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
            "bytes_in_holes": get(&self.bytes_in_holes),
            "bytes_new": get(&self.bytes_new),
            "excluded": get(&self.excluded),
            "errors": get(&self.errors),
            "kept": get(&self.kept),
            "left_out": get(&self.left_out),
            "seconds": self.started.elapsed().as_secs_f64(),
        })
    }
}
