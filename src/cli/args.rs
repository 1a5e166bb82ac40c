//! The command line's types (clap derive) and nothing else: the commands live in one file
//! each beside this one, the logic in the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use composeops::agent::{AgentConfig, LogFormat};
use composeops::load::LoadOptions;

#[derive(Parser, Debug)]
#[command(
    name = "composeops",
    version,
    about = "Keep Docker hosts converged to compose files in git"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The options Docker Compose users already know, with the same names.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Compose configuration files (repeatable; later files override earlier ones).
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the `name:` field, or the directory name).
    #[arg(short = 'p', long = "project-name", global = true, value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first compose file).
    #[arg(long = "project-directory", global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (repeatable; default: .env in the project directory).
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable; default: COMPOSE_PROFILES).
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Docker daemon to connect to: unix://PATH, tcp://HOST[:PORT] (TLS with
    /// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH) or ssh://[USER@]HOST[:PORT] (default:
    /// DOCKER_HOST, else the docker context, else the local socket).
    #[arg(short = 'H', long = "host", global = true, value_name = "HOST")]
    pub host: Option<String>,
    /// Docker context to use, as `docker --context` (default: DOCKER_CONTEXT, else the
    /// current context of `docker context use`; DOCKER_HOST overrides both of those).
    #[arg(
        short = 'c',
        long = "context",
        global = true,
        value_name = "NAME",
        conflicts_with = "host"
    )]
    pub context: Option<String>,
    /// When to colour output: auto (a terminal, without NO_COLOR or TERM=dumb), never, always.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub ansi: Ansi,
    /// How long operations show progress on stderr: auto, tty (per-layer bars), plain (a line
    /// per step), quiet (warnings and errors only), json (one object per event).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "MODE"
    )]
    pub progress: Progress,
}

/// `--progress`, as Docker Compose has it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// tty on a terminal, else plain.
    Auto,
    /// Live per-layer bars for pulls.
    Tty,
    /// One line per step.
    Plain,
    /// Warnings and errors only.
    Quiet,
    /// One JSON object per progress event on stderr.
    Json,
}

impl Progress {
    pub fn mode(self) -> composeops::progress::Mode {
        use composeops::progress::Mode;
        match self {
            Progress::Auto => Mode::Auto,
            Progress::Tty => Mode::Tty,
            Progress::Plain => Mode::Plain,
            Progress::Quiet => Mode::Quiet,
            Progress::Json => Mode::Json,
        }
    }
}

/// `--ansi`, as Docker Compose has it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ansi {
    Auto,
    Never,
    Always,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the loaded project in Compose's canonical form.
    Config(ConfigArgs),
    /// Pin every service image to its registry digest in composeops.lock.
    Lock(LockArgs),
    /// Show what apply would change: desired (compose files) vs running (engine).
    #[command(after_help = PLAN_EXIT_HELP)]
    Plan(PlanArgs),
    /// Converge the engine to the compose files: recreate only what differs, wait for health,
    /// roll back what fails.
    #[command(after_help = APPLY_EXIT_HELP)]
    Apply(ApplyArgs),
    /// Put back the image each named service (default: every service that has one) ran before
    /// its last update, from the image history in the state directory; other services are left
    /// alone. The next apply of the compose files deploys what they say again.
    Rollback(RollbackArgs),
    /// Show each service's containers, health, running and locked image digests, and the
    /// last outcome an apply (or the agent, sharing the state directory) recorded.
    Status(StatusArgs),
    /// Keep PATH's compose projects converged: watch files, pull git, check images, serve
    /// /healthz, /metrics, /status and a signed POST /sync.
    Agent(Box<AgentArgs>),
    /// Print a shell completion script (e.g. `composeops completion bash > /etc/bash_completion.d/composeops`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of composeops and its subcommands, for `man -l -`.
    Man,
}

const PLAN_EXIT_HELP: &str = "Exit status: 0 success (with --detailed-exitcode: no changes), \
2 changes pending (only with --detailed-exitcode), 1 error.";

const APPLY_EXIT_HELP: &str = "Exit status:
  0  converged: every service applied or unchanged
  1  error: bad compose file, engine unreachable, image missing or lock held (detected before
     any change), or an engine error outside a service update (network, volume, orphan)
  2  not converged, nothing broken: a service was rolled back (its old container runs again,
     same name and id), a new service failed, or a service was skipped (a dependency failed)
  3  rollback failed: a service may be left without a running container";

/// Options shared by plan and apply.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Also remove containers of services that are no longer in the project (never volumes).
    #[arg(long)]
    pub prune: bool,
    /// State directory for the journal and lock (default: /var/lib/composeops as root, else
    /// $XDG_STATE_HOME/composeops).
    #[arg(long, value_name = "DIR", env = "COMPOSEOPS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Use the digests in composeops.lock (pulled and run by digest); no registry lookup.
    #[arg(long, conflicts_with = "offline")]
    pub locked: bool,
    /// Do not look image tags up in their registries: use the local images, as Compose does.
    /// (By default each tag is resolved to its current digest with one HEAD request, so a
    /// new image pushed under the same tag shows as a change and is pulled by digest.)
    #[arg(long)]
    pub offline: bool,
    /// Compose directory (default: the current directory); for `apply`, also a plan saved by
    /// `plan -o FILE`.
    pub path: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Services to roll back (default: every service with a previous image recorded).
    pub services: Vec<String>,
    /// State directory holding the image history (default: as for apply).
    #[arg(long, value_name = "DIR", env = "COMPOSEOPS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long the restored container has to become healthy (default: its healthcheck's bound).
    #[arg(long, value_parser = parse_duration)]
    pub wait_timeout: Option<std::time::Duration>,
    /// How long to wait for another apply of the same project to finish.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// The plan and the outcome as JSON on stdout (as `apply --json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// State directory where applies record their outcomes (default: as for apply).
    #[arg(long, value_name = "DIR", env = "COMPOSEOPS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Machine-readable output on stdout (schemas/status.schema.json).
    #[arg(long)]
    pub json: bool,
    /// Compose directory (default: the current directory).
    pub path: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: EngineArgs,
    /// Exit 0 when there is nothing to change, 2 when there is, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan to FILE (JSON): `composeops apply FILE` applies exactly it, or
    /// refuses if the compose files or what runs changed in between.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Preview a node's share of a fleet repo instead: list each stack under PATH as "runs
    /// here" or "skipped (nodes: ...)" for this node name (no engine needed).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// A label of that node, matched by `KEY=GLOB` node patterns (repeatable; with --node).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label, requires = "node")]
    pub labels: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: EngineArgs,
    /// Print the plan before applying it.
    #[arg(long)]
    pub plan: bool,
    /// How long a new container has to become healthy (running, without a healthcheck).
    /// Default: its healthcheck's own bound (start_period + interval × retries + timeout, plus
    /// 10s), or 60s without a healthcheck. An unhealthy or exited container is rolled back at once.
    #[arg(long, value_parser = parse_duration)]
    pub wait_timeout: Option<std::time::Duration>,
    /// How long to wait for another apply of the same project to finish.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Remove a failed new container instead of keeping it stopped (as <name>-composeops-failed).
    #[arg(long)]
    pub cleanup_failed: bool,
    /// After applying, remove the images earlier updates replaced: each service's previous
    /// image (the rollback target) and every image a container uses are kept, and images
    /// this project's updates did not replace are never touched.
    #[arg(long)]
    pub cleanup: bool,
    /// Run CMD (with `sh -c`) before the first change: the plan JSON on stdin,
    /// COMPOSEOPS_PROJECT and COMPOSEOPS_IMAGE_<SERVICE> (the reference each new container will
    /// run) in its environment. Anything but exit 0 (or no answer within --gate-timeout)
    /// applies nothing. Not run when there is nothing to do.
    #[arg(long, value_name = "CMD")]
    pub gate: Option<String>,
    /// How long the gate may run before it is killed and the plan refused.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub gate_timeout: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    composeops::duration::parse(s)
        .ok_or_else(|| format!("invalid duration {s:?} (e.g. 90s, 2m, 500ms)"))
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// Write nothing; exit 1 with a list when a locked tag now points to another digest or a
    /// service image is not in the lock (for CI).
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// Re-resolve every image, or only the images of the named services.
    #[arg(long, num_args = 0.., value_name = "SERVICE")]
    pub update: Option<Vec<String>>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Platform whose manifest is recorded for multi-platform images (default: the host's).
    #[arg(
        long,
        env = "DOCKER_DEFAULT_PLATFORM",
        value_name = "OS/ARCH[/VARIANT]"
    )]
    pub platform: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Print the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Print the image names, one per line.
    #[arg(long)]
    pub images: bool,
    /// Compose directory (default: the current directory); for `apply`, also a plan saved by
    /// `plan -o FILE`.
    pub path: Option<PathBuf>,
}

impl Global {
    /// `-H` and `--context`; the library reads DOCKER_HOST, DOCKER_CONTEXT and the docker
    /// CLI's config itself, so that errors can say where the address came from.
    pub fn engine(&self) -> composeops::engine::EngineFlags {
        composeops::engine::EngineFlags {
            host: self.host.clone(),
            context: self.context.clone(),
        }
    }

    pub fn load_options(&self, path: Option<&PathBuf>) -> LoadOptions {
        let mut o = LoadOptions::from_process();
        if let Some(p) = path {
            o.cwd = o.cwd.join(p);
        }
        o.files = self.files.clone();
        o.project_name = self.project_name.clone();
        o.project_directory = self.project_directory.clone();
        o.env_files = self.env_files.clone();
        o.profiles = self.profiles.clone();
        o
    }
}

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
    /// Look for new image digests: a duration (1h) or a cron expression, 5 fields
    /// ("0 4 * * *") or 6 with seconds first, in UTC unless prefixed by CRON_TZ=Area/City.
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
    /// After each apply, remove the images updates replaced: each service's previous image
    /// (the rollback target) and every image a container uses are kept.
    #[arg(long)]
    pub cleanup: bool,
    /// Send a message here after each apply and rollback (repeatable): generic+https://,
    /// https://, slack://, discord://, ntfy://, gotify://, telegram://, smtp:// (shoutrrr forms).
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// One generic webhook URL for the JSON event (same as --notify URL).
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
    /// How long a new container has to become healthy before it is rolled back (default: its
    /// healthcheck's own bound, or 60s without one).
    #[arg(long, value_name = "DURATION")]
    pub wait_timeout: Option<String>,
    /// Most HTTP connections open at once (default 64, at most a quarter of the open-file limit).
    #[arg(long, value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// Close HTTP connections that send no complete request header within this (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub http_idle_timeout: Option<String>,
    /// On an image check, reuse a digest looked up less than this long ago (default 0s).
    #[arg(long, value_name = "DURATION")]
    pub registry_ttl: Option<String>,
    /// Run CMD (with `sh -c`) before each apply that has changes, as `apply --gate` does; a
    /// refused desired state is not retried until it changes (or a forced sync).
    #[arg(long, value_name = "CMD")]
    pub gate: Option<String>,
    /// How long the gate may run before it is killed and the plan refused (default 5m).
    #[arg(long, value_name = "DURATION")]
    pub gate_timeout: Option<String>,
    /// This node's name for stack placement (`x-composeops.nodes`; default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// A label of this node, matched by `KEY=GLOB` node patterns (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Apply changes only inside this maintenance window (repeatable): "[DAYS] HH:MM-HH:MM
    /// [ZONE]", e.g. "Sat 02:00-04:00", "Mon-Fri 22:00-23:30", "Fri 23:00-01:00 Europe/Berlin"
    /// (no zone: local time). Outside, changes are planned and wait; POST /sync?force=1 applies.
    #[arg(long, value_name = "WINDOW")]
    pub window: Vec<String>,
    /// Print the JSON Schema of the config file and exit.
    #[arg(long)]
    pub print_config_schema: bool,
}

/// `KEY=VALUE` of `--label`.
pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("--label {s:?}: expected KEY=VALUE, e.g. role=edge")),
    }
}

impl AgentArgs {
    pub(crate) fn as_config(&self) -> AgentConfig {
        AgentConfig {
            path: self.path.clone(),
            git_pull: self.git_pull.clone(),
            check_images: self.check_images.clone(),
            locked: self.locked.then_some(true),
            listen: self.listen.clone(),
            prune: self.prune.then_some(true),
            cleanup: self.cleanup.then_some(true),
            notify: (!self.notify.is_empty()).then(|| self.notify.clone()),
            notify_url: self.notify_url.clone(),
            log_format: self.log_format,
            state_dir: self.state_dir.clone(),
            debounce: self.debounce.clone(),
            retry_initial: self.retry_initial.clone(),
            retry_max: self.retry_max.clone(),
            wait_timeout: self.wait_timeout.clone(),
            http_max_connections: self.http_max_connections,
            http_idle_timeout: self.http_idle_timeout.clone(),
            registry_ttl: self.registry_ttl.clone(),
            gate: self.gate.clone(),
            gate_timeout: self.gate_timeout.clone(),
            node: self.node.clone(),
            labels: (!self.labels.is_empty()).then(|| self.labels.iter().cloned().collect()),
            window: (!self.window.is_empty()).then(|| self.window.clone()),
        }
    }
}
