//! Image references as Docker's `reference.ParseNormalizedNamed` accepts them, with Docker's
//! error messages (the grammar itself is `kiln_crds::reference`).
//!
//! `[domain[:port]/]path[:tag][@digest]`, where path components are lowercase alphanumerics
//! separated by `.`, `_`, `__` or runs of `-`; tags are `[\w][\w.-]{0,127}`; digests are
//! `algorithm:hex` with at least 32 hex digits (exactly 64 lower-case for sha256). A bare
//! 64-hex-digit name is refused, since it would be mistaken for an image ID.

use kiln_crds::reference::{Reference, ReferenceError};

/// Check an image reference with the one grammar Kiln has (`kiln_crds::reference`, which the
/// API and the registry client use too); the error reads like Docker's, as BuildKit's does.
pub fn validate(reference: &str) -> Result<(), String> {
    if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    match Reference::parse(reference) {
        Ok(_) => Ok(()),
        Err(ReferenceError::TooLong(_)) => {
            Err("repository name must not be more than 255 characters".into())
        }
        Err(_) if Reference::parse(&lower_path(reference)).is_ok() => {
            Err("invalid reference format: repository name must be lowercase".into())
        }
        Err(_) => Err("invalid reference format".into()),
    }
}

/// The reference with its path lowercased (the domain keeps its case), to tell "must be
/// lowercase" from other errors.
fn lower_path(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            let (path, suffix) = split_suffix(rest);
            format!("{first}/{}{suffix}", path.to_lowercase())
        }
        _ => {
            let (path, suffix) = split_suffix(reference);
            format!("{}{suffix}", path.to_lowercase())
        }
    }
}

fn split_suffix(s: &str) -> (&str, &str) {
    let end = s
        .rfind(['@', ':'])
        .filter(|&i| !s[i..].contains('/'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "alpine",
            "alpine:3.19",
            "docker.io/library/alpine:latest",
            "localhost:5000/team/app",
            "registry.example.com/a/b-c__d.e:v1.2-rc",
            "golang@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/app",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate("Alpine"),
            Err("invalid reference format: repository name must be lowercase".into())
        );
        for bad in [
            "",
            "a b",
            "-a",
            "a:",
            "a@sha256:xyz",
            "UPPER/x:y y",
            "$IMAGE",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
