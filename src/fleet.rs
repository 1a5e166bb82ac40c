//! Fleet placement: which stacks of one repository run on which host, decided by each agent on
//! its own (no server). A stack says where it runs with node globs, either in its own compose
//! file (top-level `x-composeops: {nodes: [...]}`, which Compose ignores) or in
//! `x-composeops.yaml` at the root of PATH (`stacks: {web: {nodes: [...]}}`).
//!
//! A pattern is a glob over the node's name (`edge-*`), or `KEY=GLOB` over one of its labels
//! (`role=edge`). A stack without `nodes` runs everywhere; `nodes: []` runs nowhere.
//!
//! When both places name a stack, the root file wins, whole (the lists are not merged): it is
//! the fleet's inventory, kept by whoever runs the fleet, while a stack's own key is the default
//! its author ships; the operator must be able to move a vendored stack without editing it.
//! It can also be read when the stack's compose file cannot be loaded.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use globset::{Glob, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The root file's name, beside the stack directories.
pub const FLEET_FILE: &str = "x-composeops.yaml";
/// The top-level key in a compose file.
pub const EXTENSION_KEY: &str = "x-composeops";

/// Where one stack runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Node patterns: a glob over the node name (`n1`, `edge-*`) or `KEY=GLOB` over a node
    /// label (`role=edge`). The stack runs on a node matching any of them. Absent: every node;
    /// empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

/// `x-composeops.yaml` at the root of PATH.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "composeops fleet placement (x-composeops.yaml)")]
pub struct FleetFile {
    /// Stack directory name (under PATH) -> where it runs. Wins over the stack's own
    /// `x-composeops` key; stacks not listed here use theirs.
    #[serde(default)]
    pub stacks: BTreeMap<String, Placement>,
}

/// This host, as placement sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// The node named after this host (the agent's default).
    pub fn this_host() -> Node {
        Node {
            name: gethostname::gethostname().to_string_lossy().to_string(),
            labels: BTreeMap::new(),
        }
    }

    /// Whether `pattern` (a name glob, or `KEY=GLOB`) matches this node.
    pub fn matches(&self, pattern: &str) -> Result<bool> {
        let glob = |g: &str| -> Result<GlobMatcher> {
            Ok(Glob::new(g)
                .with_context(|| format!("node pattern {pattern:?} is not a valid glob"))?
                .compile_matcher())
        };
        Ok(match pattern.split_once('=') {
            Some((key, value)) => {
                let m = glob(value)?;
                self.labels.get(key).is_some_and(|v| m.is_match(v))
            }
            None => glob(pattern)?.is_match(&self.name),
        })
    }
}

/// Who decided a stack's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacedBy {
    /// `x-composeops.yaml` at the root of PATH.
    FleetFile,
    /// The stack's own compose file.
    ComposeFile,
    /// Neither says anything: the stack runs everywhere.
    Default,
}

/// The placement of one stack on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub runs_here: bool,
    /// The patterns that decided (absent: runs everywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    pub placed_by: PlacedBy,
}

impl Decision {
    /// `nodes: [n2, role=edge]`, as /status and `plan --node` show why a stack is skipped.
    pub fn reason(&self) -> String {
        match &self.nodes {
            Some(n) => format!("nodes: [{}]", n.join(", ")),
            None => "runs everywhere".into(),
        }
    }
}

/// Decides where stack `id` runs: the root file's entry if it has one, else the stack's own.
pub fn decide(
    file: Option<&FleetFile>,
    id: &str,
    own: Option<&Placement>,
    node: &Node,
) -> Result<Decision> {
    let (placement, placed_by) = match (file.and_then(|f| f.stacks.get(id)), own) {
        (Some(p), _) => (Some(p), PlacedBy::FleetFile),
        (None, Some(p)) => (Some(p), PlacedBy::ComposeFile),
        (None, None) => (None, PlacedBy::Default),
    };
    let nodes = placement.and_then(|p| p.nodes.clone());
    let runs_here = match &nodes {
        None => true,
        Some(pats) => {
            let mut any = false;
            for p in pats {
                any |= node
                    .matches(p)
                    .with_context(|| format!("stack {id:?} ({placed_by:?})"))?;
            }
            any
        }
    };
    Ok(Decision {
        runs_here,
        nodes,
        placed_by,
    })
}

/// Reads `x-composeops.yaml` under `root` (`None` when there is none).
pub fn read_fleet_file(root: &Path) -> Result<Option<FleetFile>> {
    let path = root.join(FLEET_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: FleetFile = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "invalid {} (schema: schemas/fleet.schema.json)",
            path.display()
        )
    })?;
    Ok(Some(file))
}

/// The stack's own placement from its loaded top-level `x-` keys (`Project::extensions`).
pub fn own_placement(
    extensions: &indexmap::IndexMap<String, serde_json::Value>,
) -> Result<Option<Placement>> {
    extensions
        .get(EXTENSION_KEY)
        .map(|v| {
            serde_json::from_value(v.clone()).with_context(|| {
                format!("invalid `{EXTENSION_KEY}` (expected {{nodes: [PATTERN, ...]}})")
            })
        })
        .transpose()
}

/// The JSON Schema of `x-composeops.yaml`, as checked in under `schemas/fleet.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(FleetFile);
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn nodes(p: &[&str]) -> Placement {
        Placement {
            nodes: Some(p.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn name_globs() {
        let n = node("edge-3", &[]);
        assert!(n.matches("edge-*").unwrap());
        assert!(n.matches("edge-?").unwrap());
        assert!(n.matches("edge-[0-9]").unwrap());
        assert!(n.matches("{core,edge}-3").unwrap());
        assert!(!n.matches("edge").unwrap());
        assert!(!n.matches("n1").unwrap());
        assert!(n.matches("edge-[").is_err());
    }

    #[test]
    fn label_patterns_match_one_label_by_key() {
        let n = node("n1", &[("role", "edge"), ("zone", "eu-west-1")]);
        assert!(n.matches("role=edge").unwrap());
        assert!(n.matches("zone=eu-*").unwrap());
        assert!(!n.matches("role=core").unwrap());
        // A label pattern never matches the node name, nor a missing label.
        assert!(!node("role=edge", &[]).matches("role=edge").unwrap());
        assert!(!n.matches("rack=*").unwrap());
    }

    #[test]
    fn absent_nodes_run_everywhere_and_empty_nodes_nowhere() {
        let n = node("n1", &[]);
        let d = decide(None, "web", None, &n).unwrap();
        assert!(d.runs_here);
        assert_eq!(d.placed_by, PlacedBy::Default);
        let d = decide(None, "web", Some(&Placement::default()), &n).unwrap();
        assert!(d.runs_here);
        let d = decide(None, "web", Some(&nodes(&[])), &n).unwrap();
        assert!(!d.runs_here);
        assert_eq!(d.reason(), "nodes: []");
    }

    #[test]
    fn any_pattern_places_the_stack() {
        let p = nodes(&["n2", "role=edge"]);
        assert!(
            !decide(None, "web", Some(&p), &node("n1", &[]))
                .unwrap()
                .runs_here
        );
        assert!(
            decide(None, "web", Some(&p), &node("n2", &[]))
                .unwrap()
                .runs_here
        );
        assert!(
            decide(None, "web", Some(&p), &node("n1", &[("role", "edge")]))
                .unwrap()
                .runs_here
        );
        let d = decide(None, "web", Some(&p), &node("n1", &[])).unwrap();
        assert_eq!(d.reason(), "nodes: [n2, role=edge]");
    }

    #[test]
    fn the_fleet_file_wins_over_the_stack_whole() {
        let file: FleetFile = serde_yaml::from_str("stacks: {web: {nodes: [n2]}}\n").unwrap();
        let own = nodes(&["n1"]);
        let n1 = node("n1", &[]);
        let d = decide(Some(&file), "web", Some(&own), &n1).unwrap();
        assert!(!d.runs_here, "the file's [n2] replaces the stack's [n1]");
        assert_eq!(d.placed_by, PlacedBy::FleetFile);
        // A stack the file does not list keeps its own placement.
        let d = decide(Some(&file), "db", Some(&own), &n1).unwrap();
        assert!(d.runs_here);
        assert_eq!(d.placed_by, PlacedBy::ComposeFile);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(serde_yaml::from_str::<FleetFile>("stack: {}\n").is_err());
        let ext = serde_json::json!({"x-composeops": {"node": ["n1"]}});
        let e = own_placement(&ext.as_object().unwrap().clone().into_iter().collect()).unwrap_err();
        assert!(format!("{e:#}").contains("node"), "{e:#}");
        let ext = serde_json::json!({"x-composeops": {"nodes": ["n1"]}, "x-other": 1});
        assert_eq!(
            own_placement(&ext.as_object().unwrap().clone().into_iter().collect()).unwrap(),
            Some(nodes(&["n1"]))
        );
    }

    #[test]
    fn fleet_schema_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/fleet.schema.json");
        let generated = json_schema();
        if std::env::var_os("COMPOSEOPS_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the schema generated from fleet::FleetFile; regenerate it with \
             `COMPOSEOPS_UPDATE_SCHEMAS=1 cargo test --lib fleet_schema` and commit it",
            path.display()
        );
        // The schema describes the file the agent reads.
        let v: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
        assert!(v["properties"]["stacks"].is_object(), "{v}");
    }

    #[test]
    fn a_bad_glob_names_the_stack_and_pattern() {
        let e = decide(None, "web", Some(&nodes(&["n[1"])), &node("n1", &[])).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("web") && m.contains("n[1"), "{m}");
    }
}
