//! File IO for the CLI: bounded reads, atomic writes, secret key permissions.
//!
//! Invariants: nothing is read past its limit; an output file appears whole or not at all
//! (written to a temporary file in the same directory, synced, then renamed); secret keys
//! are created 0600 and refused when group or others can read them.

use anyhow::{Context, Result, anyhow, bail};
use slicefed_trust::keys::{MAX_SECRET_KEY_FILE_BYTES, SecretKey};
use slicefed_trust::objects::MAX_CREDENTIAL_BYTES;
use slicefed_trust::verify::{Opened, open_any};
use slicefed_trust::{Credential, TrustPolicy};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads a whole file of at most `max` bytes.
pub fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if buf.len() > max {
        bail!(
            "{}: file is larger than the {max}-byte limit for this kind of file",
            path.display()
        );
    }
    Ok(buf)
}

/// Writes `bytes` to `path` atomically, with `mode`; refuses to replace an existing file
/// unless `replace`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<()> {
    if !replace && path.exists() {
        bail!(
            "{}: already exists; refusing to overwrite it",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".slicefed-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file in this directory", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    if replace {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    }
    .map_err(|e| anyhow!("{}: cannot write: {}", path.display(), e.error))?;
    Ok(())
}

/// Writes a secret key file (mode 0600, never over an existing file).
pub fn write_secret_key(path: &Path, key: &SecretKey) -> Result<()> {
    write_atomic(path, key.to_file_text().as_bytes(), 0o600, false)
}

/// Reads a secret key file, refusing one that group or others can read.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{}: secret key is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let bytes = read_bounded(path, MAX_SECRET_KEY_FILE_BYTES)?;
    SecretKey::from_file_text(&bytes).with_context(|| format!("{}", path.display()))
}

/// Reads a credential file (a leaf and its chain), checking its structure.
pub fn read_credential(path: &Path) -> Result<Credential> {
    let bytes = read_bounded(path, MAX_CREDENTIAL_BYTES)?;
    Credential::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// Reads a credential whose leaf must be of `kind` (a ticket where a ticket is expected),
/// with every object's envelope decoded, so a wrong or damaged file is refused before
/// anything is sent anywhere. Signatures are left to whoever the file is for: every node
/// judges a ticket itself and answers with its own signed reason, which is what the
/// researcher needs to see (and what a forged ticket sent by any other client gets).
pub fn read_credential_of(path: &Path, kind: slicefed_trust::objects::Kind) -> Result<Credential> {
    let cred = read_credential(path)?;
    for (i, o) in cred.objects.iter().enumerate() {
        slicefed_trust::objects::decode_envelope(o)
            .with_context(|| format!("{}: object {i}", path.display()))?;
    }
    let env = slicefed_trust::objects::decode_envelope(cred.leaf())
        .with_context(|| format!("{}", path.display()))?;
    if env.kind != kind {
        bail!(
            "{}: a {}, not a {}",
            path.display(),
            env.kind.name(),
            kind.name()
        );
    }
    Ok(cred)
}

/// Reads a credential and opens (signature-checks) every object in it.
pub fn read_opened(path: &Path) -> Result<(Credential, Vec<Opened>)> {
    let cred = read_credential(path)?;
    let opened = cred
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| open_any(o).with_context(|| format!("{}: object {i}", path.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok((cred, opened))
}

/// Reads a trust policy file.
pub fn read_policy(path: &Path) -> Result<TrustPolicy> {
    let bytes = read_bounded(path, slicefed_trust::policy::MAX_POLICY_BYTES)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow!("{}: trust policy is not UTF-8 text", path.display()))?;
    let policy = TrustPolicy::parse(text).with_context(|| format!("{}", path.display()))?;
    if policy.authorities().is_empty() {
        bail!(
            "{}: trust policy names no authority, so nothing could verify",
            path.display()
        );
    }
    Ok(policy)
}
