//! Compose's canonical form: short syntaxes become long ones, relative paths absolute, durations
//! Go-formatted, `env_file` folded into `environment`, implicit defaults made explicit. The
//! result has the shape `docker compose config --format json` prints.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{json, Map, Value};

use super::dotenv;
use super::error::{LoadError, Result};
use crate::duration;

/// What canonicalisation needs from the rest of the loader.
pub struct Context<'a> {
    pub project_name: &'a str,
    pub working_dir: &'a Path,
    pub environment: &'a IndexMap<String, String>,
    /// Services' `env_file` paths (absolute), tried or read: recorded because they are folded
    /// into `environment` here, so the loaded project no longer names them.
    pub env_files: RefCell<Vec<PathBuf>>,
}

type Obj = Map<String, Value>;

fn err(path: &str, msg: impl Into<String>) -> LoadError {
    LoadError::new(msg).at_path(path)
}

/// A scalar as a string (numbers and booleans as YAML wrote them).
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(go_number(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number as Go's `%v` prints it (Compose stringifies numbers that way): integers as they
/// are, floats in the shortest form with an exponent from 1e+06 up (`1.0` is `1`, `1e20` is
/// `1e+20`).
pub fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        return "0".into();
    }
    if f.fract() == 0.0 && f.abs() < 1e6 {
        return format!("{}", f as i64);
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}`.
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}

/// Byte sizes as Docker reads them (`64m`, `1g`, `512M`, `1.5GiB`): binary units.
pub fn bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

/// Fields that are numbers or booleans in Compose's model but may arrive as strings from
/// interpolation (`replicas: ${N}`): converted as Compose does when it types the model.
fn coerce(o: &mut Obj, key: &str, path: &str, kind: &str) -> Result<()> {
    let Some(Value::String(s)) = o.get(key) else {
        return Ok(());
    };
    let v = match kind {
        "int" => s.trim().parse::<i64>().ok().map(Value::from),
        "float" => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        _ => match s.as_str() {
            "true" | "True" | "TRUE" | "yes" | "on" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" | "no" | "off" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    match v {
        Some(v) => {
            o.insert(key.into(), v);
            Ok(())
        }
        None => Err(err(
            &format!("{path}.{key}"),
            format!(
                "invalid value {s:?}: expected {}",
                match kind {
                    "int" => "an integer",
                    "float" => "a number",
                    _ => "a boolean",
                }
            ),
        )),
    }
}

// Long by design: the services first, collecting the networks and volumes they use; then
// those checked against the top level (default network added, unused ones dropped); then
// secrets and configs. The later steps need what the first one collected.
pub fn canonicalise_project(project: &mut Obj, cx: &Context) -> Result<()> {
    let mut used_networks: Vec<String> = Vec::new();
    let mut network_users: Vec<(String, String)> = Vec::new();
    let mut used_volumes: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(services)) = project.get_mut("services") {
        let names: Vec<String> = services.keys().cloned().collect();
        for name in &names {
            let path = format!("services.{name}");
            let svc = services.get_mut(name).unwrap();
            if svc.is_null() {
                *svc = Value::Object(Obj::new());
            }
            let Value::Object(svc) = svc else {
                return Err(err(&path, "a service must be a mapping"));
            };
            canonicalise_service(svc, &path, cx)?;
            if let Some(Value::Object(n)) = svc.get("networks") {
                used_networks.extend(n.keys().cloned());
                network_users.extend(
                    n.keys()
                        .map(|k| (k.clone(), format!("{path}.networks.{k}"))),
                );
            }
            if let Some(Value::Array(vols)) = svc.get("volumes") {
                for (i, v) in vols.iter().enumerate() {
                    if v.get("type").and_then(Value::as_str) == Some("volume") {
                        if let Some(src) = v.get("source").and_then(Value::as_str) {
                            used_volumes.push((src.to_string(), format!("{path}.volumes[{i}]")));
                        }
                    }
                }
            }
        }
        // Services sorted by name, as Compose prints them.
        let mut all: Vec<(String, Value)> = std::mem::take(services).into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        services.extend(all);
    }
    let networks = project.entry("networks").or_insert_with(|| json!({}));
    if networks.is_null() {
        *networks = json!({});
    }
    if let Value::Object(nets) = networks {
        if used_networks.iter().any(|n| n == "default") && !nets.contains_key("default") {
            nets.insert("default".into(), json!({}));
        }
        for (n, user) in &network_users {
            if !nets.contains_key(n) {
                return Err(LoadError::new(format!(
                    "refers to undefined network {n:?}: define it under the top-level `networks:`"
                ))
                .at_path(user.clone()));
            }
        }
        // Compose's `config` leaves out the networks no enabled service uses.
        nets.retain(|k, _| used_networks.contains(k));
        canonicalise_resources(nets, "networks", cx)?;
        if nets.is_empty() {
            project.remove("networks");
        }
    }
    if let Some(Value::Object(vols)) = project.get_mut("volumes") {
        vols.retain(|k, _| used_volumes.iter().any(|(u, _)| u == k));
    }
    for (v, path) in &used_volumes {
        let defined = project.get("volumes").and_then(|x| x.get(v)).is_some();
        if !defined {
            return Err(LoadError::new(format!(
                "refers to undefined volume {v:?}: define it under the top-level `volumes:`"
            ))
            .at_path(path.clone()));
        }
    }
    if matches!(project.get("volumes"), Some(Value::Object(m)) if m.is_empty()) {
        project.remove("volumes");
    }
    super::file_refs::check_defined(project)?;
    super::file_refs::drop_unused(project);
    for kind in ["volumes", "secrets", "configs"] {
        if let Some(v) = project.get_mut(kind) {
            if v.is_null() {
                *v = json!({});
            }
            if let Value::Object(m) = v {
                canonicalise_resources(m, kind, cx)?;
            }
        }
    }
    Ok(())
}

/// Top-level networks/volumes/secrets/configs: the engine name, `external` as a boolean.
fn canonicalise_resources(items: &mut Obj, kind: &str, cx: &Context) -> Result<()> {
    for (key, v) in items.iter_mut() {
        let path = format!("{kind}.{key}");
        if v.is_null() {
            *v = json!({});
        }
        let Value::Object(o) = v else {
            return Err(err(&path, format!("{kind} entries must be mappings")));
        };
        let external = match o.get("external") {
            Some(Value::Bool(b)) => *b,
            // Legacy `external: {name: x}`.
            Some(Value::Object(e)) => {
                if let Some(n) = e.get("name").cloned() {
                    o.insert("name".into(), n);
                }
                true
            }
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            None | Some(Value::Null) => false,
            Some(_) => return Err(err(&format!("{path}.external"), "must be a boolean")),
        };
        if external {
            o.insert("external".into(), Value::Bool(true));
        } else {
            o.remove("external");
        }
        if !o.contains_key("name") || o["name"].is_null() {
            let name = if external {
                key.clone()
            } else {
                format!("{}_{key}", cx.project_name)
            };
            o.insert("name".into(), Value::String(name));
        }
        if let Some(l) = o.get_mut("labels") {
            *l = Value::Object(key_value_map(l, &format!("{path}.labels"))?);
        }
        match kind {
            "networks" => {
                o.entry("ipam").or_insert_with(|| json!({}));
            }
            "secrets" | "configs" => {
                if let Some(Value::String(f)) = o.get("file") {
                    let abs = absolute(cx.working_dir, f);
                    o.insert("file".into(), Value::String(abs));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// Long by design: a list of one canonical form per service field, a few lines each.
fn canonicalise_service(svc: &mut Obj, path: &str, cx: &Context) -> Result<()> {
    svc.remove("extends");
    for field in ["command", "entrypoint"] {
        let p = format!("{path}.{field}");
        let v = svc.remove(field).unwrap_or(Value::Null);
        svc.insert(field.into(), command_list(&v, &p)?);
    }
    canonicalise_environment(svc, path, cx)?;
    if let Some(l) = svc.get_mut("labels") {
        *l = Value::Object(key_value_map(l, &format!("{path}.labels"))?);
    }
    if let Some(v) = svc.get_mut("ports") {
        *v = Value::Array(ports(v, &format!("{path}.ports"))?);
    }
    if let Some(v) = svc.get_mut("volumes") {
        *v = Value::Array(volumes(v, &format!("{path}.volumes"), cx)?);
    }
    if let Some(v) = svc.get_mut("healthcheck") {
        healthcheck(v, &format!("{path}.healthcheck"))?;
    }
    canonicalise_depends_on(svc, path)?;
    super::file_refs::canonicalise(svc, path)?;
    let net_path = format!("{path}.networks");
    match svc.get_mut("networks") {
        Some(v) if !v.is_null() => *v = Value::Object(service_networks(v, &net_path)?),
        _ => {
            svc.remove("networks");
            if !svc.contains_key("network_mode") {
                svc.insert("networks".into(), json!({"default": null}));
            }
        }
    }
    // `scale` stays where it was written, as Compose prints it; both it and
    // `deploy.replicas` may be given only with the same value.
    coerce(svc, "scale", path, "int")?;
    if let Some(Value::Object(d)) = svc.get_mut("deploy") {
        let dp = format!("{path}.deploy");
        coerce(d, "replicas", &dp, "int")?;
        for cfg in ["update_config", "rollback_config"] {
            if let Some(Value::Object(u)) = d.get_mut(cfg) {
                for k in ["delay", "monitor"] {
                    normalise_duration(u, k);
                }
                coerce(u, "parallelism", &format!("{dp}.{cfg}"), "int")?;
                coerce(u, "max_failure_ratio", &format!("{dp}.{cfg}"), "float")?;
            }
        }
        if let Some(Value::Object(r)) = d.get_mut("resources") {
            for part in ["limits", "reservations"] {
                if let Some(Value::Object(l)) = r.get_mut(part) {
                    let lp = format!("{dp}.resources.{part}");
                    coerce(l, "cpus", &lp, "float")?;
                    if let Some(m) = l.get("memory").and_then(scalar) {
                        let b = bytes(&m).ok_or_else(|| {
                            err(&format!("{lp}.memory"), format!("invalid size {m:?}"))
                        })?;
                        l.insert("memory".into(), json!(b.to_string()));
                    }
                }
            }
        }
        if let Some(Value::Object(r)) = d.get_mut("restart_policy") {
            for k in ["delay", "window"] {
                normalise_duration(r, k);
            }
        }
        if let Some(l) = d.get_mut("labels") {
            *l = Value::Object(key_value_map(l, &format!("{path}.deploy.labels"))?);
        }
    }
    normalise_duration(svc, "stop_grace_period");
    if let Some(Value::String(p)) = svc.get("pull_policy") {
        // `if_not_present` is the older spelling of `missing`.
        if p == "if_not_present" {
            svc.insert("pull_policy".into(), json!("missing"));
        }
    }
    if let Some(b) = svc.get_mut("build") {
        build(b, cx)?;
    }
    for field in ["dns", "dns_search", "tmpfs", "env_file"] {
        // A single string is a one-item list.
        if let Some(Value::String(s)) = svc.get(field) {
            let s = s.clone();
            svc.insert(field.into(), json!([s]));
        }
    }
    let replicas = svc
        .get("deploy")
        .and_then(|d| d.get("replicas"))
        .filter(|r| !r.is_null());
    if let (Some(scale), Some(r)) = (svc.get("scale"), replicas) {
        if scale != r {
            return Err(err(
                path,
                "scale and deploy.replicas are both set, to different values",
            ));
        }
    }
    Ok(())
}

fn normalise_duration(o: &mut Obj, key: &str) {
    if let Some(v) = o.get_mut(key) {
        if let Some(s) = scalar(v) {
            *v = Value::String(duration::normalise(&s));
        }
    }
}

/// The part of a command string Compose keeps: its splitter stops at the first shell operator
/// character (`;` `&` `|` `<` `>`) outside quotes and not escaped, and drops a redirection's
/// file-descriptor number (`2>&1`), so `sh -c 'x' 2>&1 | tee` runs as `sh -c x`. The rest is
/// split by shell_words as before.
fn before_shell_operator(s: &str) -> &str {
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut word_start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            c if c.is_whitespace() && !single && !double => word_start = i + c.len_utf8(),
            ';' | '&' | '|' | '<' | '>' if !single && !double => {
                let word = &s[word_start..i];
                let fd = c == '>' && word.starts_with(|d: char| d.is_ascii_digit());
                return if fd { &s[..word_start] } else { &s[..i] };
            }
            _ => {}
        }
    }
    s
}

/// `command`/`entrypoint`: a string is split like a shell would; a list is kept.
fn command_list(v: &Value, path: &str) -> Result<Value> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::String(s) => {
            let words = shell_words::split(before_shell_operator(s))
                .map_err(|e| err(path, format!("cannot split {s:?} into words: {e}")))?;
            Ok(json!(words))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                out.push(Value::String(scalar(x).ok_or_else(|| {
                    err(&format!("{path}[{i}]"), "must be a string")
                })?));
            }
            Ok(Value::Array(out))
        }
        _ => Err(err(path, "must be a string or a list of strings")),
    }
}

/// `KEY=VALUE` list or map into a map of strings (labels, annotations, ...).
fn key_value_map(v: &Value, path: &str) -> Result<Obj> {
    Ok(key_value_opt_map(v, path)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.unwrap_or_default())))
        .collect())
}

/// `KEY=VALUE` list or map into a map whose values may be absent (`KEY` alone, `KEY: null`).
fn key_value_opt_map(v: &Value, path: &str) -> Result<IndexMap<String, Option<String>>> {
    let mut out = IndexMap::new();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, x) in m {
                let val = match x {
                    Value::Null => None,
                    other => Some(scalar(other).ok_or_else(|| {
                        err(
                            &format!("{path}.{k}"),
                            "must be a string, number or boolean",
                        )
                    })?),
                };
                out.insert(k.clone(), val);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let s = scalar(x)
                    .ok_or_else(|| err(&format!("{path}[{i}]"), "must be a KEY=VALUE string"))?;
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(s, None),
                };
            }
        }
        _ => {
            return Err(err(
                path,
                "must be a mapping or a list of KEY=VALUE strings",
            ))
        }
    }
    Ok(out)
}

fn canonicalise_environment(svc: &mut Obj, path: &str, cx: &Context) -> Result<()> {
    let mut env: IndexMap<String, Option<String>> = IndexMap::new();
    if let Some(files) = svc.remove("env_file") {
        let entries = match files {
            Value::Array(a) => a,
            Value::Null => vec![],
            other => vec![other],
        };
        for (i, e) in entries.iter().enumerate() {
            let p = format!("{path}.env_file[{i}]");
            let (file, required, raw) = match e {
                Value::String(s) => (s.clone(), true, false),
                Value::Object(o) => (
                    o.get("path")
                        .and_then(scalar)
                        .ok_or_else(|| err(&p, "env_file entries need a `path`"))?,
                    o.get("required").and_then(Value::as_bool).unwrap_or(true),
                    o.get("format").and_then(Value::as_str) == Some("raw"),
                ),
                _ => return Err(err(&p, "must be a path or a mapping with `path`")),
            };
            let abs = PathBuf::from(absolute(cx.working_dir, &file));
            cx.env_files.borrow_mut().push(abs.clone());
            let content = match super::input::read_limited(&abs) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(err(&p, format!("env file {} not found", abs.display())));
                }
                Err(e) => {
                    return Err(err(
                        &p,
                        format!("cannot read env file {}: {e}", abs.display()),
                    ));
                }
            };
            let parsed = if raw {
                dotenv::parse_raw(&content, cx.environment)
            } else {
                dotenv::parse(&content, cx.environment)
            }
            .map_err(|e| LoadError::new(format!("env file {}: {e}", abs.display())).at_path(&p))?;
            for (k, v) in parsed {
                let v = v.or_else(|| cx.environment.get(&k).cloned());
                if v.is_some() || !env.contains_key(&k) {
                    env.insert(k, v);
                }
            }
        }
    }
    if let Some(v) = svc.remove("environment") {
        for (k, val) in key_value_opt_map(&v, &format!("{path}.environment"))? {
            let val = val.or_else(|| cx.environment.get(&k).cloned());
            env.insert(k, val);
        }
    }
    if !env.is_empty() {
        // Sorted, as Compose prints it: diffs of the environment stay stable.
        env.sort_keys();
        let m: Obj = env
            .into_iter()
            .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
            .collect();
        svc.insert("environment".into(), Value::Object(m));
    }
    Ok(())
}

fn ports(v: &Value, path: &str) -> Result<Vec<Value>> {
    let Value::Array(items) = v else {
        return Err(err(path, "must be a list"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match item {
            Value::Number(n) => {
                out.push(json!({"mode": "ingress", "target": n, "protocol": "tcp"}))
            }
            Value::String(s) => out.extend(super::ports::parse_port(s).map_err(|m| err(&p, m))?),
            Value::Object(o) => {
                let mut o = o.clone();
                o.entry("mode").or_insert_with(|| json!("ingress"));
                o.entry("protocol").or_insert_with(|| json!("tcp"));
                if let Some(pub_) = o.get("published").and_then(scalar) {
                    o.insert("published".into(), Value::String(pub_));
                }
                if let Some(t) = o.get("target").and_then(scalar) {
                    let t: u32 = t
                        .parse()
                        .map_err(|_| err(&p, "target must be a port number"))?;
                    o.insert("target".into(), json!(t));
                }
                out.push(Value::Object(o));
            }
            _ => return Err(err(&p, "must be a port number, a port string or a mapping")),
        }
    }
    Ok(out)
}

/// Splits `src:dst:mode`, keeping a Windows-style or absolute path whole.
pub fn split_volume_spec(spec: &str) -> Vec<String> {
    spec.split(':').map(str::to_string).collect()
}

fn is_path(source: &str) -> bool {
    source.starts_with('/')
        || source.starts_with('.')
        || source.starts_with('~')
        || source.contains('/')
}

fn volumes(v: &Value, path: &str, cx: &Context) -> Result<Vec<Value>> {
    let Value::Array(items) = v else {
        return Err(err(path, "must be a list"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mut o = match item {
            Value::String(s) => short_volume(s).map_err(|m| err(&p, m))?,
            Value::Object(o) => o.clone(),
            _ => return Err(err(&p, "must be a volume string or a mapping")),
        };
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("volume")
            .to_string();
        o.insert("type".into(), json!(kind));
        // Compose cleans the container path, and a relative host path once joined to the
        // project directory; an absolute host path is kept as written (`/data//x/` stays).
        if let Some(Value::String(t)) = o.get("target").filter(|t| t != &"") {
            let t = clean(Path::new(t));
            o.insert("target".into(), json!(t));
        }
        if kind == "bind" {
            if let Some(Value::String(src)) = o.get("source") {
                if !Path::new(src).is_absolute() {
                    let abs = absolute(cx.working_dir, src);
                    o.insert("source".into(), json!(abs));
                }
            }
            // `create_host_path: true` is the default; Compose does not print it.
            if let Some(Value::Object(b)) = o.get_mut("bind") {
                if b.get("create_host_path") == Some(&Value::Bool(true)) {
                    b.remove("create_host_path");
                }
            }
        }
        if let Some(Value::Object(t)) = o.get_mut("tmpfs") {
            if let Some(size) = t.get("size").and_then(scalar) {
                let bytes = bytes(&size).ok_or_else(|| {
                    err(&format!("{p}.tmpfs.size"), format!("invalid size {size:?}"))
                })?;
                t.insert("size".into(), json!(bytes.to_string()));
            }
        }
        out.push(Value::Object(o));
    }
    Ok(out)
}

fn short_volume(spec: &str) -> std::result::Result<Obj, String> {
    let parts = split_volume_spec(spec);
    let mut o = Obj::new();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, t.clone(), None),
        [s, t] => (Some(s.clone()), t.clone(), None),
        [s, t, m] => (Some(s.clone()), t.clone(), Some(m.clone())),
        _ => return Err(format!("invalid volume specification {spec:?}")),
    };
    let kind = match &source {
        None => "volume",
        Some(s) if is_path(s) => "bind",
        Some(_) => "volume",
    };
    o.insert("type".into(), json!(kind));
    if let Some(s) = &source {
        o.insert("source".into(), json!(s));
    }
    o.insert("target".into(), json!(target));
    let mut bind = Obj::new();
    let mut volume = Obj::new();
    if let Some(mode) = mode {
        for m in mode.split(',') {
            match m {
                "ro" => {
                    o.insert("read_only".into(), json!(true));
                }
                "rw" => {}
                "z" | "Z" => {
                    bind.insert("selinux".into(), json!(m));
                }
                "nocopy" => {
                    volume.insert("nocopy".into(), json!(true));
                }
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    bind.insert("propagation".into(), json!(m));
                }
                // Compose v5 accepts and drops a consistency mode (macOS only) and any mode it
                // does not know (`roz`, a typo for `ro,z` in a popular stack, is no mode at all).
                _ => {}
            }
        }
    }
    if kind == "bind" {
        o.insert("bind".into(), Value::Object(bind));
    } else {
        // A named volume keeps an SELinux label in a `bind` section, as Compose prints it.
        if !bind.is_empty() {
            o.insert("bind".into(), Value::Object(bind));
        }
        o.insert("volume".into(), Value::Object(volume));
    }
    Ok(o)
}

/// A path made absolute against `base`; `~` is the home directory.
pub fn absolute(base: &Path, p: &str) -> String {
    if let Some(rest) = p
        .strip_prefix("~/")
        .or(if p == "~" { Some("") } else { None })
    {
        if let Some(home) = std::env::var_os("HOME") {
            return clean(&PathBuf::from(home).join(rest));
        }
    }
    let path = Path::new(p);
    if path.is_absolute() {
        clean(path)
    } else {
        clean(&base.join(path))
    }
}

/// Lexical clean-up of `.` and `..` (no symlink resolution, like Go's filepath.Clean).
pub fn clean(p: &Path) -> String {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.last(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !matches!(out.last(), Some(Component::RootDir)) {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    let pb: PathBuf = out.iter().collect();
    let s = pb.to_string_lossy().to_string();
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

fn healthcheck(v: &mut Value, path: &str) -> Result<()> {
    let Value::Object(h) = v else {
        return Err(err(path, "must be a mapping"));
    };
    if let Some(t) = h.get("test").cloned() {
        let test = match t {
            Value::String(s) => json!(["CMD-SHELL", s]),
            Value::Array(_) => command_list(&t, &format!("{path}.test"))?,
            Value::Null => Value::Null,
            _ => return Err(err(&format!("{path}.test"), "must be a string or a list")),
        };
        h.insert("test".into(), test);
    }
    for k in ["interval", "timeout", "start_period", "start_interval"] {
        normalise_duration(h, k);
    }
    coerce(h, "retries", path, "int")?;
    Ok(())
}

fn canonicalise_depends_on(svc: &mut Obj, path: &str) -> Result<()> {
    let p = format!("{path}.depends_on");
    let mut deps = Obj::new();
    match svc.remove("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, x) in items.iter().enumerate() {
                let name = x
                    .as_str()
                    .ok_or_else(|| err(&format!("{p}[{i}]"), "must be a service name"))?;
                deps.insert(
                    name.into(),
                    json!({"condition": "service_started", "required": true}),
                );
            }
        }
        Some(Value::Object(m)) => {
            for (name, d) in m {
                let mut d = match d {
                    Value::Object(o) => o,
                    Value::Null => Obj::new(),
                    _ => return Err(err(&format!("{p}.{name}"), "must be a mapping")),
                };
                d.entry("condition")
                    .or_insert_with(|| json!("service_started"));
                d.entry("required").or_insert_with(|| json!(true));
                if d.get("restart") == Some(&Value::Bool(false)) {
                    d.remove("restart");
                }
                deps.insert(name, Value::Object(d));
            }
        }
        Some(_) => return Err(err(&p, "must be a list or a mapping")),
    }
    // Implicit dependencies, as Compose adds them: a shared network namespace or a link
    // restarts with its dependency; `volumes_from` only orders.
    let mut implicit: Vec<(String, bool)> = Vec::new();
    for key in ["network_mode", "ipc", "pid"] {
        if let Some(t) = svc
            .get(key)
            .and_then(Value::as_str)
            .and_then(|m| m.strip_prefix("service:"))
        {
            implicit.push((t.to_string(), key == "network_mode"));
        }
    }
    if let Some(Value::Array(links)) = svc.get("links") {
        for l in links.iter().filter_map(Value::as_str) {
            implicit.push((l.split(':').next().unwrap_or(l).to_string(), true));
        }
    }
    if let Some(Value::Array(vf)) = svc.get("volumes_from") {
        for v in vf.iter().filter_map(Value::as_str) {
            if !v.starts_with("container:") {
                implicit.push((v.split(':').next().unwrap_or(v).to_string(), false));
            }
        }
    }
    for (name, restart) in implicit {
        if !deps.contains_key(&name) {
            let mut d = json!({"condition": "service_started", "required": true});
            if restart {
                d["restart"] = json!(true);
            }
            deps.insert(name, d);
        }
    }
    if !deps.is_empty() {
        svc.insert("depends_on".into(), Value::Object(deps));
    }
    Ok(())
}

fn service_networks(v: &Value, path: &str) -> Result<Obj> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(|s| (s.to_string(), Value::Null))
                    .ok_or_else(|| err(&format!("{path}[{i}]"), "must be a network name"))
            })
            .collect(),
        Value::Object(m) => Ok(m.clone()),
        _ => Err(err(path, "must be a list or a mapping")),
    }
}

fn build(b: &mut Value, cx: &Context) -> Result<()> {
    if let Value::String(s) = b {
        *b = json!({"context": s});
    }
    if let Value::Object(o) = b {
        let ctx = o
            .get("context")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_string();
        // A remote context (git URL) stays as written.
        if !ctx.contains("://") && !ctx.starts_with("git@") {
            o.insert("context".into(), json!(absolute(cx.working_dir, &ctx)));
        }
        o.entry("dockerfile").or_insert_with(|| json!("Dockerfile"));
        if let Some(a) = o.get_mut("args") {
            let m = key_value_opt_map(a, "build.args")?;
            *a = Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
                    .collect(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_string_ends_at_a_shell_operator_as_in_compose() {
        for (given, kept) in [
            ("echo a b 2>&1 c", "echo a b "),
            ("echo a>b", "echo a"),
            ("echo ab2>x", "echo ab2"),
            ("echo a | b ; c", "echo a "),
            ("echo a && b", "echo a "),
            ("echo 'a|b' c", "echo 'a|b' c"),
            ("echo \"x;y\" z", "echo \"x;y\" z"),
            ("echo a\\|b c", "echo a\\|b c"),
        ] {
            assert_eq!(before_shell_operator(given), kept, "{given}");
        }
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(absolute(Path::new("/a/b"), "./c/../d"), "/a/b/d");
        assert_eq!(absolute(Path::new("/a/b"), "../x"), "/a/x");
        assert_eq!(absolute(Path::new("/a/b"), "/abs"), "/abs");
    }
}
