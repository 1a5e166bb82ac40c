//! Unit tests of deciding (recreate, rollback and recovery steps) and of doing them on the
//! in-memory [`Fake`], with a crash at every engine call of a recreate. The end-to-end proof
//! on the real engine is in tests/apply_e2e.rs (`random_sigkill_during_apply_is_recovered`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::fake::{self, Fake, NET};
use super::ops::{ContainerInfo, ContainerOps};
use super::recover::recover_with;
use super::recreate::{self, Failure};
use super::report::Outcome;
use super::rollback::{self, View};
use super::step::lines;
use super::{Applier, ApplyOptions};
use crate::journal::{Entry, Journal, Phase};
use crate::observe::Observed;
use crate::plan::{Desired, ReplicaAction, ReplicaPlan};
use crate::spec::Spec;
use crate::update::UpdateOrder;

const FINAL: &str = "p-web-1";
const TEMP: &str = "p-web-1-composeops-new";
const ASIDE: &str = "p-web-1-composeops-old";
const FAILED: &str = "p-web-1-composeops-failed";

fn old_id() -> String {
    "a".repeat(64)
}

fn new_id() -> String {
    "b".repeat(64)
}

fn entry(phase: Phase, new_recorded: bool) -> Entry {
    let mut e = recreate::entry("web", FINAL, &old_id());
    e.phase = phase;
    e.new_id = new_recorded.then(new_id);
    if phase == Phase::Draining {
        e.old_networks = [(NET.to_string(), vec!["web".to_string()])].into();
    }
    e
}

/// Where a container of the journal entry is, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    Gone,
    Final(bool),
    Temp(bool),
    Aside(bool),
    Failed(bool),
}

impl At {
    fn place(self) -> Option<(&'static str, bool)> {
        match self {
            At::Gone => None,
            At::Final(r) => Some((FINAL, r)),
            At::Temp(r) => Some((TEMP, r)),
            At::Aside(r) => Some((ASIDE, r)),
            At::Failed(r) => Some((FAILED, r)),
        }
    }
}

fn container(id: String, at: At) -> Option<ContainerInfo> {
    let (name, running) = at.place()?;
    Some(ContainerInfo {
        id,
        name: name.into(),
        running,
        status: if running { "running" } else { "exited" }.into(),
        ..Default::default()
    })
}

/// The view `View::read` would build for these two containers.
fn view(e: &Entry, old: At, new: At) -> View {
    let old = container(old_id(), old);
    let new = container(new_id(), new);
    let named = |n: &str| {
        [&old, &new]
            .into_iter()
            .flatten()
            .find(|c| c.name == n)
            .cloned()
    };
    View {
        new: match e.new_id {
            Some(_) => new.clone(),
            None => named(TEMP),
        },
        at_temp: named(TEMP),
        at_final: named(FINAL),
        old,
    }
}

#[test]
fn recovery_steps_for_each_phase_and_engine_state() {
    use At::*;
    use Phase::*;
    let (o, n) = ("aaaaaaaaaaaa", "bbbbbbbbbbbb");
    let back = |pre: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
        v.push(format!("rename {o} -> {FINAL}"));
        v.push(format!("start {o}"));
        v
    };
    #[rustfmt::skip]
    let table: Vec<(Phase, bool, At, At, Vec<String>)> = vec![
        // Killed before or during create: the old container never stopped.
        (Creating, false, Final(true), Gone, vec![]),
        (Creating, false, Final(true), Temp(false), vec![format!("remove {n}")]),
        (Creating, false, Gone, Temp(false), vec![format!("rename {n} -> {FINAL}"), format!("start {n}")]),
        // Killed during the swap: every point between stop, rename aside, rename, start.
        (Swapping, true, Final(true), Temp(false), vec![format!("remove {n}")]),
        (Swapping, true, Final(false), Temp(false), vec![format!("remove {n}"), format!("start {o}")]),
        (Swapping, true, Aside(false), Temp(false), back(&[&format!("remove {n}")])),
        (Swapping, true, Aside(false), Final(false), back(&[&format!("remove {n}")])),
        (Swapping, true, Aside(false), Gone, back(&[])),
        // Killed while waiting for the new container: undo.
        (Waiting, true, Aside(false), Final(true), back(&[&format!("remove {n}")])),
        (Waiting, true, Aside(false), Final(false), back(&[&format!("remove {n}")])),
        (Waiting, true, Gone, Final(true), vec![]),
        (Waiting, true, Gone, Final(false), vec![format!("start {n}")]),
        // Killed during a rollback: finish it (the new container goes).
        (RollingBack, true, Aside(false), Final(false), back(&[&format!("remove {n}")])),
        (RollingBack, true, Aside(false), Failed(false), back(&[&format!("remove {n}")])),
        (RollingBack, true, Final(false), Failed(false), vec![format!("remove {n}"), format!("start {o}")]),
        (RollingBack, true, Final(true), Gone, vec![]),
        // Committed: the old container goes, the new one stays.
        (Committed, true, Aside(false), Final(true), vec![format!("remove {o}")]),
        (Committed, true, Gone, Final(true), vec![]),
        (Committed, true, Gone, Final(false), vec![format!("start {n}")]),
        // ... unless the new one vanished: the old one is better than nothing.
        (Committed, true, Aside(false), Gone, back(&[])),
        // Start-first, killed while the new container starts beside the old one: the old one
        // was never touched; the new one goes.
        (Starting, true, Final(true), Temp(true), vec![format!("remove {n}")]),
        (Starting, true, Final(true), Temp(false), vec![format!("remove {n}")]),
        (Starting, true, Final(true), Gone, vec![]),
        // Start-first, killed while the old one drains: finish (the new one takes the name).
        (Draining, true, Final(true), Temp(true), vec![format!("remove {o}"), format!("rename {n} -> {FINAL}")]),
        (Draining, true, Final(false), Temp(true), vec![format!("remove {o}"), format!("rename {n} -> {FINAL}")]),
        (Draining, true, Gone, Temp(true), vec![format!("rename {n} -> {FINAL}")]),
        (Draining, true, Gone, Final(true), vec![]),
        // ... unless the new one vanished: the old one runs again, back on its networks.
        (Draining, true, Final(true), Gone, vec![format!("connect {o} to {NET} as web")]),
        (Draining, true, Final(false), Gone, vec![format!("start {o}"), format!("connect {o} to {NET} as web")]),
    ];
    for (phase, recorded, old, new, want) in table {
        let e = entry(phase, recorded);
        let got = lines(&rollback::recovery(&e, &view(&e, old, new)));
        assert_eq!(got, want, "{phase:?}, old {old:?}, new {new:?}");
    }
}

/// Every phase x every place of the old and of the new container: recovery on the fake leaves
/// exactly one container, running under the final name: the new one for a committed recreate
/// (when it is there), else the old one. Nothing is left under a transitional name.
#[tokio::test]
async fn recovery_always_leaves_one_running_container_under_the_final_name() {
    use At::*;
    let places = [
        Gone,
        Final(true),
        Final(false),
        Temp(true),
        Temp(false),
        Aside(true),
        Aside(false),
        Failed(false),
    ];
    let mut cases = 0;
    for phase in [
        Phase::Creating,
        Phase::Swapping,
        Phase::Waiting,
        Phase::Committed,
        Phase::RollingBack,
        Phase::Starting,
        Phase::Draining,
        Phase::Kept,
    ] {
        for old in places {
            for new in places {
                let same_place = old.place().map(|p| p.0) == new.place().map(|p| p.0);
                if old == Gone || same_place && new != Gone {
                    continue;
                }
                for recorded in [true, false] {
                    // Without a recorded id the new container can only be under the temp name.
                    if !recorded && (phase != Phase::Creating || !matches!(new, Gone | Temp(_))) {
                        continue;
                    }
                    check_recovery(phase, recorded, old, new).await;
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 100, "{cases} cases");
}

async fn check_recovery(phase: Phase, recorded: bool, old: At, new: At) {
    let what = format!("{phase:?}, new id recorded: {recorded}, old {old:?}, new {new:?}");
    let fake = Fake::default();
    let (oname, orun) = old.place().unwrap();
    let old_id = fake.add(oname, orun);
    let new_id = new.place().map(|(n, r)| fake.add(n, r));
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path(), "p");
    let mut e = recreate::entry("web", FINAL, &old_id);
    e.phase = phase;
    // A recorded id of a container that is gone since.
    e.new_id = recorded.then(|| new_id.clone().unwrap_or_else(|| fake::id(0xdead)));
    if phase == Phase::Draining {
        // The drain took the old container off its network.
        e.old_networks = [(NET.to_string(), vec!["web".to_string()])].into();
        fake.disconnect(NET, &old_id).await.unwrap();
    }
    journal.write(&e).unwrap();
    let recovered = recover_with(&fake, &journal).await;
    assert!(
        recovered.unwrap_or_else(|e| panic!("{what}: {e:#}")),
        "{what}"
    );
    assert_eq!(journal.entries().unwrap(), [], "{what}");
    let committed = matches!(phase, Phase::Committed | Phase::Draining | Phase::Kept);
    let keep_new = committed && new_id.is_some();
    let want = if keep_new { new_id.unwrap() } else { old_id };
    assert_one_running(&fake, &want, &what);
    if !keep_new {
        let cs = fake.containers();
        assert!(cs[0].networks.contains_key(NET), "{what}: {cs:#?}");
    }
}

fn assert_one_running(fake: &Fake, want_id: &str, what: &str) {
    let cs = fake.containers();
    assert_eq!(cs.len(), 1, "{what}: {cs:#?}");
    assert_eq!(cs[0].id, want_id, "{what}: {cs:#?}");
    assert_eq!(cs[0].name, FINAL, "{what}");
    assert!(cs[0].running, "{what}");
}

#[test]
fn recreate_steps_journal_before_each_destructive_step() {
    let e = recreate::entry("web", FINAL, &old_id());
    let o = "aaaaaaaaaaaa";
    let want = [
        format!("remove {FAILED}"),
        "journal creating".into(),
        format!("create {TEMP}"),
        "journal swapping".into(),
        format!("stop {o} (5s)"),
        format!("rename {o} -> {ASIDE}"),
        format!("rename {TEMP} -> {FINAL}"),
        "journal waiting".into(),
        format!("start {FINAL}"),
        format!("wait for {FINAL} to be ready"),
    ];
    let steps = recreate::steps(&e, Some(5), false, Duration::ZERO);
    assert_eq!(lines(steps.iter().map(|s| &s.0)), want);
    let commit = recreate::commit(&e);
    assert_eq!(
        lines(commit.iter().map(|s| &s.0)),
        ["journal committed", &format!("remove {o}"), "journal clear"]
    );
}

#[test]
fn rollback_keeps_the_failed_container_unless_told_to_remove_it() {
    let e = entry(Phase::Waiting, true);
    let v = view(&e, At::Aside(false), At::Final(false));
    let (o, n) = ("aaaaaaaaaaaa", "bbbbbbbbbbbb");
    let kept = recreate::rollback(&e, &v, false);
    assert_eq!(
        lines(kept.iter().map(|s| &s.0)),
        [
            "journal rolling-back".to_string(),
            format!("stop {n} (2s)"),
            format!("rename {n} -> {FAILED}"),
            format!("rename {o} -> {FINAL}"),
            format!("start {o}"),
            "journal clear".into(),
        ]
    );
    let removed = recreate::rollback(&e, &v, true);
    assert_eq!(
        lines(removed.iter().map(|s| &s.0)),
        [
            "journal rolling-back".to_string(),
            format!("remove {n}"),
            format!("rename {o} -> {FINAL}"),
            format!("start {o}"),
            "journal clear".into(),
        ]
    );
}

/// A project `p` with one service, the fake with its running replica, and a journal.
struct Rig {
    desired: Desired,
    fake: Fake,
    old_id: String,
    _dir: tempfile::TempDir,
    journal: Journal,
    order: UpdateOrder,
}

impl Rig {
    fn start_first() -> Rig {
        Rig {
            order: UpdateOrder::StartFirst,
            ..Rig::new()
        }
    }

    fn new() -> Rig {
        let project = crate::load::test_project("services:\n  web:\n    image: app:1\n");
        let fake = Fake::default();
        let old_id = fake.add(FINAL, true);
        let dir = tempfile::tempdir().unwrap();
        Rig {
            desired: Desired {
                project,
                images: BTreeMap::new(),
                run_from: BTreeMap::new(),
                files: BTreeMap::new(),
            },
            fake,
            old_id,
            journal: Journal::new(dir.path(), "p"),
            _dir: dir,
            order: UpdateOrder::StopFirst,
        }
    }

    fn applier(&self, cleanup_failed: bool) -> Applier<'_, Fake> {
        Applier {
            engine: &self.fake,
            desired: &self.desired,
            journal: &self.journal,
            opts: ApplyOptions {
                wait_timeout: Some(Duration::from_secs(5)),
                cleanup_failed,
                extra_labels: Default::default(),
                gate: None,
            },
        }
    }

    /// Recreates the replica; `None` when the fake crashed (the run was "killed").
    async fn recreate(&self, cleanup_failed: bool) -> Option<Result<Outcome, Failure>> {
        self.recreate_with(cleanup_failed, false).await
    }

    /// [`Rig::recreate`], keeping the old container for a rollback with `keep_old`.
    async fn recreate_with(
        &self,
        cleanup_failed: bool,
        keep_old: bool,
    ) -> Option<Result<Outcome, Failure>> {
        let r = ReplicaPlan {
            number: 1,
            name: FINAL.into(),
            action: ReplicaAction::Recreate,
            container_id: Some(self.old_id.clone()),
            reasons: vec!["changed: environment".into()],
        };
        let spec = Spec::from_service(&self.desired.project, "web");
        let a = self.applier(cleanup_failed);
        let observed = Observed::default();
        let how = crate::update::Rollout {
            order: self.order,
            ..Default::default()
        };
        let run = a.recreate_replica("web", &spec, &r, &observed, &how, keep_old);
        tokio::select! {
            out = run => Some(out),
            () = self.fake.crashed() => None,
        }
    }
}

#[tokio::test]
async fn recreate_replaces_the_container_and_clears_the_journal() {
    let rig = Rig::new();
    let out = rig.recreate(false).await.expect("no crash");
    assert_eq!(out.unwrap(), Outcome::Applied);
    let cs = rig.fake.containers();
    assert_eq!(cs.len(), 1, "{cs:#?}");
    assert_ne!(cs[0].id, rig.old_id);
    assert!(cs[0].running && cs[0].name == FINAL);
    assert_eq!(rig.journal.entries().unwrap(), []);
}

#[tokio::test]
async fn failed_new_container_is_rolled_back_and_kept_or_removed() {
    for cleanup in [false, true] {
        let rig = Rig::new();
        rig.fake.new_containers_fail();
        let out = rig.recreate(cleanup).await.expect("no crash");
        let (o, nr) = out.unwrap_err();
        assert_eq!(o, Outcome::RolledBack, "{}", nr.message);
        assert_eq!(nr.message, "exited with code 1");
        assert_eq!(nr.logs, ["fake app: exiting with 1"]);
        assert_eq!(rig.journal.entries().unwrap(), []);
        let cs = rig.fake.containers();
        let old = cs.iter().find(|c| c.id == rig.old_id).unwrap();
        assert!(old.running && old.name == FINAL, "{cs:#?}");
        let failed: Vec<_> = cs.iter().filter(|c| c.id != rig.old_id).collect();
        if cleanup {
            assert!(failed.is_empty(), "{cs:#?}");
        } else {
            assert_eq!(failed.len(), 1, "{cs:#?}");
            assert!(failed[0].name == FAILED && !failed[0].running);
        }
    }
}

/// Kills the recreate at each engine call in turn (a successful one, then one that rolls
/// back), then recovers: one running container under the final name, the new one exactly when
/// the journal said committed.
#[tokio::test]
async fn crash_at_every_call_of_a_recreate_is_recovered() {
    for keep_old in [false, true] {
        crash_at_every_call(keep_old).await;
    }
}

/// [`crash_at_every_call_of_a_recreate_is_recovered`], the old container kept for a rollback
/// (`failure_action: rollback`) with `keep_old`.
async fn crash_at_every_call(keep_old: bool) {
    for (order, new_fails) in [
        (UpdateOrder::StopFirst, false),
        (UpdateOrder::StopFirst, true),
        (UpdateOrder::StartFirst, false),
        (UpdateOrder::StartFirst, true),
    ] {
        let mut crashes = 0;
        for n in 1.. {
            let rig = Rig {
                order,
                ..Rig::new()
            };
            if new_fails {
                rig.fake.new_containers_fail();
            }
            rig.fake.crash_at(n);
            if rig.recreate_with(false, keep_old).await.is_some() {
                break; // ran to the end: every call was a crash point
            }
            crashes += 1;
            rig.fake.no_crash();
            let phase = rig.journal.entries().unwrap().first().map(|e| e.phase);
            let what = format!(
                "{order:?}, new fails: {new_fails}, keep old: {keep_old}, crash at call {n}, \
                 journal {phase:?}"
            );
            recover_with(&rig.fake, &rig.journal).await.unwrap();
            assert_eq!(rig.journal.entries().unwrap(), [], "{what}");
            let cs = rig.fake.containers();
            let committed = matches!(
                phase,
                Some(Phase::Committed | Phase::Draining | Phase::Kept)
            );
            let want = if committed {
                let new = cs.iter().find(|c| c.id != rig.old_id);
                new.map(|c| c.id.clone()).unwrap_or_default()
            } else {
                rig.old_id.clone()
            };
            assert_one_running(&rig.fake, &want, &what);
            let cs = rig.fake.containers();
            assert!(cs[0].networks.contains_key(NET), "{what}: {cs:#?}");
            if order == UpdateOrder::StartFirst && phase != Some(Phase::Draining) {
                assert!(
                    !rig.fake.changed(&rig.old_id),
                    "{what}: the old one was touched"
                );
            }
        }
        assert!(crashes >= 8, "only {crashes} crash points");
    }
}

#[test]
fn start_first_steps_never_touch_the_old_container_before_it_is_ready() {
    let mut e = recreate::entry("web", FINAL, &old_id());
    let o = "aaaaaaaaaaaa";
    let serving = [(NET.to_string(), vec!["web".to_string(), FINAL.to_string()])];
    let steps = recreate::start_first_steps(&e, &serving, false, Duration::ZERO);
    assert_eq!(
        lines(steps.iter().map(|s| &s.0)),
        [
            format!("remove {FAILED}"),
            "journal creating".into(),
            format!("create {TEMP}"),
            "journal starting".into(),
            format!("start {TEMP}"),
            format!("wait for {TEMP} to be ready"),
            format!("disconnect {TEMP} from {NET}"),
            format!("connect {TEMP} to {NET} as web,{FINAL}"),
            "settle 10ms".into(),
        ]
    );
    e.old_networks = [
        (NET.to_string(), vec!["web".to_string()]),
        ("p_back".to_string(), vec!["web".to_string()]),
    ]
    .into();
    let commit = recreate::start_first_commit(&e, Some(7));
    assert_eq!(
        lines(commit.iter().map(|s| &s.0)),
        [
            "journal draining".to_string(),
            format!("disconnect {o} from p_back"),
            format!("disconnect {o} from {NET}"),
            "drain 10ms".into(),
            format!("stop {o} (7s)"),
            format!("remove {o}"),
            format!("rename {TEMP} -> {FINAL}"),
            "journal clear".into(),
        ]
    );
}

#[tokio::test]
async fn start_first_replaces_the_container_on_its_networks() {
    let rig = Rig::start_first();
    let out = rig.recreate(false).await.expect("no crash");
    assert_eq!(out.unwrap(), Outcome::Applied);
    let cs = rig.fake.containers();
    assert_eq!(cs.len(), 1, "{cs:#?}");
    assert_ne!(cs[0].id, rig.old_id);
    assert!(cs[0].running && cs[0].name == FINAL, "{cs:#?}");
    // Same network, same aliases: the service name and the final container name.
    assert_eq!(cs[0].networks[NET], ["web", FINAL], "{cs:#?}");
    assert_eq!(rig.journal.entries().unwrap(), []);
}

#[tokio::test]
async fn start_first_failure_never_touches_the_old_container() {
    for cleanup in [false, true] {
        let rig = Rig::start_first();
        rig.fake.new_containers_fail();
        let (o, nr) = rig.recreate(cleanup).await.expect("no crash").unwrap_err();
        assert_eq!(o, Outcome::RolledBack, "{}", nr.message);
        assert!(
            !rig.fake.changed(&rig.old_id),
            "the old container was touched"
        );
        let cs = rig.fake.containers();
        let old = cs.iter().find(|c| c.id == rig.old_id).unwrap();
        assert!(old.running && old.name == FINAL && old.networks.contains_key(NET));
        let failed: Vec<_> = cs.iter().filter(|c| c.id != rig.old_id).collect();
        assert_eq!(failed.len(), usize::from(!cleanup), "{cs:#?}");
        assert_eq!(rig.journal.entries().unwrap(), []);
    }
}

#[test]
fn fake_ids_are_engine_shaped() {
    assert_eq!(fake::id(0xb01).len(), 64);
    assert_eq!(super::step::short(&fake::id(0xb01)), "000000000b01");
}

impl Rig {
    /// The service mounts a `content:` config, written into each new container.
    fn with_files(mut self) -> Rig {
        let yaml = "services:\n  web:\n    image: app:1\n    configs: [c]\nconfigs:\n  c:\n    content: hello\n";
        self.desired.project = crate::load::test_project(yaml);
        self.desired.files = crate::configs::resolve(&self.desired.project).unwrap();
        self
    }
}

#[tokio::test]
async fn files_are_written_into_the_new_container_before_it_starts() {
    for rig in [Rig::new().with_files(), Rig::start_first().with_files()] {
        let out = rig.recreate(false).await.expect("no crash");
        assert_eq!(out.unwrap(), Outcome::Applied);
        let cs = rig.fake.containers();
        assert_eq!(cs.len(), 1, "{cs:#?}");
        let ups = rig.fake.uploads();
        assert_eq!(ups.len(), 1);
        assert_eq!((ups[0].0.as_str(), ups[0].2), (cs[0].id.as_str(), false));
    }
}

/// An upload that fails leaves no new container and the old one as it was, in both orders.
#[tokio::test]
async fn failed_upload_removes_the_new_container_and_keeps_the_old_one() {
    for rig in [Rig::new().with_files(), Rig::start_first().with_files()] {
        rig.fake.uploads_fail();
        let (o, nr) = rig.recreate(false).await.expect("no crash").unwrap_err();
        assert_eq!(o, Outcome::RolledBack);
        assert!(
            nr.message.contains("cannot write /c into"),
            "{}",
            nr.message
        );
        assert!(!nr.message.contains("hello"), "{}", nr.message);
        assert_eq!(rig.journal.entries().unwrap(), []);
        assert_one_running(&rig.fake, &rig.old_id, "after a failed upload");
        assert!(!rig.fake.changed(&rig.old_id), "the old one was touched");
    }
}

/// A kill at the upload (or any other call) of a recreate with files is recovered.
#[tokio::test]
async fn crash_at_every_call_of_a_recreate_with_files_is_recovered() {
    for order in [UpdateOrder::StopFirst, UpdateOrder::StartFirst] {
        for n in 1.. {
            let rig = Rig {
                order,
                ..Rig::new()
            }
            .with_files();
            rig.fake.crash_at(n);
            if rig.recreate(false).await.is_some() {
                break;
            }
            rig.fake.no_crash();
            let phase = rig.journal.entries().unwrap().first().map(|e| e.phase);
            recover_with(&rig.fake, &rig.journal).await.unwrap();
            let cs = rig.fake.containers();
            let want = if matches!(phase, Some(Phase::Committed | Phase::Draining)) {
                cs.iter().find(|c| c.id != rig.old_id).unwrap().id.clone()
            } else {
                rig.old_id.clone()
            };
            assert_one_running(&rig.fake, &want, &format!("{order:?}, crash at {n}"));
        }
    }
}

impl Rig {
    /// The service has `x-composeops.verify: <script>` (run with `sh -c`, in the rig's
    /// directory).
    fn with_verify(mut self, script: &str) -> Rig {
        self.desired.project.working_dir = self._dir.path().to_path_buf();
        let web = self.desired.project.services.get_mut("web").unwrap();
        web.verify = Some(crate::verify::Verify {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_secs(5),
        });
        self
    }
}

#[test]
fn the_check_runs_once_the_new_container_is_ready_before_anything_else() {
    let e = recreate::entry("web", FINAL, &old_id());
    let steps = recreate::steps(&e, Some(5), true, Duration::ZERO);
    let tail: Vec<String> = lines(steps.iter().map(|s| &s.0)).split_off(steps.len() - 3);
    assert_eq!(
        tail,
        [
            format!("start {FINAL}"),
            format!("wait for {FINAL} to be ready"),
            format!("verify {FINAL}"),
        ]
    );
    // Start-first: verified before it takes its aliases, the old one untouched until then.
    let serving = [(NET.to_string(), vec!["web".to_string(), FINAL.to_string()])];
    let steps = recreate::start_first_steps(&e, &serving, true, Duration::ZERO);
    let got = lines(steps.iter().map(|s| &s.0));
    let at = got
        .iter()
        .position(|l| *l == format!("verify {TEMP}"))
        .unwrap();
    assert_eq!(got[at - 1], format!("wait for {TEMP} to be ready"));
    assert_eq!(got[at + 1], format!("disconnect {TEMP} from {NET}"));
}

#[tokio::test]
async fn a_passing_check_lets_the_update_through_and_sees_the_new_container() {
    for rig in [Rig::new(), Rig::start_first()] {
        let seen = rig._dir.path().join("seen");
        let rig = rig.with_verify(&format!(
            "echo \"$COMPOSEOPS_PROJECT $COMPOSEOPS_SERVICE $COMPOSEOPS_CONTAINER_ID \
             $COMPOSEOPS_CONTAINER_NAME\" > '{}'",
            seen.display()
        ));
        let out = rig.recreate(false).await.expect("no crash");
        assert_eq!(out.unwrap(), Outcome::Applied);
        let cs = rig.fake.containers();
        assert_eq!(cs.len(), 1, "{cs:#?}");
        let seen = std::fs::read_to_string(&seen).unwrap();
        // The name it had while checked: the temporary one, start-first.
        let name = match rig.order {
            UpdateOrder::StopFirst => FINAL,
            UpdateOrder::StartFirst => TEMP,
        };
        assert_eq!(seen.trim(), format!("p web {} {name}", cs[0].id));
    }
}

#[tokio::test]
async fn a_failed_check_rolls_back_with_its_output() {
    for rig in [Rig::new(), Rig::start_first()] {
        let order = rig.order;
        let rig = rig.with_verify("echo checking; echo 'GET / 503' >&2; exit 7");
        let (o, nr) = rig.recreate(false).await.expect("no crash").unwrap_err();
        assert_eq!(o, Outcome::RolledBack, "{}", nr.message);
        assert_eq!(nr.message, "verify failed: exit 7: checking\nGET / 503");
        // With the container's own last logs, as a failed health wait.
        assert_eq!(nr.logs, ["fake app: exiting with 1"]);
        assert_eq!(rig.journal.entries().unwrap(), []);
        let cs = rig.fake.containers();
        let old = cs.iter().find(|c| c.id == rig.old_id).unwrap();
        assert!(old.running && old.name == FINAL, "{order:?}: {cs:#?}");
        let failed: Vec<_> = cs.iter().filter(|c| c.id != rig.old_id).collect();
        assert_eq!(failed.len(), 1, "{cs:#?}");
        assert!(failed[0].name == FAILED && !failed[0].running, "{cs:#?}");
        if order == UpdateOrder::StartFirst {
            assert!(!rig.fake.changed(&rig.old_id), "the old one was touched");
        }
    }
}

#[tokio::test]
async fn a_failed_check_of_a_new_service_fails_it() {
    let rig = Rig::new().with_verify("exit 1");
    let r = ReplicaPlan {
        number: 2,
        name: "p-web-2".into(),
        action: ReplicaAction::Create,
        container_id: None,
        reasons: vec![],
    };
    let spec = Spec::from_service(&rig.desired.project, "web");
    let a = rig.applier(false);
    let (o, nr) = a.create_replica("web", &spec, &r).await.unwrap_err();
    assert_eq!(
        (o, nr.message.as_str()),
        (Outcome::Failed, "verify failed: exit 1 (no output)")
    );
    let cs = rig.fake.containers();
    let new = cs.iter().find(|c| c.name == "p-web-2").unwrap();
    assert!(
        !new.running,
        "a failed new container is left stopped: {cs:#?}"
    );
}

/// `failure_action: rollback` puts a kept replica back: stop-first, the new container goes
/// before the old one starts under the final name; start-first, the old one is started and
/// ready (and serving again) before the new one goes.
#[test]
fn revert_steps_put_the_kept_old_container_back_in_either_order() {
    let (o, n) = (&old_id()[..12], &new_id()[..12]);
    let mut e = entry(Phase::Kept, true);
    let v = view(&e, At::Aside(false), At::Final(true));
    let monitor = Duration::ZERO;
    let got = lines(&rollback::revert(
        &e,
        &v,
        UpdateOrder::StopFirst,
        Some(5),
        monitor,
    ));
    let want = [
        "journal rolling-back".to_string(),
        format!("stop {n} (5s)"),
        format!("remove {n}"),
        format!("rename {o} -> {FINAL}"),
        format!("start {o}"),
        format!("wait for {FINAL} to be ready"),
        "journal clear".into(),
    ];
    assert_eq!(got, want);
    // Start-first took the old container off its network when it committed.
    e.old_networks = [(NET.to_string(), vec!["web".to_string()])].into();
    let monitor = Duration::from_secs(3);
    let got = lines(&rollback::revert(
        &e,
        &v,
        UpdateOrder::StartFirst,
        None,
        monitor,
    ));
    let want = [
        "journal rolling-back".to_string(),
        format!("start {o}"),
        format!("wait for {o} to be ready"),
        format!("monitor {o} for 3s"),
        format!("connect {o} to {NET} as web"),
        "settle 10ms".into(),
        format!("stop {n} (10s)"),
        format!("remove {n}"),
        format!("rename {o} -> {FINAL}"),
        "journal clear".into(),
    ];
    assert_eq!(got, want);
    // Nothing to put back without the old container.
    let gone = view(&e, At::Gone, At::Final(true));
    assert!(rollback::revert(&e, &gone, UpdateOrder::StopFirst, None, monitor).is_empty());
}

/// On the fake, in both orders: a replaced replica keeps its old container aside (journal
/// `kept`), and putting it back leaves the old container running under the final name, the
/// new one gone, and the journal empty.
#[tokio::test]
async fn a_kept_replica_is_put_back_on_its_old_container() {
    for order in [UpdateOrder::StopFirst, UpdateOrder::StartFirst] {
        let rig = Rig {
            order,
            ..Rig::new()
        };
        let out = rig.recreate_with(false, true).await.expect("no crash");
        assert_eq!(out.unwrap(), Outcome::Applied, "{order:?}");
        let kept = rig.journal.entries().unwrap();
        assert_eq!(kept.len(), 1, "{order:?}");
        assert_eq!(kept[0].phase, Phase::Kept, "{order:?}");
        let cs = rig.fake.containers();
        let old = cs.iter().find(|c| c.id == rig.old_id).unwrap();
        assert!(!old.running && old.name == ASIDE, "{order:?}: {cs:#?}");
        let spec = Spec::from_service(&rig.desired.project, "web");
        let how = crate::update::Rollout {
            order,
            ..Default::default()
        };
        let a = rig.applier(false);
        a.revert_one(&spec, &how, &kept[0]).await.unwrap();
        assert_eq!(rig.journal.entries().unwrap(), [], "{order:?}");
        assert_one_running(&rig.fake, &rig.old_id, &format!("{order:?}"));
        let cs = rig.fake.containers();
        assert!(cs[0].networks.contains_key(NET), "{order:?}: {cs:#?}");
    }
}
