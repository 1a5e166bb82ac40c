//! Two runs on one project, each with its own state directory (the systemd agent's and an
//! operator's manual apply): the per-engine project lock lets only one change it, and a run
//! killed mid-update under one state directory is recovered by the next run under another.
//! Real engine and registry; run with scripts/test.sh.

mod common;

use common::stack::{show, Stack};
use common::*;

fn compose(image: &str, greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    environment:
      GREETING: "{greeting}"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 3
  worker:
    image: {image}
"#
    )
}

/// A stack applied with greeting `one`, then an apply of `two` under the stack's own state
/// directory, paused while its new container starts: the stack, its image and that run.
fn paused_mid_update(prefix: &str) -> (Stack, String, std::process::Child) {
    let mut s = Stack::new(prefix);
    let image = format!("{}/app-{}:1", testbed().registry, s.name);
    build_app_image(&image, "v1");
    s.guard.image(image.clone());
    s.write(&compose(&image, "one"));
    s.apply_ok();
    s.write(&compose(&image, "two"));
    let (first, seen) = s.apply_paused_at(&["--wait-timeout", "30s"], "health-wait", 1);
    assert!(seen.contains("test pause at health-wait"), "{seen}");
    (s, image, first)
}

/// An apply of `s` under the state directory `state` recovers the interrupted run it finds
/// and leaves one container per service, no transitional leftovers.
fn recovers_under(s: &Stack, state: &str) {
    let out = s.run(&["apply", "--state-dir", state, "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recovering an interrupted apply"),
        "{}",
        show(&out)
    );
    let names: Vec<String> = container_ids(&s.name).into_keys().collect();
    assert_eq!(
        names,
        [format!("{}-web-1", s.name), format!("{}-worker-1", s.name)],
        "one container per service, no transitional leftovers"
    );
}

#[test]
fn runs_with_different_state_directories_never_both_change_a_project() {
    let (s, _image, mut first) = paused_mid_update("two-states");
    let other_state = tempfile::tempdir().unwrap();
    let other = other_state.path().to_str().unwrap().to_string();
    let mid_update = container_ids(&s.name);

    // A second apply under another state directory must not touch it.
    let second = s.run(&["apply", "--state-dir", &other, "--lock-timeout", "1s"]);
    assert_eq!(second.status.code(), Some(1), "{}", show(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("holds the lock"),
        "{}",
        show(&second)
    );
    assert_eq!(
        container_ids(&s.name),
        mid_update,
        "the second apply changed the project"
    );

    // Killed mid-update: the next run, under the other state directory, finds the journal the
    // first one left and finishes its work instead of fighting its containers.
    first.kill().unwrap();
    first.wait().unwrap();
    recovers_under(&s, &other);
    assert!(!s.state.path().join(format!("{}.journal", s.name)).exists());
    for state in [s.state.path().to_str().unwrap(), other.as_str()] {
        let plan = s.run(&["plan", "--detailed-exitcode", "--state-dir", state]);
        assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    }
    let env = s.inspect_service("web", "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(env.contains("GREETING=two"), "{env}");
}

#[test]
fn a_lock_taken_on_a_wrong_guess_of_the_name_leaves_the_other_project_recoverable() {
    // Project A, killed mid-update under its state directory: the engine lock's record
    // names that directory, where the journal is.
    let (a, image, mut first) = paused_mid_update("guess-a");
    first.kill().unwrap();
    first.wait().unwrap();

    // Project B lives in a directory named like A, and names itself in its file: apply,
    // without -p, first guesses A from the directory (and takes A's free lock while B's files
    // load), then drops that guess for B. It must apply B and leave A's record alone.
    let b_name = unique_project("guess-b");
    let _b_guard = ProjectGuard::new(b_name.clone());
    let parent = tempfile::tempdir().unwrap();
    let b_dir = parent.path().join(&a.name);
    std::fs::create_dir(&b_dir).unwrap();
    std::fs::write(
        b_dir.join("compose.yaml"),
        format!("name: {b_name}\nservices:\n  solo:\n    image: {image}\n"),
    )
    .unwrap();
    let b_state = tempfile::tempdir().unwrap();
    let b_apply = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_composeops"))
            .current_dir(&b_dir)
            .env("COMPOSEOPS_STATE_DIR", b_state.path())
            .env_remove("COMPOSE_PROJECT_NAME")
            .args(args)
            .output()
            .unwrap()
    };
    let out = b_apply(&["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        container_ids(&b_name).into_keys().collect::<Vec<_>>(),
        [format!("{b_name}-solo-1")]
    );
    let again = b_apply(&["apply"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("No changes: {b_name}")),
        "{}",
        show(&again)
    );
    // `plan` guesses the same way (without a lock): B's plan, not A's.
    let plan = b_apply(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    std::fs::write(
        b_dir.join("compose.yaml"),
        format!("name: {b_name}\nservices:\n  solo:\n    image: {image}\n    environment:\n      X: \"1\"\n"),
    )
    .unwrap();
    let plan = b_apply(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", show(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("solo"),
        "{}",
        show(&plan)
    );

    // A's next apply, under a third state directory, still finds A's journal and recovers.
    let third_state = tempfile::tempdir().unwrap();
    recovers_under(&a, third_state.path().to_str().unwrap());
}
