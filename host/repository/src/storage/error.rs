//! Storage errors, in words: what failed, on which URL and object.

use opendal::ErrorKind;

use super::BadUrl;

/// Why a storage operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{url}: object {key} does not exist")]
    NotFound { url: String, key: String },
    #[error("{url}: cannot {op} {key}: {message}")]
    Failed {
        url: String,
        op: &'static str,
        key: String,
        message: String,
    },
    /// What the store holds under an object's name cannot be that object
    /// (larger than the format allows, or on a local folder not a regular
    /// file): the object is damaged, the store itself works. Callers that
    /// read objects in bulk take it as damage to that one object, not as a
    /// failure of the run ([`crate::RepoError::is_damaged_object`]).
    #[error("{url}: cannot read {key}: {reason}")]
    Damaged {
        url: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    #[error("cannot use repository {url}: {message}")]
    Setup { url: String, message: String },
    #[error("cannot start the storage runtime: {0}")]
    Runtime(String),
    #[error("{url}: not writing {key}: the run was interrupted")]
    Interrupted { url: String, key: String },
    /// This process must not write to the store at all
    /// ([`StorageOptions::writes_refused`](super::StorageOptions::writes_refused)).
    #[error("{url}: not writing {key}: {reason}")]
    Refused {
        url: String,
        key: String,
        reason: String,
    },
}

/// Why a write failed that found no folder to write in.
const NO_FOLDER: &str =
    "its folder does not exist and cannot be made (is the repository path a folder that may be \
     written to, and its .tmp, where objects are written first, a folder?)";

/// A failed write done on the calling thread (see
/// [`Backend::put_direct`](crate::backend::Backend::put_direct)), in the
/// words of [`failure`].
pub(super) fn write_failure(url: &str, key: &str, e: std::io::Error) -> StorageError {
    StorageError::Failed {
        url: url.to_string(),
        op: "write",
        key: key.to_string(),
        // A file where a folder belongs (`.tmp` one, say) is no folder.
        message: if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ) {
            NO_FOLDER.to_string()
        } else {
            e.to_string()
        },
    }
}

/// A failed storage operation as a [`StorageError`].
pub(super) fn failure(url: &str, op: &'static str, key: &str, e: opendal::Error) -> StorageError {
    if e.kind() == ErrorKind::NotFound && op == "write" {
        // Over SFTP the folders are made as needed; a write finding none
        // means that they could not be made.
        StorageError::Failed {
            url: url.to_string(),
            op,
            key: key.to_string(),
            message: NO_FOLDER.to_string(),
        }
    } else if e.kind() == ErrorKind::NotFound {
        StorageError::NotFound {
            url: url.to_string(),
            key: key.to_string(),
        }
    } else {
        let mut message = describe(&e);
        // `--storage-timeout` bounds a whole write: on a slow link a pack
        // may need longer than that, however well the link works (and the
        // first timeout left one write at a time already: see
        // `write_gate`).
        // A small object (a lock) that timed out says rather that the
        // server stopped answering.
        if op == "write" && message.contains("timeout") {
            message.push_str(if key.starts_with("packs/") {
                " (a write must end within --storage-timeout, and one at a time did not: the \
                 server may have stopped answering; on a slow link, give a larger \
                 --storage-timeout or a smaller --pack-size)"
            } else {
                " (a write must end within --storage-timeout, and one at a time did not: the \
                 server may have stopped answering, or the link be too slow for the timeout)"
            });
        }
        StorageError::Failed {
            url: url.to_string(),
            op,
            key: key.to_string(),
            message,
        }
    }
}

/// An OpenDAL error in a sentence: what went wrong and its causes,
/// without the request context (which may be long, and is no help to the
/// user beyond the URL and object that obnam names itself).
pub(crate) fn describe(e: &opendal::Error) -> String {
    let mut parts = vec![match e.kind() {
        // Over SFTP the login worked (a refused one fails to connect):
        // the server's permissions of a file or folder refuse it.
        ErrorKind::PermissionDenied if e.to_string().contains("Sftp server") => {
            "permission denied on the SFTP server (check the owner and permissions of the \
             repository's files and folders there)"
                .to_string()
        }
        ErrorKind::PermissionDenied => "access denied (check the credentials)".to_string(),
        ErrorKind::ConfigInvalid if e.message().contains("\"NoSuchBucket\"") => {
            "the bucket does not exist (obnam does not create buckets: create it with \
             the S3 provider's tools)"
                .to_string()
        }
        ErrorKind::ConfigInvalid => format!("bad storage settings: {}", e.message()),
        _ => e.message().to_string(),
    }];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    let mut text = one_line(&parts.join(": "));
    // The SFTP client ends its messages with an empty language tag.
    if let Some(cut) = text.strip_suffix(", Language Tag:") {
        text = cut.to_string();
    }
    // OpenDAL shows an S3 server's refusal as Rust's debug form of its
    // error: its code and message are what a user can act on.
    if let Some(said) = s3_refusal(&text) {
        text = said;
    }
    // Something that is no S3 server (a web server) answers with a page.
    let lower = text.to_ascii_lowercase();
    if lower.contains("<!doctype html") || lower.contains("<html") {
        text = "the endpoint answered with a web page, not as an S3 server would \
                (is --s3-endpoint right?)"
            .to_string();
    }
    // SFTP (version 3) has no word for a full disk, nor for a read-only
    // file system (a snapshot or export people only restore from): the
    // server says only that the write failed.
    if text.contains("Sftp server reported error kind Failure") {
        text.push_str(
            " (the SFTP server refused without saying why: is its disk full, the \
             account over its quota, or the folder on a read-only file system?)",
        );
    }
    // ssh's banner for a changed host key is 17 lines of warnings; what
    // it means fits in one.
    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        text = "the server's host key is not the one known_hosts records for it (a \
                reinstalled server, or someone in between): ssh refused to connect; if \
                the change is expected, remove the old key with 'ssh-keygen -R HOST' \
                ('ssh-keygen -R \"[HOST]:PORT\"' for a server on another port than 22)"
            .to_string();
    }
    // Missing credentials fail before any request is made: not retried,
    // whatever the error's status says.
    let no_credentials = text.contains("failed to load signing credential");
    if no_credentials {
        text.push_str(" (no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    }
    if e.is_persistent()
        && !no_credentials
        && !matches!(
            e.kind(),
            ErrorKind::PermissionDenied | ErrorKind::ConfigInvalid
        )
    {
        // Plugins see only the message: the restore plugin stops a whole
        // restore on these words (the store failed, not one object; see
        // plugins/restore/src/fetch.rs), so they must stay as they are.
        text.push_str(" (gave up after retrying)");
    }
    text
}

/// The code and message of an S3 server's error as OpenDAL shows it
/// (`S3Error { code: "X", message: "Y", ... }`), as a sentence.
fn s3_refusal(text: &str) -> Option<String> {
    // A Rust debug string: it ends at the first quote not escaped, and
    // its escapes (`\"`, `\\`) are undone (a server's message that
    // quotes something was cut at its first quote).
    let field = |name: &str| -> Option<String> {
        let start = text.find(&format!("{name}: \""))? + name.len() + 3;
        let mut out = String::new();
        let mut chars = text[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push(' '),
                    't' => out.push(' '),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    };
    if !text.contains("S3Error {") {
        return None;
    }
    let code = field("code")?;
    let hint = match code.as_str() {
        "AuthorizationHeaderMalformed" => " (is --s3-region the store's region?)",
        _ => "",
    };
    Some(match field("message") {
        Some(message) if !message.is_empty() => {
            format!("the S3 server refused: {code}: {message}{hint}")
        }
        _ => format!("the S3 server refused: {code}{hint}"),
    })
}

/// Text of several lines (what ssh printed, say) as one: errors are one
/// line each. Blank lines and ssh's lines of `@` are left out.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '@'))
        .collect();
    lines.join(" ")
}

/// Why what a backend found under an object's name cannot be the object,
/// carried in an [`std::io::Error`] from a read done on the calling
/// thread (see [`crate::backend::Backend::read_limited_direct`]), and
/// reported as [`StorageError::Damaged`].
#[derive(Debug)]
pub struct NotAnObject(pub String);

impl std::fmt::Display for NotAnObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAnObject {}

impl NotAnObject {
    /// The reason, if `e` carries one.
    pub(super) fn of(e: &std::io::Error) -> Option<&str> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<NotAnObject>())
            .map(|n| n.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{one_line, s3_refusal};

    #[test]
    fn an_s3_refusal_is_said_in_a_sentence() {
        let dump = "cannot read config: S3Error { code: \"AuthorizationHeaderMalformed\", \
                    message: \"Authorization header malformed, unexpected scope\", \
                    resource: \"\", request_id: \"\" }";
        assert_eq!(
            s3_refusal(dump).unwrap(),
            "the S3 server refused: AuthorizationHeaderMalformed: Authorization header \
             malformed, unexpected scope (is --s3-region the store's region?)"
        );
        assert_eq!(s3_refusal("Connection refused"), None);
        // Garage's message for a full disk quotes the cause: it is given
        // whole, unescaped.
        let full = r#"S3Error { code: "ServiceUnavailable", message: "Internal error: Could not reach quorum of 1. 0 of 1 request succeeded, others returned errors: [\"71e7: IO error: No space left on device (os error 28)\"]", resource: "", request_id: "" }"#;
        assert_eq!(
            s3_refusal(full).unwrap(),
            "the S3 server refused: ServiceUnavailable: Internal error: Could not reach quorum \
             of 1. 0 of 1 request succeeded, others returned errors: [\"71e7: IO error: No space \
             left on device (os error 28)\"]"
        );
    }

    #[test]
    fn what_ssh_printed_on_several_lines_is_one() {
        let ssh = "ssh error: failed to connect:\n@@@@@@@@@@\n@    WARNING: REMOTE HOST \
                   IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@\n\nIT IS POSSIBLE\r\nend";
        assert_eq!(
            one_line(ssh),
            "ssh error: failed to connect: @    WARNING: REMOTE HOST IDENTIFICATION HAS \
             CHANGED!     @ IT IS POSSIBLE end"
        );
        assert_eq!(one_line("one line"), "one line");
    }
}
