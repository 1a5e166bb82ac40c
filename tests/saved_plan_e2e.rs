//! Saved plans on the real engine and registry: `plan -o FILE` then `apply FILE` applies
//! exactly the saved plan (the image digest it resolved, even after the tag moved), and a plan
//! made stale by an edit or by a change of what runs is refused with nothing changed.

mod common;

use common::stack::{show, Stack};
use common::*;

fn version(s: &Stack, service: &str) -> String {
    docker(&[
        "exec",
        &format!("{}-{service}-1", s.name),
        "cat",
        "/version",
    ])
    .trim()
    .to_string()
}

fn compose(image: &str, rev: &str) -> String {
    format!("services:\n  app:\n    image: {image}\n    environment:\n      REV: {rev}\n")
}

#[test]
fn apply_file_runs_the_saved_digest_and_refuses_stale_plans() {
    let mut s = Stack::new("saved-plan");
    let tag = format!("{}/saved-{}:1", testbed().registry, s.name);
    build_app_image(&tag, "v1");
    s.guard.image(tag.clone());
    push_image(&tag);
    s.write(&compose(&tag, "one"));
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Saved with REV=two and the tag at v1; the tag then moves to v2.
    s.write(&compose(&tag, "two"));
    let file = s.dir.path().join("reviewed.plan.json");
    let file = file.to_str().unwrap();
    let out = s.run(&["plan", "-o", file]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("recreate"));
    build_app_image(&tag, "v2");
    push_image(&tag);

    // Applied from another directory: the file says where the project is.
    let out = composeops_in(&s, "/")
        .args(["apply", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(s
        .inspect_service("app", "{{json .Config.Env}}")
        .contains("REV=two"));
    assert_eq!(
        version(&s, "app"),
        "v1",
        "the saved digest runs, not the moved tag"
    );

    // An edit after the plan was saved: refused, nothing changed.
    let before = s.inspect_service("app", "{{.Id}}");
    let out = s.run(&["plan", "--offline", "-o", file]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    s.write(&compose(&tag, "three"));
    let out = composeops_in(&s, "/")
        .args(["apply", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the saved plan is stale") && err.contains("loads differently"),
        "{err}"
    );
    assert_eq!(s.inspect_service("app", "{{.Id}}"), before);

    // What runs changed after the plan was saved: refused, naming the container.
    let out = s.run(&["plan", "--offline", "-o", file]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    docker(&["stop", "-t", "1", &format!("{}-app-1", s.name)]);
    let out = composeops_in(&s, "/")
        .args(["apply", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "container {}-app-1 is exited (was running)",
            s.name
        )),
        "{err}"
    );
    assert_eq!(
        s.inspect_service("app", "{{.Id}}"),
        before,
        "nothing was changed"
    );

    // Flags that would change a saved plan are refused; so is a file that is not one.
    let out = composeops_in(&s, "/")
        .args(["apply", "--prune", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prune cannot change"));
    let dir = s.dir.path().to_str().unwrap().to_string();
    let out = composeops_in(&s, &dir)
        .args(["apply", "compose.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a saved plan"));
}

/// `composeops` run from `dir` with the stack's state directory, without `-p`.
fn composeops_in(s: &Stack, dir: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_composeops"));
    c.current_dir(dir)
        .env("COMPOSEOPS_STATE_DIR", s.state.path());
    c
}
