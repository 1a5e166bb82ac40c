//! The agent's HTTP front door, end to end: the real binary on a real socket. Replayed and
//! stale `POST /sync` requests are refused; under a low open-file limit and a flood of idle
//! connections /healthz still answers, the agent still opens its compose files, and idle
//! connections are closed after the idle timeout.
//!
//! The watched root holds one project whose compose file does not parse: each reconcile opens
//! and reads it and fails before any engine call, so these tests need no images.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use composeops::agent::http::{sign, sign_timestamped};

const SECRET: &[u8] = b"front-door-secret";

/// The agent under test; killed on drop.
struct Agent {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `composeops agent` on a root with one broken project, through `wrapper` (e.g.
    /// `prlimit --nofile=64:64 --`) if given, and waits for /healthz.
    fn start(wrapper: &[&str], extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stacks");
        std::fs::create_dir_all(root.join("broken")).unwrap();
        std::fs::write(
            root.join("broken/compose.yaml"),
            "services:\n  web:\n    image: [unclosed\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.path().join("agent.log");
        let bin = env!("CARGO_BIN_EXE_composeops");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("agent")
            .arg(&root)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--listen", &addr, "--debounce", "200ms"])
            .args(["--retry-initial", "1h", "--retry-max", "1h"])
            .args(extra)
            .env(
                "COMPOSEOPS_WEBHOOK_SECRET",
                std::str::from_utf8(SECRET).unwrap(),
            )
            .env("COMPOSEOPS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let agent = Agent {
            child: cmd.spawn().expect("spawn composeops agent"),
            addr,
            log,
            _dir: dir,
        };
        agent.until("/healthz to answer", Duration::from_secs(20), || {
            request(&agent.addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.0 == 200)
        });
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}\n--- agent log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn broken(&self) -> serde_json::Value {
        let (code, body) = request(&self.addr, "GET", "/status", &[], b"").unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["projects"]["broken"].clone()
    }

    /// Runs of the broken project, once it is not running.
    fn settled_runs(&self) -> u64 {
        let mut runs = 0;
        self.until("the project to settle", Duration::from_secs(20), || {
            let p = self.broken();
            runs = p["runs"].as_u64().unwrap_or(0);
            runs > 0 && p["running"] == false
        });
        runs
    }

    fn sync(&self, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        request(&self.addr, "POST", "/sync", headers, body).expect("POST /sync")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`): status and body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    head += &format!("content-length: {}\r\n", body.len());
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    s.write_all(format!("{head}\r\n").as_bytes())?;
    s.write_all(body)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (status_line, rest) = raw.split_once("\r\n").unwrap_or((&raw, ""));
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {raw:?}")))?;
    let body = rest.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((code, body))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How long until the server closes `s` (EOF or reset), reading at most until `limit`.
fn time_to_close(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// A replayed delivery (same id, valid signature) is refused with 409 and runs nothing; a new
/// id is accepted. Timestamped signatures: accepted once, refused outside the 5-minute window
/// or when only the body is signed. Requests naming no delivery keep working as before.
#[test]
fn replayed_or_stale_sync_is_refused_and_a_new_delivery_is_accepted() {
    let agent = Agent::start(&[], &[]);
    let runs = agent.settled_runs();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let sig = sign(SECRET, body);
    let github = |id: &'static str| {
        [
            ("X-Hub-Signature-256", sig.clone()),
            ("X-GitHub-Delivery", id.to_string()),
        ]
    };
    let h = |pairs: &[(&'static str, String)]| -> Vec<(&'static str, String)> { pairs.to_vec() };
    let send = |pairs: &[(&'static str, String)]| {
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agent.sync(&refs, body)
    };

    let (code, reply) = send(&github("d-1"));
    assert_eq!(code, 202, "{reply}");
    assert!(reply.contains("\"delivery\":\"d-1\""), "{reply}");
    agent.until("the synced run", Duration::from_secs(20), || {
        agent.broken()["runs"].as_u64() > Some(runs)
    });
    let runs = agent.settled_runs();

    let (code, reply) = send(&github("d-1"));
    assert_eq!(code, 409, "{reply}");
    assert!(reply.contains("d-1") && reply.contains("replay"), "{reply}");
    // The same id under Gitea's and GitLab's header names is the same delivery.
    for name in [
        "X-Gitea-Delivery",
        "X-Gitlab-Event-UUID",
        "X-Composeops-Delivery",
    ] {
        let (code, reply) = send(&h(&[
            ("X-Hub-Signature-256", sig.clone()),
            (name, "d-1".into()),
        ]));
        assert_eq!(code, 409, "{name}: {reply}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(agent.settled_runs(), runs, "a refused replay ran");

    let (code, reply) = send(&github("d-2"));
    assert_eq!(code, 202, "{reply}");
    agent.until("the second synced run", Duration::from_secs(20), || {
        agent.broken()["runs"].as_u64() > Some(runs)
    });

    // Timestamped scheme: HMAC over "<timestamp>.<body>".
    let ts = unix_now().to_string();
    let stamped = |ts: &str, id: &str| {
        h(&[
            ("X-Composeops-Timestamp", ts.to_string()),
            (
                "X-Composeops-Signature-256",
                sign_timestamped(SECRET, ts, body),
            ),
            ("X-Composeops-Delivery", id.to_string()),
        ])
    };
    let (code, reply) = send(&stamped(&ts, "t-1"));
    assert_eq!(code, 202, "{reply}");
    // Replayed with a made-up delivery id: the signature itself was already accepted.
    let (code, reply) = send(&stamped(&ts, "t-forged"));
    assert_eq!(code, 409, "{reply}");
    let old = (unix_now() - 600).to_string();
    let (code, reply) = send(&stamped(&old, "t-2"));
    assert_eq!(code, 403, "{reply}");
    assert!(reply.contains("X-Composeops-Timestamp"), "{reply}");
    let future = (unix_now() + 600).to_string();
    assert_eq!(send(&stamped(&future, "t-3")).0, 403);
    // The timestamp with only a body signature: unsigned, so refused.
    let (code, reply) = send(&h(&[
        ("X-Composeops-Timestamp", unix_now().to_string()),
        ("X-Hub-Signature-256", sig.clone()),
    ]));
    assert_eq!(code, 401, "{reply}");
    // No delivery id, no timestamp: accepted each time, as before.
    for _ in 0..2 {
        let (code, reply) = send(&h(&[("X-Hub-Signature-256", sig.clone())]));
        assert_eq!(code, 202, "{reply}");
    }
    let log = agent.log();
    assert!(log.contains("POST /sync refused"), "{log}");
}

/// Under `prlimit --nofile=64:64`, 200 idle connections (three times the limit) neither stop
/// /healthz nor keep the agent from opening its compose file; an idle connection, new or
/// kept alive after a request, is closed after the idle timeout.
#[test]
fn idle_flood_under_a_low_open_file_limit_leaves_healthz_and_reconciles_working() {
    let idle = Duration::from_secs(3);
    let agent = Agent::start(
        &["prlimit", "--nofile=64:64", "--"],
        &["--http-idle-timeout", "3s"],
    );
    assert!(
        agent.log().contains("max_connections=16"),
        "cap not lowered to a quarter of 64:\n{}",
        agent.log()
    );
    let runs = agent.settled_runs();

    let mut flood: Vec<TcpStream> = (0..200)
        .map(|i| TcpStream::connect(&agent.addr).unwrap_or_else(|e| panic!("connect #{i}: {e}")))
        .collect();
    let start = Instant::now();
    let (code, body) = request(&agent.addr, "GET", "/healthz", &[], b"").expect("/healthz");
    let took = start.elapsed();
    assert_eq!(code, 200, "{body}");
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    assert_eq!(common::http_get(&agent.addr, "/metrics", None).0, 200);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id()))
        .unwrap()
        .count();
    assert!(fds < 60, "agent holds {fds} descriptors with 200 clients");

    // The agent still opens files: a signed sync reconciles, and the error is the YAML's.
    let (code, reply) = agent.sync(&[("X-Hub-Signature-256", &sign(SECRET, b"{}"))], b"{}");
    assert_eq!(code, 202, "{reply}");
    agent.until("a run after the flood", Duration::from_secs(20), || {
        agent.broken()["runs"].as_u64() > Some(runs)
    });
    agent.settled_runs();
    let err = agent.broken()["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.contains("compose.yaml") && !err.contains("Too many open files"),
        "{err}"
    );

    // Every flood connection is closed by the server: most were closed to make room, the
    // last ones by the idle timeout.
    let deadline = idle + Duration::from_secs(3);
    for (i, s) in flood.iter_mut().enumerate() {
        assert!(
            time_to_close(s, deadline).is_some(),
            "connection #{i} still open"
        );
    }
    drop(flood);

    // A quiet new connection is closed after the idle timeout, not before.
    let mut quiet = TcpStream::connect(&agent.addr).unwrap();
    let closed = time_to_close(&mut quiet, idle * 3).expect("idle connection never closed");
    assert!(
        closed >= idle - Duration::from_millis(300),
        "closed after {closed:?}"
    );

    // So is a kept-alive connection after its request was answered.
    let mut kept = TcpStream::connect(&agent.addr).unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", agent.addr);
    kept.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = kept.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = time_to_close(&mut kept, idle * 3).expect("kept-alive connection never closed");
    assert!(
        closed >= idle - Duration::from_millis(300),
        "closed after {closed:?}"
    );
}
