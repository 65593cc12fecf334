//! Frames on a connection between a store's holder and another process: a
//! length, flags, and a part of one message. Pure codec: no I/O here.
//!
//! ```text
//!  0        4       5
//!  +--------+-------+-----------------------+
//!  |  len   | flags |  body (len bytes)     |
//!  +--------+-------+-----------------------+
//!  len u32 LE, at most MAX_FRAME_BODY; flags bit 0 = MORE (the message continues
//!  in the next frame); the other bits must be zero.
//! ```
//!
//! A message is the bodies of consecutive frames up to and including the first
//! one without MORE, at most [`MAX_MESSAGE`] bytes in all. Both limits are
//! checked from the header, before anything is allocated for the body. There
//! is no checksum: the kernel's socket buffers do not damage data, and the
//! body is a MessagePack document that is decoded and checked anyway.

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 5;
/// The largest body of one frame.
pub const MAX_FRAME_BODY: usize = 16 << 20;
/// The largest message (all its frames' bodies together).
pub const MAX_MESSAGE: usize = 1 << 30;

const LEN_AT: usize = 0;
const FLAGS_AT: usize = 4;
const MORE: u8 = 1;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes of body that follow the header.
    pub len: usize,
    /// The message continues in the next frame.
    pub more: bool,
}

/// Why bytes are not a valid frame or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame's body is longer than [`MAX_FRAME_BODY`].
    FrameTooLarge(u64),
    /// Flags with bits this version does not know.
    UnknownFlags(u8),
    /// The message would grow beyond [`MAX_MESSAGE`].
    MessageTooLarge(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::FrameTooLarge(len) => {
                write!(f, "a frame of {len} bytes (the limit is {MAX_FRAME_BODY})")
            }
            FrameError::UnknownFlags(flags) => write!(f, "unknown frame flags {flags:#04x}"),
            FrameError::MessageTooLarge(len) => {
                write!(f, "a message of {len} bytes (the limit is {MAX_MESSAGE})")
            }
        }
    }
}

/// Decodes a frame header.
///
/// # Errors
/// [`FrameError::FrameTooLarge`], [`FrameError::UnknownFlags`].
pub fn decode_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let len = u32::from_le_bytes([
        bytes[LEN_AT],
        bytes[LEN_AT + 1],
        bytes[LEN_AT + 2],
        bytes[LEN_AT + 3],
    ]);
    let flags = bytes[FLAGS_AT];
    if flags & !MORE != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let len = len as usize;
    if len > MAX_FRAME_BODY {
        return Err(FrameError::FrameTooLarge(len as u64));
    }
    Ok(Header {
        len,
        more: flags & MORE != 0,
    })
}

fn header(len: usize, more: bool) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[LEN_AT..LEN_AT + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[FLAGS_AT] = if more { MORE } else { 0 };
    out
}

/// Starts a message in `buf`: room for the first header, which
/// [`finish_message`] fills in once the body has been appended.
pub fn begin_message(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_LEN]);
}

/// Turns `buf` (a reserved header, as [`begin_message`] left it, then the
/// body) into the frames that carry the body: one when it fits, else parts of
/// [`MAX_FRAME_BODY`] bytes.
///
/// # Errors
/// [`FrameError::MessageTooLarge`]; `buf` is then left as it was.
pub fn finish_message(buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let body_len = buf.len().saturating_sub(HEADER_LEN);
    if body_len > MAX_MESSAGE {
        return Err(FrameError::MessageTooLarge(body_len as u64));
    }
    if body_len <= MAX_FRAME_BODY {
        buf[..HEADER_LEN].copy_from_slice(&header(body_len, false));
        return Ok(());
    }
    let body = buf.split_off(HEADER_LEN);
    buf.clear();
    let mut parts = body.chunks(MAX_FRAME_BODY).peekable();
    while let Some(part) = parts.next() {
        buf.extend_from_slice(&header(part.len(), parts.peek().is_some()));
        buf.extend_from_slice(part);
    }
    Ok(())
}

#[cfg(any(test, feature = "testkit"))]
/// Frames a whole message body (for tests and the fuzz target; the
/// connections encode in place with [`begin_message`] and [`finish_message`]).
///
/// # Errors
/// [`FrameError::MessageTooLarge`].
pub fn encode(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
    begin_message(&mut buf);
    buf.extend_from_slice(body);
    finish_message(&mut buf)?;
    Ok(buf)
}

/// Gathers the bodies of a message's frames.
#[derive(Debug, Default)]
pub struct Assembler {
    body: Vec<u8>,
    started: bool,
}

impl Assembler {
    /// Checks a frame header against what the message holds so far; call
    /// before reading the frame's body.
    ///
    /// # Errors
    /// [`FrameError::MessageTooLarge`] if the body would not fit the limit.
    pub fn admit(&self, header: &Header) -> Result<(), FrameError> {
        check_total(self.body.len(), header.len)
    }

    /// Adds a frame's body; returns the whole message once its last frame
    /// arrived.
    ///
    /// # Errors
    /// [`FrameError::MessageTooLarge`].
    pub fn push(&mut self, header: &Header, body: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        self.admit(header)?;
        self.started = true;
        self.body.extend_from_slice(body);
        if header.more {
            return Ok(None);
        }
        self.started = false;
        Ok(Some(std::mem::take(&mut self.body)))
    }

    /// Bytes of the message so far.
    pub fn held(&self) -> usize {
        self.body.len()
    }

    /// True while a message has some but not all of its frames.
    pub fn in_progress(&self) -> bool {
        self.started
    }
}

fn check_total(held: usize, more: usize) -> Result<(), FrameError> {
    let total = held as u64 + more as u64;
    if total > MAX_MESSAGE as u64 {
        return Err(FrameError::MessageTooLarge(total));
    }
    Ok(())
}

#[cfg(any(test, feature = "testkit"))]
/// Splits `bytes` into messages, as a connection would read them: each
/// complete message's body, then what stopped the split (`None` when the
/// bytes ended between messages). For the fuzz target and tests.
pub fn split(mut bytes: &[u8]) -> (Vec<Vec<u8>>, Option<String>) {
    let mut out = Vec::new();
    let mut assembler = Assembler::default();
    loop {
        let Some((head, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            let stop = (!bytes.is_empty() || assembler.in_progress())
                .then(|| "the input ends inside a frame".to_owned());
            return (out, stop);
        };
        let header = match decode_header(head).and_then(|h| assembler.admit(&h).map(|()| h)) {
            Ok(header) => header,
            Err(e) => return (out, Some(e.to_string())),
        };
        let Some(body) = rest.get(..header.len) else {
            return (out, Some("the input ends inside a frame".to_owned()));
        };
        bytes = &rest[header.len..];
        match assembler.push(&header, body) {
            Ok(Some(message)) => out.push(message),
            Ok(None) => {}
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_message_is_one_frame() {
        let framed = encode(b"hello").unwrap();
        assert_eq!(framed.len(), HEADER_LEN + 5);
        assert_eq!(&framed[..4], &5u32.to_le_bytes());
        assert_eq!(framed[4], 0);
        assert_eq!(split(&framed), (vec![b"hello".to_vec()], None));
    }

    #[test]
    fn a_large_message_goes_in_parts_and_comes_back_whole() {
        let body: Vec<u8> = (0..MAX_FRAME_BODY * 2 + 7).map(|i| i as u8).collect();
        let framed = encode(&body).unwrap();
        assert_eq!(framed.len(), body.len() + 3 * HEADER_LEN);
        let first = decode_header(framed[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((first.len, first.more), (MAX_FRAME_BODY, true));
        let (messages, stop) = split(&framed);
        assert_eq!(stop, None);
        assert_eq!(messages, vec![body]);
    }

    #[test]
    fn oversized_frames_and_unknown_flags_are_refused_from_the_header() {
        let mut head = [0u8; HEADER_LEN];
        head[..4].copy_from_slice(&((MAX_FRAME_BODY + 1) as u32).to_le_bytes());
        assert_eq!(
            decode_header(&head),
            Err(FrameError::FrameTooLarge(MAX_FRAME_BODY as u64 + 1))
        );
        head[..4].copy_from_slice(&1u32.to_le_bytes());
        head[4] = 2;
        assert_eq!(decode_header(&head), Err(FrameError::UnknownFlags(2)));
    }

    #[test]
    fn a_message_beyond_the_limit_is_refused_before_its_body_is_read() {
        assert!(check_total(MAX_MESSAGE - MAX_FRAME_BODY, MAX_FRAME_BODY).is_ok());
        assert_eq!(
            check_total(MAX_MESSAGE - MAX_FRAME_BODY + 1, MAX_FRAME_BODY),
            Err(FrameError::MessageTooLarge(MAX_MESSAGE as u64 + 1))
        );
    }

    #[test]
    fn a_cut_input_says_so() {
        let framed = encode(b"hello").unwrap();
        let (messages, stop) = split(&framed[..7]);
        assert!(messages.is_empty());
        assert!(stop.unwrap().contains("ends inside"));
    }
}
