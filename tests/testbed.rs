//! Proves the local test bed prepared by scripts/testbed.sh works: base image, app images,
//! both registries, Compose v5.

mod common;

use common::*;
use pretty_assertions::assert_eq;

#[test]
fn base_image_runs_a_shell() {
    let tb = testbed();
    let out = docker(&["run", "--rm", &tb.base_image, "sh", "-c", "echo ok"]);
    assert_eq!(out, "ok");
}

#[test]
fn app_image_pushed_to_registry_can_be_pulled_back_by_digest() {
    let tb = testbed();
    let name = unique_project("testbed-app");
    let tag = format!("{}/composeops-test/{name}:v1", tb.registry);
    let mut guard = ProjectGuard::new(&name);
    guard.image(&tag);

    build_app_image(&tag, "v1");
    let digest = push_image(&tag);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "digest {digest}"
    );

    // Drop the local copy, then pull it back by digest only.
    docker(&["rmi", &tag]);
    let by_digest = format!("{}@{digest}", repository_of(&tag));
    guard.image(&by_digest);
    docker(&["pull", "-q", &by_digest]);
    assert_eq!(
        docker(&["run", "--rm", &by_digest, "cat", "/version"]),
        "v1"
    );

    // The registry serves the manifest anonymously.
    let path = format!("/v2/composeops-test/{name}/manifests/{digest}");
    let (status, _) = http_get(&tb.registry, &path, None);
    assert_eq!(status, 200);
}

#[test]
fn app_image_serves_its_version_and_stops_promptly() {
    let name = unique_project("testbed-serve");
    let tag = format!("composeops-test/{name}:v2");
    let mut guard = ProjectGuard::new(&name);
    guard.image(&tag);
    build_app_image(&tag, "v2");

    let label = format!("com.docker.compose.project={name}");
    let id = docker(&["run", "-d", "--label", &label, &tag]);
    let mut body = String::new();
    for _ in 0..50 {
        let out = docker_output(&["exec", &id, "wget", "-qO-", "http://127.0.0.1:8080/"]);
        if out.status.success() {
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(body, "v2\n");

    let started = std::time::Instant::now();
    docker(&["stop", &id]);
    assert!(
        started.elapsed().as_secs() < 5,
        "docker stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn broken_app_image_exits_with_1() {
    let name = unique_project("testbed-broken");
    let tag = format!("composeops-test/{name}:broken");
    let mut guard = ProjectGuard::new(&name);
    guard.image(&tag);
    build_app_image(&tag, "broken");
    let out = docker_output(&["run", "--rm", &tag]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn auth_registry_refuses_anonymous_access_and_accepts_the_test_user() {
    let tb = testbed();
    // scripts/testbed.sh pushed the base image there with a login.
    let manifest = "/v2/composeops-test/busybox/manifests/latest";
    assert_eq!(http_get(&tb.auth_registry, "/v2/", None).0, 401);
    assert_eq!(http_get(&tb.auth_registry, manifest, None).0, 401);
    let creds = Some((tb.auth_user.as_str(), tb.auth_password.as_str()));
    assert_eq!(http_get(&tb.auth_registry, "/v2/", creds).0, 200);
    assert_eq!(http_get(&tb.auth_registry, manifest, creds).0, 200);
    assert_eq!(
        http_get(&tb.auth_registry, "/v2/", Some((&tb.auth_user, "wrong"))).0,
        401
    );

    // docker itself: an anonymous pull fails, a logged-in one works.
    let reference = format!("{}/composeops-test/busybox:latest", tb.auth_registry);
    let anon = tempfile::tempdir().unwrap();
    std::fs::write(anon.path().join("config.json"), "{}").unwrap();
    let out = docker_cmd()
        .env("DOCKER_CONFIG", anon.path())
        .args(["pull", "-q", &reference])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "anonymous pull of {reference} succeeded"
    );
}

#[test]
fn compose_v5_is_the_reference_compose() {
    let tb = testbed();
    let out = std::process::Command::new(&tb.compose_v5)
        .arg("version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("version v5."),
        "{} version: {text}",
        tb.compose_v5.display()
    );
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"tester:s3cret"), "dGVzdGVyOnMzY3JldA==");
}

#[test]
fn unique_project_names_are_normalised_and_distinct() {
    let a = unique_project("My Test");
    let b = unique_project("My Test");
    assert_ne!(a, b);
    assert!(a.starts_with("my-test-"), "{a}");
    assert!(a
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
}

#[test]
fn composeops_binary_is_built() {
    // Only proves the binary spawns; what it prints is tested elsewhere.
    let out = composeops()
        .output()
        .expect("cannot run the composeops binary");
    assert!(out.status.code().is_some());
}
