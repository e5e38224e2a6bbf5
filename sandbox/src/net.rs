//! Network policy of a sliver: every socket address a guest uses through `wasi:sockets` is
//! decided by the slice's rules, and every decision about a flow (allowed or denied) becomes
//! a flow record for the node's ledger.

use slicefed_ledger::entry::{Attribution, Decision, Direction, FlowRecord};
use slicefed_trust::caps::{ConnectRule, NetworkRights, Proto, local_scope};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Where flow records go (the node connects this to its ledger).
pub trait FlowSink: Send + Sync {
    /// Records one flow decision.
    fn record(&self, flow: FlowRecord);
    /// Whether records can be made durable now; `Err(why)` when they cannot, and then every
    /// new flow is denied (a flow that cannot be recorded must not happen).
    fn writable(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A sink that drops records (for slivers run without a ledger).
pub struct NoFlows;
impl FlowSink for NoFlows {
    fn record(&self, _: FlowRecord) {}
}

/// A sink that collects records in memory (bounded), for tests and `sliver run`.
#[derive(Default)]
pub struct CollectFlows {
    flows: std::sync::Mutex<Vec<FlowRecord>>,
}

/// Most records a [`CollectFlows`] keeps.
pub const MAX_COLLECTED_FLOWS: usize = 100_000;

impl CollectFlows {
    /// The records so far.
    pub fn flows(&self) -> Vec<FlowRecord> {
        self.flows.lock().map(|f| f.clone()).unwrap_or_default()
    }
}
impl FlowSink for CollectFlows {
    fn record(&self, flow: FlowRecord) {
        if let Ok(mut f) = self.flows.lock()
            && f.len() < MAX_COLLECTED_FLOWS
        {
            f.push(flow);
        }
    }
}

/// The verdict on one use of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed?
    pub allowed: bool,
    /// Whether this use is a flow worth a record (connects, accepts, first datagram).
    pub flow: Option<(Proto, Direction)>,
    /// Why, when denied.
    pub reason: String,
}

/// What the node owner says about the machine itself, applied to every sliver on top of
/// its ticket: a ticket can grant the Internet, never the owner's own machine or networks.
#[derive(Clone, Debug, Default)]
pub struct HostRules {
    /// Local destinations (loopback, private, link-local, CGNAT, multicast, …) slivers may
    /// reach anyway: the owner's `[local] allow` (the devnet and loopback tests allow
    /// loopback this way).
    pub local_allow: Vec<ConnectRule>,
    /// The machine's own addresses as the node learned them (its listen addresses).
    pub own_addrs: Vec<IpAddr>,
    /// Ports the node itself listens on (its overlay port; later its admin and metrics
    /// ports), on any of its own addresses.
    pub own_ports: Vec<u16>,
    /// The node's sensor endpoint (`/metrics`): reachable from a sliver whose rights
    /// include `sensors`, and from no other, whatever else the owner opened.
    pub sensors: Option<SocketAddr>,
}

/// Host rules shared by the node and all its slivers (the node learns its addresses after
/// slivers may have started).
pub type SharedHostRules = Arc<std::sync::RwLock<HostRules>>;

impl HostRules {
    /// Whether `addr` reaches the node's sensor endpoint (on its address, or on any of the
    /// machine's own addresses when it listens on all of them).
    pub fn is_sensors(&self, addr: SocketAddr) -> bool {
        self.sensors.is_some_and(|s| {
            s.port() == addr.port()
                && (s.ip() == addr.ip()
                    || (s.ip().is_unspecified()
                        && (addr.ip().is_loopback() || self.own_addrs.contains(&addr.ip()))))
        })
    }

    /// Why `proto` to `addr` is the owner's to allow and was not allowed, if it is.
    pub fn refuses(&self, proto: Proto, addr: SocketAddr) -> Option<String> {
        let ip = addr.ip();
        let own_ip = self.own_addrs.contains(&ip) || local_scope(&ip).is_some();
        if own_ip && self.own_ports.contains(&addr.port()) {
            // Only a rule naming exactly this port opens the node's own sockets.
            let named = self.local_allow.iter().any(|r| {
                r.allows(proto, &ip, addr.port())
                    && r.ports.first == addr.port()
                    && r.ports.last == addr.port()
            });
            if !named {
                return Some(format!("{addr} is a port of the node itself"));
            }
            return None;
        }
        let scope = local_scope(&ip).or(self.own_addrs.contains(&ip).then_some("this machine's"));
        match scope {
            Some(scope)
                if !self
                    .local_allow
                    .iter()
                    .any(|r| r.allows(proto, &ip, addr.port())) =>
            {
                Some(format!(
                    "{addr} is a {scope} address, which slivers may reach only if the node owner's policy allows it ([local] allow)"
                ))
            }
            _ => None,
        }
    }
}

/// Decides one use of an address under the sliver's network rights and the owner's host
/// rules.
pub fn decide(
    rights: &NetworkRights,
    host: &HostRules,
    addr: SocketAddr,
    use_: SocketAddrUse,
) -> Verdict {
    let connect = |proto: Proto| match rights.connect.rules() {
        None => true,
        Some(rules) => rules
            .iter()
            .any(|r| r.allows(proto, &addr.ip(), addr.port())),
    };
    let listen = |proto: Proto| match rights.listen.rules() {
        None => true,
        Some(rules) => rules.iter().any(|r| r.allows(proto, addr.port())),
    };
    let any_network = |proto: Proto| {
        let c = rights
            .connect
            .rules()
            .is_none_or(|r| r.iter().any(|r| r.proto == proto));
        let l = rights
            .listen
            .rules()
            .is_none_or(|r| r.iter().any(|r| r.proto == proto));
        c || l
    };
    // The node's sensors: the sensors right opens exactly that address and port, and
    // nothing else does (it is a port of the node itself).
    if matches!(use_, SocketAddrUse::TcpConnect) && host.is_sensors(addr) {
        let flow = Some((Proto::Tcp, Direction::Outbound));
        return if rights.sensors {
            Verdict {
                allowed: true,
                flow,
                reason: String::new(),
            }
        } else {
            Verdict {
                allowed: false,
                flow,
                reason: format!(
                    "{addr} is the node's sensors, which the slice's ticket has no right to read"
                ),
            }
        };
    }
    let (allowed, flow, what) = match use_ {
        // Port 0 is the implicit bind before a connect: allowed if the sliver may use TCP.
        SocketAddrUse::TcpBind if addr.port() == 0 => (any_network(Proto::Tcp), None, "bind"),
        SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => {
            (listen(Proto::Tcp), None, "listen on")
        }
        SocketAddrUse::TcpAccept => (true, Some((Proto::Tcp, Direction::Inbound)), "accept from"),
        SocketAddrUse::TcpConnect => (
            connect(Proto::Tcp),
            Some((Proto::Tcp, Direction::Outbound)),
            "connect to",
        ),
        SocketAddrUse::UdpBind if addr.port() == 0 => (any_network(Proto::Udp), None, "bind"),
        SocketAddrUse::UdpBind => (listen(Proto::Udp), None, "listen on"),
        SocketAddrUse::UdpSend => (
            connect(Proto::Udp),
            Some((Proto::Udp, Direction::Outbound)),
            "send to",
        ),
        SocketAddrUse::UdpReceive => (true, None, "receive from"),
    };
    if !allowed {
        return Verdict {
            allowed,
            flow,
            reason: format!("the slice may not {what} {addr}"),
        };
    }
    // Binding to one of the machine's local addresses (loopback, a private LAN address)
    // would let a sliver receive what is meant for the owner's services: the owner opens
    // those. Binding to every address (0.0.0.0, ::) is what a granted listen port means.
    let bind = match use_ {
        SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => Some(Proto::Tcp),
        SocketAddrUse::UdpBind => Some(Proto::Udp),
        _ => None,
    };
    if let Some(proto) = bind
        && !addr.ip().is_unspecified()
        && let Some(scope) = local_scope(&addr.ip())
        && !host
            .local_allow
            .iter()
            .any(|r| r.allows(proto, &addr.ip(), addr.port()))
    {
        return Verdict {
            allowed: false,
            flow,
            reason: format!(
                "the slice may not {what} {addr}: a {scope} address, which slivers may use only if the node owner's policy allows it ([local] allow)"
            ),
        };
    }
    // Outgoing uses only: the owner's machine and networks are the owner's to open.
    let outgoing = match use_ {
        SocketAddrUse::TcpConnect => Some(Proto::Tcp),
        SocketAddrUse::UdpSend => Some(Proto::Udp),
        _ => None,
    };
    if let Some(proto) = outgoing
        && let Some(h) = host.refuses(proto, addr)
    {
        return Verdict {
            allowed: false,
            flow,
            reason: format!("the slice may not {what} {addr}: {h}"),
        };
    }
    Verdict {
        allowed,
        flow,
        reason: String::new(),
    }
}

/// Builds the flow record for a verdict.
pub fn flow_record(
    who: &Attribution,
    verdict: &Verdict,
    proto: Proto,
    direction: Direction,
    remote: SocketAddr,
    now_ms: u64,
) -> FlowRecord {
    FlowRecord {
        who: who.clone(),
        proto,
        direction,
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        remote,
        decision: if verdict.allowed {
            Decision::Allowed
        } else {
            Decision::Denied(verdict.reason.clone())
        },
        bytes_out: 0,
        bytes_in: 0,
        packets_out: 0,
        packets_in: 0,
        first_ms: now_ms,
        last_ms: now_ms,
    }
}

/// A sink shared by the policy check.
pub type SharedSink = Arc<dyn FlowSink>;

/// Records of datagrams and of refused attempts are aggregated over this long: one record
/// per destination and decision per interval, not one per packet.
pub const FLOW_INTERVAL_MS: u64 = 10_000;
/// Aggregates open at once per sliver (past this, all are written out).
pub const MAX_OPEN_AGGREGATES: usize = 256;
/// Connected UDP streams whose destination is remembered per sliver.
pub const MAX_CONNECTED_STREAMS: usize = 256;

#[derive(Clone, PartialEq, Eq, Hash)]
struct AggregateKey {
    proto: Proto,
    direction: Direction,
    remote: SocketAddr,
    denied: Option<String>,
}

#[derive(Default)]
struct Aggregates {
    open: std::collections::HashMap<AggregateKey, FlowRecord>,
    since_ms: u64,
    /// Where each connected outgoing UDP stream sends (its resource id).
    streams: std::collections::HashMap<u32, SocketAddr>,
}

/// Flow records one sliver may cause per minute (each becomes a ledger entry, replicated by
/// its node's witnesses); past it the sliver is killed with reason `flows`. Records are
/// still all written: the sliver ends, the evidence stays.
pub const MAX_FLOW_RECORDS_PER_MINUTE: u64 = 6_000;

/// Counts a sliver's flow records per minute and calls `on_exceeded` past the limit.
pub struct RecordBudget {
    per_minute: u64,
    window: std::sync::Mutex<(u64, u64)>,
    on_exceeded: Box<dyn Fn() + Send + Sync>,
}

impl RecordBudget {
    /// A budget of `per_minute` records.
    pub fn new(per_minute: u64, on_exceeded: Box<dyn Fn() + Send + Sync>) -> RecordBudget {
        RecordBudget {
            per_minute,
            window: std::sync::Mutex::new((0, 0)),
            on_exceeded,
        }
    }

    /// Counts `n` records made at `now_ms`.
    pub fn note(&self, n: u64, now_ms: u64) {
        let over = match self.window.lock() {
            Ok(mut w) => {
                if now_ms.saturating_sub(w.0) >= 60_000 {
                    *w = (now_ms, 0);
                }
                w.1 = w.1.saturating_add(n);
                w.1 > self.per_minute
            }
            Err(_) => true,
        };
        if over {
            (self.on_exceeded)();
        }
    }
}

/// One sliver's datagram and refused-attempt records, aggregated per destination, decision
/// and interval (a sliver sending a million datagrams, or knocking a million times on a
/// denied port, costs its node a few ledger entries, each with the count and the bytes).
/// Written out when an interval ends, when too many are open, and when the sliver ends.
pub struct FlowAggregator {
    who: Attribution,
    sink: SharedSink,
    budget: Arc<RecordBudget>,
    state: std::sync::Mutex<Aggregates>,
}

impl FlowAggregator {
    /// Aggregates for `who`, written to `sink`, counted against `budget`.
    pub fn new(who: Attribution, sink: SharedSink, budget: Arc<RecordBudget>) -> FlowAggregator {
        FlowAggregator {
            who,
            sink,
            budget,
            state: std::sync::Mutex::new(Aggregates::default()),
        }
    }

    fn write(&self, records: Vec<FlowRecord>) {
        if records.is_empty() {
            return;
        }
        let now = records.iter().map(|r| r.last_ms).max().unwrap_or(0);
        self.budget.note(records.len() as u64, now);
        for r in records {
            self.sink.record(r);
        }
    }

    /// Counts one datagram or attempt (`bytes` sent) to `remote` under `decision`.
    pub fn count(
        &self,
        proto: Proto,
        direction: Direction,
        remote: SocketAddr,
        decision: &Decision,
        bytes: u64,
        now_ms: u64,
    ) {
        let mut due = vec![];
        if let Ok(mut st) = self.state.lock() {
            if st.open.is_empty() {
                st.since_ms = now_ms;
            }
            let key = AggregateKey {
                proto,
                direction,
                remote,
                denied: match decision {
                    Decision::Allowed => None,
                    Decision::Denied(r) => Some(r.clone()),
                },
            };
            if !st.open.contains_key(&key) && st.open.len() >= MAX_OPEN_AGGREGATES {
                due.extend(st.open.drain().map(|(_, r)| r));
                st.since_ms = now_ms;
            }
            let who = &self.who;
            let r = st.open.entry(key).or_insert_with(|| FlowRecord {
                who: who.clone(),
                proto,
                direction,
                local: SocketAddr::from(([0, 0, 0, 0], 0)),
                remote,
                decision: decision.clone(),
                bytes_out: 0,
                bytes_in: 0,
                packets_out: 0,
                packets_in: 0,
                first_ms: now_ms,
                last_ms: now_ms,
            });
            r.packets_out = r.packets_out.saturating_add(1);
            r.bytes_out = r.bytes_out.saturating_add(bytes);
            r.last_ms = now_ms;
            if now_ms.saturating_sub(st.since_ms) >= FLOW_INTERVAL_MS {
                due.extend(st.open.drain().map(|(_, r)| r));
            }
        }
        self.write(due);
    }

    /// Whether another connected stream can be remembered; when the table is full, first
    /// forgets the streams `live` says are gone. Never forgets a live one: a datagram whose
    /// destination is unknown could not be recorded.
    pub fn room_for_stream(&self, live: impl Fn(u32) -> bool) -> bool {
        match self.state.lock() {
            Ok(mut st) => {
                if st.streams.len() >= MAX_CONNECTED_STREAMS {
                    st.streams.retain(|rep, _| live(*rep));
                }
                st.streams.len() < MAX_CONNECTED_STREAMS
            }
            Err(_) => false,
        }
    }

    /// Remembers where a connected outgoing UDP stream sends (see `room_for_stream`).
    pub fn connected(&self, stream: u32, remote: SocketAddr) {
        if let Ok(mut st) = self.state.lock() {
            st.streams.insert(stream, remote);
        }
    }

    /// Where a connected outgoing UDP stream sends, if it is known.
    pub fn stream_remote(&self, stream: u32) -> Option<SocketAddr> {
        self.state.lock().ok()?.streams.get(&stream).copied()
    }

    /// Writes out every open aggregate.
    pub fn flush(&self) {
        let due: Vec<FlowRecord> = match self.state.lock() {
            Ok(mut st) => st.open.drain().map(|(_, r)| r).collect(),
            Err(_) => vec![],
        };
        self.write(due);
    }
}

impl Drop for FlowAggregator {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Most flow records waiting for the ledger; a sliver that opens flows faster than the
/// ledger can sync them is slowed down (the check blocks), never allowed to drop evidence.
pub const LEDGER_QUEUE: usize = 16_384;

/// A sink that appends flow records to a node's ledger, batched by a background thread so a
/// sliver's socket call never waits for more than a queue slot. A batch the ledger refuses
/// (its disk failed) is kept and retried until the ledger recovers, so no record is lost
/// while the node lives; meanwhile [`FlowSink::writable`] says why, and new flows are
/// denied. Only [`LedgerFlows::close_within`] giving up (the node stopping with a broken
/// disk) counts records as not written.
pub struct LedgerFlows {
    tx: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<FlowRecord>>>,
    worker: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    ledger: Arc<slicefed_ledger::Ledger>,
    failed: Arc<std::sync::atomic::AtomicU64>,
    /// Unix ms after which a refused batch is given up (0: retry for ever).
    give_up_at_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// How long the flow thread waits between attempts while the ledger refuses appends.
const FLOW_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

impl LedgerFlows {
    /// Starts the appending thread.
    pub fn new(ledger: Arc<slicefed_ledger::Ledger>) -> LedgerFlows {
        use std::sync::atomic::Ordering::Relaxed;
        let (tx, rx) = std::sync::mpsc::sync_channel::<FlowRecord>(LEDGER_QUEUE);
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let give_up_at_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (f, give_up, writer) = (failed.clone(), give_up_at_ms.clone(), ledger.clone());
        let worker = std::thread::Builder::new()
            .name("flow-ledger".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    loop {
                        let entries = batch
                            .iter()
                            .map(|r| (r.first_ms, slicefed_ledger::EntryBody::Flow(r.clone())))
                            .collect();
                        if writer.append_all(entries).is_ok() {
                            break;
                        }
                        let deadline = give_up.load(Relaxed);
                        if deadline != 0 && now_ms() >= deadline {
                            f.fetch_add(batch.len() as u64, Relaxed);
                            break;
                        }
                        std::thread::sleep(FLOW_RETRY);
                    }
                }
            })
            .ok();
        LedgerFlows {
            tx: std::sync::Mutex::new(Some(tx)),
            worker: std::sync::Mutex::new(worker),
            ledger,
            failed,
            give_up_at_ms,
        }
    }

    /// Waits until every record sent so far is durable, and stops the thread. Returns how
    /// many records could not be written (always 0 unless the ledger refuses appends; then
    /// this waits for it to recover).
    pub fn close(&self) -> u64 {
        self.close_inner()
    }

    /// [`LedgerFlows::close`], but giving up on records the ledger still refuses after
    /// `wait` (a node stopping with a broken disk); returns how many were not written.
    pub fn close_within(&self, wait: std::time::Duration) -> u64 {
        let deadline = now_ms().saturating_add(wait.as_millis() as u64).max(1);
        self.give_up_at_ms
            .store(deadline, std::sync::atomic::Ordering::Relaxed);
        self.close_inner()
    }

    fn close_inner(&self) -> u64 {
        if let Ok(mut t) = self.tx.lock() {
            t.take();
        }
        if let Ok(mut w) = self.worker.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FlowSink for LedgerFlows {
    fn record(&self, flow: FlowRecord) {
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        match tx {
            Some(tx) if tx.send(flow).is_ok() => {}
            _ => {
                self.failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    fn writable(&self) -> Result<(), String> {
        match self.ledger.failure() {
            None => Ok(()),
            Some(why) => Err(format!(
                "the node cannot record flows: its ledger cannot write ({why})"
            )),
        }
    }
}

impl Drop for LedgerFlows {
    fn drop(&mut self) {
        self.close_within(std::time::Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_trust::caps::{ConnectRule, ListenRule, RuleSet};

    fn rights() -> NetworkRights {
        NetworkRights {
            connect: RuleSet::Only(vec![ConnectRule::parse("tcp:127.0.0.1:7000").unwrap()]),
            listen: RuleSet::Only(vec![ListenRule::parse("tcp:8000-8010").unwrap()]),
            sensors: false,
        }
    }

    #[test]
    fn decides_by_rule() {
        let r = rights();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let lo = HostRules {
            local_allow: vec![ConnectRule::parse("tcp:127.0.0.0/8:*").unwrap()],
            ..HostRules::default()
        };
        assert!(decide(&r, &lo, a("127.0.0.1:7000"), SocketAddrUse::TcpConnect).allowed);
        assert!(!decide(&r, &lo, a("127.0.0.1:7001"), SocketAddrUse::TcpConnect).allowed);
        assert!(decide(&r, &lo, a("0.0.0.0:0"), SocketAddrUse::TcpBind).allowed);
        assert!(decide(&r, &lo, a("0.0.0.0:8005"), SocketAddrUse::TcpListen).allowed);
        assert!(!decide(&r, &lo, a("0.0.0.0:9000"), SocketAddrUse::TcpBind).allowed);
        assert!(!decide(&r, &lo, a("127.0.0.1:53"), SocketAddrUse::UdpSend).allowed);
        assert!(
            !decide(
                &NetworkRights::none(),
                &lo,
                a("0.0.0.0:0"),
                SocketAddrUse::TcpBind
            )
            .allowed
        );
        let d = decide(&r, &lo, a("10.0.0.1:25"), SocketAddrUse::TcpConnect);
        assert!(d.reason.contains("10.0.0.1:25"), "{}", d.reason);
    }

    #[test]
    fn a_ticket_cannot_grant_the_owners_machine_or_networks() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let everything = NetworkRights {
            connect: RuleSet::Only(vec![
                ConnectRule::parse("tcp:0.0.0.0/0:*").unwrap(),
                ConnectRule::parse("udp:0.0.0.0/0:*").unwrap(),
                ConnectRule::parse("tcp:[::]/0:*").unwrap(),
            ]),
            listen: RuleSet::Any,
            sensors: false,
        };
        let default = HostRules {
            own_addrs: vec!["198.51.100.9".parse().unwrap()],
            own_ports: vec![4001],
            ..HostRules::default()
        };
        for denied in [
            "127.0.0.1:22",
            "169.254.169.254:80",
            "10.0.0.5:445",
            "192.168.1.1:80",
            "172.16.0.1:80",
            "100.64.0.1:80",
            "224.0.0.251:5353",
            "[::1]:22",
            "[fe80::1]:22",
            "[::ffff:127.0.0.1]:22",
            "198.51.100.9:4001",
            "198.51.100.9:8080",
        ] {
            let proto = if denied.contains("5353") {
                SocketAddrUse::UdpSend
            } else {
                SocketAddrUse::TcpConnect
            };
            let v = decide(&everything, &default, a(denied), proto);
            assert!(!v.allowed, "{denied} must be denied");
            assert!(v.reason.contains(denied), "{}", v.reason);
        }
        assert!(
            decide(
                &everything,
                &default,
                a("8.8.8.8:53"),
                SocketAddrUse::UdpSend
            )
            .allowed
        );
        assert!(
            decide(
                &everything,
                &default,
                a("93.184.216.34:443"),
                SocketAddrUse::TcpConnect
            )
            .allowed
        );
        // Inbound connections are not outgoing uses; binding every address is what a listen
        // grant means, binding a local one is the owner's to open.
        let d = |addr: &str, u| decide(&everything, &default, a(addr), u).allowed;
        assert!(d("127.0.0.1:5000", SocketAddrUse::TcpAccept));
        assert!(d("0.0.0.0:5353", SocketAddrUse::UdpBind));
        assert!(!d("127.0.0.1:8125", SocketAddrUse::UdpBind));
        assert!(!d("192.168.1.5:80", SocketAddrUse::TcpBind));
        // The owner opens loopback; the node's own port stays closed unless named exactly.
        let lab = HostRules {
            local_allow: vec![ConnectRule::parse("tcp:127.0.0.0/8:*").unwrap()],
            own_addrs: vec![],
            own_ports: vec![4001],
            sensors: None,
        };
        assert!(
            decide(
                &everything,
                &lab,
                a("127.0.0.1:22"),
                SocketAddrUse::TcpConnect
            )
            .allowed
        );
        let v = decide(
            &everything,
            &lab,
            a("127.0.0.1:4001"),
            SocketAddrUse::TcpConnect,
        );
        assert!(
            !v.allowed && v.reason.contains("port of the node itself"),
            "{}",
            v.reason
        );
        let named = HostRules {
            local_allow: vec![ConnectRule::parse("tcp:127.0.0.1/32:4001").unwrap()],
            ..lab
        };
        assert!(
            decide(
                &everything,
                &named,
                a("127.0.0.1:4001"),
                SocketAddrUse::TcpConnect
            )
            .allowed
        );
    }

    #[test]
    fn only_the_sensors_right_reaches_the_nodes_sensors() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let with = NetworkRights {
            sensors: true,
            ..NetworkRights::none()
        };
        // Everything else granted, and the owner opened all of loopback: still no.
        let without = NetworkRights::INHERIT;
        let without = NetworkRights {
            sensors: false,
            ..without
        };
        let host = HostRules {
            local_allow: vec![ConnectRule::parse("tcp:127.0.0.0/8:*").unwrap()],
            own_addrs: vec![],
            own_ports: vec![9464],
            sensors: Some(a("127.0.0.1:9464")),
        };
        let to = |r: &NetworkRights, at: &str| decide(r, &host, a(at), SocketAddrUse::TcpConnect);
        assert!(to(&with, "127.0.0.1:9464").allowed);
        let v = to(&without, "127.0.0.1:9464");
        assert!(!v.allowed);
        assert!(
            v.flow.is_some(),
            "a refused read of the sensors is a logged, denied flow"
        );
        assert!(v.reason.contains("sensors"), "{}", v.reason);
        // The right opens that endpoint only, not the rest of the machine or network.
        assert!(!to(&with, "127.0.0.1:22").allowed);
        assert!(!to(&with, "8.8.8.8:53").allowed);
        // On all addresses: reached through loopback or an own address, with the right.
        let all = HostRules {
            sensors: Some(a("0.0.0.0:9464")),
            own_addrs: vec!["10.0.0.7".parse().unwrap()],
            ..host.clone()
        };
        let via = |r: &NetworkRights, at: &str| decide(r, &all, a(at), SocketAddrUse::TcpConnect);
        assert!(via(&with, "10.0.0.7:9464").allowed);
        assert!(!via(&without, "127.0.0.1:9464").allowed);
    }
}
