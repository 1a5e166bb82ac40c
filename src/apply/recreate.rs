//! The in-place recreate of one replica, decided as a list of steps and then done.
//!
//! Stop-first (the default): the new container is created under a temporary name, the old one
//! is stopped and renamed aside (kept), the new one takes the final name and starts; once it
//! is ready the old one is removed, and if it is not, the old one is renamed back and started
//! again (same id).
//!
//! Start-first (`deploy.update_config.order`): the new container starts under the temporary
//! name beside the old one, on the same networks but without their aliases, so that the
//! engine's DNS sends no client to it before it listens. Once it is ready it is connected again
//! with the aliases (the service name and the final container name, as Compose gives them) and
//! both serve for a moment; then the old one is taken off its networks (new connections go to
//! the new one), drained, stopped and removed, and the new one takes the final name. If the
//! new one fails, the old one was never touched.
//!
//! A service with `x-composeops.verify` has its check run on the new container once it is
//! ready, before anything else happens to either container (so, start-first, before the new
//! one takes its aliases and while the old one still serves): a failed check rolls back as a
//! failed health wait does.
//!
//! The journal is written before each destructive step, so a run killed at any instant is
//! finished or undone by [`super::recover`].

use std::time::Duration;

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
use crate::update::{Rollout, UpdateOrder};

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
        old_networks: Default::default(),
    }
}

/// Where a failed new container is kept for inspection.
pub(crate) fn failed_name(final_name: &str) -> String {
    format!("{final_name}{SUFFIX_FAILED}")
}

/// The steps of a recreate up to the readiness wait (and the check, with `verify`), with
/// what a failure of each means. Each journal write comes before the steps its phase covers.
pub(crate) fn steps(
    e: &Entry,
    grace: Option<i64>,
    verify: bool,
    monitor: Duration,
) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    let (temp, fin) = (e.temp_name.clone(), e.final_name.clone());
    let mut steps = vec![
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
        (Step::WaitReady(fin.clone()), OnError::RollBack),
    ];
    if verify {
        steps.push((Step::Verify(fin.clone()), OnError::RollBack));
    }
    push_monitor(&mut steps, &fin, monitor);
    steps
}

/// `update_config.monitor`: the new container serves, and its old one is still there to go
/// back to, while it is watched.
fn push_monitor(steps: &mut Vec<(Step, OnError)>, container: &str, period: Duration) {
    if !period.is_zero() {
        let step = Step::Monitor {
            container: container.to_string(),
            period,
        };
        steps.push((step, OnError::RollBack));
    }
}

/// Start-first, up to the readiness wait: the new container runs beside the old one, which
/// nothing here touches. It starts without its aliases (the engine's DNS would send clients
/// to it before it listens); once ready (and verified, with `verify`), it is connected again
/// to each of `serving`'s networks with their aliases, and serves beside the old one.
pub(crate) fn start_first_steps(
    e: &Entry,
    serving: &[(String, Vec<String>)],
    verify: bool,
    monitor: Duration,
) -> Vec<(Step, OnError)> {
    let (temp, fin) = (e.temp_name.clone(), e.final_name.clone());
    let mut steps = vec![
        (Step::Remove(failed_name(&fin)), OnError::Abort),
        (Step::Journal(Phase::Creating), OnError::Abort),
        (
            Step::Create(temp.clone()),
            OnError::AbortAfter(vec![Step::Remove(temp.clone()), Step::ClearJournal]),
        ),
        // The journal holds the new id: recovery removes the new container, wherever it is.
        (Step::Journal(Phase::Starting), OnError::Abort),
        (Step::Start(temp.clone()), OnError::RollBack),
        (Step::WaitReady(temp.clone()), OnError::RollBack),
    ];
    if verify {
        steps.push((Step::Verify(temp.clone()), OnError::RollBack));
    }
    for (network, aliases) in serving {
        let disconnect = Step::Disconnect {
            container: temp.clone(),
            network: network.clone(),
        };
        let connect = Step::Connect {
            container: temp.clone(),
            network: network.clone(),
            aliases: aliases.clone(),
        };
        steps.extend([
            (disconnect, OnError::RollBack),
            (connect, OnError::RollBack),
        ]);
    }
    if !serving.is_empty() {
        // The engine's DNS lists the new address a moment before it answers.
        steps.push((Step::Settle, OnError::Ignore));
    }
    push_monitor(&mut steps, &temp, monitor);
    steps
}

/// Each network of `spec` with the aliases a container of it serves under: the service's,
/// and the final container name (as Compose adds it).
pub(crate) fn serving_aliases(spec: &Spec, final_name: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if spec.network_mode.is_none() {
        for (network, ep) in &spec.networks {
            let mut aliases = ep.aliases.clone();
            aliases.push(final_name.to_string());
            out.push((network.clone(), aliases));
        }
    }
    out
}

/// Start-first, the new container is ready: the old one leaves its networks (`e.old_networks`,
/// journalled first), drains, stops within `grace` and goes; the new one takes the final name.
pub(crate) fn start_first_commit(e: &Entry, grace: Option<i64>) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    let mut steps = vec![(Step::Journal(Phase::Draining), OnError::RollBack)];
    for network in e.old_networks.keys() {
        let step = Step::Disconnect {
            container: old.clone(),
            network: network.clone(),
        };
        steps.push((step, OnError::Warn));
    }
    steps.extend([
        (Step::Drain, OnError::Ignore),
        (
            Step::Stop {
                container: old.clone(),
                grace: grace.unwrap_or(10),
            },
            OnError::Warn,
        ),
        (Step::Remove(old), OnError::Unfinished),
        (
            Step::Rename {
                container: e.temp_name.clone(),
                to: e.final_name.clone(),
            },
            OnError::Unfinished,
        ),
        (Step::ClearJournal, OnError::Ignore),
    ]);
    steps
}

/// Start-first under `failure_action: rollback`: as [`start_first_commit`], but the old
/// container is kept, stopped, under the aside name until the service's rollout ends.
pub(crate) fn start_first_keep(e: &Entry, grace: Option<i64>) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    let mut steps = start_first_commit(e, grace);
    // In place of removing it: put it aside, and record that it is kept.
    let at = steps
        .iter()
        .position(|(s, _)| matches!(s, Step::Remove(_)))
        .expect("the commit removes the old container");
    steps[at] = (
        Step::Rename {
            container: old,
            to: e.aside_name.clone(),
        },
        OnError::Unfinished,
    );
    let last = steps.len() - 1;
    steps[last] = (Step::Journal(Phase::Kept), OnError::Ignore);
    steps
}

/// Stop-first under `failure_action: rollback`: the old container, stopped under the aside
/// name, is kept until the service's rollout ends.
pub(crate) fn keep(_e: &Entry) -> Vec<(Step, OnError)> {
    vec![(Step::Journal(Phase::Kept), OnError::RollBack)]
}

/// The rollout of the service ended well: a kept old container goes.
pub(crate) fn drop_kept(e: &Entry) -> Vec<(Step, OnError)> {
    let old = e.old_id.clone().unwrap_or_default();
    vec![
        (Step::Remove(old), OnError::Warn),
        (Step::ClearJournal, OnError::Ignore),
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
    /// Recreates replica `r` of `service` in `order` (see the module documentation).
    // Long by design: the destructive steps of one replica in the order they run, each with
    // what a failure at it does (roll back, or the step's own undo), then the commit.
    pub(crate) async fn recreate_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
        observed: &Observed,
        how: &Rollout,
        keep_old: bool,
    ) -> Result<Outcome, Failure> {
        let order = how.order;
        let old_id = r.container_id.clone().expect("recreate has a container");
        let mut e = entry(service, &r.name, &old_id);
        progress(
            service,
            format!(
                "recreating {} {} ({})",
                e.final_name,
                order.as_str(),
                r.reasons.join("; ")
            ),
        );
        let anon = observed
            .containers
            .iter()
            .find(|c| c.id == old_id)
            .map(|c| c.anon_volumes.clone())
            .unwrap_or_default();
        let verify = self.desired.project.services[service].verify.is_some();
        let monitor = how.monitor();
        let steps = match order {
            UpdateOrder::StopFirst => steps(&e, spec.stop_grace_period, verify, monitor),
            UpdateOrder::StartFirst => {
                let serving = serving_aliases(spec, &e.final_name);
                start_first_steps(&e, &serving, verify, monitor)
            }
        };
        let hidden = order == UpdateOrder::StartFirst;
        for (step, on_error) in steps {
            let res = match &step {
                Step::WaitReady(name) => {
                    progress(service, format!("waiting for {name} to be ready"));
                    pause_at("health-wait").await;
                    match self.wait_ready(name, false).await {
                        Ok(()) => continue,
                        Err(nr) => return self.roll_back(service, &mut e, nr).await,
                    }
                }
                Step::Verify(name) => match self.verify(service, name).await {
                    Ok(()) => continue,
                    Err(nr) => return self.roll_back(service, &mut e, nr).await,
                },
                Step::Monitor { container, period } => {
                    progress(service, format!("monitoring {container} for {period:?}"));
                    match self.monitor(container, *period).await {
                        Ok(()) => continue,
                        Err(nr) => return self.roll_back(service, &mut e, nr).await,
                    }
                }
                Step::Create(name) => self
                    .create(service, spec, r.number, name, &anon, hidden)
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
        let commit = match (order, keep_old) {
            (UpdateOrder::StopFirst, false) => commit(&e),
            (UpdateOrder::StopFirst, true) => keep(&e),
            (UpdateOrder::StartFirst, _) => {
                // What to connect the old container to again, should the new one vanish.
                let old = self.engine.inspect(&old_id).await.ok().flatten();
                e.old_networks = old.map(|c| c.networks).unwrap_or_default();
                match keep_old {
                    false => start_first_commit(&e, spec.stop_grace_period),
                    true => start_first_keep(&e, spec.stop_grace_period),
                }
            }
        };
        self.commit(service, &mut e, commit).await
    }

    pub(crate) async fn commit(
        &self,
        service: &str,
        e: &mut Entry,
        steps: Vec<(Step, OnError)>,
    ) -> Result<Outcome, Failure> {
        for (step, on_error) in steps {
            match &step {
                Step::Remove(old) => progress(
                    service,
                    format!("removing the old container {}", short(old)),
                ),
                Step::Disconnect { container, network } => progress(
                    service,
                    format!(
                        "disconnecting the old container {} from {network}",
                        short(container)
                    ),
                ),
                _ => {}
            }
            match exec::run(self.engine, self.journal, e, &step).await {
                Err(err) => {
                    if let Some(end) = self.failed_step(service, e, on_error, err).await {
                        return end;
                    }
                }
                Ok(()) if matches!(step, Step::Journal(Phase::Committed | Phase::Draining)) => {
                    pause_at("remove-old").await
                }
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
            OnError::Unfinished => {
                let err = err.context(format!(
                    "{} runs, but the update is unfinished: the next apply finishes it",
                    e.temp_name
                ));
                Some(Err((Outcome::Failed, NotReady::from_error(err))))
            }
        }
    }

    /// Puts the old container back; `nr` is why the new one failed.
    async fn roll_back(
        &self,
        service: &str,
        e: &mut Entry,
        nr: NotReady,
    ) -> Result<Outcome, Failure> {
        // One line: a check's output is in the outcome, not in the progress.
        let why = nr.message.lines().next().unwrap_or_default();
        progress(service, format!("{} {why}: rolling back", e.final_name));
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
