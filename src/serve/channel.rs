//! Messages over a connection: framing (`wire::frame`) on a Unix stream, with
//! the waits each side allows.
//!
//! The client's stream carries a read timeout (its wait), so every read of an
//! answer is bounded by silence, not by the length of the request. The
//! holder waits without limit between messages (an idle client costs a
//! sleeping thread), but once a message has begun, the rest of it must come
//! within the wait: a half-sent message closes the connection.
//!
//! Waiting for a message that usually comes at once (the answer to a read,
//! the next request of a busy client) may poll the socket for a short window
//! before sleeping: waking a sleeping thread costs far more than the work of
//! a small request (an interrupt to the other core and, in a VM, an exit).
//! Each kind of wait ([`Wait`]) polls only while its last message came
//! within the window, and stops as soon as a yield between two tries gives
//! the core to another thread, so waits that are long anyway (a sync, an
//! idle client) and machines whose cores are all wanted (many processes
//! sharing few cores) sleep at once.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::socket;
use crate::wire::frame::{self, Assembler, FrameError, HEADER_LEN};
use crate::wire::message;

/// The input buffer to start with: most messages are a few hundred bytes
/// (a short-lived client should not pay for touching more).
const FIRST_BUFFER: usize = 4 << 10;
/// Bytes read from the socket at a time (at least) once a message needs more.
const READ_CHUNK: usize = 64 << 10;
/// Buffers grown beyond this for a large message are given back after it.
const KEEP_BUFFER: usize = 1 << 20;

/// How long a wait may poll the socket before it sleeps.
const SPIN_WINDOW: Duration = Duration::from_micros(40);

/// A yield longer than this ran another thread: the machine is busy.
const GAVE_AWAY: Duration = Duration::from_micros(10);

/// Threads of this process polling now.
static POLLING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A turn to poll: one core is left for the threads doing the work (in a
/// holder, many connection threads may wait at once).
struct Poller;

impl Poller {
    fn enter() -> Option<Poller> {
        use std::sync::atomic::Ordering;
        static MOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let most = *MOST.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        });
        if POLLING.fetch_add(1, Ordering::Relaxed) < most {
            Some(Poller)
        } else {
            POLLING.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How polling for a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polled {
    /// Bytes arrived.
    Arrived,
    /// Nothing within the window.
    Nothing,
    /// Another thread wanted the core.
    Crowded,
}

/// What a receiver waits for; each kind learns on its own whether its
/// messages come within the polling window.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// The answer to a request that changes nothing (a read).
    Answer = 0,
    /// The answer to a commit (a sync, unless durability is relaxed).
    Commit = 1,
    /// The holder waiting for a client's next request.
    Request = 2,
}

/// Why no message was received.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The other side closed the connection between messages.
    Closed,
    /// The connection ended inside a message.
    Cut,
    /// Nothing arrived within the wait.
    Timeout,
    /// A frame header is invalid or the message too large.
    Frame(FrameError),
    /// The message is not what was expected.
    Malformed(String),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Closed => f.write_str("the connection was closed"),
            RecvError::Cut => f.write_str("the connection ended inside a message"),
            RecvError::Timeout => f.write_str("nothing arrived within the wait"),
            RecvError::Frame(e) => write!(f, "an invalid frame: {e}"),
            RecvError::Malformed(why) => write!(f, "a malformed message: {why}"),
            RecvError::Io(e) => write!(f, "the socket failed: {e}"),
        }
    }
}

/// One end of a connection.
pub(crate) struct Channel {
    stream: UnixStream,
    /// Bytes read and not yet used: `input[start..end]`.
    input: Vec<u8>,
    start: usize,
    end: usize,
    output: Vec<u8>,
    /// The holder's limit for the rest of a message once it began; `None` on
    /// the client, whose stream always has a read timeout.
    mid_message: Option<Duration>,
    /// Whether the stream's read timeout is set for a message in progress.
    armed: bool,
    /// Per [`Wait`]: whether its last message came within the window.
    quick: [bool; 3],
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").finish_non_exhaustive()
    }
}

impl Channel {
    /// A channel over `stream`; `mid_message` as described on the field.
    pub(crate) fn new(stream: UnixStream, mid_message: Option<Duration>) -> Channel {
        Channel {
            stream,
            input: vec![0; FIRST_BUFFER],
            start: 0,
            end: 0,
            output: Vec::new(),
            mid_message,
            armed: false,
            quick: [false; 3],
        }
    }

    /// The stream (to shut it down, or to clone it for progress messages).
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends one message.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] (nothing was sent); the socket's error
    /// (`EPIPE` when the other side is gone: the message did not arrive whole).
    pub(crate) fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), SendError> {
        encode(msg, &mut self.output)?;
        let sent = socket::send_all(&self.stream, &self.output);
        if self.output.capacity() > KEEP_BUFFER {
            self.output = Vec::new();
        }
        sent.map_err(SendError::Io)
    }

    /// Receives one message and decodes it as `T`.
    ///
    /// # Errors
    /// See [`RecvError`].
    pub(crate) fn receive<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.receive_within(frame::MAX_MESSAGE)
    }

    /// Receives one message as [`receive`](Self::receive) does, polling
    /// first when this kind of wait has lately been short.
    ///
    /// # Errors
    /// See [`RecvError`].
    pub(crate) fn receive_for<T: DeserializeOwned>(&mut self, wait: Wait) -> Result<T, RecvError> {
        if self.start == self.end {
            let started = std::time::Instant::now();
            let polled = match self.quick[wait as usize].then(Poller::enter).flatten() {
                Some(_poller) => self.poll(started)?,
                None => Polled::Nothing,
            };
            if polled != Polled::Arrived {
                self.fill(1, false)?;
            }
            self.quick[wait as usize] =
                polled != Polled::Crowded && started.elapsed() <= SPIN_WINDOW;
        }
        self.receive()
    }

    /// Polls the socket for up to the window from `started`. Between tries
    /// the thread yields; a yield that gave the core away (another thread was
    /// waiting for it) ends the polling: the cores are wanted elsewhere.
    fn poll(&mut self, started: std::time::Instant) -> Result<Polled, RecvError> {
        use std::os::fd::AsRawFd;
        let fd = self.stream.as_raw_fd();
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.end = 0;
        loop {
            let buf = &mut self.input[..];
            // SAFETY: `buf` is valid for writes of its length; `fd` is open
            // for as long as `self.stream` lives.
            let rc =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            match usize::try_from(rc) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => {
                    self.end = n;
                    return Ok(Polled::Arrived);
                }
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                        _ => return Err(RecvError::Io(e)),
                    }
                }
            }
            let before = std::time::Instant::now();
            if before.duration_since(started) > SPIN_WINDOW {
                return Ok(Polled::Nothing);
            }
            std::thread::yield_now();
            if before.elapsed() > GAVE_AWAY {
                return Ok(Polled::Crowded);
            }
        }
    }

    /// Receives one message of at most `limit` bytes and decodes it as `T`
    /// (a hello is small: a peer not yet accepted cannot make the holder
    /// allocate much).
    pub(crate) fn receive_within<T: DeserializeOwned>(
        &mut self,
        limit: usize,
    ) -> Result<T, RecvError> {
        let bytes = self.receive_bytes(limit)?;
        message::decode(&bytes).map_err(RecvError::Malformed)
    }

    /// Receives one message's bytes.
    fn receive_bytes(&mut self, limit: usize) -> Result<Vec<u8>, RecvError> {
        let mut assembler = Assembler::default();
        let message = loop {
            let started = assembler.in_progress();
            self.fill(HEADER_LEN, started)?;
            let head: &[u8; HEADER_LEN] = self.input[self.start..self.start + HEADER_LEN]
                .try_into()
                .map_err(|_| RecvError::Cut)?;
            let header = frame::decode_header(head).map_err(RecvError::Frame)?;
            assembler.admit(&header).map_err(RecvError::Frame)?;
            let total = assembler.held() + header.len;
            if total > limit {
                return Err(RecvError::Frame(FrameError::MessageTooLarge(total as u64)));
            }
            self.fill(HEADER_LEN + header.len, true)?;
            let body = &self.input[self.start + HEADER_LEN..self.start + HEADER_LEN + header.len];
            let done = assembler.push(&header, body).map_err(RecvError::Frame)?;
            self.start += HEADER_LEN + header.len;
            if let Some(message) = done {
                break message;
            }
        };
        if self.armed {
            self.stream.set_read_timeout(None).map_err(RecvError::Io)?;
            self.armed = false;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.input.len() > KEEP_BUFFER {
                self.input = vec![0; FIRST_BUFFER];
            }
        }
        Ok(message)
    }

    /// Makes `want` unread bytes available; `started` when a message has
    /// begun (an end of the connection is then a cut, and the holder's
    /// mid-message limit applies).
    fn fill(&mut self, want: usize, started: bool) -> Result<(), RecvError> {
        while self.end - self.start < want {
            if self.start + want > self.input.len() {
                self.input.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if want > self.input.len() {
                    self.input.resize(want.max(READ_CHUNK), 0);
                }
            }
            let begun = started || self.end > self.start;
            if begun
                && !self.armed
                && let Some(limit) = self.mid_message
            {
                self.stream
                    .set_read_timeout(Some(limit))
                    .map_err(RecvError::Io)?;
                self.armed = true;
            }
            match self.stream.read(&mut self.input[self.end..]) {
                Ok(0) if begun => return Err(RecvError::Cut),
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvError::Timeout);
                }
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
        Ok(())
    }
}

/// Why a message was not sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// It is larger than a message may be; nothing was sent.
    TooLarge(FrameError),
    /// The socket failed (the message did not arrive whole).
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TooLarge(e) => write!(f, "{e}"),
            SendError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Encodes `msg` as a framed message into `out` (replacing its content).
pub(crate) fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), SendError> {
    frame::begin_message(out);
    message::encode_into(msg, out).map_err(|e| SendError::Io(io::Error::other(e)))?;
    frame::finish_message(out).map_err(SendError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::Request;

    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (Channel::new(a, None), Channel::new(b, None))
    }

    #[test]
    fn a_wait_polls_only_after_a_quick_message_and_sleeps_when_it_does_not_come() {
        let (mut waiting, mut sending) = pair();
        // Nothing learned yet: the first wait sleeps, and its message, sent
        // before, comes at once: the next wait of this kind polls.
        sending.send(&Request::Revision).unwrap();
        assert!(!waiting.quick[Wait::Answer as usize]);
        assert_eq!(
            waiting.receive_for::<Request>(Wait::Answer).unwrap(),
            Request::Revision
        );
        assert!(waiting.quick[Wait::Answer as usize]);
        assert!(!waiting.quick[Wait::Commit as usize]);
        // A message that comes long after the window: polling gives up,
        // the wait sleeps, the message still arrives whole, and this kind of
        // wait no longer polls.
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            sending.send(&Request::Checkpoint).unwrap();
            sending
        });
        assert_eq!(
            waiting.receive_for::<Request>(Wait::Answer).unwrap(),
            Request::Checkpoint
        );
        assert!(!waiting.quick[Wait::Answer as usize]);
        let mut sending = late.join().unwrap();
        // A polled read that takes in more than one message keeps the rest
        // for the next receive.
        sending.send(&Request::Stats).unwrap();
        sending.send(&Request::Pin).unwrap();
        waiting.quick[Wait::Answer as usize] = true;
        assert_eq!(
            waiting.poll(std::time::Instant::now()).unwrap(),
            Polled::Arrived
        );
        assert_eq!(waiting.receive::<Request>().unwrap(), Request::Stats);
        assert_eq!(
            waiting.receive_for::<Request>(Wait::Answer).unwrap(),
            Request::Pin
        );
    }

    #[test]
    fn a_polling_wait_sees_the_other_side_close() {
        let (mut waiting, sending) = pair();
        waiting.quick[Wait::Request as usize] = true;
        drop(sending);
        assert!(matches!(
            waiting.receive_for::<Request>(Wait::Request),
            Err(RecvError::Closed)
        ));
    }

    #[test]
    fn a_message_cut_while_polling_is_a_cut() {
        let (mut waiting, sending) = pair();
        let mut bytes = Vec::new();
        encode(&Request::Stats, &mut bytes).unwrap();
        socket::send_all(sending.stream(), &bytes[..bytes.len() - 1]).unwrap();
        drop(sending);
        waiting.quick[Wait::Answer as usize] = true;
        assert!(matches!(
            waiting.receive_for::<Request>(Wait::Answer),
            Err(RecvError::Cut)
        ));
    }
}
