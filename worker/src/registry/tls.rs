//! Which CAs a registry is trusted with, and which registries are plain HTTP.
//!
//! Docker's `certs.d` convention: for a registry `host:port`, every `*.crt` file in
//! `<root>/host:port/` is a CA certificate trusted for that registry only (a registry on port
//! 443 uses `<root>/host/`). Kiln looks in `/etc/docker/certs.d` and `/etc/containers/certs.d`
//! by default, or in the roots given with `--registry-certs-dir`. `--registry-ca` files are
//! trusted for every registry. Both add to the system's roots; neither replaces them.
//!
//! The client certificate pairs (`*.cert` and `*.key`) that `certs.d` may also hold are not
//! used: `oci-client` has no client identity option.

use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding};

/// `/etc/docker/certs.d` and `/etc/containers/certs.d`.
pub fn default_certs_dirs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ]
}

/// The extra CA certificates for `registry`: the global files, then its `certs.d` entries.
/// A file that cannot be read or holds no PEM certificate is an error that names it.
pub fn certificates(
    registry: &str,
    ca_files: &[PathBuf],
    certs_dirs: &[PathBuf],
) -> Result<Vec<Certificate>, String> {
    let mut files: Vec<PathBuf> = ca_files.to_vec();
    let dir_names = match registry.strip_suffix(":443") {
        Some(host) => vec![registry.to_string(), host.to_string()],
        None => vec![registry.to_string()],
    };
    for root in certs_dirs {
        for name in &dir_names {
            let dir = root.join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut crts: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect();
            crts.sort();
            files.extend(crts);
        }
    }
    files.iter().map(|f| load(f)).collect()
}

fn load(path: &Path) -> Result<Certificate, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !String::from_utf8_lossy(&data).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{}: not a PEM certificate", path.display()));
    }
    Ok(Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    })
}

/// Whether `registry` was named with `--insecure-registry` (as `host:port`, or as `host` for
/// every port of it).
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    insecure.iter().any(|i| i == registry || i == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn certs_d_is_per_registry() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("reg.example:5000");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("ca.crt"), PEM).unwrap();
        std::fs::write(d.join("client.cert"), PEM).unwrap();
        let dirs = vec![root.path().to_path_buf()];
        assert_eq!(
            certificates("reg.example:5000", &[], &dirs).unwrap().len(),
            1
        );
        assert_eq!(
            certificates("reg.example:5001", &[], &dirs).unwrap().len(),
            0
        );
        assert_eq!(certificates("reg.example", &[], &dirs).unwrap().len(), 0);
    }

    #[test]
    fn port_443_uses_the_bare_host_directory() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("reg.example");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("ca.crt"), PEM).unwrap();
        let dirs = vec![root.path().to_path_buf()];
        assert_eq!(
            certificates("reg.example:443", &[], &dirs).unwrap().len(),
            1
        );
        assert_eq!(certificates("reg.example", &[], &dirs).unwrap().len(), 1);
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("ca.pem");
        std::fs::write(&f, "nope").unwrap();
        let e = certificates("r", std::slice::from_ref(&f), &[]).unwrap_err();
        assert!(e.contains("ca.pem") && e.contains("not a PEM"), "{e}");
        let e = certificates("r", &[root.path().join("missing.pem")], &[]).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn insecure_matches_host_or_host_and_port() {
        let list = vec!["a.example:5000".to_string(), "b.example".to_string()];
        assert!(is_insecure("a.example:5000", &list));
        assert!(!is_insecure("a.example:5001", &list));
        assert!(is_insecure("b.example:1234", &list));
        assert!(is_insecure("b.example", &list));
        assert!(!is_insecure("c.example", &list));
    }
}
