//! A service's replicas, changed as `deploy.update_config` says (see [`crate::update`]):
//! recreates in batches of `parallelism`, `delay` apart, the batch's recreates at once; after
//! each batch, failures are counted against `max_failure_ratio` and `failure_action` decides
//! whether the rollout pauses, continues or rolls back. Under `rollback` the old containers
//! of the replicas replaced are kept (journal `Kept`) until the rollout ends, and put back
//! as `rollback_config` says when it fails.

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use super::exec;
use super::ready::NotReady;
use super::recreate::{self, Failure};
use super::report::{self, Outcome, ServiceOutcome};
use super::rollback::{self, View};
use super::step::Step;
use super::{progress, Applier, ContainerOps};
use crate::journal::{Entry, Phase};
use crate::observe::Observed;
use crate::plan::{ReplicaAction, ReplicaPlan, ServicePlan};
use crate::spec::Spec;
use crate::update::{FailureAction, Rollout, Rollouts, UpdateOrder};

/// The replicas in the order they change: each recreate batch (up to `batch` consecutive
/// recreates) as one unit, every other change as a unit of its own.
pub(crate) fn units(replicas: &[ReplicaPlan], batch: usize) -> Vec<Vec<&ReplicaPlan>> {
    let mut out: Vec<Vec<&ReplicaPlan>> = Vec::new();
    for r in replicas {
        let recreate = r.action == ReplicaAction::Recreate;
        match out.last_mut() {
            Some(u)
                if recreate && u.len() < batch.max(1) && u[0].action == ReplicaAction::Recreate =>
            {
                u.push(r)
            }
            _ => out.push(vec![r]),
        }
    }
    out
}

/// What the rollout does after a batch with failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Within `max_failure_ratio`, or `failure_action: continue`.
    Go,
    Pause,
    RollBack,
}

/// After `failed` of `total` recreates failed (`rollback_failed`: one of them could not even
/// be put back, and the rollout stops whatever the settings say).
pub(crate) fn next(up: &Rollout, failed: usize, total: usize, rollback_failed: bool) -> Next {
    if rollback_failed {
        return Next::Pause;
    }
    if !up.too_many_failures(failed, total) {
        return Next::Go;
    }
    match up.failure_action {
        FailureAction::Pause => Next::Pause,
        FailureAction::Continue => Next::Go,
        FailureAction::Rollback => Next::RollBack,
    }
}

/// The rollouts of a service without `update_config` or `rollback_config`: one replica at a
/// time, pausing at the first failure, in the order the plan chose.
pub(crate) fn effective(sp: &ServicePlan) -> Rollouts {
    sp.rollout.clone().unwrap_or_else(|| Rollouts {
        update: Rollout {
            order: sp.update_order,
            ..Rollout::default()
        },
        rollback: Rollout::default(),
    })
}

fn is_failure(o: Outcome) -> bool {
    matches!(
        o,
        Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Failed
    )
}

impl<E: ContainerOps> Applier<'_, E> {
    /// Changes the replicas of `sp` (see the module documentation), recording outcomes in
    /// `so`. Errors only for failures outside a replica's own change (a surplus replica that
    /// cannot be removed).
    pub(crate) async fn roll_out(
        &self,
        sp: &ServicePlan,
        spec: &Spec,
        observed: &Observed,
        restart_for_dep: bool,
        so: &mut ServiceOutcome,
    ) -> anyhow::Result<()> {
        let Rollouts { update, rollback } = effective(sp);
        let keep_old = update.failure_action == FailureAction::Rollback;
        let recreates = sp
            .replicas
            .iter()
            .filter(|r| r.action == ReplicaAction::Recreate);
        let total = recreates.count();
        let (mut failed, mut batches) = (0, 0);
        for unit in units(&sp.replicas, update.batch(total)) {
            if unit[0].action != ReplicaAction::Recreate {
                let o = self
                    .change_replica(sp, spec, unit[0], restart_for_dep)
                    .await?;
                if record(so, unit[0], o) {
                    self.drop_kept(&sp.service).await;
                    return Ok(());
                }
                continue;
            }
            if batches > 0 && !update.delay().is_zero() {
                progress(
                    &sp.service,
                    format!("waiting {:?} before the next batch", update.delay()),
                );
                tokio::time::sleep(update.delay()).await;
            }
            batches += 1;
            if unit.len() > 1 {
                let names: Vec<&str> = unit.iter().map(|r| r.name.as_str()).collect();
                progress(
                    &sp.service,
                    format!("updating {} at once", names.join(", ")),
                );
            }
            let results =
                join_all(unit.iter().map(|r| {
                    self.recreate_replica(&sp.service, spec, r, observed, &update, keep_old)
                }))
                .await;
            let mut rollback_failed = false;
            for (r, res) in unit.iter().zip(results) {
                rollback_failed |= matches!(res, Err((Outcome::RollbackFailed, _)));
                failed += usize::from(record(so, r, res));
            }
            if failed == 0 {
                continue;
            }
            match next(&update, failed, total, rollback_failed) {
                Next::Go => progress(
                    &sp.service,
                    format!("{failed} of {total} replicas failed: going on"),
                ),
                Next::Pause => {
                    self.drop_kept(&sp.service).await;
                    return Ok(());
                }
                Next::RollBack => {
                    progress(
                        &sp.service,
                        format!("{failed} of {total} replicas failed: rolling back the others"),
                    );
                    self.revert_kept(&sp.service, spec, &rollback, so).await;
                    return Ok(());
                }
            }
        }
        self.drop_kept(&sp.service).await;
        Ok(())
    }

    /// A change that is not a recreate: restart (a dependency changed), start, create, remove.
    async fn change_replica(
        &self,
        sp: &ServicePlan,
        spec: &Spec,
        r: &ReplicaPlan,
        restart_for_dep: bool,
    ) -> anyhow::Result<Result<Outcome, Failure>> {
        Ok(match r.action {
            ReplicaAction::Unchanged => {
                if let (true, Some(id)) = (restart_for_dep, &r.container_id) {
                    progress(
                        &sp.service,
                        format!("restarting {} (dependency changed)", r.name),
                    );
                    self.engine.restart(id).await?;
                }
                Ok(Outcome::Unchanged)
            }
            ReplicaAction::Start => self.start_existing(&sp.service, r).await,
            ReplicaAction::Create => self.create_replica(&sp.service, spec, r).await,
            ReplicaAction::Remove => {
                self.remove_replica(&sp.service, spec, r).await?;
                Ok(Outcome::Applied)
            }
            ReplicaAction::Recreate => unreachable!("recreates are rolled out in batches"),
        })
    }

    /// The entries this run keeps for `service` (journal `Kept`), in replica order.
    fn kept(&self, service: &str) -> Vec<Entry> {
        let mut kept: Vec<Entry> = match self.journal.entries() {
            Ok(all) => all,
            Err(e) => {
                progress(service, format!("warning: {e:#}"));
                Vec::new()
            }
        };
        kept.retain(|e| e.service == service && e.phase == Phase::Kept);
        kept
    }

    /// The rollout ended without a rollback: the kept old containers go.
    async fn drop_kept(&self, service: &str) {
        for mut e in self.kept(service) {
            let steps = recreate::drop_kept(&e);
            let _ = self.commit(service, &mut e, steps).await;
        }
    }

    /// `failure_action: rollback`: every replica replaced gets its old container back, in
    /// batches as `rollback_config` says. A replica whose old container does not come back
    /// makes the outcome `rollback-failed`; its `failure_action` (pause or continue) decides
    /// whether the others are still tried.
    async fn revert_kept(
        &self,
        service: &str,
        spec: &Spec,
        how: &Rollout,
        so: &mut ServiceOutcome,
    ) {
        let kept = self.kept(service);
        let total = kept.len();
        let mut failed = 0;
        for (i, batch) in kept.chunks(how.batch(total)).enumerate() {
            if i > 0 && !how.delay().is_zero() {
                tokio::time::sleep(how.delay()).await;
            }
            let results = join_all(batch.iter().map(|e| self.revert_one(spec, how, e))).await;
            for (e, res) in batch.iter().zip(results) {
                if let Err(msg) = res {
                    failed += 1;
                    so.outcome = report::worse(so.outcome, Outcome::RollbackFailed);
                    add_message(so, format!("{}: rollback failed: {msg}", e.final_name));
                }
            }
            if how.too_many_failures(failed, total) && how.failure_action == FailureAction::Pause {
                // What is left keeps its new container.
                self.drop_kept(service).await;
                return;
            }
        }
    }

    /// Puts one kept replica's old container back: `Err(why)` when it did not come back.
    pub(super) async fn revert_one(
        &self,
        spec: &Spec,
        how: &Rollout,
        kept: &Entry,
    ) -> Result<(), String> {
        let mut e = kept.clone();
        let service = e.service.clone();
        progress(
            &service,
            format!("putting the old container of {} back", e.final_name),
        );
        let view = View::read(self.engine, &e)
            .await
            .map_err(|x| format!("{x:#}"))?;
        let steps = rollback::revert(&e, &view, how.order, spec.stop_grace_period, how.monitor());
        if steps.is_empty() {
            return Err(format!(
                "the old container {} is gone",
                e.old_id.as_deref().unwrap_or("(unknown)")
            ));
        }
        let mut started = SystemTime::now() - Duration::from_millis(100);
        for step in &steps {
            let res = match step {
                Step::WaitReady(c) => self.wait_ready_since(c, false, started).await,
                Step::Monitor { container, period } => self.monitor(container, *period).await,
                _ => {
                    if matches!(step, Step::Start(_)) {
                        started = SystemTime::now() - Duration::from_millis(100);
                    }
                    exec::run(self.engine, self.journal, &mut e, step)
                        .await
                        .map_err(NotReady::from_error)
                }
            };
            if let Err(nr) = res {
                return Err(self.revert_failed(&mut e, how.order, step, nr).await);
            }
            if matches!(step, Step::Stop { .. } | Step::Start(_)) {
                // A stop ends in a `die` event: waits look at what comes after it.
                started = SystemTime::now() - Duration::from_millis(100);
            }
        }
        progress(&service, format!("{} rolled back", e.final_name));
        Ok(())
    }

    /// A revert step failed. Start-first, when the old container did not become ready, the
    /// new one still serves: the old one is stopped again and kept aside (journal `Kept`), so
    /// that the end of the rollout removes it. Otherwise the journal says `rolling-back`, and
    /// the next run's recovery finishes putting the old container back.
    async fn revert_failed(
        &self,
        e: &mut Entry,
        order: UpdateOrder,
        step: &Step,
        nr: NotReady,
    ) -> String {
        let waited = matches!(step, Step::WaitReady(_) | Step::Monitor { .. });
        if order == UpdateOrder::StartFirst && waited {
            let old = e.old_id.clone().unwrap_or_default();
            let back = [
                Step::Stop {
                    container: old,
                    grace: 2,
                },
                Step::Journal(Phase::Kept),
            ];
            exec::run_best_effort(self.engine, self.journal, e, &back).await;
            return format!(
                "the old container did not come back ({}): {} keeps its new container",
                nr.message, e.final_name
            );
        }
        if waited {
            // Stop-first: the old container is back under its name, but not ready; nothing is
            // left to recover.
            let _ = self.journal.clear(&e.final_name);
        }
        nr.message
    }
}

/// Records the result of one replica's change in `so`; whether it failed.
fn record(so: &mut ServiceOutcome, r: &ReplicaPlan, res: Result<Outcome, Failure>) -> bool {
    let o = match res {
        Ok(o) => o,
        Err((o, nr)) => {
            add_message(so, format!("{}: {}", r.name, nr.message));
            if so.logs.is_empty() {
                so.logs = nr.logs;
                so.health_log = nr.health_log;
            }
            o
        }
    };
    so.outcome = report::worse(so.outcome, o);
    is_failure(o)
}

fn add_message(so: &mut ServiceOutcome, msg: String) {
    so.message = Some(match so.message.take() {
        Some(m) => format!("{m}; {msg}"),
        None => msg,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(actions: &[ReplicaAction]) -> Vec<ReplicaPlan> {
        actions
            .iter()
            .enumerate()
            .map(|(i, a)| ReplicaPlan {
                number: i as u32 + 1,
                name: format!("p-web-{}", i + 1),
                action: *a,
                container_id: None,
                reasons: vec![],
            })
            .collect()
    }

    #[test]
    fn recreates_group_into_batches_and_other_changes_stand_alone() {
        use ReplicaAction::*;
        let numbers = |rs: &[ReplicaPlan], batch| -> Vec<Vec<u32>> {
            units(rs, batch)
                .iter()
                .map(|u| u.iter().map(|r| r.number).collect())
                .collect()
        };
        let rs = replicas(&[Recreate, Recreate, Recreate, Recreate, Recreate, Remove]);
        assert_eq!(numbers(&rs, 2), [vec![1, 2], vec![3, 4], vec![5], vec![6]]);
        assert_eq!(numbers(&rs, 1), [[1], [2], [3], [4], [5], [6]]);
        assert_eq!(numbers(&rs, 5), [vec![1, 2, 3, 4, 5], vec![6]]);
        // parallelism 0: all at once.
        let all = Rollout {
            parallelism: 0,
            ..Rollout::default()
        };
        assert_eq!(all.batch(5), 5);
        assert_eq!(numbers(&rs, all.batch(5)), [vec![1, 2, 3, 4, 5], vec![6]]);
        let rs = replicas(&[Unchanged, Recreate, Start, Recreate, Recreate]);
        assert_eq!(numbers(&rs, 3), [vec![1], vec![2], vec![3], vec![4, 5]]);
    }

    #[test]
    fn failures_pause_continue_or_roll_back_past_the_ratio() {
        let with = |failure_action, max_failure_ratio| Rollout {
            failure_action,
            max_failure_ratio,
            ..Rollout::default()
        };
        use FailureAction::*;
        let cases = [
            // (action, ratio, failed, total, rollback failed) -> next
            (Pause, 0.0, 1, 4, false, Next::Pause),
            (Continue, 0.0, 3, 4, false, Next::Go),
            (Rollback, 0.0, 1, 4, false, Next::RollBack),
            (Pause, 0.3, 1, 4, false, Next::Go),
            (Pause, 0.3, 2, 4, false, Next::Pause),
            (Rollback, 0.5, 2, 4, false, Next::Go),
            (Rollback, 0.5, 3, 4, false, Next::RollBack),
            (Rollback, 1.0, 4, 4, false, Next::Go),
            // A replica that could not be put back stops the rollout, whatever it says.
            (Continue, 1.0, 1, 4, true, Next::Pause),
            (Rollback, 0.0, 1, 4, true, Next::Pause),
        ];
        for (action, ratio, failed, total, rf, want) in cases {
            let got = next(&with(action, ratio), failed, total, rf);
            assert_eq!(got, want, "{action:?} {ratio} {failed}/{total} {rf}");
        }
    }
}
