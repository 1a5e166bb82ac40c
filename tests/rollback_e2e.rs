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

fn id(s: &Stack, service: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.Id}}",
        &format!("{}-{service}-1", s.name),
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
    let other_id = id(&s, "other");

    let out = s.run(&["rollback", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(version(&s, "web"), "v1");
    assert_eq!(id(&s, "other"), other_id, "other is left alone");
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
