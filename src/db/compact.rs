//! redb's compaction of the database file. It needs the database to itself
//! (`&mut`), which no open store can give: the caller holds the store's lock
//! and nothing else has the file open.

use std::path::Path;

use super::{Db, contain_panic, db_error};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::options::Options;

/// Compacts the database file `db_path` (the caller holds its store's lock).
///
/// # Errors
/// [`Error::Database`] if compaction fails or the file turns out damaged
/// (redb leaves a failed compaction's file whole).
pub(crate) fn compact(fs: &dyn Fs, db_path: &Path, options: &Options) -> Result<()> {
    let mut db = Db::open(fs, db_path, options)?;
    // Compaction reads every page; on damage the open did not see, redb may
    // panic: an error naming the file, like any other damage.
    let compacted = contain_panic(|| -> Result<()> {
        // Each pass moves what it can; redb says when nothing more moved.
        for _ in 0..8 {
            match db.database.compact() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    return Err(db_error(db_path, "compact the state database")(
                        redb::Error::from(e),
                    ));
                }
            }
        }
        drop(db);
        Ok(())
    });
    match compacted {
        Ok(done) => done,
        Err(panicked) => Err(Error::Database {
            op: "compact the state database",
            path: db_path.to_owned(),
            hint: "the file is damaged; run `statelog check`, then `statelog repair`",
            source: panicked.into(),
        }),
    }
}
