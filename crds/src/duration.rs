//! Durations in Go's `time.ParseDuration` format, which Kubernetes users know from every other
//! API: `30m`, `1h30m`, `1.5h`, `90s`, `500ms`.

use std::time::Duration;

use thiserror::Error;

/// Why a duration did not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error("duration {0:?} is not of the form 30m, 1h30m or 90s")]
    Invalid(String),
    #[error("duration {0:?} has an unknown unit {1:?}; use ns, us, ms, s, m or h")]
    Unit(String, String),
    #[error("duration {0:?} is negative")]
    Negative(String),
}

/// Parse a Go duration. A negative duration is an error: nothing in Kiln waits a negative time.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let mut rest = match text.strip_prefix('-') {
        Some(r)
            if r.trim_start_matches(['0', '.'])
                .chars()
                .any(|c| c.is_ascii_digit()) =>
        {
            return Err(DurationError::Negative(text.to_string()));
        }
        Some(r) => r,
        None => text.strip_prefix('+').unwrap_or(text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(invalid()),
            other => return Err(DurationError::Unit(text.to_string(), other.to_string())),
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Format a duration the way `kubectl` shows ages: `45s`, `3m12s`, `1h2m`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("-0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(parse("30"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse("m"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse("1..5s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse("3d"), Err(DurationError::Unit(_, u)) if u == "d"));
        assert!(matches!(parse("-5m"), Err(DurationError::Negative(_))));
        assert!(matches!(parse("5 m"), Err(DurationError::Unit(..))));
    }

    #[test]
    fn formats_like_kubectl() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(192)), "3m12s");
        assert_eq!(human(Duration::from_secs(3720)), "1h2m");
    }
}
