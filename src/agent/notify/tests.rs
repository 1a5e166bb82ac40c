//! URL forms, redaction, and real deliveries to receivers on loopback sockets (an HTTP one
//! and an SMTP one, both written here on std's TcpListener).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::target::{Kind, SmtpTls};
use super::*;
use crate::agent::reconciler::{ServiceOutcome, ServiceResult};

fn kind(u: &str) -> Kind {
    NotifyTarget::parse(u)
        .unwrap_or_else(|e| panic!("{u}: {e:#}"))
        .kind
}

fn url_of(k: &Kind) -> String {
    match k {
        Kind::Generic(u) | Kind::Slack(u) | Kind::Discord(u) => u.to_string(),
        Kind::Ntfy { url, .. } | Kind::Gotify { url, .. } | Kind::Telegram { url, .. } => {
            url.to_string()
        }
        Kind::Smtp(s) => format!("{}:{}", s.host, s.port),
    }
}

#[test]
fn every_form_parses_to_its_endpoint() {
    let cases = [
        (
            "generic+https://hooks.example/x?a=1",
            "https://hooks.example/x?a=1",
        ),
        ("generic+http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
        ("generic://hooks.example/x", "https://hooks.example/x"),
        (
            "generic://hooks.example/x?disabletls=yes",
            "http://hooks.example/x?disabletls=yes",
        ),
        ("http://relay:8080/hook", "http://relay:8080/hook"),
        ("https://hooks.example/y", "https://hooks.example/y"),
        (
            "slack://T000/B000/XXXX",
            "https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        (
            "slack://bot@T000/B000/XXXX",
            "https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        (
            "slack://hook:T000-B000-XXXX@webhook",
            "https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        (
            "slack://T000/B000/XXXX?host=127.0.0.1:9&scheme=http",
            "http://127.0.0.1:9/services/T000/B000/XXXX",
        ),
        (
            "discord://tok@123",
            "https://discord.com/api/webhooks/123/tok",
        ),
        (
            "discord://tok@123?host=127.0.0.1:9&scheme=http",
            "http://127.0.0.1:9/api/webhooks/123/tok",
        ),
        ("ntfy://ntfy.sh/alerts", "https://ntfy.sh/alerts"),
        (
            "ntfy://u:p@127.0.0.1:9/alerts?scheme=http",
            "http://127.0.0.1:9/alerts",
        ),
        (
            "gotify://gotify.example/AbC",
            "https://gotify.example/message",
        ),
        (
            "gotify://gotify.example:8443/sub/AbC",
            "https://gotify.example:8443/sub/message",
        ),
        (
            "gotify://127.0.0.1:9/AbC?disabletls=yes",
            "http://127.0.0.1:9/message",
        ),
        (
            "telegram://110:AAH@telegram?chats=@chan,42",
            "https://api.telegram.org/bot110:AAH/sendMessage",
        ),
        (
            "telegram://110:AAH@telegram?channels=@chan",
            "https://api.telegram.org/bot110:AAH/sendMessage",
        ),
        (
            "smtp://mail.example/?from=a@x.y&to=b@x.y",
            "mail.example:25",
        ),
        (
            "smtp://u:p@mail.example:587/?from=a@x.y&to=b@x.y,c@x.y",
            "mail.example:587",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(url_of(&kind(raw)), want, "{raw}");
    }
    let Kind::Telegram { chats, .. } = kind("telegram://110:AAH@telegram?chats=@chan,42") else {
        panic!()
    };
    assert_eq!(chats, ["@chan", "42"]);
    let Kind::Gotify { token, .. } = kind("gotify://g.example/sub/AbC") else {
        panic!()
    };
    assert_eq!(token, "AbC");
    let Kind::Ntfy { auth, .. } = kind("ntfy://u:p%40ss@h/t") else {
        panic!()
    };
    assert_eq!(auth, Some(("u".into(), "p@ss".into())));
}

#[test]
fn smtp_encryption_and_addresses() {
    let tls = |u: &str| match kind(u) {
        Kind::Smtp(s) => s.tls,
        _ => panic!(),
    };
    let q = "?from=a@x.y&to=b@x.y";
    assert_eq!(tls(&format!("smtp://h/{q}")), SmtpTls::Opportunistic);
    assert_eq!(tls(&format!("smtp://u:p@h/{q}")), SmtpTls::StartTls);
    assert_eq!(tls(&format!("smtp://u:p@h:465/{q}")), SmtpTls::Implicit);
    assert_eq!(
        tls(&format!("smtp://u:p@h/{q}&encryption=None")),
        SmtpTls::None
    );
    assert_eq!(
        tls(&format!("smtp://h/{q}&encryption=ImplicitTLS")),
        SmtpTls::Implicit
    );
    let Kind::Smtp(s) = kind(&format!(
        "smtp://u:p%2Fq@h:2525/{q},c@x.y&subject=Hi&fromname=Ops"
    )) else {
        panic!()
    };
    assert_eq!((s.host.as_str(), s.port), ("h", 2525));
    assert_eq!(s.credentials, Some(("u".into(), "p/q".into())));
    assert_eq!(s.to, ["b@x.y", "c@x.y"]);
    assert_eq!(
        (s.subject.as_deref(), s.from_name.as_deref()),
        (Some("Hi"), Some("Ops"))
    );
}

#[test]
fn errors_say_what_is_expected_and_hide_secrets() {
    let cases = [
        ("slack://onlyone", "TOKEN-A/TOKEN-B/TOKEN-C"),
        ("slack://xoxb:secret-1@chan", "incoming webhook"),
        ("discord://123", "TOKEN@WEBHOOK-ID"),
        ("ntfy://host", "no topic"),
        ("gotify://host", "no token"),
        ("telegram://110:secret-1@telegram", "chats="),
        ("telegram://secret-1@telegram?chats=1", "123456:ABC"),
        ("smtp://u:secret-1@h/?to=b@x.y", "from="),
        ("smtp://u:secret-1@h/?from=a@x.y", "to="),
        (
            "smtp://u:secret-1@h/?from=a@x.y&to=b@x.y&encryption=rot13",
            "encryption=rot13",
        ),
        ("pigeon://secret-1@coop", "unknown scheme pigeon://"),
        ("no-url-secret-1", "not a URL"),
    ];
    for (raw, want) in cases {
        let e = format!(
            "{:#}",
            NotifyTarget::parse(raw)
                .err()
                .unwrap_or_else(|| panic!("{raw} parsed"))
        );
        assert!(e.contains(want), "{raw}: {e}");
        assert!(!e.contains("secret-1"), "{raw} leaks its secret: {e}");
        assert!(e.starts_with("notify URL "), "{e}");
    }
}

#[test]
fn redaction_masks_tokens_passwords_paths_and_unknown_params() {
    let cases = [
        ("discord://tok@123", "discord://***@123"),
        (
            "telegram://110:AAH@telegram?chats=@chan",
            "telegram://110:***@telegram?chats=@chan",
        ),
        ("slack://T000/B000/XXXX", "slack://T000/***"),
        (
            "gotify://g.example/AbC?disabletls=yes",
            "gotify://g.example/***?disabletls=yes",
        ),
        (
            "smtp://u:pw@h:587/?from=a@x.y&to=b@x.y",
            "smtp://u:***@h:587/?from=a@x.y&to=b@x.y",
        ),
        ("https://h/hook?token=abc&x", "https://h/***?token=***&x"),
    ];
    for (raw, want) in cases {
        assert_eq!(super::target::redact(raw), want, "{raw}");
    }
    let t = NotifyTarget::parse("discord://tok@123").unwrap();
    assert_eq!(format!("{t} {t:?}"), "discord://***@123 discord://***@123");
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Req {
    head: String,
    body: String,
}

/// An HTTP receiver on loopback answering each request with `statuses` in turn (then 200).
fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Req>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let mut statuses = statuses.into_iter();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let (mut head, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let code = statuses.next().unwrap_or(200);
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tx.send(Req {
                head,
                body: String::from_utf8_lossy(&body).into(),
            });
        }
    });
    (addr, rx)
}

fn event() -> Event {
    Event {
        event: "rollback",
        project: "shop".into(),
        revision: Some("0123456789abcdef".into()),
        plan: vec![
            "recreate web (changed: environment; image r/app:2: digest sha256:aaa -> sha256:bbb)"
                .into(),
        ],
        services: vec![ServiceOutcome {
            service: "web".into(),
            result: ServiceResult::RolledBack,
            detail: "not healthy".into(),
            logs: vec![
                "boot".into(),
                "DB_PASSWORD=hunter2".into(),
                "panic: no db".into(),
            ],
        }],
        time: "2026-01-01T00:00:00Z".into(),
        reason: None,
    }
}

const FAST: Policy = Policy {
    tries: 3,
    first_delay: Duration::from_millis(50),
    timeout: Duration::from_secs(2),
};

fn next(rx: &mpsc::Receiver<Req>) -> Req {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the receiver got a request")
}

#[tokio::test]
async fn each_http_scheme_reaches_its_receiver_with_the_message() {
    let (addr, rx) = receiver(vec![]);
    let urls = [
        format!("generic+http://{addr}/hook"),
        format!("slack://T0/B0/XX?host={addr}&scheme=http"),
        format!("discord://tok@123?host={addr}&scheme=http"),
        format!("ntfy://u:p@{addr}/alerts?scheme=http"),
        format!("gotify://{addr}/AppTok?disabletls=yes"),
        format!("telegram://110:AAH@telegram?chats=@chan,42&host={addr}&scheme=http"),
    ];
    let targets: Vec<NotifyTarget> = urls
        .iter()
        .map(|u| NotifyTarget::parse(u).unwrap())
        .collect();
    for t in &targets {
        assert!(
            send_one(
                t,
                &event().masked(),
                &text::render(&event().masked(), "h1"),
                FAST
            )
            .await,
            "{t}"
        );
    }
    let reqs: Vec<Req> = (0..7).map(|_| next(&rx)).collect();
    for r in &reqs {
        assert!(r.body.contains("panic: no db"), "{r:?}");
        assert!(
            r.body.contains("DB_PASSWORD=***") && !r.body.contains("hunter2"),
            "{r:?}"
        );
    }
    let line = |i: usize| reqs[i].head.lines().next().unwrap().to_string();
    assert_eq!(line(0), "POST /hook HTTP/1.1");
    let generic: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(generic["event"], "rollback");
    assert_eq!(generic["services"][0]["result"], "rolled_back");
    assert!(generic["message"].as_str().unwrap().contains("ROLLED BACK"));
    assert_eq!(line(1), "POST /services/T0/B0/XX HTTP/1.1");
    let slack: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert!(slack["text"]
        .as_str()
        .unwrap()
        .contains("digest sha256:aaa -> sha256:bbb"));
    assert_eq!(line(2), "POST /api/webhooks/123/tok HTTP/1.1");
    assert!(
        serde_json::from_str::<serde_json::Value>(&reqs[2].body).unwrap()["content"].is_string()
    );
    assert_eq!(line(3), "POST /alerts HTTP/1.1");
    let h3 = reqs[3].head.to_ascii_lowercase();
    assert!(
        h3.contains("title: composeops: shop rolled back")
            && h3.contains("authorization: basic dtpw"),
        "{h3}"
    );
    assert_eq!(line(4), "POST /message HTTP/1.1");
    assert!(reqs[4]
        .head
        .to_ascii_lowercase()
        .contains("x-gotify-key: apptok"));
    let gotify: serde_json::Value = serde_json::from_str(&reqs[4].body).unwrap();
    assert_eq!(
        gotify["title"],
        "composeops: shop rolled back at 0123456789ab on h1"
    );
    for (i, chat) in [(5, "@chan"), (6, "42")] {
        assert_eq!(line(i), "POST /bot110:AAH/sendMessage HTTP/1.1");
        let tg: serde_json::Value = serde_json::from_str(&reqs[i].body).unwrap();
        assert_eq!(tg["chat_id"], chat);
    }
}

#[tokio::test]
async fn refused_deliveries_are_retried_then_given_up() {
    let (addr, rx) = receiver(vec![500, 502]);
    let t = NotifyTarget::parse(&format!("http://{addr}/x")).unwrap();
    let e = event();
    assert!(send_one(&t, &e, &text::render(&e, "h"), FAST).await);
    (0..3).for_each(|_| drop(next(&rx)));

    let (addr, rx) = receiver(vec![500, 500, 500, 500]);
    let t = NotifyTarget::parse(&format!("http://{addr}/x")).unwrap();
    assert!(!send_one(&t, &e, &text::render(&e, "h"), FAST).await);
    (0..3).for_each(|_| drop(next(&rx)));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a fourth try"
    );
}

#[tokio::test]
async fn dead_or_hanging_receivers_neither_block_the_caller_nor_retry_forever() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Accepts, reads, never answers.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_addr = hang.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = hang.incoming().flatten().collect();
        drop(held);
    });
    let policy = Policy {
        tries: 2,
        first_delay: Duration::from_millis(10),
        timeout: Duration::from_millis(500),
    };
    let targets = [
        NotifyTarget::parse(&format!("http://{dead}/x")).unwrap(),
        NotifyTarget::parse(&format!("http://{hang_addr}/x")).unwrap(),
    ];
    let start = Instant::now();
    send_with(&targets, event(), policy);
    // Shorter than one try against the hanging receiver: the caller did not wait for it (a
    // tighter bound fails on a loaded machine without proving more).
    assert!(
        start.elapsed() < policy.timeout,
        "send waited {:?}",
        start.elapsed()
    );
    let e = event();
    let start = Instant::now();
    assert!(!send_one(&targets[1], &e, &text::render(&e, "h"), policy).await);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(!send_one(&targets[0], &e, &text::render(&e, "h"), policy).await);
}

/// A minimal SMTP server: no extensions (so no STARTTLS, no AUTH); sends each DATA to `tx`.
fn smtp_receiver() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let (mut envelope, mut data, mut in_data) = (String::new(), String::new(), false);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        let _ = tx.send(format!("{envelope}\n{data}"));
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        data.push_str(&line);
                    }
                    continue;
                }
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("DATA") {
                    in_data = true;
                    b"354 go ahead\r\n"
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
                        envelope.push_str(&line);
                    }
                    b"250 ok\r\n"
                };
                let _ = w.write_all(reply);
            }
        }
    });
    (port, rx)
}

#[tokio::test]
async fn smtp_mails_the_text_to_every_recipient() {
    let (port, rx) = smtp_receiver();
    let t = NotifyTarget::parse(&format!(
        "smtp://127.0.0.1:{port}/?from=agent@example.test&to=ops@example.test,dev@example.test&fromname=Agent"
    ))
    .unwrap();
    let e = event().masked();
    assert!(send_one(&t, &e, &text::render(&e, "h1"), FAST).await);
    let mail = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(mail.contains("MAIL FROM:<agent@example.test>"), "{mail}");
    assert!(
        mail.contains("RCPT TO:<ops@example.test>") && mail.contains("RCPT TO:<dev@example.test>"),
        "{mail}"
    );
    assert!(
        mail.contains("Subject: composeops: shop rolled back at 0123456789ab on h1"),
        "{mail}"
    );
    assert!(
        mail.contains("panic: no db")
            && mail.contains("DB_PASSWORD=***")
            && !mail.contains("hunter2"),
        "{mail}"
    );
}
