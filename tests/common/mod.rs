//! Shared helpers for integration tests: the local test bed set up by `scripts/testbed.sh`
//! (Docker engine, base image, two local registries, Compose v5) and small docker CLI wrappers.
//!
//! Use from an integration test with `mod common;`. Run the suite with `scripts/test.sh`,
//! which prepares the bed and exports the environment variables read here.
#![allow(dead_code)]

pub mod engines;
pub mod stack;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What `scripts/testbed.sh` prepared (read from `COMPOSEOPS_TEST_*` and `COMPOSE_V5`).
#[derive(Debug)]
pub struct Testbed {
    /// `127.0.0.1:PORT` of the registry without auth.
    pub registry: String,
    /// `127.0.0.1:PORT` of the registry with htpasswd auth.
    pub auth_registry: String,
    pub auth_user: String,
    pub auth_password: String,
    /// Absolute path of the Compose v5 binary (the reference implementation).
    pub compose_v5: PathBuf,
    /// Local busybox base image, e.g. `composeops-test/busybox:latest`.
    pub base_image: String,
}

fn env_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "environment variable {name} is not set: run the tests with scripts/test.sh \
             (or run scripts/testbed.sh and `source .testbed/env` first)"
        ),
    }
}

/// The test bed; panics with "run scripts/test.sh" when its variables are missing.
pub fn testbed() -> &'static Testbed {
    static TB: OnceLock<Testbed> = OnceLock::new();
    TB.get_or_init(|| Testbed {
        registry: env_var("COMPOSEOPS_TEST_REGISTRY"),
        auth_registry: env_var("COMPOSEOPS_TEST_AUTH_REGISTRY"),
        auth_user: env_var("COMPOSEOPS_TEST_AUTH_USER"),
        auth_password: env_var("COMPOSEOPS_TEST_AUTH_PASSWORD"),
        compose_v5: PathBuf::from(env_var("COMPOSE_V5")),
        base_image: env_var("COMPOSEOPS_TEST_BASE_IMAGE"),
    })
}

/// The composeops binary under test.
pub fn composeops() -> assert_cmd::Command {
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_composeops"))
}

/// A `docker` command (std, not assert_cmd).
pub fn docker_cmd() -> Command {
    Command::new("docker")
}

/// Runs `docker ARGS`, panics with its output when it fails, returns trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = docker_cmd().args(args).output().expect("cannot run docker");
    check(&out, &format!("docker {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ps -a` of `project`'s containers (all states): one line in `format` each.
pub fn project_containers(project: &str, format: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    docker(&["ps", "-a", "--filter", &filter, "--format", format])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Container name -> id of `project`'s containers, all states.
pub fn container_ids(project: &str) -> std::collections::BTreeMap<String, String> {
    project_containers(project, "{{.Names}} {{.ID}}")
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect()
}

/// Runs `docker ARGS` and returns its output whatever the status.
pub fn docker_output(args: &[&str]) -> Output {
    docker_cmd().args(args).output().expect("cannot run docker")
}

fn check(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Builds a tiny test-app image `tag` FROM the base image (legacy builder, no network).
///
/// Variants (each writes its name to `/version` and has label `io.composeops.test.variant`):
/// - `"v1"`, `"v2"`: serve `/www` (index.html = "v1\n" / "v2\n") with busybox httpd on 8080;
/// - `"broken"`: the command exits 1 immediately;
/// - `"unhealthy"`: keeps running but serves nothing.
///
/// No image has a HEALTHCHECK (compose files set them). PID 1 is `sh` with a TERM trap, so
/// `docker stop` is immediate.
pub fn build_app_image(tag: &str, variant: &str) {
    let cmd = match variant {
        "v1" | "v2" => r#"["sh", "-c", "trap 'exit 0' TERM INT; httpd -f -p 8080 -h /www & wait"]"#,
        "broken" => r#"["sh", "-c", "echo 'broken test app: exiting with 1' >&2; exit 1"]"#,
        "unhealthy" => r#"["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 1; done"]"#,
        other => panic!("unknown test app variant {other:?} (v1, v2, broken, unhealthy)"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), format!("{variant}\n")).unwrap();
    std::fs::write(dir.path().join("version"), format!("{variant}\n")).unwrap();
    let www = if variant.starts_with('v') {
        "COPY www/ /www/\n"
    } else {
        ""
    };
    let dockerfile = format!(
        "FROM {base}\n{www}COPY version /version\n\
         LABEL io.composeops.test.variant={variant}\nEXPOSE 8080\nCMD {cmd}\n",
        base = testbed().base_image,
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = docker_cmd()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .expect("cannot run docker build");
    check(&out, &format!("docker build -t {tag} ({variant})"));
}

/// Pushes `tag` and returns its manifest digest (`sha256:…`). Logs in (temporary
/// DOCKER_CONFIG) when `tag` is on the auth registry.
pub fn push_image(tag: &str) -> String {
    let tb = testbed();
    let auth = tag.starts_with(&format!("{}/", tb.auth_registry));
    let cfg = if auth {
        Some(docker_config_logged_in())
    } else {
        None
    };
    let mut cmd = docker_cmd();
    if let Some(cfg) = &cfg {
        cmd.env("DOCKER_CONFIG", cfg.path());
    }
    let out = cmd
        .args(["push", tag])
        .output()
        .expect("cannot run docker push");
    check(&out, &format!("docker push {tag}"));
    let repo = repository_of(tag);
    let digests = docker(&[
        "image",
        "inspect",
        "-f",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        tag,
    ]);
    digests
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{repo}@")))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no repo digest for {repo} after push; have {digests:?}"))
}

/// `host:port/path/name:tag` -> `host:port/path/name`.
pub fn repository_of(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap();
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}

/// A temporary DOCKER_CONFIG directory logged in to the auth registry. Keep it alive while
/// used.
pub fn docker_config_logged_in() -> tempfile::TempDir {
    let tb = testbed();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let mut child = docker_cmd()
        .env("DOCKER_CONFIG", dir.path())
        .args([
            "login",
            "-u",
            &tb.auth_user,
            "--password-stdin",
            &tb.auth_registry,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run docker login");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tb.auth_password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    check(&out, &format!("docker login {}", tb.auth_registry));
    dir
}

/// A project name unique to this test process: `<prefix>-<pid>-<n>`, lowercase `[a-z0-9_-]`.
pub fn unique_project(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut p: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    p = p.trim_start_matches(['-', '_']).to_string();
    if p.is_empty() {
        p.push_str("test");
    }
    format!(
        "{p}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// On drop, removes every container, network and volume labelled
/// `com.docker.compose.project=<name>`, plus images registered with [`ProjectGuard::image`].
/// Errors are ignored.
pub struct ProjectGuard {
    pub name: String,
    images: Vec<String>,
}

impl ProjectGuard {
    pub fn new(name: impl Into<String>) -> Self {
        ProjectGuard {
            name: name.into(),
            images: Vec::new(),
        }
    }

    /// Also remove this image reference on drop.
    pub fn image(&mut self, reference: impl Into<String>) -> &mut Self {
        self.images.push(reference.into());
        self
    }
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        let list = |args: &[&str]| -> Vec<String> {
            docker_cmd()
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let run = |args: &[String]| {
            if args.len() > 2 {
                let _ = docker_cmd()
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        };
        let with = |base: &[&str], ids: Vec<String>| -> Vec<String> {
            base.iter().map(|s| s.to_string()).chain(ids).collect()
        };
        run(&with(
            &["rm", "-fv"],
            list(&["ps", "-aq", "--filter", &filter]),
        ));
        run(&with(
            &["network", "rm"],
            list(&["network", "ls", "-q", "--filter", &filter]),
        ));
        run(&with(
            &["volume", "rm", "-f"],
            list(&["volume", "ls", "-q", "--filter", &filter]),
        ));
        if !self.images.is_empty() {
            run(&with(&["rmi", "-f"], self.images.clone()));
        }
    }
}

/// Copies the directory tree `from` into `to` (an example or fixture into a test's own
/// directory, so the test may edit it).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Minimal HTTP/1.0 GET to `addr` (`host:port`, must be 127.0.0.1), optionally with basic auth.
/// Returns the status code and body.
pub fn http_get(addr: &str, path: &str, basic_auth: Option<(&str, &str)>) -> (u16, String) {
    assert!(
        addr.starts_with("127.0.0.1:"),
        "tests only talk to 127.0.0.1, not {addr}"
    );
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    req.push_str(
        "Accept: application/vnd.docker.distribution.manifest.v2+json, \
         application/vnd.oci.image.manifest.v1+json\r\n",
    );
    if let Some((u, p)) = basic_auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{u}:{p}").as_bytes())
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response from {addr}: {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Standard base64 with padding (for Basic auth headers).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
