//! The objects a prune writes before it deletes anything, and what a
//! backup does with them.
//!
//! ```text
//! prune/PLANID.plan   the packs and index objects the prune will delete
//! prune/PLANID.runs   the runs that held locks just after the plan was written
//! ```
//!
//! The plan is written first, then the locks are listed, then the runs
//! record. A plan without a runs record is left by a prune that stopped
//! in between: nobody knows which backups may have missed it, so it is
//! abandoned (deleted, and nothing else), which is always safe.
//!
//! A backup lists the plans right after it takes its client's lock
//! (`Repository::avoid_planned_packs`) and, from then on, does not
//! build on a blob whose only copies are in planned packs (see
//! [`crate::index`]).
//!
//! **A damaged plan** (its plan object or its runs record cannot be
//! read, decoded or parsed, names what cannot be a pack or an index
//! object, or is not a file on a local folder) cannot be trusted, and is
//! never carried out: nothing it names is deleted because of it. A prune
//! abandons it as one without a runs record (removes it, reporting it by
//! name) and decides afresh from the generations and the index as they
//! are, by the usual protocol: what the damaged plan meant to delete is
//! either still unused (and the fresh plan deletes it, once the runs that
//! may have missed that plan have ended) or needed (and kept). Abandoning
//! deletes nothing but the plan, so it is safe even if the plan only
//! seemed damaged (a read cut short) and was good. `fsck` reports it.
//!
//! A run that takes a client's lock (a backup) while a plan object is
//! damaged stops, naming it and saying that `obnam prune` removes it: it
//! cannot tell which packs the plan names, so anything it built on might
//! be deleted, by a prune that reads the plan (one that was only misread
//! here, or put back) and carries it out while the run goes on. (It used
//! to stop too, with nothing to say what to do; and a plan replaced by a
//! folder or a FIFO was not seen at all.) A run that only removes
//! generations (forget, remove-client) builds on nothing, and locks with
//! `Repository::lock_client_for_removal`, which a damaged plan does not
//! stop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::Read;
use crate::error::{RepoError, RepoResult};
use crate::ids::ObjectId;
use crate::lock::Run;
use crate::Repository;

const FOLDER: &str = "prune/";
const PLAN: &str = ".plan";
const RUNS: &str = ".runs";

/// What a prune will delete.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Plan {
    /// When the plan was made, ns since the epoch (for the order of plans).
    pub created: i64,
    /// Packs to delete (hex ids).
    pub packs: Vec<String>,
    /// Index objects to delete (names under `index/`): every one the
    /// prune loaded, replaced by the objects it wrote before the plan.
    pub index: Vec<String>,
}

impl Plan {
    /// The pack ids (a plan read from the repository names nothing else:
    /// [`decode_plan`] refuses one that does).
    pub fn pack_ids(&self) -> Vec<ObjectId> {
        self.packs
            .iter()
            .filter_map(|hex| ObjectId::from_hex(hex).ok())
            .collect()
    }

    /// Why this plan cannot be carried out, if it names what cannot be a
    /// pack or an index object: carried out, it would delete what it
    /// names.
    fn check(&self) -> Result<(), String> {
        if let Some(bad) = self.packs.iter().find(|p| !ObjectId::is_name(p)) {
            return Err(format!("{bad:?} is not a pack id"));
        }
        if let Some(bad) = self.index.iter().find(|i| !ObjectId::is_name(i)) {
            return Err(format!("{bad:?} is not the name of an index object"));
        }
        Ok(())
    }
}

/// A plan from its plain bytes, or why they are none: JSON of a [`Plan`]
/// that names only packs and index objects.
pub fn decode_plan(bytes: &[u8]) -> Result<Plan, String> {
    let plan: Plan = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    plan.check()?;
    Ok(plan)
}

/// The runs a plan waits for.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanRuns {
    pub runs: Vec<Run>,
}

/// A plan found in the repository, with its runs record if it has one.
#[derive(Clone, Debug)]
pub struct StoredPlan {
    pub id: String,
    pub plan: Plan,
    pub runs: Option<Vec<Run>>,
}

/// What `prune/` holds.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    /// The plans that can be carried out, each with its runs record if it
    /// has one (and it was asked for), oldest first.
    pub good: Vec<StoredPlan>,
    /// The plans that must never be: their plan object, or their runs
    /// record, is damaged.
    pub damaged: Vec<DamagedPlan>,
}

/// A plan that must never be carried out.
#[derive(Clone, Debug)]
pub(crate) struct DamagedPlan {
    pub id: String,
    /// What is wrong with each of its damaged objects, naming it.
    pub problems: Vec<String>,
}

impl DamagedPlan {
    /// What is wrong with it, in one line.
    pub fn problem(&self) -> String {
        self.problems.join("; ")
    }
}

/// The plan id and kind (`PLAN` or `RUNS`) of a name in `prune/`, if it
/// is one obnam writes there.
fn plan_object(name: &str) -> Option<(&str, &'static str)> {
    [PLAN, RUNS].into_iter().find_map(|kind| {
        let id = name.strip_suffix(kind)?;
        ObjectId::is_name(id).then_some((id, kind))
    })
}

impl Repository {
    /// Every plan in the repository, and the damaged ones apart; with
    /// `runs`, the runs records too (a backup needs none). What is under
    /// a plan's name but is no file (on a local folder) is a damaged
    /// plan, not an absent one: left out of the listing, it could come
    /// back as it was, and be carried out, after backups that could not
    /// see it built on its packs. A name in `prune/` that no plan object
    /// has is ignored with a warning.
    pub(crate) fn read_plans(&self, runs: bool) -> RepoResult<Plans> {
        let listing = self.storage().list_with_others(FOLDER)?;
        let listed: Vec<String> = listing
            .objects
            .iter()
            .chain(&listing.not_objects)
            .map(|name| format!("{FOLDER}{name}"))
            .collect();
        let mut keys = Vec::new();
        for key in &listed {
            match plan_object(&key[FOLDER.len()..]) {
                Some((_, kind)) if kind == PLAN || runs => keys.push(key.clone()),
                Some(_) => {}
                None => self.damaged.stray(key),
            }
        }
        let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
        let mut waits: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        let mut damaged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let sound = |key: &str, bytes: &[u8]| match plan_object(&key[FOLDER.len()..]) {
            Some((_, kind)) if kind == PLAN => decode_plan(bytes).is_ok(),
            _ => serde_json::from_slice::<PlanRuns>(bytes).is_ok(),
        };
        for (key, read) in keys.iter().zip(self.read_objects_each(&keys, &sound)?) {
            let Some((id, kind)) = plan_object(&key[FOLDER.len()..]) else {
                continue;
            };
            let problem = match read {
                Read::Gone => continue,
                Read::Damaged(e) => e.to_string(),
                Read::Bytes(bytes) if kind == PLAN => match decode_plan(&bytes) {
                    Ok(plan) => {
                        plans.insert(id.to_string(), plan);
                        continue;
                    }
                    Err(why) => RepoError::corrupt(key, why).to_string(),
                },
                Read::Bytes(bytes) => match serde_json::from_slice::<PlanRuns>(&bytes) {
                    Ok(record) => {
                        waits.insert(id.to_string(), record.runs);
                        continue;
                    }
                    Err(e) => RepoError::corrupt(key, e).to_string(),
                },
            };
            damaged.entry(id.to_string()).or_default().push(problem);
        }
        let mut good: Vec<StoredPlan> = plans
            .into_iter()
            .filter(|(id, _)| !damaged.contains_key(id))
            .map(|(id, plan)| StoredPlan {
                runs: waits.remove(&id),
                id,
                plan,
            })
            .collect();
        good.sort_by(|a, b| (a.plan.created, &a.id).cmp(&(b.plan.created, &b.id)));
        let damaged = damaged
            .into_iter()
            .map(|(id, problems)| DamagedPlan { id, problems })
            .collect();
        Ok(Plans { good, damaged })
    }

    /// Write a new plan; returns its id.
    pub(crate) fn write_plan(&self, plan: &Plan) -> RepoResult<String> {
        let id = ObjectId::random().to_hex();
        let key = format!("{FOLDER}{id}{PLAN}");
        let data = serde_json::to_vec(plan).map_err(|e| RepoError::corrupt(&key, e))?;
        self.write_object(&key, data)?;
        Ok(id)
    }

    /// Record the runs a plan waits for.
    pub(crate) fn write_plan_runs(&self, id: &str, runs: &[Run]) -> RepoResult<()> {
        let key = format!("{FOLDER}{id}{RUNS}");
        let record = PlanRuns {
            runs: runs.to_vec(),
        };
        let data = serde_json::to_vec(&record).map_err(|e| RepoError::corrupt(&key, e))?;
        self.write_object(&key, data)
    }

    /// Remove a plan: its runs record first, so that a plan is never
    /// left with a runs record that belongs to nothing.
    pub(crate) fn remove_plan(&self, id: &str) -> RepoResult<()> {
        for kind in [RUNS, PLAN] {
            self.storage().delete(&format!("{FOLDER}{id}{kind}"))?;
        }
        Ok(())
    }

    /// The packs some prune plans to delete (one listing of `prune/`).
    /// A damaged plan object is an error that names it and the way out:
    /// what it names cannot be told (see the module's docs).
    pub(crate) fn planned_packs(&self) -> RepoResult<Vec<ObjectId>> {
        let plans = self.read_plans(false)?;
        if let Some(damaged) = plans.damaged.first() {
            return Err(RepoError::Usage(format!(
                "damaged prune plan: {}; no backup runs while it is there, as a backup cannot \
                 tell which stored data the plan will delete: 'obnam prune' removes it, \
                 deleting nothing it names because of it",
                damaged.problem()
            )));
        }
        Ok(plans.good.iter().flat_map(|p| p.plan.pack_ids()).collect())
    }

    /// Take note of the packs prunes plan to delete, so that nothing new
    /// comes to depend on them: called by a backup right after it takes
    /// its client's lock, before it loads the index objects written
    /// since it opened the repository (see `docs/repository-format.md`,
    /// "Pruning beside backups", for why this order).
    pub(crate) fn avoid_planned_packs(&self) -> RepoResult<()> {
        let packs = self.planned_packs()?;
        if !packs.is_empty() {
            tracing::info!(
                "{} packs are planned for deletion by a prune: not building on them",
                packs.len()
            );
            self.catalog.write().set_planned(packs);
        }
        Ok(())
    }
}
