//! Generations: a client's committed snapshots, how they are read, and how
//! a new one is built.
//!
//! A generation object (`generations/CLIENTID/GENID`, JSON through the data
//! filters) records start and end time, file count, data size, whether it
//! is a checkpoint, and the id of its root tree. Generations are immutable.
//!
//! [`GenerationReader`] looks up entries by absolute path, loading only the
//! trees on the way (with a small cache, so a walk in order reads each tree
//! once). [`GenerationBuilder`] makes the next generation: it starts from
//! the client's latest generation and keeps an in-memory overlay of the
//! directories being changed. A backup puts the entries it finds and calls
//! [`GenerationBuilder::finish_dir`] when it has walked a directory: then
//! entries of that directory not put in this run are dropped and the
//! directory is written as a tree object and dropped from memory, so
//! memory holds only the directories on the current path of the walk. A
//! directory whose entries all came back unchanged is not written: it is
//! its previous tree again.
//! A checkpoint writes the overlay as it is (unvisited directories keep
//! their old content) and carries on.
//!
//! This module has the generation object and adds to [`Repository`] the
//! operations on generation objects ([`Repository::generations`],
//! [`Repository::generation`], [`Repository::remove_generation`]); the
//! reader is in `reader.rs`, the builder in `builder.rs`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::{BadPath, RepoError, RepoResult};
use super::ids::GenerationId;
use super::storage::StorageError;
use super::tree::StoredChunkId;
use super::Repository;

mod builder;
mod prefetch;
mod reader;

pub use builder::{GenerationBuilder, LeftOut};
pub use reader::GenerationReader;

/// A committed generation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Generation {
    pub id: String,
    pub client: String,
    /// Start and end of the run that made it, in ns since the epoch.
    pub started: i64,
    pub ended: i64,
    pub file_count: u64,
    pub data_size: u64,
    pub is_checkpoint: bool,
    pub root: StoredChunkId,
    /// The generation's place in its client's order: one more than the
    /// highest of the client's generations when it was committed (under
    /// the client's lock, so no two commits of a client interleave). 0 in
    /// generations written before obnam recorded it; they come first, in
    /// the order of their start times.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// A digest of the machine that made it ([`crate::machine`]); empty
    /// in generations written before obnam recorded it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
    /// The host name of that machine, for messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The user (id) who ran the backup that made it; `None` in
    /// generations written before obnam recorded it. Users of one machine
    /// who back up into one repository under one client name (the host
    /// name, by default) share one history, as two machines would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The start of the earliest run whose entries this generation holds
    /// unchecked, where that is before `started`: a checkpoint holds the
    /// previous generation's entries for what its run had not reached,
    /// and a run that could not list a folder keeps the previous
    /// generation's subtree of it. A file changed in the same tick of the
    /// file system's clock as a run read it looks unchanged to the next
    /// run unless its times are judged against the start of the run that
    /// read it ([`racy_from`](Self::racy_from)); judged against a later
    /// start, such a file was trusted for good. `None`: `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub racy_from: Option<i64>,
}

impl Generation {
    /// The time from which a file's entry in this generation may have
    /// been recorded while the file was being changed: the start of the
    /// earliest run whose entries it holds (see the field `racy_from`).
    pub fn racy_from(&self) -> i64 {
        self.racy_from.map_or(self.started, |r| r.min(self.started))
    }
}

/// A generation record left out of the listings (see
/// [`Repository::damaged_generations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedGeneration {
    /// The generation's id.
    pub id: String,
    /// What is wrong with it.
    pub problem: String,
    /// Whether `repair-records` undoes the damage (one byte of its filter
    /// header, proven).
    pub repairable: bool,
}

impl crate::damaged_records::Record for Generation {
    /// `generations/CLIENTID/GENID`.
    fn valid_key(key: &str) -> bool {
        let parts: Vec<&str> = key.split('/').collect();
        matches!(
            parts.as_slice(),
            ["generations", client, id]
                if crate::damaged_records::is_client_id(client) && GenerationId::parse(id).is_ok()
        )
    }

    /// A record under another generation's id, or another client's
    /// folder, would show that generation twice, or in the wrong place.
    fn mismatch(&self, repo: &Repository, key: &str) -> Option<String> {
        if key.rsplit('/').next() != Some(self.id.as_str()) {
            return Some(format!("it is the record of generation {}", self.id));
        }
        if key != repo.generation_key(&self.client, &self.id) {
            return Some(format!(
                "it is the record of a generation of client '{}'",
                self.client
            ));
        }
        None
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Oldest first: in the order they were committed.
fn sort_generations(gens: &mut [Generation]) {
    gens.sort_by(|a, b| (a.seq, a.started, &a.id).cmp(&(b.seq, b.started, &b.id)));
}

impl Repository {
    fn generation_key(&self, client: &str, id: &str) -> String {
        format!("generations/{}/{id}", self.client_id(client))
    }

    /// A client's generations, oldest first: in the order they were
    /// committed (`seq`), whatever the clocks of the machines that made
    /// them said.
    pub fn generations(&self, client: &str) -> RepoResult<Vec<Generation>> {
        let folder = format!("generations/{}/", self.client_id(client));
        // A record gone since the listing was removed meanwhile (a
        // checkpoint, say). On a remote store, only the records this
        // machine has not cached are read ([`crate::record_cache`]).
        let records = self.read_listed_records::<Generation>(&folder, false, &|_| true)?;
        let keys: Vec<String> = records.iter().map(|(key, _)| key.clone()).collect();
        let mut gens: Vec<Generation> = records.into_iter().map(|(_, gen)| gen).collect();
        sort_generations(&mut gens);
        self.load_index_for_generations(&keys)?;
        Ok(gens)
    }

    /// Every client's generations, oldest first, by client id (see
    /// [`client_id`](Self::client_id)): one listing of `generations/` and
    /// one of the index, where a call of [`generations`](Self::generations)
    /// per client makes two listings a client.
    pub(crate) fn all_generations(&self) -> RepoResult<HashMap<String, Vec<Generation>>> {
        let records = self.read_listed_records::<Generation>("generations/", true, &|_| true)?;
        let keys: Vec<String> = records.iter().map(|(key, _)| key.clone()).collect();
        let mut by_client: HashMap<String, Vec<Generation>> = HashMap::new();
        for (key, gen) in records {
            let client = key
                .strip_prefix("generations/")
                .and_then(|k| k.split_once('/'))
                .map_or("", |(client, _)| client);
            by_client.entry(client.to_string()).or_default().push(gen);
        }
        by_client
            .values_mut()
            .for_each(|gens| sort_generations(gens));
        self.load_index_for_generations(&keys)?;
        Ok(by_client)
    }

    /// One generation by id.
    pub fn generation(&self, client: &str, id: &str) -> RepoResult<Generation> {
        let (key, gen) = self.generation_record(client, id)?;
        self.load_index_for_generations(&[key])?;
        Ok(gen)
    }

    /// One generation's record, the index left as it is (for removing it,
    /// which reads nothing it refers to).
    fn generation_record(&self, client: &str, id: &str) -> RepoResult<(String, Generation)> {
        let gen_id = GenerationId::parse(id)
            .map_err(|_| RepoError::NoSuchGeneration(client.into(), id.into()))?;
        let key = self.generation_key(client, gen_id.as_str());
        // Listed by this process a moment ago (restore lists, then opens
        // the one it picked), or read now.
        let listed = self.records.listed_record(&key).map(Ok);
        let data = match listed.unwrap_or_else(|| self.read_object(&key)) {
            Ok(d) => d,
            Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                return Err(RepoError::NoSuchGeneration(client.into(), id.into()))
            }
            Err(e) => return Err(e),
        };
        let gen: Generation =
            serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&key, e))?;
        if let Some(why) = crate::damaged_records::Record::mismatch(&gen, self, &key) {
            return Err(RepoError::corrupt(&key, why));
        }
        Ok((key, gen))
    }

    /// Load the index objects written since the index was loaded, after
    /// reading generations: a generation is committed only after the
    /// index objects of everything it refers to, so once these are loaded
    /// every generation just read is complete in the index, even one that
    /// a concurrent backup committed after this process opened the
    /// repository (an `fsck` or `restore` running beside a backup).
    /// An index not loaded yet needs nothing now: it is loaded at its
    /// first use, after these reads. Nor do records (by key) read before
    /// a listing of the index this process has loaded since (see
    /// [`generations_covered`](Self::generations_covered)): a check
    /// that lists a client's generations and then opens each one lists
    /// the index once, not once a generation.
    fn load_index_for_generations(&self, keys: &[String]) -> RepoResult<()> {
        // Noted even when the index is not loaded: its first load covers
        // them.
        let covered = self.generations_covered(keys);
        if self.index_loaded() && !covered {
            self.load_index()
        } else {
            Ok(())
        }
    }

    /// Remove a generation (its data stays until unreferenced data is pruned).
    ///
    /// A damaged record of that id is removed as well: forgetting is how
    /// a user gets rid of one (see [`crate::damaged_records`]).
    pub fn remove_generation(&self, client: &str, id: &str) -> RepoResult<()> {
        let key = match self.generation_record(client, id) {
            Ok((key, _)) => key,
            Err(e) if crate::damaged_records::is_damage(&e) => self.generation_key(client, id),
            Err(e) => return Err(e),
        };
        self.storage().delete(&key)?;
        self.uncache_record(&key);
        self.damaged.removed(&key);
        Ok(())
    }

    /// The ids of a client's generation records that are damaged, each
    /// with its problem: left out of [`generations`](Self::generations).
    /// As of this process's latest listing of them (made now if there was
    /// none).
    pub fn damaged_generations(&self, client: &str) -> RepoResult<Vec<DamagedGeneration>> {
        let folder = format!("generations/{}/", self.client_id(client));
        if !self.damaged.was_listed(&folder) {
            self.generations(client)?;
        }
        Ok(self
            .damaged
            .under(&folder)
            .into_iter()
            .map(|(key, damage)| DamagedGeneration {
                id: key[folder.len()..].to_string(),
                problem: damage.problem,
                repairable: damage.repairable,
            })
            .collect())
    }

    fn write_generation(&self, gen: &Generation) -> RepoResult<()> {
        let key = self.generation_key(&gen.client, &gen.id);
        let data = serde_json::to_vec(gen).map_err(|e| RepoError::corrupt(&key, e))?;
        self.write_object(&key, data)
    }
}

/// Split an absolute path into its components, refusing `.`, `..`,
/// relative paths, and paths longer or deeper than the format allows
/// (so that a walk of a damaged generation ends, and its memory stays
/// bounded).
pub fn components(path: &[u8]) -> RepoResult<Vec<&[u8]>> {
    use crate::limits::{MAX_PATH_LEN, MAX_TREE_DEPTH};
    if path.first() != Some(&b'/') {
        return Err(BadPath::NotAbsolute(String::from_utf8_lossy(path).into()).into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(BadPath::TooLong(path.len()).into());
    }
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if parts.iter().any(|c| *c == b"." || *c == b"..") {
        return Err(BadPath::DotComponent(String::from_utf8_lossy(path).into()).into());
    }
    if parts.len() > MAX_TREE_DEPTH {
        return Err(BadPath::TooDeep(parts.len()).into());
    }
    Ok(parts)
}
