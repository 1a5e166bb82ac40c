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
use common::{copy_dir, docker, docker_output, testbed, unique_project, ProjectGuard};
use serde_json::{json, Value};

const HASH: &str = "com.docker.compose.config-hash";

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

/// The runnable project's file, named so that no other compose file of the copied case
/// directory is discovered or merged with it.
const FILE: &str = "interop.yaml";

/// A command that runs until stopped and stops at once on TERM (busybox `sh` as PID 1).
const IDLE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM INT; sleep 3600 & wait"];

/// Compose's resolved form of `case`, made runnable offline in `dir` (a copy of the case
/// directory): every image is the test bed's base image with an idle command and a passing
/// healthcheck, published ports are ephemeral, networks and volumes are the project's own,
/// paths point into `dir`. What Compose then hashes still varies as the corpus does (env,
/// labels, volumes, restart, deploy, healthcheck timings, networks). `Err` says why a case
/// cannot run here.
fn runnable(case: &Case, dir: &Path) -> Result<String, String> {
    let out = run_in_case(&testbed().compose_v5, case, &["config", "--format", "json"]);
    assert!(out.status.success(), "{}: {}", case.name, show(&out));
    let text = stdout(&out).replace(&case.dir.display().to_string(), &dir.display().to_string());
    let mut project: Value = serde_json::from_str(&text).unwrap();
    copy_dir(&case.dir, dir);
    let top = project.as_object_mut().unwrap();
    top.remove("name");
    for kind in ["networks", "volumes"] {
        for (_, r) in top
            .get_mut(kind)
            .and_then(Value::as_object_mut)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_object_mut() {
                r.remove("name");
                r.remove("external");
            }
        }
    }
    let services = top["services"].as_object_mut().unwrap();
    if services.is_empty() {
        // `docker compose up` refuses a project without services ("no service selected").
        return Err("no services to run".into());
    }
    let names: Vec<String> = services.keys().cloned().collect();
    // Waited for as healthy: the image was to supply the healthcheck, the base image has none.
    let waited: Vec<String> = services
        .values()
        .filter_map(|s| s.get("depends_on")?.as_object())
        .flat_map(|d| d.iter())
        .filter(|(_, d)| d["condition"] == "service_healthy")
        .map(|(k, _)| k.clone())
        .collect();
    for (name, svc) in services.iter_mut() {
        let svc = svc.as_object_mut().unwrap();
        if svc.contains_key("build") {
            return Err(format!("{name} needs a build"));
        }
        svc.insert("image".into(), json!(testbed().base_image));
        svc.insert("command".into(), json!(IDLE));
        svc.insert("entrypoint".into(), Value::Null);
        for k in ["pull_policy", "user"] {
            svc.remove(k);
        }
        if waited.contains(name) && !svc.contains_key("healthcheck") {
            svc.insert("healthcheck".into(), json!({}));
        }
        if let Some(Value::Object(h)) = svc.get_mut("healthcheck") {
            if h.get("test").and_then(|t| t[0].as_str()) != Some("NONE")
                && h.get("disable").is_none()
            {
                h.insert("test".into(), json!(["CMD", "true"]));
                h.insert("interval".into(), json!("1s"));
            }
        }
        // Dependencies on services a profile left out (`required: false`) are gone.
        if let Some(Value::Object(d)) = svc.get_mut("depends_on") {
            d.retain(|k, _| names.contains(k));
        }
        for (_, n) in svc
            .get("networks")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if n.get("ipv4_address").or(n.get("ipv6_address")).is_some() {
                return Err(format!(
                    "{name} has a static address, which needs IPAM settings that composeops \
                     does not pass when it creates a network"
                ));
            }
        }
        for v in svc
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v["type"] == "bind" {
                let _ = std::fs::create_dir_all(v["source"].as_str().unwrap());
            }
        }
        for p in svc
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let p = p.as_object_mut().unwrap();
            p.remove("published");
            p.remove("host_ip");
        }
    }
    Ok(serde_json::to_string_pretty(&project).unwrap())
}

/// One runnable case on the engine: its own directory, state directory and project.
struct Run {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    name: String,
    /// The case's shell environment: what `environment:` secrets and configs read at run time.
    env: Vec<(String, String)>,
    _guard: ProjectGuard,
}

impl Run {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new(&testbed().compose_v5)
            .current_dir(self.dir.path())
            .envs(self.env.iter().cloned())
            .args(["-p", &self.name, "-f", FILE])
            .args(args)
            .output()
            .unwrap()
    }

    fn composeops(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_composeops"))
            .current_dir(self.dir.path())
            .env("COMPOSEOPS_STATE_DIR", self.state.path())
            .envs(self.env.iter().cloned())
            .args(["-p", &self.name, "-f", FILE])
            .args(args)
            .output()
            .unwrap()
    }

    /// Container name -> (id, config-hash label), all states.
    fn containers(&self) -> BTreeMap<String, (String, String)> {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        let format = format!("{{{{.Names}}}} {{{{.ID}}}} {{{{.Label \"{HASH}\"}}}}");
        docker(&["ps", "-a", "--filter", &filter, "--format", &format])
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((
                    f.next()?.into(),
                    (f.next()?.into(), f.next().unwrap_or("").into()),
                ))
            })
            .collect()
    }
}

/// Runs `out`, and says what failed unless it exited with `code`.
fn expect(what: &str, out: Output, code: i32) -> Result<(), String> {
    if out.status.code() == Some(code) {
        Ok(())
    } else {
        Err(format!("{what} (expected exit {code}): {}", show(&out)))
    }
}

/// Both directions for one case; `Err` describes the first disagreement.
fn hand_over(case: &Case, yaml: &str, run: &Run) -> Result<usize, String> {
    std::fs::write(run.dir.path().join(FILE), yaml).unwrap();
    // Compose -> composeops.
    expect("docker-compose up -d", run.compose(&["up", "-d"]), 0)?;
    let by_compose = run.containers();
    expect(
        "composeops plan after docker-compose up",
        run.composeops(&["plan", "--detailed-exitcode"]),
        0,
    )?;
    expect(
        "composeops apply after docker-compose up",
        run.composeops(&["apply", "--wait-timeout", "60s"]),
        0,
    )?;
    if run.containers() != by_compose {
        return Err(format!(
            "composeops apply recreated Compose's containers of {}",
            case.name
        ));
    }
    // The engine sometimes still counts a just-removed container on a network: retry, then
    // drop endpoints whose container is gone (Docker's own workaround for a stale one).
    let mut down = run.compose(&["down"]);
    for attempt in 0..4 {
        if down.status.success() {
            break;
        }
        if attempt == 2 {
            drop_stale_endpoints(&String::from_utf8_lossy(&down.stderr));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        down = run.compose(&["down"]);
    }
    let endpoints = match down.status.success() {
        true => String::new(),
        false => endpoints_seen(&String::from_utf8_lossy(&down.stderr)),
    };
    expect("docker-compose down", down, 0).map_err(|e| format!("{e}{endpoints}"))?;
    // composeops -> Compose.
    expect(
        "composeops apply",
        run.composeops(&["apply", "--wait-timeout", "60s"]),
        0,
    )?;
    let by_composeops = run.containers();
    let want = hashes(&stdout(&run.compose(&["config", "--hash", "*"])));
    for (name, (_, hash)) in &by_composeops {
        // `config --hash` hashes `service:X` and `volumes_from` as written, `up` after their
        // resolution to container ids: those hashes are proven by the `up -d` below instead.
        if !want.values().any(|h| h == hash) && !shares_a_container(name) {
            return Err(format!(
                "{name}: config-hash {hash} is none of Compose's {want:?}"
            ));
        }
    }
    expect(
        "docker-compose up -d after composeops",
        run.compose(&["up", "-d"]),
        0,
    )?;
    if run.containers() != by_composeops {
        return Err(format!(
            "docker-compose up recreated composeops' containers: before {by_composeops:?}, after {:?}",
            run.containers()
        ));
    }
    expect(
        "composeops plan after docker-compose up",
        run.composeops(&["plan", "--detailed-exitcode"]),
        0,
    )?;
    Ok(by_composeops.len())
}

/// Whether container `name` was created in another's namespace or with its volumes.
fn shares_a_container(name: &str) -> bool {
    let f = "{{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}} {{.HostConfig.PidMode}} \
             {{len .HostConfig.VolumesFrom}}";
    let out = docker(&["inspect", "-f", f, name]);
    out.contains("container:") || !out.ends_with(" 0")
}

/// What one corpus case gave on the engine.
enum Outcome {
    /// Handed over both ways; the number of containers.
    Passed(usize),
    Failed(String),
    /// Cannot run offline on the test bed, and why.
    Skipped(String),
}

fn check_case(case: &Case) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let yaml = match runnable(case, dir.path()) {
        Ok(y) => y,
        Err(why) => return Outcome::Skipped(why),
    };
    let name = unique_project(&format!("interop-{}", &case.name[..2]));
    let run = Run {
        dir,
        state: tempfile::tempdir().unwrap(),
        env: case.env.clone(),
        _guard: ProjectGuard::new(name.clone()),
        name,
    };
    match hand_over(case, &yaml, &run) {
        Ok(n) => Outcome::Passed(n),
        Err(e) => Outcome::Failed(e),
    }
}

#[test]
fn corpus_stacks_pass_between_compose_v5_and_composeops() {
    // `COMPOSEOPS_INTEROP_CASES=09,40`: only the cases with these prefixes (for debugging).
    let only = std::env::var("COMPOSEOPS_INTEROP_CASES").ok();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|p| c.name.starts_with(p)))
        })
        .collect();
    // Four at a time: each case waits on the engine (container starts and stops, Compose's
    // own runs) far more than it computes.
    let results: Vec<(String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    let each = chunk.iter().map(|c| (c.name.clone(), check_case(c)));
                    each.collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let (mut checked, mut containers, mut skipped, mut failed) = (0, 0, Vec::new(), Vec::new());
    for (name, r) in results {
        match r {
            Outcome::Passed(n) => {
                checked += 1;
                containers += n;
            }
            Outcome::Failed(e) => failed.push(format!("{name}: {e}")),
            Outcome::Skipped(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    eprintln!(
        "interop: {checked}/{} corpus projects handed over both ways without a recreate \
         ({containers} containers); {} failed; {} skipped:\n  {}",
        checked + failed.len(),
        failed.len(),
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert!(
        only.is_some() || checked >= 40,
        "too few corpus projects ran: {checked}"
    );
}

/// An image from a registry: composeops resolves it to its manifest digest, but Compose's
/// `com.docker.compose.image` label is the local image id, so that is what composeops writes.
#[test]
fn registry_image_stack_passes_to_compose_without_recreate() {
    let tb = testbed();
    let image = format!("{}/{}", tb.registry, tb.base_image);
    let name = unique_project("interop-registry");
    let run = Run {
        dir: tempfile::tempdir().unwrap(),
        state: tempfile::tempdir().unwrap(),
        env: Vec::new(),
        _guard: ProjectGuard::new(name.clone()),
        name,
    };
    let yaml = format!(
        "services:\n  web:\n    image: {image}\n    command: {}\n",
        serde_json::to_string(IDLE).unwrap()
    );
    std::fs::write(run.dir.path().join(FILE), yaml).unwrap();
    expect("composeops apply", run.composeops(&["apply"]), 0).unwrap();
    let before = run.containers();
    let web = format!("{}-web-1", run.name);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &image]);
    let label = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"com.docker.compose.image\"}}",
        &web,
    ]);
    assert_eq!(
        label, id,
        "com.docker.compose.image must be the local image id"
    );
    expect("docker-compose up -d", run.compose(&["up", "-d"]), 0).unwrap();
    assert_eq!(
        run.containers(),
        before,
        "docker-compose up recreated composeops' container"
    );
    // And back: a container Compose made is composeops' as it is.
    let up = run.compose(&["up", "-d", "--force-recreate"]);
    expect("docker-compose up --force-recreate", up, 0).unwrap();
    let by_compose = run.containers();
    assert_ne!(by_compose, before);
    let plan = run.composeops(&["plan", "--detailed-exitcode"]);
    expect("composeops plan", plan, 0).unwrap();
    expect("composeops apply", run.composeops(&["apply"]), 0).unwrap();
    assert_eq!(
        run.containers(),
        by_compose,
        "composeops recreated Compose's container"
    );
}

/// The networks a failed `down` names as having active endpoints, with what the engine says is
/// on each, and which of those containers the engine still knows: for the failure message.
fn endpoints_seen(stderr: &str) -> String {
    let mut out = String::new();
    for net in networks_with_endpoints(stderr) {
        let inspect = docker_output(&["network", "inspect", "-f", "{{json .Containers}}", net]);
        let on = String::from_utf8_lossy(&inspect.stdout);
        let all = docker_output(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
        out.push_str(&format!(
            "\nendpoints on {net}: {}\ncontainers on the engine:\n{}",
            on.trim(),
            String::from_utf8_lossy(&all.stdout)
        ));
    }
    out
}

/// The networks a failed `down` says have active endpoints.
fn networks_with_endpoints(stderr: &str) -> std::collections::BTreeSet<&str> {
    stderr
        .split("removing network: network ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect()
}

/// For each network a failed `down` names as having active endpoints, disconnects (forced)
/// the endpoints whose container no longer exists; a live container is left connected, so
/// the retried `down` still fails and says so.
fn drop_stale_endpoints(stderr: &str) {
    for net in networks_with_endpoints(stderr) {
        let names = docker_output(&[
            "network",
            "inspect",
            "-f",
            "{{range $id, $c := .Containers}}{{$c.Name}} {{end}}",
            net,
        ]);
        for name in String::from_utf8_lossy(&names.stdout).split_whitespace() {
            if !docker_output(&["container", "inspect", name])
                .status
                .success()
            {
                eprintln!("interop: dropping the stale endpoint {name} on {net}");
                let _ = docker_output(&["network", "disconnect", "-f", net, name]);
            }
        }
    }
}
