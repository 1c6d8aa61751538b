//! `kiln`: build container images from Dockerfiles, rootless, with BuildKit's feature set.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use kiln_worker::dockerfile;
use kiln_worker::plan::{self, PlanOptions, Platform, summary};

/// Build container images from Dockerfiles, rootless, with BuildKit's Dockerfile feature set.
#[derive(Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile and a context.
    Build(Unimplemented),
    /// Parse a Dockerfile and print its build plan: stages, base images, cache, secret and ssh ids.
    Plan(PlanArgs),
    /// Remove build cache records, like `docker builder prune`.
    Prune(Unimplemented),
    /// Show the disk usage of the build cache, like `docker buildx du`.
    Du(Unimplemented),
}

/// The arguments of a command that is not implemented yet.
#[derive(clap::Args)]
struct Unimplemented {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// `kiln plan`.
#[derive(clap::Args)]
struct PlanArgs {
    /// The build context directory, or a Dockerfile.
    #[arg(default_value = ".")]
    context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads standard input.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A build argument, `NAME=VALUE`; `NAME` alone takes the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// The platform to build for (default: this machine's), such as linux/arm64.
    #[arg(long)]
    platform: Option<String>,
    /// Print the plan as JSON (the shape is documented in docs/plan-json.md).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // The sandbox helper re-executes this binary; it must not parse arguments or start threads.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__sandbox") {
        let spec = args.next().unwrap_or_default();
        kiln_worker::sandbox::init::helper_main(std::path::Path::new(&spec));
    }
    let cli = Cli::parse();
    let (name, issue) = match cli.command {
        Command::Plan(args) => return run_plan(&args),
        Command::Build(_) => ("build", 4),
        Command::Prune(_) => ("prune", 7),
        Command::Du(_) => ("du", 7),
    };
    eprintln!("kiln {name}: not implemented yet (tracked in issue #{issue})");
    ExitCode::from(2)
}

/// Where the Dockerfile is, and the name diagnostics show for it.
fn locate(args: &PlanArgs) -> (Option<PathBuf>, String) {
    match &args.file {
        Some(f) if f.as_os_str() == "-" => (None, "<stdin>".into()),
        Some(f) => (Some(f.clone()), f.display().to_string()),
        None if args.context.is_file() => (
            Some(args.context.clone()),
            args.context.display().to_string(),
        ),
        None => {
            let path = args.context.join("Dockerfile");
            let shown = if args.context == Path::new(".") {
                "Dockerfile".to_string()
            } else {
                path.display().to_string()
            };
            (Some(path), shown)
        }
    }
}

fn read_dockerfile(path: Option<&Path>) -> anyhow::Result<String> {
    let bytes = match path {
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the Dockerfile from standard input")?;
            buf
        }
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
    };
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            bail!("the Dockerfile is not valid UTF-8 (at byte {at})")
        }
    }
}

fn plan_options(args: &PlanArgs) -> anyhow::Result<PlanOptions> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut opts = PlanOptions {
        build_args,
        target: args.target.clone(),
        ..PlanOptions::default()
    };
    if let Some(p) = &args.platform {
        opts.target_platform =
            Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
    }
    Ok(opts)
}

fn run_plan(args: &PlanArgs) -> ExitCode {
    let (path, name) = locate(args);
    let prepared =
        read_dockerfile(path.as_deref()).and_then(|text| Ok((text, plan_options(args)?)));
    let (text, opts) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = dockerfile::parse(&name, &text).and_then(|df| plan::build(df, &opts));
    match result {
        Ok(plan) => {
            if args.json {
                match serde_json::to_string_pretty(&summary::summarize(&plan)) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                for w in &plan.warnings {
                    eprintln!("{w}\n");
                }
                print!("{}", summary::render(&plan));
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            if args.json {
                let out = serde_json::json!({
                    "apiVersion": summary::API_VERSION,
                    "dockerfile": name,
                    "errors": diags.errors().collect::<Vec<_>>(),
                    "warnings": diags.warnings().collect::<Vec<_>>(),
                });
                println!("{out}");
            }
            ExitCode::FAILURE
        }
    }
}
