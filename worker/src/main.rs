//! `kiln`: build container images from Dockerfiles, rootless, with BuildKit's feature set.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::collections::HashMap;

use kiln_worker::cache::transfer::CacheSpec;
use kiln_worker::mounts::ssh::SshSource;
use kiln_worker::plan::{self, PlanOptions, Platform, summary};
use kiln_worker::registry::RegistryOptions;
use kiln_worker::result::{self, Reason};
use kiln_worker::snapshot::compress::Compression;
use kiln_worker::solve::{BuildError, Interrupt, NamedContext, SecretSource, Snapshotter, Stop};
use kiln_worker::{build, cache, progress, userns};

/// Standard output and error as a command-line tool wants them. Rust ignores SIGPIPE (the
/// sandbox and the registry client need it ignored), so when the reader goes away
/// (`kiln plan | head`) std's `println!` panics on EPIPE. The macros below shadow `print!`,
/// `println!` and `eprintln!` in this file: a closed standard output ends the program quietly
/// with status 0, as a Unix filter ends; another write error is reported and ends it with status
/// 1; a message that cannot reach standard error is dropped, and the exit status still tells.
mod stdio {
    use std::io::{self, Write};

    pub fn out(args: std::fmt::Arguments<'_>) {
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            err(format_args!("error: writing to standard output: {e}\n"));
            std::process::exit(1);
        }
    }

    pub fn err(args: std::fmt::Arguments<'_>) {
        let _ = io::stderr().lock().write_fmt(args);
    }
}

macro_rules! print {
    ($($arg:tt)*) => { stdio::out(format_args!($($arg)*)) };
}

macro_rules! println {
    () => { stdio::out(format_args!("\n")) };
    ($($arg:tt)*) => { stdio::out(format_args!("{}\n", format_args!($($arg)*))) };
}

macro_rules! eprintln {
    () => { stdio::err(format_args!("\n")) };
    ($($arg:tt)*) => { stdio::err(format_args!("{}\n", format_args!($($arg)*))) };
}

// After the macros: the subcommands print through them.
mod cmd;
use cmd::*;

/// Build container images from Dockerfiles, rootless, with BuildKit's Dockerfile feature set.
#[derive(Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the engine's debug log on stderr: the sandbox namespaces of each RUN step, the
    /// snapshotter chosen, every cache hit and miss with its key, every registry request.
    /// `KILN_LOG` takes a tracing filter instead (`KILN_LOG=kiln_worker::registry=debug`).
    #[arg(long, global = true)]
    debug: bool,
    /// The debug log's format: `text` lines or one `json` object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The debug log: off unless `--debug` or `KILN_LOG` asks for it (the progress stream is what
/// a user reads; this is for whoever runs the engine).
fn init_logging(debug: bool, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("KILN_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(&f).unwrap_or_else(|e| {
            eprintln!("warning: KILN_LOG={f:?} is not a tracing filter ({e}); using debug");
            EnvFilter::new("kiln=debug,kiln_worker=debug")
        }),
        _ if debug => EnvFilter::new("kiln=debug,kiln_worker=debug"),
        _ => return,
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log.json().init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile and a context.
    Build(Box<BuildArgs>),
    /// Give volumes' root directories to the worker's user (`--owner UID:GID`, mode 0700): what
    /// an operator's init container runs on cache volumes that storage created owned by root.
    #[command(name = "prepare-volumes", hide = true)]
    PrepareVolumes(PrepareVolumesArgs),
    /// Parse a Dockerfile and print its build plan: stages, base images, cache, secret and ssh ids.
    Plan(PlanArgs),
    /// Remove build cache records, like `docker builder prune`.
    Prune(PruneArgs),
    /// Show the disk usage of the build cache, like `docker buildx du`.
    Du(DuArgs),
    /// Check whether RUN steps of other platforms can run here (QEMU user emulation through
    /// binfmt_misc), or, with --install (as root), register Debian's QEMU handlers.
    Binfmt(BinfmtArgs),
}

fn main() -> ExitCode {
    // The sandbox helper re-executes this binary; it must not parse arguments or start threads.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__sandbox") {
        let spec = args.next().unwrap_or_default();
        kiln_worker::sandbox::init::helper_main(std::path::Path::new(&spec));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A refused command line is still a result: the operator reads it, not the log.
            if e.use_stderr() {
                let message = e.render().to_string();
                let first = message.lines().next().unwrap_or_default();
                let f = result::Failure::new(
                    Reason::InvalidArgument,
                    first.trim_start_matches("error: "),
                );
                ResultFile::new(result_file_from_args())
                    .write(&result::BuildResult::Failure(f).to_json(result::MAX_BYTES));
            }
            e.exit()
        }
    };
    init_logging(cli.debug, cli.log_format);
    let code = match cli.command {
        Command::Plan(args) => run_plan(&args),
        Command::Build(args) => run_build(&args),
        Command::Prune(args) => run_prune(&args),
        Command::Du(args) => run_du(&args),
        Command::Binfmt(args) => run_binfmt(&args),
        Command::PrepareVolumes(args) => run_prepare_volumes(&args),
    };
    // A clean exit takes its owner locks along; a crash leaves them to the next build's sweep.
    kiln_worker::store::owner::release_all();
    code
}

/// The `--result-file` of a command line that did not parse: the flag, else `KILN_RESULT_FILE`.
fn result_file_from_args() -> Option<PathBuf> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    for (i, a) in args.iter().enumerate() {
        let a = a.to_string_lossy();
        if let Some(v) = a.strip_prefix("--result-file=") {
            return Some(PathBuf::from(v));
        }
        if a == "--result-file" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os("KILN_RESULT_FILE").map(PathBuf::from)
}

/// `--result-file`: written once, by the build, or by the stop watcher when the build does not
/// end in time. A result that cannot be written is reported, and does not change the exit
/// status.
struct ResultFile {
    path: Option<PathBuf>,
    written: Mutex<bool>,
}

impl ResultFile {
    fn new(path: Option<PathBuf>) -> ResultFile {
        ResultFile {
            path,
            written: Mutex::new(false),
        }
    }

    fn write(&self, json: &str) {
        let Some(path) = &self.path else { return };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written {
            return;
        }
        *written = true;
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("warning: writing the result to {}: {e}", path.display());
        }
    }
}
