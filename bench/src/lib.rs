//! Nothing here: the benchmarks are `benches/compare.rs` (with
//! `benches/compare/`) and `benches/engine.rs`.
