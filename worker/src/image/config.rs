//! The image configuration: the `config` object of an OCI image config, with Docker's
//! extensions (`Healthcheck`, `OnBuild`, `Shell`) that BuildKit also writes.
//!
//! Field names and order follow BuildKit's `DockerOCIImageConfig` (OCI `ImageConfig` followed by
//! Docker's extension fields), and every field is omitted when empty, as Go's `omitempty` does,
//! so that the JSON we write reads like BuildKit's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The runtime configuration an image carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `USER`: user (and optionally group), by name or id.
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `EXPOSE`: `"80/tcp"` → `{}`.
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`: `KEY=value` entries, in the order they were first set.
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `ENTRYPOINT`. `None` means unset. Like Go's `omitempty`, an empty list is not written.
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "none_or_empty")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`. `None` means unset. Like Go's `omitempty`, an empty list is not written.
    #[serde(rename = "Cmd", default, skip_serializing_if = "none_or_empty")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: path → `{}`.
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// `LABEL`. (BuildKit writes `MAINTAINER` to the image's top-level `author`, not here; see
    /// `LoweredStage::author`.)
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    /// Set by BuildKit on every `CMD` (a Docker image spec field kept for backward
    /// compatibility), and kept when round-tripping base images.
    #[serde(rename = "ArgsEscaped", default, skip_serializing_if = "is_false")]
    pub args_escaped: bool,
    /// `HEALTHCHECK`.
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers, as the raw instruction text after `ONBUILD `.
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    /// `SHELL`.
    #[serde(rename = "Shell", default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

/// The empty JSON object that `ExposedPorts` and `Volumes` map to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `HEALTHCHECK`, with durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(rename = "Test", default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn none_or_empty(v: &Option<Vec<String>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl ImageConfig {
    /// The value of an environment variable, as the image sets it.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// Set an environment variable, replacing an earlier value in place (as Docker does) or
    /// appending a new one.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = entry,
            None => self.env.push(entry),
        }
    }
}

/// The `PATH` BuildKit gives a RUN step when neither the image nor the Dockerfile sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell of shell-form instructions when no `SHELL` is set.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_buildkit_with_empty_fields_omitted() {
        let mut c = ImageConfig::default();
        assert_eq!(serde_json::to_string(&c).unwrap(), "{}");
        c.env_set("PATH", "/bin");
        c.env_set("A", "1");
        c.env_set("PATH", "/usr/bin");
        c.cmd = Some(vec!["sh".into()]);
        c.exposed_ports.insert("80/tcp".into(), Empty {});
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/bin","A=1"],"Cmd":["sh"]}"#
        );
        assert_eq!(c.env_get("PATH"), Some("/usr/bin"));
        assert_eq!(c.env_get("B"), None);
    }

    #[test]
    fn an_empty_entrypoint_is_omitted_like_go_omitempty() {
        let c = ImageConfig {
            entrypoint: Some(vec![]),
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"Cmd":["sh"]}"#);
    }
}
