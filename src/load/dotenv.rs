//! `.env` / `env_file` parsing with Docker Compose v5's rules (compose-go's `dotenv` parser),
//! re-implemented from observed behaviour; the tests list what was checked against
//! Docker Compose v5.6.1.
//!
//! Default format:
//!
//! * A UTF-8 BOM at the start is ignored. Blank lines and whitespace are skipped; a statement
//!   starting with `#` is a comment up to the end of the line.
//! * `export ` (the word followed by whitespace) before a key is dropped.
//! * A key ends at `=` or `:` (`KEY: value` works too); whitespace around it is dropped. Key
//!   characters are letters, digits, `_ . - [ ]` (so `A.b-c[0]` and `1A` are fine); any other
//!   character is an error `unexpected character "$" in variable name "A$=1"`; an inner space
//!   is `key cannot contain a space`.
//! * A key alone on its line (`KEY`) takes its value from the lookup environment; when the
//!   environment lacks it the key is skipped by Compose (here: mapped to `None`, unless the file
//!   already defined it, in which case the earlier value stays).
//! * Quirk: a last line without `=` and without a trailing newline (`...\nKEY`) is read as
//!   the empty key `""` with the value `KEY`.
//! * Unquoted values run to the end of the line; leading and trailing whitespace is dropped
//!   (so CRLF line endings are fine), ` #` (space then hash, not tab) starts a comment, and the
//!   value is interpolated (`$$` for a literal `$`; a backslash is a plain character).
//! * `'single'` quotes: literal, no interpolation, may span lines; `\'` gives `'`, any other
//!   backslash is kept as is.
//! * `"double"` quotes: may span lines; `\"` gives `"`; then the escapes `\a \b \f \n \r \t \v
//!   \\` and `\$` (a literal `$`) and `\0` + three octal digits are expanded (`\0101` is `A`;
//!   `\0` + fewer or non-octal digits turns into a backslash and those digits, `\c` and every
//!   other escape stays as written); then the value is interpolated.
//! * After a closing quote the rest of the line is read as further statements (`A="x" B=2`
//!   defines two keys; `A="x" # c` is a comment; `A="x" junk` makes `junk` a bare key).
//! * An unterminated quote is an error reported with the number of the file's last line
//!   (Compose counts every newline while looking for the closing quote).
//! * Variables in values are looked up in the caller's `env` first, then among the keys
//!   already in the output (defined earlier in the file, or pre-seeded by the caller): with
//!   `A=1` then `B=${A}` in a file and `A=shell` in the environment, B is `shell`.
//!
//! `format: raw` (an `env_file` entry `{path: ..., format: raw}`, parsed by Docker Compose with
//! the Docker CLI's `--env-file` reader), see [`parse_raw`]: one `KEY=VALUE` per line, the value
//! taken verbatim (no quotes removed, no comments, no interpolation, trailing spaces kept;
//! only a final `\r` is dropped); leading whitespace and `#` comment lines are skipped; a key
//! with a space or tab is an error (`variable 'B ' contains whitespaces`), so is an empty key
//! (`no variable name on line '=1'`); a line without `=` is a bare key looked up in the
//! environment; no multi-line values (`A="x` gives `"x`).
//!
//! Compose prints no line number for interpolation errors and for raw-format errors; this
//! module always gives one.

use indexmap::IndexMap;

use crate::load::interpolate::{interpolate, Lookup};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Parses a .env / env_file content with Compose's rules. Values may reference variables,
/// looked up first in `env`, then among the keys defined earlier in the same file (compose-go's
/// order). Returns keys in file order (a repeated key keeps its first position and its last
/// value); a bare `KEY` line maps to `env`'s value, or to `None` when `env` has none (Compose
/// then leaves the key out). Unset variables are not reported; see [`parse_into`].
pub fn parse(
    content: &str,
    env: &dyn Lookup,
) -> Result<IndexMap<String, Option<String>>, DotenvError> {
    let mut out = IndexMap::new();
    let mut unset = Vec::new();
    parse_into(content, env, &mut out, &mut unset)?;
    Ok(out)
}

/// Like [`parse`], adding to `out`, which may be pre-seeded: its `Some` values are visible to
/// interpolation after `env`, as compose-go does when several `--env-file`s accumulate into one
/// map, or when a service's `environment:` seeds its `env_file` parsing. Names of unset
/// variables used plainly in values are pushed to `unset` (Compose warns about each).
pub fn parse_into(
    content: &str,
    env: &dyn Lookup,
    out: &mut IndexMap<String, Option<String>>,
    unset: &mut Vec<String>,
) -> Result<(), DotenvError> {
    let mut p = Parser { line: 1 };
    let mut cut = content.strip_prefix('\u{FEFF}').unwrap_or(content);
    loop {
        cut = p.statement_start(cut);
        if cut.is_empty() {
            return Ok(());
        }
        let start_line = p.line;
        let (key, left, bare) = p.locate_key(cut)?;
        if key.contains(' ') {
            return Err(p.err("key cannot contain a space".to_string()));
        }
        if bare {
            if !key.is_empty() {
                match env.get(key) {
                    Some(v) => {
                        out.insert(key.to_string(), Some(v));
                    }
                    None => {
                        out.entry(key.to_string()).or_insert(None);
                    }
                }
            }
            cut = left;
            continue;
        }
        let (value, left) = p.value(left, env, out, unset, start_line)?;
        out.insert(key.to_string(), Some(value));
        cut = left;
    }
}

/// Parses an `env_file` with `format: raw` (see the module documentation). A bare `KEY` line
/// maps to `env`'s value, or to `None`.
pub fn parse_raw(
    content: &str,
    env: &dyn Lookup,
) -> Result<IndexMap<String, Option<String>>, DotenvError> {
    let mut out = IndexMap::new();
    let content = content.strip_prefix('\u{FEFF}').unwrap_or(content);
    let content = content.strip_suffix('\n').unwrap_or(content);
    if content.is_empty() {
        return Ok(out);
    }
    for (n, line) in content.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message| DotenvError {
            line: n + 1,
            message,
        };
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.contains([' ', '\t']) {
            return Err(err(format!("variable '{key}' contains whitespaces")));
        }
        if key.is_empty() {
            return Err(err(format!("no variable name on line '{line}'")));
        }
        match value {
            Some(v) => {
                out.insert(key.to_string(), Some(v.to_string()));
            }
            None => match env.get(key) {
                Some(v) => {
                    out.insert(key.to_string(), Some(v));
                }
                None => {
                    out.entry(key.to_string()).or_insert(None);
                }
            },
        }
    }
    Ok(out)
}

/// Go's `isSpace` in compose-go's parser: whitespace that is not a line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{B}' | '\u{C}' | '\r' | ' ' | '\u{85}' | '\u{A0}'
    )
}

/// `env` first, then the values already parsed.
struct Chain<'a> {
    env: &'a dyn Lookup,
    out: &'a IndexMap<String, Option<String>>,
}

impl Lookup for Chain<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .or_else(|| self.out.get(name).cloned().flatten())
    }
}

struct Parser {
    line: usize,
}

impl Parser {
    fn err(&self, message: String) -> DotenvError {
        DotenvError {
            line: self.line,
            message,
        }
    }

    /// Skips whitespace and comment lines, counting newlines; "" at the end of the input.
    fn statement_start<'s>(&mut self, mut src: &'s str) -> &'s str {
        loop {
            let Some(pos) = src.find(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                !c.is_whitespace()
            }) else {
                return "";
            };
            src = &src[pos..];
            if !src.starts_with('#') {
                return src;
            }
            match src.find('\n') {
                Some(nl) => src = &src[nl..],
                None => return "",
            }
        }
    }

    /// Returns (key, rest after the separator with leading spaces dropped, bare).
    fn locate_key<'s>(&mut self, src: &'s str) -> Result<(&'s str, &'s str, bool), DotenvError> {
        let mut src = src;
        if let Some(after) = src.strip_prefix("export") {
            // Go's `\s`: [\t\n\f\r ]
            if after.starts_with(['\t', '\n', '\u{C}', '\r', ' ']) {
                src = after.trim_start_matches(is_space);
            }
        }
        let mut key = "";
        let mut offset = 0;
        let mut bare = false;
        for (i, c) in src.char_indices() {
            if is_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    key = &src[..i];
                    offset = i + 1;
                    bare = c == '\n';
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphabetic() || c.is_numeric() => {}
                c => {
                    let first_line = src.split('\n').next().unwrap_or_default();
                    return Err(self.err(format!(
                        "unexpected character {:?} in variable name {first_line:?}",
                        c.to_string()
                    )));
                }
            }
        }
        if bare && !key.contains(' ') {
            self.line += 1;
        }
        let key = key.trim_end();
        let rest = src[offset..].trim_start_matches(is_space);
        Ok((key, rest, bare))
    }

    /// Reads a value; returns it (unescaped and interpolated) and the rest of the input.
    fn value<'s>(
        &mut self,
        src: &'s str,
        env: &dyn Lookup,
        out: &IndexMap<String, Option<String>>,
        unset: &mut Vec<String>,
        start_line: usize,
    ) -> Result<(String, &'s str), DotenvError> {
        let expand = |value: &str, unset: &mut Vec<String>| {
            interpolate(value, &Chain { env, out }, unset).map_err(|e| DotenvError {
                line: start_line,
                message: e.to_string(),
            })
        };
        let quote = match src.as_bytes().first() {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                let (value, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = value.split(" #").next().unwrap_or_default().trim_end();
                return Ok((expand(value, unset)?, rest));
            }
        };
        let bytes = src.as_bytes();
        let mut chars = Vec::new();
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if b == b'\n' {
                self.line += 1;
            }
            if b != quote {
                if !escaped && b == b'\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push(b'\\');
                }
                chars.push(b);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(b);
                continue;
            }
            // Only ASCII backslashes were dropped, so this is still UTF-8.
            let value = String::from_utf8(chars).unwrap_or_default();
            let value = if quote == b'"' {
                expand(&expand_escapes(&value), unset)?
            } else {
                value
            };
            return Ok((value, &src[i + 1..]));
        }
        let first_line = src.split('\n').next().unwrap_or_default();
        Err(self.err(format!("unterminated quoted value {first_line}")))
    }
}

/// The escapes Compose expands in double-quoted values (before interpolation; `\$` becomes
/// `$$`, so interpolation turns it into a literal `$`).
fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut it = after.chars();
        let simple = match it.next() {
            Some('a') => Some("\u{7}"),
            Some('b') => Some("\u{8}"),
            Some('f') => Some("\u{C}"),
            Some('n') => Some("\n"),
            Some('r') => Some("\r"),
            Some('t') => Some("\t"),
            Some('v') => Some("\u{B}"),
            Some('\\') => Some("\\"),
            Some('"') => Some("\""),
            Some('$') => Some("$$"),
            _ => None,
        };
        if let Some(rep) = simple {
            out.push_str(rep);
            rest = &after[1..];
            continue;
        }
        if let Some(digits_and_more) = after.strip_prefix('0') {
            let n = digits_and_more
                .bytes()
                .take(3)
                .take_while(u8::is_ascii_digit)
                .count();
            let digits = &digits_and_more[..n];
            let octal = (n == 3 && digits.bytes().all(|d| d <= b'7'))
                .then(|| u32::from_str_radix(digits, 8).ok())
                .flatten()
                .filter(|v| *v <= 255)
                .and_then(char::from_u32);
            match octal {
                Some(c) => out.push(c),
                None => {
                    out.push('\\');
                    out.push_str(digits);
                }
            }
            rest = &digits_and_more[n..];
            continue;
        }
        // not an escape Compose knows (including `\c`): keep the backslash
        out.push('\\');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn map(pairs: &[(&str, Option<&str>)]) -> IndexMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    type Row = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Result<&'static [(&'static str, Option<&'static str>)], (usize, &'static str)>,
    );

    /// (file content, environment, expected keys or (line, message)). Every row was checked
    /// with Docker Compose v5.6.1 (`env_file: e.env`, `config --format json`; `Some` rows are
    /// the service environment it printed, with `$$` read back as `$`; `None` rows are keys it
    /// left out; messages are the text after `failed to read <file>: `).
    const CASES: &[Row] = &[
        (
            "# c\nA=1\n\n  # indented comment\nB = 2 \nexport C=3\nexport   D = 4\n",
            &[],
            Ok(&[("A", Some("1")), ("B", Some("2")), ("C", Some("3")), ("D", Some("4"))]),
        ),
        (
            "A=a # comment\nB=b# not\nC='c' # com\nD=\"d\" # com\nE=e\t# tab\n",
            &[],
            Ok(&[("A", Some("a")), ("B", Some("b# not")), ("C", Some("c")), ("D", Some("d")), ("E", Some("e\t# tab"))]),
        ),
        (
            "A=\"a#b\"\nB=a #b #c\nC=#x\nD= #x\n",
            &[],
            Ok(&[("A", Some("a#b")), ("B", Some("a")), ("C", Some("#x")), ("D", Some("#x"))]),
        ),
        (
            "A='lit $X \\n \\' x'\nB=\"esc \\n \\t \\\\ \\\" $X\"\n",
            &[("X", "xv")],
            Ok(&[("A", Some("lit $X \\n ' x")), ("B", Some("esc \n \t \\ \" xv"))]),
        ),
        (
            "A=\"multi\nline\"\nB='multi\nline2'\nC=after\n",
            &[],
            Ok(&[("A", Some("multi\nline")), ("B", Some("multi\nline2")), ("C", Some("after"))]),
        ),
        (
            "A=1\nB=${A}\nC=${Z:-def}\nD=$A$A\nE=\"${A}q\"\nF='${A}'\n",
            &[],
            Ok(&[("A", Some("1")), ("B", Some("1")), ("C", Some("def")), ("D", Some("11")), ("E", Some("1q")), ("F", Some("${A}"))]),
        ),
        // the environment wins over keys defined earlier in the file
        ("A=1\nB=${A}\n", &[("A", "shell")], Ok(&[("A", Some("1")), ("B", Some("shell"))])),
        ("A=1\nA=2\nB=$A\n", &[], Ok(&[("A", Some("2")), ("B", Some("2"))])),
        // bare keys
        ("A=\nB\nC=3\n", &[("B", "fromshell")], Ok(&[("A", Some("")), ("B", Some("fromshell")), ("C", Some("3"))])),
        ("A=\nB\nC=3\n", &[], Ok(&[("A", Some("")), ("B", None), ("C", Some("3"))])),
        ("A=1\nA\n", &[], Ok(&[("A", Some("1"))])),
        ("A=1\nB", &[("B", "sh")], Ok(&[("A", Some("1")), ("", Some("B"))])),
        ("A=\"x\" trailing\nB=2\n", &[], Ok(&[("A", Some("x")), ("trailing", None), ("B", Some("2"))])),
        ("export\nexport=1\n", &[], Ok(&[("export", Some("1"))])),
        ("exportA=1\nexport\tB=2\n", &[], Ok(&[("exportA", Some("1")), ("B", Some("2"))])),
        // line endings, whitespace, BOM, separators
        ("A=1\r\nB=2\r\nC=\"q\"\r\n", &[], Ok(&[("A", Some("1")), ("B", Some("2")), ("C", Some("q"))])),
        ("A=  spaced  \nB=\t\"q\" \n", &[], Ok(&[("A", Some("spaced")), ("B", Some("q"))])),
        ("  A=1\n\tB=2\n", &[], Ok(&[("A", Some("1")), ("B", Some("2"))])),
        ("\u{FEFF}A=1\n", &[], Ok(&[("A", Some("1"))])),
        ("é=1\nA=\u{A0}x\u{A0}\n", &[], Ok(&[("é", Some("1")), ("A", Some("x"))])),
        ("A:1\nB: 2\n", &[], Ok(&[("A", Some("1")), ("B", Some("2"))])),
        ("A==1\nB=a=b\n", &[], Ok(&[("A", Some("=1")), ("B", Some("a=b"))])),
        ("A=\"x\" B=2\n", &[], Ok(&[("A", Some("x")), ("B", Some("2"))])),
        ("A=1 # c\nB=\"x\"#c\n", &[], Ok(&[("A", Some("1")), ("B", Some("x"))])),
        ("1A=1\n", &[], Ok(&[("1A", Some("1"))])),
        ("A.b-c[0]=1\nK:v\n", &[], Ok(&[("A.b-c[0]", Some("1")), ("K", Some("v"))])),
        // backslashes and escapes
        ("A=x\\\nB=2\n", &[], Ok(&[("A", Some("x\\")), ("B", Some("2"))])),
        (
            "A=\\$X\nB=\"\\$X\"\nC=$$X\nD=\"a\\qb\"\nE=\"\\x41\"\nF=\"\\0101\"\nG=\"\\a\"\n",
            &[("X", "xv")],
            Ok(&[("A", Some("\\xv")), ("B", Some("$X")), ("C", Some("$X")), ("D", Some("a\\qb")), ("E", Some("\\x41")), ("F", Some("A")), ("G", Some("\u{7}"))]),
        ),
        (
            "A=\"\\0\"\nB=\"\\012\"\nC=\"\\0189\"\nD=\"\\0377\"\nE=\"\\c\\b\\f\\v\\r\"\nF=\"\\'\"\n",
            &[],
            Ok(&[("A", Some("\\")), ("B", Some("\\12")), ("C", Some("\\189")), ("D", Some("\u{FF}")), ("E", Some("\\c\u{8}\u{C}\u{B}\r")), ("F", Some("\\'"))]),
        ),
        // errors
        ("A B=1\n", &[], Err((1, "key cannot contain a space"))),
        ("A=x\n\n\nbad key=1\n", &[], Err((4, "key cannot contain a space"))),
        ("A$=1\n", &[], Err((1, "unexpected character \"$\" in variable name \"A$=1\""))),
        ("A=x\"y\"\nB=\"a\"\"b\"\nC= 'x'y\n", &[], Err((2, "unexpected character \"\\\"\" in variable name \"\\\"b\\\"\""))),
        ("A=\"unterminated\nB=1\nC=2\n", &[], Err((4, "unterminated quoted value \"unterminated"))),
        ("A=\"q\\\\\"\nB='s\\\\'\nC='\\'\nD=1\n", &[], Err((5, "unterminated quoted value '\\'"))),
        ("A=${B\n", &[], Err((1, "Invalid template: \"${B\""))),
        ("A=${X:?need}\n", &[], Err((1, "required variable X is missing a value: need"))),
    ];

    #[test]
    fn table() {
        for (content, vars, want) in CASES {
            let got = parse(content, &env(vars));
            match want {
                Ok(pairs) => {
                    let got = got.unwrap_or_else(|e| panic!("{content:?}: {e}"));
                    // order as in the file; compare as lists to check it
                    let got: Vec<_> = got.into_iter().collect();
                    let want: Vec<_> = map(pairs).into_iter().collect();
                    assert_eq!(got, want, "content {content:?}");
                }
                Err((line, message)) => assert_eq!(
                    got,
                    Err(DotenvError {
                        line: *line,
                        message: message.to_string()
                    }),
                    "content {content:?}"
                ),
            }
        }
    }

    #[test]
    fn unset_variables_are_reported() {
        let mut out = IndexMap::new();
        let mut unset = Vec::new();
        parse_into("A=$NOPE\nB=\"${NOPE2}\"\n", &env(&[]), &mut out, &mut unset).unwrap();
        assert_eq!(out, map(&[("A", Some("")), ("B", Some(""))]));
        assert_eq!(unset, ["NOPE", "NOPE2"]);
    }

    #[test]
    fn seeded_values_are_looked_up_after_env() {
        let mut out = map(&[("S", Some("seed")), ("T", Some("seed"))]);
        let mut unset = Vec::new();
        parse_into("A=$S\nB=$T\n", &env(&[("T", "env")]), &mut out, &mut unset).unwrap();
        assert_eq!(out["A"], Some("seed".into()));
        assert_eq!(out["B"], Some("env".into()));
    }

    #[test]
    fn display() {
        let e = DotenvError {
            line: 1,
            message: "key cannot contain a space".into(),
        };
        assert_eq!(e.to_string(), "line 1: key cannot contain a space");
    }

    /// Checked with Docker Compose v5.6.1, `env_file: [{path: e.env, format: raw}]`.
    #[test]
    fn raw() {
        let content = "# c\nA=1\n\n  # ind\n  B= 2 \nD='q $X'\nE=\"dq\"\nF=a # c\nG\nH=${X}\r\nI=x=y\nJ=\\n\nK\n";
        let got = parse_raw(content, &env(&[("X", "xv"), ("G", "gsh")])).unwrap();
        let want = map(&[
            ("A", Some("1")),
            ("B", Some(" 2 ")),
            ("D", Some("'q $X'")),
            ("E", Some("\"dq\"")),
            ("F", Some("a # c")),
            ("G", Some("gsh")),
            ("H", Some("${X}")),
            ("I", Some("x=y")),
            ("J", Some("\\n")),
            ("K", None),
        ]);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            want.into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            parse_raw("A=\"multi\nline\"\n", &env(&[])).unwrap(),
            map(&[("A", Some("\"multi")), ("line\"", None)])
        );
        assert_eq!(
            parse_raw("\u{FEFF}A=1\n", &env(&[])).unwrap(),
            map(&[("A", Some("1"))])
        );
        let err = |line, message: &str| {
            Err(DotenvError {
                line,
                message: message.into(),
            })
        };
        assert_eq!(
            parse_raw("A=1\nB = 2\n", &env(&[])),
            err(2, "variable 'B ' contains whitespaces")
        );
        assert_eq!(
            parse_raw("export C=3\n", &env(&[])),
            err(1, "variable 'export C' contains whitespaces")
        );
        assert_eq!(
            parse_raw("A\t=1\n", &env(&[])),
            err(1, "variable 'A\t' contains whitespaces")
        );
        assert_eq!(
            parse_raw("=1\n", &env(&[])),
            err(1, "no variable name on line '=1'")
        );
    }
}
