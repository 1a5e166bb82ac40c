//! `load`: compose files on disk into a typed, interpolated, merged, validated [`Project`].
//!
//! The order follows Compose (compose-go): each file is parsed (YAML merge keys applied),
//! interpolated, its `include`s and `extends` resolved; the files are then merged with the
//! override rules, list fields de-duplicated, profiles applied, the result validated by field
//! name and canonicalised. Work is done on generic YAML values up to that point, so any valid
//! file loads; only then is it typed.

pub mod canonical;
pub mod dotenv;
pub mod error;
mod extensions;
mod file_refs;
mod input;
pub mod interpolate;
pub mod merge;
mod policy;
mod ports;
pub mod schema;
mod values;
pub mod yaml;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

use error::Result;
pub use error::{LoadError, Origin};
use yaml::SourceFile;

use crate::model::Project;

/// Compose's file names, in the order Compose looks for them.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
pub const OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What the CLI's global options say about where the project is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f`, in order; empty means discovery.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    /// Directory that relative `-f`, `--env-file` and discovery start from.
    pub cwd: PathBuf,
    /// The shell environment (it wins over env files).
    pub environ: IndexMap<String, String>,
}

impl LoadOptions {
    /// Options with the process's working directory and environment.
    pub fn from_process() -> LoadOptions {
        LoadOptions {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            environ: std::env::vars().collect(),
            ..Default::default()
        }
    }
}

/// Warnings that do not stop loading (unset variables, ignored settings), for the CLI to print.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<String>,
    /// Every file the load read or looked for, absolute: compose files with their `include`s
    /// and `extends`, the candidates of file discovery, env files (`.env`, `--env-file`,
    /// `include` env files, services' `env_file`), present or not. A change to any of them can
    /// change the project; the agent's file watcher wakes a project on these (and not on, say,
    /// a data directory its containers write to).
    pub files_read: BTreeSet<PathBuf>,
}

pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let cwd = absolute_dir(&opts.cwd);
    let mut files_read = BTreeSet::new();
    let discovery_env = discovery_env(opts, &cwd, &mut files_read);
    let files = config_files(opts, &cwd, &discovery_env, &mut files_read)?;
    let working_dir = match &opts.project_directory {
        Some(d) => absolute_dir(&cwd.join(d)),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(cwd.clone()),
    };
    let mut environment = project_environment(opts, &cwd, &working_dir, &mut files_read)?;
    // Compose reads ${PWD}, when the environment has none (a service manager's has none), as
    // the working directory of the process.
    if !environment.contains_key("PWD") {
        environment.insert("PWD".into(), cwd.to_string_lossy().into_owned());
    }
    let (mut merged, mut warnings, mut sources) =
        load_files(&files, &working_dir, &environment, &mut files_read)?;
    // ${COMPOSE_PROJECT_NAME} reads as the project's name when the environment does not set
    // it, and the name may come from the files' `name:`: read them again with it, only when
    // they mention it.
    if !environment.contains_key("COMPOSE_PROJECT_NAME")
        && sources.iter().any(|s| s.mentions_project_name)
    {
        let name = project_name(opts, &environment, &to_json(&merged), &working_dir)?;
        environment.insert("COMPOSE_PROJECT_NAME".into(), name);
        (merged, warnings, sources) =
            load_files(&files, &working_dir, &environment, &mut files_read)?;
    }
    if merged.get("version").is_some() {
        warnings.push("the attribute `version` is obsolete, it will be ignored".to_string());
    }
    let mut json = to_json(&merged);
    schema::validate(&json).map_err(|e| locate(e, &sources))?;

    let name = project_name(opts, &environment, &json, &working_dir)?;
    let profiles = active_profiles(opts, &environment);
    let disabled = apply_profiles(&mut json, &profiles).map_err(|e| locate(e, &sources))?;
    // Service-level `x-composeops` is gone after `take_extensions` (Compose drops it too).
    let policies = policy::take_policies(&json)
        .map_err(|e| locate(LoadError::all(e).unwrap_err(), &sources))?;
    let extensions = extensions::take_extensions(&mut json);
    let obj = json.as_object_mut().expect("top level is a mapping");
    obj.remove("include");
    obj.remove("version");
    obj.insert("name".into(), serde_json::Value::String(name.clone()));
    let cx = canonical::Context {
        project_name: &name,
        working_dir: &working_dir,
        environment: &environment,
        env_files: RefCell::new(Vec::new()),
    };
    canonical::canonicalise_project(obj, &cx).map_err(|e| locate(e, &sources))?;
    files_read.extend(cx.env_files.into_inner());
    files_read.extend(sources.iter().map(|s| s.path.clone()));
    let mut project = schema::to_project(json).map_err(|e| locate(e, &sources))?;
    project.extensions = extensions;
    for (name, policy) in policies {
        if let Some(s) = project.services.get_mut(&name) {
            s.update = policy.update;
            s.verify = policy.verify;
        }
    }
    project.working_dir = working_dir;
    project.config_files = files;
    project.environment = environment;
    project.disabled_services = disabled;
    check_references(&project).map_err(|e| locate(e, &sources))?;
    if opts.files.is_empty() && sources.is_empty() {
        warnings.push("no compose file found".into());
    }
    Ok(Loaded {
        project,
        warnings,
        files_read,
    })
}

/// The environment compose file discovery reads: COMPOSE_FILE and friends may come from the
/// shell or from a .env beside the project; the shell's win, then the working directory's
/// .env (unless --env-file names others).
fn discovery_env(
    opts: &LoadOptions,
    cwd: &Path,
    files_read: &mut BTreeSet<PathBuf>,
) -> IndexMap<String, String> {
    let mut discovery_env = opts.environ.clone();
    if opts.env_files.is_empty() {
        let dot = opts
            .project_directory
            .as_ref()
            .map(|d| cwd.join(d))
            .unwrap_or(cwd.to_path_buf());
        files_read.insert(absolute_dir(&dot.join(".env")));
        if let Ok(c) = input::read_limited(&dot.join(".env")) {
            if let Ok(vars) = dotenv::parse(&c, &opts.environ) {
                for (k, v) in vars {
                    if let Some(v) = v {
                        discovery_env.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    discovery_env
}

/// Container references between services and rollout values, checked at load so that a bad
/// one stops the run before the engine is asked anything.
fn check_references(project: &Project) -> Result<(), LoadError> {
    let problems = crate::namespaces::validate(project)
        .into_iter()
        .map(|p| LoadError::new(p.message).at_path(p.path))
        .chain(
            crate::update::problems(project)
                .into_iter()
                .map(|(path, msg)| LoadError::new(msg).at_path(path)),
        );
    LoadError::all(problems.collect())
}

/// Reads, interpolates and merges the compose files in order; with the warnings (unset
/// variables) and the parsed sources, for error locations.
fn load_files(
    files: &[PathBuf],
    working_dir: &Path,
    environment: &IndexMap<String, String>,
    files_read: &mut BTreeSet<PathBuf>,
) -> Result<(Value, Vec<String>, Vec<SourceFile>)> {
    let mut warnings = Vec::new();
    let mut sources: Vec<SourceFile> = Vec::new();
    let mut merged: Option<Value> = None;
    for f in files {
        let mut ld = FileLoader {
            env: environment,
            unset: Vec::new(),
            sources: &mut sources,
            env_files: files_read,
        };
        let value = ld.load_file(f, working_dir, &mut Vec::new())?;
        for u in ld.unset {
            let w = format!("The {u:?} variable is not set. Defaulting to a blank string.");
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        merged = Some(match merged {
            None => {
                let mut v = value;
                merge::strip_tags(&mut v);
                v
            }
            Some(base) => merge::merge(base, value, &[]).map_err(|e| locate(e, &sources))?,
        });
    }
    let mut merged = merged.unwrap_or(Value::Mapping(Mapping::new()));
    if let Some(Value::Mapping(services)) = merged.get_mut("services") {
        for (_, s) in services.iter_mut() {
            if let Value::Mapping(m) = s {
                merge::dedup_service(m)?;
            }
        }
    }
    Ok((merged, warnings, sources))
}

/// The absolute form of a directory (no symlink resolution).
fn absolute_dir(p: &Path) -> PathBuf {
    if p.is_absolute() {
        PathBuf::from(canonical::clean(p))
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        PathBuf::from(canonical::clean(&cwd.join(p)))
    }
}

/// The compose files to load: `-f`, else `COMPOSE_FILE`, else discovery upwards from `cwd`
/// (plus the override file beside the one found). Discovery records in `looked_for` every
/// name it tried: creating `compose.override.yaml` later changes the project.
fn config_files(
    opts: &LoadOptions,
    cwd: &Path,
    env: &IndexMap<String, String>,
    looked_for: &mut BTreeSet<PathBuf>,
) -> Result<Vec<PathBuf>> {
    let explicit = explicit_files(opts, env);
    if !explicit.is_empty() {
        // Compose resolves -f against the working directory: say which path was tried.
        return explicit
            .into_iter()
            .map(|f| {
                let abs = PathBuf::from(canonical::clean(&cwd.join(&f)));
                match abs.exists() {
                    true => Ok(abs),
                    false => Err(LoadError::new(format!(
                        "compose file not found: {} (resolved to {})",
                        f.display(),
                        abs.display()
                    ))),
                }
            })
            .collect();
    }
    let start = opts
        .project_directory
        .as_ref()
        .map(|d| cwd.join(d))
        .unwrap_or(cwd.into());
    discover(&start, looked_for)
}

/// `-f`, else the files COMPOSE_FILE lists (split on COMPOSE_PATH_SEPARATOR, `:` by default).
fn explicit_files(opts: &LoadOptions, env: &IndexMap<String, String>) -> Vec<PathBuf> {
    if !opts.files.is_empty() {
        return opts.files.clone();
    }
    let Some(cf) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let sep = env
        .get("COMPOSE_PATH_SEPARATOR")
        .map(String::as_str)
        .unwrap_or(":");
    cf.split(sep)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The first directory from `start` upwards that holds a compose file: that file, and the
/// override file beside it if there is one.
fn discover(start: &Path, looked_for: &mut BTreeSet<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut dir = Some(absolute_dir(start));
    while let Some(d) = dir {
        looked_for.extend(
            COMPOSE_FILE_NAMES
                .iter()
                .chain(&OVERRIDE_FILE_NAMES)
                .map(|n| d.join(n)),
        );
        let first = |names: &[&str]| names.iter().map(|n| d.join(n)).find(|p| p.is_file());
        if let Some(found) = first(&COMPOSE_FILE_NAMES) {
            return Ok([Some(found), first(&OVERRIDE_FILE_NAMES)]
                .into_iter()
                .flatten()
                .collect());
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Err(LoadError::new(format!(
        "no configuration file provided: none of {} found in {} or its parent directories",
        COMPOSE_FILE_NAMES.join(", "),
        start.display()
    )))
}

/// The interpolation environment: env files (`--env-file`, later wins; else `.env` in the
/// project directory), with the shell environment on top. Each env file tried goes to `read`.
fn project_environment(
    opts: &LoadOptions,
    cwd: &Path,
    working_dir: &Path,
    read: &mut BTreeSet<PathBuf>,
) -> Result<IndexMap<String, String>> {
    // `--env-file` wins; else COMPOSE_ENV_FILES (comma-separated); else `.env`.
    let from_var: Vec<PathBuf> = opts
        .environ
        .get("COMPOSE_ENV_FILES")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<(PathBuf, bool)> = if !opts.env_files.is_empty() {
        opts.env_files.iter().map(|f| (cwd.join(f), true)).collect()
    } else if !from_var.is_empty() {
        from_var.iter().map(|f| (cwd.join(f), true)).collect()
    } else {
        vec![(working_dir.join(".env"), false)]
    };
    let mut env = IndexMap::new();
    for (f, required) in files {
        read.insert(absolute_dir(&f));
        let content = match input::read_limited(&f) {
            Ok(c) => c,
            // Compose ignores a missing default `.env`, and a directory of that name.
            Err(e)
                if !required
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                    ) =>
            {
                continue
            }
            Err(e) => {
                return Err(LoadError::new(format!("couldn't read env file: {e}")).in_file(&f));
            }
        };
        // Variables in an env file may refer to the shell and to earlier env files.
        let mut lookup = env.clone();
        for (k, v) in &opts.environ {
            lookup.insert(k.clone(), v.clone());
        }
        let vars = dotenv::parse(&content, &lookup).map_err(|e| {
            LoadError::new(format!("invalid env file: {}", e.message))
                .in_file(&f)
                .at_line(Some(e.line))
        })?;
        for (k, v) in vars {
            if let Some(v) = v.or_else(|| opts.environ.get(&k).cloned()) {
                env.insert(k, v);
            }
        }
    }
    for (k, v) in &opts.environ {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

/// Loads one file with its includes and extends resolved (not yet merged with other files).
struct FileLoader<'a> {
    env: &'a IndexMap<String, String>,
    unset: Vec<String>,
    sources: &'a mut Vec<SourceFile>,
    /// The env files of `include` entries, tried or read.
    env_files: &'a mut BTreeSet<PathBuf>,
}

/// One entry of `include:`: a path, or a mapping with `path` (one or a list),
/// `project_directory` and `env_file` (one or a list).
struct IncludeEntry {
    paths: Vec<String>,
    project_dir: Option<String>,
    env_files: Vec<String>,
}

impl IncludeEntry {
    fn parse(e: &Value) -> std::result::Result<IncludeEntry, &'static str> {
        let list = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Sequence(s)) => s.iter().map(merge::scalar_str).collect(),
                _ => vec![],
            }
        };
        match e {
            Value::String(s) => Ok(IncludeEntry {
                paths: vec![s.clone()],
                project_dir: None,
                env_files: vec![],
            }),
            Value::Mapping(m) => {
                let paths = list(m.get("path"));
                if paths.is_empty() {
                    return Err("include entries need a `path`");
                }
                Ok(IncludeEntry {
                    paths,
                    project_dir: m.get("project_directory").map(merge::scalar_str),
                    env_files: list(m.get("env_file")),
                })
            }
            _ => Err("must be a path or a mapping"),
        }
    }
}
impl FileLoader<'_> {
    fn load_file(
        &mut self,
        path: &Path,
        working_dir: &Path,
        chain: &mut Vec<PathBuf>,
    ) -> Result<Value> {
        let mut src = yaml::read_file(path)?;
        let mut value = std::mem::take(&mut src.value);
        interpolate_tree(&mut value, "", self.env, &mut self.unset, &src)?;
        self.sources.push(src.clone());
        let Value::Mapping(top) = &mut value else {
            unreachable!("checked by read_file")
        };
        if let Some(inc) = top.remove("include") {
            // Included resources are the base; the including file's own definitions are
            // merged over them (Compose merges a same-named service, the includer winning).
            let included = self.includes(inc, &src, working_dir, chain)?;
            let mut base = Mapping::new();
            for (kind, items) in included {
                let entry = base
                    .entry(Value::from(kind.as_str()))
                    .or_insert(Value::Mapping(Mapping::new()));
                if let Value::Mapping(m) = entry {
                    for (k, v) in items {
                        let merged = match m.remove(&k) {
                            Some(prev) => merge::merge(prev, v, &["services", "*"])?,
                            None => v,
                        };
                        m.insert(k, merged);
                    }
                }
            }
            let own = std::mem::take(top);
            let merged = merge::merge_mappings(base, own, &[]).map_err(|e| e.in_file(&src.path))?;
            *top = merged;
        }
        self.resolve_extends(&mut value, &src)?;
        Ok(value)
    }

    /// Loads each `include` entry as a project of its own (own directory, own env files) and
    /// returns its top-level sections with paths made absolute.
    fn includes(
        &mut self,
        inc: Value,
        src: &SourceFile,
        working_dir: &Path,
        chain: &mut Vec<PathBuf>,
    ) -> Result<Vec<(String, Mapping)>> {
        let Value::Sequence(entries) = inc else {
            return Err(src.error_at("include", "must be a list"));
        };
        let base_dir = src.path.parent().unwrap_or(working_dir).to_path_buf();
        let mut out: Vec<(String, Mapping)> = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let p = format!("include[{i}]");
            let IncludeEntry {
                paths,
                project_dir,
                env_files,
            } = IncludeEntry::parse(&e).map_err(|m| src.error_at(&p, m))?;
            let files: Vec<PathBuf> = paths
                .iter()
                .map(|f| PathBuf::from(canonical::absolute(&base_dir, f)))
                .collect();
            for f in &files {
                if chain.contains(f) {
                    return Err(src.error_at(&p, format!("include cycle through {}", f.display())));
                }
                if !f.is_file() {
                    return Err(
                        src.error_at(&p, format!("included file {} not found", f.display()))
                    );
                }
            }
            let dir = match project_dir {
                Some(d) => PathBuf::from(canonical::absolute(&base_dir, &d)),
                None => files[0]
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(base_dir.clone()),
            };
            let env = self.include_env(&dir, &base_dir, &env_files, src, &p)?;
            let mut merged: Option<Value> = None;
            for f in &files {
                chain.push(f.clone());
                let mut sub = FileLoader {
                    env: &env,
                    unset: Vec::new(),
                    sources: self.sources,
                    env_files: self.env_files,
                };
                let v = sub.load_file(f, &dir, chain)?;
                self.unset.extend(sub.unset);
                chain.pop();
                merged = Some(match merged {
                    None => v,
                    Some(b) => merge::merge(b, v, &[]).map_err(|e| e.in_file(f))?,
                });
            }
            let Some(Value::Mapping(mut m)) = merged else {
                continue;
            };
            absolutize(&mut m, &dir);
            for kind in [
                "services", "networks", "volumes", "secrets", "configs", "models",
            ] {
                if let Some(Value::Mapping(items)) = m.remove(kind) {
                    out.push((kind.to_string(), items));
                }
            }
        }
        Ok(out)
    }

    /// An included project's environment: its env files (default: its .env in `dir`; paths
    /// relative to `base_dir`), with the outer environment on top.
    fn include_env(
        &mut self,
        dir: &Path,
        base_dir: &Path,
        env_files: &[String],
        src: &SourceFile,
        p: &str,
    ) -> Result<IndexMap<String, String>> {
        let mut env: IndexMap<String, String> = IndexMap::new();
        let env_paths: Vec<(PathBuf, bool)> = if env_files.is_empty() {
            vec![(dir.join(".env"), false)]
        } else {
            env_files
                .iter()
                .map(|f| (PathBuf::from(canonical::absolute(base_dir, f)), true))
                .collect()
        };
        for (f, required) in env_paths {
            self.env_files.insert(f.clone());
            match input::read_limited(&f) {
                Ok(c) => {
                    let vars = dotenv::parse(&c, self.env).map_err(|e| {
                        LoadError::new(format!("invalid env file: {}", e.message))
                            .in_file(&f)
                            .at_line(Some(e.line))
                    })?;
                    for (k, v) in vars {
                        if let Some(v) = v {
                            env.insert(k, v);
                        }
                    }
                }
                Err(_) if !required => {}
                Err(e) => return Err(src.error_at(p, format!("env file {}: {e}", f.display()))),
            }
        }
        for (k, v) in self.env {
            env.insert(k.clone(), v.clone());
        }
        Ok(env)
    }

    /// Resolves `extends` in every service of this file, recursively, refusing cycles.
    fn resolve_extends(&mut self, value: &mut Value, src: &SourceFile) -> Result<()> {
        let Some(Value::Mapping(services)) = value.get("services").cloned() else {
            return Ok(());
        };
        let mut resolved = Mapping::new();
        for (name, _) in &services {
            let n = merge::scalar_str(name);
            let svc = self.extended_service(&services, &n, src, &mut Vec::new())?;
            resolved.insert(name.clone(), svc);
        }
        value["services"] = Value::Mapping(resolved);
        Ok(())
    }

    fn extended_service(
        &mut self,
        services: &Mapping,
        name: &str,
        src: &SourceFile,
        stack: &mut Vec<(PathBuf, String)>,
    ) -> Result<Value> {
        let path = format!("services.{name}");
        let here = (src.path.clone(), name.to_string());
        if stack.contains(&here) {
            let chain: Vec<String> = stack
                .iter()
                .chain([&here])
                .map(|(_, s)| s.clone())
                .collect();
            return Err(src.error_at(
                &format!("{path}.extends"),
                format!("circular reference in extends: {}", chain.join(" -> ")),
            ));
        }
        let Some(svc) = services.get(name).cloned() else {
            return Err(src.error_at(
                &path,
                format!("cannot extend service {name:?}: no such service"),
            ));
        };
        let mut svc = match svc {
            Value::Null => Value::Mapping(Mapping::new()),
            v => v,
        };
        let Some(ext) = svc.as_mapping_mut().and_then(|m| m.remove("extends")) else {
            return Ok(svc);
        };
        let ext_path = format!("{path}.extends");
        let (base_name, file) = match &ext {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => (
                m.get("service")
                    .map(merge::scalar_str)
                    .ok_or_else(|| src.error_at(&ext_path, "extends needs a `service`"))?,
                m.get("file").map(merge::scalar_str),
            ),
            _ => return Err(src.error_at(&ext_path, "must be a service name or a mapping")),
        };
        stack.push(here);
        let base = match file {
            None => self.extended_service(services, &base_name, src, stack)?,
            Some(f) => {
                let dir = src.path.parent().unwrap_or(Path::new("/"));
                let other_path = PathBuf::from(canonical::absolute(dir, &f));
                if !other_path.is_file() {
                    return Err(src.error_at(
                        &format!("{ext_path}.file"),
                        format!("extended file {} not found", other_path.display()),
                    ));
                }
                let mut other = yaml::read_file(&other_path)?;
                let mut v = std::mem::take(&mut other.value);
                interpolate_tree(&mut v, "", self.env, &mut self.unset, &other)?;
                self.sources.push(other.clone());
                let other_services = match v.get("services") {
                    Some(Value::Mapping(m)) => m.clone(),
                    _ => Mapping::new(),
                };
                let mut base = self.extended_service(&other_services, &base_name, &other, stack)?;
                let other_dir = other_path.parent().unwrap_or(Path::new("/"));
                if other_dir != dir {
                    if let Value::Mapping(m) = &mut base {
                        absolutize_service(m, other_dir);
                    }
                }
                base
            }
        };
        stack.pop();
        merge::merge(base, svc, &[""]).map_err(|e| e.in_file(&src.path))
    }
}

/// Interpolates every string value of a file's tree (keys stay as written, like Compose).
fn interpolate_tree(
    v: &mut Value,
    path: &str,
    env: &IndexMap<String, String>,
    unset: &mut Vec<String>,
    src: &SourceFile,
) -> Result<()> {
    match v {
        Value::String(s) => {
            *s = interpolate::interpolate(s, env, unset)
                .map_err(|e| src.error_at(path, e.to_string()))?;
        }
        Value::Mapping(m) => {
            for (k, x) in m.iter_mut() {
                let key = merge::scalar_str(k);
                // Extension fields are interpolated too, but their errors are theirs.
                interpolate_tree(x, &yaml::join(path, &key), env, unset, src)?;
            }
        }
        Value::Sequence(s) => {
            for (i, x) in s.iter_mut().enumerate() {
                interpolate_tree(x, &format!("{path}[{i}]"), env, unset, src)?;
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, path, env, unset, src)?,
        _ => {}
    }
    Ok(())
}

/// Makes the relative paths of an included project absolute against its own directory, so they
/// keep pointing at the same files once merged into the including project.
fn absolutize(m: &mut Mapping, dir: &Path) {
    if let Some(Value::Mapping(services)) = m.get_mut("services") {
        for (_, s) in services.iter_mut() {
            if let Value::Mapping(s) = s {
                absolutize_service(s, dir);
            }
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(Value::Mapping(items)) = m.get_mut(kind) {
            for (_, it) in items.iter_mut() {
                if let Some(Value::String(f)) = it.get_mut("file") {
                    *f = canonical::absolute(dir, f);
                }
            }
        }
    }
}

fn absolutize_service(s: &mut Mapping, dir: &Path) {
    let abs = |p: &str| canonical::absolute(dir, p);
    match s.get_mut("build") {
        Some(Value::String(c)) => *c = abs(c),
        Some(Value::Mapping(b)) => {
            if let Some(Value::String(c)) = b.get_mut("context") {
                if !c.contains("://") {
                    *c = abs(c);
                }
            } else {
                b.insert("context".into(), Value::String(abs(".")));
            }
        }
        _ => {}
    }
    match s.get_mut("env_file") {
        Some(Value::String(f)) => *f = abs(f),
        Some(Value::Sequence(items)) => {
            for it in items {
                match it {
                    Value::String(f) => *f = abs(f),
                    Value::Mapping(m) => {
                        if let Some(Value::String(f)) = m.get_mut("path") {
                            *f = abs(f);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Sequence(vols)) = s.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(spec) => {
                    let parts = canonical::split_volume_spec(spec);
                    if parts.len() >= 2 && (parts[0].starts_with('.') || parts[0].starts_with('~'))
                    {
                        let mut p = parts.clone();
                        p[0] = abs(&parts[0]);
                        *spec = p.join(":");
                    }
                }
                Value::Mapping(m) => {
                    let is_bind = m.get("type").and_then(Value::as_str) == Some("bind");
                    if let (true, Some(Value::String(src))) = (is_bind, m.get_mut("source")) {
                        *src = abs(src);
                    }
                }
                _ => {}
            }
        }
    }
}

/// YAML value into JSON (keys as strings; Compose keys are strings anyway).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                n.as_f64().map(J::from).unwrap_or(J::Null)
            }
        }
        Value::String(s) => J::String(s.clone()),
        Value::Sequence(s) => J::Array(s.iter().map(to_json).collect()),
        Value::Mapping(m) => J::Object(
            m.iter()
                .map(|(k, v)| (merge::scalar_str(k), to_json(v)))
                .collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}

/// The project name a load with `opts` most likely gives, known before reading any file:
/// `-p`, COMPOSE_PROJECT_NAME from the environment, else the name of the project directory
/// (`--project-directory`, the first `-f` file's directory, or the working directory). A
/// `name:` in the files, COMPOSE_PROJECT_NAME in `.env` or a compose file found in a parent
/// directory give another: callers use it only as a guess, and check it against the load.
pub fn likely_project_name(opts: &LoadOptions) -> Option<String> {
    if let Some(name) = explicit_project_name(opts, &opts.environ) {
        return Some(name);
    }
    let cwd = absolute_dir(&opts.cwd);
    let dir = match (&opts.project_directory, opts.files.first()) {
        (Some(d), _) => cwd.join(d),
        (None, Some(f)) => cwd.join(f).parent()?.to_path_buf(),
        (None, None) => cwd,
    };
    let name = normalise_project_name(&dir.file_name()?.to_string_lossy());
    (!name.is_empty()).then_some(name)
}

/// `-p`, else COMPOSE_PROJECT_NAME from `env` when it is set and not empty.
fn explicit_project_name(opts: &LoadOptions, env: &IndexMap<String, String>) -> Option<String> {
    opts.project_name.clone().or_else(|| {
        env.get("COMPOSE_PROJECT_NAME")
            .filter(|s| !s.is_empty())
            .cloned()
    })
}

/// Project name: `-p` > COMPOSE_PROJECT_NAME > `name:` > directory basename. An explicit name
/// must already be in normal form; the basename is normalised.
fn project_name(
    opts: &LoadOptions,
    env: &IndexMap<String, String>,
    model: &serde_json::Value,
    working_dir: &Path,
) -> Result<String> {
    let explicit = explicit_project_name(opts, env);
    // The file's `name:` is normalised silently (Compose does); an explicit one must be valid.
    let from_file = model
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|s| !s.is_empty());
    if let (None, Some(n)) = (&explicit, from_file) {
        let name = normalise_project_name(n);
        if !name.is_empty() {
            return Ok(name);
        }
    }
    if let Some(name) = explicit {
        if normalise_project_name(&name) != name || name.is_empty() {
            return Err(LoadError::new(format!(
                "invalid project name {name:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
            )));
        }
        return Ok(name);
    }
    let base = working_dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = normalise_project_name(&base);
    if name.is_empty() {
        return Err(LoadError::new(format!(
            "cannot derive a project name from the directory {}: use -p NAME",
            working_dir.display()
        )));
    }
    Ok(name)
}

/// Lowercase, keep `[a-z0-9_-]`, trim leading `_` and `-`.
pub fn normalise_project_name(s: &str) -> String {
    let lowered: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lowered.trim_start_matches(['_', '-']).to_string()
}

fn active_profiles(opts: &LoadOptions, env: &IndexMap<String, String>) -> Vec<String> {
    if !opts.profiles.is_empty() {
        return opts
            .profiles
            .iter()
            .flat_map(|p| p.split(','))
            .map(|s| s.trim().to_string())
            .collect();
    }
    env.get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Drops services whose profiles are not active; a dependency on a dropped service is an
/// error (as in Compose), unless it is `required: false`.
fn apply_profiles(json: &mut serde_json::Value, active: &[String]) -> Result<Vec<String>> {
    let Some(serde_json::Value::Object(services)) = json.get_mut("services") else {
        return Ok(vec![]);
    };
    let enabled = |svc: &serde_json::Value| -> bool {
        match svc.get("profiles") {
            Some(serde_json::Value::Array(p)) if !p.is_empty() => p.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| active.iter().any(|a| a == x || a == "*"))
            }),
            _ => true,
        }
    };
    let disabled: Vec<String> = services
        .iter()
        .filter(|(_, s)| !enabled(s))
        .map(|(k, _)| k.clone())
        .collect();
    for d in &disabled {
        services.remove(d);
    }
    for (name, svc) in services.iter() {
        let deps: Vec<(String, bool)> = match svc.get("depends_on") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str())
                .map(|s| (s.to_string(), true))
                .collect(),
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("required").and_then(|r| r.as_bool()).unwrap_or(true),
                    )
                })
                .collect(),
            _ => vec![],
        };
        for (dep, required) in deps {
            if !services.contains_key(&dep) && required {
                let why = if disabled.contains(&dep) {
                    " (it is disabled: enable its profile with --profile)".to_string()
                } else {
                    String::new()
                };
                return Err(LoadError::new(format!(
                    "service {name:?} depends on undefined service {dep:?}{why}"
                ))
                .at_path(format!("services.{name}.depends_on")));
            }
        }
    }
    Ok(disabled)
}

/// Gives an error that has a field path the file and line where that path was written: the
/// file that wrote the longest part of the path, the later file on a tie (it overrides).
fn locate(e: LoadError, sources: &[SourceFile]) -> LoadError {
    if !e.more.is_empty() {
        let mut all: Vec<LoadError> = e.each().into_iter().map(|e| locate(e, sources)).collect();
        // In file order, as an operator fixes them (stable: same line keeps check order).
        all.sort_by_key(|e| {
            let file = sources
                .iter()
                .position(|s| Some(&s.path) == e.origin.file.as_ref());
            (file.unwrap_or(usize::MAX), e.origin.line)
        });
        return LoadError::all(all).unwrap_err();
    }
    if e.origin.file.is_some() {
        return e;
    }
    let Some(path) = e.origin.path.clone() else {
        return match sources.first() {
            Some(s) => e.in_file(&s.path),
            None => e,
        };
    };
    match best_source(sources.iter().map(|s| (&s.path, &s.lines)), &path) {
        Some((file, lines)) => e.in_file(file).at_line(lines.line_of(&path)),
        None => e,
    }
}

/// The file that wrote the longest part of `path` (the later one on a tie: it overrides).
fn best_source<'a>(
    sources: impl Iterator<Item = (&'a PathBuf, &'a yaml::LineIndex)>,
    path: &str,
) -> Option<(&'a PathBuf, &'a yaml::LineIndex)> {
    let mut best = None;
    let mut best_len = 0;
    for (file, lines) in sources {
        let mut p = path;
        loop {
            if lines.has(p) {
                if best.is_none() || p.len() >= best_len {
                    best = Some((file, lines));
                    best_len = p.len();
                }
                break;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break,
            }
        }
    }
    best
}

/// [`locate`] for a check made after loading (by a later stage, on the [`Project`]): reads
/// the project's compose files again to name the file and line of each error's field. Files
/// that cannot be read any more are skipped; the first compose file is named at worst.
pub fn locate_in_files(e: LoadError, files: &[PathBuf]) -> LoadError {
    let indexed: Vec<(PathBuf, yaml::LineIndex)> = files
        .iter()
        .filter_map(|f| {
            let src = std::fs::read_to_string(f).ok()?;
            Some((f.clone(), yaml::LineIndex::from_source(&src)))
        })
        .collect();
    let one = |e: LoadError| {
        let found = e
            .origin
            .path
            .as_deref()
            .and_then(|p| best_source(indexed.iter().map(|(f, l)| (f, l)), p))
            .map(|(f, l)| {
                (
                    f.clone(),
                    e.origin.path.as_deref().and_then(|p| l.line_of(p)),
                )
            });
        match (found, files.first()) {
            (Some((f, line)), _) => e.in_file(&f).at_line(line),
            (None, Some(f)) => e.in_file(f),
            (None, None) => e,
        }
    };
    let all: Vec<LoadError> = e.each().into_iter().map(one).collect();
    LoadError::all(all).unwrap_err()
}

/// Loads `yaml` as project `p` from a temporary directory: a fixture for unit tests of the
/// later pipeline stages.
#[cfg(test)]
pub(crate) fn test_project(yaml: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("p".into()),
        ..Default::default()
    };
    load(&opts).unwrap().project
}
