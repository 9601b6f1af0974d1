//! How faults are drawn: a seeded PRNG, per storage, in a fixed order per
//! operation.

use std::sync::Mutex;
use std::time::Duration;

use super::{Decision, FaultKind, FaultSpec, Faultable, Op, MESSAGE, SLOW_MAX_MS, STALE_MAX_MS};
use crate::storage::StorageError;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and good enough to decide
/// faults; written here rather than pulled in, as the plan needs nothing
/// more and must give the same numbers on every platform and version.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, 1), from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The fault plan of one storage: the spec, and the PRNG it draws from.
struct FaultPlan {
    spec: FaultSpec,
    url: String,
    rng: Mutex<SplitMix64>,
}

impl FaultPlan {
    /// The faults of the next operation. Each kind that applies to the
    /// operation and has a probability above 0 draws one number (and one
    /// more for an amount, if it hits), in a fixed order: kinds that are
    /// off draw nothing, so adding `kind=0` to a spec changes nothing.
    fn decide(&self, op: Op, key: &str) -> Decision {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut hit = |kind: FaultKind| {
            let p = self.spec.probability(kind);
            // `unit` is below 1, so a probability of 1 always hits.
            p > 0.0 && rng.unit() < p
        };
        let slow = hit(FaultKind::Slow);
        // The kinds that apply to the operation, in the order they draw.
        let kinds: &[FaultKind] = match op {
            Op::Write => &[FaultKind::WriteFail, FaultKind::WriteLostAck],
            Op::Delete => &[FaultKind::DeleteFail],
            Op::Read => &[FaultKind::ReadFail, FaultKind::ShortRead],
            Op::Exists => &[FaultKind::ReadFail],
            Op::List => &[FaultKind::ListFail, FaultKind::StaleList],
        };
        let hits: Vec<FaultKind> = kinds.iter().copied().filter(|&k| hit(k)).collect();
        let fail_before = hits.iter().copied().find(|k| {
            matches!(
                k,
                FaultKind::WriteFail
                    | FaultKind::DeleteFail
                    | FaultKind::ReadFail
                    | FaultKind::ListFail
            )
        });
        let fail_after = hits
            .contains(&FaultKind::WriteLostAck)
            .then_some(FaultKind::WriteLostAck);
        let short = hits.contains(&FaultKind::ShortRead);
        let stale = hits.contains(&FaultKind::StaleList);
        // The amounts, drawn after the hits, in this order.
        let delay = slow.then(|| Duration::from_millis(1 + rng.next() % SLOW_MAX_MS));
        let keep = short.then(|| rng.unit());
        let late = stale.then(|| Duration::from_millis(1 + rng.next() % STALE_MAX_MS));
        Decision {
            op: Some(op),
            key: key.to_string(),
            url: self.url.clone(),
            delay,
            fail_before,
            fail_after,
            keep,
            late,
        }
    }
}

/// The faults of one storage: none (the normal case), or a plan.
#[derive(Default)]
pub struct Faults(Option<FaultPlan>);

impl Faults {
    /// The faults of a storage at `url` under `spec` (none without one).
    pub fn new(spec: Option<&FaultSpec>, url: &str) -> Faults {
        let Some(spec) = spec else {
            return Faults(None);
        };
        let seed = spec.seed.unwrap_or_else(made_seed);
        tracing::info!(
            "{MESSAGE}s are on for {url} (--testing-storage-faults), seed {seed}; \
             give seed={seed} to replay"
        );
        Faults(Some(FaultPlan {
            spec: spec.clone(),
            url: url.to_string(),
            rng: Mutex::new(SplitMix64(seed)),
        }))
    }

    /// The faults of an operation starting now; `None` if there is no plan.
    pub fn decide(&self, op: Op, key: &str) -> Option<Decision> {
        self.0.as_ref().map(|plan| plan.decide(op, key))
    }

    /// Run `f`, the operation `op` on `key`, with the faults the plan
    /// draws for it.
    pub fn run<T: Faultable>(
        &self,
        op: Op,
        key: &str,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match self.decide(op, key) {
            Some(decision) if !decision.is_clean() => decision.run(f),
            _ => f(),
        }
    }

    /// For best-effort housekeeping that reports no errors (tidying
    /// `.tmp/`, say): whether to do it, after any delay the plan draws.
    pub fn allows(&self, op: Op, key: &str) -> bool {
        self.run(op, key, || Ok(())).is_ok()
    }
}

/// A seed for a run that gave none: the time and the process id, mixed.
fn made_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    SplitMix64(nanos ^ (u64::from(std::process::id()) << 32)).next()
}
