//! The worker's result: the one JSON object that `kiln build --result-file` and
//! `kiln plan --result-file` write for the operator (`docs/worker-result.md`).
//!
//! In a pod the file is `/dev/termination-log`. The kubelet keeps at most 4096 bytes of a
//! container's termination message and cuts the rest, which would leave the operator with
//! broken JSON. So every object here is written by [`BuildResult::to_json`] (or
//! [`PlanResult::to_json`]), which shortens free text (the message, the log tail) and drops
//! list entries until the object fits in [`MAX_BYTES`]; it never cuts the JSON itself.
//!
//! A failure carries a [`Reason`]: a stable name that the engine derives from its typed
//! errors (`kiln_worker::build::Error::reason`), never from the text of a message. The
//! operator puts it into conditions, Events and metric labels.
//!
//! This module is serde types and pure functions only, outside the `executor` feature: the
//! operator reads the result with these same types.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plan::step::{Base, Input, Sharing};
use crate::plan::summary::Summary;

/// The most a result may take: the kubelet's limit for a termination message, in bytes.
pub const MAX_BYTES: usize = 4096;

/// The version of the build result's shape.
pub const BUILD_API_VERSION: &str = "kiln.dev/result/v1";

/// The version of the compact plan's shape.
pub const PLAN_API_VERSION: &str = "kiln.dev/plan-compact/v1";

/// What a shortened text ends or starts with.
const ELLIPSIS: &str = "…";

/// A failure's message is cut to this many bytes before its log tail is cut at all.
const MESSAGE_CAP: usize = 1024;

/// Why a build (or a plan) failed. The names are part of the contract with the operator: add
/// new ones, never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The Dockerfile does not parse or plan, or cannot be read; `file`, `line` and `column`
    /// say where.
    InvalidDockerfile,
    /// A step failed: `line` is its Dockerfile line, `exitCode` the process's exit code when
    /// it ran and exited non-zero, `logTail` the last lines it printed.
    StepFailed,
    /// A base image (or a lazily pulled layer) could not be pulled.
    PullFailed,
    /// The image (or a `--cache-to` registry cache) could not be pushed.
    PushFailed,
    /// A registry refused the credentials (401, 403), or they could not be read.
    RegistryAuth,
    /// A secret or ssh id the Dockerfile requires (`required=true`) was not provided, or its
    /// source could not be read.
    MissingSecret,
    /// The build context (or a named context) does not exist.
    MissingContext,
    /// The build context could not be read or unpacked.
    ContextFailed,
    /// A write failed with ENOSPC or EDQUOT.
    DiskFull,
    /// The build ran longer than `--timeout`.
    Timeout,
    /// The build was stopped by SIGTERM or SIGINT.
    Cancelled,
    /// A command-line option is invalid (such as a `--no-cache-filter` stage that does not
    /// exist).
    InvalidArgument,
    /// Anything else: a failure of the engine or of its environment.
    Internal,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 13] = [
        Reason::InvalidDockerfile,
        Reason::StepFailed,
        Reason::PullFailed,
        Reason::PushFailed,
        Reason::RegistryAuth,
        Reason::MissingSecret,
        Reason::MissingContext,
        Reason::ContextFailed,
        Reason::DiskFull,
        Reason::Timeout,
        Reason::Cancelled,
        Reason::InvalidArgument,
        Reason::Internal,
    ];

    /// The stable name, as it appears in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidDockerfile => "InvalidDockerfile",
            Reason::StepFailed => "StepFailed",
            Reason::PullFailed => "PullFailed",
            Reason::PushFailed => "PushFailed",
            Reason::RegistryAuth => "RegistryAuth",
            Reason::MissingSecret => "MissingSecret",
            Reason::MissingContext => "MissingContext",
            Reason::ContextFailed => "ContextFailed",
            Reason::DiskFull => "DiskFull",
            Reason::Timeout => "Timeout",
            Reason::Cancelled => "Cancelled",
            Reason::InvalidArgument => "InvalidArgument",
            Reason::Internal => "Internal",
        }
    }

    /// Whether running the same build again may succeed without a change to its spec: a
    /// registry or the network may recover, another node may have disk. A Dockerfile error,
    /// a missing secret, refused credentials or a timeout will fail the same way again.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Reason::StepFailed
                | Reason::PullFailed
                | Reason::PushFailed
                | Reason::ContextFailed
                | Reason::DiskFull
                | Reason::Internal
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The constant `ok` field: `Flag<true>` only reads and writes `true`, so an untagged enum
/// tells a success from a failure by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag<const B: bool>;

impl<const B: bool> Serialize for Flag<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(B)
    }
}

impl<'de, const B: bool> Deserialize<'de> for Flag<B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? == B {
            Ok(Flag)
        } else {
            Err(serde::de::Error::custom(format!("expected ok: {B}")))
        }
    }
}

/// What `kiln build --result-file` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BuildResult {
    Success(Success),
    Failure(Failure),
}

/// A build that produced an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Success {
    pub ok: Flag<true>,
    pub api_version: String,
    /// The image manifest's digest, `sha256:…`.
    pub digest: String,
    /// `name@digest`: the first pushed name, else the first `-t` name; `null` for an image
    /// without a name.
    pub image: Option<String>,
    /// Every name pushed (`registry/repository:tag`), in order.
    pub pushed: Vec<String>,
    /// How many pushed names were left out of `pushed` to fit the size limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pushed_omitted: usize,
    /// The source revision the context came from (a git commit), when known.
    pub revision: Option<String>,
    pub steps: Steps,
    pub cache: CacheStats,
    /// What the push moved, when the build pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushStats>,
    pub duration_seconds: f64,
}

/// How many filesystem steps the build had, and how many came from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    pub total: usize,
    pub cached: usize,
}

/// The build cache's part in the build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Steps answered from the cache (local or imported).
    pub hits: usize,
    /// Steps that ran.
    pub misses: usize,
    /// Hits answered from an imported cache (`--cache-from`).
    pub imported: usize,
    /// `--cache-to` destinations written.
    pub exported: usize,
}

/// Blobs moved by the push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushStats {
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

/// A build or a plan that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub ok: Flag<false>,
    pub api_version: String,
    pub reason: Reason,
    /// What went wrong, for a person; may be shortened to fit.
    pub message: String,
    /// The Dockerfile, as the build named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based Dockerfile line of the error or of the failed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The failed step as progress shows it (`RUN make`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The exit code of a step's process that ran and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines the failed step printed, `\n`-separated, oldest first; shortened from the
    /// front to fit, and with every provided secret's value replaced by `****`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

impl Failure {
    /// A failure with a reason and a message and nothing else.
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            ok: Flag,
            api_version: BUILD_API_VERSION.into(),
            reason,
            message: message.into(),
            file: None,
            line: None,
            column: None,
            step: None,
            exit_code: None,
            log_tail: None,
        }
    }

    /// Replace every occurrence of a secret value in the text fields by `****`.
    pub fn redact(&mut self, secrets: &Redactor) {
        self.message = secrets.redact(&self.message);
        if let Some(t) = &mut self.log_tail {
            *t = secrets.redact(t);
        }
        if let Some(s) = &mut self.step {
            *s = secrets.redact(s);
        }
    }

    /// Shorten the text by about `excess` bytes; false when nothing is left to shorten. A long
    /// message is first cut to [`MESSAGE_CAP`]; then the message and the log tail give up
    /// bytes in proportion to their lengths (the message keeps its start, the tail its end);
    /// then the step and the file go.
    fn shrink(&mut self, excess: usize) -> bool {
        if self.message.len() > MESSAGE_CAP {
            let over = self.message.len() - MESSAGE_CAP;
            self.message = cut_back(&self.message, over + ELLIPSIS.len());
            return true;
        }
        let tail = self.log_tail.as_deref().map_or(0, str::len);
        let message = self.message.len();
        let total = tail + message;
        let need = excess + ELLIPSIS.len();
        let mut cut = false;
        if let Some(t) = &self.log_tail {
            let share = (need * tail).div_ceil(total) + ELLIPSIS.len();
            self.log_tail = (share < tail).then(|| cut_front(t, share));
            cut = true;
        }
        if message > ELLIPSIS.len() {
            let share = (need * message).div_ceil(total) + ELLIPSIS.len();
            self.message = cut_back(&self.message, share);
            cut = true;
        }
        if cut {
            return true;
        }
        for field in [&mut self.step, &mut self.file] {
            if field.is_some() {
                *field = None;
                return true;
            }
        }
        false
    }
}

impl BuildResult {
    /// The JSON text, within `max` bytes.
    pub fn to_json(&self, max: usize) -> String {
        match self {
            BuildResult::Failure(f) => fit(f.clone(), max, Failure::shrink),
            BuildResult::Success(s) => fit(s.clone(), max, |s: &mut Success, _| {
                if s.pushed.pop().is_some() {
                    s.pushed_omitted += 1;
                    true
                } else if s.push.is_some() {
                    s.push = None;
                    true
                } else {
                    false
                }
            }),
        }
    }
}

/// What `kiln plan --result-file` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanResult {
    Plan(CompactPlan),
    Failure(Failure),
}

impl PlanResult {
    /// The JSON text, within `max` bytes.
    pub fn to_json(&self, max: usize) -> String {
        match self {
            PlanResult::Failure(f) => fit(f.clone(), max, Failure::shrink),
            PlanResult::Plan(p) => fit(p.clone(), max, |p: &mut CompactPlan, _| p.shrink()),
        }
    }
}

/// The plan in the few fields the operator needs before a build starts, small enough for a
/// termination message. `kiln plan --json` prints the full plan (`docs/plan-json.md`) to
/// standard output; this is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactPlan {
    pub ok: Flag<true>,
    pub api_version: String,
    pub dockerfile: String,
    pub target: StageRef,
    /// The stages the target needs, in build order.
    pub stages: Vec<StageRef>,
    /// Every image the build pulls, in order of first use.
    pub base_images: Vec<String>,
    /// The distinct cache mounts of the needed stages.
    pub caches: Vec<CacheMount>,
    /// The distinct secret ids; `required` when any use requires it.
    pub secrets: Vec<IdUse>,
    /// The distinct ssh ids; `required` when any use requires it.
    pub ssh: Vec<IdUse>,
    /// The commit a Git context resolved to: the operator builds exactly this commit and
    /// records it in `status.revision`. Absent for other contexts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Lists were cut to fit: the full plan is in the container's log (standard output of
    /// `kiln plan --json`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A stage, by index and name, and what it starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
}

/// A cache mount as its cache key needs it (BuildKit: id, sharing, the seed, owner and mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMount {
    pub id: String,
    pub target: String,
    pub sharing: Sharing,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Input>,
    /// The path in `from` that seeds a new cache; left out when it is `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A secret or ssh id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdUse {
    pub id: String,
    pub required: bool,
}

impl CompactPlan {
    pub fn from_summary(s: &Summary) -> CompactPlan {
        let mut caches: Vec<CacheMount> = Vec::new();
        for c in &s.caches {
            let m = CacheMount {
                id: c.id.clone(),
                target: c.target.clone(),
                sharing: c.sharing,
                uid: c.uid,
                gid: c.gid,
                mode: c.mode,
                from: c.from.clone(),
                source: c
                    .from
                    .as_ref()
                    .filter(|_| c.source != "/")
                    .map(|_| c.source.clone()),
            };
            if !caches.contains(&m) {
                caches.push(m);
            }
        }
        let ids = |uses: &mut dyn Iterator<Item = (&String, bool)>| {
            let mut out: Vec<IdUse> = Vec::new();
            for (id, required) in uses {
                match out.iter_mut().find(|u| &u.id == id) {
                    Some(u) => u.required |= required,
                    None => out.push(IdUse {
                        id: id.clone(),
                        required,
                    }),
                }
            }
            out
        };
        CompactPlan {
            ok: Flag,
            api_version: PLAN_API_VERSION.into(),
            dockerfile: s.dockerfile.clone(),
            target: StageRef {
                index: s.target.index,
                name: s.target.name.clone(),
                base: None,
            },
            stages: s
                .build_order
                .iter()
                .filter_map(|&i| s.stages.get(i))
                .map(|st| StageRef {
                    index: st.index,
                    name: st.name.clone(),
                    base: Some(st.base.clone()),
                })
                .collect(),
            base_images: s.base_images.clone(),
            caches,
            secrets: ids(&mut s.secrets.iter().map(|u| (&u.id, u.required))),
            ssh: ids(&mut s.ssh.iter().map(|u| (&u.id, u.required))),
            revision: None,
            truncated: false,
        }
    }

    /// Drop what the operator can best do without: stage bases, stages, base images, then
    /// caches (a build without its cache volume still runs), and secret and ssh ids last (a
    /// build without them fails).
    fn shrink(&mut self) -> bool {
        self.truncated = true;
        if let Some(s) = self.stages.iter_mut().find(|s| s.base.is_some()) {
            s.base = None;
            return true;
        }
        self.stages.pop().is_some()
            || self.base_images.pop().is_some()
            || self.caches.pop().is_some()
            || self.ssh.pop().is_some()
            || self.secrets.pop().is_some()
    }
}

/// Removes secret values from text.
///
/// Each value is replaced trimmed of surrounding whitespace (a file with a final newline is
/// usually echoed without it, and the text around it keeps its line breaks), and line by line
/// when it spans lines, so that a multi-line value (a key) cut by the log tail's window is
/// still hidden.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a value that contains another is replaced whole.
    needles: Vec<String>,
}

/// What a secret value becomes.
pub const REDACTED: &str = "****";

impl Redactor {
    pub fn new<V: AsRef<[u8]>>(values: impl IntoIterator<Item = V>) -> Redactor {
        let mut needles: Vec<String> = Vec::new();
        for v in values {
            let text = String::from_utf8_lossy(v.as_ref()).into_owned();
            let mut add = |s: &str| {
                if !s.is_empty() && !needles.iter().any(|n| n == s) {
                    needles.push(s.to_string());
                }
            };
            add(text.trim());
            if text.trim().contains('\n') {
                for line in text.lines().map(str::trim) {
                    add(line);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { needles }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Serialize `value`, shrinking it with `shrink(value, excess)` until it fits in `max` bytes.
/// If nothing is left to shrink, an `Internal` failure says so (that is always small).
fn fit<T: Serialize>(
    mut value: T,
    max: usize,
    mut shrink: impl FnMut(&mut T, usize) -> bool,
) -> String {
    loop {
        let text = serde_json::to_string(&value).unwrap_or_default();
        if !text.is_empty() && text.len() <= max {
            return text;
        }
        let excess = text.len().saturating_sub(max).max(1);
        if !shrink(&mut value, excess) {
            let f = Failure::new(
                Reason::Internal,
                "the result does not fit in the termination message",
            );
            return serde_json::to_string(&f).unwrap_or_default();
        }
    }
}

/// `text` without about `n` bytes at its start (at a char boundary, and at a line start when
/// one is near), marked with `…`.
fn cut_front(text: &str, n: usize) -> String {
    let mut at = n.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    let rest = &text[at..];
    // Whole lines read better; skip to the next line if that costs little.
    let rest = match rest.find('\n') {
        Some(i) if i < 80 && i + 1 < rest.len() => &rest[i + 1..],
        _ => rest,
    };
    format!("{ELLIPSIS}{rest}")
}

/// `text` without about `n` bytes at its end (at a char boundary), marked with `…`.
fn cut_back(text: &str, n: usize) -> String {
    let mut at = text.len().saturating_sub(n);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..at])
}

#[cfg(test)]
#[path = "result_tests.rs"]
mod tests;
