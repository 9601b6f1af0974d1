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
    /// Measure the repository's space (see the module's docs).
    pub fn usage(&self) -> RepoResult<Usage> {
        self.load_index()?;
        let mut names = self.clients()?;
        names.sort();
        let mut all = Used::default();
        let mut per_client: Vec<(ClientUsage, Used)> = Vec::with_capacity(names.len());
        for name in names {
            let gens = self.generations(&name)?;
            let mut mine = Referenced::default();
            for g in &gens {
                self.walk_tree(g.root.0, &mut mine)?;
            }
            mine.blobs.settle();
            all.extend(&mine.blobs);
            let latest = gens.last();
            let client = ClientUsage {
                name,
                generations: gens.len() as u64,
                checkpoints: gens.iter().filter(|g| g.is_checkpoint).count() as u64,
                latest_files: latest.map_or(0, |g| g.file_count),
                latest_bytes: latest.map_or(0, |g| g.data_size),
                logical_bytes: gens.iter().map(|g| g.data_size).sum(),
                blobs: mine.blobs.len() as u64,
                stored_bytes: 0,
            };
            per_client.push((client, mine.blobs));
        }
        all.settle();
        let stored: HashSet<ObjectId> = self.stored_packs()?;
        let index = self.catalog.read();
        let (packs, found) = verdict::pack_uses(&index, &all, &stored)?;
        index.for_each_blob(|id, places| {
            let Some(length) = verdict::used_length(&index, places, &stored) else {
                return;
            };
            for (client, used) in per_client.iter_mut() {
                if used.contains(&id) {
                    client.stored_bytes += u64::from(length);
                }
            }
        })?;
        let mut usage = Usage {
            clients: per_client.into_iter().map(|(c, _)| c).collect(),
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
