//! The human text of a notification (chat and e-mail): the revision, each service's outcome,
//! the plan's reasons (old -> new digests), and the failing container's last log lines.

use std::sync::LazyLock;

use regex::Regex;

use crate::agent::events::Event;
use crate::agent::reconciler::{ServiceOutcome, ServiceResult};

/// How many log lines of a failed container a message carries.
pub(crate) const LOG_LINES: usize = 20;

pub(crate) struct Text {
    pub title: String,
    pub body: String,
}

/// `NAME=value` / `NAME: value` where NAME looks like it holds a secret.
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b([A-Z0-9_.-]*(?:PASSWORD|PASSWD|SECRET|TOKEN|KEY)[A-Z0-9_.-]*)(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)"#)
        .expect("valid regex")
});

/// `text` with the values of secret-looking keys replaced by `***`.
pub fn mask_secrets(text: &str) -> String {
    SECRET.replace_all(text, "$1$2***").into_owned()
}

/// What happened to a service, in words.
fn outcome(s: &ServiceOutcome) -> &'static str {
    match s.result {
        ServiceResult::Unchanged => "unchanged",
        ServiceResult::Updated => "applied",
        ServiceResult::Created => "created",
        ServiceResult::Removed => "removed",
        ServiceResult::RolledBack => "ROLLED BACK",
        ServiceResult::Failed if s.detail.contains("rollback failed") => "ROLLBACK FAILED",
        ServiceResult::Failed if s.detail == "skipped" => "skipped",
        ServiceResult::Failed => "FAILED",
    }
}

/// The reasons of `service`'s plan line (`recreate web (changed: environment; image …:
/// digest a -> b)`), or "".
fn reasons<'a>(plan: &'a [String], service: &str) -> &'a str {
    plan.iter()
        .find_map(|l| {
            let mut w = l.splitn(3, ' ');
            let (_, s, rest) = (w.next()?, w.next()?, w.next().unwrap_or(""));
            (s == service).then(|| rest.trim_start_matches('(').trim_end_matches(')'))
        })
        .unwrap_or("")
}

/// Renders an (already masked) event.
pub(crate) fn render(e: &Event, host: &str) -> Text {
    let rev = e
        .revision
        .as_deref()
        .map(short_rev)
        .unwrap_or("(no git revision)");
    let what = match e.event {
        "rollback" => "rolled back",
        "gate_refused" => "refused by the gate",
        _ => "applied",
    };
    let title = format!("composeops: {} {what} at {rev} on {host}", e.project);
    let mut body = format!("Project {} on {host}, revision {rev}: {what}.\n", e.project);
    if let Some(r) = &e.reason {
        body.push_str(&format!("\n{r}\n"));
        for l in &e.plan {
            body.push_str(&format!("- {l}\n"));
        }
    }
    for s in e
        .services
        .iter()
        .filter(|s| s.result != ServiceResult::Unchanged)
    {
        body.push_str(&format!("\n- {}: {}", s.service, outcome(s)));
        if !s.detail.is_empty() && s.detail != outcome(s) && s.detail != "applied" {
            body.push_str(&format!(" ({})", s.detail));
        }
        body.push('\n');
        for r in reasons(&e.plan, &s.service)
            .split("; ")
            .filter(|r| !r.is_empty())
        {
            body.push_str(&format!("  {r}\n"));
        }
        if !s.logs.is_empty() {
            let tail = &s.logs[s.logs.len().saturating_sub(LOG_LINES)..];
            body.push_str(&format!("  last {} log lines:\n", tail.len()));
            for l in tail {
                body.push_str(&format!("    {l}\n"));
            }
        }
    }
    let unchanged = e
        .services
        .iter()
        .filter(|s| s.result == ServiceResult::Unchanged)
        .count();
    if unchanged > 0 {
        body.push_str(&format!("\n{unchanged} other service(s) unchanged.\n"));
    }
    Text { title, body }
}

fn short_rev(r: &str) -> &str {
    // 12 hex digits, keeping a `+dirty` suffix readable.
    match r.find('+') {
        Some(i) if i > 12 => &r[..12],
        None if r.len() > 12 => &r[..12],
        _ => r,
    }
}

/// `s` cut to at most `max` bytes (chat APIs refuse longer messages: Discord 2000, Telegram
/// 4096 characters). The middle goes: the head says what happened, the tail holds the last
/// (most telling) log lines.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const MARK: &str = "\n…(cut)…\n";
    let room = max.saturating_sub(MARK.len());
    let mut head = room * 2 / 5;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - (room - head);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{MARK}{}", &s[..head], &s[tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_values() {
        assert_eq!(
            mask_secrets("DB_PASSWORD=hunter2 A=1 api_key: abc, token=\"x y\" KEYBOARD=ok"),
            "DB_PASSWORD=*** A=1 api_key: ***, token=*** KEYBOARD=***"
        );
        assert_eq!(mask_secrets("changed: environment"), "changed: environment");
    }

    #[test]
    fn renders_outcomes_reasons_and_last_log_lines() {
        let logs: Vec<String> = (1..=25).map(|i| format!("line {i}")).collect();
        let e = Event {
            event: "rollback",
            project: "shop".into(),
            revision: Some("0123456789abcdef0123".into()),
            plan: vec!["recreate web (changed: environment; image r/app:2: digest sha256:aaa -> sha256:bbb)".into()],
            services: vec![
                ServiceOutcome { service: "web".into(), result: ServiceResult::RolledBack, detail: "not healthy after 8s".into(), logs },
                ServiceOutcome { service: "db".into(), result: ServiceResult::Unchanged, detail: String::new(), logs: vec![] },
            ],
            time: "2026-01-01T00:00:00Z".into(),
            reason: None,
        };
        let t = render(&e, "host1");
        assert_eq!(
            t.title,
            "composeops: shop rolled back at 0123456789ab on host1"
        );
        assert!(
            t.body.contains("- web: ROLLED BACK (not healthy after 8s)"),
            "{}",
            t.body
        );
        assert!(
            t.body
                .contains("  image r/app:2: digest sha256:aaa -> sha256:bbb\n"),
            "{}",
            t.body
        );
        assert!(
            t.body.contains("last 20 log lines:\n    line 6\n"),
            "{}",
            t.body
        );
        assert!(
            !t.body.contains("line 5\n") && t.body.contains("line 25\n"),
            "{}",
            t.body
        );
        assert!(
            t.body.contains("1 other service(s) unchanged"),
            "{}",
            t.body
        );
    }

    #[test]
    fn clips_at_char_boundary() {
        let s = format!("head{}tail", "é".repeat(100));
        let c = clip(&s, 51);
        assert!(
            c.len() <= 51 && c.starts_with("head") && c.ends_with("tail"),
            "{c}"
        );
        assert!(c.contains("…(cut)…"), "{c}");
        assert_eq!(clip("short", 10), "short");
    }
}
