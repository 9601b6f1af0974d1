//! The format's size limits exist twice: the engine owns them
//! (`obnam_repository::limits`), and plugin-api carries a copy for the data
//! filters (`plugin_api::limits`), which may not depend on the engine. The
//! host depends on both, so it is where a test can hold them equal.

use obnam_repository::limits as engine;
use plugin_api::limits as api;

/// Each named constant is the same in both.
macro_rules! agree {
    ($($name:ident),* $(,)?) => {
        $(assert_eq!(engine::$name, api::$name, stringify!($name));)*
    };
}

#[test]
fn every_constant_agrees() {
    agree!(
        MAX_CHUNK_LEN,
        MAX_TREE_LEN,
        MAX_INDEX_LEN,
        MAX_RECORD_LEN,
        MAX_PACK_LEN,
        MAX_TREE_DEPTH,
        MAX_PATH_LEN,
        MAX_OBJECT_LEN,
    );
}

#[test]
fn max_decoded_len_agrees_for_every_context() {
    // Every kind of object the format names, a key of each kind of small
    // record, and names that fit no kind.
    let contexts = [
        "chunk/00ab",
        "tree/00ab",
        "pack/00ab",
        "index/00ab",
        "generations/client/gen",
        "clients/client",
        "locks/lock",
        "keys/slot",
        "creating/claim",
        "config",
        "chunk",
        "tree",
        "pack",
        "index",
        "",
        "/",
        "chunks/00ab",
        "Chunk/00ab",
        "unknown/kind",
    ];
    for context in contexts {
        assert_eq!(
            engine::max_decoded_len(context),
            api::max_decoded_len(context),
            "max_decoded_len({context:?})"
        );
    }
}
