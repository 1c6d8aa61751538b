//! Stopping a build from outside: SIGTERM (a deleted pod, `kubectl delete`), SIGINT (Ctrl-C)
//! and `--timeout`.
//!
//! A stop is posted to the build's [`Interrupt`]: the solver kills the running steps and fails
//! with [`Stop`], whose reason (`Cancelled`, `Timeout`) goes into the worker's result. Work
//! that does not look at the interrupt (a layer download or upload in flight) is not waited
//! for beyond a grace period: then `give_up` runs, which writes the result and exits. A second
//! signal gives up at once.
//!
//! Kiln is often the first process of its container, and the kernel delivers no signal to a
//! namespace's init for which it has no handler: without these handlers a pod's SIGTERM would
//! be ignored until the kubelet's SIGKILL, and the build would leave no result.

use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::solve::{Interrupt, Stop};

/// Watch for signals and the timeout on a thread of its own; return once the signal handlers
/// are installed. `give_up` runs on that thread if the build has not ended `grace` after a
/// stop (or at a second signal); it should not return.
pub fn watch(
    interrupt: Interrupt,
    timeout: Option<Duration>,
    grace: Duration,
    give_up: impl FnOnce(Stop) + Send + 'static,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("kiln-stop".into())
        .spawn(move || {
            runtime.block_on(async move {
                let deadline = async {
                    match timeout {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                };
                let stop = tokio::select! {
                    _ = term.recv() => Stop::Signal(libc::SIGTERM),
                    _ = int.recv() => Stop::Signal(libc::SIGINT),
                    () = deadline => Stop::Timeout(timeout.unwrap_or_default()),
                };
                interrupt.stop(stop);
                tokio::select! {
                    () = tokio::time::sleep(grace) => {}
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                give_up(stop);
            });
        })?;
    Ok(())
}

/// The exit status of a stopped build: 128 + the signal, as a shell reports a process killed
/// by it, or 124 for a timeout, as `timeout(1)` does.
pub fn exit_status(stop: Stop) -> u8 {
    match stop {
        Stop::Signal(n) => u8::try_from(128 + n).unwrap_or(1),
        Stop::Timeout(_) => 124,
    }
}
