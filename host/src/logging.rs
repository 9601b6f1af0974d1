//! The host's log: obnam's warnings for the user on standard error, and
//! everything up to `--log-level` (the libraries' events too) in the
//! `--log` file.
//!
//! Logging starts before the settings are known (plugin loading already
//! warns), so events are buffered in memory until [`configure`] names the
//! log file and level; then the buffer is written out. The warnings meant
//! for the terminal wait too, until `quiet` is known from every source (a
//! config file's included), or until the run ends before that
//! ([`flush_pending`]). Events forwarded by
//! plugins arrive through [`plugin_event`] and are re-emitted here with
//! target `obnam::plugin` and a `plugin` field.
//!
//! Events with target [`NOTICE_TARGET`] are notices: what the user should
//! know while a run waits or works, which is no warning (a run waiting for
//! another's lock, say). They go to standard error as they are, without a
//! level, and are silenced as warnings are.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use plugin_api::abi::LogLevel;
use plugin_api::logging::{level_to_abi, TextVisitor};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::output;

/// The target of notices: `tracing::info!(target: "obnam::notice", ...)`.
pub const NOTICE_TARGET: &str = "obnam::notice";

/// The target of the lines that say how a run ended, for the log file
/// only: the final error was printed on standard error already. Without
/// them, the log of a failed run (a cron job's, its standard error thrown
/// away) read as that of one that succeeded.
pub const END_TARGET: &str = "run";

/// Write the run's final error to the log file (not to the terminal: the
/// caller printed it there).
pub fn log_final_error(message: &str) {
    tracing::error!(target: END_TARGET, "{message}");
}

/// Write the run's exit code to the log file.
pub fn log_exit_code(code: i32) {
    tracing::info!(target: END_TARGET, "ended with exit code {code}");
}

/// Most events kept before the log file is known.
const BUFFER_LIMIT: usize = 10_000;

struct LogState {
    /// Maximum level written to the log file.
    file_level: AtomicU8,
    quiet: AtomicBool,
    configured: AtomicBool,
    file: Mutex<Option<File>>,
    /// The log file's name, for the warning when it cannot be written.
    path: Mutex<Option<std::path::PathBuf>>,
    /// Whether a write to the log file failed (warned about once).
    write_failed: AtomicBool,
    buffer: Mutex<Vec<(LogLevel, String)>>,
    /// Lines for standard error from before [`configure`].
    pending: Mutex<Vec<String>>,
}

static STATE: OnceLock<Arc<LogState>> = OnceLock::new();

fn state() -> &'static Arc<LogState> {
    STATE.get_or_init(|| {
        Arc::new(LogState {
            file_level: AtomicU8::new(LogLevel::Debug as u8),
            quiet: AtomicBool::new(false),
            configured: AtomicBool::new(false),
            file: Mutex::new(None),
            path: Mutex::new(None),
            write_failed: AtomicBool::new(false),
            buffer: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
        })
    })
}

/// Install the host's subscriber. Call once, first thing.
pub fn init(quiet: bool) {
    state().quiet.store(quiet, Ordering::Relaxed);
    let subscriber = tracing_subscriber::registry().with(HostLayer);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Parse a `--log-level` value.
pub fn parse_level(text: &str) -> Option<LogLevel> {
    Some(match text.to_ascii_lowercase().as_str() {
        "error" | "critical" => LogLevel::Error,
        "warning" | "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return None,
    })
}

/// Why root's log is not written into the file `meta` describes: another
/// user's regular file (made ahead in a sticky folder such as /tmp, where
/// they could read root's log).
fn another_users_file(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match meta.file_type().is_file() && meta.uid() != 0 {
        true => Err(format!(
            "it belongs to {}, and root's log is not written into another user's file",
            plugin_api::private_paths::user_name(meta.uid())
        )),
        false => Ok(()),
    }
}

/// Why root's log is not written in the folder `dir` (the folders above it
/// are judged as a restore target's): another user's (they could put
/// their own file or link in place of the log between runs), or one any
/// user may write in that is not sticky. A folder its group may write in
/// is taken (`/var/log` is root's and group `syslog`'s on some systems):
/// the log itself is checked as it is opened.
fn log_folder_of_root(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = dir
        .symlink_metadata()
        .map_err(|e| format!("{}: {e}", plugin_api::names::escape_path(dir)))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{} on the way belongs to {}",
            plugin_api::names::escape_path(dir),
            plugin_api::private_paths::user_name(meta.uid())
        ));
    }
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(format!(
            "others may write in {} on the way (mode {:o})",
            plugin_api::names::escape_path(dir),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Open the log file for appending (made 0600 if new). Not through
/// another user's symbolic link (one planted where a log goes, in `/tmp`,
/// had a run, as root too, append to whatever it named), and, as root,
/// not in a folder another user could change (see
/// [`plugin_api::private_paths`], [`log_folder_of_root`]) nor into their
/// file ([`another_users_file`]); nor into a FIFO or a socket, which
/// block or refuse (a device, `/dev/null` or `/dev/full`, is fine).
fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let refused = |why: String| std::io::Error::other(why);
    let root = rustix::process::geteuid().is_root();
    if root {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let resolved = plugin_api::private_paths::resolve_private(folder).map_err(refused)?;
        if resolved.missing.is_empty() {
            log_folder_of_root(&resolved.existing).map_err(refused)?;
        }
    }
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    let not_a_file = || refused("it is a FIFO, a socket or a folder, not a file".to_string());
    let looked = path.symlink_metadata();
    let is_link = looked.as_ref().is_ok_and(|m| m.file_type().is_symlink());
    match looked {
        Ok(meta)
            if meta.file_type().is_fifo()
                || meta.file_type().is_socket()
                || meta.file_type().is_dir() =>
        {
            return Err(not_a_file());
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != 0 && meta.uid() != me {
                return Err(refused(format!(
                    "it is a symbolic link of {}, and a log file is not written through \
                     another user's link",
                    plugin_api::private_paths::user_name(meta.uid())
                )));
            }
        }
        _ => {}
    }
    if !is_link {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if kind.is_fifo() || kind.is_socket() || kind.is_dir() {
        return Err(not_a_file());
    }
    // As opened, before a line is written to it (one put in its place
    // since it was looked at is judged too).
    if root {
        another_users_file(&meta).map_err(refused)?;
    }
    // Writes wait again where the file is slow (a device, say).
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::APPEND)?;
    Ok(file)
}

/// Name the log file (if any) and level; write out what was buffered.
pub fn configure(file: Option<&Path>, level: LogLevel, quiet: bool) -> std::io::Result<()> {
    let st = state();
    st.quiet.store(quiet, Ordering::Relaxed);
    st.file_level.store(level as u8, Ordering::Relaxed);
    let mut opened = match file {
        Some(path) => Some(open_log(path)?),
        None => None,
    };
    *st.path.lock().unwrap_or_else(|e| e.into_inner()) = file.map(Path::to_path_buf);
    let buffered = std::mem::take(&mut *st.buffer.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(f) = opened.as_mut() {
        for (lvl, line) in buffered {
            if lvl <= level {
                write_line(st, f, &line);
            }
        }
    }
    *st.file.lock().unwrap_or_else(|e| e.into_inner()) = opened;
    st.configured.store(true, Ordering::Relaxed);
    flush_pending();
    Ok(())
}

/// Print the warnings held back for the terminal (unless quiet as known
/// so far: from the command line and the environment, until the settings
/// are read). Called once `quiet` is known, and by every way out of a run
/// that ends before.
pub fn flush_pending() {
    let st = state();
    let pending = std::mem::take(&mut *st.pending.lock().unwrap_or_else(|e| e.into_inner()));
    if st.quiet.load(Ordering::Relaxed) || output::terminal_silenced() {
        return;
    }
    for line in pending {
        output::clear_status();
        stderr_line!("{line}");
    }
}

/// The most verbose level anything is recorded at (what plugins should forward).
pub fn max_level() -> LogLevel {
    let st = state();
    let file_level = st.file_level.load(Ordering::Relaxed);
    let has_file = st.file.lock().map(|f| f.is_some()).unwrap_or(false);
    if !st.configured.load(Ordering::Relaxed) || has_file {
        level_from_u8(file_level.max(LogLevel::Warn as u8))
    } else {
        LogLevel::Warn
    }
}

fn level_from_u8(n: u8) -> LogLevel {
    match n {
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARNING",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
        LogLevel::Trace => "TRACE",
    }
}

struct HostLayer;

impl<S: Subscriber> Layer<S> for HostLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        level_to_abi(meta.level()) <= max_level() || meta.target() == NOTICE_TARGET
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let level = level_to_abi(meta.level());
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let st = state();
        // The terminal gets obnam's own warnings and errors (the host's and
        // the plugins'); those of the libraries below (an SSH session that
        // broke and will be retried, say) go to the log file only: obnam
        // reports what they mean for the run itself.
        let notice = meta.target() == NOTICE_TARGET;
        if notice || (level <= LogLevel::Warn && meta.target().starts_with("obnam")) {
            let shown = match notice {
                true => text.message().to_string(),
                false => format!("{}: {}", level_name(level), text.message()),
            };
            if !st.configured.load(Ordering::Relaxed) {
                // `quiet` in a config file may yet silence it.
                let mut pending = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.len() < BUFFER_LIMIT {
                    pending.push(shown);
                }
            } else if !st.quiet.load(Ordering::Relaxed) && !output::terminal_silenced() {
                output::clear_status();
                stderr_line!("{shown}");
            }
        }
        let message = text.finish();
        let line = format!(
            "{} {} {}: {message}\n",
            humantime::format_rfc3339_millis(SystemTime::now().max(SystemTime::UNIX_EPOCH)),
            level_name(level),
            meta.target()
        );
        if !st.configured.load(Ordering::Relaxed) {
            let mut buffer = st.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.len() < BUFFER_LIMIT {
                buffer.push((level, line));
            }
            return;
        }
        if level as u8 <= st.file_level.load(Ordering::Relaxed) {
            if let Some(f) = st.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                write_line(st, f, &line);
            }
        }
    }
}

/// Write a line to the log file. A log that cannot be written (a full
/// disk, `/dev/full`) is said once on standard error, as a warning: the run
/// goes on, but nobody should count on the log.
fn write_line(st: &LogState, f: &mut File, line: &str) {
    if let Err(e) = f.write_all(line.as_bytes()) {
        let first = !st.write_failed.swap(true, Ordering::Relaxed);
        if first && !st.quiet.load(Ordering::Relaxed) {
            let path = st.path.lock().unwrap_or_else(|e| e.into_inner()).clone();
            output::clear_status();
            stderr_line!(
                "WARNING: cannot write to the log file {}: {e}; the log is incomplete",
                plugin_api::names::escape_path(path.as_deref().unwrap_or(Path::new("")))
            );
        }
    }
}

/// Re-emit an event a plugin forwarded, with target `obnam::plugin` and
/// the plugin's name.
pub fn plugin_event(plugin: &str, level: LogLevel, target: &str, message: &str) {
    // A panic must not unwind into the plugin.
    let _ = std::panic::catch_unwind(|| match level {
        LogLevel::Error => {
            tracing::error!(target: "obnam::plugin", plugin, plugin_target = target, "{message}")
        }
        LogLevel::Warn => {
            tracing::warn!(target: "obnam::plugin", plugin, plugin_target = target, "{message}")
        }
        LogLevel::Info => {
            tracing::info!(target: "obnam::plugin", plugin, plugin_target = target, "{message}")
        }
        LogLevel::Debug => {
            tracing::debug!(target: "obnam::plugin", plugin, plugin_target = target, "{message}")
        }
        LogLevel::Trace => {
            tracing::trace!(target: "obnam::plugin", plugin, plugin_target = target, "{message}")
        }
    });
}
