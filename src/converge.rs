//! `converge`: the one pipeline from a loaded project to a converged engine, shared by
//! `composeops plan`, `composeops apply` and the agent:
//!
//! ```text
//! resolve (registry | lock | local) ─┐
//!                                    ├─▶ desired images ─▶ plan ─▶ apply
//! recover (journal) ─▶ observe ──────┘
//! ```
//!
//! Callers differ only in what they ask for ([`PlanRequest`]): `plan` never pulls and recovers
//! only when no apply runs; `apply` and the agent hold the project lock, pull as the pull
//! policy says and then apply. The agent adds its memory of registry digests
//! ([`DigestCache`]) so that a file event never deploys an image update ahead of its image
//! schedule; everything else it decides with the same code as the CLI.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::apply::{recover, Applier, ApplyOptions, Outcome, Report, ServiceOutcome};
use crate::engine::{Engine, EngineFlags};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Journal, ProjectLock};
use crate::model::Project;
use crate::observe::{observe_expecting, Observed};
use crate::plan::{self, Desired, Plan, PlanOptions};
use crate::pull::{desired_images, PullMode};
use crate::resolve::ahead::{FoundAhead, LookupsAhead};
use crate::resolve::{
    registry_image, RegistryError, ResolveOptions, ResolvedImage, Resolver, Wanted,
};

/// Where each service's image digest comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The local images only (`--offline`): what Compose does.
    Local,
    /// Each tag resolved to its registry digest (one HEAD per distinct image, unless the
    /// [`DigestCache`] already holds it); pulled and run by that digest, so what was planned
    /// is what runs even if the tag moves meanwhile. A registry that cannot answer is a
    /// warning: the local image is used, as Compose would.
    Registry,
    /// The digests pinned in composeops.lock (`--locked`); no registry request.
    Locked,
    /// The digests a saved plan resolved (`apply FILE`); no registry request. Services absent
    /// use their local or built image, as they did when the plan was made.
    Saved(Arc<IndexMap<String, ResolvedImage>>),
}

/// Registry digests found by earlier runs, keyed by (scope, reference as written). The CLI
/// starts each run with an empty one; the agent keeps one for its lifetime, scoped by project.
/// Cheap to clone: clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct DigestCache {
    entries: Arc<Mutex<DigestEntries>>,
}

/// (scope, reference) -> the digest found, and when.
type DigestEntries = HashMap<(String, String), (ResolvedImage, Instant)>;

impl DigestCache {
    fn get(&self, scope: &str, reference: &str) -> Option<(ResolvedImage, Instant)> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.get(&(scope.to_string(), reference.to_string())).cloned()
    }

    fn put(&self, scope: &str, r: &ResolvedImage) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.insert(
            (scope.to_string(), r.reference.clone()),
            (r.clone(), Instant::now()),
        );
    }
}

/// How the registry digests of a run are found.
#[derive(Debug, Clone, Default)]
pub struct DigestUse {
    pub cache: DigestCache,
    /// Cache key prefix (the agent's project id; empty for the CLI).
    pub scope: String,
    /// Ask the registry even for references in the cache (image check, forced sync).
    pub refresh: bool,
    /// A cached digest younger than this is reused even when `refresh` is set, so wake-ups
    /// that arrive together cost one lookup per reference.
    pub fresh_for: Duration,
    /// Lookups the CLI started before the load, on the references the last run remembered
    /// (see [`crate::resolve::ahead`]).
    pub ahead: LookupsAhead,
}

/// What a caller asks of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub source: ImageSource,
    pub pull: PullMode,
    pub prune: bool,
    /// The caller holds the project lock (apply, agent): an interrupted run is recovered first.
    /// Otherwise (`plan`) recovery runs only if the lock is free, so a plan never undoes a
    /// running apply's work.
    pub lock_held: bool,
    pub digests: DigestUse,
}

/// A plan and everything apply needs to execute it.
pub struct Planned {
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
    /// The registry (or lock) digest each service resolved to; services that use a local or
    /// built image are absent.
    pub digests: IndexMap<String, ResolvedImage>,
}

/// Connects to the engine the flags, DOCKER_HOST, DOCKER_CONTEXT or the docker CLI's current
/// context select (else the local socket), as Docker Compose does.
pub async fn connect(flags: &EngineFlags) -> Result<Engine> {
    Engine::connect(flags)
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))
}

/// Takes the project's locks on this engine, waiting up to `timeout` for another run to
/// finish, then recovers what a killed run under another state directory left mid-update.
pub async fn lock(
    engine: &Engine,
    state_dir: &Path,
    project: &str,
    timeout: Duration,
) -> Result<ProjectLock> {
    let (dir, name) = (state_dir.to_path_buf(), project.to_string());
    let endpoint = engine.endpoint().to_string();
    // Free locks are taken at once; only a wait for another run needs a blocking thread.
    let free =
        ProjectLock::try_acquire(&dir, &endpoint, &name).map_err(Error::of(ErrorKind::Conflict))?;
    let lock = match free {
        Some(l) => l,
        None => tokio::task::spawn_blocking(move || {
            ProjectLock::acquire(&dir, &endpoint, &name, timeout)
        })
        .await
        .map_err(Error::of(ErrorKind::Conflict))?
        .map_err(Error::of(ErrorKind::Conflict))?,
    };
    recover_previous(engine, &lock).await?;
    Ok(lock)
}

/// Recovers what the lock's previous holder, under another state directory, left mid-update.
async fn recover_previous(engine: &Engine, lock: &ProjectLock) -> Result<()> {
    if let Some(j) = &lock.other_journal {
        recover(engine, j)
            .await
            .map_err(Error::of(ErrorKind::Engine))?;
    }
    Ok(())
}

/// A plan, ready to apply, with the engine it was made against and the project lock held
/// until it is dropped.
pub struct Prepared {
    pub engine: Engine,
    pub planned: Planned,
    pub lock: ProjectLock,
}

/// A project's lock, taken, and its engine side observed, before its files were loaded (see
/// [`observe_ahead`]).
pub struct Ahead {
    project: String,
    /// Not yet [claimed](ProjectLock::claim): dropped unused when the guess was wrong, it
    /// leaves the engine lock's record of the previous holder as it was. `None` for `plan`,
    /// which observes without the lock.
    lock: Option<ProjectLock>,
    /// `None` when a journal says a run was interrupted: recovery comes first.
    observed: Option<Observed>,
}

/// Takes the lock of the project the files will most likely name (`-p`, COMPOSE_PROJECT_NAME
/// or the directory's name) and observes it, so that the engine's lists, the slowest part of
/// a no-op, run while the caller loads the files. Only when the lock is free and no journal
/// says a run was interrupted: anything else (a run to wait for, a recovery) is left to
/// [`prepare`], in its usual order. Observing under the lock is what makes the observation as
/// good as one made after the load: no other run can change the project in between. Without
/// `lock` (`plan`, which never waits for a run) the project is observed as [`plan`] would,
/// unless a journal asks for recovery first.
///
/// `expected` yields the images the project names, once it is loaded ([`expected_images`];
/// nothing if the load fails): they are inspected beside the lists.
pub async fn observe_ahead(
    engine: &Engine,
    state_dir: &Path,
    project: &str,
    lock: bool,
    expected: impl std::future::Future<Output = Vec<String>>,
) -> Option<Ahead> {
    let lock = match lock {
        true => Some(
            ProjectLock::try_acquire_unclaimed(state_dir, engine.endpoint(), project).ok()??,
        ),
        false => None,
    };
    let clean = lock.as_ref().is_none_or(|l| l.other_journal.is_none())
        && !Journal::new(state_dir, project).path().exists();
    let observed = match clean {
        true => crate::observe::observe_awaiting(engine, project, expected)
            .await
            .ok(),
        false => None,
    };
    Some(Ahead {
        project: project.to_string(),
        lock,
        observed,
    })
}

/// What `composeops apply` and the agent do before they apply: start the registry lookups,
/// then (while they run) wait for the engine connection, take the project lock and plan.
/// `connecting` is the connection under way: the CLI starts it before it loads the project,
/// with the project observed [ahead](observe_ahead) when it could; the agent passes
/// [`connect`] itself. The registry images planned are remembered in `state_dir` for the next
/// run's [lookups ahead](crate::resolve::ahead).
pub async fn prepare(
    connecting: impl std::future::Future<Output = Result<(Engine, Option<Ahead>)>>,
    state_dir: &Path,
    project: Project,
    req: &PlanRequest,
    lock_timeout: Duration,
) -> Result<Prepared> {
    let resolving = start_resolving(state_dir, &project, req);
    let (engine, ahead) = connecting.await?;
    // Observed ahead under another name (the files name the project otherwise): its lock is
    // released here, unclaimed, before the right one is taken.
    let (lock, observed) = match ahead.filter(|a| a.project == project.name) {
        Some(Ahead {
            lock: Some(mut lock),
            observed,
            ..
        }) => {
            lock.claim().map_err(Error::of(ErrorKind::Conflict))?;
            recover_previous(&engine, &lock).await?;
            (lock, observed)
        }
        // A wrong guess, or observed without the lock: taken now, as without a guess.
        _ => {
            let lock = self::lock(&engine, state_dir, &project.name, lock_timeout).await?;
            (lock, None)
        }
    };
    let planned = plan_observed(&engine, state_dir, project, req, resolving, observed).await?;
    if req.source == ImageSource::Registry {
        let project = &planned.desired.project;
        let refs = crate::resolve::ahead::plain_references(project);
        crate::resolve::ahead::remember(state_dir, &project.name, &refs);
    }
    Ok(Prepared {
        engine,
        planned,
        lock,
    })
}

/// What the registry lookups found, and their warnings.
type Found = (IndexMap<String, ResolvedImage>, Vec<String>);

/// Registry lookups under way (see [`start_resolving`]).
pub struct Resolving(Option<tokio::task::JoinHandle<Found>>);

/// Starts the registry lookups `req` asks for (none unless [`ImageSource::Registry`]) on the
/// runtime, to run beside whatever the caller does next: the round trips (and, the first time
/// an HTTPS registry is asked, loading the system's root certificates) cost as much as the
/// rest of a no-op reconcile, so a caller starts them before it reaches the engine and takes
/// the lock. Read-only: it changes nothing, on the engine or in the state directory.
pub fn start_resolving(state_dir: &Path, project: &Project, req: &PlanRequest) -> Resolving {
    Resolving((req.source == ImageSource::Registry).then(|| {
        let (p, digests) = (project.clone(), req.digests.clone());
        let deployed = deployed_with_policy(state_dir, project);
        tokio::spawn(async move {
            let mut w = Vec::new();
            let found = registry_digests(&p, &digests, &deployed, &mut w).await;
            (found, w)
        })
    }))
}

/// Plans `project`: resolves digests beside recovery and observation, makes the desired
/// images present (pulling only with [`PullMode::Policy`]), and plans. Changes nothing on the
/// engine but images and the recovery of an interrupted run.
pub async fn plan(
    engine: &Engine,
    state_dir: &Path,
    project: Project,
    req: &PlanRequest,
) -> Result<Planned> {
    let resolving = start_resolving(state_dir, &project, req);
    plan_resolving(engine, state_dir, project, req, resolving).await
}

/// [`plan`] with the registry lookups already started by [`start_resolving`] for the same
/// project and request.
pub async fn plan_resolving(
    engine: &Engine,
    state_dir: &Path,
    project: Project,
    req: &PlanRequest,
    resolving: Resolving,
) -> Result<Planned> {
    plan_observed(engine, state_dir, project, req, resolving, None).await
}

/// [`plan_resolving`] for `plan`, with the project observed [ahead](observe_ahead) of the
/// load when the guess of its name was right.
pub async fn plan_ahead(
    engine: &Engine,
    state_dir: &Path,
    project: Project,
    req: &PlanRequest,
    resolving: Resolving,
    ahead: Option<Ahead>,
) -> Result<Planned> {
    let observed = ahead
        .filter(|a| a.project == project.name)
        .and_then(|a| a.observed);
    plan_observed(engine, state_dir, project, req, resolving, observed).await
}

/// [`plan_resolving`], with the project already observed when `ahead` holds it.
async fn plan_observed(
    engine: &Engine,
    state_dir: &Path,
    project: Project,
    req: &PlanRequest,
    resolving: Resolving,
    ahead: Option<Observed>,
) -> Result<Planned> {
    let mut warnings = Vec::new();
    // What Compose would refuse only once a container exists (a missing file, an unset
    // variable) is refused here, before any engine request.
    let files = crate::configs::resolve(&project).map_err(|e| {
        let e = crate::load::locate_in_files(e, &project.config_files);
        Error::InvalidInput(e.to_string())
    })?;
    warnings.extend(crate::configs::warnings(&project));
    let mut observed = match ahead {
        Some(o) => o,
        None => {
            recover_interrupted(
                engine,
                state_dir,
                &project.name,
                req.lock_held,
                &mut warnings,
            )
            .await?;
            // While the registry answers, observe: the running containers' images, inspected
            // here, spare desired_images the inspect of a desired image that already runs.
            observe_project(engine, &project).await?
        }
    };
    tracing::debug!(containers = observed.containers.len(), "observed");
    let pinned = digests_to_deploy(&project, req, resolving, &mut warnings).await?;
    let pull = desired_images(
        engine,
        &project,
        req.pull,
        pinned.as_ref(),
        &observed.images,
        &mut warnings,
    );
    let images = match pull.await {
        Ok(i) => i,
        // What the registry lookups found is often why the pull failed: say both.
        Err(e) if !warnings.is_empty() => {
            let m = format!("{e}\n{}", warnings.join("\n"));
            return Err(Error::new(e.kind(), m));
        }
        Err(e) => return Err(e),
    };
    for (id, img) in images.local {
        observed.images.entry(id).or_insert(img);
    }
    let desired = Desired {
        project,
        images: images.images,
        run_from: images.run_from,
        files,
    };
    tracing::debug!("desired images present");
    let mut plan = plan::plan(&desired, &observed, PlanOptions { prune: req.prune });
    tracing::debug!(changes = plan.has_changes(), "planned");
    if let Some(p) = &pinned {
        note_tag_moves(&mut plan, p, state_dir);
    }
    warnings.extend(plan.warnings);
    plan.warnings = warnings;
    Ok(Planned {
        desired,
        observed,
        plan,
        digests: pinned.unwrap_or_default(),
    })
}

/// The digests to deploy: the saved plan's, the lock's, or what the registry lookups under
/// way found (their warnings added to `warnings`); `None` for local images (`--offline`).
async fn digests_to_deploy(
    project: &Project,
    req: &PlanRequest,
    resolving: Resolving,
    warnings: &mut Vec<String>,
) -> Result<Option<IndexMap<String, ResolvedImage>>> {
    Ok(match (&req.source, resolving.0) {
        (ImageSource::Saved(digests), _) => Some(digests.as_ref().clone()),
        (ImageSource::Locked, _) => {
            let lock = crate::lock::read_for_locked(project)
                .map_err(Error::of(ErrorKind::InvalidInput))?;
            Some(
                crate::lock::locked_images(project, &lock)
                    .map_err(Error::of(ErrorKind::InvalidInput))?,
            )
        }
        (ImageSource::Registry, Some(task)) => {
            let (found, w) = task.await.map_err(Error::of(ErrorKind::Engine))?;
            warnings.extend(w);
            crate::apply::pause_at("resolved").await;
            Some(found)
        }
        _ => None,
    })
}

/// Names the tag a tracked image moves from and to (`1.2.0 -> 1.2.1`) in the plan: the new tag
/// is the lock's or the registry's, the old one the image history's.
fn note_tag_moves(plan: &mut Plan, found: &IndexMap<String, ResolvedImage>, state_dir: &Path) {
    let wanted =
        |sp: &plan::ServicePlan| sp.image_change.is_some() && found.contains_key(&sp.service);
    if !plan.services.iter().any(wanted) {
        return;
    }
    let history =
        crate::cleanup::History::read(&crate::cleanup::history_path(state_dir, &plan.project));
    for sp in plan.services.iter_mut().filter(|sp| wanted(sp)) {
        let r = &found[&sp.service];
        let Some(to) = r.tag.clone() else { continue };
        let from = sp.image_change.as_ref().and_then(|c| {
            let list = history.services.get(&sp.service)?;
            let d = list
                .iter()
                .rev()
                .find(|d| d.digest.as_deref() == Some(&c.from))?;
            d.tag.clone()
        });
        if r.moved_tag().is_some() || from.as_deref().is_some_and(|f| f != to) {
            sp.note_tag_move(from, &to);
        }
    }
}

/// The images the project's services name, each once.
pub fn expected_images(project: &Project) -> Vec<String> {
    let expected: std::collections::BTreeSet<String> = project
        .services
        .keys()
        .map(|name| crate::spec::image_reference(project, name))
        .collect();
    expected.into_iter().collect()
}

/// Observes the project, with the images its services name inspected beside the lists.
async fn observe_project(engine: &Engine, project: &Project) -> Result<Observed> {
    observe_expecting(engine, &project.name, &expected_images(project))
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))
}

/// Finishes or undoes a run that was killed mid-recreate (its journal is in `state_dir`).
async fn recover_interrupted(
    engine: &Engine,
    state_dir: &Path,
    project: &str,
    lock_held: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let journal = Journal::new(state_dir, project);
    let _lock = if lock_held {
        None
    } else if journal.path().exists() {
        match ProjectLock::try_acquire(state_dir, engine.endpoint(), project)
            .map_err(Error::of(ErrorKind::Conflict))?
        {
            Some(l) => Some(l),
            None => {
                warnings.push(format!(
                    "an apply of {project} is running: this plan shows the engine mid-update"
                ));
                return Ok(());
            }
        }
    } else {
        return Ok(());
    };
    recover(engine, &journal)
        .await
        .map(|_| ())
        .map_err(Error::of(ErrorKind::Engine))
}

/// Executes `planned` (the caller holds the project lock). A plan without changes makes no
/// engine request and runs no gate. Service failures are outcomes in the report, not errors;
/// a gate that refuses the plan is an error of kind [`ErrorKind::GateRefused`].
pub async fn apply(
    engine: &Engine,
    state_dir: &Path,
    planned: &Planned,
    opts: ApplyOptions,
) -> Result<Report> {
    if !planned.plan.has_changes() {
        return Ok(unchanged_report(&planned.plan, engine.calls()));
    }
    // Before the journal or any engine request: a refused plan changes nothing.
    if let Some(gate) = &opts.gate {
        let subject = crate::gate::Subject {
            plan: &planned.plan,
            run_from: &planned.desired.run_from,
            digests: &planned.digests,
        };
        crate::gate::check(gate, &subject).await?;
    }
    let journal = Journal::new(state_dir, &planned.desired.project.name);
    let applier = Applier {
        engine,
        desired: &planned.desired,
        journal: &journal,
        opts,
    };
    let report = applier
        .apply(&planned.plan, &planned.observed)
        .await
        .map_err(Error::of(ErrorKind::Engine))?;
    crate::status::record(state_dir, &report);
    // What was replaced is what a later `--cleanup` may remove: record it even without one.
    if let Err(e) = crate::cleanup::record_applied(
        state_dir,
        &planned.plan,
        &planned.desired,
        &planned.observed,
        &planned.digests,
        &report,
    ) {
        crate::progress::warn(format!("cannot record the image history: {e}"));
    }
    Ok(report)
}

/// The report of a plan with nothing to do: every service unchanged.
pub fn unchanged_report(plan: &Plan, api_calls: usize) -> Report {
    Report {
        project: plan.project.clone(),
        services: plan
            .services
            .iter()
            .map(|s| ServiceOutcome {
                service: s.service.clone(),
                outcome: Outcome::Unchanged,
                message: None,
                logs: vec![],
                health_log: vec![],
            })
            .collect(),
        api_calls,
    }
}

/// The (tag, digest) each service with an update policy last deployed, from the image
/// history: what a cooldown keeps when nothing newer is old enough. Empty (no file read)
/// when no service has a policy.
fn deployed_with_policy(state_dir: &Path, project: &Project) -> HashMap<String, (String, String)> {
    if project.services.values().all(|s| s.update.is_none()) {
        return HashMap::new();
    }
    let path = crate::cleanup::history_path(state_dir, &project.name);
    crate::cleanup::History::read(&path).deployed()
}

/// The services whose registry image must be asked for: the others take the digest the
/// memory holds (into `out`).
fn to_look_up(
    project: &Project,
    digests: &DigestUse,
    deployed: &HashMap<String, (String, String)>,
    out: &mut IndexMap<String, ResolvedImage>,
) -> IndexMap<String, Wanted> {
    let mut wanted = IndexMap::new();
    for (name, svc) in &project.services {
        let Some(image) = registry_image(svc) else {
            continue;
        };
        match digests.cache.get(&digests.scope, image) {
            Some((r, at)) if !digests.refresh || at.elapsed() < digests.fresh_for => {
                out.insert(name.clone(), r);
            }
            earlier => {
                // What the last check took is what a cooldown keeps while newer is too young.
                let current = earlier
                    .and_then(|(r, _)| Some((r.tag?, r.digest)))
                    .or_else(|| deployed.get(name).cloned());
                let w = Wanted {
                    reference: image.to_string(),
                    policy: svc.update.clone(),
                    current,
                };
                wanted.insert(name.clone(), w);
            }
        }
    }
    wanted
}

/// Resolves every registry image of the project to its digest. An image that cannot be
/// resolved (registry down, unknown tag, no credentials) is a warning, not an error: the
/// service keeps the digest an earlier run found (agent), else uses the local image as Compose
/// would, and a missing image still fails in [`desired_images`] before anything changes.
///
/// `deployed` is what each service runs now (tag, digest), for update policies: a cooldown
/// keeps it while every newer candidate is too young; the digest memory, when it has the
/// image, is newer and wins.
pub async fn registry_digests(
    project: &Project,
    digests: &DigestUse,
    deployed: &HashMap<String, (String, String)>,
    warnings: &mut Vec<String>,
) -> IndexMap<String, ResolvedImage> {
    let mut out = IndexMap::new();
    let mut wanted = to_look_up(project, digests, deployed, &mut out);
    let plain = wanted.values().filter(|w| w.policy.is_none());
    let refs = plain.map(|w| w.reference.as_str());
    let ahead = digests.ahead.found(&project.name, refs).await;
    let (mut found, mut errors) = take_found_ahead(&ahead, &mut wanted);
    tracing::debug!(
        answered_ahead = found.len() + errors.iter().map(|e| e.services.len()).sum::<usize>(),
        looked_up_after = wanted.len(),
        "registry lookups of the services"
    );
    if !wanted.is_empty() {
        let resolver = Resolver::new(ResolveOptions::default());
        let (more, failed) = resolver.resolve_each(&wanted).await;
        found.extend(more);
        errors.extend(failed);
    }
    for (svc, r) in found {
        for h in &r.held_back {
            warnings.push(format!("service {svc}: image {}: {h}", r.reference));
        }
        digests.cache.put(&digests.scope, &r);
        out.insert(svc, r);
    }
    for err in errors {
        match digests.cache.get(&digests.scope, &err.image) {
            Some((r, _)) => {
                warnings.push(format!("{err}; keeping the digest found earlier"));
                for s in &err.services {
                    out.insert(s.clone(), r.clone());
                }
            }
            None => warnings.push(format!("{err}; using the local image")),
        }
    }
    // In the project's service order.
    project
        .services
        .keys()
        .filter_map(|s| out.shift_remove(s).map(|r| (s.clone(), r)))
        .collect()
}

/// Takes out of `wanted` the services a lookup ahead answered for: those without an update
/// policy whose image is written as it was looked up. What was found, and one error per image
/// that was not, naming the services that use it.
fn take_found_ahead(
    ahead: &FoundAhead,
    wanted: &mut IndexMap<String, Wanted>,
) -> (IndexMap<String, ResolvedImage>, Vec<RegistryError>) {
    let mut found = IndexMap::new();
    let mut failed: IndexMap<String, RegistryError> = IndexMap::new();
    wanted.retain(|svc, w| {
        let answer = ahead.get(&w.reference).filter(|_| w.policy.is_none());
        match answer {
            Some(Ok(r)) => {
                found.insert(svc.clone(), r.clone());
            }
            Some(Err(e)) => {
                let e = failed
                    .entry(w.reference.clone())
                    .or_insert_with(|| RegistryError {
                        services: Vec::new(),
                        ..e.clone()
                    });
                e.services.push(svc.clone());
            }
            None => return true,
        }
        false
    });
    (found, failed.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Source;

    /// An image in a registry that refuses connections (port 9 on loopback): any lookup fails
    /// at once, so a test sees whether one was made by the warning it leaves.
    const IMAGE: &str = "127.0.0.1:9/app:1";
    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn project() -> Project {
        crate::load::test_project(&format!("services:\n  web:\n    image: {IMAGE}\n"))
    }

    /// IMAGE, found at D.
    fn resolved() -> ResolvedImage {
        ResolvedImage {
            reference: IMAGE.into(),
            repository: "127.0.0.1:9/app".into(),
            tag: Some("1".into()),
            digest: D.into(),
            index_digest: None,
            platform_digest: None,
            source: Source::Registry,
            held_back: Vec::new(),
        }
    }

    fn cached(cache: &DigestCache) {
        cache.put("p", &resolved());
    }

    fn run(digests: &DigestUse) -> (Option<String>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut w = Vec::new();
        let found = rt.block_on(registry_digests(
            &project(),
            digests,
            &HashMap::new(),
            &mut w,
        ));
        (found.get("web").map(|r| r.digest.clone()), w)
    }

    /// `web` and `api` name IMAGE, `job` IMAGE with a policy, `db` an image not looked up
    /// ahead.
    fn wanted_for_ahead() -> IndexMap<String, Wanted> {
        let tracked = Wanted {
            policy: crate::track::UpdatePolicy {
                cooldown: Some(Duration::from_secs(60)),
                ..Default::default()
            },
            ..Wanted::plain(IMAGE)
        };
        [
            ("web", Wanted::plain(IMAGE)),
            ("job", tracked),
            ("api", Wanted::plain(IMAGE)),
            ("db", Wanted::plain("127.0.0.1:9/db:1")),
        ]
        .into_iter()
        .map(|(s, w)| (s.to_string(), w))
        .collect()
    }

    #[test]
    fn lookups_ahead_answer_only_plain_services_whose_image_they_looked_up() {
        let ahead: FoundAhead = [(IMAGE.to_string(), Ok(resolved()))].into_iter().collect();
        let mut wanted = wanted_for_ahead();
        let (found, errors) = take_found_ahead(&ahead, &mut wanted);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["web", "api"]);
        assert!(found.values().all(|r| r.digest == D));
        assert!(errors.is_empty());
        // A policy's lookup depends on what runs; an image not remembered was not looked up.
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["job", "db"]);
    }

    #[test]
    fn a_lookup_ahead_that_failed_is_one_error_naming_every_plain_service_of_the_image() {
        let e = RegistryError {
            image: IMAGE.into(),
            registry: "127.0.0.1:9".into(),
            services: vec![IMAGE.into()],
            kind: crate::resolve::ErrorKind::Unreachable,
            detail: "connection refused".into(),
        };
        let ahead: FoundAhead = [(IMAGE.to_string(), Err(e))].into_iter().collect();
        let mut wanted = wanted_for_ahead();
        let (found, errors) = take_found_ahead(&ahead, &mut wanted);
        assert!(found.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].services, ["web", "api"]);
        assert!(errors[0]
            .to_string()
            .starts_with("service web, api: cannot reach registry"));
        assert_eq!(wanted.keys().collect::<Vec<_>>(), ["job", "db"]);
    }

    #[test]
    fn registry_down_without_memory_uses_the_local_image() {
        let (digest, w) = run(&DigestUse::default());
        assert_eq!(digest, None);
        assert!(w[0].ends_with("; using the local image"), "{w:?}");
    }

    #[test]
    fn registry_down_keeps_the_digest_found_earlier() {
        let d = DigestUse {
            scope: "p".into(),
            refresh: true,
            ..Default::default()
        };
        cached(&d.cache);
        let (digest, w) = run(&d);
        assert_eq!(digest.as_deref(), Some(D));
        assert!(
            w[0].ends_with("; keeping the digest found earlier"),
            "{w:?}"
        );
    }

    #[test]
    fn cached_digests_are_reused_without_a_lookup() {
        // Not an image check: the cache answers.
        let d = DigestUse {
            scope: "p".into(),
            ..Default::default()
        };
        cached(&d.cache);
        assert_eq!(run(&d), (Some(D.to_string()), vec![]));
        // An image check within the TTL: still no lookup.
        let d = DigestUse {
            refresh: true,
            fresh_for: Duration::from_secs(3600),
            ..d
        };
        assert_eq!(run(&d), (Some(D.to_string()), vec![]));
        // Another project's memory is not this one's.
        let other = DigestUse {
            scope: "q".into(),
            ..d
        };
        assert_eq!(run(&other).0, None);
    }
}
