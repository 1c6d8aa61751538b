use super::*;

fn success() -> Success {
    Success {
        ok: Flag,
        api_version: BUILD_API_VERSION.into(),
        digest: format!("sha256:{}", "a".repeat(64)),
        image: Some(format!("registry.example/app:1@sha256:{}", "a".repeat(64))),
        pushed: vec!["registry.example/app:1".into()],
        pushed_omitted: 0,
        revision: None,
        steps: Steps {
            total: 4,
            cached: 1,
        },
        cache: CacheStats {
            hits: 1,
            misses: 3,
            imported: 0,
            exported: 0,
        },
        push: None,
        duration_seconds: 1.5,
    }
}

#[test]
fn every_reason_round_trips_with_its_stable_name() {
    for r in Reason::ALL {
        let mut f = Failure::new(r, "x");
        f.line = Some(3);
        let json = BuildResult::Failure(f.clone()).to_json(MAX_BYTES);
        assert!(
            json.contains(&format!("\"reason\":\"{}\"", r.as_str())),
            "{json}"
        );
        assert!(json.starts_with("{\"ok\":false,"), "{json}");
        let back: BuildResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back, BuildResult::Failure(f));
        assert_eq!(r.to_string(), r.as_str());
    }
    // The names are the contract: a rename must fail here.
    let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "InvalidDockerfile",
            "StepFailed",
            "PullFailed",
            "PushFailed",
            "RegistryAuth",
            "MissingSecret",
            "MissingContext",
            "ContextFailed",
            "DiskFull",
            "Timeout",
            "Cancelled",
            "InvalidArgument",
            "Internal"
        ]
    );
    assert!(!Reason::InvalidDockerfile.retryable());
    assert!(!Reason::MissingSecret.retryable());
    assert!(Reason::PushFailed.retryable());
}

#[test]
fn a_success_reads_back_as_a_success() {
    let s = success();
    let json = BuildResult::Success(s.clone()).to_json(MAX_BYTES);
    assert!(json.starts_with("{\"ok\":true,"), "{json}");
    assert!(json.contains("\"revision\":null"), "{json}");
    assert!(json.contains("\"durationSeconds\":1.5"), "{json}");
    let back: BuildResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, BuildResult::Success(s));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["steps"], serde_json::json!({"total": 4, "cached": 1}));
}

#[test]
fn a_huge_failure_fits_and_keeps_the_end_of_the_log_and_the_start_of_the_message() {
    let mut f = Failure::new(Reason::StepFailed, format!("start {}", "m".repeat(9000)));
    f.file = Some("Dockerfile".into());
    f.line = Some(12);
    f.exit_code = Some(2);
    f.step = Some("RUN make".into());
    let lines: Vec<String> = (0..400).map(|i| format!("output line {i:04}")).collect();
    f.log_tail = Some(lines.join("\n"));
    let json = BuildResult::Failure(f).to_json(MAX_BYTES);
    assert!(json.len() <= MAX_BYTES, "{}", json.len());
    let back: Failure = serde_json::from_str(&json).unwrap();
    assert_eq!(back.reason, Reason::StepFailed);
    assert_eq!((back.line, back.exit_code), (Some(12), Some(2)));
    assert!(back.message.starts_with("start mmm"));
    let tail = back.log_tail.unwrap_or_default();
    assert!(tail.ends_with("output line 0399"), "{tail}");
    assert!(tail.starts_with('…'));
}

#[test]
fn escapes_and_multibyte_text_are_counted_as_written() {
    // Control characters take six bytes each in JSON; é takes two.
    let mut f = Failure::new(Reason::Internal, "\u{1}é".repeat(3000));
    f.log_tail = Some("\u{2}ü\n".repeat(3000));
    for max in [300, 1000, MAX_BYTES] {
        let json = BuildResult::Failure(f.clone()).to_json(max);
        assert!(json.len() <= max, "{max}: {}", json.len());
        let back: Failure = serde_json::from_str(&json).unwrap();
        assert_eq!(back.reason, Reason::Internal);
    }
}

#[test]
fn a_tiny_limit_still_gives_valid_json() {
    let json = BuildResult::Success(success()).to_json(10);
    let back: BuildResult = serde_json::from_str(&json).unwrap();
    assert!(matches!(back, BuildResult::Failure(f) if f.reason == Reason::Internal));
}

#[test]
fn many_pushed_names_are_counted_when_cut() {
    let mut s = success();
    s.pushed = (0..200)
        .map(|i| format!("registry.example/team/app:tag-{i:03}"))
        .collect();
    let json = BuildResult::Success(s).to_json(MAX_BYTES);
    assert!(json.len() <= MAX_BYTES);
    let Ok(BuildResult::Success(back)) = serde_json::from_str(&json) else {
        panic!("{json}")
    };
    assert_eq!(back.pushed.len() + back.pushed_omitted, 200);
    assert!(back.pushed_omitted > 0);
    assert_eq!(back.pushed[0], "registry.example/team/app:tag-000");
}

#[test]
fn secret_values_are_redacted_whole_trimmed_and_line_by_line() {
    let r = Redactor::new([
        b"hunter2\n".to_vec(),
        b"-----BEGIN KEY-----\nAAAAsecretline\n-----END KEY-----\n".to_vec(),
        b"".to_vec(),
    ]);
    assert_eq!(r.redact("pw=hunter2 ok"), "pw=**** ok");
    assert_eq!(r.redact("…AAAAsecretline\n-----END"), "…****\n-----END");
    assert_eq!(r.redact("nothing here"), "nothing here");
    let mut f = Failure::new(Reason::StepFailed, "echo hunter2 failed");
    f.log_tail = Some("hunter2\nmore".into());
    f.redact(&r);
    assert!(!serde_json::to_string(&f).unwrap().contains("hunter2"));
}

#[test]
fn the_compact_plan_carries_a_git_revision_only_when_there_is_one() {
    let plan = crate::plan::from_text(
        "Dockerfile",
        "FROM scratch\n",
        &crate::plan::PlanOptions::default(),
    )
    .unwrap();
    let mut compact = CompactPlan::from_summary(&crate::plan::summary::summarize(&plan));
    let json = PlanResult::Plan(compact.clone()).to_json(MAX_BYTES);
    assert!(!json.contains("revision"), "{json}");
    compact.revision = Some("a".repeat(40));
    let json = PlanResult::Plan(compact.clone()).to_json(MAX_BYTES);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["revision"], "a".repeat(40));
    assert_eq!(
        serde_json::from_str::<PlanResult>(&json).unwrap(),
        PlanResult::Plan(compact)
    );
}

#[test]
fn the_compact_plan_dedupes_and_fits() {
    let opts = crate::plan::PlanOptions::default();
    let text = "FROM busybox AS build\n\
        RUN --mount=type=cache,target=/c,sharing=locked --mount=type=secret,id=tok \\\n\
            --mount=type=ssh true\n\
        RUN --mount=type=cache,target=/c,sharing=locked --mount=type=secret,id=tok,required=true true\n\
        FROM alpine\n\
        COPY --from=build /x /x\n";
    let plan = crate::plan::from_text("Dockerfile", text, &opts).unwrap();
    let compact = CompactPlan::from_summary(&crate::plan::summary::summarize(&plan));
    assert_eq!(compact.caches.len(), 1);
    assert_eq!(compact.caches[0].sharing, Sharing::Locked);
    assert_eq!(
        compact.secrets,
        [IdUse {
            id: "tok".into(),
            required: true
        }]
    );
    assert_eq!(compact.ssh[0].id, "default");
    assert_eq!(compact.stages.len(), 2);
    assert_eq!(compact.base_images, ["busybox", "alpine"]);
    let json = PlanResult::Plan(compact.clone()).to_json(MAX_BYTES);
    let back: PlanResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, PlanResult::Plan(compact.clone()));

    let mut big = compact;
    for i in 0..300 {
        big.caches.push(CacheMount {
            id: format!("cache-{i}"),
            target: format!("/var/cache/{i}"),
            sharing: Sharing::Shared,
            uid: 0,
            gid: 0,
            mode: 0o755,
            from: None,
            source: None,
        });
    }
    let json = PlanResult::Plan(big).to_json(MAX_BYTES);
    assert!(json.len() <= MAX_BYTES);
    let Ok(PlanResult::Plan(back)) = serde_json::from_str(&json) else {
        panic!("{json}")
    };
    assert!(back.truncated);
    assert_eq!(back.secrets.len(), 1, "caches go before secrets");
}
