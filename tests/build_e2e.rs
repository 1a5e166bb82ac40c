//! `build:` end to end against the real engine: the quickstart example is built, served and
//! healthy; an edit of its context rebuilds and replaces the container; a failing build
//! changes nothing; `.dockerignore`'d files are not inputs, and the files sent are the ones
//! `docker build` sends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::stack::{show, Stack};
use common::{copy_dir, docker, docker_output, http_get, testbed};

/// The quickstart example copied into a fresh stack directory, on a free loopback port.
struct Quickstart {
    stack: Stack,
    port: u16,
    _images: BuiltImages,
}

impl Quickstart {
    fn new(prefix: &str) -> Quickstart {
        assert!(!testbed().base_image.is_empty());
        let mut stack = Stack::new(prefix);
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
        copy_dir(&example, stack.dir.path());
        let image = format!("{}-web", stack.name);
        stack.guard.image(image);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Quickstart {
            _images: BuiltImages(stack.name.clone()),
            stack,
            port,
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.stack
            .cmd()
            .env("QUICKSTART_PORT", self.port.to_string())
            .env("QUICKSTART_BASE", &testbed().base_image)
            .args(args)
            .output()
            .unwrap()
    }

    fn apply_ok(&self) -> String {
        let out = self.run(&["apply", "--wait-timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "apply failed:\n{}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `plan --json`, parsed.
    fn plan(&self) -> serde_json::Value {
        let out = self.run(&["plan", "--json"]);
        assert_eq!(out.status.code(), Some(0), "plan failed:\n{}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.stack.dir.path().join(rel)
    }

    fn container(&self) -> String {
        format!("{}-web-1", self.stack.name)
    }

    fn image(&self) -> String {
        format!("{}-web", self.stack.name)
    }

    /// Waits until the container is healthy, then returns the page it serves.
    fn healthy_page(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = docker(&[
                "inspect",
                "-f",
                "{{.State.Health.Status}}",
                &self.container(),
            ]);
            if status == "healthy" {
                break;
            }
            assert!(Instant::now() < deadline, "not healthy: {status}");
            std::thread::sleep(Duration::from_millis(300));
        }
        let (code, body) = http_get(&format!("127.0.0.1:{}", self.port), "/", None);
        assert_eq!(code, 200, "{body}");
        body
    }
}

/// Removes the images a test built, the untagged ones its rebuilds left included.
struct BuiltImages(String);

impl Drop for BuiltImages {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.0);
        let ids = docker_output(&["image", "ls", "-aq", "--filter", &filter]);
        let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ids);
            let _ = docker_output(&args);
        }
    }
}

/// The stack, then its images, dropped in that order (containers go first).
fn with_images(stack: Stack) -> (Stack, BuiltImages) {
    let images = BuiltImages(stack.name.clone());
    (stack, images)
}

fn service<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap()
}

fn container_image(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Image}}", name])
}

#[test]
fn quickstart_builds_serves_and_a_pushed_change_is_rebuilt_and_deployed() {
    let q = Quickstart::new("build-qs");
    let p = q.plan();
    assert_eq!(service(&p, "web")["action"], "create", "{p:#}");
    assert_eq!(service(&p, "web")["build"], "image missing", "{p:#}");
    assert!(
        docker_output(&["image", "inspect", &q.image()])
            .status
            .code()
            != Some(0),
        "plan never builds"
    );

    let err = q.apply_ok();
    // Without a terminal a build is one line when it starts and one when it is built.
    assert!(
        err.contains("[web] building ") && err.contains(" steps in "),
        "build progress:\n{err}"
    );
    assert!(!err.contains("Step 3/"), "no line per step:\n{err}");
    assert!(q.healthy_page().contains("Hello from composeops"));
    let first = container_image(&q.container());
    let label = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.composeops.build-inputs\"}}",
        &q.image(),
    ]);
    assert!(label.starts_with("sha256:"), "inputs label: {label:?}");

    // A pushed change of the site: plan names the build and its reason without building.
    let index = q.path("app/site/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, html.replace("Hello from", "Changed by git in")).unwrap();
    let p = q.plan();
    let web = service(&p, "web");
    assert_eq!(web["action"], "recreate", "{p:#}");
    assert_eq!(web["build"], "build inputs changed", "{p:#}");
    assert_eq!(
        container_image(&q.container()),
        first,
        "plan changed nothing"
    );

    q.apply_ok();
    assert!(q.healthy_page().contains("Changed by git in"));
    assert_ne!(
        container_image(&q.container()),
        first,
        "rebuilt and recreated"
    );
    let p = q.plan();
    assert_eq!(service(&p, "web")["action"], "unchanged", "{p:#}");
    assert!(service(&p, "web").get("build").is_none(), "{p:#}");
    let out = q.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "plan is empty:\n{}", show(&out));
}

#[test]
fn a_failing_build_changes_nothing() {
    let q = Quickstart::new("build-fail");
    q.apply_ok();
    let id = docker(&["inspect", "-f", "{{.Id}}", &q.container()]);
    let image = docker(&["image", "inspect", "-f", "{{.Id}}", &q.image()]);

    let dockerfile = q.path("app/Dockerfile");
    let mut text = std::fs::read_to_string(&dockerfile).unwrap();
    text.push_str("RUN echo about to fail && exit 3\n");
    std::fs::write(&dockerfile, text).unwrap();
    let out = q.run(&["apply", "--wait-timeout", "60s"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service web"), "names the service:\n{err}");
    assert!(
        err.contains("returned a non-zero code: 3") && err.contains("about to fail"),
        "quotes the build output:\n{err}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &q.container()]), id);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &q.container()]),
        "true"
    );
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &q.image()]),
        image,
        "the image keeps its name"
    );
    assert!(q.healthy_page().contains("Hello from composeops"));
}

#[test]
fn dockerignored_files_are_not_build_inputs() {
    let q = Quickstart::new("build-ignore");
    q.apply_ok();
    let image = docker(&["image", "inspect", "-f", "{{.Id}}", &q.image()]);
    // Both are listed in app/.dockerignore.
    std::fs::write(q.path("app/NOTES.md"), "edited notes\n").unwrap();
    std::fs::create_dir_all(q.path("app/site/drafts")).unwrap();
    std::fs::write(q.path("app/site/drafts/next.html"), "draft").unwrap();
    let p = q.plan();
    assert_eq!(service(&p, "web")["action"], "unchanged", "{p:#}");
    assert!(service(&p, "web").get("build").is_none(), "{p:#}");
    q.apply_ok();
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Id}}", &q.image()]),
        image,
        "nothing was rebuilt"
    );
    // A file that is not ignored is an input.
    std::fs::write(q.path("app/site/new.html"), "new").unwrap();
    assert_eq!(service(&q.plan(), "web")["build"], "build inputs changed");
}

/// The files composeops sends are the ones `docker build` sends for the same `.dockerignore`.
#[test]
fn context_matches_docker_build() {
    let mut owned = with_images(Stack::new("build-ctx"));
    let stack = &mut owned.0;
    let dir = stack.dir.path();
    let ctx = dir.join("ctx");
    for f in [
        "a.txt",
        "b.log",
        "keep.log",
        "sub/a.txt",
        "sub/deep/c.log",
        "sub/deep/d.txt",
        "docs/x.md",
        "docs/README.md",
        "secret/key",
        "secret/public.pem",
        "node_modules/m/index.js",
        "lit*",
        "abc",
        "a/c",
    ] {
        let p = ctx.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f).unwrap();
    }
    std::fs::write(
        ctx.join(".dockerignore"),
        "# comment\n*.log\n!keep.log\n**/*.log\ndocs\n!docs/README.md\nsecret/*\n\
         !secret/*.pem\n/node_modules\na?c\nlit\\*\nDockerfile\n.dockerignore\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY . /ctx\nRUN cd /ctx && find . | sort > /list\n",
            testbed().base_image
        ),
    )
    .unwrap();
    let docker_tag = format!("{}-docker", stack.name);
    stack.guard.image(format!("{}-ctx", stack.name));
    stack.guard.image(docker_tag.clone());
    let out = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &docker_tag])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "docker build:\n{}", show(&out));
    stack.write("services:\n  ctx:\n    build: ./ctx\n    command: [sleep, \"3600\"]\n");
    let out = stack.run(&["apply", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let list = |image: &str| docker(&["run", "--rm", image, "cat", "/list"]);
    let ours = list(&format!("{}-ctx", stack.name));
    assert_eq!(ours, list(&docker_tag));
    // `!keep.log` is undone by the later `**/*.log`: the last matching line wins.
    assert!(!ours.contains(".log"), "{ours}");
    assert!(
        ours.contains("./docs/README.md") && !ours.contains("x.md"),
        "{ours}"
    );
    assert!(
        ours.contains("./secret/public.pem") && !ours.contains("key"),
        "{ours}"
    );
}

/// `image:` names the built image; `pull_policy: missing` builds only a missing image (as
/// Compose does), `pull_policy: build` builds on every apply (the build cache then gives the
/// same image, so nothing is recreated).
#[test]
fn image_name_and_pull_policies() {
    let mut owned = with_images(Stack::new("build-policy"));
    let stack = &mut owned.0;
    let named = format!("{}-named:v1", stack.name);
    stack.guard.image(named.clone());
    stack.guard.image(format!("{}-always", stack.name));
    for d in ["once", "always"] {
        let ctx = stack.dir.path().join(d);
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {}\nCOPY v /v\n", testbed().base_image),
        )
        .unwrap();
        std::fs::write(ctx.join("v"), "1").unwrap();
    }
    stack.write(&format!(
        "services:\n  once:\n    image: {named}\n    build: ./once\n    pull_policy: missing\n    \
         command: [sleep, \"3600\"]\n  always:\n    build: ./always\n    pull_policy: build\n    \
         command: [sleep, \"3600\"]\n"
    ));
    stack.apply_ok();
    let id = |r: &str| docker(&["image", "inspect", "-f", "{{.Id}}", r]);
    let once = id(&named);
    let always = id(&format!("{}-always", stack.name));
    assert_eq!(
        container_image(&format!("{}-once-1", stack.name)),
        once,
        "runs the image named by image:"
    );
    for d in ["once", "always"] {
        std::fs::write(stack.dir.path().join(d).join("v"), "2").unwrap();
    }
    let out = stack.run(&["plan", "--json"]);
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(service(&p, "once")["action"], "unchanged", "{p:#}");
    assert_eq!(service(&p, "always")["action"], "recreate", "{p:#}");
    assert_eq!(service(&p, "always")["build"], "pull_policy is build");
    stack.apply_ok();
    assert_eq!(id(&named), once, "missing: not rebuilt");
    let rebuilt = id(&format!("{}-always", stack.name));
    assert_ne!(rebuilt, always, "build: rebuilt");
    // Unchanged inputs: `build` still builds, from cache, to the same image.
    let err = String::from_utf8_lossy(&stack.apply_ok().stderr).into_owned();
    assert!(err.contains("building"), "{err}");
    assert_eq!(id(&format!("{}-always", stack.name)), rebuilt);
    let out = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// The `build:` settings reach the classic builder: dockerfile_inline, args, target, labels,
/// extra_hosts, network and shm_size.
#[test]
fn build_settings_reach_the_builder() {
    let mut owned = with_images(Stack::new("build-settings"));
    let stack = &mut owned.0;
    let image = format!("{}-app", stack.name);
    stack.guard.image(image.clone());
    std::fs::create_dir(stack.dir.path().join("ctx")).unwrap();
    let dockerfile = format!(
        "FROM {} AS app\nARG GREETING\n\
         RUN grep -q 'build-host' /etc/hosts && echo \"$GREETING\" > /greeting && \
         df -k /dev/shm | tail -1 > /shm\n\
         FROM app AS broken\nRUN exit 7\n",
        testbed().base_image
    );
    stack.write(&format!(
        "services:\n  app:\n    command: [sleep, \"3600\"]\n    build:\n      context: ./ctx\n      \
         dockerfile_inline: {}\n      target: app\n      args: {{GREETING: hello}}\n      \
         labels: {{org.example.team: web}}\n      extra_hosts: [\"build-host=10.1.2.3\"]\n      \
         network: none\n      shm_size: 32m\n",
        // `$$`: a literal `$` for the Dockerfile, not Compose interpolation.
        serde_json::to_string(&dockerfile).unwrap().replace('$', "$$")
    ));
    stack.apply_ok();
    let run = |cmd: &str| docker(&["run", "--rm", &image, "cat", cmd]);
    assert_eq!(run("/greeting"), "hello");
    assert!(
        run("/shm").split_whitespace().nth(1) == Some("32768"),
        "shm: {}",
        run("/shm")
    );
    let label = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.example.team\"}}",
        &image,
    ]);
    assert_eq!(label, "web");
}
