//! What a run writes: a JSON summary, CSV series and SVG plots.

use crate::metrics::{Metrics, Traffic, quantile};
use crate::plot::{self, Line};
use crate::sim::{Config, HOUR, SEC};
use serde::Serialize;
use std::path::Path;

/// The figures a run is judged by.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Honest nodes.
    pub nodes: usize,
    /// Authorities.
    pub authorities: usize,
    /// Research groups.
    pub groups: usize,
    /// Sybil machines.
    pub sybils: usize,
    /// Simulated hours.
    pub hours: f64,
    /// Witnesses per log.
    pub witnesses: usize,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Events processed.
    pub events: u64,
    /// Events processed by kind, most first (`metrics::EVENT_KINDS`; kinds with none left out).
    pub events_by_kind: Vec<(String, u64)>,
    /// Wall seconds spent handling each kind, most first (measured only with
    /// `SLICEFED_SIM_TIME_KINDS`; empty otherwise).
    pub event_seconds_by_kind: Vec<(String, f64)>,
    /// The trace hash (equal for equal seeds and configurations).
    pub trace: String,
    /// Slice creations.
    pub creations: usize,
    /// `slice create` to every reachable sliver running: median, ms.
    pub create_p50_ms: f64,
    /// 90th percentile, ms.
    pub create_p90_ms: f64,
    /// 99th percentile, ms.
    pub create_p99_ms: f64,
    /// Slowest, ms.
    pub create_max_ms: f64,
    /// Tickets sent to every reachable sliver running (no bootstrap wait): median, ms.
    pub fanout_p50_ms: f64,
    /// 99th percentile, ms.
    pub fanout_p99_ms: f64,
    /// Creations that waited for a bootstrap node that was down.
    pub bootstrap_retries: usize,
    /// Mean nodes per slice.
    pub mean_slice_nodes: f64,
    /// Share of targeted nodes that admitted.
    pub share_admitted: f64,
    /// Share that refused (with a signed reason).
    pub share_refused: f64,
    /// Share that did not answer (down or cut off).
    pub share_unreachable: f64,
    /// Revocations published.
    pub revocations: usize,
    /// Revocation to held by every node that was up, median, ms.
    pub revocation_held_p50_ms: f64,
    /// Slowest, ms.
    pub revocation_held_max_ms: f64,
    /// Revocation to its last affected sliver stopped, slowest, ms.
    pub revocation_stopped_max_ms: f64,
    /// Slivers revocations stopped.
    pub revocation_slivers_stopped: usize,
    /// Nodes that learnt a revocation after coming back.
    pub revocation_caught_up_later: usize,
    /// Slowest catch-up after a node came back, ms.
    pub revocation_worst_catch_up_ms: f64,
    /// Slivers still running under a revoked chain at any sample (after the grace
    /// period); must be 0.
    pub revoked_running_max: usize,
    /// Slivers restored after a restart although revoked; must be 0.
    pub revoked_restores: u64,
    /// Equivocating nodes.
    pub equivocators: usize,
    /// Of which detected.
    pub equivocators_detected: usize,
    /// Slowest detection, ms after signing the second history.
    pub equivocation_detect_max_ms: f64,
    /// Slowest until every up node marked it, ms.
    pub equivocation_all_marked_max_ms: f64,
    /// Share of log entries with at least `k` live witnesses: lowest sample.
    pub share_k_witnesses_min: f64,
    /// The same at the end.
    pub share_k_witnesses_end: f64,
    /// Share of acknowledged entries with at least `k` live witnesses: lowest sample.
    pub share_acked_k_min: f64,
    /// The same at the end.
    pub share_acked_k_end: f64,
    /// Acknowledged entries of dead nodes that no node holds (up, or down with the replica
    /// on its disk), at the end.
    pub lost_acked_end: u64,
    /// The most at any sample.
    pub lost_acked_max: u64,
    /// Entries of dead nodes that `k` witnesses had cosigned and no node holds, at the end.
    pub lost_acked_by_k_end: u64,
    /// Bytes per up node per minute, by category, over the run.
    pub bytes_per_node_min: Traffic,
    /// All categories.
    pub bytes_per_node_min_total: f64,
    /// Messages per up node per minute.
    pub messages_per_node_min: f64,
    /// Sybil messages accepted by honest nodes (must be 0).
    pub sybil_accepted: u64,
    /// Sybil messages rejected.
    pub sybil_rejected: u64,
    /// Times a Sybil was listed as a member (must be 0).
    pub sybil_members: u64,
    /// Slivers of deleted slices still running at a sample (most); they end with their
    /// ticket.
    pub zombies_max: usize,
    /// A crashed node dropped by a live member, ms after the crash: median.
    pub detection_p50_ms: f64,
    /// The same, 99th percentile.
    pub detection_p99_ms: f64,
    /// The same, most.
    pub detection_max_ms: f64,
    /// Crashes once the federation formed, dropped by members up at the crash: median.
    pub detection_formed_p50_ms: f64,
    /// The same, 99th percentile.
    pub detection_formed_p99_ms: f64,
    /// The same, most.
    pub detection_formed_max_ms: f64,
    /// Drops counted in those.
    pub detections_formed: usize,
    /// At the end, live nodes' listings of members that crashed more than 2 minutes
    /// before while the node was up (drops still to come, which the figures above cannot
    /// show), and the oldest, ms.
    pub still_listed_end: u64,
    /// The oldest of those, ms since the crash.
    pub still_listed_oldest_ms: f64,
    /// Of those, crashes once the federation had formed (20 minutes into the run).
    pub still_listed_formed_end: u64,
    /// Drops of a member that was up (false departures), and drops in all.
    pub false_departures: u64,
    /// Drops in all (of members not revoked, by nodes not revoked).
    pub departures: u64,
    /// Revocations an authority could hand to no member (never published).
    pub revocations_abandoned: u64,
    /// Nodes whose certificates were revoked while their machines ran on.
    pub nodes_revoked: u64,
    /// Drops of a revoked node by a live member, and ms from the revocation's publication
    /// (or the member's start, if later) to the drop: median, 99th percentile, most.
    pub revoked_node_drops: usize,
    /// The median.
    pub revoked_node_drop_p50_ms: f64,
    /// The 99th percentile.
    pub revoked_node_drop_p99_ms: f64,
    /// The most.
    pub revoked_node_drop_max_ms: f64,
    /// At the end, live nodes' listings of nodes revoked over 2 minutes before.
    pub revoked_still_listed_end: u64,
    /// The most such listings at any sample or the end.
    pub revoked_listed_max: u64,
    /// Revoked nodes admitted by a member more than 2 minutes after it could know.
    pub revoked_joined_late: u64,
    /// Gossip refused between revoked nodes and members for not being a member's.
    pub revoked_gossip_refused: u64,
    /// Restarts of nodes that had run before, and the time from each start until the node
    /// had reconciled with a quorum of members: median, 99th percentile, most.
    pub restarts: usize,
    /// The median.
    pub reconciled_p50_ms: f64,
    /// The 99th percentile.
    pub reconciled_p99_ms: f64,
    /// The most.
    pub reconciled_max_ms: f64,
    /// Honest gossip an honest node refused (from a publisher it did not yet list).
    pub model_mismatches: u64,
    /// Why honest gossip was rejected, by kind (see `Metrics::mismatch_reasons`).
    pub mismatch_reasons: std::collections::BTreeMap<String, u64>,
    /// Pages witnesses refused.
    pub bad_pages: u64,
    /// Revocations and deletes a reconciliation fetched and the node refused (0 when the
    /// members agree on what is valid).
    pub fetched_refused: u64,
    /// Refusal reasons researchers saw.
    pub refusals: std::collections::BTreeMap<String, usize>,
}

impl Summary {
    /// Derives the figures from a run's metrics.
    pub fn new(
        scenario: &str,
        cfg: &Config,
        m: &Metrics,
        traffic: Traffic,
        msgs: f64,
        wall_seconds: f64,
        trace: u64,
    ) -> Summary {
        let lat: Vec<f64> = m.creations.iter().map(|c| c.all_running_ms).collect();
        let fan: Vec<f64> = m.creations.iter().map(|c| c.fanout_ms).collect();
        let targeted: usize = m.creations.iter().map(|c| c.targeted).sum();
        let share = |x: usize| {
            if targeted == 0 {
                0.0
            } else {
                x as f64 / targeted as f64
            }
        };
        let held: Vec<f64> = m.revocations.iter().map(|r| r.all_held_ms).collect();
        let finite_max =
            |xs: &mut dyn Iterator<Item = f64>| xs.filter(|x| x.is_finite()).fold(0.0f64, f64::max);
        let detected = m
            .equivocations
            .iter()
            .filter(|e| e.detected_ms >= 0.0)
            .count();
        let min_of = |f: &dyn Fn(&crate::metrics::Sample) -> f64| {
            m.samples
                .iter()
                .filter(|s| s.at_h > 1.0)
                .map(f)
                .fold(1.0f64, f64::min)
        };
        let end = m.samples.last();
        Summary {
            scenario: scenario.into(),
            seed: cfg.seed,
            nodes: cfg.nodes,
            authorities: cfg.authorities,
            groups: cfg.groups,
            sybils: cfg.sybils,
            hours: cfg.duration as f64 / HOUR as f64,
            witnesses: cfg.witnesses,
            wall_seconds,
            events: m.events,
            events_by_kind: by_kind(m.events_by_kind, |n| n),
            event_seconds_by_kind: by_kind(m.event_nanos_by_kind, |ns| ns as f64 / 1e9),
            trace: format!("{trace:016x}"),
            creations: m.creations.len(),
            create_p50_ms: quantile(&lat, 0.5),
            create_p90_ms: quantile(&lat, 0.9),
            create_p99_ms: quantile(&lat, 0.99),
            create_max_ms: quantile(&lat, 1.0),
            fanout_p50_ms: quantile(&fan, 0.5),
            fanout_p99_ms: quantile(&fan, 0.99),
            bootstrap_retries: m
                .creations
                .iter()
                .filter(|c| c.bootstrap_retries > 0)
                .count(),
            mean_slice_nodes: if m.creations.is_empty() {
                0.0
            } else {
                targeted as f64 / m.creations.len() as f64
            },
            share_admitted: share(m.creations.iter().map(|c| c.admitted).sum()),
            share_refused: share(m.creations.iter().map(|c| c.refused).sum()),
            share_unreachable: share(m.creations.iter().map(|c| c.unreachable).sum()),
            revocations: m.revocations.len(),
            revocation_held_p50_ms: quantile(&held, 0.5),
            revocation_held_max_ms: quantile(&held, 1.0),
            revocation_stopped_max_ms: finite_max(
                &mut m.revocations.iter().map(|r| r.all_stopped_ms),
            ),
            revocation_slivers_stopped: m.revocations.iter().map(|r| r.slivers_stopped).sum(),
            revocation_caught_up_later: m.revocations.iter().map(|r| r.caught_up_later).sum(),
            revocation_worst_catch_up_ms: finite_max(
                &mut m.revocations.iter().map(|r| r.worst_catch_up_ms),
            ),
            revoked_running_max: m
                .samples
                .iter()
                .map(|s| s.revoked_running)
                .max()
                .unwrap_or(0),
            revoked_restores: m.revoked_restores,
            equivocators: m.equivocations.len(),
            equivocators_detected: detected,
            equivocation_detect_max_ms: finite_max(
                &mut m.equivocations.iter().map(|e| e.detected_ms),
            ),
            equivocation_all_marked_max_ms: finite_max(
                &mut m.equivocations.iter().map(|e| e.all_marked_ms),
            ),
            share_k_witnesses_min: min_of(&|s| s.share_k_witnesses),
            share_k_witnesses_end: end.map_or(0.0, |s| s.share_k_witnesses),
            share_acked_k_min: min_of(&|s| s.share_acked_k),
            share_acked_k_end: end.map_or(0.0, |s| s.share_acked_k),
            lost_acked_end: end.map_or(0, |s| s.lost_acked),
            lost_acked_max: m.samples.iter().map(|s| s.lost_acked).max().unwrap_or(0),
            lost_acked_by_k_end: end.map_or(0, |s| s.lost_acked_by_k),
            bytes_per_node_min: traffic,
            bytes_per_node_min_total: traffic.total(),
            messages_per_node_min: msgs,
            sybil_accepted: m.sybil_accepted,
            sybil_rejected: m.sybil_rejected,
            sybil_members: m.sybil_members,
            zombies_max: m.samples.iter().map(|s| s.zombies).max().unwrap_or(0),
            detection_p50_ms: quantile(&m.detections, 0.5),
            detection_p99_ms: quantile(&m.detections, 0.99),
            detection_max_ms: quantile(&m.detections, 1.0),
            detection_formed_p50_ms: quantile(&m.detections_formed, 0.5),
            detection_formed_p99_ms: quantile(&m.detections_formed, 0.99),
            detection_formed_max_ms: quantile(&m.detections_formed, 1.0),
            detections_formed: m.detections_formed.len(),
            still_listed_end: m.still_listed_end,
            still_listed_oldest_ms: m.still_listed_oldest_ms,
            still_listed_formed_end: m.still_listed_formed_end,
            false_departures: m.false_departures,
            departures: m.departures,
            revocations_abandoned: m.revocations_abandoned,
            nodes_revoked: m.nodes_revoked,
            revoked_node_drops: m.revoked_node_drops.len(),
            revoked_node_drop_p50_ms: quantile(&m.revoked_node_drops, 0.5),
            revoked_node_drop_p99_ms: quantile(&m.revoked_node_drops, 0.99),
            revoked_node_drop_max_ms: quantile(&m.revoked_node_drops, 1.0),
            revoked_still_listed_end: m.revoked_still_listed_end,
            revoked_listed_max: m.revoked_listed_max,
            revoked_joined_late: m.revoked_joined_late,
            revoked_gossip_refused: m.revoked_gossip_refused,
            restarts: m.reconciled_after_restart.len(),
            reconciled_p50_ms: quantile(&m.reconciled_after_restart, 0.5),
            reconciled_p99_ms: quantile(&m.reconciled_after_restart, 0.99),
            reconciled_max_ms: quantile(&m.reconciled_after_restart, 1.0),
            model_mismatches: m.model_mismatches,
            mismatch_reasons: m.mismatch_reasons.clone(),
            bad_pages: m.bad_pages,
            fetched_refused: m.fetched_refused,
            refusals: m.refusals.clone(),
        }
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let kib = |b: f64| b / 1024.0;
        format!(
            "{scenario}: {nodes} nodes, {auth} authorities, {groups} groups, {hours:.0} h simulated in {wall:.1} s ({events} events, {eps:.0} events/s, trace {trace})\n\
             \x20 slice create -> all running: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms over {n} slices of {size:.0} nodes ({br} waited for a bootstrap node); tickets out -> all running p50 {f50:.0} ms, p99 {f99:.0} ms; admitted {adm:.1}%, refused {ref_:.1}%, unreachable {unr:.1}%\n\
             \x20 revocations: {revs}, held everywhere p50 {rh:.0} ms / max {rhm:.0} ms, last sliver stopped {rs:.0} ms; {cu} late nodes caught up (worst {wc:.0} ms); revoked still running: {rr}, revoked restores: {rres}; never handed over: {rab}\n\
             \x20 equivocators: {eq} ({det} caught), detection max {ed:.0} ms, all marked max {ea:.0} ms\n\
             \x20 witness coverage (>= {k} live): min {ck:.4}, end {cke:.4}; acknowledged: min {ak:.4}, end {ake:.4}; acknowledged entries lost: {lost} ({lostk} of them cosigned by {k})\n\
             \x20 traffic per up node per minute: {tot:.1} KiB (adverts {ad:.1}, swim {sw:.1}, checkpoints {cp:.1}, replication {rp:.1}, revocations {rv:.1}, researchers {rs2:.1}, rejected {rj:.1}); {msgs:.1} messages\n\
             \x20 sybils: {sa} accepted, {sr} rejected, {sm} listed as members; zombies max {z}\n\
             \x20 dead node dropped by live members: p50 {d50:.0} ms, p99 {d99:.0} ms, max {dmax:.0} ms; members dropped {dep}, of them up (false) {fd}\n\
             \x20 the same once formed (crashes from 20 min in, by members up at the crash): p50 {df50:.0} ms, p99 {f99d:.0} ms, max {fmax:.0} ms over {fn_} drops; still listed at the end, crashed over 2 min before: {sl} (oldest {slo:.0} ms; {slf} of crashes once formed)\n\
             \x20 nodes revoked while running: {nrv}, dropped by live members p50 {rd50:.0} ms, p99 {rd99:.0} ms, max {rdmax:.0} ms over {rdn} drops; still listed at the end: {rsl} (at any sample, most {rlm}; admitted late {rjl}); gossip refused between them and members {rgr}\n\
             \x20 returning nodes reconciled with a quorum of members: {rn} restarts, p50 {r50:.0} ms, p99 {r99:.0} ms, max {rmax:.0} ms\n\
             \x20 events by kind: {kinds}",
            scenario = self.scenario,
            nodes = self.nodes,
            auth = self.authorities,
            groups = self.groups,
            hours = self.hours,
            wall = self.wall_seconds,
            events = self.events,
            eps = if self.wall_seconds > 0.0 {
                self.events as f64 / self.wall_seconds
            } else {
                0.0
            },
            trace = self.trace,
            p50 = self.create_p50_ms,
            p99 = self.create_p99_ms,
            max = self.create_max_ms,
            br = self.bootstrap_retries,
            f50 = self.fanout_p50_ms,
            f99 = self.fanout_p99_ms,
            n = self.creations,
            size = self.mean_slice_nodes,
            adm = self.share_admitted * 100.0,
            ref_ = self.share_refused * 100.0,
            unr = self.share_unreachable * 100.0,
            revs = self.revocations,
            rh = self.revocation_held_p50_ms,
            rhm = self.revocation_held_max_ms,
            rs = self.revocation_stopped_max_ms,
            cu = self.revocation_caught_up_later,
            wc = self.revocation_worst_catch_up_ms,
            rr = self.revoked_running_max,
            rres = self.revoked_restores,
            rab = self.revocations_abandoned,
            eq = self.equivocators,
            det = self.equivocators_detected,
            ed = self.equivocation_detect_max_ms,
            ea = self.equivocation_all_marked_max_ms,
            k = self.witnesses,
            ck = self.share_k_witnesses_min,
            cke = self.share_k_witnesses_end,
            ak = self.share_acked_k_min,
            ake = self.share_acked_k_end,
            lost = self.lost_acked_end,
            lostk = self.lost_acked_by_k_end,
            tot = kib(self.bytes_per_node_min_total),
            ad = kib(self.bytes_per_node_min.adverts),
            sw = kib(self.bytes_per_node_min.swim),
            cp = kib(self.bytes_per_node_min.checkpoints),
            rp = kib(self.bytes_per_node_min.replication),
            rv = kib(self.bytes_per_node_min.revocations),
            rs2 = kib(self.bytes_per_node_min.researchers),
            rj = kib(self.bytes_per_node_min.rejected),
            msgs = self.messages_per_node_min,
            sa = self.sybil_accepted,
            sr = self.sybil_rejected,
            sm = self.sybil_members,
            z = self.zombies_max,
            d50 = self.detection_p50_ms,
            d99 = self.detection_p99_ms,
            dmax = self.detection_max_ms,
            df50 = self.detection_formed_p50_ms,
            f99d = self.detection_formed_p99_ms,
            fmax = self.detection_formed_max_ms,
            fn_ = self.detections_formed,
            sl = self.still_listed_end,
            slo = self.still_listed_oldest_ms,
            slf = self.still_listed_formed_end,
            dep = self.departures,
            fd = self.false_departures,
            nrv = self.nodes_revoked,
            rd50 = self.revoked_node_drop_p50_ms,
            rd99 = self.revoked_node_drop_p99_ms,
            rdmax = self.revoked_node_drop_max_ms,
            rdn = self.revoked_node_drops,
            rsl = self.revoked_still_listed_end,
            rlm = self.revoked_listed_max,
            rjl = self.revoked_joined_late,
            rgr = self.revoked_gossip_refused,
            rn = self.restarts,
            r50 = self.reconciled_p50_ms,
            r99 = self.reconciled_p99_ms,
            rmax = self.reconciled_max_ms,
            kinds = self
                .events_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {:.1}%", 100.0 * *n as f64 / self.events.max(1) as f64))
                .collect::<Vec<_>>()
                .join(", "),
        ) + &self.time_by_kind()
    }
}

impl Summary {
    /// A line of where the wall time went by kind of event, when it was measured.
    fn time_by_kind(&self) -> String {
        if self.event_seconds_by_kind.is_empty() {
            return String::new();
        }
        let total: f64 = self.event_seconds_by_kind.iter().map(|(_, s)| s).sum();
        let each = self
            .event_seconds_by_kind
            .iter()
            .map(|(k, secs)| {
                let n = self
                    .events_by_kind
                    .iter()
                    .find(|(kk, _)| kk == k)
                    .map_or(0, |(_, n)| *n);
                format!(
                    "{k} {secs:.1} s ({:.1}%, {:.2} µs each)",
                    100.0 * secs / total.max(1e-9),
                    1e6 * secs / n.max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("\n  wall time in events ({total:.1} s): {each}")
    }
}

/// A per-kind counter named by `metrics::EVENT_KINDS`, as `show` makes each value, most
/// first (kinds at zero left out).
fn by_kind<T: PartialOrd>(
    counts: [u64; crate::metrics::EVENT_KINDS.len()],
    show: impl Fn(u64) -> T,
) -> Vec<(String, T)> {
    let mut kinds: Vec<(String, T)> = crate::metrics::EVENT_KINDS
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| ((*k).to_string(), show(n)))
        .collect();
    kinds.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    kinds
}

fn cells(prefix: &str, v: &serde_json::Value, heads: &mut Vec<String>, vals: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                cells(&name, x, heads, vals);
            }
        }
        serde_json::Value::Null => {
            heads.push(prefix.into());
            vals.push(String::new());
        }
        x => {
            heads.push(prefix.into());
            vals.push(x.to_string());
        }
    }
}

fn csv<T: Serialize>(path: &Path, rows: &[T]) -> std::io::Result<()> {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let v = serde_json::to_value(r).unwrap_or_default();
        let (mut heads, mut vals) = (vec![], vec![]);
        cells("", &v, &mut heads, &mut vals);
        if i == 0 {
            out.push_str(&heads.join(","));
            out.push('\n');
        }
        out.push_str(&vals.join(","));
        out.push('\n');
    }
    std::fs::write(path, out)
}

/// Writes the summary, the series and the plots of one run under `dir`.
pub fn write(dir: &Path, summary: &Summary, m: &Metrics) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = &summary.scenario;
    let json = serde_json::to_string_pretty(summary)?;
    std::fs::write(dir.join(format!("{name}.json")), json + "\n")?;
    csv(&dir.join(format!("{name}-creations.csv")), &m.creations)?;
    csv(&dir.join(format!("{name}-revocations.csv")), &m.revocations)?;
    csv(&dir.join(format!("{name}-samples.csv")), &m.samples)?;
    if !m.equivocations.is_empty() {
        csv(
            &dir.join(format!("{name}-equivocations.csv")),
            &m.equivocations,
        )?;
    }
    let lat: Vec<f64> = m.creations.iter().map(|c| c.all_running_ms).collect();
    plot::lines(
        &dir.join(format!("{name}-create-latency.svg")),
        &format!("{name}: slice create to every reachable sliver running"),
        "milliseconds",
        "share of slices",
        &[Line {
            label: "slices",
            points: plot::cdf(&lat),
        }],
    )?;
    let t = |f: &dyn Fn(&crate::metrics::Sample) -> f64| -> Vec<(f64, f64)> {
        m.samples.iter().map(|s| (s.at_h, f(s))).collect()
    };
    plot::lines(
        &dir.join(format!("{name}-coverage.svg")),
        &format!("{name}: log entries held by live nodes"),
        "hours",
        "share of entries",
        &[
            Line {
                label: "held by >= k live witnesses",
                points: t(&|s| s.share_k_witnesses),
            },
            Line {
                label: "acknowledged, held by >= k live witnesses",
                points: t(&|s| s.share_acked_k),
            },
            Line {
                label: "available (origin or a witness up)",
                points: t(&|s| s.share_available),
            },
        ],
    )?;
    plot::lines(
        &dir.join(format!("{name}-traffic.svg")),
        &format!("{name}: bytes per up node per minute"),
        "hours",
        "KiB per node per minute",
        &[
            Line {
                label: "adverts",
                points: t(&|s| s.bytes_per_node_min.adverts / 1024.0),
            },
            Line {
                label: "SWIM",
                points: t(&|s| s.bytes_per_node_min.swim / 1024.0),
            },
            Line {
                label: "checkpoints and cosignatures",
                points: t(&|s| s.bytes_per_node_min.checkpoints / 1024.0),
            },
            Line {
                label: "replication",
                points: t(&|s| s.bytes_per_node_min.replication / 1024.0),
            },
            Line {
                label: "revocations and proofs",
                points: t(&|s| s.bytes_per_node_min.revocations / 1024.0),
            },
            Line {
                label: "researchers",
                points: t(&|s| s.bytes_per_node_min.researchers / 1024.0),
            },
        ],
    )?;
    plot::lines(
        &dir.join(format!("{name}-membership.svg")),
        &format!("{name}: nodes up and members each sees"),
        "hours",
        "nodes",
        &[
            Line {
                label: "up",
                points: t(&|s| s.up as f64),
            },
            Line {
                label: "members seen (mean)",
                points: t(&|s| s.mean_members + 1.0),
            },
        ],
    )?;
    let _ = SEC;
    Ok(())
}
