//! The spec read back from an inspected container, for containers made without composeops'
//! labels (adoption of a stack started by `docker compose up`).

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{ContainerInspectResponse, MountType, RestartPolicyNameEnum};

use super::*;

// As long as `from_service`, for the same reason: one engine field after another.
impl Spec {
    /// Reads the spec back from an inspected container (for adoption of containers that do
    /// not carry composeops' labels). Per-replica values (the container's own name and short
    /// id among the aliases, the default hostname) are removed.
    pub fn from_container(c: &ContainerInspectResponse, image_ref: Option<&str>) -> Spec {
        let cfg = c.config.clone().unwrap_or_default();
        let hc = c.host_config.clone().unwrap_or_default();
        let id = c.id.clone().unwrap_or_default();
        let short = &id[..id.len().min(12)];
        let name = c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let mut s = Spec {
            image: image_ref
                .map(str::to_string)
                .or(cfg.image.clone())
                .unwrap_or_default(),
            command: cfg.cmd.clone().filter(|c| !c.is_empty()),
            entrypoint: cfg.entrypoint.clone().filter(|c| !c.is_empty()),
            user: cfg.user.clone().filter(|u| !u.is_empty()),
            working_dir: cfg.working_dir.clone().filter(|u| !u.is_empty()),
            hostname: cfg.hostname.clone().filter(|h| !h.is_empty() && h != short),
            stop_signal: cfg.stop_signal.clone().filter(|u| !u.is_empty()),
            stop_grace_period: cfg.stop_timeout,
            tty: cfg.tty.unwrap_or(false),
            stdin_open: cfg.open_stdin.unwrap_or(false),
            init: hc.init,
            privileged: hc.privileged.unwrap_or(false),
            read_only: hc.readonly_rootfs.unwrap_or(false),
            cap_add: caps(hc.cap_add.clone().unwrap_or_default()),
            cap_drop: caps(hc.cap_drop.clone().unwrap_or_default()),
            extra_hosts: sorted(hc.extra_hosts.clone().unwrap_or_default()),
            dns: hc.dns.clone().unwrap_or_default(),
            restart: hc
                .restart_policy
                .as_ref()
                .and_then(|r| r.name)
                .map(|n| match n {
                    RestartPolicyNameEnum::EMPTY => "no".to_string(),
                    RestartPolicyNameEnum::ON_FAILURE => {
                        let max = hc
                            .restart_policy
                            .as_ref()
                            .and_then(|r| r.maximum_retry_count)
                            .unwrap_or(0);
                        if max > 0 {
                            format!("on-failure:{max}")
                        } else {
                            "on-failure".into()
                        }
                    }
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "no".into()),
            ..Default::default()
        };
        if let Some(l) = &hc.log_config {
            let options: BTreeMap<String, String> =
                l.config.clone().unwrap_or_default().into_iter().collect();
            let driver = l.typ.clone().filter(|t| !t.is_empty());
            if driver.is_some() || !options.is_empty() {
                s.logging = Some(LoggingSpec { driver, options });
            }
        }
        let published: BTreeSet<String> = hc
            .port_bindings
            .clone()
            .unwrap_or_default()
            .into_keys()
            .collect();
        s.expose = sorted(
            cfg.exposed_ports
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !published.contains(p))
                .collect(),
        );
        s.mem_limit = hc.memory.filter(|m| *m > 0);
        s.cpus = hc.nano_cpus.filter(|c| *c > 0);
        s.shm_size = hc.shm_size.filter(|m| *m > 0 && *m != DEFAULT_SHM);
        s.security_opt = sorted(hc.security_opt.clone().unwrap_or_default());
        s.sysctls = hc.sysctls.clone().unwrap_or_default().into_iter().collect();
        for u in hc.ulimits.clone().unwrap_or_default() {
            s.ulimits.insert(
                u.name.unwrap_or_default(),
                UlimitSpec {
                    soft: u.soft.unwrap_or(0),
                    hard: u.hard.unwrap_or(0),
                },
            );
        }
        s.pid = hc.pid_mode.clone().filter(|p| !p.is_empty());
        s.ipc = hc
            .ipc_mode
            .clone()
            .filter(|p| !p.is_empty() && p != "private");
        s.volumes_from = hc.volumes_from.clone().unwrap_or_default();
        for e in cfg.env.unwrap_or_default() {
            let (k, v) = e.split_once('=').unwrap_or((&e, ""));
            s.environment.insert(k.to_string(), v.to_string());
        }
        for (k, v) in cfg.labels.unwrap_or_default() {
            if !k.starts_with("com.docker.compose.") && !k.starts_with("io.composeops.") {
                s.labels.insert(k, v);
            }
        }
        let mut ports = Vec::new();
        for (key, bindings) in hc.port_bindings.clone().unwrap_or_default() {
            let (target, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            for b in bindings.unwrap_or_default() {
                ports.push(format!(
                    "{}:{}:{target}/{proto}",
                    b.host_ip.unwrap_or_default(),
                    b.host_port.unwrap_or_default()
                ));
            }
        }
        s.ports = sorted(ports);
        for m in hc.mounts.clone().unwrap_or_default() {
            let kind = match m.typ {
                Some(MountType::BIND) => "bind",
                Some(MountType::TMPFS) => "tmpfs",
                _ => "volume",
            };
            let source = m
                .source
                .filter(|s| !(s.is_empty() || kind == "volume" && is_anonymous(s)));
            s.mounts.push(MountSpec {
                kind: kind.into(),
                source,
                target: m.target.unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        for b in hc.binds.clone().unwrap_or_default() {
            let parts: Vec<&str> = b.split(':').collect();
            if parts.len() >= 2 {
                let kind = if parts[0].starts_with('/') {
                    "bind"
                } else {
                    "volume"
                };
                let ro = parts
                    .get(2)
                    .map(|o| o.split(',').any(|x| x == "ro"))
                    .unwrap_or(false);
                s.mounts.push(MountSpec {
                    kind: kind.into(),
                    source: Some(parts[0].into()),
                    target: parts[1].into(),
                    read_only: ro,
                });
            }
        }
        for (target, _) in hc.tmpfs.clone().unwrap_or_default() {
            s.mounts.push(MountSpec {
                kind: "tmpfs".into(),
                source: None,
                target,
                read_only: false,
            });
        }
        s.mounts.sort_by(|a, b| a.target.cmp(&b.target));
        let mode = hc.network_mode.clone().unwrap_or_default();
        let nets = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        if mode.starts_with("container:")
            || mode == "host"
            || mode == "none"
            || mode.starts_with("service:")
        {
            s.network_mode = Some(mode);
        } else {
            for (net, ep) in nets {
                let aliases: BTreeSet<String> = ep
                    .aliases
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| {
                        a != &name
                            && a != short
                            && !(a.len() >= 12 && id.starts_with(a.as_str()))
                            && Some(a.as_str()) != cfg.hostname.as_deref()
                    })
                    .collect();
                let ipam = ep.ipam_config.unwrap_or_default();
                s.networks.insert(
                    net,
                    EndpointSpec {
                        aliases: aliases.into_iter().collect(),
                        ipv4_address: ipam.ipv4_address.filter(|a| !a.is_empty()),
                        ipv6_address: ipam.ipv6_address.filter(|a| !a.is_empty()),
                    },
                );
            }
        }
        if let Some(h) = cfg.healthcheck {
            s.healthcheck = Some(health_from_engine(&h));
        }
        s
    }
}
