//! Which images this project's updates replaced, and `--cleanup`: removing them once nothing
//! can need them.
//!
//! Every apply that recreates a service records what it now runs, its image and definition, in
//! the history (`<state dir>/<project>.images.json`), after the image it replaced. Cleanup
//! keeps the image of each service's current and previous deployment, the previous being what
//! `composeops rollback` goes back to; it removes only older images that the history names, and only when no
//! container on the engine (of any project, running or stopped) uses them. An image the
//! history does not name (pulled by hand, another project's, a base image) is never touched.
//! Removal is by image id without force, so an image that has gained other tags is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apply::{Outcome, Report};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::Plan;

const VERSION: u32 = 1;

/// What each service ran, oldest first; the last is the current deployment. A deployment is
/// an image and, since they are recorded, the service's definition: `composeops rollback`
/// puts back the one before the last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub version: u32,
    pub services: BTreeMap<String, Vec<Deployed>>,
}

/// One image a service ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// The local image id (`sha256:…`).
    pub image_id: String,
    /// The registry digest it was pulled by, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The tag it was resolved from (the moved tag for a tracked image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: String,
    /// The service's definition as deployed: its object in `config --format json`
    /// (interpolated, environment values included, which is why the file is private). Absent
    /// for what was recorded before definitions were, and for the container an update replaced
    /// the first time (its definition is not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<serde_json::Value>,
}

impl Deployed {
    /// The same image with the same definition (an unknown definition matches any).
    fn same_as(&self, other: &Deployed) -> bool {
        self.image_id == other.image_id
            && match (&self.service, &other.service) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Where the history of `project` lives.
pub fn history_path(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join(format!("{project}.images.json"))
}

impl History {
    /// Reads the history; a missing or unreadable file is an empty history (a warning for the
    /// latter): losing it only means fewer images are known to be removable.
    pub fn read(path: &Path) -> History {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
                crate::progress::warn(format!(
                    "ignoring {}: {e}; images replaced before now are not cleaned up",
                    path.display()
                ));
                History::default()
            }),
            Err(_) => History::default(),
        }
    }

    /// Writes atomically, readable by its owner only: definitions hold environment values.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut text = serde_json::to_string_pretty(self).expect("history serialises");
        text.push('\n');
        crate::fsutil::write_atomic_private(path, text.as_bytes())
    }

    /// Records that `service` now runs `now`, after `replaced` (the container it replaced,
    /// recorded first when the history does not know the service yet). A deployment already
    /// listed moves to its new place, so each appears once; the current one recorded without a
    /// definition (before definitions were recorded) just gains it.
    pub fn record(&mut self, service: &str, replaced: Option<Deployed>, now: Deployed) {
        let list = self.services.entry(service.to_string()).or_default();
        if let Some(last) = list.last_mut().filter(|d| d.same_as(&now)) {
            if last.service.is_none() {
                last.service = now.service;
            }
            return;
        }
        if let Some(r) = replaced.filter(|r| !r.same_as(&now)) {
            if list.is_empty() {
                list.push(r);
            }
        }
        list.retain(|d| !d.same_as(&now));
        list.push(now);
    }

    /// Images a cleanup may remove: listed for some service but neither the current nor the
    /// previous deployment's image of any service. With the service and tag they were
    /// recorded under.
    pub fn removable(&self) -> Vec<(String, Deployed)> {
        let keep: BTreeSet<&String> = self
            .services
            .values()
            .flat_map(|l| l.iter().rev().take(2).map(|d| &d.image_id))
            .collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (service, list) in &self.services {
            for d in list.iter().rev().skip(2) {
                if !keep.contains(&d.image_id) && seen.insert(d.image_id.clone()) {
                    out.push((service.clone(), d.clone()));
                }
            }
        }
        out
    }

    /// Each service's current image as (tag, digest), when both were recorded.
    pub fn deployed(&self) -> std::collections::HashMap<String, (String, String)> {
        self.services
            .iter()
            .filter_map(|(s, l)| {
                let d = l.last()?;
                Some((s.clone(), (d.tag.clone()?, d.digest.clone()?)))
            })
            .collect()
    }

    /// Forgets an image (removed, or gone already).
    pub fn forget(&mut self, image_id: &str) {
        for list in self.services.values_mut() {
            let keep_from = list.len().saturating_sub(2);
            let mut i = 0;
            list.retain(|d| {
                let old = i < keep_from;
                i += 1;
                !(old && d.image_id == image_id)
            });
        }
    }
}

/// Records, after an apply, what each applied service now runs (image and definition) and
/// the image it replaced.
/// Services rolled back or failed keep their history as it was.
pub fn record_applied(
    state_dir: &Path,
    plan: &Plan,
    desired: &crate::plan::Desired,
    observed: &crate::observe::Observed,
    digests: &indexmap::IndexMap<String, crate::resolve::ResolvedImage>,
    report: &Report,
) -> std::io::Result<()> {
    let path = history_path(state_dir, &plan.project);
    let mut history = History::read(&path);
    let before = history.clone();
    let now = crate::lock::now_rfc3339();
    for s in &report.services {
        if s.outcome != Outcome::Applied {
            continue;
        }
        let Some(image) = desired.images.get(&s.service) else {
            continue;
        };
        let Some(id) = image.local_id.clone() else {
            continue;
        };
        let resolved = digests.get(&s.service);
        let replaced = observed
            .containers
            .iter()
            .find(|c| c.service == s.service && !c.oneoff)
            .map(|c| Deployed {
                image_id: c.image_id.clone(),
                digest: plan
                    .services
                    .iter()
                    .find(|p| p.service == s.service)
                    .and_then(|p| p.image_change.as_ref().map(|x| x.from.clone())),
                tag: None,
                recorded_at: now.clone(),
                service: None,
            });
        let deployed = Deployed {
            image_id: id,
            digest: image.digest.clone(),
            tag: resolved.and_then(|r| r.tag.clone()),
            recorded_at: now.clone(),
            service: desired
                .project
                .services
                .get(&s.service)
                .map(crate::model::Service::to_json),
        };
        history.record(&s.service, replaced, deployed);
    }
    if history != before {
        history.version = VERSION;
        history.write(&path)?;
    }
    Ok(())
}

/// What a cleanup did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    pub removed: Vec<CleanedImage>,
    /// Removable by the history but kept, with why (in use, other tags, engine refusal).
    pub kept: Vec<CleanedImage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanedImage {
    pub service: String,
    pub image_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Removes the images this project's updates replaced that nothing can need any more (see the
/// module doc). The caller holds the project lock.
pub async fn cleanup(engine: &Engine, state_dir: &Path, project: &str) -> Result<CleanupReport> {
    let path = history_path(state_dir, project);
    let mut history = History::read(&path);
    let mut report = CleanupReport::default();
    let candidates = history.removable();
    if candidates.is_empty() {
        return Ok(report);
    }
    let in_use = images_in_use(engine).await?;
    for (service, d) in candidates {
        let item = |reason: Option<String>| CleanedImage {
            service: service.clone(),
            image_id: d.image_id.clone(),
            tag: d.tag.clone(),
            reason,
        };
        if let Some(c) = in_use.get(&d.image_id) {
            report
                .kept
                .push(item(Some(format!("used by container {c}"))));
            continue;
        }
        let opts = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        match engine
            .call()
            .remove_image(&d.image_id, Some(opts), None)
            .await
        {
            Ok(_) => {
                crate::progress::service(&service, format!("removed image {}", label(&d)));
                history.forget(&d.image_id);
                report.removed.push(item(None));
            }
            Err(e) if crate::engine::is_not_found(&e) => history.forget(&d.image_id),
            Err(e) => report.kept.push(item(Some(e.to_string()))),
        }
    }
    history
        .write(&path)
        .map_err(|e| Error::new(ErrorKind::Engine, format!("{}: {e}", path.display())))?;
    Ok(report)
}

/// `sha256:abcdef012345 (1.2.0)`.
fn label(d: &Deployed) -> String {
    let hex = d.image_id.trim_start_matches("sha256:");
    let short = &hex[..hex.len().min(12)];
    match &d.tag {
        Some(t) => format!("{short} ({t})"),
        None => short.to_string(),
    }
}

/// Image id -> a container using it, over every container on the engine (stopped included).
async fn images_in_use(engine: &Engine) -> Result<BTreeMap<String, String>> {
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .build();
    let list = engine
        .call()
        .list_containers(Some(opts))
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)?;
            Some((c.image_id?, name))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str) -> Deployed {
        Deployed {
            image_id: id.into(),
            digest: None,
            tag: Some(id.into()),
            recorded_at: "2026-12-01T00:00:00Z".into(),
            service: None,
        }
    }

    fn with(id: &str, env: &str) -> Deployed {
        Deployed {
            service: Some(serde_json::json!({"image": "app", "environment": {"A": env}})),
            ..d(id)
        }
    }

    fn ids(h: &History, s: &str) -> Vec<String> {
        h.services[s].iter().map(|d| d.image_id.clone()).collect()
    }

    #[test]
    fn two_updates_back_is_removable_the_previous_is_kept() {
        let mut h = History::default();
        h.record("web", Some(d("a")), d("b"));
        assert_eq!(ids(&h, "web"), ["a", "b"]);
        assert!(h.removable().is_empty(), "previous image a stays");
        h.record("web", Some(d("b")), d("c"));
        assert_eq!(ids(&h, "web"), ["a", "b", "c"]);
        let r: Vec<String> = h.removable().into_iter().map(|x| x.1.image_id).collect();
        assert_eq!(r, ["a"]);
        h.forget("a");
        assert_eq!(ids(&h, "web"), ["b", "c"]);
    }

    #[test]
    fn an_image_another_service_still_keeps_is_not_removable() {
        let mut h = History::default();
        h.record("web", None, d("a"));
        h.record("web", None, d("b"));
        h.record("web", None, d("c"));
        h.record("worker", None, d("a"));
        assert!(h.removable().is_empty());
        // forget never drops a kept image of another service
        h.forget("a");
        assert_eq!(ids(&h, "worker"), ["a"]);
    }

    #[test]
    fn going_back_to_an_older_image_moves_it_to_the_end() {
        let mut h = History::default();
        h.record("web", None, d("a"));
        h.record("web", None, d("b"));
        h.record("web", None, d("a"));
        assert_eq!(ids(&h, "web"), ["b", "a"]);
        h.record("web", None, d("a"));
        assert_eq!(ids(&h, "web"), ["b", "a"]);
        assert!(h.removable().is_empty());
    }

    #[test]
    fn a_definition_change_is_a_deployment_of_its_own() {
        let mut h = History::default();
        h.record("web", None, with("a", "1"));
        h.record("web", None, with("a", "2"));
        assert_eq!(ids(&h, "web"), ["a", "a"]);
        // Recorded again: nothing new. Going back to the first moves it to the end.
        h.record("web", None, with("a", "2"));
        h.record("web", None, with("a", "1"));
        let envs: Vec<_> = h.services["web"]
            .iter()
            .map(|d| d.service.as_ref().unwrap()["environment"]["A"].clone())
            .collect();
        assert_eq!(envs, ["2", "1"]);
        // What was recorded without a definition gains it instead of doubling.
        let mut old = History::default();
        old.record("web", None, d("a"));
        old.record("web", None, with("a", "1"));
        assert_eq!(ids(&old, "web"), ["a"]);
        assert!(old.services["web"][0].service.is_some());
    }

    #[test]
    fn history_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = history_path(dir.path(), "proj");
        assert_eq!(History::read(&p), History::default());
        let mut h = History {
            version: VERSION,
            ..Default::default()
        };
        h.record("web", Some(d("a")), with("b", "secret"));
        h.write(&p).unwrap();
        assert_eq!(History::read(&p), h);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "definitions hold environment values");
    }
}
