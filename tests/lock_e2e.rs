//! `composeops lock` and the registry resolver against the test bed's real registries
//! (plain HTTP on 127.0.0.1, one without auth, one with htpasswd auth).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use composeops::lock::Lockfile;
use composeops::resolve::{Platform, ResolveOptions, Resolver};
use pretty_assertions::assert_eq;
use sha2::{Digest, Sha256};

/// A compose directory with `services` (`name -> image`) and an empty Docker config, so the
/// user's own `~/.docker` never leaks into a test.
struct Stack {
    dir: tempfile::TempDir,
    docker_config: tempfile::TempDir,
}

impl Stack {
    fn new(services: &[(&str, &str)]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let docker_config = tempfile::tempdir().unwrap();
        std::fs::write(docker_config.path().join("config.json"), "{}").unwrap();
        let s = Stack { dir, docker_config };
        s.write(services);
        s
    }

    fn write(&self, services: &[(&str, &str)]) {
        let mut y = String::from("services:\n");
        for (name, image) in services {
            y.push_str(&format!("  {name}:\n    image: {image}\n"));
        }
        std::fs::write(self.dir.path().join("compose.yaml"), y).unwrap();
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with_config(args, self.docker_config.path())
    }

    fn run_with_config(&self, args: &[&str], docker_config: &Path) -> std::process::Output {
        composeops()
            .current_dir(self.dir.path())
            .env("DOCKER_CONFIG", docker_config)
            .env_remove("DOCKER_DEFAULT_PLATFORM")
            .arg("lock")
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    }

    fn lock_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "composeops lock {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn lockfile(&self) -> Lockfile {
        Lockfile::read(&self.dir.path().join("composeops.lock"))
            .unwrap()
            .expect("composeops.lock written")
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("composeops.lock")).unwrap()
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds `variant` as `REGISTRY/composeops-test/<unique>:v1`, pushes it, returns (tag, digest).
fn pushed(
    registry: &str,
    prefix: &str,
    variant: &str,
    guard: &mut ProjectGuard,
) -> (String, String) {
    let tag = format!("{registry}/composeops-test/{}:v1", unique_project(prefix));
    guard.image(&tag);
    build_app_image(&tag, variant);
    let digest = push_image(&tag);
    (tag, digest)
}

/// The engine's platform in Docker's names (`docker info` says x86_64, indexes say amd64).
fn engine_platform() -> Platform {
    let s = docker(&["info", "-f", "{{.OSType}}/{{.Architecture}}"]);
    let (os, arch) = s.split_once('/').unwrap();
    Platform::from_parts(os, arch)
}

#[test]
fn lock_writes_the_digest_the_registry_serves_and_check_passes() {
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-writes"));
    let (tag, digest) = pushed(&tb.registry, "lock-writes", "v1", &mut guard);
    let stack = Stack::new(&[("web", &tag), ("worker", &tag)]);

    let out = stack.lock_ok(&[]);
    assert!(
        out.contains(&format!("+ {tag} ")) && out.contains("(web, worker)"),
        "{out}"
    );
    let lock = stack.lockfile();
    assert_eq!(
        lock.images.len(),
        1,
        "one entry per reference, not per service"
    );
    let e = &lock.images[&tag];
    assert_eq!(e.digest, digest, "the digest docker push reported");
    assert_eq!(
        e.platform_digest.as_deref(),
        Some(digest.as_str()),
        "single-platform image"
    );
    assert_eq!(e.index_digest, None);
    assert_eq!(e.repository, repository_of(&tag));
    assert_eq!(e.tag.as_deref(), Some("v1"));
    assert_eq!(lock.platform, Platform::host().to_string());

    let out = stack.run(&["--check"]);
    assert!(
        out.status.success(),
        "fresh lock must pass --check:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        text(&out)
    );

    // Re-locking an unchanged project leaves the file byte-for-byte the same.
    let before = stack.lock_text();
    std::thread::sleep(Duration::from_millis(1100));
    stack.lock_ok(&["--update"]);
    assert_eq!(stack.lock_text(), before);
}

#[test]
fn check_fails_after_the_tag_moves_and_update_follows_it() {
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-moves"));
    let (moving, d1) = pushed(&tb.registry, "lock-moves", "v1", &mut guard);
    let (steady, steady_digest) = pushed(&tb.registry, "lock-steady", "v1", &mut guard);
    let stack = Stack::new(&[("web", &moving), ("db", &steady)]);
    stack.lock_ok(&[]);
    assert_eq!(stack.lockfile().images[&moving].digest, d1);

    // A new release under the same tag.
    build_app_image(&moving, "v2");
    let d2 = push_image(&moving);
    assert_ne!(d1, d2);

    let out = stack.run(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "service web: image {moving} is locked to {d1} but the registry now serves {d2}"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("service db"),
        "only the moved service is listed: {stdout}"
    );

    let out = stack.run(&["--check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["problem"], "moved");
    assert_eq!(v["problems"][0]["services"], serde_json::json!(["web"]));
    assert_eq!(v["problems"][0]["current"], d2.as_str());

    // Plain `lock` keeps what is locked (like Cargo.lock); --update SERVICE moves only that one.
    stack.lock_ok(&[]);
    assert_eq!(stack.lockfile().images[&moving].digest, d1);
    let out = stack.lock_ok(&["--update", "web"]);
    assert!(out.contains(&format!("~ {moving} ")), "{out}");
    let lock = stack.lockfile();
    assert_eq!(lock.images[&moving].digest, d2);
    assert_eq!(lock.images[&steady].digest, steady_digest);
    let out = stack.run(&["--check"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_fails_when_a_service_image_is_not_locked() {
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-missing"));
    let (a, _) = pushed(&tb.registry, "lock-missing-a", "v1", &mut guard);
    let (b, _) = pushed(&tb.registry, "lock-missing-b", "v1", &mut guard);
    let stack = Stack::new(&[("web", &a)]);
    stack.lock_ok(&[]);
    stack.write(&[("web", &a), ("api", &b)]);
    let out = stack.run(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("service api: image {b} is not in composeops.lock")),
        "{stdout}"
    );

    // --locked mode (library): the same gap is an error naming the service and image.
    let project = load_project(stack.dir.path());
    let e = composeops::lock::locked_images(&project, &stack.lockfile())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("service api: image {b} is not in composeops.lock")),
        "{e}"
    );
    stack.lock_ok(&[]);
    let got = composeops::lock::locked_images(&project, &stack.lockfile()).unwrap();
    assert_eq!(got["api"].digest, stack.lockfile().images[&b].digest);
}

#[test]
fn auth_registry_uses_docker_config_credentials_and_fails_clearly_without() {
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-auth"));
    let (tag, digest) = pushed(&tb.auth_registry, "lock-auth", "v1", &mut guard);
    let stack = Stack::new(&[("private", &tag)]);

    let out = stack.run(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no credentials must fail:\n{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("service private"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry {} refused access to image {tag}",
            tb.auth_registry
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("run `docker login {}`", tb.auth_registry)),
        "{stderr}"
    );
    assert!(stderr.contains("DOCKER_CONFIG"), "{stderr}");

    let logged_in = docker_config_logged_in();
    let out = stack.run_with_config(&[], logged_in.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stack.lockfile().images[&tag].digest, digest);
    let out = stack.run_with_config(&["--check"], logged_in.path());
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_registry_tokens_are_fetched_with_credentials_and_reused() {
    // Docker Hub's scheme in front of the test bed's registry: a 401 naming a token realm,
    // tokens for the repository's pull scope, given only for the right credentials.
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-bearer"));
    let (tag, digest) = pushed(&tb.registry, "lock-bearer", "v1", &mut guard);
    let gate = BearerGate::start(&tb.registry, "robot", "t0ken");
    let image = tag.replacen(&tb.registry, &gate.addr, 1);
    let repo = image
        .split_once('/')
        .unwrap()
        .1
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let wanted: indexmap::IndexMap<String, String> = [("app".to_string(), image.clone())].into();
    let config = tempfile::tempdir().unwrap();
    let auth = base64_encode("robot:t0ken");
    let json = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, gate.addr);
    std::fs::write(config.path().join("config.json"), json).unwrap();
    let opts = ResolveOptions {
        docker_config: Some(config.path().into()),
        ..Default::default()
    };

    let got = Resolver::new(opts.clone())
        .resolve_named(&wanted)
        .await
        .unwrap();
    assert_eq!(got["app"].digest, digest);
    let seen = gate.seen();
    assert_eq!(
        seen,
        vec![
            format!("HEAD /v2/{repo}/manifests/v1 -> 401"),
            format!(
                "GET /token?scope=repository%3A{}%3Apull&service=gate as robot -> 200",
                repo.replace('/', "%2F")
            ),
            format!("HEAD /v2/{repo}/manifests/v1 with token -> 200"),
        ]
    );

    // A second run in the same process (the agent's next check) sends the token it holds.
    let got = Resolver::new(opts.clone())
        .resolve_named(&wanted)
        .await
        .unwrap();
    assert_eq!(got["app"].digest, digest);
    assert_eq!(
        gate.seen()[3..],
        [format!("HEAD /v2/{repo}/manifests/v1 with token -> 200")]
    );

    // Wrong credentials: the token got with the right ones is not sent for them; the token
    // server refuses, and the error says to log in.
    let bad = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        gate.addr,
        base64_encode("robot:wrong")
    );
    std::fs::write(bad.path().join("config.json"), json).unwrap();
    let err = Resolver::new(ResolveOptions {
        docker_config: Some(bad.path().into()),
        ..Default::default()
    })
    .resolve_named(&wanted)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("registry {} refused access", gate.addr)),
        "{err}"
    );
    assert!(err.contains("token server"), "{err}");
    assert!(
        err.contains(&format!("docker login {}", gate.addr)),
        "{err}"
    );
    let scope = format!("repository%3A{}%3Apull", repo.replace('/', "%2F"));
    assert_eq!(
        gate.seen()[4..],
        [
            format!("HEAD /v2/{repo}/manifests/v1 -> 401"),
            format!("GET /token?scope={scope}&service=gate as robot -> 401"),
        ]
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn registry_errors_name_the_image_and_registry_and_say_what_to_do() {
    let tb = testbed();
    // Unknown tag.
    let unknown = format!(
        "{}/composeops-test/{}:nope",
        tb.registry,
        unique_project("lock-unknown")
    );
    let stack = Stack::new(&[("ghost", &unknown)]);
    let out = stack.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "service ghost: image {unknown} not found in registry {}",
            tb.registry
        )),
        "{stderr}"
    );
    assert!(stderr.contains("push the image"), "{stderr}");
    assert!(
        !stack.dir.path().join("composeops.lock").exists(),
        "nothing written on error"
    );

    // Unreachable registry (a closed port on 127.0.0.1).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let image = format!("{closed}/app:v1");
    stack.write(&[("down", &image)]);
    let out = stack.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "service down: cannot reach registry {closed} for image {image}"
        )),
        "{stderr}"
    );

    // Malformed manifest, from a fake registry.
    let fake = FakeRegistry::start(br#"{"schemaVersion":2,"mediaType":"text/html"}"#);
    let image = format!("{}/app:v1", fake.addr);
    stack.write(&[("odd", &image)]);
    let out = stack.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("service odd: registry {} served a manifest for image {image} that composeops cannot use", fake.addr)),
        "{stderr}"
    );
    assert!(stderr.contains("text/html"), "{stderr}");
}

#[test]
fn image_index_resolves_to_the_engine_platform() {
    let tb = testbed();
    let mut guard = ProjectGuard::new(unique_project("lock-index"));
    let repo = format!("composeops-test/{}", unique_project("lock-index"));
    let engine = engine_platform();
    let other = if engine.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    // Two single-platform images in one repository, then an index over both under tag v1.
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for (variant, arch) in [("v2", other), ("v1", engine.architecture.as_str())] {
        let tag = format!("{}/{repo}:{variant}-{arch}", tb.registry);
        guard.image(&tag);
        build_app_image(&tag, variant);
        let digest = push_image(&tag);
        let (status, body) = http_get(
            &tb.registry,
            &format!("/v2/{repo}/manifests/{digest}"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let media_type = serde_json::from_str::<serde_json::Value>(&body).unwrap()["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        entries.push(serde_json::json!({
            "mediaType": media_type, "digest": digest, "size": body.len(),
            "platform": {"os": engine.os, "architecture": arch},
        }));
        digests.push(digest);
    }
    let engine_digest = digests[1].clone();
    let other_digest = digests[0].clone();
    for (tag, media_type) in [
        ("oci", "application/vnd.oci.image.index.v1+json"),
        (
            "list",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    ] {
        let mut manifests = entries.clone();
        if tag == "list" {
            for m in &mut manifests {
                m["mediaType"] =
                    serde_json::json!("application/vnd.docker.distribution.manifest.v2+json");
            }
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type, "manifests": manifests,
        }))
        .unwrap();
        let index_digest = format!("sha256:{}", hex::encode(Sha256::digest(&index)));
        let (status, resp) = http_put(
            &tb.registry,
            &format!("/v2/{repo}/manifests/{tag}"),
            media_type,
            &index,
        );
        assert_eq!(status, 201, "PUT index: {resp}");

        let image = format!("{}/{repo}:{tag}", tb.registry);
        let stack = Stack::new(&[("multi", &image)]);
        stack.lock_ok(&["--platform", &engine.to_string()]);
        let e = stack.lockfile().images[&image].clone();
        assert_eq!(
            e.digest, index_digest,
            "{tag}: the index digest is what is pulled"
        );
        assert_eq!(e.index_digest.as_deref(), Some(index_digest.as_str()));
        assert_eq!(
            e.platform_digest.as_deref(),
            Some(engine_digest.as_str()),
            "{tag}: engine's platform"
        );
        // The default platform is the host's, which is the local engine's.
        assert_eq!(Platform::host(), engine);

        // Another platform selects the other entry (the selection is not "first entry").
        std::fs::remove_file(stack.dir.path().join("composeops.lock")).unwrap();
        stack.lock_ok(&["--platform", &format!("{}/{other}", engine.os)]);
        let e = stack.lockfile().images[&image].clone();
        assert_eq!(e.platform_digest.as_deref(), Some(other_digest.as_str()));
        assert_eq!(stack.lockfile().platform, format!("{}/{other}", engine.os));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_count_for_20_services_over_8_distinct_images() {
    let tb = testbed();
    let proxy = CountingProxy::start(&tb.registry);
    let mut guard = ProjectGuard::new(unique_project("lock-count"));
    let mut images = Vec::new();
    for i in 0..8 {
        let tag = format!(
            "{}/composeops-test/{}:v1",
            tb.registry,
            unique_project(&format!("lock-count{i}"))
        );
        guard.image(&tag);
        docker(&["tag", &tb.base_image, &tag]);
        push_image(&tag);
        // The same repository through the counting proxy.
        images.push(tag.replacen(&tb.registry, &proxy.addr, 1));
    }
    let services: Vec<(String, String)> = (0..20)
        .map(|i| (format!("svc{i:02}"), images[i % 8].clone()))
        .collect();
    let refs: Vec<(&str, &str)> = services
        .iter()
        .map(|(s, i)| (s.as_str(), i.as_str()))
        .collect();
    let stack = Stack::new(&refs);
    let project = load_project(stack.dir.path());

    // Plan mode: one HEAD per distinct reference.
    let opts = ResolveOptions {
        docker_config: Some(stack.docker_config.path().into()),
        ..Default::default()
    };
    let resolver = Resolver::new(opts.clone());
    let resolved = resolver.resolve_services(&project).await.unwrap();
    assert_eq!(resolved.len(), 20);
    let stats = resolver.stats();
    assert_eq!(
        (stats.lookups, stats.manifest_heads, stats.manifest_gets),
        (8, 8, 0)
    );
    let wire = proxy.requests();
    eprintln!("plan of 20 services / 8 images: {stats:?}; on the wire: {wire:?}");
    // No auth probe before the HEADs: an open registry answers the first request.
    assert_eq!(count(&wire, "HEAD"), 8, "{wire:?}");
    assert_eq!(wire.len(), 8, "{wire:?}");

    // Lock mode, fresh: HEAD + GET by digest per image.
    proxy.reset();
    let outcome = composeops::lock::lock(&project, None, &composeops::lock::Update::Missing, &opts)
        .await
        .unwrap();
    assert_eq!(outcome.lock.images.len(), 8);
    let wire = proxy.requests();
    eprintln!(
        "fresh lock of 20 services / 8 images: {:?}; on the wire: {} requests",
        outcome.stats,
        wire.len()
    );
    assert_eq!(
        (outcome.stats.manifest_heads, outcome.stats.manifest_gets),
        (8, 8)
    );
    assert_eq!(count(&wire, "HEAD"), 8);
    assert_eq!(wire.len(), 16, "{wire:?}");

    // Lock --check: HEAD only.
    proxy.reset();
    let report = composeops::lock::check(&project, &outcome.lock, &opts)
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.stats.manifest_requests(), 8);
    assert_eq!(proxy.requests().len(), 8);
}

const IMAGE_MANIFEST: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_error_500_is_asked_again_then_reported() {
    // `app:v1` from a registry whose first `failures` answers are 500s.
    async fn resolve_after(failures: usize) -> (String, Result<String, String>) {
        let fake = FakeRegistry::start_failing(IMAGE_MANIFEST, failures);
        let wanted: indexmap::IndexMap<String, String> =
            [("s".to_string(), format!("{}/app:v1", fake.addr))].into();
        let got = Resolver::new(ResolveOptions::default())
            .resolve_named(&wanted)
            .await
            .map(|r| r["s"].digest.clone())
            .map_err(|e| e.to_string());
        (fake.addr, got)
    }
    // Two 500s (a tag read while it is written): the third answer is taken.
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(IMAGE_MANIFEST)));
    assert_eq!(resolve_after(2).await.1, Ok(digest));
    // Three: the registry's error is reported (a HEAD's answer has no body, so no code).
    let (addr, got) = resolve_after(3).await;
    let err = got.unwrap_err();
    assert!(
        err.contains(&format!("registry {addr}")) && err.contains("500 Internal Server Error"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_are_limited_per_registry_and_time_out() {
    // 10 distinct tags on a registry that takes 200 ms per request: at most 4 at once.
    let fake = FakeRegistry::start_slow(IMAGE_MANIFEST, Duration::from_millis(200));
    let wanted: indexmap::IndexMap<String, String> = (0..10)
        .map(|i| (format!("s{i}"), format!("{}/app:t{i}", fake.addr)))
        .collect();
    let resolver = Resolver::new(ResolveOptions {
        per_registry_limit: 4,
        ..Default::default()
    });
    let got = resolver.resolve_named(&wanted).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(resolver.stats().lookups, 10);
    let max = fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=4).contains(&max),
        "at most 4 requests in flight, saw {max}"
    );

    // A registry that never answers: a timeout error naming image and registry.
    let hung = FakeRegistry::start_slow(IMAGE_MANIFEST, Duration::MAX);
    let image = format!("{}/app:v1", hung.addr);
    let wanted: indexmap::IndexMap<String, String> =
        [("slow".to_string(), image.clone())].into_iter().collect();
    let opts = ResolveOptions {
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let e = Resolver::new(opts)
        .resolve_named(&wanted)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.contains(&format!(
            "service slow: registry {} did not answer for image {image}",
            hung.addr
        )),
        "{e}"
    );
}

fn count(wire: &[String], method: &str) -> usize {
    wire.iter()
        .filter(|l| l.starts_with(&format!("{method} ")))
        .count()
}

fn load_project(dir: &Path) -> composeops::model::Project {
    let mut o = composeops::load::LoadOptions::from_process();
    o.cwd = dir.to_path_buf();
    composeops::load::load(&o).unwrap().project
}

/// PUT `body` to a 127.0.0.1 registry; returns the status and the response head.
fn http_put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    assert!(addr.starts_with("127.0.0.1:"));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

/// Bytes each proxied connection sent upstream.
type ConnLog = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A TCP forwarder to a registry that records every HTTP request line sent through it.
struct CountingProxy {
    addr: String,
    log: ConnLog,
}

impl CountingProxy {
    fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log: ConnLog = Arc::default();
        let upstream = upstream.to_string();
        let conns = log.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
                conns.lock().unwrap().push(buf.clone());
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut chunk) {
                        if n == 0 || s_write.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { addr, log }
    }

    /// Request lines (`METHOD PATH`) seen so far; requests here have no bodies.
    fn requests(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        let mut out = Vec::new();
        for conn in self.log.lock().unwrap().iter() {
            let data = conn.lock().unwrap();
            let text = String::from_utf8_lossy(&data);
            for line in text.split("\r\n") {
                let mut parts = line.split(' ');
                if let (Some(m), Some(p), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                    if v.starts_with("HTTP/") && ["GET", "HEAD", "PUT", "POST"].contains(&m) {
                        out.push(format!("{m} {p}"));
                    }
                }
            }
        }
        out
    }

    fn reset(&self) {
        for conn in self.log.lock().unwrap().iter() {
            conn.lock().unwrap().clear();
        }
    }
}

/// A registry that serves `manifest` for every tag (to test what composeops does with a
/// manifest it cannot use).
struct FakeRegistry {
    addr: String,
    /// Most requests in flight at once.
    max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeRegistry {
    fn start(manifest: &'static [u8]) -> FakeRegistry {
        FakeRegistry::start_slow(manifest, Duration::ZERO)
    }

    /// Answers each request after `delay` (`Duration::MAX`: never).
    fn start_slow(manifest: &'static [u8], delay: Duration) -> FakeRegistry {
        FakeRegistry::start_with(manifest, delay, 0)
    }

    /// Answers the first `failures` requests with a 500, as a registry reading a tag being
    /// written does.
    fn start_failing(manifest: &'static [u8], failures: usize) -> FakeRegistry {
        FakeRegistry::start_with(manifest, Duration::ZERO, failures)
    }

    fn start_with(manifest: &'static [u8], delay: Duration, failures: usize) -> FakeRegistry {
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(failures));
        use std::sync::atomic::{AtomicUsize, Ordering};
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (inf, max) = (in_flight.clone(), max_in_flight.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(manifest)));
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let digest = digest.clone();
                let (inf, max) = (inf.clone(), max.clone());
                let failures = failures.clone();
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            match std::io::BufRead::read_line(&mut reader, &mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push_str(&line);
                        }
                        let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        if delay == Duration::MAX {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                        std::thread::sleep(delay);
                        inf.fetch_sub(1, Ordering::SeqCst);
                        let fail = failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if fail {
                            let body =
                                r#"{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}"#;
                            let _ = write!(
                                conn,
                                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            continue;
                        }
                        let is_head = head.starts_with("HEAD ");
                        let is_manifest = head.contains("/manifests/");
                        let body: &[u8] = if is_manifest { manifest } else { b"{}" };
                        let mut resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                            body.len()
                        );
                        if is_manifest {
                            resp.push_str(&format!("Docker-Content-Digest: {digest}\r\n"));
                        }
                        resp.push_str("\r\n");
                        let _ = conn.write_all(resp.as_bytes());
                        if !is_head {
                            let _ = conn.write_all(body);
                        }
                    }
                });
            }
        });
        FakeRegistry {
            addr,
            max_in_flight,
        }
    }
}

/// A registry front that speaks Docker's token auth: a request without a valid token gets a
/// `401` whose challenge names the token realm; `/token` gives a token for the credentials
/// `user:password` (Basic); a request with that token is forwarded to `upstream`. One request
/// per connection.
struct BearerGate {
    addr: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl BearerGate {
    fn start(upstream: &str, user: &str, password: &str) -> BearerGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (log, upstream, realm) = (seen.clone(), upstream.to_string(), addr.clone());
        let expected = format!("Basic {}", base64_encode(&format!("{user}:{password}")));
        let user = user.to_string();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    match std::io::BufRead::read_line(&mut reader, &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push(line.trim_end().to_string()),
                    }
                }
                let Some(request) = head.first().cloned() else {
                    continue;
                };
                let target: Vec<&str> = request.split(' ').take(2).collect();
                let what = target.join(" ");
                let header = |name: &str| {
                    head.iter().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                };
                let authz = header("authorization").unwrap_or_default();
                if target[1].starts_with("/token") {
                    let ok = authz == expected;
                    let (status, body) = if ok {
                        ("200 OK", r#"{"token":"tok-1","expires_in":300}"#)
                    } else {
                        (
                            "401 Unauthorized",
                            r#"{"details":"incorrect username or password"}"#,
                        )
                    };
                    log.lock().unwrap().push(format!(
                        "{what}{} -> {}",
                        if authz.is_empty() {
                            String::new()
                        } else {
                            format!(" as {user}")
                        },
                        &status[..3]
                    ));
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                if authz != "Bearer tok-1" {
                    log.lock().unwrap().push(format!("{what} -> 401"));
                    let _ = write!(
                        conn,
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\",service=\"gate\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                }
                // Forward, without the token, and relay the answer to the end.
                let mut up = TcpStream::connect(&upstream).unwrap();
                let mut out = format!("{request}\r\n");
                for l in &head[1..] {
                    let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if !["authorization", "connection", "host"].contains(&name.as_str()) {
                        out.push_str(&format!("{l}\r\n"));
                    }
                }
                out.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
                up.write_all(out.as_bytes()).unwrap();
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                let status = String::from_utf8_lossy(&answer[..answer.len().min(12)])
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                log.lock()
                    .unwrap()
                    .push(format!("{what} with token -> {status}"));
                let _ = conn.write_all(&answer);
            }
        });
        BearerGate { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}
