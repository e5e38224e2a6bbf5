//! Any bytes as a TOML trust policy: never a panic; a parsed policy round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = slicefed_trust::TrustPolicy::parse(text) {
            assert_eq!(slicefed_trust::TrustPolicy::parse(&p.to_toml()).ok(), Some(p));
        }
    }
});
