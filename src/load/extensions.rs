//! `x-` extension fields. Compose keeps the top-level ones in its canonical model (`config`
//! prints them, so a file written from `config` keeps its anchors' blocks) and drops those
//! nested in services, networks, volumes, secrets and configs.

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Removes every `x-` key from `json` and returns the top-level ones, in the form Compose's
/// `config --format json` prints them: keys of every nested mapping sorted (Compose's model
/// holds them in Go maps), and a YAML date as an RFC 3339 timestamp.
pub(crate) fn take_extensions(json: &mut Value) -> IndexMap<String, Value> {
    let Some(top) = json.as_object_mut() else {
        return IndexMap::new();
    };
    let keys: Vec<String> = top.keys().filter(|k| is_extension(k)).cloned().collect();
    let mut out: IndexMap<String, Value> = keys
        .into_iter()
        .filter_map(|k| top.remove(&k).map(|v| (k, printed(v))))
        .collect();
    out.sort_keys();
    for kind in ["services", "networks", "volumes", "secrets", "configs"] {
        if let Some(Value::Object(items)) = top.get_mut(kind) {
            for (_, it) in items.iter_mut() {
                if let Some(o) = it.as_object_mut() {
                    strip(o);
                    for sub in ["healthcheck", "deploy", "build", "logging"] {
                        if let Some(Value::Object(s)) = o.get_mut(sub) {
                            strip(s);
                        }
                    }
                }
            }
        }
    }
    out
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

fn strip(o: &mut Map<String, Value>) {
    o.retain(|k, _| !is_extension(k));
}

/// One extension value as Compose prints it.
fn printed(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> =
                m.into_iter().map(|(k, v)| (k, printed(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(printed).collect()),
        Value::String(s) => Value::String(rfc3339_date(&s).unwrap_or(s)),
        other => other,
    }
}

/// The loader reads a plain YAML date (`2024-01-02`) as Compose's parser does, a timestamp,
/// and stores it in the text form Go prints inside strings (`2024-01-02 00:00:00 +0000 UTC`).
/// Extensions stay typed in Compose's output, and JSON prints a timestamp as RFC 3339.
fn rfc3339_date(s: &str) -> Option<String> {
    let date = s.strip_suffix(" 00:00:00 +0000 UTC")?;
    let b = date.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    shaped.then(|| format!("{date}T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_top_level_sorted_and_drops_nested() {
        let mut j = json!({
            "x-b": {"z": 1, "a": {"d": 2, "c": "2024-01-02 00:00:00 +0000 UTC"}},
            "x-a": null,
            "services": {"web": {"image": "i", "x-s": 1, "deploy": {"x-d": 1}}},
            "networks": {"n": {"x-n": 1}}
        });
        let ext = take_extensions(&mut j);
        assert_eq!(ext.keys().collect::<Vec<_>>(), ["x-a", "x-b"]);
        assert_eq!(
            serde_json::to_string(&ext["x-b"]).unwrap(),
            r#"{"a":{"c":"2024-01-02T00:00:00Z","d":2},"z":1}"#
        );
        assert_eq!(
            j,
            json!({"services": {"web": {"image": "i", "deploy": {}}}, "networks": {"n": {}}})
        );
    }
}
