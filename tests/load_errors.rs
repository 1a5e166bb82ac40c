//! Each class of bad input gives one message naming the file, the line and the field path,
//! and exits 1.

use std::path::Path;

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composeops"))
        .args(args)
        .arg("config")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Writes `files` into a temp dir, loads it, and checks the error starts with
/// `<dir>/<file>:<line>: <path>` (path omitted when `None`) and contains `needle`.
fn expect(
    files: &[(&str, &str)],
    args: &[&str],
    file: &str,
    line: usize,
    path: Option<&str>,
    needle: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let (code, err) = run(dir.path(), args);
    assert_eq!(code, 1, "exit status; stderr: {err}");
    let mut prefix = format!("error: {}:{line}: ", dir.path().join(file).display());
    if let Some(p) = path {
        prefix.push_str(&format!("{p}: "));
    }
    assert!(
        err.starts_with(&prefix),
        "expected prefix {prefix:?}\n got: {err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one message: {err}");
}

#[test]
fn broken_yaml_names_file_and_line() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n   oops: [\n",
        )],
        &[],
        "compose.yaml",
        4,
        None,
        "invalid YAML",
    );
}

#[test]
fn unknown_field_names_path_and_line() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    restart: always\n    imagee: y\n",
        )],
        &[],
        "compose.yaml",
        5,
        Some("services.web.imagee"),
        "unknown field `imagee` (did you mean `image`?)",
    );
}

#[test]
fn unknown_field_in_an_override_file_points_at_that_file() {
    expect(
        &[
            ("compose.yaml", "services:\n  web:\n    image: x\n"),
            (
                "compose.override.yaml",
                "services:\n  web:\n    healthcheck:\n      intervall: 5s\n",
            ),
        ],
        &[],
        "compose.override.yaml",
        4,
        Some("services.web.healthcheck.intervall"),
        "did you mean `interval`",
    );
}

#[test]
fn wrong_type_names_path_and_line() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: many\n",
        )],
        &[],
        "compose.yaml",
        5,
        Some("services.web.deploy.replicas"),
        "expected an integer",
    );
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    ports: 80\n",
        )],
        &[],
        "compose.yaml",
        4,
        Some("services.web.ports"),
        "must be a list",
    );
}

#[test]
fn missing_required_variable_names_path_and_line() {
    expect(
        &[("compose.yaml", "services:\n  db:\n    image: postgres\n    environment:\n      PASSWORD: ${DB_PASS:?set DB_PASS}\n")],
        &[],
        "compose.yaml",
        5,
        Some("services.db.environment.PASSWORD"),
        "required variable DB_PASS is missing a value: set DB_PASS",
    );
}

#[test]
fn missing_env_file_is_named() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  app:\n    image: x\n    env_file:\n      - ./app.env\n",
        )],
        &[],
        "compose.yaml",
        5,
        Some("services.app.env_file[0]"),
        "app.env not found",
    );
    // `--env-file` that does not exist: the message names that file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  a:\n    image: x\n",
    )
    .unwrap();
    let (code, err) = run(dir.path(), &["--env-file", "nope.env"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&dir.path().join("nope.env").display().to_string()),
        "{err}"
    );
}

#[test]
fn extends_cycle_is_refused() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends:\n      service: a\n",
        )],
        &[],
        "compose.yaml",
        4,
        Some("services.a.extends"),
        "circular reference in extends: a -> b -> a",
    );
}

#[test]
fn completion_scripts_and_man_pages_are_generated_from_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = composeops_bin()
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("wait-timeout"), "{shell}: {text}");
    }
    let out = composeops_bin().arg("man").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with(".ie"), "{text}");
    assert!(
        text.contains(".TH composeops-apply 1"),
        "one page per subcommand"
    );
}

fn composeops_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_composeops"))
}

#[test]
fn a_shared_namespace_of_an_unknown_service_names_its_field() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  app:\n    image: a\n    network_mode: service:vpn\n",
        )],
        &[],
        "compose.yaml",
        4,
        Some("services.app.network_mode"),
        "undefined service \"vpn\"",
    );
}

#[test]
fn a_shared_network_namespace_with_its_own_ports_is_refused() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  vpn:\n    image: a\n  app:\n    image: a\n    \
             network_mode: service:vpn\n    ports: ['8080:80']\n",
        )],
        &[],
        "compose.yaml",
        7,
        Some("services.app.ports"),
        "mutually exclusive",
    );
}

#[test]
fn an_update_config_value_apply_cannot_follow_names_its_field() {
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    deploy:\n      update_config:\n        \
             parallelism: 2\n        failure_action: retry\n",
        )],
        &[],
        "compose.yaml",
        7,
        Some("services.web.deploy.update_config.failure_action"),
        "invalid value \"retry\": it is one of pause, continue, rollback",
    );
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    deploy:\n      rollback_config:\n        \
             failure_action: rollback\n",
        )],
        &[],
        "compose.yaml",
        6,
        Some("services.web.deploy.rollback_config.failure_action"),
        "a rollback cannot itself be rolled back",
    );
    expect(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    deploy:\n      update_config:\n        \
             delay: soon\n",
        )],
        &[],
        "compose.yaml",
        6,
        Some("services.web.deploy.update_config.delay"),
        "invalid duration \"soon\"",
    );
}
