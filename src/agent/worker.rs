//! One task per project: waits for wake-ups, coalesces them, runs the reconciler, remembers
//! rolled-back desired states, and retries failures with capped exponential backoff. A project's
//! worker never waits on another's, so one broken project cannot hold the rest back.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::events::Event;
use super::metrics::Metrics;
use super::notify;
use super::reconciler::{
    Converged, DesiredState, ErrorKind, ProjectSource, ReconcileError, Reconciler, RunOptions,
    ServiceOutcome, ServiceResult,
};
use super::state::{FailedDesired, ProjectMemory};
use super::Shared;

/// Why a project should run again. Wake-ups that arrive before a run starts (or while one
/// runs) merge into one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wake {
    pub reasons: Vec<&'static str>,
    /// Look up tags' current digests in the registry.
    pub refresh_images: bool,
    /// Apply even a desired state remembered as rolled back, and outside the maintenance
    /// windows (signed `POST /sync?force=1`).
    pub force: bool,
}

impl Wake {
    pub fn because(reason: &'static str) -> Wake {
        Wake {
            reasons: vec![reason],
            ..Default::default()
        }
    }
    pub fn merge(&mut self, other: Wake) {
        for r in other.reasons {
            if !self.reasons.contains(&r) {
                self.reasons.push(r);
            }
        }
        self.refresh_images |= other.refresh_images;
        self.force |= other.force;
    }
}

/// How many services the pending actions change (not networks, volumes or orphans).
fn services_in(pending: &[String]) -> i64 {
    let services = pending
        .iter()
        .filter(|l| {
            !["create network ", "create volume ", "remove orphan "]
                .iter()
                .any(|x| l.starts_with(x))
        })
        .count();
    services as i64
}

/// `initial * 2^(failures-1)`, at most `max`.
pub fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1u32 << shift).min(max)
}

/// A project's line in `GET /status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectStatus {
    pub id: String,
    pub dir: String,
    /// The compose project name (known once the files load).
    pub project: Option<String>,
    /// Git revision of the last successful apply.
    pub revision_applied: Option<String>,
    /// Git revision of the checkout at the last run (`+dirty`: local edits).
    pub revision_desired: Option<String>,
    /// `success`, `rolled_back`, `gate_refused`, `skipped_rolled_back`, `waiting_for_window`,
    /// `error`; none before the first run.
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_run: Option<String>,
    pub last_success: Option<String>,
    /// Planned actions not (yet) in effect: empty when converged.
    pub pending_changes: Vec<String>,
    /// The pending changes wait for a maintenance window (`--window`) to open.
    pub waiting_for_window: bool,
    /// RFC 3339 (UTC): when the next maintenance window opens, while waiting for it.
    pub next_window: Option<String>,
    pub running: bool,
    pub runs: u64,
    pub consecutive_failures: u32,
    pub retry_in_seconds: Option<u64>,
    /// The desired state that was rolled back (or refused by the gate) and will not be
    /// retried until it changes.
    pub rolled_back_state: Option<FailedDesired>,
    /// What the last apply did, one line per action (the same lines as `composeops apply`'s
    /// plan), and each service's outcome.
    pub last_plan: Vec<String>,
    pub last_outcomes: Vec<ServiceOutcome>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How a run ended, for scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Success,
    RolledBack,
    Skipped,
    Failed,
    /// Changes planned outside the maintenance windows: run again when one opens (`None`:
    /// none opens within the horizon of [`super::window::Windows::next_opening`]).
    Waiting {
        opens: Option<DateTime<Utc>>,
    },
}

/// The longest the worker sleeps before looking at the clock again while it waits for a
/// window: a host clock set forward (or a suspended host) is noticed within this.
const WINDOW_RECHECK: Duration = Duration::from_secs(300);

/// When to look at the clock next, waiting for `opens`.
fn window_timer(opens: DateTime<Utc>, now: DateTime<Utc>) -> tokio::time::Instant {
    let left = (opens - now).to_std().unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + left.min(WINDOW_RECHECK)
}

// Long by design: one select loop whose arms (shutdown, wake, retry, window) share the retry
// and window timers it keeps from one run to the next.
pub async fn run_worker<R: Reconciler>(
    src: ProjectSource,
    rec: Arc<R>,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Wake>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut memory = shared.memory.load(&src.id);
    // Series exist from the start (at 0), so alerts on increase() see the first event.
    let label = Metrics::project(&src.id);
    let _ = shared.metrics.rollbacks.get_or_create(&label);
    let _ = shared.metrics.registry_errors.get_or_create(&label);
    let _ = shared.metrics.out_of_date.get_or_create(&label);
    if !shared.settings.windows.is_empty() {
        let _ = shared.metrics.waiting_for_window.get_or_create(&label);
        let _ = shared.metrics.next_window.get_or_create(&label);
    }
    shared.update(&src, |s| {
        s.rolled_back_state = memory.failed.clone();
        s.revision_applied = memory.applied_revision.clone();
    });
    let mut failures: u32 = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    // While changes wait for a maintenance window: when it opens, and when to look at the
    // clock next.
    let mut window: Option<(DateTime<Utc>, tokio::time::Instant)> = None;
    loop {
        let wake = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            w = rx.recv() => match w { Some(w) => w, None => break },
            _ = async { tokio::time::sleep_until(retry_at.unwrap()).await }, if retry_at.is_some() => {
                Wake::because("retry")
            }
            _ = async { tokio::time::sleep_until(window.unwrap().1).await }, if window.is_some() => {
                let (opens, _) = window.unwrap();
                let now = shared.now();
                if now < opens {
                    window = Some((opens, window_timer(opens, now)));
                    continue;
                }
                tracing::info!(project = %src.id, "a maintenance window opened");
                Wake::because("window")
            }
        };
        if *shutdown.borrow() {
            break;
        }
        let mut wake = wake;
        while let Ok(more) = rx.try_recv() {
            wake.merge(more);
        }
        retry_at = None;
        window = None;
        let end = run_once(&src, rec.as_ref(), &shared, &mut memory, &wake).await;
        release_free_heap();
        if let RunEnd::Waiting { opens: Some(t) } = end {
            window = Some((t, window_timer(t, shared.now())));
        }
        match end {
            RunEnd::Failed => {
                failures += 1;
                let d = backoff(
                    failures,
                    shared.settings.retry_initial,
                    shared.settings.retry_max,
                );
                retry_at = Some(tokio::time::Instant::now() + d);
                tracing::info!(project = %src.id, retry_in = ?d, failures, "will retry");
                shared.update(&src, |s| {
                    s.consecutive_failures = failures;
                    s.retry_in_seconds = Some(d.as_secs());
                });
            }
            _ => {
                failures = 0;
                shared.update(&src, |s| {
                    s.consecutive_failures = 0;
                    s.retry_in_seconds = None;
                });
            }
        }
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::debug!(project = %src.id, "worker stopped");
}

/// Hands the heap a reconcile freed back to the system: the agent then idles until the next
/// event, and glibc's malloc otherwise keeps freed memory mapped for a next allocation.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One run: plan, then apply unless the desired state is remembered as rolled back; records
/// the result in memory, metrics and /status.
async fn run_once<R: Reconciler>(
    src: &ProjectSource,
    rec: &R,
    shared: &Shared,
    memory: &mut ProjectMemory,
    wake: &Wake,
) -> RunEnd {
    let started = Instant::now();
    let dir = src.dir.clone();
    let (revision, project_revision) = tokio::task::spawn_blocking(move || {
        (
            super::git::revision(&dir),
            super::git::project_revision(&dir),
        )
    })
    .await
    .unwrap_or((None, None));
    let opts = RunOptions {
        refresh_images: wake.refresh_images,
        locked: shared.settings.locked,
        prune: shared.settings.prune,
        revision: revision.clone(),
        project_revision,
    };
    shared.update(src, |s| {
        s.running = true;
        s.revision_desired = revision.clone();
    });
    let reasons = wake.reasons.join(",");
    tracing::info!(project = %src.id, reasons = %reasons, revision = revision.as_deref().unwrap_or("-"), "reconcile start");
    let run = Run {
        src,
        shared,
        label: Metrics::project(&src.id),
    };
    let (end, result) = match rec.plan(src, &opts).await {
        Err(e) => run.failed(&e, "cannot plan"),
        Ok((desired, prepared)) => {
            shared.update(src, |s| s.project = Some(desired.project_name.clone()));
            let remembered = memory
                .failed
                .as_ref()
                .is_some_and(|f| f.fingerprint == desired.fingerprint);
            let windows = &shared.settings.windows;
            if remembered && !wake.force {
                drop(prepared);
                run.remembered_rollback(memory, &desired)
            } else if !desired.pending.is_empty() && !wake.force && !windows.is_open(shared.now()) {
                // Planned, not applied: the plan (and the project lock) is let go, and the
                // project planned again when a window opens.
                drop(prepared);
                run.waiting(&desired)
            } else {
                if remembered {
                    tracing::warn!(project = %src.id, "forced: applying a desired state that was rolled back before");
                }
                if !desired.pending.is_empty() && !windows.is_open(shared.now()) {
                    tracing::warn!(project = %src.id, "forced: applying outside the maintenance windows");
                }
                match rec.apply(src, prepared, &opts).await {
                    Err(e) if e.kind == ErrorKind::GateRefused => run.refused(memory, &desired, &e),
                    Err(e) => run.failed(&e, "apply failed"),
                    Ok(c) => run.applied(memory, &desired, &c),
                }
            }
        }
    };
    run.record_end(memory, started, result, &end);
    end
}

/// What one run records, wherever it ends.
struct Run<'a> {
    src: &'a ProjectSource,
    shared: &'a Shared,
    label: super::metrics::ProjectLabel,
}

impl Run<'_> {
    /// Saves the project's memory and records how the run ended in the metrics and /status.
    fn record_end(&self, memory: &ProjectMemory, started: Instant, result: &str, end: &RunEnd) {
        let (src, shared) = (self.src, self.shared);
        if !matches!(end, RunEnd::Waiting { .. }) {
            self.not_waiting();
        }
        if let Err(e) = shared.memory.save(&src.id, memory) {
            tracing::error!(project = %src.id, error = %e, "cannot save project state");
        }
        let secs = started.elapsed().as_secs_f64();
        let m = &shared.metrics;
        m.reconciles
            .get_or_create(&Metrics::result(&src.id, result))
            .inc();
        m.duration.get_or_create(&self.label).observe(secs);
        shared.update(src, |s| {
            s.running = false;
            s.runs += 1;
            s.last_result = Some(result.to_string());
            s.last_run = Some(now_rfc3339());
            s.rolled_back_state = memory.failed.clone();
        });
        tracing::info!(project = %src.id, result, seconds = secs, "reconcile end");
    }

    /// A failed step: counted (registry errors), logged and shown in /status.
    fn failed(&self, e: &ReconcileError, what: &str) -> (RunEnd, &'static str) {
        if e.kind == ErrorKind::RegistryUnavailable {
            self.shared
                .metrics
                .registry_errors
                .get_or_create(&self.label)
                .inc();
        }
        tracing::error!(project = %self.src.id, kind = ?e.kind, error = %e.message, "{what}");
        self.shared
            .update(self.src, |s| s.last_error = Some(e.message.clone()));
        (RunEnd::Failed, "error")
    }

    /// The engine runs the desired state: remember it and clear the error.
    fn succeeded(&self, memory: &mut ProjectMemory, desired: &DesiredState) {
        memory.failed = None;
        memory.applied_revision = desired.revision.clone();
        let m = &self.shared.metrics;
        m.last_success.get_or_create(&self.label).set(unix_now());
        self.shared.update(self.src, |s| {
            s.last_error = None;
            s.pending_changes.clear();
            s.last_success = Some(now_rfc3339());
            s.revision_applied = desired.revision.clone();
        });
    }

    /// A desired state that was rolled back before is not applied again until it changes (or
    /// a forced sync), unless someone (`composeops apply`) has deployed it meanwhile.
    fn remembered_rollback(
        &self,
        memory: &mut ProjectMemory,
        desired: &DesiredState,
    ) -> (RunEnd, &'static str) {
        let id = &self.src.id;
        let out_of_date = self.shared.metrics.out_of_date.get_or_create(&self.label);
        if desired.pending.is_empty() {
            tracing::info!(project = %id, "the desired state that was rolled back now runs; forgetting the rollback");
            self.succeeded(memory, desired);
            out_of_date.set(0);
            return (RunEnd::Success, "success");
        }
        tracing::warn!(
            project = %id,
            revision = desired.revision.as_deref().unwrap_or("-"),
            "desired state was rolled back before; not retrying until it changes \
             (or a signed POST /sync?force=1)"
        );
        out_of_date.set(services_in(&desired.pending));
        self.shared
            .update(self.src, |s| s.pending_changes = desired.pending.clone());
        (RunEnd::Skipped, "skipped_rolled_back")
    }

    /// Changes planned outside the maintenance windows: shown, counted, not applied.
    fn waiting(&self, desired: &DesiredState) -> (RunEnd, &'static str) {
        let shared = self.shared;
        let opens = shared.settings.windows.next_opening(shared.now());
        let at = opens.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        tracing::info!(
            project = %self.src.id,
            revision = desired.revision.as_deref().unwrap_or("-"),
            plan = %desired.pending.join("; "),
            next_window = at.as_deref().unwrap_or("-"),
            "outside the maintenance windows: changes planned, waiting for a window \
             (or a signed POST /sync?force=1)"
        );
        let m = &shared.metrics;
        m.out_of_date
            .get_or_create(&self.label)
            .set(services_in(&desired.pending));
        m.waiting_for_window.get_or_create(&self.label).set(1);
        m.next_window
            .get_or_create(&self.label)
            .set(opens.map_or(0.0, |t| t.timestamp() as f64));
        shared.update(self.src, |s| {
            s.pending_changes = desired.pending.clone();
            s.waiting_for_window = true;
            s.next_window = at;
            s.last_error = None;
        });
        (RunEnd::Waiting { opens }, "waiting_for_window")
    }

    /// Any other end of a run: no longer waiting for a window.
    fn not_waiting(&self) {
        let shared = self.shared;
        if shared.settings.windows.is_empty() {
            return;
        }
        shared
            .metrics
            .waiting_for_window
            .get_or_create(&self.label)
            .set(0);
        shared
            .metrics
            .next_window
            .get_or_create(&self.label)
            .set(0.0);
        shared.update(self.src, |s| {
            s.waiting_for_window = false;
            s.next_window = None;
        });
    }

    /// The gate refused the plan and nothing changed: remembered as a rollback is, so the same
    /// desired state is not scanned and refused again on every wake-up.
    fn refused(
        &self,
        memory: &mut ProjectMemory,
        desired: &DesiredState,
        e: &ReconcileError,
    ) -> (RunEnd, &'static str) {
        let rev = desired.revision.as_deref().unwrap_or("-");
        tracing::error!(project = %self.src.id, revision = rev, reason = %e.message,
            "the gate refused the plan; this desired state will not be retried");
        memory.failed = Some(FailedDesired {
            fingerprint: desired.fingerprint.clone(),
            revision: desired.revision.clone(),
            at: now_rfc3339(),
            reason: e.message.clone(),
        });
        let event = Event {
            event: "gate_refused",
            project: desired.project_name.clone(),
            revision: desired.revision.clone(),
            plan: desired.pending.clone(),
            services: vec![],
            time: now_rfc3339(),
            reason: Some(e.message.clone()),
        };
        notify::send(&self.shared.settings.notify, event);
        self.shared.update(self.src, |s| {
            s.last_error = Some(e.message.clone());
            s.pending_changes = desired.pending.clone();
            s.last_plan = desired.pending.clone();
            s.last_outcomes = vec![];
        });
        (RunEnd::RolledBack, "gate_refused")
    }

    /// Records what apply did: success, or a rollback remembered so it is not retried.
    fn applied(
        &self,
        memory: &mut ProjectMemory,
        desired: &DesiredState,
        c: &Converged,
    ) -> (RunEnd, &'static str) {
        let (id, rev) = (&self.src.id, desired.revision.as_deref().unwrap_or("-"));
        let plan = c.plan.join("; ");
        for s in &c.services {
            tracing::info!(project = %id, revision = rev, service = %s.service,
                outcome = ?s.result, detail = %s.detail, "service outcome");
        }
        let failed: Vec<&ServiceOutcome> = c
            .services
            .iter()
            .filter(|s| matches!(s.result, ServiceResult::RolledBack | ServiceResult::Failed))
            .collect();
        let m = &self.shared.metrics;
        m.out_of_date
            .get_or_create(&self.label)
            .set(failed.len() as i64);
        let event = |name: &'static str| Event {
            event: name,
            project: desired.project_name.clone(),
            revision: desired.revision.clone(),
            plan: c.plan.clone(),
            services: c.services.clone(),
            time: now_rfc3339(),
            reason: None,
        };
        let targets = &self.shared.settings.notify;
        self.shared.update(self.src, |s| {
            s.last_plan = c.plan.clone();
            s.last_outcomes = c.services.clone();
        });
        if failed.is_empty() {
            if c.plan.is_empty() {
                tracing::info!(project = %id, revision = rev, "in sync");
            } else {
                tracing::info!(project = %id, revision = rev, plan = %plan, "applied");
                notify::send(targets, event("apply"));
            }
            self.succeeded(memory, desired);
            return (RunEnd::Success, "success");
        }
        let reason = failed
            .iter()
            .map(|s| format!("{}: {}", s.service, s.detail))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(project = %id, revision = rev, plan = %plan, reason = %reason,
            "apply rolled back; this desired state will not be retried");
        memory.failed = Some(FailedDesired {
            fingerprint: desired.fingerprint.clone(),
            revision: desired.revision.clone(),
            at: now_rfc3339(),
            reason: reason.clone(),
        });
        m.rollbacks.get_or_create(&self.label).inc();
        notify::send(targets, event("rollback"));
        self.shared.update(self.src, |s| {
            s.last_error = Some(reason);
            s.pending_changes = c.plan.clone();
        });
        (RunEnd::RolledBack, "rolled_back")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        let got: Vec<u64> = (1..=6).map(|n| backoff(n, i, max).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(1000, i, max), max);
    }

    #[test]
    fn wakes_merge() {
        let mut w = Wake::because("file");
        w.merge(Wake {
            reasons: vec!["image-check", "file"],
            refresh_images: true,
            force: false,
        });
        assert_eq!(w.reasons, ["file", "image-check"]);
        assert!(w.refresh_images && !w.force);
    }
}
