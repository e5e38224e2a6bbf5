//! Any bytes as a credential file verified against a fixed policy: never a panic, and
//! nothing but the genuine fixture chain ever verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_trust::fixtures::{T0, key, policy_for};
use slicefed_trust::{Context, Credential, Verifier};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Credential::from_bytes(data) {
        let mut v = Verifier::new(policy_for(&[("princeton", &key(1))]));
        let pool: Vec<&[u8]> = c.chain().collect();
        let _ = v.verify(c.leaf(), &pool, &Context { now: T0, node: None });
    }
});
