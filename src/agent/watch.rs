//! File events under PATH (debounced), with `.git` and read-only access ignored, passed to the
//! supervisor as changed paths; and the filter the supervisor applies to them: a project is
//! woken only by a change to what it reads (`ProjectInputs`).
//!
//! Why a filter: stacks commonly bind-mount `./data` inside their own directory. Waking on
//! every event there reconciles the project each time its container writes, and each run
//! writes again (logs, restarts): one write a second gave a reconcile every second or so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use super::Control;
use crate::load::{LoadOptions, Loaded};

pub type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// True when a path is inside a `.git` directory (fetches and pulls touch it constantly).
pub fn ignored(root: &Path, p: &Path) -> bool {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .any(|c| matches!(c, Component::Normal(n) if n == ".git"))
}

/// Starts watching `root` recursively; keep the returned watcher alive.
pub fn start(
    root: &Path,
    debounce: Duration,
    tx: mpsc::UnboundedSender<Control>,
) -> Result<Watcher> {
    let root_owned = root.to_path_buf();
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let paths: Vec<PathBuf> = events
                .iter()
                .filter(|e| !matches!(e.kind, EventKind::Access(_)))
                .flat_map(|e| e.paths.iter())
                .filter(|p| !ignored(&root_owned, p))
                .cloned()
                .collect();
            if !paths.is_empty() {
                let _ = tx.send(Control::Files(paths));
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "file watch error");
            }
        }
    })
    .context("cannot start the file watcher")?;
    debouncer
        .watch(root, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;
    Ok(debouncer)
}

/// What a project reads, worked out from one successful load.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProjectInputs {
    /// Files whose change can change the project: compose files (with discovery candidates,
    /// `include`s, `extends`), env files, `configs`/`secrets` `file:` sources, Dockerfiles,
    /// the lockfile. Present or not: creating one counts.
    pub files: BTreeSet<PathBuf>,
    /// Directories read as a whole: local build contexts.
    pub trees: BTreeSet<PathBuf>,
    /// Bind-mount sources: what the project's containers write, never an input by itself.
    pub binds: BTreeSet<PathBuf>,
}

/// The inputs of a loaded project (pure: no file is read).
pub(crate) fn project_inputs(loaded: &Loaded) -> ProjectInputs {
    let p = &loaded.project;
    let mut files = loaded.files_read.clone();
    files.extend(p.config_files.iter().cloned());
    files.insert(crate::lock::lock_path(p));
    for item in p.configs.values().chain(p.secrets.values()) {
        if let Some(f) = item.get("file").and_then(|f| f.as_str()) {
            files.insert(p.working_dir.join(f));
        }
    }
    let mut trees = BTreeSet::new();
    let mut binds = BTreeSet::new();
    for svc in p.services.values() {
        if let Some(build) = svc.extra.get("build") {
            let ctx = build.get("context").and_then(|c| c.as_str()).unwrap_or(".");
            // A remote context (git URL) is not on this disk.
            if !ctx.contains("://") && !ctx.starts_with("git@") {
                let ctx = p.working_dir.join(ctx);
                if let Some(df) = build.get("dockerfile").and_then(|d| d.as_str()) {
                    files.insert(ctx.join(df));
                }
                trees.insert(ctx);
            }
        }
        for v in svc.volumes.iter().filter(|v| v.kind == "bind") {
            if let Some(src) = &v.source {
                binds.insert(p.working_dir.join(src));
            }
        }
    }
    ProjectInputs {
        files,
        trees,
        binds,
    }
}

/// Whether a change of `path` should wake a project with these `inputs`.
///
/// In order: `.git` never; an input file, or a directory holding one (renamed or deleted,
/// the project directory included), always; a path under a bind-mount source never (the
/// project's containers write there); a path under a build context always. Anything else
/// wakes only with `fallback`, used while the project does not load: its inputs are then
/// unknown, and the change may be the fix (so the last good load's bind mounts are still
/// left out, but everything else wakes).
pub(crate) fn wakes(root: &Path, inputs: &ProjectInputs, fallback: bool, path: &Path) -> bool {
    if ignored(root, path) {
        return false;
    }
    if inputs.files.iter().any(|f| f.starts_with(path)) {
        return true;
    }
    if inputs.binds.iter().any(|b| path.starts_with(b)) {
        return false;
    }
    fallback || inputs.trees.iter().any(|t| path.starts_with(t))
}

/// The load options the agent uses for a project directory (the same as the pipeline's, so
/// the watcher sees the files the reconciler reads).
pub(crate) fn load_options(dir: &Path) -> LoadOptions {
    let mut lo = LoadOptions::from_process();
    lo.cwd = dir.to_path_buf();
    // These name one project; each of the agent's projects has its own.
    lo.environ.shift_remove("COMPOSE_PROJECT_NAME");
    lo.environ.shift_remove("COMPOSE_FILE");
    lo
}

/// The supervisor's memory of each project's inputs, loaded lazily.
///
/// Why here and not recorded by the worker after its own load: the watcher then needs nothing
/// from the reconciler (any [`super::Reconciler`] works, and the worker stays unaware of
/// file events), and a load costs a few milliseconds. A project is loaded again only when
/// its inputs may have changed: after one of them woke it, or while it fails to load.
#[derive(Default)]
pub(crate) struct InputCache {
    by_id: BTreeMap<String, Entry>,
}

#[derive(Default)]
struct Entry {
    /// From the last successful load (empty before one).
    inputs: ProjectInputs,
    /// `inputs` match the files on disk: loaded, and no input changed since.
    current: bool,
}

impl InputCache {
    /// The changed `paths` of project `id` (directory `dir`) that should wake it.
    pub(crate) async fn waking(
        &mut self,
        root: &Path,
        id: &str,
        dir: &Path,
        paths: &[&Path],
    ) -> Vec<PathBuf> {
        let entry = self.by_id.entry(id.to_string()).or_default();
        if !entry.current {
            let opts = load_options(dir);
            match tokio::task::spawn_blocking(move || crate::load::load(&opts)).await {
                Ok(Ok(loaded)) => {
                    entry.inputs = project_inputs(&loaded);
                    entry.current = true;
                }
                Ok(Err(e)) => {
                    tracing::debug!(project = %id, error = %e, "watch: project does not load; any change wakes it");
                }
                Err(e) => tracing::warn!(error = %e, "watch: loading the project panicked"),
            }
        }
        let fallback = !entry.current;
        let hits: Vec<PathBuf> = paths
            .iter()
            .filter(|p| wakes(root, &entry.inputs, fallback, p))
            .map(|p| p.to_path_buf())
            .collect();
        if !hits.is_empty() {
            // An input changed: what the project reads may have too.
            entry.current = false;
        }
        hits
    }

    /// Forgets the projects `keep` says no longer exist.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_id.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_dir_is_ignored() {
        let r = Path::new("/srv/stacks");
        assert!(ignored(r, Path::new("/srv/stacks/.git/FETCH_HEAD")));
        assert!(ignored(r, Path::new("/srv/stacks/web/.git/index")));
        assert!(!ignored(r, Path::new("/srv/stacks/web/compose.yaml")));
        assert!(!ignored(r, Path::new("/srv/stacks/.gitignore")));
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A project reading one file of each kind, with `./data` bind-mounted and a config file
    /// inside it; `app/` is the build context.
    fn stack(dir: &Path) {
        write(
            dir,
            "compose.yaml",
            "include: [inc/compose.yaml]\n\
             services:\n  web:\n    extends: {file: base.yaml, service: base}\n\
             \x20   build: ./app\n    env_file: app.env\n\
             \x20   volumes: [./data:/data, ./logs:/logs]\n\
             \x20   configs: [conf, inner]\n\
             configs:\n  conf: {file: ./conf/app.conf}\n  inner: {file: ./data/inner.conf}\n",
        );
        write(dir, "base.yaml", "services:\n  base:\n    image: busybox\n");
        write(
            dir,
            "inc/compose.yaml",
            "services:\n  side:\n    image: busybox\n",
        );
        write(dir, "app.env", "A=1\n");
        write(dir, "conf/app.conf", "x\n");
        write(dir, "data/inner.conf", "x\n");
        write(dir, "app/Dockerfile", "FROM busybox\n");
    }

    fn inputs_of(dir: &Path) -> ProjectInputs {
        project_inputs(&crate::load::load(&load_options(dir)).unwrap())
    }

    #[test]
    fn inputs_of_a_loaded_project() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        stack(dir);
        let i = inputs_of(dir);
        for f in [
            "compose.yaml",
            "compose.override.yaml",
            ".env",
            "base.yaml",
            "inc/compose.yaml",
            "inc/.env",
            "app.env",
            "conf/app.conf",
            "data/inner.conf",
            "app/Dockerfile",
            "composeops.lock",
        ] {
            assert!(i.files.contains(&dir.join(f)), "{f} not in {:?}", i.files);
        }
        assert_eq!(i.trees, BTreeSet::from([dir.join("app")]));
        assert_eq!(
            i.binds,
            BTreeSet::from([dir.join("data"), dir.join("logs")])
        );
    }

    #[test]
    fn only_inputs_wake_a_loaded_project() {
        let d = tempfile::tempdir().unwrap();
        let (root, dir) = (d.path(), d.path().join("web"));
        stack(&dir);
        let i = inputs_of(&dir);
        let wake = |rel: &str| wakes(root, &i, false, &dir.join(rel));
        for yes in [
            "compose.yaml",
            "compose.override.yaml",
            ".env",
            "app.env",
            "inc/compose.yaml",
            "base.yaml",
            "conf/app.conf",
            "conf",
            "data/inner.conf",
            "data",
            "app/Dockerfile",
            "app/src/main.c",
            "",
        ] {
            assert!(wake(yes), "{yes:?} should wake");
        }
        for no in [
            "data/x",
            "logs",
            "logs/today.log",
            ".git/index",
            "README.md",
            "notes/a",
        ] {
            assert!(!wake(no), "{no:?} should not wake");
        }
        // Another project's files are not this one's.
        assert!(!wakes(root, &i, false, &root.join("other/compose.yaml")));
    }

    #[test]
    fn a_project_that_does_not_load_wakes_on_anything_but_git_and_known_binds() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        stack(dir);
        let last_good = inputs_of(dir);
        let none = ProjectInputs::default();
        for i in [&last_good, &none] {
            assert!(wakes(dir, i, true, &dir.join("README.md")));
            assert!(wakes(dir, i, true, &dir.join("compose.yaml")));
            assert!(!wakes(dir, i, true, &dir.join(".git/HEAD")));
        }
        assert!(!wakes(dir, &last_good, true, &dir.join("data/x")));
        assert!(wakes(dir, &none, true, &dir.join("data/x")));
    }

    #[tokio::test]
    async fn cache_reloads_after_an_input_changed_and_while_broken() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        stack(dir);
        let mut cache = InputCache::default();
        let (data, compose) = (dir.join("data/x"), dir.join("compose.yaml"));
        let mut waking = async |p: &Path| !cache.waking(dir, "p", dir, &[p]).await.is_empty();
        assert!(!waking(&data).await);
        // A new env file is an input once the compose file that names it has woken the project.
        let more = dir.join("more.env");
        assert!(!waking(&more).await);
        let text = std::fs::read_to_string(&compose).unwrap();
        let edited = text.replace(
            "env_file: app.env",
            "env_file: [app.env, {path: more.env, required: false}]",
        );
        std::fs::write(&compose, edited).unwrap();
        assert!(waking(&compose).await);
        assert!(waking(&more).await);
        // Broken: anything but the known bind mounts wakes; fixed: inputs only again.
        std::fs::write(&compose, "services: [").unwrap();
        assert!(waking(&compose).await);
        assert!(waking(&dir.join("README.md")).await);
        assert!(!waking(&data).await);
        std::fs::write(&compose, text).unwrap();
        assert!(waking(&compose).await);
        assert!(!waking(&dir.join("README.md")).await);
    }
}
