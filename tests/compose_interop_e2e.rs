//! Compose v5 and composeops hand a stack back and forth without recreating anything.
//!
//! `config_hash_matches_compose_v5_on_the_corpus` (no engine): for every project of
//! `tests/corpus/` that loads, the config-hash composeops computes for each service equals
//! what `docker-compose config --hash '*'` prints.
//!
//! `corpus_stacks_pass_between_compose_v5_and_composeops` (real engine): every corpus project
//! that Compose can run offline is made runnable on the test bed (see [`runnable`]), then
//! 1. `docker-compose up -d`; `composeops plan` is empty and `composeops apply` keeps every
//!    container id;
//! 2. after `docker-compose down`, `composeops apply`; `docker-compose up -d` keeps every
//!    container id, and the config-hash Compose computes is the one composeops wrote.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::stack::show;
use common::testbed;

/// One corpus project: its directory and the global arguments/environment it loads with.
struct Case {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.join("expect-error").exists())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let args = read("args")
                .lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let env = read("shellenv")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                args,
                env,
            }
        })
        .collect()
}

/// `<bin> <case args> ARGS` in the case directory with a clean environment (PATH, HOME and
/// the case's shell environment), as tests/reference.rs runs the corpus.
fn run_in_case(bin: &Path, case: &Case, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(&case.args)
        .args(args)
        .current_dir(&case.dir)
        .env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(case.env.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `service hash` lines of `config --hash '*'`.
fn hashes(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, h)| (s.to_string(), h.trim().to_string()))
        .collect()
}

#[test]
fn config_hash_matches_compose_v5_on_the_corpus() {
    let compose = &testbed().compose_v5;
    let (mut services, mut mismatches) = (0, Vec::new());
    let cases = cases();
    for case in &cases {
        let want = run_in_case(compose, case, &["config", "--hash", "*"]);
        assert!(want.status.success(), "{}: {}", case.name, show(&want));
        let project = composeops::load::load(&load_options(case))
            .unwrap_or_else(|e| panic!("{}: {e:#}", case.name))
            .project;
        for (service, hash) in hashes(&stdout(&want)) {
            services += 1;
            let ours = composeops::compose_hash::config_hash(&project, &service);
            if ours != hash {
                mismatches.push(format!(
                    "{}/{service}: compose {hash}, ours {ours}",
                    case.name
                ));
            }
        }
    }
    eprintln!(
        "config-hash: {}/{services} services of {} corpus projects agree",
        services - mismatches.len(),
        cases.len()
    );
    assert!(cases.len() >= 40 && services >= 100, "corpus too small");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The load options `composeops <case args>` uses: the args name files, a project name or
/// directory, env files and profiles; the case environment (plus PATH and HOME) is the shell's.
fn load_options(case: &Case) -> composeops::load::LoadOptions {
    let mut o = composeops::load::LoadOptions {
        cwd: case.dir.clone(),
        ..Default::default()
    };
    for key in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(key) {
            o.environ.insert(key.into(), v);
        }
    }
    for (k, v) in &case.env {
        o.environ.insert(k.clone(), v.clone());
    }
    let mut args = case.args.iter();
    while let Some(a) = args.next() {
        let val = args.next().expect("corpus flag value").clone();
        match a.as_str() {
            "-f" | "--file" => o.files.push(val.into()),
            "-p" | "--project-name" => o.project_name = Some(val),
            "--project-directory" => o.project_directory = Some(case.dir.join(val)),
            "--env-file" => o.env_files.push(val.into()),
            "--profile" => o.profiles.push(val),
            other => panic!("{}: unknown corpus argument {other}", case.name),
        }
    }
    o
}
