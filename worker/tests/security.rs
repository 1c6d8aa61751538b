//! Hostile builds: one per class of hole that a RUN step could use to reach the host (issue
//! 15), each run as root and rootless. A step records what it managed to do into its image;
//! the test reads the image and, where the attack aims outside, the host itself.
//!
//! Every test here failed on the sandbox before it became a container boundary; the commit
//! that made each one pass says how it failed.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{Env, ROOTLESS_USER, host_tools, text};

/// A `#[test]` of `$f` as root, and one as an unprivileged user.
macro_rules! root_and_rootless {
    ($f:ident: $root:ident, $rootless:ident) => {
        #[test]
        fn $root() {
            $f(false);
        }

        #[test]
        fn $rootless() {
            $f(true);
        }
    };
}

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("security-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("security-rootless", true))
}

fn env(rootless: bool) -> &'static Env {
    if rootless { rootless_env() } else { root_env() }
}

/// `--output=type=local` of a build of `dockerfile`, plus `args`, run by `run` (which gets the
/// complete `kiln` command).
fn build_with(
    env: &Env,
    name: &str,
    dockerfile: &str,
    args: &[&str],
    run: impl FnOnce(Command) -> Output,
) -> PathBuf {
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    build_ctx_with(env, name, &ctx, args, run)
}

fn build_ctx_with(
    env: &Env,
    name: &str,
    ctx: &Path,
    args: &[&str],
    run: impl FnOnce(Command) -> Output,
) -> PathBuf {
    let fs = env.dir.join(format!("{name}-fs"));
    let _ = std::fs::remove_dir_all(&fs);
    let output = format!("--output=type=local,dest={}", fs.display());
    let mut all = vec!["--no-cache", output.as_str()];
    all.extend_from_slice(args);
    let out = run(env.command(&env.build_args(&env.state, ctx, &all), &[]));
    assert!(out.status.success(), "{name}: {}", text(&out));
    fs
}

fn build(env: &Env, name: &str, dockerfile: &str) -> PathBuf {
    build_with(env, name, dockerfile, &[], |mut c| c.output().unwrap())
}

fn read(fs: &Path, path: &str) -> String {
    std::fs::read_to_string(fs.join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

/// One line of `/proc/self/mountinfo`: the mount point and its per-mount options.
struct MountLine {
    point: String,
    options: Vec<String>,
    fstype: String,
}

fn mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            Some(MountLine {
                point: f.get(4)?.to_string(),
                options: f.get(5)?.split(',').map(str::to_string).collect(),
                fstype: right.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// /proc: read-only kernel knobs, masked kernel state

fn proc_is_read_only_and_masked(rootless: bool) {
    proc_checks(rootless, &[]);
}

/// Without a pid namespace the step gets the host's (the pod's) `/proc`, bound: the same
/// paths must be masked and read-only there.
fn proc_is_locked_without_a_process_sandbox(rootless: bool) {
    proc_checks(rootless, &["--no-process-sandbox"]);
}

fn proc_checks(rootless: bool, args: &[&str]) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN --network=none for f in /proc/sys/kernel/core_pattern /proc/sysrq-trigger /proc/sys/net/ipv4/ping_group_range /proc/sys/kernel/hostname; do \
              ( exec 3>>$f ) 2>/dev/null && echo \"writable $f\"; \
            done > /writable; \
            for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/interrupts; do \
              test -e $f && echo \"$f $(head -c 64 $f 2>/dev/null | wc -c)\"; \
            done > /masked; \
            for d in /proc/acpi /proc/scsi /proc/asound /sys/firmware; do \
              test -d $d && echo \"$d $(ls -A $d | wc -l)\"; \
            done > /masked-dirs; \
            cat /proc/self/mountinfo > /mountinfo\n";
    let env = env(rootless);
    let name = if args.is_empty() { "proc" } else { "proc-nops" };
    let fs = build_with(env, name, dockerfile, args, |mut c| c.output().unwrap());
    assert_eq!(
        read(&fs, "writable"),
        "",
        "kernel knobs under /proc opened for writing"
    );
    for line in read(&fs, "masked").lines() {
        assert!(line.ends_with(" 0"), "not masked: {line}");
    }
    for line in read(&fs, "masked-dirs").lines() {
        assert!(line.ends_with(" 0"), "not masked: {line}");
    }
    let mounts = mountinfo(&read(&fs, "mountinfo"));
    for path in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        if let Some(m) = mounts.iter().rev().find(|m| m.point == path) {
            assert!(m.options.contains(&"ro".into()), "{path} is not read-only");
        } else {
            // A path the kernel does not have (no /proc/bus without PCI) needs no mount.
            assert!(!Path::new(path).exists(), "{path} is not read-only");
        }
    }
}

root_and_rootless!(
    proc_is_read_only_and_masked: proc_is_read_only_and_masked_root,
    proc_is_read_only_and_masked_rootless
);

// ---------------------------------------------------------------------------------------------
// /sys: read-only all the way down, so the cgroup v1 trees are not writable

fn sys_is_read_only_recursively(rootless: bool) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/devices/devices.allow /sys/kernel/uevent_helper; do \
              test -e $f && ( exec 3>>$f ) 2>/dev/null && echo \"writable $f\"; \
            done > /writable; \
            cat /proc/self/mountinfo > /mountinfo\n";
    let env = env(rootless);
    let fs = build(env, "sys", dockerfile);
    assert_eq!(read(&fs, "writable"), "", "/sys files opened for writing");
    let mounts = mountinfo(&read(&fs, "mountinfo"));
    let under_sys: Vec<&MountLine> = mounts
        .iter()
        .filter(|m| m.point == "/sys" || m.point.starts_with("/sys/"))
        .collect();
    assert!(!under_sys.is_empty(), "no /sys in the step");
    for m in under_sys {
        assert!(
            m.options.contains(&"ro".into()),
            "{} ({}) is writable: {:?}",
            m.point,
            m.fstype,
            m.options
        );
    }
}

root_and_rootless!(
    proc_is_locked_without_a_process_sandbox: proc_is_locked_without_a_process_sandbox_root,
    proc_is_locked_without_a_process_sandbox_rootless
);

root_and_rootless!(
    sys_is_read_only_recursively: sys_is_read_only_recursively_root,
    sys_is_read_only_recursively_rootless
);

// ---------------------------------------------------------------------------------------------
// Devices: none can be made or opened but the few the sandbox provides

/// Device nodes the sandbox provides, each a bind mount of the host's node.
const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

fn devices_cannot_be_made_or_opened(rootless: bool) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN for d in /tmp /dev /dev/shm; do \
              rm -f $d/kmem; mknod $d/kmem c 1 2 2>/dev/null && echo \"made $d/kmem\"; \
              ( exec 3<$d/kmem ) 2>/dev/null && echo \"opened $d/kmem\"; \
            done > /devices; \
            ( exec 3</dev/tty ) 2>/dev/null && echo 'opened /dev/tty' >> /devices; \
            for d in /dev/kvm /dev/mem /dev/sda /dev/vda /dev/net/tun /dev/fuse /dev/console; do \
              ( exec 3<$d ) 2>/dev/null && echo \"opened host $d\"; \
            done >> /devices; \
            cat /proc/self/mountinfo > /mountinfo\n";
    let env = env(rootless);
    let fs = build(env, "devices", dockerfile);
    assert_eq!(read(&fs, "devices"), "", "device nodes made or opened");
    for m in mountinfo(&read(&fs, "mountinfo")) {
        // The devices, and the masks of kernel files (binds of /dev/null, as in runc).
        let device = DEVICES.contains(&m.point.as_str())
            || (m.point.starts_with("/proc/") && m.fstype == "devtmpfs");
        assert!(
            device || m.fstype == "devpts" || m.options.contains(&"nodev".into()),
            "{} ({}) allows devices: {:?}",
            m.point,
            m.fstype,
            m.options
        );
        assert_ne!(
            m.point, "/dev/tty",
            "the host's /dev/tty is bound into the step"
        );
    }
}

root_and_rootless!(
    devices_cannot_be_made_or_opened: devices_cannot_be_made_or_opened_root,
    devices_cannot_be_made_or_opened_rootless
);

// ---------------------------------------------------------------------------------------------
// Privileges: no_new_privs, seccomp, Docker's capability set without CAP_MKNOD

/// Docker's default capability set without `CAP_MKNOD`: CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
/// KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: &str = "00000000a00425fb";

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

fn privileges_are_dropped(rootless: bool) {
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN cat /proc/self/status > /status\n\
        RUN --security=insecure cat /proc/self/status > /insecure\n\
        USER 1000\n\
        RUN cat /proc/self/status > /tmp/user\n";
    let env = env(rootless);
    let fs = build_with(
        env,
        "privileges",
        dockerfile,
        &["--allow=security.insecure"],
        |mut c| c.output().unwrap(),
    );
    let status = read(&fs, "status");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(status_field(&status, set), DEFAULT_CAPS, "{set}");
    }
    for set in ["CapInh", "CapAmb"] {
        assert_eq!(status_field(&status, set), "0000000000000000", "{set}");
    }
    let user = read(&fs, "tmp/user");
    assert_eq!(status_field(&user, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&user, "CapBnd"), DEFAULT_CAPS);
    assert_eq!(status_field(&user, "Seccomp"), "2");
    // `--security=insecure` is the one way out, and an explicit one.
    let insecure = read(&fs, "insecure");
    assert_eq!(status_field(&insecure, "Seccomp"), "0", "{insecure}");
    assert_ne!(status_field(&insecure, "CapBnd"), DEFAULT_CAPS);
}

root_and_rootless!(
    privileges_are_dropped: privileges_are_dropped_root,
    privileges_are_dropped_rootless
);

/// The default seccomp profile refuses what Docker's refuses, even to the step's root: the
/// kernel keyring (`add_key`, `keyctl`) is not namespaced.
fn seccomp_refuses_the_keyring(rootless: bool) {
    let dockerfile = "FROM kiln-ref/busybox:1\nCOPY keyctl /keyctl\n\
        RUN /keyctl > /sandboxed 2>&1 || true\n\
        RUN --security=insecure /keyctl > /insecure 2>&1 || true\n";
    let env = env(rootless);
    let ctx = env.context("keyring", &[("Dockerfile", dockerfile)]);
    // A static program that calls keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1)
    // and prints the errno: busybox has no keyctl applet.
    compile_keyctl(&ctx.join("keyctl"));
    chown_for(env, &ctx);
    let fs = build_ctx_with(
        env,
        "keyring",
        &ctx,
        &["--allow=security.insecure"],
        |mut c| c.output().unwrap(),
    );
    assert_eq!(read(&fs, "sandboxed"), "errno 1", "keyctl was not refused");
    assert_ne!(read(&fs, "insecure"), "errno 1");
}

root_and_rootless!(
    seccomp_refuses_the_keyring: seccomp_refuses_the_keyring_root,
    seccomp_refuses_the_keyring_rootless
);

/// A tiny static C program, built with the host's compiler.
fn compile_keyctl(dest: &Path) {
    let src = dest.with_extension("c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <errno.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
         int main(void) {\n\
           long r = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 1);\n\
           if (r < 0) printf(\"errno %d\\n\", errno); else printf(\"ok\\n\");\n\
           return 0;\n\
         }\n",
    )
    .unwrap();
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(dest)
        .arg(&src)
        .output()
        .expect("a C compiler (cc)");
    assert!(out.status.success(), "cc: {}", text(&out));
    std::fs::remove_file(src).unwrap();
}

fn chown_for(env: &Env, path: &Path) {
    if env.rootless {
        let ok = Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

// ---------------------------------------------------------------------------------------------
// File descriptors (runc CVE-2024-21626): none of the caller's reaches the step

/// The number the leaked descriptor gets in the `kiln` process.
const LEAKED_FD: i32 = 42;

fn inherited_fds_do_not_reach_the_step(rootless: bool) {
    let env = env(rootless);
    // A host directory the step must not reach, open in the process that runs kiln.
    let outside = env.dir.join("fd-outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("host-file"), "host").unwrap();
    chown_for(env, &outside);
    let dockerfile = format!(
        "FROM kiln-ref/busybox:1\n\
         RUN ls /proc/self/fd/{LEAKED_FD}/ > /listed 2>/dev/null; \
             touch /proc/self/fd/{LEAKED_FD}/escaped 2>/dev/null; \
             for fd in /proc/self/fd/*; do echo \"$fd $(readlink $fd)\"; done > /fds; \
             ls /proc/1/fd/ > /init-fd-list 2>/dev/null; \
             for fd in /proc/1/fd/*; do readlink $fd; done > /init-fds 2>/dev/null; \
             readlink /proc/1/cwd >> /init-fds 2>/dev/null; true\n"
    );
    let dir = std::fs::File::open(&outside).unwrap();
    let fs = build_with(env, "fds", &dockerfile, &[], |mut c| {
        use std::os::fd::AsRawFd;
        let raw = dir.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe, and `raw` stays open in the parent until the
        // child has exec'd (the closure borrows nothing else).
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(raw, LEAKED_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().unwrap()
    });
    drop(dir);
    assert!(
        !outside.join("escaped").exists(),
        "the step wrote through an inherited descriptor"
    );
    assert_eq!(read(&fs, "listed"), "", "the step listed a host directory");
    assert_eq!(
        read(&fs, "init-fds"),
        "",
        "the step followed the descriptors of the sandbox's pid 1"
    );
    let init_fds = read(&fs, "init-fd-list");
    assert!(
        !init_fds.lines().any(|fd| fd == LEAKED_FD.to_string()),
        "the sandbox's pid 1 holds the leaked descriptor: {init_fds}"
    );
    let fds = read(&fs, "fds");
    assert!(
        !fds.contains(&format!("/proc/self/fd/{LEAKED_FD} ")),
        "{fds}"
    );
    for line in fds.lines() {
        let target = line.split_once(' ').map(|(_, t)| t).unwrap_or("");
        assert!(
            !target.contains(env.dir.to_str().unwrap()) && !target.contains("/kiln"),
            "the step holds a descriptor of the engine: {line}"
        );
    }
}

root_and_rootless!(
    inherited_fds_do_not_reach_the_step: inherited_fds_do_not_reach_the_step_root,
    inherited_fds_do_not_reach_the_step_rootless
);

// ---------------------------------------------------------------------------------------------
// The terminal: a step run from an interactive shell cannot type into it (TIOCSTI)

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn no_controlling_terminal(rootless: bool) {
    let env = env(rootless);
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN cut -d' ' -f6,7 /proc/self/stat > /stat; \
            ( exec 3</dev/tty ) 2>/dev/null && echo opened > /tty || echo refused > /tty; \
            for fd in 0 1 2; do test -t $fd && echo \"$fd is a terminal\"; done > /terminals; true\n";
    // `script` gives kiln a pseudo-terminal as its controlling terminal and standard streams,
    // as an interactive shell would.
    let fs = build_with(env, "tty", dockerfile, &[], |c| {
        let line: Vec<String> = std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect();
        let mut script = Command::new("script");
        script.args(["-qec", &line.join(" "), "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        script.stdin(Stdio::null()).output().unwrap()
    });
    let stat = read(&fs, "stat");
    let tty_nr = stat.split(' ').nth(1).unwrap();
    assert_eq!(tty_nr, "0", "the step has a controlling terminal: {stat}");
    assert_eq!(read(&fs, "tty"), "refused", "the step opened /dev/tty");
    assert_eq!(read(&fs, "terminals"), "");
}

root_and_rootless!(
    no_controlling_terminal: no_controlling_terminal_root,
    no_controlling_terminal_rootless
);

// ---------------------------------------------------------------------------------------------
// ssh forwarding: a step may list identities and sign, nothing else

struct Agent {
    child: std::process::Child,
    socket: PathBuf,
    user: Option<&'static str>,
}

/// `program`, run as `user` when there is one.
fn as_user(program: &str, user: Option<&str>) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", program]);
            c
        }
        None => Command::new(program),
    }
}

impl Agent {
    fn start(dir: &Path, user: Option<&'static str>) -> Agent {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let child = as_user("ssh-agent", user)
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Agent {
            child,
            socket,
            user,
        }
    }

    fn ssh_add(&self, args: &[&str]) -> Output {
        as_user("ssh-add", self.user)
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ssh_agent_is_read_only(rootless: bool) {
    let env = env(rootless);
    let keydir = env.dir.join("agent-keys");
    let _ = std::fs::remove_dir_all(&keydir);
    std::fs::create_dir_all(&keydir).unwrap();
    let key = keydir.join("id_ed25519");
    assert!(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kiln-forwarded",
                "-f"
            ])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    chown_for(env, &keydir);
    let agent = Agent::start(&keydir, rootless.then_some(ROOTLESS_USER));
    let added = agent.ssh_add(&[key.to_str().unwrap()]);
    assert!(added.status.success(), "ssh-add: {}", text(&added));

    let dockerfile = "FROM kiln-ref/busybox:1\nCOPY tools/ /\n\
        RUN --mount=type=ssh ssh-add -l > /before 2>&1; \
            ssh-add -D > /remove-all 2>&1; echo $? >> /remove-all; \
            ssh-add -l > /after 2>&1; true\n";
    let ctx = env.context("ssh-agent", &[("Dockerfile", dockerfile)]);
    host_tools(&ctx.join("tools"), &["/usr/bin/ssh-add"]);
    chown_for(env, &ctx);
    let ssh = format!("--ssh=default={}", agent.socket.display());
    let fs = build_ctx_with(env, "ssh-agent", &ctx, &[&ssh], |mut c| c.output().unwrap());
    assert!(read(&fs, "before").contains("kiln-forwarded"));
    assert!(
        read(&fs, "remove-all").ends_with('1'),
        "ssh-add -D succeeded: {}",
        read(&fs, "remove-all")
    );
    assert!(read(&fs, "after").contains("kiln-forwarded"));
    let listed = agent.ssh_add(&["-l"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("kiln-forwarded"),
        "the step removed the user's identities: {}",
        text(&listed)
    );
}

root_and_rootless!(
    ssh_agent_is_read_only: ssh_agent_is_read_only_root,
    ssh_agent_is_read_only_rootless
);
