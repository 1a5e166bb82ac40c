//! `composeops status`: per service, what runs (containers, state, health, image digest),
//! what the lock pins, and the last outcome of an apply with its time.
//!
//! Outcomes are recorded by [`record`] in the state directory at the end of every apply that
//! changed something, whoever ran it: `composeops apply` and the agent share the state
//! directory (`/var/lib/composeops` as root), so `status` run beside an agent shows the agent's
//! last outcomes without asking it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::apply::{Outcome, Report};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Project;
use crate::observe::Observed;

/// One service's last outcome other than "unchanged".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastOutcome {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the apply ended (RFC 3339, UTC).
    pub at: String,
}

/// `<state dir>/<project>.outcomes.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcomes {
    /// When an apply last changed something (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<String>,
    pub services: BTreeMap<String, LastOutcome>,
}

fn outcomes_path(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join(format!("{project}.outcomes.json"))
}

/// The recorded outcomes; none when nothing was recorded (or the file is unreadable: status is
/// informative, never a reason to fail).
pub fn read_outcomes(state_dir: &Path, project: &str) -> Outcomes {
    std::fs::read(outcomes_path(state_dir, project))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records what `report` changed: each service's outcome, unless unchanged, replaces its last
/// one. A failure to write is a warning: the apply itself is done.
pub(crate) fn record(state_dir: &Path, report: &Report) {
    let changed: Vec<_> = report
        .services
        .iter()
        .filter(|s| s.outcome != Outcome::Unchanged)
        .collect();
    if changed.is_empty() {
        return;
    }
    let at = crate::lock::now_rfc3339();
    let mut o = read_outcomes(state_dir, &report.project);
    o.last_apply = Some(at.clone());
    for s in changed {
        let last = LastOutcome {
            outcome: s.outcome,
            message: s.message.clone(),
            at: at.clone(),
        };
        o.services.insert(s.service.clone(), last);
    }
    let path = outcomes_path(state_dir, &report.project);
    let text = serde_json::to_vec_pretty(&o).expect("outcomes serialise");
    if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
        crate::progress::warn(format!("cannot record outcomes in {}: {e}", path.display()));
    }
}

/// What `status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "composeops status --json")]
pub struct Status {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<String>,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceStatus {
    pub service: String,
    /// The image as the compose file names it.
    pub image: String,
    /// Replicas the compose file asks for.
    pub replicas: u32,
    pub containers: Vec<ContainerStatus>,
    /// The registry digest the containers run (`sha256:…`), or the local image id when the
    /// image has none (built, never pushed); absent when nothing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_digest: Option<String>,
    /// The digest composeops.lock pins for the image, when locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerStatus {
    pub name: String,
    /// running, exited, …
    pub state: String,
    /// healthy, unhealthy, starting; absent without a healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// The status of `project`: one engine observation, the lock file and the recorded outcomes.
pub async fn status(engine: &Engine, state_dir: &Path, project: &Project) -> Result<Status> {
    let observed = crate::observe::observe(engine, &project.name)
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))?;
    let lock = crate::lock::Lockfile::read(&crate::lock::lock_path(project))
        .ok()
        .flatten();
    let outcomes = read_outcomes(state_dir, &project.name);
    Ok(build(project, &observed, lock.as_ref(), outcomes))
}

/// Pure: the status from what was read.
fn build(
    project: &Project,
    observed: &Observed,
    lock: Option<&crate::lock::Lockfile>,
    mut outcomes: Outcomes,
) -> Status {
    let images = crate::lock::service_images(project);
    let services = project
        .services
        .iter()
        .map(|(name, svc)| {
            let image = images
                .get(name)
                .cloned()
                .unwrap_or_else(|| crate::spec::image_reference(project, name));
            let mut mine: Vec<_> = observed
                .containers
                .iter()
                .filter(|c| &c.service == name && !c.oneoff)
                .collect();
            mine.sort_by_key(|c| c.number);
            let running_digest = mine
                .iter()
                .find(|c| c.state == "running")
                .or(mine.first())
                .map(|c| image_digest(observed, &c.image_id, &image));
            ServiceStatus {
                service: name.clone(),
                replicas: svc.replicas(),
                containers: mine
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        state: c.state.clone(),
                        health: c.health.clone(),
                    })
                    .collect(),
                running_digest,
                locked_digest: lock
                    .and_then(|l| l.images.get(&image))
                    .map(|e| e.digest.clone()),
                last: outcomes.services.remove(name),
                image,
            }
        })
        .collect();
    Status {
        project: project.name.clone(),
        last_apply: outcomes.last_apply,
        services,
    }
}

/// The repo digest of `image_id` for the repository of `reference`, else its first repo
/// digest, else the image id itself.
fn image_digest(observed: &Observed, image_id: &str, reference: &str) -> String {
    let Some(img) = observed.images.get(image_id) else {
        return image_id.to_string();
    };
    let repo = crate::resolve::ImageRef::parse(reference)
        .map(|r| r.familiar_repository())
        .unwrap_or_default();
    let digest_of = |d: &String| d.split_once('@').map(|(_, dg)| dg.to_string());
    img.repo_digests
        .iter()
        .find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo))
        .or(img.repo_digests.first())
        .and_then(digest_of)
        .unwrap_or_else(|| image_id.to_string())
}

/// The text `composeops status` prints: one block per service.
pub fn render_text(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Project {} (last apply: {})",
        s.project,
        s.last_apply.as_deref().unwrap_or("none recorded")
    );
    for svc in &s.services {
        let running = svc
            .containers
            .iter()
            .filter(|c| c.state == "running")
            .count();
        let _ = writeln!(
            out,
            "{:<20} {running}/{} running  {}",
            svc.service, svc.replicas, svc.image
        );
        for c in &svc.containers {
            let health = c
                .health
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let _ = writeln!(out, "    {:<32} {}{health}", c.name, c.state);
        }
        let short = |d: &str| d.chars().take(19).collect::<String>();
        if let Some(d) = &svc.running_digest {
            let _ = write!(out, "    runs   {}", short(d));
            match &svc.locked_digest {
                Some(l) if l == d => {
                    let _ = writeln!(out, "  (as locked)");
                }
                Some(l) => {
                    let _ = writeln!(out, "  (locked: {})", short(l));
                }
                None => {
                    let _ = writeln!(out);
                }
            }
        }
        if let Some(l) = &svc.last {
            let msg = l
                .message
                .as_deref()
                .map(|m| format!(": {}", m.replace('\n', "\n      ")))
                .unwrap_or_default();
            let _ = writeln!(out, "    last   {} at {}{msg}", l.outcome.as_str(), l.at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ServiceOutcome;

    fn report(outcomes: &[(&str, Outcome)]) -> Report {
        Report {
            project: "p".into(),
            services: outcomes
                .iter()
                .map(|(s, o)| ServiceOutcome {
                    service: s.to_string(),
                    outcome: *o,
                    message: None,
                    logs: vec![],
                    health_log: vec![],
                })
                .collect(),
            api_calls: 0,
        }
    }

    #[test]
    fn outcomes_keep_each_service_last_change() {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), &report(&[("web", Outcome::Unchanged)]));
        assert_eq!(read_outcomes(dir.path(), "p"), Outcomes::default());
        record(
            dir.path(),
            &report(&[("web", Outcome::Applied), ("db", Outcome::RolledBack)]),
        );
        record(
            dir.path(),
            &report(&[("web", Outcome::Unchanged), ("db", Outcome::Applied)]),
        );
        let o = read_outcomes(dir.path(), "p");
        assert_eq!(o.services["web"].outcome, Outcome::Applied);
        assert_eq!(o.services["db"].outcome, Outcome::Applied);
        assert!(o.last_apply.is_some());
    }

    #[test]
    fn status_without_containers_lists_each_service() {
        let p = crate::load::test_project(
            "services:\n  web:\n    image: app:1\n    deploy: {replicas: 2}\n",
        );
        let s = build(&p, &Observed::default(), None, Outcomes::default());
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.services[0].replicas, 2);
        assert!(s.services[0].running_digest.is_none());
        let text = render_text(&s);
        assert!(
            text.contains("web") && text.contains("0/2 running"),
            "{text}"
        );
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/status.schema.json");
        let schema = schemars::schema_for!(Status);
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "schemas/status.schema.json is stale: run COMPOSEOPS_UPDATE_SCHEMAS=1 cargo test --lib"
        );
    }
}
