//! Text forms of what the listing and restore commands print: `ls -l`
//! style mode strings, byte sizes and speeds in decimal units, durations,
//! and timestamps in the local time zone.
//!
//! Kept apart from the commands so that they are pure functions with unit
//! tests, and so that every command prints the same thing the same way.

use plugin_api::EntryKind;

/// The `ls -l` mode string of an entry: type letter, then the permission
/// bits with setuid, setgid and sticky shown as `s`/`S` and `t`/`T`.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let type_char = match kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
        EntryKind::CharDevice => 'c',
        EntryKind::BlockDevice => 'b',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special =
        |exec: u32, flag: u32, set: char, unset: char| match (mode & exec != 0, mode & flag != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    let mut s = String::with_capacity(10);
    s.push(type_char);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

/// A byte count in decimal units with one decimal: `512 B`, `1.2 GB`
/// (the one form every bundled command prints).
pub use plugin_api::human::bytes;

/// A speed: bytes per second over `seconds` (a zero duration counts as
/// one millisecond, so that nothing divides by zero).
pub fn speed(n: u64, seconds: f64) -> String {
    let seconds = seconds.max(0.001);
    format!("{}/s", bytes((n as f64 / seconds) as u64))
}

/// A count and its noun, singular for one (`1 file`).
pub use plugin_api::human::count;

/// A duration in seconds with one decimal.
pub fn seconds(s: f64) -> String {
    format!("{s:.1} s")
}

/// A point in time, given as seconds and nanoseconds since the epoch, in
/// the local time zone: `2024-05-01 13:45:07`. Out-of-range values are
/// shown as the raw number of seconds.
pub fn time(secs: i64, nanos: u32) -> String {
    match jiff::Timestamp::new(secs, nanos.min(999_999_999) as i32) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{secs}"),
    }
}

/// Like [`time`], from nanoseconds since the epoch.
pub fn time_ns(ns: i64) -> String {
    time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// A point in time in RFC 3339 form, UTC, to the nanosecond, for JSON.
pub fn time_rfc3339(secs: i64, nanos: u32) -> String {
    match jiff::Timestamp::new(secs, nanos.min(999_999_999) as i32) {
        Ok(t) => t.to_string(),
        Err(_) => format!("@{secs}"),
    }
}

/// Like [`time_rfc3339`], from nanoseconds since the epoch.
pub fn time_rfc3339_ns(ns: i64) -> String {
    time_rfc3339(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// The major and minor numbers of a Linux device number.
pub fn major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_look_like_ls() {
        assert_eq!(mode_string(EntryKind::File, 0o100644), "-rw-r--r--");
        assert_eq!(mode_string(EntryKind::Dir, 0o40755), "drwxr-xr-x");
        assert_eq!(mode_string(EntryKind::Symlink, 0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(EntryKind::File, 0o100000), "----------");
        assert_eq!(mode_string(EntryKind::File, 0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryKind::File, 0o104644), "-rwSr--r--");
        assert_eq!(mode_string(EntryKind::File, 0o102755), "-rwxr-sr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o41777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::Dir, 0o41776), "drwxrwxrwT");
        assert_eq!(mode_string(EntryKind::Fifo, 0o10644), "prw-r--r--");
        assert_eq!(mode_string(EntryKind::CharDevice, 0o20666), "crw-rw-rw-");
        assert_eq!(mode_string(EntryKind::BlockDevice, 0o60660), "brw-rw----");
        assert_eq!(mode_string(EntryKind::Socket, 0o140755), "srwxr-xr-x");
    }

    #[test]
    fn byte_counts_use_decimal_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1000), "1.0 kB");
        assert_eq!(bytes(1_200_823_489), "1.2 GB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(2, "file", "files"), "2 files");
    }

    #[test]
    fn speeds_never_divide_by_zero() {
        assert_eq!(speed(1_000_000, 1.0), "1.0 MB/s");
        assert_eq!(speed(1_000_000, 0.0), "1.0 GB/s");
    }

    #[test]
    fn times_are_formatted_in_full() {
        let t = time(0, 0);
        assert_eq!(t.len(), "1970-01-01 00:00:00".len(), "{t}");
        assert_eq!(time_rfc3339(0, 5), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(time_rfc3339(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(time_rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(time(i64::MAX, 0), format!("@{}", i64::MAX));
    }

    /// glibc's makedev.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        assert_eq!(major_minor(0x801), (8, 1));
        assert_eq!(major_minor(makedev(8, 1)), (8, 1));
        assert_eq!(major_minor(makedev(259, 70000)), (259, 70000));
        assert_eq!(major_minor(makedev(5000, 3)), (5000, 3));
    }
}
