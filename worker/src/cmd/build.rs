//! `kiln build`: its arguments, the request they make, and the run with its result file.

use crate::*;

/// `kiln build`.
#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The build context: a directory, a tarball, `-` for a tarball on standard input, a Git
    /// URL (`https://host/org/repo.git#ref:subdir`, `git@host:org/repo.git#ref`, `ssh://…`,
    /// `git://…`, `?ref=…&subdir=…`), or the URL of a tarball (or of a Dockerfile).
    #[arg(default_value = ".")]
    context: PathBuf,
    #[command(flatten)]
    remote: RemoteContextArgs,
    /// known_hosts lines for the RUN steps that mount ssh id ID (`RUN --mount=type=ssh,id=ID`),
    /// seen at /etc/ssh/ssh_known_hosts (read-only, never in a layer). Repeatable.
    #[arg(long = "ssh-known-hosts", value_name = "ID=FILE")]
    ssh_known_hosts: Vec<String>,
    /// The Dockerfile (default: Dockerfile in the context).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A build argument, `NAME=VALUE`; `NAME` alone takes the value from the environment.
    /// BuildKit's built-in ones (`BUILDKIT_SYNTAX`, `BUILDKIT_INLINE_CACHE`, ...) work as in
    /// BuildKit where Kiln has the feature (docs/frontend.md).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// A label for the image config, `KEY=VALUE`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A name for the image, used by the outputs (`-t registry/app:1`).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Where the image goes: `type=oci,dest=DIR|FILE.tar|-[,tar=true|false]` (an OCI layout; a
    /// tarball for a `.tar` name or `-`, standard output), `type=docker,dest=FILE.tar|-` (for
    /// docker load / podman load), `type=local,dest=DIR` (the final filesystem),
    /// `type=image,name=REF,push=true` or `type=registry[,name=REF]` (a registry; the names
    /// default to the -t tags). Repeatable.
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,
    /// The platforms to build for, comma-separated or repeated (`linux/amd64,linux/arm64`):
    /// one image each, in an image index when there are several. RUN steps of another
    /// architecture run under QEMU user emulation (see `kiln binfmt`). Default: this machine's.
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH[/VARIANT]")]
    platform: Vec<String>,
    /// Attach SLSA provenance to each image, as BuildKit does: `true` (mode=max, SLSA v1),
    /// `false`, or `mode=min|max[,version=v1|v0.2][,builder-id=ID][,reproducible=true]`
    /// (docs/provenance.md). Shorthand for `--attest type=provenance,...`.
    #[arg(long, value_name = "true|false|mode=min|max,...")]
    provenance: Option<String>,
    /// An attestation: `type=provenance[,mode=min|max,version=v1|v0.2,builder-id=ID,
    /// disabled=true]`. `type=sbom` is not supported yet. Repeatable.
    #[arg(long = "attest", value_name = "type=provenance,...")]
    attest: Vec<String>,
    /// SBOM attestations (`--attest type=sbom`): not supported yet; only `false` is accepted.
    #[arg(long, value_name = "false")]
    sbom: Option<String>,
    /// How to show progress: auto (tty when standard error is a terminal, else plain), tty (the
    /// live view `docker buildx build` draws, redrawn in place), plain, json (or rawjson:
    /// one event per line) or quiet.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Print only the image digest (`sha256:...`) on standard output, as `docker build -q`
    /// does: no progress (`--progress=quiet`); errors still go to standard error.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Run every step, ignoring cached results.
    #[arg(long)]
    no_cache: bool,
    /// Run the steps of this stage (name or index) without the cache. Repeatable.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Export the step cache: `type=registry,ref=REF` (or a bare REF), `type=local,dest=DIR
    /// [,tag=T]` (an OCI layout) or `type=inline` (in the image config); `mode=min` (default:
    /// the steps whose layers the image carries) or `mode=max` (every step of every stage), and
    /// `ignore-error=true` (warn instead of failing). Repeatable.
    #[arg(long = "cache-to", value_name = "type=TYPE,...")]
    cache_to: Vec<String>,
    /// Import a step cache: `type=registry,ref=REF` (or a bare REF; an image pushed with
    /// `type=inline` works too) or `type=local,src=DIR[,tag=T]`. Repeatable; searched in order.
    #[arg(long = "cache-from", value_name = "type=TYPE,...")]
    cache_from: Vec<String>,
    /// After the build, prune the cache (least recently used first) down to this size (`10GB`,
    /// `512MB`, `10Gi`).
    #[arg(long, env = "KILN_GC_KEEP_STORAGE", value_name = "SIZE")]
    gc_keep_storage: Option<String>,
    /// After the build, prune cache records not used within this time (`48h`, `7d`).
    #[arg(long, env = "KILN_GC_KEEP_DURATION", value_name = "DURATION")]
    gc_keep_duration: Option<String>,
    /// Clamp every timestamp in the image to this time (seconds since the epoch), for
    /// reproducible images. Also `--build-arg SOURCE_DATE_EPOCH=N`, as in BuildKit.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
    /// Layer compression: gzip, zstd or uncompressed (or none).
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// A named context: `NAME=oci-layout://DIR[:TAG|@DIGEST]` or `NAME=DIR`. NAME is a stage
    /// name or an image reference as written in FROM or COPY --from.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// Kiln's state: the layer store, the build cache and cache mounts.
    #[arg(long, env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Bind the host's /proc instead of giving each step a pid namespace and a fresh /proc
    /// (for restricted pods where a new /proc cannot be mounted).
    #[arg(long)]
    no_process_sandbox: bool,
    /// Grant an entitlement: `security.insecure` allows `RUN --security=insecure`;
    /// `network.host` is accepted and changes nothing (`RUN --network=host` needs no grant).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Namespace for cache mount ids: builds with different namespaces never share a cache
    /// mount. Also `--build-arg BUILDKIT_CACHE_MOUNT_NS=NS`, as in BuildKit.
    #[arg(long, env = "BUILDKIT_CACHE_MOUNT_NS", default_value = "")]
    cache_mount_ns: String,
    /// Keep one cache on a volume of its own (a Kubernetes PersistentVolumeClaim): a JSON object
    /// `{"id","uid","gid","mode","from","source","dir"}` naming the cache as BuildKit keys it and
    /// the directory that holds it. The operator passes one per cache. Repeatable.
    #[arg(long = "cache-volume", value_name = "JSON")]
    cache_volumes: Vec<String>,
    /// Write the result as JSON to this file: the digests (`containerimage.digest`,
    /// `containerimage.config.digest`), the names, step counts and what a push did.
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// Write the worker's result to this file: one JSON object under 4 KiB, the digest and
    /// pushed names, or a stable failure reason (docs/worker-result.md). In a pod:
    /// /dev/termination-log.
    #[arg(long, env = "KILN_RESULT_FILE", value_name = "FILE")]
    result_file: Option<PathBuf>,
    /// Stop the build after this long (`30m`, `1h30m`); the result's reason is then Timeout.
    #[arg(long, env = "KILN_TIMEOUT", value_name = "DURATION")]
    timeout: Option<String>,
    /// A build secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (`type=file|env` may say which; a lone `id=ID` reads the variable ID).
    /// Its value is never stored in the image, the cache or the logs.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// A directory of secrets, one file per id, the file name being the id (a mounted
    /// Kubernetes Secret: its `..data` entries are skipped). Repeatable.
    #[arg(long = "secrets-dir", value_name = "DIR")]
    secrets_dir: Vec<PathBuf>,
    /// An ssh key source for `RUN --mount=type=ssh`: `default` (the agent of $SSH_AUTH_SOCK),
    /// `ID=SOCKET` (forward an agent), or `ID=KEYFILE[,KEYFILE...]` (Kiln serves the keys).
    #[arg(long = "ssh", value_name = "default|ID=PATH[,PATH...]")]
    ssh: Vec<String>,
    /// How RUN steps get their root filesystem: overlay, copy (or native; when overlayfs is
    /// unavailable), or auto (overlay when it can be mounted).
    #[arg(long, env = "KILN_SNAPSHOTTER", default_value = "auto")]
    snapshotter: String,
    /// Push the image to the registry of every -t name (like `--output type=registry`).
    #[arg(long)]
    push: bool,
    /// A CA certificate (PEM) to trust for every registry, besides the system's.
    #[arg(long = "registry-ca", value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// A certs.d-style directory: DIR/HOST[:PORT]/*.crt are CAs for that registry only
    /// (default: /etc/docker/certs.d and /etc/containers/certs.d).
    #[arg(long = "registry-certs-dir", value_name = "DIR")]
    registry_certs_dir: Vec<PathBuf>,
    /// An insecure registry, `HOST[:PORT]`: TLS without a certificate check when it answers
    /// TLS, else plain HTTP (dockerd's rule). Registries on loopback (localhost, 127.0.0.0/8,
    /// ::1) are insecure without this flag; every other one is TLS with a checked certificate.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// Registry credentials: a docker config.json, or a Kubernetes dockerconfigjson Secret file
    /// (or its mounted directory). Repeatable (a push Secret and pull Secrets): for each
    /// registry, the first file with an entry for it wins. Looked at before
    /// $DOCKER_CONFIG/config.json and ~/.docker/config.json.
    #[arg(
        long = "registry-auth-file",
        value_name = "FILE",
        env = "KILN_REGISTRY_AUTH_FILE"
    )]
    registry_auth_file: Vec<PathBuf>,
    /// Attempts per registry request when it fails with 429, 5xx or a broken connection.
    #[arg(long = "registry-retries", value_name = "N", default_value_t = 6)]
    registry_retries: u32,
    /// The most bytes one ADD may download, or one ADD archive may unpack to (default 8 GiB).
    #[arg(
        long = "add-max-bytes",
        value_name = "BYTES",
        env = "KILN_ADD_MAX_BYTES"
    )]
    add_max_bytes: Option<u64>,
    /// The most an ADD archive may grow when unpacked, as a multiple of its size, checked past
    /// 64 MiB (default 1000).
    #[arg(long = "add-max-ratio", value_name = "N", env = "KILN_ADD_MAX_RATIO")]
    add_max_ratio: Option<u64>,
    /// The longest wait, in seconds, for the next bytes of an ADD download (default 60).
    #[arg(
        long = "fetch-read-timeout",
        value_name = "SECONDS",
        env = "KILN_FETCH_READ_TIMEOUT"
    )]
    fetch_read_timeout: Option<u64>,
}

pub(crate) fn key_values(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("{what} {item:?}: expected KEY=VALUE"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// What a context argument names, by `--context-type` (see `kiln build --help`).
pub(crate) fn context_source(
    arg: &Path,
    kind: &str,
    sha256: Option<&str>,
) -> anyhow::Result<build::ContextSource> {
    use build::ContextSource;
    use kiln_worker::git::GitRef;
    let text = arg.to_string_lossy();
    let local = || {
        if arg.as_os_str() == "-" || arg.is_file() {
            ContextSource::Tar(arg.to_path_buf())
        } else {
            ContextSource::Dir(arg.to_path_buf())
        }
    };
    let is_http = text.starts_with("http://") || text.starts_with("https://");
    let source = match kind {
        "local" => local(),
        "git" => match GitRef::parse_forced(&text)? {
            Some(git) => ContextSource::Git(git),
            None => bail!(
                "--context-type=git: {text:?} is not a Git URL (https://, http://, ssh://, git:// or user@host:path)"
            ),
        },
        "url" if is_http => ContextSource::Url {
            url: text.into_owned(),
            sha256: None,
        },
        "url" => bail!("--context-type=url: {text:?} is not an http(s) URL"),
        "auto" if arg.as_os_str() == "-" || arg.exists() => local(),
        "auto" => match GitRef::parse(&text, true)? {
            Some(git) => ContextSource::Git(git),
            None if is_http => ContextSource::Url {
                url: text.into_owned(),
                sha256: None,
            },
            None => local(),
        },
        other => bail!("--context-type {other:?}: use auto, git, url or local"),
    };
    match (source, sha256) {
        (ContextSource::Url { url, .. }, Some(sum)) => {
            if !kiln_worker::context::remote::valid_sha256(sum) {
                bail!("--context-sha256 {sum:?}: expected 64 lower-case hex digits");
            }
            Ok(ContextSource::Url {
                url,
                sha256: Some(sum.to_string()),
            })
        }
        (_, Some(_)) => {
            bail!("--context-sha256 is for a URL context (a tarball over http or https)")
        }
        (source, None) => Ok(source),
    }
}

/// `--ssh-known-hosts ID=FILE`.
pub(crate) fn parse_known_hosts(specs: &[String]) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    for spec in specs {
        let (id, file) = spec
            .split_once('=')
            .filter(|(id, file)| !id.is_empty() && !file.is_empty())
            .with_context(|| format!("--ssh-known-hosts {spec:?}: expected ID=FILE"))?;
        out.insert(id.to_string(), PathBuf::from(file));
    }
    Ok(out)
}

pub(crate) fn build_request(args: &BuildArgs) -> anyhow::Result<build::Request> {
    let context = context_source(
        &args.context,
        &args.remote.context_type,
        args.remote.context_sha256.as_deref(),
    )?;
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
    let mut platforms: Vec<plan::Platform> = vec![];
    for p in args.platform.iter().filter(|p| !p.is_empty()) {
        let parsed = plan::Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform {e}"))?;
        if parsed.os != "linux" {
            bail!("--platform {p}: Kiln builds Linux images only");
        }
        if !platforms.contains(&parsed) {
            platforms.push(parsed);
        }
    }
    let mut outputs = args
        .outputs
        .iter()
        .map(|o| build::Output::parse(o).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.push {
        let mut found = false;
        for o in &mut outputs {
            if let build::Output::Image { push, .. } = o {
                *push = true;
                found = true;
            }
        }
        if !found {
            outputs.push(build::Output::Image {
                names: vec![],
                push: true,
            });
        }
    }
    for o in &outputs {
        match o {
            build::Output::Image { push: false, .. } => bail!(
                "--output type=image needs push=true (or --push): Kiln has no local image store; use type=oci or type=docker for a file"
            ),
            build::Output::Image { names, .. } if names.is_empty() && args.tags.is_empty() => {
                bail!(
                    "pushing needs a name: pass -t NAME or --output type=image,name=NAME,push=true"
                )
            }
            _ => {}
        }
    }
    let mut named = HashMap::new();
    for c in &args.build_contexts {
        let (name, value) = c
            .split_once('=')
            .with_context(|| format!("--build-context {c:?}: expected NAME=VALUE"))?;
        let ctx = match value.strip_prefix("oci-layout://") {
            Some(rest) => {
                let (dir, reference) = split_layout_ref(rest);
                NamedContext::OciLayout {
                    dir: PathBuf::from(dir),
                    reference,
                }
            }
            None if value.contains("://") => {
                bail!(
                    "--build-context {name}: only oci-layout:// and local directories are supported"
                )
            }
            None => NamedContext::Dir(PathBuf::from(value)),
        };
        named.insert(name.to_string(), ctx);
    }
    let compression = Compression::parse(&args.compression).with_context(|| {
        format!(
            "--compression {:?}: use gzip, zstd or uncompressed",
            args.compression
        )
    })?;
    let mut allow_insecure = false;
    for a in &args.allow {
        match a.as_str() {
            "security.insecure" => allow_insecure = true,
            "network.host" => {}
            other => {
                bail!("--allow {other:?}: unknown entitlement (security.insecure, network.host)")
            }
        }
    }
    Ok(build::Request {
        context,
        dockerfile: args.file.clone(),
        build_args,
        target: args.target.clone(),
        platforms,
        multi_platform: false,
        provenance: provenance_options(args)?,
        labels: key_values(&args.labels, "--label")?,
        tags: args.tags.clone(),
        outputs,
        named_contexts: named,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        gc: gc_policy(args)?,
        cache_to: args
            .cache_to
            .iter()
            .map(|c| {
                kiln_worker::cache::transfer::CacheExport::parse(c).map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<_>>()?,
        cache_from: args
            .cache_from
            .iter()
            .map(|c| CacheSpec::parse(c, false).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        source_date_epoch: args.source_date_epoch,
        compression,
        state_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_state_dir),
        process_sandbox: !args.no_process_sandbox,
        allow_insecure,
        cache_mount_ns: args.cache_mount_ns.clone(),
        cache_volumes: args
            .cache_volumes
            .iter()
            .map(|v| {
                kiln_worker::mounts::volumes::CacheVolume::parse(v).map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<_>>()?,
        metadata_file: args.metadata_file.clone(),
        helper: None,
        secrets: parse_secrets(&args.secrets, &args.secrets_dir).map_err(SecretInput)?,
        ssh: parse_ssh(&args.ssh).map_err(SecretInput)?,
        snapshotter: match args.snapshotter.as_str() {
            "auto" => None,
            "overlay" => Some(Snapshotter::Overlay),
            "copy" | "native" => Some(Snapshotter::Copy),
            other => bail!("--snapshotter {other:?}: use auto, overlay or copy"),
        },
        registry: registry_options(args)?,
        interrupt: Interrupt::default(),
        git_auth_dir: args.remote.git_auth_dir.clone(),
        keep_git_dir: false,
        ssh_known_hosts: parse_known_hosts(&args.ssh_known_hosts)?,
    })
}

/// `--provenance`, `--attest` and `--sbom` (`provenance::Options::from_flags`).
pub(crate) fn provenance_options(
    args: &BuildArgs,
) -> anyhow::Result<Option<kiln_worker::provenance::Options>> {
    kiln_worker::provenance::Options::from_flags(
        args.provenance.as_deref(),
        &args.attest,
        args.sbom.as_deref(),
    )
    .map_err(anyhow::Error::msg)
}

/// `--gc-keep-storage` / `--gc-keep-duration`: the automatic GC after a build.
pub(crate) fn gc_policy(
    args: &BuildArgs,
) -> anyhow::Result<Option<kiln_worker::cache::prune::Policy>> {
    use kiln_worker::cache::prune;
    if args.gc_keep_storage.is_none() && args.gc_keep_duration.is_none() {
        return Ok(None);
    }
    Ok(Some(prune::Policy {
        all: true,
        keep_storage: args
            .gc_keep_storage
            .as_deref()
            .map(prune::parse_size)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--gc-keep-storage: {e}"))?,
        keep_duration: args
            .gc_keep_duration
            .as_deref()
            .map(prune::parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--gc-keep-duration: {e}"))?,
        ..prune::Policy::default()
    }))
}

/// The registry flags.
pub(crate) fn registry_options(args: &BuildArgs) -> anyhow::Result<RegistryOptions> {
    if args.registry_retries == 0 {
        bail!("--registry-retries must be at least 1");
    }
    let mut opts = RegistryOptions {
        ca_files: args.registry_ca.clone(),
        insecure: args.insecure_registry.clone(),
        auth_files: args.registry_auth_file.clone(),
        ..RegistryOptions::default()
    };
    if !args.registry_certs_dir.is_empty() {
        opts.certs_dirs = args.registry_certs_dir.clone();
    }
    opts.retry.attempts = args.registry_retries;
    Ok(opts)
}

/// A `--secret`, `--secrets-dir` or `--ssh` that cannot be read (a Secret volume the pod may
/// not read, say): the result's reason is then `MissingSecret`, not `InvalidArgument`.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub(crate) struct SecretInput(anyhow::Error);

/// `--secret id=ID,src=FILE|env=VAR[,type=file|env]` and `--secrets-dir DIR`: in a directory
/// (a mounted Kubernetes Secret), each file is a secret whose id is its name; the kubelet's
/// `..data` bookkeeping entries are skipped.
pub(crate) fn parse_secrets(
    specs: &[String],
    dirs: &[PathBuf],
) -> anyhow::Result<HashMap<String, SecretSource>> {
    let mut out = HashMap::new();
    for dir in dirs {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("--secrets-dir {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A mounted Kubernetes Secret also holds `..data` links; only plain names are ids.
            if name.starts_with('.') || !entry.path().is_file() {
                continue;
            }
            out.insert(name, SecretSource::File(entry.path()));
        }
    }
    for spec in specs {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", v)) => kind = Some(v.to_string()),
                _ => bail!(
                    "--secret {spec:?}: unknown part {part:?}; use id=ID,src=FILE or id=ID,env=VAR"
                ),
            }
        }
        let id = id
            .or_else(|| src.clone())
            .or_else(|| env.clone())
            .with_context(|| format!("--secret {spec:?}: id= is required"))?;
        let source = match (kind.as_deref(), src, env) {
            (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
            (Some("file") | None, Some(f), None) => SecretSource::File(PathBuf::from(f)),
            (None, None, None) => SecretSource::Env(id.clone()),
            _ => bail!("--secret {spec:?}: give either src= or env="),
        };
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh default`, `--ssh ID=SOCKET`, `--ssh ID=KEYFILE[,KEYFILE...]`.
pub(crate) fn parse_ssh(specs: &[String]) -> anyhow::Result<HashMap<String, SshSource>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = HashMap::new();
    for spec in specs {
        let (id, paths) = match spec.split_once('=') {
            Some((id, paths)) => (id.to_string(), paths.to_string()),
            None => {
                let sock = std::env::var("SSH_AUTH_SOCK")
                    .with_context(|| format!("--ssh {spec}: SSH_AUTH_SOCK is not set"))?;
                (spec.clone(), sock)
            }
        };
        let paths: Vec<PathBuf> = paths
            .split(',')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        let first = paths
            .first()
            .with_context(|| format!("--ssh {spec}: no path"))?;
        let is_socket = std::fs::metadata(first).is_ok_and(|m| m.file_type().is_socket());
        let source = if is_socket && paths.len() == 1 {
            SshSource::Agent(first.clone())
        } else {
            for p in &paths {
                kiln_worker::mounts::ssh::read_key(p).with_context(|| format!("--ssh {id}"))?;
            }
            SshSource::Keys(paths)
        };
        out.insert(id, source);
    }
    Ok(out)
}

/// `DIR[:TAG|@DIGEST]` of an oci-layout:// context. A `:` is a tag only after the last `/`.
pub(crate) fn split_layout_ref(rest: &str) -> (&str, Option<String>) {
    if let Some((dir, digest)) = rest.rsplit_once('@') {
        return (dir, Some(digest.to_string()));
    }
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(rest[last + i + 1..].to_string())),
        None => (rest, None),
    }
}

/// BuildKit's built-in build arguments that stand for flags (`plan::buildkit_args`):
/// `BUILDKIT_CACHE_MOUNT_NS`, `SOURCE_DATE_EPOCH`, `BUILDKIT_INLINE_CACHE`,
/// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`, `BUILDKIT_MULTI_PLATFORM`, `BUILDKIT_ATTEST_PROVENANCE`. A flag wins.
/// `provenance_flag`: `--provenance` or `--attest` was given, and wins over
/// `BUILDKIT_ATTEST_PROVENANCE`.
pub(crate) fn with_buildkit_args(
    mut req: build::Request,
    provenance_flag: bool,
) -> anyhow::Result<build::Request> {
    use kiln_worker::cache::transfer::CacheExport;
    let b = plan::buildkit_args::BuildkitArgs::from_build_args(&req.build_args)
        .map_err(anyhow::Error::msg)?;
    if req.cache_mount_ns.is_empty() {
        req.cache_mount_ns = b.cache_mount_ns.unwrap_or_default();
    }
    req.source_date_epoch = req.source_date_epoch.or(b.source_date_epoch);
    req.keep_git_dir = b.keep_git_dir;
    req.multi_platform |= b.multi_platform;
    if !provenance_flag && let Some(v) = &b.attest_provenance {
        req.provenance = kiln_worker::provenance::Options::parse(v)
            .map_err(|e| anyhow::anyhow!("--build-arg BUILDKIT_ATTEST_PROVENANCE={v}: {e}"))?;
    }
    if b.inline_cache && !req.cache_to.iter().any(|c| c.spec == CacheSpec::Inline) {
        req.cache_to.push(CacheExport {
            spec: CacheSpec::Inline,
            ignore_error: false,
        });
    }
    Ok(req)
}

pub(crate) fn run_build(args: &BuildArgs) -> ExitCode {
    let started = Instant::now();
    let result_file = Arc::new(ResultFile::new(args.result_file.clone()));
    let refuse = |reason: Reason, e: String| {
        eprintln!("error: {e}");
        let f = result::Failure::new(reason, e);
        result_file.write(&result::BuildResult::Failure(f).to_json(result::MAX_BYTES));
        ExitCode::from(2)
    };
    let usage_error = |e: String| refuse(Reason::InvalidArgument, e);
    let defaults = kiln_worker::fetch::Limits::current();
    kiln_worker::fetch::Limits::set(kiln_worker::fetch::Limits {
        max_bytes: args.add_max_bytes.unwrap_or(defaults.max_bytes),
        max_ratio: args.add_max_ratio.unwrap_or(defaults.max_ratio),
        read_timeout: args
            .fetch_read_timeout
            .map_or(defaults.read_timeout, std::time::Duration::from_secs),
    });
    let provenance_flag = args.provenance.is_some() || !args.attest.is_empty();
    let request = match build_request(args).and_then(|r| with_buildkit_args(r, provenance_flag)) {
        Ok(r) => r,
        Err(e) if e.is::<SecretInput>() => return refuse(Reason::MissingSecret, format!("{e:#}")),
        Err(e) => return usage_error(format!("{e:#}")),
    };
    let mode = if args.quiet { "quiet" } else { &args.progress };
    let Some(mode) = progress::Mode::parse(mode) else {
        return usage_error(format!(
            "--progress {:?}: use auto, tty, plain, json or quiet",
            args.progress
        ));
    };
    let timeout = match args.timeout.as_deref().map(cache::prune::parse_duration) {
        Some(Err(e)) => return usage_error(format!("--timeout: {e}")),
        Some(Ok(t)) => Some(t),
        None => None,
    };
    // Rootless: enter a user namespace now, while this process has a single thread.
    if let Err(e) = userns::enter() {
        eprintln!("error: {e}");
        let f = result::Failure::new(Reason::Internal, e.to_string());
        result_file.write(&result::BuildResult::Failure(f).to_json(result::MAX_BYTES));
        return ExitCode::FAILURE;
    }
    let give_up = {
        let result_file = result_file.clone();
        move |stop: Stop| {
            let f = result::Failure::new(stop.reason(), stop.to_string());
            result_file.write(&result::BuildResult::Failure(f).to_json(result::MAX_BYTES));
            eprintln!("error: {stop}");
            std::process::exit(i32::from(kiln_worker::stop::exit_status(stop)));
        }
    };
    if let Err(e) =
        kiln_worker::stop::watch(request.interrupt.clone(), timeout, STOP_GRACE, give_up)
    {
        eprintln!("warning: cannot watch for signals: {e}");
    }
    let printer = progress::Printer::stderr(mode);
    let built = build::run(&request, &printer);
    // The tty view's last draw, before anything else is printed.
    printer.finish();
    match built {
        Ok(outcome) => {
            let to_stdout = request.outputs.iter().any(|o| {
                matches!(o, build::Output::Oci { dest, .. } | build::Output::Docker { dest } if dest.as_os_str() == "-")
            });
            result_file.write(
                &result::BuildResult::Success(outcome.to_result(started.elapsed()))
                    .to_json(result::MAX_BYTES),
            );
            if mode != progress::Mode::Quiet {
                eprintln!(
                    "image {} ({} steps, {} cached)",
                    outcome.manifest_digest, outcome.steps, outcome.cached
                );
                for name in outcome.push.iter().flat_map(|p| &p.pushed) {
                    eprintln!("pushed {name}");
                }
            }
            if !to_stdout {
                println!("{}", outcome.manifest_digest);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let redactor = request.secret_redactor();
            eprintln!("error: {}", redactor.redact(&e.to_string()));
            let mut failure = e.to_result();
            failure.redact(&redactor);
            result_file.write(&result::BuildResult::Failure(failure).to_json(result::MAX_BYTES));
            match e {
                build::Error::Build(BuildError::Interrupted(stop)) => {
                    ExitCode::from(kiln_worker::stop::exit_status(stop))
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// How long a stopped build may take to end by itself before the result is written and the
/// process exits anyway (Kubernetes gives a pod 30 s between SIGTERM and SIGKILL by default).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);
