//! The node: one sans-IO machine that holds a node's whole protocol, driven by the daemon
//! (`slicefed-peer`) over libp2p, the disk and the sandbox, and by the simulator over a
//! modelled network and a clock. It composes [`NodeCore`] (membership, admission,
//! revocation, expiry), [`Witnessing`] (checkpoints, cosignatures, replicas, hand-over),
//! revocation catch-ups, the restore policy after a restart, and the rule that nothing is
//! acknowledged before the ledger entry it depends on is durable.
//!
//! A router feeds [`Input`]s to [`Node::handle`] and carries out the [`Effect`]s it returns,
//! in order. It decides nothing: who is entitled to what, what is logged, what waits for
//! what, when checkpoints, adverts and hand-overs go out, and when saved slivers come back
//! are all decided here, once.
//!
//! Invariants:
//! - No IO and no clock: every input comes with `now_ms`; effects are returned.
//! - Acknowledge only what is durable: a reply, a sliver start or a file removal that
//!   depends on ledger entries is held until the router reports every one of them written
//!   ([`Input::Written`]); a failed write ([`Input::WriteFailed`]) puts the node in its
//!   fail-closed state and turns what waited into a refusal saying why.
//! - Saved slivers come back only after the node has caught up on revocations with
//!   [`RESTORE_QUORUM`] members (or every member it knows, if fewer), and only those its own
//!   log records as created with that ticket and those arguments and not stopped.
//! - Everything held is bounded: requests in flight by [`MAX_ASKED`], held effects by
//!   [`MAX_HELD`], saved slivers waiting by [`MAX_SAVED`], ended slivers remembered by
//!   [`MAX_ENDED`], plus the bounds of [`NodeCore`] and [`Witnessing`].

use crate::core::{
    CoreError, Load, MAX_REVOCATIONS_PER_PAGE, NodeCore, Output, SliverPlan, StopReason,
    next_revocation_page,
};
use crate::wire::{AdminRequest, Advert, AdvertBody, Cosigned, Request, Response};
use crate::witnessing::{Effect as WitnessEffect, Witnessing};
use slicefed_ledger::checkpoint::{EquivocationProof, SignedCheckpoint};
use slicefed_ledger::entry::{EntryBody, Usage};
use slicefed_trust::{CertId, Credential, Invocation, InvocationHash, ModuleHash, PublicKey};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Requests this node has sent and not had answered, at most (fetches and catch-ups; a
/// new one past it is not sent).
pub const MAX_ASKED: usize = 4096;
/// Effects waiting for ledger writes, at most (a request past it is answered "busy").
pub const MAX_HELD: usize = 4096;
/// Saved slivers waiting to be restored, at most.
pub const MAX_SAVED: usize = 65_536;
/// Ended slivers whose holders are remembered (they may still read their output).
pub const MAX_ENDED: usize = 256;
/// Slivers whose end waits for the ledger to work again, at most.
pub const MAX_ENDED_WAITING: usize = 65_536;
/// Members a restarted node must have caught up with before its saved slivers come back
/// (one member may be as far behind as the node itself: the simulator caught a revoked
/// sliver restored after a single catch-up).
pub const RESTORE_QUORUM: usize = 3;
/// Ticks a restarted node listens, from the first member it lists, before fewer answers
/// than [`RESTORE_QUORUM`] release its restore: as many as the members it knew before it
/// went down (adverts and members' greetings arrive over a tick or two).
pub const RESTORE_LISTEN_TICKS: u64 = 3;
/// Ticks after which a restarted node settles for the members it lists now, when fewer
/// than it knew before answer (some of those died meanwhile). Counted from its first
/// member for a node that knew members; a node that knew none and hears none concludes it
/// is alone after as long from its start. A node that knew members and hears none never
/// restores: it is out of touch, not alone, and what it missed may end its slivers (a
/// node under load once restored a revoked sliver after 12 s of hearing no one).
pub const RESTORE_ALONE_TICKS: u64 = 12;
/// About this many members greet a node whose first advert after a start they hear (each
/// with probability `GREETERS / members`, decided by both keys): its SWIM packets make the
/// new node ask for their credentials, so it knows members in seconds, not at their next
/// adverts, and a federation of thousands does not greet it thousands of times.
pub const GREETERS: u64 = 8;

/// Names a request the router holds open until the machine answers it.
pub type ReplyId = u64;
/// Names a request this node sent (its answer comes back with it).
pub type Token = u64;
/// Names one ledger or replica write.
pub type WriteId = u64;

/// The node's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Witnesses per log.
    pub witnesses: usize,
    /// The router's tick ([`Input::Tick`] comes this often); periods count in it.
    pub tick_ms: u64,
    /// A grown log's checkpoint goes to its witnesses at most every this many ticks.
    pub checkpoint_every_ticks: u64,
    /// Whether saved slivers come back after a restart (`node run --no-restore`).
    pub restore: bool,
}

impl Settings {
    /// Defaults for a node ticking every `tick_ms`: three witnesses, a checkpoint every tick
    /// while the log grows, saved slivers restored.
    pub fn new(tick_ms: u64) -> Settings {
        Settings {
            witnesses: 3,
            tick_ms: tick_ms.max(1),
            checkpoint_every_ticks: 1,
            restore: true,
        }
    }
}

/// The gossip topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Members' adverts.
    Advert,
    /// Revocations.
    Revocation,
    /// Equivocation proofs.
    Equivocation,
}

/// What to tell the gossip layer about a message (whether to pass it on and whom to
/// penalise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: pass it on.
    Accept,
    /// Not passed on, nobody penalised (late, replayed, about a log nobody knows).
    Ignore,
    /// Invalid: dropped, its source penalised.
    Reject(GossipRefused),
}

/// Why a gossip message was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GossipRefused {
    /// Bytes that do not decode or verify.
    #[error("not a valid {0}: {1}")]
    Invalid(&'static str, String),
    /// An advert published by another than the node it names.
    #[error("an advert relayed as its own by another node")]
    NotItsOwn,
    /// Only members speak on this topic.
    #[error("{0} from a node that is not a member")]
    NotMember(&'static str),
    /// The core refused it.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A sliver saved on disk before a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// Its id.
    pub id: u64,
    /// Its ticket (the latest renewal's).
    pub credential: Vec<u8>,
    /// Its arguments and environment.
    pub invocation: Invocation,
}

/// Where a [`Effect::Start`]'s module and invocation are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The submission the router holds for this request.
    Submission(ReplyId),
    /// The sliver's saved files.
    Saved,
}

/// An answer the router reads from what it holds (the log, replica files, sandbox handles),
/// once the machine has decided the asker is entitled to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The member list ([`Response::Members`]).
    Members,
    /// Slivers here ([`Response::Status`]).
    Status {
        /// Only this slice.
        slice: Option<String>,
    },
    /// Output of the slice's slivers ([`Response::Logs`]) that `reader` may see.
    Logs {
        /// The slice.
        slice: String,
        /// Who asks (the signer, already checked).
        reader: PublicKey,
    },
    /// A page of this node's log ([`Response::Page`]).
    Entries {
        /// First entry.
        from: u64,
    },
    /// The latest checkpoint and its cosignatures ([`Response::Checkpoint`]).
    Checkpoint,
    /// Part of a replica file ([`Response::Replica`]).
    Replica {
        /// Whose log.
        origin: PublicKey,
        /// Byte offset.
        offset: u64,
    },
    /// Leaves of a replica ([`Response::ReplicaPage`]).
    ReplicaEntries {
        /// Whose log.
        origin: PublicKey,
        /// First entry.
        from: u64,
    },
    /// This node's own credential ([`Response::Credential`]).
    Credential,
    /// These members' credentials, with the addresses the router holds for each
    /// ([`Response::MemberCredentials`]).
    MemberCredentials(Vec<(PublicKey, Arc<[u8]>)>),
    /// Members and recently departed members that listen(ed) on `ip`
    /// ([`Response::Members`]).
    AddressHolders {
        /// The address.
        ip: std::net::IpAddr,
    },
}

/// Everything that happens to a node.
#[derive(Clone, Debug)]
pub enum Input {
    /// The node (re)started: its saved slivers, what its own log records of them (each id's
    /// ticket and invocation, for slivers created and not stopped), and when it started.
    Restart {
        /// Saved slivers found on disk.
        saved: Vec<Saved>,
        /// The log's record.
        logged: BTreeMap<u64, (CertId, InvocationHash)>,
    },
    /// The time [`Effect::WakeAt`] asked for came (SWIM's timers, the next
    /// reconciliation): between ticks, which may be seconds apart.
    Wake,
    /// The transport connected to `peer` (its key proven by the connection).
    Connected {
        /// Who.
        peer: PublicKey,
    },
    /// Time passes. `log_size`: how many entries of this node's log are durable.
    Tick {
        /// The durable size.
        log_size: u64,
    },
    /// This node's checkpoint of everything durable, signed because
    /// [`Effect::SignCheckpoint`] asked for it.
    Checkpoint {
        /// The checkpoint.
        checkpoint: SignedCheckpoint,
    },
    /// A request from a peer. `from` is the node key its transport proved, if it is one.
    /// (A `Submit` comes as [`Input::Submit`] once the router has hashed its module.)
    Request {
        /// Names the open request.
        reply: ReplyId,
        /// Who asks.
        from: Option<PublicKey>,
        /// What.
        request: Request,
    },
    /// A submitted ticket and the hash of the module sent with it.
    Submit {
        /// Names the open request.
        reply: ReplyId,
        /// The ticket credential.
        credential: Vec<u8>,
        /// The module's hash.
        module: ModuleHash,
        /// Its arguments and environment.
        invocation: Invocation,
    },
    /// The owner asks over the admin socket.
    Owner {
        /// Names the open request.
        reply: ReplyId,
        /// What.
        request: AdminRequest,
    },
    /// The answer to a request this node sent.
    Answer {
        /// Which request.
        token: Token,
        /// The answer.
        response: Response,
    },
    /// [`Input::Answer`] with a [`Response::Credential`] whose bytes the caller holds in
    /// shared memory (the simulator: a thousand nodes need not keep a thousand copies of
    /// each credential). The same decision as the answer's.
    CredentialAnswer {
        /// Which request.
        token: Token,
        /// The credential.
        credential: Arc<[u8]>,
    },
    /// A request this node sent got no usable answer (timeout, refused, undecodable).
    NoAnswer {
        /// Which request.
        token: Token,
    },
    /// A gossip message (`source`: the node that published it, as the transport says).
    Gossip {
        /// Names the message (its verdict comes back with it).
        id: u64,
        /// Its publisher.
        source: Option<PublicKey>,
        /// Its topic.
        topic: Topic,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A write is durable.
    Written {
        /// Which.
        write: WriteId,
    },
    /// A write failed.
    WriteFailed {
        /// Which.
        write: WriteId,
        /// Why.
        why: String,
    },
    /// The ledger failed outside a write of this machine (a flow record could not be
    /// written).
    LedgerFailed {
        /// Why.
        why: String,
    },
    /// The ledger writes again.
    LedgerRecovered,
    /// A sliver from [`Effect::Start`] runs.
    Started {
        /// Which.
        id: u64,
    },
    /// A sliver from [`Effect::Start`] could not start.
    StartFailed {
        /// Which.
        id: u64,
        /// Why.
        why: String,
    },
    /// A running sliver ended (stopped, exited, killed) and its flows are all written.
    Ended {
        /// Which.
        id: u64,
        /// How, as the ledger should say it.
        outcome: String,
        /// What it used.
        usage: Usage,
    },
}

/// What the router must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `request` to member `to`; its answer comes back as [`Input::Answer`] with
    /// `token` (a `None` token: the answer is not needed).
    Send {
        /// The member.
        to: PublicKey,
        /// Names the request.
        token: Option<Token>,
        /// The request.
        request: Request,
    },
    /// Answer an open request.
    Reply {
        /// Which.
        to: ReplyId,
        /// The answer.
        response: Response,
    },
    /// Answer an open request from what the router holds.
    Read {
        /// Which.
        to: ReplyId,
        /// What to read.
        read: Read,
    },
    /// Publish on a gossip topic.
    Publish {
        /// The topic.
        topic: Topic,
        /// The bytes.
        data: Vec<u8>,
    },
    /// What to do with a gossip message.
    Verdict {
        /// Which ([`Input::Gossip`]'s id).
        id: u64,
        /// The verdict.
        verdict: Verdict,
    },
    /// Sign a checkpoint of everything durable in this node's log and hand it back as
    /// [`Input::Checkpoint`].
    SignCheckpoint,
    /// Advertise this node now (its load as the core sees it; the router adds what only
    /// it knows: addresses, uptime, traffic).
    Advertise(Load),
    /// Give this machine [`Input::Wake`] at this time (ms), replacing any earlier ask.
    WakeAt(u64),
    /// Append to the node's ledger and report [`Input::Written`] or [`Input::WriteFailed`].
    Append {
        /// Names the write.
        write: WriteId,
        /// The entry.
        body: EntryBody,
    },
    /// Append verified leaves of `origin`'s log, and the checkpoint covering them, to its
    /// replica file, and report like an append.
    Persist {
        /// Names the write.
        write: WriteId,
        /// Whose log.
        origin: PublicKey,
        /// Leaf bytes, in order.
        leaves: Vec<Vec<u8>>,
        /// The origin's checkpoint at the end.
        checkpoint: SignedCheckpoint,
    },
    /// Start an admitted sliver (its creation is durable) and report [`Input::Started`] or
    /// [`Input::StartFailed`].
    Start {
        /// What to run.
        plan: SliverPlan,
        /// Where its module and invocation are.
        from: StartFrom,
    },
    /// Stop a running sliver; its end comes back as [`Input::Ended`].
    Stop {
        /// Which.
        id: u64,
        /// Why.
        reason: StopReason,
    },
    /// Save a sliver's files (before it starts, so a crash after brings it back).
    Save {
        /// Which sliver.
        id: u64,
        /// The submission holding its module and invocation.
        from: ReplyId,
        /// Its ticket.
        credential: Vec<u8>,
    },
    /// A renewal: the saved sliver takes this ticket.
    Resave {
        /// Which.
        id: u64,
        /// The new ticket.
        credential: Vec<u8>,
    },
    /// A sliver is gone for good (its end is durable): remove its saved files.
    Forget {
        /// Which.
        id: u64,
    },
    /// A witness cosigned one of this node's checkpoints: keep it for auditors.
    KeepCosignature(Cosigned),
    /// A member's advertised addresses (to dial it).
    Addresses {
        /// The member.
        node: PublicKey,
        /// Its addresses, as it wrote them.
        addrs: Vec<String>,
    },
    /// A peer became a member.
    Joined(PublicKey),
    /// A node that is not a member will not be asked for its credential for `for_ms`, and
    /// why: the router may tell the owner (the daemon logs it, rate-limited, since
    /// strangers choose how often it happens).
    HeldOff {
        /// The node.
        node: PublicKey,
        /// Why.
        reason: HoldOffReason,
        /// For how long, ms.
        for_ms: u64,
    },
    /// A member left.
    Left(PublicKey),
}

/// What a request this node sent was for.
#[derive(Clone, Debug)]
enum Asked {
    Fetch {
        origin: PublicKey,
        holder: Option<PublicKey>,
    },
    /// A catch-up page: of whom, after which id, the how-many-th.
    Revocations {
        member: PublicKey,
        after: Option<CertId>,
        pages: u32,
        /// The id ranges being reconciled (empty: all).
        buckets: Vec<u8>,
        /// Whether an earlier page of this chain brought something this node now holds.
        brought: bool,
    },
    /// A member's range fingerprints, to reconcile revocations and deletes with it.
    Prints { member: PublicKey },
    /// The credential an advert named by hash (or a SWIM sender's): judged when it comes.
    Credential {
        node: PublicKey,
        advert: Option<Box<AdvertBody>>,
    },
    /// A page of a member's member list (see `members.rs`).
    MemberList { member: PublicKey },
    /// Credentials of nodes learnt of, from the member that named them.
    MemberCredentials {
        via: PublicKey,
        nodes: Vec<PublicKey>,
    },
}

/// Effects waiting for writes.
struct Held {
    waiting: usize,
    then: Vec<Effect>,
    on_failure: OnFailure,
}

/// What a failed write turns held effects into.
enum OnFailure {
    /// Answer with an error saying what could not be recorded.
    Refuse { reply: ReplyId, what: &'static str },
    /// An admitted sliver's creation: it never starts; its submitter (if any) gets a
    /// refusal; a restored one waits on disk for the ledger to work.
    Created { id: u64, saved: Option<Saved> },
    /// What waited is carried out anyway (it claims nothing the failed entry recorded).
    Release,
    /// What waited is dropped.
    Drop,
    /// A replica write of `origin`'s entries up to `size`: once durable, checkpoints that
    /// waited for it are cosigned; on failure what waited (cosignatures of what it held) is
    /// dropped, nothing past the disk is ever cosigned, and the node keeps taking tickets
    /// (its own log is not at stake).
    Replica { origin: PublicKey, size: u64 },
}

/// An admitted sliver not running yet.
struct Starting {
    reply: Option<ReplyId>,
    receipt: Option<Vec<u8>>,
    /// A stop that came meanwhile.
    stop: Option<StopReason>,
    /// Whether its `Start` went out (its creation is durable): a router's report about a
    /// sliver still waiting for the ledger is not believed.
    released: bool,
}

/// A restart's catch-up so far ([`Node::restore_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Saved slivers waiting for it.
    pub waiting: usize,
    /// Members asked and not answered yet.
    pub asked: usize,
    /// Members caught up with.
    pub caught_up: usize,
    /// Members that did not answer, or answered with an error, lately.
    pub declined: usize,
    /// Members listed.
    pub members: usize,
}

/// A restarted node's saved slivers, waiting for its catch-up.
struct Restoring {
    saved: Vec<Saved>,
    logged: BTreeMap<u64, (CertId, InvocationHash)>,
    since_ms: u64,
    /// Members this node knew before it went down (credentials kept on its disk): it
    /// expects to hear from as many, up to [`RESTORE_QUORUM`], and asks them first (at
    /// most [`crate::core::MAX_MEMBERS`]).
    knew: BTreeSet<PublicKey>,
    /// Members whose whole set (settled or not) this node has reconciled with.
    caught_up: BTreeSet<PublicKey>,
    /// Members asked to reconcile (at most [`RESTORE_ASKED`]).
    asked: BTreeSet<PublicKey>,
    /// What the last search for members to ask saw (members listed, members asked, the
    /// tick): searched again only when one changed (`restore_asks` runs after every
    /// input, and a search walks every member).
    searched: Option<(usize, usize, u64)>,
    /// Members that did not answer or answered with an error, and when: not asked again
    /// for a tick (at most the members).
    declined: BTreeMap<PublicKey, u64>,
}

/// A node's first adverts after it starts carry its credential and go an advert interval
/// apart (the first is often published before the overlay has formed around it); later
/// ones name it by hash and go only when something changed.
pub const FULL_ADVERTS: u32 = 3;

/// A node whose credential was refused (or not given) is not asked again for this long.
pub const CREDENTIAL_RETRY_MS: u64 = 600_000;

/// A node known only from its SWIM packets whose credential ask got no answer at all (the
/// connection it rode closed, a dial failed, a timeout) is asked again after this long,
/// doubling with each unanswered ask up to [`CREDENTIAL_RETRY_MS`]. A transport failure is
/// not a refusal: under load a newcomer's first connection can drop, and holding it off
/// for ten minutes left it unlisted (a CI run's four-node federation did not form in
/// 60 s). A Sybil that never answers still costs at most one ask per back-off.
pub const CREDENTIAL_UNANSWERED_RETRY_MS: u64 = 5_000;

/// Why a node that is not a member is not asked for its credential for a while
/// ([`Effect::HeldOff`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOffReason {
    /// It gave a credential that was refused, or an answer that was no credential:
    /// [`CREDENTIAL_RETRY_MS`].
    Refused,
    /// Its credential ask got no answer (a closed connection, a failed dial, a timeout):
    /// [`CREDENTIAL_UNANSWERED_RETRY_MS`], doubling with each such ask.
    Unanswered,
    /// It answered with an error ("busy": over its request quota): as unanswered.
    Busy,
}

impl HoldOffReason {
    /// A few words for a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldOffReason::Refused => "it gave no valid credential",
            HoldOffReason::Unanswered => "it did not answer",
            HoldOffReason::Busy => "it answered with an error",
        }
    }
}

/// Why, and until when, a node's credential is not asked for.
#[derive(Clone, Copy, Debug)]
struct HeldOff {
    /// Not asked before this time.
    until_ms: u64,
    /// Asks that got no answer since the node was last admitted; the next wait doubles
    /// with it.
    unanswered: u32,
}

/// Members a restarting node reconciles with at once before it restores.
const RESTORE_ASKED: usize = 2 * RESTORE_QUORUM;
/// Least time between two reconciliations a node out of touch starts as connections to
/// members come back (a healed partition reconnects to many at once).
const RETURN_RECONCILE_GAP_MS: u64 = 1_000;
/// How long a reconciliation started by unheard revocation gossip may run before another
/// such gossip starts a new one anyway (a page chain takes round trips of a fraction of a
/// second; one still running after this is stuck on a member that does not answer).
const UNHEARD_CHAIN_MS: u64 = 3_000;
/// Asks after revocation gossip from a publisher this node does not list, beyond the
/// first, while the members asked hold nothing new (the gossip had not reached them yet):
/// one a second at most, within the same budget as the first.
const UNHEARD_RETRIES: u8 = 3;

/// Whether `now` says something `prev` did not, enough to advertise again: health, SWIM
/// identity, a quarter more or fewer slivers (at least one), or a tenth of the memory.
fn load_changed(prev: &Load, now: &Load, memory: u64) -> bool {
    let slivers = prev.slivers.abs_diff(now.slivers);
    prev.unhealthy != now.unhealthy
        || prev.swim_bump != now.swim_bump
        || slivers >= (prev.slivers / 4).max(1)
        || prev.free_memory.abs_diff(now.free_memory) >= memory / 10
}

/// The machine.
pub struct Node {
    core: NodeCore,
    witnessing: Witnessing,
    settings: Settings,
    up_since_ms: u64,
    asked: BTreeMap<Token, Asked>,
    next_token: Token,
    held: BTreeMap<u64, Held>,
    next_hold: u64,
    writes: BTreeMap<WriteId, u64>,
    next_write: WriteId,
    starting: BTreeMap<u64, Starting>,
    restoring: Option<Restoring>,
    ended_holders: VecDeque<(String, Vec<PublicKey>)>,
    ended_waiting: VecDeque<(u64, String, Usage)>,
    last_advert_ms: Option<u64>,
    /// What the last advert said, and how many were sent since the start.
    advertised: Option<Load>,
    adverts_sent: u32,
    /// Liveness of members (SWIM).
    swim: crate::swim::Swim,
    /// Senders of SWIM packets that are not members yet, with the bump they named, while
    /// their credential is asked for (bounded by the requests in flight).
    swim_unknown: BTreeMap<PublicKey, u64>,
    /// Nodes whose credential was refused, not given or not answered, and until when they
    /// are not asked again (bounded by [`MAX_ASKED`]).
    credential_hold_offs: BTreeMap<PublicKey, HeldOff>,
    /// The time of the input being handled.
    now_ms: u64,
    /// The wake last asked of the router.
    wake_asked: Option<u64>,
    /// When the last periodic reconciliation was asked, and of whom.
    last_reconcile_ms: Option<u64>,
    reconcile_after: Option<PublicKey>,
    /// When a member last answered a reconciliation (equal sets or fingerprints): a node
    /// that heard no answer for two periods was out of touch (a partition, an outage).
    last_caught_up_ms: Option<u64>,
    /// When a reconnection last started a reconciliation (apart from the periodic turn,
    /// which a member reconnecting again and again must not hold up).
    last_return_ask_ms: Option<u64>,
    /// When revocation gossip from a publisher this node does not list last started a
    /// reconciliation (see `reconcile_on_unheard_revocation`), and with whom.
    last_unheard_ask_ms: Option<u64>,
    unheard_asked: Option<PublicKey>,
    /// Asks still to make for the last unheard revocation gossip, and when the next is
    /// due (see [`UNHEARD_RETRIES`]).
    unheard_retries: u8,
    unheard_retry_at: Option<u64>,
    /// Nodes learnt of and not listed yet, and the member list being pulled.
    learning: members::Learning,
    ticks: u64,
    /// Fetched pages that did not check (an honest federation has none).
    pages_refused: u64,
    /// Revocations and deletes a reconciliation fetched that were refused (an honest
    /// federation whose members agree on what is valid has none).
    fetched_refused: u64,
}

impl Node {
    /// The node around `core` (its key, capacity and trust), started at `now_ms`.
    pub fn new(core: NodeCore, settings: Settings, now_ms: u64) -> Node {
        let key = slicefed_trust::SecretKey::from_seed(&core.secret_key().seed());
        let core_key_bytes = key.public().0;
        let witnessing = Witnessing::new(
            key,
            settings.witnesses,
            settings.tick_ms,
            settings.checkpoint_every_ticks,
        );
        let seed = u64::from_le_bytes([
            core_key_bytes[8],
            core_key_bytes[9],
            core_key_bytes[10],
            core_key_bytes[11],
            core_key_bytes[12],
            core_key_bytes[13],
            core_key_bytes[14],
            core_key_bytes[15],
        ]) ^ now_ms;
        let swim = crate::swim::Swim::new(core.secret_key(), now_ms, seed);
        Node {
            swim,
            swim_unknown: BTreeMap::new(),
            credential_hold_offs: BTreeMap::new(),
            now_ms,
            wake_asked: None,
            core,
            witnessing,
            settings,
            up_since_ms: now_ms,
            asked: BTreeMap::new(),
            next_token: 1,
            held: BTreeMap::new(),
            next_hold: 1,
            writes: BTreeMap::new(),
            next_write: 1,
            starting: BTreeMap::new(),
            restoring: None,
            ended_holders: VecDeque::new(),
            ended_waiting: VecDeque::new(),
            last_advert_ms: None,
            advertised: None,
            adverts_sent: 0,
            last_reconcile_ms: None,
            last_caught_up_ms: None,
            last_return_ask_ms: None,
            last_unheard_ask_ms: None,
            unheard_asked: None,
            unheard_retries: 0,
            unheard_retry_at: None,
            reconcile_after: None,
            learning: members::Learning::default(),
            ticks: 0,
            pages_refused: 0,
            fetched_refused: 0,
        }
    }

    /// The node manager (members, slivers, revocations), to read.
    pub fn core(&self) -> &NodeCore {
        &self.core
    }

    /// Whether SWIM lists `k` (probes it, and takes its packets), under any start.
    pub fn swim_lists(&self, k: &PublicKey) -> bool {
        self.swim.start_of(k).is_some()
    }

    /// When this node last heard of member `k`: its latest advert or credential, or its
    /// latest SWIM packet, whichever came last (`None`: not a member).
    pub fn member_last_seen_ms(&self, k: &PublicKey) -> Option<u64> {
        let m = self.core.members().get(k)?;
        Some(m.last_seen_ms.max(self.swim.last_heard_ms(k).unwrap_or(0)))
    }

    /// The node manager, to set up before the node runs (revocations from the log, ids).
    pub fn core_mut(&mut self) -> &mut NodeCore {
        &mut self.core
    }

    /// The witnessing machine, to read.
    pub fn witnessing(&self) -> &Witnessing {
        &self.witnessing
    }

    /// The witnessing machine, to restore replicas or set the test hook.
    pub fn witnessing_mut(&mut self) -> &mut Witnessing {
        &mut self.witnessing
    }

    /// The replicas this node holds, taken out (a node that stops leaves them on disk).
    pub fn into_replicas(
        self,
    ) -> Vec<(
        PublicKey,
        slicefed_ledger::merkle::Tree,
        Option<SignedCheckpoint>,
    )> {
        self.witnessing.into_witness().into_replicas()
    }

    /// Revocations and deletes held for members (the size of the reconciled set).
    fn held_len(&self) -> usize {
        let (revocations, deletes) = self.core.held_counts();
        revocations.saturating_add(deletes)
    }

    /// Fetched pages that did not check, since the node started.
    pub fn pages_refused(&self) -> u64 {
        self.pages_refused
    }

    /// Revocations and deletes fetched by reconciliation and refused, since the node
    /// started.
    pub fn fetched_refused(&self) -> u64 {
        self.fetched_refused
    }

    /// Whether saved slivers still wait for the node's catch-up.
    pub fn restoring(&self) -> bool {
        self.restoring.is_some()
    }

    /// A restart's catch-up so far, while it lasts (for the owner's sensors and the
    /// simulator's traces of slow restarts).
    pub fn restore_progress(&self) -> Option<RestoreProgress> {
        self.restoring.as_ref().map(|r| RestoreProgress {
            waiting: r.saved.len(),
            asked: r.asked.len(),
            caught_up: r.caught_up.len(),
            declined: r.declined.len(),
            members: self.core.members().len(),
        })
    }

    /// Sizes of the tables the machine holds (for tests of its bounds).
    pub fn table_sizes(&self) -> [usize; 7] {
        [
            self.asked.len(),
            self.held.len(),
            self.writes.len(),
            self.starting.len(),
            self.restoring.as_ref().map_or(0, |r| r.saved.len()),
            self.ended_holders.len(),
            self.ended_waiting.len(),
        ]
    }

    /// One input; what to do about it.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        self.now_ms = now_ms;
        let mut out = vec![];
        match input {
            Input::Restart { saved, logged } => self.restart(now_ms, saved, logged),
            Input::Tick { log_size } => self.tick(now_ms, log_size, &mut out),
            Input::Wake => self.wake(now_ms, &mut out),
            Input::Connected { peer } => self.connected(peer, &mut out),
            Input::Checkpoint { checkpoint } => {
                let effects = self.witnessing.signed(now_ms, &checkpoint);
                self.witness_effects(effects, &mut out);
            }
            Input::Request {
                reply,
                from,
                request,
            } => self.request(now_ms, reply, from, request, &mut out),
            Input::Submit {
                reply,
                credential,
                module,
                invocation,
            } => self.submit(now_ms, reply, credential, module, &invocation, &mut out),
            Input::Owner { reply, request } => self.owner(now_ms, reply, request, &mut out),
            Input::Answer { token, response } => self.answer(now_ms, token, response, &mut out),
            Input::NoAnswer { token } => self.no_answer(token, &mut out),
            Input::CredentialAnswer { token, credential } => {
                if let Some(Asked::Credential { .. }) = self.asked.get(&token)
                    && let Some(Asked::Credential { node, advert }) = self.asked.remove(&token)
                {
                    let advert = advert.as_deref();
                    self.credential_came(
                        now_ms,
                        node,
                        advert,
                        &credential,
                        Some(&credential),
                        &mut out,
                    );
                } else {
                    // A credential answering another ask: that ask's own handling (a wrong
                    // kind of answer) decides.
                    let response = Response::Credential {
                        credential: credential.to_vec(),
                        addrs: vec![],
                    };
                    self.answer(now_ms, token, response, &mut out);
                }
            }
            Input::Gossip {
                id,
                source,
                topic,
                data,
            } => {
                let verdict = self.gossip(now_ms, source, topic, &data, &mut out);
                out.push(Effect::Verdict { id, verdict });
            }
            Input::Written { write } => self.written(now_ms, write, &mut out),
            Input::WriteFailed { write, why } => self.write_failed(now_ms, write, &why, &mut out),
            Input::LedgerFailed { why } => self.core.ledger_failed(&why),
            Input::LedgerRecovered => {
                self.core.ledger_recovered();
                while let Some((id, outcome, usage)) = self.ended_waiting.pop_front() {
                    self.ended(id, &outcome, usage, &mut out);
                }
            }
            Input::Started { id } => self.started(id, &mut out),
            Input::StartFailed { id, why } => self.start_failed(now_ms, id, &why, &mut out),
            Input::Ended { id, outcome, usage } => {
                if self.core.unhealthy().is_some() {
                    // Its end is logged once the ledger writes again (after its flows).
                    if self.ended_waiting.len() < MAX_ENDED_WAITING {
                        self.ended_waiting.push_back((id, outcome, usage));
                    }
                } else {
                    self.ended(id, &outcome, usage, &mut out);
                }
            }
        }
        if self.first_member_ms().is_none() && !self.core.members().is_empty() {
            // The first member listed since the start: learning notes it, and its first
            // list pull goes now, not at the next tick (a restart that knew two members
            // waited for it to know a third).
            self.learn_members(now_ms, &mut out);
        }
        if self.restoring.is_some() {
            // A restart's catch-up goes at the pace of its answers, not of ticks: members
            // learnt meanwhile are asked, and the restore follows the quorum's last answer.
            self.restore_asks(now_ms, &mut out);
            self.maybe_restore(now_ms, &mut out);
        }
        self.ask_wake(&mut out);
        out
    }

    /// Shares signature checks of SWIM's signed items with the other machines of this
    /// process (the simulator's; see [`crate::swim::SharedItemChecks`]).
    pub fn share_item_checks(&mut self, checks: crate::swim::SharedItemChecks) {
        self.swim.share_item_checks(checks);
    }

    /// A node this one connected to (or that connected to it) and does not list: a SWIM
    /// hello, so that each learns the other without waiting for adverts (which now go
    /// only on change). Not for a node whose credential was refused lately or is being
    /// asked for.
    fn connected(&mut self, peer: PublicKey, out: &mut Vec<Effect>) {
        if self.core.members().contains_key(&peer) {
            return self.reconcile_on_return(peer, out);
        }
        if self.credential_held_off_or_asked(&peer) {
            return;
        }
        let events = self.swim.hello(peer);
        self.swim_events(self.now_ms, events, out);
    }

    /// A connection to a member opened while this node was out of touch (no reconciliation
    /// answered for two periods: a partition, an outage): that member is asked at once
    /// instead of at the next turn, so what this node missed (revocations, deletes)
    /// arrives one round trip after the link heals. At most one such ask a second; a
    /// restart's catch-up has its own (`restore_asks`).
    fn reconcile_on_return(&mut self, member: PublicKey, out: &mut Vec<Effect>) {
        let now_ms = self.now_ms;
        let out_of_touch = self
            .last_caught_up_ms
            .is_none_or(|t| now_ms.saturating_sub(t) > 2 * crate::core::RECONCILE_EVERY_MS);
        let asked_lately = self
            .last_return_ask_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < RETURN_RECONCILE_GAP_MS);
        if self.restoring.is_some() || !out_of_touch || asked_lately {
            return;
        }
        self.last_return_ask_ms = Some(now_ms);
        let request = Request::RevocationPrints {
            unless: Some(self.core.revocation_digest()),
        };
        self.ask(member, request, Asked::Prints { member }, out);
    }

    /// Whether this node is still catching up after its start (its saved slivers wait).
    pub fn catching_up(&self) -> bool {
        self.restoring.is_some()
    }

    /// Asks the router for [`Input::Wake`] when the next wake changed.
    fn ask_wake(&mut self, out: &mut Vec<Effect>) {
        let next = self.next_wake();
        if next.is_some() && next != self.wake_asked {
            self.wake_asked = next;
            if let Some(at) = next {
                out.push(Effect::WakeAt(at));
            }
        }
    }

    /// When this machine next needs [`Input::Wake`].
    fn next_wake(&self) -> Option<u64> {
        let reconcile = self
            .last_reconcile_ms
            .map(|t| t.saturating_add(crate::core::RECONCILE_EVERY_MS));
        [self.swim.next_wake(), reconcile, self.unheard_retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn wake(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.wake_asked = None;
        let events = self.swim.wake(now_ms);
        self.swim_events(now_ms, events, out);
        self.reconcile(now_ms, out);
        if self.unheard_retry_at.is_some_and(|t| t <= now_ms) {
            self.unheard_retry_at = None;
            if self.unheard_retries > 0 {
                self.unheard_retries -= 1;
                self.ask_on_unheard_revocation(out);
            }
        }
    }

    /// Carries out what SWIM decided.
    pub(super) fn swim_events(
        &mut self,
        now_ms: u64,
        events: Vec<crate::swim::SwimEvent>,
        out: &mut Vec<Effect>,
    ) {
        for e in events {
            match e {
                crate::swim::SwimEvent::Send { to, data } => out.push(Effect::Send {
                    to,
                    token: None,
                    request: Request::Swim(data),
                }),
                crate::swim::SwimEvent::Dead(k) => {
                    let outs = self.core.member_down(&k);
                    self.carry(now_ms, outs, false, out);
                }
                crate::swim::SwimEvent::Rejoined => {
                    let load = self.load();
                    self.advertise(now_ms, load, out);
                }
                crate::swim::SwimEvent::Stranger { id, via } => {
                    self.newcomer(now_ms, id, via, out);
                }
            }
        }
    }

    /// Whether this node is one of the ~[`GREETERS`] members that greet `node` when it
    /// starts: a hash of both keys, below `GREETERS / members`.
    fn greets(&self, node: &PublicKey) -> bool {
        use sha2::Digest;
        let members = self.core.members().len() as u64 + 1;
        let mut h = sha2::Sha256::new();
        h.update(self.swim.me().key.0);
        h.update(node.0);
        let d: [u8; 32] = h.finalize().into();
        let x = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        x % members < GREETERS
    }

    /// This node's load as its adverts carry it.
    fn load(&self) -> Load {
        Load {
            swim_bump: self.swim.me().bump,
            ..self.core.load()
        }
    }

    /// Advertises `load`: with the credential itself the first [`FULL_ADVERTS`] times
    /// after a start (every member up then judges it once), by its hash afterwards.
    fn advertise(&mut self, now_ms: u64, load: Load, out: &mut Vec<Effect>) {
        // One advert per moment: a second would not be newer than the first.
        if self.last_advert_ms == Some(now_ms) {
            return;
        }
        let full = self.adverts_sent < FULL_ADVERTS;
        self.adverts_sent = self.adverts_sent.saturating_add(1);
        self.last_advert_ms = Some(now_ms);
        self.advertised = Some(load.clone());
        out.push(Effect::Advertise(Load { full, ..load }));
    }

    /// Members SWIM holds alive or suspected.
    pub fn swim_active(&self) -> usize {
        self.swim.active()
    }

    /// What SWIM has done (sensors, the simulator's metrics).
    pub fn swim_stats(&self) -> crate::swim::SwimStats {
        self.swim.stats()
    }

    /// An advert whose signature the caller checked (the gossip path decodes it; the
    /// simulator checks one advert once for the thousand nodes that judge it). `shared` is
    /// the sender's credential in shared memory when the advert carries exactly it, and
    /// `load` the advert's [`AdvertBody::load`] made once for every receiver (else each
    /// makes its own).
    ///
    /// Returns what to do and the judgement: an advert that names a credential this node
    /// does not hold is [`CoreError::CredentialUnknown`] (neither taken nor passed on) and
    /// its sender is asked for the credential.
    pub fn advert(
        &mut self,
        now_ms: u64,
        advert: &Advert,
        shared: Option<&Arc<[u8]>>,
        load: Option<&Arc<Load>>,
    ) -> (Vec<Effect>, Result<(), CoreError>) {
        self.now_ms = now_ms;
        let b = &advert.body;
        let mut out = vec![];
        let credential = (!b.credential.is_empty()).then_some(&b.credential[..]);
        let taken = self.core.judge_advert(
            now_ms,
            b.node,
            credential,
            &b.credential_hash,
            shared.filter(|_| credential.is_some()),
            load.map_or_else(|| Arc::new(b.load()), Arc::clone),
        );
        let judged = match taken {
            Ok(Some(outs)) => {
                self.advert_taken(now_ms, b, outs, &mut out);
                Ok(())
            }
            Ok(None) => {
                // Its addresses first, so the router can reach it to ask (they are kept
                // within the router's bound on peers, like any peer's).
                if !b.addrs.is_empty() {
                    out.push(Effect::Addresses {
                        node: b.node,
                        addrs: b.addrs.clone(),
                    });
                }
                self.ask_credential(b.node, Some(b), &mut out);
                Err(CoreError::CredentialUnknown)
            }
            Err(e) => Err(e),
        };
        self.ask_wake(&mut out);
        (out, judged)
    }

    /// An advert named a credential by hash that this node has not judged: its sender is
    /// asked for it, once at a time per sender, and the advert is judged when it comes.
    ///
    /// Also a node that sends SWIM packets and is not a member yet (it started while this
    /// node was away, or this node restarted): `advert` is then `None`, and the member is
    /// admitted with the SWIM identity its packet named and no load until it advertises.
    pub(super) fn ask_credential(
        &mut self,
        node: PublicKey,
        advert: Option<&AdvertBody>,
        out: &mut Vec<Effect>,
    ) -> bool {
        if self.asked.len() >= MAX_ASKED / 2 || self.credential_held_off_or_asked(&node) {
            return false;
        }
        let asked = Asked::Credential {
            node,
            advert: advert.map(|b| Box::new(b.clone())),
        };
        self.ask(node, Request::Credential, asked, out)
    }

    /// The credential asked of `node` came: judged with the advert that named it (its
    /// hash checked), or, for a SWIM sender, on its own (the member joins with no load
    /// until it advertises). `shared`: the same bytes in shared memory (the simulator's).
    fn credential_came(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        advert: Option<&AdvertBody>,
        bytes: &[u8],
        shared: Option<&Arc<[u8]>>,
        out: &mut Vec<Effect>,
    ) {
        let Some(a) = advert else {
            // A SWIM sender: listed under the start its packet named. One listed meanwhile
            // (its advert came first) is not refused for the race.
            if self.core.members().contains_key(&node) {
                self.swim_unknown.remove(&node);
                return;
            }
            if let Some(start) = self.swim_unknown.remove(&node)
                && !self.admit_learnt(now_ms, node, start, bytes, shared, out)
            {
                self.credential_refused(now_ms, node, out);
            }
            return;
        };
        let hash = crate::core::credential_hash(bytes);
        if *a.credential_hash != hash {
            return self.credential_refused(now_ms, node, out);
        }
        match self
            .core
            .judge_advert(now_ms, node, Some(bytes), &hash, shared, Arc::new(a.load()))
        {
            Ok(Some(outs)) => self.advert_taken(now_ms, a, outs, out),
            // The advert is late or too soon, not the credential bad: nothing held off.
            Err(CoreError::StaleAdvert(_) | CoreError::AdvertTooSoon { .. }) => {}
            _ => self.credential_refused(now_ms, node, out),
        }
    }

    /// `node` gave no credential, or one that was refused: not asked again for
    /// [`CREDENTIAL_RETRY_MS`] (a Sybil's packets and adverts cost it, not this node).
    fn credential_refused(&mut self, now_ms: u64, node: PublicKey, out: &mut Vec<Effect>) {
        // The count of unanswered asks survives a refusal (only an admission clears it):
        // a Sybil that alternates refusals and silence must not restart the doubling.
        let unanswered = self
            .credential_hold_offs
            .get(&node)
            .map_or(0, |h| h.unanswered);
        let for_ms = CREDENTIAL_RETRY_MS;
        self.hold_off_credential(
            now_ms,
            node,
            HoldOffReason::Refused,
            for_ms,
            unanswered,
            out,
        );
    }

    /// `node`, known only from its SWIM packets, did not answer its credential ask: asked
    /// again after [`CREDENTIAL_UNANSWERED_RETRY_MS`], doubled for each unanswered ask in a
    /// row, at most [`CREDENTIAL_RETRY_MS`].
    fn credential_unanswered(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        reason: HoldOffReason,
        out: &mut Vec<Effect>,
    ) {
        // A node listed meanwhile (its advert came first) is not held off for an ask
        // that raced its admission: were it expelled, it could not come back at once.
        if self.core.members().contains_key(&node) {
            self.swim_unknown.remove(&node);
            return;
        }
        let unanswered = self
            .credential_hold_offs
            .get(&node)
            .map_or(0, |h| h.unanswered)
            .saturating_add(1);
        let wait = CREDENTIAL_UNANSWERED_RETRY_MS
            .saturating_mul(1u64 << unanswered.saturating_sub(1).min(16))
            .min(CREDENTIAL_RETRY_MS);
        self.hold_off_credential(now_ms, node, reason, wait, unanswered, out);
    }

    /// Holds `node` off for `for_ms` and reports it ([`Effect::HeldOff`]). A table full
    /// of live hold-offs records (and reports) no new node, which then costs what an
    /// unknown node costs.
    fn hold_off_credential(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        reason: HoldOffReason,
        for_ms: u64,
        unanswered: u32,
        out: &mut Vec<Effect>,
    ) {
        self.swim_unknown.remove(&node);
        let table = &mut self.credential_hold_offs;
        let known = table.contains_key(&node);
        if !known && table.len() >= MAX_ASKED {
            table.retain(|_, h| now_ms < h.until_ms);
        }
        if known || table.len() < MAX_ASKED {
            let until_ms = now_ms.saturating_add(for_ms);
            table.insert(
                node,
                HeldOff {
                    until_ms,
                    unanswered,
                },
            );
            out.push(Effect::HeldOff {
                node,
                reason,
                for_ms,
            });
        }
    }

    /// Whether `node`'s credential is not to be asked for now (refused, or unanswered
    /// lately).
    pub(super) fn credential_held_off(&self, node: &PublicKey, now_ms: u64) -> bool {
        self.credential_hold_offs
            .get(node)
            .is_some_and(|h| now_ms < h.until_ms)
    }

    /// Whether `node`'s credential is held off or already being asked for. The hold-off
    /// is looked up first: the scan of the asks in flight (up to [`MAX_ASKED`]) is what a
    /// held-off stranger's every packet or reconnect would otherwise cost.
    fn credential_held_off_or_asked(&self, node: &PublicKey) -> bool {
        self.credential_held_off(node, self.now_ms)
            || self
                .asked
                .values()
                .any(|a| matches!(a, Asked::Credential { node: n, .. } if n == node))
    }

    /// What follows a judged advert: the core's outputs carried out, the member probed
    /// under the SWIM identity it says (new, or restarted: a new bump), its addresses.
    fn advert_taken(
        &mut self,
        now_ms: u64,
        b: &AdvertBody,
        outs: Vec<Output>,
        out: &mut Vec<Effect>,
    ) {
        self.carry(now_ms, outs, true, out);
        let id = crate::swim::SwimId {
            key: b.node,
            bump: b.swim_bump,
        };
        if self.core.members().contains_key(&b.node) && !self.swim.knows(&id) {
            let mut events = self.swim.admit(now_ms, id);
            // Its first advert after a start: a few members greet it (see GREETERS).
            if !b.credential.is_empty() && self.greets(&b.node) {
                events.extend(self.swim.greet(now_ms, id));
            }
            self.swim_events(now_ms, events, out);
        }
        if !b.addrs.is_empty() {
            out.push(Effect::Addresses {
                node: b.node,
                addrs: b.addrs.clone(),
            });
        }
    }

    // ---- time -------------------------------------------------------------------------

    fn tick(&mut self, now_ms: u64, log_size: u64, out: &mut Vec<Effect>) {
        self.ticks += 1;
        let swim = &self.swim;
        let outs = self.core.tick(now_ms, |k| swim.last_heard_ms(k));
        self.carry(now_ms, outs, false, out);
        let events = self.swim.wake(now_ms);
        self.swim_events(now_ms, events, out);
        self.reconcile(now_ms, out);
        self.learn_members(now_ms, out);
        self.maybe_restore(now_ms, out);
        let effects = self.witnessing.tick(now_ms, log_size, self.core.members());
        self.witness_effects(effects, out);
        // Adverts only when something changed (at most one per advert interval, which
        // grows with the federation so that each node hears about one a second), and a
        // refresh after REFRESH_INTERVALS of them with nothing new. Liveness is SWIM's.
        let load = self.load();
        let interval = self.core.advert_interval_ms();
        let due = match (&self.advertised, self.last_advert_ms) {
            (Some(prev), Some(at)) => {
                let gap = now_ms.saturating_sub(at);
                let refresh = if self.adverts_sent < FULL_ADVERTS {
                    interval
                } else {
                    self.refresh_after_ms(interval)
                };
                gap >= refresh
                    || (gap >= interval && load_changed(prev, &load, self.core.capacity_memory()))
            }
            _ => true,
        };
        if due {
            self.advertise(now_ms, load, out);
        }
    }

    /// How long after its last advert a node with nothing new re-advertises:
    /// [`crate::core::REFRESH_INTERVALS`] advert intervals, less a share of one interval
    /// (up to half) that depends on the node's key. Nodes that advertised together (they
    /// started together, or one event changed every node's load) would otherwise refresh
    /// together ever after: a wave of every member's advert at once, each copied by
    /// gossip to every mesh peer. With periods that differ by up to 12.5% the waves come
    /// apart within a few refreshes. Shorter, never longer, so that members' timeouts
    /// (which count missed refreshes) stay as they were.
    fn refresh_after_ms(&self, interval: u64) -> u64 {
        let key = self.swim.me().key;
        let share = u64::from(u16::from_le_bytes([key.as_bytes()[0], key.as_bytes()[1]]));
        let less = (interval / 2).saturating_mul(share) / 65_536;
        interval
            .saturating_mul(crate::core::REFRESH_INTERVALS)
            .saturating_sub(less)
    }

    /// Reconciliation of revocations and deletes (anti-entropy). A restarted node asks up to
    /// [`RESTORE_ASKED`] members at once for their whole set's fingerprints, and restores
    /// only after [`RESTORE_QUORUM`] of them answered and what differed was fetched. After
    /// that, every [`crate::core::RECONCILE_EVERY_MS`] it asks the next member in turn,
    /// sending its own digest so an equal set costs one small answer. Nothing here waits for
    /// adverts: with membership by SWIM a member may not advertise for hours.
    fn reconcile(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.restore_asks(now_ms, out);
        // The turn goes on while a restart catches up too: a revocation published
        // meanwhile (whose gossip a node that knows few members refuses) arrives by it.
        if self
            .last_reconcile_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < crate::core::RECONCILE_EVERY_MS)
        {
            return;
        }
        if self.core.members().is_empty() {
            return;
        }
        self.last_reconcile_ms = Some(now_ms);
        self.ask_next_in_turn(out);
    }

    /// Asks the next member in key order after the last one asked (a turn through all of
    /// them, each node starting where its key falls, so nodes do not all ask the same
    /// member at once) for the fingerprints of what it holds, unless equal to this node's.
    fn ask_next_in_turn(&mut self, out: &mut Vec<Effect>) {
        let after = self.reconcile_after.unwrap_or(self.swim.me().key);
        let next = self
            .core
            .members()
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .next()
            .or_else(|| self.core.members().first_key_value())
            .map(|(k, _)| *k);
        let Some(member) = next else {
            return;
        };
        self.reconcile_after = Some(member);
        let request = Request::RevocationPrints {
            unless: Some(self.core.revocation_digest()),
        };
        self.ask(member, request, Asked::Prints { member }, out);
    }

    /// Revocation gossip from a publisher this node does not list (it knows few members
    /// yet: it just started, or came back): refused, since gossip is heard from members
    /// only, but a revocation is probably on its way, so the next member in turn is asked
    /// now rather than at the next turn. One such ask a second at most, with its own budget
    /// (junk gossip from strangers costs each node one small request a second, and cannot
    /// use up the asks a return after a partition needs). The member asked may not hold it
    /// yet (gossip reached this node first): while the answers bring nothing new, the next
    /// member in turn is asked a second later, [`UNHEARD_RETRIES`] times at most.
    fn reconcile_on_unheard_revocation(&mut self, out: &mut Vec<Effect>) {
        self.unheard_retries = UNHEARD_RETRIES;
        self.ask_on_unheard_revocation(out);
    }

    /// The ask of [`Node::reconcile_on_unheard_revocation`], or a retry at the end of its
    /// budget when the budget is spent or its chain still runs.
    fn ask_on_unheard_revocation(&mut self, out: &mut Vec<Effect>) {
        let now_ms = self.now_ms;
        let asked_lately = self
            .last_unheard_ask_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < RETURN_RECONCILE_GAP_MS);
        // Not while the chain of pages the last such ask started is under way either (junk
        // must not start chains faster than they end), unless it is slow: a member that
        // does not answer must not hold revocations back for a whole request timeout.
        let chain = self.unheard_asked.filter(|_| {
            self.last_unheard_ask_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < UNHEARD_CHAIN_MS)
        });
        let chain_running = chain.is_some_and(|m| {
            self.asked.values().any(|a| {
                matches!(a, Asked::Prints { member } | Asked::Revocations { member, .. }
                    if *member == m)
            })
        });
        if self.core.members().is_empty() {
            return;
        }
        if asked_lately || chain_running {
            let last = self.last_unheard_ask_ms.unwrap_or(now_ms);
            let gap = if chain_running {
                UNHEARD_CHAIN_MS
            } else {
                RETURN_RECONCILE_GAP_MS
            };
            self.retry_unheard_at(last.saturating_add(gap));
            return;
        }
        self.last_unheard_ask_ms = Some(now_ms);
        self.unheard_retry_at = None;
        self.ask_next_in_turn(out);
        self.unheard_asked = self.reconcile_after;
    }

    /// Another ask for unheard revocation gossip, at `at` at the earliest (one already
    /// due earlier stays), while retries are left.
    fn retry_unheard_at(&mut self, at: u64) {
        if self.unheard_retries > 0 {
            let at = at.max(self.now_ms.saturating_add(1));
            self.unheard_retry_at = Some(self.unheard_retry_at.map_or(at, |t| t.min(at)));
        }
    }

    /// An answer (or none) from the member the last unheard revocation gossip asked, that
    /// brought nothing new: the next member is asked a second after the last ask.
    fn unheard_answer_empty(&mut self, member: PublicKey) {
        if self.unheard_asked == Some(member) {
            let last = self.last_unheard_ask_ms.unwrap_or(self.now_ms);
            self.retry_unheard_at(last.saturating_add(RETURN_RECONCILE_GAP_MS));
        }
    }

    /// A restart's catch-up: members not yet asked, up to [`RESTORE_ASKED`] at a time, are
    /// asked for their whole set's fingerprints. Members it knew before it went down go
    /// first (members that joined since, with keys that sort first, cannot fill the
    /// asked set with their own answers); among each, an order mixed with this node's key
    /// and start (nodes restarting together ask different members).
    fn restore_asks(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let tick = now_ms / self.settings.tick_ms.max(1);
        let seen = (self.core.members().len(), 0, tick);
        let Some(r) = self.restoring.as_mut() else {
            return;
        };
        let seen = (seen.0, r.asked.len(), seen.2);
        if r.searched == Some(seen) {
            return;
        }
        r.searched = Some(seen);
        let Some(r) = self.restoring.as_ref() else {
            return;
        };
        // One place more for a member it knew, while none of those is asked: the members
        // listed first (who may have raced to be) do not keep them out.
        let knew_asked = r
            .asked
            .iter()
            .chain(&r.caught_up)
            .any(|k| r.knew.contains(k));
        let room = RESTORE_ASKED.saturating_sub(r.asked.len());
        let only_knew = room == 0 && !knew_asked && !r.knew.is_empty();
        let room = if only_knew { 1 } else { room };
        if room == 0 {
            return;
        }
        let salt = self
            .swim
            .me()
            .key
            .0
            .first_chunk::<8>()
            .map_or(0, |b| u64::from_le_bytes(*b))
            ^ r.since_ms;
        let order = |k: &PublicKey| {
            let mine = k.0.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
            let mixed = (mine ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (!r.knew.contains(k), mixed)
        };
        let mut members: Vec<(bool, u64, PublicKey)> = self
            .core
            .members()
            .keys()
            .filter(|k| {
                !r.caught_up.contains(k)
                    && !r.asked.contains(k)
                    && (!only_knew || r.knew.contains(k))
                    && r.declined
                        .get(k)
                        .is_none_or(|t| now_ms.saturating_sub(*t) >= self.settings.tick_ms)
            })
            .map(|k| {
                let (later, mixed) = order(k);
                (later, mixed, *k)
            })
            .collect();
        if members.len() > room {
            members.select_nth_unstable(room);
            members.truncate(room);
        }
        for (_, _, member) in members {
            let request = Request::RevocationPrints { unless: None };
            if self.ask(member, request, Asked::Prints { member }, out)
                && let Some(r) = self.restoring.as_mut()
            {
                r.asked.insert(member);
            }
        }
    }

    // ---- requests ---------------------------------------------------------------------

    // ---- slivers ----------------------------------------------------------------------

    // ---- answers and gossip -----------------------------------------------------------

    /// Sends a request whose answer is needed, if the table of requests in flight has room.
    fn ask(
        &mut self,
        to: PublicKey,
        request: Request,
        asked: Asked,
        out: &mut Vec<Effect>,
    ) -> bool {
        if self.asked.len() >= MAX_ASKED {
            return false;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.asked.insert(token, asked);
        out.push(Effect::Send {
            to,
            token: Some(token),
            request,
        });
        true
    }

    fn answer(&mut self, now_ms: u64, token: Token, response: Response, out: &mut Vec<Effect>) {
        match self.asked.remove(&token) {
            Some(Asked::Fetch { origin, holder }) => {
                // Not a page that checks: counted as failed; the next checkpoint asks again.
                let effects = match self.witnessing.fetched(
                    now_ms,
                    origin,
                    holder,
                    response,
                    self.core.members(),
                ) {
                    Ok(e) => e,
                    Err(crate::witnessing::FetchFailed::Refused(_)) => {
                        self.pages_refused = self.pages_refused.saturating_add(1);
                        vec![]
                    }
                    // An error answer (asked past its checkpoint, busy): asked again later.
                    Err(crate::witnessing::FetchFailed::NotAPage) => vec![],
                };
                self.witness_effects(effects, out);
            }
            Some(Asked::Credential { node, advert }) => match response {
                Response::Credential { credential, addrs } => {
                    let advert = advert.as_deref();
                    self.credential_came(now_ms, node, advert, &credential, None, out);
                    if !addrs.is_empty() && self.core.members().contains_key(&node) {
                        out.push(Effect::Addresses { node, addrs });
                    }
                }
                // An error answer ("busy": an honest newcomer over its request quota) is
                // no refusal of a credential: asked again after a back-off.
                Response::Error(_) => {
                    self.credential_unanswered(now_ms, node, HoldOffReason::Busy, out)
                }
                _ => self.credential_refused(now_ms, node, out),
            },
            Some(Asked::MemberList { member }) => {
                self.member_list_came(now_ms, member, Some(response), out);
                self.learn_members(now_ms, out);
            }
            Some(Asked::MemberCredentials { via, nodes }) => {
                self.member_credentials_came(now_ms, via, nodes, Some(response), out);
                self.learn_members(now_ms, out);
            }
            Some(Asked::Prints { member }) => {
                if matches!(response, Response::HeldSame | Response::RevocationPrints(_)) {
                    self.last_caught_up_ms = Some(now_ms);
                }
                let Response::RevocationPrints(theirs) = response else {
                    // `HeldSame` answers a periodic reconciliation: nothing to fetch. It is
                    // not a restart's catch-up, though: the digest covers only what has
                    // settled, so a member that holds a revocation published moments ago
                    // still answers `HeldSame` (counting it let the simulator restore
                    // revoked slivers). Anything else is no answer: that member is asked
                    // again only after a tick (a member that errs cannot keep it asking).
                    self.unheard_answer_empty(member);
                    if let Some(r) = self.restoring.as_mut() {
                        r.asked.remove(&member);
                        if !matches!(response, Response::HeldSame) {
                            r.declined.insert(member, now_ms);
                        }
                    }
                    return;
                };
                // The ranges where the member holds something and it is not what this node
                // holds: fetched, the rest is already the same.
                let ours = self.core.revocation_prints();
                let buckets: Vec<u8> = (0..=u8::MAX)
                    .filter(|b| {
                        let i = usize::from(*b);
                        let t = theirs.get(i).copied().unwrap_or(0);
                        t != 0 && Some(&t) != ours.get(i)
                    })
                    .collect();
                if buckets.is_empty() {
                    self.unheard_answer_empty(member);
                    if let Some(r) = self.restoring.as_mut() {
                        r.caught_up.insert(member);
                    }
                    return;
                }
                let request = Request::Revocations {
                    after: None,
                    have: self.core.revocation_prefixes(None, &buckets),
                    buckets: buckets.clone(),
                };
                let asked = Asked::Revocations {
                    member,
                    after: None,
                    pages: 0,
                    buckets,
                    brought: false,
                };
                self.ask(member, request, asked, out);
            }
            Some(Asked::Revocations {
                member,
                after,
                pages,
                buckets,
                brought,
            }) => {
                let Response::Revocations(list) = response else {
                    // No answer: another member may be asked (this one after a tick).
                    self.unheard_answer_empty(member);
                    if let Some(r) = self.restoring.as_mut() {
                        r.asked.remove(&member);
                        r.declined.insert(member, now_ms);
                    }
                    return;
                };
                let list: Vec<Vec<u8>> = list.into_iter().map(|b| b.into_vec()).collect();
                let next = next_revocation_page(&list, after, pages.saturating_add(1));
                let held_before = self.held_len();
                for bytes in list {
                    match self
                        .core
                        .caught_up_revocation(now_ms, &bytes, self.up_since_ms)
                    {
                        Ok(outs) => {
                            let appends = self.carry(now_ms, outs, false, out);
                            self.hold(appends, vec![], OnFailure::Drop, out);
                        }
                        Err(_) => self.fetched_refused = self.fetched_refused.saturating_add(1),
                    }
                }
                let brought = brought || self.held_len() > held_before;
                match next {
                    Some(cursor) => {
                        let request = Request::Revocations {
                            after: Some(cursor),
                            have: self.core.revocation_prefixes(Some(cursor), &buckets),
                            buckets: buckets.clone(),
                        };
                        let asked = Asked::Revocations {
                            member,
                            after: Some(cursor),
                            pages: pages.saturating_add(1),
                            buckets,
                            brought,
                        };
                        self.ask(member, request, asked, out);
                    }
                    None => {
                        // Prints that differed but a chain that brought nothing (the member
                        // holds less, or only what this node refuses): for unheard gossip,
                        // the next member is asked.
                        if !brought {
                            self.unheard_answer_empty(member);
                        }
                        if let Some(r) = self.restoring.as_mut() {
                            r.caught_up.insert(member);
                        }
                    }
                }
            }
            None => {}
        }
    }

    fn no_answer(&mut self, token: Token, out: &mut Vec<Effect>) {
        match self.asked.remove(&token) {
            Some(Asked::Fetch { origin, .. }) => self.witnessing.fetch_failed(&origin),
            // A reconciliation that got no answer: another member may be asked instead.
            Some(Asked::Prints { member } | Asked::Revocations { member, .. }) => {
                let now_ms = self.now_ms;
                self.unheard_answer_empty(member);
                if let Some(r) = self.restoring.as_mut() {
                    r.asked.remove(&member);
                    r.declined.insert(member, now_ms);
                }
            }
            // Not reached: a node that advertised is asked again on its next advert (the
            // network, not a refusal); one known only from its SWIM packets counts as
            // refused (a Sybil that never answers must not hold the asks).
            Some(Asked::Credential { node, advert }) => {
                if advert.is_none() {
                    self.credential_unanswered(self.now_ms, node, HoldOffReason::Unanswered, out);
                }
                self.swim_unknown.remove(&node);
            }
            // Asked again as they come (a tick's `learn_members`).
            Some(Asked::MemberList { member }) => {
                self.member_list_came(self.now_ms, member, None, &mut vec![])
            }
            Some(Asked::MemberCredentials { via, nodes }) => {
                self.member_credentials_came(self.now_ms, via, nodes, None, &mut vec![])
            }
            None => {}
        }
    }

    fn gossip(
        &mut self,
        now_ms: u64,
        source: Option<PublicKey>,
        topic: Topic,
        data: &[u8],
        out: &mut Vec<Effect>,
    ) -> Verdict {
        if topic == Topic::Advert {
            // Only a valid advert, signed by the node it names and published by that node.
            let advert = match Advert::from_bytes(data) {
                Ok(a) => a,
                Err(e) => return Verdict::Reject(GossipRefused::Invalid("advert", e.to_string())),
            };
            if source != Some(advert.body.node) {
                return Verdict::Reject(GossipRefused::NotItsOwn);
            }
            let (effects, judged) = self.advert(now_ms, &advert, None, None);
            out.extend(effects);
            return match judged {
                Ok(()) => Verdict::Accept,
                // Late, early or replayed: dropped, nobody penalised (gossip can be slow
                // and clocks skewed). A credential not held yet: asked for, not passed on.
                // The sender's own credential revoked or expired: whoever passed it on may
                // not have heard yet.
                Err(
                    CoreError::StaleAdvert(_)
                    | CoreError::AdvertTooSoon { .. }
                    | CoreError::CredentialUnknown
                    | CoreError::CredentialLapsed(_),
                ) => Verdict::Ignore,
                Err(e) => Verdict::Reject(e.into()),
            };
        }
        // Every other topic is heard from members only.
        let member = source.is_some_and(|s| self.core.members().contains_key(&s));
        match topic {
            Topic::Revocation => {
                if !member {
                    self.reconcile_on_unheard_revocation(out);
                    return Verdict::Reject(GossipRefused::NotMember("a revocation"));
                }
                match self.core.revocation(now_ms, data) {
                    Ok(outs) => {
                        let appends = self.carry(now_ms, outs, true, out);
                        self.hold(appends, vec![], OnFailure::Drop, out);
                        Verdict::Accept
                    }
                    Err(e) => Verdict::Reject(e.into()),
                }
            }
            Topic::Equivocation => {
                if !member {
                    return Verdict::Reject(GossipRefused::NotMember("an equivocation proof"));
                }
                let proof = match EquivocationProof::from_bytes(data) {
                    Ok(p) => p,
                    Err(e) => {
                        return Verdict::Reject(GossipRefused::Invalid(
                            "equivocation proof",
                            e.to_string(),
                        ));
                    }
                };
                match self
                    .witnessing
                    .equivocation(now_ms, proof, self.core.members())
                {
                    // About a key that is no member (anyone can make one up): neither
                    // kept, logged nor passed on.
                    None => Verdict::Ignore,
                    Some(new) => {
                        if new {
                            let body = EntryBody::EquivocationSeen {
                                proof: data.to_vec(),
                            };
                            self.hold(vec![body], vec![], OnFailure::Drop, out);
                        }
                        Verdict::Accept
                    }
                }
            }
            Topic::Advert => Verdict::Ignore,
        }
    }

    // ---- carrying out -----------------------------------------------------------------

    /// Carries out core outputs: stops, gossip, catch-ups, membership; returns the entries
    /// to append (the caller says what waits for them). A stop of a sliver that is not
    /// running yet is kept for when it starts.
    fn carry(
        &mut self,
        now_ms: u64,
        outs: Vec<Output>,
        from_gossip: bool,
        out: &mut Vec<Effect>,
    ) -> Vec<EntryBody> {
        let mut appends = vec![];
        for o in outs {
            match o {
                Output::Append(b) => appends.push(b),
                Output::Stop { id, reason } => match self.starting.get_mut(&id) {
                    Some(s) => {
                        s.stop.get_or_insert(reason);
                    }
                    None => out.push(Effect::Stop { id, reason }),
                },
                Output::GossipRevocation(data) => {
                    if !from_gossip {
                        out.push(Effect::Publish {
                            topic: Topic::Revocation,
                            data,
                        });
                    }
                }
                Output::Joined(k) => {
                    // Admitted: no hold-off from an earlier ask outlives that.
                    self.credential_hold_offs.remove(&k);
                    self.witnessing.joined(&k);
                    if self.witnessing.needs_rebuild() {
                        self.witnessing.rebuild(self.core.members());
                    }
                    out.push(Effect::Joined(k));
                }
                Output::Left(k) => {
                    let events = self.swim.expel(now_ms, &k);
                    self.swim_events(now_ms, events, out);
                    self.witnessing.left(&k, now_ms);
                    if self.witnessing.needs_rebuild() {
                        self.witnessing.rebuild(self.core.members());
                    }
                    out.push(Effect::Left(k));
                }
                // Admission and restore take their plans and receipts themselves.
                Output::Start(_) | Output::Receipt(_) => {}
            }
        }
        appends
    }

    /// The witnessing machine's effects: a persisted page holds back what follows it (the
    /// cosignatures of what it persisted go out only once it is on disk).
    fn witness_effects(&mut self, effects: Vec<WitnessEffect>, out: &mut Vec<Effect>) {
        let mut effects = effects.into_iter();
        while let Some(e) = effects.next() {
            match e {
                WitnessEffect::Note { to, note } => out.push(Effect::Send {
                    to,
                    token: None,
                    request: Request::Witness(note),
                }),
                WitnessEffect::Fetch {
                    to,
                    origin,
                    holder,
                    request,
                } => {
                    if !self.ask(to, request, Asked::Fetch { origin, holder }, out) {
                        self.witnessing.fetch_failed(&origin);
                    }
                }
                WitnessEffect::Persist {
                    origin,
                    leaves,
                    checkpoint,
                } => {
                    let mut rest = vec![];
                    self.witness_effects(effects.collect(), &mut rest);
                    let write = self.next_write;
                    self.next_write = self.next_write.wrapping_add(1);
                    let size = checkpoint.checkpoint.size;
                    out.push(Effect::Persist {
                        write,
                        origin,
                        leaves,
                        checkpoint,
                    });
                    self.hold_writes(vec![write], rest, OnFailure::Replica { origin, size });
                    return;
                }
                WitnessEffect::Cosigned(c) => out.push(Effect::KeepCosignature(c)),
                WitnessEffect::SignCheckpoint => out.push(Effect::SignCheckpoint),
                WitnessEffect::Equivocation(p) => {
                    if let Ok(bytes) = p.to_bytes() {
                        let body = EntryBody::EquivocationSeen {
                            proof: bytes.clone(),
                        };
                        self.hold(vec![body], vec![], OnFailure::Drop, out);
                        out.push(Effect::Publish {
                            topic: Topic::Equivocation,
                            data: bytes,
                        });
                    }
                }
            }
        }
    }

    // ---- durability -------------------------------------------------------------------
}

mod durability;
pub mod members;
mod requests;
mod slivers;
#[cfg(test)]
mod tests;
