use super::*;

use crate::load::{load, LoadOptions};
use crate::resolve::reference::sha256_digest;

const SECRET: &str = "s3cr3t-VALUE-never-shown";

/// A project in a fresh directory with `files` beside its compose file, loaded with `env`.
fn project(
    yaml: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("p".into()),
        environ: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let p = load(&opts).unwrap().project;
    (dir, p)
}

const STACK: &str = "services:
  app:
    image: busybox
    volumes: [\"data:/etc/shadowed\"]
    configs:
      - app
      - source: inline
        target: /etc/inline.conf
        uid: \"1000\"
        gid: \"2000\"
        mode: 0640
      - source: inline
        target: rel/inline.txt
      - source: app
        target: /etc/shadowed
    secrets:
      - token
      - source: pw
        target: pw.txt
        mode: 0400
volumes:
  data: {}
configs:
  app:
    file: ./app.conf
  inline:
    content: |
      port = $${PORT}
secrets:
  token:
    environment: TOKEN
  pw:
    file: ./pw.txt
";

fn stack() -> (tempfile::TempDir, Project) {
    project(
        STACK,
        &[("app.conf", "listen 80\n"), ("pw.txt", SECRET)],
        &[("TOKEN", SECRET)],
    )
}

#[test]
fn targets_follow_compose() {
    let (dir, p) = stack();
    let r: Vec<(String, String)> = refs(&p, "app")
        .into_iter()
        .map(|r| (r.key(), r.target))
        .collect();
    assert_eq!(
        r,
        [
            ("secret token", "/run/secrets/token"),
            ("secret pw", "/run/secrets/pw.txt"),
            ("config app", "/app"),
            ("config inline", "/etc/inline.conf"),
            ("config inline", "/rel/inline.txt"),
            ("config app", "/etc/shadowed"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    drop(dir);
}

#[test]
fn spec_binds_files_and_lists_written_files_without_contents() {
    let (dir, p) = stack();
    // The service's volume keeps /etc/shadowed: Compose mounts a config only where nothing
    // else is.
    let s = spec_parts(&p, "app", &["/etc/shadowed"]);
    assert_eq!(s.secrets, ["token", "pw"]);
    assert_eq!(s.configs, ["app", "inline", "inline", "app"]);
    let path = |f: &str| dir.path().join(f).display().to_string();
    assert_eq!(
        s.binds,
        [
            ("/run/secrets/pw.txt".to_string(), path("pw.txt")),
            ("/app".to_string(), path("app.conf")),
        ]
    );
    let files: Vec<(&str, &str, &str)> = s
        .files
        .iter()
        .map(|f| (f.source.as_str(), f.target.as_str(), f.mode.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            ("secret token", "/run/secrets/token", "0444"),
            ("config inline", "/etc/inline.conf", "0640"),
            ("config inline", "/rel/inline.txt", "0444"),
        ]
    );
    assert_eq!(s.files[1].uid.as_deref(), Some("1000"));
    let json = serde_json::to_string(&s.files).unwrap();
    assert!(!json.contains(SECRET) && !json.contains("port ="), "{json}");
}

#[test]
fn resolve_digests_contents_and_prepares_uploads() {
    let (_dir, p) = stack();
    let files = resolve(&p).unwrap();
    let f = &files["app"];
    let keys: Vec<&str> = f.digests.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["config app", "config inline", "secret pw", "secret token"]
    );
    assert_eq!(f.digests["secret token"], sha256_digest(SECRET.as_bytes()));
    assert_eq!(f.digests["config app"], sha256_digest(b"listen 80\n"));
    let ups: Vec<(&str, u32, u32, u32, bool)> = f
        .uploads
        .iter()
        .map(|u| (u.target.as_str(), u.uid, u.gid, u.mode, u.keep_owner))
        .collect();
    assert_eq!(
        ups,
        [
            ("/run/secrets/token", 0, 0, 0o444, false),
            ("/etc/inline.conf", 1000, 2000, 0o640, true),
            ("/rel/inline.txt", 0, 0, 0o444, false),
        ]
    );
    // `$$` in the file is a literal `$` in the container.
    assert_eq!(f.uploads[1].data, b"port = ${PORT}\n");
    let shown = format!("{files:?} {}", f.label().unwrap());
    assert!(
        !shown.contains(SECRET) && !shown.contains("port ="),
        "{shown}"
    );
}

#[test]
fn changed_contents_are_named_never_shown() {
    let (dir, p) = stack();
    let before = resolve(&p).unwrap().remove("app").unwrap();
    let label = before.label().unwrap();
    assert!(before.changes(Some(&label)).is_empty());
    assert!(before.changes(None).is_empty(), "no label: made by Compose");
    std::fs::write(dir.path().join("app.conf"), "listen 81\n").unwrap();
    let (_d2, p2) = project(
        STACK,
        &[("app.conf", "listen 80\n"), ("pw.txt", SECRET)],
        &[("TOKEN", "another")],
    );
    assert_eq!(
        resolve(&p).unwrap()["app"].changes(Some(&label)),
        ["config app content changed"]
    );
    assert_eq!(
        resolve(&p2).unwrap()["app"].changes(Some(&label)),
        ["secret token content changed"]
    );
}

#[test]
fn empty_values_write_nothing() {
    let yaml = "services:\n  a:\n    image: busybox\n    secrets: [t]\nsecrets:\n  t:\n    environment: T\n";
    let (_d, p) = project(yaml, &[], &[("T", "")]);
    let f = &resolve(&p).unwrap()["a"];
    assert!(f.uploads.is_empty());
    assert_eq!(f.digests.len(), 1, "a value set later still recreates");
}

fn error(yaml: &str, files: &[(&str, &str)]) -> String {
    let (_d, p) = project(yaml, files, &[]);
    let e = resolve(&p).unwrap_err();
    crate::load::locate_in_files(e, &p.config_files).to_string()
}

#[test]
fn bad_sources_are_refused_naming_file_line_and_field() {
    let unset = "services:\n  a:\n    image: busybox\n    secrets: [t]\nsecrets:\n  t:\n    environment: NOT_SET_ANYWHERE\n";
    let e = error(unset, &[]);
    assert!(
        e.contains(
            "compose.yaml:7: secrets.t.environment: environment variable \"NOT_SET_ANYWHERE\""
        ),
        "{e}"
    );
    let missing = "services:\n  a:\n    image: busybox\n    configs: [c]\nconfigs:\n  c:\n    file: ./nope.conf\n";
    let e = error(missing, &[]);
    assert!(
        e.contains("compose.yaml:7: configs.c.file: cannot read "),
        "{e}"
    );
    assert!(e.contains("nope.conf"), "{e}");
    let ro = "services:\n  a:\n    image: busybox\n    read_only: true\n    configs: [c]\nconfigs:\n  c:\n    content: x\n";
    let e = error(ro, &[]);
    assert!(
        e.contains("compose.yaml:4: services.a.read_only: cannot write config"),
        "{e}"
    );
    let ext = "services:\n  a:\n    image: busybox\n    configs: [c]\nconfigs:\n  c:\n    external: true\n";
    assert!(error(ext, &[]).contains("configs.c.external: external config \"c\""));
    let uid = "services:\n  a:\n    image: busybox\n    configs: [{source: c, uid: bob}]\nconfigs:\n  c:\n    content: x\n";
    let e = error(uid, &[]);
    assert!(
        e.contains("services.a.configs[0].uid: uid \"bob\" is not a number"),
        "{e}"
    );
}

#[test]
fn undefined_reference_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "services:\n  a:\n    image: busybox\n    configs: [nope]\n";
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("p".into()),
        ..Default::default()
    };
    let e = load(&opts).unwrap_err().to_string();
    assert!(
        e.contains("compose.yaml:4: services.a.configs[0]: service \"a\" refers to undefined config \"nope\""),
        "{e}"
    );
}

#[test]
fn archives_carry_owner_and_mode_split_by_ownership() {
    let up = |target: &str, uid, keep| Upload {
        target: target.into(),
        uid,
        gid: uid,
        mode: 0o400,
        keep_owner: keep,
        data: b"x".to_vec(),
    };
    let a = archives(&[up("/run/secrets/a", 0, false), up("/etc/b", 7, true)]).unwrap();
    assert_eq!(a.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [false, true]);
    let mut t = tar::Archive::new(a[1].1.as_slice());
    let e = t.entries().unwrap().next().unwrap().unwrap();
    let h = e.header();
    assert_eq!(e.path().unwrap().to_str(), Some("etc/b"));
    assert_eq!(
        (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()),
        (7, 7, 0o400)
    );
}

#[test]
fn owner_and_mode_of_a_bind_mounted_file_are_warned_about() {
    let (_d, p) = stack();
    assert_eq!(
        warnings(&p),
        [
            "service app: secret pw is a bind-mounted file: its uid, gid and mode are ignored (as \
          Compose ignores them)"
        ]
    );
}
