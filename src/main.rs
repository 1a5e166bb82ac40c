//! The `composeops` binary: parses arguments and prints; all logic lives in the library.

mod agent_cli;
mod cli;
mod converge_cli;

fn main() {
    let code = cli::run();
    std::process::exit(code);
}
