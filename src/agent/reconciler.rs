//! The one seam between the agent's loop and the pipeline. The loop owns scheduling, retries,
//! memory and reporting; a [`Reconciler`] owns load -> resolve -> observe -> plan -> apply.
//! It is split in two so the loop can compare the desired state with the one it remembers as
//! rolled back *before* anything on the engine changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::Serialize;

/// One project the agent keeps converged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectSource {
    /// Directory name under PATH (PATH's own name for a single project): key for state,
    /// metrics and /status.
    pub id: String,
    pub dir: PathBuf,
}

/// What the loop asks for on this run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Ask the registry for tags' current digests (image check, forced sync, first run);
    /// otherwise digests already resolved for the same references are reused, so a file
    /// event never deploys an image update ahead of the image schedule.
    pub refresh_images: bool,
    pub locked: bool,
    pub prune: bool,
    /// Git revision of the checkout (`+dirty` with local edits): logged, reported, notified.
    pub revision: Option<String>,
    /// The last commit that touched the project's directory (`+dirty` with local edits in
    /// it): part of the desired state's identity.
    pub project_revision: Option<String>,
}

/// The desired state of a project, before anything changes.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredState {
    /// The loaded project's name (the directory's, unless the file sets `name:`).
    pub project_name: String,
    pub revision: Option<String>,
    /// Service -> resolved image digest.
    pub digests: BTreeMap<String, String>,
    /// Hash of the project's revision + loaded project + digests: what "the same desired
    /// state" means.
    pub fingerprint: String,
}

/// Per-service result of an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceResult {
    Unchanged,
    Updated,
    Created,
    Removed,
    /// The new container failed; the old one is back.
    RolledBack,
    /// Failed with nothing to roll back to.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceOutcome {
    pub service: String,
    pub result: ServiceResult,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Last log lines of the failed container (rollbacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// What converge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Converged {
    /// One line per planned action (empty: nothing to do).
    pub plan: Vec<String>,
    pub services: Vec<ServiceOutcome>,
}

impl Converged {
    pub fn rolled_back(&self) -> bool {
        self.services
            .iter()
            .any(|s| matches!(s.result, ServiceResult::RolledBack | ServiceResult::Failed))
    }
}

/// Why a run did not get to (or through) apply; the loop retries these with backoff.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The compose files are invalid: retried when they change, and on backoff.
    Load,
    Registry,
    Engine,
    Other,
}

impl ReconcileError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ReconcileError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, ReconcileError>;

/// load -> resolve (desired), then observe -> plan -> apply (converge).
pub trait Reconciler: Send + Sync + 'static {
    /// Whatever converge needs from desired (the loaded project and its digests).
    type Prepared: Send + 'static;

    fn desired<'a>(
        &'a self,
        project: &'a ProjectSource,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<(DesiredState, Self::Prepared)>>;

    /// What converge would do (observe + plan, no change): one line per action, empty when
    /// the engine already runs the desired state. Used for a desired state remembered as rolled
    /// back: if an operator has since applied it by hand, the memory is dropped.
    fn pending<'a>(
        &'a self,
        project: &'a ProjectSource,
        prepared: &'a Self::Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Applies. Must leave the project consistent when it returns (every step finished).
    fn converge<'a>(
        &'a self,
        project: &'a ProjectSource,
        prepared: Self::Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Converged>>;
}

/// sha256 hex of the parts, each length-prefixed so boundaries cannot shift.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}
