//! Standard output for results, and a transient status line on standard
//! error for progress.
//!
//! Output goes through one place so that a closed pipe (`obnam ls | head`)
//! is noticed once and ends the run quietly instead of with an error.
//!
//! The status line is kept hand-written rather than built on `indicatif`:
//! an indicatif bar owns its line and redraws it on its own schedule with
//! its own escape sequences, whereas here every write to standard output
//! and every warning clears the line first, an interruption silences it,
//! and a plugin's status text is drawn as given, so the crate would need
//! as much glue as these few functions are.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_WRITTEN: AtomicBool = AtomicBool::new(false);
static STATUS_SHOWN: AtomicBool = AtomicBool::new(false);
static LAST_STATUS: Mutex<Option<Instant>> = Mutex::new(None);
static TERMINAL_SILENCED: AtomicBool = AtomicBool::new(false);

/// How often the status line is redrawn at most.
const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// Why output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("standard output is closed")]
    Closed,
    #[error("cannot write to standard output: {0}")]
    Io(std::io::Error),
}

/// Write bytes to standard output.
pub fn write(data: &[u8]) -> Result<(), OutputError> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Err(OutputError::Closed);
    }
    clear_status();
    STDOUT_WRITTEN.store(true, Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    out.write_all(data).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    })
}

/// Write bytes a hook's callback gave to standard error: with a JSON
/// output format, standard output holds the command's JSON alone.
pub fn write_aside(data: &[u8]) -> Result<(), OutputError> {
    clear_status();
    std::io::stderr()
        .lock()
        .write_all(data)
        .map_err(OutputError::Io)
}

/// Write a line of text to standard output.
pub fn line(text: &str) -> Result<(), OutputError> {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    write(buf.as_bytes())
}

/// Whether anything was written to standard output.
pub fn stdout_written() -> bool {
    STDOUT_WRITTEN.load(Ordering::Relaxed)
}

/// Whether a write found standard output closed.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Show nothing more on standard error (no status line, no warnings):
/// the run was interrupted, and what its threads report on their way down
/// is noise. The log file still gets it; the interruption says the last
/// word itself.
pub fn silence_terminal() {
    TERMINAL_SILENCED.store(true, Ordering::SeqCst);
    clear_status();
}

/// Whether [`silence_terminal`] was called.
pub fn terminal_silenced() -> bool {
    TERMINAL_SILENCED.load(Ordering::SeqCst)
}

/// Show a status line on a terminal, at most ten times a second.
pub fn status(text: &str, quiet: bool) {
    if quiet || terminal_silenced() || !std::io::stderr().is_terminal() {
        return;
    }
    let mut last = LAST_STATUS.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < STATUS_INTERVAL) {
        return;
    }
    *last = Some(now);
    let width = 78;
    let shown: String = text.chars().take(width).collect();
    stderr_text!("\r\x1b[K{shown}");
    STATUS_SHOWN.store(true, Ordering::Relaxed);
}

/// Remove the status line, if one is shown.
pub fn clear_status() {
    if STATUS_SHOWN.swap(false, Ordering::Relaxed) {
        stderr_text!("\r\x1b[K");
    }
}

/// Tell the user something they should not miss, once, on standard error
/// (unless `--quiet`): not a warning, since nothing went wrong.
pub fn notice(text: &str, quiet: bool) {
    tracing::info!("{text}");
    if quiet || terminal_silenced() {
        return;
    }
    clear_status();
    stderr_line!("obnam: {text}");
}
