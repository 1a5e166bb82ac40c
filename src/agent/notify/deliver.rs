//! One delivery attempt to one target: an HTTP request (reqwest, rustls) or an e-mail
//! (lettre, rustls). Retries and scheduling are the caller's.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;

use super::target::{Kind, Smtp, SmtpTls};
use super::text::{clip, Text};
use crate::agent::events::Event;

/// One client for every notification (connection pool, TLS config built once).
fn client() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // reqwest is built without a default crypto provider (as for the registry client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("composeops/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    Ok(CLIENT.get_or_init(|| c))
}

/// Sends one message; `Err` says why (the caller retries).
pub(crate) async fn deliver(
    kind: &Kind,
    event: &Event,
    text: &Text,
    timeout: Duration,
) -> Result<()> {
    let c = client()?;
    let message = format!("{}\n\n{}", text.title, text.body);
    let req = match kind {
        Kind::Generic(url) => {
            let mut v = serde_json::to_value(event)?;
            v["title"] = json!(text.title);
            v["message"] = json!(text.body);
            c.post(url.clone()).json(&v)
        }
        Kind::Slack(url) => c
            .post(url.clone())
            .json(&json!({ "text": clip(&message, 39_000) })),
        Kind::Discord(url) => c
            .post(url.clone())
            .json(&json!({ "content": clip(&message, 2000) })),
        Kind::Ntfy { url, auth } => {
            let mut r = c
                .post(url.clone())
                .header("Title", ascii(&text.title))
                .header(
                    "Tags",
                    if event.event == "apply" {
                        "white_check_mark"
                    } else {
                        "warning"
                    },
                )
                .body(clip(&text.body, 4096));
            if let Some((u, p)) = auth {
                r = r.basic_auth(u, Some(p));
            }
            r
        }
        Kind::Gotify { url, token } => c
            .post(url.clone())
            .header("X-Gotify-Key", token)
            .json(&json!({ "title": text.title, "message": text.body, "priority": 5 })),
        Kind::Telegram { url, chats } => {
            for chat in chats {
                let r = c
                    .post(url.clone())
                    .json(&json!({ "chat_id": chat, "text": clip(&message, 4096) }));
                check(r, timeout)
                    .await
                    .with_context(|| format!("chat {chat}"))?;
            }
            return Ok(());
        }
        Kind::Smtp(s) => return mail(s, text, timeout).await,
    };
    check(req, timeout).await
}

/// Header values must be visible ASCII; a non-ASCII title is transliterated to '?'.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

async fn check(req: reqwest::RequestBuilder, timeout: Duration) -> Result<()> {
    // reqwest's errors include the URL, which may hold a token: keep only the kind of failure.
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", http_error(&e.without_url())))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!("refused with HTTP {status}: {}", clip(body.trim(), 200));
    }
    Ok(())
}

/// The error and its causes on one line.
fn http_error(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

async fn mail(s: &Smtp, text: &Text, timeout: Duration) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let tls = || TlsParameters::new(s.host.clone()).context("TLS setup");
    let builder = match s.tls {
        SmtpTls::None => T::builder_dangerous(&s.host),
        SmtpTls::Opportunistic => T::builder_dangerous(&s.host).tls(Tls::Opportunistic(tls()?)),
        SmtpTls::StartTls => T::builder_dangerous(&s.host).tls(Tls::Required(tls()?)),
        SmtpTls::Implicit => T::builder_dangerous(&s.host).tls(Tls::Wrapper(tls()?)),
    };
    let mut builder = builder.port(s.port).timeout(Some(timeout));
    if let Some((u, p)) = &s.credentials {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let from: Mailbox = Mailbox::new(
        s.from_name.clone(),
        s.from
            .parse()
            .with_context(|| format!("from={} is not an e-mail address", s.from))?,
    );
    let mut m = lettre::Message::builder()
        .from(from)
        .subject(s.subject.clone().unwrap_or_else(|| text.title.clone()))
        .header(ContentType::TEXT_PLAIN);
    for to in &s.to {
        m = m.to(to
            .parse()
            .with_context(|| format!("to={to} is not an e-mail address"))?);
    }
    let m = m.body(text.body.clone())?;
    builder.build().send(m).await.context("SMTP")?;
    Ok(())
}
