//! The byte layout of SWIM packets and of the signed items they carry, fixed-size fields
//! only, so decoding is bounded by construction and every value has one encoding.
//!
//! An identity is a node key (32 bytes) and its bump (u64, big-endian): 40 bytes. A member
//! update is an identity, an incarnation (u16) and a state (u8): 43 bytes. A header is the
//! sender, its incarnation, the addressee, a message tag and the message's fields.
//!
//! On the wire a header leaves out the two keys ([`to_wire`], [`from_wire`]): the sender's
//! is the one the transport authenticated, the addressee's is the receiver's own, so
//! neither can be other than what the receiver puts back, and a probe's header is 20
//! bytes instead of 84 (it was half of SWIM's bytes at 1,000 nodes). foca reads and writes
//! the whole form; only the node's boundary sees the wire form.

use super::SwimId;
use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};
use slicefed_trust::PublicKey;

/// Bytes of an encoded identity.
pub const ID_BYTES: usize = 40;
/// Bytes of an encoded member update.
pub const MEMBER_BYTES: usize = ID_BYTES + 3;

/// Bytes a header's two keys take in foca's form and not on the wire.
pub const KEYS_OFF_THE_WIRE: usize = 2 * 32;
/// Where, in foca's form, the sender's key ends and the addressee's begins and ends.
const SRC_KEY_END: usize = 32;
const DST_KEY_AT: usize = ID_BYTES + 2;
const DST_KEY_END: usize = DST_KEY_AT + 32;
/// The wire header's fields before the addressee's key would be: the sender's bump and
/// incarnation.
const WIRE_KEYLESS_PREFIX: usize = DST_KEY_AT - SRC_KEY_END;

/// Bytes of a member's key a compact update names it by. 16, not fewer: the update is
/// read only about a member the receiver lists (as a full one is), so a collision could at
/// most misdirect a suspicion, which a member can send about anyone anyway; but making
/// one costs 2^128 key generations against a given member.
pub const KEY_PREFIX: usize = 16;
/// Bytes of a compact member update on the wire: form and state, the key's prefix, the
/// low 32 bits of the start, the incarnation.
pub const COMPACT_MEMBER_BYTES: usize = 1 + KEY_PREFIX + 4 + 2;
/// Each update on the wire starts with its state, which says its form: `Alive` in full
/// (identity, incarnation), `Suspect` and `Down` compact. One form per state, so a packet
/// has one encoding.
const ALIVE_FULL: u8 = 0;
const COMPACT_SUSPECT: u8 = 1;
const COMPACT_DOWN: u8 = 2;

/// Whether a packet with this message carries member updates after its header (as the
/// node's filter reads it).
pub(crate) fn carries_updates(message: &Message<SwimId>, rest: &[u8]) -> bool {
    !matches!(
        message,
        Message::Broadcast | Message::Announce | Message::TurnUndead
    ) && rest.len() >= 2
}

/// One member update as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireUpdate {
    /// In full, `Alive`: anyone, at any start (news of a node the receiver may not list).
    Full(Member<SwimId>),
    /// By key prefix and the low bits of the start: about a member the receiver lists
    /// (`Suspect` or `Down`, the updates a death makes).
    Compact {
        /// The first [`KEY_PREFIX`] bytes of the member's key.
        prefix: [u8; KEY_PREFIX],
        /// The low 32 bits of its start.
        bump_low: u32,
        /// Its incarnation.
        incarnation: u16,
        /// `Suspect` or `Down`.
        state: State,
    },
}

impl WireUpdate {
    /// Bytes it takes on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            WireUpdate::Full(_) => MEMBER_BYTES,
            WireUpdate::Compact { .. } => COMPACT_MEMBER_BYTES,
        }
    }

    /// Its state.
    pub fn state(&self) -> State {
        match self {
            WireUpdate::Full(m) => m.state(),
            WireUpdate::Compact { state, .. } => *state,
        }
    }
}

fn put_wire_update(m: &Member<SwimId>, buf: &mut Vec<u8>) {
    let compact = match m.state() {
        State::Alive => None,
        State::Suspect => Some(COMPACT_SUSPECT),
        State::Down => Some(COMPACT_DOWN),
    };
    match compact {
        Some(tag) => {
            buf.put_u8(tag);
            buf.put_slice(m.id().key.0.get(..KEY_PREFIX).unwrap_or_default());
            buf.put_u32(m.id().bump as u32);
            buf.put_u16(m.incarnation());
        }
        None => {
            buf.put_u8(ALIVE_FULL);
            put_id(m.id(), &mut *buf);
            buf.put_u16(m.incarnation());
        }
    }
}

/// Reads one update off the wire.
pub fn get_wire_update(buf: &mut &[u8]) -> Result<WireUpdate, SwimCodecError> {
    need(buf, 1, "update")?;
    let tag = buf.get_u8();
    match tag {
        COMPACT_SUSPECT | COMPACT_DOWN => {
            need(buf, COMPACT_MEMBER_BYTES - 1, "update")?;
            let mut prefix = [0u8; KEY_PREFIX];
            buf.copy_to_slice(&mut prefix);
            Ok(WireUpdate::Compact {
                prefix,
                bump_low: buf.get_u32(),
                incarnation: buf.get_u16(),
                state: if tag == COMPACT_SUSPECT {
                    State::Suspect
                } else {
                    State::Down
                },
            })
        }
        ALIVE_FULL => {
            need(buf, MEMBER_BYTES - 1, "update")?;
            let id = get_id(&mut *buf)?;
            let incarnation = buf.get_u16();
            Ok(WireUpdate::Full(Member::new(id, incarnation, State::Alive)))
        }
        tag => Err(SwimCodecError::UnknownTag {
            what: "update",
            tag,
        }),
    }
}

/// A packet in foca's form as it goes on the wire from `from` to `to`: its header without
/// the two keys, and each `Suspect` or `Down` update naming its member by key prefix and
/// low start bits ([`COMPACT_MEMBER_BYTES`], not [`MEMBER_BYTES`]). Refused if the header
/// names another sender or addressee (foca always writes its own identity and the
/// addressee's; anything else is a bug, not a packet).
pub fn to_wire(packet: &[u8], from: &PublicKey, to: &PublicKey) -> Result<Vec<u8>, SwimCodecError> {
    let mut rest = packet;
    let header = foca::Codec::decode_header(&mut SwimCodec, &mut rest)?;
    if header.src.key != *from || header.dst.key != *to {
        return Err(SwimCodecError::Misaddressed);
    }
    let header_len = packet.len() - rest.len();
    let mut wire = Vec::with_capacity(packet.len().saturating_sub(KEYS_OFF_THE_WIRE));
    wire.extend_from_slice(packet.get(SRC_KEY_END..DST_KEY_AT).unwrap_or_default());
    wire.extend_from_slice(packet.get(DST_KEY_END..header_len).unwrap_or_default());
    if carries_updates(&header.message, rest) {
        let count = rest.get_u16();
        wire.put_u16(count);
        for _ in 0..count {
            let m = foca::Codec::decode_member(&mut SwimCodec, &mut rest)?;
            put_wire_update(&m, &mut wire);
        }
    }
    wire.extend_from_slice(rest);
    Ok(wire)
}

/// A packet off the wire, from the authenticated peer `from` to this node `me`, in foca's
/// form: the keys put back where foca reads them, and each compact update in full as
/// `resolve` (prefix, low start bits) finds its member; one it does not find (a member
/// the receiver does not list, or not at that start) is dropped, as a full one about such
/// a member would be. Returns the packet and the updates dropped.
pub fn from_wire(
    wire: &[u8],
    from: &PublicKey,
    me: &PublicKey,
    resolve: impl Fn(&[u8; KEY_PREFIX], u32) -> Option<SwimId>,
) -> Result<(Vec<u8>, usize), SwimCodecError> {
    let (prefix, after_prefix) = wire
        .split_at_checked(WIRE_KEYLESS_PREFIX)
        .ok_or(SwimCodecError::Short("header"))?;
    let mut packet = Vec::with_capacity(wire.len() + KEYS_OFF_THE_WIRE);
    packet.extend_from_slice(&from.0);
    packet.extend_from_slice(prefix);
    packet.extend_from_slice(&me.0);
    packet.extend_from_slice(after_prefix);
    let mut rest = &packet[..];
    let header = foca::Codec::decode_header(&mut SwimCodec, &mut rest)?;
    if !carries_updates(&header.message, rest) {
        return Ok((packet, 0));
    }
    // The header stays; what follows it is read again as updates, then items as they are.
    let header_len = packet.len() - rest.len();
    let tail = packet.split_off(header_len);
    let mut rest = &tail[..];
    let count = rest.get_u16();
    let mut kept = Vec::with_capacity(usize::from(count).min(rest.len() / COMPACT_MEMBER_BYTES));
    let mut dropped = 0;
    for _ in 0..count {
        match get_wire_update(&mut rest)? {
            WireUpdate::Full(m) => kept.push(m),
            WireUpdate::Compact {
                prefix,
                bump_low,
                incarnation,
                state,
            } => match resolve(&prefix, bump_low) {
                Some(id) => kept.push(Member::new(id, incarnation, state)),
                None => dropped += 1,
            },
        }
    }
    packet.put_u16(kept.len() as u16);
    for m in &kept {
        foca::Codec::encode_member(&mut SwimCodec, m, &mut packet)?;
    }
    packet.extend_from_slice(rest);
    Ok((packet, dropped))
}

/// A wire packet's header (read with zero keys: the wire has none) and its length on the
/// wire.
pub fn wire_header(wire: &[u8]) -> Result<(Header<SwimId>, usize), SwimCodecError> {
    let (prefix, after_prefix) = wire
        .split_at_checked(WIRE_KEYLESS_PREFIX)
        .ok_or(SwimCodecError::Short("header"))?;
    // The longest header's fields after the addressee's key: its bump, the tag, another
    // identity and a probe number.
    let after = after_prefix
        .get(..8 + 1 + ID_BYTES + 1)
        .unwrap_or(after_prefix);
    let mut head = Vec::with_capacity(KEYS_OFF_THE_WIRE + prefix.len() + after.len());
    head.extend_from_slice(&[0; 32]);
    head.extend_from_slice(prefix);
    head.extend_from_slice(&[0; 32]);
    head.extend_from_slice(after);
    let mut rest = &head[..];
    let header = foca::Codec::decode_header(&mut SwimCodec, &mut rest)?;
    Ok((header, head.len() - rest.len() - KEYS_OFF_THE_WIRE))
}

/// The sender's bump in a wire packet (its first field).
pub fn wire_sender_bump(wire: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = wire.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Why bytes are not a SWIM packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwimCodecError {
    /// The bytes end before the field does.
    #[error("a SWIM packet ends inside its {0}")]
    Short(&'static str),
    /// A tag that names no message or state.
    #[error("a SWIM packet has an unknown {what} tag {tag}")]
    UnknownTag {
        /// Which tag.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
    /// A packet to put on the wire names a sender or addressee other than the link's.
    #[error("a SWIM packet whose header names another sender or addressee than its link")]
    Misaddressed,
    /// The encoder's buffer has no room (only with a caller's fixed buffer).
    #[error("no room to encode a SWIM {0}")]
    NoRoom(&'static str),
}

/// The codec foca uses (and the node's packet filter, which decodes before foca does).
#[derive(Clone, Copy, Debug, Default)]
pub struct SwimCodec;

fn need(buf: &(impl Buf + ?Sized), n: usize, what: &'static str) -> Result<(), SwimCodecError> {
    if buf.remaining() < n {
        return Err(SwimCodecError::Short(what));
    }
    Ok(())
}

fn room(buf: &impl BufMut, n: usize, what: &'static str) -> Result<(), SwimCodecError> {
    if buf.remaining_mut() < n {
        return Err(SwimCodecError::NoRoom(what));
    }
    Ok(())
}

pub(crate) fn put_id(id: &SwimId, mut buf: impl BufMut) {
    buf.put_slice(&id.key.0);
    buf.put_u64(id.bump);
}

pub(crate) fn get_id(mut buf: impl Buf) -> Result<SwimId, SwimCodecError> {
    need(&buf, ID_BYTES, "identity")?;
    let mut key = [0u8; 32];
    buf.copy_to_slice(&mut key);
    Ok(SwimId {
        key: PublicKey(key),
        bump: buf.get_u64(),
    })
}

const PING: u8 = 1;
const ACK: u8 = 2;
const PING_REQ: u8 = 3;
const INDIRECT_PING: u8 = 4;
const INDIRECT_ACK: u8 = 5;
const FORWARDED_ACK: u8 = 6;
const ANNOUNCE: u8 = 7;
const FEED: u8 = 8;
const GOSSIP: u8 = 9;
const BROADCAST: u8 = 10;
const TURN_UNDEAD: u8 = 11;

impl foca::Codec<SwimId> for SwimCodec {
    type Error = SwimCodecError;

    fn encode_header(
        &mut self,
        header: &Header<SwimId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        room(&buf, 2 * ID_BYTES + 3 + ID_BYTES + 1, "header")?;
        put_id(&header.src, &mut buf);
        buf.put_u16(header.src_incarnation);
        put_id(&header.dst, &mut buf);
        let (tag, other, probe) = match &header.message {
            Message::Ping(p) => (PING, None, Some(*p)),
            Message::Ack(p) => (ACK, None, Some(*p)),
            Message::PingReq {
                target,
                probe_number,
            } => (PING_REQ, Some(target), Some(*probe_number)),
            Message::IndirectPing {
                origin,
                probe_number,
            } => (INDIRECT_PING, Some(origin), Some(*probe_number)),
            Message::IndirectAck {
                target,
                probe_number,
            } => (INDIRECT_ACK, Some(target), Some(*probe_number)),
            Message::ForwardedAck {
                origin,
                probe_number,
            } => (FORWARDED_ACK, Some(origin), Some(*probe_number)),
            Message::Announce => (ANNOUNCE, None, None),
            Message::Feed => (FEED, None, None),
            Message::Gossip => (GOSSIP, None, None),
            Message::Broadcast => (BROADCAST, None, None),
            Message::TurnUndead => (TURN_UNDEAD, None, None),
        };
        buf.put_u8(tag);
        if let Some(o) = other {
            put_id(o, &mut buf);
        }
        if let Some(p) = probe {
            buf.put_u8(p);
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<SwimId>, Self::Error> {
        let src = get_id(&mut buf)?;
        need(&buf, 2, "incarnation")?;
        let src_incarnation = buf.get_u16();
        let dst = get_id(&mut buf)?;
        need(&buf, 1, "message tag")?;
        let tag = buf.get_u8();
        let with_other = |buf: &mut dyn Buf| -> Result<(SwimId, u8), SwimCodecError> {
            let id = get_id(&mut *buf)?;
            need(&*buf, 1, "probe number")?;
            Ok((id, buf.get_u8()))
        };
        let message = match tag {
            PING | ACK => {
                need(&buf, 1, "probe number")?;
                let p = buf.get_u8();
                if tag == PING {
                    Message::Ping(p)
                } else {
                    Message::Ack(p)
                }
            }
            PING_REQ => {
                let (target, probe_number) = with_other(&mut buf)?;
                Message::PingReq {
                    target,
                    probe_number,
                }
            }
            INDIRECT_PING => {
                let (origin, probe_number) = with_other(&mut buf)?;
                Message::IndirectPing {
                    origin,
                    probe_number,
                }
            }
            INDIRECT_ACK => {
                let (target, probe_number) = with_other(&mut buf)?;
                Message::IndirectAck {
                    target,
                    probe_number,
                }
            }
            FORWARDED_ACK => {
                let (origin, probe_number) = with_other(&mut buf)?;
                Message::ForwardedAck {
                    origin,
                    probe_number,
                }
            }
            ANNOUNCE => Message::Announce,
            FEED => Message::Feed,
            GOSSIP => Message::Gossip,
            BROADCAST => Message::Broadcast,
            TURN_UNDEAD => Message::TurnUndead,
            tag => {
                return Err(SwimCodecError::UnknownTag {
                    what: "message",
                    tag,
                });
            }
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<SwimId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        // foca asks that a member that does not fit leaves the buffer untouched.
        room(&buf, MEMBER_BYTES, "member")?;
        put_id(member.id(), &mut buf);
        buf.put_u16(member.incarnation());
        buf.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<SwimId>, Self::Error> {
        let id = get_id(&mut buf)?;
        need(&buf, 3, "member state")?;
        let incarnation = buf.get_u16();
        let state = match buf.get_u8() {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            tag => return Err(SwimCodecError::UnknownTag { what: "state", tag }),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use foca::Codec;

    fn id(n: u8) -> SwimId {
        SwimId {
            key: PublicKey([n; 32]),
            bump: u64::from(n) << 40 | 7,
        }
    }

    #[test]
    fn every_message_and_member_round_trips() {
        let messages = [
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: id(3),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: id(4),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: id(5),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: id(6),
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in messages {
            let h = Header {
                src: id(1),
                src_incarnation: 513,
                dst: id(2),
                message,
            };
            let mut buf = vec![];
            SwimCodec.encode_header(&h, &mut buf).unwrap();
            assert_eq!(SwimCodec.decode_header(&buf[..]).unwrap(), h);
            // Every cut is refused, never a panic.
            for cut in 0..buf.len() {
                assert!(SwimCodec.decode_header(&buf[..cut]).is_err());
            }
        }
        for state in [State::Alive, State::Suspect, State::Down] {
            let m = Member::new(id(9), 65_535, state);
            let mut buf = vec![];
            SwimCodec.encode_member(&m, &mut buf).unwrap();
            assert_eq!(buf.len(), MEMBER_BYTES);
            assert_eq!(SwimCodec.decode_member(&buf[..]).unwrap(), m);
        }
    }

    /// Resolves a compact update's member among `listed`.
    fn among(listed: &[SwimId]) -> impl Fn(&[u8; KEY_PREFIX], u32) -> Option<SwimId> + '_ {
        |prefix, low| {
            listed
                .iter()
                .find(|id| id.key.0.starts_with(prefix) && id.bump as u32 == low)
                .copied()
        }
    }

    #[test]
    fn the_wire_form_leaves_out_both_keys_and_names_members_of_a_death_by_prefix() {
        let (from, to) = (id(1), id(2));
        let updates = [
            Member::new(id(3), 4, State::Suspect),
            Member::new(id(4), 5, State::Down),
            Member::new(id(5), 6, State::Alive),
        ];
        for message in [
            Message::Ping(1),
            Message::PingReq {
                target: id(3),
                probe_number: 3,
            },
            Message::Gossip,
            Message::Broadcast,
        ] {
            let h = Header {
                src: from,
                src_incarnation: 7,
                dst: to,
                message: message.clone(),
            };
            let mut full = vec![];
            SwimCodec.encode_header(&h, &mut full).unwrap();
            let with_updates = !matches!(message, Message::Broadcast);
            if with_updates {
                full.put_u16(updates.len() as u16);
                for m in &updates {
                    SwimCodec.encode_member(m, &mut full).unwrap();
                }
            }
            full.extend([0, 1, 9, 9]);
            let wire = to_wire(&full, &from.key, &to.key).unwrap();
            let saved = if with_updates {
                2 * (MEMBER_BYTES - COMPACT_MEMBER_BYTES)
            } else {
                0
            };
            assert_eq!(wire.len(), full.len() - KEYS_OFF_THE_WIRE - saved);
            assert_eq!(wire_sender_bump(&wire), Some(from.bump));
            let listed = [id(3), id(4)];
            assert_eq!(
                from_wire(&wire, &from.key, &to.key, among(&listed)).unwrap(),
                (full.clone(), 0)
            );
            // A compact update about a member the receiver does not list (or not at
            // that start) is dropped, as a full one about such a member would be.
            if with_updates {
                let (read, dropped) = from_wire(&wire, &from.key, &to.key, among(&[])).unwrap();
                assert_eq!(dropped, 2);
                let mut rest = &read[..];
                SwimCodec.decode_header(&mut rest).unwrap();
                assert_eq!(rest.get_u16(), 1);
                assert_eq!(SwimCodec.decode_member(&mut rest).unwrap(), updates[2]);
                assert_eq!(rest, &[0, 1, 9, 9][..]);
            }
            // Read from another link, it is that link's packet: nobody speaks for another.
            let other = PublicKey([7; 32]);
            let (read, _) = from_wire(&wire, &other, &to.key, among(&listed)).unwrap();
            assert_eq!(SwimCodec.decode_header(&read[..]).unwrap().src.key, other);
            // A header naming another sender or addressee is not put on the wire.
            assert_eq!(
                to_wire(&full, &other, &to.key),
                Err(SwimCodecError::Misaddressed)
            );
            assert_eq!(
                to_wire(&full, &from.key, &other),
                Err(SwimCodecError::Misaddressed)
            );
            // Every cut is refused or reads as fewer items, never a panic.
            for cut in 0..wire.len() {
                let _ = from_wire(&wire[..cut], &from.key, &to.key, among(&listed));
            }
        }
        for cut in 0..WIRE_KEYLESS_PREFIX {
            assert!(from_wire(&[0; 64][..cut], &id(1).key, &id(2).key, among(&[])).is_err());
        }
        assert_eq!(wire_sender_bump(&[1; 7]), None);
    }

    #[test]
    fn unknown_tags_are_refused() {
        let mut buf = vec![];
        put_id(&id(1), &mut buf);
        buf.put_u16(0);
        put_id(&id(2), &mut buf);
        buf.put_u8(99);
        assert_eq!(
            SwimCodec.decode_header(&buf[..]),
            Err(SwimCodecError::UnknownTag {
                what: "message",
                tag: 99
            })
        );
        let mut m = vec![];
        put_id(&id(1), &mut m);
        m.put_u16(0);
        m.put_u8(3);
        assert!(SwimCodec.decode_member(&m[..]).is_err());
    }
}
