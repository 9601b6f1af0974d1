//! Generation and client records that cannot be used, and names in their
//! folders that are not records at all: left out of listings, not fatal.
//!
//! Why: every command lists a client's generations (a backup, to find the
//! one it starts from; a restore of an old generation, to find it), and
//! `fsck`, `stats` and prune list every client's. One damaged record, or
//! a stray file (`.DS_Store`, an editor's backup) in `generations/CLIENT/`,
//! made all of them fail, `forget` included, so that the only way out
//! was deleting the object by hand. Now:
//!
//! - **A damaged record** (it cannot be read, decoded or parsed, or it is
//!   not the record its name says: another generation's, another
//!   client's) is left out of the listing with a warning that says how to
//!   remove it. `fsck` reports it as a problem. `forget GENID` removes a
//!   damaged generation record by its id (its data goes at the next
//!   prune); a backup writes a damaged client record again.
//! - **Prune refuses to run** while a generation record is damaged: what
//!   such a generation refers to cannot be told from unused data, and
//!   prune would delete it. Nothing is deleted until the record is
//!   forgotten (or put back).
//! - **A stray name** (one that is no record's: not a generation id, not a
//!   client id, or a folder where a record should be) is ignored with a
//!   warning. obnam never writes one. (Every file in `index/` is read as
//!   an index object, and one that is none is a damaged index object.)
//!
//! Only damage to the record's content counts (`is_damage`): a record
//! that cannot be read for another reason (the store cannot be reached,
//! the filter that decodes it is not loaded) fails the command, as
//! before: leaving it out would show a client's generations as fewer than
//! they are.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use crate::error::RepoError;

/// The damaged records and stray names one process met.
#[derive(Default)]
pub(crate) struct DamagedRecords {
    /// Damaged records by key, with what is wrong with each.
    damaged: Mutex<BTreeMap<String, Damage>>,
    /// Stray names already warned about.
    strays: Mutex<HashSet<String>>,
    /// The folders listed so far (what [`under`](Self::under) says of
    /// them is as of their latest listing).
    listed: Mutex<HashSet<String>>,
}

/// Whether reading a record failed for its content: damage, which leaves
/// the record out, rather than a failure of the store or of the run.
pub(crate) fn is_damage(e: &RepoError) -> bool {
    e.is_damaged_object()
}

/// What is wrong with one damaged record.
#[derive(Clone, Debug)]
pub(crate) struct Damage {
    /// What is wrong, in words (naming the object).
    pub problem: String,
    /// Whether the damage is known and can be undone: one byte of its
    /// filter header, with which undone it checks (`repair-records`).
    pub repairable: bool,
}

impl Damage {
    /// The damage `e` is, as [`is_damage`] says it is.
    pub(crate) fn of(e: &RepoError) -> Self {
        Damage {
            problem: e.to_string(),
            repairable: matches!(e, RepoError::DamagedHeader { .. }),
        }
    }

    /// Damage found in what a record holds (it does not parse, or is not
    /// the record its name says).
    pub(crate) fn content(problem: String) -> Self {
        Damage {
            problem,
            repairable: false,
        }
    }
}

/// What `repair-records` does about a record whose damage it undoes.
pub const REPAIR_ADVICE: &str = "'obnam repair-records' writes it again with that byte undone";

/// What is wrong with an object `e` says is damaged, in words, with the
/// remedy where its damage is one `repair-records` undoes (an index
/// object's, say: what else is said of one names no remedy that keeps it).
pub(crate) fn said_with_remedy(e: &RepoError) -> String {
    match e {
        RepoError::DamagedHeader { .. } => format!("{e}; {REPAIR_ADVICE}"),
        _ => e.to_string(),
    }
}

/// What to do about `damage` to the record of `key`: how a user puts it
/// right (a filter header whose one damaged byte is known: nothing need
/// be lost), else removes it.
fn remedy(key: &str, damage: &Damage) -> String {
    if damage.repairable {
        return REPAIR_ADVICE.to_string();
    }
    match key
        .strip_prefix("generations/")
        .and_then(|k| k.split_once('/'))
    {
        Some((_, id)) => format!("'obnam forget {id}' removes it"),
        None => "the next backup of its client writes it again".to_string(),
    }
}

impl DamagedRecords {
    /// Note what a listing of `folder` found: the damaged records among
    /// the keys it showed (`listed`), each with its problem. A damaged
    /// record noted before that the listing no longer shows was removed
    /// since, and is forgotten. Each newly damaged record is warned about
    /// once.
    pub(crate) fn note(&self, folder: &str, listed: &HashSet<&str>, found: Vec<(String, Damage)>) {
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(folder.to_string());
        let mut damaged = self.damaged.lock().unwrap_or_else(|e| e.into_inner());
        damaged.retain(|key, _| !key.starts_with(folder) || listed.contains(key.as_str()));
        for (key, damage) in found {
            if !damaged.contains_key(&key) {
                tracing::warn!(
                    "damaged record left out: {}; {}; 'obnam fsck' reports it",
                    damage.problem,
                    remedy(&key, &damage)
                );
            }
            damaged.insert(key, damage);
        }
    }

    /// Warn, once, that `key` is in a folder of records but is none.
    pub(crate) fn stray(&self, key: &str) {
        let mut strays = self.strays.lock().unwrap_or_else(|e| e.into_inner());
        if strays.insert(key.to_string()) {
            tracing::warn!(
                "{key} is not an object obnam writes (no object of its folder has such a name); ignored"
            );
        }
    }

    /// Warn, once, that the client `name` (of id `id`) has generations but
    /// no client record that can be read (missing, or damaged and warned
    /// of already).
    pub(crate) fn client_without_record(&self, id: &str, name: &str) {
        let key = format!("clients/{id}");
        let damaged = self
            .damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&key);
        let mut strays = self.strays.lock().unwrap_or_else(|e| e.into_inner());
        if strays.insert(key.clone()) {
            let what = if damaged { "is damaged" } else { "is missing" };
            tracing::warn!(
                "client '{}' has generations (generations/{id}/) but its client record \
                 ({key}) {what}: the client is taken from its generations; its next backup \
                 writes the record again",
                crate::error::shown(name)
            );
        }
    }

    /// The damaged records noted under `prefix`, by key, with their
    /// damage.
    pub(crate) fn under(&self, prefix: &str) -> Vec<(String, Damage)> {
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, damage)| (key.clone(), damage.clone()))
            .collect()
    }

    /// Whether `folder` has been listed, by itself or with a folder
    /// above it.
    pub(crate) fn was_listed(&self, folder: &str) -> bool {
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|f| folder.starts_with(f.as_str()))
    }

    /// Every damaged record noted, as the problems `fsck` reports.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.under("")
            .into_iter()
            .map(|(key, damage)| {
                format!(
                    "damaged record: {}; {}",
                    damage.problem,
                    remedy(&key, &damage)
                )
            })
            .collect()
    }

    /// Forget `key`: it was removed.
    pub(crate) fn removed(&self, key: &str) {
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// A kind of record listed from a folder: which keys it may have, and
/// whether a record read is the one its key names.
pub(crate) trait Record: serde::de::DeserializeOwned {
    /// Whether `key` is one a record of this kind may have (anything else
    /// in its folder is a stray).
    fn valid_key(key: &str) -> bool;

    /// Why this record, read from `key`, is not the one `key` names, if it
    /// is not. The reason may quote the record (the client it names): it
    /// is shown escaped, as every corrupt object's reason is.
    fn mismatch(&self, repo: &crate::Repository, key: &str) -> Option<String>;
}

/// Whether `text` is a client id: 32 lower-case hex digits.
pub(crate) fn is_client_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
