//! Compose's override rules for several files (and for `extends`): maps merge, sequences
//! append, scalars replace; a few fields have rules of their own (listed in `special`), then
//! list fields are de-duplicated by key (`dedup`). `!reset` removes a value, `!override`
//! replaces it whole.

use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

use super::error::{LoadError, Result};
use super::yaml::join;

/// How a path is merged when both sides have it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Rule {
    /// The override replaces the base whole.
    Replace,
    /// Both sides become `KEY=VALUE` sequences, appended (de-duplicated later by key).
    ToSequence,
    /// Both sides become maps (a list entry becomes a key with `default`), merged.
    ToMapping,
    /// `depends_on`: like ToMapping, list entries default to a started, required dependency.
    DependsOn,
    /// `build`: a string is the context.
    Build,
    /// `logging`: merged only when the driver is the same (or unset on one side).
    Logging,
    /// `extra_hosts`: appended without repeating entries.
    ExtraHosts,
}

fn special(path: &[&str]) -> Option<Rule> {
    use Rule::*;
    let svc = |rest: &[&str]| -> Option<Rule> {
        match rest {
            ["command"] | ["entrypoint"] | ["healthcheck", "test"] => Some(Replace),
            ["annotations"]
            | ["dns"]
            | ["dns_opt"]
            | ["dns_search"]
            | ["env_file"]
            | ["label_file"]
            | ["environment"]
            | ["labels"]
            | ["sysctls"]
            | ["tmpfs"]
            | ["build", "args"]
            | ["build", "additional_contexts"]
            | ["build", "labels"]
            | ["deploy", "labels"]
            | ["volumes", _, "volume", "labels"] => Some(ToSequence),
            ["depends_on"] => Some(DependsOn),
            ["networks"] | ["models"] => Some(ToMapping),
            ["build"] => Some(Build),
            ["logging"] => Some(Logging),
            ["extra_hosts"] | ["build", "extra_hosts"] => Some(ExtraHosts),
            _ => None,
        }
    };
    match path {
        ["services", _, rest @ ..] => svc(rest),
        // `extends` merges a service on its own, without the `services.NAME` prefix.
        ["", rest @ ..] => svc(rest),
        ["networks", _, "labels"] | ["volumes", _, "labels"] => Some(ToSequence),
        _ => None,
    }
}

fn tag_is(t: &Tag, name: &str) -> bool {
    t == &Tag::new(name)
}

/// Removes `!reset`/`!override` tags from a value that is not merged onto anything: a reset
/// value disappears, an override value is the plain value.
pub fn strip_tags(v: &mut Value) {
    match v {
        Value::Tagged(t) => {
            if tag_is(&t.tag, "reset") {
                *v = Value::Null;
            } else {
                let mut inner = std::mem::replace(&mut t.value, Value::Null);
                strip_tags(&mut inner);
                *v = inner;
            }
        }
        Value::Mapping(m) => {
            let reset: Vec<Value> = m
                .iter()
                .filter(|(_, x)| matches!(x, Value::Tagged(t) if tag_is(&t.tag, "reset")))
                .map(|(k, _)| k.clone())
                .collect();
            for k in reset {
                m.shift_remove(&k);
            }
            for (_, x) in m.iter_mut() {
                strip_tags(x);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(strip_tags),
        _ => {}
    }
}

/// Merges `over` onto `base` at `path` (segments; `*` matching is done by `special`).
pub fn merge(base: Value, over: Value, path: &[&str]) -> Result<Value> {
    if let Value::Tagged(t) = &over {
        if tag_is(&t.tag, "reset") {
            return Ok(Value::Null);
        }
        if tag_is(&t.tag, "override") {
            let mut inner = t.value.clone();
            strip_tags(&mut inner);
            return Ok(inner);
        }
    }
    let mut base = base;
    strip_tags(&mut base);
    if let Some(rule) = special(path) {
        return merge_special(rule, base, over, path);
    }
    if over.is_null() {
        return Ok(base);
    }
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => merge_mappings(b, o, path).map(Value::Mapping),
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            for mut x in o {
                strip_tags(&mut x);
                b.push(x);
            }
            Ok(Value::Sequence(b))
        }
        (b @ (Value::Mapping(_) | Value::Sequence(_)), _) if !b.is_null() => Err(LoadError::new(
            "cannot override: the value has a different type than in the file it overrides",
        )
        .at_path(path.join("."))),
        (_, mut o) => {
            strip_tags(&mut o);
            Ok(o)
        }
    }
}

pub fn merge_mappings(mut base: Mapping, over: Mapping, path: &[&str]) -> Result<Mapping> {
    for (k, v) in over {
        let key = key_str(&k);
        if let Value::Tagged(t) = &v {
            if tag_is(&t.tag, "reset") {
                base.shift_remove(&k);
                continue;
            }
        }
        let mut next: Vec<&str> = path.to_vec();
        next.push(&key);
        match base.shift_remove(&k) {
            Some(b) => {
                let m = merge(b, v, &next)?;
                base.insert(k, m);
            }
            None => {
                let mut v = v;
                strip_tags(&mut v);
                base.insert(k, v);
            }
        }
    }
    Ok(base)
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn merge_special(rule: Rule, base: Value, mut over: Value, path: &[&str]) -> Result<Value> {
    strip_tags(&mut over);
    match rule {
        Rule::Replace => Ok(over),
        Rule::ToSequence => {
            let mut b = to_sequence(base);
            b.extend(to_sequence(over));
            Ok(Value::Sequence(b))
        }
        Rule::ExtraHosts => {
            let mut b = to_sequence(base);
            for x in to_sequence(over) {
                if !b.contains(&x) {
                    b.push(x);
                }
            }
            Ok(Value::Sequence(b))
        }
        Rule::ToMapping | Rule::DependsOn => {
            let default = (rule == Rule::DependsOn).then(started_dependency);
            let b = to_mapping(base, default.as_ref());
            let o = to_mapping(over, default.as_ref());
            merge_mappings(b, o, path).map(Value::Mapping)
        }
        Rule::Build => {
            let as_map = |v: Value| match v {
                Value::String(s) => {
                    let mut m = Mapping::new();
                    m.insert("context".into(), Value::String(s));
                    m
                }
                Value::Mapping(m) => m,
                _ => Mapping::new(),
            };
            merge_mappings(as_map(base), as_map(over), path).map(Value::Mapping)
        }
        Rule::Logging => {
            let same_driver = match (base.get("driver"), over.get("driver")) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            match (base, over) {
                (Value::Mapping(b), Value::Mapping(o)) if same_driver => {
                    merge_mappings(b, o, path).map(Value::Mapping)
                }
                (_, o) => Ok(o),
            }
        }
    }
}

fn started_dependency() -> Value {
    let mut m = Mapping::new();
    m.insert("condition".into(), "service_started".into());
    m.insert("required".into(), true.into());
    Value::Mapping(m)
}

/// A map or list field as a `KEY=VALUE` sequence (a map is sorted by key, as Compose does).
pub fn to_sequence(v: Value) -> Vec<Value> {
    match v {
        Value::Mapping(m) => {
            let mut out: Vec<String> = Vec::new();
            for (k, val) in m {
                let k = key_str(&k);
                match val {
                    Value::Null => out.push(k),
                    Value::Sequence(items) => {
                        for i in items {
                            out.push(format!("{k}={}", scalar_str(&i)));
                        }
                    }
                    other => out.push(format!("{k}={}", scalar_str(&other))),
                }
            }
            out.sort();
            out.into_iter().map(Value::String).collect()
        }
        Value::Sequence(s) => s,
        Value::String(s) => vec![Value::String(s)],
        Value::Null => vec![],
        other => vec![other],
    }
}

/// A map or list field as a map; list entries become keys with `default` (or null).
pub fn to_mapping(v: Value, default: Option<&Value>) -> Mapping {
    match v {
        Value::Mapping(m) => m,
        Value::Sequence(s) => s
            .into_iter()
            .map(|x| (x, default.cloned().unwrap_or(Value::Null)))
            .collect(),
        _ => Mapping::new(),
    }
}

/// A scalar as Compose prints it inside `KEY=VALUE`.
pub fn scalar_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Compose's de-duplication of list fields after merging: a later entry with the same key
/// replaces the earlier one in place.
pub fn dedup_service(svc: &mut Mapping) -> Result<()> {
    for (field, indexer) in [
        ("annotations", key_value as fn(&Value) -> Option<String>),
        ("cap_add", key_value),
        ("cap_drop", key_value),
        ("dns", key_value),
        ("dns_opt", key_value),
        ("dns_search", key_value),
        ("environment", key_value),
        ("labels", key_value),
        ("links", key_value),
        ("profiles", key_value),
        ("sysctls", key_value),
        ("tmpfs", key_value),
        ("expose", key_value),
        ("env_file", env_file_key),
        ("ports", port_key),
        ("volumes", volume_key),
        ("devices", volume_key),
        ("secrets", |v| mount_key(v, "/run/secrets")),
        ("configs", |v| mount_key(v, "")),
    ] {
        if let Some(Value::Sequence(seq)) = svc.get_mut(field) {
            dedup(seq, indexer);
        }
    }
    if let Some(Value::Mapping(nets)) = svc.get_mut("networks") {
        for (_, n) in nets.iter_mut() {
            if let Some(Value::Sequence(a)) = n.get_mut("aliases") {
                dedup(a, key_value);
            }
        }
    }
    Ok(())
}

fn dedup(seq: &mut Vec<Value>, indexer: fn(&Value) -> Option<String>) {
    let mut out: Vec<Value> = Vec::with_capacity(seq.len());
    let mut keys: Vec<(String, usize)> = Vec::new();
    for v in seq.drain(..) {
        match indexer(&v) {
            Some(k) => {
                if let Some((_, j)) = keys.iter().find(|(x, _)| *x == k) {
                    out[*j] = v;
                } else {
                    keys.push((k, out.len()));
                    out.push(v);
                }
            }
            None => out.push(v),
        }
    }
    *seq = out;
}

fn key_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.split_once('=').map(|(k, _)| k).unwrap_or(s).to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn env_file_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.get("path").map(scalar_str),
        _ => None,
    }
}

fn port_key(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => {
            let get = |k: &str, d: &str| m.get(k).map(scalar_str).unwrap_or_else(|| d.into());
            Some(format!(
                "{}:{}:{}/{}",
                get("host_ip", "0.0.0.0"),
                get("published", ""),
                get("target", ""),
                get("protocol", "tcp")
            ))
        }
        _ => None,
    }
}

/// The mount target of a volume or device entry, short or long syntax.
fn volume_key(v: &Value) -> Option<String> {
    match v {
        Value::Mapping(m) => m.get("target").map(scalar_str),
        Value::String(s) => {
            let parts = super::canonical::split_volume_spec(s);
            match parts.len() {
                1 => Some(parts[0].clone()),
                _ => Some(parts[1].clone()),
            }
        }
        _ => None,
    }
}

fn mount_key(v: &Value, default_dir: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(format!("{default_dir}/{s}")),
        Value::Mapping(m) => match m.get("target") {
            Some(t) => Some(scalar_str(t)),
            None => Some(format!(
                "{default_dir}/{}",
                m.get("source").map(scalar_str)?
            )),
        },
        _ => None,
    }
}

/// Wraps a value with a tag (used by tests and by `extends`, which must not reset).
#[allow(dead_code)]
pub(crate) fn tagged(tag: &str, v: Value) -> Value {
    Value::Tagged(Box::new(TaggedValue {
        tag: Tag::new(tag),
        value: v,
    }))
}

/// Joins a path prefix with a key for error messages.
pub fn path_str(path: &[&str]) -> String {
    path.iter().fold(String::new(), |acc, p| join(&acc, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn maps_merge_sequences_append_scalars_replace() {
        let m = merge(
            y("services: {a: {image: x, cap_add: [A], command: [a, b]}}"),
            y("services: {a: {image: y, cap_add: [B], command: [c]}}"),
            &[],
        )
        .unwrap();
        assert_eq!(
            m,
            y("services: {a: {image: y, cap_add: [A, B], command: [c]}}")
        );
    }

    #[test]
    fn reset_and_override_tags() {
        let m = merge(
            y("services: {a: {image: x, ports: ['80'], environment: {A: '1'}}}"),
            y("services: {a: {ports: !reset [], environment: !override {B: '2'}}}"),
            &[],
        )
        .unwrap();
        assert_eq!(m, y("services: {a: {image: x, environment: {B: '2'}}}"));
    }

    #[test]
    fn environment_becomes_sequence_and_dedups_by_key() {
        let m = merge(
            y("[A=1, B=2]"),
            y("{A: 3}"),
            &["services", "s", "environment"],
        )
        .unwrap();
        let mut svc = Mapping::new();
        svc.insert("environment".into(), m);
        dedup_service(&mut svc).unwrap();
        assert_eq!(svc["environment"], y("[A=3, B=2]"));
    }
}
