//! Recovery of a run killed in the middle of a recreate: read the journal entry, look at the
//! containers it names, and finish (committed) or undo (any other phase) the recreate with the
//! steps [`super::rollback::recovery`] decides.

use anyhow::Result;

use super::emit;
use super::exec;
use super::ops::ContainerOps;
use super::rollback::{self, View};
use crate::journal::Journal;

/// [`super::recover`] on any [`ContainerOps`]. The journal entry is cleared only once every
/// step succeeded, so a failed recovery is tried again by the next run.
pub(crate) async fn recover_with(ops: &impl ContainerOps, journal: &Journal) -> Result<bool> {
    let Some(mut e) = journal.read()? else {
        return Ok(false);
    };
    emit(format_args!(
        "recovering an interrupted apply of {} ({:?}) from {}",
        e.final_name,
        e.phase,
        journal.path().display()
    ));
    let view = View::read(ops, &e).await?;
    let steps = rollback::recovery(&e, &view);
    for s in &steps {
        tracing::info!(step = %s, "recovery");
    }
    exec::run_all(ops, journal, &mut e, &steps).await?;
    journal.clear()?;
    emit(format_args!("recovered {}", e.final_name));
    Ok(true)
}
