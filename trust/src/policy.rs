//! A node owner's (or auditor's) trust policy: which authorities they trust, for which
//! namespaces, with which caps. Parsed from TOML text; reading the file is the caller's job.
//!
//! Invariant: a parsed policy has valid names, valid keys, no key listed twice and at most
//! [`MAX_AUTHORITIES`] entries.

use crate::caps::{ConnectRule, ListenRule, NetworkRights, ResourceCaps, RuleSet};
use crate::keys::PublicKey;
use crate::names::Name;
use serde::{Deserialize, Serialize};

/// Largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Most authorities in one policy.
pub const MAX_AUTHORITIES: usize = 4096;

/// Why a policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Too large to be a policy.
    #[error("trust policy is {0} bytes, over the limit of {MAX_POLICY_BYTES}")]
    TooLarge(usize),
    /// Not TOML of the expected shape.
    #[error("trust policy is not valid: {0}")]
    Syntax(String),
    /// An entry is wrong.
    #[error("trust policy entry `{entry}`: {why}")]
    Entry {
        /// The entry's name (or index).
        entry: String,
        /// What is wrong.
        why: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    authority: Vec<AuthorityEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<LocalEntry>,
}

/// `[local]`: destinations on this machine or its private networks that slivers may reach
/// (everything local is denied to slivers unless listed here).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalEntry {
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityEntry {
    name: String,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_cpu_share: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_slivers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_egress_daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sensors: Option<bool>,
}

/// One trusted authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedAuthority {
    /// Its name.
    pub name: Name,
    /// Its root key.
    pub key: PublicKey,
    /// The namespaces it is trusted for.
    pub namespaces: Vec<Name>,
    /// Caps applied to everything under it.
    pub caps: ResourceCaps,
    /// Network rights everything under it must stay within (delegation rules: a ticket
    /// asking for more is refused as widening); [`NetworkRights::INHERIT`] when the owner
    /// sets none.
    pub network: NetworkRights,
}

/// A set of trusted authorities. Immutable once made, and cheap to clone: the tables are
/// shared, so every node machine of a simulated federation (or every verifier of one
/// daemon) holding a copy costs a pointer, not a copy of hundreds of authorities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    authorities: std::sync::Arc<[TrustedAuthority]>,
    /// Local destinations (loopback, private, link-local, …) slivers may reach anyway.
    local_allow: Vec<ConnectRule>,
    /// Position of each root key in `authorities`: every link of every chain looks its
    /// signer up here, and a federation's policy may name hundreds of authorities.
    by_key: std::sync::Arc<std::collections::BTreeMap<PublicKey, usize>>,
}

/// Parses a list of network rules; absent means no restriction from this entry.
fn rules<R>(
    list: Option<&[String]>,
    parse: fn(&str) -> Result<R, String>,
    what: &str,
) -> Result<RuleSet<R>, String> {
    let Some(list) = list else {
        return Ok(RuleSet::Any);
    };
    if list.len() > crate::caps::MAX_RULES {
        return Err(format!(
            "{} {what} rules, at most {}",
            list.len(),
            crate::caps::MAX_RULES
        ));
    }
    list.iter()
        .map(|r| parse(r).map_err(|e| format!("{what}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(RuleSet::Only)
}

/// Parses a size such as `256MiB` or `10GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a size such as 256MiB or 10GB ({e})"))
}

impl TrustPolicy {
    /// A policy from entries (checked like parsed ones).
    pub fn new(authorities: Vec<TrustedAuthority>) -> Result<TrustPolicy, PolicyError> {
        if authorities.len() > MAX_AUTHORITIES {
            return Err(PolicyError::Syntax(format!(
                "{} authorities, at most {MAX_AUTHORITIES}",
                authorities.len()
            )));
        }
        let mut by_key = std::collections::BTreeMap::new();
        for (i, a) in authorities.iter().enumerate() {
            if by_key.insert(a.key, i).is_some() {
                return Err(PolicyError::Entry {
                    entry: a.name.to_string(),
                    why: "its public key is listed twice".into(),
                });
            }
            if a.namespaces.is_empty() {
                return Err(PolicyError::Entry {
                    entry: a.name.to_string(),
                    why: "it has no namespace".into(),
                });
            }
        }
        Ok(TrustPolicy {
            authorities: authorities.into(),
            local_allow: vec![],
            by_key: by_key.into(),
        })
    }

    /// The same policy, letting slivers reach these local destinations.
    pub fn with_local_allow(mut self, rules: Vec<ConnectRule>) -> TrustPolicy {
        self.local_allow = rules;
        self
    }

    /// Local destinations (this machine, private and special-purpose networks) slivers may
    /// reach although they are denied by default.
    pub fn local_allow(&self) -> &[ConnectRule] {
        &self.local_allow
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<TrustPolicy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(text.len()));
        }
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.message().to_string()))?;
        let mut out = Vec::with_capacity(file.authority.len().min(MAX_AUTHORITIES));
        for e in file.authority {
            let entry_err = |why: String| PolicyError::Entry {
                entry: e.name.chars().take(80).collect(),
                why,
            };
            let name = Name::parse(&e.name).map_err(|x| entry_err(x.to_string()))?;
            let key = PublicKey::parse(&e.public_key).map_err(|x| entry_err(x.to_string()))?;
            let namespaces = match &e.namespaces {
                None => vec![name.clone()],
                Some(list) => list
                    .iter()
                    .map(|n| Name::parse(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|x| entry_err(x.to_string()))?,
            };
            let size =
                |s: &Option<String>| s.as_deref().map(parse_size).transpose().map_err(&entry_err);
            let network = NetworkRights {
                connect: rules(e.connect.as_deref(), ConnectRule::parse, "connect")
                    .map_err(&entry_err)?,
                listen: rules(e.listen.as_deref(), ListenRule::parse, "listen")
                    .map_err(&entry_err)?,
                // The owner lets this authority's slivers read the node's sensors when
                // their tickets ask, unless the policy says `sensors = false`.
                sensors: e.sensors.unwrap_or(true),
            };
            network.validate().map_err(&entry_err)?;
            out.push(TrustedAuthority {
                name,
                key,
                namespaces,
                caps: ResourceCaps {
                    memory: size(&e.max_memory)?,
                    cpu_share: e.max_cpu_share,
                    max_slivers: e.max_slivers,
                    egress_per_day: size(&e.max_egress_daily)?,
                },
                network,
            });
        }
        let local = match &file.local {
            None => vec![],
            Some(l) => match rules(Some(&l.allow), ConnectRule::parse, "local allow") {
                Ok(RuleSet::Only(r)) => r,
                Ok(RuleSet::Any) => vec![],
                Err(why) => {
                    return Err(PolicyError::Entry {
                        entry: "local".into(),
                        why,
                    });
                }
            },
        };
        Ok(TrustPolicy::new(out)?.with_local_allow(local))
    }

    /// The policy as TOML text (sizes in bytes).
    pub fn to_toml(&self) -> String {
        let file = PolicyFile {
            authority: self
                .authorities
                .iter()
                .map(|a| AuthorityEntry {
                    name: a.name.to_string(),
                    public_key: a.key.to_hex(),
                    namespaces: Some(a.namespaces.iter().map(|n| n.to_string()).collect()),
                    max_memory: a.caps.memory.map(|m| format!("{m}B")),
                    max_cpu_share: a.caps.cpu_share,
                    max_slivers: a.caps.max_slivers,
                    max_egress_daily: a.caps.egress_per_day.map(|m| format!("{m}B")),
                    connect: a
                        .network
                        .connect
                        .rules()
                        .map(|r| r.iter().map(|x| x.to_string()).collect()),
                    listen: a
                        .network
                        .listen
                        .rules()
                        .map(|r| r.iter().map(|x| x.to_string()).collect()),
                    sensors: (!a.network.sensors).then_some(false),
                })
                .collect(),
            local: (!self.local_allow.is_empty()).then(|| LocalEntry {
                allow: self.local_allow.iter().map(|r| r.to_string()).collect(),
            }),
        };
        toml::to_string(&file).unwrap_or_default()
    }

    /// The authority with this root key.
    pub fn find(&self, key: &PublicKey) -> Option<&TrustedAuthority> {
        self.authorities.get(*self.by_key.get(key)?)
    }

    /// Every trusted authority.
    pub fn authorities(&self) -> &[TrustedAuthority] {
        &self.authorities
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn parses_the_documented_example() {
        let k = SecretKey::from_seed(&[1; 32]).public();
        let text = format!(
            "[[authority]]\nname = \"princeton\"\npublic_key = \"{k}\"\nnamespaces = [\"princeton\"]\nmax_memory = \"256MiB\"\nmax_cpu_share = 4\nmax_slivers = 100\n"
        );
        let p = TrustPolicy::parse(&text).unwrap();
        let a = p.find(&k).unwrap();
        assert_eq!(a.caps.memory, Some(256 * 1024 * 1024));
        assert_eq!(a.caps.cpu_share, Some(4));
        assert_eq!(TrustPolicy::parse(&p.to_toml()).unwrap(), p);
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(TrustPolicy::parse("[[authority]]\nname = \"x\"\n").is_err());
        assert!(TrustPolicy::parse("[[authority]]\nname = \"x\"\npublic_key = \"00\"\n").is_err());
        assert!(TrustPolicy::parse("bogus = 1\n").is_err());
        let k = SecretKey::from_seed(&[1; 32]).public();
        let twice = format!(
            "[[authority]]\nname = \"a\"\npublic_key = \"{k}\"\n[[authority]]\nname = \"b\"\npublic_key = \"{k}\"\n"
        );
        assert!(TrustPolicy::parse(&twice).is_err());
        assert_eq!(TrustPolicy::parse("").unwrap().authorities().len(), 0);
    }
}
