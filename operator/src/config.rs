//! The operator's settings: what a Helm chart sets (a YAML file), with flags and environment
//! variables on top for the few settings people change by hand.
//!
//! Every field has a default, so an empty file (or none) is a working configuration for a test
//! cluster; a production install sets at least the worker image.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kiln_crds::SecurityProfile;
use serde::{Deserialize, Serialize};

/// Everything the controller's decisions depend on, besides the cluster's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// The image of the build and plan pods: Kiln's worker.
    pub worker_image: String,
    /// `imagePullPolicy` of the worker container. Empty means Kubernetes' default.
    pub worker_image_pull_policy: Option<String>,
    /// The security profile of builds that do not name one.
    pub default_security_profile: SecurityProfile,
    /// Whether `securityProfile: privileged` is allowed at all. Off by default: a privileged
    /// build pod is root on its node.
    pub allow_privileged: bool,
    /// Concurrency limits: builds beyond them wait in the `Queued` state.
    pub concurrency: Concurrency,
    /// Defaults for what an ImageBuild leaves out.
    pub defaults: Defaults,
    /// Registries the worker reaches over plain HTTP even when the ImageBuild does not say
    /// `output.insecure` (`HOST[:PORT]`), for example an in-cluster registry without TLS.
    pub insecure_registries: Vec<String>,
    /// How long a plan pod may run before the build fails with `PlanFailed`.
    #[serde(with = "go_duration")]
    pub plan_timeout: Duration,
    /// Extra environment for the worker container (for example a proxy, or the
    /// `KUBERNETES_SERVICE_*` of clusters without kube-proxy: the worker needs none).
    pub worker_env: BTreeMap<String, String>,
    /// Retry delays: the first retry waits `base`, each next one twice as long, at most `max`.
    pub backoff: Backoff,
    /// Cache mounts on PersistentVolumeClaims.
    pub cache_volumes: CacheVolumes,
    /// Garbage collection of cache claims, like `docker builder prune`.
    pub gc: Gc,
}

/// Cache mounts on PersistentVolumeClaims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CacheVolumes {
    /// Keep `RUN --mount=type=cache` on claims that outlive the build pod. Off: caches live in
    /// the pod's emptyDir and die with it.
    pub enabled: bool,
    /// How a rootless worker (uid 1000) gets to write a new claim's root directory:
    /// `initContainer` (an init container with only CAP_CHOWN gives it to uid 1000: works with
    /// any storage, including hostPath, but runs as root) or `fsGroup` (the pod's fsGroup: for
    /// CSI drivers that honour it; nothing runs as root).
    pub ownership: Ownership,
}

impl Default for CacheVolumes {
    fn default() -> Self {
        CacheVolumes {
            enabled: true,
            ownership: Ownership::InitContainer,
        }
    }
}

/// How a claim's root directory is made writable by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Ownership {
    #[default]
    InitContainer,
    FsGroup,
}

/// The garbage collection policy of cache claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Gc {
    /// Delete claims unused for this long (`7d` is written `168h`). Empty: never by age.
    #[serde(with = "opt_go_duration", skip_serializing_if = "Option::is_none")]
    pub keep_duration: Option<Duration>,
    /// Per namespace, delete the least recently used claims beyond this total (a quantity such
    /// as `50Gi`). Empty: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_storage: Option<String>,
    /// How often the collector runs.
    #[serde(with = "go_duration")]
    pub interval: Duration,
}

impl Default for Gc {
    fn default() -> Self {
        Gc {
            keep_duration: Some(Duration::from_secs(7 * 24 * 3600)),
            keep_storage: None,
            interval: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_image: "localhost/kiln-worker:dev".to_string(),
            worker_image_pull_policy: None,
            default_security_profile: SecurityProfile::Rootless,
            allow_privileged: false,
            concurrency: Concurrency::default(),
            defaults: Defaults::default(),
            insecure_registries: Vec::new(),
            plan_timeout: Duration::from_secs(300),
            worker_env: BTreeMap::new(),
            backoff: Backoff::default(),
            cache_volumes: CacheVolumes::default(),
            gc: Gc::default(),
        }
    }
}

/// How many builds run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Concurrency {
    /// Build pods running at once in the whole cluster. 0 means no limit.
    pub cluster: u32,
    /// Build pods running at once in one namespace. 0 means no limit.
    pub per_namespace: u32,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            cluster: 8,
            per_namespace: 4,
        }
    }
}

/// Defaults applied to an ImageBuild's pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Defaults {
    /// Resources of the build container when the ImageBuild sets none.
    pub resources: Option<ResourceRequirements>,
    /// Node labels every build pod must match, merged under the ImageBuild's own.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to every build pod.
    pub tolerations: Vec<Toleration>,
    /// Size limit of the engine's state `emptyDir` (layers, snapshots), such as `20Gi`. Empty
    /// means no limit.
    pub state_size_limit: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret used to push when the ImageBuild names none.
    /// It must exist in the ImageBuild's namespace.
    pub push_secret_name: Option<String>,
    /// Size of a cache claim that the ImageBuild does not size (`cache.volumes[].size`,
    /// `cache.defaultSize`). Empty means 2Gi.
    pub cache_size: Option<String>,
    /// Storage class of cache claims that the ImageBuild does not name. Empty means the
    /// cluster's default.
    pub cache_storage_class_name: Option<String>,
}

/// Retry delays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Backoff {
    /// The first retry's delay.
    #[serde(with = "go_duration")]
    pub base: Duration,
    /// The longest delay.
    #[serde(with = "go_duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: i32) -> Duration {
        let exponent = (next - 2).clamp(0, 16) as u32;
        self.base.saturating_mul(1u32 << exponent).min(self.max)
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a YAML (or JSON) configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a YAML document; an empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Rejects settings that would make every build fail.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.worker_image.trim().is_empty() {
            return Err(ConfigError::Invalid("workerImage must not be empty".into()));
        }
        for (name, value) in [
            ("defaults.stateSizeLimit", &self.defaults.state_size_limit),
            ("defaults.cacheSize", &self.defaults.cache_size),
            ("gc.keepStorage", &self.gc.keep_storage),
        ] {
            if let Some(v) = value {
                kiln_crds::quantity::parse_bytes(v)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        if self.backoff.base.is_zero() {
            return Err(ConfigError::Invalid("backoff.base must be positive".into()));
        }
        Ok(())
    }
}

/// Durations in Go's notation (`30s`, `5m`, `1h30m`), as Kubernetes users write them.
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&kiln_crds::duration::human(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        kiln_crds::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An optional Go duration.
mod opt_go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&kiln_crds::duration::human(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => kiln_crds::duration::parse(t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
        assert_eq!(
            Config::from_yaml("\n# nothing\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn a_helm_style_file_parses() {
        let config = Config::from_yaml(
            r#"
workerImage: registry.example.com/kiln/worker:1.0
allowPrivileged: true
defaultSecurityProfile: userns
concurrency: {cluster: 20, perNamespace: 2}
defaults:
  stateSizeLimit: 20Gi
  nodeSelector: {kubernetes.io/os: linux}
insecureRegistries: ["10.0.0.1:5000"]
planTimeout: 2m
backoff: {base: 5s, max: 1m}
cacheVolumes: {ownership: fsGroup}
gc: {keepDuration: 48h, keepStorage: 20Gi, interval: 1m}
"#,
        )
        .unwrap();
        assert_eq!(config.worker_image, "registry.example.com/kiln/worker:1.0");
        assert!(config.allow_privileged);
        assert_eq!(config.default_security_profile, SecurityProfile::Userns);
        assert_eq!(config.concurrency.cluster, 20);
        assert_eq!(config.concurrency.per_namespace, 2);
        assert_eq!(config.plan_timeout, Duration::from_secs(120));
        assert_eq!(config.backoff.max, Duration::from_secs(60));
        assert_eq!(config.cache_volumes.ownership, Ownership::FsGroup);
        assert!(config.cache_volumes.enabled);
        assert_eq!(
            config.gc.keep_duration,
            Some(Duration::from_secs(48 * 3600))
        );
        assert_eq!(config.gc.keep_storage.as_deref(), Some("20Gi"));
        assert_eq!(
            config
                .defaults
                .node_selector
                .get("kubernetes.io/os")
                .unwrap(),
            "linux"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = Config::from_yaml("workerImag: x\n").unwrap_err();
        assert!(err.contains("workerImag"), "{err}");
        let err = Config::from_yaml("defaults: {stateSizeLimit: lots}\n").unwrap_err();
        assert!(err.contains("stateSizeLimit"), "{err}");
        let err = Config::from_yaml("planTimeout: soon\n").unwrap_err();
        assert!(err.contains("soon") || err.contains("duration"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff::default();
        assert_eq!(b.delay_before(2), Duration::from_secs(10));
        assert_eq!(b.delay_before(3), Duration::from_secs(20));
        assert_eq!(b.delay_before(4), Duration::from_secs(40));
        assert_eq!(b.delay_before(9), Duration::from_secs(300));
        assert_eq!(b.delay_before(100), Duration::from_secs(300));
    }
}
