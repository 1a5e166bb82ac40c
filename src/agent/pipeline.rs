//! The real [`Reconciler`]: the library's pipeline, stage by stage.
//!
//! desired: `load` -> digests (`resolve` against the registry, or `lock::locked_images` with
//! `--locked`) -> make those exact images present (`pull::desired_images` on `repo@digest`).
//! converge: project lock -> `apply::recover` -> `observe` -> `plan::plan` -> `Applier::apply`.
//!
//! Tags are looked up in the registry only on an image check (or a forced sync) and when a
//! reference is new; other wake-ups reuse the digest found last time, so editing a file never
//! sneaks an image update in ahead of the schedule the operator chose.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use indexmap::IndexMap;

use super::reconciler::{
    fingerprint, Converged, DesiredState, ErrorKind, ProjectSource, ReconcileError, Reconciler,
    Result, RunOptions, ServiceOutcome, ServiceResult,
};
use crate::apply::{recover, Applier, ApplyOptions, Outcome};
use crate::engine::Engine;
use crate::journal::{Journal, ProjectLock};
use crate::load::LoadOptions;
use crate::model::Project;
use crate::plan::{self, Desired, PlanOptions, ServiceAction};
use crate::pull::{desired_images, PullMode};
use crate::resolve::{ResolveOptions, ResolvedImage, Resolver};

/// Settings of the pipeline that do not change between runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// `-H`/DOCKER_HOST.
    pub host: Option<String>,
    /// Journal and project locks live here (shared with `composeops apply --state-dir`).
    pub state_dir: PathBuf,
    pub wait_timeout: Duration,
    /// How long to wait for a `composeops apply` of the same project to finish.
    pub lock_timeout: Duration,
}

pub struct Pipeline {
    opts: PipelineOptions,
    /// (project id, reference as written) -> digest found at the last lookup.
    digests: Mutex<HashMap<(String, String), ResolvedImage>>,
}

pub struct Prepared {
    engine: Engine,
    desired: Desired,
}

fn err(kind: ErrorKind) -> impl Fn(anyhow::Error) -> ReconcileError {
    move |e| ReconcileError::new(kind, format!("{e:#}"))
}

impl Pipeline {
    pub fn new(opts: PipelineOptions) -> Pipeline {
        Pipeline {
            opts,
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// Service -> registry digest: from the lock (`--locked`), else from the cache, asking the
    /// registry for what is missing (everything, when `refresh`).
    async fn digests(
        &self,
        id: &str,
        project: &Project,
        opts: &RunOptions,
    ) -> Result<IndexMap<String, ResolvedImage>> {
        if opts.locked {
            let lock = crate::lock::read_for_locked(project)
                .map_err(|e| ReconcileError::new(ErrorKind::Load, e.to_string()))?;
            return crate::lock::locked_images(project, &lock)
                .map_err(|e| ReconcileError::new(ErrorKind::Load, e.to_string()));
        }
        let wanted: IndexMap<String, String> = project
            .services
            .iter()
            .filter_map(|(n, s)| {
                crate::resolve::registry_image(s).map(|i| (n.clone(), i.to_string()))
            })
            .collect();
        let mut out = IndexMap::new();
        let mut missing = IndexMap::new();
        {
            let cache = self.digests.lock().unwrap_or_else(|p| p.into_inner());
            for (svc, reference) in &wanted {
                match cache.get(&(id.to_string(), reference.clone())) {
                    Some(r) if !opts.refresh_images => {
                        out.insert(svc.clone(), r.clone());
                    }
                    _ => {
                        missing.insert(svc.clone(), reference.clone());
                    }
                }
            }
        }
        if !missing.is_empty() {
            let resolver = Resolver::new(ResolveOptions::default());
            let found = resolver
                .resolve_named(&missing)
                .await
                .map_err(|e| ReconcileError::new(ErrorKind::Registry, e.to_string()))?;
            let mut cache = self.digests.lock().unwrap_or_else(|p| p.into_inner());
            for (svc, r) in found {
                cache.insert((id.to_string(), r.reference.clone()), r.clone());
                out.insert(svc, r);
            }
        }
        Ok(out)
    }
}

impl Reconciler for Pipeline {
    type Prepared = Prepared;

    fn desired<'a>(
        &'a self,
        src: &'a ProjectSource,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<(DesiredState, Prepared)>> {
        async move {
            let dir = src.dir.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let mut lo = LoadOptions::from_process();
                lo.cwd = dir;
                // These name one project; each of the agent's projects has its own (a project's
                // .env may still set them).
                lo.environ.shift_remove("COMPOSE_PROJECT_NAME");
                lo.environ.shift_remove("COMPOSE_FILE");
                crate::load::load(&lo)
            })
            .await
            .map_err(|e| ReconcileError::new(ErrorKind::Other, e.to_string()))?
            .map_err(|e| ReconcileError::new(ErrorKind::Load, e.to_string()))?;
            for w in &loaded.warnings {
                tracing::warn!(project = %src.id, "{w}");
            }
            let project = loaded.project;
            let resolved = self.digests(&src.id, &project, opts).await?;

            // Make exactly those images present: pull `repo@digest`, never the tag.
            let engine = Engine::connect(self.opts.host.as_deref())
                .await
                .map_err(err(ErrorKind::Engine))?;
            let mut warnings = Vec::new();
            let crate::pull::Images {
                images,
                run_from,
                local: _,
            } = desired_images(
                &engine,
                &project,
                PullMode::Policy,
                Some(&resolved),
                &mut warnings,
            )
            .await
            .map_err(err(ErrorKind::Registry))?;
            for w in warnings {
                tracing::warn!(project = %src.id, "{w}");
            }
            let digests: BTreeMap<String, String> = resolved
                .iter()
                .map(|(s, r)| (s.clone(), r.digest.clone()))
                .collect();
            let project_json = serde_json::to_vec(&project.to_json()).unwrap_or_default();
            let digests_json = serde_json::to_vec(&digests).unwrap_or_default();
            let fp = fingerprint(&[
                opts.project_revision.as_deref().unwrap_or("").as_bytes(),
                &project_json,
                &digests_json,
            ]);
            let state = DesiredState {
                project_name: project.name.clone(),
                revision: opts.revision.clone(),
                digests,
                fingerprint: fp,
            };
            Ok((
                state,
                Prepared {
                    engine,
                    desired: Desired {
                        project,
                        images,
                        run_from,
                    },
                },
            ))
        }
        .boxed()
    }

    fn pending<'a>(
        &'a self,
        _src: &'a ProjectSource,
        prepared: &'a Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            let (_, plan) =
                observe_and_plan(&prepared.engine, &prepared.desired, opts.prune).await?;
            Ok(summary(&plan))
        }
        .boxed()
    }

    fn converge<'a>(
        &'a self,
        _src: &'a ProjectSource,
        prepared: Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Converged>> {
        async move {
            let Prepared { engine, desired } = prepared;
            let name = desired.project.name.clone();
            let state_dir = self.opts.state_dir.clone();
            let timeout = self.opts.lock_timeout;
            let _lock = tokio::task::spawn_blocking({
                let name = name.clone();
                move || ProjectLock::acquire(&state_dir, &name, timeout)
            })
            .await
            .map_err(|e| ReconcileError::new(ErrorKind::Other, e.to_string()))?
            .map_err(err(ErrorKind::Other))?;
            let journal = Journal::new(&self.opts.state_dir, &name);
            recover(&engine, &journal)
                .await
                .map_err(err(ErrorKind::Engine))?;
            let (observed, plan) = observe_and_plan(&engine, &desired, opts.prune).await?;
            let summary = summary(&plan);
            let actions: HashMap<String, ServiceAction> = plan
                .services
                .iter()
                .map(|s| (s.service.clone(), s.action))
                .collect();
            if !plan.has_changes() {
                return Ok(Converged {
                    plan: summary,
                    services: plan
                        .services
                        .iter()
                        .map(|s| ServiceOutcome {
                            service: s.service.clone(),
                            result: ServiceResult::Unchanged,
                            detail: String::new(),
                            logs: vec![],
                        })
                        .collect(),
                });
            }
            let applier = Applier {
                engine: &engine,
                desired: &desired,
                journal: &journal,
                opts: ApplyOptions {
                    wait_timeout: self.opts.wait_timeout,
                    cleanup_failed: false,
                    // The git revision each container was deployed from.
                    extra_labels: opts
                        .revision
                        .iter()
                        .map(|r| (crate::spec::LABEL_REVISION.to_string(), r.clone()))
                        .collect(),
                },
            };
            let report = applier
                .apply(&plan, &observed)
                .await
                .map_err(err(ErrorKind::Engine))?;
            let services = report
                .services
                .into_iter()
                .map(|s| {
                    let created = actions.get(&s.service) == Some(&ServiceAction::Create);
                    let result = match s.outcome {
                        Outcome::Applied if created => ServiceResult::Created,
                        Outcome::Applied => ServiceResult::Updated,
                        Outcome::Unchanged => ServiceResult::Unchanged,
                        Outcome::RolledBack => ServiceResult::RolledBack,
                        Outcome::RollbackFailed | Outcome::Failed | Outcome::Skipped => {
                            ServiceResult::Failed
                        }
                    };
                    let mut logs = s.logs;
                    logs.extend(s.health_log.into_iter().map(|l| format!("health: {l}")));
                    ServiceOutcome {
                        service: s.service,
                        result,
                        detail: s.message.unwrap_or_else(|| s.outcome.as_str().to_string()),
                        logs,
                    }
                })
                .collect();
            Ok(Converged {
                plan: summary,
                services,
            })
        }
        .boxed()
    }
}

async fn observe_and_plan(
    engine: &Engine,
    desired: &Desired,
    prune: bool,
) -> Result<(crate::observe::Observed, plan::Plan)> {
    let name = &desired.project.name;
    let known = desired
        .images
        .values()
        .filter_map(|i| i.digest.clone())
        .collect();
    let observed = crate::observe::observe(engine, name, &known)
        .await
        .map_err(err(ErrorKind::Engine))?;
    let plan = plan::plan(desired, &observed, PlanOptions { prune });
    for w in &plan.warnings {
        tracing::warn!(project = %name, "{w}");
    }
    Ok((observed, plan))
}

/// One line per action: `create network x`, `recreate web (image …: a -> b)`.
fn summary(plan: &plan::Plan) -> Vec<String> {
    let mut out = Vec::new();
    for n in &plan.networks {
        out.push(format!("create network {}", n.name));
    }
    for v in &plan.volumes {
        out.push(format!("create volume {}", v.name));
    }
    for o in plan.orphans.iter().filter(|o| o.remove) {
        out.push(format!("remove orphan {}", o.name));
    }
    for s in &plan.services {
        if s.action != ServiceAction::Unchanged {
            let action = serde_json::to_value(s.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let why = if s.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.reasons.join("; "))
            };
            out.push(format!("{action} {}{why}", s.service));
        }
    }
    out
}
