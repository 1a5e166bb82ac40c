//! Agent settings: one typed struct read from the TOML file (`--config`) and from the command
//! line, flags winning over the file. The same struct generates `schemas/agent-config.schema.json`,
//! so the file format and its schema cannot drift apart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::notify::NotifyTarget;
use super::schedule::Schedule;
use super::window::Windows;
use crate::fleet::Node;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `composeops agent` configuration file (TOML). Every key is optional; command-line flags
/// override the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "composeops agent configuration")]
pub struct AgentConfig {
    /// A git checkout holding one compose project, or a root whose subdirectories each hold one.
    /// Relative paths in the file (here and in `state-dir`) are relative to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Fetch and fast-forward the checkout's branch from its upstream this often (e.g. `30s`,
    /// `5m`). Never merges, never resets local edits. Off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_pull: Option<String>,
    /// When to look for new image digests in the registry: a duration (`1h`) or a cron
    /// expression of 5 fields (`0 4 * * *`) or 6 with seconds first, in UTC unless prefixed by
    /// `CRON_TZ=Area/City` (or `TZ=`). Off when unset: tags are resolved only when the
    /// compose files change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_images: Option<String>,
    /// Deploy only the digests pinned in composeops.lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// HTTP listener for /healthz, /metrics, /status and POST /sync: `PORT` (binds 127.0.0.1)
    /// or `ADDR:PORT` (binds exactly that). Off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Remove containers of services no longer in the compose files (never volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// After an apply, remove the images updates replaced, keeping each service's previous
    /// image (the rollback target) and any image a container uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    /// Where to send one message after each apply and each rollback (revision, each
    /// service's outcome, old -> new digests, the failed container's last log lines).
    /// shoutrrr URL forms: `generic+https://HOST/PATH` or `https://HOST/PATH` (the JSON
    /// event), `slack://TOKEN-A/TOKEN-B/TOKEN-C`, `discord://TOKEN@WEBHOOK-ID`,
    /// `ntfy://HOST/TOPIC`, `gotify://HOST/TOKEN`, `telegram://BOT-TOKEN@telegram?chats=@CHANNEL`,
    /// `smtp://USER:PASS@HOST:PORT/?from=ADDR&to=ADDR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// One generic webhook URL: the same as one `notify` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Log format: `text` (default) or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Where the agent keeps its lock file, the apply journal and project locks (shared with
    /// `composeops apply --state-dir`) and its memory of rolled-back desired states
    /// (default: `$STATE_DIRECTORY`, else `composeops apply`'s default: /var/lib/composeops
    /// as root, `$XDG_STATE_HOME/composeops` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Quiet time after the last file event before reconciling (default `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// First retry delay after a failed reconcile (default `5s`); doubles per failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_initial: Option<String>,
    /// Longest retry delay (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max: Option<String>,
    /// How long a new container has to become healthy (running, without a healthcheck)
    /// before it is rolled back (default: its healthcheck's own bound, or `60s` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<String>,
    /// Most HTTP connections open at once (default 64). Never more than a quarter of the
    /// process's open-file limit, so the agent keeps descriptors for its own work. When all
    /// are open, the one idle the longest is closed to admit a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_max_connections: Option<usize>,
    /// Close an HTTP connection that has not sent a complete request header within this time,
    /// for its first request and between kept-alive ones; a request not handled within it
    /// gets 408 (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_idle_timeout: Option<String>,
    /// An image check (or forced sync) reuses a digest looked up less than this long ago
    /// instead of asking the registry again (default `0s`: always ask). Many projects that
    /// share an image, woken together, then cost one lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_ttl: Option<String>,
    /// A command run with `sh -c` before each apply that has changes: the plan JSON on stdin,
    /// `COMPOSEOPS_PROJECT` and `COMPOSEOPS_IMAGE_<SERVICE>` in its environment. Anything but
    /// exit 0 applies nothing, and the desired state is not retried until it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// How long the gate may run before it is killed and the plan refused (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_timeout: Option<String>,
    /// This host's name for placement: stacks whose `x-composeops.nodes` globs match it (or
    /// match one of `labels`) are applied here, the others skipped (default: the host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Labels of this node, matched by `KEY=GLOB` node patterns (`role = "edge"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Maintenance windows: changes are applied only while one is open. Each is
    /// `[DAYS] HH:MM-HH:MM [ZONE]`: `Sat 02:00-04:00`, `Mon-Fri 22:00-23:30`,
    /// `Fri 23:00-01:00` (Friday 23:00 to Saturday 01:00), `Sat,Sun 02:00-04:00 Europe/Berlin`;
    /// no days: every day; no zone: the host's local time. Outside them the agent still plans
    /// (/status shows the pending changes and when the next window opens) and applies when one
    /// opens; a signed `POST /sync?force=1` applies at once. Unset: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Vec<String>>,
}

impl AgentConfig {
    /// Reads a TOML file; unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read agent config {}", path.display()))?;
        let mut c = Self::from_toml(&text)
            .with_context(|| format!("invalid agent config {}", path.display()))?;
        // Relative paths in the file are relative to the file, not to wherever the agent starts.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.path, &mut c.state_dir].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        // Checked here so the error names the file (`resolve` names the flag).
        Windows::parse(c.window.iter().flatten()).map_err(|e| {
            anyhow::anyhow!("invalid agent config {}: window = {e:#}", path.display())
        })?;
        Ok(c)
    }

    pub fn from_toml(text: &str) -> Result<AgentConfig> {
        Ok(toml::from_str(text)?)
    }

    /// `self` with every field set in `over` replaced (flags over file).
    pub fn overlay(mut self, over: AgentConfig) -> AgentConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            path,
            git_pull,
            check_images,
            locked,
            listen,
            prune,
            cleanup,
            notify,
            notify_url,
            log_format,
            state_dir,
            debounce,
            retry_initial,
            retry_max,
            wait_timeout,
            http_max_connections,
            http_idle_timeout,
            registry_ttl,
            gate,
            gate_timeout,
            node,
            labels,
            window
        );
        self
    }

    /// Checks and converts every field; errors name the setting and say what is expected.
    // Long by design: one check and conversion per setting, in the order of `Settings`.
    pub fn resolve(&self) -> Result<Settings> {
        let path = match &self.path {
            Some(p) => p.clone(),
            None => bail!(
                "no PATH: give the checkout to watch as an argument or `path` in the config file"
            ),
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        if !path.is_dir() {
            bail!("PATH {} is not a directory", path.display());
        }
        let dur = |name: &str,
                   v: &Option<String>,
                   default: Option<Duration>|
         -> Result<Option<Duration>> {
            match v {
                None => Ok(default),
                Some(s) => match crate::duration::parse(s) {
                    Some(d) if !d.is_zero() => Ok(Some(d)),
                    _ => bail!("{name} = {s:?} is not a duration (examples: 500ms, 30s, 5m, 1h)"),
                },
            }
        };
        let check_images = match &self.check_images {
            None => None,
            Some(s) => Some(Schedule::parse(s).with_context(|| format!("check-images = {s:?}"))?),
        };
        let listen = match &self.listen {
            None => None,
            Some(s) => Some(parse_listen(s)?),
        };
        let notify = self
            .notify
            .iter()
            .flatten()
            .chain(&self.notify_url)
            .map(|u| NotifyTarget::parse(u))
            .collect::<Result<Vec<_>>>()?;
        let windows = Windows::parse(self.window.iter().flatten())
            .map_err(|e| anyhow::anyhow!("--window {e:#}"))?;
        if self.http_max_connections == Some(0) {
            bail!("http-max-connections = 0: give at least 1 (default 64)");
        }
        let state_dir = self.state_dir.clone().unwrap_or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .map(|s| {
                    // systemd may pass several directories separated by ':'; the first is ours.
                    let s = s.to_string_lossy().to_string();
                    PathBuf::from(s.split(':').next().unwrap_or("").to_string())
                })
                .filter(|p| !p.as_os_str().is_empty())
                // The same default as `composeops apply`, so both use one journal and lock.
                .unwrap_or_else(crate::journal::default_state_dir)
        });
        Ok(Settings {
            path,
            git_pull: dur("git-pull", &self.git_pull, None)?,
            check_images,
            locked: self.locked.unwrap_or(false),
            listen,
            prune: self.prune.unwrap_or(false),
            cleanup: self.cleanup.unwrap_or(false),
            notify,
            log_format: self.log_format.unwrap_or_default(),
            state_dir,
            debounce: dur("debounce", &self.debounce, Some(Duration::from_secs(2)))?.unwrap(),
            retry_initial: dur(
                "retry-initial",
                &self.retry_initial,
                Some(Duration::from_secs(5)),
            )?
            .unwrap(),
            retry_max: dur("retry-max", &self.retry_max, Some(Duration::from_secs(300)))?.unwrap(),
            wait_timeout: dur("wait-timeout", &self.wait_timeout, None)?,
            http_max_connections: self.http_max_connections.unwrap_or(64),
            http_idle_timeout: dur(
                "http-idle-timeout",
                &self.http_idle_timeout,
                Some(Duration::from_secs(10)),
            )?
            .unwrap(),
            registry_ttl: dur("registry-ttl", &self.registry_ttl, Some(Duration::ZERO))?.unwrap(),
            gate: self.gate(dur(
                "gate-timeout",
                &self.gate_timeout,
                Some(crate::gate::DEFAULT_TIMEOUT),
            )?)?,
            node: self.node(),
            windows,
        })
    }
}

impl AgentConfig {
    /// `gate`, with its timeout; an empty command is a mistake, not "no gate".
    fn gate(&self, timeout: Option<Duration>) -> Result<Option<crate::gate::Gate>> {
        match &self.gate {
            None => Ok(None),
            Some(c) if c.trim().is_empty() => {
                bail!("gate = \"\": give a command, or leave `gate` out for no gate")
            }
            Some(c) => Ok(Some(crate::gate::Gate {
                command: c.clone(),
                timeout: timeout.unwrap_or(crate::gate::DEFAULT_TIMEOUT),
            })),
        }
    }

    /// The node placement matches: `node` (else the host name) with `labels`.
    fn node(&self) -> Node {
        let mut n = Node::this_host();
        if let Some(name) = self.node.as_ref().filter(|s| !s.is_empty()) {
            n.name = name.clone();
        }
        n.labels = self.labels.clone().unwrap_or_default();
        n
    }
}

/// `PORT` or `:PORT` binds loopback; anything else must be a full `ADDR:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    t.parse::<SocketAddr>().with_context(|| {
        format!("listen = {s:?}: expected PORT (loopback) or ADDR:PORT, e.g. 9090 or 0.0.0.0:9090")
    })
}

/// The checked settings the agent runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub git_pull: Option<Duration>,
    pub check_images: Option<Schedule>,
    pub locked: bool,
    pub listen: Option<SocketAddr>,
    pub prune: bool,
    /// Remove the images updates replaced (see `cleanup`).
    pub cleanup: bool,
    /// `--notify` targets, then `--notify-url`.
    pub notify: Vec<NotifyTarget>,
    pub log_format: LogFormat,
    pub state_dir: PathBuf,
    pub debounce: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `None`: each container's healthcheck bound (see `ApplyOptions::wait_timeout`).
    pub wait_timeout: Option<Duration>,
    /// Configured cap; the listener lowers it to a quarter of the open-file limit.
    pub http_max_connections: usize,
    pub http_idle_timeout: Duration,
    pub registry_ttl: Duration,
    /// Run before each apply that has changes (`gate`, `gate-timeout`).
    pub gate: Option<crate::gate::Gate>,
    /// This host, for stack placement.
    pub node: Node,
    /// When applies may happen (`window`); empty: any time.
    pub windows: Windows,
}

/// The JSON Schema of the config file, as checked in under `schemas/agent-config.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(AgentConfig);
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_match_flags_and_unknown_keys_fail() {
        let c = AgentConfig::from_toml(
            "path = \"/srv\"\ngit-pull = \"30s\"\ncheck-images = \"0 4 * * *\"\nlocked = true\n\
             listen = \"9090\"\nlog-format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.git_pull.as_deref(), Some("30s"));
        assert_eq!(c.locked, Some(true));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        let e = AgentConfig::from_toml("git_poll = \"1m\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("git_poll"), "{e:#}");
    }

    #[test]
    fn node_and_labels_from_the_file_default_to_the_host_name() {
        let dir = tempfile::tempdir().unwrap();
        let c = AgentConfig::from_toml("node = \"n1\"\n[labels]\nrole = \"edge\"\n").unwrap();
        let s = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            ..c
        }
        .resolve()
        .unwrap();
        assert_eq!(s.node.name, "n1");
        assert_eq!(s.node.labels["role"], "edge");
        let d = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(d.node.name, gethostname::gethostname().to_string_lossy());
        assert!(!d.node.name.is_empty());
    }

    #[test]
    fn relative_paths_in_the_file_are_relative_to_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent.toml");
        std::fs::write(&f, "path = \"stacks\"\nstate-dir = \"/var/lib/x\"\n").unwrap();
        let c = AgentConfig::from_file(&f).unwrap();
        assert_eq!(c.path.unwrap(), d.path().join("stacks"));
        assert_eq!(c.state_dir.unwrap(), PathBuf::from("/var/lib/x"));
    }

    #[test]
    fn flags_override_file() {
        let file = AgentConfig {
            git_pull: Some("1m".into()),
            prune: Some(true),
            ..Default::default()
        };
        let flags = AgentConfig {
            git_pull: Some("5s".into()),
            ..Default::default()
        };
        let c = file.overlay(flags);
        assert_eq!(c.git_pull.as_deref(), Some("5s"));
        assert_eq!(c.prune, Some(true));
    }

    #[test]
    fn cleanup_is_off_unless_the_file_or_a_flag_turns_it_on() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().display();
        let off = AgentConfig::from_toml(&format!("path = \"{path}\"\n")).unwrap();
        assert!(!off.clone().resolve().unwrap().cleanup);
        let on = AgentConfig::from_toml(&format!("path = \"{path}\"\ncleanup = true\n")).unwrap();
        assert!(on.resolve().unwrap().cleanup);
        let flag = AgentConfig {
            cleanup: Some(true),
            ..Default::default()
        };
        assert!(off.overlay(flag).resolve().unwrap().cleanup);
    }

    #[test]
    fn notify_urls_and_the_notify_url_alias_resolve_and_errors_hide_secrets() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().display();
        let c = AgentConfig::from_toml(&format!(
            "path = \"{path}\"\nnotify = [\"discord://tok@1\", \"ntfy://ntfy.sh/t\"]\n\
             notify-url = \"http://127.0.0.1:1/hook\"\n"
        ))
        .unwrap();
        let shown: Vec<String> = c
            .resolve()
            .unwrap()
            .notify
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "discord://***@1",
                "ntfy://ntfy.sh/***",
                "http://127.0.0.1:1/***"
            ]
        );
        let bad = AgentConfig {
            notify: Some(vec!["gotify://g.example".into(), "discord://s3cret".into()]),
            ..c
        };
        let e = format!("{:#}", bad.resolve().unwrap_err());
        assert!(
            e.contains("notify URL gotify://g.example") && e.contains("no token"),
            "{e}"
        );
    }

    #[test]
    fn listen_is_loopback_unless_explicit() {
        assert_eq!(parse_listen("9090").unwrap().to_string(), "127.0.0.1:9090");
        assert_eq!(parse_listen(":9090").unwrap().to_string(), "127.0.0.1:9090");
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn bad_durations_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let c = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            git_pull: Some("soon".into()),
            ..Default::default()
        };
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("git-pull"), "{e}");
        let c = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            http_idle_timeout: Some("0s".into()),
            ..Default::default()
        };
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("http-idle-timeout"), "{e}");
    }

    #[test]
    fn gate_and_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = Some(dir.path().to_path_buf());
        let c =
            AgentConfig::from_toml("gate = \"cosign verify\"\ngate-timeout = \"90s\"\n").unwrap();
        let s = AgentConfig {
            path: path.clone(),
            ..c
        }
        .resolve()
        .unwrap();
        let want = crate::gate::Gate {
            command: "cosign verify".into(),
            timeout: Duration::from_secs(90),
        };
        assert_eq!(s.gate, Some(want));
        let c = AgentConfig {
            path: path.clone(),
            gate: Some("scan".into()),
            ..Default::default()
        };
        assert_eq!(
            c.resolve().unwrap().gate.unwrap().timeout,
            crate::gate::DEFAULT_TIMEOUT
        );
        let c = AgentConfig {
            path,
            gate: Some(" ".into()),
            ..Default::default()
        };
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.starts_with("gate = "), "{e}");
    }

    #[test]
    fn windows_from_the_file_or_flags_and_errors_name_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = Some(dir.path().to_path_buf());
        let c = AgentConfig::from_toml(
            "window = [\"Sat 02:00-04:00\", \"Mon-Fri  22:00-23:30 Europe/Berlin\"]\n",
        )
        .unwrap();
        let s = AgentConfig {
            path: path.clone(),
            ..c
        }
        .resolve()
        .unwrap();
        assert_eq!(
            s.windows.specs(),
            ["Sat 02:00-04:00", "Mon-Fri 22:00-23:30 Europe/Berlin"]
        );
        let none = AgentConfig {
            path: path.clone(),
            ..Default::default()
        };
        assert!(none.resolve().unwrap().windows.is_empty());
        let bad = AgentConfig {
            path,
            window: Some(vec!["Sat 02:00-04:00".into(), "Sat 25:00-26:00".into()]),
            ..Default::default()
        };
        assert_eq!(
            format!("{:#}", bad.resolve().unwrap_err()),
            "--window \"Sat 25:00-26:00\": \"25:00\" is not a time of day: HH:MM, from 00:00 \
             to 23:59"
        );
        let f = dir.path().join("agent.toml");
        std::fs::write(&f, "window = [\"Fri 23:00-01:00 Mars/Olympus\"]\n").unwrap();
        let e = format!("{:#}", AgentConfig::from_file(&f).unwrap_err());
        assert!(
            e.starts_with(&format!(
                "invalid agent config {}: window = \"Fri 23:00-01:00 Mars/Olympus\": unknown \
                 time zone",
                f.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn http_limits_default_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let c = AgentConfig::from_toml("http-max-connections = 8\nhttp-idle-timeout = \"2s\"\n")
            .unwrap();
        let s = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            ..c
        }
        .resolve()
        .unwrap();
        assert_eq!(s.http_max_connections, 8);
        assert_eq!(s.http_idle_timeout, Duration::from_secs(2));
        let d = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(d.http_max_connections, 64);
        assert_eq!(d.http_idle_timeout, Duration::from_secs(10));
        let zero = AgentConfig {
            path: Some(dir.path().to_path_buf()),
            http_max_connections: Some(0),
            ..Default::default()
        };
        assert!(zero
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("http-max-connections"));
    }
}
