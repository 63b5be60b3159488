//! A TCP proxy in front of the cluster that delays every chunk by 200–800
//! ms (each way) and now and then drops a connection: a slow, lossy link.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running proxy; it stops accepting when dropped.
pub struct DelayProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stop: Arc<AtomicBool>,
    /// Connections dropped on purpose.
    pub dropped: Arc<AtomicU64>,
}

/// xorshift64*: enough randomness for delays and chaos, no dependency.
pub fn rand(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn seed() -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    n | 1
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    mut rng: u64,
    drop_per_mille: u64,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        std::thread::sleep(Duration::from_millis(200 + rand(&mut rng) % 601));
        if rand(&mut rng) % 1000 < drop_per_mille {
            dropped.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl DelayProxy {
    /// Proxies to `upstream` (`http://host:port`); `drop_per_mille` of the
    /// chunks end their connection instead of being forwarded.
    pub fn start(upstream: &str, drop_per_mille: u64) -> DelayProxy {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), dropped.clone());
        std::thread::spawn(move || {
            let mut rng = seed();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let (r1, r2) = (rand(&mut rng), rand(&mut rng));
                        let (d1, d2) = (d.clone(), d.clone());
                        std::thread::spawn(move || pump(client, server, r1, drop_per_mille, d1));
                        std::thread::spawn(move || pump(s2, c2, r2, drop_per_mille, d2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        DelayProxy { url, stop, dropped }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
