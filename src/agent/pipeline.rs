//! The real [`Reconciler`]: the library's `converge` pipeline, the same calls `composeops apply`
//! makes. What the agent adds here is only its own: loading each project from its directory,
//! the memory of registry digests between runs, the git revision on the containers, and the
//! translation of the report into its notifications' terms.
//!
//! Tags are looked up in the registry only on an image check (or a forced sync) and when a
//! reference is new; other wake-ups reuse the digest found last time, so editing a file never
//! sneaks an image update in ahead of the schedule the operator chose. A registry that cannot
//! answer is a warning, as for `apply`: the digest found earlier (or the local image) is used.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::reconciler::{
    fingerprint, Converged, DesiredState, ErrorKind, ProjectSource, ReconcileError, Reconciler,
    Result, RunOptions, ServiceOutcome, ServiceResult,
};
use crate::apply::{ApplyOptions, Outcome};
use crate::converge::{self, DigestCache, DigestUse, ImageSource, PlanRequest, Planned, Prepared};
use crate::down::{self, Residue};
use crate::engine::EngineFlags;
use crate::plan::ServiceAction;
use crate::pull::PullMode;

/// Settings of the pipeline that do not change between runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// `-H` and `--context` (the environment and the docker CLI's config are read at each
    /// connection, as for the CLI).
    pub engine: EngineFlags,
    /// Journal and project locks live here (shared with `composeops apply --state-dir`).
    pub state_dir: PathBuf,
    pub wait_timeout: Option<Duration>,
    /// How long to wait for a `composeops apply` of the same project to finish.
    pub lock_timeout: Duration,
    /// An image check reuses a digest looked up less than this long ago.
    pub registry_ttl: Duration,
    /// Remove the images updates replaced after each apply (`--cleanup`).
    pub cleanup: bool,
    /// Must accept each plan that has changes before it is applied.
    pub gate: Option<crate::gate::Gate>,
}

pub struct Pipeline {
    opts: PipelineOptions,
    /// Registry digests found so far, per project.
    digests: DigestCache,
}

impl Pipeline {
    pub fn new(opts: PipelineOptions) -> Pipeline {
        Pipeline {
            opts,
            digests: DigestCache::default(),
        }
    }
}

/// Loads the project in `src.dir` with the same options the file watcher uses, so it wakes on
/// exactly the files read here.
async fn load(src: &ProjectSource) -> Result<crate::model::Project> {
    let dir = src.dir.clone();
    let loaded =
        tokio::task::spawn_blocking(move || crate::load::load(&super::watch::load_options(&dir)))
            .await
            .map_err(|e| ReconcileError::new(ErrorKind::InvalidInput, e.to_string()))?
            .map_err(|e| ReconcileError::new(ErrorKind::InvalidInput, format!("{e:#}")))?;
    for w in &loaded.warnings {
        tracing::warn!(project = %src.id, "{w}");
    }
    Ok(loaded.project)
}

impl Reconciler for Pipeline {
    type Prepared = Prepared;

    fn plan<'a>(
        &'a self,
        src: &'a ProjectSource,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<(DesiredState, Prepared)>> {
        async move {
            let project = load(src).await?;
            let req = PlanRequest {
                source: if opts.locked {
                    ImageSource::Locked
                } else {
                    ImageSource::Registry
                },
                pull: PullMode::Policy,
                prune: opts.prune,
                lock_held: true,
                digests: DigestUse {
                    cache: self.digests.clone(),
                    scope: src.id.clone(),
                    refresh: opts.refresh_images,
                    fresh_for: self.opts.registry_ttl,
                    // The agent's own digest memory answers first.
                    ahead: Default::default(),
                },
            };
            let state_dir = &self.opts.state_dir;
            let connecting = async { Ok((converge::connect(&self.opts.engine).await?, None)) };
            let prepared =
                converge::prepare(connecting, state_dir, project, &req, self.opts.lock_timeout)
                    .await?;
            for w in &prepared.planned.plan.warnings {
                tracing::warn!(project = %src.id, "{w}");
            }
            let state = desired_state(&prepared.planned, opts);
            Ok((state, prepared))
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        _src: &'a ProjectSource,
        prepared: Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Converged>> {
        async move {
            let Prepared {
                engine, planned, ..
            } = &prepared;
            let apply_opts = ApplyOptions {
                wait_timeout: self.opts.wait_timeout,
                cleanup_failed: false,
                // The git revision each container was deployed from.
                extra_labels: opts
                    .revision
                    .iter()
                    .map(|r| (crate::spec::LABEL_REVISION.to_string(), r.clone()))
                    .collect(),
                gate: self.opts.gate.clone(),
            };
            let report = converge::apply(engine, &self.opts.state_dir, planned, apply_opts).await?;
            if self.opts.cleanup {
                let project = &planned.desired.project.name;
                // A failed cleanup leaves images behind; the next apply tries again.
                if let Err(e) = crate::cleanup::cleanup(engine, &self.opts.state_dir, project).await
                {
                    tracing::warn!(project = %project, "image cleanup: {e}");
                }
            }
            Ok(converged(planned, report))
        }
        .boxed()
    }

    fn retire<'a>(&'a self, name: &'a str, remove: bool) -> BoxFuture<'a, Result<Residue>> {
        async move {
            let engine = converge::connect(&self.opts.engine).await?;
            Ok(if remove {
                let lock = self.opts.lock_timeout;
                down::remove_project(&engine, &self.opts.state_dir, name, lock).await?
            } else {
                down::residue(&engine, name).await?
            })
        }
        .boxed()
    }
}

/// What identifies this desired state, and what applying it would do.
fn desired_state(planned: &Planned, opts: &RunOptions) -> DesiredState {
    let project = &planned.desired.project;
    let digests: BTreeMap<String, String> = planned
        .digests
        .iter()
        .map(|(s, r)| (s.clone(), r.digest.clone()))
        .collect();
    let project_json = serde_json::to_vec(&project.to_json()).unwrap_or_default();
    let digests_json = serde_json::to_vec(&digests).unwrap_or_default();
    // A config file or a variable behind a secret can change with the compose files as they
    // were: a fix there is a new desired state too.
    let contents: BTreeMap<&String, Option<String>> = (planned.desired.files.iter())
        .map(|(s, f)| (s, f.label()))
        .collect();
    let contents_json = serde_json::to_vec(&contents).unwrap_or_default();
    let mut parts: Vec<&[u8]> = vec![
        opts.project_revision.as_deref().unwrap_or("").as_bytes(),
        &project_json,
        &digests_json,
    ];
    // Without configs or secrets, the fingerprint stays what it was (a remembered rollback
    // still matches).
    if !contents.is_empty() {
        parts.push(&contents_json);
    }
    let fp = fingerprint(&parts);
    DesiredState {
        project_name: project.name.clone(),
        revision: opts.revision.clone(),
        digests,
        fingerprint: fp,
        pending: planned.plan.actions(),
    }
}

/// The report in the terms of the agent's notifications and /status (created vs updated).
fn converged(planned: &Planned, report: crate::apply::Report) -> Converged {
    let actions: HashMap<&str, ServiceAction> = planned
        .plan
        .services
        .iter()
        .map(|s| (s.service.as_str(), s.action))
        .collect();
    let services = report
        .services
        .into_iter()
        .map(|s| {
            let created = actions.get(s.service.as_str()) == Some(&ServiceAction::Create);
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
    Converged {
        plan: planned.plan.actions(),
        services,
    }
}
