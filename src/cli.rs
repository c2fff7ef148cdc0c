//! Command-line interface of the `account-linker` binary.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::api;

/// Links AWS accounts to one hub identity and keeps every link verified.
#[derive(Debug, Parser)]
#[command(name = "account-linker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers.
    Run(Box<crate::config::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.accountlinker.dev.yaml` files into this folder instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Turn a file of account IDs (CSV export, comma-separated or one per line) into a
    /// BulkRegistration and the ConfigMap holding the accounts, printed as YAML.
    ImportCsv(ImportCsvArgs),
    /// The kubectl plugin's commands (`kubectl accountlinker …` when installed as
    /// `kubectl-accountlinker`): status, why, verify, rotate.
    Fleet(crate::plugin::FleetArgs),
    /// Generated documentation.
    Docs {
        #[command(subcommand)]
        what: DocsCommand,
    },
}

/// What `account-linker docs` renders.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Markdown API reference from the CRD schemas (docs/api-reference.md).
    ApiReference,
}

/// Flags of `account-linker import-csv`.
#[derive(Debug, clap::Args)]
pub struct ImportCsvArgs {
    /// File with the account IDs (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Name of the BulkRegistration; the ConfigMap is named `<name>-accounts`.
    #[arg(long)]
    pub name: String,
    /// Namespace of both objects (omitted: kubectl's current namespace).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Region to deploy the role to (repeat for more; the builtin template allows one).
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// StackSet permission model.
    #[arg(long, default_value = "ServiceManaged", value_parser = ["ServiceManaged", "SelfManaged"])]
    pub permission_model: String,
    /// Identity of the hub on StackSet calls.
    #[arg(long, default_value = "Self", value_parser = ["Self", "DelegatedAdmin"])]
    pub call_as: String,
    /// Administration role (SelfManaged).
    #[arg(long)]
    pub administration_role_arn: Option<String>,
    /// Execution role name in each account (SelfManaged).
    #[arg(long)]
    pub execution_role_name: Option<String>,
    /// What deleting the BulkRegistration does in AWS; `Retain`, the API's default, unless asked.
    #[arg(long, default_value = "Retain", value_parser = ["Delete", "Retain"])]
    pub deletion_policy: String,
}

/// Errors of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot render CRD YAML: {0}")]
    Yaml(#[from] crate::yaml::Error),
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
    #[error("cannot start the async runtime: {0}")]
    Tokio(#[source] std::io::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every bad line, one per line, so the user can fix them all at once.
    #[error("{} has {} bad line(s):\n{}", path.display(), errors.len(), errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    BadAccountList {
        path: PathBuf,
        errors: Vec<crate::account_list::LineError>,
    },
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs one CLI invocation.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(CliError::Tokio)?;
            Ok(runtime.block_on(crate::operator::run(*args))?)
        }
        Command::Crd { out_dir: None } => {
            print!("{}", crds_yaml()?);
            Ok(())
        }
        Command::Crd { out_dir: Some(dir) } => write_crd_files(&dir),
        Command::ImportCsv(args) => import_csv(&args),
        Command::Fleet(args) => Ok(crate::plugin::run(args)?),
        Command::Docs {
            what: DocsCommand::ApiReference,
        } => {
            print!("{}", crate::reference::api_reference());
            Ok(())
        }
    }
}

/// An API enum from its serialised spelling.
fn parse_enum<T: serde::de::DeserializeOwned>(value: &str) -> T {
    serde_json::from_value(serde_json::Value::String(value.to_string())).expect("checked by clap")
}

fn import_csv(args: &ImportCsvArgs) -> Result<(), CliError> {
    let read = |path: &Path| -> std::io::Result<String> {
        if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
    };
    let text = read(&args.file).map_err(|source| CliError::Read {
        path: args.file.clone(),
        source,
    })?;
    // The value parsers above only admit the enum's spellings.
    let options = crate::import_csv::Options {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        regions: args.regions.clone(),
        permission_model: parse_enum(&args.permission_model),
        call_as: parse_enum(&args.call_as),
        administration_role_arn: args.administration_role_arn.clone(),
        execution_role_name: args.execution_role_name.clone(),
        deletion_policy: parse_enum(&args.deletion_policy),
    };
    let imported =
        crate::import_csv::import(&text, &options).map_err(|errors| CliError::BadAccountList {
            path: args.file.clone(),
            errors,
        })?;
    for (line, account) in &imported.duplicates {
        eprintln!("note: line {line}: {account} already listed; kept once");
    }
    eprintln!("{} account(s)", imported.accounts.len());
    print!("{}", imported.yaml);
    Ok(())
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, crate::yaml::Error> {
    let docs = api::crds()
        .iter()
        .map(crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// One CRD as YAML.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, crate::yaml::Error> {
    crate::yaml::to_string(crd)
}

/// The file name `crds/` uses for a CRD.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

fn write_crd_files(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for crd in api::crds() {
        let path = dir.join(crd_file_name(&crd));
        std::fs::write(&path, crd_yaml(&crd)?)
            .map_err(|source| CliError::Write { path, source })?;
    }
    Ok(())
}
