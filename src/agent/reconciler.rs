//! The one seam between the agent's loop and the pipeline. The loop owns scheduling, retries,
//! memory and reporting; a [`Reconciler`] owns load -> resolve -> observe -> plan -> apply
//! (the library's `converge`, the same code as `composeops apply`). It is split in two so the
//! loop can compare the desired state with the one it remembers as rolled back *before*
//! anything on the engine changes.

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
    /// What apply would do, one line per action (`recreate web (…)`); empty when the engine
    /// already runs the desired state.
    pub pending: Vec<String>,
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

/// The library's error kinds: the agent decides by them (metrics count registry failures).
pub use crate::error::ErrorKind;

impl ReconcileError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ReconcileError {
            kind,
            message: message.into(),
        }
    }
}

impl From<crate::error::Error> for ReconcileError {
    fn from(e: crate::error::Error) -> Self {
        ReconcileError::new(e.kind(), e.message())
    }
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, ReconcileError>;

/// plan (load -> resolve -> observe -> plan), then apply.
pub trait Reconciler: Send + Sync + 'static {
    /// What apply needs from plan (the plan, and the project lock held until apply ends).
    type Prepared: Send + 'static;

    /// Loads the project and plans it under the project lock. Changes nothing on the engine
    /// but images (pulled as the pull policy says) and the recovery of an interrupted run, so
    /// the loop can still decide not to apply (a desired state remembered as rolled back).
    fn plan<'a>(
        &'a self,
        project: &'a ProjectSource,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<(DesiredState, Self::Prepared)>>;

    /// Applies what [`Reconciler::plan`] prepared. Must leave the project consistent when it
    /// returns (every step finished).
    fn apply<'a>(
        &'a self,
        project: &'a ProjectSource,
        prepared: Self::Prepared,
        opts: &'a RunOptions,
    ) -> BoxFuture<'a, Result<Converged>>;

    /// A stack placed on another node: what of project `name` is still on this engine, removed
    /// first (containers and networks, never volumes) when `remove`. The default finds nothing,
    /// for reconcilers without an engine.
    fn retire<'a>(
        &'a self,
        name: &'a str,
        remove: bool,
    ) -> BoxFuture<'a, Result<crate::down::Residue>> {
        let _ = (name, remove);
        Box::pin(async { Ok(crate::down::Residue::default()) })
    }
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
