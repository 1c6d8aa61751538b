//! Registry credentials, as docker finds them.
//!
//! The files, in order (the first that has an entry for the registry wins):
//! 1. `--registry-auth-file` files: a docker `config.json`, a Kubernetes
//!    `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` key (the same format), or a
//!    legacy `kubernetes.io/dockercfg` `.dockercfg` key (the `auths` map alone). A directory
//!    stands for the Secret volume it is: its `.dockerconfigjson`, `config.json` or
//!    `.dockercfg`.
//! 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! Inside a file, docker's rules apply (through `docker_credential`): `credHelpers[host]`
//! runs `docker-credential-<helper> get`, then `auths[host]` (`auth` is base64 of
//! `user:password`, or `username`/`password`, or `identitytoken`), then `credsStore`. Docker Hub
//! is looked up as `https://index.docker.io/v1/`. No entry anywhere means an anonymous pull.
//!
//! A password or token lives in a [`Secret`], whose `Debug` and `Display` print `***`, and
//! every error coming back from a registry is passed through a [`Redactor`] that knows the
//! secret values, so neither a log line nor an error message can carry them.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;
use thiserror::Error;

/// Why credentials could not be read.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the credential helper for {registry} failed: {message}")]
    Helper { registry: String, message: String },
}

/// A secret value: shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for one registry, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
        from: String,
    },
    /// An `identitytoken` (an OAuth2 refresh token). Sent as the password of the `<token>`
    /// user to the token server, which is what registries that hand them out accept; the
    /// refresh-token POST grant is not implemented.
    IdentityToken {
        token: Secret,
        from: String,
    },
}

impl Credential {
    /// What `oci-client` sends.
    pub fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Credential::Anonymous => RegistryAuth::Anonymous,
            Credential::Basic {
                username, password, ..
            } => RegistryAuth::Basic(username.clone(), password.expose().to_string()),
            Credential::IdentityToken { token, .. } => {
                RegistryAuth::Basic("<token>".into(), token.expose().to_string())
            }
        }
    }

    /// Where the credential was found, for error messages.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Credential::Anonymous => None,
            Credential::Basic { from, .. } | Credential::IdentityToken { from, .. } => Some(from),
        }
    }

    /// The values that must never be shown: the password or token, and the `auth` forms that
    /// carry it (base64 of `user:password`, and `user:password` itself).
    pub fn redactor(&self) -> Redactor {
        let mut secrets = vec![];
        match self {
            Credential::Anonymous => {}
            Credential::Basic {
                username, password, ..
            } => {
                let pair = format!("{username}:{}", password.expose());
                secrets.push(base64::engine::general_purpose::STANDARD.encode(&pair));
                secrets.push(pair);
                secrets.push(password.expose().to_string());
            }
            Credential::IdentityToken { token, .. } => secrets.push(token.expose().to_string()),
        }
        secrets.retain(|s| !s.is_empty());
        Redactor { secrets }
    }
}

/// Removes known secret values from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// The files to look in, in order.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    files: Vec<PathBuf>,
}

impl AuthFiles {
    /// `explicit` first, then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub fn standard(explicit: &[PathBuf]) -> AuthFiles {
        let mut files: Vec<PathBuf> = explicit.iter().map(|p| resolve_dir(p)).collect();
        let docker_dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
        if let Some(dir) = docker_dir {
            files.push(dir.join("config.json"));
        }
        AuthFiles { files }
    }

    /// Exactly these files.
    pub fn only(files: Vec<PathBuf>) -> AuthFiles {
        AuthFiles {
            files: files.iter().map(|p| resolve_dir(p)).collect(),
        }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The credential for a registry host (`registry.example.com`, `127.0.0.1:5000`,
    /// `docker.io`). An explicit file that cannot be read is an error; a missing default file
    /// is not.
    pub fn lookup(&self, registry: &str) -> Result<Credential, AuthError> {
        let server = if registry == "docker.io" || registry == "index.docker.io" {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        for path in &self.files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(AuthError::File {
                        path: path.clone(),
                        message: e.to_string(),
                    });
                }
            };
            let bytes = normalize(&bytes).map_err(|message| AuthError::File {
                path: path.clone(),
                message,
            })?;
            let from = path.display().to_string();
            match docker_credential::get_credential_from_reader(bytes.as_slice(), server) {
                Ok(DockerCredential::UsernamePassword(username, password)) => {
                    return Ok(Credential::Basic {
                        username,
                        password: Secret::new(password),
                        from,
                    });
                }
                Ok(DockerCredential::IdentityToken(token)) => {
                    return Ok(Credential::IdentityToken {
                        token: Secret::new(token),
                        from,
                    });
                }
                Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
                Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                    // The helper's output is not shown: it may hold the very secret.
                    return Err(AuthError::Helper {
                        registry: registry.to_string(),
                        message: format!("{helper} get exited with an error"),
                    });
                }
                Err(
                    e @ (CredentialRetrievalError::HelperCommunicationError
                    | CredentialRetrievalError::MalformedHelperResponse),
                ) => {
                    return Err(AuthError::Helper {
                        registry: registry.to_string(),
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    return Err(AuthError::File {
                        path: path.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(Credential::Anonymous)
    }
}

/// A directory given as an auth file is a mounted Secret: use the file in it.
fn resolve_dir(path: &Path) -> PathBuf {
    if !path.is_dir() {
        return path.to_path_buf();
    }
    [".dockerconfigjson", "config.json", ".dockercfg"]
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| path.join(".dockerconfigjson"))
}

/// Turn a legacy `.dockercfg` (the `auths` map alone) into the config.json shape; leave
/// config.json and dockerconfigjson as they are.
fn normalize(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("expected a JSON object".into());
    };
    let modern = ["auths", "credHelpers", "credsStore"]
        .iter()
        .any(|k| object.contains_key(*k));
    if modern || object.is_empty() {
        return Ok(bytes.to_vec());
    }
    serde_json::to_vec(&serde_json::json!({ "auths": object })).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn config_json_auth_field_and_username_password() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}},"other.example":{{"username":"u2","password":"p2"}}}}}}"#,
                b64("alice:s3cret")
            ),
        );
        let files = AuthFiles::only(vec![f.clone()]);
        let c = files.lookup("reg.example:5000").unwrap();
        assert_eq!(
            c.to_registry_auth(),
            RegistryAuth::Basic("alice".into(), "s3cret".into())
        );
        assert_eq!(c.origin(), Some(f.display().to_string().as_str()));
        assert_eq!(
            files.lookup("other.example").unwrap().to_registry_auth(),
            RegistryAuth::Basic("u2".into(), "p2".into())
        );
        assert_eq!(
            files.lookup("nowhere.example").unwrap(),
            Credential::Anonymous
        );
    }

    #[test]
    fn kubernetes_secret_formats() {
        let dir = tempfile::tempdir().unwrap();
        // A mounted kubernetes.io/dockerconfigjson Secret volume.
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        write(
            &secret,
            ".dockerconfigjson",
            &format!(
                r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#,
                b64("bob:pw")
            ),
        );
        let c = AuthFiles::only(vec![secret]).lookup("r.example").unwrap();
        assert_eq!(
            c.to_registry_auth(),
            RegistryAuth::Basic("bob".into(), "pw".into())
        );
        // A legacy kubernetes.io/dockercfg: the auths map alone, Docker Hub by its v1 URL.
        let legacy = write(
            dir.path(),
            ".dockercfg",
            &format!(
                r#"{{"https://index.docker.io/v1/":{{"auth":"{}","email":"x@example.com"}}}}"#,
                b64("carol:pw3")
            ),
        );
        let c = AuthFiles::only(vec![legacy]).lookup("docker.io").unwrap();
        assert_eq!(
            c.to_registry_auth(),
            RegistryAuth::Basic("carol".into(), "pw3".into())
        );
    }

    #[test]
    fn the_first_file_with_an_entry_wins_and_missing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.json", r#"{"auths":{}}"#);
        let b = write(
            dir.path(),
            "b.json",
            r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#,
        );
        let files = AuthFiles::only(vec![dir.path().join("missing.json"), a, b]);
        assert!(matches!(
            files.lookup("r.example").unwrap(),
            Credential::Basic { .. }
        ));
    }

    #[test]
    fn secrets_never_print() {
        let c = Credential::Basic {
            username: "alice".into(),
            password: Secret::new("hunter2"),
            from: "f".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let r = c.redactor();
        let msg = format!("echo: hunter2, alice:hunter2, {}", b64("alice:hunter2"));
        let clean = r.redact(&msg);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(!clean.contains(&b64("alice:hunter2")), "{clean}");
    }

    #[test]
    fn a_malformed_explicit_file_is_an_error_that_shows_no_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "bad.json", "{\"auths\": hunter2");
        let e = AuthFiles::only(vec![f]).lookup("r.example").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
