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
//!   a recorded salt (the file is already high in entropy).
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
    /// A passphrase (its bytes).
    Passphrase(Zeroizing<Vec<u8>>),
    /// The contents of a key file, and the file's name for messages.
    KeyFile(Zeroizing<Vec<u8>>, String),
}

impl Secret {
    fn kind(&self) -> &'static str {
        match self {
            Secret::Passphrase(_) => "passphrase",
            Secret::KeyFile(..) => "key-file",
        }
    }
}

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
    let blob = hex::decode(&slot.info).map_err(|_| "its info is not hex".to_string())?;
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

fn derive(kdf: &Kdf, secret: &Secret) -> Result<Zeroizing<[u8; 32]>, String> {
    let mut kek = Zeroizing::new([0u8; 32]);
    match (kdf, secret) {
        (
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            },
            Secret::Passphrase(pass),
        ) => {
            let salt = hex::decode(salt).map_err(|_| "its salt is not hex".to_string())?;
            let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| format!("its Argon2id parameters are invalid: {e}"))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(pass, &salt, kek.as_mut())
                .map_err(|e| format!("Argon2id failed: {e}"))?;
        }
        (Kdf::HkdfSha256 { salt }, Secret::KeyFile(contents, _)) => {
            let salt = hex::decode(salt).map_err(|_| "its salt is not hex".to_string())?;
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
        Secret::Passphrase(_) => Kdf::Argon2id {
            memory_kib: cost.memory_kib,
            iterations: cost.iterations,
            parallelism: 1,
            salt: random_hex(16)?,
        },
        Secret::KeyFile(..) => Kdf::HkdfSha256 {
            salt: random_hex(16)?,
        },
    };
    let kek = derive(&kdf, secret)?;
    let wrapped = cipher.seal(
        &kek,
        &associated_data(repository_id, slot_id),
        master.0.as_ref(),
    )?;
    let mut origin = origin.clone();
    origin.created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let info = serde_json::to_vec(&origin).map_err(|e| e.to_string())?;
    let info = cipher.seal(
        &master.object_key(),
        &info_associated_data(repository_id, slot_id),
        &info,
    )?;
    Ok(KeySlot {
        obnam_key_slot: 1,
        kind: secret.kind().into(),
        kdf,
        cipher: cipher.name().into(),
        wrapped: hex::encode(wrapped),
        info: hex::encode(info),
    })
}

/// Parse a slot's text.
pub fn parse(text: &str) -> Result<KeySlot, String> {
    let slot: KeySlot =
        serde_json::from_str(text).map_err(|e| format!("it is not a key slot: {e}"))?;
    if slot.obnam_key_slot != 1 {
        return Err(format!(
            "it has key slot format {}, which this obnam does not know",
            slot.obnam_key_slot
        ));
    }
    Ok(slot)
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
    let kek = derive(&slot.kdf, secret)?;
    let wrapped = hex::decode(&slot.wrapped).map_err(|_| "its key is not hex".to_string())?;
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
}

#[cfg(test)]
mod tests {
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

    fn pass(p: &str) -> Secret {
        Secret::Passphrase(Zeroizing::new(p.as_bytes().to_vec()))
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
}
