//! `composeops plan`: what apply would change, with diffs; `--json` for scripts.

use std::io::{IsTerminal, Write};

use anyhow::Result;

use composeops::converge::{self, ImageSource, PlanRequest};
use composeops::plan::render_text;
use composeops::pull::PullMode;

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
    // Load first: bad input is an error before the engine is even contacted.
    let project = common::load(global, a.common.path.as_ref())?;
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let req = request(&a.common, PullMode::Never, false);
    let planned = common::runtime()?.block_on(async {
        let engine = converge::connect(global.host.as_deref()).await?;
        let p = converge::plan(&engine, &dir, project, &req).await;
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        p
    })?;
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
