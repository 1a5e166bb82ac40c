//! `compose_hash`: the `com.docker.compose.config-hash` Compose v5 would write for a service.
//!
//! `docker compose up` recreates a container whose config-hash differs from the one it
//! computes, so composeops writes the very same value: then Compose leaves composeops'
//! containers alone, and a stack can pass from one tool to the other without a restart.
//!
//! Compose hashes Go's `json.Marshal` of compose-go's `ServiceConfig` with `build`,
//! `pull_policy`, `scale`, `depends_on`, `profiles` and `deploy.replicas` cleared. The
//! values are those of `config --format json` (which [`Project::to_json`] already matches);
//! what this module adds is Go's byte layout:
//! - struct fields in the order compose-go declares them (not alphabetical), maps sorted;
//! - no spaces, `<` `>` `&` U+2028 U+2029 escaped as `\u003c`…;
//! - `omitempty` does not omit a non-pointer struct (`deploy.resources`, `deploy.placement`
//!   are always `{}`), `expose` entries are strings, `x-*` extensions are not encoded.
//!
//! `network_mode`/`ipc`/`pid: service:X` and `volumes_from` are hashed as Compose hashes
//! them: after their resolution to container ids ([`config_hash_resolved`]), so the hash of a
//! dependent changes whenever the container it shares changes.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::Project;

/// The Compose release whose config-hash this module reproduces, written as the container's
/// `com.docker.compose.version` (Compose only displays it; composeops' own labels say which
/// tool created the container).
pub const COMPOSE_VERSION: &str = "5.6.1";

/// How one JSON value is laid out by Go's encoder.
#[derive(Clone, Copy)]
enum Shape {
    /// A scalar, a list of scalars, or a Go map of scalars (keys sorted).
    Plain,
    /// A Go map (keys sorted) whose values have a shape.
    Map(&'static Shape),
    List(&'static Shape),
    Struct(&'static Struct),
    /// compose-go's `StringOrNumberList`: numbers are encoded as strings.
    Strings,
}

/// A Go struct: its JSON fields in declaration order, and the non-pointer struct fields that
/// `omitempty` cannot omit (encoded as `{}` when unset).
struct Struct {
    fields: &'static [(&'static str, Shape)],
    always: &'static [&'static str],
}

const P: Shape = Shape::Plain;

const fn plain(fields: &'static [(&'static str, Shape)]) -> Struct {
    Struct {
        fields,
        always: &[],
    }
}

static PORT: Struct = plain(&[
    ("name", P),
    ("mode", P),
    ("host_ip", P),
    ("target", P),
    ("published", P),
    ("protocol", P),
    ("app_protocol", P),
]);
static BIND: Struct = plain(&[
    ("selinux", P),
    ("propagation", P),
    ("create_host_path", P),
    ("recursive", P),
]);
static VOLUME_OPTS: Struct = plain(&[("labels", P), ("nocopy", P), ("subpath", P)]);
static TMPFS: Struct = plain(&[("size", P), ("mode", P)]);
static IMAGE_OPTS: Struct = plain(&[("subpath", P)]);
static VOLUME: Struct = plain(&[
    ("type", P),
    ("source", P),
    ("target", P),
    ("read_only", P),
    ("consistency", P),
    ("bind", Shape::Struct(&BIND)),
    ("volume", Shape::Struct(&VOLUME_OPTS)),
    ("tmpfs", Shape::Struct(&TMPFS)),
    ("image", Shape::Struct(&IMAGE_OPTS)),
]);
static HEALTHCHECK: Struct = plain(&[
    ("test", P),
    ("timeout", P),
    ("interval", P),
    ("retries", P),
    ("start_period", P),
    ("start_interval", P),
    ("disable", P),
]);
static UPDATE: Struct = plain(&[
    ("parallelism", P),
    ("delay", P),
    ("failure_action", P),
    ("monitor", P),
    ("max_failure_ratio", P),
    ("order", P),
]);
static DEVICE_REQUEST: Struct = plain(&[
    ("capabilities", P),
    ("driver", P),
    ("count", P),
    ("device_ids", P),
    ("options", P),
]);
static RESOURCE: Struct = plain(&[
    ("cpus", P),
    ("memory", P),
    ("pids", P),
    ("devices", Shape::List(&Shape::Struct(&DEVICE_REQUEST))),
    ("generic_resources", P),
]);
static RESOURCES: Struct = plain(&[
    ("limits", Shape::Struct(&RESOURCE)),
    ("reservations", Shape::Struct(&RESOURCE)),
]);
static RESTART_POLICY: Struct = plain(&[
    ("condition", P),
    ("delay", P),
    ("max_attempts", P),
    ("window", P),
]);
static PLACEMENT: Struct = plain(&[
    ("constraints", P),
    ("preferences", P),
    ("max_replicas_per_node", P),
]);
static DEPLOY: Struct = Struct {
    fields: &[
        ("mode", P),
        ("replicas", P),
        ("labels", P),
        ("update_config", Shape::Struct(&UPDATE)),
        ("rollback_config", Shape::Struct(&UPDATE)),
        ("resources", Shape::Struct(&RESOURCES)),
        ("restart_policy", Shape::Struct(&RESTART_POLICY)),
        ("placement", Shape::Struct(&PLACEMENT)),
        ("endpoint_mode", P),
    ],
    always: &["resources", "placement"],
};
static NETWORK: Struct = plain(&[
    ("aliases", P),
    ("driver_opts", P),
    ("gw_priority", P),
    ("interface_name", P),
    ("ipv4_address", P),
    ("ipv6_address", P),
    ("link_local_ips", P),
    ("mac_address", P),
    ("priority", P),
]);
static LOGGING: Struct = plain(&[("driver", P), ("options", P)]);
static FILE_REF: Struct = plain(&[
    ("source", P),
    ("target", P),
    ("uid", P),
    ("gid", P),
    ("mode", P),
]);
static ULIMIT: Struct = plain(&[("single", P), ("soft", P), ("hard", P)]);
static DEVICE: Struct = plain(&[("source", P), ("target", P), ("permissions", P)]);
static BLKIO: Struct = plain(&[
    ("weight", P),
    ("weight_device", P),
    ("device_read_bps", P),
    ("device_read_iops", P),
    ("device_write_bps", P),
    ("device_write_iops", P),
]);
static CREDENTIAL_SPEC: Struct = plain(&[("config", P), ("file", P), ("registry", P)]);

/// compose-go's `ServiceConfig`, in declaration order. Cleared fields (build, depends_on…)
/// are listed too: they are removed before encoding.
static SERVICE: Struct = plain(&[
    ("profiles", P),
    ("annotations", P),
    ("attach", P),
    ("build", P),
    ("develop", P),
    ("blkio_config", Shape::Struct(&BLKIO)),
    ("cap_add", P),
    ("cap_drop", P),
    ("cgroup_parent", P),
    ("cgroup", P),
    ("cpu_count", P),
    ("cpu_percent", P),
    ("cpu_period", P),
    ("cpu_quota", P),
    ("cpu_rt_period", P),
    ("cpu_rt_runtime", P),
    ("cpus", P),
    ("cpuset", P),
    ("cpu_shares", P),
    ("command", P),
    ("configs", Shape::List(&Shape::Struct(&FILE_REF))),
    ("container_name", P),
    ("credential_spec", Shape::Struct(&CREDENTIAL_SPEC)),
    ("depends_on", P),
    ("deploy", Shape::Struct(&DEPLOY)),
    ("device_cgroup_rules", P),
    ("devices", Shape::List(&Shape::Struct(&DEVICE))),
    ("dns", P),
    ("dns_opt", P),
    ("dns_search", P),
    ("dockerfile", P),
    ("domainname", P),
    ("entrypoint", P),
    ("provider", P),
    ("environment", P),
    ("env_file", P),
    ("expose", Shape::Strings),
    ("extends", P),
    ("external_links", P),
    ("extra_hosts", P),
    ("group_add", P),
    ("gpus", Shape::List(&Shape::Struct(&DEVICE_REQUEST))),
    ("hostname", P),
    ("healthcheck", Shape::Struct(&HEALTHCHECK)),
    ("image", P),
    ("init", P),
    ("ipc", P),
    ("isolation", P),
    ("labels", P),
    ("label_file", P),
    ("links", P),
    ("logging", Shape::Struct(&LOGGING)),
    ("log_driver", P),
    ("log_opt", P),
    ("mem_limit", P),
    ("mem_reservation", P),
    ("memswap_limit", P),
    ("mem_swappiness", P),
    ("mac_address", P),
    ("models", P),
    ("net", P),
    ("network_mode", P),
    ("networks", Shape::Map(&Shape::Struct(&NETWORK))),
    ("oom_kill_disable", P),
    ("oom_score_adj", P),
    ("pid", P),
    ("pids_limit", P),
    ("platform", P),
    ("ports", Shape::List(&Shape::Struct(&PORT))),
    ("privileged", P),
    ("pull_policy", P),
    ("read_only", P),
    ("restart", P),
    ("runtime", P),
    ("scale", P),
    ("secrets", Shape::List(&Shape::Struct(&FILE_REF))),
    ("security_opt", P),
    ("shm_size", P),
    ("stdin_open", P),
    ("stop_grace_period", P),
    ("stop_signal", P),
    ("storage_opt", P),
    ("sysctls", P),
    ("tmpfs", P),
    ("tty", P),
    ("ulimits", Shape::Map(&Shape::Struct(&ULIMIT))),
    ("use_api_socket", P),
    ("user", P),
    ("userns_mode", P),
    ("uts", P),
    ("volume_driver", P),
    ("volumes", Shape::List(&Shape::Struct(&VOLUME))),
    ("volumes_from", P),
    ("working_dir", P),
    ("pre_start", P),
    ("post_start", P),
    ("pre_stop", P),
]);

/// Fields Compose clears before hashing: changing them alone never recreates a container.
const CLEARED: &[&str] = &["build", "pull_policy", "scale", "depends_on", "profiles"];

/// Compose v5's config-hash of `service` (hex sha256, no prefix).
pub fn config_hash(project: &Project, service: &str) -> String {
    config_hash_resolved(project, service, None)
}

/// [`config_hash`] of the service with its container references resolved (`shares`), which is
/// what Compose hashes for a service that uses `service:X` or `volumes_from`.
pub(crate) fn config_hash_resolved(
    project: &Project,
    service: &str,
    shares: Option<&crate::namespaces::Shares>,
) -> String {
    let mut svc = project
        .services
        .get(service)
        .map(crate::model::Service::to_json)
        .unwrap_or(Value::Null);
    crate::namespaces::hash_form(&mut svc, shares);
    hex(&Sha256::digest(hash_input(svc).as_bytes()))
}

/// The exact bytes Compose hashes for one service, from its `config --format json` object.
fn hash_input(mut svc: Value) -> String {
    if let Value::Object(o) = &mut svc {
        o.retain(|k, _| !CLEARED.contains(&k.as_str()) && !k.starts_with("x-"));
        if let Some(Value::Object(d)) = o.get_mut("deploy") {
            d.remove("replicas");
        }
    }
    let mut out = String::new();
    encode(&svc, Shape::Struct(&SERVICE), &mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `v` as Go's `json.Marshal` lays it out for `shape`.
fn encode(v: &Value, shape: Shape, out: &mut String) {
    match (v, shape) {
        (Value::Object(o), Shape::Struct(s)) => {
            out.push('{');
            let mut first = true;
            for (name, field) in s.fields {
                let value = match o.get(*name) {
                    Some(x) => x,
                    None if s.always.contains(name) => &Value::Object(Default::default()),
                    None => continue,
                };
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                encode_str(name, out);
                out.push(':');
                encode(value, *field, out);
            }
            if o.keys().any(|k| !s.fields.iter().any(|(n, _)| n == k)) {
                tracing::debug!(
                    "config-hash: fields unknown to compose-go's layout are not hashed"
                );
            }
            out.push('}');
        }
        (Value::Object(o), _) => {
            let values = match shape {
                Shape::Map(inner) => *inner,
                _ => Shape::Plain,
            };
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_str(k, out);
                out.push(':');
                encode(&o[k], values, out);
            }
            out.push('}');
        }
        (Value::Array(a), _) => {
            let items = match shape {
                Shape::List(inner) => *inner,
                Shape::Strings => Shape::Strings,
                _ => Shape::Plain,
            };
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode(x, items, out);
            }
            out.push(']');
        }
        (Value::Number(n), Shape::Strings) => encode_str(&n.to_string(), out),
        (Value::Number(n), _) => out.push_str(&go_number(n)),
        (Value::String(s), _) => encode_str(s, out),
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Null, _) => out.push_str("null"),
    }
}

/// Go prints a float without a fraction as an integer (`1`, not `1.0`).
fn go_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e21 => {
            format!("{}", f as i64)
        }
        _ => n.to_string(),
    }
}

/// A JSON string as Go escapes it: serde_json's escaping plus Go's HTML-safe characters.
fn encode_str(s: &str, out: &mut String) {
    let quoted = serde_json::to_string(s).expect("a string serialises");
    for c in quoted.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::load::test_project as project;

    /// Measured on Compose v5.6.1: the label `docker compose up` wrote for this service.
    #[test]
    fn matches_the_label_compose_wrote() {
        let p = project(
            "services:\n  a:\n    image: composeops-test/busybox:latest\n    \
             command: [sleep, \"3600\"]\n    environment:\n      X: \"a<b>&c\"\n    \
             labels:\n      z: \"1\"\n      a: \"2\"\n",
        );
        assert_eq!(
            hash_input(p.to_json()["services"]["a"].clone()),
            r#"{"command":["sleep","3600"],"entrypoint":null,"environment":{"X":"a\u003cb\u003e\u0026c"},"image":"composeops-test/busybox:latest","labels":{"a":"2","z":"1"},"networks":{"default":null}}"#
        );
        assert_eq!(
            config_hash(&p, "a"),
            "d039f4437f5016c9c601fe23b980f54e7d931f87eea50a95121650b3cd070cda"
        );
    }

    #[test]
    fn go_layout_of_nested_structs() {
        let svc = serde_json::json!({
            "restart": "always",
            "ports": [{"protocol": "tcp", "target": 80, "mode": "ingress", "published": "8080"}],
            "deploy": {"replicas": 3, "mode": "replicated"},
            "depends_on": {"db": {"condition": "service_started", "required": true}},
            "expose": [3306, "33060"],
            "x-note": "not hashed",
            "command": null,
            "healthcheck": {"interval": "5s", "test": ["CMD", "true"]},
        });
        assert_eq!(
            hash_input(svc),
            r#"{"command":null,"deploy":{"mode":"replicated","resources":{},"placement":{}},"expose":["3306","33060"],"healthcheck":{"test":["CMD","true"],"interval":"5s"},"ports":[{"mode":"ingress","target":80,"published":"8080","protocol":"tcp"}],"restart":"always"}"#
        );
    }

    #[test]
    fn go_escaping_and_numbers() {
        let mut out = String::new();
        encode_str("a\u{2028}\n\"<", &mut out);
        assert_eq!(out, r#""a\u2028\n\"\u003c""#);
        let n = |v: f64| go_number(&serde_json::Number::from_f64(v).unwrap());
        assert_eq!(n(1.0), "1");
        assert_eq!(n(0.25), "0.25");
    }

    /// Labels Compose v5.6.1 wrote for this project, whose vpn container had id `VPN`:
    /// Compose hashes `service:X` and `volumes_from` after resolving them to containers.
    #[test]
    fn shared_namespaces_hash_as_compose_v5_resolves_them() {
        const VPN: &str = "ffaf6156a1d519870de003f736e89c5b2b24ec3a8ead8f229781832668aca89e";
        let p = project(
            "services:
  vpn:
    image: composeops-test/busybox:latest
    command: [sh, -c, \"nc -lk -p 7000 -e echo hi || sleep 3600\"]
    ipc: shareable
  app:
    image: composeops-test/busybox:latest
    command: [sleep, \"3600\"]
    network_mode: service:vpn
    ipc: service:vpn
    pid: service:vpn
  bk:
    image: composeops-test/busybox:latest
    command: [sleep, \"3600\"]
    volumes_from: [vpn:ro, \"container:nsxext:ro\"]
    links: [vpn, \"vpn:tunnel\"]
",
        );
        let at = |id: &str| {
            let id = id.to_string();
            move |x: &str| crate::namespaces::Target {
                primary_id: (x == "vpn").then(|| id.clone()),
                names: vec!["p-vpn-1".into()],
            }
        };
        let resolved = |svc: &str, id: &str| {
            let s = crate::namespaces::resolve(&p, svc, 1, &at(id)).unwrap();
            config_hash_resolved(&p, svc, Some(&s))
        };
        assert_eq!(
            resolved("app", VPN),
            "14146b39300e3ba4e1c88165b972d40555cc73df534725ff9e492903140c5c81"
        );
        assert_eq!(
            resolved("bk", VPN),
            "2434d8d9b94914a457bc1b7f982607611f51b4bc5b2cf41fc4b22ea81aca65a8"
        );
        assert_eq!(
            config_hash(&p, "vpn"),
            "a85c6da21632b54f09d093db382bb0afcdae0f7bd6ba2ccbc9413e9c87c91338"
        );
        // Another container of vpn, another hash: how Compose sees a stale dependent.
        assert_ne!(resolved("app", &"0".repeat(64)), resolved("app", VPN));
    }

    /// Compose v5.6.1 prints no service-level `x-` key in `config --format json` (checked):
    /// the policy changes neither the printed model nor the config-hash.
    #[test]
    fn service_extensions_are_not_hashed() {
        let (plain, tracked) = (
            project("services:\n  web:\n    image: reg.example/app:1.2.0\n"),
            project("services:\n  web:\n    image: reg.example/app:1.2.0\n    x-composeops: {track: \"~1.2\", cooldown: 24h}\n"),
        );
        assert!(!tracked.services["web"].update.is_none());
        assert_eq!(plain.to_json(), tracked.to_json());
        assert_eq!(config_hash(&plain, "web"), config_hash(&tracked, "web"));
    }
}
