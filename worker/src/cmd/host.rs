//! `kiln binfmt` and `kiln prepare-volumes`: the host-facing commands.

use crate::*;

/// `kiln binfmt`.
#[derive(clap::Args)]
pub(crate) struct BinfmtArgs {
    /// Register the QEMU handlers that Debian's qemu-user-static ships (the qemu-*.conf rules of
    /// /etc/binfmt.d, /run/binfmt.d and /usr/lib/binfmt.d), each with the fix-binary flag F,
    /// after mounting binfmt_misc at /proc/sys/fs/binfmt_misc if needed. Needs root.
    #[arg(long)]
    install: bool,
    /// With --install: replace a handler of the same name that lacks F or names another
    /// interpreter.
    #[arg(long, requires = "install")]
    force: bool,
    /// The platforms to check (and to install handlers for); default: every platform Kiln has
    /// a test program for. With this flag, the exit status is 1 when one of them cannot run.
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH[/VARIANT]")]
    platform: Vec<String>,
}

/// The platforms `kiln binfmt` checks by default.
pub(crate) const BINFMT_PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/riscv64",
    "linux/ppc64le",
    "linux/s390x",
    "linux/386",
];

pub(crate) fn run_binfmt(args: &BinfmtArgs) -> ExitCode {
    use kiln_worker::emulation::{self, binfmt};
    use kiln_worker::image::oci::Platform as OciPlatform;
    let wanted: Vec<&str> = if args.platform.is_empty() {
        BINFMT_PLATFORMS.to_vec()
    } else {
        args.platform.iter().map(String::as_str).collect()
    };
    let mut platforms = vec![];
    for p in &wanted {
        match plan::Platform::parse(p) {
            Ok(p) => platforms.push(OciPlatform::from(&p)),
            Err(e) => {
                eprintln!("error: --platform {e}");
                return ExitCode::from(2);
            }
        }
    }
    let table = Path::new(binfmt::MOUNT);
    if args.install {
        if !rustix::process::geteuid().is_root() {
            eprintln!(
                "error: kiln binfmt --install registers handlers for the whole machine: run it as root"
            );
            return ExitCode::FAILURE;
        }
        if let Err(e) = binfmt::mount(table) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let dirs: Vec<&Path> = binfmt::RULE_DIRS.iter().map(Path::new).collect();
        let programs: Vec<Vec<u8>> = platforms
            .iter()
            .filter_map(emulation::elf::Arch::of)
            .map(|a| a.program())
            .collect();
        let rules: Vec<binfmt::Rule> = binfmt::qemu_rules(&dirs)
            .into_iter()
            .filter(|r| args.platform.is_empty() || programs.iter().any(|p| r.matches(p)))
            .collect();
        if rules.is_empty() {
            eprintln!(
                "error: no QEMU binfmt rules (qemu-*.conf) in {}{}: install Debian's qemu-user-static",
                binfmt::RULE_DIRS.join(", "),
                if args.platform.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", args.platform.join(", "))
                }
            );
            return ExitCode::FAILURE;
        }
        let host = emulation::elf::Arch::of(&OciPlatform::host())
            .map(|a| a.program())
            .unwrap_or_default();
        match binfmt::install(table, &rules, &host, args.force) {
            Ok(done) => {
                for (rule, outcome) in done {
                    let what = match outcome {
                        binfmt::Outcome::Registered => "registered".to_string(),
                        binfmt::Outcome::Present => "already registered".to_string(),
                        binfmt::Outcome::Replaced => "replaced".to_string(),
                        binfmt::Outcome::Skipped(why) => format!("skipped: {why}"),
                    };
                    println!(
                        "{:<18} {what} ({}, from {})",
                        rule.name,
                        rule.interpreter.display(),
                        rule.file.display()
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        println!();
    }
    let scratch = std::env::temp_dir();
    let mut missing = false;
    for p in &platforms {
        match emulation::check(p, &scratch, table) {
            Ok(support) => println!("{:<14} {support}", p.to_string()),
            Err(e) => {
                missing = true;
                let text = e.to_string();
                let why = text
                    .strip_prefix(&format!("{p}: "))
                    .unwrap_or(&text)
                    .to_string();
                println!("{:<14} cannot run: {why}", p.to_string());
            }
        }
    }
    if missing && !args.platform.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `kiln prepare-volumes`.
#[derive(clap::Args)]
pub(crate) struct PrepareVolumesArgs {
    /// The owner to give each directory, `UID:GID`.
    #[arg(long, value_name = "UID:GID")]
    owner: String,
    /// The volumes' root directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

pub(crate) fn run_prepare_volumes(args: &PrepareVolumesArgs) -> ExitCode {
    let Some((uid, gid)) = args
        .owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
    else {
        eprintln!("error: --owner {:?}: expected UID:GID", args.owner);
        return ExitCode::from(2);
    };
    for dir in &args.dirs {
        if let Err(e) = kiln_worker::mounts::volumes::prepare(dir, uid, gid) {
            eprintln!("error: preparing the volume {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        println!("{}: owned by {uid}:{gid}, mode 0700", dir.display());
    }
    ExitCode::SUCCESS
}
