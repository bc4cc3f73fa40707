//! `modelreg`: the registry from the shell. Built with the `cli` feature:
//! `cargo install modelreg --features cli,aws,gcp,azure`.
//!
//! Grammar `modelreg <resource> <action>`; `modelreg --help` lists the commands,
//! the environment and the exit codes, and `modelreg <resource> <action> --help`
//! each command's options. Data goes to stdout (tables, or the records' serde
//! shape with `--json`), messages and progress bars to stderr.

mod args;
mod failure;
mod output;
mod parse;
mod progress;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0; usage errors exit 2, as clap prints them.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let json = cli.json;
    // One thread starts fastest for a command; the server uses every core.
    #[cfg(feature = "serve")]
    let mut builder = if matches!(cli.command, args::Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    #[cfg(not(feature = "serve"))]
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return failure::Failure::Output(e).report(json),
    };
    let result = runtime.block_on(run::run(cli));
    // Background work (a checkpoint being written) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `modelreg … | head`: the reader left; not an error.
        Err(failure::Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(f) => f.report(json),
    }
}
