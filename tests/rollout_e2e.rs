//! End-to-end tests of `deploy.update_config` on replicas, on the real engine: batches of
//! `parallelism`, `delay` apart; `failure_action: rollback` putting back the old containers of
//! the replicas already replaced; `max_failure_ratio` letting a rollout go on past a failure;
//! `monitor` catching a container that dies after it looked ready; a SIGKILL in the middle
//! of a batch recovered from the journal's entries. Run with scripts/test.sh.

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use common::stack::{show, Stack};
use common::*;

impl Stack {
    fn replica(&self, n: u32) -> String {
        format!("{}-web-{n}", self.name)
    }

    /// Replica number -> container id, for the replicas under their final names.
    fn replica_ids(&self, count: u32) -> BTreeMap<u32, String> {
        let ids = self.container_ids();
        (1..=count)
            .filter_map(|n| ids.get(&self.replica(n)).map(|id| (n, id.clone())))
            .collect()
    }

    fn started_at(&self, n: u32) -> chrono::DateTime<chrono::FixedOffset> {
        let t = docker(&["inspect", "-f", "{{.State.StartedAt}}", &self.replica(n)]);
        chrono::DateTime::parse_from_rfc3339(&t).unwrap()
    }

    fn apply(&self) -> Output {
        self.run(&["apply", "--wait-timeout", "30s"])
    }
}

/// `web` with `replicas` from the test bed's base image, running `command` with `V` set, the
/// stack's `count/` directory mounted at /count, and `update` as its `update_config` body
/// (YAML lines indented for it).
fn web(replicas: u32, v: u32, command: &str, update: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    command: ["sh", "-c", '{command}']
    environment:
      V: "{v}"
    volumes: ["./count:/count"]
    stop_grace_period: 1s
    deploy:
      replicas: {replicas}
      update_config:
{update}"#,
        image = testbed().base_image
    )
}

/// Runs for good.
const IDLE: &str = "exec sleep 1000";

/// Counts its starts in /count and exits 1 when it is the start number `nth` (from 0) of the
/// new release, else runs for good. The old release (IDLE) does not count. (`$$`: Compose's
/// interpolation leaves one `$`.)
fn fails_at_start(nth: u32) -> String {
    format!(
        "n=$$(ls /count | wc -l); touch /count/$$HOSTNAME; if [ $$n -eq {nth} ]; then exit 1; fi; \
         exec sleep 1000"
    )
}

fn stack(prefix: &str) -> Stack {
    let s = Stack::new(prefix);
    std::fs::create_dir(s.dir.path().join("count")).unwrap();
    s
}

#[test]
fn replicas_roll_in_batches_of_parallelism_delay_apart() {
    let s = stack("rollout-batches");
    let update = "        parallelism: 2\n        delay: 2s\n";
    s.write(&web(4, 1, IDLE, update));
    s.apply_ok();
    let before = s.replica_ids(4);
    s.write(&web(4, 2, IDLE, update));
    let plan = s.run(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("update: stop-first, 2 at a time, 2s apart, on failure pause"),
        "{}",
        show(&plan)
    );
    let out = s.apply_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let batch = |a, b| format!("updating {}, {} at once", s.replica(a), s.replica(b));
    assert!(stderr.contains(&batch(1, 2)), "{}", show(&out));
    assert!(stderr.contains(&batch(3, 4)), "{}", show(&out));
    assert!(
        stderr.contains("waiting 2s before the next batch"),
        "{stderr}"
    );
    let after = s.replica_ids(4);
    assert_eq!(after.len(), 4, "{after:?}");
    for n in 1..=4 {
        assert_ne!(before[&n], after[&n], "replica {n} was not replaced");
    }
    // One batch starts together; the next one after the delay.
    let t: Vec<_> = (1..=4).map(|n| s.started_at(n)).collect();
    let ms = |a: usize, b: usize| (t[b] - t[a]).num_milliseconds().abs();
    assert!(
        ms(0, 1) < 1500,
        "replicas 1 and 2 started {} ms apart",
        ms(0, 1)
    );
    assert!(
        ms(2, 3) < 1500,
        "replicas 3 and 4 started {} ms apart",
        ms(2, 3)
    );
    let gap = (t[2] - t[0].max(t[1])).num_milliseconds();
    assert!(
        gap >= 2000,
        "the second batch started {gap} ms after the first"
    );
    assert_eq!(project_containers(&s.name, "{{.Names}}").len(), 4);
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}

#[test]
fn failure_action_rollback_puts_back_the_replicas_already_replaced() {
    rollback_in("stop-first");
}

/// Start-first both ways: each update and each putting back keeps a container serving.
#[test]
fn failure_action_rollback_puts_replicas_back_start_first() {
    rollback_in("start-first");
}

fn rollback_in(order: &str) {
    let s = stack(&format!("rollout-rollback-{order}"));
    let update = format!(
        "        failure_action: rollback\n        order: {order}\n      rollback_config:\n        \
         order: {order}\n        parallelism: 2\n"
    );
    let update = update.as_str();
    s.write(&web(3, 1, IDLE, update));
    s.apply_ok();
    let before = s.replica_ids(3);
    // Replicas 1 and 2 are replaced; replica 3's new container exits.
    s.write(&web(3, 2, &fails_at_start(2), update));
    let out = s.apply();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 3 replicas failed: rolling back the others"),
        "{}",
        show(&out)
    );
    for n in [1, 2] {
        let line = format!("{} rolled back", s.replica(n));
        assert!(stderr.contains(&line), "want {line:?}:\n{stderr}");
    }
    // Every replica runs its old container again, with its own id and definition.
    assert_eq!(s.replica_ids(3), before, "{}", show(&out));
    for n in 1..=3 {
        let r = s.replica(n);
        assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &r]), "true");
        assert_eq!(docker(&["exec", &r, "sh", "-c", "echo $V"]), "1");
    }
    let names = project_containers(&s.name, "{{.Names}}");
    assert!(
        !names.iter().any(|n| n.ends_with("-composeops-old")),
        "{names:?}"
    );
    assert!(!s.state.path().join(format!("{}.journal", s.name)).exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{}", show(&out));
}

#[test]
fn max_failure_ratio_lets_the_rollout_go_on_past_a_failure() {
    let s = stack("rollout-ratio");
    let update = "        max_failure_ratio: 0.3\n";
    s.write(&web(4, 1, IDLE, update));
    s.apply_ok();
    let before = s.replica_ids(4);
    // Replica 3 fails: 1 of 4 is within 0.3, so replica 4 is still replaced.
    s.write(&web(4, 2, &fails_at_start(2), update));
    let out = s.apply();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 4 replicas failed: going on"),
        "{stderr}"
    );
    let after = s.replica_ids(4);
    assert_eq!(after[&3], before[&3], "replica 3 is rolled back");
    for n in [1, 2, 4] {
        assert_ne!(after[&n], before[&n], "replica {n} was not replaced");
        assert_eq!(docker(&["exec", &s.replica(n), "sh", "-c", "echo $V"]), "2");
    }
}

#[test]
fn monitor_rolls_back_a_container_that_dies_after_it_looked_ready() {
    let s = stack("rollout-monitor");
    let update = "        monitor: 4s\n";
    s.write(&web(1, 1, IDLE, update));
    s.apply_ok();
    let before = s.replica_ids(1);
    // Ready (running, no healthcheck) after half a second, gone after two.
    s.write(&web(1, 2, "sleep 2; exit 3", update));
    let out = s.apply();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("exited with code 3 within the monitor period"),
        "{}",
        show(&out)
    );
    assert_eq!(s.replica_ids(1), before);
}

#[test]
fn sigkill_in_the_middle_of_a_batch_is_recovered() {
    let s = stack("rollout-kill");
    let update = "        parallelism: 2\n";
    s.write(&web(2, 1, IDLE, update));
    s.apply_ok();
    s.write(&web(2, 2, IDLE, update));
    // Both replicas of the batch wait for their new containers.
    let (mut child, seen) = s.apply_paused_at(&[], "health-wait", 2);
    assert_eq!(
        seen.matches("test pause at health-wait").count(),
        2,
        "{seen}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Both replicas of the batch are in flight, each with its journal entry.
    let journal = s.state.path().join(format!("{}.journal", s.name));
    let entries: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    assert_eq!(entries.as_array().map(Vec::len), Some(2), "{entries}");
    let out = s.apply_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in [1, 2] {
        let line = format!("recovered {}", s.replica(n));
        assert!(stderr.contains(&line), "want {line:?}:\n{stderr}");
    }
    let names = project_containers(&s.name, "{{.Names}}");
    assert_eq!(names.len(), 2, "{names:?}");
    for n in [1, 2] {
        assert_eq!(docker(&["exec", &s.replica(n), "sh", "-c", "echo $V"]), "2");
    }
    assert!(!journal.exists());
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
}
