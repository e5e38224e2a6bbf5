//! Any bytes as a secret key file: never a panic; a parsed key survives a write and re-read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_trust::SecretKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = SecretKey::from_file_text(data) {
        let again = SecretKey::from_file_text(k.to_file_text().as_bytes()).map(|k| k.public()).ok();
        assert_eq!(again, Some(k.public()));
    }
});
