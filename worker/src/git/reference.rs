//! What counts as a Git URL, and what its fragment or query asks for: BuildKit's rules
//! (`util/gitutil.ParseURL` and the Dockerfile front end's `dfgitutil.ParseGitRef`), in our
//! own words.
//!
//! - **The forms.** `git://…`, `ssh://…`, `http://…` and `https://…` URLs, and the scp-like
//!   `user@host:path`. Any other `scheme://` is not a Git URL. An `http(s)` URL is one only when
//!   its path ends in `.git` (`https://host/org/repo.git`); without that suffix it names a file
//!   to download. For a *build context* only, `github.com/org/repo` (no scheme) means
//!   `https://github.com/org/repo` too, the deprecated shorthand the Dockerfile front end still
//!   accepts there. A path starting with `./` or `../` is never a URL.
//! - **The fragment**, `#ref:subdir`: `ref` is a branch, a tag, a full commit hash or any ref
//!   such as `refs/pull/42/head`; empty means the remote's default branch. `subdir` is a
//!   directory of the repository, cleaned as a path from `/` (so `..` cannot leave it).
//! - **The query** (BuildKit 0.24, Dockerfile 1.18), `?ref=…&subdir=…`: `ref`, `branch`
//!   (`refs/heads/` is added), `tag` (`refs/tags/` is added), `subdir`, `checksum` or its alias
//!   `commit` (a commit hash, or a prefix of one, that the resolved commit must match),
//!   `keep-git-dir`, `submodules` and `fetch-by-commit` (booleans; a bare key means true), and
//!   `mtime=checkout|commit`. A key given twice, an empty value, an unknown key, a `branch`
//!   with a `tag`, or a fragment and a query that disagree are errors.

use std::fmt;

/// How the repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
}

/// The modification time of checked-out files (`?mtime=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MTime {
    /// The time of the checkout (BuildKit's default).
    #[default]
    Checkout,
    /// The commit's committer time.
    Commit,
}

/// A Git URL with what its fragment or query asks for.
#[derive(Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The repository URL without its fragment and query, as given: it may hold a user name and
    /// a password, so it is never shown; [`GitRef::redacted`] is.
    pub remote: String,
    pub scheme: Scheme,
    /// `host` or `host:port`: what `GIT_AUTH_TOKEN.<host>` secrets are named after.
    pub host: String,
    /// The branch, tag, commit or ref; empty for the remote's default branch.
    pub reference: String,
    /// `?checksum=`: the resolved commit must start with it.
    pub checksum: Option<String>,
    /// The directory of the repository that is the context, cleaned; empty for the root.
    pub subdir: String,
    pub keep_git_dir: Option<bool>,
    pub submodules: Option<bool>,
    pub mtime: MTime,
    pub fetch_by_commit: bool,
    /// Written as `github.com/…`, without a scheme.
    pub shorthand: bool,
}

impl fmt::Debug for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRef")
            .field("remote", &self.redacted())
            .field("reference", &self.reference)
            .field("checksum", &self.checksum)
            .field("subdir", &self.subdir)
            .field("keep_git_dir", &self.keep_git_dir)
            .finish_non_exhaustive()
    }
}

/// A Git URL whose fragment or query cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git URL {url}: {message}")]
pub struct GitRefError {
    /// The URL, its password redacted.
    pub url: String,
    pub message: String,
}

/// Whether a string is a full commit hash (SHA-1 or SHA-256), as BuildKit's `IsCommitSHA`.
pub fn is_commit_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl GitRef {
    /// Parse a Git URL. `Ok(None)` when `s` is not one (a path, or a URL of a file to download);
    /// an error when it is one whose fragment or query is wrong. `context` allows the
    /// `github.com/…` shorthand, which only build contexts accept.
    pub fn parse(s: &str, context: bool) -> Result<Option<GitRef>, GitRefError> {
        Self::parse_with(s, context, false)
    }

    /// Parse `s` as a Git URL whatever its form says: an `http(s)` URL without the `.git`
    /// suffix is a repository too (`--context-type=git`, the operator's `spec.source.git`).
    pub fn parse_forced(s: &str) -> Result<Option<GitRef>, GitRefError> {
        Self::parse_with(s, true, true)
    }

    fn parse_with(s: &str, context: bool, forced: bool) -> Result<Option<GitRef>, GitRefError> {
        if s.starts_with("./") || s.starts_with("../") {
            return Ok(None);
        }
        let err = |message: String| GitRefError {
            url: redact(s),
            message,
        };
        // `remote?query#fragment`; the fragment is everything after the first `#`, the query
        // what lies between the first `?` before it and the `#`.
        let (before_fragment, fragment) = match s.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (s, None),
        };
        let (remote, query) = match before_fragment.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (before_fragment, None),
        };
        let (scheme, host, path, shorthand) = if let Some(rest) = remote.strip_prefix("github.com/")
        {
            if !context {
                return Ok(None);
            }
            (
                Scheme::Https,
                "github.com".to_string(),
                rest.to_string(),
                true,
            )
        } else if let Some((proto, rest)) = scheme_of(remote) {
            let scheme = match proto.to_ascii_lowercase().as_str() {
                "https" => Scheme::Https,
                "http" => Scheme::Http,
                "ssh" => Scheme::Ssh,
                "git" => Scheme::Git,
                _ => return Ok(None),
            };
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if host.is_empty() {
                return Ok(None);
            }
            (scheme, host.to_string(), path.to_string(), false)
        } else if let Some((host, path)) = scp_like(remote) {
            (Scheme::Ssh, host.to_string(), path.to_string(), false)
        } else {
            return Ok(None);
        };
        if matches!(scheme, Scheme::Http | Scheme::Https) && !shorthand && !forced {
            let path = path.trim_end_matches('/');
            if !path.ends_with(".git") {
                return Ok(None);
            }
        }
        let mut git = GitRef {
            remote: if shorthand {
                format!("https://{remote}")
            } else {
                remote.to_string()
            },
            scheme,
            host,
            reference: String::new(),
            checksum: None,
            subdir: String::new(),
            keep_git_dir: None,
            submodules: None,
            mtime: MTime::Checkout,
            fetch_by_commit: false,
            shorthand,
        };
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
            git.reference = reference.to_string();
            git.subdir = clean_subdir(subdir);
        }
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            git.load_query(query).map_err(err)?;
        }
        Ok(Some(git))
    }

    /// BuildKit's `loadQuery`.
    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let mut seen: Vec<String> = Vec::new();
        let (mut tag, mut branch) = (None::<String>, None::<String>);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = match pair.split_once('=') {
                Some((k, v)) => (percent_decode(k)?, Some(percent_decode(v)?)),
                None => (percent_decode(pair)?, None),
            };
            if seen.contains(&key) {
                return Err(format!("query {key:?} has multiple values"));
            }
            seen.push(key.clone());
            let value = value.filter(|v| !v.is_empty());
            let boolean = |v: &Option<String>| -> Result<bool, String> {
                match v {
                    None => Ok(true),
                    Some(v) => crate::dockerfile::directives::parse_go_bool(v)
                        .ok_or_else(|| format!("invalid {key} value: {v:?}")),
                }
            };
            let required =
                |v: Option<String>| v.ok_or_else(|| format!("query {key:?} has no value"));
            match key.as_str() {
                "ref" => {
                    let v = required(value)?;
                    if !self.reference.is_empty() && self.reference != v {
                        return Err(format!("ref conflicts: {:?} vs {v:?}", self.reference));
                    }
                    self.reference = v;
                }
                "tag" => tag = Some(required(value)?),
                "branch" => branch = Some(required(value)?),
                "subdir" => {
                    let v = clean_subdir(&required(value)?);
                    if !self.subdir.is_empty() && self.subdir != v {
                        return Err(format!("subdir conflicts: {:?} vs {v:?}", self.subdir));
                    }
                    self.subdir = v;
                }
                "checksum" | "commit" => self.checksum = Some(required(value)?),
                "keep-git-dir" => self.keep_git_dir = Some(boolean(&value)?),
                "submodules" => self.submodules = Some(boolean(&value)?),
                "fetch-by-commit" => self.fetch_by_commit = boolean(&value)?,
                "mtime" => {
                    self.mtime = match required(value)?.as_str() {
                        "checkout" => MTime::Checkout,
                        "commit" => MTime::Commit,
                        v => {
                            return Err(format!(
                                "invalid mtime value: {v:?} (must be \"checkout\" or \"commit\")"
                            ));
                        }
                    }
                }
                _ => return Err(format!("unexpected query {key:?}")),
            }
        }
        let mut qualify = |name: String, prefix: &str| -> Result<(), String> {
            let full = if name.starts_with(prefix) {
                name
            } else {
                format!("{prefix}{name}")
            };
            if !self.reference.is_empty() && self.reference != full {
                return Err(format!("ref conflicts: {:?} vs {full:?}", self.reference));
            }
            self.reference = full;
            Ok(())
        };
        if let Some(t) = tag.clone() {
            qualify(t, "refs/tags/")?;
        }
        if let Some(b) = branch {
            if tag.is_some() {
                return Err("branch conflicts with tag".into());
            }
            qualify(b, "refs/heads/")?;
        }
        Ok(())
    }

    /// The URL as it may be shown: a password in it is replaced by `xxxxx`, as BuildKit's
    /// `RedactCredentials` does.
    pub fn redacted(&self) -> String {
        redact(&self.remote)
    }

    /// An `http(s)` URL's user information, taken out: the URL without it, and the user and
    /// password (percent-decoded; the password may be empty). Kiln sends them itself, as an
    /// `Authorization` header (`git::auth`), so that they are never part of a URL it shows or
    /// hands on. Other URLs are returned as they are.
    pub fn without_userinfo(&self) -> (String, Option<(String, String)>) {
        if !matches!(self.scheme, Scheme::Http | Scheme::Https) {
            return (self.remote.clone(), None);
        }
        let Some((proto, rest)) = self.remote.split_once("://") else {
            return (self.remote.clone(), None);
        };
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |s: &str| {
                    percent_decode(&s.replace('+', "%2B")).unwrap_or_else(|_| s.to_string())
                };
                (
                    format!("{proto}://{host}{tail}"),
                    Some((decode(user), decode(password))),
                )
            }
            None => (self.remote.clone(), None),
        }
    }

    /// The URL, redacted, with the ref and subdirectory: what messages and `vcs.source` show.
    pub fn describe(&self) -> String {
        let mut s = self.redacted();
        if !self.reference.is_empty() || !self.subdir.is_empty() {
            s.push('#');
            s.push_str(&self.reference);
            if !self.subdir.is_empty() {
                s.push(':');
                s.push_str(&self.subdir);
            }
        }
        s
    }

    /// What the checkout keeps the `.git` directory for: the URL's `keep-git-dir`, else
    /// `default` (`ADD --keep-git-dir`, `BUILDKIT_CONTEXT_KEEP_GIT_DIR`). A subdirectory never
    /// keeps it, as in BuildKit.
    pub fn keeps_git_dir(&self, default: bool) -> bool {
        self.subdir.is_empty() && self.keep_git_dir.unwrap_or(default)
    }
}

/// `scheme://rest` when `s` starts with `[A-Za-z0-9]+://`.
fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let (proto, rest) = s.split_once("://")?;
    (!proto.is_empty() && proto.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((proto, rest))
}

/// The scp-like `user@host:path` (BuildKit's `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*)`).
fn scp_like(s: &str) -> Option<(&str, &str)> {
    let (user, rest) = s.split_once('@')?;
    let (host, path) = rest.split_once(':')?;
    let user_ok = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (user_ok && host_ok).then_some((host, path))
}

/// Go's `path.Join("/", subdir)` without its leading `/`: `..` never climbs above the root.
fn clean_subdir(subdir: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for comp in subdir.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// A URL's query component, `%XX` and `+` decoded as Go's `url.ParseQuery` does.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid URL escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// A URL with the password of its user information replaced by `xxxxx`. An `http(s)` user
/// name without a password is replaced too: `https://TOKEN@host/…` is how some servers take a
/// token.
pub fn redact(url: &str) -> String {
    let Some((proto, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let http = proto.eq_ignore_ascii_case("http") || proto.eq_ignore_ascii_case("https");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{proto}://{user}:xxxxx@{host}{tail}"),
            None if http => format!("{proto}://xxxxx@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(s: &str) -> GitRef {
        GitRef::parse(s, true)
            .unwrap()
            .unwrap_or_else(|| panic!("{s} is a git URL"))
    }

    #[test]
    fn which_strings_are_git_urls() {
        for s in [
            "https://github.com/moby/buildkit.git",
            "https://github.com/moby/buildkit.git#v0.12.0",
            "http://host:8080/r.git#main:sub",
            "git://host/r",
            "ssh://git@host:2222/org/r",
            "git@github.com:moby/buildkit.git",
            "git@github.com:moby/buildkit#main",
            "GIT://host/r",
        ] {
            assert!(GitRef::parse(s, false).unwrap().is_some(), "{s}");
        }
        for s in [
            "https://example.com/ctx.tar.gz",
            "https://example.com/repo",
            "https://example.com/repo.git.tar",
            "ftp://host/r.git",
            "./git@host:x",
            "../r.git",
            "src/",
            "user@host",
            "@host:path",
            "github.com/moby/buildkit",
        ] {
            assert_eq!(GitRef::parse(s, false).unwrap(), None, "{s}");
        }
        let g = git("github.com/moby/buildkit#v0.1");
        assert!(g.shorthand);
        assert_eq!(g.remote, "https://github.com/moby/buildkit");
        assert_eq!(g.reference, "v0.1");
        let forced = GitRef::parse_forced("https://example.com/repo#main:dir").unwrap();
        let forced = forced.unwrap();
        assert_eq!(
            (forced.reference.as_str(), forced.subdir.as_str()),
            ("main", "dir")
        );
    }

    #[test]
    fn fragments() {
        let g = git("https://github.com/user/myrepo.git#mybranch:myfolder");
        assert_eq!(g.remote, "https://github.com/user/myrepo.git");
        assert_eq!(g.scheme, Scheme::Https);
        assert_eq!(g.host, "github.com");
        assert_eq!(
            (g.reference.as_str(), g.subdir.as_str()),
            ("mybranch", "myfolder")
        );
        let g = git("https://github.com/user/myrepo.git#:myfolder");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("", "myfolder"));
        let g = git("https://github.com/user/myrepo.git#refs/pull/42/head");
        assert_eq!(g.reference, "refs/pull/42/head");
        let g = git("git@host.example:org/r.git#v1:/a/../../b/./c/");
        assert_eq!((g.scheme, g.host.as_str()), (Scheme::Ssh, "host.example"));
        assert_eq!(g.remote, "git@host.example:org/r.git");
        assert_eq!(g.subdir, "b/c");
        let g = git("ssh://git@host:2222/org/r.git#main");
        assert_eq!(g.host, "host:2222");
        assert_eq!(git("https://h/r.git#").reference, "");
    }

    #[test]
    fn queries() {
        let g = git("https://github.com/user/myrepo.git?branch=container&subdir=docker");
        assert_eq!(g.remote, "https://github.com/user/myrepo.git");
        assert_eq!(g.reference, "refs/heads/container");
        assert_eq!(g.subdir, "docker");
        let g = git("https://h/r.git?tag=v1&checksum=abc123");
        assert_eq!(g.reference, "refs/tags/v1");
        assert_eq!(g.checksum.as_deref(), Some("abc123"));
        let g = git("https://h/r.git?ref=pull/42/head&keep-git-dir&submodules=false&mtime=commit");
        assert_eq!(g.reference, "pull/42/head");
        assert_eq!(g.keep_git_dir, Some(true));
        assert_eq!(g.submodules, Some(false));
        assert_eq!(g.mtime, MTime::Commit);
        let g = git("https://h/r.git?commit=0123abc");
        assert_eq!(
            (g.reference.as_str(), g.checksum.as_deref()),
            ("", Some("0123abc"))
        );
        let g = git("git@h:r.git?ref=main#main:x");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("main", "x"));
        assert_eq!(git("https://h/r.git?subdir=a%2Fb+c").subdir, "a/b c");
        for bad in [
            "https://h/r.git?ref=a&ref=b",
            "https://h/r.git?ref=",
            "https://h/r.git?frobnicate=1",
            "https://h/r.git?tag=a&branch=b",
            "https://h/r.git?ref=a#b",
            "https://h/r.git?subdir=x#:y",
            "https://h/r.git?keep-git-dir=maybe",
            "https://h/r.git?mtime=now",
            "https://h/r.git?ref=%zz",
        ] {
            assert!(GitRef::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let g = git("https://user:s3cret@host/r.git#main");
        assert_eq!(g.redacted(), "https://user:xxxxx@host/r.git");
        assert_eq!(g.describe(), "https://user:xxxxx@host/r.git#main");
        assert!(!format!("{g:?}").contains("s3cret"));
        let e = GitRef::parse("https://user:s3cret@host/r.git?bad=1", false).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert_eq!(redact("https://tok@host/r.git"), "https://xxxxx@host/r.git");
        assert_eq!(redact("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(redact("git@host:r.git"), "git@host:r.git");
        let (url, user) = git("https://u%40x:p%2Bw+@host/r.git").without_userinfo();
        assert_eq!(url, "https://host/r.git");
        assert_eq!(user, Some(("u@x".into(), "p+w+".into())));
        let (_, user) = git("https://TOKEN@host/r.git").without_userinfo();
        assert_eq!(user, Some(("TOKEN".into(), String::new())));
        assert_eq!(git("ssh://git@h/r.git").without_userinfo().1, None);
    }

    #[test]
    fn commit_hashes() {
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(is_commit_sha(&"0".repeat(64)));
        assert!(!is_commit_sha(&"A".repeat(40)));
        assert!(!is_commit_sha("abc1234"));
        assert!(git("https://h/r.git").keeps_git_dir(true));
        assert!(!git("https://h/r.git#:sub").keeps_git_dir(true));
        assert!(!git("https://h/r.git?keep-git-dir=false").keeps_git_dir(true));
    }
}
