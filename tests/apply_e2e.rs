//! End-to-end tests of `plan` and `apply` on the real engine and registry of the test bed:
//! dependency order and health, recreate of what changed only, adoption of a Compose-made
//! stack, rollback, recovery after SIGKILL, the project lock, bad input. Run with
//! scripts/test.sh.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use common::stack::{show, Stack};
use common::*;

impl Stack {
    /// Exit status of `plan --detailed-exitcode` (0 no changes, 2 changes), and its output.
    fn plan(&self) -> (i32, String) {
        let out = self.run(&["plan", "--detailed-exitcode"]);
        (out.status.code().unwrap_or(-1), show(&out))
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, name])
    }

    fn compose_v5(&self, args: &[&str]) -> Output {
        Command::new(&testbed().compose_v5)
            .current_dir(self.dir.path())
            .args(["-p", &self.name])
            .args(args)
            .output()
            .unwrap()
    }
}

/// db (healthcheck) <- web (service_healthy) and worker (service_started).
fn three_services(image: &str, web_env: &str) -> String {
    format!(
        r#"services:
  db:
    image: {image}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
    volumes: [data:/data]
  web:
    image: {image}
    environment:
      GREETING: "{web_env}"
      API_TOKEN: "t0ps3cret"
    depends_on:
      db: {{condition: service_healthy}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 3
    ports: ["127.0.0.1::8080"]
  worker:
    image: {image}
    depends_on: [db]
volumes:
  data:
"#
    )
}

#[test]
fn apply_three_service_stack_with_healthy_dependency() {
    let mut s = Stack::new("apply-three");
    let image = s.app_image("v1");
    // Only in the registry: apply must pull it.
    push_image(&image);
    docker(&["rmi", &image]);
    s.write(&three_services(&image, "hello"));
    let out = s.apply_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Pulled by the digest the tag resolved to at plan time, never by the moving tag.
    assert!(
        stderr.contains(&format!("pulling {}@sha256:", repository_of(&image))),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("db") && stdout.contains("applied"),
        "{stdout}"
    );

    let ps = s.compose_v5(&["ps", "--format", "{{.Name}} {{.Service}}"]);
    assert!(ps.status.success(), "{}", show(&ps));
    let ps = String::from_utf8_lossy(&ps.stdout);
    for svc in ["db", "web", "worker"] {
        assert!(
            ps.contains(&format!("{}-{svc}-1 {svc}", s.name)),
            "compose ps misses {svc}:\n{ps}"
        );
    }
    assert_eq!(
        s.inspect(&format!("{}-db-1", s.name), "{{.State.Health.Status}}"),
        "healthy"
    );
    let (code, out) = s.plan();
    assert_eq!(code, 0, "plan after apply must be empty:\n{out}");

    // A no-op apply changes nothing and costs a handful of engine requests.
    let before = s.container_ids();
    let out = s.run(&["apply", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = v["report"]["api_calls"].as_u64().unwrap();
    // ping, 3 lists, the running image: observation runs while the registry lookup is under
    // way, and the desired image (by the digest found) is the running one, known by its repo
    // digests without a second inspect.
    assert!(
        calls <= 5,
        "no-op apply made {calls} engine requests (ping, 3 lists, 1 image inspect)"
    );
    let out = s.run(&["apply", "--json", "--offline"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = v["report"]["api_calls"].as_u64().unwrap();
    assert!(
        calls <= 5,
        "no-op apply --offline made {calls} engine requests"
    );
    assert_eq!(s.container_ids(), before);
    // Labels Compose reads.
    let labels = s.inspect(&format!("{}-web-1", s.name), "{{json .Config.Labels}}");
    let labels: BTreeMap<String, String> = serde_json::from_str(&labels).unwrap();
    for k in [
        "config-hash",
        "container-number",
        "oneoff",
        "project.working_dir",
        "project.config_files",
        "depends_on",
        "image",
        "version",
    ] {
        assert!(
            !labels[&format!("com.docker.compose.{k}")].is_empty(),
            "label {k} empty: {labels:?}"
        );
    }
    assert_eq!(
        labels["com.docker.compose.depends_on"],
        "db:service_healthy:false"
    );
    assert!(labels["io.composeops.spec-hash"].starts_with("v1:"));

    // Compose manages what composeops created: logs and down.
    let logs = s.compose_v5(&["logs", "db"]);
    assert!(logs.status.success(), "{}", show(&logs));
    let down = s.compose_v5(&["down", "-t", "1"]);
    assert!(down.status.success(), "{}", show(&down));
    assert!(
        s.container_ids().is_empty(),
        "compose down must remove everything"
    );
}

#[test]
fn edit_recreates_only_that_service() {
    let mut s = Stack::new("apply-edit");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    let before = s.container_ids();
    s.write(&three_services(&image, "bonjour"));
    let plan = s.run(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("web recreate (changed: environment)"),
        "{text}"
    );
    assert!(
        text.contains("+  GREETING: bonjour") && !text.contains("t0ps3cret"),
        "{text}"
    );
    s.apply_ok();
    let after = s.container_ids();
    let web = format!("{}-web-1", s.name);
    assert_ne!(before[&web], after[&web], "web must be recreated");
    for svc in ["db", "worker"] {
        let n = format!("{}-{svc}-1", s.name);
        assert_eq!(before[&n], after[&n], "{svc} must keep its container");
    }
    assert_eq!(after.len(), 3, "no leftovers: {after:?}");
    assert!(s
        .inspect(&web, "{{range .Config.Env}}{{println .}}{{end}}")
        .contains("GREETING=bonjour"));
    assert_eq!(s.plan().0, 0);
}

#[test]
fn stack_started_by_compose_v5_is_adopted() {
    let mut s = Stack::new("apply-adopt");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    let up = s.compose_v5(&["up", "-d", "--wait"]);
    assert!(up.status.success(), "{}", show(&up));
    let before = s.container_ids();
    let (code, out) = s.plan();
    assert_eq!(
        code, 0,
        "a stack made by Compose v5 must plan as unchanged:\n{out}"
    );
    s.apply_ok();
    assert_eq!(s.container_ids(), before, "adoption must not recreate");
    // A real difference is still seen on an adopted container.
    s.write(&three_services(&image, "changed"));
    let (code, out) = s.plan();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("web recreate (changed: environment)"), "{out}");
}

fn assert_rolled_back(variant: &str) {
    let mut s = Stack::new(&format!("apply-rollback-{variant}"));
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    let before = s.container_ids();
    // A new release under the same tag that exits / never becomes healthy.
    s.app_image(variant);
    let out = s.run(&["apply", "--wait-timeout", "5s"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled-back"), "{stdout}");
    if variant == "broken" {
        assert!(
            stdout.contains("broken test app: exiting with 1"),
            "logs of the failed container: {stdout}"
        );
    } else {
        assert!(stdout.contains("last health checks"), "{stdout}");
    }
    // The old container runs again, under its own name and id.
    let db = format!("{}-db-1", s.name);
    let after = s.container_ids();
    assert_eq!(after[&db], before[&db]);
    assert_eq!(s.inspect(&db, "{{.State.Running}}"), "true");
    // The failed one is kept stopped for inspection; dependants were left alone.
    assert!(
        after.contains_key(&format!("{db}-composeops-failed")),
        "{after:?}"
    );
    for svc in ["web", "worker"] {
        let n = format!("{}-{svc}-1", s.name);
        assert_eq!(after[&n], before[&n]);
    }
    let (code, out) = s.plan();
    assert_eq!(code, 2, "the change is still pending:\n{out}");
    assert!(out.contains("image "), "{out}");
}

#[test]
fn new_image_that_exits_is_rolled_back() {
    assert_rolled_back("broken");
}

#[test]
fn new_image_never_healthy_is_rolled_back() {
    assert_rolled_back("unhealthy");
}

/// Starts an update paused at `step`, SIGKILLs it there, then a plain apply must converge.
fn kill_at(step: &str) {
    let mut s = Stack::new(&format!("apply-kill-{step}"));
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    s.write(&three_services(&image, "after-kill"));
    let (mut child, seen) = s.apply_paused_at(&["--wait-timeout", "30s"], step, 1);
    assert!(
        seen.contains(&format!("test pause at {step}")),
        "never reached {step}:\n{seen}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The next run recovers from the journal: `plan` for one kill point, `apply` for the others.
    if step == "health-wait" {
        let out = s.run(&["plan"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("recovering an interrupted apply"),
            "{stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("web recreate"),
            "the change is still pending: {stdout}"
        );
        assert_eq!(
            s.container_ids().len(),
            3,
            "recovery leaves one container per replica"
        );
        s.apply_ok();
    } else {
        let out = s.apply_ok();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("recovering an interrupted apply"),
            "{stderr}"
        );
    }
    let after = s.container_ids();
    let mut names: Vec<&String> = after.keys().collect();
    names.sort();
    let want: Vec<String> = ["db", "web", "worker"]
        .iter()
        .map(|x| format!("{}-{x}-1", s.name))
        .collect();
    assert_eq!(
        names,
        want.iter().collect::<Vec<_>>(),
        "exactly one container per replica"
    );
    let web = format!("{}-web-1", s.name);
    assert_eq!(s.inspect(&web, "{{.State.Health.Status}}"), "healthy");
    assert!(s
        .inspect(&web, "{{range .Config.Env}}{{println .}}{{end}}")
        .contains("GREETING=after-kill"));
    assert_eq!(s.plan().0, 0);
}

#[test]
fn sigkill_during_create_is_recovered() {
    kill_at("create");
}

#[test]
fn sigkill_during_health_wait_is_recovered() {
    kill_at("health-wait");
}

#[test]
fn sigkill_during_removal_of_old_is_recovered() {
    kill_at("remove-old");
}

#[test]
fn second_apply_fails_clearly_while_one_runs() {
    let mut s = Stack::new("apply-lock");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    s.write(&three_services(&image, "second"));
    let (mut child, _) = s.apply_paused_at(&[], "health-wait", 1);
    let out = s.run(&["apply", "--lock-timeout", "1s"]);
    // plan does not wait and does not recover while the apply runs.
    let plan = s.run(&["plan"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds the lock"),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("an apply of"),
        "{}",
        show(&plan)
    );
    s.apply_ok();
    assert_eq!(s.plan().0, 0);
}

#[test]
fn bad_input_changes_nothing_on_the_engine() {
    let mut s = Stack::new("apply-bad");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    let before = s.container_ids();
    let nets = || {
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", s.name),
        ])
    };
    let nets_before = nets();
    let good = three_services(&image, "changed");
    let cases = [
        (
            "broken YAML",
            good.replace("  worker:\n", "  worker:\n   - oops: [\n"),
            "compose.yaml",
        ),
        (
            "unknown field",
            good.replace("  worker:\n", "  worker:\n    restartt: always\n"),
            "restartt",
        ),
        (
            "missing required variable",
            good.replace("changed", "${NEEDED:?set NEEDED}"),
            "NEEDED",
        ),
    ];
    for (what, yaml, needle) in cases {
        s.write(&yaml);
        for cmd in [&["apply"][..], &["plan"][..]] {
            let out = s.cmd().args(cmd).env_remove("NEEDED").output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{what}: {}", show(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(needle),
                "{what}: error should name {needle:?}: {err}"
            );
        }
        assert_eq!(s.container_ids(), before, "{what} changed containers");
        assert_eq!(nets(), nets_before, "{what} changed networks");
    }
}

#[test]
fn unreachable_registry_with_local_image_is_a_warning() {
    let mut s = Stack::new("apply-pull");
    let local = s.app_image("v1");
    // Same image under a registry that does not answer (port 9 on 127.0.0.1).
    let unreachable = format!("127.0.0.1:9/app-{}:1", s.name);
    docker(&["tag", &local, &unreachable]);
    s.guard.image(unreachable.clone());
    s.write(&format!(
        "services:\n  app:\n    image: {unreachable}\n    pull_policy: always\n"
    ));
    let out = s.apply_ok();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("warning: cannot pull {unreachable}")),
        "{err}"
    );
    assert_eq!(s.plan().0, 0);
    // The next apply warns again and leaves the running container alone.
    let before = s.container_ids();
    s.apply_ok();
    assert_eq!(s.container_ids(), before);
}

#[test]
fn unknown_image_is_an_error_before_any_change() {
    let mut s = Stack::new("apply-unknown-image");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "hello"));
    s.apply_ok();
    let before = s.container_ids();
    let missing = format!("{}/does-not-exist-{}:1", testbed().registry, s.name);
    s.write(&three_services(&image, "changed").replacen(
        &format!("image: {image}"),
        &format!("image: {missing}"),
        1,
    ));
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("cannot pull image {missing}")),
        "{}",
        show(&out)
    );
    assert_eq!(s.container_ids(), before, "nothing may change");
    // pull_policy: never names the image and changes nothing either.
    s.write(&format!(
        "services:\n  db:\n    image: {missing}\n    pull_policy: never\n"
    ));
    let out = s.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pull_policy is never"),
        "{}",
        show(&out)
    );
    assert_eq!(s.container_ids(), before);
}

#[test]
fn anonymous_volumes_are_carried_over_and_prune_removes_orphans_only() {
    let mut s = Stack::new("apply-anon");
    let image = s.app_image("v1");
    let yaml = |greeting: &str, with_worker: bool| {
        let mut y = three_services(&image, greeting).replace(
            "    ports: [\"127.0.0.1::8080\"]\n",
            "    ports: [\"127.0.0.1::8080\"]\n    volumes: [/cache]\n",
        );
        if !with_worker {
            let worker = format!("  worker:\n    image: {image}\n    depends_on: [db]\n");
            assert!(y.contains(&worker));
            y = y.replace(&worker, "");
        }
        y
    };
    s.write(&yaml("hello", true));
    s.apply_ok();
    let web = format!("{}-web-1", s.name);
    docker(&["exec", &web, "sh", "-c", "echo kept > /cache/marker"]);
    let cache = "{{range .Mounts}}{{if eq .Destination \"/cache\"}}{{.Name}}{{end}}{{end}}";
    let vol_before = s.inspect(&web, cache);
    s.write(&yaml("bonjour", true));
    s.apply_ok();
    assert_eq!(
        s.inspect(&web, cache),
        vol_before,
        "the anonymous volume follows the service"
    );
    assert_eq!(docker(&["exec", &web, "cat", "/cache/marker"]), "kept");

    // worker leaves the file: plan warns, apply keeps it; --prune removes the container only.
    s.write(&yaml("bonjour", false));
    let (code, out) = s.plan();
    assert_eq!(code, 0, "an orphan without --prune is not a change:\n{out}");
    assert!(out.contains("orphan container"), "{out}");
    let worker = format!("{}-worker-1", s.name);
    assert!(s.container_ids().contains_key(&worker));
    let out = s.run(&["apply", "--prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        !s.container_ids().contains_key(&worker),
        "--prune removes the orphan"
    );
    let filter = format!("label=com.docker.compose.project={}", s.name);
    let vols = docker(&["volume", "ls", "-q", "--filter", &filter]);
    assert!(
        vols.contains(&format!("{}_data", s.name)),
        "named volumes are never removed: {vols}"
    );
    assert_eq!(s.plan().0, 0);
}

#[test]
fn one_shot_dependency_completed_successfully() {
    let mut s = Stack::new("apply-oneshot");
    let image = s.app_image("v1");
    s.write(&format!(
        "services:\n  migrate:\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo migrated\"]\n  \
         app:\n    image: {image}\n    depends_on:\n      migrate: {{condition: service_completed_successfully}}\n"
    ));
    s.apply_ok();
    let migrate = format!("{}-migrate-1", s.name);
    assert_eq!(
        s.inspect(&migrate, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert_eq!(
        s.inspect(&format!("{}-app-1", s.name), "{{.State.Running}}"),
        "true"
    );
    let (code, out) = s.plan();
    assert_eq!(code, 0, "a completed one-shot is converged:\n{out}");
}

#[test]
fn scale_up_and_down_and_restart_dependants() {
    let mut s = Stack::new("apply-scale");
    let image = s.app_image("v1");
    let yaml = |replicas: u32, env: &str| {
        format!(
            "services:\n  db:\n    image: {image}\n    environment: {{V: \"{env}\"}}\n  \
             app:\n    image: {image}\n    deploy: {{replicas: {replicas}}}\n    depends_on:\n      \
             db: {{condition: service_started, restart: true}}\n"
        )
    };
    s.write(&yaml(2, "a"));
    s.apply_ok();
    let app = |n: u32| format!("{}-app-{n}", s.name);
    assert_eq!(s.container_ids().len(), 3);
    s.write(&yaml(3, "a"));
    let (code, out) = s.plan();
    assert_eq!(code, 2);
    assert!(out.contains("app scale-up"), "{out}");
    s.apply_ok();
    assert!(s.container_ids().contains_key(&app(3)));
    s.write(&yaml(1, "a"));
    s.apply_ok();
    let names: Vec<String> = s.container_ids().into_keys().collect();
    assert_eq!(names, vec![app(1), format!("{}-db-1", s.name)]);
    // db changes; app is unchanged but depends on db with restart: true, so it is restarted.
    let started = s.inspect(&app(1), "{{.State.StartedAt}}");
    let id = s.container_ids()[&app(1)].clone();
    s.write(&yaml(1, "b"));
    s.apply_ok();
    assert_eq!(s.container_ids()[&app(1)], id, "app keeps its container");
    assert_ne!(
        s.inspect(&app(1), "{{.State.StartedAt}}"),
        started,
        "app was restarted"
    );
    assert_eq!(s.plan().0, 0);
}

#[test]
fn locked_apply_runs_the_locked_digest() {
    let mut s = Stack::new("apply-locked");
    let image = s.app_image("v1");
    let d1 = push_image(&image);
    s.write(&format!(
        "services:\n  app:\n    image: {image}\n    healthcheck:\n      \
         test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/\"]\n      \
         interval: 1s\n"
    ));
    let out = s.run(&["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // A new release under the same tag, locally and in the registry: --locked keeps v1.
    s.app_image("v2");
    let d2 = push_image(&image);
    assert_ne!(d1, d2);
    let out = s.run(&["apply", "--locked", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let app = format!("{}-app-1", s.name);
    assert_eq!(docker(&["exec", &app, "cat", "/version"]), "v1");
    assert_eq!(
        s.inspect(&app, "{{.Config.Image}}"),
        format!("{}@{d1}", repository_of(&image))
    );
    let out = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Updating the lock is what moves the service to v2.
    let out = s.run(&["lock", "--update"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let d2_short = &d2["sha256:".len().."sha256:".len() + 12];
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(d2_short),
        "{}",
        show(&out)
    );
    let out = s.run(&["apply", "--locked", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(docker(&["exec", &app, "cat", "/version"]), "v2");
    let out = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// A small deterministic PRNG (64-bit LCG, Knuth's MMIX constants): reproducible kill delays
/// without a crate.
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Lcg {
        Lcg(seed
            .wrapping_mul(2862933555777941757)
            .wrapping_add(3037000493))
    }

    /// Uniform-ish in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The high bits, xorshift-mixed: successive seeds must not give evenly spaced delays.
        let x = self.0 ^ (self.0 >> 29);
        (x >> 33) % bound.max(1)
    }
}

/// SIGKILL an update at a random instant of its run, 20 times: each next `apply` must recover
/// and converge, leaving one running container per service under its own name.
#[test]
fn random_sigkill_during_apply_is_recovered() {
    use std::time::{Duration, Instant};
    let mut s = Stack::new("apply-random-kill");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "even"));
    s.apply_ok();
    // The update window: how long an update that recreates web takes, unkilled.
    s.write(&three_services(&image, "odd"));
    let t = Instant::now();
    s.apply_ok();
    let window = t.elapsed().as_millis() as u64;
    let mut recovered = 0;
    let mut last_lines = Vec::new();
    for i in 0..20u64 {
        let env = if i % 2 == 0 { "even" } else { "odd" };
        s.write(&three_services(&image, env));
        let delay = Lcg::new(i).below(window);
        let err_file = s.state.path().join(format!("killed-{i}.stderr"));
        let mut child = s
            .cmd()
            .args(["apply", "--wait-timeout", "30s"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL (an error only when it already exited)
        child.wait().unwrap();
        let killed_err = std::fs::read_to_string(&err_file).unwrap_or_default();
        last_lines.push(format!(
            "{i}: {delay} ms: {}",
            killed_err.lines().last().unwrap_or("(nothing)")
        ));

        let out = s.run(&["apply", "--wait-timeout", "30s"]);
        let ctx = format!(
            "iteration {i}, killed after {delay} ms of {window}; killed run said:\n\
             {killed_err}\nnext apply: {}",
            show(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{ctx}");
        if String::from_utf8_lossy(&out.stderr).contains("recovering an interrupted apply") {
            recovered += 1;
        }
        let ps = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", s.name),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut have: Vec<&str> = ps.lines().collect();
        have.sort();
        let want: Vec<String> = ["db", "web", "worker"]
            .iter()
            .map(|x| format!("{}-{x}-1 running", s.name))
            .collect();
        assert_eq!(
            have, want,
            "one running container per service, no leftovers; {ctx}"
        );
        assert!(
            !ps.contains("-composeops-new") && !ps.contains("-composeops-old"),
            "{ctx}"
        );
        let web = format!("{}-web-1", s.name);
        assert!(s
            .inspect(&web, "{{range .Config.Env}}{{println .}}{{end}}")
            .contains(&format!("GREETING={env}")));
        let (code, plan) = s.plan();
        assert_eq!(
            code, 0,
            "plan after recovery must be empty; {ctx}\nplan: {plan}"
        );
    }
    eprintln!(
        "update window {window} ms; {recovered} of 20 kills needed recovery:\n{}",
        last_lines.join("\n")
    );
    // Most kills land inside the recreate (the health wait is most of the window).
    assert!(
        recovered >= 5,
        "only {recovered} of 20 kills hit a recreate:\n{}",
        last_lines.join("\n")
    );
}

/// A run killed while its create of `web-1-composeops-new` was in flight: the engine may
/// finish that create after the next run's recovery looked for it. That next run's recreate
/// then finds the name taken by a container that never started, and replaces it (it used to
/// fail the update, whose rollback then removed it: one failed run per such kill).
#[test]
fn a_temporary_container_created_after_recovery_is_replaced_when_it_never_ran() {
    let mut s = Stack::new("late-create");
    let image = s.app_image("v1");
    s.write(&three_services(&image, "even"));
    s.apply_ok();
    let temp = format!("{}-web-1-composeops-new", s.name);
    let label = format!("com.docker.compose.project={}", s.name);
    docker(&["create", "--name", &temp, "--label", &label, &image]);
    s.write(&three_services(&image, "odd"));
    let out = s.run(&["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let env = s.inspect_service("web", "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(env.contains("odd"), "{env}");
    assert!(docker_output(&["inspect", &temp]).status.code() != Some(0));
}
