//! The `composeops` binary: parses arguments and prints; all logic lives in the library.

mod cli;
mod converge_cli;
mod agent_cli;

fn main() {
    let code = cli::run();
    std::process::exit(code);
}
