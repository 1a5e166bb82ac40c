//! The one error type of the loader: every message names the file, the line (where YAML has
//! one) and the field path, because an operator fixing a compose file needs all three.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in the input a problem sits. Each part is optional: a missing env file has no line,
/// a YAML syntax error has no field path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub origin: Origin,
    pub message: String,
    /// Further problems found by the same check (validation reports every one it finds, so
    /// that fixing a file takes one round, not one per mistake). Printed one per line.
    pub more: Vec<LoadError>,
}

impl LoadError {
    pub fn new(message: impl Into<String>) -> Self {
        LoadError {
            origin: Origin::default(),
            message: message.into(),
            more: Vec::new(),
        }
    }

    /// One error standing for all of `errors` (the first leads), or `Ok` when there are none.
    pub fn all(errors: Vec<LoadError>) -> Result<()> {
        let mut it = errors.into_iter();
        match it.next() {
            None => Ok(()),
            Some(mut first) => {
                first.more.extend(it);
                Err(first)
            }
        }
    }

    /// This error followed by the ones it carries, each on its own.
    pub fn each(self) -> Vec<LoadError> {
        let mut head = self;
        let mut out = vec![];
        let more = std::mem::take(&mut head.more);
        out.push(head);
        out.extend(more.into_iter().flat_map(LoadError::each));
        out
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        if self.origin.file.is_none() {
            self.origin.file = Some(file.to_path_buf());
        }
        self
    }

    pub fn at_line(mut self, line: Option<usize>) -> Self {
        if self.origin.line.is_none() {
            self.origin.line = line;
        }
        self
    }

    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        if self.origin.path.is_none() {
            let p = path.into();
            if !p.is_empty() {
                self.origin.path = Some(p);
            }
        }
        self
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        if let Some(file) = &o.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = o.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        } else if let Some(line) = o.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(path) = &o.path {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.message)?;
        for e in &self.more {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;
