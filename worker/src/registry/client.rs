//! One `oci-client` client per registry host, with its credentials, its CAs, retries, and
//! errors that name the image.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kiln_crds::reference::Reference;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use super::auth::{AuthFiles, Credential, Redactor};
use super::retry::{self, Exhausted, RetryPolicy, Transient};
use super::{RegistryError, RegistryOptions, tls};
use crate::digest::Digest;
use crate::store::{BlobWriter, Store};

/// The media types a manifest request accepts: OCI and Docker schema 2, images and indexes.
pub const MANIFEST_TYPES: &[&str] = &[
    crate::image::oci::MEDIA_TYPE_MANIFEST,
    crate::image::oci::MEDIA_TYPE_INDEX,
    crate::image::oci::MEDIA_TYPE_DOCKER_MANIFEST,
    crate::image::oci::MEDIA_TYPE_DOCKER_LIST,
];

/// The registries a build talks to, each client made once.
pub struct Registries {
    opts: RegistryOptions,
    auth: AuthFiles,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Registries {
    pub fn new(opts: RegistryOptions) -> Registries {
        let auth = AuthFiles::standard(&opts.auth_files);
        Registries {
            opts,
            auth,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// The client for a registry host (`reference.registry`).
    pub async fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        if let Some(h) = self.lock().get(registry) {
            return Ok(h.clone());
        }
        crate::fetch::init_tls();
        let credential = self.auth.lookup(registry)?;
        let api = api_host(registry);
        let transport = self.transport(registry).await;
        tracing::debug!(
            registry,
            ?transport,
            anonymous = matches!(credential, crate::registry::auth::Credential::Anonymous),
            "registry host"
        );
        let client = self.client(registry, transport)?;
        // Anonymous access is stored too: on a registry that challenges, it gets an anonymous
        // token. (On an open registry oci-client then checks `/v2/` before each request; one
        // loopback-fast request, cheaper than guessing wrong about a registry's auth.)
        let auth = credential.to_registry_auth();
        client.store_auth_if_needed(api, &auth).await;
        let host = Arc::new(Host {
            registry: registry.to_string(),
            redactor: credential.redactor(),
            credential,
            auth_files: self
                .auth
                .files()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            client,
            auth,
            retry: self.opts.retry,
        });
        Ok(self
            .lock()
            .entry(registry.to_string())
            .or_insert(host)
            .clone())
    }

    /// How to reach a registry (see [`tls::Transport`]): an insecure one (named, or on
    /// loopback) is asked for TLS first, and reached over plain HTTP when it does not answer
    /// TLS, as dockerd does.
    async fn transport(&self, registry: &str) -> tls::Transport {
        let host = tls::host_of(registry);
        let resolved: Vec<std::net::IpAddr> = match tls::loopback_literal(host) {
            Some(_) => vec![],
            None => tokio::net::lookup_host((host, 0))
                .await
                .map(|addrs| addrs.map(|a| a.ip()).collect())
                .unwrap_or_default(),
        };
        if !tls::is_insecure_or_loopback(registry, &self.opts.insecure, &resolved) {
            return tls::Transport::Verified;
        }
        if speaks_tls(api_host(registry)).await {
            tls::Transport::UnverifiedTls
        } else {
            tls::Transport::Http
        }
    }

    /// A client for one registry: its CAs, and how it is reached.
    fn client(
        &self,
        registry: &str,
        transport: tls::Transport,
    ) -> Result<oci_client::Client, RegistryError> {
        let certs = tls::certificates(registry, &self.opts.ca_files, &self.opts.certs_dirs)
            .map_err(|message| RegistryError::Tls {
                registry: registry.to_string(),
                message,
            })?;
        let protocol = match transport {
            tls::Transport::Http => {
                ClientProtocol::HttpsExcept(vec![api_host(registry).to_string()])
            }
            tls::Transport::Verified | tls::Transport::UnverifiedTls => ClientProtocol::Https,
        };
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: transport == tls::Transport::UnverifiedTls,
            extra_root_certificates: certs,
            // Blobs go up in one PUT each, streamed from the store: two requests per blob.
            use_monolithic_push: true,
            // Kiln picks the platform itself (with variants), from the raw index.
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            // A connection that sends nothing for this long is broken; the retry reconnects.
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        oci_client::Client::try_from(config).map_err(|e| RegistryError::Tls {
            registry: registry.to_string(),
            message: e.to_string(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Host>>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether something answers TLS at `https://HOST/v2/`: any HTTP answer counts, whatever its
/// status and whatever the certificate (this decides between dockerd's two endpoints of an
/// insecure registry, not whether to trust it).
async fn speaks_tls(api: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return false;
    };
    client
        .get(format!("https://{api}/v2/"))
        .send()
        .await
        .is_ok()
}

/// Where API requests for a registry go (`oci-client` resolves Docker Hub the same way).
fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    }
}

/// The client of one registry.
pub struct Host {
    pub registry: String,
    client: oci_client::Client,
    auth: RegistryAuth,
    credential: Credential,
    auth_files: Vec<String>,
    redactor: Redactor,
    pub retry: RetryPolicy,
}

/// One failed attempt.
#[derive(Debug)]
enum Attempt {
    Oci(OciDistributionError),
    /// Content that does not match its digest, or is longer than its descriptor says.
    Verify(String),
    Io(std::io::Error),
}

impl From<OciDistributionError> for Attempt {
    fn from(e: OciDistributionError) -> Self {
        Attempt::Oci(e)
    }
}

impl Transient for Attempt {
    fn is_transient(&self) -> bool {
        match self {
            Attempt::Oci(e) => is_transient(e),
            Attempt::Verify(_) => false,
            Attempt::Io(_) => true,
        }
    }
}

/// The HTTP status an error stands for, when it says.
fn status(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::BlobUnknown
                | OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound => Some(404),
                OciErrorCode::Toomanyrequests => Some(429),
                _ => None,
            })
        }
        _ => None,
    }
}

/// 429, 5xx, and connections that failed or broke; never 4xx answers or bad content.
fn is_transient(e: &OciDistributionError) -> bool {
    if let Some(code) = status(e) {
        return code == 408 || code == 429 || (500..600).contains(&code);
    }
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() || r.is_decode()
        }
        OciDistributionError::IoError(io) => !is_digest_error(io),
        _ => false,
    }
}

fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<DigestError>().is_some())
}

/// A reference as `oci-client` takes it.
pub fn oci_reference(r: &Reference) -> oci_client::Reference {
    match (&r.digest, r.tag_or_latest()) {
        (Some(d), _) => {
            oci_client::Reference::with_digest(r.registry.clone(), r.repository.clone(), d.clone())
        }
        (None, tag) => oci_client::Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            tag.unwrap_or("latest").to_string(),
        ),
    }
}

fn envelope_detail(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let msgs: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .filter(|m| !m.is_empty())
                .collect();
            if msgs.is_empty() {
                String::new()
            } else {
                format!(": {}", msgs.join("; "))
            }
        }
        _ => String::new(),
    }
}

impl Host {
    /// Turn the end of a retried call into an error naming `image`, with no secret in it.
    fn error(&self, image: &str, what: &str, ex: Exhausted<Attempt>) -> RegistryError {
        let image = image.to_string();
        let registry = self.registry.clone();
        let r = |s: String| self.redactor.redact(&s);
        match ex.error {
            Attempt::Verify(message) => RegistryError::Verify {
                image,
                expected: what.to_string(),
                message: r(message),
            },
            Attempt::Io(e) if ex.attempts > 1 => RegistryError::GaveUp {
                image,
                message: r(format!("{what}: {e}")),
                attempts: ex.attempts,
                seconds: ex.elapsed.as_secs_f64(),
            },
            Attempt::Io(e) => RegistryError::Other {
                image,
                message: r(format!("{what}: {e}")),
            },
            Attempt::Oci(e) => {
                let detail = r(envelope_detail(&e));
                match status(&e) {
                    Some(401) => RegistryError::Unauthorized {
                        image,
                        registry: registry.clone(),
                        hint: match self.credential.origin() {
                            None => format!(
                                "no credentials for {registry} were found (looked in {}); add them to a docker config.json or pass --registry-auth-file",
                                if self.auth_files.is_empty() {
                                    "no file".to_string()
                                } else {
                                    self.auth_files.join(", ")
                                }
                            ),
                            Some(from) => {
                                format!("the registry refused the credentials from {from}")
                            }
                        },
                    },
                    Some(403) => RegistryError::Denied {
                        image,
                        registry,
                        detail,
                    },
                    Some(404) => RegistryError::NotFound {
                        image,
                        registry,
                        detail: if detail.is_empty() {
                            format!(": {what}")
                        } else {
                            detail
                        },
                    },
                    _ if ex.attempts > 1 || is_transient(&e) => RegistryError::GaveUp {
                        image,
                        message: r(format!("{what}: {}", flatten(&e))),
                        attempts: ex.attempts,
                        seconds: ex.elapsed.as_secs_f64(),
                    },
                    _ => RegistryError::Other {
                        image,
                        message: r(format!("{what}: {}", flatten(&e))),
                    },
                }
            }
        }
    }

    /// Fetch a manifest or index: its bytes and digest. A reference pinned by digest is
    /// checked against it.
    pub async fn manifest(&self, r: &Reference) -> Result<(Vec<u8>, Digest), RegistryError> {
        tracing::debug!(reference = %r, "registry: GET manifest");
        let oci = oci_reference(r);
        let got = retry::retry(&self.retry, |_| async {
            let (bytes, _) = self
                .client
                .pull_manifest_raw(&oci, &self.auth, MANIFEST_TYPES)
                .await?;
            Ok::<_, Attempt>(bytes)
        })
        .await
        .map_err(|e| self.error(&r.to_string(), "fetching the manifest", e))?;
        let digest = Digest::of(&got);
        if let Some(pinned) = &r.digest
            && pinned != digest.as_str()
        {
            return Err(RegistryError::Verify {
                image: r.to_string(),
                expected: pinned.clone(),
                message: format!("the registry sent a manifest with digest {digest}"),
            });
        }
        Ok((got.to_vec(), digest))
    }

    /// Download a blob into the store, verified against its digest and size as it streams.
    /// Nothing enters the store unless it is complete and correct.
    ///
    /// A connection that breaks mid-blob is retried from where it stopped (`Range:
    /// bytes=N-`), the hash carrying on over the bytes already written; a registry that answers
    /// 200 instead of 206 sends the whole blob again, and the partial one is dropped. The
    /// range is asked from byte 0 too: the answer then comes unhashed by `oci-client`, and the
    /// blob is hashed once, here, on its way to disk.
    pub async fn blob_to_store(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        store: &Store,
    ) -> Result<(), RegistryError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        tracing::debug!(reference = %r, %digest, size, "registry: GET blob");
        let oci = oci_reference(r);
        let desc = OciDescriptor {
            digest: digest.to_string(),
            size: size as i64,
            ..Default::default()
        };
        let partial = Mutex::new(None);
        retry::retry(&self.retry, |_| async {
            let mut writer = partial.lock().unwrap_or_else(|e| e.into_inner()).take();
            let result = self
                .blob_attempt(&oci, &desc, digest, size, store, &mut writer)
                .await;
            *partial.lock().unwrap_or_else(|e| e.into_inner()) = writer;
            result
        })
        .await
        .map_err(|e| self.error(&r.to_string(), digest.as_str(), e))
    }

    /// One attempt at a blob, continuing `writer` when it holds a partial download.
    async fn blob_attempt(
        &self,
        oci: &oci_client::Reference,
        desc: &OciDescriptor,
        digest: &Digest,
        size: u64,
        store: &Store,
        writer: &mut Option<BlobWriter>,
    ) -> Result<(), Attempt> {
        let offset = writer.as_ref().map_or(0, BlobWriter::written);
        let response = self
            .client
            .pull_blob_stream_partial(oci, desc, offset, None)
            .await?;
        let mut stream = match response {
            BlobResponse::Partial(s) => s,
            BlobResponse::Full(s) => {
                *writer = None;
                s
            }
        };
        if writer.is_none() {
            *writer = Some(store.blob_writer().map_err(Attempt::Io)?);
        }
        let w = writer.as_mut().expect("set above");
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if is_digest_error(&e) {
                    Attempt::Verify(e.to_string())
                } else {
                    Attempt::Io(e)
                }
            })?;
            w.write_all(&chunk).map_err(Attempt::Io)?;
            if w.written() > size {
                *writer = None;
                return Err(Attempt::Verify(format!(
                    "the registry sent more than the {size} bytes its descriptor says"
                )));
            }
        }
        let written = w.written();
        if written != size {
            *writer = None;
            return Err(Attempt::Verify(format!(
                "got {written} bytes, its descriptor says {size}"
            )));
        }
        writer
            .take()
            .expect("set above")
            .commit_verified(digest)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Attempt::Verify(e.to_string())
                } else {
                    Attempt::Io(e)
                }
            })?;
        Ok(())
    }

    /// Whether the repository of `r` has a blob (`HEAD /v2/<name>/blobs/<digest>`).
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        tracing::debug!(reference = %r, %digest, "registry: HEAD blob");
        let oci = oci_reference(r);
        retry::retry(&self.retry, |_| async {
            Ok::<_, Attempt>(self.client.blob_exists(&oci, digest.as_str()).await?)
        })
        .await
        .map_err(|e| self.error(&r.to_string(), &format!("checking blob {digest}"), e))
    }

    /// Ask the registry to mount a blob from another of its repositories. `false` when it
    /// declines (it then answers with an upload session, which is left to expire).
    pub async fn mount(&self, r: &Reference, from: &str, digest: &Digest) -> bool {
        tracing::debug!(reference = %r, from, %digest, "registry: cross-repository mount");
        let oci = oci_reference(r);
        let source = oci_client::Reference::with_tag(
            self.registry.clone(),
            from.to_string(),
            "latest".into(),
        );
        retry::retry(&self.retry, |_| async {
            Ok::<_, Attempt>(
                self.client
                    .mount_blob(&oci, &source, digest.as_str())
                    .await?,
            )
        })
        .await
        .is_ok()
    }

    /// Upload a blob from a file, streamed; each attempt starts over from the file.
    pub async fn upload(
        &self,
        r: &Reference,
        path: &Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        tracing::debug!(reference = %r, %digest, size, "registry: upload blob");
        let oci = oci_reference(r);
        retry::retry(&self.retry, |_| async {
            let file = tokio::fs::File::open(path).await.map_err(Attempt::Io)?;
            self.client
                .push_blob_stream(&oci, file_stream(file), digest.as_str(), Some(size))
                .await?;
            Ok::<_, Attempt>(())
        })
        .await
        .map(drop)
        .map_err(|e| self.error(&r.to_string(), &format!("uploading blob {digest}"), e))
    }

    /// Put a manifest under the tag (or digest) of `r`.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RegistryError> {
        tracing::debug!(reference = %r, media_type, size = bytes.len(), "registry: PUT manifest");
        let oci = oci_reference(r);
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|e| {
            RegistryError::Other {
                image: r.to_string(),
                message: e.to_string(),
            }
        })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        retry::retry(&self.retry, |_| async {
            self.client
                .push_manifest_raw(&oci, body.clone(), content_type.clone())
                .await?;
            Ok::<_, Attempt>(())
        })
        .await
        .map_err(|e| self.error(&r.to_string(), "pushing the manifest", e))
    }
}

/// The text of an error and its causes.
fn flatten(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A file as a stream of 1 MiB chunks.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        while buf.len() < buf.capacity() {
            match file.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
        if buf.is_empty() {
            None
        } else {
            Some((Ok(buf.freeze()), Some(file)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert!(is_transient(&server(500)));
        assert!(is_transient(&server(503)));
        assert!(is_transient(&server(429)));
        assert!(!is_transient(&server(404)));
        assert!(!is_transient(&server(400)));
        assert!(!is_transient(&OciDistributionError::UnauthorizedError {
            url: "u".into()
        }));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_transient(&OciDistributionError::IoError(reset)));
        let digest = std::io::Error::other(DigestError::VerificationError {
            expected: "a".into(),
            actual: "b".into(),
        });
        assert!(!is_transient(&OciDistributionError::IoError(digest)));
    }

    #[test]
    fn envelope_codes_give_statuses() {
        let e: OciDistributionError = OciDistributionError::RegistryError {
            envelope: serde_json::from_str(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
            .unwrap(),
            url: "u".into(),
        };
        assert_eq!(status(&e), Some(404));
        assert_eq!(envelope_detail(&e), ": manifest unknown");
    }

    #[test]
    fn references_convert() {
        let r = Reference::parse("127.0.0.1:5000/team/app:1").unwrap();
        let o = oci_reference(&r);
        assert_eq!(o.registry(), "127.0.0.1:5000");
        assert_eq!(o.repository(), "team/app");
        assert_eq!(o.tag(), Some("1"));
        let r = Reference::parse(&format!("busybox@sha256:{}", "a".repeat(64))).unwrap();
        let o = oci_reference(&r);
        assert_eq!(o.repository(), "library/busybox");
        assert_eq!(
            o.digest(),
            Some(format!("sha256:{}", "a".repeat(64)).as_str())
        );
    }
}
