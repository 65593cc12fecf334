//! Commit times, whatever the clock does: every time the store records is a
//! timestamp its own parser and importer read back (a clock before 1970 once
//! gave `1970-01-01T00:00:00Z-315619199148410us`, which no import took), and
//! times rise with every commit, so a clock that jumped ahead and came back
//! does not give later commits one frozen time: a point in time still selects
//! an exact prefix of the history.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use statelog::backup::{self, RestoreOptions, Until};
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::testkit::RealFs;
use statelog::testkit::log_reader::read_log;
use statelog::{Options, Store, Timestamp};

const DAY: i64 = 86_400;

/// A clock the test sets: seconds from the real time now (negative: earlier).
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(0)))
    }

    /// Moves the clock to `seconds` from the real time.
    fn set(&self, seconds: i64) {
        self.0.store(seconds, Ordering::SeqCst);
    }

    fn options(&self) -> Options {
        let offset = Arc::clone(&self.0);
        Options::default().clock(move || {
            let seconds = offset.load(Ordering::SeqCst);
            let shift = Duration::from_secs(seconds.unsigned_abs());
            let now = SystemTime::now();
            let moved = if seconds >= 0 {
                now.checked_add(shift)
            } else {
                now.checked_sub(shift)
            };
            moved.expect("the test's clock stays within what SystemTime holds")
        })
    }
}

/// Seconds from now to `year`-01-01, roughly (a year as 365.25 days).
fn years_from_now(year: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (year - 1970) * 36_525 * DAY / 100 - now.as_secs() as i64
}

/// The commit times in the log, in revision order; each also reads back
/// from its text.
fn logged_times(store_dir: &std::path::Path) -> Vec<Timestamp> {
    let log = read_log(&RealFs, store_dir).unwrap();
    log.commits
        .iter()
        .map(|c| {
            let t = Timestamp::from_micros(c.time);
            assert_eq!(t.as_micros(), c.time, "the log holds a time out of range");
            let text = t.to_string();
            assert_eq!(text.parse::<Timestamp>().unwrap(), t, "{text}");
            t
        })
        .collect()
}

/// Exports `store` in every format and restores each export into a new store,
/// which must re-export the same bytes.
fn exports_restore(store: &Store) {
    for format in [Format::Json, Format::JsonLines, Format::Markdown] {
        let mut text = Vec::new();
        snapshot::export(store, &mut text, &ExportOptions::new(format)).unwrap();
        let dir = common::store_dir();
        let copy = common::open(dir.path());
        let report = snapshot::import(
            &copy,
            text.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap_or_else(|e| panic!("{format:?}: {e}\n{}", String::from_utf8_lossy(&text)));
        assert!(report.applied);
        let mut again = Vec::new();
        snapshot::export(&copy, &mut again, &ExportOptions::new(format)).unwrap();
        assert_eq!(text, again, "{format:?}");
        copy.close().unwrap();
    }
}

#[test]
fn commit_times_are_valid_and_rise_whatever_the_clock_does() {
    let dir = common::store_dir();
    let backup_dir = common::store_dir();
    let clock = Clock::new();
    let store = common::open_with(dir.path(), clock.options());
    store.backup(backup_dir.path()).unwrap();
    let mut commit = |n: i64| store.put("jobs", &format!("j{n}"), &n).unwrap().revision;
    // Before 1970: in 1960, and by far more than a timestamp can hold.
    clock.set(years_from_now(1960));
    commit(1);
    clock.set(i64::MIN / 2);
    commit(2);
    clock.set(0);
    commit(3);
    // A jump ahead to 2100, and back: the commits after it keep rising.
    clock.set(years_from_now(2100));
    commit(4);
    commit(5);
    clock.set(0);
    let after_return: Vec<u64> = (6..=9).map(&mut commit).collect();
    store.backup(backup_dir.path()).unwrap();

    let times = logged_times(dir.path());
    assert_eq!(times.len(), 9);
    for pair in times.windows(2) {
        assert!(
            pair[0] < pair[1],
            "times do not rise: {} then {}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        times[3] >= "2099-12-01T00:00:00Z".parse().unwrap(),
        "{}",
        times[3]
    );
    // Each record's update time is its commit's.
    for (n, t) in (1..=9).zip(&times) {
        let record = store.get_raw("jobs", &format!("j{n}")).unwrap().unwrap();
        assert_eq!(record.updated_at, *t);
    }
    exports_restore(&store);

    // A point in time after the jump selects exactly the commits before it.
    for (i, revision) in after_return.iter().enumerate() {
        let t = times[5 + i];
        let scratch = common::store_dir();
        let report = backup::restore(
            backup_dir.path(),
            scratch.path().join("restored"),
            &RestoreOptions::new().until(Until::Time(t)),
        )
        .unwrap();
        assert_eq!(report.revision, revision - 1, "until {t}");
    }
    store.close().unwrap();

    // A clock past the year 9999: commits get the last time there is, which
    // still reads back and restores.
    let dir = common::store_dir();
    let clock = Clock::new();
    let store = common::open_with(dir.path(), clock.options());
    clock.set(years_from_now(12_000));
    for n in 0..3 {
        store.put("jobs", &format!("late{n}"), &n).unwrap();
    }
    clock.set(i64::MAX / 4);
    store.put("jobs", "later", &9).unwrap();
    let times = logged_times(dir.path());
    assert!(times.iter().all(|t| *t == Timestamp::MAX), "{times:?}");
    assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
    exports_restore(&store);
    store.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every timestamp's text reads back as the same timestamp, over the
    /// whole range and beyond it (which becomes the nearest end).
    #[test]
    fn every_timestamp_reads_back_from_its_text(
        micros in prop_oneof![
            any::<i64>(),
            Timestamp::MIN.as_micros()..=Timestamp::MAX.as_micros(),
            Just(Timestamp::MIN.as_micros()),
            Just(Timestamp::MAX.as_micros()),
            Just(-1i64),
            Just(Timestamp::MAX.as_micros() + 1),
        ]
    ) {
        let t = Timestamp::from_micros(micros);
        prop_assert!(Timestamp::MIN <= t && t <= Timestamp::MAX);
        if (Timestamp::MIN.as_micros()..=Timestamp::MAX.as_micros()).contains(&micros) {
            prop_assert_eq!(t.as_micros(), micros);
        }
        let text = t.to_string();
        prop_assert_eq!(text.len(), 27, "{}", text);
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        prop_assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
    }
}
