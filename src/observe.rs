//! `observe`: what the engine runs for a project, read by Compose's project label.
//!
//! One list of containers, one of networks, one of volumes; a container is inspected only when
//! it lacks composeops' spec label (made by `docker compose up`, to be compared field by field),
//! and each distinct image once. A no-op run therefore costs a handful of requests whatever the
//! number of services.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{is_not_found, Engine};
use crate::spec::{self, ImageDefaults, Spec};

/// Suffixes of the transitional names apply gives containers during a recreate.
pub const SUFFIX_NEW: &str = "-composeops-new";
pub const SUFFIX_OLD: &str = "-composeops-old";
pub const SUFFIX_FAILED: &str = "-composeops-failed";

/// The engine side of the project, as plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    /// Engine names of the project's networks and volumes (by project label).
    pub networks: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    /// Image id -> what it is known as (repo digests) and what it supplies to containers.
    pub images: BTreeMap<String, ObservedImage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedImage {
    /// `sha256:…` image id.
    pub id: String,
    pub repo_digests: Vec<String>,
    /// Tags naming this image (`nginx:1.27`): a reference found here needs no inspect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_tags: Vec<String>,
    pub defaults: ImageDefaults,
}

impl ObservedImage {
    /// True when `digest` (an image id or a manifest digest) names this image `id`.
    pub fn matches(&self, digest: &str) -> bool {
        self.id == digest
            || self
                .repo_digests
                .iter()
                .any(|r| r.rsplit_once('@').map(|x| x.1) == Some(digest))
    }

    /// True when `reference` (`repo:tag`, `repo@digest`) names this image, as its tags and
    /// repo digests say. Names are compared normalised (`nginx` is `docker.io/library/nginx:latest`).
    pub fn named_by(&self, reference: &str) -> bool {
        let Ok(wanted) = crate::resolve::ImageRef::parse(reference) else {
            return false;
        };
        let repository = wanted.repository();
        let same = |name: &String, by_digest: bool| {
            crate::resolve::ImageRef::parse(name).is_ok_and(|r| {
                r.repository() == repository
                    && if by_digest {
                        r.digest == wanted.digest
                    } else {
                        r.tag.as_deref().unwrap_or("latest")
                            == wanted.tag.as_deref().unwrap_or("latest")
                    }
            })
        };
        match wanted.digest {
            Some(_) => self.repo_digests.iter().any(|n| same(n, true)),
            None => self.repo_tags.iter().any(|n| same(n, false)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    /// created | running | paused | restarting | exited | dead …
    pub state: String,
    /// starting | healthy | unhealthy; `None` without a healthcheck.
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    pub oneoff: bool,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// Engine network names the container is attached to.
    pub networks: BTreeSet<String>,
    /// Named volumes mounted (engine names).
    pub volumes: BTreeSet<String>,
    /// Anonymous volumes: (target, volume name), carried over on recreate.
    pub anon_volumes: Vec<(String, String)>,
    /// composeops' spec (from its label), or the spec read back from inspect for others.
    pub spec: Option<Spec>,
    pub spec_hash: Option<String>,
    /// The containers its `service:X`, `volumes_from` and links pointed at when created: from
    /// composeops' label, or read back from inspect. `None` when unknown.
    pub shares: Option<crate::namespaces::Shares>,
}

impl Observed {
    /// Each service's [`Target`](crate::namespaces::Target) among the observed containers
    /// (one-offs and the transitional containers of an interrupted apply left out), as
    /// Compose's resolution of `service:X` sees them: the first by name is the one shared.
    pub(crate) fn targets(&self) -> BTreeMap<String, crate::namespaces::Target> {
        let mut by: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
        for c in &self.containers {
            if !c.oneoff && !c.transitional() && !c.service.is_empty() {
                by.entry(c.service.clone())
                    .or_default()
                    .push((c.name.as_str(), c.id.as_str()));
            }
        }
        by.into_iter()
            .map(|(svc, mut cs)| {
                cs.sort();
                let t = crate::namespaces::Target {
                    primary_id: cs.first().map(|(_, id)| id.to_string()),
                    names: cs.iter().map(|(n, _)| n.to_string()).collect(),
                };
                (svc, t)
            })
            .collect()
    }
}

impl ObservedContainer {
    /// Made by composeops (carries its spec label).
    pub fn is_own(&self) -> bool {
        self.spec_hash.is_some()
    }

    /// A transitional container of an interrupted or failed recreate.
    pub fn transitional(&self) -> bool {
        self.name.ends_with(SUFFIX_NEW)
            || self.name.ends_with(SUFFIX_OLD)
            || self.name.ends_with(SUFFIX_FAILED)
    }
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={project}", spec::LABEL_PROJECT)],
    )])
}

/// Reads the project's containers, networks and volumes, and the images of its containers
/// (each distinct image once; their tags and repo digests then spare
/// [`crate::pull::desired_images`] an inspect of a desired image that already runs).
pub async fn observe(engine: &Engine, project: &str) -> Result<Observed> {
    observe_expecting(engine, project, &[]).await
}

/// [`observe`], with the images `expected` (the references the project names) inspected
/// beside the lists rather than after them: when the containers run them, as on a no-op, no
/// image request waits for the container list. The expected images found are kept too, so
/// that [`crate::pull::desired_images`] need not inspect them again when they changed.
pub async fn observe_expecting(
    engine: &Engine,
    project: &str,
    expected: &[String],
) -> Result<Observed> {
    observe_awaiting(engine, project, std::future::ready(expected.to_vec())).await
}

/// [`observe_expecting`], with the expected images still to come: the lists go out at once,
/// the images are inspected as soon as `expected` yields them (for a caller that starts
/// observing before it has loaded the project).
pub async fn observe_awaiting(
    engine: &Engine,
    project: &str,
    expected: impl std::future::Future<Output = Vec<String>>,
) -> Result<Observed> {
    let filters = project_filter(project);
    let list = engine.call().list_containers(Some(
        ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build(),
    ));
    let nets = engine.call().list_networks(Some(
        ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build(),
    ));
    let vols = engine.call().list_volumes(Some(
        ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build(),
    ));
    let early = async {
        match expected.await {
            refs if refs.is_empty() => Vec::new(),
            refs => inspect_images(engine, refs)
                .await
                // Only a head start: what fails here is asked again below.
                .unwrap_or_default(),
        }
    };
    let (list, nets, vols, early) = futures_util::future::join4(list, nets, vols, early).await;
    let list = list.context("cannot list containers")?;
    let mut o = Observed {
        networks: nets
            .context("cannot list networks")?
            .into_iter()
            .filter_map(|n| n.name)
            .collect(),
        volumes: vols
            .context("cannot list volumes")?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect(),
        ..Default::default()
    };
    let mut to_inspect = Vec::new();
    for c in list {
        let oc = ObservedContainer::from_summary(c);
        if oc.spec.is_none() && !oc.oneoff {
            to_inspect.push(o.containers.len());
        }
        o.containers.push(oc);
    }
    inspect_unlabelled(engine, &mut o.containers, &to_inspect).await?;
    let ids: BTreeSet<String> = o
        .containers
        .iter()
        .map(|c| c.image_id.clone())
        .filter(|i| !i.is_empty())
        .collect();
    for img in early.into_iter().filter_map(|(_, i)| i) {
        o.images.insert(img.id.clone(), img);
    }
    let missing: Vec<String> = ids
        .into_iter()
        .filter(|i| !o.images.contains_key(i))
        .collect();
    for (id, img) in inspect_images(engine, missing).await? {
        if let Some(img) = img {
            o.images.insert(id, img);
        }
    }
    Ok(o)
}

impl ObservedContainer {
    /// What the container list says of a container (its spec and shares from composeops'
    /// labels; a container without them is inspected by [`inspect_unlabelled`]).
    fn from_summary(c: bollard::models::ContainerSummary) -> ObservedContainer {
        let labels: BTreeMap<String, String> =
            c.labels.clone().unwrap_or_default().into_iter().collect();
        let status = c.status.clone().unwrap_or_default();
        let health = if status.contains("(healthy)") {
            Some("healthy".to_string())
        } else if status.contains("(unhealthy)") {
            Some("unhealthy".to_string())
        } else if status.contains("(health: starting)") {
            Some("starting".to_string())
        } else {
            None
        };
        let mut oc = ObservedContainer {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            service: labels.get(spec::LABEL_SERVICE).cloned().unwrap_or_default(),
            number: labels
                .get(spec::LABEL_NUMBER)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            health,
            exit_code: exit_code(&status),
            oneoff: labels
                .get(spec::LABEL_ONEOFF)
                .map(|v| v == "True")
                .unwrap_or(false),
            image_id: c.image_id.clone().unwrap_or_default(),
            networks: c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(|n| n.keys().cloned().collect())
                .unwrap_or_default(),
            spec_hash: labels.get(spec::LABEL_SPEC_HASH).cloned(),
            spec: labels
                .get(spec::LABEL_SPEC)
                .and_then(|s| serde_json::from_str(s).ok()),
            shares: labels
                .get(spec::LABEL_SHARES)
                .and_then(|s| serde_json::from_str(s).ok()),
            labels,
            ..Default::default()
        };
        for m in c.mounts.unwrap_or_default() {
            if m.typ.as_deref() == Some("volume") {
                let name = m.name.unwrap_or_default();
                if spec::is_anonymous(&name) {
                    oc.anon_volumes
                        .push((m.destination.unwrap_or_default(), name));
                } else {
                    oc.volumes.insert(name);
                }
            }
        }
        oc
    }
}

/// Containers without composeops' spec label (created by Compose or by hand): their spec,
/// shares and health read back from an inspect, all at once.
async fn inspect_unlabelled(
    engine: &Engine,
    containers: &mut [ObservedContainer],
    which: &[usize],
) -> Result<()> {
    // Containers without composeops' spec: read their spec back from inspect.
    let inspections = futures_util::future::join_all(
        which
            .iter()
            .map(|&i| engine.call().inspect_container(&containers[i].id, None)),
    )
    .await;
    for (&i, r) in which.iter().zip(inspections) {
        match r {
            Ok(ins) => {
                let c = &mut containers[i];
                c.spec = Some(Spec::from_container(
                    &ins,
                    ins.config.as_ref().and_then(|c| c.image.as_deref()),
                ));
                c.shares = ins
                    .host_config
                    .as_ref()
                    .map(crate::namespaces::Shares::from_host_config);
                c.health = ins
                    .state
                    .as_ref()
                    .and_then(|s| s.health.as_ref())
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .filter(|s| !s.is_empty() && s != "none");
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).context("cannot inspect container"),
        }
    }
    Ok(())
}

/// Inspects each image (id or reference); `None` for images the engine does not have.
pub async fn inspect_images(
    engine: &Engine,
    refs: Vec<String>,
) -> Result<Vec<(String, Option<ObservedImage>)>> {
    let results =
        futures_util::future::join_all(refs.iter().map(|r| engine.call().inspect_image(r))).await;
    let mut out = Vec::new();
    for (r, res) in refs.into_iter().zip(results) {
        match res {
            Ok(img) => out.push((
                r,
                Some(ObservedImage {
                    id: img.id.clone().unwrap_or_default(),
                    repo_digests: img.repo_digests.clone().unwrap_or_default(),
                    repo_tags: img.repo_tags.clone().unwrap_or_default(),
                    defaults: img
                        .config
                        .as_ref()
                        .map(ImageDefaults::from_config)
                        .unwrap_or_default(),
                }),
            )),
            Err(e) if is_not_found(&e) => out.push((r, None)),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect image {r}")),
        }
    }
    Ok(out)
}

/// `Exited (3) 2 minutes ago` -> 3.
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn an_image_is_named_by_its_tags_and_repo_digests_normalised() {
        let img = ObservedImage {
            id: "sha256:abc".into(),
            repo_tags: vec!["nginx:latest".into(), "127.0.0.1:5000/app:v1".into()],
            repo_digests: vec![format!("nginx@{D}")],
            ..Default::default()
        };
        assert!(img.named_by("nginx"));
        assert!(img.named_by("docker.io/library/nginx:latest"));
        assert!(img.named_by("127.0.0.1:5000/app:v1"));
        assert!(img.named_by(&format!("docker.io/library/nginx@{D}")));
        assert!(
            !img.named_by("nginx:1.27"),
            "another tag may be another image"
        );
        assert!(!img.named_by("127.0.0.1:5000/app:v2"));
        assert!(!img.named_by(&format!("127.0.0.1:5000/app@{D}")));
        let other = D.replace('1', "2");
        assert!(!img.named_by(&format!("nginx@{other}")));
    }
}
