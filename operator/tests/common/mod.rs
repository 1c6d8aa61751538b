//! Fixtures for the decision and pod tests: ImageBuilds, pods in every state, observations.

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{BuildOutput, BuildSource, ImageBuild, ImageBuildSpec, InlineSource};
use kiln_operator::admission::Admission;
use kiln_operator::config::Config;
use kiln_operator::decide::{Action, Decision, Observed};
use kiln_operator::names;
use kiln_operator::plan::PlanFacts;
use kube::ResourceExt;

/// The repository's root directory (charts, docs and examples live there).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub const UID: &str = "0b1f5c7e-1111-2222-3333-444455556666";

pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub fn spec() -> ImageBuildSpec {
    serde_json::from_value(serde_json::json!({
        "source": {"inline": {"files": {"Dockerfile": "FROM busybox\nRUN echo hi\n"}}},
        "output": {"image": "registry.example.com/team/app:1.0"}
    }))
    .unwrap()
}

pub fn build_with(spec: ImageBuildSpec) -> ImageBuild {
    let mut b = ImageBuild::new("app", spec);
    b.metadata = ObjectMeta {
        name: Some("app".into()),
        namespace: Some("team".into()),
        uid: Some(UID.into()),
        generation: Some(1),
        creation_timestamp: Some(Time(t(0))),
        finalizers: Some(vec![names::FINALIZER.into()]),
        ..Default::default()
    };
    b
}

pub fn build() -> ImageBuild {
    build_with(spec())
}

pub fn observed() -> Observed {
    Observed {
        now: t(100),
        pods: vec![],
        missing: vec![],
        local_plan: Some(Ok(PlanFacts::default())),
        config_map_keys: vec![],
        admission: Admission::Admitted,
        cache_claims: vec![],
        cache_pods: vec![],
        cluster_minor: Some(33),
    }
}

pub fn config() -> Config {
    Config::default()
}

/// A pod of the build as the operator names and labels it.
pub fn pod(name: &str, run: &str, role: &str, attempt: Option<i32>) -> Pod {
    let mut labels = BTreeMap::from([
        (names::LABEL_BUILD_UID.to_string(), UID.to_string()),
        (names::LABEL_RUN.to_string(), run.to_string()),
        (names::LABEL_ROLE.to_string(), role.to_string()),
    ]);
    if let Some(a) = attempt {
        labels.insert(names::LABEL_ATTEMPT.to_string(), a.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team".into()),
            labels: Some(labels),
            creation_timestamp: Some(Time(t(10))),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

pub fn build_pod(attempt: i32) -> Pod {
    pod(
        &names::build_pod("app", "g1", attempt),
        "g1",
        names::ROLE_BUILD,
        Some(attempt),
    )
}

pub fn running(mut p: Pod) -> Pod {
    let status = p.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".into());
    status.container_statuses = Some(vec![ContainerStatus {
        name: "worker".into(),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(t(12))),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

/// A pod whose worker ended with `message` in its termination log.
pub fn ended(mut p: Pod, phase: &str, exit: i32, message: &str, at: i64) -> Pod {
    let status = p.status.get_or_insert_with(Default::default);
    status.phase = Some(phase.into());
    status.container_statuses = Some(vec![ContainerStatus {
        name: "worker".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit,
                message: (!message.is_empty()).then(|| message.to_string()),
                finished_at: Some(Time(t(at))),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

pub const PUSHED: &str = r#"{"ok":true,"apiVersion":"kiln.dev/result/v1","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","image":"registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","pushed":["registry.example.com/team/app:1.0"],"revision":null,"steps":{"total":3,"cached":1},"cache":{"hits":1,"misses":2,"imported":0,"exported":0},"durationSeconds":4.2}"#;

pub fn step_failed(code: i32) -> String {
    format!(
        r#"{{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"StepFailed","message":"RUN make","file":"Dockerfile","line":2,"exitCode":{code},"logTail":"boom"}}"#
    )
}

pub fn status_of(d: &Decision) -> Option<&kiln_crds::ImageBuildStatus> {
    d.actions.iter().find_map(|a| match a {
        Action::ApplyStatus(s) => Some(s.as_ref()),
        _ => None,
    })
}

/// The build with the status the decision wrote, as the next reconcile sees it.
pub fn after(b: &ImageBuild, d: &Decision) -> ImageBuild {
    let mut next = b.clone();
    if let Some(s) = status_of(d) {
        next.status = Some(s.clone());
    }
    next
}

pub fn created_pods(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreatePod(p) => Some(p.name_any()),
            _ => None,
        })
        .collect()
}

pub fn deleted_pods(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeletePod(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub fn events(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.reason.clone()),
            _ => None,
        })
        .collect()
}

/// The Ready condition's reason.
pub fn reason(b: &ImageBuild) -> String {
    b.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

pub fn phase(b: &ImageBuild) -> Option<kiln_crds::Phase> {
    b.status.as_ref().and_then(|s| s.phase)
}

pub fn inline(files: &[(&str, &str)]) -> InlineSource {
    InlineSource {
        files: files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn with_source(mut s: ImageBuildSpec, source: BuildSource) -> ImageBuildSpec {
    s.source = source;
    s
}

pub fn output(image: &str) -> BuildOutput {
    BuildOutput {
        image: image.into(),
        ..Default::default()
    }
}
