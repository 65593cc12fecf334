//! What adapters export from: a header and, per namespace, a stream of
//! [`SnapshotRecord`]s that can be read more than once (the Markdown adapter
//! reads each namespace three times). Only this file knows the engine's
//! [`Snapshot`].

use std::collections::BTreeMap;

use super::{ExportOptions, Header, SnapshotRecord};
use crate::error::{KeyPart, Result};
use crate::key;
use crate::store::{KeyRange, Snapshot};

/// Records of one namespace, in key order.
pub(crate) type Records<'a> = Box<dyn Iterator<Item = Result<SnapshotRecord>> + 'a>;

/// A snapshot to export.
pub(crate) trait Source {
    /// The snapshot's header.
    fn header(&self) -> Header;
    /// The namespaces to export, in order. Some may have no record in scope.
    fn namespaces(&self) -> Result<Vec<String>>;
    /// The records of a namespace in scope, in key order; a fresh stream each
    /// time.
    fn records(&self, namespace: &str) -> Result<Records<'_>>;
}

/// One MVCC snapshot of the store, narrowed to the export's scope.
pub(crate) struct SnapshotSource<'s> {
    snapshot: &'s Snapshot,
    header: Header,
    namespaces: Option<Vec<String>>,
    key_prefix: Option<String>,
}

impl<'s> SnapshotSource<'s> {
    pub(crate) fn new(snapshot: &'s Snapshot, options: &ExportOptions) -> Result<Self> {
        let namespaces = match &options.namespaces {
            Some(list) => {
                for ns in list {
                    key::validate(KeyPart::Namespace, ns)?;
                }
                let mut list = list.clone();
                list.sort();
                list.dedup();
                Some(list)
            }
            None => None,
        };
        Ok(SnapshotSource {
            snapshot,
            header: Header {
                revision: snapshot.revision()?,
                time: snapshot.time()?,
            },
            namespaces,
            key_prefix: options.key_prefix.clone(),
        })
    }
}

impl Source for SnapshotSource<'_> {
    fn header(&self) -> Header {
        self.header
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        match &self.namespaces {
            Some(list) => Ok(list.clone()),
            None => self.snapshot.namespaces(),
        }
    }

    fn records(&self, namespace: &str) -> Result<Records<'_>> {
        let range = match &self.key_prefix {
            Some(prefix) => KeyRange::prefix(prefix.clone()),
            None => KeyRange::all(),
        };
        let namespace = namespace.to_owned();
        let list = self.snapshot.list_raw(&namespace, range)?;
        Ok(Box::new(list.map(move |item| {
            item.map(|(key, record)| SnapshotRecord {
                namespace: namespace.clone(),
                key,
                meta: record.meta(),
                value: record.value,
            })
        })))
    }
}

/// Records held in memory (converting a file from one format to another).
pub(crate) struct MemorySource {
    header: Header,
    namespaces: BTreeMap<String, Vec<SnapshotRecord>>,
}

impl MemorySource {
    /// The records in the scope of `options`.
    pub(crate) fn new(
        header: Header,
        records: Vec<SnapshotRecord>,
        options: &ExportOptions,
    ) -> MemorySource {
        let mut namespaces: BTreeMap<String, Vec<SnapshotRecord>> = BTreeMap::new();
        let wanted = |r: &SnapshotRecord| {
            options
                .namespaces
                .as_ref()
                .is_none_or(|list| list.contains(&r.namespace))
                && options
                    .key_prefix
                    .as_ref()
                    .is_none_or(|p| r.key.starts_with(p.as_str()))
        };
        for r in records.into_iter().filter(wanted) {
            namespaces.entry(r.namespace.clone()).or_default().push(r);
        }
        for list in namespaces.values_mut() {
            list.sort_by(|a, b| a.key.cmp(&b.key));
        }
        MemorySource { header, namespaces }
    }
}

impl Source for MemorySource {
    fn header(&self) -> Header {
        self.header
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        Ok(self.namespaces.keys().cloned().collect())
    }

    fn records(&self, namespace: &str) -> Result<Records<'_>> {
        let list = self
            .namespaces
            .get(namespace)
            .map_or(&[][..], Vec::as_slice);
        Ok(Box::new(list.iter().cloned().map(Ok)))
    }
}
