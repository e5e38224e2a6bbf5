//! Learning members. A node lists another once it has judged its credential; it hears of
//! the others
//! - from their adverts (the first few after a start carry the credential; the rest name
//!   it by hash),
//! - from their SWIM packets (a node not listed yet is asked for its credential),
//! - from SWIM news of a start: a member's packet names a node this one does not list, as
//!   alive ([`crate::swim::SwimEvent::Stranger`]), and
//! - when it starts, from one member's list, pulled in pages ([`Request::MemberList`]),
//!   and again from another member a while later ([`LIST_PULLS_AFTER_MS`]): memberlist's
//!   push-pull, one way.
//!
//! Adverts go only on change, at an interval that grows with the federation (hours at
//! 10,000 nodes), so without the last two a node listed only the members that probed it
//! or whose first adverts it heard: ~60% of a 10,000-node federation after an hour.
//!
//! Invariants:
//! - Nobody is listed on another's word. A node learnt of is greeted (a SWIM hello) once
//!   its credential has come, from the member that named it (which lists it, so holds it)
//!   in batches of [`CREDENTIAL_BATCH`], or from this node's disk. It is listed only when
//!   it answers, under the start its own answer names (the transport proves the sender),
//!   and only if its credential judges here like an advert's. A node that does not answer
//!   within [`GREETING_WAIT_MS`] is not listed: members name nodes that died moments ago,
//!   and one listed dead would be dropped only after this node's own probe of it, a round
//!   of all members later (votes about it went by before it was listed).
//! - Every table is bounded: nodes waiting to be learnt ([`MAX_NEWCOMERS`], and
//!   [`NEWCOMERS_PER_MEMBER`] named by any one member, so a hostile member cannot crowd
//!   out the others' news), batches in flight ([`BATCHES_IN_FLIGHT`]), one list page at a
//!   time, asked only while the newcomers it may bring fit.
//! - A node refused once is not asked about again for [`CREDENTIAL_RETRY_MS`] (the same
//!   rule as for adverts and SWIM senders).

use super::*;
use crate::core::MAX_MEMBERS;
use crate::wire::{CREDENTIAL_BATCH, ListedMember, MEMBER_LIST_PAGE, MemberCredential};

/// Nodes learnt of and waiting for their credential, at most.
pub const MAX_NEWCOMERS: usize = 4 * MEMBER_LIST_PAGE;
/// Of them, named by any one member, at most.
pub const NEWCOMERS_PER_MEMBER: usize = 2 * MEMBER_LIST_PAGE;
/// Credential batches in flight, at most.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// How long a node greeted has to answer before it is taken for dead (not listed).
pub const GREETING_WAIT_MS: u64 = 10_000;
/// When a node pulls a member's list, counted from when it first lists a member: at once,
/// and once more from another member three minutes later (nodes that start together each
/// pull from a member that knows few yet; SWIM news covers the starts that follow).
pub const LIST_PULLS_AFTER_MS: [u64; 2] = [0, 180_000];

/// What a node is learning (see the module's doc).
#[derive(Default)]
pub(super) struct Learning {
    /// Nodes to learn, with the start they were named with (kept for a credential from the
    /// disk that must be fetched after all) and the member that named them.
    newcomers: BTreeMap<PublicKey, (u64, PublicKey)>,
    /// How many of `newcomers` each member named.
    named_by: BTreeMap<PublicKey, usize>,
    /// Credential batches in flight.
    batches: usize,
    /// The list being pulled: from whom, after which key, and whether a page is asked.
    pull: Option<(PublicKey, Option<PublicKey>)>,
    pulling: bool,
    /// List pulls started since the node started.
    pulls: usize,
    /// When this node first listed a member.
    first_member_ms: Option<u64>,
    /// Credentials this node held before it restarted, by node: a node learnt of is
    /// greeted on its cached credential, not fetched (a restart at 10,000 nodes would
    /// otherwise fetch ~8 MB).
    cached: BTreeMap<PublicKey, Arc<[u8]>>,
    /// Nodes greeted and not answered yet (at most [`MAX_NEWCOMERS`]).
    greeting: BTreeMap<PublicKey, Greeting>,
    /// Nodes listed by what this module learnt.
    learnt: u64,
}

/// A node greeted: its credential, judged when it answers.
struct Greeting {
    credential: Arc<[u8]>,
    since_ms: u64,
    /// For a credential from the disk: the news to fetch it by if the node does not answer
    /// (its addresses may have changed while this node was down).
    fallback: Option<(u64, PublicKey)>,
}

impl Node {
    /// Credentials this node held before it restarted (from its disk), each with the node
    /// it was saved for: nodes learnt of later are judged on them instead of fetched. At
    /// most [`MAX_MEMBERS`] are kept. The key is only where to look: a credential that does
    /// not judge for it (another subject, expired, revoked) is fetched as if not cached.
    pub fn remember_credentials(
        &mut self,
        credentials: impl IntoIterator<Item = (PublicKey, Arc<[u8]>)>,
    ) {
        for (node, credential) in credentials {
            if self.learning.cached.len() >= MAX_MEMBERS {
                break;
            }
            self.learning.cached.insert(node, credential);
        }
    }

    /// Nodes listed by learning (member lists, SWIM news), for sensors and the simulator.
    pub fn members_learnt(&self) -> u64 {
        self.learning.learnt
    }

    /// Nodes learnt of and waiting for their credential.
    pub fn learning_waiting(&self) -> usize {
        self.learning.newcomers.len()
    }

    /// `via` named `id` (a node this one does not list) alive: learnt from a cached
    /// credential at once, or queued to be asked of `via`.
    pub(super) fn newcomer(
        &mut self,
        now_ms: u64,
        id: crate::swim::SwimId,
        via: PublicKey,
        out: &mut Vec<Effect>,
    ) {
        let node = id.key;
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        let refused_lately = self
            .credential_refused
            .get(&node)
            .is_some_and(|at| now_ms.saturating_sub(*at) < CREDENTIAL_RETRY_MS);
        if node == self.swim.me().key
            || node == via
            || self.core.members().contains_key(&node)
            || self.learning.newcomers.contains_key(&node)
            || self.swim_unknown.contains_key(&node)
            || refused_lately
            // A start in the future is made up (a start is when the node started).
            || id.bump > now_ms.saturating_add(skew_ms)
        {
            return;
        }
        if self.learning.greeting.contains_key(&node) {
            return;
        }
        if let Some(credential) = self.learning.cached.remove(&node) {
            return self.greet_newcomer(now_ms, node, credential, Some((id.bump, via)), out);
        }
        let named = self.learning.named_by.get(&via).copied().unwrap_or(0);
        if self.learning.newcomers.len() >= MAX_NEWCOMERS || named >= NEWCOMERS_PER_MEMBER {
            return;
        }
        self.learning.newcomers.insert(node, (id.bump, via));
        self.learning.named_by.insert(via, named + 1);
    }

    /// Greets a node learnt of whose credential is here: listed if it answers (see
    /// [`Node::greeted_answered`]).
    fn greet_newcomer(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        credential: Arc<[u8]>,
        fallback: Option<(u64, PublicKey)>,
        out: &mut Vec<Effect>,
    ) {
        if self.learning.greeting.len() >= MAX_NEWCOMERS {
            return;
        }
        let greeting = Greeting {
            credential,
            since_ms: now_ms,
            fallback,
        };
        self.learning.greeting.insert(node, greeting);
        let events = self.swim.hello(node);
        self.swim_events(now_ms, events, out);
    }

    /// A SWIM packet came from `node`, which this node does not list, under `start`: if it
    /// was greeted, its credential is judged and it is listed (whether it was greeted).
    pub(super) fn greeted_answered(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        start: u64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(g) = self.learning.greeting.remove(&node) else {
            return false;
        };
        if self.admit_learnt(now_ms, node, start, &g.credential, Some(&g.credential), out) {
            self.learning.learnt += 1;
        } else if let Some((start, via)) = g.fallback {
            // The disk's copy no longer judges (renewed, revoked): fetched as news.
            let id = crate::swim::SwimId {
                key: node,
                bump: start,
            };
            self.newcomer(now_ms, id, via, out);
        } else {
            self.credential_refused(now_ms, node);
        }
        true
    }

    /// Judges a node's credential and lists the node under its SWIM start (one its own
    /// packet named), with no load until it advertises (`NodeCore::judge_unadvertised`).
    /// Whether it is listed now.
    pub(super) fn admit_learnt(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        start: u64,
        bytes: &[u8],
        shared: Option<&Arc<[u8]>>,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Ok(outs) = self.core.judge_unadvertised(now_ms, node, bytes, shared) else {
            return false;
        };
        self.carry(now_ms, outs, true, out);
        let id = crate::swim::SwimId {
            key: node,
            bump: start,
        };
        if self.core.members().contains_key(&node) && !self.swim.knows(&id) {
            let events = self.swim.admit(now_ms, id);
            self.swim_events(now_ms, events, out);
        }
        true
    }

    /// Asks what learning needs asked: credential batches for the nodes learnt of, the
    /// next list page while its newcomers fit, and the list pulls that are due.
    pub(super) fn learn_members(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.learning.first_member_ms.is_none() && !self.core.members().is_empty() {
            self.learning.first_member_ms = Some(now_ms);
        }
        let silent: Vec<PublicKey> = self
            .learning
            .greeting
            .iter()
            .filter(|(_, g)| now_ms.saturating_sub(g.since_ms) >= GREETING_WAIT_MS)
            .map(|(k, _)| *k)
            .collect();
        for node in silent {
            // Down (not listed), or, for a credential from the disk, maybe moved: fetched.
            let fallback = self
                .learning
                .greeting
                .remove(&node)
                .and_then(|g| g.fallback);
            if let Some((start, via)) = fallback {
                let id = crate::swim::SwimId {
                    key: node,
                    bump: start,
                };
                self.newcomer(now_ms, id, via, out);
            }
        }
        while self.learning.batches < BATCHES_IN_FLIGHT {
            let Some(via) = self.learning.newcomers.values().next().map(|(_, v)| *v) else {
                break;
            };
            let nodes: Vec<PublicKey> = self
                .learning
                .newcomers
                .iter()
                .filter(|(_, (_, v))| *v == via)
                .take(CREDENTIAL_BATCH)
                .map(|(k, _)| *k)
                .collect();
            for k in &nodes {
                self.learning.newcomers.remove(k);
            }
            self.forget_named(via, nodes.len());
            let request = Request::MemberCredentials {
                nodes: nodes.clone(),
            };
            if !self.ask(via, request, Asked::MemberCredentials { nodes }, out) {
                break;
            }
            self.learning.batches += 1;
        }
        self.pull_due(now_ms);
        let pulled_all = self.learning.pulls >= LIST_PULLS_AFTER_MS.len();
        if pulled_all && self.learning.pull.is_none() && !self.learning.cached.is_empty() {
            // What the pulls did not name is not news any more: SWIM's news of a start
            // fetches it then (the cache is only a restart's).
            self.learning.cached.clear();
        }
        let room = self.learning.newcomers.len() + MEMBER_LIST_PAGE <= MAX_NEWCOMERS;
        if let Some((member, after)) = self.learning.pull
            && !self.learning.pulling
            && room
            && self.ask(
                member,
                Request::MemberList { after },
                Asked::MemberList { member },
                out,
            )
        {
            self.learning.pulling = true;
        }
    }

    /// Starts the next list pull when it is due, from a member picked by the clock (the
    /// second pull is most likely from another member than the first).
    fn pull_due(&mut self, now_ms: u64) {
        let Some(first) = self.learning.first_member_ms else {
            return;
        };
        let Some(after) = LIST_PULLS_AFTER_MS.get(self.learning.pulls) else {
            return;
        };
        if self.learning.pull.is_some() || now_ms < first.saturating_add(*after) {
            return;
        }
        let members = self.member_keys.len();
        if members == 0 {
            return;
        }
        let pick = (now_ms / 1_000 + self.learning.pulls as u64) as usize % members;
        if let Some(member) = self.member_keys.iter().nth(pick) {
            self.learning.pull = Some((*member, None));
            self.learning.pulls += 1;
        }
    }

    fn forget_named(&mut self, via: PublicKey, count: usize) {
        if let Some(n) = self.learning.named_by.get_mut(&via) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                self.learning.named_by.remove(&via);
            }
        }
    }

    /// A member list page came (or none: `None`).
    pub(super) fn member_list_came(
        &mut self,
        now_ms: u64,
        member: PublicKey,
        response: Option<Response>,
        out: &mut Vec<Effect>,
    ) {
        self.learning.pulling = false;
        let Some(Response::MemberList { members, more }) = response else {
            // No answer, or not a page: this pull ends (the next one, if any, is another).
            self.learning.pull = None;
            return;
        };
        let after = self.learning.pull.and_then(|(_, after)| after);
        // The decoder checked the order; the page must also start after the cursor.
        if members
            .first()
            .is_some_and(|m| after.is_some_and(|a| m.node <= a))
        {
            self.learning.pull = None;
            return;
        }
        self.learning.pull = match members.last() {
            Some(last) if more => Some((member, Some(last.node))),
            _ => None,
        };
        for ListedMember { node, start } in members {
            let id = crate::swim::SwimId {
                key: node,
                bump: start,
            };
            self.newcomer(now_ms, id, member, out);
        }
    }

    /// Credentials asked of `via` came (or none: `None`): each is judged for the node it
    /// says, if that node was asked for.
    pub(super) fn member_credentials_came(
        &mut self,
        now_ms: u64,
        nodes: Vec<PublicKey>,
        response: Option<Response>,
        out: &mut Vec<Effect>,
    ) {
        self.learning.batches = self.learning.batches.saturating_sub(1);
        let Some(Response::MemberCredentials(list)) = response else {
            return;
        };
        let mut asked: BTreeSet<PublicKey> = nodes.into_iter().collect();
        for MemberCredential {
            node,
            credential,
            addrs,
        } in list
        {
            // Each asked node once: a repeat or a node not asked is ignored.
            if !asked.remove(&node) {
                continue;
            }
            if self.core.members().contains_key(&node) {
                continue;
            }
            // Its addresses first, so the router can reach it to greet it.
            if !addrs.is_empty() {
                out.push(Effect::Addresses { node, addrs });
            }
            self.greet_newcomer(now_ms, node, Arc::from(credential), None, out);
        }
    }

    /// Answers [`Request::MemberList`]: the members after `after` in key order, each with
    /// the start SWIM probes.
    pub(super) fn member_list(&self, after: Option<PublicKey>) -> Response {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut keys = self
            .member_keys
            .range((from, Bound::Unbounded))
            .filter_map(|k| self.swim.start_of(k).map(|start| (k, start)));
        let members: Vec<ListedMember> = keys
            .by_ref()
            .take(MEMBER_LIST_PAGE)
            .map(|(k, start)| ListedMember { node: *k, start })
            .collect();
        let more = keys.next().is_some();
        Response::MemberList { members, more }
    }

    /// The credentials this node holds of `nodes` (for [`Read::MemberCredentials`]).
    pub(super) fn member_credentials(&self, nodes: &[PublicKey]) -> Vec<(PublicKey, Arc<[u8]>)> {
        nodes
            .iter()
            .take(CREDENTIAL_BATCH)
            .filter_map(|k| {
                let m = self.core.members().get(k)?;
                Some((*k, Arc::clone(m.credential())))
            })
            .collect()
    }
}
