//! One image pulled from its registry by the engine, with the client's credentials and
//! progress lines. Both stages that make images present use it: pulls (`pull_policy`) and
//! builds (`pull_policy: always` pulls a build service's image first).

use anyhow::bail;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bollard::models::CreateImageInfo;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::engine::Engine;
use crate::progress::Mode;

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
    let started = Instant::now();
    let mut stream = engine.call().create_image(Some(opts), None, creds);
    let mut view = PullView::new(reference);
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                view.clear();
                return Err(e.into());
            }
        };
        if let Some(err) = info.error_detail.as_ref().and_then(|e| e.message.clone()) {
            view.clear();
            bail!("{err}");
        }
        view.update(&info);
    }
    view.finish(started.elapsed());
    Ok(())
}

/// What one pull shows while it runs, as `--progress` says: bars per layer on a terminal,
/// each layer's status changes as JSON events, or nothing until the summary line.
pub(crate) struct PullView {
    reference: String,
    mode: Mode,
    /// Layer id -> (last status, bytes to download).
    layers: BTreeMap<String, (String, u64)>,
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
}

impl PullView {
    pub(crate) fn new(reference: &str) -> PullView {
        let mode = crate::progress::mode();
        PullView {
            reference: reference.to_string(),
            mode,
            layers: BTreeMap::new(),
            bars: (mode == Mode::Tty).then(|| (MultiProgress::new(), HashMap::new())),
        }
    }

    fn update(&mut self, info: &CreateImageInfo) {
        let detail = info.progress_detail.as_ref();
        self.update_layer(
            info.id.as_deref(),
            info.status.as_deref(),
            detail.and_then(|d| d.current),
            detail.and_then(|d| d.total),
        );
    }

    /// One status message of the engine about a layer (`Downloading`, `Pull complete`), from a
    /// pull or from the base-image pull inside a build.
    pub(crate) fn update_layer(
        &mut self,
        id: Option<&str>,
        status: Option<&str>,
        current: Option<i64>,
        total: Option<i64>,
    ) {
        let (Some(id), Some(status)) = (id, status) else {
            return;
        };
        // `<tag>: Pulling from <repo>` names the image, not a layer.
        if status.starts_with("Pulling from") {
            return;
        }
        let (id, status) = (id.to_string(), status.to_string());
        let current = current.unwrap_or(0).max(0) as u64;
        let total = total.unwrap_or(0).max(0) as u64;
        let entry = self.layers.entry(id.clone()).or_default();
        let changed = entry.0 != *status;
        entry.0 = status.clone();
        if status == "Downloading" && total > entry.1 {
            entry.1 = total;
        }
        match (&mut self.bars, self.mode) {
            (Some((multi, bars)), _) => {
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}",
                        )
                        .expect("static template"),
                    );
                    b.set_prefix(id.clone());
                    b
                });
                if total > 0 {
                    bar.set_length(total);
                    bar.set_position(current);
                }
                bar.set_message(status.clone());
            }
            (None, Mode::Json) if changed => {
                crate::progress::layer(&self.reference, &id, &status, current, total)
            }
            _ => {}
        }
    }

    pub(crate) fn has_layers(&self) -> bool {
        !self.layers.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        if let Some((multi, _)) = self.bars.take() {
            let _ = multi.clear();
        }
    }

    /// Clears the bars and prints one line: layers, bytes downloaded, time.
    pub(crate) fn finish(&mut self, took: std::time::Duration) {
        self.clear();
        let fetched: u64 = self.layers.values().map(|(_, t)| t).sum();
        crate::progress::line(format!(
            "pulled {}: {} layers, {} downloaded in {:.1}s",
            self.reference,
            self.layers.len(),
            indicatif::HumanBytes(fetched),
            took.as_secs_f64()
        ));
    }
}
