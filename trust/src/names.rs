//! Dotted PlanetLab-style names (`princeton`, `princeton.alice`, `princeton.codeen`) and
//! the patterns that grant sets of them.
//!
//! Invariant: a [`Name`] is always valid (lowercase labels of `[a-z0-9_-]`, 1–63 bytes
//! each, at most 16 labels, at most 253 bytes), whether built from text or decoded, so
//! containment checks are plain label comparisons and cannot be fooled by `a..b` or case.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Upper bound on a name's total length.
pub const MAX_NAME_BYTES: usize = 253;
/// Upper bound on the number of labels.
pub const MAX_NAME_LABELS: usize = 16;

/// Why text is not a name or a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid name: {why}")]
pub struct NameError {
    text: String,
    why: &'static str,
}

/// A validated dotted name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates text as a name.
    pub fn parse(text: &str) -> Result<Name, NameError> {
        let err = |why| NameError {
            text: text.chars().take(80).collect(),
            why,
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.len() > MAX_NAME_BYTES {
            return Err(err("it is longer than 253 bytes"));
        }
        let mut labels = 0;
        for label in text.split('.') {
            labels += 1;
            if label.is_empty() {
                return Err(err("it has an empty label"));
            }
            if label.len() > 63 {
                return Err(err("a label is longer than 63 bytes"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(err("labels may hold only a-z, 0-9, `_` and `-`"));
            }
            if !label
                .as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            {
                return Err(err("a label must start with a letter or digit"));
            }
        }
        if labels > MAX_NAME_LABELS {
            return Err(err("it has more than 16 labels"));
        }
        Ok(Name(text.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `self` lies strictly inside `namespace` (`princeton.alice` inside `princeton`).
    pub fn is_below(&self, namespace: &Name) -> bool {
        self.0.len() > namespace.0.len()
            && self.0.starts_with(&namespace.0)
            && self.0.as_bytes().get(namespace.0.len()) == Some(&b'.')
    }

    /// True if `self` is `namespace` or lies inside it.
    pub fn is_within(&self, namespace: &Name) -> bool {
        self == namespace || self.is_below(namespace)
    }

    /// The first label: the top-level authority a name belongs to.
    pub fn top(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::parse(&s)
    }
}
impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.0)
    }
}
impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::parse(s)
    }
}

/// A set of names: one exact name (`princeton.codeen`) or every name strictly below a
/// namespace (`princeton.*`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Pattern {
    /// Exactly this name.
    Exact(Name),
    /// Every name strictly inside this namespace.
    Below(Name),
}

impl Pattern {
    /// Parses `a.b` or `a.b.*`.
    pub fn parse(text: &str) -> Result<Pattern, NameError> {
        match text.strip_suffix(".*") {
            Some(ns) => Ok(Pattern::Below(Name::parse(ns)?)),
            None => Ok(Pattern::Exact(Name::parse(text)?)),
        }
    }

    /// True if the pattern grants `name`.
    pub fn matches(&self, name: &Name) -> bool {
        match self {
            Pattern::Exact(n) => n == name,
            Pattern::Below(ns) => name.is_below(ns),
        }
    }

    /// True if every name this pattern grants is also granted by `outer`.
    pub fn is_within(&self, outer: &Pattern) -> bool {
        match (self, outer) {
            (Pattern::Exact(n), o) => o.matches(n),
            (Pattern::Below(a), Pattern::Below(b)) => a.is_within(b),
            (Pattern::Below(_), Pattern::Exact(_)) => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(n) => write!(f, "{n}"),
            Pattern::Below(n) => write!(f, "{n}.*"),
        }
    }
}
impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({self})")
    }
}
impl TryFrom<String> for Pattern {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Pattern::parse(&s)
    }
}
impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn validates_names() {
        for ok in ["princeton", "princeton.alice", "mit.csail.node-1", "a_b.c9"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "A.b",
            "a.",
            ".a",
            "-a",
            "a b",
            "a/b",
            &"a.".repeat(17),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_is_by_label() {
        assert!(n("princeton.alice").is_below(&n("princeton")));
        assert!(!n("princetonx.alice").is_below(&n("princeton")));
        assert!(!n("princeton").is_below(&n("princeton")));
        assert!(n("princeton").is_within(&n("princeton")));
        assert!(!n("mit.alice").is_within(&n("princeton")));
    }

    #[test]
    fn patterns_nest() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("princeton.codeen").is_within(&p("princeton.*")));
        assert!(p("princeton.cs.*").is_within(&p("princeton.*")));
        assert!(p("princeton.*").is_within(&p("princeton.*")));
        assert!(!p("princeton.*").is_within(&p("princeton.cs.*")));
        assert!(!p("princeton.*").is_within(&p("princeton.codeen")));
        assert!(!p("princeton").is_within(&p("princeton.*")));
        assert_eq!(p("a.b.*").to_string(), "a.b.*");
    }
}
