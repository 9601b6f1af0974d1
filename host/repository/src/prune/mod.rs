//! Prune: give back the space of blobs no generation refers to, while
//! backups of every client go on.
//!
//! A prune takes the prune lock (one prune at a time; backups are not
//! stopped), then:
//!
//! 1. **Finishes earlier plans** ([`plan`]) whose runs have all ended,
//!    abandons those without a runs record and the damaged ones (never
//!    carried out), and stops if a plan still waits for a running backup
//!    (one plan at a time).
//! 2. **Walks** every generation of every client ([`referenced`]).
//! 3. **Decides** which packs go ([`verdict`]): those with nothing used
//!    (deleted), and those over the unused threshold (rewritten).
//! 4. **Writes** the used blobs of the packs to rewrite into new packs,
//!    and new index objects in place of those that list a pack that goes:
//!    they list the packs those listed that stay. Nothing is deleted yet.
//! 5. **Writes the plan**: the packs and index objects to delete. Then
//!    lists the locks, and records the runs it found.
//! 6. **Deletes** (`finish`) at once if no run was found; otherwise a
//!    later prune does, once those runs have ended. Before deleting it
//!    walks the generations committed since step 2 and keeps any pack
//!    they still need.
//!
//! A prune with no pack to delete merges the small index objects
//! backups left, if there are many (`compact`); one that deletes packs
//! rewrites only the index objects that list them (step 4).
//!
//! Why no interleaving with a backup loses data is argued in
//! `docs/repository-format.md` ("Pruning beside backups"); in short: a
//! backup writes its lock, then reads the plans; a prune writes its plan,
//! then reads the locks; so every backup either knows the plan (and
//! builds on no planned pack) or is a run the plan waits for (and what it
//! commits is walked before anything is deleted).

mod compact;
mod finish;
pub mod plan;
pub mod referenced;
mod rewrite;
pub mod verdict;

use std::collections::HashSet;
use std::time::Duration;

use crate::error::{RepoError, RepoResult};
use crate::ids::ObjectId;
use crate::pack;
use crate::Repository;

use crate::lock::Run;
use plan::Plan;
use referenced::Referenced;

/// How a prune is to run.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Rewrite a pack whose unused bytes are more than this many percent.
    pub repack_threshold: u8,
    /// Decide and report only: write and delete nothing.
    pub pretend: bool,
    /// How long to wait for another prune to finish.
    pub lock_timeout: Duration,
    /// Generation ids (of any client) to leave out of the walk, as if
    /// they were removed: what `forget --prune --pretend` reports. Only
    /// with `pretend`; a prune that deletes refuses it, as leaving out a
    /// generation that is there would delete what it refers to.
    pub pretend_forgotten: HashSet<String>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repack_threshold: 20,
            pretend: false,
            lock_timeout: Duration::from_secs(60),
            pretend_forgotten: HashSet::new(),
        }
    }
}

/// The steps a prune reports progress in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneStep {
    /// Walking generations: done and total generations.
    Walk,
    /// Copying used blobs out of packs: done and total packs.
    Rewrite,
    /// Deleting: done and total objects.
    Delete,
}

/// What a prune did (or, pretending, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub pretend: bool,
    /// Packs deleted (or to delete): with nothing used, and rewritten ones.
    pub packs_deleted: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_rewritten: u64,
    /// Bytes of the packs deleted (of the blobs the index lists in
    /// them); less `bytes_rewritten`, the space that comes back.
    pub bytes_freed: u64,
    /// Bytes copied into new packs.
    pub bytes_rewritten: u64,
    pub index_objects_deleted: u64,
    /// The deletion waits for backups that began before the plan (with
    /// `pretend`: would wait, for runs going on now or an earlier plan's).
    pub deferred: bool,
    /// How many runs it waits for.
    pub waiting_runs: u64,
    /// Plans of earlier prunes finished by this one.
    pub finished_earlier_plans: u64,
    /// Plans of earlier prunes that stopped before recording their runs.
    pub abandoned_plans: u64,
    /// Packs a plan named that were kept, as generations committed since
    /// still need them.
    pub packs_kept_for_new_generations: u64,
    /// Generations walked.
    pub generations: u64,
    /// Blobs referred to that are in no stored pack (see `fsck`).
    pub missing_blobs: u64,
    /// Keys of the packs (to be) deleted with nothing used in them.
    pub delete: Vec<String>,
    /// Keys of the packs (to be) rewritten.
    pub rewrite: Vec<String>,
}

impl Repository {
    /// Prune the repository (see the module's docs). `progress` is told
    /// the step, what is done of it and its total.
    pub fn prune(
        &self,
        options: &PruneOptions,
        progress: &mut dyn FnMut(PruneStep, u64, u64),
    ) -> RepoResult<PruneReport> {
        if options.pretend {
            return self.prune_steps(options, progress);
        }
        self.lock_prune(options.lock_timeout)?;
        let result = self.prune_steps(options, progress);
        let unlocked = self.unlock_prune();
        let report = result?;
        unlocked?;
        Ok(report)
    }

    /// Step 1 of a pretend prune: counts the earlier plans the real one
    /// would drop or finish, and tells whether one waits for runs still
    /// going (then the real prune does nothing else, and neither does
    /// this: `true`).
    fn pretend_earlier_plans(&self, report: &mut PruneReport) -> RepoResult<bool> {
        let plans = self.read_plans(true)?;
        report.abandoned_plans += plans.damaged.len() as u64;
        let live = if plans.good.is_empty() {
            Vec::new()
        } else {
            self.live_runs()?
        };
        for stored in &plans.good {
            match &stored.runs {
                None => report.abandoned_plans += 1,
                Some(runs) if runs.iter().any(|r| live.contains(r)) => {
                    report.deferred = true;
                    let waiting: Vec<Run> =
                        runs.iter().filter(|r| live.contains(r)).cloned().collect();
                    report.waiting_runs += waiting.len() as u64;
                    self.say_waiting_for(&waiting);
                }
                Some(_) => report.finished_earlier_plans += 1,
            }
        }
        Ok(report.deferred)
    }

    fn prune_steps(
        &self,
        options: &PruneOptions,
        progress: &mut dyn FnMut(PruneStep, u64, u64),
    ) -> RepoResult<PruneReport> {
        let mut report = PruneReport {
            pretend: options.pretend,
            ..PruneReport::default()
        };
        if !options.pretend && !options.pretend_forgotten.is_empty() {
            return Err(RepoError::Usage(
                "prune: generations can be left out only of a pretend prune".to_string(),
            ));
        }
        let mut refs = Referenced::default();
        refs.forgotten.clone_from(&options.pretend_forgotten);
        // 1. Earlier plans. A damaged one is never carried out: it is
        // abandoned, as one without a runs record is, and this prune
        // decides afresh (see `plan`).
        if options.pretend {
            // What the real prune's first step would find, read only.
            if self.pretend_earlier_plans(&mut report)? {
                return Ok(report);
            }
        } else {
            let plans = self.read_plans(true)?;
            for damaged in &plans.damaged {
                let id = &damaged.id;
                self.remove_plan(id).map_err(|e| {
                    RepoError::Usage(format!(
                        "prune: cannot remove the damaged prune plan prune/{id}.plan ({}): {e}; \
                         nothing was deleted",
                        damaged.problem()
                    ))
                })?;
                tracing::warn!(
                    "removed the damaged prune plan prune/{id}.plan ({}): nothing it names was \
                     deleted because of it; this prune decides afresh what is unused",
                    damaged.problem()
                );
                report.abandoned_plans += 1;
            }
            let live = if plans.good.is_empty() {
                Vec::new()
            } else {
                self.live_runs()?
            };
            for stored in plans.good {
                match &stored.runs {
                    None => {
                        tracing::info!(
                            "abandoning the plan prune/{} of a prune that stopped early",
                            stored.id
                        );
                        self.remove_plan(&stored.id)?;
                        report.abandoned_plans += 1;
                    }
                    Some(runs) if runs.iter().any(|r| live.contains(r)) => {
                        report.deferred = true;
                        let waiting: Vec<Run> =
                            runs.iter().filter(|r| live.contains(r)).cloned().collect();
                        report.waiting_runs += waiting.len() as u64;
                        self.say_waiting_for(&waiting);
                    }
                    Some(_) => {
                        self.walk_new_generations(&mut refs, progress)?;
                        self.finish_plan(
                            &stored.id,
                            &stored.plan,
                            true,
                            &refs,
                            &mut report,
                            progress,
                        )?;
                        report.finished_earlier_plans += 1;
                    }
                }
            }
            if report.deferred {
                return Ok(report);
            }
        }
        // 2. Walk.
        self.load_index()?;
        // What a damaged index object lists is unknown: its packs would
        // look unlisted, and the blobs generations need from them absent.
        if let Some(problem) = self.damaged_index_objects().first() {
            return Err(RepoError::Usage(format!(
                "prune: {problem}; nothing was deleted (run 'obnam fsck')"
            )));
        }
        self.walk_new_generations(&mut refs, progress)?;
        report.generations = refs.generations() as u64;
        // 3. Decide.
        let stored_sizes = self.stored_pack_sizes()?;
        let stored: HashSet<ObjectId> = stored_sizes.keys().copied().collect();
        let mut verdicts = {
            let index = self.catalog.read();
            verdict::decide(&index, &refs.blobs, &stored, options.repack_threshold)?
        };
        // Packs no index object lists may hold what generations miss
        // (an index object deleted by hand, say): keep them then.
        if (verdicts.missing_blobs > 0 || refs.missing_trees > 0) && !verdicts.unlisted.is_empty() {
            tracing::warn!(
                "keeping {} packs that no index object lists, as generations refer to data \
                 that is in no listed pack: 'obnam repair-index' indexes them from their own \
                 lists",
                verdicts.unlisted.len()
            );
            verdicts.unlisted.clear();
        }
        report.missing_blobs = verdicts.missing_blobs;
        report.delete = verdicts.delete.iter().map(|p| pack::key(&p.id)).collect();
        report
            .delete
            .extend(verdicts.unlisted.iter().map(pack::key));
        report.rewrite = verdicts.rewrite.iter().map(|p| pack::key(&p.id)).collect();
        if verdicts.is_empty() {
            // Nothing to delete: a moment to merge the small index
            // objects backups left (`compact`).
            report.index_objects_deleted += self.compact_index_objects(options.pretend)?;
            return Ok(report);
        }
        if options.pretend {
            let going = verdicts.delete.iter().chain(&verdicts.rewrite);
            report.bytes_freed = going.map(|p| p.bytes).sum();
            // Packs no index object lists, at the size the store gives.
            report.bytes_freed += verdicts
                .unlisted
                .iter()
                .filter_map(|id| stored_sizes.get(id))
                .sum::<u64>();
            report.packs_deleted =
                (verdicts.delete.len() + verdicts.rewrite.len() + verdicts.unlisted.len()) as u64;
            report.packs_rewritten = verdicts.rewrite.len() as u64;
            report.bytes_rewritten = verdicts.rewrite.iter().map(|p| p.used).sum();
            // The index objects that list a pack that goes are replaced,
            // as the real run's plan names them (it said 0).
            let (replaced, _) = self.index_objects_to_replace(&stored, &verdicts.doomed());
            report.index_objects_deleted += replaced.len() as u64;
            // Runs going on now (a backup writing packs no generation
            // lists yet, say) would make the real prune wait before
            // deleting, and keep what they commit: said, not hidden.
            let live = self.live_runs()?;
            report.deferred = !live.is_empty();
            report.waiting_runs = live.len() as u64;
            self.say_waiting_for(&live);
            return Ok(report);
        }
        // 4. Copy what is used out of the packs to rewrite; index anew
        // the packs that stay of the index objects that list one that
        // goes.
        let used = {
            let index = self.catalog.read();
            verdict::used_entries(&index, &refs.blobs, &stored, &verdicts.rewrite)?
        };
        // What this process wrote before (finishing an earlier plan, it
        // may have indexed kept packs anew): not this step's to remove.
        let before = self.own_writes();
        let (copied, kept) = self
            .copy_used_blobs(&verdicts.rewrite, &used, &mut |done, total| {
                progress(PruneStep::Rewrite, done, total)
            })
            .inspect_err(|_| self.remove_own_writes(&before))?;
        // A pack holding a damaged blob that is used stays whole.
        verdicts.rewrite.retain(|p| !kept.contains(&p.number));
        report.rewrite = verdicts.rewrite.iter().map(|p| pack::key(&p.id)).collect();
        report.bytes_rewritten = copied;
        report.packs_rewritten = verdicts.rewrite.len() as u64;
        if verdicts.is_empty() {
            return Ok(report);
        }
        let doomed = verdicts.doomed();
        // The packs just written are stored too.
        let stored = self.stored_packs()?;
        let (replaced, relist) = self.index_objects_to_replace(&stored, &doomed);
        self.write_index_of_packs(&relist)
            .inspect_err(|_| self.remove_own_writes(&before))?;
        // 5. The plan, then the runs that may have missed it.
        let mut packs: Vec<ObjectId> = verdicts
            .delete
            .iter()
            .chain(&verdicts.rewrite)
            .map(|p| p.id)
            .chain(verdicts.unlisted.iter().copied())
            .collect();
        packs.sort();
        let plan = Plan {
            created: crate::now_ns(),
            packs: packs.iter().map(ObjectId::to_hex).collect(),
            // Listed before the new index objects were written: those stay.
            index: replaced,
        };
        #[cfg(test)]
        if tests::STOP_BEFORE_PLAN.with(std::cell::Cell::get) {
            return Err(RepoError::Usage("stopped before the plan (test)".into()));
        }
        // A full disk may stop the plan too: what this prune wrote goes
        // then as well (a plan without its runs record is never carried
        // out, so it may go first).
        let plan_id = self
            .write_plan(&plan)
            .inspect_err(|_| self.remove_own_writes(&before))?;
        let runs = self
            .live_runs()
            .and_then(|runs| self.write_plan_runs(&plan_id, &runs).map(|()| runs))
            .inspect_err(|_| {
                if self.remove_plan(&plan_id).is_ok() {
                    self.remove_own_writes(&before);
                }
            })?;
        // 6. Delete now, or leave it to a later prune.
        if runs.is_empty() {
            self.walk_new_generations(&mut refs, progress)?;
            self.finish_plan(&plan_id, &plan, false, &refs, &mut report, progress)?;
        } else {
            tracing::info!(
                "the deletion waits for {} runs that began before this prune's plan",
                runs.len()
            );
            report.deferred = true;
            report.waiting_runs = runs.len() as u64;
            self.say_waiting_for(&runs);
        }
        Ok(report)
    }

    /// Say which runs a deletion waits for (backups, restores, mounts:
    /// the report counts them only), one notice each.
    fn say_waiting_for(&self, runs: &[Run]) {
        match self.describe_runs(runs) {
            Ok(described) => {
                for what in described {
                    tracing::info!(target: "obnam::notice", "the deletion waits for: {what}");
                }
            }
            Err(e) => tracing::debug!("describing the runs a prune waits for: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
