//! Resolving a ref on a remote and fetching exactly its commit, depth 1, with `gix`.
//!
//! BuildKit's rules (`source/git`): a full commit hash is used as is; any other ref is looked
//! up among the remote's refs as `refs/<ref>` first, then the branch `refs/heads/<ref>`, then
//! the tag `refs/tags/<ref>` (git's checkout prefers branches); an empty ref is the remote's
//! `HEAD`. An annotated tag is peeled to its commit. Kiln also takes a short commit hash when it
//! is the prefix of exactly one advertised ref's commit, since a shallow fetch cannot look
//! further (BuildKit refuses short hashes).
//!
//! The fetch asks for the resolved object itself (`want <id>`), so a ref that moves between
//! the listing and the fetch cannot change what is built. A commit hash that no ref points at
//! is asked for directly too (servers that allow it: GitHub, git 2.x over protocol v2 for a
//! reachable commit); when the server refuses, every branch and tag is fetched in full and the
//! commit looked for there, as BuildKit does.
//!
//! Repositories are bare, one per remote, under the state directory's `git/`, and reused: a
//! commit already there is not fetched again. A lock file serializes builds that fetch the same
//! remote. Each repository is opened isolated from the user's and the system's git
//! configuration (no `url.insteadOf`, no credential helpers, no `~/.gitconfig`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::ObjectId;
use gix::protocol::handshake::Ref;
use gix::remote::Direction;

use super::auth::{GitAuth, SshAuth};
use super::{GitError, GitRef, Scheme, is_commit_sha};
use crate::mounts::ssh::AgentSocket;

/// A commit fetched into a local bare repository.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bare repository that holds it.
    pub repo: PathBuf,
    /// The commit.
    pub commit: ObjectId,
    /// What the ref points at on the remote: the commit, or an annotated tag of it.
    pub tip: ObjectId,
    /// The ref's full name (`refs/heads/main`), or `None` when a commit hash was asked for.
    pub ref_name: Option<String>,
}

/// Resolve `git`'s ref and fetch its commit into a repository under `repos`. `checksum`
/// (`ADD --checksum`) and the URL's `checksum=` must both be prefixes of the commit (or of an
/// annotated tag's own hash).
pub fn fetch(
    git: &GitRef,
    auth: &GitAuth,
    checksum: Option<&str>,
    repos: &Path,
) -> Result<Fetched, GitError> {
    let checksums: Vec<&str> = checksum
        .into_iter()
        .chain(git.checksum.as_deref())
        .collect();
    for sum in &checksums {
        if sum.is_empty() || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::Url(super::GitRefError {
                url: git.redacted(),
                message: format!("invalid checksum {sum}: expected a hex commit hash"),
            }));
        }
    }
    let session = Session::open(git, auth, repos)?;
    let mut reference = git.reference.clone();
    if reference.is_empty() && git.fetch_by_commit {
        reference = git.checksum.clone().unwrap_or_default();
    }
    let (tip, ref_name) = if is_commit_sha(&reference.to_ascii_lowercase()) {
        let id = parse_id(&reference.to_ascii_lowercase());
        if !session.repo.has_object(id) {
            session.fetch_commit(id)?;
        }
        (id, None)
    } else {
        let refs = session.list_refs(&reference)?;
        let (name, tip) = pick(&refs, &reference).ok_or_else(|| GitError::MissingRef {
            remote: git.redacted(),
            reference: display_ref(&reference),
            hint: if (7..40).contains(&reference.len())
                && reference.bytes().all(|b| b.is_ascii_hexdigit())
            {
                ": a short commit hash is found only when a branch or tag points at that commit; give the full 40-character hash".into()
            } else {
                String::new()
            },
        })?;
        if !session.repo.has_object(tip) {
            session.fetch_tip(tip)?;
        }
        (tip, name)
    };
    let commit = session.peel(tip)?;
    for sum in checksums {
        let sum = sum.to_ascii_lowercase();
        if !commit.to_string().starts_with(&sum) && !tip.to_string().starts_with(&sum) {
            return Err(GitError::Checksum {
                remote: git.redacted(),
                reference: display_ref(&reference),
                expected: sum,
                got: commit.to_string(),
            });
        }
    }
    Ok(Fetched {
        repo: session.dir.clone(),
        commit,
        tip,
        ref_name,
    })
}

fn display_ref(reference: &str) -> String {
    if reference.is_empty() {
        "HEAD".into()
    } else {
        reference.to_string()
    }
}

fn parse_id(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.as_bytes()).expect("a checked commit hash")
}

/// The ref `want` names among `refs`, as BuildKit picks it: `refs/<want>`, else the branch,
/// else the tag; the remote's `HEAD` when `want` is empty; a short hash that is the prefix of
/// exactly one ref's commit. Its full name (when it has one) and the object the ref points at.
fn pick(refs: &[Ref], want: &str) -> Option<(Option<String>, ObjectId)> {
    let tip = |r: &Ref| -> Option<(String, ObjectId, ObjectId)> {
        match r {
            Ref::Direct {
                full_ref_name,
                object,
            } => Some((full_ref_name.to_string(), *object, *object)),
            Ref::Peeled {
                full_ref_name,
                tag,
                object,
            } => Some((full_ref_name.to_string(), *tag, *object)),
            Ref::Symbolic {
                full_ref_name,
                tag,
                object,
                ..
            } => Some((full_ref_name.to_string(), tag.unwrap_or(*object), *object)),
            Ref::Unborn { .. } => None,
        }
    };
    let tips: Vec<(String, ObjectId, ObjectId)> = refs.iter().filter_map(tip).collect();
    if want.is_empty() {
        return refs.iter().find_map(|r| match r {
            Ref::Symbolic {
                full_ref_name,
                target,
                tag,
                object,
            } if full_ref_name == "HEAD" => {
                Some((Some(target.to_string()), tag.unwrap_or(*object)))
            }
            Ref::Direct {
                full_ref_name,
                object,
            } if full_ref_name == "HEAD" => Some((None, *object)),
            _ => None,
        });
    }
    let candidates = [
        format!("refs/{}", want.trim_start_matches("refs/")),
        format!("refs/heads/{}", want.trim_start_matches("refs/heads/")),
        format!("refs/tags/{}", want.trim_start_matches("refs/tags/")),
    ];
    for candidate in &candidates {
        if let Some((name, tip, _)) = tips.iter().find(|(n, _, _)| n == candidate) {
            return Some((Some(name.clone()), *tip));
        }
    }
    let lower = want.to_ascii_lowercase();
    if (7..40).contains(&want.len()) && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut found: Vec<ObjectId> = tips
            .iter()
            .filter(|(_, _, commit)| commit.to_string().starts_with(&lower))
            .map(|(_, _, commit)| *commit)
            .collect();
        found.sort();
        found.dedup();
        if let [one] = found.as_slice() {
            return Some((None, *one));
        }
    }
    None
}

/// A bare repository opened for one remote, locked for this process, with what the remote's
/// connections need.
struct Session<'a> {
    git: &'a GitRef,
    /// The URL gix connects to: without user information (sent as a header instead).
    url: String,
    dir: PathBuf,
    repo: gix::Repository,
    http: Option<(String, String)>,
    /// Keeps the lock file locked.
    _lock: std::fs::File,
    /// Keeps the ssh agent served.
    _agent: Option<AgentSocket>,
    ssh_log: Option<PathBuf>,
    secrets: Vec<Vec<u8>>,
}

/// Whether the server asked for credentials during a connection.
#[derive(Default)]
struct Asked(Mutex<bool>);

impl<'a> Session<'a> {
    fn open(git: &'a GitRef, auth: &GitAuth, repos: &Path) -> Result<Session<'a>, GitError> {
        let io = |source: std::io::Error| GitError::Io {
            remote: git.redacted(),
            source,
        };
        crate::store::create_private_dir(repos).map_err(io)?;
        let id = crate::digest::Digest::of(git.redacted().as_bytes()).hex()[..32].to_string();
        let dir = repos.join(&id);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(repos.join(format!("{id}.lock")))
            .map_err(io)?;
        crate::fsroot::lock(&lock, true, true).map_err(io)?;
        // When the repository was last used, for `kiln prune --filter until=…`.
        let _ = lock.set_modified(std::time::SystemTime::now());
        let fetch_err = |e: gix::Error| GitError::Fetch {
            remote: git.redacted(),
            message: chain(&e),
        };
        if !dir.join("HEAD").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            gix::init_bare(&dir).map_err(fetch_err)?;
            // What `kiln prune` shows for it.
            std::fs::write(dir.join("kiln-remote"), git.redacted()).map_err(io)?;
        }
        let mut overrides = vec![
            "protocol.version=2".to_string(),
            format!("gitoxide.userAgent=kiln/{}", env!("CARGO_PKG_VERSION")),
        ];
        let mut agent = None;
        let mut ssh_log = None;
        if git.scheme == Scheme::Ssh {
            let ssh = auth.ssh(git)?;
            check_known_host(git, &ssh)?;
            let log = dir.join("ssh.log");
            let _ = std::fs::remove_file(&log);
            let (command, socket) = ssh_command(git, &ssh, repos, &id, &log)?;
            agent = socket;
            ssh_log = Some(log);
            overrides.push(format!("core.sshCommand={command}"));
            overrides.push("ssh.variant=ssh".into());
        }
        let repo = gix::open_opts(
            &dir,
            gix::open::Options::isolated().config_overrides(overrides),
        )
        .map_err(fetch_err)?;
        let http = auth.http(git)?.map(|h| (h.header, h.from));
        Ok(Session {
            git,
            url: git.without_userinfo().0,
            dir,
            repo,
            http,
            _lock: lock,
            _agent: agent,
            ssh_log,
            secrets: auth.values(),
        })
    }

    /// A connection failure as a typed error, its message free of credentials.
    fn failure(&self, e: gix::Error, asked: &Asked) -> GitError {
        let remote = self.git.redacted();
        if *asked.0.lock().unwrap_or_else(|e| e.into_inner()) {
            return match &self.http {
                Some((_, from)) => GitError::AuthRefused {
                    remote,
                    from: from.clone(),
                },
                None => GitError::AuthRequired { remote },
            };
        }
        let mut message = chain(&e).replace(&self.git.remote, &remote);
        for value in &self.secrets {
            if let Ok(v) = std::str::from_utf8(value)
                && !v.is_empty()
            {
                message = message.replace(v, "xxxxx");
            }
        }
        if let Some(log) = &self.ssh_log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !said.is_empty() {
                return GitError::Ssh {
                    remote,
                    message: said.join("; "),
                };
            }
        }
        GitError::Fetch { remote, message }
    }

    /// The remote, for fetching `specs` and no tags.
    fn remote(&self, specs: &[String]) -> Result<gix::Remote<'_>, gix::Error> {
        self.repo
            .remote_at(self.url.as_str())?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
    }

    /// A connection to `remote` with this remote's credentials.
    fn connect<'r>(
        &'r self,
        remote: &'r gix::Remote<'r>,
        asked: &'r Asked,
    ) -> Result<
        gix::remote::Connection<
            'r,
            'r,
            'r,
            Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
        >,
        gix::Error,
    > {
        let connection = remote.connect(Direction::Fetch)?;
        let connection = connection.with_credentials(move |action| {
            if let gix::credentials::helper::Action::Get(_) = action {
                *asked.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            }
            Ok(None)
        });
        Ok(match self.git.scheme {
            Scheme::Http | Scheme::Https => {
                connection.with_transport_options(Box::new(http_options(self.http.clone())))
            }
            _ => connection,
        })
    }

    /// The remote's refs that could be `want` (all of them for a possible short hash).
    fn list_refs(&self, want: &str) -> Result<Vec<Ref>, GitError> {
        let asked = Asked::default();
        let specs: Vec<String> = if want.is_empty() {
            vec!["HEAD".into()]
        } else {
            vec![
                format!("refs/{}", want.trim_start_matches("refs/")),
                format!("refs/heads/{}", want.trim_start_matches("refs/heads/")),
                format!("refs/tags/{}", want.trim_start_matches("refs/tags/")),
            ]
        };
        let short_hash =
            (7..40).contains(&want.len()) && want.bytes().all(|b| b.is_ascii_hexdigit());
        let result = (|| -> Result<Vec<Ref>, gix::Error> {
            let remote = self.remote(&specs)?;
            let connection = self.connect(&remote, &asked)?;
            let (map, _) = connection.ref_map(
                gix::progress::Discard,
                gix::remote::ref_map::Options {
                    prefix_from_spec_as_filter_on_remote: !short_hash,
                    ..Default::default()
                },
            )?;
            Ok(map.remote_refs)
        })();
        result.map_err(|e| self.failure(e, &asked))
    }

    /// Fetch the object a ref points at (depth 1).
    fn fetch_tip(&self, tip: ObjectId) -> Result<(), GitError> {
        self.fetch_with(
            &[format!("+{tip}:refs/kiln/{tip}")],
            gix::remote::fetch::Shallow::DepthAtRemote(1.try_into().expect("1 is not zero")),
        )
    }

    /// Fetch a commit no advertised ref may point at: by its hash (depth 1), else with every
    /// branch and tag in full.
    fn fetch_commit(&self, id: ObjectId) -> Result<(), GitError> {
        match self.fetch_tip(id) {
            Ok(()) if self.repo.has_object(id) => return Ok(()),
            Err(e @ (GitError::AuthRequired { .. } | GitError::AuthRefused { .. })) => {
                return Err(e);
            }
            _ => {}
        }
        self.fetch_with(
            &[
                "+refs/heads/*:refs/kiln/heads/*".to_string(),
                "+refs/tags/*:refs/kiln/tags/*".to_string(),
            ],
            gix::remote::fetch::Shallow::undo(),
        )?;
        if self.repo.has_object(id) {
            Ok(())
        } else {
            Err(GitError::MissingRef {
                remote: self.git.redacted(),
                reference: id.to_string(),
                hint: ": no branch or tag of the repository reaches this commit".into(),
            })
        }
    }

    fn fetch_with(
        &self,
        specs: &[String],
        shallow: gix::remote::fetch::Shallow,
    ) -> Result<(), GitError> {
        let asked = Asked::default();
        let interrupt = AtomicBool::new(false);
        let result = (|| -> Result<(), gix::Error> {
            let remote = self.remote(specs)?;
            let connection = self.connect(&remote, &asked)?;
            connection
                .prepare_fetch(gix::progress::Discard, Default::default())?
                .with_shallow(shallow)
                .receive(gix::progress::Discard, &interrupt)?;
            Ok(())
        })();
        result.map_err(|e| self.failure(e, &asked))
    }

    /// The commit an object (a commit or an annotated tag) stands for.
    fn peel(&self, id: ObjectId) -> Result<ObjectId, GitError> {
        let object = self.repo.find_object(id).map_err(|e| GitError::Fetch {
            remote: self.git.redacted(),
            message: format!("the fetched object {id} is missing: {}", chain(&e)),
        })?;
        let commit = object.peel_to_commit().map_err(|e| GitError::Fetch {
            remote: self.git.redacted(),
            message: format!("{id} is not a commit: {}", chain(&e)),
        })?;
        Ok(commit.id)
    }
}

/// The HTTP options of a connection: the `Authorization` header (gix follows no redirect once
/// a request carries one), a connect timeout, and no overall one.
fn http_options(
    header: Option<(String, String)>,
) -> gix::protocol::transport::client::blocking_io::http::Options {
    use gix::protocol::transport::client::blocking_io::http;
    crate::fetch::init_tls();
    let mut backend = http::reqwest::Options {
        // reqwest's blocking client ends a request after 30 s by default, which a large pack
        // outlasts; the build's own --timeout bounds a fetch instead.
        configure_client: Some(Box::new(|builder| Ok(builder.timeout(None)))),
        ..Default::default()
    };
    if let Some((value, _)) = header {
        backend.configure_request = Some(Box::new(move |request| {
            let value = reqwest::header::HeaderValue::from_str(&value).map(|mut v| {
                v.set_sensitive(true);
                v
            });
            if let Ok(v) = value {
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, v);
            }
            Ok(())
        }));
    }
    http::Options {
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        user_agent: Some(format!("kiln/{}", env!("CARGO_PKG_VERSION"))),
        backend: Some(Arc::new(Mutex::new(backend))),
        ..Default::default()
    }
}

/// An error and its causes, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// `host` and `port` of an ssh remote's `host[:port]`.
fn host_and_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// Refuse early, with a clear message, an ssh host that no known_hosts file has a key for
/// (`ssh-keygen -F`, which also reads hashed entries).
fn check_known_host(git: &GitRef, ssh: &SshAuth) -> Result<(), GitError> {
    let (host, port) = host_and_port(&git.host);
    let name = match port {
        Some(p) if p != "22" => format!("[{host}]:{p}"),
        _ => host.to_string(),
    };
    let existing: Vec<&PathBuf> = ssh.known_hosts.iter().filter(|f| f.exists()).collect();
    for file in &existing {
        let found = std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg(&name)
            .arg("-f")
            .arg(file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match found {
            Ok(s) if s.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(GitError::Fetch {
                    remote: git.redacted(),
                    message: format!(
                        "ssh Git URLs need the ssh programs (Debian's openssh-client): ssh-keygen: {e}"
                    ),
                });
            }
        }
    }
    Err(GitError::UnknownHostKey {
        host: name,
        files: if existing.is_empty() {
            format!(
                "(none of {} exists)",
                ssh.known_hosts
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            existing
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
    })
}

/// The `core.sshCommand` for an ssh remote: OpenSSH without the user's configuration, in batch
/// mode, with strict host key checking against `ssh.known_hosts`, its messages in `log`, and
/// the key served by Kiln's agent (so that no key file needs the modes ssh insists on).
fn ssh_command(
    git: &GitRef,
    ssh: &SshAuth,
    repos: &Path,
    id: &str,
    log: &Path,
) -> Result<(String, Option<AgentSocket>), GitError> {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let known: Vec<String> = ssh
        .known_hosts
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    let (agent, socket) = match &ssh.key {
        Some(source) => {
            let dir = repos.join(format!("{id}.agent"));
            let _ = std::fs::remove_dir_all(&dir);
            let uid = rustix::process::geteuid().as_raw();
            let gid = rustix::process::getegid().as_raw();
            let served = crate::mounts::ssh::serve(source, &dir, 0o600, uid, gid).map_err(|e| {
                GitError::Fetch {
                    remote: git.redacted(),
                    message: e.to_string(),
                }
            })?;
            (quote(served.path()), Some(served))
        }
        None => ("none".to_string(), None),
    };
    let command = format!(
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UpdateHostKeys=no \
         -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o IdentityAgent={agent} \
         -o LogLevel=ERROR -E {}",
        quote(Path::new(&known.join(" "))),
        quote(log),
    );
    Ok((command, socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> ObjectId {
        parse_id(&c.to_string().repeat(40))
    }

    #[test]
    fn refs_are_picked_as_buildkit_picks_them() {
        let refs = vec![
            Ref::Symbolic {
                full_ref_name: "HEAD".into(),
                target: "refs/heads/main".into(),
                tag: None,
                object: id('1'),
            },
            Ref::Direct {
                full_ref_name: "refs/heads/main".into(),
                object: id('1'),
            },
            Ref::Direct {
                full_ref_name: "refs/heads/v1".into(),
                object: id('2'),
            },
            Ref::Peeled {
                full_ref_name: "refs/tags/v1".into(),
                tag: id('3'),
                object: id('4'),
            },
            Ref::Direct {
                full_ref_name: "refs/pull/7/head".into(),
                object: id('5'),
            },
        ];
        let name = |s: &str| Some(Some(s.to_string()));
        assert_eq!(pick(&refs, "").map(|p| p.0), name("refs/heads/main"));
        assert_eq!(pick(&refs, "main").map(|p| p.1), Some(id('1')));
        // A branch wins over a tag of the same name.
        assert_eq!(
            pick(&refs, "v1"),
            Some((Some("refs/heads/v1".into()), id('2')))
        );
        assert_eq!(
            pick(&refs, "refs/tags/v1"),
            Some((Some("refs/tags/v1".into()), id('3')))
        );
        assert_eq!(pick(&refs, "pull/7/head").map(|p| p.1), Some(id('5')));
        assert_eq!(pick(&refs, "refs/pull/7/head").map(|p| p.1), Some(id('5')));
        assert_eq!(pick(&refs, "nope"), None);
        // A short hash: the peeled commit of exactly one ref.
        assert_eq!(pick(&refs, "4444444"), Some((None, id('4'))));
        assert_eq!(pick(&refs, "3333333"), None);
    }

    #[test]
    fn ssh_hosts_and_ports() {
        assert_eq!(host_and_port("h:2222"), ("h", Some("2222")));
        assert_eq!(host_and_port("h"), ("h", None));
    }
}
