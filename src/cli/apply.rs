//! `composeops apply`: converge the engine to the compose files; one line per service, or
//! `--json` (the plan and the report).

use std::io::{IsTerminal, Write};

use anyhow::Result;

use composeops::apply::{ApplyJson, ApplyOptions, Report, EXIT_CONVERGED};
use composeops::converge;
use composeops::plan::{render_text, Plan};
use composeops::pull::PullMode;

use super::args::{ApplyArgs, Global};
use super::common;

pub(crate) fn run(global: &Global, a: &ApplyArgs) -> Result<i32> {
    let project = common::load(global, a.common.path.as_ref())?;
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let req = super::plan::request(&a.common, PullMode::Policy, true);
    let (plan, report) = common::runtime()?.block_on(async {
        let engine = converge::connect(&global.engine()).await?;
        let _lock = converge::lock(&engine, &dir, &project.name, a.lock_timeout).await?;
        let planned = converge::plan(&engine, &dir, project, &req).await?;
        common::warn_all(&planned.plan.warnings);
        if a.plan && !a.common.json {
            print!(
                "{}",
                render_text(
                    &planned.plan,
                    common::colour(global.ansi, std::io::stdout().is_terminal())
                )
            );
        }
        let opts = ApplyOptions {
            wait_timeout: a.wait_timeout,
            cleanup_failed: a.cleanup_failed,
            extra_labels: Default::default(),
        };
        let report = converge::apply(&engine, &dir, &planned, opts).await?;
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        anyhow::Ok((planned.plan, report))
    })?;
    let code = report.exit_code();
    if a.common.json {
        let v = ApplyJson { plan, report };
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
    } else {
        print_report(&plan, &report)?;
    }
    Ok(code)
}

/// One line per service, with the failed container's health checks and last log lines.
fn print_report(plan: &Plan, report: &Report) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for s in &report.services {
        write!(out, "{:<24} {}", s.service, s.outcome.as_str())?;
        if let Some(m) = &s.message {
            write!(out, ": {m}")?;
        }
        writeln!(out)?;
        for (title, lines) in [
            ("last health checks", &s.health_log),
            ("last log lines", &s.logs),
        ] {
            if !lines.is_empty() {
                writeln!(out, "    {title}:")?;
                for l in lines {
                    writeln!(out, "      {l}")?;
                }
            }
        }
    }
    if report.exit_code() == EXIT_CONVERGED && !plan.has_changes() {
        writeln!(out, "No changes: {} is up to date.", report.project)?;
    }
    Ok(())
}
