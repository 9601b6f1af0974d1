//! Directory (tree) objects: the entries of one directory.
//!
//! A tree object is stored as a blob in a tree pack, named by the token of
//! its encoded bytes, so an unchanged directory encodes to the same bytes,
//! gets the same id, and is not stored again. Its encoding is MessagePack
//! (maps with field names, see [`TreeEntry`]), entries sorted by name.
//! A directory entry points at its subtree and carries the subtree's file
//! count and data size, so a generation's totals never need a subtree read.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::ids::{ChunkId, Token};

/// The kind of a file-system object.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A chunk id as stored: 32 bytes of token, then 8 bytes of variant
/// (little-endian) only if the variant is not 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StoredChunkId(pub ChunkId);

impl Serialize for StoredChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = [0u8; 40];
        bytes[..32].copy_from_slice(&self.0.token.0);
        let len = if self.0.variant != 0 {
            bytes[32..].copy_from_slice(&self.0.variant.to_le_bytes());
            40
        } else {
            32
        };
        serde_bytes::Bytes::new(&bytes[..len]).serialize(s)
    }
}

impl StoredChunkId {
    /// A chunk id from its stored bytes (see the type's docs).
    fn from_stored(bytes: &[u8]) -> Result<Self, String> {
        let (token, variant) = match bytes.len() {
            32 => (bytes, 0),
            40 => (
                &bytes[..32],
                u64::from_le_bytes(bytes[32..].try_into().map_err(|e| format!("{e}"))?),
            ),
            n => return Err(format!("chunk id of {n} bytes")),
        };
        let mut t = [0u8; 32];
        t.copy_from_slice(token);
        Ok(StoredChunkId(ChunkId {
            token: Token(t),
            variant,
        }))
    }
}

/// Reads a [`StoredChunkId`] from the decoder's bytes where they are (a
/// tree holds one per chunk of each file: no buffer is made for each).
struct StoredChunkIdVisitor;

impl<'de> serde::de::Visitor<'de> for StoredChunkIdVisitor {
    type Value = StoredChunkId;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a chunk id of 32 or 40 bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        StoredChunkId::from_stored(v).map_err(E::custom)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut bytes = [0u8; 40];
        let mut len = 0;
        while let Some(b) = seq.next_element::<u8>()? {
            if len == bytes.len() {
                return Err(serde::de::Error::custom("chunk id of more than 40 bytes"));
            }
            bytes[len] = b;
            len += 1;
        }
        StoredChunkId::from_stored(&bytes[..len]).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for StoredChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(StoredChunkIdVisitor)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One entry of a directory: a file, a subdirectory, a symlink, ...
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TreeEntry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub ctime: i64,
    pub ctime_ns: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<u8>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "budget::vec"
    )]
    pub xattrs: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub checksum: Vec<u8>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "budget::vec"
    )]
    pub chunks: Vec<StoredChunkId>,
    /// A directory's tree object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<StoredChunkId>,
    /// Files (non-directories) in a directory's subtree.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subtree_files: u64,
    /// Bytes of file data in a directory's subtree.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subtree_bytes: u64,
}

impl TreeEntry {
    /// An empty directory entry with the given name (used for parents that
    /// were never given metadata of their own).
    pub fn bare_dir(name: &[u8]) -> Self {
        TreeEntry {
            name: name.to_vec(),
            kind: EntryKind::Dir,
            mode: 0o40755,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            size: 0,
            mtime: 0,
            mtime_ns: 0,
            ctime: 0,
            ctime_ns: 0,
            nlink: 1,
            dev: 0,
            ino: 0,
            rdev: 0,
            target: Vec::new(),
            xattrs: Vec::new(),
            checksum: Vec::new(),
            chunks: Vec::new(),
            subtree: None,
            subtree_files: 0,
            subtree_bytes: 0,
        }
    }

    /// Files and bytes this entry contributes to its directory's totals.
    pub fn totals(&self) -> (u64, u64) {
        match self.kind {
            EntryKind::Dir => (self.subtree_files, self.subtree_bytes),
            EntryKind::File => (1, self.size),
            _ => (1, 0),
        }
    }
}

/// The entries of one directory, sorted by name.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Tree {
    #[serde(deserialize_with = "budget::vec")]
    pub entries: Vec<TreeEntry>,
}

/// The memory a tree may take as it is decoded, in proportion to its
/// encoded bytes: a tree obnam writes takes two to five times its
/// encoded size. Without a bound, a crafted one within every size limit
/// took about 30 times (a 21 kB object, 250 MB decompressed, made every
/// reader allocate 8 GB, or abort): an empty extended attribute is 5
/// bytes encoded and 48 in memory, and a `Vec` that grows by doubling
/// asks for up to twice what it holds.
mod budget {
    use std::cell::Cell;

    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

    /// Bytes of memory per encoded byte a decoded tree may take. The
    /// most a tree obnam writes can take is about 7 (a file of many
    /// attributes with short names, `user.a`, and empty values: 11 bytes
    /// each encoded, 80 charged); one crafted with empty names is 16.
    pub const PER_ENCODED_BYTE: usize = 10;
    /// And this much more, whatever its size.
    pub const BASE: usize = 64 << 10;

    thread_local! {
        /// What the tree being decoded on this thread may still take.
        static LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// Run `f` (a decode of `encoded_len` bytes) with its budget.
    pub fn with<T>(encoded_len: usize, f: impl FnOnce() -> T) -> T {
        let budget = encoded_len
            .saturating_mul(PER_ENCODED_BYTE)
            .saturating_add(BASE);
        let before = LEFT.with(|l| l.replace(budget));
        let result = f();
        LEFT.with(|l| l.set(before));
        result
    }

    /// Take `bytes` from the budget.
    fn charge<E: Error>(bytes: usize) -> Result<(), E> {
        LEFT.with(|l| match l.get().checked_sub(bytes) {
            Some(left) => {
                l.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "it would take more than {PER_ENCODED_BYTE} times its size in memory \
                 (crafted, or damaged)"
            ))),
        })
    }

    /// A sequence as a `Vec`, each element charged to the budget before
    /// it is made, and room made once for as many as the encoding says
    /// there are (no doubling), once they are paid for.
    pub fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct Elements<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                // An element's own allocations (a name, an attribute's
                // name; an empty value takes none) are at most as long as
                // their encoding, but the allocator takes 32 bytes for
                // even one byte.
                let each = std::mem::size_of::<T>() + 32;
                let announced = seq.size_hint().unwrap_or(0);
                charge::<A::Error>(announced.saturating_mul(each))?;
                let mut out = Vec::with_capacity(announced);
                while let Some(element) = seq.next_element()? {
                    if out.len() >= announced {
                        charge::<A::Error>(each)?;
                    }
                    out.push(element);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Elements(std::marker::PhantomData))
    }
}

impl Tree {
    /// About how many bytes of memory it holds, decoded: its entries and
    /// what each points to, and the allocator's few bytes per allocation.
    /// Five or so times its stored size (a folder of 10,000 files: about
    /// 4 MB), which is what caches of decoded trees must count.
    pub fn memory_bytes(&self) -> usize {
        /// What the allocator adds to an allocation, about.
        const PER_ALLOCATION: usize = 16;
        fn heap(capacity_bytes: usize) -> usize {
            if capacity_bytes == 0 {
                0
            } else {
                capacity_bytes + PER_ALLOCATION
            }
        }
        let entries: usize = self
            .entries
            .iter()
            .map(|e| {
                heap(e.name.capacity())
                    + heap(e.user.capacity())
                    + heap(e.group.capacity())
                    + heap(e.target.capacity())
                    + heap(e.checksum.capacity())
                    + heap(e.chunks.capacity() * std::mem::size_of::<StoredChunkId>())
                    + heap(e.xattrs.capacity() * std::mem::size_of::<(ByteBuf, ByteBuf)>())
                    + e.xattrs
                        .iter()
                        .map(|(k, v)| heap(k.capacity()) + heap(v.capacity()))
                        .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Tree>()
            + heap(self.entries.capacity() * std::mem::size_of::<TreeEntry>())
            + entries
    }

    /// Encode as MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        // A slice's length is exact, so this cannot fail.
        encode_entries(&self.entries).unwrap_or_default()
    }

    /// Decode MessagePack, in at most 10 times its size of memory (see
    /// `budget`).
    pub fn decode(data: &[u8]) -> Result<Self, String> {
        budget::with(data.len(), || rmp_serde::from_slice(data)).map_err(|e| e.to_string())
    }

    /// An entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Encode `entries` (in name order) as the [`Tree`] they make, byte for
/// byte as [`Tree::encode`] would, without gathering them into one first:
/// the generation builder encodes a folder straight from its overlay, so
/// that a folder of 100,000 files is not held twice while it is written.
///
/// Fails only if the iterator yields another number of entries than its
/// length says (the encoding would be corrupt).
pub fn encode_entries<'a, I>(entries: I) -> Result<Vec<u8>, String>
where
    I: IntoIterator<Item = &'a TreeEntry>,
    I::IntoIter: ExactSizeIterator,
{
    let tree = TreeOf(EntrySeq(std::cell::Cell::new(Some(entries.into_iter()))));
    rmp_serde::to_vec_named(&tree).map_err(|e| e.to_string())
}

/// A [`Tree`] whose entries come from an iterator (see [`encode_entries`]).
struct TreeOf<I>(EntrySeq<I>);

/// The entries of a [`TreeOf`]: serialized once, as they come.
struct EntrySeq<I>(std::cell::Cell<Option<I>>);

impl<'a, I: ExactSizeIterator<Item = &'a TreeEntry>> Serialize for TreeOf<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The same shape as the derived `Serialize` of `Tree`.
        let mut tree = s.serialize_struct("Tree", 1)?;
        tree.serialize_field("entries", &self.0)?;
        tree.end()
    }
}

impl<'a, I: ExactSizeIterator<Item = &'a TreeEntry>> Serialize for EntrySeq<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let entries = self
            .0
            .take()
            .ok_or_else(|| serde::ser::Error::custom("tree entries serialized twice"))?;
        let len = entries.len();
        let mut seq = s.serialize_seq(Some(len))?;
        let mut count = 0;
        for entry in entries {
            seq.serialize_element(entry)?;
            count += 1;
        }
        if count != len {
            return Err(serde::ser::Error::custom(format!(
                "{count} tree entries where {len} were announced"
            )));
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, chunks: usize, xattrs: usize) -> TreeEntry {
        let mut e = TreeEntry::bare_dir(name.as_bytes());
        e.kind = EntryKind::File;
        e.user = "someone".into();
        e.group = "users".into();
        e.checksum = vec![7; 32];
        e.chunks = (0..chunks)
            .map(|i| StoredChunkId(ChunkId::first(Token::of(&i.to_le_bytes()))))
            .collect();
        e.xattrs = (0..xattrs)
            .map(|i| {
                (
                    ByteBuf::from(format!("security.selinux{i}").into_bytes()),
                    ByteBuf::from(b"system_u:object_r:user_home_t:s0".to_vec()),
                )
            })
            .collect();
        e
    }

    /// Trees as obnam writes them, of small files with and without chunks
    /// and attributes, decode within the budget, with room to spare.
    #[test]
    fn trees_obnam_writes_decode_well_within_their_memory_budget() {
        for (chunks, xattrs) in [(0, 0), (1, 0), (0, 3), (1, 1), (20, 0)] {
            let tree = Tree {
                entries: (0..5_000)
                    .map(|i| file(&format!("f{i}"), chunks, xattrs))
                    .collect(),
            };
            let bytes = tree.encode();
            let decoded = Tree::decode(&bytes).unwrap();
            let ratio = decoded.memory_bytes() as f64 / bytes.len() as f64;
            assert!(ratio < 4.0, "{chunks} chunks, {xattrs} xattrs: {ratio}");
        }
    }

    /// Files of many attributes with the shortest names Linux takes and
    /// empty values (tags) are the most memory per encoded byte a tree
    /// obnam writes can take: they decode (a folder of them was refused,
    /// and never restored).
    #[test]
    fn a_folder_of_files_with_many_short_empty_attributes_decodes() {
        let tree = Tree {
            entries: (0..40)
                .map(|i| {
                    let mut e = file(&format!("f{i}"), 0, 0);
                    e.xattrs = (0..200)
                        .map(|j| {
                            (
                                ByteBuf::from(format!("user.{}", j % 10).into_bytes()),
                                ByteBuf::new(),
                            )
                        })
                        .collect();
                    e
                })
                .collect(),
        };
        Tree::decode(&tree.encode()).unwrap();
    }

    /// A crafted tree whose decoded form is many times its encoding (one
    /// file with a million empty attributes: 5 bytes each encoded, 48 in
    /// memory), or that announces more elements than it holds, is refused
    /// before the memory is taken.
    #[test]
    fn a_tree_that_would_take_many_times_its_size_in_memory_is_refused() {
        let mut bomb = file("f", 0, 0);
        bomb.xattrs = vec![(ByteBuf::new(), ByteBuf::new()); 1_000_000];
        let bytes = Tree {
            entries: vec![bomb],
        }
        .encode();
        let err = Tree::decode(&bytes).unwrap_err();
        assert!(
            err.contains("more than 10 times its size in memory"),
            "{err}"
        );
        // An array header of 2^32-1 entries, and nothing after it.
        let mut lying = vec![0x81, 0xa7];
        lying.extend_from_slice(b"entries");
        lying.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        let err = Tree::decode(&lying).unwrap_err();
        assert!(
            err.contains("more than 10 times its size in memory"),
            "{err}"
        );
    }

    #[test]
    fn trees_round_trip_with_odd_names_and_variants() {
        let mut file = TreeEntry::bare_dir(b"\xff\nname");
        file.kind = EntryKind::File;
        file.size = 42;
        file.chunks = vec![
            StoredChunkId(ChunkId::first(Token::of(b"a"))),
            StoredChunkId(ChunkId {
                token: Token::of(b"b"),
                variant: 99,
            }),
        ];
        file.xattrs = vec![(
            serde_bytes::ByteBuf::from(b"user.x".to_vec()),
            serde_bytes::ByteBuf::from(vec![0, 1, 2]),
        )];
        let tree = Tree {
            entries: vec![TreeEntry::bare_dir(b"a"), file],
        };
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        assert_eq!(tree.encode(), bytes, "encoding is deterministic");
        assert!(Tree::decode(&bytes[..bytes.len() / 2]).is_err());
        let derived = rmp_serde::to_vec_named(&tree).unwrap();
        assert_eq!(bytes, derived, "the same bytes as the derived encoding");
        let empty = Tree::default();
        assert_eq!(empty.encode(), rmp_serde::to_vec_named(&empty).unwrap());
    }

    #[test]
    fn chunk_ids_are_read_from_bytes_or_a_list_of_bytes_and_bad_lengths_refused() {
        let id = |bytes: &[u8]| rmp_serde::from_slice::<StoredChunkId>(bytes);
        let token = Token([7; 32]);
        let stored = rmp_serde::to_vec(&serde_bytes::Bytes::new(&[7; 32])).unwrap();
        assert_eq!(id(&stored).unwrap().0, ChunkId::first(token));
        let mut with_variant = [7u8; 40];
        with_variant[32..].copy_from_slice(&5u64.to_le_bytes());
        let stored = rmp_serde::to_vec(&serde_bytes::Bytes::new(&with_variant)).unwrap();
        let expected = ChunkId { token, variant: 5 };
        assert_eq!(id(&stored).unwrap().0, expected);
        // A list of numbers, as a writer without byte strings makes it.
        let listed = rmp_serde::to_vec(&with_variant.to_vec()).unwrap();
        assert_eq!(id(&listed).unwrap().0, expected);
        for bad in [0, 31, 33, 39, 41] {
            let stored = rmp_serde::to_vec(&serde_bytes::Bytes::new(&vec![1; bad])).unwrap();
            let e = id(&stored).unwrap_err().to_string();
            assert!(e.contains(&format!("chunk id of {bad} bytes")), "{e}");
            let listed = rmp_serde::to_vec(&vec![1u8; bad]).unwrap();
            assert!(id(&listed).is_err(), "a list of {bad} bytes");
        }
        assert!(id(&rmp_serde::to_vec("text").unwrap()).is_err());
    }
}
