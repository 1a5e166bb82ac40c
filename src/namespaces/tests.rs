use serde_json::json;

use super::*;
use crate::model::{Dependency, Deploy, Port};

/// A project built by hand (the loader depends on this module, so its tests cannot use it):
/// `{"svc": {"field": value}}`, with `depends_on` a list and `replicas` a number.
fn project(services: Value) -> Project {
    let mut p: Project = serde_json::from_value(json!({"name": "p", "services": {}})).unwrap();
    for (name, fields) in services.as_object().unwrap() {
        let mut svc = Service::default();
        for (k, v) in fields.as_object().unwrap() {
            match k.as_str() {
                "network_mode" => svc.network_mode = v.as_str().map(String::from),
                "replicas" => {
                    svc.deploy = Some(Deploy {
                        replicas: v.as_u64().map(|n| n as u32),
                        ..Default::default()
                    })
                }
                "depends_on" => {
                    for d in v.as_array().unwrap() {
                        let dep = Dependency {
                            condition: "service_started".into(),
                            restart: false,
                            required: true,
                        };
                        svc.depends_on.insert(d.as_str().unwrap().into(), dep);
                    }
                }
                "ports" => svc
                    .ports
                    .push(serde_json::from_value::<Port>(json!({"target": 80})).unwrap()),
                "networks" => {
                    svc.networks.insert("default".into(), None);
                }
                _ => {
                    svc.extra.insert(k.clone(), v.clone());
                }
            }
        }
        p.services.insert(name.clone(), svc);
    }
    p
}

/// The project Compose v5.6.1 was run on (see compose_hash's tests for its hashes).
fn stack() -> Project {
    project(json!({
        "vpn": {"ipc": "shareable"},
        "app": {"network_mode": "service:vpn", "ipc": "service:vpn", "pid": "service:vpn",
                "depends_on": ["vpn"]},
        "bk": {"volumes_from": ["vpn:ro", "container:nsxext:ro"], "links": ["vpn", "vpn:tunnel"],
               "depends_on": ["vpn"]},
    }))
}

const VPN_ID: &str = "ffaf6156a1d519870de003f736e89c5b2b24ec3a8ead8f229781832668aca89e";

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
    let p = stack();
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
fn refs_in_field_order() {
    let p = project(json!({
        "db": {"replicas": 10},
        "app": {"network_mode": "service:db", "pid": "host", "volumes_from": ["db", "container:x"]},
    }));
    let r: Vec<(Kind, String)> = refs(&p.services["app"])
        .into_iter()
        .map(|r| (r.kind, r.service))
        .collect();
    assert_eq!(
        r,
        [(Kind::Network, "db".into()), (Kind::Volumes, "db".into())]
    );
    assert!(joins_network(&p.services["app"]));
    assert!(!joins_network(&p.services["db"]));
}

fn problems(services: Value) -> Vec<(String, String)> {
    let mut p = project(services);
    p.disabled_services.push("off".into());
    validate(&p)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[test]
fn bad_references_are_problems_naming_the_field() {
    let e = problems(json!({"a": {"network_mode": "service:zz"}}));
    assert_eq!(e[0].0, "services.a.network_mode");
    assert!(e[0].1.contains("undefined service \"zz\""), "{e:?}");
    let e = problems(json!({"b": {"ipc": "service:off"}}));
    assert_eq!(e[0].0, "services.b.ipc");
    assert!(e[0].1.contains("disabled"), "{e:?}");
    let e = problems(json!({"b": {"volumes_from": ["zz:ro"], "links": ["yy:alias"]}}));
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["services.b.volumes_from", "services.b.links"]);
    let e = problems(json!({
        "a": {"pid": "service:b", "depends_on": ["b"]},
        "b": {"network_mode": "service:a", "depends_on": ["a"]},
    }));
    assert_eq!(
        e,
        [(
            "services.a.pid".to_string(),
            "dependency cycle detected: a -> b -> a".to_string()
        )]
    );
    for field in ["networks", "ports", "expose", "hostname"] {
        let e = problems(json!({
            "a": {},
            "b": {"network_mode": "service:a", "depends_on": ["a"], field: ["x"]},
        }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, format!("services.b.{field}"));
        assert!(e[0].1.contains("mutually exclusive"), "{e:?}");
    }
    // `container:` names a container outside the project: nothing to check at load.
    assert!(problems(json!({"a": {"network_mode": "container:elsewhere"}})).is_empty());
}

#[test]
fn a_dependent_is_stale_when_its_target_is_replaced_or_gone() {
    let p = stack();
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
