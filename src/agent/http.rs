//! The agent's listener: health, metrics, status, and the signed `POST /sync` webhook.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{Control, Shared};

/// GitHub's signature header: `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub control: mpsc::UnboundedSender<Control>,
    /// From COMPOSEOPS_WEBHOOK_SECRET; `None` refuses `POST /sync`.
    pub secret: Option<Arc<Vec<u8>>>,
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

/// Constant-time check of `sha256=<hex>` against the HMAC of `body`.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `sha256=<hex>` for `body` (for clients and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn sync(
    State(st): State<HttpState>,
    Query(q): Query<SyncQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let err = |code: StatusCode, msg: &str| {
        (code, Json(serde_json::json!({ "error": msg }))).into_response()
    };
    let Some(secret) = &st.secret else {
        return err(
            StatusCode::FORBIDDEN,
            "POST /sync is disabled: start the agent with COMPOSEOPS_WEBHOOK_SECRET set",
        );
    };
    let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !verify_signature(secret, &body, sig) {
        tracing::warn!("POST /sync refused: missing or wrong X-Hub-Signature-256");
        return err(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the body>)",
        );
    }
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "yes"));
    tracing::info!(force, "POST /sync accepted");
    if st.control.send(Control::Sync { force }).is_err() {
        return err(StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down");
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "queued": true, "force": force })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let s = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            s,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify_signature(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(&s)
        ));
        assert!(!verify_signature(b"other", b"Hello, World!", Some(&s)));
        assert!(!verify_signature(
            b"It's a Secret to Everybody",
            b"Hello",
            Some(&s)
        ));
        assert!(!verify_signature(b"k", b"", None));
        assert!(!verify_signature(b"k", b"", Some("sha256=zz")));
        assert!(!verify_signature(b"k", b"", Some("sha1=00")));
    }
}
