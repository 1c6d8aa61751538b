//! `kiln prune` and `kiln du`: the build cache, as `docker builder prune` and `docker buildx du`.

use crate::*;

/// `kiln prune`.
#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    /// Kiln's state directory (as for `kiln build`).
    #[arg(long, env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Remove base image layers too, not only build cache.
    #[arg(short = 'a', long)]
    all: bool,
    /// Only records matching: `until=24h` (unused for that long), `type=step|layer|cache-mount|source|blob`,
    /// `id=PREFIX`, `description=TEXT`. Repeat to combine.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Keep this much cache: remove least-recently-used records until it is no bigger (`10GB`, `10Gi`).
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Keep records used within this time (`24h`, `7d`).
    #[arg(long, value_name = "DURATION")]
    keep_duration: Option<String>,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accepted for `docker builder prune` compatibility; Kiln never asks for confirmation.
    #[arg(short = 'f', long, hide = true)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `kiln du`.
#[derive(clap::Args)]
pub(crate) struct DuArgs {
    /// Kiln's state directory (as for `kiln build`).
    #[arg(long, env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Only records matching, as for `kiln prune --filter`.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Print the records as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_prune(args: &PruneArgs) -> ExitCode {
    use kiln_worker::cache::prune::{self, Filters, Policy};
    let policy = (|| -> Result<Policy, String> {
        Ok(Policy {
            all: args.all,
            filters: Filters::parse(&args.filters)?,
            keep_storage: args
                .keep_storage
                .as_deref()
                .map(|s| prune::parse_size(s).map_err(|e| format!("--keep-storage: {e}")))
                .transpose()?,
            keep_duration: args
                .keep_duration
                .as_deref()
                .map(|s| prune::parse_duration(s).map_err(|e| format!("--keep-duration: {e}")))
                .transpose()?,
            dry_run: args.dry_run,
        })
    })();
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = args.force;
    let root = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_state_dir);
    if !root.exists() {
        eprintln!("error: no cache at {}", root.display());
        return ExitCode::FAILURE;
    }
    // Rootless: files in the store belong to the user namespace's ids.
    if let Err(e) = userns::enter() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let report = match prune::prune(&root, &policy) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: pruning {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if !report.removed.is_empty() {
        println!("{}", record_header());
        for r in &report.removed {
            println!("{}", record_row(r));
        }
    }
    if report.builds_running {
        eprintln!("builds are running: only cache-mount instances no build holds were considered");
    }
    if report.in_use > 0 {
        eprintln!("{} records in use were kept", report.in_use);
    }
    let verb = if report.dry_run {
        "Would free"
    } else {
        "Total reclaimed space"
    };
    println!("{verb}: {}", prune::human_size(report.freed));
    ExitCode::SUCCESS
}

pub(crate) fn record_header() -> String {
    format!(
        "{:<14} {:<12} {:>10}  {:<16} DESCRIPTION",
        "ID", "KIND", "SIZE", "LAST USED"
    )
}

pub(crate) fn record_row(r: &kiln_worker::cache::Record) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ago = ago(now.saturating_sub(r.last_used));
    let id: String =
        r.id.trim_start_matches("sha256:")
            .chars()
            .take(14)
            .collect();
    let mut description = r.description.clone();
    if r.in_use {
        description.push_str(" (in use)");
    }
    format!(
        "{:<14} {:<12} {:>10}  {:<16} {}",
        id,
        r.kind.as_str(),
        kiln_worker::cache::prune::human_size(r.size),
        ago,
        description
    )
}

pub(crate) fn ago(secs: u64) -> String {
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} minutes ago", secs / 60),
        3600..86400 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

pub(crate) fn run_du(args: &DuArgs) -> ExitCode {
    use kiln_worker::cache::{self, Kind, prune};
    let filters = match prune::Filters::parse(&args.filters) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let root = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_state_dir);
    if let Err(e) = userns::enter() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let records = match cache::records(&root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: reading {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| filters.selects(r, now))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    println!("{}", record_header());
    for r in &records {
        println!("{}", record_row(r));
    }
    println!();
    let mut total = 0;
    for kind in [
        Kind::Step,
        Kind::Layer,
        Kind::CacheMount,
        Kind::Source,
        Kind::Blob,
    ] {
        let (n, size) = records
            .iter()
            .filter(|r| r.kind == kind)
            .fold((0, 0), |(n, s), r| (n + 1, s + r.size));
        total += size;
        if n > 0 {
            println!(
                "{:<12} {n:>5} records {:>10}",
                kind.as_str(),
                prune::human_size(size)
            );
        }
    }
    println!(
        "{:<12} {:>5} records {:>10}",
        "total",
        records.len(),
        prune::human_size(total)
    );
    ExitCode::SUCCESS
}
