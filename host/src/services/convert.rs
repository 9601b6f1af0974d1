//! The one conversion point between the repository engine's types and
//! their boundary forms in plugin-api ([`plugin_api::repo_abi`]).
//!
//! Every conversion is an impl of [`Convert`]. Structs that the engine and
//! the boundary share field by field are converted by [`convert_fields!`]
//! from one list of the shared fields (both directions of an entry from the
//! same list), so that a field added to both sides is added here once.
//! Nothing else in the host converts between these types.

use obnam_repository::check::{MissingPacks, ObjectReport};
use obnam_repository::generation::Generation;
use obnam_repository::ids;
use obnam_repository::prune::PruneReport;
use obnam_repository::tree::{self, StoredChunkId, TreeEntry};
use obnam_repository::usage::{ClientUsage, Usage};
use plugin_api::repo_abi::{
    self as abi, RawClientUsage, RawEntry, RawGeneration, RawKeySlot, RawMissingPacks,
    RawObjectReport, RawPruneReport, RawUsage, RawXattr,
};
use plugin_api::types::{ROption, RString, RVec};
use serde_bytes::ByteBuf;

/// A conversion between an engine type and its boundary form (either way).
pub trait Convert<T> {
    /// The value in the other form.
    fn convert(self) -> T;
}

impl<T> Convert<T> for T {
    fn convert(self) -> T {
        self
    }
}

impl<A: Convert<B>, B> Convert<ROption<B>> for Option<A> {
    fn convert(self) -> ROption<B> {
        self.map(A::convert).into()
    }
}

/// `Convert` for types whose values convert as they are (`into`).
macro_rules! convert_into {
    ($($from:ty => $to:ty),* $(,)?) => {
        $(impl Convert<$to> for $from {
            fn convert(self) -> $to {
                self.into()
            }
        })*
    };
}

convert_into!(
    Vec<u8> => RVec<u8>,
    String => RString,
    &str => RString,
    RString => String,
);

impl Convert<Vec<u8>> for RVec<u8> {
    fn convert(self) -> Vec<u8> {
        self.into_vec()
    }
}

impl Convert<u64> for usize {
    fn convert(self) -> u64 {
        self as u64
    }
}

/// `Convert` for lists, element by element.
macro_rules! convert_lists {
    ($($from:ty => $to:ty),* $(,)?) => {
        $(impl Convert<RVec<$to>> for Vec<$from> {
            fn convert(self) -> RVec<$to> {
                self.into_iter().map(Convert::convert).collect()
            }
        })*
    };
}

convert_lists!(
    TreeEntry => RawEntry,
    ids::ChunkId => abi::ChunkId,
    StoredChunkId => abi::ChunkId,
    Generation => RawGeneration,
    (ByteBuf, ByteBuf) => RawXattr,
    (String, String) => RawKeySlot,
    String => RString,
    ClientUsage => RawClientUsage,
);

impl Convert<Vec<StoredChunkId>> for RVec<abi::ChunkId> {
    fn convert(self) -> Vec<StoredChunkId> {
        self.into_iter().map(Convert::convert).collect()
    }
}

impl Convert<Vec<(ByteBuf, ByteBuf)>> for RVec<RawXattr> {
    fn convert(self) -> Vec<(ByteBuf, ByteBuf)> {
        self.into_iter()
            .map(|x| {
                (
                    ByteBuf::from(x.name.into_vec()),
                    ByteBuf::from(x.value.into_vec()),
                )
            })
            .collect()
    }
}

impl Convert<RawXattr> for (ByteBuf, ByteBuf) {
    fn convert(self) -> RawXattr {
        RawXattr {
            name: self.0.into_vec().into(),
            value: self.1.into_vec().into(),
        }
    }
}

impl Convert<RawKeySlot> for (String, String) {
    fn convert(self) -> RawKeySlot {
        RawKeySlot {
            id: self.0.into(),
            text: self.1.into(),
        }
    }
}

/// `Convert` for a struct whose fields are listed: `$e` names the value
/// converted, each listed field converts to the field of the same name,
/// and the fields after the list are given as expressions.
macro_rules! convert_fields {
    ($e:ident: $from:path => $to:path { $($field:ident),* $(,)? } $($extra:ident: $value:expr),* $(,)?) => {
        impl Convert<$to> for $from {
            fn convert(self) -> $to {
                let $e = self;
                $to {
                    $($field: $e.$field.convert(),)*
                    $($extra: $value,)*
                }
            }
        }
    };
}

/// `Convert` both ways for an enum whose variants have the same names.
macro_rules! convert_enum {
    ($a:path, $b:path { $($variant:ident),* $(,)? }) => {
        impl Convert<$b> for $a {
            fn convert(self) -> $b {
                match self {
                    $(Self::$variant => <$b>::$variant,)*
                }
            }
        }
        impl Convert<$a> for $b {
            fn convert(self) -> $a {
                match self {
                    $(Self::$variant => <$a>::$variant,)*
                }
            }
        }
    };
}

convert_enum!(
    tree::EntryKind,
    abi::EntryKind {
        File,
        Dir,
        Symlink,
        Fifo,
        Socket,
        CharDevice,
        BlockDevice,
    }
);

impl Convert<abi::Token> for ids::Token {
    fn convert(self) -> abi::Token {
        abi::Token(self.0)
    }
}

impl Convert<ids::Token> for abi::Token {
    fn convert(self) -> ids::Token {
        ids::Token(self.0)
    }
}

convert_fields!(c: ids::ChunkId => abi::ChunkId { token, variant });
convert_fields!(c: abi::ChunkId => ids::ChunkId { token, variant });

impl Convert<abi::ChunkId> for StoredChunkId {
    fn convert(self) -> abi::ChunkId {
        self.0.convert()
    }
}

impl Convert<StoredChunkId> for abi::ChunkId {
    fn convert(self) -> StoredChunkId {
        StoredChunkId(self.convert())
    }
}

/// The fields an engine entry and a boundary entry share, one to one:
/// `$then!` gets them after its other arguments.
macro_rules! with_entry_fields {
    ($then:ident!($($args:tt)*) $($rest:tt)*) => {
        $then!($($args)* {
            name, kind, mode, uid, gid, user, group, size, mtime, mtime_ns, ctime,
            ctime_ns, nlink, dev, ino, rdev, target, xattrs, checksum, chunks,
        } $($rest)*);
    };
}

with_entry_fields!(convert_fields!(e: TreeEntry => RawEntry)
    subtree_files: e.subtree_files,
    subtree_bytes: e.subtree_bytes,
);

// The subtree fields of an entry a plugin puts are the engine's to fill in.
with_entry_fields!(convert_fields!(e: RawEntry => TreeEntry)
    subtree: None,
    subtree_files: 0,
    subtree_bytes: 0,
);

convert_fields!(g: Generation => RawGeneration {
    id, client, file_count, data_size, is_checkpoint,
}
    started_ns: g.started,
    ended_ns: g.ended,
);

impl Convert<RawGeneration> for &Generation {
    fn convert(self) -> RawGeneration {
        self.clone().convert()
    }
}

convert_fields!(m: MissingPacks => RawMissingPacks { packs, blobs });
convert_fields!(r: ObjectReport => RawObjectReport { problems, packs_checked, blobs_checked });
convert_fields!(r: PruneReport => RawPruneReport {
    pretend, packs_deleted, packs_rewritten, bytes_freed, bytes_rewritten,
    index_objects_deleted, deferred, waiting_runs, finished_earlier_plans, abandoned_plans,
    packs_kept_for_new_generations, generations, missing_blobs, delete, rewrite,
});
convert_fields!(c: ClientUsage => RawClientUsage {
    name, generations, checkpoints, latest_files, latest_bytes, logical_bytes, blobs,
    stored_bytes,
});
convert_fields!(u: Usage => RawUsage {
    clients, packs, pack_bytes, blobs, used_blobs, used_bytes, unused_packs,
    partly_used_packs, missing_blobs,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TreeEntry {
        let mut e = TreeEntry::bare_dir(b"dir");
        e.user = "alice".into();
        e.group = "staff".into();
        e.mtime_ns = 7;
        e.xattrs = vec![(
            ByteBuf::from(b"user.a".to_vec()),
            ByteBuf::from(b"1".to_vec()),
        )];
        e.chunks = vec![StoredChunkId(ids::ChunkId {
            token: ids::Token([3; 32]),
            variant: 9,
        })];
        e.subtree_files = 2;
        e.subtree_bytes = 5;
        e
    }

    #[test]
    fn an_entry_goes_to_the_boundary_and_back() {
        let e = entry();
        let raw: RawEntry = e.clone().convert();
        assert_eq!(raw.group.as_str(), "staff");
        assert_eq!(raw.chunks[0].variant, 9);
        assert_eq!(raw.subtree_files, 2);
        let back: TreeEntry = raw.convert();
        // The subtree fields are the engine's own.
        let expected = TreeEntry {
            subtree_files: 0,
            subtree_bytes: 0,
            ..e
        };
        assert_eq!(back, expected);
    }
}
