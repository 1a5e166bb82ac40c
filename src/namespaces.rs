//! Shared namespaces and container references between services: `network_mode`, `ipc` and
//! `pid` of the forms `service:X` / `container:NAME`, `volumes_from` and `links`.
//!
//! The compose file names services; the engine wants containers. Compose v5 resolves each
//! `service:X` to `container:<id>` of X's first container (by name) when it creates the
//! dependent, hashes the service *after* that resolution into `com.docker.compose.config-hash`,
//! and recreates a dependent whenever X is recreated (its namespace would be dead). This
//! module holds the pure part of that: which references a service makes, their validation,
//! their resolution against a lookup of containers, and why a running dependent is stale.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Project, Service};

/// Which shared thing a reference is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Network,
    Ipc,
    Pid,
    Volumes,
}

impl Kind {
    /// The compose field it is written in.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Kind::Network => "network_mode",
            Kind::Ipc => "ipc",
            Kind::Pid => "pid",
            Kind::Volumes => "volumes_from",
        }
    }

    /// How a plan reason names it: `network namespace of vpn`.
    fn what(self, service: &str) -> String {
        match self {
            Kind::Network => format!("network namespace of {service}"),
            Kind::Ipc => format!("IPC namespace of {service}"),
            Kind::Pid => format!("PID namespace of {service}"),
            Kind::Volumes => format!("volumes_from container of {service}"),
        }
    }
}

/// One reference of a service to another service's container (`service:X`, `volumes_from: X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub kind: Kind,
    pub service: String,
}

fn mode(svc: &Service, kind: Kind) -> Option<&str> {
    match kind {
        Kind::Network => svc.network_mode.as_deref(),
        Kind::Ipc | Kind::Pid => svc.extra.get(kind.field()).and_then(Value::as_str),
        Kind::Volumes => None,
    }
}

fn strings(svc: &Service, field: &str) -> Vec<String> {
    match svc.extra.get(field) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `volumes_from` as written.
pub(crate) fn volumes_from(svc: &Service) -> Vec<String> {
    strings(svc, "volumes_from")
}

/// `links` as written.
pub(crate) fn links(svc: &Service) -> Vec<String> {
    strings(svc, "links")
}

/// The services `svc` shares a namespace or volumes with, in field order.
pub(crate) fn refs(svc: &Service) -> Vec<Ref> {
    let mut out = Vec::new();
    for kind in [Kind::Network, Kind::Ipc, Kind::Pid] {
        if let Some(x) = mode(svc, kind).and_then(|m| m.strip_prefix("service:")) {
            out.push(Ref {
                kind,
                service: x.to_string(),
            });
        }
    }
    for v in volumes_from(svc) {
        if !v.starts_with("container:") {
            let x = v.split(':').next().unwrap_or(&v).to_string();
            out.push(Ref {
                kind: Kind::Volumes,
                service: x,
            });
        }
    }
    out
}

/// Whether `svc` runs in another container's network namespace (`service:` or `container:`).
pub(crate) fn joins_network(svc: &Service) -> bool {
    svc.network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("service:") || m.starts_with("container:"))
}

/// The references resolved, as the engine receives them (`container:<id>`, `<id>:ro`, and the
/// endpoint links `NAME:ALIAS`); recorded on the container so a later plan can tell whether
/// they still point at the current containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Shares {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl Shares {
    /// Whether a service needs any resolution at all.
    pub(crate) fn needed(svc: &Service) -> bool {
        !refs(svc).is_empty() || !links(svc).is_empty() || !volumes_from(svc).is_empty()
    }

    /// What an inspected container shares (links are not read back: they name containers).
    pub(crate) fn from_host_config(hc: &bollard::models::HostConfig) -> Shares {
        let joined = |m: &Option<String>| m.clone().filter(|m| m.starts_with("container:"));
        Shares {
            network_mode: joined(&hc.network_mode),
            ipc: joined(&hc.ipc_mode),
            pid: joined(&hc.pid_mode),
            volumes_from: hc.volumes_from.clone().unwrap_or_default(),
            links: Vec::new(),
        }
    }

    fn get(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Network => self.network_mode.as_deref(),
            Kind::Ipc => self.ipc.as_deref(),
            Kind::Pid => self.pid.as_deref(),
            Kind::Volumes => None,
        }
    }
}

/// What one service's containers look like to the resolver: the id of its first container by
/// name, and the names of all of them (for links).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Target {
    pub primary_id: Option<String>,
    pub names: Vec<String>,
}

/// The error Compose gives when X has no container to share.
fn missing(kind: Kind, x: &str) -> String {
    let what = match kind {
        Kind::Network => "network namespace",
        Kind::Ipc => "IPC namespace",
        Kind::Pid => "PID namespace",
        Kind::Volumes => "volume",
    };
    format!("cannot share {what} with service {x}: container missing")
}

/// Resolves the references of `service` (replica `number`) against `lookup` (a service's
/// containers). `Err` when a referenced service has no container.
pub(crate) fn resolve(
    project: &Project,
    service: &str,
    number: u32,
    lookup: &dyn Fn(&str) -> Target,
) -> Result<Shares, String> {
    let svc = &project.services[service];
    let mut s = Shares::default();
    for kind in [Kind::Network, Kind::Ipc, Kind::Pid] {
        let Some(m) = mode(svc, kind) else { continue };
        let resolved = match m.strip_prefix("service:") {
            Some(x) => match lookup(x).primary_id {
                Some(id) => format!("container:{id}"),
                None => return Err(missing(kind, x)),
            },
            None => continue,
        };
        match kind {
            Kind::Network => s.network_mode = Some(resolved),
            Kind::Ipc => s.ipc = Some(resolved),
            _ => s.pid = Some(resolved),
        }
    }
    for v in volumes_from(svc) {
        // `container:NAME[:mode]` names a container already; `X[:mode]` a service.
        let (source, mode) = match v.strip_prefix("container:") {
            Some(rest) => {
                let (n, m) = split_mode(rest);
                (n.to_string(), m)
            }
            None => {
                let (x, m) = split_mode(&v);
                match lookup(x).primary_id {
                    Some(id) => (id, m),
                    None => return Err(missing(Kind::Volumes, x)),
                }
            }
        };
        s.volumes_from.push(match mode {
            Some(m) => format!("{source}:{m}"),
            None => source,
        });
    }
    for l in links(svc) {
        let (x, alias) = l.split_once(':').unwrap_or((&l, &l));
        // Compose's three names per linked container; the numbered ones carry the number of
        // the container being created (not of the linked one), as Compose writes them.
        for name in lookup(x).names {
            s.links.push(format!("{name}:{alias}"));
            s.links.push(format!("{name}:{x}-{number}"));
            s.links
                .push(format!("{name}:{}-{x}-{number}", project.name));
        }
    }
    Ok(s)
}

fn split_mode(v: &str) -> (&str, Option<&str>) {
    match v.rsplit_once(':') {
        Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
        _ => (v, None),
    }
}

/// The service JSON Compose hashes, with the references resolved as Compose resolves them
/// before hashing: `container:<id>`, and `volumes_from` entries reduced to the bare id or
/// container name (Compose drops the `:ro`/`:rw` there). Without a resolution (a referenced
/// service has no container) the JSON is hashed as written, as Compose does: it cannot match.
pub(crate) fn hash_form(svc_json: &mut Value, shares: Option<&Shares>) {
    let (Some(s), Value::Object(o)) = (shares, svc_json) else {
        return;
    };
    for (k, v) in [
        ("network_mode", &s.network_mode),
        ("ipc", &s.ipc),
        ("pid", &s.pid),
    ] {
        if let Some(v) = v {
            o.insert(k.into(), Value::String(v.clone()));
        }
    }
    if o.contains_key("volumes_from") {
        let bare = s
            .volumes_from
            .iter()
            .map(|v| Value::String(split_mode(v).0.to_string()))
            .collect();
        o.insert("volumes_from".into(), Value::Array(bare));
    }
}

/// Why a running dependent no longer shares what it should: a referenced service is being
/// recreated by this plan (`recreated`), or the container it points at is not that service's
/// current first container (`primary`: service -> container id). `have` is what the dependent
/// was created with; `None` when it is unknown.
pub(crate) fn stale(
    svc: &Service,
    have: Option<&Shares>,
    primary: &BTreeMap<String, String>,
    recreated: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |r: String| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    for r in refs(svc) {
        if recreated.contains(&r.service) {
            push(format!("{} is recreated", r.kind.what(&r.service)));
            continue;
        }
        let Some(id) = primary.get(&r.service) else {
            push(format!("{} is gone", r.kind.what(&r.service)));
            continue;
        };
        let points_at = match (have, r.kind) {
            (None, _) => false,
            (Some(h), Kind::Volumes) => h.volumes_from.iter().any(|v| split_mode(v).0 == id),
            (Some(h), k) => h.get(k) == Some(format!("container:{id}").as_str()),
        };
        if !points_at {
            push(format!(
                "{} is gone (it points at another container)",
                r.kind.what(&r.service)
            ));
        }
    }
    out
}

/// A reference the loader refuses: the field path and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    fn new(path: String, message: String) -> Problem {
        Problem { path, message }
    }
}

/// What to refuse, before anything reaches the engine, of what Compose refuses or the engine would:
/// a reference to a service that is not in the project (or is disabled by its profiles),
/// a dependency cycle, and `network_mode: service:X` (or `container:`) beside `networks`,
/// `ports`, `expose` or `hostname` (the engine rejects these with a shared network namespace).
pub(crate) fn validate(project: &Project) -> Vec<Problem> {
    let mut errors = Vec::new();
    for (name, svc) in &project.services {
        let at = |field: &str| format!("services.{name}.{field}");
        let mut targets: Vec<(String, String)> = refs(svc)
            .into_iter()
            .map(|r| (r.kind.field().to_string(), r.service))
            .collect();
        for l in links(svc) {
            targets.push((
                "links".into(),
                l.split(':').next().unwrap_or(&l).to_string(),
            ));
        }
        for (field, x) in targets {
            if project.services.contains_key(&x) {
                continue;
            }
            let why = if project.disabled_services.contains(&x) {
                " (it is disabled: enable its profile with --profile)"
            } else {
                ""
            };
            errors.push(Problem::new(
                at(&field),
                format!("service {name:?} refers to undefined service {x:?} in {field}{why}"),
            ));
        }
        if joins_network(svc) {
            let mode = svc.network_mode.as_deref().unwrap_or_default();
            let mut clash = Vec::new();
            if !svc.networks.is_empty() {
                clash.push("networks");
            }
            if !svc.ports.is_empty() {
                clash.push("ports");
            }
            for f in ["expose", "hostname"] {
                if svc.extra.get(f).is_some_and(|v| !v.is_null()) {
                    clash.push(f);
                }
            }
            for f in clash {
                errors.push(Problem::new(
                    at(f),
                    format!(
                        "service {name:?} declares mutually exclusive `network_mode: {mode}` and \
                         `{f}`: a container that joins another's network namespace has none of \
                         its own (set {f} on the service that owns the namespace)"
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        if let Some((cycle, field)) = cycle(project) {
            errors.push(Problem::new(
                format!("services.{}.{field}", cycle[0]),
                format!("dependency cycle detected: {}", cycle.join(" -> ")),
            ));
        }
    }
    errors
}

/// A dependency cycle (depends_on, which holds the implicit dependencies of shared namespaces,
/// links and volumes_from too), as `a -> b -> a`, and the field of its first edge.
fn cycle(project: &Project) -> Option<(Vec<String>, String)> {
    fn visit(
        p: &Project,
        s: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(s) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|x| x == s).unwrap_or(0);
                let mut c = path[from..].to_vec();
                c.push(s.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(s.to_string(), 1);
        path.push(s.to_string());
        let deps = p.services.get(s).map(|svc| svc.depends_on.keys());
        for d in deps.into_iter().flatten() {
            if p.services.contains_key(d) {
                if let Some(c) = visit(p, d, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(s.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for s in project.services.keys() {
        if let Some(c) = visit(project, s, &mut state, &mut Vec::new()) {
            let svc = &project.services[&c[0]];
            let field = refs(svc)
                .into_iter()
                .find(|r| r.service == c[1])
                .map(|r| r.kind.field())
                .unwrap_or("depends_on");
            return Some((c, field.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests;
