//! End-to-end tests of update strategies on the real engine: start-first updates without a
//! failed request, start-first failures that never touch the old container, and health waits
//! that end on the engine's `unhealthy` event rather than at `--wait-timeout`.

mod common;

use std::time::{Duration, Instant};

use common::stack::{show, Stack};
use common::*;

impl Stack {
    /// The project's containers: (name, id, running), all states.
    fn containers(&self) -> Vec<(String, String, bool)> {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        let format = "{{.Names}} {{.ID}} {{.State}}";
        docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &filter,
            "--format",
            format,
        ])
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (n, i, s) = (it.next()?, it.next()?, it.next()?);
            Some((n.to_string(), i.to_string(), s == "running"))
        })
        .collect()
    }

    fn web(&self) -> String {
        format!("{}-web-1", self.name)
    }
}

/// `web` serving the test app on 8080, with a fast healthcheck, updated in `order`.
fn web_service(image: &str, order: &str, retries: u32) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: {retries}
    stop_grace_period: 5s
    deploy:
      update_config:
        order: {order}
"#
    )
}

/// A client container on the project network asking `web:8080` for `/` every 100 ms, printing
/// `ok <body>` or `FAIL …` per request. Each request looks the name up afresh and, as curl and
/// Go's dialer do with a name of several addresses, tries each address in turn (1 s connect
/// timeout) until one answers: while two containers serve, the engine's DNS lists both, and
/// one that has just left its network stops answering.
/// Removed on drop.
struct Client {
    name: String,
}

impl Client {
    fn start(s: &Stack) -> Client {
        let name = format!("{}-client", s.name);
        let script = r#"trap 'exit 0' TERM
while true; do
  ips=$(busybox nslookup web 127.0.0.11 2>/dev/null | sed -n '/^Name/,$ s/^Address[^:]*: *\([0-9.]*\).*/\1/p')
  r=""
  for ip in $ips; do
    r=$(printf 'GET / HTTP/1.0\r\n\r\n' | busybox timeout 3 busybox nc -w 1 "$ip" 8080 2>/dev/null | grep -E '^v[0-9]$')
    [ -n "$r" ] && break
  done
  case "$r" in v*) echo "ok $r";; *) echo "FAIL $(date +%T) addresses: $ips";; esac
  sleep 0.1
done"#;
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &format!("{}_default", s.name),
            &testbed().base_image,
            "sh",
            "-c",
            script,
        ]);
        Client { name }
    }

    fn lines(&self) -> Vec<String> {
        docker(&["logs", &self.name])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until the client has seen `n` answers `ok <body>`.
    fn wait_for(&self, body: &str, n: usize) {
        let want = format!("ok {body}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.lines().iter().filter(|l| **l == want).count() < n {
            assert!(Instant::now() < deadline, "client: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// Updates v1 -> v2 in `order` while a client polls; returns the client's lines and how many
/// of them were printed before the apply ended.
fn update_under_load(prefix: &str, order: &str) -> (Stack, Vec<String>, usize) {
    let mut s = Stack::new(prefix);
    let image = s.app_image("v1");
    s.write(&web_service(&image, order, 3));
    s.apply_ok();
    let client = Client::start(&s);
    client.wait_for("v1", 5);
    s.app_image("v2");
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let during = client.lines().len();
    client.wait_for("v2", 10);
    let lines = client.lines();
    (s, lines, during)
}

#[test]
fn start_first_update_loses_no_request() {
    let (s, lines, during) = update_under_load("update-start-first", "start-first");
    let failed = lines.iter().filter(|l| l.starts_with("FAIL")).count();
    assert_eq!(failed, 0, "failed requests during the update: {lines:?}");
    assert!(lines.iter().filter(|l| *l == "ok v1").count() >= 5);
    // Both answer while they run side by side; once apply is done, only the new one does.
    assert!(lines[during..].iter().all(|l| l == "ok v2"), "{lines:?}");
    // Exactly one container remains, under the final name, running the new release.
    let cs = s.containers();
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].0, s.web());
    assert!(cs[0].2, "{cs:?}");
    assert_eq!(docker(&["exec", &s.web(), "cat", "/version"]), "v2");
    // Its aliases on the project network: the service name and the final container name.
    let aliases = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{json (index .NetworkSettings.Networks \"{}_default\").Aliases}}}}",
            s.name
        ),
        &s.web(),
    ]);
    assert!(aliases.contains("\"web\""), "{aliases}");
    assert!(aliases.contains(&format!("\"{}\"", s.web())), "{aliases}");
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}

/// The control: the same client sees a stop-first update, so it can see failures.
#[test]
fn stop_first_update_is_seen_by_the_client() {
    let (_s, lines, _) = update_under_load("update-stop-first", "stop-first");
    assert!(
        lines.iter().any(|l| l.starts_with("FAIL")),
        "a stop-first update should leave a gap: {lines:?}"
    );
}

#[test]
fn start_first_with_broken_image_never_touches_the_old_container() {
    let mut s = Stack::new("update-sf-broken");
    let image = s.app_image("v1");
    s.write(&web_service(&image, "start-first", 3));
    s.apply_ok();
    let web = s.web();
    let state = |f: &str| docker(&["inspect", "-f", f, &web]);
    let fmt = "{{.Id}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Running}}";
    let before = state(fmt);
    let nets = "{{json .NetworkSettings.Networks}}";
    let nets_before: serde_json::Value = serde_json::from_str(&state(nets)).unwrap();
    let client = Client::start(&s);
    client.wait_for("v1", 3);
    s.app_image("broken");
    let out = s.run(&["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{stdout}");
    assert!(
        stdout.contains("broken test app: exiting with 1"),
        "{stdout}"
    );
    // Same id, never stopped or restarted (same start time), still on its network.
    assert_eq!(state(fmt), before);
    let nets_after: serde_json::Value = serde_json::from_str(&state(nets)).unwrap();
    let net = format!("{}_default", s.name);
    assert_eq!(
        nets_after[&net]["EndpointID"], nets_before[&net]["EndpointID"],
        "the old container was disconnected"
    );
    // The client never noticed.
    client.wait_for("v1", 3);
    let lines = client.lines();
    assert!(!lines.iter().any(|l| l.starts_with("FAIL")), "{lines:?}");
    // The failed one is kept stopped for inspection.
    let cs = s.containers();
    let failed = format!("{web}-composeops-failed");
    assert!(cs.iter().any(|c| c.0 == failed && !c.2), "{cs:?}");
}

#[test]
fn unhealthy_new_container_is_rolled_back_before_the_wait_timeout() {
    let mut s = Stack::new("update-unhealthy");
    let image = s.app_image("v1");
    // Unhealthy after 2 failed checks 1 s apart: the engine says so within ~3 s.
    s.write(&web_service(&image, "stop-first", 2));
    s.apply_ok();
    let before = docker(&["inspect", "-f", "{{.Id}}", &s.web()]);
    s.app_image("unhealthy");
    let t = Instant::now();
    let out = s.run(&["apply", "--wait-timeout", "120s"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{stdout}");
    assert!(stdout.contains("unhealthy"), "{stdout}");
    assert!(
        took < Duration::from_secs(20),
        "rolled back after {took:?}, --wait-timeout was 120s"
    );
    eprintln!("unhealthy container rolled back after {took:?} (--wait-timeout 120s)");
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &s.web()]), before);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &s.web()]),
        "true"
    );
}

#[test]
fn fixed_host_port_falls_back_to_stop_first_and_says_so() {
    let mut s = Stack::new("update-sf-port");
    let image = s.app_image("v1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = web_service(&image, "start-first", 3)
        + &format!("    ports: [\"127.0.0.1:{port}:8080\"]\n");
    s.write(&yaml);
    s.apply_ok();
    s.app_image("v2");
    let out = s.run(&["plan"]);
    let text = show(&out);
    assert!(
        text.contains(&format!("fixed host port {port}")) && text.contains("stop-first"),
        "{text}"
    );
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let cs = s.containers();
    assert_eq!(cs.len(), 1, "{cs:?}");
    let (code, body) = http_get(&format!("127.0.0.1:{port}"), "/", None);
    assert_eq!((code, body.trim()), (200, "v2"));
}

/// SIGKILLs a start-first update paused at `step`; the next apply recovers and converges to
/// one healthy container running the new release, with the old one never left disconnected.
fn start_first_kill_at(step: &str) {
    let mut s = Stack::new(&format!("update-sf-kill-{step}"));
    let image = s.app_image("v1");
    s.write(&web_service(&image, "start-first", 3));
    s.apply_ok();
    s.app_image("v2");
    let (mut child, seen) = s.apply_paused_at(&[], step, 1);
    assert!(seen.contains(&format!("test pause at {step}")), "{seen}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Killed mid-update: two containers of web exist (old and new).
    assert_eq!(s.containers().len(), 2, "{:?}", s.containers());
    let out = s.apply_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recovering an interrupted apply"),
        "{stderr}"
    );
    let cs = s.containers();
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].0, s.web());
    let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &s.web()]);
    assert_eq!(health, "healthy");
    assert_eq!(docker(&["exec", &s.web(), "cat", "/version"]), "v2");
    let aliases = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{json (index .NetworkSettings.Networks \"{}_default\").Aliases}}}}",
            s.name
        ),
        &s.web(),
    ]);
    assert!(aliases.contains("\"web\""), "{aliases}");
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}

#[test]
fn sigkill_during_start_first_health_wait_is_recovered() {
    start_first_kill_at("health-wait");
}

#[test]
fn sigkill_during_start_first_drain_is_recovered() {
    start_first_kill_at("remove-old");
}
