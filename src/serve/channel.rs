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
//! the core to another thread, so waits that are long anyway (an idle
//! client) and machines whose cores are all wanted (many processes sharing
//! few cores) sleep at once.
//!
//! A commit's answer comes after a sync, so its wait learns differently: it
//! polls only when the holder said the last commit ran alone (no other
//! request in the holder meanwhile: one writer, a core to spare) and that
//! answer came within [`COMMIT_POLL_MOST`], and then for about as long as
//! that answer took ([`commit_window`]). Many writers sharing the holder
//! sleep, leaving the cores to the group commit.

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

/// The longest a commit's answer may have taken for the next one to be
/// polled for: beyond it, a wake-up (tens of µs) is a small part of the
/// wait, and polling would hold a core for little.
pub(crate) const COMMIT_POLL_MOST: Duration = Duration::from_micros(500);

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
    /// Per [`Wait`]: how long its next wait may poll (zero: it sleeps).
    window: [Duration; 3],
    /// How long the last commit's answer took, and whether a yield gave the
    /// core away while it was polled for.
    last_commit: (Duration, bool),
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
            window: [Duration::ZERO; 3],
            last_commit: (Duration::MAX, false),
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
    /// first when this kind of wait has lately been short (for a commit's
    /// answer: when [`commit_answered`](Self::commit_answered) said so).
    ///
    /// # Errors
    /// See [`RecvError`].
    pub(crate) fn receive_for<T: DeserializeOwned>(&mut self, wait: Wait) -> Result<T, RecvError> {
        if self.start == self.end {
            let started = std::time::Instant::now();
            let window = self.window[wait as usize];
            let turn = (!window.is_zero())
                .then(crate::poll_turn::PollTurn::enter)
                .flatten();
            let polled = match turn {
                Some(_poller) => self.poll(started, window)?,
                None => Polled::Nothing,
            };
            if polled != Polled::Arrived {
                self.fill(1, false)?;
            }
            let took = started.elapsed();
            let crowded = polled == Polled::Crowded;
            self.window[wait as usize] = match wait {
                Wait::Commit => {
                    self.last_commit = (took, crowded);
                    Duration::ZERO
                }
                Wait::Answer | Wait::Request if !crowded && took <= SPIN_WINDOW => SPIN_WINDOW,
                Wait::Answer | Wait::Request => Duration::ZERO,
            };
        }
        self.receive()
    }

    /// Takes in the holder's word on the commit just answered: `alone` when
    /// no other request was in the holder while it ran. Decides how long the
    /// next commit's answer is polled for ([`commit_window`]).
    pub(crate) fn commit_answered(&mut self, alone: bool) {
        let (took, crowded) = self.last_commit;
        self.window[Wait::Commit as usize] = commit_window(alone, took, crowded);
    }

    /// Polls the socket for up to `window` from `started`. Between tries
    /// the thread yields; a yield that gave the core away (another thread was
    /// waiting for it) ends the polling: the cores are wanted elsewhere.
    fn poll(&mut self, started: std::time::Instant, window: Duration) -> Result<Polled, RecvError> {
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
            if started.elapsed() > window {
                return Ok(Polled::Nothing);
            }
            if crate::poll_turn::yield_gave_core_away() {
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

/// How long to poll for the next commit's answer, from the last one: only
/// when the holder ran it `alone`, its answer came within
/// [`COMMIT_POLL_MOST`] (`took`) and no yield gave the core away meanwhile;
/// then for as long again as it took, and a little more (a sync's time
/// varies), within that bound.
pub(crate) fn commit_window(alone: bool, took: Duration, crowded: bool) -> Duration {
    if !alone || crowded || took > COMMIT_POLL_MOST {
        return Duration::ZERO;
    }
    (took + took / 2 + SPIN_WINDOW / 2).min(COMMIT_POLL_MOST)
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

    /// Whether the next wait of this kind polls before it sleeps.
    fn polls(channel: &Channel, wait: Wait) -> bool {
        !channel.window[wait as usize].is_zero()
    }

    #[test]
    fn a_wait_polls_only_after_a_quick_message_and_sleeps_when_it_does_not_come() {
        let (mut waiting, mut sending) = pair();
        // Nothing learned yet: the first wait sleeps, and its message, sent
        // before, comes at once: the next wait of this kind polls. (On a
        // loaded machine a receive may be preempted past the window, which
        // rightly teaches it not to poll: a few tries.)
        assert!(!polls(&waiting, Wait::Answer));
        let mut learned = false;
        for _ in 0..100 {
            sending.send(&Request::Revision).unwrap();
            assert_eq!(
                waiting.receive_for::<Request>(Wait::Answer).unwrap(),
                Request::Revision
            );
            if polls(&waiting, Wait::Answer) {
                learned = true;
                break;
            }
        }
        assert!(
            learned,
            "a message that came at once never made the next wait poll"
        );
        assert!(!polls(&waiting, Wait::Commit));
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
        assert!(!polls(&waiting, Wait::Answer));
        let mut sending = late.join().unwrap();
        // A polled read that takes in more than one message keeps the rest
        // for the next receive.
        sending.send(&Request::Stats).unwrap();
        sending.send(&Request::Pin).unwrap();
        waiting.window[Wait::Answer as usize] = SPIN_WINDOW;
        assert_eq!(
            waiting
                .poll(std::time::Instant::now(), SPIN_WINDOW)
                .unwrap(),
            Polled::Arrived
        );
        assert_eq!(waiting.receive::<Request>().unwrap(), Request::Stats);
        assert_eq!(
            waiting.receive_for::<Request>(Wait::Answer).unwrap(),
            Request::Pin
        );
    }

    #[test]
    fn a_commit_answer_is_polled_for_only_after_the_holder_said_alone() {
        use crate::wire::message::{Reply, Response};
        let answer = |alone| {
            Response::Reply(Reply::Committed {
                revision: Some(1),
                writes: Vec::new(),
                alone,
            })
        };
        let (mut waiting, mut sending) = pair();
        // A commit's answer teaches nothing by itself, however quick.
        sending.send(&answer(true)).unwrap();
        assert!(!polls(&waiting, Wait::Commit));
        let got: Response = waiting.receive_for(Wait::Commit).unwrap();
        assert_eq!(got, answer(true));
        assert!(!polls(&waiting, Wait::Commit));
        // Told it ran alone, and it came quickly: the next one is polled for
        // (a few tries: a receive preempted past the bound rightly is not).
        waiting.commit_answered(true);
        for _ in 0..100 {
            if polls(&waiting, Wait::Commit) {
                break;
            }
            sending.send(&answer(true)).unwrap();
            let got: Response = waiting.receive_for(Wait::Commit).unwrap();
            assert_eq!(got, answer(true));
            waiting.commit_answered(true);
        }
        assert!(polls(&waiting, Wait::Commit));
        assert!(waiting.window[Wait::Commit as usize] <= COMMIT_POLL_MOST);
        // Reads keep their own learning.
        assert!(!polls(&waiting, Wait::Answer));
        // Told otherwise after an answer as quick: it sleeps.
        sending.send(&answer(false)).unwrap();
        let got: Response = waiting.receive_for(Wait::Commit).unwrap();
        assert_eq!(got, answer(false));
        waiting.commit_answered(false);
        assert!(!polls(&waiting, Wait::Commit));
        // Alone, but the answer came long after the polling bound (a slow
        // sync): polling gave up, the answer still arrived whole, and the
        // next one is slept for.
        waiting.window[Wait::Commit as usize] = COMMIT_POLL_MOST;
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            sending.send(&answer(true)).unwrap();
            sending
        });
        let got: Response = waiting.receive_for(Wait::Commit).unwrap();
        assert_eq!(got, answer(true));
        waiting.commit_answered(true);
        assert!(!polls(&waiting, Wait::Commit));
        drop(late.join().unwrap());
    }

    #[test]
    fn the_commit_window_follows_the_last_answer_within_its_bound() {
        let quick = Duration::from_micros(100);
        let window = commit_window(true, quick, false);
        assert!(window > quick && window <= COMMIT_POLL_MOST, "{window:?}");
        assert_eq!(commit_window(false, quick, false), Duration::ZERO);
        assert_eq!(commit_window(true, quick, true), Duration::ZERO);
        let slow = COMMIT_POLL_MOST + Duration::from_micros(1);
        assert_eq!(commit_window(true, slow, false), Duration::ZERO);
        assert_eq!(
            commit_window(true, COMMIT_POLL_MOST, false),
            COMMIT_POLL_MOST
        );
    }

    #[test]
    fn a_polling_wait_sees_the_other_side_close() {
        let (mut waiting, sending) = pair();
        waiting.window[Wait::Request as usize] = SPIN_WINDOW;
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
        waiting.window[Wait::Answer as usize] = SPIN_WINDOW;
        assert!(matches!(
            waiting.receive_for::<Request>(Wait::Answer),
            Err(RecvError::Cut)
        ));
    }
}
