//! `composeops status`: what runs, what is locked, and what the last apply did, per service.

use std::io::Write;

use anyhow::Result;

use composeops::converge;

use super::args::{Global, StatusArgs};
use super::common;

pub(crate) fn run(global: &Global, a: &StatusArgs) -> Result<i32> {
    let project = common::load(global, a.path.as_ref())?;
    let dir = common::state_dir(a.state_dir.as_ref());
    let status = common::runtime()?.block_on(async {
        let engine = converge::connect(&global.engine()).await?;
        anyhow::Ok(composeops::status::status(&engine, &dir, &project).await?)
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        write!(out, "{}", composeops::status::render_text(&status))?;
    }
    Ok(0)
}
