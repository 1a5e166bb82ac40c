//! What `apply` reports: each service's [`Outcome`], the run's exit status, and the JSON that
//! `apply --json` prints (its schema is checked in under `schemas/`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Exit statuses of `composeops apply` (documented in `--help`).
pub const EXIT_CONVERGED: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_NOT_CONVERGED: i32 = 2;
pub const EXIT_ROLLBACK_FAILED: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Changed and ready.
    Applied,
    Unchanged,
    /// The new container failed; the old one runs again under its own name and id.
    RolledBack,
    /// The new container failed and the old one could not be put back.
    RollbackFailed,
    /// A new container (nothing to roll back to) failed to start or become ready.
    Failed,
    /// Not attempted: a required dependency failed.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceOutcome {
    pub service: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last log lines of the failed container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Last health-check outputs of the failed container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_log: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub project: String,
    pub services: Vec<ServiceOutcome>,
    /// Engine API requests made by this run.
    pub api_calls: usize,
}

/// What `apply --json` prints: the plan that was executed and the outcome of each service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyJson {
    pub plan: Plan,
    pub report: Report,
}

/// JSON Schema of `apply --json` (`schemas/apply.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ApplyJson);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::RolledBack => "rolled-back",
            Outcome::RollbackFailed => "rollback-failed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        let has = |o: Outcome| self.services.iter().any(|s| s.outcome == o);
        if has(Outcome::RollbackFailed) {
            EXIT_ROLLBACK_FAILED
        } else if has(Outcome::RolledBack) || has(Outcome::Failed) || has(Outcome::Skipped) {
            EXIT_NOT_CONVERGED
        } else {
            EXIT_CONVERGED
        }
    }
}

/// The outcome of a service from those of its replicas: the worst one.
pub(crate) fn worse(a: Outcome, b: Outcome) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Unchanged => 0,
        Outcome::Applied => 1,
        Outcome::Skipped => 2,
        Outcome::Failed => 3,
        Outcome::RolledBack => 4,
        Outcome::RollbackFailed => 5,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/apply.schema.json");
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, super::json_schema()).unwrap();
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            have,
            super::json_schema(),
            "schemas/apply.schema.json is stale: run COMPOSEOPS_UPDATE_SCHEMAS=1 cargo test --lib"
        );
    }
}
