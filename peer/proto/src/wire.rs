//! Messages nodes exchange, as signed canonical objects.
//!
//! Invariants: each message kind has its own signature domain (never shared with trust's
//! object kinds or the ledger's); decoding is bounded and canonical (the trust codec); the
//! signature is checked before the body is trusted, and the signer must be the libp2p peer
//! the message came from or that published it.

use crate::core::{Load, RevocationDigest, Traffic};
use serde::{Deserialize, Serialize};
use slicefed_ledger::checkpoint::{Cosignature, SignedCheckpoint};
use slicefed_trust::codec::{self, CodecError};
use slicefed_trust::{PublicKey, SecretKey};

/// Signature domain of adverts.
pub const ADVERT_DOMAIN: &str = "slicefed/node-advert";
/// Largest encoded advert (a node credential is at most a few KiB).
pub const MAX_ADVERT_BYTES: usize = 16 * 1024;
/// Most tags in an advert.
pub const MAX_TAGS: usize = 16;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The signature does not verify.
    #[error("the {0} is not signed by the node it names")]
    Signature(&'static str),
    /// A field is out of bounds.
    #[error("the {what} is invalid: {why}")]
    Invalid {
        /// The message kind.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// What a node says about itself every few seconds (PlanetLab's sensors and CoMon).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertBody {
    /// The node.
    pub node: PublicKey,
    /// Its node credential (node certificate and chain), as a credential file; empty in
    /// all but its first advert after it starts (members that do not hold it ask for it:
    /// [`Request::Credential`]).
    #[serde(with = "serde_bytes")]
    pub credential: Vec<u8>,
    /// SHA-256 of its credential (`core::credential_hash`).
    pub credential_hash: serde_bytes::ByteArray<32>,
    /// Slivers running.
    pub slivers: u32,
    /// Memory free for slivers.
    pub free_memory: u64,
    /// One-minute load average × 100.
    pub load_x100: u32,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Software version.
    pub version: String,
    /// Free-form tags the owner sets (`gpu`, `eu-west`).
    pub tags: Vec<String>,
    /// Bytes it moved since it started.
    pub traffic: Traffic,
    /// Addresses it listens on (multiaddrs), so members it is not connected to can reach
    /// it for witnessing and clients can reach it for tickets.
    pub addrs: Vec<String>,
    /// When it was made, unix ms (a node ignores adverts older than the newest it has).
    pub time_ms: u64,
    /// Why it is unhealthy (it cannot record, so it refuses tickets), if it is.
    pub unhealthy: Option<String>,
    /// Its SWIM identity's bump (its start time, ms, or later after a rejoin): members
    /// probe that identity.
    pub swim_bump: u64,
}

/// A signed advert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The body.
    pub body: AdvertBody,
    /// The node's signature over the body's encoding.
    pub signature: serde_bytes::ByteArray<64>,
}

impl AdvertBody {
    fn validate(&self) -> Result<(), WireError> {
        let bad = |why: String| {
            Err(WireError::Invalid {
                what: "advert",
                why,
            })
        };
        if self.version.len() > 64 {
            return bad("version longer than 64 bytes".into());
        }
        if !self.credential.is_empty()
            && crate::core::credential_hash(&self.credential) != *self.credential_hash
        {
            return bad("a credential whose hash is not the one it names".into());
        }
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|t| t.len() > 64) {
            return bad(format!("more than {MAX_TAGS} tags or a tag over 64 bytes"));
        }
        if self
            .unhealthy
            .as_ref()
            .is_some_and(|u| u.len() > crate::core::MAX_HEALTH_BYTES)
        {
            return bad(format!(
                "a health reason over {} bytes",
                crate::core::MAX_HEALTH_BYTES
            ));
        }
        if self.addrs.len() > MAX_TAGS || self.addrs.iter().any(|t| t.len() > 256) {
            return bad(format!(
                "more than {MAX_TAGS} addresses or an address over 256 bytes"
            ));
        }
        Ok(())
    }

    /// The load part, for the core.
    pub fn load(&self) -> Load {
        Load {
            slivers: self.slivers,
            free_memory: self.free_memory,
            uptime_secs: self.uptime_secs,
            traffic: self.traffic,
            unhealthy: self.unhealthy.clone(),
            sent_ms: self.time_ms,
            swim_bump: self.swim_bump,
            full: !self.credential.is_empty(),
        }
    }

    /// Signs with the node's key.
    pub fn sign(self, key: &SecretKey) -> Result<Advert, WireError> {
        self.validate()?;
        if key.public() != self.node {
            return Err(WireError::Signature("advert"));
        }
        let bytes = codec::encode("advert", &self)?;
        Ok(Advert {
            signature: serde_bytes::ByteArray::new(key.sign_domain(ADVERT_DOMAIN, &bytes)),
            body: self,
        })
    }
}

impl Advert {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode("advert", self)?)
    }

    /// Decodes (bounded, canonical), checks the node's signature and the bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Advert, WireError> {
        let a: Advert = codec::decode("advert", bytes, MAX_ADVERT_BYTES)?;
        let body = codec::encode("advert", &a.body)?;
        a.body
            .node
            .verify_domain(ADVERT_DOMAIN, &body, &a.signature)
            .map_err(|_| WireError::Signature("advert"))?;
        a.body.validate()?;
        Ok(a)
    }
}

/// Signature domain of slice deletions.
pub const DELETE_DOMAIN: &str = "slicefed/holder-request";
/// Largest encoded request (a module of up to 15 MiB and its ticket).
pub const MAX_REQUEST_BYTES: usize = crate::MAX_REQUEST_BYTES;
/// Largest encoded response.
pub const MAX_RESPONSE_BYTES: usize = crate::MAX_RESPONSE_BYTES;
/// Most arguments or environment variables given to a sliver.
pub const MAX_ARGS: usize = 64;
/// Longest argument or environment value.
pub const MAX_ARG_BYTES: usize = 4096;
/// Bytes of entries a page answer carries at most (under the response limit).
pub const MAX_PAGE_BYTES: usize = 3 << 20;
/// Bytes of a replica file sent per answer.
pub const MAX_REPLICA_CHUNK: usize = 3 << 20;
/// Largest revocation file in a catch-up answer (the revocation, the object it revokes and
/// that object's chain).
pub const MAX_REVOCATION_BYTES: usize = slicefed_trust::objects::MAX_CREDENTIAL_BYTES;
/// Largest request on the owner's admin socket.
pub const MAX_ADMIN_REQUEST_BYTES: usize = 4096;
/// Largest gossiped cosignature message.
pub const MAX_COSIGNED_BYTES: usize = 512;

/// What a slice's holder asks one node to do with the slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HolderAction {
    /// Stop every sliver of the slice the signer holds (the node's own key: every sliver).
    Delete,
    /// Show the slice's captured output (a researcher's output is theirs and the owner's).
    ReadLogs,
}

/// The holder of a slice asks one node something about it: signed for that node, fresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRequestBody {
    /// The node asked.
    pub node: PublicKey,
    /// The slice.
    pub slice: String,
    /// When, unix seconds.
    pub time: u64,
    /// Who asks (the ticket's signer or the responsible user; the node's own key is its
    /// owner).
    pub signer: PublicKey,
    /// What is asked.
    pub action: HolderAction,
}

/// A signed [`HolderRequestBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRequest {
    /// The body.
    pub body: HolderRequestBody,
    /// The signer's signature over the body's encoding.
    pub signature: serde_bytes::ByteArray<64>,
}

impl HolderRequest {
    /// The holder signs a deletion of `slice` on `node`.
    pub fn sign(
        key: &SecretKey,
        node: PublicKey,
        slice: &str,
        time: u64,
    ) -> Result<HolderRequest, WireError> {
        HolderRequest::sign_action(key, node, slice, time, HolderAction::Delete)
    }

    /// The holder signs `action` on `slice` for `node`.
    pub fn sign_action(
        key: &SecretKey,
        node: PublicKey,
        slice: &str,
        time: u64,
        action: HolderAction,
    ) -> Result<HolderRequest, WireError> {
        let body = HolderRequestBody {
            node,
            slice: slice.into(),
            time,
            signer: key.public(),
            action,
        };
        let bytes = codec::encode("holder request", &body)?;
        Ok(HolderRequest {
            signature: serde_bytes::ByteArray::new(key.sign_domain(DELETE_DOMAIN, &bytes)),
            body,
        })
    }

    /// Checks it asks for `action`, is for `node`, fresh at `now` (unix seconds) and signed
    /// by its signer.
    pub fn verify(
        &self,
        action: HolderAction,
        node: &PublicKey,
        now: u64,
    ) -> Result<(), WireError> {
        let bad = |why: String| WireError::Invalid {
            what: "holder request",
            why,
        };
        if self.body.action != action {
            return Err(bad(format!(
                "it asks for {:?}, not {action:?}",
                self.body.action
            )));
        }
        if &self.body.node != node {
            return Err(bad("it is addressed to another node".into()));
        }
        if self.body.time.abs_diff(now) > slicefed_trust::verify::CLOCK_SKEW_SECS {
            return Err(bad(format!(
                "signed at {}, more than {}s from this node's clock ({now})",
                self.body.time,
                slicefed_trust::verify::CLOCK_SKEW_SECS
            )));
        }
        if self.body.slice.len() > 256 {
            return Err(bad("slice name over 256 bytes".into()));
        }
        let bytes = codec::encode("holder request", &self.body)?;
        self.body
            .signer
            .verify_domain(DELETE_DOMAIN, &bytes, &self.signature)
            .map_err(|_| WireError::Signature("holder request"))
    }
}

/// A sliver as a status answer shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliverStatus {
    /// Node-local id.
    pub id: u64,
    /// Its slice.
    pub slice: String,
    /// Responsible person.
    pub user: Option<String>,
    /// Their authority.
    pub authority: Option<String>,
    /// Its ticket's id, hex.
    pub ticket: String,
    /// When its ticket ends, unix seconds.
    pub expires: u64,
    /// `running`, or how it ended.
    pub state: String,
    /// CPU time used, ms.
    pub cpu_ms: u64,
    /// Peak memory, bytes.
    pub memory: u64,
    /// Flows opened (allowed and denied).
    pub flows: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
}

/// One node's answer to a status request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's peer id.
    pub node: String,
    /// Its certified name.
    pub name: String,
    /// Entries in its ledger.
    pub ledger_entries: u64,
    /// Witness cosignatures on its latest checkpoint.
    pub cosignatures: u32,
    /// Slivers (running, and recently ended).
    pub slivers: Vec<SliverStatus>,
}

/// A sliver's captured output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliverLogs {
    /// Node-local id.
    pub id: u64,
    /// The last bytes of its stdout.
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// The last bytes of its stderr.
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
}

/// One row of `nodes list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberRow {
    /// PeerId.
    pub peer_id: String,
    /// Certified name.
    pub name: String,
    /// Certifying authority.
    pub authority: String,
    /// Addresses it listens on, as far as the answering node knows.
    pub addrs: Vec<String>,
    /// Slivers running.
    pub slivers: u32,
    /// Memory free for slivers.
    pub free_memory: u64,
    /// Milliseconds since last heard from (0 for the node answering).
    pub last_seen_ms_ago: u64,
    /// `ok`, or `equivocated` once a proof against it was verified.
    pub health: String,
    /// Seconds since it started, as of its last advert.
    pub uptime_secs: u64,
    /// Bytes it moved since it started, as of its last advert.
    pub traffic: Traffic,
}

/// What a client or peer asks a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The member list.
    Members,
    /// Start a sliver: the ticket credential, the module's bytes, its arguments and env.
    Submit {
        /// Ticket credential file bytes.
        #[serde(with = "serde_bytes")]
        credential: Vec<u8>,
        /// The component.
        #[serde(with = "serde_bytes")]
        module: Vec<u8>,
        /// Arguments.
        args: Vec<String>,
        /// Environment.
        env: Vec<(String, String)>,
    },
    /// A later ticket for slivers already running.
    Renew {
        /// Ticket credential file bytes.
        #[serde(with = "serde_bytes")]
        credential: Vec<u8>,
    },
    /// Slivers here (of one slice, or all).
    Status {
        /// Only this slice.
        slice: Option<String>,
    },
    /// Captured output of a slice's slivers here, asked by the slice's holder or the
    /// node's owner ([`HolderAction::ReadLogs`]).
    Logs(HolderRequest),
    /// The holder deletes a slice here.
    Delete(HolderRequest),
    /// A revocation to honour and spread.
    Revoke {
        /// The revocation's envelope bytes.
        #[serde(with = "serde_bytes")]
        revocation: Vec<u8>,
    },
    /// A page of this node's log from `from`, with signed checkpoints at both ends.
    Entries {
        /// First entry.
        from: u64,
    },
    /// This node's latest checkpoint and its witnesses' cosignatures.
    Checkpoint,
    /// Part of the replica this node holds of another node's log (an export file).
    Replica {
        /// Whose log.
        origin: PublicKey,
        /// Byte offset in the replica file.
        offset: u64,
    },
    /// The revocations and slice deletes this node holds, in id order, after `after`, in
    /// the id ranges `buckets` names (the first byte of an id; empty: all), a page of a
    /// reconciliation (answered with at most `core::MAX_REVOCATIONS_PER_PAGE`).
    Revocations {
        /// The last id the asker already received in this catch-up.
        after: Option<slicefed_trust::CertId>,
        /// Which of the 256 id ranges (empty: all).
        #[serde(with = "serde_bytes")]
        buckets: Vec<u8>,
        /// What the asker already holds in those ranges after `after`, as each id's first 8
        /// bytes one after the other (at most `core::MAX_RECONCILE_HAVE` ids): those are not
        /// sent (the last step of range-based reconciliation, so a range that differs by one
        /// object costs that object, not the range). Bytes, not a list of integers: a list
        /// would decode each 1-byte integer into 8 bytes of memory before any bound applies.
        #[serde(with = "serde_bytes")]
        have: Vec<u8>,
    },
    /// A fingerprint of each of the 256 id ranges of the revocations and slice deletes this
    /// node holds (answered with [`Response::RevocationPrints`]): the asker then fetches
    /// only the ranges that differ from its own. With `unless`, the asker's digest of its
    /// settled set: a node whose settled set has that digest answers
    /// [`Response::HeldSame`] instead (the periodic reconciliation's usual case, ~50 bytes).
    RevocationPrints {
        /// The asker's digest, or none to have the prints whatever they are (a restart's
        /// catch-up compares everything held, settled or not).
        unless: Option<RevocationDigest>,
    },
    /// Witnessing between members (answered with [`Response::Done`]).
    Witness(WitnessNote),
    /// Entries of `origin`'s log from `from` on, out of the replica this node holds (a new
    /// witness taking over a dead node's log); answered with [`Response::ReplicaPage`].
    ReplicaEntries {
        /// Whose log.
        origin: PublicKey,
        /// First entry wanted.
        from: u64,
    },
    /// This node's credential (answered with [`Response::Credential`]): asked by a member
    /// that heard an advert naming it by hash.
    Credential,
    /// A SWIM packet (membership liveness, see `swim`): at most `swim::MAX_PACKET` bytes,
    /// from a member only; answered with [`Response::Done`], which nobody waits for.
    Swim(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Who listens, or listened lately, on `ip`: the members, and the members that left in
    /// the last [`DEPARTED_KEPT_MS`], whose addresses include it (an auditor mapping the
    /// source address of a complaint to a node, even a dead one); answered with
    /// [`Response::Members`], departed ones with health `departed`.
    AddressHolders {
        /// The address a victim saw.
        ip: std::net::IpAddr,
    },
    /// This node's cosignature, made now, of the latest checkpoint of `origin`'s log that
    /// it holds on disk as one of its witnesses (an auditor's evidence when the origin is
    /// dead or does not answer); answered with [`Response::Checkpoint`].
    Vouch {
        /// Whose log.
        origin: PublicKey,
    },
    /// The members this node lists, in key order after `after`, with their SWIM starts
    /// (answered with [`Response::MemberList`], at most [`MEMBER_LIST_PAGE`] a page): a
    /// node that starts learns the federation from one member instead of waiting for
    /// adverts, which go only on change (memberlist's push-pull, one way).
    MemberList {
        /// The last key of the page before (none: from the first).
        after: Option<PublicKey>,
    },
    /// The credentials this node holds for these members (answered with
    /// [`Response::MemberCredentials`]; at most [`CREDENTIAL_BATCH`] nodes): a node that
    /// learnt of them (a member list, SWIM news of a start) judges each before it lists it.
    MemberCredentials {
        /// Which members.
        nodes: Vec<PublicKey>,
    },
}

/// Members in one [`Response::MemberList`] page, at most (~20 KiB).
pub const MEMBER_LIST_PAGE: usize = 512;
/// Nodes one [`Request::MemberCredentials`] may name, at most (~1 KiB a credential).
pub const CREDENTIAL_BATCH: usize = 32;

/// A member as [`Response::MemberList`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedMember {
    /// Its node key.
    pub node: PublicKey,
    /// Its SWIM start (`swim::SwimId::bump`) as the lister probes it.
    pub start: u64,
}

/// A member's credential as [`Response::MemberCredentials`] gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCredential {
    /// The member.
    pub node: PublicKey,
    /// Its credential file (judged by the asker: it must be a node certificate for
    /// `node` that chains to a root the asker trusts).
    #[serde(with = "serde_bytes")]
    pub credential: Vec<u8>,
    /// The addresses the answering node holds for it (multiaddrs; at most `MAX_TAGS`,
    /// 256 bytes each).
    pub addrs: Vec<String>,
}

/// How long a node remembers the addresses of a member that left, for auditors
/// ([`Request::AddressHolders`]): two days, as long as a complaint usually takes to come.
pub const DEPARTED_KEPT_MS: u64 = 48 * 3_600_000;
/// Most departed members remembered.
pub const MAX_DEPARTED: usize = 1_024;

/// What the node's owner asks over the local admin socket (`DIR/admin/socket`, reachable
/// only by the node's own user). Nothing is signed: the socket's permissions are the
/// authentication, and it is served apart from the public port, so a flood there does not
/// lock the owner out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Stop every sliver of a slice on this node, whoever holds it (logged as the owner's
    /// action); answered with [`Response::Stopped`].
    Stop {
        /// The slice.
        slice: String,
    },
    /// Slivers here; answered with [`Response::Status`].
    Status {
        /// Only this slice.
        slice: Option<String>,
    },
    /// The federation as this node sees it; answered with [`Response::Members`].
    Members,
}

impl AdminRequest {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode("admin request", self)?)
    }
    /// Decodes (bounded, canonical).
    pub fn from_bytes(bytes: &[u8]) -> Result<AdminRequest, WireError> {
        Ok(codec::decode(
            "admin request",
            bytes,
            MAX_ADMIN_REQUEST_BYTES,
        )?)
    }
}

/// What witnesses and origins tell each other. Checkpoints go to an origin's witnesses
/// only (not to every member): each witness tells the origin and the other witnesses what
/// it cosigned, which is how a split view (one history shown to one witness, another to
/// the rest) is caught.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WitnessNote {
    /// An origin's checkpoint, to one of its witnesses.
    Checkpoint(SignedCheckpoint),
    /// A witness's cosignature, to the origin and the origin's other witnesses.
    Cosigned(Cosigned),
    /// A holder of a gone origin's log offers it (up to this checkpoint) to a new witness.
    Offer(SignedCheckpoint),
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Members, this node first.
    Members(Vec<MemberRow>),
    /// A signed receipt (envelope bytes).
    Receipt(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Status.
    Status(NodeStatus),
    /// Output.
    Logs(Vec<SliverLogs>),
    /// The slivers stopped.
    Stopped(Vec<u64>),
    /// A page of entries.
    Page {
        /// Signed checkpoint at the page's start.
        base: SignedCheckpoint,
        /// Signed checkpoint at its end.
        end: SignedCheckpoint,
        /// Leaf bytes.
        leaves: Vec<serde_bytes::ByteBuf>,
    },
    /// The latest checkpoint with cosignatures.
    Checkpoint {
        /// The checkpoint (none before the first entry).
        checkpoint: Option<SignedCheckpoint>,
        /// Witness cosignatures of it.
        cosignatures: Vec<Cosignature>,
    },
    /// Part of a replica file.
    Replica {
        /// The file's length.
        total: u64,
        /// Bytes from the requested offset.
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// Revocations (envelope bytes), in id order.
    Revocations(Vec<serde_bytes::ByteBuf>),
    /// One fingerprint per id range (see [`Request::RevocationPrints`]); 0 for an empty one.
    RevocationPrints(Vec<u64>),
    /// This node's settled revocations and deletes have the digest the asker sent.
    HeldSame,
    /// A node credential and the addresses the node listens on (see
    /// [`Request::Credential`]): a member first heard from by SWIM can then be reached.
    Credential {
        /// The credential file.
        #[serde(with = "serde_bytes")]
        credential: Vec<u8>,
        /// Its listen addresses (multiaddrs; at most `MAX_TAGS`, 256 bytes each).
        addrs: Vec<String>,
    },
    /// Taken in.
    Done,
    /// Leaves of a replica, ending at the origin's checkpoint `end`.
    ReplicaPage {
        /// The origin's checkpoint at the last leaf.
        end: SignedCheckpoint,
        /// Leaf bytes.
        leaves: Vec<serde_bytes::ByteBuf>,
    },
    /// The request failed; why.
    Error(String),
    /// A page of the members this node lists (see [`Request::MemberList`]), in key order.
    MemberList {
        /// The members, at most [`MEMBER_LIST_PAGE`].
        members: Vec<ListedMember>,
        /// Whether more follow the last one.
        more: bool,
    },
    /// The credentials asked for that this node holds (see [`Request::MemberCredentials`]).
    MemberCredentials(Vec<MemberCredential>),
}

fn check_args(args: &[String], env: &[(String, String)]) -> Result<(), WireError> {
    let too_long = args
        .iter()
        .chain(env.iter().flat_map(|(k, v)| [k, v]))
        .any(|a| a.len() > MAX_ARG_BYTES);
    if args.len() > MAX_ARGS || env.len() > MAX_ARGS || too_long {
        return Err(WireError::Invalid {
            what: "request",
            why: format!(
                "over {MAX_ARGS} arguments or variables, or one over {MAX_ARG_BYTES} bytes"
            ),
        });
    }
    Ok(())
}

impl Request {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        if let Request::Submit { args, env, .. } = self {
            check_args(args, env)?;
        }
        Ok(codec::encode("request", self)?)
    }
    /// The length of [`Request::to_bytes`]'s output (refused alike), without encoding.
    pub fn encoded_len(&self) -> Result<usize, WireError> {
        if let Request::Submit { args, env, .. } = self {
            check_args(args, env)?;
        }
        Ok(codec::encoded_len("request", self)?)
    }
    /// Decodes (bounded, canonical) and checks bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Request, WireError> {
        let r: Request = codec::decode("request", bytes, MAX_REQUEST_BYTES)?;
        let bad = |e: String| WireError::Invalid {
            what: "request",
            why: e,
        };
        match &r {
            Request::Submit { args, env, .. } => check_args(args, env)?,
            // Checkpoints and cosignatures are signature-checked before anyone reads them.
            Request::Witness(WitnessNote::Checkpoint(c) | WitnessNote::Offer(c)) => {
                c.verify().map_err(|e| bad(e.to_string()))?;
            }
            Request::Witness(WitnessNote::Cosigned(c)) => {
                c.checkpoint
                    .verify()
                    .and_then(|_| c.cosignature.verify(&c.checkpoint))
                    .map_err(|e| bad(e.to_string()))?;
            }
            Request::MemberCredentials { nodes } if nodes.len() > CREDENTIAL_BATCH => {
                return Err(bad(format!(
                    "credentials of {} members asked, over {CREDENTIAL_BATCH}",
                    nodes.len()
                )));
            }
            Request::Swim(p) if p.len() > crate::swim::MAX_PACKET => {
                return Err(bad(format!(
                    "a SWIM packet of {} bytes, over {}",
                    p.len(),
                    crate::swim::MAX_PACKET
                )));
            }
            _ => {}
        }
        Ok(r)
    }
}

impl Response {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode("response", self)?)
    }
    /// The length of [`Response::to_bytes`]'s output, without encoding.
    pub fn encoded_len(&self) -> Result<usize, WireError> {
        Ok(codec::encoded_len("response", self)?)
    }
    /// Decodes (bounded, canonical); checkpoints inside are signature-checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Response, WireError> {
        let r: Response = codec::decode("response", bytes, MAX_RESPONSE_BYTES)?;
        let check = |c: &SignedCheckpoint| {
            c.verify().map_err(|e| WireError::Invalid {
                what: "response",
                why: e.to_string(),
            })
        };
        match &r {
            Response::Page { base, end, .. } => {
                check(base)?;
                check(end)?;
            }
            Response::Checkpoint {
                checkpoint: Some(c),
                ..
            } => check(c)?,
            Response::ReplicaPage { end, .. } => check(end)?,
            Response::Credential { addrs, .. } if !addrs_in_bounds(addrs) => {
                return Err(WireError::Invalid {
                    what: "response",
                    why: format!("more than {MAX_TAGS} addresses or an address over 256 bytes"),
                });
            }
            Response::RevocationPrints(prints)
                if prints.len() != crate::core::REVOCATION_BUCKETS =>
            {
                return Err(WireError::Invalid {
                    what: "response",
                    why: format!(
                        "{} range fingerprints, not {}",
                        prints.len(),
                        crate::core::REVOCATION_BUCKETS
                    ),
                });
            }
            Response::Revocations(list)
                if list.len() > crate::core::MAX_REVOCATIONS_PER_PAGE
                    || list.iter().any(|r| r.len() > MAX_REVOCATION_BYTES) =>
            {
                return Err(WireError::Invalid {
                    what: "response",
                    why: format!(
                        "more than {} revocations, or one over {MAX_REVOCATION_BYTES} bytes",
                        crate::core::MAX_REVOCATIONS_PER_PAGE
                    ),
                });
            }
            Response::MemberList { members, more } => {
                // In strictly increasing key order: a page that repeats or goes back could
                // keep an asker paging for ever.
                let ordered = members.windows(2).all(|w| match w {
                    [a, b] => a.node < b.node,
                    _ => true,
                });
                if members.len() > MEMBER_LIST_PAGE || !ordered || (*more && members.is_empty()) {
                    return Err(WireError::Invalid {
                        what: "response",
                        why: format!(
                            "a member list page over {MEMBER_LIST_PAGE} members, out of key \
                             order, or empty with more to follow"
                        ),
                    });
                }
            }
            Response::MemberCredentials(list)
                if list.len() > CREDENTIAL_BATCH
                    || list.iter().any(|c| {
                        !addrs_in_bounds(&c.addrs)
                            || c.credential.len() > slicefed_trust::objects::MAX_CREDENTIAL_BYTES
                    }) =>
            {
                return Err(WireError::Invalid {
                    what: "response",
                    why: format!(
                        "over {CREDENTIAL_BATCH} member credentials, or one over {} bytes, \
                         with more than {MAX_TAGS} addresses or an address over 256 bytes",
                        slicefed_trust::objects::MAX_CREDENTIAL_BYTES
                    ),
                });
            }
            _ => {}
        }
        Ok(r)
    }
}

/// Whether a node's addresses are within bounds: at most `MAX_TAGS`, 256 bytes each.
fn addrs_in_bounds(addrs: &[String]) -> bool {
    addrs.len() <= MAX_TAGS && addrs.iter().all(|a| a.len() <= 256)
}

/// A witness's cosignature with the checkpoint it covers, as gossiped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    /// The origin's checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// The witness's signature of it.
    pub cosignature: Cosignature,
}

impl Cosigned {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode("cosignature", self)?)
    }
    /// Decodes and checks both signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Cosigned, WireError> {
        let c: Cosigned = codec::decode("cosignature", bytes, MAX_COSIGNED_BYTES)?;
        c.checkpoint
            .verify()
            .and_then(|_| c.cosignature.verify(&c.checkpoint))
            .map_err(|e| WireError::Invalid {
                what: "cosignature",
                why: e.to_string(),
            })?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_trust::fixtures::key;

    fn advert() -> AdvertBody {
        AdvertBody {
            node: key(5).public(),
            credential: vec![1, 2, 3],
            slivers: 2,
            free_memory: 1 << 30,
            load_x100: 50,
            uptime_secs: 60,
            version: "0.1.0".into(),
            tags: vec!["eu-west".into()],
            traffic: Traffic {
                wire_in: 7,
                ..Traffic::default()
            },
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            time_ms: 1,
            unhealthy: None,
            swim_bump: 1,
            credential_hash: serde_bytes::ByteArray::new(crate::core::credential_hash(&[1, 2, 3])),
        }
    }

    #[test]
    fn adverts_round_trip_and_every_byte_flip_is_refused() {
        // A credential is carried only under its own hash; an advert may name it by hash.
        let mut wrong = advert();
        wrong.credential_hash = serde_bytes::ByteArray::new([9; 32]);
        assert!(wrong.sign(&key(5)).is_err());
        let by_hash = AdvertBody {
            credential: vec![],
            ..advert()
        };
        let bytes = by_hash.clone().sign(&key(5)).unwrap().to_bytes().unwrap();
        assert_eq!(Advert::from_bytes(&bytes).unwrap().body, by_hash);
        let bytes = advert().sign(&key(5)).unwrap().to_bytes().unwrap();
        assert_eq!(Advert::from_bytes(&bytes).unwrap().body, advert());
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 0x01;
            assert!(
                Advert::from_bytes(&m).is_err(),
                "byte {i} flipped and accepted"
            );
        }
    }

    #[test]
    fn only_the_node_itself_signs_its_advert() {
        assert_eq!(
            advert().sign(&key(6)).unwrap_err(),
            WireError::Signature("advert")
        );
        // A signature under another domain does not pass as an advert.
        let body = advert();
        let enc = codec::encode("advert", &body).unwrap();
        let forged = Advert {
            signature: serde_bytes::ByteArray::new(
                key(5).sign_domain("slicefed/ledger-checkpoint", &enc),
            ),
            body,
        };
        assert!(Advert::from_bytes(&forged.to_bytes().unwrap()).is_err());
        let mut long = advert();
        long.tags = vec!["t".into(); MAX_TAGS + 1];
        assert!(long.sign(&key(5)).is_err());
    }

    #[test]
    fn a_delete_is_bound_to_its_node_its_time_its_signer_and_its_action() {
        let del = HolderAction::Delete;
        let d = HolderRequest::sign(&key(3), key(5).public(), "princeton.codeen", 1000).unwrap();
        d.verify(del, &key(5).public(), 1010).unwrap();
        assert!(
            d.verify(del, &key(6).public(), 1010).is_err(),
            "another node"
        );
        assert!(d.verify(del, &key(5).public(), 2000).is_err(), "stale");
        // A delete is not a request to read logs, nor the other way round.
        assert!(
            d.verify(HolderAction::ReadLogs, &key(5).public(), 1010)
                .is_err()
        );
        let mut relabelled = d.clone();
        relabelled.body.action = HolderAction::ReadLogs;
        assert!(
            relabelled
                .verify(HolderAction::ReadLogs, &key(5).public(), 1010)
                .is_err()
        );
        let mut forged = d.clone();
        forged.body.slice = "princeton.other".into();
        assert!(forged.verify(del, &key(5).public(), 1010).is_err());
        let mut forged = d;
        forged.body.signer = key(4).public();
        assert!(forged.verify(del, &key(5).public(), 1010).is_err());
    }

    #[test]
    fn requests_round_trip_and_bounds_hold_both_ways() {
        let r = Request::Submit {
            credential: vec![1; 10],
            module: vec![2; 100],
            args: vec!["--port".into(), "80".into()],
            env: vec![("K".into(), "V".into())],
        };
        assert_eq!(Request::from_bytes(&r.to_bytes().unwrap()).unwrap(), r);
        let big = Request::Submit {
            credential: vec![],
            module: vec![],
            args: vec!["x".into(); MAX_ARGS + 1],
            env: vec![],
        };
        assert!(big.to_bytes().is_err());
        assert!(big.encoded_len().is_err());
        // The length counted without encoding is the encoding's.
        for req in [r.clone(), Request::Members, Request::Swim(vec![7; 300])] {
            assert_eq!(req.encoded_len().unwrap(), req.to_bytes().unwrap().len());
        }
        for rep in [
            Response::Done,
            Response::Error("no".into()),
            Response::HeldSame,
        ] {
            assert_eq!(rep.encoded_len().unwrap(), rep.to_bytes().unwrap().len());
        }
        let enc = codec::encode("request", &big).unwrap();
        assert!(Request::from_bytes(&enc).is_err());
        // Trailing bytes and truncation are refused.
        let mut bytes = Request::Members.to_bytes().unwrap();
        bytes.push(0);
        assert!(Request::from_bytes(&bytes).is_err());
        let bytes = r.to_bytes().unwrap();
        assert!(Request::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn member_lists_and_credential_batches_are_bounded_and_in_order() {
        let listed = |n: u8| ListedMember {
            node: key(n).public(),
            start: u64::from(n),
        };
        let mut page: Vec<ListedMember> = (1..=5).map(listed).collect();
        page.sort_by_key(|m| m.node);
        let ok = Response::MemberList {
            members: page.clone(),
            more: true,
        };
        assert_eq!(Response::from_bytes(&ok.to_bytes().unwrap()).unwrap(), ok);
        // Out of order, repeated, or empty with more to follow: an asker could page forever.
        let mut backwards = page.clone();
        backwards.reverse();
        let mut repeated = page.clone();
        repeated.push(page[4].clone());
        for bad in [
            Response::MemberList {
                members: backwards,
                more: false,
            },
            Response::MemberList {
                members: repeated,
                more: false,
            },
            Response::MemberList {
                members: vec![],
                more: true,
            },
        ] {
            assert!(
                Response::from_bytes(&bad.to_bytes().unwrap()).is_err(),
                "{bad:?}"
            );
        }
        let nodes = |n: usize| Request::MemberCredentials {
            nodes: vec![key(1).public(); n],
        };
        let fine = nodes(CREDENTIAL_BATCH);
        assert_eq!(
            Request::from_bytes(&fine.to_bytes().unwrap()).unwrap(),
            fine
        );
        let over = nodes(CREDENTIAL_BATCH + 1).to_bytes().unwrap();
        assert!(Request::from_bytes(&over).is_err());
        let given = |addrs: Vec<String>| MemberCredential {
            node: key(1).public(),
            credential: vec![1; 10],
            addrs,
        };
        let too_many = Response::MemberCredentials(vec![given(vec![]); CREDENTIAL_BATCH + 1]);
        let long_addr = Response::MemberCredentials(vec![given(vec!["x".repeat(257)])]);
        let big = MemberCredential {
            credential: vec![0; slicefed_trust::objects::MAX_CREDENTIAL_BYTES + 1],
            ..given(vec![])
        };
        let big = Response::MemberCredentials(vec![big]);
        for bad in [too_many, long_addr, big] {
            assert!(Response::from_bytes(&bad.to_bytes().unwrap()).is_err());
        }
    }
}
