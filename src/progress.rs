//! Progress of long operations (pulls, recreates, health waits, recovery) as `tracing` events
//! under one target, so each front end shows them its own way: the CLI prints the bare message
//! on stderr (`[web] creating p-web-1`), the agent logs them as records like any other, and
//! `--log-format json` stays JSON only.

/// The `tracing` target of every progress event.
pub const TARGET: &str = "composeops::progress";

/// A progress line not tied to one service (`pulling app:1`).
pub(crate) fn line(msg: impl std::fmt::Display) {
    tracing::info!(target: TARGET, "{msg}");
}

/// A progress line of one service, shown as `[service] msg`.
pub(crate) fn service(service: &str, msg: impl std::fmt::Display) {
    tracing::info!(target: TARGET, service, "[{service}] {msg}");
}

/// A warning about one step that does not stop the run.
pub(crate) fn warn(msg: impl std::fmt::Display) {
    tracing::warn!(target: TARGET, "warning: {msg}");
}

/// How long operations show their progress (`--progress`, as Compose has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `Tty` when stderr is a terminal, else `Plain`.
    #[default]
    Auto,
    /// Live bars per image layer.
    Tty,
    /// One line per step (`pulling app:1`, `pulled app:1: 3 layers, 2.1 MB in 1.2s`).
    Plain,
    /// Warnings and errors only.
    Quiet,
    /// One JSON object per event on stderr, per-layer status changes included.
    Json,
}

static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();

/// Sets the mode for this process (the CLI, once, at start). Front ends that never call it
/// (the agent) get `Plain`: their progress goes to logs.
pub fn set_mode(mode: Mode) {
    let resolved = match mode {
        Mode::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => Mode::Tty,
        Mode::Auto => Mode::Plain,
        m => m,
    };
    let _ = MODE.set(resolved);
}

pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Plain)
}

/// One layer's status change during a pull (`--progress json` shows each).
pub(crate) fn layer(image: &str, layer: &str, status: &str, current: u64, total: u64) {
    tracing::info!(target: TARGET, image, layer, status, current, total, "{image} {layer}: {status}");
}
