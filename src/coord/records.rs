//! The values of statelog's own records: MessagePack with named fields, like
//! log records, so that tools read them without the Rust types and later
//! versions can add optional fields.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::access::request::{Outcome, WriteOutcome};
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::value::Meta;

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::Encode {
        namespace: "statelog".to_owned(),
        key: what.to_owned(),
        message: e.to_string(),
    })
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        namespace: "statelog".to_owned(),
        key: what.to_owned(),
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

/// A lease (`statelog:leases/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    /// Its time to live, in milliseconds.
    pub ttl_ms: u64,
    /// Who took it (for `statelog locks`).
    pub holder: String,
    /// When it was granted (µs since the Unix epoch).
    #[serde(default)]
    pub granted: i64,
    /// The locks it holds.
    #[serde(default)]
    pub locks: Vec<String>,
    /// The records bound to it: namespace, key and the revision of the
    /// bound write.
    #[serde(default)]
    pub bound: Vec<(String, String, u64)>,
}

impl LeaseRecord {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        encode("a lease", self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<LeaseRecord> {
        decode("a lease", bytes)
    }
}

/// A lock (`statelog:locks/<name>`); its token is the record's create revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockRecord {
    /// The lease holding it.
    pub lease: u64,
    /// Who holds it (the lease's holder).
    pub holder: String,
}

impl LockRecord {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        encode("a lock", self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<LockRecord> {
        decode("a lock", bytes)
    }
}

/// One write's outcome, kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeptWrite {
    Put {
        version: u64,
        created: u64,
        modified: u64,
        updated: i64,
        changed: bool,
    },
    Deleted {
        version: u64,
    },
    Absent,
}

/// An idempotency key (`statelog:idempotency/<key>`): the request's digest
/// and its outcome, until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdempotencyRecord {
    pub digest: ByteBuf,
    /// Microseconds since the Unix epoch.
    pub expires: i64,
    pub revision: Option<u64>,
    pub writes: Vec<KeptWrite>,
    #[serde(default)]
    pub patched: Vec<(u64, ByteBuf)>,
    /// A closure-based call's result (MessagePack), returned by its replays.
    #[serde(default)]
    pub result: Option<ByteBuf>,
}

impl IdempotencyRecord {
    /// The record with a kept revision of 0 read as `revision`, the key
    /// record's own modification revision: a store on etcd writes the key in
    /// the commit's own `Txn`, before that commit's revision is known.
    pub(crate) fn zero_revision_as(mut self, revision: u64) -> Self {
        if self.revision == Some(0) {
            self.revision = Some(revision);
        }
        for write in &mut self.writes {
            if let KeptWrite::Put {
                created, modified, ..
            } = write
            {
                if *created == 0 {
                    *created = revision;
                }
                if *modified == 0 {
                    *modified = revision;
                }
            }
        }
        self
    }

    pub(crate) fn new(digest: [u8; 16], expires: Timestamp, outcome: &Outcome) -> Self {
        IdempotencyRecord {
            digest: ByteBuf::from(digest.to_vec()),
            expires: expires.as_micros(),
            revision: outcome.revision,
            writes: outcome
                .writes
                .iter()
                .map(|w| match w {
                    WriteOutcome::Put { meta, changed } => KeptWrite::Put {
                        version: meta.version,
                        created: meta.create_revision,
                        modified: meta.mod_revision,
                        updated: meta.updated_at.as_micros(),
                        changed: *changed,
                    },
                    WriteOutcome::Deleted { version } => KeptWrite::Deleted { version: *version },
                    WriteOutcome::Absent => KeptWrite::Absent,
                })
                .collect(),
            patched: outcome
                .patched
                .iter()
                .map(|(i, v)| (*i as u64, ByteBuf::from(v.clone())))
                .collect(),
            result: None,
        }
    }

    /// The outcome it keeps, marked as a replay.
    pub(crate) fn outcome(self) -> Outcome {
        Outcome {
            revision: self.revision,
            writes: self
                .writes
                .into_iter()
                .map(|w| match w {
                    KeptWrite::Put {
                        version,
                        created,
                        modified,
                        updated,
                        changed,
                    } => WriteOutcome::Put {
                        meta: Meta {
                            version,
                            create_revision: created,
                            mod_revision: modified,
                            updated_at: Timestamp::from_micros(updated),
                        },
                        changed,
                    },
                    KeptWrite::Deleted { version } => WriteOutcome::Deleted { version },
                    KeptWrite::Absent => WriteOutcome::Absent,
                })
                .collect(),
            patched: self
                .patched
                .into_iter()
                .map(|(i, v)| (usize::try_from(i).unwrap_or(usize::MAX), v.into_vec()))
                .collect(),
            replayed: true,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        encode("an idempotency key", self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<IdempotencyRecord> {
        decode("an idempotency key", bytes)
    }
}
