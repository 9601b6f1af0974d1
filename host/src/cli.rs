//! The command line, built at run time from the registries.
//!
//! Every setting becomes a global long option (`--NAME VALUE`; booleans get
//! `--NAME` and `--no-NAME`; list settings repeat), listed in `--help` under
//! its help group. Every subcommand becomes a clap subcommand whose
//! arguments are passed to its plugin as raw bytes. A few options are not
//! settings because they decide where settings and plugins come from; they
//! are scanned from the arguments before any plugin is loaded ([`prescan`]).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use plugin_api::abi::SettingKind;

use crate::exit::EXIT_SUCCESS;
use crate::registry::Registry;
use crate::settings::{SettingDef, Value};

const META_HEADING: &str = "Configuration and plugins";
const ARGS_ID: &str = "ARGS";

/// What must be known before plugins are loaded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prescan {
    pub plugin_dirs: Vec<PathBuf>,
    pub no_bundled_plugins: bool,
    pub quiet: bool,
    /// JSON output asked for (`--output-format json` or `json-lines`, on
    /// the command line or in `OBNAM_OUTPUT_FORMAT`): for errors found
    /// before the settings are read (a usage error, a bad config file).
    pub json: bool,
}

/// Scan the arguments for the options that decide which plugins load.
/// clap parses them again later, with the rest, so that they are checked
/// and listed in `--help`; and [`Invocation::plugins_as_prescanned`]
/// checks that it read them as this scan did. (This scan does not know
/// which plugin options take a value, so it takes `--alpha-name
/// --plugin-dir=X` for a plugin folder, where clap, knowing the plugin,
/// takes it for the value of `--alpha-name`.)
pub fn prescan(args: &[OsString]) -> Prescan {
    // `quiet` from the environment counts; one on the command line wins.
    // (From a config file it counts only once the plugins, which say
    // what a config file may hold, are loaded.)
    let mut pre = Prescan {
        quiet: std::env::var("OBNAM_QUIET").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "yes" | "true" | "on" | "1"
            )
        }),
        json: std::env::var("OBNAM_OUTPUT_FORMAT").is_ok_and(|v| is_json_format(v.trim())),
        ..Prescan::default()
    };
    let mut iter = args.iter().skip(1).peekable();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        match text {
            "--" => break,
            "--plugin-dir" => {
                if let Some(dir) = value_of_option(&mut iter) {
                    pre.plugin_dirs.push(home_expanded(PathBuf::from(dir)));
                }
            }
            "--no-bundled-plugins" => pre.no_bundled_plugins = true,
            // The last of the two wins, as clap will have it.
            "--quiet" => pre.quiet = true,
            "--no-quiet" => pre.quiet = false,
            "--output-format" => {
                if let Some(format) = value_of_option(&mut iter) {
                    pre.json = format.to_str().is_some_and(is_json_format);
                }
            }
            _ => {
                if let Some(dir) = text.strip_prefix("--plugin-dir=") {
                    pre.plugin_dirs.push(home_expanded(PathBuf::from(dir)));
                }
                if let Some(format) = text.strip_prefix("--output-format=") {
                    pre.json = is_json_format(format);
                }
            }
        }
    }
    pre
}

/// The value after an option, unless it starts with `-` (`--`, an
/// option, long or short): clap then refuses it (see
/// `option_taken_for_value`) or takes it otherwise than this would (see
/// `plugins_as_prescanned`), and the prescan must not load plugins from a
/// folder so named (`--NAME=VALUE` names one).
fn value_of_option<'a>(
    iter: &mut std::iter::Peekable<impl Iterator<Item = &'a OsString>>,
) -> Option<&'a OsString> {
    iter.next_if(|next| !next.as_encoded_bytes().starts_with(b"-"))
}

/// A folder or file named on the command line with a `~` the shell left
/// alone (`--config=~/x.conf`), taken for the home folder as a setting's
/// path is; as given where it cannot be (`~user`, no `HOME`: the file
/// or folder is then not found, and named as given).
pub fn home_expanded(path: PathBuf) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    match crate::settings::home_expanded(path.clone().into_os_string().into_vec()) {
        Ok(bytes) => PathBuf::from(OsString::from_vec(bytes)),
        Err(_) => path,
    }
}

/// Whether an `--output-format` value asks for JSON.
pub fn is_json_format(format: &str) -> bool {
    matches!(format, "json" | "json-lines")
}

/// The parsed command line.
#[derive(Debug, Default)]
pub struct Invocation {
    pub subcommand: Option<(String, Vec<OsString>)>,
    pub config_files: Vec<PathBuf>,
    pub no_default_configs: bool,
    pub dump_config: bool,
    pub list_config_files: bool,
    /// Settings given on the command line, in no particular order.
    pub values: Vec<(String, Value)>,
    /// `--plugin-dir` and `--no-bundled-plugins` as clap read them.
    pub plugin_dirs: Vec<PathBuf>,
    pub no_bundled_plugins: bool,
}

impl Invocation {
    /// Whether clap read the options that chose the plugins as
    /// [`prescan`] did; if not, what to say.
    pub fn plugins_as_prescanned(&self, pre: &Prescan) -> Result<(), String> {
        let mut ours = self.plugin_dirs.clone();
        let mut theirs = pre.plugin_dirs.clone();
        ours.sort();
        ours.dedup();
        theirs.sort();
        theirs.dedup();
        if ours == theirs && self.no_bundled_plugins == pre.no_bundled_plugins {
            return Ok(());
        }
        Err(
            "--plugin-dir or --no-bundled-plugins is given as the value of another option, \
             but was taken for itself to choose the plugins: give such a value as \
             --OPTION=VALUE, or name the plugin folder apart"
                .to_string(),
        )
    }
}

/// Where `--help` lists the settings that belong to some subcommands only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpLayout {
    /// Under those subcommands' help only; `obnam --help` lists the
    /// settings that belong to every subcommand. What the user sees.
    Scoped,
    /// Every setting under `obnam --help` (the manual page, which clap
    /// renders from the top-level command alone).
    Flat,
    /// For shell completions: as `Scoped`, but a setting that names its
    /// subcommands is offered under those only (not under every one, as
    /// a hidden global option), development settings are not offered,
    /// and the values of a setting with a fixed set of them are (clap's
    /// generators offer what the command line declares, hidden or not).
    Completions,
}

/// Build the command line from the registry.
///
/// Every setting is accepted before or after any subcommand, and parsed
/// the same wherever it is given. The root command and every subcommand
/// each declare the option themselves (none is a clap "global" option):
/// clap merges a global option's occurrences on both sides of the
/// subcommand into the later side's, which lost the items of a list
/// setting given before the subcommand (`--root A backup --root B` backed
/// up B alone), and numbers the two sides' occurrences apart, which made
/// `--no-pretend forget --pretend` not pretend. [`parse`] puts the two
/// sides together itself. With [`HelpLayout::Scoped`] a setting that names
/// its subcommands is hidden from the top-level help and from the other
/// subcommands' help, and shown in its own subcommands'.
pub fn build(registry: &Registry, layout: HelpLayout) -> Command {
    let after_help = match layout {
        HelpLayout::Scoped => {
            "Subcommands and their settings come from plugins; 'obnam plugins' lists them. \
             'obnam SUBCOMMAND --help' shows the settings of a subcommand too."
        }
        HelpLayout::Flat | HelpLayout::Completions => {
            "Subcommands and their settings come from plugins; 'obnam plugins' lists them."
        }
    };
    let completions = layout == HelpLayout::Completions;
    let scoped = |def: &SettingDef| layout != HelpLayout::Flat && !def.subcommands.is_empty();
    let offered =
        |def: &SettingDef| !completions || def.group != crate::host_settings::GROUP_DEVELOPMENT;
    let elsewhere = layout != HelpLayout::Scoped;
    let mut cmd = Command::new("obnam")
        .version(version())
        // `obnam backup --version` too, as `-V`.
        .propagate_version(true)
        .about("A deduplicating backup program whose every command is a plugin")
        .after_help(after_help)
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .long("version")
                .short('V')
                .global(true)
                .action(ArgAction::Version)
                .help("print the version and exit"),
        )
        .subcommand_value_name("SUBCOMMAND")
        .max_term_width(100);
    cmd = cmd.args(meta_args());
    for def in registry.settings.iter().filter(|def| offered(def)) {
        let hide = scoped(def);
        if hide && completions {
            continue;
        }
        cmd = cmd.args(
            setting_args(def, completions, elsewhere)
                .into_iter()
                .map(|a| a.hide(hide)),
        );
    }
    for sub in &registry.subcommands {
        let usage = format!("obnam {} [OPTIONS] {}", sub.name, sub.synopsis);
        let mut operands = Arg::new(ARGS_ID)
            .num_args(0..)
            .action(ArgAction::Append)
            .value_parser(clap::value_parser!(OsString))
            .hide(true);
        if completions && sub.name == "completions" {
            operands = operands.hide(false).value_name("SHELL").value_parser([
                "bash",
                "zsh",
                "fish",
                "elvish",
                "powershell",
            ]);
        }
        let mut command = Command::new(sub.name.clone())
            // `obnam backup --version` names the program, not `obnam-backup`.
            .display_name("obnam")
            .about(sub.help.clone())
            .override_usage(usage)
            .arg(operands);
        // The subcommand's own plugin's settings first, then the other
        // settings that name it, then those of every subcommand: help
        // lists groups in the order their first option was added.
        let mine = |def: &&SettingDef| def.subcommands.contains(&sub.name);
        let (own, others): (Vec<&SettingDef>, Vec<&SettingDef>) = registry
            .settings
            .iter()
            .filter(|def| scoped(def) && offered(def) && mine(def))
            .partition(|def| def.owner == sub.owner);
        for def in own.into_iter().chain(others) {
            command = command.args(setting_args(def, completions, elsewhere));
        }
        command = command.args(meta_args());
        for def in registry.settings.iter().filter(|def| offered(def)) {
            if scoped(def) && mine(&def) {
                continue;
            }
            // Another subcommand's setting is accepted here too (it
            // may come from a config file or a wrapper's command line,
            // for every subcommand), but not shown or completed.
            let hide = scoped(def);
            if hide && completions {
                continue;
            }
            command = command.args(
                setting_args(def, completions, elsewhere)
                    .into_iter()
                    .map(|a| a.hide(hide)),
            );
        }
        cmd = cmd.subcommand(command);
    }
    cmd
}

fn version() -> String {
    format!(
        "{} (plugin-api {})",
        env!("CARGO_PKG_VERSION"),
        plugin_api::API_VERSION
    )
}

fn meta_args() -> Vec<Arg> {
    // A flag may be repeated, on one side of the subcommand as across it
    // (it was refused on one side only).
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .overrides_with(name)
            .help(help)
            .help_heading(META_HEADING)
    };
    let list = |name: &'static str, metavar: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(metavar)
            .action(ArgAction::Append)
            .value_parser(clap::value_parser!(PathBuf))
            .help(help)
            .help_heading(META_HEADING)
    };
    vec![
        list(
            "config",
            "FILE",
            "read settings from FILE too (after the default files)",
        ),
        flag("no-default-configs", "do not read the default config files"),
        flag(
            "dump-config",
            "print the effective settings in config-file format and exit",
        ),
        flag(
            "list-config-files",
            "print the config files that would be read and exit",
        ),
        list(
            "plugin-dir",
            "DIR",
            "load plugins from DIR too (also OBNAM_PLUGIN_DIR, colon-separated)",
        ),
        flag(
            "no-bundled-plugins",
            "do not load the plugins bundled with obnam",
        ),
    ]
}

/// The options of a setting; for completions, with its fixed set of
/// values (the command line that parses takes every value as bytes and
/// checks it itself, naming the setting). `elsewhere`: the text is for
/// other machines (the manual page, completions), so a default that
/// depends on the machine is described, not given.
fn setting_args(def: &SettingDef, completions: bool, elsewhere: bool) -> Vec<Arg> {
    let mut help = def.help.clone();
    if def.kind == SettingKind::Choice {
        help.push_str(&format!(" (one of: {})", def.choices.join(", ")));
    }
    if let Some(limits) = def.limits_text() {
        help.push_str(&format!(" [values: {limits}]"));
    }
    match (&def.default, &def.default_text) {
        (_, Some(text)) if elsewhere => help.push_str(&format!(" [default: {text}]")),
        (Value::Unset | Value::Bool(false), _) => {}
        (Value::List(v), _) if v.is_empty() => {}
        (Value::Paths(v), _) if v.is_empty() => {}
        (value, _) => help.push_str(&format!(" [default: {}]", def.format(value))),
    }
    let mut arg = Arg::new(def.name.clone())
        .long(def.name.clone())
        .help(help)
        .help_heading(def.group.clone());
    if let Some(c) = def.short {
        arg = arg.short(c);
    }
    for alias in &def.aliases {
        arg = arg.visible_alias(alias.clone());
    }
    match def.kind {
        // Each overriding itself, so that either may be given any number
        // of times (`--quiet --no-quiet --quiet`, a wrapper's `--quiet`
        // and the user's): the last one wins ([`boolean_in`]).
        SettingKind::Boolean => {
            let negated = format!("no-{}", def.name);
            vec![
                arg.action(ArgAction::SetTrue)
                    .overrides_with(def.name.clone()),
                Arg::new(negated.clone())
                    .long(negated.clone())
                    .action(ArgAction::SetTrue)
                    .overrides_with(negated)
                    .help(format!("opposite of --{}", def.name))
                    .help_heading(def.group.clone()),
            ]
        }
        kind => {
            let metavar = if def.metavar.is_empty() {
                "VALUE".to_string()
            } else {
                def.metavar.clone()
            };
            let action = if kind == SettingKind::StringList {
                ArgAction::Append
            } else {
                ArgAction::Set
            };
            // Taken as bytes: a path setting's value is bytes, and any
            // other value that is not UTF-8 is refused below naming its
            // option, not by clap naming none.
            let arg = arg
                .value_name(metavar)
                .action(action)
                .value_parser(clap::value_parser!(OsString))
                .allow_hyphen_values(true);
            if completions && kind == SettingKind::Choice {
                return vec![arg.value_parser(clap::builder::PossibleValuesParser::new(
                    def.choices.clone(),
                ))];
            }
            vec![arg]
        }
    }
}

/// Why parsing stopped.
#[derive(Debug)]
pub enum ParseStop {
    /// `--help` or `--version` was printed; exit with this code.
    Printed(i32),
    /// A usage error, as the message to show.
    Error(String),
    /// `--help` or `--version` could not be written (a full disk): the
    /// message, for a run that fails.
    Unwritten(String),
}

/// How a run that printed its help or version ends: as any command whose
/// output cannot be written (exit 0 with an empty file was "done").
fn printed(written: std::io::Result<()>) -> ParseStop {
    match written {
        Ok(()) => ParseStop::Printed(EXIT_SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ParseStop::Printed(crate::exit::EXIT_BROKEN_PIPE)
        }
        Err(e) => ParseStop::Unwritten(format!("cannot write to standard output: {e}")),
    }
}

/// Parse the command line.
pub fn parse(
    cmd: Command,
    registry: &Registry,
    args: Vec<OsString>,
) -> Result<Invocation, ParseStop> {
    // Kept to print the help of clap's own `help` subcommand, which clap
    // does not do itself (`obnam help --help` would be an unknown
    // subcommand '--help').
    let mut built = cmd.clone();
    option_taken_for_value(&cmd, &args).map_err(ParseStop::Error)?;
    // `help SUBCOMMAND MORE...`: help of a loaded subcommand, with words
    // `help` does not take.
    let help_of_loaded = args
        .iter()
        .skip_while(|a| *a != "help")
        .nth(1)
        .and_then(|a| a.to_str())
        .is_some_and(|name| registry.subcommand(name).is_some());
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::{ContextKind, ContextValue, ErrorKind};
            let asked_help_of_help = e.kind() == ErrorKind::InvalidSubcommand
                && matches!(
                    e.get(ContextKind::InvalidSubcommand),
                    Some(ContextValue::String(s)) if s == "--help" || s == "-h"
                );
            if asked_help_of_help {
                built.build();
                if let Some(help) = built.find_subcommand_mut("help") {
                    return Err(printed(help.print_help()));
                }
            }
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Err(printed(e.print().and_then(|()| {
                        std::io::Write::flush(&mut std::io::stdout())
                    })))
                }
                kind => {
                    let text = e.render().to_string();
                    let mut text = text
                        .strip_prefix("error: ")
                        .unwrap_or(&text)
                        .trim_end()
                        .to_string();
                    // Where no subcommand was made out, clap's usage line is
                    // made of the options that happened to be given
                    // (`Usage: obnam --repository <URL>`), as if that were
                    // obnam's usage: it is the whole program's.
                    if let Some(line) = text.lines().find(|l| l.starts_with("Usage: obnam ")) {
                        let named = line["Usage: obnam ".len()..].split(' ').next();
                        if named.is_none_or(|word| registry.subcommand(word).is_none()) {
                            let usage = built.render_usage().to_string();
                            let usage = usage.trim_end().to_string();
                            text = text.replacen(line, &usage, 1);
                        }
                    }
                    // Settings and subcommands come from plugins: a name
                    // nothing resembles may belong to one not loaded.
                    let what = match kind {
                        ErrorKind::UnknownArgument => Some("setting"),
                        ErrorKind::InvalidSubcommand => Some("subcommand"),
                        _ => None,
                    };
                    let short = matches!(
                        e.get(ContextKind::InvalidArg),
                        Some(ContextValue::String(a)) if a.starts_with('-') && !a.starts_with("--")
                    );
                    if short && kind == ErrorKind::UnknownArgument {
                        // `-q`, `-v`: other tools' habits, not a plugin
                        // that is missing.
                        text.push_str(
                            "\n\nobnam's settings are long options (--quiet, --verbose); the only \
                             short ones are -r (--repository), -h (--help) and -V (--version).",
                        );
                        return Err(ParseStop::Error(text));
                    }
                    // A subcommand that is loaded was misplaced (`help backup
                    // restore`, `help key list`), not missing.
                    if help_of_loaded && kind == ErrorKind::InvalidSubcommand {
                        text.push_str(
                            "\n\n'obnam help' takes one subcommand: 'obnam help SUBCOMMAND', or \
                             'obnam SUBCOMMAND --help'.",
                        );
                        return Err(ParseStop::Error(text));
                    }
                    if let Some(what) = what.filter(|_| !text.contains("tip: a similar")) {
                        text.push_str(&format!(
                            "\n\nNo loaded plugin provides this {what}. If a plugin you use does, \
                             give its folder with --plugin-dir or OBNAM_PLUGIN_DIR \
                             ('obnam plugins' lists the loaded ones)."
                        ));
                    }
                    Err(ParseStop::Error(text))
                }
            };
        }
    };
    // The options given before the subcommand, then those after it: each
    // side's matches hold only its own (see [`build`]).
    let sub = matches.subcommand();
    let scopes: Vec<&ArgMatches> = std::iter::once(&matches)
        .chain(sub.map(|(_, m)| m))
        .collect();
    let flag = |id: &str| scopes.iter().any(|m| m.get_flag(id));
    let paths = |id: &str| -> Vec<PathBuf> {
        scopes
            .iter()
            .flat_map(|m| m.get_many::<PathBuf>(id).into_iter().flatten().cloned())
            .map(home_expanded)
            .collect()
    };
    let mut inv = Invocation {
        no_default_configs: flag("no-default-configs"),
        dump_config: flag("dump-config"),
        list_config_files: flag("list-config-files"),
        config_files: paths("config"),
        plugin_dirs: paths("plugin-dir"),
        no_bundled_plugins: flag("no-bundled-plugins"),
        ..Invocation::default()
    };
    for def in registry.settings.iter() {
        if let Some(value) = setting_value(def, &scopes).map_err(ParseStop::Error)? {
            inv.values.push((def.name.clone(), value));
        }
    }
    if let Some((name, m)) = sub {
        let args = m
            .get_many::<OsString>(ARGS_ID)
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        inv.subcommand = Some((name.to_string(), args));
    }
    Ok(inv)
}

/// Refuse an option of obnam's given where another option's value
/// belongs: `--key-file $EMPTY --encrypt`, where an unset variable left
/// the value out, took `--encrypt` for the key file's name and made an
/// unencrypted repository, exit 0. A setting's value may start with `-`
/// (a pattern, a negative number), so clap takes whatever follows; a value
/// that is one of obnam's options is meant only when written
/// `--NAME=VALUE`, which this leaves alone.
fn option_taken_for_value(cmd: &Command, args: &[OsString]) -> Result<(), String> {
    // Each spelling of an option that takes a value, with its long name.
    let mut takes_value: std::collections::HashMap<String, String> = Default::default();
    let mut known: std::collections::HashSet<String> = Default::default();
    for arg in cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|sub| sub.get_arguments()))
    {
        let takes = arg.get_action().takes_values();
        let mut spellings: Vec<String> = Vec::new();
        if let Some(long) = arg.get_long() {
            spellings.push(format!("--{long}"));
        }
        for alias in arg.get_all_aliases().into_iter().flatten() {
            spellings.push(format!("--{alias}"));
        }
        if let Some(short) = arg.get_short() {
            spellings.push(format!("-{short}"));
        }
        let long = arg.get_long().map(|l| format!("--{l}"));
        for spelling in spellings {
            if let Some(long) = long.as_ref().filter(|_| takes) {
                takes_value.insert(spelling.clone(), long.clone());
            }
            known.insert(spelling);
        }
    }
    known.insert("--help".into());
    known.insert("-h".into());
    // An argument that is not UTF-8 is no option (and is counted: it may
    // be the value that follows one).
    let mut iter = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        let Some(long) = takes_value.get(arg) else {
            continue;
        };
        let Some(next) = iter.next() else { break };
        if next == "--" {
            return Err(format!(
                "{arg} needs a value, but is followed by --, which ends the options: give the \
                 value (a value that is -- itself is written {long}=--)"
            ));
        }
        let next_name = next.split_once('=').map_or(next, |(name, _)| name);
        if next.starts_with('-') && known.contains(next_name) {
            return Err(format!(
                "{arg} needs a value, but is followed by the option {next_name}: give the value \
                 (one that is itself an option's name is written {long}={next})"
            ));
        }
    }
    Ok(())
}

fn from_command_line(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The value a setting is given on the command line, from its
/// occurrences in `scopes` (before the subcommand, then after it).
fn setting_value(def: &SettingDef, scopes: &[&ArgMatches]) -> Result<Option<Value>, String> {
    let name = def.name.as_str();
    let given: Vec<&ArgMatches> = scopes
        .iter()
        .copied()
        .filter(|m| {
            from_command_line(m, name)
                || (def.kind == SettingKind::Boolean && from_command_line(m, &format!("no-{name}")))
        })
        .collect();
    match def.kind {
        // `--NAME` and `--no-NAME`: the later one wins, and after the
        // subcommand is later than before it (clap numbers each side's
        // arguments apart).
        SettingKind::Boolean => Ok(given.last().map(|m| boolean_in(m, name))),
        // The items before the subcommand, then those after it.
        SettingKind::StringList => {
            if given.is_empty() {
                return Ok(None);
            }
            let items: Vec<&OsString> = given
                .iter()
                .flat_map(|m| m.get_many::<OsString>(name).into_iter().flatten())
                .collect();
            list_value(def, items).map(Some)
        }
        // Given once: a second value on the other side of the subcommand
        // is refused as one on the same side is (by clap).
        _ => match given.as_slice() {
            [] => Ok(None),
            [m] => match m.get_one::<OsString>(name) {
                Some(text) => def
                    .parse_arg(text)
                    .map(Some)
                    .map_err(|e| format!("--{name}: {}", e.reason())),
                None => Ok(None),
            },
            _ => Err(format!(
                "the argument '--{name}' cannot be used multiple times (it is given both before \
                 and after the subcommand)"
            )),
        },
    }
}

/// A boolean setting as one side of the command line gives it: the later
/// of `--NAME` and `--no-NAME` (at least one of them is given).
fn boolean_in(m: &ArgMatches, name: &str) -> Value {
    let last = |id: &str| {
        from_command_line(m, id)
            .then(|| m.indices_of(id).and_then(|i| i.max()))
            .flatten()
    };
    Value::Bool(last(name) > last(&format!("no-{name}")))
}

/// A list setting's items (each as one value: a path as its bytes,
/// anything else as text), together as the list.
fn list_value(def: &SettingDef, given: Vec<&OsString>) -> Result<Value, String> {
    let name = def.name.as_str();
    // An empty item is never what was meant: an empty pattern matches
    // everything, an empty path is the current folder. Config files drop
    // empty items between commas; here one was given on its own.
    if given.iter().any(|item| item.is_empty()) {
        return Err(format!("--{name}: a value must not be empty"));
    }
    let mut items = Vec::new();
    let mut paths = Vec::new();
    for item in given {
        match def.parse_arg(item) {
            Ok(Value::List(one)) => items.extend(one),
            Ok(Value::Paths(one)) => paths.extend(one),
            Ok(_) => {}
            Err(e) => return Err(format!("--{name}: {}", e.reason())),
        }
    }
    Ok(if def.path {
        Value::Paths(paths)
    } else {
        Value::List(items)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_finds_plugin_options() {
        let args: Vec<OsString> = [
            "obnam",
            "--plugin-dir",
            "/a",
            "--plugin-dir=/b",
            "--no-bundled-plugins",
            "--",
            "--plugin-dir",
            "/c",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let pre = prescan(&args);
        assert_eq!(
            pre.plugin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert!(pre.no_bundled_plugins);
    }

    #[test]
    fn the_last_of_quiet_and_no_quiet_wins() {
        let scan = |args: &[&str]| {
            let args: Vec<OsString> = std::iter::once("obnam")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            prescan(&args).quiet
        };
        assert!(scan(&["--quiet"]));
        assert!(!scan(&["--quiet", "--no-quiet"]));
        assert!(scan(&["--no-quiet", "--quiet"]));
    }

    /// A plugin option's value that reads as a plugin option (which the
    /// scan took for one) is caught once clap has read the line.
    #[test]
    fn plugin_options_read_otherwise_than_scanned_are_refused() {
        let pre = Prescan {
            plugin_dirs: vec![PathBuf::from("/a"), PathBuf::from("/x")],
            no_bundled_plugins: false,
            quiet: false,
            json: false,
        };
        let read = |dirs: &[&str], no_bundled: bool| Invocation {
            plugin_dirs: dirs.iter().map(PathBuf::from).collect(),
            no_bundled_plugins: no_bundled,
            ..Invocation::default()
        };
        assert!(read(&["/x", "/a", "/a"], false)
            .plugins_as_prescanned(&pre)
            .is_ok());
        let err = read(&["/a"], false)
            .plugins_as_prescanned(&pre)
            .unwrap_err();
        assert!(err.contains("--OPTION=VALUE"), "{err}");
        assert!(read(&["/a", "/x"], true)
            .plugins_as_prescanned(&pre)
            .is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        let mut registry = Registry::default();
        for def in crate::host_settings::definitions(1 << 20) {
            registry.settings.add(def).unwrap();
        }
        build(&registry, HelpLayout::Scoped).debug_assert();
        build(&registry, HelpLayout::Flat).debug_assert();
        build(&registry, HelpLayout::Completions).debug_assert();
    }
}
