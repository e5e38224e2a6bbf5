//! The capability model: rights, resource caps, network rules, node sets and validity
//! windows, and the one relation that matters for each: `narrows(parent)`.
//!
//! Invariant: every `narrows` is a partial order that is reflexive and transitive, and a
//! grant that narrows its parent can never let its holder do anything the parent could not.
//! Absent caps (`None`) mean "inherited from the parent", never "unlimited".

use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Bounds on decoded lists, so a signed object can never describe unbounded work.
pub const MAX_RULES: usize = 64;
/// At most this many nodes named in one grant or ticket.
pub const MAX_NODES: usize = 1024;

/// A grant that is wider than its parent along one dimension.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} widens its issuer's grant: {detail}")]
pub struct Widening {
    /// The dimension: `rights`, `memory`, `nodes`, …
    pub what: &'static str,
    /// The values involved.
    pub detail: String,
}

fn widen(what: &'static str, detail: impl Into<String>) -> Widening {
    Widening {
        what,
        detail: detail.into(),
    }
}

/// Rights a certificate grants, as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rights(u8);

// A bit set in the binary codec, a readable list (`"create,delegate"`) in JSON and TOML.
impl Serialize for Rights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            s.serialize_u8(self.0)
        }
    }
}
impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            if s == "none" {
                return Ok(Rights::NONE);
            }
            Rights::parse(&s).map_err(D::Error::custom)
        } else {
            Rights::try_from(u8::deserialize(d)?).map_err(D::Error::custom)
        }
    }
}

impl Rights {
    /// Create slivers of the granted slices (issue tickets).
    pub const CREATE: Rights = Rights(1);
    /// Delegate rights to another key (a slice-creation service).
    pub const DELEGATE: Rights = Rights(2);
    /// Read ledgers and audit.
    pub const AUDIT: Rights = Rights(4);
    /// Certify users, nodes and sub-authorities (authorities only).
    pub const CERTIFY: Rights = Rights(8);
    /// Every right.
    pub const ALL: Rights = Rights(15);
    /// No right.
    pub const NONE: Rights = Rights(0);

    const NAMES: [(Rights, &'static str); 4] = [
        (Rights::CREATE, "create"),
        (Rights::DELEGATE, "delegate"),
        (Rights::AUDIT, "audit"),
        (Rights::CERTIFY, "certify"),
    ];

    /// True if every right in `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union.
    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
    /// The rights in `self` but not in `other`.
    pub fn without(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }
    /// Parses a comma-separated list (`create,delegate`).
    pub fn parse(text: &str) -> Result<Rights, String> {
        let mut r = Rights::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (bit, _) = Self::NAMES
                .iter()
                .find(|(_, n)| *n == word)
                .ok_or_else(|| {
                    format!("unknown right `{word}` (known: create, delegate, audit, certify)")
                })?;
            r = r.union(*bit);
        }
        Ok(r)
    }
    /// Rights to the parent: every right must be held by the parent.
    pub fn narrows(self, parent: Rights) -> Result<(), Widening> {
        if parent.contains(self) {
            Ok(())
        } else {
            Err(widen(
                "rights",
                format!(
                    "asks for {} but the issuer holds only {}",
                    self.without(parent),
                    parent
                ),
            ))
        }
    }
}

impl TryFrom<u8> for Rights {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        if v & !Rights::ALL.0 != 0 {
            Err(format!("unknown rights bits {v:#x}"))
        } else {
            Ok(Rights(v))
        }
    }
}
impl From<Rights> for u8 {
    fn from(r: Rights) -> u8 {
        r.0
    }
}
impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(b, _)| self.contains(*b))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}
impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rights({self})")
    }
}

/// Resource caps; `None` inherits the parent's cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCaps {
    /// Bytes of linear memory and tables summed over a sliver.
    pub memory: Option<u64>,
    /// CPU weight relative to other slivers.
    pub cpu_share: Option<u32>,
    /// Slivers at once under this grant (on one node).
    pub max_slivers: Option<u32>,
    /// Egress bytes per day per sliver.
    pub egress_per_day: Option<u64>,
}

fn cap_narrows<T: PartialOrd + fmt::Display + Copy>(
    what: &'static str,
    child: Option<T>,
    parent: Option<T>,
) -> Result<(), Widening> {
    match (child, parent) {
        (Some(c), Some(p)) if c > p => Err(widen(what, format!("{c} > issuer's {p}"))),
        _ => Ok(()),
    }
}

fn cap_meet<T: Ord + Copy>(child: Option<T>, parent: Option<T>) -> Option<T> {
    match (child, parent) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

impl ResourceCaps {
    /// Every stated cap is at most the parent's.
    pub fn narrows(&self, parent: &ResourceCaps) -> Result<(), Widening> {
        cap_narrows("memory", self.memory, parent.memory)?;
        cap_narrows("cpu share", self.cpu_share, parent.cpu_share)?;
        cap_narrows("max slivers", self.max_slivers, parent.max_slivers)?;
        cap_narrows("egress per day", self.egress_per_day, parent.egress_per_day)
    }
    /// The caps in force when `self` is issued under `parent`.
    pub fn meet(&self, parent: &ResourceCaps) -> ResourceCaps {
        ResourceCaps {
            memory: cap_meet(self.memory, parent.memory),
            cpu_share: cap_meet(self.cpu_share, parent.cpu_share),
            max_slivers: cap_meet(self.max_slivers, parent.max_slivers),
            egress_per_day: cap_meet(self.egress_per_day, parent.egress_per_day),
        }
    }
}

/// Transport protocol of a network rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}
impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}
impl Proto {
    fn parse(s: &str) -> Result<Proto, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("unknown protocol `{s}` (tcp or udp)")),
        }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}
impl PortRange {
    /// Every port.
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };
    /// True if `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
    fn is_within(&self, outer: &PortRange) -> bool {
        outer.first <= self.first && self.last <= outer.last
    }
    fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| p.parse::<u16>().map_err(|_| format!("`{p}` is not a port"));
        let r = if s == "*" {
            PortRange::ALL
        } else if let Some((a, b)) = s.split_once('-') {
            PortRange {
                first: port(a)?,
                last: port(b)?,
            }
        } else {
            let p = port(s)?;
            PortRange { first: p, last: p }
        };
        r.check().map(|_| r)
    }
    fn check(&self) -> Result<(), String> {
        if self.first > self.last {
            Err(format!("port range {}-{} is empty", self.first, self.last))
        } else {
            Ok(())
        }
    }
}
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ALL {
            f.write_str("*")
        } else if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An address prefix (CIDR). Host bits must be zero, so each prefix has one encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpNet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

fn addr_bits(a: &IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(*v)), 32),
        IpAddr::V6(v) => (u128::from(*v), 128),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !(all >> prefix)
    }
}

impl IpNet {
    /// True if `ip` lies in this prefix.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (net, width) = addr_bits(&self.addr);
        let (a, w) = addr_bits(ip);
        w == width && (a & mask(width, self.prefix)) == net
    }
    fn is_within(&self, outer: &IpNet) -> bool {
        outer.prefix <= self.prefix && outer.contains(&self.addr)
    }
    fn check(&self) -> Result<(), String> {
        let (bits, width) = addr_bits(&self.addr);
        if self.prefix > width {
            return Err(format!(
                "prefix /{} is longer than {width} bits",
                self.prefix
            ));
        }
        if bits & !mask(width, self.prefix) != 0 {
            return Err(format!("{}/{} has host bits set", self.addr, self.prefix));
        }
        Ok(())
    }
    fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let width = addr_bits(&addr).1;
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("`{p}` is not a prefix length"))?,
            None => width,
        };
        let net = IpNet { addr, prefix };
        net.check().map(|_| net)
    }
}
impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}", self.prefix),
            IpAddr::V6(a) => write!(f, "[{a}]/{}", self.prefix),
        }
    }
}

/// Why an address belongs to the node's own machine or a network that is not the public
/// Internet, if it does: slivers may not reach these unless the node owner's policy says
/// so explicitly (`[local] allow`), whatever their tickets grant. IPv4-mapped and NAT64
/// IPv6 addresses are judged by the IPv4 address they carry.
pub fn local_scope(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v) => v4_scope(v),
        IpAddr::V6(v) => {
            let seg = v.segments();
            if let Some(v4) = v.to_ipv4_mapped() {
                return v4_scope(&v4);
            }
            // 64:ff9b::/96, the well-known NAT64 prefix.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v.octets();
                return v4_scope(&std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            if v.is_unspecified() {
                Some("unspecified")
            } else if v.is_loopback() {
                Some("loopback")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn v4_scope(v: &std::net::Ipv4Addr) -> Option<&'static str> {
    let o = v.octets();
    if o[0] == 0 {
        Some("unspecified (this network)")
    } else if v.is_loopback() {
        Some("loopback")
    } else if v.is_private() {
        Some("private")
    } else if v.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (CGNAT)")
    } else if v.is_multicast() {
        Some("multicast")
    } else if v.is_broadcast() {
        Some("broadcast")
    } else if o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else {
        None
    }
}

/// Outgoing connections allowed: protocol, destination prefix, destination ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectRule {
    /// Protocol.
    pub proto: Proto,
    /// Destination prefix.
    pub net: IpNet,
    /// Destination ports.
    pub ports: PortRange,
}
impl ConnectRule {
    /// Parses `tcp:10.0.0.0/8:80-443`, `udp:[::1]/128:53`, `tcp:0.0.0.0/0:*`.
    pub fn parse(s: &str) -> Result<ConnectRule, String> {
        let (proto, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not PROTO:ADDR/PREFIX:PORTS"))?;
        let (net, ports) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` has no ports"))?;
        Ok(ConnectRule {
            proto: Proto::parse(proto)?,
            net: IpNet::parse(net)?,
            ports: PortRange::parse(ports)?,
        })
    }
    /// True if this rule allows `proto` to `ip:port`.
    pub fn allows(&self, proto: Proto, ip: &IpAddr, port: u16) -> bool {
        self.proto == proto && self.net.contains(ip) && self.ports.contains(port)
    }
    fn is_within(&self, o: &ConnectRule) -> bool {
        self.proto == o.proto && self.net.is_within(&o.net) && self.ports.is_within(&o.ports)
    }
    fn check(&self) -> Result<(), String> {
        self.net.check()?;
        self.ports.check()
    }
}
impl fmt::Display for ConnectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.proto, self.net, self.ports)
    }
}

/// Ports a sliver may listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ListenRule {
    /// Protocol.
    pub proto: Proto,
    /// Local ports.
    pub ports: PortRange,
}
impl ListenRule {
    /// Parses `tcp:8080` or `udp:5000-5010`.
    pub fn parse(s: &str) -> Result<ListenRule, String> {
        let (proto, ports) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not PROTO:PORTS"))?;
        Ok(ListenRule {
            proto: Proto::parse(proto)?,
            ports: PortRange::parse(ports)?,
        })
    }
    /// True if this rule allows listening with `proto` on `port`.
    pub fn allows(&self, proto: Proto, port: u16) -> bool {
        self.proto == proto && self.ports.contains(port)
    }
    fn is_within(&self, o: &ListenRule) -> bool {
        self.proto == o.proto && self.ports.is_within(&o.ports)
    }
    fn check(&self) -> Result<(), String> {
        self.ports.check()
    }
}
impl fmt::Display for ListenRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.ports)
    }
}

/// Either no restriction from this grant, or exactly the listed rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleSet<R> {
    /// This grant does not restrict (the parent's rules still apply).
    Any,
    /// Only these rules.
    Only(Vec<R>),
}

/// A network rule that can be compared with others.
pub trait Rule: Copy + fmt::Display {
    /// True if every flow `self` allows, `outer` allows.
    fn within(&self, outer: &Self) -> bool;
    /// Validates field values (prefix host bits, port order).
    fn validate(&self) -> Result<(), String>;
}
impl Rule for ConnectRule {
    fn within(&self, outer: &Self) -> bool {
        self.is_within(outer)
    }
    fn validate(&self) -> Result<(), String> {
        self.check()
    }
}
impl Rule for ListenRule {
    fn within(&self, outer: &Self) -> bool {
        self.is_within(outer)
    }
    fn validate(&self) -> Result<(), String> {
        self.check()
    }
}

impl<R: Rule> RuleSet<R> {
    fn narrows(&self, parent: &RuleSet<R>, what: &'static str) -> Result<(), Widening> {
        match (self, parent) {
            // Absent rules inherit the issuer's (see `meet`): never wider. A node owner's
            // per-authority network cap is such an issuer for certificates that say nothing
            // about the network.
            (_, RuleSet::Any) | (RuleSet::Any, RuleSet::Only(_)) => Ok(()),
            (RuleSet::Only(mine), RuleSet::Only(theirs)) => {
                match mine.iter().find(|r| !theirs.iter().any(|o| r.within(o))) {
                    Some(r) => Err(widen(
                        what,
                        format!("{r} is not inside any of the issuer's rules"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }
    /// The narrower of the two: the child's unless it inherits.
    fn meet(&self, parent: &RuleSet<R>) -> RuleSet<R> {
        match self {
            RuleSet::Any => parent.clone(),
            only => only.clone(),
        }
    }
    fn validate(&self, what: &str) -> Result<(), String> {
        if let RuleSet::Only(rules) = self {
            if rules.len() > MAX_RULES {
                return Err(format!("{} {what} rules, at most {MAX_RULES}", rules.len()));
            }
            for r in rules {
                r.validate()?;
            }
        }
        Ok(())
    }
    /// The rules in force, or `None` for unrestricted.
    pub fn rules(&self) -> Option<&[R]> {
        match self {
            RuleSet::Any => None,
            RuleSet::Only(r) => Some(r),
        }
    }
}

/// Network rights of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRights {
    /// Outgoing connections.
    pub connect: RuleSet<ConnectRule>,
    /// Listening ports.
    pub listen: RuleSet<ListenRule>,
    /// In a ticket: its slivers ask to read their own node's sensors (connect to the
    /// node's `/metrics` endpoint). In a grant or an owner's policy: `false` takes that
    /// away from everything under it. Only narrowing: in force only if the ticket asks and
    /// every link above (and the node owner) allows it ([`NetworkRights::meet`] is an AND;
    /// a node refuses a ticket that asks for sensors its chain does not allow).
    pub sensors: bool,
}
impl NetworkRights {
    /// No restriction from this grant (sensors allowed to those under it who ask).
    pub const INHERIT: NetworkRights = NetworkRights {
        connect: RuleSet::Any,
        listen: RuleSet::Any,
        sensors: true,
    };
    /// No network at all.
    pub fn none() -> NetworkRights {
        NetworkRights {
            connect: RuleSet::Only(vec![]),
            listen: RuleSet::Only(vec![]),
            sensors: false,
        }
    }
    /// Each set narrows the parent's (sensors are met, not compared: `true` in a grant
    /// means "not taken away", which is never a widening).
    pub fn narrows(&self, parent: &NetworkRights) -> Result<(), Widening> {
        self.connect.narrows(&parent.connect, "connect")?;
        self.listen.narrows(&parent.listen, "listen")
    }
    /// The rights in force under `parent`.
    pub fn meet(&self, parent: &NetworkRights) -> NetworkRights {
        NetworkRights {
            connect: self.connect.meet(&parent.connect),
            listen: self.listen.meet(&parent.listen),
            sensors: self.sensors && parent.sensors,
        }
    }
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.connect.validate("connect")?;
        self.listen.validate("listen")
    }
}

/// The nodes a grant or ticket is good for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSet {
    /// Any node that trusts the chain's root (stated explicitly, never by omission).
    AnyTrusting,
    /// Exactly these nodes, sorted and without duplicates.
    Only(Vec<PublicKey>),
}
impl NodeSet {
    /// Builds a sorted, deduplicated set.
    pub fn only(mut nodes: Vec<PublicKey>) -> NodeSet {
        nodes.sort();
        nodes.dedup();
        NodeSet::Only(nodes)
    }
    /// True if `node` is in the set.
    pub fn contains(&self, node: &PublicKey) -> bool {
        match self {
            NodeSet::AnyTrusting => true,
            NodeSet::Only(n) => n.binary_search(node).is_ok(),
        }
    }
    /// Every node in `self` is in `parent`.
    pub fn narrows(&self, parent: &NodeSet) -> Result<(), Widening> {
        match (self, parent) {
            (_, NodeSet::AnyTrusting) => Ok(()),
            (NodeSet::AnyTrusting, NodeSet::Only(_)) => Err(widen(
                "nodes",
                "asks for any node while the issuer lists nodes",
            )),
            (NodeSet::Only(mine), p) => match mine.iter().find(|n| !p.contains(n)) {
                Some(n) => Err(widen(
                    "nodes",
                    format!("node {} is not in the issuer's set", n.peer_id()),
                )),
                None => Ok(()),
            },
        }
    }
    /// The narrower set.
    pub fn meet(&self, parent: &NodeSet) -> NodeSet {
        match self {
            NodeSet::AnyTrusting => parent.clone(),
            only => only.clone(),
        }
    }
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let NodeSet::Only(n) = self {
            if n.len() > MAX_NODES {
                return Err(format!("{} nodes, at most {MAX_NODES}", n.len()));
            }
            if !n.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
                return Err("node list is not sorted and unique".into());
            }
        }
        Ok(())
    }
}

/// A validity window in unix seconds, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// Not valid before.
    pub not_before: u64,
    /// Not valid after.
    pub not_after: u64,
}
impl Validity {
    /// Forever (used for directly trusted roots).
    pub const ALWAYS: Validity = Validity {
        not_before: 0,
        not_after: u64::MAX,
    };
    /// Starting at `now` for `secs` seconds.
    pub fn starting(now: u64, secs: u64) -> Validity {
        Validity {
            not_before: now,
            not_after: now.saturating_add(secs),
        }
    }
    /// Lies inside the parent's window.
    pub fn narrows(&self, parent: &Validity) -> Result<(), Widening> {
        if self.not_before < parent.not_before || self.not_after > parent.not_after {
            Err(widen(
                "validity",
                format!(
                    "[{}, {}] is not inside the issuer's [{}, {}]",
                    self.not_before, self.not_after, parent.not_before, parent.not_after
                ),
            ))
        } else {
            Ok(())
        }
    }
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.not_before > self.not_after {
            Err("validity ends before it starts".into())
        } else {
            Ok(())
        }
    }
}

/// What a certificate lets its subject do, apart from names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Rights.
    pub rights: Rights,
    /// Resource caps.
    pub caps: ResourceCaps,
    /// Network rights.
    pub network: NetworkRights,
    /// Nodes.
    pub nodes: NodeSet,
    /// Validity window.
    pub validity: Validity,
}
impl Grant {
    /// Narrows on every dimension.
    pub fn narrows(&self, parent: &Grant) -> Result<(), Widening> {
        self.rights.narrows(parent.rights)?;
        self.caps.narrows(&parent.caps)?;
        self.network.narrows(&parent.network)?;
        self.nodes.narrows(&parent.nodes)?;
        self.validity.narrows(&parent.validity)
    }
    /// What is in force when `self` is issued under `parent` (which it must narrow).
    pub fn meet(&self, parent: &Grant) -> Grant {
        Grant {
            rights: self.rights,
            caps: self.caps.meet(&parent.caps),
            network: self.network.meet(&parent.network),
            nodes: self.nodes.meet(&parent.nodes),
            validity: self.validity,
        }
    }
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.network.validate()?;
        self.nodes.validate()?;
        self.validity.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_rules_parse_and_nest() {
        let wide = ConnectRule::parse("tcp:10.0.0.0/8:*").unwrap();
        let narrow = ConnectRule::parse("tcp:10.1.0.0/16:80-443").unwrap();
        assert!(narrow.within(&wide));
        assert!(!wide.within(&narrow));
        assert!(
            ConnectRule::parse("tcp:10.0.0.1/8:80").is_err(),
            "host bits"
        );
        assert!(ConnectRule::parse("tcp:10.0.0.0/33:80").is_err());
        assert!(ConnectRule::parse("tcp:10.0.0.0/8:90-80").is_err());
        let v6 = ConnectRule::parse("udp:[2001:db8::]/32:53").unwrap();
        assert_eq!(v6.to_string(), "udp:[2001:db8::]/32:53");
        assert!(v6.allows(Proto::Udp, &"2001:db8::1".parse().unwrap(), 53));
        assert!(!v6.allows(Proto::Tcp, &"2001:db8::1".parse().unwrap(), 53));
        let host = ConnectRule::parse("tcp:127.0.0.1:7000").unwrap();
        assert_eq!(host.net.prefix, 32);
        let all = ConnectRule::parse("tcp:0.0.0.0/0:*").unwrap();
        assert!(all.allows(Proto::Tcp, &"8.8.8.8".parse().unwrap(), 1));
    }

    #[test]
    fn local_and_special_addresses_are_recognised() {
        let scope = |s: &str| local_scope(&s.parse().unwrap());
        for local in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(scope(local).is_some(), "{local} should be local");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.2.7",
            "198.51.100.9",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(scope(public), None, "{public} is public");
        }
    }

    #[test]
    fn absent_network_rules_inherit_the_issuers() {
        let parent = NetworkRights {
            connect: RuleSet::Only(vec![ConnectRule::parse("tcp:0.0.0.0/0:80-443").unwrap()]),
            listen: RuleSet::Only(vec![]),
            sensors: true,
        };
        let child = NetworkRights::INHERIT;
        assert!(child.narrows(&parent).is_ok());
        assert_eq!(child.meet(&parent), parent);
        // Listing a rule outside the issuer's is still a widening.
        let wider = NetworkRights {
            connect: RuleSet::Only(vec![ConnectRule::parse("tcp:0.0.0.0/0:*").unwrap()]),
            listen: RuleSet::Any,
            sensors: true,
        };
        assert!(wider.narrows(&parent).is_err());
    }

    #[test]
    fn sensors_are_in_force_only_if_asked_and_allowed_by_every_link() {
        let deny = NetworkRights {
            sensors: false,
            ..NetworkRights::INHERIT
        };
        let ask = NetworkRights::INHERIT;
        assert!(ask.meet(&NetworkRights::INHERIT).sensors);
        // A link that takes them away takes them from everything under it.
        assert!(!ask.meet(&deny).sensors);
        assert!(!ask.meet(&deny).meet(&NetworkRights::INHERIT).sensors);
        assert!(!deny.meet(&NetworkRights::INHERIT).sensors);
        // Not a widening to say nothing under a link that denies them.
        assert!(ask.narrows(&deny).is_ok());
        assert!(!NetworkRights::none().sensors);
    }

    #[test]
    fn caps_inherit_and_narrow() {
        let parent = ResourceCaps {
            memory: Some(100),
            ..Default::default()
        };
        let child = ResourceCaps {
            cpu_share: Some(4),
            ..Default::default()
        };
        child.narrows(&parent).unwrap();
        assert_eq!(child.meet(&parent).memory, Some(100));
        let wide = ResourceCaps {
            memory: Some(101),
            ..Default::default()
        };
        assert_eq!(wide.narrows(&parent).unwrap_err().what, "memory");
    }

    #[test]
    fn rights_parse_and_display() {
        let r = Rights::parse("create,audit").unwrap();
        assert_eq!(r.to_string(), "create,audit");
        assert!(Rights::parse("root").is_err());
        assert!(Rights::try_from(0x10).is_err());
    }
}
