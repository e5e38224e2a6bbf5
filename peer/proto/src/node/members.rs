//! Learning members. A node lists another once it has judged its credential; it hears of
//! the others
//! - from their adverts (the first few after a start carry the credential; the rest name
//!   it by hash),
//! - from their SWIM packets (a node not listed yet is asked for its credential),
//! - from SWIM news of a start: a member's packet names a node this one does not list, as
//!   alive ([`crate::swim::SwimEvent::Stranger`]), and
//! - when it starts, from one member's list, pulled in pages ([`Request::MemberList`]),
//!   and again from another member a while later, and again while pulls bring news
//!   ([`LIST_PULLS_AFTER_MS`]): memberlist's push-pull, one way.
//!
//! Adverts go only on change, at an interval that grows with the federation (hours at
//! 10,000 nodes), so without the last two a node listed only the members that probed it
//! or whose first adverts it heard: ~60% of a 10,000-node federation after an hour.
//!
//! Invariants:
//! - Nobody is listed, or refused, on another's word. A node learnt of is greeted (a SWIM
//!   hello) only on a credential that judges here for it (fetched from the member that
//!   named it, which lists it and so holds it, in batches of [`CREDENTIAL_BATCH`], or
//!   kept on this node's disk). It is listed only when its own packet answers, under the
//!   start that packet names (the transport proves the sender). A node that does not
//!   answer within [`GREETING_WAIT_MS`] is not listed: members name nodes that died
//!   moments ago, and one listed dead would be dropped only after this node's own probe of
//!   it, a round of all members later. A credential from a third party that does not judge
//!   counts against that third party ([`MAX_STRIKES`]), never against the node it names.
//! - Every table is bounded, and one member cannot crowd out the others: nodes waiting,
//!   in a batch or greeted ([`MAX_NEWCOMERS`] in all, [`NEWCOMERS_PER_MEMBER`] on any one
//!   member's word), one batch in flight per member and [`BATCHES_IN_FLIGHT`] in all,
//!   taken from the members in turn; a member whose batches fail or bring credentials
//!   that do not judge is not heard for [`STRIKE_MS`]; a node greeted is not greeted
//!   again for [`GREET_AGAIN_MS`]; one list page at a time, at most [`MAX_PULL_PAGES`] a
//!   pull, asked only while the newcomers it may bring fit (on the lister's word too); a
//!   pull that waits [`PULL_STALL_MS`] for room, or takes nothing from a page, ends.

use super::*;
use crate::core::MAX_MEMBERS;
use crate::wire::{CREDENTIAL_BATCH, ListedMember, MEMBER_LIST_PAGE, MemberCredential};
use std::ops::Bound;

/// Nodes learnt of and not listed yet (waiting, in a batch, or greeted), at most.
pub const MAX_NEWCOMERS: usize = 4 * MEMBER_LIST_PAGE;
/// Of them, on any one member's word, at most.
pub const NEWCOMERS_PER_MEMBER: usize = 2 * MEMBER_LIST_PAGE;
/// Credential batches in flight, at most (one per member).
pub const BATCHES_IN_FLIGHT: usize = 2;
/// How long a node greeted has to answer before it is taken for dead (not listed).
pub const GREETING_WAIT_MS: u64 = 10_000;
/// A node greeted that did not answer is not greeted again for this long, whoever names it
/// (a down node named again and again is not dialled again and again). Only the silent
/// are remembered: a node that answered is listed, and no longer news. (Remembering every
/// greeting, in a table of [`MAX_NEWCOMERS`], refused the 2,049th greeting of any five
/// minutes: nodes born together at 5,000 each greet thousands, and the rest were fetched
/// for nothing and dropped.)
pub const GREET_AGAIN_MS: u64 = 300_000;
/// Failures (a batch unanswered or refused, a credential that does not judge for the node
/// it is given for) after which a member's news and lists are ignored for [`STRIKE_MS`].
pub const MAX_STRIKES: u8 = 3;
/// See [`MAX_STRIKES`].
pub const STRIKE_MS: u64 = 600_000;
/// Pages one list pull asks, at most (a federation's worth of members).
pub const MAX_PULL_PAGES: usize = MAX_MEMBERS.div_ceil(MEMBER_LIST_PAGE);
/// When a node pulls a member's list, counted from when it first lists a member: at once,
/// and once more from another member a minute later (nodes that start together each pull
/// from a member that knows few yet; SWIM news covers the starts that follow). The pulls
/// after those two are made only while one of the last two brought at least
/// [`PULL_WORTH_GOING_ON`] newcomers from a member that listed as many nodes as this one
/// (see `pull_due`): a node that joins a formed federation pulls three times,
/// and 10,000 nodes that start together pull until their lists agree. A pull merges one
/// other node's list into this one's, so lists that start apart need about log2(N) of
/// them: the first hour at 10,000 nodes with pulls at 0, 3, 10, 20 and 40 minutes ended
/// with 6,351 members listed of ~8,000, each pull adding ~500.
pub const LIST_PULLS_AFTER_MS: [u64; 10] = [
    0, 60_000, 180_000, 360_000, 600_000, 900_000, 1_200_000, 1_800_000, 2_400_000, 3_600_000,
];
/// See [`LIST_PULLS_AFTER_MS`].
pub const PULL_WORTH_GOING_ON: usize = MEMBER_LIST_PAGE / 8;
/// A pull whose next page has waited this long for room (the lister's own news keeps its
/// share full) ends; a later pull asks another member.
pub const PULL_STALL_MS: u64 = 60_000;

/// Whether a start named for a node is in the future (beyond clock skew): made up, since a
/// start is when the node started.
fn made_up_start(now_ms: u64, start: u64) -> bool {
    let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
    start > now_ms.saturating_add(skew_ms)
}

/// What a node is learning (see the module's doc).
#[derive(Default)]
pub(super) struct Learning {
    /// Nodes waiting for their credential, with the start they were named with and the
    /// member that named them; and the same by member, for batches taken in turn.
    waiting: BTreeMap<PublicKey, (u64, PublicKey)>,
    waiting_by: BTreeMap<PublicKey, BTreeSet<PublicKey>>,
    /// Nodes waiting, in a batch or greeted on each member's word.
    share: BTreeMap<PublicKey, usize>,
    /// Nodes in a batch in flight, with the member asked; and the members asked.
    fetching: BTreeMap<PublicKey, PublicKey>,
    batches: BTreeSet<PublicKey>,
    /// The member the last batch went to (the next goes to the one after it).
    last_batch_via: Option<PublicKey>,
    /// Members' failures and when the first of them counted (at most [`MAX_MEMBERS`]).
    strikes: BTreeMap<PublicKey, (u8, u64)>,
    /// The list being pulled: from whom, after which key, pages asked, whether one is out.
    pull: Option<(PublicKey, Option<PublicKey>)>,
    pull_pages: usize,
    pulling: bool,
    /// List pulls started since the node started.
    pulls: usize,
    /// Newcomers the current (or last) pull brought.
    pull_brought: usize,
    /// Pulls in a row, up to the last one finished, that brought little.
    quiet_pulls: u8,
    /// Nodes the current (or last) pull's pages listed (not counting starts in the
    /// future, which a lister could pad a page with).
    pull_listed: usize,
    /// Whether pulls stopped (two quiet in a row).
    pulls_stopped: bool,
    /// When the current pull last made progress (started, or a page came).
    pull_progress_ms: u64,
    /// When this node first listed a member.
    first_member_ms: Option<u64>,
    /// Credentials this node held before it restarted, by node: a node learnt of is
    /// greeted on its kept credential, not fetched (a restart at 10,000 nodes would
    /// otherwise fetch ~8 MB).
    cached: BTreeMap<PublicKey, Arc<[u8]>>,
    /// Nodes greeted and not answered yet.
    greeting: BTreeMap<PublicKey, Greeting>,
    /// When each node greeted that did not answer was greeted (at most
    /// [`MAX_NEWCOMERS`]).
    greeted: BTreeMap<PublicKey, u64>,
    /// Nodes listed by what this module learnt.
    learnt: u64,
    /// What learning did, for sensors and the simulator.
    stats: LearningStats,
}

/// Counters of what a node's learning did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LearningStats {
    /// List pulls started.
    pub pulls: u64,
    /// List pages that came.
    pub pages: u64,
    /// Nodes named in them or in SWIM news that were taken as news.
    pub news: u64,
    /// Credential batches asked.
    pub batches: u64,
    /// Credentials that came in batches and judged.
    pub credentials: u64,
    /// Greetings sent.
    pub greeted: u64,
    /// Greetings answered.
    pub answered: u64,
    /// Greetings let go unanswered.
    pub silent: u64,
    /// Strikes against members.
    pub strikes: u64,
}

/// A node greeted: its credential (judged), listed when it answers.
struct Greeting {
    credential: Arc<[u8]>,
    since_ms: u64,
    /// The member on whose word it was greeted (none: from the disk).
    via: Option<PublicKey>,
    /// For a credential from the disk: the news to fetch it by if the node does not answer
    /// (its addresses may have changed while this node was down).
    fallback: Option<(u64, PublicKey)>,
}

impl Learning {
    fn held(&self) -> usize {
        self.waiting.len() + self.fetching.len() + self.greeting.len()
    }

    fn charge(&mut self, via: PublicKey) {
        *self.share.entry(via).or_insert(0) += 1;
    }

    fn release(&mut self, via: PublicKey) {
        if let Some(n) = self.share.get_mut(&via) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.share.remove(&via);
            }
        }
    }

    fn has_room_for(&self, via: &PublicKey) -> bool {
        self.held() < MAX_NEWCOMERS
            && self.share.get(via).copied().unwrap_or(0) < NEWCOMERS_PER_MEMBER
    }

    fn struck_out(&self, via: &PublicKey, now_ms: u64) -> bool {
        self.strikes.get(via).is_some_and(|(n, since)| {
            *n >= MAX_STRIKES && now_ms.saturating_sub(*since) < STRIKE_MS
        })
    }

    /// One more failure of `via`'s; its waiting nodes are dropped once it is struck out.
    fn strike(&mut self, via: PublicKey, now_ms: u64) {
        if self.strikes.len() >= MAX_MEMBERS {
            self.strikes
                .retain(|_, (_, since)| now_ms.saturating_sub(*since) < STRIKE_MS);
        }
        if self.strikes.len() >= MAX_MEMBERS && !self.strikes.contains_key(&via) {
            return;
        }
        let entry = self.strikes.entry(via).or_insert((0, now_ms));
        if now_ms.saturating_sub(entry.1) >= STRIKE_MS {
            *entry = (0, now_ms);
        }
        entry.0 = entry.0.saturating_add(1);
        self.stats.strikes += 1;
        if self.struck_out(&via, now_ms) {
            for node in self.waiting_by.remove(&via).unwrap_or_default() {
                self.waiting.remove(&node);
                self.release(via);
            }
            if self.pull.is_some_and(|(member, _)| member == via) {
                self.pull = None;
            }
        }
    }

    /// Whether `node` may be greeted now: it was not greeted lately without answering,
    /// and the table of such nodes has room (full of recent ones, it is an attack or a
    /// catastrophe, and nodes missing from it are not greeted: a member naming thousands
    /// of silent nodes cannot have them greeted again and again).
    fn may_greet(&mut self, node: &PublicKey, now_ms: u64) -> bool {
        let recent = |at: &u64| now_ms.saturating_sub(*at) < GREET_AGAIN_MS;
        if self.greeted.get(node).is_some_and(recent) {
            return false;
        }
        if self.greeted.len() >= MAX_NEWCOMERS {
            self.greeted.retain(|_, at| recent(at));
        }
        self.greeted.len() < MAX_NEWCOMERS || self.greeted.contains_key(node)
    }

    /// `node`, greeted at `at_ms`, did not answer: not greeted again for
    /// [`GREET_AGAIN_MS`] (unless the table is full of recent ones).
    fn silent(&mut self, node: PublicKey, at_ms: u64, now_ms: u64) {
        if self.greeted.len() >= MAX_NEWCOMERS {
            self.greeted
                .retain(|_, at| now_ms.saturating_sub(*at) < GREET_AGAIN_MS);
        }
        if self.greeted.len() < MAX_NEWCOMERS || self.greeted.contains_key(&node) {
            self.greeted.insert(node, at_ms);
        }
    }
}

impl Node {
    /// Credentials this node held before it restarted (from its disk), each with the node
    /// it was saved for: nodes learnt of later are greeted on them instead of fetched. At
    /// most [`MAX_MEMBERS`] are kept. The key is only where to look: a credential that does
    /// not judge for it (another subject, expired, revoked) is fetched as if not kept.
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

    /// Notes when this node first listed a member since it started (its network was up).
    pub(super) fn note_first_member(&mut self, now_ms: u64) {
        if self.learning.first_member_ms.is_none() && !self.core.members().is_empty() {
            self.learning.first_member_ms = Some(now_ms);
        }
    }

    /// When this node first listed a member since it started.
    pub(super) fn first_member_ms(&self) -> Option<u64> {
        self.learning.first_member_ms
    }

    /// The nodes whose credentials were kept from before a restart and not used yet.
    pub(super) fn learning_kept(&self) -> BTreeSet<PublicKey> {
        self.learning.cached.keys().copied().collect()
    }

    /// Nodes listed by learning (member lists, SWIM news), for sensors and the simulator.
    pub fn members_learnt(&self) -> u64 {
        self.learning.learnt
    }

    /// Nodes learnt of and not listed yet (waiting, in a batch, or greeted).
    pub fn learning_held(&self) -> usize {
        self.learning.held()
    }

    /// What learning did since this node started.
    pub fn learning_stats(&self) -> LearningStats {
        self.learning.stats
    }

    /// `via` named `id` (a node this one does not list) alive: greeted at once on a
    /// credential kept on disk, or queued to be asked of `via`. Whether it was news taken.
    pub(super) fn newcomer(
        &mut self,
        now_ms: u64,
        id: crate::swim::SwimId,
        via: PublicKey,
        out: &mut Vec<Effect>,
    ) -> bool {
        let node = id.key;
        let refused_lately = self.credential_held_off(&node, now_ms);
        let l = &self.learning;
        if node == self.swim.me().key
            || node == via
            || self.core.members().contains_key(&node)
            || l.waiting.contains_key(&node)
            || l.fetching.contains_key(&node)
            || l.greeting.contains_key(&node)
            || self.swim_unknown.contains_key(&node)
            || refused_lately
            || l.struck_out(&via, now_ms)
            // A start in the future is made up (a start is when the node started), and one
            // this node declared dead is not news.
            || made_up_start(now_ms, id.bump)
            || self.swim.dead_start(&node).is_some_and(|dead| id.bump <= dead)
        {
            return false;
        }
        // A kept credential that is no longer good (renewed, revoked) is dropped here and
        // the node is fetched like any news.
        if let Some(credential) = self.learning.cached.remove(&node)
            && self
                .core
                .check_node_credential(now_ms, node, &credential)
                .is_ok()
        {
            self.greet_newcomer(now_ms, node, credential, None, Some((id.bump, via)), out);
            return true;
        }
        if !self.learning.has_room_for(&via) {
            return false;
        }
        self.learning.waiting.insert(node, (id.bump, via));
        self.learning
            .waiting_by
            .entry(via)
            .or_default()
            .insert(node);
        self.learning.charge(via);
        self.learning.stats.news += 1;
        true
    }

    /// Greets a node learnt of whose credential judged here: listed if it answers (see
    /// [`Node::greeted_answered`]). Not greeted (and so not held) if it was greeted lately.
    fn greet_newcomer(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        credential: Arc<[u8]>,
        via: Option<PublicKey>,
        fallback: Option<(u64, PublicKey)>,
        out: &mut Vec<Effect>,
    ) {
        if self.learning.greeting.contains_key(&node) || !self.learning.may_greet(&node, now_ms) {
            return;
        }
        if let Some(v) = via {
            self.learning.charge(v);
        }
        let greeting = Greeting {
            credential,
            since_ms: now_ms,
            via,
            fallback,
        };
        self.learning.greeting.insert(node, greeting);
        self.learning.stats.greeted += 1;
        let events = self.swim.hello(node);
        self.swim_events(now_ms, events, out);
    }

    /// A SWIM packet came from `node`, which this node does not list, under `start`: if it
    /// was greeted, it is listed (its credential judged again, for what changed since).
    /// Whether the packet was an answer to a greeting. A start this node declared dead is
    /// not listed again (the node learns of its death and rejoins under a new start).
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
        if let Some(via) = g.via {
            self.learning.release(via);
        }
        if self
            .swim
            .dead_start(&node)
            .is_some_and(|dead| start <= dead)
        {
            // Named under a later start than it answers with: held off like a silent
            // node, or a member could have it greeted in a loop.
            self.learning.silent(node, g.since_ms, now_ms);
            return true;
        }
        self.learning.stats.answered += 1;
        if self.admit_learnt(now_ms, node, start, &g.credential, Some(&g.credential), out) {
            self.learning.learnt += 1;
            return true;
        }
        // No longer good (revoked meanwhile): the node is asked for its own credential,
        // as any node not listed that speaks.
        false
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

    /// Asks what learning needs asked: greetings unanswered are let go, credential batches
    /// go to the members in turn, the next list page while its newcomers fit, and the list
    /// pulls that are due.
    pub(super) fn learn_members(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.note_first_member(now_ms);
        self.let_silent_greetings_go(now_ms, out);
        while self.learning.batches.len() < BATCHES_IN_FLIGHT && self.asked.len() < MAX_ASKED {
            let Some(via) = self.next_batch_via() else {
                break;
            };
            let nodes: Vec<PublicKey> = self
                .learning
                .waiting_by
                .get(&via)
                .map(|set| set.iter().take(CREDENTIAL_BATCH).copied().collect())
                .unwrap_or_default();
            for node in &nodes {
                self.learning.waiting.remove(node);
                self.learning.fetching.insert(*node, via);
            }
            if let Some(set) = self.learning.waiting_by.get_mut(&via) {
                for node in &nodes {
                    set.remove(node);
                }
                if set.is_empty() {
                    self.learning.waiting_by.remove(&via);
                }
            }
            self.learning.batches.insert(via);
            self.learning.last_batch_via = Some(via);
            self.learning.stats.batches += 1;
            let request = Request::MemberCredentials {
                nodes: nodes.clone(),
            };
            self.ask(via, request, Asked::MemberCredentials { via, nodes }, out);
        }
        self.pull_due(now_ms);
        let pulled_all =
            self.learning.pulls >= LIST_PULLS_AFTER_MS.len() || self.learning.pulls_stopped;
        if pulled_all && self.learning.pull.is_none() && !self.learning.cached.is_empty() {
            // What the pulls did not name is not news any more: SWIM's news of a start
            // fetches it then (the cache is only a restart's).
            self.learning.cached.clear();
        }
        // A page is asked only when all it may name fits, on the lister's word too: a page
        // whose newcomers did not fit would be asked for nothing.
        let room = |l: &Learning, member: &PublicKey| {
            l.held() + MEMBER_LIST_PAGE <= MAX_NEWCOMERS
                && l.share.get(member).copied().unwrap_or(0) + MEMBER_LIST_PAGE
                    <= NEWCOMERS_PER_MEMBER
        };
        // Not asked for a while (no room): the lister's own news keeps its share full.
        if self.learning.pull.is_some()
            && !self.learning.pulling
            && now_ms.saturating_sub(self.learning.pull_progress_ms) >= PULL_STALL_MS
        {
            self.end_pull(false);
        }
        if let Some((member, after)) = self.learning.pull
            && !self.learning.pulling
            && room(&self.learning, &member)
            && self.asked.len() < MAX_ASKED
        {
            if self.learning.pull_pages >= MAX_PULL_PAGES {
                self.learning.pull = None;
                return;
            }
            self.learning.pull_pages += 1;
            self.learning.pulling = true;
            let request = Request::MemberList { after };
            self.ask(member, request, Asked::MemberList { member }, out);
        }
    }

    /// Greetings not answered in time: the node is down (not listed) or, for a credential
    /// from the disk, maybe moved (fetched from the member that named it).
    fn let_silent_greetings_go(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let silent: Vec<PublicKey> = self
            .learning
            .greeting
            .iter()
            .filter(|(_, g)| now_ms.saturating_sub(g.since_ms) >= GREETING_WAIT_MS)
            .map(|(k, _)| *k)
            .collect();
        for node in silent {
            let Some(g) = self.learning.greeting.remove(&node) else {
                continue;
            };
            // One greeted on a kept credential is fetched and greeted again at once (its
            // addresses may have changed); any other is taken for down for a while.
            if g.fallback.is_none() {
                self.learning.silent(node, g.since_ms, now_ms);
            }
            self.learning.stats.silent += 1;
            if let Some(via) = g.via {
                self.learning.release(via);
            }
            if let Some((start, via)) = g.fallback {
                let id = crate::swim::SwimId {
                    key: node,
                    bump: start,
                };
                self.newcomer(now_ms, id, via, out);
            }
        }
    }

    /// The member after the last one asked (in key order, round) that has nodes waiting
    /// and no batch in flight.
    fn next_batch_via(&self) -> Option<PublicKey> {
        let l = &self.learning;
        let after = l.last_batch_via.map_or(Bound::Unbounded, Bound::Excluded);
        let free = |via: &&PublicKey| !l.batches.contains(*via);
        l.waiting_by
            .range((after, Bound::Unbounded))
            .map(|(via, _)| via)
            .find(free)
            .or_else(|| l.waiting_by.keys().find(free))
            .copied()
    }

    /// Starts the next list pull when it is due, from a member picked by this node's key
    /// and the clock: nodes that pull at the same second pick different members (picked
    /// by the clock alone, they picked the same few: members close in key order; and when
    /// those knew few, a tenth of a 5,000-node federation learnt ~100 members from its
    /// pulls and stopped).
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
        // Past the first two, a pull is made only while one of the last two was worth it.
        // A pull is quiet when it brought little from a member that lists as many as this
        // node: their lists agree. One from a member that lists fewer says nothing (nodes
        // born together first pull from members that know as little as they do; counted
        // as quiet, those pulls stopped a tenth of a 5,000-node federation at ~100
        // members learnt).
        let l = &self.learning;
        let agreed = l.pull_listed + PULL_WORTH_GOING_ON >= self.core.members().len();
        let quiet = if l.pulls > 0 && l.pull_brought < PULL_WORTH_GOING_ON && agreed {
            self.learning.quiet_pulls.saturating_add(1)
        } else {
            0
        };
        if self.learning.pulls_stopped {
            return;
        }
        if self.learning.pulls >= 2 && quiet >= 2 {
            // For good: news that grows this node's list later is SWIM's to carry.
            self.learning.pulls_stopped = true;
            return;
        }
        let members = self.core.members().len();
        if members == 0 {
            return;
        }
        let mine = self
            .swim
            .me()
            .key
            .0
            .first_chunk::<8>()
            .map_or(0, |b| u64::from_le_bytes(*b));
        let mixed = ((now_ms / 1_000) ^ mine)
            .wrapping_add(self.learning.pulls as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Among the members whose share has room for a page (a lister that keeps its own
        // share full would otherwise be picked and hold the pull), the one whose key mixed
        // with that number is least: no member can place itself next to another's turn.
        let l = &self.learning;
        let has_room = |k: &&PublicKey| {
            l.share.get(*k).copied().unwrap_or(0) + MEMBER_LIST_PAGE <= NEWCOMERS_PER_MEMBER
        };
        let score = |k: &&PublicKey| {
            let theirs = k.0.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
            (theirs ^ mixed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        };
        if let Some(member) = self
            .core
            .members()
            .keys()
            .filter(has_room)
            .min_by_key(score)
        {
            self.learning.quiet_pulls = quiet;
            self.learning.stats.pulls += 1;
            self.learning.pull = Some((*member, None));
            self.learning.pull_pages = 0;
            self.learning.pull_brought = 0;
            self.learning.pull_listed = 0;
            self.learning.pull_progress_ms = now_ms;
            self.learning.pulls += 1;
        }
    }

    /// Ends the pull under way. One that failed (no answer, not a page in order) does not
    /// say the federation is known: the next pull is made whatever this one brought.
    fn end_pull(&mut self, failed: bool) {
        self.learning.pull = None;
        if failed {
            self.learning.pull_brought = self.learning.pull_brought.max(PULL_WORTH_GOING_ON);
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
        self.learning.pull_progress_ms = now_ms;
        let Some(Response::MemberList { members, more }) = response else {
            // No answer, or not a page: this pull ends (the next one, if any, is another).
            self.end_pull(true);
            return;
        };
        self.learning.stats.pages += 1;
        let after = self.learning.pull.and_then(|(_, after)| after);
        // The decoder checked the order; the page must also start after the cursor.
        if members
            .first()
            .is_some_and(|m| after.is_some_and(|a| m.node <= a))
        {
            self.end_pull(true);
            self.learning.strike(member, now_ms);
            return;
        }
        self.learning.pull = match members.last() {
            Some(last) if more => Some((member, Some(last.node))),
            _ => None,
        };
        let mut taken_up_to = after;
        for ListedMember { node, start } in members {
            // Room went to the lister's SWIM news since the page was asked: the pull goes
            // on from this node later instead of dropping the rest.
            if !self.learning.has_room_for(&member) {
                self.learning.pull = Some((member, taken_up_to));
                if taken_up_to == after {
                    // Not one taken: no progress, and none likely soon.
                    self.end_pull(false);
                }
                break;
            }
            taken_up_to = Some(node);
            if !made_up_start(now_ms, start) {
                self.learning.pull_listed = self.learning.pull_listed.saturating_add(1);
            }
            let id = crate::swim::SwimId {
                key: node,
                bump: start,
            };
            if self.newcomer(now_ms, id, member, out) {
                self.learning.pull_brought += 1;
            }
        }
    }

    /// Credentials asked of `via` came (or none: `None`): each is judged for the node it
    /// is given for, if that node was asked for, and the node greeted. No answer, or a
    /// credential that does not judge, is a strike against `via`, not against the node.
    pub(super) fn member_credentials_came(
        &mut self,
        now_ms: u64,
        via: PublicKey,
        nodes: Vec<PublicKey>,
        response: Option<Response>,
        out: &mut Vec<Effect>,
    ) {
        self.learning.batches.remove(&via);
        let mut asked = BTreeSet::new();
        for node in nodes {
            if self.learning.fetching.remove(&node).is_some() {
                self.learning.release(via);
                asked.insert(node);
            }
        }
        let Some(Response::MemberCredentials(list)) = response else {
            return self.learning.strike(via, now_ms);
        };
        let mut bad = false;
        for MemberCredential {
            node,
            credential,
            addrs,
        } in list
        {
            // Each asked node once: a repeat or a node not asked is ignored.
            if !asked.remove(&node) || self.core.members().contains_key(&node) {
                continue;
            }
            match self.core.check_node_credential(now_ms, node, &credential) {
                Ok(()) => {}
                // The node's own certificate, revoked or expired since `via` listed it:
                // `via` may not have heard yet, so it is not struck. Nor is the node held
                // off: a member could otherwise serve honest nodes' old certificates to
                // keep them from being learnt for ten minutes.
                Err(CoreError::CredentialLapsed(_)) => continue,
                Err(_) => {
                    bad = true;
                    continue;
                }
            }
            self.learning.stats.credentials += 1;
            // Its addresses first, so the router can reach it to greet it (a certified
            // node's, as the member that lists it holds them).
            if !addrs.is_empty() {
                out.push(Effect::Addresses { node, addrs });
            }
            self.greet_newcomer(now_ms, node, Arc::from(credential), Some(via), None, out);
        }
        if bad {
            self.learning.strike(via, now_ms);
        }
    }

    /// Answers [`Request::MemberList`]: the members after `after` in key order, each with
    /// the start SWIM probes.
    pub(super) fn member_list(&self, after: Option<PublicKey>) -> Response {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut keys = self
            .core
            .members()
            .range((from, Bound::Unbounded))
            .filter_map(|(k, _)| self.swim.start_of(k).map(|start| (k, start)));
        let members: Vec<ListedMember> = keys
            .by_ref()
            .take(MEMBER_LIST_PAGE)
            .map(|(k, start)| ListedMember { node: *k, start })
            .collect();
        let more = keys.next().is_some();
        Response::MemberList { members, more }
    }

    /// The credentials this node holds of `nodes` (for [`Read::MemberCredentials`]), each
    /// once.
    pub(super) fn member_credentials(&self, nodes: &[PublicKey]) -> Vec<(PublicKey, Arc<[u8]>)> {
        let asked: BTreeSet<&PublicKey> = nodes.iter().take(CREDENTIAL_BATCH).collect();
        asked
            .into_iter()
            .filter_map(|k| {
                let m = self.core.members().get(k)?;
                Some((*k, Arc::clone(m.credential())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made_up(i: u32) -> PublicKey {
        let mut k = [0u8; 32];
        k[28..].copy_from_slice(&i.to_be_bytes());
        PublicKey(k)
    }

    #[test]
    fn silent_nodes_are_held_off_and_a_table_full_of_them_greets_no_one_new() {
        let mut l = Learning::default();
        let t = 1_000_000;
        // A node that answered is not remembered: it may be greeted again (it is listed,
        // so it is no news; if it leaves and is named again, it is greeted again).
        assert!(l.may_greet(&made_up(0), t));
        // A silent one is held off for GREET_AGAIN_MS.
        l.silent(made_up(1), t, t);
        assert!(!l.may_greet(&made_up(1), t + GREET_AGAIN_MS - 1));
        assert!(l.may_greet(&made_up(1), t + GREET_AGAIN_MS));
        // A member naming thousands of silent nodes fills the table: nodes missing from
        // it are not greeted until it empties, so none of them is dialled again and again.
        for i in 2..(MAX_NEWCOMERS as u32 + 500) {
            l.silent(made_up(i), t, t);
        }
        assert_eq!(l.greeted.len(), MAX_NEWCOMERS);
        assert!(!l.may_greet(&made_up(1_000_000), t + 1));
        assert!(
            (2..(MAX_NEWCOMERS as u32 + 500))
                .filter(|i| l.may_greet(&made_up(*i), t + 1))
                .count()
                == 0,
            "neither those remembered nor those past the table"
        );
        // Five minutes on, the table empties and greetings go on.
        assert!(l.may_greet(&made_up(1_000_000), t + GREET_AGAIN_MS));
    }
}
