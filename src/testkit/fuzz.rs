//! The bodies of the fuzz targets. Each takes arbitrary bytes and panics only
//! when an invariant is broken, so the same function serves `cargo fuzz` and the
//! corpus replay in the ordinary test suite (`tests/fuzz_corpus.rs`).

use crate::log::frame;

/// Every fuzz target: its name (the directory of its corpus under
/// `fuzz/corpus/` and the binary in `fuzz/fuzz_targets/`) and its body.
#[allow(clippy::type_complexity)]
pub fn targets() -> Vec<(&'static str, fn(&[u8]))> {
    vec![
        ("frame_decode", frame_decode as fn(&[u8])),
        ("record_decode", super::fuzz_log::record_decode),
        ("segment_scan", super::fuzz_log::segment_scan),
        ("recovery", super::fuzz_log::recovery),
        ("json_import", super::fuzz_snapshot::json_import),
        ("markdown_import", super::fuzz_snapshot::markdown_import),
        ("wire_decode", super::fuzz_wire::wire_decode),
    ]
}

/// Decodes arbitrary bytes as a frame. Never panics; a frame that decodes must
/// encode back to the same bytes.
pub fn frame_decode(data: &[u8]) {
    match frame::decode(data) {
        frame::Decoded::Frame { payload, frame_len } => {
            assert!(frame_len <= data.len());
            let again = frame::encode(payload).expect("a decoded payload re-encodes");
            assert_eq!(&again[..], &data[..frame_len], "decode/encode round trip");
        }
        frame::Decoded::Incomplete { needed } => {
            if let Some(needed) = needed {
                assert!(needed > data.len());
            }
        }
        frame::Decoded::BadHeader(_) | frame::Decoded::BadPayload { .. } => {}
    }
}
