//! Byte sizes as Obnam wrote them: `1GiB`, `10MiB`, `1k` (1000), `1ki` (1024).
//!
//! A number, optional spaces, and an optional unit. Units are
//! case-insensitive; a trailing `b` (or `B`) is optional: `k`, `kb` mean
//! 1000, `ki`, `kib` mean 1024, and so on for `m`, `g`, `t`, `p`. A bare
//! number is bytes.
//!
//! Kept hand-written rather than using the `bytesize` or `parse-size`
//! crates: both accept fractions (`1.5GiB`, which this refuses on purpose
//! with its own message) and other forms obnam never took, their errors
//! are not these messages, and neither formats a size as the largest unit
//! that divides it exactly, which [`format`] must do for `--dump-config`.

/// Why a byte size could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ByteSizeError {
    #[error("'{0}' is not a byte size (expected a number with an optional unit like 10MiB)")]
    Malformed(String),
    #[error("'{0}' has an unknown unit '{1}' (use k, M, G, T, P, optionally with i and B)")]
    UnknownUnit(String, String),
    #[error("'{0}' is too large")]
    TooLarge(String),
    /// A fraction: with the same size in a smaller unit, if it is a whole
    /// number of bytes.
    #[error("'{0}' is not a whole number{hint}", hint = match .1 { Some(n) => format!(": write {n}"), None => " of bytes".to_string() })]
    Fractional(String, Option<String>),
}

const UNITS: [(&str, u32); 5] = [("k", 1), ("m", 2), ("g", 3), ("t", 4), ("p", 5)];

/// Parse a byte size.
pub fn parse(text: &str) -> Result<u64, ByteSizeError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(ByteSizeError::Malformed(text.to_string()));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| ByteSizeError::TooLarge(text.to_string()))?;
    if unit.starts_with(['.', ',']) {
        return Err(ByteSizeError::Fractional(
            text.to_string(),
            whole_form(number, &unit[1..]),
        ));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = multiplier(&unit)
        .ok_or_else(|| ByteSizeError::UnknownUnit(text.to_string(), unit.clone()))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| ByteSizeError::TooLarge(text.to_string()))
}

/// `number.rest` (`rest` being the digits after the point, then the
/// unit) written without a fraction, if it is a whole number of bytes:
/// `1.5MiB` is `1536KiB`, `2.5k` is `2500`.
fn whole_form(number: u64, rest: &str) -> Option<String> {
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, unit) = rest.split_at(split);
    let multiplier = u128::from(multiplier(&unit.trim().to_ascii_lowercase())?);
    let scale = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
    let fraction: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scaled = u128::from(number)
        .checked_mul(scale)?
        .checked_add(fraction)?
        .checked_mul(multiplier)?;
    if scaled % scale != 0 {
        return None;
    }
    Some(format(u64::try_from(scaled / scale).ok()?))
}

fn multiplier(unit: &str) -> Option<u64> {
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    if unit.is_empty() {
        return Some(1);
    }
    let (prefix, binary) = match unit.strip_suffix('i') {
        Some(p) => (p, true),
        None => (unit, false),
    };
    let power = UNITS.iter().find(|(u, _)| *u == prefix)?.1;
    let base: u64 = if binary { 1024 } else { 1000 };
    Some(base.pow(power))
}

/// Format a byte size so that [`parse`] reads it back exactly, using the
/// largest unit that divides it.
pub fn format(n: u64) -> String {
    if n == 0 {
        return "0".to_string();
    }
    for (suffix, base) in [("iB", 1024u64), ("B", 1000u64)] {
        for (unit, power) in UNITS.iter().rev() {
            let m = base.pow(*power);
            if n.is_multiple_of(m) {
                return format!("{}{}{}", n / m, unit.to_ascii_uppercase(), suffix);
            }
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("12345"), Ok(12345));
        assert_eq!(parse(" 7 "), Ok(7));
    }

    #[test]
    fn decimal_and_binary_units() {
        assert_eq!(parse("1k"), Ok(1000));
        assert_eq!(parse("1kb"), Ok(1000));
        assert_eq!(parse("1ki"), Ok(1024));
        assert_eq!(parse("1KiB"), Ok(1024));
        assert_eq!(parse("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse("10M"), Ok(10_000_000));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse("1TiB"), Ok(1 << 40));
        assert_eq!(parse("3B"), Ok(3));
    }

    #[test]
    fn a_fraction_is_refused_with_the_size_written_whole() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            err("1.5MiB"),
            "'1.5MiB' is not a whole number: write 1536KiB"
        );
        assert_eq!(err("2.5k"), "'2.5k' is not a whole number: write 2500");
        assert_eq!(
            err("0.5GiB"),
            "'0.5GiB' is not a whole number: write 512MiB"
        );
        assert_eq!(
            err("1,5 GB"),
            "'1,5 GB' is not a whole number: write 1500MB"
        );
        assert_eq!(err("1.0001k"), "'1.0001k' is not a whole number of bytes");
        assert_eq!(err("1.5"), "'1.5' is not a whole number of bytes");
        assert_eq!(err("1.5x"), "'1.5x' is not a whole number of bytes");
        // What the hint says is the size meant.
        assert_eq!(parse("1536KiB"), Ok(1_572_864));
        assert_eq!(parse("512MiB"), Ok(1 << 29));
    }

    #[test]
    fn bad_sizes_are_named() {
        assert_eq!(parse("lots"), Err(ByteSizeError::Malformed("lots".into())));
        assert_eq!(parse(""), Err(ByteSizeError::Malformed("".into())));
        assert!(matches!(
            parse("5 parsecs"),
            Err(ByteSizeError::UnknownUnit(_, _))
        ));
        assert!(matches!(parse("-1k"), Err(ByteSizeError::Malformed(_))));
        assert!(matches!(
            parse("99999999999PiB"),
            Err(ByteSizeError::TooLarge(_))
        ));
    }

    #[test]
    fn format_reads_back() {
        for n in [
            0,
            1,
            999,
            1000,
            1024,
            1536,
            10 << 20,
            1 << 30,
            5_000_000,
            123_456_789,
        ] {
            assert_eq!(parse(&format(n)), Ok(n), "{n} -> {}", format(n));
        }
        assert_eq!(format(1 << 30), "1GiB");
        assert_eq!(format(2_000_000), "2MB");
    }
}
