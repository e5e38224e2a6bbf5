//! The libp2p driver's swarm: TCP + Noise + Yamux, identify, ping, gossipsub in manual
//! validation mode, and request-response with a bounded byte codec.
//!
//! Invariants: every message is size-bounded before it is read into memory (the codec reads
//! a length prefix and refuses anything over the limit); gossip is signed by its sender's
//! libp2p key (the node key) and is forwarded only after the application validated it.
//! Decoding and deciding what a message means is the core's job, not this module's.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::Transport as _;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{
    StreamProtocol, Swarm, connection_limits, gossipsub, identify, noise, ping, tcp, yamux,
};
use slicefed_trust::SecretKey;
use std::io;
use std::time::Duration;

/// The request-response protocol. Version 2: SWIM packets in the compact wire form
/// (`swim::codec::to_wire`); a node of version 1 would refuse every one, so the two do not
/// speak at all rather than half.
pub const RPC_PROTOCOL: &str = "/slicefed/rpc/2";
/// Largest request: a ticket credential with its module.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest response: receipts, status, log pages, ledger ranges.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Largest gossip message: adverts, checkpoints, revocations, equivocation proofs.
pub const MAX_GOSSIP_BYTES: usize = 64 << 10;
/// Incoming connections still in their handshake.
pub const MAX_PENDING_INCOMING: u32 = 128;
/// Established incoming connections (members dialling us, and clients).
pub const MAX_ESTABLISHED_INCOMING: u32 = 1024;
/// Established outgoing connections (to members we witness, and bootstrap).
pub const MAX_ESTABLISHED_OUTGOING: u32 = 1024;
/// Connections to one peer (two when both sides dialled at once, with room for a redial).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Concurrent request streams per connection.
pub const MAX_CONCURRENT_STREAMS: usize = 64;
/// Handshakes in flight from one address (IPv6: one /64).
pub const MAX_PENDING_PER_IP: usize = 8;
/// Established incoming connections from one address (a host may run several nodes and
/// clients; loopback federations run dozens).
pub const MAX_ESTABLISHED_PER_IP: usize = 64;
/// An inbound connection that has not finished TCP + Noise + Yamux by then is dropped.
pub const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for connections this node dials.
pub const OUTBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the network: {0}")]
pub struct NetError(pub String);

/// Requests and responses as length-prefixed bytes, bounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoundedBytes;

async fn read_bounded<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes, over the {max}-byte limit"),
        ));
    }
    // Grown as bytes arrive: a peer that announces 16 MiB and sends nothing holds nothing.
    let mut buf = Vec::new();
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("message of {} bytes, announced as {len}", buf.len()),
        ));
    }
    Ok(buf)
}

async fn write_bounded<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes, over the {max}-byte limit",
                bytes.len()
            ),
        ));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for BoundedBytes {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_bounded(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_bounded(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_bounded(io, &req, MAX_REQUEST_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_bounded(io, &res, MAX_RESPONSE_BYTES).await
    }
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent`, whose variants carry no doc comments.
    #![allow(missing_docs)]
    use super::BoundedBytes;
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{connection_limits, gossipsub, identify, ping, request_response};

    /// Everything a slicefed node speaks.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Per-address limits, first: one address cannot hold every handshake slot.
        pub ip_limits: crate::ip_limits::IpLimits,
        /// Bounds on connections, so peers and clients cannot exhaust the node.
        pub limits: connection_limits::Behaviour,
        /// Who is at the other end, and their listen addresses.
        pub identify: identify::Behaviour,
        /// Liveness.
        pub ping: ping::Behaviour,
        /// Adverts, checkpoints, revocations, equivocation proofs.
        pub gossipsub: gossipsub::Behaviour,
        /// Tickets and modules, status, logs, stop, ledger sync.
        pub rpc: request_response::Behaviour<BoundedBytes>,
    }
}

/// Bytes on every connection of a swarm, counted by libp2p's bandwidth metrics on each
/// muxed substream: every protocol's payload (gossipsub, RPC, identify, ping), but not the
/// Noise and Yamux framing below them (a few percent more on the wire).
pub struct WireBytes(std::sync::Arc<prometheus_client::registry::Registry>);

impl WireBytes {
    /// The registry the counters live in (the node's sensors serve it too).
    pub fn registry(&self) -> std::sync::Arc<prometheus_client::registry::Registry> {
        self.0.clone()
    }

    /// (in, out) since the swarm was built.
    pub fn read(&self) -> (u64, u64) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.0).is_err() {
            return (0, 0);
        }
        parse_bandwidth(&text)
    }
}

/// Sums `libp2p_bandwidth_bytes_total{...,direction="Inbound|Outbound"} N` lines.
fn parse_bandwidth(text: &str) -> (u64, u64) {
    let (mut inbound, mut outbound) = (0u64, 0u64);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("libp2p_bandwidth_bytes_total{") else {
            continue;
        };
        let Some(n) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let n = n as u64;
        if rest.contains("direction=\"Inbound\"") {
            inbound = inbound.saturating_add(n);
        } else if rest.contains("direction=\"Outbound\"") {
            outbound = outbound.saturating_add(n);
        }
    }
    (inbound, outbound)
}

/// Gossipsub peer scoring: a peer whose message the node rejected (a forged or unentitled
/// revocation, an advert that does not verify, gossip from a non-member) falls below the
/// graylist threshold at once, and everything it sends over gossip is then dropped without
/// being read, for minutes (the penalty decays over an hour). Honest peers earn a small
/// positive score for time in the mesh and first deliveries. Mesh-delivery penalties stay
/// off: they would punish honest peers on quiet topics (revocations are rare).
pub fn gossip_scoring() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.1,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_cap: 10.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // -200 × count²: one invalid message outweighs everything a peer can earn (+60).
        invalid_message_deliveries_weight: -200.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            3600,
        )),
        ..Default::default()
    };
    let params = gossipsub::PeerScoreParams {
        topics: [
            crate::node::ADVERT_TOPIC,
            crate::node::REVOCATION_TOPIC,
            crate::node::EQUIVOCATION_TOPIC,
        ]
        .iter()
        .map(|t| (gossipsub::IdentTopic::new(*t).hash(), topic.clone()))
        .collect(),
        topic_score_cap: 30.0,
        app_specific_weight: 1.0,
        // Several honest nodes share an address in tests and behind NAT.
        ip_colocation_factor_weight: 0.0,
        // Reconnecting does not reset a bad score.
        retain_score: Duration::from_secs(3600),
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

/// Builds a node's swarm from its key (the node key is its libp2p identity), and the
/// counters of the bytes it moves.
pub fn swarm(key: &SecretKey) -> Result<(Swarm<Behaviour>, WireBytes), NetError> {
    let mut registry = prometheus_client::registry::Registry::default();
    let err = |e: &dyn std::fmt::Display| NetError(e.to_string());
    let mut seed = key.seed();
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(seed.as_mut()).map_err(|e| err(&e))?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        // `with_tcp` sets no handshake timeout: a peer that connects and says nothing
        // would hold a pending slot until the OS gives up.
        .with_other_transport(|k| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(k)?)
                    .multiplex(yamux::Config::default())
                    .inbound_timeout(INBOUND_HANDSHAKE_TIMEOUT)
                    .outbound_timeout(OUTBOUND_HANDSHAKE_TIMEOUT),
            )
        })
        .map_err(|e| err(&e))?
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|k| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_GOSSIP_BYTES)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(|e| NetError(e.to_string()))?;
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(k.clone()),
                gossip_config,
            )
            .map_err(|e| NetError(e.to_string()))?;
            let (params, thresholds) = gossip_scoring();
            gossipsub
                .with_peer_score(params, thresholds)
                .map_err(NetError)?;
            Ok(Behaviour {
                ip_limits: crate::ip_limits::IpLimits::new(
                    MAX_PENDING_PER_IP,
                    MAX_PENDING_INCOMING as usize,
                    MAX_ESTABLISHED_PER_IP,
                ),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                        .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                        .with_max_established_outgoing(Some(MAX_ESTABLISHED_OUTGOING))
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/slicefed/1".into(),
                    k.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                gossipsub,
                rpc: request_response::Behaviour::new(
                    [(StreamProtocol::new(RPC_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30))
                        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
                ),
            })
        })
        .map_err(|e| err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok((swarm, WireBytes(std::sync::Arc::new(registry))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_lines_are_summed_by_direction() {
        let text = "# TYPE libp2p_bandwidth_bytes counter\n\
            libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Inbound\"} 100\n\
            libp2p_bandwidth_bytes_total{protocols=\"/ip6/tcp\",direction=\"Inbound\"} 20\n\
            libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Outbound\"} 7\n\
            other_total 99\n# EOF\n";
        assert_eq!(parse_bandwidth(text), (120, 7));
    }
}
