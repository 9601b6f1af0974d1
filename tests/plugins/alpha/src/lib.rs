//! Test plugin "alpha": declares a setting of every type, creates a typed
//! hook (`alpha-event`), a JSON hook (`alpha-json`) and a filter hook
//! (`alpha-data`), and offers subcommands that exercise them, fail, panic
//! and log. The black-box tests in `tests/` drive it through the real host.

#![forbid(unsafe_code)]

use obnam_testplugin_payloads::AlphaEvent;
use plugin_api::types::RString;
use plugin_api::{App, Context, Plugin, Result, Setting, PRIORITY_DEFAULT};

#[derive(Default)]
struct Alpha;

const GROUP: &str = "Alpha testing";

impl Plugin for Alpha {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::string("alpha-string")
                .help("a string")
                .group(GROUP),
        );
        app.add_setting(
            Setting::string_list("alpha-list")
                .help("a list")
                .metavar("ITEM")
                .group(GROUP),
        );
        app.add_setting(
            Setting::boolean("alpha-bool")
                .help("a boolean")
                .group(GROUP),
        );
        app.add_setting(
            Setting::integer("alpha-int")
                .help("an integer")
                .default("7")
                .group(GROUP),
        );
        app.add_setting(
            Setting::bytesize("alpha-size")
                .help("a byte size")
                .default("1GiB")
                .group(GROUP),
        );
        app.add_setting(
            Setting::choice("alpha-choice", &["red", "green", "blue"])
                .help("a colour")
                .group(GROUP),
        );
        app.add_setting(
            Setting::choice("alpha-choice2", &["one", "two"])
                .default("two")
                .help("a number"),
        );

        app.new_hook::<AlphaEvent>("alpha-event");
        app.new_json_hook("alpha-json");
        app.new_filter_hook("alpha-data");

        app.add_callback::<AlphaEvent, _>("alpha-event", PRIORITY_DEFAULT, |_, ev| {
            ev.counter += 1;
            append(&mut ev.trail, "alpha500");
            Ok(())
        });

        app.add_subcommand("alpha-show", "", "print alpha's settings", show);
        app.add_subcommand(
            "alpha-hook",
            "[WORD]",
            "call the alpha-event hook and print the trail",
            |ctx, args| {
                let hook = ctx.hook::<AlphaEvent>("alpha-event")?;
                let start = args
                    .first()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut ev = AlphaEvent {
                    counter: 0,
                    trail: start.into(),
                };
                ctx.call(hook, &mut ev)?;
                ctx.outln(&format!("counter={} trail={}", ev.counter, ev.trail))
            },
        );
        app.add_subcommand(
            "alpha-env",
            "NAME [ARG...]",
            "print the environment variable NAME and the bytes of each ARG",
            |ctx, args| {
                use std::os::unix::ffi::OsStrExt;
                let name = args.first().cloned().unwrap_or_default();
                match std::env::var_os(&name) {
                    Some(v) => ctx.outln(&format!(
                        "{}={}",
                        name.to_string_lossy(),
                        v.to_string_lossy()
                    ))?,
                    None => ctx.outln(&format!("{} unset", name.to_string_lossy()))?,
                }
                for arg in args.iter().skip(1) {
                    ctx.outln(&format!("{:?}", arg.as_bytes()))?;
                }
                Ok(())
            },
        );
        app.add_subcommand("alpha-json", "", "call the alpha-json hook", |ctx, _| {
            let mut value = serde_json::json!({"seen": []});
            ctx.call_json("alpha-json", &mut value)?;
            ctx.outln(&value.to_string())
        });
        app.add_subcommand(
            "alpha-filter",
            "TEXT",
            "write TEXT through alpha-data and read it back",
            |ctx, args| {
                let text = args
                    .first()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (stored, tags) =
                    ctx.filter_write("alpha-data", "test/1", text.clone().into_bytes())?;
                ctx.outln(&format!("tags={}", tags.join(",")))?;
                ctx.outln(&format!("stored={}", String::from_utf8_lossy(&stored)))?;
                let back = ctx.filter_read("alpha-data", "test/1", stored, &tags)?;
                ctx.outln(&format!("read={}", String::from_utf8_lossy(&back)))
            },
        );
        app.add_subcommand(
            "alpha-unfilter",
            "DATA TAG...",
            "read DATA through alpha-data with the given tags",
            |ctx, args| {
                let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
                let data = args.next().unwrap_or_default();
                let tags: Vec<String> = args.collect();
                let back = ctx.filter_read("alpha-data", "test/2", data.into_bytes(), &tags)?;
                ctx.outln(&String::from_utf8_lossy(&back))
            },
        );
        app.add_subcommand("alpha-fail", "", "fail with an error", |_, _| {
            plugin_api::bail!("alpha failed on purpose")
        });
        app.add_subcommand("alpha-panic", "", "panic", |_, _| -> Result<()> {
            panic!("alpha panics on purpose")
        });
        app.add_subcommand("alpha-log", "", "log at every level", |ctx, _| {
            use plugin_api::tracing;
            tracing::error!(code = 1, "alpha error event");
            tracing::warn!("alpha warn event");
            tracing::info!("alpha info event");
            tracing::debug!("alpha debug event");
            tracing::trace!("alpha trace event");
            ctx.outln("logged")
        });
        Ok(())
    }
}

fn append(trail: &mut RString, mark: &str) {
    if !trail.is_empty() {
        trail.push(' ');
    }
    trail.push_str(mark);
}

fn show(ctx: &Context<'_>, _: Vec<std::ffi::OsString>) -> Result<()> {
    ctx.outln(&format!("alpha-string={:?}", ctx.string("alpha-string")?))?;
    ctx.outln(&format!("alpha-list={:?}", ctx.string_list("alpha-list")?))?;
    ctx.outln(&format!("alpha-bool={}", ctx.boolean("alpha-bool")?))?;
    ctx.outln(&format!("alpha-int={}", ctx.integer("alpha-int")?))?;
    ctx.outln(&format!("alpha-size={}", ctx.bytesize("alpha-size")?))?;
    ctx.outln(&format!("alpha-choice={:?}", ctx.string("alpha-choice")?))?;
    ctx.outln(&format!("alpha-choice2={:?}", ctx.string("alpha-choice2")?))?;
    ctx.outln(&format!("client-name={:?}", ctx.string("client-name")?))
}

plugin_api::export_plugin!("alpha", Alpha);
