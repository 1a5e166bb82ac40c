//! Reading one compose file: YAML text into a generic value, plus an index from field paths to
//! line numbers.
//!
//! `serde_yaml` (yaml_serde) gives the value but forgets positions once parsing is done, so a
//! second, event-level pass with yaml-rust2 records the line of every key and sequence item.
//! Every later stage (interpolation, merging, validation) reports errors by field path; this
//! index turns that path back into `file:line`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::scanner::TScalarStyle;

use super::error::{LoadError, Result};

/// Field path to line (1-based). Paths look like `services.web.ports[0]`.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// The line of `path`, or of its nearest ancestor that has one (a value produced by a merge
    /// key or an alias has no line of its own; its parent's line is the best pointer).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// True when this exact path was written in the file.
    pub fn has(&self, path: &str) -> bool {
        self.lines.contains_key(path)
    }

    pub fn from_source(src: &str) -> LineIndex {
        Self::scan(src).0
    }

    /// The index, plus the YAML 1.1 re-readings of plain scalars to apply to the value.
    fn scan(src: &str) -> (LineIndex, Vec<(Vec<Seg>, Value)>) {
        let mut b = IndexBuilder::default();
        // A syntax error is reported by the value parser; a partial index is still useful.
        let _ = Parser::new_from_str(src).load(&mut b, false);
        (LineIndex { lines: b.lines }, b.fixups)
    }
}

enum Frame {
    Map {
        path: String,
        segs: Vec<Seg>,
        key: Option<String>,
    },
    Seq {
        path: String,
        segs: Vec<Seg>,
        index: usize,
    },
}

/// One step of a path into a value.
#[derive(Debug, Clone)]
pub enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Default)]
struct IndexBuilder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
    /// Plain scalars that YAML 1.1 (Compose's parser) reads differently from YAML 1.2.
    fixups: Vec<(Vec<Seg>, Value)>,
}

/// How Go's YAML parser (YAML 1.1 rules) reads a plain scalar that a YAML 1.2 parser keeps as
/// a string: `0755` is octal, a bare date is a timestamp (printed the way Go prints it).
fn yaml11_plain(s: &str) -> Option<Value> {
    let b = s.as_bytes();
    if b.len() > 1 && b[0] == b'0' && b.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return i64::from_str_radix(&s[1..], 8).ok().map(Value::from);
    }
    let date = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    date.then(|| Value::String(format!("{s} 00:00:00 +0000 UTC")))
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl IndexBuilder {
    /// Path of the value that starts now, recording its line when it is a sequence item.
    fn value_path(&mut self, line: usize) -> Option<(String, Vec<Seg>)> {
        match self.stack.last() {
            None => Some((String::new(), vec![])),
            Some(Frame::Map {
                path,
                segs,
                key: Some(k),
            }) => {
                let mut s = segs.clone();
                s.push(Seg::Key(k.clone()));
                Some((join(path, k), s))
            }
            Some(Frame::Map { key: None, .. }) => None, // a complex key: not indexed
            Some(Frame::Seq { path, segs, index }) => {
                let p = format!("{path}[{index}]");
                self.lines.entry(p.clone()).or_insert(line);
                let mut s = segs.clone();
                s.push(Seg::Index(*index));
                Some((p, s))
            }
        }
    }

    /// A value (scalar, alias or closed collection) is complete: advance the parent.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(s, style, _, tag) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                    ..
                }) = self.stack.last_mut()
                {
                    let p = join(path, &s);
                    self.lines.entry(p).or_insert(line);
                    *key = Some(s);
                } else {
                    let at = self.value_path(line);
                    if let (Some((_, segs)), TScalarStyle::Plain, None) = (at, style, tag) {
                        if let Some(v) = yaml11_plain(&s) {
                            self.fixups.push((segs, v));
                        }
                    }
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = self.stack.last_mut()
                {
                    // An alias used as a key: keep the map's state consistent.
                    *key = Some(String::from("<alias>"));
                } else {
                    self.value_path(line);
                    self.value_done();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (path, segs) = self
                    .value_path(line)
                    .unwrap_or_else(|| ("<complex-key>".to_string(), vec![]));
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        segs,
                        key: None,
                    }
                } else {
                    Frame::Seq {
                        path,
                        segs,
                        index: 0,
                    }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

/// One parsed compose file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub value: Value,
    pub lines: LineIndex,
    /// The text names COMPOSE_PROJECT_NAME (which the loader then defines, see `load`).
    pub mentions_project_name: bool,
}

impl SourceFile {
    /// An error at `path` inside this file, with its line.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> LoadError {
        LoadError::new(message)
            .in_file(&self.path)
            .at_line(self.lines.line_of(path))
            .at_path(path)
    }
}

/// Reads and parses a compose file. YAML merge keys (`<<`) are applied here, as YAML itself
/// defines them; Compose's `!reset`/`!override` tags stay in the value for the merge stage.
pub fn read_file(path: &Path) -> Result<SourceFile> {
    let src = super::input::read_limited(path)
        .map_err(|e| LoadError::new(format!("cannot read compose file: {e}")).in_file(path))?;
    parse_str(path, &src)
}

pub fn parse_str(path: &Path, src: &str) -> Result<SourceFile> {
    let mut value: Value = if src.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(src).map_err(|e| yaml_error(path, &e))?
    };
    if value.is_null() {
        value = Value::Mapping(Default::default());
    }
    let (lines, fixups) = LineIndex::scan(src);
    // Before merge keys are applied, so the paths are those of the text.
    for (segs, v) in fixups {
        if let Some(slot) = descend(&mut value, &segs) {
            if slot.is_string() {
                *slot = v;
            }
        }
    }
    apply_merge_keys(&mut value, "").map_err(|(at, msg)| {
        LoadError::new(format!("invalid YAML merge key: {msg}"))
            .in_file(path)
            .at_line(lines.line_of(&at))
            .at_path(at)
    })?;
    if !value.is_mapping() {
        return Err(
            LoadError::new("the top level of a compose file must be a mapping")
                .in_file(path)
                .at_line(Some(1)),
        );
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        value,
        lines,
        mentions_project_name: src.contains("COMPOSE_PROJECT_NAME"),
    })
}

/// Applies YAML 1.1 merge keys (`<<: *a` and `<<: [*a, *b]`) the way Compose's parser does:
/// the mapping's own keys win, then the merged mappings in list order (an earlier one wins over
/// a later one). A merged mapping is resolved first, so an anchor that itself merges another
/// (`x-b: {<<: *a, ...}`) brings all its keys; the YAML library's own merge pass leaves such a
/// nested `<<` behind as an ordinary key. Errors carry the field path of the `<<`.
fn apply_merge_keys(v: &mut Value, path: &str) -> std::result::Result<(), (String, String)> {
    match v {
        Value::Mapping(m) => {
            let sources = m.shift_remove("<<");
            for (k, child) in m.iter_mut() {
                let key = k.as_str().map(str::to_string).unwrap_or_default();
                apply_merge_keys(child, &join(path, &key))?;
            }
            let Some(sources) = sources else {
                return Ok(());
            };
            let at = join(path, "<<");
            let list = match sources {
                Value::Sequence(s) => s,
                other => vec![other],
            };
            for mut src in list {
                apply_merge_keys(&mut src, &at)?;
                let Value::Mapping(src) = src else {
                    return Err((
                        at,
                        "expected a mapping or a list of mappings to merge".to_string(),
                    ));
                };
                for (k, val) in src {
                    if !m.contains_key(&k) {
                        m.insert(k, val);
                    }
                }
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                apply_merge_keys(it, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Tagged(t) => apply_merge_keys(&mut t.value, path),
        _ => Ok(()),
    }
}

fn descend<'a>(v: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in segs {
        cur = match s {
            Seg::Key(k) => cur.as_mapping_mut()?.get_mut(k.as_str())?,
            Seg::Index(i) => cur.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn yaml_error(path: &Path, e: &serde_yaml::Error) -> LoadError {
    let line = e.location().map(|l| l.line());
    // The library's message repeats the position ("at line 3 column 5"); keep only the cause.
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    LoadError::new(format!("invalid YAML: {msg}"))
        .in_file(path)
        .at_line(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_and_items() {
        let src = "services:\n  web:\n    image: x\n    ports:\n      - 80\n      - target: 81\n";
        let idx = LineIndex::from_source(src);
        assert_eq!(idx.line_of("services"), Some(1));
        assert_eq!(idx.line_of("services.web.image"), Some(3));
        assert_eq!(idx.line_of("services.web.ports[0]"), Some(5));
        assert_eq!(idx.line_of("services.web.ports[1].target"), Some(6));
        assert_eq!(idx.line_of("services.web.nope"), Some(2));
    }

    #[test]
    fn syntax_error_names_line() {
        let err = parse_str(
            Path::new("c.yaml"),
            "services:\n  web:\n    image: x\n   bad: [\n",
        )
        .unwrap_err();
        assert!(err.origin.line.is_some(), "{err}");
        assert!(err.to_string().starts_with("c.yaml:"), "{err}");
    }

    #[test]
    fn merge_keys_are_applied() {
        let src = "x-base: &b\n  image: a\nservices:\n  web:\n    <<: *b\n    command: c\n";
        let f = parse_str(Path::new("c.yaml"), src).unwrap();
        assert_eq!(f.value["services"]["web"]["image"], Value::from("a"));
    }

    #[test]
    fn merge_key_lists_resolve_nested_merges_earlier_first() {
        let src = "x-a: &a\n  image: a\n  env: ea\nx-b: &b\n  <<: *a\n  restart: always\n  \
                   image: b\nservices:\n  web:\n    <<: [*b, *a]\n    env: own\n";
        let f = parse_str(Path::new("c.yaml"), src).unwrap();
        let web = &f.value["services"]["web"];
        assert_eq!(web["image"], Value::from("b"));
        assert_eq!(web["restart"], Value::from("always"));
        assert_eq!(web["env"], Value::from("own"));
        assert!(web.get("<<").is_none(), "{web:?}");
        assert!(f.value["x-b"].get("<<").is_none());
    }

    #[test]
    fn merge_of_a_scalar_names_the_line() {
        let src = "services:\n  web:\n    image: x\n    <<: 5\n";
        let e = parse_str(Path::new("c.yaml"), src).unwrap_err();
        assert_eq!(e.origin.line, Some(4), "{e}");
        assert_eq!(e.origin.path.as_deref(), Some("services.web.<<"), "{e}");
    }
}
