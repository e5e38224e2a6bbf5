//! Shared helpers for ledger tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use slicefed_ledger::entry::{Attribution, Decision, Direction, EntryBody, FlowRecord};
use slicefed_trust::SecretKey;
use slicefed_trust::caps::Proto;
use slicefed_trust::fixtures::{key, name};

pub fn node_key() -> SecretKey {
    key(42)
}

/// A deterministic flow entry for index `i`.
pub fn flow(i: u64) -> EntryBody {
    EntryBody::Flow(FlowRecord {
        who: Attribution {
            slice: name("princeton.codeen"),
            sliver: i % 7,
            user: Some(name("princeton.alice")),
            authority: Some(name("princeton")),
        },
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: format!("10.0.0.1:{}", 40000 + (i % 1000)).parse().unwrap(),
        remote: format!("192.0.2.{}:80", i % 200).parse().unwrap(),
        decision: Decision::Allowed,
        bytes_out: i * 3,
        bytes_in: i * 5,
        packets_out: i,
        packets_in: i,
        first_ms: 1_000 + i,
        last_ms: 2_000 + i,
    })
}
