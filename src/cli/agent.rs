//! `composeops agent`: flags merged over the config file, logging set up, then the library's
//! agent loop around the same converge pipeline as `apply`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use composeops::agent::pipeline::{Pipeline, PipelineOptions};
use composeops::agent::{self, AgentConfig};

use super::args::{AgentArgs, Global};
use super::common::{self, Logs};

pub(crate) fn run(global: &Global, a: &AgentArgs) -> Result<i32> {
    if a.print_config_schema {
        print!("{}", agent::config::json_schema());
        return Ok(0);
    }
    if !global.files.is_empty()
        || global.project_name.is_some()
        || global.project_directory.is_some()
        || !global.env_files.is_empty()
        || !global.profiles.is_empty()
    {
        anyhow::bail!(
            "-f, -p, --project-directory, --env-file and --profile select one project; the agent \
             finds its projects under PATH (set `name:`, .env and COMPOSE_PROFILES in each project)"
        );
    }
    let file = match &a.config {
        Some(p) => AgentConfig::from_file(p)?,
        None => AgentConfig::default(),
    };
    let settings = file.overlay(a.as_config()).resolve()?;
    common::init_tracing(Logs::Agent(settings.log_format), global.ansi);
    let pipeline = Pipeline::new(PipelineOptions {
        engine: global.engine(),
        state_dir: settings.state_dir.clone(),
        wait_timeout: settings.wait_timeout,
        lock_timeout: Duration::from_secs(600),
        registry_ttl: settings.registry_ttl,
        cleanup: settings.cleanup,
        gate: settings.gate.clone(),
    });
    match common::runtime()?.block_on(agent::run(settings, Arc::new(pipeline))) {
        Ok(()) => Ok(0),
        // Logged, not printed: with --log-format json, stderr carries JSON lines only.
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "agent stopped");
            Ok(1)
        }
    }
}
