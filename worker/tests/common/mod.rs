//! Shared setup of the engine's integration tests: the `kiln` binary, the reference base image
//! (Debian's static busybox with a few users, the same bytes BuildKit's reference images start
//! from), and an unprivileged user with subordinate ids for the rootless runs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn kiln_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// The unprivileged user the rootless runs use, with a subordinate id range.
pub const ROOTLESS_USER: &str = "kiln-rootless";

pub fn ensure_rootless_user() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let exists = Command::new("id")
            .arg(ROOTLESS_USER)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            let out = Command::new("useradd")
                .args(["-m", ROOTLESS_USER])
                .output()
                .expect("useradd runs");
            assert!(
                out.status.success(),
                "useradd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        assert!(
            subuid
                .lines()
                .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:"))),
            "{ROOTLESS_USER} has no /etc/subuid range"
        );
        assert!(
            Path::new("/usr/bin/newuidmap").exists(),
            "newuidmap is missing: install uidmap (make test does)"
        );
    });
}

/// The directories of this process's [`Env`]s, removed when it exits: most live in statics,
/// which are never dropped, and each is some 80 MB.
static ENV_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remove_at_exit(dir: &Path) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        extern "C" fn remove_env_dirs() {
            let dirs = match ENV_DIRS.lock() {
                Ok(mut dirs) => std::mem::take(&mut *dirs),
                Err(_) => return,
            };
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function with no captured state.
        unsafe { libc::atexit(remove_env_dirs) };
    });
    ENV_DIRS.lock().unwrap().push(dir.to_path_buf());
}

/// Removes the [`Env`] directories that test processes which died before their exit hook ran
/// (killed, timed out) left behind: those whose pid no longer runs.
fn sweep_dead_envs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("kiln-reference-"))
        else {
            continue;
        };
        let Some(pid) = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where a run of the corpus works, and as whom.
pub struct Env {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub base: PathBuf,
    pub rootless: bool,
    /// Arguments added to every `kiln build` after the base is built.
    pub extra_args: Vec<String>,
}

impl Env {
    pub fn kiln(&self, args: &[String]) -> Output {
        self.kiln_env(args, &[])
    }

    /// `kiln` with extra environment variables.
    pub fn kiln_env(&self, args: &[String], envs: &[(&str, &str)]) -> Output {
        self.command(args, envs).output().expect("kiln runs")
    }

    /// The command [`Env::kiln_env`] runs, for a test that runs it differently (under a
    /// terminal, with an inherited descriptor).
    pub fn command(&self, args: &[String], envs: &[(&str, &str)]) -> Command {
        let mut cmd = if self.rootless {
            let mut c = Command::new("runuser");
            c.args(["-u", ROOTLESS_USER, "--"]).arg(kiln_bin());
            c
        } else {
            Command::new(kiln_bin())
        };
        if args.first().is_some_and(|a| a == "build") {
            cmd.arg("build").args(&self.extra_args).args(&args[1..]);
        } else {
            cmd.args(args);
        }
        cmd.env("HOME", self.dir.join("home"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("DOCKER_CONFIG");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn new(name: &str, rootless: bool) -> Env {
        sweep_dead_envs();
        let dir =
            std::env::temp_dir().join(format!("kiln-reference-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        remove_at_exit(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let env = Env {
            state: dir.join("state"),
            base: dir.join("base-layout"),
            dir,
            rootless,
            extra_args: vec![],
        };
        // The base: the reference rootfs as a tarball, ADDed so that owners are kept.
        let basectx = env.dir.join("base");
        std::fs::create_dir_all(&basectx).unwrap();
        let out = Command::new("bash")
            .arg(repo().join("tests/reference/base/mkrootfs.sh"))
            .arg(env.dir.join("rootfs"))
            .arg(basectx.join("rootfs.tar"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkrootfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            basectx.join("Dockerfile"),
            "FROM scratch\nADD rootfs.tar /\n",
        )
        .unwrap();
        if rootless {
            ensure_rootless_user();
            let status = Command::new("chown")
                .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
                .arg(&env.dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = env.kiln(&[
            "build".into(),
            "--progress=plain".into(),
            format!("--cache-dir={}", env.state.display()),
            format!("--output=type=oci,dest={}", env.base.display()),
            "-t".into(),
            "kiln-ref/busybox:1".into(),
            basectx.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "building the base:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }
}

impl Env {
    /// `kiln build` with the base image as `kiln-ref/busybox:1`, this env's state, and `args`.
    pub fn build(&self, context: &Path, args: &[&str]) -> Output {
        self.build_in(&self.state, context, args)
    }

    /// [`Env::build`] with a state directory of its own, for a test that inspects the store
    /// while other tests build.
    pub fn build_in(&self, state: &Path, context: &Path, args: &[&str]) -> Output {
        self.kiln(&self.build_args(state, context, args))
    }

    /// The arguments of [`Env::build_in`].
    pub fn build_args(&self, state: &Path, context: &Path, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "build".to_string(),
            "--progress=plain".into(),
            format!("--cache-dir={}", state.display()),
            format!(
                "--build-context=kiln-ref/busybox:1=oci-layout://{}",
                self.base.display()
            ),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all.push(context.display().to_string());
        all
    }

    /// A fresh context directory under this env, owned by whoever builds.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.join("contexts").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        if self.rootless {
            Command::new("chown")
                .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
                .arg(&dir)
                .status()
                .unwrap();
        }
        dir
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A docker `config.json` (or a dockerconfigjson Secret's content) with basic-auth credentials
/// for one registry.
pub fn docker_config_json(host: &str, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

/// Stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copy host binaries and the shared libraries they load into a directory, for COPY into a
/// busybox image (it has no ssh).
pub fn host_tools(dest: &Path, binaries: &[&str]) {
    for bin in binaries {
        let target = dest.join(bin.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(bin, &target).unwrap();
        let ldd = Command::new("ldd").arg(bin).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(str::to_string);
            if let Some(lib) = lib {
                let to = dest.join(lib.trim_start_matches('/'));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&lib, &to).unwrap();
            }
        }
    }
}

/// The unprivileged user's uid.
pub fn rootless_uid() -> u32 {
    ensure_rootless_user();
    let out = Command::new("id")
        .args(["-u", ROOTLESS_USER])
        .output()
        .expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric uid")
}
