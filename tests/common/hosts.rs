//! Hosts as network namespaces: every node, the researcher, the auditor and an outside
//! "victim" get a namespace of their own with one address on a shared bridge, so that
//! what crosses the network is what would cross it between machines (each node has its own
//! source address; nobody reads another's disk through the network).
//!
//! Made with iproute2 (`ip netns`, veth, bridge), which needs root. Where namespaces cannot
//! be made, `Hosts::new` panics with one line saying why: these tests never skip silently.
//! Every namespace and link is the harness's own (names carry the test process's id), and
//! addresses are in 10.213.0.0/24 inside them, reachable from nowhere else.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The hosts' subnet (a /24 inside the harness's own namespaces only).
pub const SUBNET: &str = "10.213.0";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Hosts on one bridge; deleted (namespaces, links) when dropped.
pub struct Hosts {
    switch: String,
    names: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces left by test processes that no longer run (a test killed before its
/// `Drop` ran).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("sft") else {
            continue;
        };
        let pid = rest.split('x').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Hosts {
    /// `count` hosts (at most 200), `SUBNET.(10 + i)` each, on one bridge.
    pub fn new(count: usize) -> Hosts {
        assert!(count <= 200);
        match Hosts::make(count) {
            Ok(h) => h,
            Err(why) => panic!(
                "cannot make network namespaces for the hosts test (it needs root and iproute2): {why}"
            ),
        }
    }

    fn make(count: usize) -> Result<Hosts, String> {
        sweep_stale();
        let tag = format!(
            "sft{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{tag}sw");
        ip(&["netns", "add", &switch])?;
        let mut hosts = Hosts {
            switch: switch.clone(),
            names: vec![],
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..count {
            let ns = format!("{tag}h{i}");
            ip(&["netns", "add", &ns])?;
            hosts.names.push(ns.clone());
            let port = format!("p{i}");
            // Made inside the switch's namespace, so names never clash with other tests'.
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", hosts.ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{SUBNET}.{}", 10 + i)
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// `program` to run on host `i` (`ip netns exec` execs it, so the child's pid is the
    /// program's own: killing the child kills the program).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(i), program]);
        c
    }

    /// Cuts host `i` off the bridge (`false`) or plugs it back (`true`): a partition.
    pub fn link(&self, i: usize, up: bool) {
        let port = format!("p{i}");
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }

    /// Runs `f` on a thread inside host `i`'s namespace: sockets it makes belong to that
    /// host (a server the test itself runs, like the victim).
    pub fn within<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns(i));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // Changes only this thread's network namespace.
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and with it the other end.
        for n in self.names.iter().chain(std::iter::once(&self.switch)) {
            let _ = ip(&["netns", "del", n]);
        }
    }
}
