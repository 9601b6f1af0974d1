//! The encryption plugin: authenticated encryption of every repository
//! object, a master key kept in key slots, and the `key` and `client-keys`
//! commands.
//!
//! It works through two host hooks:
//!
//! * `repository-open` ([`open`]): when a repository is created with
//!   `--encrypt`, it makes the master key and the first key slot and names
//!   its filter, `encrypt`, as the repository's *seal*; when an encrypted
//!   repository is opened, it unwraps the master key from a key slot with
//!   the user's passphrase or key file, and hands the host the key of the
//!   chunk tokens (which are then HMACs, so stored names reveal nothing).
//! * `repository-data` ([`filter`]): the `encrypt` filter. As the seal it
//!   runs last, on the whole inner encoding of each object (compressed
//!   bytes and their tags), and binds the repository id and the object's
//!   kind and id as associated data.
//!
//! In a repository that is not encrypted the filter leaves data alone; the
//! engine refuses any object that is not sealed in one that is, so the two
//! never mix.

#![forbid(unsafe_code)]

mod cipher;
mod commands;
mod filter;
#[cfg(test)]
mod fuzz;
mod open;
mod secrets;
mod slots;

use std::sync::{Arc, OnceLock};

use plugin_api::payloads::{REPOSITORY_DATA, REPOSITORY_OPEN};
use plugin_api::{App, Plugin, Result, Setting, GROUP_ENCRYPTION, PRIORITY_DEFAULT, PRIORITY_LATE};

use cipher::Cipher;
use slots::MasterKey;

/// The tag of the encryption filter, recorded as the seal of encrypted
/// repositories. It must never change.
pub const FILTER_TAG: &str = "encrypt";

/// The `--cipher` that picks the faster of the ciphers with 192-bit
/// nonces on this processor ([`Cipher::for_this_processor`]).
pub const AUTO_CIPHER: &str = "auto";

/// What the plugin learnt when the repository was opened.
pub enum RepoState {
    /// Not encrypted (or sealed by some other plugin's filter).
    Plain,
    /// Encrypted, and unlocked.
    Sealed(Unlocked),
}

/// An unlocked encrypted repository.
pub struct Unlocked {
    pub url: String,
    pub repository_id: String,
    pub cipher: Cipher,
    pub master: MasterKey,
    /// The key slot that opened it (none when it was just created).
    pub opened_with: Option<String>,
    /// The secret that opened (or created) it: `key passwd` removes every
    /// slot it opens, not only the one it opened first.
    pub secret: slots::Secret,
}

/// The state shared by the hook callback, the filter and the commands.
pub type Shared = Arc<OnceLock<RepoState>>;

#[derive(Default)]
struct Encrypt;

impl Plugin for Encrypt {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        let settings = [
            Setting::boolean("encrypt")
                .subcommands(&["backup"]).help(
                "encrypt the repository when it is created (the choice is recorded in it; \
                 an existing repository keeps its own)",
            ),
            // A choice, so that a cipher this obnam does not know is a
            // usage error everywhere, not only where a repository is made.
            Setting::choice(
                "cipher",
                &[
                    AUTO_CIPHER,
                    Cipher::XAes256Gcm.name(),
                    Cipher::XChaCha20Poly1305.name(),
                    Cipher::Aes256Gcm.name(),
                ],
            )
                .subcommands(&["backup"])
                .default(AUTO_CIPHER)
                .metavar("CIPHER")
                .help(&format!(
                    "cipher of a new encrypted repository: {AUTO_CIPHER} (xaes-256-gcm where \
                     the processor has AES instructions, else xchacha20-poly1305), {}",
                    Cipher::NAMES
                )),
            Setting::path("passphrase-file")
                .metavar("FILE")
                .help("read the repository passphrase from FILE (else OBNAM_PASSPHRASE, else a prompt)"),
            Setting::path("key-file")
                .metavar("FILE")
                .help("open the repository with the key file FILE instead of a passphrase (a new repository with --encrypt creates FILE if missing)"),
            Setting::path("new-passphrase-file")
                .subcommands(&["key"])
                .metavar("FILE")
                .help("with key add / key passwd: the new passphrase is in FILE (else OBNAM_NEW_PASSPHRASE, else a prompt)"),
            Setting::path("new-key-file")
                .subcommands(&["key"])
                .metavar("FILE")
                .help("with key add: add a key-file slot for FILE (created with 32 random bytes if missing)"),
            Setting::string("key-label")
                .subcommands(&["key"])
                .metavar("TEXT")
                .help("with key add / key passwd: a label shown by key list"),
            Setting::bytesize("kdf-memory")
                .subcommands(&["backup", "key"])
                .default("64MiB")
                .metavar("SIZE")
                .help("Argon2id memory cost of new passphrase slots")
                .range("64KiB", "4GiB"),
            Setting::integer("kdf-iterations")
                .subcommands(&["backup", "key"])
                .default("3")
                .metavar("N")
                .help("Argon2id time cost of new passphrase slots")
                .range("1", "64"),
        ];
        for s in settings {
            app.add_setting(s.group(GROUP_ENCRYPTION));
        }

        let state: Shared = Arc::new(OnceLock::new());
        let on_open = state.clone();
        app.add_json_callback(REPOSITORY_OPEN, PRIORITY_DEFAULT, move |ctx, payload| {
            open::on_open(ctx, payload, &on_open)
        });
        // Priority matters only in repositories this plugin does not seal;
        // as the seal the host runs it last whatever its priority.
        app.add_filter(
            REPOSITORY_DATA,
            PRIORITY_LATE,
            FILTER_TAG,
            filter::Encryption {
                state: state.clone(),
            },
        );
        commands::register(app, state);
        Ok(())
    }
}

plugin_api::export_plugin!("encrypt", Encrypt);
