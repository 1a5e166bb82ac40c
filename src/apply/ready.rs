//! Health waits: a new container is ready when healthy (or running, without a healthcheck);
//! a dependency's `condition` is waited for before its dependants change.
//!
//! Waits listen to the engine's event stream (`start`, `die`, `health_status`) rather than
//! polling inspect, so an update takes the container's start and health time and nothing more,
//! and an `unhealthy` report or a `die` ends the wait at once. The container is inspected once
//! after subscribing, for a state reached before the subscription; the subscription starts a
//! few seconds back, so an event raced by the subscription is replayed rather than lost.

use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::ops::{ContainerEvent, ContainerInfo, ContainerOps};
use super::{progress, Applier};
use crate::plan::{Plan, ReplicaAction};

/// Why a container did not become ready, with what the operator needs to see.
#[derive(Debug, Default)]
pub(crate) struct NotReady {
    pub message: String,
    pub logs: Vec<String>,
    pub health_log: Vec<String>,
}

impl NotReady {
    pub(crate) fn from_error(e: anyhow::Error) -> NotReady {
        NotReady {
            message: format!("{e:#}"),
            ..Default::default()
        }
    }

    fn msg(message: String) -> NotReady {
        NotReady {
            message,
            ..Default::default()
        }
    }
}

/// A process that crashes on start-up is reported running for a moment: without a
/// healthcheck, a container is ready once it has run this long without a `die`.
const SETTLE: Duration = Duration::from_millis(500);
/// Added to a healthcheck's own bound: the engine schedules checks a little late.
const SLACK: Duration = Duration::from_secs(10);
/// The bound of a wait without a healthcheck (nor an explicit `--wait-timeout`).
const NO_HEALTHCHECK_BOUND: Duration = Duration::from_secs(60);
/// How far back a subscription starts (see the module documentation).
const REPLAY: Duration = Duration::from_secs(2);

/// Where a wait stands after an inspect or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ready,
    Failed(String),
    /// Running without a healthcheck: ready after [`SETTLE`] without a `die`.
    Settling,
    Wait,
}

/// The verdict on an inspected container. `require_health`: a missing healthcheck is an error
/// (`service_healthy`), and an exit is never success.
pub(crate) fn judge(c: &ContainerInfo, require_health: bool) -> Verdict {
    match (c.status.as_str(), c.health.as_deref()) {
        // A one-shot (restart: no) that exited 0 has done its job.
        ("exited", _) if c.exit_code == Some(0) && !require_health && c.one_shot => Verdict::Ready,
        ("exited" | "dead", _) => {
            Verdict::Failed(format!("exited with code {}", c.exit_code.unwrap_or(-1)))
        }
        ("running", Some("healthy")) => Verdict::Ready,
        ("running", Some("unhealthy")) => Verdict::Failed("unhealthy".into()),
        ("running", None) if require_health => {
            Verdict::Failed("has no healthcheck (service_healthy needs one)".into())
        }
        ("running", None) => Verdict::Settling,
        _ => Verdict::Wait,
    }
}

impl<E: ContainerOps> Applier<'_, E> {
    /// Waits for `condition` (`service_healthy`, `service_completed_successfully`; anything
    /// else is met at once) on every replica of `dep` that this plan keeps.
    pub(crate) async fn wait_dependency(
        &self,
        plan: &Plan,
        dep: &str,
        condition: &str,
    ) -> Result<(), String> {
        let Some(dp) = plan.services.iter().find(|s| s.service == dep) else {
            return Ok(());
        };
        let names = dp
            .replicas
            .iter()
            .filter(|r| r.action != ReplicaAction::Remove)
            .map(|r| r.name.as_str());
        for n in names {
            match condition {
                "service_healthy" => self.wait_ready(n, true).await.map_err(|e| e.message)?,
                "service_completed_successfully" => self.wait_exit0(n).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn inspect_or(&self, name: &str) -> Result<ContainerInfo, String> {
        match self.engine.inspect(name).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(format!("cannot inspect: no container {name}")),
            Err(e) => Err(format!("cannot inspect: {e:#}")),
        }
    }

    /// The bound of a wait on `c`: `--wait-timeout` when given, else its healthcheck's own.
    fn bound(&self, c: &ContainerInfo) -> Duration {
        self.opts.wait_timeout.unwrap_or(match c.health_bound {
            Some(b) => b + SLACK,
            None => NO_HEALTHCHECK_BOUND,
        })
    }

    /// Subscribes to the events of `name`, then inspects it: (its state, its events).
    async fn subscribe(
        &self,
        name: &str,
    ) -> Result<(ContainerInfo, BoxStream<'static, ContainerEvent>), String> {
        self.subscribe_since(name, SystemTime::now() - REPLAY).await
    }

    /// [`Self::subscribe`] from `since`: a wait on a container that this run stopped a
    /// moment ago and started again starts after the stop, whose `die` is not news.
    async fn subscribe_since(
        &self,
        name: &str,
        since: SystemTime,
    ) -> Result<(ContainerInfo, BoxStream<'static, ContainerEvent>), String> {
        let id = self.inspect_or(name).await?.id;
        let events = self.engine.events(&id, since);
        Ok((self.inspect_or(&id).await?, events))
    }

    async fn wait_exit0(&self, name: &str) -> Result<(), String> {
        let (mut c, mut events) = self.subscribe(name).await?;
        let deadline = Instant::now() + self.bound(&c);
        loop {
            if !c.running && c.status == "exited" {
                return match c.exit_code {
                    Some(0) => Ok(()),
                    code => Err(format!("{name} exited with code {}", code.unwrap_or(-1))),
                };
            }
            match tokio::time::timeout_at(deadline.into(), events.next()).await {
                Err(_) => {
                    return Err(format!(
                        "{name} did not complete within {:?}",
                        self.bound(&c)
                    ))
                }
                Ok(Some(_)) => {}
                // The engine closed the stream: listen again.
                Ok(None) => (_, events) = self.subscribe(name).await?,
            }
            c = self.inspect_or(&c.id).await?;
        }
    }

    /// Waits until `name` is healthy, or running when it has no healthcheck; fails at once on
    /// `unhealthy` or a `die`. `require_health`: a missing healthcheck is an error
    /// (`service_healthy`).
    pub(crate) async fn wait_ready(
        &self,
        name: &str,
        require_health: bool,
    ) -> Result<(), NotReady> {
        self.wait_ready_since(name, require_health, SystemTime::now() - REPLAY)
            .await
    }

    /// [`Self::wait_ready`] on events from `since` (see [`Self::subscribe_since`]).
    pub(crate) async fn wait_ready_since(
        &self,
        name: &str,
        require_health: bool,
        since: SystemTime,
    ) -> Result<(), NotReady> {
        let (mut c, mut events) = self
            .subscribe_since(name, since)
            .await
            .map_err(NotReady::msg)?;
        let bound = self.bound(&c);
        let deadline = Instant::now() + bound;
        let mut verdict = judge(&c, require_health);
        loop {
            let wait_until = match &verdict {
                Verdict::Ready => return Ok(()),
                Verdict::Failed(msg) => return Err(self.not_ready(&c.id, msg.clone()).await),
                Verdict::Settling => deadline.min(Instant::now() + SETTLE),
                Verdict::Wait => deadline,
            };
            let next = tokio::time::timeout_at(wait_until.into(), events.next()).await;
            verdict = match next {
                Err(_) if verdict == Verdict::Settling => Verdict::Ready,
                Err(_) => {
                    let c = self.inspect_or(&c.id).await.map_err(NotReady::msg)?;
                    let state = c.health.as_deref().unwrap_or(&c.status);
                    let msg = format!("still {state} after {bound:?}");
                    return Err(self.not_ready(&c.id, msg).await);
                }
                Ok(Some(ContainerEvent::Health(h))) if h == "unhealthy" => {
                    Verdict::Failed("unhealthy".into())
                }
                Ok(Some(ContainerEvent::Health(h))) if h == "healthy" => Verdict::Ready,
                Ok(Some(ContainerEvent::Die { exit_code })) => {
                    c = self.inspect_or(&c.id).await.map_err(NotReady::msg)?;
                    match judge(&c, require_health) {
                        Verdict::Ready => Verdict::Ready,
                        _ => Verdict::Failed(format!(
                            "exited with code {}",
                            exit_code.or(c.exit_code).unwrap_or(-1)
                        )),
                    }
                }
                Ok(ev) => {
                    if ev.is_none() {
                        // The engine closed the stream: listen again.
                        (_, events) = self.subscribe(&c.id).await.map_err(NotReady::msg)?;
                    }
                    c = self.inspect_or(&c.id).await.map_err(NotReady::msg)?;
                    judge(&c, require_health)
                }
            };
        }
    }

    /// Watches the ready container `name` for `period` (`update_config.monitor`): a `die` or
    /// an `unhealthy` report in that time fails it, as in the readiness wait; so does finding
    /// it stopped at the end (a state the event stream may not have told).
    pub(crate) async fn monitor(&self, name: &str, period: Duration) -> Result<(), NotReady> {
        // Anything before now is known: the container is ready.
        let (c, mut events) = self
            .subscribe_since(name, SystemTime::now())
            .await
            .map_err(NotReady::msg)?;
        let deadline = Instant::now() + period;
        let failed = |what: String| format!("{what} within the monitor period ({period:?})");
        if let Verdict::Failed(msg) = judge(&c, false) {
            return Err(self.not_ready(&c.id, failed(msg)).await);
        }
        loop {
            match tokio::time::timeout_at(deadline.into(), events.next()).await {
                Err(_) => break,
                Ok(Some(ContainerEvent::Health(h))) if h == "unhealthy" => {
                    return Err(self.not_ready(&c.id, failed("unhealthy".into())).await)
                }
                Ok(Some(ContainerEvent::Die { exit_code })) => {
                    let msg = format!("exited with code {}", exit_code.unwrap_or(-1));
                    return Err(self.not_ready(&c.id, failed(msg)).await);
                }
                Ok(Some(_)) => {}
                // The engine closed the stream: listen again.
                Ok(None) => {
                    (_, events) = self
                        .subscribe_since(&c.id, SystemTime::now())
                        .await
                        .map_err(NotReady::msg)?
                }
            }
        }
        let c = self.inspect_or(&c.id).await.map_err(NotReady::msg)?;
        match judge(&c, false) {
            Verdict::Failed(msg) => Err(self.not_ready(&c.id, failed(msg)).await),
            _ => Ok(()),
        }
    }

    /// Runs `service`'s `x-composeops.verify` (if it has one) against container `name`, which
    /// is ready: in the project directory, with the container and its published ports in the
    /// environment. A failure says why with the check's last output lines, and comes with the
    /// container's own last logs, as a failed health wait does.
    pub(crate) async fn verify(&self, service: &str, name: &str) -> Result<(), NotReady> {
        let p = &self.desired.project;
        let Some(v) = &p.services[service].verify else {
            return Ok(());
        };
        let c = self.inspect_or(name).await.map_err(NotReady::msg)?;
        progress(service, format!("verifying {}", c.name));
        let subject = crate::verify::Subject {
            project: &p.name,
            service,
            container_id: &c.id,
            container_name: &c.name,
            published: &c.published,
        };
        match crate::verify::run(v, &subject, &p.working_dir).await {
            Ok(()) => {
                progress(service, format!("{} verified", c.name));
                Ok(())
            }
            Err(message) => Err(self.not_ready(&c.id, message).await),
        }
    }

    /// Why `id` is not ready, with its last logs and health-check outputs.
    async fn not_ready(&self, id: &str, message: String) -> NotReady {
        let health_log = match self.engine.inspect(id).await {
            Ok(Some(c)) => c.health_log,
            _ => Vec::new(),
        };
        NotReady {
            message,
            logs: self.engine.logs_tail(id, 20).await,
            health_log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: &str, health: Option<&str>, exit: Option<i64>, one_shot: bool) -> ContainerInfo {
        ContainerInfo {
            status: status.into(),
            running: status == "running",
            health: health.map(Into::into),
            exit_code: exit,
            one_shot,
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_on_inspected_states() {
        use Verdict::*;
        let failed = |m: &str| Failed(m.to_string());
        let cases = [
            (c("running", Some("healthy"), None, false), false, Ready),
            (c("running", Some("starting"), None, false), false, Wait),
            (
                c("running", Some("unhealthy"), None, false),
                false,
                failed("unhealthy"),
            ),
            (c("running", None, None, false), false, Settling),
            (
                c("running", None, None, false),
                true,
                failed("has no healthcheck (service_healthy needs one)"),
            ),
            (c("exited", None, Some(0), true), false, Ready),
            (
                c("exited", None, Some(0), true),
                true,
                failed("exited with code 0"),
            ),
            (
                c("exited", None, Some(0), false),
                false,
                failed("exited with code 0"),
            ),
            (
                c("exited", None, Some(1), true),
                false,
                failed("exited with code 1"),
            ),
            (c("created", None, None, false), false, Wait),
            (c("restarting", None, None, false), false, Wait),
        ];
        for (info, require, want) in cases {
            assert_eq!(judge(&info, require), want, "{info:?}, require {require}");
        }
    }
}
