//! Resolution of a service's `service:X`, `volumes_from` and `links` at create time, against
//! the containers the engine holds at that moment (X was converged just before, in
//! dependency order), as Compose resolves them when it creates the dependent.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

use super::ops::ContainerOps;
use super::report::Outcome;
use super::{progress, Applier};
use crate::namespaces::{self, Kind, Shares, Target};
use crate::plan::{ReplicaAction, ServicePlan};
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

impl<E: ContainerOps> Applier<'_, E> {
    /// A service whose namespace owner was rolled back is skipped, but the owner runs again
    /// (same id, stopped and started) in fresh namespaces: its running dependents are
    /// restarted so that they join them instead of staying in the dead ones.
    pub(crate) async fn rejoin_after_rollback(
        &self,
        sp: &ServicePlan,
        outcomes: &BTreeMap<String, Outcome>,
    ) {
        let svc = &self.desired.project.services[&sp.service];
        let Some(owner) = namespaces::refs(svc)
            .into_iter()
            .filter(|r| r.kind != Kind::Volumes)
            .find(|r| outcomes.get(&r.service) == Some(&Outcome::RolledBack))
        else {
            return;
        };
        for r in &sp.replicas {
            let Some(id) = r.container_id.as_deref() else {
                continue;
            };
            if r.action == ReplicaAction::Remove {
                continue;
            }
            progress(
                &sp.service,
                format!(
                    "restarting {} to rejoin {} after its rollback",
                    r.name, owner.service
                ),
            );
            if let Err(e) = self.engine.restart(id).await {
                progress(
                    &sp.service,
                    format!("warning: cannot restart {}: {e:#}", r.name),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::fake::Fake;
    use super::super::report::Outcome;
    use super::super::{Applier, ApplyOptions};
    use crate::journal::Journal;
    use crate::observe::Observed;
    use crate::plan::{Desired, Plan, ReplicaAction, ReplicaPlan, ServiceAction, ServicePlan};

    const YAML: &str = "services:\n  vpn:\n    image: a\n    deploy: {replicas: 2}\n  app:\n    \
                        image: a\n    network_mode: service:vpn\n    volumes_from: ['vpn:ro']\n    \
                        links: ['vpn:tunnel']\n";

    fn with_applier<T>(fake: &Fake, f: impl FnOnce(Applier<'_, Fake>) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let desired = Desired {
            project: crate::load::test_project(YAML),
            images: BTreeMap::new(),
            run_from: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let journal = Journal::new(dir.path(), "p");
        f(Applier {
            engine: fake,
            desired: &desired,
            journal: &journal,
            opts: ApplyOptions {
                wait_timeout: Some(Duration::from_secs(5)),
                cleanup_failed: false,
                extra_labels: Default::default(),
                gate: None,
            },
        })
    }

    #[tokio::test]
    async fn references_resolve_against_the_containers_the_engine_has_now() {
        let fake = Fake::default();
        let second = fake.add("p-vpn-2", true);
        let first = fake.add("p-vpn-1", true);
        let shares = with_applier(&fake, |a| {
            futures_util::FutureExt::now_or_never(a.resolve_shares("app", 1))
        })
        .expect("the fake answers at once")
        .unwrap()
        .unwrap();
        assert_ne!(first, second);
        assert_eq!(shares.network_mode, Some(format!("container:{first}")));
        assert_eq!(shares.volumes_from, [format!("{first}:ro")]);
        assert_eq!(shares.links[0], "p-vpn-1:tunnel");
        assert_eq!(shares.links[3], "p-vpn-2:tunnel");
        let none = with_applier(&fake, |a| {
            futures_util::FutureExt::now_or_never(a.resolve_shares("vpn", 1))
        });
        assert_eq!(none.unwrap().unwrap(), None);
        let empty = Fake::default();
        let err = with_applier(&empty, |a| {
            futures_util::FutureExt::now_or_never(a.resolve_shares("app", 1))
        });
        let msg = format!("{:#}", err.unwrap().unwrap_err());
        assert!(msg.contains("container missing"), "{msg}");
    }

    #[tokio::test]
    async fn a_dependent_of_a_rolled_back_owner_is_skipped_and_restarted() {
        let fake = Fake::default();
        fake.add("p-vpn-1", true);
        let app = fake.add("p-app-1", false);
        let sp = ServicePlan {
            service: "app".into(),
            action: ServiceAction::Recreate,
            reasons: vec!["network namespace of vpn is recreated".into()],
            changed_fields: vec![],
            image: crate::plan::DesiredImage {
                reference: "a".into(),
                digest: None,
                build: None,
                local_id: None,
            },
            spec_hash: String::new(),
            replicas: vec![ReplicaPlan {
                number: 1,
                name: "p-app-1".into(),
                action: ReplicaAction::Recreate,
                container_id: Some(app.clone()),
                reasons: vec![],
            }],
            diff: None,
            image_change: None,
            build: None,
            update_order: Default::default(),
            rollout: None,
        };
        let plan = Plan {
            project: "p".into(),
            networks: vec![],
            volumes: vec![],
            services: vec![sp.clone()],
            orphans: vec![],
            warnings: vec![],
        };
        let outcomes = BTreeMap::from([("vpn".to_string(), Outcome::RolledBack)]);
        let so = with_applier(&fake, |a| {
            futures_util::FutureExt::now_or_never(a.apply_service(
                &plan,
                &sp,
                &Observed::default(),
                &outcomes,
            ))
        })
        .expect("the fake answers at once")
        .unwrap();
        assert_eq!(so.outcome, Outcome::Skipped);
        let c = fake.containers().into_iter().find(|c| c.id == app).unwrap();
        assert!(c.running, "app was not restarted to rejoin vpn");
    }
}
