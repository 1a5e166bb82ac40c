//! `composeops completion SHELL` and `composeops man`: generated from the clap definitions, so
//! they never drift from the flags.

use anyhow::Result;
use clap::CommandFactory;

use super::args::Cli;

pub(crate) fn completion(shell: clap_complete::Shell) -> Result<i32> {
    // Into a buffer first: the generator panics on a write error (a closed pipe).
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "composeops", &mut buf);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &buf)?;
    Ok(0)
}

/// The top-level page, then one page per subcommand (`composeops-apply(1)`, …), concatenated.
pub(crate) fn man() -> Result<i32> {
    let cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are `&'static str`; the process prints once and exits.
        let name: &'static str =
            Box::leak(format!("composeops-{}", sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name);
        clap_mangen::Man::new(page).render(&mut out)?;
    }
    Ok(0)
}
