//! DURATION, the same everywhere in the command line (`--wait`, `lock --ttl`,
//! `lock --wait`, `--keep-key`): a number of seconds (`30`, `0.5`) or a
//! number with a unit (`500ms`, `30s`, `5m`, `2h`, `1d`).

use std::time::Duration;

use statelog::Shown;

/// What DURATION means, for help texts and messages.
pub const HELP: &str = "a number of seconds (30, 0.5) or a number with a unit: ms, s, m, h, d \
(500ms, 30s, 5m)";

/// Parses a DURATION of at most `max`. The error is a usage error (exit 2).
pub fn parse_within(text: &str, max: Duration) -> Result<Duration, String> {
    let shown = Shown::new(text);
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("\"{shown}\" is not a duration: write {HELP}")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{shown}\" is not a duration: write {HELP}"))?;
    let secs = value * scale;
    if !secs.is_finite() || secs > max.as_secs_f64() {
        return Err(format!(
            "{shown} is longer than the longest accepted here ({} s)",
            max.as_secs()
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Parses a DURATION of at most a day.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_within(text, Duration::from_secs(86_400))
}

/// Parses a DURATION of at most a year (how long to keep an idempotency key).
pub fn parse_long(text: &str) -> Result<Duration, String> {
    parse_within(text, Duration::from_secs(366 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_or_a_number_with_a_unit() {
        for (text, ms) in [
            ("30", 30_000),
            ("0.5", 500),
            ("30s", 30_000),
            ("500ms", 500),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1.5m", 90_000),
            ("0", 0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "s", "-1", "5 parsecs", "1e3", "2d", "nan"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
