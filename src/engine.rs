//! `engine`: the connection to the Docker daemon, and a count of the API calls made through it.
//!
//! Every engine call of observe and apply goes through [`Engine::call`], so a no-op run can
//! report (at debug level, and to tests) how many requests it cost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;

/// A negotiated bollard client plus a request counter.
pub struct Engine {
    pub docker: Docker,
    calls: AtomicUsize,
}

impl Engine {
    /// Connects to `host` (`unix://…`, `tcp://…`, `http://…`), else DOCKER_HOST, else the
    /// local socket, and negotiates the API version (bollard defaults to a newer API than
    /// many engines speak).
    pub async fn connect(host: Option<&str>) -> Result<Engine> {
        let docker = match host.filter(|h| !h.is_empty()) {
            Some(h) => {
                let h = h.strip_prefix("tcp://").map(|r| format!("http://{r}"));
                let h = h.as_deref().unwrap_or(host.unwrap());
                Docker::connect_with_host(h).with_context(|| format!("cannot use Docker host {h:?}"))?
            }
            None => Docker::connect_with_local_defaults().context("cannot use the local Docker socket")?,
        };
        let docker = docker.with_timeout(Duration::from_secs(300));
        let docker = docker.negotiate_version().await.context(
            "cannot reach the Docker engine (is dockerd running? check -H/--host or DOCKER_HOST)",
        )?;
        // negotiate_version costs one /version request.
        Ok(Engine { docker, calls: AtomicUsize::new(1) })
    }

    /// Counts one API request and returns the client to make it with.
    pub fn call(&self) -> &Docker {
        self.calls.fetch_add(1, Ordering::Relaxed);
        &self.docker
    }

    /// Requests made so far (including version negotiation).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// True when the error is the engine's 404 (no such container, image, network…).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// True when the error is the engine's 409 (name in use, already exists…).
pub fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
}

/// True when the error is the engine's 304 (already started / already stopped).
pub fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 304, .. })
}
