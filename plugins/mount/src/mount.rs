//! `obnam mount MOUNTPOINT`: the checks before mounting, the mount, and
//! serving it until it is unmounted.
//!
//! The mount is made by `fusermount3` (Debian package `fuse3`), asked for
//! `auto_unmount`: fusermount3 then stays behind as a small helper that
//! unmounts when obnam's end of a socket it shares with it closes,
//! however obnam ends (even `kill -9`). `fusermount3 -u MOUNTPOINT` (or
//! `umount` as root) ends the mount the ordinary way: the session ends,
//! and the command returns successfully.
//!
//! Ctrl-C (or SIGTERM, SIGHUP) does not rely on the helper. The helper
//! unmounts only if the file system is no longer connected (its `stat`
//! fails with `ENOTCONN`): otherwise, it reasons, another process took
//! the FUSE device over. But when a process ends, the kernel may close
//! its socket before its FUSE device, and a helper that runs in between
//! (on a busy machine, now and then) leaves the mount in place. So the
//! plugin listens on the host's `run-interrupted` hook, called before
//! the process ends, and unmounts itself ([`on_interrupted`]: a lazy
//! `fusermount3 -u -z`, which a busy mount does not stop).
//!
//! `auto_unmount` needs `allow_other`, which fusermount3 grants to
//! ordinary users only if `/etc/fuse.conf` says `user_allow_other`; the
//! FUSE layer still admits only the mounting user and root. Where that is
//! not allowed, the mount is made without it and obnam says that after
//! an interruption the mount point needs `fusermount3 -u`.
//!
//! Before mounting: fusermount3 must be on `PATH`, `/dev/fuse` must
//! exist, and the mount point must be a directory that nothing is
//! mounted on yet ([`mounted_at`] reads `/proc/self/mountinfo`): the
//! kernel would otherwise let a second mount hide the first.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use fuser::{Config, MountOption, Session, SessionACL};
use plugin_api::names::{escape, escape_path};
use plugin_api::tracing;
use plugin_api::{Context, Result};

use crate::fs::ObnamFs;

/// Threads serving FUSE requests: enough that a directory listing or a
/// second reader does not wait for one reader's chunks.
pub const THREADS: usize = 4;

/// The FUSE device.
const DEV_FUSE: &str = "/dev/fuse";

/// The mount helpers looked for on `PATH`, in order.
const HELPERS: [&str; 2] = ["fusermount3", "fusermount"];

/// `ENOTCONN`: what `stat` of a FUSE mount whose program ended gives.
const ENOTCONN: i32 = 107;

/// The client named by `--client-name`.
fn client(ctx: &Context<'_>) -> Result<String> {
    match ctx.string("client-name")? {
        Some(name) if !name.is_empty() => Ok(name),
        _ => plugin_api::bail!("a client name must not be empty: set --client-name"),
    }
}

/// The first of `names` found in the folders of `path` (a `PATH` value).
pub fn find_in_path(path: &OsStr, names: &[&str]) -> Option<PathBuf> {
    for name in names {
        for dir in std::env::split_paths(path) {
            let candidate = dir.join(name);
            if let Ok(meta) = fs::metadata(&candidate) {
                if meta.is_file() && meta.mode() & 0o111 != 0 {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

/// Undo the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let n = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
                out.push(n as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The file-system type mounted at `point`, if something is, from the
/// text of `/proc/self/mountinfo` (the last mount there wins, as it is
/// the one that shows).
pub fn mounted_at(mountinfo: &str, point: &Path) -> Option<String> {
    let point = point.as_os_str().as_bytes();
    let mut found = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(at) = fields.get(4) else { continue };
        if unescape(at) != point {
            continue;
        }
        // After the optional fields, " - " and then the type.
        let fstype = fields
            .iter()
            .position(|f| *f == "-")
            .and_then(|dash| fields.get(dash + 1))
            .unwrap_or(&"unknown");
        found = Some(fstype.to_string());
    }
    found
}

/// The mount point, checked: an existing directory with nothing mounted
/// on it. Returns its canonical path.
fn check_mountpoint(given: &Path) -> Result<PathBuf> {
    let shown = escape_path(given);
    let meta = match fs::metadata(given) {
        Ok(meta) => meta,
        Err(e) if e.raw_os_error() == Some(ENOTCONN) => plugin_api::bail!(
            "{shown} is a FUSE mount whose program has ended (transport endpoint is not \
             connected): unmount it with 'fusermount3 -u {shown}' first"
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            plugin_api::bail!("mount point {shown} does not exist: make the directory first")
        }
        Err(e) => plugin_api::bail!("cannot use {shown} as a mount point: {e}"),
    };
    if !meta.is_dir() {
        plugin_api::bail!("mount point {shown} is not a directory");
    }
    let canonical = fs::canonicalize(given)
        .map_err(|e| plugin_api::Error::msg(format!("cannot use {shown} as a mount point: {e}")))?;
    match fs::read_to_string("/proc/self/mountinfo") {
        Ok(info) => {
            if let Some(fstype) = mounted_at(&info, &canonical) {
                let what = if fstype == "fuse.obnam" {
                    "an obnam mount".to_string()
                } else {
                    format!("a {fstype} mount")
                };
                plugin_api::bail!(
                    "{shown} is already a mount point ({what}): unmount it first \
                     (fusermount3 -u {shown}), or mount somewhere else"
                );
            }
        }
        Err(e) => tracing::warn!("mount: cannot read /proc/self/mountinfo: {e}"),
    }
    Ok(canonical)
}

/// Check that FUSE can be used here: a mount helper and the device.
fn check_fuse() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(helper) = find_in_path(&path, &HELPERS) else {
        plugin_api::bail!(
            "FUSE is not available: obnam mount needs fusermount3, which is not on PATH \
             (on Debian and Ubuntu: apt install fuse3)"
        );
    };
    match fs::metadata(DEV_FUSE) {
        Ok(meta) if meta.file_type().is_char_device() => Ok(helper),
        Ok(_) => plugin_api::bail!("FUSE is not available: {DEV_FUSE} is not a device"),
        Err(e) if e.kind() == ErrorKind::NotFound => plugin_api::bail!(
            "FUSE is not available: {DEV_FUSE} does not exist (load the kernel module with \
             'modprobe fuse'; in a container, pass the device in)"
        ),
        Err(e) => plugin_api::bail!("FUSE is not available: {DEV_FUSE}: {e}"),
    }
}

/// The mount options: read-only, no devices and no set-user-id programs
/// from a backup, permissions checked by the kernel from the modes as
/// backed up, and named `obnam` in the mount table.
fn config(auto_unmount: bool) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
        MountOption::FSName("obnam".into()),
        MountOption::Subtype("obnam".into()),
    ];
    if auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
        config.acl = SessionACL::RootAndOwner;
    }
    config.n_threads = Some(THREADS);
    config
}

/// The user and group the process runs as, from `/proc/self`'s owner.
fn owner() -> (u32, u32) {
    fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

/// A mount being served: what an interruption unmounts.
struct Serving {
    /// The fusermount3 (or fusermount) that made it.
    helper: PathBuf,
    /// Its mount point (canonical).
    point: PathBuf,
}

/// The mount this process is serving, if any.
static SERVING: Mutex<Option<Serving>> = Mutex::new(None);

fn serving() -> std::sync::MutexGuard<'static, Option<Serving>> {
    SERVING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `run-interrupted` callback: unmount the mount being served, if
/// any, before the process ends (see the module's docs for why the
/// auto-unmount helper is not enough). Lazy, so that a program with a
/// file open in the mount does not keep it there.
pub fn on_interrupted(_: &Context<'_>, _: &mut plugin_api::serde_json::Value) -> Result<()> {
    let Some(Serving { helper, point }) = serving().take() else {
        return Ok(());
    };
    let out = Command::new(&helper)
        .args(["-u", "-z", "--"])
        .arg(&point)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            tracing::info!("mount: unmounted {} on interruption", escape_path(&point))
        }
        Ok(out) => tracing::warn!(
            "mount: could not unmount {} on interruption ({}): {}",
            escape_path(&point),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => tracing::warn!(
            "mount: could not run {} to unmount {}: {e}",
            helper.display(),
            escape_path(&point)
        ),
    }
    Ok(())
}

/// `obnam mount MOUNTPOINT`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let mountpoint = match args.as_slice() {
        [one] => PathBuf::from(one),
        [] => plugin_api::bail!("mount needs a mount point: obnam mount MOUNTPOINT"),
        _ => plugin_api::bail!("mount takes one mount point, got {} arguments", args.len()),
    };
    let client = client(ctx)?;
    let cache_bytes = ctx.bytesize("mount-cache-size")?;
    let helper = check_fuse()?;
    let canonical = check_mountpoint(&mountpoint)?;
    let shown = escape_path(&mountpoint);

    // The client's name as messages show it, as every command shows names.
    let who = escape(client.as_bytes());

    let repo = ctx.repository(false)?;
    // Before the generations are listed: a prune's deletion then waits
    // for the mount to end (see `Repository::lock_for_reading`).
    if let Err(e) = repo.lock_for_reading(&client) {
        tracing::warn!(
            "mount: could not take a reader's lock ({e}): a prune that runs while it is \
             mounted may delete what it shows"
        );
    }
    let gens = repo.generations(&client)?;
    if gens.is_empty() {
        plugin_api::bail!(
            "client '{who}' has no generations in repository {}: nothing to mount",
            repo.url()
        );
    }
    let count = gens.len();
    let make_fs = || {
        ObnamFs::new(
            repo.clone(),
            client.clone(),
            gens.clone(),
            cache_bytes,
            owner(),
        )
    };

    tracing::info!(
        "mount: mounting {count} generations of {who} at {shown} with {}",
        helper.display()
    );
    let session = match Session::new(make_fs(), &canonical, &config(true)) {
        Ok(session) => session,
        Err(e) if e.to_string().contains("user_allow_other") => {
            tracing::info!("mount: fusermount3 refused auto_unmount: {e}");
            let session = Session::new(make_fs(), &canonical, &config(false))
                .map_err(|e| plugin_api::Error::msg(format!("cannot mount at {shown}: {e}")))?;
            tracing::warn!(
                "mounted without auto_unmount (it needs 'user_allow_other' in \
                 /etc/fuse.conf): if obnam is killed (kill -9), run 'fusermount3 -u {shown}'"
            );
            session
        }
        Err(e) => plugin_api::bail!("cannot mount at {shown}: {}", e.to_string().trim()),
    };
    *serving() = Some(Serving {
        helper,
        point: canonical.clone(),
    });
    let said = match ctx.output_format()?.is_json() {
        // A program that asked for JSON reads JSON.
        true => {
            let mut mounted = serde_json::Map::new();
            progress::bytes_fields(&mut mounted, "mountpoint", canonical.as_os_str().as_bytes());
            progress::bytes_fields(&mut mounted, "client", client.as_bytes());
            mounted.insert("generations".into(), count.into());
            ctx.outln(&serde_json::Value::Object(mounted).to_string())
        }
        false => ctx.outln(&format!(
            "Mounted {count} generation{} of client {who} at {shown} (read-only). \
             Unmount with 'fusermount3 -u {shown}' or Ctrl-C.",
            if count == 1 { "" } else { "s" }
        )),
    };
    let served = said.and_then(|()| {
        session
            .run()
            .map_err(|e| plugin_api::Error::msg(format!("the mount at {shown} failed: {e}")))
    });
    serving().take();
    served?;
    tracing::info!("mount: {shown} was unmounted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw
41 30 0:40 / /tmp/with\\040space rw,nosuid,nodev - fuse.obnam obnam ro,user_id=0
42 30 0:41 / /tmp/m rw master:3 - fuse.sshfs host: rw
";

    #[test]
    fn mount_points_are_found_with_their_type() {
        assert_eq!(
            mounted_at(MOUNTINFO, Path::new("/tmp")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            mounted_at(MOUNTINFO, Path::new("/tmp/with space")).as_deref(),
            Some("fuse.obnam")
        );
        assert_eq!(
            mounted_at(MOUNTINFO, Path::new("/tmp/m")).as_deref(),
            Some("fuse.sshfs")
        );
        assert_eq!(mounted_at(MOUNTINFO, Path::new("/tmp/other")), None);
        assert_eq!(mounted_at(MOUNTINFO, Path::new("/tmp/with")), None);
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape("a\\040b"), b"a b");
        assert_eq!(unescape("a\\134b"), b"a\\b");
        assert_eq!(unescape("a\\012"), b"a\n");
        assert_eq!(unescape("trailing\\"), b"trailing\\");
        assert_eq!(unescape("\\9zz"), b"\\9zz");
    }

    #[test]
    fn helpers_are_found_on_path_and_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_in_path(&path, &HELPERS), None);
        let plain = dir.path().join("fusermount");
        fs::write(&plain, "").unwrap();
        assert_eq!(find_in_path(&path, &HELPERS), None);
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path(&path, &HELPERS), Some(plain));
        let three = dir.path().join("fusermount3");
        fs::write(&three, "").unwrap();
        fs::set_permissions(&three, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path(&path, &HELPERS), Some(three));
    }

    #[test]
    fn mount_points_must_be_directories() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_mountpoint(&dir.path().join("nope")).unwrap_err();
        assert!(err.message().contains("does not exist"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = check_mountpoint(&file).unwrap_err();
        assert!(err.message().contains("not a directory"), "{err}");
        assert_eq!(
            check_mountpoint(dir.path()).unwrap(),
            fs::canonicalize(dir.path()).unwrap()
        );
    }
}
