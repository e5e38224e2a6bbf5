//! The engine: a seeded discrete-event loop that drives, for every simulated node, the same
//! sans-IO state machines the daemon drives ([`NodeCore`], [`Witness`], [`WitnessSet`]),
//! over the overlay of [`crate::net`] and the clock of this module.
//!
//! What is real: keys, certificates, tickets, receipts, revocations, adverts and
//! checkpoints are signed and judged by the trust and ledger crates; log entries are real
//! leaf bytes in real RFC 6962 trees; witnesses check real pages. What is modelled: time
//! (microseconds, no wall clock), the network (latency, loss, partitions, gossip paths),
//! the sandbox (a sliver is a record that logs flows), disks (kept in memory; a crash loses
//! the process state, not the disk) and CPU (fixed service times).
//!
//! Shortcuts, each of which changes no decision a node makes:
//! - A signed object's signature is checked once where several nodes would each check the
//!   same bytes (verifiers share opened objects through `SharedOpened`; an advert is
//!   verified once per broadcast). Whether to accept it is still judged by every node.
//! - Witness cosignatures are counted, not signed: only their origin reads them here.
//! - A witness handing a dead node's log over serves the leaves from that node's disk
//!   (which hold the very bytes the witness verified and stored).
//!
//! Invariant: the run is a pure function of its [`Config`] — same seed, same trace.

use crate::geo;
use crate::metrics::{self, Category, Creation, EquivocationRun, Metrics, RevocationRun};
use crate::net::{MESH_DEGREE, Overlay};
use crate::world::{START_MS, World};
use rand::{RngExt, SeedableRng};
use slicefed_ledger::checkpoint::{Checkpoint, EquivocationProof, SignedCheckpoint};
use slicefed_ledger::entry::{
    Attribution, Decision, Direction, Entry, EntryBody, FlowRecord, Usage,
};
use slicefed_ledger::merkle::{self, Hash, Tree};
use slicefed_proto::core::{Capacity, NodeCore, Output, StopReason};
use slicefed_proto::wire::{Advert, AdvertBody, HolderRequest};
use slicefed_proto::witness::{Witness, WitnessOutput, WitnessSet};
use slicefed_trust::caps::{NetworkRights, NodeSet, Proto, ResourceCaps, Validity};
use slicefed_trust::objects::{self, NodeReceipt, Nonce, Revocation, SliceTicket};
use slicefed_trust::{CertId, Credential, ModuleHash, Name, PublicKey, SharedOpened, Verifier};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;
use std::sync::Arc;

type Rng = rand_pcg::Pcg64Mcg;

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
/// After a restart a node waits this long for a member's revocations before it brings
/// back its slivers anyway (it asks the first members it hears).
pub const RESTORE_WAIT: u64 = 60 * SEC;
/// A revocation must be honoured on a node this long after the node could know of it.
pub const REVOCATION_GRACE: u64 = 2 * MIN;
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
    pub adverts_heard_per_sec: u64,
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
            adverts_heard_per_sec: slicefed_proto::core::ADVERTS_HEARD_PER_SEC,
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
enum Endpoint {
    Node(u32),
    Client(u32),
}

#[derive(Clone, Debug)]
enum Gossip {
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
        proof: Rc<EquivocationProof>,
        bytes: usize,
    },
}

#[derive(Clone, Debug)]
enum Req {
    Members,
    Submit {
        cred: Arc<Vec<u8>>,
        module: ModuleHash,
    },
    Delete(Box<HolderRequest>),
    Revoke(Rc<Vec<u8>>),
    Entries {
        from: u64,
    },
    ReplicaEntries {
        origin: PublicKey,
        from: u64,
    },
    Revocations {
        after: Option<CertId>,
    },
}

#[derive(Clone, Debug)]
enum Rep {
    Members(Vec<u32>),
    Receipt(Vec<u8>),
    Stopped,
    Page {
        base: SignedCheckpoint,
        end: SignedCheckpoint,
        leaves: Vec<Vec<u8>>,
    },
    ReplicaPage {
        end: SignedCheckpoint,
        leaves: Vec<Vec<u8>>,
    },
    Revocations(Vec<Vec<u8>>),
    Error,
}

#[derive(Clone, Debug)]
enum Note {
    /// An origin's checkpoint, to its witnesses.
    Checkpoint(SignedCheckpoint),
    /// A witness cosigned this: to the origin and the other witnesses.
    Cosigned(SignedCheckpoint),
    /// A holder offers a dead origin's log.
    Offer(SignedCheckpoint),
}

#[derive(Debug)]
enum Ev {
    Boot(u32),
    Crash {
        node: u32,
        forever: bool,
    },
    Tick(u32, u32),
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
        req: Box<Req>,
        sent: u64,
    },
    Reply {
        to: Endpoint,
        id: u64,
        rep: Option<Box<Rep>>,
    },
    Note {
        to: u32,
        from: u32,
        note: Box<Note>,
    },
    /// What a node's core said to an advert, carried out when the advert arrives.
    AdvertOutputs {
        node: u32,
        inc: u32,
        outs: Vec<Output>,
    },
    Group(u32),
    Act(usize),
    Revoke,
    Sample,
}

impl Ev {
    fn code(&self) -> u64 {
        match self {
            Ev::Boot(n) => 1 | (u64::from(*n) << 8),
            Ev::Crash { node, .. } => 2 | (u64::from(*node) << 8),
            Ev::Tick(n, _) => 3 | (u64::from(*n) << 8),
            Ev::Advert(n, _) => 4 | (u64::from(*n) << 8),
            Ev::Activity(n, _) => 5 | (u64::from(*n) << 8),
            Ev::Wave { arrivals, next, .. } => {
                6 | (arrivals.get(*next).map_or(0, |a| u64::from(a.1)) << 8)
            }
            Ev::Request { to, id, .. } => 7 | (u64::from(*to) << 8) ^ (id << 32),
            Ev::Reply { id, .. } => 8 | (id << 8),
            Ev::Note { to, from, .. } => 9 | (u64::from(*to) << 8) | (u64::from(*from) << 32),
            Ev::Group(g) => 10 | (u64::from(*g) << 8),
            Ev::AdvertOutputs { node, .. } => 14 | (u64::from(*node) << 8),
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
struct Log {
    leaves: Vec<Vec<u8>>,
    tree: Tree,
    last_leaf: Hash,
    /// Signed checkpoints by size (recent ones; pages end on them).
    signed: BTreeMap<u64, SignedCheckpoint>,
    /// Largest size some witness cosigned.
    acked: u64,
    /// Witnesses that cosigned each recent size.
    cosigners: BTreeMap<u64, BTreeSet<u32>>,
    /// Largest size that `k` distinct witnesses cosigned (a cosignature of a size covers
    /// every entry below it): the entries the federation has fully acknowledged.
    acked_by_k: u64,
    /// `RevocationSeen` bodies (the index a restarted node reads them back from).
    revocations: Vec<Vec<u8>>,
}

impl Log {
    fn len(&self) -> u64 {
        self.tree.len()
    }

    fn append(&mut self, now_ms: u64, body: EntryBody) {
        if let EntryBody::RevocationSeen { revocation, .. } = &body {
            self.revocations.push(revocation.clone());
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
    fn signed_at(
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
}

/// What survives a crash.
#[derive(Default)]
struct Disk {
    log: Log,
    replicas: Vec<(PublicKey, Tree, Option<SignedCheckpoint>)>,
    /// Saved slivers: id → (slice, ticket credential).
    saved: BTreeMap<u64, (u32, Arc<Vec<u8>>)>,
    /// Modules compiled before.
    compiled: BTreeSet<ModuleHash>,
}

/// What a request this node sent was for.
#[derive(Clone, Debug)]
enum Pending {
    Fetch(PublicKey),
    FetchReplica(PublicKey, PublicKey),
    /// A catch-up page asked of a member: after which id, the how-many-th.
    Revocations(PublicKey, Option<CertId>, u32),
}

/// The node process (lost on a crash).
struct Live {
    core: NodeCore,
    witness: Witness,
    mine: WitnessSet,
    co: BTreeMap<PublicKey, WitnessSet>,
    running: BTreeMap<u64, u32>,
    pending: BTreeMap<u64, Pending>,
    restore_by: Option<u64>,
    last_cp: u64,
    last_cp_size: u64,
    ticks: u64,
    equivocate: bool,
    equivocated: bool,
}

#[derive(Default)]
struct SimNode {
    up: bool,
    dead: bool,
    incarnation: u32,
    disk: Disk,
    live: Option<Box<Live>>,
    /// When this node last came up.
    up_since: u64,
    /// Churn: share of time down.
    down_share: f64,
}

struct SliceRun {
    slice: u32,
    name: Name,
    module: ModuleHash,
    cred: Arc<Vec<u8>>,
    nodes: Vec<u32>,
}

enum OpKind {
    Bootstrap { tried: Vec<u32> },
    Create,
    Delete,
}

struct Op {
    kind: OpKind,
    started: u64,
    waiting: usize,
    admitted: Vec<u32>,
    refused: usize,
    unreachable: usize,
    last_ok: u64,
    retries: usize,
    targets: Vec<u32>,
    ticket: Option<CertId>,
    fanout: u64,
}

struct GroupState {
    next_slice: u32,
    current: Option<SliceRun>,
    op: Option<Op>,
    revoked: bool,
}

/// God's view of a slice, for metrics.
struct SliceInfo {
    group: u32,
    deleted: Option<u64>,
}

/// Per revocation in flight, for metrics.
struct RevTrack {
    index: usize,
    published: u64,
    holders: BTreeSet<u32>,
    up_at_publish: BTreeSet<u32>,
}

/// A run.
pub struct Sim {
    cfg: Config,
    world: World,
    overlay: Overlay,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    nodes: Vec<SimNode>,
    /// Which nodes are up (kept apart from `nodes`, whose entries are taken out while a
    /// handler runs).
    up: Vec<bool>,
    up_count: u64,
    groups: Vec<GroupState>,
    slices: Vec<SliceInfo>,
    shared: SharedOpened,
    next_id: u64,
    client_ops: BTreeMap<u64, (u32, u32)>,
    revs: BTreeMap<CertId, RevTrack>,
    /// Researchers revoked: when, and which node the revocation was handed to.
    revoked_users: BTreeMap<u32, (u64, u32)>,
    /// When the last partition healed (a revocation cannot cross one before).
    healed_at: u64,
    equivocators: BTreeMap<PublicKey, usize>,
    traffic: metrics::Traffic,
    traffic_at_sample: metrics::Traffic,
    msgs: u64,
    msgs_at_sample: u64,
    up_time_us: u128,
    up_time_at_sample: u128,
    last_sample: u64,
    sybils_online: bool,
    /// The revocation being honoured right now (stops are attributed to it).
    processing_rev: Option<CertId>,
    trace: u64,
    /// What the run measured.
    pub metrics: Metrics,
}

fn pk_key(pk: &PublicKey) -> [u8; 32] {
    pk.0
}

/// A checkpoint into the witness; members are listed only when it holds no replica of the
/// origin yet (see `Witness::checkpoint`).
fn witness_checkpoint(l: &mut Live, now_ms: u64, cp: SignedCheckpoint) -> Vec<WitnessOutput> {
    let origin = cp.checkpoint.origin;
    let members: Vec<PublicKey> = if l.witness.replica_size(&origin).is_some() {
        vec![]
    } else {
        l.core.members().keys().copied().collect()
    };
    l.witness.checkpoint(now_ms, cp, &members)
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
                next_slice: 0,
                current: None,
                op: None,
                revoked: false,
            })
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
            shared: SharedOpened::default(),
            next_id: 1,
            client_ops: BTreeMap::new(),
            revs: BTreeMap::new(),
            revoked_users: BTreeMap::new(),
            healed_at: 0,
            equivocators: BTreeMap::new(),
            traffic: metrics::Traffic::default(),
            traffic_at_sample: metrics::Traffic::default(),
            msgs: 0,
            msgs_at_sample: 0,
            up_time_us: 0,
            up_time_at_sample: 0,
            last_sample: 0,
            sybils_online: false,
            processing_rev: None,
            trace: 0xcbf2_9ce4_8422_2325,
            metrics: Metrics::default(),
            cfg,
        };
        sim.schedule_start();
        Ok(sim)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        }));
    }

    fn now_ms(&self) -> u64 {
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

    fn exp(&mut self, mean: u64) -> u64 {
        let u: f64 = self.rng.random::<f64>();
        (-(1.0 - u).max(1e-12).ln() * mean as f64) as u64
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        if xs.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..xs.len());
        xs.get(i).copied()
    }

    /// The honest nodes that are up, in index order.
    fn up_nodes(&self) -> Vec<u32> {
        (0..self.world.honest as u32)
            .filter(|i| self.is_up(*i as usize))
            .collect()
    }

    /// Whether group `g`'s operation has every answer it waits for.
    fn op_answered(&self, g: usize) -> bool {
        self.groups
            .get(g)
            .and_then(|s| s.op.as_ref())
            .is_some_and(|o| o.waiting == 0)
    }

    fn honest(&self, i: usize) -> bool {
        i < self.world.honest
    }

    fn is_up(&self, i: usize) -> bool {
        self.up.get(i).copied().unwrap_or(false)
    }

    fn key_index(&self, k: &PublicKey) -> Option<u32> {
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
            self.trace = (self.trace ^ q.at ^ q.ev.code().rotate_left(17))
                .wrapping_mul(0x0000_0100_0000_01b3);
            self.handle(q.ev);
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
            Ev::Advert(i, inc) => {
                if self.alive(i, inc) {
                    let every = self.advert(i as usize);
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
            } => self.on_request(to as usize, from, id, *req, sent),
            Ev::Reply { to, id, rep } => match to {
                Endpoint::Node(n) => self.on_reply(n as usize, id, rep.map(|r| *r)),
                Endpoint::Client(g) => self.on_client_reply(g as usize, id, rep.map(|r| *r)),
            },
            Ev::Note { to, from, note } => self.on_note(to as usize, from as usize, *note),
            Ev::Group(g) => self.group_step(g as usize),
            Ev::AdvertOutputs { node, inc, outs } => {
                if self.alive(node, inc)
                    && let Some(mut n) = self.take(node as usize)
                {
                    self.carry_out(node as usize, &mut n, outs, true);
                    self.put(node as usize, n);
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

    fn alive(&self, i: u32, inc: u32) -> bool {
        self.nodes
            .get(i as usize)
            .is_some_and(|n| n.up && n.incarnation == inc)
    }

    // ---- node life ------------------------------------------------------------------

    fn boot(&mut self, i: usize) {
        let Some(spec) = self.world.nodes.get(i) else {
            return;
        };
        let me = spec.public;
        let verifier = Verifier::with_shared(self.world.policy.clone(), self.shared.clone());
        let mut core = NodeCore::with_verifier(
            slicefed_trust::SecretKey::from_seed(&spec.key.seed()),
            Capacity {
                max_slivers: 100,
                memory: 8 << 30,
                default_sliver_memory: 64 << 20,
            },
            verifier,
        );
        core.set_advert_timing(self.cfg.advert_base_ms, self.cfg.adverts_heard_per_sec);
        let now_ms = self.now_ms();
        let now = self.now;
        let k = self.cfg.witnesses;
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.up || n.dead {
            return;
        }
        core.continue_ids_from(n.disk.log.len() + 1);
        for r in &n.disk.log.revocations {
            let _ = core.remember_revocation(now_ms, r);
        }
        let mut witness = Witness::new(me, k);
        for (origin, tree, cp) in n.disk.replicas.drain(..) {
            witness.restore(origin, tree, cp, 0);
        }
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
        let restore_by = (!n.disk.saved.is_empty()).then_some(now + RESTORE_WAIT);
        n.live = Some(Box::new(Live {
            core,
            witness,
            mine: WitnessSet::new(me, k, &[]),
            co: BTreeMap::new(),
            running: BTreeMap::new(),
            pending: BTreeMap::new(),
            restore_by,
            last_cp: 0,
            last_cp_size: 0,
            ticks: 0,
            equivocate: false,
            equivocated: false,
        }));
        self.overlay.touch();
        let i32 = i as u32;
        let a = self.rng.random_range(0..SEC);
        self.push(now + a, Ev::Advert(i32, inc));
        let t = self.rng.random_range(0..self.cfg.tick.max(1));
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

    fn crash(&mut self, i: usize, forever: bool) {
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
        if let Some(u) = self.up.get_mut(i) {
            *u = false;
            self.up_count -= 1;
        }
        if let Some(live) = n.live.take() {
            // Like SIGKILL: slivers vanish unlogged (they come back from `saved`), replicas
            // stay on disk.
            n.disk.replicas = live.witness.into_replicas();
        }
        self.overlay.touch();
        if !forever && self.cfg.down_share.is_some() {
            let back = self.exp(self.cfg.mean_outage);
            let now = self.now;
            self.push(now + back, Ev::Boot(i as u32));
        }
    }

    fn take(&mut self, i: usize) -> Option<SimNode> {
        let n = self.nodes.get_mut(i)?;
        if !n.up || n.live.is_none() {
            return None;
        }
        Some(std::mem::take(n))
    }

    fn put(&mut self, i: usize, n: SimNode) {
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
        let Some(mut n) = self.take(i) else { return };
        let now_ms = self.now_ms();
        if let Some(live) = n.live.as_mut() {
            live.ticks += 1;
            let outs = live.core.tick(now_ms);
            self.carry_out(i, &mut n, outs, false);
        }
        self.maybe_restore(i, &mut n);
        self.checkpoint(i, &mut n);
        // Hand over dead nodes' logs every half hour or so (each look ranks every member
        // for each replica whose origin is gone, and most of those come back).
        let every = (30 * MIN / self.cfg.tick.max(1)).max(1);
        let repair = n
            .live
            .as_ref()
            .is_some_and(|l| l.ticks.is_multiple_of(every));
        if repair && let Some(live) = n.live.as_ref() {
            let members: Vec<PublicKey> = live.core.members().keys().copied().collect();
            let me = i as u32;
            for (to, cp) in live.witness.handovers(&members) {
                if let Some(t) = self.key_index(&to) {
                    self.send_note(me, t, Note::Offer(cp), Category::Replication, 200);
                }
            }
        }
        self.put(i, n);
    }

    /// Signs a checkpoint when the log grew and sends it to this node's witnesses (every
    /// tenth tick the latest again, so new witnesses learn it).
    fn checkpoint(&mut self, i: usize, n: &mut SimNode) {
        let now = self.now;
        let now_ms = self.now_ms();
        let every = self.cfg.checkpoint_every;
        let Some(spec) = self.world.nodes.get(i) else {
            return;
        };
        let key = &spec.key;
        let Some(live) = n.live.as_mut() else { return };
        let size = n.disk.log.len();
        let grown = size > live.last_cp_size && now.saturating_sub(live.last_cp) >= every;
        // The latest again every five minutes or so, for witnesses that are new.
        let again_every = (5 * MIN / self.cfg.tick.max(1)).max(1);
        let again = live.ticks.is_multiple_of(again_every) && live.last_cp_size > 0;
        if !grown && !again {
            return;
        }
        let size = if grown { size } else { live.last_cp_size };
        let Some(cp) = n.disk.log.signed_at(key, size, now_ms) else {
            return;
        };
        if grown {
            live.last_cp = now;
            live.last_cp_size = size;
        }
        let witnesses: Vec<PublicKey> = live.mine.current().copied().collect();
        let fork = live.equivocate && !live.equivocated && grown && witnesses.len() >= 2;
        if fork {
            live.equivocated = true;
        }
        let mut notes = Vec::with_capacity(witnesses.len());
        for (j, w) in witnesses.iter().enumerate() {
            let mut c = cp.clone();
            if fork && j + 1 == witnesses.len() {
                // The test hook: a second history head at the same size, signed all the
                // same, shown to one witness only (a split view).
                let mut forged = cp.checkpoint;
                forged.root = ModuleHash::of(&[forged.root.as_slice(), b"forged"].concat()).0;
                if let Ok(f) = forged.sign(key) {
                    c = f;
                }
            }
            notes.push((*w, c));
        }
        let me_pk = spec.public;
        if fork
            && let Some(r) = self.equivocators.get(&me_pk).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
        {
            m.forked_s = now as f64 / SEC as f64;
        }
        let me = i as u32;
        for (w, c) in notes {
            if let Some(t) = self.key_index(&w) {
                self.send_note(me, t, Note::Checkpoint(c), Category::Checkpoints, 180);
            }
        }
    }

    fn advert(&mut self, i: usize) -> u64 {
        let Some(n) = self.nodes.get(i) else {
            return MIN;
        };
        let Some(live) = n.live.as_ref() else {
            return MIN;
        };
        let Some(spec) = self.world.nodes.get(i) else {
            return MIN;
        };
        let load = live.core.load();
        let every = live.core.advert_interval_ms() * MS;
        let body = AdvertBody {
            node: spec.public,
            credential: spec.credential.to_vec(),
            slivers: load.slivers,
            free_memory: load.free_memory,
            load_x100: 0,
            uptime_secs: self.now.saturating_sub(n.up_since) / SEC,
            version: "sim".into(),
            tags: vec![],
            traffic: Default::default(),
            addrs: vec![],
            time_ms: self.now_ms(),
            revocations: load.revocations,
            unhealthy: load.unhealthy.clone(),
        };
        let Ok(advert) = body.sign(&spec.key) else {
            return every;
        };
        let Ok(bytes) = advert.to_bytes() else {
            return every;
        };
        // Verified once here for every receiver (they would each check the same bytes).
        let Ok(advert) = Advert::from_bytes(&bytes) else {
            return every;
        };
        let g = Gossip::Advert {
            from: i as u32,
            advert: Rc::new(advert),
            bytes: bytes.len(),
        };
        self.broadcast(i, g);
        every
    }

    /// Each running sliver opens flows now and then; each is a log entry.
    fn activity(&mut self, i: usize) {
        let p = (self.cfg.flows_per_sliver_hour / 60.0).clamp(0.0, 1.0);
        let now_ms = self.now_ms();
        let Some(mut n) = self.take(i) else { return };
        if let Some(live) = n.live.as_ref() {
            // Decide first, clone only the slivers that open a flow.
            let count = live.core.slivers().count();
            let open: Vec<bool> = (0..count).map(|_| self.rng.random_bool(p)).collect();
            let plans: Vec<Attribution> = live
                .core
                .slivers()
                .zip(open)
                .filter(|(_, o)| *o)
                .map(|(p, _)| p.who.clone())
                .collect();
            for who in plans {
                {
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
        }
        self.put(i, n);
    }

    /// Restores saved slivers once the node has had time to catch up with revocations:
    /// [`RESTORE_WAIT`] after it came back, in which it hears dozens of members' digests.
    /// (Restoring after the first catch-up was not enough: the first member heard may be
    /// behind too, and the simulator caught a revoked sliver restored that way.)
    fn maybe_restore(&mut self, i: usize, n: &mut SimNode) {
        let now = self.now;
        let now_ms = self.now_ms();
        let Some(live) = n.live.as_mut() else { return };
        let Some(by) = live.restore_by else { return };
        if now < by {
            return;
        }
        live.restore_by = None;
        let saved: Vec<(u64, u32, Arc<Vec<u8>>)> = n
            .disk
            .saved
            .iter()
            .map(|(id, (s, c))| (*id, *s, c.clone()))
            .collect();
        for (id, slice, cred) in saved {
            match live
                .core
                .restore(now_ms, id, &cred, &slicefed_trust::Invocation::default())
            {
                Ok(outs) => {
                    live.running.insert(id, slice);
                    let group = self.slices.get(slice as usize).map(|s| s.group);
                    if let Some(g) = group
                        && let Some((at, by)) = self.revoked_users.get(&g)
                        && now > (*at).max(self.healed_at) + REVOCATION_GRACE
                        && self.overlay.reachable(*by as usize, i)
                    {
                        self.metrics.revoked_restores += 1;
                    }
                    for o in outs {
                        if let Output::Append(b) = o {
                            n.disk.log.append(now_ms, b);
                        }
                    }
                }
                Err(why) => {
                    n.disk.saved.remove(&id);
                    n.disk.log.append(
                        now_ms,
                        EntryBody::OwnerAction {
                            action: format!("did not restore sliver {id} after a restart: {why}")
                                .chars()
                                .take(900)
                                .collect(),
                            who: None,
                        },
                    );
                }
            }
        }
    }

    // ---- core outputs ---------------------------------------------------------------

    /// Carries out a core's outputs at node `i` (the daemon's `carry_out`). Returns the
    /// receipt, if one was produced.
    fn carry_out(
        &mut self,
        i: usize,
        n: &mut SimNode,
        outs: Vec<Output>,
        from_gossip: bool,
    ) -> Option<Vec<u8>> {
        let now_ms = self.now_ms();
        let mut receipt = None;
        for o in outs {
            match o {
                Output::Append(body) => n.disk.log.append(now_ms, body),
                Output::Receipt(r) => receipt = Some(r),
                Output::Start(plan) => {
                    let slice = self.slice_of(plan.who.slice.as_str());
                    if let Some(live) = n.live.as_mut() {
                        live.running.insert(plan.id, slice);
                    }
                }
                Output::Stop { id, reason } => {
                    // The sandbox stops it at once and reports the ending.
                    if let Some(live) = n.live.as_mut() {
                        live.running.remove(&id);
                        let ended = live.core.ended(id, reason.as_str(), Usage::default());
                        for e in ended {
                            if let Output::Append(b) = e {
                                n.disk.log.append(now_ms, b);
                            }
                        }
                    }
                    n.disk.saved.remove(&id);
                    if reason == StopReason::Revoked {
                        self.revocation_stopped(i);
                    }
                }
                Output::GossipRevocation(bytes) => {
                    if !from_gossip {
                        let g = Gossip::Revocation {
                            from: i as u32,
                            bytes: Rc::new(bytes),
                        };
                        self.broadcast(i, g);
                    }
                }
                Output::FetchRevocations(member) => {
                    if let Some(t) = self.key_index(&member) {
                        let id = self.node_request(i, n, t, Req::Revocations { after: None });
                        if let Some(live) = n.live.as_mut() {
                            live.pending
                                .insert(id, Pending::Revocations(member, None, 0));
                        }
                    }
                }
                Output::Joined(k) => {
                    if let Some(live) = n.live.as_mut() {
                        live.mine.joined(&k);
                        for s in live.co.values_mut() {
                            s.joined(&k);
                        }
                    }
                    self.rebuild_sets(i, n);
                }
                Output::Left(k) => {
                    if let Some(live) = n.live.as_mut() {
                        live.mine.left(&k);
                        for s in live.co.values_mut() {
                            s.left(&k);
                        }
                    }
                    self.rebuild_sets(i, n);
                }
            }
        }
        receipt
    }

    fn rebuild_sets(&mut self, i: usize, n: &mut SimNode) {
        let k = self.cfg.witnesses;
        let Some(me) = self.world.nodes.get(i).map(|s| s.public) else {
            return;
        };
        let Some(live) = n.live.as_mut() else { return };
        let stale = live.mine.needs_rebuild() || live.co.values().any(WitnessSet::needs_rebuild);
        if !stale {
            return;
        }
        let mut members: Vec<PublicKey> = live.core.members().keys().copied().collect();
        if live.mine.needs_rebuild() {
            live.mine = WitnessSet::new(me, k, &members);
        }
        members.push(me);
        for s in live.co.values_mut() {
            if s.needs_rebuild() {
                *s = WitnessSet::new(*s.origin(), k, &members);
            }
        }
    }

    fn slice_of(&self, name: &str) -> u32 {
        // Slice names end in their global index: `<prefix><index>`.
        name.rsplit('s')
            .next()
            .and_then(|x| x.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    }

    // ---- the network ----------------------------------------------------------------

    fn broadcast(&mut self, src: usize, g: Gossip) {
        let honest = self.world.honest;
        // Honest nodes dial members (up honest nodes, as far as the overlay goes); Sybils
        // dial honest nodes; nobody dials a Sybil.
        self.overlay.rebuild(&self.up, |_, b| b < honest);
        let from_sybil = !self.honest(src);
        let arrivals = self.overlay.broadcast(src, |u| u < honest && !from_sybil);
        let (size, cat) = match &g {
            Gossip::Advert { bytes, .. } => (*bytes, Category::Adverts),
            Gossip::Revocation { bytes, .. } => (bytes.len(), Category::Revocations),
            Gossip::Proof { bytes, .. } => (*bytes, Category::Revocations),
        };
        let cat = if from_sybil { Category::Rejected } else { cat };
        // The sender pushes to its mesh.
        let fan = self.overlay.degree(src).min(MESH_DEGREE) as f64;
        self.traffic.add(cat, size as f64 * fan);
        for &(_, v) in &arrivals {
            let d = self.overlay.degree(v as usize).min(MESH_DEGREE) as f64;
            // Each receiver hears it from its mesh (duplicates included) and pushes it on.
            let relayed = if from_sybil { 1.0 } else { 2.0 * d };
            self.traffic.add(cat, size as f64 * relayed);
        }
        self.msgs += arrivals.len() as u64;
        if let Gossip::Revocation { bytes, .. } = &g
            && let Some(t) = self.revs.get_mut(&CertId::of(bytes))
            && t.up_at_publish.is_empty()
        {
            t.up_at_publish = arrivals
                .iter()
                .map(|a| a.1)
                .filter(|v| (*v as usize) < honest)
                .collect();
        }
        if let Gossip::Proof { proof, .. } = &g {
            let origin = proof.smaller.checkpoint.origin;
            if let Some(r) = self.equivocators.get(&origin).copied()
                && let Some(m) = self.metrics.equivocations.get_mut(r)
                && m.all_marked_ms < 0.0
            {
                let forked = m.forked_s * SEC as f64;
                let last = arrivals.last().map_or(0, |a| a.0);
                m.all_marked_ms = ((self.now + last) as f64 - forked) / MS as f64;
            }
        }
        if arrivals.is_empty() {
            return;
        }
        if let Gossip::Advert { from, advert, .. } = &g {
            self.apply_advert(*from as usize, advert, &arrivals);
            return;
        }
        let first = arrivals.first().map_or(0, |a| a.0);
        let now = self.now;
        self.push(
            now + first,
            Ev::Wave {
                gossip: Rc::new(g),
                arrivals: Rc::new(arrivals),
                next: 0,
                sent: now,
            },
        );
    }

    /// Every recipient's core judges an advert. (Judging on two threads, halves merged back
    /// in arrival order, was tried and made a run slower on this 2-vCPU machine: judging is
    /// bound by memory, not by the core.) Each judgement runs with the advert's arrival
    /// time at that node but happens when the advert is sent; what the core asks for in return (a new member's witness sets, a
    /// revocation catch-up) is carried out at the arrival time. The only difference from
    /// judging at arrival is that a node may count a member as heard up to one network
    /// delay early.
    fn apply_advert(&mut self, sender: usize, advert: &Advert, arrivals: &[(u64, u32)]) {
        let honest = self.world.honest;
        let start_ms = self.now_ms();
        let b = &advert.body;
        let load = b.load();
        // (node, incarnation, arrival offset, its core's answer or refusal)
        type Judged = (usize, u32, u64, Result<Vec<Output>, String>);
        // The sender's credential as the world holds it, when the advert carries exactly it:
        // receivers then share one copy (a thousand nodes each copying a thousand
        // credentials was a gigabyte of memory to read through on every advert).
        let shared = self
            .world
            .nodes
            .get(sender)
            .map(|s| s.credential.clone())
            .filter(|c| **c == *b.credential);
        let mut results: Vec<Judged> = Vec::with_capacity(arrivals.len());
        for &(off, v) in arrivals {
            let i = v as usize;
            if i >= honest {
                continue;
            }
            let Some(n) = self.nodes.get_mut(i).filter(|n| n.up) else {
                continue;
            };
            let inc = n.incarnation;
            let Some(l) = n.live.as_mut() else { continue };
            let at = start_ms + off / MS;
            let r = match &shared {
                Some(c) => l.core.advert_shared(at, b.node, c, load.clone()),
                None => l.core.advert(at, b.node, &b.credential, load.clone()),
            }
            .map_err(|e| format!("advert: {e}"));
            results.push((i, inc, off, r));
        }
        let now = self.now;
        for (i, inc, off, r) in results {
            self.judged(sender, r.as_ref().map(|_| ()).map_err(String::as_str));
            if let Ok(outs) = r
                && !outs.is_empty()
            {
                self.push(
                    now + off,
                    Ev::AdvertOutputs {
                        node: i as u32,
                        inc,
                        outs,
                    },
                );
            }
        }
    }

    fn latency(&mut self, a: &geo::Place, b: &geo::Place) -> u64 {
        geo::delivery_us(a, b, self.cfg.loss, &mut self.rng)
    }

    fn place_of(&self, e: Endpoint) -> geo::Place {
        match e {
            Endpoint::Node(n) => self.world.nodes.get(n as usize).map(|s| s.place),
            Endpoint::Client(g) => self.world.groups.get(g as usize).map(|s| s.place),
        }
        .unwrap_or(geo::Place {
            lat: 0.0,
            lon: 0.0,
            region: 0,
        })
    }

    /// Which node's side of a partition an endpoint is on.
    fn side_node(&self, e: Endpoint) -> usize {
        match e {
            Endpoint::Node(n) => n as usize,
            // A researcher sits at its authority's site, with its first node.
            Endpoint::Client(g) => self.world.groups.get(g as usize).map_or(0, |x| x.authority),
        }
    }

    fn send_request(
        &mut self,
        from: Endpoint,
        to: u32,
        req: Req,
        bytes: usize,
        cat: Category,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let a = self.place_of(from);
        let b = self.place_of(Endpoint::Node(to));
        let lat = self.latency(&a, &b) + (bytes as u64 * 8 / 100); // 100 Mbit/s
        self.traffic.add(cat, 2.0 * bytes as f64);
        self.msgs += 1;
        let now = self.now;
        let reachable = self.overlay.reachable(self.side_node(from), to as usize);
        if reachable {
            self.push(
                now + lat,
                Ev::Request {
                    to,
                    from,
                    id,
                    req: Box::new(req),
                    sent: now,
                },
            );
        } else {
            self.push(
                now + RPC_TIMEOUT,
                Ev::Reply {
                    to: from,
                    id,
                    rep: None,
                },
            );
        }
        id
    }

    fn node_request(&mut self, i: usize, _n: &mut SimNode, to: u32, req: Req) -> u64 {
        let bytes = match &req {
            Req::Revocations { .. } => 48,
            Req::Entries { .. } | Req::ReplicaEntries { .. } => 64,
            _ => 64,
        };
        let cat = match &req {
            Req::Revocations { .. } => Category::Revocations,
            _ => Category::Replication,
        };
        self.send_request(Endpoint::Node(i as u32), to, req, bytes, cat)
    }

    fn reply(&mut self, from: usize, to: Endpoint, id: u64, rep: Rep, extra_us: u64, sent: u64) {
        let (bytes, cat) = match &rep {
            Rep::Members(m) => (m.len() * 120, Category::Researchers),
            Rep::Receipt(r) => (r.len(), Category::Researchers),
            Rep::Stopped | Rep::Error => (32, Category::Researchers),
            Rep::Page { leaves, .. } | Rep::ReplicaPage { leaves, .. } => (
                leaves.iter().map(Vec::len).sum::<usize>() + 300,
                Category::Replication,
            ),
            Rep::Revocations(r) => (
                r.iter().map(Vec::len).sum::<usize>() + 16,
                Category::Revocations,
            ),
        };
        self.traffic.add(cat, 2.0 * bytes as f64);
        self.msgs += 1;
        let a = self.place_of(Endpoint::Node(from as u32));
        let b = self.place_of(to);
        let lat = self.latency(&a, &b) + (bytes as u64 * 8 / 100);
        let at = self.now + extra_us + lat;
        // Past the requester's timeout the answer no longer counts.
        let rep = if at > sent + RPC_TIMEOUT {
            None
        } else {
            Some(rep)
        };
        let at = if rep.is_none() {
            sent + RPC_TIMEOUT
        } else {
            at
        };
        self.push(
            at,
            Ev::Reply {
                to,
                id,
                rep: rep.map(Box::new),
            },
        );
    }

    fn send_note(&mut self, from: u32, to: u32, note: Note, cat: Category, bytes: usize) {
        if !self.overlay.reachable(from as usize, to as usize) {
            return;
        }
        let a = self.place_of(Endpoint::Node(from));
        let b = self.place_of(Endpoint::Node(to));
        let lat = self.latency(&a, &b);
        self.traffic.add(cat, 2.0 * bytes as f64);
        self.msgs += 1;
        let now = self.now;
        self.push(
            now + lat,
            Ev::Note {
                to,
                from,
                note: Box::new(note),
            },
        );
    }

    // ---- receiving ------------------------------------------------------------------

    fn deliver_gossip(&mut self, to: usize, g: &Gossip) {
        if !self.honest(to) {
            return;
        }
        // Adverts never travel in waves: `broadcast` has every recipient judge them when
        // they are sent (`apply_advert`).
        if matches!(g, Gossip::Advert { .. }) {
            return;
        }
        let Some(mut n) = self.take(to) else { return };
        let now_ms = self.now_ms();
        let sender = match g {
            Gossip::Advert { from, .. }
            | Gossip::Revocation { from, .. }
            | Gossip::Proof { from, .. } => *from as usize,
        };
        let accepted = match g {
            Gossip::Advert { .. } => Ok(()),
            Gossip::Revocation { bytes, from } => {
                // Heard from members only.
                let member = self.world.nodes.get(*from as usize).is_some_and(|s| {
                    n.live
                        .as_ref()
                        .is_some_and(|l| l.core.members().contains_key(&s.public))
                });
                let r = n
                    .live
                    .as_mut()
                    .filter(|_| member)
                    .map(|l| l.core.revocation(now_ms, bytes));
                match r {
                    Some(Ok(outs)) => {
                        let new = !outs.is_empty();
                        let id = CertId::of(bytes);
                        self.rev_track(to, n.up_since, &id, new);
                        self.processing_rev = Some(id);
                        self.carry_out(to, &mut n, outs, true);
                        self.processing_rev = None;
                        Ok(())
                    }
                    Some(Err(e)) => Err(format!("revocation: {e}")),
                    None if !member => {
                        Err("revocation: relayed by a node not listed as a member".to_string())
                    }
                    None => Err("revocation: receiver down".to_string()),
                }
            }
            Gossip::Proof { proof, .. } => {
                let fresh = n
                    .live
                    .as_mut()
                    .map(|l| l.witness.equivocation((**proof).clone()));
                match fresh {
                    Some(true) => {
                        if let Ok(bytes) = proof.to_bytes() {
                            n.disk
                                .log
                                .append(now_ms, EntryBody::EquivocationSeen { proof: bytes });
                        }
                        self.marked(&proof.smaller.checkpoint.origin);
                        Ok(())
                    }
                    Some(false) => Ok(()),
                    None => Err("proof: receiver down".to_string()),
                }
            }
        };
        self.judged(
            sender,
            accepted.as_ref().map(|_| ()).map_err(String::as_str),
        );
        self.put(to, n);
    }

    /// Counts what an honest node made of gossip from `sender`.
    fn judged(&mut self, sender: usize, verdict: Result<(), &str>) {
        if !self.honest(sender) {
            if verdict.is_ok() {
                self.metrics.sybil_accepted += 1;
            } else {
                self.metrics.sybil_rejected += 1;
            }
        } else if let Err(why) = verdict {
            self.metrics.model_mismatches += 1;
            self.metrics.note_mismatch(why);
        }
    }

    fn on_request(&mut self, to: usize, from: Endpoint, id: u64, req: Req, sent: u64) {
        let Some(mut n) = self.take(to) else {
            // Down: the requester times out.
            self.push(
                sent + RPC_TIMEOUT,
                Ev::Reply {
                    to: from,
                    id,
                    rep: None,
                },
            );
            return;
        };
        let now_ms = self.now_ms();
        let (rep, work) = match req {
            Req::Members => {
                let mut m: Vec<u32> = vec![to as u32];
                if let Some(l) = n.live.as_ref() {
                    m.extend(l.core.members().keys().filter_map(|k| self.key_index(k)));
                }
                (Rep::Members(m), 0)
            }
            Req::Submit { cred, module } => {
                let outs = n
                    .live
                    .as_mut()
                    .map(|l| {
                        l.core.submit(
                            now_ms,
                            &cred,
                            module,
                            &slicefed_trust::Invocation::default(),
                        )
                    })
                    .unwrap_or_default();
                let started = outs.iter().find_map(|o| match o {
                    Output::Start(p) => Some(p.id),
                    _ => None,
                });
                let slice = outs.iter().find_map(|o| match o {
                    Output::Start(p) => Some(self.slice_of(p.who.slice.as_str())),
                    _ => None,
                });
                let receipt = self.carry_out(to, &mut n, outs, false);
                let mut work = ADMIT_US;
                if let (Some(id), Some(slice)) = (started, slice) {
                    n.disk.saved.insert(id, (slice, cred.clone()));
                    if n.disk.compiled.insert(module) {
                        work += COMPILE_US;
                    }
                }
                (receipt.map_or(Rep::Error, Rep::Receipt), work)
            }
            Req::Delete(d) => {
                let outs = n.live.as_mut().map(|l| l.core.delete(now_ms, &d));
                match outs {
                    Some(Ok(outs)) => {
                        self.carry_out(to, &mut n, outs, false);
                        (Rep::Stopped, ADMIT_US)
                    }
                    _ => (Rep::Error, 0),
                }
            }
            Req::Revoke(bytes) => {
                let outs = n.live.as_mut().map(|l| l.core.revocation(now_ms, &bytes));
                match outs {
                    Some(Ok(outs)) => {
                        let id = CertId::of(&bytes);
                        self.rev_track(to, n.up_since, &id, true);
                        self.processing_rev = Some(id);
                        self.carry_out(to, &mut n, outs, false);
                        self.processing_rev = None;
                        (Rep::Stopped, 0)
                    }
                    _ => (Rep::Error, 0),
                }
            }
            Req::Entries { from: start } => {
                let size = n.live.as_ref().map_or(0, |l| l.last_cp_size);
                if start > size {
                    (Rep::Error, 0)
                } else {
                    let end = size.min(start + PAGE_ENTRIES);
                    let leaves: Vec<Vec<u8>> = n
                        .disk
                        .log
                        .leaves
                        .get(start as usize..end as usize)
                        .map(<[Vec<u8>]>::to_vec)
                        .unwrap_or_default();
                    let (base, endc) = match self.world.nodes.get(to) {
                        Some(spec) => (
                            n.disk.log.signed_at(&spec.key, start, now_ms),
                            n.disk.log.signed_at(&spec.key, end, now_ms),
                        ),
                        None => (None, None),
                    };
                    match (base, endc) {
                        (Some(base), Some(end)) => (Rep::Page { base, end, leaves }, MS),
                        _ => (Rep::Error, 0),
                    }
                }
            }
            Req::ReplicaEntries {
                origin,
                from: start,
            } => {
                let held = n
                    .live
                    .as_ref()
                    .and_then(|l| l.witness.replica_size(&origin));
                let cp = n
                    .live
                    .as_ref()
                    .and_then(|l| l.witness.verified(&origin).cloned());
                let src = self.key_index(&origin).map(|o| o as usize);
                match (held, cp, src) {
                    (Some(h), Some(cp), Some(o)) if start < h && cp.checkpoint.size == h => {
                        // The leaves this node verified and stored (read from the origin's
                        // disk, which holds the same bytes).
                        let leaves = if o == to {
                            vec![]
                        } else {
                            self.nodes
                                .get(o)
                                .and_then(|x| x.disk.log.leaves.get(start as usize..h as usize))
                                .map(<[Vec<u8>]>::to_vec)
                                .unwrap_or_default()
                        };
                        (Rep::ReplicaPage { end: cp, leaves }, MS)
                    }
                    _ => (Rep::Error, 0),
                }
            }
            Req::Revocations { after } => {
                let list = n
                    .live
                    .as_ref()
                    .map(|l| {
                        l.core.revocations_after(
                            after,
                            slicefed_proto::core::MAX_REVOCATIONS_PER_PAGE,
                        )
                    })
                    .unwrap_or_default();
                (Rep::Revocations(list), 0)
            }
        };
        self.put(to, n);
        self.reply(to, from, id, rep, work, sent);
    }

    fn on_reply(&mut self, i: usize, id: u64, rep: Option<Rep>) {
        let Some(mut n) = self.take(i) else { return };
        let now_ms = self.now_ms();
        let pending = n.live.as_mut().and_then(|l| l.pending.remove(&id));
        match (pending, rep) {
            (Some(Pending::Fetch(origin)), Some(Rep::Page { base, end, leaves })) => {
                let r = n
                    .live
                    .as_mut()
                    .map(|l| l.witness.page(now_ms, origin, base, end, leaves));
                match r {
                    Some(Ok(outs)) => self.witness_outputs(i, &mut n, outs),
                    Some(Err(_)) => {
                        self.metrics.bad_pages += 1;
                        if let Some(l) = n.live.as_mut() {
                            l.witness.fetch_failed(&origin);
                        }
                    }
                    None => {}
                }
            }
            (Some(Pending::Fetch(origin)), _) => {
                if let Some(l) = n.live.as_mut() {
                    l.witness.fetch_failed(&origin);
                }
            }
            (
                Some(Pending::FetchReplica(origin, holder)),
                Some(Rep::ReplicaPage { end, leaves }),
            ) => {
                let r = n
                    .live
                    .as_mut()
                    .map(|l| l.witness.adopt(now_ms, holder, end, leaves));
                match r {
                    Some(Ok(outs)) => self.witness_outputs(i, &mut n, outs),
                    Some(Err(_)) => {
                        self.metrics.bad_pages += 1;
                        if let Some(l) = n.live.as_mut() {
                            l.witness.fetch_failed(&origin);
                        }
                    }
                    None => {}
                }
            }
            (Some(Pending::FetchReplica(origin, _)), _) => {
                if let Some(l) = n.live.as_mut() {
                    l.witness.fetch_failed(&origin);
                }
            }
            (Some(Pending::Revocations(member, after, pages)), Some(Rep::Revocations(list))) => {
                let next = slicefed_proto::core::next_revocation_page(&list, after, pages + 1);
                let up_since_ms = START_MS + n.up_since / MS;
                for bytes in list {
                    let outs = n
                        .live
                        .as_mut()
                        .map(|l| l.core.caught_up_revocation(now_ms, &bytes, up_since_ms));
                    if let Some(Ok(outs)) = outs {
                        let new = !outs.is_empty();
                        let id = CertId::of(&bytes);
                        self.rev_track(i, n.up_since, &id, new);
                        self.processing_rev = Some(id);
                        // Gossiped on if it was issued while this node was up (the rest of
                        // a healed partition hears it now, not at its next pull).
                        self.carry_out(i, &mut n, outs, false);
                        self.processing_rev = None;
                    }
                }
                if let Some(cursor) = next
                    && let Some(t) = self.key_index(&member)
                {
                    let id = self.node_request(
                        i,
                        &mut n,
                        t,
                        Req::Revocations {
                            after: Some(cursor),
                        },
                    );
                    if let Some(l) = n.live.as_mut() {
                        l.pending
                            .insert(id, Pending::Revocations(member, Some(cursor), pages + 1));
                    }
                }
            }
            _ => {}
        }
        self.put(i, n);
    }

    fn on_note(&mut self, to: usize, from: usize, note: Note) {
        if !self.honest(to) {
            return;
        }
        let Some(mut n) = self.take(to) else { return };
        let now_ms = self.now_ms();
        let Some(sender) = self.world.nodes.get(from).map(|s| s.public) else {
            self.put(to, n);
            return;
        };
        let me = self.world.nodes.get(to).map(|s| s.public);
        let member = n
            .live
            .as_ref()
            .is_some_and(|l| l.core.members().contains_key(&sender));
        if !member {
            // Only members are heard (a Sybil's checkpoint, or one from a node this node
            // has not heard advertise yet).
            if !self.honest(from) {
                self.metrics.sybil_rejected += 1;
            }
            self.put(to, n);
            return;
        }
        let origin_is_me = |cp: &SignedCheckpoint| Some(cp.checkpoint.origin) == me;
        let outs = match note {
            // From its origin only.
            Note::Checkpoint(cp) if cp.checkpoint.origin == sender && !origin_is_me(&cp) => {
                n.live.as_mut().map(|l| witness_checkpoint(l, now_ms, cp))
            }
            Note::Cosigned(cp) if origin_is_me(&cp) => {
                // A witness cosigned one of ours.
                let size = cp.checkpoint.size;
                if n.disk.log.tree.root_at(size).ok() == Some(cp.checkpoint.root) {
                    let log = &mut n.disk.log;
                    log.acked = log.acked.max(size);
                    log.cosigners.entry(size).or_default().insert(from as u32);
                    while log.cosigners.len() > 16 {
                        log.cosigners.pop_first();
                    }
                    let mut union = BTreeSet::new();
                    for (size, by) in log.cosigners.iter().rev() {
                        union.extend(by.iter().copied());
                        if union.len() >= self.cfg.witnesses {
                            log.acked_by_k = log.acked_by_k.max(*size);
                            break;
                        }
                    }
                }
                None
            }
            // Another witness of the same origin tells what it cosigned: a cross-check.
            Note::Cosigned(cp) => n.live.as_mut().map(|l| witness_checkpoint(l, now_ms, cp)),
            Note::Offer(cp) => n.live.as_mut().map(|l| {
                let members: Vec<PublicKey> = l.core.members().keys().copied().collect();
                l.witness.offered(now_ms, sender, cp, &members)
            }),
            Note::Checkpoint(_) => None,
        };
        if let Some(outs) = outs {
            self.witness_outputs(to, &mut n, outs);
        }
        self.put(to, n);
    }

    fn witness_outputs(&mut self, i: usize, n: &mut SimNode, outs: Vec<WitnessOutput>) {
        let now_ms = self.now_ms();
        let k = self.cfg.witnesses;
        let me = i as u32;
        for o in outs {
            match o {
                WitnessOutput::Fetch { origin, from } => {
                    if let Some(t) = self.key_index(&origin) {
                        let id = self.node_request(i, n, t, Req::Entries { from });
                        if let Some(l) = n.live.as_mut() {
                            l.pending.insert(id, Pending::Fetch(origin));
                        }
                    }
                }
                WitnessOutput::FetchReplica {
                    origin,
                    from,
                    holder,
                } => {
                    if let Some(t) = self.key_index(&holder) {
                        let id = self.node_request(i, n, t, Req::ReplicaEntries { origin, from });
                        if let Some(l) = n.live.as_mut() {
                            l.pending.insert(id, Pending::FetchReplica(origin, holder));
                        }
                    }
                }
                WitnessOutput::Persist { .. } => {}
                WitnessOutput::Cosign(cp) => {
                    let origin = cp.checkpoint.origin;
                    let Some(myself) = self.world.nodes.get(i).map(|s| s.public) else {
                        continue;
                    };
                    let mut to: Vec<PublicKey> = vec![origin];
                    if let Some(l) = n.live.as_mut() {
                        let set = l.co.entry(origin).or_insert_with(|| {
                            let mut m: Vec<PublicKey> = l.core.members().keys().copied().collect();
                            m.push(myself);
                            WitnessSet::new(origin, k, &m)
                        });
                        to.extend(set.current().filter(|w| **w != myself).copied());
                    }
                    for w in to {
                        if let Some(t) = self.key_index(&w) {
                            self.send_note(
                                me,
                                t,
                                Note::Cosigned(cp.clone()),
                                Category::Checkpoints,
                                300,
                            );
                        }
                    }
                }
                WitnessOutput::Equivocation(p) => {
                    let origin = p.smaller.checkpoint.origin;
                    if let Some(r) = self.equivocators.get(&origin).copied()
                        && let Some(m) = self.metrics.equivocations.get_mut(r)
                        && m.detected_ms < 0.0
                    {
                        m.detected_ms = (self.now as f64 - m.forked_s * SEC as f64) / MS as f64;
                    }
                    if let Ok(bytes) = p.to_bytes() {
                        let len = bytes.len();
                        n.disk
                            .log
                            .append(now_ms, EntryBody::EquivocationSeen { proof: bytes });
                        self.marked(&origin);
                        self.broadcast(
                            i,
                            Gossip::Proof {
                                from: me,
                                proof: Rc::new(p),
                                bytes: len,
                            },
                        );
                    }
                }
            }
        }
    }

    fn marked(&mut self, origin: &PublicKey) {
        if let Some(r) = self.equivocators.get(origin).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
        {
            m.marked_by += 1;
        }
    }

    // ---- revocations ----------------------------------------------------------------

    /// Node `node` (up since `up_since`) took revocation `id` in.
    fn rev_track(&mut self, node: usize, up_since: u64, id: &CertId, new: bool) {
        if !new {
            return;
        }
        let now = self.now;
        let Some(t) = self.revs.get_mut(id) else {
            return;
        };
        if !t.holders.insert(node as u32) {
            return;
        }
        let Some(m) = self.metrics.revocations.get_mut(t.index) else {
            return;
        };
        if up_since > t.published {
            m.caught_up_later += 1;
            m.worst_catch_up_ms = m.worst_catch_up_ms.max((now - up_since) as f64 / MS as f64);
        } else if t.up_at_publish.contains(&(node as u32)) || t.up_at_publish.is_empty() {
            m.reached += 1;
            m.all_held_ms = m.all_held_ms.max((now - t.published) as f64 / MS as f64);
        }
    }

    fn revocation_stopped(&mut self, _node: usize) {
        let now = self.now;
        if let Some(id) = self.processing_rev
            && let Some(t) = self.revs.get(&id)
            && let Some(m) = self.metrics.revocations.get_mut(t.index)
        {
            m.slivers_stopped += 1;
            m.all_stopped_ms = m.all_stopped_ms.max((now - t.published) as f64 / MS as f64);
        }
    }

    /// Authorities revoke `count` researchers: each revocation is handed to one up node
    /// (`authority publish`), which honours and gossips it.
    fn revoke_users(&mut self, count: usize) {
        let candidates: Vec<u32> = (0..self.groups.len() as u32)
            .filter(|g| !self.revoked_users.contains_key(g))
            .collect();
        let up = self.up_nodes();
        let mut chosen = vec![];
        let mut pool = candidates;
        for _ in 0..count {
            if pool.is_empty() {
                break;
            }
            let i = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(i));
        }
        let now_s = self.now_ms() / 1000;
        for g in chosen {
            let Some(group) = self.world.groups.get(g as usize) else {
                continue;
            };
            let Some(auth) = self.world.authorities.get(group.authority) else {
                continue;
            };
            let Ok(rev) = objects::sign(
                &auth.key,
                &Revocation {
                    target: group.user_cert_id,
                    reason: "account compromised".into(),
                    revoked_at: now_s,
                },
            ) else {
                continue;
            };
            // A revocation file carries what it revokes, so nodes judge the revoker.
            let target = Credential::new(group.user_cert.clone(), []);
            let Ok(file) = Credential::revocation_file(rev.bytes, &target).to_bytes() else {
                continue;
            };
            // The authority hands it to a node it can reach (`authority publish` tries its
            // bootstrap nodes until one answers); across a partition it cannot.
            let side = self.side_node(Endpoint::Client(g));
            let reachable: Vec<u32> = up
                .iter()
                .copied()
                .filter(|i| self.overlay.reachable(side, *i as usize))
                .collect();
            let Some(to) = self.pick(&reachable) else {
                continue;
            };
            let id = CertId::of(&file);
            let index = self.metrics.revocations.len();
            self.metrics.revocations.push(RevocationRun {
                at_s: self.now as f64 / SEC as f64,
                up_nodes: up.len(),
                ..RevocationRun::default()
            });
            self.revs.insert(
                id,
                RevTrack {
                    index,
                    published: self.now,
                    holders: BTreeSet::new(),
                    up_at_publish: BTreeSet::new(),
                },
            );
            self.revoked_users.insert(g, (self.now, to));
            if let Some(gs) = self.groups.get_mut(g as usize) {
                gs.revoked = true;
            }
            let bytes = file;
            let len = bytes.len();
            let _ = self.send_request(
                Endpoint::Client(g),
                to,
                Req::Revoke(Rc::new(bytes)),
                len,
                Category::Revocations,
            );
        }
    }

    // ---- researchers ----------------------------------------------------------------

    fn group_step(&mut self, g: usize) {
        let Some(gs) = self.groups.get(g) else { return };
        if gs.op.is_some() {
            return;
        }
        if gs.current.is_some() {
            self.start_delete(g);
        } else if !gs.revoked {
            self.start_bootstrap(g, vec![]);
        }
    }

    fn start_bootstrap(&mut self, g: usize, tried: Vec<u32>) {
        // The researcher's SLICEFED_BOOTSTRAP: a node of its own authority first, then
        // any it knows.
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let a = group.authority;
        let authorities = self.world.authorities.len().max(1);
        let honest = self.world.honest;
        let own: Vec<u32> = (a..honest)
            .step_by(authorities)
            .map(|i| i as u32)
            .filter(|i| !tried.contains(i))
            .collect();
        let target = match own.first() {
            Some(t) => Some(*t),
            None => {
                let any: Vec<u32> = (0..honest as u32).filter(|i| !tried.contains(i)).collect();
                self.pick(&any)
            }
        };
        let Some(target) = target else { return };
        let started = self
            .groups
            .get(g)
            .and_then(|s| s.op.as_ref())
            .map_or(self.now, |o| o.started);
        let retries = tried.len();
        let mut tried = tried;
        tried.push(target);
        let id = self.send_request(
            Endpoint::Client(g as u32),
            target,
            Req::Members,
            16,
            Category::Researchers,
        );
        self.client_ops.insert(id, (g as u32, target));
        if let Some(gs) = self.groups.get_mut(g) {
            gs.op = Some(Op {
                kind: OpKind::Bootstrap { tried },
                started,
                waiting: 1,
                admitted: vec![],
                refused: 0,
                unreachable: 0,
                last_ok: 0,
                retries,
                targets: vec![],
                ticket: None,
                fanout: 0,
            });
        }
    }

    fn start_create(&mut self, g: usize, members: Vec<u32>) {
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let (lo, hi) = self.cfg.slice_nodes;
        let want = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        let mut pool = members;
        let mut chosen = vec![];
        while chosen.len() < want && !pool.is_empty() {
            let i = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(i));
        }
        chosen.sort_unstable();
        let keys: Vec<PublicKey> = chosen
            .iter()
            .filter_map(|i| self.world.nodes.get(*i as usize).map(|s| s.public))
            .collect();
        let slice_index = self.slices.len() as u32;
        let Ok(name) = Name::parse(&format!("{}{}", group.slice_prefix, slice_index)) else {
            return;
        };
        let now_s = self.now_ms() / 1000;
        let module = ModuleHash::of(format!("module of group {g}").as_bytes());
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let body = SliceTicket {
            slice: name.clone(),
            module,
            invocation: slicefed_trust::Invocation::default().hash(),
            caps: ResourceCaps {
                memory: Some(64 << 20),
                cpu_share: Some(1),
                max_slivers: None,
                egress_per_day: None,
            },
            network: NetworkRights::none(),
            nodes: NodeSet::only(keys),
            validity: Validity::starting(now_s.saturating_sub(60), self.cfg.ticket_valid / SEC),
            issued_at: now_s,
            nonce: Nonce(nonce),
        };
        let Ok(ticket) = objects::sign(&group.key, &body) else {
            return;
        };
        let ticket_id = CertId::of(&ticket.bytes);
        let Ok(cred) = Credential::new(ticket.bytes, [group.user_cert.clone()]).to_bytes() else {
            return;
        };
        let cred = Arc::new(cred);
        self.slices.push(SliceInfo {
            group: g as u32,
            deleted: None,
        });
        let bytes = cred.len() + MODULE_BYTES;
        for &t in &chosen {
            let id = self.send_request(
                Endpoint::Client(g as u32),
                t,
                Req::Submit {
                    cred: cred.clone(),
                    module,
                },
                bytes,
                Category::Researchers,
            );
            self.client_ops.insert(id, (g as u32, t));
        }
        if let Some(gs) = self.groups.get_mut(g) {
            gs.next_slice += 1;
            gs.current = Some(SliceRun {
                slice: slice_index,
                name,
                module,
                cred,
                nodes: vec![],
            });
            if let Some(op) = gs.op.as_mut() {
                op.kind = OpKind::Create;
                op.fanout = self.now;
                op.waiting = chosen.len();
                op.targets = chosen;
                op.ticket = Some(ticket_id);
            }
        }
        if self.op_answered(g) {
            self.finish_op(g);
        }
    }

    fn start_delete(&mut self, g: usize) {
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let Some(run) = self.groups.get(g).and_then(|s| s.current.as_ref()) else {
            return;
        };
        let now_s = self.now_ms() / 1000;
        let targets = run.nodes.clone();
        let name = run.name.to_string();
        let slice = run.slice;
        let _ = (&run.module, &run.cred);
        let mut reqs = vec![];
        for &t in &targets {
            let Some(node) = self.world.nodes.get(t as usize) else {
                continue;
            };
            if let Ok(d) = HolderRequest::sign(&group.key, node.public, &name, now_s) {
                reqs.push((t, d));
            }
        }
        if let Some(s) = self.slices.get_mut(slice as usize) {
            s.deleted = Some(self.now);
        }
        let started = self.now;
        for (t, d) in reqs {
            let id = self.send_request(
                Endpoint::Client(g as u32),
                t,
                Req::Delete(Box::new(d)),
                200,
                Category::Researchers,
            );
            self.client_ops.insert(id, (g as u32, t));
        }
        if let Some(gs) = self.groups.get_mut(g) {
            gs.op = Some(Op {
                kind: OpKind::Delete,
                started,
                waiting: targets.len(),
                admitted: vec![],
                refused: 0,
                unreachable: 0,
                last_ok: 0,
                retries: 0,
                targets,
                ticket: None,
                fanout: started,
            });
        }
        if self.op_answered(g) {
            self.finish_op(g);
        }
    }

    fn on_client_reply(&mut self, g: usize, id: u64, rep: Option<Rep>) {
        let Some((_, node)) = self.client_ops.remove(&id) else {
            return;
        };
        let now = self.now;
        let Some(op) = self.groups.get(g).and_then(|s| s.op.as_ref()) else {
            return;
        };
        match &op.kind {
            OpKind::Bootstrap { tried } => {
                let tried = tried.clone();
                match rep {
                    Some(Rep::Members(m)) => self.start_create(g, m),
                    _ => {
                        if tried.len() < 8 {
                            self.start_bootstrap(g, tried);
                        } else if let Some(gs) = self.groups.get_mut(g) {
                            gs.op = None;
                            let at = now + 10 * MIN;
                            self.push(at, Ev::Group(g as u32));
                        }
                    }
                }
            }
            OpKind::Create => {
                let ticket = op.ticket;
                let verdict = match rep {
                    Some(Rep::Receipt(bytes)) => match objects::open::<NodeReceipt>(&bytes) {
                        Ok(r) if Some(r.body.ticket) == ticket => Some(r.body),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(op) = self.groups.get_mut(g).and_then(|s| s.op.as_mut()) {
                    op.waiting = op.waiting.saturating_sub(1);
                    match verdict {
                        Some(r) if r.admitted => {
                            op.admitted.push(node);
                            op.last_ok = now;
                        }
                        Some(r) => {
                            op.refused += 1;
                            let reason: String = r.reason.chars().take(40).collect();
                            *self.metrics.refusals.entry(reason).or_default() += 1;
                        }
                        None => op.unreachable += 1,
                    }
                }
                if self.op_answered(g) {
                    self.finish_op(g);
                }
            }
            OpKind::Delete => {
                if let Some(op) = self.groups.get_mut(g).and_then(|s| s.op.as_mut()) {
                    op.waiting = op.waiting.saturating_sub(1);
                }
                if self.op_answered(g) {
                    self.finish_op(g);
                }
            }
        }
    }

    fn finish_op(&mut self, g: usize) {
        let now = self.now;
        let Some(gs) = self.groups.get_mut(g) else {
            return;
        };
        let Some(op) = gs.op.take() else { return };
        match op.kind {
            OpKind::Create => {
                self.metrics.creations.push(Creation {
                    at_s: op.started as f64 / SEC as f64,
                    targeted: op.targets.len(),
                    admitted: op.admitted.len(),
                    refused: op.refused,
                    unreachable: op.unreachable,
                    all_running_ms: if op.admitted.is_empty() {
                        f64::NAN
                    } else {
                        (op.last_ok - op.started) as f64 / MS as f64
                    },
                    fanout_ms: if op.admitted.is_empty() {
                        f64::NAN
                    } else {
                        (op.last_ok - op.fanout) as f64 / MS as f64
                    },
                    bootstrap_retries: op.retries,
                });
                if let Some(run) = gs.current.as_mut() {
                    run.nodes = op.admitted;
                }
                let (lo, hi) = self.cfg.slice_life;
                let life = if hi > lo {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                };
                self.push(now + life, Ev::Group(g as u32));
            }
            OpKind::Delete => {
                gs.current = None;
                let (lo, hi) = self.cfg.slice_pause;
                let pause = if hi > lo {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                };
                self.push(now + pause, Ev::Group(g as u32));
            }
            OpKind::Bootstrap { .. } => {}
        }
    }

    // ---- scenario actions -----------------------------------------------------------

    fn act(&mut self, i: usize) {
        let Some((_, action)) = self.cfg.actions.get(i).cloned() else {
            return;
        };
        let honest = self.world.honest;
        match action {
            Action::RevokeUsers(n) => self.revoke_users(n),
            Action::Partition(regions) => {
                let places: Vec<usize> = self.world.nodes.iter().map(|s| s.place.region).collect();
                self.overlay
                    .partition(|i| places.get(i).is_some_and(|r| regions.contains(r)));
            }
            Action::Heal => {
                self.overlay.heal();
                self.healed_at = self.now;
            }
            Action::Kill(share) => {
                let up = self.up_nodes();
                let count = (share * honest as f64).round() as usize;
                let mut pool = up;
                for _ in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j);
                    self.crash(v as usize, true);
                }
            }
            Action::KillGradually(share, over) => {
                let count = (share * honest as f64).round() as usize;
                let mut pool: Vec<u32> = (0..honest as u32).collect();
                let step = over / count.max(1) as u64;
                for c in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j);
                    let at = self.now + step * c as u64;
                    self.push(
                        at,
                        Ev::Crash {
                            node: v,
                            forever: true,
                        },
                    );
                }
            }
            Action::Equivocate(count) => {
                let up = self.up_nodes();
                let mut pool = up;
                for _ in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j) as usize;
                    let Some(pk) = self.world.nodes.get(v).map(|s| s.public) else {
                        continue;
                    };
                    if let Some(l) = self.nodes.get_mut(v).and_then(|n| n.live.as_mut()) {
                        l.equivocate = true;
                        self.equivocators
                            .insert(pk, self.metrics.equivocations.len());
                        self.metrics.equivocations.push(EquivocationRun {
                            forked_s: f64::NAN,
                            detected_ms: -1.0,
                            all_marked_ms: -1.0,
                            marked_by: 0,
                        });
                    }
                }
            }
            Action::SybilsArrive => {
                self.sybils_online = true;
                for s in honest..self.world.nodes.len() {
                    self.sybil_boot(s);
                }
            }
        }
    }

    fn sybil_boot(&mut self, s: usize) {
        let Some(n) = self.nodes.get_mut(s) else {
            return;
        };
        n.up = true;
        n.incarnation += 1;
        if let Some(u) = self.up.get_mut(s) {
            *u = true;
            self.up_count += 1;
        }
        let inc = n.incarnation;
        // A Sybil has no core of its own here: it only sends. Its adverts go out on its
        // advert timer; see `sybil_advert`.
        let Some(spec) = self.world.nodes.get(s) else {
            return;
        };
        let me = spec.public;
        let verifier = Verifier::with_shared(self.world.policy.clone(), self.shared.clone());
        let core = NodeCore::with_verifier(
            slicefed_trust::SecretKey::from_seed(&spec.key.seed()),
            Capacity {
                max_slivers: 0,
                memory: 0,
                default_sliver_memory: 0,
            },
            verifier,
        );
        if let Some(n) = self.nodes.get_mut(s) {
            n.live = Some(Box::new(Live {
                core,
                witness: Witness::new(me, 1),
                mine: WitnessSet::new(me, 1, &[]),
                co: BTreeMap::new(),
                running: BTreeMap::new(),
                pending: BTreeMap::new(),
                restore_by: None,
                last_cp: 0,
                last_cp_size: 0,
                ticks: 0,
                equivocate: false,
                equivocated: false,
            }));
        }
        self.overlay.touch();
        let now = self.now;
        let a = self.rng.random_range(0..SEC);
        self.push(now + a, Ev::Advert(s as u32, inc));
        let t = self.rng.random_range(0..self.cfg.tick.max(1));
        self.push(now + t, Ev::Tick(s as u32, inc));
    }

    /// What a Sybil does each tick: shows its neighbours a checkpoint of a log it made up,
    /// and now and then gossips a revocation it signed itself of a researcher's
    /// certificate (hoping someone stores and spreads it).
    fn sybil_attack(&mut self, i: usize) {
        let now_ms = self.now_ms();
        let neighbours: Vec<u32> = self.overlay.neighbours(i).iter().map(|(v, _)| *v).collect();
        let groups = self.world.groups.len();
        let target = if groups > 0 {
            self.rng.random_range(0..groups)
        } else {
            0
        };
        let gossip_now = self.rng.random_bool(0.2);
        let Some(spec) = self.world.nodes.get(i) else {
            return;
        };
        let fake = Checkpoint {
            origin: spec.public,
            size: now_ms / 1000,
            root: ModuleHash::of(&now_ms.to_le_bytes()).0,
            time_ms: now_ms,
        }
        .sign(&spec.key);
        let rev = self.world.groups.get(target).and_then(|g| {
            let r = objects::sign(
                &spec.key,
                &Revocation {
                    target: g.user_cert_id,
                    reason: "sybil".into(),
                    revoked_at: now_ms / 1000,
                },
            )
            .ok()?;
            let target = Credential::new(g.user_cert.clone(), []);
            Credential::revocation_file(r.bytes, &target)
                .to_bytes()
                .ok()
        });
        if let Ok(cp) = fake {
            for v in neighbours {
                self.send_note(
                    i as u32,
                    v,
                    Note::Checkpoint(cp.clone()),
                    Category::Rejected,
                    180,
                );
            }
        }
        if gossip_now && let Some(r) = rev {
            self.broadcast(
                i,
                Gossip::Revocation {
                    from: i as u32,
                    bytes: Rc::new(r),
                },
            );
        }
    }

    // ---- samples --------------------------------------------------------------------

    fn sample(&mut self) {
        let honest = self.world.honest;
        let k = self.cfg.witnesses;
        let mut up = 0usize;
        let mut members = 0usize;
        let mut slivers = 0usize;
        // Live replica sizes per origin.
        let mut held: BTreeMap<PublicKey, Vec<u64>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(l) = n.live.as_ref().filter(|_| n.up) else {
                continue;
            };
            up += 1;
            members += l.core.members().len();
            slivers += l.running.len();
            for (o, size) in l.witness.replicas() {
                held.entry(*o).or_default().push(size);
            }
            let _ = i;
        }
        // Replicas on the disks of nodes that are down but not dead: not live coverage, but
        // not lost either (they come back with their node).
        let mut parked: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for n in self.nodes.iter().take(honest).filter(|n| !n.up && !n.dead) {
            for (o, tree, _) in &n.disk.replicas {
                let e = parked.entry(*o).or_default();
                *e = (*e).max(tree.len());
            }
        }
        let (mut total, mut with_k, mut available, mut acked, mut acked_k, mut lost) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut lost_full = 0u64;
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(pk) = self.world.nodes.get(i).map(|s| s.public) else {
                continue;
            };
            let len = n.disk.log.len();
            let mut sizes = held.remove(&pk).unwrap_or_default();
            sizes.sort_unstable_by(|a, b| b.cmp(a));
            let kth = sizes
                .get(k.saturating_sub(1))
                .copied()
                .unwrap_or(0)
                .min(len);
            let best = sizes.first().copied().unwrap_or(0).min(len);
            total += len;
            with_k += kth;
            available += if n.up { len } else { best };
            let a = n.disk.log.acked.min(len);
            acked += a;
            acked_k += kth.min(a);
            if n.dead {
                let kept = best.max(parked.get(&pk).copied().unwrap_or(0).min(len));
                lost += a.saturating_sub(kept);
                lost_full += n.disk.log.acked_by_k.min(len).saturating_sub(kept);
            }
        }
        // Slivers under revoked chains, and zombies.
        let mut revoked_running = 0;
        let mut zombies = 0;
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(l) = n.live.as_ref().filter(|_| n.up) else {
                continue;
            };
            for slice in l.running.values() {
                let Some(info) = self.slices.get(*slice as usize) else {
                    continue;
                };
                // A node cut off from where the revocation was published cannot know; from
                // the heal (or its return) on it must, within the grace period.
                if let Some((at, by)) = self.revoked_users.get(&info.group)
                    && self.overlay.reachable(*by as usize, i)
                {
                    let since = (*at).max(n.up_since).max(self.healed_at);
                    if self.now > since + REVOCATION_GRACE + RESTORE_WAIT {
                        revoked_running += 1;
                    }
                }
                if info.deleted.is_some_and(|d| self.now > d + RPC_TIMEOUT) {
                    zombies += 1;
                }
            }
        }
        // Sybils listed as members anywhere.
        for n in self.nodes.iter().take(honest) {
            if let Some(l) = n.live.as_ref().filter(|_| n.up) {
                self.metrics.sybil_members += l
                    .core
                    .members()
                    .keys()
                    .filter(|k| self.world.index.get(k).is_some_and(|i| *i >= honest))
                    .count() as u64;
            }
        }
        let dt_min = (self.up_time_us - self.up_time_at_sample) as f64 / MIN as f64;
        let per = if dt_min > 0.0 { 1.0 / dt_min } else { 0.0 };
        let bytes = self.traffic.minus(&self.traffic_at_sample).scaled(per);
        let msgs = (self.msgs - self.msgs_at_sample) as f64 * per;
        self.traffic_at_sample = self.traffic;
        self.msgs_at_sample = self.msgs;
        self.up_time_at_sample = self.up_time_us;
        self.last_sample = self.now;
        let share = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        self.metrics.samples.push(metrics::Sample {
            at_h: self.now as f64 / HOUR as f64,
            up,
            mean_members: if up == 0 {
                0.0
            } else {
                members as f64 / up as f64
            },
            slivers,
            share_k_witnesses: share(with_k, total),
            share_available: share(available, total),
            share_acked_k: share(acked_k, acked),
            lost_acked: lost,
            lost_acked_by_k: lost_full,
            entries: total,
            bytes_per_node_min: bytes,
            msgs_per_node_min: msgs,
            revoked_running,
            zombies,
        });
    }

    fn finish(&mut self) {
        for r in &mut self.metrics.revocations {
            if r.reached == 0 {
                r.all_held_ms = f64::NAN;
            }
        }
    }

    /// The whole-run traffic, per up node per minute.
    pub fn traffic_per_node_minute(&self) -> metrics::Traffic {
        let minutes = self.up_time_us as f64 / MIN as f64;
        if minutes <= 0.0 {
            return metrics::Traffic::default();
        }
        self.traffic.scaled(1.0 / minutes)
    }

    /// Messages per up node per minute over the run.
    pub fn messages_per_node_minute(&self) -> f64 {
        let minutes = self.up_time_us as f64 / MIN as f64;
        if minutes <= 0.0 {
            0.0
        } else {
            self.msgs as f64 / minutes
        }
    }

    /// The configuration it ran.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}
