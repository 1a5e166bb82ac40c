//! `composeops rollback [SERVICE...]`: the previous image of each service, applied.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Result;

use composeops::apply::{ApplyJson, ApplyOptions};
use composeops::cleanup::{history_path, History};
use composeops::converge::{self, ImageSource, PlanRequest};
use composeops::plan::render_text;
use composeops::pull::PullMode;

use super::args::{Global, RollbackArgs};
use super::common;

pub(crate) fn run(global: &Global, a: &RollbackArgs) -> Result<i32> {
    let project = common::load(global, None)?;
    let dir = common::state_dir(a.state_dir.as_ref());
    let history = History::read(&history_path(&dir, &project.name));
    let target = composeops::rollback::target(&project, &history, &a.services)?;
    common::warn_all(&target.notes);
    let req = PlanRequest {
        source: ImageSource::Saved(Arc::new(target.pinned.clone())),
        pull: PullMode::Policy,
        prune: false,
        lock_held: true,
        digests: Default::default(),
    };
    let (plan, report) = common::runtime()?.block_on(async {
        let engine = converge::connect(&global.engine()).await?;
        let name = &target.project.name;
        let _lock = converge::lock(&engine, &dir, name, a.lock_timeout).await?;
        let mut planned = converge::plan(&engine, &dir, target.project.clone(), &req).await?;
        composeops::rollback::restrict(&mut planned.plan, &target.services);
        if !a.json {
            let colour = common::colour(global.ansi, std::io::stdout().is_terminal());
            print!("{}", render_text(&planned.plan, colour));
        }
        let opts = ApplyOptions {
            wait_timeout: a.wait_timeout,
            cleanup_failed: false,
            extra_labels: Default::default(),
            gate: None,
        };
        let report = converge::apply(&engine, &dir, &planned, opts).await?;
        anyhow::Ok((planned.plan, report))
    })?;
    let code = report.exit_code();
    if a.json {
        let v = ApplyJson { plan, report };
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
    } else {
        super::apply::print_report(&plan, &report)?;
    }
    Ok(code)
}
