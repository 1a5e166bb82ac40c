//! `composeops apply`: converge the engine to the compose files; one line per service, or
//! `--json` (the plan and the report).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use composeops::apply::{ApplyJson, ApplyOptions, Report, EXIT_CONVERGED};
use composeops::cleanup::CleanupReport;
use composeops::converge::{self, ImageSource, PlanRequest};
use composeops::gate::Gate;
use composeops::model::Project;
use composeops::plan::{render_text, Plan};
use composeops::pull::PullMode;
use composeops::saved_plan::SavedPlan;

use super::args::{ApplyArgs, Global};
use super::common;

pub(crate) fn run(global: &Global, a: &ApplyArgs) -> Result<i32> {
    if let Some(file) = a.common.path.as_ref().filter(|p| p.is_file()) {
        return run_saved(global, a, file);
    }
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let look_up = !(a.common.offline || a.common.locked);
    let (guess, images) = common::Guess::of(global, a.common.path.as_ref(), dir, true, look_up);
    let (rt, connecting, lookups) = common::connect_early(global, guess)?;
    let project = common::load(global, a.common.path.as_ref())?;
    images.send(&project);
    let mut req = super::plan::request(&a.common, PullMode::Policy, true);
    req.digests.ahead = lookups;
    converge_and_report(global, a, (rt, connecting), project, req, None)
}

/// `apply FILE`: the saved plan's project, loaded again as it was, planned again against the
/// saved digests, and applied only if nothing changed since.
fn run_saved(global: &Global, a: &ApplyArgs, file: &Path) -> Result<i32> {
    let given: Vec<&str> = [
        (!global.files.is_empty(), "-f"),
        (global.project_name.is_some(), "-p"),
        (global.project_directory.is_some(), "--project-directory"),
        (!global.env_files.is_empty(), "--env-file"),
        (!global.profiles.is_empty(), "--profile"),
        (a.common.prune, "--prune"),
        (a.common.locked, "--locked"),
        (a.common.offline, "--offline"),
    ]
    .into_iter()
    .filter_map(|(set, flag)| set.then_some(flag))
    .collect();
    if !given.is_empty() {
        anyhow::bail!(
            "{}: a saved plan carries its project, files, profiles, images and --prune; {} \
             cannot change them (make the plan again with them instead)",
            file.display(),
            given.join(", ")
        );
    }
    let (rt, connecting, _) = common::connect_early(global, None)?;
    let saved = SavedPlan::read(file)?;
    let loaded = composeops::load::load(&saved.inputs.load_options())?;
    common::warn_all(&loaded.warnings);
    saved.check_project(&loaded.project)?;
    let req = PlanRequest {
        source: ImageSource::Saved(Arc::new(saved.digests.clone())),
        pull: PullMode::Policy,
        prune: saved.inputs.prune,
        lock_held: true,
        digests: Default::default(),
    };
    converge_and_report(
        global,
        a,
        (rt, connecting),
        loaded.project,
        req,
        Some(&saved),
    )
}

/// Locks, plans, checks a saved plan still holds, applies, and prints the report.
fn converge_and_report(
    global: &Global,
    a: &ApplyArgs,
    (rt, connecting): (common::Background, common::Connecting),
    project: Project,
    req: PlanRequest,
    saved: Option<&SavedPlan>,
) -> Result<i32> {
    let dir = common::state_dir(a.common.state_dir.as_ref());
    let (plan, report, cleaned) = rt.block_on(async {
        let connecting = common::connected(connecting);
        let converge::Prepared {
            engine,
            planned,
            lock: _lock,
        } = converge::prepare(connecting, &dir, project, &req, a.lock_timeout).await?;
        if let Some(s) = saved {
            s.check_current(&planned)?;
        }
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
            gate: a.gate.clone().map(|command| Gate {
                command,
                timeout: a.gate_timeout,
            }),
        };
        let report = converge::apply(&engine, &dir, &planned, opts).await?;
        // Still under the project lock: no other run is between its pull and its create.
        let cleaned = if a.cleanup {
            let name = &planned.desired.project.name;
            Some(composeops::cleanup::cleanup(&engine, &dir, name).await?)
        } else {
            None
        };
        tracing::debug!(api_calls = engine.calls(), "engine API calls");
        anyhow::Ok((planned.plan, report, cleaned))
    })?;
    let code = report.exit_code();
    if a.common.json {
        let mut v = serde_json::to_value(ApplyJson { plan, report })?;
        if let (Some(c), Some(o)) = (&cleaned, v.as_object_mut()) {
            o.insert("cleanup".into(), serde_json::to_value(c)?);
        }
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
    } else {
        print_report(&plan, &report)?;
        if let Some(c) = &cleaned {
            print_cleanup(c)?;
        }
    }
    Ok(code)
}

/// One line per image removed, or kept although the history allows removing it.
fn print_cleanup(c: &CleanupReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (verb, list) in [("removed", &c.removed), ("kept", &c.kept)] {
        for i in list {
            let tag = i
                .tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            write!(out, "{verb} image {}{tag} of {}", i.image_id, i.service)?;
            match &i.reason {
                Some(r) => writeln!(out, ": {r}")?,
                None => writeln!(out)?,
            }
        }
    }
    Ok(())
}

/// One line per service, with the failed container's health checks and last log lines.
pub(crate) fn print_report(plan: &Plan, report: &Report) -> Result<()> {
    // One write for the whole report, not one per line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in &report.services {
        write!(out, "{:<24} {}", s.service, s.outcome.as_str())?;
        if let Some(m) = &s.message {
            // A check's output (a gate's, a `verify`'s) spans lines: keep them under the
            // service's.
            write!(out, ": {}", m.replace('\n', "\n    "))?;
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
    out.flush()?;
    Ok(())
}
