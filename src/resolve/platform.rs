//! The engine's platform (os/arch/variant, Docker's names) and the choice of a manifest in an
//! image index, the way the engine picks the one it will run.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// `os/architecture[/variant]` with Go's names, as image indexes and `docker info` use them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary was built for, mapped to Docker's names (x86_64 → amd64,
    /// aarch64 → arm64/v8 …). The engine's own os/arch (from `docker info`) should be passed
    /// instead when composeops manages a remote engine.
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        Platform::from_parts(os, std::env::consts::ARCH)
    }

    /// Builds a platform from an os and an architecture in either Rust's or Docker's spelling
    /// (`x86_64`/`amd64`, `aarch64`/`arm64`, `armv7`/`arm`…). The engine reports
    /// `Architecture: x86_64` in `docker info`; indexes say `amd64`.
    pub fn from_parts(os: &str, arch: &str) -> Platform {
        let (architecture, variant) = match arch {
            "x86_64" | "amd64" => ("amd64", None),
            "aarch64" | "arm64" => ("arm64", None),
            "x86" | "i386" | "i686" | "386" => ("386", None),
            "arm" | "armv7" | "armv7l" | "armhf" => ("arm", Some("v7")),
            "armv6l" | "armel" => ("arm", Some("v6")),
            "powerpc64" | "ppc64le" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;
    /// `linux/amd64`, `linux/arm/v7`, `linux/arm64/v8`.
    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::from_parts(os, arch)),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                let mut p = Platform::from_parts(os, arch);
                p.variant = Some(variant.to_string());
                Ok(p)
            }
            _ => Err(format!(
                "platform {s:?} is not OS/ARCH[/VARIANT], e.g. linux/amd64"
            )),
        }
    }
}

/// Media types composeops accepts for a tag: single-platform manifests and indexes, Docker's
/// and OCI's.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const ACCEPTED_MEDIA_TYPES: [&str; 4] = [
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];

/// The parts of a manifest or index that tell which one it is and, for an index, its entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
    config: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<EntryPlatform>,
}

#[derive(Debug, Deserialize)]
struct EntryPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// What a manifest body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest.
    Image,
    /// An index; the digest of the entry for the requested platform.
    Index { platform_digest: String },
}

/// Reads a manifest body. For an index, selects the entry for `platform`: os and architecture
/// must match; a matching variant wins over an entry without one, and for arm64 an entry
/// without a variant or with `v8` both match (as the engine does).
pub fn classify(body: &[u8], platform: &Platform) -> Result<ManifestKind, String> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if raw.schema_version != Some(2) {
        return Err(format!(
            "unsupported manifest schemaVersion {:?} (composeops reads version 2)",
            raw.schema_version
        ));
    }
    let is_index = match raw.media_type.as_deref() {
        Some(DOCKER_MANIFEST_LIST) | Some(OCI_INDEX) => true,
        Some(DOCKER_MANIFEST) | Some(OCI_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported manifest media type {other:?}")),
        // OCI allows mediaType to be absent; the shape tells.
        None => raw.manifests.is_some(),
    };
    if !is_index {
        if raw.config.is_none() || raw.layers.is_none() {
            return Err("image manifest has no config or layers".to_string());
        }
        return Ok(ManifestKind::Image);
    }
    let entries = raw.manifests.ok_or("image index has no manifests")?;
    let matching = |e: &&IndexEntry| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    };
    let candidates: Vec<&IndexEntry> = entries.iter().filter(matching).collect();
    let variant_of = |e: &IndexEntry| e.platform.as_ref().and_then(|p| p.variant.clone());
    let chosen = match &platform.variant {
        Some(v) => candidates
            .iter()
            .find(|e| variant_of(e).as_deref() == Some(v))
            .or_else(|| candidates.iter().find(|e| variant_of(e).is_none())),
        None => candidates
            .iter()
            .find(|e| variant_of(e).is_none())
            .or_else(|| {
                candidates.iter().find(|e| {
                    platform.architecture == "arm64" && variant_of(e).as_deref() == Some("v8")
                })
            })
            .or_else(|| candidates.first()),
    };
    match chosen {
        Some(e) => Ok(ManifestKind::Index {
            platform_digest: e.digest.clone(),
        }),
        None => {
            let available: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            Err(format!(
                "the image index has no manifest for {platform} (it has: {})",
                available.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(os, arch, variant, digest)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "platform": p})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn host_platform_uses_docker_names() {
        assert_eq!(
            Platform::from_parts("linux", "x86_64").to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::from_parts("linux", "aarch64").to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::from_parts("linux", "armv7l").to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            "linux/arm64/v8"
                .parse::<Platform>()
                .unwrap()
                .variant
                .as_deref(),
            Some("v8")
        );
        assert!("linux".parse::<Platform>().is_err());
        let h = Platform::host();
        assert!(!h.architecture.contains('_'), "{h}");
    }

    #[test]
    fn index_entry_for_the_platform_is_selected() {
        let body = index(&[
            ("linux", "arm64", Some("v8"), "sha256:arm"),
            ("linux", "amd64", None, "sha256:amd"),
        ]);
        let amd = Platform::from_parts("linux", "amd64");
        assert_eq!(
            classify(&body, &amd).unwrap(),
            ManifestKind::Index {
                platform_digest: "sha256:amd".into()
            }
        );
        let arm = Platform::from_parts("linux", "arm64");
        assert_eq!(
            classify(&body, &arm).unwrap(),
            ManifestKind::Index {
                platform_digest: "sha256:arm".into()
            }
        );
        let e = classify(&body, &Platform::from_parts("linux", "s390x")).unwrap_err();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/amd64"),
            "{e}"
        );
    }

    #[test]
    fn variants_are_matched() {
        let body = index(&[
            ("linux", "arm", Some("v6"), "sha256:v6"),
            ("linux", "arm", Some("v7"), "sha256:v7"),
        ]);
        let v7 = Platform::from_parts("linux", "armv7l");
        assert_eq!(
            classify(&body, &v7).unwrap(),
            ManifestKind::Index {
                platform_digest: "sha256:v7".into()
            }
        );
    }

    #[test]
    fn single_manifests_and_bad_bodies() {
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {}, "layers": []});
        let p = Platform::host();
        assert_eq!(
            classify(&serde_json::to_vec(&m).unwrap(), &p).unwrap(),
            ManifestKind::Image
        );
        assert!(classify(b"<html>", &p)
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(classify(br#"{"schemaVersion":1}"#, &p)
            .unwrap_err()
            .contains("schemaVersion"));
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"});
        assert!(classify(&serde_json::to_vec(&m).unwrap(), &p)
            .unwrap_err()
            .contains("media type"));
    }
}
