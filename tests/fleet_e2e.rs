//! A fleet from one repository, without a server: two real agents (`--node n1`, `--node n2`),
//! each with its own clone of one bare origin, pulling every second, on the real engine.
//!
//! Both agents share this machine's one engine, so each stack's project name carries the
//! agent's node (`name: ${FLEET_PREFIX}-${FLEET_NODE}-a`, interpolated from each agent's
//! environment), as if each node had its own engine: what n1 removes is only ever n1's.
//!
//! Run with `scripts/test.sh --test fleet_e2e`; the move's push-to-converged time is printed
//! with `--nocapture`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running agent, killed on drop; its stderr goes to `log`.
struct Agent {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Agent {
    fn start(path: &Path, state: &Path, env: &[(&str, &str)], extra: &[&str]) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = state.with_extension("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_composeops"));
        cmd.arg("agent")
            .arg(path)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &addr, "--git-pull", "1s"])
            .args([
                "--debounce",
                "300ms",
                "--retry-initial",
                "1s",
                "--retry-max",
                "4s",
            ])
            .args(["--wait-timeout", "20s"])
            .args(extra)
            .envs(env.iter().copied())
            .env("COMPOSEOPS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let a = Agent {
            child: cmd.spawn().expect("spawn composeops agent"),
            log,
            addr,
        };
        a.wait_for("the listener", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&a.addr).is_ok()
        });
        a
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.addr, "/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
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
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The projects this agent runs, once each has applied successfully.
    fn converged(&self, ids: &[&str]) -> bool {
        let st = self.status();
        let projects = st["projects"].as_object().cloned().unwrap_or_default();
        let mut running: Vec<&str> = projects.keys().map(String::as_str).collect();
        running.sort();
        running == ids
            && projects
                .values()
                .all(|p| p["last_result"] == "success" && p["running"] == false)
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

fn write(p: &Path, c: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, c).unwrap();
}

/// A stack with a named volume; its project name carries the agent's node.
fn stack(id: &str, nodes: &str, image: &str) -> String {
    format!(
        "name: ${{FLEET_PREFIX}}-${{FLEET_NODE}}-{id}\nx-composeops:\n  nodes: {nodes}\n\
         services:\n  web:\n    image: {image}\n    volumes: [\"data:/data\"]\n    \
         healthcheck:\n      test: [\"CMD\", \"wget\", \"-qO-\", \"http://127.0.0.1:8080/\"]\n      \
         interval: 1s\n      timeout: 2s\n      retries: 2\nvolumes:\n  data: {{}}\n"
    )
}

fn running(container: &str) -> bool {
    let out = docker_output(&["inspect", "-f", "{{.State.Running}}", container]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true"
}

fn project_resources(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
        _ => vec![kind, "ls", "--filter", &filter, "--format", "{{.Name}}"],
    };
    docker(&args).lines().map(str::to_string).collect()
}

/// origin (bare) <- `dev` (where the operator pushes) and one clone per node.
struct Fleet {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dev: PathBuf,
}

impl Fleet {
    fn new(files: &[(&str, String)]) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let origin = root.join("origin.git");
        let o = origin.to_str().unwrap();
        git(&root, &["init", "-q", "--bare", "-b", "main", o]);
        let dev = root.join("dev");
        git(&root, &["clone", "-q", o, dev.to_str().unwrap()]);
        git(&dev, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        let f = Fleet {
            _tmp: tmp,
            root,
            dev,
        };
        f.push(files, "first");
        f
    }

    /// A node's own clone of origin, and its state directory.
    fn node(&self, name: &str) -> (PathBuf, PathBuf) {
        let work = self.root.join(format!("work-{name}"));
        let o = self.root.join("origin.git");
        git(
            &self.root,
            &[
                "clone",
                "-q",
                "-b",
                "main",
                o.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        (work, self.root.join(format!("state-{name}")))
    }

    fn push(&self, files: &[(&str, String)], msg: &str) {
        for (p, c) in files {
            write(&self.dev.join(p), c);
        }
        git(&self.dev, &["add", "-A"]);
        git(&self.dev, &["commit", "-qm", msg]);
        git(&self.dev, &["push", "-q", "origin", "main"]);
    }
}

/// Three stacks, two nodes: each agent runs exactly its share (by name glob, by label, and by
/// the root file overriding a stack's own key); moving a stack in git moves it between them
/// under `--prune`, its containers and network leave n1, its named volume stays.
#[test]
fn two_nodes_run_their_share_and_a_moved_stack_follows_git() {
    let prefix = unique_project("fleet");
    let mut guards: Vec<ProjectGuard> = ["n1", "n2"]
        .iter()
        .flat_map(|n| ["a", "b", "c"].map(|s| ProjectGuard::new(format!("{prefix}-{n}-{s}"))))
        .collect();
    let image = format!("{}/{prefix}/app:v1", testbed().registry);
    build_app_image(&image, "v1");
    push_image(&image);
    guards[0].image(image.clone());

    let fleet = Fleet::new(&[
        ("a/compose.yaml", stack("a", "[n1]", &image)),
        // The root file wins: b runs on n2 although its own key says n1.
        ("b/compose.yaml", stack("b", "[n1]", &image)),
        (
            "c/compose.yaml",
            stack("c", "[\"edge-*\", \"role=db\"]", &image),
        ),
        (
            "x-composeops.yaml",
            "stacks:\n  b: {nodes: [n2]}\n".to_string(),
        ),
    ]);

    // The laptop preview: the same placement, no engine.
    let (work1, state1) = fleet.node("n1");
    let (work2, state2) = fleet.node("n2");
    let out = composeops()
        .env("FLEET_PREFIX", &prefix)
        .env("FLEET_NODE", "n1")
        .args(["plan", "--node", "n1", "--label", "role=db"])
        .arg(&work1)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("a  runs here"), "{text}");
    assert!(text.contains("b  skipped (nodes: [n2])"), "{text}");
    assert!(text.contains("c  runs here"), "{text}");

    let p = prefix.as_str();
    let n1 = Agent::start(
        &work1,
        &state1,
        &[("FLEET_PREFIX", p), ("FLEET_NODE", "n1")],
        &["--node", "n1", "--label", "role=db", "--prune"],
    );
    let n2 = Agent::start(
        &work2,
        &state2,
        &[("FLEET_PREFIX", p), ("FLEET_NODE", "n2")],
        &["--node", "n2", "--prune"],
    );

    n1.wait_for("n1 to run a and c", Duration::from_secs(90), || {
        n1.converged(&["a", "c"])
    });
    n2.wait_for("n2 to run b", Duration::from_secs(90), || {
        n2.converged(&["b"])
    });
    let c = |n: &str, s: &str| format!("{prefix}-{n}-{s}-web-1");
    assert!(running(&c("n1", "a")) && running(&c("n1", "c")) && running(&c("n2", "b")));
    for (n, s) in [("n1", "b"), ("n2", "a"), ("n2", "c")] {
        let p = format!("{prefix}-{n}-{s}");
        assert!(
            project_resources("container", &p).is_empty(),
            "{p} runs on {n}"
        );
    }
    let st1 = n1.status();
    assert_eq!(st1["node"]["name"], "n1", "{st1}");
    assert_eq!(st1["skipped"]["b"]["reason"], "nodes: [n2]", "{st1}");
    assert_eq!(st1["skipped"]["b"]["placed_by"], "fleet-file", "{st1}");
    let st2 = n2.status();
    assert_eq!(st2["skipped"]["a"]["reason"], "nodes: [n1]", "{st2}");
    assert_eq!(
        st2["skipped"]["c"]["reason"], "nodes: [edge-*, role=db]",
        "{st2}"
    );
    assert_eq!(st2["skipped"]["c"]["placed_by"], "compose-file", "{st2}");

    // Something in a's volume on n1, to see that the move keeps it.
    docker(&["exec", &c("n1", "a"), "sh", "-c", "echo kept > /data/f"]);

    // Move a to n2 in git.
    fleet.push(
        &[("a/compose.yaml", stack("a", "[n2]", &image))],
        "move a to n2",
    );
    let t = Instant::now();
    n2.wait_for("a to run on n2", Duration::from_secs(60), || {
        n2.converged(&["a", "b"])
    });
    let took = t.elapsed();
    eprintln!(
        "FIGURE fleet move push-to-converged on n2: {:.1}s (git-pull 1s, health interval 1s)",
        took.as_secs_f64()
    );
    let vol1 = format!("{prefix}-n1-a_data");
    n1.wait_for("a to leave n1", Duration::from_secs(60), || {
        project_resources("container", &format!("{prefix}-n1-a")).is_empty()
            && project_resources("network", &format!("{prefix}-n1-a")).is_empty()
    });
    assert!(running(&c("n2", "a")));
    // Its volume stays (never removed by --prune), with its data.
    assert_eq!(
        project_resources("volume", &format!("{prefix}-n1-a")),
        std::slice::from_ref(&vol1)
    );
    let data = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol1}:/data"),
        &testbed().base_image,
        "cat",
        "/data/f",
    ]);
    assert_eq!(data.trim(), "kept");
    n1.wait_for(
        "n1's status to report the move",
        Duration::from_secs(20),
        || {
            let st = n1.status();
            st["skipped"]["a"]["reason"] == "nodes: [n2]"
                && st["skipped"]["a"]["removed"]["containers"][0] == c("n1", "a").as_str()
                && st["projects"].get("a").is_none()
        },
    );
    // The stacks that did not move were left alone.
    assert!(running(&c("n1", "c")) && running(&c("n2", "b")));
    assert!(n1.converged(&["c"]), "{}", n1.status());

    // A typo in a placement key is not an order to remove, even under --prune: c is no longer
    // reconciled on n1, reported, and left running.
    let typo = stack("c", "[n1]", &image).replace("  nodes:", "  node:");
    fleet.push(&[("c/compose.yaml", typo)], "typo in c's placement");
    n1.wait_for(
        "n1 to report c's bad placement",
        Duration::from_secs(30),
        || {
            let st = n1.status();
            st["skipped"]["c"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("node"))
                && st["projects"].get("c").is_none()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(running(&c("n1", "c")), "left running");
}

/// A fleet of one stack `a` that may run on any node (its image built, pushed and removed at
/// the end), seen from node n1.
struct OneStack {
    prefix: String,
    _guard: ProjectGuard,
    fleet: Fleet,
    work: PathBuf,
    state: PathBuf,
}

impl OneStack {
    fn new(name: &str) -> OneStack {
        let prefix = unique_project(name);
        let mut guard = ProjectGuard::new(format!("{prefix}-n1-a"));
        let image = format!("{}/{prefix}/app:v1", testbed().registry);
        build_app_image(&image, "v1");
        push_image(&image);
        guard.image(image.clone());
        let fleet = Fleet::new(&[("a/compose.yaml", stack("a", "[\"n*\"]", &image))]);
        let (work, state) = fleet.node("n1");
        OneStack {
            prefix,
            _guard: guard,
            fleet,
            work,
            state,
        }
    }

    /// n1's agent with `extra` flags.
    fn start(&self, extra: &[&str]) -> Agent {
        let env = [("FLEET_PREFIX", self.prefix.as_str()), ("FLEET_NODE", "n1")];
        Agent::start(&self.work, &self.state, &env, extra)
    }

    /// [`OneStack::start`], once it runs `a`.
    fn start_running(&self, extra: &[&str]) -> Agent {
        let n1 = self.start(extra);
        n1.wait_for("n1 to run a", Duration::from_secs(90), || {
            n1.converged(&["a"])
        });
        n1
    }
}

/// Without `--prune`, a stack moved to another node is left running here and reported: in the
/// log and under /status `skipped` (`left_running`), as the agent found it on its engine.
#[test]
fn without_prune_a_moved_stack_is_left_running_and_reported() {
    let one = OneStack::new("fleet-keep");
    let (prefix, fleet) = (&one.prefix, &one.fleet);
    let n1 = one.start_running(&["--node", "n1"]);

    fleet.push(
        &[(
            "x-composeops.yaml",
            "stacks: {a: {nodes: [n2]}}\n".to_string(),
        )],
        "a to n2",
    );
    let web = format!("{prefix}-n1-a-web-1");
    n1.wait_for(
        "n1 to report a as left running",
        Duration::from_secs(30),
        || {
            let st = n1.status();
            st["skipped"]["a"]["reason"] == "nodes: [n2]"
                && st["skipped"]["a"]["placed_by"] == "fleet-file"
                && st["skipped"]["a"]["left_running"]["containers"][0] == web.as_str()
                && st["projects"].get("a").is_none()
        },
    );
    assert!(running(&web), "left running without --prune");
    let log = std::fs::read_to_string(&n1.log).unwrap();
    assert!(log.contains("still running here"), "{log}");

    // Placed back here: applied again (nothing to change), no longer skipped.
    fleet.push(
        &[("x-composeops.yaml", "stacks: {}\n".to_string())],
        "a back",
    );
    n1.wait_for("a back on n1", Duration::from_secs(30), || {
        let st = n1.status();
        st["skipped"].as_object().is_some_and(|m| m.is_empty()) && n1.converged(&["a"])
    });
    assert!(running(&web));
}

/// A `--window` that opens in three hours, UTC: closed for the whole test.
fn closed_window() -> String {
    let opens = chrono::Utc::now() + chrono::TimeDelta::hours(3);
    let closes = opens + chrono::TimeDelta::minutes(30);
    format!(
        "{} {}-{} UTC",
        opens.format("%a"),
        opens.format("%H:%M"),
        closes.format("%H:%M")
    )
}

/// Under `--prune` with a closed `--window`, a stack moved to another node is not removed:
/// removing it is a change, and it waits for the window, shown in /status.
#[test]
fn under_prune_a_moved_stack_waits_for_the_maintenance_window() {
    let one = OneStack::new("fleet-window");
    let (prefix, fleet) = (&one.prefix, &one.fleet);
    drop(one.start_running(&["--node", "n1", "--prune"]));

    fleet.push(
        &[(
            "x-composeops.yaml",
            "stacks: {a: {nodes: [n2]}}\n".to_string(),
        )],
        "a to n2",
    );
    let window = closed_window();
    let extra = ["--node", "n1", "--prune", "--window", &window];
    let n1 = one.start(&extra);
    let web = format!("{prefix}-n1-a-web-1");
    n1.wait_for(
        "n1 to hold a's removal for the window",
        Duration::from_secs(30),
        || {
            let st = n1.status();
            let a = &st["skipped"]["a"];
            a["removal_waits_for_window"] == true
                && a["left_running"]["containers"][0] == web.as_str()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(running(&web), "removed outside the window");
    assert!(n1.status()["skipped"]["a"].get("removed").is_none());
    let log = std::fs::read_to_string(&n1.log).unwrap();
    assert!(log.contains("waits for a maintenance window"), "{log}");
}
