//! What happens when the run is interrupted: Ctrl-C (SIGINT), SIGTERM, or
//! SIGHUP (the terminal went away).
//!
//! Without this, the process would simply die, as with `kill -9`. The
//! repository survives that (every write is ordered so that a crash leaves
//! it consistent), but the run's locks would stay until they are judged
//! stale, and over SFTP the ssh processes carrying the connections would
//! run on. So a thread waits for these signals and, on the first:
//!
//! 1. calls the `run-interrupted` hook, so that plugins release what
//!    they hold outside the repository (the mount plugin unmounts);
//! 2. stops the repository from starting any more writes;
//! 3. releases the run's locks;
//! 4. closes the repository (its connections, and their ssh processes);
//! 5. ends the process with exit code 128 + the signal's number, after
//!    saying `ERROR: interrupted by SIGINT`.
//!
//! Meanwhile the command's own thread sees its writes refused and fails;
//! [`hold_if_interrupted`] keeps it from printing that failure or ending
//! the process first, and the terminal shows nothing more from any thread
//! (warnings about refused writes still go to the log) but the final
//! line. A second signal ends the process at once.
//!
//! The wind-down never waits for the command's thread: the repository's
//! slot is not held while the repository is opened (which may wait long,
//! for another process's creation of it or a slow network), so a signal
//! during the open ends the run at once (the open, if it finishes, then
//! holds its thread until the process ends). Nor does the command's
//! thread block forever in a read: a local repository's reads refuse a
//! FIFO or device where an object should be rather than wait on it, and
//! every remote operation has a timeout.
//!
//! A signal that obnam was started with ignored stays ignored: `nohup`
//! ignores SIGHUP so that a run goes on after a logout, and a shell
//! running a script ignores SIGINT for the jobs it starts in the
//! background; a handler would replace that inherited "ignore".

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit;
use crate::output;
use crate::services::Host;

/// The signal that interrupted the run, once one has.
static INTERRUPTED: OnceLock<i32> = OnceLock::new();

/// Whether a second signal is ending the process at once: the wind-down
/// then ends nothing itself.
static STOPPING_AT_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Start the thread that handles interruptions for the run of `host`.
pub fn install(host: Arc<Host>) {
    // A file-size limit (`ulimit -f`) killed the process by SIGXFSZ at the
    // write that went past it: no word, a lock and half-restored files
    // left. Handled (by a handler that only sets a flag), the write fails
    // with EFBIG instead, and the run reports it as any write that fails.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let handled: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&signal| !ignored_at_start(signal))
        .collect();
    let mut signals = match Signals::new(&handled) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!("cannot handle interruptions (Ctrl-C will stop obnam abruptly): {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("obnam-interrupt".into())
        .spawn(move || {
            for signal in signals.forever() {
                if INTERRUPTED.set(signal).is_err() {
                    // A second signal: the user does not want to wait. Said
                    // first, and the wind-down told to end nothing itself:
                    // the ssh processes ended below fail its lock's release
                    // at once, and it ended the process with the first
                    // signal's orderly line, no word of the lock left.
                    STOPPING_AT_ONCE.store(true, std::sync::atomic::Ordering::SeqCst);
                    stderr_line!(
                        "ERROR: interrupted by {} again: stopped at once (a lock may be left \
                         behind, to be broken as stale)",
                        name(signal)
                    );
                    // The connections' ssh processes are told to end all
                    // the same (a double Ctrl-C left them running for good).
                    obnam_repository::backend::sftp::end_ssh_processes_at_once();
                    plugin_api::exit_guard::end_process(exit::interrupted_by(signal));
                }
                output::silence_terminal();
                // Winding down may take a while on a slow network: in a
                // thread of its own, so that this one hears a second signal.
                let winding = host.clone();
                let spawned = std::thread::Builder::new()
                    .name("obnam-wind-down".into())
                    .spawn(move || end_run(&winding, signal));
                if spawned.is_err() {
                    end_run(&host, signal);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot handle interruptions (Ctrl-C will stop obnam abruptly): {e}");
    }
}

/// How long the `run-interrupted` hook's callbacks may take before the
/// run winds down without them: a callback that never returns kept the
/// run, its locks and its connections, silent after the Ctrl-C, until a
/// second signal ended it abruptly.
const CALLBACKS_WAITED_FOR: Duration = Duration::from_secs(10);

/// How long the release of the run's locks and the closing of its
/// connections may take before the run ends without them: a store that
/// stopped answering (a frozen NAS, an S3 endpoint that accepts
/// connections and never answers) kept a Ctrl-C'd run silent for minutes.
const WIND_DOWN_WAITED_FOR: Duration = Duration::from_secs(15);

/// How long the wind-down waits for the writes under way to end before
/// it releases the run's locks (within [`WIND_DOWN_WAITED_FOR`]).
const WRITES_WAITED_FOR: Duration = Duration::from_secs(10);

/// Wind down and end the process, as interrupted by `signal`.
fn end_run(host: &Arc<Host>, signal: i32) -> ! {
    tell_plugins(host, signal);
    wind_down_within(host, WIND_DOWN_WAITED_FOR);
    while STOPPING_AT_ONCE.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::park();
    }
    let message = match obnam_repository::done::noted() {
        Some(done) => format!("interrupted by {} after {done}", name(signal)),
        None => format!("interrupted by {}", name(signal)),
    };
    stderr_line!("ERROR: {message}");
    crate::logging::log_final_error(&message);
    crate::logging::log_exit_code(exit::interrupted_by(signal));
    plugin_api::exit_guard::end_process(exit::interrupted_by(signal));
}

/// Call the `run-interrupted` hook (see
/// [`plugin_api::payloads::RUN_INTERRUPTED`]); a failure is logged. Its
/// callbacks run in a thread of their own, waited for no longer than
/// [`CALLBACKS_WAITED_FOR`]: then a warning says so, and the run winds
/// down without them.
fn tell_plugins(host: &Arc<Host>, signal: i32) {
    let hook = plugin_api::payloads::RUN_INTERRUPTED;
    let payload = serde_json::json!({ "signal": name(signal) });
    let (done, finished) = std::sync::mpsc::channel();
    let calling = host.clone();
    let spawned = std::thread::Builder::new()
        .name("obnam-interrupt-hook".into())
        .spawn(move || {
            let _ = done.send(calling.call_json_hook(hook, payload));
        });
    if let Err(e) = spawned {
        tracing::warn!("hook {hook}: cannot start a thread to call it: {e}");
        return;
    }
    match finished.recv_timeout(CALLBACKS_WAITED_FOR) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("hook {hook}: {e}"),
        Err(_) => stderr_line!(
            "WARNING: the plugins' callbacks of hook {hook} did not return within {} s: \
             winding down without them (what they were to release outside the repository, \
             such as a mount, may be left)",
            CALLBACKS_WAITED_FOR.as_secs()
        ),
    }
}

/// Leave the repository as the end of a run would: nothing more written,
/// locks released (each delete tried once), connections closed; waited
/// for no longer than `limit`, then said so, and the connections' ssh
/// processes told to end.
fn wind_down_within(host: &Arc<Host>, limit: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    let winding = host.clone();
    let spawned = std::thread::Builder::new()
        .name("obnam-release".into())
        .spawn(move || {
            wind_down(&winding);
            let _ = done.send(());
        });
    if spawned.is_err() {
        wind_down(host);
        return;
    }
    if finished.recv_timeout(limit).is_err() {
        stderr_line!(
            "WARNING: the repository did not answer within {} s: the run ends without \
             releasing its lock (the next run breaks it once it is stale; 'obnam force-lock' \
             removes it)",
            limit.as_secs()
        );
        obnam_repository::backend::sftp::end_ssh_processes_at_once();
    }
}

fn wind_down(host: &Host) {
    let Some(repo) = host.opened_repository() else {
        // Interrupted while the repository was being opened: over SFTP
        // its connections' ssh processes are this process's children (or
        // about to fork a master), which no close will end. Left, they
        // held their sessions until the next run (interrupted in the first
        // 0.3 s, a prune or fsck left its master).
        obnam_repository::backend::sftp::end_ssh_processes_at_once();
        host.close_repository();
        return;
    };
    repo.stop_writes();
    // A write under way (a generation record, say) ends before the
    // locks go, or they stay: written after its lock was gone, it
    // could name data that a prune planning meanwhile deletes.
    if !repo.writes_done_within(WRITES_WAITED_FOR) {
        stderr_line!(
            "WARNING: a write to the repository was still under way after {} s: the run \
             ends without releasing its lock (the next run breaks it once it is stale; \
             'obnam force-lock' removes it)",
            WRITES_WAITED_FOR.as_secs()
        );
        host.close_repository();
        return;
    }
    if let Err(e) = repo.unlock_all_tried_once() {
        // On the terminal too, which is silent while the run winds
        // down: the lock stays, and another host's runs wait for it.
        stderr_line!(
            "WARNING: the run's lock could not be released ({e}): the next run breaks it \
             once it is stale; 'obnam force-lock' removes it"
        );
    }
    host.close_repository();
}

/// If the run was interrupted, wait for the interruption's thread to end
/// the process; otherwise return at once. For the command's thread, before
/// it reports an outcome that the interruption decides.
pub fn hold_if_interrupted() {
    if INTERRUPTED.get().is_some() {
        loop {
            std::thread::park();
        }
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Whether the process started with `signal` ignored, from the `SigIgn`
/// mask of `/proc/self/status` (bit N-1 for signal N). Read before any
/// handler is installed, so it is what the parent left. Elsewhere than
/// Linux: SIGHUP is taken as ignored (left alone, as it may be meant to
/// be), the others as not.
fn ignored_at_start(signal: i32) -> bool {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("SigIgn:"))?;
            u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).ok()
        });
    match mask {
        Some(mask) => signal_in_mask(mask, signal),
        None => signal == SIGHUP,
    }
}

fn signal_in_mask(mask: u64, signal: i32) -> bool {
    (1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignored_mask_is_read_by_signal_number() {
        // `nohup` leaves SigIgn 0000000000000001: SIGHUP (1) ignored.
        assert!(signal_in_mask(0x1, SIGHUP));
        assert!(!signal_in_mask(0x1, SIGINT));
        assert!(signal_in_mask(0x3, SIGINT));
        assert!(signal_in_mask(1 << (SIGTERM - 1), SIGTERM));
        assert!(!signal_in_mask(u64::MAX, 0));
        assert!(!signal_in_mask(u64::MAX, 65));
    }
}
