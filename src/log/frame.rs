//! The frame: how one log record is laid out in a segment. Pure codec, no I/O.
//!
//! ```text
//!  0        4        8        12                12+len
//!  +--------+--------+--------+-----------------+
//!  |  len   |  crc   |  hcrc  |  payload (len)  |
//!  +--------+--------+--------+-----------------+
//!  len   u32 LE  payload length, 1 ..= MAX_FRAME_PAYLOAD
//!  crc   u32 LE  CRC-32 (IEEE) of the payload
//!  hcrc  u32 LE  CRC-32 of bytes 0..8, so a damaged length is caught before the
//!                payload is read, and a scan can find frame starts cheaply
//! ```
//!
//! An all-zero header is never a valid frame (len 0 is out of range): it marks the
//! end of the written part of a preallocated segment.

/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest payload a frame may carry. Larger commits are split into parts.
pub const MAX_FRAME_PAYLOAD: usize = 64 << 20;

const LEN_AT: usize = 0;
const CRC_AT: usize = 4;
const HCRC_AT: usize = 8;

/// What a header says, once its own checksum has been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Expected CRC-32 of the payload.
    pub crc: u32,
}

impl Header {
    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.len as usize
    }
}

/// Why a header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// All twelve bytes are zero: the unwritten end of a segment.
    Zero,
    /// The header's checksum does not match.
    Checksum,
    /// The checksum matches but the length is 0 or above the maximum.
    Length(u32),
}

impl HeaderError {
    /// Says what is wrong, for error messages.
    pub fn describe(&self) -> String {
        match self {
            HeaderError::Zero => "zero bytes where a frame header was expected".to_owned(),
            HeaderError::Checksum => "the frame header's checksum does not match".to_owned(),
            HeaderError::Length(len) => {
                format!("the frame header gives an impossible length of {len} bytes")
            }
        }
    }
}

fn read_u32(bytes: &[u8; FRAME_HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks and decodes a frame header.
pub fn decode_header(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<Header, HeaderError> {
    if bytes.iter().all(|b| *b == 0) {
        return Err(HeaderError::Zero);
    }
    let hcrc = read_u32(bytes, HCRC_AT);
    if crc32fast::hash(&bytes[..HCRC_AT]) != hcrc {
        return Err(HeaderError::Checksum);
    }
    let len = read_u32(bytes, LEN_AT);
    if len == 0 || len as usize > MAX_FRAME_PAYLOAD {
        return Err(HeaderError::Length(len));
    }
    Ok(Header {
        len,
        crc: read_u32(bytes, CRC_AT),
    })
}

/// Whether a payload matches the checksum of its header.
pub fn payload_matches(header: &Header, payload: &[u8]) -> bool {
    payload.len() == header.len as usize && crc32fast::hash(payload) == header.crc
}

/// Starts a frame at the end of `out`: reserves the header. Append the payload,
/// then call [`finish`] with the returned start.
pub fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    start
}

/// Fills in the header of the frame begun at `start`, whose payload is everything
/// after the header. Fails (leaving `out` as it was before `begin`) when the
/// payload is empty or too large.
pub fn finish(out: &mut Vec<u8>, start: usize) -> Result<(), usize> {
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    if payload_len == 0 || payload_len > MAX_FRAME_PAYLOAD {
        out.truncate(start);
        return Err(payload_len);
    }
    let len = payload_len as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_LEN..]);
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[LEN_AT..CRC_AT].copy_from_slice(&len.to_le_bytes());
    header[CRC_AT..HCRC_AT].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&header[..HCRC_AT]);
    header[HCRC_AT..].copy_from_slice(&hcrc.to_le_bytes());
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

/// Encodes one frame around `payload`.
#[cfg_attr(not(any(test, feature = "testkit")), allow(dead_code))]
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    let start = begin(&mut out);
    out.extend_from_slice(payload);
    finish(&mut out, start)?;
    Ok(out)
}

/// The result of decoding the frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete, verified frame.
    Frame {
        /// The payload.
        payload: &'a [u8],
        /// Bytes the frame takes, header included.
        frame_len: usize,
    },
    /// The buffer ends before the frame does (`needed` bytes in all).
    Incomplete {
        /// Bytes the frame would need; `None` while the header itself is incomplete.
        needed: Option<usize>,
    },
    /// The header is unusable.
    BadHeader(HeaderError),
    /// The header is good but the payload's checksum does not match.
    BadPayload {
        /// Bytes the frame takes according to its header.
        frame_len: usize,
    },
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(head) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Decoded::Incomplete { needed: None };
    };
    let header = match decode_header(head) {
        Ok(header) => header,
        Err(e) => return Decoded::BadHeader(e),
    };
    let frame_len = header.frame_len();
    let Some(payload) = buf.get(FRAME_HEADER_LEN..frame_len) else {
        return Decoded::Incomplete {
            needed: Some(frame_len),
        };
    };
    if payload_matches(&header, payload) {
        Decoded::Frame { payload, frame_len }
    } else {
        Decoded::BadPayload { frame_len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let framed = encode(b"hello").unwrap();
        assert_eq!(framed.len(), FRAME_HEADER_LEN + 5);
        assert_eq!(
            decode(&framed),
            Decoded::Frame {
                payload: b"hello",
                frame_len: 17
            }
        );
    }

    #[test]
    fn rejects_empty_payload() {
        assert_eq!(encode(b""), Err(0));
        let mut out = vec![1, 2];
        let start = begin(&mut out);
        assert!(finish(&mut out, start).is_err());
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn zero_header_marks_the_end() {
        assert_eq!(decode(&[0; 64]), Decoded::BadHeader(HeaderError::Zero));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let framed = encode(b"some payload bytes").unwrap();
        for byte in 0..framed.len() {
            for bit in 0..8 {
                let mut damaged = framed.clone();
                damaged[byte] ^= 1 << bit;
                match decode(&damaged) {
                    Decoded::Frame { .. } => panic!("flip at {byte}:{bit} not caught"),
                    Decoded::BadHeader(_) | Decoded::BadPayload { .. } => {}
                    Decoded::Incomplete { .. } => {}
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let framed = encode(b"some payload bytes").unwrap();
        for cut in 0..framed.len() {
            assert!(
                matches!(decode(&framed[..cut]), Decoded::Incomplete { .. }),
                "cut at {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 1..2048),
                             tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut framed = encode(&payload).unwrap();
            let len = framed.len();
            framed.extend_from_slice(&tail);
            prop_assert_eq!(decode(&framed), Decoded::Frame { payload: &payload, frame_len: len });
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
