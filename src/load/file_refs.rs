//! A service's `configs:` and `secrets:` in Compose's canonical form, and the check that each
//! names a top-level one (`docker compose config` refuses a reference to an undefined one).
//!
//! Compose prints each entry as a mapping `{source, target, uid, gid, mode}` in that order:
//! a secret's missing target becomes `/run/secrets/<source>` (a config's stays unset), and a
//! mode becomes an octal string (`0440`). Its config-hash is of that form, so
//! `composeops config` and the config-hash written on containers must match it.

use serde_json::{json, Map, Value};

use super::canonical::scalar;
use super::error::{LoadError, Result};

type Obj = Map<String, Value>;

const FIELDS: [&str; 5] = ["source", "target", "uid", "gid", "mode"];

/// Canonicalises `svc.configs` and `svc.secrets` (`path` is the service's field path).
pub(super) fn canonicalise(svc: &mut Obj, path: &str) -> Result<()> {
    for kind in ["configs", "secrets"] {
        let Some(Value::Array(items)) = svc.get_mut(kind) else {
            continue;
        };
        for (i, item) in items.iter_mut().enumerate() {
            let at = format!("{path}.{kind}[{i}]");
            let mut o = match std::mem::take(item) {
                Value::String(s) => Obj::from_iter([("source".to_string(), json!(s))]),
                Value::Object(o) => o,
                _ => return Err(LoadError::new("must be a name or a mapping").at_path(at)),
            };
            let Some(source) = o.get("source").and_then(Value::as_str).map(str::to_string) else {
                return Err(LoadError::new("`source` is required").at_path(at));
            };
            if kind == "secrets" && o.get("target").is_none_or(Value::is_null) {
                o.insert("target".into(), json!(format!("/run/secrets/{source}")));
            }
            if let Some(m) = o.get("mode").filter(|m| !m.is_null()) {
                let mode = octal_mode(m).ok_or_else(|| {
                    LoadError::new("must be an octal mode").at_path(format!("{at}.mode"))
                })?;
                o.insert("mode".into(), json!(mode));
            }
            for k in ["uid", "gid", "target"] {
                if let Some(v) = o.get(k).filter(|v| !v.is_null()).and_then(scalar) {
                    o.insert(k.into(), json!(v));
                }
            }
            *item = Value::Object(ordered(o));
        }
    }
    Ok(())
}

/// `0440` (read by YAML as the number 288), `"0440"`, `"440"`: the string `0440`.
fn octal_mode(v: &Value) -> Option<String> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0o"), 8).ok()?,
        _ => return None,
    };
    Some(format!("0{n:o}"))
}

/// Compose's field order, then anything else (extensions) as written.
fn ordered(mut o: Obj) -> Obj {
    let mut out = Obj::new();
    for k in FIELDS {
        if let Some(v) = o.shift_remove(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v);
        }
    }
    out.extend(o);
    out
}

/// The top-level names a list of references uses (`[name, {source: name}, …]`), with their
/// index: a service's `configs`/`secrets` (canonical: mappings) or its build's `secrets`.
fn sources(list: Option<&Value>) -> impl Iterator<Item = (usize, &str)> {
    let items = match list {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    items.iter().enumerate().filter_map(|(i, item)| {
        let name = match item {
            Value::String(s) => Some(s.as_str()),
            _ => item.get("source").and_then(Value::as_str),
        };
        name.map(|n| (i, n))
    })
}

/// Each service's configs and secrets name a top-level one.
pub(super) fn check_defined(project: &Obj) -> Result<()> {
    let Some(Value::Object(services)) = project.get("services") else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for (name, svc) in services {
        for (kind, one) in [("configs", "config"), ("secrets", "secret")] {
            let defined = project.get(kind).and_then(Value::as_object);
            for (i, source) in sources(svc.get(kind)) {
                if !defined.is_some_and(|d| d.contains_key(source)) {
                    errors.push(
                        LoadError::new(format!(
                            "service {name:?} refers to undefined {one} {source:?}: define it \
                             under the top-level `{kind}:`"
                        ))
                        .at_path(format!("services.{name}.{kind}[{i}]")),
                    );
                }
            }
        }
    }
    LoadError::all(errors)
}

/// Compose's `config` leaves out the secrets and configs no enabled service uses (a service's
/// `secrets` and `configs`, and its build's `secrets`), as it does networks and volumes.
pub(super) fn drop_unused(project: &mut Obj) {
    let name = |(_, n): (usize, &str)| n.to_string();
    let (mut secrets, mut configs) = (Vec::new(), Vec::new());
    if let Some(Value::Object(services)) = project.get("services") {
        for svc in services.values() {
            let build = svc.get("build").and_then(|b| b.get("secrets"));
            secrets.extend(sources(svc.get("secrets")).chain(sources(build)).map(name));
            configs.extend(sources(svc.get("configs")).map(name));
        }
    }
    for (kind, used) in [("secrets", secrets), ("configs", configs)] {
        if let Some(Value::Object(m)) = project.get_mut(kind) {
            m.retain(|k, _| used.contains(k));
            if m.is_empty() {
                project.remove(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_take_composes_long_form() {
        let mut svc = json!({
            "secrets": ["pw", {"source": "a", "mode": 288, "uid": 5}, {"source": "b", "target": "x"}],
            "configs": ["c", {"mode": "440", "target": "/etc/c", "source": "c"}],
        });
        canonicalise(svc.as_object_mut().unwrap(), "services.s").unwrap();
        assert_eq!(
            svc,
            json!({
                "secrets": [
                    {"source": "pw", "target": "/run/secrets/pw"},
                    {"source": "a", "target": "/run/secrets/a", "uid": "5", "mode": "0440"},
                    {"source": "b", "target": "x"},
                ],
                "configs": [{"source": "c"}, {"source": "c", "target": "/etc/c", "mode": "0440"}],
            })
        );
        let keys: Vec<&String> = svc["configs"][1].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["source", "target", "mode"],
            "compose-go's field order"
        );
    }

    #[test]
    fn undefined_references_are_refused_with_their_field() {
        let p = json!({
            "services": {"s": {"configs": [{"source": "c"}], "secrets": [{"source": "nope"}]}},
            "configs": {"c": {"content": "x"}},
        });
        let e = check_defined(p.as_object().unwrap()).unwrap_err();
        assert!(e.message.contains("undefined secret \"nope\""), "{e}");
        assert_eq!(e.origin.path.as_deref(), Some("services.s.secrets[0]"));
        assert!(e.more.is_empty());
    }
}
