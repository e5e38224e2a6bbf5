//! Any bytes as a revocation file handed to a node: never a panic; a revocation is held only
//! if its signer signed one of the objects of the chain the file carries (an authority at or
//! above the revoked object's issuer), and holding it again, as sent or as the canonical
//! file the node keeps, is refused as already held.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_trust::fixtures::{T0, key, policy_for};
use slicefed_trust::verify::RevocationError;
use slicefed_trust::{Credential, Verifier};

fuzz_target!(|data: &[u8]| {
    let mut v = Verifier::new(policy_for(&[("princeton", &key(1))]));
    if let Ok(r) = v.add_revocation(data, T0) {
        let file = Credential::from_bytes(data).expect("a held revocation came from a file");
        let signers: Vec<_> = file
            .chain()
            .filter_map(|o| slicefed_trust::objects::decode_envelope(o).ok())
            .map(|e| e.signer)
            .collect();
        assert!(
            signers.contains(&r.revocation.signer),
            "held from an unentitled signer"
        );
        for again in [data, r.file.as_slice()] {
            assert!(matches!(
                v.add_revocation(again, T0),
                Err(RevocationError::AlreadyHeld { .. })
            ));
        }
    }
});
