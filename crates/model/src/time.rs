//! Calendar dates and durations: the one implementation every crate uses.
//!
//! Dates are the proleptic Gregorian calendar in UTC (Howard Hinnant's
//! `days_from_civil` / `civil_from_days`). Durations have one grammar
//! everywhere, settings, flags, API parameters and policy TTLs alike: a bare
//! number is seconds (`15`, `0.5`), otherwise one or more number-unit pairs
//! (`1h30m`, `250ms`, `1.5s`) with units `ns`, `us` (or `µs`), `ms`, `s`,
//! `m`, `h`, `d`, `w`, `y` (365 days). Negative durations do not parse.

use std::time::Duration;

/// Days since 1970-01-01 of the date `y`-`m`-`d`.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day 1-31) `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds, in UTC.
pub fn datetime_text(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Parses a duration (see the module's grammar).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            "y" => 365.0 * 86_400.0,
            _ => return None,
        };
        total += n * unit_secs;
        rest = &rest[unit_len..];
    }
    // Whole milliseconds and coarser stay exact.
    let d = Duration::try_from_secs_f64(total).ok()?;
    let ms = d.as_secs_f64() * 1e3;
    if (ms - ms.round()).abs() < 1e-6 && ms >= 1.0 {
        return Some(Duration::from_millis(ms.round() as u64));
    }
    Some(d)
}

/// [`parse_duration`] in nanoseconds, saturating at `i64::MAX`.
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    parse_duration(s).map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// [`parse_duration`] in milliseconds, saturating at `i64::MAX`.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    parse_duration(s).map(|d| d.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_over_four_centuries() {
        for days in (-146_097 * 2..146_097 * 2).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(datetime_text(1_700_000_000), "2023-11-14T22:13:20");
    }

    #[test]
    fn one_duration_grammar() {
        let p = parse_duration;
        assert_eq!(p("15"), Some(Duration::from_secs(15)));
        assert_eq!(p("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(p("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(p("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(p("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(p("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(p("100us"), Some(Duration::from_micros(100)));
        assert_eq!(p("100µs"), Some(Duration::from_micros(100)));
        assert_eq!(p("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(p("1y"), Some(Duration::from_secs(365 * 86_400)));
        for bad in ["", "x", "-1s", "s", "1x", "1h-5m", "1..5s"] {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
    }
}
