//! `ssh://[USER@]HOST[:PORT][/SOCKET]` as the docker CLI reaches it: the system `ssh` runs
//! `docker system dial-stdio` on the remote host, and HTTP flows over that process's stdin and
//! stdout. So `~/.ssh/config`, the ssh agent and known_hosts work as they do for `docker`.
//!
//! bollard's own `ssh` feature drops the port of `ssh://host:2022` and opens an ssh master
//! per connection; this is the CLI's way instead, with hyper's pool keeping one `ssh` process
//! per idle connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{bail, Result};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A parsed `ssh://` host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The engine's socket on the remote host, when not its default.
    pub socket: Option<String>,
}

impl SshHost {
    pub(crate) fn parse(url: &str) -> Result<SshHost> {
        let Some(rest) = url.strip_prefix("ssh://") else {
            bail!("not an ssh:// host: {url:?}");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, after)) => (h, after.strip_prefix(':')),
                None => bail!("invalid ssh host {url:?}: unclosed ["),
            },
            None => match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = port
            .map(|p| p.parse::<u16>())
            .transpose()
            .map_err(|_| anyhow::anyhow!("invalid port in ssh host {url:?}"))?;
        let dash = |s: &str| s.starts_with('-');
        if host.is_empty() || dash(host) || user.as_deref().is_some_and(dash) {
            bail!("invalid ssh host {url:?}: expected ssh://[USER@]HOST[:PORT]");
        }
        Ok(SshHost {
            user,
            host: host.to_string(),
            port,
            socket: Some(path)
                .filter(|p| !p.is_empty() && *p != "/")
                .map(str::to_string),
        })
    }

    /// The `ssh` arguments: no pseudo-terminal, never a password prompt (an agent has no
    /// terminal to ask on), a connect timeout, then the remote `docker system dial-stdio`.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"]
            .map(String::from)
            .to_vec();
        if let Some(u) = &self.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        a.extend(["--".into(), self.host.clone(), "docker".into()]);
        if let Some(s) = &self.socket {
            a.extend(["--host".into(), format!("unix://{s}")]);
        }
        a.extend(["system".into(), "dial-stdio".into()]);
        a
    }
}

/// Opens a connection by starting `ssh`; remembers what the last one printed on stderr, so a
/// refused key or an unknown host is part of the error the user sees.
#[derive(Clone)]
pub(crate) struct SshConnector {
    host: Arc<SshHost>,
    pub(crate) stderr: Arc<Mutex<String>>,
}

impl SshConnector {
    pub(crate) fn new(host: SshHost) -> SshConnector {
        SshConnector {
            host: Arc::new(host),
            stderr: Arc::default(),
        }
    }

    fn spawn(&self) -> io::Result<SshStream> {
        let mut child = tokio::process::Command::new("ssh")
            .args(self.host.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        if let Some(mut err) = child.stderr.take() {
            let keep = self.stderr.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text).await;
                if !text.trim().is_empty() {
                    *keep.lock().unwrap_or_else(|p| p.into_inner()) = text.trim().to_string();
                }
            });
        }
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok(SshStream {
                _child: child,
                io: TokioIo::new(tokio::io::join(o, i)),
            }),
            _ => Err(io::Error::other("ssh started without pipes")),
        }
    }
}

impl tower_service::Service<hyper::Uri> for SshConnector {
    type Response = SshStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<SshStream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let r = self.spawn();
        Box::pin(async move { r })
    }
}

/// One `ssh … dial-stdio` process as a byte stream; killed when the connection is dropped.
pub(crate) struct SshStream {
    _child: Child,
    io: TokioIo<tokio::io::Join<ChildStdout, ChildStdin>>,
}

impl hyper::rt::Read for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A bollard client whose requests go through `ssh`, and the connector's stderr.
pub(crate) fn docker(host: SshHost, timeout: u64) -> Result<(bollard::Docker, Arc<Mutex<String>>)> {
    let connector = SshConnector::new(host);
    let stderr = connector.stderr.clone();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let transport = move |req: bollard::BollardRequest| {
        let client = client.clone();
        async move { Ok(client.request(req).await?) }
    };
    // The address only names the engine in URLs; the connector ignores it.
    let docker = bollard::Docker::connect_with_custom_transport(
        transport,
        Some("http://api.moby.localhost"),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )?;
    Ok((docker, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> String {
        SshHost::parse(url).unwrap().args().join(" ")
    }

    #[test]
    fn command_line_is_the_docker_clis() {
        let fixed = "-o ConnectTimeout=30 -o BatchMode=yes -T";
        assert_eq!(
            args("ssh://box"),
            format!("{fixed} -- box docker system dial-stdio")
        );
        assert_eq!(
            args("ssh://me@box:2022"),
            format!("{fixed} -l me -p 2022 -- box docker system dial-stdio")
        );
        assert_eq!(
            args("ssh://me@[::1]:22/run/user/1000/docker.sock"),
            format!(
                "{fixed} -l me -p 22 -- ::1 docker --host unix:///run/user/1000/docker.sock \
                 system dial-stdio"
            )
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        assert!(SshHost::parse("ssh://").is_err());
        assert!(SshHost::parse("ssh://box:port").is_err());
        // Never an option in ssh's place of the host name.
        assert!(SshHost::parse("ssh://-oProxyCommand=x").is_err());
        assert!(SshHost::parse("ssh://-l@box").is_err());
    }
}
