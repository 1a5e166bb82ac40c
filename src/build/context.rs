//! The build context: the files `.dockerignore` lets through, their digest, and their tar.
//!
//! One walk feeds both the inputs digest (what `plan` compares with the image's label) and the
//! tar sent to the engine, so what is hashed is exactly what is built. Tar headers carry no
//! owner and a fixed mtime: the same inputs give the same layers wherever the repository was
//! checked out (a fresh `git clone` touches every file).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use super::ignore::Ignore;

/// One entry of the context, in walk order (sorted by name).
#[derive(Debug)]
pub(crate) enum Entry {
    Dir {
        rel: String,
        mode: u32,
    },
    File {
        rel: String,
        mode: u32,
        path: PathBuf,
    },
    Link {
        rel: String,
        target: String,
    },
    /// A file made here: an inline Dockerfile, or one that lives outside the context.
    Generated {
        rel: String,
        data: Vec<u8>,
    },
}

/// Lists the entries of `dir` that `.dockerignore` lets through; `keep` (the Dockerfile's
/// path inside the context) is sent whatever the file says, as Docker does.
pub(crate) fn walk(dir: &Path, keep: Option<&str>) -> Result<Vec<Entry>> {
    let ignore_path = dir.join(".dockerignore");
    let mut ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(t) => {
            Ignore::parse(&t).map_err(|e| anyhow::anyhow!("{}: {e}", ignore_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", ignore_path.display())),
    };
    ignore.keep(".dockerignore");
    if let Some(k) = keep {
        ignore.keep(k);
    }
    let mut out = Vec::new();
    let mut it = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = it.next() {
        let e = e.with_context(|| format!("cannot read the build context {}", dir.display()))?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root")
            .to_string_lossy()
            .replace('\\', "/");
        let ft = e.file_type();
        if ignore.excludes(&rel) {
            // An excluded directory is still walked when an exception names something in it.
            if ft.is_dir() && !ignore.may_reinclude_below(&rel) {
                it.skip_current_dir();
            }
            continue;
        }
        let meta = e
            .metadata()
            .with_context(|| format!("cannot read {}", e.path().display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        out.push(if ft.is_dir() {
            Entry::Dir { rel, mode }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path())
                .with_context(|| format!("cannot read link {}", e.path().display()))?;
            Entry::Link {
                rel,
                target: target.to_string_lossy().into_owned(),
            }
        } else if ft.is_file() {
            Entry::File {
                rel,
                mode,
                path: e.path().to_path_buf(),
            }
        } else {
            // Sockets, fifos, devices: Docker sends their headers only; nothing to build from.
            continue;
        });
    }
    Ok(out)
}

impl Entry {
    fn rel(&self) -> &str {
        match self {
            Entry::Dir { rel, .. }
            | Entry::File { rel, .. }
            | Entry::Link { rel, .. }
            | Entry::Generated { rel, .. } => rel,
        }
    }
}

/// `sha256:…` of `config` (the build settings, canonical JSON) and every entry: path, kind,
/// mode and content. Names, order and mtimes of nothing else matter.
pub(crate) fn digest(config: &str, entries: &[Entry]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"composeops-build-inputs-v1\0");
    h.update(config.as_bytes());
    h.update(b"\0");
    for e in entries {
        match e {
            Entry::Dir { rel, mode } => h.update(format!("d {mode:o} {rel}\0")),
            Entry::Link { rel, target } => h.update(format!("l {rel}\0{target}\0")),
            Entry::File { rel, mode, path } => {
                h.update(format!("f {mode:o} {rel}\0"));
                let mut f = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mut fh = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    fh.update(&buf[..n]);
                }
                h.update(fh.finalize());
            }
            Entry::Generated { rel, data } => {
                h.update(format!("g {rel}\0"));
                h.update(Sha256::digest(data));
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// The uncompressed tar of `entries`, as the engine's `/build` reads it.
pub(crate) fn tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut hd = tar::Header::new_gnu();
        hd.set_mtime(0);
        hd.set_uid(0);
        hd.set_gid(0);
        let rel = e.rel();
        match e {
            Entry::Dir { mode, .. } => {
                hd.set_entry_type(tar::EntryType::Directory);
                hd.set_mode(*mode);
                hd.set_size(0);
                b.append_data(&mut hd, format!("{rel}/"), std::io::empty())?;
            }
            Entry::Link { target, .. } => {
                hd.set_entry_type(tar::EntryType::Symlink);
                hd.set_mode(0o777);
                hd.set_size(0);
                b.append_link(&mut hd, rel, target)?;
            }
            Entry::File { mode, path, .. } => {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                hd.set_entry_type(tar::EntryType::Regular);
                hd.set_mode(*mode);
                hd.set_size(f.metadata()?.len());
                b.append_data(&mut hd, rel, f)?;
            }
            Entry::Generated { data, .. } => {
                hd.set_entry_type(tar::EntryType::Regular);
                hd.set_mode(0o644);
                hd.set_size(data.len() as u64);
                b.append_data(&mut hd, rel, data.as_slice())?;
            }
        }
    }
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(Entry::rel).collect()
    }

    #[test]
    fn walk_honours_dockerignore_and_keeps_build_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join(".dockerignore"), "*\n!app\n!secret/keep\n").unwrap();
        std::fs::create_dir_all(p.join("app/sub")).unwrap();
        std::fs::write(p.join("app/sub/a.txt"), "a").unwrap();
        std::fs::create_dir(p.join("secret")).unwrap();
        std::fs::write(p.join("secret/keep"), "k").unwrap();
        std::fs::write(p.join("secret/key"), "no").unwrap();
        std::fs::write(p.join("notes"), "no").unwrap();
        let e = walk(p, Some("Dockerfile")).unwrap();
        assert_eq!(
            names(&e),
            [
                ".dockerignore",
                "Dockerfile",
                "app",
                "app/sub",
                "app/sub/a.txt",
                "secret/keep"
            ]
        );
    }

    #[test]
    fn digest_follows_content_not_ignored_files_or_mtimes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join(".dockerignore"), "*.log\n").unwrap();
        let sum = || digest("{}", &walk(p, Some("Dockerfile")).unwrap()).unwrap();
        let first = sum();
        std::fs::write(p.join("x.log"), "noise").unwrap();
        assert_eq!(sum(), first, "an ignored file does not change the digest");
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(sum(), first, "rewriting the same bytes does not either");
        std::fs::write(p.join("page.html"), "hi").unwrap();
        assert_ne!(sum(), first);
        assert_ne!(
            digest("{\"target\":\"x\"}", &walk(p, None).unwrap()).unwrap(),
            sum(),
            "the build settings are inputs too"
        );
    }

    #[test]
    fn tar_holds_the_entries() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/f"), "data").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("dir/l")).unwrap();
        let mut e = walk(d.path(), None).unwrap();
        e.push(Entry::Generated {
            rel: ".inline.Dockerfile".into(),
            data: b"FROM scratch\n".to_vec(),
        });
        let bytes = tar(&e).unwrap();
        let mut a = tar::Archive::new(bytes.as_slice());
        let got: Vec<String> = a
            .entries()
            .unwrap()
            .map(|x| x.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["dir/", "dir/f", "dir/l", ".inline.Dockerfile"]);
    }
}
