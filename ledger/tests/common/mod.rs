//! Shared helpers for ledger tests.
#![allow(dead_code)]

pub use slicefed_ledger::fixtures::flow;
use slicefed_trust::SecretKey;
use slicefed_trust::fixtures::key;

pub fn node_key() -> SecretKey {
    key(42)
}
