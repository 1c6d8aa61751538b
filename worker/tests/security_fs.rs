//! Hostile builds against the filesystem side of the sandbox (issue 15), as root and rootless:
//! each plants a sentinel outside the build's roots, attacks it, and checks that nothing about
//! it changed (existence, content, mode, owner, time).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Env, ROOTLESS_USER, text};

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("secfs-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("secfs-rootless", true))
}

/// The same hostile build as a test as root and one as the rootless user.
macro_rules! root_and_rootless {
    ($root:ident, $rootless:ident, $attack:ident, $name:literal) => {
        #[test]
        fn $root() {
            $attack(root_env(), $name);
        }

        #[test]
        fn $rootless() {
            $attack(rootless_env(), $name);
        }
    };
}

/// A host file outside every root, owned by whoever builds (so that a chmod through a followed
/// symlink would succeed and show), mode 0644.
struct Sentinel {
    path: PathBuf,
    before: (u32, u32, u32, i64, Vec<u8>),
}

fn give_to_builder(env: &Env, path: &Path) {
    if env.rootless {
        let ok = Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Sentinel {
    fn new(env: &Env, name: &str) -> Sentinel {
        let dir = env.dir.join("host").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sentinel");
        std::fs::write(&path, b"host content\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        give_to_builder(env, &env.dir.join("host"));
        let before = Sentinel::state(&path);
        Sentinel { path, before }
    }

    fn state(path: &Path) -> (u32, u32, u32, i64, Vec<u8>) {
        let m = std::fs::symlink_metadata(path).expect("the sentinel still exists");
        (
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            std::fs::read(path).unwrap(),
        )
    }

    fn assert_unchanged(&self, what: &str) {
        assert_eq!(Sentinel::state(&self.path), self.before, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 2: a directory's mode applied by path after a symlink replaced it.

fn copy_from_replaced_dir(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    let dockerfile = format!(
        "FROM kiln-ref/busybox:1 AS a\n\
         RUN mkdir -p /s1/d /s2 && chmod 6777 /s1/d && ln -s {} /s2/d\n\
         FROM kiln-ref/busybox:1\n\
         COPY --from=a /s1/ /s2/ /out/\n",
        s.path.display()
    );
    let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
    let out = env.build(&ctx, &["--no-cache"]);
    s.assert_unchanged(&text(&out));
}

root_and_rootless!(
    copy_from_cannot_chmod_a_host_file,
    copy_from_cannot_chmod_a_host_file_rootless,
    copy_from_replaced_dir,
    "copy-chmod"
);

/// A tar whose `d/` (mode 6777) is followed by `d`, a symlink to `target`.
fn evil_tar(dir: &Path, target: &Path) -> PathBuf {
    let work = dir.join("evil-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("d")).unwrap();
    std::fs::set_permissions(work.join("d"), std::fs::Permissions::from_mode(0o6777)).unwrap();
    let tar = dir.join("evil.tar");
    let _ = std::fs::remove_file(&tar);
    let run = |args: &[&str]| {
        let out = Command::new("tar")
            .current_dir(&work)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    run(&["--numeric-owner", "-cf", tar.to_str().unwrap(), "d/"]);
    std::fs::remove_dir(work.join("d")).unwrap();
    std::os::unix::fs::symlink(target, work.join("d")).unwrap();
    run(&["--numeric-owner", "-rf", tar.to_str().unwrap(), "d"]);
    std::fs::remove_dir_all(&work).unwrap();
    tar
}

fn add_archive_replaced_dir(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    let ctx = env.context(
        name,
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nADD evil.tar /x/\n")],
    );
    evil_tar(&ctx, &s.path);
    give_to_builder(env, &ctx);
    let out = env.build(&ctx, &["--no-cache"]);
    s.assert_unchanged(&text(&out));
}

root_and_rootless!(
    an_add_archive_cannot_chmod_a_host_file,
    an_add_archive_cannot_chmod_a_host_file_rootless,
    add_archive_replaced_dir,
    "add-chmod"
);

/// An OCI layout whose only layer is `layer` (an uncompressed tar), tagged `1`.
fn oci_layout(dir: &Path, layer: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let _ = std::fs::remove_dir_all(&layout);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = blobs.join("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        let hex = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        std::fs::rename(&tmp, blobs.join(&hex)).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&std::fs::read(layer).unwrap());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"1"}}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

fn pulled_layer_replaced_dir(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    let ctx = env.context(name, &[("Dockerfile", "FROM evil/layer:1\nRUN true\n")]);
    let tar = evil_tar(&env.dir.join("host").join(name), &s.path);
    let layout = oci_layout(&env.dir.join("host").join(name), &tar);
    give_to_builder(env, &env.dir.join("host"));
    let ctx_arg = format!(
        "--build-context=evil/layer:1=oci-layout://{}",
        layout.display()
    );
    let out = env.build(&ctx, &["--no-cache", &ctx_arg]);
    s.assert_unchanged(&text(&out));
}

root_and_rootless!(
    a_pulled_layer_cannot_chmod_a_host_file,
    a_pulled_layer_cannot_chmod_a_host_file_rootless,
    pulled_layer_replaced_dir,
    "layer-chmod"
);

// ---------------------------------------------------------------------------------------------
// Item 3: Leaky Vessels analogues.

/// CVE-2024-23652: the step moves a mount stub's parent away and puts a symlink to a host
/// directory in its place; teardown must not remove the host directory's empty entries.
fn teardown_follows_no_symlink(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    let host_dir = s.path.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(host_dir.join("x")).unwrap();
    std::fs::write(host_dir.join("f"), b"").unwrap();
    give_to_builder(env, &host_dir);
    let dockerfile = format!(
        "FROM kiln-ref/busybox:1\n\
         RUN --mount=type=tmpfs,target=/stub/x --mount=type=bind,source=empty,target=/stub/f \
             mv /stub /moved && ln -s {} /stub\n",
        host_dir.display()
    );
    let ctx = env.context(name, &[("Dockerfile", &dockerfile), ("empty", "")]);
    let out = env.build(&ctx, &["--no-cache"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(host_dir.join("x").is_dir(), "a host directory was removed");
    assert!(host_dir.join("f").is_file(), "a host file was removed");
    s.assert_unchanged("teardown");
}

root_and_rootless!(
    teardown_removes_nothing_outside_the_rootfs,
    teardown_removes_nothing_outside_the_rootfs_rootless,
    teardown_follows_no_symlink,
    "stubs"
);

/// CVE-2024-23651: one build swaps a directory of a shared cache mount for a symlink to a host
/// directory, in a loop, while another mounts a tmpfs below that directory, many times.
fn cache_mount_swap_race(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    let host_dir = s.path.parent().unwrap().to_path_buf();
    let id = format!("race-{name}");
    let swapper = format!(
        "FROM kiln-ref/busybox:1\n\
         RUN --mount=type=cache,id={id},target=/c,sharing=shared \
             end=$(($(date +%s)+6)); while [ $(date +%s) -lt $end ]; do \
             rm -rf /c/sub; mkdir /c/sub; rm -rf /c/sub; ln -s {} /c/sub; done\n",
        host_dir.display()
    );
    let mut victim = String::from("FROM kiln-ref/busybox:1\n");
    for i in 0..40 {
        victim.push_str(&format!(
            "RUN --mount=type=cache,id={id},target=/c,sharing=shared \
             --mount=type=tmpfs,target=/c/sub/made{i} true\n"
        ));
    }
    let ctx_a = env.context(&format!("{name}-a"), &[("Dockerfile", &swapper)]);
    let ctx_b = env.context(&format!("{name}-b"), &[("Dockerfile", &victim)]);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| env.build(&ctx_a, &["--no-cache"]));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        // Failures of the victim's steps are fine (a mount may meet a symlink it refuses);
        // escapes are not.
        let _ = env.build(&ctx_b, &["--no-cache"]);
        let _ = a.join();
    });
    let escaped: Vec<_> = std::fs::read_dir(&host_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "sentinel")
        .collect();
    assert!(escaped.is_empty(), "created on the host: {escaped:?}");
    s.assert_unchanged("cache race");
}

root_and_rootless!(
    a_shared_cache_swap_never_creates_host_directories,
    a_shared_cache_swap_never_creates_host_directories_rootless,
    cache_mount_swap_race,
    "race"
);

// ---------------------------------------------------------------------------------------------
// Item 5: the store is private.

fn store_is_private(env: &Env, name: &str) {
    let state = env.dir.join(format!("{name}-state"));
    std::fs::create_dir_all(&state).unwrap();
    // An older store: world-traversable.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    give_to_builder(env, &state);
    let ctx = env.context(
        name,
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nRUN cp /bin/busybox /suid && chmod 4755 /suid\n",
        )],
    );
    let dest = env.dir.join(format!("{name}-out"));
    give_to_builder(env, &env.dir);
    let out = env.build_in(
        &state,
        &ctx,
        &[&format!("--output=type=local,dest={}", dest.display())],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mode = std::fs::metadata(&state).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "the store is {mode:o}");
    for sub in ["tmp", "snapshots"] {
        let mode = std::fs::metadata(state.join(sub)).unwrap().mode() & 0o077;
        assert_eq!(mode, 0, "{sub} is open to others");
    }
    let log = text(&out);
    assert!(
        log.contains("/suid (setuid)"),
        "a local output of a setuid file says so:\n{log}"
    );
}

root_and_rootless!(
    the_store_is_private_and_local_outputs_name_setuid_files,
    the_store_is_private_and_local_outputs_name_setuid_files_rootless,
    store_is_private,
    "store"
);

// ---------------------------------------------------------------------------------------------
// Item 7: `.dockerignore` holds whichever path reaches an ignored file.

fn dockerignore_holds(env: &Env, name: &str) {
    let s = Sentinel::new(env, name);
    // Each way in, alone: the bind mount must build and see nothing; a COPY through a symlink
    // alias (to the ignored file, to a host file) may fail, but must not copy it.
    let cases = [
        "RUN --mount=type=bind,target=/ctx (cat /ctx/secret.txt 2>/dev/null || echo hidden) > /via-bind\n",
        // A re-include makes the bind mount a filtered copy rather than a masked overlay.
        "RUN --mount=type=bind,target=/ctx (cat /ctx/secret.txt 2>/dev/null || echo hidden) > /via-bind && cat /ctx/keep.txt\n",
        "COPY alias /copied\n",
        "COPY alias* /copied/\n",
        "COPY hostlink /host\n",
        "COPY hostdir/sentinel /host\n",
    ];
    for (i, case) in cases.iter().enumerate() {
        let dockerfile = format!("FROM kiln-ref/busybox:1\n{case}");
        let ctx = env.context(
            &format!("{name}-{i}"),
            &[
                ("Dockerfile", &dockerfile),
                (
                    ".dockerignore",
                    if i == 1 {
                        "secret.txt\nkeep*\n!keep.txt\n"
                    } else {
                        "secret.txt\n"
                    },
                ),
                ("keep.txt", "kept\n"),
                ("secret.txt", "TOPSECRET\n"),
            ],
        );
        std::os::unix::fs::symlink("secret.txt", ctx.join("alias")).unwrap();
        std::os::unix::fs::symlink(&s.path, ctx.join("hostlink")).unwrap();
        std::os::unix::fs::symlink(s.path.parent().unwrap(), ctx.join("hostdir")).unwrap();
        give_to_builder(env, &ctx);
        let fs = env.dir.join(format!("{name}-{i}-fs"));
        let out = env.build(
            &ctx,
            &[
                "--no-cache",
                &format!("--output=type=local,dest={}", fs.display()),
            ],
        );
        let log = text(&out);
        if i < 2 {
            assert!(out.status.success(), "{log}");
            assert_eq!(
                std::fs::read_to_string(fs.join("via-bind")).unwrap(),
                "hidden\n"
            );
        }
        if fs.exists() {
            let found = Command::new("grep")
                .args(["-rl", "TOPSECRET\\|host content"])
                .arg(&fs)
                .output()
                .unwrap();
            assert!(
                found.stdout.is_empty(),
                "{case}: an ignored or host file reached the image: {}",
                String::from_utf8_lossy(&found.stdout)
            );
        }
        assert!(
            !log.contains(s.path.to_str().unwrap()),
            "{case}: a host path is named:\n{log}"
        );
    }
    // The host file's content hash must not be in the store either.
    let sum = Command::new("sha256sum").arg(&s.path).output().unwrap();
    let hex = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let found = Command::new("grep")
        .args(["-rl", &hex])
        .arg(&env.state)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the hash of a host file is stored: {}",
        String::from_utf8_lossy(&found.stdout)
    );
    s.assert_unchanged("dockerignore");
}

root_and_rootless!(
    dockerignored_files_stay_out_whatever_the_path,
    dockerignored_files_stay_out_whatever_the_path_rootless,
    dockerignore_holds,
    "ignore"
);

// ---------------------------------------------------------------------------------------------
// Item 9: ADD limits.

#[test]
fn an_add_bomb_is_refused_with_a_clear_error() {
    let env = root_env();
    let ctx = env.context(
        "bomb",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nADD bomb.tar /b/\n")],
    );
    let big = ctx.join("zeros");
    std::fs::write(&big, vec![0u8; 4 << 20]).unwrap();
    let out = Command::new("tar")
        .current_dir(&ctx)
        .args(["-cf", "bomb.tar", "zeros"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_file(&big).unwrap();
    let out = env.kiln_env(
        &[
            "build".into(),
            "--progress=plain".into(),
            format!("--cache-dir={}", env.state.display()),
            format!(
                "--build-context=kiln-ref/busybox:1=oci-layout://{}",
                env.base.display()
            ),
            "--no-cache".into(),
            ctx.display().to_string(),
        ],
        &[("KILN_ADD_MAX_BYTES", "1048576")],
    );
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("KILN_ADD_MAX_BYTES"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Item 8: temp files of a live build in another pid namespace are not cleaned.

fn a_live_foreign_build_keeps_its_temp_files(env: &Env, name: &str) {
    let state = env.dir.join(format!("{name}-state"));
    let tmp = state.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    give_to_builder(env, &state);
    // Another pod's build: its pid (here one that does not exist in this namespace) names its
    // entry, and it holds the store's shared lock and its owner lock, as a live build does.
    let foreign = "4000000";
    let entry = tmp.join(format!("run-{foreign}-0"));
    std::fs::create_dir_all(entry.join("rootfs")).unwrap();
    std::fs::write(entry.join("rootfs/work"), b"in progress").unwrap();
    std::fs::write(tmp.join(format!(".owner-{foreign}.lock")), b"").unwrap();
    std::fs::write(state.join("lock"), b"").unwrap();
    give_to_builder(env, &state);
    let hold = |file: PathBuf, how: &str| {
        // -o: the lock stays with flock itself (not the sleep), so killing flock frees it.
        Command::new("flock")
            .args(["-o", how])
            .arg(file)
            .args(["sleep", "60"])
            .spawn()
            .unwrap()
    };
    let mut holders = [
        hold(state.join("lock"), "-s"),
        hold(tmp.join(format!(".owner-{foreign}.lock")), "-x"),
    ];
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ctx = env.context(
        name,
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN true\n")],
    );
    let out = env.build_in(&state, &ctx, &["--no-cache"]);
    for h in &mut holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(entry.join("rootfs/work")).ok().as_deref(),
        Some(&b"in progress"[..]),
        "a live build's temp files were deleted"
    );
    // Once its owner is gone, the next build clears them.
    let out = env.build_in(&state, &ctx, &["--no-cache"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!entry.exists(), "a dead build's temp files stay");
}

root_and_rootless!(
    temp_files_of_a_live_build_elsewhere_are_kept,
    temp_files_of_a_live_build_elsewhere_are_kept_rootless,
    a_live_foreign_build_keeps_its_temp_files,
    "owner"
);
