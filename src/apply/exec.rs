//! Doing: runs one [`Step`] through [`ContainerOps`] and the journal. No decisions here: what
//! a failure means is the caller's [`super::step::OnError`].

use anyhow::{Context, Result};

use super::ops::ContainerOps;
use super::step::Step;
use crate::journal::{Entry, Journal};

/// Runs `step`. `entry` is the recreate in flight: `Journal` steps record it at their phase.
/// `Create`, `WaitReady` and `Verify` need the service's spec, the wait options and its check:
/// the recreate runs those itself.
pub(crate) async fn run(
    ops: &impl ContainerOps,
    journal: &Journal,
    entry: &mut Entry,
    step: &Step,
) -> Result<()> {
    match step {
        Step::Journal(phase) => {
            entry.phase = *phase;
            journal.write(entry)
        }
        Step::ClearJournal => journal.clear(&entry.final_name),
        Step::Stop { container, grace } => ops
            .stop(container, *grace)
            .await
            .with_context(|| format!("cannot stop {container}")),
        Step::Rename { container, to } => ops
            .rename(container, to)
            .await
            .with_context(|| format!("cannot rename {container} to {to}")),
        Step::Start(c) => ops
            .start(c)
            .await
            .with_context(|| format!("cannot start {c}")),
        Step::Remove(c) => ops
            .remove(c)
            .await
            .with_context(|| format!("cannot remove {c}")),
        Step::Disconnect { container, network } => ops
            .disconnect(network, container)
            .await
            .with_context(|| format!("cannot disconnect {container} from {network}")),
        Step::Connect {
            container,
            network,
            aliases,
        } => {
            let ep = bollard::models::EndpointSettings {
                aliases: Some(aliases.clone()),
                ..Default::default()
            };
            ops.connect(network, container, ep)
                .await
                .with_context(|| format!("cannot connect {container} to {network}"))
        }
        Step::Drain | Step::Settle => {
            tokio::time::sleep(super::step::DRAIN).await;
            Ok(())
        }
        Step::Create(_) | Step::WaitReady(_) | Step::Verify(_) | Step::Monitor { .. } => {
            anyhow::bail!("internal error: `{step}` is run by the recreate, not the executor")
        }
    }
}

/// Runs `steps` in order, stopping at the first error.
pub(crate) async fn run_all(
    ops: &impl ContainerOps,
    journal: &Journal,
    entry: &mut Entry,
    steps: &[Step],
) -> Result<()> {
    for s in steps {
        tracing::debug!(step = %s, "apply step");
        run(ops, journal, entry, s).await?;
    }
    Ok(())
}

/// Runs `steps` in order, ignoring errors (cleanup after a failure already reported).
pub(crate) async fn run_best_effort(
    ops: &impl ContainerOps,
    journal: &Journal,
    entry: &mut Entry,
    steps: &[Step],
) {
    for s in steps {
        if let Err(e) = run(ops, journal, entry, s).await {
            tracing::debug!(step = %s, error = %format!("{e:#}"), "best-effort step failed");
        }
    }
}
