//! Rootless operation: an unprivileged `kiln` enters a user namespace before it does anything
//! else, and builds as root of that namespace.
//!
//! - With `newuidmap`/`newgidmap` (Debian's `uidmap`) and a range in `/etc/subuid` and
//!   `/etc/subgid`, the namespace maps the user to root and the range to ids 1..=N, so images
//!   keep their owners (`useradd -m` gives every user 65536 ids).
//! - Without them, only the user's own id is mapped, to root. Every file of an image then
//!   belongs to root, and a RUN step cannot switch to another user. Kiln says so once.
//! - Without user namespaces at all, it stops with an explanation.
//!
//! The namespace is entered by forking while the process is still single-threaded: the child
//! unshares, the parent writes the id maps (only it, outside the namespace, may), and the child
//! carries on as root of the namespace with its capabilities intact. The parent waits and
//! exits with the child's status.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use thiserror::Error;

/// Why the user namespace could not be entered.
#[derive(Debug, Error)]
pub enum UsernsError {
    #[error(
        "cannot create a user namespace: {0}. Rootless builds need unprivileged user namespaces: check that kernel.unprivileged_userns_clone (Debian) is 1 and user.max_user_namespaces is above 0, or run kiln as root"
    )]
    Unshare(io::Error),
    #[error("cannot map ids into the user namespace: {0}")]
    Map(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// How ids are mapped into the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// root → the user, 1..=count → the subordinate range.
    Full {
        uid_start: u32,
        uid_count: u32,
        gid_start: u32,
        gid_count: u32,
    },
    /// root → the user, nothing else.
    Single { reason: String },
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// Find the first range of a user (by name or numeric id) in a subuid/subgid file.
pub fn parse_subid(content: &str, name: &str, id: u32) -> Option<Range> {
    content.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if owner != name && owner.parse::<u32>().ok() != Some(id) {
            return None;
        }
        Some(Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

/// Decide the mapping for this user.
pub fn plan_mapping(uid: u32, gid: u32, name: &str) -> Mapping {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let tools = ["newuidmap", "newgidmap"].map(find_in_path);
    let (Some(_), Some(_)) = (&tools[0], &tools[1]) else {
        return Mapping::Single {
            reason: "newuidmap/newgidmap are not installed (Debian package uidmap)".into(),
        };
    };
    let Some(u) = parse_subid(&read("/etc/subuid"), name, uid) else {
        return Mapping::Single {
            reason: format!("/etc/subuid has no range for {name}"),
        };
    };
    let Some(g) = parse_subid(&read("/etc/subgid"), name, gid) else {
        return Mapping::Single {
            reason: format!("/etc/subgid has no range for {name}"),
        };
    };
    Mapping::Full {
        uid_start: u.start,
        uid_count: u.count,
        gid_start: g.start,
        gid_count: g.count,
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .map(|d| Path::new(d).join(program))
        .chain([Path::new("/usr/bin").join(program)])
        .find(|p| p.is_file())
}

static MAPPING: OnceLock<Option<Mapping>> = OnceLock::new();

/// The mapping this process runs under: `None` when it is not in a namespace Kiln entered.
pub fn current() -> Option<&'static Mapping> {
    MAPPING.get().and_then(Option::as_ref)
}

/// Whether this process is inside a user namespace other than the initial one (Kiln's own, or
/// a Kubernetes pod with `hostUsers: false`). Overlayfs then needs `userxattr`.
pub fn in_user_namespace() -> bool {
    static IN: OnceLock<bool> = OnceLock::new();
    *IN.get_or_init(|| {
        fs::read_to_string("/proc/self/uid_map")
            .map(|m| {
                let f: Vec<&str> = m.split_whitespace().collect();
                f != ["0", "0", "4294967295"]
            })
            .unwrap_or(false)
    })
}

/// The xattr namespace overlayfs uses here: `user` in a user namespace, `trusted` otherwise.
pub fn overlay_xattr_prefix() -> &'static str {
    if in_user_namespace() {
        "user"
    } else {
        "trusted"
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

/// Enter a user namespace if running unprivileged. Must be called before any thread exists.
///
/// Returns in the child, inside the namespace; the parent never returns (it exits with the
/// child's status). As root it returns at once.
pub fn enter() -> Result<(), UsernsError> {
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        let _ = MAPPING.set(None);
        return Ok(());
    }
    let gid = unsafe { libc::getegid() };
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let mapping = plan_mapping(uid, gid, &name);

    let mut to_parent = [0; 2];
    let mut to_child = [0; 2];
    if unsafe { libc::pipe2(to_parent.as_mut_ptr(), libc::O_CLOEXEC) } < 0
        || unsafe { libc::pipe2(to_child.as_mut_ptr(), libc::O_CLOEXEC) } < 0
    {
        return Err(io::Error::last_os_error().into());
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if pid == 0 {
        unsafe {
            libc::close(to_parent[0]);
            libc::close(to_child[1]);
        }
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
        let err = io::Error::last_os_error();
        let byte = [u8::from(unshared == 0)];
        unsafe { libc::write(to_parent[1], byte.as_ptr().cast(), 1) };
        if unshared != 0 {
            return Err(UsernsError::Unshare(err));
        }
        let mut answer = [0u8; 1];
        let n = unsafe { libc::read(to_child[0], answer.as_mut_ptr().cast(), 1) };
        if n != 1 || answer[0] != 1 {
            // The parent sends why after the status byte; the caller reports it (and writes the
            // build's result, which only this process knows where to put).
            let mut reason = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                // SAFETY: `buf` is a live buffer of `buf.len()` bytes; the fd is our pipe end.
                let k = unsafe { libc::read(to_child[0], buf.as_mut_ptr().cast(), buf.len()) };
                if k <= 0 {
                    break;
                }
                reason.extend_from_slice(&buf[..k as usize]);
            }
            return Err(UsernsError::Map(
                String::from_utf8_lossy(&reason).into_owned(),
            ));
        }
        unsafe {
            libc::close(to_parent[1]);
            libc::close(to_child[0]);
        }
        become_root(&mapping)?;
        if let Mapping::Single { reason } = &mapping {
            eprintln!(
                "kiln: rootless with a single id ({reason}): every file will belong to root and RUN steps cannot switch users"
            );
        }
        let _ = MAPPING.set(Some(mapping));
        return Ok(());
    }

    // The parent: map the child's ids, then wait for it.
    unsafe {
        libc::close(to_parent[1]);
        libc::close(to_child[0]);
    }
    let mut byte = [0u8; 1];
    let n = unsafe { libc::read(to_parent[0], byte.as_mut_ptr().cast(), 1) };
    let result = if n == 1 && byte[0] == 1 {
        write_maps(pid, uid, gid, &mapping)
    } else {
        Err("the child could not unshare".into())
    };
    let ok = [u8::from(result.is_ok())];
    unsafe { libc::write(to_child[1], ok.as_ptr().cast(), 1) };
    if let Err(e) = &result {
        // SAFETY: `e` outlives the call, which reads `e.len()` bytes of it; the fd is our pipe
        // end, closed right after and never used again.
        unsafe {
            libc::write(to_child[1], e.as_ptr().cast(), e.len());
        }
    }
    // SAFETY: as above; closing it ends the child's read of the reason.
    unsafe { libc::close(to_child[1]) };
    CHILD.store(pid, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            std::process::exit(1);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    std::process::exit(code)
}

fn write_maps(pid: libc::pid_t, uid: u32, gid: u32, mapping: &Mapping) -> Result<(), String> {
    match mapping {
        Mapping::Full {
            uid_start,
            uid_count,
            gid_start,
            gid_count,
        } => {
            for (tool, id, start, count) in [
                ("newuidmap", uid, uid_start, uid_count),
                ("newgidmap", gid, gid_start, gid_count),
            ] {
                let out = Command::new(tool)
                    .args([
                        pid.to_string(),
                        "0".into(),
                        id.to_string(),
                        "1".into(),
                        "1".into(),
                        start.to_string(),
                        count.to_string(),
                    ])
                    .output()
                    .map_err(|e| format!("running {tool}: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "{tool} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            Ok(())
        }
        Mapping::Single { .. } => {
            let proc = format!("/proc/{pid}");
            fs::write(format!("{proc}/setgroups"), "deny")
                .map_err(|e| format!("{proc}/setgroups: {e}"))?;
            fs::write(format!("{proc}/uid_map"), format!("0 {uid} 1"))
                .map_err(|e| format!("{proc}/uid_map: {e}"))?;
            fs::write(format!("{proc}/gid_map"), format!("0 {gid} 1"))
                .map_err(|e| format!("{proc}/gid_map: {e}"))?;
            Ok(())
        }
    }
}

fn become_root(mapping: &Mapping) -> Result<(), UsernsError> {
    unsafe {
        if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
            return Err(UsernsError::Map(format!(
                "becoming root in the namespace: {}",
                io::Error::last_os_error()
            )));
        }
        // The supplementary groups are kept: a pod's `fsGroup` is what lets this user read
        // its Secret volumes (build secrets, ssh keys, registry credentials), which Kiln reads
        // from inside the namespace. Each RUN step still gets exactly its own groups (the
        // sandbox's setgroups).
        let _ = mapping;
    }
    // Mounts made from now on must not propagate anywhere.
    let root = c"/";
    if unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error().into());
    }
    Ok(())
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    let r = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return None;
    }
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_ranges_are_found_by_name_or_id() {
        let content = "alice:100000:65536\n1001:165536:65536\nbob:231072:1000\n";
        assert_eq!(
            parse_subid(content, "alice", 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(content, "carol", 1001),
            Some(Range {
                start: 165536,
                count: 65536
            })
        );
        assert_eq!(parse_subid(content, "dave", 1002), None);
        assert_eq!(parse_subid("garbage\nbob:x:y\n", "bob", 5), None);
    }
}
