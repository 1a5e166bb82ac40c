//! This node's share of the stacks under PATH (see [`crate::fleet`] for the placement rules),
//! and what happens to a stack placed elsewhere: nothing runs it here, and what it left on this
//! engine is removed under `--prune` (containers and networks, never volumes) or reported.
//!
//! Placement is decided at every rescan (start, git pull, SIGHUP, file events), so a git
//! change to a stack's `nodes` moves it within one pull interval.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::reconciler::{ProjectSource, Reconciler};
use super::Shared;
use crate::down::Residue;
use crate::fleet::{self, Decision, Node, PlacedBy};

/// One stack found under PATH, with its placement on this node.
#[derive(Debug, Clone)]
pub struct Placed {
    pub src: ProjectSource,
    /// The Compose project name (`None` when the stack cannot be loaded).
    pub project: Option<String>,
    pub decision: Decision,
    /// Why the placement could not be read as written (a bad glob: then the stack is skipped;
    /// a compose file that does not load: then it runs, so its worker reports the error).
    pub error: Option<String>,
}

/// Every stack under `root` and whether it runs on `node`. Errs only when `x-composeops.yaml`
/// is unreadable: then nothing can be decided for any stack.
pub fn place(root: &Path, node: &Node) -> Result<Vec<Placed>> {
    let file = fleet::read_fleet_file(root)?;
    let mut out = Vec::new();
    for src in super::discover(root) {
        let (project, own, mut error) =
            match crate::load::load(&super::watch::load_options(&src.dir)) {
                Ok(l) => match fleet::own_placement(&l.project.extensions) {
                    Ok(own) => (Some(l.project.name), own, None),
                    Err(e) => (Some(l.project.name), None, Some(format!("{e:#}"))),
                },
                Err(e) => (None, None, Some(format!("{e:#}"))),
            };
        let decision = match (
            &error,
            fleet::decide(file.as_ref(), &src.id, own.as_ref(), node),
        ) {
            // An `x-composeops` key that does not parse: skipped rather than run everywhere.
            (Some(_), Ok(d)) if project.is_some() && d.placed_by != PlacedBy::FleetFile => {
                Decision {
                    runs_here: false,
                    ..d
                }
            }
            (_, Ok(d)) => d,
            (_, Err(e)) => {
                error = Some(format!("{e:#}"));
                Decision {
                    runs_here: false,
                    nodes: None,
                    placed_by: PlacedBy::Default,
                }
            }
        };
        out.push(Placed {
            src,
            project,
            decision,
            error,
        });
    }
    Ok(out)
}

/// A stack this node does not run, as /status lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub dir: String,
    /// `nodes: [n2]`, or the error that made the placement unreadable.
    pub reason: String,
    pub placed_by: PlacedBy,
    /// Its containers and networks still on this engine (without `--prune`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_running: Option<Residue>,
    /// What `--prune` removed when it moved away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Residue>,
    /// Under `--prune` outside the maintenance windows: its removal waits for one to open
    /// (`left_running` says what is still here).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removal_waits_for_window: bool,
}

impl Skipped {
    pub fn of(p: &Placed) -> Skipped {
        Skipped {
            dir: p.src.dir.display().to_string(),
            reason: match &p.error {
                Some(e) if !p.decision.runs_here => format!("{} ({e})", p.decision.reason()),
                _ => p.decision.reason(),
            },
            placed_by: p.decision.placed_by,
            left_running: None,
            removed: None,
            removal_waits_for_window: false,
        }
    }
}

/// After the stack's worker (if it had one) finished its run: finds what the project left on
/// this engine, and removes it under `--prune`. Runs for every newly skipped stack, so a stack
/// that moved away while the agent was down is found too.
pub(crate) fn retire<R: Reconciler>(
    reconciler: Arc<R>,
    shared: Arc<Shared>,
    id: String,
    project: String,
    worker: Option<JoinHandle<()>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(h) = worker {
            let _ = h.await;
        }
        let prune = shared.settings.prune;
        if prune && !wait_for_window(&*reconciler, &shared, &id, &project).await {
            return;
        }
        match reconciler.retire(&project, prune).await {
            Ok(r) if r.is_empty() => {}
            Ok(r) if prune => {
                tracing::info!(project = %id, containers = ?r.containers, networks = ?r.networks,
                    "stack placed on other nodes: removed its containers and networks (volumes kept)");
                shared.update_skipped(&id, |s| s.removed = Some(r));
            }
            Ok(r) => {
                tracing::warn!(project = %id, containers = ?r.containers,
                    "stack placed on other nodes but still running here: left as it is \
                     (--prune removes its containers and networks, never volumes)");
                shared.update_skipped(&id, |s| s.left_running = Some(r));
            }
            Err(e) => {
                tracing::error!(project = %id, error = %e, "cannot retire a stack placed on other nodes");
                shared.update_skipped(&id, |s| {
                    s.reason = format!("{} (retire failed: {e})", s.reason)
                });
            }
        }
    })
}

/// Removing a stack is a change like any other: under `--window` it waits for a window to
/// open. Meanwhile /status shows the stack as left running, its removal waiting. `false` when
/// there is nothing to remove, or when the stack was placed here again while it waited.
async fn wait_for_window<R: Reconciler>(
    reconciler: &R,
    shared: &Shared,
    id: &str,
    project: &str,
) -> bool {
    // How often a waiting removal looks at the clock and the placement again.
    const POLL: std::time::Duration = std::time::Duration::from_secs(1);
    let windows = &shared.settings.windows;
    if windows.is_open(shared.now()) {
        return true;
    }
    match reconciler.retire(project, false).await {
        Ok(r) if r.is_empty() => return false,
        Ok(r) => {
            tracing::info!(project = %id, containers = ?r.containers,
                next_window = ?windows.next_opening(shared.now()),
                "stack placed on other nodes: its removal waits for a maintenance window");
            shared.update_skipped(id, |s| {
                s.left_running = Some(r);
                s.removal_waits_for_window = true;
            });
        }
        // The removal itself will tell.
        Err(_) => return true,
    }
    while !windows.is_open(shared.now()) {
        if !shared.is_skipped(id) {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    shared.update_skipped(id, |s| {
        s.left_running = None;
        s.removal_waits_for_window = false;
    });
    shared.is_skipped(id)
}

/// The skipped stacks' entries for /status, keeping what a retire already found.
pub(crate) fn merge_skipped(
    old: &BTreeMap<String, Skipped>,
    placed: &[Placed],
) -> BTreeMap<String, Skipped> {
    placed
        .iter()
        .filter(|p| !p.decision.runs_here)
        .map(|p| {
            let mut s = Skipped::of(p);
            if let Some(o) = old.get(&p.src.id) {
                s.left_running = o.left_running.clone();
                s.removed = o.removed.clone();
                s.removal_waits_for_window = o.removal_waits_for_window;
            }
            (p.src.id.clone(), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn stacks_are_placed_from_their_files_and_the_fleet_file() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "web/compose.yaml",
            "x-composeops: {nodes: [\"n*\"]}\nservices: {web: {image: busybox}}\n",
        );
        // Interpolated like any other key (the loader keeps top-level x- keys).
        write(
            r,
            "db/compose.yaml",
            "x-composeops: {nodes: [\"${DB_NODE:-n2}\"]}\nservices: {db: {image: busybox}}\n",
        );
        write(r, "all/compose.yaml", "services: {a: {image: busybox}}\n");
        write(r, "broken/compose.yaml", "services: [\n");
        write(
            r,
            "badglob/compose.yaml",
            "x-composeops: {nodes: [\"n[\"]}\nservices: {a: {image: busybox}}\n",
        );
        let runs = |n: &str| -> Vec<String> {
            place(r, &node(n))
                .unwrap()
                .into_iter()
                .filter(|p| p.decision.runs_here)
                .map(|p| p.src.id)
                .collect()
        };
        // A stack that does not load runs (its worker reports the error); a bad glob does not.
        assert_eq!(runs("n1"), ["all", "broken", "web"]);
        assert_eq!(runs("n2"), ["all", "broken", "db", "web"]);
        // The fleet file wins for the stacks it lists.
        write(
            r,
            "x-composeops.yaml",
            "stacks: {web: {nodes: [m1]}, all: {nodes: []}}\n",
        );
        assert_eq!(runs("n1"), ["broken"]);
        assert_eq!(runs("m1"), ["broken", "web"]);
        let placed = place(r, &node("n1")).unwrap();
        let skipped = merge_skipped(&BTreeMap::new(), &placed);
        assert_eq!(skipped["web"].reason, "nodes: [m1]");
        assert_eq!(skipped["web"].placed_by, PlacedBy::FleetFile);
        assert_eq!(skipped["db"].placed_by, PlacedBy::ComposeFile);
        assert!(
            skipped["badglob"].reason.contains("n["),
            "{}",
            skipped["badglob"].reason
        );
        // A broken fleet file decides nothing.
        write(r, "x-composeops.yaml", "stack: {}\n");
        let e = place(r, &node("n1")).unwrap_err();
        assert!(format!("{e:#}").contains("x-composeops.yaml"), "{e:#}");
    }
}
