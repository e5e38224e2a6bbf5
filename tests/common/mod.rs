//! Shared harness for end-to-end tests: runs the real `slicefed` binary in a scratch
//! directory, like a user at a shell would.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

/// The hosts harness is the CLI's own (`slicefed devnet --hosts` uses it too).
#[path = "../../cli/src/hosts.rs"]
pub mod hosts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory and the binary.
pub struct Shell {
    pub dir: tempfile::TempDir,
}

/// What one command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
    /// Asserts success.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    /// Asserts the failure contract: exit 1, one line on stderr that mentions `needle`, no
    /// panic, nothing on stdout.
    pub fn fails_with(self, needle: &str) -> Run {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "expected one line on stderr, got: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks `{needle}`: {}",
            self.stderr
        );
        self
    }
}

impl Shell {
    /// A fresh scratch directory, removed at the end unless `SLICEFED_TEST_KEEP` is set
    /// (then its path is printed: the nodes' stderr and ledgers stay to be read).
    pub fn new() -> Shell {
        let mut dir = tempfile::tempdir().unwrap();
        if std::env::var_os("SLICEFED_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("test directory kept: {}", dir.path().display());
        }
        Shell { dir }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_slicefed")
    }
    /// Runs `slicefed ARGS` in the scratch directory.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(Command::new(Self::bin()), args)
    }
    /// Runs `slicefed ARGS` on host `i` (in its network namespace).
    pub fn run_on(&self, hosts: &hosts::Hosts, i: usize, args: &[&str]) -> Run {
        self.run_cmd(hosts.command(i, Self::bin()), args)
    }
    fn run_cmd(&self, mut cmd: Command, args: &[&str]) -> Run {
        Run::from(
            cmd.args(args)
                .current_dir(self.dir.path())
                .env_remove("SLICEFED_KEY")
                .env_remove("SLICEFED_CERT")
                .env_remove("SLICEFED_TRUST")
                .env_remove("SLICEFED_BOOTSTRAP")
                .output()
                .unwrap(),
        )
    }
    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }
    /// Creates an authority and returns its public key (hex).
    pub fn authority(&self, name: &str) -> String {
        let r = self
            .run(&["authority", "init", "--name", name, "--out", name, "--json"])
            .ok();
        r.json()["public_key"].as_str().unwrap().to_string()
    }
    /// `authority revoke`: `authority` revokes the certificate in file `cert` for `reason`,
    /// writing the revocation file `out` (published with `authority publish`).
    pub fn revoke(&self, authority: &str, cert: &str, reason: &str, out: &str) {
        self.run(&[
            "authority",
            "revoke",
            "--authority",
            authority,
            "--cert",
            cert,
            "--reason",
            reason,
            "--out",
            out,
        ])
        .ok();
    }
    /// Writes a trust policy trusting the given (name, key) authorities. The federation
    /// runs on loopback, so slivers may reach loopback ([local] allow): a node owner opens
    /// their own machine explicitly (see `policy_closed` for the default).
    pub fn policy(&self, file: &str, authorities: &[(&str, &str)]) {
        let mut text = Self::authorities_toml(authorities);
        text.push_str("[local]\nallow = [\"tcp:127.0.0.0/8:*\", \"udp:127.0.0.0/8:*\"]\n");
        self.write(file, text.as_bytes());
    }
    /// A trust policy with the owner's defaults: nothing local is open to slivers.
    pub fn policy_closed(&self, file: &str, authorities: &[(&str, &str)]) {
        self.write(file, Self::authorities_toml(authorities).as_bytes());
    }
    fn authorities_toml(authorities: &[(&str, &str)]) -> String {
        let mut text = String::new();
        for (name, key) in authorities {
            text.push_str(&format!(
                "[[authority]]\nname = \"{name}\"\npublic_key = \"{key}\"\n\n"
            ));
        }
        text
    }
    /// Creates a user key and certificate under `authority`.
    pub fn user(&self, authority: &str, name: &str) {
        let key = format!("{name}.key");
        let cert = format!("{name}.cert");
        self.run(&["key", "gen", "--out", &key]).ok();
        self.run(&[
            "authority",
            "certify",
            "--authority",
            authority,
            "--subject",
            &key,
            "--role",
            "user",
            "--name",
            name,
            "--rights",
            "create,delegate",
            "--out",
            &cert,
        ])
        .ok();
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A `slicefed node run` process, SIGKILLed when dropped.
pub struct Node {
    pub child: Option<Child>,
    pub dir: String,
    pub addr: String,
}

impl Node {
    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Shell {
    /// `node init` in `dir` named `dir`, certified by `authority`; returns its public key.
    pub fn certified_node(&self, authority: &str, dir: &str) -> String {
        let pk = self
            .run(&["node", "init", "--dir", dir, "--name", dir, "--json"])
            .ok()
            .json()["public_key"]
            .as_str()
            .unwrap()
            .to_string();
        self.run(&[
            "authority",
            "certify",
            "--authority",
            authority,
            "--subject",
            &pk,
            "--role",
            "node",
            "--name",
            dir,
            "--out",
            &format!("{dir}/node.cert"),
        ])
        .ok();
        pk
    }
}

/// Starts `node run` for the node in `dir` under the policy `trust`, on loopback, and waits
/// until it listens; returns the process and its address. Its stderr goes to `DIR.stderr`
/// (with `/` in DIR as `_`) in the scratch directory.
pub fn spawn_node(
    sh: &Shell,
    dir: &str,
    trust: &str,
    bootstrap: Option<&str>,
    extra: &[&str],
) -> (Child, String) {
    spawn_node_on(sh, None, dir, trust, bootstrap, extra)
}

/// [`spawn_node`] on host `on` (its namespace and address) instead of loopback.
pub fn spawn_node_on(
    sh: &Shell,
    on: Option<(&hosts::Hosts, usize)>,
    dir: &str,
    trust: &str,
    bootstrap: Option<&str>,
    extra: &[&str],
) -> (Child, String) {
    let (mut cmd, listen) = match on {
        Some((h, i)) => (
            h.command(i, Shell::bin()),
            format!("/ip4/{}/tcp/4001", h.ip(i)),
        ),
        None => (Command::new(Shell::bin()), "/ip4/127.0.0.1/tcp/0".into()),
    };
    cmd.current_dir(sh.dir.path())
        .args([
            "node",
            "run",
            "--dir",
            dir,
            "--cert",
            &format!("{dir}/node.cert"),
        ])
        .args(["--trust", trust, "--listen", &listen])
        .args([
            "--advert-interval",
            "1s",
            "--cache",
            "cache",
            "--max-slivers",
            "4",
        ])
        .args(["--memory", "512MiB"])
        .args(extra)
        .env_remove("SLICEFED_BOOTSTRAP")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(sh.path(&format!("{}.stderr", dir.replace('/', "_"))))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on ") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("node did not listen");
    (child, addr)
}

/// Polls `f` every 300 ms until it returns something, for at most `secs`.
pub fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A TCP service outside the federation that records who connected (answers `ok`).
pub fn victim() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().map_while(Result::ok) {
            s.lock().unwrap().push(c.peer_addr().unwrap());
            let mut line = String::new();
            let _ = BufReader::new(&c).read_line(&mut line);
            let _ = c.write_all(b"ok\n");
        }
    });
    (addr, seen)
}

/// Every node's status of `slice` (nodes that run none of it are left out).
pub fn statuses(sh: &Shell, boot: &str, slice: &str) -> Vec<serde_json::Value> {
    let r = sh
        .run(&["slice", "status", slice, "--bootstrap", boot, "--json"])
        .ok()
        .json();
    r["nodes"].as_array().unwrap().clone()
}

/// How many nodes run `slice`.
pub fn running(sh: &Shell, boot: &str, slice: &str) -> usize {
    statuses(sh, boot, slice)
        .iter()
        .filter(|n| n["status"] == "running")
        .count()
}
