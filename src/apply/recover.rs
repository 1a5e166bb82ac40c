//! Recovery of a run killed in the middle of recreates: read the journal's entries (one per
//! replica of the batch in flight, and those kept for a rollback), look at the containers each
//! names, and finish (committed, kept) or undo (any other phase) each recreate with the steps
//! [`super::rollback::recovery`] decides.

use anyhow::Result;

use super::emit;
use super::exec;
use super::ops::ContainerOps;
use super::rollback::{self, View};
use crate::journal::Journal;

/// [`super::recover`] on any [`ContainerOps`]. An entry is cleared only once every step of
/// its recovery succeeded, so a failed recovery is tried again by the next run; the other
/// entries are recovered all the same, and the first error is returned.
pub(crate) async fn recover_with(ops: &impl ContainerOps, journal: &Journal) -> Result<bool> {
    let entries = journal.entries()?;
    let mut first_error = None;
    for mut e in entries.iter().cloned() {
        emit(format_args!(
            "recovering an interrupted apply of {} ({:?}) from {}",
            e.final_name,
            e.phase,
            journal.path().display()
        ));
        let res = async {
            let view = View::read(ops, &e).await?;
            let steps = rollback::recovery(&e, &view);
            for s in &steps {
                tracing::info!(step = %s, "recovery");
            }
            exec::run_all(ops, journal, &mut e, &steps).await?;
            journal.clear(&e.final_name)
        }
        .await;
        match res {
            Ok(()) => emit(format_args!("recovered {}", e.final_name)),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(!entries.is_empty()),
    }
}
