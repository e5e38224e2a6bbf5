//! Addresses: the members this node stays connected to, what it learns of peers'
//! addresses, and the machine's own addresses (which slivers may not reach).

use super::*;

impl Daemon {
    /// Keeps connections to at least [`TARGET_MEMBER_CONNECTIONS`] members. Gossipsub
    /// keeps only mesh connections alive, so without this a node that joined through one
    /// bootstrap node is cut off once that node prunes it from its mesh. Each node prefers
    /// the members whose hash with its own key is lowest: a stable random graph, connected
    /// with high probability, that does not churn from tick to tick.
    pub(super) fn keep_connected(&mut self, swarm: &mut Swarm) {
        let connected: std::collections::BTreeSet<PeerId> =
            swarm.connected_peers().copied().collect();
        let members: Vec<PeerId> = self
            .node
            .core()
            .members()
            .keys()
            .filter_map(peer_of)
            .collect();
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

    /// The machine's addresses (all of them, not only those the node listens on) join the
    /// host rules: a sliver reaching the host's global IPv6 or second IPv4 address would
    /// reach its services. Refreshed now and then; addresses that went away are dropped.
    pub(super) fn learn_machine_addresses(&mut self) {
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
    pub(super) fn learn_own_address(&mut self, address: &Multiaddr) {
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
    pub(super) fn save_listen_addrs(&self, me: PeerId) {
        let text: String = self
            .my_addrs
            .iter()
            .map(|a| format!("{}\n", a.clone().with(libp2p::multiaddr::Protocol::P2p(me))))
            .collect();
        let _ = write_atomic(&self.dir.join(LISTEN_ADDRS_FILE), text.as_bytes());
    }

    /// The application's counters with the transport's byte counts.
    pub(super) fn traffic_now(&self) -> Traffic {
        let (wire_in, wire_out) = self.wire_bytes.as_ref().map_or((0, 0), |w| w.read());
        Traffic {
            wire_in,
            wire_out,
            ..self.traffic
        }
    }

    pub(super) fn learn_addrs(&mut self, swarm: &mut Swarm, peer: PeerId, addrs: Vec<Multiaddr>) {
        if !self.addrs.contains_key(&peer) && self.addrs.len() >= crate::core::MAX_MEMBERS {
            // Full: forget a peer that is not a member (clients, peers that never advertised).
            let stranger = self
                .addrs
                .keys()
                .find(|p| key_of(p).is_none_or(|k| !self.node.core().members().contains_key(&k)))
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
}

/// Raises the soft limit of open descriptors to the hard limit (capped at 1M) and returns
/// the limit in force: every peer connection, socket of a sliver and file is one, and the
/// usual 1,024 would let a few slivers starve the node.
pub(super) fn raise_descriptor_limit() -> u64 {
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
pub(super) fn remote_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        libp2p::multiaddr::Protocol::Ip4(v4) => Some(std::net::IpAddr::V4(v4)),
        libp2p::multiaddr::Protocol::Ip6(v6) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    }
}

/// The machine's own addresses as Linux lists them (`/proc/net/fib_trie` for IPv4 local
/// addresses, `/proc/net/if_inet6` for IPv6), so slivers cannot reach the host through an
/// address the node does not listen on. Empty elsewhere (the listen addresses remain).
pub(super) fn machine_addresses() -> Vec<std::net::IpAddr> {
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
pub(super) const MAX_OWN_ADDRESSES: usize = 256;

/// The IPv4 addresses `fib_trie` marks `/32 host LOCAL` (the machine's own).
pub(super) fn local_ipv4_from_fib_trie(text: &str) -> Vec<std::net::IpAddr> {
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
pub(super) fn ipv6_from_if_inet6(text: &str) -> Vec<std::net::IpAddr> {
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
