//! The `composeops` binary: parses arguments and prints; all logic lives in the library.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
