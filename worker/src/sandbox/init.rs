//! The sandbox helper: `kiln __sandbox SPEC.json`, a process of its own for every RUN step.
//!
//! A fresh process keeps namespace setup away from the engine's threads: after `fork` in a
//! multithreaded program only async-signal-safe calls are allowed, and building a container is
//! anything but. The helper is single-threaded from its first instruction.
//!
//! ```text
//! engine ──spawn──▶ helper: unshare(mount, uts, ipc, [net], [pid]) ──fork──▶ pid 1 (init)
//!                    waits for pid 1, exits        assembles the rootfs, pivot_root,
//!                    with its status               forks the command, reaps every child
//! ```
//!
//! When the command exits, pid 1 exits with its status, and the kernel kills whatever the
//! command left running in the pid namespace; the mount namespace, and with it every mount of
//! the step, disappears with the last process. Nothing is left to clean up.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::rootfs;
use super::spec::Spec;
use super::syscall::Linux;

/// Exit status of the helper when the container could not be set up.
pub const SETUP_FAILED: i32 = 125;
/// Exit status when the command could not be executed.
pub const EXEC_FAILED: i32 = 127;

/// Docker's default capability set (moby `oci/caps/defaults.go`): what a RUN step keeps unless
/// it asks for `--security=insecure`.
const DEFAULT_CAPS: [u32; 14] = [
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
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// The helper's `main`. Never returns.
pub fn helper_main(spec_path: &Path) -> ! {
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

/// Where setup errors go: the spec's error file, opened before `pivot_root` hides it.
static ERROR_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn fail(spec: &Spec, code: i32, message: &str) -> i32 {
    let fd = ERROR_FD.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        unsafe { libc::write(fd, message.as_ptr().cast(), message.len()) };
    } else {
        let _ = std::fs::write(&spec.error_file, message);
    }
    code
}

fn errno<T: PartialOrd + Default>(ret: T, what: &str) -> io::Result<T> {
    if ret < T::default() {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(ret)
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
    let null = CString::new("/dev/null").expect("no NUL");
    let fd = unsafe { libc::open(null.as_ptr(), libc::O_RDONLY) };
    if fd >= 0 {
        unsafe {
            libc::dup2(fd, 0);
            libc::close(fd);
        }
    }
    Ok(secrets)
}

fn supervise(spec: &Spec, secrets: &[Vec<u8>]) -> io::Result<i32> {
    let path = CString::new(spec.error_file.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = errno(
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o600,
            )
        },
        "opening the error file",
    )?;
    ERROR_FD.store(fd, std::sync::atomic::Ordering::SeqCst);
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.isolate_network {
        flags |= libc::CLONE_NEWNET;
    }
    if spec.process_sandbox {
        flags |= libc::CLONE_NEWPID;
    }
    errno(unsafe { libc::unshare(flags) }, "unshare")?;
    let pid = errno(unsafe { libc::fork() }, "fork")?;
    if pid == 0 {
        // The container's init. It must die with the helper, which the engine may kill.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = container_init(spec, secrets);
        unsafe { libc::_exit(code) };
    }
    wait_for(pid)
}

fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(decode(status));
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(io::Error::last_os_error());
        }
    }
}

fn decode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        SETUP_FAILED
    }
}

fn container_init(spec: &Spec, secrets: &[Vec<u8>]) -> i32 {
    if spec.isolate_network
        && let Err(e) = loopback_up()
    {
        return fail(spec, SETUP_FAILED, &format!("bringing up loopback: {e}"));
    }
    if let Err(e) = rootfs::setup(&Linux, spec, secrets) {
        return fail(spec, SETUP_FAILED, &e.to_string());
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(
            spec,
            SETUP_FAILED,
            &format!("fork: {}", io::Error::last_os_error()),
        );
    }
    if pid == 0 {
        let code = match exec_command(spec, secrets) {
            Err((code, message)) => fail(spec, code, &message),
            Ok(never) => match never {},
        };
        unsafe { libc::_exit(code) };
    }
    // Reap every process until the command itself exits.
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid {
            return decode(status);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return SETUP_FAILED;
        }
    }
}

enum Never {}

fn exec_command(spec: &Spec, secrets: &[Vec<u8>]) -> Result<Never, (i32, String)> {
    let setup = |e: io::Error| (SETUP_FAILED, e.to_string());
    if !spec.insecure {
        drop_capabilities().map_err(setup)?;
    }
    if !spec.process_sandbox {
        // Without a pid namespace, a session lets the engine kill what the step leaves behind.
        unsafe { libc::setsid() };
    }
    let groups: Vec<libc::gid_t> = spec.additional_gids.clone();
    // setgroups is refused in a single-id user namespace ("deny" in /proc/self/setgroups).
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 && !groups.is_empty() {
        return Err(setup(io::Error::new(
            io::Error::last_os_error().kind(),
            format!("setgroups: {}", io::Error::last_os_error()),
        )));
    }
    errno(
        unsafe { libc::setgid(spec.gid) },
        &format!("setgid {}", spec.gid),
    )
    .map_err(setup)?;
    errno(
        unsafe { libc::setuid(spec.uid) },
        &format!("setuid {}", spec.uid),
    )
    .map_err(setup)?;
    let program = spec
        .args
        .first()
        .ok_or((EXEC_FAILED, "no command to run".to_string()))?;
    let path = find_program(program, spec)?;
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
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| (EXEC_FAILED, "bad path".to_string()))?;
    unsafe { libc::execve(path_c.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
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
        let c = CString::new(candidate.as_os_str().as_bytes()).unwrap_or_default();
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Ok(candidate);
        }
    }
    Err((
        EXEC_FAILED,
        format!("exec: {program:?}: executable file not found in $PATH"),
    ))
}

fn drop_capabilities() -> io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if !DEFAULT_CAPS.contains(&cap) {
            errno(
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) },
                &format!("dropping capability {cap}"),
            )?;
        }
    }
    Ok(())
}

/// `ip link set lo up`, with an ioctl on a datagram socket.
fn loopback_up() -> io::Result<()> {
    let fd = errno(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "socket",
    )?;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    let result = (|| {
        errno(
            unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) },
            "SIOCGIFFLAGS",
        )?;
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        errno(
            unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) },
            "SIOCSIFFLAGS",
        )?;
        Ok(())
    })();
    unsafe { libc::close(fd) };
    result
}
