//! SSH agents for `RUN --mount=type=ssh`.
//!
//! A step's ssh mount is a Unix socket speaking the ssh-agent protocol. Kiln serves it itself,
//! so the socket can have the mount's `mode`, `uid` and `gid` and live only as long as the step:
//! - with keys (`--ssh ID=KEYFILE[,KEYFILE...]`, how the worker pod passes Kubernetes Secrets),
//!   an in-process agent holds them and signs; the private keys never leave this process;
//! - with an existing agent (`--ssh default=$SSH_AUTH_SOCK`), each connection is forwarded to it.
//!
//! Signing supports Ed25519, ECDSA (P-256, P-384, P-521) and RSA (SHA-512) keys in OpenSSH
//! format.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ssh_agent_lib::agent::{Session, listen};
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

/// A running agent socket; stopped and removed when dropped.
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
    }
}

/// Serve `source` on a new socket at `path`, with this mode and owner.
pub fn serve(
    source: &SshSource,
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<AgentSocket, SshError> {
    let sock_err = |e: std::io::Error| SshError::Socket {
        path: path.to_path_buf(),
        source: e,
    };
    let rt = crate::fetch::runtime();
    let _guard = rt.enter();
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(sock_err)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(sock_err)?;
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
            let upstream = upstream.clone();
            rt.spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::UnixStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
        }
    };
    Ok(AgentSocket {
        path: path.to_path_buf(),
        task,
    })
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
        let sock = d.path().join("agent.sock");
        let agent = serve(&SshSource::Keys(vec![ed.clone(), rsa]), &sock, 0o600, 0, 0).unwrap();
        let listed = ssh_add_list(&sock);
        assert!(
            listed.contains("kiln-test-ed25519") && listed.contains("kiln-test-rsa"),
            "{listed}"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o777, 0o600);

        // A second socket forwarding to the first one.
        let fwd = d.path().join("fwd.sock");
        let forward = serve(&SshSource::Agent(sock.clone()), &fwd, 0o660, 0, 0).unwrap();
        assert!(ssh_add_list(&fwd).contains("kiln-test-ed25519"));
        drop(forward);
        drop(agent);
        assert!(
            !sock.exists() && !fwd.exists(),
            "sockets are removed with their agents"
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
