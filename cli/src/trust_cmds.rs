//! `key`, `authority`, `cert` and `ticket` verbs.

use crate::files::{
    self, read_bounded, read_credential, read_opened, read_policy, read_secret_key, write_atomic,
};
use crate::util::{self, now, parse_duration, parse_size, parse_time, print_json, say, show_time};
use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use slicefed_trust::caps::{
    ConnectRule, Grant, ListenRule, NetworkRights, NodeSet, ResourceCaps, Rights, RuleSet, Validity,
};
use slicefed_trust::objects::{
    self, AuthorityCert, AuthorityRoot, CertId, Credential, Invocation, MAX_DELETE_TICKETS,
    ModuleHash, NodeCert, Nonce, ObjectError, Revocation, SliceDelete, SliceTicket, UserCert,
};
use slicefed_trust::verify::{Object, Opened, open_any};
use slicefed_trust::{Context, Name, Pattern, PublicKey, SecretKey, Verifier, VerifyError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Largest module file a ticket may name (its hash is all the ticket carries).
const MAX_MODULE_BYTES: usize = 256 << 20;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Generate a key file (mode 0600).
    Gen {
        /// Where to write the secret key; never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show a key file's public key and PeerId.
    Show {
        /// A secret key file, or an `authority.pub`.
        key: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AuthorityCmd {
    /// Create an authority: DIR/authority.key (0600) and DIR/authority.pub.
    Init {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Certify a user, node or sub-authority.
    Certify(CertifyArgs),
    /// Revoke a certificate this authority (or one below it) issued.
    Revoke {
        #[arg(long)]
        authority: PathBuf,
        /// The certificate (or ticket) to revoke.
        #[arg(long)]
        cert: PathBuf,
        #[arg(long, default_value = "revoked by its authority")]
        reason: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Hand a revocation to the federation: a node honours it and gossips it to all.
    Publish(crate::slice_cmds::PublishArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Role {
    User,
    Node,
    Authority,
}

/// Resource and network flags shared by `authority certify` and `ticket issue`.
#[derive(Args)]
pub struct GrantFlags {
    /// Memory cap per sliver (e.g. 64MiB).
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// CPU weight per sliver.
    #[arg(long)]
    cpu_share: Option<u32>,
    /// Egress cap per sliver per day (e.g. 10GB).
    #[arg(long, value_parser = parse_size)]
    egress_daily: Option<u64>,
    /// Allowed outgoing connections: tcp|udp:ADDR/PREFIX:PORTS (PORTS: 80, 80-443 or *).
    #[arg(long, value_parser = ConnectRule::parse)]
    connect: Vec<ConnectRule>,
    /// Allowed listening ports: tcp|udp:PORTS.
    #[arg(long, value_parser = ListenRule::parse)]
    listen: Vec<ListenRule>,
    /// In a ticket: its slivers may read their own node's sensors (the node's /metrics),
    /// if every link of the chain and the node owner allow it.
    #[arg(long)]
    sensors: bool,
    /// In a certificate: nobody under it may read nodes' sensors (allowed by default to
    /// tickets that ask).
    #[arg(long, conflicts_with = "sensors")]
    no_sensors: bool,
}

impl GrantFlags {
    /// The resource caps these flags state (`max_slivers` is a certificate-only flag).
    pub fn caps(&self, max_slivers: Option<u32>) -> ResourceCaps {
        ResourceCaps {
            memory: self.memory,
            cpu_share: self.cpu_share,
            max_slivers,
            egress_per_day: self.egress_daily,
        }
    }

    /// The network rights these flags state. Absent flags inherit the issuer's rules in a
    /// certificate, and grant nothing in a ticket (least privilege for the concrete request).
    pub fn network(&self, inherit_when_empty: bool) -> NetworkRights {
        NetworkRights {
            connect: rule_set(&self.connect, inherit_when_empty),
            listen: rule_set(&self.listen, inherit_when_empty),
            // A certificate leaves sensors to those under it unless it takes them away; a
            // ticket has them only if it asks.
            sensors: if inherit_when_empty {
                !self.no_sensors
            } else {
                self.sensors
            },
        }
    }
}

#[derive(Args)]
pub struct CertifyArgs {
    /// The issuing authority's directory.
    #[arg(long)]
    authority: PathBuf,
    /// The subject: a public key (hex or PeerId), a key file, or an authority.pub.
    #[arg(long)]
    subject: String,
    #[arg(long, value_enum)]
    role: Role,
    /// The subject's name (a namespace, for a sub-authority).
    #[arg(long)]
    name: String,
    /// Slices a user may create (default: every slice of the issuing authority).
    #[arg(long)]
    slices: Option<String>,
    /// Rights: create, delegate, audit (users; default create), certify (authorities).
    #[arg(long)]
    rights: Option<String>,
    /// Slivers at once per node.
    #[arg(long)]
    max_slivers: Option<u32>,
    #[command(flatten)]
    grant: GrantFlags,
    /// Restrict to these nodes (PeerId or hex); default any node that trusts the root.
    #[arg(long = "node")]
    nodes: Vec<String>,
    #[arg(long, value_parser = parse_duration, default_value = "365d")]
    valid_for: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Show any signed object: kind, issuer, subject, fields.
    Show {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Verify a signed object and its chain against a trust policy.
    Verify {
        file: PathBuf,
        #[arg(long, env = "SLICEFED_TRUST")]
        trust: PathBuf,
        /// More certificates that may complete the chain.
        #[arg(long)]
        chain: Vec<PathBuf>,
        /// Revocations to honour.
        #[arg(long = "revocation")]
        revocations: Vec<PathBuf>,
        /// Verify as of this time (RFC 3339 or unix seconds).
        #[arg(long, value_parser = parse_time)]
        at: Option<u64>,
        /// Check the audience for this node (PeerId or hex).
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TicketCmd {
    /// Issue a slice ticket, signed by the researcher and carrying their certificate chain.
    Issue(IssueArgs),
}

#[derive(Args)]
pub struct IssueArgs {
    #[arg(long, env = "SLICEFED_KEY")]
    key: PathBuf,
    #[arg(long, env = "SLICEFED_CERT")]
    cert: PathBuf,
    #[arg(long)]
    slice: String,
    #[arg(long)]
    module: PathBuf,
    /// Nodes the ticket is for (PeerId or hex); default any node that trusts the root.
    #[arg(long = "node")]
    nodes: Vec<String>,
    #[command(flatten)]
    grant: GrantFlags,
    #[arg(long, value_parser = parse_duration, default_value = "14d")]
    valid_for: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
    /// Environment variables K=V the slivers run with (the ticket signs them).
    #[arg(long = "env", value_parser = crate::util::parse_env)]
    env: Vec<(String, String)>,
    /// Arguments the slivers run with (the ticket signs them: `slice create --ticket` must
    /// give the same).
    #[arg(last = true)]
    args: Vec<String>,
}

/// Parses a subject: a key file, an authority.pub, or a public key as text.
fn parse_subject(s: &str) -> Result<PublicKey> {
    let path = Path::new(s);
    if path.is_file() {
        if let Ok(cred) = read_credential(path) {
            let o = open_any(cred.leaf()).with_context(|| s.to_string())?;
            return match o.object {
                Object::AuthorityRoot(_) => Ok(o.signer),
                _ => Ok(o.subject().unwrap_or(o.signer)),
            };
        }
        let bytes = read_bounded(path, slicefed_trust::keys::MAX_SECRET_KEY_FILE_BYTES)?;
        return SecretKey::from_file_text(&bytes)
            .map(|k| k.public())
            .with_context(|| format!("{s}: neither a key file nor a slicefed credential"));
    }
    PublicKey::parse(s)
        .with_context(|| format!("subject `{s}` is not a file, a hex public key or a PeerId"))
}

pub fn parse_nodes(nodes: &[String]) -> Result<NodeSet> {
    if nodes.is_empty() {
        return Ok(NodeSet::AnyTrusting);
    }
    let mut keys = vec![];
    for n in nodes
        .iter()
        .flat_map(|n| n.split(','))
        .filter(|n| !n.is_empty())
    {
        keys.push(PublicKey::parse(n).with_context(|| format!("--node `{n}`"))?);
    }
    Ok(NodeSet::only(keys))
}

fn rule_set<R: Clone>(rules: &[R], inherit_when_empty: bool) -> RuleSet<R> {
    if rules.is_empty() && inherit_when_empty {
        RuleSet::Any
    } else {
        RuleSet::Only(rules.to_vec())
    }
}

fn key_json(pk: &PublicKey) -> serde_json::Value {
    json!({ "public_key": pk.to_hex(), "peer_id": pk.peer_id() })
}

pub fn key(cmd: KeyCmd) -> Result<ExitCode> {
    let (pk, as_json) = match cmd {
        KeyCmd::Gen { out, json } => {
            let k = SecretKey::generate()?;
            files::write_secret_key(&out, &k)?;
            (k.public(), json)
        }
        KeyCmd::Show { key, json } => (
            parse_subject(&key.to_string_lossy())
                .or_else(|_| read_secret_key(&key).map(|k| k.public()))?,
            json,
        ),
    };
    if as_json {
        print_json(&key_json(&pk))?;
    } else {
        say!("public key  {}\npeer id     {}", pk.to_hex(), pk.peer_id());
    }
    Ok(ExitCode::SUCCESS)
}

/// An authority directory: its key, and the certificate chain that makes it a
/// sub-authority (empty for a root).
struct AuthorityDir {
    key: SecretKey,
    name: Name,
    chain: Vec<Vec<u8>>,
    /// The grant this authority holds from its parent, if it is a sub-authority.
    held: Option<Grant>,
}

fn load_authority(dir: &Path) -> Result<AuthorityDir> {
    let key = read_secret_key(&dir.join("authority.key"))?;
    let (_, pubobj) = read_opened(&dir.join("authority.pub"))?;
    let name = match pubobj.first().map(|o| &o.object) {
        Some(Object::AuthorityRoot(r)) => r.name.clone(),
        _ => bail!(
            "{}: not an authority root",
            dir.join("authority.pub").display()
        ),
    };
    let cert_path = dir.join("authority.cert");
    let (chain, held) = if cert_path.exists() {
        let (cred, opened) = read_opened(&cert_path)?;
        let held = match opened.first().map(|o| &o.object) {
            Some(Object::AuthorityCert(c)) if c.subject == key.public() => c.grant.clone(),
            _ => bail!(
                "{}: not an authority certificate for this authority's key",
                cert_path.display()
            ),
        };
        (
            cred.objects.into_iter().map(|b| b.into_vec()).collect(),
            Some(held),
        )
    } else {
        (vec![], None)
    };
    Ok(AuthorityDir {
        key,
        name,
        chain,
        held,
    })
}

pub fn authority(cmd: AuthorityCmd) -> Result<ExitCode> {
    match cmd {
        AuthorityCmd::Publish(a) => crate::slice_cmds::publish(a),
        AuthorityCmd::Init { name, out, json } => {
            let name = Name::parse(&name)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("{}: cannot create directory", out.display()))?;
            let key_path = out.join("authority.key");
            let key = SecretKey::generate()?;
            let root = objects::sign(
                &key,
                &AuthorityRoot {
                    name: name.clone(),
                    created: now(),
                },
            )?;
            let pub_bytes = Credential::new(root.bytes, []).to_bytes()?;
            files::write_secret_key(&key_path, &key)?;
            write_atomic(&out.join("authority.pub"), &pub_bytes, 0o644, true)?;
            let pk = key.public();
            if json {
                print_json(
                    &json!({ "name": name, "public_key": pk.to_hex(), "peer_id": pk.peer_id(),
                    "key": key_path, "pub": out.join("authority.pub") }),
                )?;
            } else {
                say!("authority {name} created in {}", out.display());
                say!("public key {}", pk.to_hex());
                say!("\nNode owners and auditors who trust it add to their policy:\n");
                say!(
                    "[[authority]]\nname = \"{name}\"\npublic_key = \"{}\"\nnamespaces = [\"{name}\"]",
                    pk.to_hex()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuthorityCmd::Certify(a) => certify(a),
        AuthorityCmd::Revoke {
            authority,
            cert,
            reason,
            out,
            json,
        } => {
            let auth = load_authority(&authority)?;
            let cred = read_credential(&cert)?;
            let target = open_any(cred.leaf()).with_context(|| format!("{}", cert.display()))?;
            let r = objects::sign(
                &auth.key,
                &Revocation {
                    target: target.id,
                    reason: reason.clone(),
                    revoked_at: now(),
                },
            )?;
            // The file carries the revoked object and its chain: every node decides from it
            // whether this authority may revoke that object before it holds or passes it on.
            write_atomic(
                &out,
                &Credential::revocation_file(r.bytes, &cred).to_bytes()?,
                0o644,
                true,
            )?;
            if json {
                print_json(
                    &json!({ "revocation": r.id, "target": target.id, "kind": target.kind.name(), "subject": target.label(), "reason": reason }),
                )?;
            } else {
                say!(
                    "revoked {} {} ({}) -> {}",
                    target.kind,
                    target.label(),
                    target.id,
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn certify(a: CertifyArgs) -> Result<ExitCode> {
    let auth = load_authority(&a.authority)?;
    let subject = parse_subject(&a.subject)?;
    let name = Name::parse(&a.name)?;
    let t = now();
    let mut validity = Validity::starting(t, a.valid_for);
    if let Some(h) = &auth.held {
        // A sub-authority cannot issue past its own certificate: clamp rather than fail later.
        validity.not_after = validity.not_after.min(h.validity.not_after);
    }
    let default_rights = match a.role {
        Role::User => Rights::CREATE,
        Role::Authority => Rights::ALL,
        Role::Node => Rights::NONE,
    };
    let rights = match &a.rights {
        Some(r) => Rights::parse(r).map_err(|e| anyhow!("--rights: {e}"))?,
        None => default_rights,
    };
    let grant = Grant {
        rights,
        caps: a.grant.caps(a.max_slivers),
        network: a.grant.network(true),
        nodes: parse_nodes(&a.nodes)?,
        validity,
    };
    let signed = match a.role {
        Role::User => {
            let slices = match &a.slices {
                Some(p) => Pattern::parse(p)?,
                None => Pattern::Below(auth.name.clone()),
            };
            objects::sign(
                &auth.key,
                &UserCert {
                    subject,
                    name: name.clone(),
                    slices,
                    grant,
                },
            )?
            .bytes
        }
        Role::Node => {
            objects::sign(
                &auth.key,
                &NodeCert {
                    subject,
                    name: name.clone(),
                    validity,
                },
            )?
            .bytes
        }
        Role::Authority => {
            objects::sign(
                &auth.key,
                &AuthorityCert {
                    subject,
                    namespace: name.clone(),
                    grant,
                },
            )?
            .bytes
        }
    };
    if !name.is_below(&auth.name) {
        eprintln!(
            "warning: {name} is not inside {}'s namespace; nodes will refuse this certificate",
            auth.name
        );
    }
    let id = CertId::of(&signed);
    let file = Credential::new(signed, auth.chain).to_bytes()?;
    write_atomic(&a.out, &file, 0o644, true)?;
    if a.json {
        print_json(
            &json!({ "id": id, "subject": subject.to_hex(), "peer_id": subject.peer_id(), "name": name,
            "not_after": show_time(validity.not_after), "out": a.out }),
        )?;
    } else {
        say!(
            "certified {name} ({}) until {} -> {}",
            subject.peer_id(),
            show_time(validity.not_after),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One object as JSON for `cert show`.
fn describe(o: &Opened) -> serde_json::Value {
    let fields = match &o.object {
        Object::AuthorityRoot(b) => serde_json::to_value(b),
        Object::AuthorityCert(b) => serde_json::to_value(b),
        Object::UserCert(b) => serde_json::to_value(b),
        Object::NodeCert(b) => serde_json::to_value(b),
        Object::Delegation(b) => serde_json::to_value(b),
        Object::SliceTicket(b) => serde_json::to_value(b),
        Object::Revocation(b) => serde_json::to_value(b),
        Object::NodeReceipt(b) => serde_json::to_value(b),
        Object::SliceDelete(b) => serde_json::to_value(b),
    }
    .unwrap_or(serde_json::Value::Null);
    json!({
        "kind": o.kind.name(),
        "id": o.id,
        "issuer": o.signer.to_hex(),
        "issuer_peer_id": o.signer.peer_id(),
        "subject": o.subject().map(|s| s.to_hex()),
        "about": o.label(),
        "fields": fields,
    })
}

pub fn cert(cmd: CertCmd) -> Result<ExitCode> {
    match cmd {
        CertCmd::Show { file, json } => {
            let (_, opened) = read_opened(&file)?;
            if json {
                let mut docs = opened.iter().map(describe);
                let mut doc = docs.next().unwrap_or_default();
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("chain".into(), serde_json::Value::Array(docs.collect()));
                }
                print_json(&doc)?;
            } else {
                for (i, o) in opened.iter().enumerate() {
                    let d = describe(o);
                    say!(
                        "{}{} — {}",
                        if i == 0 { "" } else { "  chain: " },
                        o.kind,
                        o.label()
                    );
                    say!("    id      {}", o.id);
                    say!("    issuer  {} ({})", o.signer.to_hex(), o.signer.peer_id());
                    if let Some(s) = o.subject() {
                        say!("    subject {} ({})", s.to_hex(), s.peer_id());
                    }
                    if let Some(f) = d.get("fields").and_then(|f| f.as_object()) {
                        for (k, v) in f {
                            if k != "subject" {
                                say!("    {k:<7} {v}");
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CertCmd::Verify {
            file,
            trust,
            chain,
            revocations,
            at,
            node,
            json,
        } => {
            let policy = read_policy(&trust)?;
            let cred = read_credential(&file)?;
            let mut pool: Vec<Vec<u8>> = cred.chain().map(|b| b.to_vec()).collect();
            for c in &chain {
                pool.extend(
                    read_credential(c)?
                        .objects
                        .into_iter()
                        .map(|b| b.into_vec()),
                );
            }
            let mut v = Verifier::new(policy);
            let checked_at = at.unwrap_or_else(now);
            for r in &revocations {
                let bytes = crate::files::read_bounded(r, objects::MAX_CREDENTIAL_BYTES)?;
                v.add_revocation(&bytes, checked_at)
                    .map_err(|e| anyhow!("{}: {e}", r.display()))?;
            }
            let node = node
                .map(|n| PublicKey::parse(&n).with_context(|| format!("--node `{n}`")))
                .transpose()?;
            let ctx = Context {
                now: at.unwrap_or_else(now),
                node,
            };
            let refs: Vec<&[u8]> = pool.iter().map(|b| b.as_slice()).collect();
            let mut result = v.verify(cred.leaf(), &refs, &ctx);
            // A person is asking: tell a relabelled object from a forged one (nodes do not
            // pay for that diagnosis).
            if let Err(VerifyError::Object(ObjectError::BadSignature { kind, signer })) = &result {
                let suspect = std::iter::once(cred.leaf())
                    .chain(refs.iter().copied())
                    .find(|b| {
                        objects::decode_envelope(b)
                            .is_ok_and(|e| e.kind == *kind && e.signer == *signer)
                    });
                if let Some(b) = suspect {
                    result = Err(VerifyError::Object(objects::diagnose_signature(b)));
                }
            }
            let (valid, reason, responsible) = match &result {
                Ok(ok) => (true, None, Some(ok.responsible.clone())),
                Err(e) => (false, Some(e.to_string()), None),
            };
            if json {
                print_json(
                    &json!({ "valid": valid, "reason": reason, "responsible": responsible,
                    "links": result.as_ref().ok().map(|ok| &ok.links), "at": ctx.now }),
                )?;
            } else {
                match &result {
                    Ok(ok) => {
                        say!("valid: {} — {}", ok.leaf.kind, ok.leaf.label());
                        if let Some(u) = &ok.responsible.user {
                            say!(
                                "responsible: {u}, certified by {}, under trusted root {}",
                                ok.responsible.authority,
                                ok.responsible.root
                            );
                        } else {
                            say!(
                                "certified by {}, under trusted root {}",
                                ok.responsible.authority,
                                ok.responsible.root
                            );
                        }
                    }
                    Err(e) => eprintln!("invalid: {}: {e}", file.display()),
                }
            }
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A signed ticket as a credential file (ticket first, then the holder's chain).
pub struct IssuedTicket {
    pub id: slicefed_trust::CertId,
    pub body: SliceTicket,
    pub file: Vec<u8>,
}

/// Signs a ticket for `slice` and `module` with the holder's key, chained to the holder's
/// certificate file; validity is cut to the certificate's end (with a warning).
#[allow(clippy::too_many_arguments)]
pub fn issue_ticket(
    key_path: &Path,
    cert_path: &Path,
    slice: &str,
    module: &[u8],
    invocation: &Invocation,
    nodes: NodeSet,
    grant: &GrantFlags,
    valid_for: u64,
) -> Result<IssuedTicket> {
    invocation
        .validate()
        .map_err(|e| anyhow!("the slivers' arguments and environment: {e}"))?;
    let (key, cred, holder_validity) = holder(key_path, cert_path)?;
    let slice = Name::parse(slice)?;
    util::ensure_nonzero("module size", module.len() as u64)?;
    let t = now();
    let mut validity = Validity::starting(t, valid_for);
    if validity.not_after > holder_validity.not_after {
        eprintln!(
            "warning: ticket validity shortened to the certificate's end, {}",
            show_time(holder_validity.not_after)
        );
        validity.not_after = holder_validity.not_after;
    }
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| anyhow!("the system random source failed: {e}"))?;
    let body = SliceTicket {
        slice,
        module: ModuleHash::of(module),
        invocation: invocation.hash(),
        caps: grant.caps(None),
        network: grant.network(false),
        nodes,
        validity,
        issued_at: t,
        nonce: Nonce(nonce),
    };
    let signed = objects::sign(&key, &body)?;
    let file =
        Credential::new(signed.bytes, cred.objects.into_iter().map(|b| b.into_vec())).to_bytes()?;
    Ok(IssuedTicket {
        id: signed.id,
        body,
        file,
    })
}

/// A holder's key, their certificate (or delegation) for it, and its validity.
fn holder(key_path: &Path, cert_path: &Path) -> Result<(SecretKey, Credential, Validity)> {
    let key = read_secret_key(key_path)?;
    let (cred, opened) = read_opened(cert_path)?;
    let validity = match opened.first().map(|o| &o.object) {
        Some(Object::UserCert(u)) if u.subject == key.public() => u.grant.validity,
        Some(Object::Delegation(d)) if d.subject == key.public() => d.grant.validity,
        Some(Object::UserCert(_) | Object::Delegation(_)) => {
            bail!(
                "{}: this certificate is for another key than {}",
                cert_path.display(),
                key_path.display()
            )
        }
        _ => bail!(
            "{}: not a user certificate or delegation",
            cert_path.display()
        ),
    };
    Ok((key, cred, validity))
}

/// A signed slice delete and its file (the delete and the holder's chain).
pub struct IssuedDelete {
    pub id: CertId,
    pub file: Vec<u8>,
}

/// Signs a delete of `slice` ending `tickets` and every ticket of it the holder issued
/// until now; nodes keep it until the holder's certificate ends (no ticket of theirs
/// outlives it).
pub fn issue_delete(
    key_path: &Path,
    cert_path: &Path,
    slice: &str,
    tickets: Vec<CertId>,
) -> Result<IssuedDelete> {
    let (key, cred, holder_validity) = holder(key_path, cert_path)?;
    let t = now();
    let body = SliceDelete {
        slice: Name::parse(slice)?,
        tickets: tickets.into_iter().take(MAX_DELETE_TICKETS).collect(),
        issued_at: t,
        validity: Validity {
            not_before: t,
            not_after: holder_validity.not_after.max(t),
        },
    };
    let signed = objects::sign(&key, &body)?;
    let file =
        Credential::new(signed.bytes, cred.objects.into_iter().map(|b| b.into_vec())).to_bytes()?;
    Ok(IssuedDelete {
        id: signed.id,
        file,
    })
}

pub fn ticket(cmd: TicketCmd) -> Result<ExitCode> {
    let TicketCmd::Issue(a) = cmd;
    let module = read_bounded(&a.module, MAX_MODULE_BYTES)?;
    let issued = issue_ticket(
        &a.key,
        &a.cert,
        &a.slice,
        &module,
        &Invocation::new(a.args.clone(), a.env.clone()),
        parse_nodes(&a.nodes)?,
        &a.grant,
        a.valid_for,
    )?;
    let (body, file) = (&issued.body, &issued.file);
    let slice = &body.slice;
    let validity = body.validity;
    let signed_id = issued.id;
    write_atomic(&a.out, file, 0o644, true)?;
    let audience = match &body.nodes {
        NodeSet::AnyTrusting => "any node that trusts the root".to_string(),
        NodeSet::Only(n) => format!("{} node(s)", n.len()),
    };
    if a.json {
        print_json(
            &json!({ "id": signed_id, "slice": slice, "module": body.module, "audience": audience,
            "not_after": show_time(validity.not_after), "out": a.out }),
        )?;
    } else {
        say!(
            "ticket for slice {slice} on {audience}, until {} -> {}",
            show_time(validity.not_after),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
