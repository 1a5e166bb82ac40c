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
