//! The node manager as a sans-IO state machine.
//!
//! Invariants:
//! - No IO, no clock, no randomness: every call takes `now_ms`; outputs are returned.
//! - Only peers whose node certificate chains to an authority the owner trusts are members;
//!   anyone else is at most a client.
//! - A ticket becomes a sliver only if its chain verifies for this node (audience, validity,
//!   revocations, replay) and it fits the node's capacity and every cap on its chain; every
//!   refusal carries its precise reason in a signed receipt.
//! - A running sliver whose ticket expires, or any link of whose chain is revoked, is stopped.
//! - Everything held is bounded: members, slivers (by capacity), seen revocations.

use slicefed_ledger::entry::{Attribution, EntryBody, Usage};
use slicefed_trust::caps::NetworkRights;
use slicefed_trust::objects::{self, MAX_CREDENTIAL_BYTES, NodeReceipt};
use slicefed_trust::verify::{HeldFile, Object, RevocationError, Verified};
use slicefed_trust::{
    CertId, Context, Credential, Invocation, ModuleHash, Name, PublicKey, SecretKey, TrustPolicy,
    Verifier,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most members remembered.
pub const MAX_MEMBERS: usize = 16_384;
/// The longest gap between two looks over the members for expiry (see `NodeCore::tick`).
pub const EXPIRY_SCAN_MS: u64 = 60_000;
/// A member not heard from for this long is dropped (at least; see
/// [`NodeCore::member_timeout_ms`]).
pub const MEMBER_TIMEOUT_MS: u64 = 30_000;
/// Most revocations remembered (their bytes are kept so a node that was away can catch up).
pub const MAX_SEEN_REVOCATIONS: usize = 100_000;
/// Most bytes of revocation files kept for catch-ups.
pub const MAX_REVOCATION_BYTES: usize = 256 << 20;
/// Longest health reason a node keeps or advertises.
pub const MAX_HEALTH_BYTES: usize = 200;
/// Revocations of expired objects are forgotten this often.
pub const REVOCATION_PRUNE_INTERVAL_MS: u64 = 60_000;
/// Adverts a node should hear per minute from the whole federation: the advert interval
/// grows with the member count so that every node's share of advert traffic stays flat
/// (everyone hears everyone, so a fixed interval costs each node O(members)). One every
/// two seconds: with SWIM's probes, about 0.7 KiB/s per node in all at any size.
pub const ADVERTS_HEARD_PER_MIN: u64 = 30;
/// A listed member's adverts are taken at least this share of an
/// advert interval apart (`interval / ADVERT_GAP_SHARE`): an honest member advertises at
/// most once an interval, which it computes from about the same member count.
pub const ADVERT_GAP_SHARE: u64 = 4;
/// ... but never more than this apart, ms: a member that knows far fewer members than the
/// receiver (it just started) has a much shorter interval, and one advert every 10 s from
/// a hostile member costs each node ~60 bytes a second.
pub const ADVERT_GAP_MAX_MS: u64 = 10_000;
/// A node whose load did not change re-advertises after this many advert intervals (the
/// interval is then only the shortest gap between two adverts that say something new).
pub const REFRESH_INTERVALS: u64 = 4;
/// A member is dropped after missing this many of its adverts (gossip reaches a node over
/// several paths, so a missed advert means the sender or the path is gone).
pub const ADVERTS_MISSED_BEFORE_LEAVING: u64 = 3;
/// Revocations in one catch-up answer.
pub const MAX_REVOCATIONS_PER_PAGE: usize = 256;
/// Bytes of revocation files in one catch-up answer (under the response limit).
pub const MAX_REVOCATION_PAGE_BYTES: usize = 2 << 20;
/// Ids an asker lists as held in the ranges it asks for (`Request::Revocations::have`,
/// 8 bytes each: 32 KiB). One that holds more there lists the first ones after the page's
/// cursor; the rest come again, which costs bytes, not correctness. A longer list is
/// refused.
pub const MAX_RECONCILE_HAVE: usize = 4_096;
/// A node reconciles its revocations and deletes with one member (the next in turn) this
/// often, outside a restart's catch-up: a node that missed a revocation's gossip or a
/// delete's hand-over catches up in seconds, whatever adverts say (anti-entropy; adverts
/// carry no digest, so they need not change when the set does).
pub const RECONCILE_EVERY_MS: u64 = 5_000;

/// The members a node knows, in key order. A B-tree, not a hash map: the node walks its
/// members in key order (the turn of reconciliations, member-list pages), and a hash map
/// beside an ordered set of the same keys cost ~200 bytes a member against ~110 for the
/// B-tree alone (a hash map's table is a power of two, 49-61% full at 8,000-10,000
/// members; the simulator holds 10^8 such pairs at 10,000 nodes). A lookup (one per SWIM
/// packet, advert or request from a member) visits 4-5 nodes instead of one bucket; the
/// simulator measured it faster overall, having less memory to touch.
/// Iteration order is the keys', as the simulator's determinism needs.
pub type Members = std::collections::BTreeMap<PublicKey, Member>;

/// Builds [`KeyHasher`]s.
pub type BuildKeyHasher = std::hash::BuildHasherDefault<KeyHasher>;

/// A fixed, fast hasher for public keys (uniformly distributed bytes already).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..chunk.len()) {
                dst.copy_from_slice(chunk);
            }
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, _: usize) {
        // The length prefix of a fixed-size key says nothing.
    }
}

/// What the node owner grants slivers on this machine.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// Most slivers at once.
    pub max_slivers: u32,
    /// Memory for all slivers together, bytes.
    pub memory: u64,
    /// Memory a sliver gets when neither its ticket nor its chain caps it.
    pub default_sliver_memory: u64,
}

/// Pages one catch-up from one member may take (with full pages, 16,384 revocations).
pub const MAX_CATCHUP_PAGES: u32 = 64;

/// Id ranges a reconciliation compares (by an id's first byte): a node that differs from a
/// member by a few revocations or deletes fetches a few ranges, not the whole set.
pub const REVOCATION_BUCKETS: usize = 256;

/// After a catch-up page from a member (asked after `after`, the `pages`-th of this
/// catch-up): where to ask for the next page, if at all. Only when the page may have been
/// cut short (by count or by bytes), its ids moved past `after` (a member answering the
/// same page again gets no second question), and the catch-up is under
/// [`MAX_CATCHUP_PAGES`].
pub fn next_revocation_page(page: &[Vec<u8>], after: Option<CertId>, pages: u32) -> Option<CertId> {
    let bytes: usize = page.iter().map(Vec::len).sum();
    let full = page.len() >= MAX_REVOCATIONS_PER_PAGE || bytes >= MAX_REVOCATION_PAGE_BYTES / 2;
    let last = page.last().and_then(|b| revocation_id(b))?;
    (full && pages < MAX_CATCHUP_PAGES && after.is_none_or(|a| last > a)).then_some(last)
}

/// The id of the revocation in a revocation file (its first object), which is what
/// [`NodeCore::revocations_after`] pages by.
pub fn revocation_id(file: &[u8]) -> Option<CertId> {
    Credential::from_bytes(file)
        .ok()
        .map(|c| CertId::of(c.leaf()))
}

/// The hash adverts refer to a node credential by.
pub fn credential_hash(credential: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(credential).into()
}

/// The longest prefix of `text` that fits in `max` bytes without splitting a character
/// (a refusal's reason is the researcher's only clue; keep as much of it as fits).
fn within_bytes(text: &str, max: usize) -> String {
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() > max {
            break;
        }
        end = i + c.len_utf8();
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// A node's self-reported state, carried in its adverts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Slivers running.
    pub slivers: u32,
    /// Memory free for slivers, bytes.
    pub free_memory: u64,
    /// Seconds since the node started (the denominator of its traffic counters).
    pub uptime_secs: u64,
    /// Bytes the node moved since it started.
    pub traffic: Traffic,
    /// Why the node is unhealthy (it cannot record, so it takes no tickets), if it is.
    pub unhealthy: Option<String>,
    /// When the advert carrying this was made (the sender's clock, unix ms): an advert
    /// outside the clock skew, or not newer than the last one heard, is not taken (a
    /// replayed advert must not keep a dead member listed).
    pub sent_ms: u64,
    /// The node's SWIM identity's bump (see `swim::SwimId`).
    pub swim_bump: u64,
    /// Whether the advert carries the credential itself (a node's first advert after it
    /// starts); the others refer to it by hash, and a member that does not know it asks.
    pub full: bool,
}

/// A summary of a node's revocation set: two nodes with equal digests hold the same
/// revocations. The hash is SHA-256 over the sorted revocation ids, so it does not depend on
/// the order they arrived in and nobody can make two different sets look alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevocationDigest {
    /// Revocations held.
    pub count: u32,
    /// The XOR of their ids (zeros when there are none); see `core/held.rs`.
    pub hash: [u8; 32],
}

/// Bytes a node moved since it started, as it reports them (CoMon's network sensor): what
/// an owner pays for membership, and what the overlay costs per node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// On every connection, in: gossip, RPC, and Noise/Yamux/TCP framing above IP.
    pub wire_in: u64,
    /// On every connection, out.
    pub wire_out: u64,
    /// Payloads of gossip messages received and validated (adverts, checkpoints, ...).
    pub gossip_in: u64,
    /// Payloads of gossip messages this node published (not counting forwarding).
    pub gossip_out: u64,
    /// Ledger pages fetched from the nodes this one witnesses.
    pub replication_in: u64,
    /// Ledger pages and replica chunks served to witnesses and auditors.
    pub replication_out: u64,
}

/// What judging a member's credential found. It depends only on the credential (every
/// node that takes it finds the same), so member entries judged on one credential may
/// share one: a daemon holds one per member, the simulator's thousands of nodes one per
/// credential through [`SharedJudgements`] (a federation's member tables are N² entries
/// in one process; the judgement's names, chain and credential were most of each).
#[derive(Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Its certified name.
    pub name: Name,
    /// The authority that certified it.
    pub authority: Name,
    /// The credential the judgement was made on. Shared, so a caller that holds each
    /// peer's credential once need not keep a copy per member entry.
    credential: Arc<[u8]>,
    /// SHA-256 of `credential`: adverts refer to it by this.
    credential_hash: [u8; 32],
    /// The ids of its chain's links: a revocation of any of them ends the judgement.
    chain: Vec<CertId>,
}

/// Judgements shared by the node machines of one process (the simulator's), by credential
/// hash. Bounded: past [`SHARED_JUDGEMENTS`] a judgement is simply not shared. A judgement
/// is taken from the table only if it equals the one the node just made, so sharing never
/// changes a decision.
#[derive(Clone, Default)]
pub struct SharedJudgements(
    Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<Judgement>>>>,
);

/// Judgements a [`SharedJudgements`] table holds at most.
pub const SHARED_JUDGEMENTS: usize = 1 << 20;

impl SharedJudgements {
    /// The shared copy of `judgement` (held, or now entered), or `judgement` alone.
    fn intern(&self, judgement: Judgement) -> Arc<Judgement> {
        let Ok(mut table) = self.0.lock() else {
            return Arc::new(judgement);
        };
        if let Some(held) = table.get(&judgement.credential_hash)
            && **held == judgement
        {
            return Arc::clone(held);
        }
        let judgement = Arc::new(judgement);
        if table.len() < SHARED_JUDGEMENTS || table.contains_key(&judgement.credential_hash) {
            table.insert(judgement.credential_hash, Arc::clone(&judgement));
        }
        judgement
    }
}

/// A member of the federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// When this node last heard of it by an advert or its credential (its own SWIM
    /// packets are noted by SWIM, `Swim::last_heard_ms`, and read here only when this
    /// says it is silent: see [`NodeCore::tick`]).
    pub last_seen_ms: u64,
    /// When its latest advert was made (its clock).
    pub last_sent_ms: u64,
    /// What it last said about itself (shared: a router that decodes an advert once for
    /// many receivers may hand each the same).
    pub load: Arc<Load>,
    /// Until when the judgement holds for this node (its chain's validity; a revocation
    /// that ends it removes the member instead, `forget_judgements`): a repeated advert
    /// with the same credential is then not verified again.
    valid_until: u64,
    /// What its credential was judged to be.
    judgement: Arc<Judgement>,
}

impl Member {
    /// Its certified name.
    pub fn name(&self) -> &Name {
        &self.judgement.name
    }

    /// The authority that certified it.
    pub fn authority(&self) -> &Name {
        &self.judgement.authority
    }

    /// The credential its membership was judged on.
    pub fn credential(&self) -> &Arc<[u8]> {
        &self.judgement.credential
    }

    /// A member for tests of other machines (nothing judged; never valid for adverts).
    #[doc(hidden)]
    pub fn for_tests(name: Name, authority: Name, load: Load) -> Member {
        Member {
            last_seen_ms: 0,
            last_sent_ms: 0,
            load: Arc::new(load),
            valid_until: 0,
            judgement: Arc::new(Judgement {
                name,
                authority,
                credential: Arc::from(Vec::new()),
                credential_hash: [0; 32],
                chain: vec![],
            }),
        }
    }
}

/// What the sandbox should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliverPlan {
    /// Node-local id.
    pub id: u64,
    /// Whose.
    pub who: Attribution,
    /// The module (the driver has its bytes, matched by hash).
    pub module: ModuleHash,
    /// Memory cap.
    pub memory: u64,
    /// CPU weight.
    pub cpu_share: u32,
    /// Network rights in force.
    pub network: NetworkRights,
    /// Daily egress cap.
    pub egress_per_day: Option<u64>,
    /// When its ticket ends (unix seconds).
    pub not_after: u64,
}

/// Why the core asks to stop a sliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its ticket's validity ended.
    Expired,
    /// A link of its chain was revoked.
    Revoked,
    /// The node owner stopped it.
    Owner,
    /// The ticket's holder deleted its slice.
    Deleted,
}

impl StopReason {
    /// How the ledger and the sandbox name it.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Expired => "expired",
            StopReason::Revoked => "revoked",
            StopReason::Owner => "stopped by the node owner",
            StopReason::Deleted => "deleted by its holder",
        }
    }
}

/// What the drivers must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Start a sliver in the sandbox.
    Start(SliverPlan),
    /// Stop a sliver.
    Stop {
        /// Which.
        id: u64,
        /// Why.
        reason: StopReason,
    },
    /// Append to the node's ledger.
    Append(EntryBody),
    /// Send this signed receipt (envelope bytes) to whoever submitted the ticket.
    Receipt(Vec<u8>),
    /// Gossip these revocation bytes onward.
    GossipRevocation(Vec<u8>),
    /// A peer became a member.
    Joined(PublicKey),
    /// A peer stopped being a member.
    Left(PublicKey),
}

/// A sliver the core knows about.
#[derive(Clone, Debug)]
struct Running {
    plan: SliverPlan,
    credential: Vec<u8>,
    chain: Vec<CertId>,
    root: Name,
    ticket: CertId,
    /// Who may delete or renew it: the ticket's signer and the responsible user.
    holders: Vec<PublicKey>,
    /// When its ticket was issued (a slice delete ends tickets issued up to its own time).
    issued_at: u64,
    /// What its arguments and environment hash to (a renewal must sign the same).
    invocation: slicefed_trust::InvocationHash,
}

/// What the core knows about a running sliver, for status answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliverInfo {
    /// The plan it runs under.
    pub plan: SliverPlan,
    /// Its current ticket.
    pub ticket: CertId,
    /// Its current ticket credential (kept so a restarted node can bring it back).
    pub credential: Vec<u8>,
}

/// The node manager.
pub struct NodeCore {
    key: SecretKey,
    me: PublicKey,
    capacity: Capacity,
    verifier: Verifier,
    /// Judgements shared with the other machines of this process, if the caller set any.
    judgements: Option<SharedJudgements>,
    members: Members,
    /// When the members were last looked over for expiry (the advert backstop): a look
    /// every [`EXPIRY_SCAN_MS`] or sooner, so that nothing per advert is queued (a queue of
    /// (time, key) was 50 bytes per member, 4 GB for a 10,000-node simulation).
    last_expiry_scan_ms: u64,
    /// No member was last seen before this (the least `last_seen_ms` the last scan kept,
    /// lowered by a member entered since): a scan that would find nobody silent past
    /// the deadline is skipped. The scan walks every member, cache miss after cache miss;
    /// done every minute by every node it was 7% of a 1,000-node simulation.
    oldest_seen_ms: u64,
    /// Members a revocation removed, not yet reported as `Output::Left` (at most every
    /// member: each key is removed from `members` as it is added here).
    revoked_members: Vec<PublicKey>,
    /// The load of members that have not advertised yet (`judge_unadvertised`), shared.
    no_load: Arc<Load>,
    slivers: BTreeMap<u64, Running>,
    next_sliver: u64,
    /// Revocations and slice deletes seen, by id, with their bytes (for members that were
    /// away): one set, one digest, one catch-up.
    revocations: held::HeldSet,
    /// The slice deletes among them, judged.
    deletes: BTreeMap<CertId, deletes::HeldDelete>,
    /// Tickets judged since start: admitted, and refused by reason ([`Refusal::label`]).
    tickets: TicketCounts,
    /// Deletes held per signer (bounded by `MAX_DELETES_PER_SIGNER`).
    deletes_by: BTreeMap<PublicKey, usize>,
    /// Held deletes signed under a certificate revoked since (not served; see
    /// `void_deletes_under`).
    deletes_voided: usize,
    /// (expiry, id) of the deletes held, soonest first.
    deletes_expiring: std::collections::BTreeSet<(u64, CertId)>,
    last_prune_ms: u64,
    /// Why the ledger cannot append, while it cannot.
    ledger_failure: Option<String>,
    advert_base_ms: u64,
    adverts_heard_per_min: u64,
}

/// Why an input was rejected (inputs that are refused with a receipt are not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A peer's advert did not make it a member.
    #[error("not a member: {0}")]
    NotMember(String),
    /// A credential that was good and no longer is: a link revoked or past its end. Not
    /// the fault of whoever passed it on, who may not have heard the revocation yet (or
    /// whose clock is a little behind): nobody is penalised for it.
    #[error("not a member any more: {0}")]
    CredentialLapsed(String),
    /// An advert too old, from the future, or replayed: ignored (not a fault of whoever
    /// relayed it).
    #[error("stale advert: {0}")]
    StaleAdvert(String),
    /// A listed member's advert (its judgement standing; not turning unhealthy) made
    /// sooner after its last than an honest member advertises
    /// (`1 /` [`ADVERT_GAP_SHARE`] of the advert interval, at most [`ADVERT_GAP_MAX_MS`]):
    /// ignored, so that no member can
    /// make the federation carry its adverts at any rate it likes.
    #[error("advert too soon: made {gap_ms} ms after the last, at least {least_ms} ms expected")]
    AdvertTooSoon {
        /// Ms between its making and the last advert's (the sender's clock).
        gap_ms: u64,
        /// The shortest gap taken.
        least_ms: u64,
    },
    /// An advert that names its sender's credential by hash, one this node has not judged
    /// (it asks the sender for it and judges the advert then).
    #[error("an advert naming a credential this node does not hold yet (asked its sender)")]
    CredentialUnknown,
    /// A revocation was refused (it does not open, or its signer may not revoke that).
    #[error("revocation refused: {0}")]
    Revocation(#[from] RevocationError),
    /// No such sliver.
    #[error("no sliver {0} on this node")]
    NoSuchSliver(u64),
    /// A delete request that does not prove its sender holds the slice.
    #[error("delete refused: {0}")]
    BadDelete(String),
    /// A request only a slice's holder or the node's owner may make.
    #[error("refused: only the slice's holder or this node's owner may ask that ({0})")]
    NotHolder(String),
    /// A page request whose list of held ids is not whole 8-byte ids, or lists more than a
    /// page request may.
    #[error("a page request's list of held ids is {bytes} bytes (8 per id, at most {max} ids)")]
    BadHaveList {
        /// The list's length in bytes.
        bytes: usize,
        /// The bound on ids.
        max: usize,
    },
}

/// Why a ticket (a submission, a renewal or a restore) was refused. The receipt carries its
/// text; [`Refusal::label`] names the reason for counting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The ticket file does not decode, or is too large.
    #[error("{0}")]
    File(String),
    /// Its chain does not verify for this node (signature, trust, validity, audience,
    /// revocation, replay).
    #[error(transparent)]
    Verify(#[from] slicefed_trust::VerifyError),
    /// The leaf is not a slice ticket.
    #[error("a {0} is not a slice ticket")]
    NotATicket(slicefed_trust::Kind),
    /// The module sent is not the one the ticket names.
    #[error("the module sent hashes to {sent}, the ticket names {named}")]
    WrongModule {
        /// Hash of the bytes sent.
        sent: ModuleHash,
        /// What the ticket names.
        named: ModuleHash,
    },
    /// The node runs as many slivers as its owner allows.
    #[error("node full: it runs {0} slivers, its owner's limit")]
    NodeFull(usize),
    /// Not enough memory left for the sliver's cap.
    #[error("not enough memory: the sliver may use {wanted} bytes, this node has {free} free")]
    NotEnoughMemory {
        /// The sliver's cap.
        wanted: u64,
        /// Free memory.
        free: u64,
    },
    /// A chain's cap on slivers is reached.
    #[error("over cap: {running} slivers already run under this chain, its cap is {cap}")]
    OverCap {
        /// Slivers running under it.
        running: usize,
        /// The cap.
        cap: u32,
    },
    /// The arguments or environment sent are not the ones the ticket signs.
    #[error(
        "the arguments and environment sent are not the ones the ticket signs (its holder signed another invocation)"
    )]
    WrongInvocation,
    /// The node cannot record (its ledger cannot write): nothing may run unrecorded.
    #[error("this node cannot record new slivers now: its ledger cannot write ({0})")]
    LedgerUnavailable(String),
    /// The sliver's creation could not be made durable in the ledger.
    #[error("this node could not record the sliver in its ledger ({0})")]
    NotRecorded(String),
    /// The sandbox could not start it.
    #[error("could not start: {0}")]
    StartFailed(String),
    /// A renewal for a slice that has no sliver here held by the signer.
    #[error("no sliver of slice {0} held by the ticket's signer runs here")]
    NothingToRenew(Name),
    /// A renewal naming another module.
    #[error("a renewal must name the module the slivers run")]
    RenewalChangesModule,
    /// A renewal signing other arguments or environment than the slivers run with.
    #[error("a renewal must sign the arguments and environment the slivers run with")]
    RenewalChangesInvocation,
    /// A renewal whose chain grants another sensors right than the slivers run with.
    #[error(
        "a renewal must grant the sensors right the slivers run with (stop and recreate the slice to change it)"
    )]
    RenewalChangesSensors,
    /// A restore of a sliver that runs.
    #[error("sliver {0} is already running")]
    AlreadyRunning(u64),
    /// Its slice was deleted by its holder (a delete that ends this ticket is held).
    #[error("its slice was deleted by its holder (delete {0})")]
    Deleted(CertId),
    /// The ticket asks to read this node's sensors, which a link of its chain or the node's
    /// owner does not allow.
    #[error(
        "the ticket asks to read the node's sensors, which its certificate chain or this node's owner does not allow"
    )]
    SensorsNotAllowed,
}

/// Tickets submitted to this node since it started: admitted, and refused by reason (the
/// node's sensors export them). Bounded: one counter per [`Refusal::label`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketCounts {
    /// Passed admission (a sliver was planned; its creation then waits for the ledger).
    pub admitted: u64,
    /// Refused, by [`Refusal::label`].
    pub refused: BTreeMap<&'static str, u64>,
    /// The latest refusals, newest last (at most [`RECENT_REFUSALS`]): for the owner's
    /// dashboard.
    pub recent: std::collections::VecDeque<RecentRefusal>,
}

/// Refusals kept for the owner's dashboard.
pub const RECENT_REFUSALS: usize = 64;

/// One refused ticket, as the owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentRefusal {
    /// When (unix ms).
    pub at_ms: u64,
    /// The slice the ticket names, if it decoded (the signer's claim).
    pub slice: Option<String>,
    /// [`Refusal::label`].
    pub label: &'static str,
    /// The reason its receipt gives.
    pub reason: String,
}

impl Refusal {
    /// A short, stable name for the reason (for counters and dashboards).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::File(_) => "bad_file",
            Refusal::Verify(e) => match e {
                slicefed_trust::VerifyError::Revoked { .. } => "revoked",
                slicefed_trust::VerifyError::Expired { .. }
                | slicefed_trust::VerifyError::NotYetValid { .. } => "validity",
                slicefed_trust::VerifyError::Replayed { .. }
                | slicefed_trust::VerifyError::StaleTicket { .. }
                | slicefed_trust::VerifyError::ReplayGuardFull(_) => "replay",
                slicefed_trust::VerifyError::WrongAudience { .. } => "audience",
                slicefed_trust::VerifyError::UntrustedRoot { .. }
                | slicefed_trust::VerifyError::UnknownAuthorityRoot { .. } => "untrusted",
                slicefed_trust::VerifyError::Object(_) => "bad_signature",
                _ => "chain",
            },
            Refusal::NotATicket(_) => "not_a_ticket",
            Refusal::WrongModule { .. } => "wrong_module",
            Refusal::WrongInvocation => "wrong_invocation",
            Refusal::NodeFull(_) => "node_full",
            Refusal::NotEnoughMemory { .. } => "memory",
            Refusal::OverCap { .. } => "over_cap",
            Refusal::LedgerUnavailable(_) | Refusal::NotRecorded(_) => "ledger_unavailable",
            Refusal::StartFailed(_) => "start_failed",
            Refusal::NothingToRenew(_)
            | Refusal::RenewalChangesModule
            | Refusal::RenewalChangesInvocation
            | Refusal::RenewalChangesSensors => "renewal",
            Refusal::AlreadyRunning(_) => "already_running",
            Refusal::Deleted(_) => "deleted",
            Refusal::SensorsNotAllowed => "sensors",
        }
    }
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

impl NodeCore {
    /// A node with its key, capacity and the owner's trust policy.
    pub fn new(key: SecretKey, capacity: Capacity, policy: TrustPolicy) -> NodeCore {
        NodeCore::with_verifier(key, capacity, Verifier::new(policy))
    }

    /// A node judging with `verifier` (the simulator shares opened objects between the
    /// verifiers of its nodes; see `slicefed_trust::SharedOpened`).
    pub fn with_verifier(key: SecretKey, capacity: Capacity, verifier: Verifier) -> NodeCore {
        NodeCore {
            me: key.public(),
            key,
            capacity,
            verifier,
            judgements: None,
            members: Members::default(),
            last_expiry_scan_ms: 0,
            oldest_seen_ms: 0,
            revoked_members: vec![],
            no_load: Arc::new(Load::default()),
            slivers: BTreeMap::new(),
            next_sliver: 1,
            revocations: held::HeldSet::default(),
            tickets: TicketCounts::default(),
            deletes: BTreeMap::new(),
            deletes_by: BTreeMap::new(),
            deletes_voided: 0,
            deletes_expiring: std::collections::BTreeSet::new(),
            last_prune_ms: 0,
            ledger_failure: None,
            advert_base_ms: 5_000,
            adverts_heard_per_min: ADVERTS_HEARD_PER_MIN,
        }
    }

    /// Shares member judgements with the other machines of this process (the simulator's).
    pub fn share_judgements(&mut self, judgements: SharedJudgements) {
        self.judgements = Some(judgements);
    }

    /// Sets the shortest advert interval (the owner's setting) and the advert budget (see
    /// [`ADVERTS_HEARD_PER_MIN`]).
    pub fn set_advert_timing(&mut self, base_ms: u64, adverts_heard_per_min: u64) {
        self.advert_base_ms = base_ms.max(1);
        self.adverts_heard_per_min = adverts_heard_per_min.max(1);
    }

    /// How often this node should advertise now: the owner's interval, or longer in a large
    /// federation so that each node hears about [`ADVERTS_HEARD_PER_MIN`] adverts a minute
    /// (every node computes about the same figure, since all see about the same members).
    pub fn advert_interval_ms(&self) -> u64 {
        let members = self.members.len() as u64 + 1;
        self.advert_base_ms
            .max(members.saturating_mul(60_000) / self.adverts_heard_per_min)
    }

    /// How long a silent member stays a member: a backstop, since SWIM declares a dead
    /// member in about a minute; a member with nothing new re-advertises every
    /// [`REFRESH_INTERVALS`] advert intervals, and leaves after missing three of those.
    pub fn member_timeout_ms(&self) -> u64 {
        MEMBER_TIMEOUT_MS.max(
            self.advert_interval_ms()
                .saturating_mul(REFRESH_INTERVALS)
                .saturating_mul(ADVERTS_MISSED_BEFORE_LEAVING),
        )
    }

    /// A summary of the revocations this node holds (it goes into its adverts). Computed
    /// when asked after a change, not at every change (recomputing on each of a burst of
    /// revocations would cost the square of the set).
    pub fn revocation_digest(&self) -> RevocationDigest {
        self.revocations.digest()
    }

    /// A fingerprint of each of the [`REVOCATION_BUCKETS`] id ranges held (SHA-256 over the
    /// range's ids in order, its first 8 bytes; 0 for an empty range): two nodes compare
    /// them and exchange only the ranges that differ (range-based set reconciliation, one
    /// level deep: ~2 KiB of fingerprints, then the differing ranges' objects).
    pub fn revocation_prints(&self) -> Vec<u64> {
        self.revocations.prints()
    }

    /// What this node holds in id ranges `buckets` after `after`, as the asker's list of a
    /// page request (`Request::Revocations::have`): the first [`MAX_RECONCILE_HAVE`] ids'
    /// first 8 bytes, one after the other.
    pub fn revocation_prefixes(&self, after: Option<CertId>, buckets: &[u8]) -> Vec<u8> {
        self.revocations
            .prefixes_after(after, buckets)
            .take(MAX_RECONCILE_HAVE)
            .flat_map(u64::to_le_bytes)
            .collect()
    }

    /// Revocations held, in id order, after `after` (a page of a catch-up answer), but for
    /// those whose id's first 8 bytes the asker listed in `have`: at most `max` (and
    /// [`MAX_REVOCATIONS_PER_PAGE`]) files and about [`MAX_REVOCATION_PAGE_BYTES`]. An empty
    /// page ends a catch-up. `have` is the asker's 8-byte prefixes, in any order.
    pub fn revocations_after(
        &self,
        after: Option<CertId>,
        buckets: &[u8],
        have: &[u8],
        max: usize,
    ) -> Result<Vec<Vec<u8>>, CoreError> {
        if !have.len().is_multiple_of(8) || have.len() / 8 > MAX_RECONCILE_HAVE {
            return Err(CoreError::BadHaveList {
                bytes: have.len(),
                max: MAX_RECONCILE_HAVE,
            });
        }
        let mut have: Vec<u64> = have
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        have.sort_unstable();
        let mut bytes = 0usize;
        Ok(self
            .revocations
            .missing_after(after, buckets, &have)
            .take(max.min(MAX_REVOCATIONS_PER_PAGE))
            .take_while(|b| {
                let fits = bytes == 0 || bytes + b.len() <= MAX_REVOCATION_PAGE_BYTES;
                bytes += b.len();
                fits
            })
            .cloned()
            .collect())
    }

    /// This node's key.
    pub(crate) fn secret_key(&self) -> &SecretKey {
        &self.key
    }

    /// This node's key.
    pub fn id(&self) -> PublicKey {
        self.me
    }

    /// Tickets judged since start.
    pub fn ticket_counts(&self) -> &TicketCounts {
        &self.tickets
    }

    /// Revocations and slice deletes held for members, as `(revocations, deletes)` (a
    /// delete whose signer's certificate was revoked since still ends its tickets here,
    /// and is not counted).
    pub fn held_counts(&self) -> (usize, usize) {
        let deletes = self.deletes.len().saturating_sub(self.deletes_voided);
        (self.revocations.len().saturating_sub(deletes), deletes)
    }

    /// Current members.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Running slivers' plans.
    pub fn slivers(&self) -> impl Iterator<Item = &SliverPlan> {
        self.slivers.values().map(|r| &r.plan)
    }

    /// Running slivers with their tickets.
    pub fn sliver_infos(&self) -> impl Iterator<Item = SliverInfo> + '_ {
        self.slivers.values().map(|r| SliverInfo {
            plan: r.plan.clone(),
            ticket: r.ticket,
            credential: r.credential.clone(),
        })
    }

    /// Sliver ids continue from here (a restarted node passes a number above every id it
    /// used before, e.g. its ledger's size, so ids stay unique in its log).
    pub fn continue_ids_from(&mut self, next: u64) {
        self.next_sliver = self.next_sliver.max(next);
    }

    /// This node's load, for its adverts.
    pub fn load(&self) -> Load {
        Load {
            slivers: self.slivers.len() as u32,
            free_memory: self.capacity.memory.saturating_sub(self.used_memory()),
            unhealthy: self.ledger_failure.clone(),
            ..Load::default()
        }
    }

    /// The memory the owner grants slivers here.
    pub fn capacity_memory(&self) -> u64 {
        self.capacity.memory
    }

    fn used_memory(&self) -> u64 {
        self.slivers.values().map(|r| r.plan.memory).sum()
    }

    fn ctx(&self, now_ms: u64) -> Context {
        Context {
            now: secs(now_ms),
            node: Some(self.me),
        }
    }

    /// The ledger cannot append (`why`): until [`NodeCore::ledger_recovered`], every ticket,
    /// renewal and restore is refused with that reason and the node reports itself unhealthy.
    pub fn ledger_failed(&mut self, why: &str) {
        self.ledger_failure = Some(within_bytes(why, MAX_HEALTH_BYTES));
    }

    /// The ledger appends again.
    pub fn ledger_recovered(&mut self) {
        self.ledger_failure = None;
    }

    /// Why this node is unhealthy (it cannot record), if it is.
    pub fn unhealthy(&self) -> Option<&str> {
        self.ledger_failure.as_deref()
    }

    /// Time passes: expired slivers are stopped; silent members leave. `heard` says when a
    /// member was last heard otherwise (its SWIM packets, which the node machine's SWIM
    /// notes): asked only of members that adverts alone would time out, so that a packet
    /// costs no lookup here.
    pub fn tick(&mut self, now_ms: u64, heard: impl Fn(&PublicKey) -> Option<u64>) -> Vec<Output> {
        let now = secs(now_ms);
        self.revocations.settle(now_ms);
        // Deletes leave at their signed expiry, on every node within a tick of the others
        // (their queue is ordered: nothing to do costs a lookup); otherwise digests would
        // differ for a minute after each expiry and nodes reconcile over nothing.
        self.prune_deletes(now_ms);
        if now_ms.saturating_sub(self.last_prune_ms) >= REVOCATION_PRUNE_INTERVAL_MS {
            self.last_prune_ms = now_ms;
            self.prune_revocations(now_ms);
        }
        // Members a revocation read back from the log removed (`remember_revocation`
        // reports nothing itself).
        let left_by_revocation = self.take_revoked_members();
        let mut out: Vec<Output> = self
            .slivers
            .values()
            .filter(|s| {
                now > s
                    .plan
                    .not_after
                    .saturating_add(slicefed_trust::verify::CLOCK_SKEW_SECS)
            })
            .map(|s| Output::Stop {
                id: s.plan.id,
                reason: StopReason::Expired,
            })
            .collect();
        out.extend(left_by_revocation);
        // A backstop: SWIM declares a dead member in about a minute; a member whose adverts
        // stopped (and that SWIM could not probe) goes after three advert intervals.
        let timeout = self.member_timeout_ms();
        // A look at least every eighth of the timeout (a member is dropped at most that
        // late), and at least every `EXPIRY_SCAN_MS`.
        let gap = (timeout / 8).clamp(1, EXPIRY_SCAN_MS);
        let deadline = now_ms.saturating_sub(timeout);
        let look = now_ms.saturating_sub(self.last_expiry_scan_ms) >= gap;
        if look {
            self.last_expiry_scan_ms = now_ms;
        }
        // A look that would find nobody silent past the deadline knows so without a walk.
        if look && self.oldest_seen_ms < deadline {
            let mut silent: Vec<(u64, PublicKey)> = vec![];
            let mut oldest = u64::MAX;
            self.members.retain(|k, m| {
                // Only a member whose judgement stands is kept by its SWIM packets: one
                // whose credential expired has its adverts refused, so it leaves a
                // timeout after its last one, however well it answers probes.
                if m.last_seen_ms < deadline
                    && now <= m.valid_until
                    && let Some(heard_ms) = heard(k)
                {
                    m.last_seen_ms = m.last_seen_ms.max(heard_ms);
                }
                let keep = m.last_seen_ms >= deadline;
                if keep {
                    oldest = oldest.min(m.last_seen_ms);
                } else {
                    silent.push((m.last_seen_ms, *k));
                }
                keep
            });
            self.oldest_seen_ms = oldest;
            // In order of silence, the longest first (as they fell silent).
            silent.sort_unstable();
            out.extend(silent.into_iter().map(|(_, k)| Output::Left(k)));
        }
        out
    }
}

impl NodeCore {
    /// A quorum of members voted `k` dead (SWIM): it is no longer a member.
    pub fn member_down(&mut self, k: &PublicKey) -> Vec<Output> {
        match self.members.remove(k) {
            Some(_) => vec![Output::Left(*k)],
            None => vec![],
        }
    }
}

mod admission;
mod deletes;
mod held;
mod holders;
mod membership;
mod revocations;

#[cfg(test)]
mod tests;
