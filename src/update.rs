//! How a service's containers are replaced: `deploy.update_config.order`, as far as the host
//! allows it.
//!
//! Compose leaves `update_config` to Swarm; composeops honours `order`. Start-first runs the
//! new container beside the old one until it is ready, so clients never see the service gone;
//! a service that cannot run twice at once (a fixed host port, a fixed address) is updated
//! stop-first, and the plan says why.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Service;

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
