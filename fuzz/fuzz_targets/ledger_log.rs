//! Any bytes as a framed log, replayed at full depth: never a panic; a log reported valid
//! has a tree whose root the report states.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_ledger::records;
use slicefed_ledger::replay::{Depth, replay};
use slicefed_trust::fixtures::key;

fuzz_target!(|data: &[u8]| {
    let (recs, _) = records::parse_all(data, 0);
    let r = replay(key(1).public(), &recs, Depth::Full);
    if r.report.valid {
        assert_eq!(r.tree.root(), r.report.root);
        assert_eq!(r.tree.len(), r.report.entries);
    }
});
