//! The socket a holder serves on: where it is, how it is made, who may use it.
//!
//! The socket is `statelog.sock` inside the store directory, so the other
//! processes find it from the path they opened, without guessing. A socket
//! address holds at most 107 bytes of path; a longer store path is reached
//! through the directory opened as a file, `/proc/self/fd/<fd>/statelog.sock`
//! (Linux), which is short whatever the directory's path.
//!
//! Who may connect, in two layers: the socket file's mode (0600, or 0660 with
//! the directory's group when the directory grants its group read and write)
//! and owner (the directory's owner), checked by the kernel at `connect`; and
//! the peer's credentials (`SO_PEERCRED`), checked by the holder for every
//! connection: the directory's owner, root, the holder's own user, and, when
//! the directory grants its group, that group's members.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::layout::{SOCKET_BINDING_FILE as BINDING_FILE, SOCKET_FILE};

/// Longest path a socket address holds (108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A path to a file of a store directory that fits a socket address; keeps
/// the directory open for as long as the path is used.
struct ShortPath {
    path: PathBuf,
    _dir: Option<File>,
}

fn short_path(store: &Path, name: &str) -> io::Result<ShortPath> {
    let plain = store.join(name);
    if plain.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(ShortPath {
            path: plain,
            _dir: None,
        });
    }
    through_proc(store, name, &plain)
}

#[cfg(target_os = "linux")]
fn through_proc(store: &Path, name: &str, _plain: &Path) -> io::Result<ShortPath> {
    use std::os::fd::AsRawFd;
    let dir = File::open(store)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
    Ok(ShortPath {
        path,
        _dir: Some(dir),
    })
}

#[cfg(not(target_os = "linux"))]
fn through_proc(_store: &Path, _name: &str, plain: &Path) -> io::Result<ShortPath> {
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the socket path {} is longer than the {MAX_SOCKET_PATH} bytes a socket address holds; \
             use a shorter store path",
            plain.display()
        ),
    ))
}

/// Creates the store's socket, listening, with its mode and owner set before
/// anyone can find it: bound under a temporary name, then renamed over
/// `statelog.sock` (which replaces a stale one left by a holder that died).
/// Call only while holding the store's lock.
pub(crate) fn bind(store: &Path, access: &Access) -> io::Result<UnixListener> {
    let binding = store.join(BINDING_FILE);
    match std::fs::remove_file(&binding) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let short = short_path(store, BINDING_FILE)?;
    let listener = UnixListener::bind(&short.path)?;
    let placed = (|| {
        let mode = if access.group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(mode))?;
        // The directory's owner must be able to connect whoever holds the
        // store (root may hold a user's store); only root can give a file
        // away, so a failure here is expected elsewhere and harmless.
        if let Err(e) = std::os::unix::fs::chown(&binding, Some(access.owner), access.group) {
            tracing::debug!(error = %e, "cannot hand the socket to the store directory's owner");
        }
        std::fs::rename(&binding, store.join(SOCKET_FILE))
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&binding);
        return Err(e);
    }
    Ok(listener)
}

/// Removes the store's socket (when the holder stops serving).
pub(crate) fn remove(store: &Path) {
    let path = store.join(SOCKET_FILE);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), error = %e, "cannot remove the store's socket");
    }
}

/// Connects to the socket of the store at `store`.
pub(crate) fn connect(store: &Path) -> io::Result<UnixStream> {
    let short = short_path(store, SOCKET_FILE)?;
    UnixStream::connect(&short.path)
}

/// The socket's path, for messages.
pub(crate) fn socket_path(store: &Path) -> PathBuf {
    store.join(SOCKET_FILE)
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, where the kernel tells them.
    pub groups: Vec<u32>,
}

/// The credentials of the process at the other end of `stream`, as the
/// kernel recorded them when it connected.
#[cfg(target_os = "linux")]
pub(crate) fn peer(stream: &UnixStream) -> io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable ucred of `len` bytes, and `fd` is an
    // open socket for as long as `stream` lives.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: `groups` is a writable buffer of `len` bytes. Kernels before 4.13
    // do not know SO_PEERGROUPS; the primary group then decides alone.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    } else {
        groups.clear();
    }
    Ok(Peer {
        pid: u32::try_from(cred.pid).unwrap_or(0),
        uid: cred.uid,
        gid: cred.gid,
        groups,
    })
}

/// The credentials of the process at the other end of `stream`.
#[cfg(not(target_os = "linux"))]
pub(crate) fn peer(stream: &UnixStream) -> io::Result<Peer> {
    use std::os::fd::AsRawFd;
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: both out-parameters are valid; the descriptor is open.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: 0,
        uid,
        gid,
        groups: Vec::new(),
    })
}

/// Who may use a store's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    /// The store directory's owner.
    pub owner: u32,
    /// The directory's group, when the directory grants it read and write.
    pub group: Option<u32>,
    /// The holder's own (effective) user.
    pub holder: u32,
}

impl Access {
    /// The access the store directory `store` grants.
    pub(crate) fn of(store: &Path) -> io::Result<Access> {
        let meta = std::fs::metadata(store)?;
        let group_rw = meta.mode() & 0o060 == 0o060;
        Ok(Access {
            owner: meta.uid(),
            group: group_rw.then_some(meta.gid()),
            holder: effective_uid(),
        })
    }

    /// Whether `peer` may connect; the reason to give it when not.
    pub(crate) fn check(&self, peer: &Peer) -> Result<(), String> {
        if peer.uid == 0 || peer.uid == self.owner || peer.uid == self.holder {
            return Ok(());
        }
        if let Some(group) = self.group
            && (peer.gid == group || peer.groups.contains(&group))
        {
            return Ok(());
        }
        Err(format!(
            "user {} may not use this store: it belongs to user {}{}; run as that user, or \
             grant a group read and write access to the store directory and join it",
            peer.uid,
            self.owner,
            match self.group {
                Some(group) => format!(" and group {group}"),
                None => String::new(),
            }
        ))
    }
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Writes all of `buf` to `stream`. A peer that went away is an error
/// (`EPIPE`), never a `SIGPIPE` that would end this process, whatever the
/// process did with that signal (a library cannot know).
pub(crate) fn send_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length; `fd` is open for as
        // long as `stream` lives.
        let rc = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let sent = usize::try_from(rc).unwrap_or(0);
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the socket accepted no bytes",
            ));
        }
        buf = buf.get(sent..).unwrap_or_default();
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SEND_FLAGS: libc::c_int = 0;

/// Wakes a thread blocked in `accept` on `listener` (it returns an error),
/// so the server can stop without a connection arriving.
pub(crate) fn wake_accept(listener: &UnixListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown takes an open descriptor and a constant.
    unsafe {
        libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: Vec<u32>) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups,
        }
    }

    #[test]
    fn only_the_owner_root_the_holder_and_a_granted_group_may_connect() {
        let private = Access {
            owner: 1000,
            group: None,
            holder: 1000,
        };
        assert!(private.check(&peer(1000, 1000, vec![])).is_ok());
        assert!(private.check(&peer(0, 0, vec![])).is_ok());
        let refused = private.check(&peer(1001, 100, vec![100])).unwrap_err();
        assert!(refused.contains("user 1001"), "{refused}");
        assert!(refused.contains("belongs to user 1000"), "{refused}");
        let shared = Access {
            owner: 1000,
            group: Some(100),
            holder: 2000,
        };
        assert!(shared.check(&peer(2000, 2000, vec![])).is_ok());
        assert!(shared.check(&peer(1001, 100, vec![])).is_ok());
        assert!(shared.check(&peer(1001, 5, vec![7, 100])).is_ok());
        assert!(shared.check(&peer(1001, 5, vec![7])).is_err());
    }

    #[test]
    fn a_long_store_path_is_reached_through_its_directory() {
        let base = tempfile::tempdir().unwrap();
        let mut dir = base.path().to_owned();
        while dir.as_os_str().len() < 200 {
            dir = dir.join("a-rather-long-directory-name");
        }
        std::fs::create_dir_all(&dir).unwrap();
        let access = Access::of(&dir).unwrap();
        let listener = bind(&dir, &access).unwrap();
        assert!(dir.join(SOCKET_FILE).exists());
        let mode = std::fs::metadata(dir.join(SOCKET_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = connect(&dir).unwrap();
        let (server, _) = listener.accept().unwrap();
        let me = super::peer(&server).unwrap();
        assert_eq!(me.uid, effective_uid());
        assert_eq!(me.pid, std::process::id());
        send_all(&client, b"x").unwrap();
        remove(&dir);
        assert!(!dir.join(SOCKET_FILE).exists());
    }
}
