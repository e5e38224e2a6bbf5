//! Property tests of the trust layer's invariants:
//! - a random chain in which every link narrows its issuer always verifies;
//! - widening any one link along any dimension is always rejected, at that link;
//! - chains longer than the limit are always rejected;
//! - every single-byte change to every signed object is rejected, never accepted as another
//!   valid object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use slicefed_trust::caps::{
    ConnectRule, Grant, NetworkRights, NodeSet, PortRange, ResourceCaps, Rights, RuleSet, Validity,
};
use slicefed_trust::fixtures::{DAY, T0, key, name, policy_for};
use slicefed_trust::objects::{
    self, AuthorityCert, Delegation, ModuleHash, Nonce, SliceTicket, UserCert,
};
use slicefed_trust::verify::{MAX_CHAIN_LINKS, open_any};
use slicefed_trust::{
    Context, Credential, Pattern, SecretKey, TrustPolicy, TrustedAuthority, Verifier, VerifyError,
};

/// Random choices for one link; applied relative to the issuer's grant so the link narrows.
#[derive(Clone, Debug)]
struct LinkChoice {
    cap_fractions: [u8; 4],
    extra_rights: u8,
    start_shrink: u32,
    end_shrink: u32,
    node_keep_mask: u32,
    prefix_grow: u8,
    port_shrink: u16,
}

fn link_choice() -> impl Strategy<Value = LinkChoice> {
    (
        prop::array::uniform4(1u8..=100),
        any::<u8>(),
        0u32..1000,
        0u32..1000,
        any::<u32>(),
        0u8..8,
        0u16..4000,
    )
        .prop_map(
            |(
                cap_fractions,
                extra_rights,
                start_shrink,
                end_shrink,
                node_keep_mask,
                prefix_grow,
                port_shrink,
            )| {
                LinkChoice {
                    cap_fractions,
                    extra_rights,
                    start_shrink,
                    end_shrink,
                    node_keep_mask,
                    prefix_grow,
                    port_shrink,
                }
            },
        )
}

const ROOT_CAPS: ResourceCaps = ResourceCaps {
    memory: Some(1 << 30),
    cpu_share: Some(64),
    max_slivers: Some(1000),
    egress_per_day: Some(100_000_000_000),
};

fn universe() -> Vec<SecretKey> {
    (100..120).map(key).collect()
}

fn scale(v: Option<u64>, f: u8) -> Option<u64> {
    v.map(|v| (v * u64::from(f) / 100).max(1))
}

/// A grant that narrows `parent` per `c`, holding at least `need`.
fn narrow(parent: &Grant, c: &LinkChoice, need: Rights) -> Grant {
    let caps = ResourceCaps {
        memory: scale(parent.caps.memory, c.cap_fractions[0]),
        cpu_share: scale(parent.caps.cpu_share.map(u64::from), c.cap_fractions[1])
            .map(|v| v as u32),
        max_slivers: scale(parent.caps.max_slivers.map(u64::from), c.cap_fractions[2])
            .map(|v| v as u32),
        egress_per_day: scale(parent.caps.egress_per_day, c.cap_fractions[3]),
    };
    let rights = need
        .union(Rights::try_from(c.extra_rights & 0x0f).unwrap())
        .without(Rights::CERTIFY);
    let rights = if parent.rights.contains(Rights::CERTIFY) && need.contains(Rights::CERTIFY) {
        rights.union(Rights::CERTIFY)
    } else {
        rights
    };
    let rights = Rights::try_from(u8::from(rights) & u8::from(parent.rights))
        .unwrap()
        .union(need);
    let validity = Validity {
        not_before: (parent.validity.not_before + u64::from(c.start_shrink) * 60).min(T0),
        not_after: (parent.validity.not_after - u64::from(c.end_shrink) * 60).max(T0),
    };
    let all: Vec<_> = universe().iter().map(|k| k.public()).collect();
    let pool = match &parent.nodes {
        NodeSet::AnyTrusting => all,
        NodeSet::Only(n) => n.clone(),
    };
    let mut kept: Vec<_> = pool
        .iter()
        .enumerate()
        .filter(|(i, _)| c.node_keep_mask >> (i % 32) & 1 == 1)
        .map(|(_, k)| *k)
        .collect();
    if kept.is_empty() {
        kept = pool.into_iter().take(1).collect();
    }
    let connect = match &parent.network.connect {
        RuleSet::Only(rules) => RuleSet::Only(
            rules
                .iter()
                .map(|r| {
                    let prefix = (r.net.prefix + c.prefix_grow).min(32);
                    let span = r.ports.last - r.ports.first;
                    let shrink = c.port_shrink.min(span / 2);
                    ConnectRule {
                        proto: r.proto,
                        net: slicefed_trust::caps::IpNet {
                            addr: r.net.addr,
                            prefix,
                        },
                        ports: PortRange {
                            first: r.ports.first + shrink,
                            last: r.ports.last - shrink,
                        },
                    }
                })
                .collect(),
        ),
        RuleSet::Any => RuleSet::Only(vec![
            ConnectRule::parse("tcp:10.0.0.0/8:1000-9000").unwrap(),
        ]),
    };
    Grant {
        rights,
        caps,
        network: NetworkRights {
            connect,
            listen: RuleSet::Only(vec![]),
            sensors: false,
        },
        nodes: NodeSet::only(kept),
        validity,
    }
}

/// A chain: `subs` sub-authorities, a user, `delegs` delegations, a ticket.
struct Chain {
    policy: TrustPolicy,
    /// Signing inputs per link, so a test can re-sign a mutated link.
    links: Vec<(SecretKey, LinkBody)>,
}

#[derive(Clone, Debug)]
enum LinkBody {
    Authority(AuthorityCert),
    User(UserCert),
    Delegation(Delegation),
    Ticket(SliceTicket),
}

impl LinkBody {
    fn sign(&self, k: &SecretKey) -> Vec<u8> {
        match self {
            LinkBody::Authority(b) => objects::sign(k, b).unwrap().bytes,
            LinkBody::User(b) => objects::sign(k, b).unwrap().bytes,
            LinkBody::Delegation(b) => objects::sign(k, b).unwrap().bytes,
            LinkBody::Ticket(b) => objects::sign(k, b).unwrap().bytes,
        }
    }
}

fn build(subs: usize, delegs: usize, choices: &[LinkChoice]) -> Chain {
    let root = key(1);
    let policy = TrustPolicy::new(vec![TrustedAuthority {
        name: name("root"),
        key: root.public(),
        namespaces: vec![name("root")],
        caps: ROOT_CAPS,
        network: NetworkRights::INHERIT,
    }])
    .unwrap();
    let mut parent = Grant {
        rights: Rights::ALL,
        caps: ROOT_CAPS,
        network: NetworkRights::INHERIT,
        nodes: NodeSet::AnyTrusting,
        validity: Validity {
            not_before: T0 - 1000 * DAY,
            not_after: T0 + 1000 * DAY,
        },
    };
    let mut issuer = root;
    let mut ns = "root".to_string();
    let mut links = vec![];
    let mut i = 0;
    let mut next_choice = || {
        i += 1;
        choices[(i - 1) % choices.len()].clone()
    };
    for s in 0..subs {
        ns = format!("{ns}.s{s}");
        let g = narrow(
            &parent,
            &next_choice(),
            Rights::CERTIFY
                .union(Rights::CREATE)
                .union(Rights::DELEGATE),
        );
        let subject = key(10 + s as u8);
        links.push((
            issuer,
            LinkBody::Authority(AuthorityCert {
                subject: subject.public(),
                namespace: name(&ns),
                grant: g.clone(),
            }),
        ));
        parent = g;
        issuer = subject;
    }
    let need = if delegs > 0 {
        Rights::DELEGATE.union(Rights::CREATE)
    } else {
        Rights::CREATE
    };
    let g = narrow(&parent, &next_choice(), need);
    let user = key(30);
    links.push((
        issuer,
        LinkBody::User(UserCert {
            subject: user.public(),
            name: name(&format!("{ns}.alice")),
            slices: Pattern::parse(&format!("{ns}.*")).unwrap(),
            grant: g.clone(),
        }),
    ));
    parent = g;
    issuer = user;
    for d in 0..delegs {
        let need = if d + 1 < delegs {
            Rights::DELEGATE.union(Rights::CREATE)
        } else {
            Rights::CREATE
        };
        let g = narrow(&parent, &next_choice(), need);
        let subject = key(40 + d as u8);
        links.push((
            issuer,
            LinkBody::Delegation(Delegation {
                subject: subject.public(),
                slices: Pattern::parse(&format!("{ns}.*")).unwrap(),
                grant: g.clone(),
            }),
        ));
        parent = g;
        issuer = subject;
    }
    let g = narrow(&parent, &next_choice(), Rights::NONE);
    links.push((
        issuer,
        LinkBody::Ticket(SliceTicket {
            slice: name(&format!("{ns}.slice")),
            module: ModuleHash::of(b"m"),
            invocation: slicefed_trust::Invocation::default().hash(),
            caps: g.caps,
            network: g.network,
            nodes: g.nodes,
            validity: g.validity,
            issued_at: T0,
            nonce: Nonce([1; 16]),
        }),
    ));
    Chain { policy, links }
}

fn verify(chain: &Chain) -> Result<slicefed_trust::Verified, VerifyError> {
    let signed: Vec<Vec<u8>> = chain.links.iter().map(|(k, b)| b.sign(k)).collect();
    let (leaf, pool) = signed.split_last().unwrap();
    let pool: Vec<&[u8]> = pool.iter().map(|b| b.as_slice()).collect();
    Verifier::new(chain.policy.clone()).verify(
        leaf,
        &pool,
        &Context {
            now: T0,
            node: None,
        },
    )
}

/// The ways to widen one link.
#[derive(Clone, Copy, Debug)]
enum Widen {
    Memory,
    Cpu,
    Slivers,
    Egress,
    Rights,
    NodesAdd,
    NodesAny,
    ValidityEnd,
    ValidityStart,
    ConnectPorts,
    Namespace,
}

fn widen_grant(g: &mut Grant, parent: &Grant, how: Widen) {
    match how {
        Widen::Memory => g.caps.memory = parent.caps.memory.map(|m| m + 1),
        Widen::Cpu => g.caps.cpu_share = parent.caps.cpu_share.map(|m| m + 1),
        Widen::Slivers => g.caps.max_slivers = parent.caps.max_slivers.map(|m| m + 1),
        Widen::Egress => g.caps.egress_per_day = parent.caps.egress_per_day.map(|m| m + 1),
        Widen::Rights => g.rights = Rights::ALL,
        Widen::NodesAdd => {
            let outsider = key(200).public();
            if let NodeSet::Only(n) = &g.nodes {
                let mut n = n.clone();
                n.push(outsider);
                g.nodes = NodeSet::only(n);
            }
        }
        Widen::NodesAny => g.nodes = NodeSet::AnyTrusting,
        Widen::ValidityEnd => g.validity.not_after = parent.validity.not_after + 1,
        Widen::ValidityStart => g.validity.not_before = parent.validity.not_before - 1,
        Widen::ConnectPorts => {
            if let RuleSet::Only(p) = &parent.network.connect {
                g.network.connect = RuleSet::Only(
                    p.iter()
                        .map(|r| ConnectRule {
                            ports: PortRange {
                                first: r.ports.first,
                                last: r.ports.last + 1,
                            },
                            ..*r
                        })
                        .collect(),
                );
            }
        }
        Widen::Namespace => {}
    }
}

fn grant_of(b: &LinkBody) -> Grant {
    match b {
        LinkBody::Authority(c) => c.grant.clone(),
        LinkBody::User(c) => c.grant.clone(),
        LinkBody::Delegation(c) => c.grant.clone(),
        LinkBody::Ticket(t) => Grant {
            rights: Rights::NONE,
            caps: t.caps,
            network: t.network.clone(),
            nodes: t.nodes.clone(),
            validity: t.validity,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn narrowing_chains_always_verify(subs in 0usize..=2, delegs in 0usize..=1, choices in prop::collection::vec(link_choice(), 1..6)) {
        let chain = build(subs, delegs, &choices);
        prop_assume!(chain.links.len() <= MAX_CHAIN_LINKS);
        let v = verify(&chain);
        prop_assert!(v.is_ok(), "{:?}", v.err());
        let v = v.unwrap();
        prop_assert_eq!(v.responsible.user.unwrap().as_str().ends_with(".alice"), true);
        // The effective caps are never above the root's.
        prop_assert!(v.effective.caps.narrows(&ROOT_CAPS).is_ok());
    }

    #[test]
    fn too_long_chains_are_always_rejected(subs in 3usize..=5, delegs in 1usize..=2, choices in prop::collection::vec(link_choice(), 1..4)) {
        let chain = build(subs, delegs, &choices);
        prop_assume!(chain.links.len() > MAX_CHAIN_LINKS);
        let err = verify(&chain).unwrap_err();
        prop_assert!(matches!(err, VerifyError::ChainTooLong { .. }), "{}", err);
    }

    #[test]
    fn any_widening_is_rejected(
        subs in 0usize..=2,
        delegs in 0usize..=1,
        choices in prop::collection::vec(link_choice(), 1..6),
        at in any::<prop::sample::Index>(),
        how in prop::sample::select(vec![Widen::Memory, Widen::Cpu, Widen::Slivers, Widen::Egress, Widen::Rights, Widen::NodesAdd, Widen::NodesAny, Widen::ValidityEnd, Widen::ValidityStart, Widen::ConnectPorts, Widen::Namespace]),
    ) {
        let mut chain = build(subs, delegs, &choices);
        prop_assume!(chain.links.len() <= MAX_CHAIN_LINKS);
        // Never the first link: its parent is the policy, whose grant we know exactly.
        let idx = at.index(chain.links.len() - 1) + 1;
        let parent = grant_of(&chain.links[idx - 1].1);
        let body = &mut chain.links[idx].1;
        let rights_widenable = !matches!(body, LinkBody::Ticket(_)) && parent.rights != Rights::ALL;
        match (body, how) {
            (LinkBody::Authority(c), Widen::Namespace) => c.namespace = name("elsewhere.sub"),
            (LinkBody::User(c), Widen::Namespace) => c.name = name("elsewhere.alice"),
            (LinkBody::Delegation(c), Widen::Namespace) => c.slices = Pattern::parse("elsewhere.*").unwrap(),
            (LinkBody::Ticket(t), Widen::Namespace) => t.slice = name("elsewhere.slice"),
            (_, Widen::Rights) if !rights_widenable => return Ok(()),
            (LinkBody::Authority(c), h) => widen_grant(&mut c.grant, &parent, h),
            (LinkBody::User(c), h) => widen_grant(&mut c.grant, &parent, h),
            (LinkBody::Delegation(c), h) => widen_grant(&mut c.grant, &parent, h),
            (LinkBody::Ticket(t), h) => {
                let mut g = grant_of(&LinkBody::Ticket(t.clone()));
                widen_grant(&mut g, &parent, h);
                t.caps = g.caps; t.network = g.network; t.nodes = g.nodes; t.validity = g.validity;
            }
        }
        let err = verify(&chain).unwrap_err();
        prop_assert!(
            matches!(err, VerifyError::Widening { .. } | VerifyError::NamespaceEscape { .. }),
            "{:?} at link {} gave {}", how, idx, err
        );
    }
}

/// One valid object of every kind, plus a credential file.
fn every_object() -> Vec<Vec<u8>> {
    let (policy, ticket, chain) = slicefed_trust::fixtures::three_link_chain().unwrap();
    let _ = policy;
    let mut all = vec![ticket.clone()];
    all.extend(chain.iter().cloned());
    all.push(
        objects::sign(
            &key(1),
            &objects::AuthorityRoot {
                name: name("princeton"),
                created: T0,
            },
        )
        .unwrap()
        .bytes,
    );
    all.push(
        objects::sign(
            &key(1),
            &objects::NodeCert {
                subject: key(4).public(),
                name: name("princeton.n1"),
                validity: Validity::starting(T0, DAY),
            },
        )
        .unwrap()
        .bytes,
    );
    all.push(
        objects::sign(
            &key(3),
            &Delegation {
                subject: key(5).public(),
                slices: Pattern::parse("princeton.cs.x").unwrap(),
                grant: slicefed_trust::fixtures::open_grant(Rights::CREATE),
            },
        )
        .unwrap()
        .bytes,
    );
    all.push(
        objects::sign(
            &key(1),
            &objects::Revocation {
                target: objects::CertId([1; 32]),
                reason: "r".into(),
                revoked_at: T0,
            },
        )
        .unwrap()
        .bytes,
    );
    all.push(
        objects::sign(
            &key(4),
            &objects::NodeReceipt {
                ticket: objects::CertId([1; 32]),
                admitted: true,
                reason: String::new(),
                at: T0,
            },
        )
        .unwrap()
        .bytes,
    );
    all
}

#[test]
fn every_single_byte_change_of_every_object_is_rejected() {
    let mut checked = 0usize;
    for original in every_object() {
        let genuine = open_any(&original).unwrap();
        for pos in 0..original.len() {
            for delta in [0x01u8, 0x80, 0xff, 0x5a] {
                let mut m = original.clone();
                m[pos] ^= delta;
                if let Ok(o) = open_any(&m) {
                    panic!(
                        "byte {pos} ^ {delta:#x} of a {} accepted as a {} ({})",
                        genuine.kind, o.kind, o.id
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 4000, "{checked}");
}

#[test]
fn every_single_byte_change_of_a_credential_file_fails_verification() {
    let (policy, ticket, chain) = slicefed_trust::fixtures::three_link_chain().unwrap();
    let file = Credential::new(ticket, chain).to_bytes().unwrap();
    let mut v = Verifier::new(policy);
    let ctx = Context {
        now: T0,
        node: None,
    };
    for pos in 0..file.len() {
        let mut m = file.clone();
        m[pos] ^= 0x01;
        v.clear_cache();
        let ok = Credential::from_bytes(&m).ok().and_then(|c| {
            let pool: Vec<&[u8]> = c.chain().collect();
            v.verify(c.leaf(), &pool, &ctx).ok().map(|_| ())
        });
        assert!(
            ok.is_none(),
            "credential byte {pos} flipped and still verified"
        );
    }
}

proptest! {
    #[test]
    fn random_bytes_never_open(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(open_any(&bytes).is_err());
        let _ = Credential::from_bytes(&bytes);
    }
}

#[test]
fn policy_of_unrelated_root_never_accepts() {
    let (_, ticket, chain) = slicefed_trust::fixtures::three_link_chain().unwrap();
    let pool: Vec<&[u8]> = chain.iter().map(|b| b.as_slice()).collect();
    let mut v = Verifier::new(policy_for(&[("princeton", &key(77))]));
    assert!(
        v.verify(
            &ticket,
            &pool,
            &Context {
                now: T0,
                node: None
            }
        )
        .is_err()
    );
}
