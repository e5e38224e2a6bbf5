//! Membership: adverts judged (a node certificate that chains to a trusted authority makes
//! its sender a member), judgements kept until the chain expires or is revoked.

use super::*;

impl NodeCore {
    /// A peer's advert: its node credential (certificate and chain) and load. Makes it a
    /// member if the credential is a node certificate for `from` that chains to a trusted
    /// authority.
    pub fn advert(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &[u8],
        load: Load,
    ) -> Result<Vec<Output>, CoreError> {
        let hash = credential_hash(node_credential);
        self.judge_advert(
            now_ms,
            from,
            Some(node_credential),
            &hash,
            None,
            Arc::new(load),
        )
        .map(Option::unwrap_or_default)
    }

    /// An advert that refers to its sender's credential by hash (`credential_hash`) instead
    /// of carrying it. `None`: this node holds no judgement of that credential for `from`
    /// (the caller fetches the credential from it and calls [`NodeCore::advert`]).
    pub fn advert_by_hash(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        hash: &[u8; 32],
        load: Load,
    ) -> Result<Option<Vec<Output>>, CoreError> {
        self.judge_advert(now_ms, from, None, hash, None, Arc::new(load))
    }

    /// [`NodeCore::advert`] with the credential in shared memory: a member admitted on it
    /// keeps a reference, not a copy, and the same allocation compares equal without reading
    /// it. The decision is the same as `advert`'s.
    pub fn advert_shared(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &Arc<[u8]>,
        load: Load,
    ) -> Result<Vec<Output>, CoreError> {
        let hash = credential_hash(node_credential);
        self.judge_advert(
            now_ms,
            from,
            Some(node_credential),
            &hash,
            Some(node_credential),
            Arc::new(load),
        )
        .map(Option::unwrap_or_default)
    }

    /// A node that has not advertised to this one (it answered a greeting, or sent a SWIM
    /// packet): judged on its credential like an advert, with no load until it advertises
    /// (one shared empty load, not one per member: 10,000 nodes × 8,000 members learnt
    /// this way made 10 GB of copies in the simulator), dated as early as the clock skew
    /// allows so that its own adverts are all newer.
    pub fn judge_unadvertised(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &[u8],
        shared: Option<&Arc<[u8]>>,
    ) -> Result<Vec<Output>, CoreError> {
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        let sent_ms = now_ms.saturating_sub(skew_ms.saturating_sub(1));
        let hash = credential_hash(node_credential);
        let load = Arc::clone(&self.no_load);
        self.judge_advert_sent(
            now_ms,
            from,
            Some(node_credential),
            &hash,
            shared,
            load,
            sent_ms,
        )
        .map(Option::unwrap_or_default)
    }

    /// Judges an advert; `None` when it refers to a credential by hash that this node has
    /// not judged for `from`.
    pub(crate) fn judge_advert(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: Option<&[u8]>,
        hash: &[u8; 32],
        shared: Option<&Arc<[u8]>>,
        load: Arc<Load>,
    ) -> Result<Option<Vec<Output>>, CoreError> {
        let sent_ms = load.sent_ms;
        self.judge_advert_sent(now_ms, from, node_credential, hash, shared, load, sent_ms)
    }

    /// [`NodeCore::judge_advert`] of an advert made at `sent_ms` (the load's own time, or,
    /// for a node that has not advertised, the time `judge_unadvertised` gives it).
    #[allow(clippy::too_many_arguments)]
    fn judge_advert_sent(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: Option<&[u8]>,
        hash: &[u8; 32],
        shared: Option<&Arc<[u8]>>,
        load: Arc<Load>,
        sent_ms: u64,
    ) -> Result<Option<Vec<Output>>, CoreError> {
        let refuse = |why: String| Err(CoreError::NotMember(why));
        let skew_ms = slicefed_trust::verify::CLOCK_SKEW_SECS.saturating_mul(1000);
        if sent_ms.abs_diff(now_ms) > skew_ms {
            return Err(CoreError::StaleAdvert(format!(
                "made at {} ms, more than {skew_ms} ms from this node's clock ({now_ms})",
                sent_ms
            )));
        }
        // A member is heard only on an advert newer than its last, and, while its
        // judgement stands, at most once per least gap, whatever the advert says: a new
        // SWIM start or a new credential each advert (a junk object added to the same
        // chain makes a new hash) would otherwise buy a judgement and a forward each. Only
        // a turn to unhealthy comes at any time (a toggler gets one exempt advert per turn;
        // the turn back waits); an expired judgement is judged again below, gap or not (a
        // revoked one is no member any more, `forget_judgements`). The gap is by the
        // sender's clock, which must stay within the skew of this node's: claiming later
        // times buys a burst of at most the skew's worth. An honest member advertises at
        // most once per its own interval, and a restart's SWIM start reaches members by
        // its packets too.
        //
        // The same credential as last time, still within its validity and with none of its
        // links revoked since: the judgement stands (a member re-advertises for ever;
        // checking its chain each time would cost every node a chain walk per advert).
        //
        // One lookup serves the three (every receiver of every advert makes it).
        let least_ms = (self.advert_interval_ms() / crate::core::ADVERT_GAP_SHARE)
            .min(crate::core::ADVERT_GAP_MAX_MS);
        if let Some(m) = self.members.get_mut(&from) {
            if sent_ms <= m.last_sent_ms {
                return Err(CoreError::StaleAdvert(format!(
                    "made at {sent_ms} ms, not after the last advert heard ({})",
                    m.last_sent_ms
                )));
            }
            let gap_ms = sent_ms.saturating_sub(m.last_sent_ms);
            let failing = load.unhealthy.is_some() && m.load.unhealthy.is_none();
            let stands = secs(now_ms) <= m.valid_until;
            if stands && gap_ms < least_ms && !failing {
                return Err(CoreError::AdvertTooSoon { gap_ms, least_ms });
            }
            if stands && m.judgement.credential_hash == *hash {
                m.last_sent_ms = sent_ms;
                m.load = load;
                if now_ms > m.last_seen_ms {
                    m.last_seen_ms = now_ms;
                }
                return Ok(Some(vec![]));
            }
        }
        let Some(node_credential) = node_credential else {
            return Ok(None);
        };
        let (judgement, valid_until) = self.judge_node_credential(now_ms, from, node_credential)?;
        let mut out = vec![];
        if !self.members.contains_key(&from) {
            if self.members.len() >= MAX_MEMBERS {
                return refuse(format!("this node already tracks {MAX_MEMBERS} members"));
            }
            out.push(Output::Joined(from));
        }
        let judgement = Judgement {
            credential: shared.map_or_else(|| Arc::from(node_credential), Arc::clone),
            credential_hash: *hash,
            ..judgement
        };
        let judgement = match &self.judgements {
            Some(shared) => shared.intern(judgement),
            None => Arc::new(judgement),
        };
        let member = Member {
            last_seen_ms: now_ms,
            last_sent_ms: sent_ms,
            load,
            valid_until,
            judgement,
        };
        self.oldest_seen_ms = self.oldest_seen_ms.min(now_ms);
        self.members.insert(from, member);
        Ok(Some(out))
    }

    /// Whether `node_credential` is a node certificate for `node` that chains to a trusted
    /// authority now, without listing anyone: a node learnt of from a third party is
    /// greeted only on a credential that judges (`node/members.rs`).
    pub fn check_node_credential(
        &mut self,
        now_ms: u64,
        node: PublicKey,
        node_credential: &[u8],
    ) -> Result<(), CoreError> {
        self.judge_node_credential(now_ms, node, node_credential)
            .map(|_| ())
    }

    /// The judgement of a node credential for `from` (its credential fields left empty for
    /// the caller), and until when it holds.
    fn judge_node_credential(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        node_credential: &[u8],
    ) -> Result<(Judgement, u64), CoreError> {
        let refuse = |why: String| Err(CoreError::NotMember(why));
        let cred = match Credential::from_bytes(node_credential) {
            Ok(c) => c,
            Err(e) => return refuse(e.to_string()),
        };
        let pool: Vec<&[u8]> = cred.chain().collect();
        // Membership is not tied to this node as audience: any node that trusts the root.
        let ctx = Context {
            now: secs(now_ms),
            node: None,
        };
        let v = match self.verifier.verify(cred.leaf(), &pool, &ctx) {
            Ok(v) => v,
            // Lapsed only if it is a node certificate for `from`: anything else revoked
            // or expired (another node's old certificate, a user's leaf signed in the
            // past) is plainly not this node's credential, and refused as such. The walk
            // checked every signature, the leaf's too, before any link's time or
            // revocation, so the leaf's body is read here without checking it again.
            Err(
                e @ (slicefed_trust::VerifyError::Revoked { .. }
                | slicefed_trust::VerifyError::Expired { .. }),
            ) if objects::decode_envelope(cred.leaf())
                .and_then(|env| objects::decode_body::<slicefed_trust::objects::NodeCert>(&env))
                .is_ok_and(|c| c.subject == from) =>
            {
                return Err(CoreError::CredentialLapsed(e.to_string()));
            }
            Err(e) => return refuse(e.to_string()),
        };
        let Object::NodeCert(nc) = &v.leaf.object else {
            return refuse(format!("a {} is not a node certificate", v.leaf.kind));
        };
        if nc.subject != from {
            return refuse(format!(
                "the node certificate is for {}, not for {}",
                nc.subject.peer_id(),
                from.peer_id()
            ));
        }
        let valid_until = v
            .leaf
            .validity()
            .map_or(u64::MAX, |x| x.not_after)
            .min(v.effective.validity.not_after)
            .saturating_add(slicefed_trust::verify::CLOCK_SKEW_SECS);
        let judgement = Judgement {
            name: nc.name.clone(),
            authority: v.responsible.authority.clone(),
            credential: Arc::from(&[][..]),
            credential_hash: [0; 32],
            chain: v.links.iter().map(|l| l.id).collect(),
        };
        Ok((judgement, valid_until))
    }

    /// A revocation arrived: members whose chain it names are judged again now, with it,
    /// and those it ends are members no more (`Output::Left` with the revocation's
    /// outputs, [`NodeCore::take_revoked_members`]). Marking them to be judged again on
    /// their next advert (and refused) left them listed: a refused advert removes nobody,
    /// and a revoked node that kept answering SWIM probes was heard from, so never timed
    /// out, and stayed a voter. Judged again, not removed on the revocation's word: the
    /// verifier holds a revocation whose signer is entitled in the chain the revocation
    /// carries, but it ends a member only if that signer is entitled in the member's own
    /// chain (the two differ when the revoked certificate's issuer is also certified
    /// elsewhere). One that still judges keeps its standing judgement.
    pub(super) fn forget_judgements(&mut self, now_ms: u64, target: &CertId) {
        let named: Vec<(PublicKey, Arc<[u8]>)> = self
            .members
            .iter()
            .filter(|(_, m)| m.judgement.chain.contains(target))
            .map(|(k, m)| (*k, Arc::clone(&m.judgement.credential)))
            .collect();
        for (k, credential) in named {
            if self.judge_node_credential(now_ms, k, &credential).is_ok() {
                continue;
            }
            if self.members.remove(&k).is_some() {
                self.revoked_members.push(k);
            }
        }
    }

    /// The members a revocation removed since the last call, as departures (one listed
    /// again since, on another credential, is not reported).
    pub(super) fn take_revoked_members(&mut self) -> Vec<Output> {
        let mut revoked = std::mem::take(&mut self.revoked_members);
        revoked.retain(|k| !self.members.contains_key(k));
        revoked.into_iter().map(Output::Left).collect()
    }
}
