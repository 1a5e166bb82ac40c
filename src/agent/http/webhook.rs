//! Who may trigger `POST /sync`: the two signature schemes, the timestamp window, and the keys
//! under which an accepted delivery is remembered so that it cannot be replayed.
//!
//! Pure functions of (secret, headers, body, clock), so every refusal is unit-tested.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// GitHub's (and Gitea's, Gogs') signature header: `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// composeops' timestamped scheme: `sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`.
pub const TIMESTAMPED_SIGNATURE_HEADER: &str = "x-composeops-signature-256";
/// Unix seconds at which the sender signed; only with [`TIMESTAMPED_SIGNATURE_HEADER`].
pub const TIMESTAMP_HEADER: &str = "x-composeops-timestamp";
/// Headers naming one delivery, first match wins. Gitea sends its id under several of these
/// names at once (always the same value), so the order does not matter for it.
pub const DELIVERY_HEADERS: [&str; 5] = [
    "x-composeops-delivery",
    "x-github-delivery",
    "x-gitea-delivery",
    "x-gogs-delivery",
    "x-gitlab-event-uuid",
];
/// How far a signed timestamp may be from this host's clock, either way. Five minutes is the
/// usual choice (Slack, Stripe): wide enough for clock drift and a retrying proxy, short
/// enough that a captured request is soon worthless.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);
/// Longest delivery id remembered; real ids are GUIDs (36 bytes).
pub const MAX_DELIVERY_ID: usize = 128;

/// Why a `POST /sync` is refused; the text is the body of the reply and tells the sender what
/// to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or wrong X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the body>)")]
    BodySignature,
    #[error(
        "missing or wrong X-Composeops-Signature-256 \
         (sha256=<hex HMAC-SHA256 of \"<X-Composeops-Timestamp>.<body>\">)"
    )]
    TimestampSignature,
    #[error(
        "X-Composeops-Signature-256 signs \"<timestamp>.<body>\": send the timestamp in \
         X-Composeops-Timestamp (unix seconds)"
    )]
    MissingTimestamp,
    #[error(
        "X-Composeops-Timestamp is part of the signature: sign \"<timestamp>.<body>\" and send \
         it in X-Composeops-Signature-256"
    )]
    UnsignedTimestamp,
    #[error("X-Composeops-Timestamp {0:?} is not unix seconds")]
    BadTimestamp(String),
    #[error(
        "X-Composeops-Timestamp is {skew}s from this host's clock (at most {window}s allowed): \
         refused as a possible replay; sign with the current time and check both clocks"
    )]
    OutsideWindow { skew: i64, window: u64 },
    #[error("delivery id is longer than {MAX_DELIVERY_ID} bytes")]
    DeliveryIdTooLong,
    #[error(
        "delivery {0} was already accepted: refused as a replay (a new sync needs a new \
         delivery id, or a new timestamp)"
    )]
    Replayed(String),
    #[error(
        "more than {0} deliveries in the last 10 minutes: refused, because remembering more \
         would let an older one be replayed; try again in a few minutes"
    )]
    TooMany(usize),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BodySignature
            | Refusal::TimestampSignature
            | Refusal::MissingTimestamp
            | Refusal::UnsignedTimestamp => StatusCode::UNAUTHORIZED,
            Refusal::BadTimestamp(_) | Refusal::DeliveryIdTooLong => StatusCode::BAD_REQUEST,
            Refusal::OutsideWindow { .. } => StatusCode::FORBIDDEN,
            Refusal::Replayed(_) => StatusCode::CONFLICT,
            Refusal::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// A request whose signature (and timestamp, if any) checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's delivery id, for logs and the reply.
    pub delivery: Option<String>,
    /// What the replay memory must not have seen: the delivery id, and for the timestamped
    /// scheme also the signature. The id is not signed (GitHub signs the body only), so it
    /// stops verbatim replays; the signature of "<timestamp>.<body>" cannot be altered
    /// without the secret, so inside the window it stops every replay.
    pub replay_keys: Vec<String>,
}

/// Checks a `POST /sync` request. `now` is unix seconds.
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Verified, Refusal> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = DELIVERY_HEADERS
        .iter()
        .filter_map(|h| get(h))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_string);
    if delivery.as_ref().is_some_and(|d| d.len() > MAX_DELIVERY_ID) {
        return Err(Refusal::DeliveryIdTooLong);
    }
    let mut replay_keys: Vec<String> = delivery.iter().map(|d| format!("id:{d}")).collect();
    match (get(TIMESTAMP_HEADER), get(TIMESTAMPED_SIGNATURE_HEADER)) {
        (Some(ts), Some(sig)) => {
            let ts = ts.trim();
            if !verify_signature(secret, &timestamped_payload(ts, body), Some(sig)) {
                return Err(Refusal::TimestampSignature);
            }
            check_window(ts, now)?;
            replay_keys.push(format!("sig:{}", sig.trim().to_ascii_lowercase()));
        }
        (None, Some(_)) => return Err(Refusal::MissingTimestamp),
        (Some(_), None) => return Err(Refusal::UnsignedTimestamp),
        (None, None) => {
            if !verify_signature(secret, body, get(SIGNATURE_HEADER)) {
                return Err(Refusal::BodySignature);
            }
        }
    }
    Ok(Verified {
        delivery,
        replay_keys,
    })
}

/// Refuses a timestamp that is not plain unix seconds or lies outside [`TIMESTAMP_WINDOW`].
fn check_window(ts: &str, now: i64) -> Result<(), Refusal> {
    let bad = || Refusal::BadTimestamp(ts.to_string());
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let t: i64 = ts.parse().map_err(|_| bad())?;
    let skew = now.saturating_sub(t);
    let window = TIMESTAMP_WINDOW.as_secs();
    if skew.unsigned_abs() > window {
        return Err(Refusal::OutsideWindow { skew, window });
    }
    Ok(())
}

/// The bytes the timestamped scheme signs: `<timestamp>.<body>`, the timestamp exactly as sent.
pub fn timestamped_payload(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + 1 + body.len());
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
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

/// The `X-Composeops-Signature-256` value for `body` sent with `X-Composeops-Timestamp:
/// <timestamp>` (for clients and tests).
pub fn sign_timestamped(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    sign(secret, &timestamped_payload(timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k";
    const NOW: i64 = 1_700_000_000;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn github_example_signature() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let s = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            s,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let ok = |k: &[u8], b: &[u8], h| verify_signature(k, b, h);
        assert!(ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(&s)
        ));
        assert!(!ok(b"other", b"Hello, World!", Some(&s)));
        assert!(!ok(b"It's a Secret to Everybody", b"Hello", Some(&s)));
        assert!(!ok(b"k", b"", None));
        assert!(!ok(b"k", b"", Some("sha256=zz")));
        assert!(!ok(b"k", b"", Some("sha1=00")));
    }

    #[test]
    fn body_signature_with_delivery_ids() {
        let body = b"{}";
        let sig = sign(KEY, body);
        let v = verify(KEY, &headers(&[("X-Hub-Signature-256", &sig)]), body, NOW).unwrap();
        assert_eq!(v.delivery, None);
        assert!(v.replay_keys.is_empty());
        for h in DELIVERY_HEADERS {
            let hs = headers(&[("X-Hub-Signature-256", &sig), (h, " abc-1 ")]);
            let v = verify(KEY, &hs, body, NOW).unwrap();
            assert_eq!(v.delivery.as_deref(), Some("abc-1"), "{h}");
            assert_eq!(v.replay_keys, vec!["id:abc-1".to_string()], "{h}");
        }
        let long = "x".repeat(MAX_DELIVERY_ID + 1);
        let hs = headers(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", &long)]);
        assert_eq!(verify(KEY, &hs, body, NOW), Err(Refusal::DeliveryIdTooLong));
        let hs = headers(&[("X-Hub-Signature-256", &sign(b"other", body))]);
        assert_eq!(verify(KEY, &hs, body, NOW), Err(Refusal::BodySignature));
    }

    #[test]
    fn timestamped_signature_covers_the_timestamp() {
        let body = b"{}";
        let ts = NOW.to_string();
        let sig = sign_timestamped(KEY, &ts, body);
        assert_eq!(sig, sign(KEY, format!("{ts}.{{}}").as_bytes()));
        let hs = headers(&[
            ("X-Composeops-Timestamp", &ts),
            ("X-Composeops-Signature-256", &sig),
        ]);
        let v = verify(KEY, &hs, body, NOW).unwrap();
        assert_eq!(v.replay_keys, vec![format!("sig:{sig}")]);
        // Another timestamp with the same signature: refused (the timestamp is signed).
        let moved = headers(&[
            ("X-Composeops-Timestamp", &(NOW + 1).to_string()),
            ("X-Composeops-Signature-256", &sig),
        ]);
        assert_eq!(
            verify(KEY, &moved, body, NOW),
            Err(Refusal::TimestampSignature)
        );
        // A body-only signature does not stand in for it, in either header.
        let body_sig = sign(KEY, body);
        let hs = headers(&[
            ("X-Composeops-Timestamp", &ts),
            ("X-Hub-Signature-256", &body_sig),
        ]);
        assert_eq!(verify(KEY, &hs, body, NOW), Err(Refusal::UnsignedTimestamp));
        let hs = headers(&[("X-Composeops-Signature-256", &sig)]);
        assert_eq!(verify(KEY, &hs, body, NOW), Err(Refusal::MissingTimestamp));
    }

    #[test]
    fn timestamps_outside_the_window_or_malformed_are_refused() {
        let body = b"x";
        let at = |ts: &str, now: i64| {
            let hs = headers(&[
                ("X-Composeops-Timestamp", ts),
                (
                    "X-Composeops-Signature-256",
                    &sign_timestamped(KEY, ts, body),
                ),
            ]);
            verify(KEY, &hs, body, now)
        };
        let w = TIMESTAMP_WINDOW.as_secs() as i64;
        assert!(at(&(NOW - w).to_string(), NOW).is_ok());
        assert!(at(&(NOW + w).to_string(), NOW).is_ok());
        assert_eq!(
            at(&(NOW - w - 1).to_string(), NOW),
            Err(Refusal::OutsideWindow {
                skew: w + 1,
                window: w as u64
            })
        );
        assert_eq!(
            at(&(NOW + w + 1).to_string(), NOW),
            Err(Refusal::OutsideWindow {
                skew: -w - 1,
                window: w as u64
            })
        );
        for bad in ["", "-5", "+5", "1.5", "99999999999999999999999"] {
            assert_eq!(
                at(bad, NOW),
                Err(Refusal::BadTimestamp(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            Refusal::OutsideWindow { skew: 1, window: 1 }.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(Refusal::Replayed("x".into()).status(), StatusCode::CONFLICT);
    }
}
