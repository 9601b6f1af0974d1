//! Which client and which generation a command works on.
//!
//! The client is the host's `client-name` setting. The generation is the
//! `--generation` setting: a generation id, or `latest` for the client's
//! newest generation. `latest` counts checkpoints too: a checkpoint is a
//! committed, restorable generation, and when the newest thing a client
//! has is a checkpoint of an interrupted backup, it is also the newest data
//! there is. (A backup that finishes removes its checkpoints, so normally
//! the newest generation is a complete one.) Name a generation id to choose
//! another.

use plugin_api::names::escape;
use plugin_api::{Context, GenerationInfo, Repository, Result};

/// The value of `--generation` that means the newest generation.
pub const LATEST: &str = "latest";

/// The client named by `--client-name`.
pub fn client(ctx: &Context<'_>) -> Result<String> {
    match ctx.string("client-name")? {
        Some(name) if !name.is_empty() => Ok(name),
        _ => plugin_api::bail!("a client name must not be empty: set --client-name"),
    }
}

/// Take a reader's lock on the client's generations, before any is
/// listed or opened: a prune's deletion then waits for this command to
/// end (a nightly `forget` and `prune` deleted the data of a generation
/// being restored under the restore). Where the lock cannot be written
/// (a store this user may only read), `command` goes on, saying what it
/// risks.
pub fn hold_for_reading(repo: &Repository, client: &str, command: &str) {
    if let Err(e) = repo.lock_for_reading(client) {
        plugin_api::tracing::warn!(
            "{command}: could not take a reader's lock ({e}): a prune that runs meanwhile may \
             delete what this {command} reads"
        );
    }
}

/// `failed`, or, if generation `id` of `client` is no longer in the
/// repository (forgotten, and its data deleted by a prune, while
/// `command` read it: where the reader's lock could not be written), an
/// error that says so: what could not be read was reported as missing
/// data, as if the repository were damaged (only `restore` said what
/// happened).
pub fn unless_removed_meanwhile<T>(
    repo: &Repository,
    client: &str,
    id: &str,
    command: &str,
    failed: Result<T>,
) -> Result<T> {
    let Err(e) = failed else {
        return failed;
    };
    match repo.generations(client) {
        Ok(gens) if !gens.iter().any(|g| g.id == id) => plugin_api::bail!(
            "generation {id} of client '{}' was removed while this {command} read it \
             (forgotten, and its data deleted by a prune): what it could not read is of that, \
             not damage; {command} another generation (the first failure: {e})",
            escape(client.as_bytes())
        ),
        _ => Err(e),
    }
}

/// The client's generations, oldest first; an error if there are none.
pub fn generations(repo: &Repository, client: &str) -> Result<Vec<GenerationInfo>> {
    let gens = repo.generations(client)?;
    if gens.is_empty() {
        // Every record damaged is not "no generations": said, with the
        // way out.
        let damaged = repo.damaged_generations(client)?;
        if let Some(d) = damaged.first() {
            let remedy = if damaged.iter().any(|d| d.repairable) {
                "'obnam repair-records' writes again those damaged by one byte of their \
                 filter header (the warnings say which), with that byte undone; put the \
                 others back from a copy of the repository, or remove them with 'obnam \
                 forget ID'"
            } else {
                "put them back from a copy of the repository, or remove them with 'obnam \
                 forget ID'"
            };
            plugin_api::bail!(
                "client '{}' has no readable generation in repository {}: the {} of its {} \
                 damaged ({}; the warnings name each): {remedy}",
                escape(client.as_bytes()),
                repo.url(),
                if damaged.len() == 1 {
                    "record"
                } else {
                    "records"
                },
                plugin_api::human::count(damaged.len() as u64, "generation is", "generations are"),
                d.problem
            );
        }
        plugin_api::bail!(
            "client '{}' has no generations in repository {}",
            escape(client.as_bytes()),
            repo.url()
        );
    }
    Ok(gens)
}

/// Fail if the client's newest generation may be one whose record is
/// damaged (left out of its generations): `latest` would then name an
/// older one without saying so. A named generation needs no such check.
pub fn newest_is_known(repo: &Repository, client: &str) -> Result<()> {
    if let Some(d) = repo.damaged_generations(client)?.first() {
        let remedy = if d.repairable {
            "write the damaged record again with 'obnam repair-records', which undoes its \
             one damaged byte"
                .to_string()
        } else {
            format!("remove the damaged record with 'obnam forget {}'", d.id)
        };
        plugin_api::bail!(
            "the record of generation {} of client '{}' is damaged, and it may be the \
             newest ({}): name the generation to use with --generation (see 'obnam \
             generations'), or {remedy}",
            d.id,
            escape(client.as_bytes()),
            d.problem,
        );
    }
    Ok(())
}

/// The generation `wanted` names among `gens` (oldest first).
pub fn choose<'a>(
    gens: &'a [GenerationInfo],
    wanted: &str,
    client: &str,
) -> Result<&'a GenerationInfo> {
    let found = if wanted == LATEST {
        gens.last()
    } else {
        gens.iter().find(|g| g.id == wanted)
    };
    match found {
        Some(g) => Ok(g),
        None if gens.is_empty() => {
            plugin_api::bail!("client '{}' has no generations", escape(client.as_bytes()))
        }
        None => plugin_api::bail!(
            "client '{}' has no generation '{}' (see 'obnam generations')",
            escape(client.as_bytes()),
            escape(wanted.as_bytes())
        ),
    }
}

/// The value of `--generation` if one was given.
pub fn given_generation(ctx: &Context<'_>) -> Result<Option<String>> {
    Ok(ctx
        .string("generation")?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// The generation chosen by `--generation` for the current client.
pub fn generation(ctx: &Context<'_>, repo: &Repository, client: &str) -> Result<GenerationInfo> {
    let wanted = ctx
        .string("generation")?
        .unwrap_or_else(|| LATEST.to_string());
    let gens = generations(repo, client)?;
    if wanted.trim() == LATEST {
        newest_is_known(repo, client)?;
    }
    choose(&gens, wanted.trim(), client).cloned().map_err(|e| {
        match owner_of(repo, client, wanted.trim()) {
            Some(other) => plugin_api::Error::msg(format!(
                "{e}; it is a generation of client '{}': give --client-name {}",
                escape(other.as_bytes()),
                escape(other.as_bytes())
            )),
            None => e,
        }
    })
}

/// The other client that has generation `id`, if one has: ids are unique
/// in a repository, so a user who gives one of another client's means
/// that client (looked up only on the way to an error).
fn owner_of(repo: &Repository, client: &str, id: &str) -> Option<String> {
    if id == LATEST {
        return None;
    }
    repo.clients().ok()?.into_iter().find(|other| {
        other != client
            && repo
                .generations(other)
                .is_ok_and(|gens| gens.iter().any(|g| g.id == id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(id: &str, checkpoint: bool) -> GenerationInfo {
        GenerationInfo {
            id: id.into(),
            client: "c".into(),
            started_ns: 0,
            ended_ns: 0,
            file_count: 0,
            data_size: 0,
            is_checkpoint: checkpoint,
        }
    }

    #[test]
    fn latest_is_the_newest_checkpoints_included() {
        let gens = [gen("a", false), gen("b", true)];
        assert_eq!(choose(&gens, LATEST, "c").unwrap().id, "b");
    }

    #[test]
    fn ids_are_looked_up() {
        let gens = [gen("a", false), gen("b", false)];
        assert_eq!(choose(&gens, "a", "c").unwrap().id, "a");
        let err = choose(&gens, "zz", "c").unwrap_err();
        assert!(err.message().contains("no generation 'zz'"), "{err}");
        assert!(choose(&[], LATEST, "c").is_err());
    }
}
