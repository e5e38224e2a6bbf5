//! Signed objects: one envelope format, one domain tag per kind, and the bodies.
//!
//! Invariants:
//! - The signature covers `SIGNATURE_CONTEXT || tag(kind) || 0 || signer || body` over the
//!   body bytes as received; it is checked with `verify_strict` before the body is decoded.
//! - A kind's tag is never reused, so bytes signed as one kind never verify as another.
//! - An object's identity ([`CertId`]) is the SHA-256 of its envelope bytes; since decoding
//!   is canonical, one object has one id.

use crate::bytes::byte_newtype;
use crate::caps::{Grant, NetworkRights, NodeSet, ResourceCaps, Validity};
use crate::codec::{self, CodecError};
use crate::keys::{PublicKey, SecretKey};
use crate::names::{Name, Pattern};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::fmt;

byte_newtype!(
    /// SHA-256 of a signed object's envelope bytes: how revocations and receipts name it.
    CertId,
    32
);
byte_newtype!(
    /// SHA-256 of a Wasm module's bytes.
    ModuleHash,
    32
);
byte_newtype!(
    /// A ticket's random nonce.
    Nonce,
    16
);
byte_newtype!(
    /// SHA-256 of an [`Invocation`]: what a ticket signs about the arguments and
    /// environment its slivers run with.
    InvocationHash,
    32
);

/// Most bytes of all arguments and environment variables of one invocation together (they
/// are recorded in the node's log with every sliver).
pub const MAX_INVOCATION_BYTES: usize = 16 * 1024;
/// Most arguments, and most environment variables, of one invocation.
pub const MAX_INVOCATION_ITEMS: usize = 64;

/// The arguments and environment a sliver runs with. A ticket signs their hash, so nobody
/// who holds the ticket (a node owner who received it, say) can run the researcher's module
/// with other arguments in the researcher's name; the node records them with the sliver, so
/// an auditor sees what the person asked to run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Arguments (without argv[0]).
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
}

impl Invocation {
    /// Arguments and environment.
    pub fn new(args: Vec<String>, env: Vec<(String, String)>) -> Invocation {
        Invocation { args, env }
    }

    /// Refuses an invocation over the limits.
    pub fn validate(&self) -> Result<(), String> {
        let bytes: usize = self
            .args
            .iter()
            .map(String::len)
            .chain(self.env.iter().map(|(k, v)| k.len() + v.len()))
            .sum();
        if self.args.len() > MAX_INVOCATION_ITEMS
            || self.env.len() > MAX_INVOCATION_ITEMS
            || bytes > MAX_INVOCATION_BYTES
        {
            return Err(format!(
                "{} arguments and {} variables of {bytes} bytes: at most {MAX_INVOCATION_ITEMS} of each and {MAX_INVOCATION_BYTES} bytes",
                self.args.len(),
                self.env.len()
            ));
        }
        Ok(())
    }

    /// The hash a ticket signs: SHA-256 over a domain tag and the canonical encoding.
    pub fn hash(&self) -> InvocationHash {
        let mut h = Sha256::new();
        h.update(b"slicefed invocation v1\0");
        h.update(codec::encode("invocation", self).unwrap_or_default());
        InvocationHash(h.finalize().into())
    }
}

impl CertId {
    /// The id of envelope bytes.
    pub fn of(envelope_bytes: &[u8]) -> CertId {
        CertId(Sha256::digest(envelope_bytes).into())
    }
}
impl ModuleHash {
    /// The hash of module bytes.
    pub fn of(module: &[u8]) -> ModuleHash {
        ModuleHash(Sha256::digest(module).into())
    }
}

/// Envelope format version. 2: network rights carry the sensors right (the bodies of
/// certificates, delegations and tickets changed; version 1 objects do not open).
pub const ENVELOPE_VERSION: u8 = 2;
/// Prefix of every signed message, so slicefed signatures mean nothing to other protocols.
pub const SIGNATURE_CONTEXT: &[u8] = b"slicefed signature v1\0";
/// Largest certificate envelope (authority, user, node, delegation, revocation, receipt).
pub const MAX_CERTIFICATE_BYTES: usize = 4 * 1024;
/// Largest ticket envelope: a ticket may name up to 1,024 nodes.
pub const MAX_TICKET_BYTES: usize = 40 * 1024;
/// Largest credential file (a leaf and its chain).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;
/// Most objects in one credential file.
pub const MAX_CREDENTIAL_OBJECTS: usize = 8;
/// Longest free-text reason.
pub const MAX_REASON_BYTES: usize = 512;

/// The kinds of signed object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// An authority's self-signed statement of its name and key (`authority.pub`).
    AuthorityRoot = 1,
    /// An authority certifying a sub-authority (federation).
    AuthorityCert = 2,
    /// An authority certifying a user.
    UserCert = 3,
    /// An authority certifying a node.
    NodeCert = 4,
    /// A user (or delegate) letting another key act for some slices.
    Delegation = 5,
    /// A slice ticket: create a sliver of a slice on some nodes.
    SliceTicket = 6,
    /// A revocation of another object.
    Revocation = 7,
    /// A node's signed answer to a ticket.
    NodeReceipt = 8,
    /// A slice's holder ends it everywhere.
    SliceDelete = 9,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::AuthorityRoot,
        Kind::AuthorityCert,
        Kind::UserCert,
        Kind::NodeCert,
        Kind::Delegation,
        Kind::SliceTicket,
        Kind::Revocation,
        Kind::NodeReceipt,
        Kind::SliceDelete,
    ];
    /// The domain tag signed with every object of this kind.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::AuthorityRoot => "slicefed/authority-root",
            Kind::AuthorityCert => "slicefed/authority-certificate",
            Kind::UserCert => "slicefed/user-certificate",
            Kind::NodeCert => "slicefed/node-certificate",
            Kind::Delegation => "slicefed/delegation",
            Kind::SliceTicket => "slicefed/slice-ticket",
            Kind::Revocation => "slicefed/revocation",
            Kind::NodeReceipt => "slicefed/node-receipt",
            Kind::SliceDelete => "slicefed/slice-delete",
        }
    }
    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AuthorityRoot => "authority root",
            Kind::AuthorityCert => "authority certificate",
            Kind::UserCert => "user certificate",
            Kind::NodeCert => "node certificate",
            Kind::Delegation => "delegation",
            Kind::SliceTicket => "slice ticket",
            Kind::Revocation => "revocation",
            Kind::NodeReceipt => "node receipt",
            Kind::SliceDelete => "slice delete",
        }
    }
    /// The byte limit for an envelope of this kind.
    pub fn max_bytes(self) -> usize {
        match self {
            Kind::SliceTicket => MAX_TICKET_BYTES,
            _ => MAX_CERTIFICATE_BYTES,
        }
    }
}
// One byte in the binary codec; the tag's last part (`slice-ticket`) in JSON.
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.tag().trim_start_matches("slicefed/"))
        } else {
            s.serialize_u8(*self as u8)
        }
    }
}
impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Kind::ALL
                .into_iter()
                .find(|k| k.tag().trim_start_matches("slicefed/") == s)
                .ok_or_else(|| D::Error::custom(format!("unknown object kind `{s}`")))
        } else {
            Kind::try_from(u8::deserialize(d)?).map_err(D::Error::custom)
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
impl TryFrom<u8> for Kind {
    type Error = String;
    fn try_from(v: u8) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| *k as u8 == v)
            .ok_or_else(|| format!("unknown object kind {v}"))
    }
}
impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        k as u8
    }
}

/// Why a signed object was not accepted on its own (before any chain logic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A version this build does not know.
    #[error("envelope version {0} is not supported (this build knows version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u8),
    /// The signature is valid, but for another kind: someone relabelled the object.
    #[error("the {presented} was signed as a {signed_as}: wrong domain tag")]
    WrongDomain {
        /// The kind the envelope claims.
        presented: Kind,
        /// The kind the signature is actually for.
        signed_as: Kind,
    },
    /// The signature does not verify.
    #[error("the {kind}'s signature by {signer} does not verify")]
    BadSignature {
        /// The kind the envelope claims.
        kind: Kind,
        /// The claimed signer.
        signer: PublicKey,
    },
    /// The object is not of the kind the caller needs.
    #[error("expected a {expected}, found a {found}")]
    WrongKind {
        /// What was needed.
        expected: Kind,
        /// What was found.
        found: Kind,
    },
    /// Decoded fine but a field is out of bounds.
    #[error("the {kind} is invalid: {detail}")]
    Invalid {
        /// The kind.
        kind: Kind,
        /// What is wrong.
        detail: String,
    },
}

/// The wire form of every signed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// What the body is.
    pub kind: Kind,
    /// Who signed.
    pub signer: PublicKey,
    /// The canonical encoding of the body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature.
    pub signature: serde_bytes::ByteArray<64>,
}

fn signed_message(kind: Kind, signer: &PublicKey, body: &[u8]) -> Vec<u8> {
    crate::keys::domain_message(kind.tag(), signer, body)
}

/// A body type with its kind and its post-decode checks.
pub trait Body: Serialize + DeserializeOwned + Clone + fmt::Debug {
    /// The kind this body is signed as.
    const KIND: Kind;
    /// Bounds and consistency checks beyond what decoding enforces.
    fn validate(&self) -> Result<(), String>;
    /// The key this object certifies, if any.
    fn subject(&self) -> Option<PublicKey> {
        None
    }
}

/// A verified object: the signature checked, the body decoded and validated.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    /// Id of the envelope bytes.
    pub id: CertId,
    /// Who signed.
    pub signer: PublicKey,
    /// The body.
    pub body: T,
    /// The envelope bytes, as received.
    pub bytes: Vec<u8>,
}

/// Decodes an envelope (bounded by the largest kind) without checking its signature.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, ObjectError> {
    let env: Envelope = codec::decode("signed object", bytes, MAX_TICKET_BYTES)?;
    if env.version != ENVELOPE_VERSION {
        return Err(ObjectError::UnsupportedVersion(env.version));
    }
    if bytes.len() > env.kind.max_bytes() {
        return Err(CodecError::TooLarge {
            what: env.kind.name(),
            len: bytes.len(),
            max: env.kind.max_bytes(),
        }
        .into());
    }
    Ok(env)
}

/// Checks an envelope's signature with `verify_strict`. On failure, says whether the bytes
/// were signed as another kind (a relabelling attack) or are simply forged.
pub fn check_signature(env: &Envelope) -> Result<(), ObjectError> {
    let key = env
        .signer
        .verifying_key()
        .map_err(|_| ObjectError::BadSignature {
            kind: env.kind,
            signer: env.signer,
        })?;
    check_signature_with(env, &key)
}

/// [`check_signature`] with the signer's key already decompressed (callers that see the
/// same signers again keep them; decompression costs about a sixth of a verification).
pub fn check_signature_with(env: &Envelope, key: &VerifyingKey) -> Result<(), ObjectError> {
    let bad = ObjectError::BadSignature {
        kind: env.kind,
        signer: env.signer,
    };
    if key.as_bytes() != env.signer.as_bytes() {
        return Err(bad);
    }
    let sig = Signature::from_bytes(&env.signature);
    if key
        .verify_strict(&signed_message(env.kind, &env.signer, &env.body), &sig)
        .is_ok()
    {
        return Ok(());
    }
    // One verification per object on every path: telling a relabelled object from a forged
    // one costs seven more, which a person asking (`cert verify`) may pay, a node may not.
    Err(bad)
}

/// Why the signature of envelope bytes fails, told apart for a person: signed as another
/// kind (a relabelling attack: [`ObjectError::WrongDomain`]) or simply not by its signer.
/// Costs up to eight verifications; only for diagnosis, never on a node's request path.
pub fn diagnose_signature(bytes: &[u8]) -> ObjectError {
    let env = match decode_envelope(bytes) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let bad = ObjectError::BadSignature {
        kind: env.kind,
        signer: env.signer,
    };
    let Ok(key) = env.signer.verifying_key() else {
        return bad;
    };
    let sig = Signature::from_bytes(&env.signature);
    for other in Kind::ALL.into_iter().filter(|k| *k != env.kind) {
        if key
            .verify_strict(&signed_message(other, &env.signer, &env.body), &sig)
            .is_ok()
        {
            return ObjectError::WrongDomain {
                presented: env.kind,
                signed_as: other,
            };
        }
    }
    bad
}

/// Decodes and validates a body of a known kind (the signature must already be checked).
pub fn decode_body<T: Body>(env: &Envelope) -> Result<T, ObjectError> {
    if env.kind != T::KIND {
        return Err(ObjectError::WrongKind {
            expected: T::KIND,
            found: env.kind,
        });
    }
    let body: T = codec::decode(T::KIND.name(), &env.body, T::KIND.max_bytes())?;
    body.validate().map_err(|detail| ObjectError::Invalid {
        kind: T::KIND,
        detail,
    })?;
    Ok(body)
}

/// Verifies envelope bytes as an object of kind `T`: decode envelope → check signature over
/// the received body bytes → decode body.
pub fn open<T: Body>(bytes: &[u8]) -> Result<Signed<T>, ObjectError> {
    let env = decode_envelope(bytes)?;
    if env.kind != T::KIND {
        return Err(ObjectError::WrongKind {
            expected: T::KIND,
            found: env.kind,
        });
    }
    check_signature(&env)?;
    open_checked(bytes, env)
}

/// Decodes the body of an envelope whose signature the caller has checked.
pub fn open_checked<T: Body>(bytes: &[u8], env: Envelope) -> Result<Signed<T>, ObjectError> {
    let body = decode_body::<T>(&env)?;
    Ok(Signed {
        id: CertId::of(bytes),
        signer: env.signer,
        body,
        bytes: bytes.to_vec(),
    })
}

/// Signs a body, producing envelope bytes. Validates first, so we never sign what we would
/// refuse to accept.
pub fn sign<T: Body>(key: &SecretKey, body: &T) -> Result<Signed<T>, ObjectError> {
    body.validate().map_err(|detail| ObjectError::Invalid {
        kind: T::KIND,
        detail,
    })?;
    let signer = key.public();
    let body_bytes = codec::encode(T::KIND.name(), body)?;
    let sig = key.sign(&signed_message(T::KIND, &signer, &body_bytes));
    let env = Envelope {
        version: ENVELOPE_VERSION,
        kind: T::KIND,
        signer,
        body: body_bytes,
        signature: serde_bytes::ByteArray::new(sig.to_bytes()),
    };
    let bytes = codec::encode("signed object", &env)?;
    if bytes.len() > T::KIND.max_bytes() {
        return Err(CodecError::TooLarge {
            what: T::KIND.name(),
            len: bytes.len(),
            max: T::KIND.max_bytes(),
        }
        .into());
    }
    Ok(Signed {
        id: CertId::of(&bytes),
        signer,
        body: body.clone(),
        bytes,
    })
}

/// Test-only: signs body bytes under an arbitrary kind's tag while labelling the envelope
/// as another kind. Exists so the wrong-domain rejection can be demonstrated.
#[doc(hidden)]
pub fn sign_mislabelled(key: &SecretKey, presented: Kind, signed_as: Kind, body: &[u8]) -> Vec<u8> {
    let signer = key.public();
    let sig = key.sign(&signed_message(signed_as, &signer, body));
    let env = Envelope {
        version: ENVELOPE_VERSION,
        kind: presented,
        signer,
        body: body.to_vec(),
        signature: serde_bytes::ByteArray::new(sig.to_bytes()),
    };
    codec::encode("signed object", &env).unwrap_or_default()
}

fn check_reason(reason: &str) -> Result<(), String> {
    if reason.len() > MAX_REASON_BYTES {
        Err(format!(
            "reason is {} bytes, at most {MAX_REASON_BYTES}",
            reason.len()
        ))
    } else {
        Ok(())
    }
}

/// `authority.pub`: an authority's self-signed name and key. Trust comes from the policy
/// naming this key, never from this object; it lets people exchange keys with a name attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityRoot {
    /// The authority's name (its default namespace).
    pub name: Name,
    /// When it was created (unix seconds).
    pub created: u64,
}
impl Body for AuthorityRoot {
    const KIND: Kind = Kind::AuthorityRoot;
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A sub-authority: its namespace must lie strictly inside the issuer's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityCert {
    /// The sub-authority's key.
    pub subject: PublicKey,
    /// Its namespace.
    pub namespace: Name,
    /// What it may grant.
    pub grant: Grant,
}
impl Body for AuthorityCert {
    const KIND: Kind = Kind::AuthorityCert;
    fn validate(&self) -> Result<(), String> {
        self.grant.validate()
    }
    fn subject(&self) -> Option<PublicKey> {
        Some(self.subject)
    }
}

/// A person, certified by an authority: the responsible party for what their slices do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCert {
    /// The user's key.
    pub subject: PublicKey,
    /// The user's name (inside the authority's namespace).
    pub name: Name,
    /// Slices the user may create.
    pub slices: Pattern,
    /// What the user may do.
    pub grant: Grant,
}
impl Body for UserCert {
    const KIND: Kind = Kind::UserCert;
    fn validate(&self) -> Result<(), String> {
        self.grant.validate()
    }
    fn subject(&self) -> Option<PublicKey> {
        Some(self.subject)
    }
}

/// A node, certified by an authority; its key is its libp2p identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    /// The node's key.
    pub subject: PublicKey,
    /// The node's name (inside the authority's namespace).
    pub name: Name,
    /// Validity.
    pub validity: Validity,
}
impl Body for NodeCert {
    const KIND: Kind = Kind::NodeCert;
    fn validate(&self) -> Result<(), String> {
        self.validity.validate()
    }
    fn subject(&self) -> Option<PublicKey> {
        Some(self.subject)
    }
}

/// A user (or a delegate) lets another key act for some of its slices, with fewer rights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The delegate's key.
    pub subject: PublicKey,
    /// Slices it may act for.
    pub slices: Pattern,
    /// What it may do.
    pub grant: Grant,
}
impl Body for Delegation {
    const KIND: Kind = Kind::Delegation;
    fn validate(&self) -> Result<(), String> {
        self.grant.validate()
    }
    fn subject(&self) -> Option<PublicKey> {
        Some(self.subject)
    }
}

/// Create a sliver of `slice` running `module` on the named nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceTicket {
    /// The slice.
    pub slice: Name,
    /// SHA-256 of the module the slivers run.
    pub module: ModuleHash,
    /// The arguments and environment the slivers run with ([`Invocation::hash`]).
    pub invocation: InvocationHash,
    /// Resource caps per sliver.
    pub caps: ResourceCaps,
    /// Network rights of each sliver.
    pub network: NetworkRights,
    /// Audience.
    pub nodes: NodeSet,
    /// Lifetime of the slivers.
    pub validity: Validity,
    /// When it was issued (unix seconds); admission only within the replay window.
    pub issued_at: u64,
    /// Random; a node admits a (signer, nonce) once.
    pub nonce: Nonce,
}
impl Body for SliceTicket {
    const KIND: Kind = Kind::SliceTicket;
    fn validate(&self) -> Result<(), String> {
        self.network.validate()?;
        self.nodes.validate()?;
        self.validity.validate()
    }
}

/// Most tickets a slice delete names.
pub const MAX_DELETE_TICKETS: usize = 64;

/// The holder of a slice ends it on every node, including those that are down when it is
/// issued (they reconcile it before they restore anything). It ends every sliver of
/// `slice` that its signer holds and whose ticket is one of `tickets` or was issued at or
/// before `issued_at`: a later slice of the same name has later tickets, so replaying the
/// delete cannot end it, and a renewal a down node never saw is ended all the same. Nodes
/// keep it until `validity.not_after`, which its signer sets to when the last ticket it
/// ends expires (or its own certificate does, whichever comes first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceDelete {
    /// The slice.
    pub slice: Name,
    /// Tickets it ends by id (those its signer knew of), at most [`MAX_DELETE_TICKETS`].
    pub tickets: Vec<CertId>,
    /// When it was issued (unix seconds): tickets issued up to then are ended too.
    pub issued_at: u64,
    /// How long nodes keep it.
    pub validity: Validity,
}
impl Body for SliceDelete {
    const KIND: Kind = Kind::SliceDelete;
    fn validate(&self) -> Result<(), String> {
        if self.tickets.len() > MAX_DELETE_TICKETS {
            return Err(format!(
                "names {} tickets, at most {MAX_DELETE_TICKETS}",
                self.tickets.len()
            ));
        }
        self.validity.validate()
    }
}

/// Revokes the object with id `target`. Honoured only if signed by that object's signer
/// or by a key above it in the same chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked object.
    pub target: CertId,
    /// Why.
    pub reason: String,
    /// When (unix seconds).
    pub revoked_at: u64,
}
impl Body for Revocation {
    const KIND: Kind = Kind::Revocation;
    fn validate(&self) -> Result<(), String> {
        check_reason(&self.reason)
    }
}

/// A node's signed answer to a ticket: admitted as a sliver, or refused with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReceipt {
    /// The ticket answered.
    pub ticket: CertId,
    /// Admitted or not.
    pub admitted: bool,
    /// The node's reason (empty when admitted).
    pub reason: String,
    /// When (unix seconds).
    pub at: u64,
}
impl Body for NodeReceipt {
    const KIND: Kind = Kind::NodeReceipt;
    fn validate(&self) -> Result<(), String> {
        check_reason(&self.reason)
    }
}

/// The file format for every signed object on disk: a leaf and the chain that supports it,
/// leaf first. Files are self-contained so a node can check a ticket with nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// [`CREDENTIAL_MAGIC`].
    pub magic: [u8; 4],
    /// Envelope bytes, leaf first.
    pub objects: Vec<serde_bytes::ByteBuf>,
}

/// The first bytes of every slicefed credential file.
pub const CREDENTIAL_MAGIC: [u8; 4] = *b"sfc1";

impl Credential {
    /// A credential from a leaf and its chain.
    pub fn new(leaf: Vec<u8>, chain: impl IntoIterator<Item = Vec<u8>>) -> Credential {
        Credential {
            magic: CREDENTIAL_MAGIC,
            objects: std::iter::once(leaf)
                .chain(chain)
                .map(serde_bytes::ByteBuf::from)
                .collect(),
        }
    }
    /// Encodes the file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("credential file", self)
    }
    /// Decodes a file, bounded, checking the magic and object count (not signatures).
    pub fn from_bytes(bytes: &[u8]) -> Result<Credential, CodecError> {
        if bytes.len() >= 4 && bytes.get(..4) != Some(&CREDENTIAL_MAGIC[..]) {
            return Err(CodecError::Invalid {
                what: "credential file",
                detail: "it does not start with the slicefed credential magic `sfc1`".into(),
            });
        }
        let c: Credential = codec::decode("credential file", bytes, MAX_CREDENTIAL_BYTES)?;
        if c.objects.is_empty() || c.objects.len() > MAX_CREDENTIAL_OBJECTS {
            return Err(CodecError::Invalid {
                what: "credential file",
                detail: format!(
                    "{} objects, expected 1 to {MAX_CREDENTIAL_OBJECTS}",
                    c.objects.len()
                ),
            });
        }
        Ok(c)
    }
    /// The leaf's envelope bytes.
    pub fn leaf(&self) -> &[u8] {
        self.objects
            .first()
            .map(|b| b.as_slice())
            .unwrap_or_default()
    }
    /// The supporting chain's envelope bytes.
    pub fn chain(&self) -> impl Iterator<Item = &[u8]> {
        self.objects.iter().skip(1).map(|b| b.as_slice())
    }
    /// A revocation file: the signed revocation (`revocation`), then the object it revokes
    /// and that object's chain (`target`, a credential of the revoked object), so any node
    /// can decide whether the revoker is entitled before it holds or forwards anything.
    pub fn revocation_file(revocation: Vec<u8>, target: &Credential) -> Credential {
        Credential::new(revocation, target.objects.iter().map(|b| b.to_vec()))
    }
}
