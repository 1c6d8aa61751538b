//! The sandbox helper: `kiln __sandbox SPEC.json`, a process of its own for every RUN step.
//!
//! A fresh process keeps namespace setup away from the engine's threads: after `fork` in a
//! multithreaded program only async-signal-safe calls are allowed, and building a container is
//! anything but. The helper is single-threaded from its first instruction.
//!
//! ```text
//! engine ──spawn──▶ helper: setsid, unshare(mount, uts, ipc, [net], [pid]) ──fork──▶ pid 1 (init)
//!                    waits for pid 1, exits        assembles the rootfs, pivot_root,
//!                    with its status               forks the command, reaps every child
//! ```
//!
//! When the command exits, pid 1 exits with its status, and the kernel kills whatever the
//! command left running in the pid namespace; the mount namespace, and with it every mount of
//! the step, disappears with the last process. Nothing is left to clean up.
//!
//! The command itself is confined before it is exec'd ([`confine`]), as runc confines a
//! container's process: a session of its own with no controlling terminal; Docker's default
//! capabilities (without `CAP_MKNOD`) in every set but the inheritable and ambient ones, which
//! are empty; `no_new_privs`; every descriptor but the standard three closed on exec; Docker's
//! default seccomp profile. `--security=insecure` keeps every capability and installs no
//! filter.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use rustix::process::{Pid, WaitOptions, WaitStatus};

use super::rootfs;
use super::spec::Spec;
use super::syscall::{Linux, Namespaces, Syscall};
use crate::kernel::{self, Fork};

/// Exit status of the helper when the container could not be set up.
pub const SETUP_FAILED: i32 = 125;
/// Exit status when the command could not be executed.
pub const EXEC_FAILED: i32 = 127;

/// Docker's default capability set (moby `oci/caps/defaults.go`) without `CAP_MKNOD`: what a
/// RUN step keeps unless it asks for `--security=insecure`. `CAP_MKNOD` is left out because a
/// step can open no device it makes (every mount is `nodev`), and BuildKit's images need none.
pub const DEFAULT_CAPS: [u32; 13] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// [`DEFAULT_CAPS`] as a capability mask.
pub fn default_caps_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |mask, cap| mask | (1 << cap))
}

/// The helper's `main`. Never returns. The helper must call it before it opens anything.
pub fn helper_main(spec_path: &Path) -> ! {
    // What the engine inherited from its caller it passed on to us: none of it may reach the
    // container's pid 1, let alone the step.
    if let Err(e) = kernel::close_inherited_fds() {
        eprintln!("kiln sandbox: closing inherited descriptors: {e}");
        std::process::exit(SETUP_FAILED);
    }
    let spec: Spec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln sandbox: cannot read {}: {e}", spec_path.display());
            std::process::exit(SETUP_FAILED);
        }
    };
    let secrets = match read_secrets(spec.secret_count) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln sandbox: reading secrets: {e}");
            std::process::exit(SETUP_FAILED);
        }
    };
    let code = match supervise(&spec, &secrets) {
        Ok(code) => code,
        Err(e) => fail(&spec, SETUP_FAILED, &e.to_string()),
    };
    std::process::exit(code)
}

/// Where setup errors go: the spec's error file, opened (close-on-exec) before `pivot_root`
/// hides it.
static ERROR_FILE: OnceLock<File> = OnceLock::new();

fn fail(spec: &Spec, code: i32, message: &str) -> i32 {
    match ERROR_FILE.get() {
        Some(mut f) => {
            let _ = f.write_all(message.as_bytes());
        }
        None => {
            let _ = std::fs::write(&spec.error_file, message);
        }
    }
    code
}

/// Read the secrets the engine streams on standard input (a little-endian u32 length, then the
/// bytes, for each), then give the command an empty standard input.
fn read_secrets(count: usize) -> io::Result<Vec<Vec<u8>>> {
    use std::io::Read;
    let mut secrets = Vec::with_capacity(count);
    if count > 0 {
        let mut stdin = io::stdin().lock();
        for _ in 0..count {
            let mut len = [0u8; 4];
            stdin.read_exact(&mut len)?;
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            stdin.read_exact(&mut buf)?;
            secrets.push(buf);
        }
    }
    if let Ok(null) = File::open("/dev/null") {
        rustix::stdio::dup2_stdin(&null)?;
    }
    Ok(secrets)
}

/// The namespaces a step gets.
fn namespaces(spec: &Spec) -> Namespaces {
    Namespaces {
        mount: true,
        uts: true,
        ipc: true,
        net: spec.isolate_network,
        pid: spec.process_sandbox,
        user: false,
    }
}

fn supervise(spec: &Spec, secrets: &[Vec<u8>]) -> io::Result<i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let error_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&spec.error_file)
        .map_err(|e| io::Error::new(e.kind(), format!("opening the error file: {e}")))?;
    let _ = ERROR_FILE.set(error_file);
    let sys = Linux;
    // Leave the engine's session, and with it the terminal kiln may have been started from:
    // nothing of the step can reach that terminal (TIOCSTI) or be signalled through it.
    sys.setsid()?;
    sys.unshare(namespaces(spec))?;
    match kernel::fork_single_threaded()? {
        Fork::Child => {
            // The container's init. It must die with the helper, which the engine may kill.
            let code = match rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            )) {
                Ok(()) => container_init(&sys, spec, secrets),
                Err(e) => fail(spec, SETUP_FAILED, &format!("PR_SET_PDEATHSIG: {e}")),
            };
            std::process::exit(code)
        }
        Fork::Parent(pid) => wait_for(Some(pid)),
    }
}

/// Wait for `pid` (or, with `None`, reap any child until one does) and return its status.
fn wait_for(pid: Option<Pid>) -> io::Result<i32> {
    loop {
        match rustix::process::waitpid(pid, WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(decode(status)),
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn decode(status: WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        128 + sig
    } else {
        SETUP_FAILED
    }
}

fn container_init(sys: &dyn Syscall, spec: &Spec, secrets: &[Vec<u8>]) -> i32 {
    // Pid 1 holds descriptors of the host (the error file, the engine's pipes) and is visible
    // to the step: not dumpable, its /proc/1/fd, cwd and root are closed to the step's root,
    // which lacks CAP_SYS_PTRACE. The command's exec makes the command dumpable again.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        return fail(spec, SETUP_FAILED, &format!("PR_SET_DUMPABLE: {e}"));
    }
    if spec.isolate_network
        && let Err(e) = sys.loopback_up()
    {
        return fail(spec, SETUP_FAILED, &e.to_string());
    }
    if let Err(e) = rootfs::setup(sys, spec, secrets) {
        return fail(spec, SETUP_FAILED, &e.to_string());
    }
    // Compiled before the fork, so that a broken profile fails the setup, not the command.
    let filters = if spec.insecure {
        vec![]
    } else {
        match super::seccomp::default_profile() {
            Ok(f) => f,
            Err(e) => return fail(spec, SETUP_FAILED, &e.to_string()),
        }
    };
    let command = match kernel::fork_single_threaded() {
        Ok(Fork::Child) => {
            let code = match exec_command(sys, spec, secrets, &filters) {
                Err((code, message)) => fail(spec, code, &message),
                Ok(never) => match never {},
            };
            std::process::exit(code)
        }
        Ok(Fork::Parent(pid)) => pid,
        Err(e) => return fail(spec, SETUP_FAILED, &format!("fork: {e}")),
    };
    // Reap every process until the command itself exits.
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == command => return decode(status),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return SETUP_FAILED,
        }
    }
}

enum Never {}

/// Confine the calling process as a RUN step's command, in the order the kernel needs:
/// capabilities while still root (dropping from the bounding set needs `CAP_SETPCAP`), then the
/// ids (which need `CAP_SETUID`/`CAP_SETGID`, and clear the capabilities of a non-root user),
/// then `no_new_privs`, the descriptors, and the seccomp filters last (they would refuse some
/// of the calls before them).
pub fn confine(
    sys: &dyn Syscall,
    spec: &Spec,
    filters: &[seccompiler::BpfProgram],
) -> io::Result<()> {
    // A session of its own, with no controlling terminal, as runc gives a container's process
    // (the helper already left kiln's session; this keeps the step apart from pid 1's).
    sys.setsid()?;
    if !spec.insecure {
        sys.limit_capabilities(default_caps_mask())?;
    }
    // setgroups is refused in a single-id user namespace ("deny" in /proc/self/setgroups);
    // with no supplementary groups to set, that is no loss.
    if let Err(e) = sys.set_groups(&spec.additional_gids)
        && !spec.additional_gids.is_empty()
    {
        return Err(e);
    }
    sys.set_ids(spec.uid, spec.gid)?;
    if !spec.insecure {
        sys.set_no_new_privs()?;
    }
    // The standard streams stay; everything else, inherited or opened along the way, goes at
    // exec (runc CVE-2024-21626: a leaked directory descriptor is a way out of the root).
    sys.cloexec_from(3)?;
    if !filters.is_empty() {
        sys.seccomp(filters)?;
    }
    Ok(())
}

fn exec_command(
    sys: &dyn Syscall,
    spec: &Spec,
    secrets: &[Vec<u8>],
    filters: &[seccompiler::BpfProgram],
) -> Result<Never, (i32, String)> {
    let program = spec
        .args
        .first()
        .ok_or((EXEC_FAILED, "no command to run".to_string()))?;
    let argv: Vec<CString> = spec
        .args
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut env = spec.env.clone();
    for (var, index) in &spec.secret_env {
        if let Some(value) = secrets.get(*index) {
            env.push(format!("{var}={}", String::from_utf8_lossy(value)));
        }
    }
    let envp: Vec<CString> = env
        .iter()
        .map(|e| CString::new(e.as_bytes()).unwrap_or_default())
        .collect();
    confine(sys, spec, filters).map_err(|e| (SETUP_FAILED, e.to_string()))?;
    // Looked up as the step's user, after the switch, as runc does.
    let path = find_program(program, spec)?;
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| (EXEC_FAILED, "bad path".to_string()))?;
    let e = kernel::execve(&path_c, &argv, &envp);
    Err((EXEC_FAILED, format!("exec {program:?}: {e}")))
}

/// Look a program up the way runc does: as given when it has a `/`, else in the step's `PATH`.
fn find_program(program: &str, spec: &Spec) -> Result<std::path::PathBuf, (i32, String)> {
    if program.contains('/') {
        return Ok(program.into());
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::image::config::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file && rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
            return Ok(candidate);
        }
    }
    Err((
        EXEC_FAILED,
        format!("exec: {program:?}: executable file not found in $PATH"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::syscall::Recorder;

    fn spec() -> Spec {
        Spec {
            uid: 1000,
            gid: 50,
            additional_gids: vec![50, 100],
            ..Spec::sample()
        }
    }

    #[test]
    fn docker_default_caps_without_mknod() {
        assert_eq!(default_caps_mask(), 0xa004_25fb);
        assert_eq!(default_caps_mask() & (1 << 27), 0, "CAP_MKNOD");
        assert_eq!(default_caps_mask() & (1 << 21), 0, "CAP_SYS_ADMIN");
    }

    #[test]
    fn the_command_is_confined_in_order() {
        let rec = Recorder::default();
        let filters = crate::sandbox::seccomp::default_profile().unwrap();
        confine(&rec, &spec(), &filters).unwrap();
        let calls = rec.calls();
        let seccomp = format!("seccomp {}+{}", filters[0].len(), filters[1].len());
        assert_eq!(
            calls,
            [
                "setsid",
                "capabilities 0xa00425fb",
                "setgroups [50,100]",
                "setids 1000:50",
                "no_new_privs",
                "cloexec_from 3",
                seccomp.as_str(),
            ]
        );
    }

    #[test]
    fn insecure_keeps_capabilities_and_installs_no_filter() {
        let rec = Recorder::default();
        let mut s = spec();
        s.insecure = true;
        confine(&rec, &s, &[]).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "setsid",
                "setgroups [50,100]",
                "setids 1000:50",
                "cloexec_from 3"
            ]
        );
    }

    #[test]
    fn the_namespaces_follow_the_spec() {
        let mut s = spec();
        let ns = namespaces(&s);
        assert!(ns.mount && ns.uts && ns.ipc && ns.net && ns.pid && !ns.user);
        s.isolate_network = false;
        s.process_sandbox = false;
        let ns = namespaces(&s);
        assert!(!ns.net && !ns.pid);
    }
}
