//! The bootstrap `config` object: the format's name and versions, and
//! how a `config` read back is checked before anything else is trusted.
//!
//! It is the one object not passed through the data filters (it must be
//! readable before anything else can be decoded), so it lives apart from
//! the codec of the other objects ([`crate::codec`]).

use serde::{Deserialize, Serialize};

use super::error::{RepoError, RepoResult};

/// The newest repository format version this obnam reads, and the one it
/// writes. Version 1 is a repository without a seal, version 2 one with a
/// seal (so that an obnam that knows only version 1 refuses it rather than
/// write plain objects into it); version 3, sealed or not, stores a
/// checksum with every object that is not named by its content, so that
/// nothing read back is used unverified; version 4 names the function of
/// its tokens (`tokens`: BLAKE3), where older versions use SHA-256, so that
/// an obnam that knows only SHA-256 tokens refuses it rather than store
/// every chunk again under tokens of its own. Versions 1 to 3 are still
/// read (and written to: a repository keeps its version and its tokens).
pub const FORMAT_VERSION: u32 = 4;
/// The first version that names its token function.
pub(crate) const FIRST_TOKENS_VERSION: u32 = 4;
/// The first version whose objects carry checksums.
pub(crate) const FIRST_CHECKSUM_VERSION: u32 = 3;
/// The most read of a plain record (the config, a key slot).
pub(crate) const RECORD_LIMIT: u64 = crate::limits::MAX_RECORD_LEN as u64;
/// The `format` member of every config.
pub(crate) const FORMAT_NAME: &str = "obnam-repository";

/// The bootstrap object: the one object not passed through the data filters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub created: String,
    /// The sealing filter, chosen when the repository was created: an
    /// object whose `filter` member is the filter's tag, and whatever else
    /// that filter records (its cipher, say). Absent: not sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<serde_json::Value>,
    /// The function tokens are made with (version 4 on: `blake3`).
    /// Absent (versions 1 to 3): SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
}

impl RepoConfig {
    /// The tag of the sealing filter, if the repository has one.
    pub fn seal_tag(&self) -> Option<&str> {
        self.seal.as_ref()?.get("filter")?.as_str()
    }
}

/// Parse and check a `config` read from the repository at `url`. A
/// config that is not one names the repository: it is the first object
/// read, and the error is often the sign of a wrong URL or endpoint.
pub(crate) fn parse_config(url: &str, bytes: &[u8]) -> RepoResult<RepoConfig> {
    check_config(url, bytes).map_err(|e| match e {
        RepoError::Corrupt { object, reason } if object == "config" => RepoError::Corrupt {
            object: format!("config of repository {url}"),
            reason,
        },
        e => e,
    })
}

fn check_config(url: &str, bytes: &[u8]) -> RepoResult<RepoConfig> {
    #[derive(Deserialize)]
    struct Probe {
        format: String,
        version: u32,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| RepoError::corrupt("config", e))?;
    if probe.format != FORMAT_NAME {
        return Err(RepoError::corrupt(
            "config",
            format!("unknown format '{}'", probe.format),
        ));
    }
    if probe.version > FORMAT_VERSION {
        return Err(RepoError::TooNew {
            url: url.to_string(),
            found: probe.version,
            supported: FORMAT_VERSION,
        });
    }
    let config: RepoConfig =
        serde_json::from_slice(bytes).map_err(|e| RepoError::corrupt("config", e))?;
    // The id names the repository in this machine's records (its index
    // cache, its machine record) and seals every key slot: one changed
    // into something obnam never writes is damage, said as such (it was
    // taken as it was, and a backup then warned of "another machine").
    if config.id.len() != 32
        || !config
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RepoError::corrupt(
            "config",
            format!(
                "its id '{}' is not 32 lowercase hex digits, as obnam writes it (the config \
                 was changed: put it back from a copy of the repository)",
                config.id.escape_debug()
            ),
        ));
    }
    // Version 1 predates seals and version 2 is always sealed: a config
    // that says otherwise was not written by obnam.
    match (config.version, config.seal.is_some()) {
        (0, _) => return Err(RepoError::corrupt("config", "it has version 0")),
        (1, true) => return Err(RepoError::corrupt("config", "version 1 cannot have a seal")),
        (2, false) => return Err(RepoError::corrupt("config", "version 2 must have a seal")),
        _ => {}
    }
    // From version 4 the token function is named, and must be one this
    // obnam makes: a wrong guess would store every chunk again.
    match (
        config.version >= FIRST_TOKENS_VERSION,
        config.tokens.as_deref(),
    ) {
        (true, Some(crate::tokens::TokenFunction::BLAKE3)) | (false, None) => Ok(config),
        (true, Some(other)) => Err(RepoError::corrupt(
            "config",
            format!("it names the token function '{other}', which this obnam does not know"),
        )),
        (true, None) => Err(RepoError::corrupt(
            "config",
            format!("version {} must name its token function", config.version),
        )),
        (false, Some(_)) => Err(RepoError::corrupt(
            "config",
            format!("version {} cannot name a token function", config.version),
        )),
    }
}
