//! Ages as people write them: `N` followed by a unit, `s` (seconds), `m`
//! (minutes), `h` (hours), `d` (days) or `w` (weeks); `90m`, `36h`, `2d`.
//! A plain `N` is seconds. Nagios plugins commonly take ages this way, and
//! so did Obnam 1's `--warn-age`.

/// An age in seconds, from its text; the error names the bad part (the
/// caller says where the text came from).
pub fn parse(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "'{text}' is not an age: an age is a whole number with an optional unit \
             (s, m, h, d, w; without one, seconds), such as 36h or 2d"
        ));
    }
    let scale: i64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "'{text}' has an unknown unit '{other}' (use s, m, h, d or w)"
            ))
        }
    };
    let too_large = || format!("'{text}' is too large");
    let n: i64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(scale).ok_or_else(too_large)
}

/// An age in words: the largest units that fit, two of them at most
/// ("1d 2h", "5m 3s", "0s").
pub fn words(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let mut left = secs.unsigned_abs();
    let units = [
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ];
    let mut parts = Vec::new();
    for (name, size) in units {
        if left >= size && parts.len() < 2 {
            parts.push(format!("{}{name}", left / size));
            left %= size;
        } else if !parts.is_empty() {
            // Two adjacent units at most: "1w 3h" would read as precise.
            break;
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    format!("{sign}{}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        // A unit is optional, as the error about a bad age says.
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("45").unwrap(), 45);
        assert_eq!(parse("45s").unwrap(), 45);
        assert_eq!(parse("90m").unwrap(), 5400);
        assert_eq!(parse("36h").unwrap(), 129_600);
        assert_eq!(parse("2d").unwrap(), 172_800);
        assert_eq!(parse("1w").unwrap(), 604_800);
        assert_eq!(parse(" 3d ").unwrap(), 259_200);
    }

    #[test]
    fn bad_ages_name_the_bad_part() {
        for (text, part) in [
            ("", "whole number with an optional unit"),
            ("d", "without one, seconds"),
            ("-1d", "whole number"),
            ("1.5d", "unknown unit '.5d'"),
            ("3x", "unknown unit 'x'"),
            ("99999999999999999999d", "too large"),
            ("999999999999999w", "too large"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(part), "{text}: {err}");
            assert!(
                err.starts_with(&format!("'{}'", text.trim())),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn ages_in_words() {
        assert_eq!(words(0), "0s");
        assert_eq!(words(59), "59s");
        assert_eq!(words(93_784), "1d 2h");
        assert_eq!(words(90_000), "1d 1h");
        assert_eq!(words(86_400 + 60), "1d");
        assert_eq!(words(-3600), "-1h");
    }
}
