//! A store's identity on etcd: the key `<prefix> 0x00 'm' "store"`, created
//! with the store and never changed after. Its value:
//!
//! ```text
//! {"format": "statelog-etcd", "version": 1, "store_id": "<32 hex>",
//!  "created_at": "<rfc3339>"}
//! ```
//!
//! Every commit compares the key's modification revision with the one read
//! when the handle opened the store, so a handle never writes into another
//! store that was created under the same prefix after this one was removed.

use serde::{Deserialize, Serialize};

use super::client::Client;
use super::keys::Layout;
use super::proto;
use crate::error::{Error, Result, Shown};
use crate::time::Timestamp;

/// The format name in the identity value.
const FORMAT: &str = "statelog-etcd";
/// The version of the layout of keys and values this build writes.
pub const FORMAT_VERSION: u64 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Value {
    format: String,
    version: u64,
    store_id: String,
    created_at: String,
}

/// The identity of an open store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// 32 hex digits.
    pub store_id: String,
    /// The identity key's modification revision (its creation).
    pub revision: u64,
}

/// Reads the identity of the store under `layout`'s prefix, creating it when
/// there is none and `create` allows.
///
/// # Errors
/// [`Error::NotAStore`] when there is none and `create` is false, or the key
/// holds something else; [`Error::UnsupportedFormat`] for a newer layout; the
/// connection errors.
pub(crate) fn open(
    client: &Client,
    layout: &Layout,
    label: &std::path::Path,
    create: bool,
) -> Result<Identity> {
    let key = layout.meta("store");
    let read = || -> Result<Option<proto::KeyValue>> {
        let response = client.range(proto::RangeRequest {
            key: key.clone(),
            ..Default::default()
        })?;
        Ok(response.kvs.into_iter().next())
    };
    let kv = match read()? {
        Some(kv) => kv,
        None if !create => {
            return Err(Error::NotAStore {
                path: label.to_owned(),
                reason: "no statelog store lives under this prefix (its identity key is \
                         missing); create it with `statelog init` or open it with creation \
                         allowed"
                    .into(),
            });
        }
        None => {
            let value = Value {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                store_id: new_store_id()?,
                created_at: Timestamp::now().to_string(),
            };
            let bytes = serde_json::to_vec(&value).map_err(|e| Error::InvalidOption {
                name: "store identity",
                reason: e.to_string(),
            })?;
            // Only if nobody created it meanwhile; then theirs counts.
            let txn = proto::TxnRequest {
                compare: vec![proto::Compare {
                    result: proto::CompareResult::Equal as i32,
                    target: proto::CompareTarget::Version as i32,
                    key: key.clone(),
                    target_union: Some(proto::TargetUnion::Version(0)),
                    range_end: Vec::new(),
                }],
                success: vec![proto::RequestOp {
                    request: Some(proto::Request::Put(proto::PutRequest {
                        key: key.clone(),
                        value: bytes,
                        lease: 0,
                        prev_kv: false,
                    })),
                }],
                failure: Vec::new(),
            };
            match client.txn(txn) {
                Ok(_) => {}
                // Whether it applied or not, the key now tells.
                Err(Error::OutcomeUnknown { .. }) => {}
                Err(e) => return Err(e),
            }
            read()?.ok_or_else(|| Error::NotAStore {
                path: label.to_owned(),
                reason: "its identity key vanished right after it was created (another \
                         program deletes keys under this prefix?)"
                    .into(),
            })?
        }
    };
    let value: Value = serde_json::from_slice(&kv.value)
        .ok()
        .filter(|v: &Value| v.format == FORMAT)
        .ok_or_else(|| Error::NotAStore {
            path: label.to_owned(),
            reason: format!(
                "the key {} holds something statelog did not write; choose another prefix",
                Shown::new(&String::from_utf8_lossy(&key))
            ),
        })?;
    if value.version > FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            path: label.to_owned(),
            found: value.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(Identity {
        store_id: value.store_id,
        revision: u64::try_from(kv.mod_revision).unwrap_or(0),
    })
}

fn new_store_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::InvalidOption {
        name: "store id",
        reason: format!("the system's random source failed: {e}"),
    })?;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}
