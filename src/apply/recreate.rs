//! The in-place recreate of one replica, decided as a list of steps and then done.
//!
//! The new container is created under a temporary name, the old one is stopped and renamed
//! aside (kept), the new one takes the final name and starts; once it is ready the old one is
//! removed, and if it is not, the old one is renamed back and started again (same id). The
//! journal is written before each destructive step, so a run killed at any instant is finished
//! or undone by [`super::recover`].

use super::exec;
use super::ops::ContainerOps;
use super::ready::NotReady;
use super::report::Outcome;
use super::rollback::{self, Failed, View};
use super::step::{short, OnError, Step};
use super::{pause_at, progress, Applier};
use crate::journal::{Entry, Phase};
use crate::observe::{Observed, SUFFIX_FAILED, SUFFIX_NEW, SUFFIX_OLD};
use crate::plan::ReplicaPlan;
use crate::spec::Spec;

/// How a replica's change ended when it did not end well: the outcome and why.
pub(crate) type Failure = (Outcome, NotReady);

/// The journal entry a recreate of `old_id` into `final_name` starts with.
pub(crate) fn entry(service: &str, final_name: &str, old_id: &str) -> Entry {
    Entry {
        service: service.into(),
        final_name: final_name.into(),
        temp_name: format!("{final_name}{SUFFIX_NEW}"),
        aside_name: format!("{final_name}{SUFFIX_OLD}"),
        old_id: Some(old_id.into()),
        new_id: None,
        phase: Phase::Creating,
    }
}

/// Where a failed new container is kept for inspection.
pub(crate) fn failed_name(final_name: &str) -> String {
    format!("{final_name}{SUFFIX_FAILED}")
}

/// The steps of a recreate up to the readiness wait, with what a failure of each means.
/// Each journal write comes before the steps its phase covers.
pub(crate) fn steps(e: &Entry, grace: Option<i64>) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    let (temp, fin) = (e.temp_name.clone(), e.final_name.clone());
    vec![
        // A container kept from an earlier failure is superseded now.
        (Step::Remove(failed_name(&fin)), OnError::Abort),
        (Step::Journal(Phase::Creating), OnError::Abort),
        (
            Step::Create(temp.clone()),
            OnError::AbortAfter(vec![Step::Remove(temp.clone()), Step::ClearJournal]),
        ),
        // From here the journal holds the new id: recovery finds the new container anywhere.
        (Step::Journal(Phase::Swapping), OnError::Abort),
        (
            Step::Stop {
                container: old.clone(),
                grace: grace.unwrap_or(10),
            },
            OnError::RollBack,
        ),
        (
            Step::Rename {
                container: old,
                to: e.aside_name.clone(),
            },
            OnError::RollBack,
        ),
        (
            Step::Rename {
                container: temp,
                to: fin.clone(),
            },
            OnError::RollBack,
        ),
        (Step::Journal(Phase::Waiting), OnError::RollBack),
        (Step::Start(fin.clone()), OnError::RollBack),
        (Step::WaitReady(fin), OnError::RollBack),
    ]
}

/// The new container is ready: commit (journal first), then the old container goes.
pub(crate) fn commit(e: &Entry) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    vec![
        (Step::Journal(Phase::Committed), OnError::Abort),
        (Step::Remove(old), OnError::Warn),
        (Step::ClearJournal, OnError::Ignore),
    ]
}

/// The new container failed: journal the rollback, put the old container back (see
/// [`rollback::undo`]; every step must succeed), then clear the journal.
pub(crate) fn rollback(e: &Entry, v: &View, cleanup_failed: bool) -> Vec<(Step, OnError)> {
    let failed = if cleanup_failed {
        Failed::Remove
    } else {
        Failed::KeepAs(failed_name(&e.final_name))
    };
    let undo = rollback::undo(e, v, &failed);
    std::iter::once((Step::Journal(Phase::RollingBack), OnError::Ignore))
        .chain(undo.into_iter().map(|s| (s, OnError::Abort)))
        .chain(std::iter::once((Step::ClearJournal, OnError::Ignore)))
        .collect()
}

impl<E: ContainerOps> Applier<'_, E> {
    /// Recreates replica `r` of `service` (see the module documentation).
    pub(crate) async fn recreate_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
        observed: &Observed,
    ) -> Result<Outcome, Failure> {
        let old_id = r.container_id.clone().expect("recreate has a container");
        let mut e = entry(service, &r.name, &old_id);
        progress(
            service,
            format!("recreating {} ({})", e.final_name, r.reasons.join("; ")),
        );
        let anon = observed
            .containers
            .iter()
            .find(|c| c.id == old_id)
            .map(|c| c.anon_volumes.clone())
            .unwrap_or_default();
        for (step, on_error) in steps(&e, spec.stop_grace_period) {
            let res = match &step {
                Step::WaitReady(name) => {
                    progress(service, format!("waiting for {name} to be ready"));
                    pause_at("health-wait").await;
                    match self.wait_ready(name, false).await {
                        Ok(()) => continue,
                        Err(nr) => return self.roll_back(service, &mut e, nr).await,
                    }
                }
                Step::Create(name) => self
                    .create(service, spec, r.number, name, &anon)
                    .await
                    .map(|id| e.new_id = Some(id)),
                _ => exec::run(self.engine, self.journal, &mut e, &step).await,
            };
            if let Err(err) = res {
                if let Some(end) = self.failed_step(service, &mut e, on_error, err).await {
                    return end;
                }
            } else if matches!(step, Step::Create(_)) {
                pause_at("create").await;
            }
        }
        self.commit(service, &mut e).await
    }

    async fn commit(&self, service: &str, e: &mut Entry) -> Result<Outcome, Failure> {
        for (step, on_error) in commit(e) {
            if let Step::Remove(old) = &step {
                progress(
                    service,
                    format!("removing the old container {}", short(old)),
                );
            }
            match exec::run(self.engine, self.journal, e, &step).await {
                Err(err) => {
                    if let Some(end) = self.failed_step(service, e, on_error, err).await {
                        return end;
                    }
                }
                Ok(()) if step == Step::Journal(Phase::Committed) => pause_at("remove-old").await,
                Ok(()) => {}
            }
        }
        Ok(Outcome::Applied)
    }

    /// Does what `on_error` says; `Some` ends the recreate with that result.
    async fn failed_step(
        &self,
        service: &str,
        e: &mut Entry,
        on_error: OnError,
        err: anyhow::Error,
    ) -> Option<Result<Outcome, Failure>> {
        match on_error {
            OnError::Abort => Some(Err((Outcome::RolledBack, NotReady::from_error(err)))),
            OnError::AbortAfter(cleanup) => {
                exec::run_best_effort(self.engine, self.journal, e, &cleanup).await;
                Some(Err((Outcome::RolledBack, NotReady::from_error(err))))
            }
            OnError::RollBack => Some(self.roll_back(service, e, NotReady::from_error(err)).await),
            OnError::Warn => {
                progress(service, format!("warning: {err:#}"));
                None
            }
            OnError::Ignore => None,
        }
    }

    /// Puts the old container back; `nr` is why the new one failed.
    async fn roll_back(
        &self,
        service: &str,
        e: &mut Entry,
        nr: NotReady,
    ) -> Result<Outcome, Failure> {
        progress(
            service,
            format!("{} {}: rolling back", e.final_name, nr.message),
        );
        match self.run_rollback(e).await {
            Ok(()) => Err((Outcome::RolledBack, nr)),
            Err(err) => {
                let mut nr = nr;
                nr.message = format!("{}; rollback failed: {err:#}", nr.message);
                Err((Outcome::RollbackFailed, nr))
            }
        }
    }

    async fn run_rollback(&self, e: &mut Entry) -> anyhow::Result<()> {
        let view = View::read(self.engine, e).await?;
        if view.old.is_none() {
            anyhow::bail!(
                "the old container {} is gone",
                e.old_id.as_deref().unwrap_or("(unknown)")
            );
        }
        for (step, on_error) in rollback(e, &view, self.opts.cleanup_failed) {
            let res = exec::run(self.engine, self.journal, e, &step).await;
            if on_error == OnError::Abort {
                res?;
            }
        }
        Ok(())
    }
}
