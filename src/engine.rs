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
    endpoint: String,
}

impl Engine {
    /// Connects to `host` (`unix://…`, `tcp://…`, `http://…`), else DOCKER_HOST, else the
    /// local socket, and negotiates the API version (bollard defaults to a newer API than
    /// many engines speak).
    ///
    /// Negotiation reads the `Api-Version` header of `/_ping` (well under a millisecond)
    /// rather than bollard's `/version` request, which costs 7–15 ms on a busy engine: on a
    /// no-op apply that is a third of the run. Falls back to bollard's negotiation.
    pub async fn connect(host: Option<&str>) -> Result<Engine> {
        let host = host
            .filter(|h| !h.is_empty())
            .unwrap_or("unix:///var/run/docker.sock")
            .to_string();
        let addr = match host.strip_prefix("tcp://") {
            Some(r) => format!("http://{r}"),
            None => host.clone(),
        };
        let server = ping_api_version(&addr).await;
        let client = match server {
            Some(v)
                if v < (
                    bollard::API_DEFAULT_VERSION.major_version,
                    bollard::API_DEFAULT_VERSION.minor_version,
                ) =>
            {
                bollard::ClientVersion {
                    major_version: v.0,
                    minor_version: v.1,
                }
            }
            _ => *bollard::API_DEFAULT_VERSION,
        };
        let docker = if addr.starts_with("unix://") {
            Docker::connect_with_unix(&addr, 300, &client)
        } else if addr.starts_with("http://") {
            Docker::connect_with_http(&addr, 300, &client)
        } else {
            Docker::connect_with_host(&addr)
        }
        .with_context(|| format!("cannot use Docker host {host:?}"))?;
        let endpoint = endpoint_of(&addr);
        if server.is_some() {
            return Ok(Engine {
                docker,
                calls: AtomicUsize::new(1),
                endpoint,
            });
        }
        let docker = docker.with_timeout(Duration::from_secs(300));
        let docker = docker.negotiate_version().await.with_context(|| {
            format!("cannot reach the Docker engine at {host} (is dockerd running? check -H/--host or DOCKER_HOST)")
        })?;
        // negotiate_version costs one /version request.
        Ok(Engine {
            docker,
            calls: AtomicUsize::new(1),
            endpoint,
        })
    }

    /// Names the engine for the per-engine project lock: the address, with a unix socket's
    /// path resolved (`/var/run` is a link to `/run` on most systems).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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

fn endpoint_of(addr: &str) -> String {
    match addr.strip_prefix("unix://") {
        Some(p) => match std::fs::canonicalize(p) {
            Ok(real) => format!("unix://{}", real.display()),
            Err(_) => addr.to_string(),
        },
        None => addr.trim_end_matches('/').to_string(),
    }
}

/// True when the error is the engine's 404 (no such container, image, network…).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// True when the error is the engine's 409 (name in use, already exists…).
pub fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// True when the error is the engine's 304 (already started / already stopped).
pub fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// `GET /_ping` over a unix socket or plain TCP; the engine's `Api-Version` header. Blocking
/// std I/O with a short timeout: it is one tiny request before anything else runs.
async fn ping_api_version(addr: &str) -> Option<(usize, usize)> {
    use std::io::{Read, Write};
    let req = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(5));
    let mut buf = Vec::with_capacity(1024);
    if let Some(path) = addr.strip_prefix("unix://") {
        let mut s = std::os::unix::net::UnixStream::connect(path).ok()?;
        s.set_read_timeout(timeout).ok()?;
        s.write_all(req).ok()?;
        s.read_to_end(&mut buf).ok()?;
    } else if let Some(hp) = addr.strip_prefix("http://") {
        use std::net::ToSocketAddrs;
        let sa = hp.trim_end_matches('/').to_socket_addrs().ok()?.next()?;
        let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(timeout).ok()?;
        s.write_all(req).ok()?;
        s.read_to_end(&mut buf).ok()?;
    } else {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    let v = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("api-version")
            .then(|| v.trim().to_string())
    })?;
    let (maj, min) = v.split_once('.')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}
