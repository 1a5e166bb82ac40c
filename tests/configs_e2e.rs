//! `configs:` and `secrets:` on the real engine, as Compose v5 puts them in containers: a
//! `file:` config bind-mounted read-only, a `content:` config and an `environment:` secret
//! written before start with their uid/gid/mode; a change of content recreates exactly the
//! service that mounts it; Compose v5 and composeops hand the stack back and forth without
//! recreating anything; a secret's value is never printed nor put in a label; bad input is
//! refused before any engine change. Run with scripts/test.sh.

mod common;

use std::process::{Command, Output};

use common::stack::{show, Stack};
use common::*;

const TOKEN_A: &str = "tok-A-7f3c91d2e5";
const TOKEN_B: &str = "tok-B-0a8b6c4e1f";

impl Stack {
    /// `composeops ARGS` with `APP_TOKEN` set to `token`.
    fn with_token(&self, token: &str, args: &[&str]) -> Output {
        self.cmd()
            .env("APP_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    }

    fn compose_v5(&self, token: &str, args: &[&str]) -> Output {
        Command::new(&testbed().compose_v5)
            .current_dir(self.dir.path())
            .env("APP_TOKEN", token)
            .args(["-p", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    fn exec(&self, service: &str, script: &str) -> String {
        let c = format!("{}-{service}-1", self.name);
        docker(&["exec", &c, "sh", "-c", script])
    }

    fn write_file(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

/// `app` mounts all three kinds; `web` only the file config; `worker` only the secret, and
/// is updated start-first (the files are written before start in both orders).
fn compose_yaml(motd: &str) -> String {
    let base = &testbed().base_image;
    let cmd = r#"["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 1; done"]"#;
    format!(
        "services:
  app:
    image: {base}
    command: {cmd}
    configs:
      - source: appconf
        target: /etc/app.conf
      - source: motd
        target: etc/motd
        uid: \"1000\"
        gid: \"2000\"
        mode: 0440
    secrets:
      - source: token
        uid: \"123\"
        gid: \"456\"
        mode: 0400
  web:
    image: {base}
    command: {cmd}
    configs: [appconf]
  worker:
    image: {base}
    command: {cmd}
    secrets: [token]
    deploy:
      update_config:
        order: start-first
configs:
  appconf:
    file: ./app.conf
  motd:
    content: |
      {motd} $${{HOME}}
secrets:
  token:
    environment: APP_TOKEN
"
    )
}

fn assert_no_token(what: &str, text: &str) {
    for t in [TOKEN_A, TOKEN_B] {
        assert!(!text.contains(t), "{what} shows a secret value:\n{text}");
    }
}

/// Everything a secret could leak through: plan (text and JSON), and each container's
/// inspect output (labels, env, mounts).
fn assert_secret_never_shown(s: &Stack, token: &str, apply: &Output) {
    assert_no_token("apply", &show(apply));
    assert_no_token("plan", &show(&s.with_token(token, &["plan"])));
    assert_no_token(
        "plan --json",
        &show(&s.with_token(token, &["plan", "--json"])),
    );
    for name in s.container_ids().keys() {
        assert_no_token(name, &docker(&["inspect", name]));
    }
}

#[test]
fn configs_and_secrets_are_mounted_as_compose_does_and_content_changes_recreate() {
    let s = Stack::new("cfg");
    s.write(&compose_yaml("hello"));
    s.write_file("app.conf", "listen 80\n");

    let out = s.with_token(TOKEN_A, &["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_secret_never_shown(&s, TOKEN_A, &out);

    // The file config: bind-mounted read-only, in both services.
    assert_eq!(s.exec("app", "cat /etc/app.conf"), "listen 80");
    assert_eq!(s.exec("web", "cat /appconf"), "listen 80");
    let ro = s.exec("app", "echo x > /etc/app.conf 2>&1 || echo read-only");
    assert!(ro.contains("read-only") || ro.contains("Read-only"), "{ro}");
    // The content config: relative target under /, with its owner and mode, `$$` a `$`.
    assert_eq!(s.exec("app", "cat /etc/motd"), "hello ${HOME}");
    assert_eq!(
        s.exec("app", "stat -c '%u %g %a' /etc/motd"),
        "1000 2000 440"
    );
    // The environment secret: under /run/secrets, owner and mode as asked.
    assert_eq!(s.exec("app", "cat /run/secrets/token"), TOKEN_A);
    assert_eq!(
        s.exec("app", "stat -c '%u %g %a' /run/secrets/token"),
        "123 456 400"
    );

    // Converged: plan is empty, and Compose v5 recreates nothing composeops made.
    let (code, plan) = plan_of(&s, TOKEN_A);
    assert_eq!(code, 0, "{plan}");
    let before = s.container_ids();
    let up = s.compose_v5(TOKEN_A, &["up", "-d"]);
    assert!(up.status.success(), "{}", show(&up));
    assert_eq!(
        s.container_ids(),
        before,
        "compose up recreated:\n{}",
        show(&up)
    );

    // One content changes: only the service that mounts it is recreated, and plan says why
    // without showing it.
    s.write(&compose_yaml("goodbye"));
    let (code, plan) = plan_of(&s, TOKEN_A);
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("config motd content changed"), "{plan}");
    assert!(!plan.contains("goodbye"), "{plan}");
    let out = s.with_token(TOKEN_A, &["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let after = s.container_ids();
    let app = format!("{}-app-1", s.name);
    let web = format!("{}-web-1", s.name);
    let worker = format!("{}-worker-1", s.name);
    assert_ne!(after[&app], before[&app], "app was not recreated");
    assert_eq!(after[&web], before[&web], "web was recreated");
    assert_eq!(after[&worker], before[&worker], "worker was recreated");
    assert_eq!(s.exec("app", "cat /etc/motd"), "goodbye ${HOME}");

    // The secret's value changes: recreated, named, never shown.
    let (code, plan) = plan_of(&s, TOKEN_B);
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("secret token content changed"), "{plan}");
    let out = s.with_token(TOKEN_B, &["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_secret_never_shown(&s, TOKEN_B, &out);
    assert_eq!(s.exec("app", "cat /run/secrets/token"), TOKEN_B);
    assert_eq!(s.exec("worker", "cat /run/secrets/token"), TOKEN_B);
    assert_eq!(s.container_ids()[&web], before[&web], "web was recreated");
    assert_ne!(
        s.container_ids()[&worker],
        after[&worker],
        "worker was not recreated"
    );
    assert_eq!(
        s.container_ids().len(),
        3,
        "a temporary container was left: {:?}",
        s.container_ids()
    );

    // Writing fails on the engine (a file cannot replace the directory /etc): the new
    // container goes, the old one keeps running under its name, nothing is left half-made.
    let running = s.container_ids();
    s.write(&compose_yaml("goodbye").replace("target: etc/motd", "target: /etc"));
    let out = s.with_token(TOKEN_B, &["apply", "--wait-timeout", "30s"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("rolled-back") && text.contains("cannot overwrite directory"),
        "{text}"
    );
    assert_no_token("failed apply", &text);
    assert_eq!(s.container_ids(), running, "{text}");
    assert_eq!(s.exec("app", "cat /etc/motd"), "goodbye ${HOME}");
    s.write(&compose_yaml("goodbye"));

    // Handed to Compose: what `up` makes, composeops leaves alone.
    let down = s.compose_v5(TOKEN_B, &["down", "-t", "1"]);
    assert!(down.status.success(), "{}", show(&down));
    let up = s.compose_v5(TOKEN_B, &["up", "-d"]);
    assert!(up.status.success(), "{}", show(&up));
    let (code, plan) = plan_of(&s, TOKEN_B);
    assert_eq!(code, 0, "plan after compose up:\n{plan}");
}

fn plan_of(s: &Stack, token: &str) -> (i32, String) {
    let out = s.with_token(token, &["plan", "--detailed-exitcode"]);
    (out.status.code().unwrap_or(-1), show(&out))
}

#[test]
fn bad_configs_and_secrets_are_refused_before_any_engine_change() {
    let s = Stack::new("cfg-bad");
    s.write(&compose_yaml("hello"));
    s.write_file("app.conf", "listen 80\n");
    // The variable behind the secret is not set.
    let out = s
        .cmd()
        .env_remove("APP_TOKEN")
        .args(["apply"])
        .output()
        .unwrap();
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("compose.yaml:"), "{text}");
    assert!(text.contains("secrets.token.environment"), "{text}");
    assert!(text.contains("APP_TOKEN"), "{text}");
    // The file behind a config is missing.
    std::fs::remove_file(s.dir.path().join("app.conf")).unwrap();
    let out = s.with_token(TOKEN_A, &["apply"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("configs.appconf.file"), "{text}");
    // Nothing was made: no container, no network.
    assert!(s.container_ids().is_empty(), "{:?}", s.container_ids());
    let filter = format!("label=com.docker.compose.project={}", s.name);
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &filter]), "");
}
