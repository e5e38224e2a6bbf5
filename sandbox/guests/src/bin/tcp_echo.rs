//! Listens on PORT and echoes every connection (COUNT connections, default forever).
//! If policy refuses the port it prints "listen PORT: permission denied" and exits non-zero.
use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(7000);
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let l = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("listen {port}: permission denied");
            std::process::exit(13);
        }
        Err(e) => {
            eprintln!("listen {port}: {e}");
            std::process::exit(2);
        }
    };
    println!("listening on {port}");
    for conn in l.incoming().take(count as usize) {
        let Ok(mut c) = conn else { continue };
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
}
