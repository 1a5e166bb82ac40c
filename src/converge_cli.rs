//! `plan` and `apply` subcommands: parse, call the library, print. Progress goes to stderr,
//! the plan and the per-service summary to stdout (`--json` for scripts).

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};

use composeops::apply::{Applier, ApplyOptions, Report, EXIT_CONVERGED};
use composeops::converge::{plan_project, ImageSource};
use composeops::engine::Engine;
use composeops::journal::{default_state_dir, Journal, ProjectLock};
use composeops::plan::{render_text, PlanOptions};
use composeops::pull::PullMode;

use crate::cli::{load, ApplyArgs, EngineArgs, Global, PlanArgs};

fn runtime() -> Result<tokio::runtime::Runtime> {
    // Two workers: registry lookups run beside the engine requests (see converge).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn image_source(a: &EngineArgs) -> ImageSource {
    if a.locked {
        ImageSource::Locked
    } else if a.offline {
        ImageSource::Local
    } else {
        ImageSource::Registry
    }
}

fn state_dir(a: &EngineArgs) -> std::path::PathBuf {
    a.state_dir.clone().unwrap_or_else(default_state_dir)
}

pub fn plan(global: &Global, a: &PlanArgs) -> Result<i32> {
    // Load first: bad input is an error before the engine is even contacted.
    let project = load(global, a.common.path.as_ref())?;
    let dir = state_dir(&a.common);
    let rt = runtime()?;
    let planned = rt.block_on(async {
        let engine = Engine::connect(global.host.as_deref()).await?;
        let p = plan_project(
            &engine,
            project,
            &dir,
            PlanOptions {
                prune: a.common.prune,
            },
            PullMode::Never,
            false,
            image_source(&a.common),
        )
        .await;
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        p
    })?;
    let mut out = std::io::stdout().lock();
    if a.common.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&planned.plan)?)?;
    } else {
        write!(
            out,
            "{}",
            render_text(&planned.plan, std::io::stdout().is_terminal())
        )?;
    }
    Ok(if a.detailed_exitcode && planned.plan.has_changes() {
        2
    } else {
        0
    })
}

pub fn apply(global: &Global, a: &ApplyArgs) -> Result<i32> {
    let project = load(global, a.common.path.as_ref())?;
    let dir = state_dir(&a.common);
    let _lock = ProjectLock::acquire(&dir, &project.name, a.lock_timeout)?;
    let journal = Journal::new(&dir, &project.name);
    let rt = runtime()?;
    let (plan, report) = rt.block_on(async {
        let engine = Engine::connect(global.host.as_deref()).await?;
        let planned = plan_project(
            &engine,
            project,
            &dir,
            PlanOptions {
                prune: a.common.prune,
            },
            PullMode::Policy,
            true,
            image_source(&a.common),
        )
        .await?;
        for w in &planned.plan.warnings {
            eprintln!("warning: {w}");
        }
        if a.plan && !a.common.json {
            print!(
                "{}",
                render_text(&planned.plan, std::io::stdout().is_terminal())
            );
        }
        let report = if planned.plan.has_changes() {
            let applier = Applier {
                engine: &engine,
                desired: &planned.desired,
                journal: &journal,
                opts: ApplyOptions {
                    wait_timeout: a.wait_timeout,
                    cleanup_failed: a.cleanup_failed,
                    extra_labels: Default::default(),
                },
            };
            applier.apply(&planned.plan, &planned.observed).await?
        } else {
            Report {
                project: planned.plan.project.clone(),
                services: planned
                    .plan
                    .services
                    .iter()
                    .map(|s| composeops::apply::ServiceOutcome {
                        service: s.service.clone(),
                        outcome: composeops::apply::Outcome::Unchanged,
                        message: None,
                        logs: vec![],
                        health_log: vec![],
                    })
                    .collect(),
                api_calls: engine.calls(),
            }
        };
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        anyhow::Ok((planned.plan, report))
    })?;
    let mut out = std::io::stdout().lock();
    if a.common.json {
        let v = composeops::apply::ApplyJson { plan, report };
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(v.report.exit_code());
    } else {
        for s in &report.services {
            let o = serde_json::to_value(s.outcome)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            write!(out, "{:<24} {o}", s.service)?;
            if let Some(m) = &s.message {
                write!(out, ": {m}")?;
            }
            writeln!(out)?;
            if !s.health_log.is_empty() {
                writeln!(out, "    last health checks:")?;
                for l in &s.health_log {
                    writeln!(out, "      {l}")?;
                }
            }
            if !s.logs.is_empty() {
                writeln!(out, "    last log lines:")?;
                for l in &s.logs {
                    writeln!(out, "      {l}")?;
                }
            }
        }
        if report.exit_code() == EXIT_CONVERGED && !plan.has_changes() {
            writeln!(out, "No changes: {} is up to date.", report.project)?;
        }
    }
    Ok(report.exit_code())
}
