//! One image pulled from its registry by the engine, with the client's credentials and
//! progress lines. Both stages that make images present use it: pulls (`pull_policy`) and
//! builds (`pull_policy: always` pulls a build service's image first).

use anyhow::bail;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use crate::engine::Engine;

/// Pulls `reference`, printing progress on stderr.
pub(crate) async fn pull(engine: &Engine, reference: &str) -> anyhow::Result<()> {
    crate::progress::line(format!("pulling {reference}"));
    let opts = CreateImageOptionsBuilder::default()
        .from_image(reference)
        .build();
    // The engine does not read the client's Docker config: send the same credentials the
    // registry lookups use (auths, credsStore, credHelpers, DOCKER_CONFIG), when there are any.
    let creds = match crate::resolve::ImageRef::parse(reference) {
        Ok(r) => crate::resolve::credentials::pull_credentials(&r, None)
            .await
            .unwrap_or_else(|e| {
                crate::progress::warn(format!("{e}; pulling {reference} without credentials"));
                None
            }),
        Err(_) => None,
    };
    let creds = creds.map(|c| bollard::auth::DockerCredentials {
        username: Some(c.username),
        password: Some(c.password),
        serveraddress: Some(c.server),
        ..Default::default()
    });
    let mut stream = engine.call().create_image(Some(opts), None, creds);
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        let info = item?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            bail!("{err}");
        }
        let line = match (info.id, info.status) {
            (Some(id), Some(s)) => format!("  {id}: {s}"),
            (None, Some(s)) => format!("  {s}"),
            _ => continue,
        };
        if line != last && !line.contains("Downloading") && !line.contains("Extracting") {
            crate::progress::line(&line);
            last = line;
        }
    }
    Ok(())
}
