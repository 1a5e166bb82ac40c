//! The desired spec of a service, from the loaded compose model.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::model::Project;

// One field after another, in the order of Compose's service model: the mapping reads best
// as one list, and each step is a few lines; splitting it would scatter that list.
impl Spec {
    /// The desired spec of `service` (pure: the project and the image reference only).
    pub fn from_service(project: &Project, service: &str) -> Spec {
        let svc = &project.services[service];
        let x = &svc.extra;
        let mut s = Spec {
            image: image_reference(project, service),
            command: svc.command.clone(),
            entrypoint: svc.entrypoint.clone(),
            restart: svc.restart.clone().unwrap_or_else(|| "no".into()),
            network_mode: svc.network_mode.clone(),
            user: opt_str(x.get("user")),
            working_dir: opt_str(x.get("working_dir")),
            hostname: opt_str(x.get("hostname")),
            stop_signal: opt_str(x.get("stop_signal")),
            stop_grace_period: opt_str(x.get("stop_grace_period"))
                .and_then(|d| crate::duration::parse(&d))
                .map(|d| d.as_secs() as i64),
            tty: opt_bool(x.get("tty")).unwrap_or(false),
            stdin_open: opt_bool(x.get("stdin_open")).unwrap_or(false),
            init: opt_bool(x.get("init")),
            privileged: opt_bool(x.get("privileged")).unwrap_or(false),
            read_only: opt_bool(x.get("read_only")).unwrap_or(false),
            cap_add: caps(str_list(x.get("cap_add"))),
            cap_drop: caps(str_list(x.get("cap_drop"))),
            extra_hosts: sorted(
                str_list(x.get("extra_hosts"))
                    .into_iter()
                    .map(|h| h.replacen('=', ":", 1))
                    .collect(),
            ),
            dns: str_list(x.get("dns")),
            ..Default::default()
        };
        if let Some(Value::Object(l)) = x.get("logging") {
            s.logging = Some(LoggingSpec {
                driver: l.get("driver").map(value_str),
                options: match l.get("options") {
                    Some(Value::Object(o)) => {
                        o.iter().map(|(k, v)| (k.clone(), value_str(v))).collect()
                    }
                    _ => BTreeMap::new(),
                },
            });
        }
        s.expose = sorted(
            str_list(x.get("expose"))
                .iter()
                .map(|p| port_key(p))
                .collect(),
        );
        s.mem_limit = opt_str(x.get("mem_limit"))
            .and_then(|v| parse_bytes(&v))
            .filter(|m| *m > 0);
        s.cpus = x
            .get("cpus")
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|c| (c * 1e9) as i64)
            .filter(|c| *c > 0);
        s.shm_size = opt_str(x.get("shm_size"))
            .and_then(|v| parse_bytes(&v))
            .filter(|m| *m > 0 && *m != DEFAULT_SHM);
        s.security_opt = sorted(str_list(x.get("security_opt")));
        match x.get("sysctls") {
            Some(Value::Object(o)) => {
                s.sysctls = o.iter().map(|(k, v)| (k.clone(), value_str(v))).collect();
            }
            Some(Value::Array(a)) => {
                for e in a.iter().map(value_str) {
                    let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                    s.sysctls.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        if let Some(Value::Object(o)) = x.get("ulimits") {
            for (k, v) in o {
                let u = match v {
                    Value::Object(m) => UlimitSpec {
                        soft: m.get("soft").and_then(Value::as_i64).unwrap_or(0),
                        hard: m.get("hard").and_then(Value::as_i64).unwrap_or(0),
                    },
                    other => {
                        let n = other.as_i64().unwrap_or(0);
                        UlimitSpec { soft: n, hard: n }
                    }
                };
                s.ulimits.insert(k.clone(), u);
            }
        }
        s.pid = opt_str(x.get("pid")).filter(|p| !p.is_empty());
        s.ipc = opt_str(x.get("ipc")).filter(|p| !p.is_empty() && p != "private");
        s.volumes_from = crate::namespaces::volumes_from(svc);
        s.links = crate::namespaces::links(svc);
        for (k, v) in &svc.environment {
            if let Some(v) = v {
                s.environment.insert(k.clone(), v.clone());
            }
        }
        s.labels = svc
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        s.ports = sorted(
            svc.ports
                .iter()
                .map(|p| {
                    let host_ip = p.host_ip.clone().unwrap_or_default();
                    let published = p.published.clone().unwrap_or_default();
                    format!("{host_ip}:{published}:{}/{}", p.target, p.protocol)
                })
                .collect(),
        );
        for v in &svc.volumes {
            let source = match v.kind.as_str() {
                "volume" => v.source.as_ref().map(|k| {
                    project
                        .volumes
                        .get(k)
                        .map(|vol| vol.name.clone())
                        .unwrap_or_else(|| k.clone())
                }),
                "tmpfs" => None,
                _ => v.source.clone(),
            };
            s.mounts.push(MountSpec {
                kind: v.kind.clone(),
                source,
                target: v.target.clone(),
                read_only: v.read_only,
            });
        }
        for t in str_list(x.get("tmpfs")) {
            let target = t.split(':').next().unwrap_or_default().to_string();
            s.mounts.push(MountSpec {
                kind: "tmpfs".into(),
                source: None,
                target,
                read_only: false,
            });
        }
        let taken: Vec<&str> = s.mounts.iter().map(|m| m.target.as_str()).collect();
        let files = crate::configs::spec_parts(project, service, &taken);
        for (target, source) in files.binds {
            s.mounts.push(MountSpec {
                kind: "bind".into(),
                source: Some(source),
                target,
                read_only: true,
            });
        }
        (s.secrets, s.configs, s.files) = (files.secrets, files.configs, files.files);
        s.mounts.sort_by(|a, b| a.target.cmp(&b.target));
        if svc.network_mode.is_none() {
            for (key, ep) in &svc.networks {
                let name = project
                    .networks
                    .get(key)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| key.clone());
                let ep = ep.clone().unwrap_or_default();
                let mut aliases: BTreeSet<String> = ep.aliases.iter().cloned().collect();
                aliases.insert(service.to_string());
                s.networks.insert(
                    name,
                    EndpointSpec {
                        aliases: aliases.into_iter().collect(),
                        ipv4_address: ep.ipv4_address.clone(),
                        ipv6_address: ep.ipv6_address.clone(),
                    },
                );
            }
        }
        if let Some(h) = &svc.healthcheck {
            s.healthcheck = Some(if h.disable {
                HealthSpec {
                    test: vec!["NONE".into()],
                    ..Default::default()
                }
            } else {
                HealthSpec {
                    test: h.test.clone().unwrap_or_default(),
                    interval: dur_ns(&h.interval),
                    timeout: dur_ns(&h.timeout),
                    retries: h.retries.unwrap_or(0) as i64,
                    start_period: dur_ns(&h.start_period),
                    start_interval: dur_ns(&h.start_interval),
                }
            });
        }
        for (k, v) in x {
            if !APPLIED_EXTRA.contains(&k.as_str())
                && !NOT_IN_SPEC.contains(&k.as_str())
                && !k.starts_with("x-")
            {
                s.unsupported.insert(k.clone(), v.clone());
            }
        }
        if let Some(d) = &svc.deploy {
            let mut d = serde_json::to_value(d).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut d {
                // Replicas are the plan's business, update_config apply's: not the container's.
                o.remove("replicas");
                o.remove("update_config");
                o.remove("rollback_config");
                if !o.is_empty() {
                    s.unsupported.insert("deploy".into(), d);
                }
            }
        }
        s
    }
}
