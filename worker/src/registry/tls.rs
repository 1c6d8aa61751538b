//! Which CAs a registry is trusted with, and which registries may skip TLS.
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
    let host = host_of(registry);
    insecure
        .iter()
        .any(|i| i == registry || (host_of(i) == host && !has_port(i)))
}

/// Whether a registry name carries a port.
fn has_port(registry: &str) -> bool {
    match registry.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host_of(registry) != registry,
    }
}

/// The host part of a registry name: `reg.example` of `reg.example:5000`, `::1` of
/// `[::1]:5000`.
pub fn host_of(registry: &str) -> &str {
    if let Some(v6) = registry.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(addr, _)| addr);
    }
    match registry.rsplit_once(':') {
        // A bare IPv6 address has more than one colon and no port.
        Some((host, _)) if !host.contains(':') => host,
        _ => registry,
    }
}

/// Whether a host names this machine's loopback, as far as its spelling tells: `localhost`, an
/// address in `127.0.0.0/8`, or `::1`. `None` for any other name, which only a lookup can
/// settle (dockerd resolves it and checks every address).
pub fn loopback_literal(host: &str) -> Option<bool> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(true);
    }
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.is_loopback())
}

/// How the client talks to a registry.
///
/// dockerd's rules (`registry/config.go`, `isSecureIndex`): a registry named with
/// `--insecure-registry`, or whose host is in `127.0.0.0/8` or `::1/128` (by address, or by a
/// name that resolves there, such as `localhost`), is "insecure". For an insecure registry
/// dockerd tries HTTPS first, without verifying the certificate, and falls back to plain HTTP
/// when that fails (`lookupV2Endpoints`). Every other registry is HTTPS with a verified
/// certificate, and never plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS, the certificate verified against the system's roots and the extra CAs.
    Verified,
    /// HTTPS, the certificate not verified: an insecure registry that answered TLS.
    UnverifiedTls,
    /// Plain HTTP: an insecure registry that did not answer TLS.
    Http,
}

/// Whether a registry is insecure in dockerd's sense: named with `--insecure-registry`, or on
/// loopback. `resolved` are the addresses its host resolves to, for a name whose spelling does
/// not tell (see [`loopback_literal`]).
pub fn is_insecure_or_loopback(
    registry: &str,
    insecure: &[String],
    resolved: &[std::net::IpAddr],
) -> bool {
    is_insecure(registry, insecure)
        || loopback_literal(host_of(registry))
            .unwrap_or_else(|| resolved.iter().any(|ip| ip.is_loopback()))
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
    fn loopback_registries_are_insecure_and_others_are_not() {
        use std::net::IpAddr;
        let none: Vec<String> = vec![];
        for r in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_insecure_or_loopback(r, &none, &[]), "{r}");
        }
        for r in [
            "reg.example:5000",
            "10.0.0.1:5000",
            "[::2]:5000",
            "docker.io",
            "128.0.0.1",
            "localhost.example.com",
        ] {
            assert!(!is_insecure_or_loopback(r, &none, &[]), "{r}");
        }
        // A name is loopback when it resolves there, as dockerd looks it up.
        let lo: IpAddr = "127.0.1.1".parse().unwrap();
        let public: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(is_insecure_or_loopback("myhost:5000", &none, &[public, lo]));
        assert!(!is_insecure_or_loopback("myhost:5000", &none, &[public]));
        // An address literal is not looked up: a public address stays TLS.
        assert!(!is_insecure_or_loopback("192.0.2.1:5000", &none, &[lo]));
        // Named hosts stay insecure, as before.
        let named = vec!["reg.example:5000".to_string()];
        assert!(is_insecure_or_loopback("reg.example:5000", &named, &[]));
        assert!(!is_insecure_or_loopback("reg.example:5001", &named, &[]));
    }

    #[test]
    fn hosts_are_cut_from_ports() {
        assert_eq!(host_of("reg.example:5000"), "reg.example");
        assert_eq!(host_of("reg.example"), "reg.example");
        assert_eq!(host_of("[::1]:5000"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        assert_eq!(host_of("::1"), "::1");
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
