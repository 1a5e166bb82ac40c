//! `pull`: make each service's image present locally (honouring `pull_policy`) and fill
//! [`DesiredImage::digest`] with the local image id.
//!
//! A registry digest (from `resolve` or the lock) replaces the local id in the same field; plan
//! accepts either. An unreachable registry for an image that is present is only a warning.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::image_pull::pull;
use crate::model::Project;
use crate::observe::{inspect_images, ObservedImage};
use crate::plan::DesiredImage;
use crate::resolve::ResolvedImage;

/// What [`desired_images`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullMode {
    /// `plan`: never pull; a missing image has no digest (apply will pull it).
    Never,
    /// `apply`: pull as each service's pull_policy says.
    Policy,
}

/// Each service's image, and the reference to pull and create it from when that is not the
/// one written in the compose file (`--locked`: `repository@digest`).
pub struct Images {
    pub images: BTreeMap<String, DesiredImage>,
    pub run_from: BTreeMap<String, String>,
    /// The desired images found locally, by id, as inspected here (observe need not inspect
    /// them again, and plan compares digests with their repo digests).
    pub local: BTreeMap<String, ObservedImage>,
}

/// Images of every service: reference plus local image id, or, with `locked` (from
/// `composeops.lock`), the locked registry digest, pulled by digest. Errors (before anything
/// changes) when an image is missing and cannot be pulled (the registry's failure) or may not
/// be (invalid input: its pull_policy forbids it).
///
/// `observed` are the images of the running containers, already inspected: a reference one
/// of them is named by (tag or repo digest) is not inspected again, so a no-op run costs no
/// image request beyond observation's.
pub async fn desired_images(
    engine: &Engine,
    project: &Project,
    mode: PullMode,
    locked: Option<&IndexMap<String, ResolvedImage>>,
    observed: &BTreeMap<String, ObservedImage>,
    warnings: &mut Vec<String>,
) -> Result<Images> {
    // Built images first: a failed build stops the run before any pull or container change.
    let built =
        crate::build::build_images(engine, project, mode == PullMode::Policy, warnings).await?;
    let wanted = Wanted::of(project, &built.images, locked);
    let mut local: BTreeMap<String, ObservedImage> = built.local;
    let mut ids = present(engine, wanted.refs.keys(), observed, &mut local).await?;
    for (reference, (policy, services)) in &wanted.refs {
        let have = ids.get(reference).cloned().flatten();
        let want_pull = wants_pull(mode, policy, have.is_some(), reference, services)?;
        if mode == PullMode::Never && have.is_none() {
            warnings.push(format!(
                "image {reference} is not present locally: apply will pull it"
            ));
        }
        if !want_pull {
            continue;
        }
        match pull(engine, reference).await {
            Ok(()) => {
                let img =
                    after_pull(engine, reference, wanted.tag_as.get(reference), warnings).await?;
                ids.insert(reference.clone(), img.as_ref().map(|i| i.id.clone()));
                if let Some(i) = img {
                    local.insert(i.id.clone(), i);
                }
            }
            Err(e) if have.is_some() => {
                warnings.push(format!(
                    "cannot pull {reference} ({e:#}); using the local image"
                ));
            }
            Err(e) => {
                return Err(Error::RegistryUnavailable(format!(
                    "cannot pull image {reference} for service {}: {e:#}",
                    services.join(", ")
                )))
            }
        }
    }
    let run_from = wanted.run_from;
    let images = project
        .services
        .keys()
        .map(|name| {
            if let Some(b) = built.images.get(name) {
                return (name.clone(), b.clone());
            }
            let reference = crate::spec::image_reference(project, name);
            let digest = match locked.and_then(|l| l.get(name)) {
                Some(r) => Some(r.digest.clone()),
                None => ids.get(&reference).cloned().flatten(),
            };
            let pulled = run_from.get(name).unwrap_or(&reference);
            let local_id = ids.get(pulled).cloned().flatten();
            let image = DesiredImage {
                reference,
                digest,
                local_id,
                build: None,
            };
            (name.clone(), image)
        })
        .collect();
    Ok(Images {
        images,
        run_from,
        local,
    })
}

/// The references to make present, each with the strictest pull_policy of the services that
/// use it (always > missing > never/build) and those services; the reference each service is
/// created from when it is not the one written (`repository@digest`); and the local name an
/// image pulled by digest is tagged as.
struct Wanted {
    refs: BTreeMap<String, (String, Vec<String>)>,
    run_from: BTreeMap<String, String>,
    /// Pulled by a digest the tag was just resolved to: tagged locally as the tag, as
    /// `docker pull NAME:TAG` would, so Compose and `--offline` find it under its name.
    tag_as: BTreeMap<String, String>,
}

impl Wanted {
    fn of(
        project: &Project,
        built: &BTreeMap<String, DesiredImage>,
        locked: Option<&IndexMap<String, ResolvedImage>>,
    ) -> Wanted {
        let mut w = Wanted {
            refs: BTreeMap::new(),
            run_from: BTreeMap::new(),
            tag_as: BTreeMap::new(),
        };
        for (name, svc) in &project.services {
            if built.contains_key(name) {
                continue;
            }
            let mut reference = crate::spec::image_reference(project, name);
            let mut policy = svc.pull_policy.clone().unwrap_or_else(|| "missing".into());
            if let Some(r) = locked.and_then(|l| l.get(name)) {
                // Pinned by digest: pulling again cannot change it, so `always` is `missing`.
                let written = reference.clone();
                reference = r.pull_reference();
                w.run_from.insert(name.clone(), reference.clone());
                if r.source == crate::resolve::Source::Registry && !written.contains('@') {
                    // A tag moved by `x-composeops.track` is tagged as what it is
                    // (`app:1.2.1`), never as the tag written (`app:1.2.0`).
                    let name = if r.moved_tag().is_some() {
                        r.local_name()
                    } else {
                        written
                    };
                    w.tag_as.insert(reference.clone(), name);
                }
                if policy == "always" {
                    policy = "missing".into();
                }
            }
            let e = w
                .refs
                .entry(reference)
                .or_insert((policy.clone(), Vec::new()));
            if policy == "always" {
                e.0 = policy;
            }
            e.1.push(name.clone());
        }
        w
    }
}

/// The local image id of each reference (`None`: not present), taken from the observed images
/// of running containers when one of them is named by it, else inspected (all at once); the
/// images found are added to `local`.
async fn present(
    engine: &Engine,
    refs: impl Iterator<Item = &String>,
    observed: &BTreeMap<String, ObservedImage>,
    local: &mut BTreeMap<String, ObservedImage>,
) -> Result<BTreeMap<String, Option<String>>> {
    let mut found = Vec::new();
    let mut to_inspect = Vec::new();
    for r in refs {
        match observed.values().find(|i| i.named_by(r)) {
            Some(i) => found.push((r.clone(), Some(i.clone()))),
            None => to_inspect.push(r.clone()),
        }
    }
    if !to_inspect.is_empty() {
        let inspected = inspect_images(engine, to_inspect)
            .await
            .map_err(Error::of(ErrorKind::EngineUnavailable))?;
        found.extend(inspected);
    }
    let mut ids = BTreeMap::new();
    for (r, i) in found {
        ids.insert(r, i.as_ref().map(|i| i.id.clone()));
        if let Some(i) = i {
            local.insert(i.id.clone(), i);
        }
    }
    Ok(ids)
}

/// The image just pulled as `reference`, inspected, and tagged as `tag_as` when it was pulled
/// by digest (a failed tag is a warning: the image is there).
async fn after_pull(
    engine: &Engine,
    reference: &str,
    tag_as: Option<&String>,
    warnings: &mut Vec<String>,
) -> Result<Option<ObservedImage>> {
    let img = inspect_images(engine, vec![reference.to_string()])
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))?
        .pop()
        .and_then(|x| x.1);
    let parsed = tag_as.and_then(|w| crate::resolve::ImageRef::parse(w).ok().map(|r| (w, r)));
    if let Some((written, r)) = parsed {
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(&r.familiar_repository())
            .tag(r.tag.as_deref().unwrap_or("latest"))
            .build();
        if let Err(e) = engine.call().tag_image(reference, Some(opts)).await {
            warnings.push(format!("cannot tag {reference} as {written}: {e}"));
        }
    }
    Ok(img)
}

/// Whether `reference` is pulled, as its pull_policy says, for `mode`; an image that must be
/// present and may not be pulled (`never`, `build`) is invalid input.
fn wants_pull(
    mode: PullMode,
    policy: &str,
    have: bool,
    reference: &str,
    services: &[String],
) -> Result<bool> {
    Ok(match (mode, policy) {
        (PullMode::Never, _) => false,
        (_, "always") => true,
        (_, "never") | (_, "build") => {
            if !have {
                let fix = if policy == "build" {
                    "add a build: section or build it first"
                } else {
                    "pull it first"
                };
                return Err(Error::InvalidInput(format!(
                    "image {reference} (service {}) is not present locally and pull_policy is \
                     {policy}: {fix}",
                    services.join(", "),
                )));
            }
            false
        }
        // missing, if_not_present, daily, weekly, every_*: pull only when absent.
        _ => !have,
    })
}
