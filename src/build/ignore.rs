//! `.dockerignore`: which files of a build context are sent to the engine.
//!
//! The semantics are Docker's (moby's pattern matcher as the docker CLI uses it), not
//! gitignore's: every pattern is anchored at the context root (`foo` never matches `a/foo`),
//! `*` and `?` stop at `/`, `**` crosses directories, `[...]` is a class negated by `^`, `\`
//! escapes; a pattern that matches a parent directory excludes everything below it; the last
//! matching line wins, so a later `!` line re-includes. The `ignore`/`globset` crates implement
//! gitignore (unanchored names, `{a,b}`, `!` classes) and no maintained crate implements this
//! matcher, so it is a regex translation here, checked against `docker build` in the tests.

use regex::Regex;

/// One line of a `.dockerignore`.
#[derive(Debug)]
struct Pattern {
    /// The cleaned pattern, as Docker prints it (without the `!`).
    text: String,
    re: Regex,
    /// A `!` line: re-includes what earlier lines excluded.
    exception: bool,
}

/// The patterns of one `.dockerignore` file.
#[derive(Debug, Default)]
pub(crate) struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses a `.dockerignore` text. Errors name the line Docker would refuse.
    pub(crate) fn parse(text: &str) -> Result<Ignore, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            // Docker drops comment lines before trimming: ` #x` is a pattern.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exception, rest) = match line.strip_prefix('!') {
                Some(r) => (true, r.trim()),
                None => (false, line),
            };
            if rest.is_empty() {
                return Err(format!("line {}: illegal exclusion pattern \"!\"", n + 1));
            }
            let mut text = clean(rest);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let re = Regex::new(&to_regex(&text))
                .map_err(|e| format!("line {}: bad pattern {rest:?}: {e}", n + 1))?;
            patterns.push(Pattern {
                text,
                re,
                exception,
            });
        }
        Ok(Ignore { patterns })
    }

    /// Makes sure `path` is sent even when a line excludes it (Docker always sends the
    /// Dockerfile and the `.dockerignore` itself).
    pub(crate) fn keep(&mut self, path: &str) {
        if self.excludes(path) {
            let text = clean(path);
            let re = Regex::new(&to_regex(&text)).expect("a literal path is a valid pattern");
            self.patterns.push(Pattern {
                text,
                re,
                exception: true,
            });
        }
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out: the last
    /// pattern that matches it or one of its parent directories decides.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rsplit_once('/') {
            Some((p, _)) => p.split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for p in &self.patterns {
            // Only a line that could flip the current answer is tried.
            if p.exception != excluded {
                continue;
            }
            let hit = p.re.is_match(path)
                || (1..=parents.len()).any(|i| p.re.is_match(&parents[..i].join("/")));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked because an exception line names
    /// something inside it (Docker's rule: the exception's text starts with `dir/`).
    pub(crate) fn may_reinclude_below(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exception && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// Go's `path.Clean` for a relative or absolute `/` path: no empty, `.` or inner `..`
/// elements, no trailing slash; `""` becomes `.`.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for el in p.split('/') {
        match el {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            e => parts.push(e),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// The anchored regex of one cleaned pattern.
fn to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                // `**` at the end matches anything; elsewhere any number of directories.
                re.push_str(if chars.peek().is_none() {
                    ".*"
                } else {
                    "(.*/)?"
                });
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => re.push_str(r"\\"),
            },
            '[' | ']' | '^' | '-' => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn anchored_at_the_root_not_like_gitignore() {
        let i = ig("foo\n");
        assert!(i.excludes("foo"));
        assert!(
            i.excludes("foo/bar"),
            "a matched directory excludes its files"
        );
        assert!(
            !i.excludes("a/foo"),
            "gitignore would match this, Docker does not"
        );
    }

    #[test]
    fn star_stops_at_slash_and_double_star_crosses() {
        let i = ig("*.log\n");
        assert!(i.excludes("x.log"));
        assert!(!i.excludes("d/x.log"));
        let i = ig("**/*.log\n");
        assert!(i.excludes("x.log"));
        assert!(i.excludes("d/e/x.log"));
        let i = ig("d/**\n");
        assert!(i.excludes("d/e/f"));
        assert!(!i.excludes("dd"));
        let i = ig("a?c\n");
        assert!(i.excludes("abc"));
        assert!(!i.excludes("a/c"));
    }

    #[test]
    fn last_match_wins_and_exceptions_reinclude() {
        let i = ig("*.md\n!README.md\n");
        assert!(i.excludes("NOTES.md"));
        assert!(!i.excludes("README.md"));
        let i = ig("!README.md\n*.md\n");
        assert!(i.excludes("README.md"), "a later line wins");
        let i = ig("secret\n!secret/keep\n");
        assert!(i.excludes("secret/x"));
        assert!(!i.excludes("secret/keep"));
        assert!(i.may_reinclude_below("secret"));
        assert!(!i.may_reinclude_below("other"));
    }

    #[test]
    fn lines_are_cleaned_and_comments_skipped() {
        let i = ig("# comment\n\n  /build/  \n./tmp//x\n");
        assert!(i.excludes("build/out"));
        assert!(i.excludes("tmp/x"));
        assert!(!i.excludes("# comment"));
        assert!(Ignore::parse("!\n").is_err());
    }

    #[test]
    fn classes_and_escapes() {
        let i = ig("[a-c].txt\n[^x]y\nlit\\*\n");
        assert!(i.excludes("b.txt"));
        assert!(!i.excludes("d.txt"));
        assert!(i.excludes("ay"));
        assert!(!i.excludes("xy"));
        assert!(i.excludes("lit*"));
        assert!(!i.excludes("litx"));
    }

    #[test]
    fn keep_forces_a_file_in() {
        let mut i = ig("*\n");
        i.keep("Dockerfile");
        assert!(!i.excludes("Dockerfile"));
        assert!(i.excludes("other"));
    }

    #[test]
    fn go_clean() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("../x"), "../x");
    }
}
