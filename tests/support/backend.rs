//! The storage backends the black-box tests run against: a local folder,
//! a real OpenSSH SFTP server and real S3-compatible servers (Garage, and
//! moto for AWS-faithful behaviour), all on 127.0.0.1.
//!
//! The servers are started by `.ci/run` with `../shared/bench/start-sftp.sh`
//! and `start-s3.sh`, whose exported variables tell the tests where they
//! are:
//!
//! * SFTP: `SFTP_URL` (`sftp://user@127.0.0.1:PORT/folder`), `SFTP_KEY`,
//!   `SFTP_KNOWN_HOSTS`; the server's host key must be in the user's
//!   `~/.ssh/known_hosts` (`start-sftp.sh trust`), because ssh reads the
//!   home folder of the user's account, not `$HOME`;
//! * Garage: `S3_ENDPOINT`, `S3_BUCKET`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`;
//! * moto: `OBNAM_TEST_MOTO_ENDPOINT` (same bucket name and keys).
//!
//! A test for a backend whose server is not there is skipped with a
//! message, unless `OBNAM_TEST_REQUIRE_REMOTE=1` (set by `.ci/run`), when
//! it fails: CI must never pass by skipping.

use std::process::Command;

use crate::TestEnv;

/// Where a test's repositories live.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A folder under the test's own temporary folder.
    Local,
    /// A folder on the SFTP server.
    Sftp {
        base_url: String,
        key: String,
        known_hosts: String,
    },
    /// A prefix in a bucket of an S3 server.
    S3 {
        /// `garage` or `moto`, for messages.
        name: &'static str,
        endpoint: String,
        bucket: String,
    },
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Skip (print why and return `None`) or, under CI, fail.
fn missing(what: &str, vars: &str) -> Option<Backend> {
    if var("OBNAM_TEST_REQUIRE_REMOTE").as_deref() == Some("1") {
        panic!("{what} is required (OBNAM_TEST_REQUIRE_REMOTE=1) but {vars} is not set");
    }
    eprintln!("skipped: no {what} ({vars} not set; .ci/run starts one)");
    None
}

impl Backend {
    /// A local folder: always there.
    pub fn local() -> Option<Backend> {
        Some(Backend::Local)
    }

    /// The SFTP server, if one was started.
    pub fn sftp() -> Option<Backend> {
        match (var("SFTP_URL"), var("SFTP_KEY"), var("SFTP_KNOWN_HOSTS")) {
            (Some(base_url), Some(key), Some(known_hosts)) => Some(Backend::Sftp {
                base_url,
                key,
                known_hosts,
            }),
            _ => missing("SFTP server", "SFTP_URL/SFTP_KEY/SFTP_KNOWN_HOSTS"),
        }
    }

    /// The Garage S3 server, if one was started.
    pub fn garage() -> Option<Backend> {
        match (
            var("S3_ENDPOINT"),
            var("S3_BUCKET"),
            var("AWS_ACCESS_KEY_ID"),
        ) {
            (Some(endpoint), Some(bucket), Some(_)) => Some(Backend::S3 {
                name: "garage",
                endpoint,
                bucket,
            }),
            _ => missing("S3 server", "S3_ENDPOINT/S3_BUCKET/AWS_ACCESS_KEY_ID"),
        }
    }

    /// The moto S3 server, if one was started.
    pub fn moto() -> Option<Backend> {
        match (
            var("OBNAM_TEST_MOTO_ENDPOINT"),
            var("S3_BUCKET"),
            var("AWS_ACCESS_KEY_ID"),
        ) {
            (Some(endpoint), Some(bucket), Some(_)) => Some(Backend::S3 {
                name: "moto",
                endpoint,
                bucket,
            }),
            _ => missing("moto S3 server", "OBNAM_TEST_MOTO_ENDPOINT"),
        }
    }

    /// Whether this is the local backend (whose files a test may inspect).
    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local)
    }

    /// A repository URL unique to this test world.
    pub fn repo_url(&self, env: &TestEnv, name: &str) -> String {
        // The test's temporary folder name is unique on this machine, and
        // so in the shared servers too.
        let unique = env
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self {
            Backend::Local => env.path().join(name).display().to_string(),
            Backend::Sftp { base_url, .. } => format!("{base_url}/{unique}/{name}"),
            Backend::S3 { bucket, .. } => format!("s3://{bucket}/{unique}/{name}"),
        }
    }

    /// The arguments that point obnam at the backend's server.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backend::Local => Vec::new(),
            Backend::Sftp { key, .. } => vec!["--ssh-key".into(), key.clone()],
            Backend::S3 { endpoint, .. } => vec!["--s3-endpoint".into(), endpoint.clone()],
        }
    }

    /// The server's address, for a proxy in front of it; `None` for a
    /// local folder.
    pub fn server_address(&self) -> Option<std::net::SocketAddr> {
        let url = match self {
            Backend::Local => return None,
            Backend::Sftp { base_url, .. } => base_url,
            Backend::S3 { endpoint, .. } => endpoint,
        };
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        rest.split('/').next()?.parse().ok()
    }

    /// The same server, reached through `port` on 127.0.0.1 (a proxy).
    pub fn via_port(&self, port: u16) -> Backend {
        let Some(server) = self.server_address() else {
            return self.clone();
        };
        let through = format!("127.0.0.1:{port}");
        let mut proxied = self.clone();
        match &mut proxied {
            Backend::Local => {}
            Backend::Sftp { base_url, .. } => {
                *base_url = base_url.replace(&server.to_string(), &through)
            }
            Backend::S3 { endpoint, .. } => {
                *endpoint = endpoint.replace(&server.to_string(), &through)
            }
        }
        proxied
    }

    /// An obnam command for the backend: `env`'s command, with the
    /// backend's arguments and the repository URL.
    pub fn obnam(&self, env: &TestEnv, url: &str) -> Command {
        let mut cmd = env.obnam();
        cmd.arg("--repository").arg(url).args(self.args());
        cmd
    }
}
