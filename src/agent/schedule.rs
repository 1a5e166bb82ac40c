//! The image-check schedule: Watchtower's `--interval` (a duration) or `--schedule` (cron).

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every so often, counted from the agent's start.
    Every(Duration),
    /// A 5-field crontab expression (minute hour day-of-month month day-of-week), in UTC.
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// A duration (`30s`, `1h`) or a 5-field cron expression (`0 4 * * *`).
    pub fn parse(s: &str) -> Result<Schedule> {
        let t = s.trim();
        if let Some(d) = crate::duration::parse(t) {
            if d.is_zero() {
                bail!("a zero interval would check the registry continuously");
            }
            return Ok(Schedule::Every(d));
        }
        if t.split_whitespace().count() != 5 {
            bail!(
                "expected a duration (e.g. 1h) or a 5-field cron expression \
                 (minute hour day month weekday, e.g. \"0 4 * * *\")"
            );
        }
        match croner::Cron::from_str(t) {
            Ok(c) => Ok(Schedule::Cron(Box::new(c))),
            Err(e) => bail!("invalid cron expression: {e}"),
        }
    }

    /// How long from `now` until the next check.
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron(c) => match c.find_next_occurrence(&now, false) {
                Ok(next) => (next - now).to_std().unwrap_or(Duration::from_secs(1)),
                // No next occurrence (e.g. 30 February): check daily rather than never.
                Err(_) => Duration::from_secs(86_400),
            },
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
}
