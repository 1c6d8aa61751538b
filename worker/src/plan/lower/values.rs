//! Checks of instruction values once expanded, as BuildKit and the libraries it calls make them:
//! EXPOSE ports, STOPSIGNAL signals, `--chmod` modes, `--checksum` digests, and what kind of
//! source an ADD names.

/// What an ADD or COPY source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceKind {
    Path,
    Url,
    Git,
}

/// BuildKit's `ParseGitRef` and `isHTTPSource` (`crate::git::reference`): `git://`, `ssh://`,
/// `user@host:path` and `http(s)://...` URLs whose path ends in `.git` are git repositories
/// (a malformed query too: it fails when fetched, naming the problem); other `http(s)://`
/// URLs are downloads; everything else is a path.
pub(super) fn classify_source(s: &str) -> SourceKind {
    match crate::git::GitRef::parse(s, false) {
        Ok(Some(_)) | Err(_) => SourceKind::Git,
        Ok(None) if s.starts_with("http://") || s.starts_with("https://") => SourceKind::Url,
        Ok(None) => SourceKind::Path,
    }
}

pub(super) fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `go-digest`'s `Parse`: `algorithm:hex` for a registered algorithm.
pub(super) fn check_digest(s: &str) -> Result<(), String> {
    let Some((alg, hex)) = s.split_once(':') else {
        return Err(format!("invalid checksum digest format: {s:?}"));
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm: {alg:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("invalid checksum digest format: {s:?}"));
    }
    Ok(())
}

/// An octal mode up to 07777, or a symbolic mode (`u+x`, `go-w`, `a=rX,u+s`).
pub(super) fn valid_chmod(s: &str) -> bool {
    if s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u32::from_str_radix(s, 8).is_ok_and(|m| m <= 0o7777);
    }
    s.split(',').all(|clause| {
        let who_len = clause.bytes().take_while(|b| b"ugoa".contains(b)).count();
        let rest = &clause[who_len..];
        let mut ops = 0;
        let mut chars = rest.bytes().peekable();
        while let Some(op) = chars.next() {
            if !b"+-=".contains(&op) {
                return false;
            }
            ops += 1;
            while let Some(&b) = chars.peek() {
                if b"rwxXstugo".contains(&b) {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        ops > 0
    })
}

/// docker/go-connections `nat.ParsePortSpec`: the `port/proto` keys of one EXPOSE word.
pub(super) fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    let ip = if n >= 3 {
        parts[..n - 2].join(":")
    } else {
        String::new()
    };
    let (proto, port) = match container.split('/').collect::<Vec<_>>().as_slice() {
        _ if container.is_empty() => ("", ""),
        [p] => ("tcp", *p),
        [p, ""] => ("tcp", *p),
        [p, proto, ..] => (*proto, *p),
        [] => ("", ""),
    };
    if !ip.is_empty() {
        let bare = ip.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
    }
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (start, end) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let num = |x: &str| -> Option<u16> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    match s.split_once('-') {
        None => num(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

/// moby/sys `signal.ParseSignal`: a number other than 0, or a Linux signal name with or without
/// `SIG`, any case.
pub(super) fn check_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<i64>() {
        return if n == 0 {
            Err(format!("invalid signal: {s}"))
        } else {
            Ok(())
        };
    }
    let up = s.to_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX", "UNUSED",
    ];
    let rt = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n) || (prefix == "RTMAX-" && n == 14))
    };
    if NAMES.contains(&name) || rt("RTMIN+") || rt("RTMAX-") {
        Ok(())
    } else {
        Err(format!("invalid signal: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(classify_source("src/"), SourceKind::Path);
        assert_eq!(
            classify_source("https://example.com/a.tar.gz"),
            SourceKind::Url
        );
        assert_eq!(
            classify_source("https://github.com/a/b.git#v1"),
            SourceKind::Git
        );
        assert_eq!(classify_source("git@github.com:a/b.git"), SourceKind::Git);
        assert_eq!(classify_source("user@host"), SourceKind::Path);
    }

    #[test]
    fn ports() {
        assert_eq!(port_keys("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_keys("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            port_keys("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(port_keys("80/xyz").is_err());
        assert!(port_keys("abc").is_err());
        assert!(port_keys("99999").is_err());
        assert!(port_keys("").is_err());
    }

    #[test]
    fn modes_digests_signals() {
        assert!(valid_chmod("0755"));
        assert!(valid_chmod("u+x,go-w"));
        assert!(valid_chmod("a=rX"));
        assert!(!valid_chmod("17777"));
        assert!(!valid_chmod("rwx"));
        assert!(!valid_chmod("u+q"));
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest("md5:abc").is_err());
        assert!(check_signal("SIGTERM").is_ok());
        assert!(check_signal("quit").is_ok());
        assert!(check_signal("9").is_ok());
        assert!(check_signal("SIGRTMIN+3").is_ok());
        assert!(check_signal("0").is_err());
        assert!(check_signal("SIGFOO").is_err());
    }
}
