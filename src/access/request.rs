//! What a caller hands to the commit path, and what it gets back.

use crate::error::{Error, KeyPart, Result, Shown};
use crate::key;
use crate::time::Timestamp;
use crate::value;
use crate::value::Meta;

/// A precondition: the record at `address` must have version `expected` (0:
/// absent) when the commit is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub address: Vec<u8>,
    pub expected: u64,
    /// When set, the record must also still have this modification revision:
    /// be the very write that was read. Versions start again at 1 when a
    /// deleted record is re-created, so the version alone cannot tell the write
    /// that was read from a later one that reached the same version (ABA);
    /// `update` and transactions, which commit what they computed from a read,
    /// set it.
    pub modified: Option<u64>,
}

/// One write; a request holds at most one per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub address: Vec<u8>,
    pub kind: WriteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// Store a value (MessagePack). With `skip_unchanged`, a value identical to
    /// the stored one is not written: no new version, no log record.
    Put {
        value: Vec<u8>,
        skip_unchanged: bool,
    },
    /// Remove the record (a no-op when absent).
    Delete,
    /// Change the record's current value at commit (`coord::patch`): the log
    /// records the resulting value. With `skip_unchanged`, a result identical
    /// to the stored value is not written.
    Patch {
        ops: Vec<super::coord::PatchOp>,
        skip_unchanged: bool,
    },
}

/// An atomic unit of work: all writes happen, at one new revision, if every
/// check holds; otherwise nothing happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
    /// Leases, locks, fences, revision preconditions and idempotency
    /// (`coord/`), evaluated at commit; empty for most requests.
    pub coord: super::coord::CoordRequest,
}

/// What became of each write of a committed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// The record now has `meta`; `changed` is false when the write was skipped
    /// as unchanged.
    Put { meta: Meta, changed: bool },
    /// The record, which had `version`, was removed.
    Deleted { version: u64 },
    /// There was nothing to delete.
    Absent,
}

/// The result of a committed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The revision the request created; `None` when every write was a no-op.
    pub revision: Option<u64>,
    /// One entry per write, in request order.
    pub writes: Vec<WriteOutcome>,
    /// The value each patch wrote (by the index of its write), as computed at
    /// commit.
    pub patched: Vec<(usize, Vec<u8>)>,
    /// True when this is the remembered outcome of an earlier request with the
    /// same idempotency key: nothing was written now.
    pub replayed: bool,
}

/// A record of a snapshot being restored, with the metadata it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseRecord {
    pub address: Vec<u8>,
    pub meta: Meta,
    pub value: Vec<u8>,
}

/// A whole snapshot restored into an empty store as its first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseLoad {
    pub revision: u64,
    pub time: Timestamp,
    pub records: Vec<BaseRecord>,
}

/// Checks an address that came from outside the process (the wire): it must
/// be one `key::encode` makes.
pub(crate) fn check_address(address: &[u8]) -> Result<(&str, &str)> {
    let (namespace, key) = key::decode(address).ok_or_else(|| Error::InvalidKey {
        part: KeyPart::Key,
        value: String::from_utf8_lossy(address).chars().take(64).collect(),
        reason: "it is not a namespace and a key".to_owned(),
    })?;
    key::validate(KeyPart::Namespace, namespace)?;
    key::validate(KeyPart::Key, key)?;
    Ok((namespace, key))
}

/// Checks a value that came from outside the process: one MessagePack value
/// within the size limit.
fn check_value(namespace: &str, key: &str, value: &[u8]) -> Result<()> {
    value::check_len(namespace, key, value.len())?;
    value::check_msgpack(value).map_err(|message| Error::InvalidValue {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message,
    })
}

impl Request {
    /// One write to `address`; with `expected`, only if the record then has
    /// that version (and, with `modified`, that modification revision).
    pub(crate) fn one(
        address: Vec<u8>,
        kind: WriteKind,
        expected: Option<u64>,
        modified: Option<u64>,
    ) -> Request {
        let checks = expected
            .map(|expected| Check {
                address: address.clone(),
                expected,
                modified,
            })
            .into_iter()
            .collect();
        Request {
            checks,
            writes: vec![Write { address, kind }],
            coord: super::coord::CoordRequest::default(),
        }
    }

    /// Checks a request that came from another process, as the public API
    /// checks what it is given: valid addresses, valid values within the size
    /// limit, at most one write per address.
    pub(crate) fn check_untrusted(&self) -> Result<()> {
        for check in &self.checks {
            check_address(&check.address)?;
        }
        self.coord.check_untrusted()?;
        let mut seen = std::collections::HashSet::with_capacity(self.writes.len());
        for write in &self.writes {
            let (namespace, key) = check_address(&write.address)?;
            match &write.kind {
                WriteKind::Put { value, .. } => check_value(namespace, key, value)?,
                WriteKind::Patch { ops, .. } => {
                    for op in ops {
                        if let Some(value) = op.value() {
                            check_value(namespace, key, value)?;
                        }
                    }
                }
                WriteKind::Delete => {}
            }
            if !seen.insert(write.address.as_slice()) {
                return Err(Error::InvalidOption {
                    name: "writes",
                    reason: format!(
                        "{}/{} is written twice in one request",
                        Shown::new(namespace),
                        Shown::new(key)
                    ),
                });
            }
        }
        Ok(())
    }
}

impl BaseLoad {
    /// Puts the records in address order and checks them: valid addresses and
    /// values, no record twice. (`check_values`: the values came from outside
    /// the process and are checked too.)
    pub(crate) fn sort_and_check(&mut self, check_values: bool) -> Result<()> {
        for record in &self.records {
            let (namespace, key) = check_address(&record.address)?;
            if check_values {
                check_value(namespace, key, &record.value)?;
            }
        }
        self.records.sort_by(|a, b| a.address.cmp(&b.address));
        if let Some(pair) = self
            .records
            .windows(2)
            .find(|w| w[0].address == w[1].address)
        {
            let (namespace, key) = key::decode(&pair[0].address).unwrap_or(("?", "?"));
            return Err(Error::InvalidOption {
                name: "records",
                reason: format!(
                    "{}/{} appears twice",
                    Shown::new(namespace),
                    Shown::new(key)
                ),
            });
        }
        Ok(())
    }
}
