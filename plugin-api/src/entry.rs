//! [`Entry`], a file-system object as a generation records it, and its
//! conversions to and from the boundary form [`RawEntry`], both made from
//! one list of the fields.

use abi_stable::std_types::{RString, RVec};

use crate::repo_abi::{ChunkId, EntryKind, RawEntry, RawXattr};

/// A file-system object as recorded in a generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The last component of the path (raw bytes: need not be UTF-8).
    pub name: Vec<u8>,
    /// What kind of object this is.
    pub kind: EntryKind,
    /// `st_mode`: permission bits and file type.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Owner user name, where known.
    pub user: String,
    /// Owner group name, where known.
    pub group: String,
    /// Size in bytes (of a regular file: its content).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: u32,
    /// Status-change time, seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds part of the status-change time.
    pub ctime_ns: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Device of the file system holding it (with `ino`, identifies hard links).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// A symlink's target.
    pub target: Vec<u8>,
    /// Extended attributes: (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whole-file checksum of a regular file, of the kind it says (see
    /// [`checksum`](crate::checksum)).
    pub checksum: Vec<u8>,
    /// A regular file's chunks, in order.
    pub chunks: Vec<ChunkId>,
    /// For a directory: files (non-directories) in its subtree (filled in by the host).
    pub subtree_files: u64,
    /// For a directory: bytes of file data in its subtree.
    pub subtree_bytes: u64,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            name: Vec::new(),
            kind: EntryKind::File,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            size: 0,
            mtime: 0,
            mtime_ns: 0,
            ctime: 0,
            ctime_ns: 0,
            nlink: 0,
            dev: 0,
            ino: 0,
            rdev: 0,
            target: Vec::new(),
            xattrs: Vec::new(),
            checksum: Vec::new(),
            chunks: Vec::new(),
            subtree_files: 0,
            subtree_bytes: 0,
        }
    }
}

impl Entry {
    /// Whether `other`, recorded with the same device and inode number
    /// (two names of one hard-linked object), records the same object:
    /// the same kind, and for a file the same content, for a symlink the
    /// same target, for a device node the same device number. A file
    /// rewritten while a backup went from one of its names to the other
    /// is recorded with two contents; each name is then an object of its
    /// own, or one name would show the other's content. (Since 0.1.16.)
    ///
    /// And the same inode's attributes: owner, group, mode, modification
    /// and change times. Names of one object read in one backup share
    /// them; two objects do not, even with one device and inode number:
    /// an entry a backup kept from an earlier generation (a folder it
    /// could not read) records an inode number the file system may have
    /// given since to another file, and joining the two would give the
    /// second name the first's owner and mode, and make a change to one
    /// a change to both. (Since 0.1.20.)
    pub fn same_object(&self, other: &Entry) -> bool {
        self.object_state() == other.object_state()
    }

    /// A key for the object this entry records: its device and inode
    /// numbers and a digest of what [`same_object`](Self::same_object)
    /// compares. Entries with one key are names of one object, as restore
    /// makes them; group names by it, not by the inode number alone, so
    /// that restore, `dump`, `mount`, `diff` and `verify` all see the same
    /// objects (two names with one inode number recorded in different
    /// states are two objects, and two names alike of them one). The
    /// digest is for this process only. (Since 0.1.20.)
    pub fn object_key(&self) -> (u64, u64, u64) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.object_state().hash(&mut h);
        (self.dev, self.ino, h.finish())
    }

    /// What names of one object share, as recorded (see
    /// [`same_object`](Self::same_object)): one list for the comparison
    /// and for the key's digest.
    #[allow(clippy::type_complexity)]
    fn object_state(
        &self,
    ) -> (
        u8,
        &[u8],
        u64,
        &[u8],
        u64,
        (u32, u32, u32),
        (i64, u32, i64, u32),
    ) {
        (
            self.kind as u8,
            &self.checksum,
            self.size,
            &self.target,
            self.rdev,
            (self.uid, self.gid, self.mode),
            (self.mtime, self.mtime_ns, self.ctime, self.ctime_ns),
        )
    }
}

/// A field of [`Entry`] and its form in [`RawEntry`].
trait Boundary: Sized {
    /// The field's type in the boundary form.
    type Raw;
    /// The boundary form of the field.
    fn to_raw(&self) -> Self::Raw;
    /// The field from its boundary form.
    fn from_raw(raw: Self::Raw) -> Self;
}

/// [`Boundary`] for types that cross as they are.
macro_rules! boundary_as_is {
    ($($t:ty),*) => {
        $(impl Boundary for $t {
            type Raw = $t;
            fn to_raw(&self) -> $t {
                *self
            }
            fn from_raw(raw: $t) -> $t {
                raw
            }
        })*
    };
}

boundary_as_is!(u32, u64, i64, EntryKind);

impl Boundary for Vec<u8> {
    type Raw = RVec<u8>;
    fn to_raw(&self) -> RVec<u8> {
        RVec::from_slice(self)
    }
    fn from_raw(raw: RVec<u8>) -> Self {
        raw.into_vec()
    }
}

impl Boundary for String {
    type Raw = RString;
    fn to_raw(&self) -> RString {
        RString::from(self.as_str())
    }
    fn from_raw(raw: RString) -> Self {
        raw.into_string()
    }
}

impl Boundary for Vec<ChunkId> {
    type Raw = RVec<ChunkId>;
    fn to_raw(&self) -> RVec<ChunkId> {
        RVec::from_slice(self)
    }
    fn from_raw(raw: RVec<ChunkId>) -> Self {
        raw.into_vec()
    }
}

impl Boundary for Vec<(Vec<u8>, Vec<u8>)> {
    type Raw = RVec<RawXattr>;
    fn to_raw(&self) -> RVec<RawXattr> {
        self.iter()
            .map(|(name, value)| RawXattr {
                name: name.to_raw(),
                value: value.to_raw(),
            })
            .collect()
    }
    fn from_raw(raw: RVec<RawXattr>) -> Self {
        raw.into_iter()
            .map(|x| (Vec::from_raw(x.name), Vec::from_raw(x.value)))
            .collect()
    }
}

/// Both conversions of an entry, from one list of its fields: every field
/// of [`Entry`] is the field of the same name of [`RawEntry`].
macro_rules! entry_conversions {
    ($($field:ident),* $(,)?) => {
        impl Entry {
            /// The boundary form.
            pub fn to_raw(&self) -> RawEntry {
                RawEntry {
                    $($field: self.$field.to_raw(),)*
                }
            }

            /// From the boundary form.
            pub fn from_raw(raw: RawEntry) -> Self {
                Entry {
                    $($field: Boundary::from_raw(raw.$field),)*
                }
            }
        }
    };
}

entry_conversions!(
    name,
    kind,
    mode,
    uid,
    gid,
    user,
    group,
    size,
    mtime,
    mtime_ns,
    ctime,
    ctime_ns,
    nlink,
    dev,
    ino,
    rdev,
    target,
    xattrs,
    checksum,
    chunks,
    subtree_files,
    subtree_bytes,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo_abi::Token;

    #[test]
    fn an_entry_goes_to_the_boundary_and_back() {
        let entry = Entry {
            name: b"f".to_vec(),
            kind: EntryKind::Symlink,
            mode: 0o120777,
            user: "alice".into(),
            group: "staff".into(),
            mtime_ns: 5,
            target: b"/elsewhere".to_vec(),
            xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
            chunks: vec![ChunkId {
                token: Token([7; 32]),
                variant: 3,
            }],
            subtree_bytes: 9,
            ..Entry::default()
        };
        let raw = entry.to_raw();
        assert_eq!(raw.group.as_str(), "staff");
        assert_eq!(raw.xattrs[0].value.as_slice(), b"1");
        assert_eq!(Entry::from_raw(raw), entry);
    }

    #[test]
    fn names_are_one_object_only_with_the_inodes_attributes_alike() {
        let first = Entry {
            name: b"a".to_vec(),
            kind: EntryKind::File,
            mode: 0o100644,
            uid: 1000,
            size: 3,
            mtime: 100,
            ctime: 100,
            nlink: 2,
            ino: 7,
            checksum: vec![1; 32],
            xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
            ..Entry::default()
        };
        // Another name, read later: other link count, no xattrs copied.
        let other_name = Entry {
            name: b"b".to_vec(),
            nlink: 3,
            xattrs: Vec::new(),
            ..first.clone()
        };
        assert!(first.same_object(&other_name));
        let unlike = [
            Entry {
                mode: 0o100600,
                ..other_name.clone()
            },
            Entry {
                uid: 0,
                ..other_name.clone()
            },
            Entry {
                gid: 5,
                ..other_name.clone()
            },
            Entry {
                mtime_ns: 1,
                ..other_name.clone()
            },
            Entry {
                ctime: 200,
                ..other_name.clone()
            },
            Entry {
                checksum: vec![2; 32],
                ..other_name.clone()
            },
            Entry {
                kind: EntryKind::Fifo,
                ..other_name.clone()
            },
        ];
        assert_eq!(first.object_key(), other_name.object_key());
        for e in unlike {
            assert!(!first.same_object(&e), "{e:?}");
            assert_ne!(first.object_key(), e.object_key(), "{e:?}");
        }
    }
}
