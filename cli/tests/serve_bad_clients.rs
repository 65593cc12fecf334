//! A holder among clients that misbehave: garbage bytes, an oversized frame, a
//! half-sent frame, a malformed request, another protocol version, a client
//! killed in the middle of a transaction, a thousand idle connections, and a
//! peer of another user. Each closes (or refuses) that one connection; the
//! holder goes on serving everyone else.

// The helpers of the library's tests, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use statelog::testkit::{wire_frame, wire_message as m};
use statelog::{Options, Store};

/// A holder whose wait (and so its limit for a half-sent message) is short.
fn holder(dir: &Path) -> Store {
    Store::open(
        dir,
        Options::default().lock_timeout(Duration::from_millis(1500)),
    )
    .expect("open the holder")
}

fn store_id(store: &Store) -> String {
    store.id()
}

fn raw_connect(dir: &Path) -> UnixStream {
    let stream = UnixStream::connect(dir.join("statelog.sock")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

fn send<T: serde::Serialize>(stream: &mut UnixStream, msg: &T) {
    let mut body = Vec::new();
    m::encode_into(msg, &mut body).unwrap();
    stream
        .write_all(&wire_frame::encode(&body).unwrap())
        .unwrap();
}

/// Reads one message; `None` when the holder closed the connection.
fn receive<T: serde::de::DeserializeOwned>(stream: &mut UnixStream) -> Option<T> {
    let mut header = [0u8; wire_frame::HEADER_LEN];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading from the holder: {e}"),
    }
    let header = wire_frame::decode_header(&header).unwrap();
    let mut body = vec![0; header.len];
    stream.read_exact(&mut body).unwrap();
    Some(m::decode(&body).unwrap())
}

/// True once the holder has closed the connection (reads reach its end, or
/// a reset when it closed with bytes of ours unread); false if it stays open
/// for the read timeout.
fn closed_by_holder(stream: &mut UnixStream) -> bool {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn hello(store_id: &str, version: u32) -> m::ClientHello {
    m::ClientHello {
        magic: m::MAGIC.to_owned(),
        version,
        store_id: store_id.to_owned(),
        pid: std::process::id(),
        purpose: m::Purpose::Requests,
    }
}

fn welcomed(dir: &Path, id: &str) -> UnixStream {
    let mut stream = raw_connect(dir);
    send(&mut stream, &hello(id, m::PROTOCOL_VERSION));
    let answer: m::ServerHello = receive(&mut stream).expect("a hello");
    assert!(
        matches!(answer, m::ServerHello::Welcome { .. }),
        "{answer:?}"
    );
    stream
}

/// A well-behaved client in another handle: works while the others misbehave.
fn still_serves(dir: &Path, n: u64) {
    let client = Store::open(dir, Options::default().serve(false)).unwrap();
    assert!(!client.is_holder());
    let c = client.put("good", &format!("k{n}"), &n).unwrap();
    assert_eq!(
        client
            .get::<u64>("good", &format!("k{n}"))
            .unwrap()
            .unwrap()
            .value,
        n
    );
    assert!(c.revision > 0);
}

#[test]
fn bad_bytes_close_only_their_own_connection() {
    let dir = common::store_dir();
    let store = holder(dir.path());
    let id = store_id(&store);
    still_serves(dir.path(), 0);

    // Garbage instead of a hello.
    let mut garbage = raw_connect(dir.path());
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&bytes);
    assert!(closed_by_holder(&mut garbage));
    still_serves(dir.path(), 1);

    // An oversized frame after the handshake: an error, then the end.
    let mut oversized = welcomed(dir.path(), &id);
    let mut header = [0u8; wire_frame::HEADER_LEN];
    header[..4].copy_from_slice(&((wire_frame::MAX_FRAME_BODY + 1) as u32).to_le_bytes());
    oversized.write_all(&header).unwrap();
    let answer: m::Response = receive(&mut oversized).expect("an error");
    let m::Response::Failed(error) = answer else {
        panic!("expected an error, got {answer:?}")
    };
    assert!(format!("{error:?}").contains("frame of"), "{error:?}");
    assert!(receive::<m::Response>(&mut oversized).is_none());
    still_serves(dir.path(), 2);

    // A valid frame whose content is no request.
    let mut malformed = welcomed(dir.path(), &id);
    malformed
        .write_all(&wire_frame::encode(&[0xc1, 0x00, 0x42]).unwrap())
        .unwrap();
    let answer: m::Response = receive(&mut malformed).expect("an error");
    assert!(matches!(answer, m::Response::Failed(_)), "{answer:?}");
    assert!(receive::<m::Response>(&mut malformed).is_none());

    // Half a frame: closed once the holder's wait passes.
    let mut half = welcomed(dir.path(), &id);
    half.write_all(&[10, 0, 0]).unwrap();
    let started = Instant::now();
    assert!(closed_by_holder(&mut half));
    assert!(started.elapsed() < Duration::from_secs(15));
    still_serves(dir.path(), 3);

    // Another protocol version, another store: refused, saying why.
    let mut old = raw_connect(dir.path());
    send(&mut old, &hello(&id, 99));
    let answer: m::ServerHello = receive(&mut old).expect("a refusal");
    match answer {
        m::ServerHello::Refused { reason, pid, .. } => {
            assert!(reason.contains("protocol version"), "{reason}");
            assert_eq!(pid, std::process::id());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut other = raw_connect(dir.path());
    send(&mut other, &hello(&"0".repeat(32), m::PROTOCOL_VERSION));
    let answer: m::ServerHello = receive(&mut other).expect("a refusal");
    assert!(
        matches!(&answer, m::ServerHello::Refused { reason, .. } if reason.contains("was replaced")),
        "{answer:?}"
    );
    still_serves(dir.path(), 4);
    let stats = store.stats();
    assert_eq!(stats.revision, 5);
    drop((garbage, oversized, malformed, half, old, other));
    store.close().unwrap();
}

#[test]
fn a_thousand_idle_connections_do_not_stop_the_others() {
    const IDLE: usize = 1000;
    let dir = common::store_dir();
    let store = holder(dir.path());
    let id = store_id(&store);
    let mut idle: Vec<UnixStream> = (0..IDLE).map(|_| welcomed(dir.path(), &id)).collect();
    // Some that never say hello.
    idle.extend((0..20).map(|_| raw_connect(dir.path())));
    assert!(store.stats().clients >= IDLE as u64, "{:?}", store.stats());
    for n in 0..5 {
        still_serves(dir.path(), n);
    }
    // Closing the holder with them all idle ends them, and it does not wait
    // for them.
    let started = Instant::now();
    store.close().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut first = idle.swap_remove(0);
    assert!(closed_by_holder(&mut first));
    // The store is free again.
    let again = Store::open(dir.path(), Options::default().remote(false)).unwrap();
    assert_eq!(again.revision(), 5);
}

/// The child role: opens the store through the holder, starts a
/// transaction (its snapshot pinned in the holder), says so, and waits to be
/// killed.
fn child_in_a_transaction(dir: &str) -> ! {
    let store = Store::open(dir, Options::default().serve(false)).unwrap();
    assert!(!store.is_holder());
    let _ = store.transaction(|tx| {
        let _ = tx.get::<u64>("good", "k0")?;
        println!("IN A TRANSACTION");
        std::thread::sleep(Duration::from_secs(120));
        Ok::<_, statelog::Error>(())
    });
    std::process::exit(1)
}

#[test]
fn a_client_killed_in_a_transaction_releases_its_snapshot() {
    let test = "a_client_killed_in_a_transaction_releases_its_snapshot";
    if let Some((_, arg)) = common::child_role() {
        child_in_a_transaction(&arg);
    }
    let dir = common::store_dir();
    let store = holder(dir.path());
    store.put("good", "k0", &0u64).unwrap();
    let mut child = common::child_command(test, "transaction", dir.path().to_str().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The child's stdout also carries the test harness's lines.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let said = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("IN A TRANSACTION"));
    assert!(said.is_some(), "the child did not start its transaction");
    std::thread::spawn(move || lines.for_each(drop));
    let stats = store.stats();
    assert_eq!((stats.clients, stats.pinned), (1, 1), "{stats:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = store.stats();
        if stats.pinned == 0 && stats.clients == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot stayed pinned: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    still_serves(dir.path(), 1);
    // The holder's own writes go on, and nothing of the dead transaction is there.
    assert_eq!(store.put("good", "k0", &7u64).unwrap().version, 2);
}

/// Runs the command line as the unprivileged user 65534 on `store`.
fn as_nobody(store: &Path, args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let out = Command::new(env!("CARGO_BIN_EXE_statelog"))
        .arg("--store")
        .arg(store)
        .args(["--wait", "2"])
        .args(args)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .expect("run statelog as user 65534");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A peer of another user is refused: by the socket file's mode first, and
/// by the holder's check of the peer's credentials when the file lets it
/// through (here made world-connectable on purpose). A group the store
/// directory grants gets in.
#[test]
fn a_peer_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root: it runs the client as another user (uid 65534)"
    );
    use std::os::unix::fs::PermissionsExt;
    let base = common::store_dir();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = base.path().join("store");
    let store = holder(&dir);
    store.put("jobs", "j", &1).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.join("statelog.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The socket file's mode: the kernel refuses the connection.
    let (code, stderr) = as_nobody(&dir, &["get", "jobs", "j"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("refused this process"), "{stderr}");
    assert!(stderr.contains("may not connect to its socket"), "{stderr}");

    // A socket anyone may connect to: the holder refuses by credentials.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stderr) = as_nobody(&dir, &["get", "jobs", "j"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("user 65534 may not use this store"),
        "{stderr}"
    );
    let (code, stderr) = as_nobody(&dir, &["set", "jobs", "j", "2"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(store.get::<i32>("jobs", "j").unwrap().unwrap().value, 1);
    store.close().unwrap();

    // A store directory that grants its group read and write: the group's
    // members get in (the socket is the group's, 0660).
    std::os::unix::fs::chown(&dir, None, Some(65534)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let store = holder(&dir);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let (code, stderr) = as_nobody(&dir, &["incr", "jobs", "n", "c"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(store.revision(), 2);
    // A backup through the holder is written by the holder: not for another user.
    let dest = base.path().join("backup");
    let (code, stderr) = as_nobody(&dir, &["backup", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("backups through the holder"), "{stderr}");
    store.close().unwrap();
}
