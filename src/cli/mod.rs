//! Command-line interface: Compose's global options, one subcommand per pipeline entry point.
//! This layer parses and prints; everything it calls is in the library. `args` holds the
//! clap types, `common` the runtime and logging, and each command has a file of its own.

mod agent;
mod apply;
pub(crate) mod args;
mod common;
mod config;
mod docs;
mod lock;
mod plan;
mod rollback;
mod status;

use clap::Parser;

use args::{Cli, Command};

/// Runs the command line; the process exit status.
pub fn run() -> i32 {
    let cli = Cli::parse();
    // The agent sets up logging itself once its settings (--log-format) are known.
    if !matches!(cli.command, Command::Agent(_)) {
        composeops::progress::set_mode(cli.global.progress.mode());
        common::init_tracing(common::Logs::Cli, cli.global.ansi);
    }
    tracing::debug!("arguments parsed");
    let result = match &cli.command {
        Command::Config(a) => config::run(&cli.global, a),
        Command::Lock(a) => lock::run(&cli.global, a),
        Command::Plan(a) => plan::run(&cli.global, a),
        Command::Apply(a) => apply::run(&cli.global, a),
        Command::Status(a) => status::run(&cli.global, a),
        Command::Rollback(a) => rollback::run(&cli.global, a),
        Command::Agent(a) => agent::run(&cli.global, a),
        Command::Completion { shell } => docs::completion(*shell),
        Command::Man => docs::man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
