//! Request quotas: token buckets per peer and per source address, in a bounded table.
//!
//! Every peer may make [`PEER_RATE`] requests a second (bursts of [`PEER_BURST`]); peers that
//! are not members also share their source address's allowance, [`ADDRESS_RATE`] a second,
//! so an attacker who makes a fresh identity per connection gains nothing (a member's
//! identity is certified and cannot be made up). Connections from this machine itself are
//! the owner's and are not limited by address. No IO, no clock: callers pass `now_ms`.
//!
//! Invariant: the table holds at most [`MAX_TRACKED`] buckets; beyond, the quietest is
//! forgotten first (a forgotten bucket starts full again, which only favours the quiet).

use libp2p::PeerId;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// Requests one peer may make per second, sustained.
pub const PEER_RATE: f64 = 20.0;
/// Requests one peer may make at once after being quiet.
pub const PEER_BURST: f64 = 100.0;
/// Requests all non-member peers of one source address may make per second together.
pub const ADDRESS_RATE: f64 = 100.0;
/// Their burst.
pub const ADDRESS_BURST: f64 = 200.0;
/// Buckets kept.
pub const MAX_TRACKED: usize = 4096;

/// Whose allowance a bucket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKey {
    /// One peer identity.
    Peer(PeerId),
    /// Every non-member identity from one address (IPv6: one /64).
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// The buckets.
#[derive(Default, Debug)]
pub struct Quotas {
    buckets: HashMap<QuotaKey, Bucket>,
}

/// The address a peer's allowance is counted under: IPv4, or the /64 of IPv6.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Quotas {
    /// Whether `peer`, connected from `from` (if known) and a member or not, may make one
    /// more request now; counts it if so.
    pub fn allow(&mut self, peer: PeerId, from: Option<IpAddr>, member: bool, now_ms: u64) -> bool {
        let address = from
            .filter(|ip| !member && !ip.is_loopback())
            .map(|ip| QuotaKey::Address(address_key(ip)));
        // Both must have a token; neither is spent unless both do.
        let peer_ok = self.peek(QuotaKey::Peer(peer), PEER_RATE, PEER_BURST, now_ms);
        let address_ok = address.is_none_or(|a| self.peek(a, ADDRESS_RATE, ADDRESS_BURST, now_ms));
        if !(peer_ok && address_ok) {
            return false;
        }
        self.spend(QuotaKey::Peer(peer));
        if let Some(a) = address {
            self.spend(a);
        }
        true
    }

    /// Refills `key`'s bucket to `now_ms` and says whether it holds a token.
    fn peek(&mut self, key: QuotaKey, rate: f64, burst: f64, now_ms: u64) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED {
            let quietest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at_ms)
                .map(|(k, _)| *k);
            if let Some(q) = quietest {
                self.buckets.remove(&q);
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_ms = b.at_ms.max(now_ms);
        b.tokens >= 1.0
    }

    fn spend(&mut self, key: QuotaKey) {
        if let Some(b) = self.buckets.get_mut(&key) {
            b.tokens -= 1.0;
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        let k = slicefed_trust::SecretKey::from_seed(&[n; 32]);
        k.public().peer_id().parse().unwrap_or(PeerId::random())
    }

    #[test]
    fn a_peer_gets_its_rate_and_fresh_identities_share_their_address() {
        let mut q = Quotas::default();
        let ip: IpAddr = "198.51.100.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let a = peer(1);
        let allowed = (0..150).filter(|_| q.allow(a, Some(ip), false, 0)).count();
        assert_eq!(allowed as f64, PEER_BURST);
        // A second later it has its rate again.
        let later = (0..50)
            .filter(|_| q.allow(a, Some(ip), false, 1000))
            .count();
        assert_eq!(later as f64, PEER_RATE);
        // An attacker making a new identity per request gets its address's allowance, no more.
        let mut q = Quotas::default();
        let got = (0..1000u32)
            .filter(|i| q.allow(peer((i % 200) as u8), Some(ip), false, 0))
            .count();
        assert_eq!(got as f64, ADDRESS_BURST);
        // Members are counted per identity only; the machine's own address is not limited.
        assert!(q.allow(peer(250), Some(ip), true, 0));
        let lo: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(q.allow(peer(251), Some(lo), false, 0));
        // IPv6 addresses of one /64 share an allowance.
        assert_eq!(
            address_key("2001:db8::1".parse().unwrap_or(ip)),
            address_key("2001:db8::ffff".parse().unwrap_or(ip))
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut q = Quotas::default();
        for i in 0..(MAX_TRACKED as u64 + 100) {
            let k = slicefed_trust::SecretKey::from_seed(&{
                let mut s = [3u8; 32];
                s[..8].copy_from_slice(&i.to_le_bytes());
                s
            });
            let p: PeerId = k.public().peer_id().parse().unwrap_or(PeerId::random());
            q.allow(p, None, false, i);
        }
        assert!(q.len() <= MAX_TRACKED);
    }
}
