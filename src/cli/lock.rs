//! `composeops lock`: pin every image to its registry digest in composeops.lock.

use std::io::Write;

use super::args::{Global, LockArgs};
use super::common;

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub(crate) fn run(global: &Global, a: &LockArgs) -> anyhow::Result<i32> {
    use composeops::lock::{self as lk, Lockfile, Update};
    use composeops::resolve::{Platform, ResolveOptions};

    let project = common::load(global, None)?;
    let mut opts = ResolveOptions::default();
    if let Some(p) = &a.platform {
        opts.platform = p.parse::<Platform>().map_err(anyhow::Error::msg)?;
    }
    let path = lk::lock_path(&project);
    let previous = Lockfile::read(&path)?;
    let rt = common::runtime()?;
    let mut out = std::io::stdout().lock();

    if a.check {
        let Some(lock) = previous else {
            return Err(lk::LockError::Missing { path }.into());
        };
        let report = rt.block_on(lk::check(&project, &lock, &opts))?;
        if a.json {
            let v = serde_json::json!({
                "path": path,
                "ok": report.problems.is_empty(),
                "problems": report.problems,
                "unused": report.unused,
                "registry": report.stats,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else if report.problems.is_empty() {
            writeln!(
                out,
                "{} is up to date ({} images)",
                path.display(),
                lock.images.len()
            )?;
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
        return Ok(if report.problems.is_empty() { 0 } else { 1 });
    }

    let update = match &a.update {
        None => Update::Missing,
        Some(v) if v.is_empty() => Update::All,
        Some(v) => Update::Services(v.clone()),
    };
    let outcome = rt.block_on(lk::lock(&project, previous.as_ref(), &update, &opts))?;
    let unchanged = previous.as_ref() == Some(&outcome.lock);
    if !unchanged {
        outcome.lock.write(&path)?;
    }
    if a.json {
        let v = serde_json::json!({
            "path": path,
            "written": !unchanged,
            "changes": outcome.changes,
            "removed": outcome.removed,
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
            Some(o) => writeln!(
                out,
                "~ {} {} -> {} ({who})",
                c.reference,
                short(o),
                short(&c.new)
            )?,
        }
    }
    for r in &outcome.removed {
        writeln!(out, "- {r}")?;
    }
    if unchanged {
        writeln!(
            out,
            "{} is up to date ({} images)",
            path.display(),
            outcome.lock.images.len()
        )?;
    } else {
        writeln!(
            out,
            "wrote {} ({} images)",
            path.display(),
            outcome.lock.images.len()
        )?;
    }
    Ok(0)
}
