//! The engine side of a build: inspect the local image, send the context to `/build` and
//! stream its output as progress.

use std::collections::{HashMap, VecDeque};

use bollard::query_parameters::{BuildImageOptions, BuildImageOptionsBuilder};
use futures_util::StreamExt;

use super::settings::BuildSettings;
use super::{context, LABEL_INPUTS};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::ObservedImage;
use crate::spec::ImageDefaults;

/// How many lines of build output a failure quotes.
const TAIL: usize = 12;

/// The local image `reference` and its inputs label, or `None` when there is none.
pub(super) async fn inspect(
    engine: &Engine,
    reference: &str,
) -> Result<Option<(ObservedImage, Option<String>)>> {
    match engine.call().inspect_image(reference).await {
        Ok(img) => {
            let label = img
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_INPUTS).cloned());
            let observed = ObservedImage {
                id: img.id.clone().unwrap_or_default(),
                repo_digests: img.repo_digests.clone().unwrap_or_default(),
                repo_tags: img.repo_tags.clone().unwrap_or_default(),
                defaults: img
                    .config
                    .as_ref()
                    .map(ImageDefaults::from_config)
                    .unwrap_or_default(),
            };
            Ok(Some((observed, label)))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(Error::EngineUnavailable(format!(
            "cannot inspect image {reference}: {e}"
        ))),
    }
}

/// Builds `s` with the classic builder, labelled with `inputs`; returns the image id the
/// engine reports. Each Dockerfile step is one progress line.
pub(super) async fn build(engine: &Engine, s: &BuildSettings, inputs: &str) -> Result<String> {
    let svc = s.service.as_str();
    let fail = |msg: String| Error::InvalidInput(format!("service {svc}: {msg}"));
    if s.inputs.extra_hosts.len() > 1 {
        // The API client sends one `extrahosts` query value.
        return Err(fail(format!(
            "build.extra_hosts has {} entries; composeops passes at most one to the builder",
            s.inputs.extra_hosts.len()
        )));
    }
    let body = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || context::tar(&super::entries(&s)?))
            .await
            .map_err(Error::of(ErrorKind::Engine))?
            .map_err(|e| fail(format!("build context: {e:#}")))?
    };
    crate::progress::service(
        svc,
        format!(
            "building {} from {} ({} KiB context)",
            s.reference,
            s.context.display(),
            body.len() / 1024
        ),
    );
    let o = options(s, inputs).map_err(fail)?;
    let mut stream = engine
        .call()
        .build_image(o, None, Some(bollard::body_full(body.into())));
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut view = BuildView::new(svc, &s.reference);
    let started = std::time::Instant::now();
    let mut id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            // A failing step arrives as a stream error carrying the builder's own message.
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                view.clear();
                return Err(fail(failure(&s.reference, &error, &tail)));
            }
            Err(e) => {
                view.clear();
                return Err(fail(failure(&s.reference, &e.to_string(), &tail)));
            }
        };
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            view.clear();
            return Err(fail(failure(&s.reference, &err, &tail)));
        }
        // The base image's pull inside the build: its layers, as a pull shows them.
        let detail = info.progress_detail.as_ref();
        view.base.update_layer(
            info.id.as_deref(),
            info.status.as_deref(),
            detail.and_then(|d| d.current),
            detail.and_then(|d| d.total),
        );
        if let Some(a) = info.aux.and_then(|a| a.id) {
            id = Some(a);
        }
        for line in info.stream.iter().flat_map(|s| s.lines()) {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(step) = line.strip_prefix("Step ") {
                view.step(step);
            }
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        }
    }
    let id = id.unwrap_or_default();
    view.finish(started.elapsed());
    Ok(id)
}

/// What a build shows while it runs, as `--progress` says: on a terminal, a bar of the
/// Dockerfile's steps (each step is a layer) under the bars of the base image's pull; as JSON,
/// one event per step; otherwise (plain, the agent's log) one line when it starts and one
/// when it is built.
struct BuildView {
    service: String,
    reference: String,
    base: crate::image_pull::PullView,
    steps: Option<indicatif::ProgressBar>,
    done: u64,
}

impl BuildView {
    fn new(service: &str, reference: &str) -> BuildView {
        BuildView {
            service: service.to_string(),
            reference: reference.to_string(),
            base: crate::image_pull::PullView::new(reference),
            steps: None,
            done: 0,
        }
    }

    /// `3/7 : RUN make` (the builder's `Step ` line without that word).
    fn step(&mut self, step: &str) {
        let (count, text) = step.split_once(" : ").unwrap_or((step, ""));
        let (n, total) = count.split_once('/').unwrap_or((count, count));
        let (n, total) = (n.parse().unwrap_or(0), total.parse().unwrap_or(0));
        self.done = n;
        match crate::progress::mode() {
            crate::progress::Mode::Tty => {
                let bar = self.steps.get_or_insert_with(|| {
                    let b = indicatif::ProgressBar::new(total);
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "[{prefix}] {bar:30} step {pos}/{len} {wide_msg}",
                        )
                        .expect("static template"),
                    );
                    b.set_prefix(self.service.clone());
                    b
                });
                bar.set_length(total);
                bar.set_position(n);
                bar.set_message(text.to_string());
            }
            crate::progress::Mode::Json => crate::progress::layer(
                &self.reference,
                &format!("step {n}/{total}"),
                text,
                n,
                total,
            ),
            _ => {}
        }
    }

    fn clear(&mut self) {
        self.base.clear();
        if let Some(b) = self.steps.take() {
            b.finish_and_clear();
        }
    }

    /// Clears the bars and prints one line: the image, its steps and the time it took.
    fn finish(&mut self, took: std::time::Duration) {
        if self.base.has_layers() {
            self.base.finish(took);
        }
        self.clear();
        crate::progress::service(
            &self.service,
            format!(
                "built {} ({} steps in {:.1}s)",
                self.reference,
                self.done,
                took.as_secs_f64()
            ),
        );
    }
}

/// The `/build` query of `s`: its settings, plus the inputs and Compose labels.
fn options(s: &BuildSettings, inputs: &str) -> std::result::Result<BuildImageOptions, String> {
    let mut labels: HashMap<String, String> = s.inputs.labels.clone().into_iter().collect();
    labels.insert(LABEL_INPUTS.into(), inputs.into());
    // As Compose labels what it builds: `docker image ls --filter label=…project=P` finds the
    // project's images, including the ones a rebuild left untagged.
    labels.insert(crate::spec::LABEL_PROJECT.into(), s.project.clone());
    labels.insert(crate::spec::LABEL_SERVICE.into(), s.service.clone());
    let args: HashMap<String, String> = s.inputs.args.clone().into_iter().collect();
    let mut o = BuildImageOptionsBuilder::default()
        .dockerfile(&s.dockerfile)
        .t(&s.reference)
        .rm(true)
        .forcerm(true)
        .nocache(s.no_cache)
        .buildargs(&args)
        .labels(&labels);
    if s.pull {
        o = o.pull("1");
    }
    if let Some(t) = &s.inputs.target {
        o = o.target(t);
    }
    if let Some(h) = s.inputs.extra_hosts.first() {
        o = o.extrahosts(h);
    }
    if let Some(n) = &s.inputs.network {
        o = o.networkmode(n);
    }
    if let Some(sz) = s.inputs.shm_size {
        let sz = i32::try_from(sz).map_err(|_| "build.shm_size is over 2 GiB".to_string())?;
        o = o.shmsize(sz);
    }
    Ok(o.build())
}

fn failure(reference: &str, err: &str, tail: &VecDeque<String>) -> String {
    let mut m = format!("building image {reference} failed: {}", err.trim());
    if !tail.is_empty() {
        m.push_str("\nlast lines of the build output:");
        for l in tail {
            m.push_str("\n  ");
            m.push_str(l);
        }
    }
    m.push_str("\nfix the Dockerfile or the build context; nothing was changed");
    m
}
