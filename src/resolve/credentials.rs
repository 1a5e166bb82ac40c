//! Registry credentials from Docker's config, the same ones `docker login` wrote: `auths`,
//! `credsStore` and `credHelpers` (through docker_credential, which runs helper programs).

use std::path::PathBuf;

use super::registry::Auth;
use docker_credential::{CredentialRetrievalError, DockerCredential};

/// The auth to present to `server` (a config.json key: `host:port`, or
/// `https://index.docker.io/v1/` for Docker Hub). No configured credential means anonymous;
/// a Bearer challenge is then still answered with an anonymous token.
///
/// `config_dir` overrides `$DOCKER_CONFIG`/`~/.docker`. Helpers are processes, so the lookup
/// runs on the blocking pool.
pub(crate) async fn registry_auth(
    server: String,
    config_dir: Option<PathBuf>,
) -> Result<Auth, String> {
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
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(Auth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(_)) => {
            // An identity token is an OAuth refresh token, for a flow composeops does not
            // speak: fall back to anonymous and say so.
            tracing::warn!(
                registry = %server,
                "the Docker config holds an identity token for this registry, which composeops \
                 cannot use yet; trying anonymous access (log in with a username and password \
                 or an access token instead)"
            );
            Ok(Auth::Anonymous)
        }
        Err(
            CredentialRetrievalError::NoCredentialConfigured
            | CredentialRetrievalError::ConfigNotFound
            | CredentialRetrievalError::ConfigReadError,
        ) => Ok(Auth::Anonymous),
        Err(e) => Err(describe(&e)),
    }
}

/// Username and password for pulling `image` through the engine (bollard's
/// `DockerCredentials { username, password, serveraddress }`), from the same Docker config the
/// resolver reads; `Ok(None)` for anonymous pulls. Apply calls this before pulling
/// `repository@digest` from a private registry.
pub async fn pull_credentials(
    image: &super::ImageRef,
    config_dir: Option<PathBuf>,
) -> Result<Option<PullCredentials>, String> {
    let server = image.credential_server();
    match registry_auth(server.clone(), config_dir).await? {
        Auth::Basic(username, password) => Ok(Some(PullCredentials {
            username,
            password,
            server,
        })),
        _ => Ok(None),
    }
}

/// What the engine needs in its `X-Registry-Auth` header to pull from a private registry.
#[derive(Clone, PartialEq, Eq)]
pub struct PullCredentials {
    pub username: String,
    pub password: String,
    /// Registry address as Docker's config keys it (`host:port`, or Docker Hub's v1 URL).
    pub server: String,
}

impl std::fmt::Debug for PullCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("server", &self.server)
            .finish()
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
        assert!(matches!(a, Auth::Basic(ref u, ref p) if u == "tester" && p == "s3cret"));
        let a = rt()
            .block_on(registry_auth("other:5000".into(), Some(dir.path().into())))
            .unwrap();
        assert!(matches!(a, Auth::Anonymous));
    }

    #[test]
    fn pull_credentials_for_an_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dGVzdGVyOnMzY3JldA=="}}}"#,
        )
        .unwrap();
        let img = super::super::ImageRef::parse("127.0.0.1:5000/app:v1").unwrap();
        let c = rt()
            .block_on(pull_credentials(&img, Some(dir.path().into())))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str(), c.server.as_str()),
            ("tester", "s3cret", "127.0.0.1:5000")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let img = super::super::ImageRef::parse("nginx").unwrap();
        assert_eq!(
            rt().block_on(pull_credentials(&img, Some(dir.path().into())))
                .unwrap(),
            None
        );
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
        assert!(matches!(a, Auth::Anonymous));
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
