//! The sandbox against the real kernel: namespaces, overlay root, pivot_root, mounts, users.
//! These run as root; the rootless tier runs the same engine as an unprivileged user.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use kiln_worker::sandbox::run::{Cancel, RunError, Runner, Stream};
use kiln_worker::sandbox::spec::{Mount, MountKind, Overlay, Rootfs, Spec};

/// A busybox root filesystem from Debian's busybox-static.
fn busybox_lower(dir: &Path) -> PathBuf {
    let lower = dir.join("lower");
    fs::create_dir_all(lower.join("bin")).unwrap();
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "id", "hostname", "ls", "cat", "touch", "rm", "mkdir", "sleep", "ps", "ip",
        "mount", "grep", "wc", "sed",
    ] {
        symlink("busybox", lower.join("bin").join(applet)).unwrap();
    }
    fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    lower
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    spec: Spec,
}

fn fixture(script: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let lower = busybox_lower(&root);
    for d in ["upper", "work", "mnt"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    let spec = Spec {
        rootfs: Rootfs::Overlay(Overlay {
            lowers: vec![lower],
            upper: Some(root.join("upper")),
            work: Some(root.join("work")),
            userxattr: kiln_worker::userns::in_user_namespace(),
        }),
        mountpoint: root.join("mnt"),
        mounts: vec![],
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        cwd: "/work/dir".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: "buildkitsandbox".into(),
        isolate_network: true,
        process_sandbox: true,
        insecure: false,
        error_file: root.join("error"),
        secret_count: 0,
        secret_env: vec![],
        secret_dir: root.join("secrets"),
    };
    Fixture {
        _dir: dir,
        root,
        spec,
    }
}

fn run(f: &Fixture) -> (Result<i32, RunError>, String) {
    let runner = Runner {
        helper: PathBuf::from(env!("CARGO_BIN_EXE_kiln")),
    };
    let mut out = Vec::new();
    let result = runner.run(
        &f.spec,
        &f.root,
        &Cancel::default(),
        &[],
        &mut |_s: Stream, b: &[u8]| out.extend_from_slice(b),
    );
    (result, String::from_utf8_lossy(&out).into_owned())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn runs_in_fresh_namespaces_on_an_overlay() {
    assert!(
        is_root(),
        "the sandbox tests run as root; the rootless tier covers unprivileged users"
    );
    let f = fixture(
        "echo out; echo err >&2; hostname; echo pid=$$; pwd; test -r /proc/self/status && echo proc-ok; ip link 2>/dev/null | grep -c '^[0-9]'; touch /created; exit 7",
    );
    let (result, out) = run(&f);
    assert_eq!(result.unwrap(), 7, "{out}");
    assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
    assert!(out.contains("buildkitsandbox"), "{out}");
    // pid 1 is the init; the shell is its first child.
    assert!(out.contains("pid=2"), "{out}");
    assert!(out.contains("/work/dir"), "{out}");
    assert!(out.contains("proc-ok"), "{out}");
    // Only loopback in a new network namespace.
    assert!(out.lines().any(|l| l.trim() == "1"), "{out}");
    // Writes went to the upper directory, not the lower.
    assert!(f.root.join("upper/created").exists());
    assert!(!f.root.join("lower/created").exists());
    // The step's mount namespace is gone: nothing is mounted on the mountpoint any more.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(f.root.to_str().unwrap()),
        "leftover mount:\n{mounts}"
    );
}

#[test]
fn runs_as_the_requested_user_with_default_capabilities() {
    let mut f = fixture("id -u; id -g; grep CapBnd /proc/self/status");
    f.spec.uid = 1000;
    f.spec.gid = 1000;
    let (result, out) = run(&f);
    assert_eq!(result.unwrap(), 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    // Docker's default bounding set, without CAP_MKNOD.
    assert!(out.contains("CapBnd:\t00000000a00425fb"), "{out}");
}

#[test]
fn insecure_keeps_every_capability() {
    let mut f = fixture("grep CapBnd /proc/self/status");
    f.spec.insecure = true;
    let (result, out) = run(&f);
    assert_eq!(result.unwrap(), 0);
    assert!(!out.contains("00000000a00425fb"), "{out}");
}

#[test]
fn mounts_bind_tmpfs_and_readonly() {
    let mut f = fixture(
        "cat /data/file; (echo x > /data/new) 2>/dev/null || echo ro-ok; echo y > /scratch/f && cat /scratch/f; cat /etc/hosts",
    );
    let data = f.root.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("file"), "bound\n").unwrap();
    let hosts = f.root.join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost buildkitsandbox\n").unwrap();
    f.spec.mounts = vec![
        Mount {
            target: "/data".into(),
            kind: MountKind::Bind {
                source: data.clone(),
            },
            readonly: true,
        },
        Mount {
            target: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
                mode: 0o755,
            },
            readonly: false,
        },
        Mount {
            target: "/etc/hosts".into(),
            kind: MountKind::Bind { source: hosts },
            readonly: true,
        },
    ];
    let (result, out) = run(&f);
    assert_eq!(result.unwrap(), 0, "{out}");
    assert!(
        out.contains("bound\nro-ok\ny\n127.0.0.1 localhost buildkitsandbox"),
        "{out}"
    );
    assert!(!data.join("new").exists());
    // The tmpfs content did not reach the upper directory.
    assert!(!f.root.join("upper/scratch/f").exists());
}

#[test]
fn background_processes_die_with_the_step() {
    let f = fixture("sleep 4321 & echo started");
    let (result, out) = run(&f);
    assert_eq!(result.unwrap(), 0, "{out}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let leftover = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("cmdline")).ok())
        .any(|c| c.starts_with("sleep\u{0}4321"));
    assert!(!leftover, "a background process outlived its step");
}

#[test]
fn a_missing_command_is_reported() {
    let mut f = fixture("");
    f.spec.args = vec!["no-such-program".into()];
    let (result, _) = run(&f);
    match result {
        Err(RunError::Exec(msg)) => {
            assert!(msg.contains("executable file not found in $PATH"), "{msg}")
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
}

#[test]
fn cancel_kills_the_step() {
    let f = fixture("sleep 1000");
    let runner = Runner {
        helper: PathBuf::from(env!("CARGO_BIN_EXE_kiln")),
    };
    let cancel = Cancel::default();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        c2.cancel();
    });
    let started = std::time::Instant::now();
    let result = runner.run(&f.spec, &f.root, &cancel, &[], &mut |_, _| {});
    t.join().unwrap();
    assert!(matches!(result, Err(RunError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
