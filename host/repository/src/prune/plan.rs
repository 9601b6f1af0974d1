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

use serde::{Deserialize, Serialize};

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
    /// The pack ids; a name that is not one is a damaged plan.
    pub fn pack_ids(&self, plan_id: &str) -> RepoResult<Vec<ObjectId>> {
        self.packs
            .iter()
            .map(|hex| {
                ObjectId::from_hex(hex).map_err(|_| {
                    RepoError::corrupt(
                        format!("{FOLDER}{plan_id}{PLAN}"),
                        format!("'{hex}' is not a pack id"),
                    )
                })
            })
            .collect()
    }
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

impl Repository {
    /// Every plan in the repository, oldest first.
    pub(crate) fn read_plans(&self) -> RepoResult<Vec<StoredPlan>> {
        let plans: Vec<(String, Plan)> = self.read_records(FOLDER, |n| n.ends_with(PLAN))?;
        let runs: Vec<(String, PlanRuns)> = self.read_records(FOLDER, |n| n.ends_with(RUNS))?;
        let mut out: Vec<StoredPlan> = plans
            .into_iter()
            .map(|(name, plan)| {
                let id = name.trim_end_matches(PLAN).to_string();
                let runs = runs
                    .iter()
                    .find(|(r, _)| r.trim_end_matches(RUNS) == id)
                    .map(|(_, r)| r.runs.clone());
                StoredPlan { id, plan, runs }
            })
            .collect();
        out.sort_by(|a, b| (a.plan.created, &a.id).cmp(&(b.plan.created, &b.id)));
        Ok(out)
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
        self.storage().delete(&format!("{FOLDER}{id}{RUNS}"))?;
        self.storage().delete(&format!("{FOLDER}{id}{PLAN}"))?;
        Ok(())
    }

    /// The packs some prune plans to delete (one listing of `prune/`).
    pub(crate) fn planned_packs(&self) -> RepoResult<Vec<ObjectId>> {
        let plans: Vec<(String, Plan)> = self.read_records(FOLDER, |n| n.ends_with(PLAN))?;
        let mut packs = Vec::new();
        for (name, plan) in plans {
            packs.extend(plan.pack_ids(name.trim_end_matches(PLAN))?);
        }
        Ok(packs)
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
