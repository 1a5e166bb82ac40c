//! Registry lookups started before the project is loaded.
//!
//! A no-op `apply` spends its time waiting: for the files to load, then for the registry to
//! answer for the images they name, while the engine lists the project. The images a project
//! names rarely change between runs, so each run that looked them up under the project lock
//! ([`remember`]) writes them to the state directory, and the next run starts their lookups
//! ([`look_up_ahead`]) as it starts, beside the load and the engine's lists. The run still
//! decides on what it loads: only a service whose image is written as remembered, with no
//! update policy, takes what was found ahead (`converge::registry_digests`); the others are
//! looked up after the load as before. A stale memory costs a lookup, never a wrong digest.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use indexmap::IndexMap;

use super::{registry_image, RegistryError, ResolveOptions, ResolvedImage, Resolver, Wanted};
use crate::model::Project;

/// What lookups ahead found, by reference as written.
pub type FoundAhead = HashMap<String, Result<ResolvedImage, RegistryError>>;

/// One lookup under way; clones share it.
type Lookup = Shared<BoxFuture<'static, Result<ResolvedImage, RegistryError>>>;

/// Lookups under way since the run started, for the project whose name the run guessed (none:
/// nothing remembered, or not asked for).
#[derive(Clone, Default)]
pub struct LookupsAhead {
    project: String,
    lookups: HashMap<String, Lookup>,
}

impl fmt::Debug for LookupsAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupsAhead")
            .field("project", &self.project)
            .field("references", &self.lookups.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LookupsAhead {
    /// What the lookups of `references` made ahead for `project` found, once they end: a
    /// lookup for another project (a wrong guess of the name) or of another reference is
    /// neither used nor waited for, so a remembered image on a registry that does not answer
    /// delays only a run that still names it.
    pub async fn found<'a>(
        &self,
        project: &str,
        references: impl IntoIterator<Item = &'a str>,
    ) -> FoundAhead {
        if project != self.project {
            return FoundAhead::new();
        }
        let wanted = references
            .into_iter()
            .filter_map(|r| Some((r.to_string(), self.lookups.get(r)?.clone())));
        let (refs, lookups): (Vec<String>, Vec<Lookup>) = wanted.unzip();
        let results = futures_util::future::join_all(lookups).await;
        refs.into_iter().zip(results).collect()
    }
}

/// Where the images `project`'s last looked-up run named are kept, one reference per line.
pub fn references_path(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join(format!("{project}.references"))
}

/// The references [`look_up_ahead`] may answer for: the registry images of services without
/// an update policy (a policy's lookup depends on what the service runs), each once, sorted.
pub fn plain_references(project: &Project) -> Vec<String> {
    let refs: BTreeSet<&str> = project
        .services
        .values()
        .filter(|s| s.update.is_none())
        .filter_map(registry_image)
        .collect();
    refs.into_iter().map(str::to_string).collect()
}

/// Starts, on the current runtime, one lookup per reference the last run of `project`
/// remembered in `state_dir` (a small file, read here).
pub fn look_up_ahead(state_dir: &Path, project: &str) -> LookupsAhead {
    let refs = read(&references_path(state_dir, project));
    let resolver = Arc::new(Resolver::new(ResolveOptions::default()));
    let lookups = refs
        .into_iter()
        .map(|r| {
            let (resolver, reference) = (resolver.clone(), r.clone());
            let task = tokio::spawn(async move { look_up(&resolver, reference).await });
            let failed = r.clone();
            let lookup = task.map(move |done| {
                done.unwrap_or_else(|e| Err(RegistryError::other(&failed, e.to_string())))
            });
            (r, lookup.boxed().shared())
        })
        .collect();
    LookupsAhead {
        project: project.to_string(),
        lookups,
    }
}

async fn look_up(resolver: &Resolver, reference: String) -> Result<ResolvedImage, RegistryError> {
    // Keyed by the reference itself: an error names it where a service would be.
    let wanted: IndexMap<String, Wanted> = [(reference.clone(), Wanted::plain(&reference))].into();
    let (mut found, errors) = resolver.resolve_each(&wanted).await;
    match found.shift_remove(&reference) {
        Some(r) => Ok(r),
        None => Err(errors
            .into_iter()
            .next()
            .unwrap_or_else(|| RegistryError::other(&reference, "no result".into()))),
    }
}

/// Remembers `refs` (see [`plain_references`]) as what `project` names, for the next run's
/// lookups ahead; the file is written only when it changes. Called under the project lock.
/// Failing to write costs the next run its head start, nothing else: a warning.
pub fn remember(state_dir: &Path, project: &str, refs: &[String]) {
    let path = references_path(state_dir, project);
    if read(&path) == refs {
        return;
    }
    let mut text = refs.join("\n");
    text.push('\n');
    if let Err(e) = crate::fsutil::write_atomic(&path, text.as_bytes()) {
        tracing::warn!(
            "cannot write {}: {e}; the next run looks its images up only once the files are \
             loaded",
            path.display()
        );
    }
}

fn read(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_references_are_read_back_and_rewritten_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let refs = vec!["a.example/x:1".to_string(), "b.example/y:2".to_string()];
        remember(dir.path(), "p", &refs);
        let path = references_path(dir.path(), "p");
        assert_eq!(read(&path), refs);
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        remember(dir.path(), "p", &refs);
        let after = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(before, after, "an unchanged set is not written again");
        remember(dir.path(), "p", &refs[..1]);
        assert_eq!(read(&path), refs[..1]);
    }

    #[tokio::test]
    async fn only_the_guessed_projects_lookups_of_the_wanted_references_are_awaited() {
        let image = |r: &str| ResolvedImage {
            reference: r.into(),
            repository: "r.example/a".into(),
            tag: Some("1".into()),
            digest: "sha256:00".into(),
            index_digest: None,
            platform_digest: None,
            source: super::super::Source::Registry,
            held_back: Vec::new(),
        };
        let ready: Lookup = futures_util::future::ready(Ok(image("r.example/a:1")))
            .boxed()
            .shared();
        // A registry that never answers.
        let never: Lookup = futures_util::future::pending().boxed().shared();
        let ahead = LookupsAhead {
            project: "p".into(),
            lookups: [
                ("r.example/a:1".to_string(), ready),
                ("dead.example/b:1".to_string(), never),
            ]
            .into(),
        };
        let within = |f| tokio::time::timeout(std::time::Duration::from_secs(5), f);
        let found = within(ahead.found("p", ["r.example/a:1", "r.example/c:1"]))
            .await
            .expect("the lookup of an image no longer named is not waited for");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["r.example/a:1"]);
        assert!(found["r.example/a:1"].is_ok());
        let other = within(ahead.found("q", ["r.example/a:1", "dead.example/b:1"]))
            .await
            .expect("another project's lookups are not waited for");
        assert!(other.is_empty());
    }

    #[test]
    fn only_registry_images_without_a_policy_are_remembered() {
        let project = crate::load::test_project(
            "services:\n  a:\n    image: r.example/a:1\n  b:\n    image: r.example/a:1\n  \
             c:\n    image: r.example/c:1\n    x-composeops:\n      track: \"~1.2\"\n  \
             d:\n    build: .\n    image: r.example/d:1\n",
        );
        assert_eq!(plain_references(&project), vec!["r.example/a:1"]);
    }
}
