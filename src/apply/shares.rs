//! Resolution of a service's `service:X`, `volumes_from` and `links` at create time, against
//! the containers the engine holds at that moment (X was converged just before, in
//! dependency order), as Compose resolves them when it creates the dependent.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

use super::ops::ContainerOps;
use super::Applier;
use crate::namespaces::{self, Shares, Target};
use crate::spec::container_name;

impl<E: ContainerOps> Applier<'_, E> {
    /// `None` when `service` refers to no other service's container.
    pub(crate) async fn resolve_shares(
        &self,
        service: &str,
        number: u32,
    ) -> Result<Option<Shares>> {
        let p = &self.desired.project;
        let svc = &p.services[service];
        if !Shares::needed(svc) {
            return Ok(None);
        }
        let mut wanted: Vec<String> = namespaces::refs(svc)
            .into_iter()
            .map(|r| r.service)
            .collect();
        for l in namespaces::links(svc) {
            wanted.push(l.split(':').next().unwrap_or(&l).to_string());
        }
        wanted.sort();
        wanted.dedup();
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        for x in wanted {
            targets.insert(x.clone(), self.target(&x).await?);
        }
        namespaces::resolve(p, service, number, &|x| {
            targets.get(x).cloned().unwrap_or_default()
        })
        .map(Some)
        .map_err(|e| anyhow!("service {service}: {e}"))
    }

    /// The containers of service `x` that exist now, by name; the first is the one shared.
    async fn target(&self, x: &str) -> Result<Target> {
        let p = &self.desired.project;
        let Some(svc) = p.services.get(x) else {
            return Ok(Target::default());
        };
        let n = if svc.container_name.is_some() {
            1
        } else {
            svc.replicas()
        };
        let mut found: Vec<(String, String)> = Vec::new();
        for i in 1..=n {
            let name = container_name(&p.name, x, svc, i);
            if let Some(info) = self.engine.inspect(&name).await? {
                found.push((name, info.id));
            }
        }
        found.sort();
        Ok(Target {
            primary_id: found.first().map(|(_, id)| id.clone()),
            names: found.into_iter().map(|(n, _)| n).collect(),
        })
    }
}
