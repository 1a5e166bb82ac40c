//! `apply`: executes a [`Plan`] on the engine, step by step, journalled, with health waits and
//! automatic rollback.
//!
//! Order: networks and volumes (created, never removed), orphans (`--prune`), then services in
//! dependency order, each service's replicas rolled out as [`rollout`] says (one at a time
//! by default). A replica's recreate is decided as a list of [`step::Step`]s ([`recreate`],
//! [`rollback`]) and done by [`exec`] through the [`ContainerOps`] trait, writing the journal
//! before each destructive step; [`recover`] finishes or undoes the recreates of a run that
//! was killed.

mod exec;
#[cfg(test)]
mod fake;
mod ops;
mod ready;
mod recover;
mod recreate;
mod replica;
mod report;
mod rollback;
mod rollout;
mod shares;
mod step;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};

pub use ops::{ContainerInfo, ContainerOps};
pub use report::{
    json_schema, ApplyJson, Outcome, Report, ServiceOutcome, EXIT_CONVERGED, EXIT_ERROR,
    EXIT_NOT_CONVERGED, EXIT_ROLLBACK_FAILED,
};

use crate::engine::Engine;
use crate::journal::Journal;
use crate::observe::Observed;
use crate::plan::{Desired, Plan, ServiceAction, ServicePlan};
use crate::spec::{self, Spec};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long a new container has to become healthy (or running, without a healthcheck).
    /// `None`: as long as its healthcheck can take (start period + interval × retries +
    /// timeout, plus slack), or 60 s without one.
    pub wait_timeout: Option<Duration>,
    /// Remove a failed new container instead of keeping it stopped for inspection.
    pub cleanup_failed: bool,
    /// Labels put on the containers this run creates, outside the spec and its hash (the
    /// agent's `io.composeops.revision`): a new value alone never causes a recreate.
    pub extra_labels: std::collections::BTreeMap<String, String>,
    /// A command that must accept the plan before its first change (`--gate`).
    pub gate: Option<crate::gate::Gate>,
}

/// The one place every user-visible line of apply and recovery goes through: a progress event
/// (see `crate::progress`), shown as a bare line by the CLI and as a log record by the agent.
fn emit(line: std::fmt::Arguments<'_>) {
    crate::progress::line(line);
}

/// A progress line about `service`: `[service] msg`.
pub(crate) fn progress(service: &str, msg: impl std::fmt::Display) {
    crate::progress::service(service, msg);
}

/// Test hook: `COMPOSEOPS_TEST_PAUSE_AT=<step>` sleeps at that step so a test can kill the
/// process, or change the world, at a known point (steps: resolved, create, health-wait,
/// remove-old). The pause lasts `COMPOSEOPS_TEST_PAUSE_SECS` (default 600).
pub(crate) async fn pause_at(step: &str) {
    if std::env::var("COMPOSEOPS_TEST_PAUSE_AT").as_deref() == Ok(step) {
        emit(format_args!("composeops: test pause at {step}"));
        let secs = std::env::var("COMPOSEOPS_TEST_PAUSE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

/// Finishes or undoes the recreate recorded in `journal` by a run that was killed. Called by
/// `apply` and `plan` (under the project lock) before observing.
pub async fn recover(engine: &Engine, journal: &Journal) -> Result<bool> {
    recover::recover_with(engine, journal).await
}

/// Executes a plan on `engine` (the Docker engine, or a fake in unit tests).
pub struct Applier<'a, E: ContainerOps = Engine> {
    pub engine: &'a E,
    pub desired: &'a Desired,
    pub journal: &'a Journal,
    pub opts: ApplyOptions,
}

impl<E: ContainerOps> Applier<'_, E> {
    /// Executes `plan`. Errors only for failures outside a service (network/volume creation,
    /// orphan and surplus removal); service failures are outcomes in the report.
    pub async fn apply(&self, plan: &Plan, observed: &Observed) -> Result<Report> {
        self.create_resources(plan).await?;
        for o in plan.orphans.iter().filter(|o| o.remove) {
            progress(&o.service, format!("removing orphan {}", o.name));
            self.stop_and_remove(&o.container_id, None).await?;
        }
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut report = Report {
            project: self.desired.project.name.clone(),
            services: Vec::new(),
            api_calls: 0,
        };
        for sp in &plan.services {
            let so = self.apply_service(plan, sp, observed, &outcomes).await?;
            outcomes.insert(sp.service.clone(), so.outcome);
            report.services.push(so);
        }
        report.api_calls = self.engine.calls();
        Ok(report)
    }

    /// Networks and volumes, with Compose's labels; never removed or recreated.
    async fn create_resources(&self, plan: &Plan) -> Result<()> {
        let p = &self.desired.project;
        let version = env!("CARGO_PKG_VERSION").to_string();
        for n in &plan.networks {
            let net = &p.networks[&n.key];
            let mut labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
            labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
            labels.insert(spec::LABEL_NETWORK.into(), n.key.clone());
            labels.insert(spec::LABEL_VERSION.into(), version.clone());
            progress("network", format!("creating {}", n.name));
            let req = NetworkCreateRequest {
                name: n.name.clone(),
                driver: net.driver.clone(),
                internal: Some(net.internal),
                labels: Some(labels),
                ..Default::default()
            };
            self.engine
                .create_network(req)
                .await
                .with_context(|| format!("cannot create network {}", n.name))?;
        }
        for v in &plan.volumes {
            let vol = &p.volumes[&v.key];
            let mut labels: HashMap<String, String> = vol.labels.clone().into_iter().collect();
            labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
            labels.insert(spec::LABEL_VOLUME.into(), v.key.clone());
            labels.insert(spec::LABEL_VERSION.into(), version.clone());
            progress("volume", format!("creating {}", v.name));
            let req = VolumeCreateRequest {
                name: Some(v.name.clone()),
                driver: vol.driver.clone(),
                labels: Some(labels),
                ..Default::default()
            };
            self.engine
                .create_volume(req)
                .await
                .with_context(|| format!("cannot create volume {}", v.name))?;
        }
        Ok(())
    }

    /// One service: its dependencies' gate, then its replicas (see [`rollout`]).
    async fn apply_service(
        &self,
        plan: &Plan,
        sp: &ServicePlan,
        observed: &Observed,
        outcomes: &BTreeMap<String, Outcome>,
    ) -> Result<ServiceOutcome> {
        let mut so = ServiceOutcome {
            service: sp.service.clone(),
            outcome: Outcome::Unchanged,
            message: None,
            logs: vec![],
            health_log: vec![],
        };
        let restart_for_dep = match self.gate(plan, sp, outcomes).await {
            Ok(restart) => restart,
            Err(msg) => {
                progress(&sp.service, format!("skipped: {msg}"));
                self.rejoin_after_rollback(sp, outcomes).await;
                so.outcome = Outcome::Skipped;
                so.message = Some(msg);
                return Ok(so);
            }
        };
        let spec = Spec::from_service(&self.desired.project, &sp.service);
        self.roll_out(sp, &spec, observed, restart_for_dep, &mut so)
            .await?;
        match so.outcome {
            Outcome::Applied => progress(&sp.service, "applied"),
            Outcome::RolledBack => progress(&sp.service, "ROLLED BACK"),
            Outcome::RollbackFailed => progress(&sp.service, "ROLLBACK FAILED"),
            Outcome::Failed => progress(&sp.service, "FAILED"),
            _ => {}
        }
        Ok(so)
    }

    /// Whether `sp` may change now: `Err(why)` when a required dependency was not applied or
    /// its condition is not met; else whether an unchanged service restarts because a
    /// dependency with `restart: true` changed.
    async fn gate(
        &self,
        plan: &Plan,
        sp: &ServicePlan,
        outcomes: &BTreeMap<String, Outcome>,
    ) -> Result<bool, String> {
        let svc = &self.desired.project.services[&sp.service];
        let unchanged = sp.action == ServiceAction::Unchanged;
        let mut restart_for_dep = false;
        for (dep, d) in &svc.depends_on {
            let o = outcomes.get(dep).copied().unwrap_or(Outcome::Unchanged);
            restart_for_dep |= o == Outcome::Applied && d.restart;
            if unchanged {
                // Nothing to do here: a failed dependency leaves this service as it is.
                continue;
            }
            let failed = matches!(
                o,
                Outcome::Failed | Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Skipped
            );
            if failed && d.required {
                return Err(format!("dependency {dep} was not applied ({})", o.as_str()));
            }
            if failed {
                progress(
                    &sp.service,
                    format!("warning: optional dependency {dep} was not applied"),
                );
            }
        }
        if unchanged {
            return Ok(restart_for_dep);
        }
        for (dep, d) in &svc.depends_on {
            if let Err(e) = self.wait_dependency(plan, dep, &d.condition).await {
                if d.required {
                    return Err(format!("dependency {dep}: {e}"));
                }
                progress(
                    &sp.service,
                    format!("warning: optional dependency {dep}: {e}"),
                );
            }
        }
        Ok(restart_for_dep)
    }
}
