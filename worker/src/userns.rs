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

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::kernel::{Fork, fork_single_threaded};
use crate::sandbox::syscall::{Linux, MountFlags, Namespaces, Syscall};

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

/// Enter a user namespace if running unprivileged. Must be called before any thread exists.
///
/// Returns in the child, inside the namespace; the parent never returns (it exits with the
/// child's status). As root it returns at once.
pub fn enter() -> Result<(), UsernsError> {
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        let _ = MAPPING.set(None);
        return Ok(());
    }
    let gid = rustix::process::getegid().as_raw();
    let name = crate::kernel::user_name(uid).unwrap_or_else(|| uid.to_string());
    let mapping = plan_mapping(uid, gid, &name);
    let sys = Linux;

    let pipe = || -> io::Result<(File, File)> {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok((File::from(r), File::from(w)))
    };
    let (mut from_child, mut to_parent) = pipe()?;
    let (mut from_parent, mut to_child) = pipe()?;
    let pid = match fork_single_threaded()? {
        Fork::Child => {
            drop((from_child, to_child));
            let unshared = sys.unshare(Namespaces {
                user: true,
                mount: true,
                ..Default::default()
            });
            let _ = to_parent.write_all(&[u8::from(unshared.is_ok())]);
            unshared.map_err(UsernsError::Unshare)?;
            let mut answer = [0u8; 1];
            if from_parent.read_exact(&mut answer).is_err() || answer[0] != 1 {
                // The parent sends why after the status byte; the caller reports it (and
                // writes the build's result, which only this process knows where to put).
                let mut reason = String::new();
                let _ = from_parent.read_to_string(&mut reason);
                return Err(UsernsError::Map(reason));
            }
            drop((to_parent, from_parent));
            become_root(&sys, &mapping)?;
            if let Mapping::Single { reason } = &mapping {
                eprintln!(
                    "kiln: rootless with a single id ({reason}): every file will belong to root and RUN steps cannot switch users"
                );
            }
            let _ = MAPPING.set(Some(mapping));
            return Ok(());
        }
        Fork::Parent(pid) => pid,
    };

    // The parent: map the child's ids, then wait for it.
    drop((to_parent, from_parent));
    let mut byte = [0u8; 1];
    let unshared = from_child.read_exact(&mut byte).is_ok() && byte[0] == 1;
    let result = if unshared {
        write_maps(&sys, pid.as_raw_nonzero().get() as u32, uid, gid, &mapping)
    } else {
        Err("the child could not unshare".into())
    };
    let _ = to_child.write_all(&[u8::from(result.is_ok())]);
    if let Err(e) = &result {
        let _ = to_child.write_all(e.as_bytes());
    }
    drop(to_child);
    crate::kernel::forward_signals_to(pid);
    let status = loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => std::process::exit(1),
        }
    };
    let code = status
        .exit_status()
        .unwrap_or_else(|| 128 + status.terminating_signal().unwrap_or(0));
    std::process::exit(code)
}

/// Map the ids of the child `pid`: through `newuidmap`/`newgidmap` for a full range, or by
/// writing the maps directly for the user's own id (which the kernel allows the owner, once
/// `setgroups` is denied).
fn write_maps(
    sys: &dyn Syscall,
    pid: u32,
    uid: u32,
    gid: u32,
    mapping: &Mapping,
) -> Result<(), String> {
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
                let args: Vec<String> = [pid, 0, id, 1, 1, *start, *count]
                    .iter()
                    .map(u32::to_string)
                    .collect();
                sys.run(tool, &args).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Mapping::Single { .. } => {
            let proc = Path::new("/proc").join(pid.to_string());
            sys.write(&proc.join("setgroups"), "deny")
                .map_err(|e| e.to_string())?;
            sys.write(&proc.join("uid_map"), &format!("0 {uid} 1"))
                .map_err(|e| e.to_string())?;
            sys.write(&proc.join("gid_map"), &format!("0 {gid} 1"))
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}

/// Become root of the new namespace, and keep this process's mounts from propagating.
fn become_root(sys: &dyn Syscall, mapping: &Mapping) -> Result<(), UsernsError> {
    sys.set_ids(0, 0)
        .map_err(|e| UsernsError::Map(format!("becoming root in the namespace: {e}")))?;
    // The supplementary groups are kept: a pod's `fsGroup` is what lets this user read its
    // Secret volumes (build secrets, ssh keys, registry credentials), which Kiln reads from
    // inside the namespace; the kernel checks them even where they are not mapped. Each RUN
    // step still gets exactly its own groups (the sandbox's setgroups).
    let _ = mapping;
    // Mounts made from now on must not propagate anywhere.
    sys.mount("", Path::new("/"), "", MountFlags::PRIVATE_TREE, "")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::syscall::Recorder;

    #[test]
    fn a_full_range_is_mapped_by_newuidmap_and_newgidmap() {
        let rec = Recorder::default();
        let mapping = Mapping::Full {
            uid_start: 100000,
            uid_count: 65536,
            gid_start: 200000,
            gid_count: 1000,
        };
        write_maps(&rec, 4242, 1000, 1001, &mapping).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "run newuidmap 4242 0 1000 1 1 100000 65536",
                "run newgidmap 4242 0 1001 1 1 200000 1000",
            ]
        );
    }

    #[test]
    fn a_single_id_is_mapped_by_writing_the_maps_after_denying_setgroups() {
        let rec = Recorder::default();
        let mapping = Mapping::Single {
            reason: "no uidmap".into(),
        };
        write_maps(&rec, 7, 1000, 1001, &mapping).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "write /proc/7/setgroups deny",
                "write /proc/7/uid_map 0 1000 1",
                "write /proc/7/gid_map 0 1001 1",
            ]
        );
    }

    #[test]
    fn becoming_root_drops_host_groups_only_with_a_full_range() {
        let rec = Recorder::default();
        become_root(
            &rec,
            &Mapping::Full {
                uid_start: 1,
                uid_count: 1,
                gid_start: 1,
                gid_count: 1,
            },
        )
        .unwrap();
        assert_eq!(rec.calls(), ["setids 0:0", "mount / [rec,private]"]);
        let rec = Recorder::default();
        become_root(&rec, &Mapping::Single { reason: "x".into() }).unwrap();
        assert_eq!(rec.calls(), ["setids 0:0", "mount / [rec,private]"]);
    }

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
