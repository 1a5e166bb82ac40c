//! `x-composeops.track` / `cooldown` and `apply --cleanup` against the test bed's real registry
//! and engine.
//!
//! One test app image is built and pushed; from it, tags 1.2.0, 1.2.1, 1.3.0, 2.0.0 and
//! 1.3.1-rc.1 are pushed as Docker v2 manifests whose image configs differ only in a label and
//! their `created` time, so the cooldown sees images of known ages without waiting: 1.2.1 is
//! 3 hours old, the others days.

mod common;

use std::sync::OnceLock;

use common::stack::{show, Stack};
use common::*;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Tag -> hours old.
const TAGS: &[(&str, i64)] = &[
    ("1.2.0", 240),
    ("1.2.1", 3),
    ("1.3.0", 48),
    ("2.0.0", 120),
    ("1.3.1-rc.1", 30),
];

struct Pushed {
    repo: String,
    /// Tag -> manifest digest.
    digests: Vec<(String, String)>,
}

impl Pushed {
    fn digest(&self, tag: &str) -> &str {
        &self.digests.iter().find(|(t, _)| t == tag).unwrap().1
    }
}

/// The repository with every tag of [`TAGS`], pushed once per test process.
fn pushed() -> &'static Pushed {
    static P: OnceLock<Pushed> = OnceLock::new();
    P.get_or_init(|| push_repository("app"))
}

/// The same tags in a second repository, for the test whose pulls tag images locally: its
/// images are not the ones the cleanup test counts.
fn pushed_elsewhere() -> &'static Pushed {
    static P: OnceLock<Pushed> = OnceLock::new();
    P.get_or_init(|| push_repository("app-registry-mode"))
}

fn push_repository(name: &str) -> Pushed {
    let repo = format!(
        "{}/cops-track-{}/{name}",
        testbed().registry,
        std::process::id()
    );
    let base = format!("{repo}:base");
    build_app_image(&base, "v1");
    push_image(&base);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let digests = rt.block_on(push_versions(&repo));
    Pushed { repo, digests }
}

/// Pushes `repo:TAG` for each of [`TAGS`]: the base image's manifest with a config whose
/// `created` is that many hours ago.
async fn push_versions(repo: &str) -> Vec<(String, String)> {
    let client = registry_client();
    let auth = RegistryAuth::Anonymous;
    let base: Reference = format!("{repo}:base").parse().unwrap();
    let docker_v2 = DOCKER_V2;
    let (raw, _) = client
        .pull_manifest_raw(&base, &auth, &[docker_v2])
        .await
        .unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let mut config = Vec::new();
    client
        .pull_blob(&base, config_digest, &mut config)
        .await
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    let mut out = Vec::new();
    for (tag, hours) in TAGS {
        let mut c = config.clone();
        let created = chrono::Utc::now() - chrono::Duration::hours(*hours);
        c["created"] = Value::String(created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        c["config"]["Labels"]["io.composeops.test.version"] = Value::String(tag.to_string());
        // Blobs are shared by content across repositories: each repository's configs are its
        // own, so that altering one (see the tampering test) touches no other test's image.
        c["config"]["Labels"]["io.composeops.test.repository"] = Value::String(repo.to_string());
        let bytes = serde_json::to_vec(&c).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let target: Reference = format!("{repo}:{tag}").parse().unwrap();
        client
            .push_blob(&target, bytes.clone(), &digest)
            .await
            .unwrap();
        let mut m = manifest.clone();
        m["config"]["digest"] = Value::String(digest);
        m["config"]["size"] = Value::from(bytes.len());
        let body = serde_json::to_vec(&m).unwrap();
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        client
            .push_manifest_raw(&target, body, docker_v2.parse().unwrap())
            .await
            .unwrap();
        out.push((tag.to_string(), manifest_digest));
    }
    out
}

fn registry_client() -> Client {
    composeops::resolve::install_crypto_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![testbed().registry.clone()]),
        ..Default::default()
    })
}

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Points `repo:to` at the manifest of `repo:from`.
async fn copy_tag(repo: &str, from: &str, to: &str) {
    let client = registry_client();
    let src: Reference = format!("{repo}:{from}").parse().unwrap();
    let (raw, _) = client
        .pull_manifest_raw(&src, &RegistryAuth::Anonymous, &[DOCKER_V2])
        .await
        .unwrap();
    let dst: Reference = format!("{repo}:{to}").parse().unwrap();
    client
        .push_manifest_raw(&dst, raw, DOCKER_V2.parse().unwrap())
        .await
        .unwrap();
}

fn compose(image: &str, track: Option<&str>, cooldown: Option<&str>) -> String {
    let mut y = format!("services:\n  web:\n    image: {image}\n");
    if track.is_some() || cooldown.is_some() {
        y.push_str("    x-composeops:\n");
    }
    if let Some(t) = track {
        y.push_str(&format!("      track: \"{t}\"\n"));
    }
    if let Some(c) = cooldown {
        y.push_str(&format!("      cooldown: {c}\n"));
    }
    y
}

fn run_ok(s: &Stack, args: &[&str]) -> String {
    let out = s.run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}:\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// (tag, digest) of the lock's entry for `reference`.
fn locked(s: &Stack, reference: &str) -> (String, String) {
    let path = s.dir.path().join("composeops.lock");
    let lock = composeops::lock::Lockfile::read(&path).unwrap().unwrap();
    let e = &lock.images[reference];
    (e.tag.clone().unwrap(), e.digest.clone())
}

fn lock_fresh(s: &Stack, args: &[&str]) -> String {
    let _ = std::fs::remove_file(s.dir.path().join("composeops.lock"));
    run_ok(s, &[&["lock"], args].concat())
}

/// The config digest of the manifest `repo@digest`.
async fn config_of(repo: &str, digest: &str) -> String {
    let r: Reference = format!("{repo}@{digest}").parse().unwrap();
    let (raw, _) = registry_client()
        .pull_manifest_raw(&r, &RegistryAuth::Anonymous, &[DOCKER_V2])
        .await
        .unwrap();
    let m: Value = serde_json::from_slice(&raw).unwrap();
    m["config"]["digest"].as_str().unwrap().to_string()
}

#[test]
fn a_config_blob_altered_on_the_registry_is_refused() {
    // Its own repository, whose 1.2.1 config (3 h old) is rewritten on the registry's disk to
    // say it is two years older, at the same length: the registry serves it as it is, and an
    // unchecked read would let it through a 24 h cooldown.
    let p = push_repository("app-tampered");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = rt.block_on(config_of(&p.repo, p.digest("1.2.1")));
    let hex = config.strip_prefix("sha256:").unwrap();
    let data =
        std::path::PathBuf::from(std::env::var("COMPOSEOPS_TEST_REGISTRY_DATA").unwrap()).join(
            format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]),
        );
    let text = std::fs::read_to_string(&data).unwrap();
    let year = (chrono::Utc::now() - chrono::Duration::hours(3))
        .format("%Y")
        .to_string();
    let older = (year.parse::<i32>().unwrap() - 2).to_string();
    let forged = text.replacen(
        &format!("\"created\":\"{year}-"),
        &format!("\"created\":\"{older}-"),
        1,
    );
    assert!(forged != text && forged.len() == text.len(), "{text}");
    std::fs::write(&data, forged).unwrap();
    // Put back on the way out, whatever happens: the registry outlives the test.
    struct Restore(std::path::PathBuf, String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, &self.1);
        }
    }
    let _restore = Restore(data.clone(), text.clone());

    let s = Stack::new("track-tampered");
    let image = format!("{}:1.2.0", p.repo);
    s.write(&compose(&image, Some("~1.2"), Some("24h")));
    let out = s.run(&["lock"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        err.contains(&format!("the blob served for {config} hashes to sha256:")),
        "{err}"
    );
    assert!(!s.dir.path().join("composeops.lock").exists());
}

#[test]
fn lock_update_picks_the_highest_version_in_range_after_the_cooldown() {
    let p = pushed();
    let s = Stack::new("track-lock");
    let image = format!("{}:1.2.0", p.repo);
    for (track, cooldown, want) in [
        ("~1.2", None, "1.2.1"),
        ("~1.2", Some("0s"), "1.2.1"),
        ("~1.2", Some("2h"), "1.2.1"),
        ("^1", None, "1.3.0"),
        (">=1.2.0", None, "2.0.0"),
        ("~1.3.1-rc.0", None, "1.3.1-rc.1"),
        ("~1.2", Some("24h"), "1.2.0"),
        ("^1", Some("36h"), "1.3.0"),
    ] {
        s.write(&compose(&image, Some(track), cooldown));
        let out = lock_fresh(&s, &[]);
        let (tag, digest) = locked(&s, &image);
        assert_eq!(tag, want, "track {track}, cooldown {cooldown:?}:\n{out}");
        assert_eq!(digest, p.digest(want));
    }
    // A held-back candidate is reported, in words and in --json.
    s.write(&compose(&image, Some("~1.2"), Some("24h")));
    let out = run_ok(&s, &["lock", "--update"]);
    assert!(
        out.contains("1.2.1 held back by cooldown: created 3 h ago < 24h"),
        "{out}"
    );
    let json: Value = serde_json::from_str(&run_ok(&s, &["lock", "--update", "--json"])).unwrap();
    assert_eq!(json["held_back"][&image][0]["tag"], "1.2.1", "{json:#}");
    // Once the cooldown allows it, --update moves the tag and says so.
    s.write(&compose(&image, Some("~1.2"), Some("0s")));
    let out = run_ok(&s, &["lock", "--update"]);
    assert!(out.contains(&format!("~ {image} 1.2.0 -> 1.2.1")), "{out}");
    assert_eq!(locked(&s, &image).0, "1.2.1");
    // The moved entry is checked as locked (1.2.1), not as written.
    run_ok(&s, &["lock", "--check"]);
    // Without the track, a lock still on 1.2.1 is out of date, and --update goes back.
    s.write(&compose(&image, None, None));
    let out = s.run(&["lock", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is locked to tag 1.2.1, but the service has no x-composeops.track"),
        "{text}"
    );
    run_ok(&s, &["lock", "--update"]);
    assert_eq!(
        locked(&s, &image),
        ("1.2.0".to_string(), p.digest("1.2.0").to_string())
    );
    run_ok(&s, &["lock", "--check"]);
}

#[test]
fn cooldown_holds_back_a_new_digest_of_the_same_tag() {
    let p = pushed();
    let s = Stack::new("track-same-tag");
    let stable = format!("{}:stable", p.repo);
    // In the registry only: a local pull would put images the apply test removes back.
    let retag = |from: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(copy_tag(&p.repo, from, "stable"));
    };
    retag("1.2.0");
    s.write(&compose(&stable, None, Some("24h")));
    lock_fresh(&s, &[]);
    let first = locked(&s, &stable).1;
    // `stable` now points to an image made 3 hours ago: held back, the lock keeps its digest.
    retag("1.2.1");
    let out = run_ok(&s, &["lock", "--update"]);
    assert!(
        out.contains("held back by cooldown: created 3 h ago < 24h"),
        "{out}"
    );
    assert_eq!(locked(&s, &stable).1, first);
    // Without a cooldown, the same update takes it.
    s.write(&compose(&stable, None, Some("0s")));
    run_ok(&s, &["lock", "--update"]);
    assert_ne!(locked(&s, &stable).1, first);
}

#[test]
fn bad_policy_is_an_error_naming_file_and_field() {
    let s = Stack::new("track-bad");
    s.write(&compose(
        "127.0.0.1:9/app:1",
        Some("~1.x.y"),
        Some("one day"),
    ));
    let out = s.run(&["lock"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "compose.yaml:5: services.web.x-composeops.track: invalid semver range \"~1.x.y\""
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "compose.yaml:6: services.web.x-composeops.cooldown: invalid duration \"one day\""
        ),
        "{err}"
    );
}

fn image_present(reference: &str) -> bool {
    docker_output(&["image", "inspect", reference])
        .status
        .success()
}

fn running_digest(s: &Stack) -> String {
    let name = format!("{}-web-1", s.name);
    docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.composeops.image-digest\"}}",
        &name,
    ])
}

#[test]
fn locked_moves_are_planned_applied_and_cleaned_up_two_updates_back() {
    let p = pushed();
    let s = Stack::new("track-apply");
    let image = format!("{}:1.2.0", p.repo);
    let by_digest = |t: &str| format!("{}@{}", p.repo, p.digest(t));
    for t in ["1.2.0", "1.2.1", "1.3.0"] {
        let _ = docker_output(&["rmi", &by_digest(t)]);
    }
    let apply = |s: &Stack| {
        run_ok(
            s,
            &["apply", "--locked", "--cleanup", "--wait-timeout", "30s"],
        )
    };

    // 1.2.1 is too young for 24h: the lock and the host stay on 1.2.0.
    s.write(&compose(&image, Some("~1.2"), Some("24h")));
    run_ok(&s, &["lock"]);
    assert_eq!(locked(&s, &image).0, "1.2.0");
    apply(&s);
    assert_eq!(running_digest(&s), p.digest("1.2.0"));

    // The cooldown lifted: lock --update moves to 1.2.1, plan shows it, apply deploys it.
    s.write(&compose(&image, Some("~1.2"), Some("0s")));
    run_ok(&s, &["lock", "--update"]);
    let plan = run_ok(&s, &["plan", "--locked"]);
    assert!(
        plan.contains(&format!("image {image}: 1.2.0 -> 1.2.1, digest")),
        "{plan}"
    );
    let json: Value = serde_json::from_str(&run_ok(&s, &["plan", "--locked", "--json"])).unwrap();
    let change = &json["services"][0]["image_change"];
    assert_eq!(
        (change["from_tag"].as_str(), change["to_tag"].as_str()),
        (Some("1.2.0"), Some("1.2.1")),
        "{json:#}"
    );
    apply(&s);
    assert_eq!(running_digest(&s), p.digest("1.2.1"));
    assert!(
        image_present(&by_digest("1.2.0")),
        "the previous image is the rollback target"
    );

    // Another move: the image two updates back goes, the previous one stays.
    s.write(&compose(&image, Some("^1"), Some("0s")));
    run_ok(&s, &["lock", "--update"]);
    let out = apply(&s);
    assert_eq!(running_digest(&s), p.digest("1.3.0"));
    assert!(
        image_present(&by_digest("1.2.1")),
        "previous image kept:\n{out}"
    );
    assert!(
        !image_present(&by_digest("1.2.0")),
        "image two updates back removed:\n{out}"
    );
    assert!(out.contains("removed image sha256:"), "{out}");
    // Nothing else was touched: the base image this test built is still there.
    assert!(image_present(&format!("{}:base", p.repo)));
    // A plan after the apply is empty.
    let plan = run_ok(&s, &["plan", "--locked"]);
    assert!(!plan.contains("1.3.0 ->"), "{plan}");
    for t in ["1.2.1", "1.3.0"] {
        let _ = docker_output(&["rmi", &by_digest(t)]);
    }
}

/// The agent's image check (`converge::registry_digests` with its digest memory) takes the
/// same decisions as `lock --update`, and never moves back from what it took.
#[test]
fn image_checks_honour_track_and_cooldown_and_keep_what_they_took() {
    use composeops::converge::{registry_digests, DigestUse};
    let p = pushed();
    let image = format!("{}:1.2.0", p.repo);
    let dir = tempfile::tempdir().unwrap();
    let load = |cooldown: &str| {
        std::fs::write(
            dir.path().join("compose.yaml"),
            compose(&image, Some("~1.2"), Some(cooldown)),
        )
        .unwrap();
        let mut o = composeops::load::LoadOptions::from_process();
        o.cwd = dir.path().to_path_buf();
        o.project_name = Some("track-check".into());
        composeops::load::load(&o).unwrap().project
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = DigestUse {
        scope: "track-check".into(),
        refresh: true,
        ..Default::default()
    };
    let check = |cooldown: &str| {
        let mut warnings = Vec::new();
        let none = Default::default();
        let found = rt.block_on(registry_digests(
            &load(cooldown),
            &memory,
            &none,
            &mut warnings,
        ));
        let r = found
            .get("web")
            .unwrap_or_else(|| panic!("web not resolved: {warnings:?}"));
        (r.tag.clone().unwrap(), r.digest.clone(), warnings)
    };
    let (tag, digest, w) = check("24h");
    assert_eq!(
        (tag.as_str(), digest.as_str()),
        ("1.2.0", p.digest("1.2.0"))
    );
    assert!(
        w.iter()
            .any(|w| w.ends_with("1.2.1 held back by cooldown: created 3 h ago < 24h")),
        "{w:?}"
    );
    let (tag, digest, _) = check("0s");
    assert_eq!(
        (tag.as_str(), digest.as_str()),
        ("1.2.1", p.digest("1.2.1"))
    );
    // 1.2.1 was taken already: a longer cooldown keeps it rather than going back to 1.2.0.
    let (tag, _, w) = check("24h");
    assert_eq!(tag, "1.2.1");
    assert!(w.is_empty(), "{w:?}");
}

/// Without --locked, apply resolves through the policy too, and a cooldown keeps what runs
/// (from the image history) instead of going back to an older version.
#[test]
fn registry_mode_apply_moves_forward_and_never_back() {
    let p = pushed_elsewhere();
    let mut s = Stack::new("track-registry");
    let image = format!("{}:1.2.0", p.repo);
    let by_tag = |t: &str| format!("{}:{t}", p.repo);
    s.guard.image(by_tag("1.2.0")).image(by_tag("1.2.1"));
    let apply = |s: &Stack| {
        let out = s.run(&["apply", "--wait-timeout", "30s"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    s.write(&compose(&image, Some("~1.2"), Some("24h")));
    let err = apply(&s);
    assert!(
        err.contains("1.2.1 held back by cooldown: created 3 h ago < 24h"),
        "{err}"
    );
    assert_eq!(running_digest(&s), p.digest("1.2.0"));

    s.write(&compose(&image, Some("~1.2"), Some("0s")));
    let plan = run_ok(&s, &["plan"]);
    assert!(
        plan.contains(&format!("image {image}: 1.2.0 -> 1.2.1, digest")),
        "{plan}"
    );
    apply(&s);
    assert_eq!(running_digest(&s), p.digest("1.2.1"));
    // Pulled by digest and tagged as what it is, never as the tag written.
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &by_tag("1.2.1")]),
        docker(&["inspect", "-f", "{{.Image}}", &format!("{}-web-1", s.name)])
    );

    // 1.2.1 runs: a longer cooldown keeps it rather than going back to 1.2.0.
    s.write(&compose(&image, Some("~1.2"), Some("24h")));
    let json: Value = serde_json::from_str(&run_ok(&s, &["plan", "--json"])).unwrap();
    assert_eq!(json["services"][0]["action"], "unchanged", "{json:#}");
}
