//! Per-source-address limits on inbound connections: handshakes in flight and established
//! connections, per IP (IPv6 grouped by /64, since one host usually holds a whole /64).
//!
//! Why: the swarm's global limit of pending handshakes let one attacker keep every new
//! inbound connection refused with ~13 bare TCP connects a second. With this behaviour
//! first in the node's behaviour, one address can hold only a few handshakes, so an honest
//! peer from another address still gets in; the transport's inbound timeout (5 s) frees a
//! handshake that never completes.
//!
//! Invariant: every pending slot is released exactly once, whichever way the connection
//! ends (established, refused by any behaviour, failed or timed-out handshake), because
//! slots are keyed by connection id and released idempotently; every map is bounded by the
//! global pending cap and by the swarm's established-connection limits.

use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum IpLimitExceeded {
    /// Too many handshakes in flight from one address.
    #[error("{ip} already has {limit} handshakes in flight, its limit")]
    PendingPerIp {
        /// The address (IPv6 by /64).
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
    /// Too many handshakes in flight overall.
    #[error("{limit} handshakes are in flight, the node's limit")]
    PendingTotal {
        /// The limit.
        limit: usize,
    },
    /// Too many established connections from one address.
    #[error("{ip} already has {limit} connections, its limit")]
    EstablishedPerIp {
        /// The address (IPv6 by /64).
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
}

/// The limits, and what they count.
pub struct IpLimits {
    max_pending_per_ip: usize,
    max_pending_total: usize,
    max_established_per_ip: usize,
    pending: HashMap<ConnectionId, IpAddr>,
    pending_per_ip: HashMap<IpAddr, usize>,
    established: HashMap<ConnectionId, IpAddr>,
    established_per_ip: HashMap<IpAddr, usize>,
}

impl IpLimits {
    /// Limits per address and in total.
    pub fn new(
        max_pending_per_ip: usize,
        max_pending_total: usize,
        max_established_per_ip: usize,
    ) -> Self {
        IpLimits {
            max_pending_per_ip,
            max_pending_total,
            max_established_per_ip,
            pending: HashMap::new(),
            pending_per_ip: HashMap::new(),
            established: HashMap::new(),
            established_per_ip: HashMap::new(),
        }
    }

    /// Handshakes in flight, and established inbound connections (for tests and sensors).
    pub fn counts(&self) -> (usize, usize) {
        (self.pending.len(), self.established.len())
    }

    fn release_pending(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id) {
            decrement(&mut self.pending_per_ip, ip);
        }
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// The address a connection is counted under: IPv4 (also when mapped in IPv6), or the /64 of
/// an IPv6 address.
fn bucket(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(v4) => Some(IpAddr::V4(v4)),
        Protocol::Ip6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }),
        _ => None,
    }
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = bucket(remote) else {
            return Ok(());
        };
        if self.pending.len() >= self.max_pending_total {
            return Err(ConnectionDenied::new(IpLimitExceeded::PendingTotal {
                limit: self.max_pending_total,
            }));
        }
        let n = self.pending_per_ip.entry(ip).or_insert(0);
        if *n >= self.max_pending_per_ip {
            return Err(ConnectionDenied::new(IpLimitExceeded::PendingPerIp {
                ip,
                limit: self.max_pending_per_ip,
            }));
        }
        *n += 1;
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The handshake is over whatever is answered now.
        self.release_pending(connection_id);
        if let Some(ip) = bucket(remote)
            && self.established_per_ip.get(&ip).copied().unwrap_or(0) >= self.max_established_per_ip
        {
            return Err(ConnectionDenied::new(IpLimitExceeded::EstablishedPerIp {
                ip,
                limit: self.max_established_per_ip,
            }));
        }
        // Counted at `ConnectionEstablished`: a later behaviour may still refuse it.
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.release_pending(connection_id)
            }
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            }) => {
                self.release_pending(connection_id);
                if endpoint.is_listener()
                    && let Some(ip) = bucket(endpoint.get_remote_address())
                {
                    self.established.insert(connection_id, ip);
                    *self.established_per_ip.entry(ip).or_insert(0) += 1;
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(ip) = self.established.remove(&connection_id) {
                    decrement(&mut self.established_per_ip, ip);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn one_address_cannot_take_every_handshake_and_slots_come_back() {
        let mut l = IpLimits::new(2, 4, 8);
        let local = addr("/ip4/127.0.0.1/tcp/1");
        let attacker = addr("/ip4/127.0.0.2/tcp/5000");
        let honest = addr("/ip4/127.0.0.1/tcp/6000");
        let (a, b, c) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        assert!(
            l.handle_pending_inbound_connection(a, &local, &attacker)
                .is_ok()
        );
        assert!(
            l.handle_pending_inbound_connection(b, &local, &attacker)
                .is_ok()
        );
        assert!(
            l.handle_pending_inbound_connection(c, &local, &attacker)
                .is_err()
        );
        let h = ConnectionId::new_unchecked(4);
        assert!(
            l.handle_pending_inbound_connection(h, &local, &honest)
                .is_ok()
        );
        // A failed handshake frees its slot, once.
        l.release_pending(a);
        l.release_pending(a);
        assert_eq!(l.counts().0, 2);
        assert!(
            l.handle_pending_inbound_connection(c, &local, &attacker)
                .is_ok()
        );
        // IPv6 addresses of one /64 share a bucket.
        assert_eq!(
            bucket(&addr("/ip6/2001:db8::1/tcp/1")),
            bucket(&addr("/ip6/2001:db8::ffff/tcp/1"))
        );
        assert_eq!(
            bucket(&addr("/ip6/::ffff:10.0.0.1/tcp/1")),
            Some(
                "10.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
            )
        );
    }
}
