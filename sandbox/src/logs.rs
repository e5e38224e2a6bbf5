//! Bounded per-sliver logs: a ring buffer that keeps the newest bytes and counts what it
//! dropped, so a log spammer costs its own CPU share and a fixed amount of node memory.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Debug, Default)]
struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
    dropped: u64,
    written: u64,
}

/// A bounded log shared between a sliver's stdout or stderr and its readers.
#[derive(Clone, Debug)]
pub struct LogBuffer(Arc<Mutex<Ring>>);

impl LogBuffer {
    /// A buffer keeping at most `cap` bytes.
    pub fn new(cap: usize) -> LogBuffer {
        LogBuffer(Arc::new(Mutex::new(Ring {
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap,
            dropped: 0,
            written: 0,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        if let Ok(mut r) = self.0.lock() {
            r.written += bytes.len() as u64;
            let cap = r.cap;
            let keep = bytes
                .get(bytes.len().saturating_sub(cap)..)
                .unwrap_or_default();
            let held = r.buf.len();
            let overflow = (held + keep.len()).saturating_sub(cap);
            r.buf.drain(..overflow.min(held));
            r.dropped += (overflow + bytes.len() - keep.len()) as u64;
            r.buf.extend(keep);
        }
    }

    /// The newest bytes held.
    pub fn contents(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|r| r.buf.iter().copied().collect())
            .unwrap_or_default()
    }

    /// (bytes written in all, bytes dropped to stay bounded).
    pub fn counts(&self) -> (u64, u64) {
        self.0
            .lock()
            .map(|r| (r.written, r.dropped))
            .unwrap_or((0, 0))
    }
}

impl IsTerminal for LogBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogBuffer {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for LogBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes() {
        let l = LogBuffer::new(8);
        l.push(b"hello ");
        l.push(b"world!");
        assert_eq!(l.contents(), b"o world!");
        assert_eq!(l.counts(), (12, 4));
        l.push(&[b'x'; 100]);
        assert_eq!(l.contents(), vec![b'x'; 8]);
        assert_eq!(l.counts(), (112, 104));
    }
}
