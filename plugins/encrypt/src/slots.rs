//! Key slots: the repository's master key, wrapped by a passphrase or by a
//! key file.
//!
//! The master key is 64 random bytes made when the repository is created:
//! the first half encrypts objects, the second keys the chunk tokens. It is
//! never stored as it is. Each key slot (a JSON text under `keys/` in the
//! repository) holds it encrypted under a key-encryption key derived from
//! one secret:
//!
//! * a passphrase, through Argon2id with the parameters and salt recorded
//!   in the slot (so they can be raised for new slots without breaking
//!   old ones);
//! * a key file of at least 32 bytes of secret, through HKDF-SHA-256 with
//!   a recorded salt (the file is already high in entropy). The file's
//!   line ending is not part of its secret ([`key_file_forms`]).
//!
//! The wrapping is authenticated, and its associated data binds the
//! repository id and the slot id: a slot copied from another repository,
//! or edited, does not open.

use plugin_api::serde_json;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::cipher::Cipher;

/// Bytes of the master key.
pub const MASTER_LEN: usize = 64;

/// The master key: object key and token key.
pub struct MasterKey(pub Zeroizing<[u8; MASTER_LEN]>);

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<MasterKey, String> {
        let mut key = Zeroizing::new([0u8; MASTER_LEN]);
        getrandom::fill(key.as_mut()).map_err(|e| format!("no random numbers: {e}"))?;
        Ok(MasterKey(key))
    }

    /// The key that encrypts objects.
    pub fn object_key(&self) -> [u8; 32] {
        self.0[..32].try_into().unwrap_or([0; 32])
    }

    /// The key of the chunk tokens (HMAC-SHA-256).
    pub fn token_key(&self) -> [u8; 32] {
        self.0[32..].try_into().unwrap_or([0; 32])
    }
}

/// What unlocks a slot.
pub enum Secret {
    /// A passphrase (its bytes), and where it came from for messages.
    Passphrase(Zeroizing<Vec<u8>>, String),
    /// The contents of a key file, and the file's name for messages.
    KeyFile(Zeroizing<Vec<u8>>, String),
}

impl Secret {
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Passphrase(..) => "passphrase",
            Secret::KeyFile(..) => "key-file",
        }
    }
}

/// The most Argon2id memory a key slot may demand: 4 GiB, twice the
/// largest that RFC 9106 recommends (2 GiB with one pass). Obnam writes
/// 64 MiB unless `--kdf-memory` says otherwise, and that setting accepts
/// no more than this. A slot that demands more is refused when it is read
/// (opening skips it with a warning) rather than making every attempt to
/// open the repository allocate terabytes.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;

/// The most Argon2id passes a key slot may demand. Obnam writes 3 unless
/// `--kdf-iterations` says otherwise (recommendations range from 1 to
/// about 10); a slot must not be able to make opening run for days.
pub const MAX_KDF_ITERATIONS: u32 = 64;

/// The most Argon2id lanes a key slot may name. Obnam writes 1.
pub const MAX_KDF_PARALLELISM: u32 = 16;

/// The longest salt, in bytes, of either KDF. Obnam writes 16.
pub const MAX_SALT_LEN: usize = 64;

/// The length of a wrapped master key: a cipher id, a nonce of at most 24
/// bytes, the key and a 16-byte tag.
const MAX_WRAPPED_LEN: usize = 1 + 24 + MASTER_LEN + 16;

/// The longest encrypted [`Origin`] (`info`): its label, client and host
/// name together.
pub const MAX_INFO_LEN: usize = 64 << 10;

/// The longest text of a key slot, like any small record of the format.
pub const MAX_SLOT_TEXT_LEN: usize = plugin_api::limits::MAX_RECORD_LEN;

/// Argon2id costs for new passphrase slots.
#[derive(Clone, Copy, Debug)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

/// How a slot's key-encryption key is derived.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "name")]
pub enum Kdf {
    #[serde(rename = "argon2id")]
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        salt: String,
    },
    #[serde(rename = "hkdf-sha256")]
    HkdfSha256 { salt: String },
}

/// A key slot as stored. Only what unlocking needs is in the clear; who
/// added the slot, when, and its label are encrypted with the master key
/// (`info`), so that the slot gives away no client or host name.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct KeySlot {
    /// Format of this text.
    pub obnam_key_slot: u32,
    /// `passphrase` or `key-file`.
    pub kind: String,
    pub kdf: Kdf,
    /// The cipher that wraps the master key and the info.
    pub cipher: String,
    /// The wrapped master key, hex.
    pub wrapped: String,
    /// The encrypted [`Origin`], hex.
    pub info: String,
}

/// Who added a slot and when, for `key list` and `client-keys`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// Free text given when the slot was added.
    pub label: String,
    /// The client and host that added the slot.
    pub client: String,
    pub host: String,
    /// When the slot was added (RFC 3339).
    #[serde(default)]
    pub created: String,
}

fn info_associated_data(repository_id: &str, slot_id: &str) -> Vec<u8> {
    format!("obnam key slot info\0{repository_id}\0{slot_id}").into_bytes()
}

/// Read the [`Origin`] of a slot with the unlocked master key.
pub fn origin_of(
    slot: &KeySlot,
    master: &MasterKey,
    repository_id: &str,
    slot_id: &str,
) -> Result<Origin, String> {
    let cipher = Cipher::from_name(&slot.cipher)
        .ok_or_else(|| format!("it names an unknown cipher '{}'", slot.cipher))?;
    let blob = bounded_hex("info", &slot.info, MAX_INFO_LEN)?;
    let plain = cipher
        .open(
            &master.object_key(),
            &info_associated_data(repository_id, slot_id),
            &blob,
        )
        .map_err(|e| format!("its info: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("its info: {e}"))
}

fn associated_data(repository_id: &str, slot_id: &str) -> Vec<u8> {
    format!("obnam key slot\0{repository_id}\0{slot_id}").into_bytes()
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("no random numbers: {e}"))?;
    Ok(hex::encode(buf))
}

/// A new slot id: 16 random hex digits.
pub fn new_slot_id() -> Result<String, String> {
    random_hex(8)
}

/// Check that `hex` is at most `max` bytes once decoded, and decode it.
fn bounded_hex(what: &str, hex: &str, max: usize) -> Result<Vec<u8>, String> {
    if hex.len() > 2 * max {
        return Err(format!(
            "its {what} is {} hex digits long, more than the {} it may be",
            hex.len(),
            2 * max
        ));
    }
    hex::decode(hex).map_err(|_| format!("its {what} is not hex"))
}

/// Check that a slot's KDF asks for no more than the bounds above, so
/// that opening never allocates or computes without limit for a damaged or
/// hostile slot.
pub fn check_kdf(kdf: &Kdf) -> Result<(), String> {
    let salt = match kdf {
        Kdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            salt,
        } => {
            if *memory_kib > MAX_KDF_MEMORY_KIB {
                return Err(format!(
                    "its Argon2id memory cost of {memory_kib} KiB is more than the limit of \
                     {MAX_KDF_MEMORY_KIB} KiB (4 GiB)"
                ));
            }
            if *iterations > MAX_KDF_ITERATIONS {
                return Err(format!(
                    "its Argon2id time cost of {iterations} iterations is more than the limit \
                     of {MAX_KDF_ITERATIONS}"
                ));
            }
            if *parallelism > MAX_KDF_PARALLELISM {
                return Err(format!(
                    "its Argon2id parallelism of {parallelism} is more than the limit of \
                     {MAX_KDF_PARALLELISM}"
                ));
            }
            argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| format!("its Argon2id parameters are invalid: {e}"))?;
            salt
        }
        Kdf::HkdfSha256 { salt } => salt,
    };
    bounded_hex("salt", salt, MAX_SALT_LEN).map(drop)
}

/// How a slot that needs more memory than the process may have is told
/// apart from a damaged one.
pub const UNAFFORDABLE: &str = "which this process cannot have";

fn derive(kdf: &Kdf, secret: &Secret) -> Result<Zeroizing<[u8; 32]>, String> {
    check_kdf(kdf)?;
    let mut kek = Zeroizing::new([0u8; 32]);
    match (kdf, secret) {
        (
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            },
            Secret::Passphrase(pass, _),
        ) => {
            let salt = bounded_hex("salt", salt, MAX_SALT_LEN)?;
            let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| format!("its Argon2id parameters are invalid: {e}"))?;
            // Its memory in huge pages: 64 MiB in 4 KiB pages cost a third
            // of the time that unlocking takes.
            // Chosen by whoever wrote the slot, within the bounds: memory
            // this process cannot have fails this slot, not the process.
            let memory = plugin_api::allocator::try_huge_page_vec(
                params.block_count(),
                argon2::Block::default(),
            )
            .ok_or_else(|| {
                format!(
                    "its key derivation needs {} MiB of memory, {UNAFFORDABLE}",
                    memory_kib / 1024
                )
            })?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into_with_memory(pass, &salt, kek.as_mut(), memory)
                .map_err(|e| format!("Argon2id failed: {e}"))?;
        }
        (Kdf::HkdfSha256 { salt }, Secret::KeyFile(contents, _)) => {
            let salt = bounded_hex("salt", salt, MAX_SALT_LEN)?;
            hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), contents)
                .expand(b"obnam key file", kek.as_mut())
                .map_err(|_| "HKDF failed".to_string())?;
        }
        _ => return Err("it is not of this kind".into()),
    }
    Ok(kek)
}

/// Make a slot that wraps `master` with `secret`.
pub fn wrap(
    master: &MasterKey,
    secret: &Secret,
    cost: KdfCost,
    cipher: Cipher,
    repository_id: &str,
    slot_id: &str,
    origin: &Origin,
) -> Result<KeySlot, String> {
    let kdf = match secret {
        Secret::Passphrase(..) => Kdf::Argon2id {
            memory_kib: cost.memory_kib,
            iterations: cost.iterations,
            parallelism: 1,
            salt: random_hex(16)?,
        },
        Secret::KeyFile(..) => Kdf::HkdfSha256 {
            salt: random_hex(16)?,
        },
    };
    let kek = match secret {
        Secret::KeyFile(contents, path) => {
            let canonical = key_file_forms(contents).swap_remove(0);
            derive(&kdf, &Secret::KeyFile(canonical, path.clone()))?
        }
        Secret::Passphrase(..) => derive(&kdf, secret)?,
    };
    let wrapped = cipher.seal(
        &kek,
        &associated_data(repository_id, slot_id),
        master.0.as_ref(),
    )?;
    let mut origin = origin.clone();
    // humantime panics on a time before 1970 (a clock set wrong).
    let now = std::time::SystemTime::now().max(std::time::UNIX_EPOCH);
    origin.created = humantime::format_rfc3339_seconds(now).to_string();
    let info = serde_json::to_vec(&origin).map_err(|e| e.to_string())?;
    let info = cipher.seal(
        &master.object_key(),
        &info_associated_data(repository_id, slot_id),
        &info,
    )?;
    if info.len() > MAX_INFO_LEN {
        return Err(format!(
            "the key label, client name and host name are too long together: encrypted they \
             take {} bytes, more than the {MAX_INFO_LEN} a key slot keeps",
            info.len()
        ));
    }
    Ok(KeySlot {
        obnam_key_slot: 1,
        kind: secret.kind().into(),
        kdf,
        cipher: cipher.name().into(),
        wrapped: hex::encode(wrapped),
        info: hex::encode(info),
    })
}

/// Parse a slot's text, and check that it asks for nothing beyond the
/// bounds above: a slot that does is refused here, before any of it is
/// used.
pub fn parse(text: &str) -> Result<KeySlot, String> {
    if text.len() > MAX_SLOT_TEXT_LEN {
        return Err(format!(
            "it is {} bytes long, more than the limit of {MAX_SLOT_TEXT_LEN} for a key slot",
            text.len()
        ));
    }
    let slot: KeySlot =
        serde_json::from_str(text).map_err(|e| format!("it is not a key slot: {e}"))?;
    if slot.obnam_key_slot != 1 {
        return Err(format!(
            "it has key slot format {}, which this obnam does not know",
            slot.obnam_key_slot
        ));
    }
    check_kdf(&slot.kdf)?;
    bounded_hex("key", &slot.wrapped, MAX_WRAPPED_LEN)?;
    bounded_hex("info", &slot.info, MAX_INFO_LEN)?;
    Ok(slot)
}

/// What trying a slot costs, in KiB of memory times passes of its KDF (a
/// key file's HKDF counts as nothing): the order in which slots are tried.
pub fn cost(slot: &KeySlot) -> u64 {
    match &slot.kdf {
        Kdf::Argon2id {
            memory_kib,
            iterations,
            ..
        } => u64::from(*memory_kib) * u64::from(*iterations),
        Kdf::HkdfSha256 { .. } => 0,
    }
}

/// Try to unwrap the master key from a slot with `secret`. `Ok(None)`:
/// the secret does not open this slot.
pub fn unwrap(
    slot: &KeySlot,
    secret: &Secret,
    repository_id: &str,
    slot_id: &str,
) -> Result<Option<MasterKey>, String> {
    if slot.kind != secret.kind() {
        return Ok(None);
    }
    let cipher = Cipher::from_name(&slot.cipher)
        .ok_or_else(|| format!("it names an unknown cipher '{}'", slot.cipher))?;
    let open_with = |secret: &Secret| -> Result<Option<MasterKey>, String> {
        let kek = derive(&slot.kdf, secret)?;
        let wrapped = bounded_hex("key", &slot.wrapped, MAX_WRAPPED_LEN)?;
        match cipher.open(&kek, &associated_data(repository_id, slot_id), &wrapped) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                let key: [u8; MASTER_LEN] = plain
                    .as_slice()
                    .try_into()
                    .map_err(|_| "its key has the wrong length".to_string())?;
                Ok(Some(MasterKey(Zeroizing::new(key))))
            }
            Err(_) => Ok(None),
        }
    };
    match secret {
        Secret::Passphrase(..) => open_with(secret),
        Secret::KeyFile(contents, path) => {
            // HKDF is cheap: each form costs microseconds.
            for form in key_file_forms(contents) {
                if let Some(master) = open_with(&Secret::KeyFile(form, path.clone()))? {
                    return Ok(Some(master));
                }
            }
            Ok(None)
        }
    }
}

/// The forms of a key file's contents that may have made a slot, the
/// canonical one first. A key file's line ending is not part of its
/// secret: a key file opens the repository whether its final newline was
/// lost, doubled or turned into CRLF on the way (copied by hand, through
/// an editor, a password manager or another system). New slots are made
/// from the canonical form, the contents without trailing CR and LF bytes
/// and with one LF: what the key files that obnam makes hold (64 hex
/// digits and a newline), so their slots did not change. Slots made from
/// other files before were made from the contents exactly as read, which
/// is tried too, and so are the forms without a line ending and with
/// CRLF.
pub fn key_file_forms(contents: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let end = contents
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    let bare = &contents[..end];
    let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(4);
    for form in [
        [bare, b"\n"].concat(),
        contents.to_vec(),
        bare.to_vec(),
        [bare, b"\r\n"].concat(),
    ] {
        let form = Zeroizing::new(form);
        if !forms.iter().any(|f| f.as_slice() == form.as_slice()) {
            forms.push(form);
        }
    }
    forms
}

/// Parse a slot's text and check that this obnam could open it with the
/// right secret: within the bounds ([`parse`]), of a kind that goes with
/// its KDF, with a cipher this obnam knows. A slot that is not is no way
/// into the repository, whatever the secret: a removal must leave one
/// that is.
pub fn usable(text: &str) -> Result<KeySlot, String> {
    let slot = parse(text)?;
    match (slot.kind.as_str(), &slot.kdf) {
        ("passphrase", Kdf::Argon2id { .. }) | ("key-file", Kdf::HkdfSha256 { .. }) => {}
        (kind, _) => return Err(format!("its kind '{kind}' does not go with its KDF")),
    }
    Cipher::from_name(&slot.cipher)
        .ok_or_else(|| format!("it names an unknown cipher '{}'", slot.cipher))?;
    Ok(slot)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CHEAP: KdfCost = KdfCost {
        memory_kib: 64,
        iterations: 1,
    };

    fn origin() -> Origin {
        Origin {
            label: "laptop".into(),
            client: "c".into(),
            host: "h".into(),
            created: String::new(),
        }
    }

    pub(crate) fn pass(p: &str) -> Secret {
        Secret::Passphrase(Zeroizing::new(p.as_bytes().to_vec()), "a test".into())
    }

    #[test]
    fn a_slot_opens_only_with_its_secret_repository_and_id() {
        let master = MasterKey::generate().unwrap();
        let slot = wrap(
            &master,
            &pass("correct horse"),
            CHEAP,
            Cipher::XChaCha20Poly1305,
            "repo1",
            "s1",
            &origin(),
        )
        .unwrap();
        let text = serde_json::to_string(&slot).unwrap();
        assert!(!text.contains(&hex::encode(master.0.as_ref())));
        assert!(!text.contains("laptop"), "the origin is encrypted: {text}");
        let slot = parse(&text).unwrap();
        let opened = unwrap(&slot, &pass("correct horse"), "repo1", "s1")
            .unwrap()
            .unwrap();
        assert_eq!(opened.0.as_ref(), master.0.as_ref());
        let origin = origin_of(&slot, &opened, "repo1", "s1").unwrap();
        assert_eq!(origin.label, "laptop");
        assert!(origin.created.starts_with("20"));
        assert!(origin_of(&slot, &opened, "repo1", "s2").is_err());
        assert!(unwrap(&slot, &pass("wrong"), "repo1", "s1")
            .unwrap()
            .is_none());
        assert!(unwrap(&slot, &pass("correct horse"), "repo2", "s1")
            .unwrap()
            .is_none());
        assert!(unwrap(&slot, &pass("correct horse"), "repo1", "s2")
            .unwrap()
            .is_none());
        // A key file does not open a passphrase slot.
        let file = Secret::KeyFile(Zeroizing::new(b"correct horse".to_vec()), "f".into());
        assert!(unwrap(&slot, &file, "repo1", "s1").unwrap().is_none());
    }

    #[test]
    fn key_file_slots_round_trip() {
        let master = MasterKey::generate().unwrap();
        let file = Secret::KeyFile(Zeroizing::new(vec![9u8; 32]), "f".into());
        let slot = wrap(
            &master,
            &file,
            CHEAP,
            Cipher::Aes256Gcm,
            "r",
            "s",
            &origin(),
        )
        .unwrap();
        assert_eq!(slot.kind, "key-file");
        let opened = unwrap(&slot, &file, "r", "s").unwrap().unwrap();
        assert_eq!(opened.token_key(), master.token_key());
        let other = Secret::KeyFile(Zeroizing::new(vec![8u8; 32]), "g".into());
        assert!(unwrap(&slot, &other, "r", "s").unwrap().is_none());
    }

    #[test]
    fn damaged_slots_are_named_not_panicked_on() {
        assert!(parse("{").is_err());
        let master = MasterKey::generate().unwrap();
        let mut slot = wrap(
            &master,
            &pass("p"),
            CHEAP,
            Cipher::XChaCha20Poly1305,
            "r",
            "s",
            &origin(),
        )
        .unwrap();
        slot.wrapped = "zz".into();
        assert!(unwrap(&slot, &pass("p"), "r", "s").is_err());
        slot.obnam_key_slot = 9;
        let text = serde_json::to_string(&slot).unwrap();
        assert!(parse(&text).unwrap_err().contains("format 9"));
    }

    /// The text of a valid, cheap passphrase slot, as JSON to edit.
    pub(crate) fn valid_slot_json() -> serde_json::Value {
        let master = MasterKey::generate().unwrap();
        let slot = wrap(
            &master,
            &pass("p"),
            CHEAP,
            Cipher::XChaCha20Poly1305,
            "r",
            "s",
            &origin(),
        )
        .unwrap();
        serde_json::to_value(&slot).unwrap()
    }

    #[test]
    fn slots_demanding_too_much_are_refused_when_parsed() {
        let long_hex = "ab".repeat(1 << 16);
        for (pointer, value, why) in [
            (
                "/kdf/memory_kib",
                serde_json::json!(u32::MAX),
                "its Argon2id memory cost of 4294967295 KiB is more than the limit of 4194304 KiB (4 GiB)",
            ),
            (
                "/kdf/iterations",
                serde_json::json!(4_000_000_000u32),
                "its Argon2id time cost of 4000000000 iterations is more than the limit of 64",
            ),
            (
                "/kdf/parallelism",
                serde_json::json!(0xff_ffff),
                "its Argon2id parallelism of 16777215 is more than the limit of 16",
            ),
            (
                "/kdf/parallelism",
                serde_json::json!(0),
                "its Argon2id parameters are invalid",
            ),
            (
                "/kdf/salt",
                serde_json::json!(long_hex),
                "its salt is 131072 hex digits long, more than the 128 it may be",
            ),
            (
                "/wrapped",
                serde_json::json!(long_hex),
                "its key is 131072 hex digits long, more than the 210 it may be",
            ),
            ("/wrapped", serde_json::json!("xyz"), "its key is not hex"),
            (
                "/info",
                serde_json::json!("ab".repeat(MAX_INFO_LEN + 1)),
                "its info is 131074 hex digits long, more than the 131072 it may be",
            ),
        ] {
            let mut slot = valid_slot_json();
            *slot.pointer_mut(pointer).unwrap() = value;
            let err = parse(&slot.to_string()).unwrap_err();
            assert!(err.contains(why), "{pointer}: {err}");
            // Also when such a slot is used without being parsed.
            let slot: KeySlot = serde_json::from_value(slot).unwrap();
            if pointer.starts_with("/kdf") {
                let err = unwrap(&slot, &pass("p"), "r", "s").err().unwrap();
                assert!(err.contains(why), "{pointer}: {err}");
            }
        }
        let huge = format!("{}{}", valid_slot_json(), " ".repeat(MAX_SLOT_TEXT_LEN));
        assert!(parse(&huge)
            .unwrap_err()
            .contains("more than the limit of 1048576 for a key slot"));
    }

    #[test]
    fn the_bounds_admit_what_obnam_writes() {
        let mut slot = valid_slot_json();
        parse(&slot.to_string()).unwrap();
        // The largest costs the settings accept.
        slot["kdf"]["memory_kib"] = MAX_KDF_MEMORY_KIB.into();
        slot["kdf"]["iterations"] = MAX_KDF_ITERATIONS.into();
        parse(&slot.to_string()).unwrap();
        for cipher in Cipher::ALL {
            let master = MasterKey::generate().unwrap();
            let file = Secret::KeyFile(Zeroizing::new(vec![1; 32]), "f".into());
            let slot = wrap(&master, &file, CHEAP, cipher, "r", "s", &origin()).unwrap();
            parse(&serde_json::to_string(&slot).unwrap()).unwrap();
        }
    }

    #[test]
    fn a_label_too_long_for_a_slot_is_refused_when_the_slot_is_made() {
        let master = MasterKey::generate().unwrap();
        let mut long = origin();
        long.label = "x".repeat(MAX_INFO_LEN);
        let err = wrap(
            &master,
            &pass("p"),
            CHEAP,
            Cipher::XChaCha20Poly1305,
            "r",
            "s",
            &long,
        )
        .err()
        .unwrap();
        assert!(err.contains("too long together"), "{err}");
        long.label = "x".repeat(MAX_INFO_LEN - 200);
        let slot = wrap(
            &master,
            &pass("p"),
            CHEAP,
            Cipher::XChaCha20Poly1305,
            "r",
            "s",
            &long,
        )
        .unwrap();
        parse(&serde_json::to_string(&slot).unwrap()).unwrap();
    }
}
