//! Figures for people, the same in every command's output.

/// Bytes in decimal units with one decimal: `17 B`, `340.0 kB`, `1.2 GB`
/// (a value that would round to `1000.0` of a unit is shown in the next).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A count and the noun it counts, singular for one: `1 file`, `0 files`,
/// `2 generations`. Since 0.1.4.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::count(1, "file", "files"), "1 file");
        assert_eq!(super::count(0, "file", "files"), "0 files");
        assert_eq!(super::count(2, "directory", "directories"), "2 directories");
    }

    #[test]
    fn units_step_by_a_thousand() {
        assert_eq!(super::bytes(17), "17 B");
        assert_eq!(super::bytes(340_000), "340.0 kB");
        assert_eq!(super::bytes(1_234_567_890), "1.2 GB");
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(999), "999 B");
        assert_eq!(super::bytes(1000), "1.0 kB");
        assert_eq!(super::bytes(999_999), "1.0 MB");
        assert_eq!(super::bytes(u64::MAX), "18.4 EB");
    }
}
