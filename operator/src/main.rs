//! `kiln-operator`: the controller that turns ImageBuild resources into rootless build pods.

use std::process::ExitCode;

use clap::Parser;

/// The Kiln controller: watches ImageBuild resources and runs each as a rootless build pod.
#[derive(Parser)]
#[command(name = "kiln-operator", version, about, long_about = None)]
struct Cli {
    /// Only watch ImageBuilds in this namespace. Default: every namespace.
    #[arg(long, env = "KILN_NAMESPACE")]
    namespace: Option<String>,

    /// Address of the metrics and health endpoint.
    #[arg(long, env = "KILN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,

    /// The worker image the build pods run.
    #[arg(long, env = "KILN_WORKER_IMAGE")]
    worker_image: Option<String>,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "kiln-operator: the controller is not implemented yet; no ImageBuild will be reconciled"
    );
    ExitCode::from(2)
}
