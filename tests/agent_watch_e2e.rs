//! `composeops agent` file events end to end: the real binary and the real engine. A project is
//! woken by changes to the files it reads, not by its own containers writing to a bind mount
//! inside its directory.
//!
//! Run with `scripts/test.sh --test agent_watch_e2e`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running agent on PATH with a short debounce; killed on drop. Its stderr goes to `log`.
struct Agent {
    child: Child,
    log: tempfile::NamedTempFile,
    addr: String,
}

impl Agent {
    fn start(path: &Path, state: &Path) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_composeops"))
            .arg("agent")
            .arg(path)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &addr, "--debounce", "300ms"])
            .args(["--retry-initial", "1s", "--wait-timeout", "20s"])
            .env("COMPOSEOPS_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn composeops agent");
        let a = Agent { child, log, addr };
        a.wait_for("the listener", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&a.addr).is_ok()
        });
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn project(&self, id: &str) -> serde_json::Value {
        let (code, body) = http_get(&self.addr, "/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["projects"][id].clone()
    }

    /// Finished runs of project `id` (0 while it runs or before it is known).
    fn runs(&self, id: &str) -> u64 {
        let p = self.project(id);
        p["runs"].as_u64().unwrap_or(0)
    }

    /// Polls `f` every 100ms; panics with the agent's log after `timeout`.
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

/// A service that writes the date to `./data/t` once a second; `rev` makes revisions differ.
fn writer(project: &str, rev: &str) -> String {
    format!(
        "name: {project}\nservices:\n  writer:\n    image: {image}\n    pull_policy: never\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do date > /data/t; sleep 1; done\"]\n    \
         environment:\n      REV: \"{rev}\"\n    volumes: [\"./data:/data\"]\n",
        image = testbed().base_image
    )
}

fn container(name: &str, format: &str) -> Option<String> {
    let out = docker_output(&["inspect", "-f", format, name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The bind-mounted data directory changes every second and never wakes the project; an edit
/// of its compose file does; a compose file in a new directory is still a new project.
#[test]
fn writes_under_a_bind_mount_do_not_wake_the_project_but_compose_edits_do() {
    let name = unique_project("agent-watch");
    let _guard = ProjectGuard::new(&name);
    let second = format!("{name}-b");
    let _guard_b = ProjectGuard::new(&second);
    let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dir = root.path().join("web");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), writer(&name, "1")).unwrap();
    let agent = Agent::start(root.path(), state.path());
    let ctr = format!("{name}-writer-1");

    agent.wait_for("first run", Duration::from_secs(60), || {
        agent.runs("web") >= 1 && agent.project("web")["running"] == false
    });
    assert_eq!(
        agent.project("web")["last_result"],
        "success",
        "{}",
        agent.log()
    );
    let first_id = container(&ctr, "{{.Id}}").expect("the writer container exists");
    let t = dir.join("data/t");
    agent.wait_for(
        "the container's first write",
        Duration::from_secs(20),
        || t.is_file(),
    );
    // Settle (a run in flight at the first write finishes), then count.
    std::thread::sleep(Duration::from_secs(2));
    let runs = agent.runs("web");
    let written = std::fs::read_to_string(&t).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert_ne!(
        std::fs::read_to_string(&t).unwrap(),
        written,
        "the container kept writing"
    );
    assert_eq!(
        agent.runs("web"),
        runs,
        "writes under ./data woke the project\n{}",
        agent.log()
    );
    assert_eq!(
        container(&ctr, "{{.Id}}").as_deref(),
        Some(first_id.as_str())
    );

    // An edit of the compose file is applied.
    std::fs::write(dir.join("compose.yaml"), writer(&name, "2")).unwrap();
    agent.wait_for("the edit to be applied", Duration::from_secs(60), || {
        container(&ctr, "{{range .Config.Env}}{{println .}}{{end}}")
            .is_some_and(|env| env.lines().any(|l| l == "REV=2"))
            && agent.runs("web") > runs
    });
    let new_id = container(&ctr, "{{.Id}}").unwrap();
    assert_ne!(new_id, first_id, "the container was recreated");
    assert_eq!(
        container(&ctr, "{{.State.Running}}").as_deref(),
        Some("true")
    );

    // A compose file in a new directory is a new project, found from its file event.
    let other = root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("compose.yaml"),
        format!("name: {second}\nservices: {{}}\n"),
    )
    .unwrap();
    agent.wait_for("the new project to run", Duration::from_secs(30), || {
        agent.runs("other") >= 1
    });
    assert_eq!(
        agent.project("other")["last_result"],
        "success",
        "{}",
        agent.log()
    );
}
