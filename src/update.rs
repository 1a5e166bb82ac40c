//! How a service's containers are replaced: `deploy.update_config` and
//! `deploy.rollback_config`, as far as one host allows.
//!
//! Compose leaves both to Swarm; composeops honours them on one host:
//! - `order`: start-first runs the new container beside the old one until it is ready, so
//!   clients never see the service gone; a service that cannot run twice at once (a fixed host
//!   port, a fixed address) is updated stop-first, and the plan says why.
//! - `parallelism` replicas are replaced at once (0: all), `delay` apart; each new container
//!   must stay up for `monitor` after it is ready before its old one goes.
//! - `failure_action` when more than `max_failure_ratio` of the replicas failed: `pause` (stop
//!   the rollout: Swarm's default, and composeops' behaviour without `update_config`),
//!   `continue`, or `rollback`: the replicas already replaced get their old containers back,
//!   as `rollback_config` says (its own parallelism, delay, monitor, order, and `pause` or
//!   `continue` when an old container does not come back).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::model::{Project, Service, UpdateConfig};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old container (kept aside), then start the new one: the default.
    #[default]
    StopFirst,
    /// Start the new container beside the old one; the old one goes once the new is ready.
    StartFirst,
}

impl UpdateOrder {
    pub fn is_stop_first(&self) -> bool {
        *self == UpdateOrder::StopFirst
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

/// The order `svc` is updated in, and why it is not the one asked for (a warning), if so.
pub fn order(service: &str, svc: &Service) -> (UpdateOrder, Option<String>) {
    let asked = svc
        .deploy
        .as_ref()
        .and_then(|d| d.update_config.as_ref())
        .and_then(|u| u.order.as_deref());
    if asked != Some("start-first") {
        return (UpdateOrder::StopFirst, None);
    }
    match why_not_twice(svc) {
        None => (UpdateOrder::StartFirst, None),
        Some(why) => (
            UpdateOrder::StopFirst,
            Some(format!(
                "service {service}: update_config.order start-first needs two containers at \
                 once, but {why}: updating stop-first (publish an ephemeral port, e.g. \
                 \"127.0.0.1::8080\", or put a proxy in front to update without downtime)"
            )),
        ),
    }
}

/// What keeps two containers of `svc` from running at the same time.
fn why_not_twice(svc: &Service) -> Option<String> {
    // Both copies would live in one network namespace: one stack, one set of ports.
    if crate::namespaces::joins_network(svc) {
        return Some(format!(
            "it joins another container's network namespace ({})",
            svc.network_mode.as_deref().unwrap_or_default()
        ));
    }
    let fixed: Vec<String> = svc
        .ports
        .iter()
        .filter_map(|p| p.published.as_deref())
        .filter(|p| !p.is_empty() && *p != "0")
        .map(str::to_string)
        .collect();
    if !fixed.is_empty() {
        return Some(format!("it publishes fixed host port {}", fixed.join(", ")));
    }
    let addressed = svc.networks.iter().find_map(|(n, ep)| {
        ep.as_ref()
            .filter(|ep| ep.ipv4_address.is_some() || ep.ipv6_address.is_some())
            .map(|_| n.clone())
    });
    addressed.map(|n| format!("it has a fixed address on network {n}"))
}

/// What a rollout does when too many replicas failed (`failure_action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Stop: the replicas not reached yet stay as they are.
    #[default]
    Pause,
    /// Go on with the other replicas.
    Continue,
    /// Put the old containers of the replicas already replaced back (update only).
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

/// How the replicas of one service are replaced (`update_config`) or put back
/// (`rollback_config`). The defaults are Swarm's, and replace one replica at a time as
/// composeops always did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rollout {
    /// Replicas replaced at once; 0: all of them.
    pub parallelism: u64,
    /// Wait between two batches, in milliseconds.
    pub delay_ms: u64,
    /// How long a new container must stay running (and not unhealthy) once it is ready before
    /// its old one goes, in milliseconds.
    pub monitor_ms: u64,
    pub failure_action: FailureAction,
    /// The share of the replicas that may fail before `failure_action` is taken (0 to 1).
    pub max_failure_ratio: f64,
    pub order: UpdateOrder,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms: 0,
            failure_action: FailureAction::Pause,
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

impl Rollout {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    pub fn monitor(&self) -> Duration {
        Duration::from_millis(self.monitor_ms)
    }

    /// Batch size for `n` replicas.
    pub fn batch(&self, n: usize) -> usize {
        match self.parallelism {
            0 => n.max(1),
            p => usize::try_from(p).unwrap_or(usize::MAX),
        }
    }

    /// Whether `failed` failures out of `total` replicas call for `failure_action`.
    pub fn too_many_failures(&self, failed: usize, total: usize) -> bool {
        failed > 0 && failed as f64 > self.max_failure_ratio * total.max(1) as f64
    }

    /// `2 at a time, 5s apart, monitor 10s, on failure rollback`: the settings that differ
    /// from the defaults, for the text plan.
    pub fn describe(&self) -> String {
        let d = Rollout::default();
        let mut parts = vec![self.order.as_str().to_string()];
        if self.parallelism != d.parallelism {
            parts.push(match self.parallelism {
                0 => "all at once".to_string(),
                p => format!("{p} at a time"),
            });
        }
        if self.delay_ms != 0 {
            parts.push(format!("{} apart", crate::duration::format(self.delay())));
        }
        if self.monitor_ms != 0 {
            parts.push(format!(
                "monitor {}",
                crate::duration::format(self.monitor())
            ));
        }
        if self.max_failure_ratio != 0.0 {
            parts.push(format!("tolerating {} failed", self.max_failure_ratio));
        }
        parts.push(format!("on failure {}", self.failure_action.as_str()));
        parts.join(", ")
    }
}

/// A service's rollout settings, as the plan records them (only for a service that has
/// `update_config` or `rollback_config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rollouts {
    pub update: Rollout,
    pub rollback: Rollout,
}

/// `svc`'s rollouts, when it sets either config. The order of the update is [`order`]'s (the
/// host may force stop-first); values were checked by [`problems`] at load.
pub fn rollouts(service: &str, svc: &Service) -> Option<Rollouts> {
    let deploy = svc.deploy.as_ref()?;
    if deploy.update_config.is_none() && deploy.rollback_config.is_none() {
        return None;
    }
    let mut update = parse(deploy.update_config.as_ref()).unwrap_or_default();
    update.order = order(service, svc).0;
    let mut rollback = parse(deploy.rollback_config.as_ref()).unwrap_or_default();
    if rollback.order == UpdateOrder::StartFirst && why_not_twice(svc).is_some() {
        rollback.order = UpdateOrder::StopFirst;
    }
    Some(Rollouts { update, rollback })
}

/// A config's settings, or the field and why it is invalid.
fn parse(cfg: Option<&UpdateConfig>) -> Result<Rollout, (&'static str, String)> {
    let mut r = Rollout::default();
    let Some(c) = cfg else { return Ok(r) };
    if let Some(p) = c.parallelism {
        r.parallelism = p;
    }
    let millis = |field: &'static str, v: &Option<String>| -> Result<u64, (&'static str, String)> {
        match v.as_deref() {
            None => Ok(0),
            Some(t) => crate::duration::parse(t)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or((
                    field,
                    format!("invalid duration {t:?}: write it like 10s, 1m30s or 0s"),
                )),
        }
    };
    r.delay_ms = millis("delay", &c.delay)?;
    r.monitor_ms = millis("monitor", &c.monitor)?;
    r.failure_action = match c.failure_action.as_deref() {
        None | Some("pause") => FailureAction::Pause,
        Some("continue") => FailureAction::Continue,
        Some("rollback") => FailureAction::Rollback,
        Some(x) => {
            return Err((
                "failure_action",
                format!("invalid value {x:?}: it is one of pause, continue, rollback"),
            ))
        }
    };
    if let Some(m) = c.max_failure_ratio {
        if !(0.0..=1.0).contains(&m) {
            return Err((
                "max_failure_ratio",
                format!("invalid value {m}: it is a share of the replicas, from 0 to 1"),
            ));
        }
        r.max_failure_ratio = m;
    }
    r.order = match c.order.as_deref() {
        None | Some("stop-first") => UpdateOrder::StopFirst,
        Some("start-first") => UpdateOrder::StartFirst,
        Some(x) => {
            return Err((
                "order",
                format!("invalid value {x:?}: it is stop-first or start-first"),
            ))
        }
    };
    Ok(r)
}

/// Invalid values in the services' `update_config` and `rollback_config`: (path, message),
/// checked at load so that a rollout never starts on a setting it cannot follow.
pub(crate) fn problems(project: &Project) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        let Some(d) = &svc.deploy else { continue };
        for (key, cfg) in [
            ("update_config", &d.update_config),
            ("rollback_config", &d.rollback_config),
        ] {
            let path = |f: &str| format!("services.{name}.deploy.{key}.{f}");
            match parse(cfg.as_ref()) {
                Err((field, msg)) => out.push((path(field), msg)),
                Ok(r)
                    if key == "rollback_config" && r.failure_action == FailureAction::Rollback =>
                {
                    out.push((
                        path("failure_action"),
                        "a rollback cannot itself be rolled back: it is pause or continue".into(),
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> (UpdateOrder, Option<String>) {
        let p = crate::load::test_project(yaml);
        order("web", &p.services["web"])
    }

    #[test]
    fn start_first_unless_the_service_cannot_run_twice() {
        let base = "services:\n  web:\n    image: app:1\n";
        assert_eq!(svc(base), (UpdateOrder::StopFirst, None));
        let sf = format!("{base}    deploy: {{update_config: {{order: start-first}}}}\n");
        assert_eq!(svc(&sf), (UpdateOrder::StartFirst, None));
        let ephemeral = format!("{sf}    ports: [\"127.0.0.1::8080\"]\n");
        assert_eq!(svc(&ephemeral), (UpdateOrder::StartFirst, None));
        let fixed = format!("{sf}    ports: [\"127.0.0.1:8081:8080\"]\n");
        let (o, why) = svc(&fixed);
        assert_eq!(o, UpdateOrder::StopFirst);
        assert!(why.unwrap().contains("fixed host port 8081"));
        let joined = "services:\n  vpn:\n    image: app:1\n  web:\n    image: app:1\n    \
             network_mode: service:vpn\n    deploy: {update_config: {order: start-first}}\n";
        let (o, why) = svc(joined);
        assert_eq!(o, UpdateOrder::StopFirst);
        assert!(why.unwrap().contains("network namespace (service:vpn)"));
        let stop = format!("{base}    deploy: {{update_config: {{order: stop-first}}}}\n");
        assert_eq!(svc(&stop), (UpdateOrder::StopFirst, None));
    }
}
