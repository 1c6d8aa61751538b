//! `RUN --mount` at build time: every type and option, as root and rootless, and the `sharing`
//! modes of cache mounts between two real `kiln` processes on one cache directory.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use common::{Env, ROOTLESS_USER, host_tools, text};

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("mounts-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("mounts-rootless", true))
}

/// Build and return the final filesystem.
fn build_fs(env: &Env, name: &str, files: &[(&str, &str)], args: &[&str]) -> PathBuf {
    let ctx = env.context(name, files);
    let fs = env.dir.join(format!("{name}-fs"));
    let _ = std::fs::remove_dir_all(&fs);
    let mut all = vec![format!("--output=type=local,dest={}", fs.display())];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = env.build(&ctx, &all);
    assert!(run.status.success(), "{name}: {}", text(&run));
    fs
}

fn read(fs: &Path, path: &str) -> String {
    std::fs::read_to_string(fs.join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// type=cache

fn cache_options(env: &Env, name: &str) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --mount=type=cache,id=c1,target=/cache,uid=1000,gid=50,mode=0710 \
            stat -c '%u:%g %a' /cache > /owner && (echo x >> /cache/runs) && wc -l < /cache/runs > /runs\n\
        RUN --mount=type=cache,id=c1,target=/ro,uid=1000,gid=50,mode=0710,ro \
            (touch /ro/nope 2>/dev/null && echo writable || echo read-only) > /ro-result\n\
        RUN --mount=type=cache,target=/var/cache/noid echo by-target > /var/cache/noid/f && ls /var/cache/noid > /noid\n";
    let fs1 = build_fs(env, name, &[("Dockerfile", dockerfile)], &["--no-cache"]);
    assert_eq!(
        read(&fs1, "owner"),
        "1000:50 710",
        "uid, gid and mode of a new cache"
    );
    assert_eq!(read(&fs1, "runs"), "1");
    assert_eq!(read(&fs1, "ro-result"), "read-only");
    assert!(
        !fs1.join("cache/runs").exists() && !fs1.join("cache").exists(),
        "cache content and mount point stay out of the image"
    );
    assert!(!fs1.join("var/cache/noid").exists());
    // A second build finds the cache warm (same id, owner and mode), even with --no-cache.
    let fs2 = build_fs(env, name, &[("Dockerfile", dockerfile)], &["--no-cache"]);
    assert_eq!(read(&fs2, "runs"), "2", "the cache persisted across builds");
}

#[test]
fn cache_mount_options_and_persistence() {
    cache_options(root_env(), "cache-opts");
}

#[test]
fn cache_mount_options_and_persistence_rootless() {
    cache_options(rootless_env(), "cache-opts");
}

#[test]
fn cache_mounts_are_keyed_by_id_owner_mode_and_namespace() {
    let env = root_env();
    let df = |opts: &str| {
        format!(
            "FROM kiln-ref/busybox:1\nRUN --mount=type=cache,id=k,target=/c{opts} (ls /c | wc -l) > /n && touch /c/$(cat /proc/sys/kernel/random/uuid)\n"
        )
    };
    let count = |name: &str, opts: &str, extra: &[&str]| -> String {
        let fs = build_fs(
            env,
            name,
            &[("Dockerfile", &df(opts))],
            &[&["--no-cache"], extra].concat(),
        );
        read(&fs, "n")
    };
    assert_eq!(count("key-a", "", &[]), "0");
    assert_eq!(count("key-a", "", &[]), "1", "same key, same cache");
    assert_eq!(
        count("key-b", ",uid=5", &[]),
        "0",
        "another uid is another cache"
    );
    assert_eq!(
        count("key-c", ",mode=0700", &[]),
        "0",
        "another mode is another cache"
    );
    assert_eq!(
        count("key-d", "", &["--cache-mount-ns=team-b"]),
        "0",
        "another namespace is another cache"
    );
    // BuildKit's BUILDKIT_CACHE_MOUNT_NS build argument is the same namespace as the flag.
    assert_eq!(
        count("key-d", "", &["--build-arg=BUILDKIT_CACHE_MOUNT_NS=team-b"]),
        "1",
        "the build argument names the flag's namespace"
    );
}

#[test]
fn cache_mounts_are_seeded_from_a_stage() {
    let env = root_env();
    let dockerfile = "FROM kiln-ref/busybox:1 AS seed\nRUN mkdir -p /deps && echo seeded > /deps/lib.txt\n\
        FROM kiln-ref/busybox:1\n\
        RUN --mount=type=cache,id=seeded,target=/c,from=seed,source=/deps cat /c/lib.txt > /got\n";
    let fs = build_fs(
        env,
        "cache-seed",
        &[("Dockerfile", dockerfile)],
        &["--no-cache"],
    );
    assert_eq!(read(&fs, "got"), "seeded");
}

/// Start a build in the background (as the env's user).
fn spawn_build(env: &Env, ctx: &Path, args: &[&str]) -> Child {
    let mut cmd = if env.rootless {
        let mut c = Command::new("runuser");
        c.args(["-u", ROOTLESS_USER, "--"]).arg(common::kiln_bin());
        c
    } else {
        Command::new(common::kiln_bin())
    };
    cmd.arg("build")
        .arg("--progress=plain")
        .arg(format!("--cache-dir={}", env.state.display()))
        .arg(format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ))
        .args(args)
        .arg(ctx)
        .env("HOME", env.dir.join("home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn finish(mut child: Child) -> String {
    let mut out = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");
    out
}

/// Two builds at once, on one cache dir, each writing its start and end time (from
/// /proc/uptime) into a cache mount with the given sharing.
fn two_concurrent(env: &Env, sharing: &str, id: &str, body: &str) -> (PathBuf, PathBuf) {
    let dockerfile = |who: &str| {
        format!(
            "FROM kiln-ref/busybox:1\nRUN --mount=type=cache,id={id},target=/c,sharing={sharing} \
             cut -d' ' -f1 /proc/uptime > /start && {} && cut -d' ' -f1 /proc/uptime > /end\n",
            body.replace("WHO", who)
        )
    };
    let a = env.context(&format!("{id}-a"), &[("Dockerfile", &dockerfile("a"))]);
    let b = env.context(&format!("{id}-b"), &[("Dockerfile", &dockerfile("b"))]);
    let (fa, fb) = (
        env.dir.join(format!("{id}-a-fs")),
        env.dir.join(format!("{id}-b-fs")),
    );
    let ca = spawn_build(
        env,
        &a,
        &[
            "--no-cache",
            &format!("--output=type=local,dest={}", fa.display()),
        ],
    );
    let cb = spawn_build(
        env,
        &b,
        &[
            "--no-cache",
            &format!("--output=type=local,dest={}", fb.display()),
        ],
    );
    finish(ca);
    finish(cb);
    (fa, fb)
}

fn times(fs: &Path) -> (f64, f64) {
    (
        read(fs, "start").parse().unwrap(),
        read(fs, "end").parse().unwrap(),
    )
}

fn sharing_semantics(env: &Env, tag: &str) {
    // locked: the second step starts only after the first one ends.
    let (fa, fb) = two_concurrent(env, "locked", &format!("locked-{tag}"), "sleep 2");
    let ((sa, ea), (sb, eb)) = (times(&fa), times(&fb));
    assert!(
        sb >= ea || sa >= eb,
        "locked steps overlapped: a {sa}..{ea}, b {sb}..{eb}"
    );

    // shared: both run at once and each sees the other's file.
    let body = "echo WHO > /c/WHO && for i in $(seq 1 100); do [ -e /c/a ] && [ -e /c/b ] && break; sleep 0.1; done && ls /c > /seen";
    let (fa, fb) = two_concurrent(env, "shared", &format!("shared-{tag}"), body);
    assert_eq!(read(&fa, "seen"), "a\nb");
    assert_eq!(read(&fb, "seen"), "a\nb");

    // private: the concurrent steps get separate instances.
    let body = "echo WHO > /c/WHO && sleep 2 && ls /c > /seen";
    let (fa, fb) = two_concurrent(env, "private", &format!("private-{tag}"), body);
    assert_eq!(read(&fa, "seen"), "a", "private caches are not shared");
    assert_eq!(read(&fb, "seen"), "b");
    let mut instances = Vec::new();
    for entry in std::fs::read_dir(env.state.join("cache-mounts"))
        .unwrap()
        .flatten()
    {
        let meta = std::fs::read_to_string(entry.path().join("meta.json")).unwrap_or_default();
        if meta.contains(&format!("\"private-{tag}\"")) {
            instances = std::fs::read_dir(entry.path())
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
        }
    }
    instances.sort();
    assert_eq!(instances, ["0", "1"], "two instances exist");
}

#[test]
fn cache_sharing_between_two_kiln_processes() {
    sharing_semantics(root_env(), "root");
}

#[test]
fn cache_sharing_between_two_rootless_kiln_processes() {
    sharing_semantics(rootless_env(), "rootless");
}

// ---------------------------------------------------------------------------------------------
// type=bind and type=tmpfs

fn bind_mounts(env: &Env) {
    let dockerfile = "FROM kiln-ref/busybox:1 AS tools\nRUN mkdir /out && echo from-stage > /out/tool\n\
        FROM kiln-ref/busybox:1\n\
        RUN --mount=type=bind,source=data,target=/data cat /data/f > /ctx && (touch /data/new 2>/dev/null && echo rw || echo ro) > /ctx-mode\n\
        RUN --mount=type=bind,source=data,target=/data,rw echo scribble > /data/f && cat /data/f > /rw-seen\n\
        RUN --mount=type=bind,from=tools,source=/out,target=/t cat /t/tool > /stage\n\
        RUN --mount=type=bind,from=kiln-ref/busybox:1,source=/etc/passwd,target=/p head -1 /p > /image\n";
    let fs = build_fs(
        env,
        "bind",
        &[("Dockerfile", dockerfile), ("data/f", "context-file\n")],
        &[],
    );
    assert_eq!(read(&fs, "ctx"), "context-file");
    assert_eq!(
        read(&fs, "ctx-mode"),
        "ro",
        "bind mounts are read-only by default"
    );
    assert_eq!(read(&fs, "rw-seen"), "scribble");
    assert_eq!(read(&fs, "stage"), "from-stage");
    assert_eq!(read(&fs, "image"), "root:x:0:0:root:/root:/bin/sh");
    assert!(
        !fs.join("data").exists(),
        "the mount point and rw writes are discarded"
    );
    let ctx_file = env.dir.join("contexts/bind/data/f");
    assert_eq!(
        std::fs::read_to_string(&ctx_file).unwrap(),
        "context-file\n",
        "rw writes never reach the context"
    );
}

#[test]
fn bind_mounts_from_the_context_a_stage_and_an_image() {
    bind_mounts(root_env());
}

#[test]
fn bind_mounts_rootless() {
    bind_mounts(rootless_env());
}

#[test]
fn a_bind_mount_keys_its_step_by_content_not_mtime() {
    let env = root_env();
    let dockerfile = "FROM kiln-ref/busybox:1\nRUN --mount=type=bind,source=src,target=/src cat /src/f > /copy\n";
    let ctx = env.context(
        "bind-key",
        &[("Dockerfile", dockerfile), ("src/f", "one\n")],
    );
    let meta = env.dir.join("bind-key.json");
    let build = || {
        let run = env.build(&ctx, &[&format!("--metadata-file={}", meta.display())]);
        assert!(run.status.success(), "{}", text(&run));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&meta).unwrap()).unwrap()["kiln.runs"].as_u64().unwrap()
    };
    build();
    // Same bytes, new mtime: still cached (buildah's issue #5400 is that it is not).
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(ctx.join("src/f"), "one\n").unwrap();
    assert_eq!(build(), 0, "an mtime change must not rerun the step");
    std::fs::write(ctx.join("src/f"), "two\n").unwrap();
    assert_eq!(build(), 1, "a content change must rerun it");
}

fn tmpfs_mounts(env: &Env) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --mount=type=tmpfs,target=/t,size=4m df -k /t | tail -1 | awk '{print $2}' > /size && echo x > /t/f\n";
    let fs = build_fs(env, "tmpfs", &[("Dockerfile", dockerfile)], &["--no-cache"]);
    assert_eq!(read(&fs, "size"), "4096");
    assert!(!fs.join("t").exists());
}

#[test]
fn tmpfs_mounts_have_their_size_and_leave_nothing() {
    tmpfs_mounts(root_env());
}

#[test]
fn tmpfs_mounts_rootless() {
    tmpfs_mounts(rootless_env());
}

// ---------------------------------------------------------------------------------------------
// type=secret

const SECRET: &str = "kiln-very-secret-value-7f3a";

fn secrets(env: &Env, name: &str) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --mount=type=secret,id=token test \"$(sha256sum < /run/secrets/token | cut -c1-64)\" = \"$EXPECTED\" && echo ok > /default\n\
        RUN --mount=type=secret,id=token,target=/etc/app/key,uid=1000,gid=50,mode=0440 stat -c '%u:%g %a' /etc/app/key > /custom\n\
        RUN --mount=type=secret,id=token,env=TOKEN test \"$(printf %s \"$TOKEN\" | sha256sum | cut -c1-64)\" = \"$EXPECTED\" && test ! -e /run/secrets/token && echo ok > /env\n\
        RUN --mount=type=secret,id=absent echo ran-without > /optional\n\
        RUN --mount=type=secret,id=fromenv cat /run/secrets/fromenv > /dev/null && echo ok > /fromenv\n";
    // The Dockerfile holds the secret's digest, never the secret: the text of a RUN is shown.
    let dockerfile = dockerfile.replace(
        "$EXPECTED",
        kiln_worker::digest::Digest::of(SECRET.as_bytes()).hex(),
    );
    let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
    let secret_file = env.dir.join(format!("{name}.secret"));
    std::fs::write(&secret_file, SECRET).unwrap();
    if env.rootless {
        Command::new("chown")
            .arg(format!("{ROOTLESS_USER}:{ROOTLESS_USER}"))
            .arg(&secret_file)
            .status()
            .unwrap();
    }
    let layout = env.dir.join(format!("{name}-layout"));
    let fs = env.dir.join(format!("{name}-fs"));
    let mut args = vec![
        "--no-cache".to_string(),
        format!("--secret=id=token,src={}", secret_file.display()),
        "--secret=id=fromenv,env=KILN_TEST_SECRET".into(),
        format!("--output=type=oci,dest={}", layout.display()),
        format!("--output=type=local,dest={}", fs.display()),
    ];
    args.insert(0, "build".into());
    args.insert(1, "--progress=plain".into());
    args.insert(2, format!("--cache-dir={}", env.state.display()));
    args.insert(
        3,
        format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ),
    );
    args.push(ctx.display().to_string());
    let mut cmd = if env.rootless {
        let mut c = Command::new("runuser");
        c.args([
            "-u",
            ROOTLESS_USER,
            "--",
            "env",
            &format!("KILN_TEST_SECRET={SECRET}"),
        ])
        .arg(common::kiln_bin());
        c
    } else {
        let mut c = Command::new(common::kiln_bin());
        c.env("KILN_TEST_SECRET", SECRET);
        c
    };
    let run = cmd
        .args(&args)
        .env("HOME", env.dir.join("home"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(read(&fs, "default"), "ok");
    assert_eq!(read(&fs, "custom"), "1000:50 440");
    assert_eq!(read(&fs, "env"), "ok");
    assert_eq!(read(&fs, "optional"), "ran-without");
    assert_eq!(read(&fs, "fromenv"), "ok");
    assert!(
        !fs.join("run/secrets").exists() && !fs.join("etc/app").exists(),
        "no mount point left"
    );
    assert!(
        !text(&run).contains(SECRET),
        "the secret is in the build's output"
    );
    // Every blob of the image and every file of the store, decompressed where compressed.
    for dir in [&layout, &env.state] {
        let found = scan_for(dir, SECRET.as_bytes());
        assert!(found.is_empty(), "the secret is in {found:?}");
    }
}

/// Files under `dir` whose content (gunzipped or unzstd'ed when compressed) holds `needle`.
fn scan_for(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let mut plain = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain);
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            plain = zstd::decode_all(&bytes[..]).unwrap_or_default();
        }
        if bytes.windows(needle.len()).any(|w| w == needle)
            || plain.windows(needle.len()).any(|w| w == needle)
        {
            found.push(entry.path().to_path_buf());
        }
    }
    found
}

#[test]
fn secrets_land_where_asked_and_nowhere_else() {
    secrets(root_env(), "secrets");
}

#[test]
fn secrets_rootless() {
    secrets(rootless_env(), "secrets");
}

#[test]
fn a_missing_required_secret_fails_before_any_step_runs() {
    let env = root_env();
    let ctx = env.context(
        "secret-required",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN echo first-step\nRUN --mount=type=secret,id=npmrc,required=true true\n")],
    );
    let run = env.build(&ctx, &["--no-cache"]);
    assert!(!run.status.success());
    let t = text(&run);
    assert!(t.contains("secret \"npmrc\" is required (line 3)"), "{t}");
    assert!(
        !t.contains("first-step"),
        "a step ran before the check: {t}"
    );
}

// ---------------------------------------------------------------------------------------------
// type=ssh

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An sshd on loopback that lets `pubkey` in as root, and nothing else.
fn sshd(dir: &Path, pubkey: &Path) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("host_ed25519");
    let _ = std::fs::remove_file(&host_key);
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .unwrap()
            .success()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
            host_key.display(),
            pubkey.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Sshd { child, port }
}

fn ssh_mounts(env: &Env, name: &str) {
    let keydir = env.dir.join(format!("{name}-keys"));
    std::fs::create_dir_all(&keydir).unwrap();
    let key = keydir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-ssh-test", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let server = sshd(&keydir, &keydir.join("id_ed25519.pub"));
    let dockerfile = format!(
        "FROM kiln-ref/busybox:1\nCOPY tools/ /\n\
         RUN --mount=type=ssh ssh-add -l > /listed\n\
         RUN --mount=type=ssh,id=deploy,target=/agent.sock,uid=1000,gid=50,mode=0660 stat -c '%u %g %a' /agent.sock > /sock && echo $SSH_AUTH_SOCK > /env\n\
         RUN --mount=type=ssh ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null -o BatchMode=yes -p {} root@127.0.0.1 echo hello-over-ssh > /remote\n\
         RUN --mount=type=ssh,id=absent echo optional-ok > /optional\n\
         RUN test ! -e /etc/ssh/ssh_known_hosts && echo none > /no-known-hosts\n",
        server.port
    );
    // The server's host key, for `--ssh-known-hosts`: the step above checks it strictly.
    let host_pub = std::fs::read_to_string(keydir.join("host_ed25519.pub")).unwrap();
    let mut fields = host_pub.split_whitespace();
    let known_hosts = keydir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
    host_tools(&ctx.join("tools"), &["/usr/bin/ssh", "/usr/bin/ssh-add"]);
    if env.rootless {
        Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(&ctx)
            .arg(&keydir)
            .status()
            .unwrap();
    }
    let layout = env.dir.join(format!("{name}-layout"));
    let fs = env.dir.join(format!("{name}-fs"));
    let run = env.build(
        &ctx,
        &[
            "--no-cache",
            &format!("--ssh=default={}", key.display()),
            &format!("--ssh=deploy={}", key.display()),
            &format!("--ssh-known-hosts=default={}", known_hosts.display()),
            &format!("--output=type=oci,dest={}", layout.display()),
            &format!("--output=type=local,dest={}", fs.display()),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        read(&fs, "listed").contains("kiln-ssh-test"),
        "{}",
        read(&fs, "listed")
    );
    assert_eq!(read(&fs, "sock"), "1000 50 660");
    assert_eq!(read(&fs, "env"), "/agent.sock");
    assert_eq!(read(&fs, "remote"), "hello-over-ssh");
    assert_eq!(read(&fs, "optional"), "optional-ok");
    assert_eq!(read(&fs, "no-known-hosts"), "none");
    assert!(
        !fs.join("etc/ssh/ssh_known_hosts").exists(),
        "the known hosts are in no layer"
    );
    assert!(!fs.join("run/buildkit").exists() && !fs.join("agent.sock").exists());
    let private = std::fs::read_to_string(&key).unwrap();
    let body = private.lines().nth(1).unwrap().as_bytes().to_vec();
    for dir in [&layout, &env.state] {
        assert!(
            scan_for(dir, &body).is_empty(),
            "the private key is in {}",
            dir.display()
        );
    }
}

#[test]
fn ssh_mounts_serve_keys_to_a_real_ssh_client() {
    ssh_mounts(root_env(), "ssh");
}

#[test]
fn ssh_mounts_rootless() {
    ssh_mounts(rootless_env(), "ssh");
}

// ---------------------------------------------------------------------------------------------
// --network and --security

fn network_and_security(env: &Env) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --network=none ls /sys/class/net > /none\n\
        RUN --network=host ls /sys/class/net | wc -l > /host\n\
        RUN --security=insecure grep CapBnd /proc/self/status > /insecure\n\
        RUN grep CapBnd /proc/self/status > /sandbox\n";
    let ctx = env.context("netsec", &[("Dockerfile", dockerfile)]);
    let refused = env.build(&ctx, &["--no-cache"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--allow security.insecure"),
        "{}",
        text(&refused)
    );
    let fs = build_fs(
        env,
        "netsec",
        &[("Dockerfile", dockerfile)],
        &["--no-cache", "--allow=security.insecure"],
    );
    assert_eq!(read(&fs, "none"), "lo", "--network=none has loopback only");
    assert!(
        read(&fs, "host").parse::<u32>().unwrap() > 1,
        "--network=host sees the host's interfaces"
    );
    assert_ne!(
        read(&fs, "insecure"),
        read(&fs, "sandbox"),
        "insecure keeps more capabilities"
    );
}

#[test]
fn network_and_security_modes() {
    network_and_security(root_env());
}

#[test]
fn network_and_security_modes_rootless() {
    network_and_security(rootless_env());
}

#[test]
fn a_missing_required_ssh_key_fails_before_any_step_runs() {
    let env = root_env();
    let ctx = env.context(
        "ssh-required",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN echo first-step\nRUN --mount=type=ssh,id=github,required=true true\n")],
    );
    let run = env.build(&ctx, &["--no-cache"]);
    assert!(!run.status.success());
    let t = text(&run);
    assert!(t.contains("ssh key \"github\" is required (line 3)"), "{t}");
    assert!(!t.contains("first-step"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// --cache-volume: a cache on a volume of its own (the operator's PVCs)

fn cache_on_a_volume(env: &Env, name: &str) {
    let volume = env.dir.join(format!("{name}-volume"));
    let other = env.dir.join(format!("{name}-other"));
    for d in [&volume, &other] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    if env.rootless {
        // What the init container does to a volume the storage created owned by root, 0750.
        for d in [&volume, &other] {
            let out = Command::new("chmod").arg("0750").arg(d).output().unwrap();
            assert!(out.status.success());
            let out = Command::new(common::kiln_bin())
                .args(["prepare-volumes", "--owner"])
                .arg(format!("{0}:{0}", common::rootless_uid()))
                .arg(d)
                .output()
                .unwrap();
            assert!(out.status.success(), "prepare-volumes: {}", text(&out));
        }
    }
    let vol_arg = |id: &str, mode: u32, dir: &Path| {
        format!(
            "--cache-volume={{\"id\":\"{id}\",\"uid\":0,\"gid\":0,\"mode\":{mode},\"from\":null,\"source\":null,\"dir\":\"{}\"}}",
            dir.display()
        )
    };
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --mount=type=cache,id=pvc,target=/cache (echo run >> /cache/runs) && wc -l < /cache/runs > /runs\n\
        RUN --mount=type=cache,id=pvc,target=/c2,mode=0700 echo other-mode > /c2/m\n\
        RUN --mount=type=cache,id=state,target=/s echo in-state > /s/f\n";
    let args = [
        "--no-cache".to_string(),
        vol_arg("pvc", 0o755, &volume),
        vol_arg("pvc", 0o700, &other),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fs = build_fs(env, name, &[("Dockerfile", dockerfile)], &args);
    assert_eq!(read(&fs, "runs"), "1");
    let fs = build_fs(env, name, &[("Dockerfile", dockerfile)], &args);
    assert_eq!(read(&fs, "runs"), "2", "the cache on the volume persists");
    let files_under = |d: &Path| -> Vec<String> {
        walk(d)
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    };
    let in_volume = files_under(&volume);
    assert!(in_volume.contains(&"runs".to_string()), "{in_volume:?}");
    assert!(
        !in_volume.contains(&"m".to_string()),
        "another mode is another cache"
    );
    assert!(files_under(&other).contains(&"m".to_string()));
    assert!(
        !in_volume.contains(&"f".to_string()),
        "an unnamed cache stays in the state dir"
    );
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn a_cache_volume_holds_its_cache() {
    cache_on_a_volume(root_env(), "cachevol");
}

#[test]
fn a_cache_volume_holds_its_cache_rootless() {
    cache_on_a_volume(rootless_env(), "cachevol-rootless");
}

#[test]
fn prepare_volumes_needs_only_cap_chown() {
    // What the operator's init container can do: root with CAP_CHOWN and nothing else, on a
    // root-owned 0750 directory as a hostPath provisioner makes it.
    let d = tempfile::tempdir().unwrap();
    let v = d.path().join("claim");
    std::fs::create_dir(&v).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    };
    run(Command::new("chmod").arg("0750").arg(&v));
    run(Command::new("setpriv")
        .args(["--bounding-set=-all,+chown", "--inh-caps=-all"])
        .arg(common::kiln_bin())
        .args(["prepare-volumes", "--owner=1000:1000"])
        .arg(&v));
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&v).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o700));
    // The next build's init container finds it prepared, and may not even read it: fine.
    run(Command::new("setpriv")
        .args(["--bounding-set=-all,+chown", "--inh-caps=-all"])
        .arg(common::kiln_bin())
        .args(["prepare-volumes", "--owner=1000:1000"])
        .arg(&v));
}

/// A cache volume that fills up (a PVC at its size): the step fails with reason DiskFull, and
/// the message names the mount, not only the exit code.
#[test]
fn a_full_cache_volume_fails_the_step_disk_full() {
    let env = root_env();
    let volume = env.dir.join("fullvol-volume");
    let _ = Command::new("umount").arg(&volume).output();
    let _ = std::fs::remove_dir_all(&volume);
    std::fs::create_dir_all(&volume).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "kiln-test-full"])
        .arg(&volume)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount tmpfs: {}", text(&out));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).output();
        }
    }
    let _unmount = Unmount(volume.clone());
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --mount=type=cache,id=big,target=/cache dd if=/dev/zero of=/cache/fill bs=64k count=64\n";
    let ctx = env.context("fullvol", &[("Dockerfile", dockerfile)]);
    let result = env.dir.join("fullvol-result.json");
    let _ = std::fs::remove_file(&result);
    let vol = format!(
        "--cache-volume={{\"id\":\"big\",\"uid\":0,\"gid\":0,\"mode\":493,\"from\":null,\"source\":null,\"dir\":\"{}\"}}",
        volume.display()
    );
    let run = env.build(
        &ctx,
        &[
            "--no-cache",
            &vol,
            &format!("--result-file={}", result.display()),
        ],
    );
    assert!(!run.status.success(), "the step filled 1 MiB with 4 MiB");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(json["reason"], "DiskFull", "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/cache is full") && message.contains("exit code: 1"),
        "{message}"
    );
}
