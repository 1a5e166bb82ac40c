//! The part of the registry API (the OCI distribution spec, Docker's registry v2) that resolve
//! uses: a manifest's digest (HEAD) or body (GET) by tag or digest, a page of tags, a blob; with
//! Docker's registry auth: anonymous first, then on a `401` what its `WWW-Authenticate` asks for
//! (Basic with the configured credentials, or a Bearer token from the realm it names, with or
//! without them), remembered per registry, repository and credentials for the rest of the
//! process.
//!
//! Why not a registry crate: oci-client (used before) builds, besides the HTTP client it is
//! configured with, a default one that loads the system's root certificates, even when every
//! registry asked is a loopback one spoken to over plain HTTP. That cost 4–5 ms of CPU per
//! process, the largest single cost of a no-op apply, and its `/v2/` probe before each first
//! request a round trip more. Here the HTTP clients are reqwest's (what oci-client built on),
//! built lazily, one per process: the TLS one, with the system roots, only once an HTTPS
//! registry is asked; challenges are parsed by http-auth (oci-client's own parser).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::{ErrorKind, ImageRef};

/// What is presented to a registry that asks for credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    Anonymous,
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => write!(f, "Anonymous"),
            Auth::Basic(u, _) => write!(f, "Basic({u}, <redacted>)"),
        }
    }
}

/// A registry failure, sorted into what the user can act on, with the detail to show.
pub(crate) type Failure = (ErrorKind, String);

/// A manifest's body as served, and its digest.
pub(crate) struct Manifest {
    pub body: Vec<u8>,
    pub digest: String,
}

/// How long a Bearer token is used when the token server does not say (Docker's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The Authorization a repository accepted last, and until when it may be sent again.
struct Granted {
    header: String,
    until: Option<Instant>,
}

/// Registry host, repository, and the credentials presented.
type GrantKey = (String, String, Auth);

/// The process's registry connections and grants: reqwest clients keep their connections per
/// host, and grants are kept per registry, repository and credentials, so an agent's next
/// check of the same image goes straight to the HEAD.
struct Shared {
    plain: OnceLock<reqwest::Client>,
    tls: OnceLock<reqwest::Client>,
    grants: Mutex<HashMap<GrantKey, Granted>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        plain: OnceLock::new(),
        tls: OnceLock::new(),
        grants: Mutex::new(HashMap::new()),
    })
}

/// Connection attempts give up after this; the lookup's own time limit bounds the rest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for loopback registries, spoken to over plain HTTP as the Docker engine
/// does. It trusts only a placeholder root whose private key was discarded
/// (src/resolve/no-tls-root.pem), so building it loads no root store and a redirect to an
/// HTTPS address fails verification instead of being trusted.
fn plain_client() -> Result<&'static reqwest::Client, Failure> {
    let s = shared();
    if let Some(c) = s.plain.get() {
        return Ok(c);
    }
    // reqwest builds its rustls configuration even for a client that speaks plain HTTP.
    super::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(include_bytes!("no-tls-root.pem"))
        .map_err(|e| (ErrorKind::Other, format!("placeholder TLS root: {e}")))?;
    let c = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_certs_only([root])
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| (ErrorKind::Other, format!("HTTP client: {e}")))?;
    Ok(s.plain.get_or_init(|| c))
}

/// The HTTPS client, with the platform's roots (loading them costs milliseconds: done once per
/// process, off the async workers).
async fn tls_client() -> Result<&'static reqwest::Client, Failure> {
    let s = shared();
    if let Some(c) = s.tls.get() {
        return Ok(c);
    }
    let built = tokio::task::spawn_blocking(|| {
        super::install_crypto_provider();
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
    })
    .await
    .map_err(|e| (ErrorKind::Other, format!("building the HTTPS client: {e}")))?
    .map_err(|e| (ErrorKind::Other, format!("HTTPS client: {e}")))?;
    Ok(s.tls.get_or_init(|| built))
}

const USER_AGENT: &str = concat!("composeops/", env!("CARGO_PKG_VERSION"));

/// The host the registry API of `r` answers on (Docker Hub's is not its name).
fn api_host(r: &ImageRef) -> &str {
    match r.registry.as_str() {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// One registry repository, and the credentials to present to it.
pub(crate) struct Repo<'a> {
    image: &'a ImageRef,
    auth: &'a Auth,
}

impl<'a> Repo<'a> {
    pub fn new(image: &'a ImageRef, auth: &'a Auth) -> Repo<'a> {
        Repo { image, auth }
    }

    fn url(&self, tail: &str) -> String {
        let scheme = if self.image.is_loopback_registry() {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}/{tail}",
            api_host(self.image),
            self.image.path
        )
    }

    async fn client(&self) -> Result<&'static reqwest::Client, Failure> {
        if self.image.is_loopback_registry() {
            plain_client()
        } else {
            tls_client().await
        }
    }

    /// Grants are kept per registry, repository and credentials: a token got with other
    /// credentials (a Docker config that changed) is not sent for these.
    fn grant_key(&self) -> GrantKey {
        (
            api_host(self.image).to_string(),
            self.image.path.clone(),
            self.auth.clone(),
        )
    }

    /// The digest `reference` (a tag or a digest) points to: a HEAD, or a GET when the
    /// registry's HEAD does not say (`Docker-Content-Digest` is optional in the spec).
    pub async fn manifest_digest(&self, reference: &str) -> Result<String, Failure> {
        let resp = self
            .send(Method::HEAD, &format!("manifests/{reference}"), &[], true)
            .await?;
        match content_digest(resp.headers()) {
            Some(d) => Ok(d),
            None => Ok(self.manifest(reference).await?.digest),
        }
    }

    /// The manifest `reference` names, as served (any of the accepted media types).
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, Failure> {
        let resp = self
            .send(Method::GET, &format!("manifests/{reference}"), &[], true)
            .await?;
        let header = content_digest(resp.headers());
        let body = read_body(resp).await?;
        let computed = served_as(&body, reference, "manifest")?;
        let digest = match header {
            Some(d) => d,
            None if reference.starts_with("sha256:") => reference.to_string(),
            None => computed,
        };
        Ok(Manifest { body, digest })
    }

    /// A page of at most `n` tags after `last`, in the registry's order.
    pub async fn tags_page(&self, n: usize, last: Option<&str>) -> Result<Vec<String>, Failure> {
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let n = n.to_string();
        let mut query = vec![("n", n.as_str())];
        query.extend(last.map(|l| ("last", l)));
        let body = read_body(self.send(Method::GET, "tags/list", &query, false).await?).await?;
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| (ErrorKind::Malformed, format!("tag list: {e}")))?;
        Ok(page.tags.unwrap_or_default())
    }

    /// A blob's content (an image config, small), checked against its digest: what a
    /// cooldown reads from it (the image's creation date) decides whether an image deploys.
    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, Failure> {
        let body = read_body(
            self.send(Method::GET, &format!("blobs/{digest}"), &[], false)
                .await?,
        )
        .await?;
        served_as(&body, digest, "blob")?;
        Ok(body)
    }

    /// Sends a request for `tail` under the repository, with the grant the repository accepted
    /// before; on a `401`, answers its challenge once and sends again. A response that is not a
    /// success is the error it means.
    async fn send(
        &self,
        method: Method,
        tail: &str,
        query: &[(&str, &str)],
        manifest: bool,
    ) -> Result<Response, Failure> {
        let client = self.client().await?;
        let url = self.url(tail);
        let key = self.grant_key();
        let mut header = granted(&key);
        for attempt in 0..2 {
            let resp = with_retries(|| {
                let mut req = client.request(method.clone(), &url).query(query);
                if manifest {
                    req = req.header(ACCEPT, super::platform::ACCEPTED_MEDIA_TYPES.join(", "));
                }
                if let Some(h) = &header {
                    req = req.header(AUTHORIZATION, h);
                }
                req
            })
            .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return check(resp).await;
            }
            let challenge = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ");
            let grant = self.answer(client, &challenge).await?;
            header = Some(grant.header.clone());
            shared()
                .grants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), grant);
        }
        unreachable!("the second attempt returns")
    }

    /// The Authorization that answers `challenge`: Basic with the configured credentials, or
    /// a Bearer token for pulling this repository from the realm the challenge names.
    async fn answer(&self, client: &reqwest::Client, challenge: &str) -> Result<Granted, Failure> {
        let parsed = http_auth::parse_challenges(challenge).map_err(|e| {
            (
                ErrorKind::Unauthorized,
                format!("401 with an unreadable WWW-Authenticate {challenge:?}: {e}"),
            )
        })?;
        let param = |c: &http_auth::ChallengeRef, name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if let Some(c) = parsed
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let realm = param(c, "realm").ok_or_else(|| {
                (
                    ErrorKind::Unauthorized,
                    format!("401 with a Bearer challenge without a realm: {challenge}"),
                )
            })?;
            let scope = format!("repository:{}:pull", self.image.path);
            let mut query = vec![("scope", scope)];
            if let Some(s) = param(c, "service") {
                query.push(("service", s));
            }
            return self.token(client, &realm, &query).await;
        }
        if parsed
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            return match self.auth {
                Auth::Basic(u, p) => Ok(Granted {
                    header: basic_header(u, p),
                    until: None,
                }),
                Auth::Anonymous => Err((
                    ErrorKind::Unauthorized,
                    "401 Unauthorized: the registry asks for a username and password".into(),
                )),
            };
        }
        Err((
            ErrorKind::Unauthorized,
            format!("401 with a challenge composeops cannot answer: {challenge:?}"),
        ))
    }

    /// A Bearer token from `realm` (Docker's token protocol: a GET, with Basic credentials when
    /// there are any; the answer's `token` or `access_token`).
    async fn token(
        &self,
        client: &reqwest::Client,
        realm: &str,
        query: &[(&str, String)],
    ) -> Result<Granted, Failure> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut req = client.get(realm).query(query);
        if let Auth::Basic(u, p) = self.auth {
            req = req.header(AUTHORIZATION, basic_header(u, p));
        }
        let resp = req.send().await.map_err(request_failure)?;
        let status = resp.status();
        let body = read_body(resp).await?;
        if !status.is_success() {
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
                _ => ErrorKind::Other,
            };
            return Err((
                kind,
                format!("token server {realm} answered {status}: {}", snippet(&body)),
            ));
        }
        let a: Answer = serde_json::from_slice(&body).map_err(|e| {
            (
                ErrorKind::Malformed,
                format!("token server {realm}: unreadable answer: {e}"),
            )
        })?;
        let token = a.token.or(a.access_token).ok_or_else(|| {
            (
                ErrorKind::Malformed,
                format!("token server {realm} answered without a token"),
            )
        })?;
        let lifetime = a
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renewed a little early, so that a token does not expire between check and use.
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(5));
        Ok(Granted {
            header: format!("Bearer {token}"),
            until: Some(until),
        })
    }
}

/// Pauses before asking again when a registry answers with a transient status: a registry
/// reading a tag that is being written answers 500, a busy one or its proxy 502–504 or 429.
/// Lookups are reads: asking again changes nothing.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

fn is_transient(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
}

/// Sends the request `build` makes, and makes and sends it again after [`RETRY_PAUSES`]
/// while the answer is transient.
async fn with_retries(build: impl Fn() -> reqwest::RequestBuilder) -> Result<Response, Failure> {
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let resp = build().send().await.map_err(request_failure)?;
        match pauses.next() {
            Some(pause) if is_transient(resp.status()) => {
                tracing::debug!(url = %resp.url(), status = %resp.status(), "registry busy, asking again");
                tokio::time::sleep(*pause).await;
            }
            _ => return Ok(resp),
        }
    }
}

/// The Authorization the repository accepted before, while it is still valid.
fn granted(key: &GrantKey) -> Option<String> {
    let grants = shared().grants.lock().unwrap_or_else(|e| e.into_inner());
    let g = grants.get(key)?;
    match g.until {
        Some(t) if t <= Instant::now() => None,
        _ => Some(g.header.clone()),
    }
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn content_digest(h: &HeaderMap) -> Option<String> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| super::reference::check_digest(d).is_ok())
        .map(str::to_string)
}

/// Bodies read from a registry are manifests, tag pages and configs: refuse anything huge.
const MAX_BODY: usize = 16 << 20;

/// The digest of `body`, served for `reference` (a tag or a sha256 digest): a body that does
/// not hash to the digest asked for is not the `what` (manifest, blob) asked for.
fn served_as(body: &[u8], reference: &str, what: &str) -> Result<String, Failure> {
    let computed = super::reference::sha256_digest(body);
    if reference.starts_with("sha256:") && computed != reference {
        return Err((
            ErrorKind::Malformed,
            format!("the {what} served for {reference} hashes to {computed}"),
        ));
    }
    Ok(computed)
}

async fn read_body(mut resp: Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request_failure)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err((
                ErrorKind::Malformed,
                format!("{} served more than {} MiB", resp.url(), MAX_BODY >> 20),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A success passes; anything else is the error it means (the registry's error codes, when it
/// sends some, decide the kind).
async fn check(resp: Response) -> Result<Response, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_body(resp).await.unwrap_or_default();
    Err(classify(status, &body))
}

/// The kind of a failed response: its error codes (`MANIFEST_UNKNOWN`, `DENIED`, …) first,
/// then its status.
pub(crate) fn classify(status: StatusCode, body: &[u8]) -> Failure {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let entries = serde_json::from_slice::<Envelope>(body)
        .map(|e| e.errors)
        .unwrap_or_default();
    let has = |codes: &[&str]| entries.iter().any(|e| codes.contains(&e.code.as_str()));
    let kind = if has(&[
        "MANIFEST_UNKNOWN",
        "NAME_UNKNOWN",
        "TAG_INVALID",
        "BLOB_UNKNOWN",
    ]) {
        ErrorKind::NotFound
    } else if has(&["UNAUTHORIZED", "DENIED"]) {
        ErrorKind::Unauthorized
    } else if has(&["MANIFEST_INVALID", "DIGEST_INVALID"]) {
        ErrorKind::Malformed
    } else {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        }
    };
    let detail = if entries.is_empty() {
        match snippet(body) {
            s if s.is_empty() => status.to_string(),
            s => format!("{status}: {s}"),
        }
    } else {
        let msgs: Vec<String> = entries
            .iter()
            .map(|e| match e.message.as_str() {
                "" => e.code.clone(),
                m => format!("{}: {m}", e.code),
            })
            .collect();
        format!("{status}: {}", msgs.join("; "))
    };
    (kind, detail)
}

/// The start of a body, for an error message.
fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn request_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_decode() || e.is_body() {
        ErrorKind::Malformed
    } else {
        ErrorKind::Unreachable
    };
    (kind, super::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_error_code_then_status() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let (k, d) = classify(StatusCode::NOT_FOUND, body);
        assert_eq!(k, ErrorKind::NotFound);
        assert_eq!(d, "404 Not Found: MANIFEST_UNKNOWN: manifest unknown");
        let (k, _) = classify(StatusCode::FORBIDDEN, br#"{"errors":[{"code":"DENIED"}]}"#);
        assert_eq!(k, ErrorKind::Unauthorized);
        // A HEAD has no body: the status decides.
        assert_eq!(classify(StatusCode::NOT_FOUND, b"").0, ErrorKind::NotFound);
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, b"").0,
            ErrorKind::Unauthorized
        );
        let (k, d) = classify(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(k, ErrorKind::Other);
        assert_eq!(d, "502 Bad Gateway: upstream down");
    }

    #[test]
    fn docker_hub_is_asked_on_its_api_host() {
        let hub = ImageRef::parse("nginx:1.27").unwrap();
        let anon = Auth::Anonymous;
        assert_eq!(
            Repo::new(&hub, &anon).url("manifests/1.27"),
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.27"
        );
        let local = ImageRef::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            Repo::new(&local, &anon).url("tags/list?n=100"),
            "http://127.0.0.1:5000/v2/team/app/tags/list?n=100"
        );
    }

    #[test]
    fn basic_credentials_are_encoded_and_never_printed() {
        assert_eq!(
            basic_header("tester", "s3cret"),
            "Basic dGVzdGVyOnMzY3JldA=="
        );
        let a = Auth::Basic("tester".into(), "s3cret".into());
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
