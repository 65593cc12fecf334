//! Revisions and versions: how high they go, and the one way they advance.
//!
//! Both are `u64` on disk, but a store never lets either pass
//! [`MAX_REVISION`] (2^63 − 1): a commit that would is refused with
//! [`Error::Exhausted`](crate::Error::Exhausted), never wrapped to 0 (which
//! would make `--if-version 0`, "must not exist", match an existing record,
//! and make the log look damaged). What comes from outside (a snapshot,
//! [`Store::restore_records`](crate::Store::restore_records)) starts a counter
//! at most at [`MAX_IMPORTED_REVISION`], leaving at least 2^62 commits to go;
//! and a log record or segment header beyond the ceiling is damage.

/// The highest revision a store reaches: 2^63 − 1, so that revisions fit a
/// signed 64-bit integer in every tool that reads them.
pub const MAX_REVISION: u64 = i64::MAX as u64;

/// The highest version a record reaches: the same as [`MAX_REVISION`].
pub const MAX_VERSION: u64 = MAX_REVISION;

/// The highest revision, and the highest version, that an import or
/// [`Store::restore_records`](crate::Store::restore_records) accepts: 2^62.
/// From there, more than 2^62 commits remain before any counter is exhausted
/// (146,000 years at a million commits a second).
pub const MAX_IMPORTED_REVISION: u64 = 1 << 62;

/// The counter after `current`, or `None` when `current` is at the ceiling
/// (or beyond it, which only damage can produce).
pub(crate) fn next(current: u64) -> Option<u64> {
    current.checked_add(1).filter(|n| *n <= MAX_REVISION)
}

/// Says why an imported counter is refused, or `None` if it is within
/// [`MAX_IMPORTED_REVISION`]. `what` names the field.
pub(crate) fn check_imported(what: &str, value: u64) -> Option<String> {
    (value > MAX_IMPORTED_REVISION).then(|| {
        format!(
            "{what} is {value}, above the highest an import accepts ({MAX_IMPORTED_REVISION}, \
             2^62), which leaves a store room to count on; no statelog store gets that far, so \
             the number was written or edited by hand: correct it"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_stop_at_the_ceiling() {
        assert_eq!(next(0), Some(1));
        assert_eq!(next(MAX_REVISION - 1), Some(MAX_REVISION));
        assert_eq!(next(MAX_REVISION), None);
        assert_eq!(next(u64::MAX), None);
        assert!(check_imported("\"revision\"", MAX_IMPORTED_REVISION).is_none());
        let why = check_imported("\"revision\"", u64::MAX).unwrap();
        assert!(why.contains("18446744073709551615"), "{why}");
    }
}
