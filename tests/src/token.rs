//! A token server for registry tests: the other half of the Docker registry token
//! authentication flow.
//!
//! A registry configured with `auth: token` answers an unauthenticated request with
//! `401` and `WWW-Authenticate: Bearer realm="<this server>",service="...",scope="..."`. The
//! client then asks this server for a token (`GET /token?service=...&scope=...`), with basic
//! auth when it has credentials, and retries with `Authorization: Bearer <token>`. The token is
//! a JWT signed with RS256 (by the `openssl` CLI), carrying the certificate in its `x5c` header;
//! the registry trusts that certificate through its `rootcertbundle`.
//!
//! Known users get every action they ask for; anyone else gets a token granting nothing, which
//! the registry then refuses. Every token request is recorded.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

pub const SERVICE: &str = "kiln-test-registry";
pub const ISSUER: &str = "kiln-test-token-issuer";

/// A running token server.
pub struct TokenServer {
    pub addr: SocketAddr,
    /// The signing certificate (PEM), for the registry's `rootcertbundle`.
    pub cert: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Start on a free loopback port, keeping its key and certificate in `dir`.
    pub fn start(dir: &Path, users: Vec<(String, String)>) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=kiln test token issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (requests.clone(), stop.clone());
        let signer = Signer {
            key,
            x5c: STANDARD.encode(der),
        };
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = serve(c, &signer, &users, &r);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        TokenServer {
            addr,
            cert,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Signer {
    key: PathBuf,
    x5c: String,
}

impl Signer {
    fn jwt(&self, subject: &str, access: &[serde_json::Value]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{subject}"),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let signature = child.wait_with_output().unwrap().stdout;
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access a scope asks for: `repository:NAME:ACTIONS`.
fn access(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(serde_json::json!({
        "type": kind,
        "name": name,
        "actions": actions.split(',').collect::<Vec<_>>(),
    }))
}

fn serve(
    client: std::net::TcpStream,
    signer: &Signer,
    users: &[(String, String)],
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = vec![];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let request_line = head.first().cloned().unwrap_or_default();
    requests.lock().unwrap().push(request_line.clone());
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let basic = head.iter().skip(1).find_map(|h| {
        let (k, v) = h.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let encoded = v.trim().strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
        let (u, p) = decoded.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    });
    let mut c = client;
    let (status, body) = match &basic {
        Some((u, p)) if !users.iter().any(|(uu, pp)| uu == u && pp == p) => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string(),
        ),
        _ => {
            let granted: Vec<serde_json::Value> = match &basic {
                Some(_) => scopes.iter().filter_map(|s| access(s)).collect(),
                None => vec![],
            };
            let subject = basic.as_ref().map_or("", |(u, _)| u.as_str());
            let token = signer.jwt(subject, &granted);
            (
                "200 OK",
                serde_json::json!({"token": token, "access_token": token, "expires_in": 600})
                    .to_string(),
            )
        }
    };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_percent_encoding() {
        assert_eq!(
            percent_decode("repository%3Akiln%2Fapp%3Apull%2Cpush"),
            "repository:kiln/app:pull,push"
        );
        assert_eq!(
            access("repository:kiln/app:pull,push").unwrap(),
            serde_json::json!({"type": "repository", "name": "kiln/app", "actions": ["pull", "push"]})
        );
    }
}
