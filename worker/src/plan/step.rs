//! The executable form of a stage: what the front end hands to the executor.
//!
//! This is the contract between the front end (`dockerfile`, `plan`) and the executor (`solve`
//! and below). Everything here is fully expanded: no `$VAR` is left for the executor to resolve,
//! except inside a shell-form RUN command, which the shell expands. Every type serialises, so a
//! step's definition can be hashed into its cache key and printed by `kiln plan --json`.

use serde::{Deserialize, Serialize};

use crate::image::config::ImageConfig;

/// A position in a Dockerfile, for errors, progress and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The file as the user named it, such as `Dockerfile` or `build/Dockerfile.prod`.
    pub file: String,
    /// 1-based line of the instruction's first character.
    pub line: u32,
    /// 1-based column of the instruction's first character.
    pub column: u32,
    /// 1-based last line of the instruction (after continuations and heredocs).
    pub end_line: u32,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and an empty config.
    Scratch,
    /// `FROM <stage>`: another stage of the plan, by its index in [`super::Plan::stages`].
    Stage(usize),
    /// `FROM <image>`: an image reference, expanded, exactly as the Dockerfile spells it (not
    /// normalised), so that `--build-context NAME=...` can match it literally.
    Image(String),
}

/// A stage lowered for execution, given its base image's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoweredStage {
    /// The steps, in order, including the base image's ONBUILD triggers first. Every step gets
    /// a history entry; ONBUILD itself has none in BuildKit, so it is not a step (its trigger is
    /// in `config.on_build`).
    pub steps: Vec<Step>,
    /// The image config at the end of the stage.
    pub config: ImageConfig,
    /// The image's top-level `author`, set by MAINTAINER (BuildKit writes it there, not as a
    /// label). Empty when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
}

/// One instruction, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub location: Location,
    /// The instruction as progress shows it, without the `[stage 2/5]` prefix: keyword and
    /// arguments on one line, flags included, as BuildKit prints `[stage 2/5] RUN make`. Like
    /// BuildKit, variables whose value is known are expanded (in RUN, unknown ones are left as
    /// written); a heredoc RUN ends with ` (first line...)`; ONBUILD triggers start with
    /// `ONBUILD `.
    pub display: String,
    /// The `created_by` of this step's history entry, exactly as BuildKit writes it
    /// (`RUN /bin/sh -c make # buildkit`, `COPY app /app # buildkit`, `ENV A=b`, `WORKDIR /src`).
    /// A few texts differ between BuildKit versions; `PlanOptions::history` picks current
    /// BuildKit's (the default) or v0.8's, which recorded `tests/reference`.
    pub created_by: String,
    pub op: Op,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// The step changes only the image config (ENV, LABEL, CMD, USER, ...); its history entry
    /// has `empty_layer: true`.
    Config,
    /// `RUN`.
    Run(Run),
    /// `COPY` or `ADD`.
    Copy(Copy),
    /// `WORKDIR`: create the directory if it is missing, owned by `user` as BuildKit does.
    Workdir { path: String, user: String },
}

/// A RUN step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The argv to execute. Shell form is already wrapped in the shell (`["/bin/sh", "-c",
    /// "make all"]`); exec form is as written.
    pub args: Vec<String>,
    /// Files the step needs besides its mounts, such as a heredoc script with a shebang, which
    /// BuildKit runs as a file. Mounted read-only at `path` for the step only.
    pub files: Vec<InlineFile>,
    /// The complete environment of the process: the image's `Env`, then the build args in
    /// scope that ENV does not shadow, in BuildKit's order. `PATH` is always present.
    pub env: Vec<String>,
    /// The user to run as, unresolved (`""` means root), such as `app`, `1000:1000` or `app:staff`.
    pub user: String,
    /// The working directory, absolute.
    pub workdir: String,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub security: Security,
}

/// A file created for one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The builder's default: a network namespace with the host's connectivity.
    #[default]
    Default,
    /// A network namespace with loopback only.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Sandbox,
    /// Needs `--allow security.insecure`.
    Insecure,
}

/// Where a mount or a copy reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Input {
    /// The build context.
    Context,
    /// A stage of the plan, by index in [`super::Plan::stages`].
    Stage(usize),
    /// An image (or a named build context), as written.
    Image(String),
}

/// `RUN --mount`, with BuildKit's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Mount {
    Bind {
        target: String,
        from: Input,
        /// Path inside `from`; default `/`.
        source: String,
        /// `rw`: writes are allowed and discarded after the step.
        readwrite: bool,
    },
    Cache {
        /// Defaults to `target`.
        id: String,
        target: String,
        readonly: bool,
        sharing: Sharing,
        /// Seed of a new cache.
        from: Option<Input>,
        /// Path inside `from`; default `/`.
        source: String,
        /// Default 0o755.
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        target: String,
        /// Bytes; `None` means the kernel's default.
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// Default `/run/secrets/<id>` unless `env` is set and `target` is not.
        target: Option<String>,
        env: Option<String>,
        required: bool,
        /// Default 0o400.
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        /// Default `default`.
        id: String,
        /// Default `/run/buildkit/ssh_agent.N`, N counting the step's ssh mounts from 0.
        target: String,
        required: bool,
        /// Default 0o600.
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// A COPY or ADD step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    pub is_add: bool,
    pub from: Input,
    pub sources: Vec<CopySource>,
    /// Expanded. Relative to `workdir` unless absolute; a trailing `/` means a directory.
    pub dest: String,
    /// The stage's working directory when the step runs.
    pub workdir: String,
    /// `--chown`, expanded, unresolved: `user`, `user:group`, `uid:gid`.
    pub chown: Option<String>,
    /// `--chmod`, expanded: octal (`0755`) or symbolic (`u+x`).
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// `ADD --checksum`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// Extract local tar archives: ADD's default, off with `ADD --unpack=false`; never for COPY.
    pub unpack: bool,
    /// Extract a downloaded archive (`ADD --unpack <url>`, dockerfile 1.17). Without the flag a
    /// download is saved as a file, as BuildKit does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpack_downloads: bool,
}

/// One source of a COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CopySource {
    /// A path in `from`, possibly with wildcards.
    Path(String),
    /// `ADD https://...`.
    Url(String),
    /// `ADD git@...` or `ADD https://....git#ref`.
    Git(String),
    /// `COPY <<EOF dest`: a file named `name` with this content.
    HereDoc { name: String, content: String },
}
