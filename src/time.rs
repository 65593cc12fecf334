//! UTC timestamps with microsecond resolution, and where commit times come
//! from.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, UTC, as microseconds since the Unix epoch, between
/// [`Timestamp::MIN`] (the epoch) and [`Timestamp::MAX`] (the last microsecond
/// of the year 9999): the range RFC 3339 text can show. Every timestamp is in
/// that range, so every one reads back from its own text; a time outside it
/// becomes the nearest end.
///
/// Commit times are taken from the system clock but always rise within a
/// store: a commit is stamped with the later of the clock and the previous
/// commit's time plus one microsecond, so log order and time order agree and
/// no two commits share a time (until the end of the range).
///
/// ```
/// use statelog::Timestamp;
/// let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-01-02T03:04:05.000006Z");
/// assert_eq!(Timestamp::from_micros(-5), Timestamp::MIN);
/// assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The earliest timestamp: the Unix epoch, 1970-01-01T00:00:00Z.
    pub const MIN: Timestamp = Timestamp(0);

    /// The latest timestamp: 9999-12-31T23:59:59.999999Z, the last microsecond
    /// RFC 3339 writes with a four-digit year.
    pub const MAX: Timestamp = Timestamp(253_402_300_800_000_000 - 1);

    /// The current time of the system clock (within the range).
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// A timestamp from microseconds since the Unix epoch; outside the range,
    /// the nearest end ([`MIN`](Self::MIN) or [`MAX`](Self::MAX)).
    pub const fn from_micros(micros: i64) -> Timestamp {
        if micros < Timestamp::MIN.0 {
            Timestamp::MIN
        } else if micros > Timestamp::MAX.0 {
            Timestamp::MAX
        } else {
            Timestamp(micros)
        }
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Converts a [`SystemTime`]; a time before 1970 or after 9999 becomes the
    /// nearest end of the range.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(_) => Timestamp::MIN,
        }
    }

    /// Converts to a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        // Never negative: every timestamp is at or after the epoch.
        UNIX_EPOCH + Duration::from_micros(self.0.unsigned_abs())
    }

    /// The time of a commit that follows one at `previous`, when the clock
    /// says `clock`: the later of the clock and one microsecond after
    /// `previous`. Times therefore rise with every commit: a clock set back
    /// (or one that jumped ahead and returned) does not make a commit look
    /// older than its predecessor, and after such a jump commits still get
    /// distinct times, in order, so a point in time selects an exact prefix of
    /// the log. Only at [`MAX`](Self::MAX) do times stop rising.
    pub(crate) fn for_commit_after(previous: Timestamp, clock: Timestamp) -> Timestamp {
        let next = Timestamp::from_micros(previous.0.saturating_add(1));
        clock.max(next)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microseconds, e.g. `2026-01-02T03:04:05.000006Z`:
    /// what [`Timestamp::from_str`] reads back, for every timestamp.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            "{} is not an RFC 3339 UTC time from 1970 to 9999, such as 2026-01-02T03:04:05Z",
            crate::error::quote(&self.text)
        )
    }
}

impl std::error::Error for ParseTimestampError {}

/// Where a store's commit times come from: the system clock, or in tests a
/// function standing in for it (a clock before 1970, one that jumps).
#[derive(Clone, Default)]
pub(crate) struct Clock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl Clock {
    /// A clock that tells the time `now` returns.
    #[cfg(feature = "testkit")]
    pub(crate) fn fake(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(now)))
    }

    /// The time now, within the range of a timestamp.
    pub(crate) fn now(&self) -> Timestamp {
        match &self.0 {
            None => Timestamp::now(),
            Some(now) => Timestamp::from_system_time(now()),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(fake)"
        } else {
            "Clock(system)"
        })
    }
}

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
        let t = Timestamp::from_micros(1_767_322_245_000_006);
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        let now = Timestamp::now();
        assert!(now > Timestamp::EPOCH);
    }

    #[test]
    fn times_outside_the_range_become_its_ends() {
        assert_eq!(Timestamp::from_micros(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::from_micros(i64::MAX), Timestamp::MAX);
        let before_1970 = UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
        assert_eq!(Timestamp::from_system_time(before_1970), Timestamp::MIN);
        let year_10000 = UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400);
        assert_eq!(Timestamp::from_system_time(year_10000), Timestamp::MAX);
        for t in [Timestamp::MIN, Timestamp::MAX] {
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
    }

    #[test]
    fn commit_times_rise_by_at_least_a_microsecond() {
        let t = Timestamp::from_micros(1_000);
        assert_eq!(
            Timestamp::for_commit_after(t, Timestamp::from_micros(5)),
            Timestamp::from_micros(1_001)
        );
        assert_eq!(
            Timestamp::for_commit_after(t, Timestamp::from_micros(9_000)),
            Timestamp::from_micros(9_000)
        );
        assert_eq!(
            Timestamp::for_commit_after(Timestamp::MAX, Timestamp::MIN),
            Timestamp::MAX
        );
    }
}
