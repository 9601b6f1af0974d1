//! The faults of one storage operation, and how they are applied to it.

use std::future::Future;
use std::time::Duration;

use super::{FaultKind, Op, MESSAGE};
use crate::storage::StorageError;

/// The faults decided for one operation, all drawn when it starts (so
/// that the draws of one operation never interleave with another's in a
/// single thread, whatever the operation then does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub(super) op: Option<Op>,
    pub(super) key: String,
    pub(super) url: String,
    /// `slow`: wait this long first.
    pub(super) delay: Option<Duration>,
    /// Fail before the operation runs.
    pub(super) fail_before: Option<FaultKind>,
    /// `write-lost-ack`: fail after the operation ran.
    pub(super) fail_after: Option<FaultKind>,
    /// `short-read`: keep this fraction of the bytes (in [0, 1)).
    pub(super) keep: Option<f64>,
    /// `stale-list`: return the listing this much later.
    pub(super) late: Option<Duration>,
}

impl Decision {
    /// Whether the decision injects nothing.
    pub(super) fn is_clean(&self) -> bool {
        self.delay.is_none()
            && self.fail_before.is_none()
            && self.fail_after.is_none()
            && self.keep.is_none()
            && self.late.is_none()
    }

    fn verb(&self) -> &'static str {
        self.op.map_or("use", Op::verb)
    }

    fn error(&self, kind: FaultKind, what: &str) -> StorageError {
        let message = format!("{MESSAGE} ({}: {what})", kind.name());
        tracing::warn!(
            "{MESSAGE}: {} {} of {}: {what}",
            kind.name(),
            self.verb(),
            self.key
        );
        StorageError::Failed {
            url: self.url.clone(),
            op: self.verb(),
            key: self.key.clone(),
            message,
        }
    }

    fn log_delay(&self, kind: FaultKind, delay: Duration) {
        tracing::warn!(
            "{MESSAGE}: {} {} of {} delayed by {} ms",
            kind.name(),
            self.verb(),
            self.key,
            delay.as_millis()
        );
    }

    /// Run `f`, the operation, under this decision: wait, fail before, run,
    /// fail after, cut what was read, or return late.
    pub fn run<T: Faultable>(
        &self,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Some(delay) = self.delay {
            self.log_delay(FaultKind::Slow, delay);
            std::thread::sleep(delay);
        }
        if let Some(kind) = self.fail_before {
            return Err(self.error(kind, "nothing was done"));
        }
        let mut out = f()?;
        self.after(&mut out)?;
        if let Some(late) = self.late {
            self.log_delay(FaultKind::StaleList, late);
            std::thread::sleep(late);
        }
        Ok(out)
    }

    /// [`run`](Self::run) for an operation that runs on the storage's
    /// runtime (a background write): the same faults, waiting without
    /// blocking the runtime.
    pub async fn run_async<T: Faultable>(
        &self,
        f: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        if let Some(delay) = self.delay {
            self.log_delay(FaultKind::Slow, delay);
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = self.fail_before {
            return Err(self.error(kind, "nothing was done"));
        }
        let mut out = f.await?;
        self.after(&mut out)?;
        if let Some(late) = self.late {
            self.log_delay(FaultKind::StaleList, late);
            tokio::time::sleep(late).await;
        }
        Ok(out)
    }

    /// The faults that act on an operation that succeeded.
    fn after<T: Faultable>(&self, out: &mut T) -> Result<(), StorageError> {
        if let Some(kind) = self.fail_after {
            return Err(self.error(kind, "it was done, but reported as failed"));
        }
        if let Some(keep) = self.keep {
            let len = out.byte_len();
            // Strictly shorter (an empty object cannot be cut).
            let cut = ((len as f64 * keep) as usize).min(len.saturating_sub(1));
            if cut < len {
                tracing::warn!(
                    "{MESSAGE}: {} {} of {} returned {cut} of its {len} bytes",
                    FaultKind::ShortRead.name(),
                    self.verb(),
                    self.key
                );
                out.keep_first(cut);
            }
        }
        Ok(())
    }
}

/// What an operation returns, as far as `short-read` is concerned: bytes
/// can be cut, anything else is left alone.
pub trait Faultable {
    /// The number of bytes (0 for what is not bytes).
    fn byte_len(&self) -> usize {
        0
    }
    /// Keep the first `n` bytes.
    fn keep_first(&mut self, _n: usize) {}
}

impl Faultable for () {}
impl Faultable for bool {}
impl Faultable for Vec<String> {}
impl Faultable for Vec<(String, crate::storage::Stamp)> {}
impl Faultable for crate::storage::FolderListing {}

impl Faultable for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn keep_first(&mut self, n: usize) {
        self.truncate(n);
    }
}

impl Faultable for opendal::Buffer {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn keep_first(&mut self, n: usize) {
        self.truncate(n);
    }
}
