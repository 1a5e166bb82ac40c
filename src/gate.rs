//! The pre-apply gate: an operator's command (a vulnerability scan, a signature check) that
//! sees the plan before anything changes and can refuse it. It runs once per apply that has
//! changes, from [`crate::converge::apply`], so `composeops apply` and the agent gate alike.
//!
//! The gate fails closed: a non-zero exit, a timeout or a command that cannot start all refuse
//! the plan, because a check that did not say yes has not said yes.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;

use crate::error::{Error, ErrorKind, Result};
use crate::hostcmd::{self, HostCommand};
use crate::plan::{Plan, ServiceAction};
use crate::resolve::ResolvedImage;

/// The default of `--gate-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A command run with `sh -c` before the first change of an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub command: String,
    pub timeout: Duration,
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
    let argv = ["sh".to_string(), "-c".to_string(), gate.command.clone()];
    let done = hostcmd::run(HostCommand {
        argv: &argv,
        env: &env,
        dir: None,
        stdin: Some(input),
        timeout: gate.timeout,
    })
    .await;
    match done.failure {
        None => {
            crate::progress::line("gate passed");
            Ok(())
        }
        Some(f) => Err(Error::GateRefused(hostcmd::message(
            "gate refused the plan",
            &f,
            &done.output,
        ))),
    }
}

/// The plan exactly as `composeops plan --json` prints it.
fn stdin(plan: &Plan) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(plan).map_err(Error::of(ErrorKind::Engine))?;
    out.push(b'\n');
    Ok(out)
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
}
