//! `apply`: executes a [`Plan`] on the engine, step by step, journalled, with health waits and
//! automatic rollback.
//!
//! Order: networks and volumes (created, never removed), orphans (`--prune`), then services in
//! dependency order. A replica is recreated in place: the new container is created under a
//! temporary name, the old one is stopped and renamed aside (kept), the new one takes the final
//! name and starts; once it is ready the old one is removed, and if it is not, the old one is
//! renamed back and started again (same id). One replica at a time, each step journalled first.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{is_conflict, is_not_found, is_not_modified, Engine};
use crate::journal::{Entry, Journal, Phase};
use crate::observe::{Observed, SUFFIX_FAILED, SUFFIX_NEW, SUFFIX_OLD};
use crate::plan::{Desired, Plan, ReplicaAction, ReplicaPlan, ServiceAction};
use crate::spec::{self, CreateContext, Spec};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long a new container has to become healthy (or running, without a healthcheck).
    pub wait_timeout: Duration,
    /// Remove a failed new container instead of keeping it stopped for inspection.
    pub cleanup_failed: bool,
    /// Labels put on the containers this run creates, outside the spec and its hash (the
    /// agent's `io.composeops.revision`): a new value alone never causes a recreate.
    pub extra_labels: std::collections::BTreeMap<String, String>,
}

/// Exit statuses of `composeops apply` (documented in `--help`).
pub const EXIT_CONVERGED: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_NOT_CONVERGED: i32 = 2;
pub const EXIT_ROLLBACK_FAILED: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Changed and ready.
    Applied,
    Unchanged,
    /// The new container failed; the old one runs again under its own name and id.
    RolledBack,
    /// The new container failed and the old one could not be put back.
    RollbackFailed,
    /// A new container (nothing to roll back to) failed to start or become ready.
    Failed,
    /// Not attempted: a required dependency failed.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceOutcome {
    pub service: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last log lines of the failed container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Last health-check outputs of the failed container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_log: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub project: String,
    pub services: Vec<ServiceOutcome>,
    /// Engine API requests made by this run.
    pub api_calls: usize,
}

/// What `apply --json` prints: the plan that was executed and the outcome of each service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyJson {
    pub plan: Plan,
    pub report: Report,
}

/// JSON Schema of `apply --json` (`schemas/apply.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ApplyJson);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::RolledBack => "rolled-back",
            Outcome::RollbackFailed => "rollback-failed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        let has = |o: Outcome| self.services.iter().any(|s| s.outcome == o);
        if has(Outcome::RollbackFailed) {
            EXIT_ROLLBACK_FAILED
        } else if has(Outcome::RolledBack) || has(Outcome::Failed) || has(Outcome::Skipped) {
            EXIT_NOT_CONVERGED
        } else {
            EXIT_CONVERGED
        }
    }
}

/// Progress lines on stderr.
fn progress(service: &str, msg: impl std::fmt::Display) {
    eprintln!("[{service}] {msg}");
}

/// Test hook: `COMPOSEOPS_TEST_PAUSE_AT=<step>` sleeps at that step so a test can kill the
/// process, or change the world, at a known point (steps: resolved, create, health-wait,
/// remove-old). The pause lasts `COMPOSEOPS_TEST_PAUSE_SECS` (default 600).
pub(crate) async fn pause_at(step: &str) {
    if std::env::var("COMPOSEOPS_TEST_PAUSE_AT").as_deref() == Ok(step) {
        eprintln!("composeops: test pause at {step}");
        let secs = std::env::var("COMPOSEOPS_TEST_PAUSE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

/// Why a container did not become ready, with what the operator needs to see.
#[derive(Debug, Default)]
struct NotReady {
    message: String,
    logs: Vec<String>,
    health_log: Vec<String>,
}

pub struct Applier<'a> {
    pub engine: &'a Engine,
    pub desired: &'a Desired,
    pub journal: &'a Journal,
    pub opts: ApplyOptions,
}

impl Applier<'_> {
    /// Executes `plan`. Errors only for failures outside a service (network/volume creation);
    /// service failures are outcomes in the report.
    pub async fn apply(&self, plan: &Plan, observed: &Observed) -> Result<Report> {
        let p = &self.desired.project;
        for n in &plan.networks {
            let net = &p.networks[&n.key];
            let mut labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
            labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
            labels.insert(spec::LABEL_NETWORK.into(), n.key.clone());
            labels.insert(spec::LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
            progress("network", format!("creating {}", n.name));
            let req = NetworkCreateRequest {
                name: n.name.clone(),
                driver: net.driver.clone(),
                internal: Some(net.internal),
                labels: Some(labels),
                ..Default::default()
            };
            match self.engine.call().create_network(req).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create network {}", n.name))
                }
            }
        }
        for v in &plan.volumes {
            let vol = &p.volumes[&v.key];
            let mut labels: HashMap<String, String> = vol.labels.clone().into_iter().collect();
            labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
            labels.insert(spec::LABEL_VOLUME.into(), v.key.clone());
            labels.insert(spec::LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
            progress("volume", format!("creating {}", v.name));
            let req = VolumeCreateRequest {
                name: Some(v.name.clone()),
                driver: vol.driver.clone(),
                labels: Some(labels),
                ..Default::default()
            };
            self.engine
                .call()
                .create_volume(req)
                .await
                .with_context(|| format!("cannot create volume {}", v.name))?;
        }
        for o in plan.orphans.iter().filter(|o| o.remove) {
            progress(&o.service, format!("removing orphan {}", o.name));
            self.stop(&o.container_id, None).await?;
            self.remove(&o.container_id).await?;
        }

        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut report = Report {
            project: p.name.clone(),
            services: Vec::new(),
            api_calls: 0,
        };
        for sp in &plan.services {
            let svc = &p.services[&sp.service];
            // Dependencies: skip when a required one failed; wait for their conditions.
            let mut skip = None;
            let mut restart_for_dep = false;
            for (dep, d) in &svc.depends_on {
                let o = outcomes.get(dep).copied().unwrap_or(Outcome::Unchanged);
                if sp.action == ServiceAction::Unchanged {
                    // Nothing to do here: a failed dependency leaves this service as it is.
                    restart_for_dep |= o == Outcome::Applied && d.restart;
                    continue;
                }
                if matches!(
                    o,
                    Outcome::Failed
                        | Outcome::RolledBack
                        | Outcome::RollbackFailed
                        | Outcome::Skipped
                ) {
                    if d.required {
                        skip = Some(format!("dependency {dep} was not applied ({})", o.as_str()));
                        break;
                    }
                    progress(
                        &sp.service,
                        format!("warning: optional dependency {dep} was not applied"),
                    );
                }
                if o == Outcome::Applied && d.restart {
                    restart_for_dep = true;
                }
            }
            if skip.is_none() && sp.action != ServiceAction::Unchanged {
                for (dep, d) in &svc.depends_on {
                    if let Err(e) = self.wait_dependency(plan, dep, &d.condition).await {
                        if d.required {
                            skip = Some(format!("dependency {dep}: {e}"));
                            break;
                        }
                        progress(
                            &sp.service,
                            format!("warning: optional dependency {dep}: {e}"),
                        );
                    }
                }
            }
            if let Some(msg) = skip {
                progress(&sp.service, format!("skipped: {msg}"));
                outcomes.insert(sp.service.clone(), Outcome::Skipped);
                report.services.push(ServiceOutcome {
                    service: sp.service.clone(),
                    outcome: Outcome::Skipped,
                    message: Some(msg),
                    logs: vec![],
                    health_log: vec![],
                });
                continue;
            }
            let mut so = ServiceOutcome {
                service: sp.service.clone(),
                outcome: Outcome::Unchanged,
                message: None,
                logs: vec![],
                health_log: vec![],
            };
            let spec = Spec::from_service(p, &sp.service);
            for r in &sp.replicas {
                let res = match r.action {
                    ReplicaAction::Unchanged => {
                        if restart_for_dep {
                            if let Some(id) = &r.container_id {
                                progress(
                                    &sp.service,
                                    format!("restarting {} (dependency changed)", r.name),
                                );
                                self.engine
                                    .call()
                                    .restart_container(id, None)
                                    .await
                                    .map_err(anyhow::Error::from)?;
                            }
                        }
                        Ok(Outcome::Unchanged)
                    }
                    ReplicaAction::Start => self.start_existing(&sp.service, r).await,
                    ReplicaAction::Create => self.create_replica(&sp.service, &spec, r).await,
                    ReplicaAction::Recreate => {
                        self.recreate_replica(&sp.service, &spec, r, observed).await
                    }
                    ReplicaAction::Remove => {
                        progress(
                            &sp.service,
                            format!("removing {} ({})", r.name, r.reasons.join(", ")),
                        );
                        let id = r.container_id.as_deref().unwrap_or(&r.name);
                        self.stop(id, spec.stop_grace_period).await?;
                        self.remove(id).await?;
                        Ok(Outcome::Applied)
                    }
                };
                let o = match res {
                    Ok(o) => o,
                    Err((o, nr)) => {
                        so.message = Some(format!("{}: {}", r.name, nr.message));
                        so.logs = nr.logs;
                        so.health_log = nr.health_log;
                        o
                    }
                };
                so.outcome = worse(so.outcome, o);
                if matches!(
                    o,
                    Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Failed
                ) {
                    // Leave the remaining replicas as they are.
                    break;
                }
            }
            match so.outcome {
                Outcome::Applied => progress(&sp.service, "applied"),
                Outcome::RolledBack => progress(&sp.service, "ROLLED BACK"),
                Outcome::RollbackFailed => progress(&sp.service, "ROLLBACK FAILED"),
                Outcome::Failed => progress(&sp.service, "FAILED"),
                _ => {}
            }
            outcomes.insert(sp.service.clone(), so.outcome);
            report.services.push(so);
        }
        report.api_calls = self.engine.calls();
        Ok(report)
    }

    async fn wait_dependency(&self, plan: &Plan, dep: &str, condition: &str) -> Result<(), String> {
        let Some(dp) = plan.services.iter().find(|s| s.service == dep) else {
            return Ok(());
        };
        let names: Vec<String> = dp
            .replicas
            .iter()
            .filter(|r| r.action != ReplicaAction::Remove)
            .map(|r| r.name.clone())
            .collect();
        for n in names {
            match condition {
                "service_healthy" => {
                    self.wait_ready(&n, true).await.map_err(|e| e.message)?;
                }
                "service_completed_successfully" => {
                    self.wait_exit0(&n).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn wait_exit0(&self, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.wait_timeout;
        loop {
            let c = self
                .engine
                .call()
                .inspect_container(name, None)
                .await
                .map_err(|e| e.to_string())?;
            let st = c.state.unwrap_or_default();
            if st.running != Some(true)
                && st.status.map(|s| s.to_string()).as_deref() == Some("exited")
            {
                return match st.exit_code {
                    Some(0) => Ok(()),
                    c => Err(format!("{name} exited with code {}", c.unwrap_or(-1))),
                };
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} did not complete within {:?}",
                    self.opts.wait_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls (every 500 ms, as Compose does) until `name` is healthy, or running when it has
    /// no healthcheck. `require_health`: a missing healthcheck is an error (service_healthy).
    async fn wait_ready(&self, name: &str, require_health: bool) -> Result<(), NotReady> {
        let deadline = Instant::now() + self.opts.wait_timeout;
        let mut polls = 0;
        loop {
            let c = match self.engine.call().inspect_container(name, None).await {
                Ok(c) => c,
                Err(e) => {
                    return Err(NotReady {
                        message: format!("cannot inspect: {e}"),
                        ..Default::default()
                    })
                }
            };
            let st = c.state.clone().unwrap_or_default();
            let one_shot = c
                .host_config
                .as_ref()
                .and_then(|h| h.restart_policy.as_ref())
                .and_then(|r| r.name)
                .map(|n| n.to_string())
                .is_none_or(|n| n.is_empty() || n == "no");
            let status = st.status.map(|s| s.to_string()).unwrap_or_default();
            let health = st
                .health
                .as_ref()
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none");
            polls += 1;
            match (status.as_str(), health.as_deref()) {
                // A one-shot (restart: no) that exited 0 has done its job.
                ("exited", _) if st.exit_code == Some(0) && !require_health && one_shot => {
                    return Ok(())
                }
                ("exited" | "dead", _) => {
                    let msg = format!("exited with code {}", st.exit_code.unwrap_or(-1));
                    return Err(self.not_ready(name, msg, &c).await);
                }
                ("running", Some("healthy")) => return Ok(()),
                // Without a healthcheck, running on two consecutive polls is ready.
                ("running", None) if !require_health && polls >= 2 => return Ok(()),
                ("running", None) if require_health => {
                    return Err(NotReady {
                        message: "has no healthcheck (service_healthy needs one)".into(),
                        ..Default::default()
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let msg = match health {
                    Some(h) => format!("still {h} after {:?}", self.opts.wait_timeout),
                    None => format!("still {status} after {:?}", self.opts.wait_timeout),
                };
                return Err(self.not_ready(name, msg, &c).await);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn not_ready(
        &self,
        name: &str,
        message: String,
        c: &bollard::models::ContainerInspectResponse,
    ) -> NotReady {
        let health_log = c
            .state
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.log.clone())
            .unwrap_or_default()
            .into_iter()
            .rev()
            .take(3)
            .rev()
            .map(|l| {
                format!(
                    "exit {}: {}",
                    l.exit_code.unwrap_or(-1),
                    l.output.unwrap_or_default().trim()
                )
            })
            .collect();
        let mut logs = Vec::new();
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail("20")
            .build();
        let mut s = self.engine.call().logs(name, Some(opts));
        while let Some(Ok(chunk)) = s.next().await {
            for l in chunk.to_string().lines() {
                logs.push(l.to_string());
            }
        }
        NotReady {
            message,
            logs,
            health_log,
        }
    }

    async fn start(&self, id: &str) -> Result<()> {
        match self.engine.call().start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot start {id}")),
        }
    }

    async fn stop(&self, id: &str, grace: Option<i64>) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.unwrap_or(10) as i32)
            .build();
        match self.engine.call().stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) || is_not_found(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop {id}")),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.engine.call().remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {id}")),
        }
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        let opts = RenameContainerOptionsBuilder::default().name(name).build();
        self.engine
            .call()
            .rename_container(id, opts)
            .await
            .with_context(|| format!("cannot rename {id} to {name}"))
    }

    /// Creates (not starts) a container for replica `number` of `service` named `name`.
    async fn create(
        &self,
        service: &str,
        spec: &Spec,
        number: u32,
        name: &str,
        anon: &[(String, String)],
    ) -> Result<String> {
        let img = self.desired.images.get(service);
        let image_id = img.and_then(|i| i.digest.clone()).unwrap_or_default();
        let ctx = CreateContext::new(
            &self.desired.project,
            service,
            spec,
            number,
            &image_id,
            img.and_then(|i| i.digest.as_deref()),
        );
        let mut body = spec.create_body(&ctx, name, anon);
        if !self.opts.extra_labels.is_empty() {
            let labels = body.labels.get_or_insert_with(Default::default);
            for (k, v) in &self.opts.extra_labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        if let Some(r) = self.desired.run_from.get(service) {
            body.image = Some(r.clone());
        }
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let id = self
            .engine
            .call()
            .create_container(Some(opts), body)
            .await
            .with_context(|| format!("cannot create container {name}"))?
            .id;
        for (net, ep) in spec.extra_networks(name) {
            self.engine
                .call()
                .connect_network(
                    &net,
                    NetworkConnectRequest {
                        container: id.clone(),
                        endpoint_config: Some(ep),
                    },
                )
                .await
                .with_context(|| format!("cannot connect {name} to network {net}"))?;
        }
        Ok(id)
    }

    async fn start_existing(
        &self,
        service: &str,
        r: &ReplicaPlan,
    ) -> Result<Outcome, (Outcome, NotReady)> {
        progress(service, format!("starting {}", r.name));
        let id = r.container_id.clone().unwrap_or_else(|| r.name.clone());
        self.start(&id)
            .await
            .map_err(|e| (Outcome::Failed, msg(e)))?;
        self.wait_ready(&id, false)
            .await
            .map_err(|e| (Outcome::Failed, e))?;
        Ok(Outcome::Applied)
    }

    async fn create_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
    ) -> Result<Outcome, (Outcome, NotReady)> {
        progress(service, format!("creating {}", r.name));
        let id = self
            .create(service, spec, r.number, &r.name, &[])
            .await
            .map_err(|e| (Outcome::Failed, msg(e)))?;
        self.start(&id)
            .await
            .map_err(|e| (Outcome::Failed, msg(e)))?;
        progress(service, format!("waiting for {} to be ready", r.name));
        if let Err(nr) = self.wait_ready(&id, false).await {
            let _ = self.stop(&id, Some(1)).await;
            if self.opts.cleanup_failed {
                let _ = self.remove(&id).await;
            }
            return Err((Outcome::Failed, nr));
        }
        Ok(Outcome::Applied)
    }

    /// The in-place recreate of one replica (see the module documentation).
    async fn recreate_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
        observed: &Observed,
    ) -> Result<Outcome, (Outcome, NotReady)> {
        let old_id = r.container_id.clone().expect("recreate has a container");
        let final_name = r.name.clone();
        let mut e = Entry {
            service: service.into(),
            final_name: final_name.clone(),
            temp_name: format!("{final_name}{SUFFIX_NEW}"),
            aside_name: format!("{final_name}{SUFFIX_OLD}"),
            old_id: Some(old_id.clone()),
            new_id: None,
            phase: Phase::Creating,
        };
        let failed_name = format!("{final_name}{SUFFIX_FAILED}");
        let rb = |m: anyhow::Error| (Outcome::RolledBack, msg(m));
        progress(
            service,
            format!("recreating {final_name} ({})", r.reasons.join("; ")),
        );
        // A container kept from an earlier failure is superseded now.
        self.remove(&failed_name).await.map_err(rb)?;
        self.journal.write(&e).map_err(rb)?;
        let anon = observed
            .containers
            .iter()
            .find(|c| c.id == old_id)
            .map(|c| c.anon_volumes.clone())
            .unwrap_or_default();
        let new_id = match self
            .create(service, spec, r.number, &e.temp_name, &anon)
            .await
        {
            Ok(id) => id,
            Err(err) => {
                let _ = self.remove(&e.temp_name).await;
                let _ = self.journal.clear();
                return Err(rb(err));
            }
        };
        pause_at("create").await;
        e.new_id = Some(new_id.clone());
        e.phase = Phase::Swapping;
        self.journal.write(&e).map_err(rb)?;
        let swap = async {
            self.stop(&old_id, spec.stop_grace_period).await?;
            self.rename(&old_id, &e.aside_name).await?;
            self.rename(&new_id, &final_name).await?;
            e.phase = Phase::Waiting;
            self.journal.write(&e)?;
            self.start(&new_id).await
        };
        let swapped = swap.await;
        let ready = match swapped {
            Err(err) => Err(msg(err)),
            Ok(()) => {
                progress(service, format!("waiting for {final_name} to be ready"));
                pause_at("health-wait").await;
                self.wait_ready(&new_id, false).await
            }
        };
        match ready {
            Ok(()) => {
                e.phase = Phase::Committed;
                self.journal.write(&e).map_err(rb)?;
                pause_at("remove-old").await;
                progress(
                    service,
                    format!("removing the old container {}", short(&old_id)),
                );
                if let Err(err) = self.remove(&old_id).await {
                    progress(service, format!("warning: {err:#}"));
                }
                let _ = self.journal.clear();
                Ok(Outcome::Applied)
            }
            Err(nr) => {
                progress(
                    service,
                    format!("{final_name} {}: rolling back", nr.message),
                );
                e.phase = Phase::RollingBack;
                let _ = self.journal.write(&e);
                match rollback(self, &e, self.opts.cleanup_failed, &failed_name).await {
                    Ok(()) => {
                        let _ = self.journal.clear();
                        Err((Outcome::RolledBack, nr))
                    }
                    Err(err) => {
                        let mut nr = nr;
                        nr.message = format!("{}; rollback failed: {err:#}", nr.message);
                        Err((Outcome::RollbackFailed, nr))
                    }
                }
            }
        }
    }
}

fn msg(e: anyhow::Error) -> NotReady {
    NotReady {
        message: format!("{e:#}"),
        ..Default::default()
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn worse(a: Outcome, b: Outcome) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Unchanged => 0,
        Outcome::Applied => 1,
        Outcome::Skipped => 2,
        Outcome::Failed => 3,
        Outcome::RolledBack => 4,
        Outcome::RollbackFailed => 5,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Puts the old container of `e` back under its name and running; the new one is stopped and
/// kept as `<name>-composeops-failed` (or removed).
async fn rollback(a: &Applier<'_>, e: &Entry, cleanup: bool, failed_name: &str) -> Result<()> {
    let old = e
        .old_id
        .as_deref()
        .ok_or_else(|| anyhow!("no old container"))?;
    if let Some(new) = &e.new_id {
        a.stop(new, Some(2)).await?;
        if cleanup {
            a.remove(new).await?;
        } else {
            a.rename(new, failed_name).await?;
        }
    }
    let _ = a.remove(&e.temp_name).await;
    let c = a.engine.call().inspect_container(old, None).await?;
    let name = c.name.unwrap_or_default();
    if name.trim_start_matches('/') != e.final_name {
        a.rename(old, &e.final_name).await?;
    }
    a.start(old).await?;
    Ok(())
}

/// Finishes or undoes the recreate recorded in `journal` by a run that was killed. Called by
/// `apply` and `plan` (under the project lock) before observing.
pub async fn recover(engine: &Engine, journal: &Journal) -> Result<bool> {
    let Some(e) = journal.read()? else {
        return Ok(false);
    };
    eprintln!(
        "recovering an interrupted apply of {} ({:?}) from {}",
        e.final_name,
        e.phase,
        journal.path().display()
    );
    let exists = |id: String| async move {
        match engine.call().inspect_container(&id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(anyhow::Error::from(err)),
        }
    };
    let rm = |id: String| async move {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match engine.call().remove_container(&id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(anyhow::Error::from(err)),
        }
    };
    let rename = |id: String, name: String| async move {
        let opts = RenameContainerOptionsBuilder::default().name(&name).build();
        engine
            .call()
            .rename_container(&id, opts)
            .await
            .map_err(anyhow::Error::from)
    };
    let start = |id: String| async move {
        match engine.call().start_container(&id, None).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_modified(&err) => Ok(()),
            Err(err) => Err(anyhow::Error::from(err)),
        }
    };
    let name_of = |c: &bollard::models::ContainerInspectResponse| {
        c.name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string()
    };
    let running = |c: &bollard::models::ContainerInspectResponse| {
        c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
    };
    let old = match &e.old_id {
        Some(id) => exists(id.clone()).await?,
        None => None,
    };
    let undo = match old {
        Some(old) if e.phase != Phase::Committed => Some(old),
        _ => None,
    };
    if let Some(old) = undo {
        // Undo: remove the new container wherever it is, put the old one back.
        if let Some(id) = &e.new_id {
            rm(id.clone()).await?;
        }
        rm(e.temp_name.clone()).await?;
        let old_id = old.id.clone().unwrap_or_default();
        if let Some(c) = exists(e.final_name.clone()).await? {
            if c.id.as_deref() != Some(old_id.as_str()) {
                rm(c.id.clone().unwrap_or_default()).await?;
            }
        }
        if name_of(&old) != e.final_name {
            rename(old_id.clone(), e.final_name.clone()).await?;
        }
        if !running(&old) {
            start(old_id).await?;
        }
    } else {
        // The new container was ready (or the old one is gone): keep the new one.
        if let Some(id) = &e.old_id {
            rm(id.clone()).await?;
        }
        let new = match &e.new_id {
            Some(id) => exists(id.clone()).await?,
            None => exists(e.temp_name.clone()).await?,
        };
        if let Some(c) = new {
            let id = c.id.clone().unwrap_or_default();
            if name_of(&c) != e.final_name {
                rename(id.clone(), e.final_name.clone()).await?;
            }
            if !running(&c) {
                start(id).await?;
            }
        }
    }
    journal.clear()?;
    eprintln!("recovered {}", e.final_name);
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/apply.schema.json");
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, super::json_schema()).unwrap();
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            have,
            super::json_schema(),
            "schemas/apply.schema.json is stale: run UPDATE_SCHEMAS=1 cargo test --lib"
        );
    }
}
