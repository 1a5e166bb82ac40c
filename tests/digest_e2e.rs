//! Image digests in plan and apply on the real engine and registry: a tag that moves
//! shows as a digest change for its service only, is deployed by digest, and a tag moved
//! between planning and pulling does not change what runs. Run with scripts/test.sh.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::stack::{show, Stack};
use common::*;

impl Stack {
    /// Builds `variant` as `<registry>/<app>-<project>:1`, pushes it, returns (tag, digest).
    fn push(&mut self, app: &str, variant: &str) -> (String, String) {
        let tag = format!("{}/{app}-{}:1", testbed().registry, self.name);
        build_app_image(&tag, variant);
        self.guard.image(tag.clone());
        let digest = push_image(&tag);
        (tag, digest)
    }

    /// The registry digest the container of `service` runs, from its image's RepoDigests.
    fn running_digests(&self, service: &str) -> String {
        let image = docker(&[
            "inspect",
            "-f",
            "{{.Image}}",
            &format!("{}-{service}-1", self.name),
        ]);
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .RepoDigests}}",
            image.trim(),
        ])
    }

    fn version(&self, service: &str) -> String {
        docker(&[
            "exec",
            &format!("{}-{service}-1", self.name),
            "cat",
            "/version",
        ])
        .trim()
        .to_string()
    }
}

fn two_services(a: &str, b: &str) -> String {
    format!("services:\n  a:\n    image: {a}\n  b:\n    image: {b}\n")
}

fn plan_json(s: &Stack) -> serde_json::Value {
    let out = s.run(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn service<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap()
}

#[test]
fn moved_tag_is_a_digest_change_for_that_service_only_and_deployed_by_digest() {
    let mut s = Stack::new("digest-move");
    let (a, a1) = s.push("a", "v1");
    let (b, _) = s.push("b", "v1");
    s.write(&two_services(&a, &b));
    s.apply_ok();
    assert!(s.running_digests("a").contains(&a1));

    // A new release under the same tag.
    build_app_image(&a, "v2");
    let a2 = push_image(&a);
    assert_ne!(a1, a2);

    let plan = plan_json(&s);
    let pa = service(&plan, "a");
    assert_eq!(pa["action"], "recreate", "{pa:#}");
    assert_eq!(pa["image_change"]["from"], a1.as_str(), "{pa:#}");
    assert_eq!(pa["image_change"]["to"], a2.as_str(), "{pa:#}");
    assert_eq!(service(&plan, "b")["action"], "unchanged");

    // Text: short digests, old -> new.
    let out = s.run(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let short = |d: &str| format!("sha256:{}", &d["sha256:".len().."sha256:".len() + 12]);
    assert!(
        text.contains(&format!("digest {} -> {}", short(&a1), short(&a2))),
        "{text}"
    );

    // Apply moves a (pulled by digest), and only a.
    let b_id = docker(&["inspect", "-f", "{{.Id}}", &format!("{}-b-1", s.name)]);
    s.apply_ok();
    assert!(s.running_digests("a").contains(&a2));
    assert_eq!(s.version("a"), "v2");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}}", &format!("{}-b-1", s.name)]),
        b_id
    );
    let label = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.composeops.image-digest\"}}",
        &format!("{}-a-1", s.name),
    ]);
    assert_eq!(label.trim(), a2);
    let out = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// `composeops ARGS` in `s` with debug records on stderr.
fn debug(s: &Stack, args: &[&str]) -> std::process::Output {
    let mut c = s.cmd();
    c.env("COMPOSEOPS_LOG", "composeops=debug").args(args);
    c.output().unwrap()
}

/// The debug record of how a run's registry lookups went: (answered ahead, looked up after).
fn lookups(out: &std::process::Output) -> (usize, usize) {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("registry lookups of the services"))
        .unwrap_or_else(|| panic!("no lookup record: {}", show(out)));
    let field = |k: &str| -> usize {
        let v = line.split(&format!("{k}=")).nth(1).unwrap();
        v.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("answered_ahead"), field("looked_up_after"))
}

#[test]
fn images_looked_up_ahead_of_the_load_are_taken_only_while_the_files_name_them() {
    let mut s = Stack::new("digest-ahead");
    let (a, a1) = s.push("a", "v1");
    s.write(&format!("services:\n  a:\n    image: {a}\n"));
    s.apply_ok();
    assert!(s.running_digests("a").contains(&a1));
    let remembered = s.state.path().join(format!("{}.references", s.name));
    assert_eq!(
        std::fs::read_to_string(&remembered).unwrap(),
        format!("{a}\n")
    );

    // A new release under the same tag: the lookup made as the run starts finds it, and
    // nothing is asked again once the file is loaded.
    build_app_image(&a, "v2");
    let a2 = push_image(&a);
    let out = debug(&s, &["plan", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(lookups(&out), (1, 0));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        service(&plan, "a")["image_change"]["to"],
        a2.as_str(),
        "{plan:#}"
    );

    // The file now names another image: what was found ahead for the old one is not used.
    let (b, b1) = s.push("b", "v1");
    s.write(&format!("services:\n  a:\n    image: {b}\n"));
    let out = debug(&s, &["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(lookups(&out), (0, 1));
    assert!(s.running_digests("a").contains(&b1));
    assert_eq!(
        std::fs::read_to_string(&remembered).unwrap(),
        format!("{b}\n")
    );
    let out = debug(&s, &["apply"]);
    assert_eq!(lookups(&out), (1, 0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        show(&out)
    );
}

#[test]
fn tag_moved_between_plan_and_pull_does_not_change_what_runs() {
    let mut s = Stack::new("digest-race");
    let (a, a1) = s.push("a", "v1");
    // The image is only in the registry: apply resolves the tag, then pulls.
    docker(&["rmi", &a]);
    s.write(&format!("services:\n  a:\n    image: {a}\n"));

    let mut child = s
        .cmd()
        .args(["apply", "--wait-timeout", "30s"])
        .env("COMPOSEOPS_TEST_PAUSE_AT", "resolved")
        .env("COMPOSEOPS_TEST_PAUSE_SECS", "8")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "apply ended early:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("test pause at resolved") {
            break;
        }
    }
    // The tag moves while apply is paused between resolving and pulling.
    build_app_image(&a, "v2");
    let a2 = push_image(&a);
    assert_ne!(a1, a2);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}{rest}");

    assert!(
        s.running_digests("a").contains(&a1),
        "runs what was planned"
    );
    assert_eq!(s.version("a"), "v1");
    // The next plan sees the move.
    let plan = plan_json(&s);
    assert_eq!(service(&plan, "a")["image_change"]["to"], a2.as_str());
}

#[test]
fn offline_uses_local_images_without_registry_lookups() {
    let mut s = Stack::new("digest-offline");
    let (a, _) = s.push("a", "v1");
    s.write(&format!("services:\n  a:\n    image: {a}\n"));
    s.apply_ok();
    build_app_image(&a, "v2");
    push_image(&a);
    // The local tag now names v2 (it was rebuilt here) while a runs v1: --offline compares
    // with the local image, as Compose does, and sees the change; the registry is not asked.
    let out = s.run(&["plan", "--offline", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(service(&plan, "a")["action"], "recreate");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("registry"),
        "{}",
        show(&out)
    );
}

#[test]
fn private_registry_pull_uses_docker_config_credentials() {
    let mut s = Stack::new("digest-auth");
    let tag = format!("{}/private-{}:1", testbed().auth_registry, s.name);
    build_app_image(&tag, "v1");
    s.guard.image(tag.clone());
    let digest = push_image(&tag);
    // Only in the registry: apply must resolve and pull it with credentials.
    docker(&["rmi", &tag]);
    s.write(&format!("services:\n  a:\n    image: {tag}\n"));

    // Without credentials: a clear error before any change.
    let empty = tempfile::tempdir().unwrap();
    let out = s
        .cmd()
        .env("DOCKER_CONFIG", empty.path())
        .args(["apply", "--wait-timeout", "30s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&testbed().auth_registry) && err.contains("docker login"),
        "{err}"
    );
    assert!(docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", s.name)
    ])
    .trim()
    .is_empty());

    // With a Docker config that has the credentials: resolved, pulled by digest, running.
    let config = docker_config_logged_in();
    let out = s
        .cmd()
        .env("DOCKER_CONFIG", config.path())
        .args(["apply", "--wait-timeout", "30s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(s.running_digests("a").contains(&digest));
}
