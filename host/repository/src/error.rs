//! The repository's error type.

use super::ids::ChunkId;
use super::storage::StorageError;
use super::upload::UploadError;

/// Why a repository operation failed. Every message names the object or
/// the lock concerned, so that the user can tell what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{url} is not an obnam repository (it has no config object)")]
    NotARepository { url: String },
    #[error("repository {url} has format version {found}, which is newer than this obnam supports ({supported}); upgrade obnam")]
    TooNew {
        url: String,
        found: u32,
        supported: u32,
    },
    #[error("object {object} is corrupt: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("{0}")]
    Filter(String),
    /// A background upload failed earlier in the run.
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("chunk {0} is not in the repository")]
    NoSuchChunk(ChunkId),
    #[error("client '{0}' has no generation {1}")]
    NoSuchGeneration(String, String),
    #[error("client '{0}' has no generations")]
    NoGenerations(String),
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    BadPath(String),
    #[error("{0}")]
    Usage(String),
}

impl RepoError {
    pub(crate) fn corrupt(object: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        RepoError::Corrupt {
            object: object.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result type of the repository.
pub type RepoResult<T> = Result<T, RepoError>;
