//! Saved plans, as Terraform has them: `composeops plan -o FILE` writes the plan together with
//! what it was made from (how the project was loaded, a digest of the loaded project, the image
//! digests it resolved, and what ran), and `composeops apply FILE` applies exactly that plan.
//! Apply loads the project again the same way and plans again against the saved digests; it
//! refuses when the loaded project, what runs, or the actions differ from the saved ones, so
//! what a reviewer approved is what happens, or nothing does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::converge::Planned;
use crate::error::{Error, Result};
use crate::load::LoadOptions;
use crate::model::Project;
use crate::observe::Observed;
use crate::plan::{Plan, ServiceAction};
use crate::resolve::ResolvedImage;

/// The `format` of the files this version writes and reads.
pub const FORMAT: &str = "composeops-saved-plan/1";

/// A saved plan (`plan -o FILE`). JSON; schema `schemas/saved-plan.schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "composeops saved plan (plan -o FILE, apply FILE)")]
pub struct SavedPlan {
    /// `composeops-saved-plan/1`.
    pub format: String,
    /// When the plan was made (RFC 3339, UTC).
    pub created: String,
    /// The composeops version that made it.
    pub composeops_version: String,
    /// How the project was loaded: `apply FILE` loads it again the same way.
    pub inputs: Inputs,
    /// sha256 of the loaded project (files merged, variables interpolated).
    pub project_digest: String,
    /// The registry (or lock) digest each service resolved to; apply pulls and runs these.
    /// Services absent run a local or built image.
    pub digests: IndexMap<String, ResolvedImage>,
    /// What ran when the plan was made.
    pub observed: Seen,
    /// The plan, as `plan --json` prints it.
    pub plan: Plan,
}

/// The load options of a saved plan, absolute, so `apply FILE` works from any directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub project_name: String,
    pub project_directory: PathBuf,
    /// The compose files, in merge order.
    pub files: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// `--prune`: the plan removes orphan containers.
    #[serde(default)]
    pub prune: bool,
}

/// The project's containers (by name), networks and volumes as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub containers: BTreeMap<String, SeenContainer>,
    pub networks: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeenContainer {
    pub id: String,
    /// running, exited, …
    pub state: String,
    pub image_id: String,
}

impl Seen {
    pub fn of(observed: &Observed) -> Seen {
        let containers = observed
            .containers
            .iter()
            .map(|c| {
                let seen = SeenContainer {
                    id: c.id.clone(),
                    state: c.state.clone(),
                    image_id: c.image_id.clone(),
                };
                (c.name.clone(), seen)
            })
            .collect();
        Seen {
            containers,
            networks: observed.networks.clone(),
            volumes: observed.volumes.clone(),
        }
    }

    /// What differs from `was`, one line each ("web-1 was recreated (id 1234 -> 5678)").
    fn changes_since(&self, was: &Seen) -> Vec<String> {
        let mut out = Vec::new();
        for (name, old) in &was.containers {
            match self.containers.get(name) {
                None => out.push(format!("container {name} is gone")),
                Some(now) if now.id != old.id => out.push(format!(
                    "container {name} was replaced ({} -> {})",
                    short(&old.id),
                    short(&now.id)
                )),
                Some(now) if now.state != old.state => out.push(format!(
                    "container {name} is {} (was {})",
                    now.state, old.state
                )),
                Some(now) if now.image_id != old.image_id => {
                    out.push(format!("container {name} runs another image"))
                }
                Some(_) => {}
            }
        }
        for name in self.containers.keys() {
            if !was.containers.contains_key(name) {
                out.push(format!("container {name} appeared"));
            }
        }
        for (what, now, then) in [
            ("network", &self.networks, &was.networks),
            ("volume", &self.volumes, &was.volumes),
        ] {
            for n in then.difference(now) {
                out.push(format!("{what} {n} is gone"));
            }
            for n in now.difference(then) {
                out.push(format!("{what} {n} appeared"));
            }
        }
        out
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// sha256 (hex) of the loaded project's JSON: any change of a file, an included file, an env
/// file or a variable that reaches the project changes it. The services' `x-composeops.verify`
/// commands are not in that JSON (Compose does not see them) but run on the host during apply,
/// so they are hashed after it; a project without one keeps the digest it always had.
pub fn project_digest(project: &Project) -> String {
    let json = serde_json::to_vec(project).expect("a project serialises");
    let mut h = Sha256::new();
    h.update(json);
    for (name, s) in &project.services {
        if let Some(v) = &s.verify {
            let check = serde_json::json!([name, v.argv, v.timeout.as_millis() as u64]);
            h.update(check.to_string());
        }
    }
    format!("{:x}", h.finalize())
}

impl Inputs {
    /// The inputs of a project loaded with `opts`, made absolute.
    pub fn new(project: &Project, opts: &LoadOptions, prune: bool) -> Inputs {
        Inputs {
            project_name: project.name.clone(),
            project_directory: project.working_dir.clone(),
            files: project.config_files.clone(),
            env_files: opts.env_files.iter().map(|f| opts.cwd.join(f)).collect(),
            profiles: opts.profiles.clone(),
            prune,
        }
    }

    /// Options that load the same project again, with this process's environment.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            files: self.files.clone(),
            project_name: Some(self.project_name.clone()),
            project_directory: Some(self.project_directory.clone()),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
            cwd: self.project_directory.clone(),
            ..LoadOptions::from_process()
        }
    }
}

impl SavedPlan {
    pub fn new(inputs: Inputs, planned: &Planned) -> SavedPlan {
        SavedPlan {
            format: FORMAT.into(),
            created: crate::lock::now_rfc3339(),
            composeops_version: env!("CARGO_PKG_VERSION").into(),
            inputs,
            project_digest: project_digest(&planned.desired.project),
            digests: planned.digests.clone(),
            observed: Seen::of(&planned.observed),
            plan: planned.plan.clone(),
        }
    }

    /// Reads `path`; errors name the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<SavedPlan> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidInput(format!("cannot read saved plan {}: {e}", path.display()))
        })?;
        let head: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidInput(format!(
                "{}:{}: not a saved plan (expected the JSON that `composeops plan -o FILE` \
                 writes; a compose file is given with -f FILE or its directory): {e}",
                path.display(),
                e.line()
            ))
        })?;
        match head.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "{}: format {other:?} is not one this composeops reads ({FORMAT}): make \
                     the plan again with this version",
                    path.display()
                )))
            }
            None => {
                return Err(Error::InvalidInput(format!(
                    "{}: not a saved plan (no \"format\" field); write one with \
                     `composeops plan -o FILE`",
                    path.display()
                )))
            }
        }
        serde_json::from_value(head)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }

    /// Writes the plan to `path` atomically (a partial file is never left under its name).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a saved plan serialises") + "\n";
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|e| {
            Error::InvalidInput(format!("cannot write saved plan {}: {e}", path.display()))
        })
    }

    /// The project loaded again must be the one planned.
    pub fn check_project(&self, project: &Project) -> Result<()> {
        if project_digest(project) != self.project_digest {
            return Err(Error::Conflict(format!(
                "the saved plan is stale: project {} loads differently than when the plan was \
                 made ({}): a compose file, an env file or a variable changed. Make the plan \
                 again (composeops plan -o FILE)",
                self.inputs.project_name, self.created
            )));
        }
        Ok(())
    }

    /// What runs, and what the plan made now would do, must be what was saved.
    pub fn check_current(&self, planned: &Planned) -> Result<()> {
        let mut changes = Seen::of(&planned.observed).changes_since(&self.observed);
        changes.extend(action_changes(&self.plan, &planned.plan));
        if changes.is_empty() {
            return Ok(());
        }
        Err(Error::Conflict(format!(
            "the saved plan is stale: what runs changed since it was made ({}):\n  {}\nNothing \
             was changed. Make the plan again (composeops plan -o FILE)",
            self.created,
            changes.join("\n  ")
        )))
    }

    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(SavedPlan)).expect("schema serialises")
    }
}

/// Services whose action differs, and orphan removals that differ. Reasons are not compared:
/// a build planned as "image missing" reads as a digest change once built, for the same action.
fn action_changes(saved: &Plan, now: &Plan) -> Vec<String> {
    let actions = |p: &Plan| -> BTreeMap<String, ServiceAction> {
        p.services
            .iter()
            .map(|s| (s.service.clone(), s.action))
            .collect()
    };
    let (was, is) = (actions(saved), actions(now));
    let mut out = Vec::new();
    for (svc, a) in &is {
        match was.get(svc) {
            Some(b) if b == a => {}
            Some(b) => out.push(format!(
                "service {svc}: planned {}, now {}",
                b.as_str(),
                a.as_str()
            )),
            None => out.push(format!("service {svc} was not in the plan")),
        }
    }
    let orphans = |p: &Plan| -> BTreeSet<String> {
        p.orphans
            .iter()
            .filter(|o| o.remove)
            .map(|o| o.name.clone())
            .collect()
    };
    if orphans(saved) != orphans(now) {
        out.push("the orphan containers to remove differ".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(containers: &[(&str, &str, &str)]) -> Seen {
        Seen {
            containers: containers
                .iter()
                .map(|(n, id, state)| {
                    let c = SeenContainer {
                        id: id.to_string(),
                        state: state.to_string(),
                        image_id: "sha256:img".into(),
                    };
                    (n.to_string(), c)
                })
                .collect(),
            networks: ["p_default".to_string()].into(),
            volumes: BTreeSet::new(),
        }
    }

    #[test]
    fn each_change_of_what_runs_is_named() {
        let was = seen(&[
            ("p-web-1", "aaaa", "running"),
            ("p-db-1", "bbbb", "running"),
        ]);
        assert!(was.changes_since(&was).is_empty());
        let mut now = seen(&[("p-web-1", "cccc", "running"), ("p-db-1", "bbbb", "exited")]);
        now.containers.insert(
            "p-x-1".into(),
            SeenContainer {
                id: "dddd".into(),
                state: "running".into(),
                image_id: "sha256:img".into(),
            },
        );
        now.networks.clear();
        let got = now.changes_since(&was);
        assert_eq!(
            got,
            vec![
                "container p-db-1 is exited (was running)",
                "container p-web-1 was replaced (aaaa -> cccc)",
                "container p-x-1 appeared",
                "network p_default is gone",
            ]
        );
    }

    #[test]
    fn project_digest_follows_any_field() {
        let a = crate::load::test_project("services:\n  web:\n    image: app:1\n");
        let b = crate::load::test_project("services:\n  web:\n    image: app:2\n");
        assert_eq!(project_digest(&a), project_digest(&a.clone()));
        assert_ne!(project_digest(&a), project_digest(&b));
        // Unchanged for a project without a check; any change of a check changes it.
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(project_digest(&a), format!("{:x}", Sha256::digest(json)));
        let verified = |cmd: &str| {
            crate::load::test_project(&format!(
                "services:\n  web:\n    image: app:1\n    x-composeops: {{verify: {cmd}}}\n"
            ))
        };
        let (c, d) = (verified("./smoke"), verified("./smoke --all"));
        // The check is not in the project as Compose sees it...
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&c).unwrap()
        );
        // ...but in what a saved plan approved.
        assert_ne!(project_digest(&a), project_digest(&c));
        assert_ne!(project_digest(&c), project_digest(&d));
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/saved-plan.schema.json"
        );
        let generated = serde_json::to_string_pretty(&SavedPlan::json_schema()).unwrap() + "\n";
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "schemas/saved-plan.schema.json is stale: run COMPOSEOPS_UPDATE_SCHEMAS=1 cargo \
             test --lib"
        );
    }
}
