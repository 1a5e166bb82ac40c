//! The agent's listener: health, metrics, status, and the signed `POST /sync` webhook.
//! [`serve`] owns the connections (timeouts, cap), [`webhook`] decides who may sync, [`replay`]
//! remembers what was already accepted.

pub mod replay;
pub mod serve;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Control, Shared};
use replay::{Admit, Deliveries};
pub use webhook::{sign, sign_timestamped, verify_signature, Refusal, SIGNATURE_HEADER};

#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub control: mpsc::UnboundedSender<Control>,
    /// From COMPOSEOPS_WEBHOOK_SECRET; `None` refuses `POST /sync`.
    pub secret: Option<Arc<Vec<u8>>>,
    /// Deliveries already accepted (see [`replay`]).
    pub deliveries: Arc<Mutex<Deliveries>>,
}

impl HttpState {
    pub fn new(
        shared: Arc<Shared>,
        control: mpsc::UnboundedSender<Control>,
        secret: Option<Arc<Vec<u8>>>,
    ) -> HttpState {
        HttpState {
            shared,
            control,
            secret,
            deliveries: Arc::new(Mutex::new(Deliveries::default())),
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/sync", post(sync))
        .with_state(state)
}

async fn healthz(State(st): State<HttpState>) -> Response {
    if st.shared.alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "agent loop not responding\n",
        )
            .into_response()
    }
}

async fn metrics(State(st): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(st): State<HttpState>) -> Response {
    Json(st.shared.status_json()).into_response()
}

#[derive(Deserialize)]
struct SyncQuery {
    force: Option<String>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn refuse(code: StatusCode, msg: &str) -> Response {
    (code, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// `POST /sync[?force=1]`: pull (if the agent pulls) and reconcile every project now. `force`
/// also applies a desired state remembered as rolled back (or refused by the gate), and applies
/// outside the maintenance windows (`--window`).
///
/// Needs COMPOSEOPS_WEBHOOK_SECRET and one of two signatures (HMAC-SHA256, hex, `sha256=` prefix):
/// - `X-Hub-Signature-256` over the raw body: what GitHub, Gitea and Gogs send;
/// - `X-Composeops-Signature-256` over `<X-Composeops-Timestamp>.<raw body>`, with
///   `X-Composeops-Timestamp` the unix seconds at signing, the header's exact text. Refused
///   (403) when more than 5 minutes from this host's clock; a timestamp header with only the
///   body signature is refused (401), since the timestamp would be unsigned.
///
/// Replays are refused (409). The delivery id, the first of `X-Composeops-Delivery`,
/// `X-GitHub-Delivery`, `X-Gitea-Delivery`, `X-Gogs-Delivery`, `X-Gitlab-Event-UUID`, is accepted
/// once; so is a timestamped signature. Senders do not sign their delivery id, so for the
/// body-only scheme this stops verbatim replays; the timestamped scheme stops every replay.
/// Accepted deliveries are remembered for 24 h or the last 1024, whichever ends first.
async fn sync(
    State(st): State<HttpState>,
    Query(q): Query<SyncQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &st.secret else {
        return refuse(
            StatusCode::FORBIDDEN,
            "POST /sync is disabled: start the agent with COMPOSEOPS_WEBHOOK_SECRET set",
        );
    };
    let verified = webhook::verify(secret, &headers, &body, unix_now()).and_then(|v| {
        let mut memory = st.deliveries.lock().unwrap();
        match memory.admit(&v.replay_keys, Instant::now()) {
            Admit::New => Ok(v),
            Admit::Replayed(_) => Err(Refusal::Replayed(
                v.delivery
                    .clone()
                    .unwrap_or_else(|| "with this signature".into()),
            )),
            Admit::Full => Err(Refusal::TooMany(replay::CAPACITY)),
        }
    });
    let v = match verified {
        Ok(v) => v,
        Err(r) => {
            tracing::warn!(reason = %r, "POST /sync refused");
            return refuse(r.status(), &r.to_string());
        }
    };
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "yes"));
    tracing::info!(
        force,
        delivery = v.delivery.as_deref(),
        "POST /sync accepted"
    );
    if st.control.send(Control::Sync { force }).is_err() {
        st.deliveries.lock().unwrap().forget(&v.replay_keys);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down");
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "queued": true, "force": force, "delivery": v.delivery })),
    )
        .into_response()
}
