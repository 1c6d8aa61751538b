//! The sandbox: each RUN step runs in its own mount, pid, ipc, uts and (for
//! `--network=none`) network namespaces, on an overlay of its layers, after `pivot_root`.
//!
//! - [`spec`]: what one sandboxed process needs, resolved by the executor.
//! - [`rootfs`]: the filesystem assembly, over the [`syscall::Syscall`] trait.
//! - [`init`]: the helper process that builds the container and runs the command.
//! - [`run`]: the engine's side: spawn the helper, stream output, report the outcome.
//!
//! When the engine runs unprivileged it first enters a user namespace (see [`crate::userns`]);
//! the sandbox then runs as root of that namespace, with no privilege on the host.

pub mod init;
pub mod rootfs;
pub mod run;
pub mod seccomp;
pub mod spec;
pub mod syscall;
