//! How many writes go to the store at once: as many as the run makes (the
//! upload keeps several packs in flight) until a write times out, then one
//! at a time for the rest of the run.
//!
//! `--storage-timeout` bounds a whole write, and the writes in flight share
//! the uplink: six packs of 8 MiB in 120 s need 0.4 MB/s, more than many
//! home uplinks give, and every pack timed out, again on every retry, so
//! that the backup could never finish. One write at a time needs a sixth
//! of that (one pack per timeout), and costs a fast link nothing, since a
//! fast link never times out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Writes at once before any timed out: more than the run ever makes, so
/// that the gate holds nothing back until it narrows.
const WIDE: usize = 64;

/// The gate every write attempt passes (see the module's documentation).
pub(crate) struct WriteGate {
    permits: Semaphore,
    /// Permits still to take out of circulation as writes end: narrowing
    /// cannot take the permits of writes in flight, so each gives its own
    /// up when it ends, until one is left.
    debt: AtomicUsize,
    narrowed: AtomicBool,
}

/// One write's turn; ends when dropped.
pub(crate) struct Pass<'a> {
    permit: Option<SemaphorePermit<'a>>,
    gate: &'a WriteGate,
}

impl WriteGate {
    pub(crate) fn new() -> Self {
        WriteGate {
            permits: Semaphore::new(WIDE),
            debt: AtomicUsize::new(0),
            narrowed: AtomicBool::new(false),
        }
    }

    /// Wait for a turn to write.
    pub(crate) async fn enter(&self) -> Pass<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.permits.acquire().await.ok();
        Pass { permit, gate: self }
    }

    /// Learn from a failed write: one that timed out narrows the gate to
    /// one write at a time (once; `url` names the store in the warning).
    pub(crate) fn failed(&self, error: &opendal::Error, url: &str) {
        if !error.message().contains("timeout reached")
            || self.narrowed.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let forgotten = self.permits.forget_permits(WIDE - 1);
        self.debt.store(WIDE - 1 - forgotten, Ordering::SeqCst);
        tracing::warn!(
            "{url}: a write did not end within --storage-timeout; writing one object at a \
             time from now on (a server that stopped answering, or a slow link: on one, a \
             larger --storage-timeout or a smaller --pack-size would let more go at once)"
        );
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let owed = self
            .gate
            .debt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        if owed.is_ok() {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> opendal::Error {
        opendal::Error::new(
            opendal::ErrorKind::Unexpected,
            "io operation timeout reached",
        )
        .set_temporary()
    }

    #[test]
    fn a_timeout_narrows_the_gate_to_one_write_even_with_writes_in_flight() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let gate = WriteGate::new();
            let mut passes = Vec::new();
            for _ in 0..6 {
                passes.push(gate.enter().await);
            }
            gate.failed(
                &opendal::Error::new(opendal::ErrorKind::PermissionDenied, "denied"),
                "s3://b",
            );
            assert!(
                !gate.narrowed.load(Ordering::SeqCst),
                "only a timeout narrows"
            );
            gate.failed(&timeout(), "s3://b");
            assert!(gate.narrowed.load(Ordering::SeqCst));
            // The six in flight end; one turn is left, whoever asks.
            drop(passes);
            let one = gate.enter().await;
            assert!(gate.permits.try_acquire().is_err(), "a second turn at once");
            drop(one);
            let again = gate.enter().await;
            assert_eq!(gate.permits.available_permits(), 0);
            drop(again);
            assert_eq!(gate.permits.available_permits(), 1);
            // A second timeout changes nothing.
            gate.failed(&timeout(), "s3://b");
            assert_eq!(gate.permits.available_permits(), 1);
        });
    }

    #[test]
    fn a_gate_that_never_saw_a_timeout_holds_no_write_back() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let gate = WriteGate::new();
            let mut passes = Vec::new();
            for _ in 0..WIDE {
                passes.push(gate.enter().await);
            }
            assert_eq!(gate.permits.available_permits(), 0);
            drop(passes);
            assert_eq!(gate.permits.available_permits(), WIDE);
        });
    }
}
