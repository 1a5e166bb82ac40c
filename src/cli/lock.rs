//! `composeops lock`: pin every image to its registry digest in composeops.lock.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use composeops::lock::{self as lk, Lockfile, Update};
use composeops::model::Project;
use composeops::resolve::{Platform, ResolveOptions};

use super::args::{Global, LockArgs};
use super::common;

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub(crate) fn run(global: &Global, a: &LockArgs) -> Result<i32> {
    let project = common::load(global, None)?;
    let mut opts = ResolveOptions::default();
    if let Some(p) = &a.platform {
        opts.platform = p.parse::<Platform>().map_err(anyhow::Error::msg)?;
    }
    let path = lk::lock_path(&project);
    let previous = Lockfile::read(&path)?;
    if a.check {
        let Some(lock) = previous else {
            return Err(lk::LockError::Missing { path }.into());
        };
        return check(&project, &path, &lock, &opts, a.json);
    }
    let update = match &a.update {
        None => Update::Missing,
        Some(v) if v.is_empty() => Update::All,
        Some(v) => Update::Services(v.clone()),
    };
    write(&project, &path, previous.as_ref(), &update, &opts, a.json)
}

/// `--check`: exit 1 listing what moved or is missing; writes nothing.
fn check(
    project: &Project,
    path: &Path,
    lock: &Lockfile,
    opts: &ResolveOptions,
    json: bool,
) -> Result<i32> {
    let report = common::runtime()?.block_on(lk::check(project, lock, opts))?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "path": path,
            "ok": report.problems.is_empty(),
            "problems": report.problems,
            "unused": report.unused,
            "registry": report.stats,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if report.problems.is_empty() {
        let n = lock.images.len();
        writeln!(out, "{} is up to date ({n} images)", path.display())?;
    } else {
        writeln!(out, "{} is out of date:", path.display())?;
        for p in &report.problems {
            writeln!(out, "  {p}")?;
        }
        writeln!(
            out,
            "run `composeops lock --update` (or `--update SERVICE...`) and commit the file"
        )?;
    }
    for u in &report.unused {
        eprintln!("note: {u} is locked but no service uses it");
    }
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

/// Resolves what `update` asks for and writes the lock when it changed.
fn write(
    project: &Project,
    path: &Path,
    previous: Option<&Lockfile>,
    update: &Update,
    opts: &ResolveOptions,
    json: bool,
) -> Result<i32> {
    let outcome = common::runtime()?.block_on(lk::lock(project, previous, update, opts))?;
    let unchanged = previous == Some(&outcome.lock);
    if !unchanged {
        outcome.lock.write(path)?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "path": path,
            "written": !unchanged,
            "changes": outcome.changes,
            "removed": outcome.removed,
            "held_back": outcome.held_back,
            "registry": outcome.stats,
            "lock": outcome.lock,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    for c in &outcome.changes {
        let who = c.services.join(", ");
        match &c.old {
            None => writeln!(out, "+ {} {} ({who})", c.reference, short(&c.new))?,
            Some(o) => {
                let (old, new) = (short(o), short(&c.new));
                match (&c.old_tag, &c.new_tag) {
                    (Some(ot), Some(nt)) => writeln!(
                        out,
                        "~ {} {ot} -> {nt} ({old} -> {new}) ({who})",
                        c.reference
                    )?,
                    _ => writeln!(out, "~ {} {old} -> {new} ({who})", c.reference)?,
                }
            }
        }
    }
    for (reference, held) in &outcome.held_back {
        for h in held {
            writeln!(out, "= {reference}: {h}")?;
        }
    }
    for r in &outcome.removed {
        writeln!(out, "- {r}")?;
    }
    let n = outcome.lock.images.len();
    if unchanged {
        writeln!(out, "{} is up to date ({n} images)", path.display())?;
    } else {
        writeln!(out, "wrote {} ({n} images)", path.display())?;
    }
    Ok(0)
}
