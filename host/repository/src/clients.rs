//! Clients: the names of the machines (or users) that make generations,
//! one object each under `clients/`, named by a token of the name so that
//! a sealed repository does not show them. This module adds to
//! [`Repository`] [`Repository::client_id`], [`Repository::clients`] and
//! [`Repository::add_client`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::codec::Read;
use super::error::{RepoError, RepoResult};
use super::{now_ns, Repository};

/// The object of one client.
#[derive(Serialize, Deserialize)]
pub(crate) struct ClientRecord {
    name: String,
    created: i64,
}

impl crate::damaged_records::Record for ClientRecord {
    /// `clients/CLIENTID`.
    fn valid_key(key: &str) -> bool {
        key.strip_prefix("clients/")
            .is_some_and(crate::damaged_records::is_client_id)
    }

    fn mismatch(&self, repo: &Repository, key: &str) -> Option<String> {
        (key != format!("clients/{}", repo.client_id(&self.name)))
            .then(|| format!("it is the record of client '{}'", self.name))
    }
}

impl Repository {
    /// The storage id of a client.
    pub fn client_id(&self, name: &str) -> String {
        let token = self
            .tokens
            .strong(format!("obnam-client\0{name}").as_bytes());
        hex::encode(&token.0[..16])
    }

    /// The names of all clients: those of the client records, and those
    /// of clients whose generations are there but whose record is not
    /// (lost: a careless `rm`, a sync tool) or is damaged, named by one of
    /// their generation records, with a warning. Without the second kind,
    /// `obnam clients` left such a client out, and `forget --all-clients`
    /// never forgot any of its generations.
    pub fn clients(&self) -> RepoResult<Vec<String>> {
        // Many at once, and on a remote store only those this machine has
        // not cached ([`crate::record_cache`]). One removed since the
        // listing is skipped.
        let records = self.read_listed_records::<ClientRecord>("clients/", false, &|_| true)?;
        let with_records: HashSet<String> = records
            .iter()
            .filter_map(|(key, _)| key.strip_prefix("clients/").map(str::to_string))
            .collect();
        let mut names: Vec<String> = records.into_iter().map(|(_, r)| r.name).collect();
        names.extend(self.clients_named_by_generations(&with_records)?);
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The names of the clients that have generation records but no
    /// client record (`with_records` holds the ids of those that have
    /// one), each read from one of its generation records. One listing of
    /// `generations/`'s folders; a folder is read only for a client
    /// without a record (on a local store, the empty folder a removed
    /// client leaves is one). A client none of whose generation records
    /// can be read cannot be named: `fsck` reports it.
    fn clients_named_by_generations(
        &self,
        with_records: &HashSet<String>,
    ) -> RepoResult<Vec<String>> {
        let mut names = Vec::new();
        for id in self.storage.list_folders("generations/")? {
            if !crate::damaged_records::is_client_id(&id) || with_records.contains(&id) {
                continue;
            }
            // Damaged records among them are noted and left out, as
            // everywhere; the first whole one names the client.
            let folder = format!("generations/{id}/");
            let Some((_, gen)) = self
                .read_listed_records::<crate::generation::Generation>(&folder, false, &|_| true)?
                .into_iter()
                .next()
            else {
                continue;
            };
            self.damaged.client_without_record(&id, &gen.client);
            names.push(gen.client);
        }
        Ok(names)
    }

    /// Add a client if it is not there yet.
    pub fn add_client(&self, name: &str) -> RepoResult<()> {
        if name.is_empty() {
            return Err(RepoError::Usage("a client name must not be empty".into()));
        }
        let key = format!("clients/{}", self.client_id(name));
        // A record that is there but damaged is written again (see
        // `damaged_records`): a read costs what the check of its
        // existence did.
        let whole = |key: &str, bytes: &[u8]| {
            serde_json::from_slice::<ClientRecord>(bytes)
                .is_ok_and(|r| crate::damaged_records::Record::mismatch(&r, self, key).is_none())
        };
        let damaged = match self
            .read_objects_each(std::slice::from_ref(&key), &whole)?
            .pop()
        {
            Some(Read::Bytes(bytes)) => {
                if whole(&key, &bytes) {
                    return Ok(());
                }
                Some(format!("{key}: the client's record is damaged"))
            }
            Some(Read::Damaged(e)) => Some(e.to_string()),
            Some(Read::Gone) | None => None,
        };
        let record = ClientRecord {
            name: name.to_string(),
            created: now_ns(),
        };
        let data = serde_json::to_vec(&record).map_err(|e| RepoError::corrupt(&key, e))?;
        let written = self.write_object(&key, data);
        match (damaged, written) {
            (None, written) => written,
            (Some(problem), Ok(())) => {
                tracing::warn!("{problem}; the client's record was written again");
                Ok(())
            }
            // Nothing refers to a client record: a backup does not fail
            // for one it cannot replace (a folder in its place, say).
            (Some(problem), Err(e)) => {
                tracing::warn!(
                    "{problem}; it could not be written again ({e}): `obnam clients` and \
                     `fsck` leave the client out until it is removed by hand"
                );
                Ok(())
            }
        }
    }

    /// Remove a client: every generation of it, then its record. The
    /// caller holds the client's lock. Returns how many generations went.
    pub fn remove_client(&self, name: &str) -> RepoResult<u64> {
        let removal = self.client_removal(name)?;
        for id in &removal.generations {
            self.remove_generation(name, id)?;
        }
        self.storage.delete(&removal.record)?;
        self.uncache_record(&removal.record);
        self.damaged.removed(&removal.record);
        Ok(removal.generations.len() as u64)
    }

    /// What [`remove_client`](Self::remove_client) would remove, removing
    /// nothing: the number of the client's generations (damaged records
    /// included), or the same error.
    pub fn client_removal_count(&self, name: &str) -> RepoResult<u64> {
        Ok(self.client_removal(name)?.generations.len() as u64)
    }

    /// A client's generations (damaged records included) and its record's
    /// key; an error if there is no such client. A client whose record is
    /// lost but has generations is a client (see `clients`), and so is one
    /// known by its record alone (damaged, so that no listing names it,
    /// and with no generation left), which fsck reports and a removal must
    /// take away.
    fn client_removal(&self, name: &str) -> RepoResult<ClientRemoval> {
        let record = format!("clients/{}", self.client_id(name));
        let mut generations: Vec<String> =
            self.generations(name)?.into_iter().map(|g| g.id).collect();
        generations.extend(self.damaged_generations(name)?.into_iter().map(|d| d.id));
        if generations.is_empty() && !self.storage.exists(&record)? {
            return Err(RepoError::Usage(format!(
                "there is no client '{}' (see 'obnam clients'); nothing was removed",
                crate::error::shown(name)
            )));
        }
        Ok(ClientRemoval {
            generations,
            record,
        })
    }
}

/// What removing a client takes away.
struct ClientRemoval {
    /// The ids of its generations, whole ones first, then damaged ones.
    generations: Vec<String>,
    /// Its record's key (the object may be missing or damaged).
    record: String,
}
