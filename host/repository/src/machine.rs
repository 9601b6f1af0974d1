//! Which machine made a generation.
//!
//! A client is a name, and it defaults to the host name: two machines of
//! one name (clones of one template, `raspberrypi`, `localhost`) were one
//! client without a word. Each backup read every file again, as its
//! previous generation was the other's; `forget` kept the latest of
//! either and deleted the other's backups; and where inode numbers and
//! change times are not compared (`--ignore-inode --ignore-ctime`), a
//! file of equal size and times was taken as unchanged, and the other
//! machine's content recorded for it. So each generation records a
//! digest of the machine that made it, and a backup whose client's latest
//! generation another machine made says so, and reads every file.
//!
//! A machine is named by its systemd machine id (`/etc/machine-id`, else
//! `/var/lib/dbus/machine-id`), else by its host name. The record holds a
//! digest of it keyed by the repository's id, so that generations do not
//! tell which machines use other repositories.

use sha2::{Digest, Sha256};

/// This machine's identity: `given` (development: tests play several
/// machines), else its machine id, else its host name.
fn identity(given: Option<&str>) -> String {
    if let Some(given) = given {
        return given.to_string();
    }
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|id| id.trim().to_string())
        .find(|id| !id.is_empty())
        .unwrap_or_else(|| format!("host {}", crate::lock::host_name()))
}

/// The digest generations of repository `repository_id` record of this
/// machine (see the module's docs).
pub fn digest(repository_id: &str, given: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(b"obnam machine\0");
    hash.update(repository_id.as_bytes());
    hash.update(b"\0");
    hash.update(identity(given).as_bytes());
    hex::encode(&hash.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_has_one_digest_per_repository() {
        assert_eq!(digest("r1", Some("m1")), digest("r1", Some("m1")));
        assert_ne!(digest("r1", Some("m1")), digest("r1", Some("m2")));
        assert_ne!(digest("r1", Some("m1")), digest("r2", Some("m1")));
        assert_eq!(digest("r1", None).len(), 32);
    }
}
