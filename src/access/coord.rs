//! What a request asks for beyond checks and plain writes: patches,
//! fences, revision preconditions, an idempotency key, a lease to bind to, a
//! lock to take or give back, a lease's beginning or end. Plain data and the
//! checks of what arrives from outside; `coord/` evaluates it at commit.

use std::time::Duration;

use rmpv::Value;

use super::request::{Request, WriteKind};
use crate::error::{Error, KeyPart, Result, Shown};
use crate::key;
use crate::value::{kind, tree as decode};

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The longest identity of a closure-based call (`Idempotency::call`): a kind
/// and an address, or a digest.
const MAX_CALL_LEN: usize = 1024;

/// How long an idempotency key is kept when [`Options`](crate::Options) does
/// not say: a day.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What one operation of a patch does, and where (`path`: field names from
/// the top of the value; empty for the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatchOp {
    pub kind: OpKind,
    pub path: Vec<String>,
    /// The operand (MessagePack): the value to set, append or merge, or the
    /// number to add; `None` for a removal.
    pub value: Option<Vec<u8>>,
}

/// The operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Set the field (creating missing objects on the way).
    Set,
    /// Remove the field (nothing when it is missing).
    Remove,
    /// Add a number to the field (a missing field counts as 0).
    Add,
    /// Append to the array in the field (a missing field becomes an array).
    Append,
    /// Append unless an equal element is in the array already.
    AppendUnique,
    /// Merge an object into the object in the field: members are set, and
    /// objects inside both are merged in turn.
    Merge,
}

impl OpKind {
    /// The operation's name, on the wire and in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKind::Set => "set",
            OpKind::Remove => "remove",
            OpKind::Add => "add",
            OpKind::Append => "append",
            OpKind::AppendUnique => "append-unique",
            OpKind::Merge => "merge",
        }
    }

    /// The operation called `name`.
    pub(crate) fn from_name(name: &str) -> Option<OpKind> {
        [
            OpKind::Set,
            OpKind::Remove,
            OpKind::Add,
            OpKind::Append,
            OpKind::AppendUnique,
            OpKind::Merge,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

impl PatchOp {
    /// The operand, if any.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// Checks an operation that came from outside the process: the operand an
    /// operation needs, and a valid path.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.path.iter().any(String::is_empty) {
            return Err("a field name in a patch's path is empty".to_owned());
        }
        match (self.kind, &self.value) {
            (OpKind::Remove, None) => {
                if self.path.is_empty() {
                    return Err("a patch cannot remove the whole value (delete the record)".into());
                }
                Ok(())
            }
            (OpKind::Remove, Some(_)) => Err("a removal takes no value".to_owned()),
            (_, None) => Err(format!("{} needs a value", self.kind.name())),
            (OpKind::Add, Some(v)) => match decode(v)? {
                Value::Integer(_) | Value::F32(_) | Value::F64(_) => Ok(()),
                other => Err(format!("add needs a number, not {}", kind(&other))),
            },
            (OpKind::Merge, Some(v)) => match decode(v)? {
                Value::Map(_) => Ok(()),
                other => Err(format!("merge needs an object, not {}", kind(&other))),
            },
            (_, Some(v)) => decode(v).map(|_| ()),
        }
    }
}

/// "Lock NAME must still be held with token T" at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub lock: String,
    pub token: u64,
}

/// "The record at `address` must have modification revision `revision`" (0:
/// must be absent) at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevisionCheck {
    pub address: Vec<u8>,
    pub revision: u64,
}

/// An idempotency key and how long to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Idempotency {
    pub key: String,
    pub keep: Duration,
    /// For a call that computes its request in a closure (`update`, a
    /// transaction, an import): what identifies the call itself (its kind and
    /// records), since a retried closure builds a different request. When
    /// set, "the same request" means the same call, not the same writes.
    pub call: Option<Vec<u8>>,
    /// The call's result (MessagePack), kept with the key and returned by a
    /// replay instead of running the closure again.
    pub result: Option<Vec<u8>>,
}

/// Taking or giving back a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockOp {
    /// Take lock `name` under `lease` (it must be free).
    Acquire { name: String, lease: u64 },
    /// Give back lock `name`, held with `token`.
    Release { name: String, token: u64 },
}

/// What only the holder asks for: a lease begins or ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseOp {
    /// A new lease.
    Grant {
        id: u64,
        ttl: Duration,
        holder: String,
    },
    /// The lease ends: it, its locks and the records bound to it go.
    End { id: u64 },
}

/// The coordination parts of a request (all empty for most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CoordRequest {
    pub fences: Vec<Fence>,
    pub revisions: Vec<RevisionCheck>,
    pub idempotency: Option<Idempotency>,
    /// Bind the records this request puts to this lease.
    pub lease: Option<u64>,
    pub lock: Option<LockOp>,
    /// Never from another process: the holder composes these itself.
    pub lease_op: Option<LeaseOp>,
}

impl CoordRequest {
    /// True when the request asks for nothing here.
    pub(crate) fn is_empty(&self) -> bool {
        self.fences.is_empty()
            && self.revisions.is_empty()
            && self.idempotency.is_none()
            && self.lease.is_none()
            && self.lock.is_none()
            && self.lease_op.is_none()
    }

    /// The lease the request uses (binds records to, or takes a lock under).
    pub(crate) fn lease_in_use(&self) -> Option<u64> {
        match &self.lock {
            Some(LockOp::Acquire { lease, .. }) => Some(*lease),
            _ => self.lease,
        }
    }

    /// Checks what came from another process, as the API checks it.
    pub(crate) fn check_untrusted(&self) -> Result<()> {
        for fence in &self.fences {
            check_lock_name(&fence.lock)?;
        }
        for check in &self.revisions {
            crate::access::request::check_address(&check.address)?;
        }
        if let Some(idempotency) = &self.idempotency {
            check_idempotency_key(&idempotency.key)?;
            if idempotency
                .call
                .as_ref()
                .is_some_and(|c| c.len() > MAX_CALL_LEN)
            {
                return Err(Error::InvalidOption {
                    name: "idempotency key",
                    reason: format!("the call it names is longer than {MAX_CALL_LEN} bytes"),
                });
            }
            if let Some(result) = &idempotency.result {
                crate::value::check_len(crate::coord::IDEMPOTENCY, &idempotency.key, result.len())?;
            }
        }
        match &self.lock {
            Some(LockOp::Acquire { name, .. } | LockOp::Release { name, .. }) => {
                check_lock_name(name)?;
            }
            None => {}
        }
        if self.lease_op.is_some() {
            return Err(Error::InvalidOption {
                name: "lease",
                reason: "leases begin and end only in the process holding the store".to_owned(),
            });
        }
        Ok(())
    }
}

/// Checks a lock's name: any valid key.
pub(crate) fn check_lock_name(name: &str) -> Result<()> {
    key::validate(KeyPart::Key, name).map_err(|e| match e {
        Error::InvalidKey { value, reason, .. } => Error::InvalidOption {
            name: "lock",
            reason: format!(
                "the lock name \"{}\" is not valid: {reason}",
                Shown::new(&value)
            ),
        },
        other => other,
    })
}

/// Checks an idempotency key: a valid key of at most 255 bytes.
pub(crate) fn check_idempotency_key(text: &str) -> Result<()> {
    if text.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(Error::InvalidOption {
            name: "idempotency key",
            reason: format!(
                "it is {} bytes long; the limit is {MAX_IDEMPOTENCY_KEY_LEN}",
                text.len()
            ),
        });
    }
    key::validate(KeyPart::Key, text).map_err(|e| match e {
        Error::InvalidKey { value, reason, .. } => Error::InvalidOption {
            name: "idempotency key",
            reason: format!("\"{}\" is not valid: {reason}", Shown::new(&value)),
        },
        other => other,
    })
}

/// True when the request needs `coord::expand` (coordination, or a patch).
pub(crate) fn needs_expansion(request: &Request) -> bool {
    !request.coord.is_empty()
        || request
            .writes
            .iter()
            .any(|w| matches!(w.kind, WriteKind::Patch { .. }))
}
