//! `composeops agent --notify`: the real binary and engine, a git checkout, and one receiver
//! per notification scheme on loopback (HTTP receivers for the generic webhook, Slack,
//! Discord, ntfy, Gotify and Telegram, pointed at with the documented `host=`/`scheme=`
//! overrides, and a minimal SMTP server), plus a receiver that is down and one that hangs.
//!
//! Run with `scripts/test.sh --test notify_e2e`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A running agent; killed on drop. Its stderr goes to `log`.
struct Agent {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Agent {
    fn start(path: &Path, state: &Path, extra: &[String]) -> Agent {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = state.with_extension(format!("{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_composeops"))
            .arg("agent")
            .arg(path)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &addr, "--debounce", "300ms", "--git-pull", "1s"])
            .args([
                "--retry-initial",
                "1s",
                "--retry-max",
                "4s",
                "--wait-timeout",
                "8s",
            ])
            .args(extra)
            .env_remove("COMPOSEOPS_WEBHOOK_SECRET")
            .env("COMPOSEOPS_LOG", "info,composeops::agent::notify=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn composeops agent");
        let a = Agent { child, log, addr };
        a.wait_for("the listener", Duration::from_secs(20), || {
            a.try_status().is_some()
        });
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_status(&self) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()
    }

    fn project(&self, id: &str) -> serde_json::Value {
        self.try_status().expect("GET /status")["projects"][id].clone()
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- agent log ---\n{}",
            self.log()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare origin, a `dev` clone to push from and the agent's `work` clone.
struct Repos {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    dev: PathBuf,
    state: PathBuf,
}

impl Repos {
    fn new(compose: &str) -> Repos {
        let tmp = tempfile::tempdir().unwrap();
        let (origin, dev, work) = (
            tmp.path().join("o.git"),
            tmp.path().join("dev"),
            tmp.path().join("work"),
        );
        git(
            tmp.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                origin.to_str().unwrap(),
            ],
        );
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                dev.to_str().unwrap(),
            ],
        );
        git(&dev, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        let r = Repos {
            state: tmp.path().join("state"),
            work: work.clone(),
            dev,
            _tmp: tmp,
        };
        r.push(compose, "first");
        git(
            r._tmp.path(),
            &[
                "clone",
                "-q",
                "-b",
                "main",
                origin.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        r
    }

    fn push(&self, compose: &str, msg: &str) -> String {
        let _ = Command::new("git")
            .arg("-C")
            .arg(&self.dev)
            .args(["pull", "-q", "--ff-only", "origin", "main"])
            .output();
        std::fs::write(self.dev.join("compose.yaml"), compose).unwrap();
        git(&self.dev, &["add", "-A"]);
        git(&self.dev, &["commit", "-qm", msg]);
        git(&self.dev, &["push", "-q", "origin", "main"]);
        git(&self.dev, &["rev-parse", "HEAD"])
    }
}

/// One service; `command` (JSON array) replaces the image's.
fn compose(project: &str, image: &str, command: Option<&str>) -> String {
    let cmd = command
        .map(|c| format!("    command: {c}\n"))
        .unwrap_or_default();
    format!(
        "name: {project}\nservices:\n  web:\n    image: {image}\n{cmd}    environment:\n      \
         API_TOKEN: \"tok-in-env-123\"\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-qO-\", \
         \"http://127.0.0.1:8080/\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n"
    )
}

/// (request line, headers, body) of every request, in arrival order.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// An HTTP receiver answering 200 to everything.
fn http_receiver() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let (mut first, mut head, mut len) = (String::new(), String::new(), 0usize);
            let _ = r.read_line(&mut first);
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
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let body = String::from_utf8_lossy(&body).to_string();
            s2.lock()
                .unwrap()
                .push((first.trim().to_string(), head, body));
        }
    });
    (addr, seen)
}

/// Accepts connections and never answers; returns when each was accepted.
fn hanging_receiver() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a2 = at.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            a2.lock().unwrap().push(Instant::now());
            held.push(s);
        }
    });
    (addr, at)
}

/// A minimal SMTP server (no STARTTLS, no AUTH): stores each message's DATA.
fn smtp_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let (mut data, mut in_data) = (String::new(), false);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        g.lock().unwrap().push(std::mem::take(&mut data));
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        data.push_str(&line);
                    }
                    continue;
                }
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                }
                in_data = cmd.starts_with("DATA");
                let _ = w.write_all(if in_data {
                    b"354 go ahead\r\n"
                } else {
                    b"250 ok\r\n"
                });
            }
        }
    });
    (port, got)
}

/// The mail text with quoted-printable soft line breaks and `=XX` escapes decoded.
fn unquote_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = std::str::from_utf8(b.get(i + 1..i + 3).unwrap_or(b""))
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'=', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bodies of requests whose request line contains `path`.
fn bodies(seen: &Seen, path: &str) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|r| r.0.contains(path))
        .map(|r| r.2.clone())
        .collect()
}

/// Receivers for every scheme; `urls` are the `--notify` URLs pointing at them, with a token
/// or password in each so the test can look for leaks.
struct Receivers {
    seen: Seen,
    mails: Arc<Mutex<Vec<String>>>,
    hung: Arc<Mutex<Vec<Instant>>>,
    urls: Vec<String>,
}

/// Request-line fragments of the HTTP schemes, in `Receivers::urls` order.
const HTTP_PATHS: [&str; 6] = [
    "/generic",
    "/services/T0/B0/slack-secret-1",
    "/api/webhooks/42/discord-secret-2",
    "/alerts",
    "/message",
    "/sendMessage",
];

const SECRETS: [&str; 5] = [
    "slack-secret-1",
    "discord-secret-2",
    "ntfy-secret-3",
    "gotify-secret-4",
    "tg-secret-5",
];

fn receivers() -> Receivers {
    let (http, seen) = http_receiver();
    let (hang, hung) = hanging_receiver();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (smtp_port, mails) = smtp_receiver();
    let q = format!("host={http}&scheme=http");
    let urls = vec![
        format!("generic+http://{http}/generic"),
        format!("slack://T0/B0/slack-secret-1?{q}"),
        format!("discord://discord-secret-2@42?{q}"),
        format!("ntfy://ops:ntfy-secret-3@{http}/alerts?scheme=http"),
        format!("gotify://{http}/gotify-secret-4?disabletls=yes"),
        format!("telegram://110:tg-secret-5@telegram?chats=@ops&{q}"),
        format!("smtp://127.0.0.1:{smtp_port}/?from=agent@example.test&to=ops@example.test"),
        format!("http://{dead}/down"),
        format!("http://{hang}/hangs"),
    ];
    Receivers {
        seen,
        mails,
        hung,
        urls,
    }
}

impl Receivers {
    /// The rollback messages, one per scheme (HTTP_PATHS order, then the e-mail decoded);
    /// panics unless each scheme got exactly one.
    fn rollback_messages(&self, agent: &Agent) -> Vec<String> {
        let rollbacks = |bodies: Vec<String>| -> Vec<String> {
            bodies
                .into_iter()
                .filter(|b| b.contains("rolled back") || b.contains("\"rollback\""))
                .collect()
        };
        let mails = || -> Vec<String> {
            let m = self.mails.lock().unwrap();
            m.iter()
                .filter(|m| m.contains("rolled back"))
                .cloned()
                .collect()
        };
        agent.wait_for("rollback messages", Duration::from_secs(30), || {
            HTTP_PATHS
                .iter()
                .all(|p| rollbacks(bodies(&self.seen, p)).len() == 1)
                && mails().len() == 1
        });
        // Still one each a moment later (no duplicates from retries).
        std::thread::sleep(Duration::from_secs(3));
        let mut messages = Vec::new();
        for p in HTTP_PATHS {
            let rb = rollbacks(bodies(&self.seen, p));
            assert_eq!(rb.len(), 1, "{p}: {rb:#?}");
            messages.push(rb[0].clone());
        }
        let mail = mails();
        assert_eq!(mail.len(), 1, "{mail:#?}");
        messages.push(unquote_printable(&mail[0]));
        messages
    }
}

/// A rolled-back update sends one message per target, with the failed container's last log
/// lines and the digest change, secrets masked; a dead and a hanging receiver delay nothing.
#[test]
fn rollback_sends_one_message_per_scheme_and_dead_receivers_delay_nothing() {
    let name = unique_project("notify-rb");
    let mut guard = ProjectGuard::new(&name);
    let reg = &testbed().registry;
    let (good, bad) = (
        format!("{reg}/{name}/app:v1"),
        format!("{reg}/{name}/app:bad"),
    );
    build_app_image(&good, "v1");
    push_image(&good);
    build_app_image(&bad, "unhealthy");
    push_image(&bad);
    guard.image(good.clone()).image(bad.clone());

    let r = receivers();
    let mut args: Vec<String> = r
        .urls
        .iter()
        .flat_map(|u| ["--notify".to_string(), u.clone()])
        .collect();
    args.extend(["--log-format".into(), "json".into()]);
    let repos = Repos::new(&compose(&name, &good, None));
    let id = repos
        .work
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let agent = Agent::start(&repos.work, &repos.state, &args);
    agent.wait_for("the first apply", Duration::from_secs(60), || {
        agent.project(&id)["last_result"] == "success" && !r.hung.lock().unwrap().is_empty()
    });

    // The hanging receiver holds the first notification (10 s per try, 3 tries, 33 s in
    // all) while the agent goes on: the bad revision is applied and rolled back meanwhile.
    let cmd = r#"["sh", "-c", "echo booting; echo DB_PASSWORD=hunter2; echo 'fatal: cannot reach db at db:5432'; trap 'exit 0' TERM; while true; do sleep 1; done"]"#;
    let bad_rev = repos.push(&compose(&name, &bad, Some(cmd)), "bad image");
    // A wake-up right after the rollback (the next git pull) reports the same state as
    // skipped: either result means the rollback happened.
    agent.wait_for("the rollback", Duration::from_secs(60), || {
        let r = &agent.project(&id)["last_result"];
        r == "rolled_back" || r == "skipped_rolled_back"
    });
    let since_hang = r.hung.lock().unwrap()[0].elapsed();
    assert!(
        since_hang < Duration::from_secs(30),
        "the rollback finished {since_hang:?} after the hanging notification began"
    );

    let messages = r.rollback_messages(&agent);
    for m in &messages {
        assert!(
            m.contains("fatal: cannot reach db at db:5432"),
            "no log line in {m}"
        );
        assert!(
            m.contains("DB_PASSWORD=***") && !m.contains("hunter2"),
            "secret in {m}"
        );
        assert!(!m.contains("tok-in-env-123"), "env secret in {m}");
        assert!(m.contains(&bad_rev[..12]), "no revision in {m}");
    }
    let generic: serde_json::Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(generic["event"], "rollback");
    assert_eq!(generic["revision"], bad_rev.as_str());
    assert_eq!(generic["services"][0]["result"], "rolled_back");
    let slack: serde_json::Value = serde_json::from_str(&messages[1]).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("- web: ROLLED BACK") && text.contains("digest sha256:"),
        "{text}"
    );
    println!(
        "--- Slack message ---\n{text}\n--- e-mail ---\n{}",
        messages[6]
    );

    // Credentials never reach the log; the targets are named redacted.
    let log = agent.log();
    for s in SECRETS {
        assert!(!log.contains(s), "{s} in the agent log");
    }
    assert!(log.contains("discord://***@42"), "{log}");
    assert!(
        log.contains("notification failed; retrying"),
        "the dead receiver is retried: {log}"
    );
}
