//! Running a sandboxed process from the engine: spawn the helper, stream its output, report
//! how it ended.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, mpsc};

use thiserror::Error;

use super::init::{EXEC_FAILED, SETUP_FAILED};
use super::spec::Spec;

/// Why a sandboxed process did not run to completion.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("the sandbox could not be set up: {0}")]
    Setup(String),
    #[error("{0}")]
    Exec(String),
    #[error("cancelled")]
    Cancelled,
    #[error("starting the sandbox helper {0}: {1}")]
    Spawn(PathBuf, io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A handle to stop a running step from another thread.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    cancelled: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
}

impl Cancel {
    /// Stop the running process, if any, and every process it started.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            // The helper's init dies with it (PR_SET_PDEATHSIG), and the pid namespace with
            // its init.
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// Whether two handles control the same process.
    pub fn same(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.cancelled, &other.cancelled)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Runs sandboxed processes through a helper binary (normally this executable).
#[derive(Debug, Clone)]
pub struct Runner {
    pub helper: PathBuf,
}

impl Runner {
    /// A runner using the running executable as the helper.
    pub fn current_exe() -> io::Result<Runner> {
        Ok(Runner {
            helper: std::env::current_exe()?,
        })
    }

    /// Run `spec`, passing output to `on_output` as it arrives. Returns the exit code.
    /// `scratch` is a directory for the spec file.
    pub fn run(
        &self,
        spec: &Spec,
        scratch: &Path,
        cancel: &Cancel,
        secrets: &[Vec<u8>],
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<i32, RunError> {
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let spec_path = scratch.join("sandbox.json");
        // Build arguments and the environment are in it: for the helper's eyes only.
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&spec_path)?
                .write_all(&serde_json::to_vec(spec).map_err(io::Error::other)?)?;
        }
        let _ = std::fs::remove_file(&spec.error_file);
        tracing::debug!(
            uid = spec.uid,
            gid = spec.gid,
            network_namespace = spec.isolate_network,
            pid_namespace = spec.process_sandbox,
            insecure = spec.insecure,
            mounts = spec.mounts.len(),
            "starting a RUN step: namespaces mount, uts, ipc{}{}",
            if spec.isolate_network { ", net" } else { "" },
            if spec.process_sandbox { ", pid" } else { "" }
        );
        let mut command = Command::new(&self.helper);
        // The helper dies with the engine, even when the engine is killed outright: a killed
        // build must not leave its steps running.
        crate::kernel::die_with_parent(&mut command);
        let mut child = command
            .arg("__sandbox")
            .arg(&spec_path)
            .stdin(if secrets.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .spawn()
            .map_err(|e| RunError::Spawn(self.helper.clone(), e))?;
        cancel.pid.store(child.id() as i32, Ordering::SeqCst);
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // Secrets go to the helper through a pipe, never through a file.
            for secret in secrets {
                let len = u32::try_from(secret.len())
                    .map_err(|_| io::Error::other("a secret is larger than 4 GiB"))?;
                stdin.write_all(&len.to_le_bytes())?;
                stdin.write_all(secret)?;
            }
        }
        if cancel.is_cancelled() {
            cancel.cancel();
        }
        let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
        let readers: Vec<_> = [
            (
                Stream::Stdout,
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
            ),
            (
                Stream::Stderr,
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
            ),
        ]
        .into_iter()
        .filter_map(|(stream, pipe)| pipe.map(|p| (stream, p)))
        .map(|(stream, mut pipe)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send((stream, buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
        drop(tx);
        // Without a pid namespace, a cancelled step's processes may outlive the helper and
        // keep the pipes open: once cancelled, stop reading instead of waiting for them.
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok((stream, chunk)) => on_output(stream, &chunk),
                Err(mpsc::RecvTimeoutError::Timeout) if cancel.is_cancelled() => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if !cancel.is_cancelled() {
            for r in readers {
                let _ = r.join();
            }
        }
        let status = child.wait()?;
        cancel.pid.store(0, Ordering::SeqCst);
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let code = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            _ => SETUP_FAILED,
        };
        if (code == SETUP_FAILED || code == EXEC_FAILED)
            && let Ok(message) = std::fs::read_to_string(&spec.error_file)
            && !message.is_empty()
        {
            return Err(if code == SETUP_FAILED {
                RunError::Setup(message)
            } else {
                RunError::Exec(message)
            });
        }
        Ok(code)
    }
}
