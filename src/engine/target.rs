//! Which engine to talk to, decided as the docker CLI (and so Docker Compose) decides it:
//!
//! 1. `--context` (together with `-H` it is an error, as in the docker CLI);
//! 2. `-H`/`--host`;
//! 3. `DOCKER_HOST`;
//! 4. `DOCKER_CONTEXT`;
//! 5. `currentContext` in `config.json` (`$DOCKER_CONFIG`, else `~/.docker`);
//! 6. the local socket.
//!
//! The context `default` means "no context": flags, environment, local socket. A named
//! context is read from the CLI's store: `contexts/meta/<sha256 of name>/meta.json` (endpoint
//! `docker`: `Host`, `SkipTLSVerify`) and `contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem`.
//! Without a context, TLS comes from `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` (else the
//! config directory), files `ca.pem`, `cert.pem`, `key.pem`, as the CLI reads them.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};

/// What the command line says about the engine: `-H`/`--host` and `--context`, as the docker
/// CLI spells them. The environment and the CLI's config are read by [`super::Engine::connect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineFlags {
    pub host: Option<String>,
    pub context: Option<String>,
}

impl EngineFlags {
    /// Only `-H`: what the API offered before contexts.
    pub fn host(host: Option<&str>) -> EngineFlags {
        EngineFlags {
            host: host.map(str::to_string),
            context: None,
        }
    }
}

/// Where the engine's address came from; part of every connection error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    HostFlag,
    DockerHost,
    /// A named context, and what chose it.
    Context {
        name: String,
        chosen_by: String,
    },
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::HostFlag => write!(f, "from --host"),
            Source::DockerHost => write!(f, "from DOCKER_HOST"),
            Source::Context { name, chosen_by } => {
                write!(f, "from docker context {name:?}, chosen by {chosen_by}")
            }
            Source::Default => write!(f, "the default"),
        }
    }
}

/// Certificate files for a TLS connection; the engine is always verified against `ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The engine to connect to: its address with the default port filled in, TLS or not, and
/// where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub tls: Option<TlsFiles>,
    pub source: Source,
}

pub(crate) const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
const CONTEXT_DEFAULT: &str = "default";

/// Decides the target from the flags and `env` (the process environment in production).
pub(crate) fn resolve(flags: &EngineFlags, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let flag_host = flags.host.as_deref().filter(|h| !h.is_empty());
    let flag_context = flags.context.as_deref().filter(|c| !c.is_empty());
    if flag_host.is_some() && flag_context.is_some() {
        bail!("conflicting options: cannot specify both --host and --context");
    }
    // Without HOME (a system service) there is no config directory: no current context.
    let config_dir = config_dir(env);
    let no_config =
        || anyhow!("neither DOCKER_CONFIG nor HOME is set: cannot find the docker config");
    let chosen = if let Some(c) = flag_context {
        Some((c.to_string(), "--context".to_string()))
    } else if flag_host.is_some() || var("DOCKER_HOST").is_some() {
        None
    } else if let Some(c) = var("DOCKER_CONTEXT") {
        Some((c, "DOCKER_CONTEXT".to_string()))
    } else if let Some(dir) = &config_dir {
        current_context(dir)?.map(|c| {
            let by = format!("currentContext in {}", dir.join("config.json").display());
            (c, by)
        })
    } else {
        None
    };
    if let Some((name, chosen_by)) = chosen.filter(|(n, _)| n != CONTEXT_DEFAULT) {
        let dir = config_dir.ok_or_else(no_config)?;
        return from_context(&dir, name, chosen_by);
    }
    let (host, source) = match (flag_host, var("DOCKER_HOST")) {
        (Some(h), _) => (h.to_string(), Source::HostFlag),
        (None, Some(h)) => (h, Source::DockerHost),
        (None, None) => (String::new(), Source::Default),
    };
    let verify = var("DOCKER_TLS_VERIFY").is_some();
    if !verify && var("DOCKER_TLS").is_some() {
        bail!(
            "DOCKER_TLS without DOCKER_TLS_VERIFY (TLS without verifying the engine's \
             certificate) is not supported: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
        );
    }
    let host = match host.as_str() {
        // The CLI's default with TLS is the TLS port on localhost, not the socket.
        "" if verify => "tcp://localhost:2376".to_string(),
        "" => DEFAULT_SOCKET.to_string(),
        _ => normalise(&host, verify)?,
    };
    let tls = match verify && host.starts_with("tcp://") {
        true => {
            let dir = var("DOCKER_CERT_PATH").map(PathBuf::from).or(config_dir);
            Some(tls_files(&dir.ok_or_else(no_config)?))
        }
        false => None,
    };
    Ok(Target { host, tls, source })
}

/// `$DOCKER_CONFIG`, else `~/.docker`.
fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")))
}

fn tls_files(dir: &Path) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// `currentContext` of config.json; a missing file means none.
fn current_context(config_dir: &Path) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "currentContext", default)]
        current_context: Option<String>,
    }
    let path = config_dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let c: Config = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(c.current_context.filter(|c| !c.is_empty()))
}

/// The docker endpoint of context `name` from the CLI's context store.
fn from_context(config_dir: &Path, name: String, chosen_by: String) -> Result<Target> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints", default)]
        endpoints: std::collections::HashMap<String, Endpoint>,
    }
    #[derive(serde::Deserialize)]
    struct Endpoint {
        #[serde(rename = "Host", default)]
        host: String,
        #[serde(rename = "SkipTLSVerify", default)]
        skip_tls_verify: bool,
    }
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    let meta_path = config_dir.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "docker context {name:?} (chosen by {chosen_by}) not found: cannot read {}",
            meta_path.display()
        )
    })?;
    let meta: Meta = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a docker context", meta_path.display()))?;
    let Some(ep) = meta.endpoints.get("docker").filter(|e| !e.host.is_empty()) else {
        bail!(
            "docker context {name:?} has no docker endpoint ({})",
            meta_path.display()
        );
    };
    let tls_dir = config_dir.join("contexts/tls").join(&id).join("docker");
    let files = tls_files(&tls_dir);
    let has_tls = files.ca.exists() || files.cert.exists();
    if ep.skip_tls_verify {
        bail!(
            "docker context {name:?} skips TLS verification (skip-tls-verify), which composeops \
             does not support: give the context the engine's CA (docker context update \
             --docker ca=…)"
        );
    }
    let host = normalise(&ep.host, has_tls)?;
    let tls = (has_tls && host.starts_with("tcp://")).then_some(files);
    Ok(Target {
        host,
        tls,
        source: Source::Context { name, chosen_by },
    })
}

/// Checks the scheme and fills in the port the docker CLI assumes for `tcp://` (2376 with
/// TLS, else 2375).
fn normalise(host: &str, tls: bool) -> Result<String> {
    let host = host.trim();
    let Some((scheme, rest)) = host.split_once("://") else {
        bail!("invalid Docker host {host:?}: expected unix://PATH, tcp://HOST[:PORT] or ssh://[USER@]HOST[:PORT]");
    };
    match scheme {
        "unix" | "ssh" | "http" => Ok(host.to_string()),
        "tcp" => {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                bail!("invalid Docker host {host:?}: expected tcp://HOST[:PORT]");
            }
            let has_port = match authority.rsplit_once(']') {
                Some((_, after)) => after.starts_with(':'),
                None => authority.contains(':'),
            };
            let port = if tls { 2376 } else { 2375 };
            Ok(match has_port {
                true => format!("tcp://{authority}"),
                false => format!("tcp://{authority}:{port}"),
            })
        }
        _ => {
            bail!("unsupported Docker host {host:?}: composeops speaks unix://, tcp:// and ssh://")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// A context store as `docker context create NAME --docker host=HOST[,ca=…]` leaves it.
    fn add_context(dir: &Path, name: &str, host: &str, tls: bool, skip: bool) {
        let id = hex::encode(Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        let json = format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
        );
        std::fs::write(meta.join("meta.json"), json).unwrap();
        if tls {
            let t = dir.join("contexts/tls").join(&id).join("docker");
            std::fs::create_dir_all(&t).unwrap();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(t.join(f), "x").unwrap();
            }
        }
    }

    fn store() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        add_context(d.path(), "remote", "tcp://10.0.0.1:2376", true, false);
        add_context(d.path(), "plain", "tcp://10.0.0.2", false, false);
        add_context(d.path(), "viassh", "ssh://me@box:2022", false, false);
        add_context(d.path(), "insecure", "tcp://10.0.0.3:2376", false, true);
        d
    }

    fn host_of(flags: &EngineFlags, env: &[(&str, &str)]) -> (String, Source) {
        let t = resolve(flags, &env_of(env)).unwrap();
        (t.host, t.source)
    }

    #[test]
    fn precedence_is_the_docker_clis() {
        let d = store();
        let cfg = d.path().to_str().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"currentContext":"plain"}"#,
        )
        .unwrap();
        let ctx = |name: &str, by: &str| Source::Context {
            name: name.into(),
            chosen_by: by.into(),
        };
        let current = format!("currentContext in {cfg}/config.json");
        let none = EngineFlags::default();
        let base = [("DOCKER_CONFIG", cfg)];
        assert_eq!(
            host_of(&none, &base),
            ("tcp://10.0.0.2:2375".into(), ctx("plain", &current))
        );
        let with_ctx_env = [("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "viassh")];
        assert_eq!(
            host_of(&none, &with_ctx_env),
            ("ssh://me@box:2022".into(), ctx("viassh", "DOCKER_CONTEXT"))
        );
        let with_host_env = [
            ("DOCKER_CONFIG", cfg),
            ("DOCKER_CONTEXT", "viassh"),
            ("DOCKER_HOST", "unix:///env.sock"),
        ];
        assert_eq!(
            host_of(&none, &with_host_env),
            ("unix:///env.sock".into(), Source::DockerHost)
        );
        let h = EngineFlags::host(Some("unix:///flag.sock"));
        assert_eq!(
            host_of(&h, &with_host_env),
            ("unix:///flag.sock".into(), Source::HostFlag)
        );
        // --context beats DOCKER_HOST, as `DOCKER_HOST=… docker --context x info` shows.
        let c = EngineFlags {
            host: None,
            context: Some("remote".into()),
        };
        assert_eq!(
            host_of(&c, &with_host_env),
            ("tcp://10.0.0.1:2376".into(), ctx("remote", "--context"))
        );
        let both = EngineFlags {
            host: Some("unix:///x".into()),
            context: Some("remote".into()),
        };
        let e = resolve(&both, &env_of(&base)).unwrap_err().to_string();
        assert!(
            e.contains("cannot specify both --host and --context"),
            "{e}"
        );
        // `default` is no context at all.
        let dflt = [("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "default")];
        assert_eq!(
            host_of(&none, &dflt),
            (DEFAULT_SOCKET.into(), Source::Default)
        );
    }

    #[test]
    fn no_config_means_the_local_socket() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().to_str().unwrap();
        assert_eq!(
            host_of(&EngineFlags::default(), &[("HOME", home)]),
            (DEFAULT_SOCKET.into(), Source::Default)
        );
        // A system service may have no HOME at all: still the socket, or DOCKER_HOST.
        assert_eq!(
            host_of(&EngineFlags::default(), &[]),
            (DEFAULT_SOCKET.into(), Source::Default)
        );
        let c = EngineFlags {
            host: None,
            context: Some("x".into()),
        };
        let e = resolve(&c, &env_of(&[])).unwrap_err().to_string();
        assert!(e.contains("neither DOCKER_CONFIG nor HOME"), "{e}");
    }

    #[test]
    fn context_tls_material_comes_from_the_store() {
        let d = store();
        let env = env_of(&[("DOCKER_CONFIG", d.path().to_str().unwrap())]);
        let c = |n: &str| EngineFlags {
            host: None,
            context: Some(n.into()),
        };
        let t = resolve(&c("remote"), &env).unwrap();
        let id = hex::encode(Sha256::digest(b"remote"));
        let dir = d.path().join("contexts/tls").join(id).join("docker");
        assert_eq!(t.tls, Some(tls_files(&dir)));
        assert_eq!(resolve(&c("plain"), &env).unwrap().tls, None);
        let e = format!("{:#}", resolve(&c("nosuch"), &env).unwrap_err());
        assert!(
            e.contains("docker context \"nosuch\" (chosen by --context) not found"),
            "{e}"
        );
        let e = resolve(&c("insecure"), &env).unwrap_err().to_string();
        assert!(e.contains("skip-tls-verify"), "{e}");
    }

    #[test]
    fn tls_from_the_environment_as_the_cli_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().to_str().unwrap();
        let none = EngineFlags::default();
        // Any non-empty DOCKER_TLS_VERIFY turns verification on, even "0".
        let t = resolve(
            &none,
            &env_of(&[
                ("DOCKER_CONFIG", cfg),
                ("DOCKER_HOST", "tcp://127.0.0.1"),
                ("DOCKER_TLS_VERIFY", "0"),
                ("DOCKER_CERT_PATH", "/certs"),
            ]),
        )
        .unwrap();
        assert_eq!(t.host, "tcp://127.0.0.1:2376");
        assert_eq!(t.tls, Some(tls_files(Path::new("/certs"))));
        // Without DOCKER_CERT_PATH the files are in the config directory.
        let t = resolve(
            &none,
            &env_of(&[("DOCKER_CONFIG", cfg), ("DOCKER_TLS_VERIFY", "1")]),
        )
        .unwrap();
        assert_eq!(t.host, "tcp://localhost:2376");
        assert_eq!(t.tls, Some(tls_files(d.path())));
        // An empty DOCKER_TLS_VERIFY is unset; a unix socket never uses TLS.
        let t = resolve(
            &EngineFlags::host(Some("tcp://[::1]:9999")),
            &env_of(&[("DOCKER_CONFIG", cfg), ("DOCKER_TLS_VERIFY", "")]),
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.tls), ("tcp://[::1]:9999", None));
        let t = resolve(
            &EngineFlags::host(Some("unix:///s.sock")),
            &env_of(&[("DOCKER_CONFIG", cfg), ("DOCKER_TLS_VERIFY", "1")]),
        )
        .unwrap();
        assert_eq!(t.tls, None);
        let e = resolve(
            &none,
            &env_of(&[("DOCKER_CONFIG", cfg), ("DOCKER_TLS", "1")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("DOCKER_TLS_VERIFY=1"), "{e}");
    }

    #[test]
    fn hosts_are_checked_and_completed() {
        assert_eq!(normalise("tcp://h", false).unwrap(), "tcp://h:2375");
        assert_eq!(normalise("tcp://h/", true).unwrap(), "tcp://h:2376");
        assert_eq!(normalise("tcp://[::1]", false).unwrap(), "tcp://[::1]:2375");
        assert_eq!(normalise("ssh://u@h:22", false).unwrap(), "ssh://u@h:22");
        assert!(normalise("npipe:////./pipe/docker", false).is_err());
        assert!(normalise("/var/run/docker.sock", false).is_err());
    }
}
