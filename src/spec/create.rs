//! The engine's create body from a spec, and what every container of one apply shares.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount, MountType,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::*;
use crate::model::Project;

// One engine field after another, as `from_service` maps compose fields: one list.
impl Spec {
    /// The create body for replica `number` named `name`. Only the first network is attached at
    /// create time (older engines accept one endpoint); [`Spec::extra_networks`] lists the rest.
    pub fn create_body(
        &self,
        ctx: &CreateContext,
        name: &str,
        anon_volumes: &[(String, String)],
    ) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.extend(ctx.labels.clone());
        labels.insert(LABEL_NUMBER.into(), ctx.number.to_string());
        let env: Vec<String> = self
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = BTreeSet::new();
        for p in &self.ports {
            let (rest, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
            let mut parts = rest.rsplitn(3, ':');
            let target = parts.next().unwrap_or_default();
            let published = parts.next().unwrap_or_default();
            let host_ip = parts.next().unwrap_or_default();
            let key = format!("{target}/{proto}");
            exposed.insert(key.clone());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .as_mut()
                .unwrap()
                .push(PortBinding {
                    host_ip: Some(host_ip.to_string()),
                    host_port: Some(published.to_string()),
                });
        }
        exposed.extend(self.expose.iter().cloned());
        let mut mounts = Vec::new();
        let mut binds = Vec::new();
        let mut tmpfs = HashMap::new();
        for m in &self.mounts {
            match m.kind.as_str() {
                // Binds create a missing host directory, as Compose's create_host_path does.
                "bind" => binds.push(format!(
                    "{}:{}{}",
                    m.source.clone().unwrap_or_default(),
                    m.target,
                    if m.read_only { ":ro" } else { "" }
                )),
                "tmpfs" => {
                    tmpfs.insert(m.target.clone(), String::new());
                }
                _ => {
                    let source = m.source.clone().or_else(|| {
                        anon_volumes
                            .iter()
                            .find(|(t, _)| t == &m.target)
                            .map(|(_, n)| n.clone())
                    });
                    mounts.push(Mount {
                        target: Some(m.target.clone()),
                        source,
                        typ: Some(MountType::VOLUME),
                        read_only: Some(m.read_only),
                        ..Default::default()
                    })
                }
            }
        }
        // Anonymous volumes of the image (VOLUME) carried over from the old container.
        for (target, vol) in anon_volumes {
            if !self.mounts.iter().any(|m| &m.target == target) {
                mounts.push(Mount {
                    target: Some(target.clone()),
                    source: Some(vol.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                });
            }
        }
        let restart = {
            let (n, max) = self.restart.split_once(':').unwrap_or((&self.restart, "0"));
            let name = match n {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            };
            RestartPolicy {
                name: Some(name),
                maximum_retry_count: max.parse().ok().filter(|m| *m > 0),
            }
        };
        let first_net = self.networks.iter().next();
        let shares = ctx.shares.clone().unwrap_or_default();
        let network_mode = shares
            .network_mode
            .clone()
            .or_else(|| self.network_mode.clone())
            .or_else(|| first_net.map(|(n, _)| n.clone()));
        let networking_config = first_net.map(|(net, ep)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    links: nonempty(&shares.links),
                    ..endpoint(ep, name)
                },
            )])),
        });
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: if exposed.is_empty() {
                None
            } else {
                Some(exposed.into_iter().collect())
            },
            healthcheck: self.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(h.interval),
                timeout: Some(h.timeout),
                retries: Some(h.retries),
                start_period: Some(h.start_period),
                start_interval: if h.start_interval > 0 {
                    Some(h.start_interval)
                } else {
                    None
                },
            }),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            hostname: self.hostname.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_grace_period,
            tty: Some(self.tty),
            open_stdin: Some(self.stdin_open),
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                binds: if binds.is_empty() { None } else { Some(binds) },
                mounts: if mounts.is_empty() {
                    None
                } else {
                    Some(mounts)
                },
                tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
                port_bindings: if port_bindings.is_empty() {
                    None
                } else {
                    Some(port_bindings)
                },
                restart_policy: Some(restart),
                network_mode,
                init: self.init,
                privileged: Some(self.privileged),
                readonly_rootfs: Some(self.read_only),
                cap_add: nonempty(&self.cap_add),
                cap_drop: nonempty(&self.cap_drop),
                extra_hosts: nonempty(&self.extra_hosts),
                dns: nonempty(&self.dns),
                log_config: self
                    .logging
                    .as_ref()
                    .map(|l| bollard::models::HostConfigLogConfig {
                        typ: Some(l.driver.clone().unwrap_or_default()),
                        config: Some(l.options.clone().into_iter().collect()),
                    }),
                memory: self.mem_limit,
                nano_cpus: self.cpus,
                shm_size: self.shm_size,
                security_opt: nonempty(&self.security_opt),
                sysctls: if self.sysctls.is_empty() {
                    None
                } else {
                    Some(self.sysctls.clone().into_iter().collect())
                },
                ulimits: if self.ulimits.is_empty() {
                    None
                } else {
                    Some(
                        self.ulimits
                            .iter()
                            .map(|(n, u)| bollard::models::ResourcesUlimits {
                                name: Some(n.clone()),
                                soft: Some(u.soft),
                                hard: Some(u.hard),
                            })
                            .collect(),
                    )
                },
                pid_mode: shares.pid.clone().or_else(|| self.pid.clone()),
                ipc_mode: shares.ipc.clone().or_else(|| self.ipc.clone()),
                volumes_from: nonempty(&shares.volumes_from),
                links: nonempty(&shares.links),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        }
    }

    /// Networks after the first, connected after create: (network name, endpoint).
    pub fn extra_networks(&self, name: &str) -> Vec<(String, EndpointSettings)> {
        self.networks
            .iter()
            .skip(1)
            .map(|(n, ep)| (n.clone(), endpoint(ep, name)))
            .collect()
    }
}

fn endpoint(ep: &EndpointSpec, container_name: &str) -> EndpointSettings {
    let mut aliases = ep.aliases.clone();
    aliases.push(container_name.to_string());
    let ipam = if ep.ipv4_address.is_some() || ep.ipv6_address.is_some() {
        Some(bollard::models::EndpointIpamConfig {
            ipv4_address: ep.ipv4_address.clone(),
            ipv6_address: ep.ipv6_address.clone(),
            ..Default::default()
        })
    } else {
        None
    };
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: ipam,
        ..Default::default()
    }
}

/// Labels and numbering that are the same for every container of one apply of a service.
#[derive(Debug, Clone)]
pub struct CreateContext {
    pub number: u32,
    pub labels: HashMap<String, String>,
    /// The service's container references, resolved (see [`CreateContext::sharing`]).
    pub shares: Option<crate::namespaces::Shares>,
}

impl CreateContext {
    /// Compose's labels (so `docker compose ps/logs/down` see the container) plus composeops'.
    pub fn new(
        project: &Project,
        service: &str,
        spec: &Spec,
        number: u32,
        image_id: &str,
        digest: Option<&str>,
    ) -> Self {
        let svc = &project.services[service];
        let hash = spec.hash();
        let mut l = HashMap::new();
        l.insert(LABEL_PROJECT.into(), project.name.clone());
        l.insert(LABEL_SERVICE.into(), service.into());
        l.insert(LABEL_ONEOFF.into(), "False".into());
        // Compose's own hash: `docker compose up` then leaves this container alone.
        l.insert(
            LABEL_CONFIG_HASH.into(),
            crate::compose_hash::config_hash(project, service),
        );
        l.insert(
            LABEL_WORKING_DIR.into(),
            project.working_dir.display().to_string(),
        );
        l.insert(
            LABEL_CONFIG_FILES.into(),
            project
                .config_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        l.insert(
            LABEL_DEPENDS_ON.into(),
            svc.depends_on
                .iter()
                .map(|(n, d)| format!("{n}:{}:{}", d.condition, d.restart))
                .collect::<Vec<_>>()
                .join(","),
        );
        l.insert(LABEL_IMAGE.into(), image_id.into());
        l.insert(
            LABEL_VERSION.into(),
            crate::compose_hash::COMPOSE_VERSION.into(),
        );
        l.insert(LABEL_SPEC_HASH.into(), hash);
        l.insert(
            LABEL_SPEC.into(),
            serde_json::to_string(spec).expect("spec serialises"),
        );
        if let Some(d) = digest {
            l.insert(LABEL_DIGEST.into(), d.into());
        }
        CreateContext {
            number,
            labels: l,
            shares: None,
        }
    }

    /// With the service's `service:X`, `volumes_from` and `links` resolved to containers: the
    /// create body uses them, the config-hash is Compose's hash of the resolved service (as
    /// Compose computes it), and they are recorded for later plans.
    pub fn sharing(
        mut self,
        project: &Project,
        service: &str,
        shares: crate::namespaces::Shares,
    ) -> Self {
        self.labels.insert(
            LABEL_CONFIG_HASH.into(),
            crate::compose_hash::config_hash_resolved(project, service, Some(&shares)),
        );
        self.labels.insert(
            LABEL_SHARES.into(),
            serde_json::to_string(&shares).expect("shares serialise"),
        );
        self.shares = Some(shares);
        self
    }
}
