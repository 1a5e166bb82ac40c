//! The errors at the library's edge, by kind, so each caller decides by what went wrong rather
//! than by the words of a message: the CLI exits 1 on any of them, while the agent retries an
//! unavailable engine or registry with backoff, and waits for a file change after invalid input.
//!
//! Inside a stage, errors carry context with `anyhow`; a stage's public entry point says which
//! kind its failure is, once, where that is known (a failed pull is the registry's, a failed
//! inspect the engine's).

use serde::Serialize;

/// What kind of failure stopped a run before or outside the per-service outcomes. A service
/// whose new container fails its health check is not an error: it is an outcome in the
/// [`crate::apply::Report`] (rolled back, failed), and the run itself succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Compose files, env files or the lockfile are invalid, or an image is missing and may not
    /// be pulled: nothing changes until the input does.
    InvalidInput,
    /// A registry refused or did not answer and the image is not present locally.
    RegistryUnavailable,
    /// The Docker engine cannot be reached.
    EngineUnavailable,
    /// Another run holds the project's lock.
    Conflict,
    /// The engine refused a request during the run (create, start, network, volume).
    Engine,
    /// The pre-apply gate (`--gate`) refused the plan: nothing changed, and the same desired
    /// state is not worth retrying until it changes.
    GateRefused,
}

/// A failure at the library's edge, with the full context chain in its message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    RegistryUnavailable(String),
    #[error("{0}")]
    EngineUnavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Engine(String),
    #[error("{0}")]
    GateRefused(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::RegistryUnavailable(_) => ErrorKind::RegistryUnavailable,
            Error::EngineUnavailable(_) => ErrorKind::EngineUnavailable,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Engine(_) => ErrorKind::Engine,
            Error::GateRefused(_) => ErrorKind::GateRefused,
        }
    }

    /// Wraps an error of `kind`, keeping its whole context chain (`{:#}`).
    pub fn new(kind: ErrorKind, e: impl std::fmt::Display) -> Error {
        let m = format!("{e:#}");
        match kind {
            ErrorKind::InvalidInput => Error::InvalidInput(m),
            ErrorKind::RegistryUnavailable => Error::RegistryUnavailable(m),
            ErrorKind::EngineUnavailable => Error::EngineUnavailable(m),
            ErrorKind::Conflict => Error::Conflict(m),
            ErrorKind::Engine => Error::Engine(m),
            ErrorKind::GateRefused => Error::GateRefused(m),
        }
    }

    /// A closure for `map_err`: `.map_err(Error::of(ErrorKind::Engine))`.
    pub fn of<E: std::fmt::Display>(kind: ErrorKind) -> impl Fn(E) -> Error {
        move |e| Error::new(kind, e)
    }

    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::RegistryUnavailable(m)
            | Error::EngineUnavailable(m)
            | Error::Conflict(m)
            | Error::Engine(m)
            | Error::GateRefused(m) => m,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_chain_survive_wrapping() {
        let inner = anyhow::anyhow!("connection refused").context("cannot pull app:1");
        let e = Error::new(ErrorKind::RegistryUnavailable, inner);
        assert_eq!(e.kind(), ErrorKind::RegistryUnavailable);
        assert_eq!(e.to_string(), "cannot pull app:1: connection refused");
        let e: Error = Err::<(), _>("bad")
            .map_err(Error::of(ErrorKind::Conflict))
            .unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::Conflict, "bad"));
    }
}
