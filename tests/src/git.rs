//! Git servers on loopback for the git context tests, each stopped when dropped:
//!
//! - [`HttpServer`]: a small HTTP/1.1 server that runs Debian's `git http-backend` as a CGI
//!   program for `/<repo>.git/…` paths (with optional basic auth, as a private repository
//!   wants), and serves the files of a directory for every other path (URL contexts). It
//!   records each request's method, path and `Authorization` header.
//! - [`GitDaemon`]: `git daemon` for `git://`.
//! - [`Sshd`]: OpenSSH's `sshd` on a loopback port with a host key and one authorized key, for
//!   `ssh://` and `user@host:path` remotes.
//!
//! [`Repo`] makes repositories with the `git` program: commits, branches, tags, pull refs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::registry::{free_port, wait_listening};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make test installs git and openssh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with a work tree, made and changed with the `git` program.
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    /// A new repository at `dir` whose first branch is `main`.
    pub fn init(dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(dir));
        Repo {
            dir: dir.to_path_buf(),
        }
    }

    pub fn git(&self, args: &[&str]) -> String {
        run(Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args([
                "-c",
                "user.name=Kiln Test",
                "-c",
                "user.email=test@kiln.invalid",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
            ])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z"))
    }

    /// Write files (`path`, content; a content starting with `->` makes a symlink to the rest),
    /// commit everything, and return the commit's hash.
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (path, content) in files {
            let p = self.dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&p);
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
                None => std::fs::write(&p, content).unwrap(),
            }
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// A bare clone at `dest` (what a server serves), with every ref of this one.
    pub fn publish(&self, dest: &Path) {
        let _ = std::fs::remove_dir_all(dest);
        run(Command::new("git")
            .args(["clone", "-q", "--mirror"])
            .arg(&self.dir)
            .arg(dest));
        run(Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["config", "http.receivepack", "false"]));
    }
}

/// One request the HTTP server answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub status: u16,
}

/// A git smart-HTTP and file server on loopback.
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serve the bare repositories under `root` (`/<name>.git/…`) through `git http-backend`,
    /// and the other files of `root` as they are. With `user`, every request needs basic auth
    /// with that user and password.
    pub fn start(root: &Path, user: Option<(&str, &str)>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = user.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let root = root.to_path_buf();
        let (log, stopped) = (requests.clone(), stop.clone());
        let exec_path = run(Command::new("git").arg("--exec-path"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (root, log, expected, exec_path) = (
                    root.clone(),
                    log.clone(),
                    expected.clone(),
                    exec_path.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &log, expected.as_deref(), &exec_path);
                });
            }
        });
        HttpServer {
            port,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// One request on one connection (`Connection: close`).
fn serve(
    mut stream: TcpStream,
    root: &Path,
    log: &Mutex<Vec<Request>>,
    expected: Option<&str>,
    exec_path: &str,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let authorization = header("authorization");
    let record = |status: u16| {
        log.lock().unwrap().push(Request {
            method: method.clone(),
            path: path.to_string(),
            authorization: authorization.clone(),
            status,
        })
    };
    if let Some(expected) = expected
        && authorization.as_deref() != Some(expected)
    {
        record(401);
        respond(
            &mut stream,
            401,
            &[("WWW-Authenticate", "Basic realm=\"kiln-test\"".into())],
            b"authentication required\n",
        );
        return Ok(());
    }
    let git_request = path.contains(".git/")
        || path.ends_with("/info/refs")
        || path.ends_with("/git-upload-pack")
        || path.ends_with("/git-receive-pack");
    if git_request {
        let mut cmd = Command::new(format!("{exec_path}/git-http-backend"));
        cmd.env_clear()
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("REMOTE_USER", "kiln")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(p) = header("git-protocol") {
            cmd.env("GIT_PROTOCOL", p);
        }
        let mut child = cmd.spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output()?;
        let _ = writer.join();
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| {
                out.stdout
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| (i, 2))
            });
        let Some((at, sep)) = split else {
            record(500);
            respond(&mut stream, 500, &[], b"bad CGI output\n");
            return Ok(());
        };
        let head = String::from_utf8_lossy(&out.stdout[..at]).into_owned();
        let mut status = 200;
        let mut cgi_headers = Vec::new();
        for l in head.lines() {
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("status") {
                    status = v
                        .trim()
                        .split(' ')
                        .next()
                        .unwrap_or("200")
                        .parse()
                        .unwrap_or(200);
                } else {
                    cgi_headers.push((k.trim(), v.trim().to_string()));
                }
            }
        }
        record(status);
        respond(&mut stream, status, &cgi_headers, &out.stdout[at + sep..]);
        return Ok(());
    }
    let file = root.join(path.trim_start_matches('/'));
    match std::fs::read(&file) {
        Ok(content) if !path.contains("..") => {
            record(200);
            respond(&mut stream, 200, &[], &content);
        }
        _ => {
            record(404);
            respond(&mut stream, 404, &[], b"not found\n");
        }
    }
    Ok(())
}

/// `git daemon` serving the bare repositories under a directory on `git://127.0.0.1:PORT/`.
pub struct GitDaemon {
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        assert!(
            wait_listening(
                format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_secs(10)
            ),
            "git daemon did not listen"
        );
        GitDaemon { port, child }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenSSH's `sshd` on a loopback port, letting in one key as `root`.
pub struct Sshd {
    pub port: u16,
    /// The client's private key (an unencrypted ed25519 key, mode 0600).
    pub key: PathBuf,
    /// A known_hosts line for the server (`[127.0.0.1]:PORT ssh-ed25519 …`).
    pub known_hosts: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Start an sshd that lets `user` (an existing account) in with a new client key.
    pub fn start(user: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keygen = |path: &Path| {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
                .arg(path));
        };
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nPidFile {d}/sshd.pid\n\
             LogLevel ERROR\nSetEnv GIT_CONFIG_NOSYSTEM=1\nAcceptEnv GIT_PROTOCOL\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts (openssh-server)");
        assert!(
            wait_listening(
                format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_secs(10)
            ),
            "sshd did not listen"
        );
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let known_hosts = format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        Sshd {
            port,
            key: d.join("client_key"),
            known_hosts,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
