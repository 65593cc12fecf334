//! Backups of a store on etcd (feature `etcd`): one consistent read of every record at one
//! revision, written as the base of an ordinary backup directory (the
//! layout of "Backups, restore, check and repair" in DESIGN.md: a base
//! segment and a `MANIFEST`, no log). `backup::restore` turns it into a local
//! store as it is, versions and revisions included; restoring into etcd loads
//! it as a merge import would (`etcd/restore.rs`).
//!
//! etcd keeps no statelog log to copy, so every run is a full one: a run into
//! an earlier backup of the same store writes a new base, switches the
//! manifest to it, and then removes the old base.

use std::path::Path;
use std::time::{Duration, Instant};

use super::manifest::{self, BaseEntry, LOCK_FILE, Manifest, invalid};
use super::run::{create_destination, read_destination, remove_leftovers, sync_dir};
use crate::access::ReadView;
use crate::access::{BackupOptions, BackupProgress, BackupReport};
use crate::error::{Error, Result};
use crate::etcd::EtcdStore;
use crate::etcd::view::EtcdView;
use crate::fs::Fs;
use crate::key;
use crate::log::archive::{self, BaseWriter};
use crate::time::Timestamp;

/// A backup run of `store` (id `store_hex`) into `dest`.
pub(crate) fn run(
    store: &EtcdStore,
    store_hex: &str,
    fs: &dyn Fs,
    lock_timeout: Duration,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupReport> {
    let started = Instant::now();
    let store_id = crate::log::catalog::parse_hex(store_hex).ok_or_else(|| Error::NotAStore {
        path: store.label(),
        reason: format!(
            "its identity names the store id {store_hex:?}, which is not 32 hex digits"
        ),
    })?;
    create_destination(fs, dest)?;
    let _dest_lock = crate::layout::lock_dir(fs, dest, LOCK_FILE, lock_timeout)?;
    let existing = read_destination(fs, dest, store_hex)?;
    if let Some(m) = &existing
        && !m.segments.is_empty()
    {
        return Err(invalid(
            dest,
            "it holds log segments, which no backup of a store on etcd has; back up into a new \
             directory",
        ));
    }
    if existing.is_none() {
        remove_leftovers(fs, dest)?;
    }

    // The consistent point: one etcd revision for every page.
    let head = store.head()?;
    let view = std::sync::Arc::new(EtcdView::new(store.clone(), head));
    let now = Timestamp::now();
    let mut manifest = existing
        .clone()
        .unwrap_or_else(|| Manifest::new(store_hex.to_owned(), now));
    let old_base = manifest.base.clone();
    let mut written = None;
    let same = old_base.as_ref().map(|b| b.revision) == Some(head.revision);
    if head.revision > 0 && !same {
        let name = manifest::base_file_name(head.revision);
        let path = dest.join(&name);
        let result = write_base(
            fs,
            &view,
            &path,
            &store_id,
            head.revision,
            head.time,
            options,
        );
        let base = match result {
            Ok(base) => base,
            Err(e) => {
                let _ = archive::take_back(fs, &path, None);
                return Err(e);
            }
        };
        if archive::crc_prefix(fs, &path, base.bytes)? != base.crc32 {
            let _ = archive::take_back(fs, &path, None);
            return Err(invalid(
                &path,
                "the base reads back differently from what was written: check the backup disk",
            ));
        }
        sync_dir(fs, dest)?;
        manifest.base = Some(BaseEntry {
            file: name,
            revision: head.revision,
            time: head.time.to_string(),
            records: base.records,
            bytes: base.bytes,
            crc32: base.crc32,
        });
        written = Some(base);
    }
    manifest.last_revision = head.revision;
    manifest.last_time = head.time.to_string();
    manifest.updated_at = Timestamp::now().to_string();
    manifest.runs += 1;
    if let Err(e) = manifest.write(fs, dest) {
        if let Some(entry) = &manifest.base
            && written.is_some()
            && !Manifest::read_with(fs, dest).is_ok_and(|on_disk| on_disk == manifest)
        {
            let _ = archive::take_back(fs, &dest.join(&entry.file), None);
        }
        return Err(e);
    }
    // The manifest names the new base now: the old one goes.
    if let Some(old) = old_base
        && written.is_some()
        && let Err(e) = archive::take_back(fs, &dest.join(&old.file), None)
    {
        tracing::warn!(
            file = %old.file,
            error = %e,
            "the backup is complete, but its previous base could not be removed; no manifest \
             lists it any more, and it can be deleted"
        );
    }
    Ok(BackupReport {
        destination: dest.to_owned(),
        store_id: store_hex.to_owned(),
        full: true,
        base_revision: manifest.base_revision(),
        revision: head.revision,
        time: head.time,
        base_records: written.map_or(0, |w| w.records),
        base_bytes: written.map_or(0, |w| w.bytes),
        segments_copied: 0,
        bytes_copied: written.map_or(0, |w| w.bytes),
        log_bytes_copied: 0,
        backup_bytes: manifest.bytes(),
        duration: started.elapsed(),
    })
}

/// Writes every record the view shows as the base at `revision`.
fn write_base(
    fs: &dyn Fs,
    view: &std::sync::Arc<EtcdView>,
    path: &Path,
    store_id: &crate::log::segment::StoreId,
    revision: u64,
    time: Timestamp,
    options: &BackupOptions,
) -> Result<archive::BaseWritten> {
    let mut writer = BaseWriter::create(fs, path, store_id, revision, time.as_micros())?;
    let mut count = 0u64;
    let progress = |records: u64| {
        if let Some(callback) = &options.progress {
            callback(&BackupProgress {
                records,
                bytes_copied: 0,
                bytes_to_copy: 0,
            });
        }
    };
    let entries = std::sync::Arc::clone(view)
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?;
    for entry in entries {
        let entry = entry?;
        let (namespace, key_text) = key::decode(&entry.address).ok_or_else(|| {
            crate::etcd::record::foreign(&String::from_utf8_lossy(&entry.address), "")
        })?;
        writer.put(archive::base_put(
            namespace,
            key_text,
            entry.meta.version,
            entry.meta.create_revision,
            entry.meta.mod_revision,
            entry.meta.updated_at.as_micros(),
            &entry.value,
        ))?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress(count);
        }
    }
    progress(count);
    writer.finish()
}
