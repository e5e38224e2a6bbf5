//! Chain verification: from a leaf (ticket, certificate, revocation…) up to a root the
//! trust policy names, checking at every link that it is signed by its parent's subject,
//! stays inside its parent's namespace, only narrows rights, caps, network, nodes and
//! validity, is within its validity window (±[`CLOCK_SKEW_SECS`]) and is not revoked.
//!
//! No IO and no clock: the caller passes `now`. The [`Verifier`] keeps the state a node
//! needs across calls, each bounded: verified objects (a cache a revocation invalidates),
//! revocations, and ticket nonces seen within the replay window.

use crate::caps::{Grant, NodeSet, Rights, Validity, Widening};
use crate::keys::PublicKey;
use crate::names::{Name, Pattern};
use crate::objects::{
    self, AuthorityCert, AuthorityRoot, Body, CertId, Credential, Delegation, Kind, NodeCert,
    NodeReceipt, Nonce, ObjectError, Revocation, Signed, SliceDelete, SliceTicket, UserCert,
};
use crate::policy::TrustPolicy;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most links from a trusted root to the leaf (the leaf included).
pub const MAX_CHAIN_LINKS: usize = 5;
/// Clock skew tolerated at each validity bound.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// A ticket is admitted only if issued within this many seconds; its nonce is remembered
/// that long.
pub const REPLAY_WINDOW_SECS: u64 = 600;
/// Most verified objects cached.
pub const MAX_CACHED_OBJECTS: usize = 65_536;
/// Most objects remembered as failing their signature check.
pub const MAX_BAD_OBJECTS: usize = 65_536;
/// Most decompressed signer keys kept.
pub const MAX_CACHED_KEYS: usize = 65_536;
/// Most objects a [`SharedOpened`] holds.
pub const MAX_SHARED_OPENED: usize = 1 << 20;
/// Most revocations held.
pub const MAX_REVOCATIONS: usize = 1_000_000;
/// Most revocations held from one revoker (a compromised authority cannot fill the set).
pub const MAX_REVOCATIONS_PER_REVOKER: usize = 65_536;
/// Most live ticket nonces remembered.
pub const MAX_REPLAY_ENTRIES: usize = 1_000_000;

/// Why a chain (or a ticket's admission) was refused. Every variant is a distinct reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// An object could not be opened.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Too many links.
    #[error("the chain has more than {max} links from a trusted root to the {leaf}")]
    ChainTooLong {
        /// The leaf's kind.
        leaf: Kind,
        /// The limit.
        max: usize,
    },
    /// The chain does not reach a key the policy trusts.
    #[error(
        "untrusted root: the chain ends at key {key}, which the trust policy does not name and no supplied certificate certifies"
    )]
    UntrustedRoot {
        /// The last key reached.
        key: PublicKey,
    },
    /// A link's window has ended.
    #[error("the {kind} for {subject} expired at {not_after} (now {now})")]
    Expired {
        /// Kind of the link.
        kind: Kind,
        /// Whom it certifies.
        subject: String,
        /// End of validity.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// A link's window has not started.
    #[error("the {kind} for {subject} is not valid until {not_before} (now {now})")]
    NotYetValid {
        /// Kind of the link.
        kind: Kind,
        /// Whom it certifies.
        subject: String,
        /// Start of validity.
        not_before: u64,
        /// The time checked.
        now: u64,
    },
    /// A link was revoked by a key entitled to revoke it.
    #[error("the {kind} for {subject} ({id}) was revoked: {reason}")]
    Revoked {
        /// Kind of the link.
        kind: Kind,
        /// Whom it certifies.
        subject: String,
        /// Its id.
        id: CertId,
        /// The revocation's reason.
        reason: String,
    },
    /// The ticket's nonce was used before.
    #[error("replayed ticket: nonce {nonce} from {signer} was already admitted")]
    Replayed {
        /// The signer.
        signer: PublicKey,
        /// The nonce.
        nonce: Nonce,
    },
    /// The ticket was issued outside the replay window.
    #[error(
        "stale ticket: issued at {issued_at}, outside the {window}s admission window around now ({now})"
    )]
    StaleTicket {
        /// When issued.
        issued_at: u64,
        /// The window.
        window: u64,
        /// The time checked.
        now: u64,
    },
    /// The replay guard is full of live entries; refusing is safer than forgetting.
    #[error("the replay guard holds {0} live tickets, its limit; try again later")]
    ReplayGuardFull(usize),
    /// The leaf is not meant for this node.
    #[error("wrong audience: the {kind} is not valid on this node ({node})")]
    WrongAudience {
        /// The leaf's kind.
        kind: Kind,
        /// This node's PeerId.
        node: String,
    },
    /// A name or slice outside the issuer's namespace.
    #[error("namespace escape: {what} `{name}` is outside what {issuer} may grant ({allowed})")]
    NamespaceEscape {
        /// `name` or `slices` or `slice`.
        what: &'static str,
        /// The offending name or pattern.
        name: String,
        /// The issuer.
        issuer: String,
        /// What the issuer may grant.
        allowed: String,
    },
    /// A link grants more than its issuer holds.
    #[error("the {kind} for {subject} is wider than its issuer's: {widening}")]
    Widening {
        /// Kind of the link.
        kind: Kind,
        /// Whom it certifies.
        subject: String,
        /// How.
        widening: Widening,
    },
    /// The issuer holds no right to issue this.
    #[error("the issuer of the {kind} ({issuer}) lacks the `{right}` right")]
    MissingRight {
        /// Kind of the link.
        kind: Kind,
        /// The issuer.
        issuer: String,
        /// The right.
        right: Rights,
    },
    /// This kind cannot be issued by this kind of issuer.
    #[error("a {kind} cannot be issued by a {issuer_role}")]
    WrongIssuer {
        /// Kind of the link.
        kind: Kind,
        /// The issuer's role.
        issuer_role: &'static str,
    },
    /// An authority root whose key is not the one the policy lists under that name.
    #[error("the authority root for `{name}` is signed by a key the trust policy does not list")]
    UnknownAuthorityRoot {
        /// The name it claims.
        name: Name,
    },
}

/// Any opened object.
#[derive(Clone, Debug)]
pub enum Object {
    /// See [`AuthorityRoot`].
    AuthorityRoot(AuthorityRoot),
    /// See [`AuthorityCert`].
    AuthorityCert(AuthorityCert),
    /// See [`UserCert`].
    UserCert(UserCert),
    /// See [`NodeCert`].
    NodeCert(NodeCert),
    /// See [`Delegation`].
    Delegation(Delegation),
    /// See [`SliceTicket`].
    SliceTicket(SliceTicket),
    /// See [`Revocation`].
    Revocation(Revocation),
    /// See [`SliceDelete`].
    SliceDelete(SliceDelete),
    /// See [`NodeReceipt`].
    NodeReceipt(NodeReceipt),
}

/// An object whose signature was checked and whose body was decoded.
#[derive(Clone, Debug)]
pub struct Opened {
    /// Its id.
    pub id: CertId,
    /// Its kind.
    pub kind: Kind,
    /// Its signer.
    pub signer: PublicKey,
    /// Its body.
    pub object: Object,
}

impl Opened {
    /// The key this object certifies, if any.
    pub fn subject(&self) -> Option<PublicKey> {
        match &self.object {
            Object::AuthorityCert(c) => c.subject(),
            Object::UserCert(c) => c.subject(),
            Object::NodeCert(c) => c.subject(),
            Object::Delegation(c) => c.subject(),
            _ => None,
        }
    }
    /// A human label for whom or what it is about.
    pub fn label(&self) -> String {
        match &self.object {
            Object::AuthorityRoot(r) => r.name.to_string(),
            Object::AuthorityCert(c) => c.namespace.to_string(),
            Object::UserCert(c) => c.name.to_string(),
            Object::NodeCert(c) => c.name.to_string(),
            Object::Delegation(c) => format!("delegate {} for {}", c.subject.peer_id(), c.slices),
            Object::SliceTicket(t) => format!("slice {}", t.slice),
            Object::Revocation(r) => format!("revocation of {}", r.target),
            Object::NodeReceipt(r) => format!("receipt for ticket {}", r.ticket),
            Object::SliceDelete(d) => format!("delete of slice {}", d.slice),
        }
    }
    /// The object's own validity window, for kinds that have one.
    pub fn validity(&self) -> Option<Validity> {
        match &self.object {
            Object::AuthorityCert(c) => Some(c.grant.validity),
            Object::UserCert(c) => Some(c.grant.validity),
            Object::NodeCert(c) => Some(c.validity),
            Object::Delegation(c) => Some(c.grant.validity),
            Object::SliceTicket(t) => Some(t.validity),
            Object::SliceDelete(d) => Some(d.validity),
            _ => None,
        }
    }
}

fn opened<T: Body>(
    id: CertId,
    env: &objects::Envelope,
    wrap: fn(T) -> Object,
) -> Result<Opened, ObjectError> {
    Ok(Opened {
        id,
        kind: T::KIND,
        signer: env.signer,
        object: wrap(objects::decode_body::<T>(env)?),
    })
}

/// Opens envelope bytes of any kind: signature first, then the body.
pub fn open_any(bytes: &[u8]) -> Result<Opened, ObjectError> {
    open_any_with(bytes, CertId::of(bytes), |pk| {
        pk.verifying_key().map_err(|_| ObjectError::BadSignature {
            kind: Kind::AuthorityRoot,
            signer: *pk,
        })
    })
}

/// [`open_any`] with a source of decompressed signer keys.
fn open_any_with(
    bytes: &[u8],
    id: CertId,
    mut key_of: impl FnMut(&PublicKey) -> Result<VerifyingKey, ObjectError>,
) -> Result<Opened, ObjectError> {
    let env = objects::decode_envelope(bytes)?;
    let key = key_of(&env.signer).map_err(|_| ObjectError::BadSignature {
        kind: env.kind,
        signer: env.signer,
    })?;
    objects::check_signature_with(&env, &key)?;
    let e = &env;
    match env.kind {
        Kind::AuthorityRoot => opened(id, e, Object::AuthorityRoot),
        Kind::AuthorityCert => opened(id, e, Object::AuthorityCert),
        Kind::UserCert => opened(id, e, Object::UserCert),
        Kind::NodeCert => opened(id, e, Object::NodeCert),
        Kind::Delegation => opened(id, e, Object::Delegation),
        Kind::SliceTicket => opened(id, e, Object::SliceTicket),
        Kind::Revocation => opened(id, e, Object::Revocation),
        Kind::NodeReceipt => opened(id, e, Object::NodeReceipt),
        Kind::SliceDelete => opened(id, e, Object::SliceDelete),
    }
}

/// Decodes envelope bytes of any kind and their body **without** checking the signature:
/// for deciding which objects could form a chain before paying for any signature check.
/// Never trust what it returns until [`Verifier`] confirmed the signature.
fn decode_unchecked(bytes: &[u8], id: CertId) -> Result<Opened, ObjectError> {
    let env = objects::decode_envelope(bytes)?;
    let e = &env;
    match env.kind {
        Kind::AuthorityRoot => opened(id, e, Object::AuthorityRoot),
        Kind::AuthorityCert => opened(id, e, Object::AuthorityCert),
        Kind::UserCert => opened(id, e, Object::UserCert),
        Kind::NodeCert => opened(id, e, Object::NodeCert),
        Kind::Delegation => opened(id, e, Object::Delegation),
        Kind::SliceTicket => opened(id, e, Object::SliceTicket),
        Kind::Revocation => opened(id, e, Object::Revocation),
        Kind::NodeReceipt => opened(id, e, Object::NodeReceipt),
        Kind::SliceDelete => opened(id, e, Object::SliceDelete),
    }
}

/// The time and place of a verification.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// Unix seconds.
    pub now: u64,
    /// The verifying node, for the audience check; `None` for an auditor.
    pub node: Option<PublicKey>,
}

/// Who answers for a verified chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Responsible {
    /// The person (the user certificate's subject), if the chain has one.
    pub user: Option<Name>,
    /// Their key.
    pub user_key: Option<PublicKey>,
    /// The authority that certified them (or the leaf).
    pub authority: Name,
    /// The trusted root the chain ends at.
    pub root: Name,
}

/// One link of a verified chain, root side first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkSummary {
    /// Kind.
    pub kind: Kind,
    /// Id.
    pub id: CertId,
    /// Signer.
    pub signer: PublicKey,
    /// About whom.
    pub label: String,
}

/// A verified chain.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The leaf.
    pub leaf: Arc<Opened>,
    /// Who answers for it.
    pub responsible: Responsible,
    /// The grant in force at the leaf (caps, network, nodes, validity after every narrowing).
    pub effective: Grant,
    /// Links from the root's first certificate to the leaf.
    pub links: Vec<LinkSummary>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Authority,
    User,
    Delegate,
}
impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Authority => "authority",
            Role::User => "user",
            Role::Delegate => "delegate",
        }
    }
}

/// What the holder of a key may do, after the chain so far has narrowed it.
#[derive(Clone)]
struct Reach {
    key: PublicKey,
    role: Role,
    label: String,
    /// The authority answering for this holder: itself for an authority, its certifier for
    /// a user or delegate.
    authority: Name,
    names: Vec<Pattern>,
    slices: Vec<Pattern>,
    grant: Grant,
}

fn allowed(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Reach {
    fn require(&self, kind: Kind, roles: &[Role], right: Rights) -> Result<(), VerifyError> {
        if !roles.contains(&self.role) {
            return Err(VerifyError::WrongIssuer {
                kind,
                issuer_role: self.role.name(),
            });
        }
        if !self.grant.rights.contains(right) {
            return Err(VerifyError::MissingRight {
                kind,
                issuer: self.label.clone(),
                right,
            });
        }
        Ok(())
    }
    fn contain(
        &self,
        what: &'static str,
        p: &Pattern,
        within: &[Pattern],
    ) -> Result<(), VerifyError> {
        if within.iter().any(|o| p.is_within(o)) {
            Ok(())
        } else {
            Err(VerifyError::NamespaceEscape {
                what,
                name: p.to_string(),
                issuer: self.label.clone(),
                allowed: allowed(within),
            })
        }
    }
}

fn widening(link: &Opened) -> impl Fn(Widening) -> VerifyError + '_ {
    move |w| VerifyError::Widening {
        kind: link.kind,
        subject: link.label(),
        widening: w,
    }
}

/// Applies one link to the reach of its issuer: checks and returns the subject's reach
/// (`None` for leaves that grant nothing onward).
fn step(
    parent: &Reach,
    link: &Opened,
    responsible: &mut Responsible,
) -> Result<Option<Reach>, VerifyError> {
    let wide = widening(link);
    match &link.object {
        Object::AuthorityCert(c) => {
            parent.require(link.kind, &[Role::Authority], Rights::CERTIFY)?;
            parent.contain(
                "namespace",
                &Pattern::Exact(c.namespace.clone()),
                &parent.names,
            )?;
            c.grant.narrows(&parent.grant).map_err(wide)?;
            let ns = vec![Pattern::Below(c.namespace.clone())];
            Ok(Some(Reach {
                key: c.subject,
                role: Role::Authority,
                label: c.namespace.to_string(),
                authority: c.namespace.clone(),
                names: ns.clone(),
                slices: ns,
                grant: c.grant.meet(&parent.grant),
            }))
        }
        Object::UserCert(c) => {
            parent.require(link.kind, &[Role::Authority], Rights::CERTIFY)?;
            parent.contain("name", &Pattern::Exact(c.name.clone()), &parent.names)?;
            parent.contain("slices", &c.slices, &parent.slices)?;
            if c.grant.rights.contains(Rights::CERTIFY) {
                return Err(wide(Widening {
                    what: "rights",
                    detail: "a user certificate cannot carry the certify right".into(),
                }));
            }
            c.grant.narrows(&parent.grant).map_err(wide)?;
            responsible.user = Some(c.name.clone());
            responsible.user_key = Some(c.subject);
            responsible.authority = parent.authority.clone();
            Ok(Some(Reach {
                key: c.subject,
                role: Role::User,
                label: c.name.to_string(),
                authority: parent.authority.clone(),
                names: vec![],
                slices: vec![c.slices.clone()],
                grant: c.grant.meet(&parent.grant),
            }))
        }
        Object::NodeCert(c) => {
            parent.require(link.kind, &[Role::Authority], Rights::CERTIFY)?;
            parent.contain("name", &Pattern::Exact(c.name.clone()), &parent.names)?;
            c.validity.narrows(&parent.grant.validity).map_err(wide)?;
            responsible.authority = parent.authority.clone();
            Ok(None)
        }
        Object::Delegation(d) => {
            parent.require(link.kind, &[Role::User, Role::Delegate], Rights::DELEGATE)?;
            parent.contain("slices", &d.slices, &parent.slices)?;
            d.grant.narrows(&parent.grant).map_err(wide)?;
            Ok(Some(Reach {
                key: d.subject,
                role: Role::Delegate,
                authority: parent.authority.clone(),
                label: format!("delegate {}", d.subject.peer_id()),
                names: vec![],
                slices: vec![d.slices.clone()],
                grant: d.grant.meet(&parent.grant),
            }))
        }
        Object::SliceTicket(t) => {
            parent.require(link.kind, &[Role::User, Role::Delegate], Rights::CREATE)?;
            parent.contain("slice", &Pattern::Exact(t.slice.clone()), &parent.slices)?;
            let as_grant = Grant {
                rights: Rights::NONE,
                caps: t.caps,
                network: t.network.clone(),
                nodes: t.nodes.clone(),
                validity: t.validity,
            };
            as_grant.narrows(&parent.grant).map_err(wide)?;
            Ok(Some(Reach {
                key: parent.key,
                role: parent.role,
                authority: parent.authority.clone(),
                label: format!("slice {}", t.slice),
                names: vec![],
                slices: vec![Pattern::Exact(t.slice.clone())],
                grant: as_grant.meet(&parent.grant),
            }))
        }
        // A slice's holder ending it: a user or delegate whose slices include it (what it
        // ends is decided on each node, among the slivers its signer holds).
        Object::SliceDelete(d) => {
            parent.require(link.kind, &[Role::User, Role::Delegate], Rights::CREATE)?;
            parent.contain("slice", &Pattern::Exact(d.slice.clone()), &parent.slices)?;
            Ok(None)
        }
        // Leaves that grant nothing: only their signer's standing matters.
        Object::AuthorityRoot(_) | Object::Revocation(_) | Object::NodeReceipt(_) => Ok(None),
    }
}

/// A slice delete that verified ([`Verifier::judge_delete`]).
#[derive(Clone, Debug)]
pub struct JudgedDelete {
    /// The delete's own id.
    pub id: CertId,
    /// Who signed it (it ends only slivers this key holds).
    pub signer: PublicKey,
    /// Its body.
    pub delete: SliceDelete,
    /// Until when it is kept (unix seconds, clock skew included).
    pub expires: u64,
    /// The ids of its chain's links, from the root's first certificate to the delete's
    /// signer's (a revocation of any of them voids it).
    pub chain: Vec<CertId>,
}

/// A held revocation.
#[derive(Clone, Debug)]
pub struct HeldRevocation {
    /// The revocation's own id.
    pub id: CertId,
    /// Who signed it.
    pub revoker: PublicKey,
    /// Its body.
    pub revocation: Revocation,
    /// When the object it revokes would have expired anyway (unix seconds, clock skew
    /// included): after that it guards nothing and is dropped (as CRLite does).
    pub expires: u64,
}

/// A revocation just held, with the file every node keeps for it.
#[derive(Clone, Debug)]
pub struct HeldFile {
    /// The revocation.
    pub revocation: Signed<Revocation>,
    /// Its canonical file: the revocation, the revoked object, and the chain objects that
    /// link it to the trusted root, in that order.
    pub file: Vec<u8>,
    /// The id of a revocation by the same key of the same object that this one replaced
    /// (the smaller id is kept).
    pub replaced: Option<CertId>,
}

/// Revocations by target, bounded. Only revocations whose revoker was found entitled (the
/// target's issuer or a key above it in its chain) are ever added, so nobody can crowd
/// out a real revocation with revocations of their own; a target holds at most one
/// revocation per entitled key, hence at most [`MAX_CHAIN_LINKS`].
#[derive(Default, Debug)]
pub struct RevocationSet {
    by_target: HashMap<CertId, Vec<HeldRevocation>>,
    per_revoker: HashMap<PublicKey, usize>,
    len: usize,
}

/// Why a revocation was not held. Each variant is a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The revocation itself does not open (bad signature, wrong kind, malformed).
    #[error("the revocation does not open: {0}")]
    Object(#[from] ObjectError),
    /// The file is not a credential file.
    #[error("the revocation file does not decode: {0}")]
    File(String),
    /// The revoked object is not carried, so entitlement cannot be decided.
    #[error(
        "the revocation of {target} does not carry the object it revokes (a revocation file holds the revocation, the revoked object and that object's chain; make it with `authority revoke --cert`)"
    )]
    NoTarget {
        /// What it names.
        target: CertId,
    },
    /// The object carried is not the one the revocation names.
    #[error("the revocation names {named} but carries {carried}")]
    TargetMismatch {
        /// What the revocation names.
        named: CertId,
        /// What the file carries in its place.
        carried: CertId,
    },
    /// The revoked object does not verify under this policy: nobody here can be entitled
    /// to revoke it (and nothing here depends on it).
    #[error("the revoked object {target} does not verify here: {error}")]
    Target {
        /// The revoked object.
        target: CertId,
        /// Why it does not verify.
        error: Box<VerifyError>,
    },
    /// Only certificates and delegations are revoked (a ticket ends with its slice).
    #[error("a {kind} cannot be revoked (delete the slice instead)")]
    NotRevocable {
        /// The target's kind.
        kind: Kind,
    },
    /// One revoker holds as many revocations as it may.
    #[error("{revoker} already has {max} revocations held here, its limit")]
    RevokerFull {
        /// The revoker.
        revoker: PublicKey,
        /// The limit.
        max: usize,
    },
    /// The signer is not an authority in the target's chain at or above its issuer.
    #[error(
        "{revoker} may not revoke the {kind} for {subject} ({target}): only an authority that issued it or is above it in its chain may"
    )]
    Unentitled {
        /// Who signed the revocation.
        revoker: PublicKey,
        /// The target's kind.
        kind: Kind,
        /// Whom the target certifies.
        subject: String,
        /// The target.
        target: CertId,
    },
    /// This revoker's revocation of this target is already held (re-sent, or re-signed).
    #[error("already held: {revoker} revoked {target} before")]
    AlreadyHeld {
        /// The revoker.
        revoker: PublicKey,
        /// The target.
        target: CertId,
    },
    /// The set is full of live revocations.
    #[error("the revocation set holds {0} live revocations, its limit")]
    Full(usize),
}

impl RevocationSet {
    /// Adds a revocation whose revoker was found entitled (see [`Verifier::add_revocation`]).
    /// One per (target, revoker): of two by the same key, every node keeps the one with the
    /// smaller id, whatever order they arrive in (so all hold the same set); the other is
    /// [`RevocationError::AlreadyHeld`]. Returns the id of the revocation replaced, if any.
    fn add(
        &mut self,
        r: &Signed<Revocation>,
        expires: u64,
        now: u64,
    ) -> Result<Option<CertId>, RevocationError> {
        if let Some(held) = self.by_target.get_mut(&r.body.target)
            && let Some(h) = held.iter_mut().find(|h| h.revoker == r.signer)
        {
            if r.id >= h.id {
                return Err(RevocationError::AlreadyHeld {
                    revoker: r.signer,
                    target: r.body.target,
                });
            }
            let replaced = h.id;
            *h = HeldRevocation {
                id: r.id,
                revoker: r.signer,
                revocation: r.body.clone(),
                expires,
            };
            return Ok(Some(replaced));
        }
        if self.len >= MAX_REVOCATIONS {
            self.prune(now);
            if self.len >= MAX_REVOCATIONS {
                return Err(RevocationError::Full(self.len));
            }
        }
        let mine = self.per_revoker.entry(r.signer).or_insert(0);
        if *mine >= MAX_REVOCATIONS_PER_REVOKER {
            return Err(RevocationError::RevokerFull {
                revoker: r.signer,
                max: MAX_REVOCATIONS_PER_REVOKER,
            });
        }
        *mine += 1;
        let held = self.by_target.entry(r.body.target).or_default();
        held.push(HeldRevocation {
            id: r.id,
            revoker: r.signer,
            revocation: r.body.clone(),
            expires,
        });
        self.len += 1;
        Ok(None)
    }
    /// Drops revocations of objects that have expired by `now` (they guard nothing);
    /// returns their ids.
    pub fn prune(&mut self, now: u64) -> Vec<CertId> {
        let mut gone = vec![];
        let per_revoker = &mut self.per_revoker;
        self.by_target.retain(|_, held| {
            held.retain(|h| {
                let live = h.expires >= now;
                if !live {
                    gone.push(h.id);
                    if let Some(n) = per_revoker.get_mut(&h.revoker) {
                        *n = n.saturating_sub(1);
                    }
                }
                live
            });
            !held.is_empty()
        });
        self.per_revoker.retain(|_, n| *n > 0);
        self.len = self.len.saturating_sub(gone.len());
        gone
    }
    /// A revocation of `target` signed by one of `entitled`.
    pub fn find(&self, target: &CertId, entitled: &[PublicKey]) -> Option<&HeldRevocation> {
        self.by_target
            .get(target)?
            .iter()
            .find(|h| entitled.contains(&h.revoker))
    }
    /// How many are held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Ticket nonces admitted within the replay window.
#[derive(Default, Debug)]
pub struct ReplayGuard {
    seen: HashMap<(PublicKey, Nonce), u64>,
}

impl ReplayGuard {
    /// Admits `(signer, nonce)` once, for tickets issued within the window.
    pub fn admit(
        &mut self,
        signer: PublicKey,
        nonce: Nonce,
        issued_at: u64,
        now: u64,
    ) -> Result<(), VerifyError> {
        if issued_at.saturating_add(REPLAY_WINDOW_SECS) < now
            || issued_at > now.saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(VerifyError::StaleTicket {
                issued_at,
                window: REPLAY_WINDOW_SECS,
                now,
            });
        }
        if self.seen.contains_key(&(signer, nonce)) {
            return Err(VerifyError::Replayed { signer, nonce });
        }
        if self.seen.len() >= MAX_REPLAY_ENTRIES {
            self.seen.retain(|_, forget_at| *forget_at >= now);
            if self.seen.len() >= MAX_REPLAY_ENTRIES {
                return Err(VerifyError::ReplayGuardFull(self.seen.len()));
            }
        }
        let forget_at = issued_at.saturating_add(REPLAY_WINDOW_SECS + CLOCK_SKEW_SECS);
        self.seen.insert((signer, nonce), forget_at);
        Ok(())
    }
}

/// Objects opened (signature checked, body decoded) shared by the verifiers of one
/// process. Opening is a pure function of the bytes, so sharing it changes no answer:
/// trust, validity, audience and revocations are still judged by each verifier on every
/// call. The simulator runs a thousand nodes' verifiers in one process, which would
/// otherwise check every node certificate a million times. Bounded by
/// [`MAX_SHARED_OPENED`]; a node daemon has one verifier and does not need it.
#[derive(Clone, Debug, Default)]
pub struct SharedOpened(Arc<Mutex<HashMap<CertId, Arc<Opened>>>>);

impl SharedOpened {
    fn get(&self, id: &CertId) -> Option<Arc<Opened>> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn put(&self, id: CertId, o: Arc<Opened>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_SHARED_OPENED {
                // Any victim will do: a miss costs one signature check, never a wrong answer.
                if let Some(victim) = m.keys().next().copied() {
                    m.remove(&victim);
                }
            }
            m.insert(id, o);
        }
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies chains against a policy, with a cache, revocations and a replay guard.
#[derive(Debug)]
pub struct Verifier {
    policy: TrustPolicy,
    revocations: RevocationSet,
    replay: ReplayGuard,
    cache: HashMap<CertId, Arc<Opened>>,
    /// Objects whose signature failed, with why: the same junk sent again costs a hash.
    bad: HashMap<CertId, ObjectError>,
    /// Signature verifications made (for tests and benchmarks of hostile input's cost).
    signature_checks: u64,
    keys: HashMap<PublicKey, VerifyingKey>,
    shared: Option<SharedOpened>,
}

impl Verifier {
    /// A verifier for a policy.
    pub fn new(policy: TrustPolicy) -> Verifier {
        Verifier {
            policy,
            revocations: RevocationSet::default(),
            replay: ReplayGuard::default(),
            cache: HashMap::new(),
            bad: HashMap::new(),
            signature_checks: 0,
            keys: HashMap::new(),
            shared: None,
        }
    }

    /// A verifier for a policy that opens objects through `shared` (see [`SharedOpened`]).
    pub fn with_shared(policy: TrustPolicy, shared: SharedOpened) -> Verifier {
        Verifier {
            shared: Some(shared),
            ..Verifier::new(policy)
        }
    }

    /// The policy.
    pub fn policy(&self) -> &TrustPolicy {
        &self.policy
    }

    /// Judges a revocation file (the revocation, the object it revokes, and that object's
    /// chain) and holds the revocation if, and only if, its signer is entitled: an authority
    /// (the trusted root, or the subject of an authority certificate) that issued the
    /// revoked certificate or delegation or is above it in a chain that verifies under this
    /// policy at `now`. Users and delegates revoke nothing (a ticket ends with its slice):
    /// otherwise anyone with a certificate could sign tickets and revocations of them
    /// without end. Entitlement is decided here, before anything is held, so a caller logs
    /// and forwards only what was held. The target's chain is judged without revocations
    /// (revoking what is already revoked below a revoked authority is still entitled, so
    /// every node holds the same set whatever order revocations arrive in).
    pub fn add_revocation(&mut self, file: &[u8], now: u64) -> Result<HeldFile, RevocationError> {
        let cred =
            Credential::from_bytes(file).map_err(|e| RevocationError::File(e.to_string()))?;
        let r = objects::open::<Revocation>(cred.leaf())?;
        let mut support = cred.chain();
        let target = support.next().ok_or(RevocationError::NoTarget {
            target: r.body.target,
        })?;
        let carried = CertId::of(target);
        if carried != r.body.target {
            return Err(RevocationError::TargetMismatch {
                named: r.body.target,
                carried,
            });
        }
        let pool: Vec<&[u8]> = support.collect();
        let ctx = Context { now, node: None };
        let v = self
            .walk(target, &pool, &ctx, false)
            .map_err(|e| RevocationError::Target {
                target: carried,
                error: Box::new(e),
            })?;
        if !matches!(
            v.leaf.kind,
            Kind::AuthorityCert | Kind::UserCert | Kind::NodeCert | Kind::Delegation
        ) {
            return Err(RevocationError::NotRevocable { kind: v.leaf.kind });
        }
        // Links are root side first: the first is signed by the root (an authority), and a
        // later one by an authority only if the link before it is an authority certificate.
        let authorities = v.links.iter().enumerate().filter_map(|(i, l)| {
            let by_authority = i == 0
                || v.links
                    .get(i.wrapping_sub(1))
                    .is_some_and(|above| above.kind == Kind::AuthorityCert);
            by_authority.then_some(l.signer)
        });
        if !authorities.into_iter().any(|k| k == r.signer) {
            return Err(RevocationError::Unentitled {
                revoker: r.signer,
                kind: v.leaf.kind,
                subject: v.leaf.label(),
                target: carried,
            });
        }
        let expires = v
            .leaf
            .validity()
            .map_or(u64::MAX, |x| x.not_after)
            .min(v.effective.validity.not_after)
            .saturating_add(CLOCK_SKEW_SECS);
        // The file as every node keeps, logs and passes it on: the revocation, the target,
        // and only the chain objects that link it to the root (padding is dropped, so one
        // revocation has one file everywhere).
        let mut kept = vec![target.to_vec()];
        let ids: Vec<CertId> = v.links.iter().rev().skip(1).map(|l| l.id).collect();
        for id in ids {
            if let Some(b) = pool.iter().find(|b| CertId::of(b) == id) {
                kept.push(b.to_vec());
            }
        }
        let canonical = Credential::new(cred.leaf().to_vec(), kept)
            .to_bytes()
            .map_err(|e| RevocationError::File(e.to_string()))?;
        let replaced = self.revocations.add(&r, expires, now)?;
        self.cache.remove(&r.body.target);
        Ok(HeldFile {
            revocation: r,
            file: canonical,
            replaced,
        })
    }

    /// Drops held revocations whose targets have expired by `now`; returns their ids.
    pub fn prune_revocations(&mut self, now: u64) -> Vec<CertId> {
        self.revocations.prune(now)
    }

    /// The revocations held.
    pub fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }

    /// An object as decoded: verified if the cache holds it, otherwise decoded with its
    /// signature unchecked (see [`Verifier::confirm`]); a known forgery fails at once.
    fn peek(&mut self, bytes: &[u8]) -> Result<Arc<Opened>, ObjectError> {
        let id = CertId::of(bytes);
        if let Some(o) = self.cache.get(&id) {
            return Ok(o.clone());
        }
        if let Some(e) = self.bad.get(&id) {
            return Err(e.clone());
        }
        if let Some(o) = self.shared.as_ref().and_then(|s| s.get(&id)) {
            return Ok(o);
        }
        match decode_unchecked(bytes, id) {
            Ok(o) => Ok(Arc::new(o)),
            // A body that does not decode: say why as if its signature had been checked
            // first (a forgery is reported as one), at the cost of that one check, once.
            Err(e) => {
                self.signature_checks += 1;
                let why = objects::decode_envelope(bytes)
                    .and_then(|env| objects::check_signature(&env))
                    .err()
                    .unwrap_or(e);
                self.remember_bad(id, why.clone());
                Err(why)
            }
        }
    }

    fn remember_bad(&mut self, id: CertId, why: ObjectError) {
        if self.bad.len() >= MAX_BAD_OBJECTS {
            // Any victim will do: forgetting one costs one signature check later.
            if let Some(victim) = self.bad.keys().next().copied() {
                self.bad.remove(&victim);
            }
        }
        self.bad.insert(id, why);
    }

    /// Confirms the signature of a peeked object (once: the verified object is cached, a
    /// failure is remembered), and returns it verified.
    fn confirm(&mut self, bytes: &[u8], peeked: &Arc<Opened>) -> Result<Arc<Opened>, ObjectError> {
        if self.cache.contains_key(&peeked.id) {
            return Ok(peeked.clone());
        }
        match self.open_cached(bytes) {
            Ok(o) => Ok(o),
            Err(e) => {
                self.remember_bad(peeked.id, e.clone());
                Err(e)
            }
        }
    }

    /// Opens bytes through the cache: a hit skips the signature check.
    pub fn open_cached(&mut self, bytes: &[u8]) -> Result<Arc<Opened>, ObjectError> {
        let id = CertId::of(bytes);
        if let Some(o) = self.cache.get(&id) {
            return Ok(o.clone());
        }
        let shared = self.shared.as_ref().and_then(|s| s.get(&id));
        if shared.is_none() {
            self.signature_checks += 1;
        }
        let keys = &mut self.keys;
        let (o, fresh) = match shared {
            Some(o) => (o, false),
            None => (
                Arc::new(open_any_with(bytes, id, |pk| {
                    if let Some(k) = keys.get(pk) {
                        return Ok(*k);
                    }
                    let k = pk.verifying_key().map_err(|_| ObjectError::BadSignature {
                        kind: Kind::AuthorityRoot,
                        signer: *pk,
                    })?;
                    if keys.len() >= MAX_CACHED_KEYS {
                        keys.clear();
                    }
                    keys.insert(*pk, k);
                    Ok(k)
                })?),
                true,
            ),
        };
        if let Some(s) = &self.shared {
            // The shared table is this verifier's cache: a private copy of it in each of
            // the process's thousands of verifiers was tens of bytes per (node, member).
            if fresh {
                s.put(id, o.clone());
            }
            return Ok(o);
        }
        if self.cache.len() >= MAX_CACHED_OBJECTS {
            // Any victim will do: a miss costs one signature check, never a wrong answer.
            if let Some(victim) = self.cache.keys().next().copied() {
                self.cache.remove(&victim);
            }
        }
        self.cache.insert(id, o.clone());
        Ok(o)
    }

    /// Signature verifications this verifier made so far.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks
    }

    /// Drops every cached object and remembered forgery (signer keys stay: they are not
    /// trust, only arithmetic).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
        self.bad.clear();
    }

    /// Verifies `leaf` with supporting objects `pool` (any order) at `ctx`.
    pub fn verify(
        &mut self,
        leaf: &[u8],
        pool: &[&[u8]],
        ctx: &Context,
    ) -> Result<Verified, VerifyError> {
        self.walk(leaf, pool, ctx, true)
    }

    /// The chain walk behind [`Verifier::verify`]; `honour_revocations` is false only when
    /// judging who may revoke an object.
    fn walk(
        &mut self,
        leaf: &[u8],
        pool: &[&[u8]],
        ctx: &Context,
        honour_revocations: bool,
    ) -> Result<Verified, VerifyError> {
        // Structure first, with no signature checked: which objects would link the leaf to a
        // key the policy trusts. A credential that leads nowhere costs no signature check.
        let leaf_bytes = leaf;
        let leaf = self.peek(leaf_bytes)?;
        let mut path: Vec<(&[u8], Arc<Opened>)> = vec![(leaf_bytes, leaf.clone())];
        let mut peeked: Vec<Option<Result<Arc<Opened>, ObjectError>>> = vec![None; pool.len()];
        let mut signer = leaf.signer;
        let root = loop {
            if let Some(root) = self.policy.find(&signer) {
                break root.clone();
            }
            if path.len() >= MAX_CHAIN_LINKS {
                return Err(VerifyError::ChainTooLong {
                    leaf: leaf.kind,
                    max: MAX_CHAIN_LINKS,
                });
            }
            let mut parent = None;
            let mut first_error = None;
            for (slot, bytes) in peeked.iter_mut().zip(pool) {
                let r = slot.get_or_insert_with(|| self.peek(bytes));
                match r {
                    Ok(o) if o.subject() == Some(signer) && o.kind != Kind::NodeCert => {
                        parent = Some((*bytes, o.clone()));
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.clone());
                    }
                }
            }
            match (parent, first_error) {
                (Some((bytes, p)), _) => {
                    signer = p.signer;
                    path.push((bytes, p));
                }
                (None, Some(e)) => return Err(e.into()),
                (None, None) => return Err(VerifyError::UntrustedRoot { key: signer }),
            }
        };
        // Then signatures, from the trusted root down: a forged link costs one check and
        // ends the walk (each object is checked at most once, and remembered either way).
        let mut checked = Vec::with_capacity(path.len());
        for (bytes, o) in path.iter().rev() {
            checked.push(self.confirm(bytes, o)?);
        }
        checked.reverse();
        let path = checked;
        let leaf = path.first().cloned().unwrap_or(leaf);

        if let Object::AuthorityRoot(r) = &leaf.object
            && path.len() == 1
            && !root.namespaces.iter().any(|ns| r.name.is_within(ns))
        {
            return Err(VerifyError::UnknownAuthorityRoot {
                name: r.name.clone(),
            });
        }

        let mut reach = Reach {
            key: root.key,
            role: Role::Authority,
            label: root.name.to_string(),
            authority: root.name.clone(),
            names: root
                .namespaces
                .iter()
                .map(|n| Pattern::Below(n.clone()))
                .collect(),
            slices: root
                .namespaces
                .iter()
                .map(|n| Pattern::Below(n.clone()))
                .collect(),
            grant: Grant {
                rights: Rights::ALL,
                caps: root.caps,
                // The owner's network cap for this authority: every link must narrow it.
                network: root.network.clone(),
                nodes: NodeSet::AnyTrusting,
                validity: Validity::ALWAYS,
            },
        };
        let mut responsible = Responsible {
            user: None,
            user_key: None,
            authority: root.name.clone(),
            root: root.name.clone(),
        };
        let mut entitled = vec![root.key];
        let mut links = Vec::with_capacity(path.len());
        for link in path.iter().rev() {
            if honour_revocations && let Some(r) = self.revocations.find(&link.id, &entitled) {
                return Err(VerifyError::Revoked {
                    kind: link.kind,
                    subject: link.label(),
                    id: link.id,
                    reason: r.revocation.reason.clone(),
                });
            }
            if let Some(v) = link.validity() {
                check_time(link, v, ctx.now)?;
            }
            if let Some(next) = step(&reach, link, &mut responsible)? {
                reach = next;
                entitled.push(reach.key);
            }
            links.push(LinkSummary {
                kind: link.kind,
                id: link.id,
                signer: link.signer,
                label: link.label(),
            });
        }
        if let (Some(node), Object::SliceTicket(_) | Object::Delegation(_)) =
            (ctx.node, &leaf.object)
            && !reach.grant.nodes.contains(&node)
        {
            return Err(VerifyError::WrongAudience {
                kind: leaf.kind,
                node: node.peer_id(),
            });
        }
        Ok(Verified {
            leaf,
            responsible,
            effective: reach.grant,
            links,
        })
    }

    /// Judges a slice delete file (the delete and its signer's chain): it must verify
    /// under this policy like a ticket for the same slice would (a user, or a delegate for
    /// that slice, certified and not revoked). Nothing else is held or passed on.
    pub fn judge_delete(&mut self, file: &[u8], now: u64) -> Result<JudgedDelete, VerifyError> {
        let cred = Credential::from_bytes(file).map_err(ObjectError::from)?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let v = self.verify(cred.leaf(), &pool, &Context { now, node: None })?;
        let Object::SliceDelete(delete) = &v.leaf.object else {
            return Err(ObjectError::WrongKind {
                expected: Kind::SliceDelete,
                found: v.leaf.kind,
            }
            .into());
        };
        // Kept while a ticket it ends could still be valid: no ticket its signer issued
        // outlives the signer's own chain.
        let expires = delete
            .validity
            .not_after
            .min(v.effective.validity.not_after)
            .saturating_add(CLOCK_SKEW_SECS);
        Ok(JudgedDelete {
            id: v.leaf.id,
            signer: v.leaf.signer,
            delete: delete.clone(),
            expires,
            chain: v.links.iter().map(|l| l.id).collect(),
        })
    }

    /// Verifies a ticket for admission on a node: the chain, the audience, then the
    /// replay window. A ticket passes admission once.
    pub fn admit_ticket(
        &mut self,
        ticket: &[u8],
        pool: &[&[u8]],
        ctx: &Context,
    ) -> Result<Verified, VerifyError> {
        let v = self.verify(ticket, pool, ctx)?;
        match &v.leaf.object {
            Object::SliceTicket(t) => {
                self.replay
                    .admit(v.leaf.signer, t.nonce, t.issued_at, ctx.now)?;
                Ok(v)
            }
            _ => Err(ObjectError::WrongKind {
                expected: Kind::SliceTicket,
                found: v.leaf.kind,
            }
            .into()),
        }
    }
}

fn check_time(link: &Opened, v: Validity, now: u64) -> Result<(), VerifyError> {
    if now.saturating_add(CLOCK_SKEW_SECS) < v.not_before {
        return Err(VerifyError::NotYetValid {
            kind: link.kind,
            subject: link.label(),
            not_before: v.not_before,
            now,
        });
    }
    if now > v.not_after.saturating_add(CLOCK_SKEW_SECS) {
        return Err(VerifyError::Expired {
            kind: link.kind,
            subject: link.label(),
            not_after: v.not_after,
            now,
        });
    }
    Ok(())
}
