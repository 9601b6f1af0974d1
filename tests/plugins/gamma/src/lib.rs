//! Test plugin "gamma": every registration here is wrong in some way the
//! host must notice, warn about and survive; one subcommand works.

#![forbid(unsafe_code)]

use abi_stable::StableAbi;
use plugin_api::{App, Plugin, Result, Setting, PRIORITY_DEFAULT};

/// Not the payload type of `alpha-event`.
#[repr(C)]
#[derive(StableAbi)]
pub struct WrongEvent {
    pub counter: u32,
}

#[derive(Default)]
struct Gamma;

impl Plugin for Gamma {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_callback::<WrongEvent, _>("alpha-event", PRIORITY_DEFAULT, |_, ev| {
            ev.counter += 1000;
            Ok(())
        });
        app.add_callback::<WrongEvent, _>("no-such-hook", PRIORITY_DEFAULT, |_, _| Ok(()));
        app.add_setting(Setting::string("Bad Name").help("refused: not a valid name"));
        app.add_setting(Setting::integer("alpha-int").help("refused: alpha declares it"));
        app.add_setting(Setting::string("plugin-dir").help("refused: reserved"));
        app.add_setting(Setting::string("dry-run").help("refused: an alias of pretend"));
        app.add_setting(Setting::integer("ssh-owner").help("refused: obnam sets its variable"));
        app.add_setting(Setting::choice("gamma-twice", &["a", "a"]).help("refused: a twice"));
        app.add_setting(Setting::choice("gamma-blank", &["a", " "]).help("refused: a blank"));
        app.add_setting(
            Setting::string("gamma-grouped")
                .group("")
                .help("taken, under the default group"),
        );
        app.add_setting(
            Setting::boolean("bundled-plugins").help("refused: --no-bundled-plugins is obnam's"),
        );
        app.add_subcommand("alpha-show", "", "refused: alpha has it", |_, _| Ok(()));
        app.add_subcommand("gamma-ok", "", "works despite the rest", |ctx, _| {
            ctx.outln("gamma ok")
        });
        Ok(())
    }
}

plugin_api::export_plugin!("gamma", Gamma);
