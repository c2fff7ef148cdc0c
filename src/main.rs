#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = account_linker::cli::Cli::parse();
    match account_linker::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("account-linker: {err}");
            ExitCode::FAILURE
        }
    }
}
