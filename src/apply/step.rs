//! The vocabulary of deciding and doing: one [`Step`] per engine call or journal write, with a
//! one-line `Display` so that tests, logs and reading the code all say the same thing.
//!
//! The deciding functions ([`super::recreate`], [`super::rollback`]) return steps; the
//! executor ([`super::exec`]) runs them and holds no decisions of its own.

use std::fmt;
use std::time::Duration;

use crate::journal::Phase;

/// One engine call or journal write. Containers are named by id or by name (the engine takes
/// either), exactly as the step will address them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Record the recreate in flight at this phase (durably) before what follows.
    Journal(Phase),
    /// The recreate is finished or undone: nothing to recover.
    ClearJournal,
    /// Create (not start) the new container under this name.
    Create(String),
    Stop {
        container: String,
        grace: i64,
    },
    Rename {
        container: String,
        to: String,
    },
    Start(String),
    /// Wait until the container is healthy (or running, without a healthcheck).
    WaitReady(String),
    /// The ready container must stay running, and not unhealthy, this long
    /// (`update_config.monitor`): a failure is a failed readiness.
    Monitor {
        container: String,
        period: Duration,
    },
    /// Run the service's `x-composeops.verify` on the host against the ready container: a
    /// failure is a failed readiness.
    Verify(String),
    /// Force-remove; a missing container is not an error.
    Remove(String),
    /// Take the container off a network: new connections go to the others behind its aliases.
    Disconnect {
        container: String,
        network: String,
    },
    /// Put the container back on a network, with these aliases.
    Connect {
        container: String,
        network: String,
        aliases: Vec<String>,
    },
    /// Let the connections a disconnected container still serves finish ([`DRAIN`]).
    Drain,
    /// Let a container just connected under its aliases become reachable at the address the
    /// engine's DNS already gives out, before the other one leaves ([`DRAIN`]).
    Settle,
}

/// How long a start-first update lets the old container finish what it serves once it is off
/// its networks, before stopping it (which gives it its stop grace period on top).
pub(crate) const DRAIN: Duration = if cfg!(test) {
    Duration::from_millis(10)
} else {
    Duration::from_secs(1)
};

/// What a failed step means for the replica: decided with the step, not by the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Stop here; what was done is harmless or covered by the journal.
    Abort,
    /// Stop here after these best-effort steps, which undo what the step may have left.
    AbortAfter(Vec<Step>),
    /// The new container cannot take over: put the old one back.
    RollBack,
    /// Tell the operator and carry on.
    Warn,
    /// Carry on silently (a best-effort step).
    Ignore,
    /// Stop here and leave the journal as it is: the new container is in service, and the
    /// next run's recovery finishes what is left.
    Unfinished,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Journal(p) => write!(f, "journal {}", phase_name(*p)),
            Step::ClearJournal => write!(f, "journal clear"),
            Step::Create(n) => write!(f, "create {n}"),
            Step::Stop { container, grace } => write!(f, "stop {} ({grace}s)", short(container)),
            Step::Rename { container, to } => write!(f, "rename {} -> {to}", short(container)),
            Step::Start(c) => write!(f, "start {}", short(c)),
            Step::WaitReady(c) => write!(f, "wait for {} to be ready", short(c)),
            Step::Verify(c) => write!(f, "verify {}", short(c)),
            Step::Monitor { container, period } => {
                write!(f, "monitor {} for {period:?}", short(container))
            }
            Step::Remove(c) => write!(f, "remove {}", short(c)),
            Step::Disconnect { container, network } => {
                write!(f, "disconnect {} from {network}", short(container))
            }
            Step::Connect {
                container,
                network,
                aliases,
            } => write!(
                f,
                "connect {} to {network} as {}",
                short(container),
                aliases.join(",")
            ),
            Step::Drain => write!(f, "drain {DRAIN:?}"),
            Step::Settle => write!(f, "settle {DRAIN:?}"),
        }
    }
}

/// The journal's own spelling of a phase (kebab-case, as in the journal file).
pub(crate) fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Creating => "creating",
        Phase::Swapping => "swapping",
        Phase::Waiting => "waiting",
        Phase::Committed => "committed",
        Phase::RollingBack => "rolling-back",
        Phase::Starting => "starting",
        Phase::Draining => "draining",
        Phase::Kept => "kept",
    }
}

/// A 64-hex container id as its first 12 characters (as `docker ps` shows it); names as they
/// are.
pub(crate) fn short(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// Steps one per line, as tests compare them.
#[cfg(test)]
pub(crate) fn lines<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Vec<String> {
    steps.into_iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_one_line_each() {
        let id = "0123456789ab".repeat(5) + "cdef";
        let cases = [
            (Step::Journal(Phase::RollingBack), "journal rolling-back"),
            (Step::ClearJournal, "journal clear"),
            (
                Step::Create("p-web-1-composeops-new".into()),
                "create p-web-1-composeops-new",
            ),
            (
                Step::Stop {
                    container: id.clone(),
                    grace: 10,
                },
                "stop 0123456789ab (10s)",
            ),
            (
                Step::Rename {
                    container: id.clone(),
                    to: "p-web-1".into(),
                },
                "rename 0123456789ab -> p-web-1",
            ),
            (Step::Start("p-web-1".into()), "start p-web-1"),
            (
                Step::WaitReady("p-web-1".into()),
                "wait for p-web-1 to be ready",
            ),
            (Step::Verify("p-web-1".into()), "verify p-web-1"),
            (
                Step::Monitor {
                    container: "p-web-1".into(),
                    period: Duration::from_secs(5),
                },
                "monitor p-web-1 for 5s",
            ),
            (Step::Remove(id.clone()), "remove 0123456789ab"),
            (
                Step::Disconnect {
                    container: id.clone(),
                    network: "p_default".into(),
                },
                "disconnect 0123456789ab from p_default",
            ),
            (
                Step::Connect {
                    container: id,
                    network: "p_default".into(),
                    aliases: vec!["web".into(), "p-web-1".into()],
                },
                "connect 0123456789ab to p_default as web,p-web-1",
            ),
            (Step::Drain, "drain 10ms"),
            (Step::Settle, "settle 10ms"),
        ];
        for (step, want) in cases {
            assert_eq!(step.to_string(), want);
        }
    }
}
