//! Update policy per service: `x-composeops: {track: RANGE, cooldown: DURATION}`.
//!
//! Compose drops service-level `x-` keys from its model (`config --format json` does not print
//! them, so they are not part of its config-hash): the loader reads the policy
//! (`load/policy.rs`) before it strips every extension, and carries it beside the service
//! (`Service::update`) rather than in it.
//!
//! - `track` lets `lock --update` and the agent's image checks move the tag to the highest
//!   version in a semver range. Tags are parsed with the `semver` crate (a leading `v` is
//!   allowed); tags that are not versions are ignored. Pre-releases match only when the range
//!   names one on the same `major.minor.patch`, which is the crate's own rule.
//! - `cooldown` takes a new tag, or a new digest of the same tag, only once its image config's
//!   `created` time is at least that old: a release that is pulled back within a day never
//!   reaches the host.
//!
//! This module holds the policy and the pure selection; the registry calls are in
//! `resolve::tags`, the resolver's loop over candidates in `resolve::Resolver`.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use semver::{Version, VersionReq};

/// A service's update policy; the default (no extension) changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdatePolicy {
    pub track: Option<Track>,
    /// `None`: a new tag or digest is taken as soon as it is seen.
    pub cooldown: Option<Duration>,
    /// The cooldown as written (`24h`), for messages.
    pub cooldown_text: Option<String>,
}

/// A semver range, kept with its text for messages and the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub range: String,
    pub req: VersionReq,
}

impl UpdatePolicy {
    /// True when the service has no policy: resolution stays a plain tag lookup.
    pub fn is_none(&self) -> bool {
        self.track.is_none() && self.cooldown.is_none()
    }
}

/// A semver range as written in `x-composeops.track`, or what is wrong with it.
pub(crate) fn parse_range(text: &str) -> Result<VersionReq, String> {
    if text.is_empty() {
        return Err("empty range: write a semver range like \"~1.2\" or \"^1\"".into());
    }
    VersionReq::parse(text).map_err(|e| {
        format!("invalid semver range {text:?}: {e}; write a range like \"~1.2\", \"^1\" or \">=1.2, <2\"")
    })
}

/// A tag as a version: `1.2.3`, `v1.2.3`, `1.3.1-rc.1`. Anything else (`latest`, `1.2`,
/// `stable`) is not a candidate.
pub(crate) fn tag_version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    Version::parse(t).ok()
}

/// The tags in `req`, highest version first. Two tags of one version (`1.2.0`, `v1.2.0`): the
/// one without `v` first, so the choice does not depend on the registry's order.
pub(crate) fn candidates(tags: &[String], req: &VersionReq) -> Vec<String> {
    let mut found: Vec<(Version, &String)> = tags
        .iter()
        .filter_map(|t| tag_version(t).map(|v| (v, t)))
        .filter(|(v, _)| req.matches(v))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.len().cmp(&b.1.len())));
    found.into_iter().map(|(_, t)| t.clone()).collect()
}

/// One tag as the registry serves it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    pub tag: String,
    pub digest: String,
    /// The image config's `created`; `None` when the image does not say.
    pub created: Option<DateTime<Utc>>,
}

/// A candidate the cooldown held back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldBack {
    pub tag: String,
    pub digest: String,
    /// Age of the image at the check.
    pub age_secs: u64,
    /// The cooldown as written.
    pub cooldown: String,
}

impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} held back by cooldown: created {} ago < {}",
            self.tag,
            age_text(self.age_secs),
            self.cooldown
        )
    }
}

/// `3 h`, `25 min`, `40 s`, `2 d`: enough to see how long is left.
pub(crate) fn age_text(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 48 * 3600 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

/// Picks among candidates offered highest first: the first one that is already taken (the
/// current tag and digest) or old enough. Each younger one is remembered as held back.
#[derive(Debug)]
pub(crate) struct Selection<'a> {
    policy: &'a UpdatePolicy,
    now: DateTime<Utc>,
    /// What runs or is locked now (tag, digest): never held back, it was taken already.
    current: Option<(&'a str, &'a str)>,
    pub held_back: Vec<HeldBack>,
}

impl<'a> Selection<'a> {
    pub(crate) fn new(
        policy: &'a UpdatePolicy,
        now: DateTime<Utc>,
        current: Option<(&'a str, &'a str)>,
    ) -> Self {
        Selection {
            policy,
            now,
            current,
            held_back: Vec::new(),
        }
    }

    /// True when `p` is taken; the caller stops offering then.
    pub(crate) fn offer(&mut self, p: &Probe) -> bool {
        if self.current == Some((p.tag.as_str(), p.digest.as_str())) {
            return true;
        }
        let Some(cooldown) = self.policy.cooldown else {
            return true;
        };
        // An image that does not say when it was made cannot be shown to be old enough.
        let age = p
            .created
            .map(|c| (self.now - c).num_seconds().max(0) as u64);
        match age {
            Some(a) if a >= cooldown.as_secs() => true,
            _ => {
                self.held_back.push(HeldBack {
                    tag: p.tag.clone(),
                    digest: p.digest.clone(),
                    age_secs: age.unwrap_or(0),
                    cooldown: self
                        .policy
                        .cooldown_text
                        .clone()
                        .unwrap_or_else(|| crate::duration::format(cooldown)),
                });
                false
            }
        }
    }
}

/// The tags to offer a [`Selection`], in order: the range's versions highest first, or the
/// written tag alone without a range. When nothing is taken the caller keeps `current`, or,
/// with nothing current, takes the written tag: the compose file names it, so it is never
/// held back on its own account.
pub(crate) fn offer_order(
    policy: &UpdatePolicy,
    written_tag: &str,
    tags: &[String],
) -> Vec<String> {
    match &policy.track {
        Some(t) => candidates(tags, &t.req),
        None => vec![written_tag.to_string()],
    }
}

/// The pure decision over probes already fetched (tests; the resolver fetches lazily and
/// stops at the first taken one). `Ok(index)` of the taken probe, or `Err` with none taken.
#[cfg(test)]
pub(crate) fn select(
    policy: &UpdatePolicy,
    now: DateTime<Utc>,
    current: Option<(&str, &str)>,
    probes: &[Probe],
) -> (Option<usize>, Vec<HeldBack>) {
    let mut s = Selection::new(policy, now, current);
    let taken = probes.iter().position(|p| s.offer(p));
    (taken, s.held_back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(track: Option<&str>, cooldown: Option<&str>) -> UpdatePolicy {
        UpdatePolicy {
            track: track.map(|t| Track {
                range: t.into(),
                req: parse_range(t).unwrap(),
            }),
            cooldown: cooldown.map(|c| crate::duration::parse(c).unwrap()),
            cooldown_text: cooldown.map(str::to_string),
        }
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges_pick_the_highest_version_in_range() {
        let all = tags(&[
            "1.2.0",
            "1.2.1",
            "1.3.0",
            "2.0.0",
            "1.3.1-rc.1",
            "latest",
            "1.2",
            "v1.2.2",
            "main",
        ]);
        for (range, want) in [
            ("~1.2", vec!["v1.2.2", "1.2.1", "1.2.0"]),
            ("^1", vec!["1.3.0", "v1.2.2", "1.2.1", "1.2.0"]),
            ("^1.3", vec!["1.3.0"]),
            (">=2", vec!["2.0.0"]),
            ("~1.3.1-rc.0", vec!["1.3.1-rc.1"]),
            ("^1.3.1-rc.1", vec!["1.3.1-rc.1"]),
            ("~3", vec![]),
            ("*", vec!["2.0.0", "1.3.0", "v1.2.2", "1.2.1", "1.2.0"]),
        ] {
            let p = policy(Some(range), None);
            let got = candidates(&all, &p.track.unwrap().req);
            assert_eq!(got, tags(&want), "range {range}");
        }
    }

    #[test]
    fn prereleases_only_when_the_range_names_one() {
        for (range, tag, matches) in [
            ("^1", "1.3.1-rc.1", false),
            ("~1.3", "1.3.1-rc.1", false),
            ("~1.3.1-rc.0", "1.3.1-rc.1", true),
            (">=1.3.1-rc.1", "1.3.1-rc.1", true),
            (">=1.3.1-rc.1", "1.4.0-rc.1", false),
            ("~1.2", "v1.2.9", true),
            ("~1.2", "V1.2.9", false),
        ] {
            let p = policy(Some(range), None);
            let got = !candidates(&tags(&[tag]), &p.track.unwrap().req).is_empty();
            assert_eq!(got, matches, "{range} vs {tag}");
        }
    }

    #[test]
    fn same_version_prefers_the_tag_without_v() {
        let p = policy(Some("^1"), None);
        let got = candidates(&tags(&["v1.0.0", "1.0.0"]), &p.track.unwrap().req);
        assert_eq!(got, tags(&["1.0.0", "v1.0.0"]));
    }

    fn probe(tag: &str, digest: &str, hours_old: Option<i64>, now: DateTime<Utc>) -> Probe {
        Probe {
            tag: tag.into(),
            digest: digest.into(),
            created: hours_old.map(|h| now - chrono::Duration::hours(h)),
        }
    }

    #[test]
    fn cooldown_selection_table() {
        let now = Utc::now();
        let fresh_121 = probe("1.2.1", "d121", Some(3), now);
        let old_120 = probe("1.2.0", "d120", Some(240), now);
        let undated = probe("1.2.1", "d121", None, now);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Option<&str>,
            Option<(&str, &str)>,
            Vec<&Probe>,
            Option<usize>,
            Vec<&str>,
        )> = vec![
            (
                "no cooldown takes the highest",
                None,
                None,
                vec![&fresh_121, &old_120],
                Some(0),
                vec![],
            ),
            (
                "0s takes the highest",
                Some("0s"),
                None,
                vec![&fresh_121, &old_120],
                Some(0),
                vec![],
            ),
            (
                "24h holds a 3 h old image back",
                Some("24h"),
                None,
                vec![&fresh_121, &old_120],
                Some(1),
                vec!["1.2.1 held back by cooldown: created 3 h ago < 24h"],
            ),
            (
                "2h lets a 3 h old image through",
                Some("2h"),
                None,
                vec![&fresh_121, &old_120],
                Some(0),
                vec![],
            ),
            (
                "current is never held back",
                Some("24h"),
                Some(("1.2.1", "d121")),
                vec![&fresh_121, &old_120],
                Some(0),
                vec![],
            ),
            (
                "a new digest of the current tag is",
                Some("24h"),
                Some(("1.2.1", "dold")),
                vec![&fresh_121],
                None,
                vec!["1.2.1 held back by cooldown: created 3 h ago < 24h"],
            ),
            (
                "an undated image is held back",
                Some("1h"),
                None,
                vec![&undated, &old_120],
                Some(1),
                vec!["1.2.1 held back by cooldown: created 0 s ago < 1h"],
            ),
            (
                "all held back",
                Some("30d"),
                None,
                vec![&fresh_121, &old_120],
                None,
                vec![
                    "1.2.1 held back by cooldown: created 3 h ago < 30d",
                    "1.2.0 held back by cooldown: created 10 d ago < 30d",
                ],
            ),
        ];
        for (name, cooldown, current, probes, want, want_held) in cases {
            // `30d` is not a Go duration: build that policy by hand.
            let p = match cooldown {
                Some("30d") => UpdatePolicy {
                    cooldown: Some(Duration::from_secs(30 * 86400)),
                    cooldown_text: Some("30d".into()),
                    ..Default::default()
                },
                c => policy(None, c),
            };
            let probes: Vec<Probe> = probes.into_iter().cloned().collect();
            let (taken, held) = select(&p, now, current, &probes);
            assert_eq!(taken, want, "{name}");
            let held: Vec<String> = held.iter().map(|h| h.to_string()).collect();
            assert_eq!(held, want_held, "{name}");
        }
    }

    #[test]
    fn without_a_range_only_the_written_tag_is_offered() {
        let p = policy(None, Some("24h"));
        assert_eq!(
            offer_order(&p, "1.2.0", &tags(&["1.2.1"])),
            tags(&["1.2.0"])
        );
        let p = policy(Some("~1.2"), None);
        assert_eq!(
            offer_order(&p, "1.2.0", &tags(&["1.2.1", "1.3.0"])),
            tags(&["1.2.1"])
        );
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age_text(5), "5 s");
        assert_eq!(age_text(3 * 3600 + 5), "3 h");
        assert_eq!(age_text(25 * 60), "25 min");
        assert_eq!(age_text(10 * 86400), "10 d");
    }
}
