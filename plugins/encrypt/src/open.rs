//! The `repository-open` callback: create the keys of a new encrypted
//! repository, or unlock an existing one.

use plugin_api::serde_json::{self, json, Value};
use plugin_api::{Context, Error, Result};

use crate::cipher::Cipher;
use crate::secrets;
use crate::slots::{self, KdfCost, MasterKey, Origin, Secret};
use crate::{RepoState, Shared, Unlocked, AUTO_CIPHER, FILTER_TAG};

/// Argon2id costs for new passphrase slots, from the settings.
pub fn kdf_cost(ctx: &Context<'_>) -> Result<KdfCost> {
    let memory = ctx.bytesize("kdf-memory")?;
    let iterations = ctx.integer("kdf-iterations")?;
    // No more than a key slot may demand when it is read.
    // The host's ranges refuse these first; kept for what a slot may
    // demand when it is read, whatever a setting's range says.
    let memory_kib = u32::try_from(memory / 1024)
        .ok()
        .filter(|kib| (64..=slots::MAX_KDF_MEMORY_KIB).contains(kib))
        .ok_or_else(|| {
            ctx.setting_error(
                "kdf-memory",
                &format!("'{memory}' is out of range: give 64KiB to 4GiB"),
            )
        })?;
    let iterations = u32::try_from(iterations)
        .ok()
        .filter(|n| (1..=slots::MAX_KDF_ITERATIONS).contains(n))
        .ok_or_else(|| {
            ctx.setting_error(
                "kdf-iterations",
                &format!(
                    "'{iterations}' is out of range: give 1 to {}",
                    slots::MAX_KDF_ITERATIONS
                ),
            )
        })?;
    Ok(KdfCost {
        memory_kib,
        iterations,
    })
}

/// Who adds a key slot.
pub fn origin(ctx: &Context<'_>) -> Result<Origin> {
    Ok(Origin {
        label: ctx.string("key-label")?.unwrap_or_default(),
        client: ctx.string("client-name")?.unwrap_or_default(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        created: String::new(),
    })
}

/// What a secret is, for messages.
pub fn describe(secret: &Secret) -> String {
    match secret {
        Secret::Passphrase(_, source) => format!("the passphrase from {source}"),
        Secret::KeyFile(_, path) => format!("the key file {path}"),
    }
}

fn text(payload: &Value, name: &str) -> Result<String> {
    payload
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::msg(format!("hook repository-open: no '{name}' in the payload")))
}

/// No core file from here on: a crash after a secret was read wrote the
/// passphrase and the master key into `./core`. Only the soft limit is
/// lowered (whoever wants a core file may raise it back).
fn no_core_files() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Core);
    if limit.current != Some(0) {
        let _ = setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: limit.maximum,
            },
        );
    }
}

/// Handle the `repository-open` hook.
pub fn on_open(ctx: &Context<'_>, payload: &mut Value, state: &Shared) -> Result<()> {
    let url = text(payload, "url")?;
    let repository_id = text(payload, "repository_id")?;
    let creating = payload.get("creating").and_then(Value::as_bool) == Some(true);
    let encrypt = ctx.boolean("encrypt")?;
    let seal = payload.get("seal").cloned().unwrap_or(Value::Null);
    let ours = seal.get("filter").and_then(Value::as_str) == Some(FILTER_TAG);

    let pretending = payload.get("pretending").and_then(Value::as_bool) == Some(true);
    if creating && pretending {
        // A dry run of the creation: what would stop it, nothing made.
        if encrypt {
            check_creation(ctx, &url)?;
        }
        return Ok(());
    }
    let unlocked = if creating {
        if !encrypt {
            let given = secrets_given(ctx, true)?;
            if !given.is_empty() {
                plugin_api::tracing::warn!(
                    "repository {url} was created without encryption: {} {} ignored (only \
                     --encrypt makes an encrypted repository)",
                    given.join(", "),
                    if given.len() == 1 { "was" } else { "were" }
                );
            }
            let _ = state.set(RepoState::Plain);
            return Ok(());
        }
        no_core_files();
        create(ctx, payload, url, repository_id)?
    } else if seal.is_null() {
        if encrypt {
            return Err(Error::msg(format!(
                "repository {url} is not encrypted; --encrypt applies only when a repository \
                 is created (back up into a new repository to have it encrypted)"
            )));
        }
        // Not the environment variable: it may well be set for all runs,
        // whatever the repository.
        let given = secrets_given(ctx, false)?;
        if !given.is_empty() {
            plugin_api::tracing::warn!(
                "repository {url} is not encrypted: {} {} ignored",
                given.join(", "),
                if given.len() == 1 { "was" } else { "were" }
            );
        }
        let _ = state.set(RepoState::Plain);
        return Ok(());
    } else if !ours {
        // Sealed by another plugin's filter: ours stays out of the way.
        let _ = state.set(RepoState::Plain);
        return Ok(());
    } else {
        no_core_files();
        unlock(ctx, payload, &seal, url, repository_id)?
    };
    payload["token_key"] = Value::String(hex::encode(unlocked.master.token_key()));
    let _ = state.set(RepoState::Sealed(unlocked));
    Ok(())
}

/// The secrets given to a run, as the user named them: for a repository
/// that is not encrypted they are not used, and saying so catches a
/// forgotten `--encrypt` (a key file named for a new repository is not
/// made either).
fn secrets_given(ctx: &Context<'_>, with_environment: bool) -> Result<Vec<String>> {
    let mut given = Vec::new();
    if let Some(path) = ctx.string("key-file")? {
        given.push(format!("--key-file {path}"));
    }
    if let Some(path) = ctx.string("passphrase-file")? {
        given.push(format!("--passphrase-file {path}"));
    }
    if with_environment && std::env::var_os(secrets::PASSPHRASE_VAR).is_some() {
        given.push(secrets::PASSPHRASE_VAR.to_string());
    }
    Ok(given)
}

/// What would stop [`create`], found without making a key file or asking
/// on the terminal: a cipher or KDF cost that is no such thing, or no
/// secret given (a passphrase file that is missing or empty is read).
fn check_creation(ctx: &Context<'_>, url: &str) -> Result<()> {
    cipher(ctx)?;
    kdf_cost(ctx)?;
    secrets::new_repository_secret_source(ctx, url).map(|_| ())
}

/// The cipher `--cipher` names, for this processor if `auto`.
fn cipher(ctx: &Context<'_>) -> Result<Cipher> {
    let name = ctx.string("cipher")?.unwrap_or_default();
    match name.as_str() {
        AUTO_CIPHER => Some(Cipher::for_this_processor()),
        name => Cipher::from_name(name),
    }
    .ok_or_else(|| {
        ctx.setting_error(
            "cipher",
            &format!("'{name}' is not one of: {AUTO_CIPHER}, {}", Cipher::NAMES),
        )
    })
}

fn create(
    ctx: &Context<'_>,
    payload: &mut Value,
    url: String,
    repository_id: String,
) -> Result<Unlocked> {
    let cipher = cipher(ctx)?;
    let cost = kdf_cost(ctx)?;
    let secret = secrets::for_new_repository(ctx, &url)?;
    let master = MasterKey::generate().map_err(Error::msg)?;
    let slot_id = slots::new_slot_id().map_err(Error::msg)?;
    let slot = slots::wrap(
        &master,
        &secret,
        cost,
        cipher,
        &repository_id,
        &slot_id,
        &origin(ctx)?,
    )
    .map_err(Error::msg)?;
    let slot_text = serde_json::to_string_pretty(&slot).map_err(|e| Error::msg(e.to_string()))?;
    payload["seal"] = json!({"filter": FILTER_TAG, "cipher": cipher.name()});
    payload["new_key_slots"] = json!({ slot_id.clone(): slot_text });
    plugin_api::tracing::info!(
        "encrypting new repository {url} with {}; first key slot {slot_id} ({})",
        cipher.name(),
        slot.kind
    );
    Ok(Unlocked {
        url,
        repository_id,
        cipher,
        master,
        opened_with: None,
        secret,
    })
}

fn unlock(
    ctx: &Context<'_>,
    payload: &Value,
    seal: &Value,
    url: String,
    repository_id: String,
) -> Result<Unlocked> {
    let name = seal.get("cipher").and_then(Value::as_str).unwrap_or("");
    let cipher = Cipher::from_name(name).ok_or_else(|| {
        Error::msg(format!(
            "repository {url} is encrypted with cipher '{name}', which this obnam does not know"
        ))
    })?;
    // The recorded cipher is the one used; a different one named (on the
    // command line or in a config file) was meant for something else.
    if let Some(given) = ctx.string("cipher")? {
        if given != AUTO_CIPHER && given != cipher.name() {
            plugin_api::tracing::warn!(
                "repository {url} is encrypted with {}; --cipher {given} applies only to a new \
                 repository and was ignored",
                cipher.name()
            );
        }
    }
    let slots: Vec<(String, String)> = payload
        .get("key_slots")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(id, t)| Some((id.clone(), t.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if slots.is_empty() {
        return Err(Error::msg(format!(
            "repository {url} is encrypted but has no key slots; nobody can open it"
        )));
    }
    let secret = secrets::opening(ctx, &url)?;
    // Cheapest first: anyone who can write to `keys/` can add slots that
    // each cost the most a KDF may (4 GiB, 64 passes: minutes). Tried in
    // id order, a few of those ahead of the owner's slot made every open
    // take that long; tried by cost, they come after every slot of the
    // usual costs, and cheap ones cost little however many there are.
    let mut parsed = Vec::with_capacity(slots.len());
    for (id, text) in &slots {
        match slots::parse(text) {
            Ok(slot) => parsed.push((slots::cost(&slot), id, slot)),
            Err(e) => {
                plugin_api::tracing::warn!(
                    "key slot {id} of {url} is damaged and was skipped: {e}"
                );
            }
        }
    }
    parsed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let unreadable = slots.len() - parsed.len();
    let of_its_kind = parsed
        .iter()
        .filter(|(_, _, slot)| slot.kind == secret.kind())
        .count();
    let other_kinds = parsed.len() - of_its_kind;
    let mut damaged = 0;
    let mut unaffordable = 0;
    for (_, id, slot) in &parsed {
        plugin_api::tracing::debug!("trying key slot {id} of {url}");
        match slots::unwrap(slot, &secret, &repository_id, id) {
            Ok(Some(master)) => {
                // Every slot is made with the repository's cipher, and the
                // slot's is authentic (the key unwrapped with it). The
                // config is not sealed: one naming another cipher was
                // changed, and a run with it wrote what neither cipher
                // reads back (and took every sound record for damaged).
                if Cipher::from_name(&slot.cipher) != Some(cipher) {
                    return Err(Error::msg(format!(
                        "repository {url}'s config names cipher {}, but its key slot {id} (which \
                         the secret opens) was made with {}, as every slot is made with the \
                         repository's cipher: the config was changed; nothing was done (put \
                         back cipher {} in its config)",
                        cipher.name(),
                        slot.cipher,
                        slot.cipher
                    )));
                }
                plugin_api::tracing::debug!("opened {url} with key slot {id}");
                // Slots not made with this repository's key open nothing
                // here, and each costs a key derivation to every run that
                // tries it (forty copies made an open take seconds).
                let foreign: Vec<&str> = parsed
                    .iter()
                    .filter(|(_, other, s)| {
                        slots::origin_of(s, &master, &repository_id, other).is_err()
                    })
                    .map(|(_, other, _)| other.as_str())
                    .collect();
                if !foreign.is_empty() {
                    plugin_api::tracing::warn!(
                        "key slot(s) {} of {url} were not made with this repository's key \
                         (copied from another repository, or put there): they open nothing \
                         here and cost every run that tries them a key derivation; obnam key \
                         remove ID removes one",
                        foreign.join(", ")
                    );
                }
                return Ok(Unlocked {
                    url,
                    repository_id,
                    cipher,
                    master,
                    opened_with: Some((*id).clone()),
                    secret,
                });
            }
            Ok(None) => {}
            // Sound, perhaps, but more than this process may have: not
            // called damaged (a slot made on a bigger machine).
            Err(e) if e.contains(slots::UNAFFORDABLE) => {
                unaffordable += 1;
                plugin_api::tracing::warn!("key slot {id} of {url} was skipped: {e}")
            }
            Err(e) => {
                damaged += 1;
                plugin_api::tracing::warn!("key slot {id} of {url} is damaged and was skipped: {e}")
            }
        }
    }
    // Said of the slots it could have opened: a damaged slot, or one of
    // another kind (a key file's, for a passphrase), is no sign of a
    // wrong passphrase.
    let kind = secret.kind();
    let mut also = Vec::new();
    if unreadable + damaged > 0 {
        also.push(format!(
            "{} damaged (see the warnings)",
            unreadable + damaged
        ));
    }
    if unaffordable > 0 {
        also.push(format!(
            "{unaffordable} needing more memory than this process may have (see the warnings)"
        ));
    }
    if other_kinds > 0 {
        also.push(format!("{other_kinds} of another kind than {kind}"));
    }
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(" ({} slot(s) in all: {})", slots.len(), also.join(", "))
    };
    let tried = of_its_kind - damaged - unaffordable;
    // No slot of that kind at all, and some of the other: the other kind
    // of secret opens it, nothing was changed.
    if of_its_kind == 0 && other_kinds > 0 {
        let (other, how) = match kind {
            "passphrase" => ("key-file", "give its key file with --key-file"),
            // --key-file comes first: a passphrase given beside it is
            // not used.
            _ => (
                "passphrase",
                "give its passphrase without --key-file (in OBNAM_PASSPHRASE, with \
                 --passphrase-file or on a terminal)",
            ),
        };
        return Err(Error::msg(format!(
            "cannot open repository {url} with {}: it has no {kind} slot, only {other_kinds} \
             {other} slot(s): {how}",
            describe(&secret),
        )));
    }
    Err(Error::msg(format!(
        "cannot open repository {url}: {} does not open any of its {tried} {kind} \
         slot(s){also}; if it is the right {kind}, the repository's config or key slots were \
         changed since they were made (each slot is sealed to the config's id)",
        describe(&secret),
    )))
}
