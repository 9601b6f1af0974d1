//! The inodes of a mount: a number for every object the kernel has been
//! told of, the same number every time within the mount.
//!
//! Inode 1 is the top of the mount; 2 to N+1 are the directories of the
//! N generations (oldest first); N+2 is `latest`. The objects inside a
//! generation get numbers as the kernel first meets them (a lookup or a
//! directory listing), and keep them: a number is found again by the
//! generation and path ([`Table::intern`]), so that `stat` of the same
//! path always gives the same inode, as tools such as `find`, `du` and
//! `tar` expect.
//!
//! Hard links: two names that the generation records with the same
//! device and inode number (and a link count above one) are one object
//! and get one inode here too, so the link count and the inode number
//! agree, as on the original file system; unless the generation records
//! two different objects under them (a file rewritten between the
//! backup's reading of its names: [`Entry::same_object`]), which are
//! then two inodes, each with its own content. Directories are never
//! linked.
//!
//! Numbers are never given back (the kernel's `forget` is ignored): the
//! table grows with the objects visited, about the size of their
//! entries. That is what keeps numbers stable for the life of the mount.

use std::collections::HashMap;
use std::sync::Arc;

use plugin_api::{Entry, EntryKind};

/// An inode number.
pub type Ino = u64;

/// The top of the mount.
pub const ROOT: Ino = 1;

/// What an inode is.
#[derive(Debug)]
pub enum NodeKind {
    /// The top of the mount: one directory per generation, and `latest`.
    Root,
    /// The symlink to the newest generation.
    Latest,
    /// The top directory of a generation (its `/`, which has no entry).
    Generation(usize),
    /// An object in a generation, at an absolute path in it.
    Entry {
        gen: usize,
        path: Vec<u8>,
        entry: Arc<Entry>,
    },
}

/// A directory's child: its name and inode.
#[derive(Debug, Clone)]
pub struct Child {
    pub name: Vec<u8>,
    pub ino: Ino,
}

/// A directory's children, sorted by name.
#[derive(Debug, Default)]
pub struct Children(Vec<Child>);

impl Children {
    /// The children, in name order.
    pub fn list(&self) -> &[Child] {
        &self.0
    }

    /// The child called `name`.
    pub fn find(&self, name: &[u8]) -> Option<&Child> {
        self.0
            .binary_search_by(|c| c.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.0[i])
    }
}

/// An inode.
#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// The directory it was first found in (for `..`).
    pub parent: Ino,
    /// A directory's children, once listed.
    pub children: Option<Arc<Children>>,
}

/// Every inode of a mount.
pub struct Table {
    nodes: Vec<Node>,
    by_path: HashMap<(usize, Vec<u8>), Ino>,
    by_link: HashMap<(usize, u64, u64), Ino>,
    generations: usize,
}

impl Table {
    /// The table of a mount of `generations` generations.
    pub fn new(generations: usize) -> Self {
        let mut nodes = vec![Node {
            kind: NodeKind::Root,
            parent: ROOT,
            children: None,
        }];
        for gen in 0..generations {
            nodes.push(Node {
                kind: NodeKind::Generation(gen),
                parent: ROOT,
                children: None,
            });
        }
        if generations > 0 {
            nodes.push(Node {
                kind: NodeKind::Latest,
                parent: ROOT,
                children: None,
            });
        }
        Table {
            nodes,
            by_path: HashMap::new(),
            by_link: HashMap::new(),
            generations,
        }
    }

    /// The inode of generation `gen`'s directory.
    pub fn generation(gen: usize) -> Ino {
        gen as Ino + 2
    }

    /// The inode of `latest` (there is none without generations).
    pub fn latest(&self) -> Option<Ino> {
        (self.generations > 0).then(|| self.generations as Ino + 2)
    }

    /// How many inodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// An inode.
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get(index)
    }

    fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get_mut(index)
    }

    /// The inode of the object at `path` in generation `gen`, found in
    /// the directory `parent`: the one it already has, the one of a hard
    /// link of it, or a new one.
    pub fn intern(&mut self, gen: usize, parent: Ino, path: Vec<u8>, entry: Entry) -> Ino {
        let key = (gen, path);
        if let Some(&ino) = self.by_path.get(&key) {
            return ino;
        }
        let link =
            (entry.kind != EntryKind::Dir && entry.nlink > 1 && (entry.dev, entry.ino) != (0, 0))
                .then_some((gen, entry.dev, entry.ino));
        if let Some(&ino) = link.as_ref().and_then(|l| self.by_link.get(l)) {
            // Only if the generation records the same object under both
            // names: a file rewritten while the backup went from one
            // name to the other has two contents, and each name shows
            // its own (as restore makes them two files).
            let same = match self.get(ino).map(|n| &n.kind) {
                Some(NodeKind::Entry { entry: first, .. }) => first.same_object(&entry),
                _ => false,
            };
            if same {
                self.by_path.insert(key, ino);
                return ino;
            }
        }
        self.nodes.push(Node {
            kind: NodeKind::Entry {
                gen,
                path: key.1.clone(),
                entry: Arc::new(entry),
            },
            parent,
            children: None,
        });
        let ino = self.nodes.len() as Ino;
        self.by_path.insert(key, ino);
        if let Some(link) = link {
            // The first name met stays the one others are linked to.
            self.by_link.entry(link).or_insert(ino);
        }
        ino
    }

    /// Record a directory's children (sorted here), unless another thread
    /// did first; either way, the children it has.
    pub fn set_children(&mut self, ino: Ino, mut children: Vec<Child>) -> Option<Arc<Children>> {
        let node = self.get_mut(ino)?;
        if let Some(existing) = &node.children {
            return Some(existing.clone());
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let children = Arc::new(Children(children));
        node.children = Some(children.clone());
        Some(children)
    }
}

/// The absolute path of `name` in the directory at `dir` (`/` for a
/// generation's top).
pub fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dev: u64, ino: u64, nlink: u64) -> Entry {
        Entry {
            kind: EntryKind::File,
            dev,
            ino,
            nlink,
            ..Entry::default()
        }
    }

    #[test]
    fn the_top_level_has_fixed_numbers() {
        let table = Table::new(3);
        assert!(matches!(table.get(ROOT).unwrap().kind, NodeKind::Root));
        assert!(matches!(
            table.get(Table::generation(0)).unwrap().kind,
            NodeKind::Generation(0)
        ));
        assert!(matches!(
            table.get(Table::generation(2)).unwrap().kind,
            NodeKind::Generation(2)
        ));
        assert_eq!(table.latest(), Some(5));
        assert!(matches!(table.get(5).unwrap().kind, NodeKind::Latest));
        assert!(table.get(0).is_none());
        assert!(table.get(6).is_none());
        assert_eq!(Table::new(0).latest(), None);
    }

    #[test]
    fn a_path_keeps_its_number() {
        let mut table = Table::new(1);
        let a = table.intern(0, 2, b"/a".to_vec(), file(1, 10, 1));
        let b = table.intern(0, 2, b"/b".to_vec(), file(1, 11, 1));
        assert_ne!(a, b);
        assert_eq!(table.intern(0, 2, b"/a".to_vec(), file(1, 10, 1)), a);
        assert_eq!(table.len(), 4 + 1);
    }

    #[test]
    fn hard_links_share_a_number_within_a_generation() {
        let mut table = Table::new(2);
        let a = table.intern(0, 2, b"/x/a".to_vec(), file(1, 10, 2));
        let b = table.intern(0, 2, b"/y/b".to_vec(), file(1, 10, 2));
        assert_eq!(a, b);
        // Another generation's file with the same numbers is another object.
        let c = table.intern(1, 3, b"/x/a".to_vec(), file(1, 10, 2));
        assert_ne!(a, c);
        // One link only, or another device: not linked.
        let d = table.intern(0, 2, b"/d".to_vec(), file(1, 20, 1));
        let e = table.intern(0, 2, b"/e".to_vec(), file(1, 20, 1));
        assert_ne!(d, e);
        let f = table.intern(0, 2, b"/f".to_vec(), file(2, 10, 2));
        assert_ne!(a, f);
    }

    #[test]
    fn directories_are_never_linked() {
        let mut table = Table::new(1);
        let dir = Entry {
            kind: EntryKind::Dir,
            dev: 1,
            ino: 5,
            nlink: 3,
            ..Entry::default()
        };
        let a = table.intern(0, 2, b"/a".to_vec(), dir.clone());
        let b = table.intern(0, 2, b"/b".to_vec(), dir);
        assert_ne!(a, b);
    }

    #[test]
    fn children_are_sorted_and_set_once() {
        let mut table = Table::new(1);
        let kids = vec![
            Child {
                name: b"b".to_vec(),
                ino: 10,
            },
            Child {
                name: b"a".to_vec(),
                ino: 11,
            },
        ];
        let set = table.set_children(2, kids).unwrap();
        assert_eq!(set.list()[0].name, b"a");
        assert_eq!(set.find(b"b").unwrap().ino, 10);
        assert!(set.find(b"c").is_none());
        let again = table.set_children(2, Vec::new()).unwrap();
        assert_eq!(again.list().len(), 2);
    }

    #[test]
    fn child_paths() {
        assert_eq!(child_path(b"/", b"a"), b"/a");
        assert_eq!(child_path(b"/a", b"b"), b"/a/b");
    }
}
