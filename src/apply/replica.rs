//! The replica changes that are not a recreate: create a missing one, start a stopped one,
//! remove a surplus one; and the create request every new container is made with.

use anyhow::{Context, Result};

use super::ops::ContainerOps;
use super::ready::NotReady;
use super::recreate::Failure;
use super::report::Outcome;
use super::{progress, Applier};
use crate::plan::ReplicaPlan;
use crate::spec::{self, CreateContext, Spec};

impl<E: ContainerOps> Applier<'_, E> {
    /// Creates (not starts) a container for replica `number` of `service` named `name`, and
    /// connects it to the networks after the first. `hidden`: without its aliases (the service
    /// name, the final container name), so that it receives no connection until it is ready
    /// and connected again with them (start-first).
    pub(crate) async fn create(
        &self,
        service: &str,
        spec: &Spec,
        number: u32,
        name: &str,
        anon: &[(String, String)],
        hidden: bool,
    ) -> Result<String> {
        let img = self.desired.images.get(service);
        let image_id = img
            .and_then(|i| i.local_id.clone().or_else(|| i.digest.clone()))
            .unwrap_or_default();
        let shares = self.resolve_shares(service, number).await?;
        let links = shares.as_ref().map(|s| s.links.clone()).unwrap_or_default();
        let mut ctx = CreateContext::new(
            &self.desired.project,
            service,
            spec,
            number,
            &image_id,
            img.and_then(|i| i.digest.as_deref()),
        );
        if let Some(s) = shares {
            ctx = ctx.sharing(&self.desired.project, service, s);
        }
        // The container-name alias is the final name, also while it runs under a temporary one
        // (beside the old container, in a start-first update), as Compose's containers have.
        let p = &self.desired.project;
        let alias = spec::container_name(&p.name, service, &p.services[service], number);
        let mut body = spec.create_body(&ctx, &alias, anon);
        if !self.opts.extra_labels.is_empty() {
            let labels = body.labels.get_or_insert_with(Default::default);
            for (k, v) in &self.opts.extra_labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        if let Some(r) = self.desired.run_from.get(service) {
            body.image = Some(r.clone());
        }
        let files = self.desired.files.get(service);
        if let Some(label) = files.and_then(|f| f.label()) {
            let labels = body.labels.get_or_insert_with(Default::default);
            labels.insert(crate::configs::LABEL_CONTENT_DIGESTS.into(), label);
        }
        let mut extra = spec.extra_networks(&alias);
        if !links.is_empty() {
            extra
                .iter_mut()
                .for_each(|(_, ep)| ep.links = Some(links.clone()));
        }
        if hidden {
            let endpoints = body.networking_config.iter_mut();
            for ep in
                endpoints.flat_map(|n| n.endpoints_config.iter_mut().flat_map(|e| e.values_mut()))
            {
                ep.aliases = None;
            }
            extra.iter_mut().for_each(|(_, ep)| ep.aliases = None);
        }
        let id = match self.engine.create(name, body.clone()).await {
            Err(e) if name.ends_with(crate::observe::SUFFIX_NEW) && is_conflict(&e) => {
                self.remove_late_temp(name).await.map_err(|_| e)?;
                self.engine.create(name, body).await
            }
            r => r,
        }
        .with_context(|| format!("cannot create container {name}"))?;
        for (net, ep) in extra {
            self.engine
                .connect(&net, &id, ep)
                .await
                .with_context(|| format!("cannot connect {name} to network {net}"))?;
        }
        if let Some(f) = files {
            if let Err(e) = self.write_files(service, &id, name, f).await {
                // Never left behind without its files: a start would run it without them.
                let _ = self.engine.remove(&id).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Removes the container that holds the transitional name `name` when it never started:
    /// a create sent by a run killed mid-recreate, which the engine finished after the next
    /// run's recovery looked for it (an engine finishes a create its client stopped waiting
    /// for). Under the project lock no other run can be creating it; a container that runs is
    /// left alone (an error).
    async fn remove_late_temp(&self, name: &str) -> Result<()> {
        match self.engine.inspect(name).await? {
            Some(c) if !c.running && c.status == "created" => {
                tracing::warn!("removing {name}, left by an interrupted apply");
                self.engine.remove(&c.id).await
            }
            _ => anyhow::bail!("{name} is in use"),
        }
    }

    /// Writes the `content:` and `environment:` configs and secrets into the new container
    /// `id`, before anything starts it (as Compose does, for every way a container is made).
    /// Errors name the targets, never what they hold.
    async fn write_files(
        &self,
        service: &str,
        id: &str,
        name: &str,
        files: &crate::configs::ServiceFiles,
    ) -> Result<()> {
        if files.uploads.is_empty() {
            return Ok(());
        }
        let targets: Vec<&str> = files.uploads.iter().map(|u| u.target.as_str()).collect();
        progress(
            service,
            format!("writing {} into {name}", targets.join(", ")),
        );
        let archives = crate::configs::archives(&files.uploads)
            .with_context(|| format!("cannot archive {}", targets.join(", ")))?;
        for (keep_owner, tar) in archives {
            self.engine
                .upload(id, tar, keep_owner)
                .await
                .with_context(|| format!("cannot write {} into {name}", targets.join(", ")))?;
        }
        Ok(())
    }

    pub(crate) async fn start_existing(
        &self,
        service: &str,
        r: &ReplicaPlan,
    ) -> Result<Outcome, Failure> {
        progress(service, format!("starting {}", r.name));
        let id = r.container_id.clone().unwrap_or_else(|| r.name.clone());
        let failed = |nr| (Outcome::Failed, nr);
        self.engine
            .start(&id)
            .await
            .with_context(|| format!("cannot start {id}"))
            .map_err(|e| failed(NotReady::from_error(e)))?;
        self.wait_ready(&id, false).await.map_err(failed)?;
        Ok(Outcome::Applied)
    }

    /// A replica with nothing to roll back to: a failure (of its start, its health wait or its
    /// `verify` check) leaves it stopped (or removed with `--cleanup-failed`).
    pub(crate) async fn create_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
    ) -> Result<Outcome, Failure> {
        progress(service, format!("creating {}", r.name));
        let failed = |e| (Outcome::Failed, NotReady::from_error(e));
        let id = self
            .create(service, spec, r.number, &r.name, &[], false)
            .await
            .map_err(failed)?;
        self.engine
            .start(&id)
            .await
            .with_context(|| format!("cannot start {id}"))
            .map_err(failed)?;
        progress(service, format!("waiting for {} to be ready", r.name));
        let ready = match self.wait_ready(&id, false).await {
            Ok(()) => self.verify(service, &id).await,
            Err(nr) => Err(nr),
        };
        if let Err(nr) = ready {
            let _ = self.engine.stop(&id, 1).await;
            if self.opts.cleanup_failed {
                let _ = self.engine.remove(&id).await;
            }
            return Err((Outcome::Failed, nr));
        }
        Ok(Outcome::Applied)
    }

    /// Stops and removes a surplus replica (scale down). An engine error here is an error of
    /// the run, as before any service-level outcome.
    pub(crate) async fn remove_replica(
        &self,
        service: &str,
        spec: &Spec,
        r: &ReplicaPlan,
    ) -> Result<()> {
        progress(
            service,
            format!("removing {} ({})", r.name, r.reasons.join(", ")),
        );
        let id = r.container_id.as_deref().unwrap_or(&r.name);
        self.stop_and_remove(id, spec.stop_grace_period).await
    }

    pub(crate) async fn stop_and_remove(&self, id: &str, grace: Option<i64>) -> Result<()> {
        self.engine
            .stop(id, grace.unwrap_or(10))
            .await
            .with_context(|| format!("cannot stop {id}"))?;
        self.engine
            .remove(id)
            .await
            .with_context(|| format!("cannot remove {id}"))
    }
}

/// The engine refused a name already in use (409).
fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<bollard::errors::Error>()
        .is_some_and(crate::engine::is_conflict)
}
