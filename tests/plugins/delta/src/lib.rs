//! Test plugin "delta": every kind of registration declared where it is
//! defined, with `plugin_api::submit!`, beside one subcommand registered by
//! hand in `Plugin::enable` (the two styles mix).

#![forbid(unsafe_code)]

use std::ffi::OsString;

use plugin_api::declare::{
    AddCallback, AddFilter, AddJsonCallback, AddSetting, AddSubcommand, NewFilterHook, NewHook,
    NewJsonHook,
};
use plugin_api::payloads::{ExcludeCandidate, BACKUP_EXCLUDE, RUN_INTERRUPTED};
use plugin_api::{
    App, Context, DataFilter, Plugin, Result, Setting, PRIORITY_EARLY, PRIORITY_LATE,
};

plugin_api::submit!(AddSetting::new(|| {
    Setting::string("delta-word")
        .metavar("WORD")
        .default("hello")
        .help("the word delta-say starts with")
        .group("Delta testing")
        .subcommands(&["delta-say"])
}));

plugin_api::submit!(NewJsonHook::new("delta-json"));

plugin_api::submit!(AddSubcommand::new(
    "delta-say",
    "[WORD]...",
    "pass the words through the delta-json hook and print them",
    say
));

fn say(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let mut words = vec![ctx.string("delta-word")?.unwrap_or_default()];
    words.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut value = plugin_api::serde_json::json!({ "words": words });
    ctx.call_json("delta-json", &mut value)?;
    ctx.outln(&value["words"].to_string())
}

// Declared late first: the priorities, not the source order, decide.
plugin_api::submit!(AddJsonCallback::new("delta-json", PRIORITY_LATE, shout));
plugin_api::submit!(AddJsonCallback::new(
    "delta-json",
    PRIORITY_EARLY,
    add_please
));

fn shout(_: &Context<'_>, value: &mut plugin_api::serde_json::Value) -> Result<()> {
    if let Some(words) = value["words"].as_array_mut() {
        for w in words {
            *w = w.as_str().unwrap_or_default().to_uppercase().into();
        }
    }
    Ok(())
}

fn add_please(_: &Context<'_>, value: &mut plugin_api::serde_json::Value) -> Result<()> {
    if let Some(words) = value["words"].as_array_mut() {
        words.push("please".into());
    }
    Ok(())
}

// A typed hook of the plugin's own, with an `ExcludeCandidate` payload
// (any `StableAbi` type would do): declared, so it exists for others.
plugin_api::submit!(NewHook::<ExcludeCandidate>::new("delta-typed"));

// Leaves out of backups the files called `delta-skip`.
plugin_api::submit!(AddCallback::new(BACKUP_EXCLUDE, PRIORITY_EARLY, skip_named));

fn skip_named(_: &Context<'_>, candidate: &mut ExcludeCandidate) -> Result<()> {
    if candidate.path().file_name() == Some("delta-skip".as_ref()) {
        candidate.exclude_because("delta leaves out files called delta-skip");
    }
    Ok(())
}

// Waits until its standard input ends: a command to interrupt.
plugin_api::submit!(AddSubcommand::new(
    "delta-wait",
    "",
    "print 'waiting' and wait until standard input ends",
    wait
));

fn wait(ctx: &Context<'_>, _: Vec<OsString>) -> Result<()> {
    ctx.outln("waiting")?;
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)?;
    Ok(())
}

// Writes what the host's `run-interrupted` hook says into the file that
// DELTA_INTERRUPTED names.
plugin_api::submit!(AddJsonCallback::new(
    RUN_INTERRUPTED,
    PRIORITY_EARLY,
    note_interruption
));

fn note_interruption(_: &Context<'_>, value: &mut plugin_api::serde_json::Value) -> Result<()> {
    if let Some(file) = std::env::var_os("DELTA_INTERRUPTED") {
        std::fs::write(file, value.to_string())?;
    }
    Ok(())
}

plugin_api::submit!(NewFilterHook::new("delta-data"));
plugin_api::submit!(AddFilter::new(
    "delta-data",
    PRIORITY_EARLY,
    "delta-rot13",
    || Rot13
));

/// ROT13 on ASCII letters: its own inverse.
struct Rot13;

impl DataFilter for Rot13 {
    fn encode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(Some(data.iter().map(|&b| rot13(b)).collect()))
    }

    fn decode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.iter().map(|&b| rot13(b)).collect())
    }
}

fn rot13(b: u8) -> u8 {
    match b {
        b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
        _ => b,
    }
}

/// The hand-written part: a subcommand that uses the declared filter hook.
#[derive(Default)]
struct Delta;

impl Plugin for Delta {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_subcommand(
            "delta-filter",
            "TEXT",
            "write TEXT through delta-data, print it and what reads back",
            |ctx, args| {
                let text = args
                    .first()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (written, tags) = ctx.filter_write("delta-data", "test", text.into_bytes())?;
                let read = ctx.filter_read("delta-data", "test", written.clone(), &tags)?;
                ctx.outln(&format!(
                    "{} {} {}",
                    String::from_utf8_lossy(&written),
                    tags.join(","),
                    String::from_utf8_lossy(&read)
                ))
            },
        );
        Ok(())
    }
}

plugin_api::export_plugin!("delta", Delta);
