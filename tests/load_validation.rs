//! Input the loader must refuse before anything runs, each problem named as
//! `file:line: field path: message` with exit status 1: bad ports and resource names (refused as
//! Compose v5 refuses them, every problem at once), and input files that are not regular files
//! or are too large. `apply` of a file with a bad port makes no engine change.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::stack::{show, Stack};

/// `composeops config <args>` in `dir` with a clean environment.
fn config(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_composeops"))
        .arg("config")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Writes `compose.yaml`, runs `config`, and checks exit 1 and that the error lines are
/// exactly `expected`, each as (line, field path, start of the message), in that order.
fn expect_errors(yaml: &str, expected: &[(usize, &str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = config(dir.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), expected.len(), "one line per problem:\n{err}");
    for (i, (got, (line, path, msg))) in lines.iter().zip(expected).enumerate() {
        let lead = if i == 0 { "error: " } else { "" };
        let want = format!("{lead}{}:{line}: {path}: {msg}", file.display());
        assert!(got.starts_with(&want), "expected {want:?}\n got {got:?}");
    }
}

#[test]
fn each_bad_short_port_is_refused_as_compose_refuses_it() {
    for (spec, msg) in [
        ("9000-8000:80-90", "invalid hostPort: 9000-8000"),
        ("8080:70000", "invalid containerPort: 70000"),
        ("1.2.3.4.5:80:80", "invalid IP address: 1.2.3.4.5"),
        ("8080:80/xyz", "invalid proto: xyz"),
        (
            "80-81:90-92",
            "invalid ranges specified for container and host Ports: 90-92 and 80-81",
        ),
        ("8080:0", "is missing a target port"),
    ] {
        let yaml = format!("services:\n  web:\n    image: x\n    ports:\n      - \"{spec}\"\n");
        expect_errors(&yaml, &[(5, "services.web.ports[0]", msg)]);
    }
}

#[test]
fn good_port_forms_still_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: x\n    ports:\n      - \"0:80\"\n      - \"::1:81:81\"\n\
         \x20     - \"[::1]:82:82/sctp\"\n      - \"8080-8081:83\"\n      - \"84/UDP\"\n\
         \x20     - 65535\n      - {target: 86, published: \"9000-9001\", protocol: udp}\n",
    )
    .unwrap();
    let out = config(dir.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ports = v["services"]["web"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 7, "{ports:?}");
    assert_eq!(ports[4]["protocol"], "udp");
}

#[test]
fn every_schema_problem_is_reported_in_file_order() {
    let yaml = "services:\n  \"we b/../x\":\n    image: x\n    imagee: y\n  web:\n    image: x\n\
                \x20   ports:\n      - \"9000-8000:80\"\n      - target: 80\n        host_ip: 1.2.3\n\
                \x20   restrat: always\nnetworks:\n  \"a/b\": {}\nvolumes:\n  \"da ta\": {}\n";
    expect_errors(
        yaml,
        &[
            (
                2,
                "services.we b/../x",
                "invalid service name \"we b/../x\"",
            ),
            (4, "services.we b/../x.imagee", "unknown field `imagee`"),
            (8, "services.web.ports[0]", "invalid hostPort: 9000-8000"),
            (9, "services.web.ports[1]", "invalid IP address: 1.2.3"),
            (11, "services.web.restrat", "unknown field `restrat`"),
            (13, "networks.a/b", "invalid network name \"a/b\""),
            (15, "volumes.da ta", "invalid volume name \"da ta\""),
        ],
    );
}

#[test]
fn merge_key_of_a_scalar_is_named() {
    expect_errors(
        "services:\n  web:\n    image: x\n    <<: 5\n",
        &[(4, "services.web.<<", "invalid YAML merge key")],
    );
}

/// Runs `config -f <path>` with a deadline: the loader must refuse at once, never block or
/// grow without bound.
fn config_file_quickly(path: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_composeops"))
        .args(["-f", path.to_str().unwrap(), "config"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("config -f {} did not finish within 10s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn device_fifo_and_oversized_files_are_refused_at_once() {
    let err = config_file_quickly(Path::new("/dev/zero"));
    assert!(
        err.contains(
            "/dev/zero: cannot read compose file: not a regular file (it is a character device)"
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("compose.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let err = config_file_quickly(&fifo);
    assert!(err.contains("not a regular file (it is a FIFO)"), "{err}");

    let big = dir.path().join("big.yaml");
    let mut text = String::from("services:\n  web:\n    image: x\n");
    text.push_str(&"#".repeat(10 * 1024 * 1024));
    std::fs::write(&big, text).unwrap();
    let err = config_file_quickly(&big);
    assert!(err.contains("larger than 10 MiB"), "{err}");
}

#[test]
fn oversized_env_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: x\n    env_file: big.env\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("big.env"), "A=".repeat(6 * 1024 * 1024)).unwrap();
    let out = config(dir.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(":4: services.web.env_file"), "{err}");
    assert!(err.contains("larger than 10 MiB"), "{err}");
}

/// Networks, volumes and containers the engine holds for project `name`.
fn project_resources(name: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={name}");
    let mut all = Vec::new();
    for kind in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        let mut args = kind.to_vec();
        args.extend(["--filter", &filter]);
        let out = common::docker(&args);
        all.extend(out.lines().map(|l| format!("{} {l}", kind[0])));
    }
    all
}

fn stack_yaml(port: &str) -> String {
    let image = &common::testbed().base_image;
    format!(
        "services:\n  db:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n\
         \x20   volumes: [\"data:/data\"]\n  web:\n    image: {image}\n\
         \x20   command: [\"sleep\", \"3600\"]\n    ports:\n      - \"{port}\"\nvolumes:\n  data: {{}}\n"
    )
}

#[test]
fn apply_with_a_bad_port_changes_nothing_in_the_engine() {
    // The control: the same stack with a good port does create resources.
    let good = Stack::new("loadval-good");
    good.write(&stack_yaml("127.0.0.1::80"));
    good.apply_ok();
    assert!(
        project_resources(&good.name)
            .iter()
            .any(|r| r.starts_with("network ")),
        "the control stack should have made a network"
    );

    for port in [
        "9000-8000:80-90",
        "8080:70000",
        "1.2.3.4.5:80:80",
        "8080:80/xyz",
    ] {
        let bad = Stack::new("loadval-bad");
        bad.write(&stack_yaml(port));
        let out = bad.run(&["apply", "--wait-timeout", "30s"]);
        assert_eq!(out.status.code(), Some(1), "{port}: {}", show(&out));
        let err = stderr(&out);
        let want = format!(
            "{}:10: services.web.ports[0]: invalid",
            bad.dir.path().join("compose.yaml").display()
        );
        assert!(err.contains(&want), "{port}: expected {want:?} in {err}");
        assert_eq!(project_resources(&bad.name), Vec::<String>::new(), "{port}");
    }
}

#[test]
fn a_dotenv_directory_is_ignored_as_compose_ignores_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".env")).unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: x\n",
    )
    .unwrap();
    let out = config(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
