//! Liveness by SWIM: the [`foca`] crate (sans-IO SWIM with suspicion, indirect probes and
//! piggybacked dissemination) run over the node's *certified* members, with a filter in
//! front of it that makes one hostile member unable to get an honest one removed.
//!
//! Invariants:
//! - foca only ever hears from members: a packet is taken only if the transport's
//!   authenticated sender is the packet's source and a member the node judged on its
//!   credential ([`Swim::admit`]); updates about anyone else are dropped before foca sees
//!   them, so foca's list holds only certified nodes.
//! - No member is removed on one word. foca lets any member declare another `Down`; here a
//!   third party's `Down` is read as `Suspect`, and a member is dead only when
//!   [`quorum`] distinct members (this node among them) each *signed* a down vote after
//!   their own probe and suspicion ran out ([`SwimEvent::Dead`]). A member's own `Down`
//!   (it leaves) is taken from it alone.
//! - Only a member raises its own incarnation: a third party's `Alive` at an incarnation
//!   above what the member itself said (directly, or in a signed refutation) is dropped, so
//!   a hostile member cannot keep a dead node listed by refuting for it. A node that raises
//!   its incarnation signs a refutation and spreads it.
//! - Time is the caller's: foca's timers are kept here by due time and fired by
//!   [`Swim::wake`]; [`Swim::next_wake`] says when. Randomness is a generator seeded by the
//!   caller, so a simulation repeats exactly.
//! - Every table is bounded by the member bound: votes, verified incarnations, timers.

pub mod codec;

use crate::core::{BuildKeyHasher, MAX_MEMBERS};
use bytes::{Buf, BufMut};
use codec::{ID_BYTES, MEMBER_BYTES, SwimCodec, get_id, put_id};
use foca::{AccumulatingRuntime, Foca, Member, Message, OwnedNotification, State, Timer};
use rand_09::SeedableRng;
use rand_09::rngs::SmallRng;
use sha2::Digest as _;
use slicefed_trust::{PublicKey, SecretKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A member's identity in SWIM: its node key and a bump that grows each time it starts (or
/// rejoins after being declared dead), so a restarted node is a new identity that wins
/// over its old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwimId {
    /// The node key.
    pub key: PublicKey,
    /// Start time in ms (or later: a rejoin adds one).
    pub bump: u64,
}

impl SwimId {
    /// The bump of a wire packet's sender, if the packet starts with a header.
    pub fn bump_of_packet(data: &[u8]) -> Option<u64> {
        codec::wire_sender_bump(data)
    }
}

impl foca::Identity for SwimId {
    type Addr = PublicKey;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            key: self.key,
            bump: self.bump.saturating_add(1),
        })
    }

    fn addr(&self) -> PublicKey {
        self.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// How often a node probes a member.
pub const PROBE_PERIOD_MS: u64 = 4_000;
/// How long a direct probe waits before asking others to probe indirectly.
pub const PROBE_RTT_MS: u64 = 1_500;
/// How long a member stays suspected (it may refute) before the prober votes it down.
pub const SUSPECT_MS: u64 = 20_000;
/// Largest SWIM packet (a probe carries up to ~20 piggybacked updates), in foca's form:
/// what foca builds and reads. On the wire a packet is smaller (no keys in its header,
/// compact updates); one is refused over this size both as received and once read back
/// into foca's form.
pub const MAX_PACKET: usize = 1_024;
/// Distinct members whose signed votes make a member dead.
pub const QUORUM: usize = 3;
/// Votes older than this do not count (an old false accusation cannot add up with a
/// later one).
pub const VOTE_WINDOW_MS: u64 = 300_000;
/// How far in the future a vote's signed time may be (clocks differ).
const VOTE_CLOCK_SKEW_MS: u64 = 60_000;
/// foca's timers held at most (beyond it, a timer is dropped: its member is then handled
/// by the next probe round instead); removal timers may take half of it at most.
const MAX_TIMERS: usize = 8 * MAX_MEMBERS + 64;
/// Indirect-probe requests (`PingReq`) taken from one member per probe period: an honest
/// member sends one to each of three helpers when its own probe fails.
const PING_REQS_PER_PERIOD: u32 = 2;
/// Suspicions of this node by others taken per probe period (each makes foca raise its
/// incarnation to refute; more than one a period is only a member pumping it).
const SELF_SUSPICIONS_PER_PERIOD: u32 = 1;
/// Signed items (votes, refutations) remembered so that one heard again is not spread
/// again.
const SEEN_ITEMS: usize = 16_384;
/// How long an item taken is remembered: a vote or echo counts only within
/// [`VOTE_WINDOW_MS`] of its signed time (which may be [`VOTE_CLOCK_SKEW_MS`] ahead), so a
/// copy heard later is refused anyway; a refutation heard again changes nothing (it counts
/// only when it raises what its member said). Kept until the count bound, the table was
/// 2.8 MB a node once full: 28 GB for a 10,000-node simulation.
const SEEN_FOR_MS: u64 = VOTE_WINDOW_MS + VOTE_CLOCK_SKEW_MS;
/// How long a node remembers the members it declared dead, to answer a late vote about one
/// with its own again (a member that learnt of the dead one late, after the votes that
/// killed it had gone by, would otherwise find no quorum and keep it listed). Six hours,
/// not one: such a member finds the dead one by its own probe, a round of all members
/// later (over an hour at 1,000 members), and with one hour nobody echoed by then, so it
/// kept the dead one until the advert backstop, 5.2 h (`planetary`'s once-formed maximum).
/// Bounded by the member bound like every table here.
pub const DEAD_REMEMBERED_MS: u64 = 6 * 3_600_000;
/// A voter's vote about the same identity is taken again (and a node echoes its own) at
/// most this often: a hostile member cannot make every node check a stream of re-signed
/// votes.
pub const REVOTE_GAP_MS: u64 = VOTE_WINDOW_MS / 2;
/// Signed items waiting to be counted after a packet.
const INBOX: usize = 1_024;
/// Votes from voters not listed yet that a node keeps for when it lists them (see
/// `Shared::pending`); the oldest goes first.
const PENDING_VOTES: usize = 256;
/// Of those, relayed by one member at most.
const PENDING_PER_RELAYER: usize = PENDING_VOTES / 8;
/// Signed items of others this node relays at once: past this, an item is counted but not
/// passed on (this node's own always are). foca walks its whole queue to fill each packet,
/// so an unbounded queue costs time on every packet, and piggybacking more items than
/// packets carry only delays them all.
pub const MAX_RELAYED: usize = 64;
/// Members a node asks for the votes about one accused start within [`SUSPECT_MS`]
/// (members that send `Down` and answer nothing cost a node this many asks and one
/// suspicion's time, then it asks others).
///
/// Votes are pulled, mostly, not pushed on. A voter spreads its own vote; others pass on
/// only the first few, [`RELAY_TRANSMISSIONS`] times (each vote relayed by every node
/// `max_transmissions` times was ~7 KB per node per death, most of SWIM's bytes, and
/// deaths grow with the federation). What spreads instead is
/// foca's `Down` about the accused, which a member sends only when it holds it down itself
/// (its own suspicion ran out and it voted, or it counted a quorum): a node that hears one
/// from a third party reads it as a suspicion and asks that member for the votes it holds
/// ([`Item::Ask`], ~60 bytes), naming the voters it has; the answer is up to a quorum of
/// signed votes sent to it alone (~500 bytes, once). So the news costs an update (23 bytes
/// on the wire)
/// relayed as foca relays any, and the evidence is fetched once per node, as inv/getdata
/// in Bitcoin or IHAVE/IWANT in Plumtree. The votes are checked as before: an answer is no
/// more believed than a relayed vote was.
pub const ASKS_PER_ACCUSED: usize = 4;
/// Times a node passes on another's vote (the first [`QUORUM`] voters about a start, while
/// it has no quorum about it), in room foca leaves in its packets. Few, not foca's
/// `max_transmissions`: a push to two members each still reaches many while votes are
/// scarce, which is what makes the first quorums; whoever it misses hears the `Down` of
/// those that counted one, or a hint, and asks ([`ASKS_PER_ACCUSED`]). With pull alone
/// the first quorum waited for three voters' `Down`s to meet at one node (detection p50
/// 90 s at 1,000 nodes, against 49 s with votes pushed). Two, not four: votes are the
/// part of SWIM's bytes that grows with N (16.9 of 37.6 KiB a node a minute at 10,000
/// nodes), and most nodes ask anyway (0.85 asks per node per death with four). At
/// 5,000 nodes two cut votes from 6.9 to 5.1 KiB a node a minute for 8 s of detection
/// p50 (62 s against 55 s), with p99 and max within 12 s; relaying once made every drop
/// at 3,000 nodes over half an hour p50 83 s and p99 480 s (56 s and 213 s with four).
/// At 10,000 nodes: adverts + SWIM 1.18 → 0.99 KiB/s, detection p99 83 → 109 s (goal
/// 120). Figures in `DECISIONS.md`.
pub const RELAY_TRANSMISSIONS: u8 = 2;
/// Votes of one voter a node holds to pass on at once: a member voting about many
/// members (honest in a mass failure, or not) cannot fill the relay queue
/// ([`MAX_RELAYED`]) and hold the others' back; its other votes are counted and asked for.
const RELAYED_PER_VOTER: usize = 4;
/// Members asked about one accused start that a node remembers, so as not to ask one
/// twice.
const ASKED_REMEMBERED: usize = 4 * ASKS_PER_ACCUSED;
/// A node asks about one accused start at most this often (an answer that brings too few
/// votes is followed by an ask of the next member heard holding it down).
pub const ASK_GAP_MS: u64 = 1_000;
/// Asks for votes a node answers from one member per probe period, and sends to one: an
/// honest node asks about each member it hears is down, a few a period in a burst of
/// failures; a member asking more is only making this node send.
const ASKS_PER_PERIOD: u32 = 16;

const VOTE_DOMAIN: &str = "slicefed/swim-down-vote/1";
const REFUTE_DOMAIN: &str = "slicefed/swim-refute/1";
const ECHO_DOMAIN: &str = "slicefed/swim-down-echo/1";
const VOTE: u8 = 1;
const REFUTE: u8 = 2;
const ECHO: u8 = 3;
const ASK: u8 = 4;
const HINT: u8 = 5;
/// Bytes of a voter's key an ask names (to leave out votes the asker has; a prefix shared
/// by two voters only costs a vote not sent).
const VOTER_PREFIX: usize = 8;
/// Voters an ask names at most: those the asker has, short of a quorum.
const ASK_NAMES: usize = QUORUM - 1;
/// Bytes of an encoded echo: tag, accused, voter, the member it answers, signed time,
/// signature.
pub const ECHO_BYTES: usize = 1 + ID_BYTES + 32 + 32 + 8 + 64;
/// Bytes of an encoded vote: tag, accused, voter, signature.
pub const VOTE_BYTES: usize = 1 + ID_BYTES + 32 + 8 + 64;
/// Bytes of an encoded refutation: tag, identity, incarnation, signature.
pub const REFUTE_BYTES: usize = 1 + ID_BYTES + 2 + 64;
/// Bytes of an encoded ask with no voters named: tag, accused, count (then
/// [`VOTER_PREFIX`] bytes per voter named). Unsigned: it is sent to one member, which
/// knows the asker from the connection.
pub const ASK_BYTES: usize = 1 + ID_BYTES + 1;
/// Bytes of an encoded hint: tag, the dead member's start. Unsigned, like an ask: it is
/// only news of where votes are, which the receiver asks for (and judges) as it would
/// after hearing `Down` from the sender.
pub const HINT_BYTES: usize = 1 + ID_BYTES;
/// How long after declaring a member dead a node hints at it in its packets (see
/// [`Item::Hint`]): past the time foca's own `Down` transmissions take to run out.
pub const HINT_FOR_MS: u64 = 180_000;
/// One packet in this many carries a hint (when the node declared a member dead within
/// [`HINT_FOR_MS`]): ~43 bytes each, so about 10 bytes a node a second.
pub const HINT_EVERY_PACKETS: u64 = 4;
/// Members declared dead lately that a node hints at, at most (the oldest go first).
const HINTS_HELD: usize = 64;

/// Votes needed to declare a member dead when this node knows `members` others: three,
/// or every other member in a smaller federation (this node's own vote counts).
pub fn quorum(members: usize) -> usize {
    QUORUM.min(members).max(1)
}

/// foca's settings for this federation. Probing is constant per node whatever the size
/// (one probe per period); updates are piggybacked `4 × log10(n)` times, as memberlist does.
fn config(members: usize) -> foca::Config {
    let mut c = foca::Config::simple();
    c.probe_period = Duration::from_millis(PROBE_PERIOD_MS);
    c.probe_rtt = Duration::from_millis(PROBE_RTT_MS);
    c.suspect_to_down_after = Duration::from_millis(SUSPECT_MS);
    c.remove_down_after = Duration::from_secs(120);
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
    let digits = (members.max(10) as f64).log10().ceil() as u8;
    c.max_transmissions = NonZeroU8::new(4u8.saturating_mul(digits)).unwrap_or(NonZeroU8::MIN);
    // Another's suspicion is relayed `log10 n` times: only the prober runs its timer (and
    // votes); the others pass it on so that it reaches the suspect, which refutes it.
    c.relayed_suspicion_transmissions = NonZeroU8::new(digits);
    c.notify_down_members = false;
    c.periodic_announce = None;
    // News rides on probes and their acks only (no extra gossip rounds): a packet a
    // second per node whatever the size of the federation.
    c.periodic_gossip = None;
    c
}

/// Why a SWIM packet was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwimRefusal {
    /// Over [`MAX_PACKET`].
    #[error("a SWIM packet of {0} bytes, over {MAX_PACKET}")]
    TooBig(usize),
    /// Not a packet.
    #[error(transparent)]
    Decode(#[from] codec::SwimCodecError),
    /// The sender is not a member (its credential was never judged, or it left).
    #[error("a SWIM packet from {0}, which is not a member")]
    NotAMember(PublicKey),
    /// A probe for or on behalf of a node that is not a member (or not its current start).
    #[error("a SWIM probe involving {0}, which is not a member as this node knows it")]
    ProbeOfNonMember(PublicKey),
    /// More requests to probe others from one member in a probe period than an honest
    /// member sends ([`PING_REQS_PER_PERIOD`]): each would make this node send a ping.
    #[error(
        "more than {PING_REQS_PER_PERIOD} requests to probe others from {0} in one probe period"
    )]
    TooManyProbeRequests(PublicKey),
    /// foca's "you were declared down, rejoin" courtesy: one member could use it to make
    /// every member it reaches drop out.
    #[error("a SWIM turn-undead message (one member may not declare another dead)")]
    TurnUndead,
    /// foca refused it.
    #[error("SWIM: {0}")]
    Foca(String),
}

/// What the node must do after a SWIM step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwimEvent {
    /// Send this packet to this member (lossy; no answer expected).
    Send {
        /// Which member.
        to: PublicKey,
        /// The packet.
        data: Vec<u8>,
    },
    /// A quorum of members voted this member dead, or it left: it is no longer a member.
    Dead(PublicKey),
    /// A quorum voted *this* node dead (it was unreachable for a while): it rejoins under
    /// a new identity and should re-advertise.
    Rejoined,
    /// A member's packet named a node this one does not list, as alive (the news of a
    /// start spreading, piggybacked on probes): the node machine may ask `via` for its
    /// credential and admit it (see `node/members.rs`). Nothing of it reaches foca until it
    /// is admitted.
    Stranger {
        /// The node, with the start `via` named.
        id: SwimId,
        /// The member whose packet named it (it lists the node, so holds its credential).
        via: PublicKey,
    },
}

/// What SWIM has done, for sensors and the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwimStats {
    /// Packets sent and their bytes.
    pub sent: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Packets taken.
    pub received: u64,
    /// Packets refused (any [`SwimRefusal`]).
    pub refused: u64,
    /// Updates dropped or rewritten by the filter (a third party's `Down`, an incarnation
    /// nobody signed, news of non-members).
    pub updates_filtered: u64,
    /// Down votes this node signed.
    pub votes_signed: u64,
    /// Signed items refused (bad signature, signer or subject not a member).
    pub items_refused: u64,
    /// Members declared dead by a quorum.
    pub declared_dead: u64,
    /// Asks for the votes about a member this node sent (it heard the member was down
    /// and had too few votes).
    pub asks_sent: u64,
    /// Asks of others this node answered with votes.
    pub asks_answered: u64,
    /// Copies of others' votes this node passed on in its packets (each
    /// [`RELAY_TRANSMISSIONS`] times at most).
    pub votes_relayed: u64,
    /// Votes this node sent in its answers to asks.
    pub votes_answered: u64,
}

impl SwimStats {
    /// Adds `other`'s counts to these (a simulator's or a sensor's sum over nodes).
    pub fn add(&mut self, other: &SwimStats) {
        let SwimStats {
            sent,
            sent_bytes,
            received,
            refused,
            updates_filtered,
            votes_signed,
            items_refused,
            declared_dead,
            asks_sent,
            asks_answered,
            votes_relayed,
            votes_answered,
        } = other;
        self.sent += sent;
        self.sent_bytes += sent_bytes;
        self.received += received;
        self.refused += refused;
        self.updates_filtered += updates_filtered;
        self.votes_signed += votes_signed;
        self.items_refused += items_refused;
        self.declared_dead += declared_dead;
        self.asks_sent += asks_sent;
        self.asks_answered += asks_answered;
        self.votes_relayed += votes_relayed;
        self.votes_answered += votes_answered;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ItemKey {
    Vote(SwimId, PublicKey),
    Refute(SwimId, u16),
    Echo(SwimId, PublicKey),
    /// Never stored nor relayed (an ask goes to one member).
    Ask(SwimId),
    /// Never stored nor relayed (a hint rides on one packet).
    Hint(SwimId),
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (ItemKey::Refute(a, i), ItemKey::Refute(b, j)) => a == b && i >= j,
            _ => self == other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Vote {
        accused: SwimId,
        voter: PublicKey,
        at_ms: u64,
    },
    Refute {
        id: SwimId,
        incarnation: u16,
    },
    /// A node's answer to one member's late vote about a member it declared dead: its own
    /// vote, addressed to that member alone (it counts nowhere else, and is never
    /// relayed), so it cannot be gathered and replayed at others.
    Echo {
        accused: SwimId,
        voter: PublicKey,
        to: PublicKey,
        at_ms: u64,
    },
    /// The sender holds `accused` dead (it counted a quorum of votes lately): a node that
    /// still lists that start asks it for the votes, as if it had heard its `Down`. A node
    /// that missed every `Down` transmission (they run out in seconds) otherwise waited for
    /// its own probe of the dead member, a round of all members later (255 s in `short`
    /// seed 11; over an hour at 1,000 members).
    Hint {
        accused: SwimId,
        holder: PublicKey,
    },
    /// A member asks this node for the votes it holds about `accused`, short of the voters
    /// it names (see [`ASKS_PER_ACCUSED`]).
    Ask {
        accused: SwimId,
        asker: PublicKey,
        named: [[u8; VOTER_PREFIX]; ASK_NAMES],
        count: usize,
    },
}

/// A member's key in [`MemberTable`]: hashed and compared by its first
/// [`codec::KEY_PREFIX`] bytes only, so the table is found by prefix too (a compact
/// update's name) without a second table (tens of bytes per member, per node, in a
/// simulator holding a whole federation's tables). The table keeps one key per prefix:
/// two members whose keys share 16 bytes (2^64 work for a pair, 2^128 against a given
/// member) cannot both be listed, and the second is refused.
#[derive(Clone, Copy, Debug)]
struct MemberKey(PublicKey);

impl MemberKey {
    fn prefix(&self) -> &[u8; codec::KEY_PREFIX] {
        self.0
            .0
            .first_chunk::<{ codec::KEY_PREFIX }>()
            .unwrap_or(&[0; codec::KEY_PREFIX])
    }
}

impl PartialEq for MemberKey {
    fn eq(&self, other: &Self) -> bool {
        self.prefix() == other.prefix()
    }
}

impl Eq for MemberKey {}

impl std::hash::Hash for MemberKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the prefix array hashes: lookups by prefix find the same bucket.
        self.prefix().hash(state);
    }
}

impl std::borrow::Borrow<[u8; codec::KEY_PREFIX]> for MemberKey {
    fn borrow(&self) -> &[u8; codec::KEY_PREFIX] {
        self.prefix()
    }
}

/// What a node holds of a member it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed {
    /// The start it probes (the identity's bump).
    bump: u64,
    /// The highest incarnation the member said of itself at that start.
    incarnation: u16,
    /// When a packet of the member's own last came (whole seconds of the node's clock; 0:
    /// none yet). In the table's padding, so it costs no memory: the node machine reads it
    /// for `nodes list` and the adverts' backstop expiry instead of noting every packet in
    /// its member B-tree (a second lookup per packet, in a table of 10,000 members).
    heard_s: u32,
}

/// The members: each one's identity (its start's bump), the highest incarnation it said
/// itself, and when it was last heard, by key or by key prefix.
#[derive(Default)]
struct MemberTable(HashMap<MemberKey, Listed, BuildKeyHasher>);

impl MemberTable {
    /// `key`'s start and the highest incarnation it said.
    fn get(&self, key: &PublicKey) -> Option<(u64, u16)> {
        self.listed(key).map(|l| (l.bump, l.incarnation))
    }

    fn listed(&self, key: &PublicKey) -> Option<&Listed> {
        self.0
            .get_key_value(MemberKey(*key).prefix())
            .filter(|(k, _)| k.0 == *key)
            .map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Listed> {
        self.listed(key)?;
        self.0.get_mut(MemberKey(*key).prefix())
    }

    fn contains_key(&self, key: &PublicKey) -> bool {
        self.listed(key).is_some()
    }

    fn remove(&mut self, key: &PublicKey) -> Option<(u64, u16)> {
        self.listed(key)?;
        self.0
            .remove(MemberKey(*key).prefix())
            .map(|l| (l.bump, l.incarnation))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The entry of `key`, made with `new` if it has none; `None` if another member's key
    /// has the same prefix.
    fn entry_or(&mut self, key: PublicKey, bump: u64) -> Option<&mut Listed> {
        match self.0.get_key_value(MemberKey(key).prefix()) {
            Some((held, _)) if held.0 != key => None,
            _ => Some(self.0.entry(MemberKey(key)).or_insert(Listed {
                bump,
                incarnation: 0,
                heard_s: 0,
            })),
        }
    }

    /// The member whose key starts with `prefix`, with its start's bump.
    fn by_prefix(&self, prefix: &[u8; codec::KEY_PREFIX]) -> Option<(PublicKey, u64)> {
        self.0.get_key_value(prefix).map(|(k, v)| (k.0, v.bump))
    }
}

/// State the broadcast handler (owned by foca) shares with [`Swim`].
#[derive(Default)]
struct Shared {
    me: Option<PublicKey>,
    /// The members: each one's identity (its start's bump) and the highest incarnation it
    /// said itself. One table for the node and its broadcast handler (two copies were tens
    /// of bytes per member in a simulator holding a whole federation's tables).
    /// Found by key or by the key's prefix a compact update names a member by.
    members: MemberTable,
    /// The highest refutation taken from each member (its start and incarnation; at most
    /// one entry a member, dropped when it is expelled): one at or below it is a replay,
    /// dropped before its signature is checked and never passed on, however long ago the
    /// table of items seen forgot it.
    refuted: HashMap<PublicKey, (u64, u16), BuildKeyHasher>,
    /// Items taken, with a vote's signed time (0 for a refutation) and when it was taken.
    seen: HashMap<ItemKey, (u64, u64)>,
    /// The same, in the order taken: forgotten once no copy of them can count any more
    /// (see [`SEEN_FOR_MS`]), or past [`SEEN_ITEMS`].
    seen_order: VecDeque<(ItemKey, u64)>,
    /// Members this node declared dead, with when (at most [`MAX_MEMBERS`], for
    /// [`DEAD_REMEMBERED_MS`]): a late vote about one is answered with this node's own.
    /// Looked up for every packet (`forget_dead`): hashed as the member table is, and its
    /// order never read.
    dead: HashMap<PublicKey, DeadMember, BuildKeyHasher>,
    /// When the oldest entry of `dead` is forgotten (none: `dead` has nothing to forget):
    /// `wake` walks the table only then, not at every timer.
    dead_expires_ms: Option<u64>,
    /// Items taken in this step, to count, with a vote's bytes (kept in its tally, to
    /// answer asks).
    inbox: Vec<(Item, Vec<u8>)>,
    /// Votes about a member signed by a voter this node does not list yet (it just
    /// started, or came back, and is still learning members), with the voter: judged
    /// again when the voter is admitted, within the vote's window. Without them a node
    /// that learnt the voters after their votes went by kept a dead member until its own
    /// probe of it, up to a round of all members later. At most [`PENDING_VOTES`].
    pending: VecDeque<(Option<PublicKey>, PublicKey, Vec<u8>)>,
    /// The member whose packet is being read (`None`: this node's own items).
    relayer: Option<PublicKey>,
    /// Voters of newly kept votes, to greet: a voter's answer to a hello is a packet from
    /// a node this one does not list, which asks its credential and so lists it (at most
    /// [`PENDING_VOTES`]).
    strangers: Vec<PublicKey>,
    /// When each stranger was last greeted (at most [`PENDING_VOTES`]).
    greeted: HashMap<PublicKey, u64>,
    /// Nodes named alive in the packet being read that this node does not list, with the
    /// sender (at most a packet's updates: drained into [`SwimEvent::Stranger`]s).
    newcomers: Vec<(SwimId, PublicKey)>,
    refused: u64,
    /// foca's queue of signed items, as of the last step.
    backlog: usize,
    /// The time of the step (votes are judged against it).
    now_ms: u64,
    /// Signature checks shared with other machines of this process, if the caller set any.
    checks: Option<SharedItemChecks>,
}

/// A member this node declared dead.
struct DeadMember {
    id: SwimId,
    at_ms: u64,
}

/// Signed SWIM items (votes, refutations, echoes) whose signatures were found good, shared
/// by the node machines of one process: the simulator runs a whole federation, where every
/// node checks every item it hears, the same bytes a thousand times. Holding the SHA-256 of
/// an item's bytes (which name its signer) is enough to know it was checked; the table is
/// bounded and forgets at random (a miss costs one check, never a wrong answer). A daemon
/// runs one node and does not use it.
#[derive(Clone, Default)]
pub struct SharedItemChecks(Arc<Mutex<HashSet<[u8; 32]>>>);

/// Items [`SharedItemChecks`] remembers at most.
const MAX_SHARED_CHECKS: usize = 1 << 20;

impl SharedItemChecks {
    fn checked(&self, digest: &[u8; 32]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest)
    }

    fn good(&self, digest: [u8; 32]) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= MAX_SHARED_CHECKS
            && let Some(victim) = set.iter().next().copied()
        {
            set.remove(&victim);
        }
        set.insert(digest);
    }
}

impl Shared {
    /// Whether `data`'s signature by `signer` holds (through the shared checks, if any).
    fn verified(&self, data: &[u8], signer: &PublicKey) -> bool {
        let Some(checks) = &self.checks else {
            return verify_item(data, signer);
        };
        let digest: [u8; 32] = sha2::Sha256::digest(data).into();
        if checks.checked(&digest) {
            return true;
        }
        let good = verify_item(data, signer);
        if good {
            checks.good(digest);
        }
        good
    }

    fn is_member(&self, k: &PublicKey) -> bool {
        self.members.contains_key(k) || self.me == Some(*k)
    }

    /// Forgets the items taken [`SEEN_FOR_MS`] ago (the entry of an item taken again since
    /// stays).
    fn forget_old_items(&mut self) {
        let now_ms = self.now_ms;
        while let Some(&(key, taken_ms)) = self.seen_order.front() {
            if now_ms.saturating_sub(taken_ms) < SEEN_FOR_MS {
                break;
            }
            self.seen_order.pop_front();
            if self.seen.get(&key).is_some_and(|s| s.1 == taken_ms) {
                self.seen.remove(&key);
            }
        }
    }

    /// Greets `voter` on the next packet, unless it was greeted within a probe period
    /// (a hello or its answer may be lost; its votes keep coming while it is unlisted).
    fn greet_later(&mut self, voter: PublicKey) {
        let now_ms = self.now_ms;
        let due = self
            .greeted
            .get(&voter)
            .is_none_or(|at| now_ms.saturating_sub(*at) >= PROBE_PERIOD_MS);
        if self.greeted.len() >= PENDING_VOTES && !self.greeted.contains_key(&voter) {
            self.greeted
                .retain(|_, at| now_ms.saturating_sub(*at) < PROBE_PERIOD_MS);
        }
        let room = self.greeted.len() < PENDING_VOTES || self.greeted.contains_key(&voter);
        if due && room && !self.strangers.contains(&voter) {
            self.greeted.insert(voter, now_ms);
            self.strangers.push(voter);
        }
    }

    /// Judges one item: a signed one's signer and subject are members, its signature
    /// holds, and it was not seen before; only then is it counted, and only this node's own
    /// and refutations are spread on (others' votes are pulled: see [`ASKS_PER_ACCUSED`]).
    /// An ask is taken from the member that sent it, to be answered.
    fn judge(&mut self, data: &[u8]) -> Option<ItemKey> {
        let (mut item, key) = match decode_item(data) {
            Some(x) => x,
            None => {
                self.refused += 1;
                return None;
            }
        };
        if let Item::Hint { accused, holder } = &mut item {
            // Only in a packet from a member, about a start this node still lists (one it
            // dropped, or never listed, is no news).
            match self.relayer {
                Some(from)
                    if self.is_member(&from)
                        && self.members.get(&accused.key).map(|(bump, _)| bump)
                            == Some(accused.bump) =>
                {
                    *holder = from;
                    if self.inbox.len() < INBOX {
                        self.inbox.push((item, vec![]));
                    }
                }
                Some(_) => {}
                None => self.refused += 1,
            }
            return None;
        }
        if let Item::Ask { accused, asker, .. } = &mut item {
            // Only in a packet from a member to this node (foca names the sender; this
            // node's own items have none), about a member.
            match self.relayer {
                Some(from)
                    if self.is_member(&from)
                        && (self.members.contains_key(&accused.key)
                            || self.dead.contains_key(&accused.key)) =>
                {
                    *asker = from;
                    if self.inbox.len() < INBOX {
                        self.inbox.push((item, vec![]));
                    }
                }
                _ => self.refused += 1,
            }
            return None;
        }
        if let Item::Refute { id, incarnation } = item
            && self
                .refuted
                .get(&id.key)
                .is_some_and(|&(bump, taken)| bump == id.bump && incarnation <= taken)
        {
            return None;
        }
        let signed_at = match item {
            Item::Vote { at_ms, .. } | Item::Echo { at_ms, .. } => Some(at_ms),
            Item::Refute { .. } | Item::Ask { .. } | Item::Hint { .. } => None,
        };
        self.forget_old_items();
        if let Some((prev, _)) = self.seen.get(&key) {
            // A vote (or echo) again from the same voter about the same start is taken only
            // well after the one taken; anything else seen is not taken twice, and is
            // dropped before its signature is checked.
            let again = signed_at.is_some_and(|at| at >= prev.saturating_add(REVOTE_GAP_MS));
            if !again {
                return None;
            }
        }
        // Votes and echoes count only within the window of their signed time (a replayed
        // old one is refused, whatever this node's table of items seen forgot).
        if let Some(at) = signed_at
            && (self.now_ms.saturating_sub(at) >= VOTE_WINDOW_MS
                || at.saturating_sub(self.now_ms) > VOTE_CLOCK_SKEW_MS)
        {
            self.refused += 1;
            return None;
        }
        let (signer, subject) = match item {
            Item::Vote { accused, voter, .. } | Item::Echo { accused, voter, .. } => {
                (voter, accused.key)
            }
            Item::Refute { id, .. } => (id.key, id.key),
            Item::Ask { .. } | Item::Hint { .. } => return None,
        };
        // A vote about a member this node declared dead: its subject is no member any
        // more, but the voter may be one that learnt of it late. Taken (to be answered with
        // an echo to that voter alone), not spread.
        let late_vote = match item {
            Item::Vote { accused, .. } => {
                self.dead.get(&accused.key).is_some_and(|d| d.id == accused)
            }
            Item::Refute { .. } | Item::Echo { .. } | Item::Ask { .. } | Item::Hint { .. } => false,
        };
        // A late vote is answered only as its voter sent it: answering every copy that
        // members passed on would send the voter an echo from every node that heard one.
        // Not marked seen, so the voter's own copy is still taken.
        if late_vote && self.relayer != Some(signer) {
            return None;
        }
        // An echo counts only at the member it answers (this node).
        let misaddressed = matches!(item, Item::Echo { to, .. } if Some(to) != self.me);
        if matches!(item, Item::Vote { .. })
            && !self.is_member(&signer)
            && self.is_member(&subject)
            && self.verified(data, &signer)
        {
            // Signed by the key it names (so a hello goes only to a key that signed, never
            // to a third party an attacker picks), kept until the voter is a member here.
            // A relaying member fills a share of the table at most, so one hostile member
            // with throwaway keys cannot push honest votes out.
            let relayer = self.relayer;
            let relayed = self.pending.iter().filter(|p| p.0 == relayer).count();
            if relayed < PENDING_PER_RELAYER && !self.pending.iter().any(|p| p.2 == data) {
                if self.pending.len() >= PENDING_VOTES {
                    self.pending.pop_front();
                }
                self.pending.push_back((relayer, signer, data.to_vec()));
            }
            self.greet_later(signer);
        }
        if misaddressed
            || !self.is_member(&signer)
            || !(self.is_member(&subject) || late_vote)
            || !self.verified(data, &signer)
        {
            self.refused += 1;
            return None;
        }
        let now_ms = self.now_ms;
        self.seen.insert(key, (signed_at.unwrap_or(0), now_ms));
        if self.seen_order.len() >= SEEN_ITEMS
            && let Some((old, taken_ms)) = self.seen_order.pop_front()
            && self.seen.get(&old).is_some_and(|s| s.1 == taken_ms)
        {
            self.seen.remove(&old);
        }
        self.seen_order.push_back((key, now_ms));
        if let Item::Refute { id, incarnation } = item
            && self.members.contains_key(&id.key)
        {
            self.refuted.insert(id.key, (id.bump, incarnation));
        }
        if self.inbox.len() < INBOX {
            let bytes = match item {
                Item::Vote { .. } => data.to_vec(),
                _ => vec![],
            };
            self.inbox.push((item, bytes));
        }
        if late_vote || matches!(item, Item::Echo { .. }) {
            return None;
        }
        if self.me == Some(signer) {
            return Some(key);
        }
        // Others' votes are counted, not passed on: a node that lacks them asks for them.
        if matches!(item, Item::Vote { .. }) || self.backlog >= MAX_RELAYED {
            return None;
        }
        Some(key)
    }
}

struct Items(Arc<Mutex<Shared>>);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct NeverFails;

impl foca::BroadcastHandler<SwimId> for Items {
    type Key = ItemKey;
    type Error = NeverFails;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&SwimId>,
    ) -> Result<Option<ItemKey>, NeverFails> {
        // A bad item is dropped and counted, not an error: an error would end foca's
        // reading of the rest of the packet.
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        shared.relayer = sender.map(|s| s.key);
        Ok(shared.judge(data))
    }
}

fn decode_item(data: &[u8]) -> Option<(Item, ItemKey)> {
    let (&tag, mut rest) = data.split_first()?;
    match tag {
        VOTE if data.len() == VOTE_BYTES => {
            let accused = get_id(&mut rest).ok()?;
            let mut voter = [0u8; 32];
            rest.copy_to_slice(&mut voter);
            let voter = PublicKey(voter);
            let at_ms = rest.get_u64();
            Some((
                Item::Vote {
                    accused,
                    voter,
                    at_ms,
                },
                ItemKey::Vote(accused, voter),
            ))
        }
        REFUTE if data.len() == REFUTE_BYTES => {
            let id = get_id(&mut rest).ok()?;
            let incarnation = rest.get_u16();
            Some((
                Item::Refute { id, incarnation },
                ItemKey::Refute(id, incarnation),
            ))
        }
        ECHO if data.len() == ECHO_BYTES => {
            let accused = get_id(&mut rest).ok()?;
            let mut voter = [0u8; 32];
            rest.copy_to_slice(&mut voter);
            let voter = PublicKey(voter);
            let mut to = [0u8; 32];
            rest.copy_to_slice(&mut to);
            let at_ms = rest.get_u64();
            Some((
                Item::Echo {
                    accused,
                    voter,
                    to: PublicKey(to),
                    at_ms,
                },
                ItemKey::Echo(accused, voter),
            ))
        }
        HINT if data.len() == HINT_BYTES => {
            let accused = get_id(&mut rest).ok()?;
            Some((
                Item::Hint {
                    accused,
                    // The sender, filled in by `judge` from the packet.
                    holder: PublicKey([0; 32]),
                },
                ItemKey::Hint(accused),
            ))
        }
        ASK if data.len() >= ASK_BYTES => {
            let accused = get_id(&mut rest).ok()?;
            let count = usize::from(rest.get_u8());
            if count > ASK_NAMES || rest.len() != count * VOTER_PREFIX {
                return None;
            }
            let mut named = [[0u8; VOTER_PREFIX]; ASK_NAMES];
            for name in named.iter_mut().take(count) {
                rest.copy_to_slice(name);
            }
            Some((
                Item::Ask {
                    accused,
                    // The sender, filled in by `judge` from the packet.
                    asker: PublicKey([0; 32]),
                    named,
                    count,
                },
                ItemKey::Ask(accused),
            ))
        }
        _ => None,
    }
}

/// A part of a SWIM packet, to account for its bytes (see [`PacketParts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Headers of probes and acks (`Ping`, `Ack`).
    ProbeHeaders,
    /// Headers of indirect probes (`PingReq`, `IndirectPing`, `IndirectAck`,
    /// `ForwardedAck`).
    IndirectHeaders,
    /// Headers of every other message (`Gossip`, `Broadcast`, `Feed`, `Announce`, ...).
    OtherHeaders,
    /// foca's member updates saying `Alive`, with the updates' count.
    AliveUpdates,
    /// foca's member updates saying `Suspect`.
    SuspectUpdates,
    /// foca's member updates saying `Down`.
    DownUpdates,
    /// Signed down votes.
    Votes,
    /// Signed echoes.
    Echoes,
    /// Signed refutations.
    Refutations,
    /// Asks for votes.
    Asks,
    /// Hints at deaths.
    Hints,
    /// Bytes that did not decode.
    Undecoded,
}

impl Part {
    /// Every part, in the order [`PacketParts::named`] gives them.
    pub const ALL: [Part; 12] = [
        Part::ProbeHeaders,
        Part::IndirectHeaders,
        Part::OtherHeaders,
        Part::AliveUpdates,
        Part::SuspectUpdates,
        Part::DownUpdates,
        Part::Votes,
        Part::Echoes,
        Part::Refutations,
        Part::Asks,
        Part::Hints,
        Part::Undecoded,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Part::ProbeHeaders => "probe headers",
            Part::IndirectHeaders => "indirect headers",
            Part::OtherHeaders => "other headers",
            Part::AliveUpdates => "alive updates",
            Part::SuspectUpdates => "suspect updates",
            Part::DownUpdates => "down updates",
            Part::Votes => "votes",
            Part::Echoes => "echoes",
            Part::Refutations => "refutations",
            Part::Asks => "asks",
            Part::Hints => "hints",
            Part::Undecoded => "undecoded",
        }
    }
}

/// What a SWIM packet's bytes are for, by [`Part`] (the simulator's breakdown of SWIM
/// traffic). A packet that does not decode counts whole as [`Part::Undecoded`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PacketParts([u64; Part::ALL.len()]);

impl PacketParts {
    /// The bytes of `part`.
    pub fn get(&self, part: Part) -> u64 {
        self.0.get(part as usize).copied().unwrap_or(0)
    }

    /// Counts `bytes` to `part`.
    fn count(&mut self, part: Part, bytes: u64) {
        if let Some(b) = self.0.get_mut(part as usize) {
            *b += bytes;
        }
    }

    /// Accounts `wire`, a SWIM packet as sent; bounded by its length.
    pub fn of(wire: &[u8]) -> PacketParts {
        let mut parts = PacketParts::default();
        let Ok((header, header_len)) = codec::wire_header(wire) else {
            parts.count(Part::Undecoded, wire.len() as u64);
            return parts;
        };
        let mut rest = wire.get(header_len..).unwrap_or_default();
        let header_len = header_len as u64;
        match header.message {
            Message::Ping(_) | Message::Ack(_) => parts.count(Part::ProbeHeaders, header_len),
            Message::PingReq { .. }
            | Message::IndirectPing { .. }
            | Message::IndirectAck { .. }
            | Message::ForwardedAck { .. } => parts.count(Part::IndirectHeaders, header_len),
            _ => parts.count(Part::OtherHeaders, header_len),
        }
        if codec::carries_updates(&header.message, rest) {
            let count = rest.get_u16();
            parts.count(Part::AliveUpdates, 2);
            for _ in 0..count {
                let mut next = rest;
                let Ok(update) = codec::get_wire_update(&mut next) else {
                    break;
                };
                rest = next;
                let bytes = update.wire_len() as u64;
                match update.state() {
                    State::Alive => parts.count(Part::AliveUpdates, bytes),
                    State::Suspect => parts.count(Part::SuspectUpdates, bytes),
                    State::Down => parts.count(Part::DownUpdates, bytes),
                }
            }
        }
        while let [hi, lo, after @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let Some(item) = after.get(..len) else {
                break;
            };
            rest = after;
            let bytes = 2 + len as u64;
            match item.first().copied() {
                Some(VOTE) => parts.count(Part::Votes, bytes),
                Some(ECHO) => parts.count(Part::Echoes, bytes),
                Some(REFUTE) => parts.count(Part::Refutations, bytes),
                Some(ASK) => parts.count(Part::Asks, bytes),
                Some(HINT) => parts.count(Part::Hints, bytes),
                _ => parts.count(Part::Undecoded, bytes),
            }
            rest.advance(len);
        }
        parts.count(Part::Undecoded, rest.len() as u64);
        parts
    }

    /// Adds `other`'s parts to these.
    pub fn add(&mut self, other: &PacketParts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// These parts less `earlier`'s (saturating).
    pub fn minus(&self, earlier: &PacketParts) -> PacketParts {
        let mut less = *self;
        for (mine, before) in less.0.iter_mut().zip(earlier.0) {
            *mine = mine.saturating_sub(before);
        }
        less
    }

    /// All bytes accounted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each part with its name, in [`Part::ALL`]'s order.
    pub fn named(&self) -> [(&'static str, u64); Part::ALL.len()] {
        Part::ALL.map(|part| (part.name(), self.get(part)))
    }
}

/// A hint that the sender holds `accused` dead.
fn hint_bytes(accused: &SwimId) -> Vec<u8> {
    let mut b = Vec::with_capacity(HINT_BYTES);
    b.put_u8(HINT);
    put_id(accused, &mut b);
    b
}

/// An ask for the votes about `accused`, naming the voters the asker has (at most
/// [`ASK_NAMES`]).
fn ask_bytes(accused: &SwimId, have: &[PublicKey]) -> Vec<u8> {
    let have = have.get(..have.len().min(ASK_NAMES)).unwrap_or_default();
    let mut b = Vec::with_capacity(ASK_BYTES + have.len() * VOTER_PREFIX);
    b.put_u8(ASK);
    put_id(accused, &mut b);
    b.put_u8(have.len() as u8);
    for voter in have {
        b.put_slice(voter.0.get(..VOTER_PREFIX).unwrap_or_default());
    }
    b
}

/// Whether a vote's bytes (judged when taken) are still within their window at `now_ms`.
fn vote_is_fresh(vote: &[u8], now_ms: u64) -> bool {
    vote.get(1 + ID_BYTES + 32..1 + ID_BYTES + 40)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .is_some_and(|at| now_ms.saturating_sub(u64::from_be_bytes(at)) < VOTE_WINDOW_MS)
}

/// The voter a vote's bytes name (they were judged when taken).
fn voter_of(vote: &[u8]) -> Option<&[u8]> {
    vote.get(1 + ID_BYTES..1 + ID_BYTES + 32)
}

/// The signed part of an item (everything but the signature) and the signature.
fn split_signature(data: &[u8]) -> Option<(&[u8], [u8; 64])> {
    let at = data.len().checked_sub(64)?;
    let (body, sig) = data.split_at(at);
    Some((body, sig.try_into().ok()?))
}

fn verify_item(data: &[u8], signer: &PublicKey) -> bool {
    let Some((body, sig)) = split_signature(data) else {
        return false;
    };
    let domain = match body.first() {
        Some(&VOTE) => VOTE_DOMAIN,
        Some(&REFUTE) => REFUTE_DOMAIN,
        Some(&ECHO) => ECHO_DOMAIN,
        _ => return false,
    };
    signer.verify_domain(domain, body, &sig).is_ok()
}

fn vote_bytes(key: &SecretKey, accused: &SwimId, at_ms: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(VOTE_BYTES);
    b.put_u8(VOTE);
    put_id(accused, &mut b);
    b.put_slice(&key.public().0);
    b.put_u64(at_ms);
    let sig = key.sign_domain(VOTE_DOMAIN, &b);
    b.put_slice(&sig);
    b
}

fn echo_bytes(key: &SecretKey, accused: &SwimId, to: &PublicKey, at_ms: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(ECHO_BYTES);
    b.put_u8(ECHO);
    put_id(accused, &mut b);
    b.put_slice(&key.public().0);
    b.put_slice(&to.0);
    b.put_u64(at_ms);
    let sig = key.sign_domain(ECHO_DOMAIN, &b);
    b.put_slice(&sig);
    b
}

fn refute_bytes(key: &SecretKey, id: &SwimId, incarnation: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(REFUTE_BYTES);
    b.put_u8(REFUTE);
    put_id(id, &mut b);
    b.put_u16(incarnation);
    let sig = key.sign_domain(REFUTE_DOMAIN, &b);
    b.put_slice(&sig);
    b
}

/// Where a step's notifications came from (what a `MemberDown` means).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// This node's own timers: a suspicion it raised ran out, so it votes.
    Timer,
    /// A packet from this member: only its own `Down` (it leaves) gets through the filter.
    Packet(PublicKey),
    /// The node's own decision (admit, expel, quorum): nothing more to do.
    Local,
}

/// Votes about one identity.
struct Tally {
    first_ms: u64,
    voters: BTreeSet<PublicKey>,
    /// The bytes of up to a quorum of the votes counted (this node's own among them), to
    /// answer asks.
    votes: Vec<Vec<u8>>,
    done: bool,
}

/// Another's vote waiting to be passed on.
struct Relay {
    accused: SwimId,
    voter: PublicKey,
    vote: Vec<u8>,
    left: u8,
}

/// The members a node asked for the votes about one accused start.
struct Asking {
    /// The first ask (the entry is forgotten a vote window later).
    first_ms: u64,
    /// The last ask.
    last_ms: u64,
    /// When the current allowance of [`ASKS_PER_ACCUSED`] began, and the asks since.
    allowance_ms: u64,
    asks_in_allowance: usize,
    /// The members asked, latest last (at most [`ASKED_REMEMBERED`]): each once.
    asked: VecDeque<PublicKey>,
}

/// SWIM for one node.
pub struct Swim {
    key: SecretKey,
    me: SwimId,
    foca: Foca<SwimId, SwimCodec, SmallRng, Items>,
    rt: AccumulatingRuntime<SwimId>,
    shared: Arc<Mutex<Shared>>,
    timers: BTreeMap<(u64, u64), Timer<SwimId>>,
    /// Where the current probe's `SendIndirectProbe` sits in `timers`, if it is there:
    /// dropped as soon as the probe's ack is in (`Foca::settle_indirect_probe`), instead
    /// of waking the node to find it in.
    indirect_probe_at: Option<(u64, u64)>,
    /// How many of `timers` are foca's `RemoveDown`.
    removal_timers: usize,
    /// Where each member key's removal timer sits in `timers` (one per key).
    removal_by_key: HashMap<PublicKey, (u64, u64)>,
    seq: u64,
    tallies: HashMap<SwimId, Tally>,
    /// When the oldest of `tallies` ends (none: no tally), so that `wake` walks them only
    /// then (it runs at every timer).
    tallies_expire_ms: Option<u64>,
    /// Identities this node cast its vote about a second time (once only: see `wake`).
    recast: HashSet<SwimId>,
    /// Whom this node asked for votes about each accused start (at most [`MAX_MEMBERS`],
    /// for a vote window).
    asking: HashMap<SwimId, Asking>,
    /// When the oldest entry of `asking` is forgotten (none: nothing to forget).
    asking_expires_ms: Option<u64>,
    /// Others' votes this node passes on, each a few times, while it has too few about
    /// their accused (at most [`MAX_RELAYED`]; see [`RELAY_TRANSMISSIONS`]).
    relay: VecDeque<Relay>,
    /// Members heard holding another member down in the packet being read, with the
    /// sender (at most a packet's updates): asked for their votes after it.
    downs_heard: Vec<(SwimId, PublicKey)>,
    /// Members this node declared dead within [`HINT_FOR_MS`], with when, hinted at in
    /// turn (at most [`HINTS_HELD`]).
    hints: VecDeque<(SwimId, u64)>,
    /// Packets sent with room for items (one in [`HINT_EVERY_PACKETS`] carries a hint).
    hint_turn: u64,
    incarnation: u16,
    refuted: u16,
    members_at_config: usize,
    stats: SwimStats,
    rate: RateLimits,
}

/// What [`RateLimits`] counts.
#[derive(Clone, Copy)]
enum Limit {
    /// Requests from a member to probe others.
    PingReq,
    /// Suspicions of this node by a member.
    SelfSuspicion,
    /// Asks for votes from a member.
    AskFrom,
    /// Asks for votes this node sends to a member.
    AskTo,
}

/// Counts per member and probe period (at most one entry per member and this node).
#[derive(Default)]
struct RateLimits {
    windows: HashMap<PublicKey, Window, BuildKeyHasher>,
    next_prune_ms: u64,
}

#[derive(Clone, Copy, Default)]
struct Window {
    start_ms: u64,
    ping_reqs: u32,
    self_suspicions: u32,
    asks_from: u32,
    asks_to: u32,
}

impl RateLimits {
    /// Whether one more of `what` from `who` is taken now.
    fn take(&mut self, now_ms: u64, who: PublicKey, what: Limit) -> bool {
        if self.windows.len() >= MAX_MEMBERS && !self.windows.contains_key(&who) {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.start_ms) < PROBE_PERIOD_MS);
        }
        if self.windows.len() >= MAX_MEMBERS && !self.windows.contains_key(&who) {
            return false;
        }
        let w = self.windows.entry(who).or_default();
        if now_ms.saturating_sub(w.start_ms) >= PROBE_PERIOD_MS {
            *w = Window {
                start_ms: now_ms,
                ..Window::default()
            };
        }
        let (count, most) = match what {
            Limit::PingReq => (&mut w.ping_reqs, PING_REQS_PER_PERIOD),
            Limit::SelfSuspicion => (&mut w.self_suspicions, SELF_SUSPICIONS_PER_PERIOD),
            Limit::AskFrom => (&mut w.asks_from, ASKS_PER_PERIOD),
            Limit::AskTo => (&mut w.asks_to, ASKS_PER_PERIOD),
        };
        if *count >= most {
            return false;
        }
        *count += 1;
        true
    }

    fn forget(&mut self, who: &PublicKey) {
        self.windows.remove(who);
    }

    /// Drops the windows of past probe periods (a stale window counts as none), at most
    /// once a period: otherwise every member that ever asked for a probe kept one.
    fn prune(&mut self, now_ms: u64) {
        if now_ms >= self.next_prune_ms {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.start_ms) < PROBE_PERIOD_MS);
            self.next_prune_ms = now_ms.saturating_add(PROBE_PERIOD_MS);
        }
    }
}

impl Swim {
    /// SWIM for the node with `key`, started at `bump` (its start time, ms), with a
    /// generator seeded by `seed`.
    pub fn new(key: &SecretKey, bump: u64, seed: u64) -> Swim {
        let me = SwimId {
            key: key.public(),
            bump,
        };
        let shared = Arc::new(Mutex::new(Shared {
            me: Some(me.key),
            ..Shared::default()
        }));
        let foca = Foca::with_custom_broadcast(
            me,
            config(0),
            SmallRng::seed_from_u64(seed),
            SwimCodec,
            Items(shared.clone()),
        );
        Swim {
            key: SecretKey::from_seed(&key.seed()),
            me,
            foca,
            rt: AccumulatingRuntime::new(),
            shared,
            timers: BTreeMap::new(),
            indirect_probe_at: None,
            removal_timers: 0,
            removal_by_key: HashMap::new(),
            seq: 0,
            tallies: HashMap::new(),
            tallies_expire_ms: None,
            recast: HashSet::new(),
            asking: HashMap::new(),
            asking_expires_ms: None,
            downs_heard: Vec::new(),
            hints: VecDeque::new(),
            hint_turn: 0,
            relay: VecDeque::new(),
            incarnation: 0,
            refuted: 0,
            members_at_config: 0,
            stats: SwimStats::default(),
            rate: RateLimits::default(),
        }
    }

    /// Shares signature checks of signed items with other machines of this process (the
    /// simulator's).
    pub fn share_item_checks(&mut self, checks: SharedItemChecks) {
        self.shared().checks = Some(checks);
    }

    /// Whether `id` is the identity this node probes for its key.
    pub fn knows(&self, id: &SwimId) -> bool {
        self.shared()
            .members
            .get(&id.key)
            .is_some_and(|s| s.0 == id.bump)
    }

    /// The start of `key` this node declared dead (and still remembers), if any.
    pub fn dead_start(&self, key: &PublicKey) -> Option<u64> {
        self.shared().dead.get(key).map(|d| d.id.bump)
    }

    /// The start this node probes `key` under, if it lists it.
    pub fn start_of(&self, key: &PublicKey) -> Option<u64> {
        self.shared().members.get(key).map(|s| s.0)
    }

    /// When this node last took a packet of `key`'s own (its clock, rounded down to the
    /// second), if it lists `key` and has taken one.
    pub fn last_heard_ms(&self, key: &PublicKey) -> Option<u64> {
        let listed = self.shared().members.listed(key).copied()?;
        (listed.heard_s > 0).then(|| u64::from(listed.heard_s).saturating_mul(1000))
    }

    /// This node's identity.
    pub fn me(&self) -> SwimId {
        self.me
    }

    /// What SWIM has done so far.
    pub fn stats(&self) -> SwimStats {
        let mut s = self.stats;
        s.items_refused = self.shared().refused;
        s
    }

    /// Members foca holds as alive or suspected.
    pub fn active(&self) -> usize {
        self.foca.num_members()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_member(&self, k: &PublicKey) -> bool {
        self.shared().is_member(k)
    }

    /// When [`Swim::wake`] must next run, if anything waits.
    pub fn next_wake(&self) -> Option<u64> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// A member the node judged on its credential (`bump` from its advert): probed from now
    /// on, and allowed to speak.
    pub fn admit(&mut self, now_ms: u64, id: SwimId) -> Vec<SwimEvent> {
        // This node's own key is never a member, nor is a key sharing its prefix (a
        // compact update naming it is read as about this node).
        if MemberKey(id.key) == MemberKey(self.me.key) {
            return vec![];
        }
        let (members, pending) = {
            let mut s = self.shared();
            let Some(said) = s.members.entry_or(id.key, id.bump) else {
                // Another member's key has the same 16 first bytes: made on purpose.
                return vec![];
            };
            if said.bump < id.bump {
                said.bump = id.bump;
                said.incarnation = 0;
            }
            // Its votes that came before it was listed are judged now.
            s.now_ms = now_ms;
            let (theirs, others) = std::mem::take(&mut s.pending)
                .into_iter()
                .partition::<VecDeque<_>, _>(|(_, voter, _)| *voter == id.key);
            s.pending = others;
            let pending = !theirs.is_empty();
            s.relayer = None;
            for (_, _, data) in theirs {
                let _ = s.judge(&data);
            }
            (s.members.len(), pending)
        };
        self.forget_dead(&id);
        self.recast.retain(|r| r.key != id.key);
        // Listed again (say, on an advert after it was declared dead): a quorum counted
        // about this start, kept to answer asks, must not stop new votes from counting.
        if self.tallies.get(&id).is_some_and(|t| t.done) {
            self.tallies.remove(&id);
        }
        self.reconfigure(members);
        let _ = self
            .foca
            .apply_many(std::iter::once(Member::alive(id)), false, &mut self.rt);
        let mut out = vec![];
        self.drain(now_ms, Cause::Local, &mut out);
        if pending {
            self.count_items(now_ms, &mut out);
        }
        out
    }

    /// A ping to `peer`, a node this one is connected to and does not list: answered with a
    /// bare ack if it does not list this node either, and each side then asks the other's
    /// credential (a SWIM packet from a non-member does that), so two nodes that connect
    /// are members of each other within a few round trips, whatever adverts they missed.
    pub fn hello(&mut self, peer: PublicKey) -> Vec<SwimEvent> {
        if peer == self.me.key {
            return vec![];
        }
        let ping = foca::Header {
            src: self.me,
            src_incarnation: self.incarnation,
            // Its start is not known: a packet to an earlier start is answered as the
            // current one.
            dst: SwimId { key: peer, bump: 0 },
            message: Message::Ping(0),
        };
        let mut packet = Vec::with_capacity(2 * ID_BYTES + 8);
        if foca::Codec::encode_header(&mut SwimCodec, &ping, &mut packet).is_err() {
            return vec![];
        }
        packet.put_u16(0);
        let mut out = vec![];
        self.emit(peer, &packet, &mut out);
        out
    }

    /// Says hello to a member that just started (a SWIM announce): the member, which may
    /// not list this node yet, asks for its credential and so knows a member at once.
    pub fn greet(&mut self, now_ms: u64, id: SwimId) -> Vec<SwimEvent> {
        let _ = self.foca.announce(id, &mut self.rt);
        let mut out = vec![];
        self.drain(now_ms, Cause::Local, &mut out);
        out
    }

    /// A member the node no longer counts (revoked, expired, or dead by quorum): no longer
    /// probed, and not heard.
    pub fn expel(&mut self, now_ms: u64, key: &PublicKey) -> Vec<SwimEvent> {
        let said = {
            let mut shared = self.shared();
            shared.refuted.remove(key);
            shared.members.remove(key)
        };
        self.rate.forget(key);
        self.recast.retain(|id| id.key != *key);
        // A quorum counted is kept for its window: its votes answer asks about the member.
        self.tallies.retain(|id, t| id.key != *key || t.done);
        self.asking.retain(|id, _| id.key != *key);
        self.relay.retain(|r| r.accused.key != *key);
        let mut out = vec![];
        if let Some((bump, inc)) = said {
            let id = SwimId { key: *key, bump };
            let _ = self.foca.apply_many(
                std::iter::once(Member::new(id, inc, State::Down)),
                false,
                &mut self.rt,
            );
            self.drain(now_ms, Cause::Local, &mut out);
        }
        out
    }

    /// Keeps foca's dissemination count right for the federation's size (it is the one
    /// setting foca lets change while running).
    fn reconfigure(&mut self, members: usize) {
        let grew = members >= self.members_at_config.saturating_mul(2).max(16);
        if grew {
            self.members_at_config = members;
            let _ = self.foca.set_config(config(members));
        }
    }

    /// A SWIM packet from member `from` (the transport's authenticated peer). Returns what
    /// to do, and why the packet was not taken if it was not.
    ///
    /// A ping from a node that is not a member (yet: it may have started while this node
    /// was away, and the node machine asks for its credential) gets a bare ack, with no
    /// news and nothing of it read: otherwise every node that starts would be suspected by
    /// every member that probes it before it has heard their adverts.
    pub fn packet(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        data: &[u8],
    ) -> (Vec<SwimEvent>, Result<(), SwimRefusal>) {
        self.shared().now_ms = now_ms;
        // News read from a packet that is then refused is not acted on.
        self.shared().newcomers.clear();
        self.downs_heard.clear();
        if data.len() > MAX_PACKET {
            self.stats.refused += 1;
            return (vec![], Err(SwimRefusal::TooBig(data.len())));
        }
        // The sender is the authenticated peer and the addressee this node, by
        // construction: the wire form leaves both keys out.
        let data = match self.off_the_wire(from, data) {
            Ok(d) => d,
            Err(e) => {
                self.stats.refused += 1;
                return (vec![], Err(e.into()));
            }
        };
        // Read back, compact updates take their full room: a packet over foca's bound
        // would be refused by foca after the filter had taken the sender's allowances
        // and news from it (honest senders build within the bound in foca's form).
        if data.len() > MAX_PACKET {
            self.stats.refused += 1;
            return (vec![], Err(SwimRefusal::TooBig(data.len())));
        }
        let data = &data[..];
        let filtered = match self.filter(now_ms, from, data) {
            Ok(f) => f,
            Err(e) => {
                self.stats.refused += 1;
                let mut out = vec![];
                if matches!(e, SwimRefusal::NotAMember(_)) {
                    self.bare_ack(data, &mut out);
                }
                return (out, Err(e));
            }
        };
        self.stats.received += 1;
        let result = self.foca.handle_data(&filtered, &mut self.rt);
        let mut out = vec![];
        self.drain(now_ms, Cause::Packet(from), &mut out);
        self.settle_indirect_probe();
        self.count_items(now_ms, &mut out);
        self.ask_for_votes(now_ms, &mut out);
        self.greet_strangers(&mut out);
        let newcomers = std::mem::take(&mut self.shared().newcomers);
        out.extend(
            newcomers
                .into_iter()
                .map(|(id, via)| SwimEvent::Stranger { id, via }),
        );
        match result {
            // What foca did before it stopped still stands (it is in `out`).
            Err(e) if out.is_empty() => (out, Err(SwimRefusal::Foca(e.to_string()))),
            _ => (out, Ok(())),
        }
    }

    /// Says hello to the voters of votes kept for when they are listed: each answers
    /// with a packet, which (from a node this one does not list) makes the node machine
    /// ask its credential and admit it.
    fn greet_strangers(&mut self, out: &mut Vec<SwimEvent>) {
        let strangers = std::mem::take(&mut self.shared().strangers);
        for voter in strangers {
            out.extend(self.hello(voter));
        }
    }

    /// An ack to a ping from a node that is not a member, carrying nothing.
    fn bare_ack(&mut self, data: &[u8], out: &mut Vec<SwimEvent>) {
        let Ok(h) = foca::Codec::decode_header(&mut SwimCodec, data) else {
            return;
        };
        let Message::Ping(probe) = h.message else {
            return;
        };
        if h.dst.key != self.me.key {
            return;
        }
        let ack = foca::Header {
            src: self.me,
            src_incarnation: self.incarnation,
            dst: h.src,
            message: Message::Ack(probe),
        };
        let mut packet = Vec::with_capacity(2 * ID_BYTES + 8);
        if foca::Codec::encode_header(&mut SwimCodec, &ack, &mut packet).is_ok() {
            packet.put_u16(0);
            self.emit(h.src.key, &packet, out);
        }
    }

    /// Checks a packet and rewrites its updates (see the module's invariants); the result is
    /// what foca reads.
    fn filter(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        data: &[u8],
    ) -> Result<Vec<u8>, SwimRefusal> {
        let mut rest = data;
        let header = foca::Codec::decode_header(&mut SwimCodec, &mut rest)?;
        let header_len = data.len() - rest.len();
        if !self.is_member(&from) {
            return Err(SwimRefusal::NotAMember(from));
        }
        let other = match &header.message {
            Message::TurnUndead => return Err(SwimRefusal::TurnUndead),
            Message::PingReq { target: o, .. }
            | Message::IndirectAck { target: o, .. }
            | Message::IndirectPing { origin: o, .. }
            | Message::ForwardedAck { origin: o, .. } => Some(*o),
            _ => None,
        };
        // The other node must be a member (or this node); a request to probe one must name
        // its current start (one naming a made-up start would reflect pings at it). The
        // rest name the prober, whose new start this node may not have learnt yet.
        if let Some(o) = other
            && o != self.me
            && !self.is_member(&o.key)
        {
            return Err(SwimRefusal::ProbeOfNonMember(o.key));
        }
        if let Message::PingReq { target, .. } = &header.message
            && !self.knows(target)
        {
            return Err(SwimRefusal::ProbeOfNonMember(target.key));
        }
        if matches!(header.message, Message::PingReq { .. })
            && !self.rate.take(now_ms, from, Limit::PingReq)
        {
            return Err(SwimRefusal::TooManyProbeRequests(from));
        }
        // The sender speaks for itself: its own identity and incarnation are what it says.
        self.heard_from(&header.src, header.src_incarnation, true);
        let mut out = Vec::with_capacity(data.len());
        if header.dst == self.me {
            out.extend_from_slice(data.get(..header_len).unwrap_or_default());
        } else {
            // Addressed to an earlier start of this node: answered as this one, so the
            // sender learns the new identity instead of suspecting the old.
            let header = foca::Header {
                dst: self.me,
                ..header.clone()
            };
            foca::Codec::encode_header(&mut SwimCodec, &header, &mut out)?;
        }
        let has_updates = !matches!(
            header.message,
            Message::Broadcast | Message::Announce | Message::TurnUndead
        ) && rest.remaining() >= 2;
        if !has_updates {
            out.extend_from_slice(rest);
            return Ok(out);
        }
        let count = usize::from(rest.get_u16());
        if count.saturating_mul(MEMBER_BYTES) > rest.remaining() {
            return Err(codec::SwimCodecError::Short("updates").into());
        }
        let mut kept = Vec::with_capacity(count);
        for _ in 0..count {
            let m = foca::Codec::decode_member(&mut SwimCodec, &mut rest)?;
            match self.judge_update(&from, m) {
                Some(m) => kept.push(m),
                None => self.stats.updates_filtered += 1,
            }
        }
        // A suspicion of this node at its current incarnation (foca refutes it by raising
        // the incarnation) is taken from each member once per probe period at most, and
        // only from a whole packet of the member's current start (foca reads nothing else
        // of it): a member can neither pump the incarnation nor use up the allowance that
        // honest probers' suspicions need to be refuted.
        let (me, incarnation) = (self.me, self.incarnation);
        let refutable = |m: &Member<SwimId>| {
            *m.id() == me && !matches!(m.state(), State::Alive) && m.incarnation() >= incarnation
        };
        if kept.iter().any(refutable)
            && !(self.knows(&header.src) && self.rate.take(now_ms, from, Limit::SelfSuspicion))
        {
            let before = kept.len();
            kept.retain(|m| !refutable(m));
            self.stats.updates_filtered += (before - kept.len()) as u64;
        }
        out.put_u16(kept.len() as u16);
        for m in &kept {
            foca::Codec::encode_member(&mut SwimCodec, m, &mut out)?;
        }
        out.extend_from_slice(rest);
        Ok(out)
    }

    /// A member's own word about itself (a packet it sent, or its signed refutation). When
    /// it raises the incarnation the member said (it refuted a suspicion), the votes about
    /// its start no longer add up.
    ///
    /// `own_packet`: the member's own packet (the transport authenticated it, so it is
    /// alive now). A signed refutation may be an old one replayed: it says the member is
    /// alive (and undoes a death declared here) only when it is news, a raise or a later
    /// start.
    fn heard_from(&mut self, id: &SwimId, incarnation: u16, own_packet: bool) {
        let (raised, news) = {
            let mut shared = self.shared();
            // Seconds of a u64 ms clock: u32 holds them until 2106 (and 0 means never).
            let now_s = u32::try_from(shared.now_ms / 1000)
                .unwrap_or(u32::MAX)
                .max(1);
            match shared.members.get_mut(&id.key) {
                Some(said) => {
                    if own_packet {
                        said.heard_s = now_s;
                    }
                    if (id.bump, incarnation) > (said.bump, said.incarnation) {
                        let raised = said.bump == id.bump;
                        said.bump = id.bump;
                        said.incarnation = incarnation;
                        (raised, true)
                    } else {
                        (false, false)
                    }
                }
                None => (false, false),
            }
        };
        if own_packet || news {
            self.forget_dead(id);
        }
        if raised {
            self.tallies.remove(id);
            self.recast.remove(id);
            self.relay.retain(|r| r.accused != *id);
        }
    }

    /// One piggybacked update from `from`: kept, rewritten, or dropped (`None`).
    fn judge_update(&mut self, from: &PublicKey, m: Member<SwimId>) -> Option<Member<SwimId>> {
        let id = *m.id();
        if id.key == *from {
            // About the sender itself, including its own `Down` (it leaves).
            return Some(m);
        }
        if id.key == self.me.key {
            if id != self.me {
                return None;
            }
            // About this node: nobody makes it drop out or jump its incarnation, and a
            // suspicion at its current incarnation (which foca refutes by raising it) is
            // taken once per probe period at most, so a member cannot pump it. One taken
            // is refuted, which answers every suspicion at that incarnation; older ones
            // change nothing and are not counted (they cannot use up the period).
            let inc = m.incarnation().min(self.incarnation);
            return Some(match m.state() {
                State::Alive => Member::new(id, inc, State::Alive),
                State::Suspect | State::Down => Member::new(id, inc, State::Suspect),
            });
        }
        let Some((bump, said)) = self.shared().members.get(&id.key) else {
            // News of a node this one does not list: learnt (by the node machine, from the
            // sender, on its credential) only when it is said to be alive.
            // A start this node declared dead is not news; a later start of it is.
            let dead_start = self.shared().dead.get(&id.key).map(|d| d.id.bump);
            if matches!(m.state(), State::Alive) && dead_start.is_none_or(|b| id.bump > b) {
                self.shared().newcomers.push((id, *from));
            }
            return None;
        };
        if id.bump != bump {
            // Another start of the member than the one it told this node about: news only
            // once it speaks for itself (or is admitted on a new advert).
            return None;
        }
        match m.state() {
            State::Alive if m.incarnation() > said => None,
            State::Alive => Some(m),
            // A third party's word is a suspicion, at most at an incarnation the member
            // itself said; its `Down` says it holds votes, which this node may ask for.
            State::Suspect | State::Down => {
                if matches!(m.state(), State::Down) && self.downs_heard.len() < MAX_PACKET {
                    self.downs_heard.push((id, *from));
                }
                Some(Member::new(id, m.incarnation().min(said), State::Suspect))
            }
        }
    }

    /// Time passes: fires foca's timers that are due.
    pub fn wake(&mut self, now_ms: u64) -> Vec<SwimEvent> {
        self.shared().now_ms = now_ms;
        let mut out = vec![];
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let (when, timer) = entry.remove_entry();
            if let Timer::RemoveDown(id) = &timer {
                self.removal_timers = self.removal_timers.saturating_sub(1);
                if self.removal_by_key.get(&id.key) == Some(&when) {
                    self.removal_by_key.remove(&id.key);
                }
            }
            let _ = self.foca.handle_timer(timer, &mut self.rt);
            self.drain(now_ms, Cause::Timer, &mut out);
        }
        self.count_items(now_ms, &mut out);
        // A vote of this node's that found no quorum within its window (the others' votes
        // went by before this node counted them, or they were not relayed to it) is cast
        // again, signed now: members that still suspect the member vote with it, and those
        // that declared it dead answer with their own (see `echo_dead`). Without this a
        // dead member stays listed here until its adverts time out.
        let me = self.me.key;
        let mut revotes = vec![];
        // Walked only when its oldest entry is due (`wake` runs at every timer).
        if self.asking_expires_ms.is_some_and(|at| now_ms >= at) {
            self.asking
                .retain(|_, a| now_ms.saturating_sub(a.first_ms) < VOTE_WINDOW_MS);
            self.asking_expires_ms = self
                .asking
                .values()
                .map(|a| a.first_ms.saturating_add(VOTE_WINDOW_MS))
                .min();
        }
        // Walked only when its oldest tally is due, like `asking`.
        if self.tallies_expire_ms.is_some_and(|at| now_ms >= at) {
            self.tallies.retain(|id, t| {
                let keep = now_ms.saturating_sub(t.first_ms) < VOTE_WINDOW_MS;
                if !keep && !t.done && t.voters.contains(&me) {
                    revotes.push(*id);
                }
                keep
            });
            self.tallies_expire_ms = self
                .tallies
                .values()
                .map(|t| t.first_ms.saturating_add(VOTE_WINDOW_MS))
                .min();
            // The table's order is a hasher's: cast in identity order, the same every run.
            revotes.sort_unstable();
        }
        let recast = !revotes.is_empty();
        for accused in revotes {
            // Once only, and only while foca still holds it down (it has not been heard
            // from since): a vote cast again needs the evidence that made the first.
            let held_alive = self.foca.iter_members().any(|m| *m.id() == accused);
            if self.knows(&accused)
                && !held_alive
                && self.recast.len() < MAX_MEMBERS
                && self.recast.insert(accused)
            {
                self.stats.votes_signed += 1;
                let item = vote_bytes(&self.key, &accused, now_ms);
                let _ = self.foca.add_broadcast(&item);
            }
        }
        if recast {
            // This node's own vote starts the new tally.
            self.count_items(now_ms, &mut out);
        }
        self.rate.prune(now_ms);
        let mut shared = self.shared();
        if shared.dead_expires_ms.is_some_and(|at| now_ms >= at) {
            shared
                .dead
                .retain(|_, d| now_ms.saturating_sub(d.at_ms) < DEAD_REMEMBERED_MS);
            shared.dead_expires_ms = shared
                .dead
                .values()
                .map(|d| d.at_ms.saturating_add(DEAD_REMEMBERED_MS))
                .min();
        }
        drop(shared);
        out
    }

    /// Drops the current probe's `SendIndirectProbe` timer once its ack is in: firing it
    /// would only find that out (foca does the same bookkeeping now). Every probe of a
    /// live member is acked within the round trip, so this saves a wake of the node per
    /// probe, a third of a simulated federation's events; the indirect stage of a probe
    /// still waiting for its ack is untouched.
    fn settle_indirect_probe(&mut self) {
        let Some(at) = self.indirect_probe_at else {
            return;
        };
        match self.timers.get(&at) {
            Some(timer) if self.foca.settle_indirect_probe(timer) => {
                self.timers.remove(&at);
                self.indirect_probe_at = None;
            }
            Some(_) => {}
            // Fired already.
            None => self.indirect_probe_at = None,
        }
    }

    /// Carries out what foca asked for: packets out, timers kept, notifications read.
    fn drain(&mut self, now_ms: u64, cause: Cause, out: &mut Vec<SwimEvent>) {
        while let Some((due, timer)) = self.rt.to_schedule() {
            // One removal timer per member key, the latest (foca keeps one entry per key,
            // so an earlier start's removal would find nothing): a member churning its
            // identity costs one slot, not one per start. And removals may fill half the
            // table at most: probes and suspicions always have room.
            let removal = match &timer {
                Timer::RemoveDown(id) => Some(id.key),
                _ => None,
            };
            if let Some(key) = removal
                && let Some(earlier) = self.removal_by_key.remove(&key)
                && self.timers.remove(&earlier).is_some()
            {
                self.removal_timers = self.removal_timers.saturating_sub(1);
            }
            if removal.is_some() && self.removal_timers >= MAX_TIMERS / 2 {
                continue;
            }
            if self.timers.len() < MAX_TIMERS {
                let at = now_ms.saturating_add(due.as_millis() as u64);
                self.seq += 1;
                if let Some(key) = removal {
                    self.removal_timers += 1;
                    self.removal_by_key.insert(key, (at, self.seq));
                }
                if matches!(timer, Timer::SendIndirectProbe { .. }) {
                    self.indirect_probe_at = Some((at, self.seq));
                }
                self.timers.insert((at, self.seq), timer);
            }
        }
        while let Some((to, data)) = self.rt.to_send() {
            let mut data = data.to_vec();
            // Our own incarnation, as foca tells members: when it rises (foca refuting a
            // suspicion) the rise is signed, so members may believe relays of it.
            if let Ok(h) = foca::Codec::decode_header(&mut SwimCodec, &data[..]) {
                self.incarnation = self.incarnation.max(h.src_incarnation);
                if !matches!(h.message, Message::Announce | Message::TurnUndead) {
                    self.add_relayed_votes(&mut data);
                    self.add_hint(now_ms, &mut data);
                }
            }
            self.emit(to.key, &data, out);
        }
        self.shared().backlog = self.foca.custom_broadcast_backlog();
        let mut votes = vec![];
        while let Some(n) = self.rt.to_notify() {
            match n {
                OwnedNotification::MemberDown(id) => match cause {
                    Cause::Timer => votes.push(id),
                    Cause::Packet(from) if from == id.key => {
                        self.stats.declared_dead += 1;
                        out.push(SwimEvent::Dead(id.key));
                    }
                    _ => {}
                },
                OwnedNotification::Rejoin(id) => {
                    self.me = id;
                    self.incarnation = 0;
                    self.refuted = 0;
                }
                _ => {}
            }
        }
        if self.incarnation > self.refuted {
            self.refuted = self.incarnation;
            let item = refute_bytes(&self.key, &self.me, self.incarnation);
            let _ = self.foca.add_broadcast(&item);
        }
        for accused in votes {
            self.stats.votes_signed += 1;
            let item = vote_bytes(&self.key, &accused, now_ms);
            let _ = self.foca.add_broadcast(&item);
        }
    }

    /// A vote by `voter` about `accused`, which this node declared dead: answered with an
    /// echo, this node's vote signed now and addressed to `voter` alone, sent to it
    /// directly (its earlier vote is too old to count for a member that learnt of the dead
    /// one late). An echo counts only at the member it names and is never relayed, so a
    /// hostile voter that gathers echoes cannot replay them at the accused or at anyone
    /// else; `judge` takes one vote per voter and start per [`REVOTE_GAP_MS`], which bounds
    /// the echoes. Whether `accused` was such.
    fn echo_dead(
        &mut self,
        now_ms: u64,
        accused: &SwimId,
        voter: PublicKey,
        out: &mut Vec<SwimEvent>,
    ) -> bool {
        let dead = self
            .shared()
            .dead
            .get(&accused.key)
            .is_some_and(|d| d.id == *accused);
        if !dead {
            return false;
        }
        // Only about a start this node does not hold as a member again, and only to a
        // member it knows (its current start is the packet's address).
        let to = self
            .shared()
            .members
            .get(&voter)
            .map(|(bump, _)| SwimId { key: voter, bump });
        let Some(to) = to.filter(|_| !self.knows(accused) && voter != self.me.key) else {
            return true;
        };
        let item = echo_bytes(&self.key, accused, &voter, now_ms);
        if self.send_items(to, &[&item], out) {
            self.stats.votes_signed += 1;
        }
        true
    }

    /// Sends `items` to member `to` alone, in one packet (not piggybacked, not relayed).
    /// Whether it was sent.
    fn send_items(&mut self, to: SwimId, items: &[&[u8]], out: &mut Vec<SwimEvent>) -> bool {
        let header = foca::Header {
            src: self.me,
            src_incarnation: self.incarnation,
            dst: to,
            message: Message::Broadcast,
        };
        let size = items.iter().map(|i| 2 + i.len()).sum::<usize>();
        let mut packet = Vec::with_capacity(2 * ID_BYTES + 16 + size);
        if foca::Codec::encode_header(&mut SwimCodec, &header, &mut packet).is_err() {
            return false;
        }
        for item in items {
            packet.put_u16(item.len() as u16);
            packet.put_slice(item);
        }
        if packet.len() > MAX_PACKET {
            return false;
        }
        self.emit(to.key, &packet, out)
    }

    /// A packet off the wire from `from` in foca's form ([`codec::from_wire`]): a compact
    /// update names a member this node lists (or the sender, or this node) at the start
    /// whose low bits it carries; one naming none is dropped and counted.
    fn off_the_wire(
        &mut self,
        from: PublicKey,
        wire: &[u8],
    ) -> Result<Vec<u8>, codec::SwimCodecError> {
        let sender_bump = codec::wire_sender_bump(wire);
        let me = self.me;
        let (packet, dropped) = {
            let shared = self.shared();
            codec::from_wire(wire, &from, &me.key, |prefix, bump_low| {
                let (key, listed) = if from.0.starts_with(prefix) {
                    (from, shared.members.get(&from).map(|(bump, _)| bump))
                } else if me.key.0.starts_with(prefix) {
                    (me.key, None)
                } else {
                    let (key, bump) = shared.members.by_prefix(prefix)?;
                    (key, Some(bump))
                };
                let own = (key == me.key).then_some(me.bump);
                let said = if key == from { sender_bump } else { None };
                [listed, own, said]
                    .into_iter()
                    .flatten()
                    .find(|bump| *bump as u32 == bump_low)
                    .map(|bump| SwimId { key, bump })
            })?
        };
        self.stats.updates_filtered += dropped as u64;
        Ok(packet)
    }

    /// Sends `packet`, in foca's form, to `to` in the wire form ([`codec::to_wire`]),
    /// counted. Whether it was sent: a packet whose header names another sender or
    /// addressee is a bug here, dropped rather than sent in another's name.
    fn emit(&mut self, to: PublicKey, packet: &[u8], out: &mut Vec<SwimEvent>) -> bool {
        match codec::to_wire(packet, &self.me.key, &to) {
            Ok(data) => {
                self.stats.sent += 1;
                self.stats.sent_bytes += data.len() as u64;
                out.push(SwimEvent::Send { to, data });
                true
            }
            Err(e) => {
                debug_assert!(false, "a SWIM packet not put on the wire: {e}");
                false
            }
        }
    }

    /// Queues another's vote to pass on, first in line (the fresher the vote, the more it
    /// matters). A voter holds at most [`RELAYED_PER_VOTER`] places; with the queue full,
    /// the voter holding the most gives one up to a voter holding fewer (members voting
    /// about many, honest in a mass failure or not, cannot hold the others' back).
    fn queue_relay(&mut self, relay: Relay) {
        let places =
            |voter: &PublicKey, q: &VecDeque<Relay>| q.iter().filter(|r| r.voter == *voter).count();
        let held = places(&relay.voter, &self.relay);
        if held >= RELAYED_PER_VOTER {
            return;
        }
        if self.relay.len() >= MAX_RELAYED {
            let most = self
                .relay
                .iter()
                .map(|r| (places(&r.voter, &self.relay), r.voter))
                .max_by_key(|(n, _)| *n);
            match most {
                Some((n, voter)) if n > held + 1 => {
                    if let Some(at) = self.relay.iter().rposition(|r| r.voter == voter) {
                        self.relay.remove(at);
                    }
                }
                _ => return,
            }
        }
        self.relay.push_front(relay);
    }

    /// Fills the room left in a packet foca built with others' votes waiting to be passed
    /// on (after foca's own items, in the same length-prefixed form), each
    /// [`RELAY_TRANSMISSIONS`] times, the least sent first.
    fn add_relayed_votes(&mut self, packet: &mut Vec<u8>) {
        let mut sent = 0;
        let now_ms = self.shared().now_ms;
        while sent < self.relay.len() {
            let Some(r) = self.relay.front() else { break };
            if !vote_is_fresh(&r.vote, now_ms) {
                self.relay.pop_front();
                continue;
            }
            if packet.len() + 2 + r.vote.len() > MAX_PACKET {
                break;
            }
            packet.put_u16(r.vote.len() as u16);
            packet.put_slice(&r.vote);
            self.stats.votes_relayed += 1;
            if let Some(mut r) = self.relay.pop_front() {
                r.left = r.left.saturating_sub(1);
                if r.left > 0 {
                    self.relay.push_back(r);
                    sent += 1;
                }
            }
        }
    }

    /// One packet in [`HINT_EVERY_PACKETS`] names, in the room left, a member this node
    /// declared dead lately (each in turn; stale ones are dropped).
    fn add_hint(&mut self, now_ms: u64, packet: &mut Vec<u8>) {
        // Past the window, or no longer held dead here (it answered, or came back): gone.
        while let Some(&(accused, at)) = self.hints.front() {
            let held_dead = self
                .shared()
                .dead
                .get(&accused.key)
                .is_some_and(|d| d.id == accused);
            if held_dead && now_ms.saturating_sub(at) < HINT_FOR_MS {
                break;
            }
            self.hints.pop_front();
        }
        if self.hints.is_empty() || packet.len() + 2 + HINT_BYTES > MAX_PACKET {
            return;
        }
        self.hint_turn = self.hint_turn.wrapping_add(1);
        if !self.hint_turn.is_multiple_of(HINT_EVERY_PACKETS) {
            return;
        }
        // The next in turn goes to the back: each is checked for age when its turn comes
        // (above), so none is hinted at past the window.
        let Some((accused, at)) = self.hints.pop_front() else {
            return;
        };
        let hint = hint_bytes(&accused);
        packet.put_u16(hint.len() as u16);
        packet.put_slice(&hint);
        self.hints.push_back((accused, at));
    }

    /// This node's current identity for a member it lists.
    fn member_id(&self, key: &PublicKey) -> Option<SwimId> {
        self.shared()
            .members
            .get(key)
            .map(|(bump, _)| SwimId { key: *key, bump })
    }

    /// Asks the members heard holding another down (in the packet just read) for their
    /// votes about it, while this node has too few: one member at a time per accused
    /// start, [`ASK_GAP_MS`] apart, [`ASKS_PER_ACCUSED`] in a vote window, and no member
    /// asked more than [`ASKS_PER_PERIOD`] times a probe period (a member holding everyone
    /// down makes this node ask it a few times, not flood).
    fn ask_for_votes(&mut self, now_ms: u64, out: &mut Vec<SwimEvent>) {
        let downs = std::mem::take(&mut self.downs_heard);
        let members = self.shared().members.len();
        for (accused, holder) in downs {
            let have: Vec<PublicKey> = match self.tallies.get(&accused) {
                Some(t) if t.done || t.voters.len() >= quorum(members) => continue,
                Some(t) => t.voters.iter().copied().collect(),
                None => vec![],
            };
            if !self.knows(&accused) {
                continue;
            }
            let Some(to) = self.member_id(&holder) else {
                continue;
            };
            if self.asking.len() >= MAX_MEMBERS && !self.asking.contains_key(&accused) {
                continue;
            }
            if !self.asking.contains_key(&accused) {
                let expires = now_ms.saturating_add(VOTE_WINDOW_MS);
                self.asking_expires_ms =
                    Some(self.asking_expires_ms.map_or(expires, |e| e.min(expires)));
            }
            let asking = self.asking.entry(accused).or_insert(Asking {
                first_ms: now_ms,
                last_ms: 0,
                allowance_ms: now_ms,
                asks_in_allowance: 0,
                asked: VecDeque::new(),
            });
            if now_ms.saturating_sub(asking.allowance_ms) >= SUSPECT_MS {
                asking.allowance_ms = now_ms;
                asking.asks_in_allowance = 0;
            }
            let due =
                asking.asked.is_empty() || now_ms.saturating_sub(asking.last_ms) >= ASK_GAP_MS;
            if !due
                || asking.asks_in_allowance >= ASKS_PER_ACCUSED
                || asking.asked.contains(&holder)
                || !self.rate.take(now_ms, holder, Limit::AskTo)
            {
                continue;
            }
            if asking.asked.len() >= ASKED_REMEMBERED {
                asking.asked.pop_front();
            }
            asking.asked.push_back(holder);
            asking.asks_in_allowance += 1;
            asking.last_ms = now_ms;
            let ask = ask_bytes(&accused, &have);
            if self.send_items(to, &[&ask], out) {
                self.stats.asks_sent += 1;
            }
        }
    }

    /// Answers a member's ask with the votes this node holds about `accused`, leaving out
    /// the voters it named: only votes still within their window, never about this node
    /// itself, and [`ASKS_PER_PERIOD`] answers to one member a probe period.
    fn answer_ask(
        &mut self,
        now_ms: u64,
        accused: SwimId,
        asker: PublicKey,
        named: &[[u8; VOTER_PREFIX]],
        out: &mut Vec<SwimEvent>,
    ) {
        if accused.key == self.me.key {
            return;
        }
        let Some(tally) = self.tallies.get(&accused) else {
            return;
        };
        let votes: Vec<Vec<u8>> = tally
            .votes
            .iter()
            .filter(|v| {
                let voter = voter_of(v).and_then(|k| k.get(..VOTER_PREFIX));
                !named.iter().any(|n| Some(n.as_slice()) == voter) && vote_is_fresh(v, now_ms)
            })
            .cloned()
            .collect();
        if votes.is_empty() {
            return;
        }
        let Some(to) = self.member_id(&asker) else {
            return;
        };
        if !self.rate.take(now_ms, asker, Limit::AskFrom) {
            return;
        }
        let items: Vec<&[u8]> = votes.iter().map(Vec::as_slice).collect();
        if self.send_items(to, &items, out) {
            self.stats.asks_answered += 1;
            self.stats.votes_answered += items.len() as u64;
        }
    }

    /// `id` is alive after all (it spoke, refuted, or was admitted again): no echoes about it.
    fn forget_dead(&mut self, id: &SwimId) {
        let mut shared = self.shared();
        if shared
            .dead
            .get(&id.key)
            .is_some_and(|d| d.id.bump <= id.bump)
        {
            shared.dead.remove(&id.key);
        }
    }

    /// Counts the signed items the last step accepted: refutations raise what a member
    /// said; votes add up to a death.
    fn count_items(&mut self, now_ms: u64, out: &mut Vec<SwimEvent>) {
        let items = std::mem::take(&mut self.shared().inbox);
        let members = self.shared().members.len();
        for (item, bytes) in items {
            match item {
                // Asked for after the packet, as a `Down` heard from the holder is.
                Item::Hint { accused, holder } => {
                    if self.downs_heard.len() < MAX_PACKET {
                        self.downs_heard.push((accused, holder));
                    }
                }
                Item::Ask {
                    accused,
                    asker,
                    named,
                    count,
                } => {
                    let named = named.get(..count).unwrap_or_default();
                    self.answer_ask(now_ms, accused, asker, named, out);
                }
                Item::Refute { id, incarnation } => {
                    // The member answered: earlier votes about it no longer add up, and
                    // it is not dead here either (`heard_from`: only when the refutation
                    // raises what it said; an old one replayed changes neither).
                    self.heard_from(&id, incarnation, false);
                    if id.key != self.me.key {
                        let _ = self.foca.apply_many(
                            std::iter::once(Member::new(id, incarnation, State::Alive)),
                            false,
                            &mut self.rt,
                        );
                        self.drain(now_ms, Cause::Local, out);
                    }
                }
                Item::Vote { accused, voter, .. } | Item::Echo { accused, voter, .. } => {
                    let echo = matches!(item, Item::Echo { .. });
                    if !echo && self.echo_dead(now_ms, &accused, voter, out) {
                        continue;
                    }
                    // An echo never counts towards this node's own death (it answers a
                    // vote, and this node does not vote about itself).
                    if echo && accused.key == self.me.key {
                        continue;
                    }
                    // Only votes about an identity this node knows (a member's current
                    // start, or this node) are counted: made-up identities cannot fill the
                    // table, and votes about a start the member has left end nothing.
                    if accused != self.me && !self.knows(&accused) {
                        continue;
                    }
                    if self.tallies.len() >= MAX_MEMBERS && !self.tallies.contains_key(&accused) {
                        continue;
                    }
                    let expires_ms = now_ms.saturating_add(VOTE_WINDOW_MS);
                    if !self.tallies.contains_key(&accused) {
                        self.tallies_expire_ms = Some(
                            self.tallies_expire_ms
                                .map_or(expires_ms, |at| at.min(expires_ms)),
                        );
                    }
                    let t = self.tallies.entry(accused).or_insert(Tally {
                        first_ms: now_ms,
                        voters: BTreeSet::new(),
                        votes: vec![],
                        done: false,
                    });
                    // A quorum's bytes are kept, this node's own vote among them, to
                    // answer asks (an echo is addressed here and is no use to others).
                    let mut relay = None;
                    if t.voters.insert(voter) && !echo && !bytes.is_empty() {
                        if voter == self.me.key {
                            t.votes.insert(0, bytes);
                        } else if t.votes.len() < QUORUM {
                            relay = Some(bytes.clone());
                            t.votes.push(bytes);
                        }
                        t.votes.truncate(QUORUM);
                    }
                    if t.done || t.voters.len() < quorum(members) {
                        // Short of a quorum: passed on a few times (see `RELAY_TRANSMISSIONS`).
                        if let Some(vote) = relay.filter(|_| !t.done && accused != self.me) {
                            self.queue_relay(Relay {
                                accused,
                                voter,
                                vote,
                                left: RELAY_TRANSMISSIONS,
                            });
                        }
                        continue;
                    }
                    t.done = true;
                    // Counted: what spreads now is foca's `Down`, which others ask on.
                    self.relay.retain(|r| r.accused != accused);
                    if accused == self.me {
                        // Declared dead while alive (cut off for a while): come back as a
                        // new identity, which members take on its next packet or advert.
                        if let Some(next) = foca::Identity::renew(&self.me) {
                            let _ = self.foca.change_identity(next, &mut self.rt);
                            self.me = next;
                            // A new identity starts at incarnation 0 in foca.
                            self.incarnation = 0;
                            self.refuted = 0;
                            self.drain(now_ms, Cause::Local, out);
                        }
                        out.push(SwimEvent::Rejoined);
                        continue;
                    }
                    self.stats.declared_dead += 1;
                    self.asking.remove(&accused);
                    if self.hints.len() >= HINTS_HELD {
                        // Stale ones first (the turn leaves them out of age order).
                        self.hints
                            .retain(|&(_, at)| now_ms.saturating_sub(at) < HINT_FOR_MS);
                    }
                    if self.hints.len() >= HINTS_HELD {
                        self.hints.pop_front();
                    }
                    self.hints.push_back((accused, now_ms));
                    {
                        let mut shared = self.shared();
                        if shared.dead.len() < MAX_MEMBERS {
                            let dead = DeadMember {
                                id: accused,
                                at_ms: now_ms,
                            };
                            shared.dead.insert(accused.key, dead);
                            let expires = now_ms.saturating_add(DEAD_REMEMBERED_MS);
                            shared.dead_expires_ms =
                                Some(shared.dead_expires_ms.map_or(expires, |e| e.min(expires)));
                        }
                    }
                    // Spread as foca spreads any update: a member that hears this node
                    // holds it down asks it for the votes (see [`ASKS_PER_ACCUSED`]).
                    let _ = self.foca.apply_many(
                        std::iter::once(Member::new(accused, u16::MAX, State::Down)),
                        true,
                        &mut self.rt,
                    );
                    self.drain(now_ms, Cause::Local, out);
                    out.push(SwimEvent::Dead(accused.key));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
