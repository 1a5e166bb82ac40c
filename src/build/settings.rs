//! A service's `build:` section, read into what the engine's `/build` takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::model::Project;

/// Name under which a Dockerfile made here (inline, or from outside the context) is sent.
pub(crate) const GENERATED_DOCKERFILE: &str = ".composeops.Dockerfile";

/// Keys of `build:` that reach the classic builder.
const APPLIED: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "target",
    "labels",
    "extra_hosts",
    "network",
    "shm_size",
    "no_cache",
    "pull",
];

/// How one service's image is built.
#[derive(Debug, Clone)]
pub(crate) struct BuildSettings {
    pub project: String,
    pub service: String,
    /// The tag: `image:`, else `<project>-<service>`.
    pub reference: String,
    pub context: PathBuf,
    /// Dockerfile path inside the tar sent.
    pub dockerfile: String,
    /// A Dockerfile that is not a file of the context: added to the tar as
    /// [`GENERATED_DOCKERFILE`].
    pub generated: Option<Vec<u8>>,
    pub inputs: Inputs,
    pub no_cache: bool,
    pub pull: bool,
    /// `build:` keys the classic builder has no option for.
    pub ignored: Vec<String>,
}

/// The build settings that shape the image: hashed into the inputs digest.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Inputs {
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    pub network: Option<String>,
    pub shm_size: Option<i64>,
}

impl BuildSettings {
    /// The settings of `service`, or `None` when it has no `build:` section. Errors are
    /// the user's to fix (a remote context, an unreadable Dockerfile, a bad size).
    pub(crate) fn of(project: &Project, service: &str) -> Result<Option<BuildSettings>, String> {
        let Some(b) = project.services[service].extra.get("build") else {
            return Ok(None);
        };
        let empty = serde_json::Map::new();
        let b = b.as_object().unwrap_or(&empty);
        let s = |k: &str| b.get(k).filter(|v| !v.is_null()).map(value_str);
        let context = s("context").unwrap_or_else(|| ".".into());
        if context.contains("://") || context.starts_with("git@") {
            return Err(format!(
                "service {service}: build.context {context} is remote; composeops builds from a \
                 local directory only (check it out beside the compose file)"
            ));
        }
        let context = PathBuf::from(context);
        let (dockerfile, generated) =
            dockerfile(service, &context, s("dockerfile"), s("dockerfile_inline"))?;
        let shm_size = match s("shm_size") {
            Some(v) => Some(crate::spec::parse_bytes(&v).ok_or_else(|| {
                format!("service {service}: build.shm_size {v:?} is not a size (e.g. 64m)")
            })?),
            None => None,
        };
        let inputs = Inputs {
            dockerfile: dockerfile.clone(),
            args: args(b.get("args")),
            target: s("target"),
            labels: pairs(b.get("labels"), '='),
            extra_hosts: hosts(b.get("extra_hosts")),
            network: s("network"),
            shm_size,
        };
        Ok(Some(BuildSettings {
            project: project.name.clone(),
            service: service.to_string(),
            reference: crate::spec::image_reference(project, service),
            context,
            dockerfile,
            generated,
            inputs,
            no_cache: b.get("no_cache").and_then(Value::as_bool).unwrap_or(false),
            pull: b.get("pull").and_then(Value::as_bool).unwrap_or(false),
            ignored: b
                .keys()
                .filter(|k| !APPLIED.contains(&k.as_str()))
                .cloned()
                .collect(),
        }))
    }

    /// The Dockerfile's path inside the context when it is a file of the context (Docker
    /// sends it even if `.dockerignore` lists it).
    pub(crate) fn keep(&self) -> Option<&str> {
        self.generated.is_none().then_some(self.dockerfile.as_str())
    }
}

/// (path inside the tar, content made here): `dockerfile_inline`, a Dockerfile outside the
/// context, or a file of the context.
fn dockerfile(
    service: &str,
    context: &Path,
    file: Option<String>,
    inline: Option<String>,
) -> Result<(String, Option<Vec<u8>>), String> {
    if let Some(text) = inline {
        return Ok((GENERATED_DOCKERFILE.into(), Some(text.into_bytes())));
    }
    let file = file.unwrap_or_else(|| "Dockerfile".into());
    let path = context.join(&file);
    if let Ok(rel) = path.strip_prefix(context) {
        let rel = rel.to_string_lossy().replace('\\', "/");
        if !rel.split('/').any(|p| p == "..") {
            if !path.is_file() {
                return Err(format!(
                    "service {service}: Dockerfile {} not found (build.dockerfile is relative \
                     to build.context)",
                    path.display()
                ));
            }
            return Ok((rel, None));
        }
    }
    let data = std::fs::read(&path).map_err(|e| {
        format!(
            "service {service}: cannot read Dockerfile {}: {e}",
            path.display()
        )
    })?;
    Ok((GENERATED_DOCKERFILE.into(), Some(data)))
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `args`: a value-less arg takes the value of the variable in composeops' environment, and
/// is left out when that is unset, as Compose does.
fn args(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let val = match v {
                    Value::Null => std::env::var(k).ok(),
                    v => Some(value_str(v)),
                };
                if let Some(val) = val {
                    out.insert(k.clone(), val);
                }
            }
        }
        Some(Value::Array(a)) => {
            for item in a.iter().map(value_str) {
                match item.split_once('=') {
                    Some((k, v)) => {
                        out.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        if let Ok(v) = std::env::var(&item) {
                            out.insert(item, v);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// A list of `k<sep>v` or a mapping.
fn pairs(v: Option<&Value>, sep: char) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), value_str(v))).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(value_str)
            .map(|s| match s.split_once(sep) {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s, String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `extra_hosts` as the engine takes them: `host:ip`, sorted.
fn hosts(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}:{}", value_str(v)))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(value_str)
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_build_section() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("web.Dockerfile"), "FROM scratch\n").unwrap();
        let yaml = format!(
            "name: p\nservices:\n  web:\n    build:\n      context: {}\n      dockerfile: web.Dockerfile\n      \
             args: [A=1, B]\n      labels: {{x: y}}\n      extra_hosts: [\"h=1.2.3.4\"]\n      \
             shm_size: 64m\n      target: t\n      cache_from: [a]\n",
            d.path().display()
        );
        let p = crate::load::test_project(&yaml);
        let s = BuildSettings::of(&p, "web").unwrap().unwrap();
        assert_eq!(s.reference, "p-web");
        assert_eq!(s.dockerfile, "web.Dockerfile");
        assert_eq!(s.keep(), Some("web.Dockerfile"));
        assert_eq!(s.inputs.args.get("A").map(String::as_str), Some("1"));
        assert_eq!(s.inputs.labels.get("x").map(String::as_str), Some("y"));
        assert_eq!(s.inputs.extra_hosts, ["h:1.2.3.4"]);
        assert_eq!(s.inputs.shm_size, Some(64 * 1024 * 1024));
        assert_eq!(s.ignored, ["cache_from"]);
    }

    #[test]
    fn inline_dockerfile_is_generated() {
        let d = tempfile::tempdir().unwrap();
        let yaml = format!(
            "name: p\nservices:\n  web:\n    image: mine:1\n    build:\n      context: {}\n      \
             dockerfile_inline: \"FROM scratch\\n\"\n",
            d.path().display()
        );
        let p = crate::load::test_project(&yaml);
        let s = BuildSettings::of(&p, "web").unwrap().unwrap();
        assert_eq!(s.reference, "mine:1");
        assert_eq!(s.dockerfile, GENERATED_DOCKERFILE);
        assert_eq!(s.generated.as_deref(), Some(&b"FROM scratch\n"[..]));
        assert_eq!(s.keep(), None);
    }

    #[test]
    fn missing_dockerfile_says_where_it_looked() {
        let d = tempfile::tempdir().unwrap();
        let yaml = format!(
            "name: p\nservices:\n  web:\n    build: {}\n",
            d.path().display()
        );
        let p = crate::load::test_project(&yaml);
        let e = BuildSettings::of(&p, "web").unwrap_err();
        assert!(e.contains("Dockerfile") && e.contains("not found"), "{e}");
    }
}
