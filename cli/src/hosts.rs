//! Hosts as network namespaces: every node, the researcher, the auditor and an outside
//! "victim" get a namespace of their own with one address on a shared bridge, so that
//! what crosses the network is what would cross it between machines (each node has its own
//! source address; nobody reads another's disk through the network).
//!
//! Made with iproute2 (`ip netns`, veth, bridge), which needs root. Where namespaces cannot
//! be made, `Hosts::new` says why in one line (`slicefed devnet --hosts` fails with it, the
//! tests panic with it: they never skip silently). Every namespace and link is this
//! process's own (names carry its id), and addresses are in 10.213.0.0/24 inside them,
//! reachable from nowhere else.
//!
//! Used by `slicefed devnet --hosts` and, through `#[path]`, by the end-to-end tests
//! (`tests/common`): one harness, not two.

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
    /// `count` hosts (at most 200), `SUBNET.(10 + i)` each, on one bridge; or why they
    /// cannot be made (root and iproute2 are needed).
    pub fn new(count: usize) -> Result<Hosts, String> {
        if count > 200 {
            return Err(format!("{count} hosts, at most 200"));
        }
        Hosts::make(count).map_err(|why| {
            format!("cannot make network namespaces (root and iproute2 are needed): {why}")
        })
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

    /// Host `i`'s namespace (empty past the last host).
    pub fn ns(&self, i: usize) -> &str {
        self.names.get(i).map_or("", String::as_str)
    }

    /// `program` to run on host `i` (`ip netns exec` execs it, so the child's pid is the
    /// program's own: killing the child kills the program).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(i)]).arg(program);
        c
    }

    /// Cuts host `i` off the bridge (`false`) or plugs it back (`true`): a partition.
    #[allow(dead_code, reason = "the partition tests use it; devnet does not")]
    pub fn link(&self, i: usize, up: bool) -> Result<(), String> {
        let port = format!("p{i}");
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
    }

    /// Moves the calling thread into host `i`'s network namespace: sockets it makes, and
    /// processes and threads it starts from then on, belong to that host.
    pub fn enter(&self, i: usize) -> Result<(), String> {
        let path = format!("/run/netns/{}", self.ns(i));
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns into {path}: {e}"))
    }

    /// Runs `f` on a new thread inside host `i`'s namespace (a server of the caller's own,
    /// like the victim, whose socket then belongs to that host).
    pub fn within<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.ns(i));
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("setns into {path}: {e}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| "the thread in the namespace panicked".to_string())?
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
