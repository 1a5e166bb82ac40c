//! Checks of values that Compose refuses while loading: resource names and ports. Running
//! them with the field-name checks means a bad file is refused, every problem at once, before
//! any engine call.

use serde_json::{Map, Value};

use super::canonical::scalar;
use super::error::LoadError;
use super::ports;

/// The top-level sections whose keys are names, with the word the message uses.
const NAMED: [(&str, &str); 5] = [
    ("services", "service"),
    ("networks", "network"),
    ("volumes", "volume"),
    ("secrets", "secret"),
    ("configs", "config"),
];

pub(crate) fn check(top: &Map<String, Value>, errs: &mut Vec<LoadError>) {
    for (kind, what) in NAMED {
        let Some(Value::Object(items)) = top.get(kind) else {
            continue;
        };
        for name in items.keys().filter(|n| !valid_name(n)) {
            errs.push(
                LoadError::new(format!(
                    "invalid {what} name {name:?}: a {what} name may contain only letters \
                     a-z and A-Z, digits, `.`, `_` and `-`"
                ))
                .at_path(format!("{kind}.{name}")),
            );
        }
    }
    if let Some(Value::Object(services)) = top.get("services") {
        for (name, svc) in services {
            if let Some(Value::Array(items)) = svc.get("ports") {
                check_ports(items, &format!("services.{name}.ports"), errs);
            }
        }
    }
}

/// Compose's pattern for these names: `^[a-zA-Z0-9._-]+$`. A name becomes part of container,
/// network and volume names, so `/` or a space would be refused by the engine later anyway.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn check_ports(items: &[Value], path: &str, errs: &mut Vec<LoadError>) {
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let problems = match item {
            Value::String(s) => ports::parse_port(s).err().into_iter().collect(),
            Value::Number(_) => scalar(item)
                .and_then(|s| ports::parse_port(&s).err())
                .into_iter()
                .collect(),
            Value::Object(o) => long_port(o),
            _ => vec![],
        };
        errs.extend(problems.into_iter().map(|m| LoadError::new(m).at_path(&p)));
    }
}

/// The long form. Compose itself checks only `host_ip` here and leaves a bad target,
/// published port or protocol for the engine to refuse at container creation; composeops
/// refuses them now, so that `apply` does not create networks for a stack that cannot start.
fn long_port(o: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = o.get("target").filter(|v| !v.is_null()) {
        let ok = scalar(t)
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|n| n > 0);
        if !ok {
            out.push(format!(
                "invalid target {}: the container port must be a number from 1 to 65535",
                scalar(t).unwrap_or_else(|| t.to_string())
            ));
        }
    }
    if let Some(p) = o.get("published").filter(|v| !v.is_null()) {
        let s = scalar(p).unwrap_or_else(|| p.to_string());
        if ports::port_range(&s).is_none() {
            out.push(format!(
                "invalid published port {s}: a port is a number up to 65535, \
                 a range `start-end` ascends"
            ));
        }
    }
    if let Some(ip) = o.get("host_ip").and_then(Value::as_str) {
        out.extend(ports::check_host_ip(ip).err());
    }
    if let Some(proto) = o.get("protocol").and_then(Value::as_str) {
        out.extend(ports::check_protocol(proto).err());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(top: Value) -> Vec<String> {
        let mut errs = Vec::new();
        check(top.as_object().unwrap(), &mut errs);
        errs.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn names_follow_compose_pattern() {
        let p = problems(json!({
            "services": {"we b/../x": {}, "a.b_c-D": {}, "-x": {}},
            "networks": {"n/1": {}},
            "volumes": {"é": {}}
        }));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("services.we b/../x: invalid service name"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("networks.n/1: invalid network name"),
            "{p:?}"
        );
        assert!(p[2].starts_with("volumes.é: invalid volume name"), "{p:?}");
    }

    #[test]
    fn every_bad_port_is_reported() {
        let p = problems(json!({"services": {"web": {"ports": [
            "9000-8000:80-90", 80, "8080:80", 70000,
            {"target": 70000, "published": "9-8", "host_ip": "1.2.3", "protocol": "xyz"},
            {"target": "80", "published": 8080, "protocol": "UDP"}
        ]}}}));
        assert_eq!(p.len(), 6, "{p:?}");
        assert!(
            p[0].starts_with("services.web.ports[0]: invalid hostPort"),
            "{p:?}"
        );
        assert!(p[1].starts_with("services.web.ports[3]: invalid containerPort: 70000"));
        assert!(p[2].contains("invalid target 70000"), "{p:?}");
        assert!(p[3].contains("invalid published port 9-8"), "{p:?}");
        assert!(p[4].contains("invalid IP address: 1.2.3"), "{p:?}");
        assert!(p[5].contains("invalid proto: xyz"), "{p:?}");
    }
}
