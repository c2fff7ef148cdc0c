#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Installed as `kubectl-accountlinker`, the binary is the kubectl plugin.
    let argv0 = std::env::args().next().unwrap_or_default();
    if account_linker::plugin::invoked_as_plugin(&argv0) {
        let cli = account_linker::plugin::PluginCli::parse();
        return match account_linker::plugin::run(cli.args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("kubectl accountlinker: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = account_linker::cli::Cli::parse();
    match account_linker::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("account-linker: {err}");
            ExitCode::FAILURE
        }
    }
}
