//! Many threads and many processes on one store: no update is lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::{open, store_dir};
use serde::{Deserialize, Serialize};
use statelog::{Error, Options, Store};

#[test]
fn eight_threads_times_a_thousand_updates_lose_nothing() {
    let dir = store_dir();
    let store = open(dir.path());
    let threads = 8;
    let per_thread = 1000;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    store
                        .update(
                            "counters",
                            "c",
                            |old: Option<u64>| -> statelog::Result<u64> {
                                Ok(old.unwrap_or(0) + 1)
                            },
                        )
                        .expect("update");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let counter = store.get::<u64>("counters", "c").unwrap().unwrap();
    assert_eq!(counter.value, 8000);
    assert_eq!(counter.version, 8000);
    let stats = store.stats();
    assert_eq!(stats.commits, 8000);
    // Same-key updates of one process take turns instead of colliding: not
    // one conflict, so no closure ran twice.
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    assert_eq!(stats.retries, stats.conflicts, "{stats:?}");
    println!("8x1000 updates: {stats:?}");
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TaskState {
    status: String,
    artifacts: BTreeMap<String, String>,
}

#[test]
fn sixteen_parallel_stages_each_keep_their_artifact() {
    let dir = store_dir();
    let store = open(dir.path());
    let created = store
        .create(
            "tasks",
            "video_1",
            &TaskState {
                status: "running".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(created.version, 1);
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|stage| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .update(
                        "tasks",
                        "video_1",
                        |old: Option<TaskState>| -> statelog::Result<_> {
                            let mut task = old.expect("created before the stages start");
                            task.artifacts
                                .insert(format!("stage_{stage:02}"), format!("/out/{stage}.bin"));
                            Ok(task)
                        },
                    )
                    .expect("stage update");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let task = store.get::<TaskState>("tasks", "video_1").unwrap().unwrap();
    assert_eq!(task.value.artifacts.len(), 16, "{:?}", task.value.artifacts);
    for stage in 0..16 {
        assert_eq!(
            task.value.artifacts[&format!("stage_{stage:02}")],
            format!("/out/{stage}.bin")
        );
    }
    assert_eq!(task.version, 17);
}

#[test]
fn readers_never_wait_for_or_see_half_of_a_transaction() {
    let dir = store_dir();
    let store = open(dir.path());
    store
        .transaction(|tx| {
            tx.put("bank", "a", &500i64)?;
            tx.put("bank", "b", &500i64)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..200i64 {
                    let amount = (n % 7) - 3 + i;
                    store
                        .transaction(|tx| {
                            let a: i64 = tx.get("bank", "a")?.unwrap().value;
                            let b: i64 = tx.get("bank", "b")?.unwrap().value;
                            tx.put("bank", "a", &(a - amount))?;
                            tx.put("bank", "b", &(b + amount))?;
                            Ok::<_, Error>(())
                        })
                        .expect("transfer");
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b) = store
                    .read(|s| {
                        Ok((
                            s.get::<i64>("bank", "a")?.unwrap().value,
                            s.get::<i64>("bank", "b")?.unwrap().value,
                        ))
                    })
                    .unwrap();
                assert_eq!(a + b, 1000, "a snapshot saw half a transfer");
                reads += 1;
            }
            reads
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0);
    assert_eq!(store.revision(), 801);
}

const PROCESS_TEST: &str = "eight_processes_times_five_hundred_increments_through_open_and_close";

/// A child process: open, update, close, `times` times.
fn increment_in_a_loop(dir: &Path, times: usize) {
    for _ in 0..times {
        let store = Store::open(dir, Options::default()).expect("open waits for the lock");
        store
            .update(
                "jobs",
                "counter",
                |old: Option<u64>| -> statelog::Result<u64> { Ok(old.unwrap_or(0) + 1) },
            )
            .expect("update");
        store.close().expect("close");
    }
}

#[test]
fn eight_processes_times_five_hundred_increments_through_open_and_close() {
    processes_times_increments(PROCESS_TEST, 8, 500);
}

/// `processes` child processes each open the store, increment a counter and
/// close it, `times` times: the store's lock makes them take turns, and no
/// increment is lost.
fn processes_times_increments(test: &str, processes: usize, times: usize) {
    if let Some((_, dir)) = common::child_role() {
        increment_in_a_loop(Path::new(&dir), times);
        return;
    }
    // The lock and the counter are under test, not the disk's syncs.
    let dir = common::memory_store_dir();
    Store::open(dir.path(), Options::default())
        .unwrap()
        .close()
        .unwrap();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            common::child_command(test, "increment", dir.path().to_str().unwrap())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = open(dir.path());
    let counter = store.get::<u64>("jobs", "counter").unwrap().unwrap();
    let total = (processes * times) as u64;
    assert_eq!(counter.value, total);
    assert_eq!(counter.version, total);
    assert_eq!(store.revision(), total);
}

#[test]
fn a_second_open_waits_then_reports_busy_with_the_holder() {
    let dir = store_dir();
    let store = open(dir.path());
    let start = std::time::Instant::now();
    let err = Store::open(
        dir.path(),
        Options::default()
            .lock_timeout(std::time::Duration::from_millis(300))
            .remote(false),
    )
    .unwrap_err();
    let waited = start.elapsed();
    match &err {
        Error::Busy { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected Busy, got {other}"),
    }
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    // The waiting open changed nothing, and the holder goes on.
    store.put("a", "b", &1).unwrap();
    drop(store);
    let again = open(dir.path());
    assert_eq!(again.revision(), 1);
}

#[test]
fn a_waiting_open_gets_the_store_when_the_holder_closes() {
    let dir = store_dir();
    let store = open(dir.path());
    let path = dir.path().to_owned();
    let waiter = std::thread::spawn(move || {
        let store =
            Store::open(&path, Options::default().remote(false)).expect("open after waiting");
        store.put("a", "waiter", &1).expect("put").revision
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    store.put("a", "holder", &1).unwrap();
    store.close().unwrap();
    assert_eq!(waiter.join().unwrap(), 2);
}

/// A file system whose log syncs wait until the test lets them finish, so the
/// test can look at the store while a commit's sync is in flight.
mod held_sync {
    use std::io;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};

    use statelog::testkit::{FileHandle, Fs, LockError, LockGuard, OpenMode, RealFs};

    #[derive(Debug, Default)]
    pub struct Gate {
        state: Mutex<(bool, u32)>, // (holding, syncs waiting)
        changed: Condvar,
    }

    impl Gate {
        pub fn hold(&self) {
            self.state.lock().unwrap().0 = true;
        }
        pub fn release(&self) {
            self.state.lock().unwrap().0 = false;
            self.changed.notify_all();
        }
        /// Waits until a log sync is waiting at the gate.
        pub fn wait_for_sync(&self) {
            let mut state = self.state.lock().unwrap();
            while state.1 == 0 {
                state = self.changed.wait(state).unwrap();
            }
        }
        fn pass(&self) {
            let mut state = self.state.lock().unwrap();
            state.1 += 1;
            self.changed.notify_all();
            while state.0 {
                state = self.changed.wait(state).unwrap();
            }
            state.1 -= 1;
        }
    }

    #[derive(Debug)]
    pub struct HeldFs(pub Arc<Gate>);

    #[derive(Debug)]
    struct HeldFile(Arc<dyn FileHandle>, Arc<Gate>);

    impl FileHandle for HeldFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.0.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            self.0.write_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.1.pass();
            self.0.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.0.len()
        }
    }

    impl Fs for HeldFs {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
            let file = RealFs.open(path, mode)?;
            let is_log = path.parent().and_then(Path::file_name) == Some("log".as_ref());
            Ok(if is_log {
                Arc::new(HeldFile(file, Arc::clone(&self.0)))
            } else {
                file
            })
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            RealFs.create_dir_all(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            RealFs.read_dir(path)
        }
        fn exists(&self, path: &Path) -> io::Result<bool> {
            RealFs.exists(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            RealFs.remove_file(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            RealFs.sync_dir(path)
        }
        fn try_lock(&self, path: &Path) -> Result<Box<dyn LockGuard>, LockError> {
            RealFs.try_lock(path)
        }
        fn db_backend(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
            RealFs.db_backend(path)
        }
    }
}

#[test]
fn readers_never_see_a_commit_whose_log_sync_has_not_returned() {
    // The engine commits a batch to the state database while its log sync is
    // still running; readers must keep seeing the state before it until the
    // sync returns and the commit is acknowledged.
    let dir = store_dir();
    let gate = Arc::new(held_sync::Gate::default());
    let options = Options::default().file_system(Arc::new(held_sync::HeldFs(Arc::clone(&gate))));
    let store = Store::open(dir.path(), options).unwrap();
    store.put("r", "k", &1u64).unwrap();

    gate.hold();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || store.put("r", "k", &2u64).unwrap())
    };
    gate.wait_for_sync();
    for _ in 0..100 {
        assert_eq!(store.get::<u64>("r", "k").unwrap().unwrap().value, 1);
        assert_eq!(store.revision(), 1);
        let (revision, listed) = store
            .read(|snap| {
                let listed: Vec<u64> = snap
                    .list::<u64>("r", ..)?
                    .map(|item| item.map(|(_, v)| v.value))
                    .collect::<Result<_, _>>()?;
                Ok((snap.revision()?, listed))
            })
            .unwrap();
        assert_eq!((revision, listed), (1, vec![1]));
    }
    gate.release();
    let committed = writer.join().unwrap();
    assert_eq!(committed.revision, 2);
    assert_eq!(store.get::<u64>("r", "k").unwrap().unwrap().value, 2);
    assert_eq!(store.read(|snap| snap.revision()).unwrap(), 2);
}
