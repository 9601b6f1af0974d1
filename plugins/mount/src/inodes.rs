//! The inodes of a mount: a number for every object the kernel holds,
//! the same number every time within the mount.
//!
//! Inode 1 is the top of the mount; 2 to N+1 are the directories of the
//! N generations (oldest first); N+2 is `latest`. These are always there.
//!
//! An object inside a generation gets its number when its directory is
//! listed, from a hash of what it is: the generation and its path, or,
//! for a file of several names, the generation and the device and inode
//! numbers the backup recorded ([`Table::number`]). The same object thus
//! gets the same number however often it is forgotten and met again, as
//! tools such as `find`, `du` and `tar` expect; two names of one
//! hard-linked file get one number, so the link count and the inode
//! number agree, as on the original file system. Unless the generation
//! records two different objects under them (a file rewritten between
//! the backup's reading of its names: [`Entry::same_object`]): each name
//! is then an object of its own, with its own content. Directories are
//! never linked. Two objects whose hashes meet (one chance in 2^64 for a
//! pair) are told apart by hashing again, while both are known.
//!
//! The table holds only what the kernel holds: an object enters it when
//! the kernel looks it up, and leaves when the kernel forgets it as often
//! as it was looked up ([`Table::forget`]). A directory's listing lives
//! with its inode. So the mount's memory follows the kernel's cache of
//! it, which the kernel shrinks when memory is short, not everything ever
//! visited: crawling 30 generations of 300,000 files each would otherwise
//! have held about 7 GB until the mount ended.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

/// A directory's child: its inode number and what it is (for the top of
/// the mount, an entry made up of the name and kind).
#[derive(Debug, Clone)]
pub struct Child {
    pub ino: Ino,
    pub entry: Arc<Entry>,
}

impl Child {
    /// The child's name in its directory.
    pub fn name(&self) -> &[u8] {
        &self.entry.name
    }
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
            .binary_search_by(|c| c.name().cmp(name))
            .ok()
            .map(|i| &self.0[i])
    }
}

/// An inode.
#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// The directory it was looked up in (for `..`).
    pub parent: Ino,
    /// A directory's children, once listed.
    pub children: Option<Arc<Children>>,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// Every inode the kernel holds.
pub struct Table {
    /// The top, the generations' directories and `latest`, by number - 1.
    fixed: Vec<Node>,
    /// The objects inside generations that the kernel holds.
    live: HashMap<Ino, Node>,
    /// The number given to the first name met of each hard-linked file,
    /// with its entry: the other names get it if they are the same object.
    /// Kept for the mount's life (files of several names are few).
    by_link: HashMap<LinkKey, (Ino, Arc<Entry>)>,
    generations: usize,
}

/// A generation's number and an object's key (`Entry::object_key`): the
/// names of one object in one generation.
type LinkKey = (usize, (u64, u64, u64));

/// Whether `entry` may be one of several names of a file (as the backup
/// recorded it).
fn linkable(entry: &Entry) -> bool {
    entry.kind != EntryKind::Dir && entry.nlink > 1 && (entry.dev, entry.ino) != (0, 0)
}

/// A number from `key` and the `attempt`th try (0 first).
fn hashed(key: impl Hash, attempt: u32) -> Ino {
    // SipHash with fixed keys: the same number for the same object for
    // the life of the process.
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    attempt.hash(&mut hasher);
    hasher.finish()
}

impl Table {
    /// The table of a mount of `generations` generations.
    pub fn new(generations: usize) -> Self {
        let node = |kind| Node {
            kind,
            parent: ROOT,
            children: None,
            lookups: 0,
        };
        let mut fixed = vec![node(NodeKind::Root)];
        fixed.extend((0..generations).map(|gen| node(NodeKind::Generation(gen))));
        if generations > 0 {
            fixed.push(node(NodeKind::Latest));
        }
        Table {
            fixed,
            live: HashMap::new(),
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

    /// Whether `ino` is one of the numbers that are always there.
    fn is_fixed(&self, ino: Ino) -> bool {
        (1..=self.fixed.len() as Ino).contains(&ino)
    }

    /// How many inodes there are now.
    pub fn len(&self) -> usize {
        self.fixed.len() + self.live.len()
    }

    /// An inode, if the kernel holds it.
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        if self.is_fixed(ino) {
            return self.fixed.get(ino as usize - 1);
        }
        self.live.get(&ino)
    }

    fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        if self.is_fixed(ino) {
            return self.fixed.get_mut(ino as usize - 1);
        }
        self.live.get_mut(&ino)
    }

    /// The number of `entry`, at `path` in generation `gen`, as its
    /// directory is listed. `given` holds the numbers this listing gave
    /// so far; the one returned is added to it.
    pub fn number(
        &mut self,
        gen: usize,
        path: &[u8],
        entry: &Arc<Entry>,
        given: &mut std::collections::HashSet<Ino>,
    ) -> Ino {
        // Names recorded alike are one object (see `Entry::object_key`).
        let link = linkable(entry).then_some((gen, entry.object_key()));
        if let Some(link) = link {
            if let Some((ino, first)) = self.by_link.get(&link) {
                // Only if the generation records the same object under
                // both names: a file rewritten while the backup went from
                // one name to the other has two contents, and each name
                // shows its own (as restore makes them two files).
                if first.same_object(entry) {
                    given.insert(*ino);
                    return *ino;
                }
            } else {
                let ino = self.free_number(("link", link), given, |node| match &node.kind {
                    NodeKind::Entry {
                        gen: g, entry: e, ..
                    } => (*g, e.object_key()) == link && e.same_object(entry),
                    _ => false,
                });
                self.by_link.insert(link, (ino, entry.clone()));
                given.insert(ino);
                return ino;
            }
        }
        let ino = self.free_number(("path", gen, path), given, |node| {
            matches!(&node.kind, NodeKind::Entry { gen: g, path: p, .. } if *g == gen && p == path)
        });
        given.insert(ino);
        ino
    }

    /// The first number hashed from `key` that is not fixed, not given
    /// in this listing, and not held by another object (`is_this` tells
    /// whether a node the kernel holds is this object).
    fn free_number(
        &self,
        key: impl Hash + Copy,
        given: &std::collections::HashSet<Ino>,
        is_this: impl Fn(&Node) -> bool,
    ) -> Ino {
        let mut attempt = 0;
        loop {
            let ino = hashed(key, attempt);
            let free = !self.is_fixed(ino)
                && ino != 0
                && !given.contains(&ino)
                && self.live.get(&ino).is_none_or(&is_this);
            if free {
                return ino;
            }
            attempt += 1;
        }
    }

    /// The kernel was told of `child` (found in the directory `parent`,
    /// at `path` in generation `gen`): it enters the table, or counts one
    /// more lookup.
    pub fn remember(&mut self, gen: usize, parent: Ino, path: Vec<u8>, child: &Child) {
        if self.is_fixed(child.ino) {
            return;
        }
        self.live
            .entry(child.ino)
            .and_modify(|node| node.lookups += 1)
            .or_insert_with(|| Node {
                kind: NodeKind::Entry {
                    gen,
                    path,
                    entry: child.entry.clone(),
                },
                parent,
                children: None,
                lookups: 1,
            });
    }

    /// The kernel forgot `lookups` lookups of `ino`; whether it left the
    /// table (it had no more).
    pub fn forget(&mut self, ino: Ino, lookups: u64) -> bool {
        if self.is_fixed(ino) {
            return false;
        }
        let Some(node) = self.live.get_mut(&ino) else {
            return false;
        };
        node.lookups = node.lookups.saturating_sub(lookups);
        if node.lookups > 0 {
            return false;
        }
        self.live.remove(&ino);
        true
    }

    /// Record a directory's children (sorted here), unless another thread
    /// did first; either way, the children it has.
    pub fn set_children(&mut self, ino: Ino, mut children: Vec<Child>) -> Option<Arc<Children>> {
        let node = self.get_mut(ino)?;
        if let Some(existing) = &node.children {
            return Some(existing.clone());
        }
        children.sort_by(|a, b| a.name().cmp(b.name()));
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
    use std::collections::HashSet;

    fn file(name: &str, dev: u64, ino: u64, nlink: u64) -> Arc<Entry> {
        Arc::new(Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File,
            dev,
            ino,
            nlink,
            ..Entry::default()
        })
    }

    /// Number `entry` at `path` of `gen` in a listing of its own.
    fn number(table: &mut Table, gen: usize, path: &str, entry: &Arc<Entry>) -> Ino {
        table.number(gen, path.as_bytes(), entry, &mut HashSet::new())
    }

    /// What a lookup does: number it (as its listing would) and remember it.
    fn look_up(table: &mut Table, gen: usize, path: &str, entry: Arc<Entry>) -> Ino {
        let ino = number(table, gen, path, &entry);
        let child = Child { ino, entry };
        table.remember(
            gen,
            Table::generation(gen),
            path.as_bytes().to_vec(),
            &child,
        );
        ino
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
    fn a_path_keeps_its_number_after_it_is_forgotten() {
        let mut table = Table::new(1);
        let a = look_up(&mut table, 0, "/a", file("a", 1, 10, 1));
        let b = look_up(&mut table, 0, "/b", file("b", 1, 11, 1));
        assert_ne!(a, b);
        assert!(a > 3 && b > 3, "not a fixed number");
        assert_eq!(look_up(&mut table, 0, "/a", file("a", 1, 10, 1)), a);
        assert_eq!(table.len(), 3 + 2);
        // Looked up twice: it stays until forgotten twice.
        assert!(!table.forget(a, 1));
        assert!(table.get(a).is_some());
        assert!(table.forget(a, 1));
        assert!(table.get(a).is_none());
        assert_eq!(table.len(), 3 + 1);
        // Met again: the same number.
        assert_eq!(look_up(&mut table, 0, "/a", file("a", 1, 10, 1)), a);
        // The same path in another generation is another object.
        let mut two = Table::new(2);
        assert_ne!(
            look_up(&mut two, 0, "/a", file("a", 1, 10, 1)),
            look_up(&mut two, 1, "/a", file("a", 1, 10, 1))
        );
    }

    #[test]
    fn fixed_numbers_are_never_forgotten() {
        let mut table = Table::new(2);
        for ino in 1..=4 {
            assert!(!table.forget(ino, 1));
            assert!(table.get(ino).is_some());
        }
    }

    #[test]
    fn hard_links_share_a_number_within_a_generation() {
        let mut table = Table::new(2);
        let a = look_up(&mut table, 0, "/x/a", file("a", 1, 10, 2));
        let b = look_up(&mut table, 0, "/y/b", file("b", 1, 10, 2));
        assert_eq!(a, b);
        // Forgotten (both names), then met the other way round: the same.
        assert!(table.forget(a, 2));
        assert_eq!(look_up(&mut table, 0, "/y/b", file("b", 1, 10, 2)), a);
        // Another generation's file with the same numbers is another object.
        let c = look_up(&mut table, 1, "/x/a", file("a", 1, 10, 2));
        assert_ne!(a, c);
        // One link only, or another device: not linked.
        let d = look_up(&mut table, 0, "/d", file("d", 1, 20, 1));
        let e = look_up(&mut table, 0, "/e", file("e", 1, 20, 1));
        assert_ne!(d, e);
        let f = look_up(&mut table, 0, "/f", file("f", 2, 10, 2));
        assert_ne!(a, f);
    }

    #[test]
    fn names_of_one_file_with_two_contents_are_two_objects() {
        let mut table = Table::new(1);
        let a = look_up(&mut table, 0, "/a", file("a", 1, 10, 2));
        let mut other = (*file("b", 1, 10, 2)).clone();
        other.size = 99;
        let b = look_up(&mut table, 0, "/b", Arc::new(other.clone()));
        assert_ne!(a, b);
        assert_eq!(look_up(&mut table, 0, "/b", Arc::new(other)), b);
    }

    #[test]
    fn directories_are_never_linked() {
        let mut table = Table::new(1);
        let dir = |name: &str| {
            Arc::new(Entry {
                name: name.as_bytes().to_vec(),
                kind: EntryKind::Dir,
                dev: 1,
                ino: 5,
                nlink: 3,
                ..Entry::default()
            })
        };
        let a = look_up(&mut table, 0, "/a", dir("a"));
        let b = look_up(&mut table, 0, "/b", dir("b"));
        assert_ne!(a, b);
    }

    #[test]
    fn numbers_that_meet_are_told_apart() {
        let mut table = Table::new(1);
        let entry = file("a", 1, 10, 1);
        let first = number(&mut table, 0, "/a", &entry);
        // Another object already given the number in the same listing...
        let mut given = HashSet::from([first]);
        let second = table.number(0, b"/a", &entry, &mut given);
        assert_ne!(first, second);
        // ...or held by the kernel as another path.
        let held = Child {
            ino: first,
            entry: file("z", 1, 99, 1),
        };
        table.remember(0, 2, b"/z".to_vec(), &held);
        let third = number(&mut table, 0, "/a", &entry);
        assert_ne!(third, first);
    }

    #[test]
    fn children_are_sorted_and_set_once() {
        let mut table = Table::new(1);
        let kids = vec![
            Child {
                ino: 10,
                entry: file("b", 0, 0, 1),
            },
            Child {
                ino: 11,
                entry: file("a", 0, 0, 1),
            },
        ];
        let set = table.set_children(2, kids).unwrap();
        assert_eq!(set.list()[0].name(), b"a");
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
