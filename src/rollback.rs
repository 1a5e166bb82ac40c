//! `composeops rollback [SERVICE...]`: puts back what each service ran before its last
//! deployment, its image and its definition, from the history every apply records in the
//! state directory (`src/cleanup.rs`; `--cleanup` keeps that previous image for exactly this).
//!
//! The rollback is an apply like any other (journalled, health-checked, itself rolled back if
//! the old deployment fails now) of the project with the named services' definitions replaced
//! by their previous ones and their images pinned to the previous digests; every other service
//! is left alone. The files are not touched: the next apply of the files (or the agent's next
//! run) deploys what they say again.

use indexmap::IndexMap;

use crate::cleanup::{Deployed, History};
use crate::error::{Error, Result};
use crate::model::{Project, Service};
use crate::plan::{Plan, ReplicaAction, ServiceAction};
use crate::resolve::{ImageRef, ResolvedImage, Source};

/// What a rollback applies.
#[derive(Debug)]
pub struct Target {
    /// The project as the files say, with each rolled-back service's previous definition.
    pub project: Project,
    /// The rolled-back services, in project order.
    pub services: Vec<String>,
    /// The previous registry digest of each rolled-back service that has one, for
    /// [`crate::converge::ImageSource::Saved`]. A service whose previous deployment ran the
    /// image it runs now needs none.
    pub pinned: IndexMap<String, ResolvedImage>,
    /// What cannot be put back, in words (a deployment recorded without its definition).
    pub notes: Vec<String>,
}

/// The rollback of `services` (every service with a previous deployment when empty).
pub fn target(project: &Project, history: &History, services: &[String]) -> Result<Target> {
    for s in services {
        if !project.services.contains_key(s) {
            return Err(Error::InvalidInput(format!(
                "no service {s} in project {}",
                project.name
            )));
        }
    }
    let chosen: Vec<String> = if services.is_empty() {
        project
            .services
            .keys()
            .filter(|s| history.services.get(*s).is_some_and(|l| l.len() >= 2))
            .cloned()
            .collect()
    } else {
        services.to_vec()
    };
    if chosen.is_empty() {
        return Err(Error::InvalidInput(format!(
            "nothing to roll back: no service of {} has a previous deployment recorded (each \
             apply that recreates a service records it, in the state directory)",
            project.name
        )));
    }
    let mut t = Target {
        project: project.clone(),
        services: Vec::new(),
        pinned: IndexMap::new(),
        notes: Vec::new(),
    };
    for s in &chosen {
        let list = history.services.get(s).map(Vec::as_slice).unwrap_or(&[]);
        let [.., prev, current] = list else {
            return Err(Error::InvalidInput(format!(
                "service {s} has no previous deployment recorded: it was not recreated by \
                 composeops with this state directory"
            )));
        };
        match &prev.service {
            Some(def) => {
                let mut svc = previous_definition(project, s, def)?;
                // How updates are taken and checked (`x-composeops`) is not part of what ran:
                // the files' current policy and verify command still apply.
                let current = &project.services[s];
                svc.update = current.update.clone();
                svc.verify = current.verify.clone();
                t.project.services.insert(s.clone(), svc);
            }
            None => t.notes.push(format!(
                "service {s}: its previous definition was not recorded; only its image is put back"
            )),
        }
        if let Some(r) = pin(&t.project, s, prev, current)? {
            t.pinned.insert(s.clone(), r);
        }
    }
    t.services = project
        .services
        .keys()
        .filter(|s| chosen.contains(s))
        .cloned()
        .collect();
    Ok(t)
}

/// The recorded definition of `service`, typed again and checked against what the project
/// defines now: a network, volume or dependency the files no longer have is refused here,
/// before anything changes, rather than failing part way.
fn previous_definition(
    project: &Project,
    service: &str,
    def: &serde_json::Value,
) -> Result<Service> {
    let svc = crate::load::schema::service_from_json(service, def.clone()).map_err(|e| {
        Error::InvalidInput(format!(
            "service {service}: the recorded previous definition no longer loads: {e}"
        ))
    })?;
    let missing = |what: &str, name: &str| {
        Error::InvalidInput(format!(
            "service {service}: its previous definition uses {what} {name}, which the compose \
             files no longer define; define it again, or roll back by editing the files"
        ))
    };
    for n in svc.networks.keys() {
        if !project.networks.contains_key(n) {
            return Err(missing("network", n));
        }
    }
    for v in &svc.volumes {
        if v.kind == "volume" {
            if let Some(src) = v.source.as_deref().filter(|s| !s.is_empty()) {
                if !project.volumes.contains_key(src) {
                    return Err(missing("volume", src));
                }
            }
        }
    }
    for d in svc.depends_on.keys() {
        if !project.services.contains_key(d) {
            return Err(missing("service", d));
        }
    }
    Ok(svc)
}

/// The previous registry digest of `service` in the (restored) project, or `None` when the
/// previous deployment ran the image that runs now.
fn pin(
    project: &Project,
    service: &str,
    prev: &Deployed,
    current: &Deployed,
) -> Result<Option<ResolvedImage>> {
    if prev.image_id == current.image_id {
        return Ok(None);
    }
    let reference = crate::spec::image_reference(project, service);
    // A local image's "digest" is its id: no registry serves it.
    let digest = prev.digest.as_ref().filter(|d| **d != prev.image_id);
    let (Some(digest), Ok(r)) = (digest, ImageRef::parse(&reference)) else {
        return Err(Error::InvalidInput(format!(
            "service {service}: its previous image {} has no registry digest (built or loaded \
             locally), so it cannot be pinned",
            &prev.image_id
        )));
    };
    Ok(Some(ResolvedImage {
        reference,
        repository: r.repository(),
        tag: prev.tag.clone().or(r.tag.clone()),
        digest: digest.clone(),
        index_digest: None,
        platform_digest: None,
        source: Source::Pinned,
        held_back: Vec::new(),
    }))
}

/// Leaves only the rolled-back services' changes in `plan`: every other service is kept as it
/// runs, whatever the files now say of it.
pub fn restrict(plan: &mut Plan, services: &[String]) {
    for sp in &mut plan.services {
        if services.contains(&sp.service) {
            continue;
        }
        sp.action = ServiceAction::Unchanged;
        sp.reasons.clear();
        sp.diff = None;
        sp.image_change = None;
        for r in &mut sp.replicas {
            r.action = ReplicaAction::Unchanged;
        }
    }
    plan.orphans.iter_mut().for_each(|o| o.remove = false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed(id: &str, digest: Option<&str>) -> Deployed {
        Deployed {
            image_id: id.into(),
            digest: digest.map(str::to_string),
            tag: Some("1".into()),
            recorded_at: "2026-12-02T00:00:00Z".into(),
            service: None,
        }
    }

    #[test]
    fn the_previous_digest_of_each_service_is_pinned() {
        let p = crate::load::test_project(
            "services:\n  web:\n    image: reg.example/web:1\n  db:\n    image: db:1\n",
        );
        let mut h = History::default();
        h.services.insert(
            "web".into(),
            vec![
                deployed("sha256:a", Some("sha256:aaa")),
                deployed("sha256:b", Some("sha256:bbb")),
            ],
        );
        h.services
            .insert("db".into(), vec![deployed("sha256:c", Some("sha256:ccc"))]);
        let t = target(&p, &h, &[]).unwrap();
        assert_eq!(t.services, ["web"]);
        assert_eq!(
            t.pinned["web"].pull_reference(),
            "reg.example/web@sha256:aaa"
        );
        assert_eq!(t.project, p, "no definition recorded: the files' one stays");
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        let e = target(&p, &h, &["db".into()]).unwrap_err().to_string();
        assert!(e.contains("service db has no previous deployment"), "{e}");
        let e = target(&p, &h, &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("no service nope"), "{e}");
        h.services.get_mut("web").unwrap()[0].digest = None;
        let e = target(&p, &h, &[]).unwrap_err().to_string();
        assert!(e.contains("has no registry digest"), "{e}");
    }

    #[test]
    fn the_previous_definition_is_put_back_and_checked() {
        let old = crate::load::test_project(
            "services:\n  web:\n    image: reg.example/web:1\n    environment:\n      A: old\n    \
             networks: [front]\n    ports: ['8080:80']\n    stop_grace_period: 3s\n\
             networks:\n  front: {}\n",
        );
        let now = crate::load::test_project(
            "services:\n  web:\n    image: reg.example/web:1\n    environment:\n      A: new\n    \
             networks: [front]\nnetworks:\n  front: {}\n",
        );
        let def = old.services["web"].to_json();
        let mut h = History::default();
        // Same image, another definition: a configuration rollback needs no digest.
        let mut prev = deployed("sha256:a", None);
        prev.service = Some(def.clone());
        let mut cur = deployed("sha256:a", None);
        cur.service = Some(now.services["web"].to_json());
        h.services.insert("web".into(), vec![prev, cur]);
        let t = target(&now, &h, &["web".into()]).unwrap();
        assert_eq!(t.project.services["web"], old.services["web"]);
        assert!(t.pinned.is_empty() && t.notes.is_empty());

        // A network the files dropped since is refused before anything changes.
        let dropped =
            crate::load::test_project("services:\n  web:\n    image: reg.example/web:1\n");
        let e = target(&dropped, &h, &[]).unwrap_err().to_string();
        assert!(e.contains("uses network front"), "{e}");
    }
}
