//! `converge`: the pipeline from a loaded project to a plan (and, in the CLI, to apply):
//! recover an interrupted run, make images present, observe, plan.

use std::path::Path;

use anyhow::Result;
use indexmap::IndexMap;

use crate::apply::recover;
use crate::engine::Engine;
use crate::journal::{Journal, ProjectLock};
use crate::model::Project;
use crate::observe::{observe, Observed};
use crate::plan::{self, Desired, Plan, PlanOptions};
use crate::pull::{desired_images, PullMode};
use crate::resolve::{registry_image, ResolveOptions, ResolvedImage, Resolver};

/// Where each service's image digest comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// The local images only (`--offline`): what Compose does.
    Local,
    /// Each tag resolved to its registry digest now (one HEAD per distinct image); pulled and
    /// run by that digest, so what was planned is what runs even if the tag moves meanwhile.
    Registry,
    /// The digests pinned in composeops.lock (`--locked`); no registry request.
    Locked,
}

pub struct Planned {
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
}

/// Plans `project`. `lock_held`: the caller (apply) holds the project lock; otherwise (plan)
/// recovery runs only if the lock is free, so a plan never undoes a running apply's work.
pub async fn plan_project(
    engine: &Engine,
    project: Project,
    state_dir: &Path,
    opts: PlanOptions,
    mode: PullMode,
    lock_held: bool,
    source: ImageSource,
) -> Result<Planned> {
    let journal = Journal::new(state_dir, &project.name);
    let mut warnings = Vec::new();
    // Registry lookups start first and run beside the engine requests: building the registry
    // client (its TLS root store) costs more CPU than the whole no-op reconcile, and a second
    // worker thread hides it behind recovery and observation.
    let resolving = (source == ImageSource::Registry).then(|| {
        let p = project.clone();
        tokio::spawn(async move {
            let mut w = Vec::new();
            let found = registry_digests(&p, &mut w).await;
            (found, w)
        })
    });
    if lock_held {
        recover(engine, &journal).await?;
    } else if journal.path().exists() {
        match ProjectLock::try_acquire(state_dir, &project.name)? {
            Some(_lock) => {
                recover(engine, &journal).await?;
            }
            None => warnings.push(format!(
                "an apply of {} is running: this plan shows the engine mid-update",
                project.name
            )),
        }
    }
    // While the registry answers, observe (the desired images are not known yet, so observe
    // inspects the running ones itself).
    let early = match &resolving {
        Some(_) => Some(observe(engine, &project.name, &Default::default()).await?),
        None => None,
    };
    let pinned = match (source, resolving) {
        // --locked: digests from composeops.lock, no registry request (issue 4's lock module).
        (ImageSource::Locked, _) => {
            let lock = crate::lock::read_for_locked(&project)?;
            Some(crate::lock::locked_images(&project, &lock)?)
        }
        (ImageSource::Registry, Some(task)) => {
            let (found, w) = task.await?;
            warnings.extend(w);
            crate::apply::pause_at("resolved").await;
            Some(found)
        }
        _ => None,
    };
    let crate::pull::Images {
        images,
        run_from,
        local,
    } = match desired_images(engine, &project, mode, pinned.as_ref(), &mut warnings).await {
        Ok(i) => i,
        // What the registry lookups found is often why the pull failed: say both.
        Err(e) if !warnings.is_empty() => {
            anyhow::bail!("{e:#}\n{}", warnings.join("\n"))
        }
        Err(e) => return Err(e),
    };
    let mut observed = match early {
        Some(o) => o,
        None => {
            let mut known: std::collections::BTreeSet<String> = local.keys().cloned().collect();
            known.extend(images.values().filter_map(|i| i.digest.clone()));
            observe(engine, &project.name, &known).await?
        }
    };
    for (id, img) in local {
        observed.images.entry(id).or_insert(img);
    }
    let desired = Desired {
        project,
        images,
        run_from,
    };
    let mut plan = plan::plan(&desired, &observed, opts);
    warnings.extend(plan.warnings);
    plan.warnings = warnings;
    Ok(Planned {
        desired,
        observed,
        plan,
    })
}

/// Resolves every registry image of the project to its current digest. An image that cannot
/// be resolved (registry down, unknown tag, no credentials) is a warning, not an error: the
/// service then uses the local image as Compose would, and a missing image still fails in
/// [`desired_images`] before anything changes.
pub async fn registry_digests(
    project: &Project,
    warnings: &mut Vec<String>,
) -> IndexMap<String, ResolvedImage> {
    let mut wanted: IndexMap<String, String> = project
        .services
        .iter()
        .filter_map(|(n, s)| registry_image(s).map(|i| (n.clone(), i.to_string())))
        .collect();
    let resolver = Resolver::new(ResolveOptions::default());
    // The resolver remembers each lookup of this run, so retrying without the failed images
    // sends no request twice.
    loop {
        match resolver.resolve_named(&wanted).await {
            Ok(found) => return found,
            Err(e) => {
                let before = wanted.len();
                for err in e.errors {
                    warnings.push(format!("{err}; using the local image"));
                    for s in &err.services {
                        wanted.shift_remove(s);
                    }
                    if err.services.is_empty() {
                        wanted.retain(|_, i| *i != err.image);
                    }
                }
                if wanted.is_empty() || wanted.len() == before {
                    return IndexMap::new();
                }
            }
        }
    }
}
