//! Connects to ADDR, sends MESSAGE, reads the echo, prints it. On failure prints why
//! ("permission denied" when policy refuses) and exits non-zero (WASI 0.2 carries only
//! success or failure, so every non-zero status arrives as 1).
use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let msg = args.next().unwrap_or_else(|| "ping".into());
    let mut s = match TcpStream::connect(&addr) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("connect {addr}: permission denied");
            std::process::exit(13);
        }
        Err(e) => {
            eprintln!("connect {addr}: {e}");
            std::process::exit(2);
        }
    };
    let mut run = || -> std::io::Result<String> {
        s.write_all(msg.as_bytes())?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match run() {
        Ok(echo) => println!("echo: {echo} (local {})", s.local_addr().map(|a| a.to_string()).unwrap_or_default()),
        Err(e) => {
            eprintln!("exchange with {addr}: {e}");
            std::process::exit(2);
        }
    }
}
