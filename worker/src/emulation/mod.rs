//! RUN steps for another architecture: QEMU user emulation through `binfmt_misc`.
//!
//! A RUN step of a `linux/arm64` stage on an amd64 machine executes arm64 programs. Nothing in
//! the sandbox changes for it: the kernel hands each foreign program to the interpreter a
//! `binfmt_misc` handler names (Debian's `qemu-aarch64-static`), and that interpreter, an
//! amd64 program, runs under the step's namespaces, capabilities and seccomp filter like any
//! other. What it takes is a handler with the fix-binary flag (`F`): the step's root is the
//! image's, where the interpreter's path does not exist, and only a handler that opened its
//! interpreter when it was registered can still run it there.
//!
//! Before a build runs, [`check`] asks for every platform that has RUN steps whether this
//! machine runs its programs, by executing a tiny program of that architecture
//! ([`elf`]), and when it does not, says exactly what is missing from the `binfmt_misc` table
//! ([`binfmt`]). `kiln binfmt --install` (root) registers Debian's QEMU handlers.

pub mod binfmt;
pub mod elf;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::image::oci::Platform;
use binfmt::{Handler, Table};

/// How this machine runs a platform's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The kernel runs them itself.
    Native,
    /// Through this `binfmt_misc` handler, which has `F`.
    Emulated(Handler),
    /// Through a handler this mount namespace cannot see (`binfmt_misc` is not mounted here,
    /// as in most containers): it works on the host; whether it has `F` is unknown.
    Unseen,
    /// Kiln has no test program for this architecture: its RUN steps will tell.
    Unchecked,
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Support::Native => write!(f, "native"),
            Support::Emulated(h) => write!(
                f,
                "emulated by {} ({}, flags {})",
                h.name,
                h.interpreter.display(),
                h.flags
            ),
            Support::Unseen => write!(
                f,
                "runs, through a binfmt_misc handler that cannot be seen here ({} is not mounted): RUN steps need it to have the fix-binary flag F",
                binfmt::MOUNT
            ),
            Support::Unchecked => write!(f, "not checked: Kiln has no test program for it"),
        }
    }
}

/// What keeps this machine from running a platform's programs in RUN steps. Each message says
/// what is missing and what fixes it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Missing {
    #[error("{platform}: RUN steps run Linux programs only")]
    NotLinux { platform: String },
    #[error(
        "{platform}: RUN steps need QEMU user emulation, and binfmt_misc is not mounted at {} (so no handler is registered): as root, install Debian's qemu-user-static and run `kiln binfmt --install`",
        binfmt::MOUNT
    )]
    NotMounted { platform: String },
    #[error(
        "{platform}: binfmt_misc is disabled (its status file says so): as root, echo 1 > {}/status",
        binfmt::MOUNT
    )]
    Disabled { platform: String },
    #[error(
        "{platform}: no binfmt_misc handler runs its programs: as root, install Debian's qemu-user-static (it has qemu-{qemu}) and run `kiln binfmt --install`"
    )]
    NoHandler { platform: String, qemu: String },
    #[error(
        "{platform}: no binfmt_misc handler runs its programs; the rule {} is there but not registered: as root, run `kiln binfmt --install`",
        rule.display()
    )]
    NotRegistered {
        platform: String,
        rule: std::path::PathBuf,
    },
    #[error(
        "{platform}: the binfmt_misc handler {handler} is disabled: as root, echo 1 > {}/{handler}",
        binfmt::MOUNT
    )]
    HandlerDisabled { platform: String, handler: String },
    #[error(
        "{platform}: the binfmt_misc handler {handler} ({interpreter}) lacks the fix-binary flag F, so RUN steps, which run in the image's root where {interpreter} does not exist, cannot use it: as root, run `kiln binfmt --install --force` to register it again with F"
    )]
    NoFixBinary {
        platform: String,
        handler: String,
        interpreter: String,
    },
    #[error(
        "{platform}: this kernel runs its programs natively, but the RUN step's seccomp filter allows only {host} system calls, and no QEMU handler takes them: RUN steps for it cannot run"
    )]
    Compat { platform: String, host: String },
    #[error("{platform}: its test program failed{}: {detail}", handler.as_ref().map(|h| format!(" (binfmt_misc handler {h})")).unwrap_or_default())]
    Failed {
        platform: String,
        handler: Option<String>,
        detail: String,
    },
}

/// Whether RUN steps of `platform` can run here. `scratch` is a directory for the test
/// program; `table` is where `binfmt_misc` is read ([`binfmt::MOUNT`]).
pub fn check(platform: &Platform, scratch: &Path, table: &Path) -> Result<Support, Missing> {
    if platform.os != "linux" {
        return Err(Missing::NotLinux {
            platform: platform.to_string(),
        });
    }
    let Some(arch) = elf::Arch::of(platform) else {
        return Ok(Support::Unchecked);
    };
    let program = arch.program();
    let ran = run_program(&program, scratch, arch.qemu);
    let verdict = decide(platform, arch.qemu, ran, &Table::read(table), &program);
    match verdict {
        Err(Missing::NoHandler { platform, qemu }) => {
            let dirs: Vec<&Path> = binfmt::RULE_DIRS.iter().map(Path::new).collect();
            Err(
                match binfmt::qemu_rules(&dirs)
                    .into_iter()
                    .find(|r| r.matches(&program))
                {
                    Some(rule) => Missing::NotRegistered {
                        platform,
                        rule: rule.file,
                    },
                    None => Missing::NoHandler { platform, qemu },
                },
            )
        }
        v => v,
    }
}

/// The verdict from what the test program did (`ran`) and what the table holds: the pure part
/// of [`check`].
fn decide(
    platform: &Platform,
    qemu: &str,
    ran: Result<(), String>,
    table: &Table,
    program: &[u8],
) -> Result<Support, Missing> {
    let name = platform.to_string();
    let handler = table.handler_for(program).cloned();
    let host = Platform::host();
    let native = platform.os == host.os && platform.architecture == host.architecture;
    match (ran, handler) {
        (Ok(()), _) if native => Ok(Support::Native),
        (Ok(()), Some(h)) if h.fix_binary() => Ok(Support::Emulated(h)),
        (Ok(()), Some(h)) => Err(Missing::NoFixBinary {
            platform: name,
            handler: h.name,
            interpreter: h.interpreter.display().to_string(),
        }),
        (Ok(()), None) if *table == Table::NotMounted => Ok(Support::Unseen),
        // Another architecture the kernel runs by itself (i386 on amd64, arm on arm64): its
        // system calls are not the ones the sandbox's filter allows.
        (Ok(()), None) => Err(Missing::Compat {
            platform: name,
            host: host.architecture,
        }),
        (Err(detail), handler) => Err(match (table, handler) {
            (Table::NotMounted, _) => Missing::NotMounted { platform: name },
            (Table::Mounted { enabled: false, .. }, _) => Missing::Disabled { platform: name },
            (_, None) => Missing::NoHandler {
                platform: name,
                qemu: qemu.to_string(),
            },
            (_, Some(h)) if !h.enabled => Missing::HandlerDisabled {
                platform: name,
                handler: h.name,
            },
            (_, Some(h)) => Missing::Failed {
                platform: name,
                handler: Some(h.name),
                detail,
            },
        }),
    }
}

/// [`check`] for every platform, with the real table: what each platform runs with, or every
/// problem found.
pub fn require(platforms: &[Platform], scratch: &Path) -> Result<Vec<Support>, Vec<Missing>> {
    let mut ok = vec![];
    let mut missing = vec![];
    for p in platforms {
        match check(p, scratch, Path::new(binfmt::MOUNT)) {
            Ok(s) => ok.push(s),
            Err(m) => missing.push(m),
        }
    }
    if missing.is_empty() {
        Ok(ok)
    } else {
        Err(missing)
    }
}

/// Write `program` to `dir` and run it: `Ok` when it exits 0 within 10 seconds.
fn run_program(program: &[u8], dir: &Path, name: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("probe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, program).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let cleanup = Remove(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // A fork elsewhere in this process may hold the file open for writing for a moment (the
    // kernel then refuses to run it: ETXTBSY); try again.
    let mut child = None;
    for _ in 0..50 {
        match Command::new(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_clear()
            .spawn()
        {
            Ok(c) => {
                child = Some(c);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut child = child.ok_or("the test program stayed busy (ETXTBSY)")?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("it did not exit within 10 seconds".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    drop(cleanup);
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let err = err.trim();
    Err(if err.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {err}")
    })
}

/// Removes a file when dropped.
struct Remove<'a>(&'a Path);

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(flags: &str, enabled: bool) -> Handler {
        Handler::parse(
            "qemu-aarch64",
            &format!(
                "{}\ninterpreter /usr/bin/qemu-aarch64-static\nflags: {flags}\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
                if enabled { "enabled" } else { "disabled" }
            ),
        )
        .unwrap()
    }

    fn table(handlers: Vec<Handler>) -> Table {
        Table::Mounted {
            enabled: true,
            handlers,
        }
    }

    /// Every verdict, from what the test program did and what the table holds.
    #[test]
    fn verdicts_name_what_is_missing() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let program = elf::Arch::of(&arm64).unwrap().program();
        let failed = || Err("exec format error".to_string());
        let decide = |ran, t: &Table| decide(&arm64, "aarch64", ran, t, &program);
        if Platform::host().architecture == "arm64" {
            assert_eq!(decide(Ok(()), &table(vec![])), Ok(Support::Native));
            return;
        }
        let with_f = handler("POF", true);
        assert_eq!(
            decide(Ok(()), &table(vec![with_f.clone()])),
            Ok(Support::Emulated(with_f))
        );
        let e = decide(Ok(()), &table(vec![handler("PO", true)])).unwrap_err();
        assert!(matches!(e, Missing::NoFixBinary { .. }));
        assert!(
            e.to_string().contains("kiln binfmt --install --force"),
            "{e}"
        );
        assert_eq!(decide(Ok(()), &Table::NotMounted), Ok(Support::Unseen));
        assert!(matches!(
            decide(Ok(()), &table(vec![])),
            Err(Missing::Compat { .. })
        ));
        let e = decide(failed(), &Table::NotMounted).unwrap_err();
        assert!(
            e.to_string()
                .contains("not mounted at /proc/sys/fs/binfmt_misc"),
            "{e}"
        );
        let off = Table::Mounted {
            enabled: false,
            handlers: vec![],
        };
        assert!(matches!(
            decide(failed(), &off),
            Err(Missing::Disabled { .. })
        ));
        let e = decide(failed(), &table(vec![])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux/arm64: no binfmt_misc handler runs its programs: as root, install Debian's qemu-user-static (it has qemu-aarch64) and run `kiln binfmt --install`"
        );
        assert!(matches!(
            decide(failed(), &table(vec![handler("POF", false)])),
            Err(Missing::HandlerDisabled { .. })
        ));
        assert!(matches!(
            decide(failed(), &table(vec![handler("POF", true)])),
            Err(Missing::Failed { .. })
        ));
    }

    #[test]
    fn the_host_platform_is_native() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check(&Platform::host(), dir.path(), dir.path()),
            Ok(Support::Native)
        );
        assert!(matches!(
            check(
                &Platform::parse("windows/amd64").unwrap(),
                dir.path(),
                dir.path()
            ),
            Err(Missing::NotLinux { .. })
        ));
        assert_eq!(
            check(
                &Platform::parse("linux/mips64le").unwrap(),
                dir.path(),
                dir.path()
            ),
            Ok(Support::Unchecked)
        );
    }
}
