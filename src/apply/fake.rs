//! An in-memory engine for unit tests of the recreate, rollback and recovery logic. It only
//! speeds those tests up: the same code runs against the real engine in tests/apply_e2e.rs.
//!
//! `crash_at(n)` makes the n-th call never return, so that a test can drop the apply future
//! there: the state left behind is what a SIGKILL at that instant leaves.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{bail, Result};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkCreateRequest, VolumeCreateRequest,
};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::ops::{ContainerEvent, ContainerInfo, ContainerOps};

/// The network every fake container is attached to at first.
pub(crate) const NET: &str = "p_default";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FakeContainer {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    /// What starting it does: run healthy, or exit 1 at once.
    pub starts_ok: bool,
    /// Network -> aliases.
    pub networks: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    containers: Vec<FakeContainer>,
    next_id: u64,
    calls: usize,
    crash_at: Option<usize>,
    new_fail: bool,
    upload_fail: bool,
    /// (container id, archive size, keep owner) of each upload, in call order.
    uploads: Vec<(String, usize, bool)>,
    /// Ids of the containers a changing call addressed, in call order.
    changed: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Fake {
    s: Mutex<State>,
    crashed: tokio::sync::Notify,
}

/// A 64-hex id whose short form (12 characters) is `n` in hex, zero-padded.
pub(crate) fn id(n: u64) -> String {
    format!("{n:012x}{}", "f".repeat(52))
}

impl Fake {
    /// Adds a container made outside the run (it starts fine); returns its id.
    pub(crate) fn add(&self, name: &str, running: bool) -> String {
        let mut s = self.s.lock().unwrap();
        s.next_id += 1;
        let c = FakeContainer {
            id: id(0xa00 + s.next_id),
            name: name.into(),
            running,
            exit_code: (!running).then_some(0),
            starts_ok: true,
            networks: BTreeMap::from([(NET.to_string(), vec!["web".to_string()])]),
        };
        s.containers.push(c.clone());
        c.id
    }

    /// Containers created from now on exit with code 1 when started.
    pub(crate) fn new_containers_fail(&self) {
        self.s.lock().unwrap().new_fail = true;
    }

    /// Uploads into containers fail from now on.
    pub(crate) fn uploads_fail(&self) {
        self.s.lock().unwrap().upload_fail = true;
    }

    /// The uploads made so far: (container id, archive size, keep owner).
    pub(crate) fn uploads(&self) -> Vec<(String, usize, bool)> {
        self.s.lock().unwrap().uploads.clone()
    }

    /// The `n`-th call from now (1-based) never returns.
    pub(crate) fn crash_at(&self, n: usize) {
        let mut s = self.s.lock().unwrap();
        s.crash_at = Some(s.calls + n);
    }

    pub(crate) fn no_crash(&self) {
        self.s.lock().unwrap().crash_at = None;
    }

    /// Whether any call changed (started, stopped, renamed, removed, (dis)connected) `id`.
    pub(crate) fn changed(&self, id: &str) -> bool {
        self.s.lock().unwrap().changed.iter().any(|c| c == id)
    }

    pub(crate) fn containers(&self) -> Vec<FakeContainer> {
        self.s.lock().unwrap().containers.clone()
    }

    async fn tick(&self) {
        let crash = {
            let mut s = self.s.lock().unwrap();
            s.calls += 1;
            s.crash_at == Some(s.calls)
        };
        if crash {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once a call has hung at the crash point.
    pub(crate) async fn crashed(&self) {
        self.crashed.notified().await
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut FakeContainer) -> T) -> Result<T> {
        let mut s = self.s.lock().unwrap();
        match s
            .containers
            .iter_mut()
            .find(|c| c.id == key || c.name == key)
        {
            Some(c) => Ok(f(c)),
            None => bail!("No such container: {key}"),
        }
    }

    /// [`Fake::with`] for a call that changes the container: recorded for [`Fake::changed`].
    fn change<T>(&self, key: &str, f: impl FnOnce(&mut FakeContainer) -> T) -> Result<T> {
        let id = self.with(key, |c| c.id.clone())?;
        self.s.lock().unwrap().changed.push(id);
        self.with(key, f)
    }
}

impl ContainerOps for Fake {
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        self.tick().await;
        let mut s = self.s.lock().unwrap();
        if s.containers.iter().any(|c| c.name == name) {
            bail!("Conflict: the container name {name} is already in use");
        }
        s.next_id += 1;
        let c = FakeContainer {
            id: id(0xb00 + s.next_id),
            name: name.into(),
            running: false,
            exit_code: None,
            starts_ok: !s.new_fail,
            networks: body
                .networking_config
                .and_then(|n| n.endpoints_config)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, ep)| (n, ep.aliases.unwrap_or_default()))
                .collect(),
        };
        s.containers.push(c.clone());
        Ok(c.id)
    }

    async fn connect(&self, network: &str, id: &str, ep: EndpointSettings) -> Result<()> {
        self.tick().await;
        let aliases = ep.aliases.unwrap_or_default();
        self.change(id, |c| c.networks.insert(network.into(), aliases).is_none())?
            .then_some(())
            .ok_or_else(|| anyhow::anyhow!("endpoint {id} already exists in network {network}"))
    }

    async fn disconnect(&self, network: &str, id: &str) -> Result<()> {
        self.tick().await;
        self.change(id, |c| c.networks.remove(network).is_some())?
            .then_some(())
            .ok_or_else(|| anyhow::anyhow!("container {id} is not connected to {network}"))
    }

    /// The fake's state changes only in its calls, so the inspect after subscribing sees
    /// every state: no events are needed.
    fn events(
        &self,
        _id: &str,
        _since: std::time::SystemTime,
    ) -> BoxStream<'static, ContainerEvent> {
        futures_util::stream::pending().boxed()
    }

    async fn upload(&self, id: &str, tar: Vec<u8>, keep_owner: bool) -> Result<()> {
        self.tick().await;
        let id = self.change(id, |c| c.id.clone())?;
        let mut s = self.s.lock().unwrap();
        if s.upload_fail {
            bail!("Error response from daemon: no space left on device");
        }
        s.uploads.push((id, tar.len(), keep_owner));
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.tick().await;
        self.change(id, |c| {
            c.running = c.starts_ok;
            c.exit_code = (!c.starts_ok).then_some(1);
        })
    }

    async fn stop(&self, id: &str, _grace_secs: i64) -> Result<()> {
        self.tick().await;
        let _ = self.change(id, |c| {
            if c.running {
                c.running = false;
                c.exit_code = Some(0);
            }
        });
        Ok(())
    }

    async fn restart(&self, id: &str) -> Result<()> {
        self.tick().await;
        self.change(id, |c| c.running = c.starts_ok)
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        self.tick().await;
        let target = self.change(id, |c| c.id.clone())?;
        let mut s = self.s.lock().unwrap();
        if s.containers
            .iter()
            .any(|c| c.name == name && c.id != target)
        {
            bail!("Conflict: the container name {name} is already in use");
        }
        let c = s.containers.iter_mut().find(|c| c.id == target).unwrap();
        c.name = name.into();
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.tick().await;
        let _ = self.change(id, |_| ());
        let mut s = self.s.lock().unwrap();
        s.containers.retain(|c| c.id != id && c.name != id);
        Ok(())
    }

    async fn inspect(&self, id_or_name: &str) -> Result<Option<ContainerInfo>> {
        self.tick().await;
        Ok(self.with(id_or_name, |c| info(c)).ok())
    }

    async fn logs_tail(&self, _id: &str, _lines: usize) -> Vec<String> {
        self.tick().await;
        vec!["fake app: exiting with 1".into()]
    }

    async fn create_network(&self, _req: NetworkCreateRequest) -> Result<()> {
        self.tick().await;
        Ok(())
    }

    async fn create_volume(&self, _req: VolumeCreateRequest) -> Result<()> {
        self.tick().await;
        Ok(())
    }

    fn calls(&self) -> usize {
        self.s.lock().unwrap().calls
    }
}

/// A running fake container is healthy; a stopped one has exited.
pub(crate) fn info(c: &FakeContainer) -> ContainerInfo {
    ContainerInfo {
        id: c.id.clone(),
        name: c.name.clone(),
        running: c.running,
        status: if c.running { "running" } else { "exited" }.into(),
        exit_code: c.exit_code,
        health: c.running.then(|| "healthy".into()),
        health_log: vec![],
        one_shot: false,
        networks: c.networks.clone(),
        health_bound: None,
        published: BTreeMap::new(),
    }
}
