//! File events under PATH (debounced), with `.git` and read-only access ignored, passed to the
//! supervisor as changed paths.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use super::Control;

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
}
