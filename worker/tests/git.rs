//! Git and URL build contexts, and `ADD <git-url>`, against real servers on loopback: `git
//! http-backend` behind a small HTTP server (a public repository, and private ones that need
//! basic auth), `git daemon` for `git://`, and OpenSSH's sshd for `ssh://`. Builds run as root
//! and as an unprivileged user (in Kiln's user namespace) where the fetch and the checkout
//! happen differently.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{ROOTLESS_USER, ensure_rootless_user, kiln_bin, text};
use kiln_tests::git::{GitDaemon, HttpServer, Repo, Sshd};
use kiln_worker::result::{BuildResult, PlanResult, Reason};

const PASSWORD: &str = "pw-7c1e9b-for-alice";
const TOKEN: &str = "tok-51d0aa-for-the-robot";

/// The repository every test reads, and its commits.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Serves `repo.git` without auth.
    public: HttpServer,
    /// Serves `repo.git` to alice with PASSWORD only.
    private: HttpServer,
    /// Serves `repo.git` to `x-access-token` with TOKEN only.
    robot: HttpServer,
    /// `v1` (an annotated tag) and the first commit.
    c1: String,
    /// `main`, and the lightweight tag `light`.
    c2: String,
    /// The branch `feature`.
    c3: String,
    /// `refs/pull/1/head`, on no branch.
    c4: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = Repo::init(&root.join("work"));
        let c1 = repo.commit(
            "one",
            &[
                ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
                ("hello.txt", "hello from c1\n"),
                ("run.sh", "#!/bin/sh\necho run\n"),
                ("link", "->hello.txt"),
                (".dockerignore", "ignored.txt\n"),
                ("ignored.txt", "not in the context\n"),
                (
                    "sub/Dockerfile",
                    "FROM example.invalid/sub-base:1 AS sub\nCOPY . /sub/\n",
                ),
                ("sub/file.txt", "in sub\n"),
            ],
        );
        std::fs::set_permissions(
            repo.dir.join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "--amend", "--no-edit"]);
        let c1 = {
            let _ = c1;
            repo.git(&["rev-parse", "HEAD"])
        };
        repo.git(&["tag", "-a", "v1", "-m", "version 1"]);
        let c2 = repo.commit("two", &[("hello.txt", "hello from c2\n")]);
        repo.git(&["tag", "light"]);
        repo.git(&["checkout", "-q", "-b", "feature"]);
        let c3 = repo.commit("three", &[("feature.txt", "feature\n")]);
        repo.git(&["checkout", "-q", "--detach", "main"]);
        let c4 = repo.commit("four", &[("pull.txt", "pull\n")]);
        repo.git(&["update-ref", "refs/pull/1/head", &c4]);
        repo.git(&["checkout", "-q", "main"]);
        for name in ["public", "private", "robot"] {
            repo.publish(&root.join(name).join("repo.git"));
        }
        // A repository URL without .git, as forges also serve them.
        std::os::unix::fs::symlink("repo.git", root.join("public/repo")).unwrap();
        // The server's repository is also readable through plain files (for ssh and git://).
        let public = HttpServer::start(&root.join("public"), None);
        let private = HttpServer::start(&root.join("private"), Some(("alice", PASSWORD)));
        let robot = HttpServer::start(&root.join("robot"), Some(("x-access-token", TOKEN)));
        Fixture {
            _dir: dir,
            root,
            public,
            private,
            robot,
            c1,
            c2,
            c3,
            c4,
        }
    })
}

/// A directory for one test, owned by whoever runs `kiln` in it.
struct Place {
    dir: tempfile::TempDir,
    rootless: bool,
}

impl Place {
    fn new(rootless: bool) -> Place {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let place = Place { dir, rootless };
        place.give();
        place
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Hand everything to the rootless user.
    fn give(&self) {
        if self.rootless {
            ensure_rootless_user();
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            let ok = Command::new("chown")
                .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
                .arg(self.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    }

    /// Write files (an auth directory, a context) under this place.
    fn files(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(rel);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        self.give();
        dir
    }

    fn kiln(&self, args: &[String], envs: &[(&str, &str)]) -> Output {
        let mut cmd = if self.rootless {
            // runuser resets HOME to the user's own; env sets it back.
            let mut c = Command::new("runuser");
            c.args(["-u", ROOTLESS_USER, "--", "env"])
                .arg(format!("HOME={}", self.path("home").display()))
                .arg(kiln_bin());
            c
        } else {
            Command::new(kiln_bin())
        };
        cmd.args(args)
            .env("HOME", self.path("home"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("KILN_GIT_AUTH_DIR");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("kiln runs")
    }

    /// `kiln plan` of `context`; its compact result.
    fn plan(&self, context: &str, extra: &[String]) -> (Output, PlanResult) {
        let result = self.path("plan.json");
        let _ = std::fs::remove_file(&result);
        let mut args = vec![
            "plan".to_string(),
            "--json".into(),
            format!("--cache-dir={}", self.path("state").display()),
            format!("--result-file={}", result.display()),
        ];
        args.extend(extra.iter().cloned());
        args.push(context.to_string());
        let out = self.kiln(&args, &[]);
        let json = std::fs::read_to_string(&result)
            .unwrap_or_else(|e| panic!("no plan result ({e}): {}", text(&out)));
        (
            out,
            serde_json::from_str::<PlanResult>(&json).expect("a plan result"),
        )
    }

    /// `kiln build` of `context` into `out/` (the final filesystem); its result.
    fn build(&self, context: &str, extra: &[String]) -> (Output, BuildResult) {
        let result = self.path("result.json");
        let _ = std::fs::remove_file(&result);
        let out_dir = self.path("out");
        let _ = std::fs::remove_dir_all(&out_dir);
        let mut args = vec![
            "build".to_string(),
            "--progress=plain".into(),
            format!("--cache-dir={}", self.path("state").display()),
            format!("--result-file={}", result.display()),
            format!("--metadata-file={}", self.path("metadata.json").display()),
            format!("--output=type=local,dest={}", out_dir.display()),
        ];
        args.extend(extra.iter().cloned());
        args.push(context.to_string());
        let out = self.kiln(&args, &[]);
        let json = std::fs::read_to_string(&result)
            .unwrap_or_else(|e| panic!("no build result ({e}): {}", text(&out)));
        (
            out,
            serde_json::from_str::<BuildResult>(&json).expect("a build result"),
        )
    }
}

fn revision(r: &PlanResult) -> Option<String> {
    match r {
        PlanResult::Plan(p) => p.revision.clone(),
        PlanResult::Failure(f) => panic!("the plan failed: {f:?}"),
    }
}

fn failure(r: &PlanResult) -> (Reason, String) {
    match r {
        PlanResult::Failure(f) => (f.reason, f.message.clone()),
        PlanResult::Plan(p) => panic!("the plan succeeded: {p:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Refs, subdirectories, URL forms (kiln plan: no build needed)

#[test]
fn refs_resolve_as_buildkit_resolves_them() {
    let f = fixture();
    let place = Place::new(false);
    let url = f.public.url("repo.git");
    let cases: Vec<(String, &String)> = vec![
        (url.clone(), &f.c2),
        (format!("{url}#main"), &f.c2),
        (format!("{url}#v1"), &f.c1),
        (format!("{url}#refs/tags/v1"), &f.c1),
        (format!("{url}#light"), &f.c2),
        (format!("{url}#feature"), &f.c3),
        (format!("{url}#refs/pull/1/head"), &f.c4),
        (format!("{url}#{}", &f.c4[..10]), &f.c4),
        (format!("{url}?branch=feature"), &f.c3),
        (format!("{url}?tag=v1&checksum={}", &f.c1[..8]), &f.c1),
    ];
    for (context, want) in cases {
        let (out, result) = place.plan(&context, &[]);
        assert!(out.status.success(), "{context}: {}", text(&out));
        assert_eq!(revision(&result).as_ref(), Some(want), "{context}");
    }
}

#[test]
fn a_commit_no_ref_points_at_is_fetched_by_its_hash() {
    let f = fixture();
    // A fresh state directory: the commit is nowhere local, and only the annotated tag v1
    // (not the commit itself) is advertised.
    let place = Place::new(false);
    let context = format!("{}#{}", f.public.url("repo.git"), f.c1);
    let (out, result) = place.plan(&context, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c1));
}

#[test]
fn a_subdirectory_is_the_context_and_its_dockerfile_is_planned() {
    let f = fixture();
    let place = Place::new(false);
    let url = f.public.url("repo.git");
    for context in [format!("{url}#v1:sub"), format!("{url}?tag=v1&subdir=sub")] {
        let (out, result) = place.plan(&context, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let PlanResult::Plan(plan) = &result else {
            panic!("{result:?}")
        };
        assert_eq!(
            plan.base_images,
            ["example.invalid/sub-base:1"],
            "{context}"
        );
        assert_eq!(plan.revision.as_ref(), Some(&f.c1));
    }
    // The operator's form: a URL without .git, told that it is Git.
    let bare = format!("http://127.0.0.1:{}/repo#main:sub", f.public.port);
    let (out, result) = place.plan(&bare, &["--context-type=git".into()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c2));
}

#[test]
fn missing_refs_subdirectories_and_commits_are_missing_context() {
    let f = fixture();
    let place = Place::new(false);
    let url = f.public.url("repo.git");
    for (context, says) in [
        (format!("{url}#no-such-branch"), "no-such-branch"),
        (format!("{url}#main:no/such/dir"), "no/such/dir"),
        (format!("{url}#main:hello.txt"), "hello.txt"),
        (format!("{url}?branch=main&checksum=0000000"), "0000000"),
    ] {
        let (out, result) = place.plan(&context, &[]);
        assert_eq!(out.status.code(), Some(1), "{context}: {}", text(&out));
        let (reason, message) = failure(&result);
        assert_eq!(reason, Reason::MissingContext, "{context}: {message}");
        assert!(message.contains(says), "{context}: {message}");
        assert!(message.contains("repo.git"), "{message}");
    }
    // Nothing listens there: a retryable failure.
    let port = kiln_tests::registry::free_port();
    let (out, result) = place.plan(&format!("http://127.0.0.1:{port}/repo.git#main"), &[]);
    assert!(!out.status.success());
    assert_eq!(failure(&result).0, Reason::ContextFailed);
    // A bad query is an argument error of its own.
    let (out, result) = place.plan(&format!("{url}?frobnicate=1"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(failure(&result).0, Reason::InvalidArgument);
}

#[test]
fn git_protocol_through_git_daemon() {
    let f = fixture();
    let daemon = GitDaemon::start(&f.root.join("public"));
    let place = Place::new(false);
    let (out, result) = place.plan(&format!("{}#v1", daemon.url("repo.git")), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c1));
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[test]
fn a_private_repository_needs_its_credentials() {
    let f = fixture();
    let place = Place::new(false);
    let url = format!("{}#v1", f.private.url("repo.git"));
    let (out, result) = place.plan(&url, &[]);
    assert!(!out.status.success());
    let (reason, message) = failure(&result);
    assert_eq!(reason, Reason::ContextFailed);
    assert!(message.contains("asks for credentials"), "{message}");

    let wrong = place.files("wrong", &[("username", "alice"), ("password", "not-it\n")]);
    let (out, result) = place.plan(&url, &[format!("--git-auth-dir={}", wrong.display())]);
    assert!(!out.status.success());
    let (reason, message) = failure(&result);
    assert_eq!(reason, Reason::ContextFailed);
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("repo.git"), "{message}");
    assert!(!text(&out).contains("not-it") && !message.contains("not-it"));

    // A kubernetes.io/basic-auth Secret, as the operator mounts it (trailing newline and all).
    let auth = place.files(
        "auth",
        &[
            ("username", "alice"),
            ("password", &format!("{PASSWORD}\n")),
        ],
    );
    let (out, result) = place.plan(&url, &[format!("--git-auth-dir={}", auth.display())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c1));
    let seen = f.private.requests();
    assert!(
        seen.iter()
            .any(|r| r.status == 200 && r.authorization.is_some())
    );

    // A token alone goes as x-access-token, as BuildKit's GIT_AUTH_TOKEN does.
    let token = place.files("token", &[("token", TOKEN)]);
    let robot = format!("{}#main", f.robot.url("repo.git"));
    let (out, result) = place.plan(&robot, &[format!("--git-auth-dir={}", token.display())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c2));
}

#[test]
fn refused_credentials_never_show() {
    let f = fixture();
    let place = Place::new(false);
    // Credentials in the URL itself, wrong ones.
    let url = format!(
        "http://alice:hunter2-wrong@127.0.0.1:{}/repo.git#main",
        f.private.port
    );
    let (out, result) = place.build(&url, &[]);
    assert!(!out.status.success());
    let BuildResult::Failure(failure) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(failure.reason, Reason::ContextFailed, "{failure:?}");
    let all = format!("{}{:?}", text(&out), failure);
    assert!(!all.contains("hunter2-wrong"), "{all}");
    assert!(all.contains("alice:xxxxx@127.0.0.1"), "{all}");
}

// ---------------------------------------------------------------------------------------------
// Builds

fn build_a_git_context(rootless: bool) {
    let f = fixture();
    let place = Place::new(rootless);
    let url = format!("{}#v1", f.public.url("repo.git"));
    let (out, result) = place.build(&url, &["--provenance=mode=min".into()]);
    assert!(out.status.success(), "{}", text(&out));
    let BuildResult::Success(success) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(success.revision.as_ref(), Some(&f.c1));
    // Provenance names the repository and the commit as the config source, and has no local
    // sources: the builder fetched the context itself.
    let statement: serde_json::Value =
        serde_json::from_slice(&std::fs::read(place.path("out/provenance.json")).unwrap()).unwrap();
    let params = &statement["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["configSource"]["uri"], url.as_str(), "{params}");
    assert_eq!(params["configSource"]["digest"]["sha1"], f.c1.as_str());
    assert!(
        params["request"]["locals"]
            .as_array()
            .is_none_or(|l| l.is_empty()),
        "{params}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(place.path("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(meta["vcs.revision"], f.c1.as_str());
    assert_eq!(meta["vcs.source"], url.as_str());
    let ctx = place.path("out/ctx");
    assert_eq!(
        std::fs::read_to_string(ctx.join("hello.txt")).unwrap(),
        "hello from c1\n"
    );
    assert_eq!(
        std::fs::read_link(ctx.join("link")).unwrap(),
        Path::new("hello.txt")
    );
    let mode = |p: &str| std::fs::metadata(ctx.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("hello.txt"), 0o644);
    assert!(!ctx.join("ignored.txt").exists(), ".dockerignore applies");
    assert!(
        !ctx.join(".git").exists(),
        "no .git without BUILDKIT_CONTEXT_KEEP_GIT_DIR"
    );

    // BUILDKIT_CONTEXT_KEEP_GIT_DIR keeps a shallow .git at the commit, without credentials.
    let with_creds = format!(
        "http://x-access-token:{TOKEN}@127.0.0.1:{}/repo.git#main",
        f.robot.port
    );
    let (out, result) = place.build(
        &with_creds,
        &["--build-arg=BUILDKIT_CONTEXT_KEEP_GIT_DIR=1".into()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN), "{}", text(&out));
    let BuildResult::Success(success) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(success.revision.as_ref(), Some(&f.c2));
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&ctx)
            .args(["-c", "safe.directory=*"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(git(&["rev-parse", "HEAD"]), f.c2);
    assert_eq!(git(&["rev-parse", "refs/heads/main"]), f.c2);
    assert_eq!(git(&["rev-parse", "--is-shallow-repository"]), "true");
    assert_eq!(git(&["cat-file", "-p", "HEAD:hello.txt"]), "hello from c2");
    let origin = git(&["config", "remote.origin.url"]);
    assert!(
        !origin.contains(TOKEN) && origin.contains("xxxxx"),
        "{origin}"
    );
    assert!(
        !std::fs::read_to_string(place.path("metadata.json"))
            .unwrap()
            .contains(TOKEN)
    );
}

#[test]
fn a_git_context_builds_with_its_revision() {
    build_a_git_context(false);
}

#[test]
fn a_git_context_builds_with_its_revision_rootless() {
    build_a_git_context(true);
}

#[test]
fn git_auth_token_secrets_work_as_in_buildkit() {
    let f = fixture();
    let place = Place::new(false);
    let url = format!("{}#main", f.robot.url("repo.git"));
    let secret = place.files("secrets", &[("token", TOKEN)]);
    let host = format!("127.0.0.1:{}", f.robot.port);
    for id in [
        "GIT_AUTH_TOKEN".to_string(),
        format!("GIT_AUTH_TOKEN.{host}"),
    ] {
        let (out, result) = place.build(
            &url,
            &[format!(
                "--secret=id={id},src={}",
                secret.join("token").display()
            )],
        );
        assert!(out.status.success(), "{id}: {}", text(&out));
        let BuildResult::Success(s) = &result else {
            panic!("{result:?}")
        };
        assert_eq!(s.revision.as_ref(), Some(&f.c2));
    }
    // GIT_AUTH_HEADER is sent as it is.
    use base64::Engine as _;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    let (out, _) = place.kiln_build_env(&url, "GIT_AUTH_HEADER", &header);
    assert!(out.status.success(), "{}", text(&out));
}

impl Place {
    fn kiln_build_env(&self, context: &str, id: &str, value: &str) -> (Output, ()) {
        let out = self.kiln(
            &[
                "build".into(),
                "--progress=plain".into(),
                format!("--cache-dir={}", self.path("state").display()),
                format!("--secret=id={id},env=KILN_TEST_GIT_SECRET"),
                format!(
                    "--output=type=local,dest={}",
                    self.path("out-env").display()
                ),
                context.to_string(),
            ],
            &[("KILN_TEST_GIT_SECRET", value)],
        );
        (out, ())
    }
}

// ---------------------------------------------------------------------------------------------
// ssh

fn ssh_url(sshd: &Sshd, f: &Fixture, fragment: &str) -> String {
    format!(
        "ssh://root@127.0.0.1:{}{}#{fragment}",
        sshd.port,
        f.root.join("public/repo.git").display()
    )
}

#[test]
fn ssh_contexts_check_host_keys() {
    let f = fixture();
    let sshd = Sshd::start("root");
    let place = Place::new(false);
    let key = std::fs::read_to_string(&sshd.key).unwrap();
    let url = ssh_url(&sshd, f, "v1");

    // A kubernetes.io/ssh-auth Secret with known_hosts: fetched.
    let auth = place.files(
        "ssh-auth",
        &[("ssh-privatekey", &key), ("known_hosts", &sshd.known_hosts)],
    );
    let (out, result) = place.plan(&url, &[format!("--git-auth-dir={}", auth.display())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result).as_ref(), Some(&f.c1));

    // No known host key anywhere: refused before connecting, and said so.
    let no_hosts = place.files("ssh-no-hosts", &[("ssh-privatekey", &key)]);
    let (out, result) = place.plan(&url, &[format!("--git-auth-dir={}", no_hosts.display())]);
    assert!(!out.status.success());
    let (reason, message) = failure(&result);
    assert_eq!(reason, Reason::ContextFailed);
    assert!(message.contains("no ssh host key is known"), "{message}");
    assert!(
        message.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{message}"
    );

    // A different key for the host: ssh refuses it.
    let other = Sshd::start("root");
    let wrong_line = other
        .known_hosts
        .replace(&format!(":{} ", other.port), &format!(":{} ", sshd.port));
    let wrong = place.files(
        "ssh-wrong",
        &[("ssh-privatekey", &key), ("known_hosts", &wrong_line)],
    );
    let (out, result) = place.plan(&url, &[format!("--git-auth-dir={}", wrong.display())]);
    assert!(!out.status.success());
    let (_, message) = failure(&result);
    assert!(
        message.contains("Host key verification failed"),
        "{message}"
    );
    assert!(!message.contains("PRIVATE KEY"), "{message}");
}

fn build_over_ssh(rootless: bool) {
    let f = fixture();
    let sshd = Sshd::start("root");
    let place = Place::new(rootless);
    let key = place.files(
        "keys",
        &[("id", &std::fs::read_to_string(&sshd.key).unwrap())],
    );
    // The user's own known_hosts and an --ssh key, as on a workstation.
    place.files("home/.ssh", &[("known_hosts", &sshd.known_hosts)]);
    let (out, result) = place.build(
        &ssh_url(&sshd, f, "feature"),
        &[format!("--ssh=default={}", key.join("id").display())],
    );
    assert!(out.status.success(), "{}", text(&out));
    let BuildResult::Success(s) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(s.revision.as_ref(), Some(&f.c3));
    assert!(place.path("out/ctx/feature.txt").exists());
}

#[test]
fn an_ssh_context_builds_with_an_ssh_key() {
    build_over_ssh(false);
}

#[test]
fn an_ssh_context_builds_with_an_ssh_key_rootless() {
    build_over_ssh(true);
}

// ---------------------------------------------------------------------------------------------
// ADD <git-url>

fn add_git(rootless: bool) {
    let f = fixture();
    let place = Place::new(rootless);
    let url = f.public.url("repo.git");
    let dockerfile = format!(
        "FROM scratch\n\
         ADD {url}#v1 /v1\n\
         ADD --keep-git-dir=true {url}#feature /feature/\n\
         ADD {url}?branch=main&subdir=sub /sub/\n"
    );
    let ctx = place.files("ctx", &[("Dockerfile", &dockerfile)]);
    let ctx = ctx.display().to_string();
    let (out, result) = place.build(&ctx, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let BuildResult::Success(first) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(first.revision, None, "a local context has no revision");
    let read = |p: &str| std::fs::read_to_string(place.path("out").join(p)).unwrap();
    assert_eq!(read("v1/hello.txt"), "hello from c1\n");
    assert!(!place.path("out/v1/.git").exists());
    assert_eq!(read("feature/feature.txt"), "feature\n");
    assert!(
        place.path("out/feature/.git/HEAD").exists(),
        "--keep-git-dir"
    );
    assert_eq!(read("feature/.git/HEAD").trim(), f.c3);
    assert_eq!(read("sub/file.txt"), "in sub\n");
    assert!(!place.path("out/sub/hello.txt").exists());

    // Again: every ADD is answered from the cache, keyed by the resolved commits.
    let (out, result) = place.build(&ctx, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let BuildResult::Success(again) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(again.steps.cached, again.steps.total, "{}", text(&out));

    // A checksum that is not the commit's fails the step.
    let bad = place.files(
        "bad",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum=0123456 {url}#v1 /v1\n"),
        )],
    );
    let (out, result) = place.build(&bad.display().to_string(), &[]);
    assert!(!out.status.success());
    let BuildResult::Failure(fail) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(fail.reason, Reason::StepFailed, "{fail:?}");
    assert!(fail.message.contains("0123456"), "{}", fail.message);
    let good = place.files(
        "good",
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\nADD --checksum={} {url}#v1 /v1\n",
                &f.c1[..12]
            ),
        )],
    );
    let (out, _) = place.build(&good.display().to_string(), &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn add_fetches_git_sources() {
    add_git(false);
}

#[test]
fn add_fetches_git_sources_rootless() {
    add_git(true);
}

// ---------------------------------------------------------------------------------------------
// URL contexts

fn tar_gz(dir: &Path, files: &[(&str, &str)]) -> Vec<u8> {
    let src = dir.join("src");
    for (name, content) in files {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let out = dir.join("ctx.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read(out).unwrap()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn url_contexts_are_checked_and_unpacked() {
    let files = tempfile::tempdir().unwrap();
    let archive = tar_gz(
        files.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            ("data/a.txt", "from a tarball\n"),
        ],
    );
    let served = files.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("ctx.tar.gz"), &archive).unwrap();
    std::fs::write(
        served.join("Dockerfile.txt"),
        "FROM scratch\nWORKDIR /made-by-a-url-dockerfile\n",
    )
    .unwrap();
    let server = HttpServer::start(&served, None);
    let place = Place::new(false);
    let url = server.url("ctx.tar.gz");
    let sum = sha256(&archive);

    let (out, result) = place.build(&url, &[format!("--context-sha256={sum}")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(matches!(result, BuildResult::Success(ref s) if s.revision.is_none()));
    assert_eq!(
        std::fs::read_to_string(place.path("out/ctx/data/a.txt")).unwrap(),
        "from a tarball\n"
    );
    let meta = std::fs::read_to_string(place.path("metadata.json")).unwrap();
    assert!(meta.contains(&url), "{meta}");

    let wrong = sha256(b"something else");
    let (out, result) = place.build(&url, &[format!("--context-sha256={wrong}")]);
    assert!(!out.status.success());
    let BuildResult::Failure(fail) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(fail.reason, Reason::MissingContext, "{fail:?}");
    assert!(
        fail.message.contains("checksum mismatch"),
        "{}",
        fail.message
    );

    let (out, result) = place.plan(&url, &[format!("--context-sha256={sum}")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(revision(&result), None);

    // Bounded as ADD is.
    let (out, result) = place.build(&url, &["--add-max-bytes=100".into()]);
    assert!(!out.status.success());
    let BuildResult::Failure(fail) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(fail.reason, Reason::ContextFailed, "{fail:?}");

    // A URL that is not an archive is the Dockerfile.
    let (out, result) = place.build(&server.url("Dockerfile.txt"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(matches!(result, BuildResult::Success(_)));
    assert!(
        text(&out).contains("it is the Dockerfile"),
        "{}",
        text(&out)
    );
    assert!(place.path("out/made-by-a-url-dockerfile").is_dir());

    let (out, result) = place.build(&server.url("nothing-here.tar.gz"), &[]);
    assert!(!out.status.success());
    let BuildResult::Failure(fail) = &result else {
        panic!("{result:?}")
    };
    assert_eq!(fail.reason, Reason::MissingContext, "{fail:?}");

    // --context-sha256 is for URLs only, and must be a digest.
    let (out, _) = place.build(&url, &["--context-sha256=xyz".into()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
