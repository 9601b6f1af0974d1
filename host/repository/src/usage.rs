//! Where a repository's space goes: per client, what its generations
//! hold and what that costs in storage after dedup and compression; for
//! the repository, its packs and how much of them is used (what `obnam
//! stats` shows).
//!
//! It reads what a prune reads (every generation's trees, the index, the
//! listing of packs) and decides the same way which copy of a blob counts
//! ([`crate::prune::verdict`]), so "unused" here is exactly what a prune with
//! `--repack-threshold 0` would give back. It writes nothing and takes no
//! lock: backups and prunes running beside it only make its figures a
//! moment old.

use std::collections::HashSet;

use crate::error::RepoResult;
use crate::ids::ObjectId;
use crate::prune::referenced::{Buckets, Referenced, Used};
use crate::prune::verdict;
use crate::Repository;

/// One client's share of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientUsage {
    /// The client's name.
    pub name: String,
    /// Generations, checkpoints included.
    pub generations: u64,
    /// Of those, checkpoints.
    pub checkpoints: u64,
    /// Files in the newest generation.
    pub latest_files: u64,
    /// Bytes of file data in the newest generation.
    pub latest_bytes: u64,
    /// Bytes of file data summed over every generation: what a full copy
    /// of each would take.
    pub logical_bytes: u64,
    /// Blobs (chunks and trees) its generations refer to, each once.
    pub blobs: u64,
    /// Stored bytes of those blobs (compressed and encrypted as stored):
    /// what keeping this client's generations costs, blobs it shares with
    /// other clients included.
    pub stored_bytes: u64,
}

/// The space of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Per client, by name.
    pub clients: Vec<ClientUsage>,
    /// Packs stored.
    pub packs: u64,
    /// Bytes of the blobs the index lists in stored packs.
    pub pack_bytes: u64,
    /// Blobs the index lists in stored packs (every copy).
    pub blobs: u64,
    /// Blobs some generation refers to, each counted once.
    pub used_blobs: u64,
    /// Stored bytes of those.
    pub used_bytes: u64,
    /// Packs with nothing used in them.
    pub unused_packs: u64,
    /// Packs with some used and some unused bytes.
    pub partly_used_packs: u64,
    /// Blobs generations refer to that are in no stored pack (`fsck`
    /// reports them).
    pub missing_blobs: u64,
}

/// Clients walked and not yet measured, as pairs of a blob's key
/// ([`Used::key`]) and the client's number, at most this many (16 bytes
/// each: 32 MiB); a client with as many blobs is measured alone. A client's
/// stored bytes come from a pass over the index; with one pass per client,
/// 101 clients of a repository of a million chunks took 8 s, and a
/// thousand clients would take a thousand passes. One pass measures all
/// the clients of a batch.
const BATCH_PAIRS: usize = if cfg!(test) { 300 } else { 1 << 21 };

impl Repository {
    /// Measure the repository's space (see the module's docs). Clients
    /// are walked one after the other, and measured by batches (see
    /// `BATCH_PAIRS`): what it holds is the blobs of all clients (8 to
    /// 16 bytes a blob) and a batch, and it passes over the index once a
    /// batch, and once more for the repository's figures.
    pub fn usage(&self) -> RepoResult<Usage> {
        // Measured again if a damaged file of the index cache stopped it.
        self.healing(|| self.usage_once())
    }

    fn usage_once(&self) -> RepoResult<Usage> {
        self.load_index()?;
        let mut names = self.clients()?;
        names.sort();
        // Listed again after the walks for the repository's figures: a
        // pack written meanwhile counts there, as it did when every
        // client was measured at the end.
        let stored_before: HashSet<ObjectId> = self.stored_packs()?;
        let mut all = Used::default();
        let mut clients = Vec::with_capacity(names.len());
        let mut batch: Vec<(u64, u32)> = Vec::new();
        let mut generations = self.all_generations()?;
        for name in names {
            let gens = generations
                .remove(&self.client_id(&name))
                .unwrap_or_default();
            let mut mine = Referenced::default();
            for g in &gens {
                self.walk_tree(g.root.0, &mut mine)?;
            }
            mine.blobs.settle();
            all.extend(&mine.blobs);
            let number = clients.len() as u32;
            // A client as large as a batch is measured alone, by its own
            // set: its pairs would take twice the set's memory.
            let alone = mine.blobs.len() >= BATCH_PAIRS;
            if alone {
                self.measure_batch(&mut batch, &mut clients, &stored_before)?;
            } else {
                batch.extend(mine.blobs.keys().map(|key| (key, number)));
            }
            let latest = gens.last();
            clients.push(ClientUsage {
                name,
                generations: gens.len() as u64,
                checkpoints: gens.iter().filter(|g| g.is_checkpoint).count() as u64,
                latest_files: latest.map_or(0, |g| g.file_count),
                latest_bytes: latest.map_or(0, |g| g.data_size),
                logical_bytes: gens.iter().map(|g| g.data_size).sum(),
                blobs: mine.blobs.len() as u64,
                stored_bytes: if alone {
                    self.stored_bytes_of(&mine.blobs, &stored_before)?
                } else {
                    0
                },
            });
            if batch.len() >= BATCH_PAIRS {
                self.measure_batch(&mut batch, &mut clients, &stored_before)?;
            }
        }
        self.measure_batch(&mut batch, &mut clients, &stored_before)?;
        all.settle();
        let sizes = self.stored_pack_sizes()?;
        let stored: HashSet<ObjectId> = sizes.keys().copied().collect();
        let index = self.catalog.read();
        let (packs, found) = verdict::pack_uses(&index, &all, &stored)?;
        let mut usage = Usage {
            clients,
            // Packs no index object lists (left by a run that ended
            // abruptly) hold nothing a generation can use; they count as
            // unused packs, of the size the store gives them (they took
            // space that `stats` did not show, and prune frees).
            packs: stored.len() as u64,
            pack_bytes: sizes
                .iter()
                .filter(|(id, _)| !packs.contains_key(*id))
                .map(|(_, size)| size)
                .sum(),
            used_blobs: found,
            missing_blobs: (all.len() as u64).saturating_sub(found),
            unused_packs: (stored.len() - packs.len()) as u64,
            ..Usage::default()
        };
        for p in packs.values() {
            usage.pack_bytes += p.bytes;
            usage.blobs += p.blobs;
            usage.used_bytes += p.used;
            if p.used == 0 {
                usage.unused_packs += 1;
            } else if p.used < p.bytes {
                usage.partly_used_packs += 1;
            }
        }
        Ok(usage)
    }

    /// The stored bytes of the blobs of `set`, in one pass over the
    /// index.
    pub(crate) fn stored_bytes_of(
        &self,
        set: &Used,
        stored: &HashSet<ObjectId>,
    ) -> RepoResult<u64> {
        let mut bytes = 0;
        let index = self.catalog.read();
        index.for_each_blob(|id, places| {
            if set.contains(&id) {
                if let Some(length) = verdict::used_length(&index, places, stored) {
                    bytes += u64::from(length);
                }
            }
        })?;
        Ok(bytes)
    }

    /// Add to each client of `batch` the stored bytes of its blobs, in one
    /// pass over the index, and empty the batch.
    fn measure_batch(
        &self,
        batch: &mut Vec<(u64, u32)>,
        clients: &mut [ClientUsage],
        stored: &HashSet<ObjectId>,
    ) -> RepoResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.sort_unstable();
        let buckets = Buckets::of(batch, |&(key, _)| key);
        let index = self.catalog.read();
        index.for_each_blob(|id, places| {
            let key = Used::key(&id);
            let range = match &buckets {
                Some(buckets) => buckets.range(key),
                None => 0..batch.len(),
            };
            let part = &batch[range];
            let from = part.partition_point(|&(k, _)| k < key);
            let mut length = None;
            for &(_, client) in part[from..].iter().take_while(|&&(k, _)| k == key) {
                let length =
                    *length.get_or_insert_with(|| verdict::used_length(&index, places, stored));
                if let Some(length) = length {
                    clients[client as usize].stored_bytes += u64::from(length);
                }
            }
        })?;
        batch.clear();
        Ok(())
    }
}
