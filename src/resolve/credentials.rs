//! Registry credentials from Docker's config, the same ones `docker login` wrote: `auths`,
//! `credsStore` and `credHelpers` (through docker_credential, which runs helper programs).

use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

/// The auth to present to `server` (a config.json key: `host:port`, or
/// `https://index.docker.io/v1/` for Docker Hub). No configured credential means anonymous;
/// oci-client then still follows a Bearer challenge for an anonymous token.
///
/// `config_dir` overrides `$DOCKER_CONFIG`/`~/.docker`. Helpers are processes, so the lookup
/// runs on the blocking pool.
pub async fn registry_auth(
    server: String,
    config_dir: Option<PathBuf>,
) -> Result<RegistryAuth, String> {
    let lookup = server.clone();
    let found = tokio::task::spawn_blocking(move || match config_dir {
        Some(dir) => {
            let path = dir.join("config.json");
            match std::fs::File::open(&path) {
                Ok(f) => docker_credential::get_credential_from_reader(
                    std::io::BufReader::new(f),
                    &lookup,
                ),
                Err(_) => Err(CredentialRetrievalError::ConfigNotFound),
            }
        }
        None => docker_credential::get_credential(&lookup),
    })
    .await
    .map_err(|e| format!("credential lookup did not finish: {e}"))?;
    match found {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(_)) => {
            // An identity token is an OAuth refresh token; oci-client has no refresh-token
            // flow, so fall back to anonymous and say so.
            tracing::warn!(
                registry = %server,
                "the Docker config holds an identity token for this registry, which composeops \
                 cannot use yet; trying anonymous access (log in with a username and password \
                 or an access token instead)"
            );
            Ok(RegistryAuth::Anonymous)
        }
        Err(
            CredentialRetrievalError::NoCredentialConfigured
            | CredentialRetrievalError::ConfigNotFound
            | CredentialRetrievalError::ConfigReadError,
        ) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(describe(&e)),
    }
}

fn describe(e: &CredentialRetrievalError) -> String {
    match e {
        CredentialRetrievalError::HelperFailure { .. }
        | CredentialRetrievalError::HelperCommunicationError => {
            format!("the credential helper failed ({e})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn auths_entry_gives_basic_credentials() {
        let dir = tempfile::tempdir().unwrap();
        // "tester:s3cret"
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dGVzdGVyOnMzY3JldA=="}}}"#,
        )
        .unwrap();
        let a = rt()
            .block_on(registry_auth(
                "127.0.0.1:5000".into(),
                Some(dir.path().into()),
            ))
            .unwrap();
        assert!(matches!(a, RegistryAuth::Basic(ref u, ref p) if u == "tester" && p == "s3cret"));
        let a = rt()
            .block_on(registry_auth("other:5000".into(), Some(dir.path().into())))
            .unwrap();
        assert!(matches!(a, RegistryAuth::Anonymous));
    }

    #[test]
    fn missing_config_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let a = rt()
            .block_on(registry_auth(
                "127.0.0.1:5000".into(),
                Some(dir.path().into()),
            ))
            .unwrap();
        assert!(matches!(a, RegistryAuth::Anonymous));
    }

    #[test]
    fn failing_helper_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"127.0.0.1:5000":"composeops-no-such-helper"}}"#,
        )
        .unwrap();
        let e = rt()
            .block_on(registry_auth(
                "127.0.0.1:5000".into(),
                Some(dir.path().into()),
            ))
            .unwrap_err();
        assert!(!e.is_empty());
    }
}
