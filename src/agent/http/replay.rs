//! A bounded memory of accepted `POST /sync` deliveries, so that one cannot be accepted twice.
//!
//! Bounded both ways: an entry is forgotten after [`RETENTION`], and at most [`CAPACITY`]
//! deliveries are kept (about 200 KB at most). Senders redeliver within minutes or hours, and a
//! webhook fires a few times per push, so a day or 1024 deliveries, whichever ends first, is
//! far beyond any honest repetition. Only signed requests reach this memory, so a stranger
//! cannot fill it. The one case where forgetting would matter is a timestamped delivery still
//! inside its window: such a request could be replayed once forgotten. So an entry younger
//! than [`PROTECT`] is never dropped to make room; the new delivery is refused instead.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::webhook::TIMESTAMP_WINDOW;

/// Most deliveries remembered.
pub const CAPACITY: usize = 1024;
/// How long a delivery is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A timestamp may lie up to one window in the future and stays valid one window after
/// that, so a timestamped delivery can be replayed for at most two windows after it arrived.
pub const PROTECT: Duration = Duration::from_secs(2 * TIMESTAMP_WINDOW.as_secs());

/// What [`Deliveries::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Not seen before; now remembered.
    New,
    /// This key was seen before.
    Replayed(String),
    /// The memory is full of deliveries too young to forget.
    Full,
}

#[derive(Debug)]
pub struct Deliveries {
    capacity: usize,
    retention: Duration,
    protect: Duration,
    /// Oldest first: when each delivery was accepted and the keys it is known by.
    order: VecDeque<(Instant, Vec<String>)>,
    seen: HashSet<String>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries::new(CAPACITY, RETENTION, PROTECT)
    }
}

impl Deliveries {
    pub fn new(capacity: usize, retention: Duration, protect: Duration) -> Deliveries {
        Deliveries {
            capacity: capacity.max(1),
            retention,
            protect,
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// Remembers a delivery known by `keys` unless one of them was seen. No keys (a sender
    /// that names no delivery and signs no timestamp) leaves nothing to remember.
    pub fn admit(&mut self, keys: &[String], now: Instant) -> Admit {
        self.expire(now);
        if let Some(k) = keys.iter().find(|k| self.seen.contains(*k)) {
            return Admit::Replayed(k.clone());
        }
        if keys.is_empty() {
            return Admit::New;
        }
        if self.order.len() >= self.capacity {
            let (oldest, _) = &self.order[0];
            if now.saturating_duration_since(*oldest) < self.protect {
                return Admit::Full;
            }
            self.pop_oldest();
        }
        self.seen.extend(keys.iter().cloned());
        self.order.push_back((now, keys.to_vec()));
        Admit::New
    }

    /// Forgets a delivery again (it was admitted but could not be queued, so the sender's
    /// retry must be accepted).
    pub fn forget(&mut self, keys: &[String]) {
        for k in keys {
            self.seen.remove(k);
        }
        self.order
            .retain(|(_, ks)| ks.iter().all(|k| !keys.contains(k)));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.retention {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, keys)) = self.order.pop_front() {
            for k in keys {
                self.seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_key_is_admitted_once_and_any_shared_key_is_a_replay() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        assert_eq!(d.admit(&keys(&["id:a", "sig:1"]), t), Admit::New);
        assert_eq!(d.admit(&keys(&["id:a"]), t), Admit::Replayed("id:a".into()));
        // Same signature under a fresh (unsigned) delivery id: still a replay.
        assert_eq!(
            d.admit(&keys(&["id:b", "sig:1"]), t),
            Admit::Replayed("sig:1".into())
        );
        assert_eq!(d.admit(&keys(&["id:b"]), t), Admit::New);
        // Nothing to remember: always new, memory unchanged.
        assert_eq!(d.admit(&[], t), Admit::New);
        assert_eq!(d.admit(&[], t), Admit::New);
        assert_eq!(d.order.len(), 2);
    }

    #[test]
    fn entries_expire_after_retention() {
        let mut d = Deliveries::new(10, Duration::from_secs(60), Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(d.admit(&keys(&["a"]), t), Admit::New);
        let later = t + Duration::from_secs(59);
        assert_eq!(d.admit(&keys(&["a"]), later), Admit::Replayed("a".into()));
        let expired = t + Duration::from_secs(60);
        assert_eq!(d.admit(&keys(&["a"]), expired), Admit::New);
        assert_eq!(d.order.len(), 1);
    }

    #[test]
    fn bounded_drops_the_oldest_but_never_a_protected_one() {
        let protect = Duration::from_secs(600);
        let mut d = Deliveries::new(3, RETENTION, protect);
        let t = Instant::now();
        for k in ["a", "b", "c"] {
            assert_eq!(d.admit(&keys(&[k]), t), Admit::New);
        }
        // Full of young entries: refused, nothing forgotten.
        assert_eq!(d.admit(&keys(&["d"]), t + protect / 2), Admit::Full);
        assert_eq!(d.admit(&keys(&["a"]), t), Admit::Replayed("a".into()));
        // Once the oldest is past the protection, it makes room.
        let after = t + protect;
        assert_eq!(d.admit(&keys(&["d"]), after), Admit::New);
        assert_eq!(d.order.len(), 3);
        assert_eq!(d.admit(&keys(&["a"]), after), Admit::New);
        assert_eq!(d.admit(&keys(&["c"]), after), Admit::Replayed("c".into()));
        assert_eq!(d.order.len(), 3);
        assert!(d.seen.len() == 3);
    }

    #[test]
    fn forget_lets_a_retry_in() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        let k = keys(&["id:x", "sig:y"]);
        assert_eq!(d.admit(&k, t), Admit::New);
        d.forget(&k);
        assert_eq!(d.order.len(), 0);
        assert_eq!(d.admit(&k, t), Admit::New);
    }
}
