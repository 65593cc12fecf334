//! The `wire_decode` fuzz body: arbitrary bytes as a connection's input.

use crate::wire::message::{self, ClientHello, Request, Response, ServerHello};
use crate::wire::{convert, frame};

/// Splits arbitrary bytes into framed messages and decodes each (and the
/// bytes as one body) as every message type. Never panics; whatever decodes
/// encodes back into bytes that decode to the same value; a decoded commit or
/// restore goes through the holder's checks without panicking.
pub fn wire_decode(data: &[u8]) {
    let (messages, _stop) = frame::split(data);
    for body in messages.iter().map(Vec::as_slice).chain([data]) {
        round_trip::<ClientHello>(body);
        round_trip::<ServerHello>(body);
        round_trip::<Response>(body);
        if let Some(request) = round_trip::<Request>(body) {
            check_request(request);
        }
    }
}

fn round_trip<T>(body: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = message::decode(body).ok()?;
    let mut again = Vec::new();
    message::encode_into(&value, &mut again).expect("a decoded message re-encodes");
    let back: T = message::decode(&again).expect("a re-encoded message decodes");
    assert_eq!(back, value, "decode/encode round trip");
    let framed = frame::encode(&again).expect("a message within the limit frames");
    let (split, stop) = frame::split(&framed);
    assert_eq!(stop, None);
    assert_eq!(split, vec![again]);
    Some(value)
}

fn check_request(request: Request) {
    match request {
        Request::Commit { checks, writes } => {
            let _ = convert::commit_from_wire(checks, writes).check_untrusted();
        }
        Request::CommitWith {
            checks,
            writes,
            coord,
        } => {
            if let Ok(request) = convert::commit_with_from_wire(checks, writes, coord)
                && request.check_untrusted().is_ok()
            {
                // Patches that pass the checks apply to anything without
                // panicking: to nothing, and to their own operands.
                for write in &request.writes {
                    if let crate::access::request::WriteKind::Patch { ops, .. } = &write.kind {
                        let _ = crate::coord::patch::apply("n", "k", None, ops);
                        for value in ops.iter().filter_map(|op| op.value()) {
                            let _ = crate::coord::patch::apply("n", "k", Some(value), ops);
                        }
                    }
                }
            }
        }
        Request::Restore {
            revision,
            time,
            records,
        } => {
            let _ = convert::restore_from_wire(revision, time, records).sort_and_check(true);
        }
        _ => {}
    }
}
