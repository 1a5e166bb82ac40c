//! Resolve: every service's image tag to the digest the registry serves now.
//!
//! A tag is a moving pointer; a digest is what runs. This stage asks each registry, once per
//! distinct reference and concurrently, which digest a tag points to, with a HEAD request on
//! `/v2/<repo>/manifests/<tag>` (Docker Hub does not count HEADs against its pull limit). Only
//! the lockfile wants more: the per-platform manifest of an image index, which takes one GET of
//! the manifest by digest, and only when the lock does not know that digest yet.
//!
//! The registry protocol (HEAD/GET, `Docker-Content-Digest`, Basic and Bearer challenge auth)
//! is in [`registry`] (why not a crate: see there); credentials come from Docker's config
//! (`auths`, `credsStore`, `credHelpers`) through docker_credential. Loopback registries
//! (`localhost`, 127.0.0.0/8) are spoken to over plain HTTP, as the Docker engine does; every
//! other one over HTTPS.

pub mod ahead;
pub mod credentials;
pub mod platform;
pub mod reference;
pub(crate) mod registry;
mod tags;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use indexmap::IndexMap;
use tokio::sync::Semaphore;

use crate::model::{Project, Service};
use crate::track::{HeldBack, Selection, UpdatePolicy};
pub use platform::Platform;
pub use reference::ImageRef;
use registry::{Auth, Repo};

/// How to resolve. `Default` is what `plan` wants: HEAD only, the host's platform, at most 4
/// requests in flight per registry, 15 s per lookup, Docker's default config directory.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The engine's platform, to select a manifest in an image index.
    pub platform: Platform,
    /// Lookups in flight at once against one registry.
    pub per_registry_limit: usize,
    /// Time allowed for one reference (auth, HEAD and, when needed, GET).
    pub timeout: Duration,
    /// Directory holding Docker's `config.json`; `None`: `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config: Option<PathBuf>,
    /// Also find the per-platform manifest digest (one GET by digest for a digest not in
    /// `known`). The lockfile records it; a plan needs only the tag's digest.
    pub platform_manifests: bool,
    /// What is already known about a digest (from the lock): no GET for these.
    pub known: HashMap<String, Known>,
}

/// What a lock already says about a digest, so a re-resolution that finds the same digest
/// does not fetch the manifest again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub index_digest: Option<String>,
    pub platform_digest: Option<String>,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            platform: Platform::host(),
            per_registry_limit: 4,
            timeout: Duration::from_secs(15),
            docker_config: None,
            platform_manifests: false,
            known: HashMap::new(),
        }
    }
}

/// One service's image, resolved: what the plan compares and what apply pulls.
///
/// For the plan's `DesiredImage { reference, digest }`: `reference` is [`Self::reference`] and
/// `digest` is `Some(self.digest)`; apply pulls [`Self::pull_reference`].
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ResolvedImage {
    /// The reference as written in the compose file (after interpolation).
    pub reference: String,
    /// Normalised repository: `docker.io/library/nginx`, `127.0.0.1:5000/app`.
    pub repository: String,
    /// The tag looked up (`None` for `name@digest`).
    pub tag: Option<String>,
    /// The digest the tag points to: the index digest for a multi-platform image, else the
    /// manifest digest. This is what `docker pull repo@digest` takes and what the engine
    /// records in the image's RepoDigests after a pull.
    pub digest: String,
    /// Set when `digest` is an image index (manifest list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// The manifest for the engine's platform (equal to `digest` for a single-platform
    /// image); `None` when not looked up (plan mode, pinned references).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_digest: Option<String>,
    /// Where the digest came from.
    pub source: Source,
    /// Newer candidates an `x-composeops.cooldown` held back (newest first): reported by
    /// the run that looked them up, not saved with the digest.
    #[serde(skip)]
    pub held_back: Vec<HeldBack>,
}

/// Where a [`ResolvedImage`]'s digest came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Looked up in the registry during this run.
    Registry,
    /// The compose file pins it (`name@sha256:…`): no lookup.
    Pinned,
    /// Read from `composeops.lock` (`--locked`).
    Lock,
}

impl ResolvedImage {
    /// `repository@digest`: pull this, never the tag, so what was planned is what runs.
    pub fn pull_reference(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }

    /// The tag `x-composeops.track` moved to, when it is not the one written in the compose
    /// file (`1.2.1` for `app:1.2.0` tracking `~1.2`).
    pub fn moved_tag(&self) -> Option<&str> {
        let tag = self.tag.as_deref()?;
        let written = ImageRef::parse(&self.reference).ok()?;
        (written.digest.is_none() && written.tag.as_deref().unwrap_or("latest") != tag)
            .then_some(tag)
    }

    /// The local name a pull by digest is tagged with, as `docker pull NAME:TAG` would: the
    /// reference as written, or `repository:tag` when the tag was moved by a track.
    pub fn local_name(&self) -> String {
        match self.moved_tag() {
            Some(t) => format!("{}:{t}", self.repository),
            None => self.reference.clone(),
        }
    }
}

/// One service's image to resolve, and how updates of it are taken.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The reference as written in the compose file.
    pub reference: String,
    pub policy: UpdatePolicy,
    /// What the lock or the last image check holds (tag, digest): with a cooldown, kept while
    /// every newer candidate is too young.
    pub current: Option<(String, String)>,
}

impl Wanted {
    pub fn plain(reference: impl Into<String>) -> Wanted {
        Wanted {
            reference: reference.into(),
            ..Default::default()
        }
    }
}

/// One distinct lookup: references with the same policy and memory share it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ask {
    image: ImageRef,
    track: Option<String>,
    cooldown: Option<Duration>,
    current: Option<(String, String)>,
}

/// The image a service pulls from a registry, or `None` when it has none to look up: no
/// `image:`, a `build:` section (the image is built here), or `pull_policy: build|never`.
pub fn registry_image(service: &Service) -> Option<&str> {
    let image = service.image.as_deref()?;
    if service.extra.contains_key("build") {
        return None;
    }
    match service.pull_policy.as_deref() {
        Some("build") | Some("never") => None,
        _ => Some(image),
    }
}

/// Registry calls made by a [`Resolver`], for logs and for the request-count test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistryStats {
    /// Distinct references looked up in a registry (pinned ones are not).
    pub lookups: usize,
    /// Manifest HEAD calls (one per lookup; a GET follows only when a registry answers a HEAD
    /// without `Docker-Content-Digest`).
    pub manifest_heads: usize,
    /// Manifest GETs by digest (lock mode, digest not already known).
    pub manifest_gets: usize,
    /// Tag list requests (services with `x-composeops.track`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tag_lists: usize,
    /// Manifest and config fetches to read an image's `created` time (`x-composeops.cooldown`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub config_fetches: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RegistryStats {
    /// Manifest requests composeops asked for. On the wire, a registry that asks for auth adds
    /// a `401` and, on Bearer registries, a token request, once per repository and process.
    pub fn manifest_requests(&self) -> usize {
        self.manifest_heads + self.manifest_gets
    }
}

#[derive(Debug, Default)]
struct Counters {
    lookups: AtomicUsize,
    heads: AtomicUsize,
    gets: AtomicUsize,
    tag_lists: AtomicUsize,
    configs: AtomicUsize,
}

/// What went wrong talking to a registry, as a category the user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidReference,
    Unreachable,
    Timeout,
    Unauthorized,
    NotFound,
    Malformed,
    Credentials,
    Other,
}

/// One image that could not be resolved: names the image, the registry, the services that use
/// it, and says what to do.
#[derive(Debug, Clone)]
pub struct RegistryError {
    /// The reference as written.
    pub image: String,
    pub registry: String,
    pub services: Vec<String>,
    pub kind: ErrorKind,
    /// The underlying error text.
    pub detail: String,
}

impl RegistryError {
    /// A failure of another kind for `image` (a reference as written).
    pub(crate) fn other(image: &str, detail: String) -> RegistryError {
        RegistryError {
            image: image.to_string(),
            registry: ImageRef::parse(image)
                .map(|r| r.registry)
                .unwrap_or_default(),
            services: Vec::new(),
            kind: ErrorKind::Other,
            detail,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (img, reg) = (&self.image, &self.registry);
        if !self.services.is_empty() {
            write!(f, "service {}: ", self.services.join(", "))?;
        }
        match self.kind {
            ErrorKind::InvalidReference => write!(f, "{}: fix the `image:` in the compose file", self.detail),
            ErrorKind::Unreachable => write!(
                f,
                "cannot reach registry {reg} for image {img}: {}; check the registry address, \
                 that it is up, and the network or proxy settings",
                self.detail
            ),
            ErrorKind::Timeout => write!(
                f,
                "registry {reg} did not answer for image {img} within {}; check that it is up and \
                 reachable, then retry",
                self.detail
            ),
            ErrorKind::Unauthorized => write!(
                f,
                "registry {reg} refused access to image {img} ({}): run `docker login {reg}` or \
                 set DOCKER_CONFIG to a directory whose config.json has credentials for {reg}",
                self.detail
            ),
            ErrorKind::NotFound => write!(
                f,
                "image {img} not found in registry {reg} ({}): check the repository and tag in \
                 the compose file, or push the image",
                self.detail
            ),
            ErrorKind::Malformed => write!(
                f,
                "registry {reg} served a manifest for image {img} that composeops cannot use ({}); \
                 check that the tag points to a container image (Docker v2 or OCI manifest or index)",
                self.detail
            ),
            ErrorKind::Credentials => write!(
                f,
                "cannot read credentials for registry {reg} (image {img}): {}; check the Docker \
                 config (DOCKER_CONFIG or ~/.docker/config.json) and its credential helper",
                self.detail
            ),
            ErrorKind::Other => write!(f, "registry {reg}, image {img}: {}", self.detail),
        }
    }
}

/// All the images that could not be resolved (every one is reported, not just the first).
#[derive(Debug, Clone)]
pub struct ResolveError {
    pub errors: Vec<RegistryError>,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for ResolveError {}

/// The result of looking one normalised reference up.
#[derive(Debug, Clone)]
struct Lookup {
    digest: String,
    index_digest: Option<String>,
    platform_digest: Option<String>,
    source: Source,
    /// The tag chosen by a track (`None`: the tag as written).
    tag: Option<String>,
    held_back: Vec<HeldBack>,
}

/// Resolves references against registries and counts what it asked. Create one per run.
pub struct Resolver {
    opts: ResolveOptions,
    counters: Arc<Counters>,
}

impl Resolver {
    pub fn new(opts: ResolveOptions) -> Resolver {
        install_crypto_provider();
        Resolver {
            opts,
            counters: Arc::default(),
        }
    }

    pub fn options(&self) -> &ResolveOptions {
        &self.opts
    }

    /// Registry calls made so far by this resolver.
    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            lookups: self.counters.lookups.load(Ordering::Relaxed),
            manifest_heads: self.counters.heads.load(Ordering::Relaxed),
            manifest_gets: self.counters.gets.load(Ordering::Relaxed),
            tag_lists: self.counters.tag_lists.load(Ordering::Relaxed),
            config_fetches: self.counters.configs.load(Ordering::Relaxed),
        }
    }

    /// Resolves the image of every service that pulls one (see [`registry_image`]); the map is
    /// in the project's service order. Fails with every unresolvable image listed.
    pub async fn resolve_services(
        &self,
        project: &Project,
    ) -> Result<IndexMap<String, ResolvedImage>, ResolveError> {
        let wanted: IndexMap<String, Wanted> = project
            .services
            .iter()
            .filter_map(|(name, svc)| {
                registry_image(svc).map(|i| {
                    let w = Wanted {
                        reference: i.to_string(),
                        policy: svc.update.clone(),
                        current: None,
                    };
                    (name.clone(), w)
                })
            })
            .collect();
        self.resolve_wanted(&wanted).await
    }

    /// Resolves `service -> reference as written`; each distinct normalised reference is looked
    /// up once.
    pub async fn resolve_named(
        &self,
        wanted: &IndexMap<String, String>,
    ) -> Result<IndexMap<String, ResolvedImage>, ResolveError> {
        let wanted = wanted
            .iter()
            .map(|(s, r)| (s.clone(), Wanted::plain(r)))
            .collect();
        self.resolve_wanted(&wanted).await
    }

    /// Resolves `service -> what to look up`, honouring each service's update policy; each
    /// distinct (reference, policy, current) is looked up once. Fails with every unresolvable
    /// image listed.
    pub async fn resolve_wanted(
        &self,
        wanted: &IndexMap<String, Wanted>,
    ) -> Result<IndexMap<String, ResolvedImage>, ResolveError> {
        let (found, errors) = self.resolve_each(wanted).await;
        match errors.is_empty() {
            true => Ok(found),
            false => Err(ResolveError { errors }),
        }
    }

    /// [`resolve_wanted`](Self::resolve_wanted), keeping what was found beside what was not:
    /// the services resolved (in `wanted`'s order), and one error per image that could not be,
    /// naming its services.
    pub async fn resolve_each(
        &self,
        wanted: &IndexMap<String, Wanted>,
    ) -> (IndexMap<String, ResolvedImage>, Vec<RegistryError>) {
        // Parse, group by normalised reference and policy.
        let mut errors = Vec::new();
        let mut by_ref: BTreeMap<Ask, Vec<(String, String)>> = BTreeMap::new();
        let mut policies: BTreeMap<Ask, UpdatePolicy> = BTreeMap::new();
        for (service, w) in wanted {
            let written = &w.reference;
            match ImageRef::parse(written) {
                Ok(image) => {
                    let ask = Ask {
                        image,
                        track: w.policy.track.as_ref().map(|t| t.range.clone()),
                        cooldown: w.policy.cooldown,
                        current: w.current.clone().filter(|_| !w.policy.is_none()),
                    };
                    policies.insert(ask.clone(), w.policy.clone());
                    by_ref
                        .entry(ask)
                        .or_default()
                        .push((service.clone(), written.clone()))
                }
                Err(e) => errors.push(RegistryError {
                    image: written.clone(),
                    registry: String::new(),
                    services: vec![service.clone()],
                    kind: ErrorKind::InvalidReference,
                    detail: e.to_string(),
                }),
            }
        }
        let asks: Vec<(Ask, UpdatePolicy)> = by_ref
            .keys()
            .map(|a| (a.clone(), policies[a].clone()))
            .collect();
        let results = self.lookup_all(&asks).await;
        let mut out: HashMap<String, ResolvedImage> = HashMap::new();
        for ((ask, _), result) in asks.iter().zip(results) {
            let users = &by_ref[ask];
            let r = &ask.image;
            match result {
                Ok(l) => {
                    for (service, written) in users {
                        out.insert(
                            service.clone(),
                            ResolvedImage {
                                reference: written.clone(),
                                repository: r.repository(),
                                tag: l.tag.clone().or_else(|| r.tag.clone()),
                                digest: l.digest.clone(),
                                index_digest: l.index_digest.clone(),
                                platform_digest: l.platform_digest.clone(),
                                source: l.source,
                                held_back: l.held_back.clone(),
                            },
                        );
                    }
                }
                Err(mut e) => {
                    e.image = users[0].1.clone();
                    e.services = users.iter().map(|(s, _)| s.clone()).collect();
                    errors.push(e);
                }
            }
        }
        let found = wanted
            .keys()
            .filter_map(|s| out.remove(s).map(|r| (s.clone(), r)))
            .collect();
        (found, errors)
    }

    /// Looks each reference up (pinned ones need no lookup); results in the same order.
    async fn lookup_all(&self, asks: &[(Ask, UpdatePolicy)]) -> Vec<Result<Lookup, RegistryError>> {
        let to_ask: Vec<&ImageRef> = asks
            .iter()
            .map(|(a, _)| &a.image)
            .filter(|r| !r.is_pinned())
            .collect();
        let registries: BTreeSet<String> = to_ask.iter().map(|r| r.registry.clone()).collect();
        // Credentials once per registry (helpers are processes: run them off the runtime).
        let mut auths: HashMap<String, Result<Auth, String>> = HashMap::new();
        let creds = futures_util::future::join_all(registries.iter().map(|reg| {
            let sample = to_ask
                .iter()
                .find(|r| &r.registry == reg)
                .expect("registry of a reference");
            credentials::registry_auth(sample.credential_server(), self.opts.docker_config.clone())
        }))
        .await;
        for (reg, c) in registries.iter().zip(creds) {
            auths.insert(reg.clone(), c);
        }
        let limits: HashMap<String, Arc<Semaphore>> = registries
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    Arc::new(Semaphore::new(self.opts.per_registry_limit.max(1))),
                )
            })
            .collect();
        let futures = asks.iter().map(|(ask, policy)| {
            let auths = &auths;
            let limits = &limits;
            let r = &ask.image;
            async move {
                if let Some(d) = &r.digest {
                    return Ok(Lookup {
                        digest: d.clone(),
                        index_digest: None,
                        platform_digest: None,
                        source: Source::Pinned,
                        tag: None,
                        held_back: Vec::new(),
                    });
                }
                let fail = |kind, detail: String| RegistryError {
                    image: r.to_string(),
                    registry: r.registry.clone(),
                    services: Vec::new(),
                    kind,
                    detail,
                };
                let auth = match &auths[&r.registry] {
                    Ok(a) => a.clone(),
                    Err(e) => return Err(fail(ErrorKind::Credentials, e.clone())),
                };
                let _permit = limits[&r.registry]
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                self.lookup_timed(ask, policy, &auth)
                    .await
                    .map_err(|(kind, detail)| fail(kind, detail))
            }
        });
        futures_util::future::join_all(futures).await
    }

    /// One lookup within the time allowed (four times as long with a policy: a track reads a
    /// tag list and, with a cooldown, a manifest and config per candidate).
    async fn lookup_timed(
        &self,
        ask: &Ask,
        policy: &UpdatePolicy,
        auth: &Auth,
    ) -> Result<Lookup, (ErrorKind, String)> {
        let (found, limit) = if policy.is_none() {
            (self.lookup(&ask.image, auth).boxed(), self.opts.timeout)
        } else {
            let f = self.lookup_policy(ask, policy, auth).boxed();
            (f, self.opts.timeout * 4)
        };
        match tokio::time::timeout(limit, found).await {
            Ok(Err((ErrorKind::Timeout, _))) | Err(_) => {
                Err((ErrorKind::Timeout, timeout_text(limit)))
            }
            Ok(other) => other,
        }
    }

    /// HEAD the tag; GET the manifest by digest only when the per-platform digest is wanted and
    /// not already known.
    async fn lookup(&self, r: &ImageRef, auth: &Auth) -> Result<Lookup, (ErrorKind, String)> {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        let tag = r.tag.as_deref().unwrap_or("latest");
        let digest = Repo::new(r, auth).manifest_digest(tag).await?;
        tracing::debug!(image = %r, %digest, "resolved");
        self.finish(r, auth, digest).await
    }

    /// The lookup of a service with an update policy: the candidates (the track's versions
    /// highest first, or the written tag), each probed for its digest and, with a cooldown,
    /// its config's `created`, until one is taken; nothing taken keeps what is current, or
    /// else the tag as written.
    async fn lookup_policy(
        &self,
        ask: &Ask,
        policy: &UpdatePolicy,
        auth: &Auth,
    ) -> Result<Lookup, (ErrorKind, String)> {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let r = &ask.image;
        let written = r.tag.clone().unwrap_or_else(|| "latest".into());
        let tags = match &policy.track {
            Some(t) => {
                self.counters.tag_lists.fetch_add(1, Ordering::Relaxed);
                let tags = tags::list_tags(&Repo::new(r, auth)).await?;
                let order = crate::track::offer_order(policy, &written, &tags);
                if order.is_empty() {
                    return Err((
                        ErrorKind::NotFound,
                        format!(
                            "no tag of {} matches x-composeops.track {:?} (tags: {})",
                            r.repository(),
                            t.range,
                            sample(&tags)
                        ),
                    ));
                }
                order
            }
            None => vec![written.clone()],
        };
        let current = ask.current.as_ref().map(|(t, d)| (t.as_str(), d.as_str()));
        let mut selection = Selection::new(policy, chrono::Utc::now(), current);
        let mut taken = None;
        for tag in &tags {
            let probe = if policy.cooldown.is_some() {
                self.counters.configs.fetch_add(1, Ordering::Relaxed);
                tags::probe(&Repo::new(r, auth), &self.opts.platform, tag).await?
            } else {
                let d = self.head(r, tag, auth).await?;
                crate::track::Probe {
                    tag: tag.clone(),
                    digest: d,
                    created: None,
                }
            };
            if selection.offer(&probe) {
                taken = Some(probe);
                break;
            }
        }
        let mut held_back = selection.held_back;
        let (tag, digest) = match (taken, &ask.current) {
            (Some(p), _) => (p.tag, p.digest),
            (None, Some((t, d))) => (t.clone(), d.clone()),
            (None, None) => {
                // Nothing older is known: the tag the compose file names is taken as written.
                let d = match held_back.iter().find(|h| h.tag == written) {
                    Some(h) => h.digest.clone(),
                    None => self.head(r, &written, auth).await?,
                };
                held_back.retain(|h| h.tag != written);
                (written.clone(), d)
            }
        };
        let mut tagged = r.clone();
        tagged.tag = Some(tag.clone());
        let mut found = self.finish(&tagged, auth, digest).await?;
        found.tag = Some(tag);
        found.held_back = held_back;
        Ok(found)
    }

    /// HEAD of `tag` in `r`'s repository: the digest it points to now.
    async fn head(
        &self,
        r: &ImageRef,
        tag: &str,
        auth: &Auth,
    ) -> Result<String, (ErrorKind, String)> {
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        Repo::new(r, auth).manifest_digest(tag).await
    }

    /// The lookup of a digest found for `r`: what the lock knows of it, and the per-platform
    /// manifest when that is wanted and not known.
    async fn finish(
        &self,
        r: &ImageRef,
        auth: &Auth,
        digest: String,
    ) -> Result<Lookup, (ErrorKind, String)> {
        let mut found = Lookup {
            digest: digest.clone(),
            index_digest: None,
            platform_digest: None,
            source: Source::Registry,
            tag: None,
            held_back: Vec::new(),
        };
        if let Some(k) = self.opts.known.get(&digest) {
            found.index_digest = k.index_digest.clone();
            found.platform_digest = k.platform_digest.clone();
        }
        if self.opts.platform_manifests && found.platform_digest.is_none() {
            self.counters.gets.fetch_add(1, Ordering::Relaxed);
            let body = Repo::new(r, auth).manifest(&digest).await?.body;
            match platform::classify(&body, &self.opts.platform)
                .map_err(|e| (ErrorKind::Malformed, e))?
            {
                platform::ManifestKind::Image => found.platform_digest = Some(digest),
                platform::ManifestKind::Index { platform_digest } => {
                    found.index_digest = Some(digest);
                    found.platform_digest = Some(platform_digest);
                }
            }
        }
        Ok(found)
    }
}

/// The digest an engine image came from, for `reference`'s repository, read from the image's
/// `RepoDigests` (`nginx@sha256:…`, `127.0.0.1:5000/app@sha256:…`); names are compared after
/// normalisation, so `nginx` matches `docker.io/library/nginx`. `None` when the image was not
/// pulled from that repository (built locally, or pulled under another name).
pub fn digest_from_repo_digests(repo_digests: &[String], reference: &str) -> Option<String> {
    let wanted = ImageRef::parse(reference).ok()?.repository();
    repo_digests.iter().find_map(|rd| {
        let r = ImageRef::parse(rd).ok()?;
        if r.repository() == wanted {
            r.digest
        } else {
            None
        }
    })
}

/// Convenience for callers that resolve once: a fresh [`Resolver`] over `project`.
pub async fn resolve_services(
    project: &Project,
    opts: &ResolveOptions,
) -> Result<IndexMap<String, ResolvedImage>, ResolveError> {
    Resolver::new(opts.clone()).resolve_services(project).await
}

/// A few tags, for an error message.
fn sample(tags: &[String]) -> String {
    match tags.len() {
        0 => "none".into(),
        n if n <= 12 => tags.join(", "),
        n => format!("{}, … ({n} in all)", tags[..12].join(", ")),
    }
}

fn timeout_text(t: Duration) -> String {
    format!("{} s", t.as_secs_f32())
}

/// rustls needs a process-wide crypto provider; ring builds without cmake. Installing twice is
/// harmless (the second attempt is refused and ignored).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn repo_digests_are_matched_by_normalised_repository() {
        let rds = vec![format!("nginx@{D1}"), format!("127.0.0.1:5000/app@{D2}")];
        assert_eq!(
            digest_from_repo_digests(&rds, "docker.io/library/nginx:1.27").as_deref(),
            Some(D1)
        );
        assert_eq!(
            digest_from_repo_digests(&rds, "127.0.0.1:5000/app:v1").as_deref(),
            Some(D2)
        );
        assert_eq!(
            digest_from_repo_digests(&rds, "127.0.0.1:5000/other:v1"),
            None
        );
        assert_eq!(digest_from_repo_digests(&[], "nginx"), None);
    }

    #[test]
    fn services_without_a_registry_image_are_skipped() {
        let mut s = Service {
            image: Some("app:v1".into()),
            ..Default::default()
        };
        assert_eq!(registry_image(&s), Some("app:v1"));
        s.pull_policy = Some("never".into());
        assert_eq!(registry_image(&s), None);
        s.pull_policy = None;
        s.extra
            .insert("build".into(), serde_json::json!({"context": "."}));
        assert_eq!(registry_image(&s), None);
        assert_eq!(registry_image(&Service::default()), None);
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = RegistryError {
            image: "127.0.0.1:5000/app:v1".into(),
            registry: "127.0.0.1:5000".into(),
            services: vec!["web".into(), "worker".into()],
            kind: ErrorKind::Unauthorized,
            detail: "401".into(),
        };
        let m = e.to_string();
        assert!(
            m.starts_with("service web, worker: registry 127.0.0.1:5000 refused access"),
            "{m}"
        );
        assert!(
            m.contains("run `docker login 127.0.0.1:5000` or set DOCKER_CONFIG"),
            "{m}"
        );
    }
}
