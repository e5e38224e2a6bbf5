//! Admission: a ticket checked for this node (ledger health, chain, module, invocation,
//! capacity, caps, replay), receipts, renewals, restores after a restart.

use super::*;

impl NodeCore {
    pub(super) fn receipt(
        &self,
        ticket: CertId,
        admitted: bool,
        reason: String,
        now_ms: u64,
    ) -> Option<Output> {
        let r = NodeReceipt {
            ticket,
            admitted,
            reason: within_bytes(&reason, objects::MAX_REASON_BYTES),
            at: secs(now_ms),
        };
        objects::sign(&self.key, &r)
            .ok()
            .map(|s| Output::Receipt(s.bytes))
    }

    /// A ticket credential submitted by a researcher (or a service acting for one), for a
    /// module whose bytes the driver holds. Always answers with a signed receipt.
    pub fn submit(
        &mut self,
        now_ms: u64,
        credential: &[u8],
        module: ModuleHash,
        invocation: &Invocation,
    ) -> Vec<Output> {
        let ticket_id = Credential::from_bytes(credential)
            .map(|c| CertId::of(c.leaf()))
            .unwrap_or(CertId([0; 32]));
        match self.admit(now_ms, credential, Some(module), invocation, None) {
            Ok((plan, verified, chain)) => {
                let who = plan.who.clone();
                let module = plan.module;
                self.insert(plan.clone(), credential, &verified, chain, ticket_id);
                let mut out = vec![
                    Output::Start(plan),
                    Output::Append(EntryBody::SliverCreated {
                        who,
                        module,
                        ticket: ticket_id,
                        credential: credential.to_vec(),
                        invocation: invocation.clone(),
                    }),
                ];
                out.extend(self.receipt(ticket_id, true, String::new(), now_ms));
                self.tickets.admitted = self.tickets.admitted.saturating_add(1);
                out
            }
            Err(refusal) => {
                let n = self.tickets.refused.entry(refusal.label()).or_default();
                *n = n.saturating_add(1);
                let slice = Credential::from_bytes(credential).ok().and_then(|c| {
                    match slicefed_trust::verify::open_any(c.leaf()).ok()?.object {
                        Object::SliceTicket(t) => Some(t.slice.to_string()),
                        _ => None,
                    }
                });
                if self.tickets.recent.len() >= RECENT_REFUSALS {
                    self.tickets.recent.pop_front();
                }
                self.tickets.recent.push_back(RecentRefusal {
                    at_ms: now_ms,
                    slice,
                    label: refusal.label(),
                    reason: within_bytes(&refusal.to_string(), objects::MAX_REASON_BYTES),
                });
                self.receipt(ticket_id, false, refusal.to_string(), now_ms)
                    .into_iter()
                    .collect()
            }
        }
    }

    pub(super) fn insert(
        &mut self,
        plan: SliverPlan,
        credential: &[u8],
        verified: &Verified,
        chain: Vec<CertId>,
        ticket: CertId,
    ) {
        let mut holders = vec![verified.leaf.signer];
        holders.extend(verified.responsible.user_key);
        let (invocation, issued_at) = match &verified.leaf.object {
            Object::SliceTicket(t) => (t.invocation, t.issued_at),
            _ => (Invocation::default().hash(), 0),
        };
        self.slivers.insert(
            plan.id,
            Running {
                plan,
                credential: credential.to_vec(),
                chain,
                root: verified.responsible.root.clone(),
                ticket,
                holders,
                issued_at,
                invocation,
            },
        );
    }

    /// Verifies a ticket and checks it fits. `module` is the hash of the bytes the driver
    /// holds (checked against the ticket); `restore` is the id of a sliver that ran here
    /// before a restart (its nonce was consumed then, so the replay check is skipped).
    pub(super) fn admit(
        &mut self,
        now_ms: u64,
        credential: &[u8],
        module: Option<ModuleHash>,
        invocation: &Invocation,
        restore: Option<u64>,
    ) -> Result<(SliverPlan, Verified, Vec<CertId>), Refusal> {
        // Nothing runs that this node cannot record.
        if let Some(why) = &self.ledger_failure {
            return Err(Refusal::LedgerUnavailable(why.clone()));
        }
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(Refusal::File(format!(
                "the ticket file is {} bytes, over {MAX_CREDENTIAL_BYTES}",
                credential.len()
            )));
        }
        let cred = Credential::from_bytes(credential).map_err(|e| Refusal::File(e.to_string()))?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let ctx = self.ctx(now_ms);
        // Capacity first among the cheap checks, but after the signature: an unsigned
        // request learns nothing about this node's load.
        let v = self.verifier.verify(cred.leaf(), &pool, &ctx)?;
        let Object::SliceTicket(t) = &v.leaf.object else {
            return Err(Refusal::NotATicket(v.leaf.kind));
        };
        // A slice its holder deleted does not run here again (a restore, a late ticket).
        let holders: Vec<PublicKey> = std::iter::once(v.leaf.signer)
            .chain(v.responsible.user_key)
            .collect();
        if let Some(delete) = self.deleted(&t.slice, &holders, &v.leaf.id, t.issued_at) {
            return Err(Refusal::Deleted(delete));
        }
        if let Some(m) = module
            && m != t.module
        {
            return Err(Refusal::WrongModule {
                sent: m,
                named: t.module,
            });
        }
        invocation.validate().map_err(Refusal::File)?;
        if invocation.hash() != t.invocation {
            return Err(Refusal::WrongInvocation);
        }
        if self.slivers.len() as u64 >= u64::from(self.capacity.max_slivers) {
            return Err(Refusal::NodeFull(self.slivers.len()));
        }
        let memory = v
            .effective
            .caps
            .memory
            .unwrap_or(self.capacity.default_sliver_memory);
        let free = self.capacity.memory.saturating_sub(self.used_memory());
        if memory > free {
            return Err(Refusal::NotEnoughMemory {
                wanted: memory,
                free,
            });
        }
        if let Some(max) = v.effective.caps.max_slivers {
            let root = &v.responsible.root;
            let user = v.responsible.user_key;
            let same = self
                .slivers
                .values()
                .filter(|r| {
                    &r.root == root && (user.is_none() || r.plan.who.user == v.responsible.user)
                })
                .count();
            if same as u64 >= u64::from(max) {
                return Err(Refusal::OverCap {
                    running: same,
                    cap: max,
                });
            }
        }
        // A ticket that asks to read the node's sensors is refused, not quietly narrowed,
        // when a link of its chain or this node's owner takes them away.
        if t.network.sensors && !v.effective.network.sensors {
            return Err(Refusal::SensorsNotAllowed);
        }
        let id = match restore {
            Some(id) => {
                self.next_sliver = self.next_sliver.max(id.saturating_add(1));
                id
            }
            None => {
                // Last, because it consumes the nonce: a refused ticket can be fixed and
                // re-sent.
                self.verifier.admit_ticket(cred.leaf(), &pool, &ctx)?;
                let id = self.next_sliver;
                self.next_sliver += 1;
                id
            }
        };
        let plan = SliverPlan {
            id,
            who: Attribution {
                slice: t.slice.clone(),
                sliver: id,
                user: v.responsible.user.clone(),
                authority: Some(v.responsible.authority.clone()),
            },
            module: t.module,
            memory,
            cpu_share: v.effective.caps.cpu_share.unwrap_or(1).max(1),
            network: v.effective.network.clone(),
            egress_per_day: v.effective.caps.egress_per_day,
            not_after: v.effective.validity.not_after,
        };
        let chain = v.links.iter().map(|l| l.id).collect();
        Ok((plan, v, chain))
    }

    /// The driver could not start an admitted sliver (its module does not compile, the
    /// sandbox is full): it is dropped, logged as stopped, and the admitted receipt is
    /// replaced by a refusal saying why.
    pub fn start_failed(&mut self, now_ms: u64, id: u64, reason: &str) -> Vec<Output> {
        let Some(s) = self.slivers.remove(&id) else {
            return vec![];
        };
        let refusal = Refusal::StartFailed(reason.to_string());
        let mut out = vec![Output::Append(EntryBody::SliverStopped {
            who: s.plan.who,
            reason: refusal.to_string().chars().take(200).collect(),
            usage: Usage::default(),
        })];
        out.extend(self.receipt(s.ticket, false, refusal.to_string(), now_ms));
        out
    }

    /// The `SliverCreated` of an admitted sliver could not be made durable (the ledger
    /// failed as it was written): the sliver never starts, the node stops taking tickets
    /// until the ledger works ([`NodeCore::ledger_failed`]), and the refusal says why.
    /// Nothing is appended: there is nothing to stop in the log.
    pub fn not_recorded(&mut self, now_ms: u64, id: u64, why: &str) -> Vec<Output> {
        self.ledger_failed(why);
        let Some(s) = self.slivers.remove(&id) else {
            return vec![];
        };
        self.receipt(
            s.ticket,
            false,
            Refusal::NotRecorded(why.to_string()).to_string(),
            now_ms,
        )
        .into_iter()
        .collect()
    }

    /// Brings back, under its old id, a sliver that ran here before the node restarted, if
    /// its ticket still verifies (not expired, not revoked) and it still fits.
    pub fn restore(
        &mut self,
        now_ms: u64,
        id: u64,
        credential: &[u8],
        invocation: &Invocation,
    ) -> Result<Vec<Output>, Refusal> {
        if self.slivers.contains_key(&id) {
            return Err(Refusal::AlreadyRunning(id));
        }
        let (plan, verified, chain) = self.admit(now_ms, credential, None, invocation, Some(id))?;
        let ticket = verified.leaf.id;
        let who = plan.who.clone();
        let module = plan.module;
        self.insert(plan.clone(), credential, &verified, chain, ticket);
        Ok(vec![
            Output::Start(plan),
            Output::Append(EntryBody::OwnerAction {
                action: format!("restored sliver {id} after a node restart"),
                who: Some(who.clone()),
            }),
            Output::Append(EntryBody::SliverCreated {
                who,
                module,
                ticket,
                credential: credential.to_vec(),
                invocation: invocation.clone(),
            }),
        ])
    }

    /// A later ticket from the same holder for the same slice: every sliver of that slice
    /// it holds here takes the new ticket (and its new end of validity). Answers with a
    /// signed receipt either way.
    pub fn renew(&mut self, now_ms: u64, credential: &[u8]) -> Vec<Output> {
        let ticket_id = Credential::from_bytes(credential)
            .map(|c| CertId::of(c.leaf()))
            .unwrap_or(CertId([0; 32]));
        match self.check_renewal(now_ms, credential) {
            Ok((ids, verified, chain, not_after)) => {
                let mut out = vec![];
                for id in ids {
                    if let Some(s) = self.slivers.get_mut(&id) {
                        s.plan.not_after = not_after;
                        s.credential = credential.to_vec();
                        s.chain = chain.clone();
                        s.ticket = ticket_id;
                        s.holders = std::iter::once(verified.leaf.signer)
                            .chain(verified.responsible.user_key)
                            .collect();
                        if let Object::SliceTicket(t) = &verified.leaf.object {
                            s.issued_at = t.issued_at;
                        }
                        out.push(Output::Append(EntryBody::SliverRenewed {
                            who: s.plan.who.clone(),
                            ticket: ticket_id,
                            credential: credential.to_vec(),
                        }));
                    }
                }
                out.extend(self.receipt(ticket_id, true, String::new(), now_ms));
                out
            }
            Err(refusal) => self
                .receipt(ticket_id, false, refusal.to_string(), now_ms)
                .into_iter()
                .collect(),
        }
    }

    pub(super) fn check_renewal(
        &mut self,
        now_ms: u64,
        credential: &[u8],
    ) -> Result<(Vec<u64>, Verified, Vec<CertId>, u64), Refusal> {
        if let Some(why) = &self.ledger_failure {
            return Err(Refusal::LedgerUnavailable(why.clone()));
        }
        let cred = Credential::from_bytes(credential).map_err(|e| Refusal::File(e.to_string()))?;
        let pool: Vec<&[u8]> = cred.chain().collect();
        let ctx = self.ctx(now_ms);
        let v = self.verifier.verify(cred.leaf(), &pool, &ctx)?;
        let Object::SliceTicket(t) = &v.leaf.object else {
            return Err(Refusal::NotATicket(v.leaf.kind));
        };
        let signer = v.leaf.signer;
        let ids: Vec<u64> = self
            .slivers
            .values()
            .filter(|s| s.plan.who.slice == t.slice && s.holders.contains(&signer))
            .map(|s| s.plan.id)
            .collect();
        if ids.is_empty() {
            return Err(Refusal::NothingToRenew(t.slice.clone()));
        }
        if ids
            .iter()
            .filter_map(|id| self.slivers.get(id))
            .any(|s| s.plan.module != t.module)
        {
            return Err(Refusal::RenewalChangesModule);
        }
        // The renewal's ticket becomes the slivers' ticket (logged, saved for restarts): it
        // must sign the arguments they run with.
        if ids
            .iter()
            .filter_map(|id| self.slivers.get(id))
            .any(|s| s.invocation != t.invocation)
        {
            return Err(Refusal::RenewalChangesInvocation);
        }
        if t.network.sensors && !v.effective.network.sensors {
            return Err(Refusal::SensorsNotAllowed);
        }
        // The slivers keep the network rights they started with, so a renewal's chain must
        // grant them the same sensors right: otherwise a chain re-issued without it would
        // take over the slivers (and the old chain's revocation would no longer stop them).
        if ids
            .iter()
            .filter_map(|id| self.slivers.get(id))
            .any(|s| s.plan.network.sensors != v.effective.network.sensors)
        {
            return Err(Refusal::RenewalChangesSensors);
        }
        self.verifier.admit_ticket(cred.leaf(), &pool, &ctx)?;
        let chain = v.links.iter().map(|l| l.id).collect();
        let not_after = v.effective.validity.not_after;
        Ok((ids, v, chain, not_after))
    }
}
