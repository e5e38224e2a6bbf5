//! Any bytes as a SWIM packet on the wire from a member: never a panic; every byte is
//! accounted to one part; a packet that reads back goes on the wire as the same bytes (one
//! encoding). The same property runs on every `cargo test`
//! (`any_bytes_from_a_member_are_read_bounded_and_accounted` in `peer/proto`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_peer::swim::{PacketParts, Swim, SwimId, codec};
use slicefed_trust::PublicKey;
use slicefed_trust::fixtures::key;

fuzz_target!(|data: &[u8]| {
    let parts = PacketParts::of(data);
    assert_eq!(parts.total(), data.len() as u64);
    let (me, member) = (key(1).public(), key(2).public());
    // Every compact update read as some member with that prefix and start.
    let anyone = |prefix: &[u8; codec::KEY_PREFIX], low: u32| {
        let mut key = [0; 32];
        key[..codec::KEY_PREFIX].copy_from_slice(prefix);
        Some(SwimId {
            key: PublicKey(key),
            bump: u64::from(low),
        })
    };
    if let Ok((full, 0)) = codec::from_wire(data, &member, &me, anyone) {
        assert_eq!(codec::to_wire(&full, &member, &me).ok().as_deref(), Some(data));
    }
    let mut node = Swim::new(&key(1), 1_000, 7);
    let _ = node.admit(0, SwimId { key: member, bump: 5 });
    let _ = node.packet(10, member, data);
});
