//! Downloads: `ADD <url>`, streamed to disk and hashed on the way.
//!
//! The Dockerfile reference's rules for a remote file: it is saved under the last segment of the
//! URL's path (when the destination is a directory), with mode 0600, and with the
//! `Last-Modified` time when the server sends one. `--checksum` names the digest the download
//! must have; a mismatch fails the build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;

use crate::digest::{Digest, HashingWriter};

/// Why a download failed.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("downloading {url}: {message}")]
    Http { url: String, message: String },
    #[error("downloading {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: checksum mismatch: expected {expected}, got {got}")]
    Checksum {
        url: String,
        expected: String,
        got: Digest,
    },
    #[error("writing the download of {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error(
        "downloading {url}: larger than the limit of {limit} bytes (raise it with --add-max-bytes or {ADD_MAX_BYTES})"
    )]
    TooLarge { url: String, limit: u64 },
}

/// The variable that caps what an `ADD` may bring in: a download's size, and an archive's
/// unpacked size.
pub const ADD_MAX_BYTES: &str = "KILN_ADD_MAX_BYTES";
/// The variable that caps an `ADD` archive's unpacked size as a multiple of its packed size.
pub const ADD_MAX_RATIO: &str = "KILN_ADD_MAX_RATIO";
/// The variable that bounds the wait for the next bytes of a download, in seconds.
pub const FETCH_READ_TIMEOUT: &str = "KILN_FETCH_READ_TIMEOUT";

static SET: OnceLock<Limits> = OnceLock::new();

/// Bounds on what `ADD` brings into a build: an 8 KiB `.tar.zst` must not become gigabytes on
/// the builder's disk, nor a download hang or grow without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one download, and unpacked bytes of one archive (default 8 GiB).
    pub max_bytes: u64,
    /// Unpacked bytes per packed byte of an archive, checked past 64 MiB unpacked (default
    /// 1000: real archives compress by far less; bombs by far more).
    pub max_ratio: u64,
    /// The longest wait for a download's next bytes (default 60 s).
    pub read_timeout: Duration,
}

impl Limits {
    /// Set the limits for the rest of the process (the CLI's `--add-max-bytes` and friends);
    /// the first call wins.
    pub fn set(limits: Limits) {
        let _ = SET.set(limits);
    }

    /// The limits in force: what [`Limits::set`] said, else the defaults or what the
    /// `KILN_ADD_*` variables say.
    pub fn current() -> Limits {
        if let Some(l) = SET.get() {
            return *l;
        }
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&v| v > 0)
                .unwrap_or(default)
        };
        Limits {
            max_bytes: var(ADD_MAX_BYTES, 8 << 30),
            max_ratio: var(ADD_MAX_RATIO, 1000),
            read_timeout: Duration::from_secs(var(FETCH_READ_TIMEOUT, 60)),
        }
    }
}

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub path: PathBuf,
    pub digest: Digest,
    /// The name the file gets in a directory destination.
    pub file_name: String,
    /// `Last-Modified`, in seconds since the epoch.
    pub last_modified: Option<i64>,
}

/// The name BuildKit gives a download: the URL path's last segment, or `__unnamed__`.
pub fn file_name(url: &str) -> String {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(last) if !last.is_empty() && last != "." => last.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Install ring as rustls's crypto provider, once per process.
pub fn init_tls() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The runtime network I/O runs on; the solver's stage threads block on it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-net")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Download `url` into `dir`, checking `checksum` (`sha256:<hex>`) when given.
pub fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Downloaded, FetchError> {
    init_tls();
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        message: e.to_string(),
    };
    let io = |e: std::io::Error| FetchError::Io {
        url: url.to_string(),
        source: e,
    };
    let path = dir.join(format!("download-{}", Digest::of(url.as_bytes()).hex()));
    let limits = Limits::current();
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: limits.max_bytes,
    };
    runtime().block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(limits.read_timeout)
            .build()
            .map_err(http)?;
        let response = client.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let last_modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if response
            .content_length()
            .is_some_and(|n| n > limits.max_bytes)
        {
            return Err(too_large());
        }
        let file = std::fs::File::create(&path).map_err(io)?;
        let mut out = HashingWriter::new(std::io::BufWriter::new(file));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.map_err(http)?).map_err(io)?;
            if out.count() > limits.max_bytes {
                drop(out);
                let _ = std::fs::remove_file(&path);
                return Err(too_large());
            }
        }
        let (digest, _, buf) = out.finish();
        buf.into_inner().map_err(|e| io(e.into_error()))?;
        if let Some(expected) = checksum
            && expected != digest.as_str()
        {
            let _ = std::fs::remove_file(&path);
            return Err(FetchError::Checksum {
                url: url.to_string(),
                expected: expected.to_string(),
                got: digest,
            });
        }
        Ok(Downloaded {
            path: path.clone(),
            digest,
            file_name: file_name(url),
            last_modified,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls() {
        assert_eq!(
            file_name("https://example.com/a/b/file.tar.gz"),
            "file.tar.gz"
        );
        assert_eq!(
            file_name("https://example.com/a/b/file.txt?x=1#f"),
            "file.txt"
        );
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
    }

    /// A one-shot HTTP server on loopback.
    fn serve(body: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body).unwrap();
        });
        format!("http://{addr}/dir/payload.bin")
    }

    #[test]
    fn downloads_hash_and_check_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(b"hello");
        let d = fetch(&url, dir.path(), Some(Digest::of(b"hello").as_str())).unwrap();
        assert_eq!(std::fs::read(&d.path).unwrap(), b"hello");
        assert_eq!(d.file_name, "payload.bin");
        assert_eq!(d.last_modified, Some(784111777));
        let url = serve(b"hello");
        let err = fetch(&url, dir.path(), Some(Digest::of(b"other").as_str())).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    }

    #[test]
    fn limits_default_and_parse() {
        let l = Limits::current();
        assert!(l.max_bytes >= 1 << 30 && l.max_ratio >= 100);
        assert!(l.read_timeout >= Duration::from_secs(1));
    }
}
