//! SSH agents for `RUN --mount=type=ssh`.
//!
//! A step's ssh mount is a Unix socket speaking the ssh-agent protocol. Kiln serves it itself,
//! so the socket can have the mount's `mode`, `uid` and `gid` and live only as long as the step:
//! - with keys (`--ssh ID=KEYFILE[,KEYFILE...]`, how the worker pod passes Kubernetes Secrets),
//!   an in-process agent holds them and signs; the private keys never leave this process;
//! - with an existing agent (`--ssh default=$SSH_AUTH_SOCK`), Kiln speaks the protocol to the
//!   step and passes on only the two requests a build needs, to list identities and to sign;
//!   the step cannot add, remove or lock the user's keys, as with BuildKit's read-only agent.
//!
//! The socket is created in a directory of its own with mode 0700, owned by the engine: only
//! the engine reaches it by path, and the step through the bind mount the sandbox makes of it.
//! Its own mode and owner are the mount's (`mode`, `uid`, `gid`), so that the step's user can
//! connect.
//!
//! Signing supports Ed25519, ECDSA (P-256, P-384, P-521) and RSA (SHA-512) keys in OpenSSH
//! format.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ssh_agent_lib::agent::{Session, listen};
use ssh_agent_lib::client::Client;
use ssh_agent_lib::error::AgentError;
use ssh_agent_lib::proto::{Identity, SignRequest, signature};
use ssh_key::{PrivateKey, Signature, private::KeypairData};
use thiserror::Error;

/// Why an agent could not be served.
#[derive(Debug, Error)]
pub enum SshError {
    #[error("ssh key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("ssh agent socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where an ssh id's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// Private key files, served by Kiln's own agent.
    Keys(Vec<PathBuf>),
    /// An agent socket to forward to.
    Agent(PathBuf),
}

/// Read an OpenSSH private key. Passphrase-protected keys are refused: a build has no one to
/// type the passphrase.
pub fn read_key(path: &Path) -> Result<PrivateKey, SshError> {
    let err = |message: String| SshError::Key {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| err(format!("not an OpenSSH private key ({e})")))?;
    if key.is_encrypted() {
        return Err(err("the key is protected by a passphrase".into()));
    }
    Ok(key)
}

#[derive(Clone)]
struct KeyAgent {
    keys: std::sync::Arc<Vec<PrivateKey>>,
}

#[ssh_agent_lib::async_trait]
impl Session for KeyAgent {
    async fn request_identities(&mut self) -> Result<Vec<Identity>, AgentError> {
        Ok(self
            .keys
            .iter()
            .map(|k| Identity {
                credential: k.public_key().key_data().clone().into(),
                comment: k.comment().to_string(),
            })
            .collect())
    }

    async fn sign(&mut self, request: SignRequest) -> Result<Signature, AgentError> {
        let wanted = request.credential.key_data();
        let key = self
            .keys
            .iter()
            .find(|k| k.public_key().key_data() == wanted)
            .ok_or(AgentError::Failure)?;
        // RSA keys sign with SHA-512, which OpenSSH clients ask for first; the deprecated SHA-1
        // `ssh-rsa` and a SHA-256-only request are refused, and the client moves on.
        if matches!(key.key_data(), KeypairData::Rsa(_))
            && request.flags & signature::RSA_SHA2_512 == 0
        {
            return Err(AgentError::Failure);
        }
        ::signature::Signer::try_sign(key, &request.data).map_err(AgentError::other)
    }
}

/// A step's view of a forwarded agent: the identities and signatures of the agent at
/// `upstream`, one upstream connection per step connection, and nothing else (every other
/// request gets the protocol's failure answer, the trait's default).
struct ReadOnlyForward {
    upstream: PathBuf,
    client: Option<Client<tokio::net::UnixStream>>,
}

impl Clone for ReadOnlyForward {
    /// A new session: its own upstream connection, opened on its first request.
    fn clone(&self) -> Self {
        ReadOnlyForward {
            upstream: self.upstream.clone(),
            client: None,
        }
    }
}

impl ReadOnlyForward {
    async fn upstream(&mut self) -> Result<&mut Client<tokio::net::UnixStream>, AgentError> {
        if self.client.is_none() {
            let stream = tokio::net::UnixStream::connect(&self.upstream).await?;
            self.client = Some(Client::new(stream));
        }
        self.client.as_mut().ok_or(AgentError::Failure)
    }
}

#[ssh_agent_lib::async_trait]
impl Session for ReadOnlyForward {
    async fn request_identities(&mut self) -> Result<Vec<Identity>, AgentError> {
        self.upstream().await?.request_identities().await
    }

    async fn sign(&mut self, request: SignRequest) -> Result<Signature, AgentError> {
        self.upstream().await?.sign(request).await
    }
}

/// A running agent socket; stopped and removed, with its directory, when dropped.
pub struct AgentSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AgentSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The name of the socket in the directory [`serve`] creates.
const SOCKET: &str = "agent.sock";

/// Serve `source` on a new socket in `dir` (created, mode 0700; it must not exist), with this
/// mode and owner.
pub fn serve(
    source: &SshSource,
    dir: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<AgentSocket, SshError> {
    let path = dir.join(SOCKET);
    let sock_err = |e: std::io::Error| SshError::Socket {
        path: path.clone(),
        source: e,
    };
    let rt = crate::fetch::runtime();
    let _guard = rt.enter();
    {
        use std::os::unix::fs::DirBuilderExt;
        // Not recursive: a directory that already exists (someone else's) is an error.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(sock_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(sock_err)?;
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(sock_err)?;
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(sock_err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(sock_err)?;
    let task = match source {
        SshSource::Keys(files) => {
            let keys = files
                .iter()
                .map(|f| read_key(f))
                .collect::<Result<Vec<_>, _>>()?;
            let agent = KeyAgent {
                keys: std::sync::Arc::new(keys),
            };
            rt.spawn(async move {
                let _ = listen(listener, agent).await;
            })
        }
        SshSource::Agent(upstream) => {
            let agent = ReadOnlyForward {
                upstream: upstream.clone(),
                client: None,
            };
            rt.spawn(async move {
                let _ = listen(listener, agent).await;
            })
        }
    };
    Ok(AgentSocket { path, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, kind: &str) -> PathBuf {
        let path = dir.join(format!("id_{kind}"));
        let status = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                &format!("kiln-test-{kind}"),
                "-f",
            ])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => path,
            _ => panic!("ssh-keygen is needed (openssh-client); make test installs it"),
        }
    }

    fn ssh_add_list(sock: &Path) -> String {
        let out = std::process::Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", sock)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn serves_keys_that_ssh_add_lists_and_forwards_an_agent() {
        let d = tempfile::tempdir().unwrap();
        let ed = keygen(d.path(), "ed25519");
        let rsa = keygen(d.path(), "rsa");
        let agent = serve(
            &SshSource::Keys(vec![ed.clone(), rsa]),
            &d.path().join("agent"),
            0o600,
            0,
            0,
        )
        .unwrap();
        let sock = agent.path().to_path_buf();
        let listed = ssh_add_list(&sock);
        assert!(
            listed.contains("kiln-test-ed25519") && listed.contains("kiln-test-rsa"),
            "{listed}"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o777, 0o600);
        let dir = std::fs::metadata(sock.parent().unwrap()).unwrap();
        assert_eq!(
            dir.mode() & 0o777,
            0o700,
            "only the engine reaches the socket"
        );

        // A second socket forwarding to the first one.
        let forward = serve(
            &SshSource::Agent(sock.clone()),
            &d.path().join("fwd"),
            0o660,
            0,
            0,
        )
        .unwrap();
        let fwd = forward.path().to_path_buf();
        assert!(ssh_add_list(&fwd).contains("kiln-test-ed25519"));
        // It passes on listing and signing, and nothing else.
        let data = d.path().join("data");
        std::fs::write(&data, b"signed through the forward").unwrap();
        let signed = std::process::Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", "file", "-f"])
            .arg(ed.with_extension("pub"))
            .arg(&data)
            .env("SSH_AUTH_SOCK", &fwd)
            .output()
            .unwrap();
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
        assert!(data.with_extension("sig").exists());
        let removed = std::process::Command::new("ssh-add")
            .arg("-D")
            .env("SSH_AUTH_SOCK", &fwd)
            .output()
            .unwrap();
        assert!(!removed.status.success());
        assert!(ssh_add_list(&sock).contains("kiln-test-ed25519"));
        assert!(
            serve(
                &SshSource::Agent(sock.clone()),
                &d.path().join("fwd"),
                0o600,
                0,
                0
            )
            .is_err(),
            "an existing directory is not reused"
        );
        drop(forward);
        drop(agent);
        assert!(
            !sock.exists() && !fwd.exists() && !d.path().join("fwd").exists(),
            "sockets and their directories are removed with their agents"
        );
    }

    #[test]
    fn passphrase_keys_and_garbage_are_refused_clearly() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("locked");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success());
        let e = read_key(&path).unwrap_err().to_string();
        assert!(e.contains("passphrase"), "{e}");
        assert!(!e.contains("secret-pass"));
        std::fs::write(d.path().join("junk"), "not a key").unwrap();
        assert!(
            read_key(&d.path().join("junk"))
                .unwrap_err()
                .to_string()
                .contains("not an OpenSSH private key")
        );
    }
}
