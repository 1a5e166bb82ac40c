//! `spec`: the normalised per-container spec of a service, its hash, the engine create body
//! built from it, and the same spec read back from an inspected container.
//!
//! The spec is the one thing plan compares. composeops stores its hash (and the spec itself,
//! for readable diffs) in labels on the containers it creates; a container made by
//! `docker compose up` has no such label, so its spec is reconstructed from `inspect` and
//! compared field by field, after removing what the image itself supplies (env, cmd, user…).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig, HostConfig,
    ImageConfig, Mount, MountType, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::configs::FileSpec;
use crate::model::{Project, Service};

/// Version prefix of the spec hash: bump it when the spec's shape or meaning changes.
pub const HASH_VERSION: &str = "v1";

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
pub const LABEL_VERSION: &str = "com.docker.compose.version";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_SPEC_HASH: &str = "io.composeops.spec-hash";
pub const LABEL_SPEC: &str = "io.composeops.spec";
pub const LABEL_DIGEST: &str = "io.composeops.image-digest";
/// What `service:X`, `volumes_from` and `links` resolved to when the container was created
/// (JSON of [`crate::namespaces::Shares`]): a later plan sees from it whether they are stale.
pub const LABEL_SHARES: &str = "io.composeops.shares";
/// The git revision a container was deployed from (set by the agent).
pub const LABEL_REVISION: &str = "io.composeops.revision";

/// Service fields composeops applies beyond the typed ones (read from `Service::extra`).
const APPLIED_EXTRA: &[&str] = &[
    "hostname",
    "user",
    "working_dir",
    "stop_signal",
    "stop_grace_period",
    "tty",
    "stdin_open",
    "init",
    "privileged",
    "read_only",
    "cap_add",
    "cap_drop",
    "extra_hosts",
    "dns",
    "secrets",
    "configs",
    "tmpfs",
    "logging",
    "expose",
    "mem_limit",
    "cpus",
    "shm_size",
    "security_opt",
    "sysctls",
    "ulimits",
    "pid",
    "ipc",
    "volumes_from",
    "links",
];

/// Fields that never reach the container (or are handled elsewhere): not part of the spec.
const NOT_IN_SPEC: &[&str] = &[
    "build",
    "scale",
    "depends_on",
    "profiles",
    "pull_policy",
    "env_file",
];

/// What one container of a service should look like. Field order is the diff order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spec {
    pub image: String,
    /// `None`: the image's own command.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// User labels only (Compose's and composeops' own labels are added at create time).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `host_ip:published:target/protocol`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Sorted by target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Engine network name -> endpoint (service aliases; the container name is added per replica).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, EndpointSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `None`: the image's healthcheck. `test: ["NONE"]` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthSpec>,
    pub restart: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Secret names mounted under /run/secrets (their file contents are never in the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Config names mounted (`file:` sources are bind mounts in `mounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<String>,
    /// Files written into the container before it starts (`content:` and `environment:`
    /// sources): where and how, never what; their digests are a label of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
    /// Exposed (not published) ports, `3000/tcp`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<i64>,
    /// Billionths of a CPU (the engine's NanoCpus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    /// Bytes; the engine default (64 MiB) is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, UlimitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// The engine default (`private`) is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// As written (`db`, `db:ro`, `container:name`); resolved to container ids at create time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// As written (`db`, `db:alias`); resolved to container names at create time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Service fields composeops does not apply yet: part of the hash (so an edit is seen),
    /// not of the container. See [`Spec::unsupported_fields`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsupported: BTreeMap<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoggingSpec {
    /// `None`: the engine's default driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UlimitSpec {
    pub soft: i64,
    pub hard: i64,
}

/// `512m`, `1g`, `64MiB`, `1024` (bytes), as Compose reads memory sizes (binary units).
pub fn parse_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..end].parse().ok()?;
    let unit = t[end..].trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    Some((n * mult) as i64)
}

const DEFAULT_SHM: i64 = 64 * 1024 * 1024;

fn port_key(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct MountSpec {
    /// volume | bind | tmpfs
    #[serde(rename = "type")]
    pub kind: String,
    /// Engine volume name or absolute host path; `None` for anonymous volumes and tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSpec {
    /// Sorted; always includes the service name.
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

/// Durations in nanoseconds, as the engine stores them; 0 means the engine default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthSpec {
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: i64,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub retries: i64,
    #[serde(default)]
    pub start_period: i64,
    #[serde(default)]
    pub start_interval: i64,
}

fn dur_ns(s: &Option<String>) -> i64 {
    s.as_deref()
        .and_then(crate::duration::parse)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(value_str).collect(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}:{}", value_str(v)))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt_str(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(value_str)
}

fn opt_bool(v: Option<&Value>) -> Option<bool> {
    v.and_then(Value::as_bool)
}

/// The service's image, or Compose's default name for a built image (`<project>-<service>`).
pub fn image_reference(project: &Project, service: &str) -> String {
    match &project.services[service].image {
        Some(i) => i.clone(),
        None => format!("{}-{service}", project.name),
    }
}

/// The engine name of a service's container: `container_name`, else `<project>-<service>-<n>`.
pub fn container_name(project: &str, service: &str, svc: &Service, number: u32) -> String {
    match &svc.container_name {
        Some(n) => n.clone(),
        None => format!("{project}-{service}-{number}"),
    }
}

impl Spec {
    /// The desired spec of `service` (pure: the project and the image reference only).
    pub fn from_service(project: &Project, service: &str) -> Spec {
        let svc = &project.services[service];
        let x = &svc.extra;
        let mut s = Spec {
            image: image_reference(project, service),
            command: svc.command.clone(),
            entrypoint: svc.entrypoint.clone(),
            restart: svc.restart.clone().unwrap_or_else(|| "no".into()),
            network_mode: svc.network_mode.clone(),
            user: opt_str(x.get("user")),
            working_dir: opt_str(x.get("working_dir")),
            hostname: opt_str(x.get("hostname")),
            stop_signal: opt_str(x.get("stop_signal")),
            stop_grace_period: opt_str(x.get("stop_grace_period"))
                .and_then(|d| crate::duration::parse(&d))
                .map(|d| d.as_secs() as i64),
            tty: opt_bool(x.get("tty")).unwrap_or(false),
            stdin_open: opt_bool(x.get("stdin_open")).unwrap_or(false),
            init: opt_bool(x.get("init")),
            privileged: opt_bool(x.get("privileged")).unwrap_or(false),
            read_only: opt_bool(x.get("read_only")).unwrap_or(false),
            cap_add: caps(str_list(x.get("cap_add"))),
            cap_drop: caps(str_list(x.get("cap_drop"))),
            extra_hosts: sorted(
                str_list(x.get("extra_hosts"))
                    .into_iter()
                    .map(|h| h.replacen('=', ":", 1))
                    .collect(),
            ),
            dns: str_list(x.get("dns")),
            ..Default::default()
        };
        if let Some(Value::Object(l)) = x.get("logging") {
            s.logging = Some(LoggingSpec {
                driver: l.get("driver").map(value_str),
                options: match l.get("options") {
                    Some(Value::Object(o)) => {
                        o.iter().map(|(k, v)| (k.clone(), value_str(v))).collect()
                    }
                    _ => BTreeMap::new(),
                },
            });
        }
        s.expose = sorted(
            str_list(x.get("expose"))
                .iter()
                .map(|p| port_key(p))
                .collect(),
        );
        s.mem_limit = opt_str(x.get("mem_limit"))
            .and_then(|v| parse_bytes(&v))
            .filter(|m| *m > 0);
        s.cpus = x
            .get("cpus")
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|c| (c * 1e9) as i64)
            .filter(|c| *c > 0);
        s.shm_size = opt_str(x.get("shm_size"))
            .and_then(|v| parse_bytes(&v))
            .filter(|m| *m > 0 && *m != DEFAULT_SHM);
        s.security_opt = sorted(str_list(x.get("security_opt")));
        match x.get("sysctls") {
            Some(Value::Object(o)) => {
                s.sysctls = o.iter().map(|(k, v)| (k.clone(), value_str(v))).collect();
            }
            Some(Value::Array(a)) => {
                for e in a.iter().map(value_str) {
                    let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                    s.sysctls.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        if let Some(Value::Object(o)) = x.get("ulimits") {
            for (k, v) in o {
                let u = match v {
                    Value::Object(m) => UlimitSpec {
                        soft: m.get("soft").and_then(Value::as_i64).unwrap_or(0),
                        hard: m.get("hard").and_then(Value::as_i64).unwrap_or(0),
                    },
                    other => {
                        let n = other.as_i64().unwrap_or(0);
                        UlimitSpec { soft: n, hard: n }
                    }
                };
                s.ulimits.insert(k.clone(), u);
            }
        }
        s.pid = opt_str(x.get("pid")).filter(|p| !p.is_empty());
        s.ipc = opt_str(x.get("ipc")).filter(|p| !p.is_empty() && p != "private");
        s.volumes_from = crate::namespaces::volumes_from(svc);
        s.links = crate::namespaces::links(svc);
        for (k, v) in &svc.environment {
            if let Some(v) = v {
                s.environment.insert(k.clone(), v.clone());
            }
        }
        s.labels = svc
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        s.ports = sorted(
            svc.ports
                .iter()
                .map(|p| {
                    let host_ip = p.host_ip.clone().unwrap_or_default();
                    let published = p.published.clone().unwrap_or_default();
                    format!("{host_ip}:{published}:{}/{}", p.target, p.protocol)
                })
                .collect(),
        );
        for v in &svc.volumes {
            let source = match v.kind.as_str() {
                "volume" => v.source.as_ref().map(|k| {
                    project
                        .volumes
                        .get(k)
                        .map(|vol| vol.name.clone())
                        .unwrap_or_else(|| k.clone())
                }),
                "tmpfs" => None,
                _ => v.source.clone(),
            };
            s.mounts.push(MountSpec {
                kind: v.kind.clone(),
                source,
                target: v.target.clone(),
                read_only: v.read_only,
            });
        }
        for t in str_list(x.get("tmpfs")) {
            let target = t.split(':').next().unwrap_or_default().to_string();
            s.mounts.push(MountSpec {
                kind: "tmpfs".into(),
                source: None,
                target,
                read_only: false,
            });
        }
        let taken: Vec<&str> = s.mounts.iter().map(|m| m.target.as_str()).collect();
        let files = crate::configs::spec_parts(project, service, &taken);
        for (target, source) in files.binds {
            s.mounts.push(MountSpec {
                kind: "bind".into(),
                source: Some(source),
                target,
                read_only: true,
            });
        }
        (s.secrets, s.configs, s.files) = (files.secrets, files.configs, files.files);
        s.mounts.sort_by(|a, b| a.target.cmp(&b.target));
        if svc.network_mode.is_none() {
            for (key, ep) in &svc.networks {
                let name = project
                    .networks
                    .get(key)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| key.clone());
                let ep = ep.clone().unwrap_or_default();
                let mut aliases: BTreeSet<String> = ep.aliases.iter().cloned().collect();
                aliases.insert(service.to_string());
                s.networks.insert(
                    name,
                    EndpointSpec {
                        aliases: aliases.into_iter().collect(),
                        ipv4_address: ep.ipv4_address.clone(),
                        ipv6_address: ep.ipv6_address.clone(),
                    },
                );
            }
        }
        if let Some(h) = &svc.healthcheck {
            s.healthcheck = Some(if h.disable {
                HealthSpec {
                    test: vec!["NONE".into()],
                    ..Default::default()
                }
            } else {
                HealthSpec {
                    test: h.test.clone().unwrap_or_default(),
                    interval: dur_ns(&h.interval),
                    timeout: dur_ns(&h.timeout),
                    retries: h.retries.unwrap_or(0) as i64,
                    start_period: dur_ns(&h.start_period),
                    start_interval: dur_ns(&h.start_interval),
                }
            });
        }
        for (k, v) in x {
            if !APPLIED_EXTRA.contains(&k.as_str())
                && !NOT_IN_SPEC.contains(&k.as_str())
                && !k.starts_with("x-")
            {
                s.unsupported.insert(k.clone(), v.clone());
            }
        }
        if let Some(d) = &svc.deploy {
            let mut d = serde_json::to_value(d).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut d {
                // Replicas are the plan's business, update_config apply's: not the container's.
                o.remove("replicas");
                o.remove("update_config");
                o.remove("rollback_config");
                if !o.is_empty() {
                    s.unsupported.insert("deploy".into(), d);
                }
            }
        }
        s
    }

    /// Fields present in the service that composeops does not apply to the container.
    pub fn unsupported_fields(&self) -> Vec<String> {
        self.unsupported.keys().cloned().collect()
    }

    /// `v1:<sha256 of the canonical JSON>`.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("spec serialises");
        format!("{HASH_VERSION}:{}", hex::encode(Sha256::digest(&json)))
    }

    /// Top-level field names whose values differ, in field order.
    pub fn changed_fields(&self, other: &Spec) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let empty = serde_json::Map::new();
        let (a, b) = (
            a.as_object().unwrap_or(&empty),
            b.as_object().unwrap_or(&empty),
        );
        let mut keys: Vec<&String> = a.keys().collect();
        for k in b.keys() {
            if !a.contains_key(k) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    /// The spec with what the image supplies by default removed, so that a spec read back from
    /// a container (which includes the image's env, cmd, labels…) and a desired spec compare.
    pub fn without_image_defaults(&self, image: &ImageDefaults) -> Spec {
        let mut s = self.clone();
        s.environment.retain(|k, v| image.env.get(k) != Some(v));
        s.expose.retain(|e| !image.exposed.contains(e));
        s.labels.retain(|k, v| image.labels.get(k) != Some(v));
        if s.command.as_ref() == Some(&image.cmd) && s.entrypoint.is_none() {
            s.command = None;
        }
        if s.entrypoint.as_ref() == Some(&image.entrypoint) {
            s.entrypoint = None;
        }
        if s.user.as_deref().unwrap_or("") == image.user {
            s.user = None;
        }
        if s.working_dir.as_deref().unwrap_or("") == image.working_dir {
            s.working_dir = None;
        }
        if s.stop_signal.is_some() && s.stop_signal == image.stop_signal {
            s.stop_signal = None;
        }
        if s.healthcheck.is_some() && s.healthcheck == image.healthcheck {
            s.healthcheck = None;
        }
        s
    }

    /// Reads the spec back from an inspected container (for adoption of containers that do
    /// not carry composeops' labels). Per-replica values (the container's own name and short
    /// id among the aliases, the default hostname) are removed.
    pub fn from_container(c: &ContainerInspectResponse, image_ref: Option<&str>) -> Spec {
        let cfg = c.config.clone().unwrap_or_default();
        let hc = c.host_config.clone().unwrap_or_default();
        let id = c.id.clone().unwrap_or_default();
        let short = &id[..id.len().min(12)];
        let name = c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let mut s = Spec {
            image: image_ref
                .map(str::to_string)
                .or(cfg.image.clone())
                .unwrap_or_default(),
            command: cfg.cmd.clone().filter(|c| !c.is_empty()),
            entrypoint: cfg.entrypoint.clone().filter(|c| !c.is_empty()),
            user: cfg.user.clone().filter(|u| !u.is_empty()),
            working_dir: cfg.working_dir.clone().filter(|u| !u.is_empty()),
            hostname: cfg.hostname.clone().filter(|h| !h.is_empty() && h != short),
            stop_signal: cfg.stop_signal.clone().filter(|u| !u.is_empty()),
            stop_grace_period: cfg.stop_timeout,
            tty: cfg.tty.unwrap_or(false),
            stdin_open: cfg.open_stdin.unwrap_or(false),
            init: hc.init,
            privileged: hc.privileged.unwrap_or(false),
            read_only: hc.readonly_rootfs.unwrap_or(false),
            cap_add: caps(hc.cap_add.clone().unwrap_or_default()),
            cap_drop: caps(hc.cap_drop.clone().unwrap_or_default()),
            extra_hosts: sorted(hc.extra_hosts.clone().unwrap_or_default()),
            dns: hc.dns.clone().unwrap_or_default(),
            restart: hc
                .restart_policy
                .as_ref()
                .and_then(|r| r.name)
                .map(|n| match n {
                    RestartPolicyNameEnum::EMPTY => "no".to_string(),
                    RestartPolicyNameEnum::ON_FAILURE => {
                        let max = hc
                            .restart_policy
                            .as_ref()
                            .and_then(|r| r.maximum_retry_count)
                            .unwrap_or(0);
                        if max > 0 {
                            format!("on-failure:{max}")
                        } else {
                            "on-failure".into()
                        }
                    }
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "no".into()),
            ..Default::default()
        };
        if let Some(l) = &hc.log_config {
            let options: BTreeMap<String, String> =
                l.config.clone().unwrap_or_default().into_iter().collect();
            let driver = l.typ.clone().filter(|t| !t.is_empty());
            if driver.is_some() || !options.is_empty() {
                s.logging = Some(LoggingSpec { driver, options });
            }
        }
        let published: BTreeSet<String> = hc
            .port_bindings
            .clone()
            .unwrap_or_default()
            .into_keys()
            .collect();
        s.expose = sorted(
            cfg.exposed_ports
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !published.contains(p))
                .collect(),
        );
        s.mem_limit = hc.memory.filter(|m| *m > 0);
        s.cpus = hc.nano_cpus.filter(|c| *c > 0);
        s.shm_size = hc.shm_size.filter(|m| *m > 0 && *m != DEFAULT_SHM);
        s.security_opt = sorted(hc.security_opt.clone().unwrap_or_default());
        s.sysctls = hc.sysctls.clone().unwrap_or_default().into_iter().collect();
        for u in hc.ulimits.clone().unwrap_or_default() {
            s.ulimits.insert(
                u.name.unwrap_or_default(),
                UlimitSpec {
                    soft: u.soft.unwrap_or(0),
                    hard: u.hard.unwrap_or(0),
                },
            );
        }
        s.pid = hc.pid_mode.clone().filter(|p| !p.is_empty());
        s.ipc = hc
            .ipc_mode
            .clone()
            .filter(|p| !p.is_empty() && p != "private");
        s.volumes_from = hc.volumes_from.clone().unwrap_or_default();
        for e in cfg.env.unwrap_or_default() {
            let (k, v) = e.split_once('=').unwrap_or((&e, ""));
            s.environment.insert(k.to_string(), v.to_string());
        }
        for (k, v) in cfg.labels.unwrap_or_default() {
            if !k.starts_with("com.docker.compose.") && !k.starts_with("io.composeops.") {
                s.labels.insert(k, v);
            }
        }
        let mut ports = Vec::new();
        for (key, bindings) in hc.port_bindings.clone().unwrap_or_default() {
            let (target, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            for b in bindings.unwrap_or_default() {
                ports.push(format!(
                    "{}:{}:{target}/{proto}",
                    b.host_ip.unwrap_or_default(),
                    b.host_port.unwrap_or_default()
                ));
            }
        }
        s.ports = sorted(ports);
        for m in hc.mounts.clone().unwrap_or_default() {
            let kind = match m.typ {
                Some(MountType::BIND) => "bind",
                Some(MountType::TMPFS) => "tmpfs",
                _ => "volume",
            };
            let source = m
                .source
                .filter(|s| !(s.is_empty() || kind == "volume" && is_anonymous(s)));
            s.mounts.push(MountSpec {
                kind: kind.into(),
                source,
                target: m.target.unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        for b in hc.binds.clone().unwrap_or_default() {
            let parts: Vec<&str> = b.split(':').collect();
            if parts.len() >= 2 {
                let kind = if parts[0].starts_with('/') {
                    "bind"
                } else {
                    "volume"
                };
                let ro = parts
                    .get(2)
                    .map(|o| o.split(',').any(|x| x == "ro"))
                    .unwrap_or(false);
                s.mounts.push(MountSpec {
                    kind: kind.into(),
                    source: Some(parts[0].into()),
                    target: parts[1].into(),
                    read_only: ro,
                });
            }
        }
        for (target, _) in hc.tmpfs.clone().unwrap_or_default() {
            s.mounts.push(MountSpec {
                kind: "tmpfs".into(),
                source: None,
                target,
                read_only: false,
            });
        }
        s.mounts.sort_by(|a, b| a.target.cmp(&b.target));
        let mode = hc.network_mode.clone().unwrap_or_default();
        let nets = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        if mode.starts_with("container:")
            || mode == "host"
            || mode == "none"
            || mode.starts_with("service:")
        {
            s.network_mode = Some(mode);
        } else {
            for (net, ep) in nets {
                let aliases: BTreeSet<String> = ep
                    .aliases
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| {
                        a != &name
                            && a != short
                            && !(a.len() >= 12 && id.starts_with(a.as_str()))
                            && Some(a.as_str()) != cfg.hostname.as_deref()
                    })
                    .collect();
                let ipam = ep.ipam_config.unwrap_or_default();
                s.networks.insert(
                    net,
                    EndpointSpec {
                        aliases: aliases.into_iter().collect(),
                        ipv4_address: ipam.ipv4_address.filter(|a| !a.is_empty()),
                        ipv6_address: ipam.ipv6_address.filter(|a| !a.is_empty()),
                    },
                );
            }
        }
        if let Some(h) = cfg.healthcheck {
            s.healthcheck = Some(health_from_engine(&h));
        }
        s
    }

    /// The create body for replica `number` named `name`. Only the first network is attached at
    /// create time (older engines accept one endpoint); [`Spec::extra_networks`] lists the rest.
    pub fn create_body(
        &self,
        ctx: &CreateContext,
        name: &str,
        anon_volumes: &[(String, String)],
    ) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.extend(ctx.labels.clone());
        labels.insert(LABEL_NUMBER.into(), ctx.number.to_string());
        let env: Vec<String> = self
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = BTreeSet::new();
        for p in &self.ports {
            let (rest, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
            let mut parts = rest.rsplitn(3, ':');
            let target = parts.next().unwrap_or_default();
            let published = parts.next().unwrap_or_default();
            let host_ip = parts.next().unwrap_or_default();
            let key = format!("{target}/{proto}");
            exposed.insert(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .as_mut()
                .unwrap()
                .push(PortBinding {
                    host_ip: Some(host_ip.to_string()),
                    host_port: Some(published.to_string()),
                });
        }
        exposed.extend(self.expose.iter().cloned());
        let mut mounts = Vec::new();
        let mut binds = Vec::new();
        let mut tmpfs = HashMap::new();
        for m in &self.mounts {
            match m.kind.as_str() {
                // Binds create a missing host directory, as Compose's create_host_path does.
                "bind" => binds.push(format!(
                    "{}:{}{}",
                    m.source.clone().unwrap_or_default(),
                    m.target,
                    if m.read_only { ":ro" } else { "" }
                )),
                "tmpfs" => {
                    tmpfs.insert(m.target.clone(), String::new());
                }
                _ => {
                    let source = m.source.clone().or_else(|| {
                        anon_volumes
                            .iter()
                            .find(|(t, _)| t == &m.target)
                            .map(|(_, n)| n.clone())
                    });
                    mounts.push(Mount {
                        target: Some(m.target.clone()),
                        source,
                        typ: Some(MountType::VOLUME),
                        read_only: Some(m.read_only),
                        ..Default::default()
                    })
                }
            }
        }
        // Anonymous volumes of the image (VOLUME) carried over from the old container.
        for (target, vol) in anon_volumes {
            if !self.mounts.iter().any(|m| &m.target == target) {
                mounts.push(Mount {
                    target: Some(target.clone()),
                    source: Some(vol.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                });
            }
        }
        let restart = {
            let (n, max) = self.restart.split_once(':').unwrap_or((&self.restart, "0"));
            let name = match n {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            };
            RestartPolicy {
                name: Some(name),
                maximum_retry_count: max.parse().ok().filter(|m| *m > 0),
            }
        };
        let first_net = self.networks.iter().next();
        let shares = ctx.shares.clone().unwrap_or_default();
        let network_mode = shares
            .network_mode
            .clone()
            .or_else(|| self.network_mode.clone())
            .or_else(|| first_net.map(|(n, _)| n.clone()));
        let networking_config = first_net.map(|(net, ep)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    links: nonempty(&shares.links),
                    ..endpoint(ep, name)
                },
            )])),
        });
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: if exposed.is_empty() {
                None
            } else {
                Some(exposed.into_iter().collect())
            },
            healthcheck: self.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(h.interval),
                timeout: Some(h.timeout),
                retries: Some(h.retries),
                start_period: Some(h.start_period),
                start_interval: if h.start_interval > 0 {
                    Some(h.start_interval)
                } else {
                    None
                },
            }),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            hostname: self.hostname.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_grace_period,
            tty: Some(self.tty),
            open_stdin: Some(self.stdin_open),
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                binds: if binds.is_empty() { None } else { Some(binds) },
                mounts: if mounts.is_empty() {
                    None
                } else {
                    Some(mounts)
                },
                tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
                port_bindings: if port_bindings.is_empty() {
                    None
                } else {
                    Some(port_bindings)
                },
                restart_policy: Some(restart),
                network_mode,
                init: self.init,
                privileged: Some(self.privileged),
                readonly_rootfs: Some(self.read_only),
                cap_add: nonempty(&self.cap_add),
                cap_drop: nonempty(&self.cap_drop),
                extra_hosts: nonempty(&self.extra_hosts),
                dns: nonempty(&self.dns),
                log_config: self
                    .logging
                    .as_ref()
                    .map(|l| bollard::models::HostConfigLogConfig {
                        typ: Some(l.driver.clone().unwrap_or_default()),
                        config: Some(l.options.clone().into_iter().collect()),
                    }),
                memory: self.mem_limit,
                nano_cpus: self.cpus,
                shm_size: self.shm_size,
                security_opt: nonempty(&self.security_opt),
                sysctls: if self.sysctls.is_empty() {
                    None
                } else {
                    Some(self.sysctls.clone().into_iter().collect())
                },
                ulimits: if self.ulimits.is_empty() {
                    None
                } else {
                    Some(
                        self.ulimits
                            .iter()
                            .map(|(n, u)| bollard::models::ResourcesUlimits {
                                name: Some(n.clone()),
                                soft: Some(u.soft),
                                hard: Some(u.hard),
                            })
                            .collect(),
                    )
                },
                pid_mode: shares.pid.clone().or_else(|| self.pid.clone()),
                ipc_mode: shares.ipc.clone().or_else(|| self.ipc.clone()),
                volumes_from: nonempty(&shares.volumes_from),
                links: nonempty(&shares.links),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        }
    }

    /// Networks after the first, connected after create: (network name, endpoint).
    pub fn extra_networks(&self, name: &str) -> Vec<(String, EndpointSettings)> {
        self.networks
            .iter()
            .skip(1)
            .map(|(n, ep)| (n.clone(), endpoint(ep, name)))
            .collect()
    }
}

fn endpoint(ep: &EndpointSpec, container_name: &str) -> EndpointSettings {
    let mut aliases = ep.aliases.clone();
    aliases.push(container_name.to_string());
    let ipam = if ep.ipv4_address.is_some() || ep.ipv6_address.is_some() {
        Some(bollard::models::EndpointIpamConfig {
            ipv4_address: ep.ipv4_address.clone(),
            ipv6_address: ep.ipv6_address.clone(),
            ..Default::default()
        })
    } else {
        None
    };
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: ipam,
        ..Default::default()
    }
}

fn nonempty(v: &[String]) -> Option<Vec<String>> {
    if v.is_empty() {
        None
    } else {
        Some(v.to_vec())
    }
}

/// `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` are the same capability to the engine.
fn caps(v: Vec<String>) -> Vec<String> {
    sorted(
        v.into_iter()
            .map(|c| {
                let c = c.to_ascii_uppercase();
                c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
            })
            .collect(),
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Anonymous volume names are 64 hex digits.
pub fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn health_from_engine(h: &HealthConfig) -> HealthSpec {
    HealthSpec {
        test: h.test.clone().unwrap_or_default(),
        interval: h.interval.unwrap_or(0),
        timeout: h.timeout.unwrap_or(0),
        retries: h.retries.unwrap_or(0),
        start_period: h.start_period.unwrap_or(0),
        start_interval: h.start_interval.unwrap_or(0),
    }
}

/// What an image supplies to its containers by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageDefaults {
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<HealthSpec>,
    #[serde(default)]
    pub exposed: Vec<String>,
}

impl ImageDefaults {
    pub fn from_config(c: &ImageConfig) -> ImageDefaults {
        ImageDefaults {
            env: c
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            labels: c.labels.clone().unwrap_or_default().into_iter().collect(),
            cmd: c.cmd.clone().unwrap_or_default(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            stop_signal: c.stop_signal.clone().filter(|s| !s.is_empty()),
            healthcheck: c.healthcheck.as_ref().map(health_from_engine),
            exposed: c.exposed_ports.clone().unwrap_or_default(),
        }
    }
}

/// Labels and numbering that are the same for every container of one apply of a service.
#[derive(Debug, Clone)]
pub struct CreateContext {
    pub number: u32,
    pub labels: HashMap<String, String>,
    /// The service's container references, resolved (see [`CreateContext::sharing`]).
    pub shares: Option<crate::namespaces::Shares>,
}

impl CreateContext {
    /// Compose's labels (so `docker compose ps/logs/down` see the container) plus composeops'.
    pub fn new(
        project: &Project,
        service: &str,
        spec: &Spec,
        number: u32,
        image_id: &str,
        digest: Option<&str>,
    ) -> Self {
        let svc = &project.services[service];
        let hash = spec.hash();
        let mut l = HashMap::new();
        l.insert(LABEL_PROJECT.into(), project.name.clone());
        l.insert(LABEL_SERVICE.into(), service.into());
        l.insert(LABEL_ONEOFF.into(), "False".into());
        // Compose's own hash: `docker compose up` then leaves this container alone.
        l.insert(
            LABEL_CONFIG_HASH.into(),
            crate::compose_hash::config_hash(project, service),
        );
        l.insert(
            LABEL_WORKING_DIR.into(),
            project.working_dir.display().to_string(),
        );
        l.insert(
            LABEL_CONFIG_FILES.into(),
            project
                .config_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        l.insert(
            LABEL_DEPENDS_ON.into(),
            svc.depends_on
                .iter()
                .map(|(n, d)| format!("{n}:{}:{}", d.condition, d.restart))
                .collect::<Vec<_>>()
                .join(","),
        );
        l.insert(LABEL_IMAGE.into(), image_id.into());
        l.insert(
            LABEL_VERSION.into(),
            crate::compose_hash::COMPOSE_VERSION.into(),
        );
        l.insert(LABEL_SPEC_HASH.into(), hash);
        l.insert(
            LABEL_SPEC.into(),
            serde_json::to_string(spec).expect("spec serialises"),
        );
        if let Some(d) = digest {
            l.insert(LABEL_DIGEST.into(), d.into());
        }
        CreateContext {
            number,
            labels: l,
            shares: None,
        }
    }

    /// With the service's `service:X`, `volumes_from` and `links` resolved to containers: the
    /// create body uses them, the config-hash is Compose's hash of the resolved service (as
    /// Compose computes it), and they are recorded for later plans.
    pub fn sharing(
        mut self,
        project: &Project,
        service: &str,
        shares: crate::namespaces::Shares,
    ) -> Self {
        self.labels.insert(
            LABEL_CONFIG_HASH.into(),
            crate::compose_hash::config_hash_resolved(project, service, Some(&shares)),
        );
        self.labels.insert(
            LABEL_SHARES.into(),
            serde_json::to_string(&shares).expect("shares serialise"),
        );
        self.shares = Some(shares);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::load::test_project as project;

    #[test]
    fn spec_is_stable_and_hash_versioned() {
        let p = project("services:\n  web:\n    image: busybox\n    environment: {A: '1'}\n    ports: ['8080:80']\n");
        let s = Spec::from_service(&p, "web");
        assert_eq!(s.hash(), Spec::from_service(&p, "web").hash());
        assert!(s.hash().starts_with("v1:"));
        assert_eq!(s.ports, vec![":8080:80/tcp"]);
        assert_eq!(s.networks["p_default"].aliases, vec!["web"]);
    }

    #[test]
    fn resource_fields_are_normalised() {
        assert_eq!(parse_bytes("512m"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1GiB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_bytes("100"), Some(100));
        let p = project(
            "services:\n  a:\n    image: busybox\n    mem_limit: 512m\n    cpus: 0.5\n    \
             shm_size: 64m\n    expose: ['3000']\n    ulimits: {nproc: 512}\n    ipc: private\n",
        );
        let s = Spec::from_service(&p, "a");
        assert_eq!(s.mem_limit, Some(536870912));
        assert_eq!(s.cpus, Some(500_000_000));
        assert_eq!(
            (s.shm_size, s.ipc.clone()),
            (None, None),
            "engine defaults fold to None"
        );
        assert_eq!(s.expose, vec!["3000/tcp"]);
        assert_eq!(
            s.ulimits["nproc"],
            UlimitSpec {
                soft: 512,
                hard: 512
            }
        );
        assert!(s.unsupported.is_empty(), "{:?}", s.unsupported);
    }

    #[test]
    fn changed_fields_lists_top_level_fields() {
        let p = project("services:\n  web:\n    image: busybox\n    environment: {A: '1'}\n");
        let a = Spec::from_service(&p, "web");
        let mut b = a.clone();
        b.environment.insert("A".into(), "2".into());
        b.image = "busybox:2".into();
        assert_eq!(a.changed_fields(&b), vec!["image", "environment"]);
    }

    #[test]
    fn configs_and_secrets_are_applied_not_unsupported() {
        let p = project(
            "services:\n  a:\n    image: busybox\n    volumes: ['/srv:/etc/x']\n    \
             configs: [{source: f, target: /etc/x}, {source: f, target: y}, c]\n    \
             secrets: [s]\nconfigs:\n  f: {file: ./f}\n  c: {content: hi}\n\
             secrets:\n  s: {environment: S}\n",
        );
        let s = Spec::from_service(&p, "a");
        assert!(s.unsupported.is_empty(), "{:?}", s.unsupported);
        let mounts: Vec<(&str, &str, bool)> = s
            .mounts
            .iter()
            .map(|m| (m.kind.as_str(), m.target.as_str(), m.read_only))
            .collect();
        // The service's own bind keeps /etc/x; a relative config target is under /.
        assert_eq!(mounts, [("bind", "/etc/x", false), ("bind", "/y", true)]);
        assert_eq!((s.secrets.len(), s.configs.len(), s.files.len()), (1, 3, 2));
    }
}
