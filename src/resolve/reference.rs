//! Image references normalised as Docker does, so that `nginx`, `library/nginx` and
//! `docker.io/library/nginx:latest` are one lookup and one lock entry's repository.
//!
//! Rules (Docker's `reference.ParseNormalizedNamed`): the first path component is a registry
//! host when it contains `.` or `:` or is `localhost`; otherwise the registry is `docker.io`,
//! and a single-component name lives under `library/`. `index.docker.io` is `docker.io`. The
//! tag defaults to `latest` only when there is no digest; `name:tag@digest` keeps both and the
//! digest wins.

use std::fmt;

/// The registry of images named without a host.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host with optional port: `docker.io`, `127.0.0.1:5000`, `ghcr.io`.
    pub registry: String,
    /// Path inside the registry: `library/nginx`, `user/app`.
    pub path: String,
    /// `None` only when a digest is given without a tag.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference is pinned.
    pub digest: Option<String>,
}

/// Why a reference is not a valid image name (the message names the part that is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl ImageRef {
    /// Parses and normalises `reference` (see the module documentation).
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.is_empty() {
            return Err(err("empty"));
        }
        if reference.trim() != reference {
            return Err(err("leading or trailing whitespace"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|e| err(&e))?;
                (r, Some(d.to_string()))
            }
            None => (reference, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            check_tag(t).map_err(|e| err(&e))?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        check_path(&path).map_err(|e| err(&e))?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(ImageRef {
            registry,
            path,
            tag,
            digest,
        })
    }

    /// `registry/path`, e.g. `docker.io/library/nginx`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// The name Docker shows in `RepoDigests` and `docker images`: `nginx`, `user/app`,
    /// `127.0.0.1:5000/app` (Docker Hub's host and `library/` left out).
    pub fn familiar_repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// True when the reference carries a digest: nothing to look up.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// `repository@digest`: what to pull so the tag cannot move under us.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }

    /// The key credentials are stored under in Docker's config.json.
    pub fn credential_server(&self) -> String {
        if self.registry == DOCKER_HUB {
            "https://index.docker.io/v1/".to_string()
        } else {
            self.registry.clone()
        }
    }

    /// Whether Docker talks plain HTTP to this registry by default: loopback hosts only
    /// (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback_registry(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => self.registry.split(':').next().unwrap_or(""),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

impl fmt::Display for ImageRef {
    /// Fully qualified: `docker.io/library/nginx:latest`, `repo:tag@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `sha256:<hex>` of `bytes`: the digest content is named by (by a registry, in a lock, in a
/// config's label).
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:` + 64 lower-case hex digits (or another algorithm with its own hex length).
pub fn check_digest(d: &str) -> Result<(), String> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} is not ALGORITHM:HEX"));
    };
    let expected = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unsupported digest algorithm {algo:?} (sha256, sha384, sha512)"
            ))
        }
    };
    if hex.len() != expected
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {d:?} must have {expected} lower-case hex digits"
        ));
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {t:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ))
    }
}

/// Path components: lower-case alphanumerics separated by `.`, `_`, `__` or dashes.
fn check_path(path: &str) -> Result<(), String> {
    for comp in path.split('/') {
        let valid = !comp.is_empty()
            && comp.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && comp.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && comp.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.");
        if !valid {
            return Err(format!(
                "repository name component {comp:?} must be lower-case letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_official_images_get_library_and_latest() {
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            full("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
    }

    #[test]
    fn user_images_stay_on_docker_hub_without_library() {
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("user/app:v2"), "docker.io/user/app:v2");
        assert_eq!(full("org/team/app"), "docker.io/org/team/app:latest");
    }

    #[test]
    fn first_component_with_dot_colon_or_localhost_is_a_registry() {
        let r = ImageRef::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "app", Some("v1"))
        );
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(full("ghcr.io/owner/app:1.0"), "ghcr.io/owner/app:1.0");
        assert_eq!(full("registry:5000/app"), "registry:5000/app:latest");
        // No dot, colon or localhost: a Docker Hub user name.
        assert_eq!(full("registry/app"), "docker.io/registry/app:latest");
    }

    #[test]
    fn port_is_not_a_tag() {
        let r = ImageRef::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.registry, "127.0.0.1:5000");
    }

    #[test]
    fn pinned_forms() {
        let r = ImageRef::parse(&format!("nginx@{D}")).unwrap();
        assert!(r.is_pinned());
        assert_eq!(r.tag, None, "no default tag when a digest is given");
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{D}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/app:v1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.with_digest(D), format!("127.0.0.1:5000/app@{D}"));
    }

    #[test]
    fn familiar_names_and_credential_keys() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.familiar_repository(), "nginx");
        assert_eq!(r.credential_server(), "https://index.docker.io/v1/");
        let r = ImageRef::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(r.familiar_repository(), "127.0.0.1:5000/app");
        assert_eq!(r.credential_server(), "127.0.0.1:5000");
    }

    #[test]
    fn loopback_registries_use_plain_http() {
        for s in [
            "127.0.0.1:5000/a",
            "127.3.4.5/a",
            "localhost:5000/a",
            "[::1]:5000/a",
        ] {
            assert!(ImageRef::parse(s).unwrap().is_loopback_registry(), "{s}");
        }
        for s in [
            "nginx",
            "ghcr.io/a/b",
            "10.0.0.1:5000/a",
            "registry.local/a",
        ] {
            assert!(!ImageRef::parse(s).unwrap().is_loopback_registry(), "{s}");
        }
    }

    #[test]
    fn invalid_references_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("Nginx", "lower-case"),
            ("nginx:", "tag"),
            ("nginx:-x", "tag"),
            ("nginx@sha256:abc", "hex digits"),
            ("nginx@md5:0123", "algorithm"),
            ("a//b", "component"),
            ("app-:v1", "component"),
        ] {
            let e = ImageRef::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }
}
