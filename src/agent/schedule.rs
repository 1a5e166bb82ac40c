//! The image-check schedule: Watchtower's `--interval` (a duration) or `--schedule` (cron).

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every so often, counted from the agent's start.
    Every(Duration),
    /// A crontab expression: 5 fields (minute hour day-of-month month day-of-week) or 6 with
    /// seconds first, as Watchtower takes them; in `zone`, or UTC.
    Cron {
        cron: Box<croner::Cron>,
        zone: Option<chrono_tz::Tz>,
    },
}

const EXPECTED: &str = "expected a duration (e.g. 1h) or a cron expression: 5 fields (minute \
     hour day month weekday, e.g. \"0 4 * * *\") or 6 with seconds first (\"0 0 4 * * *\"), \
     optionally after CRON_TZ=Zone or TZ=Zone (e.g. \"CRON_TZ=Europe/Paris 0 4 * * *\")";

impl Schedule {
    /// A duration (`30s`, `1h`), or a 5- or 6-field cron expression, optionally prefixed by
    /// `CRON_TZ=Area/City ` or `TZ=Area/City ` (the forms cron implementations share).
    pub fn parse(s: &str) -> Result<Schedule> {
        let t = s.trim();
        if let Some(d) = crate::duration::parse(t) {
            if d.is_zero() {
                bail!("a zero interval would check the registry continuously");
            }
            return Ok(Schedule::Every(d));
        }
        let (zone, expr) = match t.split_once(char::is_whitespace) {
            Some((first, rest)) if first.starts_with("CRON_TZ=") || first.starts_with("TZ=") => {
                let name = first.split_once('=').map(|x| x.1).unwrap_or_default();
                let zone = chrono_tz::Tz::from_str(name).map_err(|_| {
                    anyhow!(
                        "unknown time zone {name:?}: use an IANA name such as Europe/Paris or UTC"
                    )
                })?;
                (Some(zone), rest.trim())
            }
            _ => (None, t),
        };
        if !matches!(expr.split_whitespace().count(), 5 | 6) {
            bail!("{EXPECTED}");
        }
        // Nicknames (@daily) are refused above by the field count; seconds are optional.
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        match parser.parse(expr) {
            Ok(c) => Ok(Schedule::Cron {
                cron: Box::new(c),
                zone,
            }),
            Err(e) => bail!("invalid cron expression {expr:?}: {e}"),
        }
    }

    /// How long from `now` until the next check.
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        let next = match self {
            Schedule::Every(d) => return *d,
            Schedule::Cron { cron, zone: None } => cron
                .find_next_occurrence(&now, false)
                .map(|n| n.with_timezone(&Utc)),
            Schedule::Cron {
                cron,
                zone: Some(z),
            } => cron
                .find_next_occurrence(&now.with_timezone(z), false)
                .map(|n| n.with_timezone(&Utc)),
        };
        match next {
            Ok(next) => (next - now).to_std().unwrap_or(Duration::from_secs(1)),
            // No next occurrence (e.g. 30 February): check daily rather than never.
            Err(_) => Duration::from_secs(86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_and_cron() {
        assert!(matches!(Schedule::parse("90s").unwrap(), Schedule::Every(d) if d.as_secs() == 90));
        let s = Schedule::parse("0 4 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        assert_eq!(s.delay_from(now), Duration::from_secs(3600));
        let s = Schedule::parse("*/15 * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 14, 30).unwrap();
        assert_eq!(s.delay_from(now), Duration::from_secs(30));
        assert!(Schedule::parse("every day").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("0").is_err());
    }

    #[test]
    fn six_fields_take_seconds_first() {
        let s = Schedule::parse("30 0 4 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        assert_eq!(s.delay_from(now), Duration::from_secs(3630));
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 4).unwrap();
        assert_eq!(s.delay_from(now), Duration::from_secs(6));
        assert!(Schedule::parse("61 0 4 * * *").is_err());
    }

    #[test]
    fn time_zones_move_the_hour_and_follow_daylight_saving() {
        // 04:00 in Paris is 03:00 UTC in winter (CET, +1) and 02:00 UTC in summer (CEST, +2).
        let s = Schedule::parse("CRON_TZ=Europe/Paris 0 4 * * *").unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
        assert_eq!(s.delay_from(winter), Duration::from_secs(3600));
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 1, 0, 0).unwrap();
        assert_eq!(s.delay_from(summer), Duration::from_secs(3600));
        let s = Schedule::parse("TZ=America/New_York 0 0 9 * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 13, 0, 0).unwrap();
        assert_eq!(s.delay_from(now), Duration::from_secs(3600));
        let e = Schedule::parse("CRON_TZ=Mars/Olympus 0 4 * * *").unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone \"Mars/Olympus\""),
            "{e}"
        );
        assert!(Schedule::parse("TZ=UTC").is_err());
    }
}
