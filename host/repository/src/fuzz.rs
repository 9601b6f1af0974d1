//! Property tests ("fuzzing" on stable Rust) of the engine's decoders of
//! repository data: the filter header and object checksums
//! ([`object`](super::object)), index objects, the index cache's segment
//! files ([`segment`](super::segment)), pack headers and trailers,
//! tree objects, generation, client and lock records, prune plans and
//! their runs records, the config, the files of the local record cache
//! ([`record_cache`](super::record_cache)), and paths handed to a
//! generation reader.
//!
//! Random bytes, and valid objects with bytes flipped, inserted, deleted or
//! cut off, must never panic; counts and lengths read from the data are
//! checked before anything is allocated for them (the decoders cap what
//! they reserve, and a claim the data cannot hold fails); each decoder is
//! a single pass over its input, so none can loop.
//!
//! The number of cases is fixed ([`CASES`]) so that CI spends a few
//! seconds; `PROPTEST_CASES` overrides it for a longer run.

use proptest::prelude::*;

use super::generation::{components, Generation};
use super::ids::{ChunkId, ObjectId, Token};
use super::index::{self, BlobKind, Index, IndexEntry, Location};
use super::lock::LockRecord;
use super::object::{self, NoFilters};
use super::pack;
use super::prune::plan::{decode_plan, Plan, PlanRuns};
use super::record_cache::Cached;
use super::segment::{CoveredObject, SegEntry, Segment, SegmentWriter};
use super::storage::Stamp;
use super::tree::{EntryKind, StoredChunkId, Tree, TreeEntry};

use fuzz_support::{mutate, mutations};

/// Cases per property, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 1000;

fn config() -> ProptestConfig {
    fuzz_support::config(CASES)
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

fn entry(i: u8, pack: u32) -> IndexEntry {
    IndexEntry {
        id: ChunkId {
            token: Token([i; 32]),
            variant: u64::from(i % 3),
        },
        location: Location {
            pack,
            offset: u32::from(i) * 100,
            length: 100,
            kind: if i.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
        },
    }
}

fn valid_index() -> Vec<u8> {
    let mut index = Index::default();
    let a = index.pack_number(ObjectId([1; 16]));
    let b = index.pack_number(ObjectId([2; 16]));
    let entries: Vec<IndexEntry> = (0..20)
        .map(|i| entry(i, if i < 10 { a } else { b }))
        .collect();
    index::encode(&index, &entries)
}

fn valid_pack() -> Vec<u8> {
    let entries: Vec<IndexEntry> = (0..8).map(|i| entry(i, 0)).collect();
    let mut trailer = pack::trailer(&entries);
    object::add_checksum("pack/p", &mut trailer);
    let sealed = object::seal_whole(&NoFilters, None, "pack/p", &trailer).unwrap();
    pack::finish(pack::MAGIC.to_vec(), &sealed)
}

fn valid_tree() -> Vec<u8> {
    let mut file = TreeEntry::bare_dir(b"file\xff");
    file.kind = EntryKind::File;
    file.size = 7;
    file.chunks = vec![StoredChunkId(ChunkId::first(Token([3; 32])))];
    let mut dir = TreeEntry::bare_dir(b"dir");
    dir.subtree = Some(StoredChunkId(ChunkId::first(Token([4; 32]))));
    Tree {
        entries: vec![dir, file],
    }
    .encode()
}

fn valid_generation() -> Vec<u8> {
    serde_json::to_vec(&Generation {
        id: "0123456789abcdef".into(),
        client: "c".into(),
        started: 1,
        ended: 2,
        file_count: 3,
        data_size: 4,
        is_checkpoint: false,
        root: StoredChunkId(ChunkId::first(Token([5; 32]))),
        seq: 6,
        machine: "0123456789abcdef0123456789abcdef".into(),
        host: "h".into(),
        uid: Some(7),
        racy_from: Some(0),
    })
    .unwrap()
}

fn valid_plan() -> Vec<u8> {
    serde_json::to_vec(&Plan {
        created: 1,
        packs: vec![ObjectId([1; 16]).to_hex(), ObjectId([2; 16]).to_hex()],
        index: vec![ObjectId([3; 16]).to_hex()],
    })
    .unwrap()
}

const VALID_PLAN_RUNS: &[u8] =
    br#"{"runs": [{"host": "h", "pid": 1234, "created": 1700000000000000000}]}"#;

const VALID_CONFIG: &[u8] = br#"{"format": "obnam-repository", "version": 3, "id": "00112233445566778899aabbccddeeff", "created": "2026-12-01T00:00:00Z"}"#;
const VALID_CONFIG_V4: &[u8] = br#"{"format": "obnam-repository", "version": 4, "id": "00112233445566778899aabbccddeeff", "created": "2026-12-01T00:00:00Z", "tokens": "blake3"}"#;

/// A segment file of 300 entries (five pages) in three packs.
fn valid_segment() -> Vec<u8> {
    let packs = vec![ObjectId([1; 16]), ObjectId([2; 16]), ObjectId([3; 16])];
    let objects = vec![CoveredObject {
        name: "00ff".into(),
        entries: 300,
        packs: vec![0, 1, 2],
    }];
    let mut w = SegmentWriter::new(None, packs.len(), objects.len()).unwrap();
    for i in 0..300u32 {
        let mut token = [0u8; 32];
        token[..4].copy_from_slice(&i.to_be_bytes());
        w.push(&SegEntry {
            id: ChunkId {
                token: Token(token),
                variant: 0,
            },
            pack: i % 3,
            offset: i,
            length: 1,
            kind: BlobKind::Data,
            object: 0,
        })
        .unwrap();
    }
    w.finish(&packs, &objects).unwrap().unwrap()
}

/// Read a segment every way there is: what decodes must not panic, and
/// what passes its checks holds entries within its own tables.
fn read_segment(data: Vec<u8>) -> Result<Vec<SegEntry>, TestCaseError> {
    let Ok(segment) = Segment::from_bytes(data) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cursor = segment.cursor();
    while let Ok(Some(e)) = cursor.peek() {
        prop_assert!((e.pack as usize) < segment.packs.len());
        prop_assert!((e.object as usize) < segment.objects.len());
        out.push(*e);
        cursor.advance();
    }
    let mut found = Vec::new();
    let _ = segment.lookup(&Token([0; 32]), None, &mut found);
    Ok(out)
}

/// Every decoder of the engine on the same bytes: none may panic.
fn decode_everything(data: &[u8]) {
    let mut index = Index::default();
    let _ = index::decode(&mut index, data);
    if let Ok(trailer) = pack::split_trailer(data) {
        let _ = pack::decode_trailer(trailer, 0);
    }
    let _ = pack::decode_trailer(data, 0);
    let _ = Tree::decode(data);
    let _ = serde_json::from_slice::<Generation>(data);
    let _ = serde_json::from_slice::<LockRecord>(data);
    let _ = decode_plan(data);
    let _ = serde_json::from_slice::<PlanRuns>(data);
    let _ = super::config::parse_config("u", data);
    let _ = object::open(&NoFilters, None, "index/x", data.to_vec());
    let _ = object::open(&NoFilters, Some("seal"), "index/x", data.to_vec());
    let _ = object::strip_checksum("index/x", data.to_vec());
    let mut path = b"/".to_vec();
    path.extend_from_slice(data);
    let _ = components(&path);
    let _ = Segment::from_bytes(data.to_vec());
    let _ = Cached::decode(data);
    // The same bytes behind a hash that matches them: what the decoder of
    // a record cache file sees past its check.
    let mut hashed = blake3::hash(data).as_bytes().to_vec();
    hashed.extend_from_slice(data);
    let _ = Cached::decode(&hashed);
}

/// A record cache file, as `record_cache.rs` writes it.
fn valid_cache_file() -> Vec<u8> {
    Cached {
        stamp: Stamp {
            size: 300,
            etag: Some("\"0123456789abcdef\"".into()),
            modified_ns: Some(1_700_000_000_000_000_000),
        },
        record: valid_generation(),
    }
    .encode()
    .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(data in random_bytes()) {
        decode_everything(&data);
    }

    #[test]
    fn mutated_index_objects_never_panic(m in mutations(5)) {
        let data = mutate(valid_index(), &m);
        decode_everything(&data);
        let mut index = Index::default();
        if let Ok(entries) = index::decode(&mut index, &data) {
            // What decodes holds no more entries than the bytes can.
            prop_assert!(entries.len() <= data.len() / 53);
        }
    }

    #[test]
    fn mutated_packs_never_panic(m in mutations(5)) {
        let data = mutate(valid_pack(), &m);
        decode_everything(&data);
        if let Ok(trailer) = pack::split_trailer(&data) {
            if let Ok(plain) = object::open(&NoFilters, None, "pack/p", trailer.to_vec()) {
                let checked = object::strip_checksum("pack/p", plain);
                if let Ok(plain) = checked {
                    let _ = pack::decode_trailer(&plain, 0);
                }
            }
        }
    }

    #[test]
    fn mutated_segments_never_panic_nor_invent_entries(m in mutations(5)) {
        let good = valid_segment();
        let original = read_segment(good.clone())?;
        let data = mutate(good, &m);
        let read = read_segment(data)?;
        // Every entry a damaged segment still gives is one it held: the
        // checksums let nothing else through.
        for e in &read {
            prop_assert!(original.contains(e), "invented entry {:?}", e);
        }
    }

    #[test]
    fn random_segments_never_panic(data in random_bytes()) {
        read_segment(data)?;
    }

    #[test]
    fn mutated_trees_never_panic(m in mutations(5)) {
        decode_everything(&mutate(valid_tree(), &m));
    }

    #[test]
    fn mutated_records_never_panic(m in mutations(5)) {
        decode_everything(&mutate(valid_generation(), &m));
        decode_everything(&mutate(VALID_CONFIG.to_vec(), &m));
        decode_everything(&mutate(VALID_CONFIG_V4.to_vec(), &m));
        decode_everything(&mutate(VALID_PLAN_RUNS.to_vec(), &m));
    }

    #[test]
    fn mutated_plans_never_panic_nor_name_what_is_no_object(m in mutations(5)) {
        let data = mutate(valid_plan(), &m);
        decode_everything(&data);
        // A plan that decodes names only packs and index objects: carried
        // out, it deletes nothing else.
        if let Ok(plan) = decode_plan(&data) {
            for name in plan.packs.iter().chain(&plan.index) {
                prop_assert!(ObjectId::is_name(name), "{:?}", name);
            }
        }
    }

    #[test]
    fn mutated_record_cache_files_never_panic_nor_pass(m in mutations(5)) {
        let good = valid_cache_file();
        let data = mutate(good.clone(), &m);
        decode_everything(&data);
        // Past the hash, the mutated body decodes or fails, never panics.
        let body = mutate(good[32..].to_vec(), &m);
        decode_everything(&body);
        if data != good {
            prop_assert!(Cached::decode(&data).is_none());
        }
    }

    #[test]
    fn a_changed_object_never_passes_its_checksum(m in mutations(5), data in random_bytes()) {
        let mut stored = data.clone();
        object::add_checksum("generations/c/g", &mut stored);
        let changed = mutate(stored.clone(), &m);
        let result = object::strip_checksum("generations/c/g", changed.clone());
        if changed == stored {
            prop_assert_eq!(result.unwrap(), data);
        } else {
            prop_assert!(result.is_err());
        }
        // Nor under another name.
        prop_assert!(object::strip_checksum("generations/c/h", stored).is_err());
    }
}

#[test]
fn a_count_beyond_the_data_allocates_nothing_large() {
    // An index object claiming 2^32-1 packs and entries in 16 bytes.
    let mut data = b"OBNAMIX1".to_vec();
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(index::decode(&mut Index::default(), &data).is_err());
    // A trailer claiming 2^32-1 blobs.
    assert!(pack::decode_trailer(&u32::MAX.to_le_bytes(), 0).is_err());
    // A record cache file whose record claims 2^32-1 bytes (a valid hash
    // over a body cut short): MessagePack's array of two, a stamp, and a
    // bin32 header.
    let mut body = vec![0x92];
    body.extend(
        rmp_serde::to_vec(&Stamp {
            size: 1,
            etag: None,
            modified_ns: Some(1),
        })
        .unwrap(),
    );
    body.push(0xc6);
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    body.extend_from_slice(b"short");
    let mut file = blake3::hash(&body).as_bytes().to_vec();
    file.extend_from_slice(&body);
    assert_eq!(Cached::decode(&file), None);
}
