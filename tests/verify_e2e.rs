//! End-to-end tests of `x-composeops.verify` on the real engine: a check that fails (or times
//! out) rolls the update back with its output in the outcome; a check that passes sees the new
//! container, its published port and the project directory; start-first, a failed check never
//! touches the old container; adding a check recreates nothing; a bad one is refused at load.
//! Run with scripts/test.sh.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use common::stack::{show, Stack};
use common::*;

impl Stack {
    fn web(&self) -> String {
        format!("{}-web-1", self.name)
    }

    fn inspect(&self, container: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, container])
    }

    /// (name, running) of the project's containers, all states.
    fn containers(&self) -> Vec<(String, bool)> {
        project_containers(&self.name, "{{.Names}} {{.State}}")
            .iter()
            .filter_map(|l| {
                let (n, s) = l.split_once(' ')?;
                Some((n.to_string(), s == "running"))
            })
            .collect()
    }

    fn apply(&self) -> Output {
        self.run(&["apply", "--wait-timeout", "30s"])
    }
}

/// `web` from `image`, published on an ephemeral loopback port, with `GREETING` and the
/// `x-composeops` block `ext` (YAML lines indented for it), updated in `order`.
fn web(image: &str, greeting: &str, order: &str, ext: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    environment:
      GREETING: "{greeting}"
    ports: ["127.0.0.1::8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
    stop_grace_period: 2s
    deploy:
      update_config:
        order: {order}
{ext}"#
    )
}

fn assert_rolled_back(s: &Stack, out: &Output, old_id: &str, want: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{}", show(out));
    for w in want {
        assert!(stdout.contains(w), "want {w:?} in:\n{}", show(out));
    }
    assert_eq!(s.inspect(&s.web(), "{{.Id}}"), old_id, "{}", show(out));
    assert_eq!(s.inspect(&s.web(), "{{.State.Running}}"), "true");
    let failed = format!("{}-composeops-failed", s.web());
    let cs = s.containers();
    assert!(cs.contains(&(failed, false)), "{cs:?}");
}

#[test]
fn a_failed_or_timed_out_check_rolls_back_and_adding_one_recreates_nothing() {
    let mut s = Stack::new("verify-fail");
    let image = s.app_image("v1");
    s.write(&web(&image, "hello", "stop-first", ""));
    s.apply_ok();
    let id = s.inspect(&s.web(), "{{.Id}}");

    // A check added to a running service is not a change of it. (`$$`: the compose file is
    // interpolated, `x-` keys included.)
    let failing = "    x-composeops:\n      verify: |\n        echo \"checking $$COMPOSEOPS_SERVICE\"\n        \
                   echo 'GET / -> 503 Service Unavailable' >&2\n        exit 3\n";
    s.write(&web(&image, "hello", "stop-first", failing));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let out = s.apply_ok();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("verifying"),
        "{}",
        show(&out)
    );
    assert_eq!(s.inspect(&s.web(), "{{.Id}}"), id);

    // A change: the new container is healthy, the check fails, the old one is back.
    s.write(&web(&image, "changed", "stop-first", failing));
    let out = s.apply();
    assert_rolled_back(
        &s,
        &out,
        &id,
        &[
            "verify failed: exit 3",
            "checking web",
            "GET / -> 503 Service Unavailable",
        ],
    );
    assert_eq!(
        s.inspect(&s.web(), "{{range .Config.Env}}{{println .}}{{end}}")
            .lines()
            .find(|l| l.starts_with("GREETING=")),
        Some("GREETING=hello")
    );

    // A check that does not answer in time is killed and fails the same way.
    let slow = "    x-composeops:\n      verify: [sh, -c, \"echo started; sleep 60\"]\n      \
                verify_timeout: 2s\n";
    s.write(&web(&image, "changed", "stop-first", slow));
    let started = Instant::now();
    let out = s.apply();
    assert_rolled_back(
        &s,
        &out,
        &id,
        &["verify failed: no answer within 2s: started"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    // Still pending: the next apply tries again.
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", show(&plan));
}

#[test]
fn a_passing_check_sees_the_new_container_its_port_and_the_project_directory() {
    let mut s = Stack::new("verify-pass");
    let image = s.app_image("v1");
    // An argv, run in the project directory: a script beside the compose file, which records
    // what it saw there.
    std::fs::write(
        s.dir.path().join("check.sh"),
        "env | grep '^COMPOSEOPS_' | sort > seen.env\n\
         for i in 1 2 3 4 5; do\n  \
           busybox wget -q -O seen.body \"http://$COMPOSEOPS_PORT_8080_TCP/\" && exit 0\n  \
           sleep 1\n\
         done\n\
         echo \"no answer at $COMPOSEOPS_PORT_8080_TCP\"; exit 1\n",
    )
    .unwrap();
    let ext = "    x-composeops:\n      verify: [sh, ./check.sh]\n";
    s.write(&web(&image, "hello", "stop-first", ext));
    s.apply_ok();
    let old = s.inspect(&s.web(), "{{.Id}}");
    let seen_body = s.dir.path().join("seen.body");
    assert_eq!(std::fs::read_to_string(&seen_body).unwrap().trim(), "v1");

    s.app_image("v2");
    let out = s.apply();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} verified", s.web())),
        "{stderr}"
    );
    let new = s.inspect(&s.web(), "{{.Id}}");
    assert_ne!(new, old, "the update went through");

    // Besides composeops's own environment (COMPOSEOPS_STATE_DIR, the test bed's variables).
    let seen: BTreeMap<String, String> = std::fs::read_to_string(s.dir.path().join("seen.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.starts_with("COMPOSEOPS_TEST") && *k != "COMPOSEOPS_STATE_DIR")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let host_port = docker(&["port", &s.web(), "8080/tcp"]);
    let want: BTreeMap<String, String> = [
        ("COMPOSEOPS_PROJECT", s.name.clone()),
        ("COMPOSEOPS_SERVICE", "web".into()),
        ("COMPOSEOPS_CONTAINER_ID", new.clone()),
        ("COMPOSEOPS_CONTAINER_NAME", s.web()),
        ("COMPOSEOPS_PORT_8080_TCP", host_port.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(seen, want);
    assert!(host_port.starts_with("127.0.0.1:"), "{host_port}");
    // It reached the new release through its published port.
    assert_eq!(std::fs::read_to_string(&seen_body).unwrap().trim(), "v2");
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}

#[test]
fn start_first_a_failed_check_never_touches_the_old_container() {
    let mut s = Stack::new("verify-sf");
    let image = s.app_image("v1");
    // Only release v1 passes. The compose file is interpolated, `x-` keys included: `$$` is
    // the shell's `$`.
    let ext = "    x-composeops:\n      verify: >-\n        \
               body=$$(busybox wget -q -O - \"http://$$COMPOSEOPS_PORT_8080_TCP/\");\n        \
               echo \"$$COMPOSEOPS_CONTAINER_NAME says $$body\";\n        \
               [ \"$$body\" = v1 ]\n";
    s.write(&web(&image, "hello", "start-first", ext));
    s.apply_ok();
    let web = s.web();
    let fmt = "{{.Id}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Running}}";
    let before = s.inspect(&web, fmt);
    let id = before.split(' ').next().unwrap().to_string();
    let nets = "{{json .NetworkSettings.Networks}}";
    let nets_before: serde_json::Value = serde_json::from_str(&s.inspect(&web, nets)).unwrap();
    let port_before = docker(&["port", &web, "8080/tcp"]);

    s.app_image("v2");
    let out = s.apply();
    // Checked under its temporary name, beside the old one.
    let said = format!("{web}-composeops-new says v2");
    assert_rolled_back(&s, &out, &id, &["verify failed: exit 1", &said]);
    // Same id, never stopped or restarted, still on its network, still published.
    assert_eq!(s.inspect(&web, fmt), before);
    let nets_after: serde_json::Value = serde_json::from_str(&s.inspect(&web, nets)).unwrap();
    let net = format!("{}_default", s.name);
    assert_eq!(
        nets_after[&net]["EndpointID"], nets_before[&net]["EndpointID"],
        "the old container was disconnected"
    );
    assert_eq!(docker(&["port", &web, "8080/tcp"]), port_before);
    let (code, body) = http_get(&port_before, "/", None);
    assert_eq!((code, body.trim()), (200, "v1"));
}

#[test]
fn a_failed_check_of_a_new_service_fails_it() {
    let mut s = Stack::new("verify-new");
    let image = s.app_image("v1");
    let ext = "    x-composeops:\n      verify: \"echo not ready yet; exit 1\"\n";
    s.write(&web(&image, "hello", "stop-first", ext));
    let out = s.apply();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed") && stdout.contains("verify failed: exit 1: not ready yet"),
        "{}",
        show(&out)
    );
    // Left stopped for inspection, as after a failed health wait.
    assert_eq!(s.containers(), [(s.web(), false)]);
}

#[test]
fn a_bad_check_is_refused_at_load_naming_file_line_and_field() {
    let s = Stack::new("verify-bad");
    let file = s.dir.path().join("compose.yaml");
    for (value, field) in [
        ("42", "verify"),
        ("{cmd: ./smoke}", "verify"),
        ("[./smoke, {retries: 3}]", "verify[1]"),
    ] {
        s.write(&format!(
            "services:\n  web:\n    image: {}\n    x-composeops:\n      verify: {value}\n",
            testbed().base_image
        ));
        let out = s.run(&["plan"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let want = format!(
            "{}:5: services.web.x-composeops.{field}: must be",
            file.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&want), "want {want:?} in:\n{}", show(&out));
    }
    assert!(s.containers().is_empty());
}
