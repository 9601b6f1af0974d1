//! The size limits of the repository format, shared by the host and by
//! every data filter.
//!
//! A stored object may claim anything about itself: a compressed object
//! states the length it decompresses to, a tree lists its entries, an index
//! object counts its blobs. A reader that believed such a claim before
//! checking it could be made to allocate gigabytes by a few stored bytes
//! (a "decompression bomb"). So the format bounds what each kind of object
//! may decode to, and every decoder refuses a claim over the bound
//! *before* allocating for it. Writers never produce anything larger, so a
//! repository written by obnam never trips these limits.
//!
//! A filter's decoder finds its bound with [`max_decoded_len`], from the
//! context the host gives it (`chunk/ID`, `tree/ID`, `index/ID`, ...).
//!
//! The limits are facts of the repository format. This file is their one
//! definition: plugin-api publishes it for the data filters, and the
//! repository engine (`obnam-repository`, which depends on no plugin
//! machinery) compiles this same file as its module `limits`, so the two
//! cannot differ.

/// The largest file chunk: the largest fixed chunk size (`--chunk-size`
/// accepts at most 64 MiB; content-defined chunks end at 16 MiB).
pub const MAX_CHUNK_LEN: usize = 64 << 20;

/// The largest encoded tree (directory) object: about a million entries.
pub const MAX_TREE_LEN: usize = 256 << 20;

/// The largest index object or pack trailer (a writer starts a new index
/// object, or a new pack, well before this).
pub const MAX_INDEX_LEN: usize = 256 << 20;

/// The largest small record: a generation, a client, a lock, a key slot,
/// the repository's config.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// The largest pack file: the largest `pack-size` (1 GiB), one more blob
/// of the largest kind, and its trailer.
pub const MAX_PACK_LEN: u64 = (1 << 30) + (MAX_TREE_LEN as u64) + (MAX_INDEX_LEN as u64);

/// The deepest directory a generation may hold (the root is depth 0). A
/// path that deep cannot even be named on Linux (PATH_MAX is 4096 bytes,
/// two per level at least), so no backup reaches it.
pub const MAX_TREE_DEPTH: usize = 4096;

/// The longest path in a generation, in bytes (sixteen times Linux's
/// PATH_MAX, which bounds what a backup can name).
pub const MAX_PATH_LEN: usize = 64 << 10;

/// The largest object of any kind a reader accepts.
pub const MAX_OBJECT_LEN: usize = MAX_TREE_LEN;

/// The most that the object named by `context` may decode to, after every
/// filter is undone. `context` is the name a filter is given: `chunk/ID`,
/// `tree/ID`, `pack/ID` (a pack's trailer), `index/ID`, or the key of a
/// small record (`generations/...`, `clients/...`, `locks/...`).
pub fn max_decoded_len(context: &str) -> usize {
    let kind = context.split('/').next().unwrap_or("");
    match kind {
        "chunk" => MAX_CHUNK_LEN,
        "tree" => MAX_TREE_LEN,
        "pack" | "index" | "prune" => MAX_INDEX_LEN,
        _ => MAX_RECORD_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_bound() {
        assert_eq!(max_decoded_len("chunk/ab"), MAX_CHUNK_LEN);
        assert_eq!(max_decoded_len("tree/ab"), MAX_TREE_LEN);
        assert_eq!(max_decoded_len("pack/ab"), MAX_INDEX_LEN);
        assert_eq!(max_decoded_len("index/ab"), MAX_INDEX_LEN);
        assert_eq!(max_decoded_len("generations/a/b"), MAX_RECORD_LEN);
        assert_eq!(max_decoded_len("locks/a"), MAX_RECORD_LEN);
        assert_eq!(max_decoded_len(""), MAX_RECORD_LEN);
        assert!(MAX_OBJECT_LEN >= MAX_CHUNK_LEN.max(MAX_INDEX_LEN).max(MAX_RECORD_LEN));
    }
}
