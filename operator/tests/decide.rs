//! The decision function, table by table: every transition of a build's life, fed as observed
//! state, with the exact actions that come out. No API server, no clock, no tokio.

mod common;

use std::time::Duration;

use common::*;
use kiln_crds::{BuildSecret, GitSource, Phase, SecretKeyRef, SecurityProfile};
use kiln_operator::admission::Admission;
use kiln_operator::decide::{self, Action, MissingRef, decide};
use kiln_operator::plan::{IdUse, PlanError, PlanFacts};
use kiln_operator::{names, status};

#[test]
fn a_new_build_creates_its_context_and_first_pod() {
    let b = build();
    let d = decide(&b, &observed(), &config());
    assert!(
        matches!(&d.actions[0], Action::CreateConfigMap(cm) if cm.metadata.name.as_deref() == Some("app-g1-context"))
    );
    assert_eq!(created_pods(&d), ["app-g1-1"]);
    assert_eq!(events(&d), ["Building"]);
    let s = status_of(&d).unwrap();
    assert_eq!(s.phase, Some(Phase::Building));
    assert_eq!(s.attempt, Some(1));
    assert_eq!(s.pod_name.as_deref(), Some("app-g1-1"));
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.run.as_deref(), Some("g1"));
    assert_eq!(s.start_time.as_ref().map(|t| t.0), Some(t(100)));
    let ready = status::condition(&s.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Building")
    );
    assert_eq!(d.requeue, None, "the pod watch wakes the build");
}

#[test]
fn an_unchanged_state_writes_nothing() {
    let b = build();
    let d1 = decide(&b, &observed(), &config());
    let b1 = after(&b, &d1);
    let mut seen = observed();
    seen.pods = vec![running(build_pod(1))];
    seen.now = t(130);
    let d2 = decide(&b1, &seen, &config());
    assert!(d2.actions.is_empty(), "{:?}", d2.actions);
    assert_eq!(d2.requeue, None);
}

#[test]
fn a_pushed_image_ends_the_build_with_its_digest() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut seen = observed();
    seen.pods = vec![ended(build_pod(1), "Succeeded", 0, PUSHED, 165)];
    seen.now = t(170);
    let d = decide(&b1, &seen, &config());
    assert_eq!(events(&d), ["Succeeded"]);
    assert!(created_pods(&d).is_empty());
    let s = status_of(&d).unwrap();
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert!(s.digest.as_deref().unwrap().starts_with("sha256:0123"));
    assert_eq!(s.short_digest.as_deref(), Some("0123456789ab"));
    assert_eq!(
        s.image.as_deref(),
        Some(
            "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ),
        "pinned by digest, without the tag"
    );
    assert_eq!(s.steps.map(|x| (x.total, x.cached)), Some((3, 1)));
    assert_eq!(s.duration.as_deref(), Some("1m5s"));
    assert_eq!(s.completion_time.as_ref().map(|t| t.0), Some(t(165)));
    assert_eq!(
        status::health(1, s.observed_generation, &s.conditions),
        status::Health::Healthy
    );
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .starts_with("pushed registry.example.com/team/app@sha256:")
    );

    // Reconciled again (a re-apply of the same spec, an operator restart): nothing happens.
    let b2 = after(&b1, &d);
    let d = decide(&b2, &seen, &config());
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.requeue, None);
}

#[test]
fn a_new_generation_builds_again_and_stops_the_old_run() {
    let b = build();
    let mut b1 = after(&b, &decide(&b, &observed(), &config()));
    b1.metadata.generation = Some(2);
    let mut seen = observed();
    seen.pods = vec![running(build_pod(1))];
    let d = decide(&b1, &seen, &config());
    assert_eq!(deleted_pods(&d), ["app-g1-1"]);
    assert_eq!(created_pods(&d), ["app-g2-1"]);
    let s = status_of(&d).unwrap();
    assert_eq!(
        (s.observed_generation, s.run.as_deref()),
        (Some(2), Some("g2"))
    );
    assert_eq!(s.attempt, Some(1));
}

#[test]
fn the_rebuild_annotation_forces_a_new_run() {
    let b = build();
    let mut done = after(&b, &decide(&b, &observed(), &config()));
    let mut seen = observed();
    seen.pods = vec![ended(build_pod(1), "Succeeded", 0, PUSHED, 150)];
    done = after(&done, &decide(&done, &seen, &config()));
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    done.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(names::ANNOTATION_REBUILD.into(), "2026-12-05T10:00".into());
    let d = decide(&done, &seen, &config());
    let run = names::run_id(1, Some("2026-12-05T10:00"));
    assert_eq!(created_pods(&d), [format!("app-{run}-1")]);
    // The finished pod of the old run goes; the new run starts without the old digest.
    assert_eq!(deleted_pods(&d), ["app-g1-1"]);
    let s = status_of(&d).unwrap();
    assert_eq!(s.digest, None);
    assert_eq!(s.phase, Some(Phase::Building));
}

#[test]
fn a_full_cluster_queues_the_build() {
    let mut seen = observed();
    seen.admission = Admission::Queued("waiting for a build slot: 4 of 4".into());
    let d = decide(&build(), &seen, &config());
    assert!(created_pods(&d).is_empty());
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::CreateConfigMap(_)))
    );
    assert_eq!(events(&d), ["Queued"]);
    let s = status_of(&d).unwrap();
    assert_eq!(s.phase, Some(Phase::Pending));
    assert_eq!(s.attempt, None);
    assert_eq!(d.requeue, Some(decide::QUEUE_RECHECK));
    // Admitted later: the pod starts.
    let b1 = after(&build(), &d);
    let d = decide(&b1, &observed(), &config());
    assert_eq!(created_pods(&d), ["app-g1-1"]);
}

#[test]
fn missing_objects_keep_the_build_pending_until_they_exist() {
    let mut b = build();
    b.spec.secrets = vec![BuildSecret {
        id: "npm".into(),
        secret_ref: SecretKeyRef {
            name: "npm-token".into(),
            key: None,
        },
    }];
    let mut seen = observed();
    seen.missing = vec![MissingRef {
        kind: "Secret",
        name: "npm-token".into(),
        field: "spec.secrets[0].secretRef".into(),
    }];
    let d = decide(&b, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let s = status_of(&d).unwrap();
    assert_eq!(s.phase, Some(Phase::Pending));
    let ready = status::condition(&s.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "MissingSecret");
    assert!(
        ready
            .message
            .contains("Secret \"npm-token\" (spec.secrets[0].secretRef)"),
        "{}",
        ready.message
    );
    assert!(
        matches!(&d.actions.last(), Some(Action::Event(_))),
        "the Event follows the status"
    );
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.warning && e.reason == "MissingSecret"))
    );
    // Once it exists, the build starts by itself.
    let b1 = after(&b, &d);
    let d = decide(&b1, &observed(), &config());
    assert_eq!(created_pods(&d), ["app-g1-1"]);

    let mut seen = observed();
    seen.missing = vec![MissingRef {
        kind: "ConfigMap",
        name: "ctx".into(),
        field: "spec.source.configMap".into(),
    }];
    let d = decide(&b, &seen, &config());
    assert_eq!(reason(&after(&b, &d)), "MissingSource");
}

#[test]
fn a_dockerfile_error_fails_before_any_pod() {
    let mut seen = observed();
    seen.local_plan = Some(Err(PlanError {
        reason: "InvalidDockerfile".into(),
        message: "Dockerfile:2:1: unknown instruction: COPPY".into(),
    }));
    let d = decide(&build(), &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b1 = after(&build(), &d);
    assert_eq!(phase(&b1), Some(Phase::Failed));
    assert_eq!(reason(&b1), "InvalidDockerfile");
    let s = b1.status.as_ref().unwrap();
    assert_eq!(
        s.message.as_deref(),
        Some("Dockerfile:2:1: unknown instruction: COPPY")
    );
    assert_eq!(
        status::health(1, s.observed_generation, &s.conditions),
        status::Health::Degraded
    );
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.warning && e.reason == "InvalidDockerfile"))
    );
    // Never retried, whatever backoffLimit says.
    assert!(decide(&b1, &seen, &config()).actions.is_empty());
}

#[test]
fn an_invalid_spec_is_a_condition_not_a_pod() {
    let mut b = build();
    b.spec.output.image = "Registry.example.com/UPPER/app:1".into();
    let d = decide(&b, &observed(), &config());
    assert!(created_pods(&d).is_empty());
    let b1 = after(&b, &d);
    assert_eq!(reason(&b1), "InvalidSpec");
    assert!(
        b1.status
            .unwrap()
            .message
            .unwrap()
            .contains("spec.output.image")
    );
}

#[test]
fn privileged_needs_the_operators_opt_in() {
    let mut b = build();
    b.spec.security_profile = SecurityProfile::Privileged;
    let d = decide(&b, &observed(), &config());
    assert!(created_pods(&d).is_empty());
    assert_eq!(reason(&after(&b, &d)), "PrivilegedNotAllowed");
    let mut allowed = config();
    allowed.allow_privileged = true;
    let d = decide(&b, &observed(), &allowed);
    assert_eq!(created_pods(&d), ["app-g1-1"]);
}

#[test]
fn a_required_secret_the_spec_lacks_fails_with_its_line() {
    let mut seen = observed();
    seen.local_plan = Some(Ok(PlanFacts {
        secrets: vec![IdUse {
            id: "npm".into(),
            required: true,
            line: 4,
        }],
        ..Default::default()
    }));
    let d = decide(&build(), &seen, &config());
    let b1 = after(&build(), &d);
    assert_eq!(reason(&b1), "MissingSecret");
    assert_eq!(phase(&b1), Some(Phase::Failed));
    assert!(
        b1.status
            .unwrap()
            .message
            .unwrap()
            .starts_with("Dockerfile:4: RUN --mount=type=secret,id=npm,required")
    );
    // An optional one is fine.
    seen.local_plan = Some(Ok(PlanFacts {
        secrets: vec![IdUse {
            id: "npm".into(),
            required: false,
            line: 4,
        }],
        ..Default::default()
    }));
    assert_eq!(
        created_pods(&decide(&build(), &seen, &config())),
        ["app-g1-1"]
    );
}

#[test]
fn a_failed_step_without_retries_fails_with_line_exit_code_and_output() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut seen = observed();
    seen.pods = vec![ended(build_pod(1), "Failed", 1, &step_failed(2), 140)];
    let d = decide(&b1, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b2 = after(&b1, &d);
    assert_eq!(reason(&b2), "StepFailed");
    let s = b2.status.unwrap();
    assert_eq!(
        s.message.as_deref(),
        Some("Dockerfile:2: RUN make (exit code 2)\nboom")
    );
    // The condition message is the first line only.
    let ready = status::condition(&s.conditions, "Ready").unwrap();
    assert_eq!(ready.message, "Dockerfile:2: RUN make (exit code 2)");
}

#[test]
fn failures_a_retry_can_fix_are_retried_with_backoff() {
    let mut b = build();
    b.spec.backoff_limit = Some(2);
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut seen = observed();
    seen.pods = vec![ended(build_pod(1), "Failed", 1, &step_failed(1), 150)];
    seen.now = t(155);
    // The first retry waits 10 s after the failure: 5 s more.
    let d = decide(&b1, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b2 = after(&b1, &d);
    assert_eq!(reason(&b2), "Retrying");
    assert_eq!(phase(&b2), Some(Phase::Building));
    let wait = d.requeue.unwrap();
    assert!(
        wait > Duration::from_secs(4) && wait < Duration::from_secs(6),
        "{wait:?}"
    );
    // Due: attempt 2 starts.
    seen.now = t(161);
    let d = decide(&b2, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-2"]);
    let b3 = after(&b2, &d);
    assert_eq!(b3.status.as_ref().unwrap().attempt, Some(2));
    assert!(
        b3.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("attempt 2")
    );
    // Attempt 2 fails too: the second retry waits 20 s.
    seen.pods
        .push(ended(build_pod(2), "Failed", 1, &step_failed(1), 200));
    seen.now = t(201);
    let d = decide(&b3, &seen, &config());
    let wait = d.requeue.unwrap();
    assert!(
        wait > Duration::from_secs(18) && wait < Duration::from_secs(20),
        "{wait:?}"
    );
    // Attempt 3 is the last one backoffLimit 2 allows.
    seen.now = t(221);
    let b4 = after(&b3, &d);
    let d = decide(&b4, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-3"]);
    let b5 = after(&b4, &d);
    seen.pods
        .push(ended(build_pod(3), "Failed", 1, &step_failed(1), 260));
    seen.now = t(300);
    let d = decide(&b5, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b6 = after(&b5, &d);
    assert_eq!(phase(&b6), Some(Phase::Failed));
    assert!(
        b6.status
            .unwrap()
            .message
            .unwrap()
            .contains("(attempt 3 of 3)")
    );
}

#[test]
fn permanent_worker_failures_are_not_retried() {
    let mut b = build();
    b.spec.backoff_limit = Some(5);
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    for msg in [
        r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"InvalidDockerfile","message":"Dockerfile:1:1: bad"}"#,
        r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"RegistryAuth","message":"401 from registry.example.com"}"#,
        r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"MissingSecret","message":"secret npm is required"}"#,
    ] {
        let mut seen = observed();
        seen.pods = vec![ended(build_pod(1), "Failed", 1, msg, 140)];
        let d = decide(&b1, &seen, &config());
        assert!(created_pods(&d).is_empty(), "{msg}");
        assert_eq!(phase(&after(&b1, &d)), Some(Phase::Failed), "{msg}");
    }
}

#[test]
fn a_pod_that_disappears_is_retried_at_once() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    // The status names app-g1-1, and it is gone (a direct read confirmed it).
    let d = decide(&b1, &observed(), &config());
    assert_eq!(created_pods(&d), ["app-g1-2"]);
    let b2 = after(&b1, &d);
    assert_eq!(b2.status.as_ref().unwrap().attempt, Some(2));
    // Lost again, twice: backoffLimit 0 still allows two retries for lost pods, not three.
    let b3 = after(&b2, &decide(&b2, &observed(), &config()));
    assert_eq!(b3.status.as_ref().unwrap().attempt, Some(3));
    let d = decide(&b3, &observed(), &config());
    assert!(created_pods(&d).is_empty());
    let b4 = after(&b3, &d);
    assert_eq!(reason(&b4), "PodLost");
    assert_eq!(phase(&b4), Some(Phase::Failed));
}

#[test]
fn an_evicted_pod_is_lost_and_retried() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut p = ended(build_pod(1), "Failed", 137, "", 130);
    p.status.as_mut().unwrap().reason = Some("Evicted".into());
    let mut seen = observed();
    seen.now = t(140);
    seen.pods = vec![p];
    let d = decide(&b1, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-2"]);
}

#[test]
fn a_pod_evicted_for_its_own_disk_limit_fails_disk_full_without_the_lost_pods_retries() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut p = ended(build_pod(1), "Failed", 137, "", 130);
    let status = p.status.as_mut().unwrap();
    status.reason = Some("Evicted".into());
    status.message = Some("Usage of EmptyDir volume \"state\" exceeds the limit \"16Mi\".".into());
    let mut seen = observed();
    seen.now = t(140);
    seen.pods = vec![p.clone()];
    let d = decide(&b1, &seen, &config());
    assert!(created_pods(&d).is_empty(), "{:?}", d.actions);
    let b2 = after(&b1, &d);
    assert_eq!(phase(&b2), Some(Phase::Failed));
    assert_eq!(reason(&b2), "DiskFull");
    let message = b2.status.as_ref().unwrap().message.clone().unwrap();
    assert!(message.contains("EmptyDir volume \"state\""), "{message}");
    // With a backoffLimit, it is retried like any other full disk.
    let mut b = build();
    b.spec.backoff_limit = Some(1);
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    seen.now = t(400);
    let d = decide(&b1, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-2"]);
}

#[test]
fn a_worker_stopped_by_someone_else_is_a_lost_pod_not_a_cancelled_build() {
    // An eviction or a drain sends the worker SIGTERM; it reports Cancelled on its way out.
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let cancelled = r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"Cancelled","message":"the build was stopped (SIGTERM)"}"#;
    let mut seen = observed();
    seen.now = t(140);
    seen.pods = vec![ended(build_pod(1), "Failed", 143, cancelled, 130)];
    let d = decide(&b1, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-2"], "{:?}", d.actions);
    let b2 = after(&b1, &d);
    assert_eq!(phase(&b2), Some(Phase::Building));
    // Stopped that way every time: it ends PodLost, never Cancelled.
    seen.pods
        .push(ended(build_pod(2), "Failed", 143, cancelled, 150));
    seen.now = t(160);
    let b3 = after(&b2, &decide(&b2, &seen, &config()));
    seen.pods
        .push(ended(build_pod(3), "Failed", 143, cancelled, 170));
    seen.now = t(180);
    let d = decide(&b3, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b4 = after(&b3, &d);
    assert_eq!(phase(&b4), Some(Phase::Failed));
    assert_eq!(reason(&b4), "PodLost");
    let message = b4.status.as_ref().unwrap().message.clone().unwrap();
    assert!(message.contains("stopped from outside Kiln"), "{message}");
}

#[test]
fn a_failed_pod_deleted_by_someone_else_is_lost_whatever_it_reported() {
    // Evicted through the API: the pod has a deletion timestamp and ended Failed before the
    // worker wrote a result (or with a StepFailed its killed step caused).
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    for said in ["", &step_failed(137)] {
        let mut p = ended(build_pod(1), "Failed", 137, said, 130);
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(131)));
        let mut seen = observed();
        seen.now = t(140);
        seen.pods = vec![p];
        let d = decide(&b1, &seen, &config());
        assert_eq!(created_pods(&d), ["app-g1-2"], "{said}: {:?}", d.actions);
        let s = status_of(&d).unwrap();
        assert_eq!(s.phase, Some(Phase::Building));
    }
}

#[test]
fn the_deadline_fails_the_build() {
    let mut b = build();
    b.spec.backoff_limit = Some(3);
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut p = ended(build_pod(1), "Failed", 137, "", 130);
    p.status.as_mut().unwrap().reason = Some("DeadlineExceeded".into());
    let mut seen = observed();
    seen.pods = vec![p];
    let d = decide(&b1, &seen, &config());
    assert!(created_pods(&d).is_empty());
    assert_eq!(reason(&after(&b1, &d)), "DeadlineExceeded");
}

#[test]
fn a_restarted_operator_adopts_the_running_pod() {
    // The pod was created, then the operator stopped before it wrote the status.
    let mut seen = observed();
    seen.pods = vec![running(build_pod(1))];
    let d = decide(&build(), &seen, &config());
    assert!(created_pods(&d).is_empty(), "{:?}", d.actions);
    let s = status_of(&d).unwrap();
    assert_eq!(s.attempt, Some(1));
    assert_eq!(s.pod_name.as_deref(), Some("app-g1-1"));
    assert_eq!(s.start_time.as_ref().map(|t| t.0), Some(t(10)));
    // A later attempt's pod wins over an older status.
    let b1 = after(&build(), &d);
    seen.pods = vec![
        ended(build_pod(1), "Failed", 1, &step_failed(1), 20),
        running(build_pod(2)),
    ];
    let d = decide(&b1, &seen, &config());
    assert!(created_pods(&d).is_empty());
    assert_eq!(status_of(&d).unwrap().attempt, Some(2));
}

#[test]
fn deleting_a_build_stops_its_running_pods() {
    let mut seen = observed();
    seen.pods = vec![
        ended(build_pod(1), "Failed", 1, "", 20),
        running(build_pod(2)),
        running(pod("app-g1-plan", "g1", names::ROLE_PLAN, None)),
    ];
    let actions = decide::cleanup(&seen);
    assert_eq!(
        actions,
        vec![
            Action::DeletePod("app-g1-2".into()),
            Action::DeletePod("app-g1-plan".into())
        ]
    );
}

#[test]
fn the_cancel_annotation_stops_the_build() {
    let b = build();
    let mut b1 = after(&b, &decide(&b, &observed(), &config()));
    b1.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(names::ANNOTATION_CANCEL.into(), "true".into());
    let mut seen = observed();
    seen.pods = vec![running(build_pod(1))];
    let d = decide(&b1, &seen, &config());
    assert_eq!(deleted_pods(&d), ["app-g1-1"]);
    let b2 = after(&b1, &d);
    assert_eq!(phase(&b2), Some(Phase::Cancelled));
    assert_eq!(reason(&b2), "Cancelled");
}

fn git_build() -> kiln_crds::ImageBuild {
    let mut s = spec();
    s.source = kiln_crds::BuildSource {
        git: Some(GitSource {
            url: "https://git.example.com/team/app.git".into(),
            revision: Some("main".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    build_with(s)
}

#[test]
fn other_sources_are_planned_by_a_plan_pod() {
    let b = git_build();
    let mut seen = observed();
    seen.local_plan = None;
    let d = decide(&b, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-plan"]);
    let b1 = after(&b, &d);
    assert_eq!(phase(&b1), Some(Phase::Planning));
    // Still planning: nothing to do.
    seen.pods = vec![running(pod("app-g1-plan", "g1", names::ROLE_PLAN, None))];
    assert!(decide(&b1, &seen, &config()).actions.is_empty());
    // Planned: the revision is recorded and the build pod uses it.
    seen.pods = vec![ended(
        pod("app-g1-plan", "g1", names::ROLE_PLAN, None),
        "Succeeded",
        0,
        r#"{"ok":true,"apiVersion":"kiln.dev/plan-compact/v1","dockerfile":"Dockerfile","target":{"index":0},"stages":[],"baseImages":[],"caches":[],"secrets":[],"ssh":[],"revision":"4b825dc642cb6eb9a060e54bf8d69288fbee4904"}"#,
        20,
    )];
    let d = decide(&b1, &seen, &config());
    assert_eq!(created_pods(&d), ["app-g1-1"]);
    let pod = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some(p),
            _ => None,
        })
        .unwrap();
    let args = pod.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args.last().unwrap(),
        "https://git.example.com/team/app.git#4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    );
    assert_eq!(
        status_of(&d).unwrap().revision.as_deref(),
        Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    );
}

#[test]
fn a_plan_pod_reporting_a_dockerfile_error_fails_the_build() {
    let b = git_build();
    let mut seen = observed();
    seen.local_plan = None;
    seen.pods = vec![ended(
        pod("app-g1-plan", "g1", names::ROLE_PLAN, None),
        "Failed",
        1,
        r#"{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"InvalidDockerfile","message":"unknown instruction: COPPY","file":"Dockerfile","line":3,"column":1}"#,
        20,
    )];
    let d = decide(&b, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b1 = after(&b, &d);
    assert_eq!(reason(&b1), "InvalidDockerfile");
    assert_eq!(
        b1.status.unwrap().message.as_deref(),
        Some("Dockerfile:3:1: unknown instruction: COPPY")
    );
}

#[test]
fn long_messages_are_cut() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let tail: Vec<String> = (0..400)
        .map(|i| format!("line {i} of a long and noisy build log"))
        .collect();
    let msg = format!(
        r#"{{"ok":false,"apiVersion":"kiln.dev/result/v1","reason":"StepFailed","message":"RUN x","file":"Dockerfile","line":2,"exitCode":1,"logTail":"{}"}}"#,
        tail.join("\\n")
    );
    let mut seen = observed();
    seen.pods = vec![ended(build_pod(1), "Failed", 1, &msg, 140)];
    let s = after(&b1, &decide(&b1, &seen, &config())).status.unwrap();
    assert!(
        s.message.as_ref().unwrap().len() <= 2052,
        "{}",
        s.message.unwrap().len()
    );
    assert!(s.message.unwrap().ends_with('…'));
}

#[test]
fn a_pod_that_cannot_start_says_why() {
    let b = build();
    let b1 = after(&b, &decide(&b, &observed(), &config()));
    let mut p = build_pod(1);
    p.status.as_mut().unwrap().container_statuses =
        Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
            name: "worker".into(),
            state: Some(k8s_openapi::api::core::v1::ContainerState {
                waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                    reason: Some("ImagePullBackOff".into()),
                    message: Some("Back-off pulling image \"localhost/kiln-worker:dev\"".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    let mut seen = observed();
    seen.pods = vec![p];
    let d = decide(&b1, &seen, &config());
    let b2 = after(&b1, &d);
    assert_eq!(reason(&b2), "PodCannotStart");
    assert_eq!(phase(&b2), Some(Phase::Building));
    assert!(
        b2.status
            .unwrap()
            .message
            .unwrap()
            .contains("ImagePullBackOff: Back-off pulling image")
    );
    assert!(created_pods(&d).is_empty());
}

fn with_caches(sharing: kiln_worker::plan::step::Sharing) -> kiln_operator::decide::Observed {
    let mut seen = observed();
    seen.local_plan = Some(Ok(PlanFacts {
        caches: vec![kiln_operator::plan::CacheUse {
            id: "/root/.cache/go-build".into(),
            target: "/root/.cache/go-build".into(),
            sharing,
            mode: 0o755,
            line: 3,
            ..Default::default()
        }],
        ..Default::default()
    }));
    seen
}

#[test]
fn cache_mounts_get_claims_that_outlive_the_build() {
    use kiln_worker::plan::step::Sharing;
    let seen = with_caches(Sharing::Shared);
    let d = decide(&build(), &seen, &config());
    let claim = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateClaim(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a claim is created");
    let claim_name = claim.metadata.name.clone().unwrap();
    assert!(
        claim_name.starts_with("kiln-cache-root-cache-go-build-"),
        "{claim_name}"
    );
    // The claim comes before the pod that mounts it.
    let pos = |f: &dyn Fn(&Action) -> bool| d.actions.iter().position(f).unwrap();
    assert!(
        pos(&|a| matches!(a, Action::CreateClaim(_))) < pos(&|a| matches!(a, Action::CreatePod(_)))
    );
    let pod = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()[&format!("cache.kiln.dev/{claim_name}")],
        "shared"
    );
    let spec = pod.spec.as_ref().unwrap();
    assert!(spec.volumes.as_ref().unwrap().iter().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|p| p.claim_name == claim_name)
    }));
    let args = spec.containers[0].args.as_ref().unwrap();
    let arg = args
        .iter()
        .find(|a| a.starts_with("--cache-volume="))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(arg.trim_start_matches("--cache-volume=")).unwrap();
    assert_eq!(v["id"], "/root/.cache/go-build");
    assert_eq!(v["dir"], format!("/kiln/caches/{claim_name}"));
    assert!(
        args.last().unwrap().starts_with("/kiln/context"),
        "the context stays last"
    );
    // Rootless: an init container that may only chown gives the claim to the worker.
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        init.security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap()
            .add
            .as_ref()
            .unwrap(),
        &["CHOWN"]
    );
    let s = status_of(&d).unwrap();
    assert_eq!(s.caches.len(), 1);
    assert_eq!(s.caches[0].claim_name, claim_name);
    assert_eq!(s.caches[0].warm, Some(false));
    // With fsGroup ownership, nothing runs as root.
    let mut cfg = config();
    cfg.cache_volumes.ownership = kiln_operator::config::Ownership::FsGroup;
    let d = decide(&build(), &seen, &cfg);
    let pod = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert!(pod.spec.as_ref().unwrap().init_containers.is_none());
    // Disabled: no claims at all.
    cfg.cache_volumes.enabled = false;
    let d = decide(&build(), &seen, &cfg);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::CreateClaim(_)))
    );
}

#[test]
fn a_locked_cache_held_elsewhere_makes_the_build_wait() {
    use kiln_worker::plan::step::Sharing;
    let mut seen = with_caches(Sharing::Locked);
    // The first build takes the claim.
    let d = decide(&build(), &seen, &config());
    let claim = created_claim(&d);
    let holder = created_pod(&d);
    // A second build of another ImageBuild sees the claim and the first one's live pod.
    seen.cache_claims = vec![claim.clone()];
    let mut running_holder = running(holder);
    running_holder
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("kiln.dev/build".into(), "first".into());
    seen.cache_pods = vec![running_holder.clone()];
    let mut other = build();
    other.metadata.name = Some("second".into());
    other.metadata.uid = Some("uid-2".into());
    let d = decide(&other, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b = after(&other, &d);
    assert_eq!(reason(&b), "WaitingForCache");
    assert_eq!(phase(&b), Some(Phase::Pending));
    let message = b.status.unwrap().message.unwrap();
    assert!(
        message.contains("build first") && message.contains(&claim.metadata.name.clone().unwrap()),
        "{message}"
    );
    // The holder ends: the second build starts, on the same claim, now warm.
    seen.cache_pods = vec![ended(running_holder, "Succeeded", 0, PUSHED, 200)];
    let d = decide(&other, &seen, &config());
    assert_eq!(created_pods(&d).len(), 1);
    let s = status_of(&d).unwrap();
    assert_eq!(s.caches[0].claim_name, claim.metadata.name.unwrap());
    assert_eq!(s.caches[0].warm, Some(true));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::TouchClaims(c) if c.len() == 1))
    );
}

#[test]
fn the_end_of_a_build_records_when_its_caches_were_used() {
    use kiln_worker::plan::step::Sharing;
    let mut seen = with_caches(Sharing::Shared);
    let b1 = after(&build(), &decide(&build(), &seen, &config()));
    seen.pods = vec![ended(build_pod(1), "Succeeded", 0, PUSHED, 150)];
    let d = decide(&b1, &seen, &config());
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::TouchClaims(_)))
    );
    // And only once.
    let b2 = after(&b1, &d);
    assert!(decide(&b2, &seen, &config()).actions.is_empty());
}

#[test]
fn userns_is_refused_where_the_cluster_would_ignore_it() {
    let mut b = build();
    b.spec.security_profile = SecurityProfile::Userns;
    let mut seen = observed();
    seen.cluster_minor = Some(20);
    let d = decide(&b, &seen, &config());
    assert!(created_pods(&d).is_empty());
    let b1 = after(&b, &d);
    assert_eq!(reason(&b1), "ProfileUnsupported");
    assert!(b1.status.unwrap().message.unwrap().contains("1.20"));
    seen.cluster_minor = Some(33);
    assert_eq!(created_pods(&decide(&b, &seen, &config())), ["app-g1-1"]);
}

#[test]
fn a_cache_volume_for_an_id_the_dockerfile_never_uses_is_invalid() {
    let mut b = build();
    b.spec.cache = Some(kiln_crds::CacheSpec {
        volumes: vec![kiln_crds::CacheVolume {
            id: "go-mod".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let d = decide(&b, &observed(), &config());
    assert!(created_pods(&d).is_empty());
    let b1 = after(&b, &d);
    assert_eq!(reason(&b1), "InvalidSpec");
    assert!(
        b1.status
            .unwrap()
            .message
            .unwrap()
            .starts_with("spec.cache.volumes[0].id:")
    );
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.warning && e.reason == "InvalidSpec"))
    );
    // Used: fine.
    let mut seen = observed();
    seen.local_plan = Some(Ok(PlanFacts {
        caches: vec![kiln_operator::plan::CacheUse {
            id: "go-mod".into(),
            ..Default::default()
        }],
        ..Default::default()
    }));
    assert_eq!(created_pods(&decide(&b, &seen, &config())), ["app-g1-1"]);
}

/// The pod `decide` created, with its `cache-owner` init container ended with `exit`.
fn with_init_exit(
    pod: &k8s_openapi::api::core::v1::Pod,
    exit: i32,
) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    let mut p = running(pod.clone());
    p.status.as_mut().unwrap().init_container_statuses = Some(vec![ContainerStatus {
        name: "cache-owner".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

fn owned_claims(d: &decide::Decision) -> Vec<(Vec<String>, String)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::OwnClaims { claims, owner } => Some((claims.clone(), owner.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_claim_handed_over_once_needs_no_init_container_again() {
    use kiln_worker::plan::step::Sharing;
    let mut seen = with_caches(Sharing::Shared);
    let d = decide(&build(), &seen, &config());
    let mut claim = created_claim(&d);
    let claim_name = claim.metadata.name.clone().unwrap();
    let pod = created_pod(&d);
    assert!(pod.spec.as_ref().unwrap().init_containers.is_some());
    let b1 = after(&build(), &d);
    seen.cache_claims = vec![claim.clone()];

    // While the init container has not ended, or when it failed, nothing is recorded.
    seen.pods = vec![running(pod.clone())];
    assert!(owned_claims(&decide(&b1, &seen, &config())).is_empty());
    seen.pods = vec![with_init_exit(&pod, 1)];
    assert!(owned_claims(&decide(&b1, &seen, &config())).is_empty());

    // Once it exited 0, the claim is recorded as the worker's, whatever the build does next.
    seen.pods = vec![with_init_exit(&pod, 0)];
    assert_eq!(
        owned_claims(&decide(&b1, &seen, &config())),
        vec![(vec![claim_name.clone()], "1000:1000".to_string())]
    );

    // Recorded: not again.
    claim
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("kiln.dev/cache-owner".into(), "1000:1000".into());
    seen.cache_claims = vec![claim.clone()];
    assert!(owned_claims(&decide(&b1, &seen, &config())).is_empty());

    // Another build on the recorded claim mounts it with no init container at all.
    let mut other = build();
    other.metadata.name = Some("second".into());
    other.metadata.uid = Some("uid-2".into());
    let mut seen2 = with_caches(Sharing::Shared);
    seen2.cache_claims = vec![claim.clone()];
    let d = decide(&other, &seen2, &config());
    let pod2 = created_pod(&d);
    let spec2 = pod2.spec.as_ref().unwrap();
    assert!(
        spec2.init_containers.is_none(),
        "{:?}",
        spec2.init_containers
    );
    assert!(spec2.volumes.as_ref().unwrap().iter().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|p| p.claim_name == claim_name)
    }));

    // A claim recorded for another owner (an older worker's uid) is handed over again.
    claim
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("kiln.dev/cache-owner".into(), "2000:2000".into());
    seen2.cache_claims = vec![claim];
    let d = decide(&other, &seen2, &config());
    let init = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => p.spec.as_ref().unwrap().init_containers.clone(),
            _ => None,
        })
        .expect("an init container");
    assert_eq!(init[0].args.as_ref().unwrap()[1], "--owner=1000:1000");
}

/// The claim a decision creates.
fn created_claim(d: &decide::Decision) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    d.actions
        .iter()
        .find_map(|a| match a {
            Action::CreateClaim(c) => Some((**c).clone()),
            _ => None,
        })
        .expect("a claim is created")
}

/// The pod a decision creates.
fn created_pod(d: &decide::Decision) -> k8s_openapi::api::core::v1::Pod {
    d.actions
        .iter()
        .find_map(|a| match a {
            Action::CreatePod(p) => Some((**p).clone()),
            _ => None,
        })
        .expect("a pod is created")
}
