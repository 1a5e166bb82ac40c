//! Validation by field name (the Compose specification's property names; no file is vendored,
//! the names are facts) and the typing of the canonical project.
//!
//! An unknown field is an error, never dropped: a typo such as `imagee:` would otherwise
//! deploy a service without the setting its author meant.

use serde_json::{Map, Value};

use super::error::{LoadError, Result};
use super::yaml::join;
use crate::model::{Project, Service};

const TOP: &[&str] = &[
    "configs", "include", "models", "name", "networks", "secrets", "services", "version", "volumes",
];

pub const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];
const HEALTHCHECK: &[&str] = &[
    "disable",
    "interval",
    "retries",
    "start_interval",
    "start_period",
    "test",
    "timeout",
];
const DEPLOY: &[&str] = &[
    "endpoint_mode",
    "labels",
    "mode",
    "placement",
    "replicas",
    "resources",
    "restart_policy",
    "rollback_config",
    "update_config",
];
const UPDATE_CONFIG: &[&str] = &[
    "delay",
    "failure_action",
    "max_failure_ratio",
    "monitor",
    "order",
    "parallelism",
];
const RESOURCES: &[&str] = &["limits", "reservations"];
const RESTART_POLICY: &[&str] = &["condition", "delay", "max_attempts", "window"];
const PLACEMENT: &[&str] = &["constraints", "max_replicas_per_node", "preferences"];
const BUILD: &[&str] = &[
    "additional_contexts",
    "args",
    "cache_from",
    "cache_to",
    "context",
    "dockerfile",
    "dockerfile_inline",
    "entitlements",
    "extra_hosts",
    "isolation",
    "labels",
    "network",
    "no_cache",
    "no_cache_filter",
    "platforms",
    "privileged",
    "provenance",
    "pull",
    "sbom",
    "secrets",
    "shm_size",
    "ssh",
    "tags",
    "target",
    "ulimits",
];
const LOGGING: &[&str] = &["driver", "options"];
const EXTENDS: &[&str] = &["file", "service"];
const PORT: &[&str] = &[
    "app_protocol",
    "host_ip",
    "mode",
    "name",
    "protocol",
    "published",
    "target",
];
const VOLUME_MOUNT: &[&str] = &[
    "bind",
    "consistency",
    "image",
    "read_only",
    "source",
    "target",
    "tmpfs",
    "type",
    "volume",
];
const BIND: &[&str] = &["create_host_path", "propagation", "recursive", "selinux"];
const VOLUME_OPTS: &[&str] = &["labels", "nocopy", "subpath"];
const TMPFS: &[&str] = &["mode", "size"];
const DEPENDS_ON: &[&str] = &["condition", "required", "restart"];
const SERVICE_NETWORK: &[&str] = &[
    "aliases",
    "driver_opts",
    "gw_priority",
    "interface_name",
    "ipv4_address",
    "ipv6_address",
    "link_local_ips",
    "mac_address",
    "priority",
];
const ENV_FILE: &[&str] = &["format", "path", "required"];
const NETWORK: &[&str] = &[
    "attachable",
    "driver",
    "driver_opts",
    "enable_ipv4",
    "enable_ipv6",
    "external",
    "internal",
    "ipam",
    "labels",
    "name",
];
const VOLUME: &[&str] = &["driver", "driver_opts", "external", "labels", "name"];
const SECRET: &[&str] = &[
    "driver",
    "driver_opts",
    "environment",
    "external",
    "file",
    "labels",
    "name",
    "template_driver",
];
const CONFIG: &[&str] = &[
    "content",
    "environment",
    "external",
    "file",
    "labels",
    "name",
    "template_driver",
];
const INCLUDE: &[&str] = &["env_file", "path", "project_directory"];

/// A service key given no value (`environment:` followed only by comments): Compose's schema
/// refuses it for every field but these, which may be null.
const NULLABLE: &[&str] = &["command", "deploy", "develop", "entrypoint"];

fn check_nulls(s: &Map<String, Value>, path: &str, errs: &mut Errors) {
    for (k, v) in s {
        if !v.is_null() || NULLABLE.contains(&k.as_str()) || k.starts_with("x-") {
            continue;
        }
        let kind = null_kind(k);
        errs.push(
            LoadError::new(format!(
                "has no value: give it {kind}, or remove the key (Compose refuses it too)"
            ))
            .at_path(format!("{path}.{k}")),
        );
    }
}

/// What Compose's schema wants of a service field, in words.
fn null_kind(field: &str) -> &'static str {
    match field {
        "annotations" | "blkio_config" | "credential_spec" | "environment" | "extra_hosts"
        | "healthcheck" | "labels" | "logging" | "provider" | "storage_opt" | "sysctls"
        | "ulimits" => "a mapping",
        "cap_add"
        | "cap_drop"
        | "configs"
        | "depends_on"
        | "device_cgroup_rules"
        | "devices"
        | "dns_opt"
        | "expose"
        | "external_links"
        | "group_add"
        | "links"
        | "models"
        | "networks"
        | "ports"
        | "post_start"
        | "pre_start"
        | "pre_stop"
        | "profiles"
        | "secrets"
        | "security_opt"
        | "volumes"
        | "volumes_from" => "a list",
        "attach" | "init" | "oom_kill_disable" | "privileged" | "read_only" | "stdin_open"
        | "tty" | "use_api_socket" => "true or false",
        "cpu_period" | "cpu_quota" | "cpu_rt_period" | "cpu_rt_runtime" | "cpu_shares" | "cpus"
        | "mem_limit" | "mem_reservation" | "mem_swappiness" | "memswap_limit" | "pids_limit"
        | "scale" | "shm_size" => "a number",
        _ => "a value",
    }
}

/// Collects the problems of one validation pass, so that all of them are reported at once.
type Errors = Vec<LoadError>;

fn check(obj: &Map<String, Value>, allowed: &[&str], path: &str, errs: &mut Errors) {
    for k in obj.keys() {
        if k.starts_with("x-") || allowed.contains(&k.as_str()) {
            continue;
        }
        let hint = allowed
            .iter()
            .map(|a| (strsim::levenshtein(a, k), a))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, a)| format!(" (did you mean `{a}`?)"))
            .unwrap_or_default();
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        errs.push(LoadError::new(format!("unknown field `{k}`{hint}")).at_path(p));
    }
}

/// The mapping at `path`, `None` for null; anything else is recorded as an error.
fn mapping<'a>(
    v: &'a Value,
    path: &str,
    what: &str,
    errs: &mut Errors,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o),
        Value::Null => None,
        _ => {
            errs.push(LoadError::new(format!("{what} must be a mapping")).at_path(path));
            None
        }
    }
}

fn check_sub(obj: &Map<String, Value>, key: &str, allowed: &[&str], path: &str, e: &mut Errors) {
    if let Some(Value::Object(o)) = obj.get(key) {
        check(o, allowed, &format!("{path}.{key}"), e);
    }
}

fn check_list_items(
    obj: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
    path: &str,
    errs: &mut Errors,
) {
    if let Some(Value::Array(items)) = obj.get(key) {
        for (i, it) in items.iter().enumerate() {
            if let Value::Object(o) = it {
                check(o, allowed, &format!("{}[{i}]", join(path, key)), errs);
            }
        }
    }
}

fn check_map_values(
    obj: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
    path: &str,
    errs: &mut Errors,
) {
    if let Some(Value::Object(items)) = obj.get(key) {
        for (k, it) in items {
            if let Value::Object(o) = it {
                check(o, allowed, &format!("{path}.{key}.{k}"), errs);
            }
        }
    }
}

/// Validates the merged model (before canonicalisation, so paths match the files' own
/// structure and lines can be found): field names here, names and ports in [`super::values`].
/// Every problem found is reported, the first one leading.
pub fn validate(model: &Value) -> Result<()> {
    let mut errs = Errors::new();
    let top = mapping(model, "", "the top level", &mut errs)
        .cloned()
        .unwrap_or_default();
    check(&top, TOP, "", &mut errs);
    if let Some(services) = top.get("services") {
        if let Some(services) = mapping(services, "services", "services", &mut errs) {
            for (name, svc) in services {
                let path = format!("services.{name}");
                if let Some(s) = mapping(svc, &path, "a service", &mut errs) {
                    check_service(s, &path, &mut errs);
                }
            }
        }
    }
    for (kind, allowed) in [
        ("networks", NETWORK),
        ("volumes", VOLUME),
        ("secrets", SECRET),
        ("configs", CONFIG),
    ] {
        let Some(v) = top.get(kind) else { continue };
        let Some(items) = mapping(v, kind, kind, &mut errs) else {
            continue;
        };
        for (k, it) in items {
            let p = format!("{kind}.{k}");
            if let Some(o) = mapping(it, &p, "an entry", &mut errs) {
                check(o, allowed, &p, &mut errs);
            }
        }
    }
    check_list_items(&top, "include", INCLUDE, "", &mut errs);
    super::values::check(&top, &mut errs);
    LoadError::all(errs)
}

fn check_service(s: &Map<String, Value>, path: &str, errs: &mut Errors) {
    check(s, SERVICE, path, errs);
    check_nulls(s, path, errs);
    check_sub(s, "healthcheck", HEALTHCHECK, path, errs);
    check_sub(s, "deploy", DEPLOY, path, errs);
    if let Some(Value::Object(d)) = s.get("deploy") {
        let dp = format!("{path}.deploy");
        check_sub(d, "update_config", UPDATE_CONFIG, &dp, errs);
        check_sub(d, "rollback_config", UPDATE_CONFIG, &dp, errs);
        check_sub(d, "resources", RESOURCES, &dp, errs);
        check_sub(d, "restart_policy", RESTART_POLICY, &dp, errs);
        check_sub(d, "placement", PLACEMENT, &dp, errs);
    }
    check_sub(s, "build", BUILD, path, errs);
    check_sub(s, "logging", LOGGING, path, errs);
    check_sub(s, "extends", EXTENDS, path, errs);
    check_list_items(s, "ports", PORT, path, errs);
    check_list_items(s, "volumes", VOLUME_MOUNT, path, errs);
    if let Some(Value::Array(vols)) = s.get("volumes") {
        for (i, v) in vols.iter().enumerate() {
            if let Value::Object(o) = v {
                let vp = format!("{path}.volumes[{i}]");
                check_sub(o, "bind", BIND, &vp, errs);
                check_sub(o, "volume", VOLUME_OPTS, &vp, errs);
                check_sub(o, "tmpfs", TMPFS, &vp, errs);
            }
        }
    }
    check_list_items(s, "env_file", ENV_FILE, path, errs);
    check_map_values(s, "depends_on", DEPENDS_ON, path, errs);
    check_map_values(s, "networks", SERVICE_NETWORK, path, errs);
}

/// Fields of [`Service`] that are typed; the rest go to `Service::extra`.
const TYPED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "volumes",
    "healthcheck",
    "depends_on",
    "labels",
    "restart",
    "networks",
    "network_mode",
    "deploy",
    "pull_policy",
    "profiles",
    "container_name",
];

/// Types the canonical project. Each service is typed on its own so that a type error names
/// the full field path (serde's `flatten` would lose it).
pub fn to_project(mut json: Value) -> Result<Project> {
    let services = match json.get_mut("services") {
        Some(Value::Object(s)) => std::mem::take(s),
        _ => Map::new(),
    };
    let mut project: Project = typed(json, "")?;
    for (name, svc) in services {
        let service = service_from_json(&name, svc)?;
        project.services.insert(name, service);
    }
    Ok(project)
}

/// Types one canonical service (its object in `config --format json`, which is also what
/// [`Service::to_json`] gives back): the typed fields, the rest kept in `extra`.
pub fn service_from_json(name: &str, svc: Value) -> Result<Service> {
    let path = format!("services.{name}");
    let Value::Object(mut fields) = svc else {
        return Err(LoadError::new("a service must be a mapping").at_path(path));
    };
    let extra: Map<String, Value> = fields
        .keys()
        .filter(|k| !TYPED.contains(&k.as_str()))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|k| fields.remove(&k).map(|v| (k, v)))
        .collect();
    let mut service: Service = typed(Value::Object(fields), &path)?;
    service.extra = extra.into_iter().collect();
    Ok(service)
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) => format!("{prefix}.{inner}"),
        };
        LoadError::new(e.into_inner().to_string()).at_path(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_service_field_is_named_with_a_hint() {
        let e = validate(&json!({"services": {"web": {"imagee": "x"}}})).unwrap_err();
        assert_eq!(e.origin.path.as_deref(), Some("services.web.imagee"));
        assert!(e.message.contains("did you mean `image`"), "{}", e.message);
    }

    #[test]
    fn extensions_are_allowed() {
        validate(&json!({"x-a": 1, "services": {"web": {"x-b": 2, "image": "x"}}})).unwrap();
    }
}
