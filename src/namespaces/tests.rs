use super::*;

use crate::load::test_project as project;

const VPN_ID: &str = "ffaf6156a1d519870de003f736e89c5b2b24ec3a8ead8f229781832668aca89e";

/// The project Compose v5.6.1 was run on to read the labels and HostConfig below.
const STACK: &str = "services:
  vpn:
    image: composeops-test/busybox:latest
    command: [sh, -c, \"nc -lk -p 7000 -e echo hi || sleep 3600\"]
    ipc: shareable
  app:
    image: composeops-test/busybox:latest
    command: [sleep, \"3600\"]
    network_mode: service:vpn
    ipc: service:vpn
    pid: service:vpn
  bk:
    image: composeops-test/busybox:latest
    command: [sleep, \"3600\"]
    volumes_from: [vpn:ro, \"container:nsxext:ro\"]
    links: [vpn, \"vpn:tunnel\"]
";

fn vpn_target() -> Target {
    Target {
        primary_id: Some(VPN_ID.into()),
        names: vec!["p-vpn-1".into()],
    }
}

fn lookup(x: &str) -> Target {
    if x == "vpn" {
        vpn_target()
    } else {
        Target::default()
    }
}

#[test]
fn service_references_resolve_to_the_container_id() {
    let p = project(STACK);
    let app = resolve(&p, "app", 1, &lookup).unwrap();
    let joined = format!("container:{VPN_ID}");
    assert_eq!(app.network_mode.as_deref(), Some(joined.as_str()));
    assert_eq!(app.ipc.as_deref(), Some(joined.as_str()));
    assert_eq!(app.pid.as_deref(), Some(joined.as_str()));
    let bk = resolve(&p, "bk", 2, &lookup).unwrap();
    // The mode is kept for the engine (Compose v5.6.1 drops it: see hash_form).
    assert_eq!(
        bk.volumes_from,
        [format!("{VPN_ID}:ro"), "nsxext:ro".into()]
    );
    // Compose's three names per linked container, numbered after the dependent's replica.
    assert_eq!(
        bk.links,
        [
            "p-vpn-1:vpn",
            "p-vpn-1:vpn-2",
            "p-vpn-1:p-vpn-2",
            "p-vpn-1:tunnel",
            "p-vpn-1:vpn-2",
            "p-vpn-1:p-vpn-2"
        ]
    );
    assert_eq!(resolve(&p, "vpn", 1, &lookup).unwrap(), Shares::default());
    let none = |_: &str| Target::default();
    assert_eq!(
        resolve(&p, "app", 1, &none).unwrap_err(),
        "cannot share network namespace with service vpn: container missing"
    );
    assert_eq!(
        resolve(&p, "bk", 1, &none).unwrap_err(),
        "cannot share volume with service vpn: container missing"
    );
}

#[test]
fn config_hash_is_compose_v5s_hash_of_the_resolved_service() {
    // Labels written by Compose v5.6.1 for these services, with vpn's container VPN_ID.
    let p = project(STACK);
    let app = resolve(&p, "app", 1, &lookup).unwrap();
    assert_eq!(
        crate::compose_hash::config_hash_resolved(&p, "app", Some(&app)),
        "14146b39300e3ba4e1c88165b972d40555cc73df534725ff9e492903140c5c81"
    );
    let bk = resolve(&p, "bk", 1, &lookup).unwrap();
    assert_eq!(
        crate::compose_hash::config_hash_resolved(&p, "bk", Some(&bk)),
        "2434d8d9b94914a457bc1b7f982607611f51b4bc5b2cf41fc4b22ea81aca65a8"
    );
    assert_eq!(
        crate::compose_hash::config_hash(&p, "vpn"),
        "a85c6da21632b54f09d093db382bb0afcdae0f7bd6ba2ccbc9413e9c87c91338"
    );
    // Another container of vpn: another hash, which is how Compose sees a stale dependent.
    let other = |_: &str| Target {
        primary_id: Some("0".repeat(64)),
        names: vec![],
    };
    let moved = resolve(&p, "app", 1, &other).unwrap();
    assert_ne!(
        crate::compose_hash::config_hash_resolved(&p, "app", Some(&moved)),
        crate::compose_hash::config_hash_resolved(&p, "app", Some(&app))
    );
}

#[test]
fn refs_and_primary_container() {
    let p = project(
        "services:\n  db:\n    image: a\n    deploy: {replicas: 10}\n  app:\n    image: a\n    \
         network_mode: service:db\n    pid: host\n    volumes_from: [db, 'container:x']\n",
    );
    let r: Vec<(Kind, String)> = refs(&p.services["app"])
        .into_iter()
        .map(|r| (r.kind, r.service))
        .collect();
    assert_eq!(
        r,
        [(Kind::Network, "db".into()), (Kind::Volumes, "db".into())]
    );
    // The first container by name, as Compose sorts them: p-db-1 < p-db-10 < p-db-2.
    let mut o = crate::observe::Observed::default();
    for (n, id) in [("p-db-2", "b"), ("p-db-10", "c"), ("p-db-1", "a")] {
        o.containers.push(crate::observe::ObservedContainer {
            id: id.into(),
            name: n.into(),
            service: "db".into(),
            ..Default::default()
        });
    }
    let t = &observed_targets(&o)["db"];
    assert_eq!(t.primary_id.as_deref(), Some("a"));
    assert_eq!(t.names, ["p-db-1", "p-db-10", "p-db-2"]);
    assert!(joins_network(&p.services["app"]));
    assert!(!joins_network(&p.services["db"]));
}

fn load_err(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let opts = crate::load::LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("p".into()),
        ..Default::default()
    };
    crate::load::load(&opts).unwrap_err().to_string()
}

#[test]
fn bad_references_are_refused_naming_file_and_field() {
    let e = load_err("services:\n  a:\n    image: x\n    network_mode: service:zz\n");
    assert!(e.contains("compose.yaml"), "{e}");
    assert!(e.contains("services.a.network_mode"), "{e}");
    assert!(e.contains("undefined service \"zz\""), "{e}");
    let e = load_err(
        "services:\n  a:\n    image: x\n    profiles: [off]\n  b:\n    image: x\n    ipc: service:a\n",
    );
    assert!(
        e.contains("services.b.ipc") && e.contains("disabled"),
        "{e}"
    );
    let e = load_err("services:\n  b:\n    image: x\n    volumes_from: ['zz:ro']\n");
    assert!(e.contains("services.b.volumes_from"), "{e}");
    let e = load_err(
        "services:\n  a:\n    image: x\n    pid: service:b\n  b:\n    image: x\n    \
         network_mode: service:a\n",
    );
    assert!(e.contains("dependency cycle detected: a -> b -> a"), "{e}");
    assert!(e.contains("services.a.pid"), "{e}");
    for (field, v) in [
        ("networks", "[default]"),
        ("ports", "['8080:80']"),
        ("expose", "['80']"),
        ("hostname", "h"),
    ] {
        let e = load_err(&format!(
            "services:\n  a:\n    image: x\n  b:\n    image: x\n    network_mode: service:a\n    \
             {field}: {v}\n"
        ));
        assert!(e.contains(&format!("services.b.{field}")), "{e}");
        assert!(e.contains("mutually exclusive"), "{e}");
    }
    // `container:` names a container outside the project: nothing to check at load.
    project("services:\n  a:\n    image: x\n    network_mode: container:elsewhere\n");
}

#[test]
fn a_dependent_is_stale_when_its_target_is_replaced_or_gone() {
    let p = project(STACK);
    let app = &p.services["app"];
    let have = resolve(&p, "app", 1, &lookup).unwrap();
    let primary = BTreeMap::from([("vpn".to_string(), VPN_ID.to_string())]);
    let none = BTreeSet::new();
    assert!(stale(app, Some(&have), &primary, &none).is_empty());
    let recreated = BTreeSet::from(["vpn".to_string()]);
    assert_eq!(
        stale(app, Some(&have), &primary, &recreated),
        [
            "network namespace of vpn is recreated",
            "IPC namespace of vpn is recreated",
            "PID namespace of vpn is recreated"
        ]
    );
    let moved = BTreeMap::from([("vpn".to_string(), "1".repeat(64))]);
    assert_eq!(
        stale(app, Some(&have), &moved, &none)[0],
        "network namespace of vpn is gone (it points at another container)"
    );
    assert_eq!(
        stale(app, Some(&have), &BTreeMap::new(), &none)[0],
        "network namespace of vpn is gone"
    );
    assert_eq!(stale(app, None, &primary, &none).len(), 3);
    let bk = &p.services["bk"];
    let have = resolve(&p, "bk", 1, &lookup).unwrap();
    assert!(stale(bk, Some(&have), &primary, &none).is_empty());
    assert_eq!(
        stale(bk, Some(&have), &primary, &recreated),
        ["volumes_from container of vpn is recreated"]
    );
}

#[test]
fn namespace_owners_come_first_in_apply_order() {
    let p = project(
        "services:\n  app:\n    image: x\n    network_mode: service:vpn\n  bk:\n    image: x\n    \
         volumes_from: [app]\n  vpn:\n    image: x\n",
    );
    assert_eq!(crate::plan::apply_order(&p), ["vpn", "app", "bk"]);
}
