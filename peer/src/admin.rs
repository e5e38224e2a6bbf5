//! The owner's local admin channel: a Unix socket at `DIR/admin/socket`, in a directory only
//! the node's user can enter (0700) and itself 0600, served by its own task apart from the
//! libp2p port. However the public port is flooded, the owner's `node stop` gets through:
//! the daemon's loop takes admin calls before anything else.
//!
//! Framing: a 4-byte big-endian length, then the encoded [`AdminRequest`] (at most
//! [`MAX_ADMIN_REQUEST_BYTES`]); the answer is framed the same way (a [`Response`]).
//! Invariants: at most [`MAX_ADMIN_CONNECTIONS`] connections are served at once, each
//! read and write has a deadline, and the queue to the daemon is bounded.

use crate::wire::{AdminRequest, MAX_ADMIN_REQUEST_BYTES, MAX_RESPONSE_BYTES, Response};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Admin connections served at once.
pub const MAX_ADMIN_CONNECTIONS: usize = 8;
/// Admin calls waiting for the daemon.
pub const ADMIN_QUEUE: usize = 16;
/// Deadline of each read and write on the socket, and of the daemon's answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin channel failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be made or reached.
    #[error("{path}: {error}")]
    Io {
        /// The socket or its directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The answer or the request does not decode or is too large.
    #[error("{0}")]
    Wire(#[from] crate::wire::WireError),
    /// The answer is over the limit.
    #[error("the node's answer is {0} bytes, over the limit")]
    TooLarge(usize),
}

/// One call from the owner, for the daemon's loop to answer.
pub struct AdminCall {
    /// What the owner asks.
    pub request: AdminRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

/// Where the node in `dir` listens for its owner.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("admin").join("socket")
}

/// Makes `DIR/admin` (0700) and binds its socket (0600), replacing a stale one, then serves
/// it on the current tokio runtime until `calls` is closed.
pub fn serve(dir: &Path, calls: mpsc::Sender<AdminCall>) -> Result<(), AdminError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(dir);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |error| AdminError::Io { path: p, error }
    };
    let parent = dir.join("admin");
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&parent))?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io(&path))?;
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    // Runs as long as the daemon's runtime; once the daemon stops taking calls, each is
    // answered with an error.
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Beyond the limit, a connection waits for a slot (the owner retries anyway).
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _ = tokio::time::timeout(ADMIN_TIMEOUT * 2, answer(stream, calls)).await;
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: tokio::net::UnixStream, calls: mpsc::Sender<AdminCall>) {
    let response = match read_request(&mut stream).await {
        Ok(request) => {
            let (reply, rx) = oneshot::channel();
            match tokio::time::timeout(ADMIN_TIMEOUT, calls.send(AdminCall { request, reply }))
                .await
            {
                Ok(Ok(())) => match tokio::time::timeout(ADMIN_TIMEOUT, rx).await {
                    Ok(Ok(r)) => r,
                    _ => Response::Error("the node did not answer in time".into()),
                },
                _ => Response::Error("the node is shutting down or too busy".into()),
            }
        }
        Err(why) => Response::Error(why),
    };
    let Ok(bytes) = response.to_bytes() else {
        return;
    };
    let write = async {
        stream
            .write_all(&(bytes.len() as u32).to_be_bytes())
            .await?;
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(ADMIN_TIMEOUT, write).await;
}

async fn read_request(stream: &mut tokio::net::UnixStream) -> Result<AdminRequest, String> {
    let read = async {
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|e| e.to_string())?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ADMIN_REQUEST_BYTES {
            return Err(format!(
                "admin request of {len} bytes, over {MAX_ADMIN_REQUEST_BYTES}"
            ));
        }
        let mut buf = vec![0u8; len];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        AdminRequest::from_bytes(&buf).map_err(|e| format!("bad admin request: {e}"))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, read)
        .await
        .map_err(|_| "the admin request did not arrive in time".to_string())?
}

/// Asks the node in `dir` over its admin socket (blocking; for the owner's CLI).
pub fn call(dir: &Path, request: &AdminRequest, timeout: Duration) -> Result<Response, AdminError> {
    let path = socket_path(dir);
    let io = |error| AdminError::Io {
        path: path.clone(),
        error,
    };
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let bytes = request.to_bytes()?;
    s.write_all(&(bytes.len() as u32).to_be_bytes())
        .map_err(io)?;
    s.write_all(&bytes).map_err(io)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RESPONSE_BYTES {
        return Err(AdminError::TooLarge(len));
    }
    let mut buf = Vec::new();
    s.take(len as u64).read_to_end(&mut buf).map_err(io)?;
    Ok(Response::from_bytes(&buf)?)
}
