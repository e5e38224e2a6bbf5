//! Parsing of the CLI's value syntaxes (durations, sizes, times) and output helpers.

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `90s`, `15m`, `14d`.
/// Parses `K=V` (an environment variable for slivers).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not K=V"))
}

pub fn parse_duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("`{s}` is not a duration such as 90s, 15m or 14d ({e})"))
}

/// `64MiB`, `10GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    slicefed_trust::policy::parse_size(s)
}

/// RFC 3339 or unix seconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is not a time (RFC 3339 or unix seconds): {e}"))?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| format!("`{s}` is before 1970"))
}

/// Unix seconds as RFC 3339 (or the number if out of range).
pub fn show_time(secs: u64) -> String {
    if secs >= 253_402_300_799 {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Prints a line on stdout. A closed stdout (`| head`) is not an error worth a panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}
pub(crate) use say;

/// Prints one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| anyhow!("cannot render JSON: {e}"))?;
    say!("{s}");
    Ok(())
}

/// Fails unless the value is in range.
pub fn ensure_nonzero(what: &str, v: u64) -> Result<()> {
    if v == 0 {
        bail!("{what} must be greater than zero");
    }
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what `kill` and service managers send), so a
/// node or a devnet shuts down cleanly either way.
pub async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
