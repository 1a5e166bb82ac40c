//! Compose durations: parsed from Go's `time.ParseDuration` syntax (`1m30s`, `500ms`, `1.5h`)
//! and printed as Go's `Duration.String()` does, because that is how `docker compose config`
//! prints them (`90s` becomes `1m30s`).

use std::time::Duration;

/// Parses `1h2m3.5s`, `500ms`, `10us`, `0`; a bare integer is taken as seconds (Compose
/// accepts numbers where a duration is expected).
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * nanos_per;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

/// Go's `Duration.String()`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (div, unit) = if nanos < 1_000 {
            (1u128, "ns")
        } else if nanos < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", frac(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s_nanos = nanos - (h * 3600 + m * 60) * 1_000_000_000;
    let secs = frac(s_nanos, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `n / div` with the fractional digits Go prints (trailing zeros dropped).
fn frac(n: u128, div: u128) -> String {
    let whole = n / div;
    let rem = n % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Normalises a duration string; unparseable input is returned unchanged (validation reports it).
pub fn normalise(s: &str) -> String {
    parse(s).map(format).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formatting() {
        for (i, o) in [
            ("90s", "1m30s"),
            ("1m30s", "1m30s"),
            ("1h", "1h0m0s"),
            ("10s", "10s"),
            ("1.5s", "1.5s"),
            ("500ms", "500ms"),
            ("0s", "0s"),
            ("2h3m", "2h3m0s"),
            ("1500ms", "1.5s"),
            ("100us", "100µs"),
        ] {
            assert_eq!(normalise(i), o, "{i}");
        }
    }
}
