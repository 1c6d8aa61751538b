//! The build pod's report: the JSON object `kiln build --result-file /dev/termination-log`
//! writes (docs/worker-result.md), and what the operator makes of a pod that wrote none.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::reasons;

/// The worker container's name in every pod the operator creates.
pub const CONTAINER: &str = "worker";

pub use kiln_worker::result::{BuildResult, Failure, Reason, Success};

/// How a finished build pod ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The image was pushed.
    Pushed(Box<Success>),
    /// The build failed; `reason` is stable, `message` for people.
    Failed { reason: String, message: String },
}

/// The worker container's status in a pod.
pub fn worker_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)
}

/// The termination message of the worker container, if it has ended.
pub fn termination_message(pod: &Pod) -> Option<&str> {
    worker_status(pod)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .as_deref()
}

/// Reads a terminated build pod: its result when the worker wrote one, else what Kubernetes
/// says about the pod.
pub fn outcome(pod: &Pod) -> Outcome {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let pod_reason = pod.status.as_ref().and_then(|s| s.reason.as_deref());
    let pod_message = pod
        .status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .unwrap_or_default();
    if pod_reason == Some("Evicted") && evicted_for_its_own_storage(pod_message) {
        // The build outgrew the disk it was given (the state emptyDir's sizeLimit or the
        // pod's ephemeral-storage limit): the same build on the same limits fills it again, so
        // this is the worker's DiskFull (retried only as spec.backoffLimit allows), not a pod
        // Kubernetes took away (retried at least twice).
        return Outcome::Failed {
            reason: Reason::DiskFull.as_str().to_string(),
            message: format!(
                "the build pod was evicted for using more disk than its limit: {pod_message}"
            ),
        };
    }
    if let Some(text) = termination_message(pod)
        && let Ok(result) = serde_json::from_str::<BuildResult>(text.trim())
    {
        return match result {
            BuildResult::Success(s) => Outcome::Pushed(Box::new(s)),
            BuildResult::Failure(f) => Outcome::Failed {
                reason: match f.reason {
                    // The worker stopped itself at spec.timeout: the CRD calls that
                    // DeadlineExceeded, whoever noticed first.
                    Reason::Timeout => reasons::DEADLINE_EXCEEDED.to_string(),
                    // The worker was sent SIGTERM. The operator never does that to the pod of
                    // a run it still reads (a cancel, a deletion or a newer run end the run
                    // first), so someone else took the pod away: an eviction, a drain, a
                    // `kubectl delete pod`. That is a lost pod, retried, not the user's cancel.
                    Reason::Cancelled if pod_reason == Some("DeadlineExceeded") => {
                        return Outcome::Failed {
                            reason: reasons::DEADLINE_EXCEEDED.to_string(),
                            message: "the build ran longer than spec.timeout".to_string(),
                        };
                    }
                    Reason::Cancelled => {
                        return Outcome::Failed {
                            reason: reasons::POD_LOST.to_string(),
                            message: format!(
                                "the build pod was stopped from outside Kiln (evicted, drained or deleted): {}",
                                failure_message(&f)
                            ),
                        };
                    }
                    r => r.as_str().to_string(),
                },
                message: failure_message(&f),
            },
        };
    }
    match pod_reason {
        Some("DeadlineExceeded") => Outcome::Failed {
            reason: reasons::DEADLINE_EXCEEDED.to_string(),
            message: "the build ran longer than spec.timeout".to_string(),
        },
        Some("Evicted") | Some("Preempting") | Some("NodeLost") | Some("Shutdown") => {
            Outcome::Failed {
                reason: reasons::POD_LOST.to_string(),
                message: format!(
                    "the build pod was stopped by Kubernetes ({}): {}",
                    pod_reason.unwrap_or_default(),
                    pod.status
                        .as_ref()
                        .and_then(|s| s.message.clone())
                        .unwrap_or_default()
                ),
            }
        }
        _ if failed_init(pod).is_some() => {
            let (name, detail) = failed_init(pod).unwrap_or_default();
            Outcome::Failed {
                reason: reasons::BUILD_FAILED.to_string(),
                message: format!("the init container {name} failed: {detail}"),
            }
        }
        _ => {
            let terminated = worker_status(pod)
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.as_ref());
            let detail = match terminated {
                Some(t) => format!(
                    "the worker exited with code {}{}",
                    t.exit_code,
                    t.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                None => format!("the build pod ended in phase {phase} without a result"),
            };
            Outcome::Failed {
                reason: reasons::BUILD_FAILED.to_string(),
                message: detail,
            }
        }
    }
}

/// Whether the kubelet's eviction message blames the pod's own local storage limits (an
/// emptyDir's sizeLimit, the containers' ephemeral-storage limits) rather than pressure on the
/// node. The kubelet's wording (pkg/kubelet/eviction, stable since 1.9): "Usage of EmptyDir
/// volume %q exceeds the limit %q.", "Pod ephemeral local storage usage exceeds the total limit
/// of containers %s.", "Container %s exceeded its local ephemeral storage limit %q.".
fn evicted_for_its_own_storage(message: &str) -> bool {
    (message.starts_with("Usage of EmptyDir volume") && message.contains("exceeds the limit"))
        || message.starts_with("Pod ephemeral local storage usage exceeds")
        || message.contains("exceeded its local ephemeral storage limit")
}

/// An init container that ended in failure, and what it said.
fn failed_init(pod: &Pod) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                let said = t.message.as_deref().or(t.reason.as_deref()).unwrap_or("");
                (
                    c.name.clone(),
                    format!(
                        "exit code {}{}",
                        t.exit_code,
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", said.trim())
                        }
                    ),
                )
            })
        })
}

/// One line for the status: the reason's message, where in the Dockerfile, and the tail of the
/// step's output.
fn failure_message(result: &Failure) -> String {
    let mut message = result.message.clone();
    if let (Some(file), Some(line)) = (&result.file, result.line)
        && !message.contains(&format!("{file}:{line}"))
    {
        message = format!("{file}:{line}: {message}");
    }
    if let Some(code) = result.exit_code
        && !message.contains("exit code")
    {
        message = format!("{message} (exit code {code})");
    }
    if let Some(tail) = &result.log_tail
        && !tail.trim().is_empty()
    {
        message = format!("{message}\n{}", tail.trim_end());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};

    fn pod(phase: &str, reason: Option<&str>, message: Option<&str>, exit: i32) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: exit,
                            message: message.map(Into::into),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pushed_result_is_read() {
        let p = pod(
            "Succeeded",
            None,
            Some(
                r#"{"ok":true,"apiVersion":"kiln.dev/result/v1","digest":"sha256:ab","image":"r/a@sha256:ab","pushed":["r/a:1"],"revision":null,"steps":{"total":5,"cached":2},"cache":{"hits":2,"misses":3,"imported":0,"exported":0},"durationSeconds":1.5}"#,
            ),
            0,
        );
        match outcome(&p) {
            Outcome::Pushed(r) => {
                assert_eq!(r.digest, "sha256:ab");
                assert_eq!((r.steps.total, r.steps.cached), (5, 2));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_step_names_its_line_code_and_output() {
        let p = pod(
            "Failed",
            None,
            Some(
                r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"StepFailed","message":"RUN make","file":"Dockerfile","line":7,"exitCode":2,"logTail":"cc: error\nmake: *** [all] Error 1"}"#,
            ),
            1,
        );
        assert_eq!(
            outcome(&p),
            Outcome::Failed {
                reason: "StepFailed".into(),
                message: "Dockerfile:7: RUN make (exit code 2)\ncc: error\nmake: *** [all] Error 1"
                    .into()
            }
        );
    }

    #[test]
    fn pods_without_a_result_are_explained() {
        let p = pod("Failed", Some("DeadlineExceeded"), None, 137);
        assert!(
            matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "DeadlineExceeded")
        );
        let p = pod(
            "Failed",
            None,
            Some(
                r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"Timeout","message":"the build ran longer than 30m"}"#,
            ),
            124,
        );
        assert!(
            matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "DeadlineExceeded")
        );
        let p = pod("Failed", Some("Evicted"), None, 137);
        assert!(matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "PodLost"));
        // The worker's own report of a SIGTERM: lost, or the deadline when that sent it.
        let cancelled = r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"Cancelled","message":"the build was stopped (SIGTERM)"}"#;
        let p = pod("Failed", None, Some(cancelled), 143);
        assert!(matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "PodLost"));
        let p = pod("Failed", Some("DeadlineExceeded"), Some(cancelled), 143);
        assert!(
            matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "DeadlineExceeded")
        );
        // Evicted for the node's disk pressure: lost. For its own limits: the build's disk is
        // full, and the message says which limit.
        let mut p = pod("Failed", Some("Evicted"), None, 137);
        p.status.as_mut().unwrap().message =
            Some("The node was low on resource: ephemeral-storage. ".into());
        assert!(matches!(outcome(&p), Outcome::Failed { reason, .. } if reason == "PodLost"));
        for said in [
            "Usage of EmptyDir volume \"state\" exceeds the limit \"16Mi\".",
            "Pod ephemeral local storage usage exceeds the total limit of containers 32Mi.",
            "Container worker exceeded its local ephemeral storage limit \"32Mi\". ",
        ] {
            p.status.as_mut().unwrap().message = Some(said.into());
            match outcome(&p) {
                Outcome::Failed { reason, message } => {
                    assert_eq!(reason, "DiskFull", "{said}");
                    assert!(
                        message.contains(said) && message.contains("disk"),
                        "{message}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let p = pod("Failed", None, Some("panic: oops"), 101);
        match outcome(&p) {
            Outcome::Failed { reason, message } => {
                assert_eq!(reason, "BuildFailed");
                assert!(message.contains("101"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_init_container_is_named() {
        let mut p = pod("Failed", None, None, 0);
        let status = p.status.as_mut().unwrap();
        status.container_statuses = None;
        status.init_container_statuses = Some(vec![ContainerStatus {
            name: "cache-owner".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    reason: Some("Error".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        match outcome(&p) {
            Outcome::Failed { message, .. } => {
                assert_eq!(
                    message,
                    "the init container cache-owner failed: exit code 1: Error"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
