//! The `prune` subcommand (and `forget --prune`): the repository's
//! engine does the work ([`Repository::prune`]); this reads the
//! settings, shows progress and reports what was done.

use std::ffi::OsString;
use std::time::Instant;

use serde_json::json;

use plugin_api::{Context, PruneOptions, PruneReport, PruneStep, Result};

/// The default of `--repack-threshold`: a pack is rewritten once more
/// than a fifth of it is unused (restic's default too).
pub const DEFAULT_REPACK_THRESHOLD: &str = "20";

/// `obnam prune`.
pub fn prune(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "prune: takes no arguments, got '{}' (to remove generations use 'obnam forget')",
            arg.to_string_lossy()
        );
    }
    run(ctx)
}

/// Read the settings, prune, and report.
pub fn run(ctx: &Context<'_>) -> Result<()> {
    let outcome = execute(ctx, &[])?;
    if ctx.output_format()?.is_json() {
        ctx.outln(&serde_json::to_string_pretty(&outcome.json())?)
    } else if ctx.boolean("quiet")? {
        Ok(())
    } else {
        outcome.print_text(ctx)
    }
}

/// What a prune did, or would do, and how long it took.
pub struct Outcome {
    report: PruneReport,
    seconds: f64,
}

/// Read the settings and prune; with `--pretend`, as if the generations
/// `forgotten` (which a pretend forget would remove) were gone.
pub fn execute(ctx: &Context<'_>, forgotten: &[String]) -> Result<Outcome> {
    let options = PruneOptions {
        repack_threshold: threshold(ctx)?,
        pretend: ctx.boolean("pretend")?,
    };
    let repo = ctx.repository(false)?;
    let started = Instant::now();
    let progress = |step, done, total| {
        let what = match step {
            PruneStep::Walk => "generations walked",
            PruneStep::Rewrite => "packs rewritten",
            PruneStep::Delete => "objects deleted",
        };
        ctx.status(&format!("prune: {done}/{total} {what}"));
    };
    let report = if forgotten.is_empty() {
        repo.prune(options, progress)?
    } else {
        repo.prune_pretending_forgotten(options, forgotten, progress)?
    };
    Ok(Outcome {
        report,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `--repack-threshold`, checked: a percentage.
fn threshold(ctx: &Context<'_>) -> Result<u8> {
    let value = ctx.integer("repack-threshold")?;
    match u8::try_from(value) {
        Ok(v) if v <= 100 => Ok(v),
        // The host's range refuses it first; kept for a host that did not.
        _ => Err(ctx.setting_error(
            "repack-threshold",
            &format!("'{value}' is out of range: give 0 to 100"),
        )),
    }
}

impl Outcome {
    /// The report as text, a line per figure.
    pub fn print_text(&self, ctx: &Context<'_>) -> Result<()> {
        let (r, seconds) = (&self.report, self.seconds);
        let (dropped, finished) = if r.pretend {
            ("would drop", "would finish")
        } else {
            ("dropped", "finished")
        };
        if r.abandoned_plans > 0 {
            ctx.outln(&format!(
                "{dropped} {} plan(s) of earlier prunes that stopped before deleting or were \
                 damaged (nothing they name was deleted because of them)",
                r.abandoned_plans
            ))?;
        }
        if r.finished_earlier_plans > 0 {
            ctx.outln(&format!(
                "{finished} {} plan(s) of earlier prunes",
                r.finished_earlier_plans
            ))?;
        }
        if r.missing_blobs > 0 {
            ctx.outln(&format!(
                "warning: generations refer to {} that {} in no pack (run 'obnam fsck')",
                plugin_api::human::count(r.missing_blobs, "blob", "blobs"),
                if r.missing_blobs == 1 { "is" } else { "are" }
            ))?;
        }
        if r.pretend {
            for key in &r.delete {
                ctx.outln(&format!("delete {key}"))?;
            }
            for key in &r.rewrite {
                ctx.outln(&format!("rewrite {key}"))?;
            }
            if r.deferred {
                ctx.outln(&waiting_for(r))?;
            }
        } else if r.deferred {
            let runs = match r.waiting_runs {
                1 => "1 run (a backup, a restore or a mount, say) that began before the prune's plan is"
                    .to_string(),
                n => format!(
                    "{n} runs (backups, restores or mounts, say) that began before the prune's plan are"
                ),
            };
            ctx.outln(&format!(
                "deletion deferred: {runs} still running; the next prune finishes it"
            ))?;
        }
        // The same figures, worded for what would happen or what did.
        let labels = if r.pretend {
            [
                "packs to delete",
                "packs to rewrite",
                "bytes to free",
                "bytes to rewrite",
            ]
        } else {
            [
                "packs deleted",
                "packs rewritten",
                "bytes freed",
                "bytes rewritten",
            ]
        };
        let figures = [
            r.packs_deleted,
            r.packs_rewritten,
            r.bytes_freed,
            r.bytes_rewritten,
        ];
        for (label, figure) in labels.iter().zip(figures) {
            ctx.outln(&format!("{label}: {figure}"))?;
        }
        let space = if r.pretend {
            "space to come back"
        } else {
            "space given back"
        };
        ctx.outln(&format!(
            "{space}: {}",
            plugin_api::human::bytes(r.bytes_freed.saturating_sub(r.bytes_rewritten))
        ))?;
        ctx.outln(&format!("time: {seconds:.2} s"))
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let (r, seconds) = (&self.report, self.seconds);
        json!({
            "pretend": r.pretend,
            "packs_deleted": r.packs_deleted,
            "packs_rewritten": r.packs_rewritten,
            "bytes_freed": r.bytes_freed,
            "bytes_rewritten": r.bytes_rewritten,
            "index_objects_deleted": r.index_objects_deleted,
            "deferred": r.deferred,
            "waiting_runs": r.waiting_runs,
            "finished_earlier_plans": r.finished_earlier_plans,
            "abandoned_plans": r.abandoned_plans,
            "packs_kept_for_new_generations": r.packs_kept_for_new_generations,
            "generations": r.generations,
            "missing_blobs": r.missing_blobs,
            "seconds": seconds,
            "delete": r.delete,
            "rewrite": r.rewrite,
        })
    }
}

/// What a pretend prune says of the runs the real one would wait for:
/// an earlier plan's (then the real prune would do nothing more), or
/// runs going on now, whose fresh packs count as unused here.
fn waiting_for(r: &PruneReport) -> String {
    let runs = match r.waiting_runs {
        1 => "1 run (a backup, a restore or a mount, say) still running".to_string(),
        n => format!("{n} runs (backups, restores or mounts, say) still running"),
    };
    // A pretend prune that finds runs going on now counts packs to
    // delete (else it would not look for runs): none, the earlier plan.
    if r.packs_deleted == 0 {
        format!(
            "a prune now would delete nothing: an earlier prune's deletion waits for {runs}, \
             and the prune after they end finishes it"
        )
    } else {
        format!(
            "a prune now would wait for {runs} before deleting, and keep every pack \
             a backup among them commits: packs being written now count above as unused"
        )
    }
}
