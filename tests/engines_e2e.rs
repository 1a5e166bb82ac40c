//! Engines where Docker Compose finds them: `DOCKER_HOST` with `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH`, `--context`, `DOCKER_CONTEXT` and the current context of the docker
//! CLI, against the test bed's second dockerd (`--tlsverify` on loopback). Contexts are made
//! by the docker CLI itself, in a config directory of the test's own.

mod common;

use std::process::{Command, Output};

use common::engines::{tls_engine, TlsEngine};
use common::stack::{show, Stack};

const COMPOSE: &str = r#"
services:
  app:
    image: composeops-test/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 5; done"]
"#;

/// The TLS engine, or `None` after printing why the test bed has none.
fn engine_or_skip(test: &str) -> Option<TlsEngine> {
    match tls_engine() {
        Ok(e) => Some(e),
        Err(reason) => {
            eprintln!("{test}: skipped: {reason}");
            None
        }
    }
}

/// A project on the TLS engine with a docker config directory of its own (no context, no
/// DOCKER_* variables from the caller); removed from that engine on drop.
struct TlsStack<'a> {
    stack: Stack,
    engine: &'a TlsEngine,
    config: tempfile::TempDir,
}

impl<'a> TlsStack<'a> {
    fn new(engine: &'a TlsEngine, prefix: &str) -> TlsStack<'a> {
        let stack = Stack::new(prefix);
        stack.write(COMPOSE);
        TlsStack {
            stack,
            engine,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `composeops` with only DOCKER_CONFIG set among the docker variables.
    fn bare(&self) -> Command {
        let mut c = self.stack.cmd();
        c.env("DOCKER_CONFIG", self.config.path());
        for k in [
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_TLS",
            "DOCKER_CERT_PATH",
        ] {
            c.env_remove(k);
        }
        c
    }

    /// `composeops` pointed at the TLS engine by DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH.
    fn by_env(&self) -> Command {
        let mut c = self.bare();
        c.envs(self.engine.env());
        c
    }

    /// `docker context create NAME` at the TLS engine with the certificates in `certs`.
    fn create_context(&self, name: &str, certs: &std::path::Path) {
        let f = |n: &str| certs.join(n).display().to_string();
        let spec = format!(
            "host={},ca={},cert={},key={}",
            self.engine.host,
            f("ca.pem"),
            f("cert.pem"),
            f("key.pem")
        );
        self.docker_cli(&["context", "create", name, "--docker", &spec]);
    }

    /// The docker CLI with this stack's config directory.
    fn docker_cli(&self, args: &[&str]) {
        let out = Command::new("docker")
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", show(&out));
    }

    fn containers(&self) -> String {
        let filter = format!("label=com.docker.compose.project={}", self.stack.name);
        self.engine.docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "status=running",
        ])
    }
}

impl Drop for TlsStack<'_> {
    fn drop(&mut self) {
        self.engine.remove_project(&self.stack.name);
    }
}

fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn apply_over_tls_from_the_environment_then_from_contexts() {
    let Some(engine) = engine_or_skip("apply_over_tls") else {
        return;
    };
    let s = TlsStack::new(&engine, "eng-tls");
    let out = run(s.by_env(), &["apply", "--offline", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        s.containers().lines().count(),
        1,
        "one container on the TLS engine"
    );
    let on_main = common::docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", s.stack.name),
    ]);
    assert_eq!(on_main, "", "nothing on the main engine");

    // The same engine through a context, chosen three ways: the plan is empty each time.
    s.create_context("tls-e2e", &engine.client);
    let out = run(
        s.bare(),
        &[
            "--context",
            "tls-e2e",
            "plan",
            "--offline",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "--context: {}", show(&out));
    let mut c = s.bare();
    c.env("DOCKER_CONTEXT", "tls-e2e")
        .env("COMPOSEOPS_LOG", "composeops=debug");
    let out = run(c, &["apply", "--offline"]);
    assert_eq!(out.status.code(), Some(0), "DOCKER_CONTEXT: {}", show(&out));
    // A no-op over TLS costs what it costs on the socket.
    assert!(stderr(&out).contains("api_calls=5"), "{}", show(&out));
    s.docker_cli(&["context", "use", "tls-e2e"]);
    let out = run(s.bare(), &["plan", "--offline", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "currentContext: {}", show(&out));

    // DOCKER_HOST beats the current context: the main engine has nothing of this project.
    let mut c = s.bare();
    c.env("DOCKER_HOST", "unix:///var/run/docker.sock");
    let out = run(c, &["plan", "--offline", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "DOCKER_HOST: {}", show(&out));
}

#[test]
fn a_wrong_ca_is_refused_naming_the_engine_and_its_source() {
    let Some(engine) = engine_or_skip("a_wrong_ca_is_refused") else {
        return;
    };
    let s = TlsStack::new(&engine, "eng-wrong-ca");
    let mut c = s.by_env();
    c.env("DOCKER_CERT_PATH", &engine.wrong_ca);
    let out = run(c, &["apply", "--offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    let at = format!(
        "cannot reach the Docker engine at {} (from DOCKER_HOST)",
        engine.host
    );
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("certificate verify failed"), "{err}");

    s.create_context("bad-ca", &engine.wrong_ca);
    let out = run(s.bare(), &["--context", "bad-ca", "plan", "--offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("(from docker context \"bad-ca\", chosen by --context)"),
        "{err}"
    );
    assert!(err.contains("certificate verify failed"), "{err}");

    // Plain HTTP to the TLS port says how to turn TLS on.
    let mut c = s.bare();
    c.env("DOCKER_HOST", &engine.host);
    let out = run(c, &["plan", "--offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("DOCKER_TLS_VERIFY=1"),
        "{}",
        show(&out)
    );
    assert_eq!(s.containers(), "", "nothing was created");
}

#[test]
fn unknown_contexts_and_conflicting_flags_are_refused() {
    let s = Stack::new("eng-flags");
    s.write(COMPOSE);
    let config = tempfile::tempdir().unwrap();
    let out = s
        .cmd()
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONTEXT", "nosuch")
        .args(["plan", "--offline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("docker context \"nosuch\" (chosen by DOCKER_CONTEXT) not found"),
        "{}",
        show(&out)
    );
    let out = s
        .cmd()
        .args(["-H", "unix:///x.sock", "--context", "x", "plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        show(&out)
    );
}

#[test]
fn apply_over_ssh_as_the_docker_cli_does() {
    let (host, path) = match (
        std::env::var("COMPOSEOPS_TEST_SSH_HOST"),
        std::env::var("COMPOSEOPS_TEST_SSH_PATH"),
    ) {
        (Ok(h), Ok(p)) => (h, p),
        _ => {
            let reason = std::env::var("COMPOSEOPS_TEST_SSH_SKIP").expect(
                "COMPOSEOPS_TEST_SSH_* not set: run scripts/testbed.sh and source .testbed/env",
            );
            eprintln!("apply_over_ssh: skipped: {reason}");
            return;
        }
    };
    // The test bed's `ssh` (its keys and known_hosts) first in PATH; the far side's docker
    // CLI dials the main engine.
    let path = format!("{path}:{}", std::env::var("PATH").unwrap_or_default());
    let s = Stack::new("eng-ssh");
    s.write(COMPOSE);
    let config = tempfile::tempdir().unwrap();
    let cmd = |host: Option<&str>| {
        let mut c = s.cmd();
        c.env("PATH", &path)
            .env("DOCKER_CONFIG", config.path())
            .env("COMPOSEOPS_LOG", "composeops=debug")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        match host {
            Some(h) => c.env("DOCKER_HOST", h),
            None => c.env_remove("DOCKER_HOST"),
        };
        c
    };
    let out = run(
        cmd(Some(&host)),
        &["apply", "--offline", "--wait-timeout", "30s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let filter = format!("label=com.docker.compose.project={}", s.name);
    let ids = common::docker(&["ps", "-q", "--filter", &filter]);
    assert_eq!(ids.lines().count(), 1, "running on the engine behind ssh");

    let out = run(cmd(Some(&host)), &["apply", "--offline"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stderr(&out).contains("api_calls=5"), "{}", show(&out));

    // A context at the same ssh host sees the same project: nothing to do.
    let spec = format!("host={host}");
    let made = Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .args(["context", "create", "over-ssh", "--docker", &spec])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", show(&made));
    let out = run(
        cmd(None),
        &[
            "--context",
            "over-ssh",
            "plan",
            "--offline",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // A refused connection names the host and says what ssh said.
    let out = run(cmd(Some("ssh://root@127.0.0.1:1")), &["plan", "--offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the Docker engine at ssh://root@127.0.0.1:1 (from DOCKER_HOST)"),
        "{err}"
    );
    assert!(
        err.contains("ssh: connect to host 127.0.0.1 port 1"),
        "{err}"
    );
}
