//! The second engine of the test bed: a dockerd with `--tlsverify` on a loopback port
//! (`scripts/testbed.sh` starts it and exports `COMPOSEOPS_TEST_TLS_*`).

use std::path::PathBuf;
use std::process::Command;

/// Where the TLS engine listens and its certificate sets.
#[derive(Debug)]
pub struct TlsEngine {
    /// `tcp://127.0.0.1:PORT`.
    pub host: String,
    /// DOCKER_CERT_PATH of a client the engine trusts (ca.pem, cert.pem, key.pem).
    pub client: PathBuf,
    /// The same client key and certificate with a CA that did not sign the engine's.
    pub wrong_ca: PathBuf,
}

/// The TLS engine, or why the test bed could not start one (the caller prints it and skips).
/// Panics when the test bed was not prepared at all.
pub fn tls_engine() -> Result<TlsEngine, String> {
    if let Ok(reason) = std::env::var("COMPOSEOPS_TEST_TLS_SKIP") {
        return Err(reason);
    }
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run scripts/testbed.sh and `source .testbed/env` first")
        })
    };
    let certs = PathBuf::from(var("COMPOSEOPS_TEST_TLS_CERTS"));
    Ok(TlsEngine {
        host: var("COMPOSEOPS_TEST_TLS_HOST"),
        client: certs.join("client"),
        wrong_ca: certs.join("wrong-ca"),
    })
}

impl TlsEngine {
    /// The environment that points the docker CLI or composeops at this engine.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("DOCKER_HOST", self.host.clone()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", self.client.display().to_string()),
        ]
    }

    /// `docker` against this engine.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .envs(self.env())
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .output()
            .expect("cannot run docker");
        assert!(
            out.status.success(),
            "docker {args:?} on {} failed: {}",
            self.host,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Removes project `name`'s containers and networks from this engine.
    pub fn remove_project(&self, name: &str) {
        let filter = format!("label=com.docker.compose.project={name}");
        for (ls, rm) in [
            (vec!["ps", "-aq"], vec!["rm", "-f"]),
            (vec!["network", "ls", "-q"], vec!["network", "rm"]),
        ] {
            let ids = self.docker(&[&ls[..], &["--filter", &filter]].concat());
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                self.docker(&[&rm[..], &ids[..]].concat());
            }
        }
    }
}
