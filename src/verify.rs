//! Post-update verification: `x-composeops: {verify: CMD, verify_timeout: DURATION}` in a
//! service. Once a new container of the service is ready (healthy, or running without a
//! healthcheck), apply runs CMD on the host, in the project directory, with the container in
//! its environment; a non-zero exit, a timeout or a command that cannot start fails the new
//! container as a failed healthcheck does: an update is rolled back, a new service fails.
//!
//! It answers what a healthcheck inside the container cannot: is the service reachable from
//! outside, through its published ports, and does it answer as it should (a smoke test, a
//! schema check, a login). Like the rest of `x-composeops` it is read by the loader
//! (`load/policy.rs`) and carried beside the service, not in it: Compose ignores it, it is not
//! part of the config hash, and adding or changing it recreates nothing.
//!
//! The command runs through [`crate::hostcmd`], as the gate does. The outcome message holds
//! its exit status and its last output lines, never the command itself: a command line may
//! carry an interpolated secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::hostcmd::{self, HostCommand};

/// The bound of a check without `verify_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A service's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// What runs: a list as written, a string as `["sh", "-c", STRING]`.
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// The container a check is about.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub project: &'a str,
    pub service: &'a str,
    pub container_id: &'a str,
    /// Its name while the check runs (the temporary one, in a start-first update).
    pub container_name: &'a str,
    /// Container port (`8080/tcp`) -> its host bindings (`0.0.0.0:32768`, `[::]:32768`).
    pub published: &'a BTreeMap<String, Vec<String>>,
}

/// The variables a check gets besides this process's own environment.
pub(crate) fn environment(s: &Subject<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        ("COMPOSEOPS_PROJECT".to_string(), s.project.to_string()),
        ("COMPOSEOPS_SERVICE".to_string(), s.service.to_string()),
        (
            "COMPOSEOPS_CONTAINER_ID".to_string(),
            s.container_id.to_string(),
        ),
        (
            "COMPOSEOPS_CONTAINER_NAME".to_string(),
            s.container_name.to_string(),
        ),
    ];
    for (port, bindings) in s.published {
        // One address per port: IPv4 first, as a client on the host would try.
        let first = bindings
            .iter()
            .find(|b| !b.starts_with('['))
            .or(bindings.first());
        if let (Some(name), Some(b)) = (port_variable(port), first) {
            env.push((name, b.clone()));
        }
    }
    env
}

/// `8080/tcp` -> `COMPOSEOPS_PORT_8080_TCP`; `None` for what is not `<number>/<protocol>`.
pub(crate) fn port_variable(port: &str) -> Option<String> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !proto.is_empty()
        && proto.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| format!("COMPOSEOPS_PORT_{number}_{}", proto.to_ascii_uppercase()))
}

/// Runs the check of `s` in `dir`; `Err` says why it failed, with its last output lines.
pub(crate) async fn run(v: &Verify, s: &Subject<'_>, dir: &Path) -> Result<(), String> {
    let env = environment(s);
    let done = hostcmd::run(HostCommand {
        argv: &v.argv,
        env: &env,
        dir: Some(dir),
        stdin: None,
        timeout: v.timeout,
    })
    .await;
    match done.failure {
        None => Ok(()),
        Some(f) => Err(hostcmd::message("verify failed", &f, &done.output)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_the_container_and_one_address_per_published_port() {
        let published: BTreeMap<String, Vec<String>> = [
            ("8080/tcp", vec!["[::]:32768", "0.0.0.0:32768"]),
            ("53/udp", vec!["127.0.0.1:5353"]),
            ("9000/tcp", vec!["[::1]:9000"]),
            ("odd", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let s = Subject {
            project: "shop",
            service: "web",
            container_id: "abc",
            container_name: "shop-web-1",
            published: &published,
        };
        let env: BTreeMap<String, String> = environment(&s).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("COMPOSEOPS_PROJECT", "shop"),
            ("COMPOSEOPS_SERVICE", "web"),
            ("COMPOSEOPS_CONTAINER_ID", "abc"),
            ("COMPOSEOPS_CONTAINER_NAME", "shop-web-1"),
            ("COMPOSEOPS_PORT_8080_TCP", "0.0.0.0:32768"),
            ("COMPOSEOPS_PORT_53_UDP", "127.0.0.1:5353"),
            ("COMPOSEOPS_PORT_9000_TCP", "[::1]:9000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        assert_eq!(port_variable("80"), Some("COMPOSEOPS_PORT_80_TCP".into()));
        assert_eq!(
            port_variable("80/sctp"),
            Some("COMPOSEOPS_PORT_80_SCTP".into())
        );
        assert_eq!(port_variable("x/tcp"), None);
    }

    #[tokio::test]
    async fn a_failed_check_says_why_with_its_output_and_not_its_command() {
        let published = BTreeMap::new();
        let s = Subject {
            project: "p",
            service: "web",
            container_id: "abc",
            container_name: "p-web-1",
            published: &published,
        };
        let dir = tempfile::tempdir().unwrap();
        let secret = "s3cret-in-the-command";
        let v = Verify {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!(": {secret}; echo \"$COMPOSEOPS_CONTAINER_ID in $PWD\"; exit 4"),
            ],
            timeout: DEFAULT_TIMEOUT,
        };
        let e = run(&v, &s, dir.path()).await.unwrap_err();
        let pwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            e,
            format!("verify failed: exit 4: abc in {}", pwd.display())
        );
        assert!(!e.contains(secret));
        let ok = Verify {
            argv: vec!["true".into()],
            timeout: DEFAULT_TIMEOUT,
        };
        assert_eq!(run(&ok, &s, dir.path()).await, Ok(()));
    }
}
