//! Where a repository lives: the repository URL, parsed.
//!
//! * a folder path, or `file:///path`: the local filesystem;
//! * `sftp://[user@]host[:port]/path`: a folder on an SSH server, reached
//!   through the system's `ssh` client (OpenDAL's sftp service);
//! * `s3://bucket[/prefix]`: a bucket (and a prefix in it) of an
//!   S3-compatible store, with `--s3-endpoint` and `--s3-region`.
//!
//! Secrets never appear in a repository URL: a password in the URL is
//! refused (without repeating it), SSH uses keys, and S3 credentials come
//! from the usual `AWS_*` environment variables. So the URL can be shown
//! in every message as it is.
//!
//! The forms are parsed here rather than with the `url` crate, which
//! would not keep them: it percent-encodes a path with spaces (so a
//! folder `my repo` would become `my%20repo`), reads an empty user name
//! (`sftp://@host/r`) as none, accepts port 0 and keeps the brackets of
//! an IPv6 host, each of which this parser treats its own way.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A parsed repository URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local folder (absolute).
    Local(PathBuf),
    /// A folder on an SFTP server.
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// Absolute path of the repository folder on the server.
        path: String,
    },
    /// A prefix in an S3 bucket.
    S3 {
        bucket: String,
        /// Prefix without leading or trailing `/`; may be empty.
        prefix: String,
    },
}

/// Why a URL is not a repository location.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad repository URL '{url}': {reason}")]
pub struct BadUrl {
    /// The URL, with any password removed.
    pub url: String,
    pub reason: String,
}

/// The URL with the password of its user part (if any) removed, for
/// messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

impl Location {
    /// Parse a repository URL.
    pub fn parse(url: &str) -> Result<Location, BadUrl> {
        let bad = |reason: &str| BadUrl {
            url: redacted(url),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(bad("it is empty"));
            }
            // `file:/srv/r`, `s3:bucket`: a URL mistyped, not a folder
            // named so in the current folder (where a new repository
            // would have been made, exit 0).
            if let Some(scheme) = ["file:", "sftp:", "s3:"]
                .into_iter()
                .find(|s| url.starts_with(s))
            {
                return Err(bad(&format!(
                    "{scheme} URLs are written {scheme}//...; a folder whose name starts with \
                     '{scheme}' is written ./{url}"
                )));
            }
            return Ok(Location::Local(absolute(PathBuf::from(url))));
        };
        // `file://localhost/path` is `file:///path` (RFC 8089; a host name
        // in any case). Another host is refused below, naming it.
        let rest = match scheme {
            "file"
                if rest
                    .as_bytes()
                    .get(..9)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"localhost")) =>
            {
                &rest[9..]
            }
            _ => rest,
        };
        // A URL is taken as written: a path with a space is written with
        // the space. An escape such as `%20` would be taken for the three
        // characters, and name another folder than the one meant.
        if matches!(scheme, "file" | "sftp" | "s3") {
            if let Some(escape) = percent_escape(rest) {
                return Err(bad(&format!(
                    "'{escape}' would be taken as it is written: obnam does not decode \
                     %-escapes in a repository URL; write the character itself (a space as \
                     a space, quoting the URL for the shell)"
                )));
            }
        }
        match scheme {
            "file" => {
                if let Some((host, _)) = rest.split_once('/').filter(|(h, _)| !h.is_empty()) {
                    return Err(bad(&format!(
                        "a file:// URL names a folder of this machine, with no host or \
                         localhost (file:///path), not '{host}'"
                    )));
                }
                if !rest.starts_with('/') {
                    return Err(bad("a file:// URL needs an absolute path (file:///path)"));
                }
                // A query or fragment pasted with a URL (`?x=1`, `#top`)
                // would be taken into the folder's name, and make a new
                // repository there.
                if let Some(c) = rest.chars().find(|c| matches!(c, '?' | '#')) {
                    return Err(bad(&format!(
                        "a file:// URL has no query or fragment, and its path would be taken \
                         with the '{c}' and what follows; a folder whose name holds '{c}' is \
                         given as a path, without file://"
                    )));
                }
                Ok(Location::Local(PathBuf::from(rest)))
            }
            "sftp" => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => return Err(bad("it names no folder (sftp://[user@]host[:port]/path)")),
                };
                let (user, hostport) = match authority.rsplit_once('@') {
                    Some((userinfo, _)) if userinfo.contains(':') => {
                        return Err(bad(
                            "it holds a password; obnam logs in with SSH keys (see --ssh-key)",
                        ))
                    }
                    Some((user, hostport)) if !user.is_empty() => {
                        (Some(user.to_string()), hostport)
                    }
                    Some(_) => return Err(bad("its user name is empty")),
                    None => (None, authority),
                };
                let (host, port) = split_port(hostport).map_err(|r| bad(&r))?;
                if host.is_empty() {
                    return Err(bad("it names no host"));
                }
                // ssh would read either as an option of its own.
                if user.as_deref().is_some_and(|u| u.starts_with('-')) || host.starts_with('-') {
                    return Err(bad("a user or host name cannot start with '-'"));
                }
                let path = path.trim_end_matches('/');
                if path.is_empty() {
                    return Err(bad("the repository cannot be the server's root folder"));
                }
                Ok(Location::Sftp {
                    user,
                    host,
                    port,
                    path: path.to_string(),
                })
            }
            "s3" => {
                let (bucket, prefix) = match rest.split_once('/') {
                    Some((b, p)) => (b, p.trim_matches('/')),
                    None => (rest, ""),
                };
                if bucket.contains('@') {
                    return Err(bad(
                        "it holds credentials; give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    ));
                }
                if bucket.is_empty() {
                    return Err(bad("it names no bucket (s3://bucket[/prefix])"));
                }
                // A request's signature is made over the path as the server
                // reads it: `.` and `..` would be resolved on the way, and
                // the request refused as if the credentials were wrong.
                if prefix.split('/').any(|part| matches!(part, "." | "..")) {
                    return Err(bad(
                        "its prefix holds a '.' or '..' part, which S3 does not resolve",
                    ));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                })
            }
            other => Err(bad(&format!(
                "unknown scheme '{other}' (use a folder path, file://, sftp:// or s3://)"
            ))),
        }
    }
}

impl Location {
    /// Parse a repository URL given as bytes. A URL is text, but a local
    /// folder's name (given as a path or a `file://` URL) is any bytes, as
    /// a Linux path is: one that is not UTF-8 (named in Latin-1 by an old
    /// system) is a folder like another.
    pub fn parse_os(url: &OsStr) -> Result<Location, BadUrl> {
        if let Some(text) = url.to_str() {
            return Location::parse(text);
        }
        let bytes = url.as_bytes();
        let bad = |reason: &str| BadUrl {
            url: shown(url),
            reason: reason.to_string(),
        };
        match bytes.windows(3).position(|w| w == b"://") {
            None => Ok(Location::Local(absolute(PathBuf::from(url)))),
            Some(at) if &bytes[..at] == b"file" => {
                let path = &bytes[at + 3..];
                let path = path.strip_prefix(b"localhost").unwrap_or(path);
                if let Some(escape) = percent_escape(&String::from_utf8_lossy(path)) {
                    return Err(bad(&format!(
                        "'{escape}' would be taken as it is written: obnam does not decode \
                         %-escapes in a repository URL; write the character itself"
                    )));
                }
                if !path.starts_with(b"/") {
                    return Err(bad("a file:// URL needs an absolute path (file:///path)"));
                }
                Ok(Location::Local(PathBuf::from(OsStr::from_bytes(path))))
            }
            Some(_) => Err(bad(
                "it is not UTF-8 text, which only a local folder's name may be",
            )),
        }
    }
}

/// A repository URL as messages show it: as given if it is UTF-8 text,
/// else escaped as every command shows a name that is not
/// (`/srv/d\xe9p\xf4t`), so that it is not shown as another name.
pub fn shown(url: &OsStr) -> String {
    match url.to_str() {
        Some(text) => text.to_string(),
        None => crate::names::escape(url.as_bytes()),
    }
}

fn split_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    // [v6 address]:port, or host:port, or host.
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address lacks its closing ']'")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err("unexpected text after the IPv6 address".into()),
        };
    }
    // An IPv6 address has colons of its own: without brackets, which of
    // them starts a port cannot be told (`::1:2322` is an address too).
    if hostport.matches(':').count() > 1 {
        return Err(format!(
            "an IPv6 address must be in brackets: sftp://user@[{hostport}]/path, or \
             sftp://user@[ADDRESS]:PORT/path"
        ));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), Some(parse_port(port)?))),
        None => Ok((hostport.to_string(), None)),
    }
}

/// The first `%XX` escape (two hex digits) in `text`, if any.
fn percent_escape(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2)).find_map(|i| {
        (bytes[i] == b'%' && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit())
            .then(|| &text[i..i + 3])
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("'{p}' is not a port number"))
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|d| d.join(&path))
            .unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            Location::parse("/srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("file:///srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("sftp://me@127.0.0.1:2222/srv/repo/").unwrap(),
            Location::Sftp {
                user: Some("me".into()),
                host: "127.0.0.1".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("sftp://[::1]/r").unwrap(),
            Location::Sftp {
                user: None,
                host: "::1".into(),
                port: None,
                path: "/r".into()
            }
        );
        assert_eq!(
            Location::parse("s3://bucket/a/b/").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3://bucket").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn a_file_url_with_a_query_or_fragment_is_refused() {
        for url in [
            "file:///srv/r?x=1",
            "file:///srv/r#top",
            "file://localhost/srv/a?b",
        ] {
            let e = Location::parse(url).unwrap_err().to_string();
            assert!(e.contains("no query or fragment"), "{url}: {e}");
            assert!(!e.contains("  "), "{url}: {e}");
        }
        // As a path, a name with '?' is a folder's.
        assert_eq!(
            Location::parse("/srv/r?x=1").unwrap(),
            Location::Local(PathBuf::from("/srv/r?x=1"))
        );
    }

    #[test]
    fn bad_urls_are_named_without_their_secrets() {
        let err = Location::parse("sftp://me:hunter2@host/r").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad repository URL 'sftp://me:***@host/r': it holds a password; obnam logs in with SSH keys (see --ssh-key)"
        );
        assert!(!err.to_string().contains("hunter2"));
        let err = Location::parse("s3://AKIA:secret@bucket/x").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Location::parse("sftp://host").is_err());
        assert!(Location::parse("sftp://host/").is_err());
        assert!(Location::parse("sftp://host:99999/r").is_err());
        assert!(Location::parse("s3://").is_err());
        assert!(Location::parse("ftp://host/r")
            .unwrap_err()
            .to_string()
            .contains("unknown scheme 'ftp'"));
        assert!(Location::parse("file://relative").is_err());
        for localhost in ["file://localhost/srv/repo", "file://LocalHost/srv/repo"] {
            assert_eq!(
                Location::parse(localhost).unwrap(),
                Location::Local(PathBuf::from("/srv/repo"))
            );
        }
        // A host of letters that are not ASCII: refused, not a panic.
        assert!(Location::parse("file://\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}/x").is_err());
        assert!(Location::parse("file://\u{e9}/x").is_err());
        let other = Location::parse("file://nas/srv/repo").unwrap_err();
        assert!(other.to_string().contains("not 'nas'"), "{other}");
        for mistyped in [
            "file:/srv/r",
            "file:r",
            "s3:bucket",
            "sftp:host/r",
            "file:///a%20b",
        ] {
            assert!(Location::parse(mistyped).is_err(), "{mistyped}");
        }
        assert_eq!(
            Location::parse("./s3:bucket").unwrap(),
            Location::Local(absolute(PathBuf::from("./s3:bucket")))
        );
        assert!(Location::parse_os(OsStr::from_bytes(b"file:///r\xe9%20x")).is_err());
        assert!(Location::parse("").is_err());
        // An IPv6 address without brackets, %-escapes (taken as written,
        // they would name another folder), and `..` in an S3 prefix.
        let err = Location::parse("sftp://root@::1/r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be in brackets"), "{err}");
        assert!(Location::parse("sftp://root@[::1]/r").is_ok());
        assert!(Location::parse("sftp://root@2001:db8::22/r").is_err());
        let err = Location::parse("sftp://h/with%20space")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'%20' would be taken as it is written"),
            "{err}"
        );
        assert!(Location::parse("s3://b/ta%6Dper").is_err());
        assert!(Location::parse("sftp://ro%6Ft@h/r").is_err());
        assert!(Location::parse("sftp://h/100%/r").is_ok());
        assert!(Location::parse("sftp://-oProxyCommand=x@h/r").is_err());
        assert!(Location::parse("sftp://u@-oProxyCommand=x/r").is_err());
        assert!(Location::parse("sftp://h/with space").is_ok());
        assert!(Location::parse("s3://b/../x").is_err());
        assert!(Location::parse("s3://b/a/./x").is_err());
        assert!(Location::parse("s3://b/a..b/x").is_ok());
        // A local folder is a name, whatever it holds.
        assert!(Location::parse("/srv/with%20space").is_ok());
    }

    #[test]
    fn a_local_folder_need_not_be_utf8() {
        let os = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
        assert_eq!(
            Location::parse_os(&os(b"/srv/d\xe9p\xf4t")).unwrap(),
            Location::Local(PathBuf::from(os(b"/srv/d\xe9p\xf4t")))
        );
        assert_eq!(
            Location::parse_os(&os(b"file:///srv/d\xe9p\xf4t")).unwrap(),
            Location::Local(PathBuf::from(os(b"/srv/d\xe9p\xf4t")))
        );
        assert_eq!(shown(&os(b"/srv/d\xe9p\xf4t")), "/srv/d\\xe9p\\xf4t");
        let err = Location::parse_os(&os(b"sftp://host/d\xe9p\xf4t")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad repository URL 'sftp://host/d\\xe9p\\xf4t': it is not UTF-8 text, which only a local folder's name may be"
        );
        assert!(Location::parse_os(&os(b"file://r\xe9")).is_err());
        assert_eq!(
            Location::parse_os(&os(b"/srv/repo")),
            Location::parse("/srv/repo")
        );
    }
}
