//! Subcommands of the host itself: only what describes the host's own
//! state: the plugins it loaded, and its command line (shell completions
//! and the manual page), which the loaded plugins' subcommands and
//! settings are part of.

use std::ffi::OsString;
use std::str::FromStr;

use anyhow::{bail, Result};
use clap_complete::Shell;

use crate::cli::{self, HelpLayout};
use crate::loader::LoadedPlugin;
use crate::output;
use crate::registry::Registry;
use crate::services::Host;

/// Register the built-in subcommands.
pub fn register(registry: &mut Registry) {
    registry.add_builtin_subcommand(
        "plugins",
        "",
        "list the loaded plugins: name, version and the file each came from",
    );
    registry.add_builtin_subcommand(
        "completions",
        "SHELL",
        "print shell completions (bash, zsh, fish, elvish, powershell)",
    );
    registry.add_builtin_subcommand(
        "manpage",
        "",
        "print the manual page (roff: obnam manpage | man -l -)",
    );
}

/// Run a built-in subcommand.
pub fn run(name: &str, args: &[OsString], host: &Host, registry: &Registry) -> Result<()> {
    match name {
        "plugins" => {
            no_arguments(name, args)?;
            plugins(host, registry)
        }
        other => match run_without_settings(other, args, registry) {
            Some(done) => done,
            None => bail!("unknown built-in subcommand '{other}'"),
        },
    }
}

/// Run `name` if it is a built-in subcommand that reads no setting (what
/// it prints depends on the loaded plugins alone): before the settings
/// are read, so that a bad config file or variable it does not use does
/// not stop it (`obnam completions bash` of a packaging step failed on a
/// broken `/etc/obnam.conf`). `None` for any other subcommand.
pub fn run_without_settings(
    name: &str,
    args: &[OsString],
    registry: &Registry,
) -> Option<Result<()>> {
    match name {
        "completions" => Some(completions(args, registry)),
        "manpage" => Some(no_arguments(name, args).and_then(|()| {
            let page = manual_page(registry)?;
            Ok(output::write(&page)?)
        })),
        _ => None,
    }
}

/// The manual page: clap's sections for the command line, then the
/// subcommands described in place (clap's own section points to pages
/// `obnam-SUB(1)` that do not exist), and what a manual page of a Unix
/// command has besides: exit status, environment, files.
fn manual_page(registry: &Registry) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cli::build(registry, HelpLayout::Flat));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH SUBCOMMANDS\n");
    for sub in &registry.subcommands {
        page.extend_from_slice(
            format!(
                ".TP\n\\fBobnam {}\\fR {}\n{}\n",
                roff(&sub.name),
                roff(&sub.synopsis),
                roff(&sub.help)
            )
            .as_bytes(),
        );
    }
    page.extend_from_slice(MANUAL_SECTIONS.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Text for roff: a backslash as `\e` and `-` as `\-`, and a leading `.` or `'` (a
/// request to roff) escaped.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.chars().next() {
        Some('.' | '\'') => format!("\\&{text}"),
        _ => text,
    }
}

/// The manual page's sections that the command line does not give: what
/// `docs/user-guide.md` says in "Exit codes" and "Where settings come
/// from", shortened.
const MANUAL_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
0
Success.
.TP
1
The command failed: an error, a file that could not be backed up or restored, problems found by \fBfsck\fR, differences found by \fBverify\fR, a bad config file or environment variable.
.TP
2
A usage error on the command line (an unknown option or subcommand, a bad option value).
.TP
70
An internal error: a bug in obnam.
.TP
75
The development setting \-\-crash\-limit stopped the process on purpose.
.TP
129, 130, 143
Interrupted by SIGHUP, SIGINT or SIGTERM, after releasing the locks.
.TP
141
Standard output was closed before obnam finished writing to it.
.PP
\fBnagios\-last\-backup\-age\fR exits with the Nagios state instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
.SH ENVIRONMENT
.TP
OBNAM_\fINAME\fR
Every setting: \fBOBNAM_\fR and the setting's name in upper case with \- as _ (\fBOBNAM_CLIENT_NAME\fR). It overrides config files; the command line overrides it.
.TP
OBNAM_PASSPHRASE, OBNAM_NEW_PASSPHRASE
The passphrase of an encrypted repository, and a new one for \fBkey add\fR and \fBkey passwd\fR.
.TP
OBNAM_PLUGIN_DIR
Folders of third\-party plugins, separated by colons (as \-\-plugin\-dir).
.TP
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
The credentials of an S3 repository.
.TP
HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_STATE_HOME
Where the config files of the user, the cache and the records of the repositories used are.
.SH FILES
.TP
/etc/obnam.conf, /etc/obnam/*.conf
The system's config files, read first.
.TP
~/.obnam.conf, $XDG_CONFIG_HOME/obnam/*.conf (default ~/.config/obnam/)
The user's config files, read after the system's; each \-\-config FILE is read after them.
.TP
$XDG_CACHE_HOME/obnam (default ~/.cache/obnam)
The cache of repository indexes, which obnam can always make again.
.TP
$XDG_STATE_HOME/obnam/repositories (default ~/.local/state/obnam/repositories)
What this machine found in each repository's config the first time it used it: a repository whose config changed since is refused.
.SH "SEE ALSO"
The user guide, docs/user\-guide.md in obnam's sources.
"#;

fn no_arguments(name: &str, args: &[OsString]) -> Result<()> {
    match args.first() {
        Some(arg) => bail!("{name} takes no arguments, got '{}'", arg.to_string_lossy()),
        None => Ok(()),
    }
}

/// `obnam completions SHELL`.
fn completions(args: &[OsString], registry: &Registry) -> Result<()> {
    const SHELLS: &str = "bash, zsh, fish, elvish or powershell";
    let [shell] = args else {
        bail!("completions needs one SHELL: {SHELLS}");
    };
    let name = shell.to_string_lossy();
    let Ok(shell) = Shell::from_str(&name) else {
        bail!("completions: unknown shell '{name}' (use {SHELLS})");
    };
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut cli::build(registry, HelpLayout::Completions),
        "obnam",
        &mut script,
    );
    Ok(output::write(&script)?)
}

fn plugins(host: &Host, registry: &Registry) -> Result<()> {
    // json-lines streams only from commands that report progress; here
    // it is json.
    if matches!(
        host.values().string("output-format"),
        Some("json" | "json-lines")
    ) {
        let list: Vec<serde_json::Value> = registry
            .plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "api_version": p.api_version,
                    "file": p.path.display().to_string(),
                })
            })
            .collect();
        output::line(&serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    let widest =
        |len: fn(&LoadedPlugin) -> usize| registry.plugins.iter().map(len).max().unwrap_or(0);
    let name_width = widest(|p| p.name.len());
    let version_width = widest(|p| p.version.len());
    for p in &registry.plugins {
        output::line(&format!(
            "{:name_width$}  {:version_width$}  {}",
            p.name,
            p.version,
            p.path.display()
        ))?;
    }
    Ok(())
}
