//! The `key` and `client-keys` commands.
//!
//! * `key list`: the key slots, marking the one that opened the repository;
//! * `key add`: a new slot for a new passphrase or key file;
//! * `key remove ID`: remove a slot, unless no other slot that can be
//!   read would be left;
//! * `key passwd`: replace the slot that opened the repository by one for
//!   a new secret (the new slot is written before the old one goes);
//! * `client-keys`: the clients, and the key slots that open the
//!   repository for them (every slot opens it for every client).
//!
//! Removals (`key remove`, `key passwd`) take the repository's exclusive
//! lock, so that two at once cannot leave it with no slot; adding a slot
//! writes one new object and needs no lock.

use std::ffi::OsString;

use plugin_api::names::escape;
use plugin_api::serde_json::{self, json};
use plugin_api::{App, Context, Error, Repository, Result};

use crate::open::{describe, kdf_cost, origin};
use crate::slots::{self, KeySlot, Origin};
use crate::{RepoState, Shared, Unlocked};

/// Register the commands.
pub fn register(app: &mut App<'_>, state: Shared) {
    let for_key = state.clone();
    app.add_subcommand(
        "key",
        "list | add | remove ID | passwd",
        "manage the key slots of an encrypted repository",
        move |ctx, args| key(ctx, args, &for_key),
    );
    app.add_subcommand(
        "client-keys",
        "",
        "list the clients of the repository and the key slots that open it",
        move |ctx, args| client_keys(ctx, args, &state),
    );
}

/// The open repository and its unlocked keys; an error if it is not
/// encrypted.
fn unlocked<'s>(ctx: &Context<'_>, state: &'s Shared) -> Result<(Repository, &'s Unlocked)> {
    let repo = ctx.repository(false)?;
    match state.get() {
        Some(RepoState::Sealed(u)) => Ok((repo, u)),
        _ => Err(Error::msg(format!(
            "repository {} is not encrypted; it has no keys",
            repo.url()
        ))),
    }
}

fn key(ctx: &Context<'_>, args: Vec<OsString>, state: &Shared) -> Result<()> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["list"] => list(ctx, state),
        ["add"] => {
            let (repo, keys) = unlocked(ctx, state)?;
            if ctx.boolean("pretend")? {
                let source = crate::secrets::new_secret_source(ctx)?;
                if ctx.output_format()?.is_json() {
                    return ctx.outln(&json!({ "added": null, "pretend": true }).to_string());
                }
                return ctx.outln(&format!(
                    "would add a key slot for {source} (--pretend: nothing was changed)"
                ));
            }
            let secret = crate::secrets::new_secret(ctx)?;
            if let Some(id) = slots_opened_by(&repo, keys, &secret, &[])?.first() {
                return Err(Error::msg(format!(
                    "{} opens key slot {id} already; nothing was added (see obnam key list)",
                    describe(&secret)
                )));
            }
            let id = add(ctx, &repo, keys, &secret)?;
            if ctx.output_format()?.is_json() {
                return ctx.outln(&json!({ "added": id }).to_string());
            }
            ctx.outln(&format!("added key slot {id}"))
        }
        ["remove", id] => remove(ctx, state, id),
        ["passwd"] => passwd(ctx, state),
        [] => Err(Error::msg(
            "usage: obnam key list | add | remove ID | passwd (give one of them)",
        )),
        _ => Err(Error::msg(format!(
            "usage: obnam key list | add | remove ID | passwd (not 'key {}')",
            args.join(" ")
        ))),
    }
}

/// A key slot and who added it, as far as they can be read.
struct SlotView {
    slot: KeySlot,
    origin: Option<Origin>,
}

fn parsed_slots(repo: &Repository, keys: &Unlocked) -> Result<Vec<(String, Option<SlotView>)>> {
    Ok(repo
        .key_slots()?
        .into_iter()
        .map(|(id, text)| {
            let view = slots::parse(&text).ok().map(|slot| {
                let origin = slots::origin_of(&slot, &keys.master, &keys.repository_id, &id).ok();
                SlotView { slot, origin }
            });
            (id, view)
        })
        .collect())
}

fn list(ctx: &Context<'_>, state: &Shared) -> Result<()> {
    let (repo, keys) = unlocked(ctx, state)?;
    let slots = parsed_slots(&repo, keys)?;
    if ctx.output_format()?.is_json() {
        let out: Vec<_> = slots
            .iter()
            .map(|(id, slot)| slot_json(id, slot.as_ref(), keys))
            .collect();
        return ctx.outln(&serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    for (id, slot) in &slots {
        ctx.outln(&slot_line(id, slot.as_ref(), keys))?;
    }
    Ok(())
}

fn slot_json(id: &str, view: Option<&SlotView>, keys: &Unlocked) -> serde_json::Value {
    let opened = keys.opened_with.as_deref() == Some(id);
    match view {
        Some(v) => {
            let o = v.origin.clone().unwrap_or_default();
            // As every time in obnam's JSON: also in nanoseconds since 1970
            // (a slot records its time to the second).
            let created_ns = humantime::parse_rfc3339(&o.created)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_nanos()).ok());
            json!({
                "id": id, "kind": v.slot.kind, "label": o.label, "client": o.client,
                "host": o.host, "created": o.created, "created_ns": created_ns,
                "kdf": v.slot.kdf,
                "cipher": v.slot.cipher, "opened_with": opened,
            })
        }
        None => json!({"id": id, "kind": "damaged", "opened_with": opened}),
    }
}

fn slot_line(id: &str, view: Option<&SlotView>, keys: &Unlocked) -> String {
    let mark = if keys.opened_with.as_deref() == Some(id) {
        "*"
    } else {
        " "
    };
    match view {
        Some(SlotView {
            slot,
            origin: Some(o),
        }) => {
            // Shown as every command shows names: they are data in the
            // repository, and may hold a newline or an escape sequence.
            let shown = |text: &str| escape(text.as_bytes());
            let label = if o.label.is_empty() {
                String::new()
            } else {
                format!("  \"{}\"", shown(&o.label))
            };
            format!(
                "{mark} {id}  {:<10}  {}  added by {}@{}{label}",
                slot.kind,
                shown(&o.created),
                shown(&o.client),
                shown(&o.host)
            )
        }
        Some(SlotView { slot, origin: None }) => {
            format!(
                "{mark} {id}  {:<10}  (its details cannot be read)",
                slot.kind
            )
        }
        None => format!("{mark} {id}  damaged (cannot be read)"),
    }
}

/// The key slots of the repository, other than those in `except`, that
/// `secret` opens, cheapest first (as opening tries them: see
/// `open::unlock`). Each slot of the secret's kind costs its KDF.
fn slots_opened_by(
    repo: &Repository,
    keys: &Unlocked,
    secret: &slots::Secret,
    except: &[&str],
) -> Result<Vec<String>> {
    let mut candidates: Vec<(u64, String, KeySlot)> = repo
        .key_slots()?
        .into_iter()
        .filter(|(id, _)| !except.contains(&id.as_str()))
        .filter_map(|(id, text)| {
            let slot = slots::parse(&text).ok()?;
            Some((slots::cost(&slot), id, slot))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(candidates
        .into_iter()
        .filter(|(_, id, slot)| {
            matches!(
                slots::unwrap(slot, secret, &keys.repository_id, id),
                Ok(Some(_))
            )
        })
        .map(|(_, id, _)| id)
        .collect())
}

/// Add a slot for `secret`; returns its id.
fn add(
    ctx: &Context<'_>,
    repo: &Repository,
    keys: &Unlocked,
    secret: &slots::Secret,
) -> Result<String> {
    let cost = kdf_cost(ctx)?;
    let id = slots::new_slot_id().map_err(Error::msg)?;
    let slot = slots::wrap(
        &keys.master,
        secret,
        cost,
        keys.cipher,
        &keys.repository_id,
        &id,
        &origin(ctx)?,
    )
    .map_err(Error::msg)?;
    let text = serde_json::to_string_pretty(&slot).map_err(|e| Error::msg(e.to_string()))?;
    repo.put_key_slot(&id, &text)?;
    plugin_api::tracing::info!("added key slot {id} for {}", describe(secret));
    Ok(id)
}

/// Run `f` with the repository's exclusive lock held.
fn exclusively<T>(repo: &Repository, f: impl FnOnce() -> Result<T>) -> Result<T> {
    repo.lock_exclusive()?;
    let result = f();
    let unlocked = repo.unlock_exclusive();
    let value = result?;
    unlocked?;
    Ok(value)
}

/// Remove key slot `id`, with the exclusive lock held, unless no other
/// slot that can be read would be left. Counting slots is not enough: a
/// damaged slot, or one this obnam refuses to use, opens the repository
/// for nobody, so removing the last good slot next to it would lock
/// everyone out for good.
fn remove_keeping_one(
    repo: &Repository,
    keys: &Unlocked,
    id: &str,
    proven: Option<&str>,
) -> Result<()> {
    check_removable(repo, keys, id, proven)?;
    repo.remove_key_slot(id)
}

/// Why key slot `id` may not be removed (see [`remove_keeping_one`]):
/// another slot must be left that can be read, and `proven`, the slot a
/// secret of this run opens, must be another.
fn check_removable(
    repo: &Repository,
    keys: &Unlocked,
    id: &str,
    proven: Option<&str>,
) -> Result<()> {
    let slots = repo.key_slots()?;
    if !slots.iter().any(|(s, _)| s == id) {
        return Err(Error::msg(format!(
            "repository {} has no key slot {id} (see obnam key list)",
            keys.url
        )));
    }
    // The proven slot must still be there: another run (on another
    // machine) may have removed it since this one opened with it, and
    // two such removals left only a slot that nobody's secret opened.
    if let Some(p) = proven.filter(|p| *p != id) {
        if !slots.iter().any(|(s, _)| s == p) {
            return Err(Error::msg(format!(
                "refusing to remove key slot {id}: key slot {p}, which this run's secret \
                 opens, was removed by another run meanwhile; nothing was removed (see obnam \
                 key list)"
            )));
        }
    }
    if slots.len() == 1 {
        return Err(Error::msg(format!(
            "refusing to remove key slot {id}: it is the last one, and without it nobody \
             could open the repository"
        )));
    }
    let mut unusable = Vec::new();
    let mut readable = false;
    for (other, text) in slots.iter().filter(|(s, _)| s != id) {
        match slots::usable(text) {
            // A slot whose details do not open with this repository's key
            // was not made for it (copied from another repository, or
            // planted): it opens nothing here.
            Ok(slot) => match slots::origin_of(&slot, &keys.master, &keys.repository_id, other) {
                Ok(_) => {
                    readable = true;
                    break;
                }
                Err(_) => unusable.push(format!(
                    "{other}: it was not made with this repository's key"
                )),
            },
            Err(why) => unusable.push(format!("{other}: {why}")),
        }
    }
    if !readable {
        return Err(Error::msg(format!(
            "refusing to remove key slot {id}: no other key slot can be read ({}), and without \
             one nobody could open the repository; nothing was removed",
            unusable.join("; ")
        )));
    }
    // The slot that opened the repository in this run is the one slot
    // known to open it: another that reads well may still be damaged
    // where only its own secret shows it (its wrapped key, its salt, its
    // cost), and removing this one then locked everyone out. Removed by a
    // run that opened with another secret, it leaves that one, proven.
    if proven.is_none_or(|p| p == id) {
        return Err(Error::msg(format!(
            "refusing to remove key slot {id}: it opened the repository in this run, and \
             nothing shows that another slot still does (damage to a slot can show only to \
             its own secret); open the repository with the secret that is to open it from \
             now on, and remove this slot then; nothing was removed"
        )));
    }
    Ok(())
}

fn remove(ctx: &Context<'_>, state: &Shared, id: &str) -> Result<()> {
    let (repo, keys) = unlocked(ctx, state)?;
    if ctx.boolean("pretend")? {
        check_removable(&repo, keys, id, keys.opened_with.as_deref())?;
        if ctx.output_format()?.is_json() {
            return ctx.outln(&json!({ "removed": id, "pretend": true }).to_string());
        }
        return ctx.outln(&format!(
            "would remove key slot {id} (--pretend: nothing was changed)"
        ));
    }
    exclusively(&repo, || {
        remove_keeping_one(&repo, keys, id, keys.opened_with.as_deref())
    })?;
    if ctx.output_format()?.is_json() {
        ctx.outln(&json!({ "removed": id }).to_string())?;
    } else {
        ctx.outln(&format!("removed key slot {id}"))?;
    }
    Ok(())
}

fn passwd(ctx: &Context<'_>, state: &Shared) -> Result<()> {
    let (repo, keys) = unlocked(ctx, state)?;
    let old = keys.opened_with.clone().ok_or_else(|| {
        Error::msg("the repository was just created; there is no key slot to replace yet")
    })?;
    // Before any key file is made for it (one was made, "keep a copy of
    // it somewhere safe", and then refused), and when pretending too.
    let new_kind = if ctx.path("new-key-file")?.is_some() {
        "key-file"
    } else {
        "passphrase"
    };
    if new_kind != keys.secret.kind() {
        return Err(kinds_differ(keys.secret.kind(), new_kind));
    }
    if ctx.boolean("pretend")? {
        let source = crate::secrets::new_secret_source(ctx)?;
        if ctx.output_format()?.is_json() {
            return ctx
                .outln(&json!({ "removed": old, "added": null, "pretend": true }).to_string());
        }
        return ctx.outln(&format!(
            "would replace key slot {old} by one for {source} (--pretend: nothing was changed)"
        ));
    }
    let new = exclusively(&repo, || {
        // Removals take this lock too, so a slot still here stays until
        // this run removes it. One that is gone was removed by another run
        // (a `key passwd` opened with the same secret, say) after this one
        // was opened with it: that secret no longer opens the repository,
        // so it must not add a slot either.
        if !repo.key_slots()?.iter().any(|(s, _)| *s == old) {
            return Err(Error::msg(format!(
                "key slot {old}, which opened the repository in this run, was removed by \
                 another run meanwhile; nothing was changed (see obnam key list)"
            )));
        }
        // A slot the new secret opens already (left by a `key passwd`
        // stopped between its add and its removal, and now run again) is
        // kept, not doubled.
        let secret = crate::secrets::new_secret(ctx)?;
        // A key file's slot (what unattended backups open with) is not
        // turned into a passphrase's, nor the other way round, by a run
        // that merely opened the repository with it.
        if secret.kind() != keys.secret.kind() {
            return Err(kinds_differ(keys.secret.kind(), secret.kind()));
        }
        let new = match slots_opened_by(&repo, keys, &secret, &[&old])?.first() {
            Some(id) => id.clone(),
            None => add(ctx, &repo, keys, &secret)?,
        };
        // Every slot the old secret opens goes, not only the one that
        // opened the repository: a second one (the same passphrase added
        // twice, or the slot a stopped `key passwd` added before it is
        // run again with the old passphrase) kept the old secret working
        // after a change said to have replaced it.
        let mut also = slots_opened_by(&repo, keys, &keys.secret, &[&old, &new])?;
        also.retain(|id| *id != new);
        for id in std::iter::once(&old).chain(&also) {
            // The new slot is proven: this run made it of the new
            // secret, or found that secret opens it.
            remove_keeping_one(&repo, keys, id, Some(&new)).map_err(|e| {
                Error::msg(format!(
                    "key slot {new} opens with the new secret, but key slot {id} was not \
                     removed: {e}"
                ))
            })?;
        }
        Ok((new, also))
    })?;
    let (new, also) = new;
    if ctx.output_format()?.is_json() {
        return ctx
            .outln(&json!({ "removed": old, "added": new, "also_removed": also }).to_string());
    }
    ctx.outln(&format!("replaced key slot {old} by {new}"))?;
    for id in &also {
        ctx.outln(&format!(
            "removed key slot {id}, which the old secret opened as well"
        ))?;
    }
    Ok(())
}

/// Why `key passwd` does not replace a slot of kind `old` by one of `new`.
fn kinds_differ(old: &str, new: &str) -> Error {
    Error::msg(format!(
        "key passwd replaces the slot of the secret that opened the repository, a {old} \
         slot, by one of the same kind, but the new secret is a {new}; nothing was \
         changed (open it with the secret to replace, or use key add and key remove)"
    ))
}

fn client_keys(ctx: &Context<'_>, args: Vec<OsString>, state: &Shared) -> Result<()> {
    if !args.is_empty() {
        return Err(Error::msg("client-keys takes no arguments"));
    }
    let repo = ctx.repository(false)?;
    let clients = repo.clients()?;
    let keys = match state.get() {
        Some(RepoState::Sealed(u)) => Some(u),
        _ => None,
    };
    let slots = match keys {
        Some(k) => parsed_slots(&repo, k)?,
        None => Vec::new(),
    };
    if ctx.output_format()?.is_json() {
        let slot_list: Vec<_> = match keys {
            Some(k) => slots
                .iter()
                .map(|(id, s)| slot_json(id, s.as_ref(), k))
                .collect(),
            None => Vec::new(),
        };
        let out = json!({
            "encrypted": keys.is_some(),
            "clients": clients,
            "key_slots": slot_list,
        });
        return ctx.outln(&serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    let ids: Vec<&str> = slots.iter().map(|(id, _)| id.as_str()).collect();
    for client in &clients {
        let client = escape(client.as_bytes());
        if keys.is_some() {
            ctx.outln(&format!("{client}: {}", ids.join(" ")))?;
        } else {
            ctx.outln(&format!("{client}: (repository not encrypted)"))?;
        }
    }
    if let Some(keys) = keys {
        ctx.outln("")?;
        ctx.outln("key slots (each opens the repository for every client):")?;
        for (id, slot) in &slots {
            ctx.outln(&slot_line(id, slot.as_ref(), keys))?;
        }
    }
    Ok(())
}
