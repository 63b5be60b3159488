//! An HTTP/1.1 proxy in front of the cluster that counts the requests
//! passing through it, by method and endpoint (`POST _msearch`,
//! `GET /`): how many requests a client really sends, whatever its
//! connection reuse. Requests are framed by `Content-Length` or chunked
//! encoding; responses are copied through untouched.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// A running counting proxy; it stops accepting when dropped.
pub struct CountingProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    counts: Counts,
    stop: Arc<AtomicBool>,
}

/// The endpoint of a request path: its last `_` segment (`_search`,
/// `_msearch`, `_doc`, and `_search/scroll`) after the index it names, if
/// any (`logs/_search`), else `/` for the root, else the path's first segment.
pub fn endpoint(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(i) = segs.iter().rposition(|s| s.starts_with('_')) else {
        return segs.first().map_or("/".to_owned(), |s| format!("/{s}"));
    };
    let end = match segs.get(i + 1) {
        Some(&"scroll") => format!("{}/scroll", segs[i]),
        _ => segs[i].to_owned(),
    };
    match segs.first() {
        Some(index) if i > 0 => format!("{index}/{end}"),
        _ => end,
    }
}

impl CountingProxy {
    /// Proxies to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> CountingProxy {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Counts::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let _ = client.set_nodelay(true);
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let _ = server.set_nodelay(true);
                        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                            continue;
                        };
                        let counts = c.clone();
                        std::thread::spawn(move || requests(client, server, counts));
                        std::thread::spawn(move || copy(s2, c2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CountingProxy { url, counts, stop }
    }

    /// The requests so far, by `METHOD endpoint`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// `_search` and `_msearch` requests so far (scrolls excluded).
    pub fn searches(&self) -> u64 {
        self.counts()
            .iter()
            .filter(|(k, _)| k.ends_with("_search") || k.ends_with("_msearch"))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Forwards client → server one request at a time, counting each.
fn requests(client: TcpStream, mut server: TcpStream, counts: Counts) {
    let shut = client.try_clone();
    let mut r = BufReader::new(client);
    while forward_one(&mut r, &mut server, &counts).unwrap_or(false) {}
    if let Ok(c) = shut {
        let _ = c.shutdown(Shutdown::Both);
    }
    let _ = server.shutdown(Shutdown::Both);
}

/// One request: false at a clean end of the connection.
fn forward_one(
    r: &mut BufReader<TcpStream>,
    server: &mut TcpStream,
    counts: &Counts,
) -> std::io::Result<bool> {
    let mut head = Vec::new();
    let mut line = String::new();
    let mut length = 0usize;
    let mut chunked = false;
    let mut first = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        head.extend_from_slice(line.as_bytes());
        let t = line.trim_end();
        if first.is_none() {
            first = Some(t.to_owned());
            continue;
        }
        if t.is_empty() {
            break;
        }
        if let Some((k, v)) = t.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let first = first.unwrap_or_default();
    let mut parts = first.split_whitespace();
    let key = format!(
        "{} {}",
        parts.next().unwrap_or("?"),
        endpoint(parts.next().unwrap_or(""))
    );
    *counts.lock().unwrap().entry(key).or_default() += 1;
    server.write_all(&head)?;
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            server.write_all(line.as_bytes())?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            // The chunk and its CRLF; the last (empty) chunk ends with a CRLF, too.
            let mut buf = vec![0u8; size + 2];
            r.read_exact(&mut buf)?;
            server.write_all(&buf)?;
            if size == 0 {
                break;
            }
        }
    } else if length > 0 {
        let mut body = r.by_ref().take(length as u64);
        std::io::copy(&mut body, server)?;
    }
    Ok(true)
}
