//! Development only: storage faults injected on purpose
//! (`--testing-storage-faults SPEC`).
//!
//! obnam must survive a store that misbehaves: a write that fails, a write
//! that lands but whose acknowledgement is lost, a delete or read that
//! fails, a read that returns fewer bytes than the object holds, a slow
//! operation, a listing that answers late. Real stores do all of these,
//! rarely and unreproducibly; this module makes them happen often and
//! reproducibly, so that a test harness can play many runs against one
//! repository and check that none panics, none accepts wrong data, and
//! none leaves the repository unusable for the next run.
//!
//! It sits in [`Storage`](super::storage::Storage), below the engine and
//! above OpenDAL, so that it acts the same on every store (local folder,
//! SFTP, S3): every storage operation asks the [`Faults`] of its storage
//! for a [`Decision`] first, and runs through it.
//!
//! The spec is comma-separated `KIND=PROBABILITY` items and an optional
//! `seed=N`; [`FaultSpec::parse`] says what is allowed. Decisions come from
//! a small PRNG (SplitMix64) seeded with the seed, drawn in a fixed order
//! per operation when the operation starts: the same seed and the same
//! sequence of operations give the same faults. Operations from several
//! threads (obnam reads and writes in parallel) draw in whatever order the
//! threads reach the plan, so the exact faults of a multi-threaded run vary
//! from run to run even with a seed. Without `seed=` a seed is made from
//! the time and the process id, and logged, so that a run can be replayed.
//!
//! Every injected failure is a [`StorageError::Failed`] whose message
//! starts with [`MESSAGE`] and names the kind; the error names the
//! operation and the object. Every injected fault, failure or not, is
//! logged as a warning.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use super::storage::StorageError;

/// What every injected failure's message starts with: the test harness
/// tells injected failures from real ones by it.
pub const MESSAGE: &str = "injected storage fault";

/// The longest delay of `slow`, in milliseconds (the shortest is 1).
const SLOW_MAX_MS: u64 = 300;
/// The longest delay of `stale-list`, in milliseconds.
const STALE_MAX_MS: u64 = 500;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A write fails before anything lands.
    WriteFail,
    /// A write lands completely, then reports failure.
    WriteLostAck,
    /// A delete fails; nothing is removed.
    DeleteFail,
    /// A read (or a check whether an object exists) fails.
    ReadFail,
    /// A read returns only a prefix of the object, without an error.
    ShortRead,
    /// Any operation is delayed before it runs.
    Slow,
    /// A listing is taken, then returned late: objects written meanwhile
    /// are missing from it, as a strongly consistent store allows.
    StaleList,
    /// A listing fails.
    ListFail,
}

impl FaultKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::WriteFail,
        FaultKind::WriteLostAck,
        FaultKind::DeleteFail,
        FaultKind::ReadFail,
        FaultKind::ShortRead,
        FaultKind::Slow,
        FaultKind::StaleList,
        FaultKind::ListFail,
    ];

    /// The kind's name in a spec.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::WriteFail => "write-fail",
            FaultKind::WriteLostAck => "write-lost-ack",
            FaultKind::DeleteFail => "delete-fail",
            FaultKind::ReadFail => "read-fail",
            FaultKind::ShortRead => "short-read",
            FaultKind::Slow => "slow",
            FaultKind::StaleList => "stale-list",
            FaultKind::ListFail => "list-fail",
        }
    }

    fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A parsed `--testing-storage-faults` value: a probability per kind, and
/// the seed if one was given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSpec {
    /// Indexed like [`FaultKind::ALL`].
    probabilities: [f64; 8],
    /// The PRNG's seed; `None`: made from the time and process id.
    pub seed: Option<u64>,
}

impl FaultSpec {
    /// Parse a spec: comma-separated `KIND=PROBABILITY` items (a decimal
    /// from 0 to 1) and at most one `seed=N` (an unsigned 64-bit integer);
    /// spaces around items are ignored. An empty spec is `None`: no faults.
    /// A bad item (unknown kind, a probability out of range or not a
    /// number, a kind or seed given twice, an empty item) is an error
    /// naming it.
    pub fn parse(text: &str) -> Result<Option<FaultSpec>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let mut spec = FaultSpec::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let Some((name, value)) = item.split_once('=') else {
                return Err(format!(
                    "bad item '{item}': expected KIND=PROBABILITY or seed=N \
                     (kinds: {})",
                    kind_names()
                ));
            };
            let (name, value) = (name.trim(), value.trim());
            if seen.contains(&name) {
                return Err(format!("bad item '{item}': '{name}' is given twice"));
            }
            seen.push(name);
            if name == "seed" {
                let seed = value.parse::<u64>().map_err(|_| {
                    format!("bad item '{item}': the seed must be an unsigned 64-bit integer")
                })?;
                spec.seed = Some(seed);
                continue;
            }
            let Some(kind) = FaultKind::from_name(name) else {
                return Err(format!(
                    "bad item '{item}': unknown fault kind '{name}' (kinds: {})",
                    kind_names()
                ));
            };
            let p = value
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    format!("bad item '{item}': the probability must be a number from 0 to 1")
                })?;
            spec.probabilities[kind as usize] = p;
        }
        Ok(Some(spec))
    }

    /// The probability of a kind of fault.
    pub fn probability(&self, kind: FaultKind) -> f64 {
        self.probabilities[kind as usize]
    }
}

fn kind_names() -> String {
    FaultKind::ALL.map(FaultKind::name).join(", ")
}

/// A storage operation, as the plan tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    Delete,
    Read,
    /// Whether an object exists: a read, except that it has no bytes to cut.
    Exists,
    List,
}

impl Op {
    /// The verb of the operation in messages (as the storage's own errors
    /// name it).
    fn verb(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Delete => "delete",
            Op::Read => "read",
            Op::Exists => "check",
            Op::List => "list",
        }
    }
}

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

/// The faults decided for one operation, all drawn when it starts (so
/// that the draws of one operation never interleave with another's in a
/// single thread, whatever the operation then does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    op: Option<Op>,
    key: String,
    url: String,
    /// `slow`: wait this long first.
    delay: Option<Duration>,
    /// Fail before the operation runs.
    fail_before: Option<FaultKind>,
    /// `write-lost-ack`: fail after the operation ran.
    fail_after: Option<FaultKind>,
    /// `short-read`: keep this fraction of the bytes (in [0, 1)).
    keep: Option<f64>,
    /// `stale-list`: return the listing this much later.
    late: Option<Duration>,
}

impl Decision {
    /// Whether the decision injects nothing.
    fn is_clean(&self) -> bool {
        self.delay.is_none()
            && self.fail_before.is_none()
            && self.fail_after.is_none()
            && self.keep.is_none()
            && self.late.is_none()
    }

    fn verb(&self) -> &'static str {
        self.op.map_or("use", Op::verb)
    }

    fn error(&self, kind: FaultKind, what: &str) -> StorageError {
        let message = format!("{MESSAGE} ({}: {what})", kind.name());
        tracing::warn!(
            "{MESSAGE}: {} {} of {}: {what}",
            kind.name(),
            self.verb(),
            self.key
        );
        StorageError::Failed {
            url: self.url.clone(),
            op: self.verb(),
            key: self.key.clone(),
            message,
        }
    }

    fn log_delay(&self, kind: FaultKind, delay: Duration) {
        tracing::warn!(
            "{MESSAGE}: {} {} of {} delayed by {} ms",
            kind.name(),
            self.verb(),
            self.key,
            delay.as_millis()
        );
    }

    /// Run `f`, the operation, under this decision: wait, fail before, run,
    /// fail after, cut what was read, or return late.
    pub fn run<T: Faultable>(
        &self,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Some(delay) = self.delay {
            self.log_delay(FaultKind::Slow, delay);
            std::thread::sleep(delay);
        }
        if let Some(kind) = self.fail_before {
            return Err(self.error(kind, "nothing was done"));
        }
        let mut out = f()?;
        self.after(&mut out)?;
        if let Some(late) = self.late {
            self.log_delay(FaultKind::StaleList, late);
            std::thread::sleep(late);
        }
        Ok(out)
    }

    /// [`run`](Self::run) for an operation that runs on the storage's
    /// runtime (a background write): the same faults, waiting without
    /// blocking the runtime.
    pub async fn run_async<T: Faultable>(
        &self,
        f: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        if let Some(delay) = self.delay {
            self.log_delay(FaultKind::Slow, delay);
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = self.fail_before {
            return Err(self.error(kind, "nothing was done"));
        }
        let mut out = f.await?;
        self.after(&mut out)?;
        if let Some(late) = self.late {
            self.log_delay(FaultKind::StaleList, late);
            tokio::time::sleep(late).await;
        }
        Ok(out)
    }

    /// The faults that act on an operation that succeeded.
    fn after<T: Faultable>(&self, out: &mut T) -> Result<(), StorageError> {
        if let Some(kind) = self.fail_after {
            return Err(self.error(kind, "it was done, but reported as failed"));
        }
        if let Some(keep) = self.keep {
            let len = out.byte_len();
            // Strictly shorter (an empty object cannot be cut).
            let cut = ((len as f64 * keep) as usize).min(len.saturating_sub(1));
            if cut < len {
                tracing::warn!(
                    "{MESSAGE}: {} {} of {} returned {cut} of its {len} bytes",
                    FaultKind::ShortRead.name(),
                    self.verb(),
                    self.key
                );
                out.keep_first(cut);
            }
        }
        Ok(())
    }
}

/// What an operation returns, as far as `short-read` is concerned: bytes
/// can be cut, anything else is left alone.
pub trait Faultable {
    /// The number of bytes (0 for what is not bytes).
    fn byte_len(&self) -> usize {
        0
    }
    /// Keep the first `n` bytes.
    fn keep_first(&mut self, _n: usize) {}
}

impl Faultable for () {}
impl Faultable for bool {}
impl Faultable for Vec<String> {}

impl Faultable for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn keep_first(&mut self, n: usize) {
        self.truncate(n);
    }
}

impl Faultable for opendal::Buffer {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn keep_first(&mut self, n: usize) {
        self.truncate(n);
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
        let (fail_before, fail_after, short, stale) = match op {
            Op::Write => (
                hit(FaultKind::WriteFail).then_some(FaultKind::WriteFail),
                hit(FaultKind::WriteLostAck).then_some(FaultKind::WriteLostAck),
                false,
                false,
            ),
            Op::Delete => (
                hit(FaultKind::DeleteFail).then_some(FaultKind::DeleteFail),
                None,
                false,
                false,
            ),
            Op::Read => (
                hit(FaultKind::ReadFail).then_some(FaultKind::ReadFail),
                None,
                hit(FaultKind::ShortRead),
                false,
            ),
            Op::Exists => (
                hit(FaultKind::ReadFail).then_some(FaultKind::ReadFail),
                None,
                false,
                false,
            ),
            Op::List => (
                hit(FaultKind::ListFail).then_some(FaultKind::ListFail),
                None,
                false,
                hit(FaultKind::StaleList),
            ),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> FaultSpec {
        FaultSpec::parse(text).unwrap().unwrap()
    }

    fn error(text: &str) -> String {
        FaultSpec::parse(text).unwrap_err()
    }

    fn plan(text: &str) -> Faults {
        Faults::new(Some(&spec(text)), "repo")
    }

    #[test]
    fn an_empty_spec_means_no_faults() {
        assert_eq!(FaultSpec::parse(""), Ok(None));
        assert_eq!(FaultSpec::parse("  "), Ok(None));
        assert!(Faults::new(None, "repo").decide(Op::Read, "x").is_none());
    }

    #[test]
    fn a_good_spec_is_parsed() {
        let s = spec("write-fail=0.5, short-read=1,slow=0 ,seed=42,list-fail=.25");
        assert_eq!(s.probability(FaultKind::WriteFail), 0.5);
        assert_eq!(s.probability(FaultKind::ShortRead), 1.0);
        assert_eq!(s.probability(FaultKind::Slow), 0.0);
        assert_eq!(s.probability(FaultKind::ListFail), 0.25);
        assert_eq!(s.probability(FaultKind::ReadFail), 0.0);
        assert_eq!(s.seed, Some(42));
        for kind in FaultKind::ALL {
            let s = spec(&format!("{}=0.125", kind.name()));
            assert_eq!(s.probability(kind), 0.125, "{kind:?}");
            assert_eq!(s.seed, None);
        }
    }

    #[test]
    fn a_bad_spec_is_refused_naming_the_item() {
        for (text, said) in [
            (
                "write-fail=0.5,bogus=0.1",
                "'bogus=0.1': unknown fault kind 'bogus'",
            ),
            ("read-fail=1.5", "'read-fail=1.5': the probability must be"),
            (
                "read-fail=-0.1",
                "'read-fail=-0.1': the probability must be",
            ),
            (
                "read-fail=lots",
                "'read-fail=lots': the probability must be",
            ),
            ("read-fail=NaN", "'read-fail=NaN': the probability must be"),
            ("read-fail=", "'read-fail=': the probability must be"),
            ("slow=0.1,slow=0.2", "'slow=0.2': 'slow' is given twice"),
            ("seed=1,seed=2", "'seed=2': 'seed' is given twice"),
            ("seed=-1", "'seed=-1': the seed must be"),
            ("seed=x", "'seed=x': the seed must be"),
            ("write-fail", "'write-fail': expected KIND=PROBABILITY"),
            ("write-fail=0.1,", "'': expected KIND=PROBABILITY"),
        ] {
            let e = error(text);
            assert!(e.contains(said), "{text}: {e}");
            assert!(e.starts_with("bad item"), "{text}: {e}");
        }
        assert!(error("x=1").contains("write-fail, write-lost-ack"));
    }

    /// The decisions of a fixed sequence of operations.
    fn decisions(faults: &Faults) -> Vec<Decision> {
        let ops = [Op::Write, Op::Read, Op::List, Op::Delete, Op::Exists];
        (0..200)
            .map(|i| faults.decide(ops[i % ops.len()], &format!("k{i}")).unwrap())
            .collect()
    }

    const EVERY_KIND: &str = "write-fail=0.3,write-lost-ack=0.3,delete-fail=0.3,read-fail=0.3,\
                              short-read=0.3,slow=0.3,stale-list=0.3,list-fail=0.3";

    #[test]
    fn the_same_seed_gives_the_same_decisions() {
        let a = decisions(&plan(&format!("{EVERY_KIND},seed=7")));
        let b = decisions(&plan(&format!("{EVERY_KIND},seed=7")));
        let c = decisions(&plan(&format!("{EVERY_KIND},seed=8")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Kinds that are off draw nothing.
        let with_zero = decisions(&plan("read-fail=0.5,slow=0,seed=3"));
        let without = decisions(&plan("read-fail=0.5,seed=3"));
        assert_eq!(with_zero, without);
        // Every kind happens, and not every time.
        for kind in FaultKind::ALL {
            let hits = a
                .iter()
                .filter(|d| {
                    d.fail_before == Some(kind)
                        || d.fail_after == Some(kind)
                        || (kind == FaultKind::ShortRead && d.keep.is_some())
                        || (kind == FaultKind::Slow && d.delay.is_some())
                        || (kind == FaultKind::StaleList && d.late.is_some())
                })
                .count();
            assert!(hits > 0 && hits < 100, "{kind:?}: {hits}");
        }
    }

    #[test]
    fn probability_zero_never_and_one_always() {
        let never = plan(
            "write-fail=0,write-lost-ack=0,delete-fail=0,read-fail=0,short-read=0,slow=0,\
             stale-list=0,list-fail=0",
        );
        assert!(decisions(&never).iter().all(Decision::is_clean));
        let always = decisions(&plan(
            "write-fail=1,delete-fail=1,read-fail=1,list-fail=1,slow=1",
        ));
        for d in &always {
            assert!(d.fail_before.is_some(), "{d:?}");
            let delay = d.delay.unwrap();
            assert!(delay >= Duration::from_millis(1) && delay <= Duration::from_millis(300));
        }
    }

    #[test]
    fn an_injected_failure_names_itself_the_operation_and_the_key() {
        let faults = plan("write-fail=1");
        let mut ran = false;
        let e = faults
            .run(Op::Write, "index/abc", || {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!ran, "a failed write ran");
        assert_eq!(
            e.to_string(),
            "repo: cannot write index/abc: injected storage fault (write-fail: nothing was done)"
        );
        let mut ran = false;
        let e = plan("write-lost-ack=1")
            .run(Op::Write, "locks/1", || {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(ran, "a lost acknowledgement's write did not run");
        assert!(e
            .to_string()
            .contains("cannot write locks/1: injected storage fault"));
        let e = plan("read-fail=1")
            .run(Op::Exists, "clients/c", || Ok(true))
            .unwrap_err();
        assert!(e.to_string().contains("cannot check clients/c: injected"));
        let e = plan("list-fail=1")
            .run(Op::List, "locks/", || Ok(vec!["a".to_string()]))
            .unwrap_err();
        assert!(e.to_string().contains("cannot list locks/: injected"));
        let e = plan("delete-fail=1")
            .run(Op::Delete, "locks/2", || Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("cannot delete locks/2: injected"));
    }

    #[test]
    fn a_short_read_returns_a_strict_prefix_without_an_error() {
        let faults = plan("short-read=1,seed=5");
        let data: Vec<u8> = (0..=255).collect();
        let mut lengths = std::collections::HashSet::new();
        for _ in 0..100 {
            let got = faults.run(Op::Read, "k", || Ok(data.clone())).unwrap();
            assert!(got.len() < data.len());
            assert_eq!(got[..], data[..got.len()]);
            lengths.insert(got.len());
        }
        assert!(lengths.len() > 10, "cut at too few points: {lengths:?}");
        // An empty object stays empty; listings and checks are not cut.
        assert!(faults
            .run(Op::Read, "k", || Ok(Vec::<u8>::new()))
            .unwrap()
            .is_empty());
        let mut buffer = opendal::Buffer::from(data.clone());
        buffer = faults.run(Op::Read, "k", || Ok(buffer)).unwrap();
        assert!(buffer.len() < data.len());
        assert_eq!(buffer.to_vec()[..], data[..buffer.len()]);
    }

    #[test]
    fn a_stale_listing_keeps_what_was_there_and_returns_late() {
        let faults = plan("stale-list=1,seed=9");
        let start = std::time::Instant::now();
        let listed = faults
            .run(Op::List, "locks/", || {
                Ok(vec!["a".to_string(), "b".to_string()])
            })
            .unwrap();
        assert_eq!(listed, ["a", "b"]);
        assert!(start.elapsed() >= Duration::from_millis(1));
        assert!(faults.allows(Op::Read, "k"), "a listing fault hit a read");
    }
}
