//! Any bytes as a ledger entry: never a panic; a decoded entry re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_ledger::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode().ok().as_deref(), Some(data));
    }
});
