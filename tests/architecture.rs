//! The module graph has no cycle: the pipeline's stages depend only on earlier stages, and the
//! front ends' files (src/cli/, src/agent/) only on their siblings in one direction. A check by
//! reading the sources, as `cargo modules dependencies --acyclic` would, without its build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules it names, from every `.rs` file under `dir`. `prefix` is how a file
/// names its neighbours (`crate::` for the top level, `super::` inside a directory module);
/// doc comments and comments are skipped, so a link in prose is not a dependency.
fn graph(dir: &Path, prefix: &str, top_level: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(dir).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let mut names: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    for skip in ["lib", "main", "mod"] {
        names.remove(skip);
    }
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let m = module_of(p);
        if !names.contains(&m) || (!top_level && p.parent() != Some(dir)) {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        let deps = g.entry(m.clone()).or_default();
        let mut lines = text.lines().map(str::trim).peekable();
        while let Some(line) = lines.next() {
            if line.starts_with("//") {
                continue;
            }
            // A file's unit tests (its last item, by convention) are not part of the crate
            // that is built, as for `cargo modules` without `--cfg-test`: a test that loads a
            // project from YAML does not make its module depend on the loader.
            if line == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.starts_with("mod tests {"))
            {
                break;
            }
            let mut rest = line;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if names.contains(&name) && name != m {
                    deps.insert(name);
                }
            }
            // `use super::{a, b}` inside a directory module.
            if let Some(list) = line
                .strip_prefix(&format!("use {prefix}{{"))
                .and_then(|l| l.split('}').next())
            {
                for name in list
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap())
                {
                    if names.contains(name) && name != m {
                        deps.insert(name.to_string());
                    }
                }
            }
        }
    }
    g
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A cycle in `g`, if there is one (depth-first search).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let checks = [
        (src.clone(), "crate::", true),
        (src.join("cli"), "super::", false),
        (src.join("agent"), "super::", false),
        (src.join("apply"), "super::", false),
    ];
    for (dir, prefix, top) in checks {
        let g = graph(&dir, prefix, top);
        assert!(g.len() > 2, "{}: found no modules", dir.display());
        if let Some(c) = cycle(&g) {
            panic!("module cycle in {}: {}", dir.display(), c.join(" -> "));
        }
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
