//! Slice deletes: a slice's holder ends it on every node at once, those that are down
//! included. A delete is held only when its signer verifies under this node's policy as a
//! user (or delegate) for that slice; it is kept with the revocations (the same digest and
//! catch-up pages, so a returning node reconciles both before it restores
//! anything) until no ticket it ends can still be valid, and logged (`SliceDeleted`) where
//! it ended a sliver, so a restart reads it back.

use super::*;
use slicefed_trust::objects::SliceDelete;

/// Deletes held per signer: past this a signer's oldest is forgotten (only its own slices
/// are at stake).
pub const MAX_DELETES_PER_SIGNER: usize = 256;

/// A delete this node holds.
#[derive(Clone, Debug)]
pub(super) struct HeldDelete {
    signer: PublicKey,
    delete: SliceDelete,
    /// Unix seconds after which it ends nothing (its tickets have all expired).
    expires: u64,
    /// Its chain's link ids, by their first 8 bytes: a revocation judges again only the
    /// deletes whose chain names the revoked certificate (a filter of a few bits would let
    /// an authority grind certificate ids that match every delete, and make each of its
    /// revocations judge every delete again).
    chain: Box<[u64]>,
    /// Signed under a certificate revoked since: no longer served to members (they refuse
    /// it), but still ending its tickets here until it expires.
    voided: bool,
}

impl HeldDelete {
    fn of(judged: &slicefed_trust::JudgedDelete) -> HeldDelete {
        HeldDelete {
            signer: judged.signer,
            delete: judged.delete.clone(),
            expires: judged.expires,
            chain: judged.chain.iter().map(held::prefix).collect(),
            voided: false,
        }
    }

    /// Whether it ends a ticket of `slice` held by `holders`, with id `ticket`, issued at
    /// `issued_at`.
    fn ends(&self, slice: &Name, holders: &[PublicKey], ticket: &CertId, issued_at: u64) -> bool {
        self.delete.slice == *slice
            && holders.contains(&self.signer)
            && (self.delete.tickets.contains(ticket) || issued_at <= self.delete.issued_at)
    }
}

/// Whether these bytes are a slice delete file (rather than a revocation file): peeked,
/// not verified.
pub(super) fn is_delete_file(bytes: &[u8]) -> bool {
    Credential::from_bytes(bytes)
        .ok()
        .and_then(|c| objects::decode_envelope(c.leaf()).ok())
        .is_some_and(|e| e.kind == slicefed_trust::Kind::SliceDelete)
}

impl NodeCore {
    /// The held delete (its id) that ends a ticket, if any.
    pub(super) fn deleted(
        &self,
        slice: &Name,
        holders: &[PublicKey],
        ticket: &CertId,
        issued_at: u64,
    ) -> Option<CertId> {
        self.deletes
            .iter()
            .find(|(_, d)| d.ends(slice, holders, ticket, issued_at))
            .map(|(id, _)| *id)
    }

    /// A slice delete, from gossip, a member's catch-up page or its holder. Judged first
    /// (nothing unentitled is held, logged or passed on); then every sliver here that it
    /// ends is stopped and it is logged. It is not gossiped: its holder hands it to every
    /// member (each would flood it again, gossipsub's message ids being per publisher), and
    /// a node the holder missed reconciles it once it settles in the digest.
    pub(super) fn honour_delete(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
    ) -> Result<Vec<Output>, CoreError> {
        let judged = self
            .verifier
            .judge_delete(bytes, secs(now_ms))
            .map_err(|e| CoreError::BadDelete(e.to_string()))?;
        if self.revocations.contains(&judged.id) {
            return Ok(vec![]);
        }
        // Honoured here even past the bounds on what is held for others.
        let d = HeldDelete::of(&judged);
        self.hold_delete(judged, bytes);
        let stopped: Vec<u64> = self
            .slivers
            .values()
            .filter(|s| d.ends(&s.plan.who.slice, &s.holders, &s.ticket, s.issued_at))
            .map(|s| s.plan.id)
            .collect();
        let mut out: Vec<Output> = stopped
            .iter()
            .map(|id| Output::Stop {
                id: *id,
                reason: StopReason::Deleted,
            })
            .collect();
        // Logged where it ended something (so a restart never brings that back); a node it
        // ends nothing on holds it in memory only and reconciles it again after a restart,
        // before it restores anything (a delete per slice would otherwise grow every log
        // and every witness's replica by a record per slice in the federation).
        if !stopped.is_empty() {
            out.push(Output::Append(EntryBody::SliceDeleted {
                delete: bytes.to_vec(),
                stopped,
            }));
        }
        Ok(out)
    }

    /// A delete read back from this node's own log after a restart: held again (judged
    /// again: the owner may have changed the policy), not logged or gossiped twice.
    pub fn remember_delete(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), CoreError> {
        let judged = self
            .verifier
            .judge_delete(bytes, secs(now_ms))
            .map_err(|e| CoreError::BadDelete(e.to_string()))?;
        if !self.deletes.contains_key(&judged.id) {
            self.hold_delete(judged, bytes);
        }
        Ok(())
    }

    /// Holds a judged delete with its bytes (served to members that were away, within the
    /// revocations' bounds), at most [`MAX_DELETES_PER_SIGNER`] per signer.
    fn hold_delete(&mut self, judged: slicefed_trust::JudgedDelete, bytes: &[u8]) {
        if !self.revocations.has_room(bytes.len()) {
            return;
        }
        let signer = judged.signer;
        let count = self.deletes_by.get(&signer).copied().unwrap_or(0);
        if count >= MAX_DELETES_PER_SIGNER {
            let oldest = self
                .deletes
                .iter()
                .filter(|(_, d)| d.signer == signer)
                .min_by_key(|(_, d)| d.delete.issued_at)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.forget_delete(&oldest);
            }
        }
        let settles = judged
            .delete
            .issued_at
            .saturating_mul(1000)
            .saturating_add(held::DELETE_SETTLE_MS);
        if !self.revocations.insert(judged.id, bytes, settles) {
            return;
        }
        *self.deletes_by.entry(signer).or_insert(0) += 1;
        self.deletes_expiring.insert((judged.expires, judged.id));
        self.deletes.insert(judged.id, HeldDelete::of(&judged));
    }

    /// Certificate `revoked` was revoked: held deletes signed under it no longer verify,
    /// and are no longer served. A node that hears of such a delete only after the
    /// revocation refuses it; without this, the nodes that held it before kept serving it,
    /// and every reconciliation with them fetched it and refused it again for as long as it
    /// was held. Each still ends its tickets here until it expires: a ticket it ended need
    /// not chain through the revoked certificate (its signer's key may hold another), and
    /// a deleted slice must not come back. Only deletes whose chain names `revoked` are
    /// judged again.
    pub(super) fn void_deletes_under(&mut self, now_ms: u64, revoked: &CertId) {
        let named = held::prefix(revoked);
        let candidates: Vec<CertId> = self
            .deletes
            .iter()
            .filter(|(_, d)| !d.voided && d.chain.contains(&named))
            .map(|(id, _)| *id)
            .collect();
        for id in candidates {
            let Some(bytes) = self.revocations.get(&id).map(<[u8]>::to_vec) else {
                continue;
            };
            if self.verifier.judge_delete(&bytes, secs(now_ms)).is_ok() {
                continue;
            }
            if let Some(d) = self.deletes.get_mut(&id) {
                d.voided = true;
                self.deletes_voided += 1;
            }
            self.revocations.remove(&id);
        }
    }

    fn forget_delete(&mut self, id: &CertId) {
        if let Some(d) = self.deletes.remove(id) {
            if d.voided {
                self.deletes_voided = self.deletes_voided.saturating_sub(1);
            }
            self.deletes_expiring.remove(&(d.expires, *id));
            if let Some(n) = self.deletes_by.get_mut(&d.signer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.deletes_by.remove(&d.signer);
                }
            }
        }
        self.revocations.remove(id);
    }

    /// Forgets deletes that end nothing any more (every ticket they end has expired).
    pub(super) fn prune_deletes(&mut self, now_ms: u64) {
        let now = secs(now_ms);
        while let Some(&(expires, id)) = self.deletes_expiring.first() {
            if expires >= now {
                break;
            }
            self.forget_delete(&id);
            // Forgetting removes it from the queue; a stale entry is dropped here.
            self.deletes_expiring.remove(&(expires, id));
        }
    }
}
