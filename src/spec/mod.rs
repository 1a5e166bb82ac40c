//! `spec`: the normalised per-container spec of a service, its hash, the engine create body
//! built from it, and the same spec read back from an inspected container.
//!
//! The spec is the one thing plan compares. composeops stores its hash (and the spec itself,
//! for readable diffs) in labels on the containers it creates; a container made by
//! `docker compose up` has no such label, so its spec is reconstructed from `inspect` and
//! compared field by field, after removing what the image itself supplies (env, cmd, user…).

use std::collections::BTreeMap;

use bollard::models::{HealthConfig, ImageConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::configs::FileSpec;
use crate::model::{Project, Service};

mod container;
mod create;
mod service;

pub use create::CreateContext;

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

    /// `x-composeops` (here `verify`) is beside the service, not in it: neither the spec nor
    /// Compose's config hash moves when it is added or changed, so nothing is recreated.
    #[test]
    fn x_composeops_changes_neither_hash() {
        let base = "services:\n  web:\n    image: busybox\n    ports: ['8080:80']\n";
        let with = |ext: &str| project(&format!("{base}    x-composeops: {ext}\n"));
        let plain = project(base);
        for p in [
            with("{verify: ./smoke}"),
            with("{verify: [./smoke, --all], verify_timeout: 1m, track: '~1'}"),
        ] {
            assert!(p.services["web"].verify.is_some());
            let spec = |p| Spec::from_service(p, "web").hash();
            assert_eq!(spec(&plain), spec(&p));
            assert_eq!(
                crate::compose_hash::config_hash(&plain, "web"),
                crate::compose_hash::config_hash(&p, "web")
            );
        }
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
