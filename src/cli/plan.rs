//! `composeops plan`: what apply would change, with diffs; `--json` for scripts.

use std::io::{IsTerminal, Write};

use std::path::PathBuf;

use anyhow::Result;

use composeops::converge::{self, ImageSource, PlanRequest};
use composeops::fleet::Node;
use composeops::plan::render_text;
use composeops::pull::PullMode;
use composeops::saved_plan::{Inputs, SavedPlan};

use super::args::{EngineArgs, Global, PlanArgs};
use super::common;

/// The request `plan` and `apply` make of the pipeline; they differ in pulling and locking.
pub(crate) fn request(a: &EngineArgs, pull: PullMode, lock_held: bool) -> PlanRequest {
    let source = if a.locked {
        ImageSource::Locked
    } else if a.offline {
        ImageSource::Local
    } else {
        ImageSource::Registry
    };
    PlanRequest {
        source,
        pull,
        prune: a.prune,
        lock_held,
        digests: Default::default(),
    }
}

pub(crate) fn run(global: &Global, a: &PlanArgs) -> Result<i32> {
    if let Some(name) = &a.node {
        return fleet_share(a, name);
    }
    // Bad input is the error the user sees, whatever the engine says: the engine is only
    // pinged (read-only) while the project loads.
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let look_up = !(a.common.offline || a.common.locked);
    let (guess, images) = common::Guess::of(global, a.common.path.as_ref(), dir, false, look_up);
    let (rt, connecting, lookups) = common::connect_early(global, guess)?;
    let project = common::load(global, a.common.path.as_ref())?;
    images.send(&project);
    let inputs = a.out.as_ref().map(|_| {
        let opts = global.load_options(a.common.path.as_ref());
        Inputs::new(&project, &opts, a.common.prune)
    });
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let mut req = request(&a.common, PullMode::Never, false);
    req.digests.ahead = lookups;
    let planned = rt.block_on(async {
        let resolving = converge::start_resolving(&dir, &project, &req);
        let (engine, ahead) = common::connected(connecting).await?;
        let p = converge::plan_ahead(&engine, &dir, project, &req, resolving, ahead).await;
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        p
    })?;
    if let (Some(file), Some(inputs)) = (&a.out, inputs) {
        SavedPlan::new(inputs, &planned).write(file)?;
        eprintln!(
            "Saved the plan to {0}: `composeops apply {0}` applies exactly it.",
            file.display()
        );
    }
    let mut out = std::io::stdout().lock();
    if a.common.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&planned.plan)?)?;
    } else {
        let colour = common::colour(global.ansi, std::io::stdout().is_terminal());
        write!(out, "{}", render_text(&planned.plan, colour))?;
    }
    Ok(if a.detailed_exitcode && planned.plan.has_changes() {
        2
    } else {
        0
    })
}

/// `plan --node NAME PATH`: which stacks under PATH that node runs, as its agent would decide
/// (the same placement code), without an engine: a preview from a laptop.
fn fleet_share(a: &PlanArgs, name: &str) -> Result<i32> {
    let root = a.common.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let node = Node {
        name: name.to_string(),
        labels: a.labels.iter().cloned().collect(),
    };
    let placed = composeops::agent::fleet::place(&root, &node)?;
    let mut out = std::io::stdout().lock();
    if a.common.json {
        let rows: Vec<_> = placed
            .iter()
            .map(|p| {
                serde_json::json!({
                    "stack": p.src.id,
                    "runs_here": p.decision.runs_here,
                    "nodes": p.decision.nodes,
                    "placed_by": p.decision.placed_by,
                    "error": p.error,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    writeln!(out, "Node {name}:")?;
    let width = placed.iter().map(|p| p.src.id.len()).max().unwrap_or(0);
    for p in &placed {
        let what = if p.decision.runs_here {
            "runs here".to_string()
        } else {
            format!("skipped ({})", p.decision.reason())
        };
        let err = p
            .error
            .as_deref()
            .map(|e| format!("  [{e}]"))
            .unwrap_or_default();
        writeln!(out, "  {:<width$}  {what}{err}", p.src.id)?;
    }
    Ok(0)
}
