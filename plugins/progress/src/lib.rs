//! Progress of the long commands (backup, restore), shared by the bundled
//! plugins that run them. A library, not a plugin.
//!
//! A long command shows its progress in one of two ways, or not at all
//! ([`Show`]):
//!
//! - on a terminal, a status line on standard error (through
//!   [`Context::status`], which the host draws), redrawn a few times a
//!   second: what was done, and once the totals are known the percentage,
//!   the time left and the current file;
//! - with `--output-format json-lines`, a stream on standard output of one
//!   JSON object per line: a `status` object every second (and one at the
//!   start), an `error` object for each file that failed, and one
//!   `summary` object at the end.
//!
//! A [`Reporter`] runs a thread that takes a [`Snapshot`] at each tick
//! while the command's own work runs; the thread ends before
//! [`Reporter::run`] returns. The arithmetic ([`fraction`], [`eta`]) and
//! the text forms ([`duration_text`], [`shorten_start`]) are pure
//! functions, tested below.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plugin_api::human::{bytes, count};
use plugin_api::{Context, Error, Result};
use serde_json::{json, Map, Value};

pub use plugin_api::OutputFormat;

/// How a run shows its progress.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Show {
    /// Not at all: `--quiet`, or standard error is not a terminal (and no
    /// stream was asked for).
    Nothing,
    /// A status line on the terminal.
    Line,
    /// `status` objects on standard output (`--output-format json-lines`).
    Stream,
}

/// How often a json-lines stream gets a `status` object.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);

/// How often the terminal's status line is redrawn (the host draws it at
/// most ten times a second).
pub const LINE_INTERVAL: Duration = Duration::from_millis(200);

/// The width of the terminal's status line: the host cuts it there.
pub const LINE_WIDTH: usize = 78;

impl Show {
    /// From the settings: a stream with `--output-format json-lines`
    /// (even with `--quiet`: a program asked for it), else a status line
    /// when standard error is a terminal and not `--quiet`.
    pub fn of(ctx: &Context<'_>) -> Result<Self> {
        if ctx.output_format()? == OutputFormat::JsonLines {
            return Ok(Show::Stream);
        }
        if ctx.boolean("quiet")? || !std::io::stderr().is_terminal() {
            return Ok(Show::Nothing);
        }
        Ok(Show::Line)
    }

    /// How often progress is reported.
    pub fn interval(self) -> Duration {
        match self {
            Show::Stream => STREAM_INTERVAL,
            _ => LINE_INTERVAL,
        }
    }
}

/// Files and bytes: done so far, or to do in all.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Amount {
    pub files: u64,
    pub bytes: u64,
}

impl Amount {
    pub fn new(files: u64, bytes: u64) -> Self {
        Amount { files, bytes }
    }
}

/// How much of `total` is `done`, from 0 to 1: by bytes when there are
/// bytes to do, else by files. Nothing to do at all counts as all done.
pub fn fraction(done: Amount, total: Amount) -> f64 {
    let (d, t) = if total.bytes > 0 {
        (done.bytes, total.bytes)
    } else if total.files > 0 {
        (done.files, total.files)
    } else {
        return 1.0;
    };
    (d as f64 / t as f64).clamp(0.0, 1.0)
}

/// The seconds left, if the rest goes as fast as what `elapsed` seconds
/// did (`fraction` of the whole): none while nothing is done.
pub fn eta(elapsed: f64, fraction: f64) -> Option<f64> {
    if fraction.is_nan() || fraction <= 0.0 || !elapsed.is_finite() || elapsed < 0.0 {
        return None;
    }
    if fraction >= 1.0 {
        return Some(0.0);
    }
    Some(elapsed * (1.0 - fraction) / fraction)
}

/// A duration for people, to the second: `0:05`, `12:34`, `1:02:03`.
pub fn duration_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `text` in at most `width` characters: as it is if it fits, else its
/// end after a `…` (the end of a path says the most).
pub fn shorten_start(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(text.chars().skip(len - (width - 1)));
    out
}

/// A name made safe for the terminal: control characters and
/// bidirectional formatting characters become `?`, so that a hostile file
/// name cannot garble the status line. A name from [`Current`] is escaped
/// already (and unchanged by this); this guards the line against a
/// [`Snapshot`] made with other text.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c,
                '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Round to `places` decimals, for JSON figures people also read.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// A path (or any byte string) in JSON, the one way every command gives
/// one: the string itself if it is UTF-8 (a newline is a JSON `\n`, a
/// backslash one backslash), else the text every message shows
/// ([`plugin_api::names::escape`]) with the exact bytes as an array of
/// numbers under `KEY_bytes`, so that a program can tell every name
/// apart.
pub fn bytes_fields(object: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            object.insert(key.into(), json!(text));
        }
        Err(_) => {
            object.insert(key.into(), json!(plugin_api::names::escape(bytes)));
            object.insert(format!("{key}_bytes"), json!(bytes));
        }
    }
}

/// A list of paths in JSON: `KEY`, each as [`bytes_fields`] gives it,
/// and `KEY_bytes`, every one's bytes, if any is not UTF-8.
pub fn bytes_list_fields(object: &mut Map<String, Value>, key: &str, list: &[&[u8]]) {
    let texts: Vec<Value> = list
        .iter()
        .map(|bytes| match std::str::from_utf8(bytes) {
            Ok(text) => json!(text),
            Err(_) => json!(plugin_api::names::escape(bytes)),
        })
        .collect();
    object.insert(key.into(), Value::Array(texts));
    if list.iter().any(|bytes| std::str::from_utf8(bytes).is_err()) {
        object.insert(format!("{key}_bytes"), json!(list));
    }
}

/// Where a run is at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Seconds since the run started.
    pub elapsed: f64,
    pub done: Amount,
    /// What there is to do in all, once known.
    pub total: Option<Amount>,
    /// The file being worked on (its path's bytes).
    pub current: Option<Vec<u8>>,
}

impl Snapshot {
    /// How much is done, from 0 to 1, once the total is known.
    pub fn fraction(&self) -> Option<f64> {
        self.total.map(|t| fraction(self.done, t))
    }

    /// The percentage done, once the total is known.
    pub fn percent(&self) -> Option<f64> {
        self.fraction().map(|f| f * 100.0)
    }

    /// The seconds left, once the total is known and something is done.
    pub fn eta(&self) -> Option<f64> {
        self.fraction().and_then(|f| eta(self.elapsed, f))
    }

    /// The `status` object of a json-lines stream: `type`, `time` and
    /// `time_ns`, `seconds`, `files_done`, `bytes_done`, `files_total`,
    /// `bytes_total`, `percent`, `eta_seconds` (null until known) and
    /// `current_file` (null if none), then the command's own figures in
    /// `extra`.
    pub fn to_json(&self, extra: Map<String, Value>) -> Value {
        let now = jiff::Timestamp::now();
        let mut object = extra;
        let common = json!({
            "type": "status",
            "time": now.to_string(),
            "time_ns": i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX),
            "seconds": self.elapsed,
            "files_done": self.done.files,
            "bytes_done": self.done.bytes,
            "files_total": self.total.map(|t| t.files),
            "bytes_total": self.total.map(|t| t.bytes),
            "percent": self.percent().map(|p| round(p, 2)),
            "eta_seconds": self.eta().map(|s| round(s, 1)),
            "current_file": null,
        });
        if let Value::Object(common) = common {
            object.extend(common);
        }
        if let Some(current) = &self.current {
            bytes_fields(&mut object, "current_file", current);
        }
        Value::Object(object)
    }

    /// The status line once the total is known, fitted to [`LINE_WIDTH`]:
    /// `42% 1.2 GB of 2.7 GB, 12 of 5000 files, ETA 1:23, 1 error …/the/file`.
    /// `None` while the total is unknown.
    pub fn line(&self, prefix: &str, errors: u64) -> Option<String> {
        let total = self.total?;
        let percent = self.percent().unwrap_or(0.0);
        let mut line = format!("{prefix}{}%", percent.floor() as u64);
        if total.bytes > 0 {
            line.push_str(&format!(
                " {} of {},",
                bytes(self.done.bytes),
                bytes(total.bytes)
            ));
        }
        line.push_str(&format!(
            " {} of {}",
            self.done.files,
            count(total.files, "file", "files")
        ));
        if let Some(eta) = self.eta() {
            line.push_str(&format!(", ETA {}", duration_text(eta)));
        }
        if errors > 0 {
            line.push_str(&format!(", {}", count(errors, "error", "errors")));
        }
        if let Some(current) = &self.current {
            // Room for a space and a few characters of the name at least.
            let room = LINE_WIDTH.saturating_sub(line.chars().count() + 1);
            if room >= 8 {
                line.push(' ');
                let shown = plugin_api::names::escape(current);
                line.push_str(&shorten_start(&printable(&shown), room));
            }
        }
        Some(line)
    }
}

/// The file being worked on, for the status: cheap to offer from the
/// thread that walks (an atomic load per file, a copy only when the
/// reporter asked since the last time), and set outright by workers that
/// start on something that takes a while.
pub struct Current {
    wanted: AtomicBool,
    path: Mutex<Vec<u8>>,
}

impl Default for Current {
    fn default() -> Self {
        Current {
            wanted: AtomicBool::new(true),
            path: Mutex::new(Vec::new()),
        }
    }
}

impl Current {
    /// This is the current file, if the reporter wants a new one.
    pub fn offer(&self, path: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) && self.wanted.swap(false, Ordering::Relaxed) {
            self.put(path);
        }
    }

    /// This is the current file.
    pub fn set(&self, path: &[u8]) {
        self.wanted.store(false, Ordering::Relaxed);
        self.put(path);
    }

    fn put(&self, path: &[u8]) {
        let mut held = self.path.lock().unwrap_or_else(|e| e.into_inner());
        held.clear();
        held.extend_from_slice(path);
    }

    /// The current file, and ask for a new one.
    pub fn get(&self) -> Option<Vec<u8>> {
        let held = self.path.lock().unwrap_or_else(|e| e.into_inner());
        let path = (!held.is_empty()).then(|| held.clone());
        drop(held);
        self.wanted.store(true, Ordering::Relaxed);
        path
    }
}

/// Objects for the stream that come from any thread (the `error` object
/// of a file that failed), written by the reporter before its next
/// `status` object, so that only one thread writes the stream.
#[derive(Default)]
pub struct Events {
    enabled: bool,
    lines: Mutex<Vec<String>>,
}

impl Events {
    /// Events that are kept only for a stream.
    pub fn new(show: Show) -> Self {
        Events {
            enabled: show == Show::Stream,
            lines: Mutex::default(),
        }
    }

    /// A file (or folder) failed: `{"type": "error", "path": PATH,
    /// "message": MESSAGE}`, the path as [`bytes_fields`] gives it.
    pub fn error(&self, path: &[u8], message: &str) {
        if self.enabled {
            let mut object = Map::new();
            object.insert("type".into(), json!("error"));
            bytes_fields(&mut object, "path", path);
            object.insert("message".into(), json!(message));
            let line = Value::Object(object).to_string();
            self.lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line);
        }
    }

    /// The queued objects as lines of text, taken off the queue.
    fn text(&self) -> String {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        let mut text = String::new();
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// Reports a run's progress, as [`Show`] says.
pub struct Reporter<'a, 'c> {
    ctx: &'a Context<'c>,
    show: Show,
    started: Instant,
    /// Set when writing the stream failed (standard output closed): the
    /// run should stop.
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl<'a, 'c> Reporter<'a, 'c> {
    /// A reporter for a run that started at `started`.
    pub fn new(ctx: &'a Context<'c>, show: Show, started: Instant) -> Self {
        Reporter {
            ctx,
            show,
            started,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    /// How progress is shown.
    pub fn show(&self) -> Show {
        self.show
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Run `body` while a thread calls `tick` at once and then every
    /// [`Show::interval`]; the thread has ended when this returns. With
    /// [`Show::Nothing`] there is no thread.
    pub fn run<R>(&self, tick: impl Fn(&Self) + Sync, body: impl FnOnce() -> R) -> R {
        if self.show == Show::Nothing {
            return body();
        }
        let interval = self.show.interval();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let tick = &tick;
            scope.spawn(move || {
                let start = Instant::now();
                loop {
                    tick(self);
                    // The next whole interval from the start: a slow tick
                    // skips ticks rather than bunching them.
                    let ticks = start.elapsed().as_nanos() / interval.as_nanos().max(1) + 1;
                    let next = start + interval * u32::try_from(ticks).unwrap_or(u32::MAX);
                    let wait = next.saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        // Stopped (the sender is dropped when `body`
                        // returns or panics).
                        _ => break,
                    }
                }
            });
            let result = body();
            drop(stop);
            result
        })
    }

    /// Show where the run is: on a stream, the queued `events` and a
    /// `status` object (`snapshot` with the fields `extra` gives); on a
    /// terminal, `line()`.
    pub fn status(
        &self,
        events: &Events,
        snapshot: &Snapshot,
        extra: impl FnOnce() -> Map<String, Value>,
        line: impl FnOnce() -> String,
    ) {
        match self.show {
            Show::Nothing => {}
            Show::Line => self.ctx.status(&line()),
            Show::Stream => {
                if self.failed() {
                    return;
                }
                let mut text = events.text();
                text.push_str(&snapshot.to_json(extra()).to_string());
                text.push('\n');
                if let Err(e) = self.ctx.output(text.as_bytes()) {
                    self.failed.store(true, Ordering::Relaxed);
                    self.error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                }
            }
        }
    }

    /// Write the queued `events` to the stream now (the run stopped on an
    /// error: they are all the stream gets after the last `status`).
    pub fn flush(&self, events: &Events) -> Result<()> {
        if self.show != Show::Stream || self.failed() {
            return Ok(());
        }
        let text = events.text();
        if text.is_empty() {
            return Ok(());
        }
        self.ctx.output(text.as_bytes())
    }

    /// Whether writing the stream failed: the run should stop (and
    /// [`check`](Self::check) says why).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The error that writing the stream met, if it failed.
    pub fn check(&self) -> Result<()> {
        if !self.failed() {
            return Ok(());
        }
        match self.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Err(Error::msg("cannot write the progress stream")),
        }
    }

    /// End the stream: the queued `events`, then `summary` as one line
    /// with `"type": "summary"`.
    pub fn summary(&self, events: &Events, summary: &Value) -> Result<()> {
        self.check()?;
        let mut text = events.text();
        let mut object = Map::new();
        object.insert("type".into(), "summary".into());
        if let Value::Object(fields) = summary {
            object.extend(fields.clone());
        }
        text.push_str(&Value::Object(object).to_string());
        text.push('\n');
        self.ctx.output(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_goes_by_bytes_then_files() {
        assert_eq!(fraction(Amount::new(1, 50), Amount::new(10, 200)), 0.25);
        // No bytes to do (empty files, symlinks): by files.
        assert_eq!(fraction(Amount::new(3, 0), Amount::new(4, 0)), 0.75);
        // Nothing to do is all done.
        assert_eq!(fraction(Amount::new(0, 0), Amount::new(0, 0)), 1.0);
        // More done than the estimate said (files grew): at most all.
        assert_eq!(fraction(Amount::new(5, 500), Amount::new(4, 400)), 1.0);
        assert_eq!(fraction(Amount::new(0, 0), Amount::new(1, 1)), 0.0);
    }

    #[test]
    fn the_time_left_follows_the_pace_so_far() {
        assert_eq!(eta(10.0, 0.25), Some(30.0));
        assert_eq!(eta(10.0, 0.5), Some(10.0));
        assert_eq!(eta(10.0, 1.0), Some(0.0));
        assert_eq!(eta(10.0, 0.0), None, "nothing done: no pace yet");
        assert_eq!(eta(0.0, 0.5), Some(0.0));
        assert_eq!(eta(f64::NAN, 0.5), None);
        assert_eq!(eta(1.0, f64::NAN), None);
    }

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(duration_text(0.0), "0:00");
        assert_eq!(duration_text(5.4), "0:05");
        assert_eq!(duration_text(59.6), "1:00");
        assert_eq!(duration_text(754.0), "12:34");
        assert_eq!(duration_text(3723.0), "1:02:03");
        assert_eq!(duration_text(100.0 * 3600.0), "100:00:00");
        assert_eq!(duration_text(-1.0), "?");
        assert_eq!(duration_text(f64::INFINITY), "?");
    }

    #[test]
    fn long_paths_keep_their_end() {
        assert_eq!(shorten_start("/a/b", 10), "/a/b");
        assert_eq!(shorten_start("/a/b", 4), "/a/b");
        assert_eq!(shorten_start("/home/me/file.txt", 9), "…file.txt");
        assert_eq!(shorten_start("/home/me/file.txt", 1), "…");
        assert_eq!(shorten_start("/home/me/file.txt", 0), "");
        // Characters, not bytes.
        assert_eq!(shorten_start("/äöü/ß", 3), "…/ß");
        assert_eq!(shorten_start("/äöü/ß", 6), "/äöü/ß");
    }

    #[test]
    fn names_cannot_garble_the_terminal() {
        assert_eq!(printable("a\nb\x1b[2Jc"), "a?b?[2Jc");
        assert_eq!(printable("x\u{202e}y"), "x?y");
        assert_eq!(printable("/ok/näme"), "/ok/näme");
    }

    fn snapshot(done: Amount, total: Option<Amount>) -> Snapshot {
        Snapshot {
            elapsed: 10.0,
            done,
            total,
            current: Some("/home/me/some/rather/long/path/to/a/file/deep/down/there.txt".into()),
        }
    }

    #[test]
    fn the_line_shows_percent_eta_and_the_end_of_the_current_file() {
        let s = snapshot(Amount::new(1, 250_000), Some(Amount::new(1, 1_000_000)));
        let line = s.line("", 1).unwrap();
        assert!(
            line.starts_with("25% 250.0 kB of 1.0 MB, 1 of 1 file, ETA 0:30, 1 error …"),
            "{line}"
        );
        assert!(line.ends_with("/there.txt"), "{line}");
        assert_eq!(line.chars().count(), LINE_WIDTH, "{line}");

        let s = snapshot(Amount::new(0, 0), Some(Amount::new(2, 0)));
        let line = s.line("Restoring: ", 0).unwrap();
        assert!(line.starts_with("Restoring: 0% 0 of 2 files …"), "{line}");

        assert_eq!(snapshot(Amount::default(), None).line("", 0), None);
    }

    #[test]
    fn status_objects_say_null_until_the_total_is_known() {
        let s = snapshot(Amount::new(3, 30), None);
        let mut extra = Map::new();
        extra.insert("errors".into(), 0.into());
        let v = s.to_json(extra);
        assert_eq!(v["type"], "status");
        assert_eq!(v["files_done"], 3);
        assert_eq!(v["bytes_done"], 30);
        assert_eq!(v["errors"], 0);
        for field in ["files_total", "bytes_total", "percent", "eta_seconds"] {
            assert!(v[field].is_null(), "{field}: {v}");
        }
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(v["time_ns"].as_i64().unwrap() > 0, "{v}");

        let s = snapshot(Amount::new(3, 30), Some(Amount::new(4, 120)));
        let v = s.to_json(Map::new());
        assert_eq!(v["files_total"], 4);
        assert_eq!(v["bytes_total"], 120);
        assert_eq!(v["percent"], 25.0);
        assert_eq!(v["eta_seconds"], 30.0);
    }

    #[test]
    fn the_current_file_is_taken_when_wanted() {
        let c = Current::default();
        c.offer(b"/a");
        c.offer(b"/b");
        assert_eq!(c.get().as_deref(), Some(&b"/a"[..]));
        c.offer(b"/c");
        c.offer(b"/d");
        assert_eq!(c.get().as_deref(), Some(&b"/c"[..]));
        c.set(b"/big");
        c.offer(b"/e");
        assert_eq!(c.get().as_deref(), Some(&b"/big"[..]));
        assert_eq!(Current::default().get(), None);
    }

    #[test]
    fn the_current_file_is_escaped_in_the_line_and_exact_in_json() {
        let snapshot = Snapshot {
            elapsed: 1.0,
            done: Amount::new(1, 10),
            total: Some(Amount::new(2, 20)),
            current: Some(b"/d/evil\nERROR: x\x1b[2J\xff".to_vec()),
        };
        let line = snapshot.line("", 0).unwrap();
        assert!(
            line.ends_with("/d/evil\\nERROR: x\\u{001b}[2J\\xff"),
            "{line}"
        );
        let json = snapshot.to_json(Map::new());
        assert_eq!(json["current_file"], "/d/evil\\nERROR: x\\u{001b}[2J\\xff");
        assert_eq!(
            json["current_file_bytes"],
            json!(b"/d/evil\nERROR: x\x1b[2J\xff".to_vec())
        );
        let utf8 = Snapshot {
            current: Some(b"/d/new\nline".to_vec()),
            ..snapshot
        };
        let json = utf8.to_json(Map::new());
        assert_eq!(json["current_file"], "/d/new\nline");
        assert!(json.get("current_file_bytes").is_none());
    }
}
