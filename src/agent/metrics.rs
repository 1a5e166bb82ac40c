//! Prometheus metrics (`GET /metrics`), with the official client's text encoder.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabel {
    pub project: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub project: String,
    /// success, rolled_back, gate_refused, skipped_rolled_back, waiting_for_window, error
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabel {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub duration: Family<ProjectLabel, Histogram>,
    pub last_success: Family<ProjectLabel, Gauge<f64, AtomicU64>>,
    pub out_of_date: Family<ProjectLabel, Gauge>,
    pub rollbacks: Family<ProjectLabel, Counter>,
    pub registry_errors: Family<ProjectLabel, Counter>,
    pub git_pulls: Family<PullLabel, Counter>,
    pub waiting_for_window: Family<ProjectLabel, Gauge>,
    pub next_window: Family<ProjectLabel, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("composeops");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile runs by project and result",
            reconciles.clone(),
        );
        let duration = Family::<ProjectLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time of a reconcile run (load to apply)",
            duration.clone(),
        );
        let last_success = Family::<ProjectLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the project's last successful reconcile",
            last_success.clone(),
        );
        let out_of_date = Family::<ProjectLabel, Gauge>::default();
        registry.register(
            "services_out_of_date",
            "Services whose running container differs from the desired state",
            out_of_date.clone(),
        );
        let rollbacks = Family::<ProjectLabel, Counter>::default();
        registry.register(
            "rollbacks",
            "Applies rolled back (old containers restored)",
            rollbacks.clone(),
        );
        let registry_errors = Family::<ProjectLabel, Counter>::default();
        registry.register(
            "registry_errors",
            "Registry lookups that failed",
            registry_errors.clone(),
        );
        let git_pulls = Family::<PullLabel, Counter>::default();
        registry.register("git_pulls", "Git pulls by result", git_pulls.clone());
        let waiting_for_window = Family::<ProjectLabel, Gauge>::default();
        registry.register(
            "waiting_for_window",
            "1 while the project's planned changes wait for a maintenance window to open",
            waiting_for_window.clone(),
        );
        let next_window = Family::<ProjectLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "next_window_timestamp_seconds",
            "Unix time the next maintenance window opens, while the project waits for it (else 0)",
            next_window.clone(),
        );
        Metrics {
            registry,
            reconciles,
            duration,
            last_success,
            out_of_date,
            rollbacks,
            registry_errors,
            git_pulls,
            waiting_for_window,
            next_window,
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)
            .expect("writing to a String cannot fail");
        s
    }

    pub fn project(id: &str) -> ProjectLabel {
        ProjectLabel {
            project: id.to_string(),
        }
    }

    pub fn result(id: &str, result: &str) -> ResultLabels {
        ResultLabels {
            project: id.to_string(),
            result: result.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&Metrics::result("web", "success"))
            .inc();
        m.duration
            .get_or_create(&Metrics::project("web"))
            .observe(0.3);
        let t = m.encode();
        assert!(
            t.contains("composeops_reconciles_total{project=\"web\",result=\"success\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("composeops_reconcile_duration_seconds_bucket"),
            "{t}"
        );
    }
}
