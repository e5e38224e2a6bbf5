//! Any bytes as a signed object: never a panic; anything that opens re-encodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = slicefed_trust::verify::open_any(data) {
        assert_eq!(o.id, slicefed_trust::CertId::of(data));
    }
});
