//! `kubectl accountlinker`: the fleet seen from a terminal. The same binary serves as the
//! operator and as the kubectl plugin (installed as `kubectl-accountlinker`, or
//! `account-linker fleet …`). It talks to the API server with the caller's kubeconfig and RBAC
//! only, and reads only what `kubectl get` reads; `verify` and `rotate` set the request
//! annotations the controllers honour ([`crate::api::annotations`]).
//!
//! Each command keeps its decisions pure (summaries, explanations, tables, all from lists of
//! objects and a clock) and its I/O thin, so the output is unit-tested and snapshotted.

pub mod remedies;
pub mod request;
pub mod status;
pub mod table;
pub mod why;

use std::io::Write;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// The name kubectl runs the plugin by.
pub const PLUGIN_BINARY: &str = "kubectl-accountlinker";

/// `kubectl accountlinker`, when the binary runs under its plugin name.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl accountlinker",
    version,
    about = "The account-linker fleet: status, why, verify, rotate"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: FleetArgs,
}

/// Whether `argv0` (the program's path) is the plugin's name.
pub fn invoked_as_plugin(argv0: &str) -> bool {
    let base = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    base == PLUGIN_BINARY || base.strip_suffix(".exe") == Some(PLUGIN_BINARY)
}

/// The plugin's flags and command (also `account-linker fleet …`).
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The current time, for reproducible ages (tests, docs).
    #[arg(long, global = true, hide = true)]
    pub now: Option<Timestamp>,
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Fleet summary per BulkRegistration and in total, and the first failing accounts.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// How many failing accounts to list.
        #[arg(long, default_value_t = 10)]
        failing: usize,
    },
    /// An object's conditions in words, what to do, its Events and its parent's state.
    Why {
        /// KIND/NAME: lacct/x, linkedaccount/x, bulkreg/x, macct/x, …
        target: String,
    },
    /// Ask the controller to verify now (LinkedAccount) or re-read targets now
    /// (BulkRegistration): sets accountlinker.dev/verify-requested-at.
    Verify {
        /// KIND/NAME: lacct/x or bulkreg/x.
        target: String,
    },
    /// Ask the controller to rotate a BulkRegistration's generated token now: sets
    /// accountlinker.dev/rotate-requested-at.
    Rotate {
        /// bulkreg/NAME.
        target: String,
    },
}

/// The kinds the plugin knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    LinkedAccount,
    BulkRegistration,
    MemberAccount,
}

impl Kind {
    /// The API resource, for reads that treat the kinds alike.
    pub fn resource(self) -> kube::discovery::ApiResource {
        use kube::discovery::ApiResource;
        match self {
            Self::LinkedAccount => ApiResource::erase::<crate::api::LinkedAccount>(&()),
            Self::BulkRegistration => ApiResource::erase::<crate::api::BulkRegistration>(&()),
            Self::MemberAccount => ApiResource::erase::<crate::api::MemberAccount>(&()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkedAccount => "LinkedAccount",
            Self::BulkRegistration => "BulkRegistration",
            Self::MemberAccount => "MemberAccount",
        }
    }
}

/// Parses `KIND/NAME` as kubectl spells kinds: singular, plural, short name, with or without
/// the group.
pub fn parse_target(text: &str) -> Result<(Kind, String), PluginError> {
    let bad = || {
        PluginError::Usage(format!(
            "{text:?}: expected KIND/NAME, e.g. lacct/prod, bulkreg/workloads, macct/sandbox"
        ))
    };
    let (kind, name) = text.split_once('/').ok_or_else(bad)?;
    if name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    let kind = kind.to_ascii_lowercase();
    let kind = kind.strip_suffix(".accountlinker.dev").unwrap_or(&kind);
    let kind = match kind {
        "lacct" | "linkedaccount" | "linkedaccounts" => Kind::LinkedAccount,
        "bulkreg" | "bulkregistration" | "bulkregistrations" => Kind::BulkRegistration,
        "macct" | "memberaccount" | "memberaccounts" => Kind::MemberAccount,
        other => {
            return Err(PluginError::Usage(format!(
                "unknown kind {other:?}: use lacct, bulkreg or macct (or their full names)"
            )));
        }
    };
    Ok((kind, name.to_string()))
}

/// Errors of the plugin, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Usage(String),
    /// RBAC said no: say what was asked, where, and that it is the caller's permissions.
    #[error(
        "{verb} {resource} in {scope}: forbidden for your user ({message}); ask for RBAC that allows it, or narrow the scope with -n"
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        scope: String,
        message: String,
    },
    #[error("{kind}/{name} not found in namespace {namespace}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error("cannot render: {0}")]
    Render(String),
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
}

/// Turns an API error of `verb resource` in `scope` into a plugin error (403 worded).
pub fn api_error(e: kube::Error, verb: &'static str, resource: &str, scope: &str) -> PluginError {
    match e {
        kube::Error::Api(s) if s.code == 403 => PluginError::Forbidden {
            verb,
            resource: resource.to_string(),
            scope: scope.to_string(),
            message: s.message.clone(),
        },
        e => PluginError::Kube(e),
    }
}

/// Where the output goes and how it looks.
pub struct Out<'a> {
    pub writer: &'a mut dyn Write,
    pub format: Format,
    /// ANSI colours: only on a terminal, and not with NO_COLOR.
    pub colour: bool,
    pub now: Timestamp,
}

impl Out<'_> {
    /// Writes `value` as JSON or YAML; `false` when the format is a table.
    pub fn structured<T: serde::Serialize>(&mut self, value: &T) -> Result<bool, PluginError> {
        match self.format {
            Format::Table => return Ok(false),
            Format::Json => {
                let text = serde_json::to_string_pretty(value)
                    .map_err(|e| PluginError::Render(e.to_string()))?;
                writeln!(self.writer, "{text}")?;
            }
            Format::Yaml => {
                let text = crate::yaml::to_string(value)
                    .map_err(|e| PluginError::Render(e.to_string()))?;
                write!(self.writer, "{text}")?;
            }
        }
        Ok(true)
    }
}

/// Colour on when stdout is a terminal and NO_COLOR is unset (https://no-color.org).
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs one plugin command with `client` (namespace `default_namespace` when `-n` is not
/// given), writing to `out`.
pub async fn execute(
    args: FleetArgs,
    client: Client,
    default_namespace: &str,
    out: &mut Out<'_>,
) -> Result<(), PluginError> {
    if let Some(now) = args.now {
        out.now = now;
    }
    out.format = args.output;
    let namespace = args
        .namespace
        .unwrap_or_else(|| default_namespace.to_string());
    match args.command {
        FleetCommand::Status {
            all_namespaces,
            failing,
        } => {
            let scope = (!all_namespaces).then_some(namespace.as_str());
            status::run(client, scope, failing, out).await
        }
        FleetCommand::Why { target } => {
            let (kind, name) = parse_target(&target)?;
            why::run(client, &namespace, kind, &name, out).await
        }
        FleetCommand::Verify { target } => {
            let (kind, name) = parse_target(&target)?;
            request::request(client, &namespace, kind, &name, false, out).await
        }
        FleetCommand::Rotate { target } => {
            let (kind, name) = parse_target(&target)?;
            request::request(client, &namespace, kind, &name, true, out).await
        }
    }
}

/// Runs the plugin from the command line: the kubeconfig as kubectl finds it (KUBECONFIG,
/// ~/.kube/config, in-cluster), stdout for the output.
pub fn run(args: FleetArgs) -> Result<(), PluginError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?;
        let namespace = config.default_namespace.clone();
        let client = Client::try_from(config)?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let mut out = Out {
            writer: &mut lock,
            format: Format::Table,
            colour: colour_wanted(),
            now: Timestamp::now(),
        };
        execute(args, client, &namespace, &mut out).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_kubectl_spells_kinds() {
        let cases = [
            ("lacct/x", Some((Kind::LinkedAccount, "x"))),
            ("linkedaccount/x", Some((Kind::LinkedAccount, "x"))),
            (
                "LinkedAccounts.accountlinker.dev/x",
                Some((Kind::LinkedAccount, "x")),
            ),
            ("bulkreg/w", Some((Kind::BulkRegistration, "w"))),
            ("bulkregistration/w", Some((Kind::BulkRegistration, "w"))),
            ("macct/s", Some((Kind::MemberAccount, "s"))),
            ("memberaccounts/s", Some((Kind::MemberAccount, "s"))),
            ("pod/x", None),
            ("lacct", None),
            ("lacct/", None),
            ("lacct/a/b", None),
        ];
        for (text, want) in cases {
            let got = parse_target(text).ok();
            assert_eq!(got.as_ref().map(|(k, n)| (*k, n.as_str())), want, "{text}");
        }
    }

    #[test]
    fn the_plugin_is_recognised_by_its_file_name() {
        for (argv0, plugin) in [
            ("kubectl-accountlinker", true),
            ("/usr/local/bin/kubectl-accountlinker", true),
            ("account-linker", false),
            ("/bin/kubectl-accountlinker-old", false),
        ] {
            assert_eq!(invoked_as_plugin(argv0), plugin, "{argv0}");
        }
    }
}
