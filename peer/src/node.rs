//! The node daemon: wires the sans-IO core to the swarm. Adverts go out every
//! `advert_interval`; incoming adverts are validated by the core before gossipsub forwards
//! them; `members` requests over RPC are answered with the member list.
//!
//! This is the first slice of the daemon (issue #5): membership and `nodes list`. Tickets,
//! the sandbox and the ledger are wired in next.

use crate::core::{Capacity, NodeCore};
use crate::net::{self, BehaviourEvent};
use crate::wire::{Advert, AdvertBody};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use slicefed_trust::{Context, Credential, PublicKey, SecretKey, TrustPolicy, Verifier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The gossip topic of adverts.
pub const ADVERT_TOPIC: &str = "slicefed/adverts/1";
/// The RPC request that asks for the member list.
pub const MEMBERS_REQUEST: &[u8] = b"members";

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node's own certificate does not verify under its owner's policy.
    #[error("this node's certificate does not verify: {0}")]
    BadCertificate(String),
    /// The network failed.
    #[error("network: {0}")]
    Net(String),
}

/// How to run a node.
pub struct NodeConfig {
    /// The node key.
    pub key: SecretKey,
    /// The node credential file bytes (node certificate and chain).
    pub credential: Vec<u8>,
    /// The owner's trust policy.
    pub policy: TrustPolicy,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// How often to advertise.
    pub advert_interval: Duration,
    /// What the owner grants slivers.
    pub capacity: Capacity,
}

/// One row of `nodes list`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MemberRow {
    /// PeerId.
    pub peer_id: String,
    /// Certified name.
    pub name: String,
    /// Certifying authority.
    pub authority: String,
    /// Slivers running.
    pub slivers: u32,
    /// Memory free for slivers.
    pub free_memory: u64,
    /// Milliseconds since last heard from (0 for the node answering).
    pub last_seen_ms_ago: u64,
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

/// Runs the node until `shutdown` resolves. `on_listen` is told each listen address (with
/// `/p2p/PEERID`), so a caller can print it.
pub async fn run(
    config: NodeConfig,
    mut on_listen: impl FnMut(&Multiaddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let me = config.key.public();
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

    let mut swarm = net::swarm(&config.key).map_err(|e| NodeError::Net(e.to_string()))?;
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
    let topic = IdentTopic::new(ADVERT_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| NodeError::Net(e.to_string()))?;
    let seed = config.key.seed();
    let mut core = NodeCore::new(
        SecretKey::from_seed(&seed),
        config.capacity.clone(),
        config.policy.clone(),
    );
    let started = Instant::now();
    let mut tick = tokio::time::interval(config.advert_interval);
    let my_peer = *swarm.local_peer_id();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {
                let now = now_ms();
                core.tick(now);
                let load = core.load();
                let advert = AdvertBody {
                    node: me,
                    credential: config.credential.clone(),
                    slivers: load.slivers,
                    free_memory: load.free_memory,
                    load_x100: 0,
                    uptime_secs: started.elapsed().as_secs(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    tags: vec![],
                    time_ms: now,
                }
                .sign(&config.key)
                .and_then(|a| a.to_bytes());
                if let Ok(bytes) = advert {
                    // No peer subscribed yet is normal at start.
                    let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes);
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    on_listen(&address.with(libp2p::multiaddr::Protocol::P2p(my_peer)));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    // Accept only a valid advert, signed by the node it names, published by
                    // that node, whose certificate chains to an authority we trust.
                    let verdict = match Advert::from_bytes(&message.data) {
                        Ok(a) if message.source.is_some() && message.source == peer_of(&a.body.node) => {
                            match core.advert(now_ms(), a.body.node, &a.body.credential, a.body.load()) {
                                Ok(_) => MessageAcceptance::Accept,
                                Err(_) => MessageAcceptance::Reject,
                            }
                        }
                        _ => MessageAcceptance::Reject,
                    };
                    let _ = swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, verdict);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                })) => {
                    let reply = if request == MEMBERS_REQUEST {
                        let now = now_ms();
                        let load = core.load();
                        let mut rows = vec![MemberRow {
                            peer_id: me.peer_id(),
                            name: my_name.clone(),
                            authority: my_authority.clone(),
                            slivers: load.slivers,
                            free_memory: load.free_memory,
                            last_seen_ms_ago: 0,
                        }];
                        rows.extend(core.members().iter().map(|(k, m)| MemberRow {
                            peer_id: k.peer_id(),
                            name: m.name.to_string(),
                            authority: m.authority.to_string(),
                            slivers: m.load.slivers,
                            free_memory: m.load.free_memory,
                            last_seen_ms_ago: now.saturating_sub(m.last_seen_ms),
                        }));
                        serde_json::to_vec(&rows).unwrap_or_default()
                    } else {
                        b"{\"error\":\"unknown request\"}".to_vec()
                    };
                    let _ = swarm.behaviour_mut().rpc.send_response(channel, reply);
                }
                _ => {}
            }
        }
    }
}

/// Asks the node at `addr` for its member list, from a throwaway client identity.
pub async fn members(addr: Multiaddr, timeout: Duration) -> Result<Vec<MemberRow>, NodeError> {
    let key = SecretKey::generate().map_err(|e| NodeError::Net(e.to_string()))?;
    let mut swarm = net::swarm(&key).map_err(|e| NodeError::Net(e.to_string()))?;
    let target = match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => {
            return Err(NodeError::Net(format!(
                "{addr} does not end in /p2p/PEERID"
            )));
        }
    };
    swarm
        .dial(addr.clone())
        .map_err(|e| NodeError::Net(format!("dial {addr}: {e}")))?;
    let work = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target => {
                    swarm
                        .behaviour_mut()
                        .rpc
                        .send_request(&target, MEMBERS_REQUEST.to_vec());
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(NodeError::Net(format!("{addr}: {error}")));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => {
                    return serde_json::from_slice(&response)
                        .map_err(|e| NodeError::Net(format!("bad answer: {e}")));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(
                    request_response::Event::OutboundFailure { error, .. },
                )) => {
                    return Err(NodeError::Net(error.to_string()));
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| NodeError::Net(format!("{addr} did not answer in {timeout:?}")))?
}
