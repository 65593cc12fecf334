//! The identity file, `STATELOG`: JSON naming the format, the layout version,
//! the store id and the creation time. Written last when a store is created
//! (temporary file, sync, rename, directory sync), so a directory with it is a
//! complete store.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ID_FILE, STORE_FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::fs::{self, Fs};
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::time::Timestamp;

const FORMAT_NAME: &str = "statelog";

#[derive(Debug, Serialize, Deserialize)]
struct IdFile {
    format: String,
    version: u64,
    store_id: String,
    created_at: String,
}

/// Whether the directory `path` has an identity file (is a store).
pub(crate) fn exists(fs: &dyn Fs, path: &Path) -> Result<bool> {
    let id = path.join(ID_FILE);
    fs.exists(&id)
        .map_err(|e| Error::io("look for the store's identity file", &id, e))
}

/// Writes the identity file of the store in `path`: the last step of creating
/// a store, after which the directory is one.
pub(crate) fn write(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    created: Timestamp,
) -> Result<()> {
    let id = IdFile {
        format: FORMAT_NAME.to_owned(),
        version: STORE_FORMAT_VERSION,
        store_id: catalog::hex(store_id),
        created_at: created.to_string(),
    };
    let mut text = serde_json::to_string_pretty(&id).unwrap_or_default();
    text.push('\n');
    let id_path = path.join(ID_FILE);
    // IMPORTANT: written last; its presence is what makes the directory a store.
    fs::write_file_atomic(fs, &id_path, text.as_bytes())
        .map_err(|e| Error::io("write the store's identity file", &id_path, e))?;
    Ok(())
}

/// The store id the identity file of the store in `path` names, after checking
/// its format.
pub(crate) fn read(fs: &dyn Fs, path: &Path) -> Result<StoreId> {
    let id_path = path.join(ID_FILE);
    let bytes = fs::read_file(fs, &id_path)
        .map_err(|e| Error::io("read the identity file", &id_path, e))?;
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| not_a_store(format!("{ID_FILE} is not valid JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not_a_store(format!(
            "{ID_FILE} does not name the {FORMAT_NAME:?} format"
        )));
    }
    if let Some(version) = value.get("version").and_then(|v| v.as_u64())
        && version > STORE_FORMAT_VERSION
    {
        return Err(Error::UnsupportedFormat {
            path: id_path,
            found: version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    let id: IdFile = serde_json::from_value(value)
        .map_err(|e| not_a_store(format!("{ID_FILE} is incomplete ({e})")))?;
    catalog::parse_hex(&id.store_id).ok_or_else(|| {
        not_a_store(format!(
            "{ID_FILE} has a malformed store id {:?}",
            id.store_id
        ))
    })
}

/// The store id of the store in `path`; [`Error::NotAStore`](crate::Error::NotAStore)
/// when there is none.
pub(crate) fn store_id_of(fs: &dyn Fs, path: &Path) -> Result<StoreId> {
    let id = path.join(ID_FILE);
    if !fs.exists(&id).map_err(|e| Error::io("look for", &id, e))? {
        return Err(Error::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "there is no {ID_FILE} file (it is not a store, or its creation never finished)"
            ),
        });
    }
    read(fs, path)
}
