//! Which generations of one client a forget run keeps, and why.
//!
//! This is the whole of forget's judgement, kept apart from the
//! repository so that it can be tested on made-up histories. The input is
//! a client's generations in commit order (oldest first, as `generations`
//! lists them); the output is one [`Decision`] per generation with the
//! reasons behind it, which `--pretend` shows.
//!
//! The rules, in the order they are applied:
//!
//! * Checkpoints are judged apart from complete generations. One older
//!   than the client's newest complete generation is removed by any
//!   forget run: nothing should restore from it. Of the checkpoints newer
//!   than every complete generation (an unfinished run), the newest is
//!   kept and the older ones removed, since the newest covers the most.
//! * Generations named on the command line are removed, and only they.
//! * Under a policy, the latest complete generation is always kept; a
//!   count `N` keeps the newest N; a unit rule `Nd` keeps the newest
//!   generation of each of the last N days that have one (hours, ISO
//!   weeks, months and years alike), in the given time zone. A
//!   generation no rule keeps is removed.
//! * With neither names nor a policy, complete generations are kept.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::policy::{Policy, Rule, Unit};

/// What forget knows about one generation.
#[derive(Clone, Debug)]
pub struct Gen {
    pub id: String,
    /// When the run that made it started, in ns since the epoch: the
    /// moment the generation stands for.
    pub started_ns: i64,
    pub is_checkpoint: bool,
}

/// What a forget run asks for.
pub enum Selection<'a> {
    /// Remove these generations (by id).
    Named(&'a HashSet<String>),
    /// Keep what the policy keeps.
    Policy(&'a Policy),
    /// Only remove checkpoints nothing should restore from.
    CheckpointsOnly,
}

/// The verdict on one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    /// Why: the rules that keep it, or the one reason it goes.
    pub reasons: Vec<String>,
}

impl Decision {
    fn keep(reason: impl Into<String>) -> Decision {
        Decision {
            keep: true,
            reasons: vec![reason.into()],
        }
    }

    fn remove(reason: impl Into<String>) -> Decision {
        Decision {
            keep: false,
            reasons: vec![reason.into()],
        }
    }
}

/// Decide on every generation of `gens` (commit order, oldest first).
pub fn decide(gens: &[Gen], selection: &Selection<'_>, tz: &TimeZone) -> Vec<Decision> {
    let latest_complete = gens.iter().rposition(|g| !g.is_checkpoint);
    let newest_checkpoint = gens.iter().rposition(|g| g.is_checkpoint);
    let kept_by = match selection {
        Selection::Policy(policy) => apply_policy(gens, policy, tz),
        _ => vec![Vec::new(); gens.len()],
    };
    gens.iter()
        .zip(kept_by)
        .enumerate()
        .map(|(i, (g, reasons))| match selection {
            Selection::Named(ids) if ids.contains(&g.id) => Decision::remove("named"),
            _ if g.is_checkpoint => match latest_complete {
                Some(c) if i < c => {
                    Decision::remove("checkpoint older than the latest complete generation")
                }
                _ if Some(i) == newest_checkpoint => {
                    Decision::keep("newest checkpoint of an unfinished run")
                }
                _ => Decision::remove("checkpoint superseded by a newer checkpoint"),
            },
            Selection::Named(_) => Decision::keep("not named"),
            Selection::CheckpointsOnly => Decision::keep("no --keep given"),
            Selection::Policy(_) if reasons.is_empty() => Decision::remove("not kept by --keep"),
            Selection::Policy(_) => Decision {
                keep: true,
                reasons,
            },
        })
        .collect()
}

/// The first place where the history's times run backwards: a generation
/// (the second of the pair) that started before one committed ahead of it
/// (the first). One client's runs never overlap, so the clock of one of
/// them was wrong (a machine whose clock resets at boot, say), and the
/// calendar rules of a policy, which go by these times, may keep the
/// wrong backups: forget says so.
pub fn times_out_of_order(gens: &[Gen]) -> Option<(&Gen, &Gen)> {
    gens.windows(2)
        .find(|pair| pair[1].started_ns < pair[0].started_ns)
        .map(|pair| (&pair[0], &pair[1]))
}

/// For each generation of `gens`, the rules of `policy` that keep it
/// (none for a checkpoint: checkpoints are judged apart). The rules count
/// complete generations from the newest, which is always kept as the
/// latest.
fn apply_policy(gens: &[Gen], policy: &Policy, tz: &TimeZone) -> Vec<Vec<String>> {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); gens.len()];
    let newest_first: Vec<usize> = (0..gens.len())
        .rev()
        .filter(|&i| !gens[i].is_checkpoint)
        .collect();
    if let Some(&latest) = newest_first.first() {
        reasons[latest].push("latest".to_string());
    }
    for rule in &policy.rules {
        match *rule {
            Rule::Last(n) => {
                for &i in newest_first.iter().take(n as usize) {
                    reasons[i].push(rule.to_string());
                }
            }
            Rule::Every(n, unit) => {
                let mut seen = HashSet::new();
                for &i in &newest_first {
                    if seen.len() == n as usize {
                        break;
                    }
                    if seen.insert(period(gens[i].started_ns, unit, tz)) {
                        reasons[i].push(rule.to_string());
                    }
                }
            }
        }
    }
    reasons
}

/// The calendar period of `unit` that the instant `ns` falls in, in `tz`,
/// as a number that is equal for two instants exactly when the periods
/// are the same.
fn period(ns: i64, unit: Unit, tz: &TimeZone) -> i64 {
    let Ok(ts) = Timestamp::from_nanosecond(i128::from(ns)) else {
        // Outside jiff's range (years beyond ±9999): its own period.
        return ns;
    };
    let t = ts.to_zoned(tz.clone());
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match unit {
        // With the offset from UTC: where the clocks go back, the hour
        // from 01:00 comes twice (01:30 summer time and 01:30 winter
        // time are an hour apart), and the backup of one of those two
        // real hours was removed as of the same hour as the other's.
        Unit::Hour => {
            let offset_minutes = i64::from(t.offset().seconds()) / 60;
            (((y * 100 + m) * 100 + d) * 100 + h) * 10_000 + offset_minutes + 5_000
        }
        Unit::Day => (y * 100 + m) * 100 + d,
        Unit::Week => {
            let w = t.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Unit::Month => y * 100 + m,
        Unit::Year => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;

    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200 * 1_000_000_000;

    fn gen(id: &str, started_ns: i64) -> Gen {
        Gen {
            id: id.into(),
            started_ns,
            is_checkpoint: false,
        }
    }

    #[test]
    fn a_history_whose_times_run_backwards_is_found() {
        let ordered = [gen("a", MONDAY), gen("b", MONDAY), gen("c", MONDAY + DAY)];
        assert!(times_out_of_order(&ordered).is_none());
        // A clock reset after the second backup: the third says 1970.
        let reset = [gen("a", MONDAY), gen("b", MONDAY + DAY), gen("c", 3 * HOUR)];
        let (before, after) = times_out_of_order(&reset).unwrap();
        assert_eq!((before.id.as_str(), after.id.as_str()), ("b", "c"));
    }

    fn checkpoint(id: &str, started_ns: i64) -> Gen {
        Gen {
            is_checkpoint: true,
            ..gen(id, started_ns)
        }
    }

    fn kept(gens: &[Gen], policy: &str) -> Vec<String> {
        let policy = Policy::parse(policy).unwrap();
        decide(gens, &Selection::Policy(&policy), &TimeZone::UTC)
            .iter()
            .zip(gens)
            .filter(|(d, _)| d.keep)
            .map(|(_, g)| g.id.clone())
            .collect()
    }

    /// Backups every six hours for `days` days from MONDAY.
    fn four_a_day(days: i64) -> Vec<Gen> {
        (0..days * 4)
            .map(|i| gen(&format!("g{i}"), MONDAY + i * 6 * HOUR))
            .collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_of_the_last_days() {
        let gens = four_a_day(10);
        // The newest of each day is the 18:00 one: g3, g7, ... g39.
        assert_eq!(kept(&gens, "3d"), vec!["g31", "g35", "g39"]);
    }

    #[test]
    fn hourly_counts_hours_that_have_a_generation() {
        let gens = four_a_day(2);
        assert_eq!(kept(&gens, "3h"), vec!["g5", "g6", "g7"]);
    }

    #[test]
    fn weekly_uses_iso_weeks_monthly_and_yearly_calendar_ones() {
        // Days 0..21 from a Monday: three ISO weeks.
        let gens: Vec<Gen> = (0..21)
            .map(|i| gen(&format!("d{i}"), MONDAY + i * DAY))
            .collect();
        assert_eq!(kept(&gens, "2w"), vec!["d13", "d20"]);
        assert_eq!(kept(&gens, "5w"), vec!["d6", "d13", "d20"]);
        // One generation on the 1st of each month of 2026 and 2027.
        let months: Vec<Gen> = (0..24)
            .map(|i| {
                let date = jiff::civil::date(2026 + (i / 12) as i16, (i % 12 + 1) as i8, 1);
                let ns = date
                    .to_zoned(TimeZone::UTC)
                    .unwrap()
                    .timestamp()
                    .as_nanosecond() as i64;
                gen(&format!("m{i}"), ns)
            })
            .collect();
        assert_eq!(kept(&months, "2m"), vec!["m22", "m23"]);
        assert_eq!(kept(&months, "2y"), vec!["m11", "m23"]);
    }

    #[test]
    fn a_count_keeps_the_newest_and_rules_add_up() {
        let gens = four_a_day(3);
        assert_eq!(kept(&gens, "2"), vec!["g10", "g11"]);
        assert_eq!(kept(&gens, "2,3d"), vec!["g3", "g7", "g10", "g11"]);
    }

    #[test]
    fn the_latest_is_kept_with_its_reasons() {
        let gens = four_a_day(3);
        let policy = Policy::parse("1d,2").unwrap();
        let d = decide(&gens, &Selection::Policy(&policy), &TimeZone::UTC);
        assert_eq!(d[11].reasons, vec!["latest", "daily 1", "last 2"]);
        assert_eq!(d[10].reasons, vec!["last 2"]);
        assert_eq!(d[9], Decision::remove("not kept by --keep"));
    }

    #[test]
    fn the_time_zone_decides_where_a_day_ends() {
        // 23:00 and 01:00 UTC are two UTC days but one day at UTC-3.
        let gens = vec![gen("a", MONDAY - HOUR), gen("b", MONDAY + HOUR)];
        let policy = Policy::parse("2d").unwrap();
        let at = |tz: TimeZone| {
            decide(&gens, &Selection::Policy(&policy), &tz)
                .iter()
                .filter(|d| d.keep)
                .count()
        };
        assert_eq!(at(TimeZone::UTC), 2);
        assert_eq!(at(TimeZone::fixed(jiff::tz::offset(-3))), 1);
    }

    #[test]
    fn the_hour_that_comes_twice_when_the_clocks_go_back_is_two_hours() {
        // 2026-11-01 in New York: 01:30 EDT (05:30Z), 01:30 EST (06:30Z).
        let tz = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let first = 1_793_511_000 * 1_000_000_000; // 2026-11-01T05:30:00Z
        let gens = vec![gen("edt", first), gen("est", first + HOUR)];
        let kept = |policy: &str| {
            let policy = Policy::parse(policy).unwrap();
            decide(&gens, &Selection::Policy(&policy), &tz)
                .iter()
                .filter(|d| d.keep)
                .count()
        };
        assert_eq!(kept("24h"), 2);
        // Days are days: one.
        assert_eq!(kept("1d"), 1);
    }

    #[test]
    fn checkpoints_before_the_latest_complete_go_and_the_newest_after_stays() {
        let gens = vec![
            checkpoint("c1", MONDAY),
            gen("g1", MONDAY),
            checkpoint("c2", MONDAY + HOUR),
            checkpoint("c3", MONDAY + HOUR),
        ];
        for selection in [
            Selection::CheckpointsOnly,
            Selection::Policy(&Policy::parse("1").unwrap()),
        ] {
            let d = decide(&gens, &selection, &TimeZone::UTC);
            let keep: Vec<bool> = d.iter().map(|d| d.keep).collect();
            assert_eq!(keep, vec![false, true, false, true]);
        }
        // With no complete generation at all, the newest checkpoint stays.
        let only = vec![checkpoint("c1", MONDAY), checkpoint("c2", MONDAY)];
        let d = decide(&only, &Selection::CheckpointsOnly, &TimeZone::UTC);
        assert_eq!((d[0].keep, d[1].keep), (false, true));
    }

    #[test]
    fn named_generations_go_and_only_they() {
        let gens = four_a_day(1);
        let ids: HashSet<String> = ["g1".to_string(), "g3".to_string()].into();
        let d = decide(&gens, &Selection::Named(&ids), &TimeZone::UTC);
        let keep: Vec<bool> = d.iter().map(|d| d.keep).collect();
        assert_eq!(keep, vec![true, false, true, false]);
    }

    #[test]
    fn clocks_out_of_order_still_keep_one_per_period() {
        // Commit order disagrees with the clock: each day is still kept once.
        let gens = vec![
            gen("a", MONDAY + DAY),
            gen("b", MONDAY),
            gen("c", MONDAY + DAY + HOUR),
        ];
        assert_eq!(kept(&gens, "5d"), vec!["b", "c"]);
    }
}
