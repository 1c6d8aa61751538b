//! The `ImageBuild` custom resource, `kiln.dev/v1alpha1`.
//!
//! Every doc comment on a field becomes the description that `kubectl explain` prints, so they
//! are written for the user who applies the resource, not for the reader of this code.
//!
//! The schema rejects what a structural schema can say (one source, a non-empty image, known
//! enum values, non-negative sizes, unique ids through `x-kubernetes-list-type: map`). CEL rules
//! (`x-kubernetes-validations`) add the cross-field rules on clusters that enforce them. The
//! operator calls [`crate::validate()`] for everything, so clusters that ignore CEL (before 1.25)
//! still reject a bad build, with a condition instead of an API error.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// A build of one container image from a Dockerfile, pushed to an OCI registry.
///
/// The same spec always gives the same build: every input (source revision, build args,
/// secrets by id) is named in the spec, and the operator records what it resolved in the status.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "ImageBuild",
    plural = "imagebuilds",
    singular = "imagebuild",
    shortname = "ib",
    category = "kiln",
    namespaced,
    status = "ImageBuildStatus",
    derive = "PartialEq",
    cel,
    doc = "ImageBuild builds a container image from a Dockerfile with Kiln's rootless engine and pushes it to an OCI registry.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the build is in its life cycle"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.output.image",
        description = "The image reference the build pushes"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.shortDigest",
        description = "The first 12 hex digits of the pushed manifest digest"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Duration",
        type_ = "string",
        json_path = ".status.duration",
        description = "How long the build ran"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1,
        description = "A human-readable summary of the last transition"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.source.inline) || self.dockerfile in self.source.inline.files"
).message("spec.source.inline.files must contain the file named by spec.dockerfile"))]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildSpec {
    /// Where the build context comes from. Exactly one of git, configMap, inline, url or pvc
    /// must be set.
    pub source: BuildSource,

    /// Path of the Dockerfile inside the context. A `<dockerfile>.dockerignore` next to it takes
    /// precedence over the context's `.dockerignore`, as in BuildKit.
    #[serde(default = "default_dockerfile")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new(
        "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')"
    ).message("dockerfile must be a relative path inside the context"))]
    pub dockerfile: String,

    /// The stage to build (`docker build --target`). Empty means the last stage of the
    /// Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub target: Option<String>,

    /// Values for the Dockerfile's `ARG` instructions (`docker build --build-arg`). Names are
    /// unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub build_args: Vec<BuildArg>,

    /// Labels added to the image config, as `docker build --label` does. They override labels of
    /// the same name set by the Dockerfile.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Where the built image is pushed.
    pub output: BuildOutput,

    /// `kubernetes.io/dockerconfigjson` Secrets used to pull base images. The push secret is also
    /// tried for pulls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secret_refs: Vec<LocalObjectReference>,

    /// Build secrets, served to `RUN --mount=type=secret,id=<id>`. A secret lives only in a
    /// tmpfs for the duration of the step that mounts it and never enters the image, its
    /// history, the cache or the logs. Ids are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub secrets: Vec<BuildSecret>,

    /// SSH keys, served by an in-process agent to `RUN --mount=type=ssh,id=<id>`. The private key
    /// never enters the image. Ids are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub ssh: Vec<BuildSsh>,

    /// Cache settings: persistent volumes for `RUN --mount=type=cache`, the registry layer cache,
    /// and whether to use any cache at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,

    /// The longest the build may run, as a duration such as `30m` or `1h30m`. When it expires the
    /// build pod is stopped and the build fails with reason `DeadlineExceeded`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[schemars(length(max = 64))]
    pub timeout: String,

    /// How many times a failed build pod is retried before the build is marked Failed. A
    /// Dockerfile error is never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,

    /// How the build pod is isolated. `rootless` (the default) runs as an unprivileged user and
    /// works on clusters of any version. `userns` runs as root inside the pod's own user
    /// namespace (`hostUsers: false`, Kubernetes 1.33 and later). `privileged` runs a privileged
    /// container and is an explicit opt-in for nodes where neither works.
    #[serde(default)]
    pub security_profile: SecurityProfile,

    /// Compute resources of the build container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the build pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the build pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// The service account the build pod runs as. The build pod never mounts its token: Kiln's
    /// worker needs no Kubernetes API access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_string()
}

fn default_timeout() -> String {
    "30m".to_string()
}

/// The build context. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.git), has(self.configMap), has(self.inline), has(self.url), has(self.pvc)].exists_one(x, x)"
).message("exactly one of git, configMap, inline, url or pvc must be set"))]
pub struct BuildSource {
    /// A Git repository, cloned at the given revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,

    /// A ConfigMap whose keys are file paths of the context (`/` is written as `__` in keys,
    /// since ConfigMap keys cannot hold `/`). Suits small contexts; the limit is 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,

    /// Files written in the ImageBuild itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineSource>,

    /// A tar archive (optionally gzip-, bzip2-, xz- or zstd-compressed) fetched over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlSource>,

    /// A directory on a PersistentVolumeClaim, mounted read-only into the build pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
}

/// A Git repository as the build context.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository URL: `https://`, `http://`, `ssh://`, `git://`, or the scp-like
    /// `user@host:path` form.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.matches('^(https?|ssh|git)://[^/]+') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:.+')"
    ).message("url must be an https, http, ssh or git URL, or user@host:path"))]
    pub url: String,

    /// A branch, tag or full commit hash. Empty means the remote's default branch. The resolved
    /// commit is recorded in `status.revision`, so a build is reproducible from its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub revision: Option<String>,

    /// A directory inside the repository to use as the context root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = kube::core::Rule::new(
        "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')"
    ).message("subPath must be a relative path that stays inside the repository"))]
    pub sub_path: Option<String>,

    /// A Secret with the credentials to clone: keys `username` and `password` (or `token`) for
    /// https (type `kubernetes.io/basic-auth` fits), or `ssh-privatekey` and optionally
    /// `known_hosts` for ssh (type `kubernetes.io/ssh-auth` fits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// A ConfigMap as the build context.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap, in the ImageBuild's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Context files written inline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InlineSource {
    /// Files of the context: each key is a relative path, each value the file's content.
    #[schemars(extend("minProperties" = 1))]
    pub files: BTreeMap<String, String>,
}

/// A tar archive as the build context.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlSource {
    /// An `https://` or `http://` URL of a tar archive.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.startsWith('https://') || self.startsWith('http://')"
    ).message("url must start with https:// or http://"))]
    pub url: String,

    /// The expected sha256 of the archive, as 64 lower-case hex digits. When set, a download with
    /// another digest fails the build, which makes a URL context reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub sha256: Option<String>,
}

/// A PersistentVolumeClaim as the build context.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    /// Name of the PersistentVolumeClaim, in the ImageBuild's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,

    /// A directory inside the volume to use as the context root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = kube::core::Rule::new(
        "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')"
    ).message("subPath must be a relative path that stays inside the volume"))]
    pub sub_path: Option<String>,
}

/// A value for a Dockerfile `ARG`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildArg {
    /// The name of the ARG.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^=\s]+$"))]
    pub name: String,

    /// The value; empty when unset. Build args are recorded in the image history like BuildKit
    /// records them, so never pass a secret here: use `secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Where and how the image is pushed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutput {
    /// The image reference to push, such as `registry.example.com/team/app:1.2.3`. A missing tag
    /// means `latest`. A digest is not allowed: the digest is the build's result.
    #[schemars(length(min = 1, max = 4096))]
    #[schemars(regex(pattern = r"^[^\s@]+$"))]
    #[x_kube(validation = kube::core::Rule::new("!self.contains('@')").message("output.image must not contain a digest: the digest is the build's result"))]
    pub image: String,

    /// More tags to push the same manifest under, in the same repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")))]
    pub additional_tags: Vec<String>,

    /// A `kubernetes.io/dockerconfigjson` Secret with the credentials to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_ref: Option<LocalObjectReference>,

    /// Talk to the registry over plain HTTP. Only for registries on a trusted network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,

    /// Layer compression. `gzip` (the default) works everywhere; `zstd` is faster and smaller but
    /// needs a recent runtime (containerd 1.5+, Docker 23+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Layer compression.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip at level 6, readable by every runtime.
    #[default]
    Gzip,
    /// zstd, multithreaded.
    Zstd,
    /// No compression.
    Uncompressed,
}

/// A reference to an object in the ImageBuild's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the ImageBuild's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// The key inside the Secret. For `secrets`, it defaults to the secret's id; for `ssh`, to
    /// `ssh-privatekey`, the key of a `kubernetes.io/ssh-auth` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// A build secret for `RUN --mount=type=secret`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildSecret {
    /// The id that `RUN --mount=type=secret,id=<id>` names.
    #[schemars(length(min = 1, max = 253))]
    pub id: String,

    /// The Secret key that holds the value.
    pub secret_ref: SecretKeyRef,
}

/// An SSH key for `RUN --mount=type=ssh`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildSsh {
    /// The id that `RUN --mount=type=ssh,id=<id>` names. A mount without an id uses `default`.
    #[schemars(length(min = 1, max = 253))]
    pub id: String,

    /// The Secret key that holds the private key, in OpenSSH format (what `ssh-keygen` writes)
    /// and not passphrase protected.
    pub secret_ref: SecretKeyRef,

    /// `known_hosts` lines written to `/etc/ssh/ssh_known_hosts` for steps that mount this key,
    /// so that `ssh` can verify the server without `StrictHostKeyChecking=no`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

/// Cache settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Persistent volumes for `RUN --mount=type=cache`, by cache id. Each cache id gets its own
    /// PersistentVolumeClaim that outlives the build, so the next build (on any pod) finds the
    /// cache warm. Ids not listed here get a volume with the defaults below. Ids are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub volumes: Vec<CacheVolume>,

    /// Size of cache volumes not listed in `volumes`. Defaults to 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::non_negative_quantity")]
    pub default_size: Option<Quantity>,

    /// Storage class of cache volumes not listed in `volumes`. Empty means the cluster's
    /// default storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub default_storage_class_name: Option<String>,

    /// Export and import the layer cache to and from a registry, so that ephemeral build pods
    /// still get cache hits (`--cache-to/--cache-from type=registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryCache>,

    /// Build every step afresh, ignoring the layer cache (`docker build --no-cache`). Cache
    /// mounts are still mounted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_cache: bool,
}

/// A persistent volume for one cache id.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheVolume {
    /// The cache id, as `RUN --mount=type=cache,id=<id>` names it. A cache mount without an id
    /// uses its target path as the id.
    #[schemars(length(min = 1, max = 512))]
    pub id: String,

    /// Requested size of the volume, such as `10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::non_negative_quantity")]
    pub size: Option<Quantity>,

    /// Storage class of the volume. Empty means the cluster's default storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,

    /// Access mode of the volume. `ReadWriteMany` lets builds on several nodes share a
    /// `sharing=shared` cache at once; with `ReadWriteOnce` (the default) they are scheduled on the
    /// node that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
}

/// A PersistentVolume access mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessMode {
    /// Mounted read-write by one node.
    #[default]
    ReadWriteOnce,
    /// Mounted read-write by many nodes.
    ReadWriteMany,
    /// Mounted read-write by one pod.
    ReadWriteOncePod,
}

/// The registry layer cache.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCache {
    /// The cache image reference, such as `registry.example.com/team/app:buildcache`. The push
    /// secret is used to write it.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 4096), regex(pattern = r"^[^\s@]+$"))]
    pub reference: String,

    /// `min` exports only the layers of the final image; `max` also exports the layers of
    /// intermediate stages, which gives more hits for multi-stage builds.
    #[serde(default)]
    pub mode: CacheMode,
}

/// How much of the build the registry cache exports.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Only the layers of the result.
    #[default]
    Min,
    /// Every layer of every stage the build ran.
    Max,
}

/// How the build pod is isolated.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecurityProfile {
    /// An unprivileged user (uid 1000) with its own user namespaces. Works on any cluster.
    #[default]
    Rootless,
    /// Root inside the pod's own user namespace (`hostUsers: false`). Kubernetes 1.33+.
    Userns,
    /// A privileged container. An explicit opt-in.
    Privileged,
}

/// Where an ImageBuild is in its life cycle.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, waiting for the operator (or for a locked cache) to start it.
    #[default]
    Pending,
    /// The Dockerfile and the source are being resolved into a plan.
    Planning,
    /// The build pod is running.
    Building,
    /// The image was pushed; `status.image` holds its digest.
    Succeeded,
    /// The build failed; the Ready condition and `status.message` say why.
    Failed,
    /// The build was stopped before it finished.
    Cancelled,
}

impl Phase {
    /// True once the build will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// The observed state of an ImageBuild. Written by the operator only.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildStatus {
    /// Where the build is in its life cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Standard conditions. `Ready` is True once the image is pushed; its reason says why a build
    /// is not (yet) ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The run this status describes: `g<generation>`, with a suffix when the
    /// `kiln.dev/rebuild` annotation asked to build the same spec again. Build pods are named
    /// `<name>-<run>-<attempt>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,

    /// When the build pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the build reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// How long the build ran, such as `1m23s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,

    /// The pushed image, pinned by digest: `registry.example.com/team/app@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// The digest of the pushed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// The first 12 hex digits of the digest, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,

    /// The resolved source revision, such as the Git commit a branch pointed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,

    /// The build pod of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// The current attempt, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i32>,

    /// A human-readable summary of the last transition. Never holds secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The cache volumes the build mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheStatus>,

    /// Step counts of the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepStats>,
}

/// A cache volume a build mounts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheStatus {
    /// The cache id.
    pub id: String,
    /// The PersistentVolumeClaim that holds it.
    pub claim_name: String,
    /// The sharing mode the Dockerfile asks for: shared, private or locked.
    pub sharing: String,
    /// Whether the claim existed before this build (the cache was warm) or was created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<bool>,
}

/// How many steps a build had and how many came from the cache.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepStats {
    /// Steps of the stages the build needed.
    pub total: i32,
    /// Steps answered from the cache.
    pub cached: i32,
}
