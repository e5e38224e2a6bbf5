//! The node daemon: a thin driver that wires the sans-IO [`NodeCore`] and [`Witness`] to the
//! libp2p swarm, the sandbox and the node's ledger.
//!
//! What it does with the outside world, and nothing else:
//! - gossip: signed adverts, checkpoints, cosignatures, revocations and equivocation proofs;
//!   each is validated (by the core or the witness) before gossipsub may forward it, and
//!   only members (peers with a trusted node certificate) are heard on any topic;
//! - RPC: tickets with module bytes, renewals, status, logs, signed deletes, revocations,
//!   ledger pages for witnesses and replica chunks for recovery; every request and answer
//!   is bounded;
//! - the sandbox: starts what the core admitted, stops what it says to stop, and reports
//!   endings back;
//! - disk, under `DIR`: `ledger/` (the node's log), `replicas/ORIGIN.sfexp` (logs it
//!   witnesses, as export files any auditor can replay), `cosignatures` (witnesses'
//!   signatures on this node's checkpoints), `slivers/` and `modules/` (so slivers whose
//!   tickets are still valid come back after a restart), `cache/` (compiled modules).
//!
//! Invariants: every ledger append is durable before the answer that depends on it is sent
//! (a receipt follows its `SliverCreated`); a sliver's `SliverCreated` is in the log before
//! it can open a flow; nothing a peer or client sends can panic the loop.

use crate::admin::AdminCall;
use crate::core::{Capacity, NodeCore, Output, SliverPlan, StopReason, Traffic};
use crate::net::{self, BehaviourEvent};
use crate::wire::{
    self, AdminRequest, Advert, AdvertBody, Cosigned, NodeStatus, Request, Response, SliverLogs,
    SliverStatus, WitnessNote,
};
use crate::witness::DEFAULT_WITNESSES;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identify};
use serde::{Deserialize, Serialize};
use slicefed_ledger::checkpoint::{Checkpoint, Cosignature, EquivocationProof, SignedCheckpoint};
use slicefed_ledger::entry::{EntryBody, Usage as LedgerUsage};
use slicefed_ledger::records::{self, EXPORT_MAGIC, KIND_CHECKPOINT, KIND_ENTRY};
use slicefed_ledger::source::LogSource;
use slicefed_ledger::{Ledger, LedgerOptions};
use slicefed_proto::witnessing::{Effect as WitnessEffect, Witnessing};
use slicefed_sandbox::{
    Compiled, Compiler, HostRules, KillReason, LedgerFlows, Outcome, Sandbox, SandboxConfig,
    SharedHostRules, SliverHandle, SliverSpec, Stdio,
};
use slicefed_trust::codec;
use slicefed_trust::{
    Context, Credential, Invocation, InvocationHash, ModuleHash, PublicKey, SecretKey, TrustPolicy,
    Verifier,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};

/// Members a node stays connected to (more when others dial it).
pub const TARGET_MEMBER_CONNECTIONS: usize = 8;
/// The file in a node's directory that says where it listens (one multiaddr per line).
pub const LISTEN_ADDRS_FILE: &str = "listen.addrs";
/// Gossip topic of adverts.
pub const ADVERT_TOPIC: &str = "slicefed/adverts/1";
/// Gossip topic of revocations.
pub const REVOCATION_TOPIC: &str = "slicefed/revocations/1";
/// Gossip topic of equivocation proofs.
pub const EQUIVOCATION_TOPIC: &str = "slicefed/equivocations/1";
/// Bytes of each sliver's stdout and stderr kept.
pub const LOG_BYTES: usize = 64 * 1024;
/// Ended slivers remembered for status and logs.
pub const MAX_ENDED: usize = 256;
/// Own checkpoints whose cosignatures are kept in memory.
pub const MAX_COSIGNED_CHECKPOINTS: usize = 64;
/// Cosignatures kept per checkpoint.
pub const MAX_COSIGNATURES: usize = 16;
/// Entries in one page answer.
pub const MAX_PAGE_ENTRIES: u64 = 4096;
/// Listen addresses remembered per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;
/// Blocking jobs (writing a new sliver and compiling it, reading log pages and replicas)
/// running at once, off the network loop.
pub const WORKERS: usize = 2;
/// Jobs running or waiting; past this, a request that needs one is answered "busy".
pub const MAX_JOBS: usize = 64;
/// Bytes of answers being written to peers, all together: a large answer past this is
/// refused as busy rather than held (a peer that never reads holds its answer until the
/// request times out).
pub const MAX_RESPONSE_MEMORY: usize = 64 << 20;
/// Bytes of answers being written to one peer: one client that never reads cannot hold
/// the whole budget.
pub const MAX_RESPONSE_MEMORY_PER_PEER: usize = 8 << 20;
/// Answers this small are always sent (errors, receipts, acknowledgements).
const SMALL_RESPONSE: usize = 64 << 10;
/// Records in the cosignature file past which it is rewritten with what is kept.
const COSIGNATURE_FILE_RECORDS: usize = 4 * MAX_COSIGNED_CHECKPOINTS * MAX_COSIGNATURES;
/// How often a failed ledger is tried again.
const LEDGER_RETRY: Duration = Duration::from_secs(1);
/// Largest saved-sliver file.
const MAX_SAVED_SLIVER_BYTES: usize = 128 * 1024;
/// Largest module kept on disk.
const MAX_MODULE_BYTES: usize = crate::net::MAX_REQUEST_BYTES;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node's own certificate does not verify under its owner's policy.
    #[error("this node's certificate does not verify: {0}")]
    BadCertificate(String),
    /// The network failed.
    #[error("network: {0}")]
    Net(String),
    /// The node's directory, ledger or sandbox could not be opened.
    #[error("{0}")]
    Setup(String),
}

/// How to run a node.
pub struct NodeConfig {
    /// The node key.
    pub key: SecretKey,
    /// The node credential file bytes (node certificate and chain).
    pub credential: Vec<u8>,
    /// The owner's trust policy.
    pub policy: TrustPolicy,
    /// The node's directory (ledger, replicas, saved slivers).
    pub dir: PathBuf,
    /// Where compiled modules are cached (default `DIR/cache`); nodes on one machine may
    /// share it, since entries are keyed by module and engine hash.
    pub cache_dir: Option<PathBuf>,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// How often to advertise (and gossip a checkpoint).
    pub advert_interval: Duration,
    /// What the owner grants slivers.
    pub capacity: Capacity,
    /// Witnesses per log.
    pub witnesses: usize,
    /// Test-only: after its first few checkpoints, also sign and gossip a second, different
    /// history at the same size (an equivocating node, to show it is caught).
    pub test_equivocate: bool,
    /// Bring back saved slivers at start (`node run --no-restore` sets it false: they are
    /// logged as not restored and forgotten).
    pub restore: bool,
    /// Bytes of one origin's log this node keeps as a witness.
    pub replica_quota: u64,
    /// Bytes of all the replicas this node keeps as a witness.
    pub replicas_quota: u64,
}

impl NodeConfig {
    /// A configuration with the usual defaults for everything but identity and place.
    pub fn new(key: SecretKey, credential: Vec<u8>, policy: TrustPolicy, dir: PathBuf) -> Self {
        NodeConfig {
            key,
            credential,
            policy,
            dir,
            cache_dir: None,
            listen: vec![],
            bootstrap: vec![],
            advert_interval: Duration::from_secs(5),
            capacity: Capacity {
                max_slivers: 100,
                memory: 4 << 30,
                default_sliver_memory: 64 << 20,
            },
            witnesses: DEFAULT_WITNESSES,
            test_equivocate: false,
            restore: true,
            replica_quota: crate::witness::DEFAULT_REPLICA_QUOTA,
            replicas_quota: crate::witness::DEFAULT_REPLICAS_QUOTA,
        }
    }
}

pub use crate::wire::MemberRow;

/// What is kept on disk so a sliver comes back after a restart.
#[derive(Serialize, Deserialize)]
struct SavedSliver {
    #[serde(with = "serde_bytes")]
    credential: Vec<u8>,
    module: ModuleHash,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

struct Live {
    handle: SliverHandle,
    flows: Arc<LedgerFlows>,
    plan: SliverPlan,
    stopping: Option<StopReason>,
    /// Its flows are being drained into the ledger (it ended).
    closing: bool,
    /// They are all in (see `Daemon::finish`).
    drained: bool,
}

struct Ended {
    status: SliverStatus,
    logs: SliverLogs,
    /// Who may still read its output.
    holders: Vec<PublicKey>,
}

/// Publishes on a gossip topic and counts the payload. Publishing fails when no peer is
/// subscribed yet, which is normal at start; gossip is best-effort by design.
fn publish(swarm: &mut Swarm, traffic: &mut Traffic, topic: &str, bytes: Vec<u8>) {
    let len = bytes.len() as u64;
    if swarm
        .behaviour_mut()
        .gossipsub
        .publish(IdentTopic::new(topic), bytes)
        .is_ok()
    {
        traffic.gossip_out = traffic.gossip_out.saturating_add(len);
    }
}

/// The one-minute load average × 100, where the system reports it (Linux), else 0.
fn load_average_x100() -> u32 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |l| (l * 100.0).clamp(0.0, f64::from(u32::MAX)) as u32)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn peer_of(pk: &PublicKey) -> Option<PeerId> {
    pk.peer_id().parse().ok()
}

fn key_of(peer: &PeerId) -> Option<PublicKey> {
    PublicKey::from_peer_id(&peer.to_string()).ok()
}

/// Drops a value on a plain thread: the sandbox owns a tokio runtime, which must not be
/// dropped from inside the daemon's async context.
struct DropOffThread<T: Send + 'static>(Option<T>);
impl<T: Send + 'static> Drop for DropOffThread<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            let _ = std::thread::spawn(move || drop(v)).join();
        }
    }
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    // The daemon runs on a multi-threaded runtime; fdatasync and compilation block this
    // worker only, while others keep the swarm's connections alive.
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

struct Daemon {
    key: SecretKey,
    me: PublicKey,
    dir: PathBuf,
    credential: Vec<u8>,
    my_name: String,
    my_authority: String,
    core: NodeCore,
    /// The node's part in witnessing (shared with the simulator).
    witnessing: Witnessing,
    ledger: Arc<Ledger>,
    sandbox: DropOffThread<Sandbox>,
    live: BTreeMap<u64, Live>,
    ended: VecDeque<Ended>,
    cosigs: BTreeMap<u64, (SignedCheckpoint, Vec<Cosignature>)>,
    /// Witness fetches in flight: whose log, and from whom if not from its origin.
    fetches: BTreeMap<OutboundRequestId, (PublicKey, Option<PublicKey>)>,
    /// Revocation catch-ups in flight (at most one per member per sync interval).
    /// (member, asked after, pages so far) of each catch-up request in flight.
    revocation_fetches:
        BTreeMap<OutboundRequestId, (PublicKey, Option<slicefed_trust::CertId>, u32)>,
    last_advert_ms: u64,
    addrs: BTreeMap<PeerId, Vec<Multiaddr>>,
    my_addrs: Vec<Multiaddr>,
    wire_bytes: Option<net::WireBytes>,
    traffic: Traffic,
    ticks: u64,
    started: Instant,
    bootstrap: Vec<Multiaddr>,
    /// Saved slivers wait for a working ledger (nothing runs unrecorded).
    restore_pending: bool,
    /// Whether saved slivers come back at all (`node run --no-restore`).
    restore: bool,
    last_recovery: Instant,
    /// The owner's rules for the machine itself, shared with every sliver.
    host: SharedHostRules,
    /// Compiles modules on workers.
    compiler: Compiler,
    /// Where finished jobs report.
    done_tx: mpsc::Sender<Done>,
    /// Permits for blocking jobs.
    workers: Arc<Semaphore>,
    /// Jobs running or waiting.
    jobs: usize,
    /// Admitted slivers not started yet.
    starting: BTreeMap<u64, Starting>,
    /// Request allowances by peer and by address.
    quotas: crate::quota::Quotas,
    /// The remote address of each connection (for quotas by address).
    conn_ips: HashMap<libp2p::swarm::ConnectionId, std::net::IpAddr>,
    /// Answers being written, by request (to whom, how large), and their totals.
    responding: HashMap<InboundRequestId, (PeerId, usize)>,
    responding_bytes: usize,
    responding_per_peer: HashMap<PeerId, usize>,
    /// Who asked each request not answered yet (bounded by the swarm's streams).
    asker: HashMap<InboundRequestId, PeerId>,
    /// Where each replica file's records are.
    replica_index: BTreeMap<PublicKey, ReplicaIndex>,
    /// Saved slivers as this node's log records them: created with this ticket (the latest
    /// renewal's) and invocation, and not stopped.
    logged_slivers: BTreeMap<u64, (slicefed_trust::CertId, InvocationHash)>,
    /// Records appended to the cosignature file since it was last rewritten.
    cosig_records: usize,
}

type Swarm = libp2p::Swarm<net::Behaviour>;

/// Runs the node until `shutdown` resolves. `on_listen` is told each listen address (with
/// `/p2p/PEERID`), so a caller can print it.
pub async fn run(
    config: NodeConfig,
    mut on_listen: impl FnMut(&Multiaddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    // Jobs and flow drains report here; a full channel only makes them wait.
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(MAX_JOBS + 256);
    let mut d = Daemon::open(&config, done_tx)?;
    // The owner's channel first: it must work however the public port is treated.
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminCall>(crate::admin::ADMIN_QUEUE);
    crate::admin::serve(&config.dir, admin_tx)
        .map_err(|e| NodeError::Setup(format!("the owner's admin socket: {e}")))?;
    let (mut swarm, wire_bytes) =
        net::swarm(&config.key).map_err(|e| NodeError::Net(e.to_string()))?;
    d.wire_bytes = Some(wire_bytes);
    for l in &config.listen {
        swarm
            .listen_on(l.clone())
            .map_err(|e| NodeError::Net(format!("listen on {l}: {e}")))?;
    }
    for b in &config.bootstrap {
        swarm
            .dial(b.clone())
            .map_err(|e| NodeError::Net(format!("dial {b}: {e}")))?;
    }
    for t in [ADVERT_TOPIC, REVOCATION_TOPIC, EQUIVOCATION_TOPIC] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(t))
            .map_err(|e| NodeError::Net(e.to_string()))?;
    }
    d.bootstrap = config.bootstrap.clone();
    d.learn_machine_addresses();
    d.restore_slivers();
    if !d.restore_pending {
        d.prune_modules();
    }
    let mut tick = tokio::time::interval(config.advert_interval);
    let mut reap = tokio::time::interval(Duration::from_millis(100));
    let my_peer = *swarm.local_peer_id();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // In this order: the owner, then finished work, then the network.
            biased;
            Some(call) = admin_rx.recv() => d.on_admin(&mut swarm, call),
            _ = &mut shutdown => break,
            Some(done) = done_rx.recv() => d.on_done(&mut swarm, done),
            _ = tick.tick() => d.on_tick(&mut swarm),
            _ = reap.tick() => d.reap(),
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    if d.my_addrs.len() < MAX_ADDRS_PER_PEER {
                        d.my_addrs.push(address.clone());
                    }
                    d.learn_own_address(&address);
                    d.save_listen_addrs(my_peer);
                    on_listen(&address.with(libp2p::multiaddr::Protocol::P2p(my_peer)));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    d.learn_addrs(&mut swarm, peer_id, info.listen_addrs);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    let verdict = d.on_gossip(&mut swarm, &message);
                    if matches!(verdict, MessageAcceptance::Accept) {
                        d.traffic.gossip_in = d.traffic.gossip_in.saturating_add(message.data.len() as u64);
                    }
                    let _ = swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, verdict);
                }
                SwarmEvent::ConnectionEstablished { connection_id, endpoint, .. } => {
                    if let Some(ip) = remote_ip(endpoint.get_remote_address()) {
                        d.conn_ips.insert(connection_id, ip);
                    }
                }
                SwarmEvent::ConnectionClosed { connection_id, .. } => {
                    d.conn_ips.remove(&connection_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message { peer, connection_id, message })) => match message {
                    request_response::Message::Request { request_id, request, channel } => {
                        d.on_request(&mut swarm, (peer, connection_id), request_id, &request, channel);
                    }
                    request_response::Message::Response { request_id, response } => {
                        d.on_response(&mut swarm, request_id, &response);
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::ResponseSent { request_id, .. })) => {
                    d.answered(request_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::InboundFailure { request_id, .. })) => {
                    d.answered(request_id);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::OutboundFailure { request_id, .. })) => {
                    if let Some((origin, _)) = d.fetches.remove(&request_id) {
                        d.witnessing.fetch_failed(&origin);
                    }
                    d.revocation_fetches.remove(&request_id);
                }
                _ => {}
            }
        }
    }
    d.shutdown();
    Ok(())
}

/// Work finished off the loop, handed back to it.
enum Done {
    /// The answer to a request that needed a blocking read.
    Answer {
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        response: Box<Response>,
    },
    /// An admitted sliver's creation was written (or not) and its module compiled (or
    /// not): start it and answer its submitter.
    Started {
        id: u64,
        recorded: Result<(), String>,
        compiled: Result<Arc<Compiled>, String>,
    },
    /// A job panicked; for a start, which sliver.
    Lost { sliver: Option<u64> },
    /// An ended sliver's flow records are all in the ledger (not a job: drained on a thread
    /// of its own, since it may wait for the ledger to recover).
    Drained { sliver: u64 },
    /// A submitted module was hashed: admit it.
    Hashed {
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        hash: ModuleHash,
        submission: Box<Submission>,
    },
}

/// What a ticket's submitter sent.
struct Submission {
    credential: Vec<u8>,
    module: Vec<u8>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A sliver admitted and waiting for its creation to be durable and its module compiled.
struct Starting {
    request: InboundRequestId,
    channel: ResponseChannel<Vec<u8>>,
    /// The admitted receipt, sent only once the sliver starts.
    receipt: Option<Vec<u8>>,
    plan: SliverPlan,
    args: Vec<String>,
    env: Vec<(String, String)>,
    saved: PathBuf,
    /// A stop that arrived meanwhile (a delete, a revocation, the owner).
    stop: Option<StopReason>,
}

impl Daemon {
    fn open(config: &NodeConfig, done_tx: mpsc::Sender<Done>) -> Result<Daemon, NodeError> {
        let me = config.key.public();
        let setup =
            |what: &str, e: &dyn std::fmt::Display| NodeError::Setup(format!("{what}: {e}"));
        // Refuse to start with a certificate our own owner would refuse.
        let cred = Credential::from_bytes(&config.credential)
            .map_err(|e| NodeError::BadCertificate(e.to_string()))?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let own = Verifier::new(config.policy.clone())
            .verify(
                cred.leaf(),
                &pool,
                &Context {
                    now: now_ms() / 1000,
                    node: None,
                },
            )
            .map_err(|e| NodeError::BadCertificate(e.to_string()))?;
        let (my_name, my_authority) = match &own.leaf.object {
            slicefed_trust::verify::Object::NodeCert(c) if c.subject == me => {
                (c.name.to_string(), own.responsible.authority.to_string())
            }
            _ => {
                return Err(NodeError::BadCertificate(
                    "it is not a node certificate for this node's key".into(),
                ));
            }
        };
        for sub in ["replicas", "slivers", "modules"] {
            let p = config.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| setup(&p.display().to_string(), &e))?;
        }
        let ledger = Ledger::open(
            &config.dir.join("ledger"),
            SecretKey::from_seed(&config.key.seed()),
            LedgerOptions::default(),
        )
        .map_err(|e| setup("the node's ledger", &e))?;
        let mut sb = SandboxConfig::new(
            &config
                .cache_dir
                .clone()
                .unwrap_or_else(|| config.dir.join("cache")),
        );
        sb.max_slivers = config.capacity.max_slivers.max(1);
        // Slivers' sockets get half the descriptors; the node keeps the rest for its own
        // connections and files.
        sb.max_sockets = usize::try_from(raise_descriptor_limit() / 2).unwrap_or(usize::MAX);
        sb.max_memory_per_sliver = config.capacity.memory.clamp(1 << 20, 4 << 30);
        sb.worker_threads = sb.worker_threads.min(4);
        let sandbox = Sandbox::new(sb).map_err(|e| setup("the sandbox", &e))?;
        let compiler = sandbox.compiler();
        let mut core = NodeCore::new(
            SecretKey::from_seed(&config.key.seed()),
            config.capacity.clone(),
            config.policy.clone(),
        );
        core.set_advert_timing(
            config.advert_interval.as_millis() as u64,
            crate::core::ADVERTS_HEARD_PER_SEC,
        );
        let size = ledger.size().map_err(|e| setup("the node's ledger", &e))?;
        // Revocations this node honoured before it stopped still hold: read back from its
        // own log before any sliver is restored (what it missed while away, it asks members
        // for once their adverts show a different revocation set).
        // In the same pass, what the log says of the slivers saved for a restart: only one
        // it records as created (with that ticket and invocation) and not stopped comes back
        // (the saved files are the owner's to write; the log is witnessed).
        let saved_ids: std::collections::BTreeSet<u64> =
            std::fs::read_dir(config.dir.join("slivers"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|e| e.path().file_stem()?.to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
        let mut logged_slivers: BTreeMap<u64, (slicefed_trust::CertId, InvocationHash)> =
            BTreeMap::new();
        for seq in 0..size {
            let Ok(leaf) = ledger.read(seq) else { continue };
            let Ok(e) = slicefed_ledger::entry::Entry::decode(&leaf) else {
                continue;
            };
            match e.body {
                EntryBody::RevocationSeen { revocation, .. } => {
                    let _ = core.remember_revocation(now_ms(), &revocation);
                }
                EntryBody::SliverCreated {
                    who,
                    ticket,
                    invocation,
                    ..
                } if saved_ids.contains(&who.sliver) => {
                    logged_slivers.insert(who.sliver, (ticket, invocation.hash()));
                }
                EntryBody::SliverRenewed { who, ticket, .. } => {
                    if let Some(l) = logged_slivers.get_mut(&who.sliver) {
                        l.0 = ticket;
                    }
                }
                EntryBody::SliverStopped { who, .. } => {
                    logged_slivers.remove(&who.sliver);
                }
                _ => {}
            }
        }
        // Sliver ids stay unique across restarts: every id used so far is below the size of
        // the log, since each sliver's creation appended an entry.
        core.continue_ids_from(size + 1);
        let ledger = Arc::new(ledger);
        let mut d = Daemon {
            key: SecretKey::from_seed(&config.key.seed()),
            me,
            dir: config.dir.clone(),
            credential: config.credential.clone(),
            my_name,
            my_authority,
            core,
            witnessing: {
                let mut w = Witnessing::new(
                    SecretKey::from_seed(&config.key.seed()),
                    config.witnesses,
                    config.advert_interval.as_millis() as u64,
                    1,
                );
                w.witness_mut()
                    .set_quotas(config.replica_quota, config.replicas_quota);
                if config.test_equivocate {
                    w.test_equivocate();
                }
                w
            },
            ledger,
            sandbox: DropOffThread(Some(sandbox)),
            live: BTreeMap::new(),
            ended: VecDeque::new(),
            cosigs: BTreeMap::new(),
            fetches: BTreeMap::new(),
            revocation_fetches: BTreeMap::new(),
            last_advert_ms: 0,
            addrs: BTreeMap::new(),
            my_addrs: vec![],
            wire_bytes: None,
            traffic: Traffic::default(),
            ticks: 0,
            started: Instant::now(),
            bootstrap: vec![],
            restore_pending: false,
            restore: config.restore,
            last_recovery: Instant::now(),
            host: Arc::new(std::sync::RwLock::new(HostRules {
                local_allow: config.policy.local_allow().to_vec(),
                ..HostRules::default()
            })),
            compiler,
            done_tx,
            workers: Arc::new(Semaphore::new(WORKERS)),
            jobs: 0,
            starting: BTreeMap::new(),
            quotas: crate::quota::Quotas::default(),
            conn_ips: HashMap::new(),
            responding: HashMap::new(),
            responding_bytes: 0,
            responding_per_peer: HashMap::new(),
            asker: HashMap::new(),
            replica_index: BTreeMap::new(),
            logged_slivers,
            cosig_records: 0,
        };
        // A node whose disk is full still starts, unhealthy, and recovers when it can write.
        let _ = d.append(EntryBody::NodeStarted {
            node: me,
            name: slicefed_trust::Name::parse(&d.my_name).ok(),
            software: format!("slicefed {}", env!("CARGO_PKG_VERSION")),
            policy: ModuleHash::of(config.policy.to_toml().as_bytes()).0,
        });
        d.restore_replicas();
        d.restore_cosignatures();
        Ok(d)
    }

    fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.0.as_ref()
    }

    /// Appends and waits until the entry is durable. A failure puts the node in its
    /// fail-closed state at once (see [`Daemon::check_ledger`]); the caller drops whatever
    /// depended on the entry (see `submit`).
    fn append(&mut self, body: EntryBody) -> Result<(), String> {
        let ledger = self.ledger.clone();
        match blocking(move || ledger.append(now_ms(), body)) {
            Ok(_) => Ok(()),
            Err(e) => {
                let why = e.to_string();
                self.ledger_failing(&why);
                Err(why)
            }
        }
    }

    /// The ledger cannot append: refuse tickets, advertise it, say it once on stderr. (The
    /// sandbox denies new flows by itself: its flow sink asks the ledger.)
    fn ledger_failing(&mut self, why: &str) {
        if self.core.unhealthy().is_none() {
            eprintln!(
                "slicefed node: the ledger cannot write ({why}); refusing tickets and denying new flows until it can"
            );
        }
        self.core.ledger_failed(why);
    }

    /// Keeps the core's view of the ledger current and, while it fails, tries to bring it
    /// back once a second (a full disk that was cleaned up, a remounted volume).
    fn check_ledger(&mut self) {
        match self.ledger.failure() {
            None => {
                if self.core.unhealthy().is_some() {
                    self.core.ledger_recovered();
                    eprintln!("slicefed node: the ledger writes again; taking tickets");
                    if self.restore_pending {
                        self.restore_pending = false;
                        self.restore_slivers();
                    }
                }
            }
            Some(why) => {
                self.ledger_failing(&why);
                if self.last_recovery.elapsed() >= LEDGER_RETRY {
                    self.last_recovery = Instant::now();
                    let ledger = self.ledger.clone();
                    if blocking(move || ledger.recover()).is_ok() {
                        self.check_ledger();
                    }
                }
            }
        }
    }

    fn replica_path(&self, origin: &PublicKey) -> PathBuf {
        self.dir
            .join("replicas")
            .join(format!("{}.sfexp", origin.to_hex()))
    }

    /// Reads back every replica file, keeps its verified prefix (a torn tail from a crash is
    /// cut off) and hands the trees to the witness.
    fn restore_replicas(&mut self) {
        let Ok(dir) = std::fs::read_dir(self.dir.join("replicas")) else {
            return;
        };
        for e in dir.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "sfexp") {
                continue;
            }
            let Ok(src) = LogSource::load(&path) else {
                continue;
            };
            let (recs, _) = src.records();
            let r = slicefed_ledger::replay::replay(
                src.origin,
                &recs,
                slicefed_ledger::replay::Depth::Hashes,
            );
            // Keep records up to the last checkpoint that verified.
            let good_end = r.checkpoints.last().map(|c| c.checkpoint.size).unwrap_or(0);
            let mut tree = r.tree;
            if !r.report.valid || tree.len() != good_end {
                tree.truncate(good_end.min(r.report.entries));
            }
            let latest = r
                .checkpoints
                .iter()
                .rev()
                .find(|c| c.checkpoint.size == tree.len())
                .cloned();
            let (bytes, _, _) = {
                // Rewrite the file to hold exactly what is kept.
                let mut out = records::file_header(EXPORT_MAGIC, &src.origin);
                let mut n = 0u64;
                for rec in &recs {
                    if rec.kind == KIND_ENTRY {
                        if n >= tree.len() {
                            continue;
                        }
                        n += 1;
                    } else if rec.kind == KIND_CHECKPOINT
                        && codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256)
                            .is_ok_and(|c| c.checkpoint.size > tree.len())
                    {
                        continue;
                    }
                    records::frame(rec.kind, rec.payload, &mut out);
                }
                (out, n, ())
            };
            let _ = write_atomic(&path, &bytes);
            let mut index = ReplicaIndex::default();
            index.add(
                records::FILE_HEADER_BYTES as u64,
                bytes.get(records::FILE_HEADER_BYTES..).unwrap_or_default(),
            );
            self.replica_index.insert(src.origin, index);
            let held = bytes.len().saturating_sub(records::FILE_HEADER_BYTES) as u64;
            self.witnessing
                .witness_mut()
                .restore(src.origin, tree, latest, held);
        }
    }

    fn cosig_path(&self) -> PathBuf {
        self.dir.join("cosignatures")
    }

    fn restore_cosignatures(&mut self) {
        // Bounded: the file is rewritten past COSIGNATURE_FILE_RECORDS records.
        let Ok(bytes) = read_limited(&self.cosig_path(), 64 << 20) else {
            return;
        };
        let mut off = 0;
        while let Ok((rec, next)) = records::parse_one(&bytes, off) {
            off = next;
            self.cosig_records += 1;
            if let Ok(c) = Cosigned::from_bytes(rec.payload) {
                self.keep_cosignature(c);
            }
        }
    }

    /// Appends a cosignature of this node's log to its file; past
    /// [`COSIGNATURE_FILE_RECORDS`] the file is rewritten with only what is kept in memory
    /// (the latest checkpoints' cosignatures), so it does not grow for ever.
    fn save_cosignature(&mut self, c: &Cosigned) {
        let mut rec = vec![];
        if let Ok(bytes) = c.to_bytes() {
            records::frame(KIND_CHECKPOINT, &bytes, &mut rec);
            let _ = append_synced(&self.cosig_path(), &rec, None);
            self.cosig_records += 1;
        }
        if self.cosig_records < COSIGNATURE_FILE_RECORDS {
            return;
        }
        let mut all = vec![];
        for (cp, sigs) in self.cosigs.values() {
            for sig in sigs {
                let kept = Cosigned {
                    checkpoint: cp.clone(),
                    cosignature: sig.clone(),
                };
                if let Ok(bytes) = kept.to_bytes() {
                    records::frame(KIND_CHECKPOINT, &bytes, &mut all);
                }
            }
        }
        if write_atomic(&self.cosig_path(), &all).is_ok() {
            self.cosig_records = 0;
        }
    }

    fn keep_cosignature(&mut self, c: Cosigned) -> bool {
        let size = c.checkpoint.checkpoint.size;
        let entry = self
            .cosigs
            .entry(size)
            .or_insert_with(|| (c.checkpoint.clone(), vec![]));
        if entry.0 != c.checkpoint
            || entry.1.len() >= MAX_COSIGNATURES
            || entry.1.iter().any(|x| x.witness == c.cosignature.witness)
        {
            return false;
        }
        entry.1.push(c.cosignature);
        while self.cosigs.len() > MAX_COSIGNED_CHECKPOINTS {
            self.cosigs.pop_first();
        }
        // One older than every checkpoint kept was dropped at once: nothing to save.
        self.cosigs.contains_key(&size)
    }

    fn saved_path(&self, id: u64) -> PathBuf {
        self.dir.join("slivers").join(format!("{id}.sliver"))
    }

    fn module_path(&self, hash: &ModuleHash) -> PathBuf {
        self.dir
            .join("modules")
            .join(format!("{}.wasm", hash.to_hex()))
    }

    /// After a restart: slivers whose tickets still verify come back under their ids; the
    /// others are logged as not restored and forgotten.
    fn restore_slivers(&mut self) {
        if self.core.unhealthy().is_some() {
            // Kept on disk until the ledger works: a restored sliver must be recorded.
            self.restore_pending = true;
            return;
        }
        let Ok(dir) = std::fs::read_dir(self.dir.join("slivers")) else {
            return;
        };
        let mut saved: Vec<(u64, PathBuf)> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let p = e.path();
                let id = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
                Some((id, p))
            })
            .collect();
        saved.sort();
        for (id, path) in saved {
            // Already back (a restore resumed after the ledger recovered).
            if self.live.contains_key(&id) || self.core.slivers().any(|p| p.id == id) {
                continue;
            }
            if !self.restore {
                let _ = self.append(EntryBody::OwnerAction {
                    action: format!(
                        "did not restore sliver {id}: the owner started the node with --no-restore"
                    ),
                    who: None,
                });
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let restored = read_limited(&path, MAX_SAVED_SLIVER_BYTES)
                .and_then(|b| {
                    codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES)
                        .map_err(|e| e.to_string())
                })
                .and_then(|s| {
                    // Only what this node's own log says ran here, as saved.
                    let ticket = Credential::from_bytes(&s.credential)
                        .map(|c| slicefed_trust::CertId::of(c.leaf()))
                        .map_err(|e| e.to_string())?;
                    let invocation = Invocation::new(s.args.clone(), s.env.clone()).hash();
                    if self.logged_slivers.get(&id) != Some(&(ticket, invocation)) {
                        return Err(
                            "this node's log does not record it as created with that ticket and those arguments, and not stopped"
                                .into(),
                        );
                    }
                    let module = read_limited(&self.module_path(&s.module), MAX_MODULE_BYTES)?;
                    let outs = self
                        .core
                        .restore(
                            now_ms(),
                            id,
                            &s.credential,
                            &Invocation::new(s.args.clone(), s.env.clone()),
                        )
                        .map_err(|e| e.to_string())?;
                    Ok((s, module, outs))
                });
            match restored {
                Ok((s, module, outs)) => {
                    let mut plan = None;
                    let mut not_recorded = None;
                    for o in outs {
                        match o {
                            Output::Start(p) => plan = Some(p),
                            // It runs only once its restoration is durable.
                            Output::Append(body) => {
                                if let Err(why) = self.append(body) {
                                    not_recorded.get_or_insert(why);
                                }
                            }
                            other => {
                                self.carry_out(None, other, false);
                            }
                        }
                    }
                    if let Some(why) = not_recorded {
                        // Kept on disk; tried again when the ledger works.
                        let _ = self.core.not_recorded(now_ms(), id, &why);
                        self.restore_pending = true;
                        return;
                    }
                    if let Some(p) = plan
                        && let Err(e) = self.start(p, &module, s.args, s.env)
                    {
                        for o in self.core.start_failed(now_ms(), id, &e) {
                            self.carry_out(None, o, false);
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Err(why) => {
                    if self
                        .append(EntryBody::OwnerAction {
                            action: format!("did not restore sliver {id} after a restart: {why}")
                                .chars()
                                .take(900)
                                .collect(),
                            who: None,
                        })
                        .is_ok()
                    {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
    }

    /// Removes a submitted module once no sliver here runs it (modules are kept only so
    /// slivers come back after a restart).
    fn forget_module_if_unused(&self, module: &ModuleHash) {
        let used = self.live.values().any(|l| l.plan.module == *module)
            || self.starting.values().any(|s| s.plan.module == *module);
        if !used {
            let _ = std::fs::remove_file(self.module_path(module));
        }
    }

    /// Removes modules no saved sliver names (left by slivers that were not restored).
    fn prune_modules(&self) {
        let mut wanted = std::collections::BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir(self.dir.join("slivers")) {
            for e in dir.filter_map(Result::ok) {
                if let Ok(b) = read_limited(&e.path(), MAX_SAVED_SLIVER_BYTES)
                    && let Ok(s) =
                        codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES)
                {
                    wanted.insert(self.module_path(&s.module));
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.dir.join("modules")) {
            for e in dir.filter_map(Result::ok) {
                if !wanted.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Compiles (through the cache) and starts an admitted sliver (restores only: new
    /// slivers compile on a worker, see `submit`).
    fn start(
        &mut self,
        plan: SliverPlan,
        module: &[u8],
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<(), String> {
        let compiler = self.compiler.clone();
        let compiled = blocking(|| compiler.compile(module)).map_err(|e| e.to_string())?;
        self.start_compiled(plan, compiled, args, env)
    }

    /// Starts an admitted sliver from its compiled module.
    fn start_compiled(
        &mut self,
        plan: SliverPlan,
        compiled: Arc<Compiled>,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<(), String> {
        let sandbox = self.sandbox().ok_or("the sandbox is shut down")?;
        if compiled.hash != plan.module {
            return Err("the module does not match the ticket".into());
        }
        let flows = Arc::new(LedgerFlows::new(self.ledger.clone()));
        let spec = SliverSpec {
            who: plan.who.clone(),
            memory: plan.memory,
            cpu_share: plan.cpu_share,
            cpu_limit: None,
            lifetime: None,
            network: plan.network.clone(),
            egress_per_day: plan.egress_per_day,
            args,
            env,
            stdio: Stdio::Capture(LOG_BYTES),
            dir: None,
            flows: flows.clone(),
            host: self.host.clone(),
        };
        let handle = sandbox.spawn(compiled, spec).map_err(|e| e.to_string())?;
        self.live.insert(
            plan.id,
            Live {
                handle,
                flows,
                plan,
                stopping: None,
                closing: false,
                drained: false,
            },
        );
        Ok(())
    }

    /// Carries out one core output. Returns a receipt, if it was one.
    fn carry_out(
        &mut self,
        swarm: Option<&mut Swarm>,
        out: Output,
        from_gossip: bool,
    ) -> Option<Vec<u8>> {
        match out {
            Output::Append(body) => {
                // A failure already put the node in its fail-closed state.
                let _ = self.append(body);
            }
            Output::Receipt(r) => return Some(r),
            Output::Stop { id, reason } => {
                if let Some(l) = self.live.get_mut(&id) {
                    l.stopping = Some(reason);
                    l.handle.stop(match reason {
                        StopReason::Expired | StopReason::Revoked => KillReason::Expired,
                        StopReason::Owner | StopReason::Deleted => KillReason::Stopped,
                    });
                } else if let Some(s) = self.starting.get_mut(&id) {
                    // Not started yet: it never will be (see `on_started`).
                    s.stop.get_or_insert(reason);
                }
            }
            Output::GossipRevocation(bytes) => {
                if !from_gossip && let Some(s) = swarm {
                    publish(s, &mut self.traffic, REVOCATION_TOPIC, bytes);
                }
            }
            Output::FetchRevocations(member) => {
                if let Some(s) = swarm {
                    self.fetch_revocations(s, member, None, 0);
                }
            }
            Output::Joined(k) => {
                self.witnessing.joined(&k);
                if self.witnessing.needs_rebuild() {
                    self.witnessing.rebuild(self.core.members());
                }
            }
            Output::Left(k) => {
                self.witnessing.left(&k, now_ms());
                if self.witnessing.needs_rebuild() {
                    self.witnessing.rebuild(self.core.members());
                }
                if let Some(p) = peer_of(&k) {
                    self.addrs.remove(&p);
                }
            }
            // Only restore starts slivers through here, and it handles `Start` itself.
            Output::Start(_) => {}
        }
        None
    }

    /// Slivers that ended: logged with their usage, their share freed, their files removed.
    fn reap(&mut self) {
        self.check_ledger();
        // Ended slivers' flow records are drained off the loop (a ledger that cannot write
        // keeps them waiting, and the loop must stay free to bring it back).
        let ended: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| !l.closing && l.handle.outcome().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(l) = self.live.get_mut(&id) else {
                continue;
            };
            l.closing = true;
            let (flows, done) = (l.flows.clone(), self.done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name("flow-drain".into())
                .spawn(move || {
                    flows.close();
                    let _ = done.blocking_send(Done::Drained { sliver: id });
                });
            if spawned.is_err() {
                // No thread to be had: try again at the next reap.
                l.closing = false;
            }
        }
        // The stop record waits for a working ledger, after every flow of the sliver.
        if self.core.unhealthy().is_some() {
            return;
        }
        let drained: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| l.drained)
            .map(|(id, _)| *id)
            .collect();
        for id in drained {
            self.finish(id);
        }
    }

    /// A sliver that ended and whose flows are all in the ledger: its stop is logged with
    /// its usage, its share freed, its files removed.
    fn finish(&mut self, id: u64) {
        let Some(l) = self.live.remove(&id) else {
            return;
        };
        let outcome = l
            .handle
            .outcome()
            .unwrap_or(Outcome::Killed(KillReason::Stopped));
        let u = l.handle.usage();
        let text = match l.stopping {
            Some(r) => format!("{outcome}: {}", r.as_str()),
            None => outcome.to_string(),
        };
        let usage = LedgerUsage {
            cpu_ns: u.cpu.as_nanos() as u64,
            peak_memory: u.peak_memory,
            bytes_in: u.bytes_in,
            bytes_out: u.bytes_out,
            flows: u.flows_allowed + u.flows_denied,
        };
        let holders = self.core.holders(id);
        for o in self.core.ended(id, &text, usage) {
            self.carry_out(None, o, false);
        }
        let _ = std::fs::remove_file(self.saved_path(id));
        self.forget_module_if_unused(&l.plan.module);
        let mut status = sliver_status(&l.plan, &l.handle, "");
        status.state = text;
        self.ended.push_back(Ended {
            status,
            logs: sliver_logs(id, &l.handle),
            holders,
        });
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    fn on_tick(&mut self, swarm: &mut Swarm) {
        let now = now_ms();
        self.ticks += 1;
        if self.ticks % 12 == 1 {
            self.learn_machine_addresses();
        }
        for o in self.core.tick(now) {
            self.carry_out(Some(swarm), o, false);
        }
        self.witnessing_tick(swarm);
        self.keep_connected(swarm);
        // The advert interval grows with the federation (see `core::ADVERTS_HEARD_PER_SEC`).
        if now.saturating_sub(self.last_advert_ms) < self.core.advert_interval_ms() {
            return;
        }
        self.last_advert_ms = now;
        let load = self.core.load();
        let advert = AdvertBody {
            node: self.me,
            credential: self.credential.clone(),
            slivers: load.slivers,
            free_memory: load.free_memory,
            load_x100: load_average_x100(),
            uptime_secs: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").into(),
            tags: vec![],
            traffic: self.traffic_now(),
            addrs: self
                .my_addrs
                .iter()
                .take(wire::MAX_TAGS)
                .map(|a| a.to_string())
                .collect(),
            time_ms: now,
            revocations: load.revocations,
            unhealthy: load.unhealthy.clone(),
        }
        .sign(&self.key)
        .and_then(|a| a.to_bytes());
        if let Ok(bytes) = advert {
            // No peer subscribed yet is normal at start.
            publish(swarm, &mut self.traffic, ADVERT_TOPIC, bytes);
        }
    }

    /// Asks `member` for the revocations it holds after `after` (one page, the `pages`-th of
    /// this catch-up).
    fn fetch_revocations(
        &mut self,
        swarm: &mut Swarm,
        member: PublicKey,
        after: Option<slicefed_trust::CertId>,
        pages: u32,
    ) {
        if let Some((id, _)) = self.request(swarm, &member, Request::Revocations { after }) {
            self.revocation_fetches.insert(id, (member, after, pages));
        }
    }

    /// Sends a request to a member at the addresses it advertised. `None` when its key is
    /// not a peer id or the request does not encode. Returns the request id and its size.
    fn request(
        &self,
        swarm: &mut Swarm,
        to: &PublicKey,
        req: Request,
    ) -> Option<(OutboundRequestId, usize)> {
        let p = peer_of(to)?;
        let bytes = req.to_bytes().ok()?;
        let len = bytes.len();
        let addrs = self.addrs.get(&p).cloned().unwrap_or_default();
        let id = swarm
            .behaviour_mut()
            .rpc
            .send_request_with_addresses(&p, bytes, addrs);
        Some((id, len))
    }

    /// A page of a member's revocations: each is judged and honoured like a gossiped one,
    /// and one that is new here is gossiped on if it was issued while this node was up
    /// (`NodeCore::caught_up_revocation`: then the rest of a healed partition may have
    /// missed it too); a full page asks for the next.
    fn on_revocations(
        &mut self,
        swarm: &mut Swarm,
        (member, after, pages): (PublicKey, Option<slicefed_trust::CertId>, u32),
        list: Vec<Vec<u8>>,
    ) {
        let now = now_ms();
        let next = crate::core::next_revocation_page(&list, after, pages + 1);
        let up_since = now.saturating_sub(self.started.elapsed().as_millis() as u64);
        for bytes in list {
            if let Ok(outs) = self.core.caught_up_revocation(now, &bytes, up_since) {
                for o in outs {
                    self.carry_out(Some(swarm), o, false);
                }
            }
        }
        if let Some(cursor) = next {
            self.fetch_revocations(swarm, member, Some(cursor), pages + 1);
        }
    }

    /// Keeps connections to at least [`TARGET_MEMBER_CONNECTIONS`] members. Gossipsub
    /// keeps only mesh connections alive, so without this a node that joined through one
    /// bootstrap node is cut off once that node prunes it from its mesh. Each node prefers
    /// the members whose hash with its own key is lowest: a stable random graph, connected
    /// with high probability, that does not churn from tick to tick.
    fn keep_connected(&mut self, swarm: &mut Swarm) {
        let connected: std::collections::BTreeSet<PeerId> =
            swarm.connected_peers().copied().collect();
        let members: Vec<PeerId> = self.core.members().keys().filter_map(peer_of).collect();
        let have = members.iter().filter(|p| connected.contains(p)).count();
        if have >= TARGET_MEMBER_CONNECTIONS {
            return;
        }
        // A node that lost every connection also forgets its members after
        // MEMBER_TIMEOUT_MS; the bootstrap nodes are then its way back in.
        if have < 2 {
            for b in &self.bootstrap {
                let peer = b.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                if let Some(p) = peer.filter(|p| !connected.contains(p)) {
                    let _ = swarm.dial(
                        libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                            .addresses(vec![b.clone()])
                            .condition(
                                libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing,
                            )
                            .build(),
                    );
                }
            }
        }
        let me = self.me.as_bytes().to_vec();
        let mut candidates: Vec<([u8; 32], PeerId)> = members
            .into_iter()
            .filter(|p| !connected.contains(p) && self.addrs.contains_key(p))
            .map(|p| {
                let h = ModuleHash::of(&[me.as_slice(), &p.to_bytes()].concat()).0;
                (h, p)
            })
            .collect();
        candidates.sort();
        for (_, p) in candidates
            .into_iter()
            .take(TARGET_MEMBER_CONNECTIONS - have)
        {
            let addrs = self.addrs.get(&p).cloned().unwrap_or_default();
            let _ = swarm.dial(
                libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                    .addresses(addrs)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    /// Signs a checkpoint of everything durable if the last one is behind, and lets the
    /// witnessing machine send it to this node's witnesses (when it grew, and again now and
    /// then) and hand over the logs of members that left.
    fn witnessing_tick(&mut self, swarm: &mut Swarm) {
        let ledger = self.ledger.clone();
        let cp = blocking(move || {
            let size = ledger.size().ok()?;
            match ledger.latest_checkpoint().ok()? {
                Some(c) if c.checkpoint.size == size => Some(c),
                _ => ledger.checkpoint().ok(),
            }
        });
        let effects = self
            .witnessing
            .tick(now_ms(), cp.as_ref(), self.core.members());
        self.witness_effects(swarm, effects);
    }

    /// Sends a witnessing note to a member.
    fn note(&mut self, swarm: &mut Swarm, to: &PublicKey, note: WitnessNote) {
        if let Some((_, len)) = self.request(swarm, to, Request::Witness(note)) {
            self.traffic.gossip_out = self.traffic.gossip_out.saturating_add(len as u64);
        }
    }

    /// A witnessing note from `peer`.
    fn on_note(&mut self, swarm: &mut Swarm, peer: PeerId, note: WitnessNote) -> Response {
        let Some(from) = key_of(&peer) else {
            return Response::Error("not a node key".into());
        };
        match self
            .witnessing
            .note(now_ms(), from, note, self.core.members())
        {
            Ok(effects) => {
                self.witness_effects(swarm, effects);
                Response::Done
            }
            Err(e) => Response::Error(e.to_string()),
        }
    }

    /// The machine's addresses (all of them, not only those the node listens on) join the
    /// host rules: a sliver reaching the host's global IPv6 or second IPv4 address would
    /// reach its services. Refreshed now and then; addresses that went away are dropped.
    fn learn_machine_addresses(&mut self) {
        let found = machine_addresses();
        let listening: Vec<std::net::IpAddr> = self.my_addrs.iter().filter_map(remote_ip).collect();
        if let Ok(mut h) = self.host.write() {
            h.own_addrs = listening
                .into_iter()
                .chain(found)
                .take(MAX_OWN_ADDRESSES)
                .collect();
            h.own_addrs.sort();
            h.own_addrs.dedup();
        }
    }

    /// Slivers may not reach the node's own sockets: every address and port it listens on
    /// joins the host rules (bounded: a machine has few).
    fn learn_own_address(&mut self, address: &Multiaddr) {
        use libp2p::multiaddr::Protocol;
        let Ok(mut h) = self.host.write() else {
            return;
        };
        for p in address.iter() {
            match p {
                Protocol::Ip4(ip) if h.own_addrs.len() < 64 => {
                    let ip = std::net::IpAddr::V4(ip);
                    if !h.own_addrs.contains(&ip) {
                        h.own_addrs.push(ip);
                    }
                }
                Protocol::Ip6(ip) if h.own_addrs.len() < 64 => {
                    let ip = std::net::IpAddr::V6(ip);
                    if !h.own_addrs.contains(&ip) {
                        h.own_addrs.push(ip);
                    }
                }
                Protocol::Tcp(port) | Protocol::Udp(port)
                    if h.own_ports.len() < 64 && !h.own_ports.contains(&port) =>
                {
                    h.own_ports.push(port);
                }
                _ => {}
            }
        }
    }

    /// Writes where this node listens to `DIR/listen.addrs`, one multiaddr (with
    /// `/p2p/PEERID`) per line, so its owner's commands find it without being told.
    fn save_listen_addrs(&self, me: PeerId) {
        let text: String = self
            .my_addrs
            .iter()
            .map(|a| format!("{}\n", a.clone().with(libp2p::multiaddr::Protocol::P2p(me))))
            .collect();
        let _ = write_atomic(&self.dir.join(LISTEN_ADDRS_FILE), text.as_bytes());
    }

    /// The application's counters with the transport's byte counts.
    fn traffic_now(&self) -> Traffic {
        let (wire_in, wire_out) = self.wire_bytes.as_ref().map_or((0, 0), |w| w.read());
        Traffic {
            wire_in,
            wire_out,
            ..self.traffic
        }
    }

    fn learn_addrs(&mut self, swarm: &mut Swarm, peer: PeerId, addrs: Vec<Multiaddr>) {
        if !self.addrs.contains_key(&peer) && self.addrs.len() >= crate::core::MAX_MEMBERS {
            // Full: forget a peer that is not a member (clients, peers that never advertised).
            let stranger = self
                .addrs
                .keys()
                .find(|p| key_of(p).is_none_or(|k| !self.core.members().contains_key(&k)))
                .copied();
            match stranger {
                Some(p) => {
                    self.addrs.remove(&p);
                }
                None => return,
            }
        }
        let kept: Vec<Multiaddr> = addrs.into_iter().take(MAX_ADDRS_PER_PEER).collect();
        // Adverts repeat the same addresses every tick; telling the swarm again would send
        // an event through every behaviour for each address of each advert.
        if self.addrs.get(&peer) == Some(&kept) {
            return;
        }
        for a in &kept {
            swarm.add_peer_address(peer, a.clone());
        }
        self.addrs.insert(peer, kept);
    }

    fn is_member(&self, peer: Option<PeerId>) -> Option<PublicKey> {
        let k = key_of(&peer?)?;
        self.core.members().contains_key(&k).then_some(k)
    }

    fn on_gossip(&mut self, swarm: &mut Swarm, m: &gossipsub::Message) -> MessageAcceptance {
        use MessageAcceptance::{Accept, Ignore, Reject};
        let topic = m.topic.as_str();
        let now = now_ms();
        if topic == IdentTopic::new(ADVERT_TOPIC).hash().as_str() {
            // Accept only a valid advert, signed by the node it names, published by that
            // node, whose certificate chains to an authority we trust.
            return match Advert::from_bytes(&m.data) {
                Ok(a) if m.source.is_some() && m.source == peer_of(&a.body.node) => {
                    match self
                        .core
                        .advert(now, a.body.node, &a.body.credential, a.body.load())
                    {
                        Ok(outs) => {
                            for o in outs {
                                self.carry_out(Some(swarm), o, true);
                            }
                            if let Some(p) = peer_of(&a.body.node) {
                                let addrs =
                                    a.body.addrs.iter().filter_map(|x| x.parse().ok()).collect();
                                self.learn_addrs(swarm, p, addrs);
                            }
                            Accept
                        }
                        // Late, early or replayed: dropped, nobody penalised (gossip can
                        // be slow and clocks skewed).
                        Err(crate::core::CoreError::StaleAdvert(_)) => Ignore,
                        Err(_) => Reject,
                    }
                }
                _ => Reject,
            };
        }
        // Every other topic is heard from members only.
        if self.is_member(m.source).is_none() {
            return Reject;
        }
        if topic == IdentTopic::new(REVOCATION_TOPIC).hash().as_str() {
            match self.core.revocation(now, &m.data) {
                Ok(outs) => {
                    for o in outs {
                        self.carry_out(Some(swarm), o, true);
                    }
                    Accept
                }
                Err(_) => Reject,
            }
        } else if topic == IdentTopic::new(EQUIVOCATION_TOPIC).hash().as_str() {
            match EquivocationProof::from_bytes(&m.data) {
                Ok(p) => {
                    match self.witnessing.equivocation(now, p, self.core.members()) {
                        // About a key that is no member (anyone can make one up): neither
                        // kept, logged nor passed on.
                        None => Ignore,
                        Some(new) => {
                            if new {
                                let _ = self.append(EntryBody::EquivocationSeen {
                                    proof: m.data.clone(),
                                });
                            }
                            Accept
                        }
                    }
                }
                Err(_) => Reject,
            }
        } else {
            Ignore
        }
    }

    /// Carries out what the witnessing machine asks.
    fn witness_effects(&mut self, swarm: &mut Swarm, effects: Vec<WitnessEffect>) {
        for e in effects {
            match e {
                WitnessEffect::Note { to, note } => self.note(swarm, &to, note),
                WitnessEffect::Fetch {
                    to,
                    origin,
                    holder,
                    request,
                } => match self.request(swarm, &to, request) {
                    Some((id, _)) => {
                        self.fetches.insert(id, (origin, holder));
                    }
                    None => self.witnessing.fetch_failed(&origin),
                },
                WitnessEffect::Persist {
                    origin,
                    leaves,
                    checkpoint,
                } => {
                    let mut rec = vec![];
                    for l in &leaves {
                        records::frame(KIND_ENTRY, l, &mut rec);
                    }
                    if let Ok(b) = checkpoint.to_bytes() {
                        records::frame(KIND_CHECKPOINT, &b, &mut rec);
                    }
                    let header = records::file_header(EXPORT_MAGIC, &origin);
                    let path = self.replica_path(&origin);
                    if let Ok(base) = blocking(|| append_synced(&path, &rec, Some(&header))) {
                        self.replica_index
                            .entry(origin)
                            .or_default()
                            .add(base, &rec);
                    }
                }
                WitnessEffect::Cosigned(c) => {
                    if self.keep_cosignature(c.clone()) {
                        self.save_cosignature(&c);
                    }
                }
                WitnessEffect::Equivocation(p) => {
                    if let Ok(bytes) = p.to_bytes() {
                        let _ = self.append(EntryBody::EquivocationSeen {
                            proof: bytes.clone(),
                        });
                        publish(swarm, &mut self.traffic, EQUIVOCATION_TOPIC, bytes);
                    }
                }
            }
        }
    }

    fn on_response(&mut self, swarm: &mut Swarm, id: OutboundRequestId, bytes: &[u8]) {
        if let Some(fetch) = self.revocation_fetches.remove(&id) {
            if let Ok(Response::Revocations(list)) = Response::from_bytes(bytes) {
                let list = list.into_iter().map(|b| b.into_vec()).collect();
                self.on_revocations(swarm, fetch, list);
            }
            return;
        }
        let Some((origin, holder)) = self.fetches.remove(&id) else {
            return;
        };
        self.traffic.replication_in = self
            .traffic
            .replication_in
            .saturating_add(bytes.len() as u64);
        let effects = match Response::from_bytes(bytes) {
            Ok(answer) => self
                .witnessing
                .fetched(now_ms(), origin, holder, answer, self.core.members())
                // Counted as failed by the machine; the next checkpoint asks again.
                .unwrap_or_default(),
            Err(_) => {
                self.witnessing.fetch_failed(&origin);
                vec![]
            }
        };
        self.witness_effects(swarm, effects);
    }

    /// Whether `peer`, on `connection`, may make one more request now (see `quota`).
    fn allow_request(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        now_ms: u64,
    ) -> bool {
        let member = key_of(&peer).is_some_and(|k| self.core.members().contains_key(&k));
        let from = self.conn_ips.get(&connection).copied();
        self.quotas.allow(peer, from, member, now_ms)
    }

    /// Sends an answer, within the response-memory budget: a large answer that would pass
    /// it is replaced by a "busy" refusal.
    fn respond(
        &mut self,
        swarm: &mut Swarm,
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        response: Response,
    ) {
        let to = self.asker.remove(&request);
        let replication = matches!(
            response,
            Response::Page { .. } | Response::Replica { .. } | Response::ReplicaPage { .. }
        );
        let mut bytes = response.to_bytes().unwrap_or_else(|e| {
            Response::Error(format!("cannot encode the answer: {e}"))
                .to_bytes()
                .unwrap_or_default()
        });
        let theirs = to
            .and_then(|p| self.responding_per_peer.get(&p))
            .copied()
            .unwrap_or(0);
        if bytes.len() > SMALL_RESPONSE
            && (self.responding_bytes.saturating_add(bytes.len()) > MAX_RESPONSE_MEMORY
                || theirs.saturating_add(bytes.len()) > MAX_RESPONSE_MEMORY_PER_PEER)
        {
            bytes = Response::Error(format!(
                "busy: this node is already sending {} MiB of answers ({} MiB to you); try again shortly",
                self.responding_bytes >> 20,
                theirs >> 20
            ))
            .to_bytes()
            .unwrap_or_default();
        } else if replication {
            self.traffic.replication_out = self
                .traffic
                .replication_out
                .saturating_add(bytes.len() as u64);
        }
        let len = bytes.len();
        if swarm
            .behaviour_mut()
            .rpc
            .send_response(channel, bytes)
            .is_ok()
        {
            let peer = to.unwrap_or(PeerId::random());
            self.responding.insert(request, (peer, len));
            self.responding_bytes = self.responding_bytes.saturating_add(len);
            *self.responding_per_peer.entry(peer).or_insert(0) += len;
        }
    }

    /// An answer was written (or its stream failed): its bytes leave the budget.
    fn answered(&mut self, request: InboundRequestId) {
        self.asker.remove(&request);
        if let Some((peer, len)) = self.responding.remove(&request) {
            self.responding_bytes = self.responding_bytes.saturating_sub(len);
            if let Some(n) = self.responding_per_peer.get_mut(&peer) {
                *n = n.saturating_sub(len);
                if *n == 0 {
                    self.responding_per_peer.remove(&peer);
                }
            }
        }
    }

    /// Runs blocking work on a worker (at most [`WORKERS`] at once) and hands its result
    /// back to the loop. The caller checked `jobs < MAX_JOBS`.
    fn spawn_job(&mut self, sliver: Option<u64>, work: impl FnOnce() -> Done + Send + 'static) {
        self.jobs += 1;
        let (workers, done) = (self.workers.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let _permit = workers.acquire_owned().await;
            let result = tokio::task::spawn_blocking(work)
                .await
                .unwrap_or(Done::Lost { sliver });
            let _ = done.send(result).await;
        });
    }

    /// Answers a request with blocking work done on a worker, or "busy" when too much waits.
    fn answer_later(
        &mut self,
        swarm: &mut Swarm,
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        work: impl FnOnce() -> Response + Send + 'static,
    ) {
        if self.jobs >= MAX_JOBS {
            return self.respond(swarm, request, channel, busy(self.jobs));
        }
        self.spawn_job(None, move || Done::Answer {
            request,
            channel,
            response: Box::new(work()),
        });
    }

    fn on_done(&mut self, swarm: &mut Swarm, done: Done) {
        if let Done::Drained { sliver } = done {
            if let Some(l) = self.live.get_mut(&sliver) {
                l.drained = true;
            }
            return self.reap();
        }
        self.jobs = self.jobs.saturating_sub(1);
        match done {
            Done::Answer {
                request,
                channel,
                response,
            } => self.respond(swarm, request, channel, *response),
            Done::Started {
                id,
                recorded,
                compiled,
            } => self.on_started(swarm, id, recorded, compiled),
            Done::Lost { sliver } => {
                if let Some(id) = sliver {
                    self.on_started(
                        swarm,
                        id,
                        Ok(()),
                        Err("the node failed compiling it".into()),
                    );
                }
            }
            Done::Drained { .. } => {}
            Done::Hashed {
                request,
                channel,
                hash,
                submission,
            } => self.submit(swarm, request, channel, now_ms(), *submission, hash),
        }
    }

    /// An admitted sliver's creation is durable (or failed to be) and its module compiled
    /// (or not): start it, or turn its receipt into a refusal saying why, and answer.
    fn on_started(
        &mut self,
        swarm: &mut Swarm,
        id: u64,
        recorded: Result<(), String>,
        compiled: Result<Arc<Compiled>, String>,
    ) {
        let Some(s) = self.starting.remove(&id) else {
            return;
        };
        let now = now_ms();
        let module = s.plan.module;
        let mut receipt = s.receipt;
        let refuse = |d: &mut Daemon, outs: Vec<Output>| {
            let _ = std::fs::remove_file(&s.saved);
            let mut r = None;
            for o in outs {
                r = r.or(d.carry_out(None, o, false));
            }
            r
        };
        match (recorded, compiled) {
            (Err(why), _) => {
                self.ledger_failing(&why);
                let outs = self.core.not_recorded(now, id, &why);
                receipt = refuse(self, outs);
            }
            (Ok(()), _) if s.stop.is_some() => {
                // Recorded as created, then stopped before it ran: log the stop; the
                // submitter's receipt stands (status says why it is not running).
                let why = s.stop.map_or("", StopReason::as_str);
                let outs = self.core.ended(
                    id,
                    &format!("stopped before it started: {why}"),
                    LedgerUsage::default(),
                );
                let _ = refuse(self, outs);
            }
            (Ok(()), Err(e)) => {
                let outs = self.core.start_failed(now, id, &e);
                receipt = refuse(self, outs);
            }
            (Ok(()), Ok(compiled)) => {
                if let Err(e) = self.start_compiled(s.plan, compiled, s.args, s.env) {
                    let outs = self.core.start_failed(now, id, &e);
                    receipt = refuse(self, outs);
                }
            }
        }
        // A module nothing runs (it did not compile, the sliver never started) is not kept.
        if !self.live.contains_key(&id) {
            self.forget_module_if_unused(&module);
        }
        let answer = match receipt {
            Some(r) => Response::Receipt(r),
            None => Response::Error("the node could not sign a receipt".into()),
        };
        self.respond(swarm, s.request, s.channel, answer);
    }

    /// A call from the owner on the admin socket.
    fn on_admin(&mut self, swarm: &mut Swarm, call: AdminCall) {
        let response = match call.request {
            AdminRequest::Stop { slice } => {
                let outs = self
                    .core
                    .owner_stop_slice(&slice, "stopped by the node owner");
                self.stopping(swarm, Ok(outs))
            }
            AdminRequest::Status { slice } => Response::Status(self.status(slice.as_deref())),
            AdminRequest::Members => Response::Members(self.member_rows()),
        };
        let _ = call.reply.send(response);
    }

    fn on_request(
        &mut self,
        swarm: &mut Swarm,
        (peer, connection): (PeerId, libp2p::swarm::ConnectionId),
        request: InboundRequestId,
        bytes: &[u8],
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let now = now_ms();
        self.asker.insert(request, peer);
        if !self.allow_request(peer, connection, now) {
            let busy = Response::Error(format!(
                "busy: over this node's request rate ({} a second per peer, {} per address for non-members); try again shortly",
                crate::quota::PEER_RATE,
                crate::quota::ADDRESS_RATE
            ));
            return self.respond(swarm, request, channel, busy);
        }
        let req = match Request::from_bytes(bytes) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    swarm,
                    request,
                    channel,
                    Response::Error(format!("bad request: {e}")),
                );
            }
        };
        let response = match req {
            Request::Members => Response::Members(self.member_rows()),
            Request::Submit {
                credential,
                module,
                args,
                env,
            } => {
                // Hashing up to 16 MiB is a worker's job, not the loop's.
                if self.jobs >= MAX_JOBS {
                    return self.respond(swarm, request, channel, busy(self.jobs));
                }
                return self.spawn_job(None, move || Done::Hashed {
                    request,
                    channel,
                    hash: ModuleHash::of(&module),
                    submission: Box::new(Submission {
                        credential,
                        module,
                        args,
                        env,
                    }),
                });
            }
            Request::Renew { credential } => self.renew(swarm, now, credential),
            Request::Status { slice } => Response::Status(self.status(slice.as_deref())),
            Request::Logs(asked) => {
                let ended_holders: Vec<PublicKey> = self
                    .ended
                    .iter()
                    .filter(|e| e.status.slice == asked.body.slice)
                    .flat_map(|e| e.holders.iter().copied())
                    .collect();
                match self.core.may_read_logs(now, &asked, &ended_holders) {
                    Ok(()) => Response::Logs(self.logs(&asked.body.slice, &asked.body.signer)),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::Delete(d) => {
                let outs = self.core.delete(now, &d);
                self.stopping(swarm, outs)
            }
            Request::Revoke { revocation } => {
                let outs = self.core.revocation(now, &revocation);
                self.stopping(swarm, outs)
            }
            Request::Entries { from } => {
                let work = self.page_job(from);
                return self.answer_later(swarm, request, channel, work);
            }
            Request::Checkpoint => {
                let latest = self.ledger.latest_checkpoint().ok().flatten();
                let cosignatures = latest
                    .as_ref()
                    .and_then(|c| self.cosigs.get(&c.checkpoint.size))
                    .filter(|(c, _)| Some(c) == latest.as_ref())
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                Response::Checkpoint {
                    checkpoint: latest,
                    cosignatures,
                }
            }
            Request::Witness(note) => self.on_note(swarm, peer, note),
            Request::ReplicaEntries { origin, from } => {
                let work = self.replica_page_job(&origin, from);
                return self.answer_later(swarm, request, channel, work);
            }
            Request::Revocations { after } => Response::Revocations(
                self.core
                    .revocations_after(after, crate::core::MAX_REVOCATIONS_PER_PAGE)
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
            ),
            Request::Replica { origin, offset } => {
                let path = self.replica_path(&origin);
                return self.answer_later(swarm, request, channel, move || {
                    match read_chunk(&path, offset) {
                        Ok((total, chunk)) => Response::Replica { total, chunk },
                        Err(e) => {
                            Response::Error(format!("no replica of {} here: {e}", origin.peer_id()))
                        }
                    }
                });
            }
        };
        self.respond(swarm, request, channel, response);
    }

    /// A later ticket for running slivers: answered with the receipt once the renewal is
    /// durable.
    fn renew(&mut self, swarm: &mut Swarm, now: u64, credential: Vec<u8>) -> Response {
        let mut receipt = None;
        let mut not_recorded = None;
        for o in self.core.renew(now, &credential) {
            match o {
                // The receipt depends on the renewal being durable.
                Output::Append(body) => {
                    if let Err(why) = self.append(body) {
                        not_recorded.get_or_insert(why);
                    }
                }
                o => receipt = receipt.or(self.carry_out(Some(swarm), o, false)),
            }
        }
        if let Some(why) = not_recorded {
            return Response::Error(format!(
                "this node could not record the renewal in its ledger ({why})"
            ));
        }
        // Saved slivers take the new ticket, so a restart keeps the renewal.
        let infos: Vec<_> = self.core.sliver_infos().collect();
        for i in infos {
            if i.credential == credential {
                self.resave_credential(i.plan.id, &credential);
            }
        }
        match receipt {
            Some(r) => Response::Receipt(r),
            None => Response::Error("no receipt".into()),
        }
    }

    /// Carries out the outputs of a delete or a revocation and answers with the slivers
    /// it stops.
    fn stopping(
        &mut self,
        swarm: &mut Swarm,
        outs: Result<Vec<Output>, crate::core::CoreError>,
    ) -> Response {
        match outs {
            Ok(outs) => {
                let mut stopped = vec![];
                for o in outs {
                    if let Output::Stop { id, .. } = &o {
                        stopped.push(*id);
                    }
                    self.carry_out(Some(swarm), o, false);
                }
                Response::Stopped(stopped)
            }
            Err(e) => Response::Error(e.to_string()),
        }
    }

    /// A ticket with its module: admitted (or refused) by the core at once; an admitted
    /// sliver's creation is made durable, its files saved and its module compiled on a
    /// worker, and only then is it started and the receipt sent (`on_started`): the loop
    /// never waits for a compile or an fsync of a submission.
    fn submit(
        &mut self,
        swarm: &mut Swarm,
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        now: u64,
        submission: Submission,
        hash: ModuleHash,
    ) {
        let Submission {
            credential,
            module,
            args,
            env,
        } = submission;
        // Before the core admits anything (admission consumes the ticket's nonce).
        if self.jobs >= MAX_JOBS {
            return self.respond(swarm, request, channel, busy(self.jobs));
        }
        let mut receipt = None;
        let mut plan = None;
        let mut created = None;
        let invocation = Invocation::new(args.clone(), env.clone());
        for o in self.core.submit(now, &credential, hash, &invocation) {
            match o {
                Output::Start(p) => plan = Some(p),
                Output::Append(body) => created = Some(body),
                other => receipt = receipt.or(self.carry_out(None, other, false)),
            }
        }
        let (Some(plan), Some(created)) = (plan, created) else {
            let answer = match receipt {
                Some(r) => Response::Receipt(r),
                None => Response::Error("the node could not sign a receipt".into()),
            };
            return self.respond(swarm, request, channel, answer);
        };
        let id = plan.id;
        let saved_path = self.saved_path(id);
        let module_path = self.module_path(&hash);
        let saved = SavedSliver {
            credential,
            module: hash,
            args: args.clone(),
            env: env.clone(),
        };
        self.starting.insert(
            id,
            Starting {
                request,
                channel,
                receipt,
                plan,
                args,
                env,
                saved: saved_path.clone(),
                stop: None,
            },
        );
        let (ledger, compiler) = (self.ledger.clone(), self.compiler.clone());
        self.spawn_job(Some(id), move || {
            // The creation is durable before anything runs or is acknowledged.
            let recorded = ledger
                .append(now_ms(), created)
                .map(|_| ())
                .map_err(|e| e.to_string());
            if recorded.is_err() {
                return Done::Started {
                    id,
                    recorded,
                    compiled: Err("not recorded".into()),
                };
            }
            // Saved before it runs, so a crash right after still brings it back.
            if !module_path.exists() {
                let _ = write_atomic(&module_path, &module);
            }
            if let Ok(b) = codec::encode("saved sliver", &saved) {
                let _ = write_atomic(&saved_path, &b);
            }
            let compiled = compiler.compile(&module).map_err(|e| e.to_string());
            Done::Started {
                id,
                recorded,
                compiled,
            }
        });
    }

    fn resave_credential(&self, id: u64, credential: &[u8]) {
        let path = self.saved_path(id);
        let Ok(b) = read_limited(&path, MAX_SAVED_SLIVER_BYTES) else {
            return;
        };
        if let Ok(mut s) = codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES)
        {
            s.credential = credential.to_vec();
            if let Ok(b) = codec::encode("saved sliver", &s) {
                let _ = write_atomic(&path, &b);
            }
        }
    }

    /// Entries of `origin`'s log from `from` on, read from this node's replica file on a
    /// worker: only the byte range the page needs, located by the replica's index (each
    /// persisted page ended with a checkpoint), about [`wire::MAX_PAGE_BYTES`] at most.
    fn replica_page_job(
        &self,
        origin: &PublicKey,
        from: u64,
    ) -> impl FnOnce() -> Response + Send + 'static {
        let path = self.replica_path(origin);
        let origin = *origin;
        let range = self.replica_index.get(&origin).and_then(|i| i.page(from));
        move || {
            let Some((start, end, first_seq)) = range else {
                return Response::Error(format!(
                    "the replica of {} has no checkpoint past entry {from}",
                    origin.peer_id()
                ));
            };
            read_replica_page(&path, start, end, first_seq, from).unwrap_or_else(|why| {
                Response::Error(format!("replica of {}: {why}", origin.peer_id()))
            })
        }
    }

    /// A page of this node's log from `from`, with checkpoints signed at both ends (read
    /// on a worker).
    fn page_job(&self, from: u64) -> impl FnOnce() -> Response + Send + 'static {
        let ledger = self.ledger.clone();
        let key = SecretKey::from_seed(&self.key.seed());
        let me = self.me;
        move || {
            let size = match ledger.latest_checkpoint() {
                Ok(Some(c)) => c.checkpoint.size,
                _ => 0,
            };
            if from > size {
                return Response::Error(format!("the log has {size} checkpointed entries"));
            }
            let mut leaves = vec![];
            let mut bytes = 0usize;
            let mut seq = from;
            while seq < size && seq - from < MAX_PAGE_ENTRIES {
                let Ok(l) = ledger.read(seq) else { break };
                if bytes + l.len() > wire::MAX_PAGE_BYTES && !leaves.is_empty() {
                    break;
                }
                bytes += l.len();
                leaves.push(serde_bytes::ByteBuf::from(l));
                seq += 1;
            }
            let sign = |size: u64| -> Option<SignedCheckpoint> {
                Checkpoint {
                    origin: me,
                    size,
                    root: ledger.root_at(size).ok()?,
                    time_ms: now_ms(),
                }
                .sign(&key)
                .ok()
            };
            match (sign(from), sign(seq)) {
                (Some(base), Some(end)) => Response::Page { base, end, leaves },
                _ => Response::Error("cannot sign the page's checkpoints".into()),
            }
        }
    }

    fn member_rows(&self) -> Vec<MemberRow> {
        let now = now_ms();
        let load = self.core.load();
        let show = |a: &Vec<Multiaddr>, p: Option<PeerId>| -> Vec<String> {
            a.iter()
                .map(|x| match p {
                    Some(p) => x
                        .clone()
                        .with(libp2p::multiaddr::Protocol::P2p(p))
                        .to_string(),
                    None => x.to_string(),
                })
                .collect()
        };
        let mut rows = vec![MemberRow {
            peer_id: self.me.peer_id(),
            name: self.my_name.clone(),
            authority: self.my_authority.clone(),
            addrs: show(&self.my_addrs, peer_of(&self.me)),
            slivers: load.slivers,
            free_memory: load.free_memory,
            last_seen_ms_ago: 0,
            health: match self.core.unhealthy() {
                Some(why) => format!("unhealthy: {why}"),
                None => "ok".into(),
            },
            uptime_secs: self.started.elapsed().as_secs(),
            traffic: self.traffic_now(),
        }];
        rows.extend(self.core.members().iter().map(|(k, m)| {
            let p = peer_of(k);
            MemberRow {
                peer_id: k.peer_id(),
                name: m.name.to_string(),
                authority: m.authority.to_string(),
                addrs: p
                    .and_then(|p| self.addrs.get(&p))
                    .map(|a| show(a, p))
                    .unwrap_or_default(),
                slivers: m.load.slivers,
                free_memory: m.load.free_memory,
                last_seen_ms_ago: now.saturating_sub(m.last_seen_ms),
                health: if self.witnessing.witness().offenders().contains_key(k) {
                    "equivocated".into()
                } else if let Some(why) = &m.load.unhealthy {
                    format!("unhealthy: {why}")
                } else {
                    "ok".into()
                },
                uptime_secs: m.load.uptime_secs,
                traffic: m.load.traffic,
            }
        }));
        // The member map is unordered; a listing reads best by name.
        if let Some((_, others)) = rows.split_first_mut() {
            others.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer_id.cmp(&b.peer_id)));
        }
        rows
    }

    fn status(&self, slice: Option<&str>) -> NodeStatus {
        let keep = |s: &str| slice.is_none_or(|x| x == s);
        let infos: BTreeMap<u64, String> = self
            .core
            .sliver_infos()
            .map(|i| (i.plan.id, i.ticket.to_hex()))
            .collect();
        let mut slivers: Vec<SliverStatus> = self
            .live
            .values()
            .filter(|l| keep(l.plan.who.slice.as_str()))
            .map(|l| {
                let mut s = sliver_status(
                    &l.plan,
                    &l.handle,
                    infos.get(&l.plan.id).map_or("", String::as_str),
                );
                // The core's plan carries renewals.
                if let Some(p) = self.core.slivers().find(|p| p.id == l.plan.id) {
                    s.expires = p.not_after;
                }
                // Asked to stop: say why at once, as the ended record will (the sandbox
                // ends it within a tick, and the reaper files it within another).
                if let Some(r) = l.stopping {
                    s.state = match l.handle.outcome() {
                        Some(o) => format!("{o}: {}", r.as_str()),
                        None => format!("stopping: {}", r.as_str()),
                    };
                }
                s
            })
            .collect();
        slivers.extend(
            self.ended
                .iter()
                .filter(|e| keep(&e.status.slice))
                .map(|e| e.status.clone()),
        );
        let latest = self.ledger.latest_checkpoint().ok().flatten();
        NodeStatus {
            node: self.me.peer_id(),
            name: self.my_name.clone(),
            ledger_entries: self.ledger.size().unwrap_or(0),
            cosignatures: latest
                .and_then(|c| {
                    self.cosigs
                        .get(&c.checkpoint.size)
                        .map(|(_, v)| v.len() as u32)
                })
                .unwrap_or(0),
            slivers,
        }
    }

    /// The output of `slice`'s slivers here that `reader` may see: those it holds, or all
    /// of them for the node's owner (two people may hold slivers of one slice name; each
    /// sees their own).
    fn logs(&self, slice: &str, reader: &PublicKey) -> Vec<SliverLogs> {
        let owner = *reader == self.me;
        let mut out: Vec<SliverLogs> = self
            .live
            .values()
            .filter(|l| l.plan.who.slice.as_str() == slice)
            .filter(|l| owner || self.core.holders(l.plan.id).contains(reader))
            .map(|l| sliver_logs(l.plan.id, &l.handle))
            .collect();
        out.extend(
            self.ended
                .iter()
                .filter(|e| e.status.slice == slice && (owner || e.holders.contains(reader)))
                .map(|e| e.logs.clone()),
        );
        // Stay under the response limit: the newest bytes of each, shared out.
        let share = (wire::MAX_RESPONSE_BYTES / 2) / out.len().max(1) / 2;
        for l in &mut out {
            for b in [&mut l.stdout, &mut l.stderr] {
                if b.len() > share {
                    b.drain(..b.len() - share);
                }
            }
        }
        out
    }

    fn shutdown(&mut self) {
        for l in self.live.values() {
            l.handle.stop(KillReason::Stopped);
        }
        // Slivers are not logged as stopped: they come back when the node restarts.
        for l in self.live.values() {
            let _ = blocking(|| l.handle.wait_timeout(Duration::from_secs(5)));
            let f = l.flows.clone();
            let lost = blocking(move || f.close_within(Duration::from_secs(5)));
            if lost > 0 {
                eprintln!(
                    "slicefed node: {lost} flow records of sliver {} could not be written: the ledger cannot write",
                    l.plan.id
                );
            }
        }
        self.live.clear();
    }
}

fn sliver_status(plan: &SliverPlan, h: &SliverHandle, ticket: &str) -> SliverStatus {
    let u = h.usage();
    SliverStatus {
        id: plan.id,
        slice: plan.who.slice.to_string(),
        user: plan.who.user.as_ref().map(|n| n.to_string()),
        authority: plan.who.authority.as_ref().map(|n| n.to_string()),
        ticket: ticket.into(),
        expires: plan.not_after,
        state: h.outcome().map_or("running".into(), |o| o.to_string()),
        cpu_ms: u.cpu.as_millis() as u64,
        memory: u.peak_memory,
        flows: u.flows_allowed + u.flows_denied,
        bytes_out: u.bytes_out,
        bytes_in: u.bytes_in,
    }
}

fn sliver_logs(id: u64, h: &SliverHandle) -> SliverLogs {
    SliverLogs {
        id,
        stdout: h.stdout.as_ref().map(|b| b.contents()).unwrap_or_default(),
        stderr: h.stderr.as_ref().map(|b| b.contents()).unwrap_or_default(),
    }
}

fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max as u64 {
        return Err(format!("{}: over {max} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a whole file or nothing: a synced temporary file renamed into place, and the
/// directory synced so the rename survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Appends and syncs (creating the file with `header` first if it is new, and syncing its
/// directory so the new name survives a crash). Returns the offset `bytes` start at.
fn append_synced(path: &Path, bytes: &[u8], header: Option<&[u8]>) -> std::io::Result<u64> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new && let Some(h) = header {
        f.write_all(h)?;
    }
    let base = f.metadata()?.len();
    f.write_all(bytes)?;
    f.sync_data()?;
    if new {
        sync_parent(path)?;
    }
    Ok(base)
}

/// Syncs the directory holding `path`, so a file just created or renamed there is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        None => Ok(()),
    }
}

fn read_chunk(path: &Path, offset: u64) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset.min(total)))?;
    let mut chunk = vec![];
    f.take(wire::MAX_REPLICA_CHUNK as u64)
        .read_to_end(&mut chunk)?;
    Ok((total, chunk))
}

/// The answer to a request that needs a worker when too many jobs wait.
fn busy(jobs: usize) -> Response {
    Response::Error(format!(
        "busy: {jobs} jobs are waiting for this node's workers; try again shortly"
    ))
}

/// Where a replica file's records are, so a page is read without reading the file: each
/// entry's frame offset, and each checkpoint's size with the offset just past its frame.
/// Eight bytes per entry, for the entries this node holds within its replica quotas.
#[derive(Default, Debug)]
struct ReplicaIndex {
    entries: Vec<u64>,
    checkpoints: Vec<(u64, u64)>,
}

impl ReplicaIndex {
    /// Indexes records framed in `bytes`, which start at byte `base` of the file.
    fn add(&mut self, base: u64, bytes: &[u8]) {
        let (recs, _) = records::parse_all(bytes, 0);
        for rec in recs {
            let at = base + rec.offset as u64;
            if rec.kind == KIND_ENTRY {
                self.entries.push(at);
            } else if rec.kind == KIND_CHECKPOINT
                && codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256)
                    .is_ok_and(|c| c.checkpoint.size == self.entries.len() as u64)
            {
                let end = at + (records::FRAME_BYTES + 1 + rec.payload.len()) as u64;
                self.checkpoints.push((self.entries.len() as u64, end));
            }
        }
    }

    /// The file range `[start, end)` of the entries from `from` up to a checkpoint past
    /// it: the furthest whose page fits [`wire::MAX_PAGE_BYTES`], else the nearest.
    fn page(&self, from: u64) -> Option<(u64, u64, u64)> {
        let start = *self.entries.get(usize::try_from(from).ok()?)?;
        let mut best = None;
        for &(size, end) in &self.checkpoints {
            if size <= from {
                continue;
            }
            if best.is_none() || end.saturating_sub(start) <= wire::MAX_PAGE_BYTES as u64 {
                best = Some(end);
            } else {
                break;
            }
        }
        best.map(|end| (start, end, from))
    }
}

/// Reads `[start, end)` of a replica file: the leaves from entry `from` and the checkpoint
/// that ends them.
fn read_replica_page(
    path: &Path,
    start: u64,
    end: u64,
    first: u64,
    from: u64,
) -> Result<Response, String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = end.saturating_sub(start);
    if len > (wire::MAX_PAGE_BYTES + (64 << 10)) as u64 {
        return Err(format!("its next page is {len} bytes, over the page limit"));
    }
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let (recs, err) = records::parse_all(&buf, 0);
    if let Some(e) = err {
        return Err(format!(
            "damaged at byte {}: {}",
            start + e.offset as u64,
            e.why
        ));
    }
    let mut leaves = vec![];
    let mut end_checkpoint = None;
    for rec in recs {
        if rec.kind == KIND_ENTRY {
            leaves.push(serde_bytes::ByteBuf::from(rec.payload.to_vec()));
        } else if rec.kind == KIND_CHECKPOINT {
            end_checkpoint = codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256).ok();
        }
    }
    match end_checkpoint {
        Some(end) if end.checkpoint.size == first + leaves.len() as u64 && first == from => {
            Ok(Response::ReplicaPage { end, leaves })
        }
        _ => Err("its index does not match the file".into()),
    }
}

/// Raises the soft limit of open descriptors to the hard limit (capped at 1M) and returns
/// the limit in force: every peer connection, socket of a sliver and file is one, and the
/// usual 1,024 would let a few slivers starve the node.
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    let want = now.maximum.unwrap_or(1 << 20).min(1 << 20);
    if soft >= want {
        return soft;
    }
    let raised = rustix::process::Rlimit {
        current: Some(want),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => want,
        Err(_) => soft,
    }
}

/// The IP address at the start of a multiaddr.
fn remote_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        libp2p::multiaddr::Protocol::Ip4(v4) => Some(std::net::IpAddr::V4(v4)),
        libp2p::multiaddr::Protocol::Ip6(v6) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    }
}

/// The machine's own addresses as Linux lists them (`/proc/net/fib_trie` for IPv4 local
/// addresses, `/proc/net/if_inet6` for IPv6), so slivers cannot reach the host through an
/// address the node does not listen on. Empty elsewhere (the listen addresses remain).
fn machine_addresses() -> Vec<std::net::IpAddr> {
    let read = |p: &str| read_limited(Path::new(p), 4 << 20).unwrap_or_default();
    let mut out = local_ipv4_from_fib_trie(&String::from_utf8_lossy(&read("/proc/net/fib_trie")));
    out.extend(ipv6_from_if_inet6(&String::from_utf8_lossy(&read(
        "/proc/net/if_inet6",
    ))));
    out.sort();
    out.dedup();
    out.truncate(MAX_OWN_ADDRESSES);
    out
}

/// Addresses of the machine kept in the host rules, at most.
const MAX_OWN_ADDRESSES: usize = 256;

/// The IPv4 addresses `fib_trie` marks `/32 host LOCAL` (the machine's own).
fn local_ipv4_from_fib_trie(text: &str) -> Vec<std::net::IpAddr> {
    let mut out = vec![];
    let mut last: Option<std::net::IpAddr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = ip.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The IPv6 addresses of `if_inet6` (32 hex digits first on each line).
fn ipv6_from_if_inet6(text: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let n = u128::from_str_radix(hex, 16).ok()?;
            (hex.len() == 32).then(|| std::net::IpAddr::V6(std::net::Ipv6Addr::from(n)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_addresses_are_read_from_proc() {
        let fib = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.0\n        /24 link UNICAST\n     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\n";
        let v4 = local_ipv4_from_fib_trie(fib);
        let want: Vec<std::net::IpAddr> = ["127.0.0.1", "192.0.2.2"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert_eq!(v4, want);
        let inet6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n00000000000000000000000000000001 01 80 10 80       lo\nbad line\n";
        let v6 = ipv6_from_if_inet6(inet6);
        let want: Vec<std::net::IpAddr> = ["fd00::2", "::1"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert_eq!(v6, want);
    }
}
