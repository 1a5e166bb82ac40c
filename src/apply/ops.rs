//! The engine calls `apply` makes, as a trait: [`ContainerOps`], implemented for [`Engine`]
//! with bollard. The trait lets the recreate, rollback and recovery logic run against an
//! in-memory engine in unit tests; the end-to-end tests prove the same logic on the real one.
//!
//! Each method has the idempotent meaning apply needs (start of a running container, stop of a
//! stopped or missing one, removal of a missing one all succeed), so callers hold no
//! engine-error matching of their own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Result;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, EventMessage, HealthConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::engine::{is_conflict, is_not_found, is_not_modified, Engine};

/// What apply reads about one container: where it is, whether it runs, and how it is doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the engine's leading `/`.
    pub name: String,
    pub running: bool,
    /// created | running | restarting | exited | dead …
    pub status: String,
    pub exit_code: Option<i64>,
    /// starting | healthy | unhealthy; `None` without a healthcheck.
    pub health: Option<String>,
    /// The last three health-check results, `exit N: output`.
    pub health_log: Vec<String>,
    /// Restart policy `no` (or none): an exit 0 means the job is done.
    pub one_shot: bool,
    /// Network name -> the aliases of the container's endpoint there.
    pub networks: BTreeMap<String, Vec<String>>,
    /// How long its healthcheck can take to decide (see [`health_bound`]); `None` without one.
    pub health_bound: Option<Duration>,
    /// Container port (`8080/tcp`) -> where the host publishes it (`0.0.0.0:32768`,
    /// `[::]:32768`), as the engine bound it; ports it does not publish are left out.
    pub published: BTreeMap<String, Vec<String>>,
}

/// What the engine's event stream says about one container, as a readiness wait needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    Start,
    /// The process ended (a stop, a crash, or a restart policy about to restart it).
    Die {
        exit_code: Option<i64>,
    },
    /// `healthy` or `unhealthy`.
    Health(String),
}

/// The container, network and volume calls of `apply`.
///
/// Async fns in a public trait: callers use it with [`Engine`] (or a test fake), whose futures
/// are `Send`, so the missing `Send` bound on the trait's futures costs nothing.
#[allow(async_fn_in_trait)]
pub trait ContainerOps {
    /// Creates (does not start) container `name`; returns its id.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String>;
    async fn connect(&self, network: &str, id: &str, endpoint: EndpointSettings) -> Result<()>;
    /// Disconnects `id` from `network`, so that new connections go to the other containers
    /// behind the same aliases.
    async fn disconnect(&self, network: &str, id: &str) -> Result<()>;
    /// The `start`, `die` and `health_status` events of container `id`, from `since` (a few
    /// seconds back, so an event raced by the subscription itself is replayed, not lost).
    fn events(&self, id: &str, since: std::time::SystemTime) -> BoxStream<'static, ContainerEvent>;
    /// Extracts the tar archive `tar` at `/` in container `id` (created, not started), keeping
    /// the archive's owners when `keep_owner`, else owned by the container's root.
    async fn upload(&self, id: &str, tar: Vec<u8>, keep_owner: bool) -> Result<()>;
    /// Starts `id`; already running is success.
    async fn start(&self, id: &str) -> Result<()>;
    /// Stops `id` within `grace_secs`; already stopped or missing is success.
    async fn stop(&self, id: &str, grace_secs: i64) -> Result<()>;
    async fn restart(&self, id: &str) -> Result<()>;
    async fn rename(&self, id: &str, name: &str) -> Result<()>;
    /// Force-removes `id` (with its anonymous volumes kept); missing is success.
    async fn remove(&self, id: &str) -> Result<()>;
    /// The container with this id or name, `None` when there is none.
    async fn inspect(&self, id_or_name: &str) -> Result<Option<ContainerInfo>>;
    /// Up to `lines` last lines of stdout and stderr; empty when they cannot be read.
    async fn logs_tail(&self, id: &str, lines: usize) -> Vec<String>;
    /// Creates a network; one that already exists is success.
    async fn create_network(&self, req: NetworkCreateRequest) -> Result<()>;
    async fn create_volume(&self, req: VolumeCreateRequest) -> Result<()>;
    /// Engine requests made so far (reported by `apply --json`).
    fn calls(&self) -> usize;
}

impl ContainerOps for Engine {
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        Ok(self.call().create_container(Some(opts), body).await?.id)
    }

    async fn connect(&self, network: &str, id: &str, endpoint: EndpointSettings) -> Result<()> {
        let req = NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(endpoint),
        };
        Ok(self.call().connect_network(network, req).await?)
    }

    async fn disconnect(&self, network: &str, id: &str) -> Result<()> {
        let req = NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(false),
        };
        Ok(self.call().disconnect_network(network, req).await?)
    }

    fn events(&self, id: &str, since: std::time::SystemTime) -> BoxStream<'static, ContainerEvent> {
        // To the nanosecond: whole seconds replayed the `die` of a stop up to a second before
        // `since`, and a container started again just after that stop was judged dead.
        let d = since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let since = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
        let filters = HashMap::from([
            ("container".to_string(), vec![id.to_string()]),
            (
                "event".to_string(),
                vec!["start".into(), "die".into(), "health_status".into()],
            ),
        ]);
        let opts = EventsOptionsBuilder::default()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        self.call()
            .events(Some(opts))
            .filter_map(|m| async move { m.ok().and_then(event) })
            .boxed()
    }

    async fn upload(&self, id: &str, tar: Vec<u8>, keep_owner: bool) -> Result<()> {
        // As Compose (and `docker cp`): a file never replaces a directory, nor the reverse.
        let mut opts = UploadToContainerOptionsBuilder::default()
            .path("/")
            .no_overwrite_dir_non_dir("true");
        if keep_owner {
            opts = opts.copy_uidgid("1");
        }
        let body = bollard::body_full(tar.into());
        Ok(self
            .call()
            .upload_to_container(id, Some(opts.build()), body)
            .await?)
    }

    async fn start(&self, id: &str) -> Result<()> {
        match self.call().start_container(id, None).await {
            Err(e) if !is_not_modified(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn stop(&self, id: &str, grace_secs: i64) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace_secs as i32)
            .build();
        match self.call().stop_container(id, Some(opts)).await {
            Err(e) if !is_not_modified(&e) && !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn restart(&self, id: &str) -> Result<()> {
        Ok(self.call().restart_container(id, None).await?)
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        let opts = RenameContainerOptionsBuilder::default().name(name).build();
        Ok(self.call().rename_container(id, opts).await?)
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.call().remove_container(id, Some(opts)).await {
            // A run killed during its removal left the engine finishing it: wait for that.
            Err(e) if is_conflict(&e) && e.to_string().contains("already in progress") => {
                self.wait_gone(id).await
            }
            Err(e) if !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn inspect(&self, id_or_name: &str) -> Result<Option<ContainerInfo>> {
        match self.call().inspect_container(id_or_name, None).await {
            Ok(c) => Ok(Some(info(c))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Vec<String> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut out = Vec::new();
        let mut s = self.call().logs(id, Some(opts));
        while let Some(Ok(chunk)) = s.next().await {
            out.extend(chunk.to_string().lines().map(str::to_string));
        }
        out
    }

    async fn create_network(&self, req: NetworkCreateRequest) -> Result<()> {
        match self.call().create_network(req).await {
            Err(e) if !is_conflict(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn create_volume(&self, req: VolumeCreateRequest) -> Result<()> {
        self.call().create_volume(req).await?;
        Ok(())
    }

    fn calls(&self) -> usize {
        Engine::calls(self)
    }
}

impl Engine {
    /// Waits (up to 30 s) until container `id` is gone.
    async fn wait_gone(&self, id: &str) -> Result<()> {
        for _ in 0..150 {
            match self.call().inspect_container(id, None).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        anyhow::bail!("the engine has been removing container {id} for 30s: check `docker ps -a`")
    }
}

/// An engine event as a [`ContainerEvent`]; `None` for the ones a wait does not act on.
fn event(m: EventMessage) -> Option<ContainerEvent> {
    let action = m.action?;
    let attrs = m.actor.and_then(|a| a.attributes).unwrap_or_default();
    match action.as_str() {
        "start" => Some(ContainerEvent::Start),
        "die" => Some(ContainerEvent::Die {
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        }),
        a => a
            .strip_prefix("health_status:")
            .map(|h| ContainerEvent::Health(h.trim().to_string())),
    }
}

/// The longest a healthcheck can take to decide: `start_period + interval × retries +
/// timeout`, with the engine's defaults (30 s, 30 s, 3, 0). `None` without a healthcheck.
pub(crate) fn health_bound(h: &HealthConfig) -> Option<Duration> {
    let test = h.test.as_deref().unwrap_or_default();
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let ns = |v: Option<i64>, default: u64| match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => Duration::from_secs(default),
    };
    let retries = h.retries.filter(|r| *r > 0).unwrap_or(3) as u32;
    Some(ns(h.start_period, 0) + ns(h.interval, 30) * retries + ns(h.timeout, 30))
}

/// The parts of an inspect response apply decides on.
fn info(c: ContainerInspectResponse) -> ContainerInfo {
    let st = c.state.unwrap_or_default();
    let health = st.health.as_ref();
    let health_log = health
        .and_then(|h| h.log.clone())
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(3)
        .rev()
        .map(|l| {
            format!(
                "exit {}: {}",
                l.exit_code.unwrap_or(-1),
                l.output.unwrap_or_default().trim()
            )
        })
        .collect();
    let one_shot = c
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|r| r.name)
        .map(|n| n.to_string())
        .is_none_or(|n| n.is_empty() || n == "no");
    let settings = c.network_settings.unwrap_or_default();
    let networks = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(n, ep)| (n, ep.aliases.unwrap_or_default()))
        .collect();
    let published = published(settings.ports.unwrap_or_default());
    let health_bound = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.healthcheck.as_ref())
        .and_then(health_bound);
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        running: st.running.unwrap_or(false),
        status: st.status.map(|s| s.to_string()).unwrap_or_default(),
        exit_code: st.exit_code,
        health: health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        health_log,
        one_shot,
        networks,
        health_bound,
        published,
    }
}

/// The engine's port map as `port/proto` -> `host:port` for each binding (an IPv6 host in
/// brackets, as in a URL); unpublished ports are left out.
fn published(ports: bollard::models::PortMap) -> BTreeMap<String, Vec<String>> {
    ports
        .into_iter()
        .filter_map(|(port, bindings)| {
            let addrs: Vec<String> = bindings
                .unwrap_or_default()
                .into_iter()
                .filter_map(|b| {
                    let host_port = b.host_port.filter(|p| !p.is_empty())?;
                    let ip = b.host_ip.unwrap_or_default();
                    Some(match ip.as_str() {
                        "" => format!("0.0.0.0:{host_port}"),
                        v6 if v6.contains(':') => format!("[{v6}]:{host_port}"),
                        v4 => format!("{v4}:{host_port}"),
                    })
                })
                .collect();
            (!addrs.is_empty()).then_some((port, addrs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_are_host_addresses_in_url_form() {
        let b = |ip: &str, port: &str| bollard::models::PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let map: bollard::models::PortMap = [
            (
                "8080/tcp".to_string(),
                Some(vec![b("0.0.0.0", "32768"), b("::", "32768")]),
            ),
            ("53/udp".to_string(), Some(vec![b("", "5353")])),
            ("9000/tcp".to_string(), None),
        ]
        .into_iter()
        .collect();
        let want: BTreeMap<String, Vec<String>> = [
            ("53/udp", vec!["0.0.0.0:5353"]),
            ("8080/tcp", vec!["0.0.0.0:32768", "[::]:32768"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(published(map), want);
    }

    #[test]
    fn health_bound_is_start_period_plus_interval_times_retries_plus_timeout() {
        let s = |n: i64| Some(n * 1_000_000_000);
        let h = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            interval: s(2),
            timeout: s(3),
            retries: Some(4),
            start_period: s(5),
            ..Default::default()
        };
        assert_eq!(health_bound(&h), Some(Duration::from_secs(5 + 2 * 4 + 3)));
        // The engine's defaults: interval 30s, timeout 30s, retries 3, start period 0.
        let defaults = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            ..Default::default()
        };
        assert_eq!(health_bound(&defaults), Some(Duration::from_secs(120)));
        let none = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert_eq!(health_bound(&none), None);
        assert_eq!(health_bound(&HealthConfig::default()), None);
    }
}
