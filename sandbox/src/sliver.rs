//! One sliver: a WASI component in its own `Store`, with its own limits, scheduler weight,
//! network policy, logs and accounting.
//!
//! Invariants:
//! - Memory is capped over the *sum* of every memory and table of the sliver.
//! - A CPU-bound sliver yields every `cpu_share` epoch ticks through `YieldCustom` with
//!   tokio's `yield_now` (wasmtime's built-in yield is unfair under tokio), so CPU-bound
//!   slivers share the worker threads in proportion to their weights.
//! - CPU time is the time spent polling the sliver's future, measured around every poll.
//! - The first reason to stop a sliver wins and is what its outcome reports.

use crate::engine::{Compiled, Sandbox};
use crate::logs::LogBuffer;
use crate::net::{self, SharedSink};
use slicefed_ledger::entry::{Attribution, Decision, Direction};
use slicefed_trust::caps::{NetworkRights, Proto};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Most entries in a sliver's resource table (open files, sockets, streams, pollables).
pub const MAX_HANDLES: usize = 4096;
/// Most bytes of randomness a sliver may ask for in one call.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Bytes charged per table element against the memory cap.
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Why a sliver was stopped from outside its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KillReason {
    /// It tried to grow memory past its cap.
    Memory,
    /// It used its CPU time limit.
    Cpu,
    /// It ran past its wall-clock lifetime.
    Lifetime,
    /// It sent its daily egress cap.
    Egress,
    /// Someone stopped it (its owner, the node owner).
    Stopped,
    /// Its ticket expired or was revoked.
    Expired,
    /// It made flow records faster than a sliver may (each is a ledger entry).
    Flows,
}

impl std::fmt::Display for KillReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KillReason::Memory => "memory",
            KillReason::Cpu => "cpu",
            KillReason::Lifetime => "lifetime",
            KillReason::Egress => "egress",
            KillReason::Stopped => "stopped",
            KillReason::Expired => "expired",
            KillReason::Flows => "flows",
        })
    }
}

/// How a sliver ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status.
    Exited(i32),
    /// It trapped (stack overflow, unreachable, …).
    Trapped(String),
    /// It was stopped.
    Killed(KillReason),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(c) => write!(f, "exited({c})"),
            Outcome::Trapped(t) => write!(f, "trapped({t})"),
            Outcome::Killed(k) => write!(f, "killed({k})"),
        }
    }
}

/// Where a sliver's stdout and stderr go.
#[derive(Clone, Copy, Debug)]
pub enum Stdio {
    /// The node process's own (for `sliver run`).
    Inherit,
    /// Bounded buffers of this many bytes each.
    Capture(usize),
}

/// What to run and under which limits.
#[derive(Clone)]
pub struct SliverSpec {
    /// Whose sliver.
    pub who: Attribution,
    /// Memory cap over all memories and tables, bytes.
    pub memory: u64,
    /// CPU weight (≥ 1).
    pub cpu_share: u32,
    /// Optional CPU time cap.
    pub cpu_limit: Option<Duration>,
    /// Optional wall-clock lifetime.
    pub lifetime: Option<Duration>,
    /// Network rights.
    pub network: NetworkRights,
    /// Daily egress cap over all TCP flows, bytes (`None`: unlimited).
    pub egress_per_day: Option<u64>,
    /// Arguments (without argv[0]).
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Logs.
    pub stdio: Stdio,
    /// A directory preopened as `/` for the sliver, if any.
    pub dir: Option<PathBuf>,
    /// Where flow records go.
    pub flows: SharedSink,
    /// The owner's rules for the machine itself (local destinations, the node's own
    /// ports), shared with the node, which updates them as it learns its addresses.
    pub host: net::SharedHostRules,
}

/// Counters a running sliver updates.
#[derive(Debug, Default)]
pub struct Counters {
    cpu_ns: AtomicU64,
    peak_memory: AtomicU64,
    flows_allowed: AtomicU64,
    flows_denied: AtomicU64,
    bytes: Arc<(AtomicU64, AtomicU64)>,
}

/// A snapshot of a sliver's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time.
    pub cpu: Duration,
    /// Peak of memories plus tables, bytes.
    pub peak_memory: u64,
    /// Flows allowed.
    pub flows_allowed: u64,
    /// Flows denied.
    pub flows_denied: u64,
    /// Bytes received over TCP.
    pub bytes_in: u64,
    /// Bytes sent over TCP.
    pub bytes_out: u64,
}

#[derive(Default)]
struct KillFlag(Mutex<Option<KillReason>>);
impl KillFlag {
    fn set(&self, r: KillReason) {
        if let Ok(mut k) = self.0.lock() {
            k.get_or_insert(r);
        }
    }
    fn get(&self) -> Option<KillReason> {
        self.0.lock().ok().and_then(|k| *k)
    }
}

#[derive(Default)]
struct Done {
    outcome: Mutex<Option<Outcome>>,
    cv: Condvar,
}

/// A running (or finished) sliver.
pub struct SliverHandle {
    /// Node-local id.
    pub id: u64,
    /// Its stdout, when captured.
    pub stdout: Option<LogBuffer>,
    /// Its stderr, when captured.
    pub stderr: Option<LogBuffer>,
    counters: Arc<Counters>,
    kill: Arc<KillFlag>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<KillReason>>>,
    done: Arc<Done>,
}

impl SliverHandle {
    /// Stops the sliver for `reason` (no effect once it has ended).
    pub fn stop(&self, reason: KillReason) {
        self.kill.set(reason);
        if let Ok(mut s) = self.stop.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(reason);
        }
    }

    /// Its outcome, if it has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.done.outcome.lock().ok().and_then(|o| o.clone())
    }

    /// Waits up to `timeout` for the outcome.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut o = self.done.outcome.lock().ok()?;
        while o.is_none() {
            let left = deadline.checked_duration_since(Instant::now())?;
            o = self.done.cv.wait_timeout(o, left).ok()?.0;
        }
        o.clone()
    }

    /// Waits for the outcome.
    pub fn wait(&self) -> Outcome {
        loop {
            if let Some(o) = self.wait_timeout(Duration::from_secs(3600)) {
                return o;
            }
        }
    }

    /// Usage so far.
    pub fn usage(&self) -> Usage {
        Usage {
            cpu: Duration::from_nanos(self.counters.cpu_ns.load(Ordering::Relaxed)),
            peak_memory: self.counters.peak_memory.load(Ordering::Relaxed),
            flows_allowed: self.counters.flows_allowed.load(Ordering::Relaxed),
            flows_denied: self.counters.flows_denied.load(Ordering::Relaxed),
            bytes_in: self.counters.bytes.0.load(Ordering::Relaxed),
            bytes_out: self.counters.bytes.1.load(Ordering::Relaxed),
        }
    }
}

/// Store data of a sliver.
pub struct SliverState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    meter: crate::meter::MeterConfig,
    sockets: crate::sockets::SocketBudget,
}

impl crate::sockets::Budgeted for SliverState {
    fn budget(&mut self) -> &mut crate::sockets::SocketBudget {
        &mut self.sockets
    }
}

impl crate::meter::Metered for SliverState {
    fn meter(&self) -> &crate::meter::MeterConfig {
        &self.meter
    }
    fn table_mut(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for SliverState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the sum of all memories and tables of one store.
struct MemoryLimiter {
    cap: u64,
    memories: u64,
    tables: u64,
    counters: Arc<Counters>,
    kill: Arc<KillFlag>,
}

impl MemoryLimiter {
    fn admit(&mut self, memories: u64, tables: u64) -> bool {
        let total = memories.saturating_add(tables);
        if total > self.cap {
            self.kill.set(KillReason::Memory);
            return false;
        }
        self.memories = memories;
        self.tables = tables;
        self.counters
            .peak_memory
            .fetch_max(total, Ordering::Relaxed);
        true
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let memories = (self.memories + desired as u64).saturating_sub(current as u64);
        Ok(self.admit(memories, self.tables))
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.admit(self.memories, self.tables.saturating_add(grow)))
    }
    // Backstops of the pool's per-component caps (`engine::CORE_INSTANCES_PER_SLIVER` …):
    // one sliver never takes more than its share of the node's instance pool.
    fn instances(&self) -> usize {
        crate::engine::CORE_INSTANCES_PER_SLIVER as usize
    }
    fn tables(&self) -> usize {
        crate::engine::TABLES_PER_SLIVER as usize
    }
    fn memories(&self) -> usize {
        crate::engine::MEMORIES_PER_SLIVER as usize
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wraps a future and adds the time spent in each `poll` to a counter.
struct Metered<F> {
    inner: Pin<Box<F>>,
    counters: Arc<Counters>,
}
impl<F: Future> Future for Metered<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let t = Instant::now();
        let r = self.inner.as_mut().poll(cx);
        self.counters
            .cpu_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

/// The decision on one use of an address: the slice's rights, the owner's host rules, and
/// whether the ledger can record it (a flow that cannot be recorded does not happen). The
/// policy check and the datagram meter both ask it.
pub(crate) fn judge(
    rights: &NetworkRights,
    host: &net::SharedHostRules,
    sink: &dyn net::FlowSink,
    addr: std::net::SocketAddr,
    use_: wasmtime_wasi::sockets::SocketAddrUse,
) -> net::Verdict {
    let mut verdict = match host.read() {
        Ok(h) => net::decide(rights, &h, addr, use_),
        // Poisoned: nothing is known about the host, so nothing outgoing is allowed.
        Err(_) => net::decide(rights, &net::HostRules::default(), addr, use_),
    };
    if verdict.allowed
        && verdict.flow.is_some()
        && let Err(why) = sink.writable()
    {
        verdict.allowed = false;
        verdict.reason = why;
    }
    verdict
}

fn wasi_ctx(
    spec: &SliverSpec,
    stdout: &Option<LogBuffer>,
    stderr: &Option<LogBuffer>,
    counters: &Arc<Counters>,
    aggregates: &Arc<net::FlowAggregator>,
) -> wasmtime::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    let mut argv = vec![format!("{}", spec.who.slice)];
    argv.extend(spec.args.iter().cloned());
    b.args(&argv)
        .envs(&spec.env)
        .max_random_size(MAX_RANDOM_BYTES);
    match (stdout, stderr) {
        (Some(o), Some(e)) => {
            b.stdout(o.clone()).stderr(e.clone());
        }
        _ => {
            b.inherit_stdout().inherit_stderr();
        }
    }
    if let Some(dir) = &spec.dir {
        b.preopened_dir(dir, "/", FsPerms::ReadWrite)?;
    }
    let uses = |proto: Proto| {
        spec.network
            .connect
            .rules()
            .is_none_or(|r| r.iter().any(|r| r.proto == proto))
            || spec
                .network
                .listen
                .rules()
                .is_none_or(|r| r.iter().any(|r| r.proto == proto))
    };
    // With any network right, sockets are on at the WASI level and each address is decided
    // by the slice's rules, so denials are seen (permission denied) and recorded.
    b.allow_tcp(uses(Proto::Tcp))
        .allow_udp(uses(Proto::Udp))
        .allow_ip_name_lookup(false);
    let rights = spec.network.clone();
    let host = spec.host.clone();
    let sink = spec.flows.clone();
    let counters = counters.clone();
    let aggregates = aggregates.clone();
    b.socket_addr_check(move |addr, use_| {
        let verdict = judge(&rights, &host, &*sink, addr, use_);
        if let Some((proto, direction)) = verdict.flow {
            let c = if verdict.allowed {
                &counters.flows_allowed
            } else {
                &counters.flows_denied
            };
            // An allowed TCP flow is recorded when it closes, by the meter, with its real
            // local address and exact byte counts; allowed datagrams by the meter's `send`
            // (with their bytes); refusals here, aggregated per destination and interval.
            if !verdict.allowed {
                c.fetch_add(1, Ordering::Relaxed);
                let decision = Decision::Denied(verdict.reason.clone());
                aggregates.count(proto, direction, addr, &decision, 0, now_ms());
            } else if proto == Proto::Tcp {
                c.fetch_add(1, Ordering::Relaxed);
                // Every connect attempt sends packets, whether or not it connects (a port
                // scan never does): each is counted per destination too.
                if direction == Direction::Outbound {
                    aggregates.count(proto, direction, addr, &Decision::Allowed, 0, now_ms());
                }
            }
        }
        let allowed = verdict.allowed;
        Box::pin(async move { allowed })
    });
    Ok(b.build())
}

/// Weighted fairness across worker threads. Each worker round-robins only its own queue,
/// so per-sliver quanta alone are fair only within a worker. Every CPU-active sliver has a
/// virtual time (CPU ÷ weight); at each epoch callback a sliver ahead of the slowest active
/// one steps aside (sleeps) so the others get the cores. A sliver that becomes active starts
/// at the current minimum virtual time, so its arrival never starves the others.
#[derive(Default)]
pub(crate) struct FairShare {
    active: Mutex<Vec<Active>>,
}

struct Active {
    id: u64,
    weight: u64,
    seen: Instant,
    base_cpu: u64,
    base_vt: u64,
}

/// A sliver not seen at an epoch callback this recently is not CPU-bound: it leaves the set.
const ACTIVE_WINDOW: Duration = Duration::from_millis(100);
/// Ahead by less than this much of its own CPU time, a sliver just yields.
const STEP_ASIDE_AFTER: Duration = Duration::from_millis(2);
/// Longest single step aside (the sliver re-checks after it).
const MAX_STEP_ASIDE: Duration = Duration::from_millis(20);

impl FairShare {
    /// How long sliver `id` should step aside now.
    fn step_aside(&self, id: u64, cpu_ns: u64, weight: u64) -> Duration {
        let Ok(mut active) = self.active.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        active.retain(|a| a.id == id || now.duration_since(a.seen) < ACTIVE_WINDOW);
        let vt =
            |a: &Active, cpu: u64| a.base_vt + cpu.saturating_sub(a.base_cpu) / a.weight.max(1);
        let min_others = active
            .iter()
            .filter(|a| a.id != id)
            .map(|a| a.base_vt) // others' current vt is refreshed into base_vt below
            .min();
        let me = match active.iter_mut().find(|a| a.id == id) {
            Some(me) => me,
            None => {
                active.push(Active {
                    id,
                    weight,
                    seen: now,
                    base_cpu: cpu_ns,
                    base_vt: min_others.unwrap_or(0),
                });
                return Duration::ZERO;
            }
        };
        // Fold my progress into base_vt so others compare against my current vt.
        let my_vt = vt(me, cpu_ns);
        me.base_vt = my_vt;
        me.base_cpu = cpu_ns;
        me.seen = now;
        let Some(min_vt) = min_others else {
            return Duration::ZERO;
        };
        let ahead =
            Duration::from_nanos(my_vt.saturating_sub(min_vt).saturating_mul(weight.max(1)));
        if ahead < STEP_ASIDE_AFTER {
            Duration::ZERO
        } else {
            ahead.min(MAX_STEP_ASIDE)
        }
    }

    fn leave(&self, id: u64) {
        if let Ok(mut a) = self.active.lock() {
            a.retain(|x| x.id != id);
        }
    }
}

fn meter_config(
    spec: &SliverSpec,
    counters: &Arc<Counters>,
    kill: &Arc<KillFlag>,
    aggregates: Arc<net::FlowAggregator>,
    records: Arc<net::RecordBudget>,
) -> crate::meter::MeterConfig {
    let kill = kill.clone();
    crate::meter::MeterConfig {
        records,
        who: spec.who.clone(),
        sink: spec.flows.clone(),
        aggregates,
        rights: spec.network.clone(),
        host: spec.host.clone(),
        egress: Arc::new(crate::meter::Egress::new(spec.egress_per_day)),
        on_egress_cap: Arc::new(move || kill.set(KillReason::Egress)),
        totals: counters.bytes.clone(),
    }
}

/// A sliver's store: WASI context, bounded handle table, flow meter and memory limiter.
/// Used by slivers and by the instantiation benchmark, so both measure the same thing.
fn new_store(
    engine: &wasmtime::Engine,
    spec: &SliverSpec,
    counters: &Arc<Counters>,
    kill: &Arc<KillFlag>,
    stdout: &Option<LogBuffer>,
    stderr: &Option<LogBuffer>,
    sockets: crate::sockets::SocketBudget,
) -> wasmtime::Result<Store<SliverState>> {
    let records = {
        let kill = kill.clone();
        Arc::new(net::RecordBudget::new(
            net::MAX_FLOW_RECORDS_PER_MINUTE,
            Box::new(move || kill.set(KillReason::Flows)),
        ))
    };
    let aggregates = Arc::new(net::FlowAggregator::new(
        spec.who.clone(),
        spec.flows.clone(),
        records.clone(),
    ));
    let wasi = wasi_ctx(spec, stdout, stderr, counters, &aggregates)?;
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    let state = SliverState {
        wasi,
        table,
        meter: meter_config(spec, counters, kill, aggregates, records),
        limiter: MemoryLimiter {
            cap: spec.memory,
            memories: 0,
            tables: 0,
            counters: counters.clone(),
            kill: kill.clone(),
        },
        sockets,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    Ok(store)
}

/// What a running sliver shares with its handle.
struct Wiring {
    id: u64,
    fair: Arc<FairShare>,
    counters: Arc<Counters>,
    kill: Arc<KillFlag>,
    stdout: Option<LogBuffer>,
    stderr: Option<LogBuffer>,
    sockets: crate::sockets::SocketBudget,
}

async fn run(
    engine: wasmtime::Engine,
    linker: Arc<Linker<SliverState>>,
    compiled: Arc<Compiled>,
    spec: SliverSpec,
    wiring: Wiring,
) -> Outcome {
    let Wiring {
        id,
        fair,
        counters,
        kill,
        stdout,
        stderr,
        sockets,
    } = wiring;
    let mut store = match new_store(&engine, &spec, &counters, &kill, &stdout, &stderr, sockets) {
        Ok(s) => s,
        Err(e) => return Outcome::Trapped(format!("cannot set up WASI: {e:#}")),
    };
    let weight = u64::from(spec.cpu_share.max(1));
    store.set_epoch_deadline(weight);
    let cpu_limit = spec.cpu_limit.map(|d| d.as_nanos() as u64);
    let (cb_counters, cb_kill, cb_fair) = (counters.clone(), kill.clone(), fair.clone());
    store.epoch_deadline_callback(move |_| {
        if cpu_limit.is_some_and(|l| cb_counters.cpu_ns.load(Ordering::Relaxed) >= l) {
            cb_kill.set(KillReason::Cpu);
        }
        if cb_kill.get().is_some() {
            return Ok(UpdateDeadline::Interrupt);
        }
        let pause = cb_fair.step_aside(id, cb_counters.cpu_ns.load(Ordering::Relaxed), weight);
        if pause.is_zero() {
            Ok(UpdateDeadline::YieldCustom(
                weight,
                Box::pin(tokio::task::yield_now()),
            ))
        } else {
            Ok(UpdateDeadline::YieldCustom(
                weight,
                Box::pin(tokio::time::sleep(pause)),
            ))
        }
    });
    let result = async {
        let cmd = wasmtime_wasi::p2::bindings::Command::instantiate_async(
            &mut store,
            &compiled.component,
            &linker,
        )
        .await?;
        cmd.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    fair.leave(id);
    // A reason to stop the sliver wins over the exit status it chose after being refused
    // (a guest whose write failed at its egress cap usually exits 1, and one that only
    // reports the refusal exits 0 before the stop reaches it: that is still a kill).
    match result {
        Ok(Ok(())) => kill.get().map_or(Outcome::Exited(0), Outcome::Killed),
        Ok(Err(())) => kill.get().map_or(Outcome::Exited(1), Outcome::Killed),
        Err(e) => {
            if let Some(r) = kill.get() {
                return Outcome::Killed(r);
            }
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return Outcome::Exited(exit.0);
            }
            match e.downcast_ref::<wasmtime::Trap>() {
                Some(t) => Outcome::Trapped(t.to_string()),
                None => Outcome::Trapped(
                    format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                ),
            }
        }
    }
}

/// See [`Sandbox::time_instantiation`].
pub(crate) async fn time_instantiation(
    engine: &wasmtime::Engine,
    linker: &Linker<SliverState>,
    compiled: &Compiled,
    spec: &SliverSpec,
) -> Result<Duration, crate::SandboxError> {
    let counters = Arc::new(Counters::default());
    let err = |e: wasmtime::Error| crate::SandboxError::Wasmtime {
        what: "instantiating".into(),
        source: e,
    };
    let kill = Arc::new(KillFlag::default());
    let sockets = crate::sockets::SocketBudget::new(
        crate::sockets::MAX_SOCKETS_PER_SLIVER,
        crate::sockets::MAX_SOCKETS_PER_SLIVER,
        Arc::default(),
    );
    let mut store =
        new_store(engine, spec, &counters, &kill, &None, &None, sockets).map_err(err)?;
    store.set_epoch_deadline(u64::MAX / 2);
    let t = Instant::now();
    wasmtime_wasi::p2::bindings::Command::instantiate_async(
        &mut store,
        &compiled.component,
        linker,
    )
    .await
    .map_err(err)?;
    Ok(t.elapsed())
}

pub(crate) fn spawn(
    sb: &Sandbox,
    id: u64,
    compiled: Arc<Compiled>,
    spec: SliverSpec,
) -> SliverHandle {
    let counters = Arc::new(Counters::default());
    let kill = Arc::new(KillFlag::default());
    let done = Arc::new(Done::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<KillReason>();
    let (stdout, stderr) = match spec.stdio {
        Stdio::Capture(cap) => (Some(LogBuffer::new(cap)), Some(LogBuffer::new(cap))),
        Stdio::Inherit => (None, None),
    };
    let lifetime = spec.lifetime;
    let fut = run(
        sb.engine.clone(),
        sb.linker.clone(),
        compiled,
        spec,
        Wiring {
            id,
            fair: sb.fair.clone(),
            counters: counters.clone(),
            kill: kill.clone(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            sockets: crate::sockets::SocketBudget::new(
                crate::sockets::MAX_SOCKETS_PER_SLIVER,
                sb.config.max_sockets,
                sb.sockets.clone(),
            ),
        },
    );
    let metered = Metered {
        inner: Box::pin(fut),
        counters: counters.clone(),
    };
    let running = sb.running.clone();
    let (task_done, task_kill) = (done.clone(), kill.clone());
    sb.runtime.spawn(async move {
        let stopped = async move {
            match stop_rx.await {
                Ok(r) => r,
                // The handle was dropped without a stop: keep running.
                Err(_) => std::future::pending().await,
            }
        };
        let expired = async move {
            match lifetime {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            o = metered => o,
            r = stopped => Outcome::Killed(r),
            _ = expired => {
                task_kill.set(KillReason::Lifetime);
                Outcome::Killed(KillReason::Lifetime)
            }
        };
        running.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut o) = task_done.outcome.lock() {
            *o = Some(outcome);
        }
        task_done.cv.notify_all();
    });
    SliverHandle {
        id,
        stdout,
        stderr,
        counters,
        kill,
        stop: Mutex::new(Some(stop_tx)),
        done,
    }
}
