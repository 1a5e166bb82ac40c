//! Registry calls for update policies (`x-composeops.track` / `cooldown`): the tag list of a
//! repository, and a tag's digest with its image config's `created` time.

use chrono::{DateTime, Utc};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use super::{classify_error, oci_reference, ErrorKind, ImageRef};
use crate::track::Probe;

/// Tags asked for per page. The distribution registry caps a page at 100 by default and then
/// serves fewer than asked, so a short page does not mean the last one: paging stops only on
/// an empty page or one that does not move past the last tag seen.
const PAGE: usize = 100;

/// Every tag of `r`'s repository.
pub(crate) async fn list_tags(
    client: &Client,
    r: &ImageRef,
    auth: &RegistryAuth,
) -> Result<Vec<String>, (ErrorKind, String)> {
    let reference = oci_reference(r, None);
    let mut all: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = client
            .list_tags(&reference, auth, Some(PAGE), last.as_deref())
            .await
            .map_err(classify_error)?;
        let next = page.tags.last().cloned();
        if page.tags.is_empty() || next == last {
            break;
        }
        all.extend(page.tags);
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
    client: &Client,
    r: &ImageRef,
    tag: &str,
    auth: &RegistryAuth,
) -> Result<Probe, (ErrorKind, String)> {
    let mut tagged = r.clone();
    tagged.tag = Some(tag.to_string());
    tagged.digest = None;
    let reference = oci_reference(&tagged, None);
    let (_, manifest_digest, config, list_digest) = client
        .pull_manifest_and_config_and_list_digest(&reference, auth)
        .await
        .map_err(classify_error)?;
    Ok(Probe {
        tag: tag.to_string(),
        digest: list_digest.unwrap_or(manifest_digest),
        created: created_of(&config),
    })
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
}
