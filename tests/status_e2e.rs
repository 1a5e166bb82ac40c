//! `composeops status` on the real engine and registry: running and locked digests, health,
//! and the last outcome recorded by an apply (a rollback included).

mod common;

use common::stack::{show, Stack};
use common::*;

fn status(s: &Stack) -> serde_json::Value {
    let out = s.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn compose(image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      \
         interval: 1s\n      retries: 3\n"
    )
}

#[test]
fn status_shows_digests_health_and_the_last_outcome() {
    let mut s = Stack::new("status");
    let good = format!("{}/status-{}:1", testbed().registry, s.name);
    let bad = format!("{}/status-{}:broken", testbed().registry, s.name);
    build_app_image(&good, "v1");
    build_app_image(&bad, "broken");
    s.guard.image(good.clone()).image(bad.clone());
    let digest = push_image(&good);
    push_image(&bad);

    s.write(&compose(&good));
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0/1 running"));

    let out = s.run(&["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = s.run(&["apply", "--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let st = status(&s);
    let web = &st["services"][0];
    assert_eq!(web["service"], "web");
    assert_eq!(web["running_digest"], digest.as_str());
    assert_eq!(web["locked_digest"], digest.as_str());
    assert_eq!(web["containers"][0]["state"], "running");
    assert_eq!(web["containers"][0]["health"], "healthy");
    assert_eq!(web["last"]["outcome"], "applied");
    assert!(st["last_apply"].is_string());

    // A broken update is rolled back: status says so, and v1 still runs.
    s.write(&compose(&bad));
    let out = s.run(&["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let st = status(&s);
    let web = &st["services"][0];
    assert_eq!(web["last"]["outcome"], "rolled-back");
    assert_eq!(web["running_digest"], digest.as_str());
    let out = s.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1/1 running") && text.contains("last   rolled-back at"),
        "{text}"
    );
}
