//! The plan of a build, as far as the operator needs it: which secret, ssh and cache ids the
//! Dockerfile uses, whether it plans at all, and the source revision the plan resolved.
//!
//! Inline and ConfigMap sources are planned here, in-process, with the worker's front end (the
//! `kiln-worker` crate without its executor). Git, URL and PVC sources are planned by a plan
//! pod running `kiln plan --json`, whose termination message [`from_termination_message`]
//! reads.

use std::collections::BTreeMap;

use kiln_crds::ImageBuildSpec;
use kiln_worker::plan::step::Sharing;
use kiln_worker::plan::{PlanOptions, from_text, summary};
use serde::Deserialize;

use crate::reasons;

/// What the operator needs of a plan.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlanFacts {
    /// Every `RUN --mount=type=secret` of the stages the target needs.
    pub secrets: Vec<IdUse>,
    /// Every `RUN --mount=type=ssh`.
    pub ssh: Vec<IdUse>,
    /// Every `RUN --mount=type=cache`.
    pub caches: Vec<CacheUse>,
    /// The source revision the plan resolved (a Git commit), when the source has one.
    pub revision: Option<String>,
}

/// A secret or ssh mount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdUse {
    pub id: String,
    pub required: bool,
    pub line: u32,
}

/// A cache mount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CacheUse {
    pub id: String,
    pub target: String,
    pub sharing: Sharing,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// What seeds a new cache (`from=`), as the plan writes it.
    pub from: Option<serde_json::Value>,
    /// The path in `from` that seeds it; absent for `/`.
    pub source: Option<String>,
    pub line: u32,
}

impl CacheUse {
    /// What identifies the cache, as BuildKit keys a cache mount (the namespace aside): the id,
    /// owner, mode and seed. The worker matches its mounts against exactly these fields.
    pub fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "uid": self.uid,
            "gid": self.gid,
            "mode": self.mode,
            "from": self.from,
            "source": self.source,
        })
    }

    /// A short, stable hash of [`CacheUse::identity`]: the claims' `kiln.dev/cache-key` label.
    pub fn key(&self) -> String {
        crate::names::short_hash(&format!("cache-volume/v1 {}", self.identity()), 16)
    }

    /// `kiln build --cache-volume`: the identity and the directory that holds the cache.
    pub fn volume_arg(&self, dir: &str) -> String {
        let mut v = self.identity();
        v["dir"] = serde_json::Value::String(dir.to_string());
        v.to_string()
    }
}

/// Why a build cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// A stable reason: `InvalidDockerfile`, or the worker's reason for a plan pod.
    pub reason: String,
    /// For people; names the file, line and column of a Dockerfile error.
    pub message: String,
}

/// The Dockerfile's path inside a context given as a map of paths to contents.
fn dockerfile_text<'a>(
    spec: &ImageBuildSpec,
    files: &'a BTreeMap<String, String>,
) -> Result<&'a str, PlanError> {
    let wanted = spec.dockerfile.trim_start_matches("./");
    files
        .get(wanted)
        .map(String::as_str)
        .ok_or_else(|| PlanError {
            reason: reasons::INVALID_DOCKERFILE.to_string(),
            message: format!("the context has no file {wanted:?} (spec.dockerfile)"),
        })
}

/// Plans a build whose context is `files` (relative path → content).
pub fn plan_files(
    spec: &ImageBuildSpec,
    files: &BTreeMap<String, String>,
) -> Result<PlanFacts, PlanError> {
    let text = dockerfile_text(spec, files)?;
    let opts = PlanOptions {
        build_args: spec
            .build_args
            .iter()
            .map(|a| (a.name.clone(), a.value.clone().unwrap_or_default()))
            .collect(),
        target: spec.target.clone().filter(|t| !t.is_empty()),
        ..PlanOptions::default()
    };
    let plan = from_text(&spec.dockerfile, text, &opts).map_err(|diags| {
        let errors: Vec<_> = diags.items.iter().filter(|d| d.is_error()).collect();
        let first = errors.first().copied().or(diags.items.first());
        let message = match first {
            Some(d) if d.line > 0 => format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message),
            Some(d) => format!("{}: {}", d.file, d.message),
            None => format!("{}: the Dockerfile does not plan", spec.dockerfile),
        };
        let more = errors.len().saturating_sub(1);
        PlanError {
            reason: reasons::INVALID_DOCKERFILE.to_string(),
            message: if more > 0 {
                format!("{message} (and {more} more)")
            } else {
                message
            },
        }
    })?;
    let s = summary::summarize(&plan);
    Ok(PlanFacts {
        secrets: s
            .secrets
            .iter()
            .map(|m| IdUse {
                id: m.id.clone(),
                required: m.required,
                line: m.usage.line,
            })
            .collect(),
        ssh: s
            .ssh
            .iter()
            .map(|m| IdUse {
                id: m.id.clone(),
                required: m.required,
                line: m.usage.line,
            })
            .collect(),
        caches: s
            .caches
            .iter()
            .map(|m| CacheUse {
                id: m.id.clone(),
                target: m.target.clone(),
                sharing: m.sharing,
                uid: m.uid,
                gid: m.gid,
                mode: m.mode,
                from: m.from.as_ref().and_then(|f| serde_json::to_value(f).ok()),
                source: m
                    .from
                    .as_ref()
                    .filter(|_| m.source != "/")
                    .map(|_| m.source.clone()),
                line: m.usage.line,
            })
            .collect(),
        revision: None,
    })
}

/// The files of a ConfigMap context: keys are paths with `/` written as `__`.
pub fn config_map_files(
    data: &BTreeMap<String, String>,
    binary: &BTreeMap<String, Vec<u8>>,
) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (key_to_path(k), v.clone()))
        .chain(
            binary
                .iter()
                .map(|(k, v)| (key_to_path(k), String::from_utf8_lossy(v).into_owned())),
        )
        .collect()
}

/// A ConfigMap key as a context path.
pub fn key_to_path(key: &str) -> String {
    key.replace("__", "/")
}

/// Reads a plan pod's termination message: the compact plan or the failure that
/// `kiln plan --result-file` writes (docs/worker-result.md).
pub fn from_termination_message(text: &str) -> Result<PlanFacts, PlanError> {
    use kiln_worker::result::PlanResult;
    let value: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| PlanError {
        reason: reasons::PLAN_FAILED.to_string(),
        message: format!("the plan pod's result is not JSON ({e})"),
    })?;
    let parsed: PlanResult = serde_json::from_value(value.clone()).map_err(|e| PlanError {
        reason: reasons::PLAN_FAILED.to_string(),
        message: format!("the plan pod's result does not read as a plan ({e})"),
    })?;
    match parsed {
        PlanResult::Failure(f) => {
            let mut message = f.message.clone();
            if let (Some(file), Some(line)) = (&f.file, f.line)
                && !message.starts_with(file.as_str())
            {
                message = format!("{file}:{line}:{}: {message}", f.column.unwrap_or(1));
            }
            Err(PlanError {
                reason: f.reason.as_str().to_string(),
                message,
            })
        }
        PlanResult::Plan(p) => {
            let ids = |uses: &[kiln_worker::result::IdUse]| {
                uses.iter()
                    .map(|u| IdUse {
                        id: u.id.clone(),
                        required: u.required,
                        line: 0,
                    })
                    .collect()
            };
            Ok(PlanFacts {
                secrets: ids(&p.secrets),
                ssh: ids(&p.ssh),
                caches: p
                    .caches
                    .iter()
                    .map(|c| CacheUse {
                        id: c.id.clone(),
                        target: c.target.clone(),
                        sharing: c.sharing,
                        uid: c.uid,
                        gid: c.gid,
                        mode: c.mode,
                        from: c.from.as_ref().and_then(|f| serde_json::to_value(f).ok()),
                        source: c.source.clone(),
                        line: 0,
                    })
                    .collect(),
                // A Git source's plan names the commit it resolved.
                revision: value
                    .get("revision")
                    .and_then(|r| r.as_str())
                    .map(str::to_string),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::{BuildArg, BuildOutput, BuildSource};

    fn spec(dockerfile: &str) -> ImageBuildSpec {
        ImageBuildSpec {
            source: BuildSource::default(),
            dockerfile: dockerfile.to_string(),
            target: None,
            build_args: vec![],
            labels: Default::default(),
            output: BuildOutput {
                image: "r/app:1".into(),
                ..Default::default()
            },
            pull_secret_refs: vec![],
            secrets: vec![],
            ssh: vec![],
            cache: None,
            timeout: "30m".into(),
            backoff_limit: None,
            security_profile: Default::default(),
            resources: None,
            node_selector: Default::default(),
            tolerations: vec![],
            service_account_name: None,
        }
    }

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mounts_of_the_needed_stages_are_listed() {
        let df = "FROM scratch AS unused\nRUN --mount=type=secret,id=never true\n\
                  FROM busybox AS app\n\
                  RUN --mount=type=secret,id=npm,required --mount=type=cache,target=/root/.npm,sharing=locked true\n\
                  RUN --mount=type=ssh true\n";
        let facts = plan_files(&spec("Dockerfile"), &files(&[("Dockerfile", df)])).unwrap();
        assert_eq!(
            facts.secrets,
            vec![IdUse {
                id: "npm".into(),
                required: true,
                line: 4
            }]
        );
        assert_eq!(facts.ssh.len(), 1);
        assert_eq!(facts.ssh[0].id, "default");
        assert_eq!(facts.caches.len(), 1);
        assert_eq!(facts.caches[0].id, "/root/.npm");
        assert_eq!(facts.caches[0].sharing, Sharing::Locked);
    }

    #[test]
    fn build_args_and_target_are_honoured() {
        let df = "ARG BASE=scratch\nFROM $BASE AS a\nRUN --mount=type=secret,id=a true\n\
                  FROM scratch AS b\nRUN --mount=type=secret,id=b true\n";
        let mut s = spec("Dockerfile");
        s.target = Some("a".into());
        s.build_args = vec![BuildArg {
            name: "BASE".into(),
            value: Some("busybox".into()),
        }];
        let facts = plan_files(&s, &files(&[("Dockerfile", df)])).unwrap();
        assert_eq!(facts.secrets.len(), 1);
        assert_eq!(facts.secrets[0].id, "a");
    }

    #[test]
    fn a_dockerfile_error_names_file_line_and_column() {
        let err = plan_files(
            &spec("build/Dockerfile"),
            &files(&[("build/Dockerfile", "FROM scratch\nCOPPY a b\n")]),
        )
        .unwrap_err();
        assert_eq!(err.reason, "InvalidDockerfile");
        assert!(
            err.message.starts_with("build/Dockerfile:2:1: "),
            "{}",
            err.message
        );
        let err = plan_files(&spec("Dockerfile"), &files(&[("other", "")])).unwrap_err();
        assert!(err.message.contains("\"Dockerfile\""), "{}", err.message);
    }

    #[test]
    fn config_map_keys_become_paths() {
        let data = files(&[
            ("Dockerfile", "FROM scratch"),
            ("src__main.rs", "fn main(){}"),
        ]);
        let f = config_map_files(&data, &BTreeMap::new());
        assert!(f.contains_key("src/main.rs"));
    }

    #[test]
    fn plan_pod_results_are_read() {
        let ok = r#"{"ok":true,"apiVersion":"kiln.dev/plan-compact/v1","dockerfile":"Dockerfile","target":{"index":0},"stages":[],"baseImages":[],"revision":"abc123","secrets":[{"id":"npm","required":true}],"ssh":[],"caches":[{"id":"go","target":"/go","sharing":"private","uid":0,"gid":0,"mode":493}]}"#;
        let facts = from_termination_message(ok).unwrap();
        assert_eq!(facts.revision.as_deref(), Some("abc123"));
        assert_eq!(facts.caches[0].sharing, Sharing::Private);
        let bad = r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"InvalidDockerfile","message":"unknown instruction COPPY","file":"Dockerfile","line":2,"column":1}"#;
        let err = from_termination_message(bad).unwrap_err();
        assert_eq!(err.reason, "InvalidDockerfile");
        assert_eq!(err.message, "Dockerfile:2:1: unknown instruction COPPY");
        let err = from_termination_message("Error: no such file").unwrap_err();
        assert_eq!(err.reason, "PlanFailed");
    }
}
