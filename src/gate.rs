//! The pre-apply gate: an operator's command (a vulnerability scan, a signature check) that
//! sees the plan before anything changes and can refuse it. It runs once per apply that has
//! changes, from [`crate::converge::apply`], so `composeops apply` and the agent gate alike.
//!
//! The gate fails closed: a non-zero exit, a timeout or a command that cannot start all refuse
//! the plan, because a check that did not say yes has not said yes.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Plan, ServiceAction};
use crate::resolve::ResolvedImage;

/// The default of `--gate-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Lines of the gate's output kept for the refusal message: enough for a scanner's summary.
const KEPT_LINES: usize = 20;

/// Bytes of output kept while reading, so a chatty scanner cannot grow the agent's memory.
const KEPT_BYTES: usize = 64 * 1024;

/// How long the output may stay open after the command ended (a background child of the
/// shell holding it) before the gate stops reading.
const DRAIN: Duration = Duration::from_secs(2);

/// A command run with `sh -c` before the first change of an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub command: String,
    pub timeout: Duration,
}

/// Why the gate said no.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Exit(String),
    Timeout(Duration),
    CannotStart(String),
}

/// What the gate is shown: the plan (which has changes) and where each service's image
/// comes from (`Desired::run_from`, then the resolved or locked digests).
pub(crate) struct Subject<'a> {
    pub plan: &'a Plan,
    pub run_from: &'a BTreeMap<String, String>,
    pub digests: &'a IndexMap<String, ResolvedImage>,
}

/// Runs `gate` on `subject`; an `Err` of kind [`ErrorKind::GateRefused`] means nothing may
/// change.
pub(crate) async fn check(gate: &Gate, subject: &Subject<'_>) -> Result<()> {
    let env = environment(subject.plan, &references(subject));
    let input = stdin(subject.plan)?;
    crate::progress::line(format_args!("running gate: {}", gate.command));
    let (refusal, output) = match run(gate, &env, input).await {
        Ok((None, _)) => {
            crate::progress::line("gate passed");
            return Ok(());
        }
        Ok((Some(r), output)) => (r, output),
        Err(e) => (Refusal::CannotStart(format!("{e}")), vec![]),
    };
    Err(Error::GateRefused(refusal_message(&refusal, &output)))
}

/// The plan exactly as `composeops plan --json` prints it.
fn stdin(plan: &Plan) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(plan).map_err(Error::of(ErrorKind::Engine))?;
    out.push(b'\n');
    Ok(out)
}

/// `gate refused the plan: exit 3: <last lines>`.
fn refusal_message(r: &Refusal, output: &[String]) -> String {
    let why = match r {
        Refusal::Exit(s) => s.clone(),
        Refusal::Timeout(d) => format!("no answer within {}", humantime(*d)),
        Refusal::CannotStart(e) => format!("cannot run sh -c: {e}"),
    };
    if output.is_empty() {
        format!("gate refused the plan: {why} (no output)")
    } else {
        format!("gate refused the plan: {why}: {}", output.join("\n"))
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Service -> the reference its new containers will run: `repository@digest` when pinned.
fn references(subject: &Subject<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in &subject.plan.services {
        let r = match (
            subject.run_from.get(&s.service),
            subject.digests.get(&s.service),
        ) {
            (Some(r), _) => r.clone(),
            (None, Some(d)) => format!("{}@{}", d.repository, d.digest),
            (None, None) => s.image.reference.clone(),
        };
        out.insert(s.service.clone(), r);
    }
    out
}

/// The variables the gate gets besides the agent's own environment: the project, and the
/// image of each service whose containers are created or whose image moves.
pub(crate) fn environment(
    plan: &Plan,
    references: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = vec![("COMPOSEOPS_PROJECT".to_string(), plan.project.clone())];
    for s in &plan.services {
        let moves = s.image_change.is_some()
            || matches!(s.action, ServiceAction::Create | ServiceAction::Recreate);
        if let Some(r) = references.get(&s.service).filter(|_| moves) {
            env.push((image_variable(&s.service), r.clone()));
        }
    }
    env
}

/// `COMPOSEOPS_IMAGE_<SERVICE>`: upper case, anything a shell name cannot hold as `_`.
pub(crate) fn image_variable(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("COMPOSEOPS_IMAGE_{name}")
}

/// Runs the command with `input` on stdin; `None` when it exited 0, with its last output lines.
async fn run(
    gate: &Gate,
    env: &[(String, String)],
    input: Vec<u8>,
) -> std::io::Result<(Option<Refusal>, Vec<String>)> {
    // One pipe for stdout and stderr keeps their lines in the order they were written.
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&gate.command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        // Its own process group, so a timeout kills what the shell started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    // The command holds the pipe's write end: dropped, the pipe ends when the gate's
    // processes do.
    drop(cmd);
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A gate that does not read its input is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let reading = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * KEPT_BYTES {
                kept.drain(..kept.len() - KEPT_BYTES);
            }
        }
        kept
    });
    let refusal = match tokio::time::timeout(gate.timeout, child.wait()).await {
        Ok(status) => {
            let status = status?;
            (!status.success()).then(|| Refusal::Exit(describe(status)))
        }
        Err(_) => Some(Refusal::Timeout(gate.timeout)),
    };
    // Whatever the gate left running (all of it, after a timeout) does not outlive it.
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on the gate's own process group; it touches no memory.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.wait().await;
    let output = match tokio::time::timeout(DRAIN, reading).await {
        Ok(Ok(bytes)) => last_lines(&bytes, KEPT_LINES),
        _ => vec![],
    };
    Ok((refusal, output))
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    }
}

/// The last `n` non-empty lines of `bytes`, lossily decoded.
fn last_lines(bytes: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn service(name: &str, action: &str, change: bool) -> serde_json::Value {
        let mut s = serde_json::json!({
            "service": name, "action": action, "reasons": [], "changed_fields": [],
            "image": {"reference": "app:1", "digest": null}, "spec_hash": "h", "replicas": [],
        });
        if change {
            s["image_change"] = serde_json::json!({"from": "sha256:1", "to": D});
        }
        s
    }

    fn plan() -> Plan {
        serde_json::from_value(serde_json::json!({
            "project": "shop", "networks": [], "volumes": [], "orphans": [], "warnings": [],
            "services": [
                service("web", "recreate", true),
                service("db", "unchanged", false),
                service("api-v2.x", "create", false),
                service("cache", "start", false),
            ],
        }))
        .unwrap()
    }

    #[test]
    fn environment_names_the_project_and_each_moving_image() {
        let refs: BTreeMap<String, String> = ["web", "db", "api-v2.x", "cache"]
            .iter()
            .map(|s| (s.to_string(), format!("reg/{s}@{D}")))
            .collect();
        let env = environment(&plan(), &refs);
        let want = [
            ("COMPOSEOPS_PROJECT", "shop".to_string()),
            ("COMPOSEOPS_IMAGE_WEB", format!("reg/web@{D}")),
            ("COMPOSEOPS_IMAGE_API_V2_X", format!("reg/api-v2.x@{D}")),
        ];
        let want: Vec<(String, String)> =
            want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(env, want);
    }

    #[test]
    fn references_are_pinned_when_the_digest_is_known() {
        let p = plan();
        let run_from = [("web".to_string(), format!("r/web@{D}"))].into();
        let digests = [(
            "api-v2.x".to_string(),
            ResolvedImage {
                reference: "r/api:1".into(),
                repository: "r/api".into(),
                tag: Some("1".into()),
                digest: D.into(),
                index_digest: None,
                platform_digest: None,
                source: crate::resolve::Source::Registry,
                held_back: Vec::new(),
            },
        )]
        .into_iter()
        .collect();
        let subject = Subject {
            plan: &p,
            run_from: &run_from,
            digests: &digests,
        };
        let refs = references(&subject);
        assert_eq!(refs["web"], format!("r/web@{D}"));
        assert_eq!(refs["api-v2.x"], format!("r/api@{D}"));
        assert_eq!(refs["cache"], "app:1");
    }

    #[test]
    fn stdin_is_the_plan_json_as_plan_prints_it() {
        let p = plan();
        let bytes = stdin(&p).unwrap();
        let printed = format!("{}\n", serde_json::to_string_pretty(&p).unwrap());
        assert_eq!(String::from_utf8(bytes).unwrap(), printed);
    }

    #[test]
    fn refusals_say_why_with_the_last_lines() {
        let out = vec!["CVE-1 critical".to_string(), "2 findings".to_string()];
        assert_eq!(
            refusal_message(&Refusal::Exit("exit 3".into()), &out),
            "gate refused the plan: exit 3: CVE-1 critical\n2 findings"
        );
        assert_eq!(
            refusal_message(&Refusal::Timeout(Duration::from_secs(1)), &[]),
            "gate refused the plan: no answer within 1s (no output)"
        );
        let many: String = (1..=30).map(|i| format!("l{i}\n\n")).collect();
        let kept = last_lines(many.as_bytes(), KEPT_LINES);
        assert_eq!((kept.len(), kept[0].as_str()), (20, "l11"));
    }

    fn gate(command: &str, secs: u64) -> Gate {
        Gate {
            command: command.into(),
            timeout: Duration::from_secs(secs),
        }
    }

    fn run_blocking(g: &Gate, input: &str) -> (Option<Refusal>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let env = vec![("GATE_T".to_string(), "v".to_string())];
        rt.block_on(run(g, &env, input.as_bytes().to_vec()))
            .unwrap()
    }

    #[test]
    fn the_command_reads_stdin_and_its_output_is_kept_in_order() {
        let g = gate("echo out; echo err >&2; cat; echo \"$GATE_T\"; exit 3", 30);
        let (r, out) = run_blocking(&g, "plan\n");
        assert_eq!(r, Some(Refusal::Exit("exit 3".into())));
        assert_eq!(out, ["out", "err", "plan", "v"]);
        assert_eq!(run_blocking(&gate("true", 30), "").0, None);
    }

    #[test]
    fn a_timeout_kills_the_whole_gate() {
        let started = std::time::Instant::now();
        let g = gate("echo scanning; sleep 30 & wait", 1);
        let (r, out) = run_blocking(&g, "");
        assert_eq!(r, Some(Refusal::Timeout(Duration::from_secs(1))));
        assert_eq!(out, ["scanning"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
