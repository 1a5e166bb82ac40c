//! End-to-end tests of `apply --gate` on the real engine and registry of the test bed: a gate
//! that exits 0 sees the plan and the images and lets apply proceed; a gate that fails, times
//! out or cannot run applies nothing; a no-op plan never runs the gate. Run with
//! scripts/test.sh.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::stack::{show, Stack};
use common::*;

impl Stack {
    /// The v1 test app, pushed as `<registry>/app-<project>:1` (removed on drop).
    fn pushed_image(&mut self) -> String {
        let image = format!("{}/app-{}:1", testbed().registry, self.name);
        build_app_image(&image, "v1");
        push_image(&image);
        self.guard.image(image.clone());
        image
    }

    /// One service `web` with `GREETING` = `greeting`.
    fn web(&self, image: &str, greeting: &str) {
        self.write(&format!(
            "services:\n  web:\n    image: {image}\n    environment:\n      GREETING: \"{greeting}\"\n"
        ));
    }

    fn web_id(&self) -> String {
        docker(&["inspect", "-f", "{{.Id}}", &format!("{}-web-1", self.name)])
    }

    fn apply_gated(&self, gate: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "--wait-timeout", "30s", "--gate", gate];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Exit 1 with `error: gate refused the plan: <why>`, and the container untouched.
fn assert_refused(s: &Stack, out: &Output, id: &str, why: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", show(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: gate refused the plan: {why}")),
        "{}",
        show(out)
    );
    assert_eq!(s.web_id(), id, "a refused plan changed the container");
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "still pending:\n{}",
        show(&plan)
    );
}

#[test]
fn refused_gates_apply_nothing() {
    let mut s = Stack::new("gate-refused");
    let image = s.pushed_image();
    s.web(&image, "hello");
    s.apply_ok();
    let id = s.web_id();
    s.web(&image, "changed");

    let out = s.apply_gated(
        "echo scanning; echo 'CVE-2026-0001 critical' >&2; exit 1",
        &[],
    );
    assert_refused(&s, &out, &id, "exit 1: scanning\nCVE-2026-0001 critical");

    let started = Instant::now();
    let out = s.apply_gated("echo waiting; sleep 60", &["--gate-timeout", "1s"]);
    assert_refused(&s, &out, &id, "no answer within 1s: waiting");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let out = s.apply_gated("/nonexistent/composeops-gate --scan", &[]);
    assert_refused(&s, &out, &id, "exit 127: ");
    assert!(
        show(&out).contains("/nonexistent/composeops-gate"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_passing_gate_sees_the_plan_and_images_and_a_noop_never_runs_it() {
    let mut s = Stack::new("gate-pass");
    let image = s.pushed_image();
    s.web(&image, "hello");
    s.apply_ok();
    let id = s.web_id();
    s.web(&image, "changed");
    let seen = s.state.path().join("gate-stdin.json");
    let env = s.state.path().join("gate-env");
    let gate = format!(
        "cat > '{}'; printf '%s\\n%s\\n' \"$COMPOSEOPS_PROJECT\" \"$COMPOSEOPS_IMAGE_WEB\" > '{}'",
        seen.display(),
        env.display()
    );
    let out = s.apply_gated(&gate, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_ne!(s.web_id(), id, "the gate passed: web must be recreated");

    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).unwrap()).expect("plan JSON on stdin");
    assert_eq!(plan["project"], s.name.as_str());
    assert_eq!(plan["services"][0]["service"], "web");
    assert_eq!(plan["services"][0]["action"], "recreate");
    let env = std::fs::read_to_string(&env).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0], s.name);
    let pinned = format!("{}@sha256:", repository_of(&image));
    assert!(lines[1].starts_with(&pinned), "{env}");

    // Nothing to do: the gate (which would refuse) is not run.
    let marker = s.state.path().join("gate-ran");
    let out = s.apply_gated(&format!("touch '{}'; exit 1", marker.display()), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!marker.exists(), "a no-op plan ran the gate");
}
