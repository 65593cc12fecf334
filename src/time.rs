//! UTC timestamps with microsecond resolution.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, UTC, as microseconds since the Unix epoch.
///
/// Commit times are taken from the system clock but never go backwards within a
/// store: a commit is stamped with the later of the clock and the previous commit's
/// time, so log order and time order agree.
///
/// ```
/// use statelog::Timestamp;
/// let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-01-02T03:04:05.000006Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The current time of the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// A timestamp from microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Converts a [`SystemTime`], saturating outside the representable range.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Converts to a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microseconds, e.g. `2026-01-02T03:04:05.000006Z`.
    /// Times before 1970 are shown as the epoch with a negative offset in
    /// microseconds, which cannot occur for commit times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            return write!(f, "1970-01-01T00:00:00Z{}us", self.0);
        }
        write!(
            f,
            "{}",
            humantime::format_rfc3339_micros(self.to_system_time())
        )
    }
}

/// The text given to [`Timestamp::from_str`] is not an RFC 3339 UTC time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError {
    text: String,
}

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an RFC 3339 UTC time such as 2026-01-02T03:04:05Z",
            self.text
        )
    }
}

impl std::error::Error for ParseTimestampError {}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses RFC 3339 in UTC (`Z`), with or without fractional seconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339(s)
            .map(Timestamp::from_system_time)
            .map_err(|_| ParseTimestampError { text: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for micros in [0, 1, 1_767_322_245_000_006, 4_102_444_800_000_000] {
            let t = Timestamp::from_micros(micros);
            let back: Timestamp = t.to_string().parse().unwrap();
            assert_eq!(back, t, "{t}");
        }
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert!("2026-01-02T03:04:05+02:00".parse::<Timestamp>().is_err());
    }

    #[test]
    fn system_time_round_trip() {
        let t = Timestamp::from_micros(-5);
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        let now = Timestamp::now();
        assert!(now > Timestamp::EPOCH);
    }
}
