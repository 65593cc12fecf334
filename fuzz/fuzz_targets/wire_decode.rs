#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| statelog::testkit::fuzz_wire::wire_decode(data));
