//! Replays every fuzz corpus in `fuzz/corpus/` through the same function the fuzz
//! target runs, so what the fuzzer found stays fixed in the ordinary test suite.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let targets = statelog::testkit::fuzz::targets();
    for (name, run) in &targets {
        let dir = root.join(name);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", path.display());
            count += 1;
        }
        assert!(count > 0, "the {name} corpus is empty");
    }
    // Every corpus directory belongs to a registered target, and every target
    // has a fuzz binary.
    for entry in std::fs::read_dir(&root).expect("fuzz/corpus") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            targets.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} has no target in testkit::fuzz::targets()"
        );
    }
    for (name, _) in &targets {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(bin.exists(), "{} is missing", bin.display());
    }
}
