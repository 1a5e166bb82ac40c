//! Taking a whole project off this engine: what `--prune` does to an orphan container, done to
//! every container of the project, plus its networks. Volumes are never removed (they hold the
//! data; the stack may come back, here or after a restore). The agent uses it when a stack's
//! placement moves it to another node.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{RemoveContainerOptionsBuilder, StopContainerOptionsBuilder};
use serde::Serialize;

use crate::engine::{is_not_found, is_not_modified, Engine};
use crate::error::{Error, ErrorKind, Result};

/// What is (or was) on the engine for a project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Residue {
    /// Container names.
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
}

impl Residue {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty()
    }
}

/// The project's containers and networks on the engine (by Compose's project label).
pub async fn residue(engine: &Engine, project: &str) -> Result<Residue> {
    let observed = crate::observe::observe(engine, project)
        .await
        .map_err(Error::of(ErrorKind::Engine))?;
    Ok(Residue {
        containers: observed.containers.into_iter().map(|c| c.name).collect(),
        networks: observed.networks.into_iter().collect(),
    })
}

/// Stops (10 s grace, as for orphans) and removes every container of `project`, then its
/// networks, under the project lock so no apply of the same project runs meanwhile. Returns
/// what was removed.
pub async fn remove_project(
    engine: &Engine,
    state_dir: &Path,
    project: &str,
    lock_timeout: Duration,
) -> Result<Residue> {
    let _lock = crate::converge::lock(engine, state_dir, project, lock_timeout).await?;
    let observed = crate::observe::observe(engine, project)
        .await
        .map_err(Error::of(ErrorKind::Engine))?;
    let mut done = Residue::default();
    for c in &observed.containers {
        crate::progress::service(&c.service, format!("removing {}", c.name));
        let stop = StopContainerOptionsBuilder::default().t(10).build();
        match engine.call().stop_container(&c.id, Some(stop)).await {
            Err(e) if !is_not_modified(&e) && !is_not_found(&e) => {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!("cannot stop {}: {e}", c.name),
                ))
            }
            _ => {}
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        match engine.call().remove_container(&c.id, Some(rm)).await {
            Err(e) if !is_not_found(&e) => {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!("cannot remove {}: {e}", c.name),
                ))
            }
            _ => done.containers.push(c.name.clone()),
        }
    }
    for n in &observed.networks {
        match engine.call().remove_network(n).await {
            Err(e) if !is_not_found(&e) => {
                // A container outside the project still attached: the network stays; not a
                // reason to fail the removal of the rest.
                tracing::warn!(network = %n, error = %e, "network left in place");
            }
            _ => done.networks.push(n.clone()),
        }
    }
    Ok(done)
}
