//! Variable interpolation in Compose files, with the rules of Docker Compose v5
//! (compose-go's `template` package), re-implemented from observed behaviour.
//!
//! Syntax, as Compose v5.6.1 treats it (every rule below was checked with
//! `docker compose config --format json`, see the test table):
//!
//! * `$$` is an escaped dollar: it becomes a literal `$`.
//! * `$NAME`: NAME is the longest run of `[A-Za-z0-9_]` starting with `[A-Za-z_]`
//!   (`$A-b` is `$A` followed by `-b`; `$A_b` is the variable `A_b`). Like Go's
//!   case-insensitive `[a-z]`, U+017F (ſ) and U+212A (Kelvin sign) also count as letters.
//! * `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`,
//!   `${NAME:+alternate}`, `${NAME+alternate}`. `:-`/`:+`/`:?` treat an empty value as unset;
//!   `-`/`+`/`?` only look at whether the variable is set. Defaults, alternates and messages
//!   are themselves interpolated, and only when they are used (`${A:-${}` is fine while A is
//!   set). A required-variable message may be empty.
//! * The operand of an operator runs to the *last* `}` on the same line; inside it the end of
//!   the expression is found by counting `{` and `}` (with Compose's quirk that the character
//!   right after every `{` is skipped). So `${A:-${B:-x}}` nests, `${A:-a{b}c}` gives `a{b}c`,
//!   `${A:-a}b}` gives `ab}`, and `${A:-x\ny}` (no `}` on the line) is a syntax error. If the
//!   braces never balance, the operand is everything up to that last `}` (`${A:-${B}` uses the
//!   default `${B`, which is itself a syntax error).
//! * `$` followed by anything else (space, digit, end of string, ...) is kept literally.
//! * `${` not followed by a valid name and then `}` or an operator is a syntax error: `${}`,
//!   `${A`, `${A:x}`, `${A B}`, `${1}`, `${A::-x}`.
//! * An unset variable used plainly (`$A`, `${A}`) becomes "" and Compose logs
//!   `The "A" variable is not set. Defaulting to a blank string.` once per *occurrence*
//!   (also inside defaults that are evaluated); here every occurrence is pushed to `unset`.
//!
//! `$$` decision: [`interpolate`] returns the *unescaped* value (`$$` → `$`), which is what
//! Compose hands to the engine. `docker compose config` then re-escapes **every** `$` in its
//! output (an environment value `x$y` coming from the shell prints as `x$$y`, a literal `$ x`
//! prints as `$$ x`), so a printer that mimics `config` must replace `$` with `$$` in every
//! string it prints, not only in those that were written `$$`.

use indexmap::IndexMap;

/// Looks a variable up; None = unset. Shell env and env files are merged by the caller.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl Lookup for IndexMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        IndexMap::get(self, name).cloned()
    }
}

impl<S: std::hash::BuildHasher> Lookup for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// An interpolation failure. `Display` gives compose-go's own text; [`InterpolateError::at`]
/// gives the text Compose prints for a value at a path in the model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpolateError {
    /// `${NAME:?message}` with NAME unset or empty, or `${NAME?message}` with NAME unset.
    /// Compose omits `: message` when the message is empty.
    #[error("required variable {name} is missing a value{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Required { name: String, message: String },
    /// Malformed `${...}`. `input` is the string being interpolated when the error was found:
    /// the whole value, or (like Compose) the default/message/remainder it was nested in,
    /// e.g. `${B` for `${A:-${B}`.
    #[error("Invalid template: {input:?}")]
    Syntax { input: String },
}

impl InterpolateError {
    /// The message Compose prints for this error at `path` (e.g. `services.web.environment.A`):
    /// `invalid interpolation format for PATH.\nYou may need to escape any $ with another $.\nINPUT`
    /// or `error while interpolating PATH: required variable ...`.
    pub fn at(&self, path: &str) -> String {
        match self {
            InterpolateError::Syntax { input } => format!(
                "invalid interpolation format for {path}.\nYou may need to escape any $ with another $.\n{input}"
            ),
            InterpolateError::Required { .. } => {
                format!("error while interpolating {path}: {self}")
            }
        }
    }
}

/// Interpolates one string. Unset plain variables become "" and their names are pushed to
/// `unset` (once per occurrence, in order; Compose warns once per occurrence too).
pub fn interpolate(
    input: &str,
    env: &dyn Lookup,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    substitute(input, env, unset)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '\u{17F}' || c == '\u{212A}'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Length in bytes of the name at the start of `s` (0 if there is none).
fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return 0,
    }
    for (i, c) in chars {
        if !is_name_char(c) {
            return i;
        }
    }
    s.len()
}

#[derive(Clone, Copy)]
enum Op {
    DefaultIfEmptyOrUnset, // :-
    DefaultIfUnset,        // -
    AltIfNonEmpty,         // :+
    AltIfSet,              // +
    RequiredNonEmpty,      // :?
    RequiredSet,           // ?
}

fn parse_op(s: &str) -> Option<(Op, usize)> {
    let b = s.as_bytes();
    let (colon, at) = if b.first() == Some(&b':') {
        (true, 1)
    } else {
        (false, 0)
    };
    let op = match (b.get(at), colon) {
        (Some(b'-'), true) => Op::DefaultIfEmptyOrUnset,
        (Some(b'-'), false) => Op::DefaultIfUnset,
        (Some(b'+'), true) => Op::AltIfNonEmpty,
        (Some(b'+'), false) => Op::AltIfSet,
        (Some(b'?'), true) => Op::RequiredNonEmpty,
        (Some(b'?'), false) => Op::RequiredSet,
        _ => return None,
    };
    Some((op, at + 1))
}

/// Index of the `}` closing the expression that starts at `s[0..2] == "${"`, counting braces
/// the way Compose does (the byte after each `{` is skipped). None if they never balance.
fn closing_brace(s: &[u8]) -> Option<usize> {
    let mut open = 0i32;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if s[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

fn substitute(
    t: &str,
    env: &dyn Lookup,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let syntax = || InterpolateError::Syntax {
        input: t.to_string(),
    };
    let mut out = String::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let Some(pos) = t[i..].find('$') else {
            out.push_str(&t[i..]);
            break;
        };
        out.push_str(&t[i..i + pos]);
        i += pos;
        let after = &t[i + 1..];
        if after.starts_with('$') {
            out.push('$');
            i += 2;
            continue;
        }
        let n = name_len(after);
        if n > 0 {
            let name = &after[..n];
            out.push_str(&plain(name, env, unset));
            i += 1 + n;
            continue;
        }
        if !after.starts_with('{') {
            out.push('$');
            i += 1;
            continue;
        }
        // `${`
        let start = i; // index of '$'
        let name_at = start + 2;
        let n = name_len(&t[name_at..]);
        if n == 0 {
            return Err(syntax());
        }
        let name = &t[name_at..name_at + n];
        let after_name = name_at + n;
        if t[after_name..].starts_with('}') {
            out.push_str(&plain(name, env, unset));
            i = after_name + 1;
            continue;
        }
        let Some((op, op_len)) = parse_op(&t[after_name..]) else {
            return Err(syntax());
        };
        let operand_at = after_name + op_len;
        let line_end = t[operand_at..]
            .find('\n')
            .map_or(t.len(), |p| operand_at + p);
        let Some(last) = t[operand_at..line_end].rfind('}') else {
            return Err(syntax());
        };
        let match_end = operand_at + last; // index of the last '}' of the match
        let (expr_end, rest) = match closing_brace(&t.as_bytes()[start..=match_end]) {
            Some(c) => (start + c, &t[start + c + 1..=match_end]),
            None => (match_end, ""),
        };
        let operand = &t[operand_at..expr_end];
        out.push_str(&apply(op, name, operand, env, unset)?);
        out.push_str(&substitute(rest, env, unset)?);
        i = match_end + 1;
    }
    Ok(out)
}

fn plain(name: &str, env: &dyn Lookup, unset: &mut Vec<String>) -> String {
    match env.get(name) {
        Some(v) => v,
        None => {
            unset.push(name.to_string());
            String::new()
        }
    }
}

fn apply(
    op: Op,
    name: &str,
    operand: &str,
    env: &dyn Lookup,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let value = env.get(name);
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let value_or_empty = || value.clone().unwrap_or_default();
    match op {
        Op::DefaultIfEmptyOrUnset if !non_empty => substitute(operand, env, unset),
        Op::DefaultIfUnset if value.is_none() => substitute(operand, env, unset),
        Op::AltIfNonEmpty if non_empty => substitute(operand, env, unset),
        Op::AltIfSet if value.is_some() => substitute(operand, env, unset),
        Op::RequiredNonEmpty if !non_empty => Err(required(name, operand, env, unset)?),
        Op::RequiredSet if value.is_none() => Err(required(name, operand, env, unset)?),
        _ => Ok(value_or_empty()),
    }
}

fn required(
    name: &str,
    message: &str,
    env: &dyn Lookup,
    unset: &mut Vec<String>,
) -> Result<InterpolateError, InterpolateError> {
    Ok(InterpolateError::Required {
        name: name.to_string(),
        message: substitute(message, env, unset)?,
    })
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

    enum Want {
        Ok(&'static str, &'static [&'static str]),
        Required(&'static str, &'static str),
        Syntax(&'static str),
    }
    use Want::*;

    /// (input, environment, expected). Every row was run through Docker Compose v5.6.1
    /// (`environment: {V: <input>}`, `config --format json`) and agrees with it; for `Ok`
    /// rows the expected value is what Compose passes on (its `config` output with `$$`
    /// turned back into `$`), and the unset list matches the warnings it printed.
    type Row = (&'static str, &'static [(&'static str, &'static str)], Want);
    const CASES: &[Row] = &[
        // escapes and literal dollars
        ("$$", &[], Ok("$", &[])),
        ("a$$b", &[], Ok("a$b", &[])),
        ("$$$A", &[("A", "1")], Ok("$1", &[])),
        ("$${A}", &[], Ok("${A}", &[])),
        ("$ x", &[], Ok("$ x", &[])),
        ("$1", &[], Ok("$1", &[])),
        ("x$", &[], Ok("x$", &[])),
        ("$A", &[("A", "x$y")], Ok("x$y", &[])),
        // plain variables
        ("$A", &[], Ok("", &["A"])),
        ("${A}", &[], Ok("", &["A"])),
        ("$A$A$B", &[], Ok("", &["A", "A", "B"])),
        ("$A-b", &[("A", "1")], Ok("1-b", &[])),
        ("$A_b", &[("A", "1")], Ok("", &["A_b"])),
        ("${a}", &[("a", "low")], Ok("low", &[])),
        ("${_}", &[("_", "u")], Ok("u", &[])),
        ("$Aé", &[("A", "1")], Ok("1é", &[])),
        ("$\u{17F}", &[("\u{17F}", "longs")], Ok("longs", &[])),
        ("${\u{212A}}", &[], Ok("", &["\u{212A}"])),
        ("${A}}", &[], Ok("}", &["A"])),
        // defaults
        ("${A:-d}", &[], Ok("d", &[])),
        ("${A:-d}", &[("A", "")], Ok("d", &[])),
        ("${A-d}", &[("A", "")], Ok("", &[])),
        ("${A-d}", &[], Ok("d", &[])),
        ("${A:-}", &[("A", "")], Ok("", &[])),
        ("${A-}", &[], Ok("", &[])),
        ("${A:-é}", &[], Ok("é", &[])),
        ("${A-$}", &[], Ok("$", &[])),
        ("${A:-$$}", &[], Ok("$", &[])),
        ("${A:-${B:-x}}", &[], Ok("x", &[])),
        ("${A:-${B:-x}}", &[("B", "b")], Ok("b", &[])),
        ("${A:-a}b}", &[], Ok("ab}", &[])),
        ("${A:-x}}", &[], Ok("x}", &[])),
        ("${A:-x}y}z", &[("A", "1")], Ok("1y}z", &[])),
        ("${A:-a:b}", &[], Ok("a:b", &[])),
        ("${A:-a{b}c}", &[], Ok("a{b}c", &[])),
        ("${A:-{{x}}", &[], Ok("{{x}", &[])),
        ("${A-x:-y}", &[], Ok("x:-y", &[])),
        ("${A:-x} ${B:-y}", &[], Ok("x y", &[])),
        ("${A:-x}\n${B:-y}", &[], Ok("x\ny", &[])),
        ("${A:-${B}", &[("A", "set")], Ok("set", &[])),
        // alternates
        ("${A:+alt}", &[("A", "")], Ok("", &[])),
        ("${A:+alt}", &[("A", "v")], Ok("alt", &[])),
        ("${A+alt}", &[("A", "")], Ok("alt", &[])),
        ("${A+alt}", &[], Ok("", &[])),
        ("${A:+${B}}", &[("A", "1")], Ok("", &["B"])),
        // required
        ("${A:?boom}", &[("A", "")], Required("A", "boom")),
        ("${A:?}", &[("A", "")], Required("A", "")),
        ("${A?boom}", &[("A", "")], Ok("", &[])),
        ("${A?boom}", &[], Required("A", "boom")),
        ("${A?}", &[], Required("A", "")),
        ("${A:?a b: c}", &[], Required("A", "a b: c")),
        ("${A:?${B:-m}}", &[], Required("A", "m")),
        ("${A:?$B}", &[], Required("A", "")), // and warns about B
        // syntax errors (input = the string Compose names in its message)
        ("${}", &[], Syntax("${}")),
        ("${A", &[], Syntax("${A")),
        ("${A:x}", &[], Syntax("${A:x}")),
        ("${A B}", &[], Syntax("${A B}")),
        ("${1}", &[], Syntax("${1}")),
        ("${A::-x}", &[], Syntax("${A::-x}")),
        ("${A:-x\ny}", &[], Syntax("${A:-x\ny}")),
        ("${A:-${B}", &[], Syntax("${B")),
        ("${A:-${}}", &[], Syntax("${}")),
        ("${A:-x} ${C:x}", &[], Syntax(" ${C:x}")),
    ];

    #[test]
    fn table() {
        for (input, vars, want) in CASES {
            let env = env(vars);
            let mut unset = Vec::new();
            let got = interpolate(input, &env, &mut unset);
            match want {
                Ok(value, names) => {
                    assert_eq!(got, Result::Ok(value.to_string()), "input {input:?}");
                    assert_eq!(&unset, names, "unset names for {input:?}");
                }
                Required(name, message) => assert_eq!(
                    got,
                    Err(InterpolateError::Required {
                        name: name.to_string(),
                        message: message.to_string()
                    }),
                    "input {input:?}"
                ),
                Syntax(s) => assert_eq!(
                    got,
                    Err(InterpolateError::Syntax {
                        input: s.to_string()
                    }),
                    "input {input:?}"
                ),
            }
        }
    }

    #[test]
    fn unset_inside_a_failing_message_is_reported() {
        let mut unset = Vec::new();
        let _ = interpolate("${A:?$B}", &env(&[]), &mut unset);
        assert_eq!(unset, ["B"]);
    }

    #[test]
    fn messages_match_compose() {
        let e = InterpolateError::Required {
            name: "A".into(),
            message: "boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "required variable A is missing a value: boom"
        );
        assert_eq!(
            e.at("services.s.environment.V"),
            "error while interpolating services.s.environment.V: required variable A is missing a value: boom"
        );
        let e = InterpolateError::Required {
            name: "A".into(),
            message: String::new(),
        };
        assert_eq!(e.to_string(), "required variable A is missing a value");
        let e = InterpolateError::Syntax {
            input: "${A".into(),
        };
        assert_eq!(e.to_string(), "Invalid template: \"${A\"");
        assert_eq!(
            e.at("services.s.environment.V"),
            "invalid interpolation format for services.s.environment.V.\nYou may need to escape any $ with another $.\n${A"
        );
    }
}
