//! The harness's only source of randomness: a seeded SplitMix64 generator.
//!
//! Everything random in a schedule (which operation, which client, which
//! file changes, when a kill lands) is drawn from one of these, so a seed
//! replays the same schedule. The harness draws the same number of values
//! whatever the outcomes of the runs are, so that a run that ends
//! differently (a kill that lands after the run finished) does not shift
//! the rest of the schedule.

/// A small, fast, seedable generator (SplitMix64: good enough for
/// choosing test cases, and trivially reproducible).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).max(1))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// An index into a list of `len` items; 0 when the list is empty (the
    /// value is drawn either way, see the module docs).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len.max(1) as u64) as usize
    }

    /// A seed for a generator of its own (for a sub-task whose number of
    /// draws varies).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// `n` bytes: random, or (a third of the time) a compressible
    /// repetition of a short random pattern.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        if self.below(3) == 0 {
            let pattern: Vec<u8> = (0..self.range(1, 64))
                .map(|_| self.next_u64() as u8)
                .collect();
            while out.len() < n {
                out.extend_from_slice(&pattern);
            }
        } else {
            while out.len() < n {
                out.extend_from_slice(&self.next_u64().to_le_bytes());
            }
        }
        out.truncate(n);
        out
    }
}
