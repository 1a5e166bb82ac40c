//! `journal`: the state directory, the per-project lock, and the write-ahead record of the
//! recreates in flight, so that a run killed at any instant is finished or undone by the next.
//!
//! apply recreates one batch of replicas at a time (`update_config.parallelism`, one by
//! default), so the journal holds an entry per replica in the batch, keyed by its final name,
//! and, under `failure_action: rollback`, one per replica already replaced whose old container
//! is kept until the service's rollout ends. It is written (and fsynced, with its directory)
//! before every destructive step.

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

/// The locks of one project, held until dropped:
/// - one per engine and project in a directory every user of the machine shares
///   ([`engine_lock_dir`]), so two runs with different state directories (the systemd agent's
///   `/var/lib/composeops` and an operator's own) never both change the project;
/// - one in the state directory, which guards its journal (two engines' runs may share a
///   state directory).
///
/// The engine lock file remembers the state directory of the last run that held it. A run
/// killed mid-update under another state directory left its journal there: the next holder
/// sees it in [`ProjectLock::other_journal`] and recovers it, rather than fighting its
/// transitional containers.
#[derive(Debug)]
pub struct ProjectLock {
    engine: File,
    _state: File,
    /// The journal of the previous holder, when it is in another state directory and still
    /// holds an entry.
    pub other_journal: Option<Journal>,
    /// This run's state directory, and whether the engine lock already names it (see
    /// [`ProjectLock::claim`]).
    here: PathBuf,
    claimed: bool,
}

/// Where the per-engine locks live: `/run/lock/composeops` (Debian's world-writable lock
/// directory) when there is one, else `<tmp>/composeops-locks`; `COMPOSEOPS_LOCK_DIR`
/// overrides both. Created world-writable with the sticky bit, as /tmp is, so root's agent and
/// a user's manual apply find each other's locks.
pub fn engine_lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COMPOSEOPS_LOCK_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        return run_lock.join("composeops");
    }
    std::env::temp_dir().join("composeops-locks")
}

/// `<project>@<12 hex of sha256(engine)>.lock`: one file per engine and project.
fn engine_lock_path(engine: &str, project: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(engine.as_bytes()));
    engine_lock_dir().join(format!("{project}@{}.lock", &h[..12]))
}

fn open_lock(path: &Path, shared: bool) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut o = OpenOptions::new();
    o.create(true).truncate(false).read(true).write(true);
    if shared {
        o.mode(0o666);
    }
    let file = o
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    // The umask may have narrowed the mode; other users must still be able to lock it. Only
    // changed when it is not already so: a mode change is an inode write at every run.
    let narrowed = |f: &File| f.metadata().is_ok_and(|m| m.mode() & 0o777 != 0o666);
    if shared && narrowed(&file) {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
    }
    Ok(file)
}

/// Locks `file` if free; `None` when another process holds it.
fn try_lock(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

impl ProjectLock {
    /// Waits up to `timeout` for the locks (another run of the same project holds them).
    /// `engine` names the engine (see `Engine::endpoint`).
    pub fn acquire(
        dir: &Path,
        engine: &str,
        project: &str,
        timeout: Duration,
    ) -> Result<ProjectLock> {
        let start = Instant::now();
        let mut told = false;
        loop {
            if let Some(l) = Self::try_acquire(dir, engine, project)? {
                return Ok(l);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "another composeops run holds the lock of project {project:?} ({} or {}); \
                     waited {:?}. Try again later or raise --lock-timeout.",
                    engine_lock_path(engine, project).display(),
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

    /// The locks if both are free now, `None` if another process holds either.
    pub fn try_acquire(dir: &Path, engine: &str, project: &str) -> Result<Option<ProjectLock>> {
        let Some(mut lock) = Self::try_acquire_unclaimed(dir, engine, project)? else {
            return Ok(None);
        };
        lock.claim()?;
        Ok(Some(lock))
    }

    /// Records this run's state directory in the engine lock, where the next holder looks for
    /// a journal to recover: once claimed, an interrupted run of this process is found from
    /// any state directory. Until then the record still names the previous holder's.
    pub fn claim(&mut self) -> Result<()> {
        use std::io::Seek;
        if self.claimed {
            return Ok(());
        }
        self.engine.set_len(0)?;
        self.engine.rewind()?;
        self.engine
            .write_all(self.here.as_os_str().as_encoded_bytes())?;
        self.claimed = true;
        Ok(())
    }

    /// [`ProjectLock::try_acquire`] without the [claim](ProjectLock::claim): for a lock taken on
    /// a guess of the project's name, which may be dropped unused.
    pub fn try_acquire_unclaimed(
        dir: &Path,
        engine: &str,
        project: &str,
    ) -> Result<Option<ProjectLock>> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory {} (set --state-dir)",
                dir.display()
            )
        })?;
        let shared_dir = engine_lock_dir();
        if !shared_dir.is_dir() {
            std::fs::create_dir_all(&shared_dir).with_context(|| {
                format!(
                    "cannot create the lock directory {} (set COMPOSEOPS_LOCK_DIR)",
                    shared_dir.display()
                )
            })?;
            let _ = std::fs::set_permissions(&shared_dir, std::fs::Permissions::from_mode(0o1777));
        }
        // Always the engine lock first, then the state directory's: one order, no deadlock.
        let engine_path = engine_lock_path(engine, project);
        let mut engine_file = open_lock(&engine_path, true)?;
        if !try_lock(&engine_file, &engine_path)? {
            return Ok(None);
        }
        let state_path = dir.join(format!("{project}.lock"));
        let state_file = open_lock(&state_path, false)?;
        if !try_lock(&state_file, &state_path)? {
            return Ok(None);
        }
        let mut previous = String::new();
        let _ = engine_file.read_to_string(&mut previous);
        let previous = PathBuf::from(previous.trim());
        let here = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let other_journal = (!previous.as_os_str().is_empty() && previous != here)
            .then(|| Journal::new(&previous, project))
            .filter(|j| j.path().exists());
        Ok(Some(ProjectLock {
            engine: engine_file,
            _state: state_file,
            other_journal,
            claimed: previous == here,
            here,
        }))
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
    /// Start-first: the new container exists under `temp_name`; it is started beside the old
    /// one, which keeps running untouched, and waited for.
    Starting,
    /// Start-first: the new container is ready; the old one is disconnected from its networks
    /// (`old_networks`), drained, stopped and removed, then the new one takes the final name.
    /// Recovery finishes this, as `Committed`.
    Draining,
    /// The new container serves under the final name; the old one is stopped under
    /// `aside_name` and kept until the service's rollout ends, so that `failure_action:
    /// rollback` can put it back. Recovery finishes this, as `Committed`.
    Kept,
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
    /// Start-first, from `Draining` on: the old container's networks and their aliases, so
    /// that it can be connected again if the new container vanishes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub old_networks: std::collections::BTreeMap<String, Vec<String>>,
}

/// `<state>/<project>.journal`: a JSON list of entries (a single entry, as older versions
/// wrote it, reads as a list of one).
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    /// Serialises the read-modify-write of concurrent recreates in this process.
    lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Journal {
    pub fn new(dir: &Path, project: &str) -> Journal {
        Journal {
            path: dir.join(format!("{project}.journal")),
            lock: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries left by an interrupted run, if any.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OnDisk {
            Many(Vec<Entry>),
            One(Box<Entry>),
        }
        match std::fs::read(&self.path) {
            Ok(b) if b.is_empty() => Ok(Vec::new()),
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(OnDisk::Many(v)) => Ok(v),
                Ok(OnDisk::One(e)) => Ok(vec![*e]),
                Err(e) => Err(e).with_context(|| {
                    format!(
                        "corrupt journal {}: inspect it, then delete it",
                        self.path.display()
                    )
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read journal {}", self.path.display()))
            }
        }
    }

    /// Durably records `entry`, replacing the one with its final name.
    pub fn write(&self, entry: &Entry) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.entries()?;
        match all.iter_mut().find(|e| e.final_name == entry.final_name) {
            Some(e) => *e = entry.clone(),
            None => all.push(entry.clone()),
        }
        self.store(&all)
    }

    /// Removes the entry of `final_name` once its recreate is finished or undone; the file
    /// goes with the last entry.
    pub fn clear(&self, final_name: &str) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.entries()?;
        all.retain(|e| e.final_name != final_name);
        if all.is_empty() {
            self.remove_file()
        } else {
            self.store(&all)
        }
    }

    /// Write to a temporary file, fsync, rename, fsync the directory.
    fn store(&self, all: &[Entry]) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("journal.tmp");
        {
            let mut f =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec_pretty(all)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn remove_file(&self) -> Result<()> {
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
        assert_eq!(j.entries().unwrap(), []);
        let e = Entry {
            service: "web".into(),
            final_name: "p-web-1".into(),
            temp_name: "p-web-1-composeops-new".into(),
            aside_name: "p-web-1-composeops-old".into(),
            old_id: Some("abc".into()),
            new_id: None,
            phase: Phase::Creating,
            old_networks: Default::default(),
        };
        j.write(&e).unwrap();
        assert_eq!(j.entries().unwrap(), std::slice::from_ref(&e));
        // A second replica's entry beside it; each is replaced and cleared by its final name.
        let e2 = Entry {
            final_name: "p-web-2".into(),
            ..e.clone()
        };
        j.write(&e2).unwrap();
        let e_waiting = Entry {
            phase: Phase::Waiting,
            ..e.clone()
        };
        j.write(&e_waiting).unwrap();
        assert_eq!(j.entries().unwrap(), [e_waiting, e2.clone()]);
        j.clear("p-web-1").unwrap();
        assert_eq!(j.entries().unwrap(), [e2]);
        j.clear("p-web-2").unwrap();
        assert_eq!(j.entries().unwrap(), []);
        assert!(!j.path().exists());
        // The single entry an older version wrote reads as a list of one.
        std::fs::write(j.path(), serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(j.entries().unwrap(), std::slice::from_ref(&e));
        j.clear("p-web-1").unwrap();
        let engine = format!("unix:///test/{}", dir.path().display());
        let l = ProjectLock::try_acquire(dir.path(), &engine, "p").unwrap();
        assert!(l.is_some());
        assert!(ProjectLock::try_acquire(dir.path(), &engine, "p")
            .unwrap()
            .is_none());
        // Another state directory, same engine and project: still held.
        let other = tempfile::tempdir().unwrap();
        assert!(ProjectLock::try_acquire(other.path(), &engine, "p")
            .unwrap()
            .is_none());
        drop(l);
        // The journal a killed holder left in its state directory is handed to the next one.
        j.write(&e).unwrap();
        let l = ProjectLock::try_acquire(other.path(), &engine, "p")
            .unwrap()
            .unwrap();
        assert_eq!(
            l.other_journal.as_ref().map(|j| j.path().to_path_buf()),
            Some(std::fs::canonicalize(dir.path()).unwrap().join("p.journal"))
        );
        drop(l);
        assert!(ProjectLock::try_acquire(dir.path(), &engine, "p")
            .unwrap()
            .is_some());
    }
}
