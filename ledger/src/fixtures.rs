//! Deterministic entries for tests, benchmarks and the simulator. Not for production use.

use crate::entry::{Attribution, Decision, Direction, EntryBody, FlowRecord};
use slicefed_trust::caps::Proto;
use slicefed_trust::fixtures::name;
use std::net::{Ipv4Addr, SocketAddr};

/// A flow record for index `i`: slice `princeton.codeen` of `princeton.alice`, from
/// 10.0.0.1:(40000 + i mod 1000) to 192.0.2.(i mod 200):80.
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
        local: SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 40000 + (i % 1000) as u16)),
        remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, (i % 200) as u8), 80)),
        decision: Decision::Allowed,
        bytes_out: i * 3,
        bytes_in: i * 5,
        packets_out: i,
        packets_in: i,
        first_ms: 1_000 + i,
        last_ms: 2_000 + i,
    })
}
