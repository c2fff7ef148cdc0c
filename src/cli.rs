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
    Run(Box<crate::runtime::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.accountlinker.dev.yaml` files into this folder instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Errors of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot render CRD YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("cannot start the async runtime: {0}")]
    Tokio(#[source] std::io::Error),
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
            Ok(runtime.block_on(crate::runtime::run(*args))?)
        }
        Command::Crd { out_dir: None } => {
            print!("{}", crds_yaml()?);
            Ok(())
        }
        Command::Crd { out_dir: Some(dir) } => write_crd_files(&dir),
    }
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let docs = api::crds()
        .iter()
        .map(crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// One CRD as YAML.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
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
