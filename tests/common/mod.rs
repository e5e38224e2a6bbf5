//! Shared harness for end-to-end tests: runs the real `slicefed` binary in a scratch
//! directory, like a user at a shell would.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    pub fn new() -> Shell {
        Shell {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_slicefed")
    }
    /// Runs `slicefed ARGS` in the scratch directory.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(
            Command::new(Self::bin())
                .args(args)
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
