//! `kiln build` end to end on this machine: outputs that skopeo, umoci and podman accept,
//! reproducibility, the cache, failures and what they leave behind, contexts and progress.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::{Env, kiln_bin, text};

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("build-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("build-rootless", true))
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn processes_matching(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

const TWO_STAGES: &str = "FROM kiln-ref/busybox:1 AS build\n\
WORKDIR /src\n\
COPY hello.txt .\n\
RUN cat hello.txt > out.txt && echo built >> out.txt\n\
FROM kiln-ref/busybox:1\n\
COPY --from=build /src/out.txt /out.txt\n\
CMD [\"cat\", \"/out.txt\"]\n";

#[test]
fn outputs_are_accepted_by_skopeo_umoci_and_podman() {
    let env = root_env();
    let ctx = env.context(
        "outputs",
        &[("Dockerfile", TWO_STAGES), ("hello.txt", "hello\n")],
    );
    let out_dir = env.dir.join("outputs");
    let layout = out_dir.join("layout");
    let oci_tar = out_dir.join("image.tar");
    let docker_tar = out_dir.join("docker.tar");
    let fs = out_dir.join("fs");
    let run = env.build(
        &ctx,
        &[
            "-t",
            "kiln-test/outputs:1",
            &format!("--output=type=oci,dest={}", layout.display()),
            &format!("--output=type=oci,dest={}", oci_tar.display()),
            &format!("--output=type=docker,dest={}", docker_tar.display()),
            &format!("--output=type=local,dest={}", fs.display()),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));

    let inspect = Command::new("skopeo")
        .args(["inspect", &format!("oci:{}:1", layout.display())])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo inspect oci: {}",
        text(&inspect)
    );
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "base + COPY: {v}");
    let inspect = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", oci_tar.display())])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo inspect oci-archive: {}",
        text(&inspect)
    );

    let bundle = out_dir.join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:1", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "umoci unpack: {}", text(&unpack));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/out.txt")).unwrap(),
        "hello\nbuilt\n"
    );

    // podman refuses a run root longer than 50 characters.
    let podman = std::path::PathBuf::from(format!("/tmp/kiln-podman-{}", std::process::id()));
    let podman_args = |extra: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(podman.join("root"))
            .arg("--runroot")
            .arg(podman.join("run"))
            .arg("--storage-driver=vfs");
        c.args(extra);
        c.output().unwrap()
    };
    let load = podman_args(&["load", "-i", docker_tar.to_str().unwrap()]);
    assert!(load.status.success(), "podman load: {}", text(&load));
    assert!(
        text(&load).contains("kiln-test/outputs:1"),
        "{}",
        text(&load)
    );
    let images = podman_args(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        text(&images).contains("kiln-test/outputs:1"),
        "{}",
        text(&images)
    );
    let _ = Command::new("rm").arg("-rf").arg(&podman).status();

    assert_eq!(
        std::fs::read_to_string(fs.join("out.txt")).unwrap(),
        "hello\nbuilt\n"
    );
    assert!(fs.join("bin/busybox").exists());
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let env = root_env();
    let ctx = env.context(
        "sde",
        &[("Dockerfile", TWO_STAGES), ("hello.txt", "hello\n")],
    );
    let mut digests = Vec::new();
    for n in 0..2 {
        let state = env.dir.join(format!("sde-state-{n}"));
        let meta = env.dir.join(format!("sde-{n}.json"));
        let run = env.kiln(&[
            "build".into(),
            "--progress=quiet".into(),
            format!("--cache-dir={}", state.display()),
            format!(
                "--build-context=kiln-ref/busybox:1=oci-layout://{}",
                env.base.display()
            ),
            "--source-date-epoch=1700000000".into(),
            format!("--metadata-file={}", meta.display()),
            ctx.display().to_string(),
        ]);
        assert!(run.status.success(), "{}", text(&run));
        digests.push(
            metadata(&meta)["containerimage.digest"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        digests[0], digests[1],
        "the same inputs must give the same image"
    );
}

/// BuildKit's built-in build arguments `SOURCE_DATE_EPOCH` and `BUILDKIT_INLINE_CACHE` do what
/// `--source-date-epoch` and `--cache-to type=inline` do: the same image, byte for byte.
#[test]
fn buildkit_build_args_act_as_their_flags() {
    let env = root_env();
    let ctx = env.context(
        "bk-args",
        &[
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
            ("hello.txt", "hello\n"),
        ],
    );
    let digest = |name: &str, args: &[&str]| -> String {
        let meta = env.dir.join(format!("bk-args-{name}.json"));
        let state = env.dir.join(format!("bk-args-state-{name}"));
        let mut all = vec![format!("--metadata-file={}", meta.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = env.build_in(&state, &ctx, &all);
        assert!(run.status.success(), "{}", text(&run));
        assert!(!text(&run).contains("not used"), "{}", text(&run));
        metadata(&meta)["containerimage.digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        digest("flag", &["--source-date-epoch=1234567"]),
        digest("arg", &["--build-arg=SOURCE_DATE_EPOCH=1234567"]),
    );
    assert_eq!(
        digest(
            "inline-flag",
            &["--source-date-epoch=1234567", "--cache-to=type=inline"]
        ),
        digest(
            "inline-arg",
            &[
                "--source-date-epoch=1234567",
                "--build-arg=BUILDKIT_INLINE_CACHE=1"
            ]
        ),
    );
    assert_ne!(
        digest("plain", &["--source-date-epoch=1234567"]),
        digest(
            "inline",
            &["--source-date-epoch=1234567", "--cache-to=type=inline"]
        ),
        "the inline cache must change the image, or the comparison above proves nothing"
    );
}

#[test]
fn a_noop_rebuild_runs_nothing_and_marks_every_step_cached() {
    let env = root_env();
    let mut dockerfile = String::from("FROM kiln-ref/busybox:1\n");
    for i in 0..10 {
        dockerfile.push_str(&format!(
            "RUN echo step{i} > /step{i} && echo ran >> /tmp/marker\n"
        ));
    }
    let ctx = env.context("noop", &[("Dockerfile", &dockerfile)]);
    let meta = env.dir.join("noop.json");
    let first = env.build(&ctx, &[&format!("--metadata-file={}", meta.display())]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(metadata(&meta)["kiln.runs"], 10);
    let second = env.build(&ctx, &[&format!("--metadata-file={}", meta.display())]);
    assert!(second.status.success(), "{}", text(&second));
    let m = metadata(&meta);
    assert_eq!(m["kiln.runs"], 0, "a no-op rebuild must not run any step");
    assert_eq!(m["kiln.cached"], 10);
    assert_eq!(
        text(&second).matches(" CACHED").count(),
        10,
        "{}",
        text(&second)
    );
}

#[test]
fn a_failing_run_reports_its_exit_code_output_and_line() {
    let env = root_env();
    let ctx = env.context(
        "failing",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN echo fine\nRUN echo about to fail && echo on stderr >&2 && exit 3\nRUN echo never\n")],
    );
    let run = env.build(&ctx, &[]);
    assert!(!run.status.success());
    let t = text(&run);
    assert!(t.contains("Dockerfile:3"), "{t}");
    assert!(t.contains("exit code: 3"), "{t}");
    assert!(t.contains(">>> RUN echo about to fail"), "{t}");
    assert!(t.contains("last output:") && t.contains("on stderr"), "{t}");
    assert!(
        !t.contains("[stage-0 4/4]"),
        "the step after the failure ran: {t}"
    );
}

#[test]
fn a_failure_cancels_sibling_stages_and_leaves_no_process() {
    let env = root_env();
    let ctx = env.context(
        "cancel",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1 AS slow\nRUN sleep 5151\n\
             FROM kiln-ref/busybox:1 AS broken\nRUN sleep 1 && exit 7\n\
             FROM kiln-ref/busybox:1\nCOPY --from=slow /etc/hostname /a\nCOPY --from=broken /etc/hostname /b\n",
        )],
    );
    let started = std::time::Instant::now();
    let run = env.build(&ctx, &[]);
    assert!(!run.status.success());
    assert!(text(&run).contains("exit code: 7"), "{}", text(&run));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the build waited for the sibling stage instead of cancelling it"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        processes_matching("sleep 5151").is_empty(),
        "the cancelled step is still running"
    );
}

fn leaves_nothing_behind(env: &Env, name: &str) {
    // The root and rootless runs go at once: each looks for its own processes only.
    let d = if env.rootless { 5 } else { 4 };
    let mut dockerfile = String::from("FROM kiln-ref/busybox:1\n");
    for i in 0..10 {
        dockerfile.push_str(&format!(
            "RUN --mount=type=tmpfs,target=/scratch{i} (sleep {d}{i}{i}{d} &) ; dd if=/dev/zero of=/f{i} bs=1k count=64 2>/dev/null\n"
        ));
    }
    let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
    // A store of its own: the other tests build in parallel in the shared one.
    let state = env.dir.join(format!("state-{name}"));
    let run = env.build_in(&state, &ctx, &["--no-cache"]);
    assert!(run.status.success(), "{}", text(&run));
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 0..10 {
        assert!(
            processes_matching(&format!("sleep {d}{i}{i}{d}")).is_empty(),
            "step {i} left a process"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "a mount is left:\n{mounts}"
    );
    let tmp: Vec<_> = std::fs::read_dir(state.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "temporary files are left: {tmp:?}");
}

#[test]
fn a_run_heavy_build_leaves_no_mount_process_or_temp_dir() {
    leaves_nothing_behind(root_env(), "heavy-root");
}

#[test]
fn a_rootless_run_heavy_build_leaves_nothing_either() {
    leaves_nothing_behind(rootless_env(), "heavy-rootless");
}

#[test]
fn rootless_builds_keep_owners_and_run_as_other_users() {
    let env = rootless_env();
    let ctx = env.context(
        "rootless-users",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nUSER app\nRUN id -u > /tmp/uid && touch /home/app/mine\nUSER root\nRUN ls -ln /home/app/mine | awk '{print $3\":\"$4}' > /owner\n",
        )],
    );
    let fs = env.dir.join("rootless-users-fs");
    let run = env.build(
        &ctx,
        &[&format!("--output=type=local,dest={}", fs.display())],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        std::fs::read_to_string(fs.join("tmp/uid")).unwrap().trim(),
        "1000"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("owner")).unwrap().trim(),
        "1000:1000"
    );
}

#[test]
fn contexts_from_a_tarball_and_from_stdin() {
    let env = root_env();
    let ctx = env.context(
        "tar-src",
        &[
            ("Dockerfile", "FROM kiln-ref/busybox:1\nCOPY f /f\n"),
            ("f", "from a tarball\n"),
        ],
    );
    let tarball = env.dir.join("context.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&ctx)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let fs = env.dir.join("tar-fs");
    let run = env.build(
        &tarball,
        &[&format!("--output=type=local,dest={}", fs.display())],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        std::fs::read_to_string(fs.join("f")).unwrap(),
        "from a tarball\n"
    );

    let fs2 = env.dir.join("stdin-fs");
    let mut child = Command::new(common::kiln_bin())
        .args(["build", "--progress=quiet"])
        .arg(format!("--cache-dir={}", env.state.display()))
        .arg(format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ))
        .arg(format!("--output=type=local,dest={}", fs2.display()))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(
        &mut std::fs::File::open(&tarball).unwrap(),
        child.stdin.as_mut().unwrap(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(fs2.join("f")).unwrap(),
        "from a tarball\n"
    );
}

#[test]
fn named_contexts_a_directory_and_a_stage_override() {
    let env = root_env();
    let extra = env.context("named-extra", &[("data.txt", "from a named directory\n")]);
    let ctx = env.context(
        "named",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1 AS tools\nRUN echo original > /tool\n\
             FROM kiln-ref/busybox:1\nCOPY --from=extra /data.txt /data.txt\nCOPY --from=tools /tool /tool\n",
        )],
    );
    // The `tools` stage is replaced by an image built from another Dockerfile.
    let tools_ctx = env.context(
        "named-tools",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nRUN echo replaced > /tool\n",
        )],
    );
    let tools_layout = env.dir.join("named-tools-layout");
    let run = env.build(
        &tools_ctx,
        &[&format!(
            "--output=type=oci,dest={}",
            tools_layout.display()
        )],
    );
    assert!(run.status.success(), "{}", text(&run));
    let fs = env.dir.join("named-fs");
    let run = env.build(
        &ctx,
        &[
            &format!("--build-context=extra={}", extra.display()),
            &format!(
                "--build-context=tools=oci-layout://{}",
                tools_layout.display()
            ),
            &format!("--output=type=local,dest={}", fs.display()),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        std::fs::read_to_string(fs.join("data.txt")).unwrap(),
        "from a named directory\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("tool")).unwrap(),
        "replaced\n"
    );
}

#[test]
fn json_progress_is_one_event_per_line() {
    let env = root_env();
    let ctx = env.context(
        "json",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nRUN echo hello-json\n",
        )],
    );
    let mut args = vec![
        "build".to_string(),
        "--progress=json".into(),
        "--no-cache".into(),
        format!("--cache-dir={}", env.state.display()),
        format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ),
    ];
    args.push(ctx.display().to_string());
    let run = env.kiln(&args);
    assert!(run.status.success(), "{}", text(&run));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(events.iter().any(|e| {
        e["event"] == "start"
            && e["name"]
                .as_str()
                .unwrap_or("")
                .contains("RUN echo hello-json")
    }));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "output"
                && e["data"].as_str().unwrap_or("").contains("hello-json"))
    );
    assert!(events.iter().any(|e| e["event"] == "done"));
}

#[test]
fn zstd_layers_on_request() {
    let env = root_env();
    let ctx = env.context(
        "zstd",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN echo z > /z\n")],
    );
    let layout = env.dir.join("zstd-layout");
    let run = env.build(
        &ctx,
        &[
            "--compression=zstd",
            "--no-cache",
            "-t",
            "z:1",
            &format!("--output=type=oci,dest={}", layout.display()),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}:1", layout.display())])
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.last().unwrap()["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "base layers are kept as they came"
    );
}

#[test]
fn a_copy_of_many_files_keeps_every_content_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = root_env();
    let ctx = env.context(
        "many-files",
        &[(
            "Dockerfile",
            "FROM scratch AS files\n\
             COPY tree/ over/ /t/\n\
             FROM kiln-ref/busybox:1\n\
             COPY --from=files --chown=123:456 /t/ /u/\n",
        )],
    );
    // 400 files in 20 directories (enough for the parallel path), modes varied; `over/`
    // replaces every seventh of them in the same COPY, so later sources still win.
    let mut expected = Vec::new();
    for d in 0..20 {
        for f in 0..20 {
            let rel = format!("d{d:02}/f{f:02}");
            let mode = [0o644, 0o755, 0o600, 0o640][(d + f) % 4];
            let path = ctx.join("tree").join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("tree {rel}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let mut content = format!("tree {rel}\n");
            if (d * 20 + f) % 7 == 0 {
                let over = ctx.join("over").join(&rel);
                std::fs::create_dir_all(over.parent().unwrap()).unwrap();
                std::fs::write(&over, format!("over {rel}\n")).unwrap();
                std::fs::set_permissions(&over, std::fs::Permissions::from_mode(0o604)).unwrap();
                content = format!("over {rel}\n");
                expected.push((rel, content, 0o604));
            } else {
                expected.push((rel, content, mode));
            }
        }
    }
    let stage = env.dir.join("many-files-stage");
    let out = env.build(
        &ctx,
        &[
            "--target=files",
            &format!("--output=type=local,dest={}", stage.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let fin = env.dir.join("many-files-final");
    let out = env.build(
        &ctx,
        &[&format!("--output=type=local,dest={}", fin.display())],
    );
    assert!(out.status.success(), "{}", text(&out));
    for (rel, content, mode) in &expected {
        for (root, owner) in [(stage.join("t"), (0, 0)), (fin.join("u"), (123, 456))] {
            let path = root.join(rel);
            assert_eq!(&std::fs::read_to_string(&path).unwrap(), content, "{rel}");
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.mode() & 0o7777, *mode, "{}", path.display());
            assert_eq!((meta.uid(), meta.gid()), owner, "{}", path.display());
        }
    }
}

/// The `security.capability` PAX records of every layer of the image in an OCI layout, by
/// path, in layer order (later layers last).
fn layer_capabilities(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    let mut out = vec![];
    for layer in manifest["layers"].as_array().unwrap() {
        let file = std::fs::File::open(blob(&layer["digest"])).unwrap();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if let Some(exts) = entry.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    if ext.key().unwrap() == "SCHILY.xattr.security.capability" {
                        out.push((path.clone(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    out
}

/// `cap_setuid=ep` as the kernel stores it: VFS_CAP_REVISION_2 with the effective flag, then
/// the permitted and inheritable words (CAP_SETUID is bit 7).
fn is_cap_setuid_ep(value: &[u8]) -> bool {
    let word = |i: usize| u32::from_le_bytes(value[i * 4..i * 4 + 4].try_into().unwrap());
    value.len() == 20 && word(0) == 0x0200_0001 && word(1) == 1 << 7 && word(2) == 0
}

fn file_capabilities_survive_copy(env: &Env, name: &str) {
    let ctx = env.context(
        name,
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1 AS build\n\
             COPY --chown=1:1 capbin /stage/capbin\n\
             FROM scratch\n\
             COPY capbin plain /\n\
             COPY --from=build /stage/capbin /fromstage\n",
        )],
    );
    std::fs::copy("/bin/busybox", ctx.join("capbin")).unwrap();
    std::fs::write(ctx.join("plain"), "no capabilities\n").unwrap();
    // Built once without the capability: the setcap below must not be answered from the cache.
    let layout = env.dir.join(format!("{name}-layout"));
    let out = env.build(
        &ctx,
        &["--output", &format!("type=oci,dest={}", layout.display())],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(layer_capabilities(&layout), []);
    std::fs::remove_dir_all(&layout).unwrap();
    let setcap = Command::new("setcap")
        .args(["cap_setuid=ep"])
        .arg(ctx.join("capbin"))
        .output()
        .expect("setcap runs (libcap2-bin)");
    assert!(setcap.status.success(), "{}", text(&setcap));
    let out = env.build(
        &ctx,
        &["--output", &format!("type=oci,dest={}", layout.display())],
    );
    assert!(out.status.success(), "{}", text(&out));
    let caps = layer_capabilities(&layout);
    let paths: Vec<&str> = caps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["capbin", "fromstage"], "{caps:?}");
    for (path, value) in &caps {
        assert!(is_cap_setuid_ep(value), "{path}: {value:02x?}");
    }

    // The image as a base: its layer is unpacked, and a COPY from it keeps the capability.
    let again = env.context(
        &format!("{name}-again"),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY --from=capbase /capbin /again\n",
        )],
    );
    let layout2 = env.dir.join(format!("{name}-again-layout"));
    let out = env.build(
        &again,
        &[
            &format!("--build-context=capbase=oci-layout://{}", layout.display()),
            "--output",
            &format!("type=oci,dest={}", layout2.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let caps = layer_capabilities(&layout2);
    assert_eq!(caps.len(), 1, "{caps:?}");
    assert_eq!(caps[0].0, "again");
    assert!(is_cap_setuid_ep(&caps[0].1), "{:02x?}", caps[0].1);
}

#[test]
fn file_capabilities_survive_copy_as_root() {
    file_capabilities_survive_copy(root_env(), "caps");
}

#[test]
fn file_capabilities_survive_copy_rootless() {
    file_capabilities_survive_copy(rootless_env(), "caps");
}

/// What the engine's own processes have mounted under `dir`, read from inside their mount
/// namespaces (`/proc/PID/mountinfo`): a rootless engine lives in a namespace of its own, whose
/// mounts the test's table never shows. The sandbox helpers of running steps are left out.
fn engine_mounts_under(dir: &Path) -> (usize, Vec<String>) {
    let kiln = kiln_bin();
    let dir = dir.to_str().unwrap();
    let mut out = Vec::new();
    let mut engines = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe != kiln {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("__sandbox") {
            continue;
        }
        let mounts = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        if mounts.is_empty() {
            continue;
        }
        engines += 1;
        out.extend(
            mounts
                .lines()
                .filter(|l| l.contains(dir))
                .map(|l| format!("pid {:?}: {l}", entry.file_name())),
        );
    }
    (engines, out)
}

/// Earlier steps' mounts (their overlays, tmpfs, cache and bind mounts) are gone from the
/// engine's namespace while a later step runs, not only from the host's after the build.
fn no_step_leaves_a_mount_in_the_engine(env: &Env, name: &str) {
    let marker = if env.rootless { "7.4321" } else { "7.1234" };
    let mut dockerfile = String::from("FROM kiln-ref/busybox:1 AS other\nRUN echo x > /x\n");
    dockerfile.push_str("FROM kiln-ref/busybox:1\n");
    for i in 0..4 {
        dockerfile.push_str(&format!(
            "RUN --mount=type=tmpfs,target=/t{i} --mount=type=cache,target=/c{i} --mount=type=bind,from=other,target=/b{i} cat /b{i}/x > /f{i}\n"
        ));
    }
    dockerfile.push_str(&format!("RUN sleep {marker}\n"));
    let ctx = env.context(name, &[("Dockerfile", &dockerfile)]);
    let state = env.dir.join(format!("state-{name}"));
    let mut child = env
        .command(&env.build_args(&state, &ctx, &["--no-cache"]), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while processes_matching(&format!("sleep {marker}")).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the last step never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (engines, leaked) = engine_mounts_under(&state);
    let status = child.wait().unwrap();
    assert!(status.success(), "the build failed");
    assert!(engines > 0, "no engine process was found to look into");
    assert!(
        leaked.is_empty(),
        "mounts of finished steps are left in the engine's namespace:\n{}",
        leaked.join("\n")
    );
}

#[test]
fn no_step_leaves_a_mount_in_the_engine_namespace() {
    no_step_leaves_a_mount_in_the_engine(root_env(), "ns-mounts-root");
}

#[test]
fn no_step_leaves_a_mount_in_the_rootless_engine_namespace() {
    no_step_leaves_a_mount_in_the_engine(rootless_env(), "ns-mounts-rootless");
}
