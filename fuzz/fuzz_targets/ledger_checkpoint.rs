//! Any bytes as a signed checkpoint or an equivocation proof: never a panic, never accepted
//! unless the signatures verify (which random bytes cannot achieve).
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_ledger::{EquivocationProof, SignedCheckpoint};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = SignedCheckpoint::from_bytes(data) {
        assert!(c.verify().is_ok());
    }
    if let Ok(p) = EquivocationProof::from_bytes(data) {
        assert!(p.verify().is_ok());
    }
});
