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
    one_malloc_arena();
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

/// glibc's malloc gives each thread that allocates an arena of its own, whose pages the kernel
/// must zero as they are first touched, and each keeps what it once held. One arena for the
/// process, set before the runtime's threads start:
/// - the idle agent: with the trim after each reconcile (`worker::release_free_heap`), its heap
///   went from 7.1 to 4.4–5.5 MiB watching 10 stacks (scripts/bench-agent-idle.sh);
/// - a no-op `apply` on 30 services: 539 → 464 page faults (`perf stat`), the runtime's
///   threads rarely allocating at the same time.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
