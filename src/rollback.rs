//! `composeops rollback [SERVICE...]`: puts back the image each service ran before its last
//! update, from the image history every apply records in the state directory
//! (`src/cleanup.rs`; `--cleanup` keeps that previous image for exactly this).
//!
//! The rollback is an apply like any other (journalled, health-checked, itself rolled back if
//! the old image fails now) whose plan pins the named services to their previous digests and
//! leaves every other service alone. The configuration is the compose files' as they are now;
//! the next apply of the files (or the agent's next run) deploys what they say again.

use indexmap::IndexMap;

use crate::cleanup::History;
use crate::error::{Error, Result};
use crate::model::Project;
use crate::plan::{Plan, ReplicaAction, ServiceAction};
use crate::resolve::{ImageRef, ResolvedImage, Source};

/// The previous registry image of each service in `services` (every service with one when
/// empty), as pinned digests for [`crate::converge::ImageSource::Saved`].
pub fn targets(
    project: &Project,
    history: &History,
    services: &[String],
) -> Result<IndexMap<String, ResolvedImage>> {
    for s in services {
        if !project.services.contains_key(s) {
            return Err(Error::InvalidInput(format!(
                "no service {s} in project {}",
                project.name
            )));
        }
    }
    let chosen: Vec<&String> = if services.is_empty() {
        project
            .services
            .keys()
            .filter(|s| history.services.get(*s).is_some_and(|l| l.len() >= 2))
            .collect()
    } else {
        services.iter().collect()
    };
    if chosen.is_empty() {
        return Err(Error::InvalidInput(format!(
            "nothing to roll back: no service of {} has a previous image recorded (each apply \
             that updates an image records it, in the state directory)",
            project.name
        )));
    }
    let mut out = IndexMap::new();
    for s in chosen {
        let list = history.services.get(s).map(Vec::as_slice).unwrap_or(&[]);
        let [.., prev, _current] = list else {
            return Err(Error::InvalidInput(format!(
                "service {s} has no previous image recorded: it was not updated by composeops \
                 with this state directory"
            )));
        };
        let reference = crate::spec::image_reference(project, s);
        let (Some(digest), Ok(r)) = (&prev.digest, ImageRef::parse(&reference)) else {
            return Err(Error::InvalidInput(format!(
                "service {s}: its previous image {} has no registry digest (built or loaded \
                 locally), so it cannot be pinned",
                &prev.image_id
            )));
        };
        let resolved = ResolvedImage {
            reference,
            repository: r.repository(),
            tag: prev.tag.clone().or(r.tag.clone()),
            digest: digest.clone(),
            index_digest: None,
            platform_digest: None,
            source: Source::Pinned,
            held_back: Vec::new(),
        };
        out.insert(s.clone(), resolved);
    }
    Ok(out)
}

/// Leaves only the rolled-back services' changes in `plan`: every other service is kept as it
/// runs, whatever the files now say of it.
pub fn restrict(plan: &mut Plan, services: &IndexMap<String, ResolvedImage>) {
    for sp in &mut plan.services {
        if services.contains_key(&sp.service) {
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
    use crate::cleanup::Deployed;

    fn deployed(id: &str, digest: Option<&str>) -> Deployed {
        Deployed {
            image_id: id.into(),
            digest: digest.map(str::to_string),
            tag: Some("1".into()),
            recorded_at: "2026-12-02T00:00:00Z".into(),
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
        let t = targets(&p, &h, &[]).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(t["web"].pull_reference(), "reg.example/web@sha256:aaa");
        let e = targets(&p, &h, &["db".into()]).unwrap_err().to_string();
        assert!(e.contains("service db has no previous image"), "{e}");
        let e = targets(&p, &h, &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("no service nope"), "{e}");
        h.services.get_mut("web").unwrap()[0].digest = None;
        let e = targets(&p, &h, &[]).unwrap_err().to_string();
        assert!(e.contains("has no registry digest"), "{e}");
    }
}
