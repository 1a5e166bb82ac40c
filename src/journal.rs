//! `journal`: the state directory, the per-project lock, and the write-ahead record of the one
//! recreate in flight, so that a run killed at any instant is finished or undone by the next.
//!
//! apply recreates one replica at a time, so the journal holds at most one entry. It is written
//! (and fsynced, with its directory) before every destructive step.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// `/var/lib/composeops` for root, else `$XDG_STATE_HOME/composeops` (default
/// `~/.local/state/composeops`).
pub fn default_state_dir() -> PathBuf {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        return PathBuf::from("/var/lib/composeops");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("composeops");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/composeops")
}

/// An exclusive lock on `<state>/<project>.lock`, held until dropped.
#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
}

impl ProjectLock {
    /// Waits up to `timeout` for the lock (another apply of the same project holds it).
    pub fn acquire(dir: &Path, project: &str, timeout: Duration) -> Result<ProjectLock> {
        let start = Instant::now();
        let mut told = false;
        loop {
            if let Some(l) = Self::try_acquire(dir, project)? {
                return Ok(l);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "another composeops run holds the lock of project {project:?} ({}); waited {:?}. \
                     Try again later or raise --lock-timeout.",
                    dir.join(format!("{project}.lock")).display(),
                    timeout
                );
            }
            if !told {
                crate::progress::line(format!(
                    "waiting for another composeops run on project {project} to finish…"
                ));
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The lock if free now, `None` if another process holds it.
    pub fn try_acquire(dir: &Path, project: &str) -> Result<Option<ProjectLock>> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory {} (set --state-dir)",
                dir.display()
            )
        })?;
        let path = dir.join(format!("{project}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ProjectLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Where a recreate stands; recovery finishes `Committed` entries and undoes all others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// About to create the new container under `temp_name`.
    Creating,
    /// New container exists; about to stop the old one, rename it aside and start the new one.
    Swapping,
    /// New container started under the final name; waiting for it to be ready.
    Waiting,
    /// New container is ready; about to remove the old one.
    Committed,
    /// New container failed; putting the old one back.
    RollingBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub service: String,
    pub final_name: String,
    pub temp_name: String,
    pub aside_name: String,
    pub old_id: Option<String>,
    pub new_id: Option<String>,
    pub phase: Phase,
}

/// `<state>/<project>.journal`.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(dir: &Path, project: &str) -> Journal {
        Journal {
            path: dir.join(format!("{project}.journal")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry left by an interrupted run, if any.
    pub fn read(&self) -> Result<Option<Entry>> {
        match std::fs::read(&self.path) {
            Ok(b) if b.is_empty() => Ok(None),
            Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                format!(
                    "corrupt journal {}: inspect it, then delete it",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read journal {}", self.path.display()))
            }
        }
    }

    /// Durably records `entry` (write to a temporary file, fsync, rename, fsync the directory).
    pub fn write(&self, entry: &Entry) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("journal.tmp");
        {
            let mut f =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec_pretty(entry)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Removes the entry once the recreate is finished or undone.
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", self.path.display()))
            }
        }
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trip_and_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path(), "p");
        assert_eq!(j.read().unwrap(), None);
        let e = Entry {
            service: "web".into(),
            final_name: "p-web-1".into(),
            temp_name: "p-web-1-composeops-new".into(),
            aside_name: "p-web-1-composeops-old".into(),
            old_id: Some("abc".into()),
            new_id: None,
            phase: Phase::Creating,
        };
        j.write(&e).unwrap();
        assert_eq!(j.read().unwrap(), Some(e));
        j.clear().unwrap();
        assert_eq!(j.read().unwrap(), None);
        let l = ProjectLock::try_acquire(dir.path(), "p").unwrap();
        assert!(l.is_some());
        assert!(ProjectLock::try_acquire(dir.path(), "p").unwrap().is_none());
        drop(l);
        assert!(ProjectLock::try_acquire(dir.path(), "p").unwrap().is_some());
    }
}
