//! `slicefed attack`: a hostile client for the adversary tests and the flood benchmark,
//! built from the project's own crates and hidden from the help. It attacks only the node it
//! is pointed at, as hard as one process on this machine can.
//!
//! `attack flood` runs, for `--seconds`, at once:
//! - bare TCP connections from `--source-ip` (for example 127.0.0.2 on loopback) that never
//!   start a handshake, `--bare` of them open at a time (each reopened when the node drops
//!   it);
//! - junk requests over libp2p from `--identities` throwaway identities: undecodable bytes,
//!   forged tickets and revocations by an unrelated key, as fast as the node answers.
//!
//! It prints what it did and how the node answered (`--json` for one object).

use crate::util::{print_json, say};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use futures::StreamExt;
use libp2p::Multiaddr;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use serde_json::json;
use slicefed_peer::net::{self, BehaviourEvent};
use slicefed_peer::wire::Request;
use slicefed_trust::SecretKey;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum AttackCmd {
    /// Flood one node with bare connections and junk requests.
    Flood(FloodArgs),
}

#[derive(Args)]
pub struct FloodArgs {
    /// The node (multiaddr with /ip4/…/tcp/…/p2p/PEERID).
    #[arg(long)]
    target: String,
    /// Address the bare connections come from.
    #[arg(long, default_value = "127.0.0.2")]
    source_ip: IpAddr,
    /// How long.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bare connections kept open at once.
    #[arg(long, default_value_t = 256)]
    bare: usize,
    /// Throwaway identities sending junk requests (one connection each).
    #[arg(long, default_value_t = 8)]
    identities: usize,
    /// Requests in flight per identity.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    #[arg(long)]
    json: bool,
}

pub fn attack(cmd: AttackCmd) -> Result<ExitCode> {
    let AttackCmd::Flood(a) = cmd;
    let target: Multiaddr = a
        .target
        .parse()
        .map_err(|e| anyhow!("--target `{}`: {e}", a.target))?;
    let tcp = tcp_address(&target).ok_or_else(|| anyhow!("--target has no /ip4/…/tcp/…"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let stats = Arc::new(Stats::default());
    let until = Instant::now() + Duration::from_secs(a.seconds);
    rt.block_on(async {
        let mut tasks = vec![];
        for _ in 0..a.bare {
            tasks.push(tokio::spawn(bare(tcp, a.source_ip, until, stats.clone())));
        }
        for i in 0..a.identities {
            tasks.push(tokio::spawn(junk(
                target.clone(),
                i,
                a.in_flight,
                until,
                stats.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let s = &stats;
    let report = json!({
        "seconds": a.seconds,
        "bare_connects": s.connects.load(Relaxed),
        "bare_refused": s.connect_failures.load(Relaxed),
        "requests": s.requests.load(Relaxed),
        "answered": s.answered.load(Relaxed),
        "answered_busy": s.busy.load(Relaxed),
        "failed": s.failed.load(Relaxed),
    });
    if a.json {
        print_json(&report)?;
    } else {
        say!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Stats {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    requests: AtomicU64,
    answered: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

fn tcp_address(addr: &Multiaddr) -> Option<SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(v) => ip = Some(IpAddr::V4(v)),
            Protocol::Ip6(v) => ip = Some(IpAddr::V6(v)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// Opens a TCP connection from `source` and says nothing until the node drops it.
async fn bare(target: SocketAddr, source: IpAddr, until: Instant, stats: Arc<Stats>) {
    use tokio::io::AsyncReadExt;
    while Instant::now() < until {
        let socket = match target {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        };
        let Ok(socket) = socket else { return };
        if socket.bind(SocketAddr::new(source, 0)).is_err() {
            stats.connect_failures.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await {
            Ok(Ok(mut stream)) => {
                stats.connects.fetch_add(1, Relaxed);
                let left = until.saturating_duration_since(Instant::now());
                let mut buf = [0u8; 64];
                // Hold it silently until the node gives up on it (or the flood ends).
                let _ = tokio::time::timeout(left, stream.read(&mut buf)).await;
            }
            _ => {
                stats.connect_failures.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The junk one identity sends, in turn.
fn junk_request(n: u64, me: &SecretKey) -> Vec<u8> {
    match n % 3 {
        // Bytes that do not decode.
        0 => n.to_le_bytes().repeat(16),
        // A ticket signed by a key nobody trusts, with a module it does not name.
        1 => {
            let body = slicefed_trust::fixtures::ticket_body("evil.flood", (n % 251) as u8);
            let t = slicefed_trust::objects::sign(me, &body)
                .map(|s| s.bytes)
                .unwrap_or_default();
            let credential = slicefed_trust::Credential::new(t, [])
                .to_bytes()
                .unwrap_or_default();
            Request::Submit {
                credential,
                module: vec![0; 64],
                args: vec![],
                env: vec![],
            }
            .to_bytes()
            .unwrap_or_default()
        }
        // A revocation by a key that may revoke nothing.
        _ => {
            let target = slicefed_trust::Credential::new(n.to_le_bytes().to_vec(), []);
            let revocation = slicefed_trust::fixtures::revocation_file(me, &target, "junk", 0)
                .unwrap_or_default();
            Request::Revoke { revocation }
                .to_bytes()
                .unwrap_or_default()
        }
    }
}

/// One throwaway identity sending junk requests, `in_flight` at a time.
async fn junk(target: Multiaddr, i: usize, in_flight: usize, until: Instant, stats: Arc<Stats>) {
    let Ok(key) = SecretKey::generate() else {
        return;
    };
    let Ok((mut swarm, _)) = net::swarm(&key) else {
        return;
    };
    let Ok(peer) = slicefed_peer::client::peer_in(&target) else {
        return;
    };
    let mut open = 0usize;
    let mut n = i as u64 * 1_000_000;
    loop {
        while open < in_flight && Instant::now() < until {
            n += 1;
            swarm.behaviour_mut().rpc.send_request_with_addresses(
                &peer,
                junk_request(n, &key),
                vec![target.clone()],
            );
            stats.requests.fetch_add(1, Relaxed);
            open += 1;
        }
        if Instant::now() >= until && open == 0 {
            return;
        }
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        let ev = match tokio::time::timeout(left, swarm.select_next_some()).await {
            Ok(ev) => ev,
            Err(_) => return,
        };
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                open = open.saturating_sub(1);
                stats.answered.fetch_add(1, Relaxed);
                if String::from_utf8_lossy(&response).contains("busy") {
                    stats.busy.fetch_add(1, Relaxed);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(
                request_response::Event::OutboundFailure { .. },
            )) => {
                open = open.saturating_sub(1);
                stats.failed.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}
