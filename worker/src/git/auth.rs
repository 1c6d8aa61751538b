//! The credentials a Git remote gets.
//!
//! - **`--git-auth-dir DIR`**, what the operator mounts from `spec.source.git.secretRef`: a
//!   directory of files named as the keys of a Kubernetes Secret. For `http(s)`: `username` and
//!   `password` (a `kubernetes.io/basic-auth` Secret), or `token` (with `username`, default
//!   `x-access-token`). For ssh: `ssh-privatekey` and optionally `known_hosts` (a
//!   `kubernetes.io/ssh-auth` Secret). These are for the build context's repository only: a
//!   Dockerfile's `ADD <git-url>` on another host never gets them.
//! - **BuildKit's secrets**, given with `--secret`: `GIT_AUTH_HEADER.<host>`,
//!   `GIT_AUTH_TOKEN.<host>`, `GIT_AUTH_HEADER` and `GIT_AUTH_TOKEN`, the first that exists
//!   wins (`source/git`'s `authSecretNames`). A header is sent as `Authorization: <value>`; a
//!   token as basic credentials `x-access-token:<token>`. As in BuildKit, the names without a
//!   host apply to every `http(s)` remote of the build, `ADD` sources included.
//! - **ssh**: the key of `--git-auth-dir`, else the `default` id of `--ssh` (keys, or an agent
//!   socket), served to the `ssh` program by Kiln's own agent. Host keys are always checked,
//!   against the auth directory's `known_hosts`, else `~/.ssh/known_hosts` and
//!   `/etc/ssh/ssh_known_hosts`.
//!
//! Credentials in an `http(s)` URL itself (`https://user:password@host/…`) come first.
//!
//! `http(s)` credentials are sent with the first request, as BuildKit sends its secrets, and
//! only to the remote's own host: `gix` follows no redirect once a request carries headers.
//! Trailing line ends of a file or secret are dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::{GitError, GitRef, Scheme};
use crate::mounts::ssh::SshSource;
use crate::solve::SecretSource;

/// A mounted Secret for the context's repository.
#[derive(Debug, Clone)]
pub struct AuthDir {
    pub path: PathBuf,
    /// The repository it is for: only a remote with this scheme and host gets it.
    pub scheme: Scheme,
    pub host: String,
}

/// Every source of Git credentials a build has.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    pub dir: Option<AuthDir>,
    /// The build's secrets, where `GIT_AUTH_TOKEN` and `GIT_AUTH_HEADER` are looked up.
    pub secrets: HashMap<String, SecretSource>,
    /// `--ssh default=…`.
    pub ssh: Option<SshSource>,
    /// The home directory whose `.ssh/known_hosts` is read (default `$HOME`).
    pub home: Option<PathBuf>,
}

/// The `Authorization` header for an `http(s)` remote, and where it came from (for messages).
pub(super) struct HttpAuth {
    pub header: String,
    pub from: String,
}

/// What the `ssh` program gets.
pub(super) struct SshAuth {
    pub key: Option<SshSource>,
    pub known_hosts: Vec<PathBuf>,
}

impl GitAuth {
    fn dir_for(&self, git: &GitRef) -> Option<&AuthDir> {
        self.dir
            .as_ref()
            .filter(|d| d.scheme == git.scheme && d.host.eq_ignore_ascii_case(&git.host))
    }

    /// The header an `http(s)` remote gets, if any.
    pub(super) fn http(&self, git: &GitRef) -> Result<Option<HttpAuth>, GitError> {
        if !matches!(git.scheme, Scheme::Http | Scheme::Https) {
            return Ok(None);
        }
        if let (_, Some((user, password))) = git.without_userinfo() {
            return Ok(Some(HttpAuth {
                header: basic(&user, &password),
                from: "the URL's user information".into(),
            }));
        }
        if let Some(dir) = self.dir_for(git) {
            let read = |key: &str| read_value(&dir.path, key);
            let user = read("username")?;
            let secret = match read("password")? {
                Some(p) => Some(p),
                None => read("token")?,
            };
            if let Some(secret) = secret {
                let user = user.unwrap_or_else(|| "x-access-token".into());
                return Ok(Some(HttpAuth {
                    header: basic(&user, &secret),
                    from: format!("--git-auth-dir {}", dir.path.display()),
                }));
            }
        }
        for (name, token) in [
            (format!("GIT_AUTH_HEADER.{}", git.host), false),
            (format!("GIT_AUTH_TOKEN.{}", git.host), true),
            ("GIT_AUTH_HEADER".to_string(), false),
            ("GIT_AUTH_TOKEN".to_string(), true),
        ] {
            let Some(source) = self.secrets.get(&name) else {
                continue;
            };
            let value = read_secret(source).map_err(|message| GitError::AuthDir {
                path: PathBuf::from(format!("(the secret {name})")),
                message,
            })?;
            let header = if token {
                basic("x-access-token", &value)
            } else {
                value
            };
            return Ok(Some(HttpAuth {
                header,
                from: format!("the secret {name}"),
            }));
        }
        Ok(None)
    }

    /// The key and known hosts an ssh remote gets.
    pub(super) fn ssh(&self, git: &GitRef) -> Result<SshAuth, GitError> {
        let dir = self.dir_for(git);
        let key = match dir.map(|d| d.path.join("ssh-privatekey")) {
            Some(k) if k.exists() => Some(SshSource::Keys(vec![k])),
            _ => self.ssh.clone(),
        };
        let known_hosts = match dir.map(|d| d.path.join("known_hosts")) {
            Some(k) if k.exists() => vec![k],
            _ => {
                let home = self
                    .home
                    .clone()
                    .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
                let mut files: Vec<PathBuf> = home
                    .map(|h| h.join(".ssh/known_hosts"))
                    .into_iter()
                    .collect();
                files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
                files
            }
        };
        Ok(SshAuth { key, known_hosts })
    }

    /// Every credential value this build may send, for redacting messages: the auth
    /// directory's files and the Git secrets (encoded headers included).
    pub fn values(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            let user = read_value(&dir.path, "username").ok().flatten();
            for key in ["password", "token"] {
                if let Ok(Some(v)) = read_value(&dir.path, key) {
                    out.push(basic(user.as_deref().unwrap_or("x-access-token"), &v).into_bytes());
                    out.push(v.into_bytes());
                }
            }
        }
        for (name, source) in &self.secrets {
            if name.starts_with("GIT_AUTH_")
                && let Ok(v) = read_secret(source)
            {
                out.push(basic("x-access-token", &v).into_bytes());
                out.push(v.into_bytes());
            }
        }
        out
    }
}

/// `Basic base64(user:secret)`.
fn basic(user: &str, secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {encoded}")
}

fn trim_line_end(s: String) -> String {
    s.trim_end_matches(['\r', '\n']).to_string()
}

/// A key of the auth directory; `None` when the Secret does not have it.
fn read_value(dir: &Path, key: &str) -> Result<Option<String>, GitError> {
    match std::fs::read(dir.join(key)) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(|s| Some(trim_line_end(s)))
            .map_err(|_| GitError::AuthDir {
                path: dir.to_path_buf(),
                message: format!("{key} is not UTF-8 text"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(GitError::AuthDir {
            path: dir.to_path_buf(),
            message: format!("reading {key}: {e}"),
        }),
    }
}

fn read_secret(source: &SecretSource) -> Result<String, String> {
    let bytes = match source {
        SecretSource::File(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| format!("the variable {var} is not set"))?
            .into_bytes(),
    };
    String::from_utf8(bytes)
        .map(trim_line_end)
        .map_err(|_| "not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str) -> GitRef {
        GitRef::parse(url, true).unwrap().unwrap()
    }

    #[test]
    fn the_auth_dir_is_for_its_own_host_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("username"), "alice\n").unwrap();
        std::fs::write(d.path().join("password"), "pw\n").unwrap();
        let auth = GitAuth {
            dir: Some(AuthDir {
                path: d.path().to_path_buf(),
                scheme: Scheme::Https,
                host: "git.example".into(),
            }),
            ..GitAuth::default()
        };
        let h = auth
            .http(&git("https://git.example/r.git"))
            .unwrap()
            .unwrap();
        assert_eq!(h.header, basic("alice", "pw"));
        assert!(
            auth.http(&git("https://evil.example/r.git"))
                .unwrap()
                .is_none()
        );
        assert!(
            auth.http(&git("http://git.example/r.git"))
                .unwrap()
                .is_none()
        );
        assert!(auth.values().iter().any(|v| v.as_slice() == b"pw"));
    }

    #[test]
    fn tokens_and_buildkit_secrets() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("token"), "t0k").unwrap();
        let host_tok = d.path().join("host-token");
        std::fs::write(&host_tok, "per-host\n").unwrap();
        let auth = GitAuth {
            dir: Some(AuthDir {
                path: d.path().to_path_buf(),
                scheme: Scheme::Https,
                host: "a.example".into(),
            }),
            secrets: HashMap::from([
                (
                    "GIT_AUTH_TOKEN.b.example".to_string(),
                    SecretSource::File(host_tok),
                ),
                (
                    "GIT_AUTH_HEADER".to_string(),
                    SecretSource::Env("KILN_TEST_NO_SUCH_VARIABLE".into()),
                ),
            ]),
            ..GitAuth::default()
        };
        let a = auth.http(&git("https://a.example/r.git")).unwrap().unwrap();
        assert_eq!(a.header, basic("x-access-token", "t0k"));
        let b = auth.http(&git("https://b.example/r.git")).unwrap().unwrap();
        assert_eq!(b.header, basic("x-access-token", "per-host"));
        assert_eq!(b.from, "the secret GIT_AUTH_TOKEN.b.example");
        // The unscoped header applies to other hosts; this one cannot be read.
        assert!(auth.http(&git("https://c.example/r.git")).is_err());
        assert!(auth.http(&git("git@a.example:r.git")).unwrap().is_none());
    }

    #[test]
    fn ssh_keys_and_known_hosts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ssh-privatekey"), "k").unwrap();
        std::fs::write(d.path().join("known_hosts"), "h").unwrap();
        let auth = GitAuth {
            dir: Some(AuthDir {
                path: d.path().to_path_buf(),
                scheme: Scheme::Ssh,
                host: "git.example".into(),
            }),
            ssh: Some(SshSource::Agent("/agent".into())),
            home: Some("/home/u".into()),
            ..GitAuth::default()
        };
        let s = auth.ssh(&git("git@git.example:r.git")).unwrap();
        assert_eq!(
            s.key,
            Some(SshSource::Keys(vec![d.path().join("ssh-privatekey")]))
        );
        assert_eq!(s.known_hosts, vec![d.path().join("known_hosts")]);
        let other = auth.ssh(&git("git@other.example:r.git")).unwrap();
        assert_eq!(other.key, Some(SshSource::Agent("/agent".into())));
        assert_eq!(
            other.known_hosts,
            vec![
                PathBuf::from("/home/u/.ssh/known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts")
            ]
        );
    }
}
