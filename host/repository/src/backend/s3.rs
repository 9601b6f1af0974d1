//! A repository under a prefix of an S3 bucket (OpenDAL's s3 service). A
//! PUT is atomic by itself, and `If-None-Match` makes a new object that
//! must not replace another.

use opendal::{services, ErrorKind, Operator};

use super::Backend;
use crate::storage::{Storage, StorageError, StorageOptions};

/// An S3 bucket.
pub struct S3;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Why `endpoint` cannot be an S3 endpoint's URL; the words do not
/// repeat it (it may hold a password). Without a scheme (or with another)
/// the client tries TLS or a name lookup, and fails only after its
/// retries, in their words; a password in it went into this machine's
/// records and messages; a query or fragment sent the requests elsewhere,
/// and the answer was taken for a corrupt repository.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return Err("an S3 endpoint must start with http:// or https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("an S3 endpoint must not hold a user name or password: the \
             credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            .into());
    }
    if authority.is_empty() {
        return Err("an S3 endpoint must name a server after its scheme".into());
    }
    if rest.contains(['?', '#']) {
        return Err("an S3 endpoint must not hold a query or fragment ('?' or '#')".into());
    }
    Ok(())
}

/// The endpoint a store is reached at: `--s3-endpoint`, else
/// `AWS_ENDPOINT_URL`; `None`: AWS's own.
pub fn endpoint(options: &StorageOptions) -> Option<String> {
    options
        .s3_endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL"))
}

/// Open `prefix` in `bucket`, at `--s3-endpoint` (else `AWS_ENDPOINT_URL`,
/// else AWS) in `--s3-region` (else `AWS_REGION`, `AWS_DEFAULT_REGION`,
/// `us-east-1`).
pub fn open(
    url: &str,
    bucket: &str,
    prefix: &str,
    options: &StorageOptions,
) -> Result<(Box<dyn Backend>, Operator), StorageError> {
    let region = options
        .s3_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let mut builder = services::S3::default()
        .bucket(bucket)
        .root(&format!("/{prefix}"))
        .region(&region);
    if let Some(endpoint) = endpoint(options) {
        // `--s3-endpoint` was checked as it was read; the variable is
        // checked here.
        if let Err(why) = check_endpoint(&endpoint) {
            let source = match options.s3_endpoint {
                Some(_) => "--s3-endpoint",
                None => "AWS_ENDPOINT_URL",
            };
            return Err(StorageError::Setup {
                url: url.to_string(),
                message: format!("{source}: {why}"),
            });
        }
        builder = builder.endpoint(&endpoint);
    }
    // Set but empty (`AWS_SECRET_ACCESS_KEY=$SECRET` with SECRET unset):
    // the signer took it for an expired session, and said so.
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            return Err(StorageError::Setup {
                url: url.to_string(),
                message: format!("{name} is set but empty: give the S3 credentials in it"),
            });
        }
    }
    let op = Operator::new(builder).map_err(|e| super::setup_error(url, e))?;
    Ok((Box::new(S3), op))
}

impl Backend for S3 {
    /// A PUT with `If-None-Match: *`. A store that silently ignores it
    /// (Garage) overwrites, which is why creators first claim the
    /// creation ([`crate::creation`]).
    fn create_new(&self, storage: &Storage, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let len = data.len() as u64;
        let data = bytes::Bytes::from(data);
        // Retried as any write is (a connection cut as a new repository's
        // config went up failed its first backup at once): a repeat of a
        // write that went through finds the object there, which counts as
        // written, as it does the first time.
        let written = storage.run(|op| {
            let data = data.clone();
            async move {
                match op.write_with(key, data).if_not_exists(true).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(false),
                    Err(e) => Err(e),
                }
            }
        });
        match written {
            Ok(true) => {
                storage.count_bytes(len);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(storage.fail("write", key, e)),
        }
    }
}
