//! Property tests ("fuzzing" on stable Rust) of the decoders: whatever
//! bytes a repository holds under the tags `zstd` and `deflate`,
//! [`decompress`] returns the data or an error naming the object; it never
//! panics, and never allocates more than the object's limit or a fixed
//! multiple of the bytes it was given, whatever length they claim.
//!
//! Three kinds of input, for both codecs and every kind of object:
//! random bytes; random bytes after a claimed length (to reach the
//! codecs, not only the length checks); and valid stored objects, mutated
//! (bytes flipped, inserted, deleted, the end cut off), which get much
//! further into the codecs than noise does.
//!
//! The number of cases is fixed here ([`CASES`]) so that the budget in CI
//! is a few seconds; `PROPTEST_CASES` overrides it for a longer run.

use proptest::prelude::*;

use crate::codec::tests::{claiming, rle_frame, text};
use crate::codec::{decompress, Codec, DEFLATE_MAX_RATIO, ZSTD_MAX_RATIO};
use crate::test_alloc::largest_allocation;
use plugin_api::limits::max_decoded_len;

use fuzz_support::{mutate, mutation};

/// Cases per property, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    fuzz_support::config(CASES)
}

/// Room for error messages and the codecs' own small buffers.
const SLACK: usize = 64 << 10;

const CONTEXTS: [&str; 6] = [
    "chunk/ab",
    "tree/ab",
    "pack/ab",
    "index/ab",
    "generations/c/g",
    "locks/l",
];

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Zstd), Just(Codec::Deflate)]
}

fn context() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&CONTEXTS[..])
}

/// Decode `stored` and check every promise of [`decompress`].
fn check(codec: Codec, context: &str, stored: &[u8]) -> Result<(), TestCaseError> {
    let (result, largest) = largest_allocation(|| decompress(codec, context, stored));
    let ratio = match codec {
        Codec::Zstd => ZSTD_MAX_RATIO,
        Codec::Deflate => DEFLATE_MAX_RATIO,
    };
    let bound = max_decoded_len(context).min(stored.len().saturating_mul(ratio)) + SLACK;
    prop_assert!(
        largest <= bound,
        "{codec:?} {context}: allocated {largest} bytes for {} stored",
        stored.len()
    );
    match result {
        Ok(data) => {
            prop_assert!(data.len() <= max_decoded_len(context));
            // Whatever decodes, decodes to the length it claims.
            let claim = crate::codec::read_varint(stored).map(|(n, _)| n);
            prop_assert_eq!(claim, Ok(data.len() as u64));
        }
        Err(e) => prop_assert!(
            e.starts_with(&format!(
                "object {context} cannot be decompressed ({} data): ",
                codec.tag()
            )),
            "{e}"
        ),
    }
    Ok(())
}

/// A valid stored object: text, noise and runs, compressed with `codec`
/// at a level picked by `level_pick`; or, for zstd, a hand-made RLE frame.
fn valid(codec: Codec, seed: u64, len: usize, level_pick: u8) -> Vec<u8> {
    let mut data = text(len);
    let mut x = seed | 1;
    for (i, b) in data.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match (i / 512) % 3 {
            0 => {}
            1 => *b = (x >> 56) as u8,
            _ => *b = 0,
        }
    }
    let levels = codec.levels();
    let level = match level_pick % 4 {
        0 => 1,
        1 => codec.default_level(),
        2 => (*levels.end()).min(9),
        _ if codec == Codec::Zstd => return claiming(len as u64, &rle_frame(len, None, 17)),
        _ => 1,
    };
    crate::codec::compress(codec, level, "chunk/x", &data)
        .unwrap_or_else(|| panic!("{codec:?} {level}: {len} bytes did not shrink"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic_nor_overallocate(
        codec in codec(),
        context in context(),
        stored in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        check(codec, context, &stored)?;
    }

    #[test]
    fn random_bodies_after_any_claim_never_panic_nor_overallocate(
        codec in codec(),
        context in context(),
        claim in prop_oneof![0..4096u64, 0..(1u64 << 31), Just(1u64 << 30), any::<u64>()],
        magic in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut body = body;
        if magic && codec == Codec::Zstd {
            // Random bytes after a zstd magic number reach the frame parser.
            body.splice(0..0, [0x28, 0xb5, 0x2f, 0xfd]);
        }
        let mut stored = Vec::new();
        crate::codec::write_varint(&mut stored, claim as usize);
        stored.extend_from_slice(&body);
        check(codec, context, &stored)?;
    }

    #[test]
    fn mutated_valid_objects_never_panic_nor_overallocate(
        codec in codec(),
        context in context(),
        seed in any::<u64>(),
        len in 1000..20_000usize,
        level_pick in any::<u8>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let stored = valid(codec, seed, len, level_pick);
        check(codec, context, &stored)?;
        let bent = mutate(stored.clone(), &mutations);
        check(codec, context, &bent)?;
    }
}

/// Inputs the properties above found, or that are easy to miss, kept as
/// regression cases.
#[test]
fn regression_cases() {
    for codec in Codec::ALL {
        for stored in [
            // A length field of ten bytes whose last has high bits: no
            // overflow when shifting.
            &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00"[..],
            // The largest claim that passes every limit, with a tiny body.
            &b"\x80\x80\x80\x20\x28\xb5\x2f\xfd"[..],
            // A zstd skippable frame alone: gives nothing.
            &b"\x00\x50\x2a\x4d\x18\x00\x00\x00\x00"[..],
        ] {
            for context in CONTEXTS {
                check(codec, context, stored).unwrap();
            }
        }
    }
}
