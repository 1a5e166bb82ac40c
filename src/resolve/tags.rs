//! Registry calls for update policies (`x-composeops.track` / `cooldown`): the tag list of a
//! repository, and a tag's digest with its image config's `created` time.

use chrono::{DateTime, Utc};

use super::platform::{self, ManifestKind, Platform};
use super::registry::Repo;
use super::ErrorKind;
use crate::track::Probe;

/// Tags asked for per page. The distribution registry caps a page at 100 by default and then
/// serves fewer than asked, so a short page does not mean the last one: paging stops only on
/// an empty page or one that does not move past the last tag seen.
const PAGE: usize = 100;

/// Every tag of `r`'s repository.
pub(crate) async fn list_tags(repo: &Repo<'_>) -> Result<Vec<String>, (ErrorKind, String)> {
    let mut all: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = repo.tags_page(PAGE, last.as_deref()).await?;
        let next = page.last().cloned();
        if page.is_empty() || next == last {
            break;
        }
        all.extend(page);
        last = next;
        // A registry that ignores `last` would repeat the first page forever.
        if all.len() > 100_000 {
            break;
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// What a tag points to, and when its image was made: the manifest (the platform's, for an
/// index) and its config blob. `digest` is what a HEAD of the tag would give (the index digest
/// for a multi-platform image).
pub(crate) async fn probe(
    repo: &Repo<'_>,
    platform: &Platform,
    tag: &str,
) -> Result<Probe, (ErrorKind, String)> {
    let tagged = repo.manifest(tag).await?;
    let image =
        match platform::classify(&tagged.body, platform).map_err(|e| (ErrorKind::Malformed, e))? {
            ManifestKind::Image => tagged.body,
            ManifestKind::Index { platform_digest } => repo.manifest(&platform_digest).await?.body,
        };
    let config = config_digest(&image).ok_or_else(|| {
        (
            ErrorKind::Malformed,
            format!("the manifest of tag {tag} names no config"),
        )
    })?;
    let config = repo.blob(&config).await?;
    Ok(Probe {
        tag: tag.to_string(),
        digest: tagged.digest,
        created: created_of(&String::from_utf8_lossy(&config)),
    })
}

/// The digest of an image manifest's config blob.
fn config_digest(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let d = v.get("config")?.get("digest")?.as_str()?;
    super::reference::check_digest(d).ok()?;
    Some(d.to_string())
}

/// The `created` field of an image config (OCI and Docker both write RFC 3339).
pub(crate) fn created_of(config: &str) -> Option<DateTime<Utc>> {
    let v: serde_json::Value = serde_json::from_str(config).ok()?;
    let s = v.get("created")?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_read_from_docker_and_oci_configs() {
        let docker =
            r#"{"architecture":"amd64","created":"2026-11-20T10:00:00.123456789Z","os":"linux"}"#;
        assert_eq!(
            created_of(docker).unwrap().to_rfc3339(),
            "2026-11-20T10:00:00.123456789+00:00"
        );
        let offset = r#"{"created":"2026-11-20T12:00:00+02:00"}"#;
        assert_eq!(
            created_of(offset).unwrap().to_rfc3339(),
            "2026-11-20T10:00:00+00:00"
        );
        assert_eq!(created_of(r#"{"os":"linux"}"#), None);
        assert_eq!(created_of("not json"), None);
    }

    #[test]
    fn the_config_digest_is_read_from_an_image_manifest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let m =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{d}","size":1}},"layers":[]}}"#);
        assert_eq!(config_digest(m.as_bytes()), Some(d));
        assert_eq!(config_digest(br#"{"config":{"digest":"md5:x"}}"#), None);
        assert_eq!(config_digest(b"{}"), None);
    }
}
