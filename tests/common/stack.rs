//! A compose project for end-to-end tests of `plan`/`apply`: a temporary directory, its own
//! state directory, a unique project name, and cleanup of everything it made (ProjectGuard).
//! Test files add the helpers they alone need with their own `impl Stack` blocks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use super::{build_app_image, testbed, unique_project, ProjectGuard};

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub name: String,
    pub guard: ProjectGuard,
}

impl Stack {
    pub fn new(prefix: &str) -> Stack {
        let name = unique_project(prefix);
        Stack {
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            guard: ProjectGuard::new(name.clone()),
            name,
        }
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("compose.yaml"), yaml).unwrap();
    }

    /// `composeops -p NAME` in the project directory, with the stack's state directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_composeops"));
        c.current_dir(self.dir.path())
            .env("COMPOSEOPS_STATE_DIR", self.state.path())
            .env_remove("COMPOSEOPS_TEST_PAUSE_AT")
            .args(["-p", &self.name]);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Builds the test app `variant` (see [`build_app_image`]) as
    /// `<registry>/app-<project>:1`, removed on drop. Building it again with another variant
    /// is a new release under the same tag.
    pub fn app_image(&mut self, variant: &str) -> String {
        let tag = format!("{}/app-{}:1", testbed().registry, self.name);
        build_app_image(&tag, variant);
        self.guard.image(tag.clone());
        tag
    }

    /// Container name -> id of the project, all states.
    pub fn container_ids(&self) -> std::collections::BTreeMap<String, String> {
        super::container_ids(&self.name)
    }

    /// `docker inspect -f FORMAT` of replica 1 of `service`.
    pub fn inspect_service(&self, service: &str, format: &str) -> String {
        super::docker(&[
            "inspect",
            "-f",
            format,
            &format!("{}-{service}-1", self.name),
        ])
    }

    /// `apply ARGS` with `COMPOSEOPS_TEST_PAUSE_AT=step`, returned once `pauses` of its
    /// recreates wait there (a batch pauses once per replica): the running child, to kill or
    /// let go, and the stderr read so far. Panics if the run ends first.
    pub fn apply_paused_at(&self, args: &[&str], step: &str, pauses: usize) -> (Child, String) {
        let mut child = self
            .cmd()
            .arg("apply")
            .args(args)
            .env("COMPOSEOPS_TEST_PAUSE_AT", step)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mark = format!("test pause at {step}");
        let (mut seen, mut count) = (String::new(), 0);
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            count += usize::from(line.contains(&mark));
            if count == pauses {
                return (child, seen);
            }
        }
        let _ = child.wait();
        panic!("apply ended before {pauses} pause(s) at {step}:\n{seen}");
    }

    /// `apply` that must converge (exit 0).
    pub fn apply_ok(&self) -> Output {
        let out = self.run(&["apply", "--wait-timeout", "30s"]);
        assert_eq!(out.status.code(), Some(0), "apply failed:\n{}", show(&out));
        out
    }
}

/// A command's status, stdout and stderr, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
