//! Assembling a container's filesystem: the root, `/proc`, `/dev`, `/sys`, the step's mounts,
//! then `pivot_root`. Every kernel call goes through [`Syscall`], so the sequence is unit-tested
//! with a recorder.
//!
//! Mount targets are resolved inside the new root before anything is created: an image whose
//! `/run` is a symlink to `/etc` gets its mount under the container's `/etc`, never under the
//! host's, because nothing here follows a symlink out of the root.

use std::io;
use std::path::Path;

use super::spec::{MountKind, Rootfs, Spec};
use super::syscall::{MountAttrs, MountFlags, MountTarget, Syscall};

/// Device nodes bound from the host into the container's `/dev`: runc's defaults without `tty`.
/// The host's `/dev/tty` is the controlling terminal of whoever opens it; a step has none (it
/// runs in a session of its own), and binding the node would only invite a mistake.
pub const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Kernel state a step must not read, hidden as runc and Docker hide it: a file behind
/// `/dev/null`, a directory behind an empty read-only tmpfs. Paths the kernel lacks are skipped.
pub const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Kernel knobs a step may read but not write (`/proc/sys/kernel/core_pattern` runs a host
/// program on the next crash; `/proc/sysrq-trigger` reboots the host), made read-only as runc
/// does. `/sys` is read-only as a whole.
pub const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Attributes of a mount that must never give a step a device, a setuid file or, with
/// `readonly`, a write.
fn locked(readonly: bool) -> MountAttrs {
    MountAttrs {
        readonly,
        nosuid: true,
        nodev: true,
        noexec: true,
    }
}

/// No devices on a mount: nothing on it opens as a device, whatever node a step makes or a
/// layer carries.
const NODEV: MountAttrs = MountAttrs {
    readonly: false,
    nosuid: false,
    nodev: true,
    noexec: false,
};

/// Build the container's filesystem and move into it. `secrets` are the contents of the
/// secret mounts, by index.
pub fn setup(sys: &dyn Syscall, spec: &Spec, secrets: &[Vec<u8>]) -> io::Result<()> {
    let root = spec.mountpoint.as_path();
    sys.mount("", Path::new("/"), "", MountFlags::PRIVATE_TREE, "")?;
    match &spec.rootfs {
        Rootfs::Overlay(o) => sys.mount_overlay(
            root,
            &o.lowers,
            o.upper.as_deref(),
            o.work.as_deref(),
            o.userxattr,
        )?,
        Rootfs::Dir(dir) => {
            sys.mount(&dir.display().to_string(), root, "", MountFlags::RBIND, "")?
        }
    }
    sys.mount_setattr(root, NODEV, true)?;

    let proc_target = sys.mount_target(root, "/proc", false)?;
    if spec.process_sandbox {
        sys.mount("proc", &proc_target.mount, "proc", MountFlags::LOCKED, "")?;
    } else {
        sys.mount("/proc", &proc_target.mount, "", MountFlags::RBIND, "")?;
    }
    let proc = mounted(sys, root, "/proc", false)?;
    if !spec.process_sandbox {
        sys.mount_setattr(&proc.mount, locked(false), true)?;
    }

    let dev_target = sys.mount_target(root, "/dev", false)?;
    sys.mount(
        "tmpfs",
        &dev_target.mount,
        "tmpfs",
        MountFlags::LOCKED,
        "mode=755,size=65536k",
    )?;
    // A fresh tmpfs now: nothing of the image's is below, so paths into it are safe.
    let dev = dev_target.inside.clone();
    for name in DEVICES {
        let node = dev.join(name);
        sys.touch(&node)?;
        sys.mount(&format!("/dev/{name}"), &node, "", MountFlags::BIND, "")?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        sys.symlink(target, &dev.join(link))?;
    }
    sys.mkdir_all(&dev.join("pts"), 0o755)?;
    sys.mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MountFlags {
            nosuid: true,
            noexec: true,
            ..Default::default()
        },
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    sys.mkdir_all(&dev.join("shm"), 0o1777)?;
    sys.mount(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        MountFlags::LOCKED,
        "mode=1777,size=65536k",
    )?;
    sys.mkdir_all(&dev.join("mqueue"), 0o755)?;
    sys.mount(
        "mqueue",
        &dev.join("mqueue"),
        "mqueue",
        MountFlags::LOCKED,
        "",
    )?;

    let sys_target = sys.mount_target(root, "/sys", false)?;
    if spec.isolate_network {
        sys.mount(
            "sysfs",
            &sys_target.mount,
            "sysfs",
            MountFlags::LOCKED_RO,
            "",
        )?;
    } else {
        // A sysfs of the host's network namespace may not be mounted from a user namespace;
        // bind the host's. Read-only all the way down: a `MS_REMOUNT|MS_BIND` would leave the
        // cgroup trees mounted below it (`release_agent`, `devices.allow`) writable.
        sys.mount("/sys", &sys_target.mount, "", MountFlags::RBIND, "")?;
    }
    let sysfs = mounted(sys, root, "/sys", false)?;
    sys.mount_setattr(&sysfs.mount, locked(true), true)?;
    mask_kernel_state(sys, &proc.mount, &sysfs.mount)?;

    sys.sethostname(&spec.hostname)?;

    if spec
        .mounts
        .iter()
        .any(|m| matches!(m.kind, MountKind::Secret { .. }))
    {
        // Secrets live on a tmpfs that only this mount namespace sees, never on disk.
        sys.mount(
            "tmpfs",
            &spec.secret_dir,
            "tmpfs",
            MountFlags::LOCKED,
            "mode=0755,size=16m",
        )?;
    }

    for m in &spec.mounts {
        let is_file = match &m.kind {
            MountKind::Bind { source } => !sys.is_dir(source),
            MountKind::Secret { .. } => true,
            _ => false,
        };
        let pinned = sys.mount_target(root, &m.target, is_file)?;
        let target = pinned.mount.clone();
        let again = || mounted(sys, root, &m.target, is_file);
        match &m.kind {
            MountKind::Bind { source } => {
                sys.mount(
                    &source.display().to_string(),
                    &target,
                    "",
                    MountFlags::RBIND,
                    "",
                )?;
                // Recursive: a bound directory may hold mounts of its own.
                sys.mount_setattr(
                    &again()?.mount,
                    MountAttrs {
                        readonly: m.readonly,
                        ..NODEV
                    },
                    true,
                )?;
            }
            MountKind::Tmpfs { size, mode } => {
                let mut data = format!("mode={mode:o}");
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                sys.mount(
                    "tmpfs",
                    &target,
                    "tmpfs",
                    MountFlags {
                        readonly: m.readonly,
                        nosuid: true,
                        nodev: true,
                        ..Default::default()
                    },
                    &data,
                )?;
            }
            MountKind::Overlay(o) => {
                sys.mount_overlay(
                    &target,
                    &o.lowers,
                    o.upper.as_deref(),
                    o.work.as_deref(),
                    o.userxattr,
                )?;
                sys.mount_setattr(&again()?.mount, NODEV, false)?;
            }
            MountKind::Secret {
                index,
                mode,
                uid,
                gid,
            } => {
                let content = secrets.get(*index).ok_or_else(|| {
                    io::Error::other(format!("secret #{index} was not passed to the sandbox"))
                })?;
                let staged = spec.secret_dir.join(index.to_string());
                sys.write_file(&staged, content, *mode, *uid, *gid)?;
                sys.mount(
                    &staged.display().to_string(),
                    &target,
                    "",
                    MountFlags::BIND,
                    "",
                )?;
                sys.mount_setattr(&again()?.mount, locked(true), false)?;
            }
        }
    }

    let cwd = sys.mount_target(root, &spec.cwd, false)?.inside;
    sys.pivot_root(root)?;
    let inside = Path::new("/").join(cwd.strip_prefix(root).unwrap_or(Path::new("")));
    sys.chdir(&inside)
}

/// The mount just made on `path`, resolved inside the root again. The descriptor a mount was
/// made through names the directory below it, so its `/proc/self/fd/N` would reach that
/// directory's mount, not the new one: attributes and masks are applied through a descriptor
/// taken after the mount.
fn mounted(sys: &dyn Syscall, root: &Path, path: &str, file: bool) -> io::Result<MountTarget> {
    sys.mount_target(root, path, file)
}

/// Hide [`MASKED`] and make [`READONLY`] read-only, under the container's `/proc` and `/sys`
/// (the directories they are mounted on, resolved inside the root: never a path through the
/// image's own symlinks).
fn mask_kernel_state(sys: &dyn Syscall, proc_dir: &Path, sys_dir: &Path) -> io::Result<()> {
    let under = |path: &str| {
        if let Some(rel) = path.strip_prefix("/proc/") {
            proc_dir.join(rel)
        } else {
            sys_dir.join(path.trim_start_matches("/sys/"))
        }
    };
    for path in READONLY.map(under) {
        if !sys.exists(&path) {
            continue;
        }
        let name = path.display().to_string();
        sys.mount(&name, &path, "", MountFlags::RBIND, "")?;
        sys.mount_setattr(&path, locked(true), true)?;
    }
    for path in MASKED.map(under) {
        if !sys.exists(&path) {
            continue;
        }
        if sys.is_dir(&path) {
            sys.mount(
                "tmpfs",
                &path,
                "tmpfs",
                MountFlags::LOCKED_RO,
                "size=4k,mode=0555",
            )?;
        } else {
            sys.mount("/dev/null", &path, "", MountFlags::BIND, "")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{Mount, Overlay};
    use crate::sandbox::syscall::Recorder;

    fn spec() -> Spec {
        Spec::sample()
    }

    /// The kernel files the masks and read-only paths find in a fresh `/proc` and `/sys`.
    fn kernel() -> Recorder {
        Recorder::with(
            &["/m/proc/sys", "/m/proc/acpi", "/m/sys/firmware"],
            &["/m/proc/kcore", "/m/proc/sysrq-trigger"],
        )
    }

    #[test]
    fn builds_the_container_in_order_and_pivots() {
        let rec = kernel();
        setup(&rec, &spec(), &[]).unwrap();
        let calls = rec.calls();
        let expected = [
            "mount / [rec,private]",
            "overlay /m lowers=/s/2:/s/1 upper=/s/up work=/s/work userxattr=true",
            // No device opens on the root, whatever node a layer carries.
            "setattr /m [nodev] rec",
            "mkdir /m/proc 755",
            "mount proc /m/proc proc [nosuid,nodev,noexec]",
            "mkdir /m/dev 755",
            "mount tmpfs /m/dev tmpfs [nosuid,nodev,noexec] mode=755,size=65536k",
            // Devices are binds of the host's nodes, the only mounts without nodev; no tty.
            "touch /m/dev/null",
            "mount /dev/null /m/dev/null [bind]",
            "touch /m/dev/zero",
            "mount /dev/zero /m/dev/zero [bind]",
            "touch /m/dev/full",
            "mount /dev/full /m/dev/full [bind]",
            "touch /m/dev/random",
            "mount /dev/random /m/dev/random [bind]",
            "touch /m/dev/urandom",
            "mount /dev/urandom /m/dev/urandom [bind]",
            "symlink /proc/self/fd /m/dev/fd",
            "symlink /proc/self/fd/0 /m/dev/stdin",
            "symlink /proc/self/fd/1 /m/dev/stdout",
            "symlink /proc/self/fd/2 /m/dev/stderr",
            "symlink pts/ptmx /m/dev/ptmx",
            "mkdir /m/dev/pts 755",
            "mount devpts /m/dev/pts devpts [nosuid,noexec] newinstance,ptmxmode=0666,mode=0620",
            "mkdir /m/dev/shm 1777",
            "mount shm /m/dev/shm tmpfs [nosuid,nodev,noexec] mode=1777,size=65536k",
            "mkdir /m/dev/mqueue 755",
            "mount mqueue /m/dev/mqueue mqueue [nosuid,nodev,noexec]",
            "mkdir /m/sys 755",
            "mount sysfs /m/sys sysfs [ro,nosuid,nodev,noexec]",
            "setattr /m/sys [ro,nosuid,nodev,noexec] rec",
            // runc's read-only paths, then its masks.
            "mount /m/proc/sys /m/proc/sys [bind,rec]",
            "setattr /m/proc/sys [ro,nosuid,nodev,noexec] rec",
            "mount /m/proc/sysrq-trigger /m/proc/sysrq-trigger [bind,rec]",
            "setattr /m/proc/sysrq-trigger [ro,nosuid,nodev,noexec] rec",
            "mount tmpfs /m/proc/acpi tmpfs [ro,nosuid,nodev,noexec] size=4k,mode=0555",
            "mount /dev/null /m/proc/kcore [bind]",
            "mount tmpfs /m/sys/firmware tmpfs [ro,nosuid,nodev,noexec] size=4k,mode=0555",
            "sethostname buildkitsandbox",
            "mkdir /m/etc 755",
            "touch /m/etc/hosts",
            "mount /tmp/hosts /m/etc/hosts [bind,rec]",
            "setattr /m/etc/hosts [ro,nodev] rec",
            "mkdir /m/cache 755",
            "mount tmpfs /m/cache tmpfs [nosuid,nodev] mode=755,size=1048576",
            "mkdir /m/src 755",
            "pivot_root /m",
            "chdir /src",
        ];
        assert_eq!(calls, expected);
    }

    #[test]
    fn without_process_sandbox_the_host_proc_and_sys_are_bound_locked() {
        let rec = kernel();
        let mut s = spec();
        s.process_sandbox = false;
        s.isolate_network = false;
        setup(&rec, &s, &[]).unwrap();
        let calls = rec.calls();
        let at = |c: &str| {
            calls
                .iter()
                .position(|x| x == c)
                .unwrap_or_else(|| panic!("no {c} in {calls:#?}"))
        };
        assert_eq!(
            at("setattr /m/proc [nosuid,nodev,noexec] rec"),
            at("mount /proc /m/proc [bind,rec]") + 1
        );
        // Recursive: the host's cgroup trees are mounts below /sys.
        assert_eq!(
            at("setattr /m/sys [ro,nosuid,nodev,noexec] rec"),
            at("mount /sys /m/sys [bind,rec]") + 1
        );
        assert!(at("mount /dev/null /m/proc/kcore [bind]") < at("pivot_root /m"));
    }

    #[test]
    fn masks_follow_where_proc_was_mounted_not_the_images_symlinks() {
        let rec = Recorder::with(&["/m/p/sys"], &["/m/p/kcore"]);
        // An image whose /proc is elsewhere gets proc mounted there; the masks follow it.
        let (proc_dir, sys_dir) = (Path::new("/m/p"), Path::new("/m/s"));
        mask_kernel_state(&rec, proc_dir, sys_dir).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "mount /m/p/sys /m/p/sys [bind,rec]",
                "setattr /m/p/sys [ro,nosuid,nodev,noexec] rec",
                "mount /dev/null /m/p/kcore [bind]",
            ]
        );
    }

    #[test]
    fn every_bind_and_overlay_mount_is_nodev() {
        let rec = Recorder::default();
        let mut s = spec();
        s.mounts = vec![
            Mount {
                target: "/rw".into(),
                kind: MountKind::Bind {
                    source: "/host/cache".into(),
                },
                readonly: false,
            },
            Mount {
                target: "/from".into(),
                kind: MountKind::Overlay(Overlay {
                    lowers: vec!["/l".into()],
                    upper: None,
                    work: None,
                    userxattr: false,
                }),
                readonly: true,
            },
        ];
        setup(&rec, &s, &[]).unwrap();
        let calls = rec.calls();
        let rw = calls.iter().position(|c| c == "setattr /m/rw [nodev] rec");
        let from = calls.iter().position(|c| c == "setattr /m/from [nodev]");
        assert!(rw.is_some() && from.is_some(), "{calls:#?}");
    }

    #[test]
    fn symlinked_targets_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("run")).unwrap();
        std::os::unix::fs::symlink("../../../../../tmp", root.join("etc/up")).unwrap();
        let sys = super::super::syscall::Linux;
        let t = sys.mount_target(root, "/run/secrets/x", true).unwrap();
        assert_eq!(t.inside, root.join("etc/secrets/x"));
        assert!(root.join("etc/secrets/x").is_file());
        let t = sys.mount_target(root, "/etc/up/f", false).unwrap();
        assert_eq!(t.inside, root.join("tmp/f"));
        assert!(t.mount.starts_with("/proc/self/fd/"));
        assert!(root.join("tmp/f").is_dir());
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::sandbox::spec::Mount;
    use crate::sandbox::syscall::Recorder;

    #[test]
    fn secrets_go_to_a_private_tmpfs_and_are_bound_read_only() {
        let rec = Recorder::default();
        let spec = Spec {
            mounts: vec![Mount {
                target: "/run/secrets/token".into(),
                kind: MountKind::Secret {
                    index: 0,
                    mode: 0o400,
                    uid: 1000,
                    gid: 0,
                },
                readonly: true,
            }],
            secret_count: 1,
            secret_dir: "/s".into(),
            ..Spec::sample()
        };
        setup(&rec, &spec, &[b"hunter2".to_vec()]).unwrap();
        let calls = rec.calls();
        let tmpfs = calls
            .iter()
            .position(|c| c == "mount tmpfs /s tmpfs [nosuid,nodev,noexec] mode=0755,size=16m")
            .expect("a tmpfs for secrets");
        let write = calls
            .iter()
            .position(|c| c == "write /s/0 (7 bytes) 400 1000:0")
            .expect("the secret written there");
        let bind = calls
            .iter()
            .position(|c| c == "mount /s/0 /m/run/secrets/token [bind]")
            .expect("bound to its target");
        assert!(
            calls.contains(&"setattr /m/run/secrets/token [ro,nosuid,nodev,noexec]".to_string())
        );
        assert!(tmpfs < write && write < bind);
        assert!(
            !calls.iter().any(|c| c.contains("hunter2")),
            "the content must not be logged"
        );
    }
}
