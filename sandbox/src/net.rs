//! Network policy of a sliver: every socket address a guest uses through `wasi:sockets` is
//! decided by the slice's rules, and every decision about a flow (allowed or denied) becomes
//! a flow record for the node's ledger.

use slicefed_ledger::entry::{Attribution, Decision, Direction, FlowRecord};
use slicefed_trust::caps::{NetworkRights, Proto};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Where flow records go (the node connects this to its ledger).
pub trait FlowSink: Send + Sync {
    /// Records one flow decision.
    fn record(&self, flow: FlowRecord);
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

/// Decides one use of an address under the sliver's network rights.
pub fn decide(rights: &NetworkRights, addr: SocketAddr, use_: SocketAddrUse) -> Verdict {
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
    Verdict {
        allowed,
        flow,
        reason: if allowed {
            String::new()
        } else {
            format!("the slice may not {what} {addr}")
        },
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

/// Most flow records waiting for the ledger; a sliver that opens flows faster than the
/// ledger can sync them is slowed down (the check blocks), never allowed to drop evidence.
pub const LEDGER_QUEUE: usize = 16_384;

/// A sink that appends flow records to a node's ledger, batched by a background thread so a
/// sliver's socket call never waits for more than a queue slot.
pub struct LedgerFlows {
    tx: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<FlowRecord>>>,
    worker: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    failed: Arc<std::sync::atomic::AtomicU64>,
}

impl LedgerFlows {
    /// Starts the appending thread.
    pub fn new(ledger: Arc<slicefed_ledger::Ledger>) -> LedgerFlows {
        let (tx, rx) = std::sync::mpsc::sync_channel::<FlowRecord>(LEDGER_QUEUE);
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let f = failed.clone();
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
                    let n = batch.len() as u64;
                    let entries = batch
                        .into_iter()
                        .map(|r| (r.first_ms, slicefed_ledger::EntryBody::Flow(r)))
                        .collect();
                    if ledger.append_all(entries).is_err() {
                        f.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .ok();
        LedgerFlows {
            tx: std::sync::Mutex::new(Some(tx)),
            worker: std::sync::Mutex::new(worker),
            failed,
        }
    }

    /// Waits until every record sent so far is durable, and stops the thread.
    pub fn close(&self) -> u64 {
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
}

impl Drop for LedgerFlows {
    fn drop(&mut self) {
        self.close();
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
        }
    }

    #[test]
    fn decides_by_rule() {
        let r = rights();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(decide(&r, a("127.0.0.1:7000"), SocketAddrUse::TcpConnect).allowed);
        assert!(!decide(&r, a("127.0.0.1:7001"), SocketAddrUse::TcpConnect).allowed);
        assert!(decide(&r, a("0.0.0.0:0"), SocketAddrUse::TcpBind).allowed);
        assert!(decide(&r, a("0.0.0.0:8005"), SocketAddrUse::TcpListen).allowed);
        assert!(!decide(&r, a("0.0.0.0:9000"), SocketAddrUse::TcpBind).allowed);
        assert!(!decide(&r, a("127.0.0.1:53"), SocketAddrUse::UdpSend).allowed);
        assert!(
            !decide(
                &NetworkRights::none(),
                a("0.0.0.0:0"),
                SocketAddrUse::TcpBind
            )
            .allowed
        );
        let d = decide(&r, a("10.0.0.1:25"), SocketAddrUse::TcpConnect);
        assert!(d.reason.contains("10.0.0.1:25"), "{}", d.reason);
    }
}
