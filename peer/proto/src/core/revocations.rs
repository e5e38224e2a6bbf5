//! Revocations: held only when their signer is entitled, honoured (what they revoke is
//! stopped), logged and gossiped once; caught up from members; pruned when their target
//! expires.

use super::*;

impl NodeCore {
    /// A revocation, from gossip or from the owner. Stops every sliver whose chain it
    /// revokes (as judged by the same rules as admission), logs it, and gossips it on once.
    pub fn revocation(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Vec<Output>, CoreError> {
        self.honour_revocation(now_ms, bytes, None)
    }

    /// A revocation fetched from a member (a catch-up), by a node up since `up_since_ms`.
    /// Honoured like a gossiped one, but gossiped on only if it was issued while this node
    /// was up: then the node missed it through the network (a partition, lost gossip) and
    /// its neighbours may have too. A node that was down when it was issued has neighbours
    /// that were up and heard it; in the simulator, every returning node passing on every
    /// revocation it caught up was most of a revocation storm's events and traffic.
    pub fn caught_up_revocation(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        up_since_ms: u64,
    ) -> Result<Vec<Output>, CoreError> {
        self.honour_revocation(now_ms, bytes, Some(up_since_ms))
    }

    pub(super) fn honour_revocation(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        caught_up_since_ms: Option<u64>,
    ) -> Result<Vec<Output>, CoreError> {
        // One already held (its id) costs a lookup, not a verification.
        if revocation_id(bytes).is_some_and(|id| self.revocations.contains(&id)) {
            return Ok(vec![]);
        }
        // Slice deletes are held with revocations (same digest and catch-up).
        if deletes::is_delete_file(bytes) {
            return self.honour_delete(now_ms, bytes);
        }
        // Entitlement first (the verifier holds only what an authority at or above the
        // revoked object's issuer signed): nothing unentitled is held, logged or forwarded.
        let held = match self.hold_revocation(now_ms, bytes) {
            Ok(h) => h,
            // Re-sent or re-signed by the same key: nothing new to log or pass on.
            Err(RevocationError::AlreadyHeld { .. }) => return Ok(vec![]),
            Err(e) => return Err(CoreError::Revocation(e)),
        };
        let r = &held.revocation;
        let issued_ms = r.body.revoked_at.saturating_mul(1000);
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        let pass_on = caught_up_since_ms.is_none_or(|up| issued_ms.saturating_add(skew_ms) >= up);
        let target = r.body.target;
        let mut out = self.stop_revoked(now_ms, &held.file, target, pass_on);
        out.extend(self.take_revoked_members());
        Ok(out)
    }

    /// Judges a revocation file and, when its revoker is entitled, holds it: in the
    /// verifier (for every later check) and with its bytes (for members that were away,
    /// within [`MAX_SEEN_REVOCATIONS`] and [`MAX_REVOCATION_BYTES`]; past either it is still
    /// honoured here, only not served to others).
    pub(super) fn hold_revocation(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
    ) -> Result<HeldFile, RevocationError> {
        let held = self.verifier.add_revocation(bytes, secs(now_ms))?;
        let r = &held.revocation;
        let target = r.body.target;
        // A revocation that replaces one of the same revoker's of the same target (a
        // lower id) ends no member the first did not: re-judging for it would let one
        // revoker make every node walk every member under the target again and again.
        if held.replaced.is_none() {
            self.forget_judgements(now_ms, &target);
        }
        self.void_deletes_under(now_ms, &target);
        if let Some(old) = held.replaced {
            self.revocations.remove(&old);
        }
        // Past the bounds it is still honoured here, only not served to others.
        // In the digest at once (see `held.rs`).
        self.revocations.insert(r.id, &held.file, 0);
        self.revocations.settle(now_ms);
        Ok(held)
    }

    /// A revocation read back from this node's own log after a restart: held again, so
    /// slivers restored after it are judged with it, without logging or gossiping it twice.
    /// Judged again like any other (the owner may have changed the policy since).
    pub fn remember_revocation(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), CoreError> {
        if deletes::is_delete_file(bytes) {
            return self.remember_delete(now_ms, bytes);
        }
        match self.hold_revocation(now_ms, bytes) {
            Ok(_) | Err(RevocationError::AlreadyHeld { .. }) => Ok(()),
            Err(e) => Err(CoreError::Revocation(e)),
        }
    }

    /// Forgets revocations whose targets expired (they guard nothing any more).
    pub(super) fn prune_revocations(&mut self, now_ms: u64) {
        let gone = self.verifier.prune_revocations(secs(now_ms));
        if gone.is_empty() {
            return;
        }
        for id in gone {
            self.revocations.remove(&id);
        }
    }

    pub(super) fn stop_revoked(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        target: CertId,
        gossip: bool,
    ) -> Vec<Output> {
        let mut out = vec![];
        let ctx = self.ctx(now_ms);
        let mut stopped = vec![];
        let affected: Vec<u64> = self
            .slivers
            .iter()
            .filter(|(_, s)| s.chain.contains(&target))
            .map(|(id, _)| *id)
            .collect();
        for id in affected {
            let still_valid = self.slivers.get(&id).is_some_and(|s| {
                Credential::from_bytes(&s.credential).is_ok_and(|c| {
                    let pool: Vec<&[u8]> = c.chain().collect();
                    self.verifier.verify(c.leaf(), &pool, &ctx).is_ok()
                })
            });
            if !still_valid {
                stopped.push(id);
                out.push(Output::Stop {
                    id,
                    reason: StopReason::Revoked,
                });
            }
        }
        out.push(Output::Append(EntryBody::RevocationSeen {
            revocation: bytes.to_vec(),
            stopped,
        }));
        if gossip {
            out.push(Output::GossipRevocation(bytes.to_vec()));
        }
        out
    }
}
