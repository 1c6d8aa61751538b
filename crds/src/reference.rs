//! Image references, as the Docker distribution grammar (`distribution/reference`) defines them.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]        host: DNS name, IPv4, or [IPv6]
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex      algorithm: [A-Za-z][A-Za-z0-9]* ( [+._-] [A-Za-z][A-Za-z0-9]* )*
//! ```
//!
//! The first component is a registry host when it contains `.` or `:` or is `localhost`, as the
//! Docker CLI decides. Otherwise the image is on Docker Hub, and a single-component name lives
//! under `library/`.

use std::fmt;

use thiserror::Error;

/// The registry that short names resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const NAME_MAX: usize = 255;

/// Why an image reference did not parse.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} has an invalid registry host {1:?}")]
    Domain(String, String),
    #[error(
        "image reference {0:?} has an invalid repository component {1:?}: components are lower-case letters and digits, separated by '.', '_', '__' or dashes"
    )]
    Component(String, String),
    #[error(
        "image reference {0:?} has an invalid tag {1:?}: a tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag(String, String),
    #[error(
        "image reference {0:?} has an invalid digest {1:?}: expected algorithm:hex, such as sha256:<64 hex digits>"
    )]
    Digest(String, String),
    #[error("image reference {0:?} has a repository name longer than {NAME_MAX} characters")]
    TooLong(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host, with its port: `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path inside the registry: `library/busybox`, `team/app`.
    pub repository: String,
    /// The tag, if the reference names one.
    pub tag: Option<String>,
    /// The digest, if the reference pins one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse and normalise a reference. A reference with neither tag nor digest keeps `tag`
    /// empty; [`Reference::tag_or_latest`] applies the `latest` default.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !is_digest(digest) {
                    return Err(ReferenceError::Digest(text.into(), digest.into()));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/', so a port is not a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !is_tag(tag) {
                    return Err(ReferenceError::Tag(text.into(), tag.into()));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_domain(first) => {
                if !is_domain(first) {
                    return Err(ReferenceError::Domain(text.into(), first.into()));
                }
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::Component(text.into(), component.into()));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong(text.into()));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag, or `latest` when the reference names neither tag nor digest.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The host to send registry API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest, without a tag.
    pub fn with_digest(&self, digest: &str) -> Self {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (domain, ""),
        }
    };
    let port_ok = domain.ends_with(']')
        || !domain.contains(':') && port.is_empty()
        || (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host.is_empty() && domain.starts_with('[')
        || !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
    port_ok && host_ok
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// A digest: `algorithm:hex`, with at least 32 hex digits, and exactly 64 for sha256.
pub fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let length_ok =
        algorithm != "sha256" || hex.len() == 64 && !hex.bytes().any(|b| b.is_ascii_uppercase());
    algorithm_ok && hex_ok && length_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_the_docker_cli() {
        assert_eq!(
            parts("busybox"),
            ("docker.io".into(), "library/busybox".into(), None, None)
        );
        assert_eq!(
            parts("team/app:1"),
            (
                "docker.io".into(),
                "team/app".into(),
                Some("1".into()),
                None
            )
        );
        assert_eq!(
            parts("127.0.0.1:5000/busybox:1"),
            (
                "127.0.0.1:5000".into(),
                "busybox".into(),
                Some("1".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost/a/b"),
            ("localhost".into(), "a/b".into(), None, None)
        );
        assert_eq!(
            parts("localhost:5000/a"),
            ("localhost:5000".into(), "a".into(), None, None)
        );
        assert_eq!(
            parts("[::1]:5000/a:t"),
            ("[::1]:5000".into(), "a".into(), Some("t".into()), None)
        );
        let pinned = format!("registry.example.com/team/app:1.2.3@{SHA}");
        assert_eq!(
            parts(&pinned),
            (
                "registry.example.com".into(),
                "team/app".into(),
                Some("1.2.3".into()),
                Some(SHA.into())
            )
        );
        assert_eq!(Reference::parse(&pinned).unwrap().to_string(), pinned);
        assert_eq!(
            Reference::parse("busybox").unwrap().tag_or_latest(),
            Some("latest")
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().api_host(),
            DOCKER_HUB_API
        );
        assert!(Reference::parse("a__b/c-d/e.f/g---h").is_ok());
    }

    #[test]
    fn rejects_what_docker_rejects() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Team/App"),
            Err(ReferenceError::Domain(..)) | Err(ReferenceError::Component(..))
        ));
        assert!(matches!(
            Reference::parse("team/App"),
            Err(ReferenceError::Component(..))
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::Component(..))
        ));
        assert!(matches!(
            Reference::parse("a/b_"),
            Err(ReferenceError::Component(..))
        ));
        assert!(matches!(
            Reference::parse("a/b..c"),
            Err(ReferenceError::Component(..))
        ));
        assert!(matches!(
            Reference::parse("a/b:"),
            Err(ReferenceError::Tag(..))
        ));
        assert!(matches!(
            Reference::parse("a/b:-x"),
            Err(ReferenceError::Tag(..))
        ));
        assert!(matches!(
            Reference::parse("a/b@sha256:abc"),
            Err(ReferenceError::Digest(..))
        ));
        assert!(matches!(
            Reference::parse("host:port/a"),
            Err(ReferenceError::Domain(..))
        ));
        assert!(matches!(
            Reference::parse("-bad.com/a"),
            Err(ReferenceError::Domain(..))
        ));
        assert!(matches!(
            Reference::parse("has space/a"),
            Err(ReferenceError::Component(..))
        ));
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(..))
        ));
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }
}
