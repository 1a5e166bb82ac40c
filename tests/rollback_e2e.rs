//! `composeops rollback` on the real engine and registry: after an update moved `web` from v1
//! to v2, `rollback web` runs v1 again, leaves the other service alone, and the next plan
//! shows the files' image again.

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

#[test]
fn rollback_puts_back_the_previous_image_of_that_service_only() {
    let mut s = Stack::new("rollback");
    let web = format!("{}/rollback-{}:1", testbed().registry, s.name);
    let other = format!("{}/rollback-other-{}:1", testbed().registry, s.name);
    build_app_image(&web, "v1");
    build_app_image(&other, "v1");
    s.guard.image(web.clone()).image(other.clone());
    let v1 = push_image(&web);
    push_image(&other);
    s.write(&format!(
        "services:\n  web:\n    image: {web}\n  other:\n    image: {other}\n"
    ));
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = s.run(&["rollback"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to roll back"),
        "{}",
        show(&out)
    );

    // The tag moves to v2 and apply takes it.
    build_app_image(&web, "v2");
    let v2 = push_image(&web);
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(version(&s, "web"), "v2");
    let other_id = s.inspect_service("other", "{{.Id}}");

    let out = s.run(&["rollback", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(version(&s, "web"), "v1");
    assert_eq!(
        s.inspect_service("other", "{{.Id}}"),
        other_id,
        "other is left alone"
    );
    let image = docker(&["inspect", "-f", "{{.Image}}", &format!("{}-web-1", s.name)]);
    let running = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .RepoDigests}}",
        image.trim(),
    ]);
    assert!(running.contains(&v1), "{running}");

    // The files still say the tag, which is v2: the next plan moves forward again.
    let out = s.run(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web_plan = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "web")
        .unwrap();
    assert_eq!(web_plan["action"], "recreate");
    assert_eq!(web_plan["image_change"]["to"], v2.as_str());

    let out = s.run(&["rollback", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no service nope"));
}

/// A definition-only change (same image, another environment and command) is rolled back to
/// the previous definition; the files are untouched, so the next plan moves forward again.
#[test]
fn rollback_puts_back_the_previous_definition() {
    let s = Stack::new("rollback-def");
    let base = &testbed().base_image;
    let stack = |mode: &str, port: &str| {
        format!(
            "services:\n  web:\n    image: {base}\n    pull_policy: never\n    \
             command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n    \
             environment:\n      MODE: {mode}\n    ports: [\"127.0.0.1::{port}\"]\n  \
             other:\n    image: {base}\n    pull_policy: never\n    \
             command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n"
        )
    };
    s.write(&stack("one", "80"));
    s.apply_ok();
    s.write(&stack("two", "81"));
    s.apply_ok();
    assert!(s
        .inspect_service("web", "{{json .Config.Env}}")
        .contains("MODE=two"));
    let other_id = s.inspect_service("other", "{{.Id}}");

    let history = s.state.path().join(format!("{}.images.json", s.name));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&history).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the history holds environment values");

    let out = s.run(&["rollback", "web", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        s.inspect_service("web", "{{json .Config.Env}}")
            .contains("MODE=one"),
        "{}",
        show(&out)
    );
    let ports = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &format!("{}-web-1", s.name),
    ]);
    assert!(
        ports.contains("80/tcp") && !ports.contains("81/tcp"),
        "{ports}"
    );
    assert_eq!(
        s.inspect_service("other", "{{.Id}}"),
        other_id,
        "other is left alone"
    );

    // The files still say MODE=two: plan shows the way forward again.
    let out = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MODE"),
        "{}",
        show(&out)
    );

    // A previous definition that uses a network the files no longer define is refused,
    // before any change.
    let with_front = stack("three", "82").replace("  other:", "    networks: [front]\n  other:");
    s.write(&format!("{with_front}networks:\n  front: {{}}\n"));
    s.apply_ok();
    s.write(&stack("four", "83"));
    s.apply_ok();
    let before = s.inspect_service("web", "{{.Id}}");
    let out = s.run(&["rollback", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("uses network front"),
        "{}",
        show(&out)
    );
    assert_eq!(
        s.inspect_service("web", "{{.Id}}"),
        before,
        "nothing changed"
    );
}
