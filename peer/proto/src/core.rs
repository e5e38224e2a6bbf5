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

use sha2::{Digest, Sha256};
use slicefed_ledger::entry::{Attribution, EntryBody, Usage};
use slicefed_trust::caps::NetworkRights;
use slicefed_trust::objects::{self, MAX_CREDENTIAL_BYTES, NodeReceipt};
use slicefed_trust::verify::{HeldFile, Object, RevocationError, Verified};
use slicefed_trust::{
    CertId, Context, Credential, Invocation, ModuleHash, Name, PublicKey, SecretKey, TrustPolicy,
    Verifier,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Most members remembered.
pub const MAX_MEMBERS: usize = 4096;
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
/// Adverts a node should hear per second from the whole federation: the advert interval
/// grows with the member count so that every node's share of advert traffic stays flat
/// (everyone hears everyone, so a fixed interval costs each node O(members)).
pub const ADVERTS_HEARD_PER_SEC: u64 = 1;
/// A member is dropped after missing this many of its adverts (gossip reaches a node over
/// several paths, so a missed advert means the sender or the path is gone).
pub const ADVERTS_MISSED_BEFORE_LEAVING: u64 = 3;
/// Revocations in one catch-up answer.
pub const MAX_REVOCATIONS_PER_PAGE: usize = 256;
/// Bytes of revocation files in one catch-up answer (under the response limit).
pub const MAX_REVOCATION_PAGE_BYTES: usize = 2 << 20;
/// A member is asked for revocations at most this often.
pub const REVOCATION_SYNC_INTERVAL_MS: u64 = 30_000;

/// The members a node knows, by key. A hash map: every advert heard is a lookup, and a
/// node of a thousand-member federation hears a thousand of them per advert interval. Its
/// hasher is fixed (keys are certified by a trusted authority, so nobody can choose many
/// colliding ones), which keeps iteration order a function of what happened, as the
/// simulator's determinism needs.
pub type Members = std::collections::HashMap<PublicKey, Member, BuildKeyHasher>;

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

/// Whether to ask member `m` (which just advertised `load`) for its revocations: it holds
/// a set other than ours, at least as large (a node that holds more never asks one that
/// holds less: the smaller pulls, grows to the union, and the other pulls from it only if
/// it was missing something), and it was not asked lately. Records the asking.
fn wants_revocations(m: &mut Member, ours: &RevocationDigest, load: &Load, now_ms: u64) -> bool {
    let theirs = &load.revocations;
    if theirs == ours || theirs.count == 0 || theirs.count < ours.count {
        return false;
    }
    if m.revocations_asked_ms
        .is_some_and(|t| now_ms.saturating_sub(t) < REVOCATION_SYNC_INTERVAL_MS)
    {
        return false;
    }
    m.revocations_asked_ms = Some(now_ms);
    true
}

/// Pages one catch-up from one member may take (with full pages, 16,384 revocations).
pub const MAX_CATCHUP_PAGES: u32 = 64;

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

/// Equal bytes; the same allocation is equal without reading it.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
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
    /// Which revocations the node holds: a member holding others is asked for them.
    pub revocations: RevocationDigest,
    /// Why the node is unhealthy (it cannot record, so it takes no tickets), if it is.
    pub unhealthy: Option<String>,
    /// When the advert carrying this was made (the sender's clock, unix ms): an advert
    /// outside the clock skew, or not newer than the last one heard, is not taken (a
    /// replayed advert must not keep a dead member listed).
    pub sent_ms: u64,
}

/// A summary of a node's revocation set: two nodes with equal digests hold the same
/// revocations. The hash is SHA-256 over the sorted revocation ids, so it does not depend on
/// the order they arrived in and nobody can make two different sets look alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevocationDigest {
    /// Revocations held.
    pub count: u32,
    /// SHA-256 over their sorted ids (zeros when there are none).
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

/// A member of the federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its certified name.
    pub name: Name,
    /// The authority that certified it.
    pub authority: Name,
    /// When we last heard from it.
    pub last_seen_ms: u64,
    /// When its latest advert was made (its clock).
    pub last_sent_ms: u64,
    /// What it last said about itself.
    pub load: Load,
    /// The credential its membership was judged on, and until when that judgement holds
    /// (its chain's end of validity, unix seconds) unless a revocation arrives: a repeated
    /// advert with the same credential is then not verified again. Shared, so a caller
    /// that holds each peer's credential once (the simulator's thousand nodes) need not
    /// keep a thousand copies of each.
    credential: Arc<[u8]>,
    valid_until: u64,
    /// The ids of its chain's links: a revocation of any of them ends the judgement.
    chain: Vec<CertId>,
    /// When it was last asked for revocations.
    revocations_asked_ms: Option<u64>,
}

impl Member {
    /// A member for tests of other machines (nothing judged; never valid for adverts).
    #[doc(hidden)]
    pub fn for_tests(name: Name, authority: Name, load: Load) -> Member {
        Member {
            name,
            authority,
            last_seen_ms: 0,
            last_sent_ms: 0,
            load,
            credential: Arc::from(Vec::new()),
            valid_until: 0,
            chain: vec![],
            revocations_asked_ms: None,
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
    /// Ask this member for the revocations it holds (its digest differs from ours): send
    /// it a revocations request and feed each answer to [`NodeCore::revocation`] without
    /// gossiping them again.
    FetchRevocations(PublicKey),
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
    members: Members,
    /// (time, member) for every advert heard, oldest first: expiry pops from the front
    /// and drops a member only if its latest advert is that old too. An advert costs a
    /// push, not a re-sort; compacted when it outgrows the members.
    heard: VecDeque<(u64, PublicKey)>,
    slivers: BTreeMap<u64, Running>,
    next_sliver: u64,
    /// Revocations seen, by id, with their bytes (for members that were away).
    revocations: BTreeMap<CertId, Vec<u8>>,
    revocation_bytes: usize,
    /// The digest of `revocations`, recomputed when asked after a change.
    revocation_digest: std::cell::Cell<RevocationDigest>,
    digest_stale: std::cell::Cell<bool>,
    last_prune_ms: u64,
    /// Why the ledger cannot append, while it cannot.
    ledger_failure: Option<String>,
    advert_base_ms: u64,
    adverts_heard_per_sec: u64,
}

/// Why an input was rejected (inputs that are refused with a receipt are not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A peer's advert did not make it a member.
    #[error("not a member: {0}")]
    NotMember(String),
    /// An advert too old, from the future, or replayed: ignored (not a fault of whoever
    /// relayed it).
    #[error("stale advert: {0}")]
    StaleAdvert(String),
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
    /// A restore of a sliver that runs.
    #[error("sliver {0} is already running")]
    AlreadyRunning(u64),
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
            | Refusal::RenewalChangesInvocation => "renewal",
            Refusal::AlreadyRunning(_) => "already_running",
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
            members: Members::default(),
            heard: VecDeque::new(),
            slivers: BTreeMap::new(),
            next_sliver: 1,
            revocations: BTreeMap::new(),
            revocation_bytes: 0,
            revocation_digest: std::cell::Cell::new(RevocationDigest::default()),
            digest_stale: std::cell::Cell::new(false),
            last_prune_ms: 0,
            ledger_failure: None,
            advert_base_ms: 5_000,
            adverts_heard_per_sec: ADVERTS_HEARD_PER_SEC,
        }
    }

    /// Sets the shortest advert interval (the owner's setting) and the advert budget (see
    /// [`ADVERTS_HEARD_PER_SEC`]).
    pub fn set_advert_timing(&mut self, base_ms: u64, adverts_heard_per_sec: u64) {
        self.advert_base_ms = base_ms.max(1);
        self.adverts_heard_per_sec = adverts_heard_per_sec.max(1);
    }

    /// How often this node should advertise now: the owner's interval, or longer in a large
    /// federation so that each node hears about [`ADVERTS_HEARD_PER_SEC`] adverts a second
    /// (every node computes about the same figure, since all see about the same members).
    pub fn advert_interval_ms(&self) -> u64 {
        let members = self.members.len() as u64 + 1;
        self.advert_base_ms
            .max(members.saturating_mul(1000) / self.adverts_heard_per_sec)
    }

    /// How long a silent member stays a member.
    pub fn member_timeout_ms(&self) -> u64 {
        MEMBER_TIMEOUT_MS.max(
            self.advert_interval_ms()
                .saturating_mul(ADVERTS_MISSED_BEFORE_LEAVING),
        )
    }

    /// A summary of the revocations this node holds (it goes into its adverts). Computed
    /// when asked after a change, not at every change (recomputing on each of a burst of
    /// revocations would cost the square of the set).
    pub fn revocation_digest(&self) -> RevocationDigest {
        if self.digest_stale.replace(false) {
            let mut h = Sha256::new();
            for id in self.revocations.keys() {
                h.update(id.0);
            }
            self.revocation_digest.set(if self.revocations.is_empty() {
                RevocationDigest::default()
            } else {
                RevocationDigest {
                    count: self.revocations.len() as u32,
                    hash: h.finalize().into(),
                }
            });
        }
        self.revocation_digest.get()
    }

    /// Revocations held, in id order, after `after` (a page of a catch-up answer): at most
    /// `max` (and [`MAX_REVOCATIONS_PER_PAGE`]) files and about [`MAX_REVOCATION_PAGE_BYTES`].
    /// An empty page ends a catch-up.
    pub fn revocations_after(&self, after: Option<CertId>, max: usize) -> Vec<Vec<u8>> {
        let range = match after {
            Some(a) => self
                .revocations
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.revocations.range(..),
        };
        let mut bytes = 0usize;
        range
            .take(max.min(MAX_REVOCATIONS_PER_PAGE))
            .take_while(|(_, b)| {
                let fits = bytes == 0 || bytes + b.len() <= MAX_REVOCATION_PAGE_BYTES;
                bytes += b.len();
                fits
            })
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// This node's key.
    pub(crate) fn secret_key(&self) -> &SecretKey {
        &self.key
    }

    /// This node's key.
    pub fn id(&self) -> PublicKey {
        self.me
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
            revocations: self.revocation_digest(),
            unhealthy: self.ledger_failure.clone(),
            ..Load::default()
        }
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

    /// A peer's advert: its node credential (certificate and chain) and load. Makes it a
    /// member if the credential is a node certificate for `from` that chains to a trusted
    /// authority.
    pub fn advert(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &[u8],
        load: Load,
    ) -> Result<Vec<Output>, CoreError> {
        self.judge_advert(now_ms, from, node_credential, None, load)
    }

    /// [`NodeCore::advert`] with the credential in shared memory: a member admitted on it
    /// keeps a reference, not a copy, and the same allocation compares equal without reading
    /// it. The decision is the same as `advert`'s.
    pub fn advert_shared(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &Arc<[u8]>,
        load: Load,
    ) -> Result<Vec<Output>, CoreError> {
        self.judge_advert(now_ms, from, node_credential, Some(node_credential), load)
    }

    fn judge_advert(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &[u8],
        shared: Option<&Arc<[u8]>>,
        load: Load,
    ) -> Result<Vec<Output>, CoreError> {
        let refuse = |why: String| Err(CoreError::NotMember(why));
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        if load.sent_ms.abs_diff(now_ms) > skew_ms {
            return Err(CoreError::StaleAdvert(format!(
                "made at {} ms, more than {skew_ms} ms from this node's clock ({now_ms})",
                load.sent_ms
            )));
        }
        if let Some(m) = self.members.get(&from)
            && load.sent_ms <= m.last_sent_ms
        {
            return Err(CoreError::StaleAdvert(format!(
                "made at {} ms, not after the last advert heard ({})",
                load.sent_ms, m.last_sent_ms
            )));
        }
        // The same credential as last time, still within its validity and with none of its
        // links revoked since: the judgement stands (a member re-advertises for ever;
        // checking its chain each time would cost every node a chain walk per advert).
        let digest = self.revocation_digest();
        if let Some(m) = self.members.get_mut(&from)
            && same_bytes(&m.credential, node_credential)
            && secs(now_ms) <= m.valid_until
        {
            if now_ms < m.last_seen_ms {
                return Ok(vec![]);
            }
            m.last_seen_ms = now_ms;
            m.last_sent_ms = load.sent_ms;
            let ask = wants_revocations(m, &digest, &load, now_ms);
            m.load = load;
            self.note_heard(now_ms, from);
            return Ok(if ask {
                vec![Output::FetchRevocations(from)]
            } else {
                vec![]
            });
        }
        let cred = match Credential::from_bytes(node_credential) {
            Ok(c) => c,
            Err(e) => return refuse(e.to_string()),
        };
        let pool: Vec<&[u8]> = cred.chain().collect();
        // Membership is not tied to this node as audience: any node that trusts the root.
        let ctx = Context {
            now: secs(now_ms),
            node: None,
        };
        let v = match self.verifier.verify(cred.leaf(), &pool, &ctx) {
            Ok(v) => v,
            Err(e) => return refuse(e.to_string()),
        };
        let Object::NodeCert(nc) = &v.leaf.object else {
            return refuse(format!("a {} is not a node certificate", v.leaf.kind));
        };
        if nc.subject != from {
            return refuse(format!(
                "the node certificate is for {}, not for {}",
                nc.subject.peer_id(),
                from.peer_id()
            ));
        }
        let valid_until = v
            .leaf
            .validity()
            .map_or(u64::MAX, |x| x.not_after)
            .min(v.effective.validity.not_after)
            .saturating_add(slicefed_trust::verify::CLOCK_SKEW_SECS);
        let mut out = vec![];
        let asked = match self.members.get(&from) {
            Some(m) => m.revocations_asked_ms,
            None => {
                if self.members.len() >= MAX_MEMBERS {
                    return refuse(format!("this node already tracks {MAX_MEMBERS} members"));
                }
                out.push(Output::Joined(from));
                None
            }
        };
        let mut member = Member {
            name: nc.name.clone(),
            authority: v.responsible.authority.clone(),
            last_seen_ms: now_ms,
            last_sent_ms: load.sent_ms,
            load: Load::default(),
            credential: shared.map_or_else(|| Arc::from(node_credential), Arc::clone),
            valid_until,
            chain: v.links.iter().map(|l| l.id).collect(),
            revocations_asked_ms: asked,
        };
        let digest = self.revocation_digest();
        if wants_revocations(&mut member, &digest, &load, now_ms) {
            out.push(Output::FetchRevocations(from));
        }
        member.load = load;
        self.members.insert(from, member);
        self.note_heard(now_ms, from);
        Ok(out)
    }

    /// Remembers that `from` was heard at `now_ms`, for expiry.
    fn note_heard(&mut self, now_ms: u64, from: PublicKey) {
        self.heard.push_back((now_ms, from));
        if self.heard.len() > 8 * self.members.len() + 1024 {
            // Each member's latest advert is all expiry needs.
            let mut latest: Vec<(u64, PublicKey)> = self
                .members
                .iter()
                .map(|(k, m)| (m.last_seen_ms, *k))
                .collect();
            latest.sort_unstable();
            self.heard = latest.into();
        }
    }

    /// A revocation arrived: members whose chain it names are judged again on their next
    /// advert (and refused).
    fn forget_judgements(&mut self, target: &CertId) {
        for m in self.members.values_mut() {
            if m.chain.contains(target) {
                m.valid_until = 0;
            }
        }
    }

    fn receipt(
        &self,
        ticket: CertId,
        admitted: bool,
        reason: String,
        now_ms: u64,
    ) -> Option<Output> {
        let r = NodeReceipt {
            ticket,
            admitted,
            reason: within_bytes(&reason, objects::MAX_REASON_BYTES),
            at: secs(now_ms),
        };
        objects::sign(&self.key, &r)
            .ok()
            .map(|s| Output::Receipt(s.bytes))
    }

    /// A ticket credential submitted by a researcher (or a service acting for one), for a
    /// module whose bytes the driver holds. Always answers with a signed receipt.
    pub fn submit(
        &mut self,
        now_ms: u64,
        credential: &[u8],
        module: ModuleHash,
        invocation: &Invocation,
    ) -> Vec<Output> {
        let ticket_id = Credential::from_bytes(credential)
            .map(|c| CertId::of(c.leaf()))
            .unwrap_or(CertId([0; 32]));
        match self.admit(now_ms, credential, Some(module), invocation, None) {
            Ok((plan, verified, chain)) => {
                let who = plan.who.clone();
                let module = plan.module;
                self.insert(plan.clone(), credential, &verified, chain, ticket_id);
                let mut out = vec![
                    Output::Start(plan),
                    Output::Append(EntryBody::SliverCreated {
                        who,
                        module,
                        ticket: ticket_id,
                        credential: credential.to_vec(),
                        invocation: invocation.clone(),
                    }),
                ];
                out.extend(self.receipt(ticket_id, true, String::new(), now_ms));
                out
            }
            Err(refusal) => self
                .receipt(ticket_id, false, refusal.to_string(), now_ms)
                .into_iter()
                .collect(),
        }
    }

    fn insert(
        &mut self,
        plan: SliverPlan,
        credential: &[u8],
        verified: &Verified,
        chain: Vec<CertId>,
        ticket: CertId,
    ) {
        let mut holders = vec![verified.leaf.signer];
        holders.extend(verified.responsible.user_key);
        let invocation = match &verified.leaf.object {
            Object::SliceTicket(t) => t.invocation,
            _ => Invocation::default().hash(),
        };
        self.slivers.insert(
            plan.id,
            Running {
                plan,
                credential: credential.to_vec(),
                chain,
                root: verified.responsible.root.clone(),
                ticket,
                holders,
                invocation,
            },
        );
    }

    /// Verifies a ticket and checks it fits. `module` is the hash of the bytes the driver
    /// holds (checked against the ticket); `restore` is the id of a sliver that ran here
    /// before a restart (its nonce was consumed then, so the replay check is skipped).
    fn admit(
        &mut self,
        now_ms: u64,
        credential: &[u8],
        module: Option<ModuleHash>,
        invocation: &Invocation,
        restore: Option<u64>,
    ) -> Result<(SliverPlan, Verified, Vec<CertId>), Refusal> {
        // Nothing runs that this node cannot record.
        if let Some(why) = &self.ledger_failure {
            return Err(Refusal::LedgerUnavailable(why.clone()));
        }
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(Refusal::File(format!(
                "the ticket file is {} bytes, over {MAX_CREDENTIAL_BYTES}",
                credential.len()
            )));
        }
        let cred = Credential::from_bytes(credential).map_err(|e| Refusal::File(e.to_string()))?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let ctx = self.ctx(now_ms);
        // Capacity first among the cheap checks, but after the signature: an unsigned
        // request learns nothing about this node's load.
        let v = self.verifier.verify(cred.leaf(), &pool, &ctx)?;
        let Object::SliceTicket(t) = &v.leaf.object else {
            return Err(Refusal::NotATicket(v.leaf.kind));
        };
        if let Some(m) = module
            && m != t.module
        {
            return Err(Refusal::WrongModule {
                sent: m,
                named: t.module,
            });
        }
        invocation.validate().map_err(Refusal::File)?;
        if invocation.hash() != t.invocation {
            return Err(Refusal::WrongInvocation);
        }
        if self.slivers.len() as u64 >= u64::from(self.capacity.max_slivers) {
            return Err(Refusal::NodeFull(self.slivers.len()));
        }
        let memory = v
            .effective
            .caps
            .memory
            .unwrap_or(self.capacity.default_sliver_memory);
        let free = self.capacity.memory.saturating_sub(self.used_memory());
        if memory > free {
            return Err(Refusal::NotEnoughMemory {
                wanted: memory,
                free,
            });
        }
        if let Some(max) = v.effective.caps.max_slivers {
            let root = &v.responsible.root;
            let user = v.responsible.user_key;
            let same = self
                .slivers
                .values()
                .filter(|r| {
                    &r.root == root && (user.is_none() || r.plan.who.user == v.responsible.user)
                })
                .count();
            if same as u64 >= u64::from(max) {
                return Err(Refusal::OverCap {
                    running: same,
                    cap: max,
                });
            }
        }
        let id = match restore {
            Some(id) => {
                self.next_sliver = self.next_sliver.max(id.saturating_add(1));
                id
            }
            None => {
                // Last, because it consumes the nonce: a refused ticket can be fixed and
                // re-sent.
                self.verifier.admit_ticket(cred.leaf(), &pool, &ctx)?;
                let id = self.next_sliver;
                self.next_sliver += 1;
                id
            }
        };
        let plan = SliverPlan {
            id,
            who: Attribution {
                slice: t.slice.clone(),
                sliver: id,
                user: v.responsible.user.clone(),
                authority: Some(v.responsible.authority.clone()),
            },
            module: t.module,
            memory,
            cpu_share: v.effective.caps.cpu_share.unwrap_or(1).max(1),
            network: v.effective.network.clone(),
            egress_per_day: v.effective.caps.egress_per_day,
            not_after: v.effective.validity.not_after,
        };
        let chain = v.links.iter().map(|l| l.id).collect();
        Ok((plan, v, chain))
    }

    /// The driver could not start an admitted sliver (its module does not compile, the
    /// sandbox is full): it is dropped, logged as stopped, and the admitted receipt is
    /// replaced by a refusal saying why.
    pub fn start_failed(&mut self, now_ms: u64, id: u64, reason: &str) -> Vec<Output> {
        let Some(s) = self.slivers.remove(&id) else {
            return vec![];
        };
        let refusal = Refusal::StartFailed(reason.to_string());
        let mut out = vec![Output::Append(EntryBody::SliverStopped {
            who: s.plan.who,
            reason: refusal.to_string().chars().take(200).collect(),
            usage: Usage::default(),
        })];
        out.extend(self.receipt(s.ticket, false, refusal.to_string(), now_ms));
        out
    }

    /// The `SliverCreated` of an admitted sliver could not be made durable (the ledger
    /// failed as it was written): the sliver never starts, the node stops taking tickets
    /// until the ledger works ([`NodeCore::ledger_failed`]), and the refusal says why.
    /// Nothing is appended: there is nothing to stop in the log.
    pub fn not_recorded(&mut self, now_ms: u64, id: u64, why: &str) -> Vec<Output> {
        self.ledger_failed(why);
        let Some(s) = self.slivers.remove(&id) else {
            return vec![];
        };
        self.receipt(
            s.ticket,
            false,
            Refusal::NotRecorded(why.to_string()).to_string(),
            now_ms,
        )
        .into_iter()
        .collect()
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

    /// Brings back, under its old id, a sliver that ran here before the node restarted, if
    /// its ticket still verifies (not expired, not revoked) and it still fits.
    pub fn restore(
        &mut self,
        now_ms: u64,
        id: u64,
        credential: &[u8],
        invocation: &Invocation,
    ) -> Result<Vec<Output>, Refusal> {
        if self.slivers.contains_key(&id) {
            return Err(Refusal::AlreadyRunning(id));
        }
        let (plan, verified, chain) = self.admit(now_ms, credential, None, invocation, Some(id))?;
        let ticket = verified.leaf.id;
        let who = plan.who.clone();
        let module = plan.module;
        self.insert(plan.clone(), credential, &verified, chain, ticket);
        Ok(vec![
            Output::Start(plan),
            Output::Append(EntryBody::OwnerAction {
                action: format!("restored sliver {id} after a node restart"),
                who: Some(who.clone()),
            }),
            Output::Append(EntryBody::SliverCreated {
                who,
                module,
                ticket,
                credential: credential.to_vec(),
                invocation: invocation.clone(),
            }),
        ])
    }

    /// A later ticket from the same holder for the same slice: every sliver of that slice
    /// it holds here takes the new ticket (and its new end of validity). Answers with a
    /// signed receipt either way.
    pub fn renew(&mut self, now_ms: u64, credential: &[u8]) -> Vec<Output> {
        let ticket_id = Credential::from_bytes(credential)
            .map(|c| CertId::of(c.leaf()))
            .unwrap_or(CertId([0; 32]));
        match self.check_renewal(now_ms, credential) {
            Ok((ids, verified, chain, not_after)) => {
                let mut out = vec![];
                for id in ids {
                    if let Some(s) = self.slivers.get_mut(&id) {
                        s.plan.not_after = not_after;
                        s.credential = credential.to_vec();
                        s.chain = chain.clone();
                        s.ticket = ticket_id;
                        s.holders = std::iter::once(verified.leaf.signer)
                            .chain(verified.responsible.user_key)
                            .collect();
                        out.push(Output::Append(EntryBody::SliverRenewed {
                            who: s.plan.who.clone(),
                            ticket: ticket_id,
                            credential: credential.to_vec(),
                        }));
                    }
                }
                out.extend(self.receipt(ticket_id, true, String::new(), now_ms));
                out
            }
            Err(refusal) => self
                .receipt(ticket_id, false, refusal.to_string(), now_ms)
                .into_iter()
                .collect(),
        }
    }

    fn check_renewal(
        &mut self,
        now_ms: u64,
        credential: &[u8],
    ) -> Result<(Vec<u64>, Verified, Vec<CertId>, u64), Refusal> {
        if let Some(why) = &self.ledger_failure {
            return Err(Refusal::LedgerUnavailable(why.clone()));
        }
        let cred = Credential::from_bytes(credential).map_err(|e| Refusal::File(e.to_string()))?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let ctx = self.ctx(now_ms);
        let v = self.verifier.verify(cred.leaf(), &pool, &ctx)?;
        let Object::SliceTicket(t) = &v.leaf.object else {
            return Err(Refusal::NotATicket(v.leaf.kind));
        };
        let signer = v.leaf.signer;
        let ids: Vec<u64> = self
            .slivers
            .values()
            .filter(|s| s.plan.who.slice == t.slice && s.holders.contains(&signer))
            .map(|s| s.plan.id)
            .collect();
        if ids.is_empty() {
            return Err(Refusal::NothingToRenew(t.slice.clone()));
        }
        if ids
            .iter()
            .filter_map(|id| self.slivers.get(id))
            .any(|s| s.plan.module != t.module)
        {
            return Err(Refusal::RenewalChangesModule);
        }
        // The renewal's ticket becomes the slivers' ticket (logged, saved for restarts): it
        // must sign the arguments they run with.
        if ids
            .iter()
            .filter_map(|id| self.slivers.get(id))
            .any(|s| s.invocation != t.invocation)
        {
            return Err(Refusal::RenewalChangesInvocation);
        }
        self.verifier.admit_ticket(cred.leaf(), &pool, &ctx)?;
        let chain = v.links.iter().map(|l| l.id).collect();
        let not_after = v.effective.validity.not_after;
        Ok((ids, v, chain, not_after))
    }

    /// The slice's holder deletes it here: every sliver of the slice that the signer holds
    /// is stopped. The request is signed by the holder for this node and is fresh. Signed
    /// with the node's own key, it is the owner's command and stops the slice whoever holds
    /// it (the owner stays in control of the machine).
    pub fn delete(
        &mut self,
        now_ms: u64,
        request: &crate::wire::HolderRequest,
    ) -> Result<Vec<Output>, CoreError> {
        request
            .verify(crate::wire::HolderAction::Delete, &self.me, secs(now_ms))
            .map_err(|e| CoreError::BadDelete(e.to_string()))?;
        // The node's own key is its owner's: the owner may stop any slice here, and the
        // ledger says it was the owner, not the slice's holder.
        let by_owner = request.body.signer == self.me;
        let reason = if by_owner {
            StopReason::Owner
        } else {
            StopReason::Deleted
        };
        let ids: Vec<u64> = self
            .slivers
            .values()
            .filter(|s| {
                s.plan.who.slice.as_str() == request.body.slice
                    && (by_owner || s.holders.contains(&request.body.signer))
            })
            .map(|s| s.plan.id)
            .collect();
        Ok(ids
            .into_iter()
            .map(|id| Output::Stop { id, reason })
            .collect())
    }

    /// Whether a signed request to read `slice`'s output here may be answered: signed for
    /// this node, fresh, and by the node's owner or a holder of one of the slice's slivers
    /// (running, or among `ended_holders` of those that ended). Output is the researcher's
    /// and the owner's, nobody else's.
    pub fn may_read_logs(
        &self,
        now_ms: u64,
        request: &crate::wire::HolderRequest,
        ended_holders: &[PublicKey],
    ) -> Result<(), CoreError> {
        request
            .verify(crate::wire::HolderAction::ReadLogs, &self.me, secs(now_ms))
            .map_err(|e| CoreError::NotHolder(e.to_string()))?;
        let signer = request.body.signer;
        let holds = signer == self.me
            || ended_holders.contains(&signer)
            || self.slivers.values().any(|s| {
                s.plan.who.slice.as_str() == request.body.slice && s.holders.contains(&signer)
            });
        if holds {
            Ok(())
        } else {
            Err(CoreError::NotHolder(format!(
                "{} holds no sliver of {} here",
                signer.peer_id(),
                request.body.slice
            )))
        }
    }

    /// Who holds sliver `id` (its ticket's signer and the responsible user).
    pub fn holders(&self, id: u64) -> Vec<PublicKey> {
        self.slivers
            .get(&id)
            .map(|s| s.holders.clone())
            .unwrap_or_default()
    }

    /// A revocation, from gossip or from the owner. Stops every sliver whose chain it
    /// revokes (as judged by the same rules as admission), logs it, and gossips it on once.
    pub fn revocation(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Vec<Output>, CoreError> {
        self.honour_revocation(now_ms, bytes, None)
    }

    /// A revocation fetched from a member (a catch-up), by a node up since `up_since_ms`.
    /// Honoured like a gossiped one, but gossiped on only if it was issued while this node
    /// was up: then the node missed it through the network (a partition, lost gossip) and
    /// its neighbours may have too. A node that was down when it was issued has neighbours
    /// that were up and heard it; in the simulator, every returning node passing on every
    /// revocation it caught up was most of a revocation storm's events and traffic.
    pub fn caught_up_revocation(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        up_since_ms: u64,
    ) -> Result<Vec<Output>, CoreError> {
        self.honour_revocation(now_ms, bytes, Some(up_since_ms))
    }

    fn honour_revocation(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        caught_up_since_ms: Option<u64>,
    ) -> Result<Vec<Output>, CoreError> {
        // One already held (its id) costs a lookup, not a verification.
        if revocation_id(bytes).is_some_and(|id| self.revocations.contains_key(&id)) {
            return Ok(vec![]);
        }
        // Entitlement first (the verifier holds only what an authority at or above the
        // revoked object's issuer signed): nothing unentitled is held, logged or forwarded.
        let held = match self.hold_revocation(now_ms, bytes) {
            Ok(h) => h,
            // Re-sent or re-signed by the same key: nothing new to log or pass on.
            Err(RevocationError::AlreadyHeld { .. }) => return Ok(vec![]),
            Err(e) => return Err(CoreError::Revocation(e)),
        };
        let r = &held.revocation;
        let issued_ms = r.body.revoked_at.saturating_mul(1000);
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        let pass_on = caught_up_since_ms.is_none_or(|up| issued_ms.saturating_add(skew_ms) >= up);
        let target = r.body.target;
        Ok(self.stop_revoked(now_ms, &held.file, target, pass_on))
    }

    /// Judges a revocation file and, when its revoker is entitled, holds it: in the
    /// verifier (for every later check) and with its bytes (for members that were away,
    /// within [`MAX_SEEN_REVOCATIONS`] and [`MAX_REVOCATION_BYTES`]; past either it is still
    /// honoured here, only not served to others).
    fn hold_revocation(&mut self, now_ms: u64, bytes: &[u8]) -> Result<HeldFile, RevocationError> {
        let held = self.verifier.add_revocation(bytes, secs(now_ms))?;
        let r = &held.revocation;
        self.forget_judgements(&r.body.target);
        if let Some(old) = held.replaced
            && let Some(b) = self.revocations.remove(&old)
        {
            self.revocation_bytes = self.revocation_bytes.saturating_sub(b.len());
            self.digest_stale.set(true);
        }
        let file = &held.file;
        if self.revocations.len() < MAX_SEEN_REVOCATIONS
            && self.revocation_bytes.saturating_add(file.len()) <= MAX_REVOCATION_BYTES
            && !self.revocations.contains_key(&r.id)
        {
            self.revocation_bytes += file.len();
            self.revocations.insert(r.id, file.clone());
            self.digest_stale.set(true);
        }
        Ok(held)
    }

    /// A revocation read back from this node's own log after a restart: held again, so
    /// slivers restored after it are judged with it, without logging or gossiping it twice.
    /// Judged again like any other (the owner may have changed the policy since).
    pub fn remember_revocation(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), CoreError> {
        match self.hold_revocation(now_ms, bytes) {
            Ok(_) | Err(RevocationError::AlreadyHeld { .. }) => Ok(()),
            Err(e) => Err(CoreError::Revocation(e)),
        }
    }

    /// Forgets revocations whose targets expired (they guard nothing any more).
    fn prune_revocations(&mut self, now_ms: u64) {
        let gone = self.verifier.prune_revocations(secs(now_ms));
        if gone.is_empty() {
            return;
        }
        for id in gone {
            if let Some(b) = self.revocations.remove(&id) {
                self.revocation_bytes = self.revocation_bytes.saturating_sub(b.len());
            }
        }
        self.digest_stale.set(true);
    }

    fn stop_revoked(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        target: CertId,
        gossip: bool,
    ) -> Vec<Output> {
        let mut out = vec![];
        let ctx = self.ctx(now_ms);
        let mut stopped = vec![];
        let affected: Vec<u64> = self
            .slivers
            .iter()
            .filter(|(_, s)| s.chain.contains(&target))
            .map(|(id, _)| *id)
            .collect();
        for id in affected {
            let still_valid = self.slivers.get(&id).is_some_and(|s| {
                Credential::from_bytes(&s.credential).is_ok_and(|c| {
                    let pool: Vec<&[u8]> = c.chain().collect();
                    self.verifier.verify(c.leaf(), &pool, &ctx).is_ok()
                })
            });
            if !still_valid {
                stopped.push(id);
                out.push(Output::Stop {
                    id,
                    reason: StopReason::Revoked,
                });
            }
        }
        out.push(Output::Append(EntryBody::RevocationSeen {
            revocation: bytes.to_vec(),
            stopped,
        }));
        if gossip {
            out.push(Output::GossipRevocation(bytes.to_vec()));
        }
        out
    }

    /// Time passes: expired slivers are stopped; silent members leave.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let now = secs(now_ms);
        if now_ms.saturating_sub(self.last_prune_ms) >= REVOCATION_PRUNE_INTERVAL_MS {
            self.last_prune_ms = now_ms;
            self.prune_revocations(now_ms);
        }
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
        let deadline = now_ms.saturating_sub(self.member_timeout_ms());
        while let Some(&(seen, k)) = self.heard.front() {
            if seen >= deadline {
                break;
            }
            self.heard.pop_front();
            if self
                .members
                .get(&k)
                .is_some_and(|m| m.last_seen_ms < deadline)
            {
                self.members.remove(&k);
                out.push(Output::Left(k));
            }
        }
        out
    }

    /// The node owner stops a sliver directly; logged as an owner action.
    pub fn owner_stop(&mut self, id: u64, why: &str) -> Result<Vec<Output>, CoreError> {
        let s = self.slivers.get(&id).ok_or(CoreError::NoSuchSliver(id))?;
        Ok(vec![
            Output::Append(EntryBody::OwnerAction {
                action: format!(
                    "stopped sliver {id}: {}",
                    why.chars().take(200).collect::<String>()
                ),
                who: Some(s.plan.who.clone()),
            }),
            Output::Stop {
                id,
                reason: StopReason::Owner,
            },
        ])
    }

    /// The node owner stops every sliver of `slice` here, whoever holds it (the owner is in
    /// control of the machine): logged as the owner's action, once for the slice.
    pub fn owner_stop_slice(&mut self, slice: &str, why: &str) -> Vec<Output> {
        let stops: Vec<Output> = self
            .slivers
            .values()
            .filter(|s| s.plan.who.slice.as_str() == slice)
            .map(|s| Output::Stop {
                id: s.plan.id,
                reason: StopReason::Owner,
            })
            .collect();
        if stops.is_empty() {
            return stops;
        }
        let mut out = vec![Output::Append(EntryBody::OwnerAction {
            action: format!(
                "stopped slice {}: {}",
                within_bytes(slice, 200),
                within_bytes(why, 200)
            ),
            who: None,
        })];
        out.extend(stops);
        out
    }

    /// The sandbox reports that a sliver ended (for any reason): log it and free its share.
    pub fn ended(&mut self, id: u64, outcome: &str, usage: Usage) -> Vec<Output> {
        match self.slivers.remove(&id) {
            Some(s) => vec![Output::Append(EntryBody::SliverStopped {
                who: s.plan.who,
                reason: outcome.chars().take(200).collect(),
                usage,
            })],
            None => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_trust::caps::{ResourceCaps, Rights, Validity};
    use slicefed_trust::fixtures::{
        DAY, T0, key, name, open_grant, policy_for, ticket_body, user_cert,
    };
    use slicefed_trust::objects::{NodeCert, SliceTicket, UserCert};
    use slicefed_trust::{NodeSet, Pattern};

    const NOW: u64 = T0 * 1000;

    fn node(n: u8) -> NodeCore {
        NodeCore::new(
            key(n),
            Capacity {
                max_slivers: 3,
                memory: 1 << 30,
                default_sliver_memory: 64 << 20,
            },
            policy_for(&[("princeton", &key(1))]),
        )
    }

    fn ticket(body: SliceTicket) -> Vec<u8> {
        let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
        let t = objects::sign(&key(3), &body).unwrap().bytes;
        Credential::new(t, [user]).to_bytes().unwrap()
    }

    /// Submits with the module the ticket names (as an honest driver would).
    fn sub(n: &mut NodeCore, now: u64, cred: &[u8]) -> Vec<Output> {
        let module = Credential::from_bytes(cred)
            .ok()
            .and_then(|c| objects::open::<SliceTicket>(c.leaf()).ok())
            .map_or(ModuleHash([0; 32]), |t| t.body.module);
        n.submit(now, cred, module, &Invocation::default())
    }

    /// A revocation file by `key(revoker)` of `target` (a certificate issued by the root).
    fn revocation_of(revoker: u8, target: &[u8], reason: &str) -> Vec<u8> {
        let target = Credential::new(target.to_vec(), []);
        slicefed_trust::fixtures::revocation_file(&key(revoker), &target, reason, T0).unwrap()
    }

    /// A load as an advert made at `ms` carries it.
    fn sent(ms: u64) -> Load {
        Load {
            sent_ms: ms,
            ..Load::default()
        }
    }

    fn receipt(out: &[Output]) -> NodeReceipt {
        let bytes = out
            .iter()
            .find_map(|o| match o {
                Output::Receipt(b) => Some(b.clone()),
                _ => None,
            })
            .expect("a receipt");
        objects::open::<NodeReceipt>(&bytes).unwrap().body
    }

    #[test]
    fn an_admitted_ticket_starts_a_logged_sliver_with_its_chains_limits() {
        let mut n = node(10);
        let out = sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        let r = receipt(&out);
        assert!(r.admitted, "{}", r.reason);
        let plan = out
            .iter()
            .find_map(|o| match o {
                Output::Start(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(plan.memory, 64 << 20);
        assert_eq!(plan.who.user.as_ref().unwrap().as_str(), "princeton.alice");
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Append(EntryBody::SliverCreated { .. })))
        );
        assert_eq!(n.load().slivers, 1);
    }

    #[test]
    fn every_refusal_has_its_own_reason_in_a_signed_receipt() {
        let mut n = node(10);
        // Forged: a byte of the ticket's signature changed.
        let mut forged = ticket(ticket_body("princeton.codeen", 1));
        let len = forged.len();
        forged[len / 2] ^= 1;
        assert!(!receipt(&sub(&mut n, NOW, &forged)).admitted);
        // Expired.
        let r = receipt(&sub(
            &mut n,
            NOW + 3 * DAY * 1000,
            &ticket(ticket_body("princeton.codeen", 2)),
        ));
        assert!(r.reason.contains("expired"), "{}", r.reason);
        // Wrong audience.
        let mut b = ticket_body("princeton.codeen", 3);
        b.nodes = NodeSet::only(vec![key(11).public()]);
        let r = receipt(&sub(&mut n, NOW, &ticket(b)));
        assert!(r.reason.contains("audience"), "{}", r.reason);
        // Untrusted root.
        let mut other = NodeCore::new(key(10), n.capacity.clone(), policy_for(&[("mit", &key(9))]));
        let r = receipt(&sub(
            &mut other,
            NOW,
            &ticket(ticket_body("princeton.codeen", 4)),
        ));
        assert!(r.reason.contains("untrusted root"), "{}", r.reason);
        // Over the node's memory.
        let mut b = ticket_body("princeton.codeen", 5);
        b.caps.memory = Some(2 << 30);
        let r = receipt(&sub(&mut n, NOW, &ticket(b)));
        assert!(r.reason.contains("not enough memory"), "{}", r.reason);
        // Replayed.
        let t = ticket(ticket_body("princeton.codeen", 6));
        assert!(receipt(&sub(&mut n, NOW, &t)).admitted);
        let r = receipt(&sub(&mut n, NOW, &t));
        assert!(r.reason.contains("replayed"), "{}", r.reason);
        // Full.
        for i in 7..9 {
            assert!(
                receipt(&sub(
                    &mut n,
                    NOW,
                    &ticket(ticket_body("princeton.codeen", i))
                ))
                .admitted
            );
        }
        let r = receipt(&sub(
            &mut n,
            NOW,
            &ticket(ticket_body("princeton.codeen", 9)),
        ));
        assert!(r.reason.contains("node full"), "{}", r.reason);
    }

    #[test]
    fn a_chain_cap_on_slivers_is_enforced() {
        let mut n = node(10);
        let mut grant = open_grant(Rights::CREATE);
        grant.caps = ResourceCaps {
            max_slivers: Some(1),
            ..Default::default()
        };
        let user = objects::sign(
            &key(1),
            &UserCert {
                subject: key(3).public(),
                name: name("princeton.alice"),
                slices: Pattern::parse("princeton.*").unwrap(),
                grant,
            },
        )
        .unwrap()
        .bytes;
        let t = |i| {
            let t = objects::sign(&key(3), &ticket_body("princeton.codeen", i))
                .unwrap()
                .bytes;
            Credential::new(t, [user.clone()]).to_bytes().unwrap()
        };
        assert!(receipt(&sub(&mut n, NOW, &t(1))).admitted);
        let r = receipt(&sub(&mut n, NOW, &t(2)));
        assert!(r.reason.contains("over cap"), "{}", r.reason);
    }

    #[test]
    fn expiry_and_revocation_stop_slivers_and_are_logged() {
        let mut n = node(10);
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        assert!(n.tick(NOW + 1000).is_empty());
        let out = n.tick(NOW + 2 * DAY * 1000);
        assert_eq!(
            out,
            vec![Output::Stop {
                id: 1,
                reason: StopReason::Expired
            }]
        );
        let out = n.ended(1, "killed(expired)", Usage::default());
        assert!(matches!(
            &out[0],
            Output::Append(EntryBody::SliverStopped { .. })
        ));

        // Revoking the user's certificate stops their sliver, once.
        let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 2)));
        let rev = revocation_of(1, &user, "stolen laptop");
        let out = n.revocation(NOW, &rev).unwrap();
        assert!(out.contains(&Output::Stop {
            id: 2,
            reason: StopReason::Revoked
        }));
        assert!(out.iter().any(|o| matches!(o, Output::GossipRevocation(_))));
        assert!(
            n.revocation(NOW, &rev).unwrap().is_empty(),
            "gossiped on once"
        );
        // And the same user's next ticket is refused.
        let r = receipt(&sub(
            &mut n,
            NOW,
            &ticket(ticket_body("princeton.codeen", 3)),
        ));
        assert!(r.reason.contains("revoked"), "{}", r.reason);
        // A revocation by an unrelated key stops nothing.
        let mut n = node(10);
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 4)));
        let rev = revocation_of(99, &user, "grief");
        assert!(matches!(
            n.revocation(NOW, &rev),
            Err(CoreError::Revocation(RevocationError::Unentitled { .. }))
        ));
        assert_eq!(n.revocation_digest(), RevocationDigest::default());
    }

    #[test]
    fn only_certified_nodes_become_members() {
        let mut n = node(10);
        let cert = objects::sign(
            &key(1),
            &NodeCert {
                subject: key(20).public(),
                name: name("princeton.node20"),
                validity: Validity::starting(T0 - DAY, 30 * DAY),
            },
        )
        .unwrap()
        .bytes;
        let cred = Credential::new(cert.clone(), []).to_bytes().unwrap();
        let out = n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
        assert_eq!(out, vec![Output::Joined(key(20).public())]);
        assert_eq!(
            n.members()[&key(20).public()].name.as_str(),
            "princeton.node20"
        );
        // Someone else presenting that certificate is not that node.
        assert!(n.advert(NOW, key(21).public(), &cred, sent(NOW)).is_err());
        // A self-made certificate (untrusted root) is refused.
        let own = objects::sign(
            &key(21),
            &NodeCert {
                subject: key(21).public(),
                name: name("evil.node"),
                validity: Validity::starting(T0, DAY),
            },
        )
        .unwrap()
        .bytes;
        let err = n.advert(
            NOW,
            key(21).public(),
            &Credential::new(own, []).to_bytes().unwrap(),
            sent(NOW),
        );
        assert!(
            matches!(err, Err(CoreError::NotMember(ref r)) if r.contains("untrusted root")),
            "{err:?}"
        );
        // A user certificate is not a node certificate.
        let user = user_cert(&key(1), &key(21), "princeton.mallory", "princeton.*").unwrap();
        assert!(
            n.advert(
                NOW,
                key(21).public(),
                &Credential::new(user, []).to_bytes().unwrap(),
                sent(NOW)
            )
            .is_err()
        );
        // Silence makes a member leave.
        assert_eq!(
            n.tick(NOW + MEMBER_TIMEOUT_MS + 1),
            vec![Output::Left(key(20).public())]
        );
        assert!(n.members().is_empty());
    }

    fn node_credential(n: u8, validity: Validity) -> Vec<u8> {
        let cert = objects::sign(
            &key(1),
            &NodeCert {
                subject: key(n).public(),
                name: name(&format!("princeton.node{n}")),
                validity,
            },
        )
        .unwrap()
        .bytes;
        Credential::new(cert, []).to_bytes().unwrap()
    }

    #[test]
    fn a_repeated_advert_is_not_judged_again_but_expiry_and_revocation_still_count() {
        let mut n = node(10);
        let short = Validity::starting(T0 - DAY, DAY + 100);
        let cred = node_credential(20, short);
        n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
        // Within validity: accepted, last-seen moves, no output.
        let later = NOW + 10_000;
        assert!(
            n.advert(later, key(20).public(), &cred, sent(later))
                .unwrap()
                .is_empty()
        );
        assert_eq!(n.members()[&key(20).public()].last_seen_ms, later);
        // Past the certificate's end (and the skew), the same bytes are judged again and
        // refused.
        let expired = (T0 + 100 + 61) * 1000 + 1;
        assert!(
            n.advert(expired, key(20).public(), &cred, sent(expired))
                .is_err()
        );
        // A revocation of the certificate is honoured on the next advert.
        let mut n = node(10);
        let cred = node_credential(21, Validity::starting(T0 - DAY, 30 * DAY));
        n.advert(NOW, key(21).public(), &cred, sent(NOW)).unwrap();
        let leaf = Credential::from_bytes(&cred).unwrap().leaf().to_vec();
        let rev = revocation_of(1, &leaf, "decommissioned");
        n.revocation(NOW, &rev).unwrap();
        let err = n.advert(NOW + 1, key(21).public(), &cred, sent(NOW + 1));
        assert!(
            matches!(err, Err(CoreError::NotMember(ref r)) if r.contains("revoked")),
            "{err:?}"
        );
    }

    #[test]
    fn a_replayed_or_stale_advert_does_not_keep_a_member_listed() {
        let mut n = node(10);
        let cred = node_credential(20, Validity::starting(T0 - DAY, 30 * DAY));
        n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
        // The same advert heard again later (a replay) moves nothing.
        let replay = n.advert(NOW + 20_000, key(20).public(), &cred, sent(NOW));
        assert!(
            matches!(replay, Err(CoreError::StaleAdvert(_))),
            "{replay:?}"
        );
        assert_eq!(n.members()[&key(20).public()].last_seen_ms, NOW);
        // An advert made long ago, or in the future, is not taken either.
        let old = n.advert(NOW + 200_000, key(20).public(), &cred, sent(NOW + 1_000));
        assert!(matches!(old, Err(CoreError::StaleAdvert(_))), "{old:?}");
        let future = n.advert(NOW, key(20).public(), &cred, sent(NOW + 120_000));
        assert!(
            matches!(future, Err(CoreError::StaleAdvert(_))),
            "{future:?}"
        );
        // So a dead member leaves on time though its adverts are replayed.
        let out = n.tick(NOW + MEMBER_TIMEOUT_MS + 1);
        assert_eq!(out, vec![Output::Left(key(20).public())]);
    }

    #[test]
    fn members_leave_in_order_of_silence_and_the_interval_grows_with_the_federation() {
        let mut n = node(10);
        n.set_advert_timing(1_000, 2);
        let long = Validity::starting(T0 - DAY, 30 * DAY);
        for (i, k) in [20u8, 21, 22].into_iter().enumerate() {
            let cred = node_credential(k, long);
            n.advert(
                NOW + i as u64 * 10_000,
                key(k).public(),
                &cred,
                sent(NOW + i as u64 * 10_000),
            )
            .unwrap();
        }
        // 4 nodes at 2 adverts/s heard: one advert every 2 s each; timeout stays 30 s.
        assert_eq!(n.advert_interval_ms(), 2_000);
        assert_eq!(n.member_timeout_ms(), MEMBER_TIMEOUT_MS);
        let out = n.tick(NOW + 10_000 + MEMBER_TIMEOUT_MS + 1);
        assert_eq!(
            out,
            vec![
                Output::Left(key(20).public()),
                Output::Left(key(21).public())
            ]
        );
        assert_eq!(n.members().len(), 1);
        // A thousand members at 2 adverts/s: every 500 s, silence tolerated for three.
        let mut big = node(11);
        big.set_advert_timing(5_000, 2);
        for i in 0..999u32 {
            let k = SecretKey::from_seed(&{
                let mut s = [7u8; 32];
                s[..4].copy_from_slice(&i.to_le_bytes());
                s
            });
            big.members.insert(
                k.public(),
                Member {
                    name: name("princeton.x"),
                    authority: name("princeton"),
                    last_seen_ms: NOW,
                    last_sent_ms: NOW,
                    load: Load::default(),
                    credential: Arc::from(Vec::new()),
                    valid_until: 0,
                    chain: vec![],
                    revocations_asked_ms: None,
                },
            );
        }
        assert_eq!(big.advert_interval_ms(), 500_000);
        assert_eq!(big.member_timeout_ms(), 1_500_000);
    }

    #[test]
    fn a_node_that_missed_revocations_asks_a_member_that_has_them_and_catches_up() {
        let long = Validity::starting(T0 - DAY, 30 * DAY);
        let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
        let rev = revocation_of(1, &user, "left the lab");
        // `a` honoured the revocation; `b` was away and runs alice's sliver.
        let mut a = node(20);
        a.revocation(NOW, &rev).unwrap();
        let mut b = node(21);
        sub(&mut b, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        assert_ne!(a.revocation_digest(), b.revocation_digest());
        // a's advert shows another revocation set: b asks it, once per sync interval.
        let cred = node_credential(20, long);
        let out = b
            .advert(
                NOW,
                key(20).public(),
                &cred,
                Load {
                    sent_ms: NOW,
                    ..a.load()
                },
            )
            .unwrap();
        assert!(out.contains(&Output::FetchRevocations(key(20).public())));
        let again = b
            .advert(
                NOW + 1_000,
                key(20).public(),
                &cred,
                Load {
                    sent_ms: NOW + 1_000,
                    ..a.load()
                },
            )
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
        // The answer is a's page; b honours it (stops the sliver). b was down when it was
        // issued (up since an hour later), so its neighbours heard it: not gossiped on.
        let page = a.revocations_after(None, MAX_REVOCATIONS_PER_PAGE);
        assert_eq!(page, vec![rev.clone()]);
        let out = b
            .caught_up_revocation(NOW + 2_000, &page[0], NOW + 3_600_000)
            .unwrap();
        assert!(out.contains(&Output::Stop {
            id: 1,
            reason: StopReason::Revoked
        }));
        assert!(
            !out.iter().any(|o| matches!(o, Output::GossipRevocation(_))),
            "{out:?}"
        );
        // A node that was up when it was issued missed it through the network (a
        // partition): its neighbours may have too, so it passes it on.
        let mut d = node(22);
        let out = d
            .caught_up_revocation(NOW + 2_000, &page[0], NOW - 3_600_000)
            .unwrap();
        assert!(
            out.contains(&Output::GossipRevocation(rev.clone())),
            "{out:?}"
        );
        assert_eq!(a.revocation_digest(), b.revocation_digest());
        // Equal digests: nothing more to ask.
        let out = b
            .advert(
                NOW + 40_000,
                key(20).public(),
                &cred,
                Load {
                    sent_ms: NOW + 40_000,
                    ..a.load()
                },
            )
            .unwrap();
        assert!(out.is_empty(), "{out:?}");
        // A restarted node re-reads what it had honoured from its own log, before it
        // restores slivers; the ticket chain then fails.
        let mut c = node(21);
        c.remember_revocation(NOW, &rev).unwrap();
        assert_eq!(c.revocation_digest(), a.revocation_digest());
        let t = ticket(ticket_body("princeton.codeen", 1));
        let err = c.restore(NOW, 1, &t, &Invocation::default()).unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        // The digest does not depend on arrival order.
        let bob = user_cert(&key(1), &key(4), "princeton.bob", "princeton.*").unwrap();
        let rev2 = revocation_of(1, &bob, "other");
        let (mut x, mut y) = (node(30), node(31));
        x.revocation(NOW, &rev).unwrap();
        x.revocation(NOW, &rev2).unwrap();
        y.revocation(NOW, &rev2).unwrap();
        y.revocation(NOW, &rev).unwrap();
        assert_eq!(x.revocation_digest(), y.revocation_digest());
        assert_eq!(x.revocation_digest().count, 2);
    }

    #[test]
    fn the_owner_stays_in_control() {
        let mut n = node(10);
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        let out = n.owner_stop(1, "abuse report").unwrap();
        assert!(
            matches!(&out[0], Output::Append(EntryBody::OwnerAction { action, .. }) if action.contains("abuse report"))
        );
        assert_eq!(
            out[1],
            Output::Stop {
                id: 1,
                reason: StopReason::Owner
            }
        );
        assert_eq!(n.owner_stop(9, "x"), Err(CoreError::NoSuchSliver(9)));
    }

    #[test]
    fn the_module_must_be_the_one_the_ticket_names() {
        let mut n = node(10);
        let r = receipt(&n.submit(
            NOW,
            &ticket(ticket_body("princeton.codeen", 1)),
            ModuleHash::of(b"something else"),
            &Invocation::default(),
        ));
        assert!(r.reason.contains("the ticket names"), "{}", r.reason);
        assert_eq!(n.load().slivers, 0);
    }

    #[test]
    fn the_arguments_must_be_the_ones_the_ticket_signs() {
        let mut n = node(10);
        let mut body = ticket_body("princeton.codeen", 1);
        let asked = Invocation::new(
            vec!["example.org:80".into()],
            vec![("MODE".into(), "probe".into())],
        );
        body.invocation = asked.hash();
        let t = ticket(body.clone());
        // A holder of the ticket (the node owner who received it, say) changes an argument.
        let changed = Invocation::new(vec!["victim.example:22".into()], asked.env.clone());
        let r = receipt(&n.submit(NOW, &t, body.module, &changed));
        assert!(!r.admitted);
        assert!(
            r.reason.contains("not the ones the ticket signs"),
            "{}",
            r.reason
        );
        // Or the environment.
        let env = Invocation::new(asked.args.clone(), vec![]);
        assert!(!receipt(&n.submit(NOW, &t, body.module, &env)).admitted);
        // What the researcher signed runs, and is recorded with the sliver.
        let out = n.submit(NOW, &t, body.module, &asked);
        assert!(receipt(&out).admitted);
        assert!(out.iter().any(|o| matches!(o,
            Output::Append(EntryBody::SliverCreated { invocation, .. }) if *invocation == asked)));
    }

    #[test]
    fn a_sliver_that_cannot_start_is_refused_with_the_reason_and_logged() {
        let mut n = node(10);
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        let out = n.start_failed(NOW, 1, "not a component");
        assert!(
            matches!(&out[0], Output::Append(EntryBody::SliverStopped { reason, .. }) if reason.contains("not a component"))
        );
        let r = receipt(&out);
        assert!(!r.admitted && r.reason.contains("not a component"));
        assert_eq!(n.load().slivers, 0);
    }

    #[test]
    fn a_restart_restores_valid_slivers_under_their_ids_and_drops_expired_ones() {
        let mut n = node(10);
        let t = ticket(ticket_body("princeton.codeen", 1));
        sub(&mut n, NOW, &t);
        // A fresh core (the node restarted) long after the replay window.
        let mut again = node(10);
        again.continue_ids_from(50);
        let out = again
            .restore(NOW + 3_600_000, 1, &t, &Invocation::default())
            .unwrap();
        assert!(matches!(&out[0], Output::Start(p) if p.id == 1));
        assert!(
            matches!(&out[2], Output::Append(EntryBody::SliverCreated { who, .. }) if who.sliver == 1)
        );
        // New slivers take ids after the restored ones and the given floor.
        let out = sub(&mut again, NOW, &ticket(ticket_body("princeton.codeen", 2)));
        let id = out
            .iter()
            .find_map(|o| match o {
                Output::Start(p) => Some(p.id),
                _ => None,
            })
            .unwrap();
        assert_eq!(id, 50);
        // Past its validity, it does not come back.
        let mut late = node(10);
        let err = late
            .restore(NOW + 3 * DAY * 1000, 1, &t, &Invocation::default())
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn reasons_keep_every_byte_that_fits() {
        assert_eq!(within_bytes("abc", 2), "ab");
        assert_eq!(
            within_bytes("aé", 2),
            "a",
            "é is two bytes and does not fit"
        );
        assert_eq!(within_bytes("aé", 3), "aé");
        assert_eq!(within_bytes(&"x".repeat(600), 512).len(), 512);
    }

    #[test]
    fn only_the_holder_renews_or_deletes_and_renewal_extends_life() {
        let mut n = node(10);
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
        let before = n.slivers().next().unwrap().not_after;
        // A renewal: the same holder, the same slice, later validity.
        let mut b = ticket_body("princeton.codeen", 2);
        b.validity = Validity::starting(T0, 5 * DAY);
        let out = n.renew(NOW, &ticket(b));
        assert!(receipt(&out).admitted, "{}", receipt(&out).reason);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Append(EntryBody::SliverRenewed { .. })))
        );
        assert!(n.slivers().next().unwrap().not_after > before);
        assert!(
            n.tick(NOW + 2 * DAY * 1000).is_empty(),
            "renewed: not expired"
        );
        // A renewal for a slice with nothing here is refused with the reason.
        let r = receipt(&n.renew(NOW, &ticket(ticket_body("princeton.other", 3))));
        assert!(r.reason.contains("no sliver of slice"), "{}", r.reason);

        // Delete: someone else's signature stops nothing; the holder's stops the slice.
        let stranger =
            crate::wire::HolderRequest::sign(&key(7), key(10).public(), "princeton.codeen", T0)
                .unwrap();
        assert!(n.delete(NOW, &stranger).unwrap().is_empty());
        let holder =
            crate::wire::HolderRequest::sign(&key(3), key(10).public(), "princeton.codeen", T0)
                .unwrap();
        assert_eq!(
            n.delete(NOW, &holder).unwrap(),
            vec![Output::Stop {
                id: 1,
                reason: StopReason::Deleted
            }]
        );
        // The sandbox reports the stop, as the driver does; the sliver is gone.
        n.ended(1, "stopped", Usage::default());
        // The owner (the node's own key) stops anyone's slice, and it is said to be the owner.
        sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 4)));
        let owner =
            crate::wire::HolderRequest::sign(&key(10), key(10).public(), "princeton.codeen", T0)
                .unwrap();
        let out = n.delete(NOW, &owner).unwrap();
        assert!(
            matches!(
                &out[..],
                [Output::Stop {
                    reason: StopReason::Owner,
                    ..
                }]
            ),
            "{out:?}"
        );
        // One addressed to another node is an error.
        let elsewhere =
            crate::wire::HolderRequest::sign(&key(3), key(11).public(), "princeton.codeen", T0)
                .unwrap();
        assert!(n.delete(NOW, &elsewhere).is_err());
    }
}
