//! The owner's dashboard: one read-only page, served at `/` beside the sensors, rendered on
//! the server as HTML with SVG charts (no JavaScript, nothing fetched from elsewhere).
//! What runs on this node, for whom, under which ticket, with what usage against its caps;
//! the latest refused tickets with their reasons; the federation as this node sees it,
//! sortable; and 48 hours of history, kept in bounded storage.
//!
//! Invariants:
//! - A page view never waits for the daemon's loop: the loop refreshes one [`Board`] a tick
//!   ([`Daemon::update_board`]) and a view renders a copy of it.
//! - Everything shown is escaped ([`esc`]): slice names, reasons and member names come
//!   from researchers and peers.
//! - History is bounded: one sample a minute, [`HISTORY_SAMPLES`] (48 h) in memory and in
//!   `DIR/history` (rewritten when it doubles).

use super::*;
use std::collections::VecDeque;
use std::fmt::Write as _;

/// Samples kept: one a minute for 48 hours.
pub const HISTORY_SAMPLES: usize = 48 * 60;
/// How often a sample is taken.
pub const SAMPLE_EVERY_MS: u64 = 60_000;
/// The history file in the node's directory.
pub const HISTORY_FILE: &str = "history";

/// One minute of the node's life.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix ms.
    pub at_ms: u64,
    /// Slivers running.
    pub slivers: u64,
    /// Members listed.
    pub members: u64,
    /// Entries in the log.
    pub ledger_entries: u64,
    /// CPU seconds all running slivers used so far.
    pub sliver_cpu_secs: f64,
    /// Tickets refused since the node started.
    pub refused: u64,
}

impl Sample {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {:.3} {}\n",
            self.at_ms,
            self.slivers,
            self.members,
            self.ledger_entries,
            self.sliver_cpu_secs,
            self.refused
        )
    }
    /// A line of exactly six fields (a torn append joined to the next line has more).
    fn parse(line: &str) -> Option<Sample> {
        let mut f = line.split_whitespace();
        let s = Sample {
            at_ms: f.next()?.parse().ok()?,
            slivers: f.next()?.parse().ok()?,
            members: f.next()?.parse().ok()?,
            ledger_entries: f.next()?.parse().ok()?,
            sliver_cpu_secs: f.next()?.parse().ok()?,
            refused: f.next()?.parse().ok()?,
        };
        (f.next().is_none() && s.sliver_cpu_secs.is_finite()).then_some(s)
    }
}

/// A sliver as the owner sees it.
#[derive(Clone, Debug)]
pub struct SliverLine {
    status: SliverStatus,
    memory_cap: u64,
    egress_cap: Option<u64>,
}

/// What the page shows, refreshed once a tick.
#[derive(Clone, Debug, Default)]
pub struct Board {
    name: String,
    peer_id: String,
    addrs: Vec<String>,
    uptime_secs: u64,
    health: String,
    ledger_entries: u64,
    cosignatures: u32,
    slivers: Vec<SliverLine>,
    refusals: Vec<crate::core::RecentRefusal>,
    members: Vec<MemberRow>,
    history: VecDeque<Sample>,
    updated_ms: u64,
}

impl Board {
    /// An empty board with the history saved before.
    pub fn with_history(history: VecDeque<Sample>) -> Board {
        Board {
            history,
            ..Board::default()
        }
    }
}

/// The board the loop writes and page views read.
pub type SharedBoard = Arc<std::sync::RwLock<Board>>;

/// The history saved in `dir` (the last [`HISTORY_SAMPLES`] readable lines).
pub fn load_history(dir: &Path) -> VecDeque<Sample> {
    let Ok(text) = read_limited(&dir.join(HISTORY_FILE), 4 * HISTORY_SAMPLES * 64) else {
        return VecDeque::new();
    };
    // Only samples later than the one before (a clock set back, or a file from elsewhere,
    // does not make the charts run backwards).
    let mut all: Vec<Sample> = vec![];
    for s in text
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok().and_then(Sample::parse))
    {
        if all.last().is_none_or(|last| s.at_ms > last.at_ms) {
            all.push(s);
        }
    }
    all.iter()
        .skip(all.len().saturating_sub(HISTORY_SAMPLES))
        .copied()
        .collect()
}

impl Daemon {
    /// Refreshes the board from the node's state (`status`, this tick's), and takes the
    /// minute's sample when due.
    pub(super) fn update_board(&mut self, status: NodeStatus) {
        let Some(board) = self.board.clone() else {
            return;
        };
        let now = now_ms();
        let caps: BTreeMap<u64, (u64, Option<u64>)> = self
            .node
            .core()
            .slivers()
            .map(|p| (p.id, (p.memory, p.egress_per_day)))
            .collect();
        let members = self.member_rows();
        let counts = self.node.core().ticket_counts();
        let running: Vec<&SliverStatus> = status
            .slivers
            .iter()
            .filter(|s| s.state == "running")
            .collect();
        let sample = Sample {
            at_ms: now,
            slivers: running.len() as u64,
            members: members.len().saturating_sub(1) as u64,
            ledger_entries: status.ledger_entries,
            sliver_cpu_secs: running.iter().map(|s| s.cpu_ms as f64 / 1000.0).sum(),
            refused: counts.refused.values().sum(),
        };
        let refusals: Vec<crate::core::RecentRefusal> = counts.recent.iter().cloned().collect();
        let Ok(mut b) = board.write() else {
            return;
        };
        let due = b
            .history
            .back()
            .is_none_or(|last| now.saturating_sub(last.at_ms) >= SAMPLE_EVERY_MS);
        if due {
            if b.history.len() >= HISTORY_SAMPLES {
                b.history.pop_front();
            }
            b.history.push_back(sample);
            self.save_sample(&sample, &b.history);
        }
        b.name = self.my_name.clone();
        b.peer_id = self.me.peer_id();
        b.addrs = self.listen_addrs_said();
        b.uptime_secs = self.started.elapsed().as_secs();
        b.health = match self.node.core().unhealthy() {
            Some(why) => format!("unhealthy: {why}"),
            None => "ok".into(),
        };
        b.ledger_entries = status.ledger_entries;
        b.cosignatures = status.cosignatures;
        b.slivers = status
            .slivers
            .into_iter()
            .map(|s| {
                let (memory_cap, egress_cap) = caps.get(&s.id).copied().unwrap_or((0, None));
                SliverLine {
                    status: s,
                    memory_cap,
                    egress_cap,
                }
            })
            .collect();
        b.refusals = refusals;
        b.members = members;
        b.updated_ms = now;
    }

    /// Appends a sample to `DIR/history` (on the disk thread); past twice the samples kept,
    /// the file is rewritten with only those.
    fn save_sample(&mut self, sample: &Sample, kept: &VecDeque<Sample>) {
        let path = self.dir.join(HISTORY_FILE);
        self.history_lines += 1;
        if self.history_lines > 2 * HISTORY_SAMPLES as u64 {
            self.history_lines = kept.len() as u64;
            let all: String = kept.iter().map(Sample::line).collect();
            let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
                let _ = write_atomic(&path, all.as_bytes());
                None
            })));
            return;
        }
        let line = sample.line();
        let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                let _ = f.write_all(line.as_bytes());
            }
            None
        })));
    }
}

/// HTML-escapes text from anyone.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn ago(now_ms: u64, at_ms: u64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A line chart of `values` over `times` (unix ms) as inline SVG, with its title, the
/// window's span and the value range on the axes.
fn chart(title: &str, id: &str, times: &[u64], values: &[f64]) -> String {
    let (w, h, pad) = (560.0, 140.0, 30.0);
    let t0 = times.first().copied().unwrap_or(0);
    let t1 = times.last().copied().unwrap_or(0).max(t0 + 1);
    let vmax = values.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let x = |t: u64| pad + t.saturating_sub(t0) as f64 / (t1 - t0) as f64 * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / vmax * (h - 2.0 * pad);
    let points: Vec<String> = times
        .iter()
        .zip(values)
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg id="{}" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(id),
        esc(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#888"/><text x="2" y="{ty}" font-size="10">{vmax:.0}</text><text x="2" y="{b}" font-size="10">0</text><text x="{r}" y="{bt}" font-size="10" text-anchor="end">now</text><text x="{pad}" y="{bt}" font-size="10">{span}</text>"##,
        b = h - pad,
        r = w - pad,
        ty = pad + 4.0,
        bt = h - 8.0,
        span = esc(&format!("{:.1} h ago", (t1 - t0) as f64 / 3_600_000.0)),
    );
    if points.len() == 1 {
        let _ = write!(
            svg,
            r##"<circle class="series" cx="{}" cy="{:.1}" r="3" fill="#2a6"/>"##,
            w - pad,
            y(values.first().copied().unwrap_or(0.0))
        );
    } else {
        let _ = write!(
            svg,
            r##"<polyline class="series" fill="none" stroke="#2a6" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The page for `board` (members sorted by `sort`).
pub fn render(board: &Board, sort: Option<&str>) -> String {
    let now = now_ms();
    let mut p = String::with_capacity(16 << 10);
    let _ = write!(
        p,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name} · slicefed node</title>
<meta http-equiv="refresh" content="30"><style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
th,td{{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left}} th a{{color:inherit}}
.num{{text-align:right}} .bad{{color:#b22}} figure{{display:inline-block;margin:0 1em 1em 0}} code{{font-size:12px}}
</style></head><body>
<h1>{name}</h1><p id="node">peer <code>{peer}</code> · {addrs} · up {up} · health <b>{health}</b> · log {entries} entries, {cosigs} witness cosignature(s) on its latest checkpoint · updated {updated}</p>"#,
        name = esc(&board.name),
        peer = esc(&board.peer_id),
        addrs = esc(&board.addrs.join(", ")),
        up = humanize_secs(board.uptime_secs),
        health = esc(&board.health),
        entries = board.ledger_entries,
        cosigs = board.cosignatures,
        updated = ago(now, board.updated_ms),
    );

    // What runs here.
    let running = board
        .slivers
        .iter()
        .filter(|s| s.status.state == "running")
        .count();
    let _ = write!(
        p,
        r#"<h2>Slivers on this node ({running} running)</h2><table id="slivers"><tr><th>id</th><th>slice</th><th>person</th><th>authority</th><th>ticket</th><th>state</th><th>ends</th><th class="num">CPU</th><th class="num">memory / cap</th><th class="num">flows</th><th class="num">sent / cap per day</th><th class="num">received</th></tr>"#
    );
    for s in &board.slivers {
        let v = &s.status;
        let _ = write!(
            p,
            r#"<tr><td>{}</td><td class="slice">{}</td><td class="person">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class="num">{:.1} s</td><td class="num">{} / {}</td><td class="num">{}</td><td class="num">{} / {}</td><td class="num">{}</td></tr>"#,
            v.id,
            esc(&v.slice),
            esc(v.user.as_deref().unwrap_or("(no person)")),
            esc(v.authority.as_deref().unwrap_or("-")),
            esc(v.ticket.get(..16).unwrap_or(&v.ticket)),
            esc(&v.state),
            esc(&format!(
                "in {}",
                humanize_secs(v.expires.saturating_sub(now / 1000))
            )),
            v.cpu_ms as f64 / 1000.0,
            mib(v.memory),
            mib(s.memory_cap),
            v.flows,
            v.bytes_out,
            s.egress_cap.map_or("-".into(), |c| c.to_string()),
            v.bytes_in,
        );
    }
    p.push_str("</table>");
    p.push_str(
        "<p>Owner actions: <code>slicefed node stop --dir DIR SLICE</code> stops every sliver of a slice here (logged as stopped by the owner); <code>slicefed node status --dir DIR</code> says the same as this table.</p>",
    );

    // Refusals.
    let _ = write!(
        p,
        r#"<h2>Recent refusals</h2><table id="refusals"><tr><th>when</th><th>slice</th><th>reason</th><th>why</th></tr>"#
    );
    for r in board.refusals.iter().rev() {
        let _ = write!(
            p,
            r#"<tr><td>{}</td><td>{}</td><td class="bad">{}</td><td class="why">{}</td></tr>"#,
            ago(now, r.at_ms),
            esc(r.slice.as_deref().unwrap_or("(not a ticket that verifies)")),
            esc(r.label),
            esc(&r.reason)
        );
    }
    p.push_str("</table>");

    // History.
    let times: Vec<u64> = board.history.iter().map(|s| s.at_ms).collect();
    let series = |f: fn(&Sample) -> f64| -> Vec<f64> { board.history.iter().map(f).collect() };
    p.push_str("<h2>The last 48 hours</h2>");
    p.push_str(&chart(
        "slivers running",
        "chart-slivers",
        &times,
        &series(|s| s.slivers as f64),
    ));
    p.push_str(&chart(
        "members",
        "chart-members",
        &times,
        &series(|s| s.members as f64),
    ));
    p.push_str(&chart(
        "log entries",
        "chart-ledger",
        &times,
        &series(|s| s.ledger_entries as f64),
    ));
    p.push_str(&chart(
        "tickets refused (since start)",
        "chart-refused",
        &times,
        &series(|s| s.refused as f64),
    ));

    // The federation, sortable.
    let mut members = board.members.clone();
    match sort.unwrap_or("name") {
        "slivers" => members.sort_by_key(|m| std::cmp::Reverse(m.slivers)),
        "free" => members.sort_by_key(|m| std::cmp::Reverse(m.free_memory)),
        "seen" => members.sort_by_key(|m| m.last_seen_ms_ago),
        "health" => members.sort_by(|a, b| a.health.cmp(&b.health)),
        "authority" => members.sort_by(|a, b| a.authority.cmp(&b.authority)),
        _ => members.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    let _ = write!(
        p,
        r#"<h2>The federation as this node sees it ({} members)</h2><table id="members"><tr><th><a href="?sort=name">name</a></th><th><a href="?sort=authority">authority</a></th><th>address</th><th class="num"><a href="?sort=slivers">slivers</a></th><th class="num"><a href="?sort=free">free memory</a></th><th class="num"><a href="?sort=seen">last heard</a></th><th><a href="?sort=health">health</a></th></tr>"#,
        members.len().saturating_sub(1)
    );
    for m in &members {
        let addr = m
            .addrs
            .first()
            .map(|a| a.split("/p2p/").next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let _ = write!(
            p,
            r#"<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="{}">{}</td></tr>"#,
            esc(&m.name),
            esc(&m.authority),
            esc(&addr),
            m.slivers,
            mib(m.free_memory),
            humanize_secs(m.last_seen_ms_ago / 1000),
            if m.health == "ok" { "" } else { "bad" },
            esc(&m.health)
        );
    }
    p.push_str("</table><p>Sensors for monitoring tools: <code>/metrics</code> on the node's sensors address (<code>DIR/metrics.addr</code>).</p></body></html>");
    p
}

fn humanize_secs(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_peers_and_researchers_wrote_is_shown_as_text_never_as_markup() {
        let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";
        let board = Board {
            name: hostile.into(),
            members: vec![MemberRow {
                peer_id: "p".into(),
                name: hostile.into(),
                authority: hostile.into(),
                addrs: vec![hostile.into()],
                slivers: 0,
                free_memory: 0,
                last_seen_ms_ago: 0,
                health: hostile.into(),
                uptime_secs: 0,
                traffic: Traffic::default(),
            }],
            refusals: vec![crate::core::RecentRefusal {
                at_ms: 0,
                slice: Some(hostile.into()),
                label: "chain",
                reason: hostile.into(),
            }],
            ..Board::default()
        };
        let page = render(&board, Some(hostile));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;&#39;&amp;"));
    }

    #[test]
    fn history_survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let mut text = String::new();
        for i in 0..(HISTORY_SAMPLES as u64 + 100) {
            text.push_str(
                &Sample {
                    at_ms: i * SAMPLE_EVERY_MS,
                    slivers: i % 7,
                    ..Sample::default()
                }
                .line(),
            );
        }
        // A torn last line (a crash mid-write) and junk are skipped.
        text.push_str("123 4 garbage\n\u{0}\u{1}\n99");
        std::fs::write(&path, text).unwrap();
        let h = load_history(dir.path());
        assert_eq!(h.len(), HISTORY_SAMPLES);
        assert_eq!(
            h.back().unwrap().at_ms,
            (HISTORY_SAMPLES as u64 + 99) * SAMPLE_EVERY_MS
        );
        assert!(chart("x", "c", &[1, 2], &[0.0, 3.0]).contains("<polyline"));
    }
}
