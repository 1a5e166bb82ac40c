//! `converge`: the pipeline from a loaded project to a plan (and, in the CLI, to apply):
//! recover an interrupted run, make images present, observe, plan.

use std::path::Path;

use anyhow::Result;

use crate::apply::recover;
use crate::engine::Engine;
use crate::journal::{Journal, ProjectLock};
use crate::model::Project;
use crate::observe::{observe, Observed};
use crate::plan::{self, Desired, Plan, PlanOptions};
use crate::pull::{desired_images, PullMode};

pub struct Planned {
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
}

/// Plans `project`. `lock_held`: the caller (apply) holds the project lock; otherwise (plan)
/// recovery runs only if the lock is free, so a plan never undoes a running apply's work.
pub async fn plan_project(
    engine: &Engine,
    project: Project,
    state_dir: &Path,
    opts: PlanOptions,
    mode: PullMode,
    lock_held: bool,
) -> Result<Planned> {
    let journal = Journal::new(state_dir, &project.name);
    let mut warnings = Vec::new();
    if lock_held {
        recover(engine, &journal).await?;
    } else if journal.path().exists() {
        match ProjectLock::try_acquire(state_dir, &project.name)? {
            Some(_lock) => {
                recover(engine, &journal).await?;
            }
            None => warnings.push(format!(
                "an apply of {} is running: this plan shows the engine mid-update",
                project.name
            )),
        }
    }
    let images = desired_images(engine, &project, mode, &mut warnings).await?;
    let known = images.values().filter_map(|i| i.digest.clone()).collect();
    let observed = observe(engine, &project.name, &known).await?;
    let desired = Desired { project, images };
    let mut plan = plan::plan(&desired, &observed, opts);
    warnings.extend(plan.warnings);
    plan.warnings = warnings;
    Ok(Planned {
        desired,
        observed,
        plan,
    })
}
