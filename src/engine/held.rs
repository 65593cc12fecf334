//! The state database's write held open across batches (`db/tail.rs` says
//! why), and its fold: the commit that lands it in redb.
//!
//! Only batches that stage their writes (up to `STAGE_AT_MOST` writes, in
//! either durability mode) go into the held write: they touch redb only
//! after their log write, when nothing but a failure that poisons the engine
//! can stop them, so a held write never needs to be rolled back. Every other
//! use of the state database folds first: a batch that writes in place, reads
//! of the past, checkpoints, backups, pruning, a restore.
//!
//! A replay the open kept in memory (`db::replay::Deferred`) is a tail too,
//! with nothing held: it is written first ([`Engine::catch_up`]), by the
//! holder's background thread right after the open, or by whatever needs
//! the state database before that (a batch, a fold).
//!
//! The tail is emptied only when redb has committed its writes. A failure
//! anywhere that drops the write (a failed log write or sync, a failed
//! apply or commit) leaves a tail with nothing held: acknowledged commits
//! the state database lacks, so reads of the past refuse until a reopen.

use super::Engine;
use crate::db::replay::Deferred;
use crate::db::tail::Tail;
use crate::db::write::Batch;
use crate::db::{Db, file};
use crate::error::{self, Error, Result};

/// A held write is folded once its tail holds this many addresses...
const FOLD_ADDRESSES: usize = 1024;

/// ... or this many bytes were written into it.
const FOLD_BYTES: usize = 4 << 20;

impl Engine {
    /// The write a batch goes into: the held one, or a new one.
    pub(super) fn take_held(&mut self) -> Result<Batch> {
        if self.catching_up() {
            self.catch_up()?;
            // The replay may have found the file system taking no writes.
            self.check_writable()?;
        }
        match self.held.take() {
            Some(batch) => Ok(batch),
            None => self.db.begin_batch("begin a write"),
        }
    }

    /// Gives back a write no batch wrote into: held again while it holds
    /// writes, aborted otherwise.
    pub(super) fn give_back(&mut self, batch: Batch) -> Result<()> {
        if self.tail.is_empty() {
            return batch.abort();
        }
        self.held = Some(batch);
        Ok(())
    }

    /// Whether the held write's tail has grown enough to be folded.
    pub(super) fn fold_due(&self) -> bool {
        self.tail.len() >= FOLD_ADDRESSES || self.tail.bytes() >= FOLD_BYTES
    }

    /// Lands the held write in the state database (a non-durable commit, as a
    /// batch's) and publishes a view of it. Refused once a failure dropped a
    /// held write: the database then lacks commits readers were shown.
    pub(super) fn fold(&mut self) -> Result<()> {
        self.catch_up()?;
        let Some(batch) = self.held.take() else {
            if self.tail.is_empty() {
                return Ok(());
            }
            return Err(Error::Poisoned {
                cause: self
                    .poisoned
                    .clone()
                    .unwrap_or_else(|| "the state database lost held writes".to_owned()),
            });
        };
        if let Err(e) = batch.commit("commit the held writes") {
            return Err(self.failed(e));
        }
        self.tail = Tail::default();
        self.publish()
    }

    /// Whether a replay the open kept in memory is still to be written.
    pub(crate) fn catching_up(&self) -> bool {
        self.deferred.is_some()
    }

    /// Writes a replay the open kept in memory to the state database and
    /// checkpoints it, as the open would have, then publishes a view of it.
    /// A file system that takes no writes makes the engine read-only (the
    /// replay applied to an in-memory overlay of the database, as a
    /// read-only open does); any other failure poisons it, and its tail,
    /// with nothing held, then refuses reads of the past (the present stays
    /// readable).
    pub(super) fn catch_up(&mut self) -> Result<()> {
        let Some(mut deferred) = self.deferred.take() else {
            return Ok(());
        };
        let landed = self
            .apply_deferred(&mut deferred)
            .and_then(|()| self.make_durable());
        match landed {
            Ok(()) => {}
            // A file system that takes no writes (full, read-only): the
            // store goes on read-only, as it would have opened.
            Err(e) if file::cannot_write(&e) => self.go_read_only(&e, &mut deferred)?,
            Err(e) => return Err(self.failed(e)),
        }
        self.tail = Tail::default();
        self.publish()
    }

    fn apply_deferred(&self, deferred: &mut Deferred) -> Result<()> {
        let db = &self.db;
        crate::db::contain_panic(|| deferred.apply(db))
            .map_err(|panicked| file::damaged(db.path(), panicked))
            .and_then(|applied| applied)
    }

    /// After the file system refused the replay's writes (`cause`): the
    /// state database is opened again over an in-memory overlay, the replay
    /// applied there, and the engine refuses changes from here on, as an
    /// open on that file system would have left it.
    fn go_read_only(&mut self, cause: &Error, deferred: &mut Deferred) -> Result<()> {
        let reason = error::chain(cause);
        tracing::warn!(
            cause = %reason,
            "the store's file system takes no writes: the replayed log stays in memory, read-only"
        );
        self.db.fence();
        let path = self.db.path().to_owned();
        let unwritten = match Db::open_unwritten(self.options.fs.as_ref(), &path, &self.options) {
            Ok(db) => db,
            Err(e) => return Err(self.failed(e)),
        };
        // Views published before read the old database: it stays open
        // (fenced, so it writes nothing more) as long as the engine.
        self.retired = Some(std::mem::replace(&mut self.db, unwritten));
        if let Err(e) = self.apply_deferred(deferred) {
            return Err(self.failed(e));
        }
        self.read_only = Some(reason);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use crate::access::request::{Check, Request, Write, WriteKind};
    use crate::engine::open;
    use crate::testkit::faults::{Fault, FaultyFs, Op, Rule, Target};
    use crate::testkit::sim::{Loss, SimFs};
    use crate::{CheckpointPolicy, Error, Options, Store, key, value};

    const STORE: &str = "/store";

    fn options(fs: Arc<dyn crate::fs::Fs>) -> Options {
        Options::default()
            .file_system(fs)
            .serve(false)
            .remote(false)
            .cache_size(1 << 20)
            .checkpoint(CheckpointPolicy::manual())
    }

    /// Each record of the two namespaces the crashed store writes: version
    /// and value, `None` when absent.
    type State = BTreeMap<(String, String), Option<(u64, u64)>>;

    fn state_of(read: impl Fn(&str, &str) -> Option<(u64, u64)>) -> State {
        let mut state = State::new();
        for namespace in ["a", "b"] {
            for i in 0..40 {
                let key = format!("k{i}");
                let record = read(namespace, &key);
                state.insert((namespace.to_owned(), key), record);
            }
        }
        state
    }

    fn state_of_store(store: &Store) -> State {
        state_of(|namespace, key| {
            store
                .get::<u64>(namespace, key)
                .unwrap()
                .map(|r| (r.version, r.value))
        })
    }

    /// A store with 40 records at its checkpoint (revision 40), then 600
    /// commits of puts and deletes in two namespaces (some with many
    /// writes), lost with the power: only the log keeps them. Returns the
    /// file system after the restart and the state after some revisions.
    fn crashed() -> (SimFs, BTreeMap<u64, State>) {
        let sim = SimFs::new();
        let store = Store::open(STORE, options(Arc::new(sim.clone()))).unwrap();
        for i in 0..40u64 {
            store.put("a", &format!("k{i}"), &i).unwrap();
        }
        store.checkpoint().unwrap();
        let mut states = BTreeMap::new();
        for i in 0..600u64 {
            let namespace = if i % 3 == 0 { "b" } else { "a" };
            let key = format!("k{}", (i * 7) % 40);
            if i % 11 == 0 {
                store.delete(namespace, &key).unwrap();
            } else if i % 50 == 0 {
                store
                    .transaction(|tx| {
                        for j in 0..30 {
                            tx.put("b", &format!("k{j}"), &(i + j))?;
                        }
                        Ok::<_, Error>(())
                    })
                    .unwrap();
            } else {
                store.put(namespace, &key, &i).unwrap();
            }
            if i % 97 == 0 || i == 599 {
                states.insert(store.revision(), state_of_store(&store));
            }
        }
        sim.power_off();
        drop(store);
        (sim.restart(Loss::Everything), states)
    }

    /// The first record present in `state`, and its version.
    fn present(state: &State) -> (&str, &str, u64) {
        state
            .iter()
            .find_map(|((namespace, key), record)| {
                record.map(|(version, _)| (namespace.as_str(), key.as_str(), version))
            })
            .unwrap()
    }

    fn replayed_request(namespace: &str, key: &str, version: u64) -> Request {
        let address = key::encode(namespace, key).unwrap();
        Request {
            checks: vec![Check {
                address: address.clone(),
                expected: version,
                modified: None,
            }],
            writes: vec![Write {
                address,
                kind: WriteKind::Put {
                    value: value::encode(namespace, key, &1_000_000u64).unwrap(),
                    skip_unchanged: false,
                },
            }],
            ..Request::default()
        }
    }

    #[test]
    fn a_replay_kept_in_memory_reads_as_the_log_left_it_and_lands_before_the_next_commit() {
        let (sim, states) = crashed();
        let last = states.last_key_value().unwrap().1.clone();
        let mut opened = open::hold(Path::new(STORE), &options(Arc::new(sim.clone()))).unwrap();
        let revision = *states.last_key_value().unwrap().0;
        assert_eq!(opened.replayed, revision - 40);
        let engine = &mut opened.engine;
        assert!(engine.catching_up());
        // Nothing of the replay is in the state database yet...
        assert_eq!(engine.counts().checkpoint_revision, 40);
        // ... and readers see all of it.
        let view = engine.visible().get();
        assert_eq!(view.applied().revision, revision);
        let read = state_of(|namespace, key| {
            let address = key::encode(namespace, key).unwrap();
            view.get(&address)
                .unwrap()
                .map(|s| decoded(namespace, key, &s))
        });
        assert_eq!(read, last);
        // A commit checks its precondition against the replayed version: the
        // replay lands first.
        let (namespace, key, version) = present(&last);
        let request = replayed_request(namespace, key, version);
        let results = engine.commit_batch(&[&request]);
        assert_eq!(results[0].as_ref().unwrap().revision, Some(revision + 1));
        assert!(!engine.catching_up());
        let stale = engine.commit_batch(&[&request]);
        assert!(matches!(stale[0], Err(Error::Conflict { .. })), "{stale:?}");
        opened.close().unwrap();

        // Closed cleanly: nothing to replay, and the past of every replayed
        // revision reads back from the history index.
        let store = Store::open(STORE, options(Arc::new(sim))).unwrap();
        assert_eq!(store.recovery().replayed, 0);
        for (revision, state) in &states {
            let then = store.snapshot_at_revision(*revision).unwrap();
            let read = state_of(|namespace, key| {
                then.get::<u64>(namespace, key)
                    .unwrap()
                    .map(|r| (r.version, r.value))
            });
            assert_eq!(&read, state, "at revision {revision}");
        }
        assert_eq!(
            store.get::<u64>(namespace, key).unwrap().unwrap().version,
            version + 1
        );
        store.close().unwrap();
    }

    /// A stored record's version and value.
    fn decoded(namespace: &str, key: &str, stored: &crate::value::Stored) -> (u64, u64) {
        let value: u64 = value::decode(namespace, key, &stored.value).unwrap();
        (stored.meta.version, value)
    }

    /// The state a read of the past gives at `revision`.
    fn past_state(tables: &crate::db::past::Tables, revision: u64) -> State {
        state_of(|namespace, key| {
            let address = key::encode(namespace, key).unwrap();
            tables
                .get(&address, revision)
                .unwrap()
                .map(|s| decoded(namespace, key, &s))
        })
    }

    #[test]
    fn a_replay_kept_in_memory_lands_before_a_read_of_the_past() {
        let (sim, states) = crashed();
        let mut opened = open::hold(Path::new(STORE), &options(Arc::new(sim))).unwrap();
        assert!(opened.engine.catching_up());
        let tables = opened.engine.past_tables().unwrap();
        assert!(!opened.engine.catching_up());
        for (revision, state) in &states {
            assert_eq!(&past_state(&tables, *revision), state, "at {revision}");
        }
    }

    /// The crashed store opened on a disk whose state database's writes fail
    /// with `fault` from then on, and a commit of a replayed record tried:
    /// its result, and the record (namespace, key, version) it updated.
    struct Faulted {
        sim: SimFs,
        states: BTreeMap<u64, State>,
        opened: open::Opened,
        request: Request,
        result: crate::error::Result<crate::access::request::Outcome>,
        record: (String, String, u64),
    }

    fn commit_on_a_disk_failing_with(fault: Fault) -> Faulted {
        let (sim, states) = crashed();
        let last = states.last_key_value().unwrap().1.clone();
        let faulty = FaultyFs::new(Arc::new(sim.clone()));
        let mut opened = open::hold(Path::new(STORE), &options(Arc::new(faulty.clone()))).unwrap();
        assert!(opened.engine.catching_up());
        faulty.inject(Rule::new(Target::Db, Op::Write, fault));
        let (namespace, key, version) = present(&last);
        let record = (namespace.to_owned(), key.to_owned(), version);
        let request = replayed_request(namespace, key, version);
        let result = opened.engine.commit_batch(&[&request]).remove(0);
        assert!(faulty.injected() > 0);
        Faulted {
            sim,
            states,
            opened,
            request,
            result,
            record,
        }
    }

    impl Faulted {
        /// The present still shows the replayed version of the record.
        fn shows_the_replay(&self) {
            let (namespace, key, version) = &self.record;
            let view = self.opened.engine.visible().get();
            let address = key::encode(namespace, key).unwrap();
            assert_eq!(view.get(&address).unwrap().unwrap().meta.version, *version);
        }

        /// Once the disk works again, a reopen replays the log again, whole.
        fn replays_again(self) {
            drop(self.opened);
            let store = Store::open(STORE, options(Arc::new(self.sim))).unwrap();
            let (revision, last) = self.states.last_key_value().unwrap();
            assert_eq!(store.recovery().replayed, revision - 40);
            assert_eq!(&state_of_store(&store), last);
            store.close().unwrap();
        }
    }

    #[test]
    fn a_replay_that_fails_to_land_poisons_the_engine_and_a_reopen_replays_it_again() {
        let mut faulted = commit_on_a_disk_failing_with(Fault::Eio);
        assert!(faulted.result.is_err(), "{:?}", faulted.result);
        // The engine takes no more commits, refuses the past (the state
        // database lacks the replay), and still shows the present.
        let engine = &mut faulted.opened.engine;
        let again = engine.commit_batch(&[&faulted.request]);
        assert!(matches!(again[0], Err(Error::Poisoned { .. })), "{again:?}");
        assert!(matches!(engine.past_tables(), Err(Error::Poisoned { .. })));
        faulted.shows_the_replay();
        faulted.replays_again();
    }

    #[test]
    fn a_replay_the_disk_has_no_room_for_leaves_the_store_read_only_with_all_of_it() {
        let mut faulted = commit_on_a_disk_failing_with(Fault::NoSpace);
        assert!(
            matches!(faulted.result, Err(Error::ReadOnly { .. })),
            "{:?}",
            faulted.result
        );
        let engine = &mut faulted.opened.engine;
        assert!(!engine.catching_up());
        assert!(engine.read_only().is_some());
        // The present and the past read back whole, from memory.
        let tables = engine.past_tables().unwrap();
        for (revision, state) in &faulted.states {
            assert_eq!(&past_state(&tables, *revision), state, "at {revision}");
        }
        assert!(
            !engine.checkpoint().unwrap(),
            "nothing to checkpoint read-only"
        );
        faulted.shows_the_replay();
        // Nothing was written: the log replays again.
        faulted.replays_again();
    }

    #[test]
    fn a_replay_kept_in_memory_is_still_checked_against_the_state_database() {
        use crate::db::Db;
        use crate::db::schema::{self, Applied, META, RECORDS};
        let (sim, _) = crashed();
        // The state database loses a record the log's first commit after the
        // checkpoint updates (version 1 of a/k7): the log no longer continues
        // it.
        {
            let db_path = Path::new(STORE).join(crate::layout::DB_FILE);
            let db = Db::open(&sim, &db_path, &options(Arc::new(sim.clone()))).unwrap();
            let applied = {
                let meta = db.read_table(META, "meta").unwrap();
                let bytes = meta.get(schema::META_APPLIED).unwrap().unwrap();
                Applied::decode(bytes.value()).unwrap()
            };
            let txn = db.begin_nondurable("remove").unwrap();
            {
                let mut records = txn.open_table(RECORDS).unwrap();
                let address = key::encode("a", "k7").unwrap();
                assert!(records.remove(address.as_slice()).unwrap().is_some());
            }
            txn.commit().unwrap();
            db.checkpoint(&applied).unwrap();
        }
        let Err(err) = open::hold(Path::new(STORE), &options(Arc::new(sim))) else {
            panic!("a state database the log does not continue opened");
        };
        let message = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            message.contains(
                "revision 41 expects version 1 (created at 8) but finds an absent record for a/k7"
            ),
            "{message}"
        );
    }
}
