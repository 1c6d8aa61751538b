//! `kiln-operator`: the controller that turns ImageBuild resources into rootless build pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kiln_operator::cache::GcPolicy;
use kiln_operator::config::Config;
use kiln_operator::metrics::Metrics;
use kiln_operator::{controller, gc, leader, server};

/// The Kiln controller: watches ImageBuild resources and runs each as a rootless build pod.
#[derive(Parser)]
#[command(name = "kiln-operator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the effective configuration (the file, with flags and environment applied) as YAML.
    Config(RunArgs),
    /// Delete cache claims, like `docker builder prune`: by age, by total size, by id, or all.
    /// A claim a running build holds is never deleted.
    Prune(PruneArgs),
    /// List the cache claims with their size, last use and holders.
    Du(DuArgs),
}

#[derive(clap::Args)]
struct PruneArgs {
    /// The namespace (default: every namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only claims of this cache id. Repeatable.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Every claim nobody holds.
    #[arg(long)]
    all: bool,
    /// Per namespace, delete the least recently used claims beyond this total (`20Gi`).
    #[arg(long)]
    keep_storage: Option<String>,
    /// Delete claims unused for longer than this (`24h`).
    #[arg(long)]
    keep_duration: Option<String>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct DuArgs {
    /// The namespace (default: every namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The operator's configuration file (YAML), as the Helm chart writes it.
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<PathBuf>,

    /// Only watch ImageBuilds in this namespace. Default: every namespace.
    #[arg(long, env = "KILN_NAMESPACE")]
    namespace: Option<String>,

    /// Address of the metrics and health endpoint.
    #[arg(long, env = "KILN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// The worker image the build pods run (overrides the configuration file).
    #[arg(long, env = "KILN_WORKER_IMAGE")]
    worker_image: Option<String>,

    /// Hold a leader lease so that only one replica reconciles.
    #[arg(long, env = "KILN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Namespace of the leader lease (default: the operator's own namespace).
    #[arg(long, env = "KILN_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Log format: json or text.
    #[arg(long, env = "KILN_LOG_FORMAT", default_value = "json")]
    log_format: String,

    /// Log filter, such as `info` or `kiln_operator=debug,kube=info`.
    #[arg(long, env = "KILN_LOG", default_value = "info")]
    log_level: String,
}

impl RunArgs {
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(image) = &self.worker_image {
            config.worker_image = image.clone();
        }
        config.check()?;
        Ok(config)
    }
}

fn init_logging(args: &RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "text" {
        builder.init();
    } else {
        // The current span's fields (the ImageBuild's namespace and name) go on every line.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

/// The namespace this pod runs in, from the service account mount.
fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE").ok().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
    })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.load_config()?;
    init_logging(&args);
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let health = server::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let addr = args.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = server::serve(addr, health).await {
            tracing::error!(error = %e, %addr, "the metrics endpoint stopped");
        }
    });
    let client = counted_client(metrics.clone())
        .await
        .context("connecting to the Kubernetes API")?;
    tracing::info!(
        worker_image = %config.worker_image,
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        "kiln-operator starting"
    );

    let shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>> =
        if args.leader_elect {
            let lease_ns = args
                .lease_namespace
                .clone()
                .or_else(own_namespace)
                .unwrap_or_else(|| "default".to_string());
            let identity = std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("kiln-operator-{}", std::process::id()));
            // A standby is ready: it serves metrics and waits for the lease.
            ready.store(true, std::sync::atomic::Ordering::Relaxed);
            // A standby stops at once on SIGTERM: as PID 1 in its container, a signal without a
            // handler would be ignored, and every rollout would wait out the grace period.
            let rx = tokio::select! {
                rx = leader::acquire(
                    client.clone(),
                    &lease_ns,
                    "kiln-operator",
                    &identity,
                    metrics.clone(),
                ) => rx.context("leader election")?,
                _ = shutdown_signal() => {
                    tracing::info!("stopping on signal (a standby)");
                    return Ok(());
                }
            };
            ready.store(false, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                tokio::select! {
                    _ = leader::lost(rx) => tracing::warn!("lost the leader lease; stopping"),
                    _ = shutdown_signal() => tracing::info!("stopping on signal"),
                }
            })
        } else {
            metrics.leader.set(1);
            Box::pin(shutdown_signal())
        };
    let policy = GcPolicy {
        keep_duration: config.gc.keep_duration,
        keep_storage: config
            .gc
            .keep_storage
            .as_deref()
            .map(kiln_crds::quantity::parse_bytes)
            .transpose()?,
        ..Default::default()
    };
    if config.cache_volumes.enabled {
        tokio::spawn(gc::run(
            client.clone(),
            args.namespace.clone(),
            policy,
            config.gc.interval,
        ));
    }
    controller::run(
        client,
        config,
        args.namespace.clone(),
        metrics.clone(),
        ready,
        shutdown,
    )
    .await;
    if args.leader_elect && metrics.leader.get() == 1 {
        tracing::info!("controller stopped");
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn prune_command(args: PruneArgs) -> anyhow::Result<()> {
    let explicit = args.all
        || !args.ids.is_empty()
        || args.keep_storage.is_some()
        || args.keep_duration.is_some();
    anyhow::ensure!(
        explicit,
        "say what to prune: --all, --id ID, --keep-storage SIZE or --keep-duration DURATION"
    );
    let policy = GcPolicy {
        keep_duration: args
            .keep_duration
            .as_deref()
            .map(kiln_crds::duration::parse)
            .transpose()
            .context("--keep-duration")?,
        keep_storage: args
            .keep_storage
            .as_deref()
            .map(kiln_crds::quantity::parse_bytes)
            .transpose()
            .context("--keep-storage")?,
        ids: args.ids,
        all: args.all,
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let doomed = gc::prune(&client, args.namespace.as_deref(), &policy, args.dry_run).await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut total = 0;
    for d in &doomed {
        println!(
            "{verb} {}/{}\tid={}\t{}\t{}",
            d.namespace,
            d.claim,
            d.id,
            gc::human_bytes(d.bytes),
            d.why
        );
        total += d.bytes;
    }
    println!("Total: {}", gc::human_bytes(total));
    Ok(())
}

async fn du_command(args: DuArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let (claims, pods) = gc::observe(&client, args.namespace.as_deref()).await?;
    println!("NAMESPACE\tCLAIM\tID\tSHARING\tSIZE\tLAST USED\tHELD BY");
    let mut total = 0;
    for u in gc::usage(&claims, &pods) {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            u.namespace,
            u.claim,
            u.id,
            u.sharing,
            gc::human_bytes(u.bytes),
            u.last_used.map(|t| t.to_string()).unwrap_or_default(),
            if u.holders.is_empty() {
                "-".to_string()
            } else {
                u.holders.join(",")
            }
        );
        total += u.bytes;
    }
    println!("Total: {}", gc::human_bytes(total));
    Ok(())
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, print_config) = match cli.command {
        Some(Command::Run(a)) => (a, false),
        Some(Command::Config(a)) => (a, true),
        Some(Command::Prune(a)) => return block_on(prune_command(a)),
        Some(Command::Du(a)) => return block_on(du_command(a)),
        None => (cli.run, false),
    };
    if print_config {
        return match args.load_config() {
            Ok(c) => {
                print!("{}", serde_saphyr::to_string(&c).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kiln-operator: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    block_on(run(args))
}

/// The in-cluster (or kubeconfig) client, with every request counted in `kiln_api_requests_total`.
async fn counted_client(metrics: Arc<Metrics>) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await?;
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.api_call(req.method(), req.uri());
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}
