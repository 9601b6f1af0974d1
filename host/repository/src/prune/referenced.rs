//! What the generations refer to: every tree and chunk reachable from
//! the root tree of any generation of any client, checkpoints included.
//!
//! The walk reads each tree once, however many generations share it, so
//! walking a new generation after the others costs only the directories
//! it changed. A tree that cannot be found in the index (lost with its
//! pack) is counted and skipped: what only it refers to can no longer be
//! restored anyway. Any other failure to read a generation or a tree ends
//! the prune before it deletes anything: what it refers to is unknown.

use std::collections::HashSet;

use crate::error::{RepoError, RepoResult};
use crate::generation::Generation;
use crate::ids::ChunkId;
use crate::storage::StorageError;
use crate::Repository;

use super::PruneStep;

/// A set of blob ids kept in 16 bytes each: 8 bytes of the token and the
/// variant. Two blobs whose tokens share their first 8 bytes (about one
/// pair in 10^7 among a million blobs) are taken for one: both count as
/// used, which keeps a blob a prune could have removed, never the other
/// way round.
#[derive(Default)]
pub struct Used(HashSet<u128>);

impl Used {
    fn key(id: &ChunkId) -> u128 {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&id.token.0[..8]);
        (u128::from(u64::from_le_bytes(prefix)) << 64) | u128::from(id.variant)
    }

    /// Add a blob; whether it was not there yet.
    pub fn insert(&mut self, id: &ChunkId) -> bool {
        self.0.insert(Self::key(id))
    }

    /// Whether a blob is in the set.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.0.contains(&Self::key(id))
    }

    /// Add every blob of `other`.
    pub fn extend(&mut self, other: &Used) {
        self.0.extend(other.0.iter().copied());
    }

    /// How many blobs are in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The blobs generations refer to, and the generations walked so far.
#[derive(Default)]
pub struct Referenced {
    /// Trees and chunks.
    pub blobs: Used,
    /// Generation objects walked (their storage keys).
    walked: HashSet<String>,
    /// Trees referred to that the index does not know.
    pub missing_trees: u64,
}

impl Referenced {
    /// Number of generations walked.
    pub fn generations(&self) -> usize {
        self.walked.len()
    }
}

impl Repository {
    /// Walk every generation not walked yet (one listing of
    /// `generations/`); `progress` is told the generations done and the
    /// total.
    pub(crate) fn walk_new_generations(
        &self,
        refs: &mut Referenced,
        progress: &mut dyn FnMut(PruneStep, u64, u64),
    ) -> RepoResult<()> {
        let keys: Vec<String> = self
            .storage()
            .list_recursive("generations/")?
            .into_iter()
            .filter(|k| !refs.walked.contains(k))
            .collect();
        let total = keys.len() as u64;
        let mut gens = Vec::with_capacity(keys.len());
        for key in keys {
            let data = match self.read_object(&key) {
                Ok(data) => data,
                // Forgotten since the listing: nothing to keep for it.
                Err(RepoError::Storage(StorageError::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            };
            let gen: Generation =
                serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&key, e))?;
            gens.push((key, gen));
        }
        // A generation is committed after the index objects of what it
        // refers to: once those written until now are loaded, every
        // generation just read is complete in the index.
        self.load_index()?;
        for (done, (key, gen)) in gens.into_iter().enumerate() {
            progress(PruneStep::Walk, done as u64, total);
            self.walk_tree(gen.root.0, refs)?;
            refs.walked.insert(key);
        }
        progress(PruneStep::Walk, total, total);
        Ok(())
    }

    /// Mark a tree and everything below it.
    pub(crate) fn walk_tree(&self, root: ChunkId, refs: &mut Referenced) -> RepoResult<()> {
        if !refs.blobs.insert(&root) {
            return Ok(());
        }
        // Each tree is pushed once (when first marked), so the walk ends
        // even on trees that contain themselves.
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let tree = match self.read_tree_once(&id) {
                Ok(tree) => tree,
                Err(RepoError::NoSuchChunk(_)) => {
                    tracing::warn!(
                        "tree/{id} is in no pack (lost?): what only it refers to is not kept"
                    );
                    refs.missing_trees += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in &tree.entries {
                for c in &entry.chunks {
                    refs.blobs.insert(&c.0);
                }
                if let Some(sub) = entry.subtree {
                    if refs.blobs.insert(&sub.0) {
                        stack.push(sub.0);
                    }
                }
            }
        }
        Ok(())
    }
}
