//! A fault-injecting HTTP proxy for registry tests.
//!
//! It sits between a client and a registry on loopback and, for each request, draws from a
//! seeded generator whether to answer 500, answer 429, or forward the request and cut the
//! connection half-way through the response. The same seed gives the same sequence of draws.
//! No request key (method and path, upload session ids removed) gets two faults in a row, so
//! a client that retries a few times always gets through: the test is about surviving faults,
//! not about bad luck.
//!
//! Each connection carries one request: the proxy asks the registry to close after answering
//! (`Connection: close`), which the registry repeats to the client. Every request line is
//! recorded, so tests can count what a client sent. A request can also trigger a kill: once the
//! registry has answered a matching request, a process is sent SIGKILL (the registry, for
//! crash-in-the-middle tests) and the client's connection is closed without the answer, so
//! nothing the client sends after that request can reach the registry.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What to inject, as probabilities per request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub error_500: f64,
    pub throttle_429: f64,
    /// Forward the request, then pass on only part of the response and close.
    pub cut: f64,
    pub seed: u64,
    /// When the registry has answered the first request whose line contains this text,
    /// SIGKILL this pid, and close the client's connection instead of answering.
    pub kill_after: Option<(String, u32)>,
    /// Answer every `HEAD` of a blob with 500, as a registry whose storage backend is sick.
    pub fail_blob_heads: bool,
    /// Answer 503 to every request that matches one of these, every time: a registry that
    /// keeps failing one kind of request, not a blip. `"PUT /manifests/"` matches the requests
    /// whose method is `PUT` and whose line contains `/manifests/`; `"/manifests/"` any method.
    pub fail_matching: Vec<String>,
    /// Hold every request this long before acting on it: a slow registry.
    pub delay: Option<std::time::Duration>,
}

/// Counts of what was injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    pub error_500: u64,
    pub throttle_429: u64,
    pub cut: u64,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<String>>,
    last_fault: Mutex<HashMap<String, bool>>,
    rng: Mutex<u64>,
    e500: AtomicU64,
    e429: AtomicU64,
    cuts: AtomicU64,
    killed: AtomicBool,
}

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> FaultProxy {
        FaultProxy::start_on("127.0.0.1".parse().unwrap(), upstream, faults)
    }

    /// Listen on a free port of `ip` (an address pods reach, for the end-to-end suite) and
    /// forward to `upstream`.
    pub fn start_on(ip: std::net::IpAddr, upstream: SocketAddr, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            rng: Mutex::new(faults.seed.max(1)),
            ..Shared::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (s, f) = (s.clone(), faults.clone());
                        std::thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            let _ = serve(client, upstream, &s, &f);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        FaultProxy {
            addr,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// A proxy that injects nothing: it only records requests.
    pub fn recording(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start(upstream, Faults::default())
    }

    /// `IP:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request line seen so far (`PUT /v2/app/manifests/1 HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    pub fn injected(&self) -> Injected {
        Injected {
            error_500: self.shared.e500.load(Ordering::SeqCst),
            throttle_429: self.shared.e429.load(Ordering::SeqCst),
            cut: self.shared.cuts.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// xorshift64*: a uniform draw in [0, 1).
fn draw(state: &Mutex<u64>) -> f64 {
    let mut s = state.lock().unwrap();
    let mut x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// The key a fault is limited by: method and path, without query or upload session id.
fn key(line: &str) -> String {
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let path = match path.find("/blobs/uploads/") {
        Some(i) => &path[..i + "/blobs/uploads/".len()],
        None => path,
    };
    format!("{method} {path}")
}

/// Whether a `fail_matching` pattern (`[METHOD ]FRAGMENT`) matches a request line.
fn matches(pattern: &str, line: &str) -> bool {
    match pattern.split_once(' ') {
        Some((method, fragment)) if !method.starts_with('/') => {
            line.starts_with(&format!("{method} ")) && line.contains(fragment)
        }
        _ => line.contains(pattern),
    }
}

enum Action {
    Forward,
    Status(u16, &'static str),
    Cut,
}

fn serve(client: TcpStream, upstream: SocketAddr, s: &Shared, f: &Faults) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head: Vec<String> = vec![];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let request_line = head.first().cloned().unwrap_or_default();
    s.requests.lock().unwrap().push(request_line.clone());
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));

    if let Some(d) = f.delay {
        std::thread::sleep(d);
    }
    let action = {
        let k = key(&request_line);
        let mut last = s.last_fault.lock().unwrap();
        let had = last.get(&k).copied().unwrap_or(false);
        let x = draw(&s.rng);
        let total = f.error_500 + f.throttle_429 + f.cut;
        let injected = s.e500.load(Ordering::SeqCst)
            + s.e429.load(Ordering::SeqCst)
            + s.cuts.load(Ordering::SeqCst);
        let a = if f.fail_matching.iter().any(|m| matches(m, &request_line)) {
            Action::Status(503, "Service Unavailable")
        } else if f.fail_blob_heads
            && request_line.starts_with("HEAD ")
            && request_line.contains("/blobs/")
        {
            Action::Status(500, "Internal Server Error")
        } else if had {
            Action::Forward
        } else if x < total && injected < 3 {
            // The first three faults are one of each kind, so every kind is exercised.
            match injected {
                0 => Action::Status(500, "Internal Server Error"),
                1 => Action::Status(429, "Too Many Requests"),
                _ => Action::Cut,
            }
        } else if x < f.error_500 {
            Action::Status(500, "Internal Server Error")
        } else if x < f.error_500 + f.throttle_429 {
            Action::Status(429, "Too Many Requests")
        } else if x < f.error_500 + f.throttle_429 + f.cut {
            Action::Cut
        } else {
            Action::Forward
        };
        last.insert(k, !matches!(a, Action::Forward));
        a
    };

    if let Action::Status(code, reason) = action {
        // Drain the body so the client sees the answer, not a reset.
        if chunked {
            copy_chunked(&mut reader, &mut io::sink())?;
        } else {
            io::copy(&mut (&mut reader).take(length), &mut io::sink())?;
        }
        match code {
            500 | 503 => s.e500.fetch_add(1, Ordering::SeqCst),
            _ => s.e429.fetch_add(1, Ordering::SeqCst),
        };
        let mut c = client;
        write!(
            c,
            "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nRetry-After: 0\r\nConnection: close\r\n\r\n"
        )?;
        return c.flush();
    }

    let mut up = TcpStream::connect(upstream)?;
    let mut out = Vec::new();
    for h in &head {
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    up.write_all(&out)?;
    if chunked {
        copy_chunked(&mut reader, &mut up)?;
    } else {
        io::copy(&mut (&mut reader).take(length), &mut up)?;
    }
    up.flush()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let mut c = client;
    if matches!(action, Action::Cut) {
        s.cuts.fetch_add(1, Ordering::SeqCst);
        let _ = c.write_all(&response[..response.len() / 2]);
        let _ = c.shutdown(Shutdown::Both);
        return Ok(());
    }
    if let Some((pattern, pid)) = &f.kill_after
        && request_line.contains(pattern.as_str())
        && !s.killed.swap(true, Ordering::SeqCst)
    {
        // The registry has done the work; the client never hears of it.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let _ = c.shutdown(Shutdown::Both);
        return Ok(());
    }
    c.write_all(&response)?;
    c.flush()?;
    let _ = c.shutdown(Shutdown::Write);
    Ok(())
}

/// Copy a chunked body, framing included.
fn copy_chunked(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        r.read_line(&mut size_line)?;
        w.write_all(size_line.as_bytes())?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                r.read_line(&mut trailer)?;
                w.write_all(trailer.as_bytes())?;
                if trailer.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        io::copy(&mut r.take(size as u64 + 2), w)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_uniform_enough() {
        let a = Mutex::new(42);
        let b = Mutex::new(42);
        let xs: Vec<f64> = (0..1000).map(|_| draw(&a)).collect();
        let ys: Vec<f64> = (0..1000).map(|_| draw(&b)).collect();
        assert_eq!(xs, ys);
        let low = xs.iter().filter(|x| **x < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn keys_drop_queries_and_session_ids() {
        assert_eq!(
            key("PUT /v2/app/blobs/uploads/3f2a-uuid?_state=x&digest=sha256:1 HTTP/1.1"),
            "PUT /v2/app/blobs/uploads/"
        );
        assert_eq!(
            key("GET /v2/app/manifests/1 HTTP/1.1"),
            "GET /v2/app/manifests/1"
        );
    }

    #[test]
    fn faults_are_injected_and_never_twice_in_a_row() {
        // An upstream that answers every request with 200.
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in upstream.incoming().flatten() {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut c = c;
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
                );
            }
        });
        let proxy = FaultProxy::start(
            up_addr,
            Faults {
                error_500: 0.3,
                throttle_429: 0.2,
                cut: 0.2,
                seed: 7,
                ..Faults::default()
            },
        );
        let mut statuses = vec![];
        for _ in 0..60 {
            let mut c = TcpStream::connect(proxy.addr).unwrap();
            c.write_all(b"GET /v2/x HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap();
            let mut resp = Vec::new();
            let _ = c.read_to_end(&mut resp);
            let text = String::from_utf8_lossy(&resp).to_string();
            let ok = text.starts_with("HTTP/1.1 200") && text.ends_with("0123456789");
            statuses.push(ok);
        }
        let i = proxy.injected();
        assert!(i.error_500 > 0 && i.throttle_429 > 0 && i.cut > 0, "{i:?}");
        assert!(
            statuses.windows(2).all(|w| w[0] || w[1]),
            "two faults in a row: {statuses:?}"
        );
        assert_eq!(proxy.requests().len(), 60);
    }
}
