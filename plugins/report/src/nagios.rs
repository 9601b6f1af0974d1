//! `obnam nagios-last-backup-age`: a Nagios (or Icinga, Naemon, ...)
//! check of how old the client's latest complete backup is.
//!
//! It prints one status line, `OBNAM STATUS: text|perfdata`, and exits
//! with the code Nagios reads: 0 OK, 1 WARNING (older than `--warn-age`),
//! 2 CRITICAL (older than `--critical-age`, or no complete backup at all),
//! 3 UNKNOWN (the check itself could not be made: a bad setting, a
//! repository that cannot be read). Checkpoints of an unfinished backup do
//! not count: they are not a backup to rely on. The age runs from the end
//! of the backup run. Exactly `--warn-age` old is still OK: the state
//! changes once the age is over the limit.

use std::ffi::OsString;

use plugin_api::names::escape;
use plugin_api::{Context, GenerationInfo, Result};

use crate::age;

/// The states of a Nagios check, as exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// The limits, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub warn: i64,
    pub critical: i64,
}

/// The state for a backup `age_ns` old.
pub fn judge(age_ns: i128, limits: Limits) -> State {
    let over = |secs: i64| age_ns > i128::from(secs) * 1_000_000_000;
    if over(limits.critical) {
        State::Critical
    } else if over(limits.warn) {
        State::Warning
    } else {
        State::Ok
    }
}

/// The state and the status line (without the `OBNAM STATE: ` prefix).
fn check(ctx: &Context<'_>, args: &[OsString]) -> Result<(State, String)> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "nagios-last-backup-age takes no arguments, got '{}'",
            arg.to_string_lossy()
        );
    }
    let age = |setting: &str| -> Result<i64> {
        let text = ctx.string(setting)?.unwrap_or_default();
        age::parse(&text).map_err(|why| ctx.setting_error(setting, &why))
    };
    let limits = Limits {
        warn: age("warn-age")?,
        critical: age("critical-age")?,
    };
    if limits.critical < limits.warn {
        // Of two values that do not fit together, the error names where
        // each came from.
        let warn_from = ctx.setting_origin("warn-age")?;
        return Err(ctx.setting_error(
            "critical-age",
            &format!(
                "{} is less than --warn-age {} (from {warn_from}): a backup would be critical \
                 before it is a warning",
                age::words(limits.critical),
                age::words(limits.warn)
            ),
        ));
    }
    let now_ns = now_ns(ctx)?;
    let client = match ctx.string("client-name")? {
        Some(name) if !name.is_empty() => name,
        _ => plugin_api::bail!("a client name must not be empty: set --client-name"),
    };
    let repo = ctx.repository(false)?;
    let gens = repo.generations(&client)?;
    // A damaged record may be of the newest backup (no listing can tell):
    // the check says so, at least as a warning, on its line, which is
    // all a monitoring system reads (the warning on stderr it drops).
    let damaged = repo.damaged_generations(&client)?;
    let (state, text) = judge_latest(&client, &gens, limits, now_ns, &repo.url());
    if damaged.is_empty() {
        return Ok((state, text));
    }
    let (line, perf) = match text.split_once('|') {
        Some((line, perf)) => (line.to_string(), format!("|{perf}")),
        None => (text, String::new()),
    };
    let ids: Vec<&str> = damaged.iter().map(|d| d.id.as_str()).collect();
    let records = match ids.len() {
        1 => "record",
        _ => "records",
    };
    Ok((
        if state == State::Ok {
            State::Warning
        } else {
            state
        },
        format!(
            "{line}; the damaged generation {records} {} may be newer: 'obnam fsck' reports \
             them{perf}",
            ids.join(", ")
        ),
    ))
}

/// The state and line for the latest complete generation in `gens`.
fn judge_latest(
    client: &str,
    gens: &[GenerationInfo],
    limits: Limits,
    now_ns: i64,
    url: &str,
) -> (State, String) {
    let Some(latest) = gens.iter().rev().find(|g| !g.is_checkpoint) else {
        let also = if gens.is_empty() {
            String::new()
        } else {
            match gens.len() {
                1 => " (only 1 checkpoint of an unfinished run)".to_string(),
                n => format!(" (only {n} checkpoints of unfinished runs)"),
            }
        };
        return (
            State::Critical,
            format!(
                "client {} has no complete backup in {url}{also}",
                shown(client)
            ),
        );
    };
    let age_ns = i128::from(now_ns) - i128::from(latest.ended_ns);
    if age_ns < -CLOCK_SKEW_NS {
        // Not a backup to call fresh: its time says nothing about when
        // it was made (a wrong clock here or on the client).
        return (
            State::Warning,
            format!(
                "latest backup of {} ended {} in the future (generation {}): the clocks \
                 of this machine and of the one that made it disagree|age={}s;{};{};0",
                shown(client),
                age::words((-age_ns / 1_000_000_000) as i64),
                latest.id,
                age_ns / 1_000_000_000,
                limits.warn,
                limits.critical
            ),
        );
    }
    // A little ahead is clocks that differ by a little: just made. The
    // age is whole seconds, rounded up, for the state as for the line
    // and its performance data: 1800.4 s was WARNING over 30 minutes
    // with `age=1800s;1800`, which Nagios reads as within the limit.
    const SECOND: i128 = 1_000_000_000;
    let age_ns = (age_ns.max(0) + SECOND - 1) / SECOND * SECOND;
    let state = judge(age_ns, limits);
    (state, describe(client, latest, age_ns, limits))
}

/// A client's name in the status text: escaped as every message shows
/// names, and without `|`, which would end Nagios' text and start its
/// performance data (a name may hold any character `--client-name`
/// takes).
fn shown(client: &str) -> String {
    escape(client.as_bytes()).replace('|', "\\x7c")
}

/// How far in the future a backup may have ended (clocks of two machines
/// that differ a little) and still count as just made: 5 minutes.
const CLOCK_SKEW_NS: i128 = 300 * 1_000_000_000;

fn describe(client: &str, latest: &GenerationInfo, age_ns: i128, limits: Limits) -> String {
    let age_secs = (age_ns / 1_000_000_000) as i64;
    let ended = jiff::Timestamp::from_nanosecond(i128::from(latest.ended_ns))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| latest.ended_ns.to_string());
    format!(
        "latest backup of {} is {} old (generation {}, ended {ended})\
         |age={age_secs}s;{};{};0",
        shown(client),
        age::words(age_secs),
        latest.id,
        limits.warn,
        limits.critical
    )
}

/// Now, or `--testing-now`.
fn now_ns(ctx: &Context<'_>) -> Result<i64> {
    let now = match ctx.string("testing-now")?.filter(|s| !s.is_empty()) {
        Some(text) => text.trim().parse::<jiff::Timestamp>().map_err(|e| {
            ctx.setting_error(
                "testing-now",
                &format!("'{text}' is not a time (RFC 3339, such as 2026-01-05T10:00:00Z): {e}"),
            )
        })?,
        None => jiff::Timestamp::now(),
    };
    i64::try_from(now.as_nanosecond())
        .map_err(|_| ctx.setting_error("testing-now", "it is out of range"))
}

/// `obnam nagios-last-backup-age`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let (state, text) = match check(ctx, &args) {
        Ok(found) => found,
        Err(e) => (State::Unknown, e.message().to_string()),
    };
    let line = format!("OBNAM {}: {text}", state.word());
    if ctx.output_format()?.is_json() {
        // The state for a program, and the line Nagios would get.
        let object = serde_json::json!({
            "state": state.word(),
            "exit_code": state as i32,
            "line": line,
        });
        ctx.outln(&object.to_string())?;
    } else {
        ctx.outln(&line)?;
    }
    ctx.set_exit_code(state as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn boundaries() {
        let limits = Limits {
            warn: 86_400,
            critical: 3 * 86_400,
        };
        assert_eq!(judge(0, limits), State::Ok);
        assert_eq!(judge(-5 * S, limits), State::Ok);
        assert_eq!(judge(86_400 * S, limits), State::Ok);
        assert_eq!(judge(86_400 * S + 1, limits), State::Warning);
        assert_eq!(judge(3 * 86_400 * S, limits), State::Warning);
        assert_eq!(judge(3 * 86_400 * S + 1, limits), State::Critical);
    }
}
