//! A real registry for tests: Debian's `docker-registry` (the CNCF Distribution registry) on a
//! free loopback port, with its own storage directory and a generated config. It can serve plain
//! HTTP or TLS (a CA and a server certificate made with `openssl`), with or without htpasswd
//! basic auth (bcrypt entries made with `htpasswd -B`). It is killed when dropped, panicking
//! test or not.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::token::{ISSUER, SERVICE, TokenServer};

/// How the registry is set up.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub tls: bool,
    /// Users: (name, password). With `token` off they are htpasswd (basic auth) users.
    pub users: Vec<(String, String)>,
    /// Bearer-token authentication: a [`TokenServer`] issues the tokens and knows the users.
    pub token: bool,
}

/// A running registry.
pub struct Registry {
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The CA that signed the server certificate, when TLS is on.
    pub ca: Option<PathBuf>,
    config: Config,
    child: Option<Child>,
    /// The token server, when the registry uses token auth.
    pub token: Option<TokenServer>,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make test installs the packages)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loopback port that nothing listens on right now.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::from([127, 0, 0, 1]))
}

/// A port of `ip` that nothing listens on right now.
pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An IPv4 address of this machine outside `127.0.0.0/8` (the first global one `ip` lists),
/// for a registry that must not count as a loopback one; `None` on a machine without one.
pub fn non_loopback_address() -> Option<IpAddr> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        let ip: IpAddr = cidr.split('/').next()?.parse().ok()?;
        (!ip.is_loopback()).then_some(ip)
    })
}

/// Wait until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Registry {
        Registry::start(Config::default())
    }

    pub fn start(config: Config) -> Registry {
        Registry::start_on(config, IpAddr::from([127, 0, 0, 1]))
    }

    /// A registry listening on `ip` (its TLS certificate names that address too), such as
    /// `::1` or a non-loopback address of this machine ([`non_loopback_address`]).
    pub fn start_on(config: Config, ip: IpAddr) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .unwrap();
        let addr = SocketAddr::new(ip, free_port_on(ip));
        let ca = config.tls.then(|| make_certs(dir.path(), ip));
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \"{addr}\"\n",
            dir.path().join("storage").display()
        );
        if config.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
        }
        let token = config
            .token
            .then(|| TokenServer::start(dir.path(), config.users.clone()));
        if let Some(t) = &token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                t.realm(),
                t.cert.display()
            ));
        } else if !config.users.is_empty() {
            let mut htpasswd = String::new();
            for (user, password) in &config.users {
                let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                htpasswd.push_str(String::from_utf8_lossy(&out.stdout).trim());
                htpasswd.push('\n');
            }
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
        let mut r = Registry {
            dir,
            addr,
            ca,
            config,
            child: None,
            token,
        };
        r.restart();
        r
    }

    /// Start (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts (make test installs it)");
        self.child = Some(child);
        assert!(
            wait_listening(self.addr, Duration::from_secs(15)),
            "the registry did not start listening on {}:\n{}",
            self.addr,
            self.log()
        );
    }

    /// Kill the registry at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ADDRESS:PORT` (`127.0.0.1:5000`, `[::1]:5000`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn is_tls(&self) -> bool {
        self.config.tls
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn repo_dir(&self, repository: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repository)
    }

    /// Whether the registry's storage has a tag, read from disk (works while it is down).
    pub fn has_tag(&self, repository: &str, tag: &str) -> bool {
        self.repo_dir(repository)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link")
            .exists()
    }

    /// How many manifest revisions a repository holds, read from disk.
    pub fn manifest_count(&self, repository: &str) -> usize {
        std::fs::read_dir(
            self.repo_dir(repository)
                .join("_manifests/revisions/sha256"),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    }

    /// The `skopeo` flags that reach this registry (TLS trust or plain HTTP, credentials).
    pub fn skopeo_flags(&self, prefix: &str, creds: Option<(&str, &str)>) -> Vec<String> {
        let mut f = vec![];
        if self.config.tls {
            let certs = self.dir.path().join("skopeo-certs");
            std::fs::create_dir_all(&certs).unwrap();
            std::fs::copy(self.ca.as_ref().unwrap(), certs.join("ca.crt")).unwrap();
            f.push(format!("--{prefix}cert-dir={}", certs.display()));
        } else {
            f.push(format!("--{prefix}tls-verify=false"));
        }
        if let Some((u, p)) = creds {
            f.push(format!("--{prefix}creds={u}:{p}"));
        }
        f
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for 127.0.0.1, `localhost` and `ip`, signed by it; returns
/// the CA's path.
fn make_certs(dir: &Path, ip: IpAddr) -> PathBuf {
    let p = |n: &str| dir.join(n).display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kiln test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:127.0.0.1,IP:{ip},DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.crt"),
    ]));
    dir.join("ca.crt")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_plain_registry_answers_and_stops_on_drop() {
        let r = Registry::plain();
        let addr = r.addr;
        assert!(get(addr, "/v2/").starts_with("HTTP/1.0 200"), "{}", r.log());
        drop(r);
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn an_auth_registry_asks_for_basic_credentials() {
        let r = Registry::start(Config {
            users: vec![("u".into(), "p".into())],
            ..Config::default()
        });
        let resp = get(r.addr, "/v2/");
        assert!(resp.starts_with("HTTP/1.0 401"), "{resp}");
        assert!(resp.contains("Basic realm=\"kiln-test\""), "{resp}");
    }

    #[test]
    fn a_token_registry_sends_a_bearer_challenge() {
        let r = Registry::start(Config {
            users: vec![("u".into(), "p".into())],
            token: true,
            ..Config::default()
        });
        let resp = get(r.addr, "/v2/");
        assert!(resp.starts_with("HTTP/1.0 401"), "{resp}");
        let realm = r.token.as_ref().unwrap().realm();
        assert!(
            resp.contains(&format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"")),
            "{resp}"
        );
    }

    #[test]
    fn a_tls_registry_is_trusted_through_its_ca() {
        let r = Registry::start(Config {
            tls: true,
            ..Config::default()
        });
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &r.host(),
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(r.ca.as_ref().unwrap())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    }
}
