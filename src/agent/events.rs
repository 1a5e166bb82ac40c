//! The event the agent reports after a reconcile that changed something (or was refused): one
//! per apply, per rollback and per plan the gate refused. Notification targets (`--notify`, see [`super::notify`]) receive it as JSON
//! (generic webhooks) or rendered as text (chat, e-mail).

use serde::Serialize;

use super::reconciler::ServiceOutcome;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `apply`, `rollback` or `gate_refused`.
    pub event: &'static str,
    pub project: String,
    pub revision: Option<String>,
    pub plan: Vec<String>,
    pub services: Vec<ServiceOutcome>,
    /// RFC 3339.
    pub time: String,
    /// Why nothing was applied (`gate_refused`: the gate's verdict and last output lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event {
    /// The event with secret-looking `KEY=value` pairs masked in every free-text field (plan
    /// lines, details, container log lines): a container that prints its environment must not
    /// leak a password into a chat channel.
    pub fn masked(mut self) -> Event {
        for l in &mut self.plan {
            *l = super::notify::mask_secrets(l);
        }
        if let Some(r) = &mut self.reason {
            *r = super::notify::mask_secrets(r);
        }
        for s in &mut self.services {
            s.detail = super::notify::mask_secrets(&s.detail);
            for l in &mut s.logs {
                *l = super::notify::mask_secrets(l);
            }
        }
        self
    }
}
