//! `kiln`: build container images from Dockerfiles, rootless, with BuildKit's feature set.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Plan(Unimplemented),
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

fn main() -> ExitCode {
    // The sandbox helper re-executes this binary; it must not parse arguments or start threads.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__sandbox") {
        let spec = args.next().unwrap_or_default();
        kiln_worker::sandbox::init::helper_main(std::path::Path::new(&spec));
    }
    let cli = Cli::parse();
    let (name, issue) = match cli.command {
        Command::Build(_) => ("build", 4),
        Command::Plan(_) => ("plan", 3),
        Command::Prune(_) => ("prune", 7),
        Command::Du(_) => ("du", 7),
    };
    eprintln!("kiln {name}: not implemented yet (tracked in issue #{issue})");
    ExitCode::from(2)
}
