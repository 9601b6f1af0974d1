//! The `forget` subcommand: choosing the clients,
//! holding each client's lock while its generations are judged and
//! removed, and reporting what was kept and why.
//!
//! A client's lock is the one its backups hold, so a forget never runs
//! while a backup of the same client builds on the generation it would
//! remove; backups of other clients go on. Every named generation is
//! looked up before anything is removed, so a typo removes nothing.
//! forget removes generation records only: the chunks they alone used
//! stay in the repository until a prune.

use std::collections::HashSet;
use std::ffi::OsString;

use jiff::tz::TimeZone;
use serde_json::{json, Value};

use plugin_api::names::escape;
use plugin_api::{Context, GenerationInfo, Repository, Result, SettingOrigin};

use crate::decide::{decide, times_out_of_order, Decision, Gen, Selection};
use crate::policy::{Policy, Rule};

/// What one forget run was asked to do.
struct Request {
    selection: SelectionSpec,
    pretend: bool,
    json: bool,
    /// Print the text report (not JSON, not `--quiet`).
    text: bool,
}

enum SelectionSpec {
    Named(HashSet<String>),
    Policy(Policy),
    CheckpointsOnly,
}

impl SelectionSpec {
    fn as_selection(&self) -> Selection<'_> {
        match self {
            SelectionSpec::Named(ids) => Selection::Named(ids),
            SelectionSpec::Policy(p) => Selection::Policy(p),
            SelectionSpec::CheckpointsOnly => Selection::CheckpointsOnly,
        }
    }
}

/// `obnam forget [GENID]...` and `obnam forget --keep POLICY`.
pub fn forget(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let mut ids = HashSet::new();
    for arg in &args {
        match arg.to_str() {
            // Every other command takes it for the newest generation;
            // here a generation is removed, so it is named by its id.
            Some("latest") => plugin_api::bail!(
                "forget takes generation ids, not 'latest': give the newest generation's id \
                 ('obnam genids' lists them, the newest last); nothing was removed"
            ),
            Some(id) if !id.is_empty() => {
                ids.insert(id.to_string());
            }
            _ => plugin_api::bail!(
                "forget: '{}' is not a generation id (see 'obnam generations')",
                arg.to_string_lossy()
            ),
        }
    }
    // An empty --keep is a policy like any other, and refused by
    // Policy::parse: taken as no --keep it would silently mean "remove
    // checkpoints only".
    let keep = ctx.string("keep")?;
    let selection = match (ids.is_empty(), keep) {
        (false, Some(_)) => {
            // A --keep from a config file or the environment is easy to
            // forget: say where it is.
            let from = match ctx.setting_origin("keep")? {
                SettingOrigin::CommandLine => String::new(),
                other => format!(" (--keep is set by {other})"),
            };
            plugin_api::bail!("forget: give generation ids or --keep, not both{from}")
        }
        (false, None) => SelectionSpec::Named(ids),
        (true, Some(text)) => SelectionSpec::Policy(
            Policy::parse(&text).map_err(|e| ctx.setting_error("keep", &e.to_string()))?,
        ),
        (true, None) => SelectionSpec::CheckpointsOnly,
    };
    let json = ctx.output_format()?.is_json();
    let request = Request {
        selection,
        pretend: ctx.boolean("pretend")?,
        json,
        text: !json && !ctx.boolean("quiet")?,
    };
    let repo = ctx.repository(false)?;
    let clients = chosen_clients(ctx, &repo)?;
    if let SelectionSpec::Named(ids) = &request.selection {
        check_named_exist(&repo, &clients, ids)?;
    }
    // Days, weeks, months and years are the local ones: a zone that
    // cannot be told (a `TZ` naming none) was taken for UTC without a
    // word.
    let tz = TimeZone::try_system().unwrap_or_else(|e| {
        plugin_api::tracing::warn!(
            "the local time zone cannot be told ({e}): days, weeks, months and years are \
             counted in UTC"
        );
        TimeZone::UTC
    });
    let run = Run {
        ctx,
        repo: &repo,
        request: &request,
        tz: &tz,
    };
    let mut report = Vec::new();
    // What the forget removes, or with --pretend would remove.
    let mut removed = Vec::new();
    // With several clients, one that cannot be done (its backup holds
    // its lock past --lock-timeout) does not stop the others: each is
    // reported, and the run fails at the end naming them.
    let mut skipped: Vec<String> = Vec::new();
    for client in &clients {
        match run.client(client) {
            Ok((value, ids)) => {
                report.push(value);
                removed.extend(ids);
            }
            Err(e) if clients.len() > 1 => {
                let shown = escape(client.as_bytes());
                plugin_api::tracing::error!("forget: client {shown}: {e}");
                // The document names it too: a program reading it alone
                // saw a repository with one client fewer.
                report.push(json!({
                    "client": client,
                    "pretend": request.pretend,
                    "skipped": true,
                    "error": e.to_string(),
                }));
                skipped.push(shown);
            }
            Err(e) => return Err(e),
        }
    }
    let skipped = || -> Result<()> {
        if skipped.is_empty() {
            return Ok(());
        }
        plugin_api::bail!(
            "forget: {} of {} clients were left as they were ({}): see the errors above; \
             the others were done",
            skipped.len(),
            clients.len(),
            skipped.join(", ")
        )
    };
    let report = Value::Array(report);
    if !ctx.boolean("prune")? {
        if request.json {
            ctx.outln(&serde_json::to_string_pretty(&report)?)?;
        }
        return skipped();
    }
    // A real forget has removed them; a pretend prune must leave them out
    // to say what the real one would give back.
    let forgotten = if request.pretend { removed } else { Vec::new() };
    let pruned = match crate::prune::execute(ctx, &forgotten) {
        Ok(pruned) => pruned,
        // What the forget removed is gone whatever the prune did: the
        // document says so (it gave only the error, as if nothing had
        // been done), with `prune` null; the error follows.
        Err(e) if request.json => {
            let both = json!({ "forget": report, "prune": Value::Null });
            ctx.outln(&serde_json::to_string_pretty(&both)?)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if request.json {
        // One document, as every command prints.
        let both = json!({ "forget": report, "prune": pruned.json() });
        ctx.outln(&serde_json::to_string_pretty(&both)?)?;
    } else if request.text {
        pruned.print_text(ctx)?;
    }
    skipped()
}

/// `--all-clients`, or the client of `--client-name`.
fn chosen_clients(ctx: &Context<'_>, repo: &Repository) -> Result<Vec<String>> {
    if ctx.boolean("all-clients")? {
        let mut clients = repo.clients()?;
        clients.sort();
        return Ok(clients);
    }
    let name = match ctx.string("client-name")? {
        Some(name) if !name.is_empty() => name,
        _ => plugin_api::bail!(
            "a client name must not be empty: set --client-name, or give --all-clients"
        ),
    };
    // A client the repository does not know (a name mistyped in a
    // retention job, or the host name by default on the server that
    // keeps the repository) is said: forget --keep did nothing at every
    // run, without a word, and the repository grew for ever. A warning,
    // not an error: the client's first backup may be running now, or a
    // remove-client of it (then there is nothing to forget either). One
    // whose client record is lost but whose generations are there is
    // listed as a client; one whose generation records are all damaged
    // is known by them.
    let known = repo.clients()?.contains(&name) || !repo.damaged_generations(&name)?.is_empty();
    if !known {
        plugin_api::tracing::warn!(
            "there is no client '{}' in the repository, so nothing to forget (see 'obnam \
             clients'; --all-clients forgets by the rules in every client)",
            escape(name.as_bytes())
        );
    }
    Ok(vec![name])
}

/// Every named id must be a generation of one of `clients`.
fn check_named_exist(repo: &Repository, clients: &[String], ids: &HashSet<String>) -> Result<()> {
    let mut found = HashSet::new();
    for client in clients {
        for g in repo.generations(client)? {
            found.insert(g.id);
        }
        // A damaged record is removed by naming it.
        for d in repo.damaged_generations(client)? {
            found.insert(d.id);
        }
    }
    let mut missing: Vec<&String> = ids.iter().filter(|id| !found.contains(*id)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        let whose = match clients {
            [one] => format!("client '{}'", escape(one.as_bytes())),
            _ => "any client".to_string(),
        };
        plugin_api::bail!(
            "forget: {whose} has no generation '{}' (see 'obnam generations'); nothing was removed",
            escape(first.as_bytes())
        );
    }
    Ok(())
}

/// One forget run over its clients.
struct Run<'a, 'c> {
    ctx: &'a Context<'c>,
    repo: &'a Repository,
    request: &'a Request,
    tz: &'a TimeZone,
}

impl Run<'_, '_> {
    /// Judge one client's generations under its lock, report, and remove.
    /// Returns the report and the ids of the generations removed (or with
    /// `--pretend` to remove).
    fn client(&self, client: &str) -> Result<(Value, Vec<String>)> {
        // --pretend changes nothing, so it needs no lock.
        if self.request.pretend {
            return self.judge_and_remove(client);
        }
        self.repo.lock_client_for_removal(client)?;
        let result = self.judge_and_remove(client);
        let unlocked = self.repo.unlock_client(client);
        let value = result?;
        unlocked?;
        Ok(value)
    }

    fn judge_and_remove(&self, client: &str) -> Result<(Value, Vec<String>)> {
        let Run {
            ctx,
            repo,
            request,
            tz,
        } = *self;
        let infos = repo.generations(client)?;
        // A damaged record has no time, so a policy cannot judge the
        // history it is part of, nor can the report show it whole: unless
        // the forget names it (which is how it is removed), nothing is.
        let named = match &request.selection {
            SelectionSpec::Named(ids) => Some(ids),
            _ => None,
        };
        let damaged = repo.damaged_generations(client)?;
        if let Some(d) = damaged
            .iter()
            .find(|d| named.is_none_or(|ids| !ids.contains(&d.id)))
        {
            let remedy = if d.repairable {
                format!(
                    "'obnam repair-records' writes it again with that byte undone (or remove \
                     it first with 'obnam forget {}', which loses it)",
                    d.id
                )
            } else {
                format!("remove it first with 'obnam forget {}'", d.id)
            };
            plugin_api::bail!(
                "forget: the record of generation {} of client '{}' is damaged ({}), so \
                 its history cannot be judged; nothing was removed: {remedy}",
                d.id,
                escape(client.as_bytes()),
                d.problem,
            );
        }
        let gens: Vec<Gen> = infos
            .iter()
            .map(|g| Gen {
                id: g.id.clone(),
                started_ns: g.started_ns,
                is_checkpoint: g.is_checkpoint,
            })
            .collect();
        if let (SelectionSpec::Policy(policy), Some((before, after))) =
            (&request.selection, times_out_of_order(&gens))
        {
            if policy.rules.iter().any(|r| matches!(r, Rule::Every(..))) {
                plugin_api::tracing::warn!(
                    "client '{}': generation {} started at {}, before generation {} that was \
                     committed ahead of it started ({}): the clock was wrong for one of them, \
                     and --keep's calendar rules go by these times; see what --pretend keeps",
                    escape(client.as_bytes()),
                    after.id,
                    local_time(after.started_ns, tz),
                    before.id,
                    local_time(before.started_ns, tz),
                );
            }
        }
        let decisions = decide(&gens, &request.selection.as_selection(), tz);
        if request.text {
            print_table(ctx, client, &infos, &decisions, request.pretend, tz)?;
        }
        if !request.pretend {
            for (info, d) in infos.iter().zip(&decisions) {
                if !d.keep {
                    repo.remove_generation(client, &info.id)?;
                }
            }
        }
        let damaged = self.remove_damaged_named(client)?;
        let kept = decisions.iter().filter(|d| d.keep).count();
        let going = decisions.len() - kept;
        let removed = infos
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| !d.keep)
            .map(|(g, _)| g.id.clone())
            .chain(damaged.iter().cloned())
            .collect();
        if request.text {
            let verb = if request.pretend {
                "would remove"
            } else {
                "removed"
            };
            ctx.outln(&format!(
                "client {}: kept {kept}, {verb} {going} of {}",
                escape(client.as_bytes()),
                plugin_api::human::count(decisions.len() as u64, "generation", "generations")
            ))?;
        }
        let value = json!({
            "client": client,
            "pretend": request.pretend,
            "generations": infos.iter().zip(&decisions).map(|(g, d)| generation_json(g, d)).collect::<Vec<_>>(),
            "kept": kept,
            "removed": going,
            "damaged_removed": damaged,
        });
        Ok((value, removed))
    }

    /// Remove the damaged generation records of `client` named on the
    /// command line (no policy judges them: they have no time), and say
    /// so. Returns their ids.
    fn remove_damaged_named(&self, client: &str) -> Result<Vec<String>> {
        let SelectionSpec::Named(named) = &self.request.selection else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for d in self.repo.damaged_generations(client)? {
            if !named.contains(&d.id) {
                continue;
            }
            if d.repairable {
                // Named, so removed; but it need not be.
                plugin_api::tracing::warn!(
                    "the record of generation {} of client '{}' is damaged by one byte of its \
                     filter header only, which 'obnam repair-records' undoes, keeping the \
                     generation; {} as asked",
                    d.id,
                    escape(client.as_bytes()),
                    if self.request.pretend {
                        "it would be removed"
                    } else {
                        "removed"
                    }
                );
            }
            if !self.request.pretend {
                self.repo.remove_generation(client, &d.id)?;
            }
            if self.request.text {
                let verb = if self.request.pretend {
                    "would remove"
                } else {
                    "removed"
                };
                self.ctx.outln(&format!(
                    "client {}: {verb} the damaged record of generation {} ({})",
                    escape(client.as_bytes()),
                    d.id,
                    d.problem
                ))?;
            }
            removed.push(d.id);
        }
        Ok(removed)
    }
}

fn local_time(ns: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %z")
            .to_string(),
        Err(_) => format!("{ns} ns"),
    }
}

fn print_table(
    ctx: &Context<'_>,
    client: &str,
    infos: &[GenerationInfo],
    decisions: &[Decision],
    pretend: bool,
    tz: &TimeZone,
) -> Result<()> {
    ctx.outln(&format!("client {}:", escape(client.as_bytes())))?;
    for (g, d) in infos.iter().zip(decisions) {
        let action = match (d.keep, pretend) {
            (true, _) => "keep",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        let kind = if g.is_checkpoint {
            "checkpoint"
        } else {
            "generation"
        };
        ctx.outln(&format!(
            "  {action:<12} {} {kind:<10} {}  {}",
            g.id,
            local_time(g.started_ns, tz),
            d.reasons.join(", ")
        ))?;
    }
    Ok(())
}

/// A time in JSON as every command gives it: RFC 3339 in UTC, to the
/// nanosecond (the `_ns` field beside it has the number).
fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{}", ns.div_euclid(1_000_000_000)))
}

fn generation_json(g: &GenerationInfo, d: &Decision) -> Value {
    json!({
        "id": g.id,
        "started": rfc3339(g.started_ns),
        "started_ns": g.started_ns,
        "checkpoint": g.is_checkpoint,
        "action": if d.keep { "keep" } else { "remove" },
        "reasons": d.reasons,
    })
}
