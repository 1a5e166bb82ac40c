//! `plan`: a pure function from (desired, observed) to the actions that converge them.
//!
//! No I/O here: everything plan needs is in its two arguments, so it is unit-tested without an
//! engine and its output is the same for the same inputs. Rendering (text with diffs, JSON)
//! lives here too, because it only reads the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use console::Style;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::model::Project;
use crate::observe::{Observed, ObservedContainer};
use crate::spec::{container_name, ImageDefaults, Spec};
use crate::update::{self, UpdateOrder};

/// The image a service should run. `digest` is a registry manifest digest or a local image id
/// (`sha256:…`), when known; it is compared with the container image's id and repo digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DesiredImage {
    pub reference: String,
    pub digest: Option<String>,
    /// Why the image is built in this run (`build:` services); shown as
    /// [`ServicePlan::build`]. With no digest, the build is still to come (plan).
    #[serde(skip)]
    pub build: Option<String>,
    /// The local image's id once present: what Compose writes as `com.docker.compose.image`
    /// (and compares to recreate), whereas `digest` may be the registry's manifest digest.
    #[serde(skip)]
    pub local_id: Option<String>,
}

/// The loaded project plus each service's image, keyed by service name.
#[derive(Debug, Clone)]
pub struct Desired {
    pub project: Project,
    pub images: BTreeMap<String, DesiredImage>,
    /// Service -> the reference apply pulls and creates from, when not the one in the compose
    /// file (`--locked`: `repository@digest`, so what was planned is what runs).
    pub run_from: BTreeMap<String, String>,
    /// Service -> the contents of its configs and secrets: their digests, compared with the
    /// running containers' [`crate::configs::LABEL_CONTENT_DIGESTS`], and the files apply
    /// writes into new containers. Services without configs or secrets are absent.
    pub files: BTreeMap<String, crate::configs::ServiceFiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub project: String,
    /// Networks and volumes to create (never removed or recreated).
    pub networks: Vec<Resource>,
    pub volumes: Vec<Resource>,
    /// Services in apply order: dependencies first.
    pub services: Vec<ServicePlan>,
    /// Containers of services that are not in the project.
    pub orphans: Vec<Orphan>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resource {
    /// The key in the compose file.
    pub key: String,
    /// The engine name.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceAction {
    Create,
    Recreate,
    Start,
    ScaleUp,
    ScaleDown,
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaAction {
    Create,
    Recreate,
    Start,
    Remove,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServicePlan {
    pub service: String,
    pub action: ServiceAction,
    /// Why, in words: changed fields, image digest old -> new, missing network or volume.
    pub reasons: Vec<String>,
    /// Spec fields that differ (for the first replica that differs).
    pub changed_fields: Vec<String>,
    pub image: DesiredImage,
    pub spec_hash: String,
    pub replicas: Vec<ReplicaPlan>,
    /// Unified diff of the normalised spec (running -> desired), secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The image digest moves (full digests; the text plan shows them short).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_change: Option<ImageChange>,
    /// The service's image is built in this run, and why: `image missing`, `build inputs
    /// changed`, `pull_policy is build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// How its containers are replaced (`deploy.update_config.order`, when the host allows).
    #[serde(default, skip_serializing_if = "UpdateOrder::is_stop_first")]
    pub update_order: UpdateOrder,
    /// How replicas are replaced and, on failure, put back: only for a service with
    /// `deploy.update_config` or `deploy.rollback_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::update::Rollouts>,
}

/// An image digest move: what a container runs now, and what it will run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageChange {
    /// The digest the running container came from: its `io.composeops.image-digest` label,
    /// else its image's repo digest for this repository, else the image id.
    pub from: String,
    pub to: String,
    /// The tags before and after, when `x-composeops.track` moves the tag (`1.2.0`, `1.2.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaPlan {
    pub number: u32,
    pub name: String,
    pub action: ReplicaAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Orphan {
    pub name: String,
    pub container_id: String,
    pub service: String,
    /// True with `--prune`.
    pub remove: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Remove orphan containers.
    pub prune: bool,
}

impl Plan {
    /// True when apply would change anything on the engine.
    pub fn has_changes(&self) -> bool {
        !self.networks.is_empty()
            || !self.volumes.is_empty()
            || self
                .services
                .iter()
                .any(|s| s.action != ServiceAction::Unchanged)
            || self.orphans.iter().any(|o| o.remove)
    }
}

impl Plan {
    /// One line per action, in apply order (`create network p_default`,
    /// `recreate web (changed: environment)`): what logs, notifications and the agent's
    /// /status show. Empty when there is nothing to do.
    pub fn actions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.networks {
            out.push(format!("create network {}", n.name));
        }
        for v in &self.volumes {
            out.push(format!("create volume {}", v.name));
        }
        for o in self.orphans.iter().filter(|o| o.remove) {
            out.push(format!("remove orphan {}", o.name));
        }
        for s in self
            .services
            .iter()
            .filter(|s| s.action != ServiceAction::Unchanged)
        {
            let why = if s.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.reasons.join("; "))
            };
            out.push(format!("{} {}{why}", s.action.as_str(), s.service));
        }
        out
    }

    /// How many services the plan would change.
    pub fn services_to_change(&self) -> usize {
        self.services
            .iter()
            .filter(|s| s.action != ServiceAction::Unchanged)
            .count()
    }
}

impl std::fmt::Display for Plan {
    /// [`Plan::actions`], one per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for a in self.actions() {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}

impl ServiceAction {
    /// The name used in JSON and in [`Plan::actions`].
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Create => "create",
            ServiceAction::Recreate => "recreate",
            ServiceAction::Start => "start",
            ServiceAction::ScaleUp => "scale-up",
            ServiceAction::ScaleDown => "scale-down",
            ServiceAction::Unchanged => "unchanged",
        }
    }
}

/// Services ordered so that each comes after what it depends on (stable: file order otherwise).
pub fn apply_order(project: &Project) -> Vec<String> {
    let mut order = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        p: &'a Project,
        s: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        order: &mut Vec<String>,
    ) {
        if state.get(s).copied().unwrap_or(0) != 0 {
            return;
        }
        state.insert(s, 1);
        if let Some(svc) = p.services.get(s) {
            for dep in svc.depends_on.keys() {
                if p.services.contains_key(dep) {
                    visit(p, dep, state, order);
                }
            }
        }
        state.insert(s, 2);
        order.push(s.to_string());
    }
    for s in project.services.keys() {
        visit(project, s, &mut state, &mut order);
    }
    order
}

/// The plan: pure, deterministic.
pub fn plan(desired: &Desired, observed: &Observed, opts: PlanOptions) -> Plan {
    let p = &desired.project;
    let (networks, volumes) = missing_resources(p, observed);
    let mut plan = Plan {
        project: p.name.clone(),
        networks,
        volumes,
        services: Vec::new(),
        orphans: Vec::new(),
        warnings: Vec::new(),
    };
    let targets = observed.targets();
    let cx = Context {
        desired,
        observed,
        missing_net: plan.networks.iter().map(|r| r.name.clone()).collect(),
        missing_vol: plan.volumes.iter().map(|r| r.name.clone()).collect(),
        primary: targets
            .iter()
            .filter_map(|(k, t)| t.primary_id.clone().map(|id| (k.clone(), id)))
            .collect(),
        targets,
    };
    // The services whose containers this plan replaces: their dependents must follow, or
    // keep a dead namespace.
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    for name in apply_order(p) {
        let sp = cx.service(&name, &replaced, &mut plan.warnings);
        if matches!(sp.action, ServiceAction::Recreate | ServiceAction::Create) {
            replaced.insert(name);
        }
        plan.services.push(sp);
    }
    leftovers(&mut plan, p, observed, opts);
    plan
}

/// The used networks and the volumes of `p` that the engine does not have.
fn missing_resources(p: &Project, observed: &Observed) -> (Vec<Resource>, Vec<Resource>) {
    let used_networks: BTreeSet<&String> = p
        .services
        .values()
        .flat_map(|s| s.networks.keys())
        .collect();
    let networks = p
        .networks
        .iter()
        .filter(|(key, n)| {
            !n.external && used_networks.contains(key) && !observed.networks.contains(&n.name)
        })
        .map(|(key, n)| Resource {
            key: key.clone(),
            name: n.name.clone(),
        })
        .collect();
    let volumes = p
        .volumes
        .iter()
        .filter(|(_, v)| !v.external && !observed.volumes.contains(&v.name))
        .map(|(key, v)| Resource {
            key: key.clone(),
            name: v.name.clone(),
        })
        .collect();
    (networks, volumes)
}

/// What planning every service reads.
struct Context<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    /// Networks and volumes this plan creates: a container cannot be on them yet.
    missing_net: BTreeSet<String>,
    missing_vol: BTreeSet<String>,
    /// What `service:X` resolves to now.
    targets: BTreeMap<String, crate::namespaces::Target>,
    /// The container each service's namespace is shared from.
    primary: BTreeMap<String, String>,
}

/// One service's desired container, as its replicas are compared with it.
struct Wanted<'a> {
    name: &'a str,
    svc: &'a crate::model::Service,
    spec: Spec,
    hash: String,
    compose_hash: String,
    image: DesiredImage,
    /// Why a build still to come replaces every container (its image id is unknown).
    rebuild: Option<String>,
}

impl Context<'_> {
    /// The plan of service `name`; warnings about it go to `warnings`.
    fn service(
        &self,
        name: &str,
        replaced: &BTreeSet<String>,
        warnings: &mut Vec<String>,
    ) -> ServicePlan {
        let p = &self.desired.project;
        let w = self.wanted(name);
        let unsupported = w.spec.unsupported_fields();
        if !unsupported.is_empty() {
            warnings.push(format!(
                "service {name}: composeops does not apply {} yet (changes to them still recreate the container)",
                unsupported.join(", ")
            ));
        }
        let replicas = if w.svc.container_name.is_some() {
            1
        } else {
            w.svc.replicas()
        };
        let mut sp = ServicePlan {
            service: name.to_string(),
            action: ServiceAction::Unchanged,
            reasons: Vec::new(),
            changed_fields: Vec::new(),
            image: w.image.clone(),
            spec_hash: w.hash.clone(),
            replicas: Vec::new(),
            diff: None,
            image_change: None,
            build: w.image.build.clone(),
            update_order: UpdateOrder::StopFirst,
            rollout: None,
        };
        let mut seen = BTreeSet::new();
        for c in self.containers_of(name) {
            let wanted = c.number >= 1 && c.number <= replicas;
            if !wanted || !seen.insert(c.number) {
                let why = if wanted {
                    "duplicate replica number"
                } else {
                    "scale down"
                };
                sp.replicas.push(ReplicaPlan {
                    number: c.number,
                    name: c.name.clone(),
                    action: ReplicaAction::Remove,
                    container_id: Some(c.id.clone()),
                    reasons: vec![why.into()],
                });
                continue;
            }
            let r = self.replica(&w, c, replaced, &mut sp);
            sp.replicas.push(r);
        }
        for n in (1..=replicas).filter(|n| !seen.contains(n)) {
            sp.replicas.push(ReplicaPlan {
                number: n,
                name: container_name(&p.name, name, w.svc, n),
                action: ReplicaAction::Create,
                container_id: None,
                reasons: Vec::new(),
            });
        }
        sp.replicas
            .sort_by_key(|r| (r.number, r.action == ReplicaAction::Remove));
        sp.action = service_action(&sp.replicas, !seen.is_empty());
        sp.reasons = service_reasons(&sp);
        let (order, why_not) = update::order(name, w.svc);
        sp.update_order = order;
        sp.rollout = update::rollouts(name, w.svc);
        if let (Some(why), ServiceAction::Recreate) = (why_not, sp.action) {
            warnings.push(why);
        }
        sp
    }

    /// The service's observed containers (one-offs and an interrupted recreate's left out),
    /// by number, the running one first where two share a number, so a duplicate keeps it.
    fn containers_of(&self, name: &str) -> Vec<&ObservedContainer> {
        let mut containers: Vec<&ObservedContainer> = (self.observed.containers.iter())
            .filter(|c| c.service == name && !c.oneoff && !c.transitional())
            .collect();
        containers.sort_by_key(|c| (c.number, c.state != "running", c.name.clone()));
        containers
    }

    fn wanted<'s>(&'s self, name: &'s str) -> Wanted<'s> {
        let p = &self.desired.project;
        let spec = Spec::from_service(p, name);
        let shares = crate::namespaces::resolve(p, name, 1, &|x| {
            self.targets.get(x).cloned().unwrap_or_default()
        })
        .ok();
        let image = self
            .desired
            .images
            .get(name)
            .cloned()
            .unwrap_or_else(|| DesiredImage {
                reference: spec.image.clone(),
                digest: None,
                build: None,
                local_id: None,
            });
        let rebuild = match (&image.build, &image.digest) {
            (Some(why), None) => Some(format!("build {}: {why}", image.reference)),
            _ => None,
        };
        Wanted {
            name,
            svc: &p.services[name],
            hash: spec.hash(),
            compose_hash: crate::compose_hash::config_hash_resolved(p, name, shares.as_ref()),
            spec,
            image,
            rebuild,
        }
    }

    /// The plan of the wanted replica in container `c`: unchanged, started, or recreated and
    /// why. The first recreate gives the service its diff and changed fields, and any digest
    /// move its image change.
    fn replica(
        &self,
        w: &Wanted<'_>,
        c: &ObservedContainer,
        replaced: &BTreeSet<String>,
        sp: &mut ServicePlan,
    ) -> ReplicaPlan {
        let spec = &w.spec;
        let defaults = self.observed.images.get(&c.image_id).map(|i| &i.defaults);
        let (fields, old_spec) = compare_spec(c, spec, &w.hash, &w.compose_hash, defaults);
        let mut reasons = Vec::new();
        if !fields.is_empty() {
            reasons.push(format!("changed: {}", fields.join(", ")));
        }
        if let Some(f) = self.desired.files.get(w.name) {
            let label = c.labels.get(crate::configs::LABEL_CONTENT_DIGESTS);
            reasons.extend(f.changes(label.map(String::as_str)));
        }
        if let Some(change) = self.digest_move(&w.image, c) {
            reasons.push(format!(
                "image {}: digest {} -> {}",
                w.image.reference,
                short(&change.from),
                short(&change.to)
            ));
            sp.image_change.get_or_insert(change);
        }
        reasons.extend(w.rebuild.clone());
        reasons.extend(crate::namespaces::stale(
            w.svc,
            c.shares.as_ref(),
            &self.primary,
            replaced,
        ));
        reasons.extend(self.missing_attachments(spec, c));
        let action = if !reasons.is_empty() {
            if sp.diff.is_none() {
                if let Some(old) = &old_spec {
                    let (old, new) = match defaults {
                        Some(d) if !c.is_own() => {
                            let mut o = old.without_image_defaults(d);
                            o.image = spec.image.clone();
                            (o, spec.without_image_defaults(d))
                        }
                        _ => (old.clone(), spec.clone()),
                    };
                    // Equal specs (a content change alone): no diff to show.
                    sp.diff = Some(spec_diff(w.name, &old, &new)).filter(|d| !d.is_empty());
                }
                sp.changed_fields = fields;
            }
            ReplicaAction::Recreate
        } else if c.state == "running"
            || (c.state == "exited" && c.exit_code == Some(0) && spec.restart == "no")
        {
            // A one-shot that completed successfully is converged, not stopped.
            ReplicaAction::Unchanged
        } else {
            reasons.push(format!("container is {}", c.state));
            ReplicaAction::Start
        };
        ReplicaPlan {
            number: c.number,
            name: c.name.clone(),
            action,
            container_id: Some(c.id.clone()),
            reasons,
        }
    }

    /// The digest move of container `c`, when the desired image's digest is known and is not
    /// what `c` runs.
    fn digest_move(&self, image: &DesiredImage, c: &ObservedContainer) -> Option<ImageChange> {
        let d = image.digest.as_ref()?;
        let running = self.observed.images.get(&c.image_id);
        let same = match running {
            Some(i) => i.matches(d),
            None => &c.image_id == d,
        };
        (!same).then(|| ImageChange {
            from: running_digest(c, running, &image.reference),
            to: d.clone(),
            from_tag: None,
            to_tag: None,
        })
    }

    /// `network X missing`, `volume Y missing`: what `c` is not attached to.
    fn missing_attachments(&self, spec: &Spec, c: &ObservedContainer) -> Vec<String> {
        let mut out = Vec::new();
        if spec.network_mode.is_none() {
            for net in spec.networks.keys() {
                if !c.networks.contains(net) || self.missing_net.contains(net) {
                    out.push(format!("network {net} missing"));
                }
            }
        }
        for m in &spec.mounts {
            if let (Some(src), "volume") = (&m.source, m.kind.as_str()) {
                if !c.volumes.contains(src) || self.missing_vol.contains(src) {
                    out.push(format!("volume {src} missing"));
                }
            }
        }
        out
    }
}

/// A service's action from its replicas' (`existed`: it had containers).
fn service_action(replicas: &[ReplicaPlan], existed: bool) -> ServiceAction {
    let has = |a: ReplicaAction| replicas.iter().any(|r| r.action == a);
    if has(ReplicaAction::Recreate) {
        ServiceAction::Recreate
    } else if has(ReplicaAction::Create) && !existed {
        ServiceAction::Create
    } else if has(ReplicaAction::Create) {
        ServiceAction::ScaleUp
    } else if has(ReplicaAction::Remove) {
        ServiceAction::ScaleDown
    } else if has(ReplicaAction::Start) {
        ServiceAction::Start
    } else {
        ServiceAction::Unchanged
    }
}

/// The replicas' reasons, each once, the build's first.
fn service_reasons(sp: &ServicePlan) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    for x in sp.replicas.iter().flat_map(|r| &r.reasons) {
        if !reasons.contains(x) {
            reasons.push(x.clone());
        }
    }
    if let Some(why) = &sp.build {
        let r = format!("build {}: {why}", sp.image.reference);
        if sp.action != ServiceAction::Unchanged && !reasons.contains(&r) {
            reasons.insert(0, r);
        }
    }
    reasons
}

/// Containers that are not a service's replica: left by an interrupted apply or a failed
/// update (warnings), or orphans (removed with `--prune`, else a warning).
fn leftovers(plan: &mut Plan, p: &Project, observed: &Observed, opts: PlanOptions) {
    for c in &observed.containers {
        if c.name.ends_with(crate::observe::SUFFIX_NEW)
            || c.name.ends_with(crate::observe::SUFFIX_OLD)
        {
            plan.warnings.push(format!(
                "container {} is left from an interrupted apply whose journal is not in this state \
                 directory: run apply with the same --state-dir, or remove it after checking",
                c.name
            ));
            continue;
        }
        if c.name.ends_with(crate::observe::SUFFIX_FAILED) {
            plan.warnings.push(format!(
                "container {} is a failed update kept for inspection (the next update of {} removes it)",
                c.name, c.service
            ));
            continue;
        }
        if !c.oneoff
            && !p.services.contains_key(&c.service)
            && !p.disabled_services.contains(&c.service)
        {
            plan.orphans.push(Orphan {
                name: c.name.clone(),
                container_id: c.id.clone(),
                service: c.service.clone(),
                remove: opts.prune,
            });
            if !opts.prune {
                plan.warnings.push(format!(
                    "orphan container {} (service {:?} is not in the project): --prune removes it",
                    c.name, c.service
                ));
            }
        }
    }
}

/// Changed fields (empty when equal) and the container's spec, for the diff.
fn compare_spec(
    c: &ObservedContainer,
    want: &Spec,
    hash: &str,
    compose_hash: &str,
    defaults: Option<&ImageDefaults>,
) -> (Vec<String>, Option<Spec>) {
    let Some(have) = &c.spec else {
        return (vec!["spec (unreadable)".into()], None);
    };
    if let Some(h) = &c.spec_hash {
        if h == hash {
            return (Vec::new(), Some(have.clone()));
        }
        let mut f = have.changed_fields(want);
        if f.is_empty() {
            f.push("spec version".into());
        }
        return (f, Some(have.clone()));
    }
    // Made by Compose from this very service config (its hash says so): Compose would not
    // recreate it, so neither does composeops. The image is compared separately.
    if c.labels
        .get(crate::spec::LABEL_CONFIG_HASH)
        .map(String::as_str)
        == Some(compose_hash)
    {
        return (Vec::new(), Some(have.clone()));
    }
    let empty = ImageDefaults::default();
    let (h, w) = comparable(have, want, defaults.unwrap_or(&empty));
    (h.changed_fields(&w), Some(have.clone()))
}

/// A container not made by composeops, read back from inspect, and the wanted spec, each cut
/// to what inspect can tell and without what the image supplies.
fn comparable(have: &Spec, want: &Spec, d: &ImageDefaults) -> (Spec, Spec) {
    let mut h = have.without_image_defaults(d);
    let w = want.without_image_defaults(d);
    h.image = w.image.clone(); // compared by digest, not by how it was written
    h.unsupported = w.unsupported.clone(); // not readable from the engine
    h.secrets = w.secrets.clone();
    h.configs = w.configs.clone();
    // Written into the container before it started: not readable from inspect.
    h.files = w.files.clone();
    // The engine holds `service:X` resolved (`container:<id>`), and links by container name:
    // whether those still point at the right containers is `namespaces::stale`'s to judge.
    for (hv, wv) in [
        (&mut h.network_mode, &w.network_mode),
        (&mut h.ipc, &w.ipc),
        (&mut h.pid, &w.pid),
    ] {
        if wv.as_deref().is_some_and(|m| m.starts_with("service:")) {
            *hv = wv.clone();
        }
    }
    h.volumes_from = w.volumes_from.clone();
    h.links = w.links.clone();
    // In another container's network namespace the hostname is that container's.
    if w.network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("service:") || m.starts_with("container:"))
    {
        h.hostname = w.hostname.clone();
    }
    // The engine adds its own log options (daemon.json log-opts) and `label=disable` with
    // `pid: host`: compare only what the compose file sets.
    h.logging = match (&h.logging, &w.logging) {
        (_, None) => None,
        (None, Some(_)) => None,
        (Some(hl), Some(wl)) => Some(crate::spec::LoggingSpec {
            driver: if wl.driver.is_some() {
                hl.driver.clone()
            } else {
                None
            },
            options: hl
                .options
                .iter()
                .filter(|(k, _)| wl.options.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
    };
    h.security_opt
        .retain(|o| o != "label=disable" || w.security_opt.contains(o));
    (h, w)
}

/// The digest a container runs: recorded at creation by composeops, else the repo digest of
/// its image for the same repository, else the image id.
fn running_digest(
    c: &ObservedContainer,
    image: Option<&crate::observe::ObservedImage>,
    reference: &str,
) -> String {
    if let Some(d) = c.labels.get(crate::spec::LABEL_DIGEST) {
        return d.clone();
    }
    // RepoDigests name the repository in Docker's familiar form (`nginx`, `host:port/app`).
    let repo = crate::resolve::ImageRef::parse(reference)
        .ok()
        .map(|r| r.familiar_repository());
    repo.zip(image)
        .and_then(|(repo, i)| {
            i.repo_digests.iter().find_map(|r| {
                let (name, digest) = r.rsplit_once('@')?;
                (name == repo).then(|| digest.to_string())
            })
        })
        .unwrap_or_else(|| c.image_id.clone())
}

impl ServicePlan {
    /// Names the tag move of a tracked image in the change and its reason: `image app:1.2.0:
    /// 1.2.0 -> 1.2.1, digest … -> …`. The tags come from the lock or registry (`to`) and the
    /// image history (`from`, when known), which the pure planner does not see.
    pub fn note_tag_move(&mut self, from_tag: Option<String>, to_tag: &str) {
        let Some(change) = &mut self.image_change else {
            return;
        };
        if from_tag.as_deref() == Some(to_tag) {
            return;
        }
        let old = format!(
            "image {}: digest {} -> {}",
            self.image.reference,
            short(&change.from),
            short(&change.to)
        );
        let new = format!(
            "image {}: {} -> {to_tag}, digest {} -> {}",
            self.image.reference,
            from_tag.as_deref().unwrap_or("?"),
            short(&change.from),
            short(&change.to)
        );
        let replicas = self.replicas.iter_mut().flat_map(|r| r.reasons.iter_mut());
        for r in self.reasons.iter_mut().chain(replicas) {
            if *r == old {
                *r = new.clone();
            }
        }
        change.from_tag = from_tag;
        change.to_tag = Some(to_tag.to_string());
    }
}

fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// Env and label keys whose values are never printed.
pub fn is_secret_key(k: &str) -> bool {
    let u = k.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|w| u.contains(w))
}

/// Masks secret values; a value that differs between the two sides says so, without showing it.
fn mask_pair(old: &mut Spec, new: &mut Spec) {
    fn mask(
        a: &mut BTreeMap<String, String>,
        b: &mut BTreeMap<String, String>,
        secrets: &[String],
    ) {
        let keys: BTreeSet<String> = a.keys().chain(b.keys()).cloned().collect();
        for k in keys {
            if is_secret_key(&k) || secrets.contains(&k) {
                let changed = a.get(&k) != b.get(&k);
                if let Some(v) = a.get_mut(&k) {
                    *v = if changed {
                        "******** (old)".into()
                    } else {
                        "********".into()
                    };
                }
                if let Some(v) = b.get_mut(&k) {
                    *v = if changed {
                        "******** (changed)".into()
                    } else {
                        "********".into()
                    };
                }
            }
        }
    }
    let secrets: Vec<String> = old
        .secrets
        .iter()
        .chain(new.secrets.iter())
        .cloned()
        .collect();
    mask(&mut old.environment, &mut new.environment, &secrets);
    mask(&mut old.labels, &mut new.labels, &secrets);
}

/// Unified diff of two specs as YAML, secrets masked.
pub fn spec_diff(service: &str, old: &Spec, new: &Spec) -> String {
    let (mut o, mut n) = (old.clone(), new.clone());
    mask_pair(&mut o, &mut n);
    let a = serde_yaml::to_string(&readable(&o)).unwrap_or_default();
    let b = serde_yaml::to_string(&readable(&n)).unwrap_or_default();
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("{service} (running)"),
            &format!("{service} (desired)"),
        )
        .to_string()
}

/// A spec as shown in a diff: the healthcheck's times, which the engine keeps in nanoseconds,
/// and stop_grace_period (seconds) written as a compose file writes them (`2s`, `500ms`).
/// Display only: the stored spec and its hash keep the engine's units.
fn readable(spec: &Spec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    let duration = |x: &mut serde_json::Value| {
        if let Some(ns) = x.as_i64() {
            *x = serde_json::Value::String(format_ns(ns));
        }
    };
    if let Some(hc) = v.get_mut("healthcheck").and_then(|h| h.as_object_mut()) {
        for k in ["interval", "timeout", "start_period", "start_interval"] {
            hc.get_mut(k).map(duration);
        }
    }
    if let Some(x) = v.get_mut("stop_grace_period") {
        if let Some(secs) = x.as_i64() {
            *x = serde_json::Value::String(format!("{secs}s"));
        }
    }
    v
}

/// `2000000000` -> `2s`, `1500000000` -> `1500ms`, `90000000000` -> `90s`.
fn format_ns(ns: i64) -> String {
    match ns {
        0 => "0s".into(),
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// The human plan. `color`: ANSI colours (on a TTY).
pub fn render_text(plan: &Plan, color: bool) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", p.yellow.apply_to("warning:"));
    }
    for n in &plan.networks {
        let _ = writeln!(out, "{} network {} (create)", p.green.apply_to("+"), n.name);
    }
    for v in &plan.volumes {
        let _ = writeln!(out, "{} volume {} (create)", p.green.apply_to("+"), v.name);
    }
    for s in &plan.services {
        render_service(&mut out, s, &p);
    }
    for o in &plan.orphans {
        if o.remove {
            let _ = writeln!(
                out,
                "{} {} remove orphan (service {})",
                p.red.apply_to("-"),
                o.name,
                o.service
            );
        }
    }
    let count = |a: ServiceAction| plan.services.iter().filter(|s| s.action == a).count();
    if plan.has_changes() {
        let _ = writeln!(
            out,
            "Plan for {}: {} to create, {} to recreate, {} to start, {} to scale, {} unchanged, {} orphans to remove.",
            plan.project,
            count(ServiceAction::Create),
            count(ServiceAction::Recreate),
            count(ServiceAction::Start),
            count(ServiceAction::ScaleUp) + count(ServiceAction::ScaleDown),
            count(ServiceAction::Unchanged),
            plan.orphans.iter().filter(|o| o.remove).count()
        );
    } else {
        let _ = writeln!(
            out,
            "No changes: {} is up to date ({} services).",
            plan.project,
            plan.services.len()
        );
    }
    out
}

/// The plan's colours (plain text when `color` is false).
struct Palette {
    green: Style,
    red: Style,
    yellow: Style,
    cyan: Style,
    dim: Style,
    bold: Style,
}

impl Palette {
    fn new(color: bool) -> Palette {
        let st = |s: Style| s.force_styling(color);
        Palette {
            green: st(Style::new().green()),
            red: st(Style::new().red()),
            yellow: st(Style::new().yellow()),
            cyan: st(Style::new().cyan()),
            dim: st(Style::new().dim()),
            bold: st(Style::new().bold()),
        }
    }
}

/// One service of the human plan: its action and reasons, the rollout and replicas that
/// change, and the diff.
fn render_service(out: &mut String, s: &ServicePlan, p: &Palette) {
    let (sym, style) = match s.action {
        ServiceAction::Create | ServiceAction::ScaleUp => ("+", &p.green),
        ServiceAction::Recreate => ("~", &p.yellow),
        ServiceAction::Start => (">", &p.cyan),
        ServiceAction::ScaleDown => ("-", &p.red),
        ServiceAction::Unchanged => ("=", &p.dim),
    };
    let action = wire_name(s.action);
    let _ = write!(
        out,
        "{} {} {}",
        style.apply_to(sym),
        p.bold.apply_to(&s.service),
        style.apply_to(&action)
    );
    if !s.reasons.is_empty() {
        let _ = write!(out, " ({})", s.reasons.join("; "));
    }
    out.push('\n');
    if s.action != ServiceAction::Unchanged {
        let recreates = s
            .replicas
            .iter()
            .filter(|r| r.action == ReplicaAction::Recreate);
        if let (Some(r), true) = (&s.rollout, recreates.count() > 1) {
            let _ = writeln!(
                out,
                "    {}",
                p.dim.apply_to(format!("update: {}", r.update.describe()))
            );
        }
        for r in &s.replicas {
            if r.action != ReplicaAction::Unchanged {
                let _ = writeln!(out, "    {} {}", r.name, wire_name(r.action));
            }
        }
    }
    if let Some(d) = &s.diff {
        render_diff(out, d, p);
    }
}

/// An action as the plan JSON names it (`recreate`, `scale-up`, …).
fn wire_name(action: impl Serialize) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A unified diff, indented, its headers, hunks, additions and removals coloured.
fn render_diff(out: &mut String, d: &str, p: &Palette) {
    for line in d.lines() {
        let styled = if line.starts_with("+++") || line.starts_with("---") {
            p.bold.apply_to(line).to_string()
        } else if line.starts_with('+') {
            p.green.apply_to(line).to_string()
        } else if line.starts_with('-') {
            p.red.apply_to(line).to_string()
        } else if line.starts_with("@@") {
            p.cyan.apply_to(line).to_string()
        } else {
            line.to_string()
        };
        let _ = writeln!(out, "    {styled}");
    }
}

/// JSON Schema of the plan JSON (`schemas/plan.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Plan);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::ObservedImage;

    use crate::load::test_project as project;

    fn desired(yaml: &str) -> Desired {
        let project = project(yaml);
        let images = project
            .services
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    DesiredImage {
                        reference: s.image.clone().unwrap(),
                        digest: Some("sha256:aaa".into()),
                        build: None,
                        local_id: None,
                    },
                )
            })
            .collect();
        Desired {
            project,
            images,
            run_from: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    /// The engine state a successful apply of `d` leaves.
    fn converged(d: &Desired) -> Observed {
        let mut o = Observed::default();
        o.networks
            .extend(d.project.networks.values().map(|n| n.name.clone()));
        o.volumes
            .extend(d.project.volumes.values().map(|v| v.name.clone()));
        o.images.insert(
            "sha256:aaa".into(),
            ObservedImage {
                id: "sha256:aaa".into(),
                ..Default::default()
            },
        );
        for (name, svc) in &d.project.services {
            let spec = Spec::from_service(&d.project, name);
            for n in 1..=svc.replicas() {
                o.containers.push(ObservedContainer {
                    id: format!("{name}{n}"),
                    name: container_name("p", name, svc, n),
                    service: name.clone(),
                    number: n,
                    state: "running".into(),
                    image_id: "sha256:aaa".into(),
                    networks: spec.networks.keys().cloned().collect(),
                    volumes: spec
                        .mounts
                        .iter()
                        .filter_map(|m| m.source.clone())
                        .collect(),
                    spec_hash: Some(spec.hash()),
                    spec: Some(spec.clone()),
                    ..Default::default()
                });
            }
        }
        o
    }

    const YAML: &str = "services:\n  db:\n    image: db:1\n    environment: {DB_PASSWORD: hunter2, A: '1'}\n    volumes: [data:/data]\n  web:\n    image: web:1\n    depends_on: {db: {condition: service_healthy}}\nvolumes:\n  data:\n";

    #[test]
    fn a_build_to_come_recreates_and_says_why() {
        let mut d = desired(YAML);
        let o = converged(&d);
        let web = d.images.get_mut("web").unwrap();
        web.digest = None;
        web.build = Some("build inputs changed".into());
        let p = plan(&d, &o, PlanOptions::default());
        let s = p.services.iter().find(|s| s.service == "web").unwrap();
        assert_eq!(s.action, ServiceAction::Recreate);
        assert_eq!(s.build.as_deref(), Some("build inputs changed"));
        assert_eq!(s.reasons, ["build web:1: build inputs changed"]);
        assert_eq!(
            p.actions(),
            ["recreate web (build web:1: build inputs changed)"]
        );
        // Built already (apply): the digest decides; an unchanged image changes nothing.
        let web = d.images.get_mut("web").unwrap();
        web.digest = Some("sha256:aaa".into());
        web.build = Some("pull_policy is build".into());
        let p = plan(&d, &o, PlanOptions::default());
        assert!(!p.has_changes(), "{:?}", p.actions());
    }

    #[test]
    fn fresh_project_creates_everything_in_dependency_order() {
        let d = desired(YAML);
        let p = plan(&d, &Observed::default(), PlanOptions::default());
        assert_eq!(
            p.networks,
            vec![Resource {
                key: "default".into(),
                name: "p_default".into()
            }]
        );
        assert_eq!(
            p.volumes,
            vec![Resource {
                key: "data".into(),
                name: "p_data".into()
            }]
        );
        let order: Vec<_> = p
            .services
            .iter()
            .map(|s| (s.service.as_str(), s.action))
            .collect();
        assert_eq!(
            order,
            vec![
                ("db", ServiceAction::Create),
                ("web", ServiceAction::Create)
            ]
        );
        assert!(p.has_changes());
    }

    const SHARED: &str = "services:\n  app:\n    image: app:1\n    network_mode: service:vpn\n  vpn:\n    image: vpn:1\n    environment: {REV: '1'}\n";

    /// `converged`, with app created in the namespace of vpn's container (`vpn_id`).
    fn converged_shared(d: &Desired, vpn_id: &str) -> Observed {
        let mut o = converged(d);
        for c in o.containers.iter_mut() {
            if c.service == "vpn" {
                c.id = vpn_id.into();
            } else {
                c.shares = Some(crate::namespaces::Shares {
                    network_mode: Some("container:vpn-old".into()),
                    ..Default::default()
                });
            }
        }
        o
    }

    #[test]
    fn a_namespace_owner_recreated_takes_its_dependents_along() {
        let d = desired(SHARED);
        let o = converged_shared(&d, "vpn-old");
        let p = plan(&d, &o, PlanOptions::default());
        assert!(!p.has_changes(), "{}", render_text(&p, false));
        let mut d2 = desired(&SHARED.replace("REV: '1'", "REV: '2'"));
        d2.run_from.clear();
        let p = plan(&d2, &o, PlanOptions::default());
        assert_eq!(
            p.actions(),
            [
                "recreate vpn (changed: environment)",
                "recreate app (network namespace of vpn is recreated)"
            ]
        );
        // Replaced behind composeops' back: app points at a container vpn no longer has.
        let o = converged_shared(&d, "vpn-new");
        let p = plan(&d, &o, PlanOptions::default());
        assert_eq!(
            p.actions(),
            ["recreate app (network namespace of vpn is gone (it points at another container))"]
        );
    }

    #[test]
    fn a_compose_made_dependent_is_adopted_without_a_spurious_diff() {
        let d = desired(SHARED);
        let mut o = converged_shared(&d, "vpn-old");
        for c in o.containers.iter_mut().filter(|c| c.service == "app") {
            // As read back from inspect: no composeops labels, the engine's resolved form.
            let mut spec = c.spec.clone().unwrap();
            spec.network_mode = Some("container:vpn-old".into());
            spec.hostname = Some("vpn-old".into());
            c.spec = Some(spec);
            c.spec_hash = None;
        }
        let p = plan(&d, &o, PlanOptions::default());
        assert!(!p.has_changes(), "{}", render_text(&p, false));
    }

    #[test]
    fn namespace_owners_come_first_and_resolve_to_their_first_container_by_name() {
        let p = project(
            "services:\n  app:\n    image: x\n    network_mode: service:vpn\n  bk:\n    \
             image: x\n    volumes_from: [app]\n  vpn:\n    image: x\n",
        );
        assert_eq!(apply_order(&p), ["vpn", "app", "bk"]);
        // Compose sorts by name: p-db-1 < p-db-10 < p-db-2.
        let mut o = Observed::default();
        for (n, id) in [("p-db-2", "b"), ("p-db-10", "c"), ("p-db-1", "a")] {
            o.containers.push(ObservedContainer {
                id: id.into(),
                name: n.into(),
                service: "db".into(),
                ..Default::default()
            });
        }
        let t = &o.targets()["db"];
        assert_eq!(t.primary_id.as_deref(), Some("a"));
        assert_eq!(t.names, ["p-db-1", "p-db-10", "p-db-2"]);
    }

    #[test]
    fn converged_state_plans_nothing() {
        let d = desired(YAML);
        let p = plan(&d, &converged(&d), PlanOptions::default());
        assert!(!p.has_changes(), "{}", render_text(&p, false));
    }

    /// A container Compose made carries no composeops spec; when its config-hash is Compose's
    /// hash of the desired service it is adopted as is, even where the spec read back from
    /// the engine differs; otherwise the field-by-field comparison decides.
    #[test]
    fn compose_container_with_compose_hash_is_adopted() {
        let d = desired(YAML);
        let mut o = converged(&d);
        for c in &mut o.containers {
            c.spec_hash = None;
            c.spec
                .as_mut()
                .unwrap()
                .environment
                .insert("FROM_COMPOSE".into(), "1".into());
            let h = crate::compose_hash::config_hash(&d.project, &c.service);
            c.labels.insert(crate::spec::LABEL_CONFIG_HASH.into(), h);
        }
        let p = plan(&d, &o, PlanOptions::default());
        assert!(!p.has_changes(), "{}", render_text(&p, false));
        for c in &mut o.containers {
            c.labels
                .insert(crate::spec::LABEL_CONFIG_HASH.into(), "other".into());
        }
        let p = plan(&d, &o, PlanOptions::default());
        assert!(p
            .services
            .iter()
            .all(|s| s.changed_fields == vec!["environment"]));
    }

    #[test]
    fn edit_recreates_only_that_service_and_masks_secrets() {
        let d = desired(YAML);
        let o = converged(&d);
        let d2 = desired(
            &YAML
                .replace("hunter2", "hunter3")
                .replace("A: '1'", "A: '2'"),
        );
        let p = plan(&d2, &o, PlanOptions::default());
        assert_eq!(p.services[0].action, ServiceAction::Recreate);
        assert_eq!(p.services[0].changed_fields, vec!["environment"]);
        assert_eq!(p.services[1].action, ServiceAction::Unchanged);
        let diff = p.services[0].diff.clone().unwrap();
        assert!(!diff.contains("hunter"), "{diff}");
        assert!(
            diff.contains("+  DB_PASSWORD: '******** (changed)'")
                || diff.contains("******** (changed)"),
            "{diff}"
        );
        assert!(
            diff.contains("-  A: '1'") && diff.contains("+  A: '2'"),
            "{diff}"
        );
    }

    #[test]
    fn new_digest_stopped_container_scale_and_orphans() {
        let mut d = desired(YAML);
        let mut o = converged(&d);
        d.images.get_mut("web").unwrap().digest = Some("sha256:bbbbbbbbbbbbbbbbbbbb".into());
        o.containers[0].state = "exited".into();
        o.containers[0].exit_code = Some(137);
        let mut orphan = o.containers[1].clone();
        orphan.service = "old".into();
        orphan.name = "p-old-1".into();
        o.containers.push(orphan);
        let p = plan(&d, &o, PlanOptions { prune: true });
        assert_eq!(p.services[0].action, ServiceAction::Start);
        assert_eq!(p.services[1].action, ServiceAction::Recreate);
        assert_eq!(
            p.services[1].reasons,
            vec!["image web:1: digest sha256:aaa -> sha256:bbbbbbbbbbbb"]
        );
        assert!(p.orphans[0].remove);
        let d3 = desired(&YAML.replace("image: web:1", "image: web:1\n    deploy: {replicas: 3}"));
        let p = plan(&d3, &converged(&d), PlanOptions::default());
        assert_eq!(p.services[1].action, ServiceAction::ScaleUp);
        assert_eq!(p.services[1].replicas.len(), 3);
    }

    #[test]
    fn missing_volume_and_network_are_reasons() {
        let d = desired(YAML);
        let mut o = converged(&d);
        o.volumes.clear();
        o.containers[1].networks.clear();
        let p = plan(&d, &o, PlanOptions::default());
        assert_eq!(p.services[0].reasons, vec!["volume p_data missing"]);
        assert_eq!(p.services[1].reasons, vec!["network p_default missing"]);
    }

    #[test]
    fn diffs_show_durations_as_compose_files_write_them() {
        assert_eq!(format_ns(2_000_000_000), "2s");
        assert_eq!(format_ns(1_500_000_000), "1500ms");
        assert_eq!(format_ns(0), "0s");
        let p = project(
            "services:\n  web:\n    image: a\n    healthcheck:\n      test: [CMD, 'true']\n      \
             interval: 2s\n    stop_grace_period: 1m30s\n",
        );
        let old = Spec::from_service(&p, "web");
        let mut new = old.clone();
        if let Some(h) = new.healthcheck.as_mut() {
            h.interval = 500_000_000;
        }
        let d = spec_diff("web", &old, &new);
        assert!(
            d.contains("-  interval: 2s") && d.contains("+  interval: 500ms"),
            "{d}"
        );
        assert_eq!(readable(&old)["stop_grace_period"], "90s");
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/plan.schema.json");
        let have = std::fs::read_to_string(path).unwrap_or_default();
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")).unwrap();
            std::fs::write(path, json_schema()).unwrap();
            return;
        }
        assert_eq!(
            have,
            json_schema(),
            "schemas/plan.schema.json is stale: run COMPOSEOPS_UPDATE_SCHEMAS=1 cargo test --lib"
        );
    }

    #[test]
    fn a_content_change_recreates_only_its_service_and_names_it() {
        let yaml = |c: &str| {
            format!(
                "services:\n  a:\n    image: a:1\n    configs: [c]\n  b:\n    image: b:1\n\
                 configs:\n  c:\n    content: {c}\n"
            )
        };
        let with_files = |c: &str| {
            let mut d = desired(&yaml(c));
            d.files = crate::configs::resolve(&d.project).unwrap();
            d
        };
        let before = with_files("first-Qx7");
        let mut o = converged(&before);
        let label = before.files["a"].label().unwrap();
        let a = o.containers.iter_mut().find(|c| c.service == "a").unwrap();
        a.labels
            .insert(crate::configs::LABEL_CONTENT_DIGESTS.into(), label);
        assert!(!plan(&before, &o, PlanOptions::default()).has_changes());
        let p = plan(&with_files("second-Zk9"), &o, PlanOptions::default());
        assert_eq!(p.actions(), ["recreate a (config c content changed)"]);
        let s = &p.services[0];
        assert_eq!((s.diff.as_ref(), s.changed_fields.len()), (None, 0));
        assert!(!serde_json::to_string(&p).unwrap().contains("second-Zk9"));
        // Made by Compose (no digests label): Compose wrote the contents when it started it.
        for c in &mut o.containers {
            c.labels.clear();
        }
        assert!(!plan(&with_files("second-Zk9"), &o, PlanOptions::default()).has_changes());
    }
}
