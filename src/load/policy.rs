//! `x-composeops` in a service: the update policy (`track`, `cooldown`) and the post-update
//! check (`verify`, `verify_timeout`), read from the merged model before extensions are
//! stripped, and checked here so that a bad range, duration or command is a load error naming
//! the file, line and field, before anything resolves or changes.

use serde_json::Value;

use super::LoadError;
use crate::track::{parse_range, Track, UpdatePolicy};
use crate::verify::Verify;

/// The extension key, in a service.
const KEY: &str = "x-composeops";

/// What a service's `x-composeops` says. Kept beside the service, not in it: Compose drops
/// the key, so none of this is part of the config hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServicePolicy {
    pub update: UpdatePolicy,
    pub verify: Option<Verify>,
}

/// Reads `x-composeops` of every service in the merged (interpolated) model, before the
/// loader strips extensions. Every problem is reported, each naming the service and field;
/// the loader adds the file and line.
pub(crate) fn take_policies(json: &Value) -> Result<Vec<(String, ServicePolicy)>, Vec<LoadError>> {
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

fn parse_policy(ext: &Value, path: &str) -> Result<ServicePolicy, Vec<LoadError>> {
    let Some(map) = ext.as_object() else {
        return Err(vec![LoadError::new(
            "must be a mapping with `track`, `cooldown`, `verify` and/or `verify_timeout`",
        )
        .at_path(path)]);
    };
    let mut policy = ServicePolicy::default();
    let mut verify_timeout = None;
    let mut errors = Vec::new();
    for (k, v) in map {
        let field = format!("{path}.{k}");
        if k == "verify" {
            match verify_command(v, &field) {
                Ok(argv) => {
                    policy.verify = Some(Verify {
                        argv,
                        timeout: crate::verify::DEFAULT_TIMEOUT,
                    })
                }
                Err(e) => errors.push(e),
            }
            continue;
        }
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
                Ok(req) => policy.update.track = Some(Track { range: text, req }),
                Err(m) => errors.push(LoadError::new(m).at_path(&field)),
            },
            "cooldown" => match duration(&text, &field) {
                Ok(d) => {
                    policy.update.cooldown = Some(d);
                    policy.update.cooldown_text = Some(text);
                }
                Err(e) => errors.push(e),
            },
            "verify_timeout" => match duration(&text, &field) {
                Ok(d) if d.is_zero() => errors.push(
                    LoadError::new("must be longer than 0s: write it like 30s or 2m")
                        .at_path(&field),
                ),
                Ok(d) => verify_timeout = Some((d, field)),
                Err(e) => errors.push(e),
            },
            _ => errors.push(
                LoadError::new(format!(
                    "unknown field {k:?}: a service's {KEY} takes `track`, `cooldown`, \
                     `verify` and `verify_timeout`"
                ))
                .at_path(&field),
            ),
        }
    }
    match (&mut policy.verify, verify_timeout) {
        (Some(v), Some((d, _))) => v.timeout = d,
        (None, Some((_, field))) if !map.contains_key("verify") => errors.push(
            LoadError::new("has no `verify` command to bound: add `verify` or remove it")
                .at_path(field),
        ),
        _ => {}
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

fn duration(text: &str, field: &str) -> Result<std::time::Duration, LoadError> {
    crate::duration::parse(text).ok_or_else(|| {
        LoadError::new(format!(
            "invalid duration {text:?}: write it like 24h, 90m, 1h30m or 0s"
        ))
        .at_path(field)
    })
}

/// `verify`: a string, run with `sh -c`, or a list of strings, run as it is (numbers in the
/// list are taken as written, as in `[sleep, 1]`).
fn verify_command(v: &Value, field: &str) -> Result<Vec<String>, LoadError> {
    const WHAT: &str = "must be a command: a string (run with sh -c) or a list of strings";
    match v {
        Value::String(s) if s.trim().is_empty() => {
            Err(LoadError::new(format!("is empty: it {WHAT}")).at_path(field))
        }
        Value::String(s) => Ok(vec!["sh".into(), "-c".into(), s.clone()]),
        Value::Array(items) if items.is_empty() => {
            Err(LoadError::new(format!("is empty: it {WHAT}")).at_path(field))
        }
        Value::Array(items) => {
            let mut argv = Vec::new();
            for (i, it) in items.iter().enumerate() {
                match it {
                    Value::String(s) if i == 0 && s.is_empty() => {
                        return Err(LoadError::new("the program name is empty")
                            .at_path(format!("{field}[0]")))
                    }
                    Value::String(s) => argv.push(s.clone()),
                    Value::Number(n) => argv.push(n.to_string()),
                    _ => {
                        return Err(
                            LoadError::new("must be a string").at_path(format!("{field}[{i}]"))
                        )
                    }
                }
            }
            Ok(argv)
        }
        _ => Err(LoadError::new(WHAT).at_path(field)),
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
        assert_eq!(p.update.track.unwrap().range, "~1.2");
        assert_eq!(p.update.cooldown, Some(Duration::from_secs(86400)));
        assert_eq!(p.verify, None);
        // A bare number is seconds, as Compose reads durations.
        let p = parse_policy(&json!({"cooldown": 3600}), "p").unwrap();
        assert_eq!(p.update.cooldown, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn verify_is_a_shell_string_or_an_argv() {
        let parse = |v: serde_json::Value| parse_policy(&v, "p").unwrap().verify.unwrap();
        let v = parse(json!({"verify": "curl -fsS http://$COMPOSEOPS_PORT_80_TCP/"}));
        assert_eq!(
            v.argv,
            ["sh", "-c", "curl -fsS http://$COMPOSEOPS_PORT_80_TCP/"]
        );
        assert_eq!(v.timeout, crate::verify::DEFAULT_TIMEOUT);
        let v = parse(json!({"verify": ["./smoke", "--retries", 3], "verify_timeout": "2m"}));
        assert_eq!(v.argv, ["./smoke", "--retries", "3"]);
        assert_eq!(v.timeout, Duration::from_secs(120));
        let v = parse(json!({"verify_timeout": 5, "verify": ["true"], "track": "~1"}));
        assert_eq!(
            (v.argv, v.timeout),
            (vec!["true".into()], Duration::from_secs(5))
        );
        let p = parse_policy(&json!({"verify": "true", "cooldown": "1h"}), "p").unwrap();
        assert_eq!(p.update.cooldown, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_verify_values_name_the_field() {
        let what = "must be a command: a string (run with sh -c) or a list of strings";
        let cases = [
            (json!({"verify": 42}), format!("p.verify: {what}")),
            (json!({"verify": {"cmd": "x"}}), format!("p.verify: {what}")),
            (json!({"verify": true}), format!("p.verify: {what}")),
            (json!({"verify": null}), format!("p.verify: {what}")),
            (json!({"verify": " "}), "p.verify: is empty".into()),
            (json!({"verify": []}), "p.verify: is empty".into()),
            (
                json!({"verify": ["curl", {"-f": true}]}),
                "p.verify[1]: must be a string".into(),
            ),
            (
                json!({"verify": ["", "x"]}),
                "p.verify[0]: the program name is empty".into(),
            ),
            (
                json!({"verify": "true", "verify_timeout": "soon"}),
                "p.verify_timeout: invalid duration \"soon\"".into(),
            ),
            (
                json!({"verify": "true", "verify_timeout": "0s"}),
                "p.verify_timeout: must be longer than 0s".into(),
            ),
            (
                json!({"verify_timeout": "10s"}),
                "p.verify_timeout: has no `verify` command".into(),
            ),
            (
                json!({"verfy": "true"}),
                "p.verfy: unknown field \"verfy\": a service's x-composeops takes `track`, \
                 `cooldown`, `verify` and `verify_timeout`"
                    .into(),
            ),
        ];
        for (v, want) in cases {
            let e = parse_policy(&v, "p").unwrap_err();
            let m = e[0].to_string();
            assert!(m.starts_with(&want), "{v}: {m} (want {want})");
            assert_eq!(e.len(), 1, "{v}: {e:?}");
        }
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
        assert!(tracked.services["web"].verify.is_none());
        assert_eq!(p.track.as_ref().unwrap().range, "~1.2");
        assert_eq!(p.cooldown, Some(Duration::from_secs(86400)));
        assert!(plain.services["web"].update.is_none());
    }

    const VERIFIED: &str = "services:\n  web:\n    image: reg.example/app:1.2.0\n    \
                            x-composeops:\n      verify: [./smoke, \"${HOST:-localhost}\"]\n";

    /// Compose does not see the check: the project is the one without it (its spec and
    /// hashes are checked in `spec`'s tests).
    #[test]
    fn the_check_is_loaded_beside_the_service() {
        let (plain, verified) = (
            super::super::test_project(PLAIN),
            super::super::test_project(VERIFIED),
        );
        let v = verified.services["web"].verify.as_ref().unwrap();
        // Interpolated, as every value of the compose file is.
        assert_eq!(v.argv, ["./smoke", "localhost"]);
        assert!(plain.services["web"].verify.is_none());
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::to_value(&verified).unwrap()
        );
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
        let bad = VERIFIED.replace("[./smoke, \"${HOST:-localhost}\"]", "{run: ./smoke}");
        std::fs::write(dir.path().join("compose.yaml"), bad).unwrap();
        let e = super::super::load(&opts).unwrap_err().to_string();
        let want = format!(
            "{}:5: services.web.x-composeops.verify: must be a command",
            file.display()
        );
        assert!(e.contains(&want), "{e}\nwant: {want}");
    }
}
