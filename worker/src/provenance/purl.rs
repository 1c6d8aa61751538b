//! Package URLs of images, as BuildKit writes them in provenance (`util/purl`, with
//! `packageurl-go`'s escaping): `pkg:docker/alpine@3.19?platform=linux%2Famd64`,
//! `pkg:docker/127.0.0.1%3A5000/team/app@1?platform=linux%2Farm64`.

use kiln_crds::reference::Reference;

use crate::image::oci::Platform;

/// The package URL of an image reference (`pkg:docker/...`, or `pkg:oci/...` for an image
/// from a local OCI layout), with the platform it was resolved for.
///
/// - the name is the reference's familiar name (`docker.io/library/` dropped), split into a
///   namespace (every segment but the last) and a name;
/// - the version is the tag (`latest` when the reference names neither tag nor digest);
/// - qualifiers: `digest` when the reference pins one, then `platform`.
pub fn image(reference: &str, platform: Option<&Platform>, oci: bool) -> Option<String> {
    let r = Reference::parse(reference).ok()?;
    let familiar = if r.registry == "docker.io" {
        r.repository
            .strip_prefix("library/")
            .unwrap_or(&r.repository)
            .to_string()
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    let (namespace, name) = match familiar.rsplit_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, familiar.as_str()),
    };
    let mut out = format!("pkg:{}/", if oci { "oci" } else { "docker" });
    if let Some(ns) = namespace {
        for segment in ns.split('/') {
            out.push_str(&query_escape(segment));
            out.push('/');
        }
    }
    out.push_str(&query_escape(name));
    let version = match (&r.tag, &r.digest) {
        (Some(t), _) => Some(t.as_str()),
        (None, Some(_)) => None,
        (None, None) => Some("latest"),
    };
    if let Some(v) = version {
        out.push('@');
        out.push_str(&path_escape(v));
    }
    let mut qualifiers = vec![];
    if let Some(d) = &r.digest {
        qualifiers.push(format!("digest={}", path_escape(d)));
    }
    if let Some(p) = platform {
        qualifiers.push(format!("platform={}", path_escape(&p.to_string())));
    }
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    Some(out)
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b if unreserved(b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.PathEscape` (a path segment: `/` is escaped; `:`, `@`, `+`, `=` are not).
fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if unreserved(b) || matches!(b, b'$' | b'&' | b'+' | b':' | b'=' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's own cases (`util/purl/image_test.go`).
    #[test]
    fn purls_read_like_buildkits() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            image("alpine", None, false).unwrap(),
            "pkg:docker/alpine@latest"
        );
        assert_eq!(
            image("alpine:3.15", None, false).unwrap(),
            "pkg:docker/alpine@3.15"
        );
        assert_eq!(
            image("docker.io/library/alpine:latest", None, false).unwrap(),
            "pkg:docker/alpine@latest"
        );
        assert_eq!(
            image(&format!("alpine@{d}"), None, false).unwrap(),
            format!("pkg:docker/alpine?digest={d}")
        );
        assert_eq!(
            image(&format!("alpine:latest@{d}"), None, false).unwrap(),
            format!("pkg:docker/alpine@latest?digest={d}")
        );
        assert_eq!(
            image("user/test:v2", None, false).unwrap(),
            "pkg:docker/user/test@v2"
        );
        assert_eq!(
            image("ghcr.io/foo/bar:v2", None, false).unwrap(),
            "pkg:docker/ghcr.io/foo/bar@v2"
        );
        assert_eq!(
            image("busybox", Some(&amd64), false).unwrap(),
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            image(&format!("busybox@{d}"), Some(&amd64), false).unwrap(),
            format!("pkg:docker/busybox?digest={d}&platform=linux%2Famd64")
        );
        assert_eq!(
            image("127.0.0.1:5000/kiln/app:1", Some(&amd64), true).unwrap(),
            "pkg:oci/127.0.0.1%3A5000/kiln/app@1?platform=linux%2Famd64"
        );
        assert!(image("inv:al:id", None, false).is_none());
    }
}
