//! A snapshot loaded into an empty store as its first commit: one base commit
//! at the snapshot's revision, keeping every record's metadata.

use super::Engine;
use super::batch::{Resolved, ResolvedKind, encode_parts};
use crate::access::request::{BaseLoad, BaseRecord};
use crate::counter;
use crate::db::schema::Applied;
use crate::db::write::Records;
use crate::error::{Error, KeyPart, Result, Shown};
use crate::key;

impl Engine {
    /// Loads a snapshot into an empty store as one base commit at its
    /// revision, keeping every record's metadata. Returns the revision.
    pub(crate) fn restore_base(&mut self, load: &BaseLoad) -> Result<u64> {
        self.check_writable()?;
        if self.applied.revision != 0 {
            return Err(Error::NotEmpty {
                revision: self.applied.revision,
            });
        }
        let revision = load.revision;
        check_revision(revision)?;
        let ops = load
            .records
            .iter()
            .map(|record| resolve(record, revision))
            .collect::<Result<Vec<_>>>()?;
        let mut frames = Vec::new();
        let synced = self.log.synced_revision();
        encode_parts(&ops, revision, load.time, true, synced, &mut frames)?;
        self.fold()?;
        self.check_writable()?;
        let mut batch = self.db.begin_batch("begin a restore")?;
        batch.records(&mut self.scratch, |records| {
            if !records.is_empty()? {
                return Err(Error::NotEmpty { revision: 0 });
            }
            apply(records, &ops)?;
            records.committed(revision, load.time, true)
        })?;
        let result = (|| {
            // The log takes the whole base in one step that a crash cannot
            // split (see `LogWriter::restart_with`): until then the store is
            // empty; from then on recovery replays the base.
            let position = self.log.restart_with(revision, &frames)?;
            let applied = Applied {
                revision,
                position,
                time: load.time,
            };
            batch.set_applied(&applied)?;
            batch.commit("apply the restored records")?;
            self.applied = applied;
            self.since_checkpoint.commits += 1;
            self.since_checkpoint.bytes += frames.len() as u64;
            Ok(())
        })();
        if let Err(e) = result {
            return Err(self.failed(e));
        }
        self.publish()?;
        self.history_from = revision;
        self.watchers.publish(revision, revision, &frames);
        self.checkpoint()?;
        Ok(revision)
    }
}

/// A restored store's revision: at least 1, and low enough to count on from.
fn check_revision(revision: u64) -> Result<()> {
    if revision == 0 {
        return Err(Error::InvalidOption {
            name: "revision",
            reason: "a restored store's revision must be at least 1".to_owned(),
        });
    }
    if let Some(why) = counter::check_imported("the revision", revision) {
        return Err(Error::InvalidOption {
            name: "revision",
            reason: why,
        });
    }
    Ok(())
}

/// A record of the base as a write: its metadata must fit a store at
/// `revision`.
fn resolve(record: &BaseRecord, revision: u64) -> Result<Resolved<'_>> {
    let (namespace, key) = key::decode(&record.address).ok_or_else(|| Error::InvalidKey {
        part: KeyPart::Key,
        value: String::from_utf8_lossy(&record.address).into_owned(),
        reason: "not a valid address".to_owned(),
    })?;
    let m = &record.meta;
    let shown = || format!("{}/{}", Shown::new(namespace), Shown::new(key));
    if m.version == 0
        || m.create_revision == 0
        || m.create_revision > m.mod_revision
        || m.mod_revision > revision
    {
        return Err(Error::InvalidOption {
            name: "records",
            reason: format!(
                "{} has version {} and revisions created {} / modified {}, \
                 which do not fit a store at revision {revision}",
                shown(),
                m.version,
                m.create_revision,
                m.mod_revision
            ),
        });
    }
    if let Some(why) = counter::check_imported("the version", m.version) {
        return Err(Error::InvalidOption {
            name: "records",
            reason: format!("{}: {why}", shown()),
        });
    }
    Ok(Resolved {
        address: &record.address,
        namespace,
        key,
        kind: ResolvedKind::Put {
            meta: *m,
            value: &record.value,
        },
    })
}

fn apply(records: &mut Records<'_, '_>, ops: &[Resolved<'_>]) -> Result<()> {
    for op in ops {
        match &op.kind {
            ResolvedKind::Put { meta, value } => {
                records.put(op.address, meta, value)?;
            }
            ResolvedKind::Delete { .. } => {
                records.remove(op.address)?;
            }
        }
    }
    Ok(())
}
