//! Opening the restored directories again, one after another, without
//! walking down from the target each time.
//!
//! At the end of a restore every directory made gets its metadata, deepest
//! first ([`crate::walk::Walked::dirs`] in reverse). Opening each from the
//! target, component by component, costs its depth: a chain of 4,096
//! folders took eight million `openat` calls. The cursor keeps the
//! directories it opened last as a chain of open ancestors and opens only
//! what lies below the nearest one it still holds, so consecutive folders
//! of the walk cost a few calls each. It holds at most [`MAX_OPEN`]
//! descriptors (a deep chain would otherwise exhaust the process's limit),
//! and when the nearest held ancestor has been let go it starts again
//! from the target: once per [`MAX_OPEN`] levels on the way up.
//!
//! Every open is [`fsops::open_dir_at`] by one name (never following a
//! symlink), exactly as a walk from the target would do it.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::fsops;
use crate::walk::DirRecord;

/// The most directories the cursor keeps open.
pub const MAX_OPEN: usize = 128;

pub struct DirCursor<'a> {
    root: BorrowedFd<'a>,
    dirs: &'a [DirRecord],
    /// Open directories, each the parent of the next: (record, its fd).
    chain: VecDeque<(usize, OwnedFd)>,
    /// The records in `chain`.
    held: HashSet<usize>,
}

impl<'a> DirCursor<'a> {
    pub fn new(root: BorrowedFd<'a>, dirs: &'a [DirRecord]) -> Self {
        DirCursor {
            root,
            dirs,
            chain: VecDeque::new(),
            held: HashSet::new(),
        }
    }

    /// Open the directory recorded at `dirs[index]`.
    pub fn open(&mut self, index: usize) -> io::Result<BorrowedFd<'_>> {
        // The records from `index` up to (not including) the nearest held
        // ancestor, or up to the target if none is held.
        let mut below = Vec::new();
        let mut at = Some(index);
        let held_at = loop {
            match at {
                None => break None,
                Some(i) if self.held.contains(&i) => break Some(i),
                Some(i) => {
                    below.push(i);
                    at = self.dirs[i].parent;
                }
            }
        };
        match held_at {
            Some(i) => {
                let keep = self
                    .chain
                    .iter()
                    .rposition(|(j, _)| *j == i)
                    .map_or(0, |p| p + 1);
                for (j, _) in self.chain.drain(keep..) {
                    self.held.remove(&j);
                }
            }
            None => {
                self.chain.clear();
                self.held.clear();
            }
        }
        for &i in below.iter().rev() {
            let name = &self.dirs[i].entry.name;
            let fd = match self.chain.back() {
                Some((_, parent)) => fsops::open_dir_at(parent.as_fd(), name)?,
                None => fsops::open_dir_at(self.root, name)?,
            };
            self.chain.push_back((i, fd));
            self.held.insert(i);
            if self.chain.len() > MAX_OPEN {
                if let Some((j, _)) = self.chain.pop_front() {
                    self.held.remove(&j);
                }
            }
        }
        match self.chain.back() {
            Some((i, fd)) if *i == index => Ok(fd.as_fd()),
            _ => Err(io::Error::other("restored folder not reached")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::Entry;
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    fn record(parent: Option<usize>, name: &str) -> DirRecord {
        DirRecord {
            parent,
            entry: Entry {
                name: name.as_bytes().to_vec(),
                ..Entry::default()
            },
        }
    }

    fn path_of(root: &Path, dirs: &[DirRecord], index: usize) -> PathBuf {
        let mut path = root.to_path_buf();
        for part in crate::walk::dir_parts(dirs, index) {
            path.push(String::from_utf8(part).unwrap());
        }
        path
    }

    /// Open every record in reverse order (as the restore does) and check
    /// each descriptor is the directory its record names.
    fn check_all(root: &Path, dirs: &[DirRecord]) {
        let fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut cursor = DirCursor::new(fd.as_fd(), dirs);
        for index in (0..dirs.len()).rev() {
            let opened = rustix::fs::fstat(cursor.open(index).unwrap()).unwrap();
            let wanted = std::fs::metadata(path_of(root, dirs, index)).unwrap();
            assert_eq!(opened.st_ino, wanted.ino(), "record {index}");
        }
        assert!(cursor.chain.len() <= MAX_OPEN);
    }

    #[test]
    fn a_chain_deeper_than_the_descriptors_held_opens_every_level() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = Vec::new();
        let mut path = tmp.path().to_path_buf();
        for i in 0..(3 * MAX_OPEN + 7) {
            path.push("d");
            std::fs::create_dir(&path).unwrap();
            dirs.push(record(i.checked_sub(1), "d"));
        }
        check_all(tmp.path(), &dirs);
    }

    #[test]
    fn a_wide_tree_opens_siblings_and_cousins() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = Vec::new();
        // Made breadth first, as a walk makes a folder's subfolders.
        for top in 0..5 {
            dirs.push(record(None, &format!("t{top}")));
        }
        for top in 0..5 {
            for mid in 0..4 {
                dirs.push(record(Some(top), &format!("m{mid}")));
            }
        }
        for mid in 5..25 {
            for leaf in 0..3 {
                dirs.push(record(Some(mid), &format!("l{leaf}")));
            }
        }
        for index in 0..dirs.len() {
            std::fs::create_dir(path_of(tmp.path(), &dirs, index)).unwrap();
        }
        check_all(tmp.path(), &dirs);
    }
}
