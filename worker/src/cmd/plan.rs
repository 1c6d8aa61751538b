//! `kiln plan`: print a Dockerfile's build plan, of a local or a remote context.

use crate::*;

/// `kiln plan`.
#[derive(clap::Args)]
pub(crate) struct PlanArgs {
    /// The build context directory, or a Dockerfile, or a Git or tarball URL as for `kiln
    /// build` (fetched to read its Dockerfile; a Git context's commit is in the plan).
    #[arg(default_value = ".")]
    context: PathBuf,
    #[command(flatten)]
    remote: RemoteContextArgs,
    /// An ssh key source for an ssh Git context: `default` (the agent of $SSH_AUTH_SOCK) or
    /// `default=KEYFILE|SOCKET`.
    #[arg(long = "ssh", value_name = "default[=PATH]")]
    ssh: Vec<String>,
    /// Where fetched Git repositories are kept (as for `kiln build`).
    #[arg(long, env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
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
    /// Write a compact plan (or the Dockerfile error) to this file, in under 4 KiB
    /// (docs/worker-result.md). In a plan pod: /dev/termination-log.
    #[arg(long, env = "KILN_RESULT_FILE", value_name = "FILE")]
    result_file: Option<PathBuf>,
}

/// Where the Dockerfile is, and the name diagnostics show for it.
pub(crate) fn locate(args: &PlanArgs) -> (Option<PathBuf>, String) {
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

pub(crate) fn read_dockerfile(path: Option<&Path>) -> anyhow::Result<String> {
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

pub(crate) fn plan_options(args: &PlanArgs) -> anyhow::Result<PlanOptions> {
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

/// A Git or URL context of `kiln plan`, fetched: what holds it, and where its Dockerfile is.
pub(crate) struct PlanRemote {
    context: kiln_worker::context::Context,
    dockerfile: Option<PathBuf>,
}

/// Fetch the context of `kiln plan` when it is remote; `Ok(None)` for a local one.
pub(crate) fn plan_remote(args: &PlanArgs) -> Result<Option<PlanRemote>, (Reason, anyhow::Error)> {
    use build::ContextSource;
    use kiln_worker::context::remote;
    let usage = |e: anyhow::Error| (Reason::InvalidArgument, e);
    let source = context_source(
        &args.context,
        &args.remote.context_type,
        args.remote.context_sha256.as_deref(),
    )
    .map_err(usage)?;
    if matches!(source, ContextSource::Dir(_) | ContextSource::Tar(_)) {
        return Ok(None);
    }
    let state = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_state_dir);
    let store = kiln_worker::store::Store::open(&state)
        .with_context(|| format!("opening the state directory {}", state.display()))
        .map_err(|e| (Reason::Internal, e))?;
    let rel = args
        .file
        .clone()
        .filter(|f| f.as_os_str() != "-")
        .unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let context_failure = |e: kiln_worker::context::ContextError| {
        let reason = if e.is_missing() {
            Reason::MissingContext
        } else {
            Reason::ContextFailed
        };
        (reason, anyhow::Error::new(e))
    };
    let fetched = match source {
        ContextSource::Git(git) => {
            let ssh = parse_ssh(&args.ssh).map_err(|e| (Reason::MissingSecret, e))?;
            let auth = kiln_worker::git::GitAuth {
                dir: args
                    .remote
                    .git_auth_dir
                    .clone()
                    .map(|path| kiln_worker::git::AuthDir {
                        path,
                        scheme: git.scheme,
                        host: git.host.clone(),
                    }),
                secrets: HashMap::new(),
                ssh: ssh.get("default").cloned(),
                home: None,
            };
            eprintln!("fetching the Git context {}", git.describe());
            remote::git(&git, &auth, false, &store, Some(&rel)).map_err(context_failure)?
        }
        ContextSource::Url { url, sha256 } => {
            remote::url(&url, sha256.as_deref(), &store, Some(&rel)).map_err(context_failure)?
        }
        ContextSource::Dir(_) | ContextSource::Tar(_) => {
            unreachable!("local contexts return early")
        }
    };
    Ok(Some(PlanRemote {
        context: fetched.context,
        dockerfile: fetched.dockerfile,
    }))
}

pub(crate) fn run_plan(args: &PlanArgs) -> ExitCode {
    let result_file = ResultFile::new(args.result_file.clone());
    let remote = match plan_remote(args) {
        Ok(r) => r,
        Err((reason, e)) => {
            eprintln!("error: {e:#}");
            let f = result::Failure::new(reason, format!("{e:#}"));
            result_file.write(&result::PlanResult::Failure(f).to_json(result::MAX_BYTES));
            return if reason == Reason::InvalidArgument {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            };
        }
    };
    let (path, name) = match &remote {
        None => locate(args),
        Some(r) => match (&r.dockerfile, &args.file) {
            (Some(downloaded), _) => (Some(downloaded.clone()), "Dockerfile".to_string()),
            (None, Some(f)) if f.as_os_str() == "-" => (None, "<stdin>".into()),
            (None, Some(f)) => (Some(r.context.root().join(f)), f.display().to_string()),
            (None, None) => (
                Some(r.context.root().join("Dockerfile")),
                "Dockerfile".to_string(),
            ),
        },
    };
    let revision = remote
        .as_ref()
        .and_then(|r| r.context.origin())
        .and_then(|o| o.revision.clone());
    if let Some(rev) = &revision {
        eprintln!("Git context at commit {rev}");
    }
    let prepared = read_dockerfile(path.as_deref())
        .map_err(|e| (Reason::InvalidDockerfile, e))
        .and_then(|text| {
            let opts = plan_options(args).map_err(|e| (Reason::InvalidArgument, e))?;
            Ok((text, opts))
        });
    let (text, opts) = match prepared {
        Ok(x) => x,
        Err((reason, e)) => {
            eprintln!("error: {e:#}");
            let mut f = result::Failure::new(reason, format!("{e:#}"));
            f.file = (reason == Reason::InvalidDockerfile).then(|| name.clone());
            result_file.write(&result::PlanResult::Failure(f).to_json(result::MAX_BYTES));
            return ExitCode::from(2);
        }
    };
    let result = plan::from_text(&name, &text, &opts);
    match result {
        Ok(plan) => {
            let mut compact = result::CompactPlan::from_summary(&summary::summarize(&plan));
            compact.revision = revision.clone();
            result_file.write(&result::PlanResult::Plan(compact).to_json(result::MAX_BYTES));
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
            let failure = build::Error::Plan(diags.clone()).to_result();
            result_file.write(&result::PlanResult::Failure(failure).to_json(result::MAX_BYTES));
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
