//! The obnam host: loads plugins, builds the command line from what they
//! register, layers settings, and runs the chosen subcommand.
//!
//! The host knows nothing about backups. Start-up runs in this order
//! ([`run`]):
//!
//! 1. scan the arguments for the options that decide which plugins load
//!    ([`cli::prescan`]);
//! 2. load every plugin library ([`loader`]) and enable it, filling the
//!    [`registry`] with subcommands, settings and hooks; bind hook callbacks;
//! 3. build the command line from the registry and parse it ([`cli`]);
//! 4. layer the settings: defaults, config files, environment, command line
//!    ([`settings`]);
//! 5. run the subcommand, offering plugins the host's [`services`].
//!
//! Errors reach the user as one `ERROR: ...` line on standard error and a
//! non-zero exit code ([`exit`]); a panic anywhere is caught and reported
//! the same way. Only [`run`] decides the exit code (and the interruption
//! thread, [`interrupt`], which ends the process itself).
//!
//! Layers, lowest first, each using only those below it: [`exit`],
//! [`output`], [`logging`], [`settings`] (with [`host_settings`]);
//! [`loader`]; [`registry`]; [`cli`], [`services`]; [`builtin`],
//! [`interrupt`]; this root. The boundary types of plugin-api are adapted
//! in two places only, [`loader`] and [`services`]: nowhere else does the
//! host name `abi_stable` or implement an ABI trait.

#![forbid(unsafe_code)]

/// A line on standard error, as `eprintln!` writes it, except that a
/// standard error that cannot be written (a closed pipe, a full disk) is
/// not a panic: the run ends as it would have, with its own exit code
/// (`obnam backup 2>&1 | head -1` exited 101, a code obnam does not
/// have). Defined before the modules, so that every one of them has it.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Text on standard error without a newline (a status line), as
/// [`stderr_line!`].
macro_rules! stderr_text {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, $($arg)*);
        let _ = err.flush();
    }};
}

pub mod builtin;
pub mod cli;
pub mod exit;
pub mod host_settings;
pub mod interrupt;
pub mod loader;
pub mod logging;
pub mod output;
pub mod registry;
mod root_home;
pub mod services;
pub mod settings;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use plugin_api::guard;
use plugin_api::names::escape_path;

use crate::cli::{Invocation, ParseStop};
use crate::exit::{EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_FAILURE, EXIT_SUCCESS, EXIT_USAGE};
use crate::loader::PluginDir;
use crate::registry::Registry;
use crate::services::Host;
use crate::settings::{config_files, Values};

/// Run obnam with the process's arguments; returns the exit code.
pub fn run() -> i32 {
    plugin_api::allocator::restart_with_thread_caches();
    plugin_api::allocator::set_up();
    // Before any plugin loads: a plugin that calls `exit` must not end
    // the run with the code it chose (0 after a backup half done).
    plugin_api::exit_guard::install(EXIT_FAILURE);
    obnam_repository::storage::set_process_end(plugin_api::exit_guard::end_process);
    guard::install_panic_hook();
    let result = guard::guarded(|| Ok(main_with(std::env::args_os().collect())));
    match result.into_result() {
        Ok(code) => code,
        Err(failure) => {
            interrupt::hold_if_interrupted();
            logging::flush_pending();
            output::clear_status();
            let message = format!("internal error (a bug in obnam): {}", failure.message);
            stderr_line!("ERROR: {message}");
            logging::log_final_error(&message);
            logging::log_exit_code(EXIT_BUG);
            EXIT_BUG
        }
    }
}

fn main_with(args: Vec<OsString>) -> i32 {
    // Before any thread starts: it may change the environment.
    let home_replaced = root_home::keep_to_roots_own();
    // The ssh processes it starts say whose they are: a run killed with
    // SIGKILL leaves them connected, and the next run ends them.
    obnam_repository::backend::sftp::mark_ssh_owner();
    let pre = cli::prescan(&args);
    logging::init(pre.quiet);
    if let Some(warning) = home_replaced {
        tracing::warn!("{warning}");
    }
    let result = start(args, pre);
    // Warnings of a run that ended before its settings were read.
    logging::flush_pending();
    // An interruption decides the outcome, whatever the command made of
    // its refused writes.
    interrupt::hold_if_interrupted();
    output::clear_status();
    let code = match result {
        Ok(code) => code,
        // A closed pipe on standard output is how `obnam ls | head` ends:
        // no message, but the exit code says the command did not finish,
        // as a process killed by SIGPIPE would (a backup stopped this way
        // committed nothing).
        Err(e) if e.is::<InternalError>() => {
            stderr_line!("ERROR: {e}");
            logging::log_final_error(&e.to_string());
            EXIT_BUG
        }
        // Only the closed pipe itself: an error that says more (a backup
        // committed before its summary met the closed pipe) is said.
        Err(e) if output::stdout_closed() && is_only_closed_stdout(&e) => EXIT_BROKEN_PIPE,
        Err(e) => failed(&format!("{e:#}"), EXIT_FAILURE),
    };
    logging::log_exit_code(code);
    code
}

/// Whether `e` says only that standard output was closed (as it reached
/// the host: a plugin's error is its message).
fn is_only_closed_stdout(e: &anyhow::Error) -> bool {
    let closed = output::OutputError::Closed.to_string();
    e.chain().all(|cause| cause.to_string() == closed)
}

/// How this run's subcommand fails, if its plugin said
/// ([`registry::SubcommandFailure`]): set once the subcommand is known.
static FAILURE: std::sync::OnceLock<registry::SubcommandFailure> = std::sync::OnceLock::new();

/// Whether the run's output is JSON: as the command line and environment
/// say until the settings are read, then as they say.
static JSON_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Say that the run failed with `message`, and give its exit code: `code`,
/// or the one the subcommand's plugin chose for failures. Unless something
/// was printed on standard output already, the error goes there too: as
/// JSON where JSON was asked for (`{"type": "exit_error", ...}`: a
/// program need not read English on standard error to know why), else
/// as the first line of the error after the prefix the subcommand's
/// plugin chose (a Nagios check's `OBNAM UNKNOWN: ...`), if it chose one.
fn failed(message: &str, code: i32) -> i32 {
    stderr_line!("ERROR: {message}");
    logging::log_final_error(message);
    let failure = FAILURE.get();
    let code = failure.map_or(code, |f| f.exit_code);
    if output::stdout_written() {
        return code;
    }
    if JSON_OUTPUT.load(std::sync::atomic::Ordering::Relaxed) {
        let object = serde_json::json!({
            "type": "exit_error",
            "message": message,
            "exit_code": code,
        });
        let _ = output::line(&object.to_string());
    } else if let Some(f) = failure {
        // One line: a usage error's help follows on standard error.
        let first = message.lines().next().unwrap_or_default();
        let _ = output::line(&format!("{}{first}", f.stdout_prefix));
    }
    code
}

/// Note how the subcommand `name` fails (see [`failed`]).
fn note_failure_of(registry: &Registry, name: &str) {
    if let Some(f) = registry.subcommand(name).and_then(|d| d.failure.clone()) {
        let _ = FAILURE.set(f);
    }
}

/// A bug in obnam that was caught and could not be reported as an
/// ordinary error: the run ends with [`EXIT_BUG`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InternalError(&'static str);

/// The working folder when the run started, before any plugin ran: a
/// relative path the user gave means a place under it.
pub(crate) static STARTING_FOLDER: std::sync::OnceLock<Option<std::path::PathBuf>> =
    std::sync::OnceLock::new();

fn start(args: Vec<OsString>, pre: cli::Prescan) -> Result<i32> {
    let _ = STARTING_FOLDER.set(std::env::current_dir().ok());
    JSON_OUTPUT.store(pre.json, std::sync::atomic::Ordering::Relaxed);
    // A bad plugin folder is reported once the subcommand is known (its
    // plugin may say how it fails); the others are loaded meanwhile.
    let (dirs, bad_dir) = plugin_dirs(&pre);
    let (plugins, refused_file) = loader::load_all(&dirs);
    let mut bad_dir = bad_dir.or_else(|| refused_file.map(|why| anyhow!(why)));
    for p in &plugins {
        p.init_logging();
    }

    let mut registry = Registry::default();
    for def in host_settings::definitions(services::DEFAULT_PACK_SIZE) {
        // The host's names are fixed and distinct; a failure here is a bug.
        if let Err(e) = registry.settings.add(def) {
            tracing::error!("{e}");
        }
    }
    builtin::register(&mut registry);
    registry.create_host_hooks();
    if let Some(why) = registry.enable_plugins(plugins) {
        bad_dir = bad_dir.or(Some(anyhow!(why)));
    }
    // The registry lives as long as the process: plugins hold handles into it.
    let registry: &'static Registry = Box::leak(Box::new(registry));

    let command = cli::build(registry, cli::HelpLayout::Scoped);
    // The subcommand named, should the command line not parse: the first
    // argument that names one.
    let named = args
        .iter()
        .skip(1)
        .find_map(|a| a.to_str().filter(|a| registry.subcommand(a).is_some()))
        .map(str::to_string);
    let inv = match cli::parse(command, registry, args) {
        Ok(inv) => inv,
        Err(ParseStop::Printed(code)) => return Ok(code),
        Err(ParseStop::Unwritten(message)) => return Ok(failed(&message, EXIT_FAILURE)),
        Err(ParseStop::Error(message)) => {
            logging::flush_pending();
            if let Some(name) = &named {
                note_failure_of(registry, name);
            }
            // A bad plugin folder is the first thing wrong (an empty one
            // is also a value missing to the parser).
            if let Some(e) = bad_dir {
                return Err(e);
            }
            return Ok(failed(&message, EXIT_USAGE));
        }
    };
    if let Some((name, _)) = &inv.subcommand {
        note_failure_of(registry, name);
        // The locks this run takes say which command holds them.
        obnam_repository::lock::set_command(name);
    }
    if let Some(e) = bad_dir {
        return Err(e);
    }
    if let Err(message) = inv.plugins_as_prescanned(&pre) {
        logging::flush_pending();
        return Ok(failed(&message, EXIT_USAGE));
    }

    if let Some((name, sub_args)) = &inv.subcommand {
        if let Some(done) = builtin::run_without_settings(name, sub_args, registry) {
            logging::flush_pending();
            return done.map(|()| EXIT_SUCCESS);
        }
    }
    let files = config_file_list(&inv);
    // Before the settings are read: this is how one finds the file that
    // makes reading them fail. Every file is listed; a bad one is named on
    // standard error too, and the run fails.
    if inv.list_config_files {
        logging::flush_pending();
        let mut bad = 0;
        for f in &files {
            output::line(&escape_path(f))?;
            let mut scratch = registry.settings.defaults();
            if let Err(e) = config_files::apply_file(f, &registry.settings, &mut scratch) {
                stderr_line!("ERROR: {e}");
                bad += 1;
            }
        }
        if bad > 0 {
            return Ok(EXIT_FAILURE);
        }
        return Ok(EXIT_SUCCESS);
    }
    let values = layer_settings(registry, &inv, &files)?;
    JSON_OUTPUT.store(
        values
            .string("output-format")
            .is_some_and(cli::is_json_format),
        std::sync::atomic::Ordering::Relaxed,
    );
    configure_logging(registry, &values)?;
    // A bad development setting is refused before any command runs.
    services::check_settings(&values).map_err(|e| anyhow!(e))?;
    warn_of_development_settings(registry, &values);
    warn_of_unknown_environment(registry);

    if inv.dump_config {
        let dump = values
            .dump(&registry.settings)
            .map_err(|e| anyhow!("cannot dump the settings: {e}"))?;
        output::write(dump.as_bytes())?;
        return Ok(EXIT_SUCCESS);
    }
    let Some((name, sub_args)) = inv.subcommand else {
        bail!("no subcommand given; 'obnam --help' lists them");
    };
    let def = registry
        .subcommand(&name)
        .ok_or_else(|| anyhow!("unknown subcommand '{name}'"))?;
    tracing::info!(
        "obnam {} running subcommand {name}",
        env!("CARGO_PKG_VERSION")
    );
    let host = Host::new(registry, values);
    interrupt::install(host.clone());
    let result = match &def.handler {
        None => builtin::run(&name, &sub_args, &host, registry),
        Some(_) => host.run_subcommand(def, sub_args).map_err(|e| anyhow!(e)),
    };
    release_locks(&host);
    host.close_repository();
    // A bug in a service that could not report it decides the outcome.
    if let Some(bug) = host.internal_error() {
        return Err(InternalError(bug).into());
    }
    // An interruption ends the run in the interrupt's own way (its exit
    // code, its message); anything else that failed is said in JSON too.
    interrupt::hold_if_interrupted();
    result.map(|()| host.exit_code())
}

/// Warn of each development setting set in a config file or the
/// environment: left there (a developer's shell, a copied profile, a CI
/// image), one applies to every run without a word, and some change what
/// is written (`testing-weak-tokens` made backups that a normal run could
/// not restore, exit 0; `testing-generation-time` dated every generation
/// alike, and `forget --keep 7d` then kept one). One given on the command
/// line is meant for that run. The warning is printed even with `--quiet`.
/// So is `pretend`, set so.
fn warn_of_development_settings(registry: &Registry, values: &settings::Values) {
    for def in registry.settings.iter() {
        // `pretend` left in a config file or the environment makes every
        // backup of a `--quiet` cron job store nothing, exit 0.
        let pretend = def.name == "pretend";
        if def.group != host_settings::GROUP_DEVELOPMENT && !pretend {
            continue;
        }
        let source = values.source(&def.name);
        if matches!(
            source,
            settings::Source::Default | settings::Source::CommandLine
        ) {
            continue;
        }
        if values.get(&def.name) == Some(&def.default) {
            continue;
        }
        let from = match source {
            settings::Source::File(path, line) => {
                format!("config file {}, line {line}", escape_path(path))
            }
            settings::Source::Env(var) => format!("environment variable {var}"),
            _ => continue,
        };
        // Said even with --quiet: where a setting is left to apply to
        // every run (a cron job's environment), --quiet is set too.
        let message = match pretend {
            true => format!(
                "'pretend' is set (from {from}): this run only says what it would do, and \
                 changes nothing (a backup stores nothing); --no-pretend overrides it"
            ),
            false => format!(
                "the development setting '{}' is set (from {from}): it exists to test obnam, \
                 not for real backups (see \"Development settings\" in the user guide)",
                def.name
            ),
        };
        logging::flush_pending();
        stderr_line!("WARNING: {message}");
        tracing::debug!("{message}");
    }
}

/// Warn of each `OBNAM_*` environment variable that names no setting of
/// obnam or its loaded plugins (and is none of the variables obnam reads
/// otherwise): a misspelt `OBNAM_REPOSITRY` or `OBNAM_EXCLUDES` was
/// ignored without a word, and a backup ran without what it meant. The
/// nearest setting's variable is suggested where one is close.
/// (`OBNAM_TEST_*` are the test plugins' own.)
fn warn_of_unknown_environment(registry: &Registry) {
    let known: Vec<String> = registry.settings.iter().map(|d| d.env_var()).collect();
    let mut unknown: Vec<String> = std::env::vars_os()
        .filter_map(|(key, _)| key.into_string().ok())
        .filter(|key| key.starts_with("OBNAM_") && !key.starts_with("OBNAM_TEST_"))
        .filter(|key| {
            !known.contains(key)
                && !settings::RESERVED_ENV.contains(&key.as_str())
                && key != "OBNAM_PLUGIN_DIR"
                && key != obnam_repository::backend::sftp::SSH_OWNER_VARIABLE
        })
        .collect();
    unknown.sort();
    // Obnam's variables that are no setting's are misspelt too.
    let candidates: Vec<&str> = known
        .iter()
        .map(String::as_str)
        .chain(settings::RESERVED_ENV.iter().copied())
        .chain(["OBNAM_PLUGIN_DIR"])
        .collect();
    for key in unknown {
        // In capitals, as the variables are (`OBNAM_client_name`); judged
        // by the name after the prefix they share.
        let upper = key.to_ascii_uppercase();
        let named = &upper["OBNAM_".len()..];
        let nearest = settings::nearest(
            named,
            candidates.iter().filter_map(|c| c.strip_prefix("OBNAM_")),
        );
        let hint = match nearest {
            Some(k) => format!(" (did you mean OBNAM_{k}?)"),
            None => String::new(),
        };
        tracing::warn!(
            "environment variable {key} names no setting of obnam or its loaded plugins, and \
             is ignored{hint}: a setting's variable is OBNAM_ and its name in capitals, with _ \
             for - ('obnam --help' lists the settings)"
        );
    }
}

/// Release every lock still held, whatever the subcommand's outcome.
fn release_locks(host: &Host) {
    if let Some(repo) = host.opened_repository() {
        if let Err(e) = repo.unlock_all() {
            tracing::warn!("could not release a lock: {e}");
        }
    }
}

/// The plugin folders of this run, in loading order, and the first
/// problem with one that cannot be used (it is left out).
fn plugin_dirs(pre: &cli::Prescan) -> (Vec<PluginDir>, Option<anyhow::Error>) {
    let mut dirs = Vec::new();
    let mut problem = None;
    if !pre.no_bundled_plugins {
        match std::env::current_exe().context("cannot find the obnam executable") {
            Ok(exe) => {
                if let Some(path) = loader::bundled_dir(&exe) {
                    dirs.push(PluginDir {
                        path,
                        bundled: true,
                    });
                }
            }
            Err(e) => problem = Some(e),
        }
    }
    let from_env = std::env::var_os("OBNAM_PLUGIN_DIR").unwrap_or_default();
    // A `~` no shell expanded (a service file's `Environment=`, a value
    // in quotes) is the home folder, as in `--plugin-dir`.
    // White space at the ends of each is dropped, as for every path from
    // the environment (an env file's line with a space after it).
    let env_dirs = std::env::split_paths(&from_env)
        .map(|p| {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(
                p.as_os_str().as_bytes().trim_ascii(),
            ))
        })
        .filter(|p| !p.as_os_str().is_empty())
        .map(cli::home_expanded);
    for (path, source) in env_dirs
        .map(|p| (p, "OBNAM_PLUGIN_DIR"))
        .chain(pre.plugin_dirs.iter().cloned().map(|p| (p, "--plugin-dir")))
    {
        let unusable = if path.as_os_str().is_empty() {
            Some(format!("plugin folder '' (from {source}) is an empty name"))
        } else {
            match std::fs::metadata(&path) {
                // A folder the user named that others could write in is
                // refused as a missing one is: run without its plugins (an
                // exclude plugin's, say), a backup would store what they
                // leave out, with exit 0 (and in silence with --quiet).
                Ok(meta) if meta.is_dir() => loader::refuse_folder(&path).err().map(|why| {
                    format!(
                        "plugin folder {} (from {source}) is refused: {why}",
                        escape_path(&path)
                    )
                }),
                Ok(_) => Some(format!(
                    "plugin folder {} (from {source}) is not a folder",
                    escape_path(&path)
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                    "plugin folder {} (from {source}) does not exist",
                    escape_path(&path)
                )),
                Err(e) => Some(format!(
                    "plugin folder {} (from {source}) cannot be used: {e}",
                    escape_path(&path)
                )),
            }
        };
        if let Some(why) = unusable {
            problem.get_or_insert_with(|| anyhow!(why));
            continue;
        }
        // The same folder named twice (or by two spellings) is loaded
        // once: loading it again would only make each plugin override
        // itself.
        let same = |d: &PluginDir| match (d.path.canonicalize(), path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => d.path == path,
        };
        if dirs.iter().any(same) {
            continue;
        }
        dirs.push(PluginDir {
            path,
            bundled: false,
        });
    }
    (dirs, problem)
}

fn config_file_list(inv: &Invocation) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if !inv.no_default_configs {
        // Relative ones are ignored, as the XDG base directory rules say
        // (and as the cache and the records ignore them): they named
        // config files in whatever folder obnam was started from.
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let home = absolute("HOME");
        let xdg = absolute("XDG_CONFIG_HOME");
        files = config_files::default_files(home.as_deref(), xdg.as_deref());
    }
    files.extend(inv.config_files.iter().cloned());
    files
}

fn layer_settings(registry: &Registry, inv: &Invocation, files: &[PathBuf]) -> Result<Values> {
    let mut values = registry.settings.defaults();
    for file in files {
        config_files::apply_file(file, &registry.settings, &mut values)?;
    }
    values.apply_env(&registry.settings, |var| std::env::var_os(var))?;
    for (name, value) in &inv.values {
        values.set_from(name, value.clone(), settings::Source::CommandLine);
    }
    Ok(values)
}

fn configure_logging(registry: &Registry, values: &Values) -> Result<()> {
    let level_text = values.string("log-level").unwrap_or("info");
    let level = logging::parse_level(level_text)
        .ok_or_else(|| anyhow!("unknown log level '{level_text}'"))?;
    let file = values.path("log").map(Path::new);
    logging::configure(file, level, values.boolean("quiet")).with_context(|| {
        format!(
            "cannot open log file {}",
            escape_path(file.unwrap_or(Path::new("")))
        )
    })?;
    for p in &registry.plugins {
        p.set_log_level(logging::max_level());
    }
    Ok(())
}
