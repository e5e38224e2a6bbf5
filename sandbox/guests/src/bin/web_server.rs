//! A tiny web server, the example of a slice that serves (as PlanetLab's CDN slices did):
//! listens on PORT and answers every HTTP request with one line naming the sliver and the
//! address it was reached at, COUNT requests (default forever). A request's head is read up
//! to 8 KiB or 64 lines; anything else is the client's problem, never the server's.
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn serve(c: &mut TcpStream, me: &str) {
    let local = c.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut reader = BufReader::new(&*c);
    let mut first = String::new();
    let mut read = 0usize;
    for _ in 0..64 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
        if first.is_empty() {
            first = line.trim_end().to_string();
        }
        if line == "\r\n" || line == "\n" || read > 8192 {
            break;
        }
    }
    let body = format!("served by {me} at {local}\n");
    let status = if first.starts_with("GET ") { "200 OK" } else { "405 Method Not Allowed" };
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    println!("{first} -> {status} ({local})");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(8080);
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let me = std::env::var("SLIVER_NAME").unwrap_or_else(|_| "a sliver".into());
    let l = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("listen {port}: {e}");
            std::process::exit(2);
        }
    };
    println!("serving on {port}");
    for conn in l.incoming().take(count as usize) {
        let Ok(mut c) = conn else { continue };
        serve(&mut c, &me);
    }
}
