//! `--progress` on a real pull: `json` writes only JSON objects on stderr, each layer's status
//! changes among them (layers shared with other test images arrive as "Already exists"); `plain` one line per step; `quiet` nothing but warnings.

mod common;

use common::stack::{show, Stack};
use common::*;

#[test]
fn progress_modes_show_a_pull_their_way() {
    let mut s = Stack::new("progress");
    let tag = format!("{}/progress-{}:1", testbed().registry, s.name);
    build_app_image(&tag, "v1");
    s.guard.image(tag.clone());
    push_image(&tag);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag])
        .trim()
        .to_string();
    s.write(&format!("services:\n  app:\n    image: {tag}\n"));

    let pull_fresh = |mode: &str| {
        let _ = docker_output(&["rm", "-f", &format!("{}-app-1", s.name)]);
        // By id: removing the tag alone leaves the image under its repo digest.
        let _ = docker_output(&["rmi", "-f", &id]);
        let out = s.run(&["--progress", mode, "apply"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = pull_fresh("json");
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["layer"].is_string() && e["status"].is_string()),
        "{err}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("pulled ") && m.contains("layers"))),
        "{err}"
    );

    let err = pull_fresh("plain");
    assert!(err.lines().any(|l| l.starts_with("pulling ")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("pulled ")), "{err}");
    assert!(
        !err.contains("Pull complete"),
        "plain shows no layer lines:\n{err}"
    );

    let err = pull_fresh("quiet");
    assert!(err.trim().is_empty(), "quiet printed:\n{err}");
}
