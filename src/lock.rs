//! `composeops.lock`: every image reference pinned to a digest, like Cargo.lock.
//!
//! The file is JSON, pretty-printed with keys in sorted order (struct fields are declared
//! alphabetically, maps are `BTreeMap`s) and one entry per image reference as written in the
//! compose files, so a tag move is a two-line diff. JSON rather than TOML: the schema under
//! `schemas/` is JSON Schema, CI scripts read it with `jq`, and it needs no extra crate.
//!
//! Writing keeps an entry unchanged (digest and `resolved_at`) when the registry still serves
//! the same digest, so re-locking an up-to-date project leaves the file byte-for-byte the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Project;
use crate::resolve::{
    self, ImageRef, Known, RegistryStats, ResolveError, ResolveOptions, ResolvedImage, Resolver,
    Source, Wanted,
};
use crate::track::HeldBack;

/// File name, beside the first compose file.
pub const LOCK_FILE: &str = "composeops.lock";
/// Format version written in the file; readers refuse newer versions.
pub const LOCK_VERSION: u32 = 1;

/// The lockfile. Keys serialise in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "composeops.lock",
    description = "Image digests pinned by `composeops lock`."
)]
pub struct Lockfile {
    /// One entry per image reference, keyed by the reference as written in the compose file
    /// (after interpolation), e.g. `nginx:1.27` or `127.0.0.1:5000/app:v1`.
    pub images: BTreeMap<String, LockedImage>,
    /// The platform (`os/arch[/variant]`) the per-platform digests were selected for.
    pub platform: String,
    /// Format version (currently 1).
    pub version: u32,
}

/// One locked image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The digest the tag pointed to (the index digest for a multi-platform image): what is
    /// pulled, as `repository@digest`.
    #[schemars(regex(pattern = r"^sha(256|384|512):[0-9a-f]+$"))]
    pub digest: String,
    /// Present when the tag points to an image index (manifest list); equal to `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha(256|384|512):[0-9a-f]+$"))]
    pub index_digest: Option<String>,
    /// The image manifest for `platform` (equal to `digest` for a single-platform image).
    /// Absent for references pinned in the compose file (not looked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha(256|384|512):[0-9a-f]+$"))]
    pub platform_digest: Option<String>,
    /// Normalised repository: `docker.io/library/nginx`, `127.0.0.1:5000/app`.
    pub repository: String,
    /// When the digest was resolved (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub resolved_at: String,
    /// The tag that was resolved; absent for `name@digest` references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl LockedImage {
    /// `repository@digest`.
    pub fn pull_reference(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Errors reading, writing or using the lock; each names the file, service or image.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid composeops lockfile: {message}; regenerate it with `composeops lock --update`")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no lockfile {path}: run `composeops lock` and commit the file")]
    Missing { path: PathBuf },
    #[error(
        "{}",
        .0.iter().map(|(s, i)| format!("service {s}: image {i} is not in composeops.lock; run `composeops lock` (or `composeops lock --update {s}`)")).collect::<Vec<_>>().join("\n")
    )]
    NotLocked(Vec<(String, String)>),
    #[error(
        "services {services} use image {image} with different x-composeops.track/cooldown; the \
         lock has one entry per image reference: give them the same policy"
    )]
    PolicyConflict { image: String, services: String },
    #[error("no service named {name:?} to update (services: {known})")]
    UnknownService { name: String, known: String },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl Lockfile {
    pub fn new(platform: &resolve::Platform) -> Lockfile {
        Lockfile {
            images: BTreeMap::new(),
            platform: platform.to_string(),
            version: LOCK_VERSION,
        }
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Lockfile>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        Lockfile::parse(&text)
            .map(Some)
            .map_err(|message| LockError::Parse {
                path: path.into(),
                message,
            })
    }

    /// Parses lockfile text (version checked).
    pub fn parse(text: &str) -> Result<Lockfile, String> {
        let lock: Lockfile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if lock.version != LOCK_VERSION {
            return Err(format!(
                "version {} is not supported (this composeops writes version {LOCK_VERSION})",
                lock.version
            ));
        }
        Ok(lock)
    }

    /// The file's text: pretty JSON, sorted keys, trailing newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("lockfile serialises");
        s.push('\n');
        s
    }

    /// Writes atomically: a temporary file in the same directory, flushed, then renamed over
    /// `path`, so a reader never sees half a lock.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let err = |source| LockError::Write {
            path: path.into(),
            source,
        };
        crate::fsutil::write_atomic(path, self.render().as_bytes()).map_err(err)
    }

    /// The JSON Schema of the file (checked in as `schemas/lockfile.schema.json`).
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Lockfile)).expect("schema serialises")
    }

    /// What the lock knows per digest, for a resolver to skip GETs (same platform only).
    pub fn known(&self, platform: &resolve::Platform) -> HashMap<String, Known> {
        if self.platform != platform.to_string() {
            return HashMap::new();
        }
        self.images
            .values()
            .map(|e| {
                (
                    e.digest.clone(),
                    Known {
                        index_digest: e.index_digest.clone(),
                        platform_digest: e.platform_digest.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Where the lock of `project` lives: beside its first compose file (the project directory
/// when the compose file came from stdin).
pub fn lock_path(project: &Project) -> PathBuf {
    project
        .config_files
        .first()
        .filter(|f| f.as_os_str() != "-")
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| project.working_dir.clone())
        .join(LOCK_FILE)
}

/// `service -> image reference as written` for the services that pull from a registry.
pub fn service_images(project: &Project) -> IndexMap<String, String> {
    project
        .services
        .iter()
        .filter_map(|(n, s)| resolve::registry_image(s).map(|i| (n.clone(), i.to_string())))
        .collect()
}

/// Which entries `lock` re-resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Only references not in the lock yet.
    Missing,
    /// Every reference.
    All,
    /// The references of these services (plus any not in the lock yet).
    Services(Vec<String>),
}

/// One entry whose digest `lock` set or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockChange {
    pub reference: String,
    pub services: Vec<String>,
    /// `None` for a new entry.
    pub old: Option<String>,
    pub new: String,
    /// The locked tag before and after, when `x-composeops.track` moved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
}

/// What `lock` did.
#[derive(Debug, Clone, Serialize)]
pub struct LockOutcome {
    pub lock: Lockfile,
    /// Entries added or whose digest moved.
    pub changes: Vec<LockChange>,
    /// References dropped because no service uses them any more.
    pub removed: Vec<String>,
    /// Per reference, the newer candidates `x-composeops.cooldown` held back.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held_back: BTreeMap<String, Vec<HeldBack>>,
    pub stats: RegistryStats,
}

/// Computes the new lock for `project` from `previous` (if any): resolves what `update` asks
/// for, keeps the rest, drops entries no service uses. Does not write.
pub async fn lock(
    project: &Project,
    previous: Option<&Lockfile>,
    update: &Update,
    opts: &ResolveOptions,
) -> Result<LockOutcome, LockError> {
    let images = service_images(project);
    check_update_names(project, update)?;
    let platform = opts.platform.to_string();
    let same_platform = previous.is_some_and(|p| p.platform == platform);
    if previous.is_some() && !same_platform {
        tracing::warn!(
            "{LOCK_FILE} was made for {}, resolving every image for {platform}",
            previous.map(|p| p.platform.as_str()).unwrap_or("")
        );
    }
    let old = previous.filter(|_| same_platform);
    let wanted_refs: BTreeSet<&String> = images.values().collect();
    check_policies(project, &images)?;
    let to_resolve = to_resolve(project, &images, old, update);
    let mut ropts = opts.clone();
    ropts.platform_manifests = true;
    if let Some(l) = old {
        ropts.known.extend(l.known(&opts.platform));
    }
    let resolver = Resolver::new(ropts);
    let resolved = resolver.resolve_wanted(&to_resolve).await?;
    let now = now_rfc3339();
    let mut lock = Lockfile::new(&opts.platform);
    let mut changes: Vec<LockChange> = Vec::new();
    // Keep the entries still used and not re-resolved.
    if let Some(l) = old {
        for (reference, entry) in &l.images {
            if wanted_refs.contains(reference) {
                lock.images.insert(reference.clone(), entry.clone());
            }
        }
    }
    for r in resolved.values() {
        let previous_entry = old.and_then(|l| l.images.get(&r.reference));
        if previous_entry.is_some_and(|e| {
            e.digest == r.digest && e.platform_digest == r.platform_digest && e.tag == r.tag
        }) {
            continue; // unchanged: keep the entry and its time
        }
        if lock
            .images
            .get(&r.reference)
            .is_some_and(|e| e.digest == r.digest)
            && previous_entry.is_none()
        {
            continue; // same reference used by two services
        }
        changes.retain(|c| c.reference != r.reference);
        changes.push(change_of(r, previous_entry, &images));
        lock.images.insert(r.reference.clone(), entry_of(r, &now));
    }
    let removed = previous
        .map(|p| {
            p.images
                .keys()
                .filter(|k| !wanted_refs.contains(k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let held_back = resolved
        .values()
        .filter(|r| !r.held_back.is_empty())
        .map(|r| (r.reference.clone(), r.held_back.clone()))
        .collect();
    Ok(LockOutcome {
        lock,
        changes,
        removed,
        held_back,
        stats: resolver.stats(),
    })
}

/// `lock --update NAME…` names services of the project.
fn check_update_names(project: &Project, update: &Update) -> Result<(), LockError> {
    if let Update::Services(names) = update {
        for n in names {
            if !project.services.contains_key(n) {
                return Err(LockError::UnknownService {
                    name: n.clone(),
                    known: project
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(())
}

/// The services whose image is resolved: those not in the lock, and those `update` asks for,
/// each with its policy and what the lock holds for it.
fn to_resolve(
    project: &Project,
    images: &IndexMap<String, String>,
    old: Option<&Lockfile>,
    update: &Update,
) -> IndexMap<String, Wanted> {
    images
        .iter()
        .filter(|(service, reference)| {
            let in_lock = old.is_some_and(|l| l.images.contains_key(*reference));
            !in_lock
                || match update {
                    Update::Missing => false,
                    Update::All => true,
                    Update::Services(names) => names.contains(service),
                }
        })
        .map(|(s, r)| {
            let entry = old.and_then(|l| l.images.get(r));
            let w = Wanted {
                reference: r.clone(),
                policy: project.services[s].update.clone(),
                current: entry.map(|e| (current_tag(e, r), e.digest.clone())),
            };
            (s.clone(), w)
        })
        .collect()
}

/// How `r`'s entry changes from `previous_entry`, for the services that use it.
fn change_of(
    r: &ResolvedImage,
    previous_entry: Option<&LockedImage>,
    images: &IndexMap<String, String>,
) -> LockChange {
    let services = images
        .iter()
        .filter(|(_, i)| **i == r.reference)
        .map(|(s, _)| s.clone())
        .collect();
    let old_tag = previous_entry.and_then(|e| e.tag.clone());
    let moved = old_tag != r.tag && previous_entry.is_some();
    LockChange {
        reference: r.reference.clone(),
        services,
        old: previous_entry.map(|e| e.digest.clone()),
        new: r.digest.clone(),
        old_tag: old_tag.filter(|_| moved),
        new_tag: r.tag.clone().filter(|_| moved),
    }
}

/// The lock has one entry per reference: services sharing one must share its policy.
fn check_policies(project: &Project, images: &IndexMap<String, String>) -> Result<(), LockError> {
    for (service, reference) in images {
        let policy = &project.services[service].update;
        let differ: Vec<&String> = images
            .iter()
            .filter(|(s, r)| *r == reference && project.services[*s].update != *policy)
            .map(|(s, _)| s)
            .collect();
        if !differ.is_empty() {
            let mut all = vec![service.clone()];
            all.extend(differ.into_iter().cloned());
            return Err(LockError::PolicyConflict {
                image: reference.clone(),
                services: all.join(", "),
            });
        }
    }
    Ok(())
}

/// The tag a lock entry stands for: the recorded one, else the one written.
fn current_tag(e: &LockedImage, written: &str) -> String {
    e.tag.clone().unwrap_or_else(|| {
        ImageRef::parse(written)
            .ok()
            .and_then(|r| r.tag)
            .unwrap_or_else(|| "latest".into())
    })
}

fn entry_of(r: &ResolvedImage, now: &str) -> LockedImage {
    LockedImage {
        digest: r.digest.clone(),
        index_digest: r.index_digest.clone(),
        platform_digest: r.platform_digest.clone(),
        repository: r.repository.clone(),
        resolved_at: now.to_string(),
        tag: r.tag.clone(),
    }
}

/// The current time, RFC 3339 in UTC to the second.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A reason `lock --check` fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum CheckProblem {
    /// A service's image has no entry in the lock.
    Missing { service: String, image: String },
    /// The lock holds another tag than the one written (an earlier track), and the service
    /// no longer tracks a range.
    Untracked {
        service: String,
        image: String,
        tag: String,
    },
    /// The tag now points to another digest than the lock pins.
    Moved {
        services: Vec<String>,
        image: String,
        locked: String,
        current: String,
    },
}

impl fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckProblem::Missing { service, image } => {
                write!(f, "service {service}: image {image} is not in {LOCK_FILE}")
            }
            CheckProblem::Untracked { service, image, tag } => write!(
                f,
                "service {service}: image {image} is locked to tag {tag}, but the service has no \
                 x-composeops.track any more"
            ),
            CheckProblem::Moved { services, image, locked, current } => write!(
                f,
                "service {}: image {image} is locked to {locked} but the registry now serves {current}",
                services.join(", ")
            ),
        }
    }
}

/// What `lock --check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub problems: Vec<CheckProblem>,
    /// Entries no service uses (reported, not a failure).
    pub unused: Vec<String>,
    pub stats: RegistryStats,
}

/// Checks the lock against the project and the registries: every service image has an entry,
/// and every locked tag still points to the locked digest (HEAD requests only).
pub async fn check(
    project: &Project,
    lock: &Lockfile,
    opts: &ResolveOptions,
) -> Result<CheckReport, LockError> {
    let images = service_images(project);
    let mut problems = Vec::new();
    let mut present: IndexMap<String, String> = IndexMap::new();
    // A tag moved by a track is checked as locked (`app:1.2.1`), not as written (`app:1.2.0`).
    for (service, image) in &images {
        if let Some(e) = lock.images.get(image) {
            let asked = match (e.tag.as_deref(), ImageRef::parse(image)) {
                (Some(t), Ok(r)) if r.digest.is_none() && r.tag.as_deref() != Some(t) => {
                    // Only a track may lock another tag than the one written.
                    if project.services[service].update.track.is_none() {
                        problems.push(CheckProblem::Untracked {
                            service: service.clone(),
                            image: image.clone(),
                            tag: t.to_string(),
                        });
                    }
                    format!("{}:{t}", e.repository)
                }
                _ => image.clone(),
            };
            present.insert(service.clone(), asked);
        } else {
            problems.push(CheckProblem::Missing {
                service: service.clone(),
                image: image.clone(),
            });
        }
    }
    let mut ropts = opts.clone();
    ropts.platform_manifests = false;
    let resolver = Resolver::new(ropts);
    let resolved = resolver.resolve_named(&present).await?;
    let mut moved: BTreeMap<String, CheckProblem> = BTreeMap::new();
    for (service, r) in &resolved {
        let reference = &images[service];
        let entry = &lock.images[reference];
        if entry.digest != r.digest {
            match moved
                .entry(reference.clone())
                .or_insert_with(|| CheckProblem::Moved {
                    services: Vec::new(),
                    image: reference.clone(),
                    locked: entry.digest.clone(),
                    current: r.digest.clone(),
                }) {
                CheckProblem::Moved { services, .. } => services.push(service.clone()),
                CheckProblem::Missing { .. } | CheckProblem::Untracked { .. } => unreachable!(),
            }
        }
    }
    problems.extend(moved.into_values());
    let used: BTreeSet<&String> = images.values().collect();
    let unused = lock
        .images
        .keys()
        .filter(|k| !used.contains(k))
        .cloned()
        .collect();
    Ok(CheckReport {
        problems,
        unused,
        stats: resolver.stats(),
    })
}

/// `--locked`: every service image's digest from the lock alone, no registry request. A
/// reference pinned in the compose file (`name@sha256:…`) is its own lock. Fails listing every
/// service whose image is not in the lock.
pub fn locked_images(
    project: &Project,
    lock: &Lockfile,
) -> Result<IndexMap<String, ResolvedImage>, LockError> {
    let mut out = IndexMap::new();
    let mut missing = Vec::new();
    for (service, image) in service_images(project) {
        let parsed = ImageRef::parse(&image).map_err(|e| {
            LockError::Resolve(ResolveError {
                errors: vec![resolve::RegistryError {
                    image: image.clone(),
                    registry: String::new(),
                    services: vec![service.clone()],
                    kind: resolve::ErrorKind::InvalidReference,
                    detail: e.to_string(),
                }],
            })
        })?;
        let resolved = match (lock.images.get(&image), &parsed.digest) {
            (Some(e), _) => ResolvedImage {
                reference: image.clone(),
                repository: e.repository.clone(),
                tag: e.tag.clone(),
                digest: e.digest.clone(),
                index_digest: e.index_digest.clone(),
                platform_digest: e.platform_digest.clone(),
                source: Source::Lock,
                held_back: Vec::new(),
            },
            (None, Some(d)) => ResolvedImage {
                reference: image.clone(),
                repository: parsed.repository(),
                tag: parsed.tag.clone(),
                digest: d.clone(),
                index_digest: None,
                platform_digest: None,
                source: Source::Pinned,
                held_back: Vec::new(),
            },
            (None, None) => {
                missing.push((service.clone(), image.clone()));
                continue;
            }
        };
        out.insert(service, resolved);
    }
    if !missing.is_empty() {
        return Err(LockError::NotLocked(missing));
    }
    Ok(out)
}

/// Reads the lock of `project` for `--locked`; a missing file is an error that says what to do.
pub fn read_for_locked(project: &Project) -> Result<Lockfile, LockError> {
    let path = lock_path(project);
    Lockfile::read(&path)?.ok_or(LockError::Missing { path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Service;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn project(images: &[(&str, &str)]) -> Project {
        Project {
            name: "p".into(),
            networks: Default::default(),
            services: images
                .iter()
                .map(|(s, i)| {
                    (
                        s.to_string(),
                        Service {
                            image: Some(i.to_string()),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            volumes: Default::default(),
            secrets: Default::default(),
            configs: Default::default(),
            models: Default::default(),
            extensions: Default::default(),
            working_dir: PathBuf::from("/srv/stack"),
            config_files: vec![PathBuf::from("/srv/stack/compose.yaml")],
            environment: Default::default(),
            disabled_services: vec![],
        }
    }

    fn sample() -> Lockfile {
        let mut l = Lockfile::new(&"linux/amd64".parse().unwrap());
        l.images.insert(
            "nginx:1.27".into(),
            LockedImage {
                digest: D1.into(),
                index_digest: Some(D1.into()),
                platform_digest: Some(D2.into()),
                repository: "docker.io/library/nginx".into(),
                resolved_at: "2026-11-25T20:00:00Z".into(),
                tag: Some("1.27".into()),
            },
        );
        l
    }

    #[test]
    fn lockfile_schema_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/lockfile.schema.json");
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&Lockfile::json_schema()).unwrap()
        );
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the schema generated from lock::Lockfile; regenerate it with \
             `COMPOSEOPS_UPDATE_SCHEMAS=1 cargo test --lib lockfile_schema` and commit it",
            path.display()
        );
    }

    #[test]
    fn rendering_is_sorted_and_round_trips() {
        let l = sample();
        let text = l.render();
        let keys: Vec<usize> = ["\"images\"", "\"platform\"", "\"version\""]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        let fields: Vec<usize> = [
            "\"digest\"",
            "\"index_digest\"",
            "\"platform_digest\"",
            "\"repository\"",
            "\"resolved_at\"",
            "\"tag\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(fields.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(Lockfile::parse(&text).unwrap(), l);
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn parse_refuses_other_versions_and_unknown_fields() {
        let text = sample()
            .render()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(Lockfile::parse(&text).unwrap_err().contains("version 2"));
        let text = sample()
            .render()
            .replace("\"platform\"", "\"extra\": 1, \"platform\"");
        assert!(Lockfile::parse(&text).unwrap_err().contains("extra"));
    }

    #[test]
    fn write_is_atomic_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(Lockfile::read(&path).unwrap(), None);
        sample().write(&path).unwrap();
        assert_eq!(Lockfile::read(&path).unwrap(), Some(sample()));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(LOCK_FILE)]);
        std::fs::write(&path, "{").unwrap();
        let e = Lockfile::read(&path).unwrap_err().to_string();
        assert!(
            e.contains(LOCK_FILE) && e.contains("composeops lock --update"),
            "{e}"
        );
    }

    #[test]
    fn lock_path_is_beside_the_first_compose_file() {
        assert_eq!(
            lock_path(&project(&[])),
            PathBuf::from("/srv/stack/composeops.lock")
        );
    }

    #[test]
    fn locked_images_come_from_the_lock_or_the_pin() {
        let pinned = format!("127.0.0.1:5000/app@{D2}");
        let p = project(&[("web", "nginx:1.27"), ("app", &pinned)]);
        let got = locked_images(&p, &sample()).unwrap();
        assert_eq!(got["web"].digest, D1);
        assert_eq!(got["web"].source, Source::Lock);
        assert_eq!(
            got["web"].pull_reference(),
            format!("docker.io/library/nginx@{D1}")
        );
        assert_eq!(got["app"].digest, D2);
        assert_eq!(got["app"].source, Source::Pinned);
    }

    #[test]
    fn locked_images_name_every_missing_service() {
        let p = project(&[
            ("web", "nginx:1.27"),
            ("db", "postgres:17"),
            ("cache", "redis"),
        ]);
        let e = locked_images(&p, &sample()).unwrap_err().to_string();
        assert!(
            e.contains("service db: image postgres:17 is not in composeops.lock"),
            "{e}"
        );
        assert!(e.contains("service cache: image redis"), "{e}");
        assert!(!e.contains("service web"), "{e}");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
        chrono::DateTime::parse_from_rfc3339(&t).unwrap();
    }
}
