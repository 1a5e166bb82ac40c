//! `x-composeops` in a service: the update policy (`track`, `cooldown`), read from the merged
//! model before extensions are stripped, and checked here so that a bad range or duration is a
//! load error naming the file, line and field, before anything resolves or changes.

use serde_json::Value;

use super::LoadError;
use crate::track::{parse_range, Track, UpdatePolicy};

/// The extension key, in a service.
const KEY: &str = "x-composeops";

/// Reads `x-composeops` of every service in the merged (interpolated) model, before the
/// loader strips extensions. Every problem is reported, each naming the service and field;
/// the loader adds the file and line.
pub(crate) fn take_policies(json: &Value) -> Result<Vec<(String, UpdatePolicy)>, Vec<LoadError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let Some(services) = json.get("services").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, svc) in services {
        let Some(ext) = svc.get(KEY) else { continue };
        let path = format!("services.{name}.{KEY}");
        match parse_policy(ext, &path) {
            Ok(p) => out.push((name.clone(), p)),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_policy(ext: &Value, path: &str) -> Result<UpdatePolicy, Vec<LoadError>> {
    let Some(map) = ext.as_object() else {
        return Err(vec![LoadError::new(
            "must be a mapping with `track` and/or `cooldown`",
        )
        .at_path(path)]);
    };
    let mut policy = UpdatePolicy::default();
    let mut errors = Vec::new();
    for (k, v) in map {
        let field = format!("{path}.{k}");
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => {
                errors.push(LoadError::new("must be a string").at_path(&field));
                continue;
            }
        };
        match k.as_str() {
            "track" => match parse_range(&text) {
                Ok(req) => policy.track = Some(Track { range: text, req }),
                Err(m) => errors.push(LoadError::new(m).at_path(&field)),
            },
            "cooldown" => match crate::duration::parse(&text) {
                Some(d) => {
                    policy.cooldown = Some(d);
                    policy.cooldown_text = Some(text);
                }
                None => errors.push(
                    LoadError::new(format!(
                        "invalid duration {text:?}: write it like 24h, 90m, 1h30m or 0s"
                    ))
                    .at_path(&field),
                ),
            },
            _ => errors.push(
                LoadError::new(format!(
                    "unknown field {k:?}: a service's {KEY} takes `track` and `cooldown`"
                ))
                .at_path(&field),
            ),
        }
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                json!({"track": "~1.x.y"}),
                "p.track: invalid semver range \"~1.x.y\"",
            ),
            (json!({"track": ""}), "p.track: empty range"),
            (
                json!({"cooldown": "1 day"}),
                "p.cooldown: invalid duration \"1 day\"",
            ),
            (json!({"cooldown": ["1h"]}), "p.cooldown: must be a string"),
            (json!({"trak": "~1"}), "p.trak: unknown field \"trak\""),
            (json!("~1.2"), "p: must be a mapping"),
        ];
        for (v, want) in cases {
            let e = parse_policy(&v, "p").unwrap_err();
            let m = e[0].to_string();
            assert!(m.starts_with(want), "{m} (want {want})");
        }
        let p = parse_policy(&json!({"track": "~1.2", "cooldown": "24h"}), "p").unwrap();
        assert_eq!(p.track.unwrap().range, "~1.2");
        assert_eq!(p.cooldown, Some(Duration::from_secs(86400)));
        // A bare number is seconds, as Compose reads durations.
        let p = parse_policy(&json!({"cooldown": 3600}), "p").unwrap();
        assert_eq!(p.cooldown, Some(Duration::from_secs(3600)));
    }

    const PLAIN: &str = "services:\n  web:\n    image: reg.example/app:1.2.0\n";
    const TRACKED: &str = "services:\n  web:\n    image: reg.example/app:1.2.0\n    \
                           x-composeops:\n      track: \"~1.2\"\n      cooldown: 24h\n";

    #[test]
    fn the_policy_is_loaded_beside_the_service() {
        let (plain, tracked) = (
            super::super::test_project(PLAIN),
            super::super::test_project(TRACKED),
        );
        let p = &tracked.services["web"].update;
        assert_eq!(p.track.as_ref().unwrap().range, "~1.2");
        assert_eq!(p.cooldown, Some(Duration::from_secs(86400)));
        assert!(plain.services["web"].update.is_none());
    }

    #[test]
    fn load_errors_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let bad = TRACKED.replace("~1.2", "~1.x.y").replace("24h", "one day");
        std::fs::write(dir.path().join("compose.yaml"), bad).unwrap();
        let opts = super::super::LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        };
        let e = super::super::load(&opts).unwrap_err().to_string();
        let file = dir.path().join("compose.yaml");
        let want = [
            format!(
                "{}:5: services.web.x-composeops.track: invalid semver range",
                file.display()
            ),
            format!(
                "{}:6: services.web.x-composeops.cooldown: invalid duration",
                file.display()
            ),
        ];
        for w in want {
            assert!(e.contains(&w), "{e}\nwant: {w}");
        }
    }
}
