//! Figures for people, the same in every command's output.

/// Bytes in decimal units: `1.2 GB`, `340.0 kB`, `17 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units_step_by_a_thousand() {
        assert_eq!(super::bytes(17), "17 B");
        assert_eq!(super::bytes(340_000), "340.0 kB");
        assert_eq!(super::bytes(1_234_567_890), "1.2 GB");
    }
}
