//! Where passphrases and key files come from.
//!
//! To open a repository: `--key-file` if given; otherwise a passphrase from
//! `--passphrase-file`, then the `OBNAM_PASSPHRASE` environment variable,
//! then a prompt when standard input is a terminal. A new secret (for a new
//! repository's first slot, or `key add` / `key passwd`) comes the same way
//! from `--new-key-file`, `--new-passphrase-file`, `OBNAM_NEW_PASSPHRASE`
//! or a prompt asked twice; a new repository takes its first secret from
//! where an existing one would be opened from (and `--key-file` names a key
//! file to create if it is missing). Passphrases never travel as settings, so they are
//! never shown by `--dump-config` or in logs.

use std::io::IsTerminal;
use std::path::Path;

use plugin_api::names::escape_path;
use plugin_api::{Context, Error, Result};
use zeroize::Zeroizing;

use crate::slots::Secret;

/// Environment variable holding the passphrase that opens a repository.
pub const PASSPHRASE_VAR: &str = "OBNAM_PASSPHRASE";
/// Environment variable holding a new passphrase for `key add`/`key passwd`.
pub const NEW_PASSPHRASE_VAR: &str = "OBNAM_NEW_PASSPHRASE";

/// Smallest key file accepted, in bytes.
const MIN_KEY_FILE: usize = 32;

/// The most bytes a passphrase file or key file may hold: 64 KiB. A key
/// file needs 32 bytes of secret (obnam makes them of 65) and a
/// passphrase is typed; a bigger file is something else named by mistake,
/// or a device that never ends (`/dev/zero`), and reading it whole would
/// only take memory.
pub const MAX_SECRET_FILE: u64 = 64 << 10;

/// The contents of the passphrase or key file (`what`) at `path`, if it
/// holds no more than [`MAX_SECRET_FILE`] bytes. Reading stops one byte
/// past the limit, so a device or FIFO that never ends is refused too.
fn read_bounded(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let opened = std::fs::File::open(path);
    // Named escaped in messages: it need not be UTF-8.
    let path = escape_path(path);
    let too_big = || {
        Error::msg(format!(
            "{what} {path} holds more than {MAX_SECRET_FILE} bytes ({} KiB), the most a {what} \
             may hold",
            MAX_SECRET_FILE >> 10
        ))
    };
    let file = opened.map_err(|e| Error::msg(format!("cannot read {what} {path}: {e}")))?;
    if let Ok(meta) = file.metadata() {
        warn_if_others_may_read(&meta, what, &path);
    }
    // A regular file's size tells at once, without reading it.
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_SECRET_FILE)
    {
        return Err(too_big());
    }
    // Room for the limit and one byte more (which tells that there are
    // more), made once: a buffer grown while reading would leave copies
    // of the secret behind in freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE as usize + 1));
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::msg(format!("cannot read {what} {path}: {e}")))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Warn of a secret's file that others may read, or that belongs to
/// another user (one who could read it, or change it: a key file planted
/// where a new repository's is looked for becomes that repository's key,
/// known to whoever planted it). As ssh does of a private key, but a
/// warning, not a refusal: the file is the user's to keep as they choose.
fn warn_if_others_may_read(meta: &std::fs::Metadata, what: &str, path: &str) {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return;
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        plugin_api::tracing::warn!(
            "{what} {path} belongs to another user (uid {}): they can read it, and whoever \
             holds it opens the repository",
            meta.uid()
        );
    } else if meta.mode() & 0o077 != 0 {
        plugin_api::tracing::warn!(
            "{what} {path} may be read by others (mode {:o}): whoever reads it opens the \
             repository (chmod 600 it)",
            meta.mode() & 0o7777
        );
    }
}

/// A key or passphrase file's name need not be UTF-8: messages show it
/// escaped.
fn read_key_file(path: &Path) -> Result<Secret> {
    let shown = escape_path(path);
    let contents = read_bounded(path, "key file")?;
    if contents.len() < MIN_KEY_FILE {
        return Err(Error::msg(format!(
            "key file {shown} holds {} bytes; a key file needs at least {MIN_KEY_FILE} bytes of secret",
            contents.len()
        )));
    }
    Ok(Secret::KeyFile(contents, shown))
}

/// A key file for a new slot: its secret, without the line endings that
/// are not part of it ([`crate::slots::key_file_forms`]), must be at
/// least [`MIN_KEY_FILE`] bytes (32 newlines made a slot that any 16
/// CRLFs opened). One that opens a slot made before is read as before.
fn read_new_key_file(path: &Path) -> Result<Secret> {
    let secret = read_key_file(path)?;
    if let Secret::KeyFile(contents, shown) = &secret {
        let bare = contents
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map_or(0, |i| i + 1);
        if bare < MIN_KEY_FILE {
            return Err(Error::msg(format!(
                "key file {shown} holds {bare} bytes of secret (its line endings are not part \
                 of it); a key file needs at least {MIN_KEY_FILE}"
            )));
        }
    }
    Ok(secret)
}

fn read_passphrase_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut text = read_bounded(path, "passphrase file")?;
    // One trailing newline is the file's, not the passphrase's.
    if text.last() == Some(&b'\n') {
        text.pop();
        if text.last() == Some(&b'\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// The passphrase from `source` (named in messages: of several places a
/// passphrase may come from, only the first is used), if it is not empty.
fn non_empty(pass: Zeroizing<Vec<u8>>, source: &str) -> Result<Secret> {
    if pass.is_empty() {
        return Err(Error::msg(format!("the passphrase from {source} is empty")));
    }
    Ok(Secret::Passphrase(pass, source.to_string()))
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let pass = rpassword::prompt_password(text)
        .map_err(|e| Error::msg(format!("cannot read a passphrase from the terminal: {e}")))?;
    Ok(Zeroizing::new(pass.into_bytes()))
}

fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && Path::new("/dev/tty").exists()
}

/// The secret that opens the repository at `url`.
pub fn opening(ctx: &Context<'_>, url: &str) -> Result<Secret> {
    if let Some(path) = ctx.path("key-file")? {
        return read_key_file(&path);
    }
    if let Some(path) = ctx.path("passphrase-file")? {
        return non_empty(
            read_passphrase_file(&path)?,
            &format!("--passphrase-file {}", escape_path(&path)),
        );
    }
    if let Some(pass) = std::env::var_os(PASSPHRASE_VAR) {
        use std::os::unix::ffi::OsStringExt;
        return non_empty(Zeroizing::new(pass.into_vec()), PASSPHRASE_VAR);
    }
    if on_terminal() {
        return non_empty(prompt(&format!("Passphrase for {url}: "))?, "the terminal");
    }
    Err(Error::msg(format!(
        "repository {url} is encrypted: give its passphrase in {PASSPHRASE_VAR}, \
         with --passphrase-file or on a terminal, or give --key-file"
    )))
}

/// The secret of a new repository's first key slot: what would open it
/// (a key file named by `--key-file` is created if missing), asked twice
/// on a terminal.
pub fn for_new_repository(ctx: &Context<'_>, url: &str) -> Result<Secret> {
    if let Some(path) = ctx.path("key-file")? {
        create_key_file_if_missing(&path)?;
        // A passphrase given too would make no slot: said, not dropped
        // without a word (the user may think it opens the repository).
        let mut given = Vec::new();
        if let Some(file) = ctx.path("passphrase-file")? {
            given.push(format!("--passphrase-file {}", escape_path(&file)));
        }
        if std::env::var_os(PASSPHRASE_VAR).is_some() {
            given.push(PASSPHRASE_VAR.to_string());
        }
        if !given.is_empty() {
            plugin_api::tracing::warn!(
                "the new repository {url} gets one key slot, for the key file {}: the \
                 passphrase from {} does not open it (add a slot for it with obnam key add)",
                escape_path(&path),
                given.join(" and ")
            );
        }
        return read_new_key_file(&path);
    }
    if ctx.path("passphrase-file")?.is_some() || std::env::var_os(PASSPHRASE_VAR).is_some() {
        return opening(ctx, url);
    }
    if on_terminal() {
        return twice(&format!("New passphrase for {url}: "));
    }
    Err(Error::msg(format!(
        "--encrypt needs a passphrase for the new repository {url}: give it in {PASSPHRASE_VAR}, \
         with --passphrase-file or on a terminal, or give --key-file"
    )))
}

/// Where [`for_new_repository`] would take the secret from, for a run
/// that pretends to create the repository ([`pretended_source`]).
pub fn new_repository_secret_source(ctx: &Context<'_>, url: &str) -> Result<String> {
    let passphrase_given =
        ctx.path("passphrase-file")?.is_some() || std::env::var_os(PASSPHRASE_VAR).is_some();
    pretended_source(ctx.path("key-file")?, passphrase_given, || {
        for_new_repository(ctx, url)
    })
}

/// Where a new secret would come from, for a run that pretends: it makes
/// no key file (but checks that it could) and asks nothing, but reads a
/// key file or passphrase that is there, so that one that cannot be used
/// is an error now, as in the real run (`read`).
fn pretended_source(
    key_file: Option<std::path::PathBuf>,
    passphrase_given: bool,
    read: impl FnOnce() -> Result<Secret>,
) -> Result<String> {
    if let Some(path) = key_file {
        if std::fs::symlink_metadata(&path).is_err() {
            could_create_key_file(&path)?;
            return Ok(format!(
                "a new key file {} (which the run would make)",
                escape_path(&path)
            ));
        }
        return read_new_key_file(&path).map(|secret| crate::open::describe(&secret));
    }
    if on_terminal() && !passphrase_given {
        return Ok("a new passphrase (which the run would ask for)".to_string());
    }
    read().map(|secret| crate::open::describe(&secret))
}

fn twice(first_prompt: &str) -> Result<Secret> {
    let first = prompt(first_prompt)?;
    let second = prompt("The same passphrase again: ")?;
    if *first != *second {
        return Err(Error::msg(
            "the two passphrases differ; nothing was changed",
        ));
    }
    non_empty(first, "the terminal")
}

/// A new secret for a new key slot (`key add`, `key passwd`).
pub fn new_secret(ctx: &Context<'_>) -> Result<Secret> {
    if let Some(path) = ctx.path("new-key-file")? {
        create_key_file_if_missing(&path)?;
        return read_new_key_file(&path);
    }
    if let Some(path) = ctx.path("new-passphrase-file")? {
        return non_empty(
            read_passphrase_file(&path)?,
            &format!("--new-passphrase-file {}", escape_path(&path)),
        );
    }
    if let Some(pass) = std::env::var_os(NEW_PASSPHRASE_VAR) {
        use std::os::unix::ffi::OsStringExt;
        return non_empty(Zeroizing::new(pass.into_vec()), NEW_PASSPHRASE_VAR);
    }
    if on_terminal() {
        return twice("New passphrase: ");
    }
    Err(Error::msg(format!(
        "no new secret: give {NEW_PASSPHRASE_VAR}, --new-passphrase-file, --new-key-file, \
         or run on a terminal"
    )))
}

/// Why a key file could not be made at `path` (which is not there), as
/// far as a look shows without making it: its folder is not there, is
/// not a folder, or may not be written in.
fn could_create_key_file(path: &Path) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let why = match std::fs::metadata(folder) {
        Ok(meta) if !meta.is_dir() => Some("its folder is not a folder".to_string()),
        Ok(_) => rustix::fs::access(folder, rustix::fs::Access::WRITE_OK)
            .err()
            .map(|e| format!("its folder may not be written in ({e})")),
        Err(e) => Some(format!("its folder: {e}")),
    };
    match why {
        Some(why) => Err(Error::msg(format!(
            "cannot create key file {}: {why}",
            escape_path(path)
        ))),
        None => Ok(()),
    }
}

/// Where [`new_secret`] would take the new secret from, for a `--pretend`
/// run ([`pretended_source`]).
pub fn new_secret_source(ctx: &Context<'_>) -> Result<String> {
    let passphrase_given = ctx.path("new-passphrase-file")?.is_some()
        || std::env::var_os(NEW_PASSPHRASE_VAR).is_some();
    pretended_source(ctx.path("new-key-file")?, passphrase_given, || {
        new_secret(ctx)
    })
}

/// Make a key file of 32 random bytes (hex, mode 0600) if there is none.
fn create_key_file_if_missing(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = escape_path(path);
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut()).map_err(|e| Error::msg(format!("no random numbers: {e}")))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(secret.as_ref())));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::msg(format!("cannot write key file {shown}: {e}")))?;
            plugin_api::tracing::warn!(
                "created key file {shown}: keep a copy of it somewhere safe"
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::msg(format!("cannot create key file {shown}: {e}"))),
    }
}
