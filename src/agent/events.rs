//! `--notify-url`: one JSON event per apply and per rollback, POSTed with a plain HTTP/1.1
//! client (http:// only: point it at a local relay for anything that needs TLS). Delivery is
//! best effort and never delays the loop.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reconciler::ServiceOutcome;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `apply` or `rollback`.
    pub event: &'static str,
    pub project: String,
    pub revision: Option<String>,
    pub plan: Vec<String>,
    pub services: Vec<ServiceOutcome>,
    /// RFC 3339.
    pub time: String,
}

/// (host:port, path) of an `http://` URL.
pub fn parse_http_url(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are supported (use a local relay for https)");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        bail!("no host");
    }
    let hostport = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((hostport, path.to_string()))
}

/// POSTs `event` to `url`; returns the HTTP status.
pub async fn post(url: &str, event: &Event) -> Result<u16> {
    let (hostport, path) = parse_http_url(url)?;
    let body = serde_json::to_vec(event)?;
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(&hostport).await?;
        let host = hostport.clone();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             User-Agent: composeops/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(&body).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        // The status line is all we need.
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| anyhow::anyhow!("no HTTP status in reply"))?;
        anyhow::Ok(code)
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(r) => r,
        Err(_) => bail!("timed out after 10s"),
    }
}

/// Sends in the background and logs the result.
pub fn send(url: Option<&str>, event: Event) {
    let Some(url) = url.map(str::to_string) else {
        return;
    };
    tokio::spawn(async move {
        match post(&url, &event).await {
            Ok(code) if (200..300).contains(&code) => {
                tracing::debug!(url = %url, event = event.event, "notification sent")
            }
            Ok(code) => tracing::warn!(url = %url, status = code, "notification refused"),
            Err(e) => tracing::warn!(url = %url, error = %e, "notification not sent"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/hook").unwrap(),
            ("127.0.0.1:8080".into(), "/hook".into())
        );
        assert_eq!(
            parse_http_url("http://relay").unwrap(),
            ("relay:80".into(), "/".into())
        );
        assert!(parse_http_url("https://hooks.example/x").is_err());
    }
}
