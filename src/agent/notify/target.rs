//! `--notify` URLs, parsed. The forms are shoutrrr's (what Watchtower users already have), so
//! a URL can be pasted as is. Slack, Discord and Telegram talk to fixed public APIs; the
//! `host=` and `scheme=` query parameters point them elsewhere (a relay, a test receiver).

use std::fmt;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Url;

/// One place to send notifications. `Debug` and `Display` show the URL without secrets.
#[derive(Clone)]
pub struct NotifyTarget {
    pub(crate) kind: Kind,
    /// The URL as given, with tokens and passwords replaced by `***`: for logs and errors.
    shown: String,
}

#[derive(Clone)]
pub(crate) enum Kind {
    /// POST the JSON event.
    Generic(Url),
    /// POST `{"text": …}` to a Slack incoming webhook.
    Slack(Url),
    /// POST `{"content": …}` to a Discord webhook.
    Discord(Url),
    /// POST the text to `…/topic`, title in a header.
    Ntfy {
        url: Url,
        auth: Option<(String, String)>,
    },
    /// POST `{"title", "message", "priority"}` to `…/message` with the application token.
    Gotify {
        url: Url,
        token: String,
    },
    /// `sendMessage` to each chat.
    Telegram {
        url: Url,
        chats: Vec<String>,
    },
    Smtp(Smtp),
}

#[derive(Clone)]
pub(crate) struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpTls {
    /// Plain text (shoutrrr `encryption=none`).
    None,
    /// STARTTLS if the server offers it (no credentials to protect).
    Opportunistic,
    /// STARTTLS or fail.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

const FORMS: &str =
    "generic+https://HOST/PATH, https://HOST/PATH, slack://TOKEN-A/TOKEN-B/TOKEN-C, \
     discord://TOKEN@WEBHOOK-ID, ntfy://[USER:PASS@]HOST/TOPIC, gotify://HOST/TOKEN, \
     telegram://BOT-TOKEN@telegram?chats=@CHANNEL, smtp://[USER:PASS@]HOST:PORT/?from=ADDR&to=ADDR";

impl NotifyTarget {
    /// Parses one URL; the error names the URL with its secrets masked.
    pub fn parse(raw: &str) -> Result<NotifyTarget> {
        let shown = redact(raw);
        let kind = parse_kind(raw.trim()).with_context(|| format!("notify URL {shown}"))?;
        Ok(NotifyTarget { kind, shown })
    }

    /// The URL with secrets masked.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

fn parse_kind(raw: &str) -> Result<Kind> {
    let scheme = raw
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| anyhow!("not a URL; expected one of: {FORMS}"))?;
    let u = Url::parse(raw).map_err(|e| anyhow!("not a valid URL ({e})"))?;
    match scheme.as_str() {
        "http" | "https" => generic(u, &scheme),
        "generic+http" | "generic+https" => generic(u, &scheme["generic+".len()..]),
        "generic" => {
            let s = if flag(&u, "disabletls") {
                "http"
            } else {
                "https"
            };
            generic(u, s)
        }
        "slack" => slack(&u),
        "discord" => discord(&u),
        "ntfy" => ntfy(&u),
        "gotify" => gotify(&u),
        "telegram" => telegram(&u),
        "smtp" => smtp(&u),
        other => bail!("unknown scheme {other}://; supported forms: {FORMS}"),
    }
}

/// The value of query parameter `key` (case-insensitive name).
fn query(u: &Url, key: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.into_owned())
}

/// A yes/no query parameter (`yes`, `true`, `1`).
fn flag(u: &Url, key: &str) -> bool {
    query(u, key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1"))
}

/// Percent-decoding without another dependency: URL userinfo and path segments arrive encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn generic(u: Url, scheme: &str) -> Result<Kind> {
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("no host"))?;
    let mut s = format!("{scheme}://");
    if !u.username().is_empty() {
        s.push_str(u.username());
        if let Some(p) = u.password() {
            s.push(':');
            s.push_str(p);
        }
        s.push('@');
    }
    s.push_str(host);
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(u.path());
    if let Some(q) = u.query() {
        s.push('?');
        s.push_str(q);
    }
    Ok(Kind::Generic(Url::parse(&s)?))
}

/// `scheme=http` / `host=H:P` override the public API's base (for relays and tests).
fn api_base(u: &Url, default_host: &str) -> Result<Url> {
    let scheme = query(u, "scheme").unwrap_or_else(|| "https".into());
    if scheme != "http" && scheme != "https" {
        bail!("scheme={scheme}: use http or https");
    }
    let host = query(u, "host").unwrap_or_else(|| default_host.into());
    Url::parse(&format!("{scheme}://{host}/")).map_err(|e| anyhow!("host={host}: {e}"))
}

/// `slack://[botname@]TOKEN-A/TOKEN-B/TOKEN-C` or `slack://hook:TOKEN-A-TOKEN-B-TOKEN-C@webhook`.
fn slack(u: &Url) -> Result<Kind> {
    let tokens: Vec<String> = if u.username().eq_ignore_ascii_case("hook") {
        let t = percent_decode(u.password().unwrap_or(""));
        t.split(['-', '/']).map(str::to_string).collect()
    } else if matches!(u.username(), "xoxb" | "xoxp") {
        bail!("Slack API tokens (xoxb:/xoxp:) are not supported; use an incoming webhook URL");
    } else {
        let host = u.host_str().unwrap_or("");
        std::iter::once(host.to_string())
            .chain(
                u.path()
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(percent_decode),
            )
            .collect()
    };
    if tokens.len() != 3 || tokens.iter().any(|t| t.is_empty()) {
        bail!("expected slack://TOKEN-A/TOKEN-B/TOKEN-C (the three parts of the webhook URL)");
    }
    let base = api_base(u, "hooks.slack.com")?;
    Ok(Kind::Slack(base.join(&format!(
        "services/{}/{}/{}",
        tokens[0], tokens[1], tokens[2]
    ))?))
}

/// `discord://TOKEN@WEBHOOK-ID`.
fn discord(u: &Url) -> Result<Kind> {
    let token = percent_decode(u.username());
    let id = u.host_str().unwrap_or("");
    if token.is_empty() || id.is_empty() {
        bail!("expected discord://TOKEN@WEBHOOK-ID (from the webhook URL .../webhooks/ID/TOKEN)");
    }
    let base = api_base(u, "discord.com")?;
    Ok(Kind::Discord(
        base.join(&format!("api/webhooks/{id}/{token}"))?,
    ))
}

/// `ntfy://[USER:PASS@]HOST[:PORT]/TOPIC[?scheme=http]`.
fn ntfy(u: &Url) -> Result<Kind> {
    let topic = u.path().trim_matches('/');
    if topic.is_empty() {
        bail!("no topic: expected ntfy://HOST/TOPIC (e.g. ntfy://ntfy.sh/my-topic)");
    }
    let host = u.host_str().filter(|h| !h.is_empty()).unwrap_or("ntfy.sh");
    let scheme = if flag(u, "disabletls") {
        "http".into()
    } else {
        query(u, "scheme").unwrap_or("https".into())
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let url = Url::parse(&format!("{scheme}://{host}{port}/{topic}"))?;
    let auth = (!u.username().is_empty()).then(|| {
        (
            percent_decode(u.username()),
            percent_decode(u.password().unwrap_or("")),
        )
    });
    Ok(Kind::Ntfy { url, auth })
}

/// `gotify://HOST[:PORT][/PATH]/TOKEN[?disabletls=yes]`.
fn gotify(u: &Url) -> Result<Kind> {
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("no host: expected gotify://HOST/TOKEN"))?;
    let mut segs: Vec<&str> = u.path().split('/').filter(|s| !s.is_empty()).collect();
    let token = segs
        .pop()
        .map(percent_decode)
        .ok_or_else(|| anyhow!("no token: expected gotify://HOST/TOKEN"))?;
    let http = flag(u, "disabletls") || query(u, "scheme").as_deref() == Some("http");
    let scheme = if http { "http" } else { "https" };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let prefix: String = segs.iter().map(|s| format!("/{s}")).collect();
    let url = Url::parse(&format!("{scheme}://{host}{port}{prefix}/message"))?;
    Ok(Kind::Gotify { url, token })
}

/// `telegram://BOT-ID:BOT-SECRET@telegram?chats=@channel,12345` (`channels=` in older shoutrrr).
fn telegram(u: &Url) -> Result<Kind> {
    let (id, secret) = (
        percent_decode(u.username()),
        percent_decode(u.password().unwrap_or("")),
    );
    if id.is_empty() || secret.is_empty() {
        bail!("expected telegram://BOT-TOKEN@telegram?chats=@CHANNEL (the token has the form 123456:ABC…)");
    }
    let chats: Vec<String> = query(u, "chats")
        .or_else(|| query(u, "channels"))
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if chats.is_empty() {
        bail!("no chats: add ?chats=@channel or ?chats=CHAT-ID");
    }
    let base = api_base(u, "api.telegram.org")?;
    // Not `join`: `bot123:ABC` would read as a URL scheme.
    let url = Url::parse(&format!("{base}bot{id}:{secret}/sendMessage"))?;
    Ok(Kind::Telegram { url, chats })
}

/// `smtp://[USER:PASS@]HOST[:PORT]/?from=ADDR&to=ADDR[,ADDR][&subject=][&fromname=]
/// [&encryption=auto|none|explicittls|implicittls][&usestarttls=no]`.
fn smtp(u: &Url) -> Result<Kind> {
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("no host: expected smtp://HOST:PORT/?from=ADDR&to=ADDR"))?;
    let port = u.port().unwrap_or(25);
    let from = query(u, "from").ok_or_else(|| anyhow!("no from=: add ?from=ADDRESS"))?;
    let to: Vec<String> = query(u, "to")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if to.is_empty() {
        bail!("no to=: add &to=ADDRESS[,ADDRESS]");
    }
    let credentials = (!u.username().is_empty()).then(|| {
        (
            percent_decode(u.username()),
            percent_decode(u.password().unwrap_or("")),
        )
    });
    let enc = query(u, "encryption")
        .unwrap_or_else(|| "auto".into())
        .to_ascii_lowercase();
    let tls = match enc.as_str() {
        "none" => SmtpTls::None,
        "explicittls" => SmtpTls::StartTls,
        "implicittls" => SmtpTls::Implicit,
        "auto" if port == 465 => SmtpTls::Implicit,
        "auto" if query(u, "usestarttls").is_some_and(|v| v.eq_ignore_ascii_case("no")) => {
            SmtpTls::None
        }
        // Credentials are never sent in clear unless asked for with encryption=none.
        "auto" if credentials.is_some() => SmtpTls::StartTls,
        "auto" => SmtpTls::Opportunistic,
        other => bail!("encryption={other}: use auto, none, explicittls or implicittls"),
    };
    Ok(Kind::Smtp(Smtp {
        host: host.to_string(),
        port,
        tls,
        credentials,
        from,
        from_name: query(u, "fromname"),
        to,
        subject: query(u, "subject"),
    }))
}

/// Query parameters whose values are not secret and help to tell targets apart in logs.
const SHOWN_PARAMS: &[&str] = &[
    "chats",
    "channels",
    "to",
    "from",
    "fromname",
    "subject",
    "host",
    "scheme",
    "disabletls",
    "encryption",
    "usestarttls",
    "priority",
    "title",
];

/// `raw` with passwords, tokens in the user part or path, and unknown query values replaced
/// by `***`. Works on text that does not parse, so errors can name the URL too.
pub(crate) fn redact(raw: &str) -> String {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "(not a URL)".into();
    };
    let (before_q, q) = rest
        .split_once('?')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    let (authority, path) = before_q
        .split_once('/')
        .map_or((before_q, ""), |(a, b)| (a, b));
    let (userinfo, host) = authority
        .rsplit_once('@')
        .map_or((None, authority), |(u, h)| (Some(u), h));
    let mut s = format!("{scheme}://");
    if let Some(ui) = userinfo {
        match ui.split_once(':') {
            // Telegram's bot id and Slack's `hook` are not secret; the part after ':' is.
            Some((user, _)) => s.push_str(&format!("{user}:***@")),
            None => s.push_str("***@"),
        }
    }
    s.push_str(host);
    // Slack, Gotify and many webhooks carry their tokens in the path; an ntfy topic is as
    // good as a password.
    if before_q.contains('/') {
        s.push('/');
    }
    if !path.is_empty() {
        s.push_str("***");
    }
    if let Some(q) = q {
        let shown: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if SHOWN_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) => {
                    format!("{k}={v}")
                }
                Some((k, _)) => format!("{k}=***"),
                None => kv.to_string(),
            })
            .collect();
        s.push('?');
        s.push_str(&shown.join("&"));
    }
    s
}
