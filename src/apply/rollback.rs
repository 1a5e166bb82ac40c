//! Deciding how a recreate ends when it did not end by itself: put the old container back
//! (rollback, and recovery of every phase before `Committed`), or keep the new one (recovery
//! of a committed recreate). Both start from [`View`], what the engine reports about the
//! containers the journal entry names, so the in-process rollback and the recovery of a killed
//! run take the same, tested, decisions.

use std::time::Duration;

use anyhow::Result;

use super::ops::{ContainerInfo, ContainerOps};
use super::step::Step;
use crate::journal::{Entry, Phase};
use crate::update::UpdateOrder;

/// The engine's view of the containers a journal entry names.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct View {
    /// By the entry's `old_id`.
    pub old: Option<ContainerInfo>,
    /// By the entry's `new_id`, or by its temporary name when the id was not recorded yet.
    pub new: Option<ContainerInfo>,
    /// Whatever holds the temporary name.
    pub at_temp: Option<ContainerInfo>,
    /// Whatever holds the final name.
    pub at_final: Option<ContainerInfo>,
}

impl View {
    /// Inspects the containers `e` names (four requests at most).
    pub(crate) async fn read(ops: &impl ContainerOps, e: &Entry) -> Result<View> {
        let old = match &e.old_id {
            Some(id) => ops.inspect(id).await?,
            None => None,
        };
        let at_temp = ops.inspect(&e.temp_name).await?;
        let new = match &e.new_id {
            Some(id) => ops.inspect(id).await?,
            // Killed before the id was recorded: the new container, if any, has the temp name.
            None => at_temp.clone(),
        }
        .filter(|c| Some(&c.id) != e.old_id.as_ref());
        let at_final = ops.inspect(&e.final_name).await?;
        Ok(View {
            old,
            new,
            at_temp,
            at_final,
        })
    }
}

/// What happens to the new container when the old one is put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Removed (recovery, and `--cleanup-failed`).
    Remove,
    /// Stopped and kept under this name for inspection.
    KeepAs(String),
}

/// Recovery of a killed run: keep the new container only when the recreate was committed and
/// the new container is there, or when the old one is gone; otherwise undo.
pub(crate) fn recovery(e: &Entry, v: &View) -> Vec<Step> {
    let keep_new = match (&v.old, &v.new) {
        (None, _) => true,
        (Some(_), Some(_)) => {
            matches!(e.phase, Phase::Committed | Phase::Draining | Phase::Kept)
        }
        (Some(_), None) => false,
    };
    if keep_new {
        finish(e, v)
    } else {
        undo(e, v, &Failed::Remove)
    }
}

/// Puts the old container back under the final name, running, with its own id. Every other
/// container under the entry's names (or with its new id) is removed, except the new one with
/// [`Failed::KeepAs`]. Empty when there is no old container to put back.
pub(crate) fn undo(e: &Entry, v: &View, failed: &Failed) -> Vec<Step> {
    let Some(old) = &v.old else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for c in others(v, &[&old.id]) {
        let is_new = e.new_id.as_deref() == Some(c.id.as_str()) || v.new.as_ref() == Some(c);
        match failed {
            Failed::KeepAs(name) if is_new => {
                steps.push(Step::Stop {
                    container: c.id.clone(),
                    grace: 2,
                });
                if &c.name != name {
                    steps.push(Step::Rename {
                        container: c.id.clone(),
                        to: name.clone(),
                    });
                }
            }
            _ => steps.push(Step::Remove(c.id.clone())),
        }
    }
    if old.name != e.final_name {
        steps.push(Step::Rename {
            container: old.id.clone(),
            to: e.final_name.clone(),
        });
    }
    if !old.running {
        steps.push(Step::Start(old.id.clone()));
    }
    // Start-first: a drain took it off its networks.
    steps.extend(reconnect(e, old));
    steps
}

/// Connects `old` again to the networks a start-first drain took it off (`e.old_networks`),
/// with their aliases.
fn reconnect(e: &Entry, old: &ContainerInfo) -> Vec<Step> {
    e.old_networks
        .iter()
        .filter(|(network, _)| !old.networks.contains_key(*network))
        .map(|(network, aliases)| Step::Connect {
            container: old.id.clone(),
            network: network.clone(),
            aliases: aliases.clone(),
        })
        .collect()
}

/// Under `failure_action: rollback`, puts back the old container of a replica that was
/// replaced (journal `Kept`): its new container is healthy, so it is stopped within `grace`,
/// not killed. Stop-first: the new one goes, then the old one takes the final name, starts,
/// and must be ready (and stay up for `monitor`). Start-first: the old one starts under the
/// aside name beside the new one and must be ready before the new one goes. Recovery of a run
/// killed in the middle undoes (journal `RollingBack`), as for any rollback.
pub(crate) fn revert(
    e: &Entry,
    v: &View,
    order: UpdateOrder,
    grace: Option<i64>,
    monitor: Duration,
) -> Vec<Step> {
    let Some(old) = &v.old else {
        return Vec::new();
    };
    let grace = grace.unwrap_or(10);
    let new_ids: Vec<String> = others(v, &[&old.id]).iter().map(|c| c.id.clone()).collect();
    let stop_new = new_ids.iter().map(|id| Step::Stop {
        container: id.clone(),
        grace,
    });
    let mut steps = vec![Step::Journal(Phase::RollingBack)];
    let watch = |steps: &mut Vec<Step>, at: &str| {
        steps.push(Step::WaitReady(at.to_string()));
        if !monitor.is_zero() {
            steps.push(Step::Monitor {
                container: at.to_string(),
                period: monitor,
            });
        }
    };
    match order {
        UpdateOrder::StopFirst => {
            steps.extend(stop_new);
            steps.extend(undo(e, v, &Failed::Remove));
            watch(&mut steps, &e.final_name);
        }
        UpdateOrder::StartFirst => {
            if !old.running {
                steps.push(Step::Start(old.id.clone()));
            }
            watch(&mut steps, &old.id);
            // Serving again before the new one leaves.
            steps.extend(reconnect(e, old));
            if !e.old_networks.is_empty() {
                steps.push(Step::Settle);
            }
            steps.extend(stop_new);
            steps.extend(new_ids.iter().map(|id| Step::Remove(id.clone())));
            if old.name != e.final_name {
                steps.push(Step::Rename {
                    container: old.id.clone(),
                    to: e.final_name.clone(),
                });
            }
        }
    }
    steps.push(Step::ClearJournal);
    steps
}

/// Completes a committed recreate: the old container goes, the new one takes the final name
/// and runs.
pub(crate) fn finish(e: &Entry, v: &View) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(old) = &v.old {
        steps.push(Step::Remove(old.id.clone()));
    }
    let Some(new) = &v.new else {
        return steps;
    };
    let old_id = v.old.as_ref().map(|c| c.id.as_str()).unwrap_or_default();
    // Leftovers under our names block the rename; anything else is left alone.
    for c in others(v, &[&new.id, old_id]) {
        if c.name == e.temp_name || new.name != e.final_name {
            steps.push(Step::Remove(c.id.clone()));
        }
    }
    if new.name != e.final_name {
        steps.push(Step::Rename {
            container: new.id.clone(),
            to: e.final_name.clone(),
        });
    }
    if !new.running {
        steps.push(Step::Start(new.id.clone()));
    }
    steps
}

/// The containers of `v` (new, then whatever holds the temporary and the final name), each
/// once, except those with the ids in `except`.
fn others<'v>(v: &'v View, except: &[&str]) -> Vec<&'v ContainerInfo> {
    let mut seen: Vec<&ContainerInfo> = Vec::new();
    for c in [&v.new, &v.at_temp, &v.at_final].into_iter().flatten() {
        if !except.contains(&c.id.as_str()) && !seen.iter().any(|s| s.id == c.id) {
            seen.push(c);
        }
    }
    seen
}
