//! Command-line interface: Compose's global options, one subcommand per pipeline entry point.
//! This layer parses and prints; everything it calls is in the library.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use composeops::load::{self, LoadOptions};

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
    /// Docker daemon socket (default: DOCKER_HOST, else the local socket).
    #[arg(
        short = 'H',
        long = "host",
        global = true,
        env = "DOCKER_HOST",
        value_name = "HOST"
    )]
    pub host: Option<String>,
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
    /// Keep PATH's compose projects converged: watch files, pull git, check images, serve
    /// /healthz, /metrics, /status and a signed POST /sync.
    Agent(Box<crate::agent_cli::AgentArgs>),
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
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: EngineArgs,
    /// Print the plan before applying it.
    #[arg(long)]
    pub plan: bool,
    /// How long a new container has to become healthy (running, without a healthcheck).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// How long to wait for another apply of the same project to finish.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Remove a failed new container instead of keeping it stopped (as <name>-composeops-failed).
    #[arg(long)]
    pub cleanup_failed: bool,
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
    /// Compose directory (default: the current directory).
    pub path: Option<PathBuf>,
}

impl Global {
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

pub fn run() -> i32 {
    let cli = Cli::parse();
    // The agent sets up its own logging (info level, --log-format).
    if let Command::Agent(a) = &cli.command {
        return crate::agent_cli::agent(&cli.global, a);
    }
    init_tracing();
    let result = match &cli.command {
        Command::Config(a) => config(&cli.global, a),
        Command::Lock(a) => lock(&cli.global, a),
        Command::Agent(_) => unreachable!("handled above"),
        Command::Plan(a) => crate::converge_cli::plan(&cli.global, a),
        Command::Apply(a) => crate::converge_cli::apply(&cli.global, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMPOSEOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) fn load(
    global: &Global,
    path: Option<&PathBuf>,
) -> anyhow::Result<composeops::model::Project> {
    let loaded = load::load(&global.load_options(path))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded.project)
}

fn config(global: &Global, a: &ConfigArgs) -> anyhow::Result<i32> {
    let project = load(global, a.path.as_ref())?;
    let mut out = std::io::stdout().lock();
    if a.services {
        for name in project.services.keys() {
            writeln!(out, "{name}")?;
        }
        return Ok(0);
    }
    if a.images {
        for svc in project.services.values() {
            if let Some(i) = &svc.image {
                writeln!(out, "{i}")?;
            }
        }
        return Ok(0);
    }
    let mut json = project.to_json();
    escape_dollars(&mut json);
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
        Format::Yaml => write!(out, "{}", serde_yaml::to_string(&json)?)?,
    }
    Ok(0)
}

/// `config` prints a literal `$` as `$$`, as Compose does, so its output loads back unchanged.
fn escape_dollars(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(escape_dollars),
        serde_json::Value::Object(o) => o.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn lock(global: &Global, a: &LockArgs) -> anyhow::Result<i32> {
    use composeops::lock::{self as lk, Lockfile, Update};
    use composeops::resolve::{Platform, ResolveOptions};

    let project = load(global, None)?;
    let mut opts = ResolveOptions::default();
    if let Some(p) = &a.platform {
        opts.platform = p.parse::<Platform>().map_err(anyhow::Error::msg)?;
    }
    let path = lk::lock_path(&project);
    let previous = Lockfile::read(&path)?;
    let rt = runtime()?;
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
