//! Log retention: removing the oldest sealed segments the store no longer needs.
//!
//! IMPORTANT: only a prefix of the log is ever removed, oldest segment first,
//! each removal synced before the next, so what remains (also after a crash in
//! the middle) is one unbroken run of segments whose back-links hold; the first
//! remaining segment's header then names a removed one, which the catalog
//! accepts for the first segment only. The checkpoint's segment and every later
//! one always stay, and so does every segment a running backup is copying.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::archive;
use super::catalog::{self, SegmentInfo};
use super::segment::StoreId;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::options::RetentionPolicy;
use crate::time::Timestamp;

/// What must stay whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep {
    /// The segment of the last checkpoint (by first revision): it and every later
    /// segment stay.
    pub checkpoint_segment: u64,
    /// The last revision a backup copied, if any backup was taken.
    pub backed_up: Option<u64>,
    /// A backup is copying from this segment on.
    pub pinned: Option<u64>,
}

/// A segment retention removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    pub path: PathBuf,
    pub first_revision: u64,
    pub bytes: u64,
}

/// What one run of the policy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub removed: Vec<Removed>,
    /// Segments the limits would have removed, kept because the last backup has
    /// not copied them yet.
    pub held_for_backup: usize,
}

/// Applies `policy` to the log in `dir`.
///
/// # Errors
/// `Corrupt` when the segment headers do not check out (nothing is removed);
/// `Io`.
pub(crate) fn apply(
    fs: &dyn Fs,
    dir: &Path,
    store_id: &StoreId,
    policy: &RetentionPolicy,
    keep: Keep,
    now: Timestamp,
) -> Result<Outcome> {
    let segments = catalog::list(fs, dir, store_id)?;
    // Sealed segments wholly behind the checkpoint and not being copied.
    let mut behind = 0;
    for (i, seg) in segments.iter().enumerate() {
        if i + 1 >= segments.len()
            || seg.first_revision >= keep.checkpoint_segment
            || keep.pinned.is_some_and(|pin| seg.first_revision >= pin)
        {
            break;
        }
        behind = i + 1;
    }
    let wanted = removals_wanted(fs, &segments, behind, policy, now)?;
    // Segments holding revisions the last backup did not copy stay.
    let mut allowed = wanted;
    if policy.keep_until_backed_up
        && let Some(backed_up) = keep.backed_up
    {
        allowed = segments
            .iter()
            .zip(segments.iter().skip(1))
            .take(wanted)
            .take_while(|(_, next)| next.first_revision - 1 <= backed_up)
            .count();
    }
    let mut outcome = Outcome {
        removed: Vec::new(),
        held_for_backup: wanted - allowed,
    };
    for seg in segments.iter().take(allowed) {
        fs.remove_file(&seg.path)
            .map_err(|e| Error::io("remove the old log segment", &seg.path, e))?;
        // IMPORTANT: one removal at a time is made durable, so a crash can only
        // leave a shorter prefix removed, never a gap.
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync the log directory", dir, e))?;
        outcome.removed.push(Removed {
            path: seg.path.clone(),
            first_revision: seg.first_revision,
            bytes: seg.len,
        });
    }
    if !outcome.removed.is_empty() {
        tracing::debug!(
            removed = outcome.removed.len(),
            "removed old log segments behind the checkpoint"
        );
    }
    if outcome.held_for_backup > 0 {
        tracing::info!(
            held = outcome.held_for_backup,
            "kept old log segments beyond the retention policy because the last backup has not \
             copied them; the next backup releases them"
        );
    }
    Ok(outcome)
}

/// How many of the oldest of the first `behind` segments the limits remove:
/// counting from the newest of them back, everything from the first one that
/// breaks a limit.
fn removals_wanted(
    fs: &dyn Fs,
    segments: &[SegmentInfo],
    behind: usize,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<usize> {
    let mut bytes = 0u64;
    for (kept, i) in (0..behind).rev().enumerate() {
        let count = kept + 1;
        bytes += segments[i].len;
        let mut over = policy.max_segments.is_some_and(|max| count > max)
            || policy.max_bytes.is_some_and(|max| bytes > max);
        if !over
            && let Some(max_age) = policy.max_age
            && let Some(next) = segments.get(i + 1)
            && let Some(sealed) = archive::first_commit_time(fs, &next.path, next.len)?
        {
            let age = now.as_micros().saturating_sub(sealed);
            over = Duration::from_micros(u64::try_from(age).unwrap_or(0)) > max_age;
        }
        if over {
            return Ok(i + 1);
        }
    }
    Ok(0)
}
