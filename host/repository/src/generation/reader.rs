//! Reading a generation: its entries by path, one tree per folder on the
//! way, with a small cache so that a walk in order reads each tree once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{components, Generation};
use crate::error::{RepoError, RepoResult};
use crate::ids::ChunkId;
use crate::tree::{EntryKind, Tree, TreeEntry};
use crate::Repository;

/// Folders whose trees a reader keeps by path, at most.
const READER_CACHE: usize = 64;

/// Bytes of those trees (decoded, [`Tree::memory_bytes`]) a reader keeps
/// at most: a walk needs the folders on its way down, not 64 folders of
/// 10,000 files (200 MB, which a restore of such a tree held).
const READER_CACHE_BYTES: usize = 32 << 20;

/// The trees a reader keeps by path (slash-joined), oldest first, with
/// the bytes each holds.
#[derive(Default)]
struct ReaderCache {
    found: VecDeque<(Vec<u8>, Found, usize)>,
    bytes: usize,
}

impl ReaderCache {
    fn get(&self, key: &[u8]) -> Option<Found> {
        self.found
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, f, _)| f.clone())
    }

    /// Keep `found`, dropping the oldest past [`READER_CACHE`] folders or
    /// [`READER_CACHE_BYTES`]; the newest is kept whatever its size (the
    /// walk is in it).
    fn keep(&mut self, key: Vec<u8>, found: Found) {
        let bytes = found.bytes;
        self.found.push_back((key, found, bytes));
        self.bytes += bytes;
        while self.found.len() > READER_CACHE
            || (self.bytes > READER_CACHE_BYTES && self.found.len() > 1)
        {
            if let Some((_, _, old)) = self.found.pop_front() {
                self.bytes -= old;
            }
        }
    }
}

/// The ids of the trees on the way from the root to a directory, the
/// directory's own last: shared between a directory and its children, so
/// that it costs one link per directory, however deep.
struct Ancestry {
    id: ChunkId,
    parent: Option<Arc<Ancestry>>,
}

impl Ancestry {
    fn child(self: &Arc<Self>, id: ChunkId) -> Arc<Self> {
        Arc::new(Ancestry {
            id,
            parent: Some(self.clone()),
        })
    }

    fn contains(&self, id: &ChunkId) -> bool {
        let mut link = Some(self);
        while let Some(l) = link {
            if l.id == *id {
                return true;
            }
            link = l.parent.as_deref();
        }
        false
    }
}

/// A directory's tree as the reader found it: the tree, and the ids of
/// the trees above it (`None` for an empty directory stored without a
/// tree, which has nothing below it).
#[derive(Clone)]
struct Found {
    tree: Arc<Tree>,
    /// What `tree` holds decoded ([`Tree::memory_bytes`]).
    bytes: usize,
    ancestry: Option<Arc<Ancestry>>,
}

/// Reads a generation's entries by path.
///
/// A generation is read from the root down, one tree per folder on the
/// way. Since a tree is named by its content, a tree cannot contain
/// itself; a damaged or hostile repository could still try, so the
/// reader refuses a folder whose tree is one of its own ancestors, and
/// paths deeper than the format allows ([`components`]).
pub struct GenerationReader {
    repo: Arc<Repository>,
    generation: Generation,
    cache: Mutex<ReaderCache>,
}

impl GenerationReader {
    /// A reader of `generation`.
    pub fn new(repo: Arc<Repository>, generation: Generation) -> Self {
        GenerationReader {
            repo,
            generation,
            cache: Mutex::new(ReaderCache::default()),
        }
    }

    /// The generation read.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    fn cached(&self, key: &[u8]) -> Option<Found> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
    }

    fn remember(&self, key: Vec<u8>, found: Found) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep(key, found);
    }

    /// The tree of the directory at `parts` (the root for none), or `None`
    /// if there is no directory there. Starts from the cached parent when
    /// there is one (a walk lists a folder's children after it), else
    /// from the root.
    fn tree(&self, parts: &[&[u8]]) -> RepoResult<Option<Arc<Tree>>> {
        let key = parts.join(&b'/');
        if let Some(found) = self.cached(&key) {
            return Ok(Some(found.tree));
        }
        let from_parent = parts
            .split_last()
            .and_then(|(_, parent)| self.cached(&parent.join(&b'/')));
        let (mut found, start) = match from_parent {
            Some(found) => (found, parts.len() - 1),
            None => {
                let root = self.generation.root.0;
                let (tree, bytes) = self.repo.get_tree_sized(&root)?;
                let found = Found {
                    tree,
                    bytes,
                    ancestry: Some(Arc::new(Ancestry {
                        id: root,
                        parent: None,
                    })),
                };
                (found, 0)
            }
        };
        for (depth, name) in parts.iter().enumerate().skip(start) {
            let subtree = match found.tree.get(name) {
                Some(TreeEntry {
                    kind: EntryKind::Dir,
                    subtree,
                    ..
                }) => subtree.map(|id| id.0),
                _ => return Ok(None),
            };
            found = match (subtree, &found.ancestry) {
                (Some(id), Some(ancestry)) => {
                    if ancestry.contains(&id) {
                        let path = parts[..=depth].join(&b'/');
                        return Err(RepoError::corrupt(
                            format!("tree/{id}"),
                            format!(
                                "the folder /{} contains itself (its tree is one of its \
                                 own parents' trees)",
                                String::from_utf8_lossy(&path)
                            ),
                        ));
                    }
                    let (tree, bytes) = self.repo.get_tree_sized(&id)?;
                    Found {
                        tree,
                        bytes,
                        ancestry: Some(ancestry.child(id)),
                    }
                }
                // An empty folder, stored without a tree of its own.
                (None, _) | (_, None) => Found {
                    tree: Arc::new(Tree::default()),
                    bytes: 0,
                    ancestry: None,
                },
            };
        }
        self.remember(key, found.clone());
        Ok(Some(found.tree))
    }

    /// The entry at an absolute path, if there is one. The root itself has
    /// no entry.
    pub fn lookup(&self, path: &[u8]) -> RepoResult<Option<TreeEntry>> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Ok(None);
        };
        Ok(self.tree(parent)?.and_then(|t| t.get(name).cloned()))
    }

    /// The id of the tree of the directory at an absolute path (`/` for
    /// the root): `None` if it is not a directory in this generation,
    /// `Some(None)` for an empty directory stored without a tree. A tree
    /// is named by its content, so two directories with the same id hold
    /// the same entries, all the way down: a comparison of generations
    /// can skip them without reading them.
    pub fn subtree_id(&self, path: &[u8]) -> RepoResult<Option<Option<ChunkId>>> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Ok(Some(Some(self.generation.root.0)));
        };
        Ok(
            match self.tree(parent)?.and_then(|t| t.get(name).cloned()) {
                Some(TreeEntry {
                    kind: EntryKind::Dir,
                    subtree,
                    ..
                }) => Some(subtree.map(|id| id.0)),
                _ => None,
            },
        )
    }

    /// The entries of the directory at an absolute path, or `None` if it is
    /// not a directory in this generation.
    pub fn list_dir(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        Ok(self.dir(path)?.map(|t| t.entries.clone()))
    }

    /// The tree of a directory (as [`list_dir`](Self::list_dir), shared
    /// rather than copied).
    pub fn dir(&self, path: &[u8]) -> RepoResult<Option<Arc<Tree>>> {
        self.tree(&components(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: usize) -> Found {
        let entries = (0..files)
            .map(|i| TreeEntry::bare_dir(format!("folder entry {i}").as_bytes()))
            .collect();
        let tree = Tree { entries };
        Found {
            bytes: tree.memory_bytes(),
            tree: Arc::new(tree),
            ancestry: None,
        }
    }

    /// A reader keeps the folders on a walk's way, not dozens of large
    /// ones: at most its bytes of trees, and always the newest.
    #[test]
    fn a_reader_keeps_at_most_its_bytes_of_folders_and_the_newest() {
        let big = folder(10_000);
        let each = big.bytes;
        let mut cache = ReaderCache::default();
        for n in 0..40u32 {
            cache.keep(n.to_le_bytes().to_vec(), big.clone());
        }
        assert!(cache.bytes <= READER_CACHE_BYTES, "{}", cache.bytes);
        assert_eq!(cache.found.len(), READER_CACHE_BYTES / each);
        assert!(cache.get(&39u32.to_le_bytes()).is_some());
        assert!(cache.get(&0u32.to_le_bytes()).is_none());

        let huge = folder(200_000);
        cache.keep(b"huge".to_vec(), huge);
        assert_eq!(cache.found.len(), 1, "the newest alone");
        assert!(cache.get(b"huge").is_some());

        let mut cache = ReaderCache::default();
        for n in 0..100u32 {
            cache.keep(n.to_le_bytes().to_vec(), folder(2));
        }
        assert_eq!(cache.found.len(), READER_CACHE);
    }
}
