//! `composeops agent` end to end: the real binary, the real engine, the local registry, git
//! checkouts whose `origin` is a bare repository in a temp dir. Nothing is mocked.
//!
//! Run with `scripts/test.sh --test agent_e2e`. Figures (pull-to-converged time, idle RSS/CPU)
//! are printed with `--nocapture`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "test-webhook-secret";

/// A running agent; killed on drop if still running. Its stderr goes to `log`.
struct Agent {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Agent {
    fn start(path: &Path, state: &Path, extra: &[&str]) -> Agent {
        Self::start_env(path, state, extra, &[("COMPOSEOPS_WEBHOOK_SECRET", SECRET)])
    }

    fn start_env(path: &Path, state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = state.with_extension(format!("{port}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_composeops"));
        cmd.arg("agent")
            .arg(path)
            .arg("--state-dir")
            .arg(state)
            .args([
                "--listen",
                &addr,
                "--debounce",
                "300ms",
                "--retry-initial",
                "1s",
            ])
            .args(["--retry-max", "4s"])
            .args(extra)
            .env_remove("COMPOSEOPS_WEBHOOK_SECRET")
            .env("COMPOSEOPS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if !extra.contains(&"--wait-timeout") {
            cmd.args(["--wait-timeout", "20s"]);
        }
        let child = cmd.spawn().expect("spawn composeops agent");
        let a = Agent { child, log, addr };
        a.wait_for("the listener", Duration::from_secs(20), || {
            try_http(&a.addr, "GET", "/healthz", &[], b"").is_some_and(|r| r.0 == 200)
        });
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = http(&self.addr, "GET", "/status", &[], b"");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn project(&self, id: &str) -> serde_json::Value {
        self.status()["projects"][id].clone()
    }

    /// Polls `f` every 100ms; panics with the agent's log after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- agent log ---\n{}",
            self.log()
        );
    }

    /// Waits until project `id` has finished at least `runs` runs.
    fn wait_runs(&self, id: &str, runs: u64, timeout: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        self.wait_for(&format!("{id} to finish {runs} runs"), timeout, || {
            last = self.project(id);
            last["runs"].as_u64().unwrap_or(0) >= runs && last["running"] == false
        });
        last
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for exit; returns the status code.
    fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("agent did not exit within {timeout:?}\n{}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Minimal HTTP/1.1 client (127.0.0.1 only); `None` when the connection fails.
fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    assert!(addr.starts_with("127.0.0.1:"));
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp).to_string();
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((code, body))
}

fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    try_http(addr, method, path, headers, body).unwrap_or_else(|| panic!("{method} {path} failed"))
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

/// origin (bare) <- `work` (the agent's checkout) and `dev` (where "operators" push from).
struct Repos {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    dev: PathBuf,
    state: PathBuf,
}

impl Repos {
    /// The agent's id of the checkout's project: the working copy's directory name.
    fn project_id(&self) -> String {
        self.work.file_name().unwrap().to_string_lossy().to_string()
    }

    /// `files`: (path in repo, content) of the first commit.
    fn new(files: &[(&str, String)]) -> Repos {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin.git");
        let dev = tmp.path().join("dev");
        let work = tmp.path().join("work");
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
        for (p, c) in files {
            write(&dev.join(p), c);
        }
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "-qm", "first"]);
        git(&dev, &["push", "-q", "origin", "main"]);
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                "-b",
                "main",
                origin.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        let state = tmp.path().join("state");
        Repos {
            _tmp: tmp,
            work,
            dev,
            state,
        }
    }

    fn push(&self, files: &[(&str, String)], msg: &str) -> String {
        git(&self.dev, &["pull", "-q", "--ff-only", "origin", "main"]);
        for (p, c) in files {
            write(&self.dev.join(p), c);
        }
        git(&self.dev, &["add", "-A"]);
        git(&self.dev, &["commit", "-qm", msg]);
        git(&self.dev, &["push", "-q", "origin", "main"]);
        git(&self.dev, &["rev-parse", "HEAD"])
    }
}

fn write(p: &Path, c: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, c).unwrap();
}

/// A one-service compose file; `rev` goes into the environment so each revision differs.
fn compose(project: &str, image: &str, rev: &str) -> String {
    format!(
        "name: {project}\nservices:\n  web:\n    image: {image}\n    environment:\n      REV: \"{rev}\"\n    \
         healthcheck:\n      test: [\"CMD\", \"wget\", \"-qO-\", \"http://127.0.0.1:8080/\"]\n      \
         interval: 1s\n      timeout: 2s\n      retries: 2\n"
    )
}

/// Builds `variant` and pushes it as `<registry>/<project>/app:<tag>`; returns the reference.
fn app_image(guard: &mut ProjectGuard, project: &str, tag: &str, variant: &str) -> String {
    let r = format!("{}/{project}/app:{tag}", testbed().registry);
    build_app_image(&r, variant);
    push_image(&r);
    guard.image(r.clone());
    r
}

fn inspect(container: &str, format: &str) -> Option<String> {
    let out = docker_output(&["inspect", "-f", format, container]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `REV` of the running container `name`.
fn rev_of(name: &str) -> Option<String> {
    let env = inspect(
        name,
        "{{if .State.Running}}{{range .Config.Env}}{{println .}}{{end}}{{end}}",
    )?;
    env.lines()
        .find_map(|l| l.strip_prefix("REV="))
        .map(str::to_string)
}

fn variant_of(name: &str) -> Option<String> {
    inspect(
        name,
        "{{index .Config.Labels \"io.composeops.test.variant\"}}",
    )
}

fn project_containers(project: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn signed(body: &[u8]) -> String {
    composeops::agent::http::sign(SECRET.as_bytes(), body)
}

#[test]
fn agent_config_schema_is_up_to_date() {
    let generated = composeops::agent::config::json_schema();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/agent-config.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "{} is out of date: regenerate it with `composeops agent --print-config-schema > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn example_config_file_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd/agent.toml");
    let c = composeops::agent::AgentConfig::from_file(&p).unwrap();
    assert!(c.path.is_some() && c.git_pull.is_some());
}

/// First revision applied; a pushed commit pulled and converged (timed); a local uncommitted
/// edit converged through file events.
#[test]
fn applies_first_revision_then_pushed_commit_then_local_edit() {
    let name = unique_project("agent-git");
    let mut guard = ProjectGuard::new(&name);
    let image = app_image(&mut guard, &name, "v1", "v1");
    let repos = Repos::new(&[("compose.yaml", compose(&name, &image, "1"))]);
    let agent = Agent::start(&repos.work, &repos.state, &["--git-pull", "1s"]);
    let web = format!("{name}-web-1");
    let id = repos.project_id();

    agent.wait_for("first revision", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("1")
    });
    let st = agent.wait_runs(&id, 1, Duration::from_secs(30));
    assert_eq!(st["last_result"], "success", "{st}");
    let first = git(&repos.work, &["rev-parse", "HEAD"]);
    assert_eq!(st["revision_applied"], first.as_str(), "{st}");
    // The container records the revision it was deployed from.
    assert_eq!(
        inspect(&web, "{{index .Config.Labels \"io.composeops.revision\"}}").as_deref(),
        Some(first.as_str())
    );

    let pushed = repos.push(&[("compose.yaml", compose(&name, &image, "2"))], "rev 2");
    let t = Instant::now();
    agent.wait_for("pushed commit", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("2")
    });
    let took = t.elapsed();
    eprintln!(
        "FIGURE push-to-converged: {:.1}s (git-pull 1s, health interval 1s)",
        took.as_secs_f64()
    );
    assert_eq!(git(&repos.work, &["rev-parse", "HEAD"]), pushed);
    agent.wait_for(
        "status to show the pushed revision",
        Duration::from_secs(20),
        || agent.project(&id)["revision_applied"] == pushed.as_str(),
    );

    // Local edit, no commit: converged from file events; the checkout is left dirty.
    write(
        &repos.work.join("compose.yaml"),
        &compose(&name, &image, "3-local"),
    );
    let t = Instant::now();
    agent.wait_for("local edit", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("3-local")
    });
    eprintln!(
        "FIGURE local-edit-to-converged: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    agent.wait_for("dirty revision in status", Duration::from_secs(20), || {
        agent.project(&id)["revision_applied"]
            .as_str()
            .is_some_and(|r| r == format!("{pushed}+dirty"))
    });
    assert!(git(&repos.work, &["status", "--porcelain"]).contains("compose.yaml"));
    assert_eq!(project_containers(&name), vec![web.clone()]);

    // Diverged: a local commit and a different pushed commit. Reported, left alone.
    git(&repos.work, &["commit", "-qam", "local change"]);
    let local_head = git(&repos.work, &["rev-parse", "HEAD"]);
    repos.push(
        &[("compose.yaml", compose(&name, &image, "4-remote"))],
        "rev 4",
    );
    agent.wait_for("the diverged report", Duration::from_secs(30), || {
        agent.status()["git"]["result"] == "diverged"
    });
    assert_eq!(git(&repos.work, &["rev-parse", "HEAD"]), local_head);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rev_of(&web).as_deref(), Some("3-local"));
    assert!(
        agent.log().contains("checkout left as it is"),
        "{}",
        agent.log()
    );
}

/// One project with a broken compose file, one good: the good one converges, the broken one
/// reports its error; the HTTP endpoints answer; POST /sync needs a valid signature.
#[test]
fn broken_project_does_not_block_the_other_and_http_endpoints() {
    let good = unique_project("agent-good");
    let mut guard = ProjectGuard::new(&good);
    let image = app_image(&mut guard, &good, "v1", "v1");
    let missing = format!("{}/{good}/missing:v1", testbed().registry);
    let repos = Repos::new(&[
        ("good/compose.yaml", compose(&good, &image, "1")),
        (
            "noimage/compose.yaml",
            compose(&format!("{good}-x"), &missing, "1"),
        ),
        (
            "bad/compose.yaml",
            "services:\n  web:\n    image: [unclosed\n".to_string(),
        ),
    ]);
    let agent = Agent::start(&repos.work, &repos.state, &[]);
    let web = format!("{good}-web-1");
    agent.wait_for("good project", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("1")
    });
    let bad = agent.wait_runs("bad", 1, Duration::from_secs(30));
    assert_eq!(bad["last_result"], "error", "{bad}");
    assert!(
        bad["last_error"].as_str().unwrap().contains("compose.yaml"),
        "{bad}"
    );
    let noimage = agent.wait_runs("noimage", 1, Duration::from_secs(30));
    assert_eq!(noimage["last_result"], "error", "{noimage}");
    assert!(
        noimage["last_error"].as_str().unwrap().contains("missing"),
        "{noimage}"
    );
    let st = agent.wait_runs("good", 1, Duration::from_secs(30));
    assert_eq!(st["last_result"], "success", "{st}");
    assert_eq!(st["pending_changes"], serde_json::json!([]), "{st}");

    // Endpoints.
    assert_eq!(http(&agent.addr, "GET", "/healthz", &[], b"").0, 200);
    let (code, metrics) = http(&agent.addr, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    for needle in [
        "composeops_reconciles_total{project=\"good\",result=\"success\"}",
        "composeops_reconciles_total{project=\"bad\",result=\"error\"}",
        "composeops_reconcile_duration_seconds_bucket",
        "composeops_last_success_timestamp_seconds{project=\"good\"}",
        "composeops_services_out_of_date",
        "composeops_rollbacks",
        "composeops_registry_errors_total{project=\"noimage\"} ",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    assert!(
        !metrics.contains("composeops_registry_errors_total{project=\"noimage\"} 0"),
        "{metrics}"
    );

    // POST /sync: unsigned and wrongly signed -> 401 and no run; signed -> a run.
    let runs = agent.project("good")["runs"].as_u64().unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#;
    assert_eq!(http(&agent.addr, "POST", "/sync", &[], body).0, 401);
    let wrong = composeops::agent::http::sign(b"not-the-secret", body);
    assert_eq!(
        http(
            &agent.addr,
            "POST",
            "/sync",
            &[("X-Hub-Signature-256", &wrong)],
            body
        )
        .0,
        401
    );
    let tampered = signed(b"another body");
    assert_eq!(
        http(
            &agent.addr,
            "POST",
            "/sync",
            &[("X-Hub-Signature-256", &tampered)],
            body
        )
        .0,
        401
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        agent.project("good")["runs"].as_u64().unwrap(),
        runs,
        "a refused sync ran"
    );
    let (code, reply) = http(
        &agent.addr,
        "POST",
        "/sync",
        &[("X-Hub-Signature-256", &signed(body))],
        body,
    );
    assert_eq!(code, 202, "{reply}");
    agent.wait_runs("good", runs + 1, Duration::from_secs(30));
    assert!(agent.log().contains("reasons=webhook"), "{}", agent.log());
}

/// Two agents on one state dir: the second refuses. Without a secret, POST /sync is refused.
#[test]
fn second_agent_refuses_and_sync_without_secret_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("stacks");
    std::fs::create_dir(&root).unwrap();
    let state = tmp.path().join("state");
    let agent = Agent::start_env(&root, &state, &[], &[]);
    let body = b"{}";
    let (code, reply) = http(
        &agent.addr,
        "POST",
        "/sync",
        &[("X-Hub-Signature-256", &signed(body))],
        body,
    );
    assert_eq!(code, 403, "{reply}");
    assert!(reply.contains("COMPOSEOPS_WEBHOOK_SECRET"), "{reply}");

    // The second one reads PATH and the state dir from a config file (relative to the file).
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(
        &cfg,
        "path = \"stacks\"\nstate-dir = \"state\"\nlog-format = \"json\"\n",
    )
    .unwrap();
    let out = composeops()
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another composeops agent is already running"),
        "{err}"
    );
    assert!(err.contains(&agent.child.id().to_string()), "{err}");
}

/// Under systemd (Type=notify): READY=1 once up, WATCHDOG=1 pings at a third of
/// WatchdogSec, STOPPING=1 on SIGTERM, then exit 0. The notify socket is a datagram socket here.
#[test]
fn systemd_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("stacks");
    std::fs::create_dir(&root).unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut agent = Agent::start_env(
        &root,
        &tmp.path().join("state"),
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // WatchdogSec=3s: pings every second.
            ("WATCHDOG_USEC", "3000000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    while got.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{got:?}\n{}",
            agent.log()
        );
        let n = sock.recv(&mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(got[0].contains("READY=1"), "{got:?}");
    agent.signal("TERM");
    let n = sock.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), 0);
}

/// SIGTERM while a new container is waiting for health: the agent finishes the step, exits 0,
/// and the engine is left consistent (one container, under its own name, and nothing to plan).
#[test]
fn sigterm_during_update_exits_zero_after_the_step() {
    let name = unique_project("agent-term");
    let mut guard = ProjectGuard::new(&name);
    let image = app_image(&mut guard, &name, "v1", "v1");
    // A health check that takes ~2s makes the health wait long enough to signal into.
    let slow = |rev: &str| {
        compose(&name, &image, rev)
            .replace(
                "[\"CMD\", \"wget\", \"-qO-\", \"http://127.0.0.1:8080/\"]",
                "[\"CMD-SHELL\", \"sleep 2; wget -qO- http://127.0.0.1:8080/\"]",
            )
            .replace("timeout: 2s", "timeout: 5s")
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    write(&dir.join("compose.yaml"), &slow("1"));
    let state = tmp.path().join("state");
    let mut agent = Agent::start(&dir, &state, &[]);
    let web = format!("{name}-web-1");
    agent.wait_for("first apply", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("1")
    });
    agent.wait_runs("web", 1, Duration::from_secs(30));
    let before = agent.log().matches("waiting for").count();
    write(&dir.join("compose.yaml"), &slow("2"));
    agent.wait_for(
        "the health wait of the update",
        Duration::from_secs(30),
        || agent.log().matches("waiting for").count() > before,
    );
    agent.signal("TERM");
    let code = agent.wait_exit(Duration::from_secs(60));
    let log = agent.log();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("agent stopped"), "{log}");
    // The step finished: the new container runs under its own name, nothing set aside.
    assert_eq!(project_containers(&name), vec![web.clone()], "{log}");
    assert_eq!(rev_of(&web).as_deref(), Some("2"), "{log}");
    // The next run finds nothing to do.
    let out = composeops()
        .args([
            "plan",
            "--detailed-exitcode",
            "--state-dir",
            state.to_str().unwrap(),
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A tiny HTTP receiver for --notify-url: stores each request body, answers 200.
fn notify_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                g.lock().unwrap().push(v);
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A pushed revision whose new image never becomes healthy is rolled back once and not retried
/// (SIGHUP, a signed sync, a restart); the next pushed revision is applied. Notifications are
/// posted for the rollback (with the failed container's log lines) and the apply.
#[test]
fn rolled_back_revision_is_not_retried_and_next_revision_is_applied() {
    let name = unique_project("agent-rb");
    let mut guard = ProjectGuard::new(&name);
    let good = app_image(&mut guard, &name, "v1", "v1");
    let bad = app_image(&mut guard, &name, "unhealthy", "unhealthy");
    let (url, events) = notify_receiver();
    let repos = Repos::new(&[("compose.yaml", compose(&name, &good, "1"))]);
    let id = repos.project_id();
    let args = [
        "--git-pull",
        "1s",
        "--notify-url",
        url.as_str(),
        "--wait-timeout",
        "8s",
        "--log-format",
        "json",
    ];
    let mut agent = Agent::start(&repos.work, &repos.state, &args);
    let web = format!("{name}-web-1");
    agent.wait_for("first revision", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("1")
    });
    let original_id = inspect(&web, "{{.Id}}").unwrap();

    let bad_rev = repos.push(
        &[("compose.yaml", compose(&name, &bad, "2-bad"))],
        "bad image",
    );
    agent.wait_for("the rollback", Duration::from_secs(90), || {
        agent.project(&id)["last_result"] == "rolled_back"
    });
    let st = agent.project(&id);
    assert_eq!(
        st["rolled_back_state"]["revision"],
        bad_rev.as_str(),
        "{st}"
    );
    assert!(
        !st["pending_changes"].as_array().unwrap().is_empty(),
        "{st}"
    );
    // The old container is back, same id, still v1.
    assert_eq!(inspect(&web, "{{.Id}}").unwrap(), original_id);
    assert_eq!(rev_of(&web).as_deref(), Some("1"));
    let (_, metrics) = http(&agent.addr, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains(&format!("composeops_rollbacks_total{{project=\"{id}\"}} 1")),
        "{metrics}"
    );

    // Later wake-ups leave it alone: SIGHUP, a signed (not forced) sync.
    let runs = agent.project(&id)["runs"].as_u64().unwrap();
    agent.signal("HUP");
    agent.wait_runs(&id, runs + 1, Duration::from_secs(30));
    let body = b"{}";
    assert_eq!(
        http(
            &agent.addr,
            "POST",
            "/sync",
            &[("X-Hub-Signature-256", &signed(body))],
            body
        )
        .0,
        202
    );
    let st = agent.wait_runs(&id, runs + 2, Duration::from_secs(30));
    assert_eq!(st["last_result"], "skipped_rolled_back", "{st}");
    assert_eq!(inspect(&web, "{{.Id}}").unwrap(), original_id);
    let (_, metrics) = http(&agent.addr, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains(&format!(
            "composeops_services_out_of_date{{project=\"{id}\"}} 1"
        )),
        "{metrics}"
    );
    // ... and so does a restart (the memory is in the state dir).
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(Duration::from_secs(60)), 0);
    let agent = Agent::start(&repos.work, &repos.state, &args);
    let st = agent.wait_runs(&id, 1, Duration::from_secs(60));
    assert_eq!(st["last_result"], "skipped_rolled_back", "{st}");
    assert_eq!(inspect(&web, "{{.Id}}").unwrap(), original_id);
    let attempts = agent.log().matches("creating ").count();
    assert_eq!(
        attempts,
        0,
        "restarted agent retried the rolled-back revision\n{}",
        agent.log()
    );

    // A signed POST /sync?force=1 tries it once more (rolled back again, old container kept).
    let runs = agent.project(&id)["runs"].as_u64().unwrap();
    let (code, reply) = http(
        &agent.addr,
        "POST",
        "/sync?force=1",
        &[("X-Hub-Signature-256", &signed(body))],
        body,
    );
    assert_eq!(code, 202, "{reply}");
    let st = agent.wait_runs(&id, runs + 1, Duration::from_secs(90));
    assert_eq!(st["last_result"], "rolled_back", "{st}");
    assert!(agent.log().contains("creating "), "{}", agent.log());
    assert_eq!(inspect(&web, "{{.Id}}").unwrap(), original_id);

    // The next revision is applied.
    repos.push(&[("compose.yaml", compose(&name, &good, "3"))], "fix");
    agent.wait_for("the next revision", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("3")
    });
    agent.wait_for("success status", Duration::from_secs(20), || {
        agent.project(&id)["last_result"] == "success"
    });
    assert!(agent.project(&id)["rolled_back_state"].is_null());

    // Notifications: one rollback (with the failed container's output), one apply.
    agent.wait_for("notifications", Duration::from_secs(20), || {
        let ev = events.lock().unwrap();
        ev.iter().any(|e| e["event"] == "rollback")
            && ev.iter().any(|e| {
                e["event"] == "apply"
                    && e["revision"] != serde_json::Value::Null
                    && e["plan"].as_array().is_some_and(|p| !p.is_empty())
                    && e["services"][0]["result"] == "updated"
            })
    });
    // --log-format json: every line is JSON, apply's progress included.
    let log = agent.log();
    let not_json: Vec<&str> = log
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(
        not_json.is_empty(),
        "lines that are not JSON: {not_json:#?}"
    );
    assert!(
        log.contains("\"target\":\"composeops::progress\""),
        "apply's progress is logged as records: {log}"
    );
    // JSON logs carry the revision, the plan and each service's outcome.
    let json: Vec<serde_json::Value> = agent
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let applied = json
        .iter()
        .find(|l| l["message"] == "applied")
        .unwrap_or_else(|| panic!("no JSON 'applied' line in\n{}", agent.log()));
    assert!(
        applied["revision"].as_str().is_some_and(|r| r.len() == 40),
        "{applied}"
    );
    assert!(
        applied["plan"].as_str().unwrap().contains("recreate web"),
        "{applied}"
    );
    assert!(
        json.iter()
            .any(|l| l["message"] == "service outcome" && l["service"] == "web"),
        "{}",
        agent.log()
    );
    let ev = events.lock().unwrap();
    let rb: Vec<_> = ev.iter().filter(|e| e["event"] == "rollback").collect();
    // The first rollback and the forced attempt.
    assert_eq!(rb.len(), 2, "{ev:?}");
    assert_eq!(rb[0]["revision"], bad_rev.as_str());
    assert_eq!(rb[0]["services"][0]["result"], "rolled_back", "{:?}", rb[0]);
    assert!(
        rb[0]["services"][0]["logs"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "{:?}",
        rb[0]
    );
}

/// `--check-images`: a new image pushed under the watched tag is deployed at the next check;
/// with `--locked` (composeops.lock pins v1) it is not.
#[test]
fn image_check_deploys_new_digest_but_not_when_locked() {
    let free = unique_project("agent-img");
    let locked = unique_project("agent-lck");
    let mut g1 = ProjectGuard::new(&free);
    let mut g2 = ProjectGuard::new(&locked);
    let free_img = app_image(&mut g1, &free, "latest", "v1");
    let locked_img = app_image(&mut g2, &locked, "latest", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let free_dir = tmp.path().join("free");
    let locked_dir = tmp.path().join("locked");
    write(
        &free_dir.join("compose.yaml"),
        &compose(&free, &free_img, "1"),
    );
    write(
        &locked_dir.join("compose.yaml"),
        &compose(&locked, &locked_img, "1"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_composeops"))
        .arg("lock")
        .current_dir(&locked_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(locked_dir.join("composeops.lock").exists());

    let a1 = Agent::start(&free_dir, &tmp.path().join("s1"), &["--check-images", "2s"]);
    let a2 = Agent::start(
        &locked_dir,
        &tmp.path().join("s2"),
        &["--check-images", "2s", "--locked"],
    );
    let (w1, w2) = (format!("{free}-web-1"), format!("{locked}-web-1"));
    a1.wait_for("v1", Duration::from_secs(60), || {
        variant_of(&w1).as_deref() == Some("v1")
    });
    a2.wait_for("v1 (locked)", Duration::from_secs(60), || {
        variant_of(&w2).as_deref() == Some("v1")
    });

    // Same tags, new images.
    build_app_image(&free_img, "v2");
    push_image(&free_img);
    build_app_image(&locked_img, "v2");
    push_image(&locked_img);
    let t = Instant::now();
    a1.wait_for("v2 at an image check", Duration::from_secs(60), || {
        variant_of(&w1).as_deref() == Some("v2")
    });
    eprintln!(
        "FIGURE image-push-to-converged: {:.1}s (check every 2s)",
        t.elapsed().as_secs_f64()
    );
    // Several image checks later, the locked project still runs v1.
    let runs = a2.project("locked")["runs"].as_u64().unwrap();
    a2.wait_runs("locked", runs + 2, Duration::from_secs(30));
    assert_eq!(variant_of(&w2).as_deref(), Some("v1"), "{}", a2.log());
    assert_eq!(a2.project("locked")["last_result"], "success");
}

/// `DAY HH:MM-HH:MM` on the wall clock `now`: from `start` minutes after it (floored to the
/// minute), `minutes` long; the DAY is the start's, so a window that crosses midnight works.
/// Returns the spec and its start (wall time).
fn window_from(
    now: chrono::NaiveDateTime,
    start: i64,
    minutes: i64,
) -> (String, chrono::NaiveDateTime) {
    use chrono::Timelike;
    let from = (now + chrono::TimeDelta::minutes(start))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let to = from + chrono::TimeDelta::minutes(minutes);
    let spec = format!(
        "{} {}-{}",
        from.format("%a"),
        from.format("%H:%M"),
        to.format("%H:%M")
    );
    (spec, from)
}

/// `--window` closed now (it opens in three hours, in a zone 5:45 ahead of UTC): the agent
/// plans a pushed change and shows it waiting in /status and /metrics, with the opening time,
/// and leaves the container alone, even on a signed sync; a signed `POST /sync?force=1`
/// applies it at once.
#[test]
fn outside_the_window_a_change_waits_and_a_forced_sync_applies_it() {
    use chrono::TimeZone;
    let name = unique_project("agent-win");
    let mut guard = ProjectGuard::new(&name);
    let image = app_image(&mut guard, &name, "v1", "v1");
    let repos = Repos::new(&[("compose.yaml", compose(&name, &image, "1"))]);
    let id = repos.project_id();
    let web = format!("{name}-web-1");
    // Revision 1 runs already (an operator's apply): the agent starts in sync.
    let out = composeops()
        .current_dir(&repos.work)
        .args(["apply", "--wait-timeout", "20s", "--state-dir"])
        .arg(&repos.state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rev_of(&web).as_deref(), Some("1"));
    let original = inspect(&web, "{{.Id}}").unwrap();

    let zone = chrono_tz::Asia::Kathmandu;
    let (spec, from) = window_from(
        chrono::Utc::now().with_timezone(&zone).naive_local(),
        180,
        60,
    );
    let spec = format!("{spec} Asia/Kathmandu");
    let opens = zone.from_local_datetime(&from).single().unwrap().to_utc();
    let opens_text = opens.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let agent = Agent::start(
        &repos.work,
        &repos.state,
        &["--git-pull", "1s", "--window", &spec],
    );
    let st = agent.wait_runs(&id, 1, Duration::from_secs(30));
    assert_eq!(st["last_result"], "success", "{st}");
    assert_eq!(st["waiting_for_window"], false, "{st}");
    let windows = agent.status()["windows"].clone();
    assert_eq!(windows["specs"][0], spec.as_str(), "{windows}");
    assert_eq!(windows["open"], false, "{windows}");
    assert_eq!(windows["next_opening"], opens_text.as_str(), "{windows}");

    // A pushed change: pulled and planned, not applied.
    let pushed = repos.push(&[("compose.yaml", compose(&name, &image, "2"))], "rev 2");
    agent.wait_for(
        "the change to wait for the window",
        Duration::from_secs(30),
        || {
            let p = agent.project(&id);
            p["last_result"] == "waiting_for_window" && p["revision_desired"] == pushed.as_str()
        },
    );
    let st = agent.project(&id);
    assert_eq!(st["waiting_for_window"], true, "{st}");
    assert_eq!(st["next_window"], opens_text.as_str(), "{st}");
    let pending: Vec<&str> = (st["pending_changes"].as_array().unwrap().iter())
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        pending.iter().any(|l| l.starts_with("recreate web")),
        "{st}"
    );
    assert_ne!(st["revision_applied"], pushed.as_str(), "{st}");
    let (_, metrics) = http(&agent.addr, "GET", "/metrics", &[], b"");
    for line in [
        format!("composeops_waiting_for_window{{project=\"{id}\"}} 1"),
        format!(
            "composeops_next_window_timestamp_seconds{{project=\"{id}\"}} {}",
            opens.timestamp()
        ),
        format!("composeops_services_out_of_date{{project=\"{id}\"}} 1"),
        format!("composeops_reconciles_total{{project=\"{id}\",result=\"waiting_for_window\"}}"),
    ] {
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    // A signed sync that is not forced plans again, and still waits.
    let runs = st["runs"].as_u64().unwrap();
    let body = b"{}";
    let sig = signed(body);
    let (code, reply) = http(
        &agent.addr,
        "POST",
        "/sync",
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "w-1")],
        body,
    );
    assert_eq!(code, 202, "{reply}");
    let st = agent.wait_runs(&id, runs + 1, Duration::from_secs(30));
    assert_eq!(st["last_result"], "waiting_for_window", "{st}");
    assert_eq!(rev_of(&web).as_deref(), Some("1"));
    assert_eq!(inspect(&web, "{{.Id}}").unwrap(), original);
    assert!(!agent.log().contains("creating "), "{}", agent.log());

    // Forced: applied now.
    let (code, reply) = http(
        &agent.addr,
        "POST",
        "/sync?force=1",
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "w-2")],
        body,
    );
    assert_eq!(code, 202, "{reply}");
    agent.wait_for("the forced apply", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("2")
    });
    agent.wait_for(
        "status after the forced apply",
        Duration::from_secs(20),
        || {
            let p = agent.project(&id);
            p["last_result"] == "success" && p["revision_applied"] == pushed.as_str()
        },
    );
    let st = agent.project(&id);
    assert_eq!(st["waiting_for_window"], false, "{st}");
    assert!(st["next_window"].is_null(), "{st}");
    assert!(st["pending_changes"].as_array().unwrap().is_empty(), "{st}");
    let (_, metrics) = http(&agent.addr, "GET", "/metrics", &[], b"");
    let line = format!("composeops_waiting_for_window{{project=\"{id}\"}} 0");
    assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    assert!(
        agent
            .log()
            .contains("forced: applying outside the maintenance windows"),
        "{}",
        agent.log()
    );
}

/// `--window` open now (host local time, no zone): applied as without one. A window that does
/// not parse stops the agent at start, naming the flag and the text.
#[test]
fn inside_the_window_changes_apply_as_usual_and_a_bad_window_is_refused() {
    let name = unique_project("agent-winopen");
    let mut guard = ProjectGuard::new(&name);
    let image = app_image(&mut guard, &name, "v1", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("stack");
    write(&dir.join("compose.yaml"), &compose(&name, &image, "1"));
    let web = format!("{name}-web-1");

    let out = composeops()
        .arg("agent")
        .arg(&dir)
        .arg("--state-dir")
        .arg(tmp.path().join("bad"))
        .args(["--window", "Sat 02:00-04:00", "--window", "Fri 23:00-25:00"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--window \"Fri 23:00-25:00\": \"25:00\" is not a time of day"),
        "{err}"
    );
    assert!(project_containers(&name).is_empty());

    let (spec, _) = window_from(chrono::Local::now().naive_local(), -30, 60);
    let agent = Agent::start(&dir, &tmp.path().join("state"), &["--window", &spec]);
    agent.wait_for("the first revision", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("1")
    });
    let st = agent.wait_runs("stack", 1, Duration::from_secs(30));
    assert_eq!(st["last_result"], "success", "{st}");
    assert_eq!(st["waiting_for_window"], false, "{st}");
    let windows = agent.status()["windows"].clone();
    assert_eq!(windows["open"], true, "{windows}");
    assert!(windows["next_opening"].is_null(), "{windows}");
    // A local edit, through file events.
    write(&dir.join("compose.yaml"), &compose(&name, &image, "2"));
    agent.wait_for("the edit", Duration::from_secs(60), || {
        rev_of(&web).as_deref() == Some("2")
    });
}

/// Idle cost with two projects over a minute (ignored by default: it takes a minute).
/// `scripts/test.sh --test agent_e2e -- --ignored --nocapture idle`.
#[test]
#[ignore]
fn idle_rss_and_cpu_with_two_projects() {
    let p1 = unique_project("agent-idle");
    let p2 = unique_project("agent-idle");
    let mut g1 = ProjectGuard::new(&p1);
    let _g2 = ProjectGuard::new(&p2);
    let img = app_image(&mut g1, &p1, "v1", "v1");
    let repos = Repos::new(&[
        ("a/compose.yaml", compose(&p1, &img, "1")),
        ("b/compose.yaml", compose(&p2, &img, "1")),
    ]);
    let agent = Agent::start(
        &repos.work,
        &repos.state,
        &["--git-pull", "30s", "--check-images", "1h"],
    );
    agent.wait_runs("a", 1, Duration::from_secs(60));
    agent.wait_runs("b", 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    let pid = agent.child.id();
    let ticks = || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = s.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap()
            .to_string()
    };
    let (t0, start) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(60));
    let (t1, secs) = (ticks(), start.elapsed().as_secs_f64());
    let hz = 100.0;
    eprintln!(
        "FIGURE idle over {secs:.0}s, two projects (git-pull 30s): {}, CPU {:.2}s ({:.3}%)",
        rss(),
        (t1 - t0) as f64 / hz,
        (t1 - t0) as f64 / hz / secs * 100.0
    );
}

/// `apply --json`'s plan as action lines and its outcomes, with the project name replaced by
/// `P`, so two projects' runs compare.
fn cli_run(
    dir: &Path,
    state: &Path,
    project: &str,
) -> (i32, Vec<String>, Vec<(String, String)>, String) {
    let out = composeops()
        .current_dir(dir)
        .args(["apply", "--json", "--wait-timeout", "20s", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("apply --json: {e}\n{err}"));
    let plan: composeops::plan::Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    let lines = plan
        .actions()
        .iter()
        .map(|l| l.replace(project, "P"))
        .collect();
    let outcomes = v["report"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let o = s["outcome"].as_str().unwrap().to_string();
            (s["service"].as_str().unwrap().to_string(), o)
        })
        .collect();
    (out.status.code().unwrap_or(-1), lines, outcomes, err)
}

/// The agent's last plan lines and outcomes in the CLI's words (created/updated: applied).
fn agent_run(status: &serde_json::Value, project: &str) -> (Vec<String>, Vec<(String, String)>) {
    let lines = status["last_plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().replace(project, "P"))
        .collect();
    let outcomes = status["last_outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let o = match s["result"].as_str().unwrap() {
                "created" | "updated" => "applied",
                "rolled_back" => "rolled-back",
                other => other,
            };
            (s["service"].as_str().unwrap().to_string(), o.to_string())
        })
        .collect();
    (lines, outcomes)
}

/// The CLI and the agent reach their decisions through the same pipeline: the same scenarios
/// (first deploy, a changed environment value, nothing to do, a release that fails) give the
/// same plans and outcomes. The images' registry does not answer throughout: both warn and
/// use the local image, so a plain config change still converges.
#[test]
fn cli_and_agent_make_the_same_plans_and_outcomes_with_the_registry_down() {
    let base = unique_project("same");
    let (pc, pa) = (format!("{base}c"), format!("{base}a"));
    let mut guard = ProjectGuard::new(pc.clone());
    let _guard_a = ProjectGuard::new(pa.clone());
    // Images under a registry that refuses connections (port 9): lookups fail, pulls too.
    let good = format!("127.0.0.1:9/{base}/app:1");
    let broken = format!("127.0.0.1:9/{base}/app:broken");
    build_app_image(&good, "v1");
    build_app_image(&broken, "broken");
    guard.image(good.clone()).image(broken.clone());
    let tmp = tempfile::tempdir().unwrap();
    let (cli_dir, agent_dir) = (tmp.path().join("cli"), tmp.path().join("agent"));
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let stack = |name: &str, image: &str, rev: &str| {
        format!(
            "name: {name}\nservices:\n  db:\n    image: {good}\n    command: [\"sleep\", \"3600\"]\n  \
             web:\n    image: {image}\n    depends_on: [db]\n    environment:\n      REV: \"{rev}\"\n"
        )
    };
    let scenarios = [
        ("first deploy", good.as_str(), "one"),
        ("changed environment", good.as_str(), "two"),
        ("nothing to do", good.as_str(), "two"),
        ("failing release", broken.as_str(), "three"),
    ];
    write(&cli_dir.join("compose.yaml"), &stack(&pc, &good, "one"));
    write(&agent_dir.join("compose.yaml"), &stack(&pa, &good, "one"));
    let agent = Agent::start(&agent_dir, &state.join("agent"), &["--wait-timeout", "20s"]);
    for (i, (what, image, rev)) in scenarios.iter().enumerate() {
        write(&cli_dir.join("compose.yaml"), &stack(&pc, image, rev));
        let (code, cli_lines, cli_outcomes, err) = cli_run(&cli_dir, &state.join("cli"), &pc);
        assert!(err.contains("using the local image"), "{what}: {err}");
        if i > 0 {
            // A file event wakes the agent.
            write(&agent_dir.join("compose.yaml"), &stack(&pa, image, rev));
        }
        let st = agent.wait_runs("agent", i as u64 + 1, Duration::from_secs(60));
        let (agent_lines, agent_outcomes) = agent_run(&st, &pa);
        assert_eq!(
            agent_lines,
            cli_lines,
            "{what}: plans differ\n{}",
            agent.log()
        );
        assert_eq!(
            agent_outcomes,
            cli_outcomes,
            "{what}: outcomes differ\n{}",
            agent.log()
        );
        let expected_code = if *image == broken { 2 } else { 0 };
        assert_eq!(code, expected_code, "{what}: {err}");
        let expected_result = if *image == broken {
            "rolled_back"
        } else {
            "success"
        };
        assert_eq!(st["last_result"], expected_result, "{what}: {st}");
    }
    assert!(
        agent.log().contains("using the local image"),
        "{}",
        agent.log()
    );
    // After the failed release both run the previous revision.
    assert_eq!(rev_of(&format!("{pc}-web-1")).as_deref(), Some("two"));
    assert_eq!(rev_of(&format!("{pa}-web-1")).as_deref(), Some("two"));
}
