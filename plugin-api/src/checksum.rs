//! Whole-file checksums: how a backup makes the checksum it records in a
//! file's [`Entry`](crate::Entry), and how a restore, a verify or a check
//! recomputes it from the content read back. (Since 0.1.6; plain Rust.)
//!
//! A recorded checksum says which kind it is, so a reader never needs to
//! know which obnam wrote it or which repository it came from:
//!
//! * **32 bytes**: SHA-256 of the content, what every repository of format
//!   version 3 and older holds.
//! * **33 bytes, the first [`BLAKE3_BLOCKS_TAG`]**: the *block list*
//!   checksum of format version 4 (see [`ChecksumKind::Blake3Blocks`]).
//!
//! Why a block list and not plain BLAKE3 of the content: a sparse file of
//! 100 GB holding a few MB of data must not cost 100 GB of hashing. The
//! content is hashed in blocks of [`CHECKSUM_BLOCK`] bytes at fixed offsets
//! and the checksum is a hash of the blocks' hashes and the length. A block
//! of zeros always has the same hash, so a hole of any size costs one
//! 32-byte update per block ([`FileHasher::update_zeros`]) instead of
//! hashing its zeros, and the checksum of a file is the same whether its
//! zeros are stored as holes or as data. On dense data it costs what BLAKE3
//! does (3 to 4 times less processor time than SHA-256) plus 32 bytes per
//! 64 KiB.
//!
//! Which kind a backup writes is the repository's to say:
//! [`Repository::file_checksum_kind`](crate::Repository::file_checksum_kind).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The size of the blocks of a block list checksum.
pub const CHECKSUM_BLOCK: usize = 64 << 10;

/// The first byte of a recorded block list checksum.
pub const BLAKE3_BLOCKS_TAG: u8 = 0xb3;

/// The context string of the hash over the block hashes, so that it can
/// never equal a plain BLAKE3 of some data.
const BLOCK_LIST_CONTEXT: &str =
    "obnam 2026-12-03 whole-file checksum: BLAKE3 list of 64 KiB blocks";

/// The kinds of whole-file checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumKind {
    /// SHA-256 of the content (32 bytes recorded): repository format
    /// versions 1 to 3.
    Sha256,
    /// The BLAKE3 block list (33 bytes recorded, tag first): format
    /// version 4. Each [`CHECKSUM_BLOCK`] of the content (the last may be
    /// shorter) is hashed with BLAKE3; the checksum is the BLAKE3 (in
    /// derive-key mode with a fixed context) of those hashes in order,
    /// followed by the content's length as a u64 little-endian.
    Blake3Blocks,
}

impl ChecksumKind {
    /// The kind of a recorded checksum, or `None` if it is of none known
    /// (damaged, or written by a newer obnam).
    pub fn of_recorded(recorded: &[u8]) -> Option<Self> {
        match recorded {
            [BLAKE3_BLOCKS_TAG, rest @ ..] if rest.len() == 32 => Some(ChecksumKind::Blake3Blocks),
            _ if recorded.len() == 32 => Some(ChecksumKind::Sha256),
            _ => None,
        }
    }

    /// The number the repository service gives for this kind.
    pub fn code(self) -> u8 {
        match self {
            ChecksumKind::Sha256 => 0,
            ChecksumKind::Blake3Blocks => 1,
        }
    }

    /// The kind of a repository service's number (SHA-256 for any number
    /// this version does not know: the kind every reader understands).
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => ChecksumKind::Blake3Blocks,
            _ => ChecksumKind::Sha256,
        }
    }
}

/// Computes a whole-file checksum of one kind from the content, in order.
#[derive(Clone)]
pub struct FileHasher {
    state: State,
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    /// Boxed: two BLAKE3 states are nearly 4 KiB.
    Blocks(Box<Blocks>),
}

/// The state of a block list checksum.
#[derive(Clone)]
struct Blocks {
    /// The hash of the blocks' hashes.
    outer: blake3::Hasher,
    /// The hash of the block being filled.
    block: blake3::Hasher,
    /// Bytes in the block being filled.
    in_block: usize,
    /// Bytes hashed in all.
    length: u64,
}

/// 64 KiB of zeros, to hash zeros from.
static ZEROS: [u8; CHECKSUM_BLOCK] = [0; CHECKSUM_BLOCK];

/// How many zero blocks' hashes are hashed in one update.
const ZERO_HASHES_AT_ONCE: usize = 512;

/// The BLAKE3 of a whole block of zeros, [`ZERO_HASHES_AT_ONCE`] times
/// over: a long hole costs one update per 32 MiB of it, which BLAKE3
/// hashes with all its SIMD lanes.
fn zero_block_hashes() -> &'static [u8] {
    static HASHES: OnceLock<Vec<u8>> = OnceLock::new();
    HASHES.get_or_init(|| blake3::hash(&ZEROS).as_bytes().repeat(ZERO_HASHES_AT_ONCE))
}

impl Blocks {
    fn new() -> Self {
        Blocks {
            outer: blake3::Hasher::new_derive_key(BLOCK_LIST_CONTEXT),
            block: blake3::Hasher::new(),
            in_block: 0,
            length: 0,
        }
    }

    /// End the block being filled (if it holds anything).
    fn end_block(&mut self) {
        if self.in_block > 0 {
            self.outer.update(self.block.finalize().as_bytes());
            self.block.reset();
            self.in_block = 0;
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        while !data.is_empty() {
            let take = (CHECKSUM_BLOCK - self.in_block).min(data.len());
            let (now, rest) = data.split_at(take);
            self.block.update(now);
            self.in_block += take;
            if self.in_block == CHECKSUM_BLOCK {
                self.end_block();
            }
            data = rest;
        }
    }

    fn update_zeros(&mut self, mut n: u64) {
        // Up to the next block boundary as data, then whole blocks by
        // their known hash, then the rest as data.
        if self.in_block > 0 {
            let head = ((CHECKSUM_BLOCK - self.in_block) as u64).min(n);
            self.update(&ZEROS[..head as usize]);
            n -= head;
        }
        let whole = n / CHECKSUM_BLOCK as u64;
        let hashes = zero_block_hashes();
        let mut left = whole;
        while left > 0 {
            let now = left.min(ZERO_HASHES_AT_ONCE as u64) as usize;
            self.outer.update(&hashes[..now * 32]);
            left -= now as u64;
        }
        self.length += whole * CHECKSUM_BLOCK as u64;
        self.update(&ZEROS[..(n % CHECKSUM_BLOCK as u64) as usize]);
    }

    fn finish(mut self) -> [u8; 32] {
        self.end_block();
        self.outer.update(&self.length.to_le_bytes());
        *self.outer.finalize().as_bytes()
    }
}

impl FileHasher {
    /// A hasher of `kind`.
    pub fn new(kind: ChecksumKind) -> Self {
        FileHasher {
            state: match kind {
                ChecksumKind::Sha256 => State::Sha256(Sha256::new()),
                ChecksumKind::Blake3Blocks => State::Blocks(Box::new(Blocks::new())),
            },
        }
    }

    /// A hasher of the kind of `recorded`, to check content against it
    /// (`None` if that kind is not known).
    pub fn for_recorded(recorded: &[u8]) -> Option<Self> {
        ChecksumKind::of_recorded(recorded).map(Self::new)
    }

    /// The kind this hasher computes.
    pub fn kind(&self) -> ChecksumKind {
        match self.state {
            State::Sha256(_) => ChecksumKind::Sha256,
            State::Blocks(_) => ChecksumKind::Blake3Blocks,
        }
    }

    /// Hash the next bytes of the content.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Blocks(b) => b.update(data),
        }
    }

    /// Hash `n` zero bytes as the next content (a hole): as if
    /// [`update`](Self::update) were given them, in time proportional to
    /// `n / 64 KiB` for the block list, and to `n` for SHA-256.
    pub fn update_zeros(&mut self, mut n: u64) {
        match &mut self.state {
            State::Sha256(h) => {
                while n > 0 {
                    let take = n.min(CHECKSUM_BLOCK as u64) as usize;
                    h.update(&ZEROS[..take]);
                    n -= take as u64;
                }
            }
            State::Blocks(b) => b.update_zeros(n),
        }
    }

    /// The checksum as a backup records it.
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            State::Sha256(h) => h.finalize().to_vec(),
            State::Blocks(b) => {
                let mut out = Vec::with_capacity(33);
                out.push(BLAKE3_BLOCKS_TAG);
                out.extend_from_slice(&(*b).finish());
                out
            }
        }
    }

    /// Whether the content hashed has the checksum `recorded`.
    pub fn matches(self, recorded: &[u8]) -> bool {
        self.finish() == recorded
    }
}

/// Why content read back failed its recorded checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumError {
    /// The content is not what was backed up.
    Mismatch,
    /// The recorded checksum is of no kind this obnam knows (damaged, or
    /// written by a newer obnam): the content cannot be checked.
    UnknownKind {
        /// The recorded checksum's length in bytes.
        len: usize,
    },
}

impl std::fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChecksumError::Mismatch => {
                f.write_str("checksum mismatch: the content read back is not what was backed up")
            }
            ChecksumError::UnknownKind { len } => write!(
                f,
                "its recorded checksum ({len} bytes) is of no kind this obnam knows \
                 (damaged, or written by a newer obnam), so its content cannot be checked"
            ),
        }
    }
}

impl std::error::Error for ChecksumError {}

/// Checks content read back, in order, against the checksum a backup
/// recorded for it: what a restore, a dump or a check does with every file.
pub struct ContentCheck<'r> {
    recorded: &'r [u8],
    hasher: Option<FileHasher>,
}

impl<'r> ContentCheck<'r> {
    /// A check against `recorded`. An empty checksum (none was recorded)
    /// passes any content.
    pub fn new(recorded: &'r [u8]) -> Self {
        ContentCheck {
            recorded,
            hasher: FileHasher::for_recorded(recorded),
        }
    }

    /// The next bytes of the content.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
    }

    /// The next `n` bytes of the content are zeros (see
    /// [`FileHasher::update_zeros`]).
    pub fn update_zeros(&mut self, n: u64) {
        if let Some(h) = &mut self.hasher {
            h.update_zeros(n);
        }
    }

    /// Whether the content had the recorded checksum.
    pub fn finish(self) -> Result<(), ChecksumError> {
        match self.hasher {
            _ if self.recorded.is_empty() => Ok(()),
            None => Err(ChecksumError::UnknownKind {
                len: self.recorded.len(),
            }),
            Some(h) => match h.matches(self.recorded) {
                true => Ok(()),
                false => Err(ChecksumError::Mismatch),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(kind: ChecksumKind, pieces: &[&[u8]]) -> Vec<u8> {
        let mut h = FileHasher::new(kind);
        for p in pieces {
            h.update(p);
        }
        h.finish()
    }

    /// Content of `len` bytes, not repeating within a block.
    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[i % 4] ^ seed)
            .collect()
    }

    #[test]
    fn sha256_is_plain_sha256() {
        let data = content(100_000, 1);
        assert_eq!(
            checksum(ChecksumKind::Sha256, &[&data]),
            Sha256::digest(&data).to_vec()
        );
    }

    #[test]
    fn recorded_checksums_say_their_kind() {
        let data = content(10, 2);
        for kind in [ChecksumKind::Sha256, ChecksumKind::Blake3Blocks] {
            let sum = checksum(kind, &[&data]);
            assert_eq!(ChecksumKind::of_recorded(&sum), Some(kind));
            assert_eq!(ChecksumKind::from_code(kind.code()), kind);
            assert!(FileHasher::for_recorded(&sum)
                .expect("known")
                .tap_update(&data)
                .matches(&sum));
        }
        assert_eq!(ChecksumKind::of_recorded(&[]), None);
        assert_eq!(ChecksumKind::of_recorded(&[0xb3; 34]), None);
        assert_eq!(ChecksumKind::of_recorded(&[0x12; 33]), None);
    }

    #[test]
    fn how_the_content_is_cut_into_updates_does_not_matter() {
        let data = content(5 * CHECKSUM_BLOCK + 12_345, 3);
        let whole = checksum(ChecksumKind::Blake3Blocks, &[&data]);
        for cut in [
            1,
            7,
            CHECKSUM_BLOCK - 1,
            CHECKSUM_BLOCK,
            CHECKSUM_BLOCK + 1,
            200_000,
        ] {
            let pieces: Vec<&[u8]> = data.chunks(cut).collect();
            assert_eq!(
                checksum(ChecksumKind::Blake3Blocks, &pieces),
                whole,
                "{cut}"
            );
        }
    }

    #[test]
    fn holes_hash_as_their_zeros() {
        for kind in [ChecksumKind::Sha256, ChecksumKind::Blake3Blocks] {
            for (before, hole, after) in [
                (0, 3 * CHECKSUM_BLOCK, 10),
                (100, 3 * CHECKSUM_BLOCK + 7, 0),
                (CHECKSUM_BLOCK, CHECKSUM_BLOCK, CHECKSUM_BLOCK),
                (5, 10, 5),
                (0, 0, 0),
                (70_000, 1 << 20, 1),
            ] {
                let a = content(before, 4);
                let b = content(after, 5);
                let mut dense = a.clone();
                dense.extend(std::iter::repeat_n(0u8, hole));
                dense.extend(&b);
                let mut sparse = FileHasher::new(kind);
                sparse.update(&a);
                sparse.update_zeros(hole as u64);
                sparse.update(&b);
                assert_eq!(
                    sparse.finish(),
                    checksum(kind, &[&dense]),
                    "{kind:?} {before} {hole} {after}"
                );
            }
        }
    }

    #[test]
    fn different_content_or_length_differs() {
        let kind = ChecksumKind::Blake3Blocks;
        let data = content(3 * CHECKSUM_BLOCK, 6);
        let sum = checksum(kind, &[&data]);
        let mut flipped = data.clone();
        flipped[CHECKSUM_BLOCK + 5] ^= 1;
        assert_ne!(checksum(kind, &[&flipped]), sum);
        // A trailing block of zeros, or one zero byte more, is other content.
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(checksum(kind, &[&longer]), sum);
        assert_ne!(checksum(kind, &[&[]]), checksum(kind, &[&[0u8]]));
        // Not plain BLAKE3 of the content.
        assert_ne!(
            &checksum(kind, &[&data])[1..],
            blake3::hash(&data).as_bytes()
        );
    }

    #[test]
    fn a_huge_hole_is_cheap() {
        // 1 TiB of zeros: 16 million block hashes of 32 bytes (512 MiB
        // hashed, well under a second), where hashing the zeros would
        // take minutes.
        let mut h = FileHasher::new(ChecksumKind::Blake3Blocks);
        h.update(b"x");
        h.update_zeros(1 << 40);
        assert_eq!(h.finish().len(), 33);
    }

    #[test]
    fn content_checks() {
        let data = content(70_000, 7);
        for kind in [ChecksumKind::Sha256, ChecksumKind::Blake3Blocks] {
            let sum = checksum(kind, &[&data]);
            let mut ok = ContentCheck::new(&sum);
            ok.update(&data);
            assert_eq!(ok.finish(), Ok(()));
            let mut bad = ContentCheck::new(&sum);
            bad.update(&data[1..]);
            assert_eq!(bad.finish(), Err(ChecksumError::Mismatch));
        }
        let mut none = ContentCheck::new(&[]);
        none.update(&data);
        assert_eq!(none.finish(), Ok(()));
        let odd = [1u8; 20];
        let unknown = ContentCheck::new(&odd);
        assert_eq!(
            unknown.finish(),
            Err(ChecksumError::UnknownKind { len: 20 })
        );
    }

    trait TapUpdate {
        fn tap_update(self, data: &[u8]) -> Self;
    }

    impl TapUpdate for FileHasher {
        fn tap_update(mut self, data: &[u8]) -> Self {
            self.update(data);
            self
        }
    }
}
