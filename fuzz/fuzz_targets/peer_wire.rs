//! Any bytes as each message a peer, client or the owner can send a node (adverts, requests,
//! responses, cosignatures, admin requests) and as a proof bundle: never a panic; anything that decodes
//! re-encodes to the same bytes (decoding is canonical).
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_ledger::bundle::ProofBundle;
use slicefed_peer::wire::{AdminRequest, Advert, Cosigned, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Advert::from_bytes(data) {
        assert_eq!(a.to_bytes().ok().as_deref(), Some(data));
    }
    if let Ok(r) = Request::from_bytes(data) {
        assert_eq!(r.to_bytes().ok().as_deref(), Some(data));
    }
    if let Ok(r) = Response::from_bytes(data) {
        assert_eq!(r.to_bytes().ok().as_deref(), Some(data));
    }
    if let Ok(c) = Cosigned::from_bytes(data) {
        assert_eq!(c.to_bytes().ok().as_deref(), Some(data));
    }
    if let Ok(a) = AdminRequest::from_bytes(data) {
        assert_eq!(a.to_bytes().ok().as_deref(), Some(data));
    }
    let _ = ProofBundle::from_bytes(data);
});
