//! The git side of the agent, through the git CLI: the checkout's revision, and a pull that is a
//! fast-forward or nothing. A diverged branch or local edits in the way are reported and left
//! exactly as they are: the operator's checkout is never merged, rebased or reset.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// Runs `git -C dir ARGS`; Ok(stdout trimmed) or Err(stderr trimmed).
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Never wait on a password prompt or an editor in a service.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if err.is_empty() {
            format!("git {} failed ({})", args.join(" "), out.status)
        } else {
            err
        })
    }
}

/// The work tree containing `dir`, if it is inside one.
pub fn toplevel(dir: &Path) -> Option<PathBuf> {
    git(dir, &["rev-parse", "--show-toplevel"])
        .ok()
        .map(PathBuf::from)
}

/// `HEAD`'s commit id, with `+dirty` when `dir` has uncommitted changes (so a local edit is a
/// different desired state from the commit, and /status says so).
pub fn revision(dir: &Path) -> Option<String> {
    let head = git(dir, &["rev-parse", "HEAD"]).ok()?;
    Some(with_dirty(dir, head))
}

/// The last commit that touched `dir` (with `+dirty` for uncommitted changes in it): what
/// identifies a project's desired state in git, so a commit to another project of the same
/// repository is not a new desired state for this one.
pub fn project_revision(dir: &Path) -> Option<String> {
    let last = git(dir, &["log", "-1", "--format=%H", "--", "."]).ok()?;
    if last.is_empty() {
        return None;
    }
    Some(with_dirty(dir, last))
}

/// `commit`, with `+dirty` when `dir` has uncommitted changes.
fn with_dirty(dir: &Path, commit: String) -> String {
    let dirty = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=normal",
            "--",
            ".",
        ],
    )
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Pull {
    UpToDate {
        revision: String,
    },
    FastForwarded {
        from: String,
        to: String,
    },
    /// Local commits not on the remote: nothing to pull.
    Ahead {
        revision: String,
    },
    /// Local and remote both have commits the other lacks: left alone.
    Diverged {
        local: String,
        remote: String,
    },
    /// The fast-forward was refused (local edits in the way): left alone.
    Blocked {
        message: String,
    },
    Failed {
        message: String,
    },
}

impl Pull {
    pub fn changed(&self) -> bool {
        matches!(self, Pull::FastForwarded { .. })
    }
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Pull::Diverged { .. } | Pull::Blocked { .. } | Pull::Failed { .. }
        )
    }
}

/// `git fetch` of the current branch's upstream, then `git merge --ff-only` when (and only
/// when) HEAD is an ancestor of it.
pub fn pull(top: &Path) -> Pull {
    let failed = |message: String| Pull::Failed { message };
    let upstream = match git(
        top,
        &["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"],
    ) {
        Ok(u) => u,
        Err(e) => {
            return failed(format!(
                "the checkout's branch has no upstream to pull from \
                 (set one with `git branch --set-upstream-to`): {e}"
            ))
        }
    };
    if let Err(e) = git(top, &["fetch", "--quiet", "--no-tags"]) {
        return failed(format!("git fetch failed: {e}"));
    }
    let (local, remote) = match (
        git(top, &["rev-parse", "HEAD"]),
        git(top, &["rev-parse", "@{u}"]),
    ) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    if local == remote {
        return Pull::UpToDate { revision: local };
    }
    let is_ancestor = |a: &str, b: &str| git(top, &["merge-base", "--is-ancestor", a, b]).is_ok();
    if !is_ancestor(&local, &remote) {
        if is_ancestor(&remote, &local) {
            return Pull::Ahead { revision: local };
        }
        return Pull::Diverged { local, remote };
    }
    match git(top, &["merge", "--ff-only", "--quiet", &upstream]) {
        Ok(_) => Pull::FastForwarded {
            from: local,
            to: git(top, &["rev-parse", "HEAD"]).unwrap_or(remote),
        },
        Err(message) => Pull::Blocked { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// origin (bare), a checkout, and a second clone that pushes to origin.
    fn repos() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin.git");
        let work = t.path().join("work");
        let other = t.path().join("other");
        sh(
            t.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                origin.to_str().unwrap(),
            ],
        );
        sh(
            t.path(),
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        std::fs::write(work.join("a.txt"), "1\n").unwrap();
        sh(&work, &["add", "."]);
        sh(&work, &["commit", "-qm", "one"]);
        sh(&work, &["push", "-q", "origin", "HEAD:main"]);
        sh(&work, &["branch", "-q", "--set-upstream-to", "origin/main"]);
        sh(
            t.path(),
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
        (t, work, other)
    }

    fn commit_in(dir: &Path, file: &str, content: &str) {
        std::fs::write(dir.join(file), content).unwrap();
        sh(dir, &["add", "."]);
        sh(dir, &["commit", "-qm", "change"]);
    }

    #[test]
    fn fast_forwards_and_reports_up_to_date() {
        let (_t, work, other) = repos();
        assert!(matches!(pull(&work), Pull::UpToDate { .. }));
        commit_in(&other, "a.txt", "2\n");
        sh(&other, &["push", "-q", "origin", "HEAD:main"]);
        let p = pull(&work);
        assert!(p.changed(), "{p:?}");
        assert_eq!(std::fs::read_to_string(work.join("a.txt")).unwrap(), "2\n");
        assert!(!revision(&work).unwrap().ends_with("+dirty"));
    }

    #[test]
    fn project_revision_ignores_other_directories() {
        let (_t, work, _other) = repos();
        std::fs::create_dir(work.join("p")).unwrap();
        commit_in(&work, "p/compose.yaml", "a\n");
        let p = project_revision(&work.join("p")).unwrap();
        commit_in(&work, "elsewhere.txt", "x\n");
        assert_eq!(project_revision(&work.join("p")).unwrap(), p);
        assert_ne!(revision(&work.join("p")).unwrap(), p);
        std::fs::write(work.join("p/compose.yaml"), "b\n").unwrap();
        assert_eq!(
            project_revision(&work.join("p")).unwrap(),
            format!("{p}+dirty")
        );
    }

    #[test]
    fn diverged_checkout_is_left_alone() {
        let (_t, work, other) = repos();
        commit_in(&other, "a.txt", "remote\n");
        sh(&other, &["push", "-q", "origin", "HEAD:main"]);
        commit_in(&work, "b.txt", "local\n");
        let before = git(&work, &["rev-parse", "HEAD"]).unwrap();
        assert!(matches!(pull(&work), Pull::Diverged { .. }));
        assert_eq!(git(&work, &["rev-parse", "HEAD"]).unwrap(), before);
        assert_eq!(std::fs::read_to_string(work.join("a.txt")).unwrap(), "1\n");
    }

    #[test]
    fn local_edits_blocking_the_fast_forward_are_kept() {
        let (_t, work, other) = repos();
        commit_in(&other, "a.txt", "remote\n");
        sh(&other, &["push", "-q", "origin", "HEAD:main"]);
        std::fs::write(work.join("a.txt"), "local edit\n").unwrap();
        assert!(revision(&work).unwrap().ends_with("+dirty"));
        let p = pull(&work);
        assert!(matches!(p, Pull::Blocked { .. }), "{p:?}");
        assert_eq!(
            std::fs::read_to_string(work.join("a.txt")).unwrap(),
            "local edit\n"
        );
    }
}
