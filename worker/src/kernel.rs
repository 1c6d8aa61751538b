//! The system calls that no safe wrapper covers, and the only `unsafe` code of the engine.
//!
//! Everything else goes through `rustix` or `std`. What is left here is either unsound to
//! expose safely in general (`fork`, `execve`, a signal handler, `unshare`) or missing from
//! `rustix` (`close_range`, `mount_setattr`, the interface ioctls). Each function states the
//! condition it relies on and checks it where a check is possible, so that every caller stays
//! safe code; each `unsafe` block says why it holds.

// The one module of the crate where `unsafe` is allowed (lib.rs denies it everywhere else).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, Signal};

/// `empty` with every flag whose condition holds set: a set of booleans as kernel flags.
pub fn flags_of<T: Copy + std::ops::BitOrAssign, const N: usize>(
    empty: T,
    flags: [(bool, T); N],
) -> T {
    let mut bits = empty;
    for (_, flag) in flags.into_iter().filter(|(on, _)| *on) {
        bits |= flag;
    }
    bits
}

/// Which side of a [`fork_single_threaded`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Child,
    Parent(Pid),
}

/// How many threads this process has, from `/proc/self/task`.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `fork(2)`, refused unless the process has exactly one thread.
///
/// In a multithreaded process the child may only call async-signal-safe functions until it
/// execs (another thread may have held the allocator's lock at the fork). The sandbox helper
/// and the rootless re-entry fork before any thread exists, and then build a container in the
/// child, which allocates freely; the check makes that assumption an error rather than a
/// deadlock.
pub fn fork_single_threaded() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "fork: the process has {threads} threads; only a single-threaded process may fork here"
        )));
    }
    // SAFETY: the process has one thread (checked just above; only this thread could start
    // another, and it is here), so no lock is held by a thread that will not exist in the
    // child: the child may call any function.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(
            Pid::from_raw(pid).ok_or_else(|| io::Error::other("fork returned pid 0"))?,
        )),
    }
}

/// `execve(2)`: replace this process with `path`. Returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: `path` and every string are NUL-terminated and borrowed for the whole call, and
    // both pointer arrays end with a null pointer, as execve requires.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Make the child of `command` die with this process (`PR_SET_PDEATHSIG`), even when this
/// process is killed outright, and fail it if this process is already gone.
pub fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec in the child of a possibly multithreaded
    // process, so it may only make async-signal-safe calls: prctl and getppid are single
    // system calls (rustix makes them directly) that neither allocate nor take locks.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other(
                    "the engine exited before its helper started",
                ));
            }
            Ok(())
        });
    }
}

/// Namespaces a process can leave with `unshare(2)`. Deliberately without `CLONE_FILES` and
/// `CLONE_FS`, which split state between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    pub pid: bool,
}

/// `unshare(2)` into new namespaces.
pub fn unshare(ns: Namespaces) -> io::Result<()> {
    use rustix::thread::UnshareFlags as F;
    let flags = flags_of(
        F::empty(),
        [
            (ns.user, F::NEWUSER),
            (ns.mount, F::NEWNS),
            (ns.uts, F::NEWUTS),
            (ns.ipc, F::NEWIPC),
            (ns.net, F::NEWNET),
            (ns.pid, F::NEWPID),
        ],
    );
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES, which would let threads see
    // descriptors disappear; `Namespaces` cannot express it (nor CLONE_FS).
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Leave this process's filesystem attributes (root, cwd, umask) and mount table for the
/// calling thread alone (`unshare(CLONE_FS | CLONE_NEWNS)`): a thread that mounts for itself
/// without moving the whole process.
pub fn unshare_thread_mounts() -> io::Result<()> {
    use rustix::thread::UnshareFlags as F;
    // SAFETY: CLONE_FS and CLONE_NEWNS change only the calling thread's root, cwd, umask and
    // mount namespace; no descriptor table is split (no CLONE_FILES), so no other thread can
    // observe a descriptor vanish.
    unsafe { rustix::thread::unshare_unsafe(F::FS | F::NEWNS) }.map_err(io::Error::from)
}

/// Mark every descriptor from `first` up close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so that none survives into the program exec'd next, whoever
/// opened it (a caller's leaked descriptor, a library's).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: with CLOSE_RANGE_CLOEXEC nothing is closed now, so every `OwnedFd` and `File`
    // of this process stays valid (I/O safety holds); the descriptors go only at exec.
    let r = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Close every descriptor from 3 up, at the start of a process that has opened none of its
/// own: whatever it inherited (a caller's leaked directory, a job server's pipes) is gone
/// before anything else runs, so nothing it forks can hold it either.
///
/// Call it first thing in `main` of a process that re-executes itself as a helper, before
/// anything (the standard library included) has opened a descriptor of its own.
pub fn close_inherited_fds() -> io::Result<()> {
    // SAFETY: the caller runs this before opening any descriptor, so every descriptor from 3
    // up was inherited and is owned by no `OwnedFd`, `File` or library state of this process:
    // closing them invalidates nothing that will be used.
    let r = unsafe { libc::close_range(3, u32::MAX, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attributes `mount_setattr(2)` sets on a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountAttrs {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountAttrs {
    fn bits(self) -> u64 {
        flags_of(
            0,
            [
                (self.readonly, libc::MOUNT_ATTR_RDONLY),
                (self.nosuid, libc::MOUNT_ATTR_NOSUID),
                (self.nodev, libc::MOUNT_ATTR_NODEV),
                (self.noexec, libc::MOUNT_ATTR_NOEXEC),
            ],
        )
    }
}

/// `mount_setattr(2)`: add `attrs` to the mount at `target`, and with `recursive` to every
/// mount below it too (which a `MS_REMOUNT|MS_BIND` cannot do).
///
/// A symlink at `target` is not followed, except a descriptor's own `/proc/self/fd/N`
/// ([`crate::fsroot::proc_path`]): that is how a mount target resolved inside a container's
/// root is named, and following it reaches the mount on the very directory resolved.
pub fn mount_setattr(target: &Path, attrs: MountAttrs, recursive: bool) -> io::Result<()> {
    let path = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let attr = libc::mount_attr {
        attr_set: attrs.bits(),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let nofollow = if crate::fsroot::is_proc_path(target) {
        0
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 } | nofollow;
    // SAFETY: `path` is NUL-terminated and `attr` a complete `struct mount_attr` whose size is
    // passed with it; the kernel only reads both during the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ip link set lo up` in this network namespace, with the interface ioctls.
pub fn loopback_up() -> io::Result<()> {
    use rustix::fd::AsRawFd;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of the `ifreq` it is given, a
    // valid, exclusively borrowed one; `sock` is an open socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS only reads the `ifreq`, which is valid and borrowed for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
        // A signal handler may only make async-signal-safe calls: kill(2) is one system call.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Pass SIGTERM, SIGINT, SIGHUP and SIGQUIT on to `pid` (a parent that only waits for its
/// child, as the rootless re-entry does).
pub fn forward_signals_to(pid: Pid) {
    FORWARD_TO.store(pid.as_raw_nonzero().get(), Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: `forward` is async-signal-safe (an atomic load and kill(2)), and replacing
        // these signals' dispositions affects no other code: this process only waits.
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
}

/// The name of user `uid`, through the C library's user database (which may be NSS, not only
/// `/etc/passwd`): `/etc/subuid` is usually keyed by name.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: `passwd` is plain old data, for which all zeroes is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is to a live, exclusively borrowed local, and `buf.len()` is the
    // size of `buf`, where getpwuid_r keeps the strings `pwd` points to.
    let r = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`, alive here.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_is_refused_while_another_thread_runs() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let e = fork_single_threaded().unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        drop(tx);
        let _ = other.join();
    }

    #[test]
    fn flags_are_set_only_where_their_condition_holds() {
        assert_eq!(flags_of(0u64, [(true, 1), (false, 2), (true, 8)]), 9);
        let attrs = MountAttrs {
            readonly: true,
            nodev: true,
            ..Default::default()
        };
        assert_eq!(
            attrs.bits(),
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV
        );
    }
}
