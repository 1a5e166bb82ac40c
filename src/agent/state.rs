//! The state directory: the single-instance lock and, per project, the desired state whose
//! apply was rolled back (so the agent never loops rollback -> redeploy -> rollback).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Holds `<state-dir>/agent.instance.lock` (a name no project lock can take: project names have no dot) locked for the life of the process; the OS releases it when
/// the process ends, however it ends, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

impl InstanceLock {
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock> {
        std::fs::create_dir_all(state_dir).with_context(|| {
            format!(
                "cannot create state dir {} (set --state-dir to a writable directory)",
                state_dir.display()
            )
        })?;
        let path = state_dir.join("agent.instance.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                bail!(
                    "another composeops agent is already running on state dir {}{} \
                     (lock file {} is held); stop it first, or give this one its own --state-dir",
                    state_dir.display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(InstanceLock { _file: file, path })
    }
}

/// A desired state whose apply was rolled back, or that the gate refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedDesired {
    /// Fingerprint of revision + loaded project + resolved digests.
    pub fingerprint: String,
    pub revision: Option<String>,
    /// RFC 3339 time of the rollback.
    pub at: String,
    pub reason: String,
}

/// What the agent remembers about one project across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectMemory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedDesired>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
}

/// `<state-dir>/projects/<id>.json`, written atomically (temp file + rename).
#[derive(Debug, Clone)]
pub struct Memory {
    dir: PathBuf,
}

impl Memory {
    pub fn new(state_dir: &Path) -> Result<Memory> {
        let dir = state_dir.join("projects");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Memory { dir })
    }

    fn file(&self, id: &str) -> PathBuf {
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// A missing or unreadable file is an empty memory (logged): forgetting a failure costs
    /// one more attempt, refusing to start would cost the whole host.
    pub fn load(&self, id: &str) -> ProjectMemory {
        let f = self.file(id);
        match std::fs::read_to_string(&f) {
            Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
                tracing::warn!(file = %f.display(), error = %e, "ignoring unreadable project state");
                ProjectMemory::default()
            }),
            Err(_) => ProjectMemory::default(),
        }
    }

    pub fn save(&self, id: &str, m: &ProjectMemory) -> Result<()> {
        let f = self.file(id);
        let tmp = f.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(m)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &f).with_context(|| format!("cannot write {}", f.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = InstanceLock::acquire(d.path()).unwrap();
        let e = InstanceLock::acquire(d.path()).unwrap_err().to_string();
        assert!(e.contains("another composeops agent"), "{e}");
        drop(a);
        InstanceLock::acquire(d.path()).unwrap();
    }

    #[test]
    fn memory_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let m = Memory::new(d.path()).unwrap();
        assert_eq!(m.load("web"), ProjectMemory::default());
        let pm = ProjectMemory {
            failed: Some(FailedDesired {
                fingerprint: "abc".into(),
                revision: Some("r1".into()),
                at: "now".into(),
                reason: "unhealthy".into(),
            }),
            applied_revision: None,
        };
        m.save("web/x", &pm).unwrap();
        assert_eq!(m.load("web/x"), pm);
    }
}
