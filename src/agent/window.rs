//! Maintenance windows (`--window`): when the agent may apply. Outside every window it still
//! plans (so /status shows what is waiting) but changes nothing; a signed `POST /sync?force=1`
//! applies anyway.
//!
//! A window is `[DAYS] HH:MM-HH:MM [ZONE]`: `Sat 02:00-04:00`, `Mon-Fri 22:00-23:30`,
//! `Sat,Sun 02:00-04:00 Europe/Berlin`, `03:00-04:00` (every day). DAYS are the days the window
//! starts on: `Fri 23:00-01:00` runs from Friday 23:00 to Saturday 01:00. The end may be
//! `24:00`. ZONE is an IANA name; without one, the host's local time.
//!
//! A window follows the wall clock of its zone: it is open while that clock reads a time inside
//! it. On the night the clocks go forward, `Sun 02:00-03:00 Europe/Berlin` does not open at all
//! (02:00 to 03:00 never happens) and `Sun 02:00-04:00` opens at 03:00; on the night they go
//! back, a window holding the repeated hour stays open through both of its passes.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, Timelike, Utc, Weekday};

const EXPECTED: &str = "expected [DAYS] HH:MM-HH:MM [ZONE], e.g. \"Sat 02:00-04:00\", \
     \"Mon-Fri 22:00-23:30\" or \"Sat,Sun 02:00-04:00 Europe/Berlin\" (DAYS: Mon to Sun, \
     ranges and lists, none for every day; ZONE: an IANA name, none for the host's local time)";

/// How far ahead [`Windows::next_opening`] looks: two weeks and a day, so a weekly window that a
/// clock change swallows once is still found the week after.
const HORIZON_MINUTES: i64 = 15 * 24 * 60;

/// One `--window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The days the window starts on: bit 0 Monday to bit 6 Sunday.
    days: u8,
    /// Minutes after midnight, in `0..1440`.
    start: u32,
    /// Minutes after midnight, in `0..=1440`; at or before `start`: the next day.
    end: u32,
    /// `None`: the host's local time.
    zone: Option<chrono_tz::Tz>,
    /// As written (whitespace collapsed).
    text: String,
}

impl Window {
    /// `[DAYS] HH:MM-HH:MM [ZONE]` (see the module's documentation).
    pub fn parse(s: &str) -> Result<Window> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let times = |w: &str| w.contains(':');
        let (days, range, zone) = match words.as_slice() {
            [r] => (None, *r, None),
            [r, z] if times(r) => (None, *r, Some(*z)),
            [d, r] => (Some(*d), *r, None),
            [d, r, z] => (Some(*d), *r, Some(*z)),
            _ => bail!("{EXPECTED}"),
        };
        let days = match days {
            Some(d) => parse_days(d)?,
            None => 0x7f,
        };
        let (start, end) = parse_range(range)?;
        let zone = match zone {
            None => None,
            Some(z) => Some(chrono_tz::Tz::from_str(z).map_err(|_| {
                anyhow!("unknown time zone {z:?}: use an IANA name such as Europe/Berlin or UTC")
            })?),
        };
        Ok(Window {
            days,
            start,
            end,
            zone,
            text: words.join(" "),
        })
    }

    fn starts_on(&self, d: Weekday) -> bool {
        self.days & (1 << d.num_days_from_monday()) != 0
    }

    /// What the window's zone's clock reads at `t`.
    fn wall(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self.zone {
            Some(z) => t.with_timezone(&z).naive_local(),
            None => t.with_timezone(&chrono::Local).naive_local(),
        }
    }

    /// The window is open at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let wall = self.wall(t);
        let minute = wall.hour() * 60 + wall.minute();
        let day = wall.weekday();
        if self.start < self.end {
            self.starts_on(day) && (self.start..self.end).contains(&minute)
        } else {
            // Crosses midnight: the evening of a start day, or the morning after one.
            (self.starts_on(day) && minute >= self.start)
                || (self.starts_on(day.pred()) && minute < self.end)
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `Mon`, `Mon-Fri`, `Fri-Mon` (wrapping), `Sat,Sun`, `Mon-Wed,Fri`; full names too, any case.
fn parse_days(s: &str) -> Result<u8> {
    let day = |d: &str| {
        Weekday::from_str(d)
            .map_err(|_| anyhow!("{d:?} is not a day: Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
    };
    let mut mask = 0u8;
    for item in s.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(item)?, day(item)?),
        };
        let mut d = from;
        loop {
            mask |= 1 << d.num_days_from_monday();
            if d == to {
                break;
            }
            d = d.succ();
        }
    }
    Ok(mask)
}

/// `HH:MM-HH:MM` as minutes after midnight; the end may be `24:00`.
fn parse_range(s: &str) -> Result<(u32, u32)> {
    let Some((a, b)) = s.split_once('-') else {
        bail!("{s:?} is not a time range: {EXPECTED}");
    };
    let (start, end) = (time_of_day(a, false)?, time_of_day(b, true)?);
    if start == end % 1440 && !(start == 0 && end == 1440) {
        bail!("{s:?} starts when it ends: for a whole day write 00:00-24:00");
    }
    Ok((start, end))
}

/// `H:MM` or `HH:MM`, `00:00` to `23:59` (and `24:00` for an end).
fn time_of_day(s: &str, end: bool) -> Result<u32> {
    let bad = || {
        let upto = if end { "24:00" } else { "23:59" };
        anyhow!("{s:?} is not a time of day: HH:MM, from 00:00 to {upto}")
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (0..=23, 0..=59) => Ok(h * 60 + m),
        (24, 0) if end => Ok(1440),
        _ => Err(bad()),
    }
}

/// Every `--window`: open when any one is, and always open when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows(Vec<Window>);

impl Windows {
    /// Each spec parsed; the error names the spec that does not parse.
    pub fn parse<S: AsRef<str>>(specs: impl IntoIterator<Item = S>) -> Result<Windows> {
        specs
            .into_iter()
            .map(|s| {
                let s = s.as_ref();
                Window::parse(s).map_err(|e| anyhow!("{s:?}: {e:#}"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Windows)
    }

    /// No window: apply any time.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The windows as written.
    pub fn specs(&self) -> Vec<String> {
        self.0.iter().map(|w| w.to_string()).collect()
    }

    /// Applying is allowed at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.is_open(t))
    }

    /// When the windows next go from closed to open after `t` (a whole minute). `None` when
    /// that does not happen in the next two weeks: no windows, or windows always open.
    ///
    /// Found by reading the zones' clocks minute by minute (about 20,000 readings at most, a
    /// few milliseconds), which follows clock changes exactly: windows open and close on whole
    /// minutes of their zone, and every zone in use today is a whole number of minutes from UTC.
    pub fn next_opening(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.0.is_empty() {
            return None;
        }
        let minute = TimeDelta::minutes(1);
        let next = (t.timestamp().div_euclid(60) + 1) * 60;
        let mut m = DateTime::from_timestamp(next, 0)?;
        let mut was_open = self.is_open(m - minute);
        for _ in 0..HORIZON_MINUTES {
            let open = self.is_open(m);
            if open && !was_open {
                return Some(m);
            }
            was_open = open;
            m += minute;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// `YYYY-MM-DD HH:MM` in UTC.
    fn utc(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
    }

    fn w(spec: &str) -> Windows {
        Windows::parse([spec]).unwrap_or_else(|e| panic!("{spec}: {e:#}"))
    }

    // 2026-11-27 is a Friday; 2026-11-28 a Saturday.

    #[test]
    fn open_or_closed_at_a_time() {
        let cases: &[(&str, &str, bool)] = &[
            // A single day.
            ("Sat 02:00-04:00 UTC", "2026-11-28 02:00", true),
            ("Sat 02:00-04:00 UTC", "2026-11-28 03:59", true),
            ("Sat 02:00-04:00 UTC", "2026-11-28 04:00", false),
            ("Sat 02:00-04:00 UTC", "2026-11-28 01:59", false),
            ("Sat 02:00-04:00 UTC", "2026-11-27 03:00", false),
            // Day ranges, lists, wrapping ranges, full names, any case.
            ("Mon-Fri 22:00-23:30 UTC", "2026-11-27 22:10", true),
            ("Mon-Fri 22:00-23:30 UTC", "2026-11-23 22:00", true),
            ("Mon-Fri 22:00-23:30 UTC", "2026-11-28 22:10", false),
            ("Mon-Fri 22:00-23:30 UTC", "2026-11-27 23:30", false),
            ("Sat,Sun 02:00-04:00 UTC", "2026-11-29 02:30", true),
            ("Sat,Sun 02:00-04:00 UTC", "2026-11-30 02:30", false),
            ("Fri-Mon 02:00-04:00 UTC", "2026-11-30 02:30", true),
            ("Fri-Mon 02:00-04:00 UTC", "2026-11-24 02:30", false),
            ("saturday 02:00-04:00 UTC", "2026-11-28 02:30", true),
            // No days: every day.
            ("02:00-04:00 UTC", "2026-11-25 03:00", true),
            ("02:00-04:00 UTC", "2026-11-25 04:00", false),
            // Across midnight: Friday 23:00 to Saturday 01:00.
            ("Fri 23:00-01:00 UTC", "2026-11-27 23:00", true),
            ("Fri 23:00-01:00 UTC", "2026-11-28 00:59", true),
            ("Fri 23:00-01:00 UTC", "2026-11-28 01:00", false),
            ("Fri 23:00-01:00 UTC", "2026-11-27 00:30", false),
            ("Fri 23:00-01:00 UTC", "2026-11-28 23:30", false),
            // To the end of the day, and a whole day.
            ("Sat 22:00-24:00 UTC", "2026-11-28 23:59", true),
            ("Sat 22:00-24:00 UTC", "2026-11-29 00:00", false),
            ("Sun 00:00-24:00 UTC", "2026-11-29 12:00", true),
            // Time zones: 02:00 in Berlin is 01:00 UTC in winter; Kathmandu is UTC+05:45.
            ("Sat 02:00-04:00 Europe/Berlin", "2026-11-28 01:00", true),
            ("Sat 02:00-04:00 Europe/Berlin", "2026-11-28 03:00", false),
            ("Sat 02:00-04:00 Europe/Berlin", "2026-07-04 00:00", true),
            ("Mon 00:00-01:00 Asia/Kathmandu", "2026-11-29 18:15", true),
            ("Mon 00:00-01:00 Asia/Kathmandu", "2026-11-29 18:14", false),
            ("Mon 00:00-01:00 Asia/Kathmandu", "2026-11-30 00:15", false),
        ];
        for (spec, at, want) in cases {
            assert_eq!(w(spec).is_open(utc(at)), *want, "{spec} at {at} UTC");
        }
    }

    #[test]
    fn next_opening_after_a_time() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "Sat 02:00-04:00 UTC",
                "2026-11-27 12:00",
                "2026-11-28 02:00",
            ),
            // While open, the opening after this one.
            (
                "Sat 02:00-04:00 UTC",
                "2026-11-28 02:30",
                "2026-12-05 02:00",
            ),
            (
                "Sat 02:00-04:00 UTC",
                "2026-11-28 04:00",
                "2026-12-05 02:00",
            ),
            (
                "Mon-Fri 22:00-23:30 UTC",
                "2026-11-27 23:30",
                "2026-11-30 22:00",
            ),
            (
                "Fri 23:00-01:00 UTC",
                "2026-11-28 00:30",
                "2026-12-04 23:00",
            ),
            (
                "Fri 23:00-01:00 UTC",
                "2026-11-27 22:59",
                "2026-11-27 23:00",
            ),
            (
                "Sat 02:00-04:00 Europe/Berlin",
                "2026-11-27 12:00",
                "2026-11-28 01:00",
            ),
            (
                "Sat 02:00-04:00 Europe/Berlin",
                "2026-07-01 12:00",
                "2026-07-04 00:00",
            ),
        ];
        for (spec, at, want) in cases {
            assert_eq!(
                w(spec).next_opening(utc(at)),
                Some(utc(want)),
                "{spec} after {at} UTC"
            );
        }
        // Seconds: the next whole minute at the earliest.
        let t = utc("2026-11-27 22:59") + TimeDelta::seconds(30);
        assert_eq!(
            w("Fri 23:00-01:00 UTC").next_opening(t),
            Some(utc("2026-11-27 23:00"))
        );
        // Several windows: the earliest; adjoining ones make one opening.
        let two = Windows::parse(["Sat 02:00-04:00 UTC", "Wed 12:00-13:00 UTC"]).unwrap();
        assert_eq!(
            two.next_opening(utc("2026-11-23 00:00")),
            Some(utc("2026-11-25 12:00"))
        );
        assert!(two.is_open(utc("2026-11-25 12:30")) && two.is_open(utc("2026-11-28 02:30")));
        let adjoining = Windows::parse(["Fri 22:00-24:00 UTC", "Sat 00:00-02:00 UTC"]).unwrap();
        assert_eq!(
            adjoining.next_opening(utc("2026-11-27 23:00")),
            Some(utc("2026-12-04 22:00"))
        );
        // None: no windows (always open), or always open.
        assert!(Windows::default().is_open(utc("2026-11-27 23:00")));
        assert_eq!(
            Windows::default().next_opening(utc("2026-11-27 23:00")),
            None
        );
        assert_eq!(
            w("00:00-24:00 UTC").next_opening(utc("2026-11-27 23:00")),
            None
        );
    }

    #[test]
    fn clock_changes_follow_the_wall_clock() {
        // Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST ->
        // 02:00 CET (01:00 UTC).
        let spring = w("Sun 02:00-04:00 Europe/Berlin");
        assert!(!spring.is_open(utc("2026-03-29 00:59")));
        assert!(spring.is_open(utc("2026-03-29 01:00")));
        assert_eq!(
            spring.next_opening(utc("2026-03-28 12:00")),
            Some(utc("2026-03-29 01:00"))
        );
        // A window inside the skipped hour does not open that night; it does a week later.
        let skipped = w("Sun 02:00-03:00 Europe/Berlin");
        assert!(
            !(0..=120).any(|m| skipped.is_open(utc("2026-03-29 00:00") + TimeDelta::minutes(m)))
        );
        assert_eq!(
            skipped.next_opening(utc("2026-03-28 12:00")),
            Some(utc("2026-04-05 00:00"))
        );
        // The repeated hour is inside the window twice: open for two hours of real time.
        let autumn = w("Sun 02:00-03:00 Europe/Berlin");
        assert!(!autumn.is_open(utc("2026-10-24 23:59")));
        assert!(autumn.is_open(utc("2026-10-25 00:00")));
        assert!(autumn.is_open(utc("2026-10-25 01:30")));
        assert!(!autumn.is_open(utc("2026-10-25 02:00")));
        // A window that the clock re-enters going back opens again then.
        let again = w("Sun 02:00-02:30 Europe/Berlin");
        assert_eq!(
            again.next_opening(utc("2026-10-25 00:15")),
            Some(utc("2026-10-25 01:00"))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "expected [DAYS] HH:MM-HH:MM"),
            ("Sat", "\"Sat\" is not a time range"),
            ("Sat 2-4", "\"2\" is not a time of day"),
            ("Sat 02:00", "is not a time range"),
            ("Sat 25:00-26:00", "\"25:00\" is not a time of day"),
            ("Sat 02:00-04:60", "\"04:60\" is not a time of day"),
            ("Sat 24:00-02:00", "from 00:00 to 23:59"),
            ("Sat 02:00-02:00", "starts when it ends"),
            ("Sat 0200-0400", "is not a time of day"),
            ("Caturday 02:00-04:00", "\"Caturday\" is not a day"),
            ("Mon- 02:00-04:00", "\"\" is not a day"),
            (
                "Sat 02:00-04:00 Mars/Olympus",
                "unknown time zone \"Mars/Olympus\"",
            ),
            ("Sat 02:00-04:00 UTC extra", "expected [DAYS] HH:MM-HH:MM"),
        ];
        for (spec, want) in cases {
            let e = format!("{:#}", Windows::parse([*spec]).unwrap_err());
            assert!(e.starts_with(&format!("{spec:?}: ")), "{spec}: {e}");
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn without_a_zone_the_host_clock() {
        let local = Windows::parse(["Sat 02:00-04:00"]).unwrap();
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 28, 3, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc);
        assert!(local.is_open(t));
        assert!(!local.is_open(t + TimeDelta::hours(1)));
        assert_eq!(local.specs(), ["Sat 02:00-04:00"]);
    }
}
