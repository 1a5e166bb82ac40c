//! `engine`: the connection to the Docker daemon, and a count of the API calls made through it.
//!
//! Every engine call of observe and apply goes through [`Engine::call`], so a no-op run can
//! report (at debug level, and to tests) how many requests it cost.
//!
//! The engine is found where Docker Compose finds it ([`target`]): `--context`, `-H`,
//! `DOCKER_HOST`, `DOCKER_CONTEXT`, the CLI's current context, the local socket; over a unix
//! socket, plain TCP, TCP with TLS (bollard's rustls transport) or ssh ([`ssh`]).

mod ssh;
mod target;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use bollard::Docker;

pub use target::EngineFlags;
use target::{Target, TlsFiles};

/// Seconds a single engine request may take.
const TIMEOUT: u64 = 300;

/// A negotiated bollard client plus a request counter.
pub struct Engine {
    pub docker: Docker,
    calls: AtomicUsize,
    endpoint: String,
}

impl Engine {
    /// Connects to the engine `flags`, the environment and the docker CLI's context select,
    /// and negotiates the API version (bollard defaults to a newer API than many engines
    /// speak). Errors name the address and where it came from.
    pub async fn connect(flags: &EngineFlags) -> Result<Engine> {
        let target = target::resolve(flags, &|k| std::env::var(k).ok())?;
        let (docker, endpoint) = Self::open(&target).await.with_context(|| {
            format!(
                "cannot reach the Docker engine at {} ({})",
                target.host, target.source
            )
        })?;
        // Negotiation cost one request (/_ping or /version).
        Ok(Engine {
            docker,
            calls: AtomicUsize::new(1),
            endpoint,
        })
    }

    /// A client for `target` with its API version, and the engine's name for the lock.
    ///
    /// On a unix socket and plain TCP the version is the `Api-Version` header of `/_ping`
    /// (0.5–2 ms) rather than bollard's `/version` (6–17 ms measured on the test engine, a
    /// third of a no-op apply); over TLS and ssh, where the connection itself costs more
    /// than that difference, bollard's `negotiate_version`.
    async fn open(target: &Target) -> Result<(Docker, String)> {
        let host = target.host.as_str();
        if let Some(tls) = &target.tls {
            let docker = tls_client(host, tls)?;
            let endpoint = format!("https://{}", authority(host));
            let docker = docker
                .negotiate_version()
                .await
                .map_err(|e| tls_hint(e, tls))?;
            return Ok((docker, endpoint));
        }
        if host.starts_with("ssh://") {
            let (docker, stderr) = ssh::docker(ssh::SshHost::parse(host)?, TIMEOUT)?;
            let endpoint = host.trim_end_matches('/').to_string();
            let docker = match docker.negotiate_version().await {
                Ok(d) => d,
                Err(e) => {
                    // ssh says why on stderr as it exits, which can come a moment after its
                    // stdout closed: wait for those words (up to 2 s) before reporting.
                    for _ in 0..100 {
                        if !stderr.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    return Err(with_ssh_stderr(e, &stderr));
                }
            };
            return Ok((docker, endpoint));
        }
        let addr = match host.strip_prefix("tcp://") {
            Some(r) => format!("http://{r}"),
            None => host.to_string(),
        };
        let server = ping_api_version(&addr).await;
        let version = match server {
            Some(v) if v < default_version() => bollard::ClientVersion {
                major_version: v.0,
                minor_version: v.1,
            },
            _ => *bollard::API_DEFAULT_VERSION,
        };
        // `target` admits only unix://, tcp:// (now http://) and ssh:// here.
        let docker = match addr.starts_with("unix://") {
            true => Docker::connect_with_unix(&addr, TIMEOUT, &version)?,
            false => Docker::connect_with_http(&addr, TIMEOUT, &version)?,
        };
        let docker = match server {
            Some(_) => docker,
            None => docker.negotiate_version().await.map_err(plain_hint)?,
        };
        Ok((docker, endpoint_of(&addr)))
    }

    /// Names the engine for the per-engine project lock: the address, with a unix socket's
    /// path resolved (`/var/run` is a link to `/run` on most systems). Plain TCP keeps the
    /// `http://HOST:PORT` form earlier versions used, so an upgrade does not change the lock
    /// of a running agent.
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

fn default_version() -> (usize, usize) {
    let v = bollard::API_DEFAULT_VERSION;
    (v.major_version, v.minor_version)
}

/// `tcp://HOST:PORT` → `HOST:PORT`.
fn authority(host: &str) -> &str {
    host.split_once("://")
        .map_or(host, |(_, r)| r)
        .trim_end_matches('/')
}

/// bollard's rustls transport. The CA must be readable here: bollard reports a missing file
/// only as "cannot open/read certificate" without saying which role it plays.
fn tls_client(host: &str, tls: &TlsFiles) -> Result<Docker> {
    // bollard's rustls takes the process-wide provider; the registry client installs the
    // same one, whichever comes first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::metadata(&tls.ca).with_context(|| {
        format!(
            "cannot read the CA certificate {} (DOCKER_CERT_PATH or the context's TLS files)",
            tls.ca.display()
        )
    })?;
    for f in [&tls.cert, &tls.key] {
        if !f.exists() {
            tracing::warn!(file = %f.display(), "no client certificate or key: connecting without one");
        }
    }
    let addr = format!("https://{}", authority(host));
    Ok(Docker::connect_with_ssl(
        &addr,
        &tls.key,
        &tls.cert,
        &tls.ca,
        TIMEOUT,
        bollard::API_DEFAULT_VERSION,
    )?)
}

/// A TLS failure said in the terms of the files the user gave.
fn tls_hint(e: bollard::errors::Error, tls: &TlsFiles) -> anyhow::Error {
    let e = anyhow!(e);
    let text = format!("{e:#}");
    let hint = if text.contains("invalid peer certificate") {
        format!(
            "certificate verify failed: the engine's certificate is not signed by {}",
            tls.ca.display()
        )
    } else if text.contains("alert") {
        format!(
            "the engine refused the TLS handshake (client certificate {}, key {})",
            tls.cert.display(),
            tls.key.display()
        )
    } else {
        return e;
    };
    e.context(hint)
}

/// A plain HTTP request answered by a TLS port: say how to turn TLS on.
fn plain_hint(e: bollard::errors::Error) -> anyhow::Error {
    let e = anyhow!(e);
    match format!("{e:#}").contains("HTTP request to an HTTPS server") {
        true => e.context(
            "the engine speaks TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or use a \
             docker context with TLS material",
        ),
        false => e,
    }
}

/// An ssh failure with what ssh itself said (refused key, unknown host, no docker there).
fn with_ssh_stderr(e: bollard::errors::Error, stderr: &Arc<Mutex<String>>) -> anyhow::Error {
    let said = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match said.is_empty() {
        true => anyhow!(e),
        // ssh prefixes its own messages with "ssh: " already.
        false if said.starts_with("ssh:") => anyhow!(e).context(said),
        false => anyhow!(e).context(format!("ssh: {said}")),
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
    use std::time::Duration;
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
