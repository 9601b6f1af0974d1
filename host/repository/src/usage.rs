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
use crate::prune::referenced::{Referenced, Used};
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

impl Repository {
    /// Measure the repository's space (see the module's docs). Each
    /// client's blobs are measured as soon as its generations are walked,
    /// and dropped: what it holds is the blobs of all clients and of one
    /// (8 to 16 bytes a blob each), however many clients there are, at
    /// the cost of one pass over the index per client.
    pub fn usage(&self) -> RepoResult<Usage> {
        self.load_index()?;
        let mut names = self.clients()?;
        names.sort();
        // Listed again after the walks for the repository's figures: a
        // pack written meanwhile counts there, as it did when every
        // client was measured at the end.
        let stored_before: HashSet<ObjectId> = self.stored_packs()?;
        let mut all = Used::default();
        let mut clients = Vec::with_capacity(names.len());
        for name in names {
            let gens = self.generations(&name)?;
            let mut mine = Referenced::default();
            for g in &gens {
                self.walk_tree(g.root.0, &mut mine)?;
            }
            mine.blobs.settle();
            all.extend(&mine.blobs);
            let latest = gens.last();
            let mut stored_bytes = 0;
            let index = self.catalog.read();
            index.for_each_blob(|id, places| {
                if mine.blobs.contains(&id) {
                    if let Some(length) = verdict::used_length(&index, places, &stored_before) {
                        stored_bytes += u64::from(length);
                    }
                }
            })?;
            clients.push(ClientUsage {
                name,
                generations: gens.len() as u64,
                checkpoints: gens.iter().filter(|g| g.is_checkpoint).count() as u64,
                latest_files: latest.map_or(0, |g| g.file_count),
                latest_bytes: latest.map_or(0, |g| g.data_size),
                logical_bytes: gens.iter().map(|g| g.data_size).sum(),
                blobs: mine.blobs.len() as u64,
                stored_bytes,
            });
        }
        all.settle();
        let stored: HashSet<ObjectId> = self.stored_packs()?;
        let index = self.catalog.read();
        let (packs, found) = verdict::pack_uses(&index, &all, &stored)?;
        let mut usage = Usage {
            clients,
            // Packs no index object lists hold nothing a generation can
            // use; they count as unused packs of no listed bytes.
            packs: stored.len() as u64,
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
}
