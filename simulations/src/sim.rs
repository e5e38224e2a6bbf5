//! The engine: a seeded discrete-event loop that is only a network and a clock. Every
//! simulated node is the daemon's own machine, [`Node`] (`slicefed_proto::node`): this
//! module feeds it the same `wire` requests, answers and gossip the daemon feeds it, delays
//! and drops them by its model, and plays the effects it returns (its log and replicas on
//! a simulated disk, its slivers as records). It makes no protocol decision; researchers
//! ([`crate::researchers`]), Sybils ([`crate::sybils`]) and what is measured
//! ([`crate::observe`]) live in their own modules.
//!
//! What is real: keys, certificates, tickets, receipts, revocations, adverts, checkpoints
//! and cosignatures are signed and judged by the trust and ledger crates; log entries are
//! real leaf bytes in real RFC 6962 trees; witnesses check real pages; every message's
//! size is the length of its real encoding. What is modelled: time (microseconds, no wall
//! clock), the network (latency, loss, partitions, gossip paths), the sandbox (a sliver is
//! a record that logs flows), disks (kept in memory, every write durable at once; a crash
//! loses the process, not the disk) and CPU (fixed service times).
//!
//! Shortcuts, each of which changes no decision a node makes:
//! - A message is encoded once, for its size, and handed over decoded: the daemon's
//!   decoder checks signatures the sender made, and honest senders make them right (a
//!   Sybil's messages are judged by the machine, which refuses them as from non-members).
//! - A signed object's signature is checked once where several nodes would each check the
//!   same bytes (verifiers share opened objects through `SharedOpened`; an advert is
//!   verified once per broadcast). Whether to accept it is still judged by every node.
//! - What every node would hold an equal copy of is held once: a member's judgement per
//!   credential (`SharedJudgements`, taken only when equal to the node's own) and an
//!   advert's load per broadcast.
//! - An answer nobody waits for (to a witnessing note) is counted, not delivered.
//! - A submitted module is 200 KiB of traffic but not 200 KiB of memory: its hash is the
//!   ticket's, as a router that hashed the bytes would find.
//!
//! Invariant: the run is a pure function of its [`Config`] — same seed, same trace.

use crate::metrics::{self, Category, Metrics};
use crate::net::Overlay;
use crate::world::{START_MS, World};
use rand::{RngExt, SeedableRng};
use slicefed_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use slicefed_ledger::entry::{Attribution, Decision, Direction, Entry, EntryBody, FlowRecord};
use slicefed_ledger::merkle::{self, Hash, Tree};
use slicefed_proto::core::{Capacity, NodeCore};
use slicefed_proto::node::{Effect, Input, Node, Saved, Settings, Token};
use slicefed_proto::wire::{Advert, Request, Response, WitnessNote};
use slicefed_trust::caps::Proto;
use slicefed_trust::{CertId, Invocation, InvocationHash, ModuleHash, PublicKey, Verifier};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::rc::Rc;

type Rng = rand_pcg::Pcg64Mcg;

/// Whether `SLICEFED_SIM_DEBUG_MEMBERS` is set: the run then prints the spread of member
/// lists and learning counters at each sample, every once-formed drop slower than 120 s
/// (the goal), and each second of a restart's catch-up past 8 s (read once).
pub fn debug_members() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var_os("SLICEFED_SIM_DEBUG_MEMBERS").is_some())
}

/// Whether `SLICEFED_SIM_TIME_KINDS` is set: the run then measures the wall time each
/// kind of event takes (`Metrics::event_nanos_by_kind`; ~2% slower; read once).
pub fn time_kinds() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var_os("SLICEFED_SIM_TIME_KINDS").is_some())
}

/// Microseconds per millisecond, second, minute, hour.
pub const MS: u64 = 1_000;
/// A second, µs.
pub const SEC: u64 = 1_000 * MS;
/// A minute, µs.
pub const MIN: u64 = 60 * SEC;
/// An hour, µs.
pub const HOUR: u64 = 60 * MIN;

/// A request with no answer by then has failed (the CLI's and the daemon's timeout).
pub const RPC_TIMEOUT: u64 = 10 * SEC;
/// Verifying a ticket chain and making a sliver: fsync of `SliverCreated` and start.
pub const ADMIT_US: u64 = 3 * MS;
/// Compiling a module the node has not seen (later starts use the compile cache).
pub const COMPILE_US: u64 = 250 * MS;
/// Module bytes a researcher sends with each ticket.
pub const MODULE_BYTES: usize = 200 * 1024;
/// After a restart a node catches up with members before it brings its slivers back
/// (`slicefed_proto::node::RESTORE_QUORUM`); a sliver under a revoked chain is counted as
/// running wrongly only this long after its node came back.
pub const RESTORE_WAIT: u64 = 60 * SEC;
/// A revocation must be honoured on a node this long after the node could know of it.
pub const REVOCATION_GRACE: u64 = 2 * MIN;
/// Detection is also measured apart for crashes this long after the run starts (and
/// before it ends), when every node has booted and met the others.
pub const FORMED: u64 = 20 * MIN;
/// A crashed member still listed by a live node this long after the crash is counted
/// at the end of a run (`Metrics::still_listed_end`): a drop still to come, past the
/// 2-minute goal.
pub const STILL_LISTED_AFTER: u64 = 2 * MIN;
/// Entries in one page answer.
pub const PAGE_ENTRIES: u64 = 4096;

/// A change the scenario makes at a given time.
#[derive(Clone, Debug)]
pub enum Action {
    /// Authorities revoke this many researchers' certificates at once.
    RevokeUsers(usize),
    /// Nodes in these regions (indices into `geo::REGIONS`) are cut off from the rest.
    Partition(Vec<usize>),
    /// The partition heals.
    Heal,
    /// This share of the up honest nodes dies for good, at once.
    Kill(f64),
    /// This share of the honest nodes dies for good, one by one over the given time.
    KillGradually(f64, u64),
    /// This many up nodes sign a second history (the test hook of the daemon).
    Equivocate(usize),
    /// The Sybils (certified by an untrusted authority) come online and attack.
    SybilsArrive,
    /// Authorities revoke this many up nodes' certificates at once. The machines keep
    /// running, answering probes and advertising, as a node whose owner ignores its
    /// authority would: every member must drop them all the same.
    RevokeNodes(usize),
}

/// Everything a run depends on.
#[derive(Clone, Debug)]
pub struct Config {
    /// The seed: the same seed gives the same trace.
    pub seed: u64,
    /// Honest nodes.
    pub nodes: usize,
    /// Authorities (sites).
    pub authorities: usize,
    /// Research groups.
    pub groups: usize,
    /// Machines certified by an authority nobody trusts.
    pub sybils: usize,
    /// Simulated time, µs.
    pub duration: u64,
    /// Witnesses per log.
    pub witnesses: usize,
    /// The node's housekeeping period (expiry, checkpoints, repair), µs.
    pub tick: u64,
    /// The owner's advert interval, ms (it grows with the federation; see `peer::core`).
    pub advert_base_ms: u64,
    /// Adverts each node should hear per second.
    pub adverts_heard_per_min: u64,
    /// A checkpoint is signed at most this often (when the log grew), µs.
    pub checkpoint_every: u64,
    /// Flows each sliver opens per hour (each is one log entry).
    pub flows_per_sliver_hour: f64,
    /// Packet loss on every path.
    pub loss: f64,
    /// Churn: each node is down this share of the time, drawn per node from the range.
    pub down_share: Option<(f64, f64)>,
    /// Mean length of one outage, µs.
    pub mean_outage: u64,
    /// Nodes per slice, uniformly from this range.
    pub slice_nodes: (usize, usize),
    /// How long a slice lives before its researcher deletes it, µs (range).
    pub slice_life: (u64, u64),
    /// Pause between a group's slices, µs (range).
    pub slice_pause: (u64, u64),
    /// Validity of each ticket (a lease: a missed delete ends with it), µs.
    pub ticket_valid: u64,
    /// A researcher is revoked every this often in normal operation (0: never), µs.
    pub revocation_every: u64,
    /// Sample the federation this often, µs.
    pub sample_every: u64,
    /// Scenario actions, by time (µs).
    pub actions: Vec<(u64, Action)>,
}

impl Config {
    /// The defaults at a given size; scenarios change what they study.
    pub fn sized(seed: u64, nodes: usize, authorities: usize, groups: usize, hours: f64) -> Config {
        Config {
            seed,
            nodes,
            authorities,
            groups,
            sybils: 0,
            duration: (hours * HOUR as f64) as u64,
            witnesses: 3,
            tick: 30 * SEC,
            advert_base_ms: 5_000,
            adverts_heard_per_min: slicefed_proto::core::ADVERTS_HEARD_PER_MIN,
            checkpoint_every: 5 * MIN,
            flows_per_sliver_hour: 4.0,
            loss: 0.005,
            down_share: Some((0.10, 0.30)),
            mean_outage: 4 * HOUR,
            slice_nodes: (10, 100),
            slice_life: (2 * HOUR, 8 * HOUR),
            slice_pause: (10 * MIN, 2 * HOUR),
            ticket_valid: 12 * HOUR,
            revocation_every: 2 * HOUR,
            sample_every: 10 * MIN,
            actions: vec![],
        }
    }
}

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Node(u32),
    /// A research group's researcher.
    Client(u32),
    /// An authority (`authority publish` of a node's revocation).
    Authority(u32),
}

/// Whose certificate a revocation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Revoked {
    /// A research group's researcher.
    User(u32),
    /// A node.
    Node(u32),
}

/// A gossip message on its way through the overlay.
#[derive(Clone, Debug)]
pub(crate) enum Gossip {
    Advert {
        from: u32,
        advert: Rc<Advert>,
        bytes: usize,
    },
    Revocation {
        from: u32,
        bytes: Rc<Vec<u8>>,
    },
    Proof {
        from: u32,
        bytes: Rc<Vec<u8>>,
    },
}

#[derive(Debug)]
pub(crate) enum Ev {
    Boot(u32),
    Crash {
        node: u32,
        forever: bool,
    },
    Tick(u32, u32),
    /// The wake a node's machine asked for (node, incarnation, at ms): only the latest ask
    /// counts.
    Wake(u32, u32, u64),
    /// A Sybil's advert timer (honest nodes advertise when their machine says).
    Advert(u32, u32),
    Activity(u32, u32),
    Wave {
        gossip: Rc<Gossip>,
        arrivals: Rc<Vec<(u64, u32)>>,
        next: usize,
        sent: u64,
    },
    // Payloads are boxed: the queue moves events on every push and pop, and a page
    // answer is hundreds of bytes.
    Request {
        to: u32,
        from: Endpoint,
        id: u64,
        req: Box<Request>,
        sent: u64,
        /// Whether the sender waits for the answer (a witnessing note's is not awaited).
        wanted: bool,
    },
    Reply {
        to: Endpoint,
        id: u64,
        rep: Option<Box<Response>>,
    },
    /// What a node's machine said to an advert, carried out when the advert arrives.
    AdvertEffects {
        node: u32,
        inc: u32,
        effects: Vec<Effect>,
    },
    Group(u32),
    Act(usize),
    Revoke,
    Sample,
}

impl Ev {
    /// What kind of event this is, for [`Metrics::events_by_kind`]: an index into
    /// [`metrics::EVENT_KINDS`] (a request by what it asks).
    fn kind(&self) -> usize {
        match self {
            Ev::Boot(_) => 0,
            Ev::Crash { .. } => 1,
            Ev::Tick(..) => 2,
            Ev::Wake(..) => 3,
            Ev::Advert(..) => 4,
            Ev::Activity(..) => 5,
            Ev::Wave { .. } => 6,
            Ev::Reply { .. } => 7,
            Ev::AdvertEffects { .. } => 8,
            Ev::Group(_) | Ev::Act(_) | Ev::Revoke | Ev::Sample => 9,
            Ev::Request { req, .. } => match **req {
                Request::Swim(_) => 10,
                Request::RevocationPrints { .. } => 11,
                Request::Revocations { .. } => 12,
                Request::Witness(_) => 13,
                Request::Entries { .. } => 14,
                Request::Credential => 15,
                Request::MemberList { .. } | Request::MemberCredentials { .. } => 16,
                Request::Submit { .. } => 17,
                _ => 18,
            },
        }
    }

    fn code(&self) -> u64 {
        match self {
            Ev::Boot(n) => 1 | (u64::from(*n) << 8),
            Ev::Crash { node, .. } => 2 | (u64::from(*node) << 8),
            Ev::Tick(n, _) => 3 | (u64::from(*n) << 8),
            Ev::Wake(n, _, at) => 15 | (u64::from(*n) << 8) ^ (at << 32),
            Ev::Advert(n, _) => 4 | (u64::from(*n) << 8),
            Ev::Activity(n, _) => 5 | (u64::from(*n) << 8),
            Ev::Wave { arrivals, next, .. } => {
                6 | (arrivals.get(*next).map_or(0, |a| u64::from(a.1)) << 8)
            }
            Ev::Request { to, id, .. } => 7 | (u64::from(*to) << 8) ^ (id << 32),
            Ev::Reply { id, .. } => 8 | (id << 8),
            Ev::Group(g) => 10 | (u64::from(*g) << 8),
            Ev::AdvertEffects { node, .. } => 14 | (u64::from(*node) << 8),
            Ev::Act(i) => 11 | ((*i as u64) << 8),
            Ev::Revoke => 12,
            Ev::Sample => 13,
        }
    }
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A node's log, on its disk.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) leaves: Vec<Vec<u8>>,
    pub(crate) tree: Tree,
    last_leaf: Hash,
    /// Signed checkpoints by size (recent ones; pages end on them).
    signed: BTreeMap<u64, SignedCheckpoint>,
    /// Largest size some witness cosigned.
    pub(crate) acked: u64,
    /// Witnesses that cosigned each recent size.
    cosigners: BTreeMap<u64, BTreeSet<u32>>,
    /// Largest size that `k` distinct witnesses cosigned (a cosignature of a size covers
    /// every entry below it): the entries the federation has fully acknowledged.
    pub(crate) acked_by_k: u64,
    /// `RevocationSeen` and `SliceDeleted` bodies (the index a restarted node reads them
    /// back from).
    revocations: Vec<Vec<u8>>,
    /// What the log says of each sliver created and not stopped (ticket, invocation): what
    /// a restarted daemon reads back from its log.
    logged: BTreeMap<u64, (CertId, InvocationHash)>,
    /// The newest checkpoint's size (pages are served up to it).
    pub(crate) checkpointed: u64,
}

impl Log {
    pub(crate) fn len(&self) -> u64 {
        self.tree.len()
    }

    pub(crate) fn append(&mut self, now_ms: u64, body: EntryBody) {
        match &body {
            EntryBody::RevocationSeen {
                revocation: held, ..
            }
            | EntryBody::SliceDeleted { delete: held, .. } => {
                self.revocations.push(held.clone());
            }
            EntryBody::SliverCreated {
                who,
                ticket,
                invocation,
                ..
            } => {
                self.logged.insert(who.sliver, (*ticket, invocation.hash()));
            }
            EntryBody::SliverRenewed { who, ticket, .. } => {
                if let Some(l) = self.logged.get_mut(&who.sliver) {
                    l.0 = *ticket;
                }
            }
            EntryBody::SliverStopped { who, .. } => {
                self.logged.remove(&who.sliver);
            }
            _ => {}
        }
        let e = Entry {
            seq: self.tree.len(),
            prev: self.last_leaf,
            time_ms: now_ms,
            body,
        };
        if let Ok(leaf) = e.encode() {
            let h = merkle::leaf_hash(&leaf);
            self.tree.push(h);
            self.last_leaf = h;
            self.leaves.push(leaf);
        }
    }

    /// The checkpoint at `size`, signed once and kept.
    pub(crate) fn signed_at(
        &mut self,
        key: &slicefed_trust::SecretKey,
        size: u64,
        now_ms: u64,
    ) -> Option<SignedCheckpoint> {
        if let Some(c) = self.signed.get(&size) {
            return Some(c.clone());
        }
        let root = self.tree.root_at(size).ok()?;
        let c = Checkpoint {
            origin: key.public(),
            size,
            root,
            time_ms: now_ms,
        }
        .sign(key)
        .ok()?;
        self.signed.insert(size, c.clone());
        while self.signed.len() > 64 {
            // Keep size 0 (every new witness starts there) and the newest.
            let victim = self.signed.keys().find(|s| **s != 0).copied();
            match victim {
                Some(v) => self.signed.remove(&v),
                None => break,
            };
        }
        Some(c)
    }

    /// A witness (`by`) cosigned `size` of this log with this root: counted if it is this
    /// log's root there (a forked head shown by the test hook is not).
    pub(crate) fn cosigned(&mut self, size: u64, root: &Hash, by: u32, k: usize) {
        if self.tree.root_at(size).ok().as_ref() != Some(root) {
            return;
        }
        self.acked = self.acked.max(size);
        self.cosigners.entry(size).or_default().insert(by);
        while self.cosigners.len() > 16 {
            self.cosigners.pop_first();
        }
        let mut union = BTreeSet::new();
        for (size, by) in self.cosigners.iter().rev() {
            union.extend(by.iter().copied());
            if union.len() >= k {
                self.acked_by_k = self.acked_by_k.max(*size);
                break;
            }
        }
    }
}

/// What survives a crash.
#[derive(Default)]
pub(crate) struct Disk {
    pub(crate) log: Log,
    pub(crate) replicas: Vec<(PublicKey, Tree, Option<SignedCheckpoint>)>,
    /// Saved slivers: id → (slice, ticket credential).
    pub(crate) saved: BTreeMap<u64, (u32, Rc<Vec<u8>>)>,
    /// Modules compiled before.
    pub(crate) compiled: BTreeSet<ModuleHash>,
    /// The members it listed when it went down, as world indices: the daemon keeps their
    /// credentials on disk, and a restart judges them instead of fetching them.
    pub(crate) members: Vec<u32>,
}

/// A request a node holds open: who asked, when, what its bytes count as, and the
/// service time its answer waits for.
pub(crate) struct Open {
    pub(crate) from: Endpoint,
    pub(crate) sent: u64,
    pub(crate) cat: Category,
    /// What the request was (see [`membership_kind`]), to account its answer.
    pub(crate) kind: Option<&'static str>,
    pub(crate) work: u64,
    pub(crate) wanted: bool,
}

/// Requests of one node by the simulator's id, in id order (what it holds open, what it
/// asked): a few at a time, most answered within the step that brought them (a SWIM
/// packet's), so a sorted vector that keeps its room. (B-tree maps allocated and freed a
/// node for nearly every request.)
pub(crate) struct IdMap<V>(Vec<(u64, V)>);

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap(Vec::new())
    }
}

impl<V> IdMap<V> {
    pub(crate) fn insert(&mut self, id: u64, value: V) {
        match self.0.binary_search_by_key(&id, |(k, _)| *k) {
            Ok(at) => {
                if let Some(slot) = self.0.get_mut(at) {
                    slot.1 = value;
                }
            }
            Err(at) => self.0.insert(at, (id, value)),
        }
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<V> {
        let at = self.0.binary_search_by_key(id, |(k, _)| *k).ok()?;
        Some(self.0.remove(at).1)
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        let at = self.0.binary_search_by_key(id, |(k, _)| *k).ok()?;
        self.0.get_mut(at).map(|(_, v)| v)
    }

    /// The entries, in id order.
    pub(crate) fn into_sorted(self) -> Vec<(u64, V)> {
        self.0
    }
}

/// The node process (lost on a crash).
pub(crate) struct Live {
    pub(crate) node: Node,
    /// Running slivers: id → slice.
    pub(crate) running: BTreeMap<u64, u32>,
    /// Requests it sent, by the simulator's id: the machine's token.
    pub(crate) asked: IdMap<Token>,
    /// Requests it holds open, by the simulator's id.
    pub(crate) open: IdMap<Open>,
    /// The wake its machine last asked for (ms).
    pub(crate) wake_at: Option<u64>,
    /// A restart (not the node's first start): when it began, until its machine has
    /// reconciled with a quorum of members.
    pub(crate) catching_up_since: Option<u64>,
    /// The last whole second of a slow catch-up traced (see `debug_members`).
    pub(crate) catching_up_traced: u64,
}

impl Live {
    pub(crate) fn new(node: Node) -> Live {
        Live {
            node,
            running: BTreeMap::new(),
            asked: IdMap::default(),
            open: IdMap::default(),
            wake_at: None,
            catching_up_since: None,
            catching_up_traced: 0,
        }
    }
}

#[derive(Default)]
pub(crate) struct SimNode {
    pub(crate) up: bool,
    pub(crate) dead: bool,
    pub(crate) incarnation: u32,
    pub(crate) disk: Disk,
    pub(crate) live: Option<Box<Live>>,
    /// When this node last came up.
    pub(crate) up_since: u64,
    /// When it last went down (sim time).
    pub(crate) down_since: u64,
    /// Churn: share of time down.
    pub(crate) down_share: f64,
}

pub(crate) struct SliceRun {
    pub(crate) slice: u32,
    pub(crate) name: slicefed_trust::Name,
    pub(crate) nodes: Vec<u32>,
}

pub(crate) enum OpKind {
    Bootstrap { tried: Vec<u32> },
    Create,
    Delete,
}

pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) started: u64,
    pub(crate) waiting: usize,
    pub(crate) admitted: Vec<u32>,
    pub(crate) refused: usize,
    pub(crate) unreachable: usize,
    pub(crate) last_ok: u64,
    pub(crate) retries: usize,
    pub(crate) targets: Vec<u32>,
    pub(crate) ticket: Option<CertId>,
    pub(crate) fanout: u64,
}

pub(crate) struct GroupState {
    pub(crate) current: Option<SliceRun>,
    pub(crate) op: Option<Op>,
    pub(crate) revoked: bool,
}

/// God's view of a slice, for metrics.
pub(crate) struct SliceInfo {
    pub(crate) group: u32,
    pub(crate) deleted: Option<u64>,
}

/// Per revocation in flight, for metrics.
pub(crate) struct RevTrack {
    pub(crate) index: usize,
    pub(crate) published: u64,
    pub(crate) holders: BTreeSet<u32>,
    pub(crate) up_at_publish: BTreeSet<u32>,
}

/// A run.
pub struct Sim {
    pub(crate) cfg: Config,
    pub(crate) world: World,
    pub(crate) overlay: Overlay,
    pub(crate) rng: Rng,
    pub(crate) now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub(crate) nodes: Vec<SimNode>,
    /// Which nodes are up (kept apart from `nodes`, whose entries are taken out while a
    /// handler runs).
    pub(crate) up: Vec<bool>,
    pub(crate) up_count: u64,
    pub(crate) groups: Vec<GroupState>,
    pub(crate) slices: Vec<SliceInfo>,
    pub(crate) shared: slicefed_trust::SharedOpened,
    /// SWIM's signed items checked once for every node (as `shared` does certificates).
    pub(crate) item_checks: slicefed_proto::swim::SharedItemChecks,
    /// Member judgements, one per credential for every node (as `shared` does
    /// certificates).
    pub(crate) judgements: slicefed_proto::core::SharedJudgements,
    pub(crate) next_id: u64,
    pub(crate) client_ops: BTreeMap<u64, (u32, u32)>,
    /// Revocations an authority handed to a node and has no answer for yet (request id →
    /// whom it revokes, revocation file, batches tried, node): like `authority publish`,
    /// it hands one to a few nodes at once, and to others when none of them took it.
    pub(crate) pending_revokes: BTreeMap<u64, (Revoked, Vec<u8>, u32, u32)>,
    /// Revocations a node took (later answers to the same hand-over are dropped).
    pub(crate) revocation_taken: BTreeSet<Revoked>,
    pub(crate) revs: BTreeMap<CertId, RevTrack>,
    /// Researchers revoked: when, and which node the revocation was handed to.
    pub(crate) revoked_users: BTreeMap<u32, (u64, u32)>,
    /// Nodes revoked (their machines run on): when.
    pub(crate) revoked_nodes: BTreeMap<u32, u64>,
    /// When the last partition healed (a revocation cannot cross one before).
    pub(crate) healed_at: u64,
    pub(crate) equivocators: BTreeMap<PublicKey, usize>,
    /// Member rows' peer ids back to node indices (a researcher reads the member list).
    pub(crate) peer_index: HashMap<String, u32>,
    /// Each node's peer id, by node: a `nodes list` answer names a thousand members, and
    /// encoding each key again for each answer was 2% of a run.
    pub(crate) peer_ids: Vec<String>,
    pub(crate) traffic: metrics::Traffic,
    pub(crate) traffic_at_sample: metrics::Traffic,
    /// SWIM's packet bytes by part (honest senders, counted once), the whole run's; at
    /// the last sample; and over the last sample period with that period's SWIM traffic
    /// (in + out) and up node-minutes.
    pub(crate) swim_parts: slicefed_proto::swim::PacketParts,
    pub(crate) swim_parts_at_sample: slicefed_proto::swim::PacketParts,
    pub(crate) swim_parts_last_period: (slicefed_proto::swim::PacketParts, f64, f64),
    /// The `adverts` category's bytes (in + out) by what they were: gossiped adverts,
    /// and each membership request and its answer; the whole run's, and at the last
    /// sample, and over the last sample period with its up node-minutes.
    pub(crate) advert_parts: BTreeMap<&'static str, f64>,
    pub(crate) advert_parts_at_sample: BTreeMap<&'static str, f64>,
    pub(crate) advert_parts_last_period: (BTreeMap<&'static str, f64>, f64),
    pub(crate) msgs: u64,
    /// SWIM's counters of the honest nodes that went down, summed (see
    /// [`Sim::swim_stats`]).
    pub(crate) swim_stats_gone: slicefed_proto::swim::SwimStats,
    pub(crate) msgs_at_sample: u64,
    pub(crate) up_time_us: u128,
    pub(crate) up_time_at_sample: u128,
    pub(crate) last_sample: u64,
    pub(crate) sybils_online: bool,
    trace: u64,
    /// What the run measured.
    pub metrics: Metrics,
}

fn pk_key(pk: &PublicKey) -> [u8; 32] {
    pk.0
}

/// What a membership request is, to account the `adverts` category by it (`None`: not
/// one).
pub(crate) fn membership_kind(req: &Request) -> Option<&'static str> {
    match req {
        Request::Credential => Some("credential"),
        Request::MemberList { .. } => Some("member list"),
        Request::MemberCredentials { .. } => Some("member credentials"),
        _ => None,
    }
}

/// The traffic category of a request (its answer counts in the same one).
pub(crate) fn category(req: &Request) -> Category {
    match req {
        Request::Witness(WitnessNote::Offer(_))
        | Request::Entries { .. }
        | Request::ReplicaEntries { .. }
        | Request::Replica { .. } => Category::Replication,
        Request::Witness(_) | Request::Checkpoint => Category::Checkpoints,
        Request::Revocations { .. } | Request::RevocationPrints { .. } | Request::Revoke { .. } => {
            Category::Revocations
        }
        Request::Swim(_) => Category::Swim,
        Request::Credential | Request::MemberList { .. } | Request::MemberCredentials { .. } => {
            Category::Adverts
        }
        Request::Members
        | Request::Submit { .. }
        | Request::Renew { .. }
        | Request::Status { .. }
        | Request::Logs(_)
        | Request::Delete(_)
        // Auditors are clients too (the simulator sends none).
        | Request::AddressHolders { .. }
        | Request::Vouch { .. } => Category::Researchers,
    }
}

/// The length of a request's encoding (a submission's module counted, not held).
pub(crate) fn request_bytes(req: &Request) -> usize {
    let module = match req {
        Request::Submit { .. } => MODULE_BYTES,
        _ => 0,
    };
    req.encoded_len().unwrap_or(64) + module
}

impl Sim {
    /// Builds the world and schedules the first events.
    pub fn new(cfg: Config) -> Result<Sim, crate::world::WorldError> {
        let world = World::build(cfg.seed, cfg.nodes, cfg.authorities, cfg.groups, cfg.sybils)?;
        let places = world.nodes.iter().map(|n| n.place).collect();
        let keys: Vec<[u8; 32]> = world.nodes.iter().map(|n| pk_key(&n.public)).collect();
        let overlay = Overlay::new(places, &keys);
        let mut rng = Rng::seed_from_u64(cfg.seed);
        let nodes = (0..world.nodes.len())
            .map(|_| SimNode {
                down_share: match cfg.down_share {
                    Some((lo, hi)) if hi > lo => lo + rng.random::<f64>() * (hi - lo),
                    Some((lo, _)) => lo,
                    None => 0.0,
                },
                ..SimNode::default()
            })
            .collect();
        let groups = (0..world.groups.len())
            .map(|_| GroupState {
                current: None,
                op: None,
                revoked: false,
            })
            .collect();
        let peer_ids: Vec<String> = world.nodes.iter().map(|n| n.public.peer_id()).collect();
        let peer_index = peer_ids
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let up = vec![false; world.nodes.len()];
        let mut sim = Sim {
            up,
            up_count: 0,
            world,
            overlay,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            groups,
            slices: vec![],
            shared: slicefed_trust::SharedOpened::default(),
            item_checks: slicefed_proto::swim::SharedItemChecks::default(),
            judgements: slicefed_proto::core::SharedJudgements::default(),
            next_id: 1,
            client_ops: BTreeMap::new(),
            pending_revokes: BTreeMap::new(),
            revocation_taken: BTreeSet::new(),
            revs: BTreeMap::new(),
            revoked_users: BTreeMap::new(),
            revoked_nodes: BTreeMap::new(),
            healed_at: 0,
            equivocators: BTreeMap::new(),
            peer_index,
            peer_ids,
            traffic: metrics::Traffic::default(),
            traffic_at_sample: metrics::Traffic::default(),
            swim_parts: Default::default(),
            swim_parts_at_sample: Default::default(),
            swim_parts_last_period: Default::default(),
            advert_parts: BTreeMap::new(),
            advert_parts_at_sample: BTreeMap::new(),
            advert_parts_last_period: Default::default(),
            msgs: 0,
            swim_stats_gone: Default::default(),
            msgs_at_sample: 0,
            up_time_us: 0,
            up_time_at_sample: 0,
            last_sample: 0,
            sybils_online: false,
            trace: 0xcbf2_9ce4_8422_2325,
            metrics: Metrics::default(),
            cfg,
        };
        sim.schedule_start();
        Ok(sim)
    }

    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        }));
    }

    pub(crate) fn now_ms(&self) -> u64 {
        START_MS + self.now / MS
    }

    fn schedule_start(&mut self) {
        let honest = self.world.honest;
        for i in 0..honest {
            let share = self.nodes.get(i).map_or(0.0, |n| n.down_share);
            if self.rng.random_bool(share.clamp(0.0, 1.0)) {
                // Down when the run starts: back after the rest of an outage.
                let back = self.exp(self.cfg.mean_outage);
                self.push(back, Ev::Boot(i as u32));
            } else {
                let at = self.rng.random_range(0..60 * SEC);
                self.push(at, Ev::Boot(i as u32));
            }
        }
        for g in 0..self.groups.len() {
            let at = self.rng.random_range(5 * MIN..65 * MIN);
            self.push(at, Ev::Group(g as u32));
        }
        for i in 0..self.cfg.actions.len() {
            let at = self.cfg.actions.get(i).map_or(0, |a| a.0);
            self.push(at, Ev::Act(i));
        }
        if self.cfg.revocation_every > 0 {
            let at = self.cfg.revocation_every;
            self.push(at, Ev::Revoke);
        }
        let s = self.cfg.sample_every;
        self.push(s, Ev::Sample);
    }

    pub(crate) fn exp(&mut self, mean: u64) -> u64 {
        let u: f64 = self.rng.random::<f64>();
        (-(1.0 - u).max(1e-12).ln() * mean as f64) as u64
    }

    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        if xs.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..xs.len());
        xs.get(i).copied()
    }

    /// The honest nodes that are up, in index order.
    pub(crate) fn up_nodes(&self) -> Vec<u32> {
        (0..self.world.honest as u32)
            .filter(|i| self.is_up(*i as usize))
            .collect()
    }

    /// Whether group `g`'s operation has every answer it waits for.
    pub(crate) fn op_answered(&self, g: usize) -> bool {
        self.groups
            .get(g)
            .and_then(|s| s.op.as_ref())
            .is_some_and(|o| o.waiting == 0)
    }

    pub(crate) fn honest(&self, i: usize) -> bool {
        i < self.world.honest
    }

    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.up.get(i).copied().unwrap_or(false)
    }

    pub(crate) fn key_index(&self, k: &PublicKey) -> Option<u32> {
        self.world.index.get(k).map(|i| *i as u32)
    }

    /// Runs to the end; returns the trace hash (equal for equal configs).
    pub fn run(&mut self) -> u64 {
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > self.cfg.duration {
                break;
            }
            let up_nodes = u128::from(self.up_count);
            self.up_time_us += up_nodes * u128::from(q.at.saturating_sub(self.now));
            self.now = q.at;
            self.metrics.events += 1;
            let kind = q.ev.kind();
            if let Some(n) = self.metrics.events_by_kind.get_mut(kind) {
                *n += 1;
            }
            self.trace = (self.trace ^ q.at ^ q.ev.code().rotate_left(17))
                .wrapping_mul(0x0000_0100_0000_01b3);
            if time_kinds() {
                // Wall time is measured, never read by the run: the trace is unchanged.
                let started = std::time::Instant::now();
                self.handle(q.ev);
                let took = started.elapsed().as_nanos() as u64;
                if let Some(t) = self.metrics.event_nanos_by_kind.get_mut(kind) {
                    *t += took;
                }
            } else {
                self.handle(q.ev);
            }
        }
        self.now = self.cfg.duration;
        self.sample();
        self.finish();
        self.trace
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Boot(i) => self.boot(i as usize),
            Ev::Crash { node, forever } => self.crash(node as usize, forever),
            Ev::Tick(i, inc) => {
                if self.alive(i, inc) {
                    self.tick(i as usize);
                    let next = self.now + self.cfg.tick;
                    self.push(next, Ev::Tick(i, inc));
                }
            }
            Ev::Wake(i, inc, at_ms) => {
                if self.alive(i, inc)
                    && let Some(l) = self.nodes.get_mut(i as usize).and_then(|n| n.live.as_mut())
                    && l.wake_at == Some(at_ms)
                {
                    l.wake_at = None;
                    self.feed(i as usize, Input::Wake);
                }
            }
            Ev::Advert(i, inc) => {
                if self.alive(i, inc) {
                    let every = self.sybil_advert(i as usize);
                    let next = self.now + every;
                    self.push(next, Ev::Advert(i, inc));
                }
            }
            Ev::Activity(i, inc) => {
                if self.alive(i, inc) {
                    self.activity(i as usize);
                    let next = self.now + MIN;
                    self.push(next, Ev::Activity(i, inc));
                }
            }
            Ev::Wave {
                gossip,
                arrivals,
                next,
                sent,
            } => {
                if let Some(&(_, to)) = arrivals.get(next) {
                    self.deliver_gossip(to as usize, &gossip);
                }
                if let Some(&(off, _)) = arrivals.get(next + 1) {
                    self.push(
                        sent + off,
                        Ev::Wave {
                            gossip,
                            arrivals,
                            next: next + 1,
                            sent,
                        },
                    );
                }
            }
            Ev::Request {
                to,
                from,
                id,
                req,
                sent,
                wanted,
            } => self.on_request(to as usize, from, id, *req, sent, wanted),
            Ev::Reply { to, id, rep } => match to {
                Endpoint::Node(n) => self.on_reply(n as usize, id, rep.map(|r| *r)),
                Endpoint::Client(_) | Endpoint::Authority(_)
                    if self.pending_revokes.contains_key(&id) =>
                {
                    self.on_revoke_reply(id, rep.map(|r| *r));
                }
                Endpoint::Authority(_) => {}
                Endpoint::Client(g) => self.on_client_reply(g as usize, id, rep.map(|r| *r)),
            },
            Ev::Group(g) => self.group_step(g as usize),
            Ev::AdvertEffects { node, inc, effects } => {
                if self.alive(node, inc) {
                    self.apply(node as usize, effects);
                }
            }
            Ev::Act(i) => self.act(i),
            Ev::Revoke => {
                self.revoke_users(1);
                let next = self.now + self.cfg.revocation_every;
                self.push(next, Ev::Revoke);
            }
            Ev::Sample => {
                self.sample();
                let next = self.now + self.cfg.sample_every;
                self.push(next, Ev::Sample);
            }
        }
    }

    pub(crate) fn alive(&self, i: u32, inc: u32) -> bool {
        self.nodes
            .get(i as usize)
            .is_some_and(|n| n.up && n.incarnation == inc)
    }

    // ---- node life ------------------------------------------------------------------

    /// A machine for node `i` as its daemon would make it (`slicefed_peer::node`'s `open`).
    pub(crate) fn machine(&self, i: usize, capacity: Capacity) -> Option<Node> {
        let spec = self.world.nodes.get(i)?;
        let verifier = Verifier::with_shared(self.world.policy.clone(), self.shared.clone());
        let mut core = NodeCore::with_verifier(
            slicefed_trust::SecretKey::from_seed(&spec.key.seed()),
            capacity,
            verifier,
        );
        core.set_advert_timing(self.cfg.advert_base_ms, self.cfg.adverts_heard_per_min);
        core.share_judgements(self.judgements.clone());
        let tick = self.cfg.tick.max(MS);
        let settings = Settings {
            witnesses: self.cfg.witnesses,
            tick_ms: tick / MS,
            checkpoint_every_ticks: (self.cfg.checkpoint_every / tick).max(1),
            restore: true,
        };
        let mut node = Node::new(core, settings, self.now_ms());
        node.share_item_checks(self.item_checks.clone());
        Some(node)
    }

    fn boot(&mut self, i: usize) {
        let me = match self.world.nodes.get(i) {
            Some(spec) => spec.public,
            None => return,
        };
        let capacity = Capacity {
            max_slivers: 100,
            memory: 8 << 30,
            default_sliver_memory: 64 << 20,
        };
        let Some(mut node) = self.machine(i, capacity) else {
            return;
        };
        let now_ms = self.now_ms();
        let now = self.now;
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.up || n.dead {
            return;
        }
        // What the daemon reads back from its disk: revocations and sliver records from its
        // log, replicas, saved slivers.
        node.core_mut().continue_ids_from(n.disk.log.len() + 1);
        for r in &n.disk.log.revocations {
            let _ = node.core_mut().remember_revocation(now_ms, r);
        }
        for (origin, tree, cp) in n.disk.replicas.drain(..) {
            node.witnessing_mut()
                .witness_mut()
                .restore(origin, tree, cp, 0);
        }
        let saved: Vec<Saved> = n
            .disk
            .saved
            .iter()
            .map(|(id, (_, cred))| Saved {
                id: *id,
                credential: cred.to_vec(),
                invocation: Invocation::default(),
            })
            .collect();
        let logged = n.disk.log.logged.clone();
        let world = &self.world;
        // Left on the disk until the restart has caught up (the daemon's
        // `read_member_credentials`; a crash before then still knows them).
        node.remember_credentials(n.disk.members.iter().filter_map(|j| {
            world
                .nodes
                .get(*j as usize)
                .map(|s| (s.public, std::sync::Arc::clone(&s.credential)))
        }));
        let _ = node.handle(now_ms, Input::Restart { saved, logged });
        n.disk.log.append(
            now_ms,
            EntryBody::NodeStarted {
                node: me,
                name: None,
                software: "slicefed-simulations".into(),
                policy: [0; 32],
            },
        );
        n.up = true;
        n.up_since = now;
        n.incarnation += 1;
        if let Some(u) = self.up.get_mut(i) {
            *u = true;
            self.up_count += 1;
        }
        let inc = n.incarnation;
        let mut live = Live::new(node);
        if inc > 1 {
            live.catching_up_since = Some(now);
        }
        n.live = Some(Box::new(live));
        self.overlay.touch();
        let i32 = i as u32;
        // The daemon's first tick comes as it starts (a tokio interval's first tick is
        // immediate), the next a tick later; boots are spread, and so are the ticks.
        let t = self.rng.random_range(0..SEC);
        self.push(now + t, Ev::Tick(i32, inc));
        let f = self.rng.random_range(0..MIN);
        self.push(now + f, Ev::Activity(i32, inc));
        // Churn: the next outage.
        if self.honest(i) && self.cfg.down_share.is_some() {
            let share = self
                .nodes
                .get(i)
                .map_or(0.0, |n| n.down_share)
                .clamp(0.01, 0.99);
            let mean_up = (self.cfg.mean_outage as f64 * (1.0 - share) / share) as u64;
            let up_for = self.exp(mean_up);
            self.push(
                now + up_for,
                Ev::Crash {
                    node: i32,
                    forever: false,
                },
            );
        }
    }

    pub(crate) fn crash(&mut self, i: usize, forever: bool) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if forever {
            n.dead = true;
        }
        if !n.up {
            return;
        }
        n.up = false;
        n.down_since = self.now;
        if let Some(u) = self.up.get_mut(i) {
            *u = false;
            self.up_count -= 1;
        }
        let mut open = IdMap::default();
        if let Some(live) = n.live.take() {
            // Like SIGKILL: slivers vanish unlogged (they come back from `saved`), replicas
            // stay on disk; what it was asked and had not answered times out.
            let Live { node, open: o, .. } = *live;
            open = o;
            if i < self.world.honest {
                self.swim_stats_gone.add(&node.swim_stats());
            }
            let index = &self.world.index;
            let listed = node
                .core()
                .members()
                .keys()
                .filter_map(|k| index.get(k).map(|j| *j as u32));
            // The members' credentials it kept: those it lists, and, while its restart had
            // not caught up, those it kept from before too (the daemon prunes them only
            // once caught up: `prune_member_credentials`).
            if node.catching_up() {
                n.disk.members.extend(listed);
                n.disk.members.sort_unstable();
                n.disk.members.dedup();
            } else {
                n.disk.members = listed.collect();
            }
            n.disk.replicas = node.into_replicas();
        }
        for (id, o) in open.into_sorted() {
            self.push(
                o.sent + RPC_TIMEOUT,
                Ev::Reply {
                    to: o.from,
                    id,
                    rep: None,
                },
            );
        }
        self.overlay.touch();
        if !forever && self.cfg.down_share.is_some() {
            let back = self.exp(self.cfg.mean_outage);
            let now = self.now;
            self.push(now + back, Ev::Boot(i as u32));
        }
    }

    pub(crate) fn take(&mut self, i: usize) -> Option<SimNode> {
        let n = self.nodes.get_mut(i)?;
        if !n.up || n.live.is_none() {
            return None;
        }
        Some(std::mem::take(n))
    }

    pub(crate) fn put(&mut self, i: usize, n: SimNode) {
        if let Some(slot) = self.nodes.get_mut(i) {
            *slot = n;
        }
    }

    // ---- periodic work --------------------------------------------------------------

    fn tick(&mut self, i: usize) {
        if !self.honest(i) {
            self.sybil_attack(i);
            return;
        }
        let log_size = self.nodes.get(i).map_or(0, |n| n.disk.log.len());
        self.feed(i, Input::Tick { log_size });
    }

    /// Each running sliver opens flows now and then; each is a log entry (the sandbox
    /// writes flow records to the ledger itself, not through the machine).
    fn activity(&mut self, i: usize) {
        let p = (self.cfg.flows_per_sliver_hour / 60.0).clamp(0.0, 1.0);
        let now_ms = self.now_ms();
        let Some(mut n) = self.take(i) else { return };
        if let Some(live) = n.live.as_ref() {
            // Decide first, clone only the slivers that open a flow.
            let count = live.node.core().slivers().count();
            let open: Vec<bool> = (0..count).map(|_| self.rng.random_bool(p)).collect();
            let plans: Vec<Attribution> = live
                .node
                .core()
                .slivers()
                .zip(open)
                .filter(|(_, o)| *o)
                .map(|(p, _)| p.who.clone())
                .collect();
            for who in plans {
                let port = self.rng.random_range(1024..65535u16);
                let flow = FlowRecord {
                    who,
                    proto: Proto::Tcp,
                    direction: Direction::Outbound,
                    local: std::net::SocketAddr::from(([10, 0, 0, 1], port)),
                    remote: std::net::SocketAddr::from(([192, 0, 2, 7], 80)),
                    decision: Decision::Allowed,
                    bytes_out: 1200,
                    bytes_in: 64_000,
                    packets_out: 3,
                    packets_in: 50,
                    first_ms: now_ms.saturating_sub(900),
                    last_ms: now_ms,
                };
                n.disk.log.append(now_ms, EntryBody::Flow(flow));
            }
        }
        self.put(i, n);
    }

    // ---- the router: inputs in, effects out -----------------------------------------

    // ---- the network ----------------------------------------------------------------

    // ---- receiving ------------------------------------------------------------------
}

/// The index of the slice a sliver runs: slice names end in their global index
/// (`<prefix><index>`).
pub(crate) fn slice_of(name: &str) -> u32 {
    name.rsplit('s')
        .next()
        .and_then(|x| x.parse::<u32>().ok())
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::IdMap;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The sorted vector answers as the B-tree map it replaced, and lists in id order.
        #[test]
        fn an_id_map_is_a_map_in_id_order(ops in proptest::collection::vec((0u8..3, 0u64..40, any::<u32>()), 0..200)) {
            let mut map = IdMap::default();
            let mut model = BTreeMap::new();
            for (op, id, v) in ops {
                match op {
                    0 => {
                        map.insert(id, v);
                        model.insert(id, v);
                    }
                    1 => prop_assert_eq!(map.remove(&id), model.remove(&id)),
                    _ => prop_assert_eq!(map.get_mut(&id).map(|x| *x), model.get_mut(&id).map(|x| *x)),
                }
            }
            prop_assert_eq!(map.into_sorted(), model.into_iter().collect::<Vec<_>>());
        }
    }
}
