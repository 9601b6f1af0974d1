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
//! Every injected failure is a [`StorageError::Failed`](crate::storage::StorageError::Failed) whose message
//! starts with [`MESSAGE`] and names the kind; the error names the
//! operation and the object. Every injected fault, failure or not, is
//! logged as a warning.
//!
//! This module has the spec and the operations; `decision.rs` the faults
//! of one operation and how they are applied ([`Decision`],
//! [`Faultable`]), and `plan.rs` how they are drawn ([`Faults`]).

mod decision;
mod plan;

pub use decision::{Decision, Faultable};
pub use plan::Faults;

/// What every injected failure's message starts with: the test harness
/// tells injected failures from real ones by it.
pub const MESSAGE: &str = "injected storage fault";

/// The longest delay of `slow`, in milliseconds (the shortest is 1).
pub(crate) const SLOW_MAX_MS: u64 = 300;
/// The longest delay of `stale-list`, in milliseconds.
pub(crate) const STALE_MAX_MS: u64 = 500;

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

#[cfg(test)]
mod tests;
