//! Test plugin "beta": subscribes to the hooks that "alpha" creates, at
//! several priorities, with a JSON callback, filters (one may fail), and a
//! callback that fails or panics on demand; with `OBNAM_TEST_BETA_REPORT`
//! set, it prints a line after every backup (`backup-finished`).

#![forbid(unsafe_code)]

use obnam_testplugin_payloads::AlphaEvent;
use plugin_api::{
    App, Context, DataFilter, Plugin, Result, Setting, PRIORITY_DEFAULT, PRIORITY_EARLY,
    PRIORITY_LATE,
};

#[derive(Default)]
struct Beta;

fn mark(ev: &mut AlphaEvent, mark: &str) -> Result<()> {
    if ev.trail.as_str().split(' ').any(|w| w == "panic") && mark == "beta750" {
        panic!("beta was asked to panic");
    }
    if ev.trail.as_str().split(' ').any(|w| w == "fail") && mark == "beta750" {
        plugin_api::bail!("beta refuses the event");
    }
    ev.counter += 1;
    if !ev.trail.is_empty() {
        ev.trail.push(' ');
    }
    ev.trail.push_str(mark);
    Ok(())
}

/// Reverses the bytes: a reversible filter whose effect is easy to see.
struct Reverse;

impl DataFilter for Reverse {
    fn encode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        if data.windows(5).any(|w| w == b"plain") {
            // Left unchanged: no tag must be recorded.
            return Ok(None);
        }
        Ok(Some(data.iter().rev().copied().collect()))
    }

    fn decode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>> {
        if data.starts_with(b"!") {
            plugin_api::bail!("{context}: reversed data may not start with '!'");
        }
        Ok(data.iter().rev().copied().collect())
    }
}

/// Upper-cases ASCII, remembering nothing: not reversible, so it only
/// encodes data that is already upper-case-safe (digits).
struct Brackets;

impl DataFilter for Brackets {
    fn encode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity(data.len() + 2);
        out.push(b'[');
        out.extend_from_slice(data);
        out.push(b']');
        Ok(Some(out))
    }

    fn decode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Vec<u8>> {
        match data {
            [b'[', inner @ .., b']'] => Ok(inner.to_vec()),
            _ => plugin_api::bail!("not bracketed"),
        }
    }
}

impl Plugin for Beta {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        // A setting that belongs to other plugins' subcommands: their help
        // lists it, the rest do not.
        app.add_setting(
            Setting::string("beta-note")
                .metavar("TEXT")
                .help("a note for alpha-show and backup")
                .group("Beta testing")
                .subcommands(&["alpha-show", "backup", "no-such-subcommand"]),
        );
        // Registered late-first on purpose: order must follow priority.
        app.add_callback::<AlphaEvent, _>("alpha-event", PRIORITY_LATE, |_, ev| {
            mark(ev, "beta750")
        });
        app.add_callback::<AlphaEvent, _>("alpha-event", PRIORITY_DEFAULT, |_, ev| {
            mark(ev, "beta500")
        });
        app.add_callback::<AlphaEvent, _>("alpha-event", PRIORITY_EARLY, |_, ev| {
            mark(ev, "beta250")
        });
        app.add_json_callback(
            "alpha-json",
            PRIORITY_DEFAULT,
            |_: &Context<'_>, value: &mut serde_json::Value| {
                if let Some(seen) = value["seen"].as_array_mut() {
                    seen.push("beta".into());
                }
                value["beta"] = serde_json::json!({"answer": 42});
                Ok(())
            },
        );
        // A report after each backup, printed as the plugin guide shows:
        // with a JSON output format it must not reach standard output.
        if std::env::var_os("OBNAM_TEST_BETA_REPORT").is_some() {
            app.add_json_callback(
                plugin_api::payloads::BACKUP_FINISHED,
                PRIORITY_DEFAULT,
                |ctx: &Context<'_>, value: &mut serde_json::Value| {
                    ctx.outln(&format!("beta: backup finished: {}", value["generation"]))
                },
            );
        }
        // Brackets runs first on write (lower priority), so it is undone last.
        app.add_filter("alpha-data", PRIORITY_LATE, "reverse", Reverse);
        app.add_filter("alpha-data", PRIORITY_EARLY, "brackets", Brackets);
        Ok(())
    }
}

plugin_api::export_plugin!("beta", Beta);
