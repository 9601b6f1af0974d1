//! Chunks and trees: the blobs of the repository, stored into packs and
//! read back, each checked against its id.
//!
//! This module adds to [`Repository`] storing and reading blobs:
//! [`Repository::put_chunk`], [`Repository::get_chunk`],
//! [`Repository::put_tree`] and [`Repository::get_tree`]. Storing hands
//! the blob to the upload pipeline ([`crate::upload`]). Reading finds it
//! through the index: in a pack this process is still filling or
//! writing, else in the store, with a ranged read or, where the store
//! prefers it ([`crate::storage::Capabilities::whole_pack_reads`]), with
//! its whole pack, kept a while ([`crate::pack_cache`]). Decoded trees are
//! kept a while too ([`crate::tree_cache`]).

use std::sync::Arc;

use super::codec::STORED_SLACK;
use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, ObjectId, Token};
use super::index::{BlobKind, Location};
use super::pack;
use super::pack_cache::PackCache;
use super::read_record::ReadRecord;
use super::storage::StorageError;
use super::tree::Tree;
use super::tree_cache::TreeCache;
use super::Repository;

/// What is kept of blobs read: whole packs, decoded trees, and (for
/// fsck) where the chunks read were.
#[derive(Default)]
pub(crate) struct ReadCaches {
    packs: PackCache,
    trees: TreeCache,
    pub(crate) reads: ReadRecord,
}

/// The context of a blob: how its stored form and messages name it.
pub(crate) fn blob_context(id: &ChunkId, kind: BlobKind) -> String {
    match kind {
        BlobKind::Data => format!("chunk/{id}"),
        BlobKind::Tree => format!("tree/{id}"),
    }
}

impl Repository {
    /// Store a new copy of a chunk and return its id: the first copy of a
    /// token gets variant 0, later copies a random variant.
    pub fn put_chunk(&self, token: Token, data: impl AsRef<[u8]>) -> RepoResult<ChunkId> {
        let data = data.as_ref();
        // Never write what no reader would accept.
        if data.len() > crate::limits::MAX_CHUNK_LEN {
            return Err(RepoError::Usage(format!(
                "a chunk of {} bytes is larger than the format allows ({})",
                data.len(),
                crate::limits::MAX_CHUNK_LEN
            )));
        }
        self.ensure_index()?;
        let id = self.catalog.allocate(token);
        let result = self.uploads.put(self, id, BlobKind::Data, data);
        self.catalog.release(&id);
        result.map(|()| id)
    }

    /// The plain data of a chunk.
    pub fn get_chunk(&self, id: &ChunkId) -> RepoResult<Vec<u8>> {
        self.get_blob(id, BlobKind::Data)
    }

    /// Store a tree object (once: an identical tree is reused).
    pub fn put_tree(&self, tree: Tree) -> RepoResult<ChunkId> {
        let entries = tree.entries.len();
        let bytes = tree.encode();
        // Freed before the encoding is compressed and packed: a folder of
        // 100,000 files holds tens of megabytes in each form.
        drop(tree);
        self.put_encoded_tree(&bytes, entries)
    }

    /// Store a tree object already encoded (see
    /// [`crate::tree::encode_entries`]) of `entries` entries.
    pub(crate) fn put_encoded_tree(&self, bytes: &[u8], entries: usize) -> RepoResult<ChunkId> {
        if bytes.len() > crate::limits::MAX_TREE_LEN {
            return Err(RepoError::Usage(format!(
                "a folder of {entries} entries is too large to store: its tree object \
                 would be {} bytes, more than the format allows ({})",
                bytes.len(),
                crate::limits::MAX_TREE_LEN
            )));
        }
        let token = self.tokens.strong(bytes);
        // Any stored copy of the same tree will do: its id names its
        // content. A copy that a prune plans to delete does not count, nor
        // one lost with its pack: then a new copy is stored, under a
        // variant no other copy ever had (see `Catalog::allocate`).
        if let Some(id) = self.find_chunks(&token).into_iter().next() {
            return Ok(id);
        }
        self.ensure_index()?;
        let id = self.catalog.allocate(token);
        let result = self.uploads.put(self, id, BlobKind::Tree, bytes);
        self.catalog.release(&id);
        result.map(|()| id)
    }

    /// Read a tree object. Recently read trees are kept decoded: a backup
    /// reads each directory of the previous generation twice (to compare
    /// with, and to build on).
    pub fn get_tree(&self, id: &ChunkId) -> RepoResult<Arc<Tree>> {
        self.get_tree_sized(id).map(|(tree, _)| tree)
    }

    /// Read a tree object, as [`get_tree`](Self::get_tree), with what it
    /// holds decoded ([`Tree::memory_bytes`]): for a caller that bounds
    /// what it keeps by that, counted once per tree read.
    pub fn get_tree_sized(&self, id: &ChunkId) -> RepoResult<(Arc<Tree>, usize)> {
        if let Some(found) = self.caches.trees.get_sized(id) {
            return Ok(found);
        }
        let tree = Arc::new(self.tree_from_store(id)?);
        // At trace level, every tree read from storage: shows how much of
        // a generation a command had to read (`diff` reads only changed
        // folders).
        tracing::trace!("read tree/{id} ({} entries)", tree.entries.len());
        let size = self.caches.trees.insert(*id, tree.clone());
        Ok((tree, size))
    }

    /// How many trees were read from the store and kept, so far.
    #[cfg(test)]
    pub(crate) fn trees_read(&self) -> u64 {
        self.caches.trees.inserted()
    }

    /// Read a tree object without keeping it: for a walk that reads each
    /// tree once (a prune's).
    pub fn read_tree_once(&self, id: &ChunkId) -> RepoResult<Arc<Tree>> {
        if let Some(tree) = self.caches.trees.get(id) {
            return Ok(tree);
        }
        Ok(Arc::new(self.tree_from_store(id)?))
    }

    fn decode_tree(&self, id: &ChunkId, bytes: &[u8]) -> RepoResult<Tree> {
        Tree::decode(bytes).map_err(|e| RepoError::corrupt(format!("tree/{id}"), e))
    }

    /// A tree read from the store and decoded. One found damaged is
    /// remembered as such: a backup that finds the folder anew must not
    /// take the damaged copy for its own tree because the ids match (its
    /// new generation referred to the damaged tree, and could not restore
    /// the folder), but store it again.
    fn tree_from_store(&self, id: &ChunkId) -> RepoResult<Tree> {
        let tree = self
            .get_blob(id, BlobKind::Tree)
            .and_then(|bytes| self.decode_tree(id, &bytes));
        if let Err(e) = &tree {
            if e.is_damaged_object() {
                self.catalog.mark_damaged(*id);
            }
        }
        tree
    }

    fn get_blob(&self, id: &ChunkId, kind: BlobKind) -> RepoResult<Vec<u8>> {
        let seen = crate::catalog::healed();
        match self.try_get_blob(id, kind) {
            // A prune may have copied the blob elsewhere and deleted the
            // pack this process knew it in: the index objects listing the
            // pack went before the pack, so the index loaded afresh knows
            // only the copy.
            Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                tracing::debug!("a pack of {id} is gone; loading the index again");
                self.reload_index()?;
                self.try_get_blob(id, kind)
            }
            // A file of the index cache found damaged on the way (each
            // when a page of it is read: several, in turn).
            Err(RepoError::NoSuchChunk(..)) if self.heal_index(seen) => self.get_blob(id, kind),
            other => other,
        }
    }

    fn try_get_blob(&self, id: &ChunkId, kind: BlobKind) -> RepoResult<Vec<u8>> {
        self.ensure_index()?;
        let location = self
            .catalog
            .read()
            .get(id)
            .ok_or(RepoError::NoSuchChunk(*id, kind == BlobKind::Tree))?;
        let context = blob_context(id, kind);
        if location.kind != kind {
            return Err(RepoError::corrupt(
                context,
                "the index lists it as another kind of blob",
            ));
        }
        let limit = crate::limits::max_decoded_len(&context) + STORED_SLACK;
        if location.length as usize > limit {
            return Err(RepoError::corrupt(
                context,
                format!(
                    "the index says it is {} bytes long, more than the format allows",
                    location.length
                ),
            ));
        }
        let stored = match self.uploads.blob(&location) {
            Some(bytes) => bytes,
            None => self.stored_blob(&location, &context)?,
        };
        let plain = self.codec.open_blob_checked(&context, stored, |plain| {
            self.verify_blob(&context, id, plain)
        })?;
        if kind == BlobKind::Data && self.caches.reads.is_on() {
            if let Some(pack) = self.catalog.read().pack_id(location.pack) {
                self.caches.reads.note(pack, location.offset, id);
            }
        }
        Ok(plain)
    }

    /// The stored bytes of a blob in a pack in the store.
    fn stored_blob(&self, location: &Location, context: &str) -> RepoResult<Vec<u8>> {
        let pack = self
            .catalog
            .read()
            .pack_id(location.pack)
            .ok_or_else(|| RepoError::corrupt(context, "unknown pack"))?;
        if self.storage.capabilities().whole_pack_reads {
            self.blob_from_cached_pack(pack, location, context)
        } else {
            Ok(self.storage.read_range(
                &pack::key(&pack),
                location.offset as u64,
                location.length as u64,
            )?)
        }
    }

    /// A blob of a pack, read with the whole pack.
    fn blob_from_cached_pack(
        &self,
        pack: ObjectId,
        location: &Location,
        context: &str,
    ) -> RepoResult<Vec<u8>> {
        let key = pack::key(&pack);
        let bytes = self.caches.packs.get(pack, || {
            self.storage.read_pieces(&key, crate::limits::MAX_PACK_LEN)
        })?;
        let start = location.offset as usize;
        let end = start + location.length as usize;
        if end > bytes.len() {
            return Err(RepoError::corrupt(
                context,
                format!("{key} ends before it (truncated or damaged)"),
            ));
        }
        Ok(bytes.slice(start..end).to_vec())
    }

    /// Check a blob's plain bytes against its id: a blob is named by its
    /// content, so nothing else can vouch for it.
    pub(crate) fn verify_blob(&self, context: &str, id: &ChunkId, plain: &[u8]) -> RepoResult<()> {
        let token = if context.starts_with("tree/") {
            self.tokens.strong(plain)
        } else {
            self.tokens.chunk(plain)
        };
        if token != id.token {
            return Err(RepoError::corrupt(
                context,
                "its content does not match its id (damaged or altered)",
            ));
        }
        Ok(())
    }
}
