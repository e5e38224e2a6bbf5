//! What holders and the owner may do to running slivers: delete, read output, stop; and
//! slivers' ends.

use super::*;

impl NodeCore {
    /// The slice's holder deletes it here: every sliver of the slice that the signer holds
    /// is stopped. The request is signed by the holder for this node and is fresh. Signed
    /// with the node's own key, it is the owner's command and stops the slice whoever holds
    /// it (the owner stays in control of the machine).
    pub fn delete(
        &mut self,
        now_ms: u64,
        request: &crate::wire::HolderRequest,
    ) -> Result<Vec<Output>, CoreError> {
        request
            .verify(crate::wire::HolderAction::Delete, &self.me, secs(now_ms))
            .map_err(|e| CoreError::BadDelete(e.to_string()))?;
        // The node's own key is its owner's: the owner may stop any slice here, and the
        // ledger says it was the owner, not the slice's holder.
        let by_owner = request.body.signer == self.me;
        let reason = if by_owner {
            StopReason::Owner
        } else {
            StopReason::Deleted
        };
        let ids: Vec<u64> = self
            .slivers
            .values()
            .filter(|s| {
                s.plan.who.slice.as_str() == request.body.slice
                    && (by_owner || s.holders.contains(&request.body.signer))
            })
            .map(|s| s.plan.id)
            .collect();
        Ok(ids
            .into_iter()
            .map(|id| Output::Stop { id, reason })
            .collect())
    }

    /// Whether a signed request to read `slice`'s output here may be answered: signed for
    /// this node, fresh, and by the node's owner or a holder of one of the slice's slivers
    /// (running, or among `ended_holders` of those that ended). Output is the researcher's
    /// and the owner's, nobody else's.
    pub fn may_read_logs(
        &self,
        now_ms: u64,
        request: &crate::wire::HolderRequest,
        ended_holders: &[PublicKey],
    ) -> Result<(), CoreError> {
        request
            .verify(crate::wire::HolderAction::ReadLogs, &self.me, secs(now_ms))
            .map_err(|e| CoreError::NotHolder(e.to_string()))?;
        let signer = request.body.signer;
        let holds = signer == self.me
            || ended_holders.contains(&signer)
            || self.slivers.values().any(|s| {
                s.plan.who.slice.as_str() == request.body.slice && s.holders.contains(&signer)
            });
        if holds {
            Ok(())
        } else {
            Err(CoreError::NotHolder(format!(
                "{} holds no sliver of {} here",
                signer.peer_id(),
                request.body.slice
            )))
        }
    }

    /// Who holds sliver `id` (its ticket's signer and the responsible user).
    pub fn holders(&self, id: u64) -> Vec<PublicKey> {
        self.slivers
            .get(&id)
            .map(|s| s.holders.clone())
            .unwrap_or_default()
    }

    /// The node owner stops a sliver directly; logged as an owner action.
    pub fn owner_stop(&mut self, id: u64, why: &str) -> Result<Vec<Output>, CoreError> {
        let s = self.slivers.get(&id).ok_or(CoreError::NoSuchSliver(id))?;
        Ok(vec![
            Output::Append(EntryBody::OwnerAction {
                action: format!(
                    "stopped sliver {id}: {}",
                    why.chars().take(200).collect::<String>()
                ),
                who: Some(s.plan.who.clone()),
            }),
            Output::Stop {
                id,
                reason: StopReason::Owner,
            },
        ])
    }

    /// The node owner stops every sliver of `slice` here, whoever holds it (the owner is in
    /// control of the machine): logged as the owner's action, once for the slice.
    pub fn owner_stop_slice(&mut self, slice: &str, why: &str) -> Vec<Output> {
        let stops: Vec<Output> = self
            .slivers
            .values()
            .filter(|s| s.plan.who.slice.as_str() == slice)
            .map(|s| Output::Stop {
                id: s.plan.id,
                reason: StopReason::Owner,
            })
            .collect();
        if stops.is_empty() {
            return stops;
        }
        let mut out = vec![Output::Append(EntryBody::OwnerAction {
            action: format!(
                "stopped slice {}: {}",
                within_bytes(slice, 200),
                within_bytes(why, 200)
            ),
            who: None,
        })];
        out.extend(stops);
        out
    }

    /// The sandbox reports that a sliver ended (for any reason): log it and free its share.
    pub fn ended(&mut self, id: u64, outcome: &str, usage: Usage) -> Vec<Output> {
        match self.slivers.remove(&id) {
            Some(s) => vec![Output::Append(EntryBody::SliverStopped {
                who: s.plan.who,
                reason: outcome.chars().take(200).collect(),
                usage,
            })],
            None => vec![],
        }
    }
}
