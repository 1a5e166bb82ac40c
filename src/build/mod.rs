//! `build`: make the image of each service with a `build:` section, as `docker compose up`
//! does, in the same "desired images" step as pulling and before anything is observed or
//! planned, so a failed build changes no container.
//!
//! A GitOps host must deploy a pushed Dockerfile change, which Compose (building only a
//! missing image) would not: the digest of the build inputs (the context files that
//! `.dockerignore` lets through, plus the build settings) is recorded on the built image as the
//! [`LABEL_INPUTS`] label. When the inputs differ from the label, the image is rebuilt; the new
//! image id then recreates the service's containers. `plan` never builds: it computes the
//! digest and compares it with the label of the local image.
//!
//! The engine's classic builder is used through the API (`/build` with a tar of the context):
//! BuildKit is not required, and build options only BuildKit has are warned about.

mod context;
mod ignore;
mod run;
mod settings;

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Project;
use crate::observe::ObservedImage;
use crate::plan::DesiredImage;

use settings::BuildSettings;

/// Label of a built image: `sha256:…` of its build inputs.
pub const LABEL_INPUTS: &str = "io.composeops.build-inputs";

/// Why an image is (re)built, as the plan shows it.
pub(crate) const MISSING: &str = "image missing";
pub(crate) const CHANGED: &str = "build inputs changed";
pub(crate) const ALWAYS: &str = "pull_policy is build";

/// The images of the services that build, and the local images found or built.
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub images: BTreeMap<String, DesiredImage>,
    pub local: BTreeMap<String, ObservedImage>,
}

/// For each service with `build:`: decides from its pull_policy, the local image and its
/// inputs label whether to build; builds when `build` is set (apply), else only reports the
/// reason (plan: the digest is then unknown when the image would change). Errors name the
/// service and, for a failed build, end with the last lines of the build output.
pub(crate) async fn build_images(
    engine: &Engine,
    project: &Project,
    build: bool,
    warnings: &mut Vec<String>,
) -> Result<Built> {
    let mut out = Built::default();
    // Services sharing one image name build it once (the first in file order).
    let mut done: BTreeMap<String, DesiredImage> = BTreeMap::new();
    for (name, svc) in &project.services {
        let Some(s) = BuildSettings::of(project, name).map_err(Error::InvalidInput)? else {
            continue;
        };
        if let Some(d) = done.get(&s.reference) {
            out.images.insert(name.clone(), d.clone());
            continue;
        }
        if !s.ignored.is_empty() {
            warnings.push(format!(
                "service {name}: composeops builds with the engine's classic builder and does \
                 not apply build.{}",
                s.ignored.join(", build.")
            ));
        }
        let policy = svc.pull_policy.as_deref().unwrap_or("");
        let inputs = inputs_digest(&s).await?;
        let mut local = run::inspect(engine, &s.reference).await?;
        if policy == "always" && build && svc.image.is_some() {
            // Compose pulls a build service's image under `always`; a pull that fails is a
            // warning and the image is built if still missing.
            match crate::image_pull::pull(engine, &s.reference).await {
                Ok(()) => local = run::inspect(engine, &s.reference).await?,
                Err(e) => {
                    warnings.push(format!("cannot pull {} ({e:#}); building it", s.reference))
                }
            }
        }
        let have = local.as_ref().map(|(_, label)| label.as_deref());
        let reason = decide(policy, have, &inputs);
        let mut image = DesiredImage {
            reference: s.reference.clone(),
            digest: local.as_ref().map(|(i, _)| i.id.clone()),
            build: reason.map(str::to_string),
            local_id: None,
        };
        match reason {
            Some(_) if build => {
                let id = run::build(engine, &s, &inputs).await?;
                let Some((img, _)) = run::inspect(engine, &s.reference).await? else {
                    return Err(Error::Engine(format!(
                        "service {name}: image {} was built ({id}) but is not found under its name",
                        s.reference
                    )));
                };
                image.digest = Some(img.id.clone());
                image.local_id = Some(img.id.clone());
                out.local.insert(img.id.clone(), img);
            }
            // Plan: what the build makes is unknown unless the inputs are the image's own.
            Some(_) if have != Some(Some(inputs.as_str())) => image.digest = None,
            _ => {
                if let Some((img, _)) = local {
                    out.local.insert(img.id.clone(), img);
                }
            }
        }
        done.insert(s.reference.clone(), image.clone());
        out.images.insert(name.clone(), image);
    }
    Ok(out)
}

/// Whether to build, and why: `have` is the local image (with its inputs label), if any.
/// Without a pull_policy a build service is rebuilt when its inputs change; `build` always
/// builds (an unchanged context then hits the build cache and yields the same image); the
/// other policies build only a missing image, as Compose does.
fn decide(policy: &str, have: Option<Option<&str>>, inputs: &str) -> Option<&'static str> {
    match (policy, have) {
        (_, None) => Some(MISSING),
        ("build", _) => Some(ALWAYS),
        ("", Some(label)) if label != Some(inputs) => Some(CHANGED),
        _ => None,
    }
}

/// The inputs digest of `s` (reads the whole context: off the async workers).
async fn inputs_digest(s: &BuildSettings) -> Result<String> {
    let s = s.clone();
    let service = s.service.clone();
    tokio::task::spawn_blocking(move || {
        let entries = entries(&s)?;
        context::digest(&serde_json::to_string(&s.inputs)?, &entries)
    })
    .await
    .map_err(Error::of(ErrorKind::Engine))?
    .map_err(|e| Error::InvalidInput(format!("service {service}: build context: {e:#}")))
}

/// The context entries of `s`, with its generated Dockerfile if any.
fn entries(s: &BuildSettings) -> anyhow::Result<Vec<context::Entry>> {
    if !s.context.is_dir() {
        anyhow::bail!(
            "build.context {} is not a directory (it is relative to the compose file)",
            s.context.display()
        );
    }
    let mut e = context::walk(&s.context, s.keep())?;
    if let Some(data) = &s.generated {
        e.retain(|x| !matches!(x, context::Entry::File { rel, .. } if rel == settings::GENERATED_DOCKERFILE));
        e.push(context::Entry::Generated {
            rel: settings::GENERATED_DOCKERFILE.into(),
            data: data.clone(),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let d = "sha256:1";
        assert_eq!(decide("", None, d), Some(MISSING));
        assert_eq!(decide("", Some(Some(d)), d), None);
        assert_eq!(decide("", Some(Some("sha256:0")), d), Some(CHANGED));
        assert_eq!(
            decide("", Some(None), d),
            Some(CHANGED),
            "built by someone else"
        );
        assert_eq!(decide("build", Some(Some(d)), d), Some(ALWAYS));
        assert_eq!(decide("missing", Some(Some("sha256:0")), d), None);
        assert_eq!(decide("never", None, d), Some(MISSING));
        assert_eq!(decide("always", Some(None), d), None);
    }
}
