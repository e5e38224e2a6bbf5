//! Slivers in the sandbox: started when the machine says (its creation durable), compiled
//! on a worker, stopped when it says, reaped when they end (their flows drained into the
//! ledger first), and the ledger's health watched and reported to the machine.

use super::*;

impl Daemon {
    /// Compiles an admitted sliver's module on a worker (saving its files first, for a new
    /// one), then starts it (`compiled`).
    pub(super) fn start(&mut self, swarm: &mut Swarm, plan: SliverPlan, from: StartFrom) {
        let id = plan.id;
        self.modules.insert(id, plan.module);
        let module_path = self.module_path(&plan.module);
        let saved_path = self.saved_path(id);
        let compiler = self.compiler.clone();
        match from {
            StartFrom::Submission(reply) => {
                let Some(sub) = self.submissions.remove(&reply) else {
                    let why = "the submission is gone".to_string();
                    return self.feed(swarm, Input::StartFailed { id, why });
                };
                let saved = self.to_save.remove(&id);
                self.starting.insert(id, plan);
                self.spawn_job(Some(id), move || {
                    // Saved before it runs, so a crash right after still brings it back.
                    if !module_path.exists() {
                        let _ = write_atomic(&module_path, &sub.module);
                    }
                    if let Some(s) = saved
                        && let Ok(b) = codec::encode("saved sliver", &s)
                    {
                        let _ = write_atomic(&saved_path, &b);
                    }
                    let invocation = Invocation::new(sub.args, sub.env);
                    Done::Compiled {
                        id,
                        compiled: compiler
                            .compile(&sub.module)
                            .map(|c| (c, invocation))
                            .map_err(|e| e.to_string()),
                    }
                });
            }
            StartFrom::Saved => {
                self.starting.insert(id, plan);
                self.spawn_job(Some(id), move || {
                    let compiled = read_limited(&saved_path, MAX_SAVED_SLIVER_BYTES)
                        .and_then(|b| {
                            codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES)
                                .map_err(|e| e.to_string())
                        })
                        .and_then(|s| {
                            let module = read_limited(&module_path, MAX_MODULE_BYTES)?;
                            let c = compiler.compile(&module).map_err(|e| e.to_string())?;
                            Ok((c, Invocation::new(s.args, s.env)))
                        });
                    Done::Compiled { id, compiled }
                });
            }
        }
    }

    /// A sliver's module compiled (or not): it runs, or the machine hears why not.
    pub(super) fn compiled(
        &mut self,
        swarm: &mut Swarm,
        id: u64,
        compiled: Result<(Arc<Compiled>, Invocation), String>,
    ) {
        let Some(plan) = self.starting.remove(&id) else {
            return;
        };
        let started = compiled.and_then(|(c, inv)| self.start_compiled(plan, c, inv));
        let input = match started {
            Ok(()) => Input::Started { id },
            Err(why) => Input::StartFailed { id, why },
        };
        self.feed(swarm, input);
    }

    /// Starts an admitted sliver from its compiled module.
    pub(super) fn start_compiled(
        &mut self,
        plan: SliverPlan,
        compiled: Arc<Compiled>,
        invocation: Invocation,
    ) -> Result<(), String> {
        let sandbox = self.sandbox().ok_or("the sandbox is shut down")?;
        if compiled.hash != plan.module {
            return Err("the module does not match the ticket".into());
        }
        let flows = Arc::new(LedgerFlows::new(self.ledger.clone()));
        let spec = SliverSpec {
            who: plan.who.clone(),
            memory: plan.memory,
            cpu_share: plan.cpu_share,
            cpu_limit: None,
            lifetime: None,
            network: plan.network.clone(),
            egress_per_day: plan.egress_per_day,
            args: invocation.args,
            env: invocation.env,
            stdio: Stdio::Capture(LOG_BYTES),
            dir: None,
            flows: flows.clone(),
            host: self.host.clone(),
        };
        let handle = sandbox.spawn(compiled, spec).map_err(|e| e.to_string())?;
        self.live.insert(
            plan.id,
            Live {
                handle,
                flows,
                plan,
                stopping: None,
                closing: false,
                drained: false,
            },
        );
        Ok(())
    }

    /// Slivers that ended: their flows drained into the ledger off the loop, then reported
    /// to the machine (which logs the end with its usage and has the files removed).
    pub(super) fn reap(&mut self, swarm: &mut Swarm) {
        self.check_ledger(swarm);
        // Ended slivers' flow records are drained off the loop (a ledger that cannot write
        // keeps them waiting, and the loop must stay free to bring it back).
        let ended: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| !l.closing && l.handle.outcome().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(l) = self.live.get_mut(&id) else {
                continue;
            };
            l.closing = true;
            let (flows, done) = (l.flows.clone(), self.done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name("flow-drain".into())
                .spawn(move || {
                    flows.close();
                    let _ = done.blocking_send(Done::Drained { sliver: id });
                });
            if spawned.is_err() {
                // No thread to be had: try again at the next reap.
                l.closing = false;
            }
        }
        let drained: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| l.drained)
            .map(|(id, _)| *id)
            .collect();
        for id in drained {
            self.finish(swarm, id);
        }
    }

    /// A sliver that ended and whose flows are all in the ledger: the machine logs its end
    /// (once the ledger writes) and has its files removed once that is durable.
    pub(super) fn finish(&mut self, swarm: &mut Swarm, id: u64) {
        let Some(l) = self.live.remove(&id) else {
            return;
        };
        let outcome = l
            .handle
            .outcome()
            .unwrap_or(Outcome::Killed(KillReason::Stopped));
        let u = l.handle.usage();
        let text = match l.stopping {
            Some(r) => format!("{outcome}: {}", r.as_str()),
            None => outcome.to_string(),
        };
        let usage = LedgerUsage {
            cpu_ns: u.cpu.as_nanos() as u64,
            peak_memory: u.peak_memory,
            bytes_in: u.bytes_in,
            bytes_out: u.bytes_out,
            flows: u.flows_allowed + u.flows_denied,
        };
        let holders = self.node.core().holders(id);
        let mut status = sliver_status(&l.plan, &l.handle, "");
        status.state = text.clone();
        self.ended.push_back(Ended {
            status,
            logs: sliver_logs(id, &l.handle),
            holders,
        });
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
        self.feed(
            swarm,
            Input::Ended {
                id,
                outcome: text,
                usage,
            },
        );
    }

    /// The ledger cannot append: say it once on stderr (the machine refuses tickets and
    /// advertises it; the sandbox denies new flows by itself: its flow sink asks the
    /// ledger).
    pub(super) fn ledger_failing(&mut self, why: &str) {
        if self.node.core().unhealthy().is_none() {
            say(&format!(
                "the ledger cannot write ({why}); refusing tickets and denying new flows until it can"
            ));
        }
        let _ = self.node.handle(
            now_ms(),
            Input::LedgerFailed {
                why: why.to_string(),
            },
        );
    }

    /// Keeps the machine's view of the ledger current and, while it fails, tries to bring
    /// it back once a second (a full disk that was cleaned up, a remounted volume).
    pub(super) fn check_ledger(&mut self, swarm: &mut Swarm) {
        match self.ledger.failure() {
            None => {
                if self.node.core().unhealthy().is_some() {
                    say("the ledger writes again; taking tickets");
                    self.feed(swarm, Input::LedgerRecovered);
                }
            }
            Some(why) => {
                self.ledger_failing(&why);
                if self.last_recovery.elapsed() >= LEDGER_RETRY {
                    self.last_recovery = Instant::now();
                    // On the disk thread, after what is queued; the next check sees it.
                    let ledger = self.ledger.clone();
                    let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
                        let _ = ledger.recover();
                        None
                    })));
                }
            }
        }
    }

    pub(super) fn shutdown(&mut self) {
        for l in self.live.values() {
            l.handle.stop(KillReason::Stopped);
        }
        // Slivers are not logged as stopped: they come back when the node restarts.
        for l in self.live.values() {
            let _ = blocking(|| l.handle.wait_timeout(Duration::from_secs(5)));
            let f = l.flows.clone();
            let lost = blocking(move || f.close_within(Duration::from_secs(5)));
            if lost > 0 {
                say(&format!(
                    "{lost} flow records of sliver {} could not be written: the ledger cannot write",
                    l.plan.id
                ));
            }
        }
        self.live.clear();
        // Appends still queued are written before the node exits (what waited for them was
        // never acknowledged, but the log keeps them).
        let (tx, _) = std::sync::mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.writes, tx));
        if let Some(w) = self.writer.take() {
            // Bounded: a writer stuck reporting to a loop that no longer listens is left.
            let (joined_tx, joined_rx) = std::sync::mpsc::channel();
            let _ = std::thread::Builder::new().spawn(move || {
                let _ = w.join();
                let _ = joined_tx.send(());
            });
            let _ = blocking(|| joined_rx.recv_timeout(Duration::from_secs(5)));
        }
    }
}
