//! The node daemon: a router between the node machine ([`slicefed_proto::node::Node`]) and
//! the outside world. It decides nothing about the protocol; it turns libp2p events, owner
//! calls, ticks and finished work into machine inputs, and carries out the machine's
//! effects on the swarm, the disk and the sandbox.
//!
//! - `mod.rs` (this file): configuration, start-up (`Daemon::open`) and the event loop
//!   (`run`);
//! - `route.rs`: inputs in (`on_request`, `on_gossip`, `on_response`, `on_tick`, ...) and
//!   effects out (`Daemon::apply`);
//! - `slivers.rs`: starting, stopping and reaping slivers in the sandbox;
//! - `disk.rs`: replica, cosignature, saved-sliver and module files;
//! - `reads.rs`: answers read from the log, replica files and sandbox handles;
//! - `addrs.rs`: connections, peers' addresses and the machine's own.
//!
//! Files under `DIR`: `ledger/` (the node's log), `replicas/ORIGIN.sfexp` (logs it witnesses,
//! as export files any auditor can replay), `cosignatures` (witnesses' signatures on this
//! node's checkpoints), `slivers/` and `modules/` (so slivers whose tickets are still valid
//! come back after a restart), `cache/` (compiled modules).
//!
//! Invariants: the loop never blocks on a compile or an fsync of the node's ledger (ledger
//! appends go to one writer thread, which reports each batch back as written or failed;
//! compiles and page reads run on workers); every ledger write the machine asks for is
//! reported back to it, so what waits for it is released or refused; nothing a peer or
//! client sends can panic the loop.

use crate::admin::AdminCall;
use crate::core::{Capacity, NodeCore, SliverPlan, StopReason, Traffic};
use crate::net::{self, BehaviourEvent};
use crate::wire::{
    self, AdvertBody, Cosigned, NodeStatus, Request, Response, SliverLogs, SliverStatus,
};
use crate::witness::DEFAULT_WITNESSES;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identify};
use serde::{Deserialize, Serialize};
use slicefed_ledger::checkpoint::{Checkpoint, Cosignature, SignedCheckpoint};
use slicefed_ledger::entry::{EntryBody, Usage as LedgerUsage};
use slicefed_ledger::records::{self, EXPORT_MAGIC, KIND_CHECKPOINT, KIND_ENTRY};
use slicefed_ledger::source::LogSource;
use slicefed_ledger::{Ledger, LedgerOptions};
use slicefed_proto::node::{
    Effect, Input, Node, Read, ReplyId, Saved, Settings, StartFrom, Token, Topic, Verdict, WriteId,
};
use slicefed_sandbox::{
    Compiled, Compiler, HostRules, KillReason, LedgerFlows, Outcome, Sandbox, SandboxConfig,
    SharedHostRules, SliverHandle, SliverSpec, Stdio,
};
use slicefed_trust::codec;
use slicefed_trust::{
    CertId, Context, Credential, Invocation, InvocationHash, ModuleHash, PublicKey, SecretKey,
    TrustPolicy, Verifier,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};

use libp2p::metrics::Recorder as _;
mod addrs;
pub mod dashboard;
mod disk;
mod reads;
mod route;
pub mod sensors;
mod slivers;

use addrs::*;
use disk::*;
use reads::*;

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
/// Batches of ledger appends queued for the writer thread; past this an append is reported
/// failed (the node then refuses what needs the ledger until it catches up).
const MAX_QUEUED_WRITES: usize = 4096;
/// Of those, writes other than ledger appends (replica pages, cosignatures, saved slivers)
/// queued at once; past this a replica page is reported failed (it is not cosigned) and the
/// ledger keeps the rest of the queue.
const MAX_QUEUED_WORK: usize = 256;
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
    /// Where the sensors (Prometheus text at `/metrics`) are served; none: not at all.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the owner's dashboard (`/`) is served; none: not at all.
    pub dashboard: Option<std::net::SocketAddr>,
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
            metrics: None,
            dashboard: None,
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

/// One line for the owner on the daemon's stderr. Not `eprintln!`, which panics when
/// stderr is gone (a closed pipe, a restarted journal): nothing the daemon reports may
/// stop it, least of all what a stranger caused.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "slicefed node: {line}");
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
    /// The node's protocol: every decision is its.
    node: Node,
    ledger: Arc<Ledger>,
    /// Work for the disk thread (see `spawn_writer`).
    writes: WriteQueue,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Writes other than appends queued for the disk thread (see `queue_disk`).
    disk_work: Arc<std::sync::atomic::AtomicUsize>,
    /// Members' credentials to keep on disk (`Some`) or forget (`None`), written once a
    /// tick in one job (`flush_member_credentials`): thousands of members joining at a
    /// start must not take the disk queue's room from sliver and replica writes. At most
    /// `MAX_MEMBERS` (a cache: past that, changes are dropped).
    member_credentials: BTreeMap<PublicKey, Option<Arc<[u8]>>>,
    /// Whether kept credentials of nodes that are no longer members were removed (once,
    /// after the restart caught up).
    kept_pruned: bool,
    sandbox: DropOffThread<Sandbox>,
    live: BTreeMap<u64, Live>,
    ended: VecDeque<Ended>,
    cosigs: BTreeMap<u64, (SignedCheckpoint, Vec<Cosignature>)>,
    /// Requests held open until the machine answers them.
    open: HashMap<ReplyId, Open>,
    next_reply: ReplyId,
    /// Submissions' modules and invocations, by request, until their sliver starts or
    /// their ticket is refused.
    submissions: HashMap<ReplyId, Submission>,
    /// Saved-sliver records to write before a new sliver starts.
    to_save: BTreeMap<u64, SavedSliver>,
    /// Slivers being compiled: their plans.
    starting: BTreeMap<u64, SliverPlan>,
    /// Which module each sliver here runs (to remove unused modules).
    modules: BTreeMap<u64, ModuleHash>,
    /// Requests this node sent whose answers the machine wants.
    sent: HashMap<OutboundRequestId, Token>,
    /// When the machine asked to be woken ([`Effect::WakeAt`]): SWIM's timers and the
    /// next reconciliation, between ticks.
    wake_at: Option<tokio::time::Instant>,
    addrs: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// Members that left, with the addresses they had and when they left, oldest first
    /// (at most [`wire::MAX_DEPARTED`], for [`wire::DEPARTED_KEPT_MS`]): an auditor maps a
    /// complaint's source address to a node even after the node died.
    departed: std::collections::VecDeque<(PeerId, Vec<Multiaddr>, u64)>,
    my_addrs: Vec<Multiaddr>,
    wire_bytes: Option<net::WireBytes>,
    /// The sensors the loop sets and `/metrics` serves.
    sensors: Option<sensors::Sensors>,
    /// The owner's dashboard the loop refreshes and `/` renders.
    board: Option<dashboard::SharedBoard>,
    /// Lines in `DIR/history` (rewritten when it doubles).
    history_lines: u64,
    traffic: Traffic,
    ticks: u64,
    started: Instant,
    bootstrap: Vec<Multiaddr>,
    last_recovery: Instant,
    /// Lines about strangers held off, rate-limited (`route::LogBudget`).
    stranger_lines: route::LogBudget,
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
    /// Records appended to the cosignature file since it was last rewritten.
    cosig_records: usize,
}

type Swarm = libp2p::Swarm<net::Behaviour>;

/// A request held open until the machine answers it.
enum Open {
    /// From a peer over RPC.
    Peer {
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
    },
    /// From the owner over the admin socket.
    Owner(tokio::sync::oneshot::Sender<Response>),
}

/// Runs the node until `shutdown` resolves. `on_listen` is told each listen address (with
/// `/p2p/PEERID`), so a caller can print it.
pub async fn run(
    config: NodeConfig,
    mut on_listen: impl FnMut(&Multiaddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    // Jobs and flow drains report here; a full channel only makes them wait.
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(MAX_JOBS + 256);
    // The sensors first: the ledger's writer thread times its batches into them.
    let mut registry = prometheus_client::registry::Registry::default();
    let sensors = sensors::Sensors::new(&mut registry);
    let append_seconds = sensors.append_seconds.clone();
    let mut d = Daemon::open(&config, done_tx, append_seconds)?;
    // The owner's channel first: it must work however the public port is treated.
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminCall>(crate::admin::ADMIN_QUEUE);
    crate::admin::serve(&config.dir, admin_tx)
        .map_err(|e| NodeError::Setup(format!("the owner's admin socket: {e}")))?;
    let (mut swarm, wire_bytes) =
        net::swarm(&config.key).map_err(|e| NodeError::Net(e.to_string()))?;
    let exposition = Arc::new(sensors::Exposition {
        main: registry,
        bandwidth: wire_bytes.registry(),
    });
    d.wire_bytes = Some(wire_bytes);
    if let Some(at) = config.metrics {
        let token = sensors::token_for(at, &config.dir)?;
        let local = sensors::serve(at, exposition, token)
            .await
            .map_err(|e| NodeError::Setup(format!("the sensors' address {at}: {e}")))?;
        d.sensors = Some(sensors);
        // Slivers reach it only with the sensors right (a port of the node itself), and
        // the owner's tools find it in the node's directory.
        if let Ok(mut h) = d.host.write() {
            if !h.own_ports.contains(&local.port()) {
                h.own_ports.push(local.port());
            }
            h.sensors = Some(local);
        }
        let _ = write_atomic(
            &config.dir.join(sensors::METRICS_ADDR_FILE),
            format!("{local}\n").as_bytes(),
        );
    }
    if let Some(at) = config.dashboard {
        let history = dashboard::load_history(&config.dir);
        d.history_lines = history.len() as u64;
        let board: dashboard::SharedBoard = Arc::new(std::sync::RwLock::new(
            dashboard::Board::with_history(history),
        ));
        d.board = Some(board.clone());
        let token = sensors::token_for(at, &config.dir)?;
        let local = sensors::serve_dashboard(at, board, token)
            .await
            .map_err(|e| NodeError::Setup(format!("the dashboard's address {at}: {e}")))?;
        // No sliver may reach it, whatever its rights: a port of the node itself.
        if let Ok(mut h) = d.host.write()
            && !h.own_ports.contains(&local.port())
        {
            h.own_ports.push(local.port());
        }
        let _ = write_atomic(
            &config.dir.join(sensors::DASHBOARD_ADDR_FILE),
            format!("{local}\n").as_bytes(),
        );
    }
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
    d.prune_modules();
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
            _ = tokio::time::sleep_until(d.wake_at.unwrap_or_else(tokio::time::Instant::now)), if d.wake_at.is_some() => {
                d.wake_at = None;
                d.feed(&mut swarm, Input::Wake);
            }
            _ = reap.tick() => d.reap(&mut swarm),
            ev = swarm.select_next_some() => {
                if let Some(s) = &d.sensors {
                    s.libp2p.record(&ev);
                    match &ev {
                        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => s.libp2p.record(e),
                        SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => s.libp2p.record(e),
                        SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => s.libp2p.record(e),
                        _ => {}
                    }
                }
                match ev {
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
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                    if let Some(ip) = remote_ip(endpoint.get_remote_address()) {
                        d.conn_ips.insert(connection_id, ip);
                    }
                    // A new peer: the machine says hello if it does not list it.
                    if num_established.get() == 1
                        && let Some(peer) = key_of(&peer_id)
                    {
                        d.feed(&mut swarm, Input::Connected { peer });
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
                    if let Some(token) = d.sent.remove(&request_id) {
                        d.feed(&mut swarm, Input::NoAnswer { token });
                    }
                }
                _ => {}
                }
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
        reply: ReplyId,
        response: Box<Response>,
    },
    /// A sliver's module was compiled (or not), with the invocation it runs with.
    Compiled {
        id: u64,
        compiled: Result<(Arc<Compiled>, Invocation), String>,
    },
    /// A job panicked; for a start, which sliver.
    Lost { sliver: Option<u64> },
    /// An ended sliver's flow records are all in the ledger (not a job: drained on a thread
    /// of its own, since it may wait for the ledger to recover).
    Drained { sliver: u64 },
    /// A submitted module was hashed: the machine judges its ticket.
    Hashed {
        reply: ReplyId,
        hash: ModuleHash,
        submission: Box<Submission>,
    },
    /// The writer thread wrote a batch of appends (or failed to).
    Written {
        writes: Vec<WriteId>,
        result: Result<(), String>,
    },
    /// The disk thread appended a witnessed replica's records (at `base`), or failed to.
    Persisted {
        write: WriteId,
        origin: PublicKey,
        record: Vec<u8>,
        base: Result<u64, String>,
    },
    /// The disk thread signed (or found) this node's checkpoint of its durable log.
    Signed(SignedCheckpoint),
}

/// What a ticket's submitter sent.
struct Submission {
    credential: Vec<u8>,
    module: Vec<u8>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Daemon {
    fn open(
        config: &NodeConfig,
        done_tx: mpsc::Sender<Done>,
        append_seconds: prometheus_client::metrics::histogram::Histogram,
    ) -> Result<Daemon, NodeError> {
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
            crate::core::ADVERTS_HEARD_PER_MIN,
        );
        let size = ledger.size().map_err(|e| setup("the node's ledger", &e))?;
        let saved = read_saved(&config.dir);
        let logged = read_log_at_open(&ledger, size, &mut core, &saved);
        // Sliver ids stay unique across restarts: every id used so far is below the size of
        // the log, since each sliver's creation appended an entry.
        core.continue_ids_from(size + 1);
        let mut settings = Settings::new(config.advert_interval.as_millis() as u64);
        settings.witnesses = config.witnesses;
        settings.restore = config.restore;
        let mut node = Node::new(core, settings, now_ms());
        node.witnessing_mut()
            .witness_mut()
            .set_quotas(config.replica_quota, config.replicas_quota);
        if config.test_equivocate {
            node.witnessing_mut().test_equivocate();
        }
        // Handed to the machine, and left on the disk until the restart has caught up
        // (`prune_member_credentials`): a crash before that still knows its members.
        node.remember_credentials(read_member_credentials(&config.dir));
        // Saved slivers wait in the machine until it has caught up with members.
        let _ = node.handle(now_ms(), Input::Restart { saved, logged });
        let ledger = Arc::new(ledger);
        let (writes, writer) = spawn_writer(ledger.clone(), done_tx.clone(), append_seconds)
            .map_err(|e| setup("the ledger's writer thread", &e))?;
        let mut d = Daemon {
            key: SecretKey::from_seed(&config.key.seed()),
            me,
            dir: config.dir.clone(),
            credential: config.credential.clone(),
            my_name,
            my_authority,
            node,
            ledger,
            writes,
            writer: Some(writer),
            disk_work: Arc::default(),
            member_credentials: BTreeMap::new(),
            kept_pruned: false,
            sandbox: DropOffThread(Some(sandbox)),
            live: BTreeMap::new(),
            ended: VecDeque::new(),
            cosigs: BTreeMap::new(),
            open: HashMap::new(),
            next_reply: 1,
            submissions: HashMap::new(),
            to_save: BTreeMap::new(),
            starting: BTreeMap::new(),
            modules: BTreeMap::new(),
            sent: HashMap::new(),
            wake_at: None,
            addrs: BTreeMap::new(),
            departed: Default::default(),
            my_addrs: vec![],
            wire_bytes: None,
            sensors: None,
            board: None,
            history_lines: 0,
            traffic: Traffic::default(),
            ticks: 0,
            started: Instant::now(),
            bootstrap: vec![],
            last_recovery: Instant::now(),
            stranger_lines: route::LogBudget::new(Instant::now()),
            host: Arc::new(std::sync::RwLock::new(HostRules {
                local_allow: config.policy.local_allow().to_vec(),
                ..HostRules::default()
            })),
            compiler,
            done_tx,
            workers: Arc::new(Semaphore::new(WORKERS)),
            jobs: 0,
            quotas: crate::quota::Quotas::default(),
            conn_ips: HashMap::new(),
            responding: HashMap::new(),
            responding_bytes: 0,
            responding_per_peer: HashMap::new(),
            asker: HashMap::new(),
            replica_index: BTreeMap::new(),
            cosig_records: 0,
        };
        // A node whose disk is full still starts, unhealthy, and recovers when it can write.
        if let Err(e) = d.ledger.append(
            now_ms(),
            EntryBody::NodeStarted {
                node: me,
                name: slicefed_trust::Name::parse(&d.my_name).ok(),
                software: format!("slicefed {}", env!("CARGO_PKG_VERSION")),
                policy: ModuleHash::of(config.policy.to_toml().as_bytes()).0,
            },
        ) {
            let _ = d
                .node
                .handle(now_ms(), Input::LedgerFailed { why: e.to_string() });
        }
        d.restore_replicas();
        d.restore_cosignatures();
        Ok(d)
    }

    fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.0.as_ref()
    }
}

/// Where the loop queues work for the disk thread (see [`spawn_writer`]).
type WriteQueue = std::sync::mpsc::SyncSender<DiskJob>;

/// Work for the disk thread, done in the order it was queued.
enum DiskJob {
    /// Ledger appends the machine asked for, reported back as one batch.
    Append(Vec<(WriteId, EntryBody)>),
    /// Any other write that syncs (a witnessed replica, a signed checkpoint, a cosignature,
    /// a saved sliver): what it returns, if anything, is handed back to the loop.
    Work(Box<dyn FnOnce() -> Option<Done> + Send>),
}

/// The one thread that writes to the node's disk for the machine: ledger appends in the
/// order the machine asked for them, everything queued together written and synced at once
/// (group commit), each batch reported back; replica appends, checkpoint signing and other
/// synced writes in their turn. The loop never waits for an fsync.
fn spawn_writer(
    ledger: Arc<Ledger>,
    done: mpsc::Sender<Done>,
    append_seconds: prometheus_client::metrics::histogram::Histogram,
) -> std::io::Result<(WriteQueue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<DiskJob>(MAX_QUEUED_WRITES);
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < 256
                    && let Ok(more) = rx.try_recv()
                {
                    jobs.push(more);
                }
                let mut appends: Vec<(WriteId, EntryBody)> = vec![];
                for job in jobs {
                    let work = match job {
                        DiskJob::Append(batch) => {
                            appends.extend(batch);
                            continue;
                        }
                        DiskJob::Work(work) => work,
                    };
                    // Appends queued before this work are durable before it runs.
                    if !append_batch(
                        &ledger,
                        &done,
                        std::mem::take(&mut appends),
                        &append_seconds,
                    ) {
                        return;
                    }
                    if let Some(d) = work()
                        && done.blocking_send(d).is_err()
                    {
                        return;
                    }
                }
                if !append_batch(&ledger, &done, appends, &append_seconds) {
                    return;
                }
            }
        })?;
    Ok((tx, handle))
}

/// Appends and syncs a batch, reporting it; false when the loop is gone.
fn append_batch(
    ledger: &Ledger,
    done: &mpsc::Sender<Done>,
    batch: Vec<(WriteId, EntryBody)>,
    append_seconds: &prometheus_client::metrics::histogram::Histogram,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let now = now_ms();
    let (writes, entries): (Vec<WriteId>, Vec<_>) = batch
        .into_iter()
        .map(|(id, body)| (id, (now, body)))
        .unzip();
    let started = std::time::Instant::now();
    let result = ledger
        .append_all(entries)
        .map(|_| ())
        .map_err(|e| e.to_string());
    append_seconds.observe(started.elapsed().as_secs_f64());
    done.blocking_send(Done::Written { writes, result }).is_ok()
}

/// The slivers saved for a restart (an unreadable file comes back as a sliver with no
/// ticket, which the machine refuses and logs).
fn read_saved(dir: &Path) -> Vec<Saved> {
    let Ok(entries) = std::fs::read_dir(dir.join("slivers")) else {
        return vec![];
    };
    let mut saved: Vec<Saved> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = e.path();
            let id = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
            let s = read_limited(&p, MAX_SAVED_SLIVER_BYTES).ok().and_then(|b| {
                codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES).ok()
            });
            Some(match s {
                Some(s) => Saved {
                    id,
                    credential: s.credential,
                    invocation: Invocation::new(s.args, s.env),
                },
                None => Saved {
                    id,
                    credential: vec![],
                    invocation: Invocation::default(),
                },
            })
        })
        .take(slicefed_proto::node::MAX_SAVED)
        .collect();
    saved.sort_by_key(|s| s.id);
    saved
}

/// One pass over the node's own log at start: revocations it honoured before still hold
/// (read back before any sliver is restored; what it missed while away it asks members
/// for), and what the log says of each saved sliver (created with which ticket and
/// invocation, renewed, not stopped): the saved files are the owner's to write, the log is
/// witnessed.
fn read_log_at_open(
    ledger: &Ledger,
    size: u64,
    core: &mut NodeCore,
    saved: &[Saved],
) -> BTreeMap<u64, (CertId, InvocationHash)> {
    let saved_ids: std::collections::BTreeSet<u64> = saved.iter().map(|s| s.id).collect();
    let mut logged: BTreeMap<u64, (CertId, InvocationHash)> = BTreeMap::new();
    for seq in 0..size {
        let Ok(leaf) = ledger.read(seq) else { continue };
        let Ok(e) = slicefed_ledger::entry::Entry::decode(&leaf) else {
            continue;
        };
        match e.body {
            // A slice delete is held again like a revocation, so a sliver it ended is never
            // restored.
            EntryBody::RevocationSeen {
                revocation: held, ..
            }
            | EntryBody::SliceDeleted { delete: held, .. } => {
                let _ = core.remember_revocation(now_ms(), &held);
            }
            EntryBody::SliverCreated {
                who,
                ticket,
                invocation,
                ..
            } if saved_ids.contains(&who.sliver) => {
                logged.insert(who.sliver, (ticket, invocation.hash()));
            }
            EntryBody::SliverRenewed { who, ticket, .. } => {
                if let Some(l) = logged.get_mut(&who.sliver) {
                    l.0 = ticket;
                }
            }
            EntryBody::SliverStopped { who, .. } => {
                logged.remove(&who.sliver);
            }
            _ => {}
        }
    }
    logged
}
