//! What every property test of a repository decoder shares ("fuzzing" on
//! stable Rust, with `proptest`): the case budget, and mutations of valid
//! input.
//!
//! Mutated valid objects (bytes flipped, set, inserted, deleted, the end
//! cut off) get much further into a decoder than random bytes do, so each
//! decoder is tested with both. The budget is fixed ([`config`]) so that
//! `cargo test` spends a few seconds per property; `PROPTEST_CASES`
//! overrides it for a long run.

#![forbid(unsafe_code)]

use proptest::prelude::*;
use proptest::test_runner::Config;

/// A proptest configuration of `cases` cases per property, unless
/// `PROPTEST_CASES` says otherwise. Failures are kept as regression cases
/// in the tests themselves, not in files beside the sources.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One change to valid input; positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip { at: usize, bits: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

/// Any one mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (at, 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// One to `most` mutations.
pub fn mutations(most: usize) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=most.max(1))
}

/// Apply `mutations` to `data`, in order.
pub fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = data.len().max(1);
        match *m {
            Mutation::Flip { at, bits } => {
                if let Some(b) = data.get_mut(at % n) {
                    *b ^= bits;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = data.get_mut(at % n) {
                    *b = byte;
                }
            }
            Mutation::Insert { at, byte } => data.insert(at % (data.len() + 1), byte),
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(data.len());
                data.drain(at.min(end)..end);
            }
            Mutation::Truncate { at } => data.truncate(at % n),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_what_they_say() {
        let data = b"abcdef".to_vec();
        // Position 7 of 6 bytes is position 1: 'b' ^ 1 is 'c'.
        assert_eq!(
            mutate(data.clone(), &[Mutation::Flip { at: 7, bits: 1 }]),
            b"accdef"
        );
        assert_eq!(
            mutate(data.clone(), &[Mutation::Set { at: 0, byte: b'z' }]),
            b"zbcdef"
        );
        assert_eq!(
            mutate(data.clone(), &[Mutation::Insert { at: 6, byte: b'g' }]),
            b"abcdefg"
        );
        assert_eq!(
            mutate(data.clone(), &[Mutation::Delete { at: 4, len: 9 }]),
            b"abcd"
        );
        assert_eq!(mutate(data, &[Mutation::Truncate { at: 3 }]), b"abc");
        assert_eq!(
            mutate(Vec::new(), &[Mutation::Delete { at: 3, len: 2 }]),
            b""
        );
    }
}
