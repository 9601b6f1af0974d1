//! Property tests ("fuzzing" on stable Rust) of the encryption plugin's
//! decoders of repository data: the sealed-object parser and decryptor
//! ([`Cipher::open`], which the `encrypt` filter runs on every object of an
//! encrypted repository) and the key-slot parser ([`slots::parse`], then
//! [`slots::unwrap`] and [`slots::origin_of`] on what it accepts).
//!
//! Random and mutated input (a valid sealed object or slot with bytes
//! flipped, inserted, deleted, the end cut off) must never panic; a changed
//! sealed object must never open; a slot that parses asks for no more than
//! the bounds of [`slots`] (Argon2id memory and passes, salt, key and info
//! lengths), so that using it costs a bounded amount.
//!
//! The number of cases is fixed here ([`CASES`]) so that the budget in CI
//! is a few seconds; `PROPTEST_CASES` overrides it for a longer run.

use std::sync::OnceLock;

use fuzz_support::{mutate, mutation};
use plugin_api::serde_json;
use proptest::prelude::*;
use zeroize::Zeroizing;

use crate::cipher::{Cipher, OpenError};
use crate::slots::tests::{pass, valid_slot_json};
use crate::slots::{self, Kdf, MasterKey, MASTER_LEN};

/// Cases per property, unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    fuzz_support::config(CASES)
}

fn cipher() -> impl Strategy<Value = Cipher> {
    prop::sample::select(Cipher::ALL.to_vec())
}

const KEY: [u8; 32] = [7; 32];
const AD: &[u8] = b"obnam object\0repo\0chunk/ab";

/// One valid slot's text (made once: Argon2id, even cheap, is the slow
/// part), the repository and slot id it is bound to, and its master key.
fn valid_slot() -> &'static (String, MasterKey) {
    static SLOT: OnceLock<(String, MasterKey)> = OnceLock::new();
    SLOT.get_or_init(|| {
        // valid_slot_json's master key is not returned; make our own slot.
        let master = MasterKey::generate().unwrap();
        let mut slot = valid_slot_json();
        let made = slots::wrap(
            &master,
            &pass("p"),
            slots::KdfCost {
                memory_kib: 64,
                iterations: 1,
            },
            Cipher::XChaCha20Poly1305,
            "r",
            "s",
            &Default::default(),
        )
        .unwrap();
        slot["kdf"] = serde_json::to_value(&made.kdf).unwrap();
        slot["wrapped"] = made.wrapped.into();
        slot["info"] = made.info.into();
        (serde_json::to_string_pretty(&slot).unwrap(), master)
    })
}

/// Whether Argon2id with `kdf` is cheap enough to run in a test case
/// (unoptimised Argon2id is slow: about 1 ms per 64 KiB).
fn cheap(kdf: &Kdf) -> bool {
    match kdf {
        Kdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
            ..
        } => *memory_kib <= 128 && *iterations <= 1 && *parallelism <= 4,
        Kdf::HkdfSha256 { .. } => true,
    }
}

/// Parse `text` as a slot; on success check the bounds and use the slot
/// as opening would (when that is cheap enough for a test).
fn check_slot(text: &str) -> Result<(), TestCaseError> {
    let Ok(slot) = slots::parse(text) else {
        return Ok(());
    };
    prop_assert!(slots::check_kdf(&slot.kdf).is_ok());
    if let Kdf::Argon2id {
        memory_kib,
        iterations,
        parallelism,
        ..
    } = &slot.kdf
    {
        prop_assert!(*memory_kib <= slots::MAX_KDF_MEMORY_KIB);
        prop_assert!(*iterations <= slots::MAX_KDF_ITERATIONS);
        prop_assert!(*parallelism <= slots::MAX_KDF_PARALLELISM);
    }
    prop_assert!(slot.wrapped.len() <= 2 * (1 + 24 + MASTER_LEN + 16));
    prop_assert!(slot.info.len() <= 2 * slots::MAX_INFO_LEN);
    if cheap(&slot.kdf) {
        let file = slots::Secret::KeyFile(Zeroizing::new(vec![1; 32]), "f".into());
        for secret in [pass("p"), file] {
            if let Ok(Some(master)) = slots::unwrap(&slot, &secret, "r", "s") {
                // Only an unchanged key opens.
                prop_assert_eq!(master.0.as_ref(), valid_slot().1 .0.as_ref());
            }
        }
    }
    let _ = slots::origin_of(&slot, &valid_slot().1, "r", "s");
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_blobs_never_open_nor_panic(
        cipher in cipher(),
        blob in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert!(cipher.open(&KEY, AD, &blob).is_err());
    }

    #[test]
    fn changed_sealed_objects_never_open_nor_panic(
        cipher in cipher(),
        plain in proptest::collection::vec(any::<u8>(), 0..2048),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let sealed = cipher.seal(&KEY, AD, &plain).unwrap();
        let bent = mutate(sealed.clone(), &mutations);
        match cipher.open(&KEY, AD, &bent) {
            Ok(back) => {
                prop_assert_eq!(&bent, &sealed);
                prop_assert_eq!(back, plain);
            }
            Err(e) => {
                prop_assert_ne!(&bent, &sealed);
                // The other cipher's id is named, not tried.
                if let OpenError::WrongCipher(id) = e {
                    prop_assert_eq!(Some(&id), bent.first());
                }
            }
        }
    }

    #[test]
    fn random_slot_texts_never_panic(text in "\\PC{0,400}") {
        check_slot(&text)?;
    }

    #[test]
    fn mutated_slots_never_panic_nor_exceed_the_bounds(
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let text = mutate(valid_slot().0.clone().into_bytes(), &mutations);
        check_slot(&String::from_utf8_lossy(&text))?;
    }

    #[test]
    fn slots_with_any_kdf_values_never_panic_nor_exceed_the_bounds(
        memory_kib in prop_oneof![any::<u32>(), 0..256u32],
        iterations in prop_oneof![any::<u32>(), 0..4u32],
        parallelism in prop_oneof![any::<u32>(), 0..8u32],
        salt in "[0-9a-f]{0,200}",
        hkdf in any::<bool>(),
        wrapped_len in prop_oneof![19 => 0..300usize, 1 => Just(4096usize)],
        info_len in prop_oneof![19 => 0..300usize, 1 => Just(2 * slots::MAX_INFO_LEN + 2)],
    ) {
        let mut slot = serde_json::from_str::<serde_json::Value>(&valid_slot().0).unwrap();
        slot["kdf"] = if hkdf {
            serde_json::json!({"name": "hkdf-sha256", "salt": salt})
        } else {
            serde_json::json!({"name": "argon2id", "memory_kib": memory_kib,
                "iterations": iterations, "parallelism": parallelism, "salt": salt})
        };
        if hkdf {
            slot["kind"] = "key-file".into();
        }
        slot["wrapped"] = "ab".repeat(wrapped_len / 2).into();
        slot["info"] = "cd".repeat(info_len / 2).into();
        check_slot(&slot.to_string())?;
    }
}
