//! `composeops agent`: a loop around load -> resolve -> observe -> plan -> apply, woken by file
//! events, a git poll, the image schedule, SIGHUP and a signed webhook.
//!
//! Layout (kube-rs Controller style: the reconcile step knows nothing of scheduling):
//! - [`config`]: settings from flags and TOML, and the config file's JSON Schema;
//! - [`reconciler`]: the trait the loop calls; [`pipeline`] its implementation on the library;
//! - [`worker`]: one task per project (coalescing, backoff, memory of rolled-back states);
//! - this module: the supervisor that turns wake-ups into per-project work, plus signals,
//!   systemd readiness and watchdog, and the HTTP listener ([`http`]).

pub mod config;
pub mod events;
pub mod fleet;
pub mod git;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod reconciler;
pub mod schedule;
pub mod state;
pub mod watch;
pub mod window;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;

pub use config::{AgentConfig, LogFormat, Settings};
use metrics::Metrics;
pub use reconciler::{ProjectSource, Reconciler};
use state::{InstanceLock, Memory};
use worker::{ProjectStatus, Wake};

/// Messages to the supervisor.
#[derive(Debug)]
pub enum Control {
    /// Paths changed under PATH (debounced); only the projects that read one of them are
    /// woken (see `watch::wakes`).
    Files(Vec<PathBuf>),
    /// Signed `POST /sync` (`force`: also re-apply a remembered rolled-back state, and apply
    /// outside the maintenance windows).
    Sync { force: bool },
    /// Wake every project (after a git pull, SIGHUP).
    WakeAll(Wake),
}

/// State shared by the supervisor, the workers and the HTTP handlers.
pub struct Shared {
    pub settings: Settings,
    pub metrics: Metrics,
    pub memory: Memory,
    status: Mutex<StatusInner>,
    heartbeat: AtomicU64,
    /// The time maintenance windows are checked against (a test sets its own).
    clock: Clock,
}

/// What time it is, for maintenance windows.
pub(crate) type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

#[derive(Default, Serialize)]
struct StatusInner {
    started: String,
    path: String,
    git: Option<git::Pull>,
    last_git_pull: Option<String>,
    last_image_check: Option<String>,
    /// This host, as stack placement matches it.
    node: crate::fleet::Node,
    projects: BTreeMap<String, ProjectStatus>,
    /// Stacks under PATH placed on other nodes, and why.
    skipped: BTreeMap<String, fleet::Skipped>,
    /// Why placement could not be decided (`x-composeops.yaml` unreadable): workers kept as
    /// they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    placement_error: Option<String>,
    /// The maintenance windows (`--window`), whether one is open now and, if none is, when the
    /// next one opens; absent without windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    windows: Option<WindowsStatus>,
}

#[derive(Default, Serialize)]
struct WindowsStatus {
    specs: Vec<String>,
    open: bool,
    /// RFC 3339 (UTC).
    next_opening: Option<String>,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How often the supervisor proves it is alive (heartbeat, systemd watchdog).
const TICK: Duration = Duration::from_secs(5);

impl Shared {
    pub fn new(settings: Settings, memory: Memory) -> Shared {
        let status = StatusInner {
            started: worker::now_rfc3339(),
            path: settings.path.display().to_string(),
            node: settings.node.clone(),
            ..Default::default()
        };
        Shared {
            settings,
            metrics: Metrics::new(),
            memory,
            status: Mutex::new(status),
            heartbeat: AtomicU64::new(unix_secs()),
            clock: Arc::new(chrono::Utc::now),
        }
    }

    /// Now, as maintenance windows see it.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    pub fn update(&self, src: &ProjectSource, f: impl FnOnce(&mut ProjectStatus)) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = st
            .projects
            .entry(src.id.clone())
            .or_insert_with(|| ProjectStatus {
                id: src.id.clone(),
                dir: src.dir.display().to_string(),
                ..Default::default()
            });
        f(entry);
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_skipped(&self, id: &str, f: impl FnOnce(&mut fleet::Skipped)) {
        let mut st = self.lock_status();
        if let Some(s) = st.skipped.get_mut(id) {
            f(s);
        }
    }

    fn is_skipped(&self, id: &str) -> bool {
        self.lock_status().skipped.contains_key(id)
    }

    fn forget(&self, id: &str) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.projects.remove(id);
    }

    pub fn status_json(&self) -> serde_json::Value {
        let windows = &self.settings.windows;
        let windows = (!windows.is_empty()).then(|| {
            let now = self.now();
            let open = windows.is_open(now);
            WindowsStatus {
                specs: windows.specs(),
                open,
                next_opening: (!open)
                    .then(|| windows.next_opening(now))
                    .flatten()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            }
        });
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.windows = windows;
        serde_json::to_value(&*st).unwrap_or_default()
    }

    fn beat(&self) {
        self.heartbeat.store(unix_secs(), Ordering::Relaxed);
    }

    /// The supervisor ticked recently.
    pub fn alive(&self) -> bool {
        unix_secs().saturating_sub(self.heartbeat.load(Ordering::Relaxed)) <= 6 * TICK.as_secs()
    }
}

fn has_compose_file(dir: &Path) -> bool {
    crate::load::COMPOSE_FILE_NAMES
        .iter()
        .any(|n| dir.join(n).is_file())
}

/// PATH itself when it holds a compose file; otherwise each subdirectory that holds one.
pub fn discover(root: &Path) -> Vec<ProjectSource> {
    if has_compose_file(root) {
        let id = root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "default".into());
        return vec![ProjectSource {
            id,
            dir: root.to_path_buf(),
        }];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            if name.starts_with('.') || !p.is_dir() || !has_compose_file(&p) {
                continue;
            }
            out.push(ProjectSource { id: name, dir: p });
        }
    }
    out.sort();
    out
}

/// Which known projects a changed path belongs to (`None`: a new project may have appeared).
fn project_of<'a>(
    root: &Path,
    projects: &'a BTreeMap<String, Worker>,
    p: &Path,
) -> Option<&'a str> {
    if let Some((id, w)) = projects.iter().next() {
        if w.src.dir == root {
            return Some(id);
        }
    }
    let rel = p.strip_prefix(root).ok()?;
    let first = rel.components().next()?;
    let name = first.as_os_str().to_string_lossy();
    projects
        .get_key_value(name.as_ref())
        .map(|(k, _)| k.as_str())
}

/// Routes changed paths: the projects to wake (those whose inputs changed, see
/// [`watch::wakes`]), and whether PATH must be rescanned (a path outside every known project
/// may be a new project's compose file; a project directory itself may have been renamed or
/// deleted).
async fn route_files(
    root: &Path,
    workers: &BTreeMap<String, Worker>,
    inputs: &mut watch::InputCache,
    paths: &[PathBuf],
) -> (Vec<String>, bool) {
    let mut by_project: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    let mut rescan = false;
    for p in paths {
        match project_of(root, workers, p) {
            Some(id) => by_project.entry(id).or_default().push(p),
            None => rescan = true,
        }
        rescan |= workers.values().any(|w| w.src.dir == *p);
    }
    let mut hit = Vec::new();
    for (id, changed) in by_project {
        let Some(w) = workers.get(id) else { continue };
        let waking = inputs.waking(root, id, &w.src.dir, &changed).await;
        if waking.is_empty() {
            tracing::trace!(project = %id, n = changed.len(), "file events outside the project's inputs");
        } else {
            tracing::debug!(project = %id, paths = ?waking, "inputs changed");
            hit.push(id.to_string());
        }
    }
    (hit, rescan)
}

struct Worker {
    src: ProjectSource,
    tx: mpsc::UnboundedSender<Wake>,
    handle: JoinHandle<()>,
}

/// The webhook secret from COMPOSEOPS_WEBHOOK_SECRET (empty counts as unset).
fn webhook_secret() -> Option<Arc<Vec<u8>>> {
    std::env::var("COMPOSEOPS_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| Arc::new(s.into_bytes()))
}

fn sd(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT; returns after the current reconcile steps finished.
// Long by design: the agent's parts (listener, file watcher, git poll, schedules, workers,
// signals) start in dependency order and stop in the reverse order at the end; one function
// keeps the two orders side by side.
pub async fn run<R: Reconciler>(settings: Settings, reconciler: Arc<R>) -> Result<()> {
    let _lock = InstanceLock::acquire(&settings.state_dir)?;
    let memory = Memory::new(&settings.state_dir)?;
    let shared = Arc::new(Shared::new(settings.clone(), memory));
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Control>();
    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let (http_stop_tx, http_stop_rx) = tokio_watch::channel(false);
    let server = start_listener(&shared, &control_tx, http_stop_rx).await?;
    let _watcher = match watch::start(&settings.path, settings.debounce, control_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "file events disabled");
            None
        }
    };
    let git_pull = start_git(&shared, &control_tx, &shutdown_rx).await;

    let mut workers = Workers {
        by_id: BTreeMap::new(),
        retiring: Vec::new(),
        reconciler,
        shared: shared.clone(),
        shutdown: shutdown_rx,
    };
    workers.rescan(&Wake::because("start"));
    if workers.by_id.is_empty() {
        tracing::warn!(path = %settings.path.display(), "no compose project found yet (a compose file in PATH or in its subdirectories)");
    }

    let next_image_check = || {
        settings
            .check_images
            .as_ref()
            .map(|s| tokio::time::Instant::now() + s.delay_from(chrono::Utc::now()))
    };
    let mut image_timer = next_image_check();
    let tick = sd_notify::watchdog_enabled()
        .map(|w| (w / 3).min(TICK))
        .unwrap_or(TICK);
    let mut ticker = tokio::time::interval(tick);
    sd(&[sd_notify::NotifyState::Ready]);
    tracing::info!(projects = workers.by_id.len(), path = %settings.path.display(), "agent ready");

    let mut inputs = watch::InputCache::default();
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: finishing the current steps, then exiting"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: finishing the current steps, then exiting"); break; }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reconciling every project");
                workers.rescan_and_wake_all(Wake::because("sighup"));
            }
            _ = ticker.tick() => {
                shared.beat();
                sd(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = async { tokio::time::sleep_until(image_timer.unwrap()).await }, if image_timer.is_some() => {
                tracing::info!("image check");
                shared.status.lock().unwrap_or_else(|p| p.into_inner()).last_image_check = Some(worker::now_rfc3339());
                workers.wake_all(Wake { reasons: vec!["image-check"], refresh_images: true, force: false });
                image_timer = next_image_check();
            }
            Some(msg) = control_rx.recv() => match msg {
                Control::Files(paths) => {
                    let (hit, rescan) = route_files(&settings.path, &workers.by_id, &mut inputs, &paths).await;
                    // A woken project may have changed its own placement (`x-composeops`).
                    if rescan || !hit.is_empty() {
                        workers.rescan(&Wake::because("file"));
                        inputs.retain(|id| workers.by_id.contains_key(id));
                    }
                    tracing::debug!(?hit, n = paths.len(), "file events");
                    for id in hit {
                        workers.wake(&id, Wake::because("file"));
                    }
                }
                Control::Sync { force } => {
                    let wake = Wake { reasons: vec!["webhook"], refresh_images: true, force };
                    match &git_pull {
                        Some(pull) => { let _ = pull.send(wake); }
                        None => workers.rescan_and_wake_all(wake),
                    }
                }
                Control::WakeAll(wake) => workers.rescan_and_wake_all(wake),
            },
        }
    }

    // Shutdown: workers finish their current run (never stopping an apply mid-step), then exit.
    sd(&[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    workers.join().await;
    let _ = http_stop_tx.send(true);
    if let Some(s) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The HTTP listener (off unless `--listen`), with its connection limits.
async fn start_listener(
    shared: &Arc<Shared>,
    control: &mpsc::UnboundedSender<Control>,
    stop: tokio_watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>> {
    let settings = &shared.settings;
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let secret = webhook_secret();
    if secret.is_none() {
        tracing::warn!("COMPOSEOPS_WEBHOOK_SECRET is not set: POST /sync is refused");
    }
    let app = http::router(http::HttpState::new(
        shared.clone(),
        control.clone(),
        secret,
    ));
    let nofile = http::serve::open_file_limit();
    let limits = http::serve::Limits {
        max_connections: http::serve::effective_max_connections(
            settings.http_max_connections,
            nofile,
        ),
        idle_timeout: settings.http_idle_timeout,
    };
    if limits.max_connections < settings.http_max_connections {
        tracing::info!(
            max_connections = limits.max_connections,
            open_file_limit = nofile,
            "HTTP connections capped at a quarter of the open-file limit"
        );
    }
    tracing::info!(addr = %local, max_connections = limits.max_connections,
        idle_timeout = ?limits.idle_timeout, "listening");
    Ok(Some(tokio::spawn(http::serve::serve(
        listener, app, limits, stop,
    ))))
}

/// The git poll (`--git-pull`), in its own task so a slow fetch never stalls the supervisor.
/// Returns where to ask for a pull now (a webhook), when polling is on.
async fn start_git(
    shared: &Arc<Shared>,
    control: &mpsc::UnboundedSender<Control>,
    shutdown: &tokio_watch::Receiver<bool>,
) -> Option<mpsc::UnboundedSender<Wake>> {
    let settings = &shared.settings;
    let every = settings.git_pull?;
    let p = settings.path.clone();
    let top = tokio::task::spawn_blocking(move || git::toplevel(&p))
        .await
        .ok()
        .flatten();
    let Some(top) = top else {
        tracing::error!(path = %settings.path.display(), "--git-pull: PATH is not inside a git checkout; pulls disabled");
        return None;
    };
    tracing::info!(checkout = %top.display(), every = ?every, "git pull enabled");
    let (pull_tx, pull_rx) = mpsc::unbounded_channel::<Wake>();
    tokio::spawn(git_task(
        top,
        every,
        shared.clone(),
        pull_rx,
        control.clone(),
        shutdown.clone(),
    ));
    Some(pull_tx)
}

/// One worker per project found under PATH.
struct Workers<R: Reconciler> {
    by_id: BTreeMap<String, Worker>,
    /// Stacks placed on other nodes, being looked for (and removed) on this engine.
    retiring: Vec<JoinHandle<()>>,
    reconciler: Arc<R>,
    shared: Arc<Shared>,
    shutdown: tokio_watch::Receiver<bool>,
}

impl<R: Reconciler> Workers<R> {
    /// Rescans PATH and places its stacks on this node (see [`fleet`]): a worker per stack
    /// placed here (new ones woken with `wake`). A stack whose directory or compose file is gone
    /// loses its worker and its containers are left as they are: removing a directory from the
    /// repo is not taken as an order to delete a running stack. A stack placed on other nodes
    /// loses its worker too, and is retired (removed under `--prune`, else reported).
    fn rescan(&mut self, wake: &Wake) {
        self.retiring.retain(|h| !h.is_finished());
        let settings = &self.shared.settings;
        let placed = match fleet::place(&settings.path, &settings.node) {
            Ok(p) => p,
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "cannot place stacks: workers kept as they are");
                self.shared.lock_status().placement_error = Some(e);
                return;
            }
        };
        let newly_skipped: Vec<fleet::Placed> = {
            let mut st = self.shared.lock_status();
            st.placement_error = None;
            let fresh = placed
                .iter()
                .filter(|p| !p.decision.runs_here && !st.skipped.contains_key(&p.src.id))
                .cloned()
                .collect();
            st.skipped = fleet::merge_skipped(&st.skipped, &placed);
            fresh
        };
        let here: Vec<ProjectSource> = placed
            .iter()
            .filter(|p| p.decision.runs_here)
            .map(|p| p.src.clone())
            .collect();
        let mut stopped = self.stop_workers_not_in(&here, &placed);
        for p in newly_skipped {
            let handle = stopped.remove(&p.src.id);
            if let Some(e) = &p.error {
                // A typo in `x-composeops` must not take a stack down across the fleet.
                tracing::error!(project = %p.src.id, error = %e, "stack placement unreadable: \
                    not run here, and what it left on this engine is left as it is");
                continue;
            }
            let Some(project) = p.project.clone() else {
                tracing::warn!(project = %p.src.id, "placed on other nodes but cannot be loaded: \
                    what it left on this engine is not looked for");
                continue;
            };
            tracing::info!(project = %p.src.id, reason = %p.decision.reason(), "stack skipped on this node");
            self.retiring.push(fleet::retire(
                self.reconciler.clone(),
                self.shared.clone(),
                p.src.id.clone(),
                project,
                handle,
            ));
        }
        for src in here {
            self.start_worker(src, wake);
        }
    }

    /// Ends the workers of stacks no longer run here; returns their handles by id.
    fn stop_workers_not_in(
        &mut self,
        here: &[ProjectSource],
        placed: &[fleet::Placed],
    ) -> BTreeMap<String, JoinHandle<()>> {
        let gone: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !here.iter().any(|p| &p.id == *id))
            .cloned()
            .collect();
        let mut stopped = BTreeMap::new();
        for id in gone {
            let Some(w) = self.by_id.remove(&id) else {
                continue;
            };
            if placed.iter().any(|p| p.src.id == id) {
                tracing::info!(project = %id, "stack placed on other nodes: no longer reconciled here");
            } else {
                tracing::warn!(project = %id, dir = %w.src.dir.display(),
                    "project no longer in PATH: no longer reconciled; its containers are left running \
                     (remove them with `docker compose -p NAME down` if that was the intent)");
            }
            self.shared.forget(&id);
            // Dropping the sender ends the worker after its current run.
            drop(w.tx);
            stopped.insert(id, w.handle);
        }
        stopped
    }

    fn start_worker(&mut self, src: ProjectSource, wake: &Wake) {
        if self.by_id.contains_key(&src.id) {
            return;
        }
        tracing::info!(project = %src.id, dir = %src.dir.display(), "watching project");
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(wake.clone());
        let handle = tokio::spawn(worker::run_worker(
            src.clone(),
            self.reconciler.clone(),
            self.shared.clone(),
            rx,
            self.shutdown.clone(),
        ));
        self.by_id
            .insert(src.id.clone(), Worker { src, tx, handle });
    }

    fn wake(&self, id: &str, wake: Wake) {
        if let Some(w) = self.by_id.get(id) {
            let _ = w.tx.send(wake);
        }
    }

    fn wake_all(&self, wake: Wake) {
        for w in self.by_id.values() {
            let _ = w.tx.send(wake.clone());
        }
    }

    fn rescan_and_wake_all(&mut self, wake: Wake) {
        self.rescan(&wake);
        self.wake_all(wake);
    }

    /// Waits for every worker to finish its current run, and for retirements under way.
    async fn join(self) {
        for (_, w) in self.by_id {
            drop(w.tx);
            let _ = w.handle.await;
        }
        for h in self.retiring {
            let _ = h.await;
        }
    }
}

/// Pulls every `every`, and on request (webhook); wakes every project after a fast-forward
/// (or always, for a webhook's request).
async fn git_task(
    top: PathBuf,
    every: Duration,
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<Wake>,
    control: mpsc::UnboundedSender<Control>,
    mut shutdown: tokio_watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last_label = "";
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let then: Option<Wake> = tokio::select! {
            _ = shutdown.changed() => return,
            _ = timer.tick() => None,
            r = requests.recv() => match r { Some(w) => Some(w), None => return },
        };
        let t = top.clone();
        let pull = match tokio::task::spawn_blocking(move || git::pull(&t)).await {
            Ok(p) => p,
            Err(e) => git::Pull::Failed {
                message: e.to_string(),
            },
        };
        let label = match &pull {
            git::Pull::UpToDate { .. } => "up_to_date",
            git::Pull::FastForwarded { .. } => "fast_forwarded",
            git::Pull::Ahead { .. } => "ahead",
            git::Pull::Diverged { .. } => "diverged",
            git::Pull::Blocked { .. } => "blocked",
            git::Pull::Failed { .. } => "failed",
        };
        shared
            .metrics
            .git_pulls
            .get_or_create(&metrics::PullLabel {
                result: label.into(),
            })
            .inc();
        match &pull {
            git::Pull::FastForwarded { from, to } => {
                tracing::info!(from = %from, to = %to, "git: fast-forwarded")
            }
            // Said once per change of state, not at every poll.
            p if p.is_problem() && label != last_label => {
                tracing::error!(result = label, detail = ?p, "git: checkout left as it is")
            }
            _ => tracing::debug!(result = label, "git pull"),
        }
        last_label = label;
        let changed = pull.changed();
        {
            let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            st.git = Some(pull);
            st.last_git_pull = Some(worker::now_rfc3339());
        }
        let wake = match (then, changed) {
            (Some(w), _) => Some(w),
            (None, true) => Some(Wake::because("git-pull")),
            (None, false) => None,
        };
        if let Some(w) = wake {
            let _ = control.send(Control::WakeAll(w));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop's own behaviour (coalescing, memory of rolled-back states, backoff) with a
    //! scripted reconciler; the pipeline itself is exercised on the real engine in
    //! tests/agent_e2e.rs.
    use super::reconciler::*;
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::AtomicUsize;

    /// Converges in `delay`; rolls back while the file `fail` exists in the project dir, and
    /// is refused by the gate while `refuse` does; fingerprint = content of `compose.yaml`.
    struct Scripted {
        runs: AtomicUsize,
        delay: Duration,
    }

    impl Reconciler for Scripted {
        type Prepared = bool;
        fn plan<'a>(
            &'a self,
            p: &'a ProjectSource,
            _o: &'a RunOptions,
        ) -> futures_util::future::BoxFuture<'a, reconciler::Result<(DesiredState, bool)>> {
            async move {
                let text = std::fs::read_to_string(p.dir.join("compose.yaml"))
                    .map_err(|e| ReconcileError::new(ErrorKind::InvalidInput, e.to_string()))?;
                // "deployed" marks the engine as running the desired state (an operator's apply).
                let deployed = p.dir.join("deployed").exists();
                let st = DesiredState {
                    project_name: p.id.clone(),
                    revision: None,
                    digests: Default::default(),
                    fingerprint: fingerprint(&[text.as_bytes()]),
                    pending: if deployed {
                        vec![]
                    } else {
                        vec!["recreate web".to_string()]
                    },
                };
                Ok((st, p.dir.join("fail").exists()))
            }
            .boxed()
        }
        fn apply<'a>(
            &'a self,
            p: &'a ProjectSource,
            fail: bool,
            _o: &'a RunOptions,
        ) -> futures_util::future::BoxFuture<'a, reconciler::Result<Converged>> {
            async move {
                self.runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                if p.dir.join("refuse").exists() {
                    let m = "gate refused the plan: exit 3: CVE-1 critical";
                    return Err(ReconcileError::new(ErrorKind::GateRefused, m));
                }
                Ok(Converged {
                    plan: vec!["recreate web".into()],
                    services: vec![ServiceOutcome {
                        service: "web".into(),
                        result: if fail {
                            ServiceResult::RolledBack
                        } else {
                            ServiceResult::Updated
                        },
                        detail: String::new(),
                        logs: vec![],
                    }],
                })
            }
            .boxed()
        }
    }

    /// A worker over `src` with a scripted reconciler that takes `delay` per run: the
    /// reconciler (to count runs), the wake-up sender, the stop switch (dropping it stops the
    /// worker) and the worker's task.
    fn start_worker(
        src: ProjectSource,
        shared: &Arc<Shared>,
        delay: Duration,
    ) -> (
        Arc<Scripted>,
        mpsc::UnboundedSender<Wake>,
        tokio_watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let rec = Arc::new(Scripted {
            runs: AtomicUsize::new(0),
            delay,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio_watch::channel(false);
        let h = tokio::spawn(worker::run_worker(
            src,
            rec.clone(),
            shared.clone(),
            rx,
            stop_rx,
        ));
        (rec, tx, stop_tx, h)
    }

    fn setup(dir: &Path, state: &Path) -> (Arc<Shared>, ProjectSource) {
        std::fs::write(dir.join("compose.yaml"), "services: {}\n").unwrap();
        let settings = AgentConfig {
            path: Some(dir.to_path_buf()),
            state_dir: Some(state.to_path_buf()),
            retry_initial: Some("50ms".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let shared = Arc::new(Shared::new(settings, Memory::new(state).unwrap()));
        let src = ProjectSource {
            id: "p".into(),
            dir: dir.to_path_buf(),
        };
        (shared, src)
    }

    async fn settle(shared: &Shared, runs: u64) {
        for _ in 0..200 {
            let v = shared.status_json();
            if v["projects"]["p"]["runs"].as_u64() == Some(runs)
                && v["projects"]["p"]["running"] == false
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never reached {runs} runs: {}", shared.status_json());
    }

    #[tokio::test]
    async fn wakeups_during_a_run_coalesce_into_one_more_run() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (shared, src) = setup(dir.path(), state.path());
        let (rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::from_millis(300));
        tx.send(Wake::because("start")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..10 {
            tx.send(Wake::because("file")).unwrap();
        }
        settle(&shared, 2).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 2);
        drop(tx);
        h.await.unwrap();
    }

    #[tokio::test]
    async fn rolled_back_state_is_not_retried_until_it_changes_or_is_forced() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (shared, src) = setup(dir.path(), state.path());
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let (rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::ZERO);
        tx.send(Wake::because("start")).unwrap();
        settle(&shared, 1).await;
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "rolled_back"
        );
        // Later wake-ups (and no retry timer) leave it alone.
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 1);
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "skipped_rolled_back"
        );
        // Remembered across restarts (state dir).
        assert!(shared.memory.load("p").failed.is_some());
        // Forced: applied again.
        tx.send(Wake {
            reasons: vec!["webhook"],
            refresh_images: false,
            force: true,
        })
        .unwrap();
        settle(&shared, 3).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 2);
        assert!(shared.memory.load("p").failed.is_some());
        // An operator applies it by hand: the next wake-up sees it running and forgets.
        std::fs::write(dir.path().join("deployed"), "").unwrap();
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 4).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 2);
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "success"
        );
        assert!(shared.memory.load("p").failed.is_none());
        std::fs::remove_file(dir.path().join("deployed")).unwrap();
        // A new desired state is applied.
        std::fs::remove_file(dir.path().join("fail")).unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {x: {}}\n").unwrap();
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 5).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 3);
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "success"
        );
        assert!(shared.memory.load("p").failed.is_none());
        drop(tx);
        h.await.unwrap();
    }

    #[tokio::test]
    async fn a_gate_refusal_is_remembered_like_a_rollback() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (shared, src) = setup(dir.path(), state.path());
        std::fs::write(dir.path().join("refuse"), "").unwrap();
        let (rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::ZERO);
        tx.send(Wake::because("start")).unwrap();
        settle(&shared, 1).await;
        let v = &shared.status_json()["projects"]["p"];
        assert_eq!(v["last_result"], "gate_refused");
        assert!(v["last_error"].as_str().unwrap().contains("CVE-1"), "{v}");
        assert_eq!(v["rolled_back_state"]["reason"], v["last_error"]);
        assert_eq!(v["pending_changes"][0], "recreate web");
        // No retry timer, and a wake-up with the same desired state does not run the gate.
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 1);
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "skipped_rolled_back"
        );
        // A new desired state that the gate accepts is applied, and the refusal forgotten.
        std::fs::remove_file(dir.path().join("refuse")).unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {x: {}}\n").unwrap();
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 3).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 2);
        assert_eq!(
            shared.status_json()["projects"]["p"]["last_result"],
            "success"
        );
        assert!(shared.memory.load("p").failed.is_none());
        drop(tx);
        h.await.unwrap();
    }

    #[tokio::test]
    async fn failures_retry_with_backoff() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (shared, src) = setup(dir.path(), state.path());
        std::fs::remove_file(dir.path().join("compose.yaml")).unwrap();
        let (_rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::ZERO);
        tx.send(Wake::because("start")).unwrap();
        // 50ms, 100ms, 200ms: the 4th attempt comes ~350ms after the first.
        settle(&shared, 4).await;
        let v = shared.status_json();
        assert_eq!(v["projects"]["p"]["last_result"], "error");
        assert!(v["projects"]["p"]["consecutive_failures"].as_u64().unwrap() >= 4);
        std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
        for _ in 0..100 {
            if shared.status_json()["projects"]["p"]["last_result"] == "success" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            shared.status_json()["projects"]["p"]["consecutive_failures"],
            0
        );
        drop(tx);
        h.await.unwrap();
    }

    /// A project under `--window spec` whose clock reads `clock()`.
    fn setup_windowed(
        dir: &Path,
        state: &Path,
        spec: &str,
        clock: Clock,
    ) -> (Arc<Shared>, ProjectSource) {
        std::fs::write(dir.join("compose.yaml"), "services: {}\n").unwrap();
        let settings = AgentConfig {
            path: Some(dir.to_path_buf()),
            state_dir: Some(state.to_path_buf()),
            retry_initial: Some("50ms".into()),
            window: Some(vec![spec.into()]),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut shared = Shared::new(settings, Memory::new(state).unwrap());
        shared.clock = clock;
        let src = ProjectSource {
            id: "p".into(),
            dir: dir.to_path_buf(),
        };
        (Arc::new(shared), src)
    }

    fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// Finds one container of any project still here; records each call's `remove`.
    #[derive(Default)]
    struct Leftover {
        removes: std::sync::Mutex<Vec<bool>>,
    }

    impl Reconciler for Leftover {
        type Prepared = ();
        fn plan<'a>(
            &'a self,
            _p: &'a ProjectSource,
            _o: &'a RunOptions,
        ) -> futures_util::future::BoxFuture<'a, reconciler::Result<(DesiredState, ())>> {
            unreachable!("only retire is called")
        }
        fn apply<'a>(
            &'a self,
            _p: &'a ProjectSource,
            _prepared: (),
            _o: &'a RunOptions,
        ) -> futures_util::future::BoxFuture<'a, reconciler::Result<Converged>> {
            unreachable!("only retire is called")
        }
        fn retire<'a>(
            &'a self,
            name: &'a str,
            remove: bool,
        ) -> futures_util::future::BoxFuture<'a, reconciler::Result<crate::down::Residue>> {
            self.removes.lock().unwrap().push(remove);
            let r = crate::down::Residue {
                containers: vec![format!("{name}-web-1")],
                networks: vec![],
            };
            async move { Ok(r) }.boxed()
        }
    }

    /// Under `--prune`, a stack placed on other nodes is removed only once a window opens;
    /// until then /status shows it left running, its removal waiting.
    #[tokio::test]
    async fn under_prune_a_moved_stack_waits_for_a_window_to_be_removed() {
        let state = tempfile::tempdir().unwrap();
        let opens = utc("2026-11-28T02:00:00Z");
        let start = std::time::Instant::now();
        let clock: Clock = Arc::new(move || {
            opens - chrono::TimeDelta::milliseconds(1500)
                + chrono::TimeDelta::from_std(start.elapsed()).unwrap()
        });
        let settings = AgentConfig {
            path: Some(state.path().to_path_buf()),
            state_dir: Some(state.path().to_path_buf()),
            window: Some(vec!["Sat 02:00-04:00 UTC".into()]),
            prune: Some(true),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut shared = Shared::new(settings, Memory::new(state.path()).unwrap());
        shared.clock = clock;
        let shared = Arc::new(shared);
        shared.lock_status().skipped.insert(
            "a".into(),
            fleet::Skipped {
                dir: "a".into(),
                reason: "nodes: [n2]".into(),
                placed_by: crate::fleet::PlacedBy::FleetFile,
                left_running: None,
                removed: None,
                removal_waits_for_window: false,
            },
        );
        let rec = Arc::new(Leftover::default());
        let h = fleet::retire(rec.clone(), shared.clone(), "a".into(), "p-a".into(), None);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(*rec.removes.lock().unwrap(), [false]);
        let v = shared.status_json();
        let a = &v["skipped"]["a"];
        assert_eq!(a["removal_waits_for_window"], true, "{v}");
        assert_eq!(a["left_running"]["containers"][0], "p-a-web-1", "{v}");
        // The window opens: removed, with no other wake-up.
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*rec.removes.lock().unwrap(), [false, true]);
        let v = shared.status_json();
        let a = &v["skipped"]["a"];
        assert!(a.get("removal_waits_for_window").is_none(), "{v}");
        assert!(a.get("left_running").is_none(), "{v}");
        assert_eq!(a["removed"]["containers"][0], "p-a-web-1", "{v}");
    }

    #[tokio::test]
    async fn outside_the_windows_changes_wait_and_are_applied_when_one_opens() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A clock running at real speed from 1.5s before the window opens (time for the first
        // run, however loaded the machine).
        let opens = utc("2026-11-28T02:00:00Z");
        let start = std::time::Instant::now();
        let clock: Clock = Arc::new(move || {
            opens - chrono::TimeDelta::milliseconds(1500)
                + chrono::TimeDelta::from_std(start.elapsed()).unwrap()
        });
        let (shared, src) = setup_windowed(dir.path(), state.path(), "Sat 02:00-04:00 UTC", clock);
        let (rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::ZERO);
        tx.send(Wake::because("start")).unwrap();
        settle(&shared, 1).await;
        let v = shared.status_json();
        let p = &v["projects"]["p"];
        assert_eq!(p["last_result"], "waiting_for_window", "{v}");
        assert_eq!(p["waiting_for_window"], true, "{v}");
        assert_eq!(p["next_window"], "2026-11-28T02:00:00Z", "{v}");
        assert_eq!(p["pending_changes"][0], "recreate web", "{v}");
        assert_eq!(v["windows"]["open"], false, "{v}");
        assert_eq!(v["windows"]["specs"][0], "Sat 02:00-04:00 UTC", "{v}");
        assert_eq!(v["windows"]["next_opening"], "2026-11-28T02:00:00Z", "{v}");
        let m = shared.metrics.encode();
        assert!(
            m.contains("composeops_waiting_for_window{project=\"p\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("composeops_next_window_timestamp_seconds{project=\"p\"} 1795831200"),
            "{m}"
        );
        assert!(
            m.contains("composeops_services_out_of_date{project=\"p\"} 1"),
            "{m}"
        );
        assert_eq!(rec.runs.load(Ordering::SeqCst), 0);
        // The window opens: applied with no other wake-up.
        settle(&shared, 2).await;
        let v = shared.status_json();
        let p = &v["projects"]["p"];
        assert_eq!(p["last_result"], "success", "{v}");
        assert_eq!(p["waiting_for_window"], false, "{v}");
        assert!(p["next_window"].is_null(), "{v}");
        assert_eq!(v["windows"]["open"], true, "{v}");
        assert!(v["windows"]["next_opening"].is_null(), "{v}");
        assert_eq!(rec.runs.load(Ordering::SeqCst), 1);
        let m = shared.metrics.encode();
        assert!(
            m.contains("composeops_waiting_for_window{project=\"p\"} 0"),
            "{m}"
        );
        drop(tx);
        h.await.unwrap();
    }

    #[tokio::test]
    async fn a_forced_sync_applies_outside_the_windows() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let now = utc("2026-11-27T12:00:00Z");
        let (shared, src) = setup_windowed(
            dir.path(),
            state.path(),
            "Fri 23:00-01:00 Europe/Berlin",
            Arc::new(move || now),
        );
        let (rec, tx, _stop_tx, h) = start_worker(src, &shared, Duration::ZERO);
        tx.send(Wake::because("start")).unwrap();
        settle(&shared, 1).await;
        let p = &shared.status_json()["projects"]["p"];
        assert_eq!(p["last_result"], "waiting_for_window", "{p}");
        // 23:00 in Berlin is 22:00 UTC in November.
        assert_eq!(p["next_window"], "2026-11-27T22:00:00Z", "{p}");
        // Other wake-ups still plan, and still wait.
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 2).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 0);
        tx.send(Wake {
            reasons: vec!["webhook"],
            refresh_images: true,
            force: true,
        })
        .unwrap();
        settle(&shared, 3).await;
        assert_eq!(rec.runs.load(Ordering::SeqCst), 1);
        let p = &shared.status_json()["projects"]["p"];
        assert_eq!(p["last_result"], "success", "{p}");
        assert_eq!(p["waiting_for_window"], false, "{p}");
        // Nothing to do is not waiting: in sync, outside the windows too.
        std::fs::write(dir.path().join("deployed"), "").unwrap();
        tx.send(Wake::because("file")).unwrap();
        settle(&shared, 4).await;
        let p = &shared.status_json()["projects"]["p"];
        assert_eq!(p["last_result"], "success", "{p}");
        drop(tx);
        h.await.unwrap();
    }

    #[test]
    fn discovery_single_and_root() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["b", "a", ".hidden", "nocompose"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        std::fs::write(d.path().join("a/compose.yaml"), "").unwrap();
        std::fs::write(d.path().join("b/docker-compose.yml"), "").unwrap();
        std::fs::write(d.path().join(".hidden/compose.yaml"), "").unwrap();
        let ids: Vec<String> = discover(d.path()).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let one = discover(&d.path().join("a"));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, "a");
    }
}
