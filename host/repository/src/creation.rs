//! Creating a repository when several processes may try at once.
//!
//! Creating writes the key slots, then `config`. Two processes creating one
//! repository at the same moment must not both succeed, or one would write
//! its slots and config over the other's. A local folder and SFTP can
//! create a file only if it is absent, and S3 can with `If-None-Match`, but
//! some S3 stores (Garage) ignore that header and overwrite.
//!
//! So a creator first *claims* the creation, with the same write-then-list
//! protocol as the locks ([`super::lock`]): it writes `creating/CLAIMID`
//! (plain JSON naming its host and process: there is no key yet to seal it
//! with, and it is deleted when creation ends), then lists `creating/`. A
//! creator that finds another live claim deletes its own, waits a short
//! random moment and looks again; by then the other has usually written
//! `config`, and the waiter opens that repository instead of creating one.
//! Because each claim is written before the listing that checks for
//! others, of two racing creators at least one sees the other, so both
//! never proceed. This needs no waiting on the happy path, where the
//! read-back it replaced slept a fixed second on S3.
//!
//! A claim whose process is gone (same host, no such pid) or that is older
//! than [`super::lock::STALE_AFTER`] is broken with a warning.

use std::time::{Duration, Instant};

use super::error::{RepoError, RepoResult};
use super::ids::ObjectId;
use super::lock::{Identity, LockKind, LockRecord};
use super::now_ns;
use super::storage::{Storage, StorageError};

/// The folder of creation claims.
const FOLDER: &str = "creating/";

/// What claiming found.
pub enum Claim<'a> {
    /// This process may create the repository; dropping the guard removes
    /// the claim.
    Won(ClaimGuard<'a>),
    /// Another process created the repository meanwhile: its config.
    Created(Vec<u8>),
}

/// A creation claim held by this process.
pub struct ClaimGuard<'a> {
    storage: &'a Storage,
    key: String,
    /// Called with the config's bytes before anything of the new
    /// repository is written or a stray key slot deleted: the creator
    /// may refuse (an encrypted repository this machine knew there, made
    /// anew in the clear), and records them as this machine's
    /// ([`crate::known`]) first, so that a crash before the config is
    /// written leaves no config this machine would take for a replaced
    /// one.
    pub(crate) before_config: Option<BeforeConfig<'a>>,
}

/// See [`ClaimGuard`]'s `before_config`.
pub(crate) type BeforeConfig<'a> =
    Box<dyn Fn(&crate::config::RepoConfig, &[u8]) -> RepoResult<()> + 'a>;

impl ClaimGuard<'_> {
    /// Whether the claim is still there: a creator that waited so long (at
    /// a passphrase prompt, say) that another process broke its claim as
    /// stale must not write its config.
    pub fn still_held(&self) -> RepoResult<bool> {
        Ok(self.storage.exists(&self.key)?)
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.storage.delete(&self.key) {
            tracing::warn!("could not remove the creation claim {}: {e}", self.key);
        }
        // On a filesystem the empty `creating/` folder stays: removing it
        // would race with another creator's write into it (made, then
        // removed, before the claim lands), and fail that creator.
    }
}

/// Claim the creation of the repository in `storage`, waiting up to
/// `timeout` for another creator to finish.
pub fn claim(storage: &Storage, timeout: Duration) -> RepoResult<Claim<'_>> {
    let start = Instant::now();
    let me = Identity::current();
    loop {
        let record = me.record(LockKind::Exclusive, "", now_ns());
        let key = format!("{FOLDER}{}", ObjectId::random());
        let data = serde_json::to_vec(&record).map_err(|e| RepoError::corrupt(&key, e))?;
        if let Err(e) = storage.write(&key, data) {
            // The claim may have landed all the same (its answer lost):
            // left there, it would hold up other creators until found
            // stale.
            let _ = storage.delete(&key);
            return Err(e.into());
        }
        let guard = ClaimGuard {
            storage,
            key,
            before_config: None,
        };
        let blocker = first_live_claim(storage, &guard.key, me)?;
        // A creator that finished before this claim was written has already
        // removed its claim: its config is there to read.
        if let Some(config) = read_config(storage)? {
            return Ok(Claim::Created(config));
        }
        let Some((other_key, other)) = blocker else {
            return Ok(Claim::Won(guard));
        };
        drop(guard);
        if start.elapsed() >= timeout {
            return Err(RepoError::BeingCreated {
                url: storage.url().to_string(),
                holder: Box::new(other.holder(other_key)),
                waited: timeout,
            });
        }
        // Short: the other creator usually needs well under a second.
        let jitter = Duration::from_millis(u64::from(ObjectId::random().0[0]));
        let wait =
            (Duration::from_millis(100) + jitter).min(timeout.saturating_sub(start.elapsed()));
        std::thread::sleep(wait.max(Duration::from_millis(10)));
    }
}

/// The config, if the repository exists by now.
fn read_config(storage: &Storage) -> RepoResult<Option<Vec<u8>>> {
    match storage.read_limited("config", super::config::RECORD_LIMIT) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The first claim other than `mine` that is not stale; stale ones are
/// deleted on the way. A claim's age is by the store's clock where it
/// gives objects' times (against that of `mine`, just written; see
/// [`super::lock::age`]).
fn first_live_claim(
    storage: &Storage,
    mine: &str,
    me: &Identity,
) -> RepoResult<Option<(String, LockRecord)>> {
    let now = now_ns();
    let listed = storage.list_stamped(FOLDER, false)?;
    let store_now = listed
        .iter()
        .find(|(key, _)| key == mine)
        .and_then(|(_, stamp)| stamp.modified_ns);
    for (key, stamp) in listed {
        if key == mine {
            continue;
        }
        let data = match storage.read(&key) {
            Ok(d) => d,
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let other: LockRecord =
            serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&key, e))?;
        let age = super::lock::age(other.refreshed, stamp.modified_ns, store_now, now);
        if let Some(why) = other.staleness(me, age) {
            tracing::warn!(
                "breaking the stale creation claim {key} of host {} (pid {}): {why}",
                other.host,
                other.pid
            );
            storage.delete(&key)?;
            continue;
        }
        return Ok(Some((key, other)));
    }
    Ok(None)
}
