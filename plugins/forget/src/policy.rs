//! Retention policies: what `--keep` says, parsed and checked.
//!
//! The syntax is Obnam's: a comma-separated list of rules, each a count
//! followed by a unit — `h` (hourly), `d` (daily), `w` (weekly), `m`
//! (monthly), `y` (yearly) — or a plain count, which keeps that many of the
//! newest generations whatever their times. `72h,7d,5w,12m,1y` keeps the
//! newest generation of each of the last 72 hours that have one, of the
//! last 7 days, and so on. A bad rule is refused naming the rule, never
//! guessed at: `--keep` decides what is deleted.

use std::fmt;

/// The calendar period a rule counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn from_suffix(c: char) -> Option<Unit> {
        match c {
            'h' => Some(Unit::Hour),
            'd' => Some(Unit::Day),
            'w' => Some(Unit::Week),
            'm' => Some(Unit::Month),
            'y' => Some(Unit::Year),
            _ => None,
        }
    }

    /// The adjective that names a rule of this unit in reports.
    pub fn adjective(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }
}

/// One rule of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Keep the newest `n` generations.
    Last(u32),
    /// Keep the newest generation of each of the last `n` periods of
    /// `unit` that have one.
    Every(u32, Unit),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Last(n) => write!(f, "last {n}"),
            Rule::Every(n, unit) => write!(f, "{} {n}", unit.adjective()),
        }
    }
}

/// A parsed `--keep` value: its rules in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// Why a `--keep` value was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// The largest count a rule may have: more than a century of hours, and
/// small enough that no arithmetic on it can overflow.
const MAX_COUNT: u32 = 1_000_000;

impl Policy {
    /// Parse Obnam's policy syntax, e.g. `72h,7d,5w,12m,1y` or `10`. The
    /// error says what is wrong; the caller says where the text came from.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let bad =
            |part: &str, why: &str| PolicyError(format!("bad rule '{part}' in '{text}': {why}"));
        if text.trim().is_empty() {
            return Err(PolicyError(
                "the policy is empty; give rules such as 7d,4w,12m or a count".into(),
            ));
        }
        let mut rules = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(part, "an empty rule (two commas, or one at an end)"));
            }
            let (digits, unit) = match part.chars().last() {
                Some(c) if c.is_ascii_digit() => (part, None),
                Some(c) => match Unit::from_suffix(c) {
                    Some(unit) => (&part[..part.len() - c.len_utf8()], Some(unit)),
                    None => {
                        return Err(bad(
                            part,
                            &format!(
                                "unknown unit '{c}' (use h, d, w, m or y, or no unit for a count)"
                            ),
                        ))
                    }
                },
                None => unreachable!("empty parts were refused above"),
            };
            if digits.trim_end() != digits && !digits.trim_end().is_empty() {
                // `7 d`: a whole number all the same.
                return Err(bad(
                    part,
                    "a rule is written without a space between the count and its unit, \
                     such as 7d",
                ));
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    part,
                    "the count must be a whole number, such as 7 in 7d",
                ));
            }
            let n: u32 = digits
                .parse()
                .ok()
                .filter(|&n| n <= MAX_COUNT)
                .ok_or_else(|| bad(part, &format!("the count is larger than {MAX_COUNT}")))?;
            if n == 0 {
                return Err(bad(part, "a count of 0 keeps nothing; leave the rule out"));
            }
            let rule = match unit {
                None => Rule::Last(n),
                Some(unit) => Rule::Every(n, unit),
            };
            if rules.iter().any(|r: &Rule| same_kind(r, &rule)) {
                return Err(bad(
                    part,
                    match unit {
                        None => "the policy already has a count (a rule with no unit)",
                        Some(_) => "the policy already has a rule of this unit",
                    },
                ));
            }
            rules.push(rule);
        }
        Ok(Policy { rules })
    }
}

fn same_kind(a: &Rule, b: &Rule) -> bool {
    match (a, b) {
        (Rule::Last(_), Rule::Last(_)) => true,
        (Rule::Every(_, x), Rule::Every(_, y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obnams_syntax_parses_into_rules() {
        let p = Policy::parse("72h,7d,5w,12m,1y").unwrap();
        assert_eq!(
            p.rules,
            vec![
                Rule::Every(72, Unit::Hour),
                Rule::Every(7, Unit::Day),
                Rule::Every(5, Unit::Week),
                Rule::Every(12, Unit::Month),
                Rule::Every(1, Unit::Year),
            ]
        );
        assert_eq!(Policy::parse("10").unwrap().rules, vec![Rule::Last(10)]);
        assert_eq!(
            Policy::parse(" 3 , 2d ").unwrap().rules,
            vec![Rule::Last(3), Rule::Every(2, Unit::Day)]
        );
    }

    #[test]
    fn bad_policies_name_the_bad_part() {
        for (text, part) in [
            ("7x", "'7x'"),
            ("-3d", "'-3d'"),
            ("7d,,1y", "''"),
            ("7d,", "''"),
            ("d", "'d'"),
            ("0d", "'0d'"),
            ("1.5d", "'1.5d'"),
            ("7d,3d", "'3d'"),
            ("99999999999d", "'99999999999d'"),
            ("7D", "'7D'"),
            ("7dé", "'7dé'"),
        ] {
            let e = Policy::parse(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
            assert!(e.starts_with("bad rule "), "{text}: {e}");
        }
        // What is wrong is said: the space, a second count.
        assert!(Policy::parse("7 d")
            .unwrap_err()
            .to_string()
            .contains("without a space between the count and its unit"));
        assert!(Policy::parse("10,5")
            .unwrap_err()
            .to_string()
            .contains("already has a count (a rule with no unit)"));
        assert!(Policy::parse("7d,3d")
            .unwrap_err()
            .to_string()
            .contains("already has a rule of this unit"));
        assert!(Policy::parse("").unwrap_err().to_string().contains("empty"));
        assert!(Policy::parse("  ")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
