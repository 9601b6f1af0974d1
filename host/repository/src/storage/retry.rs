//! Whole operations run again, from a fresh start, for failures worth it
//! ([`Retries`]). Not OpenDAL's retry layer: over SFTP it would retry on
//! the same file handle of a session that broke, it resumes a read where
//! it broke off (see `Storage::run_read`), and it marks every error as
//! retried, even one it never tried again.

use std::future::Future;
use std::time::Duration;

use opendal::Operator;

use crate::backend::Retries;

/// How many times a failed operation is run again, and the first wait
/// (doubling, at most 10 s, with jitter): the same budget as the retry
/// layer of the other stores, about 12 s in all.
const RETRIES: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(200);

/// Set when the process is about to end at once (a second Ctrl-C): no
/// storage operation starts, nor is tried again, after it. Over SFTP a
/// retry opens a connection, whose ssh master, started in the moments
/// before the process ended, outlived it.
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Start no storage operation from now on (see [`ENDING`]).
pub(crate) fn end_all_operations() {
    ENDING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The error of an operation not started because the process is ending.
pub(crate) fn refused_if_ending() -> Result<(), opendal::Error> {
    match ENDING.load(std::sync::atomic::Ordering::SeqCst) {
        true => Err(opendal::Error::new(
            opendal::ErrorKind::Unexpected,
            "the run is ending: no storage operation starts",
        )),
        false => Ok(()),
    }
}

/// Run `f` with `op`. A failure worth retrying runs the whole operation
/// again, from a fresh start (the connection pool hands out a working
/// session, and a write begins a new file), with growing waits. Only an
/// error that was retried, and failed every time, is marked persistent:
/// the store gave up.
pub async fn run<T, F, Fut>(op: &Operator, retries: &Retries, f: F) -> Result<T, opendal::Error>
where
    F: Fn(Operator) -> Fut,
    Fut: Future<Output = Result<T, opendal::Error>>,
{
    let retryable = retries.retryable;
    let mut wait = FIRST_WAIT;
    for _ in 0..RETRIES {
        refused_if_ending()?;
        match f(op.clone()).await {
            Err(e) if retryable(&e) => {
                let jitter = u32::from(crate::ids::ObjectId::random().0[0]);
                let this_wait = wait + wait * jitter / 512;
                tracing::debug!("storage operation failed ({e}); trying again in {this_wait:?}");
                tokio::time::sleep(this_wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
    refused_if_ending()?;
    f(op.clone())
        .await
        .map_err(|e| if retryable(&e) { e.set_persistent() } else { e })
}
