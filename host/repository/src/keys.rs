//! Key slots and the unlocking of a repository when it is opened.
//!
//! The engine does no cryptography. A sealed (encrypted) repository names
//! its sealing filter in the config; the plugin providing that filter keeps
//! the repository's master key wrapped in *key slots*, small text objects
//! under `keys/` that are stored as they are (they must be readable before
//! anything can be decrypted). The engine stores and lists them for the
//! plugin and, at open, hands them over through [`ObjectFilter::unlock`];
//! the answer carries the key for chunk tokens and, for a new repository,
//! the seal to record and the first key slots.
//!
//! This module also adds to [`Repository`] the operations on key slots
//! ([`Repository::key_slots`], [`Repository::put_key_slot`],
//! [`Repository::remove_key_slot`]).
//!
//! Creation writes the key slots before the config: the config is what
//! makes a folder a repository, so a crash in between leaves no repository
//! whose keys are missing, only stray slots that the next creation removes.

use super::config::{parse_config, RepoConfig, FORMAT_VERSION, RECORD_LIMIT};
use super::creation::ClaimGuard;
use super::error::{RepoError, RepoResult};
use super::object::{missing_filter_message, ObjectFilter, UnlockRequest, Unlocked};
use super::storage::{Storage, StorageError};
use super::Repository;

const FOLDER: &str = "keys/";

/// Whether `id` is acceptable as a key slot id: short, and only
/// characters that are safe in every store's object names.
pub fn valid_slot_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bad_id(id: &str) -> RepoError {
    RepoError::Usage(format!(
        "'{id}' is not a valid key slot id (1 to 64 letters, digits, '-' or '_')"
    ))
}

/// Every key slot: id and text, sorted by id.
pub fn list(storage: &Storage) -> RepoResult<Vec<(String, String)>> {
    let mut slots = Vec::new();
    for id in storage.list(FOLDER)? {
        let key = format!("{FOLDER}{id}");
        let bytes = match storage.read_limited(&key, RECORD_LIMIT) {
            Ok(bytes) => bytes,
            // Removed since the listing.
            Err(StorageError::NotFound { .. }) => continue,
            // One object that cannot be a slot (too large, not a file) is
            // a damaged slot, skipped as one that does not parse is: it
            // stopped every command, for every secret, `key remove` of it
            // included.
            // Given as empty text, which no slot is: the plugins skip it
            // as damaged, and `key remove` finds it.
            Err(e @ StorageError::Damaged { .. }) => {
                tracing::debug!("{e}");
                slots.push((id, String::new()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match String::from_utf8(bytes) {
            Ok(text) => slots.push((id, text)),
            Err(_) => tracing::warn!("key slot {key} is not text; ignoring it"),
        }
    }
    slots.sort();
    Ok(slots)
}

/// Store a key slot. An existing slot is never overwritten.
pub fn put(storage: &Storage, id: &str, text: &str) -> RepoResult<()> {
    if !valid_slot_id(id) {
        return Err(bad_id(id));
    }
    let key = format!("{FOLDER}{id}");
    if storage.exists(&key)? {
        return Err(RepoError::Usage(format!("key slot {id} already exists")));
    }
    storage.write(&key, text.as_bytes().to_vec())?;
    Ok(())
}

/// Remove a key slot.
pub fn remove(storage: &Storage, id: &str) -> RepoResult<()> {
    if !valid_slot_id(id) {
        return Err(bad_id(id));
    }
    let key = format!("{FOLDER}{id}");
    if !storage.exists(&key)? {
        return Err(RepoError::Usage(format!("there is no key slot {id}")));
    }
    storage.delete(&key)?;
    Ok(())
}

/// Write a new repository's config unless another process created one
/// first; returns the other's config if it did. The creation claim keeps
/// other creators away; this catches what it cannot: a claim broken as
/// stale while its holder was still at work.
fn lost_creation_race(
    storage: &Storage,
    claim: &ClaimGuard<'_>,
    config: &RepoConfig,
    bytes: Vec<u8>,
) -> RepoResult<Option<RepoConfig>> {
    if !claim.still_held()? {
        return Err(RepoError::Usage(format!(
            "another obnam took over creating repository {} while this one waited; \
             nothing was written; run again to use it",
            storage.url()
        )));
    }
    // Whose it is, not whether this call wrote it, tells: a write retried
    // after a lost answer finds its own config already there.
    storage.create_new("config", bytes)?;
    let stored = parse_config(
        storage.url(),
        &storage.read_limited("config", RECORD_LIMIT)?,
    )?;
    Ok((stored.id != config.id).then_some(stored))
}

/// Unlock a repository being opened, or choose the seal of one being
/// created (and then write its key slots and its config). Returns the
/// config as it now is and the token key.
pub fn unlock(
    storage: &Storage,
    filter: &dyn ObjectFilter,
    mut config: RepoConfig,
    claim: Option<&ClaimGuard<'_>>,
) -> RepoResult<(RepoConfig, Option<[u8; 32]>)> {
    let creating = claim.is_some();
    let url = storage.url().to_string();
    if let Some(tag) = config.seal_tag() {
        if !filter.provides(tag) {
            // A filter's tag, not a plugin's name: a loaded plugin's name
            // there (`compress`) is no seal at all.
            return Err(RepoError::Filter(format!(
                "{} (is the plugin of that filter not loaded, or was the config changed?)",
                missing_filter_message(&format!("repository {url} is encrypted: it"), tag)
            )));
        }
    } else if config.seal.is_some() {
        return Err(RepoError::corrupt("config", "its seal names no filter"));
    }
    let key_slots = if creating { Vec::new() } else { list(storage)? };
    // Key slots belong to a sealed repository. Without a seal in the
    // config, obnam would take plain objects put in by anyone for good:
    // refuse a config that lost its seal rather than read it as plain.
    if config.seal.is_none() && !key_slots.is_empty() {
        return Err(RepoError::corrupt(
            "config",
            "it names no seal, but the repository holds key slots: \
             an encrypted repository whose config was altered",
        ));
    }
    let request = UnlockRequest {
        url: url.clone(),
        repository_id: config.id.clone(),
        creating,
        pretending: false,
        seal: config.seal.clone(),
        key_slots,
    };
    let answer = filter.unlock(&request).map_err(RepoError::Filter)?;
    if let Some(claim) = claim {
        if let Some(theirs) = write_new(storage, filter, &mut config, claim, &answer)? {
            return Ok((theirs, None));
        }
    } else if !answer.new_key_slots.is_empty() || answer.seal.is_some() {
        return Err(RepoError::Filter(
            "a plugin tried to change the seal of an existing repository".into(),
        ));
    }
    if let Some(tag) = config.seal_tag() {
        if answer.token_key.is_none() {
            return Err(RepoError::Filter(format!(
                "repository {url} is encrypted, but the '{tag}' filter did not unlock it"
            )));
        }
        Ok((config, answer.token_key))
    } else {
        Ok((config, None))
    }
}

/// Ask the filters whether a new repository could be made in `storage`,
/// for a run that pretends to make it: a sealing filter fails as the
/// creation would (no secret given, a bad cipher), and what it answers is
/// not used. Nothing is written.
pub fn check_creation(storage: &Storage, filter: &dyn ObjectFilter) -> RepoResult<()> {
    let request = UnlockRequest {
        url: storage.url().to_string(),
        repository_id: String::new(),
        creating: true,
        pretending: true,
        seal: None,
        key_slots: Vec::new(),
    };
    filter.unlock(&request).map_err(RepoError::Filter)?;
    Ok(())
}

/// Make a new repository of what the filters answered: record the seal
/// they chose, and write the key slots and then the config. Returns the
/// config of another obnam that created the repository at the same
/// moment, if one did (and then nothing of this one is left).
fn write_new(
    storage: &Storage,
    filter: &dyn ObjectFilter,
    config: &mut RepoConfig,
    claim: &ClaimGuard<'_>,
    answer: &Unlocked,
) -> RepoResult<Option<RepoConfig>> {
    let url = storage.url();
    if let Some(seal) = &answer.seal {
        let tag = seal.get("filter").and_then(|t| t.as_str()).unwrap_or("");
        if !filter.provides(tag) {
            return Err(RepoError::Filter(format!(
                "a plugin chose the seal '{tag}', but no loaded filter has that tag"
            )));
        }
        if answer.new_key_slots.is_empty() {
            return Err(RepoError::Filter(format!(
                "the '{tag}' seal gave no key slot; the repository would be unreadable"
            )));
        }
        // Checked before anything is written: a sealed repository whose
        // creation gave no token key could never be opened again.
        if answer.token_key.is_none() {
            return Err(RepoError::Filter(format!(
                "the '{tag}' seal gave no token key; the repository would be unreadable; \
                 nothing was written"
            )));
        }
        config.seal = Some(seal.clone());
        config.version = FORMAT_VERSION;
    }
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::corrupt("config", e))?;
    // Before anything is written or deleted: the creator may refuse.
    if let Some(before) = &claim.before_config {
        before(config, &bytes)?;
    }
    // Slots left by a creation that crashed before writing its config
    // belong to a key nobody holds.
    for (id, _) in list(storage)? {
        storage.delete(&format!("{FOLDER}{id}"))?;
    }
    for (id, text) in &answer.new_key_slots {
        put(storage, id, text)?;
    }
    if let Some(theirs) = lost_creation_race(storage, claim, config, bytes)? {
        for (id, _) in &answer.new_key_slots {
            let _ = storage.delete(&format!("{FOLDER}{id}"));
        }
        if config.seal.is_some() || theirs.seal.is_some() {
            return Err(RepoError::Usage(format!(
                "another obnam created repository {url} at the same moment; \
                 nothing was written; run again to use it"
            )));
        }
        tracing::info!(
            "repository {url} was created at the same moment by another obnam; using it"
        );
        return Ok(Some(theirs));
    }
    match config.seal_tag() {
        Some(tag) => tracing::info!(
            "created repository {url} with id {}, sealed with '{tag}'",
            config.id
        ),
        None => tracing::info!("created repository {url} with id {}", config.id),
    }
    Ok(None)
}

impl Repository {
    /// The key slots: id and text, sorted by id.
    pub fn key_slots(&self) -> RepoResult<Vec<(String, String)>> {
        list(&self.storage)
    }

    /// Store a new key slot (never replacing one).
    pub fn put_key_slot(&self, id: &str, text: &str) -> RepoResult<()> {
        put(&self.storage, id, text)?;
        crate::done::note(format!(
            "key slot {id} was added: it opens the repository with the new secret \
             ('obnam key list' shows which slots there are)"
        ));
        Ok(())
    }

    /// Remove a key slot; not if a lock this process holds (the
    /// exclusive lock under which removals are checked) was broken.
    pub fn remove_key_slot(&self, id: &str) -> RepoResult<()> {
        self.check_locks_held()?;
        remove(&self.storage, id)
    }
}
