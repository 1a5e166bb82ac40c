//! What every command shares: the async runtime, logging, loading the project.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use composeops::agent::LogFormat;
use composeops::converge;
use composeops::progress;
use composeops::resolve::ahead::LookupsAhead;

use super::args::{Ansi, Global};

/// Whether to colour a stream: `--ansi always|never`, else only a terminal, and not when
/// NO_COLOR is set to anything (no-color.org) or TERM is `dumb`.
pub(crate) fn colour(ansi: Ansi, is_terminal: bool) -> bool {
    match ansi {
        Ansi::Always => true,
        Ansi::Never => false,
        Ansi::Auto => {
            is_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").as_deref() != Ok("dumb")
        }
    }
}

/// The one runtime of every command. Two workers: registry lookups run beside the engine
/// requests (see `converge::plan`), and the agent's HTTP listener beside its workers.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The engine connection, under way (see [`connect_early`]), and the project observed ahead
/// when it was asked for.
pub(crate) type Connecting = tokio::task::JoinHandle<
    composeops::error::Result<(composeops::engine::Engine, Option<converge::Ahead>)>,
>;

/// The runtime, with the engine connection started on it, so that it runs while the caller
/// loads the project on this thread: the connection (a version ping) is read-only and costs
/// about as much as the load, so neither waits for the other. With a [`Guess`] of the
/// project's name, the project's lock is taken and its engine side observed too (see
/// [`converge::observe_ahead`]); the caller sends the images the loaded project names through
/// the [`GuessImages`] that came with the guess, and the registry lookups the project's last
/// run remembered are started (see `resolve::ahead`), for the caller to put in its
/// [`PlanRequest`](converge::PlanRequest). A load error is still what the user sees:
/// [`connected`] is awaited only once the project loaded.
pub(crate) fn connect_early(
    global: &Global,
    guess: Option<Guess>,
) -> Result<(Background, Connecting, LookupsAhead)> {
    let rt = runtime()?;
    // First: a registry answers more slowly than the engine's lists.
    let lookups = match &guess {
        Some(g) if g.look_up => {
            let _in_runtime = rt.enter();
            composeops::resolve::ahead::look_up_ahead(&g.state_dir, &g.project)
        }
        _ => LookupsAhead::default(),
    };
    let flags = global.engine();
    let connecting = rt.spawn(async move {
        let engine = converge::connect(&flags).await?;
        let observed = match guess {
            Some(a) => {
                let expected = async { a.images.await.unwrap_or_default() };
                let (dir, name) = (&a.state_dir, &a.project);
                converge::observe_ahead(&engine, dir, name, a.lock, expected).await
            }
            None => None,
        };
        Ok((engine, observed))
    });
    Ok((Background(Some(rt)), connecting, lookups))
}

/// The project [`connect_early`] observes ahead of the load: a guess of its name.
pub(crate) struct Guess {
    state_dir: PathBuf,
    project: String,
    /// Under the project's lock (apply), or not (plan).
    lock: bool,
    /// The registry lookups the last run remembered are started too (the run asks the
    /// registry: neither `--offline` nor `--locked`).
    look_up: bool,
    images: tokio::sync::oneshot::Receiver<Vec<String>>,
}

/// Where the loaded project's images go (see [`Guess`]).
pub(crate) struct GuessImages(Option<tokio::sync::oneshot::Sender<Vec<String>>>);

impl GuessImages {
    /// Sends the images `project` names to the observation under way.
    pub(crate) fn send(self, project: &composeops::model::Project) {
        if let Some(tx) = self.0 {
            let _ = tx.send(converge::expected_images(project));
        }
    }
}

impl Guess {
    /// The project the options most likely load (see `load::likely_project_name`), in the
    /// state directory `dir`, and where to send the images it names once it is loaded.
    pub(crate) fn of(
        global: &Global,
        path: Option<&PathBuf>,
        dir: PathBuf,
        lock: bool,
        look_up: bool,
    ) -> (Option<Guess>, GuessImages) {
        let opts = global.load_options(path);
        let Some(project) = composeops::load::likely_project_name(&opts) else {
            return (None, GuessImages(None));
        };
        let (tx, images) = tokio::sync::oneshot::channel();
        let a = Guess {
            state_dir: dir,
            project,
            lock,
            look_up,
            images,
        };
        (Some(a), GuessImages(Some(tx)))
    }
}

/// A runtime that, when dropped, does not wait for its threads: after a load error, a ping
/// to an engine that does not answer must not hold the error back for its timeout.
pub(crate) struct Background(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Background {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("runtime present until dropped")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The engine [`connect_early`] connected to, and what it observed ahead.
pub(crate) async fn connected(
    connecting: Connecting,
) -> composeops::error::Result<(composeops::engine::Engine, Option<converge::Ahead>)> {
    use composeops::error::{Error, ErrorKind};
    connecting
        .await
        .map_err(Error::of(ErrorKind::EngineUnavailable))?
}

/// Who reads stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Logs {
    /// A person at a terminal (plan, apply, lock, config): progress lines as bare text, other
    /// records from warning up (COMPOSEOPS_LOG overrides).
    Cli,
    /// The agent's journal (systemd): every record from info up, progress included, in the
    /// chosen format; JSON lines only with `--log-format json`.
    Agent(LogFormat),
}

/// The one tracing set-up of the binary.
pub(crate) fn init_tracing(logs: Logs, ansi: Ansi) {
    let ansi = colour(ansi, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let default = match logs {
        Logs::Cli => "warn",
        Logs::Agent(_) => "info",
    };
    let filter =
        EnvFilter::try_from_env("COMPOSEOPS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // A macro, not a value: each subscriber stack below types its layer differently.
    macro_rules! base {
        () => {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
        };
    }
    let _ = match logs {
        Logs::Agent(LogFormat::Json) => tracing_subscriber::registry()
            .with(base!().json().flatten_event(true).with_filter(filter))
            .try_init(),
        Logs::Agent(LogFormat::Text) => tracing_subscriber::registry()
            .with(base!().with_filter(filter))
            .try_init(),
        Logs::Cli => {
            // Progress is shown as the bare message, as `docker compose` shows its steps; the
            // log layer leaves that target to it so nothing prints twice. `--progress quiet`
            // keeps its warnings; `--progress json` writes each event as one JSON object.
            let level = match progress::mode() {
                progress::Mode::Quiet => LevelFilter::WARN,
                _ => LevelFilter::INFO,
            };
            let progress_only = Targets::new().with_target(progress::TARGET, level);
            if progress::mode() == progress::Mode::Json {
                let filter = filter.add_directive(
                    format!("{}=off", progress::TARGET)
                        .parse()
                        .expect("static directive"),
                );
                let json = tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true);
                let _ = tracing_subscriber::registry()
                    .with(json.with_filter(progress_only))
                    .with(base!().with_filter(filter))
                    .try_init();
                return;
            }
            let bare = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_target(false)
                .event_format(BareMessage);
            let filter = filter.add_directive(
                format!("{}=off", progress::TARGET)
                    .parse()
                    .expect("static directive"),
            );
            tracing_subscriber::registry()
                .with(bare.with_filter(progress_only))
                .with(base!().with_filter(filter))
                .try_init()
        }
    };
}

/// Formats an event as its message alone (`[web] creating p-web-1`).
struct BareMessage;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for BareMessage
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        struct Message<'w, 'a>(&'w mut tracing_subscriber::fmt::format::Writer<'a>);
        impl tracing::field::Visit for Message<'_, '_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    let _ = write!(self.0, "{v:?}");
                }
            }
        }
        event.record(&mut Message(&mut writer));
        writeln!(writer)
    }
}

/// Loads the project the global options select; warnings go to stderr.
pub(crate) fn load(global: &Global, path: Option<&PathBuf>) -> Result<composeops::model::Project> {
    let loaded = composeops::load::load(&global.load_options(path))?;
    warn_all(&loaded.warnings);
    tracing::debug!(services = loaded.project.services.len(), "project loaded");
    Ok(loaded.project)
}

/// Prints warnings as the CLI always has: `warning: …` lines on stderr.
pub(crate) fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// `--state-dir`, else the default (shared with the agent).
pub(crate) fn state_dir(dir: Option<&PathBuf>) -> PathBuf {
    dir.cloned()
        .unwrap_or_else(composeops::journal::default_state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this binary that touches the environment, so nothing races it.
    #[test]
    fn colour_follows_ansi_no_color_and_term() {
        std::env::remove_var("NO_COLOR");
        std::env::set_var("TERM", "xterm");
        assert!(colour(Ansi::Auto, true));
        assert!(!colour(Ansi::Auto, false));
        assert!(colour(Ansi::Always, false));
        assert!(!colour(Ansi::Never, true));
        std::env::set_var("NO_COLOR", "1");
        assert!(!colour(Ansi::Auto, true));
        assert!(colour(Ansi::Always, true));
        std::env::set_var("NO_COLOR", "");
        assert!(
            colour(Ansi::Auto, true),
            "an empty NO_COLOR counts as unset"
        );
        std::env::set_var("TERM", "dumb");
        assert!(!colour(Ansi::Auto, true));
    }
}
