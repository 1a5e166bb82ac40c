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

/// What a lookup ahead found, by reference as written.
pub type FoundAhead = HashMap<String, Result<ResolvedImage, RegistryError>>;

/// Lookups under way since the run started (none: nothing remembered, or not asked for).
/// Clones share the same lookups.
#[derive(Clone, Default)]
pub struct LookupsAhead(Option<Shared<BoxFuture<'static, Arc<FoundAhead>>>>);

impl fmt::Debug for LookupsAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.is_some() {
            "under way"
        } else {
            "none"
        };
        f.debug_tuple("LookupsAhead").field(&state).finish()
    }
}

impl LookupsAhead {
    /// What was found, once every lookup ahead has ended (`None` when none was started).
    pub async fn found(&self) -> Option<Arc<FoundAhead>> {
        match &self.0 {
            Some(f) => Some(f.clone().await),
            None => None,
        }
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

/// Starts, on the current runtime, the lookups of the references the last run of `project`
/// remembered in `state_dir`. The file is read by the task, off the caller's thread.
pub fn look_up_ahead(state_dir: &Path, project: &str) -> LookupsAhead {
    let path = references_path(state_dir, project);
    let task = tokio::spawn(async move {
        let refs = read(&path);
        if refs.is_empty() {
            return FoundAhead::new();
        }
        // Keyed by the reference itself, so that the errors name it as their service.
        let wanted: IndexMap<String, Wanted> =
            refs.iter().map(|r| (r.clone(), Wanted::plain(r))).collect();
        let (found, errors) = Resolver::new(ResolveOptions::default())
            .resolve_each(&wanted)
            .await;
        let mut out: FoundAhead = found.into_iter().map(|(r, i)| (r, Ok(i))).collect();
        for e in errors {
            for r in &e.services {
                out.insert(r.clone(), Err(e.clone()));
            }
        }
        out
    });
    // A task that panicked found nothing: the run looks everything up after the load.
    let found = task
        .map(|r| Arc::new(r.unwrap_or_default()))
        .boxed()
        .shared();
    LookupsAhead(Some(found))
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
