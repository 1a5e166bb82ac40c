//! End-to-end tests of shared namespaces on the real engine: `network_mode`, `ipc` and `pid`
//! of the form `service:X`, `volumes_from` and `links`, resolved as Compose v5 resolves them,
//! dependents recreated after the service whose namespace they share, and the stack handed
//! back and forth with Compose v5 without a recreate. Run with scripts/test.sh.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use common::stack::{show, Stack};
use common::*;

impl Stack {
    /// Exit status of `plan --detailed-exitcode` (0 no changes, 2 changes), and its output.
    fn plan(&self) -> (i32, String) {
        let out = self.run(&["plan", "--detailed-exitcode"]);
        (out.status.code().unwrap_or(-1), show(&out))
    }

    fn compose_v5(&self, args: &[&str]) -> Output {
        Command::new(&testbed().compose_v5)
            .current_dir(self.dir.path())
            .args(["-p", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    fn compose_v5_ok(&self, args: &[&str]) -> Output {
        let out = self.compose_v5(args);
        assert!(out.status.success(), "compose {args:?}:\n{}", show(&out));
        out
    }

    /// Service -> full container id (replica 1).
    fn ids(&self) -> BTreeMap<String, String> {
        ["vpn", "app", "backup"]
            .iter()
            .map(|s| (s.to_string(), self.id(s)))
            .collect()
    }

    fn id(&self, service: &str) -> String {
        self.inspect_service(service, "{{.Id}}")
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    fn exec(&self, service: &str, cmd: &[&str]) -> Output {
        let c = self.container(service);
        let mut args = vec!["exec", c.as_str()];
        args.extend_from_slice(cmd);
        docker_output(&args)
    }
}

/// vpn owns the namespaces and a volume; app lives in its network, IPC and PID namespaces;
/// backup mounts vpn's volumes read-only and reaches it through a link alias.
fn stack_yaml(rev: &str) -> String {
    let base = &testbed().base_image;
    format!(
        r#"services:
  app:
    image: {base}
    command: [sleep, "3600"]
    network_mode: service:vpn
    ipc: service:vpn
    pid: service:vpn
  backup:
    image: {base}
    command: [sleep, "3600"]
    volumes_from: ["vpn:ro"]
    links: ["vpn:tunnel"]
  vpn:
    image: {base}
    command: [sh, -c, "echo hello > /data/hello; printf '#!/bin/sh\necho pong\n' > /pong; chmod +x /pong; exec nc -ll -p 7000 -e /pong"]
    environment: {{REV: "{rev}"}}
    ipc: shareable
    volumes: [data:/data]
volumes:
  data:
"#
    )
}

/// app shares vpn's current namespaces; backup its volumes (read-only) and a link alias.
fn assert_shared(s: &Stack) {
    let vpn = s.id("vpn");
    let joined = format!("container:{vpn}");
    for f in [
        "{{.HostConfig.NetworkMode}}",
        "{{.HostConfig.IpcMode}}",
        "{{.HostConfig.PidMode}}",
    ] {
        assert_eq!(s.inspect_service("app", f), joined, "{f}");
    }
    assert_eq!(
        s.inspect_service("app", "{{len .NetworkSettings.Networks}}"),
        "0"
    );
    // The same network stack: vpn's listener answers on app's loopback.
    let out = s.exec("app", &["nc", "-w", "3", "127.0.0.1", "7000"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pong",
        "{}",
        show(&out)
    );
    // The same PID namespace: app sees vpn's nc.
    let ps = s.exec("app", &["ps"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("nc -ll"),
        "{}",
        show(&ps)
    );
    assert_eq!(
        s.inspect_service("backup", "{{json .HostConfig.VolumesFrom}}"),
        format!("[\"{vpn}:ro\"]")
    );
    let read = s.exec("backup", &["cat", "/data/hello"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "hello");
    let write = s.exec("backup", &["touch", "/data/other"]);
    assert!(
        !write.status.success(),
        "volumes_from :ro must be read-only"
    );
    let net = format!("{}_default", s.name);
    let links = s.inspect_service(
        "backup",
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Links}}}}"),
    );
    assert!(
        links.contains(&format!("{}:tunnel", s.container("vpn"))),
        "{links}"
    );
    let dns = s.exec("backup", &["nslookup", "tunnel", "127.0.0.11"]);
    assert!(dns.status.success(), "{}", show(&dns));
}

#[test]
fn sidecars_share_namespaces_and_follow_their_owner_when_it_is_recreated() {
    let s = Stack::new("ns-sidecar");
    s.write(&stack_yaml("1"));
    s.apply_ok();
    assert_shared(&s);
    let (code, out) = s.plan();
    assert_eq!(code, 0, "plan after apply must be empty:\n{out}");
    let before = s.ids();

    // Compose v5 sees composeops' containers as its own: nothing to recreate.
    s.compose_v5_ok(&["up", "-d"]);
    assert_eq!(
        s.ids(),
        before,
        "Compose v5 recreated composeops' containers"
    );

    // Only vpn changes; its dependents follow it, after it.
    s.write(&stack_yaml("2"));
    let (code, out) = s.plan();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("network namespace of vpn is recreated"),
        "{out}"
    );
    assert!(
        out.contains("volumes_from container of vpn is recreated"),
        "{out}"
    );
    let applied = s.apply_ok();
    let text = String::from_utf8_lossy(&applied.stderr).to_string()
        + &String::from_utf8_lossy(&applied.stdout);
    let pos = |svc: &str| {
        text.find(&format!("[{svc}] applied"))
            .unwrap_or_else(|| panic!("no '[{svc}] applied' in:\n{text}"))
    };
    assert!(
        pos("vpn") < pos("app") && pos("vpn") < pos("backup"),
        "{text}"
    );
    let after = s.ids();
    for svc in ["vpn", "app", "backup"] {
        assert_ne!(before[svc], after[svc], "{svc} was not recreated");
    }
    assert_shared(&s);
    let (code, out) = s.plan();
    assert_eq!(code, 0, "{out}");
    s.compose_v5_ok(&["up", "-d"]);
    assert_eq!(
        s.ids(),
        after,
        "Compose v5 recreated after composeops' recreate"
    );
}

#[test]
fn a_stack_passes_between_compose_v5_and_composeops_both_ways() {
    let s = Stack::new("ns-interop");
    s.write(&stack_yaml("1"));
    s.compose_v5_ok(&["up", "-d"]);
    let (code, out) = s.plan();
    assert_eq!(code, 0, "Compose-made stack must be adopted:\n{out}");

    // Compose recreates vpn and, by its cascade, its dependents: still nothing to do.
    s.write(&stack_yaml("2"));
    s.compose_v5_ok(&["up", "-d"]);
    let (code, out) = s.plan();
    assert_eq!(code, 0, "{out}");

    // vpn replaced alone (someone else's --no-deps): its dependents point at a dead container.
    s.compose_v5_ok(&["up", "-d", "--force-recreate", "--no-deps", "vpn"]);
    let (code, out) = s.plan();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("app recreate (network namespace of vpn is gone"),
        "{out}"
    );
    // Nothing else differs: the engine's resolved form is not a change of the file's.
    assert!(!out.contains("changed:"), "{out}");
    s.apply_ok();
    assert_shared(&s);
    let ids = s.ids();
    s.compose_v5_ok(&["up", "-d"]);
    assert_eq!(
        s.ids(),
        ids,
        "Compose v5 recreated after composeops' repair"
    );
}

#[test]
fn a_service_in_another_network_namespace_is_updated_stop_first() {
    let s = Stack::new("ns-order");
    let start_first = |rev: &str| {
        stack_yaml(rev).replace(
            "    pid: service:vpn\n",
            "    pid: service:vpn\n    deploy: {update_config: {order: start-first}}\n    \
             environment: {APP: \"1\"}\n",
        )
    };
    s.write(&start_first("1"));
    s.apply_ok();
    s.write(&start_first("1").replace("APP: \"1\"", "APP: \"2\""));
    let (code, out) = s.plan();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("joins another container's network namespace (service:vpn)"),
        "{out}"
    );
    let before = s.id("app");
    s.apply_ok();
    assert_ne!(s.id("app"), before);
    assert_shared(&s);
}

#[test]
fn bad_references_are_refused_before_any_engine_call() {
    let s = Stack::new("ns-bad");
    let base = &testbed().base_image;
    s.write(&format!(
        "services:\n  app:\n    image: {base}\n    network_mode: service:vpn\n"
    ));
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("compose.yaml"), "{err}");
    assert!(err.contains("services.app.network_mode"), "{err}");
    let filter = format!("label=com.docker.compose.project={}", s.name);
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
}
