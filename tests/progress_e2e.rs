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

/// A build under `--progress json`: one event per Dockerfile step (layer `step N/M`), then the
/// `built` line; no builder output as free text.
#[test]
fn a_build_shows_its_steps_as_json_events() {
    let s = Stack::new("progress-build");
    std::fs::write(
        s.dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo one > /one\nRUN echo two > /two\n",
            testbed().base_image
        ),
    )
    .unwrap();
    s.write("services:\n  app:\n    build: .\n    command: [\"sleep\", \"600\"]\n");
    let image = format!("{}-app", s.name);
    let out = s.run(&["--progress", "json", "apply"]);
    let _ = docker_output(&["rmi", "-f", &image]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| e["layer"].as_str())
        .filter(|l| l.starts_with("step "))
        .collect();
    // The Dockerfile's 3 steps, then the LABEL steps the engine's builder adds for labels.
    let total = steps.len();
    assert!(total >= 3, "{err}");
    let expected: Vec<String> = (1..=total).map(|n| format!("step {n}/{total}")).collect();
    assert_eq!(steps, expected, "{err}");
    let built = format!("{total} steps in ");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("built ") && m.contains(&built))),
        "{err}"
    );
}
