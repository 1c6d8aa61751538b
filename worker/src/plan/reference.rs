//! Image references as Docker's `reference.ParseNormalizedNamed` accepts them.
//!
//! `[domain[:port]/]path[:tag][@digest]`, where path components are lowercase alphanumerics
//! separated by `.`, `_`, `__` or runs of `-`; tags are `[\w][\w.-]{0,127}`; digests are
//! `algorithm:hex` with at least 32 hex digits. A bare 64-hex-digit name is refused, since it
//! would be mistaken for an image ID.

use std::sync::OnceLock;

use regex::Regex;

fn reference_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]+)";
        let component = format!("{alnum}(?:{sep}{alnum})*");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
        let host = format!("(?:{domain_component}(?:\\.{domain_component})*|{ipv6})");
        let domain = format!("{host}(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:/{component})*");
        // ASCII word characters, as in Go's RE2 (a Unicode \\w would make the automaton huge).
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        // The expression is fixed and valid; a failure here is a bug caught by the tests.
        Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$")).unwrap_or_else(|_| {
            Regex::new("^$").unwrap_or_else(|_| unreachable!("the empty pattern compiles"))
        })
    })
}

/// Check an image reference; the error reads like Docker's.
pub fn validate(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("invalid reference format".into());
    }
    if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let re = reference_re();
    let Some(caps) = re.captures(reference) else {
        if re.is_match(&lower_path(reference)) {
            return Err("invalid reference format: repository name must be lowercase".into());
        }
        return Err("invalid reference format".into());
    };
    if caps.get(1).is_some_and(|m| m.as_str().len() > 255) {
        return Err("repository name must not be more than 255 characters".into());
    }
    Ok(())
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
