//! `--notify URL`: after a reconcile that changed something, one message per target: chat
//! services and e-mail get text, generic webhooks the JSON event. Delivery runs in its own
//! task with a few retries, so a slow or dead receiver never delays or fails an apply.

mod deliver;
mod target;
mod text;

use std::time::Duration;

pub use target::NotifyTarget;
pub use text::mask_secrets;

use super::events::Event;

/// How hard to try one target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub tries: u32,
    /// Wait after the first failed try; doubles after each further one.
    pub first_delay: Duration,
    /// Per try (connect + request + reply, or the whole SMTP session).
    pub timeout: Duration,
}

/// 3 tries, 1 s then 2 s apart, 10 s each.
pub(crate) const POLICY: Policy = Policy {
    tries: 3,
    first_delay: Duration::from_secs(1),
    timeout: Duration::from_secs(10),
};

/// Sends `event` to every target in the background; returns at once.
pub fn send(targets: &[NotifyTarget], event: Event) {
    send_with(targets, event, POLICY);
}

pub(crate) fn send_with(targets: &[NotifyTarget], event: Event, policy: Policy) {
    if targets.is_empty() {
        return;
    }
    let event = event.masked();
    let text = std::sync::Arc::new(text::render(&event, &hostname()));
    let event = std::sync::Arc::new(event);
    for t in targets {
        let (t, event, text) = (t.clone(), event.clone(), text.clone());
        tokio::spawn(async move { send_one(&t, &event, &text, policy).await });
    }
}

/// Tries one target until it accepts or the tries run out; logs the result (URL redacted).
async fn send_one(t: &NotifyTarget, event: &Event, text: &text::Text, p: Policy) -> bool {
    let mut delay = p.first_delay;
    for n in 1..=p.tries {
        // The SMTP session has its own timeout; this bounds everything else too.
        let r = tokio::time::timeout(
            p.timeout * 2,
            deliver::deliver(&t.kind, event, text, p.timeout),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {:?}", p.timeout * 2)));
        match r {
            Ok(()) => {
                tracing::info!(target_url = %t, event = event.event, project = %event.project, "notification sent");
                return true;
            }
            Err(e) if n < p.tries => {
                tracing::debug!(target_url = %t, attempt = n, error = %format!("{e:#}"), "notification failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::warn!(target_url = %t, tries = p.tries, error = %format!("{e:#}"), "notification not sent");
            }
        }
    }
    false
}

/// This machine's name, so a message says which host it is about.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests;
