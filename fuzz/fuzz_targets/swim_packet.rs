//! Any bytes as a SWIM packet on the wire from a member: never a panic; every byte is
//! accounted to one part; a packet that decodes goes back on the wire as the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slicefed_peer::swim::{PacketParts, Swim, SwimId, codec};
use slicefed_trust::fixtures::key;

fuzz_target!(|data: &[u8]| {
    let parts = PacketParts::of(data);
    assert_eq!(parts.total(), data.len() as u64);
    let (me, member) = (key(1), key(2));
    if let Ok(full) = codec::from_wire(data, &member.public(), &me.public()) {
        if let Ok(wire) = codec::to_wire(&full, &member.public(), &me.public()) {
            assert_eq!(wire, data);
        }
    }
    let mut node = Swim::new(&me, 1_000, 7);
    let _ = node.admit(0, SwimId { key: member.public(), bump: 5 });
    let _ = node.packet(10, member.public(), data);
});
