//! `composeops agent`: parse flags, merge them over the config file, set up logging, run the
//! library's agent with the real pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use composeops::agent::pipeline::{Pipeline, PipelineOptions};
use composeops::agent::{self, AgentConfig, LogFormat};

use crate::cli::Global;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// A git checkout holding one compose project, or a root whose subdirectories each hold one.
    pub path: Option<PathBuf>,
    /// TOML file with the same settings (flags win). Schema: schemas/agent-config.schema.json.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Fetch and fast-forward the checkout from its upstream this often (never merges or resets).
    #[arg(long, value_name = "DURATION")]
    pub git_pull: Option<String>,
    /// Look for new image digests: a 5-field cron expression ("0 4 * * *") or a duration (1h).
    #[arg(long, value_name = "CRON|DURATION")]
    pub check_images: Option<String>,
    /// Deploy only the digests pinned in composeops.lock.
    #[arg(long)]
    pub locked: bool,
    /// Serve /healthz, /metrics, /status, POST /sync on PORT (127.0.0.1) or ADDR:PORT.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Remove containers of services no longer in the compose files (never volumes).
    #[arg(long)]
    pub prune: bool,
    /// POST a JSON event here (http://) after each apply and each rollback.
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Lock file, journal and rolled-back states (default: $STATE_DIRECTORY, else as `apply`).
    #[arg(long, value_name = "DIR", env = "COMPOSEOPS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Quiet time after file events before reconciling (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub debounce: Option<String>,
    /// First retry delay after a failed reconcile, doubled per failure (default 5s).
    #[arg(long, value_name = "DURATION")]
    pub retry_initial: Option<String>,
    /// Longest retry delay (default 5m).
    #[arg(long, value_name = "DURATION")]
    pub retry_max: Option<String>,
    /// How long a new container has to become healthy before it is rolled back (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub wait_timeout: Option<String>,
    /// Most HTTP connections open at once (default 64, at most a quarter of the open-file limit).
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// Close HTTP connections that send no complete request header within this (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub http_idle_timeout: Option<String>,
    /// Print the JSON Schema of the config file and exit.
    #[arg(long)]
    pub print_config_schema: bool,
}

impl AgentArgs {
    fn as_config(&self) -> AgentConfig {
        AgentConfig {
            path: self.path.clone(),
            git_pull: self.git_pull.clone(),
            check_images: self.check_images.clone(),
            locked: self.locked.then_some(true),
            listen: self.listen.clone(),
            prune: self.prune.then_some(true),
            notify_url: self.notify_url.clone(),
            log_format: self.log_format,
            state_dir: self.state_dir.clone(),
            debounce: self.debounce.clone(),
            retry_initial: self.retry_initial.clone(),
            retry_max: self.retry_max.clone(),
            wait_timeout: self.wait_timeout.clone(),
            http_max_connections: self.http_max_connections,
            http_idle_timeout: self.http_idle_timeout.clone(),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMPOSEOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => b.json().flatten_event(true).try_init(),
        LogFormat::Text => b.try_init(),
    };
}

pub fn agent(global: &Global, a: &AgentArgs) -> i32 {
    if a.print_config_schema {
        print!("{}", agent::config::json_schema());
        return 0;
    }
    match run(global, a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "agent stopped");
            1
        }
    }
}

fn run(global: &Global, a: &AgentArgs) -> anyhow::Result<()> {
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
    init_logging(settings.log_format);
    let pipeline = Pipeline::new(PipelineOptions {
        host: global.host.clone(),
        state_dir: settings.state_dir.clone(),
        wait_timeout: settings.wait_timeout,
        lock_timeout: Duration::from_secs(600),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(agent::run(settings, Arc::new(pipeline)))
}
