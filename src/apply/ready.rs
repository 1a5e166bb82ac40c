//! Health waits: a new container is ready when healthy (or running on two polls without a
//! healthcheck); a dependency's `condition` is waited for before its dependants change.

use std::time::{Duration, Instant};

use super::ops::{ContainerInfo, ContainerOps};
use super::Applier;
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
}

/// Compose polls every 500 ms; so do we.
const POLL: Duration = Duration::from_millis(500);

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

    async fn wait_exit0(&self, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.wait_timeout;
        loop {
            let c = self.inspect_or(name).await?;
            if !c.running && c.status == "exited" {
                return match c.exit_code {
                    Some(0) => Ok(()),
                    code => Err(format!("{name} exited with code {}", code.unwrap_or(-1))),
                };
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} did not complete within {:?}",
                    self.opts.wait_timeout
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `name` is healthy, or running when it has no healthcheck.
    /// `require_health`: a missing healthcheck is an error (service_healthy).
    pub(crate) async fn wait_ready(
        &self,
        name: &str,
        require_health: bool,
    ) -> Result<(), NotReady> {
        let deadline = Instant::now() + self.opts.wait_timeout;
        let mut polls = 0;
        loop {
            let c = self.inspect_or(name).await.map_err(|message| NotReady {
                message,
                ..Default::default()
            })?;
            polls += 1;
            match (c.status.as_str(), c.health.as_deref()) {
                // A one-shot (restart: no) that exited 0 has done its job.
                ("exited", _) if c.exit_code == Some(0) && !require_health && c.one_shot => {
                    return Ok(())
                }
                ("exited" | "dead", _) => {
                    let msg = format!("exited with code {}", c.exit_code.unwrap_or(-1));
                    return Err(self.not_ready(name, msg, c).await);
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
                let state = c.health.as_deref().unwrap_or(&c.status);
                let msg = format!("still {state} after {:?}", self.opts.wait_timeout);
                return Err(self.not_ready(name, msg, c).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn not_ready(&self, name: &str, message: String, c: ContainerInfo) -> NotReady {
        NotReady {
            message,
            logs: self.engine.logs_tail(name, 20).await,
            health_log: c.health_log,
        }
    }
}
