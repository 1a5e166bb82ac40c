//! `configs`: the `configs:` and `secrets:` a service mounts, put into its containers as
//! Docker Compose v5 puts them at run time.
//!
//! A `file:` source is bind-mounted read-only (secrets under `/run/secrets/`, configs under
//! `/`); its `uid`, `gid` and `mode` are ignored, as Compose ignores them. A `content:` or
//! `environment:` source is written into the container between create and start, through
//! the engine's archive upload, with its `uid`, `gid` and `mode` (default `0444`, root). An
//! empty value writes nothing, as in Compose.
//!
//! Compose's config-hash covers the service's references, not what they hold: Compose does not
//! recreate a container when a file, a `content:` or a variable changes. composeops does, and
//! so that Compose still sees its own hash, the contents' sha256 digests live in a label of
//! composeops' own ([`LABEL_CONTENT_DIGESTS`]). A digest says nothing that reading the file in
//! the container (which the same engine access allows) would not, but values themselves are
//! never printed, logged or put in a label.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::load::LoadError;
use crate::model::Project;

/// Label of a container: `{"config app": "sha256:…", …}`, the digest of each config's and
/// secret's contents when the container was created.
pub const LABEL_CONTENT_DIGESTS: &str = "io.composeops.content-digests";

/// The mode Compose gives a written file when none is set.
const DEFAULT_MODE: u32 = 0o444;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Config,
    Secret,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Secret => "secret",
        }
    }

    /// The field name, in a service and at the top level.
    fn plural(self) -> &'static str {
        match self {
            Kind::Config => "configs",
            Kind::Secret => "secrets",
        }
    }

    /// A relative target is relative to this directory (configs: the root).
    fn base(self) -> &'static str {
        match self {
            Kind::Config => "/",
            Kind::Secret => "/run/secrets/",
        }
    }
}

/// Where a config's or secret's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    File(PathBuf),
    /// Inline text (configs only).
    Content(String),
    /// The value of this variable of the project's environment.
    Env(String),
    External,
    /// Nothing Compose mounts (no source, or a `driver`/`template_driver`).
    Unsupported(&'static str),
}

/// One config or secret mounted by a service, as the compose file says (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRef {
    pub kind: Kind,
    /// The top-level key.
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub source: Source,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
    /// The service field it is written at, for error messages.
    pub field: String,
}

impl FileRef {
    fn key(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }

    fn inline(&self) -> bool {
        matches!(self.source, Source::Content(_) | Source::Env(_))
    }
}

/// The configs and secrets `service` mounts, secrets first (Compose's precedence on a shared
/// target). References to undefined ones are left out: the loader refuses them.
pub(crate) fn refs(project: &Project, service: &str) -> Vec<FileRef> {
    let svc = &project.services[service];
    let mut out = Vec::new();
    for kind in [Kind::Secret, Kind::Config] {
        let defs = match kind {
            Kind::Config => &project.configs,
            Kind::Secret => &project.secrets,
        };
        let Some(Value::Array(entries)) = svc.extra.get(kind.plural()) else {
            continue;
        };
        for (i, e) in entries.iter().enumerate() {
            let (name, o) = match e {
                Value::String(n) => (n.clone(), None),
                Value::Object(o) => match o.get("source").and_then(Value::as_str) {
                    Some(n) => (n.to_string(), Some(o)),
                    None => continue,
                },
                _ => continue,
            };
            let Some(def) = defs.get(&name) else { continue };
            let field = |k: &str| o.and_then(|o| o.get(k)).filter(|v| !v.is_null());
            let target = field("target").map(scalar).unwrap_or_else(|| name.clone());
            let target = if target.starts_with('/') {
                target
            } else {
                format!("{}{target}", kind.base())
            };
            out.push(FileRef {
                kind,
                source: source_of(def),
                target,
                uid: field("uid").map(scalar),
                gid: field("gid").map(scalar),
                mode: field("mode").and_then(mode),
                field: format!("services.{service}.{}[{i}]", kind.plural()),
                name,
            });
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A mode as the loader leaves it (`"0440"`, octal) or as a number.
fn mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as u32),
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        _ => None,
    }
}

fn source_of(def: &Value) -> Source {
    let text = |k: &str| def.get(k).and_then(Value::as_str).map(str::to_string);
    if def.get("external").and_then(Value::as_bool) == Some(true) {
        return Source::External;
    }
    for k in ["driver", "template_driver"] {
        if def.get(k).is_some_and(|v| !v.is_null()) {
            return Source::Unsupported(if k == "driver" {
                "driver"
            } else {
                "template_driver"
            });
        }
    }
    // Compose's order: inline content, then a variable, then a file.
    if let Some(c) = text("content").filter(|c| !c.is_empty()) {
        return Source::Content(c);
    }
    if let Some(v) = text("environment").filter(|v| !v.is_empty()) {
        return Source::Env(v);
    }
    match text("file") {
        Some(f) => Source::File(PathBuf::from(f)),
        None => Source::Unsupported("source"),
    }
}

/// A config or secret written into the container: where and how, never what (its digest is
/// in [`LABEL_CONTENT_DIGESTS`]). Part of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileSpec {
    /// `config NAME` or `secret NAME`.
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// Octal, `0444` unless set.
    pub mode: String,
}

/// What a service's configs and secrets add to its spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SpecParts {
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
    /// Read-only bind mounts of `file:` sources: (target, host path).
    pub binds: Vec<(String, String)>,
    pub files: Vec<FileSpec>,
}

/// The spec's share of `service`'s configs and secrets: their names, bind mounts of `file:`
/// sources (except at a target in `taken`, the service's own mounts, which win as in
/// Compose), and the files written before start.
pub(crate) fn spec_parts(project: &Project, service: &str, taken: &[&str]) -> SpecParts {
    let mut p = SpecParts::default();
    for r in refs(project, service) {
        match r.kind {
            Kind::Secret => p.secrets.push(r.name.clone()),
            Kind::Config => p.configs.push(r.name.clone()),
        }
        let free = |t: &str| !taken.contains(&t) && !p.binds.iter().any(|(b, _)| b == t);
        match &r.source {
            Source::File(path) if free(&r.target) => {
                p.binds.push((r.target.clone(), path.display().to_string()))
            }
            Source::Content(_) | Source::Env(_) => p.files.push(FileSpec {
                source: r.key(),
                target: r.target.clone(),
                uid: r.uid.clone(),
                gid: r.gid.clone(),
                mode: format!("{:04o}", r.mode.unwrap_or(DEFAULT_MODE)),
            }),
            _ => {}
        }
    }
    p
}

/// What Compose warns about and ignores: `uid`, `gid` or `mode` on a `file:` source (the
/// bind mount shows the host file as it is).
pub(crate) fn warnings(project: &Project) -> Vec<String> {
    let mut out = Vec::new();
    for service in project.services.keys() {
        for r in refs(project, service) {
            let Source::File(path) = &r.source else {
                continue;
            };
            let denied = |e: std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
            if path.is_file() && std::fs::File::open(path).is_err_and(denied) {
                out.push(format!(
                    "service {service}: {} {}: {} is not readable by composeops (the engine \
                     mounts it): a change of its contents alone will not recreate the service",
                    r.kind.as_str(),
                    r.name,
                    path.display()
                ));
            }
            if r.uid.is_some() || r.gid.is_some() || r.mode.is_some() {
                out.push(format!(
                    "service {service}: {} {} is a bind-mounted file: its uid, gid and mode are \
                     ignored (as Compose ignores them)",
                    r.kind.as_str(),
                    r.name
                ));
            }
        }
    }
    out
}

/// A file written into a new container before it starts. Its data is a secret's or config's
/// value: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The engine keeps the tar's owner only when asked (Compose asks when uid or gid is set).
    pub keep_owner: bool,
    pub data: Vec<u8>,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Upload({} {}:{} {:04o}, {} bytes)",
            self.target,
            self.uid,
            self.gid,
            self.mode,
            self.data.len()
        )
    }
}

/// What one service's containers get from its configs and secrets beyond the spec: the
/// digests of their contents (the label) and the files to write.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServiceFiles {
    /// `config NAME` / `secret NAME` -> `sha256:…` of its contents.
    pub(crate) digests: BTreeMap<String, String>,
    pub(crate) uploads: Vec<Upload>,
}

impl fmt::Debug for ServiceFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFiles")
            .field("digests", &self.digests.keys().collect::<Vec<_>>())
            .field("uploads", &self.uploads)
            .finish()
    }
}

impl ServiceFiles {
    /// The [`LABEL_CONTENT_DIGESTS`] value; `None` without configs or secrets.
    pub(crate) fn label(&self) -> Option<String> {
        (!self.digests.is_empty())
            .then(|| serde_json::to_string(&self.digests).expect("a map of strings serialises"))
    }

    /// Why a container with `label` (its [`LABEL_CONTENT_DIGESTS`]) must be recreated: one
    /// `config NAME content changed` per source whose digest moved. A container without the
    /// label (made by Compose, which writes contents at each start) is taken as current.
    pub(crate) fn changes(&self, label: Option<&str>) -> Vec<String> {
        let Some(have) =
            label.and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(l).ok())
        else {
            return Vec::new();
        };
        self.digests
            .iter()
            .filter(|(k, d)| have.get(*k).is_some_and(|h| h != *d))
            .map(|(k, _)| format!("{k} content changed"))
            .collect()
    }
}

/// Reads every config and secret the project's services mount: checks what Compose would
/// refuse only once the container exists (a missing file, an unset variable, an external or
/// driver-made source, a write into a read-only service, a uid that is not a number), and
/// returns each service's digests and files. Errors name the field; [`crate::load::locate`]
/// adds the file and line.
pub(crate) fn resolve(project: &Project) -> Result<BTreeMap<String, ServiceFiles>, LoadError> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for name in project.services.keys() {
        let read_only = project.services[name].extra.get("read_only") == Some(&Value::Bool(true));
        let mut files = ServiceFiles::default();
        for r in refs(project, name) {
            match contents(project, &r) {
                Ok(Contents::Bytes(data)) => {
                    files
                        .digests
                        .insert(r.key(), crate::resolve::reference::sha256_digest(&data));
                    if r.inline() && !data.is_empty() {
                        if read_only {
                            errors.push(read_only_error(name, &r));
                            continue;
                        }
                        match upload(&r, data) {
                            Ok(u) => files.uploads.push(u),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Ok(Contents::Digest(d)) => {
                    files.digests.insert(r.key(), d);
                }
                Ok(Contents::Directory) => {}
                Err(e) => errors.push(e),
            }
        }
        if !files.digests.is_empty() {
            out.insert(name.clone(), files);
        }
    }
    errors.dedup();
    LoadError::all(errors)?;
    Ok(out)
}

fn read_only_error(service: &str, r: &FileRef) -> LoadError {
    LoadError::new(format!(
        "cannot write {} {:?} into read-only service {service}: only a `file:` source can be \
         mounted there",
        r.kind.as_str(),
        r.name
    ))
    .at_path(format!("services.{service}.read_only"))
}

enum Contents {
    Bytes(Vec<u8>),
    /// A `file:` source, hashed as it is read (it is bind-mounted, never held).
    Digest(String),
    /// Mounted but not hashed: a directory (its files are not followed), or a file this user
    /// may not read.
    Directory,
}

fn contents(project: &Project, r: &FileRef) -> Result<Contents, LoadError> {
    let at = |k: &str| format!("{}.{}.{k}", r.kind.plural(), r.name);
    let (kind, name) = (r.kind.as_str(), &r.name);
    match &r.source {
        Source::Content(c) => Ok(Contents::Bytes(c.clone().into_bytes())),
        Source::Env(var) => match project.environment.get(var) {
            Some(v) => Ok(Contents::Bytes(v.clone().into_bytes())),
            None => Err(LoadError::new(format!(
                "environment variable {var:?} required by {kind} {name:?} is not set: set it \
                 in the shell or in the project's .env"
            ))
            .at_path(at("environment"))),
        },
        Source::File(p) => file_digest(p).map_err(|e| LoadError::new(e).at_path(at("file"))),
        Source::External => {
            Err(LoadError::new(format!(
            "external {kind} {name:?} is not supported outside Swarm (Compose refuses it too): \
             use `file:`, `environment:`{}",
            if r.kind == Kind::Config { " or `content:`" } else { "" }
        ))
            .at_path(at("external")))
        }
        Source::Unsupported(k) => Err(LoadError::new(format!(
            "{kind} {name:?}: Docker Compose does not support {}.*.{k} (only `file:`, \
             `environment:`{} sources)",
            r.kind.plural(),
            if r.kind == Kind::Config {
                ", `content:`"
            } else {
                ""
            }
        ))
        .at_path(at(k))),
    }
}

fn file_digest(path: &Path) -> Result<Contents, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Ok(Contents::Directory);
    }
    let mut f = match std::fs::File::open(path) {
        // The engine mounts what this user may not read (see `warnings`).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(Contents::Directory)
        }
        other => other.map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    };
    let mut h = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(Contents::Digest(format!(
        "sha256:{}",
        hex::encode(h.finalize())
    )))
}

fn upload(r: &FileRef, data: Vec<u8>) -> Result<Upload, LoadError> {
    let id = |v: &Option<String>, k: &str| match v {
        None => Ok(0),
        Some(s) => s.parse::<u32>().map_err(|_| {
            LoadError::new(format!("{k} {s:?} is not a number")).at_path(format!("{}.{k}", r.field))
        }),
    };
    Ok(Upload {
        target: r.target.clone(),
        uid: id(&r.uid, "uid")?,
        gid: id(&r.gid, "gid")?,
        mode: r.mode.unwrap_or(DEFAULT_MODE),
        keep_owner: r.uid.is_some() || r.gid.is_some(),
        data,
    })
}

/// The tar archives that write `uploads` at `/`: one per ownership treatment, with whether
/// the engine is to keep the tar's owners.
pub(crate) fn archives(uploads: &[Upload]) -> std::io::Result<Vec<(bool, Vec<u8>)>> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Vec::new();
    for keep in [false, true] {
        let mut b = tar::Builder::new(Vec::new());
        let mut any = false;
        for u in uploads.iter().filter(|u| u.keep_owner == keep) {
            let mut h = tar::Header::new_gnu();
            h.set_size(u.data.len() as u64);
            h.set_mode(u.mode);
            h.set_uid(u.uid.into());
            h.set_gid(u.gid.into());
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, u.target.trim_start_matches('/'), u.data.as_slice())?;
            any = true;
        }
        if any {
            out.push((keep, b.into_inner()?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
