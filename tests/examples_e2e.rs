//! Every example under examples/ applies cleanly on a real engine: each one is copied into a
//! test directory, applied under a unique project name with free ports, and must converge
//! (exit 0, an empty plan afterwards, its pages served).

mod common;

use std::path::Path;

use common::stack::{show, Stack};
use common::{copy_dir, docker, http_get, testbed};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The examples that are compose projects (examples/systemd holds unit and config files).
fn examples() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("compose.yaml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_project_applies_cleanly() {
    let names = examples();
    assert!(
        names.contains(&"quickstart".to_string()) && names.contains(&"webapp".to_string()),
        "examples found: {names:?}"
    );
    for name in names {
        apply_example(&name);
    }
}

fn apply_example(example: &str) {
    let mut stack = Stack::new(&format!("ex-{example}"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(example);
    copy_dir(&src, stack.dir.path());
    // Built images are named after the project: remove them with it.
    for svc in ["web", "api"] {
        stack.guard.image(format!("{}-{svc}", stack.name));
    }
    let port = free_port();
    let run = |args: &[&str]| {
        stack
            .cmd()
            .env("QUICKSTART_PORT", port.to_string())
            .env("WEB_PORT", port.to_string())
            .env("QUICKSTART_BASE", &testbed().base_image)
            .env("WEBAPP_BASE", &testbed().base_image)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["apply"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "examples/{example}: apply failed:\n{}",
        show(&out)
    );
    let out = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "examples/{example}: plan after apply is not empty:\n{}",
        show(&out)
    );
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/", None);
    assert_eq!(
        status, 200,
        "examples/{example}: GET / gave {status}: {body}"
    );
    let running = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
    ]);
    let expected = match example {
        "webapp" => 4, // web, two api replicas, worker
        _ => 1,
    };
    assert_eq!(
        running.lines().count(),
        expected,
        "examples/{example}: running containers: {running}"
    );
}
