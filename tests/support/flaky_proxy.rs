//! A TCP proxy on 127.0.0.1 that the tests can break on purpose: between
//! obnam and a real server, it passes bytes through at a bounded rate (per
//! connection, or shared by all as a slow uplink shares its rate), and
//! on command cuts every connection and refuses new ones, or stalls them
//! (holds every byte) until healed. Network faults, made on loopback.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASS: u8 = 0;
const CUT: u8 = 1;
const STALL: u8 = 2;

struct Shared {
    state: AtomicU8,
    /// Bytes passed through, both ways.
    passed: AtomicU64,
    /// Bytes per second at most, per direction of each connection (0: no
    /// limit).
    rate: u64,
    /// With a rate shared by every connection: when the link is next free.
    link_free_at: Option<Mutex<Instant>>,
    open: Mutex<Vec<TcpStream>>,
}

/// A proxy to one server address.
pub struct FlakyProxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl FlakyProxy {
    /// Listen on a free port of 127.0.0.1 and forward to `target`, at most
    /// `rate` bytes per second per direction and connection.
    pub fn start(target: SocketAddr, rate: u64) -> FlakyProxy {
        Self::start_with(target, rate, false)
    }

    /// Like [`start`](Self::start), but the `rate` is shared by all
    /// connections, as on a slow uplink: what one connection sends, the
    /// others wait for.
    pub fn start_shared(target: SocketAddr, rate: u64) -> FlakyProxy {
        Self::start_with(target, rate, true)
    }

    fn start_with(target: SocketAddr, rate: u64, shared_rate: bool) -> FlakyProxy {
        assert!(
            target.ip().is_loopback(),
            "tests only ever talk to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            state: AtomicU8::new(PASS),
            passed: AtomicU64::new(0),
            rate,
            link_free_at: shared_rate.then(|| Mutex::new(Instant::now())),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if s.state.load(Ordering::SeqCst) == CUT {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut open = s.open.lock().unwrap();
                    open.extend(client.try_clone().ok());
                    open.extend(server.try_clone().ok());
                }
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let s = s.clone();
                        std::thread::spawn(move || pump(from, to, &s));
                    }
                }
            }
        });
        FlakyProxy { port, shared }
    }

    /// Bytes passed through so far.
    pub fn passed(&self) -> u64 {
        self.shared.passed.load(Ordering::SeqCst)
    }

    /// Break every open connection and refuse new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.shared.state.store(CUT, Ordering::SeqCst);
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Hold every byte, on open and new connections, until [`heal`](Self::heal).
    pub fn stall(&self) {
        self.shared.state.store(STALL, Ordering::SeqCst);
    }

    /// Pass bytes again.
    pub fn heal(&self) {
        self.shared.state.store(PASS, Ordering::SeqCst);
    }
}

/// Copy `from` to `to` until either end closes.
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while s.state.load(Ordering::SeqCst) == STALL {
            std::thread::sleep(Duration::from_millis(10));
        }
        if s.state.load(Ordering::SeqCst) == CUT || to.write_all(&buf[..n]).is_err() {
            break;
        }
        s.passed.fetch_add(n as u64, Ordering::SeqCst);
        let Some(micros) = (n as u64 * 1_000_000).checked_div(s.rate) else {
            continue;
        };
        let busy = Duration::from_micros(micros);
        match &s.link_free_at {
            None => std::thread::sleep(busy),
            Some(free_at) => {
                // Take the link's next free slot, and wait for its end.
                let done = {
                    let mut free_at = free_at.lock().unwrap();
                    *free_at = (*free_at).max(Instant::now()) + busy;
                    *free_at
                };
                std::thread::sleep(done.saturating_duration_since(Instant::now()));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
